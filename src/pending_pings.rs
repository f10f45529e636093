//! Pings answered before their record's write completed (docs/durability.md): a ping that
//! asked its buyers for bids (`rtb_answer_before_record`), or whose write outlasted
//! `ping_record_max_wait_ms` (a database stalled on the disk), answers and has its record
//! written behind it. A post of such a ping that arrives at this process meanwhile waits for
//! the write instead of answering `ping_not_found`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

/// The records being written behind their pings' answers, by ping id.
pub struct PendingPings {
    writes: Arc<Mutex<HashMap<Uuid, watch::Receiver<()>>>>,
    /// At most this many at once: past it a ping waits for its record (back-pressure).
    limit: usize,
    /// Whether the last record written failed: pings then wait for theirs rather than answer
    /// ahead of a write that is likely to fail too (a database that refuses writes).
    failing: AtomicBool,
    /// Posts looking again for a ping another process may be writing (bounded: past it, a post
    /// that does not find its ping is answered at once).
    landing_waits: Arc<tokio::sync::Semaphore>,
}

/// The most posts at once that look again for a ping not found (`post::find_ping_landing`).
const LANDING_WAITS: usize = 32;

/// What a post found of its ping's record being written behind its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Nothing was being written for it: the record is in the database, or never will be.
    No,
    /// A write was, and has ended (written or failed).
    Ended,
    /// The write outlasted the wait.
    StillWriting,
}

/// One record written behind its answer: dropping it (the write done, or failed) releases
/// every post waiting for it.
pub struct PendingWrite {
    ping_id: Uuid,
    writes: Arc<Mutex<HashMap<Uuid, watch::Receiver<()>>>>,
    _done: watch::Sender<()>,
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        lock(&self.writes).remove(&self.ping_id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PendingPings {
    pub fn new(limit: usize) -> Self {
        Self {
            writes: Arc::default(),
            limit,
            failing: AtomicBool::new(false),
            landing_waits: Arc::new(tokio::sync::Semaphore::new(LANDING_WAITS)),
        }
    }

    /// Notes how a ping's record's write ended (stored only on a change: every ping's record
    /// passes here, from every worker).
    pub fn note_write(&self, written: bool) {
        if self.failing.load(Ordering::Relaxed) == written {
            self.failing.store(!written, Ordering::Relaxed);
        }
    }

    /// Whether the last record's write failed (a ping then waits for its own).
    pub fn writes_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// A place among the posts looking again for their ping; `None` when all are taken.
    pub fn landing_wait(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.landing_waits).try_acquire_owned().ok()
    }

    /// Registers a ping whose record will be written behind its answer; `None` when too many
    /// are already (the ping then waits for its own).
    pub fn begin(&self, ping_id: Uuid) -> Option<PendingWrite> {
        let mut writes = lock(&self.writes);
        if writes.len() >= self.limit {
            return None;
        }
        let (done, waiting) = watch::channel(());
        writes.insert(ping_id, waiting);
        Some(PendingWrite {
            ping_id,
            writes: Arc::clone(&self.writes),
            _done: done,
        })
    }

    /// Waits until the ping's record, if being written behind its answer, is written (or its
    /// write failed) or `deadline` passes.
    pub async fn wait(&self, ping_id: Uuid, deadline: tokio::time::Instant) -> Pending {
        let waiting = lock(&self.writes).get(&ping_id).cloned();
        let Some(mut waiting) = waiting else {
            return Pending::No;
        };
        // The sender is never used: `changed` returns when it is dropped.
        match tokio::time::timeout_at(deadline, waiting.changed()).await {
            Ok(_) => Pending::Ended,
            Err(_) => Pending::StillWriting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_post_waits_for_a_pending_write_and_not_for_an_unknown_ping() {
        let pending = Arc::new(PendingPings::new(2));
        let far = tokio::time::Instant::now() + Duration::from_secs(5);
        assert_eq!(
            pending.wait(Uuid::now_v7(), far).await,
            Pending::No,
            "unknown: no wait"
        );

        let ping_id = Uuid::now_v7();
        let write = pending.begin(ping_id).expect("under the limit");
        let waiter = tokio::spawn({
            let pending = Arc::clone(&pending);
            async move { pending.wait(ping_id, far).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the post waits while the write runs");
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert_eq!(
            pending.wait(ping_id, soon).await,
            Pending::StillWriting,
            "a wait that ends first says so"
        );
        drop(write);
        assert_eq!(
            waiter.await.unwrap(),
            Pending::Ended,
            "released when the write ends"
        );
        assert_eq!(
            pending.wait(ping_id, far).await,
            Pending::No,
            "written: nothing to wait for"
        );
    }

    #[test]
    fn past_its_limit_a_ping_waits_for_its_own_record() {
        let pending = PendingPings::new(1);
        let first = pending.begin(Uuid::now_v7());
        assert!(first.is_some());
        assert!(pending.begin(Uuid::now_v7()).is_none(), "at the limit");
        drop(first);
        assert!(pending.begin(Uuid::now_v7()).is_some(), "room again");
    }
}
