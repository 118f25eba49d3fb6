//! `GET /ca/ca.pem` and `GET /ca/crl.pem`: the internal CA's certificate
//! and its current CRL, for partners and relying parties. Both are public
//! documents, so the routes need no credential.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};

use super::ca::CaError;
use crate::app::AppState;
use crate::problem::Problem;
use crate::telemetry::ErrorChain;

/// The `Cache-Control` of both documents. A minute keeps a revocation from
/// hiding in caches for long, and clients that poll still hit a cache.
const CACHE_CONTROL_VALUE: &str = "public, max-age=60";

/// Serves the CA certificate as `application/x-pem-file`.
#[utoipa::path(
    get,
    path = "/ca/ca.pem",
    tag = "certificates",
    summary = "The internal CA's certificate",
    responses(
        (status = 200, description = "One PEM certificate; cacheable for 60 seconds", content_type = "application/x-pem-file", body = String),
        (status = 404, description = "The internal CA is not initialized"),
        (status = 500, description = "The CA could not be read"),
    ),
)]
pub async fn ca_certificate(State(state): State<AppState>) -> Response {
    match state.ca.ca_pem().await {
        Ok(pem) => pem_response(pem),
        Err(error) => problem(&error).into_response(),
    }
}

/// Serves the current CRL as `application/x-pem-file`.
#[utoipa::path(
    get,
    path = "/ca/crl.pem",
    tag = "certificates",
    summary = "The internal CA's current CRL",
    responses(
        (status = 200, description = "One PEM X509 CRL; cacheable for 60 seconds", content_type = "application/x-pem-file", body = String),
        (status = 404, description = "The internal CA is not initialized"),
        (status = 500, description = "The CRL could not be built"),
    ),
)]
pub async fn crl(State(state): State<AppState>) -> Response {
    match state.ca.crl(time::OffsetDateTime::now_utc()).await {
        Ok(pem) => pem_response(pem),
        Err(error) => problem(&error).into_response(),
    }
}

fn pem_response(pem: String) -> Response {
    (
        [
            (CONTENT_TYPE, "application/x-pem-file"),
            (CACHE_CONTROL, CACHE_CONTROL_VALUE),
        ],
        pem,
    )
        .into_response()
}

fn problem(error: &CaError) -> Problem {
    match error {
        CaError::NotInitialized => Problem::not_found("the internal CA is not initialized"),
        other => {
            tracing::error!(error = %ErrorChain(other), "serving a CA document failed");
            Problem::internal()
        }
    }
}
