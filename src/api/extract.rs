//! Request extractors whose rejections are problem+json: a JSON object body, and the admin
//! key's tenant.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

use crate::api::strict_json::{self, Refusal};
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::AppState;
use crate::keys;

/// A body that may be left out (empty or only whitespace, whatever its content type): an
/// empty object then; otherwise exactly as `JsonObject`, under the same body limit.
pub struct OptionalJsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonObject {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(ErrorCode::PayloadTooLarge)
                } else {
                    Problem::new(ErrorCode::MalformedJson).detail("the body could not be read")
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonObject(Map::new()));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let JsonObject(object) = JsonObject::from_request(request, state).await?;
        Ok(OptionalJsonObject(object))
    }
}

/// A request body that is a JSON object. Anything else is 415 (not JSON), 413 (over the body
/// limit) or 400 `malformed_json`, before a handler sees it.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(request.headers()) {
            return Err(Problem::new(ErrorCode::UnsupportedMediaType)
                .detail("send the body as application/json"));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(ErrorCode::PayloadTooLarge)
                } else {
                    Problem::new(ErrorCode::MalformedJson).detail("the body could not be read")
                }
            })?;
        // An amount with more digits than an f64 holds arrives as its exact text (refused as
        // too many decimals, never rounded): `exact_json`. A body that is not valid JSON is
        // left as it is, so the line and column of a syntax error are the sender's.
        let bytes = crate::exact_json::quote_inexact_numbers(&bytes);
        match strict_json::parse(&bytes) {
            Ok(Value::Object(object)) => Ok(JsonObject(object)),
            Ok(_) => {
                Err(Problem::new(ErrorCode::MalformedJson).detail("the body must be a JSON object"))
            }
            Err(Refusal::DuplicateKey(pointer)) => Err(Problem::new(ErrorCode::MalformedJson)
                .with_errors(vec![FieldError {
                    pointer,
                    code: ErrorCode::MalformedJson,
                }])
                .detail("a key appears twice in one object")),
            // PostgreSQL cannot store a NUL character in text.
            Err(Refusal::Nul(pointer)) => Err(Problem::new(ErrorCode::InvalidField)
                .with_errors(vec![FieldError {
                    pointer,
                    code: ErrorCode::InvalidField,
                }])
                .detail("text must not contain NUL characters")),
            // serde_json's message gives the line and column, never the text around them.
            Err(Refusal::Syntax(error)) => {
                Err(Problem::new(ErrorCode::MalformedJson).detail(format!("invalid JSON: {error}")))
            }
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The tenant of a valid admin key: every admin query is scoped by it.
#[derive(Debug, Clone, Copy)]
pub struct AdminTenant(pub Uuid);

/// The tenant of an admin API request the console makes in-process, for its signed-in session
/// (`crate::console::admin`). A request extension: a request from the network cannot carry
/// one, so only the console's own calls are authenticated by it.
#[derive(Debug, Clone, Copy)]
pub struct InProcessTenant(pub Uuid);

/// The longest a configuration write waits for this process's reload.
const READ_YOUR_WRITES_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the admin key's extractor leaves the tenant of a configuration write, for
/// [`read_your_writes`].
#[derive(Clone, Default)]
struct WrittenTenant(Arc<OnceLock<(Uuid, AppState)>>);

/// Middleware of the configuration routes: a write (any method but GET and HEAD) that
/// succeeded answers once this process's configuration snapshot includes it, so a ping sent
/// right after the answer sees the change. Bounded by 5 s (or half the request timeout): past
/// it the write, already committed, is answered anyway (the listener is reconnecting; the
/// change arrives with its full reload).
pub async fn read_your_writes(mut request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let written = WrittenTenant::default();
    request.extensions_mut().insert(written.clone());
    let response = next.run(request).await;
    if response.status().is_success()
        && let Some((tenant, state)) = written.0.get()
    {
        let within = (state.settings.request_timeout() / 2).min(READ_YOUR_WRITES_WAIT);
        if !state.config.written(*tenant, within).await {
            tracing::warn!(%tenant, "configuration write answered before this process reloaded it");
        }
    }
    response
}

impl FromRequestParts<AppState> for AdminTenant {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let in_process = parts.extensions.get::<InProcessTenant>().map(|t| t.0);
        let tenant = match in_process {
            Some(tenant) => tenant,
            None => key_tenant(parts, state).await?,
        };
        if let Some(written) = parts.extensions.get::<WrittenTenant>() {
            let _ = written.0.set((tenant, state.clone()));
        }
        Ok(AdminTenant(tenant))
    }
}

/// The tenant of the request's admin key.
async fn key_tenant(parts: &Parts, state: &AppState) -> Result<Uuid, Problem> {
    let key = bearer_token(&parts.headers).ok_or_else(|| {
        Problem::new(ErrorCode::Unauthorized).detail("send Authorization: Bearer <admin key>")
    })?;
    let tenant = state.config.admin_tenant(&keys::hash(key)).await?;
    tenant.ok_or_else(|| Problem::new(ErrorCode::Unauthorized).detail("unknown admin key"))
}
