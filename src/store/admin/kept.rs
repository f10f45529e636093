//! Closed time buckets' aggregates, kept in memory: once a bucket has ended and nothing more
//! is written in it, its figures no longer change, so the overview and the summary report
//! read it once and scan only the latest buckets at each view. The memory is the process's: a
//! restart reads each bucket once more.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A bucket: whose (a tenant, and what it is grouped by), its start and its end.
type BucketKey<K> = (K, DateTime<Utc>, DateTime<Utc>);

pub struct Kept<K, T> {
    buckets: LazyLock<Mutex<HashMap<BucketKey<K>, T>>>,
    /// How long after its end a bucket is kept: once nothing more is written in it.
    settled_after: Duration,
    /// How long after its end a bucket may still be asked for (older ones are dropped, and
    /// read again if asked for).
    asked_for: Duration,
}

impl<K: Copy + Eq + Hash, T: Clone + Default> Kept<K, T> {
    pub const fn new(settled_after: Duration, asked_for: Duration) -> Self {
        Kept {
            buckets: LazyLock::new(|| Mutex::new(HashMap::new())),
            settled_after,
            asked_for,
        }
    }

    /// Each bucket `[bounds[i], bounds[i + 1])`: the kept ones from memory, the others (the
    /// latest ones) from one `read` of the range from the first bucket not kept.
    pub async fn get<F>(
        &self,
        whose: K,
        bounds: &[DateTime<Utc>],
        now: DateTime<Utc>,
        read: impl FnOnce(Vec<DateTime<Utc>>) -> F,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        F: Future<Output = Result<Vec<T>, sqlx::Error>>,
    {
        let n = bounds.len().saturating_sub(1);
        let key = |i: usize| (whose, bounds[i], bounds[i + 1]);
        let mut out: Vec<Option<T>> = {
            let kept = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            (0..n).map(|i| kept.get(&key(i)).cloned()).collect()
        };
        let Some(first) = out.iter().position(Option::is_none) else {
            return Ok(out.into_iter().flatten().collect());
        };
        let fresh = read(bounds[first..].to_vec()).await?;
        let mut kept = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = now - self.asked_for;
        kept.retain(|(_, _, end), _| *end > oldest);
        for (offset, value) in fresh.into_iter().enumerate() {
            let i = first + offset;
            let end = bounds[i + 1];
            if end + self.settled_after <= now && end > oldest {
                kept.insert(key(i), value.clone());
            }
            out[i] = Some(value);
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }
}
