//! The admin API (SPEC §6), scoped to the admin key's tenant: another tenant's id is 404.
//!
//! `config`: the configuration resources; `books`: funds, payments, adjustments and the
//! ledgers; `statements`: the accounts' statements; `inspect`: caps and
//! leads; `reports`: the summary; `trial`: a contract's call tried by the operator; `ping_list`: the pings list; here: the auction of a ping, the sales list, and paging.

mod books;
pub(crate) mod config;
mod erasure;
mod headers;
pub(crate) mod input;
mod inspect;
mod outbound;
mod overview;
mod ping_list;
mod reports;
mod returns;
mod settings;
mod statements;
mod trial;

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::extract::AdminTenant;
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::AppState;
use crate::money::Money;
use crate::store::{pings, sales};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(config::router())
        .merge(books::router())
        .merge(statements::router())
        .merge(inspect::router())
        .merge(reports::router())
        .merge(overview::router())
        .merge(returns::router())
        .merge(trial::router())
        .merge(settings::router())
        .merge(ping_list::router())
        .merge(erasure::router())
        .routes(routes!(ping_view))
        .routes(routes!(list_sales))
}

/// An id in a path: a malformed one is simply not found.
fn parse_id(text: &str) -> Result<Uuid, Problem> {
    text.parse().map_err(|_| Problem::not_found())
}

/// `?limit=&cursor=` of every list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page request: the items after `after` (ids are UUIDv7, so id order is creation order).
pub struct PageRequest {
    after: Option<Uuid>,
    limit: i64,
}

impl PageQuery {
    fn read(&self) -> Result<PageRequest, Problem> {
        Ok(PageRequest {
            after: parse_uuid("cursor", self.cursor.as_deref())?,
            limit: parse_limit(self.limit.as_deref())?,
        })
    }
}

fn parse_limit(text: Option<&str>) -> Result<i64, Problem> {
    match text {
        None => Ok(100),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| query_error("limit", "must be 1 to 1000")),
    }
}

/// Cuts the one row fetched beyond `limit` (queries ask for `limit + 1`), which tells whether
/// another page follows; the cursor is the last item's id.
fn page<T>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more
        .then(|| rows.last().map(|r| id(r).to_string()))
        .flatten();
    (rows, next_cursor)
}

fn money(cents: Option<i64>) -> Option<Money> {
    cents.map(Money::from_cents)
}

#[derive(Serialize, ToSchema)]
pub struct PingView {
    ping_id: Uuid,
    status: String,
    sale_type: Option<String>,
    payout: Option<Money>,
    test: bool,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    /// The time Gavel took to answer the ping, in milliseconds.
    latency_ms: f64,
    /// The lead stored by the ping's post (null until then). The lead's fields are on its own
    /// view (`/v1/admin/leads/{id}`), not here.
    lead_id: Option<Uuid>,
    /// When the post came (null until then).
    posted_at: Option<DateTime<Utc>>,
    /// The partner that pinged, and its name.
    partner_id: Uuid,
    partner_name: Option<String>,
    /// The campaign it pinged through. A campaign has no name of its own: `campaign_name` is
    /// its partner's and its offer's (`Partner → offer`).
    campaign_id: Uuid,
    campaign_name: Option<String>,
    /// The offer, and its name.
    offer_id: Uuid,
    offer_name: Option<String>,
    /// The partner's own tracking ids, as the ping sent them (`sub_ids`).
    #[schema(value_type = Option<Object>)]
    sub_ids: Option<serde_json::Value>,
    winners: Vec<WinnerView>,
    contracts: Vec<ContractView>,
    /// How the ping ranked its bids: `auction` or `waterfall`.
    distribution: crate::auction::Distribution,
    /// The order among bids: `price`, `round_robin` or `weighted`.
    strategy: crate::auction::Strategy,
    /// Every sale of the post, in the order they were made: each winner's own, then the
    /// cascade's attempts at a refused winner's slot (empty until the post).
    attempts: Vec<AttemptView>,
    /// What the offer's consent verification steps found at the post, in order
    /// (docs/verification.md): `[{"step", "type", "required", "outcome", "code", "reason",
    /// "cached", "took_ms"}]`; null before the post or when the offer has no steps.
    #[schema(value_type = Option<Vec<Object>>)]
    verification: Option<serde_json::Value>,
}

/// One sale of a ping's post.
#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    sale_id: Uuid,
    bid_id: Uuid,
    contract_id: Uuid,
    contract_name: String,
    buyer_id: Uuid,
    buyer_name: String,
    /// The winning bid whose slot a cascade attempt fills; null for a winner's own sale.
    replaces_bid_id: Option<Uuid>,
    /// 0 for a winner's own sale, then 1, 2, … for the cascade's attempts at its slot.
    attempt: i16,
    status: String,
    reason: Option<String>,
    price: Money,
    /// The partner's payout (0 unless sold, or returned since).
    payout: Money,
    buyer_http_status: Option<i32>,
    buyer_response: Option<String>,
    delivery_ms: Option<i32>,
    /// When the sale was made (reserved).
    created_at: DateTime<Utc>,
    /// When it settled (null while pending).
    settled_at: Option<DateTime<Utc>>,
    /// The buyer's returns of the sale, oldest first (docs/returns.md).
    returns: Vec<SaleReturn>,
}

/// A buyer's return of a sale, as the explain and the lead view show it.
#[derive(Clone, Serialize, ToSchema)]
pub struct SaleReturn {
    id: Uuid,
    /// `requested`, `approved` or `denied`.
    status: String,
    reason: String,
    requested_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    /// The sale's price, refunded to the buyer on approval.
    price: Money,
    /// What the partner was debited on approval (0 under `exchange_absorbs`); null until then.
    payout_reversed: Option<Money>,
}

/// Each sale's returns, oldest first, from the returns of a ping or a lead (oldest first).
fn returns_by_sale(returns: Vec<pings::StoredReturn>) -> HashMap<Uuid, Vec<SaleReturn>> {
    let mut by_sale: HashMap<Uuid, Vec<SaleReturn>> = HashMap::new();
    for r in returns {
        by_sale.entry(r.sale_id).or_default().push(SaleReturn {
            id: r.id,
            status: r.status,
            reason: r.reason,
            requested_at: r.requested_at,
            decided_at: r.decided_at,
            price: Money::from_cents(r.price_cents),
            payout_reversed: money(r.payout_reversed_cents),
        });
    }
    by_sale
}

/// A sale's payout as shown: the partner's when the sale sold (returned since, too: its
/// returns show what was taken back), else 0.
fn shown_payout(status: &str, payout_cents: i64) -> Money {
    if status == "sold" || status == "returned" {
        Money::from_cents(payout_cents)
    } else {
        Money::ZERO
    }
}

#[derive(Serialize, ToSchema)]
pub struct WinnerView {
    bid_id: Uuid,
    contract_id: Uuid,
    /// The contract's name (archived ones too; null only if its row is gone).
    contract_name: Option<String>,
    buyer_id: Uuid,
    /// The buyer's name (archived ones too; null only if its row is gone).
    buyer_name: Option<String>,
    sale_type: Option<String>,
    price: Option<Money>,
    payout: Option<Money>,
}

#[derive(Serialize, ToSchema)]
pub struct ContractView {
    contract_id: Uuid,
    /// The contract's name (archived ones too; null only if its row is gone).
    contract_name: Option<String>,
    buyer_id: Uuid,
    /// The buyer's name (archived ones too; null only if its row is gone).
    buyer_name: Option<String>,
    /// `won`, `outbid` or `declined`.
    outcome: String,
    reason: Option<String>,
    /// More about the reason: for `filtered`, the failing filter's JSON pointer in the
    /// contract (`/filters/0`); for `cap_reached`, the cap; for `suppressed`, the suppression
    /// list's id; for an RTB decline, what the answer said or lacked.
    detail: Option<String>,
    /// A `filtered` decline in words: the field, the operator, the contract's values and the
    /// ping's value (a PII field's only as set or not), e.g. `state is TX, but the contract
    /// requires state to be one of CA, NY`. Told from the contract's filters as they are now,
    /// which the words say when the contract changed since the ping. For `suppressed`, the
    /// list's name. Null for other reasons.
    explanation: Option<String>,
    exclusive_bid: Option<Money>,
    shared_bid: Option<Money>,
    rtb_ms: Option<i32>,
    /// The RTB buyer's HTTP status, kept when its answer declined the contract
    /// (`rtb_invalid`, `rtb_no_bid`, or `rtb_error` with a status).
    rtb_http_status: Option<i32>,
    /// The buyer's answer then, as text (at most 4 KB).
    rtb_response: Option<String>,
    bid_id: Option<Uuid>,
    /// What happened to the sale after the post (null until then).
    sale: Option<SaleView>,
}

#[derive(Serialize, ToSchema)]
pub struct SaleView {
    status: String,
    reason: Option<String>,
    price: Option<Money>,
    payout: Money,
    /// The delivery: the buyer's HTTP status, its answer (at most 4 KB) and the time it took.
    buyer_http_status: Option<i32>,
    buyer_response: Option<String>,
    delivery_ms: Option<i32>,
    /// The buyer's returns of the sale, oldest first (docs/returns.md).
    returns: Vec<SaleReturn>,
}

/// How long a ping's view waits for its record being written behind its answer: past it, the
/// view shows what is written.
const PENDING_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole auction of one ping: how every contract ended, and why.
#[utoipa::path(get, path = "/v1/admin/pings/{id}", tag = "inspection",
    params(("id" = Uuid, Path)), responses((status = 200, body = PingView)))]
async fn ping_view(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<PingView>, Problem> {
    let ping_id = parse_id(&id)?;
    // A ping answered a moment ago may have its record, or its declines, still being written
    // behind its answer in this process (docs/durability.md): shown once written.
    let written_by = tokio::time::Instant::now() + PENDING_WRITE_WAIT;
    state.pending_pings.wait(ping_id, written_by).await;
    state.pending_declines.wait(ping_id, written_by).await;
    let (ping, rows) = pings::find_ping(&state.db, tenant, ping_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let (distribution, strategy) = crate::auction::parse_routing_label(ping.routing.as_deref());
    // The post's sales and their returns: two statements, at once.
    let (attempts, returns, verification) = tokio::try_join!(
        pings::post_sales(&state.db, tenant, ping_id),
        pings::ping_returns(&state.db, tenant, ping_id),
        crate::store::verifications::of_ping(&state.db, tenant, ping_id),
    )?;
    let returns = returns_by_sale(returns);
    let returns_of = |sale_id: Option<Uuid>| {
        sale_id
            .and_then(|id| returns.get(&id))
            .map(|r| r.to_vec())
            .unwrap_or_default()
    };
    // A filtered decline in words: the offer's schema compiled once, only when one is there.
    let filtered = |r: &pings::StoredDistribution| r.reason.as_deref() == Some("filtered");
    let schema = ping
        .offer_fields
        .as_ref()
        .filter(|_| rows.iter().any(filtered))
        .and_then(|fields| crate::auction::CompiledSchema::compile(fields).ok());
    let ping_lead = ping.lead.as_ref().map(|lead| &lead.0);
    // A suppressed decline names its list (the detail is its id).
    let snapshot = state.config.snapshot();
    let list_names = snapshot.tenant(tenant).map(|t| &t.suppression_list_names);
    let explain = |r: &pings::StoredDistribution| match r.reason.as_deref() {
        Some("filtered") => Some(filtered_in_words(
            r,
            ping.created_at,
            schema.as_ref(),
            ping_lead,
        )),
        Some("suppressed") => {
            let list = r.detail.as_deref().unwrap_or_default();
            let name = list
                .parse::<Uuid>()
                .ok()
                .and_then(|id| list_names?.get(&id));
            Some(match name {
                Some(name) => format!("the consumer is on the suppression list {name} ({list})"),
                None => format!("the consumer is on the suppression list {list}"),
            })
        }
        _ => None,
    };
    let explanations: Vec<Option<String>> = rows.iter().map(explain).collect();
    let attempts = attempts
        .into_iter()
        .map(|s| AttemptView {
            payout: shown_payout(&s.status, s.payout_cents),
            returns: returns_of(Some(s.sale_id)),
            sale_id: s.sale_id,
            bid_id: s.bid_id,
            contract_id: s.contract_id,
            contract_name: s.contract_name,
            buyer_id: s.buyer_id,
            buyer_name: s.buyer_name,
            replaces_bid_id: s.replaces_bid_id,
            attempt: s.attempt,
            status: s.status,
            reason: s.reason,
            price: Money::from_cents(s.price_cents),
            buyer_http_status: s.buyer_http_status,
            buyer_response: s.buyer_response,
            delivery_ms: s.delivery_ms,
            created_at: s.created_at,
            settled_at: s.settled_at,
        })
        .collect();
    let winners = rows
        .iter()
        .filter_map(|r| {
            Some(WinnerView {
                bid_id: r.bid_id?,
                contract_id: r.contract_id,
                contract_name: r.contract_name.clone(),
                buyer_id: r.buyer_id,
                buyer_name: r.buyer_name.clone(),
                sale_type: r.sale_type.clone(),
                price: money(r.price_cents),
                payout: money(r.payout_cents),
            })
        })
        .collect();
    let contracts = rows
        .into_iter()
        .zip(explanations)
        .map(|(r, explanation)| ContractView {
            contract_id: r.contract_id,
            contract_name: r.contract_name,
            buyer_id: r.buyer_id,
            buyer_name: r.buyer_name,
            outcome: r.outcome,
            reason: r.reason,
            detail: r.detail,
            explanation,
            exclusive_bid: money(r.exclusive_bid_cents),
            shared_bid: money(r.shared_bid_cents),
            rtb_ms: r.rtb_ms,
            rtb_http_status: r.rtb_http_status,
            rtb_response: r.rtb_response,
            bid_id: r.bid_id,
            sale: r.sale_status.map(|status| SaleView {
                payout: shown_payout(&status, r.sale_payout_cents.unwrap_or_default()),
                returns: returns_of(r.sale_id),
                status,
                reason: r.sale_reason,
                price: money(r.sale_price_cents),
                buyer_http_status: r.buyer_http_status,
                buyer_response: r.buyer_response,
                delivery_ms: r.delivery_ms,
            }),
        })
        .collect();
    Ok(Json(PingView {
        ping_id: ping.id,
        status: ping.result,
        sale_type: ping.sale_type,
        payout: money(ping.payout_cents),
        test: ping.test,
        created_at: ping.created_at,
        expires_at: ping.expires_at,
        latency_ms: (ping.latency_us as f64 / 100.0).round() / 10.0,
        lead_id: ping.lead_id,
        posted_at: ping.posted_at,
        partner_id: ping.partner_id,
        partner_name: ping.partner_name,
        campaign_id: ping.campaign_id,
        campaign_name: ping.campaign_name,
        offer_id: ping.offer_id,
        offer_name: ping.offer_name,
        sub_ids: ping
            .sub_ids
            .map(|sub_ids| serde_json::Value::Object(sub_ids.0)),
        winners,
        contracts,
        distribution,
        strategy,
        attempts,
        verification,
    }))
}

/// A `filtered` decline in words ([`crate::auction::explain_filtered`]), from the contract's
/// filters and the offer's schema as they are now and the ping's recorded lead; when they
/// cannot tell it (the filter is gone), the pointer in a sentence.
fn filtered_in_words(
    row: &pings::StoredDistribution,
    pinged_at: DateTime<Utc>,
    schema: Option<&crate::auction::CompiledSchema>,
    lead: Option<&serde_json::Map<String, serde_json::Value>>,
) -> String {
    let pointer = row.detail.as_deref().unwrap_or("/filters");
    let changed = row.contract_updated_at.is_some_and(|at| at > pinged_at);
    let empty = serde_json::Map::new();
    let words = match (&row.filters, schema) {
        (Some(filters), Some(schema)) => {
            crate::auction::explain_filtered(filters, pointer, schema, lead.unwrap_or(&empty))
        }
        _ => None,
    };
    match (words, changed) {
        (Some(words), false) => words,
        (Some(words), true) => {
            format!("{words} (filters as they are now; the contract changed since the ping)")
        }
        (None, _) => format!(
            "the contract's filter at {pointer} did not hold for the ping{}",
            if changed {
                " (the contract changed since the ping and has no such filter now)"
            } else {
                ""
            }
        ),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SalesQuery {
    /// Sales created at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// Sales created before this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    #[param(value_type = Option<Uuid>)]
    buyer_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    contract_id: Option<String>,
    /// A sale status: pending, sold, rejected, failed, capped, insufficient_funds, duplicate,
    /// not_accepted, returned, suppressed.
    status: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SaleItem {
    #[serde(flatten)]
    sale: sales::SaleRow,
    price: Money,
    payout: Money,
}

impl From<sales::SaleRow> for SaleItem {
    fn from(sale: sales::SaleRow) -> Self {
        SaleItem {
            price: Money::from_cents(sale.price_cents),
            payout: Money::from_cents(sale.payout_cents),
            sale,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SalesPage {
    items: Vec<SaleItem>,
    next_cursor: Option<String>,
}

fn query_error(name: &str, why: &str) -> Problem {
    Problem::new(ErrorCode::InvalidField)
        .with_errors(vec![FieldError {
            pointer: format!("/query/{name}"),
            code: ErrorCode::InvalidField,
        }])
        .detail(format!("{name} {why}"))
}

fn parse_time(name: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, Problem> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| query_error(name, "must be an RFC 3339 time"))
    })
    .transpose()
}

fn parse_uuid(name: &str, text: Option<&str>) -> Result<Option<Uuid>, Problem> {
    text.map(|t| t.parse().map_err(|_| query_error(name, "must be an id")))
        .transpose()
}

/// The tenant's sales, newest first, filtered by time, buyer, contract and status.
#[utoipa::path(get, path = "/v1/admin/sales", tag = "inspection", params(SalesQuery),
    responses((status = 200, body = SalesPage)))]
async fn list_sales(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<SalesQuery>,
) -> Result<Json<SalesPage>, Problem> {
    if let Some(status) = &query.status
        && status.parse::<crate::post::SaleStatus>().is_err()
    {
        return Err(query_error("status", "is not a sale status"));
    }
    let limit = parse_limit(query.limit.as_deref())?;
    let filter = sales::SaleFilter {
        from: parse_time("from", query.from.as_deref())?,
        to: parse_time("to", query.to.as_deref())?,
        buyer_id: parse_uuid("buyer_id", query.buyer_id.as_deref())?,
        contract_id: parse_uuid("contract_id", query.contract_id.as_deref())?,
        status: query.status,
        before: parse_uuid("cursor", query.cursor.as_deref())?,
        // One more than the page: there is a next page only if it exists.
        limit: limit + 1,
    };
    let mut rows = sales::list(&state.db, tenant, &filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let items = rows.into_iter().map(SaleItem::from).collect();
    Ok(Json(SalesPage { items, next_cursor }))
}
