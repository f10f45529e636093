//! Campaigns: a partner selling into one offer, with its posting key (declared in
//! `crate::resources::campaigns`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Resource;
use crate::api::Problem;
use crate::api::admin::input::{Input, read_money};
use crate::api::admin::parse_id;
use crate::api::extract::{AdminTenant, JsonObject};
use crate::app::AppState;
use crate::auction::{ConfigError, PayoutRule};
use crate::keys;
use crate::resources::RowKind;
use crate::resources::campaigns::{Campaign, CampaignRow};
use crate::store::admin::rows;

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
        .routes(routes!(create_campaign))
        .routes(routes!(rotate_posting_key))
}

/// A campaign with its posting key: answered once, when the key is issued.
#[derive(Serialize, ToSchema)]
pub struct CampaignWithKey {
    #[serde(flatten)]
    campaign: Campaign,
    posting_key: String,
}

/// `payout`: a payout rule, stored as its type and its percent or its amount.
pub struct Payout;

/// The stored columns of a payout rule (`rows::payout_columns`).
#[derive(Serialize)]
pub struct PayoutColumns {
    payout_type: &'static str,
    payout_percent: Option<String>,
    payout_amount_cents: Option<i64>,
}

impl RowKind<CampaignRow> for Payout {
    type View = PayoutRule;
    type Stored = PayoutColumns;
    fn view(row: &CampaignRow) -> PayoutRule {
        // The table's CHECK pairs each type with its value.
        row.payout()
            .unwrap_or(PayoutRule::Revshare { percent_bp: 0 })
    }
    fn read(input: &mut Input<'_>, key: &str) -> PayoutColumns {
        let payout = match input.value(key) {
            Some(value) => read_payout(input, value),
            None => {
                input.error(key, "is required");
                None
            }
        };
        let payout = payout.unwrap_or(PayoutRule::Revshare { percent_bp: 0 });
        let (payout_type, payout_percent, payout_amount_cents) = rows::payout_columns(&payout);
        PayoutColumns {
            payout_type,
            payout_percent,
            payout_amount_cents,
        }
    }
}

impl Resource for Campaign {}

/// A payout rule; an error points at the offending member (`/payout/percent`).
fn read_payout(input: &mut Input<'_>, value: &Value) -> Option<PayoutRule> {
    let mut errors = Vec::new();
    // A percent has at most 2 decimals, like money: read it the same exact way.
    if let Some(percent) = value.get("percent") {
        match read_money(percent) {
            Ok(hundredths) if (0..=10_000).contains(&hundredths.cents()) => {}
            Ok(_) => errors.push(ConfigError::new(
                "/payout/percent",
                "must be between 0 and 100",
            )),
            Err(message) => errors.push(ConfigError::new("/payout/percent", message)),
        }
    }
    if let Some(amount) = value.get("amount") {
        match read_money(amount) {
            Ok(amount) if !amount.is_negative() => {}
            Ok(_) => errors.push(ConfigError::new("/payout/amount", "must not be negative")),
            Err(message) => errors.push(ConfigError::new("/payout/amount", message)),
        }
    }
    if errors.is_empty() {
        // The members are sound: what is left to check is the shape.
        match serde_json::from_value::<PayoutRule>(value.clone()) {
            Ok(rule) => return Some(rule),
            Err(error) => errors.push(ConfigError::new(
                "/payout",
                crate::auction::shape_error(&error),
            )),
        }
    }
    input.push(errors);
    None
}

super::resource_routes! {
    resource = Campaign, view = Campaign, page = CampaignPage, tag = "campaigns",
    collection = "/v1/admin/campaigns", item = "/v1/admin/campaigns/{id}",
    list = list_campaigns,
    get = get_campaign,
    update = update_campaign,
    /// Archives the campaign: its posting key stops working; its pings and sales stay readable.
    archive = archive_campaign,
}

/// Creates a campaign and issues its posting key, shown in this answer only.
#[utoipa::path(post, path = "/v1/admin/campaigns", tag = "campaigns",
    request_body = Campaign, responses((status = 201, body = CampaignWithKey)))]
async fn create_campaign(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<CampaignWithKey>), Problem> {
    let posting_key = keys::generate(keys::POSTING_KEY_PREFIX);
    let created = Map::from_iter([(
        "posting_key_hash".to_owned(),
        rows::bytea_text(&keys::hash(&posting_key)),
    )]);
    let campaign = super::create::<Campaign>(&state, tenant, body, created).await?;
    Ok((
        StatusCode::CREATED,
        Json(CampaignWithKey {
            campaign,
            posting_key,
        }),
    ))
}

/// Issues a new posting key; the old one stops working as soon as servers reload (within 1 s).
#[utoipa::path(post, path = "/v1/admin/campaigns/{id}/rotate-key", tag = "campaigns",
    params(("id" = Uuid, Path)), responses((status = 200, body = CampaignWithKey)))]
async fn rotate_posting_key(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<CampaignWithKey>, Problem> {
    let posting_key = keys::generate(keys::POSTING_KEY_PREFIX);
    let row =
        rows::rotate_posting_key(&state.db, tenant, parse_id(&id)?, &keys::hash(&posting_key))
            .await?;
    let campaign = row.map(Campaign::from).ok_or_else(Problem::not_found)?;
    Ok(Json(CampaignWithKey {
        campaign,
        posting_key,
    }))
}
