//! The tenant's pings as a list (`GET /v1/admin/pings`): newest first, one statement per page.
//! No lead field is read: the list holds no PII, nor the ping's non-PII lead.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Which pings a page holds.
pub struct PingFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub partner_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    /// The ping's `result` (`bids`, `no_bids`, `duplicate`, an error code), or `refused`: any
    /// error code.
    pub status: Option<String>,
    /// Posted (a lead was stored for it) or not.
    pub posted: Option<bool>,
    /// The pings after this one in the list's order (created_at, then id, newest first).
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// One ping of the list.
pub struct PingListRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub result: String,
    pub test: bool,
    pub latency_us: i64,
    pub partner_id: Uuid,
    pub partner_name: Option<String>,
    pub campaign_id: Uuid,
    pub campaign_name: Option<String>,
    pub offer_id: Uuid,
    pub offer_name: Option<String>,
    pub sale_type: Option<String>,
    pub payout_cents: Option<i64>,
    pub lead_id: Option<Uuid>,
    pub posted_at: Option<DateTime<Utc>>,
    /// Contracts that saw the ping, those that bid (winners and outbid), the winners, and the
    /// best winning price.
    pub contracts: i64,
    pub bids: i64,
    pub winners: i64,
    pub best_price_cents: Option<i64>,
    /// The post's sales that sold (returned since included), and their prices' sum.
    pub sold: i64,
    pub revenue_cents: i64,
}

/// A page of the tenant's pings, newest first. Read along `posting_log_time` (or
/// `posting_log_campaign_time` for a campaign; a partner's pings through its campaigns), each
/// row's counts by its primary keys.
pub async fn list(
    db: &PgPool,
    tenant_id: Uuid,
    filter: &PingFilter,
) -> Result<Vec<PingListRow>, sqlx::Error> {
    sqlx::query_as!(
        PingListRow,
        r#"SELECT p.id, p.created_at, p.result, p.test, p.latency_us, p.partner_id,
                  pa.name AS "partner_name?", p.campaign_id, pa.name || ' → ' || o.name AS "campaign_name?",
                  p.offer_id, o.name AS "offer_name?", p.sale_type, p.payout_cents, p.lead_id,
                  p.post_claimed_at AS posted_at,
                  coalesce(w.winners, 0) + coalesce(cardinality(d.contract_ids), 0) AS "contracts!",
                  coalesce(w.winners, 0)
                      + coalesce((SELECT count(*) FROM unnest(d.reasons) r WHERE r = 'outbid'), 0) AS "bids!",
                  coalesce(w.winners, 0) AS "winners!", w.best_price_cents AS "best_price_cents?",
                  coalesce(s.sold, 0) AS "sold!", coalesce(s.revenue_cents, 0)::bigint AS "revenue_cents!"
           FROM posting_log p
           LEFT JOIN partners pa ON pa.tenant_id = p.tenant_id AND pa.id = p.partner_id
           LEFT JOIN offers o ON o.tenant_id = p.tenant_id AND o.id = p.offer_id
           LEFT JOIN distribution_declines d ON d.tenant_id = p.tenant_id AND d.ping_id = p.id
           LEFT JOIN LATERAL (
               SELECT count(*) AS winners, max(x.price_cents) AS best_price_cents
               FROM distribution_winners x WHERE x.tenant_id = p.tenant_id AND x.ping_id = p.id) w ON true
           LEFT JOIN LATERAL (
               SELECT count(*) AS sold, sum(y.price_cents) AS revenue_cents
               FROM lead_sales y
               WHERE p.lead_id IS NOT NULL AND y.tenant_id = p.tenant_id AND y.lead_id = p.lead_id
                 AND y.status IN ('sold', 'returned')) s ON true
           WHERE p.tenant_id = $1 AND p.kind = 'ping'
             AND ($2::timestamptz IS NULL OR p.created_at >= $2)
             AND ($3::timestamptz IS NULL OR p.created_at < $3)
             AND ($4::uuid IS NULL OR (p.partner_id = $4 AND p.campaign_id IN (
                     SELECT c.id FROM campaigns c WHERE c.tenant_id = $1 AND c.partner_id = $4)))
             AND ($5::uuid IS NULL OR p.campaign_id = $5)
             AND ($6::text IS NULL OR p.result = $6
                  OR ($6 = 'refused' AND p.result NOT IN ('bids', 'no_bids', 'duplicate')))
             AND ($7::bool IS NULL OR (p.lead_id IS NOT NULL) = $7)
             AND ($8::uuid IS NULL OR (p.created_at, p.id) < (
                     SELECT c.created_at, c.id FROM posting_log c WHERE c.tenant_id = $1 AND c.id = $8))
           ORDER BY p.created_at DESC, p.id DESC
           LIMIT $9"#,
        tenant_id,
        filter.from,
        filter.to,
        filter.partner_id,
        filter.campaign_id,
        filter.status,
        filter.posted,
        filter.after,
        filter.limit,
    )
    .fetch_all(db)
    .await
}
