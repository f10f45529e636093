//! A post's answer (SPEC §2.2): built once from its sales, stored, and sent byte for byte to
//! its first request and to every retry; or "settling" while the settlement outlasts the
//! request, with the retries that wait for it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::api::{ErrorCode, Problem};
use crate::app::AppState;
use crate::auction::SaleType;
use crate::money::Money;
use crate::store::sales;

use super::settle::SaleResult;
use super::{PostStatus, SaleStatus};
use crate::verification::StepResult;

/// How often a waiting retry looks for the answer of a post settling in another process (one
/// settling in this process wakes it at once).
const REPLAY_SLOW_POLL: Duration = Duration::from_millis(500);

/// A post's answer: the stored JSON text, the same bytes for the first request and every retry;
/// or "settling" when the settlement outlasts the request (a retry collects the answer).
pub struct PostAnswer {
    pub body: String,
    pub replayed: bool,
    pub settling: bool,
}

impl PostAnswer {
    /// The final answer.
    pub fn done(body: String, replayed: bool) -> Self {
        Self {
            body,
            replayed,
            settling: false,
        }
    }

    /// The post's settlement goes on (a slow buyer, the database unavailable for a moment):
    /// not a failure, and not final. The same post sent again receives the final answer.
    pub fn settling(ping_id: Uuid, replayed: bool) -> Self {
        Self {
            body: json!({ "ping_id": ping_id, "status": "settling" }).to_string(),
            replayed,
            settling: true,
        }
    }
}

/// The answer of SPEC §2.2: each bid's status and the partner's payout (and for a direct post,
/// what was sold). Serialized by type, so amounts keep their two decimals (`27.30`).
#[derive(Serialize)]
pub struct PostAnswerBody {
    lead_id: Uuid,
    ping_id: Uuid,
    pub status: PostStatus,
    payout: Money,
    results: Vec<BidResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sale_type: Option<SaleType>,
    /// Why the post is `consent_unverified`: the provider's (or Gavel's) reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The required verification step that did not pass (docs/verification.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<StepResult>,
}

#[derive(Serialize)]
struct BidResult {
    bid_id: Uuid,
    status: SaleStatus,
    payout: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Every sale of the slot, the winner's first, when the cascade made an attempt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attempts: Vec<AttemptAnswer>,
}

/// One sale of a slot that cascaded, as the partner sees it.
#[derive(Serialize)]
struct AttemptAnswer {
    buyer_id: Uuid,
    status: SaleStatus,
    price: Money,
    payout: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl PostAnswerBody {
    pub fn new(
        lead_id: Uuid,
        ping_id: Uuid,
        results: &[SaleResult],
        sale_type: Option<SaleType>,
    ) -> Self {
        let accepted: Vec<&SaleResult> = results
            .iter()
            .filter(|r| r.status != SaleStatus::NotAccepted)
            .collect();
        let sold = accepted
            .iter()
            .filter(|r| r.status == SaleStatus::Sold)
            .count();
        let status = match sold {
            0 => PostStatus::Unsold,
            n if n == accepted.len() => PostStatus::Sold,
            _ => PostStatus::PartiallySold,
        };
        Self {
            lead_id,
            ping_id,
            status,
            payout: Money::from_cents(results.iter().map(|r| r.payout.cents()).sum()),
            results: results
                .iter()
                .map(|r| BidResult {
                    bid_id: r.bid_id,
                    status: r.status,
                    payout: r.payout,
                    reason: r.reason.clone(),
                    attempts: r
                        .attempts
                        .iter()
                        .map(|a| AttemptAnswer {
                            buyer_id: a.buyer_id,
                            status: a.status,
                            price: a.price,
                            payout: a.payout,
                            reason: (a.status != SaleStatus::Sold)
                                .then(|| a.reason.clone())
                                .flatten(),
                        })
                        .collect(),
                })
                .collect(),
            sale_type,
            reason: None,
            verification: None,
        }
    }

    /// The answer of a post that a required verification step refused: every accepted bid
    /// `consent_unverified` (the others `not_accepted`), nothing paid.
    pub fn unverified(
        lead_id: Uuid,
        ping_id: Uuid,
        bids: impl IntoIterator<Item = (Uuid, bool)>,
        refusal: &StepResult,
        sale_type: Option<SaleType>,
    ) -> Self {
        let reason = format!(
            "{}: {}",
            refusal.provider,
            refusal.reason.as_deref().unwrap_or(refusal.code)
        );
        Self {
            lead_id,
            ping_id,
            status: PostStatus::ConsentUnverified,
            payout: Money::ZERO,
            results: bids
                .into_iter()
                .map(|(bid_id, accepted)| BidResult {
                    bid_id,
                    status: if accepted {
                        SaleStatus::ConsentUnverified
                    } else {
                        SaleStatus::NotAccepted
                    },
                    payout: Money::ZERO,
                    reason: None,
                    attempts: Vec::new(),
                })
                .collect(),
            sale_type,
            reason: Some(reason),
            verification: Some(refusal.clone()),
        }
    }
}

/// Answers a post of an already claimed ping: with the stored answer when the body is the
/// same (waiting for the first request to finish, until `deadline`), 409 otherwise. Waiting is
/// bounded (`max_waiting_retries`; beyond it, "settling" at once) and woken when the first
/// request's settlement ends in this process; another process's is seen by a slow poll.
pub async fn replay(
    state: &AppState,
    tenant_id: Uuid,
    ping_id: Uuid,
    claimed: &[u8],
    body_sha256: &[u8; 32],
    stored: Option<String>,
    deadline: tokio::time::Instant,
) -> Result<PostAnswer, Problem> {
    if claimed != body_sha256 {
        return Err(Problem::new(ErrorCode::AlreadyPosted));
    }
    if let Some(body) = stored {
        return Ok(PostAnswer::done(body, true));
    }
    let Some(_slot) = state.post_waiters.wait_slot() else {
        return Ok(PostAnswer::settling(ping_id, true));
    };
    loop {
        // Armed before the answer is read, so that an end between the two is not missed
        // (notify_waiters wakes only the waiters registered by then).
        let notify = state.post_waiters.notifier(tenant_id, ping_id);
        let mut notified = std::pin::pin!(notify.as_ref().map(|n| n.notified()));
        if let Some(armed) = notified.as_mut().as_pin_mut() {
            armed.enable();
        }
        if let Some(body) = sales::stored_response(&state.db, tenant_id, ping_id).await? {
            return Ok(PostAnswer::done(body, true));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(PostAnswer::settling(ping_id, true));
        }
        let next_look = (now + REPLAY_SLOW_POLL).min(deadline);
        let woken = async {
            match notified.as_mut().as_pin_mut() {
                Some(armed) => armed.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep_until(next_look) => {}
        }
    }
}

/// Retries of a post whose first request is still settling, waiting for its answer: bounded
/// in number, and woken when a settlement of this process ends (another process's is seen by
/// a slow poll).
pub struct PostWaiters {
    slots: Arc<tokio::sync::Semaphore>,
    settling: std::sync::Mutex<std::collections::HashMap<(Uuid, Uuid), Arc<tokio::sync::Notify>>>,
}

/// Marks a post settling in this process until dropped (its task ended, however it ended):
/// then its waiting retries are woken.
pub struct Settling {
    waiters: AppState,
    key: (Uuid, Uuid),
}

impl Drop for Settling {
    fn drop(&mut self) {
        let notify = self
            .waiters
            .post_waiters
            .settling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }
}

impl PostWaiters {
    pub fn new(max_waiting: usize) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(max_waiting)),
            settling: Default::default(),
        }
    }

    /// Registers the settlement of `ping_id`'s post; its retries are woken when the guard
    /// drops.
    pub fn start(state: &AppState, tenant_id: Uuid, ping_id: Uuid) -> Settling {
        let key = (tenant_id, ping_id);
        state
            .post_waiters
            .settling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, Arc::new(tokio::sync::Notify::new()));
        Settling {
            waiters: state.clone(),
            key,
        }
    }

    /// A place among the waiting retries, or `None` when all are taken.
    pub fn wait_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// What wakes a retry of `ping_id`'s post, while it settles in this process.
    pub fn notifier(&self, tenant_id: Uuid, ping_id: Uuid) -> Option<Arc<tokio::sync::Notify>> {
        self.settling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(tenant_id, ping_id))
            .cloned()
    }
}
