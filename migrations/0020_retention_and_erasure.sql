-- Issue 20, retention and erasure (docs/pii.md#retention-and-erasure): a tenant's
-- `pii_retention_days` (NULL: kept until erased), each lead's consumer hashes (SHA-256 of the
-- normalized email and phone, as the dedup keys) to find a consumer's leads, when a lead's PII
-- was erased, and a record of each erasure request (no PII: how, when, how many leads).
ALTER TABLE tenants
    ADD COLUMN pii_retention_days int CHECK (pii_retention_days BETWEEN 1 AND 3650);

ALTER TABLE leads ADD COLUMN pii_erased_at timestamptz;

-- A consumer's leads, found by the hash of their email or phone (the lead's PII being sealed);
-- an erased lead's rows are deleted.
CREATE TABLE lead_consumers (
    tenant_id      uuid NOT NULL,
    consumer_hash  bytea NOT NULL CHECK (length(consumer_hash) = 32),
    lead_id        uuid NOT NULL,
    PRIMARY KEY (tenant_id, consumer_hash, lead_id),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id)
);
CREATE INDEX lead_consumers_lead ON lead_consumers (tenant_id, lead_id);
-- The retention job's scan: leads whose PII is still held, oldest first.
CREATE INDEX leads_pii_held ON leads (tenant_id, created_at)
    WHERE pii_erased_at IS NULL;

CREATE TABLE erasures (
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    id            uuid NOT NULL,
    -- how the consumer was named: 'email' or 'phone' (never the value)
    matched_by    text NOT NULL CHECK (matched_by IN ('email', 'phone')),
    leads_erased  int NOT NULL CHECK (leads_erased >= 0),
    requested_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
