//! Winner selection (SPEC §5.3–§5.5): payouts and the floor first, then ranking, then the
//! offer's mode.

use std::cmp::Reverse;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::money::Money;

use super::config::{Distribution, Mode, OfferRules, PayoutRule, SaleType, Strategy};
use super::evaluate::DeclineReason;
use super::pricing::meets_floor;

/// One contract's bid: its prices per sale type and what ranking needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bid {
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub priority: i32,
    /// The contract's last sale; `None` (never sold) ranks as the longest without one.
    pub last_sold_at: Option<DateTime<Utc>>,
    pub exclusive: Option<Money>,
    pub shared: Option<Money>,
    /// The contract's `weight` (0–1000), read only by the `weighted` strategy.
    pub weight: u32,
}

/// A contract's `weight` when it names none.
pub const DEFAULT_WEIGHT: u32 = 100;

/// A winning bid: what it buys, at what price, and the partner's payout for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Winner {
    pub contract_id: Uuid,
    pub buyer_id: Uuid,
    pub sale_type: SaleType,
    pub price: Money,
    pub payout: Money,
}

/// A bid that did not win: `outbid`, or `below_floor` when none of its prices left the
/// partner a payout at or above the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Loser {
    pub contract_id: Uuid,
    pub reason: DeclineReason,
}

/// The auction's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// What the partner sells; `None` when nothing sells (`no_bids`).
    pub sale_type: Option<SaleType>,
    /// Best first.
    pub winners: Vec<Winner>,
    /// Every other bid, in input order.
    pub losers: Vec<Loser>,
    /// The losers that could take a failed winner's place at the post (the cascade,
    /// docs/revenue-recovery.md), best first: each `outbid` bid with a price for `sale_type`
    /// whose payout meets the floor, in the ranking that chose the winners.
    pub runner_ups: Vec<Winner>,
}

impl Selection {
    /// What the partner earns if it posts and every winner buys.
    pub fn total_payout(&self) -> Money {
        Money::from_cents(self.winners.iter().map(|w| w.payout.cents()).sum())
    }
}

/// A bid's price and payout for one sale type, kept only when the payout meets the floor.
#[derive(Debug, Clone, Copy)]
struct Offer {
    price: Money,
    payout: Money,
}

/// A bid's place in the ranking as a sort key, best first (smallest). The parts, by
/// distribution and strategy (docs/revenue-recovery.md §2–3):
///
/// - `auction`/`price` (SPEC §5.4): price (highest first), priority (highest first);
/// - `waterfall`/`price`: priority, then price;
/// - `round_robin`: priority only (the price is ignored once it meets the floor);
/// - `weighted`: priority, then the bid's Efraimidis–Spirakis key (its draw);
///
/// then, for all, the longest without a sale (`None`, never sold, sorts first; then the oldest
/// sale) and the contract id. Ids compare as `u128`, the same order as their bytes.
type RankKey = (i64, i64, i64, Option<DateTime<Utc>>, u128);

/// How one selection ranks its bids: the offer's distribution and strategy, and the ping's
/// seed for the `weighted` draw.
#[derive(Debug, Clone, Copy)]
struct Ranking {
    distribution: Distribution,
    strategy: Strategy,
    seed: u64,
}

impl Ranking {
    fn key(&self, bid: &Bid, price: Money) -> RankKey {
        let (price, priority) = (-price.cents(), -i64::from(bid.priority));
        let (first, second, draw) = match (self.strategy, self.distribution) {
            (Strategy::Price, Distribution::Auction) => (price, priority, 0),
            (Strategy::Price, Distribution::Waterfall) => (priority, price, 0),
            (Strategy::RoundRobin, _) => (priority, 0, 0),
            (Strategy::Weighted, _) => (priority, 0, draw_key(self.seed, bid)),
        };
        (
            first,
            second,
            draw,
            bid.last_sold_at,
            bid.contract_id.as_u128(),
        )
    }
}

/// The seed of a ping's `weighted` draw: its id folded to 64 bits.
pub fn seed_of(ping_id: Uuid) -> u64 {
    let id = ping_id.as_u128();
    (id >> 64) as u64 ^ id as u64
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The bid's Efraimidis–Spirakis key as a sort key (smaller first): with `u` uniform in
/// (0, 1] drawn from (seed, contract id), the key `u^(1/w)`, highest first, is ranked here as
/// `-ln(u) / w`, lowest first (the same order, without a power). A weight of 0 ranks after
/// every positive weight of its tier. Non-negative floats order as their bits. Only the
/// integer weights and a random draw pass through the float: no amount of money does.
fn draw_key(seed: u64, bid: &Bid) -> i64 {
    if bid.weight == 0 {
        return i64::MAX;
    }
    let id = bid.contract_id.as_u128();
    let bits = mix(mix(seed ^ (id >> 64) as u64) ^ id as u64);
    // 53 random bits → (0, 1].
    let u = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let key = -u.ln() / f64::from(bid.weight);
    key.max(0.0).to_bits() as i64
}

/// Selects the winners among `bids` by the offer's mode, ranked by its distribution and
/// strategy ([`select_seeded`] with seed 0).
pub fn select(
    bids: &[Bid],
    offer: &OfferRules,
    payout_rule: PayoutRule,
    floor: Money,
) -> Selection {
    select_seeded(bids, offer, payout_rule, floor, 0)
}

/// Selects the winners among `bids` by the offer's mode. A sale type whose payout (from
/// `payout_rule`) is zero or below `floor` is removed from a bid first, so the next best can
/// win; see [`super::pricing::effective_floor`] for the floor. The bids are ranked by the
/// offer's distribution and strategy; `seed` (the ping's, [`seed_of`]) seeds the `weighted`
/// draw, so the same ping always ranks the same way.
pub fn select_seeded(
    bids: &[Bid],
    offer: &OfferRules,
    payout_rule: PayoutRule,
    floor: Money,
    seed: u64,
) -> Selection {
    let ranking = Ranking {
        distribution: offer.distribution,
        strategy: offer.strategy,
        seed,
    };
    let offer_of = |price: Option<Money>| {
        price
            .map(|price| Offer {
                price,
                payout: payout_rule.payout(price),
            })
            .filter(|o| meets_floor(o.payout, floor))
    };
    let offers: Vec<(Option<Offer>, Option<Offer>)> = bids
        .iter()
        .map(|b| (offer_of(b.exclusive), offer_of(b.shared)))
        .collect();

    let best_exclusive = (0..bids.len())
        .filter_map(|i| offers[i].0.map(|o| (i, o)))
        .min_by_key(|(i, o)| ranking.key(&bids[*i], o.price));
    let exclusive_clears_floor =
        best_exclusive.is_some_and(|(_, o)| o.price >= offer.exclusive_floor);
    let shared_needed = match offer.mode {
        Mode::Exclusive => false,
        Mode::Hybrid => !exclusive_clears_floor,
        Mode::Multisell | Mode::Optimize => true,
    };
    let shared_winners = if shared_needed {
        best_shared(bids, &offers, offer.max_buyers, &ranking)
    } else {
        Vec::new()
    };

    let exclusive_wins = match (best_exclusive, offer.mode) {
        (None, _) | (_, Mode::Multisell) => false,
        (Some(_), Mode::Exclusive) => true,
        (Some(_), Mode::Hybrid) => exclusive_clears_floor || shared_winners.is_empty(),
        (Some((_, best)), Mode::Optimize) => {
            let shared_total: i64 = shared_winners.iter().map(|(_, o)| o.price.cents()).sum();
            best.price.cents() >= shared_total
        }
    };
    let (sale_type, chosen) = match best_exclusive {
        Some(best) if exclusive_wins => (Some(SaleType::Exclusive), vec![best]),
        _ if offer.mode != Mode::Exclusive && !shared_winners.is_empty() => {
            (Some(SaleType::Shared), shared_winners)
        }
        _ => (None, Vec::new()),
    };
    let winners: Vec<Winner> = sale_type.map_or_else(Vec::new, |sale_type| {
        chosen
            .iter()
            .map(|&(i, o)| Winner {
                contract_id: bids[i].contract_id,
                buyer_id: bids[i].buyer_id,
                sale_type,
                price: o.price,
                payout: o.payout,
            })
            .collect()
    });
    let mut won = vec![false; bids.len()];
    for (i, _) in &chosen {
        won[*i] = true;
    }
    let runner_ups = sale_type.map_or_else(Vec::new, |sale_type| {
        runner_ups(bids, &offers, &won, sale_type, &ranking)
    });
    let losers = bids
        .iter()
        .zip(&offers)
        .zip(won)
        .filter(|(_, won)| !won)
        .map(|((bid, offers), _)| Loser {
            contract_id: bid.contract_id,
            reason: match offers {
                (None, None) => DeclineReason::BelowFloor,
                _ => DeclineReason::Outbid,
            },
        })
        .collect();
    Selection {
        sale_type,
        winners,
        losers,
        runner_ups,
    }
}

/// The bids not chosen that have an offer for `sale_type`, in the ranking's order, best first.
/// The most runner-ups a ping keeps for the cascade.
pub const MAX_RUNNER_UPS: usize = 64;

fn runner_ups(
    bids: &[Bid],
    offers: &[(Option<Offer>, Option<Offer>)],
    won: &[bool],
    sale_type: SaleType,
    ranking: &Ranking,
) -> Vec<Winner> {
    let mut ranked: Vec<(RankKey, usize, Offer)> = offers
        .iter()
        .enumerate()
        .filter(|(i, _)| !won[*i])
        .filter_map(|(i, (exclusive, shared))| {
            let offer = match sale_type {
                SaleType::Exclusive => exclusive,
                SaleType::Shared => shared,
            };
            offer.map(|o| (ranking.key(&bids[i], o.price), i, o))
        })
        .collect();
    // Only the best are kept: the cascade makes at most 20 attempts a slot, and an offer may
    // have hundreds of contracts (a full sort and record of every loser measured 6 % of a
    // 300-contract ping).
    if ranked.len() > MAX_RUNNER_UPS {
        ranked.select_nth_unstable_by_key(MAX_RUNNER_UPS - 1, |(key, _, _)| *key);
        ranked.truncate(MAX_RUNNER_UPS);
    }
    ranked.sort_unstable_by_key(|(key, _, _)| *key);
    ranked
        .into_iter()
        .map(|(_, i, o)| Winner {
            contract_id: bids[i].contract_id,
            buyer_id: bids[i].buyer_id,
            sale_type,
            price: o.price,
            payout: o.payout,
        })
        .collect()
}

/// The best shared bids, one per buyer (its best contract), up to `max_buyers`, best first.
fn best_shared(
    bids: &[Bid],
    offers: &[(Option<Offer>, Option<Offer>)],
    max_buyers: u32,
    ranking: &Ranking,
) -> Vec<(usize, Offer)> {
    let mut ranked: Vec<(RankKey, usize, Offer)> = offers
        .iter()
        .enumerate()
        .filter_map(|(i, (_, shared))| shared.map(|o| (ranking.key(&bids[i], o.price), i, o)))
        .collect();
    // Keys are distinct (they end with the contract id), so an unstable sort is deterministic.
    ranked.sort_unstable_by_key(|(key, _, _)| *key);
    let mut buyers = HashSet::new();
    ranked
        .into_iter()
        .filter(|(_, i, _)| buyers.insert(bids[*i].buyer_id))
        .take(max_buyers as usize)
        .map(|(_, i, o)| (i, o))
        .collect()
}

/// A contract that would ask its buyer for a bid, as the bound on bid requests per ping
/// (`max_rtb_calls_per_ping`) ranks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtbCandidate {
    pub contract_id: Uuid,
    pub priority: i32,
    /// The most the contract may bid; `None` caps nothing.
    pub max_bid: Option<Money>,
    /// The contract's last sale; `None` (never sold) ranks as the longest without one.
    pub last_sold_at: Option<DateTime<Utc>>,
}

/// Which of `candidates` get a bid request when a ping makes at most `bound`: true for the
/// first `bound` by priority (highest first), then the best price they may bid (no `max_bid`
/// first, then the highest), then the longest without a sale, then contract id: the auction's
/// own ranking (§5.4) with the price not known yet.
pub fn rtb_calls(candidates: &[RtbCandidate], bound: usize) -> Vec<bool> {
    if candidates.len() <= bound {
        return vec![true; candidates.len()];
    }
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| {
        let c = &candidates[i];
        (
            Reverse(c.priority),
            Reverse(c.max_bid.map_or(i64::MAX, Money::cents)),
            c.last_sold_at,
            c.contract_id.as_u128(),
        )
    });
    let mut called = vec![false; candidates.len()];
    for &i in order.iter().take(bound) {
        called[i] = true;
    }
    called
}

#[cfg(test)]
mod tests {
    use super::Strategy as Order;
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;

    #[test]
    fn rtb_calls_go_to_priority_then_best_possible_price_then_longest_without_a_sale() {
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let candidate = |id: u128, priority, max_bid: Option<i64>, last| RtbCandidate {
            contract_id: Uuid::from_u128(id),
            priority,
            max_bid: max_bid.map(Money::from_cents),
            last_sold_at: last,
        };
        let candidates = [
            candidate(1, 0, Some(9_000), None),
            candidate(2, 1, Some(1_000), at("2026-01-02T00:00:00Z")),
            candidate(3, 0, None, at("2026-01-02T00:00:00Z")),
            candidate(4, 0, Some(9_000), at("2026-01-01T00:00:00Z")),
            candidate(5, 0, Some(500), None),
        ];
        assert_eq!(rtb_calls(&candidates, 5), vec![true; 5]);
        // 2 (priority), 3 (no cap on its bid), 1 (never sold), 4, then 5.
        assert_eq!(
            rtb_calls(&candidates, 3),
            vec![true, true, true, false, false]
        );
        assert_eq!(
            rtb_calls(&candidates, 4),
            vec![true, true, true, true, false]
        );
        assert_eq!(
            rtb_calls(&candidates, 1),
            vec![false, true, false, false, false]
        );
    }

    fn cents(c: i64) -> Money {
        Money::from_cents(c)
    }

    fn bid(id: u128, buyer: u128, exclusive: Option<i64>, shared: Option<i64>) -> Bid {
        Bid {
            contract_id: Uuid::from_u128(id),
            buyer_id: Uuid::from_u128(buyer),
            priority: 0,
            last_sold_at: None,
            exclusive: exclusive.map(cents),
            shared: shared.map(cents),
            weight: DEFAULT_WEIGHT,
        }
    }

    fn rules(mode: Mode, max_buyers: u32, exclusive_floor: i64) -> OfferRules {
        OfferRules {
            mode,
            max_buyers,
            exclusive_floor: cents(exclusive_floor),
            dedup_days: 0,
            require_consent: Vec::new(),
            distribution: Distribution::Auction,
            strategy: Order::Price,
        }
    }

    fn routed(
        mode: Mode,
        max_buyers: u32,
        distribution: Distribution,
        strategy: Order,
    ) -> OfferRules {
        OfferRules {
            distribution,
            strategy,
            ..rules(mode, max_buyers, 0)
        }
    }

    const ALL: PayoutRule = PayoutRule::Revshare { percent_bp: 10_000 };

    fn winner_ids(selection: &Selection) -> Vec<u128> {
        selection
            .winners
            .iter()
            .map(|w| w.contract_id.as_u128())
            .collect()
    }

    #[test]
    fn exclusive_mode_sells_the_best_exclusive_bid_alone() {
        let bids = [
            bid(1, 1, Some(3000), Some(2000)),
            bid(2, 2, Some(4000), None),
            bid(3, 3, None, Some(9000)),
        ];
        let selection = select(&bids, &rules(Mode::Exclusive, 3, 0), ALL, Money::ZERO);
        assert_eq!(selection.sale_type, Some(SaleType::Exclusive));
        assert_eq!(winner_ids(&selection), [2]);
        assert_eq!(
            selection.losers,
            [
                Loser {
                    contract_id: Uuid::from_u128(1),
                    reason: DeclineReason::Outbid
                },
                Loser {
                    contract_id: Uuid::from_u128(3),
                    reason: DeclineReason::Outbid
                },
            ]
        );
    }

    #[test]
    fn multisell_sells_up_to_max_buyers_one_contract_per_buyer() {
        let bids = [
            bid(1, 1, None, Some(1000)),
            bid(2, 1, None, Some(1500)),
            bid(3, 2, None, Some(1200)),
            bid(4, 3, None, Some(1100)),
            bid(5, 4, None, Some(900)),
        ];
        let selection = select(&bids, &rules(Mode::Multisell, 3, 0), ALL, Money::ZERO);
        assert_eq!(selection.sale_type, Some(SaleType::Shared));
        assert_eq!(winner_ids(&selection), [2, 3, 4]);
        assert_eq!(selection.total_payout(), cents(3800));
        assert_eq!(selection.losers.len(), 2);
    }

    #[test]
    fn hybrid_sells_exclusive_at_the_threshold_else_shared_else_exclusive_anyway() {
        let bids = [
            bid(1, 1, Some(2500), Some(1000)),
            bid(2, 2, None, Some(1200)),
        ];
        let at_floor = select(&bids, &rules(Mode::Hybrid, 3, 2500), ALL, Money::ZERO);
        assert_eq!(
            (at_floor.sale_type, winner_ids(&at_floor)),
            (Some(SaleType::Exclusive), vec![1])
        );
        let below = select(&bids, &rules(Mode::Hybrid, 3, 2501), ALL, Money::ZERO);
        assert_eq!(
            (below.sale_type, winner_ids(&below)),
            (Some(SaleType::Shared), vec![2, 1])
        );
        let exclusive_only = [bid(1, 1, Some(100), None)];
        let fallback = select(
            &exclusive_only,
            &rules(Mode::Hybrid, 3, 2500),
            ALL,
            Money::ZERO,
        );
        assert_eq!(
            (fallback.sale_type, winner_ids(&fallback)),
            (Some(SaleType::Exclusive), vec![1])
        );
    }

    #[test]
    fn optimize_sells_whichever_earns_more_and_ties_go_exclusive() {
        let bids = [
            bid(1, 1, Some(3000), Some(1000)),
            bid(2, 2, None, Some(1000)),
            bid(3, 3, None, Some(1000)),
        ];
        let tie = select(&bids, &rules(Mode::Optimize, 3, 0), ALL, Money::ZERO);
        assert_eq!(
            (tie.sale_type, winner_ids(&tie)),
            (Some(SaleType::Exclusive), vec![1])
        );
        let shared_more = select(
            &[
                bids[0].clone(),
                bids[1].clone(),
                bids[2].clone(),
                bid(4, 4, None, Some(1)),
            ],
            &rules(Mode::Optimize, 4, 0),
            ALL,
            Money::ZERO,
        );
        assert_eq!(
            (shared_more.sale_type, winner_ids(&shared_more)),
            (Some(SaleType::Shared), vec![1, 2, 3, 4])
        );
        let only_two_count = select(&bids, &rules(Mode::Optimize, 2, 0), ALL, Money::ZERO);
        assert_eq!(only_two_count.sale_type, Some(SaleType::Exclusive));
        let no_exclusive = select(&bids[1..], &rules(Mode::Optimize, 2, 0), ALL, Money::ZERO);
        assert_eq!(no_exclusive.sale_type, Some(SaleType::Shared));
    }

    #[test]
    fn ties_break_by_priority_then_longest_without_a_sale_then_id() {
        let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let mut a = bid(9, 1, Some(1000), None);
        let mut b = bid(8, 2, Some(1000), None);
        let mut c = bid(7, 3, Some(1000), None);
        let mut d = bid(6, 4, Some(1000), None);
        a.priority = 1;
        b.last_sold_at = t("2026-01-01T00:00:00Z");
        c.last_sold_at = t("2026-02-01T00:00:00Z");
        d.last_sold_at = t("2026-02-01T00:00:00Z");
        let bids = [d.clone(), c.clone(), b.clone(), a.clone()];
        let mut order = Vec::new();
        let mut remaining = bids.to_vec();
        while !remaining.is_empty() {
            let selection = select(&remaining, &rules(Mode::Exclusive, 1, 0), ALL, Money::ZERO);
            let id = selection.winners[0].contract_id;
            order.push(id.as_u128());
            remaining.retain(|b| b.contract_id != id);
        }
        // a (priority), b (sold longest ago), then c and d (same time) by id: d (6) before c (7).
        assert_eq!(order, [9, 8, 6, 7]);
        let never = bid(99, 5, Some(1000), None);
        let selection = select(&[b, never], &rules(Mode::Exclusive, 1, 0), ALL, Money::ZERO);
        assert_eq!(winner_ids(&selection), [99]);
    }

    #[test]
    fn the_floor_removes_sale_types_so_the_next_best_wins() {
        let rule = PayoutRule::Revshare { percent_bp: 5000 };
        let bids = [
            bid(1, 1, Some(5000), Some(900)),
            bid(2, 2, Some(1000), Some(1200)),
            bid(3, 3, Some(100), Some(100)),
        ];
        // Floor 5.00: bid 1's shared (4.50) and bid 2's exclusive (5.00 ok) … bid 3 has nothing.
        let selection = select(&bids, &rules(Mode::Multisell, 3, 0), rule, cents(500));
        assert_eq!(winner_ids(&selection), [2]);
        assert_eq!(selection.winners[0].payout, cents(600));
        assert_eq!(
            selection.losers,
            [
                Loser {
                    contract_id: Uuid::from_u128(1),
                    reason: DeclineReason::Outbid
                },
                Loser {
                    contract_id: Uuid::from_u128(3),
                    reason: DeclineReason::BelowFloor
                },
            ]
        );
        // A zero payout is below any floor, even a zero one.
        let margin = PayoutRule::Margin {
            amount: cents(1000),
        };
        let selection = select(&bids, &rules(Mode::Exclusive, 3, 0), margin, Money::ZERO);
        assert_eq!(winner_ids(&selection), [1]);
        assert_eq!(selection.losers[1].reason, DeclineReason::BelowFloor);
    }

    #[test]
    fn runner_ups_are_the_outbid_bids_for_the_sale_type_best_first() {
        let rule = PayoutRule::Revshare { percent_bp: 5000 };
        let bids = [
            bid(1, 1, Some(3000), Some(2000)),
            bid(2, 2, Some(4000), None),
            bid(3, 3, None, Some(9000)),
            bid(4, 4, Some(3500), None),
            bid(5, 5, Some(900), None),
        ];
        // Exclusive sells 2; 4 then 1 may take its place; 3 has no exclusive price and 5's
        // payout (4.50) is below the floor.
        let selection = select(&bids, &rules(Mode::Exclusive, 3, 0), rule, cents(500));
        let ids: Vec<u128> = selection
            .runner_ups
            .iter()
            .map(|r| r.contract_id.as_u128())
            .collect();
        assert_eq!(ids, [4, 1]);
        assert_eq!(selection.runner_ups[0].price, cents(3500));
        assert_eq!(selection.runner_ups[0].payout, cents(1750));
        assert_eq!(selection.runner_ups[1].sale_type, SaleType::Exclusive);
        let shared = select(&bids, &rules(Mode::Multisell, 1, 0), rule, cents(500));
        assert_eq!(winner_ids(&shared), [3]);
        assert_eq!(shared.runner_ups.len(), 1);
        assert_eq!(shared.runner_ups[0].price, cents(2000));
    }

    #[test]
    fn nothing_to_sell_is_no_sale() {
        let empty = select(&[], &rules(Mode::Hybrid, 3, 0), ALL, Money::ZERO);
        assert_eq!(
            empty,
            Selection {
                sale_type: None,
                winners: Vec::new(),
                losers: Vec::new(),
                runner_ups: Vec::new(),
            }
        );
        let shared_only = select(
            &[bid(1, 1, None, Some(100))],
            &rules(Mode::Exclusive, 3, 0),
            ALL,
            Money::ZERO,
        );
        assert_eq!(shared_only.sale_type, None);
        assert_eq!(shared_only.losers[0].reason, DeclineReason::Outbid);
        assert_eq!(shared_only.total_payout(), Money::ZERO);
    }

    #[test]
    fn a_waterfall_sells_to_the_highest_priority_tier_before_the_best_price() {
        let mut cheap = bid(1, 1, Some(1000), Some(500));
        cheap.priority = 2;
        let mut mid = bid(2, 2, Some(3000), Some(1500));
        mid.priority = 1;
        let rich = bid(3, 3, Some(9000), Some(4000));
        let bids = [rich, mid, cheap];
        let auction = select(&bids, &rules(Mode::Exclusive, 1, 0), ALL, Money::ZERO);
        assert_eq!(winner_ids(&auction), [3]);
        let waterfall = routed(Mode::Exclusive, 1, Distribution::Waterfall, Order::Price);
        let selection = select(&bids, &waterfall, ALL, Money::ZERO);
        assert_eq!(winner_ids(&selection), [1]);
        assert_eq!(selection.winners[0].price, cents(1000));
        // The runner-ups follow the tiers too: 2, then 3.
        let runner_ups: Vec<u128> = selection
            .runner_ups
            .iter()
            .map(|r| r.contract_id.as_u128())
            .collect();
        assert_eq!(runner_ups, [2, 3]);
        // Within a tier, the price decides; multisell takes the first max_buyers in order.
        let mut same_tier = bids.clone();
        same_tier[0].priority = 1;
        let multisell = routed(Mode::Multisell, 2, Distribution::Waterfall, Order::Price);
        let shared = select(&same_tier, &multisell, ALL, Money::ZERO);
        assert_eq!(winner_ids(&shared), [1, 3]);
        assert_eq!(shared.winners[1].price, cents(4000));
    }

    #[test]
    fn round_robin_rotates_among_a_tier_whatever_the_price() {
        let mut bids = vec![
            bid(1, 1, Some(9000), None),
            bid(2, 2, Some(1000), None),
            bid(3, 3, Some(5000), None),
        ];
        let offer = routed(Mode::Exclusive, 1, Distribution::Auction, Order::RoundRobin);
        let mut order = Vec::new();
        for hour in 0..6 {
            let selection = select(&bids, &offer, ALL, Money::ZERO);
            let id = selection.winners[0].contract_id;
            order.push(id.as_u128());
            let sold = bids.iter_mut().find(|b| b.contract_id == id).unwrap();
            sold.last_sold_at = DateTime::from_timestamp(hour * 3600, 0);
        }
        // Never sold first (by id), then the longest without a sale.
        assert_eq!(order, [1, 2, 3, 1, 2, 3]);
        // A higher priority still comes first; the floor still removes a bid.
        bids[2].priority = 1;
        let selection = select(&bids, &offer, ALL, Money::ZERO);
        assert_eq!(winner_ids(&selection), [3]);
        let selection = select(&bids, &offer, ALL, cents(5001));
        assert_eq!(winner_ids(&selection), [1]);
    }

    #[test]
    fn weighted_draws_follow_the_weights_and_replay_by_seed() {
        let weights = [100u32, 300, 600];
        let bids: Vec<Bid> = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Bid {
                weight,
                ..bid(
                    i as u128 + 1,
                    i as u128 + 1,
                    Some(1000 * (3 - i as i64)),
                    None,
                )
            })
            .collect();
        let offer = routed(Mode::Exclusive, 1, Distribution::Auction, Order::Weighted);
        let mut wins = [0u32; 3];
        for seed in 0..10_000u64 {
            let selection = select_seeded(&bids, &offer, ALL, Money::ZERO, seed);
            wins[selection.winners[0].contract_id.as_u128() as usize - 1] += 1;
            // The runner-ups are the rest of the same draw.
            assert_eq!(selection.runner_ups.len(), 2);
        }
        for (won, weight) in wins.iter().zip(weights) {
            let share = f64::from(*won) / 10_000.0;
            let expected = f64::from(weight) / 1000.0;
            assert!(
                (share - expected).abs() < 0.02,
                "won {share:.3} of the auctions, weight share {expected:.3}: {wins:?}"
            );
        }
        // The same seed ranks the same way.
        let a = select_seeded(&bids, &offer, ALL, Money::ZERO, 42);
        assert_eq!(a, select_seeded(&bids, &offer, ALL, Money::ZERO, 42));
        assert_eq!(seed_of(Uuid::from_u128(7 << 64 | 5)), 2);
    }

    #[test]
    fn a_zero_weight_sells_only_when_no_other_contract_of_its_tier_bids() {
        let mut zero = bid(1, 1, Some(9000), None);
        zero.weight = 0;
        let other = bid(2, 2, Some(100), None);
        let mut lower_tier = bid(3, 3, Some(100), None);
        lower_tier.priority = -1;
        let offer = routed(Mode::Exclusive, 1, Distribution::Waterfall, Order::Weighted);
        for seed in 0..200 {
            let selection = select_seeded(
                &[zero.clone(), other.clone()],
                &offer,
                ALL,
                Money::ZERO,
                seed,
            );
            assert_eq!(winner_ids(&selection), [2]);
            let selection = select_seeded(
                &[zero.clone(), lower_tier.clone()],
                &offer,
                ALL,
                Money::ZERO,
                seed,
            );
            assert_eq!(winner_ids(&selection), [1]);
        }
    }

    #[test]
    fn a_waterfall_refuses_hybrid_and_optimize() {
        for mode in [Mode::Hybrid, Mode::Optimize] {
            let errors = routed(mode, 3, Distribution::Waterfall, Order::Price)
                .validate()
                .unwrap_err();
            assert_eq!(errors[0].pointer, "/distribution");
        }
        for mode in [Mode::Exclusive, Mode::Multisell] {
            assert!(
                routed(mode, 3, Distribution::Waterfall, Order::Weighted)
                    .validate()
                    .is_ok()
            );
        }
        assert_eq!(rules(Mode::Hybrid, 3, 0).routing_label(), None);
        let label = routed(
            Mode::Exclusive,
            3,
            Distribution::Waterfall,
            Order::RoundRobin,
        )
        .routing_label();
        assert_eq!(label, Some("waterfall/round_robin"));
        assert_eq!(
            crate::auction::parse_routing_label(label),
            (Distribution::Waterfall, Order::RoundRobin)
        );
        assert_eq!(
            crate::auction::parse_routing_label(None),
            (Distribution::Auction, Order::Price)
        );
    }

    fn arb_bids() -> impl Strategy<Value = Vec<Bid>> {
        let price = proptest::option::weighted(0.8, 0i64..5000);
        let one = (
            0u128..6,
            -1i32..2,
            proptest::option::of(0i64..4),
            price.clone(),
            price,
        );
        proptest::collection::vec((one, 0u32..4), 0..24).prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(
                    |(i, ((buyer, priority, sold, exclusive, shared), weight))| Bid {
                        contract_id: Uuid::from_u128(1000 + i as u128),
                        buyer_id: Uuid::from_u128(buyer),
                        priority,
                        last_sold_at: sold.and_then(|h| DateTime::from_timestamp(h * 3600, 0)),
                        exclusive: exclusive.map(cents),
                        shared: shared.map(cents),
                        weight: weight * 100,
                    },
                )
                .collect()
        })
    }

    fn arb_rule() -> impl Strategy<Value = PayoutRule> {
        prop_oneof![
            (0u32..=10_000).prop_map(|percent_bp| PayoutRule::Revshare { percent_bp }),
            (0i64..3000).prop_map(|c| PayoutRule::Margin { amount: cents(c) }),
            (0i64..3000).prop_map(|c| PayoutRule::Fixed { amount: cents(c) }),
        ]
    }

    fn arb_mode() -> impl Strategy<Value = Mode> {
        prop_oneof![
            Just(Mode::Exclusive),
            Just(Mode::Multisell),
            Just(Mode::Hybrid),
            Just(Mode::Optimize)
        ]
    }

    fn arb_routing() -> impl Strategy<Value = (Distribution, Order)> {
        let distribution = prop_oneof![Just(Distribution::Auction), Just(Distribution::Waterfall)];
        let strategy = prop_oneof![
            Just(Order::Price),
            Just(Order::RoundRobin),
            Just(Order::Weighted)
        ];
        (distribution, strategy)
    }

    proptest! {
        #[test]
        fn selections_keep_every_rule(
            bids in arb_bids(),
            mode in arb_mode(),
            max_buyers in 1u32..5,
            exclusive_floor in 0i64..5000,
            rule in arb_rule(),
            floor in 0i64..1500,
            (distribution, strategy) in arb_routing(),
            seed in any::<u64>(),
        ) {
            let floor = cents(floor);
            let offer = OfferRules {
                distribution,
                strategy,
                ..rules(mode, max_buyers, exclusive_floor)
            };
            let ranking = Ranking { distribution, strategy, seed };
            let rank_key = |b: &Bid, price: Money| ranking.key(b, price);
            let selection = select_seeded(&bids, &offer, rule, floor, seed);
            // The same ping ranks the same way.
            prop_assert_eq!(&selection, &select_seeded(&bids, &offer, rule, floor, seed));
            let eligible = |b: &Bid, t: SaleType| {
                let price = if t == SaleType::Exclusive { b.exclusive } else { b.shared };
                price.filter(|p| meets_floor(rule.payout(*p), floor))
            };

            // Every contract ends exactly once, as a winner or a loser with the right reason.
            prop_assert_eq!(selection.winners.len() + selection.losers.len(), bids.len());
            for loser in &selection.losers {
                let b = bids.iter().find(|b| b.contract_id == loser.contract_id).unwrap();
                let any = eligible(b, SaleType::Exclusive).is_some() || eligible(b, SaleType::Shared).is_some();
                prop_assert_eq!(loser.reason, if any { DeclineReason::Outbid } else { DeclineReason::BelowFloor });
            }

            prop_assert_eq!(selection.sale_type.is_none(), selection.winners.is_empty());
            let Some(sale_type) = selection.sale_type else {
                // Nothing sold: nothing eligible for what the mode could sell.
                let exclusive_any = bids.iter().any(|b| eligible(b, SaleType::Exclusive).is_some());
                let shared_any = bids.iter().any(|b| eligible(b, SaleType::Shared).is_some());
                prop_assert!(!(exclusive_any && mode != Mode::Multisell));
                prop_assert!(!(shared_any && mode != Mode::Exclusive));
                return Ok(());
            };
            prop_assert!(mode.sale_types().contains(&sale_type));
            for w in &selection.winners {
                let b = bids.iter().find(|b| b.contract_id == w.contract_id).unwrap();
                prop_assert_eq!(w.sale_type, sale_type);
                prop_assert_eq!(Some(w.price), eligible(b, sale_type));
                prop_assert_eq!(w.payout, rule.payout(w.price));
                prop_assert!(w.payout <= w.price && meets_floor(w.payout, floor));
                prop_assert_eq!(w.buyer_id, b.buyer_id);
            }
            let winner_buyers: HashSet<Uuid> = selection.winners.iter().map(|w| w.buyer_id).collect();
            prop_assert_eq!(winner_buyers.len(), selection.winners.len());
            prop_assert!(selection.winners.len() <= max_buyers as usize);
            if sale_type == SaleType::Exclusive {
                prop_assert_eq!(selection.winners.len(), 1);
            }
            // Runner-ups: exactly the non-winners with an eligible price, ranked, none above
            // the last winner's rank unless its buyer already won.
            let eligible_losers = bids.iter().filter(|b| {
                eligible(b, sale_type).is_some()
                    && !selection.winners.iter().any(|w| w.contract_id == b.contract_id)
            });
            prop_assert_eq!(eligible_losers.count().min(MAX_RUNNER_UPS), selection.runner_ups.len());
            for pair in selection.runner_ups.windows(2) {
                let key = |r: &Winner| {
                    rank_key(bids.iter().find(|b| b.contract_id == r.contract_id).unwrap(), r.price)
                };
                prop_assert!(key(&pair[0]) < key(&pair[1]));
            }
            for r in &selection.runner_ups {
                prop_assert_eq!(r.sale_type, sale_type);
                prop_assert_eq!(r.payout, rule.payout(r.price));
                prop_assert!(meets_floor(r.payout, floor));
            }

            // No eligible non-winner of the sold type beats a winner, unless its buyer already won.
            let worst = selection.winners.last().unwrap();
            let worst_bid = bids.iter().find(|b| b.contract_id == worst.contract_id).unwrap();
            let full = sale_type == SaleType::Exclusive || selection.winners.len() == max_buyers as usize;
            for b in &bids {
                let Some(price) = eligible(b, sale_type) else { continue };
                if winner_buyers.contains(&b.buyer_id) {
                    continue;
                }
                prop_assert!(full, "an eligible buyer was left out of a sale with room");
                prop_assert!(rank_key(b, price) > rank_key(worst_bid, worst.price));
            }

            // The priority tiers come first in a waterfall and in every strategy but price.
            if distribution == Distribution::Waterfall || strategy != Order::Price {
                let ranked: Vec<i32> = selection.winners.iter().chain(&selection.runner_ups)
                    .map(|w| bids.iter().find(|b| b.contract_id == w.contract_id).unwrap().priority)
                    .collect();
                if sale_type == SaleType::Exclusive {
                    prop_assert!(ranked.windows(2).all(|p| p[0] >= p[1]));
                }
            }

            // The mode's choice between the two sale types, on the ranking's best exclusive bid
            // (the highest price when the strategy is price in an auction).
            let best = |t: SaleType| bids.iter().filter_map(|b| eligible(b, t)).max();
            let exclusive_best = bids
                .iter()
                .filter_map(|b| eligible(b, SaleType::Exclusive).map(|p| (rank_key(b, p), p)))
                .min()
                .map(|(_, p)| p);
            if distribution == Distribution::Auction && strategy == Order::Price {
                prop_assert_eq!(exclusive_best, best(SaleType::Exclusive));
            }
            match mode {
                Mode::Exclusive => prop_assert_eq!(sale_type, SaleType::Exclusive),
                Mode::Multisell => prop_assert_eq!(sale_type, SaleType::Shared),
                Mode::Hybrid => {
                    let over_floor = exclusive_best.is_some_and(|p| p >= offer.exclusive_floor);
                    let no_shared = best(SaleType::Shared).is_none();
                    let expected = if over_floor || no_shared { SaleType::Exclusive } else { SaleType::Shared };
                    prop_assert_eq!(sale_type, expected);
                }
                Mode::Optimize => {
                    let total = selection.winners.iter().map(|w| w.price.cents()).sum::<i64>();
                    if sale_type == SaleType::Shared {
                        prop_assert!(exclusive_best.is_none_or(|p| p.cents() < total));
                    } else {
                        // The shared alternative: each buyer's first shared bid in the ranking
                        // (its best price when the strategy is price), the first max_buyers.
                        let mut ranked: Vec<(RankKey, Uuid, i64)> = bids
                            .iter()
                            .filter_map(|b| {
                                let p = eligible(b, SaleType::Shared)?;
                                Some((rank_key(b, p), b.buyer_id, p.cents()))
                            })
                            .collect();
                        ranked.sort_unstable();
                        let mut seen = HashSet::new();
                        let shared_total: i64 = ranked
                            .into_iter()
                            .filter(|(_, buyer, _)| seen.insert(*buyer))
                            .take(max_buyers as usize)
                            .map(|(_, _, p)| p)
                            .sum();
                        prop_assert!(total >= shared_total);
                    }
                }
            }
        }
    }
}
