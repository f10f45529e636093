//! `gavel demo`: a demo tenant to try Gavel with, and its buyers' endpoints served by the same
//! process under `/demo/buyers/…`.
//!
//! The seed is idempotent: every demo row has a fixed id and is upserted, buyers are funded
//! once, and each run issues fresh keys (the old ones stop working), since keys are stored only
//! as hashes and cannot be shown again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use gavel::app::AppState;
use gavel::keys;
use gavel::store::tenants;

/// Namespace of the demo's fixed ids (UUIDv5 of a name, so they are stable across runs).
const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x6761_7665_6c2d_4465_8d6f_0000_0000_0001);

pub fn demo_id(name: &str) -> Uuid {
    Uuid::new_v5(&DEMO_NAMESPACE, name.as_bytes())
}

pub const DEMO_TENANT_NAME: &str = "Demo Lead Exchange";
/// How long a demo ping can be posted.
const PING_TTL_SECONDS: u32 = 300;
/// The command that runs the demo, as the README gives it.
pub const RUN_AGAIN: &str = "cargo run -- demo";
const DEMO_TIMEZONE: &str = "America/New_York";

/// What the seed issued: shown to the user once.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub tenant_id: Uuid,
    pub admin_key: String,
    pub posting_key: String,
    pub base_url: String,
}

struct DemoBuyer {
    slug: &'static str,
    name: &'static str,
    funds_cents: i64,
    credit_limit_cents: i64,
}

const BUYERS: [DemoBuyer; 8] = [
    DemoBuyer {
        slug: "acme",
        name: "Acme Insurance",
        funds_cents: 500_000,
        credit_limit_cents: 0,
    },
    DemoBuyer {
        slug: "blue-harbor",
        name: "Blue Harbor Auto",
        funds_cents: 200_000,
        credit_limit_cents: 50_000,
    },
    DemoBuyer {
        slug: "cedar",
        name: "Cedar Mutual",
        funds_cents: 100_000,
        credit_limit_cents: 0,
    },
    DemoBuyer {
        slug: "delta",
        name: "Delta Direct",
        funds_cents: 300_000,
        credit_limit_cents: 0,
    },
    DemoBuyer {
        slug: "evergreen",
        name: "Evergreen Leads",
        funds_cents: 150_000,
        credit_limit_cents: 0,
    },
    DemoBuyer {
        slug: "fulcrum",
        name: "Fulcrum Insurance",
        funds_cents: 80_000,
        credit_limit_cents: 20_000,
    },
    DemoBuyer {
        slug: "granite",
        name: "Granite Auto Group",
        funds_cents: 400_000,
        credit_limit_cents: 0,
    },
    DemoBuyer {
        slug: "hollis",
        name: "Hollis Insurance Agency",
        funds_cents: 250_000,
        credit_limit_cents: 0,
    },
];

/// The auto-insurance offer's fields (the specification's example).
pub fn offer_fields() -> Value {
    json!([
        { "name": "state", "type": "string", "pattern": "^[A-Z]{2}$", "required": true },
        { "name": "zip", "type": "string", "pattern": "^[0-9]{5}$", "required": true },
        { "name": "age", "type": "integer" },
        { "name": "homeowner", "type": "boolean" },
        { "name": "credit", "type": "string", "enum": ["excellent", "good", "fair", "poor"] },
        { "name": "first_name", "type": "string", "pii": true, "required": true },
        { "name": "last_name", "type": "string", "pii": true },
        { "name": "email", "type": "email", "pii": true, "required": true },
        { "name": "phone", "type": "phone", "pii": true, "required": true }
    ])
}

struct DemoContract {
    buyer: &'static str,
    name: &'static str,
    priority: i32,
    pricing: Value,
    filters: Value,
    schedule: Option<Value>,
    caps: Value,
    dedup_days: i32,
    /// The delivery's own `request` and `response` (a buyer with its own API), or none:
    /// Gavel's native JSON with the demo's accept rule.
    delivery: Option<Value>,
}

/// Every demo contract takes returns for 7 days; a limit of 100 % lets a new user return the
/// very first sale (a real contract keeps it near 10 %).
fn demo_returns() -> Value {
    json!({ "allowed": true, "window_days": 7, "max_percent": 100, "period": "month",
            "auto_approve": false,
            "reasons": ["bad_phone", "bad_email", "duplicate", "not_interested", "wrong_person", "fraud", "other"] })
}

/// The demo contracts, one per buyer; RTB URLs point at this server's address `base`.
fn contracts(base: &str) -> Vec<DemoContract> {
    vec![
        DemoContract {
            buyer: "acme",
            name: "TX/OK homeowners or good credit",
            priority: 1,
            pricing: json!({ "type": "fixed", "exclusive_cents": 4000, "shared_cents": 1250 }),
            filters: json!([
                { "field": "state", "op": "in", "value": ["TX", "OK"] },
                { "any": [ { "field": "homeowner", "op": "eq", "value": true },
                           { "field": "credit", "op": "in", "value": ["excellent", "good"] } ] },
                { "field": "age", "op": "between", "value": [25, 64] },
                { "field": "zip", "op": "prefix", "value": ["73", "74", "75", "76", "77", "78", "79"] }
            ]),
            schedule: None,
            caps: json!([ { "period": "day", "max_leads": 100 }, { "period": "month", "max_spend_cents": 500000 } ]),
            dedup_days: 30,
            delivery: None,
        },
        DemoContract {
            buyer: "blue-harbor",
            name: "Business hours, not poor credit",
            priority: 0,
            pricing: json!({ "type": "fixed", "exclusive_cents": 3000, "shared_cents": 910 }),
            filters: json!([ { "field": "credit", "op": "not_in", "value": ["poor"] } ]),
            schedule: Some(json!({ "timezone": "America/Chicago",
                "days": { "mon": [["08:00", "20:00"]], "tue": [["08:00", "20:00"]],
                          "wed": [["08:00", "20:00"]], "thu": [["08:00", "20:00"]],
                          "fri": [["08:00", "20:00"]], "sat": [["10:00", "14:00"]] } })),
            caps: json!([ { "period": "day", "max_leads": 50 } ]),
            dedup_days: 30,
            delivery: None,
        },
        DemoContract {
            buyer: "cedar",
            name: "Shared leads, adults",
            priority: 0,
            pricing: json!({ "type": "fixed", "shared_cents": 1050 }),
            filters: json!([ { "field": "age", "op": "gte", "value": 21 } ]),
            schedule: None,
            caps: json!([ { "period": "hour", "max_leads": 20 }, { "period": "total", "max_spend_cents": 1000000 } ]),
            dedup_days: 90,
            delivery: None,
        },
        DemoContract {
            buyer: "delta",
            name: "Real-time bids by credit",
            priority: 0,
            pricing: json!({ "type": "rtb", "url": format!("{base}/demo/buyers/delta/rtb"), "timeout_ms": 150,
                             "max_bid_cents": 6000 }),
            filters: json!([ { "not": { "field": "state", "op": "in", "value": ["NY", "CA"] } } ]),
            schedule: None,
            caps: json!([ { "period": "week", "max_spend_cents": 250000 } ]),
            dedup_days: 30,
            delivery: None,
        },
        DemoContract {
            buyer: "evergreen",
            name: "Real-time bids, slow endpoint",
            priority: 0,
            pricing: json!({ "type": "rtb", "url": format!("{base}/demo/buyers/evergreen/rtb"), "timeout_ms": 150,
                             "exclusive_bid_path": "/bid/exclusive", "shared_bid_path": "/bid/shared",
                             "ref_path": "/bid/id" }),
            filters: json!([]),
            schedule: None,
            caps: json!([]),
            dedup_days: 0,
            delivery: None,
        },
        DemoContract {
            buyer: "fulcrum",
            name: "Shared leads, rejects odd zip codes",
            priority: 0,
            pricing: json!({ "type": "fixed", "shared_cents": 770 }),
            filters: json!([ { "field": "zip", "op": "matches", "value": "^[0-9]{5}$" } ]),
            schedule: None,
            caps: json!([ { "period": "day", "max_leads": 200 } ]),
            dedup_days: 7,
            delivery: None,
        },
        DemoContract {
            buyer: "granite",
            name: "XML bids and XML delivery",
            priority: 0,
            pricing: granite_rtb(base),
            filters: json!([ { "field": "state", "op": "in", "value": ["TX", "OK", "LA", "AR"] } ]),
            schedule: None,
            caps: json!([ { "period": "day", "max_leads": 100 } ]),
            dedup_days: 30,
            delivery: Some(granite_delivery(base)),
        },
        DemoContract {
            buyer: "hollis",
            name: "Form post, plain-text answer",
            priority: 0,
            pricing: json!({ "type": "fixed", "exclusive_cents": 4100, "shared_cents": 1300 }),
            filters: json!([ { "field": "credit", "op": "in", "value": ["excellent", "good"] } ]),
            schedule: None,
            caps: json!([ { "period": "day", "max_leads": 100 } ]),
            // Hollis keeps its own dedup list: its answer says DUPLICATE (a sale `duplicate`).
            dedup_days: 0,
            delivery: Some(hollis_delivery(base)),
        },
    ]
}

/// Granite takes an XML bid request and answers XML: a text template and response rules.
fn granite_rtb(base: &str) -> Value {
    json!({
        "type": "rtb", "url": format!("{base}/demo/buyers/granite/rtb"), "timeout_ms": 150,
        "request": {
            "format": "xml",
            "template": concat!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                "<bid_request id=\"{{ ping_id }}\">\n",
                "  <source>{{ partner.name }}</source>\n",
                "  <state>{{ lead.state }}</state>\n  <zip>{{ lead.zip }}</zip>\n",
                "  <age>{{ lead.age }}</age>\n",
                "  <homeowner>{{ 'yes' if lead.homeowner else 'no' }}</homeowner>\n",
                "  <credit>{{ lead.credit | upper }}</credit>\n",
                "  <test>{{ test }}</test>\n",
                "</bid_request>\n"
            )
        },
        "response": {
            "format": "xml",
            "exclusive_bid": { "path": "/bid_response/price" },
            "shared_bid": { "path": "/bid_response/shared_price" },
            "ref": { "path": "/bid_response/@token" },
            "no_bid": { "path": "/bid_response/status", "equals": "no_bid" },
            "reason": { "path": "/bid_response/reason" }
        }
    })
}

/// Granite's delivery: an XML field map (nested elements, a formatted phone, its bid token).
fn granite_delivery(base: &str) -> Value {
    json!({
        "url": format!("{base}/demo/buyers/granite/deliver"), "timeout_ms": 2000,
        "request": {
            "format": "xml",
            "root": "lead",
            "fields": {
                "token": "rtb_ref",
                "price": "price",
                "contact/first_name": "lead.first_name",
                "contact/last_name": "lead.last_name",
                "contact/email": { "from": "lead.email", "transform": ["trim", "lower"] },
                "contact/phone": { "from": "lead.phone", "transform": ["digits", "phone:(###) ###-####"] },
                "vehicle_owner/state": "lead.state",
                "vehicle_owner/zip": "lead.zip",
                "consent_url": "consent.trustedform_cert_url",
                "test": "test"
            }
        },
        "response": {
            "format": "xml",
            "accepted": { "path": "/result/status", "equals": "accepted" },
            "duplicate": { "path": "/result/status", "equals": "duplicate" },
            "reason": { "path": "/result/reason" }
        }
    })
}

/// Hollis takes a form post with its own field names and answers one line of text.
fn hollis_delivery(base: &str) -> Value {
    json!({
        "url": format!("{base}/demo/buyers/hollis/deliver"), "timeout_ms": 2000,
        "headers": { "X-Api-Key": "hollis-demo-key-0000-0000-0000-0001" },
        "request": {
            "format": "form",
            "fields": {
                "fname": "lead.first_name",
                "lname": { "from": "lead.last_name", "default": "" },
                "email": "lead.email",
                "phone10": { "from": "lead.phone", "transform": ["digits", "phone:##########"] },
                "st": "lead.state",
                "zip": "lead.zip",
                "credit_grade": { "from": "lead.credit", "map": { "excellent": "A", "good": "B", "fair": "C" }, "map_default": "D" },
                "tcpa_url": "consent.trustedform_cert_url",
                "src": { "concat": [{ "value": "gavel-" }, "partner.name"] },
                "lead_ref": "lead_id"
            }
        },
        "response": {
            "format": "text",
            "accepted": { "regex": "^OK\\b", "exists": true },
            "duplicate": { "regex": "^DUPLICATE\\b", "exists": true },
            "reason": { "regex": "(?m)^(?:REJECTED|DUPLICATE):? *(.*)$" }
        }
    })
}

/// The demo's buyers are served by Gavel itself at `address`: that address is allowed as an
/// outbound destination (the address policy refuses loopback and private addresses by default).
pub fn allow_buyer_endpoints(settings: &mut gavel::config::Settings, address: SocketAddr) {
    let ip = if address.ip().is_unspecified() {
        [127, 0, 0, 1].into()
    } else {
        address.ip()
    };
    settings.outbound_allow.push(ip.to_string());
}

/// Seeds (or refreshes) the demo tenant, pointing its buyers at `address`.
pub async fn seed(db: &PgPool, address: SocketAddr) -> Result<Seeded> {
    let host = if address.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), address.port())
    } else {
        address
    };
    let base = format!("http://{host}");
    let tenant_id = demo_id("tenant");
    let offer_id = demo_id("offer/auto-insurance");
    let mut tx = db.begin().await?;

    sqlx::query(
        "INSERT INTO tenants (id, name, timezone) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone",
    )
    .bind(tenant_id)
    .bind(DEMO_TENANT_NAME)
    .bind(DEMO_TIMEZONE)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL",
    )
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?;
    let admin_key = tenants::insert_admin_key(&mut tx, tenant_id, "gavel demo").await?;

    sqlx::query(
        "INSERT INTO offers (tenant_id, id, name, status, mode, max_buyers, exclusive_floor_cents,
                             ping_ttl_seconds, dedup_days, require_consent, fields)
         VALUES ($1, $2, 'auto-insurance', 'active', 'hybrid', 3, 2500, $5, 30, $3, $4)
         ON CONFLICT (tenant_id, id) DO UPDATE SET
             name = EXCLUDED.name, status = EXCLUDED.status, mode = EXCLUDED.mode,
             max_buyers = EXCLUDED.max_buyers, exclusive_floor_cents = EXCLUDED.exclusive_floor_cents,
             ping_ttl_seconds = EXCLUDED.ping_ttl_seconds, dedup_days = EXCLUDED.dedup_days,
             require_consent = EXCLUDED.require_consent, fields = EXCLUDED.fields",
    )
    .bind(tenant_id)
    .bind(offer_id)
    .bind(json!(["trustedform_cert_url", "text"]))
    .bind(offer_fields())
    .bind(PING_TTL_SECONDS as i32)
    .execute(&mut *tx)
    .await?;

    // Two partners: one paid a revenue share, one a fixed amount per sale.
    let campaigns = [
        (
            "quote-funnel",
            "Quote Funnel Media",
            "revshare",
            Some("70.00"),
            None::<i64>,
            200,
        ),
        (
            "blue-oak",
            "Blue Oak Affiliates",
            "fixed",
            None,
            Some(800),
            0,
        ),
    ];
    let mut posting_key = String::new();
    for (slug, name, payout_type, percent, amount_cents, min_payout_cents) in campaigns {
        let partner_id = demo_id(&format!("partner/{slug}"));
        sqlx::query(
            "INSERT INTO partners (tenant_id, id, name, status) VALUES ($1, $2, $3, 'active')
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name, status = 'active'",
        )
        .bind(tenant_id)
        .bind(partner_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let key = keys::generate(keys::POSTING_KEY_PREFIX);
        // The percent goes as decimal text, cast by Postgres: no float reaches the column.
        sqlx::query(
            "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, status, posting_key_hash,
                                    payout_type, payout_percent, payout_amount_cents, min_payout_cents,
                                    ping_rate_per_second)
             VALUES ($1, $2, $3, $4, 'active', $5, $6, $7::numeric, $8, $9, 50)
             ON CONFLICT (tenant_id, id) DO UPDATE SET
                 status = 'active', posting_key_hash = EXCLUDED.posting_key_hash,
                 payout_type = EXCLUDED.payout_type, payout_percent = EXCLUDED.payout_percent,
                 payout_amount_cents = EXCLUDED.payout_amount_cents,
                 min_payout_cents = EXCLUDED.min_payout_cents,
                 ping_rate_per_second = EXCLUDED.ping_rate_per_second",
        )
        .bind(tenant_id)
        .bind(demo_id(&format!("campaign/{slug}")))
        .bind(partner_id)
        .bind(offer_id)
        .bind(&keys::hash(&key)[..])
        .bind(payout_type)
        .bind(percent)
        .bind(amount_cents)
        .bind(min_payout_cents)
        .execute(&mut *tx)
        .await?;
        if posting_key.is_empty() {
            posting_key = key;
        }
    }

    for buyer in &BUYERS {
        let buyer_id = demo_id(&format!("buyer/{}", buyer.slug));
        sqlx::query(
            "INSERT INTO buyers (tenant_id, id, name, status, credit_limit_cents) VALUES ($1, $2, $3, 'active', $4)
             ON CONFLICT (tenant_id, id) DO UPDATE SET
                 name = EXCLUDED.name, status = 'active', credit_limit_cents = EXCLUDED.credit_limit_cents",
        )
        .bind(tenant_id)
        .bind(buyer_id)
        .bind(buyer.name)
        .bind(buyer.credit_limit_cents)
        .execute(&mut *tx)
        .await?;
        // Funded once: the ledger entry has a fixed id, and the balance moves only if it is new.
        sqlx::query(
            "WITH funded AS (
                 INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, note)
                 VALUES ($1, $2, 'buyer', $3, 'funds', $4, 'demo opening balance')
                 ON CONFLICT (tenant_id, id) DO NOTHING
                 RETURNING amount_cents)
             UPDATE buyers SET balance_cents = balance_cents + (SELECT coalesce(sum(amount_cents), 0) FROM funded)
             WHERE tenant_id = $1 AND id = $3",
        )
        .bind(tenant_id)
        .bind(demo_id(&format!("funds/{}", buyer.slug)))
        .bind(buyer_id)
        .bind(buyer.funds_cents)
        .execute(&mut *tx)
        .await?;
    }

    for contract in contracts(&base) {
        let delivery = contract.delivery.unwrap_or_else(|| {
            json!({
                "url": format!("{base}/demo/buyers/{}/deliver", contract.buyer),
                "timeout_ms": 2000,
                "accept": { "path": "/status", "equals": "accepted" },
                "reason_path": "/message"
            })
        });
        sqlx::query(
            "INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, status, priority, pricing,
                                    filters, schedule, caps, dedup_days, delivery, returns)
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (tenant_id, id) DO UPDATE SET
                 name = EXCLUDED.name, status = 'active', priority = EXCLUDED.priority,
                 pricing = EXCLUDED.pricing, filters = EXCLUDED.filters, schedule = EXCLUDED.schedule,
                 caps = EXCLUDED.caps, dedup_days = EXCLUDED.dedup_days, delivery = EXCLUDED.delivery,
                 returns = EXCLUDED.returns",
        )
        .bind(tenant_id)
        .bind(demo_id(&format!("contract/{}", contract.buyer)))
        .bind(demo_id(&format!("buyer/{}", contract.buyer)))
        .bind(offer_id)
        .bind(contract.name)
        .bind(contract.priority)
        .bind(contract.pricing)
        .bind(contract.filters)
        .bind(contract.schedule)
        .bind(contract.caps)
        .bind(contract.dedup_days)
        .bind(delivery)
        .bind(demo_returns())
        .execute(&mut *tx)
        .await?;
    }

    tx.commit().await?;
    Ok(Seeded {
        tenant_id,
        admin_key,
        posting_key,
        base_url: base,
    })
}

/// What `gavel demo` prints: the keys and commands to paste.
pub fn instructions(seeded: &Seeded) -> String {
    let base = &seeded.base_url;
    format!(
        r#"
Gavel demo is running at {base}
  tenant    {tenant}  ("{tenant_name}", America/New_York)
  admin key {admin_key}
  posting key (partner Quote Funnel Media, offer auto-insurance, 70 % revenue share)
            {posting_key}

The console: open {base}/console in a browser and sign in with the admin key above
(Today's figures, every auction and why each contract won or lost, caps, balances, reports).

Ping (the partial lead, no PII), see its bids and keep its ping_id:

PING=$(curl -s {base}/v1/ping -H 'content-type: application/json' \
  -H 'Authorization: Bearer {posting_key}' \
  -d '{{"lead": {{"state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good"}}}}'); echo "$PING"
PING_ID=$(echo "$PING" | sed -E 's/.*"ping_id": *"([^"]+)".*/\1/')

Post the full lead for that ping, within {ttl_minutes} minutes (then the ping expires):

curl -s {base}/v1/post -H 'content-type: application/json' \
  -H 'Authorization: Bearer {posting_key}' \
  -d '{{"ping_id": "'"$PING_ID"'",
       "lead": {{"state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good",
                "first_name": "Ada", "last_name": "Lovelace",
                "email": "ada+'"$RANDOM"'@example.com", "phone": "214555'"$((RANDOM % 9000 + 1000))"'"}},
       "consent": {{"trustedform_cert_url": "https://cert.trustedform.com/demo",
                   "text": "By clicking Submit I agree to be contacted.",
                   "consented_at": "2026-11-25T17:04:12Z", "ip": "203.0.113.7"}}}}'; echo

See the whole auction of that ping: every contract's outcome and reason, the bids, and the
buyers' own answers (in the console: {base}/console/auctions/$PING_ID):

curl -s {base}/v1/admin/pings/$PING_ID -H 'Authorization: Bearer {admin_key}'; echo

A buyer returns a bad lead: take the newest sale, request its return, approve it (the buyer
is refunded the price, the partner's payout is taken back), and see both on the partner's
statement for this month (add -H 'Accept: text/csv' for a spreadsheet):

SALE_ID=$(curl -s "{base}/v1/admin/sales?status=sold&limit=1" -H 'Authorization: Bearer {admin_key}' \
  | sed -E 's/.*"items": *\[\{{"id": *"([^"]+)".*/\1/')
RETURN_ID=$(curl -s {base}/v1/admin/sales/$SALE_ID/returns -H 'content-type: application/json' \
  -H 'Authorization: Bearer {admin_key}' -d '{{"reason": "bad_phone", "note": "disconnected"}}' \
  | sed -E 's/^\{{"id": *"([^"]+)".*/\1/'); echo "$RETURN_ID"
curl -s -X POST {base}/v1/admin/returns/$RETURN_ID/approve -H 'Authorization: Bearer {admin_key}'; echo
curl -s {base}/v1/admin/partners/{partner}/statement -H 'Authorization: Bearer {admin_key}'; echo

Granite Auto Group and Hollis Insurance Agency have their own APIs, set up with request
templates and response rules (docs/buyer-integrations.md): Granite bids and takes leads in
XML, Hollis takes a form post and answers a line of text. Render a delivery to Hollis, send
it marked as a test, and see how its answer is read (nothing is sold or charged):

curl -s {base}/v1/admin/contracts/{hollis}/test -H 'content-type: application/json' \
  -H 'Authorization: Bearer {admin_key}' \
  -d '{{"call": "delivery", "send": true, "campaign_id": "{campaign}",
       "lead": {{"state": "TX", "zip": "75001", "credit": "good", "first_name": "Ada",
                "last_name": "Lovelace", "email": "ada@example.com", "phone": "2145550123"}},
       "consent": {{"trustedform_cert_url": "https://cert.trustedform.com/demo"}}}}'; echo

Stop with Ctrl-C. Run `{command}` again for new keys (these stop working then); the demo's
data is kept in .gavel/ (delete that directory to start afresh).
"#,
        ttl_minutes = PING_TTL_SECONDS / 60,
        command = RUN_AGAIN,
        tenant = seeded.tenant_id,
        tenant_name = DEMO_TENANT_NAME,
        admin_key = seeded.admin_key,
        posting_key = seeded.posting_key,
        hollis = demo_id("contract/hollis"),
        partner = demo_id("partner/quote-funnel"),
        campaign = demo_id("campaign/quote-funnel"),
    )
}

/// The demo buyers' own endpoints: real-time bids and lead delivery, with realistic behaviour
/// (some bid, some decline, one is slow, one rejects some leads).
pub fn buyer_endpoints() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/demo/buyers/{buyer}/rtb", post(rtb))
        .route("/demo/buyers/{buyer}/deliver", post(deliver))
        .route("/demo/buyers/granite/rtb", post(granite_bid))
        .route("/demo/buyers/granite/deliver", post(granite_deliver))
        .route("/demo/buyers/hollis/deliver", post(hollis_deliver))
}

static EVERGREEN_CALLS: AtomicU64 = AtomicU64::new(0);

async fn rtb(Path(buyer): Path<String>, Json(request): Json<Value>) -> Response {
    let credit = request
        .pointer("/lead/credit")
        .and_then(Value::as_str)
        .unwrap_or("");
    match buyer.as_str() {
        // Bids by credit tier; declines poor credit.
        "delta" => {
            let exclusive = match credit {
                "excellent" => "45.00",
                "good" => "38.505", // more decimals than a cent: Gavel truncates to 38.50
                "fair" => "22.00",
                _ => return StatusCode::NO_CONTENT.into_response(),
            };
            Json(json!({ "exclusive_bid": exclusive, "shared_bid": 11.25, "ref": format!("delta-{}", Uuid::new_v4()) }))
                .into_response()
        }
        // Answers in its own shape, and too slowly two times out of three.
        "evergreen" => {
            let call = EVERGREEN_CALLS.fetch_add(1, Ordering::Relaxed);
            let delay = if call.is_multiple_of(3) { 20 } else { 400 };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Json(json!({ "bid": { "exclusive": 36.0, "shared": 9.5, "id": format!("ev-{call}") } }))
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn deliver(Path(buyer): Path<String>, Json(delivery): Json<Value>) -> Response {
    let zip = delivery
        .pointer("/lead/zip")
        .and_then(Value::as_str)
        .unwrap_or("");
    let odd_zip = zip
        .chars()
        .last()
        .and_then(|c| c.to_digit(10))
        .is_some_and(|d| d % 2 == 1);
    if buyer == "fulcrum" && odd_zip {
        return Json(json!({ "status": "rejected", "message": "outside our service area" }))
            .into_response();
    }
    if BUYERS.iter().any(|b| b.slug == buyer) {
        Json(json!({ "status": "accepted", "id": Uuid::new_v4() })).into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// The text of the first `<name>` element of a small XML document (the demo buyers' own
/// parsing: a real buyer has its own).
fn xml_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..end])
}

fn xml_answer(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/xml")],
        body,
    )
        .into_response()
}

static GRANITE_TOKENS: AtomicU64 = AtomicU64::new(0);

/// Granite bids in XML by credit tier (its request says `<credit>GOOD</credit>`).
async fn granite_bid(body: String) -> Response {
    let (exclusive, shared) = match xml_text(&body, "credit") {
        Some("EXCELLENT") => ("48.00", "14.00"),
        Some("GOOD") => ("42.00", "13.50"),
        Some("FAIR") => ("24.75", "8.00"),
        _ => {
            return xml_answer(
                "<bid_response><status>no_bid</status><reason>credit tier not bought</reason></bid_response>"
                    .to_owned(),
            );
        }
    };
    let token = GRANITE_TOKENS.fetch_add(1, Ordering::Relaxed);
    xml_answer(format!(
        "<?xml version=\"1.0\"?><bid_response token=\"gr-{token}\"><status>bid</status>\
         <price>{exclusive}</price><shared_price>{shared}</shared_price></bid_response>"
    ))
}

/// Granite takes the lead as XML; it does not serve West Texas (zip codes 79…).
async fn granite_deliver(body: String) -> Response {
    if xml_text(&body, "zip").is_some_and(|zip| zip.starts_with("79")) {
        return xml_answer(
            "<result><status>rejected</status><reason>outside our service area</reason></result>"
                .to_owned(),
        );
    }
    xml_answer(format!(
        "<result><status>accepted</status><lead_id>{}</lead_id></result>",
        Uuid::new_v4()
    ))
}

/// The phones Hollis has already bought: it answers `DUPLICATE` for them.
static HOLLIS_PHONES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Hollis takes a form post and answers one line: `OK <id>`, `DUPLICATE` or `REJECTED: why`.
async fn hollis_deliver(
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok())
        != Some("hollis-demo-key-0000-0000-0000-0001")
    {
        return (StatusCode::UNAUTHORIZED, "REJECTED: bad API key").into_response();
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if field("lname").is_empty() {
        return "REJECTED: last name required".into_response();
    }
    let phone = field("phone10").to_owned();
    let mut bought = HOLLIS_PHONES.lock().expect("the demo's lock");
    if bought.contains(&phone) {
        return "DUPLICATE: we already have this consumer".into_response();
    }
    bought.push(phone);
    format!("OK {}", Uuid::new_v4()).into_response()
}
