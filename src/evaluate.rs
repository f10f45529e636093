//! The auction's fan-out (SPEC §5.1 steps 3–5): one batched read of the state, every
//! contract's own checks, a task per buyer to ask for a real-time bid, then selection.
//!
//! Every contract ends in a bid or exactly one decline reason. A contract's task never waits
//! on another's: a slow RTB buyer costs only its own timeout.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::auction::{
    Bid, BuyerCapRoom, ContractState, Decline, DeclineReason, Evaluation, PingContext, Precheck,
    PreparedLead, Prices, Pricing, RtbCandidate, SaleType, Selection, Status, Strategy,
    effective_floor, period_start, rtb_calls, seed_of, select_seeded,
};
use crate::buyers::Exchange;
use crate::buyers::breaker::{self, BreakerSettings, Endpoint};
use crate::buyers::rtb::{self, BidRequest};
use crate::integration::CallNames;
use crate::money::Money;
use crate::store::pings::{ContractKeys, DistributionRow, PeriodStarts, StateRequest, Win};
use crate::store::snapshot::{CampaignContext, Contract, TenantConfig};
use crate::store::state_cache::{KeptState, PingState, StateReader};

/// A ping that passed validation, ready for its auction.
pub struct AuctionInput {
    pub ping_id: Uuid,
    pub lead: Arc<Map<String, Value>>,
    pub prepared: Arc<PreparedLead<'static>>,
    pub dedup_hashes: Vec<[u8; 32]>,
    pub min_payout: Option<Money>,
    pub test: bool,
    /// The partner's own tracking ids, as the ping sent them (`sub_ids`).
    pub sub_ids: Option<Arc<Map<String, Value>>>,
    pub now: DateTime<Utc>,
    /// The most bid requests the ping makes (`max_rtb_calls_per_ping`).
    pub max_rtb_calls: usize,
    /// A bid request's timeout when its contract names none (`rtb_timeout_ms`).
    pub rtb_timeout_ms: u32,
    /// When the ping must answer (`max_wait_ms` from its arrival): no bid request outlasts it.
    pub deadline: Option<tokio::time::Instant>,
}

/// How the auction ended.
pub enum AuctionOutcome {
    /// The offer-level dedup found this consumer: no auction ran.
    Duplicate,
    /// The auction ran: `selection` has the winners (possibly none) and `rows` every
    /// contract's record.
    Ran {
        selection: Selection,
        rows: Vec<DistributionRow>,
        bid_ids: HashMap<Uuid, Uuid>,
    },
}

/// What one contract's task ends with.
pub struct ContractResult {
    pub index: usize,
    pub result: Result<Prices, Decline>,
    pub rtb_ms: Option<i32>,
    pub rtb_ref: Option<String>,
    /// The buyer's answer, kept when it declined the contract: see [`RtbAnswer`].
    pub rtb_answer: Option<RtbAnswer>,
}

/// An RTB buyer's own answer, kept for the operator (`GET /v1/admin/pings/{id}`) when the
/// contract ended `rtb_invalid` or `rtb_no_bid`, or `rtb_error` with an HTTP status: its
/// status, and its body as text (at most [`MAX_KEPT_ANSWER_BYTES`], cleaned by
/// [`crate::buyers::clean_text`]; `None` when empty or not read, e.g. too large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtbAnswer {
    pub http_status: u16,
    pub body: Option<String>,
}

/// The most of a buyer's answer kept, as a delivery's answer is.
pub const MAX_KEPT_ANSWER_BYTES: usize = 4096;

/// What every contract's task reads about the ping.
pub struct SharedPing {
    pub ping_id: Uuid,
    pub offer_name: String,
    pub lead: Arc<Map<String, Value>>,
    pub prepared: Arc<PreparedLead<'static>>,
    pub test: bool,
    /// The partner's own tracking ids (`sub_ids`), when the ping sent them: string values.
    pub sub_ids: Option<Arc<Map<String, Value>>>,
    pub now: DateTime<Utc>,
    pub tenant_tz: chrono_tz::Tz,
    pub sale_types: &'static [SaleType],
    pub http: crate::buyers::Outbound,
    /// The most bid requests this ping makes (`max_rtb_calls_per_ping`).
    pub max_rtb_calls: usize,
    /// A bid request's timeout when its contract names none (`rtb_timeout_ms`).
    pub rtb_timeout_ms: u32,
    /// When the ping must answer (`max_wait_ms`): each bid request is cut at the time left.
    pub deadline: Option<tokio::time::Instant>,
    /// The ping's campaign, for the names a `request` template reads (none in benches).
    pub campaign: Option<CampaignContext>,
}

/// Evaluates every contract (`checked[i]`, its checks that read no state and its state,
/// belongs to `contracts[i]`) and returns their results
/// in the contracts' order. When more contracts ask for a bid than the ping makes requests
/// (`shared.max_rtb_calls`), those ranked first by [`rtb_calls`] are called (`last_sale`: each
/// contract's last sale) and the others are declined `rtb_limit`.
///
/// The local checks are pure CPU work of about 0.15 µs a contract, so they run right here;
/// every contract that must ask its buyer for a bid gets its own task in a `JoinSet`, so the
/// calls run in parallel and each waits only for its own buyer. (A task for every contract
/// measured 348 µs for 300 fixed-price contracts against 42 µs inline: see BENCHMARKS.md.)
pub async fn fan_out(
    contracts: &[Arc<Contract>],
    checked: Vec<(Precheck, ContractState)>,
    shared: Arc<SharedPing>,
    last_sale: &HashMap<Uuid, DateTime<Utc>>,
) -> Vec<ContractResult> {
    fan_out_with(contracts, checked, shared, last_sale, EarlyCalls::default()).await
}

/// [`fan_out`], with the calls `early` already made: a contract whose call is among them and
/// still asks for one takes that call's result; one the state now declines has its call
/// aborted and ends with the state's reason.
async fn fan_out_with(
    contracts: &[Arc<Contract>],
    checked: Vec<(Precheck, ContractState)>,
    shared: Arc<SharedPing>,
    last_sale: &HashMap<Uuid, DateTime<Utc>>,
    early: EarlyCalls,
) -> Vec<ContractResult> {
    let context = shared.context();
    let EarlyCalls {
        mut calls,
        running: mut early,
        mut call_index,
    } = early;
    let mut results: Vec<Option<ContractResult>> = Vec::with_capacity(contracts.len());
    let mut wanted = Vec::new();
    for (index, (contract, (precheck, state))) in contracts.iter().zip(checked).enumerate() {
        let local = |result| {
            Some(ContractResult {
                index,
                result,
                rtb_ms: None,
                rtb_ref: None,
                rtb_answer: None,
            })
        };
        let evaluation = contract.compiled.evaluate_after(precheck, &state, &context);
        // An early call's own admission decided its RTB endpoint (a half-open breaker's probe
        // is that call): asked again now, the probe taken would read as blocked.
        let called = early.contains_key(&index);
        let evaluation = match unavailable(&shared, contract, &evaluation, called) {
            Some(decline) => Evaluation::Declined(decline),
            None => evaluation,
        };
        results.push(match evaluation {
            Evaluation::Declined(decline) => local(Err(decline)),
            Evaluation::Priced(prices) => local(Ok(prices)),
            Evaluation::CallRtb => {
                wanted.push((index, state));
                None
            }
        });
    }
    // Under the bound every wanted call is made: no ranking, no allocation for it.
    let ranked = (wanted.len() > shared.max_rtb_calls).then(|| {
        let candidates: Vec<RtbCandidate> = wanted
            .iter()
            .map(|&(index, _)| {
                let compiled = &contracts[index].compiled;
                RtbCandidate {
                    contract_id: compiled.id(),
                    priority: compiled.priority(),
                    max_bid: match compiled.pricing() {
                        Pricing::Rtb(rtb) => rtb.max_bid,
                        Pricing::Fixed(_) => None,
                    },
                    last_sold_at: last_sale.get(&compiled.id()).copied(),
                }
            })
            .collect();
        rtb_calls(&candidates, shared.max_rtb_calls)
    });
    for (rank, (index, state)) in wanted.into_iter().enumerate() {
        if ranked.as_ref().is_some_and(|called| !called[rank]) {
            let decline = Decline {
                reason: DeclineReason::RtbLimit,
                detail: Some(format!(
                    "ranked beyond the {} bid requests a ping makes",
                    shared.max_rtb_calls
                )),
            };
            results[index] = Some(ContractResult {
                index,
                result: Err(decline),
                rtb_ms: None,
                rtb_ref: None,
                rtb_answer: None,
            });
            continue;
        }
        if early.remove(&index).is_some() {
            continue;
        }
        let call = calls.spawn(ask_buyer(
            index,
            Arc::clone(&contracts[index]),
            state,
            Arc::clone(&shared),
        ));
        call_index.insert(call.id(), index);
    }
    // Early calls of contracts the consumer's history (or the ranking) declined.
    for call in early.into_values() {
        call.abort();
    }
    while let Some(joined) = calls.join_next_with_id().await {
        match joined {
            // A contract already decided (an aborted call that ended first) keeps its reason.
            Ok((_, result)) => {
                let index = result.index;
                if results[index].is_none() {
                    results[index] = Some(result);
                }
            }
            // A panic is a bug in Gavel (a cancellation, an early call aborted or the runtime
            // shutting down); a contract not decided otherwise still ends with one reason.
            Err(error) => {
                if !error.is_cancelled() {
                    tracing::error!(%error, "a buyer's bid request failed inside Gavel");
                }
                if let Some(&index) = call_index.get(&error.id())
                    && results[index].is_none()
                {
                    let decline = Decline {
                        reason: DeclineReason::RtbError,
                        detail: Some("internal error".to_owned()),
                    };
                    results[index] = Some(ContractResult {
                        index,
                        result: Err(decline),
                        rtb_ms: None,
                        rtb_ref: None,
                        rtb_answer: None,
                    });
                }
            }
        }
    }
    results.into_iter().flatten().collect()
}

impl SharedPing {
    /// What every contract's checks read about the ping.
    pub fn context(&self) -> PingContext<'_> {
        PingContext {
            lead: &self.prepared,
            now: self.now,
            tenant_tz: self.tenant_tz,
            sale_types: self.sale_types,
        }
    }

    /// The tenant and its breaker settings (in benches, with no campaign: the nil tenant and
    /// the defaults).
    fn breaker(&self) -> (Uuid, BreakerSettings) {
        self.campaign
            .as_ref()
            .map_or((Uuid::nil(), BreakerSettings::default()), |c| {
                (c.tenant.id, c.tenant.breaker)
            })
    }
}

/// `buyer_unavailable` for a contract that would bid or call its buyer while one of its
/// endpoints' breakers is open: its RTB endpoint (for a call not made yet: `called` false), or
/// its delivery endpoint (selling to it would fail at the post). A look only: a half-open RTB
/// breaker's probe is taken by the call itself ([`ask_buyer`]), a delivery breaker's by the post.
fn unavailable(
    shared: &SharedPing,
    contract: &Contract,
    evaluation: &Evaluation,
    called: bool,
) -> Option<Decline> {
    let endpoints: &[Endpoint] = match evaluation {
        Evaluation::Declined(_) => return None,
        Evaluation::Priced(_) => &[Endpoint::Delivery],
        Evaluation::CallRtb if called => &[Endpoint::Delivery],
        Evaluation::CallRtb => &[Endpoint::Rtb, Endpoint::Delivery],
    };
    let (tenant, settings) = shared.breaker();
    let breakers = shared.http.breakers();
    endpoints.iter().find_map(|&endpoint| {
        let open = breakers.blocked(
            tenant,
            contract.compiled.id(),
            endpoint,
            shared.now,
            &settings,
        )?;
        Some(Decline::with(
            DeclineReason::BuyerUnavailable,
            open.detail(),
        ))
    })
}

/// Calls to buyers started before the consumer's history was read ([`early_calls`]), by
/// contract index.
#[derive(Default)]
struct EarlyCalls {
    calls: JoinSet<ContractResult>,
    running: HashMap<usize, tokio::task::AbortHandle>,
    call_index: HashMap<tokio::task::Id, usize>,
}

/// Whether a contract's call may start before the consumer's history is read: an RTB contract
/// not checked against a suppression list (a consumer on one is never offered to a buyer).
fn calls_early(contract: &Contract) -> bool {
    matches!(contract.compiled.pricing(), Pricing::Rtb(_)) && contract.suppression_lists.is_empty()
}

/// Starts the calls of the contracts that ask for one on the offer's `kept` state while the
/// consumer's history is still being read, as if it held nothing: that history (the buyers'
/// and the offer's dedup) can only decline a contract, never make one call, so every contract
/// that will call is called here, and [`fan_out_with`] drops the calls of those it declines.
/// A buyer may so be asked for a bid on a consumer it bought within its window; its bid is not
/// taken (docs/auction.md). None start early when the ping makes fewer calls than are wanted
/// (`max_rtb_calls`): which are made then depends on the ranking of those the history leaves.
fn early_calls(
    campaign: &CampaignContext,
    prechecks: &[Precheck],
    kept: &Arc<KeptState>,
    buyer_rooms: &HashMap<Uuid, BuyerCapRoom>,
    shared: &Arc<SharedPing>,
) -> EarlyCalls {
    let contracts = &campaign.offer.contracts;
    let context = shared.context();
    let nothing_known = PingState {
        kept: Arc::clone(kept),
        ..PingState::default()
    };
    let is_rtb = |contract: &Contract| matches!(contract.compiled.pricing(), Pricing::Rtb(_));
    // When every RTB contract of the offer may be called, each call starts as soon as its
    // contract is known to want it (another worker takes it while the rest are checked).
    let all_may_call = contracts.iter().filter(|c| is_rtb(c)).count() <= shared.max_rtb_calls;
    let mut calls = EarlyCalls::default();
    let mut wanted = 0;
    let mut early = Vec::new();
    for (index, (contract, precheck)) in contracts.iter().zip(prechecks).enumerate() {
        if !is_rtb(contract) {
            continue;
        }
        let state = contract_state(campaign, contract, &nothing_known, buyer_rooms, shared.now);
        let evaluation = contract
            .compiled
            .evaluate_after(precheck.clone(), &state, &context);
        if evaluation != Evaluation::CallRtb
            || unavailable(shared, contract, &evaluation, false).is_some()
        {
            continue;
        }
        wanted += 1;
        if !calls_early(contract) {
            continue;
        }
        if all_may_call {
            calls.start(index, contracts, state, shared);
        } else {
            early.push((index, state));
        }
    }
    if wanted <= shared.max_rtb_calls {
        for (index, state) in early {
            calls.start(index, contracts, state, shared);
        }
    }
    calls
}

impl EarlyCalls {
    fn start(
        &mut self,
        index: usize,
        contracts: &[Arc<Contract>],
        state: ContractState,
        shared: &Arc<SharedPing>,
    ) {
        let call = self.calls.spawn(ask_buyer(
            index,
            Arc::clone(&contracts[index]),
            state,
            Arc::clone(shared),
        ));
        self.call_index.insert(call.id(), index);
        self.running.insert(index, call);
    }
}

/// What each capped buyer's caps leave, once per buyer.
fn buyer_rooms(
    tenant: &TenantConfig,
    capped_buyers: &[Uuid],
    kept: &KeptState,
) -> HashMap<Uuid, BuyerCapRoom> {
    capped_buyers
        .iter()
        .filter_map(|id| {
            let buyer = tenant.buyers.get(id)?;
            let usage = kept.buyer_cap_usage.get(id).copied().unwrap_or_default();
            Some((*id, BuyerCapRoom::new(&buyer.caps, &usage)))
        })
        .collect()
}

fn within_days(at: Option<DateTime<Utc>>, days: u32, now: DateTime<Utc>) -> bool {
    days > 0 && at.is_some_and(|at| now - at < chrono::Duration::days(i64::from(days)))
}

pub async fn run(
    states: &StateReader,
    http: &crate::buyers::Outbound,
    campaign: &CampaignContext,
    input: &AuctionInput,
) -> Result<AuctionOutcome, sqlx::Error> {
    let tenant = &campaign.tenant;
    let offer = &campaign.offer;
    let contracts = &offer.contracts;

    // 1. The state every check needs, in one query (or from a copy a few moments old).
    // Each period's start, computed once per ping (a timezone conversion), not per contract.
    let mut starts: PeriodStarts = [None; 5];
    let keys = contracts
        .iter()
        .map(|contract| {
            let mut periods: PeriodStarts = [None; 5];
            for cap in contract.compiled.caps().iter() {
                let period = cap.period();
                periods[period.index()] = Some(
                    *starts[period.index()]
                        .get_or_insert_with(|| period_start(period, input.now, tenant.timezone)),
                );
            }
            ContractKeys {
                id: contract.compiled.id(),
                periods,
            }
        })
        .collect();
    let mut buyer_ids: Vec<Uuid> = contracts.iter().map(|c| c.compiled.buyer_id()).collect();
    buyer_ids.sort_unstable();
    buyer_ids.dedup();
    // The buyers' own caps: nothing to read when none of them has any.
    let buyer_caps: Vec<ContractKeys> = buyer_ids
        .iter()
        .filter_map(|id| tenant.buyers.get(id))
        .filter(|buyer| buyer.caps.iter().next().is_some())
        .map(|buyer| {
            let mut periods: PeriodStarts = [None; 5];
            for cap in buyer.caps.iter() {
                let period = cap.period();
                periods[period.index()] = Some(
                    *starts[period.index()]
                        .get_or_insert_with(|| period_start(period, input.now, tenant.timezone)),
                );
            }
            ContractKeys {
                id: buyer.id,
                periods,
            }
        })
        .collect();
    let capped_buyers: Vec<Uuid> = buyer_caps.iter().map(|keys| keys.id).collect();
    let shared = Arc::new(SharedPing {
        ping_id: input.ping_id,
        offer_name: offer.name.clone(),
        lead: Arc::clone(&input.lead),
        prepared: Arc::clone(&input.prepared),
        test: input.test,
        sub_ids: input.sub_ids.clone(),
        now: input.now,
        tenant_tz: tenant.timezone,
        sale_types: offer.rules.mode.sale_types(),
        http: http.clone(),
        max_rtb_calls: input.max_rtb_calls,
        rtb_timeout_ms: input.rtb_timeout_ms,
        deadline: input.deadline,
        campaign: Some(campaign.clone()),
    });
    let request = StateRequest {
        tenant_id: tenant.id,
        offer_id: offer.id,
        contracts: keys,
        buyer_ids,
        dedup_hashes: input.dedup_hashes.clone(),
        buyer_caps,
        suppression_lists: offer.suppression_lists.clone(),
    };
    // With the contracts' and buyers' state from a fresh copy, only the consumer's history is
    // read: the buyers' calls need not wait for it (`early_calls`).
    let kept = contracts
        .iter()
        .any(|c| calls_early(c))
        .then(|| states.kept_copy(&request))
        .flatten();
    let consumer_read = request.reads_consumer();
    let mut read = std::pin::pin!(async {
        match &kept {
            Some(kept) => states.read_consumer_with(Arc::clone(kept), request).await,
            None => states.read(request).await,
        }
    });
    let mut poll_read =
        async || std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let context = shared.context();
    let precheck_all = || -> Vec<Precheck> {
        contracts
            .iter()
            .map(|c| c.compiled.precheck(buyer_status(campaign, c), &context))
            .collect()
    };
    let (prechecks, calls, read_now) = match &kept {
        // The buyers' calls are started before the consumer's read: their answers take
        // milliseconds, the read a fraction of one, and the ping waits for both. The read's
        // task, started by its first poll, still runs next on this worker, while another
        // worker takes up the calls queued here.
        Some(kept) if consumer_read => {
            let prechecks = precheck_all();
            let rooms = buyer_rooms(tenant, &capped_buyers, kept);
            let calls = early_calls(campaign, &prechecks, kept, &rooms, &shared);
            (prechecks, calls, poll_read().await)
        }
        // Otherwise the checks that read no state (statuses, filters, schedules) run while the
        // database answers: the read's first poll starts its statement in a task of its own,
        // which this worker runs next once this task yields.
        _ => {
            let read_now = poll_read().await;
            if read_now.is_pending() {
                tokio::task::yield_now().await;
            }
            (precheck_all(), EarlyCalls::default(), read_now)
        }
    };
    let state = match read_now {
        Poll::Ready(read) => read,
        Poll::Pending => read.await,
    }?;
    // Round robin turns at the ping: a contract that just won waits its turn.
    let round_robin = offer.rules.strategy == Strategy::RoundRobin;
    let mut last_sale = Cow::Borrowed(&state.kept.last_sale);
    if round_robin {
        let ids = contracts.iter().map(|c| c.compiled.id());
        states.with_last_wins(tenant.id, last_sale.to_mut(), ids);
    }

    // 2. Offer-level dedup: a consumer sold on this offer within the window is not auctioned
    // (calls made meanwhile are dropped with `calls`).
    if within_days(state.offer_sold_at, offer.rules.dedup_days, input.now) {
        return Ok(AuctionOutcome::Duplicate);
    }

    // 3. Every contract's checks; a task per RTB call.
    let buyer_rooms = buyer_rooms(tenant, &capped_buyers, &state.kept);
    let checked = contracts
        .iter()
        .zip(prechecks)
        .map(|(c, precheck)| {
            let state = contract_state(campaign, c, &state, &buyer_rooms, input.now);
            (precheck, state)
        })
        .collect();
    let results = fan_out_with(contracts, checked, shared, &last_sale, calls).await;

    // 4. Selection among the bids.
    let bids: Vec<_> = results
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|prices| (r.index, *prices)))
        .map(|(index, prices)| {
            let contract = &contracts[index];
            let compiled = &contract.compiled;
            Bid {
                weight: contract.weight,
                ..compiled.bid(prices, last_sale.get(&compiled.id()).copied())
            }
        })
        .collect();
    let floor = effective_floor(campaign.campaign.min_payout, input.min_payout);
    let selection = select_seeded(
        &bids,
        &offer.rules,
        campaign.campaign.payout,
        floor,
        seed_of(input.ping_id),
    );

    if round_robin {
        let winners = selection.winners.iter().map(|w| w.contract_id);
        states.note_wins(tenant.id, winners, input.now);
    }

    // 5. Every contract's record.
    let winners: HashMap<Uuid, usize> = selection
        .winners
        .iter()
        .enumerate()
        .map(|(i, w)| (w.contract_id, i))
        .collect();
    let losers: HashMap<Uuid, DeclineReason> = selection
        .losers
        .iter()
        .map(|l| (l.contract_id, l.reason))
        .collect();
    // Each runner-up's place, for the cascade at post; none recorded when the offer's cascade
    // is off (the post would never read them).
    let runner_up_ranks: HashMap<Uuid, i16> = if offer.cascade.max_attempts > 0 {
        (1..)
            .zip(&selection.runner_ups)
            .map(|(rank, r)| (r.contract_id, rank))
            .collect()
    } else {
        HashMap::new()
    };
    let mut bid_ids = HashMap::new();
    let rows: Vec<DistributionRow> = results
        .into_iter()
        .map(|r| {
            let contract = &contracts[r.index].compiled;
            let id = contract.id();
            let mut row = DistributionRow {
                contract_id: id,
                buyer_id: contract.buyer_id(),
                bid: Prices::default(),
                rtb_ms: r.rtb_ms,
                rtb_ref: r.rtb_ref,
                win: None,
                reason: None,
                detail: None,
                rtb_answer: r.rtb_answer,
                runner_up_rank: None,
            };
            match r.result {
                Err(decline) => {
                    row.reason = Some(decline.reason);
                    row.detail = decline.detail;
                }
                Ok(prices) => {
                    row.bid = prices;
                    if let Some(&w) = winners.get(&id) {
                        let winner = &selection.winners[w];
                        let bid_id = Uuid::now_v7();
                        bid_ids.insert(id, bid_id);
                        row.win = Some(Win {
                            bid_id,
                            sale_type: winner.sale_type,
                            price: winner.price,
                            payout: winner.payout,
                        });
                    } else {
                        let reason = losers.get(&id).copied().unwrap_or(DeclineReason::Outbid);
                        row.reason = Some(reason);
                        if reason == DeclineReason::Outbid {
                            row.runner_up_rank = runner_up_ranks.get(&id).copied();
                        }
                    }
                }
            }
            row
        })
        .collect();
    count_outcomes(&rows);
    Ok(AuctionOutcome::Ran {
        selection,
        rows,
        bid_ids,
    })
}

/// Adds the ping's contract outcomes to the metrics, one increment per kind of outcome.
fn count_outcomes(rows: &[DistributionRow]) {
    let mut counts: Vec<((&'static str, &'static str), u64)> = Vec::new();
    for row in rows {
        let key = (
            row.outcome().as_str(),
            row.reason.map_or("none", DeclineReason::as_str),
        );
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, count)) => *count += 1,
            None => counts.push((key, 1)),
        }
    }
    crate::meters::contract_outcomes(&counts);
}

fn buyer_status(campaign: &CampaignContext, contract: &Contract) -> Status {
    let buyer = campaign.tenant.buyers.get(&contract.compiled.buyer_id());
    buyer.map_or(Status::Archived, |b| b.status)
}

fn contract_state(
    campaign: &CampaignContext,
    contract: &Contract,
    state: &PingState,
    buyer_rooms: &HashMap<Uuid, BuyerCapRoom>,
    now: DateTime<Utc>,
) -> ContractState {
    let buyer_id = contract.compiled.buyer_id();
    let buyer = campaign.tenant.buyers.get(&buyer_id);
    ContractState {
        buyer_status: buyer.map_or(Status::Archived, |b| b.status),
        balance: state
            .kept
            .balances
            .get(&buyer_id)
            .copied()
            .unwrap_or(Money::ZERO),
        credit_limit: buyer.map_or(Money::ZERO, |b| b.credit_limit),
        usage: state
            .kept
            .cap_usage
            .get(&contract.compiled.id())
            .copied()
            .unwrap_or_default(),
        duplicate: within_days(
            state.buyer_bought_at.get(&buyer_id).copied(),
            contract.dedup_days,
            now,
        ),
        buyer_caps: buyer_rooms.get(&buyer_id).copied().unwrap_or_default(),
        suppressed_by: contract.suppressed_by(&state.suppressed_lists),
    }
}

/// An RTB contract's task: ask its buyer, read the answer, check the bid.
async fn ask_buyer(
    index: usize,
    contract: Arc<Contract>,
    state: ContractState,
    ping: Arc<SharedPing>,
) -> ContractResult {
    let compiled = &contract.compiled;
    let Pricing::Rtb(pricing) = compiled.pricing() else {
        unreachable!("only RTB contracts ask for a call")
    };
    let Some(tmax_ms) = call_timeout_ms(
        pricing.timeout_ms_or(ping.rtb_timeout_ms),
        ping.deadline,
        tokio::time::Instant::now(),
    ) else {
        return ContractResult {
            index,
            result: Err(Decline {
                reason: DeclineReason::RtbTimeout,
                detail: Some("the ping's deadline (max_wait_ms) passed before the call".to_owned()),
            }),
            rtb_ms: None,
            rtb_ref: None,
            rtb_answer: None,
        };
    };
    let request = BidRequest {
        ping_id: ping.ping_id,
        offer: &ping.offer_name,
        sale_types: ping.sale_types,
        lead: &ping.lead,
        test: ping.test,
        tmax_ms,
        // Only a `request` template reads the names: none looked up for a native call.
        names: match (&pricing.request, &ping.campaign) {
            (Some(_), Some(campaign)) => CallNames {
                sub_ids: ping.sub_ids.as_deref(),
                ..CallNames::of(campaign)
            },
            _ => CallNames::default(),
        },
    };
    let (tenant, settings) = ping.breaker();
    let breakers = ping.http.breakers();
    let ticket = match breakers.admit(tenant, compiled.id(), Endpoint::Rtb, ping.now, &settings) {
        Ok(ticket) => ticket,
        Err(open) => {
            return ContractResult {
                index,
                result: Err(Decline::with(
                    DeclineReason::BuyerUnavailable,
                    open.detail(),
                )),
                rtb_ms: None,
                rtb_ref: None,
                rtb_answer: None,
            };
        }
    };
    let (reply, elapsed) = rtb::request_bids(&ping.http, pricing, &request).await;
    // A call cut short by the ping's own deadline that times out says nothing of the buyer:
    // not recorded (a probe's ticket lapses and the next cool-down lets another through).
    let cut_by_deadline = tmax_ms < pricing.timeout_ms_or(ping.rtb_timeout_ms);
    if !(cut_by_deadline && matches!(reply, Exchange::TimedOut)) {
        let failed = breaker::exchange_failed(&reply);
        let at = ping.now + elapsed;
        breakers.record(
            tenant,
            compiled.id(),
            Endpoint::Rtb,
            ticket,
            failed,
            at,
            &settings,
        );
    }
    let answer = rtb::read_reply(&reply, pricing, request.tmax_ms);
    // The buyer's reference comes back on delivery: kept short and storable.
    let rtb_ref = answer
        .as_ref()
        .ok()
        .and_then(|bid| bid.reference.as_deref())
        .map(|reference| crate::buyers::clean_text(reference, MAX_REF_BYTES));
    let result = answer.and_then(|bid| compiled.check_rtb_bid(&state, ping.sale_types, &bid));
    let outcome = result
        .as_ref()
        .map_or_else(|decline| decline.reason.as_str(), |_| "bid");
    crate::meters::rtb_call(outcome, elapsed);
    let rtb_answer = kept_answer(&reply, &result);
    ContractResult {
        index,
        result,
        rtb_ms: Some(millis(elapsed)),
        rtb_ref,
        rtb_answer,
    }
}

/// The buyer's answer worth keeping for the operator: only when it declined the contract as
/// `rtb_invalid`, `rtb_no_bid` or `rtb_error` and an HTTP status came back (a bid, a timeout
/// or a failed connection keeps nothing).
fn kept_answer(reply: &Exchange, result: &Result<Prices, Decline>) -> Option<RtbAnswer> {
    let Err(decline) = result else { return None };
    if !matches!(
        decline.reason,
        DeclineReason::RtbInvalid | DeclineReason::RtbNoBid | DeclineReason::RtbError
    ) {
        return None;
    }
    match reply {
        Exchange::Answer { status, body } => Some(RtbAnswer {
            http_status: *status,
            body: (!body.is_empty()).then(|| {
                let head = &body[..body.len().min(MAX_KEPT_ANSWER_BYTES + 4)];
                crate::buyers::clean_text(&String::from_utf8_lossy(head), MAX_KEPT_ANSWER_BYTES)
            }),
        }),
        Exchange::TooLarge { status } => Some(RtbAnswer {
            http_status: *status,
            body: None,
        }),
        Exchange::TimedOut | Exchange::Failed(_) => None,
    }
}

/// Longest buyer reference kept.
const MAX_REF_BYTES: usize = 256;

/// A bid request's timeout: its contract's, cut at the time left until the ping's deadline;
/// `None` when no whole millisecond is left (the call is not made).
fn call_timeout_ms(
    contract_ms: u32,
    deadline: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
) -> Option<u32> {
    let Some(deadline) = deadline else {
        return Some(contract_ms);
    };
    let left =
        u32::try_from(deadline.saturating_duration_since(now).as_millis()).unwrap_or(u32::MAX);
    (left > 0).then(|| contract_ms.min(left))
}

fn millis(elapsed: Duration) -> i32 {
    i32::try_from(elapsed.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bid_request_is_cut_at_the_time_left_before_the_pings_deadline() {
        let now = tokio::time::Instant::now();
        let in_ms = |ms| Some(now + Duration::from_millis(ms));
        assert_eq!(call_timeout_ms(2000, None, now), Some(2000));
        assert_eq!(call_timeout_ms(2000, in_ms(50), now), Some(50));
        assert_eq!(call_timeout_ms(30, in_ms(50), now), Some(30));
        assert_eq!(call_timeout_ms(2000, in_ms(0), now), None);
        assert_eq!(
            call_timeout_ms(2000, Some(now), now + Duration::from_millis(5)),
            None
        );
    }

    fn declined(reason: DeclineReason) -> Result<Prices, Decline> {
        Err(Decline {
            reason,
            detail: None,
        })
    }

    fn answer(status: u16, body: &[u8]) -> Exchange {
        Exchange::Answer {
            status,
            body: axum::body::Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn a_buyer_answer_is_kept_only_when_it_declined_the_contract() {
        let kept = kept_answer(
            &answer(200, b"<oops\0>"),
            &declined(DeclineReason::RtbInvalid),
        );
        assert_eq!(
            kept,
            Some(RtbAnswer {
                http_status: 200,
                body: Some("<oops>".to_owned())
            })
        );
        let no_bid = kept_answer(&answer(204, b""), &declined(DeclineReason::RtbNoBid));
        assert_eq!(
            no_bid,
            Some(RtbAnswer {
                http_status: 204,
                body: None
            })
        );
        let long = kept_answer(
            &answer(503, "é".repeat(4000).as_bytes()),
            &declined(DeclineReason::RtbError),
        );
        assert_eq!(long.and_then(|a| a.body).map(|b| b.len()), Some(4096));
        let too_large = kept_answer(
            &Exchange::TooLarge { status: 200 },
            &declined(DeclineReason::RtbInvalid),
        );
        assert_eq!(
            too_large.map(|a| (a.http_status, a.body)),
            Some((200, None))
        );
        // A bid, a decline of Gavel's own, a timeout or a failed connection keep nothing.
        assert_eq!(
            kept_answer(&answer(200, b"{}"), &Ok(Prices::default())),
            None
        );
        assert_eq!(
            kept_answer(&answer(200, b"{}"), &declined(DeclineReason::CapReached)),
            None
        );
        assert_eq!(
            kept_answer(&Exchange::TimedOut, &declined(DeclineReason::RtbTimeout)),
            None
        );
        assert_eq!(
            kept_answer(
                &Exchange::Failed("refused".to_owned()),
                &declined(DeclineReason::RtbError)
            ),
            None
        );
    }
}
