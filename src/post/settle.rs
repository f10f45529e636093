//! Settling a post's accepted bids (SPEC §5.6 step 3), each in its own task: the reservation
//! of caps and funds (with the buyer's dedup on the real consumer), the delivery, then the sale
//! kept or its reservation released in full. A winner's sale refused goes on to the ping's
//! runner-ups (`super::cascade`), each attempt settled exactly as the winner's.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::app::AppState;
use crate::auction::Status;
use crate::buyers::delivery::{self, DeliveryRequest, Verdict};
use crate::integration::CallNames;
use crate::money::Money;
use crate::store::retry;
use crate::store::sales::{self, BuyerAnswer, NewSale, PostSource, Refusal, WonBid};

use super::cascade::{self, Cascade};
use super::{BuyerVerdict, INTERRUPTED, SaleStatus};
use crate::store::snapshot::CampaignContext;

/// Added to a delivery's timeout before a sale still pending counts as interrupted.
const PENDING_MARGIN: Duration = Duration::from_secs(60);

/// How long a reservation is retried while the database is unavailable (`reserve`): the
/// post's partner is waiting.
const RESERVE_RETRY: Duration = Duration::from_secs(5);

/// How long a sale's completion or release is retried while the database is unavailable;
/// within the pending margin, so that this task usually settles the sale before the sweep.
const SETTLE_RETRY: Duration = Duration::from_secs(45);

/// One winning bid's outcome, as the partner sees it: its slot's final status, payout and
/// reason, across the cascade's attempts when it had any.
#[derive(Debug, Clone)]
pub struct SaleResult {
    /// The winning bid.
    pub bid_id: Uuid,
    /// The winning contract.
    pub contract_id: Uuid,
    pub status: SaleStatus,
    pub payout: Money,
    pub reason: Option<String>,
    /// Every sale of the slot in order, the winner's first, when the cascade made at least
    /// one attempt; empty otherwise.
    pub attempts: Vec<Attempt>,
}

impl SaleResult {
    /// The winning contract's own sale's status (its `distribution_winners.disposition`).
    pub fn own_status(&self) -> SaleStatus {
        self.attempts.first().map_or(self.status, |a| a.status)
    }
}

/// One sale of a slot that cascaded: whose, at what price, and how it ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The sale's bid: the winner's, or a new one for a runner-up's attempt.
    pub bid_id: Uuid,
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub status: SaleStatus,
    pub price: Money,
    /// The partner's payout (0 unless sold).
    pub payout: Money,
    pub reason: Option<String>,
    /// The RTB bid's ref the delivery carried (for a win or loss notice).
    pub rtb_ref: Option<String>,
}

impl Attempt {
    fn of(bid: &WonBid, result: &SaleResult) -> Self {
        Self {
            bid_id: bid.bid_id,
            contract_id: bid.contract_id,
            buyer_id: bid.buyer_id,
            status: result.status,
            price: Money::from_cents(bid.price_cents),
            payout: result.payout,
            reason: result.reason.clone(),
            rtb_ref: bid.rtb_ref.clone(),
        }
    }
}

/// What every sale of one post shares.
pub struct PostedLead {
    pub source: PostSource,
    pub campaign: CampaignContext,
    pub ping_id: Uuid,
    pub lead_id: Uuid,
    pub lead: Map<String, Value>,
    pub consent: Map<String, Value>,
    /// The partner's own tracking ids (`sub_ids`): the post's if it sent some, else its ping's.
    pub sub_ids: Option<Arc<Map<String, Value>>>,
    /// SHA-256 of the normalized email and phone, by kind.
    pub consumer_keys: Vec<(&'static str, [u8; 32])>,
    /// The offer's suppression lists that hold the consumer (found by the post's claim).
    pub suppressed_lists: Vec<Uuid>,
    pub test: bool,
    pub now: DateTime<Utc>,
}

impl PostedLead {
    /// Hashes the lead's normalized email and phone, as dedup keys are stored.
    pub fn hash_keys(keys: Vec<(&'static str, String)>) -> Vec<(&'static str, [u8; 32])> {
        keys.into_iter()
            .map(|(kind, text)| (kind, Sha256::digest(text.as_bytes()).into()))
            .collect()
    }

    fn consumer_hashes(&self) -> Vec<[u8; 32]> {
        self.consumer_keys.iter().map(|(_, hash)| *hash).collect()
    }
}

/// Settles every accepted bid in parallel; the others are recorded `not_accepted`. Results
/// come back in the order of `bids`. Every sale runs to its end even if another fails: the
/// first error is reported once all are done.
pub async fn settle_all(
    state: &AppState,
    posted: Arc<PostedLead>,
    bids: Vec<WonBid>,
    accepted: impl Fn(&WonBid) -> bool,
    cascade: Option<Arc<Cascade>>,
) -> Result<Vec<SaleResult>, crate::Error> {
    let mut tasks = JoinSet::new();
    let count = bids.len();
    for (index, bid) in bids.into_iter().enumerate() {
        let (state, posted) = (state.clone(), Arc::clone(&posted));
        let take = accepted(&bid);
        let cascade = cascade.clone();
        tasks.spawn(async move {
            let result = if take {
                settle_slot(&state, &posted, bid, cascade).await
            } else {
                refuse(&state, &posted, bid).await
            };
            (index, result)
        });
    }
    let mut results: Vec<Option<SaleResult>> = vec![None; count];
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, Ok(result))) => results[index] = Some(result),
            Ok((_, Err(error))) => {
                tracing::error!(%error, "a sale could not be settled");
                first_error.get_or_insert(error.into());
            }
            Err(error) => {
                tracing::error!(%error, "a sale's task failed");
                first_error.get_or_insert(crate::Error::Fault(format!(
                    "a sale's task failed: {error}"
                )));
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(results.into_iter().flatten().collect()),
    }
}

fn new_sale<'a>(
    posted: &'a PostedLead,
    bid: &'a WonBid,
    sale_id: Uuid,
    hashes: &'a [[u8; 32]],
    dedup_days: u32,
    pending_for: Duration,
) -> NewSale<'a> {
    NewSale {
        source: &posted.source,
        sale_id,
        lead_id: posted.lead_id,
        ping_id: posted.ping_id,
        bid,
        test: posted.test,
        now: posted.now,
        pending_for: chrono::Duration::from_std(pending_for).unwrap_or_default(),
        dedup_days,
        consumer_hashes: hashes,
    }
}

fn result(bid: &WonBid, status: SaleStatus, reason: Option<String>) -> SaleResult {
    crate::meters::sale(status.as_str());
    let payout = if status == SaleStatus::Sold {
        Money::from_cents(bid.payout_cents)
    } else {
        Money::ZERO
    };
    SaleResult {
        bid_id: bid.bid_id,
        contract_id: bid.contract_id,
        status,
        payout,
        reason,
        attempts: Vec::new(),
    }
}

/// A winning bid's slot: its own sale, then, when that was refused and the offer cascades,
/// the runner-ups one at a time until one buys or the cascade stops.
async fn settle_slot(
    state: &AppState,
    posted: &PostedLead,
    bid: WonBid,
    cascade: Option<Arc<Cascade>>,
) -> Result<SaleResult, sqlx::Error> {
    let first = settle_one(state, posted, bid.clone()).await?;
    let Some(cascade) = cascade.filter(|_| cascade::cascades(first.status)) else {
        return Ok(first);
    };
    let mut attempts = vec![Attempt::of(&bid, &first)];
    let mut last = first;
    let mut attempt = 1;
    while let Some(next) = cascade.next_bid(state, posted, &bid, attempt).await? {
        let result = settle_one(state, posted, next.clone()).await?;
        attempts.push(Attempt::of(&next, &result));
        attempt += 1;
        let sold = result.status == SaleStatus::Sold;
        last = result;
        if sold {
            break;
        }
    }
    if attempts.len() == 1 {
        // No runner-up was offered the slot: answered as before.
        return Ok(last);
    }
    Ok(SaleResult {
        bid_id: bid.bid_id,
        contract_id: bid.contract_id,
        status: last.status,
        payout: last.payout,
        reason: last.reason,
        attempts,
    })
}

/// A bid the partner left out of `bid_ids`.
async fn refuse(
    state: &AppState,
    posted: &PostedLead,
    bid: WonBid,
) -> Result<SaleResult, sqlx::Error> {
    let hashes = posted.consumer_hashes();
    let sale = new_sale(posted, &bid, Uuid::now_v7(), &hashes, 0, Duration::ZERO);
    sales::record_unreserved(&state.db, &sale, SaleStatus::NotAccepted, None).await?;
    Ok(result(&bid, SaleStatus::NotAccepted, None))
}

/// Reserves the sale, grouped with the reservations of the posts settling at the same moment
/// (one transaction; the cascade attempt is written with the sale). A group the database
/// refuses wrote nothing and is run again request by request (`store::group`). When the
/// database was unavailable (a dropped session, a restart: the groups keep their connections,
/// so the first reservation after a restart meets a dead one), the reservation may still have
/// committed: its sale says so, and it is made again only when the sale is not there, for at
/// most `RESERVE_RETRY`. The first attempt may also still be running in the server's session
/// when its sale is looked for: the retry then waits for its locks and finds its sale written
/// (`gavel_reserve_group` answers a sale already written 'reserved' and writes nothing), so a
/// reservation is never made twice, nor refused because of itself.
async fn reserve(
    state: &AppState,
    sale: &NewSale<'_>,
    caps: &crate::auction::CompiledCaps,
    buyer_caps: &crate::auction::CompiledCaps,
    tz: chrono_tz::Tz,
) -> Result<Result<(), Refusal>, sqlx::Error> {
    let (tenant_id, sale_id) = (sale.source.tenant_id, sale.sale_id);
    let deadline = tokio::time::Instant::now() + RESERVE_RETRY;
    retry::with_backoff(deadline, || async {
        let reservation = sales::Reservation::of(sale, caps, buyer_caps, tz);
        match state.sale_reservations.run(reservation).await {
            Err(error) if crate::store::is_unavailable(&error) => {
                match sales::sale_status(&state.db, tenant_id, sale_id).await? {
                    Some(_) => Ok(Ok(())),
                    None => Err(error),
                }
            }
            reserved => reserved,
        }
    })
    .await
}

async fn settle_one(
    state: &AppState,
    posted: &PostedLead,
    bid: WonBid,
) -> Result<SaleResult, sqlx::Error> {
    let sale_id = Uuid::now_v7();
    let hashes = posted.consumer_hashes();
    let bid = &bid;
    let unreserved = |status: SaleStatus, reason: Option<String>| {
        let hashes = &hashes;
        async move {
            let sale = new_sale(posted, bid, sale_id, hashes, 0, Duration::ZERO);
            sales::record_unreserved(&state.db, &sale, status, reason.as_deref()).await?;
            Ok::<_, sqlx::Error>(result(bid, status, reason))
        }
    };

    // What changed since the ping: an operator who pauses a contract or a buyer expects its
    // leads to stop at once.
    let contract = posted
        .campaign
        .offer
        .contracts
        .iter()
        .find(|c| c.compiled.id() == bid.contract_id);
    let buyer_active = posted
        .campaign
        .tenant
        .buyers
        .get(&bid.buyer_id)
        .is_some_and(|b| b.status == Status::Active);
    let contract = match contract {
        None => Err("the contract was archived after the ping"),
        Some(c) if c.compiled.status() != Status::Active => {
            Err("the contract was paused after the ping")
        }
        Some(_) if !buyer_active => Err("the buyer was paused after the ping"),
        Some(contract) => Ok(contract),
    };
    let contract = match contract {
        Ok(contract) => contract,
        Err(stopped) => return unreserved(SaleStatus::Failed, Some(stopped.to_owned())).await,
    };
    // The posted consumer is on one of the contract's suppression lists: nothing is reserved.
    // The reason reaches the partner: the list's id, never its name (which may say more than
    // the tenant wants its sellers to read).
    if let Some(list) = contract.suppressed_by(&posted.suppressed_lists) {
        let reason = format!("the consumer is on a suppression list ({list})");
        return unreserved(SaleStatus::Suppressed, Some(reason)).await;
    }

    // Reserve caps and funds, after the buyer's dedup on the real consumer.
    // Cut to the longest the settings allow: the post's request outlasts that (config.rs).
    let timeout = contract
        .delivery
        .timeout(state.settings.delivery_timeout_ms)
        .min(state.settings.delivery_timeout_max());
    let sale = new_sale(
        posted,
        bid,
        sale_id,
        &hashes,
        contract.dedup_days,
        timeout + PENDING_MARGIN,
    );
    let forget = || {
        state
            .ping_states
            .forget_sale(posted.source.tenant_id, bid.contract_id, bid.buyer_id);
    };
    let reserved = reserve(
        state,
        &sale,
        contract.compiled.caps(),
        sales::buyer_caps(&posted.campaign.tenant, bid.buyer_id),
        posted.campaign.tenant.timezone,
    )
    .await;
    // Even when the answer was lost, the reservation may have committed.
    if !matches!(reserved, Ok(Err(_))) {
        forget();
    }
    match reserved? {
        Ok(()) => {}
        Err(Refusal::Duplicate) => {
            return unreserved(
                SaleStatus::Duplicate,
                Some("the buyer already bought this consumer".to_owned()),
            )
            .await;
        }
        Err(Refusal::Capped) => {
            let reason = Some("a cap filled since the ping".to_owned());
            return unreserved(SaleStatus::Capped, reason).await;
        }
        Err(Refusal::InsufficientFunds) => {
            return unreserved(SaleStatus::InsufficientFunds, None).await;
        }
    }

    // Deliver.
    let request = DeliveryRequest {
        lead_id: posted.lead_id,
        ping_id: posted.ping_id,
        offer: &posted.campaign.offer.name,
        sale_type: sales::sale_type_of(&bid.sale_type),
        price: Money::from_cents(bid.price_cents),
        rtb_ref: bid.rtb_ref.as_deref(),
        test: posted.test,
        lead: &posted.lead,
        consent: &posted.consent,
        names: CallNames {
            sub_ids: posted.sub_ids.as_deref(),
            ..CallNames::of(&posted.campaign)
        },
    };
    let (tenant, breaker) = (&posted.campaign.tenant, &posted.campaign.tenant.breaker);
    let delivered = match delivery::admit(
        &state.http,
        tenant.id,
        bid.contract_id,
        breaker,
        state.clock.now(),
    ) {
        Ok(ticket) => {
            let delivered =
                delivery::deliver(&state.http, &contract.delivery, timeout, &request).await;
            let now = state.clock.now();
            delivery::record(
                &state.http,
                tenant.id,
                bid.contract_id,
                breaker,
                ticket,
                &delivered,
                now,
            );
            delivered
        }
        // The delivery endpoint kept failing: the sale fails at once, without a call.
        Err(unavailable) => unavailable,
    };
    let (verdict, reason) = match &delivered.verdict {
        Verdict::Accepted => (BuyerVerdict::Accepted, None),
        Verdict::Duplicate(reason) => (BuyerVerdict::Duplicate, Some(reason.as_str())),
        Verdict::Rejected(reason) => (BuyerVerdict::Rejected, Some(reason.as_str())),
        Verdict::Failed(reason) => (BuyerVerdict::Failed, Some(reason.as_str())),
    };
    crate::meters::delivery(verdict.as_str(), delivered.elapsed);
    let answer = BuyerAnswer {
        http_status: delivered.http_status,
        answer: delivered.answer.as_deref(),
        delivery_ms: Some(i32::try_from(delivered.elapsed.as_millis()).unwrap_or(i32::MAX)),
    };

    // Keep the sale, or give everything back: retried with backoff while the database is
    // unavailable, and the verdict kept first if the first attempt fails, so that the sweep
    // settles the sale as the buyer decided even if this task gives up or its process dies.
    let now = state.clock.now();
    let db = &state.db;
    let tenant_id = posted.source.tenant_id;
    let kinds: Vec<&'static str> = posted.consumer_keys.iter().map(|(kind, _)| *kind).collect();
    let verdict = sales::Verdict {
        verdict,
        reason,
        answer: &answer,
        consumer_kinds: &kinds,
    };
    let settle = |first: bool| {
        let verdict = &verdict;
        async move {
            match verdict.verdict.settles_as() {
                SaleStatus::Sold => {
                    let completion =
                        sales::Completion::of(tenant_id, sale_id, first.then_some(verdict), now);
                    state.sale_completions.run(completion).await
                }
                status => {
                    let reason = verdict.reason.unwrap_or_default();
                    sales::release(db, tenant_id, sale_id, status, reason, verdict.answer, now)
                        .await
                }
            }
        }
    };
    let deadline = tokio::time::Instant::now() + SETTLE_RETRY;
    let settled = async {
        let done = match settle(true).await {
            Ok(done) => done,
            Err(error) => {
                tracing::warn!(%error, %sale_id, "cannot settle a sale; keeping its verdict and retrying");
                let pending = retry::with_backoff(deadline, || {
                    sales::record_verdict(db, tenant_id, sale_id, &verdict)
                })
                .await?;
                pending && retry::with_backoff(deadline, || settle(false)).await?
            }
        };
        if done {
            let status = verdict.verdict.settles_as();
            return Ok(result(bid, status, reason.map(str::to_owned)));
        }
        // Settled already: by an earlier attempt whose answer was lost, or by the sweep.
        let found = retry::with_backoff(deadline, || sales::sale_status(db, tenant_id, sale_id))
            .await?;
        let interrupted = || Some(INTERRUPTED.to_owned());
        Ok(match found {
            // A sale returned since was sold by this post (a post never settles `returned`).
            Some((SaleStatus::Sold | SaleStatus::Returned, _)) => {
                result(bid, SaleStatus::Sold, None)
            }
            Some((status @ (SaleStatus::Rejected | SaleStatus::Duplicate), reason)) => {
                result(bid, status, reason)
            }
            Some((_, reason)) => result(bid, SaleStatus::Failed, reason.or_else(interrupted)),
            None => result(bid, SaleStatus::Failed, interrupted()),
        })
    }
    .await;
    // Kept, given back or failed to write, the caps, balance and last sale may have changed.
    forget();
    settled
}
