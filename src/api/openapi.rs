//! The OpenAPI 3.1 document, built from the same registration as the router (every route is
//! added with `utoipa_axum::routes!` from its handler's `#[utoipa::path]`), so the two cannot
//! drift. What is common to whole groups of routes (security, error answers) is added here
//! once, by path.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use crate::api::ErrorCode;
use crate::api::problem::{FieldError, ProblemBody};

/// The security scheme of the partner routes: a campaign's posting key (also accepted as
/// the body field `posting_key`).
pub const POSTING_KEY: &str = "posting_key";
/// The security scheme of the admin routes: a tenant's admin key.
pub const ADMIN_KEY: &str = "admin_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gavel",
        description = "Multi-tenant ping/post lead auction server. Errors are \
            application/problem+json (RFC 9457) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ProblemBody, ErrorCode, FieldError)),
    tags(
        (name = "partner", description = "Partner API (SPEC §2), authenticated by a posting key"),
        (name = "partners"), (name = "buyers"), (name = "offers"), (name = "campaigns"),
        (name = "contracts"), (name = "inspection"), (name = "reports"),
        (name = "returns", description = "Buyers' returns of sold leads (docs/returns.md)"),
        (name = "settings", description = "The tenant's own settings"),
        (name = "operations", description = "Liveness, readiness and this document")
    )
)]
struct BaseDocument;

/// The document before the routes are added.
pub fn base() -> utoipa::openapi::OpenApi {
    let mut document = BaseDocument::openapi();
    let components = document.components.get_or_insert_with(Default::default);
    for (name, description) in [
        (POSTING_KEY, "A campaign's posting key (pk_…)"),
        (ADMIN_KEY, "A tenant's admin key (ak_…)"),
    ] {
        components.add_security_scheme(
            name,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            ),
        );
    }
    document
}

/// The error answers a group of routes can give, each a problem+json body.
const PARTNER_ERRORS: &[(&str, &str)] = &[
    ("400", "malformed_json"),
    ("401", "unauthorized"),
    ("403", "campaign_paused"),
    ("404", "ping_not_found"),
    (
        "409",
        "already_posted, ping_not_postable, idempotency_key_reused, idempotency_key_in_progress (with Retry-After)",
    ),
    ("410", "ping_expired"),
    ("413", "payload_too_large"),
    ("415", "unsupported_media_type"),
    (
        "422",
        "invalid_field, unknown_field, pii_in_ping, ping_post_mismatch, consent_required",
    ),
    ("429", "rate_limited (with Retry-After)"),
    ("503", "unavailable, overloaded"),
];
const ADMIN_ERRORS: &[(&str, &str)] = &[
    ("400", "malformed_json"),
    ("401", "unauthorized"),
    (
        "404",
        "not_found: an unknown id, or another tenant's (never 403)",
    ),
    (
        "409",
        "idempotency_key_reused, idempotency_key_in_progress (with Retry-After): the funds route's Idempotency-Key",
    ),
    ("415", "unsupported_media_type"),
    (
        "422",
        "invalid_config (every broken rule in errors[], each with its JSON pointer), or invalid_field for a query parameter",
    ),
    ("503", "unavailable"),
];

/// Adds to every operation its security scheme and its error answers, by route group.
pub fn complete(document: &mut utoipa::openapi::OpenApi) {
    for (path, item) in document.paths.paths.iter_mut() {
        let (scheme, errors) = if path.starts_with("/v1/admin/") {
            (Some(ADMIN_KEY), ADMIN_ERRORS)
        } else if path.starts_with("/v1/") {
            (Some(POSTING_KEY), PARTNER_ERRORS)
        } else {
            (None, &[][..])
        };
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            if let Some(scheme) = scheme {
                operation.security =
                    Some(vec![SecurityRequirement::new(scheme, Vec::<String>::new())]);
            }
            // OpenAPI requires a description on every response.
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = match status.as_str() {
                        "201" => "Created",
                        _ => "OK",
                    }
                    .to_owned();
                }
            }
            for (status, codes) in errors {
                let problem = ResponseBuilder::new()
                    .description(format!("problem+json: {codes}"))
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert(problem.into());
            }
        }
    }
}

/// The rendered document, shared by every request.
#[derive(Clone)]
pub struct Document(pub Arc<String>);

/// This OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of every route", content_type = "application/json")))]
pub async fn document(Extension(Document(json)): Extension<Document>) -> Response {
    let mut response = json.as_str().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
