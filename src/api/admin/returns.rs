//! Returns (docs/returns.md, "The workflow"): a buyer's return of a sold lead requested,
//! approved or denied, and the list. Each step is one transaction; the decisions are
//! `crate::returns`', the SQL `store::admin::returns`'.

use std::str::FromStr;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::input::Input;
use super::{parse_id, parse_limit, parse_time, parse_uuid, query_error};
use crate::api::extract::{AdminTenant, JsonObject, OptionalJsonObject};
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::AppState;
use crate::auction::ConfigError;
use crate::money::Money;
use crate::returns::{
    Refusal, RequestFacts, ReturnPolicy, ReturnSettings, caps_to_give_back, check_request,
    period_bounds,
};
use crate::store::admin::returns::{self as store, NewReturn, ReturnFilter, ReturnRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_return))
        .routes(routes!(approve_return))
        .routes(routes!(deny_return))
        .routes(routes!(list_returns))
        .routes(routes!(get_return))
}

/// A buyer's return of a sold lead.
#[derive(Serialize, ToSchema)]
pub struct ReturnView {
    id: Uuid,
    sale_id: Uuid,
    lead_id: Uuid,
    ping_id: Uuid,
    contract_id: Uuid,
    buyer_id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
    /// `requested`, `approved` or `denied`.
    status: String,
    /// One of the contract's `returns.reasons`.
    reason: String,
    note: Option<String>,
    /// The sale's price: refunded to the buyer on approval.
    price: Money,
    /// Null until approved, then what the partner was debited (0 under `exchange_absorbs`).
    payout_reversed: Option<Money>,
    decision_note: Option<String>,
    requested_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
}

impl From<ReturnRow> for ReturnView {
    fn from(row: ReturnRow) -> Self {
        ReturnView {
            id: row.id,
            sale_id: row.sale_id,
            lead_id: row.lead_id,
            ping_id: row.ping_id,
            contract_id: row.contract_id,
            buyer_id: row.buyer_id,
            partner_id: row.partner_id,
            offer_id: row.offer_id,
            status: row.status,
            reason: row.reason,
            note: row.note,
            price: Money::from_cents(row.price_cents),
            payout_reversed: row.payout_reversed_cents.map(Money::from_cents),
            decision_note: row.decision_note,
            requested_at: row.requested_at,
            decided_at: row.decided_at,
        }
    }
}

/// What happened, counted in `/metrics` once the transaction commits.
struct Counted {
    reason: String,
    statuses: Vec<&'static str>,
}

impl Counted {
    fn count(self) {
        for status in self.statuses {
            crate::meters::return_event(&self.reason, status);
        }
    }
}

/// Requests the return of a sold sale: checked in the order of docs/returns.md (the first
/// refusal answers, nothing is written); `approved` at once when the contract's
/// `returns.auto_approve` is on.
#[utoipa::path(post, path = "/v1/admin/sales/{id}/returns", tag = "returns",
    params(("id" = Uuid, Path, description = "The sale")),
    request_body(content = Object, description = "`reason` (one of the contract's `returns.reasons`) and an optional `note` (at most 500 characters; shown in lists, so no PII)",
        example = json!({"reason": "bad_phone", "note": "disconnected"})),
    responses((status = 201, body = ReturnView),
        (status = 409, description = "`sale_not_returnable`, `already_returned`, `returns_not_allowed`, `return_window_closed` or `return_limit_reached`", body = crate::api::problem::ProblemBody<'static>, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_config` (the body) or `return_reason_not_allowed` (pointer `/reason`)", body = crate::api::problem::ProblemBody<'static>, content_type = "application/problem+json")))]
async fn request_return(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    body: Result<JsonObject, Problem>,
) -> Result<(StatusCode, Json<ReturnView>), Problem> {
    let sale_id = parse_id(&id)?;
    let mut tx = state.db.begin().await?;
    // Another tenant's sale (or none) is 404 whatever the body, even one that is no JSON
    // object.
    let contract_id = store::sale_contract(&mut *tx, tenant, sale_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let JsonObject(body) = body?;
    let (reason, note) = read_request(&body).map_err(Problem::invalid_config)?;
    // Requests of one contract queue here: each counts the ones before it against the limit.
    store::lock_contract(&mut tx, tenant, contract_id).await?;
    // Read once the lock is held: a request that queued is judged (window, period) and
    // stamped at the time it runs, never before the request it waited for.
    let now = state.clock.now();
    let facts = store::sale_facts(&mut tx, tenant, sale_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let settings = ReturnSettings::from_stored(&facts.returns);
    let tz = Tz::from_str(&facts.timezone).unwrap_or(Tz::UTC);
    let (start, end) = period_bounds(settings.period, now, tz);
    let (returns_in_period, sold_in_period) =
        store::period_counts(&mut tx, tenant, facts.contract_id, start, end).await?;
    check_request(&RequestFacts {
        sale_status: &facts.status,
        test: facts.test,
        settled_at: facts.settled_at,
        open_return: facts.open_return,
        settings: &settings,
        reason: &reason,
        now,
        returns_in_period,
        sold_in_period,
    })
    .map_err(|refusal| refused(refusal, &facts.status, &settings, sold_in_period))?;
    let new = NewReturn {
        tenant,
        id: Uuid::now_v7(),
        sale_id,
        facts: &facts,
        reason: &reason,
        note: note.as_deref(),
        now,
    };
    let mut row = store::insert(&mut tx, &new)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some(store::ONE_OPEN_RETURN) => {
                Problem::new(ErrorCode::AlreadyReturned)
                    .detail("another return of the sale was requested at the same time")
            }
            _ => error.into(),
        })?;
    let mut counted = Counted {
        reason: reason.clone(),
        statuses: vec!["requested"],
    };
    let mut forget = None;
    if settings.auto_approve {
        match approve_in(&mut tx, tenant, row.id, None, now).await? {
            Decision::Decided(decided, moved) => {
                row = decided;
                forget = moved;
                counted.statuses.push("approved");
            }
            Decision::AsItWas(_) => {
                return Err(crate::Error::Fault(
                    "a return just requested was decided by another request".into(),
                )
                .into());
            }
        }
    }
    tx.commit().await?;
    if let Some((contract, buyer)) = forget {
        state.ping_states.forget_sale(tenant, contract, buyer);
    }
    counted.count();
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// `reason` (required, a text) and an optional `note`.
fn read_request(body: &Map<String, Value>) -> Result<(String, Option<String>), Vec<ConfigError>> {
    let mut input = Input::new(body, &["reason", "note"]);
    let reason = match input.value("reason").map(Value::as_str) {
        Some(Some(reason)) => reason.to_owned(),
        Some(None) => {
            input.error(
                "reason",
                "must be a text: one of the contract's return reasons",
            );
            String::new()
        }
        None => {
            input.error("reason", "is required");
            String::new()
        }
    };
    let note = input.text("note", 500);
    input.finish()?;
    Ok((reason, note))
}

/// An optional `note` of at most 500 characters.
fn read_decision(body: &Map<String, Value>) -> Result<Option<String>, Problem> {
    let mut input = Input::new(body, &["note"]);
    let note = input.text("note", 500);
    input.finish().map_err(Problem::invalid_config)?;
    Ok(note)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The answer to a refused request.
fn refused(refusal: Refusal, status: &str, settings: &ReturnSettings, sold: i64) -> Problem {
    match refusal {
        Refusal::SaleNotReturnable => Problem::new(ErrorCode::SaleNotReturnable).detail(
            if status == "sold" {
                "a test sale cannot be returned".to_owned()
            } else {
                format!("the sale is {status}; only a sold sale can be returned")
            },
        ),
        Refusal::AlreadyReturned(id) => Problem::new(ErrorCode::AlreadyReturned)
            .detail(format!("return {id} of the sale is requested or approved")),
        Refusal::NotAllowed => Problem::new(ErrorCode::ReturnsNotAllowed)
            .detail("the contract's returns.allowed is false"),
        Refusal::ReasonNotAllowed(reasons) => Problem::new(ErrorCode::ReturnReasonNotAllowed)
            .with_errors(vec![FieldError {
                pointer: "/reason".into(),
                code: ErrorCode::ReturnReasonNotAllowed,
            }])
            .detail(format!(
                "the contract allows these reasons: {}",
                reasons.join(", ")
            )),
        Refusal::WindowClosed {
            settled_at,
            window_days,
        } => Problem::new(ErrorCode::ReturnWindowClosed).detail(format!(
            "the sale was sold at {}; its returns closed {window_days} × 24 h later, at {}",
            rfc3339(settled_at),
            rfc3339(settings.window_end(settled_at)),
        )),
        Refusal::LimitReached { used, allowed } => {
            Problem::new(ErrorCode::ReturnLimitReached).detail(format!(
                "{used} of {allowed} returns allowed this {} ({}% of the contract's {sold} sales in it)",
                settings.period.as_str(),
                settings.max_percent,
            ))
        }
    }
}

/// A decision's outcome: made now (with the contract and buyer whose state moved, for an
/// approval), or found already made the same way (idempotent: nothing moved).
enum Decision {
    Decided(ReturnRow, Option<(Uuid, Uuid)>),
    AsItWas(ReturnRow),
}

/// The return as it is after a decision found it decided: the same decision is answered as
/// it is, the other one is 409.
async fn as_decided(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    wanted: &str,
) -> Result<Decision, Problem> {
    let row = store::get(&mut *tx, tenant, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    if row.status == wanted {
        Ok(Decision::AsItWas(row))
    } else {
        Err(Problem::new(ErrorCode::ReturnAlreadyDecided)
            .detail(format!("the return is {}", row.status)))
    }
}

/// Approves a requested return in the caller's transaction, in one call
/// (`store::approve`): the return's status the gate, then the sale `returned`, the current
/// periods' cap counters given back, the buyer credited, the partner debited under
/// `reverse_payout`. Which periods are current is decided here (`caps_to_give_back`, pure).
async fn approve_in(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Decision, Problem> {
    let facts = store::approval_facts(tx, tenant, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    if facts.status != "requested" {
        return as_decided(tx, tenant, id, "approved").await;
    }
    let policy = ReturnPolicy::from_str(&facts.return_policy).unwrap_or_default();
    let tz = Tz::from_str(&facts.timezone).unwrap_or(Tz::UTC);
    let caps = caps_to_give_back(&facts.reserved_caps, now, tz);
    let approval = store::Approval {
        tenant,
        id,
        reversed_cents: policy.reversed_cents(facts.payout_cents),
        note,
        now,
        periods: &caps.periods,
        starts: &caps.starts,
        buyer_periods: &caps.buyer_periods,
        buyer_starts: &caps.buyer_starts,
    };
    match store::approve(tx, &approval).await {
        Ok(Some(row)) => {
            let moved = Some((row.contract_id, row.buyer_id));
            Ok(Decision::Decided(row, moved))
        }
        Ok(None) => as_decided(tx, tenant, id, "approved").await,
        // The request checked the sale sold, and one open return per sale is all that
        // returns a sale: only an SQL edit gets here.
        Err(sqlx::Error::Database(db)) if db.constraint() == Some(store::SALE_SOLD) => {
            Err(Problem::new(ErrorCode::SaleNotReturnable)
                .detail("the sale is not sold any more; the return was left requested"))
        }
        Err(error) => Err(error.into()),
    }
}

/// Denies a requested return in the caller's transaction: nothing else moves.
async fn deny_in(
    tx: &mut PgConnection,
    tenant: Uuid,
    id: Uuid,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Decision, Problem> {
    if !store::deny(tx, tenant, id, note, now).await? {
        return as_decided(tx, tenant, id, "denied").await;
    }
    let row = store::get(&mut *tx, tenant, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok(Decision::Decided(row, None))
}

/// Runs one decision in its own transaction; counts and forgets after the commit.
async fn decide(
    state: &AppState,
    tenant: Uuid,
    id: &str,
    body: &Map<String, Value>,
    approve: bool,
) -> Result<Json<ReturnView>, Problem> {
    let id = parse_id(id)?;
    let note = read_decision(body)?;
    let mut tx = state.db.begin().await?;
    // Read once the transaction began: a decision's time is never before its transaction's.
    let now = state.clock.now();
    let decision = if approve {
        approve_in(&mut tx, tenant, id, note.as_deref(), now).await?
    } else {
        deny_in(&mut tx, tenant, id, note.as_deref(), now).await?
    };
    tx.commit().await?;
    Ok(Json(
        match decision {
            Decision::Decided(row, moved) => {
                if let Some((contract, buyer)) = moved {
                    state.ping_states.forget_sale(tenant, contract, buyer);
                }
                crate::meters::return_event(
                    &row.reason,
                    if approve { "approved" } else { "denied" },
                );
                row
            }
            Decision::AsItWas(row) => row,
        }
        .into(),
    ))
}

/// Approves a requested return, in one transaction: the buyer credited the price (`return`
/// entry), the partner debited its payout under the offer's `reverse_payout`, the sale
/// `returned`, the cap counters of the sale's current periods given back one lead and the
/// price. Approving an approved return answers it as it is; a denied one is 409.
#[utoipa::path(post, path = "/v1/admin/returns/{id}/approve", tag = "returns",
    params(("id" = Uuid, Path)),
    request_body(content = Option<Object>, description = "Optional: `{\"note\": \"…\"}` (at most 500 characters)"),
    responses((status = 200, body = ReturnView),
        (status = 409, description = "`return_already_decided`: the return was denied", body = crate::api::problem::ProblemBody<'static>, content_type = "application/problem+json")))]
async fn approve_return(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    OptionalJsonObject(body): OptionalJsonObject,
) -> Result<Json<ReturnView>, Problem> {
    decide(&state, tenant, &id, &body, true).await
}

/// Denies a requested return: nothing else moves. Denying a denied return answers it as it
/// is; an approved one is 409. A sale whose return was denied may be returned again.
#[utoipa::path(post, path = "/v1/admin/returns/{id}/deny", tag = "returns",
    params(("id" = Uuid, Path)),
    request_body(content = Option<Object>, description = "Optional: `{\"note\": \"…\"}` (at most 500 characters)"),
    responses((status = 200, body = ReturnView),
        (status = 409, description = "`return_already_decided`: the return was approved", body = crate::api::problem::ProblemBody<'static>, content_type = "application/problem+json")))]
async fn deny_return(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    OptionalJsonObject(body): OptionalJsonObject,
) -> Result<Json<ReturnView>, Problem> {
    decide(&state, tenant, &id, &body, false).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReturnsQuery {
    /// `requested`, `approved` or `denied`.
    status: Option<String>,
    #[param(value_type = Option<Uuid>)]
    buyer_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    contract_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    partner_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    sale_id: Option<String>,
    /// Returns requested at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// Returns requested before this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of returns; pass `next_cursor` as `cursor` for the next (null: the last page).
#[derive(Serialize, ToSchema)]
pub struct ReturnPage {
    items: Vec<ReturnView>,
    next_cursor: Option<String>,
}

/// The tenant's returns, newest first, filtered by status, buyer, contract, partner, sale
/// and the time they were requested.
#[utoipa::path(get, path = "/v1/admin/returns", tag = "returns", params(ReturnsQuery),
    responses((status = 200, body = ReturnPage)))]
async fn list_returns(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<ReturnsQuery>,
) -> Result<Json<ReturnPage>, Problem> {
    if let Some(status) = &query.status
        && !["requested", "approved", "denied"].contains(&status.as_str())
    {
        return Err(query_error(
            "status",
            "must be requested, approved or denied",
        ));
    }
    let limit = parse_limit(query.limit.as_deref())?;
    let filter = ReturnFilter {
        status: query.status,
        buyer_id: parse_uuid("buyer_id", query.buyer_id.as_deref())?,
        contract_id: parse_uuid("contract_id", query.contract_id.as_deref())?,
        partner_id: parse_uuid("partner_id", query.partner_id.as_deref())?,
        sale_id: parse_uuid("sale_id", query.sale_id.as_deref())?,
        from: parse_time("from", query.from.as_deref())?,
        to: parse_time("to", query.to.as_deref())?,
        before: parse_uuid("cursor", query.cursor.as_deref())?,
        limit: limit + 1,
    };
    let rows = store::list(&state.db, tenant, &filter).await?;
    let (rows, next_cursor) = super::page(rows, limit, |r| r.id);
    Ok(Json(ReturnPage {
        items: rows.into_iter().map(ReturnView::from).collect(),
        next_cursor,
    }))
}

/// One return.
#[utoipa::path(get, path = "/v1/admin/returns/{id}", tag = "returns",
    params(("id" = Uuid, Path)), responses((status = 200, body = ReturnView)))]
async fn get_return(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<ReturnView>, Problem> {
    let id = parse_id(&id)?;
    let row = store::get(&state.db, tenant, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(row.into()))
}
