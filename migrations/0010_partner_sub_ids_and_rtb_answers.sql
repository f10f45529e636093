-- Issue 16: the partner's sub-ids kept with its ping, and an RTB buyer's own words kept for
-- the operator when its answer declined the contract (rtb_invalid, rtb_no_bid, or rtb_error
-- with an HTTP status). Every column is nullable without a default: adding it rewrites
-- nothing.

-- The ping's `sub_ids` as posted (a JSON object of at most 10 short strings, non-PII).
ALTER TABLE posting_log ADD COLUMN sub_ids jsonb;

-- Element i is contract i's (as every other array of the row): the buyer's HTTP status and
-- its answer (at most 4096 bytes, no NUL). Both arrays are NULL for a ping none of whose
-- declines kept an answer (no RTB buyer declined by its own answer: fixed-price offers, and
-- pings whose RTB buyers all bid): nothing is written for them.
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

-- The view lead_distribution is left as it is (its rows are the audit trail's, compared
-- across upgrades): the operator's view reads these two arrays beside it, by contract.
