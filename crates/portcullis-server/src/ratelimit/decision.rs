//! The result of a rate limit check, and the header fields that carry it.
//!
//! The header fields follow draft-ietf-httpapi-ratelimit-headers-11 (23 May
//! 2026), the latest revision: `RateLimit-Policy` and `RateLimit` are
//! Structured Field Lists (RFC 9651) of String items, one per limit.
//!
//! - `RateLimit-Policy: "key";q=200;w=2` gives the quota `q` and its window
//!   `w` in seconds. For a GCRA limit the window is the time an empty
//!   allowance takes to refill, rounded up to whole seconds and at least 1,
//!   and the quota is what the rate grants in that window, rounded down.
//!   So `q/w` is the sustained rate and `q` is at least the burst: `100/s
//!   burst 200` is `q=200;w=2`, `40/s burst 10` is `q=40;w=1` (its 0.25 s
//!   refill does not fit the whole seconds of `w`), `5000/h` is
//!   `q=5000;w=3600`.
//! - `RateLimit: "key";r=17;t=1` gives the requests available now (`r`) and
//!   the seconds until the allowance is full again (`t`, rounded up).
//!
//! The draft's optional `pk` (partition key) is not sent: it would show the
//! caller the key under which its requests are counted, which names
//! tenants and credentials.

use std::time::Duration;

use http::HeaderValue;
use http::header::HeaderName;

use crate::ratelimit::policy::{LimitName, Rate};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-11 §3).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11 §4).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The problem type of a request over its quota
/// (draft-ietf-httpapi-ratelimit-headers-11 §5.1).
pub const QUOTA_EXCEEDED_TYPE: &str =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// The state of one limit after a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitStatus {
    /// The limit's name.
    pub name: LimitName,
    /// The limit's rate.
    pub rate: Rate,
    /// Requests that would be admitted right after this one.
    pub remaining: u64,
    /// Time until the allowance is full again.
    pub reset: Duration,
    /// Time until a denied request would fit; `None` when this limit
    /// admitted the request.
    pub retry_after: Option<Duration>,
}

/// Uses of a usage-limited key (`--max-uses`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsesStatus {
    /// Uses counted so far, this request included when it was admitted.
    pub used: u64,
    /// The key's maximum.
    pub max: u64,
}

/// The verdict of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every limit admitted the request, and it was counted against each.
    Admitted,
    /// At least one limit denied the request; none was charged. `limit` is
    /// the one with the longest wait, which sets `Retry-After`.
    Limited {
        /// The limit whose wait is longest.
        limit: LimitName,
        /// How long to wait before the request would fit.
        retry_after: Duration,
    },
    /// The key has used up its `--max-uses`; no limit was charged.
    UsesExhausted,
    /// The shared store could not be asked and the operator chose to deny
    /// in that case (`fallback = "deny"`), or the request needs an exact
    /// use count that only the shared store keeps. The caller responds
    /// with 503.
    Unavailable,
}

/// The result of a rate limit check, with everything a response needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead, and if not, why.
    pub verdict: Verdict,
    /// Every limit of the request, in the order they were given.
    pub limits: Vec<LimitStatus>,
    /// The use count of a usage-limited key, when the check counted one.
    pub uses: Option<UsesStatus>,
}

impl Decision {
    /// Returns whether the request may go ahead.
    pub fn is_admitted(&self) -> bool {
        self.verdict == Verdict::Admitted
    }

    /// Returns the `Retry-After` value in whole seconds, rounded up so a
    /// client that waits exactly that long is admitted (RFC 9110 §10.2.3).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match &self.verdict {
            Verdict::Limited { retry_after, .. } => Some(ceil_seconds(*retry_after).max(1)),
            _ => None,
        }
    }

    /// Returns the limit that decided: the denying limit with the longest
    /// wait, or on admission the limit with the fewest requests left.
    pub fn deciding_limit(&self) -> Option<&LimitStatus> {
        match &self.verdict {
            Verdict::Limited { limit, .. } => {
                self.limits.iter().find(|status| &status.name == limit)
            }
            _ => self.limits.iter().min_by_key(|status| status.remaining),
        }
    }

    /// Returns the names of the limits that denied the request, for the
    /// problem body's `violated-policies` member.
    pub fn violated_policies(&self) -> Vec<&str> {
        self.limits
            .iter()
            .filter(|status| status.retry_after.is_some())
            .map(|status| status.name.as_str())
            .collect()
    }

    /// Updates every limit to the state after [`Self::limits`] got this
    /// request's charge back: one more request remaining, up to the burst,
    /// and the reset one emission interval sooner.
    pub fn apply_refund(&mut self) {
        for status in &mut self.limits {
            status.remaining = (status.remaining + 1).min(status.rate.burst());
            let interval = Duration::from_micros(status.rate.emission_interval_micros());
            status.reset = status.reset.saturating_sub(interval);
        }
    }

    /// Builds the `RateLimit-Policy` field value, or `None` without limits.
    pub fn policy_header(&self) -> Option<HeaderValue> {
        let items: Vec<String> = self
            .limits
            .iter()
            .map(|status| {
                let window = window_seconds(&status.rate).max(1);
                let quota = quota_in_window(&status.rate, window);
                format!("\"{}\";q={quota};w={window}", status.name)
            })
            .collect();
        list_value(&items)
    }

    /// Builds the `RateLimit` field value, or `None` without limits.
    pub fn ratelimit_header(&self) -> Option<HeaderValue> {
        let items: Vec<String> = self
            .limits
            .iter()
            .map(|status| {
                format!(
                    "\"{}\";r={};t={}",
                    status.name,
                    status.remaining,
                    ceil_seconds(status.reset)
                )
            })
            .collect();
        list_value(&items)
    }

    /// Returns the field lines a response carries: `RateLimit-Policy`,
    /// `RateLimit`, and on a limited request `Retry-After`.
    pub fn header_fields(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut fields = Vec::with_capacity(3);
        if let Some(value) = self.policy_header() {
            fields.push((RATELIMIT_POLICY, value));
        }
        if let Some(value) = self.ratelimit_header() {
            fields.push((RATELIMIT, value));
        }
        if let Some(seconds) = self.retry_after_seconds() {
            fields.push((http::header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        fields
    }
}

/// Returns the seconds an empty allowance of `rate` takes to refill:
/// `burst × unit / count`, computed exactly and rounded up. So `3/s` has a
/// window of 1 s although its emission interval is rounded up to 333,334 µs.
fn window_seconds(rate: &Rate) -> u64 {
    rate.burst()
        .saturating_mul(rate.unit().seconds())
        .div_ceil(rate.count())
}

/// Returns the requests `rate` grants in `window` seconds, rounded down.
/// With a window at least as long as the burst's refill time this is at
/// least the burst, so `q` never understates what a caller may send at once.
fn quota_in_window(rate: &Rate, window: u64) -> u64 {
    let granted = u128::from(rate.count()) * u128::from(window) / u128::from(rate.unit().seconds());
    u64::try_from(granted).unwrap_or(u64::MAX)
}

/// Rounds a duration up to whole seconds.
fn ceil_seconds(duration: Duration) -> u64 {
    let whole = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    }
}

/// Joins list members as RFC 9651 §4.1.1 serializes a List: `, ` between
/// members. Names are restricted to characters that need no escaping.
fn list_value(items: &[String]) -> Option<HeaderValue> {
    if items.is_empty() {
        return None;
    }
    HeaderValue::from_str(&items.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, rate: &str, remaining: u64, reset_ms: u64) -> LimitStatus {
        LimitStatus {
            name: LimitName::new(name).unwrap(),
            rate: rate.parse().unwrap(),
            remaining,
            reset: Duration::from_millis(reset_ms),
            retry_after: None,
        }
    }

    fn admitted(limits: Vec<LimitStatus>) -> Decision {
        Decision {
            verdict: Verdict::Admitted,
            limits,
            uses: None,
        }
    }

    #[test]
    fn headers_follow_draft_syntax() {
        let decision = admitted(vec![
            status("key", "100/s burst 200", 17, 1_830),
            status("tenant", "5000/h", 4999, 720),
        ]);
        assert_eq!(
            decision.policy_header().unwrap(),
            "\"key\";q=200;w=2, \"tenant\";q=5000;w=3600"
        );
        assert_eq!(
            decision.ratelimit_header().unwrap(),
            "\"key\";r=17;t=2, \"tenant\";r=4999;t=1"
        );
        assert_eq!(decision.retry_after_seconds(), None);
        assert_eq!(decision.deciding_limit().unwrap().name.as_str(), "key");
        assert_eq!(decision.header_fields().len(), 2);
    }

    #[test]
    fn policy_window_from_exact_rate() {
        let decision = admitted(vec![
            status("a", "3/s", 2, 333),
            status("b", "7/min burst 2", 1, 8_572),
            status("c", "1/d", 0, 86_400_000),
        ]);
        assert_eq!(
            decision.policy_header().unwrap(),
            "\"a\";q=3;w=1, \"b\";q=2;w=18, \"c\";q=1;w=86400"
        );
        assert_eq!(
            decision.ratelimit_header().unwrap(),
            "\"a\";r=2;t=1, \"b\";r=1;t=9, \"c\";r=0;t=86400"
        );
    }

    #[test]
    fn policy_quota_keeps_sustained_rate() {
        let decision = admitted(vec![
            status("low", "40/s burst 10", 9, 25),
            status("high", "1000/s burst 2000", 1999, 1),
            status("equal", "20/s burst 20", 19, 50),
        ]);
        assert_eq!(
            decision.policy_header().unwrap(),
            "\"low\";q=40;w=1, \"high\";q=2000;w=2, \"equal\";q=20;w=1"
        );
    }

    #[test]
    fn limited_decision_names_strictest() {
        let mut key = status("key", "10/min", 0, 60_000);
        key.retry_after = Some(Duration::from_millis(5_001));
        let mut route = status("route", "1/s", 0, 1_000);
        route.retry_after = Some(Duration::from_millis(900));
        let decision = Decision {
            verdict: Verdict::Limited {
                limit: key.name.clone(),
                retry_after: Duration::from_millis(5_001),
            },
            limits: vec![key, route, status("tenant", "5000/h", 40, 3_000)],
            uses: None,
        };
        assert_eq!(decision.retry_after_seconds(), Some(6));
        assert_eq!(decision.violated_policies(), ["key", "route"]);
        assert_eq!(decision.deciding_limit().unwrap().name.as_str(), "key");
        let fields = decision.header_fields();
        assert_eq!(fields[2].0, http::header::RETRY_AFTER);
        assert_eq!(fields[2].1, "6");
        assert_eq!(
            fields[0].1,
            "\"key\";q=10;w=60, \"route\";q=1;w=1, \"tenant\";q=5000;w=3600"
        );
        assert_eq!(
            fields[1].1,
            "\"key\";r=0;t=60, \"route\";r=0;t=1, \"tenant\";r=40;t=3"
        );
    }

    #[test]
    fn refund_restores_remaining() {
        let mut decision = admitted(vec![
            status("tenant", "12/min burst 12", 7, 25_000),
            status("key", "1/s", 1, 0),
        ]);
        decision.apply_refund();
        assert_eq!(
            decision.ratelimit_header().unwrap(),
            "\"tenant\";r=8;t=20, \"key\";r=1;t=0"
        );
    }

    #[test]
    fn no_limits_no_headers() {
        assert!(admitted(Vec::new()).header_fields().is_empty());
    }
}
