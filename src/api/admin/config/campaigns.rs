//! Campaigns: a partner selling into one offer, with its posting key.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Resource, exists};
use crate::api::Problem;
use crate::api::admin::input::{Input, read_money};
use crate::api::admin::parse_id;
use crate::api::extract::{AdminTenant, JsonObject};
use crate::app::AppState;
use crate::auction::{ConfigError, PayoutRule, Status};
use crate::keys;
use crate::money::Money;
use crate::store::admin::rows::{self, CampaignRow, Campaigns, Offers, Partners};

pub fn router() -> OpenApiRouter<AppState> {
    resource_router()
        .routes(routes!(create_campaign))
        .routes(routes!(rotate_posting_key))
}

super::resource_view! {
    /// A partner selling into one offer (SPEC §4.3).
    pub struct Campaign {
        partner_id: Uuid,
        offer_id: Uuid,
        status: Status,
        /// `{"type":"revshare","percent":70}`, `{"type":"margin","amount":3.00}` or
        /// `{"type":"fixed","amount":8.00}`.
        #[schema(value_type = Object)]
        payout: PayoutRule,
        min_payout: Money,
        ping_rate_per_second: Option<i32>,
    }
}

/// A campaign with its posting key: answered once, when the key is issued.
#[derive(Serialize, ToSchema)]
pub struct CampaignWithKey {
    #[serde(flatten)]
    campaign: Campaign,
    posting_key: String,
}

impl From<CampaignRow> for Campaign {
    fn from(row: CampaignRow) -> Self {
        Campaign {
            // The table's CHECK pairs each type with its value.
            payout: row
                .payout()
                .unwrap_or(PayoutRule::Revshare { percent_bp: 0 }),
            id: row.id,
            partner_id: row.partner_id,
            offer_id: row.offer_id,
            status: rows::status(&row.status),
            min_payout: Money::from_cents(row.min_payout_cents),
            ping_rate_per_second: row.ping_rate_per_second,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct CampaignValues {
    partner_id: Uuid,
    offer_id: Uuid,
    status: &'static str,
    payout_type: &'static str,
    payout_percent: Option<String>,
    payout_amount_cents: Option<i64>,
    min_payout_cents: i64,
    ping_rate_per_second: Option<i64>,
}

impl Resource for Campaign {
    type Table = Campaigns;
    type View = Campaign;
    type Values = CampaignValues;
    const FIELDS: &'static [&'static str] =
        super::fields![partner_id offer_id status payout min_payout ping_rate_per_second];

    /// Reads a campaign; its partner and offer must be the tenant's.
    async fn read(
        conn: &mut PgConnection,
        tenant: Uuid,
        input: &mut Input<'_>,
    ) -> Result<CampaignValues, Problem> {
        let partner_id = input.id("partner_id");
        let offer_id = input.id("offer_id");
        let status = input.status();
        let payout = match input.value("payout") {
            Some(value) => read_payout(input, value),
            None => {
                input.error("payout", "is required");
                None
            }
        };
        let min_payout = input.money("min_payout", Money::ZERO);
        let ping_rate_per_second = input
            .value("ping_rate_per_second")
            .map(|_| input.integer("ping_rate_per_second", 1..=i64::from(i32::MAX), 1));
        if !partner_id.is_nil() && !exists::<Partners>(conn, tenant, partner_id).await? {
            input.error("partner_id", "no such partner");
        }
        if !offer_id.is_nil() && !exists::<Offers>(conn, tenant, offer_id).await? {
            input.error("offer_id", "no such offer");
        }
        let payout = payout.unwrap_or(PayoutRule::Revshare { percent_bp: 0 });
        let (payout_type, payout_percent, payout_amount_cents) = rows::payout_columns(&payout);
        Ok(CampaignValues {
            partner_id,
            offer_id,
            status: status.as_str(),
            payout_type,
            payout_percent,
            payout_amount_cents,
            min_payout_cents: min_payout.cents(),
            ping_rate_per_second,
        })
    }
}

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
