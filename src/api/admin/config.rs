//! The tenant's configuration (SPEC §4): partners, buyers, offers, campaigns and contracts.
//!
//! Every resource follows the same steps: read the body into stored values (collecting every
//! broken rule, checked by the same compile functions the auction uses), then write, scoped by
//! the tenant. A `PATCH` validates the resource as it would be after the patch. `DELETE`
//! archives: the row stays for the history that points at it. Running servers pick a change up
//! through the configuration tables' NOTIFY triggers, as they do for SQL edits; this process
//! answers a write once its own snapshot includes it (`extract::read_your_writes`).

use std::str::FromStr;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{FromRow, PgConnection};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::input::{Input, amounts_from_cents, amounts_to_cents, merged, read_money};
use super::{PageQuery, page, parse_id};
use crate::api::Problem;
use crate::api::extract::{AdminTenant, JsonObject};
use crate::app::AppState;
use crate::auction::{
    CompiledCaps, CompiledFilter, CompiledSchedule, CompiledSchema, ConfigError, Mode, OfferRules,
    PayoutRule, Pricing, Status,
};
use crate::buyers::delivery::DeliveryConfig;
use crate::keys;
use crate::money::Money;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_partners, create_partner))
        .routes(routes!(get_partner, update_partner, archive_partner))
        .routes(routes!(list_buyers, create_buyer))
        .routes(routes!(get_buyer, update_buyer, archive_buyer))
        .routes(routes!(list_offers, create_offer))
        .routes(routes!(get_offer, update_offer, archive_offer))
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign, update_campaign, archive_campaign))
        .routes(routes!(rotate_posting_key))
        .routes(routes!(list_contracts, create_contract))
        .routes(routes!(get_contract, update_contract, archive_contract))
        .route_layer(axum::middleware::from_fn(
            crate::api::extract::read_your_writes,
        ))
}

fn status_of(text: &str) -> Status {
    // The column's CHECK allows only the three.
    Status::from_str(text).unwrap_or(Status::Paused)
}

/// Row locks taken by a read. A GET takes none, so it never queues behind a post's or a
/// write's transaction on the same row; a write's read locks the row it is about to change.
#[derive(Clone, Copy)]
enum Lock {
    None,
    ForWrite,
}

impl Lock {
    /// `select` (a constant) with the lock's clause.
    fn applied(self, select: &'static str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(match self {
            Lock::None => select.to_owned(),
            Lock::ForWrite => format!("{select} FOR NO KEY UPDATE"),
        })
    }
}

fn invalid(errors: Vec<ConfigError>) -> Problem {
    Problem::invalid_config(errors)
}

// ---------------------------------------------------------------------------------------------
// Partners

/// A lead source.
#[derive(Serialize, ToSchema)]
pub struct Partner {
    #[schema(read_only)]
    id: Uuid,
    name: String,
    status: Status,
    #[schema(read_only)]
    created_at: DateTime<Utc>,
    #[schema(read_only)]
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct PartnerRow {
    id: Uuid,
    name: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PartnerRow> for Partner {
    fn from(row: PartnerRow) -> Self {
        Partner {
            id: row.id,
            name: row.name,
            status: status_of(&row.status),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const PARTNER_FIELDS: &[&str] = &["name", "status"];

struct PartnerValues {
    name: String,
    status: Status,
}

impl PartnerValues {
    fn read(body: &Map<String, Value>) -> Result<Self, Problem> {
        let mut input = Input::new(body, PARTNER_FIELDS);
        let values = PartnerValues {
            name: input.name("name"),
            status: input.status(),
        };
        input.finish().map_err(invalid)?;
        Ok(values)
    }
}

macro_rules! partner_columns {
    () => {
        "id, name, status, created_at, updated_at"
    };
}

/// The partner, locked against other writers for a write (`Lock::ForWrite`).
async fn find_partner(conn: &mut PgConnection, tenant: Uuid, id: Uuid) -> Result<Partner, Problem> {
    load_partner(conn, tenant, id, Lock::ForWrite).await
}

async fn load_partner(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    lock: Lock,
) -> Result<Partner, Problem> {
    let row: Option<PartnerRow> = sqlx::query_as(lock.applied(concat!(
        "SELECT ",
        partner_columns!(),
        " FROM partners WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Partner::from).ok_or_else(Problem::not_found)
}

/// The tenant's partners, oldest first.
#[utoipa::path(get, path = "/v1/admin/partners", tag = "partners", params(PageQuery),
    responses((status = 200, body = PartnerPage)))]
async fn list_partners(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<PageQuery>,
) -> Result<Json<PartnerPage>, Problem> {
    let request = query.read()?;
    let rows: Vec<PartnerRow> = sqlx::query_as(concat!(
        "SELECT ",
        partner_columns!(),
        " FROM partners WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant)
    .bind(request.after)
    .bind(request.limit + 1)
    .fetch_all(&state.db)
    .await?;
    let (items, next_cursor) = page(rows, request.limit, |r| r.id);
    Ok(Json(PartnerPage {
        items: items.into_iter().map(Partner::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/v1/admin/partners", tag = "partners",
    request_body = Partner, responses((status = 201, body = Partner)))]
async fn create_partner(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Partner>), Problem> {
    let values = PartnerValues::read(&body)?;
    let row: PartnerRow = sqlx::query_as(concat!(
        "INSERT INTO partners (tenant_id, id, name, status) VALUES ($1, $2, $3, $4) RETURNING ",
        partner_columns!()
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(&values.name)
    .bind(values.status.as_str())
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/v1/admin/partners/{id}", tag = "partners",
    params(("id" = Uuid, Path)), responses((status = 200, body = Partner)))]
async fn get_partner(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Partner>, Problem> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        load_partner(&mut conn, tenant, parse_id(&id)?, Lock::None).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/admin/partners/{id}", tag = "partners",
    params(("id" = Uuid, Path)),
    request_body(content = Partner, description = "Any subset of the writable fields; the merged result is validated"),
    responses((status = 200, body = Partner)))]
async fn update_partner(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    JsonObject(patch): JsonObject,
) -> Result<Json<Partner>, Problem> {
    let id = parse_id(&id)?;
    let mut tx = state.db.begin().await?;
    let current = find_partner(&mut tx, tenant, id).await?;
    let values = PartnerValues::read(&merged(&current, patch, PARTNER_FIELDS)?)?;
    let row: PartnerRow = sqlx::query_as(concat!(
        "UPDATE partners SET name = $3, status = $4 WHERE tenant_id = $1 AND id = $2 RETURNING ",
        partner_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(&values.name)
    .bind(values.status.as_str())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Archives the partner: its campaigns stop selling; its history stays readable.
#[utoipa::path(delete, path = "/v1/admin/partners/{id}", tag = "partners",
    params(("id" = Uuid, Path)), responses((status = 200, body = Partner)))]
async fn archive_partner(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Partner>, Problem> {
    let row: Option<PartnerRow> = sqlx::query_as(concat!(
        "UPDATE partners SET status = 'archived' WHERE tenant_id = $1 AND id = $2 RETURNING ",
        partner_columns!()
    ))
    .bind(tenant)
    .bind(parse_id(&id)?)
    .fetch_optional(&state.db)
    .await?;
    row.map(|r| Json(r.into())).ok_or_else(Problem::not_found)
}

// ---------------------------------------------------------------------------------------------
// Buyers

/// A company buying leads. `balance` changes only through the ledger (funds and sales).
#[derive(Serialize, ToSchema)]
pub struct Buyer {
    #[schema(read_only)]
    id: Uuid,
    name: String,
    status: Status,
    /// How far below zero the balance may go.
    credit_limit: Money,
    #[schema(read_only)]
    balance: Money,
    #[schema(read_only)]
    created_at: DateTime<Utc>,
    #[schema(read_only)]
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct BuyerRow {
    id: Uuid,
    name: String,
    status: String,
    credit_limit_cents: i64,
    balance_cents: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<BuyerRow> for Buyer {
    fn from(row: BuyerRow) -> Self {
        Buyer {
            id: row.id,
            name: row.name,
            status: status_of(&row.status),
            credit_limit: Money::from_cents(row.credit_limit_cents),
            balance: Money::from_cents(row.balance_cents),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const BUYER_FIELDS: &[&str] = &["name", "status", "credit_limit"];

struct BuyerValues {
    name: String,
    status: Status,
    credit_limit: Money,
}

impl BuyerValues {
    fn read(body: &Map<String, Value>) -> Result<Self, Problem> {
        let mut input = Input::new(body, BUYER_FIELDS);
        let values = BuyerValues {
            name: input.name("name"),
            status: input.status(),
            credit_limit: input.money("credit_limit", Money::ZERO),
        };
        input.finish().map_err(invalid)?;
        Ok(values)
    }
}

macro_rules! buyer_columns {
    () => {
        "id, name, status, credit_limit_cents, balance_cents, created_at, updated_at"
    };
}

/// The buyer, locked against other writers for a write (`Lock::ForWrite`).
pub(super) async fn find_buyer(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
) -> Result<Buyer, Problem> {
    load_buyer(conn, tenant, id, Lock::ForWrite).await
}

async fn load_buyer(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    lock: Lock,
) -> Result<Buyer, Problem> {
    let row: Option<BuyerRow> = sqlx::query_as(lock.applied(concat!(
        "SELECT ",
        buyer_columns!(),
        " FROM buyers WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Buyer::from).ok_or_else(Problem::not_found)
}

/// The tenant's buyers, oldest first, each with its current balance.
#[utoipa::path(get, path = "/v1/admin/buyers", tag = "buyers", params(PageQuery),
    responses((status = 200, body = BuyerPage)))]
async fn list_buyers(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<PageQuery>,
) -> Result<Json<BuyerPage>, Problem> {
    let request = query.read()?;
    let rows: Vec<BuyerRow> = sqlx::query_as(concat!(
        "SELECT ",
        buyer_columns!(),
        " FROM buyers WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant)
    .bind(request.after)
    .bind(request.limit + 1)
    .fetch_all(&state.db)
    .await?;
    let (items, next_cursor) = page(rows, request.limit, |r| r.id);
    Ok(Json(BuyerPage {
        items: items.into_iter().map(Buyer::from).collect(),
        next_cursor,
    }))
}

/// Creates a buyer with a zero balance: fund it with `POST /v1/admin/buyers/{id}/funds`.
#[utoipa::path(post, path = "/v1/admin/buyers", tag = "buyers",
    request_body = Buyer, responses((status = 201, body = Buyer)))]
async fn create_buyer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Buyer>), Problem> {
    let values = BuyerValues::read(&body)?;
    let row: BuyerRow = sqlx::query_as(concat!(
        "INSERT INTO buyers (tenant_id, id, name, status, credit_limit_cents) VALUES ($1, $2, $3, $4, $5)
         RETURNING ",
        buyer_columns!()
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(&values.name)
    .bind(values.status.as_str())
    .bind(values.credit_limit.cents())
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/v1/admin/buyers/{id}", tag = "buyers",
    params(("id" = Uuid, Path)), responses((status = 200, body = Buyer)))]
async fn get_buyer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Buyer>, Problem> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        load_buyer(&mut conn, tenant, parse_id(&id)?, Lock::None).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/admin/buyers/{id}", tag = "buyers",
    params(("id" = Uuid, Path)),
    request_body(content = Buyer, description = "Any subset of the writable fields; the merged result is validated"),
    responses((status = 200, body = Buyer)))]
async fn update_buyer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    JsonObject(patch): JsonObject,
) -> Result<Json<Buyer>, Problem> {
    let id = parse_id(&id)?;
    let mut tx = state.db.begin().await?;
    let current = find_buyer(&mut tx, tenant, id).await?;
    let values = BuyerValues::read(&merged(&current, patch, BUYER_FIELDS)?)?;
    let row: BuyerRow = sqlx::query_as(concat!(
        "UPDATE buyers SET name = $3, status = $4, credit_limit_cents = $5
         WHERE tenant_id = $1 AND id = $2 RETURNING ",
        buyer_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(&values.name)
    .bind(values.status.as_str())
    .bind(values.credit_limit.cents())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Archives the buyer: its contracts stop buying; its ledger and sales stay readable.
#[utoipa::path(delete, path = "/v1/admin/buyers/{id}", tag = "buyers",
    params(("id" = Uuid, Path)), responses((status = 200, body = Buyer)))]
async fn archive_buyer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Buyer>, Problem> {
    let row: Option<BuyerRow> = sqlx::query_as(concat!(
        "UPDATE buyers SET status = 'archived' WHERE tenant_id = $1 AND id = $2 RETURNING ",
        buyer_columns!()
    ))
    .bind(tenant)
    .bind(parse_id(&id)?)
    .fetch_optional(&state.db)
    .await?;
    row.map(|r| Json(r.into())).ok_or_else(Problem::not_found)
}

// ---------------------------------------------------------------------------------------------
// Offers

/// A lead type: its field schema and its distribution mode (SPEC §4.2).
#[derive(Serialize, ToSchema)]
pub struct Offer {
    #[schema(read_only)]
    id: Uuid,
    name: String,
    status: Status,
    mode: Mode,
    max_buyers: i32,
    exclusive_floor: Money,
    ping_ttl_seconds: i32,
    dedup_days: i32,
    require_consent: Vec<String>,
    /// `[{"name","type","pattern","enum","min","max","pii","required"}]`.
    #[schema(value_type = Vec<Object>)]
    fields: Value,
    #[schema(read_only)]
    created_at: DateTime<Utc>,
    #[schema(read_only)]
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct OfferRow {
    id: Uuid,
    name: String,
    status: String,
    mode: String,
    max_buyers: i32,
    exclusive_floor_cents: i64,
    ping_ttl_seconds: i32,
    dedup_days: i32,
    require_consent: Value,
    fields: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<OfferRow> for Offer {
    fn from(row: OfferRow) -> Self {
        Offer {
            id: row.id,
            name: row.name,
            status: status_of(&row.status),
            // The column's CHECK allows only the four modes.
            mode: Mode::from_str(&row.mode).unwrap_or(Mode::Exclusive),
            max_buyers: row.max_buyers,
            exclusive_floor: Money::from_cents(row.exclusive_floor_cents),
            ping_ttl_seconds: row.ping_ttl_seconds,
            dedup_days: row.dedup_days,
            require_consent: serde_json::from_value(row.require_consent).unwrap_or_default(),
            fields: row.fields,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const OFFER_FIELDS: &[&str] = &[
    "name",
    "status",
    "mode",
    "max_buyers",
    "exclusive_floor",
    "ping_ttl_seconds",
    "dedup_days",
    "require_consent",
    "fields",
];

struct OfferValues {
    name: String,
    status: Status,
    rules: OfferRules,
    ping_ttl_seconds: i64,
    fields: Value,
}

impl OfferValues {
    fn read(body: &Map<String, Value>) -> Result<Self, Problem> {
        let mut input = Input::new(body, OFFER_FIELDS);
        let name = input.name("name");
        let status = input.status();
        let mode = match input.value("mode").map(|v| v.as_str().map(Mode::from_str)) {
            Some(Some(Ok(mode))) => mode,
            Some(_) => {
                input.error("mode", "must be exclusive, multisell, hybrid or optimize");
                Mode::Exclusive
            }
            None => {
                input.error("mode", "is required");
                Mode::Exclusive
            }
        };
        let max_buyers = input.integer("max_buyers", 1..=100, 3);
        let exclusive_floor = input.money("exclusive_floor", Money::ZERO);
        let ping_ttl_seconds = input.integer("ping_ttl_seconds", 1..=86_400, 300);
        let dedup_days = input.integer("dedup_days", 0..=365, 0);
        let require_consent = match input.value("require_consent") {
            None => Vec::new(),
            Some(value) => {
                serde_json::from_value::<Vec<String>>(value.clone()).unwrap_or_else(|_| {
                    input.error("require_consent", "must be a list of consent keys");
                    Vec::new()
                })
            }
        };
        let rules = OfferRules {
            mode,
            max_buyers: u32::try_from(max_buyers).unwrap_or(3),
            exclusive_floor,
            dedup_days: u32::try_from(dedup_days).unwrap_or(0),
            require_consent,
        };
        if let Err(errors) = rules.validate() {
            input.extend(errors);
        }
        let fields = input
            .value("fields")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        if let Err(errors) = CompiledSchema::compile(&fields) {
            input.extend(errors);
        }
        input.finish().map_err(invalid)?;
        Ok(OfferValues {
            name,
            status,
            rules,
            ping_ttl_seconds,
            fields,
        })
    }
}

macro_rules! offer_columns {
    () => {
        "id, name, status, mode, max_buyers, exclusive_floor_cents, ping_ttl_seconds, dedup_days,
         require_consent, fields, created_at, updated_at"
    };
}

/// The offer, locked against other writers for a write (`Lock::ForWrite`).
async fn find_offer(conn: &mut PgConnection, tenant: Uuid, id: Uuid) -> Result<Offer, Problem> {
    load_offer(conn, tenant, id, Lock::ForWrite).await
}

async fn load_offer(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    lock: Lock,
) -> Result<Offer, Problem> {
    let row: Option<OfferRow> = sqlx::query_as(lock.applied(concat!(
        "SELECT ",
        offer_columns!(),
        " FROM offers WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Offer::from).ok_or_else(Problem::not_found)
}

/// Another live offer of the tenant already has this name (unique among non-archived offers).
fn offer_name_taken(error: sqlx::Error) -> Problem {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("offers_name") => {
            invalid(vec![ConfigError::new(
                "/name",
                "another offer has this name",
            )])
        }
        _ => error.into(),
    }
}

/// The contracts of the offer must still compile against a changed field schema.
async fn check_contracts_fit(
    conn: &mut PgConnection,
    tenant: Uuid,
    offer_id: Uuid,
    fields: &Value,
) -> Result<(), Problem> {
    let Ok(schema) = CompiledSchema::compile(fields) else {
        return Ok(());
    };
    let contracts: Vec<(Uuid, Value)> = sqlx::query_as(
        "SELECT id, filters FROM contracts
         WHERE tenant_id = $1 AND offer_id = $2 AND status <> 'archived' ORDER BY id",
    )
    .bind(tenant)
    .bind(offer_id)
    .fetch_all(conn)
    .await?;
    let errors: Vec<ConfigError> = contracts
        .iter()
        .filter_map(|(id, filters)| {
            let broken = CompiledFilter::compile(filters, &schema).err()?;
            Some(ConfigError::new(
                "/fields",
                format!(
                    "contract {id} filters on it: {}",
                    broken.first().map(ToString::to_string).unwrap_or_default()
                ),
            ))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(errors))
    }
}

#[utoipa::path(get, path = "/v1/admin/offers", tag = "offers", params(PageQuery),
    responses((status = 200, body = OfferPage)))]
async fn list_offers(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<PageQuery>,
) -> Result<Json<OfferPage>, Problem> {
    let request = query.read()?;
    let rows: Vec<OfferRow> = sqlx::query_as(concat!(
        "SELECT ",
        offer_columns!(),
        " FROM offers WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant)
    .bind(request.after)
    .bind(request.limit + 1)
    .fetch_all(&state.db)
    .await?;
    let (items, next_cursor) = page(rows, request.limit, |r| r.id);
    Ok(Json(OfferPage {
        items: items.into_iter().map(Offer::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/v1/admin/offers", tag = "offers",
    request_body = Offer, responses((status = 201, body = Offer)))]
async fn create_offer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Offer>), Problem> {
    let values = OfferValues::read(&body)?;
    let row: OfferRow = sqlx::query_as(concat!(
        "INSERT INTO offers (tenant_id, id, name, status, mode, max_buyers, exclusive_floor_cents,
                             ping_ttl_seconds, dedup_days, require_consent, fields)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
        offer_columns!()
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(&values.name)
    .bind(values.status.as_str())
    .bind(values.rules.mode.as_str())
    .bind(i64::from(values.rules.max_buyers))
    .bind(values.rules.exclusive_floor.cents())
    .bind(values.ping_ttl_seconds)
    .bind(i64::from(values.rules.dedup_days))
    .bind(serde_json::json!(values.rules.require_consent))
    .bind(&values.fields)
    .fetch_one(&state.db)
    .await
    .map_err(offer_name_taken)?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/v1/admin/offers/{id}", tag = "offers",
    params(("id" = Uuid, Path)), responses((status = 200, body = Offer)))]
async fn get_offer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Offer>, Problem> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        load_offer(&mut conn, tenant, parse_id(&id)?, Lock::None).await?,
    ))
}

/// Changes an offer; a new field schema must still fit the filters of its contracts.
#[utoipa::path(patch, path = "/v1/admin/offers/{id}", tag = "offers",
    params(("id" = Uuid, Path)),
    request_body(content = Offer, description = "Any subset of the writable fields; the merged result is validated"),
    responses((status = 200, body = Offer)))]
async fn update_offer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    JsonObject(patch): JsonObject,
) -> Result<Json<Offer>, Problem> {
    let id = parse_id(&id)?;
    let mut tx = state.db.begin().await?;
    let current = find_offer(&mut tx, tenant, id).await?;
    let values = OfferValues::read(&merged(&current, patch, OFFER_FIELDS)?)?;
    check_contracts_fit(&mut tx, tenant, id, &values.fields).await?;
    let row: OfferRow = sqlx::query_as(concat!(
        "UPDATE offers SET name = $3, status = $4, mode = $5, max_buyers = $6, exclusive_floor_cents = $7,
                ping_ttl_seconds = $8, dedup_days = $9, require_consent = $10, fields = $11
         WHERE tenant_id = $1 AND id = $2 RETURNING ",
        offer_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(&values.name)
    .bind(values.status.as_str())
    .bind(values.rules.mode.as_str())
    .bind(i64::from(values.rules.max_buyers))
    .bind(values.rules.exclusive_floor.cents())
    .bind(values.ping_ttl_seconds)
    .bind(i64::from(values.rules.dedup_days))
    .bind(serde_json::json!(values.rules.require_consent))
    .bind(&values.fields)
    .fetch_one(&mut *tx)
    .await
    .map_err(offer_name_taken)?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Archives the offer: its campaigns stop selling; its pings and leads stay readable.
#[utoipa::path(delete, path = "/v1/admin/offers/{id}", tag = "offers",
    params(("id" = Uuid, Path)), responses((status = 200, body = Offer)))]
async fn archive_offer(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Offer>, Problem> {
    let row: Option<OfferRow> = sqlx::query_as(concat!(
        "UPDATE offers SET status = 'archived' WHERE tenant_id = $1 AND id = $2 RETURNING ",
        offer_columns!()
    ))
    .bind(tenant)
    .bind(parse_id(&id)?)
    .fetch_optional(&state.db)
    .await?;
    row.map(|r| Json(r.into())).ok_or_else(Problem::not_found)
}

// ---------------------------------------------------------------------------------------------
// Campaigns

/// A partner selling into one offer (SPEC §4.3).
#[derive(Serialize, ToSchema)]
pub struct Campaign {
    #[schema(read_only)]
    id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
    status: Status,
    /// `{"type":"revshare","percent":70}`, `{"type":"margin","amount":3.00}` or
    /// `{"type":"fixed","amount":8.00}`.
    #[schema(value_type = Object)]
    payout: PayoutRule,
    min_payout: Money,
    ping_rate_per_second: Option<i32>,
    #[schema(read_only)]
    created_at: DateTime<Utc>,
    #[schema(read_only)]
    updated_at: DateTime<Utc>,
}

/// A campaign with its posting key: answered once, when the key is issued.
#[derive(Serialize, ToSchema)]
pub struct CampaignWithKey {
    #[serde(flatten)]
    campaign: Campaign,
    posting_key: String,
}

#[derive(FromRow)]
struct CampaignRow {
    id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
    status: String,
    payout_type: String,
    payout_percent_bp: Option<i32>,
    payout_amount_cents: Option<i64>,
    min_payout_cents: i64,
    ping_rate_per_second: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CampaignRow> for Campaign {
    fn from(row: CampaignRow) -> Self {
        let amount = Money::from_cents(row.payout_amount_cents.unwrap_or(0));
        // The table's CHECK pairs each type with its value.
        let payout = match row.payout_type.as_str() {
            "margin" => PayoutRule::Margin { amount },
            "fixed" => PayoutRule::Fixed { amount },
            _ => PayoutRule::Revshare {
                percent_bp: u32::try_from(row.payout_percent_bp.unwrap_or(0)).unwrap_or(0),
            },
        };
        Campaign {
            id: row.id,
            partner_id: row.partner_id,
            offer_id: row.offer_id,
            status: status_of(&row.status),
            payout,
            min_payout: Money::from_cents(row.min_payout_cents),
            ping_rate_per_second: row.ping_rate_per_second,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const CAMPAIGN_FIELDS: &[&str] = &[
    "partner_id",
    "offer_id",
    "status",
    "payout",
    "min_payout",
    "ping_rate_per_second",
];

struct CampaignValues {
    partner_id: Uuid,
    offer_id: Uuid,
    status: Status,
    payout: PayoutRule,
    min_payout: Money,
    ping_rate_per_second: Option<i64>,
}

impl CampaignValues {
    /// Reads a campaign; its partner and offer must be the tenant's.
    async fn read(
        conn: &mut PgConnection,
        tenant: Uuid,
        body: &Map<String, Value>,
    ) -> Result<Self, Problem> {
        let mut input = Input::new(body, CAMPAIGN_FIELDS);
        let partner_id = input.id("partner_id");
        let offer_id = input.id("offer_id");
        let status = input.status();
        let payout = match input.value("payout") {
            Some(value) => read_payout(&mut input, value),
            None => {
                input.error("payout", "is required");
                None
            }
        };
        let min_payout = input.money("min_payout", Money::ZERO);
        let ping_rate_per_second = input
            .value("ping_rate_per_second")
            .map(|_| input.integer("ping_rate_per_second", 1..=i64::from(i32::MAX), 1));
        if !partner_id.is_nil() && !exists(conn, Referenced::Partner, tenant, partner_id).await? {
            input.error("partner_id", "no such partner");
        }
        if !offer_id.is_nil() && !exists(conn, Referenced::Offer, tenant, offer_id).await? {
            input.error("offer_id", "no such offer");
        }
        input.finish().map_err(invalid)?;
        Ok(CampaignValues {
            partner_id,
            offer_id,
            status,
            payout: payout.unwrap_or(PayoutRule::Revshare { percent_bp: 0 }),
            min_payout,
            ping_rate_per_second,
        })
    }

    /// The stored payout columns: type, percent in basis points, amount in cents.
    fn payout_columns(&self) -> (&'static str, Option<i64>, Option<i64>) {
        match self.payout {
            PayoutRule::Revshare { percent_bp } => ("revshare", Some(i64::from(percent_bp)), None),
            PayoutRule::Margin { amount } => ("margin", None, Some(amount.cents())),
            PayoutRule::Fixed { amount } => ("fixed", None, Some(amount.cents())),
        }
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

/// A configuration row another one may point at.
#[derive(Clone, Copy)]
enum Referenced {
    Partner,
    Buyer,
    Offer,
}

/// Whether the tenant has the row: another tenant's id is as unknown as a made-up one.
async fn exists(
    conn: &mut PgConnection,
    kind: Referenced,
    tenant: Uuid,
    id: Uuid,
) -> Result<bool, Problem> {
    let sql = match kind {
        Referenced::Partner => {
            "SELECT EXISTS (SELECT 1 FROM partners WHERE tenant_id = $1 AND id = $2)"
        }
        Referenced::Buyer => {
            "SELECT EXISTS (SELECT 1 FROM buyers WHERE tenant_id = $1 AND id = $2)"
        }
        Referenced::Offer => {
            "SELECT EXISTS (SELECT 1 FROM offers WHERE tenant_id = $1 AND id = $2)"
        }
    };
    Ok(sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(id)
        .fetch_one(conn)
        .await?)
}

macro_rules! campaign_columns {
    () => {
        "id, partner_id, offer_id, status, payout_type, (payout_percent * 100)::int AS payout_percent_bp,
         payout_amount_cents, min_payout_cents, ping_rate_per_second, created_at, updated_at"
    };
}

/// The campaign, locked against other writers for a write (`Lock::ForWrite`).
async fn find_campaign(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
) -> Result<Campaign, Problem> {
    load_campaign(conn, tenant, id, Lock::ForWrite).await
}

async fn load_campaign(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    lock: Lock,
) -> Result<Campaign, Problem> {
    let row: Option<CampaignRow> = sqlx::query_as(lock.applied(concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Campaign::from).ok_or_else(Problem::not_found)
}

#[utoipa::path(get, path = "/v1/admin/campaigns", tag = "campaigns", params(PageQuery),
    responses((status = 200, body = CampaignPage)))]
async fn list_campaigns(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<PageQuery>,
) -> Result<Json<CampaignPage>, Problem> {
    let request = query.read()?;
    let rows: Vec<CampaignRow> = sqlx::query_as(concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant)
    .bind(request.after)
    .bind(request.limit + 1)
    .fetch_all(&state.db)
    .await?;
    let (items, next_cursor) = page(rows, request.limit, |r| r.id);
    Ok(Json(CampaignPage {
        items: items.into_iter().map(Campaign::from).collect(),
        next_cursor,
    }))
}

/// Creates a campaign and issues its posting key, shown in this answer only.
#[utoipa::path(post, path = "/v1/admin/campaigns", tag = "campaigns",
    request_body = Campaign, responses((status = 201, body = CampaignWithKey)))]
async fn create_campaign(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<CampaignWithKey>), Problem> {
    let mut tx = state.db.begin().await?;
    let values = CampaignValues::read(&mut tx, tenant, &body).await?;
    let posting_key = keys::generate(keys::POSTING_KEY_PREFIX);
    let (payout_type, percent_bp, amount_cents) = values.payout_columns();
    let row: CampaignRow = sqlx::query_as(concat!(
        "INSERT INTO campaigns (tenant_id, id, partner_id, offer_id, status, posting_key_hash, payout_type,
                                payout_percent, payout_amount_cents, min_payout_cents, ping_rate_per_second)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::numeric / 100, $9, $10, $11) RETURNING ",
        campaign_columns!()
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(values.partner_id)
    .bind(values.offer_id)
    .bind(values.status.as_str())
    .bind(&keys::hash(&posting_key)[..])
    .bind(payout_type)
    .bind(percent_bp)
    .bind(amount_cents)
    .bind(values.min_payout.cents())
    .bind(values.ping_rate_per_second)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CampaignWithKey {
            campaign: row.into(),
            posting_key,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/admin/campaigns/{id}", tag = "campaigns",
    params(("id" = Uuid, Path)), responses((status = 200, body = Campaign)))]
async fn get_campaign(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, Problem> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        load_campaign(&mut conn, tenant, parse_id(&id)?, Lock::None).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/admin/campaigns/{id}", tag = "campaigns",
    params(("id" = Uuid, Path)),
    request_body(content = Campaign, description = "Any subset of the writable fields; the merged result is validated"),
    responses((status = 200, body = Campaign)))]
async fn update_campaign(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    JsonObject(patch): JsonObject,
) -> Result<Json<Campaign>, Problem> {
    let id = parse_id(&id)?;
    let mut tx = state.db.begin().await?;
    let current = find_campaign(&mut tx, tenant, id).await?;
    let body = merged(&current, patch, CAMPAIGN_FIELDS)?;
    let values = CampaignValues::read(&mut tx, tenant, &body).await?;
    let (payout_type, percent_bp, amount_cents) = values.payout_columns();
    let row: CampaignRow = sqlx::query_as(concat!(
        "UPDATE campaigns SET partner_id = $3, offer_id = $4, status = $5, payout_type = $6,
                payout_percent = $7::numeric / 100, payout_amount_cents = $8, min_payout_cents = $9,
                ping_rate_per_second = $10
         WHERE tenant_id = $1 AND id = $2 RETURNING ",
        campaign_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(values.partner_id)
    .bind(values.offer_id)
    .bind(values.status.as_str())
    .bind(payout_type)
    .bind(percent_bp)
    .bind(amount_cents)
    .bind(values.min_payout.cents())
    .bind(values.ping_rate_per_second)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Archives the campaign: its posting key stops working; its pings and sales stay readable.
#[utoipa::path(delete, path = "/v1/admin/campaigns/{id}", tag = "campaigns",
    params(("id" = Uuid, Path)), responses((status = 200, body = Campaign)))]
async fn archive_campaign(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Campaign>, Problem> {
    let row: Option<CampaignRow> = sqlx::query_as(concat!(
        "UPDATE campaigns SET status = 'archived' WHERE tenant_id = $1 AND id = $2 RETURNING ",
        campaign_columns!()
    ))
    .bind(tenant)
    .bind(parse_id(&id)?)
    .fetch_optional(&state.db)
    .await?;
    row.map(|r| Json(r.into())).ok_or_else(Problem::not_found)
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
    let row: Option<CampaignRow> = sqlx::query_as(concat!(
        "UPDATE campaigns SET posting_key_hash = $3 WHERE tenant_id = $1 AND id = $2 RETURNING ",
        campaign_columns!()
    ))
    .bind(tenant)
    .bind(parse_id(&id)?)
    .bind(&keys::hash(&posting_key)[..])
    .fetch_optional(&state.db)
    .await?;
    let campaign = row.map(Campaign::from).ok_or_else(Problem::not_found)?;
    Ok(Json(CampaignWithKey {
        campaign,
        posting_key,
    }))
}

// ---------------------------------------------------------------------------------------------
// Contracts

/// A buyer buying on one offer (SPEC §4.5). Amounts in `pricing` (`exclusive`, `shared`,
/// `max_bid`) and caps (`max_spend`) are decimal numbers.
#[derive(Serialize, ToSchema)]
pub struct Contract {
    #[schema(read_only)]
    id: Uuid,
    buyer_id: Uuid,
    offer_id: Uuid,
    name: String,
    status: Status,
    priority: i32,
    #[schema(value_type = Object)]
    pricing: Value,
    #[schema(value_type = Vec<Object>)]
    filters: Value,
    #[schema(value_type = Option<Object>)]
    schedule: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    caps: Value,
    dedup_days: i32,
    /// Header values are write-only: shown masked (`super::headers`).
    #[schema(value_type = Object)]
    delivery: Value,
    #[schema(read_only)]
    created_at: DateTime<Utc>,
    #[schema(read_only)]
    updated_at: DateTime<Utc>,
    /// The stored `pricing` and `delivery`, secrets unmasked, for a PATCH that sends masked
    /// values back; never shown.
    #[serde(skip)]
    stored_secrets: [Value; 2],
}

#[derive(FromRow)]
struct ContractRow {
    id: Uuid,
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
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Amounts of `pricing` stored as `<name>_cents`.
const PRICE_AMOUNTS: &[&str] = &["exclusive", "shared", "max_bid"];
/// Amounts of a cap stored as `<name>_cents`.
const CAP_AMOUNTS: &[&str] = &["max_spend"];

impl From<ContractRow> for Contract {
    fn from(row: ContractRow) -> Self {
        let stored_secrets = [row.pricing.clone(), row.delivery.clone()];
        let mut pricing = row.pricing;
        if let Value::Object(object) = &mut pricing {
            amounts_from_cents(object, PRICE_AMOUNTS);
        }
        super::headers::mask_section(&mut pricing);
        let mut delivery = row.delivery;
        super::headers::mask_section(&mut delivery);
        let mut caps = row.caps;
        if let Value::Array(items) = &mut caps {
            for cap in items.iter_mut().filter_map(Value::as_object_mut) {
                amounts_from_cents(cap, CAP_AMOUNTS);
            }
        }
        Contract {
            id: row.id,
            buyer_id: row.buyer_id,
            offer_id: row.offer_id,
            name: row.name,
            status: status_of(&row.status),
            priority: row.priority,
            pricing,
            filters: row.filters,
            schedule: row.schedule,
            caps,
            dedup_days: row.dedup_days,
            delivery,
            created_at: row.created_at,
            updated_at: row.updated_at,
            stored_secrets,
        }
    }
}

const CONTRACT_FIELDS: &[&str] = &[
    "buyer_id",
    "offer_id",
    "name",
    "status",
    "priority",
    "pricing",
    "filters",
    "schedule",
    "caps",
    "dedup_days",
    "delivery",
];

/// A contract in its stored form (amounts in cents), checked by the auction's own compilers.
struct ContractValues {
    buyer_id: Uuid,
    offer_id: Uuid,
    name: String,
    status: Status,
    priority: i64,
    pricing: Value,
    filters: Value,
    schedule: Option<Value>,
    caps: Value,
    dedup_days: i64,
    delivery: Value,
}

impl ContractValues {
    /// Reads a contract; its buyer and offer must be the tenant's, and its filters must fit
    /// the offer's field schema.
    async fn read(
        conn: &mut PgConnection,
        tenant: Uuid,
        body: &Map<String, Value>,
    ) -> Result<Self, Problem> {
        let mut input = Input::new(body, CONTRACT_FIELDS);
        let buyer_id = input.id("buyer_id");
        let offer_id = input.id("offer_id");
        let name = input.name("name");
        let status = input.status();
        let priority = input.integer("priority", i64::from(i32::MIN)..=i64::from(i32::MAX), 0);
        let dedup_days = input.integer("dedup_days", 0..=365, 0);
        let pricing = read_pricing(&mut input);
        let caps = read_caps(&mut input);
        let schedule = input.value("schedule").cloned();
        if let Err(errors) = CompiledSchedule::compile(schedule.as_ref().unwrap_or(&Value::Null)) {
            input.extend(errors);
        }
        let delivery = match input.value("delivery") {
            Some(delivery) => {
                if let Err(errors) = DeliveryConfig::parse(delivery) {
                    input.extend(errors);
                }
                delivery.clone()
            }
            None => {
                input.error("delivery", "is required");
                Value::Null
            }
        };
        let filters = input
            .value("filters")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        if !buyer_id.is_nil() && !exists(conn, Referenced::Buyer, tenant, buyer_id).await? {
            input.error("buyer_id", "no such buyer");
        }
        if !offer_id.is_nil() {
            let fields: Option<Value> =
                sqlx::query_scalar("SELECT fields FROM offers WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(offer_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            match fields.map(|f| CompiledSchema::compile(&f)) {
                None => input.error("offer_id", "no such offer"),
                Some(Ok(schema)) => {
                    if let Err(errors) = CompiledFilter::compile(&filters, &schema) {
                        input.extend(errors);
                    }
                }
                // An offer broken by an SQL edit: its schema is the offer's problem to report.
                Some(Err(_)) => input.error("offer_id", "the offer's field schema is invalid"),
            }
        }
        input.finish().map_err(invalid)?;
        Ok(ContractValues {
            buyer_id,
            offer_id,
            name,
            status,
            priority,
            pricing,
            filters,
            schedule,
            caps,
            dedup_days,
            delivery,
        })
    }
}

/// `pricing` with its amounts in cents, checked as the auction reads it.
fn read_pricing(input: &mut Input<'_>) -> Value {
    let Some(value) = input.value("pricing") else {
        input.error("pricing", "is required");
        return Value::Null;
    };
    let Value::Object(object) = value else {
        input.error("pricing", "must be a fixed or rtb pricing object");
        return Value::Null;
    };
    let mut stored = object.clone();
    let errors = amounts_to_cents(&mut stored, PRICE_AMOUNTS, "/pricing");
    let stored = Value::Object(stored);
    if errors.is_empty() {
        if let Err(errors) = Pricing::parse(&stored) {
            input.extend(errors);
        }
    } else {
        input.push(errors);
    }
    stored
}

/// `caps` with spend limits in cents; each cap has one positive limit.
fn read_caps(input: &mut Input<'_>) -> Value {
    let Some(value) = input.value("caps") else {
        return Value::Array(Vec::new());
    };
    let Value::Array(items) = value else {
        input.error("caps", "must be a list of caps");
        return Value::Array(Vec::new());
    };
    let mut errors = Vec::new();
    let mut stored = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("/caps/{i}");
        let Value::Object(cap) = item else {
            errors.push(ConfigError::new(at, "must be a cap object"));
            continue;
        };
        let mut cap = cap.clone();
        // An absent limit may be written as null; stored, a null would count as present.
        cap.retain(|_, value| !value.is_null());
        errors.extend(amounts_to_cents(&mut cap, CAP_AMOUNTS, &at));
        if cap
            .get("max_leads")
            .and_then(Value::as_i64)
            .is_some_and(|n| n < 1)
        {
            errors.push(ConfigError::new(
                format!("{at}/max_leads"),
                "must be at least 1",
            ));
        }
        stored.push(Value::Object(cap));
    }
    let stored = Value::Array(stored);
    if errors.is_empty() {
        if let Err(errors) = CompiledCaps::compile(&stored) {
            input.extend(errors);
        }
    } else {
        input.push(errors);
    }
    stored
}

macro_rules! contract_columns {
    () => {
        "id, buyer_id, offer_id, name, status, priority, pricing, filters, schedule, caps, dedup_days,
         delivery, created_at, updated_at"
    };
}

/// The contract, locked against other writers for a write (`Lock::ForWrite`).
pub(super) async fn find_contract(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
) -> Result<Contract, Problem> {
    load_contract(conn, tenant, id, Lock::ForWrite).await
}

async fn load_contract(
    conn: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    lock: Lock,
) -> Result<Contract, Problem> {
    let row: Option<ContractRow> = sqlx::query_as(lock.applied(concat!(
        "SELECT ",
        contract_columns!(),
        " FROM contracts WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Contract::from).ok_or_else(Problem::not_found)
}

#[utoipa::path(get, path = "/v1/admin/contracts", tag = "contracts", params(PageQuery),
    responses((status = 200, body = ContractPage)))]
async fn list_contracts(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<PageQuery>,
) -> Result<Json<ContractPage>, Problem> {
    let request = query.read()?;
    let rows: Vec<ContractRow> = sqlx::query_as(concat!(
        "SELECT ",
        contract_columns!(),
        " FROM contracts WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(tenant)
    .bind(request.after)
    .bind(request.limit + 1)
    .fetch_all(&state.db)
    .await?;
    let (items, next_cursor) = page(rows, request.limit, |r| r.id);
    Ok(Json(ContractPage {
        items: items.into_iter().map(Contract::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/v1/admin/contracts", tag = "contracts",
    request_body = Contract, responses((status = 201, body = Contract)))]
async fn create_contract(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(mut body): JsonObject,
) -> Result<(StatusCode, Json<Contract>), Problem> {
    let masked = super::headers::restore_masked(&mut body, None);
    if !masked.is_empty() {
        return Err(invalid(masked));
    }
    super::outbound::check_contract_urls(state.http.policy(), &body).await?;
    let mut tx = state.db.begin().await?;
    let values = ContractValues::read(&mut tx, tenant, &body).await?;
    let row: ContractRow = sqlx::query_as(concat!(
        "INSERT INTO contracts (tenant_id, id, buyer_id, offer_id, name, status, priority, pricing, filters,
                                schedule, caps, dedup_days, delivery)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING ",
        contract_columns!()
    ))
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(values.buyer_id)
    .bind(values.offer_id)
    .bind(&values.name)
    .bind(values.status.as_str())
    .bind(values.priority)
    .bind(&values.pricing)
    .bind(&values.filters)
    .bind(&values.schedule)
    .bind(&values.caps)
    .bind(values.dedup_days)
    .bind(&values.delivery)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/v1/admin/contracts/{id}", tag = "contracts",
    params(("id" = Uuid, Path)), responses((status = 200, body = Contract)))]
async fn get_contract(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Contract>, Problem> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        load_contract(&mut conn, tenant, parse_id(&id)?, Lock::None).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/admin/contracts/{id}", tag = "contracts",
    params(("id" = Uuid, Path)),
    request_body(content = Contract, description = "Any subset of the writable fields; the merged result is validated"),
    responses((status = 200, body = Contract)))]
async fn update_contract(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    JsonObject(patch): JsonObject,
) -> Result<Json<Contract>, Problem> {
    let id = parse_id(&id)?;
    super::outbound::check_contract_urls(state.http.policy(), &patch).await?;
    let mut tx = state.db.begin().await?;
    let current = find_contract(&mut tx, tenant, id).await?;
    let mut body = merged(&current, patch, CONTRACT_FIELDS)?;
    let masked = super::headers::restore_masked(&mut body, Some(&current.stored_secrets));
    if !masked.is_empty() {
        return Err(invalid(masked));
    }
    let values = ContractValues::read(&mut tx, tenant, &body).await?;
    let row: ContractRow = sqlx::query_as(concat!(
        "UPDATE contracts SET buyer_id = $3, offer_id = $4, name = $5, status = $6, priority = $7,
                pricing = $8, filters = $9, schedule = $10, caps = $11, dedup_days = $12, delivery = $13
         WHERE tenant_id = $1 AND id = $2 RETURNING ",
        contract_columns!()
    ))
    .bind(tenant)
    .bind(id)
    .bind(values.buyer_id)
    .bind(values.offer_id)
    .bind(&values.name)
    .bind(values.status.as_str())
    .bind(values.priority)
    .bind(&values.pricing)
    .bind(&values.filters)
    .bind(&values.schedule)
    .bind(&values.caps)
    .bind(values.dedup_days)
    .bind(&values.delivery)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Archives the contract: it leaves auctions; its outcomes and sales stay readable.
#[utoipa::path(delete, path = "/v1/admin/contracts/{id}", tag = "contracts",
    params(("id" = Uuid, Path)), responses((status = 200, body = Contract)))]
async fn archive_contract(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<Contract>, Problem> {
    let row: Option<ContractRow> = sqlx::query_as(concat!(
        "UPDATE contracts SET status = 'archived' WHERE tenant_id = $1 AND id = $2 RETURNING ",
        contract_columns!()
    ))
    .bind(tenant)
    .bind(parse_id(&id)?)
    .fetch_optional(&state.db)
    .await?;
    row.map(|r| Json(r.into())).ok_or_else(Problem::not_found)
}

// ---------------------------------------------------------------------------------------------
// Pages and documented inputs

macro_rules! page_type {
    ($page:ident, $item:ty) => {
        /// One page of a list; pass `next_cursor` as `cursor` for the next (null: the last page).
        #[derive(Serialize, ToSchema)]
        pub struct $page {
            items: Vec<$item>,
            next_cursor: Option<String>,
        }
    };
}

page_type!(PartnerPage, Partner);
page_type!(BuyerPage, Buyer);
page_type!(OfferPage, Offer);
page_type!(CampaignPage, Campaign);
page_type!(ContractPage, Contract);
