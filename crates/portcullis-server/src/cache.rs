//! The credential cache and the change feed that keeps it correct.
//!
//! A verified key is cached by the keyed hash of its secret, so a request
//! with a cached key touches no database. The cache stores facts about the
//! credential (tenant, scopes, expiry, status); what a route requires is
//! checked on every request, cached or not.
//!
//! Correctness comes from the store's change feed: every change to a key
//! writes a change row in the same transaction, and [`follow_changes`]
//! polls those rows (and, on PostgreSQL, wakes on `LISTEN/NOTIFY`) and drops
//! the changed keys from the cache. Three backstops keep a lost or late
//! notification from letting a revoked key through:
//!
//! - every poll re-reads the last [`CHANGE_LOOKBACK`] of changes, which
//!   covers PostgreSQL sequence values that commit out of order and a load
//!   that raced with a revocation;
//! - an entry older than [`MAX_ENTRY_AGE`] is treated as a miss;
//! - when the feed has not been read for [`FEED_STALE_AFTER`], the cache is
//!   not trusted at all and every request goes to the store, which fails
//!   closed when the store is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_core::credential::ApiKeyRecord;
use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::KeyId;
use portcullis_store::{Store, StoreError};
use quick_cache::sync::Cache;
use tokio_util::sync::CancellationToken;

use crate::gateway::client_limits::ClientLimits;
use crate::oauth::server::AuthorizationServer;
use crate::pki::clients::CertificateClients;
use crate::pki::trust::ClientCertificateTrust;

/// How many keys the cache holds. The gateway benchmark measured about
/// 1 KiB of resident memory per key used (an estimate that includes the
/// usage buffers), so a full cache costs about 200 MB. A deployment with more
/// active keys than this gets cache misses (one store lookup each), not
/// failures.
pub const CACHE_CAPACITY: usize = 200_000;

/// Entries older than this are reloaded even without a change notice. The
/// change feed keeps entries correct, and this age is only a backstop for a
/// lost notice. So it can be long enough that a key used every few minutes
/// stays cached.
pub const MAX_ENTRY_AGE: Duration = Duration::from_secs(300);

/// How often the change feed is polled. Four polls a second keep a
/// revocation's delay well under one second on SQLite, where no
/// notification exists.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How far back each poll re-reads changes.
pub const CHANGE_LOOKBACK: time::Duration = time::Duration::seconds(5);

/// After this long without a successful poll the cache is bypassed.
pub const FEED_STALE_AFTER: Duration = Duration::from_secs(3);

/// The cached lookup result for one presented secret.
#[derive(Clone, Debug)]
pub struct CacheEntry {
    /// The stored key, or `None` when no key has this hash.
    pub record: Option<Arc<ApiKeyRecord>>,
    loaded_at: Instant,
}

/// The credential cache.
pub struct CredentialCache {
    by_hash: Cache<SecretHash, CacheEntry>,
    hash_by_id: Cache<KeyId, SecretHash>,
    started: Instant,
    /// Milliseconds since `started` of the last successful feed poll.
    last_poll_ms: AtomicU64,
}

impl CredentialCache {
    /// Creates an empty cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            by_hash: Cache::new(capacity),
            hash_by_id: Cache::new(capacity),
            started: Instant::now(),
            last_poll_ms: AtomicU64::new(0),
        }
    }

    /// The cached entry for `hash`, if it is fresh and the feed is current.
    pub fn get(&self, hash: &SecretHash) -> Option<CacheEntry> {
        if !self.is_trusted() {
            return None;
        }
        let entry = self.by_hash.get(hash)?;
        (entry.loaded_at.elapsed() < MAX_ENTRY_AGE).then_some(entry)
    }

    /// Stores what a lookup found. `loaded_at` is when the lookup began,
    /// so the entry is never younger than the data in it.
    pub fn insert(&self, hash: SecretHash, record: Option<Arc<ApiKeyRecord>>, loaded_at: Instant) {
        if let Some(record) = &record {
            self.hash_by_id.insert(record.id, hash.clone());
        }
        self.by_hash.insert(hash, CacheEntry { record, loaded_at });
    }

    /// Drops the entry of a changed key.
    pub fn invalidate(&self, key_id: KeyId) {
        if let Some(hash) = self.hash_by_id.get(&key_id) {
            self.by_hash.remove(&hash);
        }
    }

    /// Drops every entry, for a feed gap the look-back cannot cover.
    pub fn clear(&self) {
        self.by_hash.clear();
        self.hash_by_id.clear();
    }

    /// How many secrets are cached.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn mark_polled(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_poll_ms.store(elapsed.max(1), Ordering::Release);
    }

    /// Whether the change feed was read recently enough to trust entries.
    pub fn is_trusted(&self) -> bool {
        let last = self.last_poll_ms.load(Ordering::Acquire);
        if last == 0 {
            return false;
        }
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(last) < u64::try_from(FEED_STALE_AFTER.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Follows the store's change feed until `shutdown`: drops changed keys
/// from `cache`, adds revoked access tokens to the deny list, wakes the
/// signing-key task when keys changed, passes revoked certificate serials
/// to the listener's `certificates` trust, and empties `certificate_clients`
/// when a client or a certificate changed.
pub async fn follow_changes(
    store: Store,
    cache: Arc<CredentialCache>,
    oauth: Arc<AuthorizationServer>,
    certificates: Option<Arc<ClientCertificateTrust>>,
    certificate_clients: Arc<CertificateClients>,
    client_limits: Arc<ClientLimits>,
    shutdown: CancellationToken,
) {
    let mut cursor: Option<i64> = None;
    let mut listener = None;
    let mut failing = false;

    loop {
        if listener.is_none() {
            listener = store.listen().await.ok().flatten();
        }
        let targets = Targets {
            cache: &cache,
            oauth: &oauth,
            certificates: certificates.as_deref(),
            certificate_clients: &certificate_clients,
            client_limits: &client_limits,
        };
        match poll_once(&store, &targets, &mut cursor).await {
            Ok(()) => {
                if failing {
                    tracing::info!("change feed recovered");
                    failing = false;
                }
                cache.mark_polled();
            }
            Err(error) => {
                // Logged once per outage: the cache stops being trusted by
                // itself once polls stop succeeding.
                if !failing {
                    tracing::warn!(error = %crate::telemetry::ErrorChain(&error), "change feed poll failed; bypassing the credential cache until it recovers");
                    failing = true;
                }
            }
        }

        let notified = async {
            match listener.as_mut() {
                Some(listener) => listener.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            result = notified => {
                if result.is_err() {
                    // Notifications sent while the listener was down are lost;
                    // the look-back poll below catches them up.
                    listener = None;
                }
            }
        }
    }
}

/// The caches and sets that a poll of the change feed updates.
struct Targets<'a> {
    cache: &'a CredentialCache,
    oauth: &'a AuthorizationServer,
    certificates: Option<&'a ClientCertificateTrust>,
    certificate_clients: &'a CertificateClients,
    client_limits: &'a ClientLimits,
}

async fn poll_once(
    store: &Store,
    targets: &Targets<'_>,
    cursor: &mut Option<i64>,
) -> Result<(), StoreError> {
    let Targets {
        cache,
        oauth,
        certificates,
        certificate_clients,
        client_limits,
    } = *targets;
    let Some(last) = *cursor else {
        // First poll: nothing is cached yet, so only the position matters.
        *cursor = Some(store.latest_change().await?);
        return Ok(());
    };
    let changes = store.changes_since(last, CHANGE_LOOKBACK).await?;
    let mut newest = last;
    let mut keys_changed = false;
    let mut clients_changed = false;
    for change in &changes {
        if let Some(key_id) = change.key_id {
            cache.invalidate(key_id);
        }
        if let (Some(jti), Some(expires_at)) = (&change.jti, change.jti_expires_at) {
            oauth.deny.insert(jti.clone(), expires_at);
        }
        if let (Some(serial), Some(certificates)) = (&change.cert_serial, certificates) {
            certificates.certificate_revoked(serial);
        }
        // Only new rows trigger a rebuild: the look-back returns the same
        // rows again, and a rebuild reads every trusted CA anyway.
        if let (Some(_), Some(certificates)) = (change.trusted_ca_id, certificates)
            && change.id > last
        {
            certificates.trusted_cas_changed();
        }
        keys_changed |= change.kid.is_some() && change.id > last;
        // A revoked access token's row names its client too, but changes
        // no mapping; only client, certificate and trusted CA rows do.
        clients_changed |= (change.client_id.is_some() && change.jti.is_none())
            || change.cert_serial.is_some()
            || change.trusted_ca_id.is_some();
        newest = newest.max(change.id);
    }
    if keys_changed {
        oauth.notify_keys_changed();
    }
    // The look-back returns the same rows for CHANGE_LOOKBACK, so one client
    // change empties the cache on each poll in that time. That costs store
    // lookups after a rare admin change, never a stale result.
    if clients_changed {
        certificate_clients.invalidate_all();
        client_limits.invalidate_all();
    }
    *cursor = Some(newest);
    Ok(())
}
