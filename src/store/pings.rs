//! The ping's database work: one read of the state its checks need, and one write of its
//! record. Each is a single statement, whatever the number of contracts, and is grouped with
//! the same statement of the pings running at the same time (`super::group`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::auction::{
    CapPeriod, CapUsage, ContractOutcome, DeclineReason, PeriodUsage, Prices, SaleType,
};
use crate::money::Money;
use crate::store::group::{GroupStatement, column};

/// The mutable state a ping's checks read, for every contract of the offer at once.
#[derive(Debug, Default)]
pub struct AuctionState {
    /// Usage of each contract's caps in their current periods (absent = nothing used).
    pub cap_usage: HashMap<Uuid, PeriodUsage>,
    pub balances: HashMap<Uuid, Money>,
    /// For each buyer, when it last bought this consumer (any of the ping's dedup hashes).
    pub buyer_bought_at: HashMap<Uuid, DateTime<Utc>>,
    /// When this consumer was last sold on the offer.
    pub offer_sold_at: Option<DateTime<Utc>>,
    /// When each contract last sold (absent = never).
    pub last_sale: HashMap<Uuid, DateTime<Utc>>,
    /// Usage of each capped buyer's caps in their current periods (absent = nothing used).
    pub buyer_cap_usage: HashMap<Uuid, PeriodUsage>,
    /// The suppression lists that hold the consumer (any of the ping's dedup hashes).
    pub suppressed_lists: Vec<Uuid>,
}

/// The start of the current period of each cap period a contract has, by `CapPeriod` index
/// (`None`: no cap of that period).
pub type PeriodStarts = [Option<DateTime<Utc>>; 5];

/// One contract whose state a ping reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContractKeys {
    pub id: Uuid,
    pub periods: PeriodStarts,
}

/// What one ping reads: its contracts' caps and last sales, its buyers' balances, and the
/// consumer's hashes.
pub struct StateRequest {
    pub tenant_id: Uuid,
    pub offer_id: Uuid,
    pub contracts: Vec<ContractKeys>,
    /// Buyers whose balance to read.
    pub buyer_ids: Vec<Uuid>,
    pub dedup_hashes: Vec<[u8; 32]>,
    /// Buyers with caps of their own, and their capped periods' starts (`id` is the buyer's).
    pub buyer_caps: Vec<ContractKeys>,
    /// The suppression lists to look the consumer's hashes up in (the offer's, with its
    /// contracts').
    pub suppression_lists: Arc<[Uuid]>,
}

impl StateRequest {
    /// Whether the consumer's history takes a statement: it is looked up by its hashes.
    pub fn reads_consumer(&self) -> bool {
        !self.dedup_hashes.is_empty()
    }
}

struct StateRow {
    request: i32,
    kind: String,
    id: Uuid,
    period: Option<String>,
    leads: Option<i64>,
    cents: Option<i64>,
    at: Option<DateTime<Utc>>,
    offer_id: Option<Uuid>,
}

/// The pings' state reads, grouped: one statement for every ping waiting to read.
pub struct ReadStates;

impl GroupStatement for ReadStates {
    const NAME: &'static str = "ping_state";
    type Request = StateRequest;
    type Answer = AuctionState;
    const MAX_REQUESTS: usize = 64;
    const MAX_WORK: usize = 8_000;

    fn work(request: &StateRequest) -> usize {
        request
            .contracts
            .iter()
            .map(|c| 1 + c.periods.iter().flatten().count())
            .sum::<usize>()
            + request.buyer_ids.len()
            + request
                .buyer_caps
                .iter()
                .map(|b| b.periods.iter().flatten().count())
                .sum::<usize>()
            + request.dedup_hashes.len() * request.suppression_lists.len()
    }

    async fn run(
        db: &mut PgConnection,
        requests: &[StateRequest],
    ) -> Result<Vec<AuctionState>, sqlx::Error> {
        read_states(db, requests).await
    }
}

/// Every request's keys of one kind, flattened: for each key, its request's index and tenant.
fn keys<'a, I: IntoIterator>(
    requests: &'a [StateRequest],
    each: impl Fn(&'a StateRequest) -> I,
) -> (Vec<i32>, Vec<Uuid>, Vec<I::Item>) {
    let (mut indexes, mut tenants, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (index, request) in requests.iter().enumerate() {
        for value in each(request) {
            indexes.push(index as i32);
            tenants.push(request.tenant_id);
            values.push(value);
        }
    }
    (indexes, tenants, values)
}

async fn read_states(
    db: &mut PgConnection,
    requests: &[StateRequest],
) -> Result<Vec<AuctionState>, sqlx::Error> {
    let (cap_requests, cap_tenants, caps) = keys(requests, |r| {
        r.contracts.iter().flat_map(|c| {
            CapPeriod::ALL
                .into_iter()
                .zip(c.periods)
                .filter_map(move |(period, start)| Some((c.id, period, start?)))
        })
    });
    let cap_contracts: Vec<Uuid> = caps.iter().map(|c| c.0).collect();
    let cap_periods: Vec<&str> = caps.iter().map(|c| c.1.as_str()).collect();
    let cap_starts: Vec<DateTime<Utc>> = caps.iter().map(|c| c.2).collect();
    let (buyer_requests, buyer_tenants, buyers) = keys(requests, |r| &r.buyer_ids);
    let (hash_requests, hash_tenants, hashes) =
        keys(requests, |r| r.dedup_hashes.iter().map(|h| &h[..]));
    let (contract_requests, contract_tenants, contracts) =
        keys(requests, |r| r.contracts.iter().map(|c| c.id));
    let (buyer_cap_requests, buyer_cap_tenants, buyer_caps) = keys(requests, |r| {
        r.buyer_caps.iter().flat_map(|b| {
            CapPeriod::ALL
                .into_iter()
                .zip(b.periods)
                .filter_map(move |(period, start)| Some((b.id, period, start?)))
        })
    });
    let buyer_cap_buyers: Vec<Uuid> = buyer_caps.iter().map(|c| c.0).collect();
    let buyer_cap_periods: Vec<&str> = buyer_caps.iter().map(|c| c.1.as_str()).collect();
    let buyer_cap_starts: Vec<DateTime<Utc>> = buyer_caps.iter().map(|c| c.2).collect();
    // Every (list, hash) pair of a request: a primary-key look-up each.
    let (listed_requests, listed_tenants, listed) = keys(requests, |r| {
        r.suppression_lists
            .iter()
            .flat_map(|list| r.dedup_hashes.iter().map(move |hash| (*list, &hash[..])))
    });
    let listed_lists: Vec<Uuid> = listed.iter().map(|l| l.0).collect();
    let listed_hashes: Vec<&[u8]> = listed.iter().map(|l| l.1).collect();
    let rows = sqlx::query_as!(
        StateRow,
        // Every part walks the requests' own keys (unnest) and looks each one up by its
        // primary key in a LATERAL subquery (OFFSET 0 keeps it one), so whatever plan
        // PostgreSQL caches for this statement stays a few index lookups per key, however
        // large the tenants' tables grow and however stale their statistics are.
        r#"SELECT w.request AS "request!", 'cap' AS "kind!", w.contract_id AS "id!", w.period AS "period?",
                c.leads::bigint AS "leads?", c.spend_cents AS "cents?", NULL::timestamptz AS "at?",
                NULL::uuid AS "offer_id?"
         FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[])
             AS w (request, tenant_id, contract_id, period, period_start)
         CROSS JOIN LATERAL (
             SELECT leads, spend_cents FROM cap_counters
             WHERE tenant_id = w.tenant_id AND contract_id = w.contract_id AND period = w.period
               AND period_start = w.period_start
             OFFSET 0) AS c
         UNION ALL
         SELECT w.request, 'balance', w.id, NULL, NULL, b.balance_cents, NULL, NULL
         FROM unnest($6::int[], $7::uuid[], $8::uuid[]) AS w (request, tenant_id, id)
         CROSS JOIN LATERAL (
             SELECT balance_cents FROM buyers WHERE tenant_id = w.tenant_id AND id = w.id OFFSET 0) AS b
         UNION ALL
         SELECT w.request, 'sold', d.buyer_id, NULL, NULL, NULL, d.sold_at, d.offer_id
         FROM unnest($9::int[], $10::uuid[], $11::bytea[]) AS w (request, tenant_id, hash)
         CROSS JOIN LATERAL (
             SELECT buyer_id, offer_id, sold_at FROM dedup_keys
             WHERE tenant_id = w.tenant_id AND key_hash = w.hash
             OFFSET 0) AS d
         UNION ALL
         SELECT w.request, 'last_sale', w.id, NULL, NULL, NULL, s.last_sold_at, NULL
         FROM unnest($12::int[], $13::uuid[], $14::uuid[]) AS w (request, tenant_id, id)
         CROSS JOIN LATERAL (
             SELECT last_sold_at FROM contract_stats
             WHERE tenant_id = w.tenant_id AND contract_id = w.id
             OFFSET 0) AS s
         UNION ALL
         SELECT w.request, 'buyer_cap', w.buyer_id, w.period, c.leads::bigint, c.spend_cents, NULL, NULL
         FROM unnest($15::int[], $16::uuid[], $17::uuid[], $18::text[], $19::timestamptz[])
             AS w (request, tenant_id, buyer_id, period, period_start)
         CROSS JOIN LATERAL (
             SELECT leads, spend_cents FROM buyer_cap_counters
             WHERE tenant_id = w.tenant_id AND buyer_id = w.buyer_id AND period = w.period
               AND period_start = w.period_start
             OFFSET 0) AS c
         UNION ALL
         SELECT DISTINCT w.request, 'suppressed', w.list_id, NULL, NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::uuid
         FROM unnest($20::int[], $21::uuid[], $22::uuid[], $23::bytea[]) AS w (request, tenant_id, list_id, hash)
         CROSS JOIN LATERAL (
             SELECT 1 FROM suppression_entries
             WHERE tenant_id = w.tenant_id AND list_id = w.list_id AND hash = w.hash
             OFFSET 0) AS s"#,
        &cap_requests,
        &cap_tenants,
        &cap_contracts,
        // Borrowed elements, which sqlx's check of the binds does not know.
        &cap_periods as _,
        &cap_starts,
        &buyer_requests,
        &buyer_tenants,
        &buyers as _,
        &hash_requests,
        &hash_tenants,
        &hashes as _,
        &contract_requests,
        &contract_tenants,
        &contracts,
        &buyer_cap_requests,
        &buyer_cap_tenants,
        &buyer_cap_buyers,
        &buyer_cap_periods as _,
        &buyer_cap_starts,
        &listed_requests,
        &listed_tenants,
        &listed_lists,
        &listed_hashes as _,
    )
    .fetch_all(&mut *db)
    .await?;

    let mut states: Vec<AuctionState> = requests.iter().map(|_| AuctionState::default()).collect();
    for row in rows {
        let Some(index) = usize::try_from(row.request)
            .ok()
            .filter(|&i| i < requests.len())
        else {
            continue;
        };
        let (request, state) = (&requests[index], &mut states[index]);
        match row.kind.as_str() {
            kind @ ("cap" | "buyer_cap") => {
                let Some(period) = row
                    .period
                    .as_deref()
                    .and_then(|p| p.parse::<CapPeriod>().ok())
                else {
                    continue;
                };
                let usage = CapUsage {
                    leads: row.leads.unwrap_or(0),
                    spend: Money::from_cents(row.cents.unwrap_or(0)),
                };
                let usages = if kind == "cap" {
                    &mut state.cap_usage
                } else {
                    &mut state.buyer_cap_usage
                };
                usages.entry(row.id).or_default().set(period, usage);
            }
            "balance" => {
                state
                    .balances
                    .insert(row.id, Money::from_cents(row.cents.unwrap_or(0)));
            }
            // One sale of this consumer (any buyer, any offer): the latest counts, for each
            // buyer and for the ping's offer.
            "sold" => {
                let Some(at) = row.at else { continue };
                let bought = state.buyer_bought_at.entry(row.id).or_insert(at);
                *bought = (*bought).max(at);
                if row.offer_id == Some(request.offer_id) {
                    state.offer_sold_at = Some(state.offer_sold_at.map_or(at, |s| s.max(at)));
                }
            }
            "last_sale" => {
                if let Some(at) = row.at {
                    state.last_sale.insert(row.id, at);
                }
            }
            // One row per list and ping (the statement's DISTINCT).
            "suppressed" => state.suppressed_lists.push(row.id),
            _ => {}
        }
    }
    Ok(states)
}

/// The ping's own record: its `posting_log` row.
#[derive(Clone)]
pub struct PingRecord {
    pub tenant_id: Uuid,
    pub ping_id: Uuid,
    pub campaign_id: Uuid,
    pub partner_id: Uuid,
    pub offer_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub latency_us: i64,
    pub http_status: u16,
    /// `bids`, `no_bids`, `duplicate`, or an error code.
    pub result: &'static str,
    pub test: bool,
    /// The validated, PII-free lead (absent for a refused ping: it may hold anything).
    pub lead: Option<Arc<Map<String, Value>>>,
    pub min_payout: Option<Money>,
    pub sale_type: Option<SaleType>,
    pub payout: Option<Money>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The partner's own tracking ids, as the ping sent them (`sub_ids`).
    pub sub_ids: Option<Arc<Map<String, Value>>>,
    /// The routing it ran with ([`crate::auction::OfferRules::routing_label`]); `None` for the
    /// defaults (auction/price).
    pub routing: Option<&'static str>,
}

/// One contract's outcome: a row of `distribution_winners` for a winner, else its element of
/// the ping's `distribution_declines` row (both seen as a row of `lead_distribution`).
#[derive(Debug)]
pub struct DistributionRow {
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    /// What it bid (nothing when it declined before pricing).
    pub bid: Prices,
    pub rtb_ms: Option<i32>,
    pub rtb_ref: Option<String>,
    /// A winner's sale; `None` for every other contract, which has a reason.
    pub win: Option<Win>,
    pub reason: Option<DeclineReason>,
    pub detail: Option<String>,
    /// The buyer's own answer to the RTB call, kept for the operator when it declined the
    /// contract (see [`crate::evaluate::RtbAnswer`]); `None` otherwise.
    pub rtb_answer: Option<crate::evaluate::RtbAnswer>,
    /// Its place among the ping's runner-ups (1 = the first offered a failed winner's slot
    /// at the post); `None` for a contract that is not one.
    pub runner_up_rank: Option<i16>,
}

/// What a winning contract sold on the ping, and the bid id its post names.
#[derive(Debug, Clone, Copy)]
pub struct Win {
    pub bid_id: Uuid,
    pub sale_type: SaleType,
    pub price: Money,
    pub payout: Money,
}

impl DistributionRow {
    pub fn outcome(&self) -> ContractOutcome {
        match (self.win, self.reason) {
            (Some(_), _) => ContractOutcome::Won,
            (None, Some(DeclineReason::Outbid)) => ContractOutcome::Outbid,
            (None, _) => ContractOutcome::Declined,
        }
    }
}

/// A ping to record with its contracts' outcomes.
pub struct PingWrite {
    pub ping: PingRecord,
    pub rows: Vec<DistributionRow>,
    /// Only the declines of a ping recorded already, written behind its answer
    /// ([`PingWrite::split_declines`]): no `posting_log` row.
    pub declines_only: bool,
}

/// A ping that declined more contracts than this has its declines written behind its answer
/// (`ping_declines`). Their row costs the answer its insert and a microsecond or so a contract,
/// in PostgreSQL and in the encoding: 0.1–0.2 ms of a ping of 30 RTB contracts' answer, half
/// the record of an offer of hundreds (PostgreSQL's time for the record: 0.35 ms with 300
/// contracts, 0.17 ms with 3); a few declines are written with the ping, which spares a
/// second statement (docs/durability.md).
pub const DECLINES_WRITTEN_WITH_THE_PING: usize = 8;

impl PingWrite {
    pub fn new(ping: PingRecord, rows: Vec<DistributionRow>) -> Self {
        Self {
            ping,
            rows,
            declines_only: false,
        }
    }

    /// Takes this ping's declines out of its write, as a write of their own, when there are
    /// more than [`DECLINES_WRITTEN_WITH_THE_PING`]. The ping's row and its winners stay: what
    /// its post looks up (a cascade's read of the runner-ups, among the declines, comes after
    /// a winner's delivery failed, and waits for them in this process).
    pub fn split_declines(&mut self) -> Option<PingWrite> {
        let declined = self.rows.iter().filter(|r| r.win.is_none()).count();
        if declined <= DECLINES_WRITTEN_WITH_THE_PING {
            return None;
        }
        let (winners, declines) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|r| r.win.is_some());
        self.rows = winners;
        Some(PingWrite {
            ping: self.ping.clone(),
            rows: declines,
            declines_only: true,
        })
    }
}

fn cents(money: Option<Money>) -> Option<i64> {
    money.map(Money::cents)
}

/// A group statement writing pings' records with [`record_pings`].
macro_rules! record_statement {
    ($(#[$doc:meta])* $name:ident = $label:literal, linger $linger:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl GroupStatement for $name {
            const NAME: &'static str = $label;
            type Request = PingWrite;
            type Answer = ();
            const MAX_REQUESTS: usize = 64;
            const MAX_WORK: usize = 4_000;
            const LINGER: Option<std::time::Duration> = $linger;

            fn work(write: &PingWrite) -> usize {
                1 + write.rows.len()
            }

            async fn run(
                db: &mut PgConnection,
                writes: &[PingWrite],
            ) -> Result<Vec<()>, sqlx::Error> {
                record_pings(db, writes).await?;
                Ok(vec![(); writes.len()])
            }
        }
    };
}

record_statement! {
    /// The pings' records, grouped: one statement (atomic, one round trip, one commit) for
    /// every ping waiting to be recorded, whatever their tenants and numbers of contracts.
    RecordPings = "ping_record", linger None
}

record_statement! {
    /// The declines written behind their pings' answers ([`PingWrite::split_declines`]),
    /// grouped the same way, apart from the records the pings wait for. Nobody waits for them
    /// (but a ping's view, or a cascade, in the moment after the ping): their statement waits
    /// 20 ms for more, so that one statement serves the declines of several pings, written
    /// apart from any ping's answer (on two cores, at once after it, they held the next one).
    RecordDeclines = "ping_declines", linger Some(std::time::Duration::from_millis(20))
}

/// Writes pings and all their contracts' outcomes in one statement: each ping's row in
/// `posting_log`, a row per winner in `distribution_winners`, and every other contract's outcome
/// as one element of the arrays of the ping's single `distribution_declines` row.
async fn record_pings(db: &mut PgConnection, all: &[PingWrite]) -> Result<(), sqlx::Error> {
    // The pings' own rows: not again for a ping's declines written behind it.
    let writes: Vec<&PingWrite> = all.iter().filter(|w| !w.declines_only).collect();
    let mut winners: Vec<(&PingRecord, &DistributionRow, Win)> = Vec::new();
    let mut declines: Vec<&DistributionRow> = Vec::new();
    // Each ping with declines gets the slice [first, last] (1-based) of the declines' arrays,
    // and whether any of them kept the buyer's answer (else its answers' arrays stay NULL).
    let mut declines_of: Vec<(&PingRecord, i32, i32, bool)> = Vec::new();
    // Which of those pings have runner-ups (else their ranks' array stays NULL).
    let mut ranked_of: Vec<bool> = Vec::new();
    for write in all {
        let first = declines.len() as i32 + 1;
        let (mut answered, mut ranked) = (false, false);
        for row in &write.rows {
            match row.win {
                Some(win) => winners.push((&write.ping, row, win)),
                None => {
                    answered |= row.rtb_answer.is_some();
                    ranked |= row.runner_up_rank.is_some();
                    declines.push(row);
                }
            }
        }
        let last = declines.len() as i32;
        if last >= first {
            declines_of.push((&write.ping, first, last, answered));
            ranked_of.push(ranked);
        }
    }
    // Most pings keep no answer: then these two arrays are empty and bind nothing.
    let any_answer = declines_of.iter().any(|d| d.3);
    let answer_statuses: Vec<Option<i32>> = if any_answer {
        column(&declines, |r| {
            r.rtb_answer.as_ref().map(|a| i32::from(a.http_status))
        })
    } else {
        Vec::new()
    };
    let answer_bodies: Vec<Option<&str>> = if any_answer {
        column(&declines, |r| {
            r.rtb_answer.as_ref().and_then(|a| a.body.as_deref())
        })
    } else {
        Vec::new()
    };
    // Pings with no runner-ups bind nothing either.
    let ranks: Vec<Option<i16>> = if ranked_of.contains(&true) {
        column(&declines, |r| r.runner_up_rank)
    } else {
        Vec::new()
    };
    // `winners` is not referenced: PostgreSQL runs a data-modifying WITH regardless.
    // sqlx's check of the binds knows no arrays of nullable or borrowed values: those are
    // `as _`, typed by their casts in the statement.
    sqlx::query!(
        "WITH ping AS (
             INSERT INTO posting_log (tenant_id, id, kind, campaign_id, partner_id, offer_id, created_at,
                                      latency_us, http_status, result, test, lead, min_payout_cents,
                                      sale_type, payout_cents, expires_at, sub_ids, routing)
             SELECT tenant_id, id, 'ping', campaign_id, partner_id, offer_id, created_at, latency_us,
                    http_status, result, test, lead, min_payout_cents, sale_type, payout_cents, expires_at,
                    sub_ids, routing
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::timestamptz[],
                         $7::bigint[], $8::int[], $9::text[], $10::bool[], $11::jsonb[], $12::bigint[],
                         $13::text[], $14::bigint[], $15::timestamptz[], $42::jsonb[], $46::text[])
                 AS p (tenant_id, id, campaign_id, partner_id, offer_id, created_at, latency_us,
                       http_status, result, test, lead, min_payout_cents, sale_type, payout_cents,
                       expires_at, sub_ids, routing)),
         winners AS (
             INSERT INTO distribution_winners (tenant_id, ping_id, created_at, contract_id, buyer_id,
                                               exclusive_bid_cents, shared_bid_cents, rtb_ms, rtb_ref, bid_id,
                                               sale_type, price_cents, payout_cents)
             SELECT * FROM unnest($16::uuid[], $17::uuid[], $18::timestamptz[], $19::uuid[], $20::uuid[],
                                  $21::bigint[], $22::bigint[], $23::int[], $24::text[], $25::uuid[],
                                  $26::text[], $27::bigint[], $28::bigint[]))
         INSERT INTO distribution_declines (tenant_id, ping_id, created_at, contract_ids, buyer_ids, reasons,
                                            details, exclusive_bids_cents, shared_bids_cents, rtb_ms, rtb_refs,
                                            rtb_http_statuses, rtb_responses, runner_up_ranks)
         -- A slice copies its array: a lone ping's declines (the whole arrays) are taken as bound.
         SELECT s.tenant_id, s.ping_id, s.created_at,
                CASE WHEN s.whole THEN $34::uuid[] ELSE ($34::uuid[])[s.first:s.last] END,
                CASE WHEN s.whole THEN $35::uuid[] ELSE ($35::uuid[])[s.first:s.last] END,
                (CASE WHEN s.whole THEN $36::text[] ELSE ($36::text[])[s.first:s.last] END)::decline_reason[],
                CASE WHEN s.whole THEN $37::text[] ELSE ($37::text[])[s.first:s.last] END,
                CASE WHEN s.whole THEN $38::bigint[] ELSE ($38::bigint[])[s.first:s.last] END,
                CASE WHEN s.whole THEN $39::bigint[] ELSE ($39::bigint[])[s.first:s.last] END,
                CASE WHEN s.whole THEN $40::int[] ELSE ($40::int[])[s.first:s.last] END,
                CASE WHEN s.whole THEN $41::text[] ELSE ($41::text[])[s.first:s.last] END,
                CASE WHEN s.answered THEN CASE WHEN s.whole THEN $44::int[] ELSE ($44::int[])[s.first:s.last] END END,
                CASE WHEN s.answered THEN CASE WHEN s.whole THEN $45::text[] ELSE ($45::text[])[s.first:s.last] END END,
                CASE WHEN s.ranked THEN CASE WHEN s.whole THEN $48::int2[] ELSE ($48::int2[])[s.first:s.last] END END
         FROM (SELECT *, first = 1 AND last = cardinality($34::uuid[]) AS whole
               FROM unnest($29::uuid[], $30::uuid[], $31::timestamptz[], $32::int[], $33::int[], $43::bool[],
                           $47::bool[])
                   AS s (tenant_id, ping_id, created_at, first, last, answered, ranked)) AS s",
        &column(&writes, |w| w.ping.tenant_id),
        &column(&writes, |w| w.ping.ping_id),
        &column(&writes, |w| w.ping.campaign_id),
        &column(&writes, |w| w.ping.partner_id),
        &column(&writes, |w| w.ping.offer_id),
        &column(&writes, |w| w.ping.created_at),
        &column(&writes, |w| w.ping.latency_us),
        &column(&writes, |w| i32::from(w.ping.http_status)),
        &column(&writes, |w| w.ping.result) as _,
        &column(&writes, |w| w.ping.test),
        &column(&writes, |w| w.ping.lead.as_deref().map(sqlx::types::Json)) as _,
        &column(&writes, |w| cents(w.ping.min_payout)) as _,
        &column(&writes, |w| w.ping.sale_type.map(SaleType::as_str)) as _,
        &column(&writes, |w| cents(w.ping.payout)) as _,
        &column(&writes, |w| w.ping.expires_at) as _,
        &column(&winners, |(p, _, _)| p.tenant_id),
        &column(&winners, |(p, _, _)| p.ping_id),
        &column(&winners, |(p, _, _)| p.created_at),
        &column(&winners, |(_, r, _)| r.contract_id),
        &column(&winners, |(_, r, _)| r.buyer_id),
        &column(&winners, |(_, r, _)| cents(r.bid.exclusive)) as _,
        &column(&winners, |(_, r, _)| cents(r.bid.shared)) as _,
        &column(&winners, |(_, r, _)| r.rtb_ms) as _,
        &column(&winners, |(_, r, _)| r.rtb_ref.as_deref()) as _,
        &column(&winners, |(_, _, w)| w.bid_id) as _,
        &column(&winners, |(_, _, w)| w.sale_type.as_str()) as _,
        &column(&winners, |(_, _, w)| w.price.cents()) as _,
        &column(&winners, |(_, _, w)| Some(w.payout.cents())) as _,
        &column(&declines_of, |(p, _, _, _)| p.tenant_id),
        &column(&declines_of, |(p, _, _, _)| p.ping_id),
        &column(&declines_of, |(p, _, _, _)| p.created_at),
        &column(&declines_of, |&(_, first, _, _)| first),
        &column(&declines_of, |&(_, _, last, _)| last),
        &column(&declines, |r| r.contract_id),
        &column(&declines, |r| r.buyer_id),
        &column(&declines, |r| r.reason.map(DeclineReason::as_str)) as _,
        &column(&declines, |r| r.detail.as_deref()) as _,
        &column(&declines, |r| cents(r.bid.exclusive)) as _,
        &column(&declines, |r| cents(r.bid.shared)) as _,
        &column(&declines, |r| r.rtb_ms) as _,
        &column(&declines, |r| r.rtb_ref.as_deref()) as _,
        &column(&writes, |w| w.ping.sub_ids.as_deref().map(sqlx::types::Json)) as _,
        &column(&declines_of, |&(_, _, _, answered)| answered),
        &answer_statuses as _,
        &answer_bodies as _,
        &column(&writes, |w| w.ping.routing) as _,
        &ranked_of,
        &ranks as _,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A recorded ping, as the admin view shows it.
pub struct StoredPing {
    pub id: Uuid,
    pub result: String,
    pub sale_type: Option<String>,
    pub payout_cents: Option<i64>,
    pub test: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub latency_us: i64,
    /// The lead its post stored, and when the post claimed the ping.
    pub lead_id: Option<Uuid>,
    pub posted_at: Option<DateTime<Utc>>,
    pub sub_ids: Option<sqlx::types::Json<Map<String, Value>>>,
    /// The routing it ran with; `None`: auction/price.
    pub routing: Option<String>,
    pub partner_id: Uuid,
    pub partner_name: Option<String>,
    pub campaign_id: Uuid,
    /// A campaign has no name of its own: its partner's and its offer's (`Partner → offer`).
    pub campaign_name: Option<String>,
    pub offer_id: Uuid,
    pub offer_name: Option<String>,
    /// The offer's `fields` as they are now (which of them are PII), to tell a `filtered`
    /// decline in words.
    pub offer_fields: Option<Value>,
    /// The ping's recorded, PII-free lead (absent for a refused ping).
    pub lead: Option<sqlx::types::Json<Map<String, Value>>>,
}

/// One contract's recorded outcome.
pub struct StoredDistribution {
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub outcome: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub exclusive_bid_cents: Option<i64>,
    pub shared_bid_cents: Option<i64>,
    pub rtb_ms: Option<i32>,
    pub bid_id: Option<Uuid>,
    pub sale_type: Option<String>,
    pub price_cents: Option<i64>,
    pub payout_cents: Option<i64>,
    pub sale_id: Option<Uuid>,
    pub sale_status: Option<String>,
    pub sale_reason: Option<String>,
    /// An RTB decline's kept answer: the buyer's HTTP status and its text.
    pub rtb_http_status: Option<i32>,
    pub rtb_response: Option<String>,
    /// The sale's delivery: the buyer's HTTP status, its answer and the time it took.
    pub buyer_http_status: Option<i32>,
    pub buyer_response: Option<String>,
    pub delivery_ms: Option<i32>,
    /// The sale's own price and payout (a runner-up's attempt has no bid of the ping's).
    pub sale_price_cents: Option<i64>,
    pub sale_payout_cents: Option<i64>,
    /// The names of the contract and its buyer (archived ones too).
    pub contract_name: Option<String>,
    pub buyer_name: Option<String>,
    /// A `filtered` decline's contract's filters as they are now (null for any other row),
    /// and when the contract last changed.
    pub filters: Option<Value>,
    pub contract_updated_at: Option<DateTime<Utc>>,
}

/// One sale of a ping's post: a winner's, or a cascade attempt's.
pub struct StoredAttempt {
    pub sale_id: Uuid,
    pub bid_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub replaces_bid_id: Option<Uuid>,
    pub attempt: i16,
    pub status: String,
    pub reason: Option<String>,
    pub price_cents: i64,
    pub payout_cents: i64,
    pub buyer_http_status: Option<i32>,
    pub buyer_response: Option<String>,
    pub delivery_ms: Option<i32>,
    pub contract_name: String,
    pub buyer_name: String,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// Every sale of the post of `ping_id`, in the order they were made (a sale's id is
/// time-ordered): the winners' own, then the cascade's attempts.
pub async fn post_sales(
    db: &PgPool,
    tenant_id: Uuid,
    ping_id: Uuid,
) -> Result<Vec<StoredAttempt>, sqlx::Error> {
    sqlx::query_as!(
        StoredAttempt,
        "SELECT s.id AS sale_id, s.bid_id, s.contract_id, s.buyer_id, s.replaces_bid_id, s.attempt, s.status,
                s.reason, s.price_cents, s.payout_cents, s.buyer_http_status, s.buyer_response, s.delivery_ms,
                c.name AS contract_name, b.name AS buyer_name, s.created_at, s.settled_at
         FROM leads l JOIN lead_sales s ON s.tenant_id = l.tenant_id AND s.lead_id = l.id
         JOIN contracts c ON c.tenant_id = s.tenant_id AND c.id = s.contract_id
         JOIN buyers b ON b.tenant_id = s.tenant_id AND b.id = s.buyer_id
         WHERE l.tenant_id = $1 AND l.ping_id = $2
         ORDER BY s.id",
        tenant_id,
        ping_id,
    )
    .fetch_all(db)
    .await
}

/// A buyer's return of a sale (docs/returns.md), as the explain and the lead view show it.
pub struct StoredReturn {
    pub sale_id: Uuid,
    pub id: Uuid,
    pub status: String,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub price_cents: i64,
    pub payout_reversed_cents: Option<i64>,
}

/// Every return of the sales of the post of `ping_id`, oldest first: one statement for the
/// whole ping, each sale's returns found by `returns_sale`.
pub async fn ping_returns(
    db: &PgPool,
    tenant_id: Uuid,
    ping_id: Uuid,
) -> Result<Vec<StoredReturn>, sqlx::Error> {
    sqlx::query_as!(
        StoredReturn,
        "SELECT r.sale_id, r.id, r.status, r.reason, r.requested_at, r.decided_at, r.price_cents,
                r.payout_reversed_cents
         FROM leads l
         JOIN lead_sales s ON s.tenant_id = l.tenant_id AND s.lead_id = l.id
         JOIN returns r ON r.tenant_id = s.tenant_id AND r.sale_id = s.id
         WHERE l.tenant_id = $1 AND l.ping_id = $2
         ORDER BY r.requested_at, r.id",
        tenant_id,
        ping_id,
    )
    .fetch_all(db)
    .await
}

/// A ping of `tenant_id` with every contract's outcome (winners first), or `None`; with the
/// names of its partner, campaign, offer, contracts and buyers, archived ones included.
pub async fn find_ping(
    db: &PgPool,
    tenant_id: Uuid,
    ping_id: Uuid,
) -> Result<Option<(StoredPing, Vec<StoredDistribution>)>, sqlx::Error> {
    let ping = sqlx::query_as!(
        StoredPing,
        "SELECT p.id, p.result, p.sale_type, p.payout_cents, p.test, p.created_at, p.expires_at,
                p.latency_us, p.lead_id, p.post_claimed_at AS posted_at, p.sub_ids AS \"sub_ids: sqlx::types::Json<Map<String, Value>>\", p.routing,
                p.partner_id, pa.name AS \"partner_name?\", p.campaign_id, p.offer_id,
                o.name AS \"offer_name?\", pa.name || ' → ' || o.name AS \"campaign_name?\", o.fields AS \"offer_fields?\",
                p.lead AS \"lead: sqlx::types::Json<Map<String, Value>>\"
         FROM posting_log p
         LEFT JOIN partners pa ON pa.tenant_id = p.tenant_id AND pa.id = p.partner_id
         LEFT JOIN offers o ON o.tenant_id = p.tenant_id AND o.id = p.offer_id
         WHERE p.tenant_id = $1 AND p.id = $2 AND p.kind = 'ping'",
        tenant_id,
        ping_id,
    )
    .fetch_optional(db)
    .await?;
    let Some(ping) = ping else { return Ok(None) };
    // A view's columns are all nullable to sqlx: these three never are.
    let contracts = sqlx::query_as!(
        StoredDistribution,
        r#"WITH answers AS (
             SELECT a.contract_id, a.rtb_http_status, a.rtb_response
             FROM distribution_declines x,
                  unnest(x.contract_ids, x.rtb_http_statuses, x.rtb_responses)
                      AS a (contract_id, rtb_http_status, rtb_response)
             WHERE x.tenant_id = $1 AND x.ping_id = $2 AND x.rtb_http_statuses IS NOT NULL),
         sales AS (
             SELECT s.id, s.contract_id, s.status, s.reason, s.buyer_http_status, s.buyer_response, s.delivery_ms,
                    s.price_cents, s.payout_cents
             FROM leads l JOIN lead_sales s ON s.tenant_id = l.tenant_id AND s.lead_id = l.id
             WHERE l.tenant_id = $1 AND l.ping_id = $2)
         SELECT d.contract_id AS "contract_id!", d.buyer_id AS "buyer_id!", d.outcome AS "outcome!",
                d.reason, d.detail, d.exclusive_bid_cents, d.shared_bid_cents,
                d.rtb_ms, d.bid_id, d.sale_type, d.price_cents, d.payout_cents,
                s.id AS "sale_id?", s.status AS "sale_status?", s.reason AS "sale_reason?",
                a.rtb_http_status AS "rtb_http_status?", a.rtb_response AS "rtb_response?",
                s.buyer_http_status AS "buyer_http_status?",
                s.buyer_response AS "buyer_response?", s.delivery_ms AS "delivery_ms?",
                s.price_cents AS "sale_price_cents?", s.payout_cents AS "sale_payout_cents?",
                c.name AS "contract_name?", b.name AS "buyer_name?",
                CASE WHEN d.reason = 'filtered' THEN c.filters END AS "filters?",
                c.updated_at AS "contract_updated_at?"
         FROM lead_distribution d
         -- A contract has at most one sale in a post: a winner's own, or a runner-up's attempt.
         LEFT JOIN sales s ON s.contract_id = d.contract_id
         LEFT JOIN answers a ON a.contract_id = d.contract_id
         -- Names (archived contracts and buyers included: history stays named).
         LEFT JOIN contracts c ON c.tenant_id = $1 AND c.id = d.contract_id
         LEFT JOIN buyers b ON b.tenant_id = $1 AND b.id = d.buyer_id
         WHERE d.tenant_id = $1 AND d.ping_id = $2
         ORDER BY d.outcome = 'won' DESC, d.price_cents DESC NULLS LAST, d.outcome = 'outbid' DESC, d.contract_id"#,
        tenant_id,
        ping_id,
    )
    .fetch_all(db)
    .await?;
    Ok(Some((ping, contracts)))
}
