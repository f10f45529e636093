//! The summary report: per offer, partner, buyer or contract, how pings turned into bids,
//! posts, sales and money over a time range. Each figure is aggregated in SQL from a range
//! scan of an index leading with (tenant_id, created_at) (per buyer or contract, with the
//! range's pings' contract outcomes, found by primary key); test traffic is left out.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{parse_time, query_error};
use crate::api::extract::AdminTenant;
use crate::api::{ErrorCode, Problem};
use crate::app::AppState;
use crate::money::Money;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(summary))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Start of the range (RFC 3339, inclusive), at most `report_max_days` (93 by default)
    /// before `to`; default: that many days before `to`.
    #[param(value_type = Option<DateTime<Utc>>)]
    from: Option<String>,
    /// End of the range (RFC 3339, exclusive); default: now.
    #[param(value_type = Option<DateTime<Utc>>)]
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
    pings: i64,
    pings_with_bids: i64,
    /// `pings_with_bids / pings` (0 without pings).
    bid_rate: f64,
    posts: i64,
    sales: i64,
    /// What buyers paid for sold leads.
    revenue: Money,
    /// What partners earned on them.
    payout: Money,
    /// `revenue - payout`.
    margin: Money,
    /// How many contract evaluations ended for each reason (`filtered`, `outbid`, …).
    declines: BTreeMap<String, i64>,
}

impl SummaryRow {
    fn new(group_id: Uuid) -> Self {
        SummaryRow {
            group_id,
            pings: 0,
            pings_with_bids: 0,
            bid_rate: 0.0,
            posts: 0,
            sales: 0,
            revenue: Money::ZERO,
            payout: Money::ZERO,
            margin: Money::ZERO,
            declines: BTreeMap::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Summary {
    rows: Vec<SummaryRow>,
}

/// The report's pings, as `p`: the tenant's ($1), not test pings, from $2 until $3.
const PINGS_IN_RANGE: &str = concat!(
    "p.tenant_id = $1 AND p.kind = 'ping' AND p.created_at >= $2 AND p.created_at < $3",
    " AND NOT p.test"
);

/// What the report groups by; each names the columns it reads, so no SQL comes from the request.
#[derive(Clone, Copy)]
enum GroupBy {
    Offer,
    Partner,
    Buyer,
    Contract,
}

impl GroupBy {
    fn parse(text: Option<&str>) -> Result<GroupBy, Problem> {
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

    /// The column of `lead_sales` and of the distribution queries (`p` is the ping's
    /// posting_log row: the time range is the ping's, found by posting_log_time; `c` is one
    /// contract's outcome, from the ping's rows in distribution_winners and
    /// distribution_declines, found by their primary keys).
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            GroupBy::Offer => ("offer_id", "p.offer_id"),
            GroupBy::Partner => ("partner_id", "p.partner_id"),
            GroupBy::Buyer => ("buyer_id", "c.buyer_id"),
            GroupBy::Contract => ("contract_id", "c.contract_id"),
        }
    }

    /// Pings, pings with bids and posts per group.
    fn traffic_sql(self) -> String {
        match self {
            GroupBy::Offer | GroupBy::Partner => format!(
                "SELECT {column} AS group_id,
                        count(*) FILTER (WHERE kind = 'ping' AND http_status = 200) AS pings,
                        count(*) FILTER (WHERE kind = 'ping' AND result = 'bids') AS pings_with_bids,
                        count(DISTINCT ping_id) FILTER (WHERE kind IN ('post', 'direct')
                            AND result IN ('sold', 'partially_sold', 'unsold')) AS posts
                 FROM posting_log
                 WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND NOT test
                 GROUP BY 1",
                column = self.columns().0
            ),
            // A contract that saw a ping either won (and bid) or has an element in the ping's
            // declines; only a winner can have been posted.
            GroupBy::Buyer | GroupBy::Contract => format!(
                "SELECT group_id, sum(pings)::bigint, sum(pings_with_bids)::bigint, sum(posts)::bigint
                 FROM (
                     SELECT {column} AS group_id, count(*) AS pings,
                            count(*) FILTER (WHERE c.exclusive_bid_cents IS NOT NULL
                                OR c.shared_bid_cents IS NOT NULL) AS pings_with_bids,
                            count(*) FILTER (WHERE c.disposition IS NOT NULL
                                AND c.disposition <> 'not_accepted') AS posts
                     FROM posting_log p
                     JOIN distribution_winners c ON c.tenant_id = p.tenant_id AND c.ping_id = p.id
                     WHERE {pings_in_range}
                     GROUP BY 1
                     UNION ALL
                     SELECT {column}, count(*), count(*) FILTER (WHERE c.exclusive_bid_cents IS NOT NULL
                                OR c.shared_bid_cents IS NOT NULL), 0
                     FROM posting_log p
                     JOIN distribution_declines x ON x.tenant_id = p.tenant_id AND x.ping_id = p.id,
                     unnest(x.contract_ids, x.buyer_ids, x.exclusive_bids_cents, x.shared_bids_cents)
                         AS c (contract_id, buyer_id, exclusive_bid_cents, shared_bid_cents)
                     WHERE {pings_in_range}
                     GROUP BY 1) AS d
                 GROUP BY 1",
                column = self.columns().1,
                pings_in_range = PINGS_IN_RANGE,
            ),
        }
    }

    /// Contract evaluations per group and reason (only contracts that did not win have one).
    fn declines_sql(self) -> String {
        format!(
            "SELECT {column} AS group_id, c.reason::text, count(*)
             FROM posting_log p
             JOIN distribution_declines x ON x.tenant_id = p.tenant_id AND x.ping_id = p.id,
             unnest(x.contract_ids, x.buyer_ids, x.reasons) AS c (contract_id, buyer_id, reason)
             WHERE {pings_in_range}
             GROUP BY 1, 2",
            column = self.columns().1,
            pings_in_range = PINGS_IN_RANGE,
        )
    }

    /// Sold leads, revenue and payout per group.
    fn sales_sql(self) -> String {
        format!(
            "SELECT {column} AS group_id, count(*), sum(price_cents)::bigint, sum(payout_cents)::bigint
             FROM lead_sales
             WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND NOT test
               AND status = 'sold'
             GROUP BY 1",
            column = self.columns().0
        )
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

/// Per group: pings, pings with bids, bid rate, posts, sales, revenue, payout, margin and the
/// count of each decline reason.
#[utoipa::path(get, path = "/v1/admin/reports/summary", tag = "reports", params(SummaryQuery),
    responses((status = 200, body = Summary)))]
async fn summary(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Query(query): Query<SummaryQuery>,
) -> Result<Json<Summary>, Problem> {
    let group_by = GroupBy::parse(query.group_by.as_deref())?;
    // The range is bounded, so a report costs at most that range's rows.
    let max_days = state.settings.report_max_days;
    let longest = chrono::Duration::days(i64::from(max_days));
    let to = parse_time("to", query.to.as_deref())?.unwrap_or_else(|| state.clock.now());
    let from = parse_time("from", query.from.as_deref())?.unwrap_or(to - longest);
    if to - from > longest {
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

    // The three aggregates read different tables: run them at once, on three connections.
    let traffic_sql = group_by.traffic_sql();
    let declines_sql = group_by.declines_sql();
    let sales_sql = group_by.sales_sql();
    let traffic = sqlx::query_as::<_, (Uuid, i64, i64, i64)>(AssertSqlSafe(traffic_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(&state.db);
    let declines = sqlx::query_as::<_, (Uuid, String, i64)>(AssertSqlSafe(declines_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(&state.db);
    let sales = sqlx::query_as::<_, (Uuid, i64, i64, i64)>(AssertSqlSafe(sales_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(&state.db);
    let (traffic, declines, sales) =
        tokio::try_join!(traffic, declines, sales).map_err(too_costly)?;

    let mut rows: BTreeMap<Uuid, SummaryRow> = BTreeMap::new();
    for (group, pings, pings_with_bids, posts) in traffic {
        let row = rows.entry(group).or_insert_with(|| SummaryRow::new(group));
        row.pings = pings;
        row.pings_with_bids = pings_with_bids;
        row.posts = posts;
        // A ratio of counts, not money: a float is right here.
        row.bid_rate = if pings > 0 {
            (pings_with_bids as f64 / pings as f64 * 10_000.0).round() / 10_000.0
        } else {
            0.0
        };
    }
    for (group, reason, count) in declines {
        let row = rows.entry(group).or_insert_with(|| SummaryRow::new(group));
        row.declines.insert(reason, count);
    }
    for (group, count, revenue_cents, payout_cents) in sales {
        let row = rows.entry(group).or_insert_with(|| SummaryRow::new(group));
        row.sales = count;
        row.revenue = Money::from_cents(revenue_cents);
        row.payout = Money::from_cents(payout_cents);
        row.margin = Money::from_cents(revenue_cents - payout_cents);
    }
    Ok(Json(Summary {
        rows: rows.into_values().collect(),
    }))
}
