//! The summary report's aggregates (`api::admin::reports`). Each figure is aggregated in SQL
//! from a range scan of an index leading with (tenant_id, created_at) (per buyer or contract,
//! with the range's pings' contract outcomes, found by primary key); test traffic is left out.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// The report's pings, as `p`: the tenant's ($1), not test pings, from $2 until $3.
const PINGS_IN_RANGE: &str = concat!(
    "p.tenant_id = $1 AND p.kind = 'ping' AND p.created_at >= $2 AND p.created_at < $3",
    " AND NOT p.test"
);

/// What the report groups by; each names the columns it reads, so no SQL comes from the request.
#[derive(Clone, Copy)]
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
    ///
    /// Only the arrays the grouping needs are unnested, and the reasons are counted as the enum
    /// they are (hashed), named as text once counted: the range's contract outcomes are the
    /// report's largest input.
    fn declines_sql(self) -> String {
        let unnest = match self {
            GroupBy::Offer | GroupBy::Partner => "unnest(x.reasons) AS c (reason)",
            GroupBy::Buyer => "unnest(x.buyer_ids, x.reasons) AS c (buyer_id, reason)",
            GroupBy::Contract => "unnest(x.contract_ids, x.reasons) AS c (contract_id, reason)",
        };
        format!(
            "SELECT group_id, reason::text, n
             FROM (SELECT {column} AS group_id, c.reason, count(*) AS n
                   FROM posting_log p
                   JOIN distribution_declines x ON x.tenant_id = p.tenant_id AND x.ping_id = p.id,
                   {unnest}
                   WHERE {pings_in_range}
                   GROUP BY 1, 2) AS counted",
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

/// The three aggregates of the tenant's range `[from, to)`. They read different tables: they
/// run at once, on three connections.
pub async fn summary(
    db: &PgPool,
    tenant: Uuid,
    group_by: GroupBy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Vec<Traffic>, Vec<Declines>, Vec<Sales>), sqlx::Error> {
    let traffic_sql = group_by.traffic_sql();
    let declines_sql = group_by.declines_sql();
    let sales_sql = group_by.sales_sql();
    let traffic = sqlx::query_as::<_, Traffic>(AssertSqlSafe(traffic_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(db);
    let declines = sqlx::query_as::<_, Declines>(AssertSqlSafe(declines_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(db);
    let sales = sqlx::query_as::<_, Sales>(AssertSqlSafe(sales_sql.as_str()))
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(db);
    tokio::try_join!(traffic, declines, sales)
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
