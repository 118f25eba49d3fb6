//! Whether a node's Redis is in use, the backoff while it is away, and the
//! log lines of its outages.
//!
//! Every component that calls Redis (the rate limiter, the brute-force
//! tracker) shares one [`RedisHealth`] per node, so one outage gives one
//! warning and one recovery line on that node, whichever component saw it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{self, RedisComponent, RedisErrorKind};
use crate::ratelimit::redis::RedisLimitError;

/// First wait after a failed Redis call before the next one is tried.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Maximum wait between two attempts while Redis is down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Minimum time between two "redis is unreachable" lines of one node. The
/// outages begun in between are counted, and the next line reports them as
/// `outages_not_logged`.
pub const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Whether Redis is in use, with the backoff and logging of an outage.
///
/// A failed call starts a backoff of [`FIRST_BACKOFF`]; while it runs,
/// callers skip Redis. When it ends, one caller tries Redis again (the
/// others keep skipping it): a request, or the node's background probe.
/// Each failed try doubles the backoff, up to [`MAX_BACKOFF`]. The first
/// success of a call begun after the outage started ends it. Calls that
/// were already under way when the outage began neither extend nor end it.
pub struct RedisHealth {
    state: Mutex<HealthState>,
    rate_limit_failures: AtomicU64,
    brute_force_failures: AtomicU64,
    /// Notified when an outage begins, for the background probe.
    outage_began: Arc<Notify>,
}

#[derive(Debug)]
struct HealthState {
    down_since: Option<Instant>,
    next_attempt: Instant,
    backoff: Duration,
    /// Whether a caller is trying Redis again during an outage.
    probing: bool,
    /// Whether the background probe task runs.
    prober_running: bool,
    /// The error that began or last extended the outage.
    last_error: String,
    /// The duration of the last outage that ended.
    last_outage: Duration,
    /// The components' behaviour during an outage, for the log lines.
    fallbacks: Vec<(RedisComponent, &'static str)>,
    log: OutageLog,
}

/// The next step of the background probe.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProbeStep {
    /// Send a `PING` now.
    Probe,
    /// Sleep until then and ask again.
    WaitUntil(Instant),
    /// Redis is up and every outage is logged, so the task ends.
    Stop,
}

impl Default for RedisHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisHealth {
    /// Starts healthy, with no component registered.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(HealthState {
                down_since: None,
                next_attempt: Instant::now(),
                backoff: FIRST_BACKOFF,
                probing: false,
                prober_running: false,
                last_error: String::new(),
                last_outage: Duration::ZERO,
                fallbacks: Vec::new(),
                log: OutageLog::new(OUTAGE_LOG_INTERVAL),
            }),
            rate_limit_failures: AtomicU64::new(0),
            brute_force_failures: AtomicU64::new(0),
            outage_began: Arc::new(Notify::new()),
        }
    }

    /// Adds `component` to the components that use this Redis, with its
    /// behaviour during an outage (`fallback`) for the log lines. A second
    /// registration of one component replaces the first.
    pub fn register(&self, component: RedisComponent, fallback: &'static str) {
        let mut state = self.lock();
        state.fallbacks.retain(|(known, _)| *known != component);
        state.fallbacks.push((component, fallback));
        if let Some(metrics) = metrics::get() {
            metrics.record_redis_state(component, state.down_since.is_none());
        }
    }

    /// Records the duration of one Redis call of `component`.
    pub fn record_latency(&self, component: RedisComponent, elapsed: Duration) {
        if let Some(metrics) = metrics::get() {
            metrics.record_redis_call(component, elapsed);
        }
    }

    /// Counts a check of `component` decided without Redis, during an
    /// outage.
    pub fn record_fallback(&self, component: RedisComponent) {
        if let Some(metrics) = metrics::get() {
            metrics.record_redis_fallback(component);
        }
    }

    /// Returns the number of Redis calls of `component` that failed or
    /// timed out since start, for `/readyz`.
    pub fn failures(&self, component: RedisComponent) -> u64 {
        self.failure_counter(component).load(Ordering::Relaxed)
    }

    /// Returns whether calls currently go to Redis.
    pub fn is_up(&self) -> bool {
        self.lock().down_since.is_none()
    }

    /// Returns whether this caller should call Redis: always while it is
    /// up, and one caller per backoff period while it is down.
    pub fn may_call(&self) -> bool {
        let mut state = self.lock();
        state.claim_attempt(Instant::now())
    }

    /// Ends an outage, logging its end, unless the call that succeeded
    /// began (at `started`) no later than the outage did.
    pub fn record_success(&self, started: Instant) {
        let mut state = self.lock();
        let Some(since) = state.down_since else {
            return;
        };
        if started <= since {
            return;
        }
        state.down_since = None;
        state.backoff = FIRST_BACKOFF;
        state.probing = false;
        state.last_outage = since.elapsed();
        for (component, _) in &state.fallbacks {
            if let Some(metrics) = metrics::get() {
                metrics.record_redis_state(*component, true);
            }
        }
        if let Some(not_logged) = state.log.outage_ended() {
            log_recovery(state.last_outage, not_logged);
        }
    }

    /// Counts a failed call of `component`, starts or extends the backoff,
    /// and logs the start of an outage unless a line was logged within
    /// [`OUTAGE_LOG_INTERVAL`]. Returns whether the caller must start the
    /// background probe, which is true only while no probe task runs.
    #[must_use]
    pub fn record_failure(&self, component: RedisComponent, error: &RedisLimitError) -> bool {
        self.failure_counter(component)
            .fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = metrics::get() {
            let kind = match error {
                RedisLimitError::Timeout(_) => RedisErrorKind::Timeout,
                RedisLimitError::Reply | RedisLimitError::TooManyLimits(_) => RedisErrorKind::Reply,
                RedisLimitError::Redis(_) => RedisErrorKind::Error,
            };
            metrics.record_redis_error(component, kind);
        }
        self.record_outage(error)
    }

    /// Starts or extends an outage after a failed call, without counting
    /// the call for a component. Returns whether the background probe must
    /// be started.
    pub(crate) fn record_outage(&self, error: &RedisLimitError) -> bool {
        let mut state = self.lock();
        let now = Instant::now();
        state.last_error = error.to_string();
        if state.down_since.is_none() {
            state.down_since = Some(now);
            state.backoff = FIRST_BACKOFF;
            state.next_attempt = now + state.backoff;
            state.probing = false;
            for (component, _) in &state.fallbacks {
                if let Some(metrics) = metrics::get() {
                    metrics.record_redis_state(*component, false);
                }
            }
            if let Some(not_logged) = state.log.outage_started(now) {
                log_outage(&state.last_error, &state.fallback_text(), not_logged);
            }
            self.outage_began.notify_one();
        } else if state.probing {
            state.probing = false;
            state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            state.next_attempt = now + state.backoff;
        }
        let start_prober = !state.prober_running;
        state.prober_running = true;
        start_prober
    }

    /// Returns the notification of a new outage, which wakes the
    /// background probe.
    pub(crate) fn outage_notify(&self) -> Arc<Notify> {
        Arc::clone(&self.outage_began)
    }

    /// Marks the background probe as stopped, when it could not be
    /// started.
    pub(crate) fn prober_stopped(&self) {
        self.lock().prober_running = false;
    }

    /// Returns what the background probe does next, and logs the outages
    /// not logged yet once [`OUTAGE_LOG_INTERVAL`] allows another line.
    pub(crate) fn next_probe_step(&self) -> ProbeStep {
        let mut state = self.lock();
        let now = Instant::now();
        let down = state.down_since.is_some();
        match state.log.report_due(now, down) {
            Some(Report::Outage { not_logged }) => {
                log_outage(&state.last_error, &state.fallback_text(), not_logged);
            }
            Some(Report::Recovery { not_logged }) => log_recovery(state.last_outage, not_logged),
            None => {}
        }
        let report_at = state.log.report_at();
        if down {
            if state.claim_attempt(now) {
                return ProbeStep::Probe;
            }
            let wake = report_at.map_or(state.next_attempt, |at| at.min(state.next_attempt));
            return ProbeStep::WaitUntil(wake);
        }
        match report_at {
            Some(at) => ProbeStep::WaitUntil(at),
            None => {
                state.prober_running = false;
                ProbeStep::Stop
            }
        }
    }

    fn failure_counter(&self, component: RedisComponent) -> &AtomicU64 {
        match component {
            RedisComponent::RateLimit => &self.rate_limit_failures,
            RedisComponent::BruteForce => &self.brute_force_failures,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        // Plain timestamps: a panic elsewhere cannot leave them half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HealthState {
    /// Returns whether a call may go to Redis now, and makes the caller the
    /// probe of this backoff period when Redis is down.
    fn claim_attempt(&mut self, now: Instant) -> bool {
        if self.down_since.is_none() {
            return true;
        }
        if now < self.next_attempt {
            return false;
        }
        // This caller is the probe; the others skip Redis until it returns.
        self.next_attempt = now + self.backoff;
        self.probing = true;
        true
    }

    fn fallback_text(&self) -> String {
        let texts: Vec<&str> = self.fallbacks.iter().map(|(_, text)| *text).collect();
        texts.join("; ")
    }
}

fn log_outage(error: &str, fallback: &str, outages_not_logged: u64) {
    tracing::warn!(error, fallback, outages_not_logged, "redis is unreachable");
}

fn log_recovery(outage: Duration, outages_not_logged: u64) {
    tracing::info!(
        outage_ms = u64::try_from(outage.as_millis()).unwrap_or(u64::MAX),
        outages_not_logged,
        "redis is reachable again; shared limits are back in use"
    );
}

/// A line that reports outages begun while logging was paused.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    /// Redis is down: log the current outage, and `not_logged` others.
    Outage { not_logged: u64 },
    /// Redis is up: log the end of the last outage, and `not_logged`.
    Recovery { not_logged: u64 },
}

/// When outage lines may be logged: one "unreachable" line per interval,
/// with the outages begun in between counted and reported by the next line.
#[derive(Debug)]
struct OutageLog {
    interval: Duration,
    /// When the last "unreachable" line was logged.
    last_warning: Option<Instant>,
    /// Outages begun since the last line that reported them, unlogged.
    not_logged: u64,
    /// Whether the current outage's start was logged, so its end is too.
    current_logged: bool,
}

impl OutageLog {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_warning: None,
            not_logged: 0,
            current_logged: false,
        }
    }

    /// Records an outage that began at `now`. Returns the count of
    /// outages to report when its start is to be logged, and `None` when
    /// the interval since the last line has not passed yet.
    fn outage_started(&mut self, now: Instant) -> Option<u64> {
        let allowed = self
            .last_warning
            .is_none_or(|last| now >= last + self.interval);
        if !allowed {
            self.not_logged += 1;
            self.current_logged = false;
            return None;
        }
        self.last_warning = Some(now);
        self.current_logged = true;
        Some(std::mem::take(&mut self.not_logged))
    }

    /// Records the end of the current outage. Returns the count of outages
    /// to report when its end is to be logged, which is when its start was.
    fn outage_ended(&mut self) -> Option<u64> {
        if !self.current_logged {
            return None;
        }
        self.current_logged = false;
        Some(std::mem::take(&mut self.not_logged))
    }

    /// Returns when the outages not logged may be reported, or `None` when
    /// there are none.
    fn report_at(&self) -> Option<Instant> {
        if self.not_logged == 0 {
            return None;
        }
        Some(
            self.last_warning
                .map_or_else(Instant::now, |last| last + self.interval),
        )
    }

    /// Returns the line that reports the outages not logged, once the
    /// interval allows it. `down` is true while an outage is under way: the
    /// line then logs that outage as begun, and its end is logged later.
    fn report_due(&mut self, now: Instant, down: bool) -> Option<Report> {
        if self.report_at().is_none_or(|at| now < at) {
            return None;
        }
        if down && !self.current_logged {
            // The current outage was counted as not logged when it began;
            // this line logs it.
            self.not_logged -= 1;
            self.last_warning = Some(now);
            self.current_logged = true;
            return Some(Report::Outage {
                not_logged: std::mem::take(&mut self.not_logged),
            });
        }
        Some(Report::Recovery {
            not_logged: std::mem::take(&mut self.not_logged),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> RedisLimitError {
        RedisLimitError::Timeout(Duration::from_millis(250))
    }

    #[tokio::test(start_paused = true)]
    async fn outage_backs_off_with_one_probe() {
        let health = RedisHealth::new();
        assert!(health.may_call());

        // Three calls under way when Redis goes away: one outage, counted
        // three times, with the first backoff.
        let started = Instant::now();
        let _ = health.record_failure(RedisComponent::RateLimit, &failure());
        let _ = health.record_failure(RedisComponent::RateLimit, &failure());
        let _ = health.record_failure(RedisComponent::BruteForce, &failure());
        assert!(!health.is_up());
        assert_eq!(health.failures(RedisComponent::RateLimit), 2);
        assert_eq!(health.failures(RedisComponent::BruteForce), 1);
        assert!(!health.may_call());

        // A call begun before the outage does not end it.
        tokio::time::advance(Duration::from_millis(1)).await;
        health.record_success(started);
        assert!(!health.is_up());

        // One probe when the backoff ends; the others keep skipping Redis.
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(health.may_call());
        assert!(!health.may_call());

        // A failed probe doubles the backoff.
        let _ = health.record_failure(RedisComponent::RateLimit, &failure());
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(!health.may_call());
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(health.may_call());

        health.record_success(Instant::now());
        assert!(health.is_up());
        assert!(health.may_call());
        assert!(health.may_call());
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_stops_at_maximum() {
        let health = RedisHealth::new();
        let _ = health.record_failure(RedisComponent::RateLimit, &failure());
        for _ in 0..10 {
            tokio::time::advance(MAX_BACKOFF).await;
            assert!(health.may_call());
            let _ = health.record_failure(RedisComponent::RateLimit, &failure());
        }
        tokio::time::advance(MAX_BACKOFF).await;
        assert!(health.may_call());
    }

    #[tokio::test(start_paused = true)]
    async fn prober_started_once_per_outage() {
        let health = RedisHealth::new();
        assert!(health.record_failure(RedisComponent::RateLimit, &failure()));
        assert!(!health.record_failure(RedisComponent::BruteForce, &failure()));

        // The probe sleeps out the backoff, then pings.
        let ProbeStep::WaitUntil(wake) = health.next_probe_step() else {
            panic!("expected a wait during the backoff");
        };
        assert_eq!(wake, Instant::now() + FIRST_BACKOFF);
        tokio::time::advance(FIRST_BACKOFF).await;
        assert_eq!(health.next_probe_step(), ProbeStep::Probe);

        health.record_success(Instant::now());
        assert_eq!(health.next_probe_step(), ProbeStep::Stop);
        assert!(health.record_failure(RedisComponent::RateLimit, &failure()));
    }

    #[tokio::test(start_paused = true)]
    async fn one_warning_per_interval() {
        let mut log = OutageLog::new(OUTAGE_LOG_INTERVAL);
        assert_eq!(log.outage_started(Instant::now()), Some(0));
        assert_eq!(log.outage_ended(), Some(0));

        // Three more outages within the interval: none is logged.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(5)).await;
            assert_eq!(log.outage_started(Instant::now()), None);
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(log.outage_ended(), None);
        }
        assert_eq!(log.report_due(Instant::now(), false), None);

        // The next outage after the interval reports the three.
        tokio::time::advance(OUTAGE_LOG_INTERVAL).await;
        assert_eq!(log.outage_started(Instant::now()), Some(3));
        assert_eq!(log.outage_ended(), Some(0));
        assert_eq!(log.report_at(), None);
    }

    /// Returns a log that saw a logged outage at `start`, a second one
    /// 10 s later, and a third begun 20 s after `start`, still under way.
    async fn log_after_flapping(start: Instant) -> OutageLog {
        let mut log = OutageLog::new(OUTAGE_LOG_INTERVAL);
        assert_eq!(log.outage_started(start), Some(0));
        assert_eq!(log.outage_ended(), Some(0));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(log.outage_started(Instant::now()), None);
        assert_eq!(log.outage_ended(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(log.outage_started(Instant::now()), None);
        log
    }

    #[tokio::test(start_paused = true)]
    async fn unlogged_outages_reported_when_up() {
        let start = Instant::now();
        let mut log = log_after_flapping(start).await;
        assert_eq!(log.outage_ended(), None);

        // Redis stays up: a recovery line reports both once the interval
        // since the warning has passed.
        assert_eq!(log.report_at(), Some(start + OUTAGE_LOG_INTERVAL));
        tokio::time::advance(Duration::from_secs(39)).await;
        assert_eq!(log.report_due(Instant::now(), false), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            log.report_due(Instant::now(), false),
            Some(Report::Recovery { not_logged: 2 })
        );
        assert_eq!(log.report_at(), None);
        assert_eq!(log.report_due(Instant::now(), false), None);
    }

    #[tokio::test(start_paused = true)]
    async fn unlogged_outage_under_way_reported() {
        let mut log = log_after_flapping(Instant::now()).await;

        // Still down when the interval ends: the outage under way is logged
        // as begun, reporting the one before it, and its end is logged.
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(
            log.report_due(Instant::now(), true),
            Some(Report::Outage { not_logged: 1 })
        );
        assert_eq!(log.report_at(), None);
        assert_eq!(log.outage_ended(), Some(0));

        // That line starts a new interval.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(log.outage_started(Instant::now()), None);
    }
}
