//! The values that go into and come out of the store, and the rules on them
//! that both backends share.

use portcullis_core::credential::{ApiKeyRecord, KeyKind};
use portcullis_core::crypto::{SECRET_HASH_LEN, SecretHash};
use portcullis_core::ids::{KeyId, TenantId};
use portcullis_core::key::Environment;
use portcullis_core::name::TenantName;
use portcullis_core::scope::ScopeSet;
use time::OffsetDateTime;

use crate::error::StoreError;

/// A tenant: one customer of the SaaS company.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// The tenant's id.
    pub id: TenantId,
    /// The tenant's unique name, such as `acme-billing`.
    pub name: TenantName,
    /// When the tenant was created.
    pub created_at: OffsetDateTime,
}

/// An API key to store. The caller generates the id and the secret and
/// passes only the secret's keyed hash.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// The key's id.
    pub id: KeyId,
    /// Tenant key or operator key.
    pub kind: KeyKind,
    /// The owning tenant: required for tenant keys, absent for operator keys.
    pub tenant_id: Option<TenantId>,
    /// A label chosen at creation, such as "billing sync".
    pub name: Option<String>,
    /// Live or test.
    pub environment: Environment,
    /// The key's first characters, such as `pc_live_4f1X`.
    pub visible_prefix: String,
    /// The keyed hash of the whole key, the only form in which it is stored.
    pub hash: SecretHash,
    /// The scopes the key grants.
    pub scopes: ScopeSet,
    /// When the key was created.
    pub created_at: OffsetDateTime,
    /// When the key stops working; `None` means never.
    pub expires_at: Option<OffsetDateTime>,
}

/// A selection of keys for [`crate::Store::list_keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFilter {
    /// Every key.
    All,
    /// The keys of one tenant.
    Tenant(TenantId),
    /// The operator keys.
    Operator,
}

/// Use of one key, gathered in memory and written in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUsage {
    /// The key that authenticated the requests.
    pub key_id: KeyId,
    /// When the latest of the requests arrived.
    pub last_used_at: OffsetDateTime,
    /// The client address of that request.
    pub last_used_from: Option<String>,
    /// How many requests the entry counts.
    pub count: i64,
}

/// One row of the change feed: something that a credential cache may hold
/// has changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The feed position; pass the highest seen to
    /// [`crate::Store::changes_since`].
    pub id: i64,
    /// The key that changed, if a key did.
    pub key_id: Option<KeyId>,
    /// The tenant that changed or owns the changed key, if any.
    pub tenant_id: Option<TenantId>,
    /// When the change was written, by the database's clock.
    pub at: OffsetDateTime,
}

/// Checks that the kind of a new key and its tenant agree.
pub(crate) fn check_new_key(key: &NewKey) -> Result<(), StoreError> {
    match (key.kind, key.tenant_id) {
        (KeyKind::Tenant, Some(_)) | (KeyKind::Operator, None) => Ok(()),
        (KeyKind::Tenant, None) => Err(StoreError::Invalid("a tenant key needs a tenant id")),
        (KeyKind::Operator, Some(_)) => Err(StoreError::Invalid(
            "an operator key must not have a tenant id",
        )),
    }
}

/// Checks that `old` may be rotated at `now` into `new`.
pub(crate) fn check_rotation(
    old: &ApiKeyRecord,
    new: &NewKey,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    if old.revoked_at.is_some() {
        return Err(StoreError::AlreadyRevoked);
    }
    if old.rotated_to.is_some() {
        return Err(StoreError::AlreadyRotated);
    }
    if old.expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(StoreError::Expired);
    }
    if new.kind != old.kind || new.tenant_id != old.tenant_id {
        return Err(StoreError::Invalid(
            "a replacement key must have the same kind and tenant as the key it replaces",
        ));
    }
    check_new_key(new)
}

/// Computes the expiry of a rotated key: the end of the grace period, or its own
/// expiry if that comes first.
pub(crate) fn rotated_expiry(
    expires_at: Option<OffsetDateTime>,
    grace_ends: OffsetDateTime,
) -> OffsetDateTime {
    expires_at.map_or(grace_ends, |expires_at| expires_at.min(grace_ends))
}

/// Parses a stored key kind.
pub(crate) fn parse_kind(text: &str) -> Result<KeyKind, StoreError> {
    match text {
        "tenant" => Ok(KeyKind::Tenant),
        "operator" => Ok(KeyKind::Operator),
        other => Err(StoreError::Corrupt(format!("unknown key kind {other:?}"))),
    }
}

/// Parses a stored environment.
pub(crate) fn parse_environment(text: &str) -> Result<Environment, StoreError> {
    text.parse()
        .map_err(|error: String| StoreError::Corrupt(format!("key environment: {error}")))
}

/// Parses a stored space-separated scope list.
pub(crate) fn parse_scopes(text: &str, key_id: KeyId) -> Result<ScopeSet, StoreError> {
    ScopeSet::parse_list(text)
        .map_err(|error| StoreError::Corrupt(format!("scopes of key {key_id}: {error}")))
}

/// Parses a stored tenant name.
pub(crate) fn parse_tenant_name(text: &str) -> Result<TenantName, StoreError> {
    TenantName::parse(text).map_err(|error| StoreError::Corrupt(format!("tenant name: {error}")))
}

/// Wraps a stored secret hash.
pub(crate) fn parse_hash(bytes: &[u8]) -> Result<SecretHash, StoreError> {
    SecretHash::from_slice(bytes).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "secret hash has {} bytes, expected {SECRET_HASH_LEN}",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn rotated_expiry_keeps_earlier_time() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let grace = now + Duration::days(7);
        assert_eq!(rotated_expiry(None, grace), grace);
        assert_eq!(rotated_expiry(Some(now), grace), now);
        assert_eq!(
            rotated_expiry(Some(grace + Duration::days(1)), grace),
            grace
        );
    }

    #[test]
    fn unknown_stored_values_are_corrupt() {
        assert!(matches!(parse_kind("admin"), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            parse_environment("prod"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            parse_scopes("Orders:Read", KeyId::generate()),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(parse_hash(&[0; 3]), Err(StoreError::Corrupt(_))));
    }
}
