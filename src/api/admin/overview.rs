//! The overview (`GET /v1/admin/reports/overview`): the tenant's pings, bids, posts, sales and
//! money today and over the last 7 days in its timezone, per hour of today and per day, the
//! pings' latency over the last hour and today's top decline reasons. Aggregated in SQL
//! (`store::admin::overview`, four statements at once); test traffic is left out. The
//! console's Today page shows it.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::Problem;
use crate::api::extract::AdminTenant;
use crate::app::AppState;
use crate::auction::{CapPeriod, period_start};
use crate::money::Money;
use crate::store::admin::overview::{self, Figures};

/// How many decline reasons the overview lists.
const TOP_DECLINES: usize = 10;
/// The days of `last_7_days`, today included.
const DAYS: i64 = 7;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(overview))
}

/// A period's figures.
#[derive(Serialize, ToSchema)]
pub struct OverviewTotals {
    /// The period's start (inclusive) and end (exclusive: now).
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Pings answered (HTTP 200).
    pings: i64,
    /// Pings answered with at least one bid.
    pings_with_bids: i64,
    /// `pings_with_bids / pings`, 4 decimals (0 without pings).
    bid_rate: f64,
    /// Pings posted (and settled: sold, partially sold or unsold).
    posts: i64,
    /// Leads sold (returned since or not: gross).
    sales: i64,
    /// What buyers paid for them.
    revenue: Money,
    /// What partners earned on them.
    payout: Money,
    /// `revenue - payout`.
    margin: Money,
}

/// One hour's (or day's) figures, from `start` to the next one's start.
#[derive(Serialize, ToSchema)]
pub struct OverviewBucket {
    start: DateTime<Utc>,
    /// `start` in the tenant's timezone, RFC 3339 with its offset.
    local: String,
    pings: i64,
    pings_with_bids: i64,
    posts: i64,
    sales: i64,
    revenue: Money,
    payout: Money,
}

/// The pings of the last hour and their latency (from the request's arrival to the answer).
#[derive(Serialize, ToSchema)]
pub struct OverviewLatency {
    from: DateTime<Utc>,
    /// Pings received, whatever their answer.
    pings: i64,
    /// Median latency in milliseconds (none without pings).
    p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds (none without pings).
    p99_ms: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct OverviewDecline {
    /// The reason (`filtered`, `outbid`, `cap_reached`, …).
    reason: String,
    /// Contract evaluations that ended so.
    count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Overview {
    /// The tenant's timezone: days and hours are its.
    timezone: String,
    /// The time of the figures.
    now: DateTime<Utc>,
    /// Since today's midnight.
    today: OverviewTotals,
    /// Since the midnight 6 days before today's (7 days, today included).
    last_7_days: OverviewTotals,
    /// Today's hours, midnight to midnight (23 to 25 of them), those after now empty.
    hours: Vec<OverviewBucket>,
    /// The 7 days, oldest first, today last.
    days: Vec<OverviewBucket>,
    /// The last 60 minutes.
    latency_last_hour: OverviewLatency,
    /// Today's most frequent decline reasons (at most 10), most frequent first.
    top_declines: Vec<OverviewDecline>,
}

/// The tenant's figures today and over the last 7 days, in its timezone: pings, bid rate,
/// posts, sales, revenue, payout and margin; per hour of today and per day; the pings' latency
/// over the last hour; today's top decline reasons.
#[utoipa::path(get, path = "/v1/admin/reports/overview", tag = "reports",
    responses((status = 200, body = Overview)))]
async fn overview(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
) -> Result<Json<Overview>, Problem> {
    // From the snapshot; a tenant created a moment ago (not loaded yet) from its row.
    let loaded = state.config.snapshot().tenant(tenant).map(|t| t.timezone);
    let tz = match loaded {
        Some(tz) => tz,
        None => crate::store::tenants::timezone(&state.db, tenant)
            .await?
            .and_then(|name| name.parse().ok())
            .unwrap_or(Tz::UTC),
    };
    let now = state.clock.now();
    let today = period_start(CapPeriod::Day, now, tz);
    let today_date = now.with_timezone(&tz).date_naive();
    let day_starts: Vec<(NaiveDate, DateTime<Utc>)> = (0..DAYS)
        .rev()
        .map(|back| {
            let date = today_date - Duration::days(back);
            (date, day_start(date, tz))
        })
        .collect();
    let week = day_starts.first().map_or(today, |(_, start)| *start);
    let tomorrow = day_start(today_date + Duration::days(1), tz);
    let hour_ago = now - Duration::hours(1);
    // Today's hours (an hour's start is an instant: a DST day has 23 or 25).
    let mut hour_bounds = Vec::with_capacity(26);
    let mut start = today;
    while start < tomorrow {
        hour_bounds.push(start);
        start += Duration::hours(1);
    }
    hour_bounds.push(tomorrow);
    // The 6 days before today (today's figures are its hours').
    let mut day_bounds: Vec<DateTime<Utc>> = day_starts.iter().map(|(_, start)| *start).collect();
    day_bounds.pop();
    day_bounds.push(today);

    // Today's minutes until the current one's end, for its declines.
    let mut minute_bounds = Vec::with_capacity(1502);
    let mut start = today;
    while start <= now {
        minute_bounds.push(start);
        start += Duration::minutes(1);
    }
    minute_bounds.push(start);

    let db = &state.db;
    let (hours, past_days, latency, declines) = tokio::try_join!(
        overview::kept_buckets(db, tenant, &hour_bounds, now),
        overview::kept_buckets(db, tenant, &day_bounds, now),
        overview::latency(db, tenant, hour_ago, now),
        overview::kept_declines(db, tenant, &minute_bounds, now),
    )?;
    // Today's top decline reasons: its minutes' added up.
    let mut today_declines = overview::Declines::new();
    for hour in declines {
        for (reason, count) in hour {
            *today_declines.entry(reason).or_default() += count;
        }
    }
    let mut declines: Vec<(String, i64)> = today_declines.into_iter().collect();
    declines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    declines.truncate(TOP_DECLINES);

    let bucket = |start: DateTime<Utc>, f: &Figures| OverviewBucket {
        start,
        local: local(start, tz),
        pings: f.pings,
        pings_with_bids: f.pings_with_bids,
        posts: f.posts,
        sales: f.sales,
        revenue: Money::from_cents(f.revenue_cents),
        payout: Money::from_cents(f.payout_cents),
    };
    let mut today_total = Figures::default();
    for hour in &hours {
        today_total.add(hour);
    }
    let mut week_total = today_total;
    for day in &past_days {
        week_total.add(day);
    }
    let mut days: Vec<OverviewBucket> = past_days
        .iter()
        .zip(&day_bounds)
        .map(|(f, start)| bucket(*start, f))
        .collect();
    days.push(bucket(today, &today_total));
    let ms = |us: Option<f64>| us.map(|us| (us / 10.0).round() / 100.0);
    Ok(Json(Overview {
        timezone: tz.name().to_owned(),
        now,
        today: totals(&today_total, today, now),
        last_7_days: totals(&week_total, week, now),
        hours: hours
            .iter()
            .zip(&hour_bounds)
            .map(|(f, start)| bucket(*start, f))
            .collect(),
        days,
        latency_last_hour: OverviewLatency {
            from: hour_ago,
            pings: latency.pings,
            p50_ms: ms(latency.p50_us),
            p99_ms: ms(latency.p99_us),
        },
        top_declines: declines
            .into_iter()
            .map(|(reason, count)| OverviewDecline { reason, count })
            .collect(),
    }))
}

fn totals(total: &Figures, from: DateTime<Utc>, to: DateTime<Utc>) -> OverviewTotals {
    OverviewTotals {
        from,
        to,
        pings: total.pings,
        pings_with_bids: total.pings_with_bids,
        bid_rate: rate(total.pings_with_bids, total.pings),
        posts: total.posts,
        sales: total.sales,
        revenue: Money::from_cents(total.revenue_cents),
        payout: Money::from_cents(total.payout_cents),
        margin: Money::from_cents(total.revenue_cents - total.payout_cents),
    }
}

/// `part / whole` to 4 decimals, 0 when `whole` is 0 (a ratio of counts: a float is right).
fn rate(part: i64, whole: i64) -> f64 {
    if whole > 0 {
        (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// The start of `date` in `tz` (a midnight skipped by DST starts at the first instant after).
fn day_start(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    // Noon exists on every day in every timezone: the day's start is that of the day holding it.
    let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default();
    let at = tz
        .from_local_datetime(&date.and_time(noon))
        .earliest()
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    period_start(CapPeriod::Day, at, tz)
}

fn local(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_its_local_midnight() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let date = NaiveDate::from_ymd_opt(2025, 3, 9).unwrap();
        assert_eq!(
            day_start(date, tz).to_rfc3339(),
            "2025-03-09T05:00:00+00:00"
        );
        // The day the clocks went forward has 23 hours.
        let next = day_start(date + Duration::days(1), tz);
        assert_eq!(next - day_start(date, tz), Duration::hours(23));
    }

    #[test]
    fn totals_add_exactly() {
        let mut total = Figures::default();
        let hour = Figures {
            pings: 3,
            sales: 1,
            revenue_cents: 1_001,
            payout_cents: 700,
            ..Figures::default()
        };
        total.add(&hour);
        total.add(&hour);
        let t = totals(&total, Utc::now(), Utc::now());
        assert_eq!(t.revenue.cents(), 2_002);
        assert_eq!(t.margin.cents(), 602);
        assert_eq!(t.pings, 6);
        assert_eq!(t.bid_rate, 0.0);
    }
}
