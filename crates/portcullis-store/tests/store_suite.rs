//! One suite of store behaviour, run on SQLite and on PostgreSQL.
//!
//! SQLite runs use a file in a temporary directory. PostgreSQL runs connect
//! to `PORTCULLIS_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), create a database
//! `portcullis_test_<uuid>` for each test and drop it afterwards. When that
//! server cannot be reached, the PostgreSQL tests print a notice and pass,
//! except when `CI` is `true`: there they fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail the test by panicking"
)]

use std::future::Future;
use std::path::PathBuf;

use portcullis_core::credential::{ApiKeyRecord, KeyKind, KeyLimits, KeyStatus};
use portcullis_core::crypto::MasterKey;
use portcullis_core::ids::{AuditId, KeyId};
use portcullis_core::key::{Environment, KeySecret};
use portcullis_core::name::TenantName;
use portcullis_core::scope::ScopeSet;
use portcullis_store::{
    AuditAction, AuditContext, AuditEvent, AuditFilter, CHANGE_RETENTION, KeyFilter, KeyUsage,
    NewKey, Store, StoreError, Tenant,
};
use serde_json::json;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqlSafeStr};
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Defines each case as a test on SQLite and a test on PostgreSQL.
macro_rules! store_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_sqlite(super::$case).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_postgres(super::$case).await;
                }
            )*
        }
    };
}

store_suite!(
    tenants_created_listed_and_found,
    duplicate_tenant_conflicts,
    keys_found_by_hash_and_id,
    keys_listed_by_filter_newest_first,
    invalid_keys_rejected,
    revoke_twice_already_revoked,
    rotate_twice_already_rotated,
    rotate_keeps_earlier_expiry,
    rotate_of_unusable_key_rejected,
    usage_batches_add_up,
    audit_written_with_each_change,
    audit_appended_and_filtered,
    audit_batch_all_or_nothing,
    change_feed_shows_revocation,
    key_limits_stored_and_updated,
    keys_on_other_plans_listed,
    key_scopes_narrowed_never_widened,
    key_uses_spent_exactly,
    change_feed_pruned,
    listener_hears_other_store,
    master_key_mismatch_rejected,
    migrations_run_twice,
    closed_store_unavailable,
    concurrent_writers_all_succeed,
    // OAuth, in `store_suite/oauth.rs`.
    clients_created_found_and_listed,
    invalid_clients_rejected,
    secret_rotation_keeps_both_until_grace_ends,
    client_revocation_revokes_tokens,
    client_limits_stored_and_updated,
    client_redirect_uris_replaced,
    users_created_and_found,
    duplicate_user_email_conflicts,
    code_consumed_twice_already_used,
    concurrent_code_redemptions_one_wins,
    code_reuse_revokes_family,
    refresh_reuse_revokes_family,
    refresh_bound_to_client,
    concurrent_refresh_one_rotates,
    access_token_revocation_reaches_feed,
    consent_upserted,
    assertion_jti_replay_rejected,
    sessions_created_touched_and_deleted,
    submission_claimed_once_per_session,
    submissions_bounded_and_deleted_with_session,
    signing_keys_activated_and_deleted,
    signing_key_revoked_pending_takes_over,
    signing_key_revoked_replacement_takes_over,
    signing_key_revoke_errors,
    expired_oauth_rows_pruned,
    certificate_clients_stored,
    invalid_certificate_clients_rejected,
    access_token_thumbprint_stored,
    // Members and invites, in `store_suite/members.rs`.
    member_roles_keep_one_admin,
    disabled_member_loses_sessions,
    disabled_member_loses_oauth_grants,
    disabled_member_enabled_again,
    parallel_admin_changes_keep_one_admin,
    last_sign_in_recorded,
    invites_created_listed_and_revoked,
    invite_accepted_once,
    expired_or_revoked_invite_refused,
    // The internal CA, in `store_suite/pki.rs`.
    ca_stored_once,
    certificates_stored_and_listed,
    invalid_certificates_rejected,
    certificate_revocation_reaches_feed,
    trusted_cas_added_per_tenant,
    trusted_ca_changed_and_removed,
    // Usage rollups, in `store_suite/usage.rs`.
    usage_counts_add_up_by_hour_and_day,
    key_request_totals_per_tenant,
    large_usage_batch_written,
    old_usage_pruned,
    scope_uses_recorded_once,
    client_last_use_day_found,
    // The audit hash chain, in `store_suite/audit_chain.rs`.
    audit_chain_intact_after_changes,
    audit_chain_edited_record_detected,
    audit_chain_deleted_record_detected,
    audit_chain_reordered_records_detected,
    audit_chain_deleted_tail_detected,
    audit_chain_linear_with_two_writers,
    audit_chain_reset_head_not_rechained,
    audit_chain_removed_hash_stays_broken,
    audit_chain_deleted_head_detected,
    audit_chain_rolled_back_head_detected,
    audit_chain_replayed_head_needs_expected,
    audit_chain_seal_chains_legacy_once,
    audit_chain_seal_after_tampering_recorded,
    audit_chain_pruned_and_still_verified,
    audit_chain_moved_checkpoint_detected,
    audit_chain_malformed_hash_named,
    audit_chain_start_check_names_last_record,
    audit_chain_start_check_names_appended_record,
    audit_chain_seal_rebuilds_lost_head,
    audit_chain_seal_rebuilds_pruned_head,
    audit_chain_seal_rejects_broken_records,
    audit_pruning_after_deleted_records_broken,
    audit_query_filters_and_pages,
    audit_query_time_range_overlaps_success_minute,
    audit_write_without_key_rejected,
    // Anomaly alerts, in `store_suite/alerts.rs`.
    alerts_filtered_and_paged,
    deliveries_claimed_and_finished,
    credential_networks_bounded,
    first_network_sighting_wins_once,
    old_alerts_pruned_unless_pending,
);

#[path = "store_suite/alerts.rs"]
mod alerts;
#[path = "store_suite/audit_chain.rs"]
mod audit_chain;
#[path = "store_suite/members.rs"]
mod members;
#[path = "store_suite/oauth.rs"]
mod oauth;
#[path = "store_suite/pki.rs"]
mod pki;
#[path = "store_suite/usage.rs"]
mod usage;

use alerts::*;
use audit_chain::*;
use members::*;
use oauth::*;
use pki::*;
use usage::*;

/// Where a test's database lives, so that a case can open a second `Store`
/// on it as a second process would.
#[derive(Clone, Debug)]
enum Place {
    Sqlite(PathBuf),
    Postgres(String),
}

/// What each case receives: an open store and the place to open another.
#[derive(Clone, Debug)]
struct Fixture {
    store: Store,
    place: Place,
}

impl Fixture {
    async fn open_another(&self) -> Store {
        match &self.place {
            Place::Sqlite(path) => chained(Store::open_sqlite(path).await.unwrap()).await,
            Place::Postgres(url) => chained(Store::open_postgres(url).await.unwrap()).await,
        }
    }
}

async fn run_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("portcullis.sqlite");
    let store = chained(Store::open_sqlite(&path).await.unwrap()).await;
    assert_eq!(store.backend(), "sqlite");
    case(Fixture {
        store: store.clone(),
        place: Place::Sqlite(path),
    })
    .await;
    store.close().await;
}

async fn run_postgres<F, Fut>(case: F)
where
    F: FnOnce(Fixture) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let url = database.url.clone();
    // The case runs in its own task, so that the database is dropped even
    // when the case panics. Spawning also checks that store futures are Send.
    let outcome = tokio::spawn(async move {
        let store = chained(Store::open_postgres(&url).await.unwrap()).await;
        assert_eq!(store.backend(), "postgres");
        case(Fixture {
            store: store.clone(),
            place: Place::Postgres(url),
        })
        .await;
        store.close().await;
    })
    .await;
    database.drop().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// A PostgreSQL database created for one test.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates the database, or returns `None` after a notice when the
    /// server is unreachable outside CI.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test reads its database settings from the environment"
    )]
    async fn create() -> Option<Self> {
        let admin_url = std::env::var("PORTCULLIS_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(connection) => connection,
            Err(error) => {
                let message = format!(
                    "cannot connect to the PostgreSQL server of PORTCULLIS_TEST_DATABASE_URL \
                     (default {DEFAULT_DATABASE_URL}): {error}; start PostgreSQL or set the \
                     variable to a server that runs"
                );
                if std::env::var("CI").is_ok_and(|value| value == "true") {
                    panic!("{message}");
                }
                eprintln!("skipping PostgreSQL test: {message}");
                return None;
            }
        };

        let name = format!("portcullis_test_{}", uuid::Uuid::now_v7().simple());
        // The name is generated above from hex digits, never from input.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = database_url(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    async fn drop(self) {
        let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
    }
}

/// Replaces the database name in a `postgres://` URL, keeping any query.
fn database_url(base: &str, database: &str) -> String {
    let (without_query, query) = match base.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (base, String::new()),
    };
    let authority_start = without_query.find("://").map_or(0, |at| at + 3);
    let server = match without_query[authority_start..].find('/') {
        Some(slash) => &without_query[..authority_start + slash],
        None => without_query,
    };
    format!("{server}/{database}{query}")
}

#[test]
fn database_url_replaces_name() {
    assert_eq!(
        database_url("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        database_url("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        database_url("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

// ---------------------------------------------------------------------
// Helpers

/// The master key of every test database, so that a second store opened
/// on the same database extends the same audit chain.
const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LW9mLXRoZS1zdG9yZS1zdWk";

/// Attaches the audit chain key of [`TEST_MASTER_KEY`] to `store`.
async fn chained(store: Store) -> Store {
    let key = MasterKey::from_encoded(TEST_MASTER_KEY).unwrap();
    store.attach_audit_key(key.audit_chain_key()).await.unwrap()
}

/// Returns the current time cut to whole milliseconds, which both backends
/// store exactly.
fn now() -> OffsetDateTime {
    let at = OffsetDateTime::now_utc();
    at.replace_millisecond(at.millisecond()).unwrap()
}

fn context(at: OffsetDateTime) -> AuditContext {
    AuditContext {
        actor: "cli".to_owned(),
        remote_addr: Some("192.0.2.7".to_owned()),
        at,
    }
}

fn tenant_name(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

/// Builds a new key of `tenant`, or an operator key when `tenant` is `None`.
fn new_key(tenant: Option<&Tenant>, created_at: OffsetDateTime) -> NewKey {
    let secret = KeySecret::generate(Environment::Test).unwrap();
    let pepper = MasterKey::generate().unwrap().derive_pepper();
    NewKey {
        id: KeyId::generate(),
        kind: if tenant.is_some() {
            KeyKind::Tenant
        } else {
            KeyKind::Operator
        },
        tenant_id: tenant.map(|tenant| tenant.id),
        name: Some("billing sync".to_owned()),
        environment: Environment::Test,
        visible_prefix: secret.visible_prefix(),
        hash: pepper.hash(secret.expose().as_bytes()),
        scopes: ScopeSet::parse_list("orders:read invoices:*").unwrap(),
        created_at,
        expires_at: None,
        limits: KeyLimits::default(),
        created_by: Some("cli".to_owned()),
    }
}

async fn create_tenant(store: &Store, name: &str) -> Tenant {
    store
        .create_tenant(&tenant_name(name), &context(now()))
        .await
        .unwrap()
}

async fn insert(store: &Store, key: &NewKey) -> ApiKeyRecord {
    store
        .insert_key(key, &context(key.created_at))
        .await
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn audit_of(target: String) -> AuditFilter {
    AuditFilter {
        tenant_id: None,
        action: None,
        target: Some(target),
        limit: 100,
    }
}

// ---------------------------------------------------------------------
// Tenants

async fn tenants_created_listed_and_found(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let zeta = store
        .create_tenant(&tenant_name("zeta"), &context(at))
        .await
        .unwrap();
    let acme = create_tenant(&store, "acme").await;
    assert_eq!(zeta.name.as_str(), "zeta");
    assert_eq!(zeta.created_at, at);

    let listed = store.list_tenants().await.unwrap();
    assert_eq!(listed, vec![acme.clone(), zeta.clone()]);

    assert_eq!(
        store.find_tenant(&tenant_name("acme")).await.unwrap(),
        Some(acme)
    );
    assert_eq!(
        store.find_tenant(&tenant_name("nobody")).await.unwrap(),
        None
    );
}

async fn duplicate_tenant_conflicts(fixture: Fixture) {
    let store = fixture.store;
    create_tenant(&store, "acme").await;
    let error = store
        .create_tenant(&tenant_name("acme"), &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert!(error.to_string().contains("acme"), "{error}");
    assert_eq!(store.list_tenants().await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------
// Keys

async fn keys_found_by_hash_and_id(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let mut key = new_key(Some(&acme), now());
    key.expires_at = Some(key.created_at + Duration::days(90));
    let stored = insert(&store, &key).await;

    assert_eq!(stored.id, key.id);
    assert_eq!(stored.kind, KeyKind::Tenant);
    assert_eq!(stored.tenant_id, Some(acme.id));
    assert_eq!(stored.tenant, Some(acme.name.clone()));
    assert_eq!(stored.name.as_deref(), Some("billing sync"));
    assert_eq!(stored.environment, Environment::Test);
    assert_eq!(stored.visible_prefix, key.visible_prefix);
    assert_eq!(stored.scopes, key.scopes);
    assert_eq!(stored.created_at, key.created_at);
    assert_eq!(stored.expires_at, key.expires_at);
    assert_eq!(stored.revoked_at, None);
    assert_eq!(stored.rotated_to, None);
    assert_eq!(stored.use_count, 0);
    assert_eq!(stored.created_by.as_deref(), Some("cli"));
    assert_eq!(stored.status(now()), KeyStatus::Active);

    let by_hash = store.find_key_by_hash(&key.hash).await.unwrap();
    assert_eq!(by_hash.as_ref(), Some(&stored));
    let by_id = store.find_key(key.id).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&stored));

    let other = new_key(Some(&acme), now());
    assert_eq!(store.find_key_by_hash(&other.hash).await.unwrap(), None);
    assert_eq!(store.find_key(other.id).await.unwrap(), None);
}

async fn keys_listed_by_filter_newest_first(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let start = now();
    let acme_old = insert(&store, &new_key(Some(&acme), start)).await;
    let operator = insert(&store, &new_key(None, start + Duration::seconds(1))).await;
    let globex_key = insert(
        &store,
        &new_key(Some(&globex), start + Duration::seconds(2)),
    )
    .await;
    let acme_new = insert(&store, &new_key(Some(&acme), start + Duration::seconds(3))).await;

    let ids = |keys: Vec<ApiKeyRecord>| keys.into_iter().map(|key| key.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_keys(KeyFilter::All).await.unwrap()),
        vec![acme_new.id, globex_key.id, operator.id, acme_old.id]
    );
    assert_eq!(
        ids(store.list_keys(KeyFilter::Tenant(acme.id)).await.unwrap()),
        vec![acme_new.id, acme_old.id]
    );
    assert_eq!(
        ids(store.list_keys(KeyFilter::Operator).await.unwrap()),
        vec![operator.id]
    );
    assert_eq!(operator.tenant, None);
    assert_eq!(operator.kind, KeyKind::Operator);
}

async fn invalid_keys_rejected(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;

    let mut without_tenant = new_key(Some(&acme), now());
    without_tenant.tenant_id = None;
    let error = store
        .insert_key(&without_tenant, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");

    let mut operator_with_tenant = new_key(None, now());
    operator_with_tenant.tenant_id = Some(acme.id);
    let error = store
        .insert_key(&operator_with_tenant, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");

    let mut unknown_tenant = new_key(Some(&acme), now());
    unknown_tenant.tenant_id = Some(portcullis_core::ids::TenantId::generate());
    let error = store
        .insert_key(&unknown_tenant, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound("tenant")), "{error:?}");

    let first = new_key(Some(&acme), now());
    insert(&store, &first).await;
    let mut same_hash = new_key(Some(&acme), now());
    same_hash.hash = first.hash.clone();
    let error = store
        .insert_key(&same_hash, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let mut same_id = new_key(Some(&acme), now());
    same_id.id = first.id;
    let error = store
        .insert_key(&same_id, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");

    let all = store.list_keys(KeyFilter::All).await.unwrap();
    assert_eq!(all.len(), 1, "only the valid key is stored");
}

async fn revoke_twice_already_revoked(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let key = insert(&store, &new_key(Some(&acme), now())).await;
    let at = now();

    let revoked = store
        .revoke_key(key.id, Some("leaked in a log"), &context(at))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    assert_eq!(revoked.revoked_reason.as_deref(), Some("leaked in a log"));
    assert_eq!(revoked.status(at), KeyStatus::Revoked);
    assert_eq!(store.find_key(key.id).await.unwrap(), Some(revoked));

    let again = store
        .revoke_key(key.id, None, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::AlreadyRevoked), "{again:?}");

    let unknown = store
        .revoke_key(KeyId::generate(), None, &context(now()))
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound("key")),
        "{unknown:?}"
    );
}

async fn rotate_twice_already_rotated(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let old = insert(&store, &new_key(Some(&acme), now())).await;
    let at = now();
    let grace_ends = at + Duration::days(7);
    let replacement = new_key(Some(&acme), at);

    let (old_after, new) = store
        .rotate_key(old.id, &replacement, grace_ends, &context(at))
        .await
        .unwrap();
    assert_eq!(old_after.rotated_to, Some(replacement.id));
    assert_eq!(old_after.expires_at, Some(grace_ends));
    assert_eq!(old_after.status(at), KeyStatus::Rotating);
    assert_eq!(new.id, replacement.id);
    assert_eq!(new.tenant_id, Some(acme.id));
    assert_eq!(new.status(at), KeyStatus::Active);
    assert_eq!(
        store.find_key_by_hash(&replacement.hash).await.unwrap(),
        Some(new)
    );

    let second = new_key(Some(&acme), now());
    let error = store
        .rotate_key(old.id, &second, grace_ends, &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::AlreadyRotated), "{error:?}");
    assert_eq!(
        store.find_key(second.id).await.unwrap(),
        None,
        "a failed rotation stores no new key"
    );
}

async fn rotate_keeps_earlier_expiry(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();
    let grace_ends = at + Duration::days(7);

    // Each case: the old key's expiry, and its expiry after rotation.
    let cases = [
        (None, grace_ends),
        (Some(at + Duration::hours(1)), at + Duration::hours(1)),
        (Some(at + Duration::days(30)), grace_ends),
    ];
    for (expires_at, expected) in cases {
        let mut key = new_key(Some(&acme), at);
        key.expires_at = expires_at;
        let old = insert(&store, &key).await;
        let (old_after, _) = store
            .rotate_key(old.id, &new_key(Some(&acme), at), grace_ends, &context(at))
            .await
            .unwrap();
        assert_eq!(old_after.expires_at, Some(expected), "from {expires_at:?}");
    }
}

async fn rotate_of_unusable_key_rejected(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let at = now();
    let grace_ends = at + Duration::days(7);

    let mut expiring = new_key(Some(&acme), at - Duration::days(2));
    expiring.expires_at = Some(at - Duration::days(1));
    let expired = insert(&store, &expiring).await;
    let error = store
        .rotate_key(
            expired.id,
            &new_key(Some(&acme), at),
            grace_ends,
            &context(at),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Expired), "{error:?}");

    let revoked = insert(&store, &new_key(Some(&acme), at)).await;
    store
        .revoke_key(revoked.id, None, &context(at))
        .await
        .unwrap();
    let error = store
        .rotate_key(
            revoked.id,
            &new_key(Some(&acme), at),
            grace_ends,
            &context(at),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::AlreadyRevoked), "{error:?}");

    let error = store
        .rotate_key(
            KeyId::generate(),
            &new_key(Some(&acme), at),
            grace_ends,
            &context(at),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound("key")), "{error:?}");

    let active = insert(&store, &new_key(Some(&acme), at)).await;
    let error = store
        .rotate_key(
            active.id,
            &new_key(Some(&globex), at),
            grace_ends,
            &context(at),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Invalid(_)), "{error:?}");
    let unchanged = store.find_key(active.id).await.unwrap().unwrap();
    assert_eq!(unchanged.rotated_to, None);
}

// ---------------------------------------------------------------------
// Usage

async fn usage_batches_add_up(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let key = insert(&store, &new_key(Some(&acme), now())).await;
    let other = insert(&store, &new_key(Some(&acme), now())).await;
    let t0 = now();
    let t1 = t0 + Duration::seconds(10);
    let t2 = t0 + Duration::seconds(20);
    let usage = |key: &ApiKeyRecord, at, from: &str, count| KeyUsage {
        key_id: key.id,
        last_used_at: at,
        last_used_from: Some(from.to_owned()),
        count,
    };

    // One batch may name a key twice, newest first or not.
    store
        .record_usage(&[
            usage(&key, t1, "198.51.100.1", 3),
            usage(&key, t0, "198.51.100.2", 2),
            usage(&other, t0, "198.51.100.3", 1),
        ])
        .await
        .unwrap();
    let after_first = store.find_key(key.id).await.unwrap().unwrap();
    assert_eq!(after_first.use_count, 5);
    assert_eq!(after_first.last_used_at, Some(t1));
    assert_eq!(after_first.last_used_from.as_deref(), Some("198.51.100.1"));

    // An older entry adds its count and leaves the last use alone.
    store
        .record_usage(&[usage(&key, t0, "198.51.100.4", 4)])
        .await
        .unwrap();
    let after_older = store.find_key(key.id).await.unwrap().unwrap();
    assert_eq!(after_older.use_count, 9);
    assert_eq!(after_older.last_used_at, Some(t1));
    assert_eq!(after_older.last_used_from.as_deref(), Some("198.51.100.1"));

    // A newer entry moves the last use.
    store
        .record_usage(&[usage(&key, t2, "198.51.100.5", 1)])
        .await
        .unwrap();
    let after_newer = store.find_key(key.id).await.unwrap().unwrap();
    assert_eq!(after_newer.use_count, 10);
    assert_eq!(after_newer.last_used_at, Some(t2));
    assert_eq!(after_newer.last_used_from.as_deref(), Some("198.51.100.5"));

    let other_after = store.find_key(other.id).await.unwrap().unwrap();
    assert_eq!(other_after.use_count, 1);

    // Unknown keys and empty batches are no error.
    store
        .record_usage(&[usage(&new_record_stub(), t2, "198.51.100.6", 1)])
        .await
        .unwrap();
    store.record_usage(&[]).await.unwrap();
}

/// Builds the record of a key that was never stored.
fn new_record_stub() -> ApiKeyRecord {
    ApiKeyRecord {
        id: KeyId::generate(),
        kind: KeyKind::Operator,
        tenant_id: None,
        tenant: None,
        name: None,
        environment: Environment::Test,
        visible_prefix: "pc_test_none".to_owned(),
        scopes: ScopeSet::default(),
        created_at: OffsetDateTime::UNIX_EPOCH,
        expires_at: None,
        revoked_at: None,
        revoked_reason: None,
        rotated_to: None,
        last_used_at: None,
        last_used_from: None,
        use_count: 0,
        limits: KeyLimits::default(),
        created_by: None,
    }
}

// ---------------------------------------------------------------------
// Audit

async fn audit_written_with_each_change(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let acme = store
        .create_tenant(&tenant_name("acme"), &context(at))
        .await
        .unwrap();
    let key = new_key(Some(&acme), at);
    insert(&store, &key).await;
    let replacement = new_key(Some(&acme), at);
    store
        .rotate_key(key.id, &replacement, at + Duration::days(1), &context(at))
        .await
        .unwrap();
    store
        .revoke_key(replacement.id, Some("customer left"), &context(at))
        .await
        .unwrap();

    let tenant_events = store
        .list_audit(&audit_of(acme.id.to_string()))
        .await
        .unwrap();
    assert_eq!(tenant_events.len(), 1);
    let created = &tenant_events[0];
    assert_eq!(created.action, AuditAction::TenantCreated);
    assert_eq!(created.actor, "cli");
    assert_eq!(created.remote_addr.as_deref(), Some("192.0.2.7"));
    assert_eq!(created.at, at);
    assert_eq!(created.tenant_id, Some(acme.id));
    assert_eq!(created.details["name"], json!("acme"));

    let old_events = store
        .list_audit(&audit_of(key.id.to_string()))
        .await
        .unwrap();
    let old_actions: Vec<AuditAction> = old_events.iter().map(|event| event.action).collect();
    assert_eq!(old_actions.len(), 2, "{old_actions:?}");
    assert!(old_actions.contains(&AuditAction::KeyCreated));
    assert!(old_actions.contains(&AuditAction::KeyRotated));
    let rotated = old_events
        .iter()
        .find(|event| event.action == AuditAction::KeyRotated)
        .unwrap();
    assert_eq!(
        rotated.details["new_key_id"],
        json!(replacement.id.to_string())
    );

    let new_events = store
        .list_audit(&audit_of(replacement.id.to_string()))
        .await
        .unwrap();
    let new_actions: Vec<AuditAction> = new_events.iter().map(|event| event.action).collect();
    assert!(
        new_actions.contains(&AuditAction::KeyCreated),
        "{new_actions:?}"
    );
    assert!(
        new_actions.contains(&AuditAction::KeyRevoked),
        "{new_actions:?}"
    );
    let revoked = new_events
        .iter()
        .find(|event| event.action == AuditAction::KeyRevoked)
        .unwrap();
    assert_eq!(revoked.details["reason"], json!("customer left"));
    assert_eq!(revoked.tenant_id, Some(acme.id));

    let every_event = store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: None,
            target: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(every_event.len(), 5);
    for hash in [&key.hash, &replacement.hash] {
        let hash_hex = hex(hash.as_bytes());
        for event in &every_event {
            let details = event.details.to_string();
            assert!(!details.contains(&hash_hex), "hash in {details}");
            assert!(!details.contains("hash"), "hash field in {details}");
        }
    }
}

async fn audit_appended_and_filtered(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let start = now();
    let failures: Vec<AuditEvent> = (0..3)
        .map(|index| AuditEvent {
            id: AuditId::generate(),
            at: start + Duration::seconds(index),
            actor: "anonymous".to_owned(),
            action: AuditAction::AuthFailed,
            tenant_id: Some(acme.id),
            target: Some("pc_live_4f1X".to_owned()),
            remote_addr: Some("203.0.113.9".to_owned()),
            details: json!({ "reason": "revoked", "attempt": index }),
        })
        .collect();
    store.append_audit(&failures).await.unwrap();
    store.append_audit(&[]).await.unwrap();

    let failed = store
        .list_audit(&AuditFilter {
            tenant_id: Some(acme.id),
            action: Some(AuditAction::AuthFailed),
            target: None,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 2, "limit applies");
    assert_eq!(failed[0], failures[2], "newest first");
    assert_eq!(failed[1], failures[1]);

    let by_target = store
        .list_audit(&audit_of("pc_live_4f1X".to_owned()))
        .await
        .unwrap();
    assert_eq!(by_target.len(), 3);

    let tenant_events = store
        .list_audit(&AuditFilter {
            tenant_id: Some(acme.id),
            action: None,
            target: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(tenant_events.len(), 4, "three failures and the creation");

    let none = store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::KeyRevoked),
            target: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn audit_batch_all_or_nothing(fixture: Fixture) {
    let store = fixture.store;
    let event = AuditEvent {
        id: AuditId::generate(),
        at: now(),
        actor: "anonymous".to_owned(),
        action: AuditAction::AuthFailed,
        tenant_id: None,
        target: Some("pc_test_abcd".to_owned()),
        remote_addr: None,
        details: json!({}),
    };
    let mut fresh = event.clone();
    fresh.id = AuditId::generate();

    // The repeated id fails the batch, so the fresh record is not kept.
    let error = store
        .append_audit(&[fresh, event.clone(), event])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Database(_)), "{error:?}");
    let kept = store
        .list_audit(&audit_of("pc_test_abcd".to_owned()))
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
}

// ---------------------------------------------------------------------
// Change feed

async fn keys_on_other_plans_listed(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let started = now();
    let mut inserted = Vec::new();
    for (offset, plan) in [
        (0, Some("basic")),
        (1, Some("gold")),
        (2, None),
        (3, Some("gold")),
    ] {
        let mut key = new_key(Some(&acme), started + Duration::seconds(offset));
        key.limits.plan = plan.map(str::to_owned);
        inserted.push(insert(&store, &key).await.id);
    }
    let [basic, gold, no_plan, newer_gold] = inserted[..] else {
        panic!("four keys were inserted");
    };
    let mut revoked = new_key(Some(&acme), started);
    revoked.limits.plan = Some("gold".to_owned());
    insert(&store, &revoked).await;
    store
        .revoke_key(revoked.id, None, &context(now()))
        .await
        .unwrap();

    let outside_basic = store
        .keys_on_other_plans(&["basic".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        outside_basic,
        vec![("gold".to_owned(), gold), ("gold".to_owned(), newer_gold)]
    );
    let outside_none = store.keys_on_other_plans(&[]).await.unwrap();
    assert_eq!(
        outside_none,
        vec![
            ("basic".to_owned(), basic),
            ("gold".to_owned(), gold),
            ("gold".to_owned(), newer_gold),
        ]
    );
    assert!(
        !outside_none.iter().any(|(_, id)| *id == no_plan),
        "a key without a plan is never listed"
    );
    let outside_both = store
        .keys_on_other_plans(&["basic".to_owned(), "gold".to_owned()])
        .await
        .unwrap();
    assert_eq!(outside_both, vec![]);
}

async fn key_limits_stored_and_updated(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let plain = insert(&store, &new_key(Some(&acme), now())).await;
    assert_eq!(plain.limits, KeyLimits::default());

    let mut limited = new_key(Some(&acme), now());
    limited.limits = KeyLimits {
        rate_limits: vec!["100/s burst 200".to_owned(), "5000/h".to_owned()],
        plan: Some("basic".to_owned()),
        max_uses: Some(7),
        uses_spent: 0,
    };
    let stored = insert(&store, &limited).await;
    assert_eq!(stored.limits, limited.limits);
    let found = store.find_key(limited.id).await.unwrap().unwrap();
    assert_eq!(found.limits, limited.limits);

    let cursor = store.latest_change().await.unwrap();
    let changed = KeyLimits {
        rate_limits: vec!["10/min".to_owned()],
        plan: None,
        max_uses: None,
        uses_spent: 0,
    };
    let updated = store
        .update_key_limits(limited.id, &changed, &context(now()))
        .await
        .unwrap();
    assert_eq!(updated.limits, changed);
    assert_eq!(
        store.find_key(limited.id).await.unwrap().unwrap().limits,
        changed
    );
    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    assert!(
        changes
            .iter()
            .any(|change| change.key_id == Some(limited.id)),
        "the change reaches the feed: {changes:?}"
    );
    let audit = store
        .list_audit(&AuditFilter {
            action: Some(AuditAction::KeyLimitsChanged),
            ..audit_of(limited.id.to_string())
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["previous_plan"], "basic");
    assert_eq!(audit[0].details["rate_limits"][0], "10/min");

    let cleared = store
        .update_key_limits(limited.id, &KeyLimits::default(), &context(now()))
        .await
        .unwrap();
    assert_eq!(cleared.limits, KeyLimits::default());

    let missing = store
        .update_key_limits(KeyId::generate(), &changed, &context(now()))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound("key"))),
        "{missing:?}"
    );
}

async fn key_scopes_narrowed_never_widened(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    // The key's scopes are `orders:read invoices:*`.
    let key = insert(&store, &new_key(Some(&acme), now())).await;
    let cursor = store.latest_change().await.unwrap();

    let narrower = ScopeSet::parse_list("orders:read invoices:read").unwrap();
    let narrowed = store
        .narrow_key_scopes(key.id, &narrower, &context(now()))
        .await
        .unwrap();
    assert_eq!(narrowed.scopes, narrower);
    assert_eq!(
        store.find_key(key.id).await.unwrap().unwrap().scopes,
        narrower
    );
    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    assert!(
        changes.iter().any(|change| change.key_id == Some(key.id)),
        "the change reaches the feed: {changes:?}"
    );
    let audit = store
        .list_audit(&AuditFilter {
            action: Some(AuditAction::KeyScopesNarrowed),
            ..audit_of(key.id.to_string())
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["scopes"], "invoices:read orders:read");
    assert_eq!(
        audit[0].details["previous_scopes"],
        "invoices:* orders:read"
    );
    assert_eq!(audit[0].tenant_id, Some(acme.id));

    // Each rejected set leaves the key as it is.
    for rejected in [
        "orders:read invoices:read",
        "orders:write",
        "orders:*",
        "orders:read invoices:write",
    ] {
        let scopes = ScopeSet::parse_list(rejected).unwrap();
        let outcome = store
            .narrow_key_scopes(key.id, &scopes, &context(now()))
            .await;
        assert!(
            matches!(outcome, Err(StoreError::Invalid(_))),
            "{rejected}: {outcome:?}"
        );
    }
    let empty = store
        .narrow_key_scopes(key.id, &ScopeSet::default(), &context(now()))
        .await;
    assert!(matches!(empty, Err(StoreError::Invalid(_))), "{empty:?}");
    assert_eq!(
        store.find_key(key.id).await.unwrap().unwrap().scopes,
        narrower
    );

    store
        .revoke_key(key.id, None, &context(now()))
        .await
        .unwrap();
    let orders = ScopeSet::parse_list("orders:read").unwrap();
    let revoked = store
        .narrow_key_scopes(key.id, &orders, &context(now()))
        .await;
    assert!(
        matches!(revoked, Err(StoreError::AlreadyRevoked)),
        "{revoked:?}"
    );
    let missing = store
        .narrow_key_scopes(KeyId::generate(), &orders, &context(now()))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound("key"))),
        "{missing:?}"
    );
}

async fn key_uses_spent_exactly(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let unlimited = insert(&store, &new_key(Some(&acme), now())).await;
    assert_eq!(store.spend_key_use(unlimited.id).await.unwrap(), None);

    let mut limited = new_key(Some(&acme), now());
    limited.limits.max_uses = Some(5);
    insert(&store, &limited).await;

    // Twenty spends at once: exactly five succeed, numbered 1 to 5.
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        let id = limited.id;
        tasks.spawn(async move { store.spend_key_use(id).await.unwrap() });
    }
    let mut spent: Vec<i64> = Vec::new();
    while let Some(result) = tasks.join_next().await {
        if let Some(count) = result.unwrap() {
            spent.push(count);
        }
    }
    spent.sort_unstable();
    assert_eq!(spent, [1, 2, 3, 4, 5]);

    let found = store.find_key(limited.id).await.unwrap().unwrap();
    assert_eq!(found.limits.max_uses, Some(5));
    assert_eq!(found.limits.uses_spent, 5);
    assert_eq!(store.spend_key_use(limited.id).await.unwrap(), None);
    assert_eq!(store.spend_key_use(KeyId::generate()).await.unwrap(), None);
}

async fn change_feed_shows_revocation(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let key = insert(&store, &new_key(Some(&acme), now())).await;
    let cursor = store.latest_change().await.unwrap();
    assert!(cursor > 0, "creating a tenant and a key writes changes");

    // Usage writes no change row.
    store
        .record_usage(&[KeyUsage {
            key_id: key.id,
            last_used_at: now(),
            last_used_from: None,
            count: 1,
        }])
        .await
        .unwrap();
    assert_eq!(store.latest_change().await.unwrap(), cursor);

    store
        .revoke_key(key.id, None, &context(now()))
        .await
        .unwrap();
    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    let revocation = changes
        .iter()
        .find(|change| change.id > cursor && change.key_id == Some(key.id))
        .expect("the revocation is in the feed");
    assert_eq!(revocation.tenant_id, Some(acme.id));
    let ids: Vec<i64> = changes.iter().map(|change| change.id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    // A cursor past the row still returns it within the look-back.
    let latest = store.latest_change().await.unwrap();
    assert!(latest >= revocation.id);
    let again = store
        .changes_since(latest, Duration::minutes(5))
        .await
        .unwrap();
    assert!(again.iter().any(|change| change.id == revocation.id));
}

async fn change_feed_pruned(fixture: Fixture) {
    let store = fixture.store;
    create_tenant(&store, "acme").await;
    create_tenant(&store, "globex").await;

    assert_eq!(store.prune_changes(CHANGE_RETENTION).await.unwrap(), 0);
    // A negative age puts the cut-off in the future, so every row goes.
    assert_eq!(store.prune_changes(Duration::hours(-1)).await.unwrap(), 2);
    assert!(
        store
            .changes_since(0, Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn listener_hears_other_store(fixture: Fixture) {
    let store = fixture.store.clone();
    let acme = create_tenant(&store, "acme").await;
    let key = insert(&store, &new_key(Some(&acme), now())).await;

    let Some(mut listener) = store.listen().await.unwrap() else {
        assert_eq!(store.backend(), "sqlite", "only SQLite has no listener");
        return;
    };
    let other = fixture.open_another().await;
    other
        .revoke_key(key.id, None, &context(now()))
        .await
        .unwrap();

    tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within five seconds")
        .unwrap();
    let changes = store.changes_since(0, Duration::ZERO).await.unwrap();
    assert!(changes.iter().any(|change| change.key_id == Some(key.id)));
    other.close().await;
}

// ---------------------------------------------------------------------
// Opening

async fn master_key_mismatch_rejected(fixture: Fixture) {
    let store = fixture.store.clone();
    let first = MasterKey::generate().unwrap();
    let second = MasterKey::generate().unwrap();

    store.check_master_key(&first.check_value()).await.unwrap();
    store.check_master_key(&first.check_value()).await.unwrap();
    let error = store
        .check_master_key(&second.check_value())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::MasterKeyMismatch), "{error:?}");

    let reopened = fixture.open_another().await;
    reopened
        .check_master_key(&first.check_value())
        .await
        .unwrap();
    reopened.close().await;
}

async fn migrations_run_twice(fixture: Fixture) {
    let acme = create_tenant(&fixture.store, "acme").await;
    let reopened = fixture.open_another().await;
    let found = reopened.find_tenant(&acme.name).await.unwrap();
    assert_eq!(found, Some(acme));
    reopened.close().await;
    let third = fixture.open_another().await;
    third.ping().await.unwrap();
    third.close().await;
}

async fn closed_store_unavailable(fixture: Fixture) {
    let closed = fixture.open_another().await;
    closed.close().await;
    let error = closed.ping().await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = closed
        .create_tenant(&tenant_name("acme"), &context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    fixture.store.ping().await.unwrap();
}

async fn concurrent_writers_all_succeed(fixture: Fixture) {
    const WRITES_PER_STORE: usize = 40;
    let first = fixture.store.clone();
    let second = fixture.open_another().await;
    let acme = create_tenant(&first, "acme").await;
    let key = insert(&first, &new_key(Some(&acme), now())).await;

    // Two stores on one database stand for two processes. Each write
    // below is its own transaction, all running at once.
    let mut tasks = JoinSet::new();
    for (label, store) in [("a", first.clone()), ("b", second.clone())] {
        for index in 0..WRITES_PER_STORE {
            let store = store.clone();
            let key_id = key.id;
            let acme = acme.clone();
            tasks.spawn(async move {
                let name = tenant_name(&format!("tenant-{label}-{index}"));
                store.create_tenant(&name, &context(now())).await?;
                store
                    .record_usage(&[KeyUsage {
                        key_id,
                        last_used_at: now(),
                        last_used_from: None,
                        count: 1,
                    }])
                    .await?;
                let own_key = store
                    .insert_key(&new_key(Some(&acme), now()), &context(now()))
                    .await?;
                // A revocation reads the key before it writes: the case in
                // which SQLite gives up at once unless the transaction took
                // the write lock up front.
                store.revoke_key(own_key.id, None, &context(now())).await?;
                Ok::<(), StoreError>(())
            });
        }
    }
    while let Some(outcome) = tasks.join_next().await {
        outcome.unwrap().unwrap();
    }

    let tenants = first.list_tenants().await.unwrap();
    assert_eq!(tenants.len(), 1 + 2 * WRITES_PER_STORE);
    let used = second.find_key(key.id).await.unwrap().unwrap();
    assert_eq!(used.use_count, (2 * WRITES_PER_STORE) as i64);
    let keys = second.list_keys(KeyFilter::Tenant(acme.id)).await.unwrap();
    assert_eq!(keys.len(), 1 + 2 * WRITES_PER_STORE);
    second.close().await;
}

/// The first schema version alone, to build a database as a release
/// without OAuth left it.
fn version_one(sql: &'static str) -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "initial".into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )])
}

/// Checks that a store opened on a version-1 database that has a tenant
/// keeps the tenant and serves the OAuth tables, and that opening it again
/// changes nothing.
async fn check_upgraded(upgraded: Store, again: impl Future<Output = Store>) {
    let acme = upgraded
        .find_tenant(&tenant_name("acme"))
        .await
        .unwrap()
        .expect("the tenant from version 1 survives the upgrade");
    let old_changes = upgraded.changes_since(0, Duration::days(1)).await.unwrap();
    assert_eq!(old_changes.len(), 1);
    assert_eq!(old_changes[0].jti, None);
    assert_eq!(old_changes[0].client_id, None);

    let client = create_client(&upgraded, &acme).await;
    upgraded.close().await;
    let reopened = again.await;
    assert_eq!(
        reopened.find_client(client.id).await.unwrap().map(|c| c.id),
        Some(client.id)
    );
    reopened.close().await;
}

#[tokio::test]
async fn sqlite_version_one_database_upgraded() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("portcullis.sqlite");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    version_one(include_str!("../migrations/sqlite/0001_initial.sql"))
        .run(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?1, 'acme', 0)")
        .bind(uuid::Uuid::now_v7().to_string())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO changes (tenant_id, at) VALUES (?1, ?2)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(now().unix_timestamp() * 1000)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let upgraded = chained(Store::open_sqlite(&path).await.unwrap()).await;
    check_upgraded(upgraded, async {
        chained(Store::open_sqlite(&path).await.unwrap()).await
    })
    .await;
}

/// Returns a migrator of the first three schema versions, which builds a
/// database as a release without certificate clients left it.
fn version_three() -> Migrator {
    let sources = [
        (
            1,
            "initial",
            include_str!("../migrations/sqlite/0001_initial.sql"),
        ),
        (
            2,
            "oauth",
            include_str!("../migrations/sqlite/0002_oauth.sql"),
        ),
        (3, "pki", include_str!("../migrations/sqlite/0003_pki.sql")),
    ];
    Migrator::with_migrations(
        sources
            .into_iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Version 4 rebuilds the SQLite client table. The clients, their secrets
/// and their access tokens of a version-3 database must all survive it, and
/// foreign keys must still hold afterwards.
#[tokio::test]
async fn sqlite_version_three_clients_kept() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("portcullis.sqlite");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    version_three().run(&pool).await.unwrap();
    let tenant_id = uuid::Uuid::now_v7().to_string();
    let client_id = portcullis_core::ids::ClientId::generate();
    let statements = [
        "INSERT INTO tenants (id, name, created_at) VALUES (?1, 'acme', 0)",
        "INSERT INTO oauth_clients (id, tenant_id, name, confidential, grant_types, scopes, \
         redirect_uris, auth_method, jwks, access_token_ttl_seconds, created_at) \
         VALUES (?2, ?1, 'Billing', 1, 'client_credentials', 'orders:read', '', \
         'client_secret_basic', NULL, 900, 0)",
        "INSERT INTO oauth_client_secrets (id, client_id, secret_hash, created_at) \
         VALUES (?3, ?2, randomblob(32), 0)",
        "INSERT INTO access_tokens (jti, client_id, expires_at) VALUES ('jti-1', ?2, ?4)",
    ];
    let expires_at = (now() + Duration::hours(1)).unix_timestamp() * 1000;
    for statement in statements {
        sqlx::query(AssertSqlSafe(statement))
            .bind(&tenant_id)
            .bind(client_id.to_string())
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(expires_at)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    let upgraded = chained(Store::open_sqlite(&path).await.unwrap()).await;
    let client = upgraded.find_client(client_id).await.unwrap().unwrap();
    assert_eq!(client.name, "Billing");
    assert_eq!(client.tls_client_auth_subject, None);
    let secrets = upgraded.client_secrets(client_id, now()).await.unwrap();
    assert_eq!(secrets.len(), 1);
    let token = upgraded.find_access_token("jti-1").await.unwrap().unwrap();
    assert_eq!(token.client_id, client_id);
    assert_eq!(token.certificate_thumbprint, None);

    let orphan = portcullis_core::oauth::AccessTokenRecord {
        jti: "jti-2".to_owned(),
        client_id: portcullis_core::ids::ClientId::generate(),
        family_id: None,
        expires_at: now() + Duration::hours(1),
        revoked_at: None,
        certificate_thumbprint: None,
    };
    let error = upgraded.record_access_token(&orphan).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
    upgraded.close().await;
}

#[tokio::test]
async fn postgres_version_one_database_upgraded() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let url = database.url.clone();
    let outcome = tokio::spawn(async move {
        let mut connection = PgConnection::connect(&url).await.unwrap();
        // `run_direct` keeps the future Send, as in the store itself.
        version_one(include_str!("../migrations/postgres/0001_initial.sql"))
            .run_direct(None, &mut connection, false)
            .await
            .unwrap();
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, 'acme', now())")
            .bind(uuid::Uuid::now_v7())
            .execute(&mut connection)
            .await
            .unwrap();
        sqlx::query("INSERT INTO changes (tenant_id, at) VALUES ($1, clock_timestamp())")
            .bind(uuid::Uuid::now_v7())
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();

        let upgraded = chained(Store::open_postgres(&url).await.unwrap()).await;
        check_upgraded(upgraded, async {
            chained(Store::open_postgres(&url).await.unwrap()).await
        })
        .await;
    })
    .await;
    database.drop().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
async fn unreachable_postgres_unavailable() {
    // Port 1 on the loopback address has no listener, so the connection is
    // refused at once.
    let error = Store::open_postgres("postgres://postgres@127.0.0.1:1/portcullis")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_eq!(error.code(), "unavailable");
}

#[tokio::test]
async fn sqlite_in_missing_directory_unavailable() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("missing").join("portcullis.sqlite");
    let error = Store::open_sqlite(&path).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

// ---------------------------------------------------------------------
// Send

/// Compiles only if every store future may move between threads, which
/// `tokio::spawn` and axum handlers need. Each future borrows from its
/// own `async move` block, the case in which a future that is Send for one
/// lifetime only fails to compile.
#[test]
fn store_futures_are_send() {
    fn spawnable<F: Future + Send + 'static>(_: F) {}

    fn check(store: Store, path: PathBuf, url: String, key: NewKey, audit: AuditContext) {
        spawnable(async move { Store::open_sqlite(&path).await.map(|_| ()) });
        spawnable(async move { Store::open_postgres(&url).await.map(|_| ()) });
        let s = store.clone();
        let a = audit.clone();
        spawnable(async move { s.create_tenant(&tenant_name("acme"), &a).await.map(|_| ()) });
        let s = store.clone();
        let k = key.clone();
        let a = audit.clone();
        spawnable(async move { s.insert_key(&k, &a).await.map(|_| ()) });
        let s = store.clone();
        let k = key.clone();
        let a = audit.clone();
        spawnable(async move {
            s.rotate_key(KeyId::generate(), &k, a.at, &a)
                .await
                .map(|_| ())
        });
        let s = store.clone();
        spawnable(async move {
            s.revoke_key(key.id, Some("reason"), &audit)
                .await
                .map(|_| ())
        });
        let s = store.clone();
        spawnable(async move { s.record_usage(&[]).await });
        let s = store.clone();
        spawnable(async move { s.append_audit(&[]).await });
        let s = store.clone();
        spawnable(async move { s.check_master_key(&key.hash).await });
        let s = store.clone();
        spawnable(async move { s.changes_since(0, Duration::ZERO).await.map(|_| ()) });
        spawnable(async move {
            let mut listener = store.listen().await?;
            match listener.as_mut() {
                Some(listener) => listener.recv().await,
                None => Ok(()),
            }
        });
    }
    let _ = check;
}
