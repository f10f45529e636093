//! A buyer's money (`api::admin::books`): the balance changes only together with a ledger
//! entry, in the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

/// One ledger entry of a buyer.
#[derive(FromRow)]
pub struct LedgerRow {
    pub id: Uuid,
    pub kind: String,
    pub amount_cents: i64,
    pub sale_id: Option<Uuid>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Adds `amount_cents` (negative: removes) to the buyer's balance with its `funds` ledger
/// entry; the entry and the new balance.
pub async fn add_funds(
    tx: &mut PgConnection,
    tenant: Uuid,
    buyer_id: Uuid,
    amount_cents: i64,
    note: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(LedgerRow, i64), sqlx::Error> {
    let balance: i64 = sqlx::query_scalar(
        "UPDATE buyers SET balance_cents = balance_cents + $3 WHERE tenant_id = $1 AND id = $2
         RETURNING balance_cents",
    )
    .bind(tenant)
    .bind(buyer_id)
    .bind(amount_cents)
    .fetch_one(&mut *tx)
    .await?;
    // One jsonb bind, as for the configuration tables (`super`); the time in microseconds,
    // as a bound timestamp would be.
    let entry = serde_json::json!({
        "tenant_id": tenant,
        "id": Uuid::now_v7(),
        "buyer_id": buyer_id,
        "amount_cents": amount_cents,
        "note": note,
        "created_at": at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    });
    let entry = sqlx::query_as(
        "INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, note, created_at)
         SELECT tenant_id, id, 'buyer', buyer_id, 'funds', amount_cents, note, created_at
         FROM jsonb_populate_record(NULL::ledger_entries, $1)
         RETURNING id, kind, amount_cents, sale_id, note, created_at",
    )
    .bind(entry)
    .fetch_one(&mut *tx)
    .await?;
    Ok((entry, balance))
}

/// Up to `limit` of the buyer's ledger entries before the id `before`, newest first.
pub async fn ledger<'c>(
    db: impl PgExecutor<'c>,
    tenant: Uuid,
    buyer_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, amount_cents, sale_id, note, created_at FROM ledger_entries
         WHERE tenant_id = $1 AND buyer_id = $2 AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
    )
    .bind(tenant)
    .bind(buyer_id)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}
