//! `/healthz` (the process runs) and `/readyz` (the store responds).
//!
//! `/readyz` also reports where rate limits are counted (`memory`, `redis`,
//! or `redis_unreachable` during an outage), and with Redis the number of
//! Redis calls that failed or timed out since start (`redis_failures`). An outage does not make the
//! node unready, because every node shares Redis and the configured
//! fallback (`limits.redis_failure`) decides what limited requests get.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::app::AppState;
use crate::problem::Problem;

/// `GET /healthz`: 200 while the process serves requests.
pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

/// `GET /readyz`: 200 when the store responds, else 503, so a load balancer
/// stops sending traffic to a node that can only deny it.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "ready",
                "store": state.store.backend(),
                "rate_limits": rate_limit_backend(&state),
                "redis_failures": state
                    .rate_limiter
                    .redis_health()
                    .map(|health| health.failures()),
            })),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&error), "readiness check failed: store unreachable");
            Problem::store_unavailable().into_response()
        }
    }
}

/// Names where rate limits are counted right now.
fn rate_limit_backend(state: &AppState) -> &'static str {
    match state.rate_limiter.redis_health() {
        None => "memory",
        Some(health) if health.is_up() => "redis",
        Some(_) => "redis_unreachable",
    }
}
