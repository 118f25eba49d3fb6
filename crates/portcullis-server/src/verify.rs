//! `POST /v1/keys/verify`: lets a backend that sits outside the gateway ask
//! whether an API key is valid and which tenant it belongs to.
//!
//! The caller authenticates with an operator key holding `keys:verify`.
//! The response names the key by id and never echoes the key.

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use portcullis_core::credential::KeyKind;
use portcullis_core::scope::Scope;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::admin::{RequestBody, authenticate_operator};
use crate::app::AppState;
use crate::auth::VerifyError;
use crate::problem::Problem;

/// The scope an operator key needs to call the verify API.
pub static KEYS_VERIFY: LazyLock<Scope> = LazyLock::new(|| scope_constant("keys:verify"));

/// Body of a verify request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    key: String,
}

/// Handles `POST /v1/keys/verify`.
pub async fn keys_verify(State(state): State<AppState>, request: Request) -> Response {
    match verify(&state, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn verify(state: &AppState, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let body = RequestBody::read(&parts, body).await?;
    authenticate_operator(state, &parts, &KEYS_VERIFY, "verify").await?;
    let input: VerifyRequest = body.json()?;

    let now = OffsetDateTime::now_utc();
    let verdict = match state.verifier.verify(&input.key, now).await {
        Ok(key) if key.kind == KeyKind::Tenant => json!({
            "valid": true,
            "tenant": key.tenant,
            "key_id": key.id,
            "scopes": key.scopes,
            "environment": key.environment,
            "expires_at": key.expires_at.and_then(|at| at.format(&Rfc3339).ok()),
        }),
        // Operator keys are not customer credentials; to a backend they
        // are as good as unknown.
        Ok(_) => json!({"valid": false, "code": "not_found"}),
        Err(VerifyError::Rejected { rejection, .. }) => {
            json!({"valid": false, "code": rejection.code()})
        }
        Err(VerifyError::Store(error)) => {
            tracing::error!(error = %crate::telemetry::ErrorChain(&error), "credential lookup failed during verify");
            return Err(Problem::store_unavailable());
        }
    };
    Ok(axum::Json(verdict).into_response())
}

/// Parses a scope written in the source.
pub(crate) fn scope_constant(name: &str) -> Scope {
    match Scope::parse(name) {
        Ok(scope) => scope,
        Err(error) => unreachable_scope(name, &error),
    }
}

#[expect(
    clippy::panic,
    reason = "only scope names written in the source reach this, and a unit test parses each"
)]
fn unreachable_scope(name: &str, error: &dyn std::fmt::Display) -> Scope {
    panic!("built-in scope {name} is invalid: {error}")
}
