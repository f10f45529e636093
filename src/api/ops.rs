//! Operations endpoints: liveness and readiness.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::{ErrorCode, Problem};
use crate::app::AppState;

/// How long a readiness probe waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is alive and serving HTTP.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::meters::gauges(&state.db, state.auctions_in_flight());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The database answers: 200, or 503 `unavailable` while it does not (no restart needed once
/// it is back: the pool replaces broken connections).
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let check = sqlx::query("SELECT 1").execute(&state.db);
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database unreachable");
            Err(Problem::new(ErrorCode::Unavailable).detail("the database is unreachable"))
        }
        Err(_) => {
            Err(Problem::new(ErrorCode::Unavailable).detail("the database did not answer in time"))
        }
    }
}
