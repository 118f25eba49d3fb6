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
use portcullis_core::ids::KeyId;
use portcullis_core::key::Environment;
use portcullis_core::name::TenantName;
use portcullis_core::scope::{Scope, ScopeSet};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

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
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The API key to check, as the backend's caller sent it.
    key: String,
}

/// The verdict on a key: [`ValidKey`] or [`InvalidKey`], distinguished by
/// `valid`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum VerifyResponse<'a> {
    Valid(ValidKey<'a>),
    Invalid(InvalidKey<'a>),
}

/// A valid tenant key, named by id. The key itself is never echoed.
#[derive(Serialize, ToSchema)]
pub struct ValidKey<'a> {
    /// Always `true`.
    pub valid: bool,
    /// The name of the key's tenant.
    #[schema(value_type = String)]
    pub tenant: Option<&'a TenantName>,
    #[schema(value_type = String, format = Uuid)]
    pub key_id: KeyId,
    #[schema(value_type = Vec<String>)]
    pub scopes: &'a ScopeSet,
    #[schema(value_type = crate::openapi::schemas::Environment)]
    pub environment: Environment,
    /// RFC 3339 expiry time, or `null` for a key that does not expire.
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
}

/// A key that cannot be used now: unknown, malformed, revoked, expired, or
/// over one of its limits.
#[derive(Serialize, ToSchema)]
pub struct InvalidKey<'a> {
    /// Always `false`.
    pub valid: bool,
    /// Why: `invalid_format`, `not_found`, `revoked`, `expired`,
    /// `rate_limited`, `key_uses_exhausted`, `plan_not_configured` or
    /// `authentication_blocked`.
    pub code: &'a str,
    /// Seconds until the key may be used again, when waiting helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after: Option<u64>,
    /// The rate limit that decided, for `rate_limited`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limit: Option<&'a str>,
}

impl<'a> InvalidKey<'a> {
    fn new(code: &'a str) -> Self {
        Self {
            valid: false,
            code,
            retry_after: None,
            limit: None,
        }
    }
}

/// Handles `POST /v1/keys/verify`.
#[utoipa::path(
    post,
    path = "/v1/keys/verify",
    tag = "verify",
    summary = "Check an API key for a backend outside the gateway",
    description = "Returns 200 with `valid: false` and a `code` for a key that cannot be used, \
                   so the status says only whether the caller's own request succeeded. Counts \
                   as a use of the key against its rate limits and its use limit.",
    request_body = VerifyRequest,
    security(("operator_key" = ["keys:verify"]), ("operator_key_header" = ["keys:verify"])),
    responses(
        (status = 200, description = "The verdict; `RateLimit-Policy` and `RateLimit` describe the key's limits", body = VerifyResponse<'static>),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
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
        Ok(_) => InvalidKey::new("not_found"),
        Err(VerifyError::Rejected { rejection, .. }) => InvalidKey::new(rejection.code()),
        Err(VerifyError::Store(error)) => {
            tracing::error!(error = %crate::telemetry::ErrorChain(&error), "credential lookup failed during verify");
            return Err(Problem::store_unavailable());
        }
    };
    Ok(axum::Json(VerifyResponse::Invalid(verdict)).into_response())
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
    let verdict = VerifyResponse::Valid(ValidKey {
        valid: true,
        tenant: key.tenant.as_ref(),
        key_id: key.id,
        scopes: &key.scopes,
        environment: key.environment,
        expires_at: key.expires_at.and_then(|at| at.format(&Rfc3339).ok()),
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
    let mut verdict = InvalidKey::new(problem.code());
    verdict.retry_after = decision
        .and_then(Decision::retry_after_seconds)
        .or(problem.retry_after());
    if status == StatusCode::TOO_MANY_REQUESTS {
        verdict.limit = decision
            .and_then(Decision::deciding_limit)
            .map(|limit| limit.name.as_str());
    }
    Ok(with_limit_fields(
        axum::Json(VerifyResponse::Invalid(verdict)).into_response(),
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
