//! `POST /v1/keys/verify`: lets a backend that sits outside the gateway ask
//! whether an API key is valid and which tenant it belongs to.
//!
//! The caller authenticates with an operator key holding `keys:verify`.
//! The response names the key by id and never echoes the key.
//!
//! A verification is a use of the verified key on the caller's API, so it
//! counts against the key's own limits, its plan's and its tenant's (there
//! is no route), and spends a use of a usage-limited key. A key over a limit
//! is reported as `{"valid": false, "code": "rate_limited"}` with
//! `retry_after` in seconds, not as a 429: the operator's backend is not
//! the one being limited. Every verification of a key with limits carries
//! the `RateLimit-Policy` and `RateLimit` fields, for the backend to pass
//! on to its caller.

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::credential::{ApiKeyRecord, KeyKind};
use portcullis_core::scope::Scope;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::admin::{RequestBody, authenticate_operator};
use crate::app::AppState;
use crate::auth::{VerifyError, key_identity};
use crate::gateway::limits;
use crate::problem::Problem;
use crate::ratelimit::Decision;
use crate::ratelimit::brute_force::Subject;

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

    // The caller is a backend that verifies keys for many users from one
    // address, so only the key named is counted, never the caller's address.
    // The key is checked even while its prefix is blocked, because a key
    // cannot be guessed and its owner must not be locked out. A wrong key
    // waits the prefix's delay, or is reported as blocked.
    let subjects: Vec<Subject> = key_identity(&input.key)
        .map(Subject::Identity)
        .into_iter()
        .collect();

    let now = OffsetDateTime::now_utc();
    let outcome = state.verifier.verify(&input.key, now).await;
    if matches!(outcome, Err(VerifyError::Rejected { .. })) && !subjects.is_empty() {
        let counted = state.brute_force.record_failure(&subjects).await;
        if let Some(retry_after) = counted.retry_after_seconds() {
            return invalid_or_error(Problem::authentication_blocked(retry_after.max(1)), None);
        }
    }
    let verdict = match outcome {
        Ok(key) if key.kind == KeyKind::Tenant => return verify_limits(state, &key).await,
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

/// Checks a valid tenant key against its limits and spends a use, and
/// returns the verification response.
async fn verify_limits(state: &AppState, key: &ApiKeyRecord) -> Result<Response, Problem> {
    let applicable = match limits::key_limits(&state.limits, key) {
        Ok(applicable) => applicable,
        Err(problem) => return invalid_or_error(problem, None),
    };
    let mut decision = match limits::check(&state.rate_limiter, &applicable).await {
        Ok(decision) => decision,
        Err(rejection) => {
            return invalid_or_error(rejection.problem, rejection.decision.as_ref());
        }
    };
    if let Err(problem) = limits::spend_key_use(&state.store, key).await {
        limits::refund(&state.rate_limiter, &applicable, decision.as_mut()).await;
        return invalid_or_error(problem, decision.as_ref());
    }
    let verdict = json!({
        "valid": true,
        "tenant": key.tenant,
        "key_id": key.id,
        "scopes": key.scopes,
        "environment": key.environment,
        "expires_at": key.expires_at.and_then(|at| at.format(&Rfc3339).ok()),
    });
    Ok(with_limit_fields(
        axum::Json(verdict).into_response(),
        decision.as_ref(),
    ))
}

/// Turns a rejection of the verified key (429 or 403) into `valid: false`
/// with the problem's code, and passes on any other problem, such as 503.
fn invalid_or_error(problem: Problem, decision: Option<&Decision>) -> Result<Response, Problem> {
    let status = problem.status();
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::FORBIDDEN {
        return Err(problem);
    }
    let mut verdict = serde_json::Map::new();
    verdict.insert("valid".to_owned(), json!(false));
    verdict.insert("code".to_owned(), json!(problem.code()));
    if let Some(seconds) = decision
        .and_then(Decision::retry_after_seconds)
        .or(problem.retry_after())
    {
        verdict.insert("retry_after".to_owned(), json!(seconds));
    }
    if let Some(limit) = decision.and_then(Decision::deciding_limit)
        && status == StatusCode::TOO_MANY_REQUESTS
    {
        verdict.insert("limit".to_owned(), json!(limit.name.as_str()));
    }
    Ok(with_limit_fields(
        axum::Json(verdict).into_response(),
        decision,
    ))
}

/// Adds the `RateLimit-Policy` and `RateLimit` fields of `decision`. The
/// response is a 200, so `Retry-After` is left out: it would tell the
/// operator's backend to wait, and the wait is in the body.
fn with_limit_fields(mut response: Response, decision: Option<&Decision>) -> Response {
    if let Some(decision) = decision {
        limits::set_header_fields(response.headers_mut(), decision);
        response.headers_mut().remove(http::header::RETRY_AFTER);
    }
    response
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
