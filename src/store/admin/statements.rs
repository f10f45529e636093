//! An account's statement (`api::admin::statements`): the balances and the period's entries,
//! read in one snapshot.

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use super::books::{Account, LEDGER_COLUMNS, LedgerRow, sql};

/// The account's name and its tenant's timezone; `None` when the tenant has no such account.
pub async fn holder(
    db: &PgPool,
    tenant: Uuid,
    account: Account,
    account_id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(sql(format!(
        "SELECT a.name, t.timezone FROM {} a JOIN tenants t ON t.id = a.tenant_id
         WHERE a.tenant_id = $1 AND a.id = $2",
        account.table()
    )))
    .bind(tenant)
    .bind(account_id)
    .fetch_optional(db)
    .await
}

/// What a statement is made of.
pub enum Period {
    /// The opening balance and the period's entries, oldest first (by time, then id).
    Entries {
        opening_cents: i64,
        entries: Vec<LedgerRow>,
    },
    /// More entries than asked for at most: none read.
    TooMany(i64),
}

/// The balance at `from` and the entries of `[from, to)`, at most `max_entries`, read in one
/// REPEATABLE READ snapshot. The opening balance is the balance now less the entries from
/// `from` on: a recent period costs its own entries, not the account's history.
pub async fn period(
    db: &PgPool,
    tenant: Uuid,
    account: Account,
    account_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max_entries: i64,
) -> Result<Option<Period>, sqlx::Error> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let column = account.column();
    let head: Option<(i64, i64, i64)> = sqlx::query_as(sql(format!(
        "SELECT a.balance_cents,
                (SELECT coalesce(sum(e.amount_cents), 0)::bigint FROM ledger_entries e
                 WHERE e.tenant_id = $1 AND e.{column} = $2 AND e.created_at >= $3),
                (SELECT count(*) FROM ledger_entries e
                 WHERE e.tenant_id = $1 AND e.{column} = $2 AND e.created_at >= $3 AND e.created_at < $4)
         FROM {} a WHERE a.tenant_id = $1 AND a.id = $2",
        account.table()
    )))
    .bind(tenant)
    .bind(account_id)
    .bind(from)
    .bind(to)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((balance, since, count)) = head else {
        return Ok(None);
    };
    if count > max_entries {
        return Ok(Some(Period::TooMany(count)));
    }
    let entries = sqlx::query_as(sql(format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger_entries
         WHERE tenant_id = $1 AND {column} = $2 AND created_at >= $3 AND created_at < $4
         ORDER BY created_at, id"
    )))
    .bind(tenant)
    .bind(account_id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Period::Entries {
        opening_cents: balance - since,
        entries,
    }))
}
