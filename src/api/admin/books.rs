//! The accounts' money: a buyer's funds (SPEC §4.4), a partner's payments and adjustments
//! (docs/returns.md), and both ledgers. A balance changes only together with a ledger entry,
//! so it always equals the sum of the account's entries.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::config::{find_buyer, find_partner};
use super::input::{Input, read_money};
use super::{PageQuery, page, parse_id};
use crate::api::extract::{AdminTenant, JsonObject};
use crate::api::{ErrorCode, Problem, idempotency};
use crate::app::AppState;
use crate::auction::ConfigError;
use crate::money::Money;
use crate::store::admin::books::{self, Account, LedgerRow, NewEntry};
use crate::store::admin::{self, rows::Buyers, rows::Partners};
use crate::store::idempotency::{self as store_idempotency, KeyScope, StoredAnswer};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_funds))
        .routes(routes!(list_ledger))
        .routes(routes!(add_payment))
        .routes(routes!(add_adjustment))
        .routes(routes!(list_partner_ledger))
}

/// One change of an account's balance and its cause. A buyer's: `funds` (an operator's
/// adjustment), `sale` (a charge, negative), `release` (a charge given back), `return` (a
/// returned sale's price refunded). A partner's: `sale` (the payout owed), `return` (the payout
/// taken back), `payment` (money paid out, negative), `adjustment` (an operator's correction).
#[derive(Serialize, ToSchema)]
pub struct LedgerEntry {
    id: Uuid,
    kind: String,
    amount: Money,
    sale_id: Option<Uuid>,
    return_id: Option<Uuid>,
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
            return_id: row.return_id,
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

/// The `Idempotency-Key` of the routes that move money.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct MoneyKey {
    /// 1 to 255 printable ASCII characters, unique per tenant: a retry with the same key,
    /// account and body receives the first answer (`Idempotent-Replayed: true`) and moves no
    /// money; another request is `409 idempotency_key_reused`. Kept `idempotency_key_hours`
    /// (24 h).
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}

/// An operator's entry with no sale behind it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// A buyer's funds: any sign but zero, `note` optional.
    Funds,
    /// Money paid out to a partner: positive, at most its balance, entered negative.
    Payment,
    /// A partner's correction: any sign but zero, `note` required.
    Adjustment,
}

impl Operation {
    fn account(self) -> Account {
        match self {
            Operation::Funds => Account::Buyer,
            Operation::Payment | Operation::Adjustment => Account::Partner,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Operation::Funds => "funds",
            Operation::Payment => "payment",
            Operation::Adjustment => "adjustment",
        }
    }
}

/// Adds (or, negative, removes) funds: one ledger entry and the balance, in one transaction.
#[utoipa::path(post, path = "/v1/admin/buyers/{id}/funds", tag = "buyers",
    params(("id" = Uuid, Path), MoneyKey),
    request_body(content = Object, description = "`amount` (positive or negative, at most 2 decimals) and an optional `note`",
        example = json!({"amount": 500.00, "note": "wire 1123"})),
    responses((status = 201, body = FundsReceipt)))]
async fn add_funds(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<JsonObject, Problem>,
) -> Result<Response, Problem> {
    record(state, tenant, id, &headers, body, Operation::Funds).await
}

/// Records money paid out to the partner: one `payment` entry of −amount and the balance, in
/// one transaction. A payment larger than the balance is `409 payment_exceeds_balance` (a
/// prepayment is an adjustment).
#[utoipa::path(post, path = "/v1/admin/partners/{id}/payments", tag = "partners",
    params(("id" = Uuid, Path), MoneyKey),
    request_body(content = Object, description = "`amount` (positive, at most 2 decimals) and an optional `note`",
        example = json!({"amount": 1200.00, "note": "wire 2291"})),
    responses((status = 201, body = FundsReceipt),
        (status = 409, description = "problem+json: `payment_exceeds_balance` (the amount is more than the partner's balance: a prepayment is an adjustment), or `idempotency_key_reused`, `idempotency_key_in_progress` (with Retry-After) for the Idempotency-Key",
            body = crate::api::problem::ProblemBody<'static>, content_type = "application/problem+json")))]
async fn add_payment(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<JsonObject, Problem>,
) -> Result<Response, Problem> {
    record(state, tenant, id, &headers, body, Operation::Payment).await
}

/// Corrects the partner's balance: one `adjustment` entry (either sign, not zero; `note`
/// required) and the balance, in one transaction.
#[utoipa::path(post, path = "/v1/admin/partners/{id}/adjustments", tag = "partners",
    params(("id" = Uuid, Path), MoneyKey),
    request_body(content = Object, description = "`amount` (positive or negative, not zero, at most 2 decimals) and a `note`",
        example = json!({"amount": -15.00, "note": "duplicate payout on lead 8812"})),
    responses((status = 201, body = FundsReceipt)))]
async fn add_adjustment(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<JsonObject, Problem>,
) -> Result<Response, Problem> {
    record(state, tenant, id, &headers, body, Operation::Adjustment).await
}

/// Runs the operation, once per `Idempotency-Key` when there is one.
async fn record(
    state: AppState,
    tenant: Uuid,
    id: String,
    headers: &HeaderMap,
    body: Result<JsonObject, Problem>,
    operation: Operation,
) -> Result<Response, Problem> {
    let body = match body {
        Ok(JsonObject(body)) => body,
        Err(refusal) => return Err(refuse_body(&state, tenant, &id, operation, refusal).await),
    };
    let Some(key) = idempotency::key_of(headers)? else {
        return Ok(move_money(&state, tenant, &id, &body, operation, None)
            .await
            .into_response());
    };
    // The request is its operation, its account and its body (serde_json's map is ordered by
    // key); a buyer's funds are hashed as they always were.
    let body_text = serde_json::Value::Object(body.clone());
    let request = match operation {
        Operation::Funds => format!("{id}\n{body_text}"),
        _ => format!("{}\n{id}\n{body_text}", operation.kind()),
    };
    let request: [u8; 32] = Sha256::digest(request.as_bytes()).into();
    // Every operator's entry shares the `funds` route's keys (the table's CHECK): a key is
    // unique per tenant across them, and reused with another operation it is refused.
    let scope = KeyScope {
        tenant_id: tenant,
        route: "funds",
        scope_id: tenant,
        key,
    };
    let run = {
        let (state, scope) = (state.clone(), scope.clone());
        async move {
            move_money(&state, tenant, &id, &body, operation, Some(&scope))
                .await
                .into_response()
        }
    };
    Ok(idempotency::once(&state, scope, request, run).await)
}

/// A body that is not a JSON object: refused as such, but another tenant's account (or none)
/// is 404 first, whatever the body.
async fn refuse_body(
    state: &AppState,
    tenant: Uuid,
    id: &str,
    operation: Operation,
    refusal: Problem,
) -> Problem {
    let account_id = match parse_id(id) {
        Ok(account_id) => account_id,
        Err(problem) => return problem,
    };
    let exists = async {
        let mut conn = state.db.acquire().await?;
        match operation.account() {
            Account::Buyer => admin::exists::<Buyers>(&mut conn, tenant, account_id).await,
            Account::Partner => admin::exists::<Partners>(&mut conn, tenant, account_id).await,
        }
    };
    match exists.await {
        Ok(true) => refusal,
        Ok(false) => Problem::not_found(),
        Err(error) => error.into(),
    }
}

async fn move_money(
    state: &AppState,
    tenant: Uuid,
    id: &str,
    body: &Map<String, Value>,
    operation: Operation,
    key: Option<&KeyScope>,
) -> Result<(StatusCode, Json<FundsReceipt>), Problem> {
    let account_id = parse_id(id)?;
    let mut tx = state.db.begin().await?;
    // Locked first: another tenant's account is 404 whatever the body says, and concurrent
    // payments are serialized on the partner's row (none can overdraw it).
    let balance = match operation.account() {
        Account::Buyer => find_buyer(&mut tx, tenant, account_id).await?.balance,
        Account::Partner => find_partner(&mut tx, tenant, account_id).await?.balance,
    };
    let (amount, note) = read_entry(body, operation).map_err(Problem::invalid_config)?;
    if operation == Operation::Payment && amount > balance {
        return Err(
            Problem::new(ErrorCode::PaymentExceedsBalance).detail(format!(
                "the payment of {amount} is more than the partner's balance of {balance} \
             (a prepayment is an adjustment)"
            )),
        );
    }
    let amount_cents = match operation {
        Operation::Payment => -amount.cents(),
        Operation::Funds | Operation::Adjustment => amount.cents(),
    };
    let new = NewEntry {
        account: operation.account(),
        account_id,
        kind: operation.kind(),
        amount_cents,
        note: note.as_deref(),
        at: state.clock.now(),
    };
    let (entry, balance) = books::add_entry(&mut tx, tenant, &new).await?;
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
    if operation.account() == Account::Buyer {
        state.ping_states.forget_balance(tenant, account_id);
    }
    Ok((StatusCode::CREATED, Json(receipt)))
}

/// `amount` (not zero, positive for a payment, at most 2 decimals) and `note` (required for an
/// adjustment).
fn read_entry(
    body: &Map<String, Value>,
    operation: Operation,
) -> Result<(Money, Option<String>), Vec<ConfigError>> {
    let mut input = Input::new(body, &["amount", "note"]);
    let amount = match input.value("amount").map(read_money) {
        Some(Ok(amount)) if operation == Operation::Payment && amount <= Money::ZERO => {
            input.error("amount", "must be positive");
            Money::ZERO
        }
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
        None if operation == Operation::Adjustment => {
            input.error("note", "is required");
            None
        }
        None => None,
        Some(Value::String(note))
            if note.chars().count() <= 500
                && (operation != Operation::Adjustment || !note.trim().is_empty()) =>
        {
            Some(note.clone())
        }
        Some(_) => {
            input.error(
                "note",
                if operation == Operation::Adjustment {
                    "must be a text of 1 to 500 characters"
                } else {
                    "must be a text of at most 500 characters"
                },
            );
            None
        }
    };
    input.finish()?;
    Ok((amount, note))
}

/// One page of an account's ledger, newest first.
#[derive(Serialize, ToSchema)]
pub struct LedgerPage {
    items: Vec<LedgerEntry>,
    next_cursor: Option<String>,
}

/// The buyer's ledger, newest first: every funds adjustment, sale charge, release and return.
#[utoipa::path(get, path = "/v1/admin/buyers/{id}/ledger", tag = "buyers",
    params(("id" = Uuid, Path), PageQuery), responses((status = 200, body = LedgerPage)))]
async fn list_ledger(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<LedgerPage>, Problem> {
    ledger_page(&state, tenant, Account::Buyer, &id, &query).await
}

/// The partner's ledger, newest first: every sale's payout, return, payment and adjustment.
#[utoipa::path(get, path = "/v1/admin/partners/{id}/ledger", tag = "partners",
    params(("id" = Uuid, Path), PageQuery), responses((status = 200, body = LedgerPage)))]
async fn list_partner_ledger(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Json<LedgerPage>, Problem> {
    ledger_page(&state, tenant, Account::Partner, &id, &query).await
}

async fn ledger_page(
    state: &AppState,
    tenant: Uuid,
    account: Account,
    id: &str,
    query: &PageQuery,
) -> Result<Json<LedgerPage>, Problem> {
    let account_id = parse_id(id)?;
    let request = query.read()?;
    let mut conn = state.db.acquire().await?;
    let exists = match account {
        Account::Buyer => admin::exists::<Buyers>(&mut conn, tenant, account_id).await?,
        Account::Partner => admin::exists::<Partners>(&mut conn, tenant, account_id).await?,
    };
    if !exists {
        return Err(Problem::not_found());
    }
    let rows = books::ledger(
        &mut *conn,
        tenant,
        account,
        account_id,
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
