-- Buyer caps (docs/revenue-recovery.md §4): a buyer's `caps`, shaped like a contract's, count
-- the buyer's sales on all its contracts in `buyer_cap_counters`, reserved by `gavel_reserve`
-- atomically with the contract's caps.

-- [{"period":"day","max_leads":100},{"period":"month","max_spend_cents":500000}]
ALTER TABLE buyers ADD COLUMN caps jsonb NOT NULL DEFAULT '[]' CHECK (
    jsonb_typeof(caps) = 'array'
    -- each cap: a known period and exactly one positive whole limit
    AND NOT jsonb_path_exists(caps, '$[*] ? (!(@.period == "hour" || @.period == "day"
        || @.period == "week" || @.period == "month" || @.period == "total"))')
    AND NOT jsonb_path_exists(caps, '$[*] ? ((exists(@.max_leads) && exists(@.max_spend_cents))
        || (!(exists(@.max_leads)) && !(exists(@.max_spend_cents))))')
    AND NOT jsonb_path_exists(caps, '$[*].max_leads ? (@.type() != "number" || @ < 1 || @.floor() != @)')
    AND NOT jsonb_path_exists(caps, '$[*].max_spend_cents ? (@.type() != "number" || @ < 1 || @.floor() != @)'));

-- The caps are configuration: a change reloads the snapshot and moves updated_at (the balance,
-- which moves with every sale, still does neither).
DROP TRIGGER buyers_updated_at ON buyers;
CREATE TRIGGER buyers_updated_at BEFORE UPDATE OF name, status, credit_limit_cents, caps ON buyers
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
DROP TRIGGER buyers_notify ON buyers;
CREATE TRIGGER buyers_notify AFTER INSERT OR DELETE OR UPDATE OF name, status, credit_limit_cents, caps ON buyers
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();

-- A buyer's usage per cap period, as cap_counters is a contract's.
CREATE TABLE buyer_cap_counters (
    tenant_id     uuid NOT NULL,
    buyer_id      uuid NOT NULL,
    period        text NOT NULL CHECK (period IN ('hour', 'day', 'week', 'month', 'total')),
    period_start  timestamptz NOT NULL,
    leads         integer NOT NULL DEFAULT 0 CHECK (leads >= 0),
    spend_cents   bigint NOT NULL DEFAULT 0 CHECK (spend_cents >= 0),
    PRIMARY KEY (tenant_id, buyer_id, period, period_start),
    FOREIGN KEY (tenant_id, buyer_id) REFERENCES buyers (tenant_id, id)
);

-- Gives back the first `taken` periods' buyer counters of a reservation, as
-- gavel_give_back_caps does a contract's.
CREATE FUNCTION gavel_give_back_buyer_caps(
    p_tenant   uuid,
    p_buyer    uuid,
    p_periods  text[],
    p_starts   timestamptz[],
    p_price    bigint,
    taken      integer
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. taken LOOP
        UPDATE buyer_cap_counters SET leads = greatest(leads - 1, 0), spend_cents = greatest(spend_cents - p_price, 0)
        WHERE tenant_id = p_tenant AND buyer_id = p_buyer AND period = p_periods[i] AND period_start = p_starts[i];
        DELETE FROM buyer_cap_counters
        WHERE tenant_id = p_tenant AND buyer_id = p_buyer AND period = p_periods[i] AND period_start = p_starts[i]
          AND leads = 0 AND spend_cents = 0;
    END LOOP;
END;
$$;

-- The reservation with the buyer's caps: gavel_reserve of migration 0003 plus the buyer's
-- capped periods, their current starts and limits (`p_buyer_*`, in period order). Lock order:
-- the consumer's dedup locks, the contract's counters, the buyer's counters, the buyer's row.
-- A refusal gives back every counter taken before it (contract's and buyer's).
CREATE FUNCTION gavel_reserve(
    p_tenant        uuid,
    p_sale          uuid,
    p_lead          uuid,
    p_ping          uuid,
    p_bid           uuid,
    p_contract      uuid,
    p_buyer         uuid,
    p_campaign      uuid,
    p_partner       uuid,
    p_offer         uuid,
    p_sale_type     text,
    p_price         bigint,
    p_payout        bigint,
    p_test          boolean,
    p_pending_ms    double precision,
    p_now           timestamptz,
    p_hashes        bytea[],
    p_dedup_days    integer,
    p_periods       text[],
    p_starts        timestamptz[],
    p_max_leads     bigint[],
    p_max_spend     bigint[],
    p_reserved      jsonb,
    p_ledger_id     uuid,
    p_buyer_periods   text[],
    p_buyer_starts    timestamptz[],
    p_buyer_max_leads bigint[],
    p_buyer_max_spend bigint[]
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    taken       integer := 0;
    buyer_taken integer := 0;
    hash        bytea;
BEGIN
    IF NOT p_test AND p_dedup_days > 0 AND coalesce(cardinality(p_hashes), 0) > 0 THEN
        FOR hash IN SELECT h FROM unnest(p_hashes) AS h ORDER BY h LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant::text || p_buyer::text || encode(hash, 'hex'), 0));
        END LOOP;
        FOREACH hash IN ARRAY p_hashes LOOP
            IF EXISTS (SELECT 1 FROM dedup_keys
                       WHERE tenant_id = p_tenant AND key_hash = hash AND buyer_id = p_buyer
                         AND sold_at > p_now - make_interval(days => p_dedup_days)) THEN
                RETURN 'duplicate';
            END IF;
        END LOOP;
        IF EXISTS (SELECT 1 FROM lead_sales
                      WHERE tenant_id = p_tenant AND buyer_id = p_buyer AND status = 'pending'
                        AND consumer_hashes && p_hashes AND NOT test) THEN
            RETURN 'duplicate';
        END IF;
    END IF;

    IF NOT p_test THEN
        FOR i IN 1 .. coalesce(cardinality(p_periods), 0) LOOP
            INSERT INTO cap_counters (tenant_id, contract_id, period, period_start, leads, spend_cents)
            SELECT p_tenant, p_contract, p_periods[i], p_starts[i], 1, p_price
            WHERE 1 <= p_max_leads[i] AND p_price <= p_max_spend[i]
            ON CONFLICT (tenant_id, contract_id, period, period_start) DO UPDATE
            SET leads = cap_counters.leads + 1, spend_cents = cap_counters.spend_cents + EXCLUDED.spend_cents
            WHERE cap_counters.leads + 1 <= p_max_leads[i]
              AND cap_counters.spend_cents + EXCLUDED.spend_cents <= p_max_spend[i];
            IF NOT FOUND THEN
                PERFORM gavel_give_back_caps(p_tenant, p_contract, p_periods, p_starts, p_price, taken);
                RETURN 'capped';
            END IF;
            taken := i;
        END LOOP;
        FOR i IN 1 .. coalesce(cardinality(p_buyer_periods), 0) LOOP
            INSERT INTO buyer_cap_counters (tenant_id, buyer_id, period, period_start, leads, spend_cents)
            SELECT p_tenant, p_buyer, p_buyer_periods[i], p_buyer_starts[i], 1, p_price
            WHERE 1 <= p_buyer_max_leads[i] AND p_price <= p_buyer_max_spend[i]
            ON CONFLICT (tenant_id, buyer_id, period, period_start) DO UPDATE
            SET leads = buyer_cap_counters.leads + 1,
                spend_cents = buyer_cap_counters.spend_cents + EXCLUDED.spend_cents
            WHERE buyer_cap_counters.leads + 1 <= p_buyer_max_leads[i]
              AND buyer_cap_counters.spend_cents + EXCLUDED.spend_cents <= p_buyer_max_spend[i];
            IF NOT FOUND THEN
                PERFORM gavel_give_back_buyer_caps(p_tenant, p_buyer, p_buyer_periods, p_buyer_starts, p_price, buyer_taken);
                PERFORM gavel_give_back_caps(p_tenant, p_contract, p_periods, p_starts, p_price, taken);
                RETURN 'capped';
            END IF;
            buyer_taken := i;
        END LOOP;
        UPDATE buyers SET balance_cents = balance_cents - p_price
        WHERE tenant_id = p_tenant AND id = p_buyer AND balance_cents - p_price >= -credit_limit_cents;
        IF NOT FOUND THEN
            PERFORM gavel_give_back_buyer_caps(p_tenant, p_buyer, p_buyer_periods, p_buyer_starts, p_price, buyer_taken);
            PERFORM gavel_give_back_caps(p_tenant, p_contract, p_periods, p_starts, p_price, taken);
            RETURN 'insufficient_funds';
        END IF;
    END IF;

    INSERT INTO lead_sales (tenant_id, id, lead_id, ping_id, bid_id, contract_id, buyer_id, campaign_id,
                            partner_id, offer_id, sale_type, price_cents, payout_cents, status, test,
                            reserved_caps, pending_until, created_at, consumer_hashes)
    VALUES (p_tenant, p_sale, p_lead, p_ping, p_bid, p_contract, p_buyer, p_campaign,
            p_partner, p_offer, p_sale_type, p_price, p_payout, 'pending', p_test,
            p_reserved, now() + p_pending_ms * interval '1 millisecond', p_now, p_hashes);
    IF NOT p_test THEN
        INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, sale_id, created_at)
        VALUES (p_tenant, p_ledger_id, 'buyer', p_buyer, 'sale', -p_price, p_sale, p_now);
    END IF;
    RETURN 'reserved';
END;
$$;

-- The old signature stays for a rolling upgrade: a Gavel process that predates buyer caps
-- reserves through the new function with no buyer periods (its sales are not counted against
-- the buyer's caps: the few sales of an upgrade's minutes).
CREATE OR REPLACE FUNCTION gavel_reserve(
    p_tenant uuid, p_sale uuid, p_lead uuid, p_ping uuid, p_bid uuid, p_contract uuid,
    p_buyer uuid, p_campaign uuid, p_partner uuid, p_offer uuid, p_sale_type text,
    p_price bigint, p_payout bigint, p_test boolean, p_pending_ms double precision,
    p_now timestamptz, p_hashes bytea[], p_dedup_days integer, p_periods text[],
    p_starts timestamptz[], p_max_leads bigint[], p_max_spend bigint[], p_reserved jsonb,
    p_ledger_id uuid
) RETURNS text
LANGUAGE sql AS $$
    SELECT gavel_reserve(p_tenant, p_sale, p_lead, p_ping, p_bid, p_contract, p_buyer, p_campaign,
                         p_partner, p_offer, p_sale_type, p_price, p_payout, p_test, p_pending_ms,
                         p_now, p_hashes, p_dedup_days, p_periods, p_starts, p_max_leads,
                         p_max_spend, p_reserved, p_ledger_id,
                         '{}'::text[], '{}'::timestamptz[], '{}'::bigint[], '{}'::bigint[]);
$$;
