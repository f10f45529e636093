-- Issue 17, the cascade at post (docs/revenue-recovery.md §1): a winning bid whose sale is
-- refused goes to the ping's runner-ups, one at a time. Every column is nullable or has a
-- constant default: adding it rewrites nothing.

-- Which attempt of its slot a sale is (0: the winner's own sale, then 1, 2, …), and the
-- winning bid whose slot a cascade attempt fills (NULL for a winner's own sale).
ALTER TABLE lead_sales
    ADD COLUMN attempt smallint NOT NULL DEFAULT 0,
    ADD COLUMN replaces_bid_id uuid;
ALTER TABLE lead_sales ADD CONSTRAINT lead_sales_attempt CHECK (
    attempt >= 0 AND attempt <= 20 AND (attempt = 0) = (replaces_bid_id IS NULL)) NOT VALID;

-- Element i is contract i's place among the ping's runner-ups (1 = the first to be offered
-- a failed winner's slot), NULL for a contract that is not one. The whole array is NULL for
-- a ping with no runner-ups: nothing is written for it. The post reads it with the row, by
-- the ping's primary key.
ALTER TABLE distribution_declines ADD COLUMN runner_up_ranks smallint[];
-- Compressed as the row's other arrays are (migration 0006): pglz on it was measurable at
-- 300 contracts.
DO $$
BEGIN
    ALTER TABLE distribution_declines ALTER runner_up_ranks SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'PostgreSQL built without lz4: runner_up_ranks compresses with pglz';
END $$;
ALTER TABLE distribution_declines ADD CONSTRAINT distribution_declines_runner_ups CHECK (
    runner_up_ranks IS NULL
    OR (cardinality(runner_up_ranks) = cardinality(contract_ids) AND 1 <= ALL (runner_up_ranks))) NOT VALID;

-- The offer's cascade: {"max_attempts": 0–20, "deadline_ms": 100–60000} (checked by the
-- admin API as the rest of the configuration).
ALTER TABLE offers ADD COLUMN cascade jsonb NOT NULL DEFAULT '{"max_attempts": 3, "deadline_ms": 10000}'
    CHECK (jsonb_typeof(cascade) = 'object');
