//! The overview's aggregates (`api::admin::overview`): the tenant's traffic and sales per hour
//! or day of its timezone, the pings' latency, the decline reasons. Each is a range scan of an
//! index leading with (tenant_id, created_at) (the declines: a range of the primary key, ping
//! ids being UUIDv7); test traffic is left out. The hours and days are bounds worked out by
//! the caller in the tenant's timezone; a row finds its bucket by `width_bucket`. A closed
//! hour's or day's figures and declines are kept in memory (`super::kept`): the page reads a week,
//! but scans only the last hours.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::kept::Kept;

/// One bucket's figures: pings (answered 200), pings with bids, posts (pings posted and
/// settled), sales (sold, or returned since), what buyers paid and partners earned (cents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub pings: i64,
    pub pings_with_bids: i64,
    pub posts: i64,
    pub sales: i64,
    pub revenue_cents: i64,
    pub payout_cents: i64,
}

impl Figures {
    pub fn add(&mut self, other: &Figures) {
        self.pings += other.pings;
        self.pings_with_bids += other.pings_with_bids;
        self.posts += other.posts;
        self.sales += other.sales;
        self.revenue_cents += other.revenue_cents;
        self.payout_cents += other.payout_cents;
    }
}

/// Pings in a range and the percentiles of their latency, in microseconds.
pub struct Latency {
    pub pings: i64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

struct TrafficRow {
    bucket: i32,
    pings: i64,
    pings_with_bids: i64,
    posts: i64,
}

struct SalesRow {
    bucket: i32,
    sales: i64,
    revenue_cents: i64,
    payout_cents: i64,
}

/// The figures of each bucket `[bounds[i], bounds[i + 1])` (`bounds` ascending, at least two),
/// up to `until` at most: one range scan of posting_log and one of lead_sales, at once; each
/// row is put in its bucket by a binary search (`width_bucket`), no timezone arithmetic per
/// row (the bounds are the tenant's local hours or days, worked out by the caller).
pub async fn buckets(
    db: &PgPool,
    tenant: Uuid,
    bounds: &[DateTime<Utc>],
    until: DateTime<Utc>,
) -> Result<Vec<Figures>, sqlx::Error> {
    let n = bounds.len().saturating_sub(1);
    if n == 0 {
        return Ok(Vec::new());
    }
    let from = bounds[0];
    let to = bounds[n].min(until);
    let traffic = sqlx::query_as!(
        TrafficRow,
        r#"SELECT width_bucket(created_at, $4::timestamptz[]) AS "bucket!",
                  count(*) FILTER (WHERE kind = 'ping' AND http_status = 200) AS "pings!",
                  count(*) FILTER (WHERE kind = 'ping' AND result = 'bids') AS "pings_with_bids!",
                  count(DISTINCT ping_id) FILTER (WHERE kind IN ('post', 'direct')
                      AND result IN ('sold', 'partially_sold', 'unsold')) AS "posts!"
           FROM posting_log
           WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND NOT test
           GROUP BY 1"#,
        tenant,
        from,
        to,
        bounds,
    )
    .fetch_all(db);
    let sales = sqlx::query_as!(
        SalesRow,
        r#"SELECT width_bucket(created_at, $4::timestamptz[]) AS "bucket!", count(*) AS "sales!",
                  sum(price_cents)::bigint AS "revenue_cents!",
                  sum(payout_cents)::bigint AS "payout_cents!"
           FROM lead_sales
           WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND NOT test
             AND status IN ('sold', 'returned')
           GROUP BY 1"#,
        tenant,
        from,
        to,
        bounds,
    )
    .fetch_all(db);
    let (traffic, sales) = tokio::try_join!(traffic, sales)?;
    let mut out = vec![Figures::default(); n];
    // width_bucket numbers the buckets from 1.
    let slot = |bucket: i32| usize::try_from(bucket - 1).ok().filter(|i| *i < n);
    for t in traffic {
        if let Some(i) = slot(t.bucket) {
            out[i].pings = t.pings;
            out[i].pings_with_bids = t.pings_with_bids;
            out[i].posts = t.posts;
        }
    }
    for s in sales {
        if let Some(i) = slot(s.bucket) {
            out[i].sales = s.sales;
            out[i].revenue_cents = s.revenue_cents;
            out[i].payout_cents = s.payout_cents;
        }
    }
    Ok(out)
}

/// The pings of `[from, to)` and their latency's median and 99th percentile.
pub async fn latency(
    db: &PgPool,
    tenant: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Latency, sqlx::Error> {
    sqlx::query_as!(
        Latency,
        r#"SELECT count(*) AS "pings!",
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) AS p50_us,
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) AS p99_us
           FROM posting_log
           WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND kind = 'ping'
             AND NOT test"#,
        tenant,
        from,
        to,
    )
    .fetch_one(db)
    .await
}

/// The smallest UUIDv7 of the millisecond `at`: ping ids are UUIDv7, so the pings of a time
/// range are a range of ids (with a margin for the moment between the id and `created_at`).
fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = u128::try_from(at.timestamp_millis()).unwrap_or(0);
    Uuid::from_u128(ms << 80)
}

/// Each bucket's decline reasons with their counts, for the pings of `[bounds[i],
/// bounds[i + 1])` (not test pings), up to `until`: the range's declines rows by primary key (a
/// range of ping ids), joined to the range's pings.
async fn decline_buckets(
    db: &PgPool,
    tenant: Uuid,
    bounds: &[DateTime<Utc>],
    until: DateTime<Utc>,
) -> Result<Vec<Declines>, sqlx::Error> {
    let n = bounds.len().saturating_sub(1);
    if n == 0 {
        return Ok(Vec::new());
    }
    let from = bounds[0];
    let to = bounds[n].min(until);
    let margin = chrono::Duration::minutes(10);
    let rows = sqlx::query!(
        r#"SELECT width_bucket(x.created_at, $6::timestamptz[]) AS "bucket!",
                  c.reason::text AS "reason!", count(*) AS "count!"
           FROM distribution_declines x
           JOIN posting_log p ON p.tenant_id = x.tenant_id AND p.id = x.ping_id,
           unnest(x.reasons) AS c (reason)
           WHERE x.tenant_id = $1 AND x.ping_id >= $4 AND x.ping_id < $5
             AND x.created_at >= $2 AND x.created_at < $3
             AND p.tenant_id = $1 AND p.created_at >= $2 AND p.created_at < $3
             AND p.kind = 'ping' AND NOT p.test
           GROUP BY 1, 2"#,
        tenant,
        from,
        to,
        v7_floor(from - margin),
        v7_floor(to + margin),
        bounds,
    )
    .fetch_all(db)
    .await?;
    let mut out = vec![Declines::new(); n];
    for row in rows {
        if let Some(bucket) = usize::try_from(row.bucket - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
        {
            bucket.insert(row.reason, row.count);
        }
    }
    Ok(out)
}

/// A bucket's decline reasons and their counts.
pub type Declines = std::collections::BTreeMap<String, i64>;

/// The hours' and days' figures: a pending sale settles within the hour after its post.
static KEPT_FIGURES: Kept<Uuid, Figures> =
    Kept::new(chrono::Duration::hours(1), chrono::Duration::days(8));
/// The minutes' declines, written with their ping (once its record commits, a moment after
/// its `created_at`; for a ping of many contracts, some 20 ms after its answer) and never
/// changed: kept 10 s after the minute, so that a view reads only
/// the last minute's. Only today's are asked for.
static KEPT_DECLINES: Kept<Uuid, Declines> =
    Kept::new(chrono::Duration::seconds(10), chrono::Duration::days(2));

/// The figures of each bucket `[bounds[i], bounds[i + 1])` (hours or days of the tenant's
/// timezone): the closed ones' kept in memory, the others read ([`buckets`]).
pub async fn kept_buckets(
    db: &PgPool,
    tenant: Uuid,
    bounds: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, sqlx::Error> {
    KEPT_FIGURES
        .get(tenant, bounds, now, |bounds| async move {
            buckets(db, tenant, &bounds, now).await
        })
        .await
}

/// The decline reasons of each bucket (minutes: see `KEPT_DECLINES`), as [`kept_buckets`].
pub async fn kept_declines(
    db: &PgPool,
    tenant: Uuid,
    bounds: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<Vec<Declines>, sqlx::Error> {
    KEPT_DECLINES
        .get(tenant, bounds, now, |bounds| async move {
            decline_buckets(db, tenant, &bounds, now).await
        })
        .await
}
