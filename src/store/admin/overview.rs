//! The overview's aggregates (`api::admin::overview`): the tenant's traffic and sales per hour
//! of its timezone, the pings' latency, the decline reasons. Each is one range scan of an
//! index leading with (tenant_id, created_at) (the declines: the range's pings' rows, found by
//! primary key); test traffic is left out. Hours are truncated in the tenant's timezone by
//! PostgreSQL (`date_trunc('hour', created_at, tz)`): an instant, so the hour repeated when
//! the clocks go back is two hours.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// One hour's pings (answered 200), pings with bids and posts (pings posted and settled).
pub struct HourTraffic {
    pub hour: DateTime<Utc>,
    pub pings: i64,
    pub pings_with_bids: i64,
    pub posts: i64,
}

/// One hour's sales (sold, or returned since), what buyers paid and partners earned, in cents.
pub struct HourSales {
    pub hour: DateTime<Utc>,
    pub sales: i64,
    pub revenue_cents: i64,
    pub payout_cents: i64,
}

/// Pings in a range and the percentiles of their latency, in microseconds.
pub struct Latency {
    pub pings: i64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

pub struct DeclineCount {
    pub reason: String,
    pub count: i64,
}

/// Everything the overview reads, at once on four connections: the traffic and the sales per
/// hour over `hours` (`[from, to)`, hours in `tz`), the latency of the pings in `latency`,
/// and the `top` decline reasons of the pings in `declines`.
pub async fn overview(
    db: &PgPool,
    tenant: Uuid,
    tz: &str,
    hours: (DateTime<Utc>, DateTime<Utc>),
    latency: (DateTime<Utc>, DateTime<Utc>),
    declines: (DateTime<Utc>, DateTime<Utc>),
    top: i64,
) -> Result<(Vec<HourTraffic>, Vec<HourSales>, Latency, Vec<DeclineCount>), sqlx::Error> {
    let traffic = sqlx::query_as!(
        HourTraffic,
        r#"SELECT date_trunc('hour', created_at, $4) AS "hour!",
                  count(*) FILTER (WHERE kind = 'ping' AND http_status = 200) AS "pings!",
                  count(*) FILTER (WHERE kind = 'ping' AND result = 'bids') AS "pings_with_bids!",
                  count(DISTINCT ping_id) FILTER (WHERE kind IN ('post', 'direct')
                      AND result IN ('sold', 'partially_sold', 'unsold')) AS "posts!"
           FROM posting_log
           WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND NOT test
           GROUP BY 1"#,
        tenant,
        hours.0,
        hours.1,
        tz,
    )
    .fetch_all(db);
    let sales = sqlx::query_as!(
        HourSales,
        r#"SELECT date_trunc('hour', created_at, $4) AS "hour!", count(*) AS "sales!",
                  sum(price_cents)::bigint AS "revenue_cents!",
                  sum(payout_cents)::bigint AS "payout_cents!"
           FROM lead_sales
           WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND NOT test
             AND status IN ('sold', 'returned')
           GROUP BY 1"#,
        tenant,
        hours.0,
        hours.1,
        tz,
    )
    .fetch_all(db);
    let latency = sqlx::query_as!(
        Latency,
        r#"SELECT count(*) AS "pings!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) AS p50_us,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) AS p99_us
           FROM posting_log
           WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND kind = 'ping'
             AND NOT test"#,
        tenant,
        latency.0,
        latency.1,
    )
    .fetch_one(db);
    let declines = sqlx::query_as!(
        DeclineCount,
        r#"SELECT c.reason::text AS "reason!", count(*) AS "count!"
           FROM posting_log p
           JOIN distribution_declines x ON x.tenant_id = p.tenant_id AND x.ping_id = p.id,
           unnest(x.reasons) AS c (reason)
           WHERE p.tenant_id = $1 AND p.kind = 'ping' AND p.created_at >= $2
             AND p.created_at < $3 AND NOT p.test
           GROUP BY 1
           ORDER BY 2 DESC, 1
           LIMIT $4"#,
        tenant,
        declines.0,
        declines.1,
        top,
    )
    .fetch_all(db);
    tokio::try_join!(traffic, sales, latency, declines)
}
