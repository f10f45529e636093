//! Partners: lead sources (declared in `crate::resources::partners`).

use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::Resource;
use crate::api::Problem;
use crate::app::AppState;
use crate::resources::partners::Partner;

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

impl Resource for Partner {}

/// The partner, locked against other writers for a write (`Lock::ForWrite`), as `find_buyer`.
pub async fn find_partner(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
) -> Result<Partner, Problem> {
    super::find::<Partner>(conn, tenant, id).await
}

super::resource_routes! {
    resource = Partner, view = Partner, page = PartnerPage, tag = "partners",
    collection = "/v1/admin/partners", item = "/v1/admin/partners/{id}",
    /// The tenant's partners, oldest first.
    list = list_partners,
    create = create_partner,
    get = get_partner,
    update = update_partner,
    /// Archives the partner: its campaigns stop selling; its history stays readable.
    archive = archive_partner,
}
