//! Partners: lead sources (declared in `crate::resources::partners`).

use utoipa_axum::router::OpenApiRouter;

use super::Resource;
use crate::app::AppState;
use crate::resources::partners::Partner;

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

impl Resource for Partner {}

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
