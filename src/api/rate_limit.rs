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
