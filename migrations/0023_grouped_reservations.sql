-- Reservations grouped (issue 21, the hot contract): the reservations of posts settling at the
-- same moment, in one transaction. Sixty posts on one contract each took its cap counters and
-- its buyer's row for a gavel_reserve of their own, one after the other, with a commit each;
-- here one call takes each hot row once for all of them, decides every request in memory in
-- arrival order, and writes each row once.
--
-- Element i of every p_* array (but the flattened ones below) is request i, with the values
-- gavel_reserve (migration 0013) takes, plus the sale's cascade attempt and the slot it fills
-- (written with the sale: no second statement). The consumer's hashes and the contract's and
-- the buyer's capped periods vary in number per request: they are flattened, each element
-- naming its request (`p_*_of`, 1-based), a request's own in their order (periods in period
-- order, as gavel_reserve takes them).
--
-- Returns each request's outcome, in request order: exactly what gavel_reserve called for the
-- requests one after the other, in that order, would have answered ('reserved', 'duplicate',
-- 'capped', 'insufficient_funds'), with the same writes. A refused request leaves no trace (a
-- counter row created for the group and left unused is removed). A request whose sale is
-- already written (a retry after a lost connection) is answered 'reserved' and writes nothing
-- again. One difference from gavel_reserve, on purpose: a consumer's pending sales are looked
-- at before its dedup keys (see below).
--
-- Lock order, as everywhere in Gavel: the consumers' dedup locks (by tenant, buyer, hash: for
-- one buyer the hash order of gavel_reserve), the contracts' cap counters (by tenant,
-- contract, then period order), the buyers' cap counters (by tenant, buyer, period order),
-- then the buyers' rows (by tenant, id). A single gavel_reserve or gavel_release takes a subset
-- of these in the same order, so neither deadlocks with a group, nor two groups together.
CREATE FUNCTION gavel_reserve_group(
    p_tenants           uuid[],
    p_sales             uuid[],
    p_leads             uuid[],
    p_pings             uuid[],
    p_bids              uuid[],
    p_contracts         uuid[],
    p_buyers            uuid[],
    p_campaigns         uuid[],
    p_partners          uuid[],
    p_offers            uuid[],
    p_sale_types        text[],
    p_prices            bigint[],
    p_payouts           bigint[],
    p_tests             boolean[],
    p_pending_ms        double precision[],
    p_nows              timestamptz[],
    p_dedup_days        integer[],
    p_reserved          jsonb[],
    p_ledger_ids        uuid[],
    p_attempts          smallint[],
    p_replaces          uuid[],
    p_hash_of           integer[],
    p_hashes            bytea[],
    p_cap_of            integer[],
    p_periods           text[],
    p_starts            timestamptz[],
    p_max_leads         bigint[],
    p_max_spend         bigint[],
    p_buyer_cap_of      integer[],
    p_buyer_periods     text[],
    p_buyer_starts      timestamptz[],
    p_buyer_max_leads   bigint[],
    p_buyer_max_spend   bigint[]
) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    n           integer := coalesce(cardinality(p_sales), 0);
    outcomes    text[] := array_fill(NULL::text, ARRAY[n]);
    -- refused as a duplicate by what the database holds (its dedup keys, its pending sales)
    dup         boolean[] := array_fill(false, ARRAY[n]);
    period_rank CONSTANT text[] := ARRAY['hour', 'day', 'week', 'month', 'total'];
    r           record;
    i           integer;
    k           integer;
    x           integer;
    one_hash    bytea;
    hashes      bytea[];
    fits        boolean;
    -- the contracts' counters locked: their key, usage (updated as requests are admitted),
    -- what the group adds, whether the group created the row
    c_keys      text[] := '{}';
    c_tenant    uuid[] := '{}';
    c_contract  uuid[] := '{}';
    c_period    text[] := '{}';
    c_start     timestamptz[] := '{}';
    c_leads     bigint[] := '{}';
    c_spend     bigint[] := '{}';
    c_add_leads bigint[] := '{}';
    c_add_spend bigint[] := '{}';
    c_created   boolean[] := '{}';
    -- the buyers' counters locked, the same way
    b_keys      text[] := '{}';
    b_tenant    uuid[] := '{}';
    b_buyer     uuid[] := '{}';
    b_period    text[] := '{}';
    b_start     timestamptz[] := '{}';
    b_leads     bigint[] := '{}';
    b_spend     bigint[] := '{}';
    b_add_leads bigint[] := '{}';
    b_add_spend bigint[] := '{}';
    b_created   boolean[] := '{}';
    -- the buyers' rows locked: balance (updated as requests are admitted), credit limit, debit
    u_keys      text[] := '{}';
    u_tenant    uuid[] := '{}';
    u_buyer     uuid[] := '{}';
    u_balance   bigint[] := '{}';
    u_credit    bigint[] := '{}';
    u_debit     bigint[] := '{}';
    -- the consumers (tenant, buyer, hash) of the requests admitted so far: pending sales
    taken       text[] := '{}';
    mine        text[];
    -- the requests' sales already written (a retry's): answered 'reserved', nothing changed
    existing    uuid[];
    cur_leads   bigint;
    cur_spend   bigint;
    created     boolean;
BEGIN
    -- The consumers' dedup locks, then what the database says of each request's consumer: as
    -- gavel_reserve, before any hot row is locked.
    FOR r IN
        SELECT DISTINCT p_tenants[h.req] AS tenant, p_buyers[h.req] AS buyer, h.key_hash
        FROM unnest(p_hash_of, p_hashes) AS h (req, key_hash)
        WHERE NOT p_tests[h.req] AND p_dedup_days[h.req] > 0
        ORDER BY 1, 2, 3
    LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(r.tenant::text || r.buyer::text || encode(r.key_hash, 'hex'), 0));
    END LOOP;
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN p_tests[i] OR p_dedup_days[i] <= 0;
        hashes := ARRAY(SELECT p_hashes[pos] FROM unnest(array_positions(p_hash_of, i)) AS pos ORDER BY pos);
        CONTINUE WHEN cardinality(hashes) = 0;
        -- The pending sales before the dedup keys: a sale completing between the two looks
        -- is then seen by the second (its key is committed with its completion), where in the
        -- other order it would be missed by both.
        IF EXISTS (SELECT 1 FROM lead_sales
                   WHERE tenant_id = p_tenants[i] AND buyer_id = p_buyers[i]
                     AND status = 'pending' AND consumer_hashes && hashes AND NOT test) THEN
            dup[i] := true;
            CONTINUE;
        END IF;
        FOREACH one_hash IN ARRAY hashes LOOP
            IF EXISTS (SELECT 1 FROM dedup_keys
                       WHERE tenant_id = p_tenants[i] AND key_hash = one_hash AND buyer_id = p_buyers[i]
                         AND sold_at > p_nows[i] - make_interval(days => p_dedup_days[i])) THEN
                dup[i] := true;
                EXIT;
            END IF;
        END LOOP;
    END LOOP;

    -- The hot rows, each once, in the lock order; a counter row missing is created at zero.
    FOR r IN
        SELECT DISTINCT p_tenants[c.req] AS tenant, p_contracts[c.req] AS contract, c.period, c.start,
               array_position(period_rank, c.period) AS rank
        FROM unnest(p_cap_of, p_periods, p_starts) AS c (req, period, start)
        WHERE NOT p_tests[c.req] AND NOT dup[c.req]
        ORDER BY 1, 2, 5, 4
    LOOP
        LOOP
            SELECT leads, spend_cents INTO cur_leads, cur_spend FROM cap_counters
            WHERE tenant_id = r.tenant AND contract_id = r.contract AND period = r.period
              AND period_start = r.start
            FOR NO KEY UPDATE;
            IF FOUND THEN
                created := false;
                EXIT;
            END IF;
            INSERT INTO cap_counters (tenant_id, contract_id, period, period_start, leads, spend_cents)
            VALUES (r.tenant, r.contract, r.period, r.start, 0, 0)
            ON CONFLICT DO NOTHING;
            IF FOUND THEN
                cur_leads := 0;
                cur_spend := 0;
                created := true;
                EXIT;
            END IF;
            -- Inserted by another transaction since, and maybe removed again: look again.
        END LOOP;
        c_keys := c_keys || concat_ws(' ', r.tenant, r.contract, r.period, r.start);
        c_tenant := c_tenant || r.tenant;
        c_contract := c_contract || r.contract;
        c_period := c_period || r.period;
        c_start := c_start || r.start;
        c_leads := c_leads || cur_leads;
        c_spend := c_spend || cur_spend;
        c_add_leads := c_add_leads || 0::bigint;
        c_add_spend := c_add_spend || 0::bigint;
        c_created := c_created || created;
    END LOOP;
    FOR r IN
        SELECT DISTINCT p_tenants[c.req] AS tenant, p_buyers[c.req] AS buyer, c.period, c.start,
               array_position(period_rank, c.period) AS rank
        FROM unnest(p_buyer_cap_of, p_buyer_periods, p_buyer_starts) AS c (req, period, start)
        WHERE NOT p_tests[c.req] AND NOT dup[c.req]
        ORDER BY 1, 2, 5, 4
    LOOP
        LOOP
            SELECT leads, spend_cents INTO cur_leads, cur_spend FROM buyer_cap_counters
            WHERE tenant_id = r.tenant AND buyer_id = r.buyer AND period = r.period
              AND period_start = r.start
            FOR NO KEY UPDATE;
            IF FOUND THEN
                created := false;
                EXIT;
            END IF;
            INSERT INTO buyer_cap_counters (tenant_id, buyer_id, period, period_start, leads, spend_cents)
            VALUES (r.tenant, r.buyer, r.period, r.start, 0, 0)
            ON CONFLICT DO NOTHING;
            IF FOUND THEN
                cur_leads := 0;
                cur_spend := 0;
                created := true;
                EXIT;
            END IF;
        END LOOP;
        b_keys := b_keys || concat_ws(' ', r.tenant, r.buyer, r.period, r.start);
        b_tenant := b_tenant || r.tenant;
        b_buyer := b_buyer || r.buyer;
        b_period := b_period || r.period;
        b_start := b_start || r.start;
        b_leads := b_leads || cur_leads;
        b_spend := b_spend || cur_spend;
        b_add_leads := b_add_leads || 0::bigint;
        b_add_spend := b_add_spend || 0::bigint;
        b_created := b_created || created;
    END LOOP;
    FOR r IN
        SELECT DISTINCT p_tenants[pos] AS tenant, p_buyers[pos] AS buyer
        FROM generate_subscripts(p_sales, 1) AS pos
        WHERE NOT p_tests[pos] AND NOT dup[pos]
        ORDER BY 1, 2
    LOOP
        SELECT balance_cents, credit_limit_cents INTO cur_spend, cur_leads FROM buyers
        WHERE tenant_id = r.tenant AND id = r.buyer
        FOR NO KEY UPDATE;
        -- A buyer with no row covers nothing (gavel_reserve: 'insufficient_funds').
        CONTINUE WHEN NOT FOUND;
        u_keys := u_keys || concat_ws(' ', r.tenant, r.buyer);
        u_tenant := u_tenant || r.tenant;
        u_buyer := u_buyer || r.buyer;
        u_balance := u_balance || cur_spend;
        u_credit := u_credit || cur_leads;
        u_debit := u_debit || 0::bigint;
    END LOOP;

    -- Sales already written: a reservation made again because its caller lost the connection
    -- while the first commit was under way (store::sales, `reserve`'s retry). Looked for once
    -- every hot row is locked, so a first attempt still running has committed by now (it
    -- held the buyer's row, which every sale but a test takes). Such a request is answered
    -- 'reserved' and changes nothing.
    existing := ARRAY(SELECT s.id FROM lead_sales s
                      JOIN unnest(p_tenants, p_sales) AS q (tenant, id)
                        ON s.tenant_id = q.tenant AND s.id = q.id);

    -- Each request in arrival order, as gavel_reserve would decide it after the earlier ones.
    FOR i IN 1 .. n LOOP
        IF p_tests[i] THEN
            outcomes[i] := 'reserved';
            CONTINUE;
        END IF;
        mine := ARRAY(SELECT concat_ws(' ', p_tenants[i], p_buyers[i], encode(p_hashes[pos], 'hex'))
                      FROM unnest(array_positions(p_hash_of, i)) AS pos);
        IF p_sales[i] = ANY (existing) THEN
            taken := taken || mine;
            outcomes[i] := 'reserved';
            CONTINUE;
        END IF;
        -- The buyer is buying this consumer in an earlier request of the group: a pending sale.
        IF dup[i] OR (p_dedup_days[i] > 0 AND taken && mine) THEN
            outcomes[i] := 'duplicate';
            CONTINUE;
        END IF;
        fits := true;
        FOREACH k IN ARRAY array_positions(p_cap_of, i) LOOP
            x := array_position(c_keys, concat_ws(' ', p_tenants[i], p_contracts[i], p_periods[k], p_starts[k]));
            IF x IS NULL THEN
                RAISE EXCEPTION 'gavel_reserve_group: a cap counter was not locked';
            END IF;
            IF c_leads[x] + 1 > p_max_leads[k] OR c_spend[x] + p_prices[i] > p_max_spend[k] THEN
                fits := false;
                EXIT;
            END IF;
        END LOOP;
        IF fits THEN
            FOREACH k IN ARRAY array_positions(p_buyer_cap_of, i) LOOP
                x := array_position(b_keys, concat_ws(' ', p_tenants[i], p_buyers[i], p_buyer_periods[k], p_buyer_starts[k]));
                IF x IS NULL THEN
                    RAISE EXCEPTION 'gavel_reserve_group: a buyer cap counter was not locked';
                END IF;
                IF b_leads[x] + 1 > p_buyer_max_leads[k] OR b_spend[x] + p_prices[i] > p_buyer_max_spend[k] THEN
                    fits := false;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        IF NOT fits THEN
            outcomes[i] := 'capped';
            CONTINUE;
        END IF;
        x := array_position(u_keys, concat_ws(' ', p_tenants[i], p_buyers[i]));
        IF x IS NULL OR u_balance[x] - p_prices[i] < -u_credit[x] THEN
            outcomes[i] := 'insufficient_funds';
            CONTINUE;
        END IF;
        -- Admitted: its counters, its debit, its consumer.
        u_balance[x] := u_balance[x] - p_prices[i];
        u_debit[x] := u_debit[x] + p_prices[i];
        FOREACH k IN ARRAY array_positions(p_cap_of, i) LOOP
            x := array_position(c_keys, concat_ws(' ', p_tenants[i], p_contracts[i], p_periods[k], p_starts[k]));
            c_leads[x] := c_leads[x] + 1;
            c_spend[x] := c_spend[x] + p_prices[i];
            c_add_leads[x] := c_add_leads[x] + 1;
            c_add_spend[x] := c_add_spend[x] + p_prices[i];
        END LOOP;
        FOREACH k IN ARRAY array_positions(p_buyer_cap_of, i) LOOP
            x := array_position(b_keys, concat_ws(' ', p_tenants[i], p_buyers[i], p_buyer_periods[k], p_buyer_starts[k]));
            b_leads[x] := b_leads[x] + 1;
            b_spend[x] := b_spend[x] + p_prices[i];
            b_add_leads[x] := b_add_leads[x] + 1;
            b_add_spend[x] := b_add_spend[x] + p_prices[i];
        END LOOP;
        taken := taken || mine;
        outcomes[i] := 'reserved';
    END LOOP;

    -- Each row written once.
    UPDATE cap_counters c
    SET leads = c.leads + a.leads, spend_cents = c.spend_cents + a.spend
    FROM unnest(c_tenant, c_contract, c_period, c_start, c_add_leads, c_add_spend)
        AS a (tenant, contract, period, start, leads, spend)
    WHERE a.leads > 0 AND c.tenant_id = a.tenant AND c.contract_id = a.contract
      AND c.period = a.period AND c.period_start = a.start;
    DELETE FROM cap_counters c
    USING unnest(c_tenant, c_contract, c_period, c_start, c_add_leads, c_created)
        AS a (tenant, contract, period, start, leads, created)
    WHERE a.created AND a.leads = 0 AND c.tenant_id = a.tenant AND c.contract_id = a.contract
      AND c.period = a.period AND c.period_start = a.start;
    UPDATE buyer_cap_counters c
    SET leads = c.leads + a.leads, spend_cents = c.spend_cents + a.spend
    FROM unnest(b_tenant, b_buyer, b_period, b_start, b_add_leads, b_add_spend)
        AS a (tenant, buyer, period, start, leads, spend)
    WHERE a.leads > 0 AND c.tenant_id = a.tenant AND c.buyer_id = a.buyer
      AND c.period = a.period AND c.period_start = a.start;
    DELETE FROM buyer_cap_counters c
    USING unnest(b_tenant, b_buyer, b_period, b_start, b_add_leads, b_created)
        AS a (tenant, buyer, period, start, leads, created)
    WHERE a.created AND a.leads = 0 AND c.tenant_id = a.tenant AND c.buyer_id = a.buyer
      AND c.period = a.period AND c.period_start = a.start;
    UPDATE buyers b SET balance_cents = b.balance_cents - a.debit
    FROM unnest(u_tenant, u_buyer, u_debit) AS a (tenant, buyer, debit)
    WHERE a.debit <> 0 AND b.tenant_id = a.tenant AND b.id = a.buyer;

    INSERT INTO lead_sales (tenant_id, id, lead_id, ping_id, bid_id, contract_id, buyer_id, campaign_id,
                            partner_id, offer_id, sale_type, price_cents, payout_cents, status, test,
                            reserved_caps, pending_until, created_at, consumer_hashes, attempt,
                            replaces_bid_id)
    SELECT p_tenants[s], p_sales[s], p_leads[s], p_pings[s], p_bids[s], p_contracts[s], p_buyers[s],
           p_campaigns[s], p_partners[s], p_offers[s], p_sale_types[s], p_prices[s], p_payouts[s],
           'pending', p_tests[s], p_reserved[s], now() + p_pending_ms[s] * interval '1 millisecond',
           p_nows[s], ARRAY(SELECT p_hashes[pos] FROM unnest(array_positions(p_hash_of, s)) AS pos ORDER BY pos),
           p_attempts[s], p_replaces[s]
    FROM generate_subscripts(p_sales, 1) AS s
    WHERE outcomes[s] = 'reserved' AND p_sales[s] <> ALL (existing)
    ORDER BY s;
    INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, sale_id, created_at)
    SELECT p_tenants[s], p_ledger_ids[s], 'buyer', p_buyers[s], 'sale', -p_prices[s], p_sales[s], p_nows[s]
    FROM generate_subscripts(p_sales, 1) AS s
    WHERE outcomes[s] = 'reserved' AND NOT p_tests[s] AND p_sales[s] <> ALL (existing)
    ORDER BY s;
    RETURN outcomes;
END;
$$;
