//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auction::ConfigError;

/// Every error code Gavel answers with. The text of a code never changes once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    BadRequest,
    Unauthorized,
    CampaignPaused,
    NotFound,
    PingNotFound,
    MethodNotAllowed,
    AlreadyPosted,
    IdempotencyKeyReused,
    IdempotencyKeyInProgress,
    PingNotPostable,
    PingExpired,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidField,
    UnknownField,
    PiiInPing,
    PingPostMismatch,
    ConsentRequired,
    InvalidPhone,
    InvalidEmail,
    DisposableEmail,
    InvalidZip,
    ZipStateMismatch,
    EmailDomainUnreachable,
    InvalidConfig,
    PaymentExceedsBalance,
    RateLimited,
    Unavailable,
    RequestTimeout,
    Overloaded,
    SaleNotReturnable,
    AlreadyReturned,
    ReturnsNotAllowed,
    ReturnReasonNotAllowed,
    ReturnWindowClosed,
    ReturnLimitReached,
    ReturnAlreadyDecided,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::CampaignPaused => "campaign_paused",
            Self::NotFound => "not_found",
            Self::PingNotFound => "ping_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyPosted => "already_posted",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyKeyInProgress => "idempotency_key_in_progress",
            Self::PingNotPostable => "ping_not_postable",
            Self::PingExpired => "ping_expired",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidField => "invalid_field",
            Self::UnknownField => "unknown_field",
            Self::PiiInPing => "pii_in_ping",
            Self::PingPostMismatch => "ping_post_mismatch",
            Self::ConsentRequired => "consent_required",
            Self::InvalidPhone => "invalid_phone",
            Self::InvalidEmail => "invalid_email",
            Self::DisposableEmail => "disposable_email",
            Self::InvalidZip => "invalid_zip",
            Self::ZipStateMismatch => "zip_state_mismatch",
            Self::EmailDomainUnreachable => "email_domain_unreachable",
            Self::InvalidConfig => "invalid_config",
            Self::PaymentExceedsBalance => "payment_exceeds_balance",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::RequestTimeout => "request_timeout",
            Self::Overloaded => "overloaded",
            Self::SaleNotReturnable => "sale_not_returnable",
            Self::AlreadyReturned => "already_returned",
            Self::ReturnsNotAllowed => "returns_not_allowed",
            Self::ReturnReasonNotAllowed => "return_reason_not_allowed",
            Self::ReturnWindowClosed => "return_window_closed",
            Self::ReturnLimitReached => "return_limit_reached",
            Self::ReturnAlreadyDecided => "return_already_decided",
            Self::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::CampaignPaused => StatusCode::FORBIDDEN,
            Self::NotFound | Self::PingNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyPosted
            | Self::IdempotencyKeyReused
            | Self::IdempotencyKeyInProgress
            | Self::PingNotPostable
            | Self::SaleNotReturnable
            | Self::AlreadyReturned
            | Self::ReturnsNotAllowed
            | Self::ReturnWindowClosed
            | Self::ReturnLimitReached
            | Self::ReturnAlreadyDecided
            | Self::PaymentExceedsBalance => StatusCode::CONFLICT,
            Self::PingExpired => StatusCode::GONE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidField
            | Self::UnknownField
            | Self::PiiInPing
            | Self::PingPostMismatch
            | Self::ConsentRequired
            | Self::InvalidPhone
            | Self::InvalidEmail
            | Self::DisposableEmail
            | Self::InvalidZip
            | Self::ZipStateMismatch
            | Self::EmailDomainUnreachable
            | Self::InvalidConfig
            | Self::ReturnReasonNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::RequestTimeout | Self::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedJson => "The body is not a JSON object",
            Self::BadRequest => "The request is malformed",
            Self::Unauthorized => "Missing or unknown key",
            Self::CampaignPaused => "The campaign, its partner or its offer is not active",
            Self::NotFound => "Not found",
            Self::PingNotFound => "Unknown ping",
            Self::MethodNotAllowed => "Method not allowed",
            Self::AlreadyPosted => "The ping was already posted with another body",
            Self::IdempotencyKeyReused => "The Idempotency-Key was used with another request",
            Self::IdempotencyKeyInProgress => {
                "A request with this Idempotency-Key is still running"
            }
            Self::PingNotPostable => "The ping has no bids to post",
            Self::PingExpired => "The ping has expired",
            Self::PayloadTooLarge => "The body is too large",
            Self::UnsupportedMediaType => "The body must be application/json",
            Self::InvalidField => "A field is invalid",
            Self::UnknownField => "A field is not part of the offer",
            Self::PiiInPing => "PII is not allowed in a ping",
            Self::PingPostMismatch => "The post does not match its ping",
            Self::ConsentRequired => "Required consent is missing",
            Self::InvalidPhone => "A phone number is not a valid North American number",
            Self::InvalidEmail => "An email address is not valid",
            Self::DisposableEmail => "An email address is at a disposable email domain",
            Self::InvalidZip => "A ZIP code is not valid",
            Self::ZipStateMismatch => "A ZIP code is not in the lead's state",
            Self::EmailDomainUnreachable => {
                "An email address is at a domain that receives no email"
            }
            Self::InvalidConfig => "The configuration breaks a rule",
            Self::PaymentExceedsBalance => "The payment is more than the partner's balance",
            Self::RateLimited => "Too many requests",
            Self::Unavailable => "Temporarily unavailable; retry later",
            Self::RequestTimeout => "The request took too long",
            Self::Overloaded => "Too many auctions in flight",
            Self::SaleNotReturnable => "The sale is not sold: it cannot be returned",
            Self::AlreadyReturned => "A return of the sale is already requested or approved",
            Self::ReturnsNotAllowed => "The contract does not allow returns",
            Self::ReturnReasonNotAllowed => "The contract does not allow this return reason",
            Self::ReturnWindowClosed => "The sale's return window has closed",
            Self::ReturnLimitReached => "The contract's return limit for the period is reached",
            Self::ReturnAlreadyDecided => "The return was already decided otherwise",
            Self::Internal => "Internal error",
        }
    }
}

/// The `Retry-After` of a database that is not there now: a pool timeout clears in about a
/// second; a restart takes longer, and partners retry again.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 1;

/// One offending place in the request, as a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub pointer: String,
    pub code: ErrorCode,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}", code.as_str(), detail.as_deref().unwrap_or(code.title()))]
pub struct Problem {
    pub code: ErrorCode,
    pub detail: Option<String>,
    pub errors: Vec<FieldError>,
    pub retry_after_seconds: Option<u64>,
}

impl Problem {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            detail: None,
            errors: Vec::new(),
            retry_after_seconds: None,
        }
    }

    /// `detail` is shown to the caller: it must never carry a PII value.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Field errors; the top-level code becomes the first error's.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        if let Some(first) = errors.first() {
            self.code = first.code;
        }
        self.errors = errors;
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// 422 `invalid_config`: every broken rule with its pointer; the detail spells out why,
    /// in the order of the errors (configuration values, never lead data).
    pub fn invalid_config(errors: Vec<ConfigError>) -> Self {
        let detail = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let errors = errors
            .into_iter()
            .map(|e| FieldError {
                pointer: e.pointer,
                code: ErrorCode::InvalidConfig,
            })
            .collect();
        Problem::new(ErrorCode::InvalidConfig)
            .with_errors(errors)
            .detail(detail)
    }

    /// 503 `unavailable`: the database is not there now (a restart, a failover, a full pool);
    /// retrying later may succeed.
    pub fn unavailable() -> Self {
        Problem::new(ErrorCode::Unavailable)
            .detail("the database cannot answer now")
            .retry_after(UNAVAILABLE_RETRY_AFTER_SECONDS)
    }

    /// 404 `not_found`: also the answer for another tenant's id, so ids reveal nothing.
    pub fn not_found() -> Self {
        Problem::new(ErrorCode::NotFound)
    }
}

impl From<ErrorCode> for Problem {
    fn from(code: ErrorCode) -> Self {
        Problem::new(code)
    }
}

/// The problem+json body (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub(crate) struct ProblemBody<'a> {
    /// `urn:gavel:error:<code>`.
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = ProblemBody {
            kind: format!("urn:gavel:error:{}", self.code.as_str()),
            title: self.code.title(),
            status: status.as_u16(),
            code: self.code,
            detail: self.detail.as_deref(),
            errors: &self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&error) {
            tracing::warn!(%error, "database unavailable");
            Problem::unavailable()
        } else {
            tracing::error!(%error, "database error");
            Problem::new(ErrorCode::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_rfc9457_with_code_pointers_and_retry_after() {
        let problem = Problem::new(ErrorCode::InvalidField)
            .detail("field email is PII for offer auto-insurance")
            .with_errors(vec![
                FieldError {
                    pointer: "/lead/email".into(),
                    code: ErrorCode::PiiInPing,
                },
                FieldError {
                    pointer: "/lead/zip".into(),
                    code: ErrorCode::InvalidField,
                },
            ])
            .retry_after(3);
        let response = problem.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "urn:gavel:error:pii_in_ping");
        assert_eq!(
            json["code"], "pii_in_ping",
            "top-level code is the first error's"
        );
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"][1]["pointer"], "/lead/zip");
        assert_eq!(json["errors"][1]["code"], "invalid_field");
    }
}
