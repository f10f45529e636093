//! The summary report: per offer, partner, buyer or contract, how pings turned into bids,
//! posts, sales and money over a time range. Each figure is aggregated in SQL from a range
//! scan of an index leading with (tenant_id, created_at) (per buyer or contract, with the
//! range's pings' contract outcomes, found by primary key); test traffic is left out.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::query_error;
use super::statements::{csv_response, no_formula, parse_bound, wants_csv};
use crate::api::extract::AdminTenant;
use crate::api::{ErrorCode, Problem};
use crate::app::AppState;
use crate::money::Money;
use crate::store::admin::reports::{self, GroupBy};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Start of the range: an RFC 3339 instant (inclusive) or a date `YYYY-MM-DD` (its start
    /// in the tenant's timezone), at most `report_max_days` (93 by default) before `to` (in the
    /// tenant's calendar days when a bound is a date); default: that many days before `to`.
    from: Option<String>,
    /// End of the range: an RFC 3339 instant (exclusive) or a date `YYYY-MM-DD` (inclusive: up
    /// to the end of that day in the tenant's timezone); default: now.
    to: Option<String>,
    /// `offer` (default), `partner`, `buyer` or `contract`.
    group_by: Option<String>,
}

/// One group's figures. For offers and partners `pings` counts the partner's pings; for buyers
/// and contracts, the pings they saw (one per contract evaluated), and `posts` the bids of
/// theirs that a post accepted.
#[derive(Serialize, ToSchema)]
pub struct SummaryRow {
    group_id: Uuid,
    /// The group's name: the offer's, partner's, buyer's or contract's (archived ones too).
    group_name: Option<String>,
    pings: i64,
    pings_with_bids: i64,
    /// `pings_with_bids / pings` (0 without pings).
    bid_rate: f64,
    posts: i64,
    /// Leads sold in the range, returned since or not (gross).
    sales: i64,
    /// What buyers paid for them (gross).
    revenue: Money,
    /// What partners earned on them (gross).
    payout: Money,
    /// `revenue - payout`.
    margin: Money,
    /// Approved returns of those sales.
    returns: i64,
    /// Their prices, refunded to the buyers.
    returned_revenue: Money,
    /// `returns / sales`, 4 decimals (0 without sales).
    return_rate: f64,
    /// `revenue - returned_revenue`.
    net_revenue: Money,
    /// `payout -` the payouts the returns took back from partners.
    net_payout: Money,
    /// `net_revenue - net_payout`.
    net_margin: Money,
    /// How many contract evaluations ended for each reason (`filtered`, `outbid`, …).
    declines: BTreeMap<String, i64>,
}

impl SummaryRow {
    fn new(group_id: Uuid) -> Self {
        SummaryRow {
            group_id,
            group_name: None,
            pings: 0,
            pings_with_bids: 0,
            bid_rate: 0.0,
            posts: 0,
            sales: 0,
            revenue: Money::ZERO,
            payout: Money::ZERO,
            margin: Money::ZERO,
            returns: 0,
            returned_revenue: Money::ZERO,
            return_rate: 0.0,
            net_revenue: Money::ZERO,
            net_payout: Money::ZERO,
            net_margin: Money::ZERO,
            declines: BTreeMap::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Summary {
    rows: Vec<SummaryRow>,
}

/// `part / whole` to 4 decimals, 0 when `whole` is 0. A ratio of counts, not money: a float
/// is right here.
fn rate(part: i64, whole: i64) -> f64 {
    if whole > 0 {
        (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// What the report groups by, from the query (no SQL comes from the request).
fn parse_group_by(text: Option<&str>) -> Result<GroupBy, Problem> {
    match text.unwrap_or("offer") {
        "offer" => Ok(GroupBy::Offer),
        "partner" => Ok(GroupBy::Partner),
        "buyer" => Ok(GroupBy::Buyer),
        "contract" => Ok(GroupBy::Contract),
        _ => Err(query_error(
            "group_by",
            "must be offer, partner, buyer or contract",
        )),
    }
}

/// A report the database could not answer (cancelled by the statement timeout, most likely)
/// is the usual 503, with a detail that says what to do.
fn too_costly(error: sqlx::Error) -> Problem {
    let problem = Problem::from(error);
    if problem.code != ErrorCode::Unavailable {
        return problem;
    }
    problem.detail(
        "the database could not answer the report in time (a report running longer than the \
         statement timeout, statement_timeout_ms, is cancelled): retry, or ask for a shorter range",
    )
}

/// Per group: pings, pings with bids, bid rate, posts, sales, revenue, payout, margin, the
/// count of each decline reason, and the sales' approved returns with the net figures
/// (docs/returns.md). JSON, or CSV with `Accept: text/csv`.
#[utoipa::path(get, path = "/v1/admin/reports/summary", tag = "reports", params(SummaryQuery),
    responses((status = 200, description = "The report; CSV (`group_id,group_name,pings,\
        pings_with_bids,bid_rate,posts,sales,revenue,payout,margin,returns,returned_revenue,\
        return_rate,net_revenue,net_payout,net_margin`, then a `declined_<reason>` column per \
        reason) with `Accept: text/csv`",
        content((Summary = "application/json"), (String = "text/csv")))))]
async fn summary(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<SummaryQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let group_by = parse_group_by(query.group_by.as_deref())?;
    let tz = state
        .config
        .snapshot()
        .tenant(tenant)
        .map_or(Tz::UTC, |t| t.timezone);
    // The range is bounded, so a report costs at most that range's rows.
    let max_days = state.settings.report_max_days;
    let longest = chrono::Duration::days(i64::from(max_days));
    let from_bound = parse_bound("from", query.from.as_deref(), tz, false)?;
    let to_bound = parse_bound("to", query.to.as_deref(), tz, true)?;
    let to = to_bound.map_or_else(|| state.clock.now(), |b| b.at);
    let from = from_bound.map_or(to - longest, |b| b.at);
    if to <= from {
        return Err(query_error("to", "must be after from"));
    }
    // A range of dates is counted in the tenant's calendar days (a month across a change of
    // DST is its days, not its days ± 1 h).
    let dated = from_bound.is_some_and(|b| b.date) || to_bound.is_some_and(|b| b.date);
    let length = if dated {
        to.with_timezone(&tz).naive_local() - from.with_timezone(&tz).naive_local()
    } else {
        to - from
    };
    if length > longest {
        return Err(query_error(
            "from",
            &format!("must be at most {max_days} days before to (setting report_max_days)"),
        ));
    }
    // Waits for the tenant's running report, then for a process slot, for a third of the
    // request's time at most.
    let within = state.settings.request_timeout() / 3;
    let Some(_slot) = state.report_slots.take(tenant, within).await else {
        return Err(Problem::new(ErrorCode::RateLimited)
            .detail("too many summary reports are running: retry when they are done")
            .retry_after(1));
    };

    let (traffic, declines, sales) = reports::summary(
        &state.db,
        tenant,
        group_by,
        (from, to),
        state.clock.now(),
        tz,
    )
    .await
    .map_err(too_costly)?;

    let mut rows: BTreeMap<Uuid, SummaryRow> = BTreeMap::new();
    for (group, pings, pings_with_bids, posts) in traffic {
        let row = rows.entry(group).or_insert_with(|| SummaryRow::new(group));
        row.pings = pings;
        row.pings_with_bids = pings_with_bids;
        row.posts = posts;
        row.bid_rate = rate(pings_with_bids, pings);
    }
    for (group, reason, count) in declines {
        let row = rows.entry(group).or_insert_with(|| SummaryRow::new(group));
        row.declines.insert(reason, count);
    }
    for (group, count, revenue, payout, returns, returned, reversed) in sales {
        let row = rows.entry(group).or_insert_with(|| SummaryRow::new(group));
        row.sales = count;
        row.revenue = Money::from_cents(revenue);
        row.payout = Money::from_cents(payout);
        row.margin = Money::from_cents(revenue - payout);
        row.returns = returns;
        row.returned_revenue = Money::from_cents(returned);
        row.return_rate = rate(returns, count);
        row.net_revenue = Money::from_cents(revenue - returned);
        row.net_payout = Money::from_cents(payout - reversed);
        row.net_margin = Money::from_cents((revenue - returned) - (payout - reversed));
    }
    // The groups' names: one more statement, by primary key, for the ids found.
    let ids: Vec<Uuid> = rows.keys().copied().collect();
    if !ids.is_empty() {
        for named in reports::group_names(&state.db, tenant, group_by, &ids)
            .await
            .map_err(too_costly)?
        {
            if let Some(row) = rows.get_mut(&named.id) {
                row.group_name = Some(named.name);
            }
        }
    }
    let summary = Summary {
        rows: rows.into_values().collect(),
    };
    if wants_csv(&headers) {
        let filename = format!(
            "summary-{}-{}-{}.csv",
            group_by.as_str(),
            from.with_timezone(&tz).format("%Y-%m-%d"),
            (to - chrono::Duration::microseconds(1))
                .with_timezone(&tz)
                .format("%Y-%m-%d")
        );
        return Ok(csv_response(&summary.csv_rows(), &filename));
    }
    Ok(Json(summary).into_response())
}

impl Summary {
    /// The report as CSV rows: a header, then one row per group, with a `declined_<reason>`
    /// column for each reason of any group.
    fn csv_rows(&self) -> Vec<Vec<String>> {
        let reasons: std::collections::BTreeSet<&String> =
            self.rows.iter().flat_map(|r| r.declines.keys()).collect();
        let mut header: Vec<String> = [
            "group_id",
            "group_name",
            "pings",
            "pings_with_bids",
            "bid_rate",
            "posts",
            "sales",
            "revenue",
            "payout",
            "margin",
            "returns",
            "returned_revenue",
            "return_rate",
            "net_revenue",
            "net_payout",
            "net_margin",
        ]
        .map(str::to_owned)
        .to_vec();
        header.extend(reasons.iter().map(|r| format!("declined_{r}")));
        let mut out = vec![header];
        for r in &self.rows {
            let mut row = vec![
                r.group_id.to_string(),
                r.group_name.as_deref().map(no_formula).unwrap_or_default(),
                r.pings.to_string(),
                r.pings_with_bids.to_string(),
                r.bid_rate.to_string(),
                r.posts.to_string(),
                r.sales.to_string(),
                r.revenue.to_string(),
                r.payout.to_string(),
                r.margin.to_string(),
                r.returns.to_string(),
                r.returned_revenue.to_string(),
                r.return_rate.to_string(),
                r.net_revenue.to_string(),
                r.net_payout.to_string(),
                r.net_margin.to_string(),
            ];
            row.extend(
                reasons
                    .iter()
                    .map(|reason| r.declines.get(*reason).copied().unwrap_or(0).to_string()),
            );
            out.push(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rates_have_four_decimals_and_are_zero_over_nothing() {
        assert_eq!(rate(1, 3), 0.3333);
        assert_eq!(rate(2, 3), 0.6667);
        assert_eq!(rate(5, 5), 1.0);
        assert_eq!(rate(0, 0), 0.0);
        assert_eq!(rate(3, 0), 0.0);
    }
}
