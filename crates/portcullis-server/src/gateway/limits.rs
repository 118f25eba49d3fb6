//! Rate limits at the gateway: which limits apply to an authenticated
//! request, and the response when one of them denies it.
//!
//! The limits of a request are the API key's own (`keys create
//! --rate-limit`, named `key`, `key-2`, … in their order) or the OAuth
//! client's (`clients create --rate-limit`, named `client`, `client-2`, …,
//! counted per client over all its tokens), its plan's (named as the plan
//! names them), the tenant's (`limits.tenant`, counted per
//! tenant over all its keys and clients) and the route's
//! (`routes[].rate_limit`, counted over all callers of the route). They are
//! checked together, so the strictest decides and a denied request is
//! charged to none.
//!
//! A key or client whose plan is no longer configured, or whose stored rate
//! does not parse, is rejected (fail closed): the operator removed or broke a limit,
//! and running such a key without it would lift the limit silently. The
//! server logs such keys once at start.
//!
//! A response on a route where a limit applied carries the `RateLimit-Policy`
//! and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-11, whatever
//! its status: the 429 itself, a 403 for a key without uses left, and the
//! upstream's response. They replace fields of the same name that an
//! upstream sent, so a caller never sees two `RateLimit` lists that do not
//! belong together. Requests rejected before the check (no route, failed
//! authentication, method, scope) carry none, because no limit has been
//! looked at.

use std::collections::BTreeMap;

use http::{HeaderMap, StatusCode};
use serde_json::json;

use portcullis_core::credential::{ApiKeyRecord, RateLimits};
use portcullis_core::ids::ClientId;
use portcullis_store::Store;

use crate::app::AppState;
use crate::auth::Caller;
use crate::config::{LimitsConfig, RouteConfig};
use crate::manage::MAX_KEY_RATE_LIMITS;
use crate::metrics::LimitKind;
use crate::problem::{Problem, seconds_text};

/// `Retry-After` of a 503 while Redis cannot be reached and the operator
/// chose to deny: the longest wait between two reconnection attempts.
const UNAVAILABLE_RETRY_AFTER: u64 = 5;
use crate::ratelimit::decision::QUOTA_EXCEEDED_TYPE;
use crate::ratelimit::{Decision, LimitName, LimitRequest, Rate, RateLimiter, Verdict};

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
/// header fields list them, or the rejection of a credential whose limits
/// are no longer valid. `client_limits` are those of the OAuth client of an
/// access token caller, which the caller itself does not carry.
pub fn applicable_limits(
    limits: &LimitsConfig,
    route: &RouteConfig,
    caller: &Caller,
    client_limits: Option<&RateLimits>,
) -> Result<Vec<LimitRequest>, Problem> {
    let mut applicable = Vec::with_capacity(4);
    match caller {
        Caller::ApiKey(authenticated) => {
            add_key_limits(limits, &authenticated.key, &mut applicable)?;
        }
        Caller::AccessToken(authenticated) => {
            if let Some(client_limits) = client_limits {
                add_client_limits(
                    limits,
                    authenticated.client_id,
                    client_limits,
                    &mut applicable,
                )?;
            }
        }
        Caller::Certificate(authenticated) => {
            let client = &authenticated.client;
            add_client_limits(limits, client.id, &client.limits, &mut applicable)?;
        }
    }
    add_tenant_limit(limits, tenant_of(caller), &mut applicable);
    if let Some(rate) = route.rate_limit {
        applicable.push(LimitRequest::new(
            LimitName::builtin("route"),
            rate,
            route.path_prefix.clone(),
        ));
    }
    Ok(applicable)
}

/// Returns the limits of an API key outside any route: its own, its
/// plan's and its tenant's. The verify API counts requests against them.
pub fn key_limits(limits: &LimitsConfig, key: &ApiKeyRecord) -> Result<Vec<LimitRequest>, Problem> {
    let mut applicable = Vec::with_capacity(4);
    add_key_limits(limits, key, &mut applicable)?;
    add_tenant_limit(
        limits,
        key.tenant.as_ref().map(ToString::to_string),
        &mut applicable,
    );
    Ok(applicable)
}

fn add_tenant_limit(
    limits: &LimitsConfig,
    tenant: Option<String>,
    applicable: &mut Vec<LimitRequest>,
) {
    if let (Some(rate), Some(tenant)) = (limits.tenant, tenant) {
        applicable.push(LimitRequest::new(
            LimitName::builtin("tenant"),
            rate,
            tenant,
        ));
    }
}

/// Names of a key's own limits, in the order of `--rate-limit`.
const KEY_LIMIT_NAMES: [&str; MAX_KEY_RATE_LIMITS] = ["key", "key-2", "key-3", "key-4"];

/// Names of an OAuth client's own limits, in the order of `--rate-limit`.
const CLIENT_LIMIT_NAMES: [&str; MAX_KEY_RATE_LIMITS] =
    ["client", "client-2", "client-3", "client-4"];

/// Adds the limits of an API key: its own rates, then its plan's.
fn add_key_limits(
    limits: &LimitsConfig,
    key: &ApiKeyRecord,
    applicable: &mut Vec<LimitRequest>,
) -> Result<(), Problem> {
    let own = OwnLimits {
        rates: &key.limits.rate_limits,
        plan: key.limits.plan.as_deref(),
        names: KEY_LIMIT_NAMES,
        subject: key.id.to_string(),
        holder: "API key",
        move_hint: "move the key to another",
    };
    add_own_limits(limits, &own, applicable)
}

/// Adds the limits of an OAuth client: its own rates, then its plan's.
/// They are counted per client, over all its tokens and certificates.
fn add_client_limits(
    limits: &LimitsConfig,
    client_id: ClientId,
    client_limits: &RateLimits,
    applicable: &mut Vec<LimitRequest>,
) -> Result<(), Problem> {
    let own = OwnLimits {
        rates: &client_limits.rate_limits,
        plan: client_limits.plan.as_deref(),
        names: CLIENT_LIMIT_NAMES,
        subject: client_id.to_string(),
        holder: "OAuth client",
        move_hint: "move the client to another",
    };
    add_own_limits(limits, &own, applicable)
}

/// The rates and plan of one key or client.
struct OwnLimits<'a> {
    rates: &'a [String],
    plan: Option<&'a str>,
    /// Names of the own rates, in their order.
    names: [&'static str; MAX_KEY_RATE_LIMITS],
    /// The key or client id that the limits are counted for.
    subject: String,
    /// Kind of credential the limits belong to, for messages.
    holder: &'static str,
    /// Operator's fix for a plan that is gone, for messages.
    move_hint: &'static str,
}

fn add_own_limits(
    limits: &LimitsConfig,
    own: &OwnLimits<'_>,
    applicable: &mut Vec<LimitRequest>,
) -> Result<(), Problem> {
    for (text, name) in own.rates.iter().zip(own.names) {
        let rate = text.parse::<Rate>().map_err(|error| {
            tracing::error!(subject = %own.subject, holder = own.holder, error = %error, "stored rate limit is invalid");
            Problem::internal()
        })?;
        applicable.push(LimitRequest::new(
            LimitName::builtin(name),
            rate,
            own.subject.clone(),
        ));
    }
    if let Some(plan_name) = own.plan {
        let Some(plan) = limits.plans.get(plan_name) else {
            return Err(Problem::forbidden(
                "plan_not_configured",
                format!(
                    "this {} is on the plan {plan_name:?}, which the server no longer \
                     configures; ask the operator to restore the plan or {}",
                    own.holder, own.move_hint
                ),
            ));
        };
        for (name, rate) in &plan.limits {
            applicable.push(LimitRequest::new(name.clone(), *rate, own.subject.clone()));
        }
    }
    Ok(())
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

/// Gives back the charge of a request that [`check`] admitted (`decision`)
/// and that was rejected afterwards, so that a rejected request spends no
/// allowance. The 403 of a key without uses left then does not use up its
/// tenant's or route's limit. `decision` is updated to match, so the
/// rejection's `RateLimit` field shows the allowance after the refund.
pub async fn refund(
    limiter: &RateLimiter,
    limits: &[LimitRequest],
    decision: Option<&mut Decision>,
) {
    if let Some(decision) = decision.filter(|decision| decision.is_admitted()) {
        limiter.refund(limits).await;
        decision.apply_refund();
    }
}

/// Spends one use of a usage-limited API key (`--max-uses`), for a request
/// that passed every other check. The caller gives the rate-limit charge
/// back ([`refund`]) when this rejects the request.
///
/// Every node spends uses through one conditional UPDATE in the store, so
/// the count is exact across nodes and survives a Redis restart, at the
/// price of one store write per request of such a key. A key without uses
/// left gets 403, not 429: waiting does not help. When the store cannot be
/// reached the request is rejected with 503 (fail closed).
pub async fn spend_use(store: &Store, caller: &Caller) -> Result<(), Problem> {
    match caller {
        Caller::ApiKey(authenticated) => spend_key_use(store, &authenticated.key).await,
        Caller::AccessToken(_) | Caller::Certificate(_) => Ok(()),
    }
}

/// Spends one use of `key` when it is usage-limited; see [`spend_use`].
pub async fn spend_key_use(store: &Store, key: &ApiKeyRecord) -> Result<(), Problem> {
    let Some(max_uses) = key.limits.max_uses else {
        return Ok(());
    };
    match store.spend_key_use(key.id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            if let Some(metrics) = crate::metrics::get() {
                metrics.record_rate_limit_rejection(LimitKind::Uses);
            }
            Err(Problem::forbidden(
                "key_uses_exhausted",
                format!(
                    "this API key has made all {max_uses} requests it was created for \
                     (--max-uses); create a new key"
                ),
            ))
        }
        Err(error) => {
            tracing::error!(key_id = %key.id, error = %error, "spending a use of a usage-limited key failed");
            Err(Problem::store_unavailable())
        }
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
pub(crate) fn problem_for(decision: &Decision) -> Option<Problem> {
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
                        "the {limit} rate limit ({rate}) is used up; retry after {}, or \
                         spread requests out",
                        seconds_text(seconds)
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
        // The node tries Redis again within its longest backoff.
        Verdict::Unavailable => Some(
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate_limits_unavailable",
                "Service unavailable",
                "rate limits cannot be checked right now; retry in a few seconds",
            )
            .with_retry_after(UNAVAILABLE_RETRY_AFTER),
        ),
    }
}

/// Returns the name of the tenant a caller belongs to, the subject of the
/// tenant limit, so that a tenant's keys and access tokens share one
/// allowance with its certificate clients. Operator keys have none and are rejected before limits apply.
fn tenant_of(caller: &Caller) -> Option<String> {
    match caller {
        Caller::ApiKey(authenticated) => authenticated.key.tenant.as_ref().map(ToString::to_string),
        Caller::AccessToken(authenticated) => Some(authenticated.tenant.to_string()),
        Caller::Certificate(authenticated) => Some(authenticated.client.tenant.to_string()),
    }
}

/// Logs, once per plan, the keys that name a plan the configuration does
/// not define. The gateway rejects those keys until the plan is restored or
/// the key moves to another plan.
pub async fn log_keys_on_missing_plans(state: &AppState) {
    let configured: Vec<String> = state.limits.plans.keys().cloned().collect();
    let keys = match state.store.keys_on_other_plans(&configured).await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::warn!(error = %error, "listing keys to check their plans failed");
            return;
        }
    };
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (plan, key_id) in keys {
        missing.entry(plan).or_default().push(key_id.to_string());
    }
    for (plan, key_ids) in missing {
        tracing::warn!(
            plan,
            keys = key_ids.len(),
            key_ids = %key_ids.join(","),
            "API keys name a plan that [limits.plans] does not define; the gateway rejects them \
             until the plan is restored or `keys update --plan` moves them"
        );
    }
}
