//! Returns (`api::admin::returns`, docs/returns.md): the facts a request is judged on, its
//! write, the approval's and the denial's writes, the list. Each step runs in the caller's
//! transaction; the decisions are `crate::returns`'.
//!
//! Lock order, as everywhere in Gavel after a sale's own: the return's row, the sale's row,
//! the contract's cap counters (in the order reserved), the buyer's counters, the buyer, then
//! the partner (the approval takes them all in one call: `gavel_approve_return`). A request first takes its contract's advisory lock (requests of one contract
//! queue there, so that their count against the limit holds); nothing waits for that lock
//! while holding one of the others.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// One return, as stored.
#[derive(Debug, Clone)]
pub struct ReturnRow {
    pub id: Uuid,
    pub sale_id: Uuid,
    pub lead_id: Uuid,
    pub ping_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub partner_id: Uuid,
    pub offer_id: Uuid,
    pub status: String,
    pub reason: String,
    pub note: Option<String>,
    pub price_cents: i64,
    pub payout_reversed_cents: Option<i64>,
    pub decision_note: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// The unique index that keeps one open (requested or approved) return per sale.
pub const ONE_OPEN_RETURN: &str = "returns_sale_open";

/// The sale's contract, or `None` for no such sale of the tenant.
pub async fn sale_contract(
    db: impl PgExecutor<'_>,
    tenant: Uuid,
    sale_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT contract_id FROM lead_sales WHERE tenant_id = $1 AND id = $2",
        tenant,
        sale_id,
    )
    .fetch_optional(db)
    .await
}

/// Serializes the return requests of one contract until the transaction ends.
pub async fn lock_contract(
    tx: &mut PgConnection,
    tenant: Uuid,
    contract_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('gavel_returns:' || $1::uuid || ':' || $2::uuid, 0))",
        tenant,
        contract_id,
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What a request of a sale is judged on, read in the request's transaction.
#[derive(Debug)]
pub struct SaleFacts {
    pub lead_id: Uuid,
    pub ping_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub partner_id: Uuid,
    pub offer_id: Uuid,
    pub status: String,
    pub test: bool,
    pub price_cents: i64,
    pub settled_at: Option<DateTime<Utc>>,
    /// The contract's stored `returns`.
    pub returns: Value,
    pub timezone: String,
    /// A return of the sale requested or approved.
    pub open_return: Option<Uuid>,
}

pub async fn sale_facts(
    tx: &mut PgConnection,
    tenant: Uuid,
    sale_id: Uuid,
) -> Result<Option<SaleFacts>, sqlx::Error> {
    sqlx::query_as!(
        SaleFacts,
        r#"SELECT s.lead_id, s.ping_id, s.contract_id, s.buyer_id, s.partner_id, s.offer_id, s.status,
                  s.test, s.price_cents, s.settled_at, c.returns, t.timezone,
                  (SELECT r.id FROM returns r
                   WHERE r.tenant_id = s.tenant_id AND r.sale_id = s.id AND r.status <> 'denied'
                   LIMIT 1) AS open_return
           FROM lead_sales s
           JOIN contracts c ON c.tenant_id = s.tenant_id AND c.id = s.contract_id
           JOIN tenants t ON t.id = s.tenant_id
           WHERE s.tenant_id = $1 AND s.id = $2"#,
        tenant,
        sale_id,
    )
    .fetch_optional(&mut *tx)
    .await
}

/// How many days before a period a sale sold in it may have been created (docs/returns.md).
pub const SOLD_LATE_DAYS: i32 = 7;

/// The contract's returns requested in `[start, end)` (denied ones aside) and its sales
/// sold in it (sold or since returned, test sales aside). A sale counts by the time it was
/// sold (`settled_at`). A sale is settled within minutes of its creation, or by the sweep
/// once a Gavel process runs again: the scan of the contract's sales (by its index on
/// `created_at`) starts [`SOLD_LATE_DAYS`] days before the period, so a sale the sweep
/// completed after an outage of up to that long still counts.
pub async fn period_counts(
    tx: &mut PgConnection,
    tenant: Uuid,
    contract_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(i64, i64), sqlx::Error> {
    let counts = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM returns
              WHERE tenant_id = $1 AND contract_id = $2 AND status <> 'denied'
                AND requested_at >= $3 AND requested_at < $4) AS "returns!",
             (SELECT count(*) FROM lead_sales
              WHERE tenant_id = $1 AND contract_id = $2
                AND created_at >= $3 - make_interval(days => $5) AND created_at < $4
                AND settled_at >= $3 AND settled_at < $4
                AND status IN ('sold', 'returned') AND NOT test) AS "sold!""#,
        tenant,
        contract_id,
        start,
        end,
        SOLD_LATE_DAYS,
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok((counts.returns, counts.sold))
}

/// A return about to be written, `requested`.
pub struct NewReturn<'a> {
    pub tenant: Uuid,
    pub id: Uuid,
    pub sale_id: Uuid,
    pub facts: &'a SaleFacts,
    pub reason: &'a str,
    pub note: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// Writes the request; a unique violation of [`ONE_OPEN_RETURN`] means another request of
/// the sale got there first.
pub async fn insert(tx: &mut PgConnection, new: &NewReturn<'_>) -> Result<ReturnRow, sqlx::Error> {
    let f = new.facts;
    sqlx::query_as!(
        ReturnRow,
        "INSERT INTO returns (tenant_id, id, sale_id, lead_id, contract_id, buyer_id, partner_id, offer_id,
                              status, reason, note, price_cents, requested_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9, $10, $11, $12)
         RETURNING id, sale_id, lead_id, $13::uuid AS \"ping_id!\", contract_id, buyer_id, partner_id,
                   offer_id, status, reason, note, price_cents, payout_reversed_cents, decision_note,
                   requested_at, decided_at",
        new.tenant,
        new.id,
        new.sale_id,
        f.lead_id,
        f.contract_id,
        f.buyer_id,
        f.partner_id,
        f.offer_id,
        new.reason,
        new.note,
        f.price_cents,
        new.now,
        f.ping_id,
    )
    .fetch_one(&mut *tx)
    .await
}

/// One return of the tenant.
pub async fn get(
    db: impl PgExecutor<'_>,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<ReturnRow>, sqlx::Error> {
    sqlx::query_as!(
        ReturnRow,
        r#"SELECT r.id, r.sale_id, r.lead_id, s.ping_id, r.contract_id, r.buyer_id, r.partner_id,
                  r.offer_id, r.status, r.reason, r.note, r.price_cents, r.payout_reversed_cents,
                  r.decision_note, r.requested_at, r.decided_at
           FROM returns r JOIN lead_sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
           WHERE r.tenant_id = $1 AND r.id = $2"#,
        tenant,
        id,
    )
    .fetch_optional(db)
    .await
}

/// What the approval of a return needs beyond the return: the sale's payout and
/// reservation, the offer's policy and the tenant's timezone.
pub struct ApprovalFacts {
    pub status: String,
    pub payout_cents: i64,
    /// The sale's `reserved_caps`: written with its reservation, never changed after.
    pub reserved_caps: Value,
    pub return_policy: String,
    pub timezone: String,
}

pub async fn approval_facts(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
) -> Result<Option<ApprovalFacts>, sqlx::Error> {
    sqlx::query_as!(
        ApprovalFacts,
        "SELECT r.status, s.payout_cents, s.reserved_caps, o.return_policy, t.timezone
         FROM returns r
         JOIN lead_sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
         JOIN offers o ON o.tenant_id = r.tenant_id AND o.id = r.offer_id
         JOIN tenants t ON t.id = r.tenant_id
         WHERE r.tenant_id = $1 AND r.id = $2",
        tenant,
        id,
    )
    .fetch_optional(&mut *tx)
    .await
}

/// Raised by `gavel_approve_return` when the return's sale is not `sold`.
pub const SALE_SOLD: &str = "returns_sale_sold";

/// An approval, as `gavel_approve_return` (migration 0017) makes it.
pub struct Approval<'a> {
    pub tenant: Uuid,
    pub id: Uuid,
    /// What the partner is debited (0 under `exchange_absorbs`).
    pub reversed_cents: i64,
    pub note: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// The contract's cap periods to give back one lead and the price, with their starts.
    pub periods: &'a [String],
    pub starts: &'a [DateTime<Utc>],
    /// The buyer's likewise.
    pub buyer_periods: &'a [String],
    pub buyer_starts: &'a [DateTime<Utc>],
}

/// Approves a requested return in one call: the return `approved` (the gate: `None` when it
/// was not `requested` any more, and then nothing changed), the sale `returned`, the cap
/// counters given back, the buyer credited the price and the partner debited
/// `reversed_cents` (when above 0), each with its `return` entry (the partner's balance moves
/// by the ledger's trigger). A sale not `sold` is an error on [`SALE_SOLD`].
pub async fn approve(
    tx: &mut PgConnection,
    approval: &Approval<'_>,
) -> Result<Option<ReturnRow>, sqlx::Error> {
    sqlx::query_as!(
        ReturnRow,
        r#"SELECT id AS "id!", sale_id AS "sale_id!", lead_id AS "lead_id!", ping_id AS "ping_id!",
                  contract_id AS "contract_id!", buyer_id AS "buyer_id!", partner_id AS "partner_id!",
                  offer_id AS "offer_id!", status AS "status!", reason AS "reason!", note,
                  price_cents AS "price_cents!", payout_reversed_cents, decision_note,
                  requested_at AS "requested_at!", decided_at
           FROM gavel_approve_return($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#,
        approval.tenant,
        approval.id,
        approval.reversed_cents,
        approval.note,
        approval.now,
        approval.periods,
        approval.starts,
        approval.buyer_periods,
        approval.buyer_starts,
        Uuid::now_v7(),
        Uuid::now_v7(),
    )
    .fetch_optional(&mut *tx)
    .await
}

/// Denies a requested return: `false` when it was not `requested` any more (decided by
/// another request), and then nothing changed.
pub async fn deny(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let denied = sqlx::query!(
        "UPDATE returns SET status = 'denied', decision_note = $3, decided_at = $4
         WHERE tenant_id = $1 AND id = $2 AND status = 'requested'",
        tenant,
        id,
        note,
        now,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(denied == 1)
}

/// The list's filters; every one optional.
#[derive(Default)]
pub struct ReturnFilter {
    pub status: Option<String>,
    pub buyer_id: Option<Uuid>,
    pub contract_id: Option<Uuid>,
    pub partner_id: Option<Uuid>,
    pub sale_id: Option<Uuid>,
    /// `requested_at` at or after.
    pub from: Option<DateTime<Utc>>,
    /// `requested_at` before.
    pub to: Option<DateTime<Utc>>,
    /// Returns before this id (the cursor).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Up to `limit` of the tenant's returns, newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant: Uuid,
    filter: &ReturnFilter,
) -> Result<Vec<ReturnRow>, sqlx::Error> {
    sqlx::query_as!(
        ReturnRow,
        r#"SELECT r.id, r.sale_id, r.lead_id, s.ping_id, r.contract_id, r.buyer_id, r.partner_id,
                  r.offer_id, r.status, r.reason, r.note, r.price_cents, r.payout_reversed_cents,
                  r.decision_note, r.requested_at, r.decided_at
           FROM returns r JOIN lead_sales s ON s.tenant_id = r.tenant_id AND s.id = r.sale_id
           WHERE r.tenant_id = $1
             AND ($2::text IS NULL OR r.status = $2)
             AND ($3::uuid IS NULL OR r.buyer_id = $3)
             AND ($4::uuid IS NULL OR r.contract_id = $4)
             AND ($5::uuid IS NULL OR r.partner_id = $5)
             AND ($6::uuid IS NULL OR r.sale_id = $6)
             AND ($7::timestamptz IS NULL OR r.requested_at >= $7)
             AND ($8::timestamptz IS NULL OR r.requested_at < $8)
             AND ($9::uuid IS NULL OR r.id < $9)
           ORDER BY r.id DESC
           LIMIT $10"#,
        tenant,
        filter.status,
        filter.buyer_id,
        filter.contract_id,
        filter.partner_id,
        filter.sale_id,
        filter.from,
        filter.to,
        filter.before,
        filter.limit,
    )
    .fetch_all(db)
    .await
}
