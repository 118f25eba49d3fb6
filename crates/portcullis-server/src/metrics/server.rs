//! The metrics listener: plain HTTP, `GET /metrics` only, in the Prometheus
//! text exposition format 0.0.4.
//!
//! It is separate from the main listener, so it can stay on loopback or an
//! internal network while the main listener faces clients. The main
//! listener never serves metrics.

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::listener::{ListenerLimits, serve};
use crate::problem::Problem;

/// Limits of the metrics listener. A scraper opens a connection or two, so
/// a small maximum keeps a misbehaving client from holding many sockets.
const LIMITS: ListenerLimits = ListenerLimits {
    max_connections: 64,
    per_address: None,
    header_read_timeout: Duration::from_secs(10),
    body_read_timeout: Duration::from_secs(10),
    handshake_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
};

/// Time an in-flight scrape gets after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Builds the metrics router: `GET /metrics`, and 404 for every other path.
pub fn router(metrics: &'static Metrics) -> Router {
    Router::new()
        .route("/metrics", get(move || scrape(metrics)))
        .fallback(|| async {
            Problem::not_found("the metrics listener serves only GET /metrics").into_response()
        })
}

async fn scrape(metrics: &'static Metrics) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => {
            tracing::error!("encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Serves `metrics` on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    metrics: &'static Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve(
        listener,
        None,
        router(metrics),
        LIMITS,
        shutdown,
        SHUTDOWN_GRACE,
    )
    .await
}
