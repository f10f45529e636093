//! Buyers: companies buying leads.

use chrono::{DateTime, Utc};
use serde::Serialize;

use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::Resource;
use crate::api::Problem;
use crate::api::admin::input::Input;
use crate::app::AppState;
use crate::auction::Status;
use crate::money::Money;
use crate::store::admin::rows::{self, BuyerRow, Buyers};

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

super::resource_view! {
    /// A company buying leads. `balance` changes only through the ledger (funds and sales).
    pub struct Buyer {
        name: String,
        status: Status,
        /// How far below zero the balance may go.
        credit_limit: Money,
        #[schema(read_only)]
        balance: Money,
    }
}

impl From<BuyerRow> for Buyer {
    fn from(row: BuyerRow) -> Self {
        Buyer {
            id: row.id,
            name: row.name,
            status: rows::status(&row.status),
            credit_limit: Money::from_cents(row.credit_limit_cents),
            balance: Money::from_cents(row.balance_cents),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct BuyerValues {
    name: String,
    status: &'static str,
    credit_limit_cents: i64,
}

impl Resource for Buyer {
    type Table = Buyers;
    type View = Buyer;
    type Values = BuyerValues;
    const FIELDS: &'static [&'static str] = super::fields![name status credit_limit];

    async fn read(
        _conn: &mut PgConnection,
        _tenant: Uuid,
        input: &mut Input<'_>,
    ) -> Result<BuyerValues, Problem> {
        Ok(BuyerValues {
            name: input.name("name"),
            status: input.status().as_str(),
            credit_limit_cents: input.money("credit_limit", Money::ZERO).cents(),
        })
    }
}

/// The buyer, locked against other writers for a write (`Lock::ForWrite`).
pub async fn find_buyer(conn: &mut PgConnection, tenant: Uuid, id: Uuid) -> Result<Buyer, Problem> {
    super::find::<Buyer>(conn, tenant, id).await
}

super::resource_routes! {
    resource = Buyer, view = Buyer, page = BuyerPage, tag = "buyers",
    collection = "/v1/admin/buyers", item = "/v1/admin/buyers/{id}",
    /// The tenant's buyers, oldest first, each with its current balance.
    list = list_buyers,
    create =
        /// Creates a buyer with a zero balance: fund it with `POST /v1/admin/buyers/{id}/funds`.
        create_buyer,
    get = get_buyer,
    update = update_buyer,
    /// Archives the buyer: its contracts stop buying; its ledger and sales stay readable.
    archive = archive_buyer,
}
