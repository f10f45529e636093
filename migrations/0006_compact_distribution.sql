-- A ping's contract outcomes, stored compactly. A ping wrote one lead_distribution row per
-- contract, with a primary-key entry each: at 300 contracts that write was half of the ping's
-- time. Now the winners keep a row each (the post reads and updates them by ping), and every
-- other contract's outcome is one element of arrays in a single row per ping. The view
-- lead_distribution shows both as before, one row per contract.

CREATE TYPE decline_reason AS ENUM (
    'contract_paused', 'buyer_paused', 'filtered', 'outside_schedule', 'cap_reached', 'duplicate',
    'insufficient_funds', 'no_price_for_sale_type', 'rtb_no_bid', 'rtb_timeout', 'rtb_error',
    'rtb_invalid', 'below_floor', 'outbid');

-- One row per winning contract of a ping: its bid, and after the post its sale's disposition.
CREATE TABLE distribution_winners (
    tenant_id           uuid NOT NULL,
    ping_id             uuid NOT NULL,
    contract_id         uuid NOT NULL,
    buyer_id            uuid NOT NULL,
    created_at          timestamptz NOT NULL,
    exclusive_bid_cents bigint CHECK (exclusive_bid_cents >= 0),
    shared_bid_cents    bigint CHECK (shared_bid_cents >= 0),
    rtb_ms              integer CHECK (rtb_ms >= 0),
    rtb_ref             text,
    bid_id              uuid NOT NULL,
    sale_type           text NOT NULL CHECK (sale_type IN ('exclusive', 'shared')),
    price_cents         bigint NOT NULL CHECK (price_cents >= 0),
    payout_cents        bigint CHECK (payout_cents >= 0),
    disposition         text CHECK (disposition IN (
                            'pending', 'sold', 'rejected', 'failed', 'capped',
                            'insufficient_funds', 'duplicate', 'not_accepted')),
    PRIMARY KEY (tenant_id, ping_id, contract_id)
);
CREATE UNIQUE INDEX distribution_winners_bid ON distribution_winners (tenant_id, bid_id);

-- One row per ping with contracts that did not win: element i of every array is one contract's
-- outcome (its reason is `outbid` when it bid and lost).
CREATE TABLE distribution_declines (
    tenant_id            uuid NOT NULL,
    ping_id              uuid NOT NULL,
    created_at           timestamptz NOT NULL,
    contract_ids         uuid[] NOT NULL,
    buyer_ids            uuid[] NOT NULL,
    reasons              decline_reason[] NOT NULL,
    details              text[] NOT NULL,
    exclusive_bids_cents bigint[] NOT NULL,
    shared_bids_cents    bigint[] NOT NULL,
    rtb_ms               integer[] NOT NULL,
    rtb_refs             text[] NOT NULL,
    PRIMARY KEY (tenant_id, ping_id),
    CONSTRAINT distribution_declines_aligned CHECK (
        cardinality(contract_ids) > 0
        AND array_ndims(contract_ids) = 1
        AND cardinality(buyer_ids) = cardinality(contract_ids)
        AND cardinality(reasons) = cardinality(contract_ids)
        AND cardinality(details) = cardinality(contract_ids)
        AND cardinality(exclusive_bids_cents) = cardinality(contract_ids)
        AND cardinality(shared_bids_cents) = cardinality(contract_ids)
        AND cardinality(rtb_ms) = cardinality(contract_ids)
        AND cardinality(rtb_refs) = cardinality(contract_ids)),
    CONSTRAINT distribution_declines_complete CHECK (
        array_position(contract_ids, NULL) IS NULL
        AND array_position(buyer_ids, NULL) IS NULL
        AND array_position(reasons, NULL) IS NULL),
    CONSTRAINT distribution_declines_amounts CHECK (
        0 <= ALL (exclusive_bids_cents) AND 0 <= ALL (shared_bids_cents) AND 0 <= ALL (rtb_ms))
);

-- A ping's ids are random: compressing them is wasted work (pglz trying was a third of
-- PostgreSQL's time at 300 contracts), so they are stored out of line as they are. The other
-- arrays repeat values and compress, with lz4 where this PostgreSQL has it (much faster than
-- pglz).
ALTER TABLE distribution_declines ALTER contract_ids SET STORAGE EXTERNAL, ALTER buyer_ids SET STORAGE EXTERNAL;
DO $$
BEGIN
    ALTER TABLE distribution_declines
        ALTER reasons SET COMPRESSION lz4, ALTER details SET COMPRESSION lz4,
        ALTER exclusive_bids_cents SET COMPRESSION lz4, ALTER shared_bids_cents SET COMPRESSION lz4,
        ALTER rtb_ms SET COMPRESSION lz4, ALTER rtb_refs SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'PostgreSQL built without lz4: distribution_declines compresses with pglz';
END $$;

-- Processes of the previous release may still be writing: they wait until this migration
-- commits (reads go on), so that nothing written during the copy is lost with the table.
LOCK TABLE lead_distribution IN SHARE MODE;

INSERT INTO distribution_winners (tenant_id, ping_id, contract_id, buyer_id, created_at, exclusive_bid_cents,
                                  shared_bid_cents, rtb_ms, rtb_ref, bid_id, sale_type, price_cents,
                                  payout_cents, disposition)
SELECT tenant_id, ping_id, contract_id, buyer_id, created_at, exclusive_bid_cents, shared_bid_cents, rtb_ms,
       rtb_ref, bid_id, sale_type, price_cents, payout_cents, disposition
FROM lead_distribution
WHERE outcome = 'won';

INSERT INTO distribution_declines (tenant_id, ping_id, created_at, contract_ids, buyer_ids, reasons, details,
                                   exclusive_bids_cents, shared_bids_cents, rtb_ms, rtb_refs)
SELECT tenant_id, ping_id, min(created_at), array_agg(contract_id ORDER BY contract_id),
       array_agg(buyer_id ORDER BY contract_id), array_agg(coalesce(reason, 'outbid')::decline_reason ORDER BY contract_id),
       array_agg(detail ORDER BY contract_id), array_agg(exclusive_bid_cents ORDER BY contract_id),
       array_agg(shared_bid_cents ORDER BY contract_id), array_agg(rtb_ms ORDER BY contract_id),
       array_agg(rtb_ref ORDER BY contract_id)
FROM lead_distribution
WHERE outcome <> 'won'
GROUP BY tenant_id, ping_id;

DROP TABLE lead_distribution;

-- Every contract that saw a ping, one row each, as the audit trail names it: read it by ping.
CREATE VIEW lead_distribution AS
SELECT w.tenant_id, w.ping_id, w.contract_id, w.buyer_id, w.created_at, 'won'::text AS outcome,
       NULL::text AS reason, NULL::text AS detail, w.exclusive_bid_cents, w.shared_bid_cents, w.rtb_ms,
       w.rtb_ref, w.bid_id, w.sale_type, w.price_cents, w.payout_cents, w.disposition
FROM distribution_winners w
UNION ALL
SELECT d.tenant_id, d.ping_id, c.contract_id, c.buyer_id, d.created_at,
       CASE WHEN c.reason = 'outbid' THEN 'outbid' ELSE 'declined' END, c.reason::text, c.detail,
       c.exclusive_bid_cents, c.shared_bid_cents, c.rtb_ms, c.rtb_ref, NULL::uuid, NULL::text, NULL::bigint,
       NULL::bigint, NULL::text
FROM distribution_declines d,
     unnest(d.contract_ids, d.buyer_ids, d.reasons, d.details, d.exclusive_bids_cents, d.shared_bids_cents,
            d.rtb_ms, d.rtb_refs)
         AS c (contract_id, buyer_id, reason, detail, exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref);

-- During a rolling upgrade, processes of the previous release still write through
-- lead_distribution: a ping's rows (INSERT) and its winners' dispositions (UPDATE). These
-- triggers send their writes to the two tables; Gavel itself writes the tables directly.
CREATE FUNCTION lead_distribution_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome = 'won' THEN
        INSERT INTO distribution_winners (tenant_id, ping_id, contract_id, buyer_id, created_at,
                                          exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, bid_id,
                                          sale_type, price_cents, payout_cents, disposition)
        VALUES (NEW.tenant_id, NEW.ping_id, NEW.contract_id, NEW.buyer_id, coalesce(NEW.created_at, now()),
                NEW.exclusive_bid_cents, NEW.shared_bid_cents, NEW.rtb_ms, NEW.rtb_ref, NEW.bid_id,
                NEW.sale_type, NEW.price_cents, NEW.payout_cents, NEW.disposition);
    ELSE
        INSERT INTO distribution_declines AS d (tenant_id, ping_id, created_at, contract_ids, buyer_ids, reasons,
                                                details, exclusive_bids_cents, shared_bids_cents, rtb_ms,
                                                rtb_refs)
        VALUES (NEW.tenant_id, NEW.ping_id, coalesce(NEW.created_at, now()), ARRAY[NEW.contract_id],
                ARRAY[NEW.buyer_id],
                ARRAY[coalesce(NEW.reason, CASE WHEN NEW.outcome = 'outbid' THEN 'outbid' END)::decline_reason],
                ARRAY[NEW.detail], ARRAY[NEW.exclusive_bid_cents], ARRAY[NEW.shared_bid_cents],
                ARRAY[NEW.rtb_ms], ARRAY[NEW.rtb_ref])
        ON CONFLICT (tenant_id, ping_id) DO UPDATE SET
            contract_ids = d.contract_ids || EXCLUDED.contract_ids,
            buyer_ids = d.buyer_ids || EXCLUDED.buyer_ids,
            reasons = d.reasons || EXCLUDED.reasons,
            details = d.details || EXCLUDED.details,
            exclusive_bids_cents = d.exclusive_bids_cents || EXCLUDED.exclusive_bids_cents,
            shared_bids_cents = d.shared_bids_cents || EXCLUDED.shared_bids_cents,
            rtb_ms = d.rtb_ms || EXCLUDED.rtb_ms,
            rtb_refs = d.rtb_refs || EXCLUDED.rtb_refs;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lead_distribution_insert INSTEAD OF INSERT ON lead_distribution
    FOR EACH ROW EXECUTE FUNCTION lead_distribution_insert();

CREATE FUNCTION lead_distribution_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE distribution_winners SET disposition = NEW.disposition
    WHERE tenant_id = OLD.tenant_id AND ping_id = OLD.ping_id AND contract_id = OLD.contract_id;
    RETURN NEW;
END $$;
CREATE TRIGGER lead_distribution_update INSTEAD OF UPDATE ON lead_distribution
    FOR EACH ROW EXECUTE FUNCTION lead_distribution_update();
