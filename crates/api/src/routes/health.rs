//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::{ApiError, Detail};
use crate::state::AppState;

/// How long /ready waits for Cassandra to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: 200 while the process runs.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "the process runs", body = Detail, example = json!({"detail": "Healthy"})))
)]
pub async fn health() -> Json<Detail> {
    Json(Detail { detail: "Healthy".into() })
}

/// Readiness: 200 when Cassandra answers a query and live event ingest is
/// running, 503 otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Cassandra answers and live event ingest runs", body = Detail, example = json!({"detail": "Ready"})),
        (status = 503, description = "Cassandra is not connected or does not answer, or live event ingest (POST /events) is down", body = Detail),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Detail>, ApiError> {
    // Checked first: it never waits, and a committer that died makes every
    // POST /events fail whatever Cassandra says.
    if let Err(error) = state.events().health() {
        tracing::warn!(%error, "readiness check failed: live event ingest is down");
        return Err(ApiError::unavailable(
            "live event ingest (POST /events) is down: its committer is being restarted",
        ));
    }
    let store = state.store()?;
    match tokio::time::timeout(READY_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(Json(Detail { detail: "Ready".into() })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            Err(ApiError::unavailable("Cassandra does not answer"))
        }
        Err(_) => Err(ApiError::unavailable("Cassandra did not answer in time")),
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "missing or wrong API key", body = Detail),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics().render())
}
