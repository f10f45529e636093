-- Issue 16: the partner's sub-ids kept with its ping, and an RTB buyer's own words kept for
-- the operator when its answer declined the contract (rtb_invalid, rtb_no_bid, or rtb_error
-- with an HTTP status). Every column is nullable without a default: adding it rewrites
-- nothing.

-- The ping's `sub_ids` as posted (a JSON object of at most 10 short strings, non-PII).
ALTER TABLE posting_log ADD COLUMN sub_ids jsonb;

-- Element i is contract i's (as every other array of the row): the buyer's HTTP status and
-- its answer (at most 4096 bytes, no NUL). Both arrays are NULL for a ping none of whose
-- declines kept an answer (most pings): nothing is written for them.
ALTER TABLE distribution_declines ADD COLUMN rtb_http_statuses integer[], ADD COLUMN rtb_responses text[];
-- New rows only: every existing row has NULL arrays, which satisfy it.
ALTER TABLE distribution_declines ADD CONSTRAINT distribution_declines_answers CHECK (
    (rtb_http_statuses IS NULL OR cardinality(rtb_http_statuses) = cardinality(contract_ids))
    AND (rtb_responses IS NULL OR cardinality(rtb_responses) = cardinality(contract_ids))) NOT VALID;
DO $$
BEGIN
    ALTER TABLE distribution_declines ALTER rtb_responses SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'PostgreSQL built without lz4: rtb_responses compresses with pglz';
END $$;

-- The view gains the two columns (at its end: the view keeps its triggers). A NULL array
-- unnests as NULLs beside the others.
CREATE OR REPLACE VIEW lead_distribution AS
SELECT w.tenant_id, w.ping_id, w.contract_id, w.buyer_id, w.created_at, 'won'::text AS outcome,
       NULL::text AS reason, NULL::text AS detail, w.exclusive_bid_cents, w.shared_bid_cents, w.rtb_ms,
       w.rtb_ref, w.bid_id, w.sale_type, w.price_cents, w.payout_cents, w.disposition,
       NULL::integer AS rtb_http_status, NULL::text AS rtb_response
FROM distribution_winners w
UNION ALL
SELECT d.tenant_id, d.ping_id, c.contract_id, c.buyer_id, d.created_at,
       CASE WHEN c.reason = 'outbid' THEN 'outbid' ELSE 'declined' END, c.reason::text, c.detail,
       c.exclusive_bid_cents, c.shared_bid_cents, c.rtb_ms, c.rtb_ref, NULL::uuid, NULL::text, NULL::bigint,
       NULL::bigint, NULL::text, c.rtb_http_status, c.rtb_response
FROM distribution_declines d,
     unnest(d.contract_ids, d.buyer_ids, d.reasons, d.details, d.exclusive_bids_cents, d.shared_bids_cents,
            d.rtb_ms, d.rtb_refs, d.rtb_http_statuses, d.rtb_responses)
         AS c (contract_id, buyer_id, reason, detail, exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref,
               rtb_http_status, rtb_response);
