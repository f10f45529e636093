-- Issue 20, suppression lists (docs/suppression.md): a tenant's lists of consumers who must not
-- be sold (SHA-256 of the normalized email or phone, as the dedup keys), attached to offers
-- (every contract of the offer) or to contracts. A consumer found on an active list declines
-- the contracts the list covers with the reason `suppressed`, at the ping (by the ping's dedup
-- hashes) and at the post (by the posted email and phone).

CREATE TABLE suppression_lists (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    description  text,
    -- kept by the statements that add and remove entries (a count(*) of millions is slow)
    entry_count  bigint NOT NULL DEFAULT 0 CHECK (entry_count >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- A list's entries, looked up by their primary key (tenant, list, hash) at every ping and post.
CREATE TABLE suppression_entries (
    tenant_id  uuid NOT NULL,
    list_id    uuid NOT NULL,
    hash       bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (tenant_id, list_id, hash),
    FOREIGN KEY (tenant_id, list_id) REFERENCES suppression_lists (tenant_id, id)
);

-- The lists are configuration (a status or name change reloads the snapshot); their entries,
-- and the count that moves with them, are not.
CREATE TRIGGER suppression_lists_updated_at BEFORE UPDATE OF name, status, description ON suppression_lists
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
CREATE TRIGGER suppression_lists_notify AFTER INSERT OR DELETE OR UPDATE OF name, status, description
    ON suppression_lists FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();

ALTER TABLE offers ADD COLUMN suppression_list_ids uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE contracts ADD COLUMN suppression_list_ids uuid[] NOT NULL DEFAULT '{}';

-- The new decline reason, checked right after the contract's and the buyer's status.
ALTER TYPE decline_reason ADD VALUE 'suppressed' AFTER 'buyer_paused';

-- A winner's sale refused at post because the consumer is on a list of its contract.
ALTER TABLE lead_sales DROP CONSTRAINT lead_sales_status_check;
ALTER TABLE lead_sales ADD CONSTRAINT lead_sales_status_check CHECK (status IN (
    'pending', 'sold', 'rejected', 'failed', 'capped', 'insufficient_funds', 'duplicate',
    'not_accepted', 'returned', 'suppressed')) NOT VALID;
ALTER TABLE distribution_winners DROP CONSTRAINT distribution_winners_disposition_check;
ALTER TABLE distribution_winners ADD CONSTRAINT distribution_winners_disposition_check CHECK (disposition IN (
    'pending', 'sold', 'rejected', 'failed', 'capped', 'insufficient_funds', 'duplicate',
    'not_accepted', 'suppressed')) NOT VALID;
