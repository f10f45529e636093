-- Gavel's whole schema. See docs/schema.md for what each table and column means.
--
-- Conventions:
--   * every table but `tenants` has `tenant_id` as the first column of its primary key and of
--     every index a request uses, so tenants can be sharded across nodes;
--   * references carry `tenant_id` too (composite foreign keys), so a row can never point at
--     another tenant's row;
--   * money is integer cents (`*_cents bigint`), never a float;
--   * configuration tables send NOTIFY on the `gavel_config` channel when they change, so that
--     running servers reload their in-memory configuration (admin API and SQL edits alike).

-- ---------------------------------------------------------------------------------------------
-- Helpers

CREATE FUNCTION gavel_set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- One notification per (table, tenant) and transaction: Postgres folds identical payloads sent
-- in one transaction, so a bulk UPDATE costs one reload, not one per row.
-- The trigger's argument names the column holding the tenant id (default tenant_id).
CREATE FUNCTION gavel_notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tenant_column text := coalesce(TG_ARGV[0], 'tenant_id');
    row_tenant text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_tenant := to_jsonb(OLD) ->> tenant_column;
    ELSE
        row_tenant := to_jsonb(NEW) ->> tenant_column;
    END IF;
    PERFORM pg_notify('gavel_config',
        json_build_object('table', TG_TABLE_NAME, 'tenant_id', row_tenant)::text);
    RETURN NULL;
END $$;

-- Rejects a name that is not an IANA timezone known to this server.
CREATE FUNCTION gavel_check_timezone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.timezone) THEN
        RAISE EXCEPTION 'unknown timezone %', NEW.timezone
            USING ERRCODE = 'check_violation', CONSTRAINT = 'timezone_known';
    END IF;
    RETURN NEW;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Configuration

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    timezone    text NOT NULL,
    currency    text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          uuid NOT NULL,
    key_hash    bytea NOT NULL CHECK (length(key_hash) = 32),
    role        text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin')),
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id)
);
-- The key names its tenant, so this lookup is the one index that does not lead with tenant_id.
CREATE UNIQUE INDEX api_keys_key_hash ON api_keys (key_hash);

CREATE TABLE partners (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          uuid NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE buyers (
    tenant_id           uuid NOT NULL REFERENCES tenants (id),
    id                  uuid NOT NULL,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    credit_limit_cents  bigint NOT NULL DEFAULT 0 CHECK (credit_limit_cents >= 0),
    -- Changed only together with a ledger entry: balance = sum of the buyer's ledger entries.
    balance_cents       bigint NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE offers (
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    id                     uuid NOT NULL,
    name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status                 text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    mode                   text NOT NULL CHECK (mode IN ('exclusive', 'multisell', 'hybrid', 'optimize')),
    max_buyers             integer NOT NULL DEFAULT 3 CHECK (max_buyers BETWEEN 1 AND 100),
    exclusive_floor_cents  bigint NOT NULL DEFAULT 0 CHECK (exclusive_floor_cents >= 0),
    ping_ttl_seconds       integer NOT NULL DEFAULT 300 CHECK (ping_ttl_seconds BETWEEN 1 AND 86400),
    dedup_days             integer NOT NULL DEFAULT 0 CHECK (dedup_days BETWEEN 0 AND 365),
    require_consent        jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(require_consent) = 'array'),
    fields                 jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(fields) = 'array'),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX offers_name ON offers (tenant_id, name) WHERE status <> 'archived';

CREATE TABLE campaigns (
    tenant_id                uuid NOT NULL REFERENCES tenants (id),
    id                       uuid NOT NULL,
    partner_id               uuid NOT NULL,
    offer_id                 uuid NOT NULL,
    status                   text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    posting_key_hash         bytea NOT NULL CHECK (length(posting_key_hash) = 32),
    payout_type              text NOT NULL CHECK (payout_type IN ('revshare', 'margin', 'fixed')),
    payout_percent           numeric(5, 2) CHECK (payout_percent BETWEEN 0 AND 100),
    payout_amount_cents      bigint CHECK (payout_amount_cents >= 0),
    min_payout_cents         bigint NOT NULL DEFAULT 0 CHECK (min_payout_cents >= 0),
    ping_rate_per_second     integer CHECK (ping_rate_per_second > 0),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, partner_id) REFERENCES partners (tenant_id, id),
    FOREIGN KEY (tenant_id, offer_id) REFERENCES offers (tenant_id, id),
    CONSTRAINT campaigns_payout_rule CHECK (
        (payout_type = 'revshare' AND payout_percent IS NOT NULL AND payout_amount_cents IS NULL)
        OR (payout_type IN ('margin', 'fixed') AND payout_amount_cents IS NOT NULL AND payout_percent IS NULL))
);
-- The posting key names tenant, partner and offer: looked up by hash alone.
CREATE UNIQUE INDEX campaigns_posting_key_hash ON campaigns (posting_key_hash);
CREATE INDEX campaigns_offer ON campaigns (tenant_id, offer_id);
CREATE INDEX campaigns_partner ON campaigns (tenant_id, partner_id);

CREATE TABLE contracts (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    buyer_id     uuid NOT NULL,
    offer_id     uuid NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    priority     integer NOT NULL DEFAULT 0,
    -- {"type":"fixed","exclusive_cents":4000,"shared_cents":1250}
    -- {"type":"rtb","url":"https://…","timeout_ms":150,"headers":{…},"max_bid_cents":5000,
    --  "exclusive_bid_path":"/bid/exclusive","shared_bid_path":…,"ref_path":…}
    pricing      jsonb NOT NULL CHECK (
                     jsonb_typeof(pricing) = 'object' AND pricing ->> 'type' IN ('fixed', 'rtb')
                     AND (pricing ->> 'type' = 'fixed' OR pricing ? 'url')
                     -- amounts are whole, non-negative cents
                     AND NOT jsonb_path_exists(pricing,
                         '$.* ? (@.type() == "number") ? (@ < 0 || @.floor() != @)')),
    filters      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(filters) = 'array'),
    -- null = always open; {"timezone":"America/Chicago","days":{"mon":[["08:00","18:00"]],…}}
    schedule     jsonb CHECK (schedule IS NULL OR (jsonb_typeof(schedule) = 'object' AND schedule ? 'days')),
    -- [{"period":"day","max_leads":100},{"period":"month","max_spend_cents":500000}]
    caps         jsonb NOT NULL DEFAULT '[]' CHECK (
                     jsonb_typeof(caps) = 'array'
                     -- each cap: a known period and exactly one positive whole limit
                     AND NOT jsonb_path_exists(caps, '$[*] ? (!(@.period == "hour" || @.period == "day"
                         || @.period == "week" || @.period == "month" || @.period == "total"))')
                     AND NOT jsonb_path_exists(caps, '$[*] ? ((exists(@.max_leads) && exists(@.max_spend_cents))
                         || (!(exists(@.max_leads)) && !(exists(@.max_spend_cents))))')
                     AND NOT jsonb_path_exists(caps, '$[*].max_leads ? (@.type() != "number" || @ < 1 || @.floor() != @)')
                     AND NOT jsonb_path_exists(caps, '$[*].max_spend_cents ? (@.type() != "number" || @ < 1 || @.floor() != @)')),
    dedup_days   integer NOT NULL DEFAULT 0 CHECK (dedup_days BETWEEN 0 AND 365),
    -- {"url":"https://…","timeout_ms":5000,"headers":{…},"accept":{"path":…,"equals":…},"reason_path":…}
    delivery     jsonb NOT NULL CHECK (jsonb_typeof(delivery) = 'object' AND delivery ? 'url'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, buyer_id) REFERENCES buyers (tenant_id, id),
    FOREIGN KEY (tenant_id, offer_id) REFERENCES offers (tenant_id, id)
);
CREATE INDEX contracts_offer ON contracts (tenant_id, offer_id);
CREATE INDEX contracts_buyer ON contracts (tenant_id, buyer_id);

CREATE TRIGGER tenants_timezone BEFORE INSERT OR UPDATE OF timezone ON tenants
    FOR EACH ROW EXECUTE FUNCTION gavel_check_timezone();

CREATE TRIGGER tenants_updated_at BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
CREATE TRIGGER partners_updated_at BEFORE UPDATE ON partners
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
CREATE TRIGGER buyers_updated_at BEFORE UPDATE OF name, status, credit_limit_cents ON buyers
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
CREATE TRIGGER offers_updated_at BEFORE UPDATE ON offers
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
CREATE TRIGGER campaigns_updated_at BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();
CREATE TRIGGER contracts_updated_at BEFORE UPDATE ON contracts
    FOR EACH ROW EXECUTE FUNCTION gavel_set_updated_at();

CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config('id');
CREATE TRIGGER partners_notify AFTER INSERT OR UPDATE OR DELETE ON partners
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();
-- A buyer's balance moves with every sale: only its configuration columns trigger a reload.
CREATE TRIGGER buyers_notify AFTER INSERT OR DELETE OR UPDATE OF name, status, credit_limit_cents ON buyers
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();
CREATE TRIGGER offers_notify AFTER INSERT OR UPDATE OR DELETE ON offers
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();
CREATE TRIGGER campaigns_notify AFTER INSERT OR UPDATE OR DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();
CREATE TRIGGER contracts_notify AFTER INSERT OR UPDATE OR DELETE ON contracts
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();

-- ---------------------------------------------------------------------------------------------
-- Auction state

-- Usage of each cap of a contract in one period. A row exists once a sale was reserved in the
-- period; `period_start` is the period's first instant in the tenant's timezone ('total' uses
-- the epoch). Counters are changed only by conditional UPDATEs that keep them within the cap.
CREATE TABLE cap_counters (
    tenant_id     uuid NOT NULL,
    contract_id   uuid NOT NULL,
    period        text NOT NULL CHECK (period IN ('hour', 'day', 'week', 'month', 'total')),
    period_start  timestamptz NOT NULL,
    leads         integer NOT NULL DEFAULT 0 CHECK (leads >= 0),
    spend_cents   bigint NOT NULL DEFAULT 0 CHECK (spend_cents >= 0),
    PRIMARY KEY (tenant_id, contract_id, period, period_start),
    FOREIGN KEY (tenant_id, contract_id) REFERENCES contracts (tenant_id, id)
);

-- Consumers a buyer bought: SHA-256 of the normalized email or phone, one row per
-- (buyer, offer, key) holding the latest sale. Serves the offer-level dedup (any buyer of the
-- offer) and the buyer-level dedup (any offer of the buyer). Test sales write none.
CREATE TABLE dedup_keys (
    tenant_id   uuid NOT NULL,
    key_hash    bytea NOT NULL CHECK (length(key_hash) = 32),
    buyer_id    uuid NOT NULL,
    offer_id    uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('email', 'phone')),
    sold_at     timestamptz NOT NULL,
    sale_id     uuid NOT NULL,
    PRIMARY KEY (tenant_id, key_hash, buyer_id, offer_id),
    FOREIGN KEY (tenant_id, buyer_id) REFERENCES buyers (tenant_id, id),
    FOREIGN KEY (tenant_id, offer_id) REFERENCES offers (tenant_id, id)
);

-- When each contract last sold: ranks equal bids round-robin (the longest without a sale first).
-- Written when a sale completes; kept apart from `contracts` so that sales fire no reload.
CREATE TABLE contract_stats (
    tenant_id     uuid NOT NULL,
    contract_id   uuid NOT NULL,
    last_sold_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contract_id),
    FOREIGN KEY (tenant_id, contract_id) REFERENCES contracts (tenant_id, id)
);

-- ---------------------------------------------------------------------------------------------
-- Audit trail

-- One row per authenticated partner call. A ping's row (kind 'ping') is the ping record itself:
-- its id is the ping_id, it holds the ping's non-PII lead fields (to bind the post to them), the
-- auction's result and, once posted, the claim and the stored answer that make retries safe.
CREATE TABLE posting_log (
    tenant_id          uuid NOT NULL,
    id                 uuid NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('ping', 'post', 'direct')),
    campaign_id        uuid NOT NULL,
    partner_id         uuid NOT NULL,
    offer_id           uuid NOT NULL,
    -- the ping a post or direct post belongs to (null for a ping row, or a request refused
    -- before its ping was found)
    ping_id            uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    latency_us         bigint NOT NULL DEFAULT 0 CHECK (latency_us >= 0),
    http_status        integer NOT NULL CHECK (http_status BETWEEN 100 AND 599),
    -- ping: bids | no_bids | duplicate; post: sold | partially_sold | unsold; or an error code
    result             text NOT NULL,
    test               boolean NOT NULL DEFAULT false,
    -- ping only
    lead               jsonb,
    min_payout_cents   bigint CHECK (min_payout_cents >= 0),
    sale_type          text CHECK (sale_type IN ('exclusive', 'shared')),
    payout_cents       bigint CHECK (payout_cents >= 0),
    expires_at         timestamptz,
    -- ping only, set by its first post: the claim (the request's hash) and the lead it stored;
    -- the post's answer is kept with the lead (it may quote a buyer's words)
    post_claimed_at    timestamptz,
    post_body_sha256   bytea CHECK (length(post_body_sha256) = 32),
    lead_id            uuid,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id)
);
CREATE INDEX posting_log_time ON posting_log (tenant_id, created_at);
CREATE INDEX posting_log_campaign_time ON posting_log (tenant_id, campaign_id, created_at);
CREATE INDEX posting_log_ping ON posting_log (tenant_id, ping_id) WHERE ping_id IS NOT NULL;


-- One row per contract that saw a ping: how the auction ended for it, and after the post, the
-- final disposition of its sale.
CREATE TABLE lead_distribution (
    tenant_id           uuid NOT NULL,
    ping_id             uuid NOT NULL,
    contract_id         uuid NOT NULL,
    buyer_id            uuid NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    outcome             text NOT NULL CHECK (outcome IN ('won', 'outbid', 'declined')),
    -- a decline reason of the auction (null when won)
    reason              text CHECK (reason IN (
                            'contract_paused', 'buyer_paused', 'filtered', 'outside_schedule',
                            'cap_reached', 'duplicate', 'insufficient_funds', 'no_price_for_sale_type',
                            'rtb_no_bid', 'rtb_timeout', 'rtb_error', 'rtb_invalid', 'below_floor',
                            'outbid')),
    detail              text,
    exclusive_bid_cents bigint CHECK (exclusive_bid_cents >= 0),
    shared_bid_cents    bigint CHECK (shared_bid_cents >= 0),
    rtb_ms              integer CHECK (rtb_ms >= 0),
    rtb_ref             text,
    -- set for a winner: the bid the partner sees, what it sells, its price and payout
    bid_id              uuid,
    sale_type           text CHECK (sale_type IN ('exclusive', 'shared')),
    price_cents         bigint CHECK (price_cents >= 0),
    payout_cents        bigint CHECK (payout_cents >= 0),
    -- after the post: the sale's final status (see lead_sales.status)
    disposition         text CHECK (disposition IN (
                            'pending', 'sold', 'rejected', 'failed', 'capped',
                            'insufficient_funds', 'duplicate', 'not_accepted')),
    PRIMARY KEY (tenant_id, ping_id, contract_id),
    CONSTRAINT lead_distribution_declined_reason CHECK (outcome <> 'declined' OR reason IS NOT NULL),
    CONSTRAINT lead_distribution_winner CHECK (
        (outcome = 'won') = (bid_id IS NOT NULL AND price_cents IS NOT NULL AND sale_type IS NOT NULL))
);
CREATE UNIQUE INDEX lead_distribution_bid ON lead_distribution (tenant_id, bid_id) WHERE bid_id IS NOT NULL;
CREATE INDEX lead_distribution_contract_time ON lead_distribution (tenant_id, contract_id, created_at);

-- A posted lead, with every field (PII included) and its consent, stored once.
CREATE TABLE leads (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    ping_id      uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    partner_id   uuid NOT NULL,
    offer_id     uuid NOT NULL,
    lead         jsonb NOT NULL CHECK (jsonb_typeof(lead) = 'object'),
    consent      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(consent) = 'object'),
    test         boolean NOT NULL DEFAULT false,
    -- the post's answer, once settled: every retry of the post receives it
    post_response jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id)
);
CREATE UNIQUE INDEX leads_ping ON leads (tenant_id, ping_id);
-- Posts whose request died before answering: the interrupted-sale sweep answers them.
CREATE INDEX leads_unanswered ON leads (tenant_id, created_at) WHERE post_response IS NULL;
CREATE INDEX leads_time ON leads (tenant_id, created_at);

-- One row per winning bid of a posted lead.
CREATE TABLE lead_sales (
    tenant_id           uuid NOT NULL,
    id                  uuid NOT NULL,
    lead_id             uuid NOT NULL,
    ping_id             uuid NOT NULL,
    bid_id              uuid NOT NULL,
    contract_id         uuid NOT NULL,
    buyer_id            uuid NOT NULL,
    campaign_id         uuid NOT NULL,
    partner_id          uuid NOT NULL,
    offer_id            uuid NOT NULL,
    sale_type           text NOT NULL CHECK (sale_type IN ('exclusive', 'shared')),
    price_cents         bigint NOT NULL CHECK (price_cents >= 0),
    payout_cents        bigint NOT NULL CHECK (payout_cents >= 0 AND payout_cents <= price_cents),
    status              text NOT NULL CHECK (status IN (
                            'pending', 'sold', 'rejected', 'failed', 'capped',
                            'insufficient_funds', 'duplicate', 'not_accepted')),
    reason              text,
    test                boolean NOT NULL DEFAULT false,
    -- SHA-256 of the consumer's normalized email and phone: the buyer's dedup sees sales
    -- still pending
    consumer_hashes     bytea[] NOT NULL DEFAULT '{}',
    -- the cap counters this sale holds while pending: [{"period":"day","period_start":"…"}]
    reserved_caps       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(reserved_caps) = 'array'),
    -- a pending sale not settled by then was interrupted (crash) and is released
    pending_until       timestamptz,
    buyer_http_status   integer,
    buyer_response      text CHECK (length(buyer_response) <= 4096),
    delivery_ms         integer CHECK (delivery_ms >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    settled_at          timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id),
    FOREIGN KEY (tenant_id, contract_id) REFERENCES contracts (tenant_id, id),
    FOREIGN KEY (tenant_id, buyer_id) REFERENCES buyers (tenant_id, id)
);
CREATE UNIQUE INDEX lead_sales_bid ON lead_sales (tenant_id, bid_id);
CREATE INDEX lead_sales_time ON lead_sales (tenant_id, created_at);
CREATE INDEX lead_sales_buyer_time ON lead_sales (tenant_id, buyer_id, created_at);
CREATE INDEX lead_sales_contract_time ON lead_sales (tenant_id, contract_id, created_at);
CREATE INDEX lead_sales_pending ON lead_sales (tenant_id, pending_until) WHERE status = 'pending';
CREATE INDEX lead_sales_buyer_pending ON lead_sales (tenant_id, buyer_id) WHERE status = 'pending';

-- Every change of a buyer's balance or a partner's earnings, each tied to its cause.
CREATE TABLE ledger_entries (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    account       text NOT NULL CHECK (account IN ('buyer', 'partner')),
    buyer_id      uuid,
    partner_id    uuid,
    -- funds: an operator's adjustment; sale: a buyer charged or a partner paid for a sale;
    -- release: a sale's charge given back
    kind          text NOT NULL CHECK (kind IN ('funds', 'sale', 'release')),
    -- signed, as seen by the account: a buyer's sale charge is negative and its release
    -- positive; a partner's sale payout is positive
    amount_cents  bigint NOT NULL,
    sale_id       uuid,
    note          text CHECK (length(note) <= 500),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, buyer_id) REFERENCES buyers (tenant_id, id),
    FOREIGN KEY (tenant_id, partner_id) REFERENCES partners (tenant_id, id),
    FOREIGN KEY (tenant_id, sale_id) REFERENCES lead_sales (tenant_id, id),
    CONSTRAINT ledger_entries_account CHECK (
        (account = 'buyer' AND buyer_id IS NOT NULL AND partner_id IS NULL)
        OR (account = 'partner' AND partner_id IS NOT NULL AND buyer_id IS NULL)),
    CONSTRAINT ledger_entries_cause CHECK ((kind = 'funds') = (sale_id IS NULL))
);
CREATE INDEX ledger_entries_buyer ON ledger_entries (tenant_id, buyer_id, created_at) WHERE buyer_id IS NOT NULL;
CREATE INDEX ledger_entries_partner ON ledger_entries (tenant_id, partner_id, created_at) WHERE partner_id IS NOT NULL;
CREATE INDEX ledger_entries_sale ON ledger_entries (tenant_id, sale_id) WHERE sale_id IS NOT NULL;
