-- The post's reservation as one call: a post on a hot contract waits for the rows it locks
-- (the contract's cap counters, the buyer), and every client round trip made while holding
-- them lengthens everyone's wait. Here the whole reservation is one statement, run and
-- committed in one round trip.
--
-- Returns 'reserved', or the refusal: 'duplicate', 'capped', 'insufficient_funds'. A refusal
-- leaves every row as it found it (counters taken before the refusal are given back in the
-- same transaction, a counter row created for it is removed).
--
-- Lock order, as everywhere in Gavel: the consumer's dedup locks (in hash order), the
-- contract's cap counters (in period order: the caller passes them so), then the buyer.
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
    -- SHA-256 of the consumer's normalized email and phone, and the buyer's dedup window
    p_hashes        bytea[],
    p_dedup_days    integer,
    -- the contract's capped periods, in period order, with their current period's start and
    -- limits (bigint max where the period has no such cap)
    p_periods       text[],
    p_starts        timestamptz[],
    p_max_leads     bigint[],
    p_max_spend     bigint[],
    -- what lead_sales.reserved_caps records, for the release
    p_reserved      jsonb,
    p_ledger_id     uuid
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    taken integer := 0;
    hash  bytea;
BEGIN
    IF NOT p_test AND p_dedup_days > 0 AND coalesce(cardinality(p_hashes), 0) > 0 THEN
        -- Two posts of one consumer to one buyer serialize here, so the second sees the
        -- first's sale, even while it is pending.
        FOR hash IN SELECT h FROM unnest(p_hashes) AS h ORDER BY h LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant::text || p_buyer::text || encode(hash, 'hex'), 0));
        END LOOP;
        -- One primary-key lookup per hash: a plain equality on the key's leading columns,
        -- which any cached plan uses as its index condition.
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
            -- Concurrent reservations re-check the condition on the row they waited for.
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
        UPDATE buyers SET balance_cents = balance_cents - p_price
        WHERE tenant_id = p_tenant AND id = p_buyer AND balance_cents - p_price >= -credit_limit_cents;
        IF NOT FOUND THEN
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

-- Gives back the first `taken` periods' counters of a reservation: a refused one here, a
-- released sale in Gavel's release. Clamped at zero (an operator may have reset a counter),
-- and a counter back at zero goes: a reservation given back leaves no trace.
CREATE FUNCTION gavel_give_back_caps(
    p_tenant   uuid,
    p_contract uuid,
    p_periods  text[],
    p_starts   timestamptz[],
    p_price    bigint,
    taken      integer
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. taken LOOP
        UPDATE cap_counters SET leads = greatest(leads - 1, 0), spend_cents = greatest(spend_cents - p_price, 0)
        WHERE tenant_id = p_tenant AND contract_id = p_contract AND period = p_periods[i] AND period_start = p_starts[i];
        DELETE FROM cap_counters
        WHERE tenant_id = p_tenant AND contract_id = p_contract AND period = p_periods[i] AND period_start = p_starts[i]
          AND leads = 0 AND spend_cents = 0;
    END LOOP;
END;
$$;
