//! Anomaly alerts, the outbox of their webhook deliveries, and the networks
//! each credential was used from.
//!
//! An alert and its deliveries are written in one transaction, so an alert
//! is never stored without the rows that send it. Delivery rows are taken
//! with a lease ([`Store::claim_deliveries`]): a node that dies while
//! sending leaves the row due again once the lease ends, so a delivery is
//! sent at least once and receivers drop repeats by delivery id.

use std::fmt;
use std::str::FromStr;

use portcullis_core::ids::{AlertId, DeliveryId, TenantId};
use serde_json::Value;
use time::OffsetDateTime;

use crate::Store;
use crate::error::StoreError;

/// The rule that raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertRule {
    /// A credential's request rate rose far above its learned baseline.
    RateSpike,
    /// Failed authentications against one credential passed a threshold.
    CredentialFailures,
    /// Failed authentications from one client address passed a threshold.
    SourceFailures,
    /// A revoked or expired key was presented, a sign that it leaked.
    RevokedKeyUsed,
    /// A credential was used from a network it had never used.
    NewNetwork,
    /// A leak report named one of our keys.
    LeakReported,
}

impl AlertRule {
    /// Every rule, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::RateSpike,
        Self::CredentialFailures,
        Self::SourceFailures,
        Self::RevokedKeyUsed,
        Self::NewNetwork,
        Self::LeakReported,
    ];

    /// Returns the rule's name as stored, listed and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RateSpike => "rate_spike",
            Self::CredentialFailures => "credential_failures",
            Self::SourceFailures => "source_failures",
            Self::RevokedKeyUsed => "revoked_key_used",
            Self::NewNetwork => "new_network",
            Self::LeakReported => "leak_reported",
        }
    }
}

impl fmt::Display for AlertRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`AlertRule`] or [`AlertSeverity`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert {kind} {value:?}")]
pub struct UnknownAlertName {
    kind: &'static str,
    value: String,
}

impl FromStr for AlertRule {
    type Err = UnknownAlertName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|rule| rule.as_str() == s)
            .ok_or_else(|| UnknownAlertName {
                kind: "rule",
                value: s.to_owned(),
            })
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertSeverity {
    /// Worth a look.
    Info,
    /// Probably an attack or a misuse.
    Warning,
    /// A credential is very likely in the wrong hands.
    Critical,
}

impl AlertSeverity {
    /// Returns the severity's name as stored, listed and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertSeverity {
    type Err = UnknownAlertName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Info, Self::Warning, Self::Critical]
            .into_iter()
            .find(|severity| severity.as_str() == s)
            .ok_or_else(|| UnknownAlertName {
                kind: "severity",
                value: s.to_owned(),
            })
    }
}

/// One raised alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRecord {
    /// The alert's id, time-ordered.
    pub id: AlertId,
    /// When the rule fired.
    pub at: OffsetDateTime,
    /// The tenant of the credential, when the alert concerns one.
    pub tenant_id: Option<TenantId>,
    /// The key or OAuth client id, when the alert concerns one credential.
    pub credential: Option<String>,
    /// The rule that fired.
    pub rule: AlertRule,
    /// How urgent it is.
    pub severity: AlertSeverity,
    /// What the rule saw, as a JSON object. It never contains a secret.
    pub details: Value,
}

/// Which alerts [`Store::list_alerts`] returns. `None` fields match all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only alerts about this tenant.
    pub tenant_id: Option<TenantId>,
    /// Only alerts about this credential id.
    pub credential: Option<String>,
    /// Only alerts of this rule.
    pub rule: Option<AlertRule>,
    /// Only alerts of this severity.
    pub severity: Option<AlertSeverity>,
    /// Only alerts raised at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only alerts raised before this time.
    pub until: Option<OffsetDateTime>,
    /// Only alerts older than this one: the cursor of the next page.
    pub before: Option<AlertId>,
    /// The maximum number of alerts returned, newest first.
    pub limit: i64,
}

/// A delivery of a new alert to one webhook, written with the alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// The delivery id that the receiver sees.
    pub id: DeliveryId,
    /// The webhook's stable id.
    pub webhook: String,
    /// The exact request body, signed at each attempt.
    pub body: String,
}

/// The state of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not yet accepted by the receiver; due at `next_attempt_at`.
    Pending,
    /// The receiver answered with a 2xx status.
    Delivered,
    /// Given up: the attempts ran out or the receiver rejected it for good.
    Failed,
}

impl DeliveryState {
    /// Returns the state's name as stored and listed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!(
                "unknown delivery state {other:?}"
            ))),
        }
    }
}

/// One stored delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery id that the receiver sees.
    pub id: DeliveryId,
    /// The alert it sends.
    pub alert_id: AlertId,
    /// The webhook's stable id.
    pub webhook: String,
    /// The exact request body.
    pub body: String,
    /// Pending, delivered or failed.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: i32,
    /// When a pending delivery is due next.
    pub next_attempt_at: OffsetDateTime,
    /// The outcome of the last failed attempt, without secrets.
    pub last_error: Option<String>,
    /// When the delivery was queued.
    pub created_at: OffsetDateTime,
    /// When it was delivered or given up.
    pub finished_at: Option<OffsetDateTime>,
}

/// The outcome of one delivery attempt, for [`Store::finish_attempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver accepted the delivery.
    Delivered {
        /// When it answered.
        at: OffsetDateTime,
    },
    /// The attempt failed and the delivery is tried again later.
    Retry {
        /// When it is due next.
        next_attempt_at: OffsetDateTime,
        /// What went wrong, without secrets.
        error: String,
    },
    /// The attempt failed and the delivery is given up.
    Failed {
        /// When it was given up.
        at: OffsetDateTime,
        /// What went wrong, without secrets.
        error: String,
    },
}

/// One network that a credential was used from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialNetwork {
    /// The network in CIDR notation, such as `203.0.113.0/24`.
    pub network: String,
    /// The first use from it.
    pub first_seen_at: OffsetDateTime,
    /// The latest use from it that was recorded.
    pub last_seen_at: OffsetDateTime,
}

impl Store {
    /// Stores an alert and one pending delivery per entry of `deliveries`,
    /// due at once, in one transaction.
    ///
    /// Fails with [`StoreError::Conflict`] when the alert or a delivery id
    /// is taken.
    pub async fn insert_alert(
        &self,
        alert: &AlertRecord,
        deliveries: &[NewDelivery],
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert_alert(alert, deliveries))
    }

    /// Lists the alerts that `filter` selects, newest first.
    pub async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, StoreError> {
        dispatch!(self, store => store.list_alerts(filter))
    }

    /// Lists the deliveries of one alert, oldest first.
    pub async fn list_deliveries(&self, alert_id: AlertId) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self, store => store.list_deliveries(alert_id))
    }

    /// Takes up to `limit` pending deliveries due at `now`, oldest due
    /// first, and moves their next attempt to `lease_until`, so that no
    /// other worker takes them meanwhile. Returns them as they were before
    /// the move. On PostgreSQL, rows that another transaction holds are
    /// skipped.
    pub async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self, store => store.claim_deliveries(now, lease_until, limit))
    }

    /// Records the outcome of an attempt on a delivery and counts the
    /// attempt. A delivery that is no longer pending is left alone.
    ///
    /// Fails with [`StoreError::NotFound`] when there is no such pending
    /// delivery.
    pub async fn finish_attempt(
        &self,
        id: DeliveryId,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.finish_attempt(id, outcome))
    }

    /// Deletes the alerts raised before `cutoff`, with their deliveries,
    /// and returns how many alerts went. An alert with a pending delivery
    /// stays until the delivery ends.
    pub async fn prune_alerts(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        dispatch!(self, store => store.prune_alerts(cutoff))
    }

    /// Lists the networks that `credential` was used from, oldest first.
    pub async fn credential_networks(
        &self,
        credential: &str,
    ) -> Result<Vec<CredentialNetwork>, StoreError> {
        dispatch!(self, store => store.credential_networks(credential))
    }

    /// Records a use of `credential` from `network` at `at` and returns
    /// whether the network was new for it. Past `max_networks` networks,
    /// the ones used least recently are forgotten, so each credential keeps
    /// at most that many rows.
    pub async fn record_network(
        &self,
        credential: &str,
        network: &str,
        at: OffsetDateTime,
        max_networks: u32,
    ) -> Result<bool, StoreError> {
        dispatch!(self, store => store.record_network(credential, network, at, max_networks))
    }
}
