-- The overview's data (GET /v1/admin/reports/overview, the console's Today): for the tenant
-- :tenant, :per_day pings on each of the last 7 days (today's spread from its midnight in the
-- tenant's timezone until now), 3 contracts each, 60 % with bids; a third of those posted,
-- each with one sale (90 % sold). Run: psql -v tenant=<id> -v per_day=50000 -f overview-week.sql
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO partners (tenant_id, id, name) VALUES (:'tenant', '00000000-0000-7000-8000-000000000001', 'P');
INSERT INTO offers (tenant_id, id, name, mode) VALUES (:'tenant', '00000000-0000-7000-8000-000000000002', 'auto', 'hybrid');
INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
VALUES (:'tenant', '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001',
        '00000000-0000-7000-8000-000000000002', sha256(convert_to(:'tenant', 'UTF8')), 'revshare', 70);
INSERT INTO buyers (tenant_id, id, name) SELECT :'tenant', ('00000000-0000-7000-8000-00000000010' || b)::uuid, 'B' FROM generate_series(1, 3) b;
INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, pricing, delivery)
SELECT :'tenant', ('00000000-0000-7000-8000-00000000020' || c)::uuid, ('00000000-0000-7000-8000-00000000010' || c)::uuid,
       '00000000-0000-7000-8000-000000000002', 'C', '{"type":"fixed","shared_cents":1000}', '{"url":"http://x/"}'
FROM generate_series(1, 3) c;
-- Each day d (0 = today) from its local midnight for 24 hours (today: until now); the pings'
-- ids are UUIDv7 of their time, as Gavel's are.
CREATE TEMP TABLE p AS
SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 3)
        || '8' || substr(md5(random()::text), 1, 15))::uuid AS id, at, bids
FROM (SELECT m + random() * (least(now(), m + interval '1 day') - m) AS at, (random() < 0.6) AS bids
FROM (SELECT (date_trunc('day', now() AT TIME ZONE t.timezone) - d * interval '1 day') AT TIME ZONE t.timezone AS m
      FROM tenants t, generate_series(0, 6) d WHERE t.id = :'tenant') days,
     generate_series(1, :per_day)) AS timed;
INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, created_at, latency_us, http_status, result)
SELECT :'tenant', id, 'ping', '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001',
       '00000000-0000-7000-8000-000000000002', at, 1000 + (random() * 9000)::bigint, 200,
       CASE WHEN bids THEN 'bids' ELSE 'no_bids' END FROM p;
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
CREATE TEMP TABLE s AS
SELECT gen_random_uuid() AS sale_id, gen_random_uuid() AS lead_id, p.id AS ping_id,
       least(now(), p.at + interval '1 second') AS at, 1 + (row_number() OVER () % 3) AS c, random() AS r
FROM p WHERE p.bids AND random() < 1.0 / 3;
INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, ping_id, created_at, latency_us, http_status, result)
SELECT :'tenant', gen_random_uuid(), 'post', '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001',
       '00000000-0000-7000-8000-000000000002', ping_id, at, 200000, 200, CASE WHEN r < 0.9 THEN 'sold' ELSE 'unsold' END FROM s;
INSERT INTO leads (tenant_id, id, ping_id, campaign_id, partner_id, offer_id, lead, created_at)
SELECT :'tenant', lead_id, ping_id, '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000001',
       '00000000-0000-7000-8000-000000000002', '{}', at FROM s;
INSERT INTO lead_sales (tenant_id, id, lead_id, ping_id, bid_id, contract_id, buyer_id, campaign_id, partner_id,
                        offer_id, sale_type, price_cents, payout_cents, status, reason, created_at, settled_at)
SELECT :'tenant', sale_id, lead_id, ping_id, gen_random_uuid(), ('00000000-0000-7000-8000-00000000020' || c)::uuid,
       ('00000000-0000-7000-8000-00000000010' || c)::uuid, '00000000-0000-7000-8000-000000000003',
       '00000000-0000-7000-8000-000000000001', '00000000-0000-7000-8000-000000000002', 'shared', 1000, 700,
       CASE WHEN r < 0.9 THEN 'sold' ELSE 'rejected' END, CASE WHEN r >= 0.9 THEN 'no thanks' END, at, at
FROM s;
COMMIT;
ANALYZE;
