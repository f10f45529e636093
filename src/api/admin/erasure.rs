//! A consumer's erasure request (CCPA, GDPR; docs/pii.md#retention-and-erasure): `POST
//! /v1/admin/erasure` with their email or phone erases the PII of every lead of theirs in the
//! tenant at once, found by the hash of the normalized value (the lead's PII being sealed),
//! and records that it happened without the value; `GET /v1/admin/erasures` lists the records.
//! Sales, money and reports stay exact; dedup keeps working on its own hashes.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::extract::{AdminTenant, JsonObject};
use crate::api::{ErrorCode, FieldError, Problem};
use crate::app::AppState;
use crate::auction::{normalize_email, normalize_phone};
use crate::store::pii;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(erase, list))
}

/// What an erasure did.
#[derive(Serialize, ToSchema)]
pub struct ErasureRecord {
    id: Uuid,
    /// How the consumer was named: `email` or `phone` (the value is not kept).
    matched_by: String,
    /// The leads whose PII was erased.
    leads_erased: i64,
    requested_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct Erasures {
    /// Newest first, at most 1000.
    erasures: Vec<ErasureRecord>,
}

/// A 422 at `/{field}`: the value itself is never echoed.
fn invalid(field: &str, detail: &str) -> Problem {
    Problem::new(ErrorCode::InvalidField)
        .detail(detail.to_owned())
        .with_errors(vec![FieldError {
            pointer: format!("/{field}"),
            code: ErrorCode::InvalidField,
        }])
}

/// The consumer named by the body: how, and the hash its leads hold.
fn consumer(body: &serde_json::Map<String, Value>) -> Result<(&'static str, [u8; 32]), Problem> {
    if let Some(other) = body.keys().find(|k| *k != "email" && *k != "phone") {
        let pointer = crate::auction::pointer_token(other);
        return Err(invalid(&pointer, "unknown field: send email or phone"));
    }
    let (field, normalized) = match (body.get("email"), body.get("phone")) {
        (Some(_), Some(_)) => {
            return Err(invalid("phone", "send email or phone, one request each"));
        }
        (Some(Value::String(email)), None) => {
            let email = normalize_email(email);
            if email.len() < 3 || !email.contains('@') {
                return Err(invalid("email", "must be an email address"));
            }
            ("email", email)
        }
        (None, Some(Value::String(phone))) => match normalize_phone(phone) {
            Some(phone) => ("phone", phone),
            None => return Err(invalid("phone", "must be a phone number of 10 digits")),
        },
        (Some(_), None) => return Err(invalid("email", "must be a string")),
        (None, Some(_)) => return Err(invalid("phone", "must be a string")),
        (None, None) => return Err(invalid("email", "send email or phone")),
    };
    Ok((field, Sha256::digest(normalized.as_bytes()).into()))
}

/// Erases one consumer's PII from every lead of the tenant: `{"email": "…"}` or
/// `{"phone": "…"}`.
#[utoipa::path(post, path = "/v1/admin/erasure", tag = "inspection",
    request_body(content = Object, description = r#"`{"email": "…"}` or `{"phone": "…"}`"#),
    responses((status = 200, body = ErasureRecord)))]
async fn erase(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    JsonObject(body): JsonObject,
) -> Result<Json<ErasureRecord>, Problem> {
    let (matched_by, hash) = consumer(&body)?;
    let now = state.clock.now();
    let (id, leads_erased) =
        pii::erase_consumer(&state.db, tenant, matched_by, &[hash], now).await?;
    tracing::info!(erasure_id = %id, matched_by, leads_erased, "a consumer's PII erased");
    Ok(Json(ErasureRecord {
        id,
        matched_by: matched_by.to_owned(),
        leads_erased,
        requested_at: now,
    }))
}

/// The tenant's erasure requests, newest first.
#[utoipa::path(get, path = "/v1/admin/erasures", tag = "inspection",
    responses((status = 200, body = Erasures)))]
async fn list(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
) -> Result<Json<Erasures>, Problem> {
    let erasures = pii::erasures(&state.db, tenant, 1000)
        .await?
        .into_iter()
        .map(|e| ErasureRecord {
            id: e.id,
            matched_by: e.matched_by,
            leads_erased: i64::from(e.leads_erased),
            requested_at: e.requested_at,
        })
        .collect();
    Ok(Json(Erasures { erasures }))
}
