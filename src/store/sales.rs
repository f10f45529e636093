//! The post's database work: claiming a ping, reserving caps and funds, settling or releasing
//! each sale, and recording the outcome. Every money movement happens in one transaction with
//! its ledger entry, so a buyer's balance always equals the sum of its ledger entries.
//!
//! Locks are always taken in the same order (a sale's row, its contract's cap counters by
//! period, then its buyer), so concurrent posts queue but never deadlock.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::auction::{CapLimit, CapPeriod, CompiledCaps, SaleType, period_start};

/// A won bid of a ping, as the auction recorded it.
#[derive(Debug, Clone, FromRow)]
pub struct WonBid {
    pub bid_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub sale_type: String,
    pub price_cents: i64,
    pub payout_cents: i64,
    pub rtb_ref: Option<String>,
}

/// A ping as the post needs it.
#[derive(Debug, FromRow)]
pub struct PingForPost {
    pub result: String,
    pub test: bool,
    pub lead: Option<sqlx::types::Json<Map<String, Value>>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub post_body_sha256: Option<Vec<u8>>,
    pub post_response: Option<String>,
}

/// One row of [`find_ping`]: the ping, and one of its won bids (if any).
#[derive(FromRow)]
struct PingAndBid {
    campaign_id: Uuid,
    #[sqlx(flatten)]
    ping: PingForPost,
    bid_id: Option<Uuid>,
    contract_id: Option<Uuid>,
    buyer_id: Option<Uuid>,
    sale_type: Option<String>,
    price_cents: Option<i64>,
    payout_cents: Option<i64>,
    rtb_ref: Option<String>,
}

/// The ping `ping_id` of `campaign_id`, with its won bids, in one statement.
pub async fn find_ping(
    db: &PgPool,
    tenant_id: Uuid,
    campaign_id: Uuid,
    ping_id: Uuid,
) -> Result<Option<(PingForPost, Vec<WonBid>)>, sqlx::Error> {
    // Found by primary key only; the campaign is compared here, so that the plan PostgreSQL
    // caches cannot pick the campaign's index and scan its history.
    let rows: Vec<PingAndBid> = sqlx::query_as(
        "SELECT p.campaign_id, p.result, p.test, p.lead, p.expires_at, p.post_body_sha256,
                l.post_response::text AS post_response,
                d.bid_id, d.contract_id, d.buyer_id, d.sale_type, d.price_cents, d.payout_cents, d.rtb_ref
         FROM posting_log p
         LEFT JOIN leads l ON l.tenant_id = p.tenant_id AND l.ping_id = p.id
         LEFT JOIN distribution_winners d ON d.tenant_id = p.tenant_id AND d.ping_id = p.id
         WHERE p.tenant_id = $1 AND p.id = $2 AND p.kind = 'ping'
         ORDER BY d.price_cents DESC, d.bid_id",
    )
    .bind(tenant_id)
    .bind(ping_id)
    .fetch_all(db)
    .await?;
    let mut bids = Vec::with_capacity(rows.len());
    let mut found = None;
    for row in rows {
        if row.campaign_id != campaign_id {
            return Ok(None);
        }
        if let (
            Some(bid_id),
            Some(contract_id),
            Some(buyer_id),
            Some(sale_type),
            Some(price),
            Some(payout),
        ) = (
            row.bid_id,
            row.contract_id,
            row.buyer_id,
            row.sale_type,
            row.price_cents,
            row.payout_cents,
        ) {
            bids.push(WonBid {
                bid_id,
                contract_id,
                buyer_id,
                sale_type,
                price_cents: price,
                payout_cents: payout,
                rtb_ref: row.rtb_ref,
            });
        }
        found.get_or_insert(row.ping);
    }
    Ok(found.map(|ping| (ping, bids)))
}

/// Who posted, for the records.
pub struct PostSource {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub partner_id: Uuid,
    pub offer_id: Uuid,
}

pub enum Claim {
    /// This request owns the post: the lead is stored under `lead_id`.
    Won,
    /// Another request claimed the ping first, with a body of this hash.
    Lost { body_sha256: Vec<u8> },
}

/// Claims the ping for this post and stores the lead, in one transaction; only the first of
/// concurrent posts wins.
#[allow(clippy::too_many_arguments)]
pub async fn claim(
    db: &PgPool,
    source: &PostSource,
    ping_id: Uuid,
    body_sha256: &[u8; 32],
    lead_id: Uuid,
    lead: &Map<String, Value>,
    consent: &Map<String, Value>,
    test: bool,
    now: DateTime<Utc>,
) -> Result<Claim, sqlx::Error> {
    // One statement: the lead is stored only by the request whose update claimed the ping (a
    // concurrent one waits for the row, then finds it claimed).
    let claimed = sqlx::query(
        "WITH claimed AS (
             UPDATE posting_log SET post_claimed_at = $3, post_body_sha256 = $4, lead_id = $5
             WHERE tenant_id = $1 AND id = $2 AND kind = 'ping' AND post_claimed_at IS NULL
             RETURNING id)
         INSERT INTO leads (tenant_id, id, ping_id, campaign_id, partner_id, offer_id, lead, consent, test, created_at)
         SELECT $1, $5, id, $6, $7, $8, $9, $10, $11, $3 FROM claimed",
    )
    .bind(source.tenant_id)
    .bind(ping_id)
    .bind(now)
    .bind(&body_sha256[..])
    .bind(lead_id)
    .bind(source.campaign_id)
    .bind(source.partner_id)
    .bind(source.offer_id)
    .bind(sqlx::types::Json(lead))
    .bind(sqlx::types::Json(consent))
    .bind(test)
    .execute(db)
    .await?
    .rows_affected();
    if claimed == 0 {
        let hash: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT post_body_sha256 FROM posting_log WHERE tenant_id = $1 AND id = $2",
        )
        .bind(source.tenant_id)
        .bind(ping_id)
        .fetch_one(db)
        .await?;
        return Ok(Claim::Lost {
            body_sha256: hash.unwrap_or_default(),
        });
    }
    Ok(Claim::Won)
}

/// The stored answer of a claimed post, once its first request has finished.
pub async fn stored_response(
    db: &PgPool,
    tenant_id: Uuid,
    ping_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    let stored: Option<Option<String>> = sqlx::query_scalar(
        "SELECT post_response::text FROM leads WHERE tenant_id = $1 AND ping_id = $2",
    )
    .bind(tenant_id)
    .bind(ping_id)
    .fetch_optional(db)
    .await?;
    Ok(stored.flatten())
}

/// A sale about to be reserved.
pub struct NewSale<'a> {
    pub source: &'a PostSource,
    pub sale_id: Uuid,
    pub lead_id: Uuid,
    pub ping_id: Uuid,
    pub bid: &'a WonBid,
    pub test: bool,
    pub now: DateTime<Utc>,
    /// How long after now (the database's clock) a sale still pending counts as interrupted.
    pub pending_for: chrono::Duration,
    /// The buyer's dedup window (0: none), checked against its sales, pending ones included.
    pub dedup_days: u32,
    /// SHA-256 of the consumer's normalized email and phone.
    pub consumer_hashes: &'a [[u8; 32]],
}

/// Binds the sale as `$1`–`$13` (tenant, sale, lead, ping, bid, contract, buyer, campaign,
/// partner, offer, sale type, price, payout): the order of both statements that write a sale.
macro_rules! bind_sale {
    ($query:expr, $sale:expr) => {{
        let sale: &NewSale<'_> = $sale;
        $query
            .bind(sale.source.tenant_id)
            .bind(sale.sale_id)
            .bind(sale.lead_id)
            .bind(sale.ping_id)
            .bind(sale.bid.bid_id)
            .bind(sale.bid.contract_id)
            .bind(sale.bid.buyer_id)
            .bind(sale.source.campaign_id)
            .bind(sale.source.partner_id)
            .bind(sale.source.offer_id)
            .bind(&sale.bid.sale_type)
            .bind(sale.bid.price_cents)
            .bind(sale.bid.payout_cents)
    }};
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The buyer bought this consumer within its dedup window, or is buying it right now.
    Duplicate,
    Capped,
    InsufficientFunds,
}

/// Reserves the sale in one transaction: every cap of the contract gets one more lead and the
/// price for its current period, only where it stays within the cap; the buyer is debited only
/// where balance + credit limit covers the price; the sale is recorded as pending. A test sale
/// reserves nothing. On a refusal nothing is written.
pub async fn reserve(
    db: &PgPool,
    sale: &NewSale<'_>,
    caps: &CompiledCaps,
    tz: chrono_tz::Tz,
) -> Result<Result<(), Refusal>, sqlx::Error> {
    let limits = if sale.test {
        Vec::new()
    } else {
        limits_by_period(caps)
    };
    let periods: Vec<&str> = limits
        .iter()
        .map(|(period, _, _)| period.as_str())
        .collect();
    let starts: Vec<DateTime<Utc>> = limits
        .iter()
        .map(|(period, _, _)| period_start(*period, sale.now, tz))
        .collect();
    let max_leads: Vec<i64> = limits.iter().map(|(_, leads, _)| *leads).collect();
    let max_spend: Vec<i64> = limits.iter().map(|(_, _, spend)| *spend).collect();
    let reserved: Vec<Value> = periods
        .iter()
        .zip(&starts)
        .map(|(period, start)| json!({ "period": period, "period_start": start }))
        .collect();
    let hashes: Vec<&[u8]> = sale.consumer_hashes.iter().map(|h| &h[..]).collect();
    // One statement, one round trip (migration 0003): the hot rows are held for the time the
    // database needs, not for a round trip per step.
    let outcome: String = bind_sale!(
        sqlx::query_scalar(
            "SELECT gavel_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                                  $17, $18, $19, $20, $21, $22, $23, $24)",
        ),
        sale
    )
    .bind(sale.test)
    .bind(sale.pending_for.num_milliseconds() as f64)
    .bind(sale.now)
    .bind(&hashes)
    .bind(i32::try_from(sale.dedup_days).unwrap_or(365))
    .bind(&periods)
    .bind(&starts)
    .bind(&max_leads)
    .bind(&max_spend)
    .bind(Value::Array(reserved))
    .bind(Uuid::now_v7())
    .fetch_one(db)
    .await?;
    Ok(match outcome.as_str() {
        "reserved" => Ok(()),
        "duplicate" => Err(Refusal::Duplicate),
        "capped" => Err(Refusal::Capped),
        "insufficient_funds" => Err(Refusal::InsufficientFunds),
        other => {
            return Err(super::errors::fault(format!(
                "gavel_reserve answered {other:?}"
            )));
        }
    })
}

/// Records a sale that was never reserved (capped, duplicate, not accepted…), in its final
/// status (a reserved one is written by `gavel_reserve`).
pub async fn record_unreserved(
    db: &PgPool,
    sale: &NewSale<'_>,
    status: &str,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    let hashes: Vec<&[u8]> = sale.consumer_hashes.iter().map(|h| &h[..]).collect();
    bind_sale!(
        sqlx::query(
            "INSERT INTO lead_sales (tenant_id, id, lead_id, ping_id, bid_id, contract_id, buyer_id, campaign_id,
                                     partner_id, offer_id, sale_type, price_cents, payout_cents, status, reason, test,
                                     created_at, settled_at, consumer_hashes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, $18)",
        ),
        sale
    )
    .bind(status)
    .bind(reason)
    .bind(sale.test)
    .bind(sale.now)
    .bind(&hashes)
    .execute(db)
    .await?;
    Ok(())
}

/// A buyer's ledger entry for a sale: its charge (negative) or its release (positive).
async fn insert_buyer_entry(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    buyer_id: Uuid,
    kind: &str,
    amount_cents: i64,
    sale_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger_entries (tenant_id, id, account, buyer_id, kind, amount_cents, sale_id, created_at)
         VALUES ($1, $2, 'buyer', $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id)
    .bind(Uuid::now_v7())
    .bind(buyer_id)
    .bind(kind)
    .bind(amount_cents)
    .bind(sale_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The limits of each period that has a cap, in period order (the lock order): leads and
/// spend (`i64::MAX` where the period has no such cap).
fn limits_by_period(caps: &CompiledCaps) -> Vec<(CapPeriod, i64, i64)> {
    let mut periods: Vec<(CapPeriod, i64, i64)> = Vec::new();
    for cap in caps.iter() {
        let index = match periods.iter().position(|(p, _, _)| *p == cap.period()) {
            Some(index) => index,
            None => {
                periods.push((cap.period(), i64::MAX, i64::MAX));
                periods.len() - 1
            }
        };
        match cap.limit() {
            CapLimit::Leads(max) => periods[index].1 = max,
            CapLimit::Spend(max) => periods[index].2 = max.cents(),
        }
    }
    periods.sort_by_key(|(period, _, _)| period.index());
    periods
}

/// What the buyer answered, for the record.
pub struct BuyerAnswer<'a> {
    pub http_status: Option<u16>,
    pub answer: Option<&'a str>,
    pub delivery_ms: Option<i32>,
}

/// The buyer accepted: the sale is sold, the partner is paid, the buyer's dedup entries and
/// the contract's last sale are written. `false` when the sale was no longer pending (the
/// interrupted-sale sweep released it first).
#[allow(clippy::too_many_arguments)]
pub async fn complete(
    db: &PgPool,
    source: &PostSource,
    sale_id: Uuid,
    bid: &WonBid,
    test: bool,
    dedup_keys: &[(&'static str, [u8; 32])],
    answer: &BuyerAnswer<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    // One statement: every write is gated on the sale still being pending (the sweep may have
    // released it), and a test sale writes nothing but its status.
    let hashes: Vec<&[u8]> = dedup_keys.iter().map(|(_, hash)| &hash[..]).collect();
    let kinds: Vec<&str> = dedup_keys.iter().map(|(kind, _)| *kind).collect();
    let sold: i64 = sqlx::query_scalar(
        "WITH sold AS (
             UPDATE lead_sales SET status = 'sold', reason = NULL, buyer_http_status = $3, buyer_response = $4,
                                   delivery_ms = $5, settled_at = $6, pending_until = NULL
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
             RETURNING id),
         paid AS (
             INSERT INTO ledger_entries (tenant_id, id, account, partner_id, kind, amount_cents, sale_id, created_at)
             SELECT $1, $7, 'partner', $8, 'sale', $9, id, $6 FROM sold WHERE NOT $10 AND $9 > 0),
         keys AS (
             INSERT INTO dedup_keys (tenant_id, key_hash, buyer_id, offer_id, kind, sold_at, sale_id)
             SELECT $1, k.hash, $11, $12, k.kind, $6, sold.id
             FROM sold, unnest($13::bytea[], $14::text[]) AS k (hash, kind) WHERE NOT $10
             ON CONFLICT (tenant_id, key_hash, buyer_id, offer_id) DO UPDATE
             SET sold_at = greatest(dedup_keys.sold_at, EXCLUDED.sold_at), sale_id = EXCLUDED.sale_id),
         stats AS (
             INSERT INTO contract_stats (tenant_id, contract_id, last_sold_at)
             SELECT $1, $15, $6 FROM sold WHERE NOT $10
             ON CONFLICT (tenant_id, contract_id) DO UPDATE
             SET last_sold_at = greatest(contract_stats.last_sold_at, EXCLUDED.last_sold_at))
         SELECT count(*) FROM sold",
    )
    .bind(source.tenant_id)
    .bind(sale_id)
    .bind(answer.http_status.map(i32::from))
    .bind(answer.answer)
    .bind(answer.delivery_ms)
    .bind(now)
    .bind(Uuid::now_v7())
    .bind(source.partner_id)
    .bind(bid.payout_cents)
    .bind(test)
    .bind(bid.buyer_id)
    .bind(source.offer_id)
    .bind(&hashes)
    .bind(&kinds)
    .bind(bid.contract_id)
    .fetch_one(db)
    .await?;
    Ok(sold == 1)
}

/// Marks a pending sale settled; `false` if it was not pending any more.
async fn settle_row(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    sale_id: Uuid,
    status: &str,
    reason: Option<&str>,
    answer: &BuyerAnswer<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE lead_sales SET status = $3, reason = $4, buyer_http_status = $5, buyer_response = $6,
                               delivery_ms = $7, settled_at = $8, pending_until = NULL
         WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
    )
    .bind(tenant_id)
    .bind(sale_id)
    .bind(status)
    .bind(reason)
    .bind(answer.http_status.map(i32::from))
    .bind(answer.answer)
    .bind(answer.delivery_ms)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// The buyer rejected the lead or the delivery failed: the reservation is given back in full
/// (every cap counter it took, the buyer's money with a `release` ledger entry). `false` if
/// the sale was not pending any more.
pub async fn release(
    db: &PgPool,
    tenant_id: Uuid,
    sale_id: Uuid,
    status: &str,
    reason: &str,
    answer: &BuyerAnswer<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let sale: Option<(Uuid, Uuid, i64, bool, Value)> = sqlx::query_as(
        "SELECT contract_id, buyer_id, price_cents, test, reserved_caps FROM lead_sales
         WHERE tenant_id = $1 AND id = $2 AND status = 'pending' FOR UPDATE",
    )
    .bind(tenant_id)
    .bind(sale_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((contract_id, buyer_id, price, test, reserved)) = sale else {
        tx.rollback().await?;
        return Ok(false);
    };
    settle_row(
        &mut tx,
        tenant_id,
        sale_id,
        status,
        Some(reason),
        answer,
        now,
    )
    .await?;
    if !test {
        // The reservation's periods, in its order (the lock order), given back by the
        // function that gives back a refused reservation's (migration 0003).
        let mut periods: Vec<&str> = Vec::new();
        let mut starts: Vec<DateTime<Utc>> = Vec::new();
        for cap in reserved.as_array().into_iter().flatten() {
            let (Some(period), Some(start)) =
                (cap["period"].as_str(), cap["period_start"].as_str())
            else {
                continue;
            };
            periods.push(period);
            starts.push(
                start
                    .parse()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            );
        }
        sqlx::query("SELECT gavel_give_back_caps($1, $2, $3, $4, $5, $6)")
            .bind(tenant_id)
            .bind(contract_id)
            .bind(&periods)
            .bind(&starts)
            .bind(price)
            .bind(i32::try_from(periods.len()).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE buyers SET balance_cents = balance_cents + $3 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(buyer_id)
        .bind(price)
        .execute(&mut *tx)
        .await?;
        insert_buyer_entry(&mut tx, tenant_id, buyer_id, "release", price, sale_id, now).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// One winning bid's final disposition, for `distribution_winners`.
pub struct Disposition {
    pub contract_id: Uuid,
    pub status: &'static str,
}

/// Records the post: each winner's disposition, the answer on the ping (for retries) and the
/// post's own `posting_log` row, in one transaction. Returns the stored answer's text, which
/// every retry of this post receives byte for byte.
#[allow(clippy::too_many_arguments)]
pub async fn finish_post(
    db: &PgPool,
    source: &PostSource,
    ping_id: Uuid,
    dispositions: &[Disposition],
    // The answer as JSON text: stored as jsonb, which keeps each amount's two decimals.
    response: &str,
    kind: &str,
    result: &str,
    test: bool,
    latency_us: i64,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let contracts: Vec<Uuid> = dispositions.iter().map(|d| d.contract_id).collect();
    let statuses: Vec<&str> = dispositions.iter().map(|d| d.status).collect();
    // One statement. The answer is kept if the sweep answered first: every request of this
    // post gets one and the same answer.
    sqlx::query_scalar(
        "WITH dispositions AS (
             UPDATE distribution_winners d SET disposition = u.status
             FROM unnest($3::uuid[], $4::text[]) AS u (contract_id, status)
             WHERE d.tenant_id = $1 AND d.ping_id = $2 AND d.contract_id = u.contract_id),
         logged AS (
             INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, ping_id, created_at,
                                      latency_us, http_status, result, test)
             VALUES ($1, $6, $7, $8, $9, $10, $2, $11, $12, 200, $13, $14))
         UPDATE leads SET post_response = coalesce(post_response, $5::jsonb) WHERE tenant_id = $1 AND ping_id = $2
         RETURNING post_response::text",
    )
    .bind(source.tenant_id)
    .bind(ping_id)
    .bind(&contracts)
    .bind(&statuses)
    .bind(response)
    .bind(Uuid::now_v7())
    .bind(kind)
    .bind(source.campaign_id)
    .bind(source.partner_id)
    .bind(source.offer_id)
    .bind(now)
    .bind(latency_us)
    .bind(result)
    .bind(test)
    .fetch_one(db)
    .await
}

/// A `posting_log` row for a post or direct post (also for refused ones).
#[allow(clippy::too_many_arguments)]
pub async fn insert_post_log(
    conn: &mut PgConnection,
    source: &PostSource,
    ping_id: Option<Uuid>,
    kind: &str,
    http_status: u16,
    result: &str,
    test: bool,
    latency_us: i64,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, ping_id, created_at,
                                  latency_us, http_status, result, test)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(source.tenant_id)
    .bind(Uuid::now_v7())
    .bind(kind)
    .bind(source.campaign_id)
    .bind(source.partner_id)
    .bind(source.offer_id)
    .bind(ping_id)
    .bind(now)
    .bind(latency_us)
    .bind(i32::from(http_status))
    .bind(result)
    .bind(test)
    .execute(conn)
    .await?;
    Ok(())
}

/// Releases every sale left pending past its deadline (a crash or a lost process), marking it
/// `failed` with reason `interrupted`; then answers the posts those sales belonged to. Returns
/// the released sales' ids.
pub async fn release_interrupted(
    db: &PgPool,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    // Deadlines are on the database's clock, the same for every Gavel process.
    let stuck: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, id FROM lead_sales WHERE status = 'pending' AND pending_until < now()",
    )
    .fetch_all(db)
    .await?;
    let answer = BuyerAnswer {
        http_status: None,
        answer: None,
        delivery_ms: None,
    };
    let mut released = Vec::new();
    for (tenant_id, sale_id) in stuck {
        // One sale that cannot be released must not hold up the others.
        match release(
            db,
            tenant_id,
            sale_id,
            "failed",
            "interrupted",
            &answer,
            now,
        )
        .await
        {
            Ok(true) => released.push(sale_id),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%tenant_id, %sale_id, %error, "cannot release an interrupted sale")
            }
        }
    }
    answer_interrupted_posts(db).await?;
    Ok(released)
}

/// A post whose request died after claiming its ping never stored an answer, so its retries
/// would wait in vain: once none of its sales is pending, its answer is built from them.
async fn answer_interrupted_posts(db: &PgPool) -> Result<(), sqlx::Error> {
    let unanswered: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT tenant_id, ping_id FROM leads WHERE post_response IS NULL AND created_at < now() - interval '1 minute'",
    )
    .fetch_all(db)
    .await?;
    for (tenant_id, ping_id) in unanswered {
        sqlx::query(
            "UPDATE leads p SET post_response = jsonb_build_object(
                 'lead_id', p.id, 'ping_id', p.ping_id,
                 'status', CASE WHEN s.sold = s.accepted AND s.sold > 0 THEN 'sold'
                                WHEN s.sold > 0 THEN 'partially_sold' ELSE 'unsold' END,
                 'payout', s.payout, 'results', s.results)
             FROM (SELECT count(*) FILTER (WHERE status = 'sold') AS sold,
                          count(*) FILTER (WHERE status <> 'not_accepted') AS accepted,
                          (coalesce(sum(payout_cents) FILTER (WHERE status = 'sold'), 0) / 100.0)::numeric(14, 2)
                              AS payout,
                          coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                              'bid_id', bid_id, 'status', status, 'reason', reason,
                              'payout', CASE WHEN status = 'sold' THEN (payout_cents / 100.0)::numeric(14, 2)
                                             ELSE 0.00 END))
                              ORDER BY price_cents DESC, bid_id), '[]') AS results,
                          coalesce(bool_or(status = 'pending'), false) AS pending
                   FROM lead_sales WHERE tenant_id = $1 AND ping_id = $2) s
             WHERE p.tenant_id = $1 AND p.ping_id = $2 AND p.post_response IS NULL AND NOT s.pending",
        )
        .bind(tenant_id)
        .bind(ping_id)
        .execute(db)
        .await?;
    }
    Ok(())
}

/// Sale type text → enum (the column's CHECK allows only the two).
pub fn sale_type_of(text: &str) -> SaleType {
    text.parse().unwrap_or(SaleType::Shared)
}

/// A sale as the admin API lists it.
#[derive(Debug, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct SaleRow {
    pub id: Uuid,
    pub lead_id: Uuid,
    pub ping_id: Uuid,
    pub bid_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub campaign_id: Uuid,
    pub sale_type: String,
    #[serde(skip)]
    pub price_cents: i64,
    #[serde(skip)]
    pub payout_cents: i64,
    pub status: String,
    pub reason: Option<String>,
    pub test: bool,
    pub buyer_http_status: Option<i32>,
    pub delivery_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// Which sales to list.
#[derive(Debug, Default)]
pub struct SaleFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub buyer_id: Option<Uuid>,
    pub contract_id: Option<Uuid>,
    pub status: Option<String>,
    /// Sales older than this one (ids are time-ordered): the page after it.
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// A tenant's sales, newest first.
pub async fn list(
    db: &PgPool,
    tenant_id: Uuid,
    filter: &SaleFilter,
) -> Result<Vec<SaleRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, lead_id, ping_id, bid_id, contract_id, buyer_id, campaign_id, sale_type, price_cents,
                payout_cents, status, reason, test, buyer_http_status, delivery_ms, created_at, settled_at
         FROM lead_sales
         WHERE tenant_id = $1
           AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3)
           AND ($4::uuid IS NULL OR buyer_id = $4) AND ($5::uuid IS NULL OR contract_id = $5)
           AND ($6::text IS NULL OR status = $6) AND ($7::uuid IS NULL OR id < $7)
         ORDER BY id DESC LIMIT $8",
    )
    .bind(tenant_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.buyer_id)
    .bind(filter.contract_id)
    .bind(&filter.status)
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(db)
    .await
}
