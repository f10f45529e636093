//! One contract's own decision on a ping (SPEC §5.2): the checks that need nothing but the
//! contract, its buyer's state and the lead, plus the RTB answer's parsing and checking.
//!
//! The caller reads the state (buyer status and balance, cap usage, dedup hits) in batches,
//! calls [`CompiledContract::evaluate`] for every contract, makes the RTB calls the contracts
//! ask for, feeds each answer to [`parse_rtb_answer`] and [`CompiledContract::check_rtb_bid`],
//! then hands every bid to [`super::select::select`].

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use std::borrow::Cow;

use crate::integration::response::{Answer, Locator, Outcome, Unreadable};
use crate::money::Money;

use super::caps::{BuyerCapRoom, CompiledCaps, PeriodUsage};
use super::config::{ConfigError, Pricing, RtbPricing, SaleType, Status};
use super::filters::CompiledFilter;
use super::schedule::CompiledSchedule;
use super::schema::{CompiledSchema, PreparedLead};
use super::select::Bid;

text_codes! {
    /// Why a contract did not win, as shown in `lead_distribution.reason` (SPEC §5.2). The
    /// database keeps the codes as its enum `decline_reason`: a new reason needs its migration
    /// (`ALTER TYPE decline_reason ADD VALUE`), or every ping carrying it fails to record.
    pub enum DeclineReason {
        ContractPaused,
        BuyerPaused,
        /// The consumer is on one of the contract's or its offer's suppression lists (the
        /// detail names the list): docs/suppression.md.
        Suppressed,
        Filtered,
        OutsideSchedule,
        CapReached,
        Duplicate,
        InsufficientFunds,
        NoPriceForSaleType,
        /// The contract's RTB or delivery endpoint kept failing: its breaker is open, and no
        /// call is made until it lets one through (`buyers::breaker`).
        BuyerUnavailable,
        /// More RTB contracts were eligible than a ping calls (`max_rtb_calls_per_ping`), and this
        /// one was ranked beyond the bound: no call was made.
        RtbLimit,
        RtbNoBid,
        RtbTimeout,
        RtbError,
        RtbInvalid,
        BelowFloor,
        /// Bid but did not win.
        Outbid,
    }
}

impl DeclineReason {
    /// Every reason, in the order a contract is checked (`Outbid` last).
    pub const ALL: [DeclineReason; 17] = [
        DeclineReason::ContractPaused,
        DeclineReason::BuyerPaused,
        DeclineReason::Suppressed,
        DeclineReason::Filtered,
        DeclineReason::OutsideSchedule,
        DeclineReason::CapReached,
        DeclineReason::Duplicate,
        DeclineReason::InsufficientFunds,
        DeclineReason::NoPriceForSaleType,
        DeclineReason::BuyerUnavailable,
        DeclineReason::RtbLimit,
        DeclineReason::RtbNoBid,
        DeclineReason::RtbTimeout,
        DeclineReason::RtbError,
        DeclineReason::RtbInvalid,
        DeclineReason::BelowFloor,
        DeclineReason::Outbid,
    ];
}

/// A contract's decline: the reason code and, where useful, a detail for the operator
/// (the failing filter's pointer, the cap reached, the RTB status…). Never PII.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decline {
    pub reason: DeclineReason,
    pub detail: Option<String>,
}

impl Decline {
    fn new(reason: DeclineReason) -> Decline {
        Decline {
            reason,
            detail: None,
        }
    }

    pub fn with(reason: DeclineReason, detail: impl Into<String>) -> Decline {
        Decline {
            reason,
            detail: Some(detail.into()),
        }
    }
}

/// A contract's price per sale type (`None`: no bid for that type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Prices {
    pub exclusive: Option<Money>,
    pub shared: Option<Money>,
}

impl Prices {
    /// The price for `sale_type`.
    pub fn get(&self, sale_type: SaleType) -> Option<Money> {
        match sale_type {
            SaleType::Exclusive => self.exclusive,
            SaleType::Shared => self.shared,
        }
    }

    fn is_empty(&self) -> bool {
        self.exclusive.is_none() && self.shared.is_none()
    }

    fn cheapest(&self) -> Option<Money> {
        match (self.exclusive, self.shared) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keeps only the prices of the sale types in `sale_types`.
    fn only(self, sale_types: &[SaleType]) -> Prices {
        Prices {
            exclusive: self
                .exclusive
                .filter(|_| sale_types.contains(&SaleType::Exclusive)),
            shared: self
                .shared
                .filter(|_| sale_types.contains(&SaleType::Shared)),
        }
    }

    /// Drops the prices `keep` refuses.
    fn retain(&mut self, mut keep: impl FnMut(Money) -> bool) {
        for slot in [&mut self.exclusive, &mut self.shared] {
            if slot.is_some_and(|price| !keep(price)) {
                *slot = None;
            }
        }
    }
}

/// A contract row as loaded: its columns, JSON ones unparsed (money in cents).
#[derive(Debug, Clone, PartialEq)]
pub struct ContractConfig {
    pub id: Uuid,
    pub buyer_id: Uuid,
    pub status: Status,
    pub priority: i32,
    pub pricing: Value,
    pub filters: Value,
    /// `null`: always open.
    pub schedule: Value,
    pub caps: Value,
}

/// A contract ready for auctions: everything parsed, regexes and timezones compiled.
#[derive(Debug)]
pub struct CompiledContract {
    id: Uuid,
    buyer_id: Uuid,
    status: Status,
    priority: i32,
    pricing: Pricing,
    filter: CompiledFilter,
    schedule: CompiledSchedule,
    caps: CompiledCaps,
}

/// What the caller read about a contract's buyer and usage before the auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractState {
    pub buyer_status: Status,
    pub balance: Money,
    /// How far below zero the balance may go.
    pub credit_limit: Money,
    /// The contract's usage in each current cap period.
    pub usage: PeriodUsage,
    /// The buyer's dedup found this consumer within the contract's `dedup_days`.
    pub duplicate: bool,
    /// What the buyer's own caps leave, across all its contracts.
    pub buyer_caps: BuyerCapRoom,
    /// The first of the contract's suppression lists that holds the consumer.
    pub suppressed_by: Option<Uuid>,
}

impl ContractState {
    /// What the buyer can still spend: balance plus credit limit, in cents.
    fn available(&self) -> i64 {
        self.balance
            .cents()
            .saturating_add(self.credit_limit.cents())
    }
}

/// The ping as every contract sees it.
#[derive(Debug, Clone, Copy)]
pub struct PingContext<'a> {
    pub lead: &'a PreparedLead<'a>,
    pub now: DateTime<Utc>,
    pub tenant_tz: Tz,
    /// The sale types the offer's mode sells ([`super::config::Mode::sale_types`]).
    pub sale_types: &'static [SaleType],
}

/// What a contract's checks that read no state found ([`CompiledContract::precheck`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// The contract or its buyer is paused: declined, whatever the state.
    Paused(Decline),
    /// Filtered out or outside its schedule: declined so, unless the consumer is suppressed
    /// (a check that comes before, on the state).
    Failed(Decline),
    Passed,
}

/// A contract's local decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    Declined(Decline),
    /// A fixed-price contract bids these prices (only sale types the mode sells, affordable,
    /// within the caps).
    Priced(Prices),
    /// An RTB contract passed its checks: call the buyer.
    CallRtb,
}

/// A buyer's RTB answer, read but not yet checked against the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtbBid {
    pub exclusive: Option<Money>,
    pub shared: Option<Money>,
    /// The buyer's own reference, echoed on delivery.
    pub reference: Option<String>,
}

impl CompiledContract {
    /// Compiles a contract against its offer's schema; errors point at `/pricing`, `/filters`,
    /// `/schedule` and `/caps`, all of them reported at once.
    pub fn compile(
        config: &ContractConfig,
        schema: &CompiledSchema,
    ) -> Result<CompiledContract, Vec<ConfigError>> {
        let pricing = Pricing::parse(&config.pricing);
        let filter = CompiledFilter::compile(&config.filters, schema);
        let schedule = CompiledSchedule::compile(&config.schedule);
        let caps = CompiledCaps::compile(&config.caps);
        match (pricing, filter, schedule, caps) {
            (Ok(pricing), Ok(filter), Ok(schedule), Ok(caps)) => Ok(CompiledContract {
                id: config.id,
                buyer_id: config.buyer_id,
                status: config.status,
                priority: config.priority,
                pricing,
                filter,
                schedule,
                caps,
            }),
            (pricing, filter, schedule, caps) => {
                Err([pricing.err(), filter.err(), schedule.err(), caps.err()]
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect())
            }
        }
    }

    /// The contract's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The buyer's id.
    pub fn buyer_id(&self) -> Uuid {
        self.buyer_id
    }

    /// The tie-breaking priority (higher first).
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Whether the contract takes part (`active`) or not (`paused`).
    pub fn status(&self) -> Status {
        self.status
    }

    /// The pricing: fixed prices, or the RTB endpoint to call.
    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// The caps, whose current periods the caller reads usage for.
    pub fn caps(&self) -> &CompiledCaps {
        &self.caps
    }

    /// The bid this contract enters into selection at `prices`.
    pub fn bid(&self, prices: Prices, last_sold_at: Option<DateTime<Utc>>) -> Bid {
        Bid {
            contract_id: self.id,
            buyer_id: self.buyer_id,
            priority: self.priority,
            last_sold_at,
            exclusive: prices.exclusive,
            shared: prices.shared,
            weight: super::select::DEFAULT_WEIGHT,
        }
    }

    /// Runs the checks of SPEC §5.2 in order, up to the price (fixed) or the RTB call.
    pub fn evaluate(&self, state: &ContractState, ping: &PingContext<'_>) -> Evaluation {
        self.evaluate_after(self.precheck(state.buyer_status, ping), state, ping)
    }

    /// The checks that read only the ping and the configuration (the contract's and its
    /// buyer's status, the filters, the schedule), so that they can run before the state is
    /// read; [`Self::evaluate_after`] runs the rest, in SPEC §5.2's order.
    pub fn precheck(&self, buyer_status: Status, ping: &PingContext<'_>) -> Precheck {
        if self.status != Status::Active {
            return Precheck::Paused(Decline::new(DeclineReason::ContractPaused));
        }
        if buyer_status != Status::Active {
            return Precheck::Paused(Decline::new(DeclineReason::BuyerPaused));
        }
        if let Err(pointer) = self.filter.evaluate(ping.lead) {
            return Precheck::Failed(Decline::with(DeclineReason::Filtered, pointer));
        }
        if !self.schedule.is_open(ping.now, ping.tenant_tz) {
            return Precheck::Failed(Decline::new(DeclineReason::OutsideSchedule));
        }
        Precheck::Passed
    }

    /// The checks after [`Self::precheck`], which ran on the same ping and configuration.
    pub fn evaluate_after(
        &self,
        precheck: Precheck,
        state: &ContractState,
        ping: &PingContext<'_>,
    ) -> Evaluation {
        match self.check(precheck, state, ping) {
            Ok(evaluation) => evaluation,
            Err(decline) => Evaluation::Declined(decline),
        }
    }

    fn check(
        &self,
        precheck: Precheck,
        state: &ContractState,
        ping: &PingContext<'_>,
    ) -> Result<Evaluation, Decline> {
        // The suppression lists (read with the state) come between the statuses and the filters.
        let failed = match precheck {
            Precheck::Paused(decline) => return Err(decline),
            Precheck::Failed(decline) => Some(decline),
            Precheck::Passed => None,
        };
        if let Some(list) = state.suppressed_by {
            return Err(Decline::with(DeclineReason::Suppressed, list.to_string()));
        }
        if let Some(decline) = failed {
            return Err(decline);
        }
        if let Some(cap) = self.caps.first_full(&state.usage) {
            return Err(Decline::with(DeclineReason::CapReached, cap.label()));
        }
        if let Some(detail) = state.buyer_caps.full() {
            return Err(Decline::with(DeclineReason::CapReached, detail));
        }
        let fixed = match &self.pricing {
            Pricing::Fixed(fixed) => fixed,
            Pricing::Rtb(_) => {
                if state.duplicate {
                    return Err(Decline::new(DeclineReason::Duplicate));
                }
                if state.available() <= 0 {
                    return Err(Decline::new(DeclineReason::InsufficientFunds));
                }
                return Ok(Evaluation::CallRtb);
            }
        };
        let mut prices = Prices {
            exclusive: fixed.exclusive,
            shared: fixed.shared,
        }
        .only(ping.sale_types);
        // A spend cap drops the sale types whose price would overflow it; the cheapest price
        // names the cap when none remains (caps are monotonic in the price).
        if let Some(cheapest) = prices.cheapest()
            && let Some(cap) = self.caps.first_blocking(&state.usage, cheapest)
        {
            return Err(Decline::with(DeclineReason::CapReached, cap.label()));
        }
        prices.retain(|price| self.caps.first_blocking(&state.usage, price).is_none());
        if let Some(cheapest) = prices.cheapest()
            && let Some(detail) = state.buyer_caps.blocking(cheapest)
        {
            return Err(Decline::with(DeclineReason::CapReached, detail));
        }
        prices.retain(|price| state.buyer_caps.blocking(price).is_none());
        if state.duplicate {
            return Err(Decline::new(DeclineReason::Duplicate));
        }
        if !prices.is_empty() {
            prices.retain(|price| price.cents() <= state.available());
            if prices.is_empty() {
                return Err(Decline::new(DeclineReason::InsufficientFunds));
            }
        }
        if prices.is_empty() {
            return Err(Decline::new(DeclineReason::NoPriceForSaleType));
        }
        Ok(Evaluation::Priced(prices))
    }

    /// Checks an RTB answer against the contract (SPEC §3.1, §5.2): bids are cut to `max_bid`,
    /// sale types the mode does not sell are dropped, then those the buyer cannot afford
    /// (`insufficient_funds`) and those a spend cap cannot hold (`cap_reached`), in that order.
    pub fn check_rtb_bid(
        &self,
        state: &ContractState,
        sale_types: &[SaleType],
        bid: &RtbBid,
    ) -> Result<Prices, Decline> {
        let max_bid = match &self.pricing {
            Pricing::Rtb(rtb) => rtb.max_bid,
            Pricing::Fixed(_) => None,
        };
        let cut = |price: Option<Money>| price.map(|p| max_bid.map_or(p, |max| p.min(max)));
        let mut prices = Prices {
            exclusive: cut(bid.exclusive),
            shared: cut(bid.shared),
        }
        .only(sale_types);
        if prices.is_empty() {
            return Err(Decline::with(
                DeclineReason::RtbNoBid,
                "no bid for the sale types offered",
            ));
        }
        prices.retain(|price| price.cents() <= state.available());
        if prices.is_empty() {
            return Err(Decline::new(DeclineReason::InsufficientFunds));
        }
        if let Some(cap) = prices
            .cheapest()
            .and_then(|p| self.caps.first_blocking(&state.usage, p))
        {
            return Err(Decline::with(DeclineReason::CapReached, cap.label()));
        }
        prices.retain(|price| self.caps.first_blocking(&state.usage, price).is_none());
        if let Some(cheapest) = prices.cheapest()
            && let Some(detail) = state.buyer_caps.blocking(cheapest)
        {
            return Err(Decline::with(DeclineReason::CapReached, detail));
        }
        prices.retain(|price| state.buyer_caps.blocking(price).is_none());
        Ok(prices)
    }
}

/// Reads a buyer's RTB answer by the contract's response rules (docs/buyer-integrations.md,
/// "RTB call: the bid"; without rules, SPEC §3.1): a `status` rule decides first; else 204
/// is a no-bid and another non-2xx status `rtb_error`; a 2xx answer whose `no_bid` or
/// `rejected` condition holds is `rtb_no_bid` with the buyer's reason; else bids of 0 or absent
/// are `rtb_no_bid`, and an answer the format cannot parse, or a bid that is not a
/// non-negative amount, `rtb_invalid`. Bids are read exactly and truncated to the cent.
/// Timeouts and connection errors are the caller's.
pub fn parse_rtb_answer(status: u16, body: &[u8], pricing: &RtbPricing) -> Result<RtbBid, Decline> {
    let rules = pricing.response_rules();
    let body = Answer::decode(body, rules.format);
    let answer = Answer::new(&body, rules.format);
    let stated = || {
        let reason = rules.reason.as_ref().and_then(|at| answer.text_at(at))?;
        Some(format!(
            "buyer: {}",
            crate::buyers::clean_text(&reason, MAX_BUYER_REASON)
        ))
    };
    match rules.status(status) {
        Some(Outcome::NoBid | Outcome::Rejected) => {
            return Err(Decline {
                reason: DeclineReason::RtbNoBid,
                detail: Some(stated().unwrap_or_else(|| format!("HTTP {status}"))),
            });
        }
        // Only an RTB call's outcomes pass the configuration's check: this is `error`.
        Some(_) => {
            return Err(Decline::with(
                DeclineReason::RtbError,
                format!("HTTP {status}"),
            ));
        }
        None => {}
    }
    if status == 204 {
        return Err(Decline::new(DeclineReason::RtbNoBid));
    }
    if !(200..300).contains(&status) {
        return Err(Decline::with(
            DeclineReason::RtbError,
            format!("HTTP {status}"),
        ));
    }
    let unreadable = |what: Unreadable| {
        Decline::with(DeclineReason::RtbInvalid, format!("the answer is {what}"))
    };
    for condition in [&rules.no_bid, &rules.rejected].into_iter().flatten() {
        if answer.holds(condition).map_err(unreadable)? {
            return Err(Decline {
                reason: DeclineReason::RtbNoBid,
                detail: stated(),
            });
        }
    }
    let exclusive = read_bid(&answer, rules.exclusive_bid.as_ref(), "exclusive_bid")?;
    let shared = read_bid(&answer, rules.shared_bid.as_ref(), "shared_bid")?;
    if exclusive.is_none() && shared.is_none() {
        return Err(Decline::new(DeclineReason::RtbNoBid));
    }
    let reference = match &rules.reference {
        Some(at) => answer
            .find(at)
            .map_err(unreadable)?
            .and_then(|found| found.reference().map(Cow::into_owned)),
        None => None,
    };
    Ok(RtbBid {
        exclusive,
        shared,
        reference,
    })
}

/// Longest reason of a buyer's no-bid kept, in bytes.
const MAX_BUYER_REASON: usize = 256;

/// The bid at `locator` (the rule `key`): `None` when absent, `null`, empty or zero.
fn read_bid(
    answer: &Answer<'_>,
    locator: Option<&Locator>,
    key: &str,
) -> Result<Option<Money>, Decline> {
    let Some(locator) = locator else {
        return Ok(None);
    };
    let found = answer.find(locator).map_err(|what| {
        Decline::with(DeclineReason::RtbInvalid, format!("the answer is {what}"))
    })?;
    let Some(found) = found else {
        return Ok(None);
    };
    let label = || locator.label(key);
    let bid = found.amount().map_err(|_| {
        Decline::with(
            DeclineReason::RtbInvalid,
            format!("{} is not an amount", label()),
        )
    })?;
    if bid.is_some_and(Money::is_negative) {
        return Err(Decline::with(
            DeclineReason::RtbInvalid,
            format!("{} is negative", label()),
        ));
    }
    Ok(bid.filter(|b| *b > Money::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auction::caps::CapUsage;
    use crate::auction::config::{CapPeriod, Mode};
    use chrono_tz::America::New_York;
    use serde_json::{Map, json};

    fn schema() -> CompiledSchema {
        CompiledSchema::compile(&json!([
            { "name": "state", "type": "string", "required": true },
            { "name": "age", "type": "integer" },
            { "name": "email", "type": "email", "pii": true }
        ]))
        .unwrap()
    }

    fn config(pricing: Value) -> ContractConfig {
        ContractConfig {
            id: Uuid::from_u128(1),
            buyer_id: Uuid::from_u128(100),
            status: Status::Active,
            priority: 0,
            pricing,
            filters: json!([{ "field": "state", "op": "in", "value": ["TX", "OK"] }]),
            schedule: json!({ "days": { "wed": [["08:00", "18:00"]] } }),
            caps: json!([{ "period": "day", "max_leads": 10 }, { "period": "month", "max_spend_cents": 100000 }]),
        }
    }

    fn fixed(exclusive: Option<i64>, shared: Option<i64>) -> CompiledContract {
        let mut pricing = Map::new();
        pricing.insert("type".into(), json!("fixed"));
        if let Some(cents) = exclusive {
            pricing.insert("exclusive_cents".into(), json!(cents));
        }
        if let Some(cents) = shared {
            pricing.insert("shared_cents".into(), json!(cents));
        }
        CompiledContract::compile(&config(Value::Object(pricing)), &schema()).unwrap()
    }

    fn rtb() -> CompiledContract {
        CompiledContract::compile(
            &config(json!({"type": "rtb", "url": "https://b.example/bid", "max_bid_cents": 5000})),
            &schema(),
        )
        .unwrap()
    }

    fn state() -> ContractState {
        ContractState {
            buyer_status: Status::Active,
            balance: Money::from_cents(100_000),
            credit_limit: Money::ZERO,
            usage: PeriodUsage::default(),
            duplicate: false,
            buyer_caps: BuyerCapRoom::default(),
            suppressed_by: None,
        }
    }

    fn usage(day_leads: i64, month_spend_cents: i64) -> PeriodUsage {
        let mut usage = PeriodUsage::default();
        usage.set(
            CapPeriod::Day,
            CapUsage {
                leads: day_leads,
                spend: Money::ZERO,
            },
        );
        usage.set(
            CapPeriod::Month,
            CapUsage {
                leads: 0,
                spend: Money::from_cents(month_spend_cents),
            },
        );
        usage
    }

    /// Wednesday 2026-11-25 12:00 in New York.
    fn open_now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T17:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn run(
        contract: &CompiledContract,
        state: &ContractState,
        lead: Value,
        mode: Mode,
        now: DateTime<Utc>,
    ) -> Evaluation {
        let schema = schema();
        let Value::Object(lead) = lead else {
            panic!("lead is not an object")
        };
        let prepared = schema.prepare(&lead);
        let ping = PingContext {
            lead: &prepared,
            now,
            tenant_tz: New_York,
            sale_types: mode.sale_types(),
        };
        contract.evaluate(state, &ping)
    }

    fn declined(reason: DeclineReason, detail: Option<&str>) -> Evaluation {
        Evaluation::Declined(Decline {
            reason,
            detail: detail.map(str::to_owned),
        })
    }

    fn priced(exclusive: Option<i64>, shared: Option<i64>) -> Evaluation {
        Evaluation::Priced(Prices {
            exclusive: exclusive.map(Money::from_cents),
            shared: shared.map(Money::from_cents),
        })
    }

    #[test]
    fn an_eligible_fixed_contract_bids_the_prices_the_mode_needs() {
        let contract = fixed(Some(4000), Some(1250));
        let tx = json!({"state": "TX"});
        assert_eq!(
            run(&contract, &state(), tx.clone(), Mode::Hybrid, open_now()),
            priced(Some(4000), Some(1250))
        );
        assert_eq!(
            run(&contract, &state(), tx.clone(), Mode::Exclusive, open_now()),
            priced(Some(4000), None)
        );
        assert_eq!(
            run(&contract, &state(), tx, Mode::Multisell, open_now()),
            priced(None, Some(1250))
        );
    }

    #[test]
    fn checks_run_in_the_spec_order() {
        let tx = json!({"state": "TX"});
        let contract = fixed(Some(4000), None);
        // Everything wrong at once: the first check in order wins, and so on down the list.
        let mut paused = config(json!({"type": "fixed", "exclusive_cents": 4000}));
        paused.status = Status::Paused;
        let paused = CompiledContract::compile(&paused, &schema()).unwrap();
        let list = Uuid::from_u128(7);
        let all_wrong = ContractState {
            buyer_status: Status::Paused,
            balance: Money::ZERO,
            usage: usage(10, 0),
            duplicate: true,
            suppressed_by: Some(list),
            ..state()
        };
        let closed = DateTime::parse_from_rfc3339("2026-11-26T17:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ca = json!({"state": "CA"});
        assert_eq!(
            run(&paused, &all_wrong, ca.clone(), Mode::Multisell, closed),
            declined(DeclineReason::ContractPaused, None)
        );
        assert_eq!(
            run(&contract, &all_wrong, ca.clone(), Mode::Multisell, closed),
            declined(DeclineReason::BuyerPaused, None)
        );
        let suppressed = ContractState {
            buyer_status: Status::Active,
            ..all_wrong
        };
        assert_eq!(
            run(&contract, &suppressed, ca.clone(), Mode::Multisell, closed),
            declined(DeclineReason::Suppressed, Some(&list.to_string()))
        );
        let buyer_ok = ContractState {
            suppressed_by: None,
            ..suppressed
        };
        assert_eq!(
            run(&contract, &buyer_ok, ca, Mode::Multisell, closed),
            declined(DeclineReason::Filtered, Some("/filters/0"))
        );
        assert_eq!(
            run(&contract, &buyer_ok, tx.clone(), Mode::Multisell, closed),
            declined(DeclineReason::OutsideSchedule, None)
        );
        assert_eq!(
            run(
                &contract,
                &buyer_ok,
                tx.clone(),
                Mode::Multisell,
                open_now()
            ),
            declined(DeclineReason::CapReached, Some("day max_leads 10"))
        );
        let caps_ok = ContractState {
            usage: usage(9, 0),
            ..buyer_ok
        };
        assert_eq!(
            run(&contract, &caps_ok, tx.clone(), Mode::Multisell, open_now()),
            declined(DeclineReason::Duplicate, None)
        );
        let unique = ContractState {
            duplicate: false,
            ..caps_ok
        };
        assert_eq!(
            run(&contract, &unique, tx.clone(), Mode::Multisell, open_now()),
            declined(DeclineReason::NoPriceForSaleType, None)
        );
        assert_eq!(
            run(&contract, &unique, tx, Mode::Exclusive, open_now()),
            declined(DeclineReason::InsufficientFunds, None)
        );
    }

    #[test]
    fn unaffordable_sale_types_are_dropped_before_declining() {
        let contract = fixed(Some(4000), Some(1250));
        let tx = json!({"state": "TX"});
        let poor = ContractState {
            balance: Money::from_cents(1000),
            credit_limit: Money::from_cents(250),
            ..state()
        };
        assert_eq!(
            run(&contract, &poor, tx.clone(), Mode::Hybrid, open_now()),
            priced(None, Some(1250))
        );
        assert_eq!(
            run(&contract, &poor, tx.clone(), Mode::Exclusive, open_now()),
            declined(DeclineReason::InsufficientFunds, None)
        );
        let overdrawn = ContractState {
            balance: Money::from_cents(-500),
            credit_limit: Money::from_cents(1750),
            ..state()
        };
        assert_eq!(
            run(&contract, &overdrawn, tx.clone(), Mode::Hybrid, open_now()),
            priced(None, Some(1250))
        );
        let broke = ContractState {
            balance: Money::from_cents(1249),
            ..state()
        };
        assert_eq!(
            run(&contract, &broke, tx, Mode::Hybrid, open_now()),
            declined(DeclineReason::InsufficientFunds, None)
        );
    }

    #[test]
    fn spend_caps_drop_sale_types_that_would_overflow() {
        let contract = fixed(Some(4000), Some(1250));
        let tx = json!({"state": "TX"});
        let nearly_spent = ContractState {
            usage: usage(0, 100_000 - 2000),
            ..state()
        };
        assert_eq!(
            run(
                &contract,
                &nearly_spent,
                tx.clone(),
                Mode::Hybrid,
                open_now()
            ),
            priced(None, Some(1250))
        );
        assert_eq!(
            run(
                &contract,
                &nearly_spent,
                tx.clone(),
                Mode::Exclusive,
                open_now()
            ),
            declined(DeclineReason::CapReached, Some("month max_spend 1000.00"))
        );
        let exactly = ContractState {
            usage: usage(0, 100_000 - 1250),
            ..state()
        };
        assert_eq!(
            run(&contract, &exactly, tx.clone(), Mode::Multisell, open_now()),
            priced(None, Some(1250))
        );
        // The cap comes before funds: a full cap is cap_reached even for a broke buyer.
        let both = ContractState {
            balance: Money::ZERO,
            usage: usage(0, 100_000 - 10),
            ..state()
        };
        assert_eq!(
            run(&contract, &both, tx, Mode::Hybrid, open_now()),
            declined(DeclineReason::CapReached, Some("month max_spend 1000.00"))
        );
    }

    #[test]
    fn rtb_contracts_check_funds_and_full_caps_before_the_call() {
        let contract = rtb();
        let tx = json!({"state": "TX"});
        assert_eq!(
            run(&contract, &state(), tx.clone(), Mode::Hybrid, open_now()),
            Evaluation::CallRtb
        );
        let broke = ContractState {
            balance: Money::from_cents(-100),
            credit_limit: Money::from_cents(100),
            ..state()
        };
        assert_eq!(
            run(&contract, &broke, tx.clone(), Mode::Hybrid, open_now()),
            declined(DeclineReason::InsufficientFunds, None)
        );
        let one_cent = ContractState {
            balance: Money::from_cents(-99),
            credit_limit: Money::from_cents(100),
            ..state()
        };
        assert_eq!(
            run(&contract, &one_cent, tx.clone(), Mode::Hybrid, open_now()),
            Evaluation::CallRtb
        );
        let spent = ContractState {
            usage: usage(0, 100_000),
            ..state()
        };
        assert_eq!(
            run(&contract, &spent, tx.clone(), Mode::Hybrid, open_now()),
            declined(DeclineReason::CapReached, Some("month max_spend 1000.00"))
        );
        let almost = ContractState {
            usage: usage(0, 99_999),
            ..state()
        };
        assert_eq!(
            run(&contract, &almost, tx.clone(), Mode::Hybrid, open_now()),
            Evaluation::CallRtb
        );
        let dup = ContractState {
            duplicate: true,
            ..state()
        };
        assert_eq!(
            run(&contract, &dup, tx, Mode::Hybrid, open_now()),
            declined(DeclineReason::Duplicate, None)
        );
    }

    /// The buyer's caps over all its contracts: `day_leads` of 20 used, `day_spend_cents` of
    /// 100.00 spent.
    fn buyer_room(day_leads: i64, day_spend_cents: i64) -> BuyerCapRoom {
        let caps = CompiledCaps::compile(&json!([
            { "period": "day", "max_leads": 20 },
            { "period": "day", "max_spend_cents": 10_000 }
        ]))
        .unwrap();
        let mut usage = PeriodUsage::default();
        usage.set(
            CapPeriod::Day,
            CapUsage {
                leads: day_leads,
                spend: Money::from_cents(day_spend_cents),
            },
        );
        BuyerCapRoom::new(&caps, &usage)
    }

    #[test]
    fn a_full_buyer_cap_declines_the_contract_as_its_own_cap_does() {
        let tx = json!({"state": "TX"});
        let contract = fixed(Some(4000), Some(1250));
        let with = |buyer_caps| ContractState {
            buyer_caps,
            ..state()
        };
        // Room for one more lead and both prices.
        assert_eq!(
            run(
                &contract,
                &with(buyer_room(19, 0)),
                tx.clone(),
                Mode::Hybrid,
                open_now()
            ),
            Evaluation::Priced(Prices {
                exclusive: Some(Money::from_cents(4000)),
                shared: Some(Money::from_cents(1250)),
            })
        );
        // The 20th lead was sold: every contract of the buyer is declined before pricing.
        let reached = Some("the buyer's day cap of 20 leads is reached");
        assert_eq!(
            run(
                &contract,
                &with(buyer_room(20, 0)),
                tx.clone(),
                Mode::Hybrid,
                open_now()
            ),
            declined(DeclineReason::CapReached, reached)
        );
        assert_eq!(
            run(
                &rtb(),
                &with(buyer_room(20, 0)),
                tx.clone(),
                Mode::Hybrid,
                open_now()
            ),
            declined(DeclineReason::CapReached, reached)
        );
        // Spend: the price that would pass the cap is dropped; none left names the cap.
        assert_eq!(
            run(
                &contract,
                &with(buyer_room(0, 7_000)),
                tx.clone(),
                Mode::Hybrid,
                open_now()
            ),
            Evaluation::Priced(Prices {
                exclusive: None,
                shared: Some(Money::from_cents(1250)),
            })
        );
        assert_eq!(
            run(
                &contract,
                &with(buyer_room(0, 9_000)),
                tx.clone(),
                Mode::Hybrid,
                open_now()
            ),
            declined(
                DeclineReason::CapReached,
                Some("the buyer's day spend cap of 100.00 is reached")
            )
        );
        // The contract's own cap is checked first and named as before.
        let both = ContractState {
            usage: usage(10, 0),
            buyer_caps: buyer_room(20, 0),
            ..state()
        };
        assert_eq!(
            run(&contract, &both, tx, Mode::Hybrid, open_now()),
            declined(DeclineReason::CapReached, Some("day max_leads 10"))
        );
        // An RTB bid (cut to max_bid) that would pass the buyer's spend cap.
        let sale_types = Mode::Hybrid.sale_types();
        let rtb = rtb();
        assert_eq!(
            rtb.check_rtb_bid(
                &with(buyer_room(0, 6_000)),
                sale_types,
                &rtb_bid(Some(9000), Some(1250))
            ),
            Ok(Prices {
                exclusive: None,
                shared: Some(Money::from_cents(1250)),
            })
        );
        assert_eq!(
            rtb.check_rtb_bid(
                &with(buyer_room(0, 9_000)),
                sale_types,
                &rtb_bid(Some(9000), Some(1250))
            ),
            Err(Decline::with(
                DeclineReason::CapReached,
                "the buyer's day spend cap of 100.00 is reached"
            ))
        );
    }

    fn rtb_pricing(value: Value) -> RtbPricing {
        match Pricing::parse(&value).unwrap() {
            Pricing::Rtb(rtb) => rtb,
            Pricing::Fixed(_) => panic!("not rtb"),
        }
    }

    fn answer(status: u16, body: &str) -> Result<RtbBid, Decline> {
        parse_rtb_answer(
            status,
            body.as_bytes(),
            &rtb_pricing(json!({"type": "rtb", "url": "https://b.example"})),
        )
    }

    fn bid(
        exclusive: Option<i64>,
        shared: Option<i64>,
        reference: Option<&str>,
    ) -> Result<RtbBid, Decline> {
        Ok(RtbBid {
            exclusive: exclusive.map(Money::from_cents),
            shared: shared.map(Money::from_cents),
            reference: reference.map(str::to_owned),
        })
    }

    #[test]
    fn rtb_answers_are_read_exactly() {
        assert_eq!(
            answer(
                200,
                r#"{"exclusive_bid": 40.00, "shared_bid": 12.5, "ref": "abc123"}"#
            ),
            bid(Some(4000), Some(1250), Some("abc123"))
        );
        assert_eq!(
            answer(200, r#"{"exclusive_bid": "40.00", "ref": 77}"#),
            bid(Some(4000), None, Some("77"))
        );
        assert_eq!(
            answer(201, r#"{"shared_bid": 12.349}"#),
            bid(None, Some(1234), None)
        );
        assert_eq!(
            answer(200, r#"{"shared_bid": 0.019, "exclusive_bid": 0}"#),
            bid(None, Some(1), None)
        );
        assert_eq!(
            answer(200, r#"{"exclusive_bid": null, "shared_bid": 3}"#),
            bid(None, Some(300), None)
        );
    }

    #[test]
    fn rtb_no_bids_errors_and_invalid_answers() {
        let reason = |status: u16, body: &str| answer(status, body).unwrap_err().reason;
        assert_eq!(reason(204, ""), DeclineReason::RtbNoBid);
        assert_eq!(reason(200, "{}"), DeclineReason::RtbNoBid);
        assert_eq!(
            reason(200, r#"{"exclusive_bid": 0, "shared_bid": "0.00"}"#),
            DeclineReason::RtbNoBid
        );
        assert_eq!(
            reason(200, r#"{"exclusive_bid": 0.004}"#),
            DeclineReason::RtbNoBid
        );
        assert_eq!(reason(200, "[]"), DeclineReason::RtbNoBid);
        assert_eq!(
            answer(500, "{}").unwrap_err(),
            Decline::with(DeclineReason::RtbError, "HTTP 500")
        );
        assert_eq!(
            reason(404, r#"{"exclusive_bid": 40}"#),
            DeclineReason::RtbError
        );
        assert_eq!(reason(302, ""), DeclineReason::RtbError);
        assert_eq!(reason(200, ""), DeclineReason::RtbInvalid);
        assert_eq!(reason(200, "<xml/>"), DeclineReason::RtbInvalid);
        assert_eq!(
            reason(200, r#"{"exclusive_bid": "forty"}"#),
            DeclineReason::RtbInvalid
        );
        assert_eq!(
            reason(200, r#"{"exclusive_bid": true}"#),
            DeclineReason::RtbInvalid
        );
        assert_eq!(
            reason(200, r#"{"exclusive_bid": {"amount": 4}}"#),
            DeclineReason::RtbInvalid
        );
        assert_eq!(
            answer(200, r#"{"exclusive_bid": 40, "shared_bid": -1}"#).unwrap_err(),
            Decline::with(DeclineReason::RtbInvalid, "/shared_bid is negative")
        );
    }

    #[test]
    fn rtb_bids_with_many_decimals_are_truncated_not_rounded() {
        assert_eq!(
            answer(
                200,
                r#"{"exclusive_bid": 12.999999999999999999, "shared_bid": 0.0099999999999999999999,
                    "ref": 123456789012345678901234567890}"#
            ),
            bid(Some(1299), None, Some("123456789012345678901234567890"))
        );
        let pricing = rtb_pricing(json!({"type": "rtb", "url": "https://b.example",
            "exclusive_bid_path": "/bid/0/amount"}));
        let body = br#"{"bid": [{"amount": 40.999999999999999999}]}"#;
        assert_eq!(
            parse_rtb_answer(200, body, &pricing),
            bid(Some(4099), None, None)
        );
    }

    #[test]
    fn rtb_answers_are_read_at_the_contract_pointers() {
        let pricing = rtb_pricing(json!({"type": "rtb", "url": "https://b.example",
            "exclusive_bid_path": "/bid/exclusive", "shared_bid_path": "/bid/shared/0", "ref_path": "/meta/id"}));
        let body = br#"{"bid": {"exclusive": "41.999", "shared": [9.99]}, "meta": {"id": "r-1"}, "exclusive_bid": 99}"#;
        assert_eq!(
            parse_rtb_answer(200, body, &pricing),
            bid(Some(4199), Some(999), Some("r-1"))
        );
    }

    fn read_with(response: Value, status: u16, body: &str) -> Result<RtbBid, Decline> {
        let pricing =
            rtb_pricing(json!({"type": "rtb", "url": "https://b.example", "response": response}));
        parse_rtb_answer(status, body.as_bytes(), &pricing)
    }

    #[test]
    fn xml_rtb_answers_give_exact_decimal_bids() {
        let response = json!({
            "format": "xml",
            "exclusive_bid": { "path": "/BidResponse/Bid[1]/Amount" },
            "shared_bid": { "path": "/BidResponse/Bid[2]/Amount" },
            "ref": { "path": "/BidResponse/@id" },
            "no_bid": { "path": "/BidResponse/@status", "equals": "NoBid" },
            "reason": { "path": "/BidResponse/Reason" }
        });
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
            <b:BidResponse xmlns:b="urn:buyer" id="R-981" status="OK">
              <b:Bid type="exclusive"><b:Amount>38.505</b:Amount></b:Bid>
              <b:Bid type="shared"><b:Amount> 12.5 </b:Amount></b:Bid>
            </b:BidResponse>"#;
        assert_eq!(
            read_with(response.clone(), 200, body),
            bid(Some(3850), Some(1250), Some("R-981"))
        );
        assert_eq!(
            read_with(
                response.clone(),
                200,
                r#"<BidResponse status="NoBid"><Reason>outside our area</Reason></BidResponse>"#
            ),
            Err(Decline::with(
                DeclineReason::RtbNoBid,
                "buyer: outside our area"
            ))
        );
        assert_eq!(
            read_with(
                response.clone(),
                200,
                r#"<BidResponse><Bid><Amount></Amount></Bid></BidResponse>"#
            )
            .unwrap_err()
            .reason,
            DeclineReason::RtbNoBid
        );
        assert_eq!(
            read_with(
                response.clone(),
                200,
                r#"<BidResponse><Bid><Amount>$40</Amount></Bid></BidResponse>"#
            ),
            Err(Decline::with(
                DeclineReason::RtbInvalid,
                "exclusive_bid is not an amount"
            ))
        );
        assert_eq!(
            read_with(
                response.clone(),
                200,
                r#"<BidResponse><Bid><Amount>-1</Amount></Bid></BidResponse>"#
            ),
            Err(Decline::with(
                DeclineReason::RtbInvalid,
                "exclusive_bid is negative"
            ))
        );
        assert_eq!(
            read_with(response, 200, r#"{"exclusive_bid": 40}"#),
            Err(Decline::with(
                DeclineReason::RtbInvalid,
                "the answer is not XML"
            ))
        );
    }

    #[test]
    fn json_rtb_rules_read_no_bids_and_string_amounts() {
        let response = json!({
            "exclusive_bid": { "path": "/bid/price" },
            "ref": { "path": "/bid/id" },
            "no_bid": { "path": "/status", "in": ["no_bid", "declined"] },
            "rejected": { "path": "/error", "exists": true },
            "reason": { "path": "/error" }
        });
        assert_eq!(
            read_with(
                response.clone(),
                200,
                r#"{"status":"ok","bid":{"price":"40.00","id":7}}"#
            ),
            bid(Some(4000), None, Some("7"))
        );
        assert_eq!(
            read_with(
                response.clone(),
                200,
                r#"{"status":"declined","bid":{"price":"40.00"}}"#
            ),
            Err(Decline::new(DeclineReason::RtbNoBid))
        );
        assert_eq!(
            read_with(
                response.clone(),
                200,
                r#"{"error":"cap reached","bid":{"price":1}}"#
            ),
            Err(Decline::with(DeclineReason::RtbNoBid, "buyer: cap reached"))
        );
        // The default places are not read once a rule names the bid.
        assert_eq!(
            read_with(response, 200, r#"{"exclusive_bid": 40}"#)
                .unwrap_err()
                .reason,
            DeclineReason::RtbNoBid
        );
    }

    #[test]
    fn text_rtb_answers_are_read_by_regexes() {
        let response = json!({
            "format": "text",
            "exclusive_bid": { "regex": "(?m)^price=([0-9.]+)$" },
            "ref": { "regex": "ref=(\\S+)" },
            "no_bid": { "regex": "^NOBID", "exists": true }
        });
        assert_eq!(
            read_with(response.clone(), 200, "status=ok\nprice=12.5\nref=abc-1"),
            bid(Some(1250), None, Some("abc-1"))
        );
        assert_eq!(
            read_with(response.clone(), 200, "NOBID")
                .unwrap_err()
                .reason,
            DeclineReason::RtbNoBid
        );
        assert_eq!(
            read_with(response, 200, "whatever").unwrap_err().reason,
            DeclineReason::RtbNoBid
        );
    }

    #[test]
    fn rtb_status_rules_decide_first() {
        let response = json!({
            "status": { "200": "no_bid", "404": "rejected", "409": "no_bid", "4xx": "error", "5xx": "no_bid" },
            "reason": { "path": "/message" }
        });
        assert_eq!(
            read_with(
                response.clone(),
                404,
                r#"{"message":"no buyers for this zip"}"#
            ),
            Err(Decline::with(
                DeclineReason::RtbNoBid,
                "buyer: no buyers for this zip"
            ))
        );
        assert_eq!(
            read_with(response.clone(), 409, "not json"),
            Err(Decline::with(DeclineReason::RtbNoBid, "HTTP 409"))
        );
        assert_eq!(
            read_with(response.clone(), 400, "{}"),
            Err(Decline::with(DeclineReason::RtbError, "HTTP 400"))
        );
        assert_eq!(
            read_with(response.clone(), 503, "{}").unwrap_err().reason,
            DeclineReason::RtbNoBid
        );
        assert_eq!(
            read_with(response, 200, r#"{"exclusive_bid": 40}"#)
                .unwrap_err()
                .reason,
            DeclineReason::RtbNoBid
        );
        // Without a rule: 204 is a no-bid, another status an error.
        let plain = json!({ "status": { "410": "no_bid" } });
        assert_eq!(
            read_with(plain.clone(), 204, "").unwrap_err(),
            Decline::new(DeclineReason::RtbNoBid)
        );
        assert_eq!(
            read_with(plain.clone(), 500, "").unwrap_err(),
            Decline::with(DeclineReason::RtbError, "HTTP 500")
        );
        assert_eq!(
            read_with(plain, 200, r#"{"shared_bid": "9.999"}"#),
            bid(None, Some(999), None)
        );
    }

    #[test]
    fn rtb_rule_errors_point_into_pricing_response() {
        let errors = |value: Value| -> Vec<String> {
            Pricing::parse(&value)
                .unwrap_err()
                .into_iter()
                .map(|e| e.pointer)
                .collect()
        };
        assert_eq!(
            errors(
                json!({"type": "rtb", "url": "https://b.example", "exclusive_bid_path": "/x",
                          "response": { "exclusive_bid": { "path": "/y" } }})
            ),
            ["/pricing/exclusive_bid_path"]
        );
        assert_eq!(
            errors(json!({"type": "rtb", "url": "https://b.example",
                          "response": { "format": "text", "shared_bid": { "path": "/y" } }})),
            ["/pricing/response/shared_bid/path"]
        );
        assert_eq!(
            errors(json!({"type": "rtb", "url": "https://b.example",
                          "response": { "status": { "204": "duplicate" } }})),
            ["/pricing/response/status/204"]
        );
    }

    fn rtb_bid(exclusive: Option<i64>, shared: Option<i64>) -> RtbBid {
        RtbBid {
            exclusive: exclusive.map(Money::from_cents),
            shared: shared.map(Money::from_cents),
            reference: None,
        }
    }

    #[test]
    fn rtb_bids_are_cut_filtered_and_checked_in_order() {
        let contract = rtb();
        let both = Mode::Hybrid.sale_types();
        let prices = |e: Option<i64>, s: Option<i64>| {
            Ok(Prices {
                exclusive: e.map(Money::from_cents),
                shared: s.map(Money::from_cents),
            })
        };
        // Cut to max_bid (50.00).
        assert_eq!(
            contract.check_rtb_bid(&state(), both, &rtb_bid(Some(7000), Some(1250))),
            prices(Some(5000), Some(1250))
        );
        // Sale types the mode does not sell are dropped; nothing left is no bid.
        assert_eq!(
            contract.check_rtb_bid(
                &state(),
                Mode::Multisell.sale_types(),
                &rtb_bid(Some(4000), Some(1250))
            ),
            prices(None, Some(1250))
        );
        assert_eq!(
            contract
                .check_rtb_bid(
                    &state(),
                    Mode::Multisell.sale_types(),
                    &rtb_bid(Some(4000), None)
                )
                .unwrap_err()
                .reason,
            DeclineReason::RtbNoBid
        );
        // Funds before caps.
        let poor = ContractState {
            balance: Money::from_cents(2000),
            ..state()
        };
        assert_eq!(
            contract.check_rtb_bid(&poor, both, &rtb_bid(Some(4000), Some(1250))),
            prices(None, Some(1250))
        );
        let poor_and_capped = ContractState {
            balance: Money::from_cents(1000),
            usage: usage(0, 99_000),
            ..state()
        };
        assert_eq!(
            contract.check_rtb_bid(&poor_and_capped, both, &rtb_bid(Some(4000), Some(1250))),
            Err(Decline::new(DeclineReason::InsufficientFunds))
        );
        let capped = ContractState {
            usage: usage(0, 98_000),
            ..state()
        };
        assert_eq!(
            contract.check_rtb_bid(&capped, both, &rtb_bid(Some(4000), Some(1250))),
            prices(None, Some(1250))
        );
        let full = ContractState {
            usage: usage(0, 99_000),
            ..state()
        };
        assert_eq!(
            contract.check_rtb_bid(&full, both, &rtb_bid(Some(4000), Some(1250))),
            Err(Decline::with(
                DeclineReason::CapReached,
                "month max_spend 1000.00"
            ))
        );
    }

    #[test]
    fn contracts_report_every_config_error_at_once() {
        let bad = ContractConfig {
            pricing: json!({"type": "fixed"}),
            filters: json!([{ "field": "email", "op": "exists" }]),
            schedule: json!({"days": {"mon": [["9:00", "17:00"]]}}),
            caps: json!([{ "period": "day" }]),
            ..config(json!(null))
        };
        let pointers: Vec<String> = CompiledContract::compile(&bad, &schema())
            .unwrap_err()
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        assert_eq!(
            pointers,
            [
                "/pricing",
                "/filters/0/field",
                "/schedule/days/mon/0/0",
                "/caps/0"
            ]
        );
    }

    #[test]
    fn compiled_configuration_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<CompiledContract>();
        shareable::<CompiledSchema>();
        shareable::<PreparedLead<'static>>();
        shareable::<PingContext<'static>>();
    }

    #[test]
    fn a_compiled_contract_makes_its_bid() {
        let contract = fixed(Some(4000), None);
        let bid = contract.bid(
            Prices {
                exclusive: Some(Money::from_cents(4000)),
                shared: None,
            },
            None,
        );
        assert_eq!(
            (bid.contract_id, bid.buyer_id, bid.priority),
            (contract.id(), contract.buyer_id(), contract.priority())
        );
        assert_eq!(bid.exclusive, Some(Money::from_cents(4000)));
        assert!(matches!(contract.pricing(), Pricing::Fixed(_)));
        assert_eq!(contract.caps().iter().count(), 2);
        assert_eq!(
            DeclineReason::NoPriceForSaleType.to_string(),
            "no_price_for_sale_type"
        );
        assert_eq!(
            serde_json::to_value(DeclineReason::RtbNoBid).unwrap(),
            json!("rtb_no_bid")
        );
    }
}
