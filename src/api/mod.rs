//! HTTP only: handlers translate requests into calls to the core and the store, and answers
//! (or problem+json errors) back.

pub mod admin;
pub mod extract;
pub mod form;
pub mod idempotency;
pub mod openapi;
pub mod ops;
pub mod partner;
pub mod post;
pub mod problem;
pub mod rate_limit;
pub mod strict_json;

use axum::{Extension, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use problem::{ErrorCode, FieldError, Problem};

use crate::app::AppState;

/// Every route Gavel serves, each registered with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(ops::router())
        .merge(partner::router())
        .merge(post::router())
        .merge(admin::router())
        .routes(routes!(openapi::document))
}

/// The router and its OpenAPI document, split from the one registration of [`routes`]; the
/// router serves the document at `/openapi.json`.
pub fn router_and_document() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = routes().split_for_parts();
    openapi::complete(&mut document);
    let json = document
        .to_json()
        .expect("the OpenAPI document serializes to JSON");
    let router = router.layer(Extension(openapi::Document(std::sync::Arc::new(json))));
    (router, document)
}
