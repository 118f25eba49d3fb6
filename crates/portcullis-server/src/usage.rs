//! Buffered per-request writes: last-used times, usage counts, hourly
//! request and failure counts per credential, the scopes each credential
//! exercised, and records of failed authentications.
//!
//! The hot path only adds to in-memory buffers; a background task writes
//! them in one batch a second, and once more at shutdown. A crash can lose
//! up to one second of these counters and failure records, never an
//! administrative change (those are written in their own transaction).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use portcullis_core::ids::{AuditId, ClientId, KeyId, TenantId};
use portcullis_core::scope::Scope;
use portcullis_store::usage::{day_start, hour_start};
use portcullis_store::{
    AuditAction, AuditEvent, CredentialRef, KeyUsage, ScopeUse, Store, UsageCount,
};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::alerts::signals::AlertSignals;
use crate::auth_successes::SuccessCounts;
use crate::client_tenants::ClientTenants;
use crate::pki::verify::Rejection;

/// How often buffers are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Most failure records kept between two flushes. Past it, records are
/// counted but dropped, so a flood of bad keys cannot exhaust memory.
pub const MAX_PENDING_FAILURES: usize = 10_000;

/// How long hourly usage rows are kept. Charts by hour cover the last
/// month; older periods are read by day.
pub const HOUR_RETENTION: time::Duration = time::Duration::days(35);

/// How long daily usage rows and scope uses are kept: two years, so a
/// year-on-year chart and the credential audit's look-back both fit.
pub const DAY_RETENTION: time::Duration = time::Duration::days(730);

/// Flushes between two prunes of old usage rows: one an hour at one flush
/// a second. The first flush prunes too.
const PRUNE_EVERY_FLUSHES: u64 = 3600;

/// In-memory buffers of usage and failures.
#[derive(Default)]
pub struct UsageRecorder {
    usage: Mutex<HashMap<KeyId, KeyUsage>>,
    counts: Mutex<HashMap<(CredentialRef, OffsetDateTime), Tally>>,
    scope_uses: Mutex<HashSet<ScopeUse>>,
    client_tenants: ClientTenants,
    failures: Mutex<Vec<QueuedFailure>>,
    dropped_failures: Mutex<u64>,
    flushes: Mutex<u64>,
    alert_signals: std::sync::Arc<AlertSignals>,
    successes: Mutex<SuccessCounts>,
    /// Success records whose write failed, to be tried again.
    unwritten_successes: Mutex<Vec<AuditEvent>>,
}

/// Requests and failures of one credential in one hour.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// The credential's tenant; `None` for operator keys, and for clients
    /// until the flush looks the tenant up.
    tenant_id: Option<TenantId>,
    requests: i64,
    failures: i64,
}

/// The audit record of a failed authentication, waiting for the flush.
struct QueuedFailure {
    record: AuditEvent,
    /// The OAuth client named, whose tenant the flush adds to a record
    /// without one.
    client_id: Option<ClientId>,
}

/// One failed authentication, to be recorded in the audit log.
#[derive(Debug)]
pub struct FailedAuthentication {
    /// When it happened.
    pub at: OffsetDateTime,
    /// The resolved client address.
    pub client_ip: IpAddr,
    /// The stable code of the failure (`not_found`, `revoked`, …).
    pub code: &'static str,
    /// The key, when one was found (revoked and expired keys).
    pub key_id: Option<KeyId>,
    /// The key's tenant, when a key was found.
    pub tenant_id: Option<TenantId>,
    /// The visible prefix of the presented key, when it had the key format.
    pub visible_prefix: Option<String>,
    /// The OAuth client of a rejected access token, only once its signature
    /// verified (a forged token could name any client).
    pub client_id: Option<ClientId>,
    /// The `jti` of a rejected access token, under the same condition.
    pub token_id: Option<String>,
    /// The surface that saw it (`gateway`, `verify`, `admin`, or `tls` for
    /// a client certificate rejected at the connection).
    pub surface: &'static str,
    /// The serial of the rejected client certificate's leaf, written as in
    /// [`crate::pki::verify::VerifiedClient::serial`], when a certificate
    /// was presented and parses.
    pub certificate_serial: Option<String>,
    /// The issuer distinguished name of that leaf, under the same condition.
    pub certificate_issuer: Option<String>,
}

impl FailedAuthentication {
    /// Describes a rejected client certificate, with the leaf's serial and
    /// issuer when it parses.
    pub fn certificate_rejected(
        at: OffsetDateTime,
        client_ip: IpAddr,
        surface: &'static str,
        rejection: &Rejection,
    ) -> Self {
        let leaf = rejection.leaf();
        Self {
            at,
            client_ip,
            code: rejection.code(),
            key_id: None,
            tenant_id: None,
            visible_prefix: None,
            client_id: None,
            token_id: None,
            surface,
            certificate_serial: leaf.map(|leaf| leaf.serial.clone()),
            certificate_issuer: leaf.map(|leaf| leaf.issuer.clone()),
        }
    }
}

impl UsageRecorder {
    /// Returns the counters that the anomaly rules read, fed by the two
    /// record methods.
    pub fn alert_signals(&self) -> &std::sync::Arc<AlertSignals> {
        &self.alert_signals
    }

    /// Counts one successful use of `key_id`.
    pub fn record_use(&self, key_id: KeyId, at: OffsetDateTime, client_ip: IpAddr) {
        self.alert_signals.record_use(key_id, client_ip);
        let mut usage = lock(&self.usage);
        let entry = usage.entry(key_id).or_insert_with(|| KeyUsage {
            key_id,
            last_used_at: at,
            last_used_from: None,
            count: 0,
        });
        entry.count += 1;
        if at >= entry.last_used_at {
            entry.last_used_at = at;
            entry.last_used_from = Some(client_ip.to_string());
        }
    }

    /// Counts one request that presented `credential` in the hour of `at`,
    /// as a failure when `failed`. `tenant_id` may be `None` for a client:
    /// the flush looks its tenant up.
    pub fn count_request(
        &self,
        credential: CredentialRef,
        tenant_id: Option<TenantId>,
        at: OffsetDateTime,
        failed: bool,
    ) {
        let mut counts = lock(&self.counts);
        let tally = counts.entry((credential, hour_start(at))).or_default();
        tally.tenant_id = tally.tenant_id.or(tenant_id);
        tally.requests += 1;
        if failed {
            tally.failures += 1;
        }
    }

    /// Counts one successful authentication of `credential` for the
    /// `auth.succeeded` audit record of its minute.
    pub fn record_success(
        &self,
        credential: CredentialRef,
        tenant_id: Option<TenantId>,
        at: OffsetDateTime,
        client_ip: IpAddr,
    ) {
        lock(&self.successes).record(credential, tenant_id, at, client_ip);
    }

    /// Notes that `required` scopes authorised a request of `credential`
    /// on the day of `at`, for the credential audit's unused-scope finding.
    pub fn record_scope_use<'a>(
        &self,
        credential: CredentialRef,
        required: impl IntoIterator<Item = &'a Scope>,
        at: OffsetDateTime,
    ) {
        let day = day_start(at);
        let mut uses = lock(&self.scope_uses);
        for scope in required {
            uses.insert(ScopeUse {
                credential,
                day,
                scope: scope.as_str().to_owned(),
            });
        }
    }

    /// Queues an audit record of a failed authentication, and counts it
    /// against the key or client it names.
    pub fn record_failure(&self, failure: FailedAuthentication) {
        self.alert_signals.record_failure(&failure);
        let credential = failure
            .key_id
            .map(CredentialRef::Key)
            .or_else(|| failure.client_id.map(CredentialRef::Client));
        if let Some(credential) = credential {
            self.count_request(credential, failure.tenant_id, failure.at, true);
        }

        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_PENDING_FAILURES {
            *lock(&self.dropped_failures) += 1;
            return;
        }
        let mut details = serde_json::Map::new();
        details.insert("code".to_owned(), Value::from(failure.code));
        details.insert("surface".to_owned(), Value::from(failure.surface));
        if let Some(prefix) = failure.visible_prefix {
            details.insert("key_prefix".to_owned(), Value::from(prefix));
        }
        if let Some(client_id) = failure.client_id {
            details.insert("client_id".to_owned(), Value::from(client_id.to_string()));
        }
        if let Some(token_id) = failure.token_id {
            details.insert("token_id".to_owned(), Value::from(token_id));
        }
        if let Some(serial) = failure.certificate_serial {
            details.insert("certificate_serial".to_owned(), Value::from(serial));
        }
        if let Some(issuer) = failure.certificate_issuer {
            details.insert("certificate_issuer".to_owned(), Value::from(issuer));
        }
        let record = AuditEvent {
            id: AuditId::generate(),
            at: failure.at,
            actor: "anonymous".to_owned(),
            action: AuditAction::AuthFailed,
            tenant_id: failure.tenant_id,
            target: failure
                .key_id
                .map(|id| id.to_string())
                .or_else(|| failure.client_id.map(|id| id.to_string())),
            remote_addr: Some(failure.client_ip.to_string()),
            details: Value::Object(details),
        };
        failures.push(QueuedFailure {
            record,
            client_id: failure.client_id,
        });
    }

    /// Writes everything buffered so far, the success records of the
    /// current minute included, as the server does once it has stopped.
    pub async fn flush_final(&self, store: &Store) {
        self.flush(store).await;
        let records = lock(&self.successes).take_closed(None);
        self.write_successes(store, records).await;
    }

    /// Writes the `auth.succeeded` records, after those of earlier flushes
    /// that failed. On failure they are kept for the next flush, up to
    /// [`MAX_PENDING_FAILURES`] records.
    async fn write_successes(&self, store: &Store, records: Vec<AuditEvent>) {
        let mut batch = std::mem::take(&mut *lock(&self.unwritten_successes));
        batch.extend(records);
        if batch.is_empty() {
            return;
        }
        if let Err(error) = store.append_audit(&batch).await {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&error), records = batch.len(), "writing authentication success records failed; will retry");
            batch.truncate(MAX_PENDING_FAILURES);
            *lock(&self.unwritten_successes) = batch;
        }
    }

    /// Writes everything buffered so far, except the success records of
    /// the current minute. On failure a batch is put back, to be tried
    /// again at the next flush.
    pub async fn flush(&self, store: &Store) {
        let usage: Vec<KeyUsage> = lock(&self.usage).drain().map(|(_, usage)| usage).collect();
        if !usage.is_empty()
            && let Err(error) = store.record_usage(&usage).await
        {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&error), keys = usage.len(), "writing key usage failed; will retry");
            self.restore_usage(usage);
        }

        self.flush_counts(store).await;
        self.flush_scope_uses(store).await;

        let mut failures: Vec<QueuedFailure> = std::mem::take(&mut *lock(&self.failures));
        self.attach_client_tenants(store, &mut failures).await;
        let records: Vec<AuditEvent> = failures.iter().map(|f| f.record.clone()).collect();
        if !records.is_empty()
            && let Err(error) = store.append_audit(&records).await
        {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&error), records = failures.len(), "writing failure records failed; will retry");
            let mut pending = lock(&self.failures);
            let room = MAX_PENDING_FAILURES.saturating_sub(pending.len());
            pending.extend(failures.into_iter().take(room));
        }

        let (successes, dropped_successes) = {
            let mut counts = lock(&self.successes);
            let closed = counts.take_closed(Some(OffsetDateTime::now_utc()));
            (closed, std::mem::take(&mut counts.dropped))
        };
        self.write_successes(store, successes).await;
        if dropped_successes > 0 {
            tracing::warn!(
                dropped = dropped_successes,
                "authentication successes not recorded because the buffer was full"
            );
        }

        let dropped = std::mem::take(&mut *lock(&self.dropped_failures));
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "failure records dropped because the buffer was full"
            );
        }
    }

    /// Gives each failure record that names an OAuth client but no tenant
    /// the client's tenant. Unknown client ids stay without a tenant.
    async fn attach_client_tenants(&self, store: &Store, failures: &mut [QueuedFailure]) {
        let unattached = failures
            .iter()
            .filter(|failure| failure.record.tenant_id.is_none())
            .filter_map(|failure| failure.client_id);
        let tenants = self.client_tenants.resolve(store, unattached).await;
        for failure in failures {
            if failure.record.tenant_id.is_none()
                && let Some(client_id) = failure.client_id
            {
                failure.record.tenant_id = tenants.get(&client_id).copied();
            }
        }
    }

    /// Writes the hourly counts, after looking up the tenants of clients
    /// not seen before. On failure the counts are put back.
    async fn flush_counts(&self, store: &Store) {
        let pending: Vec<((CredentialRef, OffsetDateTime), Tally)> =
            lock(&self.counts).drain().collect();
        if pending.is_empty() {
            return;
        }
        let unattached = pending.iter().filter_map(|((credential, _), tally)| {
            match (tally.tenant_id, credential) {
                (None, CredentialRef::Client(client_id)) => Some(*client_id),
                _ => None,
            }
        });
        let client_tenants = self.client_tenants.resolve(store, unattached).await;
        let mut batch = Vec::with_capacity(pending.len());
        for ((credential, hour), tally) in &pending {
            let tenant_id = match (tally.tenant_id, credential) {
                (Some(tenant_id), _) => Some(tenant_id),
                (None, CredentialRef::Client(client_id)) => client_tenants.get(client_id).copied(),
                (None, CredentialRef::Key(_)) => None,
            };
            batch.push(UsageCount {
                credential: *credential,
                tenant_id,
                hour: *hour,
                requests: tally.requests,
                failures: tally.failures,
            });
        }
        if let Err(error) = store.record_usage_counts(&batch).await {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&error), credentials = batch.len(), "writing usage counts failed; will retry");
            let mut counts = lock(&self.counts);
            for ((credential, hour), old) in pending {
                let tally = counts.entry((credential, hour)).or_default();
                tally.tenant_id = tally.tenant_id.or(old.tenant_id);
                tally.requests += old.requests;
                tally.failures += old.failures;
            }
        }
    }

    /// Writes the scope uses; on failure they are put back.
    async fn flush_scope_uses(&self, store: &Store) {
        let pending: Vec<ScopeUse> = lock(&self.scope_uses).drain().collect();
        if pending.is_empty() {
            return;
        }
        if let Err(error) = store.record_scope_uses(&pending).await {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&error), rows = pending.len(), "writing scope uses failed; will retry");
            lock(&self.scope_uses).extend(pending);
        }
    }

    /// Deletes usage rows past [`HOUR_RETENTION`] and [`DAY_RETENTION`],
    /// on the first flush and every [`PRUNE_EVERY_FLUSHES`]th after it.
    async fn prune_when_due(&self, store: &Store, now: OffsetDateTime) {
        let due = {
            let mut flushes = lock(&self.flushes);
            let due = flushes.is_multiple_of(PRUNE_EVERY_FLUSHES);
            *flushes += 1;
            due
        };
        if !due {
            return;
        }
        match store
            .prune_usage(now - HOUR_RETENTION, now - DAY_RETENTION)
            .await
        {
            Ok(deleted) => tracing::debug!(deleted, "pruned old usage rows"),
            Err(error) => {
                tracing::warn!(error = %crate::telemetry::ErrorChain(&error), "pruning old usage rows failed; will retry in an hour");
            }
        }
    }

    fn restore_usage(&self, batch: Vec<KeyUsage>) {
        let mut usage = lock(&self.usage);
        for old in batch {
            let entry = usage.entry(old.key_id).or_insert_with(|| KeyUsage {
                count: 0,
                ..old.clone()
            });
            entry.count += old.count;
            if old.last_used_at > entry.last_used_at {
                entry.last_used_at = old.last_used_at;
                entry.last_used_from = old.last_used_from;
            }
        }
    }
}

/// Flushes `recorder` every [`FLUSH_INTERVAL`] until `shutdown`. The server
/// flushes once more after the last request has drained.
pub async fn flush_periodically(
    recorder: std::sync::Arc<UsageRecorder>,
    store: Store,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(FLUSH_INTERVAL) => {
                recorder.flush(&store).await;
                recorder.prune_when_due(&store, OffsetDateTime::now_utc()).await;
            }
        }
    }
}

/// Locks a buffer. A panic while holding it cannot leave a half-written
/// map or vector behind, so a poisoned lock is still safe to use.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use portcullis_store::{Granularity, UsageQuery, UsageSubject};

    use super::*;

    fn failure(key_id: KeyId, tenant_id: TenantId, at: OffsetDateTime) -> FailedAuthentication {
        FailedAuthentication {
            at,
            client_ip: IpAddr::from([198, 51, 100, 7]),
            code: "revoked",
            key_id: Some(key_id),
            tenant_id: Some(tenant_id),
            visible_prefix: None,
            client_id: None,
            token_id: None,
            surface: "gateway",
            certificate_serial: None,
            certificate_issuer: None,
        }
    }

    async fn day_totals(store: &Store, key: CredentialRef, at: OffsetDateTime) -> (i64, i64) {
        let points = store
            .usage_series(&UsageQuery {
                subject: UsageSubject::Credential(key),
                granularity: Granularity::Day,
                since: day_start(at),
                until: day_start(at) + time::Duration::DAY,
            })
            .await
            .unwrap();
        points.iter().fold((0, 0), |(r, f), point| {
            (r + point.requests, f + point.failures)
        })
    }

    #[tokio::test]
    async fn flush_writes_counts_and_scope_uses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let store = Store::open_sqlite(&path)
            .await
            .unwrap()
            .attach_audit_key(
                portcullis_core::crypto::MasterKey::generate()
                    .unwrap()
                    .audit_chain_key(),
            )
            .await
            .unwrap();
        let recorder = UsageRecorder::default();
        let key_id = KeyId::generate();
        let key = CredentialRef::Key(key_id);
        let tenant = TenantId::generate();
        let at = OffsetDateTime::now_utc();

        recorder.count_request(key, Some(tenant), at, false);
        recorder.count_request(key, Some(tenant), at, false);
        recorder.record_failure(failure(key_id, tenant, at));
        let scopes =
            portcullis_core::scope::ScopeSet::parse_list("orders:read,orders:write").unwrap();
        recorder.record_scope_use(key, scopes.iter(), at);
        recorder.record_scope_use(key, scopes.iter(), at);
        recorder.flush(&store).await;

        assert_eq!(day_totals(&store, key, at).await, (3, 1));
        let used = store.scope_uses_since(day_start(at)).await.unwrap();
        assert_eq!(
            used,
            [
                (key, "orders:read".to_owned()),
                (key, "orders:write".to_owned())
            ]
        );
        // The buffers are empty after a flush, so a second adds nothing.
        recorder.flush(&store).await;
        assert_eq!(day_totals(&store, key, at).await, (3, 1));
    }

    #[tokio::test]
    async fn failed_flush_keeps_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let closed = Store::open_sqlite(&path).await.unwrap();
        closed.close().await;
        let recorder = UsageRecorder::default();
        let key = CredentialRef::Key(KeyId::generate());
        let at = OffsetDateTime::now_utc();

        recorder.count_request(key, None, at, true);
        recorder.flush(&closed).await;
        recorder.count_request(key, None, at, false);

        let store = Store::open_sqlite(&path).await.unwrap();
        recorder.flush(&store).await;
        assert_eq!(day_totals(&store, key, at).await, (2, 1));
    }
}
