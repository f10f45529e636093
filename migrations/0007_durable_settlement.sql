-- Durable settlement (issue 14): the buyer's verdict is kept on the sale as soon as it is known,
-- so that a sale whose completion could not be written (a dropped connection, a failover) is
-- completed by the interrupted-sale sweep, not released: the buyer keeps what it accepted and
-- pays for it, the partner is paid, the dedup keys are written.
ALTER TABLE lead_sales
    ADD COLUMN verdict text CHECK (verdict IN ('accepted', 'rejected', 'failed')),
    -- the kind ('email', 'phone') of each of consumer_hashes, in its order: the dedup keys
    -- the sweep writes for an accepted sale
    ADD COLUMN consumer_kinds text[];

-- Idempotency keys of `POST /v1/leads` and `POST /v1/admin/buyers/{id}/funds` (issue 14): a
-- retry with the same key and body receives the first answer; another body is refused.
CREATE TABLE idempotency_keys (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    -- 'leads' (scope: the campaign) or 'funds' (scope: the tenant)
    route           text NOT NULL CHECK (route IN ('leads', 'funds')),
    scope_id        uuid NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the request (its path and canonical body)
    request_sha256  bytea NOT NULL CHECK (length(request_sha256) = 32),
    -- the first answer, once given (NULL while its request runs)
    http_status     integer,
    content_type    text,
    response        text,
    -- a direct post's ping, whose stored answer completes a "settling" answer
    ping_id         uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, route, scope_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (tenant_id, expires_at);
