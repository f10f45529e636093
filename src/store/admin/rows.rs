//! The configuration tables' rows, read alike by the admin API and by the configuration
//! snapshot (`snapshot`), with the decoding of stored text (statuses, modes, payout rules) that
//! both share, and the few statements of the admin API beyond the generic ones (`super`).
//!
//! Each table, its row type and its columns are declared once, with the resource's answer and
//! body, in `crate::resources` (one `resource!` per resource): they are re-exported here.

use std::str::FromStr;

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::Table;
use crate::auction::{ConfigError, Distribution, Mode, PayoutRule, Status, Strategy};
use crate::money::Money;

pub use crate::resources::buyers::{BuyerRow, Buyers};
pub use crate::resources::campaigns::{CampaignRow, Campaigns};
pub use crate::resources::contracts::{ContractRow, Contracts};
pub use crate::resources::offers::{OfferRow, Offers};
pub use crate::resources::partners::{PartnerRow, Partners};
pub use crate::resources::suppression_lists::{SuppressionListRow, SuppressionLists};

/// A stored status. The columns' CHECK allows only the three; anything else would be a schema
/// change, read as paused.
pub fn status(text: &str) -> Status {
    Status::from_str(text).unwrap_or(Status::Paused)
}

impl OfferRow {
    pub fn mode(&self) -> Result<Mode, ConfigError> {
        Mode::from_str(&self.mode).map_err(|e| ConfigError::new("/mode", e.to_string()))
    }

    /// The offer's distribution and strategy (the columns' CHECKs allow only known values).
    pub fn routing(&self) -> Result<(Distribution, Strategy), ConfigError> {
        let distribution = Distribution::from_str(&self.distribution)
            .map_err(|e| ConfigError::new("/distribution", e.to_string()))?;
        let strategy = Strategy::from_str(&self.strategy)
            .map_err(|e| ConfigError::new("/strategy", e.to_string()))?;
        Ok((distribution, strategy))
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
            "tenant_id, id, name, status, balance_cents, created_at, updated_at"
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
