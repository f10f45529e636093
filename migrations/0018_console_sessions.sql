-- The operator console's sessions (docs/console.md): one row per signed-in browser.
-- The cookie carries a random token; only its SHA-256 is stored. A session lives while the
-- admin key it was opened with is not revoked, and until `expires_at` (absolute).
CREATE TABLE console_sessions (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          uuid NOT NULL,
    token_hash  bytea NOT NULL CHECK (length(token_hash) = 32),
    -- The admin key's hash (as in api_keys): revoking the key ends its sessions.
    key_hash    bytea NOT NULL CHECK (length(key_hash) = 32),
    -- Sent in every form of the session and compared on every POST (CSRF).
    csrf_token  text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 128),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- The cookie names its session, so this lookup (like api_keys_key_hash) does not lead with
-- tenant_id: the tenant is what it finds. (Expired rows are deleted per tenant, through the
-- primary key, at the tenant's next sign-in.)
CREATE UNIQUE INDEX console_sessions_token ON console_sessions (token_hash);
