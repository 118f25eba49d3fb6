//! The token-signing keys of a running server: loaded from the store,
//! rotated by the rule in [`super::rotation`], and swapped whole so that
//! signing and validation read them without a lock.
//!
//! Every node runs the rule. Two nodes applying the same step at once is
//! harmless: the store lets one key be active and names each key once, and
//! the loser re-reads what the winner wrote.

use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_core::credential::check_label;
use portcullis_core::crypto::SealingKey;
use portcullis_core::signing::{SigningKeyRecord, SigningKeyState};
use portcullis_store::{AuditContext, SigningKeyTakeover, Store, StoreError};
use time::OffsetDateTime;

use super::rotation::{RotationPlan, RotationPolicy, plan};
use super::signing::{KeySet, SigningError, generate_signing_key};

/// Actor named in audit records of rotations that the schedule made.
const SCHEDULE_ACTOR: &str = "signing-key-schedule";

/// Why the signing keys could not be loaded or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The store failed.
    #[error("signing key store operation failed")]
    Store(#[from] StoreError),
    /// A key could not be generated, opened or checked.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The revocation reason is empty or too long.
    #[error("{0}")]
    InvalidReason(String),
    /// The kid is empty, too long or has a character that no Portcullis
    /// kid contains. The message shows that character escaped.
    #[error("{0}")]
    InvalidKid(String),
    /// No stored signing key has this kid.
    #[error("no signing key with kid {0}; `portcullis signing-keys list` shows the kids")]
    NotFound(String),
    /// The key was revoked before.
    #[error("signing key {0} is already revoked")]
    AlreadyRevoked(String),
}

impl KeysError {
    /// Returns a stable snake_case code for problem responses and scripts.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Store(_) => "store_unavailable",
            Self::Signing(_) => "signing_key_failed",
            Self::InvalidReason(_) | Self::InvalidKid(_) => "invalid_field",
            Self::NotFound(_) => "not_found",
            Self::AlreadyRevoked(_) => "signing_key_revoked",
        }
    }
}

/// The outcome of [`SigningKeys::revoke`].
#[derive(Debug)]
pub struct Revocation {
    /// The revoked key, as stored.
    pub revoked: SigningKeyRecord,
    /// The key that started signing because the revoked key was active.
    pub successor: Option<SigningKeyRecord>,
    /// The kid of the key that signs on this node after the revocation;
    /// `None` only when no key can sign.
    pub signer: Option<String>,
}

/// The signing keys in use, with what is needed to rotate them.
pub struct SigningKeys {
    store: Store,
    sealing: SealingKey,
    policy: RotationPolicy,
    current: ArcSwap<KeySet>,
}

impl SigningKeys {
    /// Loads the keys, generating the first one when there is none.
    pub async fn load(
        store: Store,
        sealing: SealingKey,
        policy: RotationPolicy,
    ) -> Result<Self, KeysError> {
        let keys = Self {
            store,
            sealing,
            policy,
            current: ArcSwap::from_pointee(KeySet::default()),
        };
        keys.refresh(OffsetDateTime::now_utc()).await?;
        Ok(keys)
    }

    /// The key set in use now.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// The rotation policy.
    pub const fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// Re-reads the stored keys, applies the rotation rule at `now` (promote,
    /// generate, delete) and swaps in the resulting key set.
    pub async fn refresh(&self, now: OffsetDateTime) -> Result<(), KeysError> {
        let audit = AuditContext {
            actor: SCHEDULE_ACTOR.to_owned(),
            remote_addr: None,
            at: now,
        };
        let mut records = self.store.list_signing_keys().await?;
        let mut decided = plan(&records, now, &self.policy);

        // One pass applies the decisions, and a second plan reads their result.
        if self.apply(&records, &decided, &audit).await? {
            records = self.store.list_signing_keys().await?;
            decided = plan(&records, now, &self.policy);
        }
        let set = KeySet::from_plan(&records, &decided, &self.sealing)?;
        self.current.store(Arc::new(set));
        Ok(())
    }

    /// Generates a new key that is published now and signs after the
    /// policy's `publish_ahead`, so resource servers that cache the JWKS
    /// learn it before any token carries its kid.
    pub async fn rotate(&self, audit: &AuditContext) -> Result<SigningKeyRecord, KeysError> {
        let activates_at = audit.at.saturating_add(self.policy.publish_ahead);
        let record =
            generate_signing_key(self.policy.algorithm, &self.sealing, audit.at, activates_at)?;
        self.store.insert_signing_key(&record, audit).await?;
        self.refresh(audit.at).await?;
        Ok(record)
    }

    /// Revokes the key `kid` after a compromise and swaps in the key set
    /// without it, so this node rejects tokens signed with it at once.
    /// Other nodes follow through the change feed.
    ///
    /// When the key was active, another key takes over at once: the
    /// pending key created first, or else a new key generated here. A new
    /// key signs before resource servers that cache the JWKS have seen
    /// it, which is the price of stopping the compromised key now.
    ///
    /// NOTE: a node whose change feed is down learns of the revocation
    /// only at its next periodic refresh, within
    /// [`super::server::KEY_REFRESH_INTERVAL`] (30 seconds).
    pub async fn revoke(
        &self,
        kid: &str,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<Revocation, KeysError> {
        check_kid(kid)?;
        check_reason(reason)?;
        let records = self.store.list_signing_keys().await?;
        // NOTE: a key can sign while it is still stored as pending: the
        // first key does until the next refresh promotes it. Such a key
        // counts as not active here and in the store, so no key takes over
        // in the revocation. The refresh below then generates the
        // successor under the schedule's actor, not the operator's.
        let was_active = records
            .iter()
            .any(|record| record.kid == kid && record.state == SigningKeyState::Active);

        // The successor is the key that the rotation rule would choose once
        // the key is revoked, so that the next refresh keeps it. The store
        // falls back to another pending key, or to the replacement, when
        // the keys changed since this listing. A stale listing can also
        // miss that the key became active, and then the rotation rule
        // generates a signer on the next refresh.
        let mut remaining = records;
        for record in remaining.iter_mut().filter(|record| record.kid == kid) {
            record.state = SigningKeyState::Revoked;
        }
        let preferred = plan(&remaining, audit.at, &self.policy).signer;
        let replacement = if was_active && preferred.is_none() {
            Some(generate_signing_key(
                self.policy.algorithm,
                &self.sealing,
                audit.at,
                audit.at,
            )?)
        } else {
            None
        };
        let takeover = SigningKeyTakeover {
            preferred: preferred.as_deref(),
            replacement: replacement.as_ref(),
        };

        let stored = self
            .store
            .revoke_signing_key(kid, reason, takeover, audit)
            .await
            .map_err(|error| match error {
                StoreError::NotFound(_) => KeysError::NotFound(kid.to_owned()),
                StoreError::Revoked(_) => KeysError::AlreadyRevoked(kid.to_owned()),
                other => KeysError::Store(other),
            })?;
        self.refresh(audit.at).await?;
        let signer = self.current().active().map(|(kid, _)| kid.to_owned());
        Ok(Revocation {
            revoked: stored.revoked,
            successor: stored.successor,
            signer,
        })
    }

    /// Lists the stored keys with the state the rule gives them now.
    pub async fn list(&self) -> Result<Vec<SigningKeyRecord>, KeysError> {
        Ok(self.store.list_signing_keys().await?)
    }

    /// Applies a plan's store changes; returns whether anything changed.
    async fn apply(
        &self,
        records: &[SigningKeyRecord],
        decided: &RotationPlan,
        audit: &AuditContext,
    ) -> Result<bool, KeysError> {
        let mut changed = false;

        if let Some(signer) = &decided.signer {
            let pending = records
                .iter()
                .any(|record| &record.kid == signer && record.state == SigningKeyState::Pending);
            if pending {
                let retired_until = self.policy.publish_until(audit.at);
                match self
                    .store
                    .activate_signing_key(signer, retired_until, audit)
                    .await
                {
                    Ok(_) => changed = true,
                    // Another node promoted it (or a newer key) first.
                    Err(
                        StoreError::Invalid(_) | StoreError::NotFound(_) | StoreError::Conflict(_),
                    ) => changed = true,
                    Err(error) => return Err(error.into()),
                }
            }
        }

        if let Some(activates_at) = decided.new_key_activates_at {
            let record =
                generate_signing_key(self.policy.algorithm, &self.sealing, audit.at, activates_at)?;
            match self.store.insert_signing_key(&record, audit).await {
                Ok(()) | Err(StoreError::Conflict(_)) => changed = true,
                Err(error) => return Err(error.into()),
            }
        }

        if !decided.deletable.is_empty()
            && !self
                .store
                .delete_unpublished_signing_keys(audit)
                .await?
                .is_empty()
        {
            changed = true;
        }
        Ok(changed)
    }
}

/// The maximum length of a kid, in bytes. A Portcullis kid is the RFC 7638
/// thumbprint of the public key, 43 base64url characters for SHA-256, so a
/// longer kid names no key.
pub const MAX_KID_LEN: usize = 128;

/// Checks that `kid` could name a Portcullis signing key before any lookup:
/// 1 to [`MAX_KID_LEN`] characters of the base64url alphabet (RFC 4648
/// §5), which RFC 7638 thumbprints use.
///
/// The error message shows a rejected character escaped, so a control or
/// bidi character in the input never reaches a terminal or a response.
pub fn check_kid(kid: &str) -> Result<(), KeysError> {
    if kid.is_empty() {
        return Err(KeysError::InvalidKid(
            "kid must not be empty; `portcullis signing-keys list` shows the kids".to_owned(),
        ));
    }
    if kid.len() > MAX_KID_LEN {
        return Err(KeysError::InvalidKid(format!(
            "kid is longer than {MAX_KID_LEN} bytes, so it names no key; \
             `portcullis signing-keys list` shows the kids"
        )));
    }
    let invalid = kid
        .chars()
        .enumerate()
        .find(|(_, character)| !is_base64url(*character));
    if let Some((index, character)) = invalid {
        let escaped = if character.is_ascii_graphic() {
            format!("'{character}'")
        } else {
            character.escape_unicode().to_string()
        };
        return Err(KeysError::InvalidKid(format!(
            "kid contains the character {escaped} at position {}, but a kid contains only \
             the base64url characters A-Z, a-z, 0-9, '-' and '_'",
            index + 1
        )));
    }
    Ok(())
}

const fn is_base64url(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '-' || character == '_'
}

/// Checks a revocation reason: required, because the audit log and
/// `signing-keys list` show why the key was withdrawn.
fn check_reason(reason: &str) -> Result<(), KeysError> {
    if reason.trim().is_empty() {
        return Err(KeysError::InvalidReason(
            "reason must not be empty: say why the key is revoked".to_owned(),
        ));
    }
    check_label("reason", reason).map_err(|error| KeysError::InvalidReason(error.to_string()))
}
