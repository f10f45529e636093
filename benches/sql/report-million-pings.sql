-- 1,000,000 pings over 30 days for the tenant :tenant, 3 contracts each, 60 % with bids; no
-- winners or sales (the report's sales figures read lead_sales, which this leaves empty).
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO partners (tenant_id, id, name) VALUES (:'tenant', '00000000-0000-7000-8000-000000000001', 'P');
INSERT INTO offers (tenant_id, id, name, mode) VALUES (:'tenant', '00000000-0000-7000-8000-000000000002', 'auto', 'hybrid');
INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
VALUES (:'tenant', '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001',
        '00000000-0000-7000-8000-000000000002', sha256('report'), 'revshare', 70);
INSERT INTO buyers (tenant_id, id, name) SELECT :'tenant', ('00000000-0000-7000-8000-00000000010' || b)::uuid, 'B' FROM generate_series(1, 3) b;
INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, pricing, delivery)
SELECT :'tenant', ('00000000-0000-7000-8000-00000000020' || c)::uuid, ('00000000-0000-7000-8000-00000000010' || c)::uuid,
       '00000000-0000-7000-8000-000000000002', 'C', '{"type":"fixed","shared_cents":1000}', '{"url":"http://x/"}'
FROM generate_series(1, 3) c;
CREATE TEMP TABLE p AS
SELECT gen_random_uuid() AS id, now() - (random() * interval '30 days') AS at, (random() < 0.6) AS bids
FROM generate_series(1, 1000000);
INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, created_at, latency_us, http_status, result)
SELECT :'tenant', id, 'ping', '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001',
       '00000000-0000-7000-8000-000000000002', at, 2000, 200, CASE WHEN bids THEN 'bids' ELSE 'no_bids' END FROM p;
-- Every contract's outcome, one declines row per ping: contract 1 outbid (when the ping had
-- bids) or capped, contract 2 filtered, contract 3 capped.
INSERT INTO distribution_declines (tenant_id, ping_id, created_at, contract_ids, buyer_ids, reasons, details,
                                   exclusive_bids_cents, shared_bids_cents, rtb_ms, rtb_refs)
SELECT :'tenant', p.id, p.at,
       ARRAY['00000000-0000-7000-8000-000000000201', '00000000-0000-7000-8000-000000000202',
             '00000000-0000-7000-8000-000000000203']::uuid[],
       ARRAY['00000000-0000-7000-8000-000000000101', '00000000-0000-7000-8000-000000000102',
             '00000000-0000-7000-8000-000000000103']::uuid[],
       ARRAY[CASE WHEN p.bids THEN 'outbid' ELSE 'cap_reached' END, 'filtered', 'cap_reached']::decline_reason[],
       '{NULL,NULL,NULL}', '{NULL,NULL,NULL}', ARRAY[CASE WHEN p.bids THEN 1000 END, NULL, NULL]::bigint[],
       '{NULL,NULL,NULL}', '{NULL,NULL,NULL}'
FROM p;
COMMIT;
ANALYZE;
