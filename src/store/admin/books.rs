//! The accounts' money (`api::admin::books`): a buyer's or a partner's balance changes only
//! together with a ledger entry, in the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

/// The two kinds of account with a balance and a ledger (docs/returns.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account {
    Buyer,
    Partner,
}

impl Account {
    /// As stored in `ledger_entries.account`.
    pub fn as_str(self) -> &'static str {
        match self {
            Account::Buyer => "buyer",
            Account::Partner => "partner",
        }
    }

    /// The account's table.
    pub(crate) fn table(self) -> &'static str {
        match self {
            Account::Buyer => "buyers",
            Account::Partner => "partners",
        }
    }

    /// The ledger's column naming the account.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Account::Buyer => "buyer_id",
            Account::Partner => "partner_id",
        }
    }

    /// Every kind of entry the account may have (the `ledger_entries_kind` CHECK).
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Account::Buyer => &["funds", "sale", "release", "return"],
            Account::Partner => &["sale", "return", "payment", "adjustment"],
        }
    }
}

/// A statement built from the `Account` constants only: no input reaches the text.
pub(crate) fn sql(text: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(text)
}

/// The columns of a `LedgerRow`.
pub(crate) const LEDGER_COLUMNS: &str =
    "id, kind, amount_cents, sale_id, return_id, note, created_at";

/// One ledger entry of an account.
#[derive(FromRow)]
pub struct LedgerRow {
    pub id: Uuid,
    pub kind: String,
    pub amount_cents: i64,
    pub sale_id: Option<Uuid>,
    pub return_id: Option<Uuid>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An operator's entry with no sale behind it: a buyer's `funds`, a partner's `payment` or
/// `adjustment`.
pub struct NewEntry<'a> {
    pub account: Account,
    pub account_id: Uuid,
    pub kind: &'static str,
    /// Signed as the account sees it.
    pub amount_cents: i64,
    pub note: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// Writes the entry and moves the account's balance with it; the entry and the new balance.
/// The caller holds the account's row lock (taken first: the payment's check).
pub async fn add_entry(
    tx: &mut PgConnection,
    tenant: Uuid,
    new: &NewEntry<'_>,
) -> Result<(LedgerRow, i64), sqlx::Error> {
    // A buyer's balance is Gavel's to move; a partner's moves by the ledger's trigger
    // (migration 0017), with the entry, and is read after it.
    let buyer_balance = match new.account {
        Account::Buyer => Some(
            sqlx::query_scalar!(
                "UPDATE buyers SET balance_cents = balance_cents + $3 WHERE tenant_id = $1 AND id = $2
                 RETURNING balance_cents",
                tenant,
                new.account_id,
                new.amount_cents,
            )
            .fetch_one(&mut *tx)
            .await?,
        ),
        Account::Partner => None,
    };
    // One jsonb bind, as for the configuration tables (`super`); the time in microseconds,
    // as a bound timestamp would be.
    let entry = serde_json::json!({
        "tenant_id": tenant,
        "id": Uuid::now_v7(),
        "account": new.account.as_str(),
        new.account.column(): new.account_id,
        "kind": new.kind,
        "amount_cents": new.amount_cents,
        "note": new.note,
        "created_at": new.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    });
    let column = new.account.column();
    let entry = sqlx::query_as(sql(format!(
        "INSERT INTO ledger_entries (tenant_id, id, account, {column}, kind, amount_cents, note, created_at)
         SELECT tenant_id, id, account, {column}, kind, amount_cents, note, created_at
         FROM jsonb_populate_record(NULL::ledger_entries, $1)
         RETURNING {LEDGER_COLUMNS}"
    )))
    .bind(entry)
    .fetch_one(&mut *tx)
    .await?;
    let balance = match buyer_balance {
        Some(balance) => balance,
        None => {
            sqlx::query_scalar!(
                "SELECT balance_cents FROM partners WHERE tenant_id = $1 AND id = $2",
                tenant,
                new.account_id,
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    Ok((entry, balance))
}

/// Up to `limit` of the account's ledger entries before the id `before`, newest first.
pub async fn ledger<'c>(
    db: impl PgExecutor<'c>,
    tenant: Uuid,
    account: Account,
    account_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    sqlx::query_as(sql(format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger_entries
         WHERE tenant_id = $1 AND {} = $2 AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
        account.column()
    )))
    .bind(tenant)
    .bind(account_id)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}
