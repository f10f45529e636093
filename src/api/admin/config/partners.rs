//! Partners: lead sources.

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
use crate::store::admin::rows::{self, PartnerRow, Partners};

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
}

super::resource_view! {
    /// A lead source.
    pub struct Partner {
        name: String,
        status: Status,
    }
}

impl From<PartnerRow> for Partner {
    fn from(row: PartnerRow) -> Self {
        Partner {
            id: row.id,
            name: row.name,
            status: rows::status(&row.status),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct PartnerValues {
    name: String,
    status: &'static str,
}

impl Resource for Partner {
    type Table = Partners;
    type View = Partner;
    type Values = PartnerValues;
    const FIELDS: &'static [&'static str] = super::fields![name status];

    async fn read(
        _conn: &mut PgConnection,
        _tenant: Uuid,
        input: &mut Input<'_>,
    ) -> Result<PartnerValues, Problem> {
        Ok(PartnerValues {
            name: input.name("name"),
            status: input.status().as_str(),
        })
    }
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
