//! The admin API (SPEC §6), scoped to the admin key's tenant: another tenant's id is 404.

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::api::extract::AdminTenant;
use crate::api::{ErrorCode, Problem};
use crate::app::AppState;
use crate::money::Money;
use crate::store::pings;

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/admin/pings/{id}", get(ping_view))
}

fn not_found() -> Problem {
    Problem::new(ErrorCode::NotFound)
}

/// An id in a path: a malformed one is simply not found.
fn parse_id(text: &str) -> Result<Uuid, Problem> {
    text.parse().map_err(|_| not_found())
}

fn money(cents: Option<i64>) -> Option<Money> {
    cents.map(Money::from_cents)
}

#[derive(Serialize)]
pub struct PingView {
    pub ping_id: Uuid,
    pub status: String,
    pub sale_type: Option<String>,
    pub payout: Option<Money>,
    pub test: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub winners: Vec<WinnerView>,
    pub contracts: Vec<ContractView>,
}

#[derive(Serialize)]
pub struct WinnerView {
    pub bid_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub sale_type: Option<String>,
    pub price: Option<Money>,
    pub payout: Option<Money>,
}

#[derive(Serialize)]
pub struct ContractView {
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    /// `won`, `outbid` or `declined`.
    pub outcome: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub exclusive_bid: Option<Money>,
    pub shared_bid: Option<Money>,
    pub rtb_ms: Option<i32>,
    pub bid_id: Option<Uuid>,
    /// What happened to the sale after the post (null until then).
    pub sale: Option<SaleView>,
}

#[derive(Serialize)]
pub struct SaleView {
    pub status: String,
}

/// The whole auction of one ping: how every contract ended, and why.
async fn ping_view(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
) -> Result<Json<PingView>, Problem> {
    let ping_id = parse_id(&id)?;
    let (ping, rows) = pings::find_ping(&state.db, tenant, ping_id)
        .await?
        .ok_or_else(not_found)?;
    let winners = rows
        .iter()
        .filter_map(|r| {
            Some(WinnerView {
                bid_id: r.bid_id?,
                contract_id: r.contract_id,
                buyer_id: r.buyer_id,
                sale_type: r.sale_type.clone(),
                price: money(r.price_cents),
                payout: money(r.payout_cents),
            })
        })
        .collect();
    let contracts = rows
        .into_iter()
        .map(|r| ContractView {
            contract_id: r.contract_id,
            buyer_id: r.buyer_id,
            outcome: r.outcome,
            reason: r.reason,
            detail: r.detail,
            exclusive_bid: money(r.exclusive_bid_cents),
            shared_bid: money(r.shared_bid_cents),
            rtb_ms: r.rtb_ms,
            bid_id: r.bid_id,
            sale: r.disposition.map(|status| SaleView { status }),
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
        winners,
        contracts,
    }))
}
