//! The post (SPEC §5.6) as a service, beside the ping's (`evaluate.rs`): find the ping, replay
//! a post already made, check the lead, claim the ping, settle each accepted bid, and finish
//! with the recorded answer. The HTTP handlers (`api/post.rs`) translate a request into one
//! call here and its result back into HTTP.

mod answer;
pub mod cascade;
pub mod settle;
mod states;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::api::partner::{self, elapsed_us, lead_problem};
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::AppState;
use crate::auction::{
    LeadError, SaleType, check_post_matches_ping, validate_consent, validate_post,
};
use crate::money::Money;
use crate::pending_pings::Pending;
use crate::store::posts::{self, Claim};
use crate::store::sales::{self, PingForPost, PostSource, WonBid};
use crate::store::snapshot::CampaignContext;

use answer::PostAnswerBody;
pub use answer::{PostAnswer, PostWaiters, Settling};
use cascade::Cascade;
use settle::PostedLead;
pub use states::{BuyerVerdict, INTERRUPTED, PostKind, PostStatus, ReserveOutcome, SaleStatus};

/// A post's body, once read: the lead and consent it carries and the bids it accepts.
pub struct PostRequest {
    pub ping_id: Uuid,
    pub bid_ids: Option<Vec<Uuid>>,
    pub lead: Map<String, Value>,
    pub consent: Map<String, Value>,
    /// The partner's own tracking ids for this post (`sub_ids`); absent: the ping's.
    pub sub_ids: Option<Map<String, Value>>,
    /// Identifies the body for safe retries (key order and the posting key do not count).
    pub body_sha256: [u8; 32],
}

/// A direct post's body, once read: a ping's fields and a post's lead and consent.
pub struct DirectPost {
    pub lead: Map<String, Value>,
    pub consent: Map<String, Value>,
    pub dedup_hashes: Vec<[u8; 32]>,
    pub min_payout: Option<Money>,
    pub test: bool,
    /// The partner's own tracking ids (`sub_ids`): its ping's and its post's.
    pub sub_ids: Option<Map<String, Value>>,
    /// The auction's deadline (`max_wait_ms`), else its offer's.
    pub max_wait_ms: Option<u32>,
    pub body_sha256: [u8; 32],
}

/// Where a post's request came in, for its deadlines and its records.
#[derive(Clone, Copy)]
pub struct Timing {
    /// When the handler started (the recorded latency).
    pub started: Instant,
    /// When the request arrived, its body's reading included (the answer's deadline).
    pub arrived: Instant,
}

impl Timing {
    /// When a post (or its retry) answers "settling" rather than wait on: counted, as the
    /// request timeout is, from the request's arrival, not from the handler's start.
    fn answer_deadline(self, state: &AppState) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.arrived) + state.settings.post_answer_deadline()
    }
}

fn source_of(campaign: &CampaignContext) -> PostSource {
    PostSource {
        tenant_id: campaign.tenant.id,
        campaign_id: campaign.campaign.id,
        partner_id: campaign.campaign.partner_id,
        offer_id: campaign.offer.id,
    }
}

fn now_of(state: &AppState) -> DateTime<Utc> {
    state.clock.now().trunc_subsecs(6)
}

/// `POST /v1/post`: posts the lead to the ping's winners (SPEC §5.6).
pub async fn post(
    state: &AppState,
    campaign: &CampaignContext,
    request: PostRequest,
    slot: OwnedSemaphorePermit,
    timing: Timing,
) -> Result<PostAnswer, Problem> {
    post_to_winners(state, campaign, request, None, PostKind::Post, slot, timing).await
}

/// `POST /v1/leads`: the ping's auction on the lead without its PII, then the post to every
/// winner (SPEC §2.3). A lead that wins no bid is answered its ping's status, with no lead
/// stored.
pub async fn direct(
    state: &AppState,
    campaign: &CampaignContext,
    request: DirectPost,
    slot: OwnedSemaphorePermit,
    timing: Timing,
) -> Result<PostAnswer, Problem> {
    let DirectPost {
        lead,
        consent,
        mut dedup_hashes,
        min_payout,
        test,
        sub_ids,
        max_wait_ms,
        body_sha256,
    } = request;
    let offer = &campaign.offer;
    let mut errors: Vec<LeadError> = Vec::new();
    if let Err(found) = validate_post(&offer.schema, &lead) {
        errors.extend(found);
    }
    if let Err(found) = validate_consent(&consent, &offer.rules.require_consent) {
        errors.extend(found);
    }
    if !errors.is_empty() {
        return Err(lead_problem(errors));
    }
    // The email domains' MX look-ups, once every cheap check passed, before the auction.
    crate::validation_mx::check_lead(&state.mx, &offer.schema, &lead)
        .await
        .map_err(lead_problem)?;
    // The offer's dedup runs on the real consumer, as a ping's hashes would have it.
    dedup_hashes.extend(
        PostedLead::hash_keys(offer.schema.consumer_keys(&lead))
            .into_iter()
            .map(|(_, hash)| hash),
    );
    let ping_lead = offer.schema.without_pii(&lead);
    let auction = partner::auction(
        state,
        campaign,
        partner::PingRequest {
            lead: ping_lead,
            dedup_hashes,
            min_payout,
            test,
            sub_ids: sub_ids.clone(),
            max_wait_ms,
            record_first: true,
        },
        now_of(state),
        timing.started,
    )
    .await?;
    if auction.status != crate::auction::PingStatus::Bids {
        let answer = json!({ "ping_id": auction.ping_id, "status": auction.status,
                             "took_ms": timing.started.elapsed().as_millis() as u64 });
        let mut conn = state.db.acquire().await?;
        sales::insert_post_log(
            &mut conn,
            &source_of(campaign),
            Some(auction.ping_id),
            PostKind::Direct,
            200,
            auction.status.as_str(),
            test,
            elapsed_us(timing.started),
            now_of(state),
        )
        .await?;
        return Ok(PostAnswer::done(answer.to_string(), false));
    }
    let request = PostRequest {
        ping_id: auction.ping_id,
        bid_ids: None,
        lead,
        consent,
        sub_ids,
        body_sha256,
    };
    let sale_type = auction.sale_type;
    post_to_winners(
        state,
        campaign,
        request,
        sale_type,
        PostKind::Direct,
        slot,
        timing,
    )
    .await
}

/// Records a refused post or direct post (no lead: a refused one may hold anything).
pub async fn record_refusal(
    state: &AppState,
    campaign: &CampaignContext,
    kind: PostKind,
    ping_id: Option<Uuid>,
    problem: &Problem,
    started: Instant,
) {
    let (db, source) = (state.db.clone(), source_of(campaign));
    let (status, code) = (problem.code.status().as_u16(), problem.code.as_str());
    let (latency_us, now) = (elapsed_us(started), now_of(state));
    let write = async move {
        let mut conn = db.acquire().await?;
        sales::insert_post_log(
            &mut conn, &source, ping_id, kind, status, code, false, latency_us, now,
        )
        .await
    };
    state.record_refusal("post", write).await;
}

/// How long a post looks again for a ping it does not find but whose id says it was created
/// moments ago: another Gavel process may still be writing its record behind its answer
/// (`rtb_answer_before_record`, `ping_record_max_wait_ms`: docs/durability.md). Such a write
/// lands within milliseconds unless the database stalls.
const LANDING_WAIT: Duration = Duration::from_secs(1);
const LANDING_POLL: Duration = Duration::from_millis(20);
/// Ids older than this are not looked for again: a ping answers within 60 s of its creation
/// (`max_wait_ms`), and its record is written right after.
const LANDING_AGE: Duration = Duration::from_secs(120);

/// The ping and its bids ([`sales::find_ping`]). A ping not recorded (for any campaign) whose
/// id (a UUIDv7) is less than [`LANDING_AGE`] old, when `may_land` (no write of it failed
/// here), is looked for again every [`LANDING_POLL`] for up to [`LANDING_WAIT`] (or
/// `deadline`), by at most a few posts at once (`PendingPings::landing_wait`), then not found.
async fn find_ping_landing(
    state: &AppState,
    tenant_id: Uuid,
    campaign_id: Uuid,
    ping_id: Uuid,
    may_land: bool,
    deadline: tokio::time::Instant,
) -> Result<Option<(sales::PingForPost, Vec<sales::WonBid>)>, sqlx::Error> {
    let lookup = sales::find_ping(&state.db, tenant_id, campaign_id, ping_id).await?;
    if !matches!(lookup, sales::PingLookup::Absent) || !may_land || !created_lately(ping_id) {
        return Ok(lookup.found());
    }
    let Some(_place) = state.pending_pings.landing_wait() else {
        return Ok(None);
    };
    let until = deadline.min(tokio::time::Instant::now() + LANDING_WAIT);
    while tokio::time::Instant::now() + LANDING_POLL <= until {
        tokio::time::sleep(LANDING_POLL).await;
        match sales::find_ping(&state.db, tenant_id, campaign_id, ping_id).await? {
            sales::PingLookup::Absent => {}
            landed => return Ok(landed.found()),
        }
    }
    Ok(None)
}

/// Whether `ping_id` is a UUIDv7 created less than [`LANDING_AGE`] ago by this machine's clock
/// (a few seconds ahead allowed for another machine's).
fn created_lately(ping_id: Uuid) -> bool {
    let Some(created) = ping_id.get_timestamp() else {
        return false;
    };
    let (seconds, nanos) = created.to_unix();
    let created = std::time::UNIX_EPOCH + Duration::new(seconds, nanos);
    let now = std::time::SystemTime::now();
    match now.duration_since(created) {
        Ok(age) => age <= LANDING_AGE,
        Err(ahead) => ahead.duration() <= Duration::from_secs(5),
    }
}

/// SPEC §5.6: find the ping, answer a post already made, check the lead, claim the ping,
/// then settle and finish.
async fn post_to_winners(
    state: &AppState,
    campaign: &CampaignContext,
    request: PostRequest,
    sale_type: Option<SaleType>,
    kind: PostKind,
    slot: OwnedSemaphorePermit,
    timing: Timing,
) -> Result<PostAnswer, Problem> {
    let now = now_of(state);
    let tenant_id = campaign.tenant.id;
    // 1. The ping, of this campaign, with its bids: if its record is being written behind
    // its answer here (`ping_record_max_wait_ms`), once that write is done. (Asked before the
    // look-up, not after a miss: a write that ended in between would be missed both ways.)
    let pending = state
        .pending_pings
        .wait(request.ping_id, timing.answer_deadline(state))
        .await;
    if pending == Pending::StillWriting {
        // The record may yet land: a retry, not a `ping_not_found` the partner would trust.
        return Err(Problem::new(ErrorCode::Unavailable)
            .detail("the ping's record is still being written; retry")
            .retry_after(1));
    }
    // A write here that ended and did not leave the ping failed: no other process writes it.
    let may_land = pending == Pending::No;
    let (ping, bids) = find_ping_landing(
        state,
        tenant_id,
        campaign.campaign.id,
        request.ping_id,
        may_land,
        timing.answer_deadline(state),
    )
    .await?
    .ok_or_else(|| Problem::new(ErrorCode::PingNotFound))?;
    if ping.result != crate::auction::PingStatus::Bids.as_str() {
        return Err(Problem::new(ErrorCode::PingNotPostable)
            .detail(format!("the ping's status is {}", ping.result)));
    }
    // A post already made: the same body gets the same answer, another body is refused.
    if let Some(claimed) = &ping.post_body_sha256 {
        drop(slot);
        let stored = ping.post_response;
        return answer::replay(
            state,
            tenant_id,
            request.ping_id,
            claimed,
            &request.body_sha256,
            stored,
            timing.answer_deadline(state),
        )
        .await;
    }
    // 1–2. Not expired, the lead valid and bound to the ping, the bids the ping's.
    check(campaign, &ping, &bids, &request, now)?;
    // 2. The email domains' MX look-ups (docs/validation.md), once every cheap check passed and
    // before the claim: a refused post leaves the ping postable.
    crate::validation_mx::check_lead(&state.mx, &campaign.offer.schema, &request.lead)
        .await
        .map_err(lead_problem)?;

    let source = source_of(campaign);
    let lead_id = Uuid::now_v7();
    // The consumer's hashes: its dedup keys, and how an erasure finds its leads.
    let consumer_keys = PostedLead::hash_keys(campaign.offer.schema.consumer_keys(&request.lead));
    let consumer_hashes: Vec<[u8; 32]> = consumer_keys.iter().map(|(_, hash)| *hash).collect();
    let stored = state.pii.seal_lead(
        tenant_id,
        lead_id,
        campaign.offer.schema.without_pii(&request.lead),
        &request.lead,
        &request.consent,
    );
    let claim = posts::claim(
        &state.post_claims,
        &state.db,
        &source,
        request.ping_id,
        &request.body_sha256,
        lead_id,
        stored,
        &consumer_hashes,
        &campaign.offer.suppression_lists,
        ping.test,
        now,
    )
    .await?;
    let suppressed_lists = match claim {
        Claim::Won { suppressed_lists } => suppressed_lists,
        Claim::Lost { body_sha256 } => {
            // A concurrent request claimed it first.
            drop(slot);
            return answer::replay(
                state,
                tenant_id,
                request.ping_id,
                &body_sha256,
                &request.body_sha256,
                None,
                timing.answer_deadline(state),
            )
            .await;
        }
    };

    // 3 and 5, in a task of their own.
    // The post's own sub-ids, else its ping's.
    let sub_ids = request
        .sub_ids
        .or_else(|| ping.sub_ids.map(|sub_ids| sub_ids.0))
        .map(Arc::new);
    let posted = PostedLead {
        source,
        campaign: campaign.clone(),
        ping_id: request.ping_id,
        lead_id,
        lead: request.lead,
        consent: request.consent,
        sub_ids,
        consumer_keys,
        suppressed_lists,
        test: ping.test,
        now,
    };
    let ping_id = request.ping_id;
    let cascade = Cascade::new(
        &posted,
        &bids,
        ping.min_payout_cents.map(Money::from_cents),
        // From the settlement's start: a direct post's auction does not use up its cascade.
        Instant::now(),
    );
    let settling = settle_and_finish(
        state,
        posted,
        bids,
        cascade,
        request.bid_ids,
        sale_type,
        kind,
        slot,
        timing,
    );
    // Past the claim, the post is the partner's: it is answered with its final state, or
    // "settling" (never a 503) when the settlement outlasts the request's deadline or could not
    // write its end (the interrupted-sale sweep finishes it); the same post sent again
    // receives the final answer.
    match tokio::time::timeout_at(timing.answer_deadline(state), settling).await {
        Ok(Ok(Ok(body))) => Ok(PostAnswer::done(body, false)),
        Ok(Ok(Err(error))) => {
            tracing::error!(%error, "a post's settlement could not be written; the sweep finishes it");
            Ok(PostAnswer::settling(ping_id, false))
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "a post's settlement failed");
            Ok(PostAnswer::settling(ping_id, false))
        }
        Err(_) => Ok(PostAnswer::settling(ping_id, false)),
    }
}

/// SPEC §5.6 steps 1–2 past the ping's lookup: the campaign still sells, the ping has not
/// expired, the lead is valid, matches the ping and carries the consent required, and every
/// accepted bid is the ping's.
fn check(
    campaign: &CampaignContext,
    ping: &PingForPost,
    bids: &[WonBid],
    request: &PostRequest,
    now: DateTime<Utc>,
) -> Result<(), Problem> {
    if !campaign.is_active() {
        return Err(Problem::new(ErrorCode::CampaignPaused));
    }
    if ping.expires_at.is_some_and(|expires_at| now > expires_at) {
        return Err(Problem::new(ErrorCode::PingExpired));
    }
    let offer = &campaign.offer;
    let mut errors: Vec<LeadError> = Vec::new();
    if let Err(found) = validate_post(&offer.schema, &request.lead) {
        errors.extend(found);
    }
    let pinged = ping.lead.as_ref().map(|lead| &lead.0);
    if let Some(pinged) = pinged
        && let Err(found) = check_post_matches_ping(&offer.schema, pinged, &request.lead)
    {
        errors.extend(found);
    }
    if let Err(found) = validate_consent(&request.consent, &offer.rules.require_consent) {
        errors.extend(found);
    }
    if !errors.is_empty() {
        return Err(lead_problem(errors));
    }
    if let Some(ids) = &request.bid_ids {
        let unknown: Vec<FieldError> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !bids.iter().any(|bid| bid.bid_id == **id))
            .map(|(n, _)| FieldError {
                pointer: format!("/bid_ids/{n}"),
                code: ErrorCode::InvalidField,
            })
            .collect();
        if !unknown.is_empty() {
            return Err(Problem::new(ErrorCode::InvalidField)
                .with_errors(unknown)
                .detail("not a bid of this ping"));
        }
    }
    Ok(())
}

/// SPEC §5.6 steps 3 and 5 in their own task, tracked for shutdown: a partner that hangs up,
/// the request timeout or SIGTERM never cut a sale half-way; a retry receives its answer.
/// Ends with the stored answer's text.
#[allow(clippy::too_many_arguments)]
fn settle_and_finish(
    state: &AppState,
    posted: PostedLead,
    bids: Vec<WonBid>,
    cascade: Option<Arc<Cascade>>,
    accepted: Option<Vec<Uuid>>,
    sale_type: Option<SaleType>,
    kind: PostKind,
    slot: OwnedSemaphorePermit,
    timing: Timing,
) -> tokio::task::JoinHandle<Result<String, crate::Error>> {
    let state = state.clone();
    let tracker = state.settlements.clone();
    let settling_here = PostWaiters::start(&state, posted.source.tenant_id, posted.ping_id);
    let posted = Arc::new(posted);
    tracker.spawn(async move {
        let _slot = slot;
        // Its waiting retries are woken when this task ends, however it ends.
        let _settling_here = settling_here;
        // Consent verification (docs/verification.md): before anything is reserved, so that
        // a lead whose consent is not verified costs no buyer anything.
        let steps = &posted.campaign.offer.verification;
        let report = if steps.is_empty() {
            None
        } else {
            Some(crate::verification::verify(&state, &posted, steps).await)
        };
        let verification = report.as_ref().map(crate::verification::Report::to_value);
        let is_accepted = |bid: &WonBid| {
            accepted
                .as_ref()
                .is_none_or(|ids| ids.contains(&bid.bid_id))
        };
        let (response, dispositions) = match report.as_ref().and_then(|r| r.refusal()) {
            // A required step refused: nothing is settled, every accepted winner says why.
            Some(refusal) => {
                let response = PostAnswerBody::unverified(
                    posted.lead_id,
                    posted.ping_id,
                    bids.iter().map(|bid| (bid.bid_id, is_accepted(bid))),
                    refusal,
                    sale_type,
                );
                let dispositions: Vec<posts::Disposition> = bids
                    .iter()
                    .map(|bid| posts::Disposition {
                        contract_id: bid.contract_id,
                        status: if is_accepted(bid) {
                            SaleStatus::ConsentUnverified
                        } else {
                            SaleStatus::NotAccepted
                        },
                    })
                    .collect();
                (response, dispositions)
            }
            None => {
                let notice_bids =
                    crate::notices::bids_to_notify(&posted.campaign, posted.test, &bids);
                let results =
                    settle::settle_all(&state, Arc::clone(&posted), bids, is_accepted, cascade)
                        .await?;
                // Win and loss notices (docs/revenue-recovery.md §7), queued: they never delay
                // the post.
                crate::notices::after_post(
                    &state.notices,
                    &posted.campaign,
                    posted.ping_id,
                    posted.lead_id,
                    &notice_bids,
                    &results,
                );
                let response =
                    PostAnswerBody::new(posted.lead_id, posted.ping_id, &results, sale_type);
                let dispositions: Vec<posts::Disposition> = results
                    .iter()
                    .map(|r| posts::Disposition {
                        contract_id: r.contract_id,
                        status: r.own_status(),
                    })
                    .collect();
                (response, dispositions)
            }
        };
        crate::meters::post(response.status.as_str(), timing.started.elapsed());
        posts::finish_post(
            &state.post_finishes,
            &posted.source,
            posted.ping_id,
            dispositions,
            serde_json::to_string(&response).unwrap_or_default(),
            kind,
            response.status,
            posted.test,
            elapsed_us(timing.started),
            posted.now,
            verification,
        )
        .await
        .map_err(crate::Error::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v7_aged(age: Duration) -> Uuid {
        let at = std::time::SystemTime::now() - age;
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
        let timestamp =
            uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
        Uuid::new_v7(timestamp)
    }

    #[test]
    fn only_a_ping_id_created_in_the_last_two_minutes_is_looked_for_again() {
        assert!(created_lately(Uuid::now_v7()));
        assert!(created_lately(v7_aged(Duration::from_secs(100))));
        assert!(!created_lately(v7_aged(Duration::from_secs(130))));
        assert!(!created_lately(Uuid::new_v4()), "no time in a v4 id");
    }
}
