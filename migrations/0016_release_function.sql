-- A sale's release as one call, as its reservation is (migration 0003): the buyer rejected the
-- lead or the delivery failed, so the sale ends in its status and everything it reserved is
-- given back — the contract's cap counters, the buyer's (migration 0013), the buyer's money
-- with a `release` ledger entry. Done from Gavel in four round trips, it held the contract's
-- hot counter rows from the give-back to the commit: under a cascade's rejections three hot
-- contracts queued their posts for seconds (BENCHMARKS.md, session 11). Here the rows are held
-- for the time the database needs.
--
-- Returns false, changing nothing, when the sale is not pending any more (settled already).
-- Lock order, as everywhere in Gavel: the sale's row, the contract's counters (in the order
-- reserved), the buyer's counters, then the buyer.
CREATE FUNCTION gavel_release(
    p_tenant      uuid,
    p_sale        uuid,
    p_status      text,
    p_reason      text,
    p_http_status integer,
    p_answer      text,
    p_delivery_ms integer,
    p_now         timestamptz,
    p_ledger_id   uuid
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    sale           record;
    periods        text[];
    starts         timestamptz[];
    buyer_periods  text[];
    buyer_starts   timestamptz[];
BEGIN
    SELECT contract_id, buyer_id, price_cents, test, reserved_caps INTO sale
    FROM lead_sales
    WHERE tenant_id = p_tenant AND id = p_sale AND status = 'pending'
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE lead_sales
    SET status = p_status, reason = p_reason, buyer_http_status = p_http_status,
        buyer_response = p_answer, delivery_ms = p_delivery_ms, settled_at = p_now,
        pending_until = NULL
    WHERE tenant_id = p_tenant AND id = p_sale;
    IF NOT sale.test THEN
        -- The reservation's periods, in its order (the lock order).
        SELECT coalesce(array_agg(e ->> 'period' ORDER BY n), '{}'),
               coalesce(array_agg((e ->> 'period_start')::timestamptz ORDER BY n), '{}')
        INTO periods, starts
        FROM jsonb_array_elements(sale.reserved_caps) WITH ORDINALITY AS r (e, n)
        WHERE e ? 'period' AND e ? 'period_start';
        PERFORM gavel_give_back_caps(p_tenant, sale.contract_id, periods, starts, sale.price_cents,
                                     cardinality(periods));
        SELECT coalesce(array_agg(e ->> 'buyer_period' ORDER BY n), '{}'),
               coalesce(array_agg((e ->> 'buyer_period_start')::timestamptz ORDER BY n), '{}')
        INTO buyer_periods, buyer_starts
        FROM jsonb_array_elements(sale.reserved_caps) WITH ORDINALITY AS r (e, n)
        WHERE e ? 'buyer_period' AND e ? 'buyer_period_start';
        IF cardinality(buyer_periods) > 0 THEN
            PERFORM gavel_give_back_buyer_caps(p_tenant, sale.buyer_id, buyer_periods, buyer_starts,
                                               sale.price_cents, cardinality(buyer_periods));
        END IF;
        UPDATE buyers SET balance_cents = balance_cents + sale.price_cents
        WHERE tenant_id = p_tenant AND id = sale.buyer_id;
        INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, sale_id, created_at)
        VALUES (p_tenant, p_ledger_id, 'buyer', sale.buyer_id, 'release', sale.price_cents, p_sale, p_now);
    END IF;
    RETURN true;
END;
$$;
