-- 1,000,000 pings over 30 days for the tenant :tenant, 3 contracts each, 60 % with bids; a third
-- of the pings with bids posted (200,000 leads), each with one sale (the report's sales figures
-- read lead_sales only): 90 % sold, 10 % rejected; of the sold, 5 % returned since (status
-- `returned`, an approved return) and 1 % with a return requested, not yet decided.
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
-- The posted pings' leads and sales, the sales spread over the three contracts.
CREATE TEMP TABLE s AS
SELECT gen_random_uuid() AS sale_id, gen_random_uuid() AS lead_id, p.id AS ping_id, p.at + interval '1 second' AS at,
       1 + (row_number() OVER () % 3) AS c, random() AS r
FROM p WHERE p.bids AND random() < 1.0 / 3;
INSERT INTO leads (tenant_id, id, ping_id, campaign_id, partner_id, offer_id, lead, created_at)
SELECT :'tenant', lead_id, ping_id, '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001',
       '00000000-0000-7000-8000-000000000002', '{}', at FROM s;
INSERT INTO lead_sales (tenant_id, id, lead_id, ping_id, bid_id, contract_id, buyer_id, campaign_id, partner_id,
                        offer_id, sale_type, price_cents, payout_cents, status, reason, created_at, settled_at)
SELECT :'tenant', sale_id, lead_id, ping_id, gen_random_uuid(), ('00000000-0000-7000-8000-00000000020' || c)::uuid,
       ('00000000-0000-7000-8000-00000000010' || c)::uuid, '00000000-0000-7000-8000-000000000003',
       '00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 'shared', 1000, 700,
       CASE WHEN r < 0.045 THEN 'returned' WHEN r < 0.9 THEN 'sold' ELSE 'rejected' END,
       CASE WHEN r >= 0.9 THEN 'no thanks' END, at, at + interval '200 milliseconds'
FROM s;
-- 5 % of the sold (4.5 % of the sales) returned: an approved return each (the partner's payout
-- taken back); 1 % of the sold with a return requested.
INSERT INTO returns (tenant_id, id, sale_id, lead_id, contract_id, buyer_id, partner_id, offer_id, status, reason,
                     price_cents, payout_reversed_cents, requested_at, decided_at)
SELECT :'tenant', gen_random_uuid(), sale_id, lead_id, ('00000000-0000-7000-8000-00000000020' || c)::uuid,
       ('00000000-0000-7000-8000-00000000010' || c)::uuid, '00000000-0000-7000-8000-000000000001',
       '00000000-0000-7000-8000-000000000002',
       CASE WHEN r < 0.045 THEN 'approved' ELSE 'requested' END, 'bad_phone', 1000,
       CASE WHEN r < 0.045 THEN 700 END, least(now(), at + interval '1 day'),
       CASE WHEN r < 0.045 THEN least(now(), at + interval '2 days') END
FROM s WHERE r < 0.054;
COMMIT;
ANALYZE;
