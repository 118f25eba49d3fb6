//! Slowing of repeated failed sign-ins, in memory.
//!
//! Failures are counted per e-mail address and per client address over
//! [`FAILURE_WINDOW`]. When either count reaches its limit, sign-ins for
//! that address are rejected for a lockout that doubles with each
//! lockout in a row, from [`FIRST_LOCKOUT`] up to [`MAX_LOCKOUT`]. The check
//! runs before the password hash, so a locked address costs no Argon2 work,
//! and it is the same for known and unknown e-mail addresses.
//!
//! A successful sign-in clears its e-mail address's record. It leaves the
//! client address's record alone, so an attacker cannot reset the count by
//! signing in to an account of their own between guesses.
//!
//! NOTE: the counts live in this process only. Behind a load balancer with
//! several nodes, an attacker gets each node's allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failed sign-ins of one e-mail address within [`FAILURE_WINDOW`] that
/// start a lockout: enough for a user who mistypes a few times.
pub const MAX_FAILURES_PER_EMAIL: u32 = 5;

/// Failed sign-ins from one client address within [`FAILURE_WINDOW`] that
/// start a lockout of that address. Higher than the per-e-mail limit,
/// because many users can share one address behind a NAT gateway, and one
/// user's mistakes should not lock out the others. It still stops one
/// client from trying a common password against many accounts.
pub const MAX_FAILURES_PER_CLIENT: u32 = 25;

/// The period over which failures are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The first lockout. Each further lockout in a row doubles it.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(60);

/// The maximum lockout, so that a user whose address an attacker keeps
/// locking can still sign in within the hour.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(60 * 60);

/// Number of records kept before expired ones are dropped. Each record is
/// well under 200 bytes, so this bounds the memory near 20 MB.
const MAX_RECORDS: usize = 100_000;

/// The subject that failures are counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Email(String),
    Client(IpAddr),
}

/// The failures of one subject.
#[derive(Clone, Debug)]
struct Record {
    /// Failures since `window_start`.
    failures: u32,
    window_start: Instant,
    /// Lockouts in a row; each doubles the next one.
    lockouts: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            window_start: now,
            lockouts: 0,
            locked_until: None,
            last_seen: now,
        }
    }

    /// Returns `true` while the record still affects a decision at `now`.
    fn is_current(&self, now: Instant) -> bool {
        let locked = self.locked_until.is_some_and(|until| now < until);
        // A lockout streak is remembered for one window after it ends.
        locked || now.duration_since(self.last_seen) < FAILURE_WINDOW + MAX_LOCKOUT
    }
}

/// The failed sign-in counts of this process.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    records: Mutex<HashMap<Subject, Record>>,
}

impl LoginThrottle {
    /// Returns how long the sign-in must wait, when `email` or `client` is
    /// locked at `now`; `None` when it may go ahead.
    pub fn retry_after(&self, email: &str, client: IpAddr, now: Instant) -> Option<Duration> {
        let records = self.lock();
        [Subject::Email(email.to_owned()), Subject::Client(client)]
            .iter()
            .filter_map(|subject| records.get(subject)?.locked_until)
            .filter(|until| now < *until)
            .map(|until| until - now)
            .max()
    }

    /// Counts a failed sign-in for `email` from `client`.
    pub fn record_failure(&self, email: &str, client: IpAddr, now: Instant) {
        let mut records = self.lock();
        if records.len() >= MAX_RECORDS {
            records.retain(|_, record| record.is_current(now));
        }
        // NOTE: when every record is current, the map grows past
        // MAX_RECORDS rather than forget a lockout.
        let subjects = [
            (Subject::Email(email.to_owned()), MAX_FAILURES_PER_EMAIL),
            (Subject::Client(client), MAX_FAILURES_PER_CLIENT),
        ];
        for (subject, limit) in subjects {
            let record = records.entry(subject).or_insert_with(|| Record::new(now));
            count_failure(record, limit, now);
        }
    }

    /// Clears the record of `email` after a successful sign-in.
    pub fn record_success(&self, email: &str) {
        self.lock().remove(&Subject::Email(email.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, Record>> {
        // The map contains counters only, so a panic elsewhere cannot leave it
        // in a state worth refusing to read.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Adds one failure to `record` and starts a lockout at `limit` failures.
fn count_failure(record: &mut Record, limit: u32, now: Instant) {
    if now.duration_since(record.window_start) >= FAILURE_WINDOW {
        record.failures = 0;
        record.window_start = now;
    }
    if now.duration_since(record.last_seen) >= FAILURE_WINDOW + MAX_LOCKOUT {
        record.lockouts = 0;
    }
    record.last_seen = now;
    record.failures += 1;
    if record.failures >= limit {
        record.locked_until = Some(now + lockout(record.lockouts));
        record.lockouts = record.lockouts.saturating_add(1);
        record.failures = 0;
        record.window_start = now;
    }
}

/// Computes the length of lockout number `previous + 1` in a row.
fn lockout(previous: u32) -> Duration {
    let factor = 1u32.checked_shl(previous).unwrap_or(u32::MAX);
    FIRST_LOCKOUT.saturating_mul(factor).min(MAX_LOCKOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn fifth_failure_locks_email() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES_PER_EMAIL - 1 {
            throttle.record_failure("a@example.com", CLIENT, now);
            assert_eq!(throttle.retry_after("a@example.com", CLIENT, now), None);
        }
        throttle.record_failure("a@example.com", CLIENT, now);
        assert_eq!(
            throttle.retry_after("a@example.com", CLIENT, now),
            Some(FIRST_LOCKOUT)
        );
        // Another user at the same client address is not locked.
        assert_eq!(throttle.retry_after("b@example.com", CLIENT, now), None);
        // The lockout ends.
        let later = now + FIRST_LOCKOUT;
        assert_eq!(throttle.retry_after("a@example.com", CLIENT, later), None);
    }

    #[test]
    fn lockouts_in_a_row_grow() {
        let throttle = LoginThrottle::default();
        let mut now = Instant::now();
        let mut lockouts = Vec::new();
        for _ in 0..4 {
            for _ in 0..MAX_FAILURES_PER_EMAIL {
                throttle.record_failure("a@example.com", CLIENT, now);
            }
            let wait = throttle.retry_after("a@example.com", CLIENT, now).unwrap();
            lockouts.push(wait);
            now += wait;
        }
        assert_eq!(
            lockouts,
            [
                FIRST_LOCKOUT,
                FIRST_LOCKOUT * 2,
                FIRST_LOCKOUT * 4,
                FIRST_LOCKOUT * 8
            ]
        );
        assert_eq!(lockout(30), MAX_LOCKOUT);
        assert_eq!(lockout(u32::MAX), MAX_LOCKOUT);
    }

    #[test]
    fn failures_outside_window_forgotten() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES_PER_EMAIL - 1 {
            throttle.record_failure("a@example.com", CLIENT, now);
        }
        let later = now + FAILURE_WINDOW;
        throttle.record_failure("a@example.com", CLIENT, later);
        assert_eq!(throttle.retry_after("a@example.com", CLIENT, later), None);
    }

    #[test]
    fn success_clears_email_not_client() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for index in 0..MAX_FAILURES_PER_CLIENT - 1 {
            throttle.record_failure(&format!("user{index}@example.com"), CLIENT, now);
        }
        throttle.record_success("user0@example.com");
        throttle.record_failure("last@example.com", CLIENT, now);
        assert_eq!(
            throttle.retry_after("new@example.com", CLIENT, now),
            Some(FIRST_LOCKOUT)
        );
    }
}
