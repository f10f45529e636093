//! What an operator looks at (`api::admin::inspect`): a contract's or a buyer's caps and their
//! counters, and a posted lead with its sales.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::store::pings::StoredReturn;
use crate::store::sales::SaleRow;

/// The contract's stored caps and its tenant's timezone, `None` when there is no such contract.
pub async fn contract_caps(
    db: &PgPool,
    tenant: Uuid,
    contract_id: Uuid,
) -> Result<Option<(Value, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.caps, t.timezone FROM contracts c JOIN tenants t ON t.id = c.tenant_id
         WHERE c.tenant_id = $1 AND c.id = $2",
    )
    .bind(tenant)
    .bind(contract_id)
    .fetch_optional(db)
    .await
}

/// A cap counter: its period, the period's start, leads and spend in cents.
pub type CapCounter = (String, DateTime<Utc>, i32, i64);

/// The contract's cap counters, every period they were counted in.
pub async fn cap_counters(
    db: &PgPool,
    tenant: Uuid,
    contract_id: Uuid,
) -> Result<Vec<CapCounter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT period, period_start, leads, spend_cents FROM cap_counters
         WHERE tenant_id = $1 AND contract_id = $2",
    )
    .bind(tenant)
    .bind(contract_id)
    .fetch_all(db)
    .await
}

/// The buyer's stored caps and its tenant's timezone, `None` when there is no such buyer.
pub async fn buyer_caps(
    db: &PgPool,
    tenant: Uuid,
    buyer_id: Uuid,
) -> Result<Option<(Value, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b.caps, t.timezone FROM buyers b JOIN tenants t ON t.id = b.tenant_id
         WHERE b.tenant_id = $1 AND b.id = $2",
    )
    .bind(tenant)
    .bind(buyer_id)
    .fetch_optional(db)
    .await
}

/// The buyer's own cap counters, every period they were counted in.
pub async fn buyer_cap_counters(
    db: &PgPool,
    tenant: Uuid,
    buyer_id: Uuid,
) -> Result<Vec<CapCounter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT period, period_start, leads, spend_cents FROM buyer_cap_counters
         WHERE tenant_id = $1 AND buyer_id = $2",
    )
    .bind(tenant)
    .bind(buyer_id)
    .fetch_all(db)
    .await
}

/// A posted lead as stored.
#[derive(FromRow)]
pub struct LeadRow {
    pub id: Uuid,
    pub ping_id: Uuid,
    pub campaign_id: Uuid,
    pub partner_id: Uuid,
    pub offer_id: Uuid,
    /// The partner's, the campaign's (`Partner → offer`) and the offer's names.
    pub partner_name: Option<String>,
    pub campaign_name: Option<String>,
    pub offer_name: Option<String>,
    /// The non-PII fields (sealed rows), or the whole lead (rows stored before sealing).
    pub lead: Value,
    pub consent: Value,
    /// The whole lead and its consent, sealed (`crate::pii`) under this key.
    pub pii_key_id: Option<String>,
    pub pii_sealed: Option<Vec<u8>>,
    /// When its PII was erased (a consumer's request, the tenant's retention).
    pub pii_erased_at: Option<DateTime<Utc>>,
    pub test: bool,
    pub created_at: DateTime<Utc>,
}

/// The tenant's lead `lead_id`, its sales in id order and their returns oldest first; `None`
/// when there is no such lead.
pub async fn lead(
    db: &PgPool,
    tenant: Uuid,
    lead_id: Uuid,
) -> Result<Option<(LeadRow, Vec<SaleRow>, Vec<StoredReturn>)>, sqlx::Error> {
    let lead: Option<LeadRow> = sqlx::query_as(
        "SELECT l.id, l.ping_id, l.campaign_id, l.partner_id, l.offer_id, p.name AS partner_name,
                p.name || ' → ' || o.name AS campaign_name, o.name AS offer_name, l.lead, l.consent,
                l.pii_key_id, l.pii_sealed, l.pii_erased_at, l.test, l.created_at
         FROM leads l
         LEFT JOIN partners p ON p.tenant_id = l.tenant_id AND p.id = l.partner_id
         LEFT JOIN offers o ON o.tenant_id = l.tenant_id AND o.id = l.offer_id
         WHERE l.tenant_id = $1 AND l.id = $2",
    )
    .bind(tenant)
    .bind(lead_id)
    .fetch_optional(db)
    .await?;
    let Some(lead) = lead else {
        return Ok(None);
    };
    let sales = sqlx::query_as(
        "SELECT s.id, s.lead_id, s.ping_id, s.bid_id, s.contract_id, c.name AS contract_name, s.buyer_id,
                b.name AS buyer_name, s.campaign_id, p.name || ' → ' || o.name AS campaign_name,
                s.partner_id, p.name AS partner_name, s.offer_id, o.name AS offer_name, s.sale_type,
                s.price_cents, s.payout_cents, s.status, s.reason, s.test, s.buyer_http_status, s.delivery_ms,
                s.created_at, s.settled_at
         FROM lead_sales s
         JOIN contracts c ON c.tenant_id = s.tenant_id AND c.id = s.contract_id
         JOIN buyers b ON b.tenant_id = s.tenant_id AND b.id = s.buyer_id
         JOIN partners p ON p.tenant_id = s.tenant_id AND p.id = s.partner_id
         JOIN offers o ON o.tenant_id = s.tenant_id AND o.id = s.offer_id
         WHERE s.tenant_id = $1 AND s.lead_id = $2 ORDER BY s.id",
    )
    .bind(tenant)
    .bind(lead_id)
    .fetch_all(db)
    .await?;
    let returns = sqlx::query_as!(
        StoredReturn,
        "SELECT r.sale_id, r.id, r.status, r.reason, r.requested_at, r.decided_at, r.price_cents,
                r.payout_reversed_cents
         FROM lead_sales s JOIN returns r ON r.tenant_id = s.tenant_id AND r.sale_id = s.id
         WHERE s.tenant_id = $1 AND s.lead_id = $2
         ORDER BY r.requested_at, r.id",
        tenant,
        lead_id,
    )
    .fetch_all(db)
    .await?;
    Ok(Some((lead, sales, returns)))
}
