//! Anomaly alerts: rules over recent traffic, stored alerts and their
//! signed webhook deliveries.
//!
//! - [`signals`]: counters that the request path feeds, in memory only.
//! - [`rules`]: rate spikes, failure thresholds and revoked keys in use.
//! - [`networks`]: first use of a credential from a new network.
//! - [`delivery`]: the outbox worker, its retries and the signature.
//!
//! The request path never waits on this module: it bumps counters (through
//! [`crate::usage::UsageRecorder`]), and a background task takes them once
//! per [`EVALUATION_INTERVAL`], applies the rules and raises alerts. Raising
//! stores the alert with one delivery per webhook in one transaction, logs
//! it, and wakes the delivery worker.

pub mod delivery;
pub mod networks;
pub mod rules;
pub mod signals;

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::ids::{AlertId, DeliveryId, KeyId, TenantId};
use portcullis_store::{AlertRecord, AlertRule, AlertSeverity, NewDelivery, Store, StoreError};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::delivery::Sender;
use self::networks::NetworkRule;
use self::rules::CountingRules;
use self::signals::AlertSignals;
use crate::client_tenants::ClientTenants;
use crate::config::AlertsConfig;
use crate::telemetry::ErrorChain;

/// How often the rules look at the counters.
pub const EVALUATION_INTERVAL: Duration = Duration::from_secs(1);

/// How often alerts past `[alerts] retention` are deleted.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Most network checks per tick. Each unknown network costs a store write,
/// so a key used from thousands of addresses at once is checked over
/// several ticks rather than stalling the others.
const MAX_NETWORK_CHECKS_PER_TICK: usize = 1_000;

/// An alert that a rule or a leak report wants raised.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// The credential's tenant, when known. When `None` and `key_id` is
    /// set, the tenant is looked up from the key.
    pub tenant_id: Option<TenantId>,
    /// The key or OAuth client id, when the alert concerns one credential.
    pub credential: Option<String>,
    /// The key, when the credential is an API key.
    pub key_id: Option<KeyId>,
    /// The rule that fired.
    pub rule: AlertRule,
    /// The alert's urgency.
    pub severity: AlertSeverity,
    /// The facts the rule saw, as a JSON object without secrets.
    pub details: Value,
}

/// Raises alerts: stores them, logs them and queues their deliveries.
pub struct Alerts {
    store: Store,
    config: AlertsConfig,
    sender: Arc<Sender>,
    wake: Arc<Notify>,
    client_tenants: ClientTenants,
}

impl Alerts {
    /// Builds the alert handle from the `[alerts]` table.
    ///
    /// # Errors
    ///
    /// Fails when the webhook client cannot be built (see [`Sender::new`]).
    pub fn new(config: &AlertsConfig, store: Store) -> std::io::Result<Self> {
        Ok(Self {
            store,
            config: config.clone(),
            sender: Arc::new(Sender::new(config)?),
            wake: Arc::new(Notify::new()),
            client_tenants: ClientTenants::default(),
        })
    }

    /// Stores `alert` with one delivery per webhook, logs it and wakes the
    /// delivery worker. Returns the stored record.
    pub async fn raise(&self, alert: NewAlert) -> Result<AlertRecord, StoreError> {
        let tenant_id = match (alert.tenant_id, alert.key_id) {
            (Some(tenant_id), _) => Some(tenant_id),
            (None, Some(key_id)) => self
                .store
                .find_key(key_id)
                .await?
                .and_then(|key| key.tenant_id),
            (None, None) => None,
        };
        let record = AlertRecord {
            id: AlertId::generate(),
            at: OffsetDateTime::now_utc(),
            tenant_id,
            credential: alert.credential,
            rule: alert.rule,
            severity: alert.severity,
            details: alert.details,
        };
        let deliveries: Vec<NewDelivery> = self
            .sender
            .webhook_ids()
            .map(|webhook| {
                let id = DeliveryId::generate();
                NewDelivery {
                    id,
                    webhook: webhook.to_owned(),
                    body: payload(&record, id).to_string(),
                }
            })
            .collect();
        self.store.insert_alert(&record, &deliveries).await?;
        tracing::warn!(
            alert_id = %record.id,
            rule = %record.rule,
            severity = %record.severity,
            tenant_id = record.tenant_id.map(|id| id.to_string()).as_deref().unwrap_or("-"),
            credential = record.credential.as_deref().unwrap_or("-"),
            details = %record.details,
            "alert raised"
        );
        crate::metrics::record_alert(record.rule.as_str());
        if !deliveries.is_empty() {
            self.wake.notify_one();
        }
        Ok(record)
    }

    /// Runs the rules every [`EVALUATION_INTERVAL`], the delivery worker
    /// and the pruning of old alerts until `shutdown`. With `[alerts]
    /// enabled = false` the rules do not run, and leak-report alerts are
    /// still delivered.
    pub async fn run(self: Arc<Self>, signals: Arc<AlertSignals>, shutdown: CancellationToken) {
        let worker = tokio::spawn(delivery::deliver_periodically(
            Arc::clone(&self.sender),
            self.store.clone(),
            Arc::clone(&self.wake),
            shutdown.clone(),
        ));
        let rules = async {
            if self.config.enabled {
                signals.enable();
                self.evaluate_periodically(&signals, &shutdown).await;
            }
        };
        tokio::join!(rules, self.prune_periodically(&shutdown));
        let _ = worker.await;
    }

    /// Deletes alerts older than the retention period, now and every
    /// [`PRUNE_INTERVAL`], until `shutdown`.
    async fn prune_periodically(&self, shutdown: &CancellationToken) {
        loop {
            let cutoff = OffsetDateTime::now_utc() - self.config.retention;
            match self.store.prune_alerts(cutoff).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "deleted alerts past their retention"),
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), "deleting old alerts failed; will retry");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PRUNE_INTERVAL) => {}
            }
        }
    }

    async fn evaluate_periodically(&self, signals: &AlertSignals, shutdown: &CancellationToken) {
        let mut counting = CountingRules::new(
            self.config.rate_spike.clone(),
            self.config.failures.clone(),
            self.config.revoked_key.clone(),
        );
        let mut networks = NetworkRule::new(self.config.new_network.clone());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(EVALUATION_INTERVAL) => {}
            }
            let (mut taken, dropped) = signals.take();
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "alert signals dropped because a counter map was full"
                );
            }
            self.attach_client_tenants(&mut taken).await;
            let now = OffsetDateTime::now_utc();
            let mut raised = counting.evaluate(&taken, now);
            raised.extend(self.check_networks(&mut networks, &taken, now).await);
            for alert in raised {
                let rule = alert.rule;
                if let Err(error) = self.raise(alert).await {
                    tracing::error!(error = %ErrorChain(&error), rule = %rule, "storing an alert failed; it is lost");
                }
            }
        }
    }

    /// Gives the failures that named OAuth clients their clients' tenants.
    /// The request path records only the client id, which the caller chose,
    /// so the lookup happens here, once per client and tick at most.
    async fn attach_client_tenants(&self, taken: &mut signals::Signals) {
        let from_credentials = taken
            .credential_failures
            .values()
            .filter(|failures| failures.tenant_id.is_none())
            .filter_map(|failures| failures.client_id);
        let from_sources = taken
            .source_failures
            .values()
            .flat_map(|source| source.clients.iter().copied());
        let unattached: Vec<_> = from_credentials.chain(from_sources).collect();
        if unattached.is_empty() {
            return;
        }
        let tenants = self.client_tenants.resolve(&self.store, unattached).await;
        for failures in taken.credential_failures.values_mut() {
            if failures.tenant_id.is_none()
                && let Some(client_id) = failures.client_id
            {
                failures.tenant_id = tenants.get(&client_id).copied();
            }
        }
        for source in taken.source_failures.values_mut() {
            for client_id in std::mem::take(&mut source.clients) {
                if let Some(tenant_id) = tenants.get(&client_id) {
                    source.tenants.add(*tenant_id);
                }
            }
        }
    }

    async fn check_networks(
        &self,
        networks: &mut NetworkRule,
        taken: &signals::Signals,
        now: OffsetDateTime,
    ) -> Vec<NewAlert> {
        let mut alerts = Vec::new();
        let mut sightings = Vec::new();
        for (key_id, uses) in &taken.uses {
            for address in &uses.addresses {
                sightings.push((*key_id, *address));
            }
        }
        sightings.truncate(MAX_NETWORK_CHECKS_PER_TICK);
        for (key_id, address) in sightings {
            match networks.observe(&self.store, key_id, address, now).await {
                Ok(Some(alert)) => alerts.push(alert),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), key_id = %key_id, "recording a credential's network failed; it is checked again at its next use");
                }
            }
        }
        alerts
    }
}

/// Returns the JSON that a webhook receives for `alert` in delivery
/// `delivery_id`. The delivery id is inside the signed body, so a replayed
/// request cannot pass as a new delivery by changing a header.
pub fn payload(alert: &AlertRecord, delivery_id: DeliveryId) -> Value {
    json!({
        "delivery_id": delivery_id,
        "alert": alert_json(alert),
    })
}

/// Returns the public view of an alert, as listed and sent.
pub fn alert_json(alert: &AlertRecord) -> Value {
    json!({
        "id": alert.id,
        "at": alert.at.format(&Rfc3339).ok(),
        "tenant_id": alert.tenant_id,
        "credential": alert.credential,
        "rule": alert.rule.as_str(),
        "severity": alert.severity.as_str(),
        "details": alert.details,
    })
}
