//! Portcullis persistence behind one [`Store`], on SQLite or PostgreSQL.
//!
//! - [`records`]: tenants, new keys, OAuth clients and users, usage
//!   batches and change-feed rows.
//! - [`audit`]: audit records and the context of a change.
//! - [`chain`]: the hash chain over audit records and its verification.
//! - `chain_head`: the MAC of the chain's head row.
//! - `audit_verify`: the [`Store`] methods that verify the audit chain,
//!   check it at start-up and seal its head.
//! - [`error`]: [`StoreError`] and the mapping of database errors onto it.
//! - [`observe`]: a hook that receives the duration and outcome of each operation.
//! - [`sqlite`]: the embedded backend, one file in WAL mode.
//! - [`postgres`]: the backend for several nodes, with LISTEN/NOTIFY.
//! - `oauth`: the [`Store`] methods of the OAuth authorization server:
//!   clients, users, codes, tokens, consent, sessions and signing keys.
//! - `alerts`: the [`Store`] methods of anomaly alerts, their webhook
//!   outbox and the networks each credential was used from.
//! - `members`: the [`Store`] methods of a tenant's members: role
//!   changes, disabling, sign-in times and invites.
//! - `pki`: the [`Store`] methods of the internal CA, its client
//!   certificates and the partner CAs trusted per tenant.
//! - [`usage`]: requests and failures per credential and hour or day, and
//!   the scopes each credential exercised.
//!
//! Both backends pass one test suite (`tests/store_suite.rs`). Their
//! schemas live in `migrations/<backend>/` and are compiled into the binary.
//!
//! Every administrative change (tenant creation, key creation, revocation,
//! rotation, client and signing-key changes, token revocations) writes its
//! audit record and a change-feed row in the transaction of the change.
//! Credential caches follow the change feed: they poll
//! [`Store::changes_since`], and on PostgreSQL they wake on [`Store::listen`]
//! as well. A revoked access token gets one change row per `jti`, so a
//! gateway's deny list follows the feed without a lookup.

#![warn(missing_docs)]

/// The columns of an [`ApiKeyRecord`] with its tenant's name, as a string
/// literal that `concat!` can extend. Both backends use the same query.
macro_rules! select_key {
    () => {
        "SELECT k.id, k.kind, k.tenant_id, t.name AS tenant_name, k.name, k.environment, \
         k.visible_prefix, k.scopes, k.created_at, k.expires_at, k.revoked_at, \
         k.revoked_reason, k.rotated_to, k.last_used_at, k.last_used_from, k.use_count, \
         k.rate_limits, k.plan, k.max_uses, k.uses_spent, k.created_by \
         FROM api_keys k LEFT JOIN tenants t ON t.id = k.tenant_id"
    };
}

/// The columns of a [`portcullis_core::oauth::ClientRecord`] with its
/// tenant's name. Both backends use the same query.
macro_rules! select_client {
    () => {
        "SELECT c.id, c.tenant_id, t.name AS tenant_name, c.name, c.confidential, \
         c.grant_types, c.scopes, c.redirect_uris, c.auth_method, c.jwks, \
         c.tls_subject_kind, c.tls_subject, c.access_token_ttl_seconds, c.created_at, c.revoked_at, \
         c.rate_limits, c.plan, c.created_by \
         FROM oauth_clients c JOIN tenants t ON t.id = c.tenant_id"
    };
}

/// The columns of a [`portcullis_core::oauth::UserRecord`] with its
/// tenant's name.
macro_rules! select_user {
    () => {
        "SELECT u.id, u.tenant_id, t.name AS tenant_name, u.email, u.password_hash, u.role, \
         u.created_at, u.disabled_at FROM users u JOIN tenants t ON t.id = u.tenant_id"
    };
}

/// The columns of a [`crate::members::InviteRecord`].
macro_rules! select_invite {
    () => {
        "SELECT i.id, i.tenant_id, t.name AS tenant_name, i.email, i.role, i.token_hash, \
         i.created_by, i.created_at, i.expires_at, i.used_at, i.user_id, i.revoked_at \
         FROM user_invites i JOIN tenants t ON t.id = i.tenant_id"
    };
}

/// The columns of an [`portcullis_core::oauth::AuthorizationCodeRecord`].
macro_rules! select_code {
    () => {
        "SELECT code_hash, client_id, user_id, redirect_uri, code_challenge, scopes, resource, \
         family_id, created_at, expires_at, used_at FROM authorization_codes"
    };
}

/// The columns of a [`portcullis_core::oauth::RefreshTokenRecord`].
macro_rules! select_refresh {
    () => {
        "SELECT token_hash, family_id, client_id, user_id, scopes, resource, created_at, \
         expires_at, used_at, revoked_at FROM refresh_tokens"
    };
}

/// The columns of a [`portcullis_core::signing::SigningKeyRecord`].
macro_rules! select_signing_key {
    () => {
        "SELECT kid, algorithm, state, public_jwk, sealed_private_key, created_at, activates_at, \
         retired_at, publish_until, revoked_at, revoked_reason FROM signing_keys"
    };
}

pub mod audit;
pub mod chain;
pub mod error;
pub mod observe;
pub mod postgres;
pub mod records;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_core::credential::{ApiKeyRecord, KeyLimits};
use portcullis_core::crypto::{AuditChainKey, SecretHash};
use portcullis_core::ids::KeyId;
use portcullis_core::name::TenantName;
use portcullis_core::scope::ScopeSet;
use time::OffsetDateTime;

pub use crate::audit::{
    AuditAction, AuditContext, AuditEvent, AuditFilter, AuditQuery, FamilyRevocationReason,
};
pub use crate::chain::{
    BreakKind, ChainBreak, ChainState, ChainSummary, ChainedAuditEvent, PruneOutcome, SealOutcome,
};
pub use crate::error::StoreError;
pub use crate::postgres::{ChangeListener, PostgresStore};
pub use crate::records::{
    CertificateFilter, Change, ConsumeCode, KeyFilter, KeyUsage, LoginSession, NewClient,
    NewClientSecret, NewKey, NewUser, RotateRefresh, SigningKeyRevocation, SigningKeyTakeover,
    Tenant,
};
pub use crate::sqlite::SqliteStore;
pub use crate::usage::{
    CredentialRef, Granularity, ScopeUse, UsageCount, UsagePoint, UsageQuery, UsageSubject,
};

/// The name of the PostgreSQL notification channel of the change feed.
pub const CHANGE_CHANNEL: &str = "portcullis_changes";

/// How long change-feed rows are kept. A cache that falls further behind
/// than this must reload everything instead of following the feed.
pub const CHANGE_RETENTION: time::Duration = time::Duration::days(1);

/// The store of tenants, keys, audit records and the change feed.
///
/// Cloning is cheap: clones share the connection pools.
#[derive(Clone, Debug)]
pub enum Store {
    /// One SQLite file.
    Sqlite(SqliteStore),
    /// One PostgreSQL database.
    Postgres(PostgresStore),
}

/// Calls the same method on whichever backend `$store` holds, and reports
/// its duration and outcome to the [`observe`] hook under the method's name.
macro_rules! dispatch {
    ($store:expr, $backend:ident => $receiver:ident . $method:ident ( $($argument:expr),* $(,)? )) => {{
        let started = std::time::Instant::now();
        let outcome = match $store {
            Store::Sqlite($backend) => $receiver.$method($($argument),*).await,
            Store::Postgres($backend) => $receiver.$method($($argument),*).await,
        };
        crate::observe::record(stringify!($method), started, &outcome);
        outcome
    }};
}

// Declared after `dispatch!`, which they use.
mod alerts;
mod audit_verify;
mod chain_head;
mod members;
mod oauth;
mod pki;
mod submissions;
pub mod usage;

pub use crate::alerts::{
    AlertFilter, AlertRecord, AlertRule, AlertSeverity, AttemptOutcome, CredentialNetwork,
    Delivery, DeliveryState, NewDelivery, UnknownAlertName,
};
pub use crate::members::{AcceptInvite, InviteRecord, InviteState, NewInvite};
pub use crate::oauth::EXPIRED_CODE_RETENTION;
pub use crate::submissions::{NewSubmission, SubmissionClaim};

impl Store {
    /// Opens the SQLite database at `path`, creating the file if it is
    /// missing, and applies pending migrations.
    ///
    /// The connections use WAL mode, `synchronous = FULL`, a busy timeout
    /// and foreign keys. Several processes may open the same file at once.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        SqliteStore::open(path).await.map(Self::Sqlite)
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://…`) and
    /// applies pending migrations.
    ///
    /// Fails with [`StoreError::Unavailable`] when no connection succeeds
    /// within five seconds.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        PostgresStore::open(url).await.map(Self::Postgres)
    }

    /// Returns the backend's name: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Runs a trivial query to check that the database is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, store => store.ping())
    }

    /// Closes every connection. Later calls fail with
    /// [`StoreError::Unavailable`].
    pub async fn close(&self) {
        dispatch!(self, store => store.close())
    }

    /// Binds the database to a master key.
    ///
    /// The first call stores `check`, the master key's check value. Later
    /// calls compare `check` with the stored value in constant time and fail
    /// with [`StoreError::MasterKeyMismatch`] when they differ.
    pub async fn check_master_key(&self, check: &SecretHash) -> Result<(), StoreError> {
        dispatch!(self, store => store.check_master_key(check))
    }

    /// Creates a tenant named `name`, with its audit record.
    ///
    /// Fails with [`StoreError::Conflict`] when the name is taken.
    pub async fn create_tenant(
        &self,
        name: &TenantName,
        audit: &AuditContext,
    ) -> Result<Tenant, StoreError> {
        dispatch!(self, store => store.create_tenant(name, audit))
    }

    /// Lists every tenant, by name.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        dispatch!(self, store => store.list_tenants())
    }

    /// Finds a tenant by name.
    pub async fn find_tenant(&self, name: &TenantName) -> Result<Option<Tenant>, StoreError> {
        dispatch!(self, store => store.find_tenant(name))
    }

    /// Stores a new key, with its audit record, and returns it as stored.
    ///
    /// Fails with [`StoreError::Invalid`] when kind and tenant disagree,
    /// [`StoreError::NotFound`] when the tenant does not exist and
    /// [`StoreError::Conflict`] when the id or the hash is taken.
    pub async fn insert_key(
        &self,
        key: &NewKey,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        dispatch!(self, store => store.insert_key(key, audit))
    }

    /// Finds a key by the keyed hash of the whole secret.
    pub async fn find_key_by_hash(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        dispatch!(self, store => store.find_key_by_hash(hash))
    }

    /// Finds a key by id.
    pub async fn find_key(&self, id: KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        dispatch!(self, store => store.find_key(id))
    }

    /// Lists the keys that `filter` selects, newest first.
    pub async fn list_keys(&self, filter: KeyFilter) -> Result<Vec<ApiKeyRecord>, StoreError> {
        dispatch!(self, store => store.list_keys(filter))
    }

    /// Lists the unrevoked keys whose plan is set but is none of `plans`,
    /// as `(plan, key id)` pairs ordered by plan, then oldest key first.
    /// Only those keys are read, so the check at start holds no copy of
    /// every key in memory.
    pub async fn keys_on_other_plans(
        &self,
        plans: &[String],
    ) -> Result<Vec<(String, KeyId)>, StoreError> {
        dispatch!(self, store => store.keys_on_other_plans(plans))
    }

    /// Revokes a key at `audit.at`, with its audit record, and returns it.
    ///
    /// Fails with [`StoreError::NotFound`] when there is no such key and
    /// [`StoreError::AlreadyRevoked`] when it is revoked already.
    pub async fn revoke_key(
        &self,
        id: KeyId,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        dispatch!(self, store => store.revoke_key(id, reason, audit))
    }

    /// Replaces key `old` by `new_key` in one transaction and returns both
    /// keys as stored: `(old, new)`. It writes two audit records, the new
    /// key's creation and the old key's rotation.
    ///
    /// The old key now names the new one in `rotated_to` and expires at
    /// `grace_ends`, or at its own expiry if that is earlier. Fails with
    /// [`StoreError::NotFound`], [`StoreError::AlreadyRevoked`],
    /// [`StoreError::AlreadyRotated`] (a key rotates once),
    /// [`StoreError::Expired`] (judged at `audit.at`), or
    /// [`StoreError::Invalid`] when the new key's kind or tenant differs.
    pub async fn rotate_key(
        &self,
        old: KeyId,
        new_key: &NewKey,
        grace_ends: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<(ApiKeyRecord, ApiKeyRecord), StoreError> {
        dispatch!(self, store => store.rotate_key(old, new_key, grace_ends, audit))
    }

    /// Replaces a key's rate limits, plan and maximum uses, with an audit
    /// record and a change-feed row so that caches reload the key, and
    /// returns the key. The uses already spent stay.
    ///
    /// Fails with [`StoreError::NotFound`] when there is no such key.
    pub async fn update_key_limits(
        &self,
        id: KeyId,
        limits: &KeyLimits,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        dispatch!(self, store => store.update_key_limits(id, limits, audit))
    }

    /// Replaces a key's scopes by `scopes`, each of which one of the key's
    /// current scopes must grant, with an audit record and a change-feed
    /// row so that caches reload the key, and returns the key.
    ///
    /// The check runs in the transaction of the change, on the locked row,
    /// so a narrowing can never widen a key. Fails with
    /// [`StoreError::NotFound`], [`StoreError::AlreadyRevoked`],
    /// [`StoreError::Expired`] (judged at `audit.at`), or
    /// [`StoreError::Invalid`] when `scopes` is empty, equals the current
    /// scopes or contains a scope that the key does not grant.
    pub async fn narrow_key_scopes(
        &self,
        id: KeyId,
        scopes: &ScopeSet,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        dispatch!(self, store => store.narrow_key_scopes(id, scopes, audit))
    }

    /// Spends one use of a usage-limited key and returns the uses spent,
    /// this one included, or `None` when the key has no uses left (or no
    /// `max_uses`). The check and the increment are one conditional
    /// UPDATE, so concurrent callers on any number of nodes never spend
    /// more than `max_uses`. It writes no change-feed row.
    pub async fn spend_key_use(&self, id: KeyId) -> Result<Option<i64>, StoreError> {
        dispatch!(self, store => store.spend_key_use(id))
    }

    /// Gives back one use spent by [`Self::spend_key_use`], for a request
    /// that never got an upstream response. Never goes below zero.
    pub async fn refund_key_use(&self, id: KeyId) -> Result<(), StoreError> {
        dispatch!(self, store => store.refund_key_use(id))
    }

    /// Adds a batch of key usage in one transaction, with one UPDATE per
    /// [`usage::UPSERT_CHUNK_ROWS`] keys.
    ///
    /// For each entry, `use_count` grows by `count`, and `last_used_at` and
    /// `last_used_from` take the entry's values when it is newer than the
    /// stored time. Entries for unknown keys are skipped. Usage writes no
    /// change-feed row, because no cached decision depends on it.
    pub async fn record_usage(&self, batch: &[KeyUsage]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let merged = records::merge_key_usage(batch);
        dispatch!(self, store => store.record_usage(&merged))
    }

    /// Appends audit records in one transaction, such as a batch of failed
    /// authentications.
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        dispatch!(self, store => store.append_audit(events))
    }

    /// Lists the audit records that `filter` selects, newest first, at most
    /// `filter.limit` of them.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        dispatch!(self, store => store.list_audit(filter))
    }

    /// Gives the store the key of the audit hash chain. It writes nothing:
    /// records from before the chain are chained only by
    /// [`Store::seal_audit_chain`]. Without a key, writing or verifying an
    /// audit record fails with [`StoreError::AuditKeyMissing`].
    pub async fn attach_audit_key(mut self, key: AuditChainKey) -> Result<Self, StoreError> {
        match &mut self {
            Self::Sqlite(store) => store.set_audit_key(key),
            Self::Postgres(store) => store.set_audit_key(key),
        }
        Ok(self)
    }

    /// Lists the audit records that `query` selects, in chain order.
    pub async fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> Result<Vec<ChainedAuditEvent>, StoreError> {
        dispatch!(self, store => store.query_audit(query))
    }

    /// Deletes the audit records older than `before`, up to the first
    /// record that is not, and records the pruning in the chain.
    ///
    /// The hash of the last deleted record becomes the checkpoint from
    /// which verification starts, and the pruning record names it, so the
    /// rest of the chain stays verifiable. Returns `None` when nothing was
    /// old enough.
    pub async fn prune_audit(
        &self,
        before: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<Option<PruneOutcome>, StoreError> {
        dispatch!(self, store => store.prune_audit(before, audit))
    }

    /// Returns the id of the newest change-feed row, or 0 when there is none.
    ///
    /// A cache that loads its state reads this first and then follows the
    /// feed from it.
    pub async fn latest_change(&self) -> Result<i64, StoreError> {
        dispatch!(self, store => store.latest_change())
    }

    /// Lists change-feed rows with an id above `cursor`, or written within
    /// `lookback` of now by the database's clock, in id order.
    ///
    /// PostgreSQL can commit sequence values out of order. A row may
    /// therefore appear with an id below a cursor already passed, and the
    /// look-back returns such rows again, so consumers must treat a
    /// repeated row as harmless. Every few hundred calls, this also deletes rows
    /// older than [`CHANGE_RETENTION`].
    pub async fn changes_since(
        &self,
        cursor: i64,
        lookback: time::Duration,
    ) -> Result<Vec<Change>, StoreError> {
        dispatch!(self, store => store.changes_since(cursor, lookback))
    }

    /// Deletes change-feed rows older than `age` and returns how many.
    pub async fn prune_changes(&self, age: time::Duration) -> Result<u64, StoreError> {
        dispatch!(self, store => store.prune_changes(age))
    }

    /// Subscribes to change notifications.
    ///
    /// On PostgreSQL, returns a listener on [`CHANGE_CHANNEL`]. On SQLite,
    /// returns `None`: there, callers poll [`Store::changes_since`].
    pub async fn listen(&self) -> Result<Option<ChangeListener>, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(None),
            Self::Postgres(store) => store.listen().await.map(Some),
        }
    }
}

/// Converts a look-back or retention period to whole milliseconds,
/// saturating at the bounds of `i64`.
pub(crate) fn duration_millis(duration: time::Duration) -> i64 {
    let millis = duration.whole_milliseconds();
    i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX })
}

/// Number of [`Store::changes_since`] calls between two prunes of the
/// change feed: at one poll a second, one prune every ten minutes.
const PRUNE_EVERY_CALLS: u64 = 600;

/// Counts change-feed polls so that every [`PRUNE_EVERY_CALLS`]th poll also
/// prunes old rows, the first one included. Clones share the count.
#[derive(Clone, Debug, Default)]
pub(crate) struct PruneSchedule(Arc<AtomicU64>);

impl PruneSchedule {
    /// Counts one poll and returns whether it should prune.
    pub(crate) fn is_due(&self) -> bool {
        self.0
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY_CALLS)
    }
}
