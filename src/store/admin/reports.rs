//! The summary report's aggregates (`api::admin::reports`). Each figure is aggregated in SQL
//! from a range scan of an index leading with (tenant_id, created_at) (per buyer or contract,
//! with the range's pings' contract outcomes, found by primary key); test traffic is left out.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

use super::kept::Kept;
use crate::auction::{CapPeriod, period_start};

/// The report's pings, as `p`: the tenant's ($1), not test pings, from $2 until $3.
const PINGS_IN_RANGE: &str = concat!(
    "p.tenant_id = $1 AND p.kind = 'ping' AND p.created_at >= $2 AND p.created_at < $3",
    " AND NOT p.test"
);

/// What the report groups by; each names the columns it reads, so no SQL comes from the request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Offer,
    Partner,
    Buyer,
    Contract,
}

impl GroupBy {
    /// Its name in the query (`group_by`).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Offer => "offer",
            GroupBy::Partner => "partner",
            GroupBy::Buyer => "buyer",
            GroupBy::Contract => "contract",
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
            // declines; only a winner can have been posted. The declines' share is counted
            // with the declines (`declines_sql`), whose closed buckets are kept.
            GroupBy::Buyer | GroupBy::Contract => format!(
                "SELECT {column} AS group_id, count(*),
                        count(*) FILTER (WHERE c.exclusive_bid_cents IS NOT NULL
                            OR c.shared_bid_cents IS NOT NULL),
                        count(*) FILTER (WHERE c.disposition IS NOT NULL
                            AND c.disposition <> 'not_accepted')
                 FROM posting_log p
                 JOIN distribution_winners c ON c.tenant_id = p.tenant_id AND c.ping_id = p.id
                 WHERE {pings_in_range}
                 GROUP BY 1",
                column = self.columns().1,
                pings_in_range = PINGS_IN_RANGE,
            ),
        }
    }

    /// Contract evaluations per bucket of time (`width_bucket` of the ping's time in the bounds
    /// $4), group and reason (only contracts that did not win have one), and of them those
    /// that bid (per buyer or contract only: the others' traffic is counted from the pings).
    ///
    /// Only the arrays the grouping needs are unnested, and the reasons are counted as the enum
    /// they are (hashed), named as text once counted: the range's contract outcomes are the
    /// report's largest input.
    fn declines_sql(self) -> String {
        let (unnest, with_bids) = match self {
            GroupBy::Offer | GroupBy::Partner => ("unnest(x.reasons) AS c (reason)", "0::bigint"),
            GroupBy::Buyer | GroupBy::Contract => (
                "unnest(x.{ids}, x.reasons, x.exclusive_bids_cents, x.shared_bids_cents)
                     AS c ({id}, reason, exclusive_bid_cents, shared_bid_cents)",
                "count(*) FILTER (WHERE c.exclusive_bid_cents IS NOT NULL
                     OR c.shared_bid_cents IS NOT NULL)",
            ),
        };
        let (ids, id) = match self {
            GroupBy::Buyer => ("buyer_ids", "buyer_id"),
            _ => ("contract_ids", "contract_id"),
        };
        let unnest = unnest.replace("{ids}", ids).replace("{id}", id);
        format!(
            "SELECT bucket, group_id, reason::text, n, with_bids
             FROM (SELECT width_bucket(p.created_at, $4::timestamptz[]) AS bucket,
                          {column} AS group_id, c.reason, count(*) AS n, {with_bids} AS with_bids
                   FROM posting_log p
                   JOIN distribution_declines x ON x.tenant_id = p.tenant_id AND x.ping_id = p.id,
                   {unnest}
                   WHERE {pings_in_range}
                   GROUP BY 1, 2, 3) AS counted",
            column = self.columns().1,
            pings_in_range = PINGS_IN_RANGE,
        )
    }

    /// Sold leads (returned since, too), revenue and payout per group, and of them the
    /// returned ones: their approved returns (at most one a sale), prices and payouts
    /// reversed. One range scan of lead_sales; the approved returns joined by sale.
    fn sales_sql(self) -> String {
        format!(
            "SELECT s.{column} AS group_id, count(*), sum(s.price_cents)::bigint, sum(s.payout_cents)::bigint,
                    count(r.id), coalesce(sum(r.price_cents), 0)::bigint,
                    coalesce(sum(r.payout_reversed_cents), 0)::bigint
             FROM lead_sales s
             LEFT JOIN returns r ON r.tenant_id = s.tenant_id AND r.sale_id = s.id AND r.status = 'approved'
             WHERE s.tenant_id = $1 AND s.created_at >= $2 AND s.created_at < $3 AND NOT s.test
               AND s.status IN ('sold', 'returned')
             GROUP BY 1",
            column = self.columns().0
        )
    }
}

/// Per group: pings, pings with bids and posts.
pub type Traffic = (Uuid, i64, i64, i64);
/// Per group and reason: contract evaluations that ended so.
pub type Declines = (Uuid, String, i64);
/// Per group, in cents: sold leads (returned since, too), revenue and payout; approved
/// returns, their prices and the payouts they reversed.
pub type Sales = (Uuid, i64, i64, i64, i64, i64, i64);

/// One bucket's contract declines: per group and reason, the evaluations and, of them, those
/// that bid (counted per buyer or contract only).
type DeclineCounts = HashMap<(Uuid, String), (i64, i64)>;

/// A report's buckets of time: written with their ping (once its record commits, a moment
/// after its `created_at`; for a ping of many contracts, some 20 ms after its answer:
/// docs/durability.md) and never changed, the declines of a bucket are kept 10 s after its
/// end. The days for as long as a report reaches back to them this month or the last, today's
/// hours for two days, this hour's minutes for two hours.
type KeptDeclines = Kept<(Uuid, GroupBy), DeclineCounts>;
static KEPT_DAYS: KeptDeclines = Kept::new(Duration::seconds(10), Duration::days(62));
static KEPT_HOURS: KeptDeclines = Kept::new(Duration::seconds(10), Duration::days(2));
static KEPT_MINUTES: KeptDeclines = Kept::new(Duration::seconds(10), Duration::hours(2));

/// The buckets a report's range `[from, to)` is read in, each the bounds of consecutive
/// buckets (empty, or two bounds or more), each beginning where the one before ends: its days
/// before today (the tenant's), today's hours before this one, and this hour's minutes with
/// the rest of the range (from this minute on: read at every view).
#[derive(Debug, Default, PartialEq)]
struct Spans {
    days: Vec<DateTime<Utc>>,
    hours: Vec<DateTime<Utc>>,
    minutes: Vec<DateTime<Utc>>,
}

impl Spans {
    fn new(from: DateTime<Utc>, to: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> Self {
        let today = period_start(CapPeriod::Day, now, tz);
        let hour = today + Duration::hours((now - today).num_hours());
        let minute = hour + Duration::minutes((now - hour).num_minutes());
        let mut spans = Spans::default();
        let mut at = from;
        while at < to {
            let (span, next) = if at < today {
                // A day has 23 to 25 hours: 26 after its start is in the next.
                let day = period_start(CapPeriod::Day, at, tz);
                (
                    &mut spans.days,
                    period_start(CapPeriod::Day, day + Duration::hours(26), tz),
                )
            } else if at < hour {
                let hours = (at - today).num_hours() + 1;
                (&mut spans.hours, today + Duration::hours(hours))
            } else if at < minute {
                let minutes = (at - hour).num_minutes() + 1;
                (&mut spans.minutes, hour + Duration::minutes(minutes))
            } else {
                (&mut spans.minutes, to)
            };
            let end = next.min(to);
            if span.is_empty() {
                span.push(at);
            }
            span.push(end);
            at = end;
        }
        spans
    }
}

/// The declines of each bucket `[bounds[i], bounds[i + 1])`: one scan of the range.
async fn decline_buckets(
    db: &PgPool,
    tenant: Uuid,
    group_by: GroupBy,
    bounds: Vec<DateTime<Utc>>,
) -> Result<Vec<DeclineCounts>, sqlx::Error> {
    let n = bounds.len().saturating_sub(1);
    if n == 0 {
        return Ok(Vec::new());
    }
    let sql = group_by.declines_sql();
    let rows = sqlx::query_as::<_, (i32, Uuid, String, i64, i64)>(AssertSqlSafe(sql.as_str()))
        .bind(tenant)
        .bind(bounds[0])
        .bind(bounds[n])
        .bind(&bounds)
        .fetch_all(db)
        .await?;
    let mut out = vec![DeclineCounts::new(); n];
    for (bucket, group, reason, count, with_bids) in rows {
        if let Some(bucket) = usize::try_from(bucket - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
        {
            bucket.insert((group, reason), (count, with_bids));
        }
    }
    Ok(out)
}

/// The three aggregates of the tenant's range `[from, to)`. They read different tables: they
/// run at once, on several connections. The declines (the largest input) are read per bucket
/// of time ([`Spans`]) and the closed buckets kept, so a view scans the last minute's; per
/// buyer or contract, the declined contracts' evaluations are the larger part of the traffic.
pub async fn summary(
    db: &PgPool,
    tenant: Uuid,
    group_by: GroupBy,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<(Vec<Traffic>, Vec<Declines>, Vec<Sales>), sqlx::Error> {
    let traffic_sql = group_by.traffic_sql();
    let sales_sql = group_by.sales_sql();
    let traffic = sqlx::query_as::<_, Traffic>(AssertSqlSafe(traffic_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(db);
    let sales = sqlx::query_as::<_, Sales>(AssertSqlSafe(sales_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(db);
    let spans = Spans::new(from, to, now, tz);
    let whose = (tenant, group_by);
    let read = |bounds| decline_buckets(db, tenant, group_by, bounds);
    let (mut traffic, sales, days, hours, minutes) = tokio::try_join!(
        traffic,
        sales,
        KEPT_DAYS.get(whose, &spans.days, now, read),
        KEPT_HOURS.get(whose, &spans.hours, now, read),
        KEPT_MINUTES.get(whose, &spans.minutes, now, read),
    )?;

    let mut declines: HashMap<(Uuid, String), i64> = HashMap::new();
    let mut declined: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for ((group, reason), (count, with_bids)) in days.iter().chain(&hours).chain(&minutes).flatten()
    {
        *declines.entry((*group, reason.clone())).or_default() += count;
        let evaluations = declined.entry(*group).or_default();
        evaluations.0 += count;
        evaluations.1 += with_bids;
    }
    if matches!(group_by, GroupBy::Buyer | GroupBy::Contract) {
        for (group, pings, pings_with_bids, _) in &mut traffic {
            if let Some((count, with_bids)) = declined.remove(group) {
                *pings += count;
                *pings_with_bids += with_bids;
            }
        }
        traffic.extend(
            declined
                .into_iter()
                .map(|(group, (count, with_bids))| (group, count, with_bids, 0)),
        );
    }
    let declines = declines
        .into_iter()
        .map(|((group, reason), count)| (group, reason, count))
        .collect();
    Ok((traffic, declines, sales))
}

/// A configuration row's id and name.
pub struct Named {
    pub id: Uuid,
    pub name: String,
}

/// The names of the groups `ids` (offers, partners, buyers or contracts of the tenant, archived
/// ones included): one statement, by primary key.
pub async fn group_names(
    db: &PgPool,
    tenant: Uuid,
    group_by: GroupBy,
    ids: &[Uuid],
) -> Result<Vec<Named>, sqlx::Error> {
    match group_by {
        GroupBy::Offer => {
            sqlx::query_as!(
                Named,
                "SELECT id, name FROM offers WHERE tenant_id = $1 AND id = ANY($2)",
                tenant,
                ids,
            )
            .fetch_all(db)
            .await
        }
        GroupBy::Partner => {
            sqlx::query_as!(
                Named,
                "SELECT id, name FROM partners WHERE tenant_id = $1 AND id = ANY($2)",
                tenant,
                ids,
            )
            .fetch_all(db)
            .await
        }
        GroupBy::Buyer => {
            sqlx::query_as!(
                Named,
                "SELECT id, name FROM buyers WHERE tenant_id = $1 AND id = ANY($2)",
                tenant,
                ids,
            )
            .fetch_all(db)
            .await
        }
        GroupBy::Contract => {
            sqlx::query_as!(
                Named,
                "SELECT id, name FROM contracts WHERE tenant_id = $1 AND id = ANY($2)",
                tenant,
                ids,
            )
            .fetch_all(db)
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Every bucket in order, from the three spans: they must tile the range.
    fn tiles(spans: &Spans) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        [&spans.days, &spans.hours, &spans.minutes]
            .into_iter()
            .flat_map(|span| span.windows(2).map(|w| (w[0], w[1])))
            .collect()
    }

    fn assert_tiled(spans: &Spans, from: DateTime<Utc>, to: DateTime<Utc>) {
        let tiles = tiles(spans);
        assert_eq!(tiles.first().map(|t| t.0), Some(from));
        assert_eq!(tiles.last().map(|t| t.1), Some(to));
        for pair in tiles.windows(2) {
            assert!(pair[0].0 < pair[0].1, "an empty bucket: {pair:?}");
            assert_eq!(pair[0].1, pair[1].0, "a gap or an overlap: {pair:?}");
        }
    }

    #[test]
    fn a_month_is_read_in_past_days_todays_hours_and_this_hours_minutes() {
        let (from, to) = (utc("2026-12-01T00:00:00Z"), utc("2026-12-05T00:00:00Z"));
        let spans = Spans::new(from, to, utc("2026-12-04T10:30:20Z"), Tz::UTC);
        assert_tiled(&spans, from, to);
        assert_eq!(spans.days.len(), 4, "Dec 1 to 3, ending at today's start");
        assert_eq!(spans.days[3], utc("2026-12-04T00:00:00Z"));
        assert_eq!(spans.hours.len(), 11, "today's ten hours before this one");
        assert_eq!(spans.hours[10], utc("2026-12-04T10:00:00Z"));
        // This hour's 30 closed minutes, then the rest of the day as one bucket.
        assert_eq!(spans.minutes.len(), 32);
        assert_eq!(spans.minutes[30], utc("2026-12-04T10:30:00Z"));
    }

    #[test]
    fn days_are_the_tenants_and_a_dst_day_has_its_25_hours() {
        // New York leaves DST on 2026-11-01: that day runs from 04:00 to 05:00 UTC the next.
        let tz: Tz = "America/New_York".parse().unwrap();
        let (from, to) = (utc("2026-10-30T04:00:00Z"), utc("2026-11-02T05:00:00Z"));
        let spans = Spans::new(from, to, utc("2026-11-01T20:07:00Z"), tz);
        assert_tiled(&spans, from, to);
        assert_eq!(
            spans.days,
            [
                utc("2026-10-30T04:00:00Z"),
                utc("2026-10-31T04:00:00Z"),
                utc("2026-11-01T04:00:00Z")
            ]
        );
        assert_eq!(spans.hours.len(), 17, "00:00 EDT to 15:00 EST is 16 hours");
    }

    #[test]
    fn a_range_in_the_past_is_days_and_a_range_not_aligned_keeps_its_ends() {
        let now = utc("2026-12-04T10:30:20Z");
        let (from, to) = (utc("2026-11-03T07:15:00Z"), utc("2026-11-05T09:00:00Z"));
        let spans = Spans::new(from, to, now, Tz::UTC);
        assert_tiled(&spans, from, to);
        assert_eq!(spans.days.len(), 4);
        assert!(spans.hours.is_empty() && spans.minutes.is_empty());

        let (from, to) = (utc("2026-12-04T10:30:05Z"), utc("2026-12-04T11:00:00Z"));
        let spans = Spans::new(from, to, now, Tz::UTC);
        assert_eq!(spans.minutes, [from, to], "from this minute on: one bucket");
    }
}
