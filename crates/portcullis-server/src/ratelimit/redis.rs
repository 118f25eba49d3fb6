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

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::RedisComponent;
use crate::ratelimit::LimitRequest;
use crate::ratelimit::decision::{Decision, UsesStatus, Verdict};
use crate::ratelimit::gcra::{Gcra, Outcome};
use crate::ratelimit::health::ProbeStep;
pub use crate::ratelimit::health::{FIRST_BACKOFF, MAX_BACKOFF, RedisHealth};
use crate::ratelimit::local::{LocalLimiter, decide};

/// Default time one Redis call may take before the check gives up on it
/// (`limits.redis_timeout_ms`). It is far above a loopback or same-zone
/// round trip (an estimate: a few milliseconds at most), with room for a
/// loaded host, where 75 ms made a healthy Redis look down several times
/// a minute.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// Shortest accepted call timeout.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(10);

/// Longest accepted call timeout. A longer one would hold every limited
/// request that long while Redis stalls.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(5);

/// Default prefix of every key Portcullis writes to Redis.
pub const DEFAULT_KEY_PREFIX: &str = "portcullis";

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

/// GCRA limits and use counters kept in Redis, on one connection.
///
/// Clones share the connection and its [`RedisHealth`], so a node builds
/// one and hands clones to each component that calls Redis.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    script: Script,
    refund_script: Script,
    options: RedisOptions,
    health: Arc<RedisHealth>,
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
            health: Arc::new(RedisHealth::new()),
        })
    }

    /// Sends `PING` within the timeout, for a readiness check.
    pub async fn ping(&self) -> Result<(), RedisLimitError> {
        ping(self.connection.clone(), self.timeout()).await
    }

    /// Returns the health of the connection, which every clone shares.
    pub fn health(&self) -> &RedisHealth {
        &self.health
    }

    /// Counts a failed call of `component` and, when an outage begins,
    /// starts the background probe that ends it once Redis replies again,
    /// with or without requests.
    pub(crate) fn record_failure(&self, component: RedisComponent, error: &RedisLimitError) {
        if self.health.record_failure(component, error) {
            self.start_prober();
        }
    }

    fn start_prober(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.health.prober_stopped();
            return;
        };
        // The task keeps only a weak reference to the health, so it ends with the node.
        runtime.spawn(probe_until_logged(
            Arc::downgrade(&self.health),
            self.connection.clone(),
            self.timeout(),
        ));
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

/// Sends `PING` on `connection`, waiting at most `timeout`.
async fn ping(mut connection: ConnectionManager, timeout: Duration) -> Result<(), RedisLimitError> {
    let command = redis::cmd("PING");
    tokio::time::timeout(timeout, command.query_async::<String>(&mut connection))
        .await
        .map_err(|_| RedisLimitError::Timeout(timeout))??;
    Ok(())
}

/// Pings Redis on the backoff schedule while it is down, so the node
/// returns to shared limits (and `/readyz` reports it) without waiting for
/// a request. The task also logs the outages that the log interval held
/// back, and ends when Redis is up and every outage is logged.
async fn probe_until_logged(
    health: Weak<RedisHealth>,
    connection: ConnectionManager,
    timeout: Duration,
) {
    loop {
        let Some(strong) = health.upgrade() else {
            return;
        };
        match strong.next_probe_step() {
            ProbeStep::Stop => return,
            ProbeStep::WaitUntil(wake) => {
                // An outage that begins during a wait for a report wakes
                // the task early, so its probes start on time.
                let outage_began = strong.outage_notify();
                drop(strong);
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    () = outage_began.notified() => {}
                }
            }
            ProbeStep::Probe => {
                let started = Instant::now();
                match ping(connection.clone(), timeout).await {
                    Ok(()) => strong.record_success(started),
                    // The probe is no component's call, so it extends the
                    // backoff without counting in the error metrics.
                    Err(error) => {
                        let _ = strong.record_outage(&error);
                    }
                }
            }
        }
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
}

impl SharedLimiter {
    /// Combines a Redis limiter with the fallback `policy`.
    pub fn new(redis: RedisLimiter, policy: FailurePolicy) -> Self {
        let fallback = match policy {
            FailurePolicy::Local => "rate limits enforced per node",
            FailurePolicy::Deny => "rate-limited requests denied with 503",
        };
        redis.health().register(RedisComponent::RateLimit, fallback);
        Self {
            redis,
            local: LocalLimiter::default(),
            policy,
        }
    }

    /// Returns the local limiter used as the fallback, for its eviction
    /// timer.
    pub fn fallback_limiter(&self) -> &LocalLimiter {
        &self.local
    }

    /// Returns the state of the Redis connection and its failure counts.
    pub fn health(&self) -> &RedisHealth {
        self.redis.health()
    }

    /// Returns the number of rate-limit calls to Redis that failed or timed
    /// out since start.
    pub fn failures(&self) -> u64 {
        self.health().failures(RedisComponent::RateLimit)
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
        let health = self.health();
        if health.may_call() {
            let started = Instant::now();
            let checked = self.redis.check(limits, uses).await;
            health.record_latency(RedisComponent::RateLimit, started.elapsed());
            match checked {
                Ok(decision) => {
                    health.record_success(started);
                    return decision;
                }
                Err(error) => self.redis.record_failure(RedisComponent::RateLimit, &error),
            }
        }
        health.record_fallback(RedisComponent::RateLimit);
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
        let health = self.health();
        if !health.is_up() {
            self.local.refund(limits);
            return;
        }
        let started = Instant::now();
        let refunded = self.redis.refund(limits).await;
        health.record_latency(RedisComponent::RateLimit, started.elapsed());
        match refunded {
            Ok(()) => health.record_success(started),
            Err(error) => self.redis.record_failure(RedisComponent::RateLimit, &error),
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
