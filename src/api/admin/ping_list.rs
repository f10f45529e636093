//! The tenant's pings as a list: newest first, filtered by time, partner, campaign, status
//! and whether they were posted. No lead field is listed (PII or not): a ping's lead is on
//! the lead's own view only.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{money, page, parse_limit, parse_time, parse_uuid, query_error};
use crate::api::Problem;
use crate::api::extract::AdminTenant;
use crate::app::AppState;
use crate::money::Money;
use crate::store::admin::pings_list::{self, PingFilter, PingListRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_pings))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PingsQuery {
    /// Pings received at or after this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// Pings received before this time (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    to: Option<String>,
    #[param(value_type = Option<Uuid>)]
    partner_id: Option<String>,
    #[param(value_type = Option<Uuid>)]
    campaign_id: Option<String>,
    /// The ping's result: `bids`, `no_bids`, `duplicate`, the error code of a refused ping
    /// (`invalid_field`, …), or `refused` for any of those.
    status: Option<String>,
    /// `true`: only posted pings (a lead was stored); `false`: only those never posted.
    #[param(value_type = Option<bool>)]
    posted: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One ping of the list: its result and what came of it, named; never a lead field.
#[derive(Serialize, ToSchema)]
pub struct PingItem {
    ping_id: Uuid,
    created_at: DateTime<Utc>,
    /// The ping's result: `bids`, `no_bids`, `duplicate`, or the error code it was refused with.
    status: String,
    test: bool,
    /// The time Gavel took to answer the ping, in milliseconds.
    latency_ms: f64,
    partner_id: Uuid,
    partner_name: Option<String>,
    campaign_id: Uuid,
    /// A campaign has no name of its own: its partner's and its offer's (`Partner → offer`).
    campaign_name: Option<String>,
    offer_id: Uuid,
    offer_name: Option<String>,
    /// The sale type offered to the partner (null without bids).
    sale_type: Option<String>,
    /// The payout offered to the partner (null without bids).
    payout: Option<Money>,
    /// Contracts that saw the ping.
    contracts: i64,
    /// Contracts that bid (the winners and the outbid).
    bids: i64,
    /// The winning bids.
    winners: i64,
    /// The best winning price (null without winners).
    best_price: Option<Money>,
    /// Whether the ping was posted.
    posted: bool,
    /// The lead its post stored (null until then).
    lead_id: Option<Uuid>,
    /// When the post came (null until then).
    posted_at: Option<DateTime<Utc>>,
    /// The post's sales that sold (returned since included).
    sold: i64,
    /// Those sales' prices, summed.
    revenue: Money,
}

impl From<PingListRow> for PingItem {
    fn from(r: PingListRow) -> Self {
        PingItem {
            ping_id: r.id,
            created_at: r.created_at,
            status: r.result,
            test: r.test,
            latency_ms: (r.latency_us as f64 / 100.0).round() / 10.0,
            partner_id: r.partner_id,
            partner_name: r.partner_name,
            campaign_id: r.campaign_id,
            campaign_name: r.campaign_name,
            offer_id: r.offer_id,
            offer_name: r.offer_name,
            sale_type: r.sale_type,
            payout: money(r.payout_cents),
            contracts: r.contracts,
            bids: r.bids,
            winners: r.winners,
            best_price: money(r.best_price_cents),
            posted: r.lead_id.is_some(),
            lead_id: r.lead_id,
            posted_at: r.posted_at,
            sold: r.sold,
            revenue: Money::from_cents(r.revenue_cents),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PingsPage {
    items: Vec<PingItem>,
    next_cursor: Option<String>,
}

/// A status of the filter: a result code's shape (snake_case), not a free text.
fn is_status(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The tenant's pings, newest first, filtered by time, partner, campaign, status and post.
#[utoipa::path(get, path = "/v1/admin/pings", tag = "inspection", params(PingsQuery),
    responses((status = 200, body = PingsPage)))]
async fn list_pings(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<PingsQuery>,
) -> Result<Json<PingsPage>, Problem> {
    if let Some(status) = &query.status
        && !is_status(status)
    {
        return Err(query_error("status", "is not a ping status"));
    }
    let posted = match query.posted.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(query_error("posted", "must be true or false")),
    };
    let limit = parse_limit(query.limit.as_deref())?;
    let filter = PingFilter {
        from: parse_time("from", query.from.as_deref())?,
        to: parse_time("to", query.to.as_deref())?,
        partner_id: parse_uuid("partner_id", query.partner_id.as_deref())?,
        campaign_id: parse_uuid("campaign_id", query.campaign_id.as_deref())?,
        status: query.status,
        posted,
        after: parse_uuid("cursor", query.cursor.as_deref())?,
        // One more than the page: there is a next page only if it exists.
        limit: limit + 1,
    };
    let rows = pings_list::list(&state.db, tenant, &filter).await?;
    let (rows, next_cursor) = page(rows, limit, |r| r.id);
    let items = rows.into_iter().map(PingItem::from).collect();
    Ok(Json(PingsPage { items, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::is_status;

    #[test]
    fn a_status_is_a_code() {
        assert!(is_status("no_bids"));
        assert!(is_status("refused"));
        assert!(!is_status(""));
        assert!(!is_status("bids' OR 1=1"));
        assert!(!is_status(&"a".repeat(65)));
    }
}
