//! The partner API's second half: `POST /v1/post` (SPEC §2.2, §5.6) and the direct post
//! `POST /v1/leads` (§2.3), which pings and posts in one call through the same code.

use std::time::Instant;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::form::PartnerBody;
use crate::api::idempotency;
use crate::api::partner::{self, PingRequest, authenticate, invalid};
use crate::api::{ErrorCode, Problem};
use crate::app::{AppState, Arrived};
use crate::post::{self, DirectPost, PostAnswer, PostKind, PostRequest, Timing};
use crate::store::idempotency::KeyScope;
use crate::store::snapshot::CampaignContext;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_lead))
        .routes(routes!(direct_post))
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

/// What both routes do first: take an auction slot, read the body, authenticate its campaign.
struct Admitted {
    timing: Timing,
    slot: OwnedSemaphorePermit,
    body: PartnerBody,
    campaign: CampaignContext,
}

fn admit(
    state: &AppState,
    arrived: Option<Extension<Arrived>>,
    headers: &HeaderMap,
    body: Result<PartnerBody, Problem>,
) -> Result<Admitted, Problem> {
    let started = Instant::now();
    // The request's arrival (see [`Arrived`]); now if the layer is absent.
    let arrived = arrived.map_or_else(Instant::now, |Extension(Arrived(at))| at);
    let slot = state.auction_slot()?;
    let body = body?;
    let campaign = authenticate(state, headers, &body)?;
    Ok(Admitted {
        timing: Timing { started, arrived },
        slot,
        body,
        campaign,
    })
}

/// `POST /v1/post`: the full lead for a ping's bids, delivered to each winner. Retries of the
/// same body answer the stored response with `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/v1/post", tag = "partner",
    request_body(content = Object, description = "`ping_id`, optional `bid_ids`, the full `lead` \
        (PII included) and its `consent`, optional `sub_ids` (the partner's own tracking ids; default: the \
        ping's), and `posting_key` unless sent as a bearer token. Also accepted as \
        `application/x-www-form-urlencoded` (docs/partner-forms.md)",
        example = json!({"ping_id": "01937c9e-…", "bid_ids": ["01937c9e-…"],
            "lead": {"state": "TX", "zip": "75001", "email": "ada@example.com", "phone": "2145550123"},
            "consent": {"trustedform_cert_url": "https://cert.trustedform.com/2a6b", "consented_at": "2026-11-25T17:04:12Z"}})),
    responses((status = 200, content_type = "application/json",
        description = "`status` sold | partially_sold | unsold | consent_unverified, `payout`, and per bid its \
            `status` and `payout`. `consent_unverified`: a required consent verification step of the offer \
            did not pass (docs/verification.md): no buyer was called, nothing charged; `reason` and \
            `verification` (`step`, `type`, `outcome`, `code`, `reason`) say why",
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
    body: Result<PartnerBody, Problem>,
) -> Result<PostAnswer, Problem> {
    let call = admit(&state, arrived, &headers, body)?;
    let (timing, campaign) = (call.timing, call.campaign);
    let ping_id = call
        .body
        .top_level("ping_id")
        .and_then(|id| id.parse::<Uuid>().ok());
    let body = call.body.into_object(&campaign.offer.schema);
    let answer = match body.and_then(parse_post) {
        Ok(request) => post::post(&state, &campaign, request, call.slot, timing).await,
        Err(problem) => Err(problem),
    };
    if let Err(problem) = &answer {
        post::record_refusal(
            &state,
            &campaign,
            PostKind::Post,
            ping_id,
            problem,
            timing.started,
        )
        .await;
    }
    answer
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
    const KNOWN: [&str; 6] = [
        "posting_key",
        "ping_id",
        "bid_ids",
        "lead",
        "consent",
        "sub_ids",
    ];
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
    let sub_ids = partner::parse_sub_ids(body.remove("sub_ids"))?;
    Ok(PostRequest {
        ping_id,
        bid_ids,
        lead,
        consent,
        sub_ids,
        body_sha256,
    })
}

/// `POST /v1/leads`: the ping's auction, then the post to every winner, in one call.
#[utoipa::path(post, path = "/v1/leads", tag = "partner",
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters, \
        unique per campaign: a retry with the same key and body receives the first answer \
        (`Idempotent-Replayed: true`; a `202 settling` one, its final answer once settled) and sells nothing; \
        another body is `409 idempotency_key_reused`. Kept `idempotency_key_hours` (24 h)")),
    request_body(content = Object, description = "the post's body without `ping_id`/`bid_ids`, plus \
        optional `dedup`, `min_payout`, `test`, `sub_ids` and `max_wait_ms` (the auction's deadline). Also accepted as \
        `application/x-www-form-urlencoded` (docs/partner-forms.md)",
        example = json!({"lead": {"state": "TX", "zip": "75001", "email": "ada@example.com", "phone": "2145550123"},
            "consent": {"trustedform_cert_url": "https://cert.trustedform.com/2a6b"}})),
    responses((status = 200, content_type = "application/json",
        description = "the post's answer plus `sale_type` (`consent_unverified` as for a post); `no_bids` or \
            `duplicate` (with its `ping_id`) stores no lead",
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
    body: Result<PartnerBody, Problem>,
) -> Result<Response, Problem> {
    let Admitted {
        timing,
        slot,
        body,
        campaign,
    } = admit(&state, arrived, &headers, body)?;
    let key = idempotency::key_of(&headers)?;
    // A form is typed by the offer's schema first; one that cannot be is refused below (and
    // recorded), its retries identified by its own text.
    let body = body.into_object(&campaign.offer.schema);
    let request_sha256 = match &body {
        Ok(body) => body_sha256(body),
        Err(problem) => Sha256::digest(format!("{problem:?}").as_bytes()).into(),
    };
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
            let answer = match body.and_then(|body| parse_direct(&state, &campaign, body)) {
                Ok(request) => post::direct(&state, &campaign, request, slot, timing).await,
                Err(problem) => Err(problem),
            };
            match answer {
                Ok(answer) => answer.into_response(),
                Err(problem) => {
                    post::record_refusal(
                        &state,
                        &campaign,
                        PostKind::Direct,
                        None,
                        &problem,
                        timing.started,
                    )
                    .await;
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

/// A direct post's body: the campaign admitted (as a ping is), then a ping's fields and the
/// post's consent.
fn parse_direct(
    state: &AppState,
    campaign: &CampaignContext,
    mut body: Map<String, Value>,
) -> Result<DirectPost, Problem> {
    partner::admit(state, campaign)?;
    const KNOWN: [&str; 8] = [
        "posting_key",
        "lead",
        "consent",
        "dedup",
        "min_payout",
        "test",
        "sub_ids",
        "max_wait_ms",
    ];
    partner::refuse_unknown(&body, &KNOWN)?;
    let consent = take_consent(&mut body)?;
    let body_sha256 = body_sha256(&body);
    let PingRequest {
        lead,
        dedup_hashes,
        min_payout,
        test,
        sub_ids,
        max_wait_ms,
        record_first: _,
    } = partner::parse_request(body)?;
    Ok(DirectPost {
        lead,
        consent,
        dedup_hashes,
        min_payout,
        test,
        sub_ids,
        max_wait_ms,
        body_sha256,
    })
}
