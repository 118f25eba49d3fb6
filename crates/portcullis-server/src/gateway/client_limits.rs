//! The rate limits of the OAuth clients whose access tokens call the
//! gateway.
//!
//! An access token carries its client's id but not the client's limits,
//! which the operator can change at any time. The limits are read from the
//! store on a client's first request and cached, so later requests make no
//! store round trip. The change feed calls [`ClientLimits::invalidate_all`]
//! for every change that names a client. Entries are also read again once
//! they are [`MAX_ENTRY_AGE`] old, in case a change notice was lost.
//!
//! A client certificate caller needs none of this: its client record comes
//! with the certificate mapping, which the same changes invalidate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_core::credential::RateLimits;
use portcullis_core::ids::ClientId;
use portcullis_store::{Store, StoreError};
use quick_cache::sync::Cache;

/// Number of clients whose limits are cached. A miss costs one store read.
pub const CAPACITY: usize = 10_000;

/// Age after which an entry is read again.
pub const MAX_ENTRY_AGE: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Entry {
    limits: Arc<RateLimits>,
    loaded_at: Instant,
}

/// Cached rate limits of OAuth clients, by client id.
pub struct ClientLimits {
    entries: Cache<ClientId, Entry>,
    /// Raised by every invalidation. A read that started before one does
    /// not cache its result, which may predate the change.
    generation: AtomicU64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            entries: Cache::new(CAPACITY),
            generation: AtomicU64::new(0),
        }
    }
}

impl ClientLimits {
    /// Returns the limits of `client_id`. A client the store does not know
    /// has none; its tokens fail elsewhere (a revoked client's tokens are
    /// revoked with it).
    ///
    /// # Errors
    ///
    /// The store error when a miss cannot be read. The caller rejects the
    /// request (fail closed), because serving it without the client's
    /// limits would lift them.
    pub async fn get(
        &self,
        store: &Store,
        client_id: ClientId,
    ) -> Result<Arc<RateLimits>, StoreError> {
        if let Some(entry) = self.entries.get(&client_id)
            && entry.loaded_at.elapsed() < MAX_ENTRY_AGE
        {
            return Ok(entry.limits);
        }

        let generation = self.generation.load(Ordering::Acquire);
        let limits = Arc::new(
            store
                .find_client(client_id)
                .await?
                .map(|client| client.limits)
                .unwrap_or_default(),
        );
        if self.generation.load(Ordering::Acquire) == generation {
            self.entries.insert(
                client_id,
                Entry {
                    limits: Arc::clone(&limits),
                    loaded_at: Instant::now(),
                },
            );
        }
        Ok(limits)
    }

    /// Drops every entry, after a change to any client.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }
}
