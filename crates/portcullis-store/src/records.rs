//! The values that go into and come out of the store, and the rules on them
//! that both backends share.

use portcullis_core::credential::{ApiKeyRecord, KeyKind, KeyLimits, RateLimits};
use portcullis_core::crypto::{SECRET_HASH_LEN, SecretHash};
use portcullis_core::ids::{ClientId, KeyId, TenantId, UserId};
use portcullis_core::key::Environment;
use portcullis_core::name::TenantName;
use portcullis_core::oauth::{
    AuthorizationCodeRecord, ClientAuthMethod, Email, GrantType, RedirectUri, RefreshTokenRecord,
    Role, TlsClientAuthSubject, TlsSubjectError, TlsSubjectKind,
};
use portcullis_core::scope::ScopeSet;
use portcullis_core::signing::{SigningAlgorithm, SigningKeyRecord, SigningKeyState};
use time::OffsetDateTime;
use uuid::Uuid;

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
    /// The key's own rate limits and plan.
    pub limits: KeyLimits,
    /// The audit actor that created the key, such as `cli` or
    /// `user:<uuid>`.
    pub created_by: Option<String>,
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

/// Adds up the entries of one key, keeping the latest use and its
/// address, so that a batched UPDATE joins each key to one row.
pub(crate) fn merge_key_usage(batch: &[KeyUsage]) -> Vec<KeyUsage> {
    let mut merged: std::collections::BTreeMap<KeyId, KeyUsage> = std::collections::BTreeMap::new();
    for usage in batch {
        match merged.get_mut(&usage.key_id) {
            None => {
                merged.insert(usage.key_id, usage.clone());
            }
            Some(entry) => {
                entry.count += usage.count;
                if usage.last_used_at > entry.last_used_at {
                    entry.last_used_at = usage.last_used_at;
                    entry.last_used_from.clone_from(&usage.last_used_from);
                }
            }
        }
    }
    merged.into_values().collect()
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
    /// The tenant that changed or owns the changed key or client, if any.
    pub tenant_id: Option<TenantId>,
    /// The OAuth client that changed (created, revoked, secret added) or
    /// whose access token was revoked, if any.
    pub client_id: Option<ClientId>,
    /// The `jti` of a revoked access token. Each revoked token gets its own
    /// row, also when a client or a token family is revoked, so that a deny
    /// list needs no lookup.
    pub jti: Option<String>,
    /// When the revoked access token expires: the deny list may drop the
    /// `jti` after that.
    pub jti_expires_at: Option<OffsetDateTime>,
    /// The `kid` of a signing key that was created, activated or deleted.
    pub kid: Option<String>,
    /// The serial of a revoked client certificate, as lowercase hex.
    pub cert_serial: Option<String>,
    /// The trusted partner CA that was added, changed or removed.
    pub trusted_ca_id: Option<Uuid>,
    /// When the change was written, by the database's clock.
    pub at: OffsetDateTime,
}

/// A selection of client certificates for
/// [`crate::Store::list_certificates`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateFilter {
    /// Every certificate.
    All,
    /// The certificates of one client.
    Client(ClientId),
    /// The certificates of one tenant's clients.
    Tenant(TenantId),
}

/// An OAuth client to register. The caller generates the id.
#[derive(Clone, Debug)]
pub struct NewClient {
    /// The client's id, sent as `client_id`.
    pub id: ClientId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// A display name, shown on the consent page.
    pub name: String,
    /// Whether the client can keep a secret; public clients use
    /// [`ClientAuthMethod::None`].
    pub confidential: bool,
    /// The grant types the client may use; at least one.
    pub grant_types: Vec<GrantType>,
    /// The maximum set of scopes that its tokens may grant.
    pub scopes: ScopeSet,
    /// The registered redirect URIs; at least one with the
    /// `authorization_code` grant.
    pub redirect_uris: Vec<RedirectUri>,
    /// The one way the client authenticates at the token endpoint.
    pub auth_method: ClientAuthMethod,
    /// The client's public JWKS as JSON text; required for
    /// `private_key_jwt` and `self_signed_tls_client_auth`, which it is
    /// validated for by the caller.
    pub jwks: Option<String>,
    /// The certificate subject; required for `tls_client_auth` and
    /// rejected for every other method.
    pub tls_client_auth_subject: Option<TlsClientAuthSubject>,
    /// Lifetime of the client's access tokens, in seconds; above zero.
    pub access_token_ttl_seconds: i64,
    /// When the client was registered.
    pub created_at: OffsetDateTime,
    /// The client's own rate limits and plan, checked by the caller.
    pub limits: RateLimits,
    /// The audit actor that registered the client, such as `cli` or
    /// `user:<uuid>`.
    pub created_by: Option<String>,
}

/// A client secret to store, as its keyed hash. The caller generates the
/// id and the secret.
#[derive(Clone, Debug)]
pub struct NewClientSecret {
    /// The secret's id, safe to show and log.
    pub id: Uuid,
    /// The keyed hash of the whole secret.
    pub hash: SecretHash,
    /// When the secret was created.
    pub created_at: OffsetDateTime,
    /// When the secret stops working; `None` means never.
    pub expires_at: Option<OffsetDateTime>,
}

/// A user to create. The caller generates the id and the password hash.
#[derive(Clone)]
pub struct NewUser {
    /// The user's id.
    pub id: UserId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The sign-in address, unique within the tenant.
    pub email: Email,
    /// The Argon2id hash of the password, as a PHC string.
    pub password_hash: String,
    /// The user's permissions in the dashboard.
    pub role: Role,
    /// When the user was created.
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The outcome of [`crate::Store::consume_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumeCode {
    /// First use: the code is now marked used. The caller still checks
    /// redirect URI and PKCE verifier, and a failed check leaves the code
    /// spent.
    Fresh(AuthorizationCodeRecord),
    /// The code was used before. RFC 6749 §4.1.2 recommends revoking what
    /// the first use issued: call [`crate::Store::revoke_family`] with the
    /// record's family.
    AlreadyUsed(AuthorizationCodeRecord),
    /// The code is past its expiry and was never used. It stays unused.
    Expired,
    /// The code was issued to another client. It stays unused, so that a
    /// client cannot spend or revoke another client's grant.
    WrongClient,
    /// No such code.
    NotFound,
}

/// The outcome of [`crate::Store::rotate_refresh_token`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateRefresh {
    /// The old token was live: it is now used and the new one is stored.
    /// The record is the old token as it was before.
    Rotated(RefreshTokenRecord),
    /// The old token was used before: the whole family, its refresh and
    /// access tokens, is now revoked (RFC 9700 §4.14.2) and the new token is
    /// not stored.
    Reused(RefreshTokenRecord),
    /// The old token is revoked or expired. Nothing changed.
    Dead,
    /// The old token belongs to another client. Nothing changed, so that a
    /// client cannot spend another client's token.
    WrongClient,
    /// No such token.
    NotFound,
}

/// A sign-in session of a user, stored under the keyed hash of its random
/// id, which only the browser's cookie contains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSession {
    /// The keyed hash of the session id.
    pub hash: SecretHash,
    /// The signed-in user.
    pub user_id: UserId,
    /// When the user signed in.
    pub created_at: OffsetDateTime,
    /// When the session ends unless it is used before; each use moves it.
    pub idle_expires_at: OffsetDateTime,
    /// When the session ends however often it is used.
    pub absolute_expires_at: OffsetDateTime,
}

impl LoginSession {
    /// Whether the session is valid at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

/// The keys that may start signing when the revoked key was the active
/// one, in order of preference after `preferred`: the pending key created
/// first, then `replacement`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SigningKeyTakeover<'a> {
    /// The pending key that the rotation rule would choose. It is used
    /// only if it is still pending when the revocation commits.
    pub preferred: Option<&'a str>,
    /// A new key, stored and activated only if no key is pending.
    pub replacement: Option<&'a SigningKeyRecord>,
}

/// The outcome of revoking a signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRevocation {
    /// The revoked key, as stored after the revocation.
    pub revoked: SigningKeyRecord,
    /// The key that started signing because the revoked key was active.
    /// It is `None` when the revoked key was not active, or when no key
    /// could take over.
    pub successor: Option<SigningKeyRecord>,
}

/// Checks that a new client's settings agree with each other.
pub(crate) fn check_new_client(client: &NewClient) -> Result<(), StoreError> {
    if client.grant_types.is_empty() {
        return Err(StoreError::Invalid(
            "a client needs at least one grant type",
        ));
    }
    if client.confidential == (client.auth_method == ClientAuthMethod::None) {
        return Err(StoreError::Invalid(
            "a public client must use auth method none, and a confidential client another one",
        ));
    }
    if client.auth_method == ClientAuthMethod::PrivateKeyJwt && client.jwks.is_none() {
        return Err(StoreError::Invalid(
            "private_key_jwt needs the client's JWKS",
        ));
    }
    if client.auth_method == ClientAuthMethod::SelfSignedTlsClientAuth && client.jwks.is_none() {
        return Err(StoreError::Invalid(
            "self_signed_tls_client_auth needs the client's JWKS",
        ));
    }
    if (client.auth_method == ClientAuthMethod::TlsClientAuth)
        != client.tls_client_auth_subject.is_some()
    {
        return Err(StoreError::Invalid(
            "a certificate subject is registered exactly for tls_client_auth clients",
        ));
    }
    if !client.confidential && client.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(StoreError::Invalid(
            "a public client cannot use the client_credentials grant",
        ));
    }
    if client.grant_types.contains(&GrantType::AuthorizationCode) && client.redirect_uris.is_empty()
    {
        return Err(StoreError::Invalid(
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    if client.access_token_ttl_seconds <= 0 {
        return Err(StoreError::Invalid(
            "the access token lifetime must be positive",
        ));
    }
    Ok(())
}

/// Joins grant types, or redirect URIs, with single spaces for storage.
pub(crate) fn join_words<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words.into_iter().collect::<Vec<_>>().join(" ")
}

/// Parses stored space-separated grant types.
pub(crate) fn parse_grant_types(text: &str) -> Result<Vec<GrantType>, StoreError> {
    text.split_whitespace()
        .map(|word| {
            word.parse()
                .map_err(|error| StoreError::Corrupt(format!("client grant types: {error}")))
        })
        .collect()
}

/// Parses stored space-separated redirect URIs.
pub(crate) fn parse_redirect_uris(text: &str) -> Result<Vec<RedirectUri>, StoreError> {
    text.split_whitespace()
        .map(|word| {
            RedirectUri::parse(word)
                .map_err(|error| StoreError::Corrupt(format!("client redirect URI: {error}")))
        })
        .collect()
}

/// Parses a stored client authentication method.
pub(crate) fn parse_auth_method(text: &str) -> Result<ClientAuthMethod, StoreError> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("client auth method: {error}")))
}

/// Parses a stored `tls_client_auth` subject from its member name and
/// value columns.
pub(crate) fn parse_tls_subject(
    kind: Option<&str>,
    value: Option<&str>,
) -> Result<Option<TlsClientAuthSubject>, StoreError> {
    let corrupt =
        |detail: String| StoreError::Corrupt(format!("client certificate subject: {detail}"));
    match (kind, value) {
        (None, None) => Ok(None),
        (Some(kind), Some(value)) => {
            let kind: TlsSubjectKind = kind
                .parse()
                .map_err(|error: TlsSubjectError| corrupt(error.to_string()))?;
            TlsClientAuthSubject::parse(kind, value)
                .map(Some)
                .map_err(|error| corrupt(error.to_string()))
        }
        _ => Err(corrupt("member name and value must both be set".to_owned())),
    }
}

/// Parses a stored role.
pub(crate) fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("user role: {error}")))
}

/// Parses a stored e-mail address.
pub(crate) fn parse_email(text: &str) -> Result<Email, StoreError> {
    Email::parse(text).map_err(|error| StoreError::Corrupt(format!("user e-mail: {error}")))
}

/// Parses stored OAuth scopes, naming what they belong to on failure.
pub(crate) fn parse_oauth_scopes(text: &str, owner: &str) -> Result<ScopeSet, StoreError> {
    ScopeSet::parse_list(text)
        .map_err(|error| StoreError::Corrupt(format!("scopes of {owner}: {error}")))
}

/// Parses a stored signing algorithm.
pub(crate) fn parse_algorithm(text: &str) -> Result<SigningAlgorithm, StoreError> {
    text.parse()
        .map_err(|error: String| StoreError::Corrupt(format!("signing key: {error}")))
}

/// Parses a stored signing key state.
pub(crate) fn parse_signing_state(text: &str) -> Result<SigningKeyState, StoreError> {
    text.parse()
        .map_err(|error: String| StoreError::Corrupt(format!("signing key: {error}")))
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

/// Separator of the rates in the `rate_limits` column. The rate syntax
/// (`COUNT/UNIT [burst N]`) has no comma.
const RATE_SEPARATOR: char = ',';

/// Returns the `rate_limits` column of a key or client: the rates joined
/// by commas, or `None` when there are none.
pub(crate) fn rate_limits_column(rates: &[String]) -> Option<String> {
    if rates.is_empty() {
        return None;
    }
    Some(rates.join(&RATE_SEPARATOR.to_string()))
}

/// Splits a stored `rate_limits` column into its rates.
fn rates_from_column(column: Option<&str>) -> Vec<String> {
    column
        .map(|text| text.split(RATE_SEPARATOR).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Builds a client's limits from its `rate_limits` and `plan` columns.
pub(crate) fn client_limits_from_columns(
    rate_limits: Option<&str>,
    plan: Option<String>,
) -> RateLimits {
    RateLimits {
        rate_limits: rates_from_column(rate_limits),
        plan,
    }
}

/// Builds a key's limits from its `rate_limits`, `plan`, `max_uses` and
/// `uses_spent` columns.
pub(crate) fn key_limits_from_columns(
    rate_limits: Option<&str>,
    plan: Option<String>,
    max_uses: Option<i64>,
    uses_spent: i64,
) -> KeyLimits {
    KeyLimits {
        rate_limits: rates_from_column(rate_limits),
        plan,
        max_uses,
        uses_spent,
    }
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

/// Checks that `scopes` may replace the scopes of `key` at `at`: the key is
/// neither revoked nor expired, and `scopes` is a non-empty set, other
/// than the current one, whose every scope a current scope grants. Both
/// backends run it on the locked row, so a narrowing never widens a key.
pub(crate) fn check_narrowing(
    key: &ApiKeyRecord,
    scopes: &ScopeSet,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    if key.revoked_at.is_some() {
        return Err(StoreError::AlreadyRevoked);
    }
    if key.expires_at.is_some_and(|expires_at| expires_at <= at) {
        return Err(StoreError::Expired);
    }
    if scopes.is_empty() {
        return Err(StoreError::Invalid("a key keeps at least one scope"));
    }
    if *scopes == key.scopes {
        return Err(StoreError::Invalid(
            "the new scopes equal the key's current scopes",
        ));
    }
    if !scopes.iter().all(|scope| key.scopes.grants(scope)) {
        return Err(StoreError::Invalid(
            "narrowing may only keep scopes that the key already grants",
        ));
    }
    Ok(())
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
