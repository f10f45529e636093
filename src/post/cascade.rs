//! The cascade at post (docs/revenue-recovery.md §1): a winning bid whose sale ends refused
//! (`rejected`, `failed`, `capped`, `insufficient_funds`, `duplicate`, `suppressed`) is offered to the ping's
//! runner-ups, one at a time, in the ping's ranking, until one buys, `max_attempts` further
//! attempts were made for that slot, or the cascade's deadline passed. Every slot of a post
//! draws from one queue, so that no buyer is offered the lead twice in a post.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::app::AppState;
use crate::auction::{CascadeRules, PayoutRule, SaleType, Status, meets_floor};
use crate::money::Money;
use crate::store::sales::{self, RunnerUp, WonBid};

use super::SaleStatus;
use super::settle::PostedLead;

/// Whether a winner's sale that ended so is offered to the runner-ups (`not_accepted`, the
/// partner's choice, never is).
pub fn cascades(status: SaleStatus) -> bool {
    matches!(
        status,
        SaleStatus::Rejected
            | SaleStatus::Failed
            | SaleStatus::Capped
            | SaleStatus::InsufficientFunds
            | SaleStatus::Duplicate
            | SaleStatus::Suppressed
    )
}

/// A runner-up chosen for an attempt: its bid for the slot's sale type and the partner's
/// payout for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub runner_up: RunnerUp,
    pub price: Money,
    pub payout: Money,
}

/// The post's queue of runner-ups, shared by its slots: where the next one is, and which
/// buyers were offered the lead already (every winner's, then every attempt's).
#[derive(Debug)]
pub struct Queue {
    next: usize,
    offered: HashSet<Uuid>,
}

impl Queue {
    /// A queue whose buyers `winners` were offered the lead already (the ping's winners).
    pub fn new(winners: impl IntoIterator<Item = Uuid>) -> Self {
        Self {
            next: 0,
            offered: winners.into_iter().collect(),
        }
    }

    /// The next runner-up that may be offered the lead, taken off the queue with every one
    /// skipped before it: a buyer offered the lead already in this post, a contract or buyer
    /// not `live` any more, no bid for `sale_type`, or a payout (by `payout_rule`) below
    /// `floor`. Skips are not attempts.
    pub fn next(
        &mut self,
        runner_ups: &[RunnerUp],
        sale_type: SaleType,
        live: impl Fn(&RunnerUp) -> bool,
        payout_rule: PayoutRule,
        floor: Money,
    ) -> Option<Candidate> {
        while let Some(runner_up) = runner_ups.get(self.next) {
            self.next += 1;
            if self.offered.contains(&runner_up.buyer_id) || !live(runner_up) {
                continue;
            }
            let cents = match sale_type {
                SaleType::Exclusive => runner_up.exclusive_cents,
                SaleType::Shared => runner_up.shared_cents,
            };
            let Some(price) = cents.map(Money::from_cents) else {
                continue;
            };
            let payout = payout_rule.payout(price);
            if !meets_floor(payout, floor) {
                continue;
            }
            self.offered.insert(runner_up.buyer_id);
            return Some(Candidate {
                runner_up: runner_up.clone(),
                price,
                payout,
            });
        }
        None
    }
}

/// One post's cascade: its rules, its deadline, and the queue its slots share.
pub struct Cascade {
    rules: CascadeRules,
    /// No attempt starts after it.
    deadline: Instant,
    floor: Money,
    /// Read once, when the first slot needs it.
    runner_ups: OnceCell<Vec<RunnerUp>>,
    queue: Mutex<Queue>,
}

impl Cascade {
    /// The cascade of a post that began at `started`, whose ping had winners `bids` and its own
    /// floor `ping_min_payout`; `None` when the offer's cascade is off.
    pub fn new(
        posted: &PostedLead,
        bids: &[WonBid],
        ping_min_payout: Option<Money>,
        started: Instant,
    ) -> Option<Arc<Self>> {
        let rules = posted.campaign.offer.cascade;
        if rules.max_attempts == 0 {
            return None;
        }
        let floor =
            crate::auction::effective_floor(posted.campaign.campaign.min_payout, ping_min_payout);
        Some(Arc::new(Self {
            rules,
            deadline: started + std::time::Duration::from_millis(u64::from(rules.deadline_ms)),
            floor,
            runner_ups: OnceCell::new(),
            queue: Mutex::new(Queue::new(bids.iter().map(|b| b.buyer_id))),
        }))
    }

    /// The next attempt for the slot of `slot` (the winner's bid), its `attempt`-th (1, 2, …):
    /// `None` when the slot has had its attempts, the deadline passed, or no runner-up is left.
    pub async fn next_bid(
        &self,
        state: &AppState,
        posted: &PostedLead,
        slot: &WonBid,
        attempt: u32,
    ) -> Result<Option<WonBid>, sqlx::Error> {
        if attempt > self.rules.max_attempts || Instant::now() >= self.deadline {
            return Ok(None);
        }
        let runner_ups = self
            .runner_ups
            .get_or_try_init(|| async {
                // Among the ping's declines, which a ping of many contracts writes behind its
                // answer: if this process is still writing them, once written.
                let by = tokio::time::Instant::from_std(self.deadline);
                state.pending_declines.wait(posted.ping_id, by).await;
                sales::runner_ups(&state.db, posted.source.tenant_id, posted.ping_id).await
            })
            .await?;
        // The read may have waited: no attempt starts after the deadline.
        if Instant::now() >= self.deadline {
            return Ok(None);
        }
        let sale_type = sales::sale_type_of(&slot.sale_type);
        // A runner-up whose suppression lists hold the consumer is skipped, not attempted.
        let live = |r: &RunnerUp| {
            let contract_live = posted.campaign.offer.contracts.iter().any(|c| {
                c.compiled.id() == r.contract_id
                    && c.compiled.status() == Status::Active
                    && c.suppressed_by(&posted.suppressed_lists).is_none()
            });
            contract_live
                && posted
                    .campaign
                    .tenant
                    .buyers
                    .get(&r.buyer_id)
                    .is_some_and(|b| b.status == Status::Active)
        };
        let candidate = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(
                runner_ups,
                sale_type,
                live,
                posted.campaign.campaign.payout,
                self.floor,
            );
        Ok(candidate.map(|c| WonBid {
            bid_id: Uuid::now_v7(),
            contract_id: c.runner_up.contract_id,
            buyer_id: c.runner_up.buyer_id,
            sale_type: slot.sale_type.clone(),
            price_cents: c.price.cents(),
            payout_cents: c.payout.cents(),
            rtb_ref: c.runner_up.rtb_ref,
            attempt: i16::try_from(attempt).unwrap_or(i16::MAX),
            replaces_bid_id: Some(slot.bid_id),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn runner_up(n: u128, buyer: u128, exclusive: Option<i64>, shared: Option<i64>) -> RunnerUp {
        RunnerUp {
            rank: i16::try_from(n).unwrap(),
            contract_id: id(n),
            buyer_id: id(100 + buyer),
            exclusive_cents: exclusive,
            shared_cents: shared,
            rtb_ref: None,
        }
    }

    #[test]
    fn the_queue_skips_offered_buyers_dead_contracts_missing_prices_and_low_payouts() {
        let half = PayoutRule::Revshare { percent_bp: 5000 };
        let floor = Money::from_cents(1000);
        let ups = [
            runner_up(1, 1, Some(5000), None), // the winner's buyer: skipped
            runner_up(2, 2, Some(4000), None), // paused since the ping: skipped
            runner_up(3, 3, None, Some(9000)), // no exclusive price: skipped
            runner_up(4, 4, Some(1500), None), // payout 7.50 below 10.00: skipped
            runner_up(5, 5, Some(3000), None), // offered first
            runner_up(6, 5, Some(2900), None), // the same buyer: skipped
            runner_up(7, 7, Some(2500), None), // offered second
        ];
        let mut queue = Queue::new([id(101)]);
        let live = |r: &RunnerUp| r.contract_id != id(2);
        let first = queue
            .next(&ups, SaleType::Exclusive, live, half, floor)
            .unwrap();
        assert_eq!(first.runner_up.contract_id, id(5));
        assert_eq!(first.price, Money::from_cents(3000));
        assert_eq!(first.payout, Money::from_cents(1500));
        let second = queue
            .next(&ups, SaleType::Exclusive, live, half, floor)
            .unwrap();
        assert_eq!(second.runner_up.contract_id, id(7));
        assert_eq!(
            queue.next(&ups, SaleType::Exclusive, live, half, floor),
            None
        );
    }

    #[test]
    fn slots_sharing_a_queue_never_offer_one_buyer_twice() {
        let rule = PayoutRule::Revshare { percent_bp: 10_000 };
        let ups = [
            runner_up(1, 1, None, Some(1000)),
            runner_up(2, 1, None, Some(900)),
            runner_up(3, 3, None, Some(800)),
        ];
        let mut queue = Queue::new([id(150), id(151)]);
        let mut buyers = Vec::new();
        while let Some(c) = queue.next(&ups, SaleType::Shared, |_| true, rule, Money::ZERO) {
            buyers.push(c.runner_up.buyer_id);
        }
        assert_eq!(buyers, [id(101), id(103)]);
    }

    #[test]
    fn only_refusals_cascade() {
        assert!(cascades(SaleStatus::Rejected));
        assert!(cascades(SaleStatus::InsufficientFunds));
        assert!(cascades(SaleStatus::Suppressed));
        assert!(!cascades(SaleStatus::NotAccepted));
        assert!(!cascades(SaleStatus::Sold));
    }
}
