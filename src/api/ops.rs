//! Operations endpoints: liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::Problem;
use crate::app::AppState;

/// How long a readiness probe waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process is alive and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::meters::gauges(
        &state.db,
        &state.grouped_db,
        &state.sales_db,
        state.auctions_in_flight(),
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The database answers: 200, or 503 `unavailable` while it does not (no restart needed once
/// it is back: the pool replaces broken connections).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ready\"}`"),
        (status = 503, description = "problem+json `unavailable`", body = crate::api::problem::ProblemBody<'static>,
            content_type = "application/problem+json")))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let check = crate::store::answers(&state.db);
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database unreachable");
            Err(Problem::unavailable().detail("the database is unreachable"))
        }
        Err(_) => Err(Problem::unavailable().detail("the database did not answer in time")),
    }
}
