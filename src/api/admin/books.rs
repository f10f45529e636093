//! A buyer's money: operator adjustments and the ledger (SPEC §4.4). The balance changes only
//! together with a ledger entry, so it always equals the sum of the buyer's entries.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::config::find_buyer;
use super::input::{Input, read_money};
use super::{PageQuery, page, parse_id};
use crate::api::extract::{AdminTenant, JsonObject};
use crate::api::{Problem, idempotency};
use crate::app::AppState;
use crate::auction::ConfigError;
use crate::money::Money;
use crate::store::admin::books::{self, LedgerRow};
use crate::store::admin::{self, rows::Buyers};
use crate::store::idempotency::{self as store_idempotency, KeyScope, StoredAnswer};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_funds))
        .routes(routes!(list_ledger))
}

/// One change of a buyer's balance and its cause: `funds` (an operator's adjustment), `sale`
/// (a charge, negative) or `release` (a charge given back).
#[derive(Serialize, ToSchema)]
pub struct LedgerEntry {
    id: Uuid,
    kind: String,
    amount: Money,
    sale_id: Option<Uuid>,
    note: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<LedgerRow> for LedgerEntry {
    fn from(row: LedgerRow) -> Self {
        LedgerEntry {
            id: row.id,
            kind: row.kind,
            amount: Money::from_cents(row.amount_cents),
            sale_id: row.sale_id,
            note: row.note,
            created_at: row.created_at,
        }
    }
}

/// The entry written and the balance after it.
#[derive(Serialize, ToSchema)]
pub struct FundsReceipt {
    entry: LedgerEntry,
    balance: Money,
}

/// Adds (or, negative, removes) funds: one ledger entry and the balance, in one transaction.
#[utoipa::path(post, path = "/v1/admin/buyers/{id}/funds", tag = "buyers",
    params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters, \
        unique per tenant: a retry with the same key, buyer and body receives the first answer \
        (`Idempotent-Replayed: true`) and moves no money; another request is `409 idempotency_key_reused`. \
        Kept `idempotency_key_hours` (24 h)")),
    request_body(content = Object, description = "`amount` (positive or negative, at most 2 decimals) and an optional `note`",
        example = json!({"amount": 500.00, "note": "wire 1123"})),
    responses((status = 201, body = FundsReceipt)))]
async fn add_funds(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, Problem> {
    let Some(key) = idempotency::key_of(&headers)? else {
        return Ok(move_funds(&state, tenant, &id, &body, None)
            .await
            .into_response());
    };
    // The request is its buyer and its body (serde_json's map is ordered by key).
    let request: [u8; 32] =
        Sha256::digest(format!("{id}\n{}", serde_json::Value::Object(body.clone())).as_bytes())
            .into();
    let scope = KeyScope {
        tenant_id: tenant,
        route: "funds",
        scope_id: tenant,
        key,
    };
    let run = {
        let (state, scope) = (state.clone(), scope.clone());
        async move {
            move_funds(&state, tenant, &id, &body, Some(&scope))
                .await
                .into_response()
        }
    };
    Ok(idempotency::once(&state, scope, request, run).await)
}

async fn move_funds(
    state: &AppState,
    tenant: Uuid,
    id: &str,
    body: &Map<String, Value>,
    key: Option<&KeyScope>,
) -> Result<(StatusCode, Json<FundsReceipt>), Problem> {
    let buyer_id = parse_id(id)?;
    let mut tx = state.db.begin().await?;
    // Locked first: another tenant's buyer is 404 whatever the body says.
    find_buyer(&mut tx, tenant, buyer_id).await?;
    let (amount, note) = read_funds(body).map_err(Problem::invalid_config)?;
    let (entry, balance) = books::add_funds(
        &mut tx,
        tenant,
        buyer_id,
        amount.cents(),
        note.as_deref(),
        state.clock.now(),
    )
    .await?;
    let receipt = FundsReceipt {
        entry: entry.into(),
        balance: Money::from_cents(balance),
    };
    // The key's answer commits with the money it answers for: whatever happens to the commit's
    // acknowledgement, a retry finds either both or neither.
    if let Some(key) = key {
        let answer = StoredAnswer {
            http_status: i32::from(StatusCode::CREATED.as_u16()),
            content_type: Some("application/json".to_owned()),
            response: serde_json::to_string(&receipt).ok(),
            ping_id: None,
        };
        store_idempotency::finish(&mut *tx, key, &answer).await?;
    }
    tx.commit().await?;
    state.ping_states.forget_balance(tenant, buyer_id);
    Ok((StatusCode::CREATED, Json(receipt)))
}

/// `amount` (not zero, at most 2 decimals) and an optional `note`.
fn read_funds(body: &Map<String, Value>) -> Result<(Money, Option<String>), Vec<ConfigError>> {
    let mut input = Input::new(body, &["amount", "note"]);
    let amount = match input.value("amount").map(read_money) {
        Some(Ok(amount)) if amount != Money::ZERO => amount,
        Some(Ok(_)) => {
            input.error("amount", "must not be zero");
            Money::ZERO
        }
        Some(Err(message)) => {
            input.error("amount", message);
            Money::ZERO
        }
        None => {
            input.error("amount", "is required");
            Money::ZERO
        }
    };
    let note = match input.value("note") {
        None => None,
        Some(Value::String(note)) if note.chars().count() <= 500 => Some(note.clone()),
        Some(_) => {
            input.error("note", "must be a text of at most 500 characters");
            None
        }
    };
    input.finish()?;
    Ok((amount, note))
}

/// One page of a buyer's ledger, newest first.
#[derive(Serialize, ToSchema)]
pub struct LedgerPage {
    items: Vec<LedgerEntry>,
    next_cursor: Option<String>,
}

/// The buyer's ledger, newest first: every funds adjustment, sale charge and release.
#[utoipa::path(get, path = "/v1/admin/buyers/{id}/ledger", tag = "buyers",
    params(("id" = Uuid, Path), PageQuery), responses((status = 200, body = LedgerPage)))]
async fn list_ledger(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<LedgerPage>, Problem> {
    let buyer_id = parse_id(&id)?;
    let request = query.read()?;
    let mut conn = state.db.acquire().await?;
    if !admin::exists::<Buyers>(&mut conn, tenant, buyer_id).await? {
        return Err(Problem::not_found());
    }
    let rows = books::ledger(
        &mut *conn,
        tenant,
        buyer_id,
        request.after,
        request.limit + 1,
    )
    .await?;
    let (rows, next_cursor) = page(rows, request.limit, |e| e.id);
    Ok(Json(LedgerPage {
        items: rows.into_iter().map(LedgerEntry::from).collect(),
        next_cursor,
    }))
}
