//! The partner API's second half: `POST /v1/post` (SPEC §2.2, §5.6) and the direct post
//! `POST /v1/leads` (§2.3), which pings and posts in one call through the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::extract::JsonObject;
use crate::api::idempotency;
use crate::api::partner::{self, PingRequest, authenticate, elapsed_us, invalid, lead_problem};
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::{AppState, Arrived};
use crate::auction::{
    LeadError, SaleType, check_post_matches_ping, validate_consent, validate_post,
};
use crate::money::Money;
use crate::settle::{self, PostedLead, SaleResult};
use crate::store::idempotency::KeyScope;
use crate::store::sales::{self, Claim, PostSource};
use crate::store::snapshot::CampaignContext;
use tokio::sync::OwnedSemaphorePermit;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_lead))
        .routes(routes!(direct_post))
}

/// How often a waiting retry looks for the answer of a post settling in another process (one
/// settling in this process wakes it at once).
const REPLAY_SLOW_POLL: Duration = Duration::from_millis(500);

/// A post's answer: the stored JSON text, the same bytes for the first request and every retry;
/// or `202` "settling" when the settlement outlasts the request (a retry collects the answer).
struct PostAnswer {
    body: String,
    replayed: bool,
    settling: bool,
}

impl PostAnswer {
    /// The post's settlement goes on (a slow buyer, the database unavailable for a moment):
    /// not a failure, and not final. The same post sent again receives the final answer.
    fn settling(ping_id: Uuid, replayed: bool) -> Self {
        Self {
            body: json!({ "ping_id": ping_id, "status": "settling" }).to_string(),
            replayed,
            settling: true,
        }
    }
}

impl IntoResponse for PostAnswer {
    fn into_response(self) -> Response {
        let mut response = self.body.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        if self.settling {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            *response.status_mut() = axum::http::StatusCode::ACCEPTED;
        }
        response
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

/// When a post (or its retry) whose request arrived at `arrived` answers "settling" rather than
/// wait on: counted, as the request timeout is, from the request's arrival (its body's reading
/// included), not from the handler's start.
fn answer_deadline(state: &AppState, arrived: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(arrived) + state.settings.post_answer_deadline()
}

/// The request's arrival (see [`Arrived`]); now if the layer is absent.
fn arrival(arrived: Option<Extension<Arrived>>) -> Instant {
    arrived.map_or_else(Instant::now, |Extension(Arrived(at))| at)
}

fn now_of(state: &AppState) -> DateTime<Utc> {
    state.clock.now().trunc_subsecs(6)
}

/// Records a refused post or direct post (no lead: a refused one may hold anything).
async fn record_refusal(
    state: &AppState,
    campaign: &CampaignContext,
    kind: &str,
    ping_id: Option<Uuid>,
    problem: &Problem,
    started: Instant,
) {
    let source = source_of(campaign);
    let recorded = async {
        let mut conn = state.db.acquire().await?;
        let status = problem.code.status().as_u16();
        sales::insert_post_log(
            &mut conn,
            &source,
            ping_id,
            kind,
            status,
            problem.code.as_str(),
            false,
            elapsed_us(started),
            now_of(state),
        )
        .await
    };
    if let Err(error) = recorded.await {
        tracing::warn!(%error, "cannot record a refused post");
    }
}

/// `POST /v1/post`: the full lead for a ping's bids, delivered to each winner. Retries of the
/// same body answer the stored response with `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/v1/post", tag = "partner",
    request_body(content = Object, description = "`ping_id`, optional `bid_ids`, the full `lead` \
        (PII included) and its `consent`, and `posting_key` unless sent as a bearer token",
        example = json!({"ping_id": "01937c9e-…", "bid_ids": ["01937c9e-…"],
            "lead": {"state": "TX", "zip": "75001", "email": "ada@example.com", "phone": "2145550123"},
            "consent": {"trustedform_cert_url": "https://cert.trustedform.com/2a6b", "consented_at": "2026-11-25T17:04:12Z"}})),
    responses((status = 200, content_type = "application/json",
        description = "`status` sold | partially_sold | unsold, `payout`, and per bid its `status` and `payout`",
        example = json!({"lead_id": "01937c9f-…", "ping_id": "01937c9e-…", "status": "sold", "payout": 10.50,
            "results": [{"bid_id": "01937c9e-…", "status": "sold", "payout": 10.50}]})),
        (status = 202, content_type = "application/json",
        description = "still settling (a slow buyer, the database unavailable for a moment): send the same \
            post again (after `Retry-After`) for its final answer",
        example = json!({"ping_id": "01937c9e-…", "status": "settling"}))))]
async fn post_lead(
    State(state): State<AppState>,
    arrived: Option<Extension<Arrived>>,
    headers: HeaderMap,
    body: Result<JsonObject, Problem>,
) -> Result<PostAnswer, Problem> {
    let started = Instant::now();
    let arrived = arrival(arrived);
    let slot = state.auction_slot()?;
    let JsonObject(body) = body?;
    let campaign = authenticate(&state, &headers, &body)?;
    let ping_id = body
        .get("ping_id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse::<Uuid>().ok());
    match run_post(&state, &campaign, body, slot, started, arrived).await {
        Ok(answer) => Ok(answer),
        Err(problem) => {
            record_refusal(&state, &campaign, "post", ping_id, &problem, started).await;
            Err(problem)
        }
    }
}

/// A post's body, once read: the lead and consent it carries and the bids it accepts.
struct PostRequest {
    ping_id: Uuid,
    bid_ids: Option<Vec<Uuid>>,
    lead: Map<String, Value>,
    consent: Map<String, Value>,
    /// Identifies the body for safe retries (key order and the posting key do not count).
    body_sha256: [u8; 32],
    /// Set for a direct post, whose answer says what was sold.
    sale_type: Option<SaleType>,
}

fn body_sha256(body: &Map<String, Value>) -> [u8; 32] {
    let mut canonical = body.clone();
    // Where the key travels, an absent field written as null, and the order of the accepted
    // bids do not make another post.
    canonical.remove("posting_key");
    canonical.retain(|_, value| !value.is_null());
    if let Some(Value::Array(bid_ids)) = canonical.get_mut("bid_ids") {
        bid_ids.sort_by_key(Value::to_string);
        bid_ids.dedup();
    }
    // serde_json's map is ordered by key, so equal bodies serialize equally.
    Sha256::digest(Value::Object(canonical).to_string().as_bytes()).into()
}

fn take_consent(body: &mut Map<String, Value>) -> Result<Map<String, Value>, Problem> {
    match body.remove("consent") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(consent)) => Ok(consent),
        Some(_) => Err(invalid(
            "/consent",
            ErrorCode::InvalidField,
            "consent must be an object",
        )),
    }
}

fn parse_post(mut body: Map<String, Value>) -> Result<PostRequest, Problem> {
    const KNOWN: [&str; 5] = ["posting_key", "ping_id", "bid_ids", "lead", "consent"];
    partner::refuse_unknown(&body, &KNOWN)?;
    let body_sha256 = body_sha256(&body);
    let ping_id = body
        .get("ping_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("/ping_id", ErrorCode::InvalidField, "ping_id is required"))?
        .parse::<Uuid>()
        .map_err(|_| Problem::new(ErrorCode::PingNotFound))?;
    let bid_ids = match body.remove("bid_ids") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut ids = Vec::with_capacity(items.len());
            for (n, item) in items.iter().enumerate() {
                let id = item
                    .as_str()
                    .and_then(|s| s.parse::<Uuid>().ok())
                    .ok_or_else(|| {
                        invalid(
                            &format!("/bid_ids/{n}"),
                            ErrorCode::InvalidField,
                            "not a bid of this ping",
                        )
                    })?;
                ids.push(id);
            }
            Some(ids)
        }
        Some(_) => {
            return Err(invalid(
                "/bid_ids",
                ErrorCode::InvalidField,
                "bid_ids must list at least one bid_id",
            ));
        }
    };
    let lead = match body.remove("lead") {
        Some(Value::Object(lead)) => lead,
        _ => {
            return Err(invalid(
                "/lead",
                ErrorCode::InvalidField,
                "lead must be an object",
            ));
        }
    };
    let consent = take_consent(&mut body)?;
    Ok(PostRequest {
        ping_id,
        bid_ids,
        lead,
        consent,
        body_sha256,
        sale_type: None,
    })
}

async fn run_post(
    state: &AppState,
    campaign: &CampaignContext,
    body: Map<String, Value>,
    slot: OwnedSemaphorePermit,
    started: Instant,
    arrived: Instant,
) -> Result<PostAnswer, Problem> {
    let request = parse_post(body)?;
    post_to_winners(state, campaign, request, "post", slot, started, arrived).await
}

/// Validates, claims and settles a post of one of this campaign's pings (SPEC §5.6).
async fn post_to_winners(
    state: &AppState,
    campaign: &CampaignContext,
    request: PostRequest,
    kind: &'static str,
    slot: OwnedSemaphorePermit,
    started: Instant,
    arrived: Instant,
) -> Result<PostAnswer, Problem> {
    let now = now_of(state);
    let tenant_id = campaign.tenant.id;
    let (ping, bids) =
        sales::find_ping(&state.db, tenant_id, campaign.campaign.id, request.ping_id)
            .await?
            .ok_or_else(|| Problem::new(ErrorCode::PingNotFound))?;
    if ping.result != "bids" {
        return Err(Problem::new(ErrorCode::PingNotPostable)
            .detail(format!("the ping's status is {}", ping.result)));
    }
    // A post already made: the same body gets the same answer, another body is refused.
    if let Some(claimed) = &ping.post_body_sha256 {
        drop(slot);
        return replay(
            state,
            tenant_id,
            request.ping_id,
            claimed,
            &request.body_sha256,
            ping.post_response,
            answer_deadline(state, arrived),
        )
        .await;
    }
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

    let source = source_of(campaign);
    let lead_id = Uuid::now_v7();
    let claim = sales::claim(
        &state.db,
        &source,
        request.ping_id,
        &request.body_sha256,
        lead_id,
        &request.lead,
        &request.consent,
        ping.test,
        now,
    )
    .await?;
    if let Claim::Lost { body_sha256 } = claim {
        // A concurrent request claimed it first.
        drop(slot);
        return replay(
            state,
            tenant_id,
            request.ping_id,
            &body_sha256,
            &request.body_sha256,
            None,
            answer_deadline(state, arrived),
        )
        .await;
    }

    let consumer_keys = PostedLead::hash_keys(offer.schema.consumer_keys(&request.lead));
    let posted = Arc::new(PostedLead {
        source,
        campaign: campaign.clone(),
        ping_id: request.ping_id,
        lead_id,
        lead: request.lead,
        consent: request.consent,
        consumer_keys,
        test: ping.test,
        now,
    });
    // The settlement runs in its own task, tracked for shutdown: a partner that hangs up, the
    // request timeout or SIGTERM never cut a sale half-way; a retry receives its answer.
    let accepted = request.bid_ids;
    let sale_type = request.sale_type;
    let ping_id = request.ping_id;
    let test = ping.test;
    let settling = {
        let state = state.clone();
        let tracker = state.settlements.clone();
        let settling_here = settle::PostWaiters::start(&state, tenant_id, request.ping_id);
        tracker.spawn(async move {
            let _slot = slot;
            // Its waiting retries are woken when this task ends, however it ends.
            let _settling_here = settling_here;
            let results = settle::settle_all(&state, Arc::clone(&posted), bids, |bid| {
                accepted
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&bid.bid_id))
            })
            .await?;
            let response = post_response(lead_id, ping_id, &results, sale_type);
            let dispositions: Vec<sales::Disposition> = results
                .iter()
                .map(|r| sales::Disposition {
                    contract_id: r.contract_id,
                    status: r.status,
                })
                .collect();
            let status = response.status;
            crate::meters::post(status, started.elapsed());
            sales::finish_post(
                &state.db,
                &posted.source,
                ping_id,
                &dispositions,
                &serde_json::to_string(&response).unwrap_or_default(),
                kind,
                status,
                test,
                elapsed_us(started),
                now,
            )
            .await
        })
    };
    // Past the claim, the post is the partner's: it is answered with its final state, or
    // "settling" (never a 503) when the settlement outlasts the request's deadline or could not
    // write its end (the interrupted-sale sweep finishes it); the same post sent again
    // receives the final answer.
    match tokio::time::timeout_at(answer_deadline(state, arrived), settling).await {
        Ok(Ok(Ok(body))) => Ok(PostAnswer {
            body,
            replayed: false,
            settling: false,
        }),
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

/// The answer of SPEC §2.2: each bid's status and the partner's payout (and for a direct post,
/// what was sold). Serialized by type, so amounts keep their two decimals (`27.30`).
#[derive(Serialize)]
struct PostAnswerBody {
    lead_id: Uuid,
    ping_id: Uuid,
    status: &'static str,
    payout: Money,
    results: Vec<BidResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sale_type: Option<SaleType>,
}

#[derive(Serialize)]
struct BidResult {
    bid_id: Uuid,
    status: &'static str,
    payout: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn post_response(
    lead_id: Uuid,
    ping_id: Uuid,
    results: &[SaleResult],
    sale_type: Option<SaleType>,
) -> PostAnswerBody {
    let accepted: Vec<&SaleResult> = results
        .iter()
        .filter(|r| r.status != "not_accepted")
        .collect();
    let sold = accepted.iter().filter(|r| r.status == "sold").count();
    let status = match sold {
        0 => "unsold",
        n if n == accepted.len() => "sold",
        _ => "partially_sold",
    };
    PostAnswerBody {
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
            })
            .collect(),
        sale_type,
    }
}

/// Answers a post of an already claimed ping: with the stored answer when the body is the
/// same (waiting for the first request to finish, until `deadline`), 409 otherwise. Waiting is
/// bounded (`max_waiting_retries`; beyond it, "settling" at once) and woken when the first
/// request's settlement ends in this process; another process's is seen by a slow poll.
async fn replay(
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
    let replayed = |body| PostAnswer {
        body,
        replayed: true,
        settling: false,
    };
    if let Some(body) = stored {
        return Ok(replayed(body));
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
            return Ok(replayed(body));
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

/// `POST /v1/leads`: the ping's auction, then the post to every winner, in one call.
#[utoipa::path(post, path = "/v1/leads", tag = "partner",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters, \
        unique per campaign: a retry with the same key and body receives the first answer \
        (`Idempotent-Replayed: true`; a `202 settling` one, its final answer once settled) and sells nothing; \
        another body is `409 idempotency_key_reused`. Kept `idempotency_key_hours` (24 h)")),
    request_body(content = Object, description = "the post's body without `ping_id`/`bid_ids`, plus \
        optional `dedup`, `min_payout` and `test`",
        example = json!({"lead": {"state": "TX", "zip": "75001", "email": "ada@example.com", "phone": "2145550123"},
            "consent": {"trustedform_cert_url": "https://cert.trustedform.com/2a6b"}})),
    responses((status = 200, content_type = "application/json",
        description = "the post's answer plus `sale_type`; `no_bids` or `duplicate` (with its `ping_id`) stores no lead",
        example = json!({"lead_id": "01937c9f-…", "ping_id": "01937c9e-…", "status": "sold", "sale_type": "exclusive",
            "payout": 28.00, "results": [{"bid_id": "01937c9e-…", "status": "sold", "payout": 28.00}]})),
        (status = 202, content_type = "application/json",
        description = "still settling: the same request with the same `Idempotency-Key` (after `Retry-After`) \
            receives its final answer",
        example = json!({"ping_id": "01937c9e-…", "status": "settling"}))))]
async fn direct_post(
    State(state): State<AppState>,
    arrived: Option<Extension<Arrived>>,
    headers: HeaderMap,
    body: Result<JsonObject, Problem>,
) -> Result<Response, Problem> {
    let started = Instant::now();
    let arrived = arrival(arrived);
    let slot = state.auction_slot()?;
    let JsonObject(body) = body?;
    let campaign = authenticate(&state, &headers, &body)?;
    let key = idempotency::key_of(&headers)?;
    let request_sha256 = body_sha256(&body);
    // Keys are the campaign's: another campaign's (or tenant's) key never collides.
    let scope = key.map(|key| KeyScope {
        tenant_id: campaign.tenant.id,
        route: "leads",
        scope_id: campaign.campaign.id,
        key,
    });
    let run = {
        let state = state.clone();
        async move {
            match run_direct(&state, &campaign, body, slot, started, arrived).await {
                Ok(response) => response,
                Err(problem) => {
                    record_refusal(&state, &campaign, "direct", None, &problem, started).await;
                    problem.into_response()
                }
            }
        }
    };
    match scope {
        Some(scope) => Ok(idempotency::once(&state, scope, request_sha256, run).await),
        None => Ok(run.await),
    }
}

async fn run_direct(
    state: &AppState,
    campaign: &CampaignContext,
    mut body: Map<String, Value>,
    slot: OwnedSemaphorePermit,
    started: Instant,
    arrived: Instant,
) -> Result<Response, Problem> {
    partner::admit(state, campaign)?;
    const KNOWN: [&str; 6] = [
        "posting_key",
        "lead",
        "consent",
        "dedup",
        "min_payout",
        "test",
    ];
    partner::refuse_unknown(&body, &KNOWN)?;
    let consent = take_consent(&mut body)?;
    let body_sha256 = body_sha256(&body);
    let PingRequest {
        lead,
        mut dedup_hashes,
        min_payout,
        test,
    } = partner::parse_request(body)?;
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
        ping_lead,
        dedup_hashes,
        min_payout,
        test,
        now_of(state),
        started,
    )
    .await?;
    if auction.status != crate::auction::PingStatus::Bids {
        let answer = json!({ "ping_id": auction.ping_id, "status": auction.status, "took_ms": started.elapsed().as_millis() as u64 });
        let source = source_of(campaign);
        let mut conn = state.db.acquire().await.map_err(Problem::from)?;
        sales::insert_post_log(
            &mut conn,
            &source,
            Some(auction.ping_id),
            "direct",
            200,
            auction.status.as_str(),
            test,
            elapsed_us(started),
            now_of(state),
        )
        .await?;
        return Ok(axum::Json(answer).into_response());
    }
    let request = PostRequest {
        ping_id: auction.ping_id,
        bid_ids: None,
        lead,
        consent,
        body_sha256,
        sale_type: auction.sale_type,
    };
    Ok(
        post_to_winners(state, campaign, request, "direct", slot, started, arrived)
            .await?
            .into_response(),
    )
}
