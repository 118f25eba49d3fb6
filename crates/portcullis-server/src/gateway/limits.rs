//! Rate limits at the gateway: which limits apply to an authenticated
//! request, and the response when one of them denies it.
//!
//! The limits of a request are the tenant's (`limits.tenant`, counted per
//! tenant over all its keys and clients) and the route's
//! (`routes[].rate_limit`, counted over all callers of the route). They are
//! checked together, so the strictest decides and a denied request is
//! charged to none.
//!
//! A response on a route where a limit applied carries the `RateLimit-Policy`
//! and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-11, whatever
//! its status: the 429 itself, a 403 or 405 after the check, and the
//! upstream's response. They replace fields of the same name that an
//! upstream sent, so a caller never sees two `RateLimit` lists that do not
//! belong together. Requests rejected before the check (no route, failed
//! authentication) carry none, because no limit has been looked at.

use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::auth::Caller;
use crate::config::{LimitsConfig, RouteConfig};
use crate::problem::Problem;
use crate::ratelimit::decision::QUOTA_EXCEEDED_TYPE;
use crate::ratelimit::{Decision, LimitName, LimitRequest, RateLimiter, Verdict};

/// A request the gateway rejects, with the rate limit decision when one was
/// made, so the rejection carries its header fields.
pub struct Rejection {
    /// The error response.
    pub problem: Problem,
    /// The decision of the rate limit check, when the request got that far.
    pub decision: Option<Decision>,
}

impl From<Problem> for Rejection {
    fn from(problem: Problem) -> Self {
        Self {
            problem,
            decision: None,
        }
    }
}

/// Returns the limits that apply to `caller` on `route`, in the order the
/// header fields list them.
pub fn applicable_limits(
    limits: &LimitsConfig,
    route: &RouteConfig,
    caller: &Caller,
) -> Vec<LimitRequest> {
    let mut applicable = Vec::with_capacity(2);
    if let (Some(rate), Some(tenant)) = (limits.tenant, tenant_of(caller)) {
        applicable.push(LimitRequest::new(
            LimitName::builtin("tenant"),
            rate,
            tenant,
        ));
    }
    if let Some(rate) = route.rate_limit {
        applicable.push(LimitRequest::new(
            LimitName::builtin("route"),
            rate,
            route.path_prefix.clone(),
        ));
    }
    applicable
}

/// Checks the request against `limits`. Returns `Ok(None)` when no limit
/// applies, the decision when every limit admitted the request, and the
/// rejection otherwise.
pub async fn check(
    limiter: &RateLimiter,
    limits: &[LimitRequest],
) -> Result<Option<Decision>, Rejection> {
    if limits.is_empty() {
        return Ok(None);
    }
    let decision = limiter.check(limits, None).await;
    match problem_for(&decision) {
        None => Ok(Some(decision)),
        Some(problem) => Err(Rejection {
            problem,
            decision: Some(decision),
        }),
    }
}

/// Sets the header fields of `decision` on a response, replacing any of the
/// same name.
pub fn set_header_fields(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in decision.header_fields() {
        headers.insert(name, value);
    }
}

/// Builds the error response of a decision that denies the request, or
/// `None` when it admits it.
fn problem_for(decision: &Decision) -> Option<Problem> {
    match &decision.verdict {
        Verdict::Admitted => None,
        Verdict::Limited { limit, .. } => {
            let seconds = decision.retry_after_seconds().unwrap_or(1);
            let rate = decision
                .deciding_limit()
                .map(|status| status.rate.to_string())
                .unwrap_or_default();
            Some(
                Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many requests",
                    format!(
                        "the {limit} rate limit ({rate}) is used up; retry after {seconds} \
                         seconds, or spread requests out"
                    ),
                )
                .with_type(QUOTA_EXCEEDED_TYPE)
                .with_extension("limit", json!(limit.as_str()))
                .with_extension("violated-policies", json!(decision.violated_policies())),
            )
        }
        Verdict::UsesExhausted => Some(Problem::forbidden(
            "key_uses_exhausted",
            "this API key has reached its maximum number of uses; create a new key",
        )),
        Verdict::Unavailable => Some(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rate_limits_unavailable",
            "Service unavailable",
            "rate limits cannot be checked right now; retry later",
        )),
    }
}

/// Returns the name of the tenant a caller belongs to, the subject of the
/// tenant limit, so that a tenant's keys and access tokens share one
/// allowance. Operator keys have none and are rejected before limits apply.
fn tenant_of(caller: &Caller) -> Option<String> {
    match caller {
        Caller::ApiKey(authenticated) => authenticated.key.tenant.as_ref().map(ToString::to_string),
        Caller::AccessToken(authenticated) => Some(authenticated.tenant.to_string()),
    }
}
