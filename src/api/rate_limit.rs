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
/// tenant at a time, so one tenant's reports cannot take the connections every tenant's pings
/// need. A report waits its turn for a bounded time.
pub struct ReportSlots {
    slots: Arc<tokio::sync::Semaphore>,
    tenants: Mutex<HashMap<Uuid, Arc<tokio::sync::Semaphore>>>,
}

/// A report's place among those running; given back when dropped.
pub struct ReportSlot {
    _tenant: tokio::sync::OwnedSemaphorePermit,
    _process: tokio::sync::OwnedSemaphorePermit,
}

impl ReportSlots {
    pub fn new(max_concurrent: usize) -> Self {
        ReportSlots {
            slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `tenant`'s report, after the tenant's running report and then a process
    /// slot are free; `None` if that takes longer than `within`.
    pub async fn take(&self, tenant: Uuid, within: std::time::Duration) -> Option<ReportSlot> {
        let turn = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                tenants
                    .entry(tenant)
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1))),
            )
        };
        let slots = Arc::clone(&self.slots);
        tokio::time::timeout(within, async move {
            let tenant = turn.acquire_owned().await.ok()?;
            let process = slots.acquire_owned().await.ok()?;
            Some(ReportSlot {
                _tenant: tenant,
                _process: process,
            })
        })
        .await
        .ok()
        .flatten()
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
