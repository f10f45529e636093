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
use sqlx::FromRow;
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

#[derive(FromRow)]
struct LedgerRow {
    id: Uuid,
    kind: String,
    amount_cents: i64,
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
    let balance: i64 = sqlx::query_scalar(
        "UPDATE buyers SET balance_cents = balance_cents + $3 WHERE tenant_id = $1 AND id = $2
         RETURNING balance_cents",
    )
    .bind(tenant)
    .bind(buyer_id)
    .bind(amount.cents())
    .fetch_one(&mut *tx)
    .await?;
    let entry: LedgerRow = sqlx::query_as(
        "INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, note, created_at)
         VALUES ($1, $2, 'buyer', $3, 'funds', $4, $5, $6)
         RETURNING id, kind, amount_cents, sale_id, note, created_at",
    )
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(buyer_id)
    .bind(amount.cents())
    .bind(note)
    .bind(state.clock.now())
    .fetch_one(&mut *tx)
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
    let buyer_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM buyers WHERE tenant_id = $1 AND id = $2)")
            .bind(tenant)
            .bind(buyer_id)
            .fetch_one(&state.db)
            .await?;
    if !buyer_exists {
        return Err(Problem::not_found());
    }
    let rows: Vec<LedgerRow> = sqlx::query_as(
        "SELECT id, kind, amount_cents, sale_id, note, created_at FROM ledger_entries
         WHERE tenant_id = $1 AND buyer_id = $2 AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
    )
    .bind(tenant)
    .bind(buyer_id)
    .bind(request.after)
    .bind(request.limit + 1)
    .fetch_all(&state.db)
    .await?;
    let (rows, next_cursor) = page(rows, request.limit, |e| e.id);
    Ok(Json(LedgerPage {
        items: rows.into_iter().map(LedgerEntry::from).collect(),
        next_cursor,
    }))
}
