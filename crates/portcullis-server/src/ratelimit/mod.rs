//! Rate limits, use counts and brute-force protection.
//!
//! - [`policy`]: rates with a burst (`100/s burst 200`) and limit names.
//! - [`gcra`]: the GCRA arithmetic both backends share.
//! - [`local`]: limits in this process's memory.
//! - [`redis`]: limits shared through Redis, use counters of usage-limited
//!   keys, and the fallback while Redis is away.
//! - [`health`]: whether Redis is in use, its backoff and outage log lines.
//! - [`decision`]: the result of a check and the `RateLimit` header fields.
//! - [`brute_force`]: failed authentications per client address and per
//!   targeted identity, with growing blocks.
//!
//! # How the gateway calls it
//!
//! The order is authenticate, then authorize, then rate limit:
//!
//! 1. Before verifying a credential, call [`brute_force::BruteForceTracker::admit`]
//!    with the resolved client address ([`crate::client_ip`]), and with a
//!    user identity when the credential is a password. A blocked source
//!    gets 429 with `Retry-After` and no credential check, so a blocked
//!    attacker costs no hashing. A slowed source waits the delay.
//! 2. After a failed check, call `record_failure` with the address and the
//!    identity the request names (key prefix, client id). It waits out the
//!    identity's delay and returns its block, so a guess is slowed and
//!    blocked while the right credential never is. A success changes no
//!    count.
//! 3. For an authenticated caller, build one [`LimitRequest`] per limit that
//!    applies (`key`, `client`, `tenant`, `route`, plan limits) and call
//!    [`RateLimiter::check`] once, with the key's [`redis::UsesLimit`] when
//!    it has `--max-uses`. Limits are per credential, so they run after
//!    authentication, and after the method and scope checks, so that a
//!    rejected request spends no allowance. A request rejected after the
//!    check gets its charge back through [`RateLimiter::refund`].
//! 4. Add [`Decision::header_fields`] to every response on a limited route,
//!    429 included. Respond to [`Verdict::Limited`] with 429 and a problem body
//!    whose `type` is [`decision::QUOTA_EXCEEDED_TYPE`], naming the limit
//!    and [`Decision::violated_policies`]; [`Verdict::UsesExhausted`] with
//!    403; [`Verdict::Unavailable`] with 503.

pub mod brute_force;
pub mod decision;
pub mod gcra;
pub mod health;
pub mod local;
pub mod policy;
pub mod redis;

pub use decision::{Decision, LimitStatus, UsesStatus, Verdict};
pub use local::LocalLimiter;
pub use policy::{LimitName, Rate, RateError, RateUnit};
pub use redis::{
    FailurePolicy, RedisLimitError, RedisLimiter, RedisOptions, SharedLimiter, UsesLimit,
};

use portcullis_core::crypto::sha256;

use crate::metrics::LimitKind;

/// Maximum length of a subject kept as written in a storage key. Longer
/// subjects are hashed.
pub const MAX_PLAIN_SUBJECT_LEN: usize = 64;

/// One limit to check a request against: the limit's name and rate, and the
/// subject it counts (a key id, tenant id, route, client address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRequest {
    /// The limit's name, reported in headers and errors.
    pub name: LimitName,
    /// The limit's rate.
    pub rate: Rate,
    /// The subject whose requests the limit counts.
    pub subject: String,
}

impl LimitRequest {
    /// Builds a limit request.
    pub fn new(name: LimitName, rate: Rate, subject: impl Into<String>) -> Self {
        Self {
            name,
            rate,
            subject: subject.into(),
        }
    }

    /// Returns the key under which the limit's state is stored:
    /// `NAME:RATE:SUBJECT`, with a long or unusual subject replaced by its
    /// hash so every key is short and printable. The rate is part of the
    /// key, so a changed rate starts from a full allowance. Otherwise the
    /// hour-long wait left by `2/h` would outlive a change to `100/s`.
    pub fn storage_key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.name,
            self.rate.state_key(),
            bounded_subject(&self.subject)
        )
    }
}

/// Returns `subject` when it is short printable ASCII, and otherwise
/// `sha256:` and the first 128 bits of its SHA-256 in hex.
pub(crate) fn bounded_subject(subject: &str) -> String {
    let plain = subject.len() <= MAX_PLAIN_SUBJECT_LEN
        && !subject.is_empty()
        && subject.bytes().all(|byte| byte.is_ascii_graphic())
        && !subject.starts_with("sha256:");
    if plain {
        return subject.to_owned();
    }
    let digest = sha256(subject.as_bytes());
    let mut text = String::with_capacity(7 + 32);
    text.push_str("sha256:");
    for byte in digest.iter().take(16) {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Prepares the node's one Redis connection when `limits.redis_url` is set.
/// The rate limiter and the brute-force tracker share it, and with it one
/// outage state, so an outage is logged once per node. Redis is not
/// contacted here, so a node starts while Redis is down and uses the
/// failure policy until it is back.
pub fn redis_from_config(
    limits: &crate::config::LimitsConfig,
) -> Result<Option<RedisLimiter>, RedisLimitError> {
    let Some(url) = &limits.redis_url else {
        return Ok(None);
    };
    let options = RedisOptions {
        timeout: limits.redis_timeout,
        ..RedisOptions::default()
    };
    RedisLimiter::new(url.expose(), options).map(Some)
}

/// The rate limiter of a node: in memory, or shared through Redis.
pub enum RateLimiter {
    /// Limits in this process only (no `PORTCULLIS_REDIS_URL`).
    Local(LocalLimiter),
    /// Limits shared through Redis, boxed because the Redis connection and
    /// scripts make it several times larger than the local limiter.
    Shared(Box<SharedLimiter>),
}

impl RateLimiter {
    /// Builds the limiter that `limits` configures: shared through `redis`,
    /// the node's Redis connection, when there is one, and in memory
    /// otherwise.
    pub fn from_config(limits: &crate::config::LimitsConfig, redis: Option<&RedisLimiter>) -> Self {
        match redis {
            Some(redis) => Self::Shared(Box::new(SharedLimiter::new(
                redis.clone(),
                limits.redis_failure,
            ))),
            None => Self::Local(LocalLimiter::default()),
        }
    }

    /// Returns the number of the limiter's Redis calls that failed or timed
    /// out since start, or `None` without Redis.
    pub fn redis_failures(&self) -> Option<u64> {
        match self {
            Self::Local(_) => None,
            Self::Shared(shared) => Some(shared.failures()),
        }
    }

    /// Returns the in-memory limiter: the only one, or Redis's fallback.
    pub fn local(&self) -> &LocalLimiter {
        match self {
            Self::Local(local) => local,
            Self::Shared(shared) => shared.fallback_limiter(),
        }
    }

    /// Returns the Redis connection's health, or `None` without Redis.
    pub fn redis_health(&self) -> Option<&redis::RedisHealth> {
        match self {
            Self::Local(_) => None,
            Self::Shared(shared) => Some(shared.health()),
        }
    }

    /// Checks one request against `limits`; see [`SharedLimiter::check`].
    ///
    /// The in-memory limiter cannot count uses exactly across nodes, so a
    /// check with `uses` returns [`Verdict::Unavailable`] there. The gateway
    /// passes no `uses`: it spends the uses of usage-limited keys in the
    /// store ([`crate::gateway::limits::spend_use`]) on every backend.
    pub async fn check(&self, limits: &[LimitRequest], uses: Option<&UsesLimit>) -> Decision {
        let decision = match self {
            Self::Local(local) if uses.is_none() => local.check(limits),
            Self::Local(_) => redis::unavailable(),
            Self::Shared(shared) => shared.check(limits, uses).await,
        };
        if let Some(metrics) = crate::metrics::get() {
            let rejected_by = match &decision.verdict {
                Verdict::Admitted => None,
                Verdict::Limited { limit, .. } => Some(LimitKind::of_limit(limit.as_str())),
                Verdict::UsesExhausted => Some(LimitKind::Uses),
                Verdict::Unavailable => Some(LimitKind::Unavailable),
            };
            if let Some(kind) = rejected_by {
                metrics.record_rate_limit_rejection(kind);
            }
        }
        decision
    }

    /// Gives one request back to every limit in `limits`, for a request
    /// that [`Self::check`] admitted and that was rejected afterwards, so a
    /// rejected request spends no allowance.
    pub async fn refund(&self, limits: &[LimitRequest]) {
        match self {
            Self::Local(local) => local.refund(limits),
            Self::Shared(shared) => shared.refund(limits).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_subjects_hashed() {
        assert_eq!(bounded_subject("key_0192"), "key_0192");
        let long = "x".repeat(65);
        let hashed = bounded_subject(&long);
        assert!(hashed.starts_with("sha256:"));
        assert_eq!(hashed.len(), 7 + 32);
        assert_ne!(bounded_subject("a b"), "a b");
        assert_ne!(bounded_subject("sha256:00"), "sha256:00");
        assert_eq!(bounded_subject(&long), hashed);
    }
}
