//! Rate limits shared by every node through Redis, and the failure policy
//! that keeps a node serving while Redis is away.
//!
//! One check is one round trip: `limit.lua` reads Redis `TIME` (so the
//! nodes' clocks do not matter), checks every limit of the request, and
//! charges all of them or none, atomically. Each TAT key expires when its
//! allowance is full again, so idle subjects cost Redis nothing.
//!
//! NOTE: the script touches several keys, so on Redis Cluster they must
//! share a hash slot, which this code does not arrange. Use one Redis
//! server, or a primary with replicas.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::{self, RedisComponent, RedisErrorKind};
use crate::ratelimit::LimitRequest;
use crate::ratelimit::decision::{Decision, UsesStatus, Verdict};
use crate::ratelimit::gcra::{Gcra, Outcome};
use crate::ratelimit::local::{LocalLimiter, decide};

/// Default time one Redis call may take before the check gives up on it.
/// It is far above a loopback or same-zone round trip (an estimate: a few
/// milliseconds at most), and short enough that a stalled Redis adds
/// little to a request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(75);

/// Default prefix of every key Portcullis writes to Redis.
pub const DEFAULT_KEY_PREFIX: &str = "portcullis";

/// First wait after a failed Redis call before the next one is tried.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Maximum wait between two attempts while Redis is down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Maximum limits in one check, which bounds the script's work.
pub const MAX_LIMITS_PER_CHECK: usize = 16;

/// The behaviour of a node while Redis cannot be reached (`fallback`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Enforce the limits per node, in memory. Callers then get up to one
    /// allowance per node. The default.
    #[default]
    Local,
    /// Deny every limited request with 503 (fail closed).
    Deny,
}

/// A usage-limited key's counter (`--max-uses`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsesLimit {
    /// The subject of the counter, such as the key id.
    pub subject: String,
    /// The key's maximum uses. A maximum of 0 admits no request.
    pub max: u64,
    /// Uses already recorded in the store. The counter never counts below
    /// it, so a Redis that lost its data does not hand out uses again.
    pub recorded: u64,
}

/// Settings of the Redis connection.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Time one check may take.
    pub timeout: Duration,
    /// Prefix of every key.
    pub key_prefix: String,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }
}

/// A Redis call that failed or timed out.
#[derive(Debug, thiserror::Error)]
pub enum RedisLimitError {
    /// Redis returned an error or the connection failed.
    #[error("redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// No reply within the timeout.
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// The script's reply did not have the expected shape.
    #[error("unexpected reply from the rate limit script")]
    Reply,
    /// More limits than [`MAX_LIMITS_PER_CHECK`].
    #[error("too many limits in one check: {0}, at most {MAX_LIMITS_PER_CHECK}")]
    TooManyLimits(usize),
}

/// GCRA limits and use counters kept in Redis.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: Script,
    refund_script: Script,
    options: RedisOptions,
}

impl RedisLimiter {
    /// Prepares a limiter for the Redis server at `url`
    /// (`redis://host:port/db` or `rediss://` for TLS). It connects on the
    /// first check, so a node starts while Redis is down.
    pub fn new(url: &str, options: RedisOptions) -> Result<Self, RedisLimitError> {
        let client = Client::open(url)?;
        // Our own timeout bounds each call; the manager's reconnect tries
        // stay short and few so a dead server is not hammered.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(MAX_BACKOFF);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            script: Script::new(include_str!("limit.lua")),
            refund_script: Script::new(include_str!("refund.lua")),
            options,
        })
    }

    /// Sends `PING` within the timeout, for a readiness check.
    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("PING");
        tokio::time::timeout(
            self.timeout(),
            command.query_async::<String>(&mut connection),
        )
        .await
        .map_err(|_| RedisLimitError::Timeout(self.timeout()))??;
        Ok(())
    }

    /// Returns the connection, for the brute-force tracker.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Returns the full Redis key of `kind` and `name`.
    pub(crate) fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.options.key_prefix)
    }

    /// Returns the time one call may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// Checks one request against `limits` and, when `uses` is given, the
    /// key's use counter, in one round trip. The request is admitted only
    /// if every limit admits it and a use is left. Only then is it charged
    /// to each limit and counted as a use. A key without uses left gets
    /// [`Verdict::UsesExhausted`] even when a limit denies too, because
    /// waiting for the limit would not help.
    pub async fn check(
        &self,
        limits: &[LimitRequest],
        uses: Option<&UsesLimit>,
    ) -> Result<Decision, RedisLimitError> {
        if limits.len() > MAX_LIMITS_PER_CHECK {
            return Err(RedisLimitError::TooManyLimits(limits.len()));
        }
        // The script reads a maximum of 0 as "no maximum".
        if let Some(uses) = uses
            && uses.max == 0
        {
            return Ok(Decision {
                verdict: Verdict::UsesExhausted,
                limits: Vec::new(),
                uses: Some(UsesStatus {
                    used: uses.recorded,
                    max: 0,
                }),
            });
        }
        let mut invocation = self.script.prepare_invoke();
        for limit in limits {
            invocation.key(self.key("rl", &limit.storage_key()));
        }
        invocation
            .arg(limits.len())
            .arg(uses.map_or(0, |uses| uses.max))
            .arg(uses.map_or(0, |uses| uses.recorded));
        if let Some(uses) = uses {
            invocation.key(self.key("uses", &super::bounded_subject(&uses.subject)));
        }
        for limit in limits {
            let gcra = Gcra::new(&limit.rate);
            invocation.arg(gcra.emission_interval).arg(gcra.burst);
        }

        let mut connection = self.connection.clone();
        let reply: Vec<i64> =
            tokio::time::timeout(self.timeout(), invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| RedisLimitError::Timeout(self.timeout()))??;
        parse_reply(limits, uses, &reply)
    }

    /// Gives one request back to every limit in `limits`, in one round
    /// trip, for a request that [`Self::check`] admitted and that was
    /// rejected afterwards.
    pub async fn refund(&self, limits: &[LimitRequest]) -> Result<(), RedisLimitError> {
        if limits.len() > MAX_LIMITS_PER_CHECK {
            return Err(RedisLimitError::TooManyLimits(limits.len()));
        }
        let mut invocation = self.refund_script.prepare_invoke();
        for limit in limits {
            invocation
                .key(self.key("rl", &limit.storage_key()))
                .arg(Gcra::new(&limit.rate).emission_interval);
        }
        let mut connection = self.connection.clone();
        let _: i64 = tokio::time::timeout(self.timeout(), invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| RedisLimitError::Timeout(self.timeout()))??;
        Ok(())
    }
}

/// Turns the script's reply into a decision.
fn parse_reply(
    limits: &[LimitRequest],
    uses: Option<&UsesLimit>,
    reply: &[i64],
) -> Result<Decision, RedisLimitError> {
    let number = |index: usize| -> Result<u64, RedisLimitError> {
        let value = reply.get(index).ok_or(RedisLimitError::Reply)?;
        u64::try_from(*value).map_err(|_| RedisLimitError::Reply)
    };
    if reply.len() != 2 + 5 * limits.len() {
        return Err(RedisLimitError::Reply);
    }
    let mut outcomes = Vec::with_capacity(limits.len());
    for (index, limit) in limits.iter().enumerate() {
        let base = 2 + 5 * index;
        let gcra = Gcra::new(&limit.rate);
        let outcome = if number(base)? == 1 {
            Outcome::Admit {
                new_tat: 0,
                remaining: number(base + 1)?,
                reset: number(base + 2)?,
            }
        } else {
            Outcome::Deny {
                retry_after: number(base + 3)?,
                reset: number(base + 2)?,
            }
        };
        outcomes.push((gcra, number(base + 4)?, outcome));
    }

    let verdict = number(0)?;
    let uses_exhausted = verdict == 2;
    let mut decision = decide(limits, &outcomes, uses_exhausted);
    if uses_exhausted {
        decision.verdict = Verdict::UsesExhausted;
    } else if (verdict == 1) != decision.is_admitted() {
        return Err(RedisLimitError::Reply);
    }
    decision.uses = uses.map(|uses| UsesStatus {
        used: number(1).unwrap_or(0),
        max: uses.max,
    });
    Ok(decision)
}

/// Rate limits through Redis, with a fallback while Redis is away.
///
/// See [`RedisHealth`] for when Redis is tried again and what is logged.
pub struct SharedLimiter {
    redis: RedisLimiter,
    local: LocalLimiter,
    policy: FailurePolicy,
    health: RedisHealth,
}

impl SharedLimiter {
    /// Combines a Redis limiter with the fallback `policy`.
    pub fn new(redis: RedisLimiter, policy: FailurePolicy) -> Self {
        let fallback = match policy {
            FailurePolicy::Local => "enforcing rate limits per node until it is back",
            FailurePolicy::Deny => "denying rate-limited requests until it is back",
        };
        Self {
            redis,
            local: LocalLimiter::default(),
            policy,
            health: RedisHealth::new(RedisComponent::RateLimit, fallback),
        }
    }

    /// Returns the local limiter used as the fallback, for its eviction
    /// timer.
    pub fn fallback_limiter(&self) -> &LocalLimiter {
        &self.local
    }

    /// Returns the state of the Redis connection and its failure count.
    pub fn health(&self) -> &RedisHealth {
        &self.health
    }

    /// Checks one request, through Redis when it replies and by the
    /// failure policy when not. A usage-limited key (`uses`) is denied with
    /// [`Verdict::Unavailable`] while Redis is away, whatever the policy,
    /// because one node alone cannot keep its count exact.
    ///
    /// More than [`MAX_LIMITS_PER_CHECK`] limits is a configuration error,
    /// not a Redis failure: it is logged and the request is denied with
    /// [`Verdict::Unavailable`].
    pub async fn check(&self, limits: &[LimitRequest], uses: Option<&UsesLimit>) -> Decision {
        if limits.len() > MAX_LIMITS_PER_CHECK {
            tracing::error!(
                limits = limits.len(),
                max = MAX_LIMITS_PER_CHECK,
                "too many rate limits apply to one request; denying it"
            );
            return unavailable();
        }
        if self.health.may_call() {
            let started = Instant::now();
            let checked = self.redis.check(limits, uses).await;
            self.health.record_latency(started.elapsed());
            match checked {
                Ok(decision) => {
                    self.health.record_success();
                    return decision;
                }
                Err(error) => self.health.record_failure(&error),
            }
        }
        self.health.record_fallback();
        match (self.policy, uses) {
            (FailurePolicy::Local, None) => self.local.check(limits),
            _ => unavailable(),
        }
    }
}

impl SharedLimiter {
    /// Gives one request back to every limit in `limits`: in Redis while it
    /// is in use, and in the fallback while it is away.
    ///
    /// NOTE: a request checked just before an outage began or ended is
    /// given back to the other backend, which leaves the real one charged.
    /// The error is then at most one request per rejection during the
    /// switch.
    pub async fn refund(&self, limits: &[LimitRequest]) {
        if !self.health.is_up() {
            self.local.refund(limits);
            return;
        }
        let started = Instant::now();
        let refunded = self.redis.refund(limits).await;
        self.health.record_latency(started.elapsed());
        match refunded {
            Ok(()) => self.health.record_success(),
            Err(error) => self.health.record_failure(&error),
        }
    }
}

/// Returns the decision of a request that cannot be checked.
pub(crate) fn unavailable() -> Decision {
    Decision {
        verdict: Verdict::Unavailable,
        limits: Vec::new(),
        uses: None,
    }
}

/// Whether Redis is in use, with the backoff and logging of an outage.
///
/// A failed call starts a backoff of [`FIRST_BACKOFF`]; while it runs,
/// callers skip Redis. When it ends, one caller tries Redis again (the
/// others keep skipping it). The first success ends the outage, and each
/// failed try doubles the backoff, up to [`MAX_BACKOFF`]. Calls that were
/// already under way when the outage began do not extend it. The start and the end of an outage are logged
/// once each, and every failed call is counted.
pub struct RedisHealth {
    state: Mutex<HealthState>,
    failures: AtomicU64,
    /// The component that calls Redis, for the metrics.
    component: RedisComponent,
    /// The component's behaviour during an outage, for the log line.
    fallback: &'static str,
}

#[derive(Debug)]
struct HealthState {
    down_since: Option<Instant>,
    next_attempt: Instant,
    backoff: Duration,
    /// Whether a caller is trying Redis again during an outage.
    probing: bool,
}

impl RedisHealth {
    /// Starts healthy. `fallback` describes the component's behaviour
    /// during an outage, for the log line.
    pub fn new(component: RedisComponent, fallback: &'static str) -> Self {
        if let Some(metrics) = metrics::get() {
            metrics.record_redis_state(component, true);
        }
        Self {
            state: Mutex::new(HealthState {
                down_since: None,
                next_attempt: Instant::now(),
                backoff: FIRST_BACKOFF,
                probing: false,
            }),
            failures: AtomicU64::new(0),
            component,
            fallback,
        }
    }

    /// Records the duration of one Redis call.
    pub fn record_latency(&self, elapsed: Duration) {
        if let Some(metrics) = metrics::get() {
            metrics.record_redis_call(self.component, elapsed);
        }
    }

    /// Counts a check decided without Redis, during an outage.
    pub fn record_fallback(&self) {
        if let Some(metrics) = metrics::get() {
            metrics.record_redis_fallback(self.component);
        }
    }

    /// Returns the number of Redis calls that failed or timed out since
    /// start, for the metrics endpoint.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Returns whether calls currently go to Redis.
    pub fn is_up(&self) -> bool {
        self.lock().down_since.is_none()
    }

    /// Returns whether this caller should call Redis: always while it is
    /// up, and one caller per backoff period while it is down.
    pub fn may_call(&self) -> bool {
        let mut state = self.lock();
        if state.down_since.is_none() {
            return true;
        }
        let now = Instant::now();
        if now < state.next_attempt {
            return false;
        }
        // This caller is the probe; the others skip Redis until it returns.
        state.next_attempt = now + state.backoff;
        state.probing = true;
        true
    }

    /// Ends an outage, logging it once.
    pub fn record_success(&self) {
        let mut state = self.lock();
        if let Some(since) = state.down_since.take() {
            if let Some(metrics) = metrics::get() {
                metrics.record_redis_state(self.component, true);
            }
            tracing::info!(
                outage_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                fallback = self.fallback,
                "redis is reachable again; shared limits are back in use"
            );
        }
        state.backoff = FIRST_BACKOFF;
        state.probing = false;
    }

    /// Counts a failed call, starts or extends the backoff, and logs the
    /// start of an outage once.
    pub fn record_failure(&self, error: &RedisLimitError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let metrics = metrics::get();
        if let Some(metrics) = metrics {
            let kind = match error {
                RedisLimitError::Timeout(_) => RedisErrorKind::Timeout,
                RedisLimitError::Reply | RedisLimitError::TooManyLimits(_) => RedisErrorKind::Reply,
                RedisLimitError::Redis(_) => RedisErrorKind::Error,
            };
            metrics.record_redis_error(self.component, kind);
        }
        let mut state = self.lock();
        let now = Instant::now();
        if state.down_since.is_none() {
            if let Some(metrics) = metrics {
                metrics.record_redis_state(self.component, false);
            }
            state.down_since = Some(now);
            state.backoff = FIRST_BACKOFF;
            tracing::warn!(error = %error, fallback = self.fallback, "redis is unreachable");
            state.next_attempt = now + state.backoff;
        } else if state.probing {
            state.probing = false;
            state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            state.next_attempt = now + state.backoff;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        // Plain timestamps: a panic elsewhere cannot leave them half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> RedisLimitError {
        RedisLimitError::Timeout(DEFAULT_TIMEOUT)
    }

    #[tokio::test(start_paused = true)]
    async fn outage_backs_off_with_one_probe() {
        let health = RedisHealth::new(RedisComponent::RateLimit, "testing");
        assert!(health.may_call());

        // Three calls under way when Redis goes away: one outage, counted
        // three times, with the first backoff.
        health.record_failure(&failure());
        health.record_failure(&failure());
        health.record_failure(&failure());
        assert!(!health.is_up());
        assert_eq!(health.failures(), 3);
        assert!(!health.may_call());

        // One probe when the backoff ends; the others keep skipping Redis.
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(health.may_call());
        assert!(!health.may_call());

        // A failed probe doubles the backoff.
        health.record_failure(&failure());
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(!health.may_call());
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(health.may_call());

        health.record_success();
        assert!(health.is_up());
        assert!(health.may_call());
        assert!(health.may_call());
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_stops_at_maximum() {
        let health = RedisHealth::new(RedisComponent::RateLimit, "testing");
        health.record_failure(&failure());
        for _ in 0..10 {
            tokio::time::advance(MAX_BACKOFF).await;
            assert!(health.may_call());
            health.record_failure(&failure());
        }
        tokio::time::advance(MAX_BACKOFF).await;
        assert!(health.may_call());
    }
}
