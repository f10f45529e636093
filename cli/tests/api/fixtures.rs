//! Builds a tenant's configuration by plain SQL (as an operator may), for the auction tests.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::harness::TestApp;

/// A tenant with one offer, one partner and its campaign.
pub struct Exchange {
    pub pool: PgPool,
    pub tenant_id: Uuid,
    pub offer_id: Uuid,
    pub partner_id: Uuid,
    pub campaign_id: Uuid,
    pub posting_key: String,
    pub admin_key: String,
}

/// The offer's fields: the demo's auto-insurance schema.
pub fn offer_fields() -> Value {
    gavel_cli::demo::offer_fields()
}

pub fn ping_lead() -> Value {
    json!({ "state": "TX", "zip": "75001", "age": 42, "homeowner": true, "credit": "good" })
}

/// A contract as the tests describe it; unset parts take harmless defaults.
#[derive(Default)]
pub struct ContractSpec {
    pub pricing: Option<Value>,
    pub filters: Option<Value>,
    pub schedule: Option<Value>,
    pub caps: Option<Value>,
    pub dedup_days: i32,
    pub priority: i32,
    pub status: Option<&'static str>,
    pub delivery: Option<Value>,
}

impl ContractSpec {
    pub fn fixed(exclusive_cents: Option<i64>, shared_cents: Option<i64>) -> Self {
        let mut pricing = json!({ "type": "fixed" });
        if let Some(cents) = exclusive_cents {
            pricing["exclusive_cents"] = json!(cents);
        }
        if let Some(cents) = shared_cents {
            pricing["shared_cents"] = json!(cents);
        }
        ContractSpec {
            pricing: Some(pricing),
            ..Default::default()
        }
    }

    pub fn rtb(url: String, timeout_ms: u32) -> Self {
        ContractSpec {
            pricing: Some(json!({ "type": "rtb", "url": url, "timeout_ms": timeout_ms })),
            ..Default::default()
        }
    }
}

impl Exchange {
    /// A tenant in America/New_York with the auto-insurance offer in `mode` and a campaign
    /// paying the partner a 70 % revenue share.
    pub async fn create(pool: &PgPool, mode: &str) -> Exchange {
        let tenant = gavel::store::tenants::create(pool, "Test Exchange", "America/New_York")
            .await
            .unwrap();
        let (offer_id, partner_id, campaign_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        sqlx::query(
            "INSERT INTO offers (tenant_id, id, name, mode, max_buyers, exclusive_floor_cents, fields)
             VALUES ($1, $2, 'auto-insurance', $3, 3, 2500, $4)",
        )
        .bind(tenant.tenant_id)
        .bind(offer_id)
        .bind(mode)
        .bind(offer_fields())
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO partners (tenant_id, id, name) VALUES ($1, $2, 'Quote Funnel')")
            .bind(tenant.tenant_id)
            .bind(partner_id)
            .execute(pool)
            .await
            .unwrap();
        let posting_key = gavel::keys::generate(gavel::keys::POSTING_KEY_PREFIX);
        sqlx::query(
            "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, posting_key_hash, payout_type, payout_percent)
             VALUES ($1, $2, $3, $4, $5, 'revshare', 70)",
        )
        .bind(tenant.tenant_id)
        .bind(campaign_id)
        .bind(partner_id)
        .bind(offer_id)
        .bind(&gavel::keys::hash(&posting_key)[..])
        .execute(pool)
        .await
        .unwrap();
        Exchange {
            pool: pool.clone(),
            tenant_id: tenant.tenant_id,
            offer_id,
            partner_id,
            campaign_id,
            posting_key,
            admin_key: tenant.admin_key,
        }
    }

    /// A buyer funded with `balance_cents` (through the ledger).
    pub async fn buyer(&self, balance_cents: i64) -> Uuid {
        let buyer_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO buyers (tenant_id, id, name, balance_cents) VALUES ($1, $2, 'Buyer', $3)",
        )
        .bind(self.tenant_id)
        .bind(buyer_id)
        .bind(balance_cents)
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents)
             VALUES ($1, $2, 'buyer', $3, 'funds', $4)",
        )
        .bind(self.tenant_id)
        .bind(Uuid::now_v7())
        .bind(buyer_id)
        .bind(balance_cents)
        .execute(&self.pool)
        .await
        .unwrap();
        buyer_id
    }

    pub async fn contract(&self, buyer_id: Uuid, spec: ContractSpec) -> Uuid {
        let contract_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, status, priority, pricing, filters,
                                    schedule, caps, dedup_days, delivery)
             VALUES ($1, $2, $3, $4, 'Contract', $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(self.tenant_id)
        .bind(contract_id)
        .bind(buyer_id)
        .bind(self.offer_id)
        .bind(spec.status.unwrap_or("active"))
        .bind(spec.priority)
        .bind(spec.pricing.unwrap_or_else(|| json!({ "type": "fixed", "shared_cents": 1000 })))
        .bind(spec.filters.unwrap_or_else(|| json!([])))
        .bind(spec.schedule)
        .bind(spec.caps.unwrap_or_else(|| json!([])))
        .bind(spec.dedup_days)
        .bind(spec.delivery.unwrap_or_else(|| json!({ "url": "http://127.0.0.1:9/" })))
        .execute(&self.pool)
        .await
        .unwrap();
        contract_id
    }

    /// A buyer with one contract; returns (buyer, contract).
    pub async fn buyer_with(&self, balance_cents: i64, spec: ContractSpec) -> (Uuid, Uuid) {
        let buyer = self.buyer(balance_cents).await;
        (buyer, self.contract(buyer, spec).await)
    }
}

impl TestApp {
    /// POSTs `body` to `/v1/ping` with `key` as bearer; returns the status and JSON body.
    pub async fn ping(&self, key: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/v1/ping"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` to `path` with `key` as bearer; returns the status, the
    /// `Idempotent-Replayed` header and the body's text.
    pub async fn post_raw(&self, path: &str, key: &str, body: &Value) -> (u16, bool, String) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        (status, replayed, response.text().await.unwrap())
    }

    /// POSTs a post to `/v1/post`; returns the status and JSON body.
    pub async fn post(&self, key: &str, body: Value) -> (u16, Value) {
        let (status, _, text) = self.post_raw("/v1/post", key, &body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The admin view of a ping.
    pub async fn ping_view(&self, admin_key: &str, ping_id: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(&format!("/v1/admin/pings/{ping_id}")))
            .bearer_auth(admin_key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The admin view's entry for `contract_id`.
pub fn outcome_of(view: &Value, contract_id: Uuid) -> &Value {
    view["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contract_id"] == contract_id.to_string())
        .unwrap_or_else(|| panic!("contract {contract_id} not in the view: {view:#}"))
}

/// The full lead of `ping_lead()`, PII included.
pub fn full_lead() -> Value {
    let mut lead = ping_lead();
    lead["first_name"] = json!("Ada");
    lead["email"] = json!("Ada@Example.com ");
    lead["phone"] = json!("(214) 555-0123");
    lead
}

pub fn consent() -> Value {
    json!({
        "trustedform_cert_url": "https://cert.trustedform.com/2a6b",
        "text": "By clicking Submit I agree to be contacted.",
        "consented_at": "2026-11-25T17:04:12Z",
        "ip": "203.0.113.7",
        "sellers": ["Acme Insurance"],
        "landing_page_variant": "b"
    })
}

impl Exchange {
    /// The sum of a buyer's ledger entries and its balance.
    pub async fn buyer_books(&self, buyer_id: Uuid) -> (i64, i64) {
        sqlx::query_as(
            "SELECT (SELECT coalesce(sum(amount_cents), 0)::bigint FROM ledger_entries
                     WHERE tenant_id = $1 AND buyer_id = $2), balance_cents
             FROM buyers WHERE tenant_id = $1 AND id = $2",
        )
        .bind(self.tenant_id)
        .bind(buyer_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}
