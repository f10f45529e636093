//! Buyers: companies buying leads (declared in `crate::resources::buyers`).

use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::Resource;
use crate::api::Problem;
use crate::app::AppState;
pub use crate::resources::buyers::Buyer;

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

impl Resource for Buyer {}

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
