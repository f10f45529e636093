//! The configuration tables, each declared once: its name, its columns and its row type, read
//! alike by the admin API and by the configuration snapshot (`snapshot`), with the decoding of
//! stored text (statuses, modes, payout rules) that both share.
//!
//! A column is a field of its row; a field computed by SQL names its expression
//! (`payout_percent_bp: Option<i32> = "(payout_percent * 100)::int"`). Every row also has
//! `tenant_id`, `id`, `created_at` and `updated_at`.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use super::Table;
use crate::auction::{ConfigError, Mode, PayoutRule, Status};
use crate::money::Money;

macro_rules! column {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident = $expr:literal) => {
        concat!($expr, " AS ", stringify!($field))
    };
}

macro_rules! loaded {
    () => {
        "TRUE"
    };
    ($condition:literal) => {
        $condition
    };
}

macro_rules! table {
    (
        $(#[$doc:meta])*
        $row:ident, $table:ident = $name:literal {
            $($field:ident: $ty:ty $(= $expr:literal)?,)*
        }
        writes [$($written:literal),* $(,)?]
        $(creates [$($created:literal),* $(,)?])?
        $(loads $loaded:literal)?
    ) => {
        $(#[$doc])*
        #[derive(Debug, FromRow)]
        pub struct $row {
            pub tenant_id: Uuid,
            pub id: Uuid,
            $(pub $field: $ty,)*
            pub created_at: DateTime<Utc>,
            pub updated_at: DateTime<Utc>,
        }

        #[doc = concat!("The table `", $name, "`.")]
        pub struct $table;

        impl Table for $table {
            const NAME: &'static str = $name;
            const COLUMNS: &'static str = concat!(
                "tenant_id, id, ",
                $(column!($field $(= $expr)?), ", ",)*
                "created_at, updated_at"
            );
            const WRITTEN: &'static [&'static str] = &[$($written),*];
            const CREATED: &'static [&'static str] = &[$($($created),*)?];
            const LOADED: &'static str = loaded!($($loaded)?);
            type Row = $row;
            fn id(row: &$row) -> Uuid {
                row.id
            }
        }
    };
}

table! {
    /// A lead source.
    PartnerRow, Partners = "partners" {
        name: String,
        status: String,
    }
    writes ["name", "status"]
}

table! {
    /// A buyer; `balance_cents` changes only with a ledger entry (`books`).
    BuyerRow, Buyers = "buyers" {
        name: String,
        status: String,
        credit_limit_cents: i64,
        balance_cents: i64,
    }
    writes ["name", "status", "credit_limit_cents"]
}

table! {
    /// A lead type.
    OfferRow, Offers = "offers" {
        name: String,
        status: String,
        mode: String,
        max_buyers: i32,
        exclusive_floor_cents: i64,
        ping_ttl_seconds: i32,
        dedup_days: i32,
        require_consent: Value,
        fields: Value,
    }
    writes [
        "name", "status", "mode", "max_buyers", "exclusive_floor_cents", "ping_ttl_seconds",
        "dedup_days", "require_consent", "fields",
    ]
}

table! {
    /// A partner selling into an offer. The percent is read in basis points by Postgres
    /// itself: exact, no float.
    CampaignRow, Campaigns = "campaigns" {
        partner_id: Uuid,
        offer_id: Uuid,
        status: String,
        posting_key_hash: Vec<u8>,
        payout_type: String,
        payout_percent_bp: Option<i32> = "(payout_percent * 100)::int",
        payout_amount_cents: Option<i64>,
        min_payout_cents: i64,
        ping_rate_per_second: Option<i32>,
    }
    writes [
        "partner_id", "offer_id", "status", "payout_type", "payout_percent",
        "payout_amount_cents", "min_payout_cents", "ping_rate_per_second",
    ]
    creates ["posting_key_hash"]
}

table! {
    /// A buyer buying on an offer. Archived contracts take no part in auctions, so the
    /// snapshot leaves them out.
    ContractRow, Contracts = "contracts" {
        buyer_id: Uuid,
        offer_id: Uuid,
        name: String,
        status: String,
        priority: i32,
        pricing: Value,
        filters: Value,
        schedule: Option<Value>,
        caps: Value,
        dedup_days: i32,
        delivery: Value,
    }
    writes [
        "buyer_id", "offer_id", "name", "status", "priority", "pricing", "filters", "schedule",
        "caps", "dedup_days", "delivery",
    ]
    loads "status <> 'archived'"
}

/// A stored status. The columns' CHECK allows only the three; anything else would be a schema
/// change, read as paused.
pub fn status(text: &str) -> Status {
    Status::from_str(text).unwrap_or(Status::Paused)
}

impl OfferRow {
    pub fn mode(&self) -> Result<Mode, ConfigError> {
        Mode::from_str(&self.mode).map_err(|e| ConfigError::new("/mode", e.to_string()))
    }

    pub fn require_consent(&self) -> Result<Vec<String>, ConfigError> {
        serde_json::from_value(self.require_consent.clone())
            .map_err(|e| ConfigError::new("/require_consent", e.to_string()))
    }
}

impl CampaignRow {
    /// The payout rule of the stored columns: a type with its percent or its amount.
    pub fn payout(&self) -> Result<PayoutRule, ConfigError> {
        match (
            self.payout_type.as_str(),
            self.payout_percent_bp,
            self.payout_amount_cents,
        ) {
            ("revshare", Some(bp), _) => Ok(PayoutRule::Revshare {
                percent_bp: u32::try_from(bp).unwrap_or(0),
            }),
            ("margin", _, Some(cents)) => Ok(PayoutRule::Margin {
                amount: Money::from_cents(cents),
            }),
            ("fixed", _, Some(cents)) => Ok(PayoutRule::Fixed {
                amount: Money::from_cents(cents),
            }),
            _ => Err(ConfigError::new("/payout", "incomplete payout rule")),
        }
    }
}

/// The stored payout columns of a rule: `payout_type`, `payout_percent` (a decimal text, read
/// exactly by `jsonb_populate_record`) and `payout_amount_cents`.
pub fn payout_columns(rule: &PayoutRule) -> (&'static str, Option<String>, Option<i64>) {
    match *rule {
        PayoutRule::Revshare { percent_bp } => (
            "revshare",
            Some(format!("{}.{:02}", percent_bp / 100, percent_bp % 100)),
            None,
        ),
        PayoutRule::Margin { amount } => ("margin", None, Some(amount.cents())),
        PayoutRule::Fixed { amount } => ("fixed", None, Some(amount.cents())),
    }
}

/// A posting key hash as a `bytea` text (`\x…`), for [`super::insert`].
pub fn bytea_text(bytes: &[u8]) -> Value {
    Value::from(format!("\\x{}", hex::encode(bytes)))
}

/// The field schema of the tenant's offer, `None` when there is no such offer.
pub async fn offer_fields(
    conn: &mut PgConnection,
    tenant: Uuid,
    offer_id: Uuid,
) -> Result<Option<Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT fields FROM offers WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(offer_id)
        .fetch_optional(conn)
        .await
}

/// The id and filters of each live (not archived) contract of the offer, in id order.
pub async fn live_contract_filters(
    conn: &mut PgConnection,
    tenant: Uuid,
    offer_id: Uuid,
) -> Result<Vec<(Uuid, Value)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, filters FROM contracts
         WHERE tenant_id = $1 AND offer_id = $2 AND status <> 'archived' ORDER BY id",
    )
    .bind(tenant)
    .bind(offer_id)
    .fetch_all(conn)
    .await
}

/// Replaces the campaign's posting key hash; `None` when there is no such campaign.
pub async fn rotate_posting_key<'c>(
    db: impl PgExecutor<'c>,
    tenant: Uuid,
    id: Uuid,
    hash: &[u8],
) -> Result<Option<CampaignRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE campaigns SET posting_key_hash = $3 WHERE tenant_id = $1 AND id = $2 RETURNING {}",
        Campaigns::COLUMNS
    )))
    .bind(tenant)
    .bind(id)
    .bind(hash)
    .fetch_optional(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_every_field_and_computed_ones_by_their_expression() {
        assert_eq!(
            Partners::COLUMNS,
            "tenant_id, id, name, status, created_at, updated_at"
        );
        assert!(Campaigns::COLUMNS.contains("(payout_percent * 100)::int AS payout_percent_bp, "));
        assert_eq!(Campaigns::CREATED, ["posting_key_hash"]);
        assert_eq!(Contracts::LOADED, "status <> 'archived'");
        assert_eq!(Offers::LOADED, "TRUE");
    }

    #[test]
    fn payout_columns_are_exact_and_read_back_alike() {
        let rule = PayoutRule::Revshare { percent_bp: 7005 };
        assert_eq!(
            payout_columns(&rule),
            ("revshare", Some("70.05".to_owned()), None)
        );
        let fixed = PayoutRule::Fixed {
            amount: Money::from_cents(800),
        };
        assert_eq!(payout_columns(&fixed), ("fixed", None, Some(800)));
        assert_eq!(bytea_text(&[0xab, 0x01]), Value::from("\\xab01"));
    }
}
