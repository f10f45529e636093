//! The failing-buyer breaker (docs/revenue-recovery.md §5): per tenant, contract and endpoint
//! (`rtb`: the pricing URL, `delivery`: the delivery URL), in this process only.
//!
//! A failure is a timeout, a connection error or a 5xx; any other answer is a success and
//! resets the count. After `failures` consecutive failures within `window_ms` the breaker
//! **opens**: for `cooldown_ms` no call is made (the ping declines the contract
//! `buyer_unavailable`, the post fails the sale). Then it is **half-open**: the next call is
//! the probe (others are still declined); a success closes it, a failure opens it again.
//!
//! [`Breaker`] is the pure state machine, its times given by the caller (the app's injectable
//! clock). [`Breakers`] holds them in a sharded map, created on a first failure only: a
//! healthy buyer has no entry, and while no breaker in the process is open or half-open, the
//! look before a call is one atomic load.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::Exchange;

text_codes! {
    /// A contract's endpoint: `rtb` (its pricing URL) or `delivery`; or a consent
    /// verification provider (docs/verification.md), keyed by the tenant and the provider.
    pub enum Endpoint {
        Rtb,
        Delivery,
        Verification,
    }
}

text_codes! {
    /// A breaker's state, as `endpoint_health` shows it.
    pub enum State {
        Closed,
        Open,
        /// The cool-down is over: the next call is the probe.
        HalfOpen,
    }
}

/// A tenant's breaker settings (`GET`/`PATCH /v1/admin/settings`, `breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct BreakerSettings {
    /// Consecutive failures (timeout, connection error, 5xx) that open the breaker, 1–100.
    pub failures: u32,
    /// Within how long those failures must fall, in ms (100–3600000).
    pub window_ms: u32,
    /// How long an open breaker declines before it lets a probe through, in ms (100–3600000).
    pub cooldown_ms: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            window_ms: 30_000,
            cooldown_ms: 30_000,
        }
    }
}

/// Whether what came of a call counts as the endpoint failing: no answer in time, no
/// connection, or a 5xx.
pub fn exchange_failed(exchange: &Exchange) -> bool {
    match exchange {
        Exchange::Answer { status, .. } | Exchange::TooLarge { status } => *status >= 500,
        Exchange::TimedOut | Exchange::Failed(_) => true,
    }
}

/// Why no call is made: the breaker opened at `since` and lets a call through at `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    pub endpoint: Endpoint,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Unavailable {
    /// The decline's detail, for the operator: since when and until when.
    pub fn detail(&self) -> String {
        let name = match self.endpoint {
            Endpoint::Rtb => "RTB",
            Endpoint::Delivery => "delivery",
            Endpoint::Verification => "verification",
        };
        format!(
            "the {name} endpoint is failing: no call since {} until {}",
            self.since.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.until.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }
}

/// A call let through: its outcome goes back with [`Breakers::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The half-open breaker's probe: its outcome closes or reopens it.
    pub probe: bool,
}

/// One endpoint's view, for `endpoint_health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BreakerHealth {
    #[schema(value_type = String, example = "closed")]
    pub state: State,
    pub consecutive_failures: u32,
    pub opened_at: Option<DateTime<Utc>>,
    /// When an open breaker lets its probe through.
    pub retry_at: Option<DateTime<Utc>>,
}

/// A contract's endpoints as this process sees them (`null`: an endpoint it does not have).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EndpointHealth {
    pub rtb: Option<BreakerHealth>,
    pub delivery: Option<BreakerHealth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Closed,
    /// Until `retry_at`, then half-open.
    Open,
    /// A probe was let through at `probe_at`.
    Probing,
}

/// One endpoint's breaker, times in milliseconds of the caller's clock.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    phase: Phase,
    consecutive: u32,
    /// The times of the current run of failures that fall within the window (the latest
    /// `failures` at most).
    recent: VecDeque<i64>,
    opened_at: i64,
    retry_at: i64,
    probe_at: i64,
    /// How many times it opened (closed to open, and half-open to open).
    opens: u32,
}

/// A change of state, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Reopened,
    Closed,
}

impl Breaker {
    /// The state at `now`: an open breaker past its cool-down is half-open.
    pub fn state(&self, now: i64) -> State {
        match self.phase {
            Phase::Closed => State::Closed,
            Phase::Open if now < self.retry_at => State::Open,
            Phase::Open | Phase::Probing => State::HalfOpen,
        }
    }

    /// `Some((since, until))` when a call at `now` would be declined, without taking the probe
    /// (a half-open breaker whose probe is not taken lets a call through).
    pub fn blocked(&self, now: i64, settings: &BreakerSettings) -> Option<(i64, i64)> {
        match self.phase {
            Phase::Closed => None,
            Phase::Open => (now < self.retry_at).then_some((self.opened_at, self.retry_at)),
            Phase::Probing => {
                let until = self.probe_until(settings);
                (now < until).then_some((self.opened_at, until))
            }
        }
    }

    /// A probe not answered within a cool-down (its task ended without a word, or its
    /// reservation was refused before the call) lets another through.
    fn probe_until(&self, settings: &BreakerSettings) -> i64 {
        self.probe_at + i64::from(settings.cooldown_ms)
    }

    /// Lets a call through at `now`, or declines it (`Err((since, until))`). A half-open
    /// breaker lets exactly one call through: the probe.
    pub fn admit(&mut self, now: i64, settings: &BreakerSettings) -> Result<Ticket, (i64, i64)> {
        if let Some(blocked) = self.blocked(now, settings) {
            return Err(blocked);
        }
        match self.phase {
            Phase::Closed => Ok(Ticket { probe: false }),
            Phase::Open | Phase::Probing => {
                self.phase = Phase::Probing;
                self.probe_at = now;
                Ok(Ticket { probe: true })
            }
        }
    }

    /// The outcome of a call let through by `ticket`, at `now`.
    pub fn record(
        &mut self,
        ticket: Ticket,
        failed: bool,
        now: i64,
        settings: &BreakerSettings,
    ) -> Option<Transition> {
        match self.phase {
            Phase::Closed if failed => {
                self.consecutive = self.consecutive.saturating_add(1);
                let window = i64::from(settings.window_ms);
                while self.recent.front().is_some_and(|&at| now - at > window) {
                    self.recent.pop_front();
                }
                self.recent.push_back(now);
                let failures = settings.failures.max(1) as usize;
                while self.recent.len() > failures {
                    self.recent.pop_front();
                }
                (self.recent.len() >= failures).then(|| {
                    self.open(now, settings);
                    Transition::Opened
                })
            }
            Phase::Closed => {
                self.consecutive = 0;
                self.recent.clear();
                None
            }
            // A call made before the breaker opened, or another than the probe: it changes
            // nothing.
            Phase::Open | Phase::Probing if !ticket.probe => None,
            Phase::Open | Phase::Probing if failed => {
                self.consecutive = self.consecutive.saturating_add(1);
                self.open(now, settings);
                Some(Transition::Reopened)
            }
            Phase::Open | Phase::Probing => {
                *self = Breaker {
                    opens: self.opens,
                    ..Breaker::default()
                };
                Some(Transition::Closed)
            }
        }
    }

    fn open(&mut self, now: i64, settings: &BreakerSettings) {
        self.phase = Phase::Open;
        self.opened_at = now;
        self.retry_at = now + i64::from(settings.cooldown_ms);
        self.recent.clear();
        self.opens = self.opens.saturating_add(1);
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// How many times it opened in this process.
    pub fn opens(&self) -> u32 {
        self.opens
    }

    fn health(&self, now: i64) -> BreakerHealth {
        let open = self.phase != Phase::Closed;
        BreakerHealth {
            state: self.state(now),
            consecutive_failures: self.consecutive,
            opened_at: open.then(|| instant(self.opened_at)),
            retry_at: open.then(|| instant(self.retry_at)),
        }
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn instant(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

type Key = (Uuid, Uuid, Endpoint);
type Shard = RwLock<HashMap<Key, Mutex<Breaker>>>;

const SHARDS: usize = 16;

/// Every breaker of this process.
pub struct Breakers {
    shards: Box<[Shard]>,
    /// Breakers open or half-open: while none is, a call is let through without a look-up.
    tripped: AtomicUsize,
    /// Breakers of this process, whatever their state: while there is none, a success is
    /// recorded without a look-up (the common case of a ping's RTB calls).
    entries: AtomicUsize,
}

impl Default for Breakers {
    fn default() -> Self {
        Breakers {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            tripped: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("tripped", &self.tripped.load(Ordering::Relaxed))
            .finish()
    }
}

fn lock(breaker: &Mutex<Breaker>) -> MutexGuard<'_, Breaker> {
    breaker.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Breakers {
    fn shard(&self, key: &Key) -> &Shard {
        let mut hasher = DefaultHasher::new();
        key.1.hash(&mut hasher);
        &self.shards[(hasher.finish() as usize) % SHARDS]
    }

    /// Runs `f` on the breaker of `key`, if it has one.
    fn with<T>(&self, key: &Key, f: impl FnOnce(&mut Breaker) -> T) -> Option<T> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).map(|breaker| f(&mut lock(breaker)))
    }

    /// Whether a call now would be declined, without taking a half-open breaker's probe: the
    /// ping's look at a contract's delivery endpoint, which the post calls.
    pub fn blocked(
        &self,
        tenant: Uuid,
        contract: Uuid,
        endpoint: Endpoint,
        now: DateTime<Utc>,
        settings: &BreakerSettings,
    ) -> Option<Unavailable> {
        if self.tripped.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let (since, until) = self
            .with(&(tenant, contract, endpoint), |b| {
                b.blocked(millis(now), settings)
            })
            .flatten()?;
        Some(Unavailable {
            endpoint,
            since: instant(since),
            until: instant(until),
        })
    }

    /// Lets a call through now, or declines it.
    pub fn admit(
        &self,
        tenant: Uuid,
        contract: Uuid,
        endpoint: Endpoint,
        now: DateTime<Utc>,
        settings: &BreakerSettings,
    ) -> Result<Ticket, Unavailable> {
        let closed = Ticket { probe: false };
        if self.tripped.load(Ordering::Relaxed) == 0 {
            return Ok(closed);
        }
        match self.with(&(tenant, contract, endpoint), |b| {
            b.admit(millis(now), settings)
        }) {
            None => Ok(closed),
            Some(Ok(ticket)) => {
                if ticket.probe {
                    crate::meters::breaker_transition(endpoint.as_str(), "half_open", 0);
                }
                Ok(ticket)
            }
            Some(Err((since, until))) => Err(Unavailable {
                endpoint,
                since: instant(since),
                until: instant(until),
            }),
        }
    }

    /// Records the outcome of a call let through by `ticket`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        tenant: Uuid,
        contract: Uuid,
        endpoint: Endpoint,
        ticket: Ticket,
        failed: bool,
        now: DateTime<Utc>,
        settings: &BreakerSettings,
    ) {
        let key = (tenant, contract, endpoint);
        let now = millis(now);
        let record = |b: &mut Breaker| b.record(ticket, failed, now, settings);
        let transition = if failed {
            let shard = self.shard(&key);
            let found = self.with(&key, record);
            found.unwrap_or_else(|| {
                let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
                let breaker = shard.entry(key).or_insert_with(|| {
                    self.entries.fetch_add(1, Ordering::Relaxed);
                    Mutex::default()
                });
                record(&mut lock(breaker))
            })
        } else if self.entries.load(Ordering::Relaxed) == 0 {
            None
        } else {
            // A healthy endpoint has no breaker: nothing to reset.
            self.with(&key, record).flatten()
        };
        if let Some(transition) = transition {
            let (to, open) = match transition {
                Transition::Opened => {
                    self.tripped.fetch_add(1, Ordering::Relaxed);
                    ("open", 1)
                }
                Transition::Closed => {
                    self.tripped.fetch_sub(1, Ordering::Relaxed);
                    ("closed", -1)
                }
                Transition::Reopened => ("open", 0),
            };
            crate::meters::breaker_transition(endpoint.as_str(), to, open);
            tracing::info!(%tenant, %contract, endpoint = endpoint.as_str(), ?transition, "buyer endpoint breaker");
        }
    }

    /// An endpoint's state now (closed, with no failures, when it has no breaker).
    pub fn health(
        &self,
        tenant: Uuid,
        contract: Uuid,
        endpoint: Endpoint,
        now: DateTime<Utc>,
    ) -> BreakerHealth {
        self.with(&(tenant, contract, endpoint), |b| b.health(millis(now)))
            .unwrap_or(BreakerHealth {
                state: State::Closed,
                consecutive_failures: 0,
                opened_at: None,
                retry_at: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            window_ms: 1_000,
            cooldown_ms: 5_000,
        }
    }

    const CALL: Ticket = Ticket { probe: false };

    fn fail(b: &mut Breaker, now: i64) -> Option<Transition> {
        b.record(CALL, true, now, &settings())
    }

    #[test]
    fn consecutive_failures_within_the_window_open_it() {
        let mut b = Breaker::default();
        assert_eq!(fail(&mut b, 0), None);
        assert_eq!(fail(&mut b, 100), None);
        assert_eq!(b.state(100), State::Closed);
        assert_eq!(b.admit(150, &settings()), Ok(CALL));
        assert_eq!(fail(&mut b, 200), Some(Transition::Opened));
        assert_eq!(b.state(200), State::Open);
        assert_eq!(b.consecutive_failures(), 3);
        // Declined until the cool-down ends, with since and until.
        assert_eq!(b.admit(300, &settings()), Err((200, 5_200)));
        assert_eq!(b.blocked(5_199, &settings()), Some((200, 5_200)));
        assert_eq!(b.opens(), 1);
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breaker::default();
        fail(&mut b, 0);
        fail(&mut b, 10);
        assert_eq!(b.record(CALL, false, 20, &settings()), None);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(fail(&mut b, 30), None);
        assert_eq!(fail(&mut b, 40), None);
        assert_eq!(b.state(40), State::Closed);
        assert_eq!(fail(&mut b, 50), Some(Transition::Opened));
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_open_it() {
        let mut b = Breaker::default();
        fail(&mut b, 0);
        fail(&mut b, 600);
        // The first has left the window: two within it.
        assert_eq!(fail(&mut b, 1_200), None);
        assert_eq!(b.state(1_200), State::Closed);
        assert_eq!(b.consecutive_failures(), 3);
        assert_eq!(fail(&mut b, 2_500), None);
        assert_eq!(fail(&mut b, 2_600), None);
        assert_eq!(fail(&mut b, 2_700), Some(Transition::Opened));
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let mut b = Breaker::default();
        for at in [0, 1, 2] {
            fail(&mut b, at);
        }
        assert_eq!(b.state(5_002), State::HalfOpen);
        // The ping's look does not take the probe.
        assert_eq!(b.blocked(5_002, &settings()), None);
        let probe = b.admit(5_002, &settings()).unwrap();
        assert!(probe.probe);
        // Others are still declined while the probe runs.
        assert!(b.admit(5_003, &settings()).is_err());
        assert!(b.blocked(5_003, &settings()).is_some());
        // A late answer of a call made before it opened changes nothing.
        assert_eq!(b.record(CALL, false, 5_004, &settings()), None);
        assert_eq!(b.state(5_004), State::HalfOpen);
        // The probe's success closes it.
        assert_eq!(
            b.record(probe, false, 5_010, &settings()),
            Some(Transition::Closed)
        );
        assert_eq!(b.state(5_010), State::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.admit(5_011, &settings()), Ok(CALL));
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let mut b = Breaker::default();
        for at in [0, 1, 2] {
            fail(&mut b, at);
        }
        let probe = b.admit(6_000, &settings()).unwrap();
        assert_eq!(
            b.record(probe, true, 6_100, &settings()),
            Some(Transition::Reopened)
        );
        assert_eq!(b.state(6_100), State::Open);
        assert_eq!(b.admit(6_200, &settings()), Err((6_100, 11_100)));
        assert_eq!(b.opens(), 2);
        assert_eq!(b.consecutive_failures(), 4);
    }

    #[test]
    fn a_probe_never_answered_lets_another_through_after_a_cool_down() {
        let mut b = Breaker::default();
        for at in [0, 1, 2] {
            fail(&mut b, at);
        }
        assert!(b.admit(5_002, &settings()).unwrap().probe);
        assert_eq!(b.admit(10_001, &settings()), Err((2, 10_002)));
        assert!(b.admit(10_002, &settings()).unwrap().probe);
    }

    #[test]
    fn the_registry_keys_by_tenant_contract_and_endpoint() {
        let breakers = Breakers::default();
        let (tenant, other_tenant, contract) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let now = DateTime::from_timestamp_millis(1_000_000).unwrap();
        let s = settings();
        // A success on a healthy endpoint creates nothing.
        breakers.record(tenant, contract, Endpoint::Rtb, CALL, false, now, &s);
        assert!(breakers.shards.iter().all(|s| s.read().unwrap().is_empty()));
        for _ in 0..3 {
            let ticket = breakers
                .admit(tenant, contract, Endpoint::Rtb, now, &s)
                .unwrap();
            breakers.record(tenant, contract, Endpoint::Rtb, ticket, true, now, &s);
        }
        let declined = breakers
            .admit(tenant, contract, Endpoint::Rtb, now, &s)
            .unwrap_err();
        assert_eq!(
            declined.until - declined.since,
            chrono::Duration::seconds(5)
        );
        assert!(declined.detail().contains("RTB endpoint"), "{declined:?}");
        assert!(
            breakers
                .admit(tenant, contract, Endpoint::Delivery, now, &s)
                .is_ok()
        );
        assert!(
            breakers
                .admit(other_tenant, contract, Endpoint::Rtb, now, &s)
                .is_ok()
        );
        let health = breakers.health(tenant, contract, Endpoint::Rtb, now);
        assert_eq!(health.state, State::Open);
        assert_eq!(health.consecutive_failures, 3);
        assert_eq!(health.opened_at, Some(now));
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(
            breakers
                .health(tenant, contract, Endpoint::Rtb, later)
                .state,
            State::HalfOpen
        );
        let probe = breakers
            .admit(tenant, contract, Endpoint::Rtb, later, &s)
            .unwrap();
        breakers.record(tenant, contract, Endpoint::Rtb, probe, false, later, &s);
        assert_eq!(breakers.tripped.load(Ordering::Relaxed), 0);
        assert_eq!(
            breakers
                .health(tenant, contract, Endpoint::Rtb, later)
                .state,
            State::Closed
        );
    }
}
