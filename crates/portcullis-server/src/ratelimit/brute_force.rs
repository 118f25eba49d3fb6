//! Brute-force protection: failed authentications are counted per client
//! address and per targeted identity (key prefix, client id, user).
//!
//! Within a window, a subject's first failures cost nothing. From
//! `slow_after` failures on, its next attempts are delayed by a time that
//! doubles with each failure. At `block_after` failures the subject is
//! blocked, for `first_block` the first time and twice as long for each
//! block in a row, up to `max_block`. The caller responds with 429 and the
//! time left of the block as `Retry-After`. Time forgives: the count starts again
//! after a quiet window, and the streak of blocks after a window plus the
//! longest block. A success forgives neither subject. An attacker could
//! otherwise clear an address's count by signing in to an account of their
//! own between guesses, and the owner of a key or client id would lift the
//! block and streak that guesses from other addresses built.
//!
//! An address's delay is waited out before the credential is checked. An
//! identity's delay is waited out after the check failed
//! ([`BruteForceTracker::record_failure`]), so the right credential is never
//! slowed, while guesses spread over many addresses are.
//!
//! Subjects are counted apart: a blocked address does not block other
//! addresses, and other callers' correct credentials are not affected. A
//! blocked user identity does stop its own owner until the block ends, which
//! is the price of stopping a password guessing attack spread over many
//! addresses. Callers check key prefixes and client ids only after the
//! credential, so their right credential passes a block.
//!
//! The local and the Redis tracker follow the same rules ([`verdict`] and
//! [`apply_failure`] here, `brute_force.lua` in Redis).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use crate::metrics::RedisComponent;
use crate::ratelimit::bounded_subject;
use crate::ratelimit::redis::{RedisHealth, RedisLimitError, RedisLimiter};

/// Maximum records the local tracker keeps. A record is under 150 bytes
/// with its key (an estimate), so this bounds it near 30 MB.
pub const MAX_RECORDS: usize = 200_000;

/// The thresholds of one kind of subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Failures within the window after which attempts are delayed.
    pub slow_after: u32,
    /// Failures within the window that start a block.
    pub block_after: u32,
    /// The period failures are counted over.
    pub window: Duration,
    /// The first block; each further block in a row doubles it.
    pub first_block: Duration,
    /// The maximum block.
    pub max_block: Duration,
    /// The first delay; each further failure doubles it.
    pub delay_step: Duration,
    /// The maximum delay.
    pub max_delay: Duration,
}

/// The thresholds per kind of subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BruteForcePolicy {
    /// For client addresses. Higher than for identities, because many
    /// users can share one address behind a NAT gateway.
    pub client_ip: Thresholds,
    /// For targeted identities.
    pub identity: Thresholds,
}

impl Default for BruteForcePolicy {
    /// Thresholds that let a person mistype a few times, block an address
    /// after 20 failures in 5 minutes, and block no subject for more than
    /// an hour.
    fn default() -> Self {
        let shared = Thresholds {
            slow_after: 5,
            block_after: 20,
            window: Duration::from_secs(5 * 60),
            first_block: Duration::from_secs(60),
            max_block: Duration::from_secs(60 * 60),
            delay_step: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
        };
        Self {
            client_ip: shared,
            identity: Thresholds {
                slow_after: 3,
                block_after: 10,
                window: Duration::from_secs(15 * 60),
                ..shared
            },
        }
    }
}

/// A subject that failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The resolved client address.
    ClientIp(IpAddr),
    /// The credential or account the request names: a key's visible prefix
    /// or id, an OAuth client id, a user's e-mail address.
    Identity(String),
}

impl Subject {
    fn storage_key(&self) -> String {
        match self {
            // The IPv4-mapped IPv6 form of an address is the same client.
            // An IPv6 client is counted by its /64, because a subscriber is
            // usually given at least a whole /64 and could otherwise start
            // afresh from each of its addresses.
            Self::ClientIp(address) => match address.to_canonical() {
                IpAddr::V6(v6) => {
                    let segments = v6.segments();
                    format!(
                        "ip:{:x}:{:x}:{:x}:{:x}::/64",
                        segments[0], segments[1], segments[2], segments[3]
                    )
                }
                v4 @ IpAddr::V4(_) => format!("ip:{v4}"),
            },
            Self::Identity(identity) => format!("id:{}", bounded_subject(identity)),
        }
    }

    fn thresholds<'a>(&self, policy: &'a BruteForcePolicy) -> &'a Thresholds {
        match self {
            Self::ClientIp(_) => &policy.client_ip,
            Self::Identity(_) => &policy.identity,
        }
    }
}

/// Whether an authentication attempt may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Admission {
    /// Go ahead.
    Allow,
    /// Go ahead after waiting this long.
    Delay(Duration),
    /// Respond with 429 and `Retry-After` set to this time, rounded up.
    Blocked(Duration),
}

impl Admission {
    /// Returns the `Retry-After` value of a block in whole seconds, rounded
    /// up so a client that waits that long is no longer blocked.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        let Self::Blocked(left) = self else {
            return None;
        };
        let whole = left.as_secs();
        Some(if left.subsec_nanos() > 0 {
            whole + 1
        } else {
            whole
        })
    }
}

/// The failures of one subject, with times in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Failures since `window_start`.
    pub failures: u64,
    /// Start of the current window.
    pub window_start: u64,
    /// Blocks in a row.
    pub streak: u64,
    /// End of the current block; 0 when never blocked.
    pub blocked_until: u64,
    /// Time of the last failure.
    pub last_failure: u64,
}

/// Returns the admission of a subject with `record` at `now`.
pub fn verdict(record: &Record, now: u64, thresholds: &Thresholds) -> Admission {
    if record.blocked_until > now {
        return Admission::Blocked(Duration::from_micros(record.blocked_until - now));
    }
    let in_window = now.saturating_sub(record.window_start) < micros(thresholds.window);
    let slow_after = u64::from(thresholds.slow_after);
    if in_window && record.failures >= slow_after {
        let delay = doubled(
            micros(thresholds.delay_step),
            record.failures - slow_after,
            micros(thresholds.max_delay),
        );
        return Admission::Delay(Duration::from_micros(delay));
    }
    Admission::Allow
}

/// Returns `record` after one more failure at `now`.
pub fn apply_failure(record: &Record, now: u64, thresholds: &Thresholds) -> Record {
    let window = micros(thresholds.window);
    let max_block = micros(thresholds.max_block);
    let mut next = *record;
    if now.saturating_sub(next.window_start) >= window {
        next.failures = 0;
        next.window_start = now;
    }
    if now.saturating_sub(next.last_failure) >= window.saturating_add(max_block) {
        next.streak = 0;
    }
    next.last_failure = now;
    next.failures += 1;
    if next.failures >= u64::from(thresholds.block_after) {
        let block = doubled(micros(thresholds.first_block), next.streak, max_block);
        next.blocked_until = now.saturating_add(block);
        next.streak += 1;
        next.failures = 0;
        next.window_start = now;
    }
    next
}

/// Returns `base × 2^times`, at most `max`.
fn doubled(base: u64, times: u64, max: u64) -> u64 {
    if times >= 62 {
        return max;
    }
    base.saturating_mul(1 << times).min(max)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Returns the strictest of several admissions: a block over a delay over
/// no delay, and the longest of each.
fn strictest(admissions: impl IntoIterator<Item = Admission>) -> Admission {
    admissions.into_iter().max().unwrap_or(Admission::Allow)
}

/// Failed authentication counts, in memory or in Redis. While Redis is
/// away the local records count, whatever the rate limits' fallback:
/// denying every authentication would turn a Redis outage into a full one.
pub struct BruteForceTracker {
    local: LocalTracker,
    redis: Option<SharedTracker>,
}

impl BruteForceTracker {
    /// Builds a tracker that counts in this process only.
    pub fn local(policy: BruteForcePolicy) -> Self {
        Self {
            local: LocalTracker::new(policy),
            redis: None,
        }
    }

    /// Builds a tracker that counts in Redis, on `redis`'s connection.
    pub fn shared(redis: RedisLimiter, policy: BruteForcePolicy) -> Self {
        Self {
            local: LocalTracker::new(policy),
            redis: Some(SharedTracker::new(redis, policy)),
        }
    }

    /// Builds the tracker that `limits` configures: counting in `redis`,
    /// the node's Redis connection, when there is one, and in this process
    /// otherwise.
    pub fn from_config(limits: &crate::config::LimitsConfig, redis: Option<&RedisLimiter>) -> Self {
        match redis {
            Some(redis) => Self::shared(redis.clone(), limits.brute_force),
            None => Self::local(limits.brute_force),
        }
    }

    /// Returns the state of the Redis connection, when the tracker uses one.
    pub fn redis_health(&self) -> Option<&RedisHealth> {
        self.redis.as_ref().map(|shared| shared.redis.health())
    }

    /// Returns the number of the tracker's Redis calls that failed or timed
    /// out since start, when it uses Redis.
    pub fn redis_failures(&self) -> Option<u64> {
        self.redis_health()
            .map(|health| health.failures(RedisComponent::BruteForce))
    }

    /// Returns whether an attempt naming `subjects` may go ahead.
    pub async fn check(&self, subjects: &[Subject]) -> Admission {
        if let Some(shared) = &self.redis
            && let Some(admissions) = shared.call("check", subjects).await
        {
            return strictest(admissions);
        }
        self.local.check(subjects)
    }

    /// Checks `subjects` before a credential is verified, so a blocked source
    /// costs no hashing. Waits out a delay, and returns a block's
    /// `Retry-After` in whole seconds, at least 1, as the error.
    pub async fn admit(&self, subjects: &[Subject]) -> Result<(), u64> {
        self.wait_or_reject(self.check(subjects).await).await
    }

    /// Waits out a delay, or returns a block's `Retry-After` in whole
    /// seconds, at least 1, as the error.
    async fn wait_or_reject(&self, admission: Admission) -> Result<(), u64> {
        match admission {
            Admission::Allow => Ok(()),
            Admission::Delay(wait) => {
                wait_out(wait).await;
                Ok(())
            }
            blocked @ Admission::Blocked(_) => {
                if let Some(metrics) = crate::metrics::get() {
                    metrics.record_brute_force_block();
                }
                Err(blocked.retry_after_seconds().unwrap_or(1).max(1))
            }
        }
    }

    /// Counts a failed attempt against each of `subjects`, and returns the
    /// admission that the attempt had before it was counted. When one of
    /// the subjects is blocked, nothing is counted and the block is
    /// returned: parallel attempts that all passed [`Self::admit`] before
    /// the first of them failed get the block as their response, and cannot
    /// start a second, longer one.
    ///
    /// Otherwise waits out the longest delay of an identity among
    /// `subjects` before returning, so the failure's response is slowed.
    /// The address's delay is not waited again, because [`Self::admit`]
    /// waited it out before the credential was checked.
    ///
    /// Every caller responds to a returned block with 429, so the block is
    /// counted in the metrics here.
    pub async fn record_failure(&self, subjects: &[Subject]) -> Admission {
        let admissions = self.count_failure(subjects).await;
        let admission = strictest(admissions.iter().copied());
        if matches!(admission, Admission::Blocked(_)) {
            if let Some(metrics) = crate::metrics::get() {
                metrics.record_brute_force_block();
            }
            return admission;
        }
        let identity_delay = subjects
            .iter()
            .zip(&admissions)
            .filter(|(subject, _)| matches!(subject, Subject::Identity(_)))
            .filter_map(|(_, admission)| match admission {
                Admission::Delay(wait) => Some(*wait),
                Admission::Allow | Admission::Blocked(_) => None,
            })
            .max();
        if let Some(wait) = identity_delay {
            wait_out(wait).await;
        }
        admission
    }

    /// Counts a failed attempt as [`Self::record_failure`] does, without
    /// waiting or the metrics, and returns the admission of each subject
    /// before it was counted, in the order of `subjects`.
    async fn count_failure(&self, subjects: &[Subject]) -> Vec<Admission> {
        if let Some(shared) = &self.redis
            && let Some(admissions) = shared.call("fail", subjects).await
        {
            return admissions;
        }
        self.local.count_failure(subjects)
    }

    /// Counts an attempt as failed before its credential is checked, so
    /// that parallel attempts cannot all be checked before the first
    /// failure is counted. Waits out a delay, and returns a block's
    /// `Retry-After` in whole seconds as the error. After a success, the
    /// caller gives the count back with [`Self::refund`].
    pub async fn reserve(&self, subjects: &[Subject]) -> Result<(), u64> {
        let admissions = self.count_failure(subjects).await;
        self.wait_or_reject(strictest(admissions)).await
    }

    /// Takes back one failure counted by [`Self::reserve`] from each of
    /// `subjects`, after the attempt succeeded.
    pub async fn refund(&self, subjects: &[Subject]) {
        self.local.refund(subjects);
        if let Some(shared) = &self.redis {
            let _ = shared.call("refund", subjects).await;
        }
    }
}

/// Sleeps for a brute-force delay and counts it in the metrics.
async fn wait_out(wait: Duration) {
    if let Some(metrics) = crate::metrics::get() {
        metrics.record_brute_force_delay();
    }
    tokio::time::sleep(wait).await;
}

/// Failure records in this process's memory.
pub struct LocalTracker {
    policy: BruteForcePolicy,
    records: Mutex<HashMap<String, Record>>,
    epoch: Instant,
}

impl LocalTracker {
    /// Builds an empty tracker.
    pub fn new(policy: BruteForcePolicy) -> Self {
        Self {
            policy,
            records: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    /// Returns whether an attempt naming `subjects` may go ahead.
    pub fn check(&self, subjects: &[Subject]) -> Admission {
        let now = self.now();
        let records = self.lock();
        strictest(subjects.iter().map(|subject| {
            let record = records
                .get(&subject.storage_key())
                .copied()
                .unwrap_or_default();
            verdict(&record, now, subject.thresholds(&self.policy))
        }))
    }

    /// Counts a failure against each subject, unless one is blocked, and
    /// returns the strictest admission the attempt had before it was
    /// counted; see [`BruteForceTracker::record_failure`].
    pub fn record_failure(&self, subjects: &[Subject]) -> Admission {
        strictest(self.count_failure(subjects))
    }

    /// Counts a failure as [`Self::record_failure`] does, and returns the
    /// admission of each subject before it was counted, in order.
    pub fn count_failure(&self, subjects: &[Subject]) -> Vec<Admission> {
        let now = self.now();
        let mut records = self.lock();
        if records.len() >= MAX_RECORDS {
            self.forget_stale(&mut records, now);
        }
        let before: Vec<Admission> = subjects
            .iter()
            .map(|subject| {
                let record = records
                    .get(&subject.storage_key())
                    .copied()
                    .unwrap_or_default();
                verdict(&record, now, subject.thresholds(&self.policy))
            })
            .collect();
        if before
            .iter()
            .any(|admission| matches!(admission, Admission::Blocked(_)))
        {
            return before;
        }
        for subject in subjects {
            let thresholds = subject.thresholds(&self.policy);
            let record = records.entry(subject.storage_key()).or_insert(Record {
                window_start: now,
                last_failure: now,
                ..Record::default()
            });
            *record = apply_failure(record, now, thresholds);
        }
        before
    }

    /// Takes back one failure from each subject that has one.
    pub fn refund(&self, subjects: &[Subject]) {
        let mut records = self.lock();
        for subject in subjects {
            if let Some(record) = records.get_mut(&subject.storage_key()) {
                record.failures = record.failures.saturating_sub(1);
            }
        }
    }

    /// Drops records that no longer affect a decision. When every record
    /// still does, drops the one whose last failure is oldest among those
    /// not blocked, so a flood of new subjects cannot lift a block.
    fn forget_stale(&self, records: &mut HashMap<String, Record>, now: u64) {
        let longest = micros(
            self.policy
                .client_ip
                .window
                .max(self.policy.identity.window),
        )
        .saturating_add(micros(
            self.policy
                .client_ip
                .max_block
                .max(self.policy.identity.max_block),
        ));
        records.retain(|_, record| {
            record.blocked_until > now || now.saturating_sub(record.last_failure) < longest
        });
        if records.len() < MAX_RECORDS {
            return;
        }
        let oldest = records
            .iter()
            .filter(|(_, record)| record.blocked_until <= now)
            .min_by_key(|(_, record)| record.last_failure)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            records.remove(&oldest);
        }
    }

    fn now(&self) -> u64 {
        micros(self.epoch.elapsed()).saturating_add(1)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        // Plain counters: a panic elsewhere cannot leave them half-written.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Failure records in Redis, so every node counts the failures of all nodes.
struct SharedTracker {
    redis: RedisLimiter,
    script: Script,
    policy: BruteForcePolicy,
}

impl SharedTracker {
    fn new(redis: RedisLimiter, policy: BruteForcePolicy) -> Self {
        redis.health().register(
            RedisComponent::BruteForce,
            "failed authentications counted per node",
        );
        Self {
            redis,
            script: Script::new(include_str!("brute_force.lua")),
            policy,
        }
    }

    /// Runs the script and returns the admission of each subject, or `None`
    /// when Redis is skipped or fails.
    async fn call(&self, operation: &str, subjects: &[Subject]) -> Option<Vec<Admission>> {
        if subjects.is_empty() {
            return None;
        }
        let health = self.redis.health();
        if !health.may_call() {
            health.record_fallback(RedisComponent::BruteForce);
            return None;
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(operation);
        for subject in subjects {
            let thresholds = subject.thresholds(&self.policy);
            invocation
                .key(self.redis.key("bf", &subject.storage_key()))
                .arg(thresholds.slow_after)
                .arg(thresholds.block_after)
                .arg(micros(thresholds.window))
                .arg(micros(thresholds.first_block))
                .arg(micros(thresholds.max_block))
                .arg(micros(thresholds.delay_step))
                .arg(micros(thresholds.max_delay));
        }
        let mut connection = self.redis.connection();
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.redis.timeout(),
            invocation.invoke_async::<Vec<i64>>(&mut connection),
        )
        .await;
        health.record_latency(RedisComponent::BruteForce, started.elapsed());
        let failure = match result {
            Ok(Ok(reply)) => match parse_admissions(&reply, subjects.len()) {
                Some(admissions) => {
                    health.record_success(started);
                    return Some(admissions);
                }
                None => RedisLimitError::Reply,
            },
            Ok(Err(error)) => RedisLimitError::Redis(error),
            Err(_) => RedisLimitError::Timeout(self.redis.timeout()),
        };
        self.redis
            .record_failure(RedisComponent::BruteForce, &failure);
        health.record_fallback(RedisComponent::BruteForce);
        None
    }
}

fn parse_admissions(reply: &[i64], subjects: usize) -> Option<Vec<Admission>> {
    if reply.len() != 2 * subjects {
        return None;
    }
    let mut admissions = Vec::with_capacity(subjects);
    for pair in reply.chunks_exact(2) {
        let [kind, value] = pair else {
            return None;
        };
        let time = Duration::from_micros(u64::try_from(*value).ok()?);
        admissions.push(match kind {
            0 => Admission::Allow,
            1 => Admission::Delay(time),
            2 => Admission::Blocked(time),
            _ => return None,
        });
    }
    Some(admissions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    fn thresholds() -> Thresholds {
        Thresholds {
            slow_after: 2,
            block_after: 5,
            window: Duration::from_secs(60),
            first_block: Duration::from_secs(10),
            max_block: Duration::from_secs(30),
            delay_step: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
        }
    }

    #[test]
    fn failures_slow_then_block() {
        let limits = thresholds();
        let mut record = Record {
            window_start: SECOND,
            last_failure: SECOND,
            ..Record::default()
        };
        let now = 2 * SECOND;
        let mut seen = Vec::new();
        for _ in 0..5 {
            record = apply_failure(&record, now, &limits);
            seen.push(verdict(&record, now, &limits));
        }
        assert_eq!(
            seen,
            [
                Admission::Allow,
                Admission::Delay(Duration::from_millis(100)),
                Admission::Delay(Duration::from_millis(200)),
                Admission::Delay(Duration::from_millis(250)),
                Admission::Blocked(Duration::from_secs(10)),
            ]
        );
        assert_eq!(
            verdict(&record, now + 10 * SECOND, &limits),
            Admission::Allow
        );
    }

    #[test]
    fn blocks_in_a_row_double_to_cap() {
        let limits = thresholds();
        let mut record = Record::default();
        let mut now = SECOND;
        let mut blocks = Vec::new();
        for _ in 0..4 {
            for _ in 0..5 {
                record = apply_failure(&record, now, &limits);
            }
            let Admission::Blocked(block) = verdict(&record, now, &limits) else {
                panic!("fifth failure did not block");
            };
            blocks.push(block.as_secs());
            now += micros(block);
        }
        assert_eq!(blocks, [10, 20, 30, 30]);
        // A quiet window plus the longest block forgives the streak.
        now += 90 * SECOND;
        for _ in 0..5 {
            record = apply_failure(&record, now, &limits);
        }
        assert_eq!(
            verdict(&record, now, &limits),
            Admission::Blocked(Duration::from_secs(10))
        );
    }

    #[test]
    fn quiet_window_forgives_failures() {
        let limits = thresholds();
        let mut record = Record::default();
        for _ in 0..4 {
            record = apply_failure(&record, SECOND, &limits);
        }
        let later = 61 * SECOND;
        assert_eq!(verdict(&record, later, &limits), Admission::Allow);
        record = apply_failure(&record, later, &limits);
        assert_eq!(record.failures, 1);
    }

    /// Parallel attempts that passed the check before the first failure was
    /// counted get the block once it starts, and cannot lengthen it.
    #[tokio::test(start_paused = true)]
    async fn failures_during_a_block_do_not_extend_it() {
        let tracker = LocalTracker::new(BruteForcePolicy {
            client_ip: thresholds(),
            identity: thresholds(),
        });
        let attacker = [Subject::ClientIp("192.0.2.1".parse().unwrap())];
        for _ in 0..5 {
            assert!(!matches!(
                tracker.record_failure(&attacker),
                Admission::Blocked(_)
            ));
        }
        for _ in 0..50 {
            assert!(matches!(
                tracker.record_failure(&attacker),
                Admission::Blocked(_)
            ));
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(tracker.check(&attacker), Admission::Allow);
    }

    /// A reservation counts before the check and a success gives it back,
    /// so parallel reservations stop at the threshold while a run of
    /// successes never adds up.
    #[tokio::test(start_paused = true)]
    async fn reservations_stop_at_threshold_and_successes_refund() {
        let limits = Thresholds {
            slow_after: 100,
            ..thresholds()
        };
        let tracker = LocalTracker::new(BruteForcePolicy {
            client_ip: limits,
            identity: limits,
        });
        let user = [Subject::Identity("user:ops@example.com".to_owned())];
        for _ in 0..20 {
            assert_eq!(tracker.record_failure(&user), Admission::Allow);
            tracker.refund(&user);
        }
        let admitted = (0..50)
            .filter(|_| !matches!(tracker.record_failure(&user), Admission::Blocked(_)))
            .count();
        assert_eq!(admitted, 5, "parallel reservations past the threshold");
    }

    #[tokio::test(start_paused = true)]
    async fn local_tracker_blocks_one_address_only() {
        let policy = BruteForcePolicy {
            client_ip: thresholds(),
            identity: Thresholds {
                block_after: 100,
                slow_after: 100,
                ..thresholds()
            },
        };
        let tracker = LocalTracker::new(policy);
        let attacker = Subject::ClientIp("192.0.2.1".parse().unwrap());
        let other = Subject::ClientIp("192.0.2.2".parse().unwrap());

        for index in 0..5 {
            tracker.record_failure(&[
                attacker.clone(),
                Subject::Identity(format!("pc_test_{index}")),
            ]);
        }
        assert!(matches!(
            tracker.check(std::slice::from_ref(&attacker)),
            Admission::Blocked(_)
        ));
        assert_eq!(
            tracker.check(&[other, Subject::Identity("pc_test_0".to_owned())]),
            Admission::Allow
        );

        // The IPv4-mapped form of the attacker's address is the same subject.
        let mapped = Subject::ClientIp("::ffff:192.0.2.1".parse().unwrap());
        assert!(matches!(tracker.check(&[mapped]), Admission::Blocked(_)));

        // IPv6 clients are counted by their /64.
        for host in 1..=5 {
            let address = format!("2001:db8:1:2::{host}").parse().unwrap();
            tracker.record_failure(&[Subject::ClientIp(address)]);
        }
        let same_network = Subject::ClientIp("2001:db8:1:2:ffff::9".parse().unwrap());
        assert!(matches!(
            tracker.check(&[same_network]),
            Admission::Blocked(_)
        ));
        let next_network = Subject::ClientIp("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(tracker.check(&[next_network]), Admission::Allow);

        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(tracker.check(&[attacker]), Admission::Allow);
    }

    /// Sends twenty failures from one untrusted peer, each with a new
    /// `X-Forwarded-For`, then failures relayed by a trusted proxy. The
    /// counted address is the one the resolver trusts. Rotating the header
    /// gains nothing, and a client behind the proxy is counted apart.
    #[tokio::test(start_paused = true)]
    async fn spoofed_forwarded_for_counts_peer() {
        use crate::client_ip::TrustedProxies;
        use http::{HeaderMap, HeaderValue};

        let limits = Thresholds {
            slow_after: 100,
            ..thresholds()
        };
        let tracker = LocalTracker::new(BruteForcePolicy {
            client_ip: limits,
            identity: Thresholds {
                block_after: 1_000,
                slow_after: 1_000,
                ..limits
            },
        });
        let proxies = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()]);
        let forwarded = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            headers
        };
        let untrusted_peer: IpAddr = "127.0.0.1".parse().unwrap();
        let proxy: IpAddr = "127.0.0.2".parse().unwrap();

        let mut admissions = Vec::new();
        for n in 1..=20 {
            let client = proxies.client_ip(untrusted_peer, &forwarded(&format!("203.0.113.{n}")));
            let subjects = [
                Subject::ClientIp(client),
                Subject::Identity("client-c".to_owned()),
            ];
            admissions.push(tracker.check(&subjects));
            tracker.record_failure(&subjects);
        }
        assert!(
            admissions[..5]
                .iter()
                .all(|admission| *admission == Admission::Allow)
        );
        assert!(
            admissions[5..]
                .iter()
                .all(|admission| matches!(admission, Admission::Blocked(_))),
            "{admissions:?}"
        );
        assert_eq!(admissions[5].retry_after_seconds(), Some(10));

        // Behind the trusted proxy, 203.0.113.9 is blocked after five
        // failures, and 203.0.113.10 and the proxy's own address are not.
        let relayed = proxies.client_ip(proxy, &forwarded("198.51.100.7, 203.0.113.9"));
        for _ in 0..5 {
            tracker.record_failure(&[Subject::ClientIp(relayed)]);
        }
        assert!(matches!(
            tracker.check(&[Subject::ClientIp(relayed)]),
            Admission::Blocked(_)
        ));
        let neighbour = proxies.client_ip(proxy, &forwarded("198.51.100.7, 203.0.113.10"));
        assert_eq!(
            tracker.check(&[Subject::ClientIp(neighbour)]),
            Admission::Allow
        );
        assert_eq!(tracker.check(&[Subject::ClientIp(proxy)]), Admission::Allow);
    }

    #[test]
    fn failure_returns_admission_per_subject() {
        let tracker = LocalTracker::new(BruteForcePolicy {
            client_ip: Thresholds {
                slow_after: 100,
                block_after: 100,
                ..thresholds()
            },
            identity: thresholds(),
        });
        let identity = Subject::Identity("key:pc_test_abcd".to_owned());
        for n in 0..2u8 {
            let address = Subject::ClientIp(IpAddr::from([198, 51, 100, n]));
            let admissions = tracker.count_failure(&[address, identity.clone()]);
            assert_eq!(admissions, [Admission::Allow, Admission::Allow]);
        }
        let address = Subject::ClientIp("198.51.100.9".parse().unwrap());
        let admissions = tracker.count_failure(&[address, identity]);
        assert_eq!(admissions[0], Admission::Allow);
        assert_eq!(admissions[1], Admission::Delay(Duration::from_millis(100)));
    }
}
