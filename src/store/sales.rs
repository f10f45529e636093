//! The post's database work: claiming a ping, reserving caps and funds, settling or releasing
//! each sale, and recording the outcome. Every money movement happens in one transaction with
//! its ledger entry, so a buyer's balance always equals the sum of its ledger entries.
//!
//! Locks are always taken in the same order (a sale's row, its contract's cap counters by
//! period, then its buyer), so concurrent posts queue but never deadlock.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};

use crate::store::group::{GroupStatement, by_ordinal, column};
use uuid::Uuid;

use crate::auction::{CapLimit, CapPeriod, CompiledCaps, SaleType, period_start};
use crate::post::{BuyerVerdict, INTERRUPTED, PostKind, ReserveOutcome, SaleStatus};

/// A won bid of a ping, as the auction recorded it.
#[derive(Debug, Clone)]
pub struct WonBid {
    pub bid_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub sale_type: String,
    pub price_cents: i64,
    pub payout_cents: i64,
    pub rtb_ref: Option<String>,
    /// Which attempt of its slot a sale of this bid is: 0 for a winner's own bid, then 1, 2, …
    /// for the runner-ups the cascade offers the slot to.
    pub attempt: i16,
    /// The winning bid whose slot this runner-up's bid fills (`None` for a winner's own).
    pub replaces_bid_id: Option<Uuid>,
}

/// A runner-up of a ping (docs/revenue-recovery.md §1), as the ping recorded it: its bids,
/// its place and its RTB ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerUp {
    pub rank: i16,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub exclusive_cents: Option<i64>,
    pub shared_cents: Option<i64>,
    pub rtb_ref: Option<String>,
}

/// The runner-ups of `ping_id`, best first: one read of the ping's declines by primary key,
/// made only when a winner's sale failed and the offer cascades.
pub async fn runner_ups(
    db: &PgPool,
    tenant_id: Uuid,
    ping_id: Uuid,
) -> Result<Vec<RunnerUp>, sqlx::Error> {
    sqlx::query_as!(
        RunnerUp,
        r#"SELECT r.rank AS "rank!", r.contract_id AS "contract_id!", r.buyer_id AS "buyer_id!",
                  r.exclusive_cents, r.shared_cents, r.rtb_ref
           FROM distribution_declines d,
                unnest(d.runner_up_ranks, d.contract_ids, d.buyer_ids, d.exclusive_bids_cents,
                       d.shared_bids_cents, d.rtb_refs)
                    AS r (rank, contract_id, buyer_id, exclusive_cents, shared_cents, rtb_ref)
           WHERE d.tenant_id = $1 AND d.ping_id = $2 AND d.runner_up_ranks IS NOT NULL
             AND r.rank IS NOT NULL
           ORDER BY r.rank"#,
        tenant_id,
        ping_id,
    )
    .fetch_all(db)
    .await
}

/// A ping as the post needs it.
#[derive(Debug)]
pub struct PingForPost {
    pub result: String,
    pub test: bool,
    pub lead: Option<Json<Map<String, Value>>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub post_body_sha256: Option<Vec<u8>>,
    pub post_response: Option<String>,
    /// The ping's `sub_ids`, as it sent them.
    pub sub_ids: Option<Json<Map<String, Value>>>,
    /// The ping's own floor (`min_payout`), if it set one.
    pub min_payout_cents: Option<i64>,
}

/// What a post's look-up of its ping found.
pub enum PingLookup {
    Found(PingForPost, Vec<WonBid>),
    /// Recorded for another campaign: not this post's to see.
    OtherCampaign,
    /// Not recorded (yet, if another process is writing it).
    Absent,
}

impl PingLookup {
    pub fn found(self) -> Option<(PingForPost, Vec<WonBid>)> {
        match self {
            PingLookup::Found(ping, bids) => Some((ping, bids)),
            PingLookup::OtherCampaign | PingLookup::Absent => None,
        }
    }
}

/// The ping `ping_id` of `campaign_id`, with its won bids, in one statement.
pub async fn find_ping(
    db: &PgPool,
    tenant_id: Uuid,
    campaign_id: Uuid,
    ping_id: Uuid,
) -> Result<PingLookup, sqlx::Error> {
    // Found by primary key only; the campaign is compared here, so that the plan PostgreSQL
    // caches cannot pick the campaign's index and scan its history.
    let rows = sqlx::query!(
        r#"SELECT p.campaign_id, p.result, p.test, p.lead AS "lead: Json<Map<String, Value>>",
                  p.expires_at, p.post_body_sha256, l.post_response::text AS post_response,
                  p.sub_ids AS "sub_ids: Json<Map<String, Value>>", p.min_payout_cents,
                  d.bid_id AS "bid_id?", d.contract_id AS "contract_id?", d.buyer_id AS "buyer_id?",
                  d.sale_type AS "sale_type?", d.price_cents AS "price_cents?",
                  d.payout_cents AS "payout_cents?", d.rtb_ref
           FROM posting_log p
           LEFT JOIN leads l ON l.tenant_id = p.tenant_id AND l.ping_id = p.id
           LEFT JOIN distribution_winners d ON d.tenant_id = p.tenant_id AND d.ping_id = p.id
           WHERE p.tenant_id = $1 AND p.id = $2 AND p.kind = 'ping'
           ORDER BY d.price_cents DESC, d.bid_id"#,
        tenant_id,
        ping_id,
    )
    .fetch_all(db)
    .await?;
    let mut bids = Vec::with_capacity(rows.len());
    let mut found = None;
    for row in rows {
        if row.campaign_id != campaign_id {
            return Ok(PingLookup::OtherCampaign);
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
                attempt: 0,
                replaces_bid_id: None,
            });
        }
        found.get_or_insert(PingForPost {
            result: row.result,
            test: row.test,
            lead: row.lead,
            expires_at: row.expires_at,
            post_body_sha256: row.post_body_sha256,
            post_response: row.post_response.map(compact),
            sub_ids: row.sub_ids,
            min_payout_cents: row.min_payout_cents,
        });
    }
    Ok(match found {
        Some(ping) => PingLookup::Found(ping, bids),
        None => PingLookup::Absent,
    })
}

/// Who posted, for the records.
#[derive(Clone, Copy)]
pub struct PostSource {
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub partner_id: Uuid,
    pub offer_id: Uuid,
}

/// The stored answer of a claimed post, once its first request has finished.
pub async fn stored_response(
    db: &PgPool,
    tenant_id: Uuid,
    ping_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    let stored = sqlx::query_scalar!(
        "SELECT post_response::text FROM leads WHERE tenant_id = $1 AND ping_id = $2",
        tenant_id,
        ping_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(stored.flatten().map(compact))
}

/// A stored answer's text as every route answers JSON, without the spaces PostgreSQL's jsonb
/// output puts after `:` and `,` (re-serializing through serde_json would turn `27.30` into
/// `27.3`).
pub(super) fn compact(text: String) -> String {
    if !text.contains([' ', '\n']) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c.is_ascii_whitespace() {
            continue;
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out
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

/// `sqlx::query!` (or `query_scalar!`) of `$sql` with the sale as `$1`–`$13` (tenant, sale,
/// lead, ping, bid, contract, buyer, campaign, partner, offer, sale type, price, payout), then
/// the rest: the order of both statements that write a sale.
macro_rules! query_with_sale {
    ($macro:ident, $sql:literal, $sale:ident $(, $rest:expr)* $(,)?) => {
        sqlx::$macro!(
            $sql,
            $sale.source.tenant_id,
            $sale.sale_id,
            $sale.lead_id,
            $sale.ping_id,
            $sale.bid.bid_id,
            $sale.bid.contract_id,
            $sale.bid.buyer_id,
            $sale.source.campaign_id,
            $sale.source.partner_id,
            $sale.source.offer_id,
            $sale.bid.sale_type,
            $sale.bid.price_cents,
            $sale.bid.payout_cents,
            $($rest),*
        )
    };
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The buyer bought this consumer within its dedup window, or is buying it right now.
    Duplicate,
    Capped,
    InsufficientFunds,
}

/// The capped periods of a reservation, in period order: names, current starts, limits.
struct Limits {
    periods: Vec<&'static str>,
    starts: Vec<DateTime<Utc>>,
    max_leads: Vec<i64>,
    max_spend: Vec<i64>,
}

impl Limits {
    fn of(caps: &CompiledCaps, test: bool, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Limits {
        let limits = if test {
            Vec::new()
        } else {
            limits_by_period(caps)
        };
        Limits {
            periods: limits
                .iter()
                .map(|(period, _, _)| period.as_str())
                .collect(),
            starts: limits
                .iter()
                .map(|(period, _, _)| period_start(*period, now, tz))
                .collect(),
            max_leads: limits.iter().map(|(_, leads, _)| *leads).collect(),
            max_spend: limits.iter().map(|(_, _, spend)| *spend).collect(),
        }
    }
}

/// A sale's reservation, as the grouped statement takes it (owned: it may wait in a group's
/// queue). Every cap of the contract, then every cap of the buyer (`buyer_caps`, counted over
/// all its contracts), gets one more lead and the price for its current period, only where it
/// stays within the cap; the buyer is debited only where balance + credit limit covers the
/// price; the sale is recorded as pending, with its cascade attempt. A test sale reserves
/// nothing. On a refusal nothing is written.
///
/// `lead_sales.reserved_caps` records what the release gives back: the contract's periods as
/// `{"period", "period_start"}`, the buyer's as `{"scope": "buyer", "buyer_period",
/// "buyer_period_start"}` (other keys than the contract's, so that a process predating buyer
/// caps, releasing during a rolling upgrade, skips them rather than take them for the
/// contract's).
pub struct Reservation {
    tenant_id: Uuid,
    sale_id: Uuid,
    lead_id: Uuid,
    ping_id: Uuid,
    bid_id: Uuid,
    contract_id: Uuid,
    buyer_id: Uuid,
    campaign_id: Uuid,
    partner_id: Uuid,
    offer_id: Uuid,
    sale_type: String,
    price_cents: i64,
    payout_cents: i64,
    test: bool,
    pending_ms: f64,
    now: DateTime<Utc>,
    dedup_days: i32,
    hashes: Vec<[u8; 32]>,
    contract: Limits,
    buyer: Limits,
    reserved: Value,
    ledger_id: Uuid,
    attempt: i16,
    replaces_bid_id: Option<Uuid>,
}

impl Reservation {
    pub fn of(
        sale: &NewSale<'_>,
        caps: &CompiledCaps,
        buyer_caps: &CompiledCaps,
        tz: chrono_tz::Tz,
    ) -> Self {
        let contract = Limits::of(caps, sale.test, sale.now, tz);
        let buyer = Limits::of(buyer_caps, sale.test, sale.now, tz);
        let reserved: Vec<Value> = contract
            .periods
            .iter()
            .zip(&contract.starts)
            .map(|(period, start)| json!({ "period": period, "period_start": start }))
            .chain(buyer.periods.iter().zip(&buyer.starts).map(|(period, start)| {
                json!({ "scope": "buyer", "buyer_period": period, "buyer_period_start": start })
            }))
            .collect();
        Self {
            tenant_id: sale.source.tenant_id,
            sale_id: sale.sale_id,
            lead_id: sale.lead_id,
            ping_id: sale.ping_id,
            bid_id: sale.bid.bid_id,
            contract_id: sale.bid.contract_id,
            buyer_id: sale.bid.buyer_id,
            campaign_id: sale.source.campaign_id,
            partner_id: sale.source.partner_id,
            offer_id: sale.source.offer_id,
            sale_type: sale.bid.sale_type.clone(),
            price_cents: sale.bid.price_cents,
            payout_cents: sale.bid.payout_cents,
            test: sale.test,
            pending_ms: sale.pending_for.num_milliseconds() as f64,
            now: sale.now,
            dedup_days: i32::try_from(sale.dedup_days).unwrap_or(365),
            hashes: sale.consumer_hashes.to_vec(),
            contract,
            buyer,
            reserved: Value::Array(reserved),
            ledger_id: Uuid::now_v7(),
            attempt: sale.bid.attempt,
            replaces_bid_id: sale.bid.replaces_bid_id,
        }
    }
}

/// The reservations of posts settling at the same moment, grouped: one transaction takes each
/// hot row (the contract's counters, the buyer's) once for all of them (migration 0023).
pub struct ReserveSales;

impl GroupStatement for ReserveSales {
    const NAME: &'static str = "sale_reserve";
    /// Its foreign keys' checks look sales up by key: plans made on a young `lead_sales`
    /// scanned the tenant's sales instead (`GroupStatement::REPLAN_EVERY`).
    const REPLAN_EVERY: Option<std::time::Duration> = super::group::REPLAN_EVERY_SECOND;
    type Request = Reservation;
    type Answer = Result<(), Refusal>;
    const MAX_REQUESTS: usize = 64;
    const MAX_WORK: usize = 2_000;

    fn work(reservation: &Reservation) -> usize {
        1 + reservation.hashes.len()
            + reservation.contract.periods.len()
            + reservation.buyer.periods.len()
    }

    async fn run(
        db: &mut PgConnection,
        reservations: &[Reservation],
    ) -> Result<Vec<Result<(), Refusal>>, sqlx::Error> {
        reserve(db, reservations).await
    }
}

/// Reserves the sales in one transaction (`gavel_reserve_group`, migration 0023): each one's
/// outcome, in order, is what reserving them one after the other in that order would give,
/// with the same writes. One statement, one round trip: the hot rows are held for the time
/// the database needs, once for the group.
pub async fn reserve(
    db: &mut PgConnection,
    reservations: &[Reservation],
) -> Result<Vec<Result<(), Refusal>>, sqlx::Error> {
    let rs = reservations;
    // The flattened parts: each element names its request (1-based).
    let (mut hash_of, mut hashes) = (Vec::new(), Vec::new());
    let mut caps = Flattened::default();
    let mut buyer_caps = Flattened::default();
    for (index, r) in (1..).zip(rs) {
        for hash in &r.hashes {
            hash_of.push(index);
            hashes.push(&hash[..]);
        }
        caps.push(index, &r.contract);
        buyer_caps.push(index, &r.buyer);
    }
    let outcomes = sqlx::query_scalar!(
        r#"SELECT gavel_reserve_group($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                                      $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26,
                                      $27, $28, $29, $30, $31, $32, $33)
               AS "outcomes!: Vec<ReserveOutcome>""#,
        &column(rs, |r| r.tenant_id),
        &column(rs, |r| r.sale_id),
        &column(rs, |r| r.lead_id),
        &column(rs, |r| r.ping_id),
        &column(rs, |r| r.bid_id),
        &column(rs, |r| r.contract_id),
        &column(rs, |r| r.buyer_id),
        &column(rs, |r| r.campaign_id),
        &column(rs, |r| r.partner_id),
        &column(rs, |r| r.offer_id),
        &column(rs, |r| r.sale_type.as_str()) as _,
        &column(rs, |r| r.price_cents),
        &column(rs, |r| r.payout_cents),
        &column(rs, |r| r.test),
        &column(rs, |r| r.pending_ms),
        &column(rs, |r| r.now),
        &column(rs, |r| r.dedup_days),
        &column(rs, |r| &r.reserved) as _,
        &column(rs, |r| r.ledger_id),
        &column(rs, |r| r.attempt),
        &column(rs, |r| r.replaces_bid_id) as _,
        &hash_of,
        &hashes as _,
        &caps.of,
        &caps.periods as _,
        &caps.starts,
        &caps.max_leads,
        &caps.max_spend,
        &buyer_caps.of,
        &buyer_caps.periods as _,
        &buyer_caps.starts,
        &buyer_caps.max_leads,
        &buyer_caps.max_spend,
    )
    .fetch_one(db)
    .await?;
    if outcomes.len() != rs.len() {
        return Err(super::errors::fault("the reservations lost outcomes"));
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            ReserveOutcome::Reserved => Ok(()),
            ReserveOutcome::Duplicate => Err(Refusal::Duplicate),
            ReserveOutcome::Capped => Err(Refusal::Capped),
            ReserveOutcome::InsufficientFunds => Err(Refusal::InsufficientFunds),
        })
        .collect())
}

/// The capped periods of many reservations in one list, each naming its request.
#[derive(Default)]
struct Flattened {
    of: Vec<i32>,
    periods: Vec<&'static str>,
    starts: Vec<DateTime<Utc>>,
    max_leads: Vec<i64>,
    max_spend: Vec<i64>,
}

impl Flattened {
    fn push(&mut self, request: i32, limits: &Limits) {
        self.of
            .extend(std::iter::repeat_n(request, limits.periods.len()));
        self.periods.extend(&limits.periods);
        self.starts.extend(&limits.starts);
        self.max_leads.extend(&limits.max_leads);
        self.max_spend.extend(&limits.max_spend);
    }
}

/// The buyer's own caps, as `reserve` takes them (none for a buyer no longer loaded).
pub fn buyer_caps(tenant: &crate::store::snapshot::TenantConfig, buyer_id: Uuid) -> &CompiledCaps {
    static NONE: std::sync::LazyLock<CompiledCaps> =
        std::sync::LazyLock::new(CompiledCaps::default);
    tenant
        .buyers
        .get(&buyer_id)
        .map_or(&NONE, |buyer| &buyer.caps)
}

/// Records a sale that was never reserved (capped, duplicate, not accepted…), in its final
/// status (a reserved one is written by `gavel_reserve_group`).
pub async fn record_unreserved(
    db: &PgPool,
    sale: &NewSale<'_>,
    status: SaleStatus,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    let hashes: Vec<&[u8]> = sale.consumer_hashes.iter().map(|h| &h[..]).collect();
    query_with_sale!(
        query,
        "INSERT INTO lead_sales (tenant_id, id, lead_id, ping_id, bid_id, contract_id, buyer_id, campaign_id,
                                 partner_id, offer_id, sale_type, price_cents, payout_cents, status, reason, test,
                                 created_at, settled_at, consumer_hashes, attempt, replaces_bid_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, $18, $19, $20)",
        sale,
        status.as_str(),
        reason,
        sale.test,
        sale.now,
        &hashes as _,
        sale.bid.attempt,
        sale.bid.replaces_bid_id,
    )
    .execute(db)
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

/// The buyer's verdict on a reserved sale, kept as soon as it is known: what a sale whose
/// completion or release could not be written is settled by (`release_interrupted`).
pub struct Verdict<'a> {
    pub verdict: BuyerVerdict,
    pub reason: Option<&'a str>,
    pub answer: &'a BuyerAnswer<'a>,
    /// The kind of each of the sale's consumer hashes, in their order (its dedup keys).
    pub consumer_kinds: &'a [&'static str],
}

/// Writes the buyer's verdict on a pending sale; `false` when the sale was not pending any
/// more (settled already, by this process or the sweep).
pub async fn record_verdict(
    db: &PgPool,
    tenant_id: Uuid,
    sale_id: Uuid,
    verdict: &Verdict<'_>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE lead_sales SET verdict = $3, reason = $4, buyer_http_status = $5, buyer_response = $6,
                               delivery_ms = $7, consumer_kinds = $8
         WHERE tenant_id = $1 AND id = $2 AND status = 'pending'",
        tenant_id,
        sale_id,
        verdict.verdict.as_str(),
        verdict.reason,
        verdict.answer.http_status.map(i32::from),
        verdict.answer.answer,
        verdict.answer.delivery_ms,
        verdict.consumer_kinds as _,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// A sale's status and reason (None: no such sale).
pub async fn sale_status(
    db: &PgPool,
    tenant_id: Uuid,
    sale_id: Uuid,
) -> Result<Option<(SaleStatus, Option<String>)>, sqlx::Error> {
    let sale = sqlx::query!(
        r#"SELECT status AS "status: SaleStatus", reason FROM lead_sales WHERE tenant_id = $1 AND id = $2"#,
        tenant_id,
        sale_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(sale.map(|sale| (sale.status, sale.reason)))
}

/// The buyer accepted: the sale is sold, the partner is paid, the buyer's dedup entries and
/// the contract's last sale are written, each once. With `verdict`, the buyer's answer is
/// written with it (the settling task's first attempt); without, the sale must hold an
/// `accepted` verdict already (a retry, or the sweep). `false` when the sale was not pending
/// any more (settled already) or holds no accepted verdict.
pub async fn complete(
    db: &PgPool,
    tenant_id: Uuid,
    sale_id: Uuid,
    verdict: Option<&Verdict<'_>>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    // One statement, gated on the sale still being pending: the status transition is what
    // makes the charge, the payout and the dedup keys happen once, whoever completes it. Every
    // value comes from the sale's own row, so the sweep completes it exactly as this does. A
    // test sale writes nothing but its status. The partner's balance moves with its `sale`
    // entry by the ledger's trigger (migration 0017), so also when a process of the previous
    // release, which knows no partner balance, completes the sale.
    let sold = sqlx::query_scalar!(
        r#"WITH sold AS (
             UPDATE lead_sales SET status = 'sold', reason = NULL, verdict = 'accepted',
                                   buyer_http_status = CASE WHEN $3 THEN $4 ELSE buyer_http_status END,
                                   buyer_response = CASE WHEN $3 THEN $5 ELSE buyer_response END,
                                   delivery_ms = CASE WHEN $3 THEN $6 ELSE delivery_ms END,
                                   consumer_kinds = CASE WHEN $3 THEN $7 ELSE consumer_kinds END,
                                   settled_at = $8, pending_until = NULL
             WHERE tenant_id = $1 AND id = $2 AND status = 'pending' AND ($3 OR verdict = 'accepted')
             RETURNING id, partner_id, offer_id, buyer_id, contract_id, payout_cents, test, consumer_hashes,
                       consumer_kinds),
         paid AS (
             INSERT INTO ledger_entries (tenant_id, id, account, partner_id, kind, amount_cents, sale_id, created_at)
             SELECT $1, $9, 'partner', partner_id, 'sale', payout_cents, id, $8 FROM sold
             WHERE NOT test AND payout_cents > 0),
         keys AS (
             INSERT INTO dedup_keys (tenant_id, key_hash, buyer_id, offer_id, kind, sold_at, sale_id)
             SELECT $1, k.hash, sold.buyer_id, sold.offer_id, k.kind, $8, sold.id
             FROM sold, unnest(sold.consumer_hashes, sold.consumer_kinds) AS k (hash, kind)
             WHERE NOT sold.test AND k.hash IS NOT NULL AND k.kind IS NOT NULL
             ON CONFLICT (tenant_id, key_hash, buyer_id, offer_id) DO UPDATE
             SET sold_at = greatest(dedup_keys.sold_at, EXCLUDED.sold_at), sale_id = EXCLUDED.sale_id),
         stats AS (
             INSERT INTO contract_stats (tenant_id, contract_id, last_sold_at)
             SELECT $1, contract_id, $8 FROM sold WHERE NOT test
             ON CONFLICT (tenant_id, contract_id) DO UPDATE
             SET last_sold_at = greatest(contract_stats.last_sold_at, EXCLUDED.last_sold_at))
         SELECT count(*) AS "sold!" FROM sold"#,
        tenant_id,
        sale_id,
        verdict.is_some(),
        verdict.and_then(|v| v.answer.http_status).map(i32::from),
        verdict.and_then(|v| v.answer.answer),
        verdict.and_then(|v| v.answer.delivery_ms),
        verdict.map(|v| v.consumer_kinds) as _,
        now,
        Uuid::now_v7(),
    )
    .fetch_one(db)
    .await?;
    Ok(sold == 1)
}

/// A sale's completion, as the grouped statement takes it (owned: it may wait in a group's
/// queue): what `complete` takes.
pub struct Completion {
    tenant_id: Uuid,
    sale_id: Uuid,
    /// The buyer's answer, written with the completion (the settling task's first attempt).
    answer: Option<CompletionAnswer>,
    now: DateTime<Utc>,
    ledger_id: Uuid,
}

struct CompletionAnswer {
    http_status: Option<i32>,
    answer: Option<String>,
    delivery_ms: Option<i32>,
    consumer_kinds: Vec<&'static str>,
}

impl Completion {
    pub fn of(
        tenant_id: Uuid,
        sale_id: Uuid,
        verdict: Option<&Verdict<'_>>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            tenant_id,
            sale_id,
            answer: verdict.map(|v| CompletionAnswer {
                http_status: v.answer.http_status.map(i32::from),
                answer: v.answer.answer.map(str::to_owned),
                delivery_ms: v.answer.delivery_ms,
                consumer_kinds: v.consumer_kinds.to_vec(),
            }),
            now,
            ledger_id: Uuid::now_v7(),
        }
    }
}

/// The completions of sales settling at the same moment, grouped: one statement writes every
/// hot row they share (a contract's `contract_stats`, a partner's balance) once.
pub struct CompleteSales;

impl GroupStatement for CompleteSales {
    const NAME: &'static str = "sale_complete";
    /// Its foreign keys' checks look sales up by key: plans made on a young `lead_sales`
    /// scanned the tenant's sales instead (`GroupStatement::REPLAN_EVERY`).
    const REPLAN_EVERY: Option<std::time::Duration> = super::group::REPLAN_EVERY_SECOND;
    type Request = Completion;
    type Answer = bool;
    const MAX_REQUESTS: usize = 64;
    const MAX_WORK: usize = 2_000;

    fn work(completion: &Completion) -> usize {
        1 + completion
            .answer
            .as_ref()
            .map_or(2, |a| a.consumer_kinds.len())
    }

    async fn run(
        db: &mut PgConnection,
        completions: &[Completion],
    ) -> Result<Vec<bool>, sqlx::Error> {
        complete_all(db, completions).await
    }
}

/// `complete` for many sales in one statement: for each, whether it was completed here. Each
/// sale is completed exactly as `complete` completes it; the rows several of them write are
/// written once (a contract's last sale: the latest; a dedup key: the latest sale's time and
/// the last sale's id), and the hot rows are locked in one order (contracts, then partners,
/// by id).
async fn complete_all(
    db: &mut PgConnection,
    completions: &[Completion],
) -> Result<Vec<bool>, sqlx::Error> {
    let cs = completions;
    fn answer(c: &Completion) -> Option<&CompletionAnswer> {
        c.answer.as_ref()
    }
    // Each answered completion's consumer kinds, flattened: each names its request (1-based).
    let (mut kind_of, mut kinds) = (Vec::new(), Vec::new());
    for (index, c) in (1_i64..).zip(cs) {
        for kind in answer(c).map_or(&[][..], |a| &a.consumer_kinds[..]) {
            kind_of.push(index);
            kinds.push(*kind);
        }
    }
    // As `complete`, gated on each sale still being pending. The statements not read by the
    // last run after it, in order: the partners' entries (their balances move by the ledger's
    // trigger at the statement's end, in the entries' order), the dedup keys, the contracts'
    // last sales.
    let sold = sqlx::query_scalar!(
        r#"WITH u AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bool[], $4::int[], $5::text[],
                                  $6::int[], $7::timestamptz[], $8::uuid[]) WITH ORDINALITY
                 AS u (tenant_id, sale_id, answered, http_status, answer, delivery_ms, at, ledger_id, ord)),
         sold AS (
             UPDATE lead_sales s SET status = 'sold', reason = NULL, verdict = 'accepted',
                                     buyer_http_status = CASE WHEN u.answered THEN u.http_status ELSE s.buyer_http_status END,
                                     buyer_response = CASE WHEN u.answered THEN u.answer ELSE s.buyer_response END,
                                     delivery_ms = CASE WHEN u.answered THEN u.delivery_ms ELSE s.delivery_ms END,
                                     consumer_kinds = CASE WHEN u.answered
                                         THEN ARRAY(SELECT k.kind FROM unnest($9::bigint[], $10::text[]) WITH ORDINALITY AS k (req, kind, n)
                                                    WHERE k.req = u.ord ORDER BY k.n)
                                         ELSE s.consumer_kinds END,
                                     settled_at = u.at, pending_until = NULL
             FROM u
             WHERE s.tenant_id = u.tenant_id AND s.id = u.sale_id AND s.status = 'pending'
               AND (u.answered OR s.verdict = 'accepted')
             RETURNING u.ord, u.at, u.ledger_id, s.tenant_id, s.id, s.partner_id, s.offer_id, s.buyer_id,
                       s.contract_id, s.payout_cents, s.test, s.consumer_hashes, s.consumer_kinds),
         paid AS (
             INSERT INTO ledger_entries (tenant_id, id, account, partner_id, kind, amount_cents, sale_id, created_at)
             SELECT tenant_id, ledger_id, 'partner', partner_id, 'sale', payout_cents, id, at FROM sold
             WHERE NOT test AND payout_cents > 0
             ORDER BY tenant_id, partner_id, ord),
         keys AS (
             INSERT INTO dedup_keys (tenant_id, key_hash, buyer_id, offer_id, kind, sold_at, sale_id)
             SELECT DISTINCT ON (sold.tenant_id, k.hash, sold.buyer_id, sold.offer_id)
                    sold.tenant_id, k.hash, sold.buyer_id, sold.offer_id, k.kind,
                    max(sold.at) OVER (PARTITION BY sold.tenant_id, k.hash, sold.buyer_id, sold.offer_id),
                    sold.id
             FROM sold, unnest(sold.consumer_hashes, sold.consumer_kinds) AS k (hash, kind)
             WHERE NOT sold.test AND k.hash IS NOT NULL AND k.kind IS NOT NULL
             ORDER BY sold.tenant_id, k.hash, sold.buyer_id, sold.offer_id, sold.ord DESC
             ON CONFLICT (tenant_id, key_hash, buyer_id, offer_id) DO UPDATE
             SET sold_at = greatest(dedup_keys.sold_at, EXCLUDED.sold_at), sale_id = EXCLUDED.sale_id),
         stats AS (
             INSERT INTO contract_stats (tenant_id, contract_id, last_sold_at)
             SELECT tenant_id, contract_id, max(at) FROM sold WHERE NOT test
             GROUP BY tenant_id, contract_id ORDER BY tenant_id, contract_id
             ON CONFLICT (tenant_id, contract_id) DO UPDATE
             SET last_sold_at = greatest(contract_stats.last_sold_at, EXCLUDED.last_sold_at))
         SELECT coalesce(array_agg(ord), '{}') AS "sold!" FROM sold"#,
        &column(cs, |c| c.tenant_id),
        &column(cs, |c| c.sale_id),
        &column(cs, |c| c.answer.is_some()),
        &column(cs, |c| answer(c).and_then(|a| a.http_status)) as _,
        &column(cs, |c| answer(c).and_then(|a| a.answer.as_deref())) as _,
        &column(cs, |c| answer(c).and_then(|a| a.delivery_ms)) as _,
        &column(cs, |c| c.now),
        &column(cs, |c| c.ledger_id),
        &kind_of,
        &kinds as _,
    )
    .fetch_one(db)
    .await?;
    Ok(by_ordinal(cs.len(), sold.into_iter().map(|ord| (ord, ())))
        .into_iter()
        .map(|done| done.is_some())
        .collect())
}

/// The buyer rejected the lead or the delivery failed: the reservation is given back in full
/// (every cap counter it took, the buyer's money with a `release` ledger entry). `false` if
/// the sale was not pending any more.
pub async fn release(
    db: &PgPool,
    tenant_id: Uuid,
    sale_id: Uuid,
    status: SaleStatus,
    reason: &str,
    answer: &BuyerAnswer<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    // One statement, one round trip (migration 0016), as the reservation: the contract's hot
    // counter rows are held for the time the database needs, not for a round trip per step.
    sqlx::query_scalar!(
        r#"SELECT gavel_release($1, $2, $3, $4, $5, $6, $7, $8, $9) AS "released!""#,
        tenant_id,
        sale_id,
        status.as_str(),
        reason,
        answer.http_status.map(i32::from),
        answer.answer,
        answer.delivery_ms,
        now,
        Uuid::now_v7(),
    )
    .fetch_one(db)
    .await
}

/// A `posting_log` row for a post or direct post (also for refused ones).
#[allow(clippy::too_many_arguments)]
pub async fn insert_post_log(
    conn: &mut PgConnection,
    source: &PostSource,
    ping_id: Option<Uuid>,
    kind: PostKind,
    http_status: u16,
    result: &str,
    test: bool,
    latency_us: i64,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, ping_id, created_at,
                                  latency_us, http_status, result, test)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        source.tenant_id,
        Uuid::now_v7(),
        kind.as_str(),
        source.campaign_id,
        source.partner_id,
        source.offer_id,
        ping_id,
        now,
        latency_us,
        i32::from(http_status),
        result,
        test,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Settles every sale left pending past its deadline (a crash, a lost process, or writes the
/// database refused for longer than the settling task retried them): a sale whose buyer
/// accepted is completed, exactly as its settling task would have; one whose buyer declined or
/// failed is released with that verdict; one with no verdict (the delivery's answer was never
/// known) is released as `failed`, reason `interrupted`. Then answers the posts those sales
/// belonged to. Returns the settled sales' ids.
pub async fn release_interrupted(
    db: &PgPool,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    // Deadlines are on the database's clock, the same for every Gavel process.
    let stuck = sqlx::query!(
        r#"SELECT tenant_id, id, verdict AS "verdict: BuyerVerdict", reason, buyer_http_status,
                  buyer_response, delivery_ms
           FROM lead_sales WHERE status = 'pending' AND pending_until < now()"#,
    )
    .fetch_all(db)
    .await?;
    let mut settled = Vec::new();
    for sale in stuck {
        let (tenant_id, sale_id, reason) = (sale.tenant_id, sale.id, sale.reason);
        let answer = BuyerAnswer {
            http_status: sale.buyer_http_status.and_then(|s| u16::try_from(s).ok()),
            answer: sale.buyer_response.as_deref(),
            delivery_ms: sale.delivery_ms,
        };
        // One sale that cannot be settled must not hold up the others.
        let done = match sale.verdict.map(BuyerVerdict::settles_as) {
            Some(SaleStatus::Sold) => complete(db, tenant_id, sale_id, None, now).await,
            Some(status) => {
                let reason = reason.as_deref().unwrap_or(INTERRUPTED);
                release(db, tenant_id, sale_id, status, reason, &answer, now).await
            }
            None => {
                let failed = SaleStatus::Failed;
                release(db, tenant_id, sale_id, failed, INTERRUPTED, &answer, now).await
            }
        };
        match done {
            Ok(true) => settled.push(sale_id),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%tenant_id, %sale_id, %error, "cannot settle an interrupted sale")
            }
        }
    }
    answer_interrupted_posts(db).await?;
    Ok(settled)
}

/// A post whose request died after claiming its ping never stored an answer, so its retries
/// would wait in vain: once none of its sales is pending, its answer is built from them. Each
/// winning bid's slot answers its final status across its cascade's attempts (`sold` when one
/// sold, else the last attempt's status and reason), with `attempts` when it cascaded. A sale
/// returned since is answered `sold`, with its payout, as the post would have answered it.
async fn answer_interrupted_posts(db: &PgPool) -> Result<(), sqlx::Error> {
    let unanswered = sqlx::query!(
        "SELECT tenant_id, id FROM leads WHERE post_response IS NULL AND created_at < now() - interval '1 minute'",
    )
    .fetch_all(db)
    .await?;
    for lead in unanswered {
        // A slot is a winning bid of the ping (an attempt not yet marked with its slot, left
        // by a process that died in between, counts in no slot).
        sqlx::query!(
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
                              'bid_id', slot, 'status', status, 'reason', reason,
                              'payout', CASE WHEN status = 'sold' THEN (payout_cents / 100.0)::numeric(14, 2)
                                             ELSE 0.00 END,
                              'attempts', attempts))
                              ORDER BY price_cents DESC, slot), '[]') AS results
                   FROM (SELECT coalesce(replaces_bid_id, bid_id) AS slot,
                                max(price_cents) FILTER (WHERE attempt = 0) AS price_cents,
                                CASE WHEN bool_or(status = 'sold') THEN 'sold'
                                     ELSE (array_agg(status ORDER BY attempt DESC))[1] END AS status,
                                CASE WHEN NOT bool_or(status = 'sold')
                                     THEN (array_agg(reason ORDER BY attempt DESC))[1] END AS reason,
                                sum(payout_cents) FILTER (WHERE status = 'sold') AS payout_cents,
                                CASE WHEN count(*) > 1 THEN jsonb_agg(jsonb_build_object(
                                    'buyer_id', buyer_id, 'status', status,
                                    'price', (price_cents / 100.0)::numeric(14, 2),
                                    'payout', CASE WHEN status = 'sold' THEN (payout_cents / 100.0)::numeric(14, 2)
                                                   ELSE 0.00 END,
                                    'reason', CASE WHEN status <> 'sold' THEN reason END)
                                    ORDER BY attempt) END AS attempts
                         FROM (SELECT replaces_bid_id, bid_id, attempt, price_cents, payout_cents,
                                      buyer_id, reason,
                                      CASE WHEN status = 'returned' THEN 'sold' ELSE status END AS status
                               FROM lead_sales WHERE tenant_id = $1 AND lead_id = $2) sales
                         GROUP BY 1) slots
                   WHERE EXISTS (SELECT 1 FROM distribution_winners w
                                 WHERE w.tenant_id = $1 AND w.bid_id = slots.slot)) s
             WHERE p.tenant_id = $1 AND p.id = $2 AND p.post_response IS NULL
               AND NOT EXISTS (SELECT 1 FROM lead_sales
                               WHERE tenant_id = $1 AND lead_id = $2 AND status = 'pending')",
            lead.tenant_id,
            lead.id,
        )
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
    /// The contract's name (archived ones too), and its buyer's.
    pub contract_name: String,
    pub buyer_id: Uuid,
    pub buyer_name: String,
    /// The ping's campaign, partner and offer.
    pub campaign_id: Uuid,
    /// A campaign has no name of its own: its partner's and its offer's (`Partner → offer`).
    pub campaign_name: String,
    pub partner_id: Uuid,
    pub partner_name: String,
    pub offer_id: Uuid,
    pub offer_name: String,
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
    sqlx::query_as!(
        SaleRow,
        "SELECT s.id, s.lead_id, s.ping_id, s.bid_id, s.contract_id, c.name AS contract_name, s.buyer_id,
                b.name AS buyer_name, s.campaign_id, p.name || ' → ' || o.name AS \"campaign_name!\",
                s.partner_id, p.name AS partner_name, s.offer_id, o.name AS offer_name, s.sale_type,
                s.price_cents, s.payout_cents, s.status, s.reason, s.test, s.buyer_http_status, s.delivery_ms,
                s.created_at, s.settled_at
         FROM lead_sales s
         JOIN contracts c ON c.tenant_id = s.tenant_id AND c.id = s.contract_id
         JOIN buyers b ON b.tenant_id = s.tenant_id AND b.id = s.buyer_id
         JOIN partners p ON p.tenant_id = s.tenant_id AND p.id = s.partner_id
         JOIN offers o ON o.tenant_id = s.tenant_id AND o.id = s.offer_id
         WHERE s.tenant_id = $1
           AND ($2::timestamptz IS NULL OR s.created_at >= $2) AND ($3::timestamptz IS NULL OR s.created_at < $3)
           AND ($4::uuid IS NULL OR s.buyer_id = $4) AND ($5::uuid IS NULL OR s.contract_id = $5)
           AND ($6::text IS NULL OR s.status = $6) AND ($7::uuid IS NULL OR s.id < $7)
         ORDER BY s.id DESC LIMIT $8",
        tenant_id,
        filter.from,
        filter.to,
        filter.buyer_id,
        filter.contract_id,
        filter.status,
        filter.before,
        filter.limit,
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::compact;

    #[test]
    fn compacts_jsonb_text_outside_strings_only() {
        let jsonb = r#"{"a": 28.00, "b": ["x y", "q\" :z", "\\"], "c": {"d": null}}"#;
        assert_eq!(
            compact(jsonb.to_owned()),
            r#"{"a":28.00,"b":["x y","q\" :z","\\"],"c":{"d":null}}"#
        );
    }
}
