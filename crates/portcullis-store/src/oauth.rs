//! The [`Store`] methods of the OAuth authorization server.
//!
//! Administrative changes (clients, users, signing keys, revocations) write
//! their audit record in the transaction of the change. Changes that a
//! node may cache (clients, signing keys, revoked access tokens) also write
//! change-feed rows. Users, codes, refresh tokens, consent and sessions are
//! read from the database on every use, so they write no change row.
//!
//! The single-use values (codes, refresh tokens, assertion `jti`s) are spent
//! in one transaction that first locks the row (`BEGIN IMMEDIATE` on
//! SQLite, `SELECT … FOR UPDATE` on PostgreSQL), so two nodes that present
//! the same value at once see exactly one first use.

use portcullis_core::credential::RateLimits;
use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{ClientId, TenantId, TokenFamilyId, UserId};
use portcullis_core::oauth::{
    AccessTokenRecord, AuthorizationCodeRecord, ClientRecord, ClientSecretRecord, ConsentRecord,
    Email, RedirectUri, RefreshTokenRecord, UserRecord,
};
use portcullis_core::signing::SigningKeyRecord;
use time::OffsetDateTime;

use crate::Store;
use crate::audit::{AuditContext, FamilyRevocationReason};
use crate::error::StoreError;
use crate::records::{
    ConsumeCode, LoginSession, NewClient, NewClientSecret, NewUser, RotateRefresh,
    SigningKeyRevocation, SigningKeyTakeover,
};

/// How long an authorization code is kept after it expires. A code is
/// valid for at most a minute, but a replay within this period still finds
/// the used code and so can revoke the tokens of its first use.
pub const EXPIRED_CODE_RETENTION: time::Duration = time::Duration::days(1);

impl Store {
    // -----------------------------------------------------------------
    // Clients

    /// Registers a client, with its first secret when one is given, and
    /// writes its audit record and a change row.
    ///
    /// Fails with [`StoreError::Invalid`] when the settings disagree (see
    /// [`NewClient`]) or a secret is given to a client that authenticates
    /// without one, [`StoreError::NotFound`] when the tenant does not exist
    /// and [`StoreError::Conflict`] when the id or the secret's hash is
    /// taken.
    pub async fn create_client(
        &self,
        client: &NewClient,
        first_secret: Option<&NewClientSecret>,
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        dispatch!(self, store => store.create_client(client, first_secret, audit))
    }

    /// Finds a client by id, revoked ones included.
    pub async fn find_client(&self, id: ClientId) -> Result<Option<ClientRecord>, StoreError> {
        dispatch!(self, store => store.find_client(id))
    }

    /// Lists a tenant's clients, newest first.
    pub async fn list_clients(&self, tenant_id: TenantId) -> Result<Vec<ClientRecord>, StoreError> {
        dispatch!(self, store => store.list_clients(tenant_id))
    }

    /// Lists a client's secrets that are live at `now`, newest first.
    pub async fn client_secrets(
        &self,
        client_id: ClientId,
        now: OffsetDateTime,
    ) -> Result<Vec<ClientSecretRecord>, StoreError> {
        dispatch!(self, store => store.client_secrets(client_id, now))
    }

    /// Adds a secret to a client and rotates the older ones out: each older
    /// secret now expires at `old_expires_at`, or at its own expiry if that
    /// is earlier. Both secrets work until then.
    ///
    /// Fails with [`StoreError::NotFound`], [`StoreError::Revoked`] for a
    /// revoked client, [`StoreError::Invalid`] for a client that
    /// authenticates without a secret, and [`StoreError::Conflict`] when the
    /// secret's id or hash is taken.
    pub async fn add_client_secret(
        &self,
        client_id: ClientId,
        secret: &NewClientSecret,
        old_expires_at: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<ClientSecretRecord, StoreError> {
        dispatch!(self, store => store.add_client_secret(client_id, secret, old_expires_at, audit))
    }

    /// Revokes a client at `audit.at`, and in the same transaction every
    /// refresh token and access token issued to it. Each access token that
    /// had not expired gets a change row with its `jti`.
    ///
    /// Fails with [`StoreError::NotFound`] and [`StoreError::Revoked`].
    pub async fn revoke_client(
        &self,
        id: ClientId,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        dispatch!(self, store => store.revoke_client(id, reason, audit))
    }

    /// Replaces a client's rate limits and plan, with an audit record and a
    /// change-feed row so that every node reloads them, and returns the
    /// client. A revoked client can still be changed; it gets no token.
    ///
    /// Fails with [`StoreError::NotFound`] when there is no such client.
    pub async fn update_client_limits(
        &self,
        id: ClientId,
        limits: &RateLimits,
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        dispatch!(self, store => store.update_client_limits(id, limits, audit))
    }

    /// Replaces a client's registered redirect URIs, with a
    /// `client.redirect_uris_changed` audit record and a change-feed row so
    /// that every node reloads the client, and returns the client. The
    /// caller checks the URIs with [`RedirectUri::parse`] and the grant
    /// rules.
    ///
    /// Fails with [`StoreError::NotFound`] and, for a revoked client,
    /// [`StoreError::Revoked`].
    pub async fn update_client_redirect_uris(
        &self,
        id: ClientId,
        redirect_uris: &[RedirectUri],
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        dispatch!(self, store => store.update_client_redirect_uris(id, redirect_uris, audit))
    }

    // -----------------------------------------------------------------
    // Users

    /// Creates a user, with its audit record.
    ///
    /// Fails with [`StoreError::Conflict`] when the tenant has a user with
    /// this e-mail address (addresses are lower-cased, so one that differs
    /// only in case conflicts too), [`StoreError::NotFound`] when the tenant
    /// does not exist.
    pub async fn create_user(
        &self,
        user: &NewUser,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        dispatch!(self, store => store.create_user(user, audit))
    }

    /// Finds a tenant's user by e-mail address.
    pub async fn find_user_by_email(
        &self,
        tenant_id: TenantId,
        email: &Email,
    ) -> Result<Option<UserRecord>, StoreError> {
        dispatch!(self, store => store.find_user_by_email(tenant_id, email))
    }

    /// Finds a user by id.
    pub async fn find_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        dispatch!(self, store => store.find_user(id))
    }

    /// Lists a tenant's users, by e-mail address.
    pub async fn list_users(&self, tenant_id: TenantId) -> Result<Vec<UserRecord>, StoreError> {
        dispatch!(self, store => store.list_users(tenant_id))
    }

    // -----------------------------------------------------------------
    // Authorization codes

    /// Stores an issued authorization code.
    ///
    /// Fails with [`StoreError::NotFound`] when the client or user does not
    /// exist and [`StoreError::Conflict`] when the hash is taken.
    pub async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert_code(code))
    }

    /// Spends the code with keyed hash `hash`, presented by `client_id` at
    /// `at`, in one atomic step. See [`ConsumeCode`] for the outcomes; only
    /// [`ConsumeCode::Fresh`] changes anything.
    pub async fn consume_code(
        &self,
        hash: &SecretHash,
        client_id: ClientId,
        at: OffsetDateTime,
    ) -> Result<ConsumeCode, StoreError> {
        dispatch!(self, store => store.consume_code(hash, client_id, at))
    }

    // -----------------------------------------------------------------
    // Refresh tokens

    /// Stores an issued refresh token.
    ///
    /// Fails with [`StoreError::NotFound`] when the client or user does not
    /// exist and [`StoreError::Conflict`] when the hash is taken.
    pub async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert_refresh_token(token))
    }

    /// Exchanges the refresh token with keyed hash `old_hash` for `new` at
    /// `at`, in one atomic step. See [`RotateRefresh`] for the outcomes.
    ///
    /// The client binding is checked first: `new.client_id` must be the old
    /// token's client, or nothing changes. A reuse revokes the family and
    /// writes a [`crate::AuditAction::TokenFamilyRevoked`] record whose
    /// actor is `client:<client_id>`. Fails with [`StoreError::Invalid`]
    /// when `new` names another family than the old token.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &SecretHash,
        new: &RefreshTokenRecord,
        at: OffsetDateTime,
    ) -> Result<RotateRefresh, StoreError> {
        dispatch!(self, store => store.rotate_refresh_token(old_hash, new, at))
    }

    /// Revokes every refresh and access token of a family at `audit.at`,
    /// with an audit record naming `reason`, and returns how many access
    /// tokens were revoked. Each access token that had not expired gets a
    /// change row with its `jti`. Revoking an unknown or already revoked
    /// family changes nothing but still writes the audit record.
    pub async fn revoke_family(
        &self,
        family_id: TokenFamilyId,
        reason: FamilyRevocationReason,
        audit: &AuditContext,
    ) -> Result<u64, StoreError> {
        dispatch!(self, store => store.revoke_family(family_id, reason, audit))
    }

    /// Finds a refresh token by the keyed hash of the whole token.
    pub async fn find_refresh_token(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        dispatch!(self, store => store.find_refresh_token(hash))
    }

    // -----------------------------------------------------------------
    // Access tokens

    /// Records an issued access token. Called once per issued JWT, never per
    /// API request.
    ///
    /// Fails with [`StoreError::NotFound`] when the client does not exist
    /// and [`StoreError::Conflict`] when the `jti` is taken.
    pub async fn record_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError> {
        dispatch!(self, store => store.record_access_token(token))
    }

    /// Revokes one access token at `audit.at`, with its audit record and,
    /// unless it has expired, a change row with its `jti`.
    ///
    /// Fails with [`StoreError::NotFound`] and [`StoreError::Revoked`].
    pub async fn revoke_access_token(
        &self,
        jti: &str,
        audit: &AuditContext,
    ) -> Result<AccessTokenRecord, StoreError> {
        dispatch!(self, store => store.revoke_access_token(jti, audit))
    }

    /// Finds an access token by `jti`.
    pub async fn find_access_token(
        &self,
        jti: &str,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        dispatch!(self, store => store.find_access_token(jti))
    }

    /// Lists every revoked access token that has not expired at `now`, as
    /// `(jti, expires_at)`: the deny list a node loads at start, before it
    /// follows the change feed from [`Store::latest_change`].
    pub async fn live_revoked_jtis(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, OffsetDateTime)>, StoreError> {
        dispatch!(self, store => store.live_revoked_jtis(now))
    }

    /// Deletes the OAuth rows that no check needs any more at `now`, and
    /// returns how many: access tokens, refresh tokens, assertion `jti`s,
    /// sessions and dashboard form submissions past their expiry, and
    /// authorization codes more than
    /// [`EXPIRED_CODE_RETENTION`] past theirs. Run it now and then, such as
    /// hourly.
    pub async fn prune_oauth(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        dispatch!(self, store => store.prune_oauth(now))
    }

    // -----------------------------------------------------------------
    // Consent

    /// Stores a user's consent to a client, replacing any earlier consent of
    /// that user to that client. To widen a consent, pass the union of the
    /// old and new scopes.
    ///
    /// Fails with [`StoreError::NotFound`] when the user or client does not
    /// exist.
    pub async fn grant_consent(&self, consent: &ConsentRecord) -> Result<(), StoreError> {
        dispatch!(self, store => store.grant_consent(consent))
    }

    /// Finds a user's consent to a client.
    pub async fn find_consent(
        &self,
        user_id: UserId,
        client_id: ClientId,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        dispatch!(self, store => store.find_consent(user_id, client_id))
    }

    // -----------------------------------------------------------------
    // Client assertions

    /// Records the `jti` of a client assertion (RFC 7523) that expires at
    /// `expires_at`. Returns `true` the first time and `false` when the
    /// client used this `jti` before, which is a replay. Also deletes the
    /// records of assertions that have expired by the database's clock.
    pub async fn use_assertion_jti(
        &self,
        client_id: ClientId,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        dispatch!(self, store => store.use_assertion_jti(client_id, jti, expires_at))
    }

    // -----------------------------------------------------------------
    // Sign-in sessions

    /// Stores a new sign-in session.
    ///
    /// Fails with [`StoreError::NotFound`] when the user does not exist and
    /// [`StoreError::Conflict`] when the hash is taken.
    pub async fn create_session(&self, session: &LoginSession) -> Result<(), StoreError> {
        dispatch!(self, store => store.create_session(session))
    }

    /// Finds a session by the keyed hash of its id, expired ones included:
    /// check [`LoginSession::is_live`].
    pub async fn find_session(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<LoginSession>, StoreError> {
        dispatch!(self, store => store.find_session(hash))
    }

    /// Moves a session's idle expiry to `idle_expires_at`, never past its
    /// absolute expiry. Returns whether the session exists.
    pub async fn touch_session(
        &self,
        hash: &SecretHash,
        idle_expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        dispatch!(self, store => store.touch_session(hash, idle_expires_at))
    }

    /// Deletes a session, as at sign-out. Returns whether it existed.
    pub async fn delete_session(&self, hash: &SecretHash) -> Result<bool, StoreError> {
        dispatch!(self, store => store.delete_session(hash))
    }

    /// Deletes every session of a user and returns how many there were.
    pub async fn delete_user_sessions(&self, user_id: UserId) -> Result<u64, StoreError> {
        dispatch!(self, store => store.delete_user_sessions(user_id))
    }

    // -----------------------------------------------------------------
    // Signing keys

    /// Stores a new token-signing key, with its audit record and a change
    /// row naming its `kid`.
    ///
    /// Fails with [`StoreError::Conflict`] when the `kid` is taken or when
    /// the key is active while another key is.
    pub async fn insert_signing_key(
        &self,
        key: &SigningKeyRecord,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert_signing_key(key, audit))
    }

    /// Lists every stored signing key, oldest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        dispatch!(self, store => store.list_signing_keys())
    }

    /// Makes the pending key `kid` the active one at `audit.at`, and retires
    /// the key that was active, which stays published until
    /// `retired_publish_until`. Writes an audit record and a change row for
    /// each key, and returns the activated key.
    ///
    /// Fails with [`StoreError::NotFound`], or [`StoreError::Invalid`] when
    /// the key is not pending.
    pub async fn activate_signing_key(
        &self,
        kid: &str,
        retired_publish_until: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<SigningKeyRecord, StoreError> {
        dispatch!(self, store => store.activate_signing_key(kid, retired_publish_until, audit))
    }

    /// Deletes the retired keys whose `publish_until` is at or before
    /// `audit.at`, with an audit record and a change row each, and returns
    /// their `kid`s.
    pub async fn delete_unpublished_signing_keys(
        &self,
        audit: &AuditContext,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self, store => store.delete_unpublished_signing_keys(audit))
    }

    /// Revokes the key `kid` at `audit.at`: its state becomes `Revoked`,
    /// the reason is kept, and its sealed private key is erased.
    ///
    /// When the key was active, another key starts signing in the same
    /// transaction, so that no node is left without a signer. That key is
    /// `takeover.preferred` if it is still pending, else the pending key
    /// created first, else `takeover.replacement`, which is stored too.
    /// Without any of them, no key is active until the rotation rule
    /// generates one. Writes an audit record and a change row for each key
    /// that changed.
    ///
    /// Fails with [`StoreError::NotFound`] for an unknown `kid`, and with
    /// [`StoreError::Revoked`] when the key is already revoked.
    pub async fn revoke_signing_key(
        &self,
        kid: &str,
        reason: &str,
        takeover: SigningKeyTakeover<'_>,
        audit: &AuditContext,
    ) -> Result<SigningKeyRevocation, StoreError> {
        dispatch!(self, store => store.revoke_signing_key(kid, reason, takeover, audit))
    }
}
