//! Definitive verification answers kept in this process, per certificate, for as long as
//! the answer may be reused (`Judgement::valid_until`): a second post with the same
//! certificate makes no second call. Keyed by a SHA-256 of the tenant, the provider, the
//! step's credentials, the certificate (or LeadiD) and, with match-lead, the matched email
//! and phone: no key holds a certificate, a credential or PII in the clear. Bounded: at
//! `capacity`, expired entries are dropped, then the soonest to expire.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::judge::{Judgement, Outcome};

pub const DEFAULT_CAPACITY: usize = 100_000;

pub type Key = [u8; 32];

/// The cache key of a step's call: every part hashed, each preceded by its length.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

pub struct Cache {
    capacity: usize,
    entries: Mutex<HashMap<Key, Judgement>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(DEFAULT_CAPACITY)
    }
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache {
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Judgement>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer kept for `key`, while it is valid at `now`.
    pub fn get(&self, key: &Key, now: DateTime<Utc>) -> Option<Judgement> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some(found) if found.valid_until.is_some_and(|until| now < until) => {
                Some(found.clone())
            }
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps a definitive answer (passed or failed, with a validity in the future).
    pub fn put(&self, key: Key, judgement: &Judgement, now: DateTime<Utc>) {
        if judgement.outcome == Outcome::Unavailable
            || judgement.valid_until.is_none_or(|until| until <= now)
        {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, kept| kept.valid_until.is_some_and(|until| now < until));
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, kept)| kept.valid_until)
                    .map(|(key, _)| *key);
                if let Some(soonest) = soonest {
                    entries.remove(&soonest);
                }
            }
        }
        entries.insert(key, judgement.clone());
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn answers_are_kept_while_valid_and_the_size_is_bounded() {
        let cache = Cache::new(2);
        let pass = Judgement::passed(at(60));
        cache.put(key(&[b"a"]), &pass, at(0));
        assert_eq!(cache.get(&key(&[b"a"]), at(59)), Some(pass.clone()));
        assert_eq!(cache.get(&key(&[b"a"]), at(60)), None);
        assert!(cache.is_empty());

        cache.put(
            key(&[b"unavailable"]),
            &Judgement::unavailable("timeout", "x"),
            at(0),
        );
        assert!(cache.is_empty());

        cache.put(key(&[b"1"]), &Judgement::passed(at(30)), at(0));
        cache.put(key(&[b"2"]), &Judgement::passed(at(90)), at(0));
        cache.put(key(&[b"3"]), &Judgement::passed(at(120)), at(0));
        assert_eq!(cache.len(), 2);
        // The soonest to expire made room.
        assert_eq!(cache.get(&key(&[b"1"]), at(1)), None);
        assert!(cache.get(&key(&[b"3"]), at(1)).is_some());
    }

    #[test]
    fn key_parts_do_not_run_together() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
    }
}
