//! The counting rules: rate spikes, failure thresholds and revoked keys in
//! use. They keep their state in memory and take the time as a parameter,
//! so tests drive them without a clock. The new-network rule needs the
//! store and lives in [`super::networks`].
//!
//! NOTE: each node counts only the requests it serves. Behind a load
//! balancer that spreads traffic evenly over N nodes, a threshold is met at
//! about N times the configured traffic, and each node that reaches it
//! raises its own alert.

use std::collections::HashMap;
use std::net::IpAddr;

use portcullis_core::ids::{KeyId, TenantId};
use portcullis_store::{AlertRule, AlertSeverity};
use serde_json::json;
use time::OffsetDateTime;

use super::NewAlert;
use super::signals::{Signals, TenantMark};
use crate::config::{FailureRule, RateSpikeRule, RevokedKeyRule};

/// Most subjects each rule remembers. Past it, subjects whose window has
/// ended are forgotten first.
const MAX_REMEMBERED: usize = 100_000;

/// The in-memory state of the counting rules.
pub struct CountingRules {
    rate_spike: RateSpikeRule,
    failures: FailureRule,
    revoked_key: RevokedKeyRule,
    rates: HashMap<KeyId, RateState>,
    credential_failures: HashMap<String, WindowCount>,
    source_failures: HashMap<IpAddr, WindowCount>,
    revoked_alerted: HashMap<KeyId, OffsetDateTime>,
}

/// A key's request count in the current window and its baseline.
struct RateState {
    window_start: OffsetDateTime,
    count: u64,
    /// Exponentially weighted moving average of closed windows' counts.
    baseline: f64,
    /// Closed windows since the key was first seen here.
    windows_seen: u64,
    last_alert: Option<OffsetDateTime>,
}

/// A count within a fixed window that starts at the first event.
struct WindowCount {
    window_start: OffsetDateTime,
    count: u64,
    /// The tenants that the window's failures concerned.
    tenants: TenantMark,
    alerted: bool,
}

/// The failures of one subject in one tick.
#[derive(Clone, Copy)]
struct Counted {
    count: u64,
    tenants: TenantMark,
}

impl CountingRules {
    /// Starts with empty state.
    pub fn new(
        rate_spike: RateSpikeRule,
        failures: FailureRule,
        revoked_key: RevokedKeyRule,
    ) -> Self {
        Self {
            rate_spike,
            failures,
            revoked_key,
            rates: HashMap::new(),
            credential_failures: HashMap::new(),
            source_failures: HashMap::new(),
            revoked_alerted: HashMap::new(),
        }
    }

    /// Applies one tick of signals seen up to `now` and returns the alerts
    /// to raise.
    pub fn evaluate(&mut self, signals: &Signals, now: OffsetDateTime) -> Vec<NewAlert> {
        let mut alerts = Vec::new();
        for (key_id, uses) in &signals.uses {
            if let Some(alert) = self.count_uses(*key_id, uses.count, now) {
                alerts.push(alert);
            }
        }
        for (credential, failures) in &signals.credential_failures {
            let threshold = u64::from(self.failures.per_credential);
            let window = self.failures.window;
            let state = self.credential_failures.entry(credential.clone());
            let mut tenants = TenantMark::default();
            if let Some(tenant_id) = failures.tenant_id {
                tenants.add(tenant_id);
            }
            let counted = Counted {
                count: failures.count,
                tenants,
            };
            if let Some((count, tenant_id)) = add_to_window(state, counted, threshold, window, now)
            {
                alerts.push(NewAlert {
                    tenant_id,
                    credential: Some(credential.clone()),
                    key_id: None,
                    rule: AlertRule::CredentialFailures,
                    severity: AlertSeverity::Warning,
                    details: json!({
                        "failures": count,
                        "window_seconds": window.as_secs(),
                        "threshold": threshold,
                    }),
                });
            }
        }
        for (address, failures) in &signals.source_failures {
            let threshold = u64::from(self.failures.per_source);
            let window = self.failures.window;
            let state = self.source_failures.entry(*address);
            let counted = Counted {
                count: failures.count,
                tenants: failures.tenants,
            };
            if let Some((count, tenant_id)) = add_to_window(state, counted, threshold, window, now)
            {
                alerts.push(NewAlert {
                    tenant_id,
                    credential: None,
                    key_id: None,
                    rule: AlertRule::SourceFailures,
                    severity: AlertSeverity::Warning,
                    details: json!({
                        "client_ip": address.to_string(),
                        "failures": count,
                        "window_seconds": window.as_secs(),
                        "threshold": threshold,
                    }),
                });
            }
        }
        for (key_id, presented) in &signals.revoked_keys {
            let window = self.revoked_key.window;
            let quiet = self
                .revoked_alerted
                .get(key_id)
                .is_none_or(|last| now - *last >= window);
            if !quiet {
                continue;
            }
            self.revoked_alerted.insert(*key_id, now);
            alerts.push(NewAlert {
                tenant_id: presented.tenant_id,
                credential: Some(key_id.to_string()),
                key_id: Some(*key_id),
                rule: AlertRule::RevokedKeyUsed,
                severity: AlertSeverity::Critical,
                details: json!({
                    "status": presented.code,
                    "presentations": presented.count,
                    "client_ip": presented.address.to_string(),
                    "surface": presented.surface,
                }),
            });
        }
        self.forget_old(now);
        alerts
    }

    /// Adds `count` uses of `key_id` and returns a spike alert when the
    /// current window passes both the floor and `factor` times the
    /// baseline, outside the cooldown.
    fn count_uses(&mut self, key_id: KeyId, count: u64, now: OffsetDateTime) -> Option<NewAlert> {
        let rule = &self.rate_spike;
        let state = self.rates.entry(key_id).or_insert(RateState {
            window_start: now,
            count: 0,
            baseline: 0.0,
            windows_seen: 0,
            last_alert: None,
        });
        close_windows(state, rule, now);
        state.count += count;

        let learned = state.windows_seen >= u64::from(rule.learning_windows);
        // Counts stay far below 2^52, where f64 is still exact.
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts are far below 2^52"
        )]
        let above_baseline = state.count as f64 > f64::from(rule.factor) * state.baseline;
        let cooled = state
            .last_alert
            .is_none_or(|last| now - last >= rule.cooldown);
        if !(learned && state.count >= rule.floor && above_baseline && cooled) {
            return None;
        }
        state.last_alert = Some(now);
        Some(NewAlert {
            tenant_id: None,
            credential: Some(key_id.to_string()),
            key_id: Some(key_id),
            rule: AlertRule::RateSpike,
            severity: AlertSeverity::Warning,
            details: json!({
                "requests": state.count,
                "window_seconds": rule.window.as_secs(),
                "baseline": (state.baseline * 100.0).round() / 100.0,
                "factor": rule.factor,
                "floor": rule.floor,
            }),
        })
    }

    /// Forgets subjects whose windows ended, once a map contains more than
    /// [`MAX_REMEMBERED`] of them.
    fn forget_old(&mut self, now: OffsetDateTime) {
        if self.rates.len() > MAX_REMEMBERED {
            let window = self.rate_spike.window;
            self.rates
                .retain(|_, state| now - state.window_start < window);
        }
        let window = self.failures.window;
        if self.credential_failures.len() > MAX_REMEMBERED {
            self.credential_failures
                .retain(|_, state| now - state.window_start < window);
        }
        if self.source_failures.len() > MAX_REMEMBERED {
            self.source_failures
                .retain(|_, state| now - state.window_start < window);
        }
        if self.revoked_alerted.len() > MAX_REMEMBERED {
            let window = self.revoked_key.window;
            self.revoked_alerted.retain(|_, last| now - *last < window);
        }
    }
}

/// Closes every window of `state` that ended before `now`, folding each
/// count into the baseline. The weight of a new window is `2 / (N + 1)`
/// for N learning windows, so the baseline follows about the last N
/// windows.
fn close_windows(state: &mut RateState, rule: &RateSpikeRule, now: OffsetDateTime) {
    let elapsed = now - state.window_start;
    let window = time::Duration::try_from(rule.window).unwrap_or(time::Duration::MAX);
    if elapsed < window {
        return;
    }
    let closed = (elapsed.whole_milliseconds() / window.whole_milliseconds().max(1)).max(1);
    let closed = u64::try_from(closed).unwrap_or(u64::MAX);
    let weight = 2.0 / (f64::from(rule.learning_windows) + 1.0);

    #[expect(
        clippy::cast_precision_loss,
        reason = "request counts are far below 2^52"
    )]
    let finished = state.count as f64;
    state.baseline = if state.windows_seen == 0 {
        finished
    } else {
        weight * finished + (1.0 - weight) * state.baseline
    };
    // The windows after the first closed one had no requests. Past 10,000
    // of them the baseline is zero for any weight, so the loop stops there.
    let empty = closed.saturating_sub(1).min(10_000);
    for _ in 0..empty {
        state.baseline *= 1.0 - weight;
    }
    state.windows_seen = state.windows_seen.saturating_add(closed);
    state.count = 0;
    let advance = window * i32::try_from(closed).unwrap_or(i32::MAX);
    state.window_start = state.window_start.checked_add(advance).unwrap_or(now);
}

/// Adds one tick's failures to a subject's window, starting a new window
/// when the old one ended. Returns the window's count and its tenant, when
/// exactly one, when the count reaches `threshold` for the first time in
/// that window.
fn add_to_window<K>(
    entry: std::collections::hash_map::Entry<'_, K, WindowCount>,
    counted: Counted,
    threshold: u64,
    window: std::time::Duration,
    now: OffsetDateTime,
) -> Option<(u64, Option<TenantId>)> {
    let fresh = || WindowCount {
        window_start: now,
        count: 0,
        tenants: TenantMark::default(),
        alerted: false,
    };
    let state = entry.or_insert_with(fresh);
    if now - state.window_start >= window {
        *state = fresh();
    }
    state.count = state.count.saturating_add(counted.count);
    state.tenants.merge(counted.tenants);
    if state.alerted || state.count < threshold {
        return None;
    }
    state.alerted = true;
    Some((state.count, state.tenants.single()))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::alerts::signals::{CredentialFailures, KeyUses, RevokedKeyUse, SourceFailures};

    fn rules() -> CountingRules {
        CountingRules::new(
            RateSpikeRule {
                window: Duration::from_secs(60),
                factor: 5,
                floor: 50,
                learning_windows: 3,
                cooldown: Duration::from_secs(3600),
            },
            FailureRule {
                window: Duration::from_secs(300),
                per_credential: 5,
                per_source: 10,
            },
            RevokedKeyRule {
                window: Duration::from_secs(3600),
            },
        )
    }

    fn uses(key: KeyId, count: u64) -> Signals {
        let mut signals = Signals::default();
        signals.uses.insert(
            key,
            KeyUses {
                count,
                addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            },
        );
        signals
    }

    fn source(count: u64, tenants: TenantMark) -> SourceFailures {
        SourceFailures {
            count,
            tenants,
            clients: Vec::new(),
        }
    }

    fn minutes(start: OffsetDateTime, minutes: i64) -> OffsetDateTime {
        start + time::Duration::minutes(minutes)
    }

    #[test]
    fn steady_traffic_never_spikes() {
        let mut rules = rules();
        let key = KeyId::generate();
        let start = OffsetDateTime::UNIX_EPOCH;
        for minute in 0..120 {
            let alerts = rules.evaluate(&uses(key, 200), minutes(start, minute));
            assert!(alerts.is_empty(), "minute {minute}: {alerts:?}");
        }
    }

    #[test]
    fn spike_after_learning_alerts_once() {
        let mut rules = rules();
        let key = KeyId::generate();
        let start = OffsetDateTime::UNIX_EPOCH;
        for minute in 0..5 {
            assert!(
                rules
                    .evaluate(&uses(key, 10), minutes(start, minute))
                    .is_empty()
            );
        }
        let alerts = rules.evaluate(&uses(key, 100), minutes(start, 5));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, AlertRule::RateSpike);
        assert_eq!(alerts[0].details["requests"], 100);
        let again = rules.evaluate(&uses(key, 100), minutes(start, 6));
        assert!(again.is_empty(), "the cooldown holds back a second alert");
    }

    #[test]
    fn spike_below_floor_silent() {
        let mut rules = rules();
        let key = KeyId::generate();
        let start = OffsetDateTime::UNIX_EPOCH;
        for minute in 0..5 {
            rules.evaluate(&uses(key, 1), minutes(start, minute));
        }
        let alerts = rules.evaluate(&uses(key, 49), minutes(start, 5));
        assert!(
            alerts.is_empty(),
            "49 is 49 times the baseline but below the floor"
        );
    }

    #[test]
    fn new_key_spike_waits_for_learning() {
        let mut rules = rules();
        let key = KeyId::generate();
        let alerts = rules.evaluate(&uses(key, 1000), OffsetDateTime::UNIX_EPOCH);
        assert!(alerts.is_empty(), "a key without history has no baseline");
    }

    #[test]
    fn failures_alert_once_per_window() {
        let mut rules = rules();
        let start = OffsetDateTime::UNIX_EPOCH;
        let address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let mut signals = Signals::default();
        signals
            .source_failures
            .insert(address, source(6, TenantMark::Unknown));
        signals.credential_failures.insert(
            "key-a".to_owned(),
            CredentialFailures {
                count: 3,
                tenant_id: None,
                client_id: None,
            },
        );
        assert!(rules.evaluate(&signals, start).is_empty());

        let mut more = Signals::default();
        more.source_failures
            .insert(address, source(4, TenantMark::Unknown));
        more.credential_failures.insert(
            "key-a".to_owned(),
            CredentialFailures {
                count: 2,
                tenant_id: None,
                client_id: None,
            },
        );
        let alerts = rules.evaluate(&more, minutes(start, 1));
        let mut fired: Vec<AlertRule> = alerts.iter().map(|alert| alert.rule).collect();
        fired.sort_by_key(|rule| rule.as_str());
        assert_eq!(
            fired,
            vec![AlertRule::CredentialFailures, AlertRule::SourceFailures]
        );
        assert!(rules.evaluate(&more, minutes(start, 2)).is_empty());

        let later = rules.evaluate(&signals, minutes(start, 6));
        assert!(later.is_empty(), "a new window starts from zero");
    }

    #[test]
    fn source_alert_names_single_tenant() {
        let mut rules = rules();
        let start = OffsetDateTime::UNIX_EPOCH;
        let acme = TenantId::generate();
        let other = TenantId::generate();
        let one = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let both = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let mut first = Signals::default();
        first
            .source_failures
            .insert(one, source(5, TenantMark::One(acme)));
        first
            .source_failures
            .insert(both, source(5, TenantMark::One(acme)));
        assert!(rules.evaluate(&first, start).is_empty());

        // Failures that name no tenant's credential leave the tenant as it
        // was, and a second tenant makes it unknown.
        let mut second = Signals::default();
        second
            .source_failures
            .insert(one, source(5, TenantMark::Unknown));
        second
            .source_failures
            .insert(both, source(5, TenantMark::One(other)));
        let alerts = rules.evaluate(&second, minutes(start, 1));
        let tenant_of = |address: IpAddr| {
            let alert = alerts
                .iter()
                .find(|alert| alert.details["client_ip"] == address.to_string())
                .unwrap();
            alert.tenant_id
        };
        assert_eq!(alerts.len(), 2);
        assert_eq!(tenant_of(one), Some(acme));
        assert_eq!(tenant_of(both), None);
    }

    #[test]
    fn credential_alert_keeps_window_tenant() {
        let mut rules = rules();
        let start = OffsetDateTime::UNIX_EPOCH;
        let acme = TenantId::generate();
        let failures = |count, tenant_id| CredentialFailures {
            count,
            tenant_id,
            client_id: None,
        };
        let mut first = Signals::default();
        first
            .credential_failures
            .insert("client-a".to_owned(), failures(3, Some(acme)));
        assert!(rules.evaluate(&first, start).is_empty());

        let mut second = Signals::default();
        second
            .credential_failures
            .insert("client-a".to_owned(), failures(2, None));
        let alerts = rules.evaluate(&second, minutes(start, 1));
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].tenant_id, Some(acme));
    }

    #[test]
    fn revoked_key_alerts_once_per_window() {
        let mut rules = rules();
        let key = KeyId::generate();
        let mut signals = Signals::default();
        signals.revoked_keys.insert(
            key,
            RevokedKeyUse {
                count: 1,
                tenant_id: None,
                code: "revoked",
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                surface: "gateway",
            },
        );
        let start = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(rules.evaluate(&signals, start).len(), 1);
        assert!(rules.evaluate(&signals, minutes(start, 59)).is_empty());
        assert_eq!(rules.evaluate(&signals, minutes(start, 60)).len(), 1);
    }
}
