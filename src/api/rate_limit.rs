//! Per-campaign ping rate limits: a token bucket refilled at `ping_rate_per_second`, with a
//! burst of the same size. In-process: with several Gavel processes behind a load balancer,
//! each enforces the full rate (documented in the README).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

#[derive(Default)]
pub struct CampaignRateLimits {
    limiters: Mutex<HashMap<Uuid, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
}

impl CampaignRateLimits {
    /// Takes a token for `campaign`, or says in how many whole seconds to retry.
    pub fn check(&self, campaign: Uuid, per_second: Option<u32>) -> Result<(), u64> {
        let Some(rate) = per_second.and_then(NonZeroU32::new) else {
            return Ok(());
        };
        let limiter = {
            let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
            let entry = limiters
                .entry(campaign)
                .or_insert_with(|| (rate, Arc::new(RateLimiter::direct(Quota::per_second(rate)))));
            // A changed rate starts a fresh bucket.
            if entry.0 != rate {
                *entry = (rate, Arc::new(RateLimiter::direct(Quota::per_second(rate))));
            }
            Arc::clone(&entry.1)
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Summary reports running: at most `max_concurrent_reports` in the process and one per
/// tenant, so one tenant's reports cannot take the connections every tenant's pings need.
pub struct ReportSlots {
    slots: Arc<tokio::sync::Semaphore>,
    running: Mutex<std::collections::HashSet<Uuid>>,
}

/// A report's place among those running; given back when dropped.
pub struct ReportSlot<'a> {
    _permit: tokio::sync::OwnedSemaphorePermit,
    tenant: Uuid,
    owner: &'a ReportSlots,
}

impl ReportSlots {
    pub fn new(max_concurrent: usize) -> Self {
        ReportSlots {
            slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
            running: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// A slot for `tenant`'s report, or `None` when the tenant already runs one or every
    /// slot is taken (the caller answers 429 at once rather than queue).
    pub fn try_take(&self, tenant: Uuid) -> Option<ReportSlot<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains(&tenant) {
            return None;
        }
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        running.insert(tenant);
        Some(ReportSlot {
            _permit: permit,
            tenant,
            owner: self,
        })
    }
}

impl Drop for ReportSlot<'_> {
    fn drop(&mut self) {
        self.owner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_passes_then_callers_are_told_when_to_retry() {
        let limits = CampaignRateLimits::default();
        let campaign = Uuid::now_v7();
        for _ in 0..5 {
            assert_eq!(limits.check(campaign, Some(5)), Ok(()));
        }
        assert_eq!(limits.check(campaign, Some(5)), Err(1));
        // Other campaigns have their own bucket; no rate means no limit.
        assert_eq!(limits.check(Uuid::now_v7(), Some(5)), Ok(()));
        for _ in 0..100 {
            assert_eq!(limits.check(Uuid::now_v7(), None), Ok(()));
        }
        // A new rate takes effect at once.
        assert_eq!(limits.check(campaign, Some(50)), Ok(()));
    }
}
