//! The partner API: `POST /v1/ping` (SPEC §2.1, §5.1).

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::extract::bearer_token;
use crate::api::form::PartnerBody;
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::AppState;
use crate::auction::{LeadError, LeadErrorCode, PingStatus, SaleType, validate_ping};
use crate::evaluate::{self, AuctionInput, AuctionOutcome};
use crate::keys;
use crate::money::{ExtraDecimals, Money};
use crate::store::pings::{PingRecord, PingWrite};
use crate::store::snapshot::CampaignContext;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ping))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PingBid {
    pub bid_id: Uuid,
    pub payout: Money,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PingResponse {
    pub ping_id: Uuid,
    /// `bids`, `no_bids` or `duplicate`.
    #[schema(value_type = String)]
    pub status: PingStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_type: Option<SaleType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payout: Option<Money>,
    pub bids: Vec<PingBid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_url: Option<String>,
    pub took_ms: u64,
}

/// The ping's body once parsed: what the auction needs, nothing else.
pub struct PingRequest {
    pub lead: Map<String, Value>,
    pub dedup_hashes: Vec<[u8; 32]>,
    pub min_payout: Option<Money>,
    pub test: bool,
    /// The partner's own tracking ids (`sub_ids`), checked by [`parse_sub_ids`].
    pub sub_ids: Option<Map<String, Value>>,
    /// The ping's own deadline (`max_wait_ms`), else its offer's.
    pub max_wait_ms: Option<u32>,
    /// Answer only once the record is written, whatever `ping_record_max_wait_ms` says: a
    /// direct post (`/v1/leads`) shows its ping to no one, so answering early gains nothing.
    pub record_first: bool,
}

/// The range of a ping's `max_wait_ms`.
pub const MAX_WAIT_MS: std::ops::RangeInclusive<u32> = 10..=60_000;

/// Most keys of `sub_ids`.
pub const MAX_SUB_IDS: usize = 10;
/// Longest key of `sub_ids`, in characters.
pub const MAX_SUB_ID_KEY_CHARS: usize = 64;
/// Longest value of `sub_ids`, in characters.
pub const MAX_SUB_ID_VALUE_CHARS: usize = 256;

/// Finds the campaign of the posting key (header or body), or answers 401.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: &PartnerBody,
) -> Result<CampaignContext, Problem> {
    let key = bearer_token(headers)
        .or_else(|| body.posting_key())
        .ok_or_else(|| {
            Problem::new(ErrorCode::Unauthorized)
                .detail("send the posting key as Authorization: Bearer <key> or posting_key")
        })?;
    state
        .config
        .snapshot()
        .campaign_by_key(&keys::hash(key))
        .ok_or_else(|| Problem::new(ErrorCode::Unauthorized).detail("unknown posting key"))
}

/// `POST /v1/ping`: the PII-free lead; runs the auction across every contract of the offer.
#[utoipa::path(post, path = "/v1/ping", tag = "partner",
    request_body(content = Object, description = "`lead` (the offer's non-PII fields), optional `dedup` \
        (`email_sha256`, `phone_sha256`), `min_payout`, `test`, `sub_ids` (the partner's own tracking ids: \
        at most 10 string values), `max_wait_ms` (the ping's deadline, 10–60000: every bid request is cut \
        at the time left), and `posting_key` unless sent as a bearer token. Also accepted as \
        `application/x-www-form-urlencoded` (`state=TX&lead[zip]=75001&sub_ids[source]=s1`, typed by the \
        offer's schema: docs/partner-forms.md)",
        example = json!({"lead": {"state": "TX", "zip": "75001", "age": 42, "homeowner": true},
            "dedup": {"email_sha256": "9f86d0…"}, "min_payout": 5.00, "test": false})),
    responses((status = 200, body = PingResponse, description = "`bids`, `no_bids` or `duplicate`")))]
async fn ping(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<PartnerBody, Problem>,
) -> Result<Json<PingResponse>, Problem> {
    let started = Instant::now();
    let _slot = state.auction_slot()?;
    let body = body?;
    let campaign = authenticate(&state, &headers, &body)?;
    // Microseconds, as PostgreSQL stores time: what is answered is what is recorded.
    let now = state.clock.now().trunc_subsecs(6);
    match run_ping(&state, &campaign, body, now, started).await {
        Ok(response) => Ok(Json(response)),
        Err(problem) => {
            record_refusal(&state, &campaign, &problem, now, started).await;
            Err(problem)
        }
    }
}

/// The campaign may sell now: it, its partner and its offer are active, and it is within its
/// ping rate.
pub fn admit(state: &AppState, campaign: &CampaignContext) -> Result<(), Problem> {
    if !campaign.is_active() {
        return Err(Problem::new(ErrorCode::CampaignPaused));
    }
    if let Err(retry_after) = state
        .rate_limits
        .check(campaign.campaign.id, campaign.campaign.ping_rate_per_second)
    {
        return Err(Problem::new(ErrorCode::RateLimited).retry_after(retry_after));
    }
    Ok(())
}

/// A 422 naming every offending field; the top-level code is the first (gravest) error's.
pub fn lead_problem(errors: Vec<LeadError>) -> Problem {
    let detail = errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    Problem::new(ErrorCode::InvalidField)
        .with_errors(errors.into_iter().map(field_error).collect())
        .detail(detail)
}

async fn run_ping(
    state: &AppState,
    campaign: &CampaignContext,
    body: PartnerBody,
    now: DateTime<Utc>,
    started: Instant,
) -> Result<PingResponse, Problem> {
    admit(state, campaign)?;
    let body = body.into_object(&campaign.offer.schema)?;
    const KNOWN: [&str; 7] = [
        "posting_key",
        "lead",
        "dedup",
        "min_payout",
        "test",
        "sub_ids",
        "max_wait_ms",
    ];
    refuse_unknown(&body, &KNOWN)?;
    let request = parse_request(body)?;
    validate_ping(&campaign.offer.schema, &request.lead).map_err(lead_problem)?;
    auction(state, campaign, request, now, started).await
}

/// Runs the auction for a validated, PII-free lead, records it and builds the ping's answer.
pub async fn auction(
    state: &AppState,
    campaign: &CampaignContext,
    request: PingRequest,
    now: DateTime<Utc>,
    started: Instant,
) -> Result<PingResponse, Problem> {
    let PingRequest {
        lead,
        dedup_hashes,
        min_payout,
        test,
        sub_ids,
        max_wait_ms,
        record_first,
    } = request;
    let offer = &campaign.offer;
    let ping_id = Uuid::now_v7();
    let deadline = max_wait_ms.or(offer.max_wait_ms).map(|ms| {
        tokio::time::Instant::from_std(started) + std::time::Duration::from_millis(u64::from(ms))
    });
    let lead = Arc::new(lead);
    let sub_ids = sub_ids.map(Arc::new);
    let prepared = Arc::new(offer.schema.prepare(&lead).into_owned());
    let input = AuctionInput {
        ping_id,
        lead: Arc::clone(&lead),
        prepared,
        dedup_hashes,
        min_payout,
        test,
        sub_ids: sub_ids.clone(),
        now,
        max_rtb_calls: state.settings.max_rtb_calls_per_ping,
        // Validated at load to be at most MAX_RTB_TIMEOUT_MS.
        rtb_timeout_ms: u32::try_from(state.settings.rtb_timeout_ms)
            .unwrap_or(crate::auction::MAX_RTB_TIMEOUT_MS),
        deadline,
    };
    let outcome = evaluate::run(&state.ping_states, &state.http, campaign, &input).await?;

    let mut record = PingRecord {
        tenant_id: campaign.tenant.id,
        ping_id,
        campaign_id: campaign.campaign.id,
        partner_id: campaign.campaign.partner_id,
        offer_id: offer.id,
        created_at: now,
        latency_us: 0,
        http_status: 200,
        result: "duplicate",
        test,
        lead: Some(Arc::clone(&lead)),
        min_payout,
        sale_type: None,
        payout: None,
        expires_at: None,
        sub_ids,
        routing: offer.rules.routing_label(),
    };
    let mut response = PingResponse {
        ping_id,
        status: PingStatus::Duplicate,
        sale_type: None,
        payout: None,
        bids: Vec::new(),
        expires_at: None,
        post_url: None,
        took_ms: 0,
    };
    let mut losses = Vec::new();
    let rows = match outcome {
        AuctionOutcome::Duplicate => Vec::new(),
        AuctionOutcome::Ran {
            selection,
            rows,
            bid_ids,
        } => {
            if selection.winners.is_empty() {
                response.status = PingStatus::NoBids;
            } else {
                let expires_at = now.trunc_subsecs(0)
                    + chrono::Duration::seconds(i64::from(offer.ping_ttl_seconds));
                response.status = PingStatus::Bids;
                response.sale_type = selection.sale_type;
                response.payout = Some(selection.total_payout());
                response.bids = selection
                    .winners
                    .iter()
                    .map(|w| PingBid {
                        bid_id: bid_ids[&w.contract_id],
                        payout: w.payout,
                    })
                    .collect();
                response.expires_at = Some(expires_at);
                response.post_url = Some(state.settings.public_url_for("/v1/post"));
                record.sale_type = selection.sale_type;
                record.payout = response.payout;
                record.expires_at = Some(expires_at);
            }
            // Loss notices (docs/revenue-recovery.md §7), queued once the ping is recorded.
            losses = crate::notices::at_ping(campaign, ping_id, selection.sale_type, test, &rows);
            rows
        }
    };
    record.result = response.status.as_str();
    record.latency_us = elapsed_us(started);
    // A ping that waited for its buyers' bids (`rtb_answer_before_record`), unless pings are to
    // be durable once answered or the last record's write failed.
    let answer_first = state.settings.rtb_answer_before_record
        && !state.settings.ping_synchronous_commit
        && !state.pending_pings.writes_failing()
        && rows.iter().any(|row| row.rtb_ms.is_some());
    let write = PingWrite::new(record, rows);
    record_ping(state, ping_id, write, losses, record_first, answer_first).await?;
    crate::meters::ping(response.status.as_str(), started.elapsed());
    response.took_ms = started.elapsed().as_millis() as u64;
    Ok(response)
}

/// Writes the ping's record (SPEC §5.1 step 6), then queues its loss notices. Past
/// `ping_record_max_wait_ms` (unless `record_first`) the ping answers and the write goes on
/// behind it, registered so that a post of the ping waits for it: a disk that stalls the
/// database's writes does not stall every ping in flight (docs/durability.md). Unless every
/// ping waits for its record (`ping_record_max_wait_ms = 0`, or `record_first`), the declines of
/// a ping of many contracts are written after its record, behind its answer
/// ([`PingWrite::split_declines`]), and a ping that waited for its buyers (`answer_first`) does
/// not wait for its record at all: its answer then waits for no database.
async fn record_ping(
    state: &AppState,
    ping_id: Uuid,
    mut write: PingWrite,
    losses: Vec<crate::notices::Notice>,
    record_first: bool,
    answer_first: bool,
) -> Result<(), Problem> {
    let bound = state
        .settings
        .ping_record_max_wait()
        .filter(|_| !record_first);
    let declines = bound.and_then(|_| declines_behind(state, ping_id, &mut write));
    let mut writing = write_record(state, write, declines);
    let waited = match bound {
        // Not through a zero timeout: tokio's timer would hold the ping to its next tick.
        Some(_) if answer_first => None,
        bound => crate::app::wait_at_most(bound, &mut writing).await,
    };
    let written = match waited {
        Some(written) => written,
        None => match state.pending_pings.begin(ping_id) {
            Some(pending) => {
                let reason = if answer_first { "rtb" } else { "stalled" };
                write_behind(state, writing, pending, losses, reason);
                return Ok(());
            }
            // Too many behind already: this ping waits for its own (back-pressure).
            None => writing.await,
        },
    };
    state.pending_pings.note_write(written.is_ok());
    written?;
    state.notices.send_all(losses);
    Ok(())
}

/// The write of the ping's record, then of its declines if they are apart, run to their end
/// even when the returned future (the record's outcome) is dropped: a partner that hangs up
/// leaves neither unwritten.
fn write_record(
    state: &AppState,
    write: PingWrite,
    declines: Option<DeclinesBehind>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send>> {
    let records = state.ping_records.clone();
    let Some(declines) = declines else {
        // `Group::run` runs the statement in a task of its own.
        return Box::pin(async move { records.run(write).await });
    };
    let (outcome, written) = tokio::sync::oneshot::channel();
    let ping_declines = state.ping_declines.clone();
    // Tracked with the settlements: a shutdown waits for it as for a sale.
    let task = async move {
        let recorded = records.run_in_this_task(write).await;
        let ok = recorded.is_ok();
        if let Err(Err(error)) = outcome.send(recorded) {
            // Nobody is left to answer it to (the partner hung up).
            tracing::error!(%error, "a ping's record failed");
        }
        // A ping whose record failed was answered with the error: its declines go with it.
        if ok {
            declines.write(&ping_declines).await;
        }
    };
    state.settlements.spawn(task.in_current_span());
    Box::pin(async move {
        written.await.unwrap_or_else(|_| {
            Err(crate::store::errors::fault(
                "a ping's record was not written",
            ))
        })
    })
}

/// The declines of a ping, written behind its answer once its record is: registered until
/// then, so that the ping's view and a cascade of its post wait for them.
struct DeclinesBehind {
    write: PingWrite,
    _pending: crate::pending_pings::PendingWrite,
}

impl DeclinesBehind {
    async fn write(self, group: &crate::store::group::Group<crate::store::pings::RecordDeclines>) {
        if let Err(error) = group.run(self.write).await {
            crate::meters::ping_declines_lost();
            tracing::error!(%error, "a ping's declines written behind its answer failed");
        }
    }
}

/// Splits off the ping's declines to write behind its answer, when it has many and this
/// process is not writing too many already (else they are written with the ping).
fn declines_behind(
    state: &AppState,
    ping_id: Uuid,
    write: &mut PingWrite,
) -> Option<DeclinesBehind> {
    let mut declines = write.split_declines()?;
    match state.pending_declines.begin(ping_id) {
        Some(pending) => Some(DeclinesBehind {
            write: declines,
            _pending: pending,
        }),
        None => {
            write.rows.append(&mut declines.rows);
            None
        }
    }
}

/// Lets a ping's record be written behind its answer: the ping stays registered until the
/// write ends, and its loss notices go out only once it is written.
fn write_behind(
    state: &AppState,
    writing: impl Future<Output = Result<(), sqlx::Error>> + Send + 'static,
    pending: crate::pending_pings::PendingWrite,
    losses: Vec<crate::notices::Notice>,
    reason: &'static str,
) {
    crate::meters::ping_record_behind(reason);
    let notices = state.notices.clone();
    let app = state.clone();
    // Tracked with the settlements: a shutdown waits for it as for a sale.
    let task = async move {
        let written = writing.await;
        app.pending_pings.note_write(written.is_ok());
        match written {
            Ok(()) => notices.send_all(losses),
            Err(error) => {
                // As after a crash: a post of the ping answers `ping_not_found`, and no
                // notice is sent.
                crate::meters::ping_record_lost();
                tracing::error!(%error, "a ping's record written behind its answer failed");
            }
        }
        drop(pending);
    };
    state.settlements.spawn(task.in_current_span());
}

/// Time since `started`, in microseconds, as `posting_log.latency_us` keeps it.
pub fn elapsed_us(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX)
}

/// Records a refused ping (paused, rate-limited, invalid) in `posting_log`, without its lead:
/// a refused lead may hold anything, PII included.
async fn record_refusal(
    state: &AppState,
    campaign: &CampaignContext,
    problem: &Problem,
    now: DateTime<Utc>,
    started: Instant,
) {
    let record = PingRecord {
        tenant_id: campaign.tenant.id,
        ping_id: Uuid::now_v7(),
        campaign_id: campaign.campaign.id,
        partner_id: campaign.campaign.partner_id,
        offer_id: campaign.offer.id,
        created_at: now,
        latency_us: elapsed_us(started),
        http_status: problem.code.status().as_u16(),
        result: problem.code.as_str(),
        test: false,
        lead: None,
        min_payout: None,
        sale_type: None,
        payout: None,
        expires_at: None,
        sub_ids: None,
        routing: None,
    };
    let write = PingWrite::new(record, Vec::new());
    let group = state.ping_records.clone();
    state
        .record_refusal("ping", async move { group.run(write).await })
        .await;
}

fn field_error(error: LeadError) -> FieldError {
    let code = match error.code {
        LeadErrorCode::InvalidField => ErrorCode::InvalidField,
        LeadErrorCode::UnknownField => ErrorCode::UnknownField,
        LeadErrorCode::PiiInPing => ErrorCode::PiiInPing,
        LeadErrorCode::PingPostMismatch => ErrorCode::PingPostMismatch,
        LeadErrorCode::ConsentRequired => ErrorCode::ConsentRequired,
        LeadErrorCode::InvalidPhone => ErrorCode::InvalidPhone,
        LeadErrorCode::InvalidEmail => ErrorCode::InvalidEmail,
        LeadErrorCode::DisposableEmail => ErrorCode::DisposableEmail,
        LeadErrorCode::InvalidZip => ErrorCode::InvalidZip,
        LeadErrorCode::ZipStateMismatch => ErrorCode::ZipStateMismatch,
        LeadErrorCode::EmailDomainUnreachable => ErrorCode::EmailDomainUnreachable,
    };
    FieldError {
        pointer: error.pointer,
        code,
    }
}

/// A 422 for one field of the request's envelope.
pub fn invalid(pointer: &str, code: ErrorCode, detail: &str) -> Problem {
    Problem::new(code)
        .with_errors(vec![FieldError {
            pointer: pointer.to_owned(),
            code,
        }])
        .detail(detail.to_owned())
}

/// Refuses a body key the request does not know (a typo would otherwise pass unnoticed).
pub fn refuse_unknown(body: &Map<String, Value>, known: &[&str]) -> Result<(), Problem> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => {
            let pointer = format!("/{}", crate::auction::pointer_token(unknown));
            Err(invalid(
                &pointer,
                ErrorCode::UnknownField,
                "not a field of this request",
            ))
        }
        None => Ok(()),
    }
}

/// Reads the ping's envelope (lead, dedup, min_payout, test); the lead itself is validated
/// against the offer afterwards.
pub fn parse_request(mut body: Map<String, Value>) -> Result<PingRequest, Problem> {
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
    let mut dedup_hashes = Vec::new();
    match body.remove("dedup") {
        None | Some(Value::Null) => {}
        Some(Value::Object(dedup)) => {
            for (key, value) in dedup {
                let pointer = format!("/dedup/{}", crate::auction::pointer_token(&key));
                if key != "email_sha256" && key != "phone_sha256" {
                    return Err(invalid(
                        &pointer,
                        ErrorCode::UnknownField,
                        "dedup takes email_sha256 and phone_sha256",
                    ));
                }
                let hash = value
                    .as_str()
                    .and_then(|text| hex::decode(text).ok())
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| {
                        invalid(
                            &pointer,
                            ErrorCode::InvalidField,
                            "must be a SHA-256 as 64 hex digits",
                        )
                    })?;
                dedup_hashes.push(hash);
            }
        }
        Some(_) => {
            return Err(invalid(
                "/dedup",
                ErrorCode::InvalidField,
                "dedup must be an object",
            ));
        }
    }
    let min_payout = match body.remove("min_payout") {
        None | Some(Value::Null) => None,
        Some(value) => match Money::from_json(&value, ExtraDecimals::Reject) {
            Ok(money) if !money.is_negative() => Some(money),
            _ => {
                return Err(invalid(
                    "/min_payout",
                    ErrorCode::InvalidField,
                    "min_payout must be a non-negative amount with at most 2 decimals",
                ));
            }
        },
    };
    let test = match body.remove("test") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(test)) => test,
        Some(_) => {
            return Err(invalid(
                "/test",
                ErrorCode::InvalidField,
                "test must be true or false",
            ));
        }
    };
    let sub_ids = parse_sub_ids(body.remove("sub_ids"))?;
    let max_wait_ms = match body.remove("max_wait_ms") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|ms| u32::try_from(ms).ok())
                .filter(|ms| MAX_WAIT_MS.contains(ms))
                .ok_or_else(|| {
                    invalid(
                        "/max_wait_ms",
                        ErrorCode::InvalidField,
                        "max_wait_ms must be a whole number of milliseconds from 10 to 60000",
                    )
                })?,
        ),
    };
    Ok(PingRequest {
        lead,
        dedup_hashes,
        min_payout,
        test,
        sub_ids,
        max_wait_ms,
        record_first: false,
    })
}

/// Checks a request's `sub_ids` (the partner's own tracking ids, not PII): an object of at
/// most 10 keys of 1 to 64 characters, each a string of at most 256 characters; a `null`
/// value is an absent key, an empty object none at all. Errors point at `/sub_ids/<key>`
/// (or `/sub_ids`) and never quote a value.
pub fn parse_sub_ids(value: Option<Value>) -> Result<Option<Map<String, Value>>, Problem> {
    let mut sub_ids = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(sub_ids)) => sub_ids,
        Some(_) => {
            return Err(invalid(
                "/sub_ids",
                ErrorCode::InvalidField,
                "sub_ids must be an object of strings",
            ));
        }
    };
    sub_ids.retain(|_, value| !value.is_null());
    for (key, value) in &sub_ids {
        let pointer = || format!("/sub_ids/{}", crate::auction::pointer_token(key));
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_SUB_ID_KEY_CHARS {
            return Err(invalid(
                &pointer(),
                ErrorCode::InvalidField,
                "a sub_ids key has 1 to 64 characters",
            ));
        }
        let fits = value
            .as_str()
            .is_some_and(|text| text.chars().count() <= MAX_SUB_ID_VALUE_CHARS);
        if !fits {
            return Err(invalid(
                &pointer(),
                ErrorCode::InvalidField,
                "a sub_ids value is a string of at most 256 characters",
            ));
        }
    }
    if sub_ids.len() > MAX_SUB_IDS {
        return Err(invalid(
            "/sub_ids",
            ErrorCode::InvalidField,
            "sub_ids has at most 10 keys",
        ));
    }
    Ok((!sub_ids.is_empty()).then_some(sub_ids))
}
