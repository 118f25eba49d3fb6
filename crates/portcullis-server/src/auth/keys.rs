//! API key verification: format check, keyed hash, cache, store.

use std::sync::Arc;
use std::time::Instant;

use portcullis_core::credential::{ApiKeyRecord, KeyRejection};
use portcullis_core::crypto::Pepper;
use portcullis_core::key::check_format;
use portcullis_store::{Store, StoreError};
use time::OffsetDateTime;

use crate::cache::CredentialCache;

/// Why a key could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The key was refused: a client's mistake or a dead key.
    #[error("API key rejected: {}", .rejection.code())]
    Rejected {
        /// Why.
        rejection: KeyRejection,
        /// The stored key, when one was found (revoked or expired).
        key: Option<Arc<ApiKeyRecord>>,
    },
    /// The store could not be asked, so no decision can be made.
    #[error("credential store failed")]
    Store(#[source] StoreError),
}

impl VerifyError {
    fn rejected(rejection: KeyRejection) -> Self {
        Self::Rejected {
            rejection,
            key: None,
        }
    }
}

/// Verifies presented API keys, from the cache when it can.
pub struct KeyVerifier {
    store: Store,
    pepper: Pepper,
    cache: Arc<CredentialCache>,
}

impl KeyVerifier {
    /// Creates a verifier over `store`, hashing with `pepper`.
    pub fn new(store: Store, pepper: Pepper, cache: Arc<CredentialCache>) -> Self {
        Self {
            store,
            pepper,
            cache,
        }
    }

    /// The cache, for the change feed and for metrics.
    pub fn cache(&self) -> &Arc<CredentialCache> {
        &self.cache
    }

    /// Checks a presented key and returns its record when it is usable at
    /// `now`.
    ///
    /// A string that fails the format check is rejected before any hash or
    /// lookup. Expiry is judged at every call, so a cached key stops at its
    /// expiry time without waiting for the cache.
    pub async fn verify(
        &self,
        presented: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<ApiKeyRecord>, VerifyError> {
        check_format(presented)
            .map_err(|error| VerifyError::rejected(KeyRejection::InvalidFormat(error)))?;
        let hash = self.pepper.hash(presented.as_bytes());

        let cached = self.cache.get(&hash);
        if let Some(metrics) = crate::metrics::get() {
            metrics.record_cache_lookup(cached.is_some());
        }
        let record = match cached {
            Some(entry) => entry.record,
            None => {
                let started = Instant::now();
                let found = self
                    .store
                    .find_key_by_hash(&hash)
                    .await
                    .map_err(VerifyError::Store)?;
                let record = found.map(Arc::new);
                self.cache.insert(hash, record.clone(), started);
                record
            }
        };

        let record = record.ok_or(VerifyError::rejected(KeyRejection::NotFound))?;
        if let Some(rejection) = record.rejection(now) {
            return Err(VerifyError::Rejected {
                rejection,
                key: Some(record),
            });
        }
        Ok(record)
    }
}
