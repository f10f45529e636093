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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auction::PeriodUsage;
use crate::money::Money;
use crate::store::group::Group;
use crate::store::pings::{AuctionState, ContractKeys, PeriodStarts, ReadStates, StateRequest};

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
    fresh: Option<T>,
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
                    .filter(|(read_at, _)| now.saturating_duration_since(*read_at) < ttl)
                    .map(|(_, copy)| copy),
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

/// Reads the pings' state: from the copies when they are young enough, the rest in one
/// grouped statement.
pub struct StateReader {
    group: Group<ReadStates>,
    ttl: Duration,
    contracts: Table<ContractCopy>,
    balances: Table<Money>,
    buyer_caps: Table<BuyerCapsCopy>,
    /// When each contract of a `round_robin` offer last won a ping in this process: its turn
    /// comes round at the ping, not only once a sale completes (docs/revenue-recovery.md §3).
    last_wins: Mutex<HashMap<(Uuid, Uuid), DateTime<Utc>>>,
}

impl StateReader {
    /// With `ttl` zero no copy is ever young enough: every ping reads everything.
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

    pub fn start(db: PgPool, ttl: Duration) -> Self {
        Self {
            group: Group::start(db),
            ttl,
            contracts: Table::new(),
            balances: Table::new(),
            buyer_caps: Table::new(),
            last_wins: Mutex::default(),
        }
    }

    /// The state of `request`'s contracts and buyers, and its consumer's sales.
    pub async fn read(&self, request: StateRequest) -> Result<AuctionState, sqlx::Error> {
        let read_at = Instant::now();
        let tenant = request.tenant_id;
        let mut state = AuctionState::default();
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
                Some(copy) if copy.periods == keys.periods => {
                    state.cap_usage.insert(keys.id, copy.usage);
                    if let Some(at) = copy.last_sale {
                        state.last_sale.insert(keys.id, at);
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
                Some(balance) => {
                    state.balances.insert(buyer, balance);
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
                Some(copy) if copy.periods == keys.periods => {
                    state.buyer_cap_usage.insert(keys.id, copy.usage);
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
            return Ok(state);
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
        state.cap_usage.extend(read.cap_usage);
        state.buyer_cap_usage.extend(read.buyer_cap_usage);
        state.balances.extend(read.balances);
        state.last_sale.extend(read.last_sale);
        state.buyer_bought_at = read.buyer_bought_at;
        state.offer_sold_at = read.offer_sold_at;
        state.suppressed_lists = read.suppressed_lists;
        Ok(state)
    }

    /// This process changed a contract's caps or last sale, or its buyer's balance or caps
    /// (call it after the change commits).
    pub fn forget_sale(&self, tenant_id: Uuid, contract_id: Uuid, buyer_id: Uuid) {
        self.contracts.forget((tenant_id, contract_id));
        self.balances.forget((tenant_id, buyer_id));
        self.buyer_caps.forget((tenant_id, buyer_id));
    }

    /// This process changed a buyer's balance.
    pub fn forget_balance(&self, tenant_id: Uuid, buyer_id: Uuid) {
        self.balances.forget((tenant_id, buyer_id));
    }

    /// This process changed state it cannot name key by key (the interrupted-sale sweep).
    pub fn forget_all(&self) {
        self.contracts.forget_all();
        self.balances.forget_all();
        self.buyer_caps.forget_all();
    }
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
        assert_eq!(table.get(&key, start + TTL / 2, TTL).fresh, Some(7));
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
        assert_eq!(table.get(&key, start, TTL).fresh, Some(2));
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
}
