//! The `jti` deny list: access tokens revoked before they expire.
//!
//! Tokens are validated offline, so a revocation reaches the gateway only
//! through this list. It is loaded from the store at start and fed by the
//! change feed, which writes one change row per revoked token, and an entry
//! is dropped once its token would have expired anyway.

use std::collections::HashMap;
use std::sync::RwLock;

use portcullis_store::{Store, StoreError};
use time::OffsetDateTime;

/// Revoked token ids with the expiry of their tokens.
#[derive(Debug, Default)]
pub struct DenyList {
    entries: RwLock<HashMap<String, OffsetDateTime>>,
}

impl DenyList {
    /// Loads every revoked token that has not expired at `now`.
    pub async fn load(store: &Store, now: OffsetDateTime) -> Result<Self, StoreError> {
        let list = Self::default();
        for (jti, expires_at) in store.live_revoked_jtis(now).await? {
            list.insert(jti, expires_at);
        }
        Ok(list)
    }

    /// Whether the token `jti` is revoked.
    pub fn contains(&self, jti: &str) -> bool {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(jti)
    }

    /// Adds a revoked token.
    pub fn insert(&self, jti: String, expires_at: OffsetDateTime) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(jti, expires_at);
    }

    /// Drops the entries of tokens expired at `now`, allowing `leeway` for
    /// validators whose clocks run behind.
    pub fn prune(&self, now: OffsetDateTime, leeway: time::Duration) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, expires_at| *expires_at + leeway > now);
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn entries_expire_with_their_tokens() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        let list = DenyList::default();
        list.insert("a".into(), now + Duration::minutes(5));
        list.insert("b".into(), now - Duration::minutes(5));
        list.prune(now, Duration::seconds(60));
        assert!(list.contains("a"));
        assert!(!list.contains("b"));
        assert_eq!(list.len(), 1);
    }
}
