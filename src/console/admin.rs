//! The console's client of the admin API, in the same process: each read and action is a
//! request to the admin API's own router (no network, no key), carrying the session's tenant
//! as a request extension that only an in-process request can have
//! ([`crate::api::extract::InProcessTenant`]). So every page sees and does exactly what the
//! admin API lets its tenant see and do: the same checks, answers, tenant scoping,
//! read-your-writes and idempotency, with no second implementation to drift.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tower::ServiceExt;
use uuid::Uuid;

use super::ConsoleError;
use crate::api::extract::InProcessTenant;
use crate::money::{ExtraDecimals, Money};

/// The admin API's router, with its state: what the console sends its requests to.
#[derive(Clone)]
pub struct AdminApi(pub Router);

/// The admin API as one tenant's session sees it.
#[derive(Clone)]
pub struct Admin {
    api: Router,
    tenant: Uuid,
}

/// An answer of the admin API that was not a success: its status and problem+json body.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiProblem {
    #[serde(skip)]
    pub status: u16,
    pub code: String,
    pub title: String,
    pub detail: Option<String>,
    #[serde(default)]
    pub errors: Vec<ApiFieldError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiFieldError {
    pub pointer: String,
    pub code: String,
}

/// An amount of an admin API answer, read from the number's exact text (never a float).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Amount(pub Money);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<RawValue>>::deserialize(deserializer)?;
        let text = raw.get().trim_matches('"');
        Money::parse(text, ExtraDecimals::Reject)
            .map(Amount)
            .map_err(serde::de::Error::custom)
    }
}

impl Amount {
    pub fn cents(self) -> i64 {
        self.0.cents()
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A raw answer: its content type and body (a CSV download).
pub struct RawAnswer {
    pub content_type: String,
    pub content_disposition: Option<String>,
    pub body: axum::body::Bytes,
}

impl Admin {
    pub fn new(api: &AdminApi, tenant: Uuid) -> Self {
        Admin {
            api: api.0.clone(),
            tenant,
        }
    }

    /// `GET path` (with its query), read as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConsoleError> {
        self.call(Method::GET, path, None, &[]).await
    }

    /// A write: `method path` with a JSON body; an `Idempotency-Key` when given.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        idempotency_key: Option<&str>,
    ) -> Result<T, ConsoleError> {
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|key| vec![("idempotency-key", key)])
            .unwrap_or_default();
        self.call(method, path, body, &headers).await
    }

    /// `GET path` with an `Accept` header, the answer as it is (a CSV).
    pub async fn get_raw(&self, path: &str, accept: &str) -> Result<RawAnswer, ConsoleError> {
        let response = self
            .request(Method::GET, path, None, &[("accept", accept)])
            .await?;
        let headers = response.headers().clone();
        let body = read_success(response).await?;
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(RawAnswer {
            content_type: text(header::CONTENT_TYPE).unwrap_or_default(),
            content_disposition: text(header::CONTENT_DISPOSITION),
            body,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<T, ConsoleError> {
        let response = self.request(method, path, body, headers).await?;
        let bytes = read_success(response).await?;
        // A 204 reads as JSON null (unit types and options accept it).
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|error| {
            tracing::error!(%error, path, "the console could not read an admin API answer");
            ConsoleError::Internal
        })
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<axum::response::Response, ConsoleError> {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(&json).map_err(|_| ConsoleError::Internal)?)
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(|_| ConsoleError::NotFound)?;
        request
            .extensions_mut()
            .insert(InProcessTenant(self.tenant));
        match self.api.clone().oneshot(request).await {
            Ok(response) => Ok(response),
            Err(never) => match never {},
        }
    }
}

/// The body of a success, or the answer's problem as an error.
async fn read_success(
    response: axum::response::Response,
) -> Result<axum::body::Bytes, ConsoleError> {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|_| ConsoleError::Internal)?;
    if status.is_success() {
        return Ok(bytes);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(ConsoleError::NotFound);
    }
    let mut problem: ApiProblem = serde_json::from_slice(&bytes).unwrap_or(ApiProblem {
        status: 0,
        code: "internal".into(),
        title: "Something went wrong".into(),
        detail: None,
        errors: Vec::new(),
    });
    problem.status = status.as_u16();
    Err(ConsoleError::Api(problem))
}
