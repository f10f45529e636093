//! The benchmark tenant.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use gavel::keys;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::BenchOptions;

pub(super) struct Seeded {
    pub(super) tenant_id: Uuid,
    pub(super) campaign_id: Uuid,
    pub(super) partner_id: Uuid,
    pub(super) offer_id: Uuid,
    pub(super) buyer_id: Uuid,
    pub(super) contract_id: Uuid,
    pub(super) lead_id: Uuid,
    pub(super) posting_key: String,
}

/// A fresh benchmark tenant: the auto-insurance offer in hybrid mode, one campaign without a
/// rate limit, funded buyers, and contracts whose checks all run and pass for the bench lead.
pub(super) async fn seed(
    db: &PgPool,
    options: &BenchOptions,
    buyers: SocketAddr,
) -> Result<Seeded> {
    let tenant = gavel::store::tenants::create(db, "Benchmark", "America/New_York").await?;
    let tenant_id = tenant.tenant_id;
    let (offer_id, partner_id, campaign_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let posting_key = keys::generate(keys::POSTING_KEY_PREFIX);
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO offers (tenant_id, id, name, mode, max_buyers, exclusive_floor_cents, fields)
         VALUES ($1, $2, 'auto-insurance', 'hybrid', 3, 2500, $3)",
    )
    .bind(tenant_id)
    .bind(offer_id)
    .bind(crate::demo::offer_fields())
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO partners (tenant_id, id, name) VALUES ($1, $2, 'Bench partner')")
        .bind(tenant_id)
        .bind(partner_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
         VALUES ($1, $2, $3, $4, $5, 'revshare', 70)",
    )
    .bind(tenant_id)
    .bind(campaign_id)
    .bind(partner_id)
    .bind(offer_id)
    .bind(&keys::hash(&posting_key)[..])
    .execute(&mut *tx)
    .await?;
    let all_week: serde_json::Map<String, Value> =
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|day| (day.to_string(), json!([["00:00", "24:00"]])))
            .collect();
    let schedule = json!({ "timezone": "America/Chicago", "days": all_week });
    let delivery = json!({ "url": format!("http://{buyers}/deliver"), "timeout_ms": 2000,
                           "accept": { "path": "/status", "equals": "accepted" } });
    let mut first = None;
    let total = options.contracts + options.rtb_buyers;
    for i in 0..total {
        // Two contracts per buyer, as exchanges have; each buyer can afford anything.
        let buyer_id = Uuid::now_v7();
        sqlx::query("INSERT INTO buyers (tenant_id, id, name, balance_cents) VALUES ($1, $2, $3, 100000000000)")
            .bind(tenant_id)
            .bind(buyer_id)
            .bind(format!("Buyer {i}"))
            .execute(&mut *tx)
            .await?;
        let rtb = i >= options.contracts;
        let pricing = if !rtb {
            json!({ "type": "fixed", "exclusive_cents": 2000 + (i * 37) % 4000, "shared_cents": 500 + (i * 13) % 1000 })
        } else if options.slow_buyer_ms.is_some() && i == options.contracts {
            json!({ "type": "rtb", "url": format!("http://{buyers}/rtb/slow"), "timeout_ms": options.rtb_timeout_ms })
        } else if options.rtb_templates {
            templated_rtb(buyers, options.rtb_timeout_ms)
        } else {
            json!({ "type": "rtb", "url": format!("http://{buyers}/rtb"), "timeout_ms": options.rtb_timeout_ms })
        };
        let contract_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, priority, pricing, filters, schedule, caps,
                                    dedup_days, delivery)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 30, $11)",
        )
        .bind(tenant_id)
        .bind(contract_id)
        .bind(buyer_id)
        .bind(offer_id)
        .bind(format!("Contract {i}"))
        .bind((i % 3) as i32)
        .bind(pricing)
        .bind(json!([
            { "field": "state", "op": "in", "value": ["TX", "OK", "LA"] },
            { "any": [ { "field": "homeowner", "op": "eq", "value": true },
                       { "field": "credit", "op": "in", "value": ["excellent", "good"] } ] },
            { "field": "age", "op": "between", "value": [25, 64] },
            { "field": "zip", "op": "prefix", "value": ["750", "751", "752"] }
        ]))
        .bind(&schedule)
        .bind(json!([{ "period": "day", "max_leads": 1000000000 }, { "period": "month", "max_spend_cents": 100000000000i64 }]))
        .bind(&delivery)
        .execute(&mut *tx)
        .await?;
        first.get_or_insert((buyer_id, contract_id));
    }
    let (buyer_id, contract_id) = first.context("the bench needs at least one contract")?;
    // A lead for pgbench's reservation transaction to hang its sales on.
    let lead_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO leads (tenant_id, id, ping_id, campaign_id, partner_id, offer_id, lead)
         VALUES ($1, $2, gen_random_uuid(), $3, $4, $5, '{}')",
    )
    .bind(tenant_id)
    .bind(lead_id)
    .bind(campaign_id)
    .bind(partner_id)
    .bind(offer_id)
    .execute(&mut *tx)
    .await?;
    if options.suppression_entries > 0 {
        suppression_list(&mut tx, tenant_id, offer_id, options.suppression_entries).await?;
    }
    tx.commit().await?;
    Ok(Seeded {
        tenant_id,
        campaign_id,
        partner_id,
        offer_id,
        buyer_id,
        contract_id,
        lead_id,
        posting_key,
    })
}

/// A suppression list of `entries` consumers (hashes of numbers: none is a bench consumer's),
/// attached to the offer.
async fn suppression_list(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    offer_id: Uuid,
    entries: u64,
) -> Result<()> {
    let list_id = Uuid::now_v7();
    let entries = i64::try_from(entries).context("too many suppression entries")?;
    // A million rows outlast the pool's statement timeout on a busy disk.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO suppression_lists (tenant_id, id, name, entry_count)
         VALUES ($1, $2, 'Bench do-not-call', $3)",
    )
    .bind(tenant_id)
    .bind(list_id)
    .bind(entries)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO suppression_entries (tenant_id, list_id, hash)
         SELECT $1, $2, sha256(n::text::bytea) FROM generate_series(1, $3::bigint) AS n",
    )
    .bind(tenant_id)
    .bind(list_id)
    .bind(entries)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE offers SET suppression_list_ids = ARRAY[$3] WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(offer_id)
    .bind(list_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// An RTB contract for a buyer with its own API (`--rtb-templates`): a form post from a field
/// map, an XML answer read by response rules (docs/buyer-integrations.md).
fn templated_rtb(buyers: SocketAddr, timeout_ms: u32) -> Value {
    json!({
        "type": "rtb", "url": format!("http://{buyers}/rtb/xml"), "timeout_ms": timeout_ms,
        "request": {
            "format": "form",
            "headers": { "X-Api-Key": "bench-key-{{ offer.name }}" },
            "fields": {
                "ping_id": "ping_id",
                "State": "lead.state",
                "PostalCode": "lead.zip",
                "Age": { "from": "lead.age", "transform": ["string"] },
                "OwnsHome": { "from": "lead.homeowner", "map": { "true": "Y", "false": "N" }, "default": "U" },
                "CreditTier": { "from": "lead.credit", "map": { "excellent": "A", "good": "B", "fair": "C" }, "map_default": "D" },
                "Test": { "from": "test", "transform": ["string", "upper"] },
                "Source": { "concat": [{ "value": "gavel-" }, "partner.name"] }
            }
        },
        "response": {
            "format": "xml",
            "exclusive_bid": { "path": "/response/bid/exclusive" },
            "shared_bid": { "path": "/response/bid/shared" },
            "ref": { "path": "/response/bid/@id" },
            "no_bid": { "path": "/response/@status", "equals": "no_bid" }
        }
    })
}
