-- Issue 20, PII at rest (docs/pii.md): a posted lead's PII and consent are sealed
-- (XChaCha20-Poly1305) under the key `pii_key_id` names; `lead` keeps the lead's non-PII
-- fields in the clear (for reading without the key) and `consent` is empty. Rows stored
-- before (pii_key_id NULL) are sealed by `gavel pii rotate`.
ALTER TABLE leads
    ADD COLUMN pii_key_id text CHECK (length(pii_key_id) BETWEEN 1 AND 32),
    ADD COLUMN pii_sealed bytea,
    ADD CONSTRAINT leads_pii_sealed_with_a_key CHECK ((pii_key_id IS NULL) = (pii_sealed IS NULL));
