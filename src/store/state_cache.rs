//! A short-lived copy of the state the pings' checks read (cap usage, balances, buyers' cap
//! usage, when each contract last sold), so that pings arriving close together do not read the same rows again.
//! The consumer's dedup hashes differ from ping to ping and are always read.
//!
//! Why a copy may be a little old: a ping only decides whether to bid. The post re-checks caps
//! and funds atomically in its reservation, so a bid made on a state up to `ttl` old can at
//! worst end `capped` or `insufficient_funds` at its post — as any bid can when a cap fills
//! between a ping and its post. This process forgets a contract's or a buyer's copy as soon as
//! it changes them (a reservation, a sale kept or released, funds), so its own changes are
//! never seen late; another Gavel process's changes are seen within `ttl`.
//!
//! Two levels: a copy per contract and per buyer (so that after a change only what changed is
//! read again), and the whole of an offer's state put together from them as its last ping saw
//! it, which the next ping of the offer takes in one look-up while nothing in its tenant changed
//! and none of it is older than `ttl` (a ping's cost then does not grow with the offer's contracts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auction::PeriodUsage;
use crate::money::Money;
use crate::store::group::Group;
use crate::store::pings::{ContractKeys, PeriodStarts, ReadStates, StateRequest};

/// What is kept of one contract: its usage in the periods it was read for, and its last sale.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ContractCopy {
    periods: PeriodStarts,
    usage: PeriodUsage,
    last_sale: Option<DateTime<Utc>>,
}

/// What is kept of one buyer's own caps: its usage in the periods it was read for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BuyerCapsCopy {
    periods: PeriodStarts,
    usage: PeriodUsage,
}

const SHARDS: usize = 16;

/// (tenant, contract or buyer) → its copy.
type Key = (Uuid, Uuid);

struct Slot<T> {
    /// Moves on every change this process makes, so a read that began before the change
    /// cannot store what it saw.
    version: u64,
    copy: Option<(Instant, T)>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            version: 0,
            copy: None,
        }
    }
}

/// What a lookup found: a copy young enough (if any), and the version a new copy must quote.
struct Lookup<T> {
    /// The copy and when its statement was sent.
    fresh: Option<(Instant, T)>,
    version: Version,
}

/// The key's own version, and the table's (moved by `forget_all`, which also covers keys
/// that have no slot yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    key: u64,
    table: u64,
}

struct Table<T> {
    shards: [Mutex<HashMap<Key, Slot<T>>>; SHARDS],
    generation: AtomicU64,
}

impl<T: Copy> Table<T> {
    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            generation: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, HashMap<Key, Slot<T>>> {
        // Ids are UUIDv7 or v4: their last bits are random.
        let index = (key.1.as_u128() as usize) % SHARDS;
        // A panic while holding the lock cannot leave a slot half-written: keep using it.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &Key, now: Instant, ttl: Duration) -> Lookup<T> {
        let shard = self.shard(key);
        let table = self.generation.load(Ordering::Acquire);
        match shard.get(key) {
            Some(slot) => Lookup {
                fresh: slot
                    .copy
                    .filter(|(read_at, _)| now.saturating_duration_since(*read_at) < ttl),
                version: Version {
                    key: slot.version,
                    table,
                },
            },
            None => Lookup {
                fresh: None,
                version: Version { key: 0, table },
            },
        }
    }

    /// Keeps `copy`, read from a statement sent at `read_at`, unless the key (or the whole
    /// table) changed since `version` was looked up.
    fn put(&self, key: Key, version: Version, read_at: Instant, copy: T) {
        let mut shard = self.shard(&key);
        let slot = shard.entry(key).or_default();
        if slot.version == version.key && self.generation.load(Ordering::Acquire) == version.table {
            slot.copy = Some((read_at, copy));
        }
    }

    fn forget(&self, key: Key) {
        let mut shard = self.shard(&key);
        let slot = shard.entry(key).or_default();
        slot.version += 1;
        slot.copy = None;
    }

    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for slot in shard.values_mut() {
                slot.version += 1;
                slot.copy = None;
            }
        }
    }
}

/// The state a ping's checks read: what may come from the copies (`kept`, shared by the pings
/// of an offer while it is fresh) and what is read for this consumer.
#[derive(Debug, Default)]
pub struct PingState {
    pub kept: Arc<KeptState>,
    /// For each buyer, when it last bought this consumer (any of the ping's dedup hashes).
    pub buyer_bought_at: HashMap<Uuid, DateTime<Utc>>,
    /// When this consumer was last sold on the offer.
    pub offer_sold_at: Option<DateTime<Utc>>,
    /// The suppression lists that hold the consumer (any of the ping's dedup hashes).
    pub suppressed_lists: Vec<Uuid>,
}

/// The state of an offer's contracts and buyers that may be a little old (see the module's doc).
#[derive(Debug, Default, Clone)]
pub struct KeptState {
    /// Usage of each contract's caps in their current periods (absent = nothing used).
    pub cap_usage: HashMap<Uuid, PeriodUsage>,
    pub balances: HashMap<Uuid, Money>,
    /// When each contract last sold (absent = never).
    pub last_sale: HashMap<Uuid, DateTime<Utc>>,
    /// Usage of each capped buyer's caps in their current periods (absent = nothing used).
    pub buyer_cap_usage: HashMap<Uuid, PeriodUsage>,
}

/// Moves on every change this process makes to a tenant's state (`tenant`), or to state it
/// cannot name (`all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Generation {
    all: u64,
    tenant: u64,
}

/// An offer's state as its last ping put it together, and what that ping asked for: a ping
/// that asks for other keys (the offer's contracts or their caps changed, or a period rolled)
/// does not take it.
struct OfferCopy {
    generation: Generation,
    /// When the oldest of its parts was read.
    read_at: Instant,
    contracts: Vec<ContractKeys>,
    buyer_ids: Vec<Uuid>,
    buyer_caps: Vec<ContractKeys>,
    kept: Arc<KeptState>,
}

impl OfferCopy {
    fn serves(
        &self,
        request: &StateRequest,
        generation: Generation,
        now: Instant,
        ttl: Duration,
    ) -> bool {
        self.generation == generation
            && now.saturating_duration_since(self.read_at) < ttl
            && self.contracts == request.contracts
            && self.buyer_ids == request.buyer_ids
            && self.buyer_caps == request.buyer_caps
    }
}

/// Reads the pings' state: from the copies when they are young enough, the rest in one
/// grouped statement.
pub struct StateReader {
    group: Group<ReadStates>,
    ttl: Duration,
    contracts: Table<ContractCopy>,
    balances: Table<Money>,
    buyer_caps: Table<BuyerCapsCopy>,
    /// (tenant, offer) → its state as its last ping put it together.
    offers: Mutex<HashMap<(Uuid, Uuid), Arc<OfferCopy>>>,
    /// Each tenant's changes made by this process (absent = none yet).
    tenant_changes: Mutex<HashMap<Uuid, u64>>,
    /// Changes made by this process that no key names (`forget_all`).
    all_changes: AtomicU64,
    /// When each contract of a `round_robin` offer last won a ping in this process: its turn
    /// comes round at the ping, not only once a sale completes (docs/revenue-recovery.md §3).
    last_wins: Mutex<HashMap<(Uuid, Uuid), DateTime<Utc>>>,
}

impl StateReader {
    /// With `ttl` zero no copy is ever young enough: every ping reads everything.
    pub fn start(db: PgPool, ttl: Duration) -> Self {
        Self {
            group: Group::start(db),
            ttl,
            contracts: Table::new(),
            balances: Table::new(),
            buyer_caps: Table::new(),
            offers: Mutex::default(),
            tenant_changes: Mutex::default(),
            all_changes: AtomicU64::new(0),
            last_wins: Mutex::default(),
        }
    }

    /// The later of each contract's last sale (`last_sale`) and its last win at a ping in
    /// this process.
    pub fn with_last_wins(
        &self,
        tenant_id: Uuid,
        last_sale: &mut HashMap<Uuid, DateTime<Utc>>,
        contracts: impl Iterator<Item = Uuid>,
    ) {
        let wins = self
            .last_wins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for contract in contracts {
            if let Some(&won) = wins.get(&(tenant_id, contract)) {
                let at = last_sale.entry(contract).or_insert(won);
                *at = (*at).max(won);
            }
        }
    }

    /// Notes that `contracts` won a ping at `now`.
    pub fn note_wins(
        &self,
        tenant_id: Uuid,
        contracts: impl Iterator<Item = Uuid>,
        now: DateTime<Utc>,
    ) {
        let mut wins = self
            .last_wins
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for contract in contracts {
            wins.insert((tenant_id, contract), now);
        }
    }

    fn generation(&self, tenant_id: Uuid) -> Generation {
        // `all` first: a `forget_all` between the two loads is seen by the next read.
        let all = self.all_changes.load(Ordering::Acquire);
        let tenant = self
            .tenant_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant_id)
            .copied()
            .unwrap_or(0);
        Generation { all, tenant }
    }

    fn changed(&self, tenant_id: Uuid) {
        *self
            .tenant_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant_id)
            .or_default() += 1;
    }

    /// The state of `request`'s contracts and buyers, and its consumer's sales.
    pub async fn read(&self, request: StateRequest) -> Result<PingState, sqlx::Error> {
        let read_at = Instant::now();
        let tenant = request.tenant_id;
        // Taken before any copy is looked at: a change made from here on keeps what this read
        // puts together from being served.
        let generation = self.generation(tenant);
        let offer_key = (tenant, request.offer_id);
        if let Some(kept) = self.serving_copy(&request, generation, read_at) {
            return self.read_consumer_with(kept, request).await;
        }
        let (contracts, buyer_ids, buyer_caps) = (
            request.contracts.clone(),
            request.buyer_ids.clone(),
            request.buyer_caps.clone(),
        );
        let (state, oldest) = self.read_by_keys(request, read_at).await?;
        let kept = Arc::new(state.kept);
        let copy = OfferCopy {
            generation,
            read_at: oldest,
            contracts,
            buyer_ids,
            buyer_caps,
            kept: Arc::clone(&kept),
        };
        self.offers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(offer_key, Arc::new(copy));
        Ok(PingState {
            kept,
            ..state.consumer
        })
    }

    /// The offer's state from its copy, when a copy young enough serves `request`: what
    /// [`StateReader::read`] would take without a statement. Its consumer's part is still to
    /// be read ([`StateReader::read_consumer_with`]).
    pub fn kept_copy(&self, request: &StateRequest) -> Option<Arc<KeptState>> {
        let generation = self.generation(request.tenant_id);
        self.serving_copy(request, generation, Instant::now())
    }

    fn serving_copy(
        &self,
        request: &StateRequest,
        generation: Generation,
        now: Instant,
    ) -> Option<Arc<KeptState>> {
        let offer = self
            .offers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(request.tenant_id, request.offer_id))
            .cloned()?;
        offer
            .serves(request, generation, now, self.ttl)
            .then(|| Arc::clone(&offer.kept))
    }

    /// `kept` (from [`StateReader::kept_copy`]) with what is read for `request`'s consumer.
    pub async fn read_consumer_with(
        &self,
        kept: Arc<KeptState>,
        request: StateRequest,
    ) -> Result<PingState, sqlx::Error> {
        let consumer = self.read_consumer(request).await?;
        Ok(PingState { kept, ..consumer })
    }

    /// Only what is read for the consumer (its sales, its suppression), by its hashes.
    async fn read_consumer(&self, request: StateRequest) -> Result<PingState, sqlx::Error> {
        if !request.reads_consumer() {
            return Ok(PingState::default());
        }
        let read = self
            .group
            .run(StateRequest {
                contracts: Vec::new(),
                buyer_ids: Vec::new(),
                buyer_caps: Vec::new(),
                ..request
            })
            .await?;
        Ok(PingState {
            kept: Arc::default(),
            buyer_bought_at: read.buyer_bought_at,
            offer_sold_at: read.offer_sold_at,
            suppressed_lists: read.suppressed_lists,
        })
    }

    /// The state from each key's copy when it is young enough, the rest read; and when the
    /// oldest part was read.
    async fn read_by_keys(
        &self,
        request: StateRequest,
        read_at: Instant,
    ) -> Result<(ByKeys, Instant), sqlx::Error> {
        let tenant = request.tenant_id;
        let mut oldest = read_at;
        let mut kept = KeptState {
            cap_usage: HashMap::with_capacity(request.contracts.len()),
            balances: HashMap::with_capacity(request.buyer_ids.len()),
            last_sale: HashMap::with_capacity(request.contracts.len()),
            buyer_cap_usage: HashMap::with_capacity(request.buyer_caps.len()),
        };
        let mut missing = StateRequest {
            tenant_id: tenant,
            offer_id: request.offer_id,
            contracts: Vec::new(),
            buyer_ids: Vec::new(),
            dedup_hashes: request.dedup_hashes,
            buyer_caps: Vec::new(),
            // Looked up by the hashes, which differ from ping to ping: always read, as they are.
            suppression_lists: request.suppression_lists,
        };
        let mut contract_versions = Vec::new();
        for keys in request.contracts {
            let lookup = self.contracts.get(&(tenant, keys.id), read_at, self.ttl);
            match lookup.fresh {
                Some((at, copy)) if copy.periods == keys.periods => {
                    oldest = oldest.min(at);
                    kept.cap_usage.insert(keys.id, copy.usage);
                    if let Some(sold) = copy.last_sale {
                        kept.last_sale.insert(keys.id, sold);
                    }
                }
                _ => {
                    contract_versions.push(lookup.version);
                    missing.contracts.push(keys);
                }
            }
        }
        let mut balance_versions = Vec::new();
        for buyer in request.buyer_ids {
            let lookup = self.balances.get(&(tenant, buyer), read_at, self.ttl);
            match lookup.fresh {
                Some((at, balance)) => {
                    oldest = oldest.min(at);
                    kept.balances.insert(buyer, balance);
                }
                None => {
                    balance_versions.push(lookup.version);
                    missing.buyer_ids.push(buyer);
                }
            }
        }
        let mut buyer_cap_versions = Vec::new();
        for keys in request.buyer_caps {
            let lookup = self.buyer_caps.get(&(tenant, keys.id), read_at, self.ttl);
            match lookup.fresh {
                Some((at, copy)) if copy.periods == keys.periods => {
                    oldest = oldest.min(at);
                    kept.buyer_cap_usage.insert(keys.id, copy.usage);
                }
                _ => {
                    buyer_cap_versions.push(lookup.version);
                    missing.buyer_caps.push(keys);
                }
            }
        }
        if missing.contracts.is_empty()
            && missing.buyer_ids.is_empty()
            && missing.dedup_hashes.is_empty()
            && missing.buyer_caps.is_empty()
        {
            let consumer = PingState::default();
            return Ok((ByKeys { kept, consumer }, oldest));
        }

        let contracts: Vec<ContractKeys> = missing.contracts.clone();
        let buyers: Vec<Uuid> = missing.buyer_ids.clone();
        let capped_buyers: Vec<ContractKeys> = missing.buyer_caps.clone();
        let read = self.group.run(missing).await?;
        // With a zero `ttl` the copies stored here are never served.
        for (keys, version) in contracts.iter().zip(contract_versions) {
            let copy = ContractCopy {
                periods: keys.periods,
                usage: read.cap_usage.get(&keys.id).copied().unwrap_or_default(),
                last_sale: read.last_sale.get(&keys.id).copied(),
            };
            self.contracts
                .put((tenant, keys.id), version, read_at, copy);
        }
        for (buyer, version) in buyers.iter().zip(balance_versions) {
            // A buyer without a row (archived meanwhile) is not kept: it is read again.
            if let Some(&balance) = read.balances.get(buyer) {
                self.balances
                    .put((tenant, *buyer), version, read_at, balance);
            }
        }
        for (keys, version) in capped_buyers.iter().zip(buyer_cap_versions) {
            let copy = BuyerCapsCopy {
                periods: keys.periods,
                usage: read
                    .buyer_cap_usage
                    .get(&keys.id)
                    .copied()
                    .unwrap_or_default(),
            };
            self.buyer_caps
                .put((tenant, keys.id), version, read_at, copy);
        }
        kept.cap_usage.extend(read.cap_usage);
        kept.buyer_cap_usage.extend(read.buyer_cap_usage);
        kept.balances.extend(read.balances);
        kept.last_sale.extend(read.last_sale);
        let consumer = PingState {
            kept: Arc::default(),
            buyer_bought_at: read.buyer_bought_at,
            offer_sold_at: read.offer_sold_at,
            suppressed_lists: read.suppressed_lists,
        };
        Ok((ByKeys { kept, consumer }, oldest))
    }

    /// This process changed a contract's caps or last sale, or its buyer's balance or caps
    /// (call it after the change commits).
    pub fn forget_sale(&self, tenant_id: Uuid, contract_id: Uuid, buyer_id: Uuid) {
        self.contracts.forget((tenant_id, contract_id));
        self.balances.forget((tenant_id, buyer_id));
        self.buyer_caps.forget((tenant_id, buyer_id));
        self.changed(tenant_id);
    }

    /// This process changed a buyer's balance.
    pub fn forget_balance(&self, tenant_id: Uuid, buyer_id: Uuid) {
        self.balances.forget((tenant_id, buyer_id));
        self.changed(tenant_id);
    }

    /// This process changed state it cannot name key by key (the interrupted-sale sweep).
    pub fn forget_all(&self) {
        self.all_changes.fetch_add(1, Ordering::AcqRel);
        self.contracts.forget_all();
        self.balances.forget_all();
        self.buyer_caps.forget_all();
    }
}

/// What [`StateReader::read_by_keys`] put together, and what it read for the consumer.
struct ByKeys {
    kept: KeptState,
    consumer: PingState,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(200);

    fn key() -> Key {
        (Uuid::new_v4(), Uuid::new_v4())
    }

    #[test]
    fn a_copy_serves_until_it_is_older_than_the_ttl() {
        let table = Table::<i64>::new();
        let (key, start) = (key(), Instant::now());
        let lookup = table.get(&key, start, TTL);
        assert_eq!(lookup.fresh, None);
        table.put(key, lookup.version, start, 7);
        assert_eq!(
            table.get(&key, start + TTL / 2, TTL).fresh,
            Some((start, 7))
        );
        assert_eq!(table.get(&key, start + TTL, TTL).fresh, None);
        assert_eq!(table.get(&(key.0, Uuid::new_v4()), start, TTL).fresh, None);
    }

    #[test]
    fn a_read_that_began_before_a_change_cannot_store_what_it_saw() {
        let table = Table::<i64>::new();
        let (key, start) = (key(), Instant::now());
        // A ping looks the key up and reads the database; meanwhile this process changes it.
        let before = table.get(&key, start, TTL).version;
        table.forget(key);
        table.put(key, before, start, 1);
        assert_eq!(table.get(&key, start, TTL).fresh, None);
        // A read that began after the change stores its copy.
        let after = table.get(&key, start, TTL).version;
        table.put(key, after, start, 2);
        assert_eq!(table.get(&key, start, TTL).fresh, Some((start, 2)));
        // Forgetting drops the copy at once, one key or all of them.
        table.forget(key);
        assert_eq!(table.get(&key, start, TTL).fresh, None);
        let version = table.get(&key, start, TTL).version;
        table.put(key, version, start, 3);
        table.forget_all();
        assert_eq!(table.get(&key, start, TTL).fresh, None);
        table.put(key, version, start, 4);
        assert_eq!(table.get(&key, start, TTL).fresh, None);
        // Even for a key that had no slot when its read began.
        let other = (key.0, Uuid::new_v4());
        let before = table.get(&other, start, TTL).version;
        table.forget_all();
        table.put(other, before, start, 5);
        assert_eq!(table.get(&other, start, TTL).fresh, None);
    }

    fn a_request(contracts: usize) -> StateRequest {
        StateRequest {
            tenant_id: Uuid::new_v4(),
            offer_id: Uuid::new_v4(),
            contracts: (0..contracts)
                .map(|_| ContractKeys {
                    id: Uuid::new_v4(),
                    periods: [None; 5],
                })
                .collect(),
            buyer_ids: vec![Uuid::new_v4()],
            dedup_hashes: Vec::new(),
            buyer_caps: Vec::new(),
            suppression_lists: Arc::from(Vec::new()),
        }
    }

    fn copy_of(request: &StateRequest, generation: Generation, read_at: Instant) -> OfferCopy {
        OfferCopy {
            generation,
            read_at,
            contracts: request.contracts.clone(),
            buyer_ids: request.buyer_ids.clone(),
            buyer_caps: request.buyer_caps.clone(),
            kept: Arc::default(),
        }
    }

    #[test]
    fn an_offers_copy_serves_the_same_keys_while_nothing_changed_and_it_is_young() {
        let (request, start) = (a_request(3), Instant::now());
        let generation = Generation { all: 0, tenant: 4 };
        let copy = copy_of(&request, generation, start);
        assert!(copy.serves(&request, generation, start + TTL / 2, TTL));
        // Too old, or a change in its tenant since.
        assert!(!copy.serves(&request, generation, start + TTL, TTL));
        assert!(!copy.serves(&request, Generation { all: 0, tenant: 5 }, start, TTL));
        assert!(!copy.serves(&request, Generation { all: 1, tenant: 4 }, start, TTL));
        // A ping asking for other keys: a period rolled, a contract added, another buyer.
        let mut rolled = a_request(0);
        rolled.contracts = request.contracts.clone();
        rolled.buyer_ids = request.buyer_ids.clone();
        rolled.contracts[1].periods[0] = Some(Utc::now());
        assert!(!copy.serves(&rolled, generation, start, TTL));
        let mut added = a_request(0);
        added.contracts = request.contracts.clone();
        added.buyer_ids = request.buyer_ids.clone();
        added.contracts.push(ContractKeys {
            id: Uuid::new_v4(),
            periods: [None; 5],
        });
        assert!(!copy.serves(&added, generation, start, TTL));
        let mut other_buyer = a_request(0);
        other_buyer.contracts = request.contracts.clone();
        other_buyer.buyer_ids = vec![Uuid::new_v4()];
        assert!(!copy.serves(&other_buyer, generation, start, TTL));
    }

    #[tokio::test]
    async fn every_change_this_process_makes_moves_its_tenants_generation() {
        let db = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let reader = StateReader::start(db, TTL);
        let (tenant, other) = (Uuid::new_v4(), Uuid::new_v4());
        let before = reader.generation(tenant);
        reader.forget_balance(tenant, Uuid::new_v4());
        let after_funds = reader.generation(tenant);
        assert_ne!(after_funds, before);
        reader.forget_sale(tenant, Uuid::new_v4(), Uuid::new_v4());
        let after_sale = reader.generation(tenant);
        assert_ne!(after_sale, after_funds);
        // Another tenant's copies are not touched by this tenant's changes...
        let others = reader.generation(other);
        reader.forget_sale(tenant, Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(reader.generation(other), others);
        // ...but are by a change no key names.
        reader.forget_all();
        assert_ne!(reader.generation(other), others);
    }
}
