//! `/healthz` (the process runs) and `/readyz` (the store responds).
//!
//! `/readyz` also reports where rate limits (`rate_limits`) and failed
//! authentication counts (`brute_force`) are kept: `memory`, `redis`, or
//! `redis_unreachable` during an outage. With Redis it gives the number of
//! Redis calls of each that failed or timed out since start
//! (`redis_failures`, `brute_force_redis_failures`). Both share the node's
//! Redis connection, whose background probe turns them back to `redis`
//! without waiting for a request. An outage does not make
//! the node unready, because every node shares Redis and the configured
//! fallback (`limits.redis_failure`) decides what limited requests get.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::app::AppState;
use crate::problem::Problem;
use crate::ratelimit::redis::RedisHealth;

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
                "rate_limits": backend(state.rate_limiter.redis_health()),
                "redis_failures": state.rate_limiter.redis_failures(),
                "brute_force": backend(state.brute_force.redis_health()),
                "brute_force_redis_failures": state.brute_force.redis_failures(),
            })),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&error), "readiness check failed: store unreachable");
            Problem::store_unavailable().into_response()
        }
    }
}

/// Names where counts are kept right now, given the Redis health of a
/// shared counter (`None` for one in memory).
fn backend(redis: Option<&RedisHealth>) -> &'static str {
    match redis {
        None => "memory",
        Some(health) if health.is_up() => "redis",
        Some(_) => "redis_unreachable",
    }
}
