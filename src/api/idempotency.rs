//! The `Idempotency-Key` header (as Stripe's): the first request with a key runs; a retry with
//! the same key and the same request receives the first answer (status and body, with
//! `Idempotent-Replayed: true`) and does nothing else; the same key with another request is
//! `409 idempotency_key_reused`; while the first runs, `409 idempotency_key_in_progress`. A
//! request without the header runs as always.

use std::future::Future;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::api::{ErrorCode, Problem};
use crate::app::AppState;
use crate::store::idempotency::{self, Begin, KeyScope, StoredAnswer};
use crate::store::sales;

pub const HEADER: &str = "idempotency-key";

/// The request's key: `None` without the header; 400 when it is not 1 to 255 printable ASCII
/// characters.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(Problem::new(ErrorCode::InvalidField)
            .detail("the Idempotency-Key header must be 1 to 255 printable ASCII characters")),
    }
}

/// Runs `run` once per key of `scope` (see the module). `run` and the keeping of its answer
/// go on in a task of their own: a request cut by its timeout or left by its client still
/// finishes its key (or gives it back), instead of leaving it "in progress" until it expires.
pub async fn once<Fut>(
    state: &AppState,
    scope: KeyScope,
    request_sha256: [u8; 32],
    run: Fut,
) -> Response
where
    Fut: Future<Output = Response> + Send + 'static,
{
    let keep = state.settings.idempotency_key_hours;
    match idempotency::begin(&state.db, &scope, &request_sha256, keep).await {
        Err(error) => Problem::from(error).into_response(),
        Ok(Begin::Reused) => Problem::new(ErrorCode::IdempotencyKeyReused)
            .detail("this Idempotency-Key was used with another request")
            .into_response(),
        Ok(Begin::InProgress) => Problem::new(ErrorCode::IdempotencyKeyInProgress)
            .retry_after(1)
            .into_response(),
        Ok(Begin::Replay(stored)) => replay(state, scope.tenant_id, stored).await,
        Ok(Begin::Run) => {
            let state = state.clone();
            let task = tokio::spawn(async move {
                let response = run.await;
                keep_answer(&state, &scope, response).await
            });
            task.await.unwrap_or_else(|error| {
                tracing::error!(%error, "an idempotent request's task failed");
                Problem::new(ErrorCode::Internal).into_response()
            })
        }
    }
}

/// Keeps the first answer and sends it. A failure of ours gives the key back, so that a retry
/// runs again, unless the key's answer was already kept: a request that keeps its answer in
/// its own transaction (funds) and whose commit's acknowledgement was lost did commit, and its
/// retry is answered what it did.
async fn keep_answer(state: &AppState, scope: &KeyScope, response: Response) -> Response {
    let status = response.status();
    if status.is_server_error() {
        if let Err(error) = idempotency::abandon(&state.db, scope).await {
            tracing::warn!(%error, "cannot give an idempotency key back");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Problem::new(ErrorCode::Internal).into_response();
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let ping_id = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|answer| answer.get("ping_id")?.as_str()?.parse::<Uuid>().ok());
    let stored = StoredAnswer {
        http_status: i32::from(status.as_u16()),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        response: Some(text),
        ping_id,
    };
    if let Err(error) = idempotency::finish(&state.db, scope, &stored).await {
        // The effect happened: its answer is sent; a retry will find the key in progress.
        tracing::error!(%error, "cannot keep an idempotency key's answer");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The first answer again. A direct post that answered "settling" is answered its final state
/// once its settlement has stored it.
async fn replay(state: &AppState, tenant_id: Uuid, stored: StoredAnswer) -> Response {
    let mut stored = stored;
    if stored.http_status == i32::from(StatusCode::ACCEPTED.as_u16())
        && let Some(ping_id) = stored.ping_id
    {
        match sales::stored_response(&state.db, tenant_id, ping_id).await {
            Ok(Some(answer)) => {
                stored.http_status = 200;
                stored.content_type = Some("application/json".to_owned());
                stored.response = Some(answer);
            }
            Ok(None) => {}
            Err(error) => return Problem::from(error).into_response(),
        }
    }
    let status = u16::try_from(stored.http_status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, stored.response.unwrap_or_default()).into_response();
    let headers = response.headers_mut();
    if let Some(content_type) = stored
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if status == StatusCode::ACCEPTED {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
