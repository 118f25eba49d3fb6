//! The SQLite backend: one database file in WAL mode.
//!
//! The server and a CLI process may write the same file at once. Each
//! [`SqliteStore`] writes through a pool of one connection and reads
//! through a separate pool. Every write transaction starts with
//! `BEGIN IMMEDIATE`, which takes the write lock up front and so waits out
//! `busy_timeout` when another process holds it. A deferred transaction
//! would take a read snapshot first, and its later upgrade to a write lock
//! fails at once with `SQLITE_BUSY` if another process wrote in between.
//!
//! Times are stored as integer milliseconds since the Unix epoch, ids as
//! hyphenated UUID text.

use std::path::Path;
use std::time::Duration;

use portcullis_core::credential::{ApiKeyRecord, KeyLimits};
use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{AuditId, ClientId, KeyId, TenantId};
use portcullis_core::name::TenantName;
use portcullis_core::scope::ScopeSet;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr, Sqlite, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{AuditContext, AuditEvent, AuditFilter};
use crate::chain::AuditKeySlot;
use crate::error::{StoreError, is_foreign_key_violation, is_unique_violation};
use crate::records::{
    Change, KeyFilter, KeyUsage, NewKey, Tenant, check_narrowing, check_new_key, check_rotation,
    key_limits_from_columns, parse_environment, parse_hash, parse_kind, parse_scopes,
    parse_tenant_name, rate_limits_column, rotated_expiry,
};
use crate::{CHANGE_RETENTION, PruneSchedule, duration_millis};

/// How long a statement waits for another process's write lock before it
/// fails. Each write transaction here runs a few single-row statements, so
/// five seconds covers a long queue of them and still fails well within an
/// HTTP timeout.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a caller waits for a pooled connection. The writer pool has one
/// connection, so concurrent writes of one process queue here; this allows
/// two busy timeouts' worth of queue.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Number of read connections. WAL readers do not block each other or the
/// writer; four keeps a few admin queries from waiting on one another.
const READ_CONNECTIONS: u32 = 4;

/// The current time in milliseconds by SQLite's clock.
macro_rules! now_millis {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}

mod alerts;
mod audit;
mod members;
mod oauth;
mod pki;
mod signing;
mod submissions;
mod usage;

/// A store on one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    prune: PruneSchedule,
    audit_key: AuditKeySlot,
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path) -> Result<Self, StoreError> {
        let write_options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(write_options)
            .await?;
        migrate(&writer).await?;

        // Readers open the file only after the writer has created it and
        // switched it to WAL, which is a property of the file.
        let read_options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT);
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(read_options)
            .await?;

        tracing::info!(path = %path.display(), "opened sqlite store");
        Ok(Self {
            writer,
            reader,
            prune: PruneSchedule::default(),
            audit_key: AuditKeySlot::default(),
        })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    pub(crate) async fn check_master_key(&self, check: &SecretHash) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO master_key_check (id, check_value) VALUES (1, ?1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(check.as_bytes())
        .execute(&mut *tx)
        .await?;
        let stored: Vec<u8> = sqlx::query("SELECT check_value FROM master_key_check WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("check_value")?;
        tx.commit().await?;

        if parse_hash(&stored)?.ct_eq(check) {
            Ok(())
        } else {
            Err(StoreError::MasterKeyMismatch)
        }
    }

    pub(crate) async fn create_tenant(
        &self,
        name: &TenantName,
        audit: &AuditContext,
    ) -> Result<Tenant, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3) \
             RETURNING id, name, created_at",
        )
        .bind(TenantId::generate().to_string())
        .bind(name.as_str())
        .bind(to_millis(audit.at))
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "tenant {name} already exists"
                )));
            }
            Err(error) => return Err(error.into()),
        };
        let tenant = tenant_from_row(&row)?;

        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::tenant_created(audit, &tenant),
        )
        .await?;
        insert_change(&mut tx, None, Some(tenant.id)).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    pub(crate) async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub(crate) async fn find_tenant(
        &self,
        name: &TenantName,
    ) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = ?1")
            .bind(name.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub(crate) async fn insert_key(
        &self,
        key: &NewKey,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        check_new_key(key)?;
        let mut tx = self.begin_write().await?;
        insert_key_row(&mut tx, key).await?;
        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::key_created(audit, key),
        )
        .await?;
        insert_change(&mut tx, Some(key.id), key.tenant_id).await?;
        let record = select_key(&mut tx, key.id).await?;
        tx.commit().await?;
        record.ok_or(StoreError::NotFound("key"))
    }

    pub(crate) async fn find_key_by_hash(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(concat!(select_key!(), " WHERE k.secret_hash = ?1"))
            .bind(hash.as_bytes())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn find_key(&self, id: KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(concat!(select_key!(), " WHERE k.id = ?1"))
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn list_keys(
        &self,
        filter: KeyFilter,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let (tenant_id, kind) = match filter {
            KeyFilter::All => (None, None),
            KeyFilter::Tenant(tenant_id) => (Some(tenant_id.to_string()), None),
            KeyFilter::Operator => (None, Some("operator")),
        };
        let rows = sqlx::query(concat!(
            select_key!(),
            " WHERE (?1 IS NULL OR k.tenant_id = ?1) AND (?2 IS NULL OR k.kind = ?2)",
            " ORDER BY k.created_at DESC, k.id DESC"
        ))
        .bind(tenant_id)
        .bind(kind)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn keys_on_other_plans(
        &self,
        plans: &[String],
    ) -> Result<Vec<(String, KeyId)>, StoreError> {
        // SQLite binds no arrays, so the plan names travel as one JSON array.
        let plans = serde_json::Value::from(plans.to_vec()).to_string();
        let rows = sqlx::query(
            "SELECT plan, id FROM api_keys \
             WHERE plan IS NOT NULL AND revoked_at IS NULL \
             AND plan NOT IN (SELECT value FROM json_each(?1)) \
             ORDER BY plan, created_at, id",
        )
        .bind(plans)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("plan")?,
                    KeyId::from_uuid(uuid_column(row, "id")?),
                ))
            })
            .collect()
    }

    pub(crate) async fn revoke_key(
        &self,
        id: KeyId,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let key = select_key(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("key"))?;
        if key.revoked_at.is_some() {
            return Err(StoreError::AlreadyRevoked);
        }

        sqlx::query("UPDATE api_keys SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1")
            .bind(id.to_string())
            .bind(to_millis(audit.at))
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::key_revoked(audit, &key, reason),
        )
        .await?;
        insert_change(&mut tx, Some(id), key.tenant_id).await?;

        let revoked = select_key(&mut tx, id).await?;
        tx.commit().await?;
        revoked.ok_or(StoreError::NotFound("key"))
    }

    pub(crate) async fn update_key_limits(
        &self,
        id: KeyId,
        limits: &KeyLimits,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let key = select_key(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("key"))?;

        sqlx::query("UPDATE api_keys SET rate_limits = ?2, plan = ?3, max_uses = ?4 WHERE id = ?1")
            .bind(id.to_string())
            .bind(rate_limits_column(&limits.rate_limits))
            .bind(limits.plan.as_deref())
            .bind(limits.max_uses)
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::key_limits_changed(audit, &key, limits),
        )
        .await?;
        insert_change(&mut tx, Some(id), key.tenant_id).await?;

        let updated = select_key(&mut tx, id).await?;
        tx.commit().await?;
        updated.ok_or(StoreError::NotFound("key"))
    }

    pub(crate) async fn narrow_key_scopes(
        &self,
        id: KeyId,
        scopes: &ScopeSet,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let key = select_key(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("key"))?;
        check_narrowing(&key, scopes, audit.at)?;

        sqlx::query("UPDATE api_keys SET scopes = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(scopes.to_space_separated())
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::key_scopes_narrowed(audit, &key, scopes),
        )
        .await?;
        insert_change(&mut tx, Some(id), key.tenant_id).await?;

        let updated = select_key(&mut tx, id).await?;
        tx.commit().await?;
        updated.ok_or(StoreError::NotFound("key"))
    }

    pub(crate) async fn spend_key_use(&self, id: KeyId) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let spent: Option<i64> = sqlx::query_scalar(
            "UPDATE api_keys SET uses_spent = uses_spent + 1 \
             WHERE id = ?1 AND max_uses IS NOT NULL AND uses_spent < max_uses \
             RETURNING uses_spent",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(spent)
    }

    pub(crate) async fn refund_key_use(&self, id: KeyId) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE api_keys SET uses_spent = uses_spent - 1 WHERE id = ?1 AND uses_spent > 0",
        )
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn rotate_key(
        &self,
        old: KeyId,
        new_key: &NewKey,
        grace_ends: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<(ApiKeyRecord, ApiKeyRecord), StoreError> {
        let mut tx = self.begin_write().await?;
        let old_key = select_key(&mut tx, old)
            .await?
            .ok_or(StoreError::NotFound("key"))?;
        check_rotation(&old_key, new_key, audit.at)?;
        let old_expires_at = rotated_expiry(old_key.expires_at, grace_ends);

        insert_key_row(&mut tx, new_key).await?;
        sqlx::query("UPDATE api_keys SET rotated_to = ?2, expires_at = ?3 WHERE id = ?1")
            .bind(old.to_string())
            .bind(new_key.id.to_string())
            .bind(to_millis(old_expires_at))
            .execute(&mut *tx)
            .await?;
        let created = AuditEvent::key_created(audit, new_key);
        let rotated = AuditEvent::key_rotated(audit, &old_key, new_key, old_expires_at);
        insert_audit(&mut tx, &self.audit_key, &created).await?;
        insert_audit(&mut tx, &self.audit_key, &rotated).await?;
        insert_change(&mut tx, Some(old), old_key.tenant_id).await?;
        insert_change(&mut tx, Some(new_key.id), new_key.tenant_id).await?;

        let old_record = select_key(&mut tx, old).await?;
        let new_record = select_key(&mut tx, new_key.id).await?;
        tx.commit().await?;
        match (old_record, new_record) {
            (Some(old_record), Some(new_record)) => Ok((old_record, new_record)),
            _ => Err(StoreError::NotFound("key")),
        }
    }

    pub(crate) async fn record_usage(&self, batch: &[KeyUsage]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for chunk in batch.chunks(crate::usage::UPSERT_CHUNK_ROWS) {
            // SQLite evaluates every SET expression against the old row, so
            // both CASEs compare with the stored last_used_at. The caller
            // merged the batch, so each key joins one row of v.
            let mut builder = sqlx::QueryBuilder::<Sqlite>::new("WITH v (id, n, at, address) AS (");
            builder.push_values(chunk, |mut row, usage| {
                row.push_bind(usage.key_id.to_string())
                    .push_bind(usage.count)
                    .push_bind(to_millis(usage.last_used_at))
                    .push_bind(usage.last_used_from.clone());
            });
            builder.push(
                ") UPDATE api_keys SET use_count = use_count + v.n, \
                 last_used_from = CASE WHEN last_used_at IS NULL OR last_used_at < v.at \
                     THEN v.address ELSE last_used_from END, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < v.at \
                     THEN v.at ELSE last_used_at END \
                 FROM v WHERE api_keys.id = v.id",
            );
            builder.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for event in events {
            insert_audit(&mut tx, &self.audit_key, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, tenant_id, target, remote_addr, details \
             FROM audit_events \
             WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR action = ?2) \
             AND (?3 IS NULL OR target = ?3) \
             ORDER BY at DESC, id DESC LIMIT ?4",
        )
        .bind(filter.tenant_id.map(|id| id.to_string()))
        .bind(filter.action.map(|action| action.as_str()))
        .bind(filter.target.as_deref())
        .bind(filter.limit.max(0))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    pub(crate) async fn latest_change(&self) -> Result<i64, StoreError> {
        let latest = sqlx::query("SELECT COALESCE(MAX(id), 0) AS latest FROM changes")
            .fetch_one(&self.reader)
            .await?
            .try_get("latest")?;
        Ok(latest)
    }

    pub(crate) async fn changes_since(
        &self,
        cursor: i64,
        lookback: time::Duration,
    ) -> Result<Vec<Change>, StoreError> {
        if self.prune.is_due()
            && let Err(error) = self.prune_changes(CHANGE_RETENTION).await
        {
            tracing::warn!(error = %error, "failed to prune the change feed");
        }
        let rows = sqlx::query(concat!(
            "SELECT id, key_id, tenant_id, client_id, jti, jti_expires_at, kid, cert_serial, \
             trusted_ca_id, at FROM changes \
             WHERE id > ?1 OR at >= ",
            now_millis!(),
            " - ?2 ORDER BY id"
        ))
        .bind(cursor)
        .bind(duration_millis(lookback))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    pub(crate) async fn prune_changes(&self, age: time::Duration) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(concat!(
            "DELETE FROM changes WHERE at < ",
            now_millis!(),
            " - ?1"
        ))
        .bind(duration_millis(age))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        tracing::debug!(deleted, "pruned the change feed");
        Ok(deleted)
    }

    /// Starts a write transaction that holds the write lock from its first
    /// statement on.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// The schema migrations, in version order.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "initial".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0001_initial.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "oauth".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0002_oauth.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "pki".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0003_pki.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "mtls_clients".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0004_mtls_clients.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "key_limits".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0005_key_limits.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "key_max_uses".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0006_key_max_uses.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "audit_chain".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0007_audit_chain.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "usage_rollups".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0008_usage_rollups.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "alerts".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0009_alerts.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            "client_limits".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0011_client_limits.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            12,
            "key_created_by".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0012_key_created_by.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            13,
            "audit_head_mac".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0013_audit_head_mac.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            14,
            "trusted_ca_revocation".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0014_trusted_ca_revocation.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            15,
            "client_created_by".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0015_client_created_by.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            16,
            "members".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0016_members.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            17,
            "dashboard_submissions".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0017_dashboard_submissions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            18,
            "signing_key_revocation".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0018_signing_key_revocation.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Applies pending migrations inside one `BEGIN IMMEDIATE` transaction, so
/// that two processes opening a new file at once apply them one after the
/// other. sqlx runs each migration in a savepoint of this transaction.
async fn migrate(writer: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    // NOTE: `run_direct` is hidden from sqlx 0.9's docs. `Migrator::run`
    // takes an `Acquire<'a>` and its future is not Send for every lifetime,
    // so `Store::open_*` could not be awaited inside `tokio::spawn`.
    migrator().run_direct(None, &mut *tx, false).await?;
    tx.commit().await?;
    Ok(())
}

/// Inserts the row of a new key. A taken id or hash is a conflict, an
/// unknown tenant is not found.
async fn insert_key_row(conn: &mut SqliteConnection, key: &NewKey) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO api_keys (id, kind, tenant_id, name, environment, visible_prefix, \
         secret_hash, scopes, created_at, expires_at, rate_limits, plan, max_uses, created_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )
    .bind(key.id.to_string())
    .bind(key.kind.as_str())
    .bind(key.tenant_id.map(|id| id.to_string()))
    .bind(key.name.as_deref())
    .bind(key.environment.as_str())
    .bind(&key.visible_prefix)
    .bind(key.hash.as_bytes())
    .bind(key.scopes.to_space_separated())
    .bind(to_millis(key.created_at))
    .bind(key.expires_at.map(to_millis))
    .bind(rate_limits_column(&key.limits.rate_limits))
    .bind(key.limits.plan.as_deref())
    .bind(key.limits.max_uses)
    .bind(key.created_by.as_deref())
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict(
            "an API key with this id or secret already exists".to_owned(),
        )),
        Err(error) if is_foreign_key_violation(&error) => Err(StoreError::NotFound("tenant")),
        Err(error) => Err(error.into()),
    }
}

async fn select_key(
    conn: &mut SqliteConnection,
    id: KeyId,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let row = sqlx::query(concat!(select_key!(), " WHERE k.id = ?1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// Writes one audit record at the head of the hash chain: the only path by
/// which audit rows are written. The caller's write transaction holds
/// SQLite's write lock, so no other writer moves the head meanwhile.
async fn insert_audit(
    conn: &mut SqliteConnection,
    audit_key: &AuditKeySlot,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    let key = audit_key.get()?;
    // A tampered head fails the write, so nothing is appended to it.
    let mut state = audit::read_head_row(&mut *conn)
        .await?
        .checked_for_write(key)?;
    let (seq, prev_hash, hash) = crate::chain::link(key, state.head_seq, state.head_hash, event);
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor, action, tenant_id, target, remote_addr, \
         details, seq, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .bind(event.id.to_string())
    .bind(to_millis(event.at))
    .bind(&event.actor)
    .bind(event.action.as_str())
    .bind(event.tenant_id.map(|id| id.to_string()))
    .bind(event.target.as_deref())
    .bind(event.remote_addr.as_deref())
    .bind(event.details.to_string())
    .bind(seq)
    .bind(prev_hash.as_slice())
    .bind(hash.as_slice())
    .execute(&mut *conn)
    .await?;
    (state.head_seq, state.head_hash) = (seq, hash);
    audit::write_head(conn, key, &state).await
}

/// Appends a change-feed row stamped with the database's clock.
async fn insert_change(
    conn: &mut SqliteConnection,
    key_id: Option<KeyId>,
    tenant_id: Option<TenantId>,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO changes (key_id, tenant_id, at) VALUES (?1, ?2, ",
        now_millis!(),
        ")"
    ))
    .bind(key_id.map(|id| id.to_string()))
    .bind(tenant_id.map(|id| id.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

fn tenant_from_row(row: &SqliteRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::from_uuid(uuid_column(row, "id")?),
        name: parse_tenant_name(row.try_get("name")?)?,
        created_at: time_column(row, "created_at")?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    let id = KeyId::from_uuid(uuid_column(row, "id")?);
    let tenant: Option<&str> = row.try_get("tenant_name")?;
    Ok(ApiKeyRecord {
        id,
        kind: parse_kind(row.try_get("kind")?)?,
        tenant_id: optional_uuid_column(row, "tenant_id")?.map(TenantId::from_uuid),
        tenant: tenant.map(parse_tenant_name).transpose()?,
        name: row.try_get("name")?,
        environment: parse_environment(row.try_get("environment")?)?,
        visible_prefix: row.try_get("visible_prefix")?,
        scopes: parse_scopes(row.try_get("scopes")?, id)?,
        created_at: time_column(row, "created_at")?,
        expires_at: optional_time_column(row, "expires_at")?,
        revoked_at: optional_time_column(row, "revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
        rotated_to: optional_uuid_column(row, "rotated_to")?.map(KeyId::from_uuid),
        last_used_at: optional_time_column(row, "last_used_at")?,
        last_used_from: row.try_get("last_used_from")?,
        use_count: row.try_get("use_count")?,
        limits: key_limits_from_columns(
            row.try_get("rate_limits")?,
            row.try_get("plan")?,
            row.try_get("max_uses")?,
            row.try_get("uses_spent")?,
        ),
        created_by: row.try_get("created_by")?,
    })
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
    let action: &str = row.try_get("action")?;
    let details: &str = row.try_get("details")?;
    Ok(AuditEvent {
        id: AuditId::from_uuid(uuid_column(row, "id")?),
        at: time_column(row, "at")?,
        actor: row.try_get("actor")?,
        action: action
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("audit record: {error}")))?,
        tenant_id: optional_uuid_column(row, "tenant_id")?.map(TenantId::from_uuid),
        target: row.try_get("target")?,
        remote_addr: row.try_get("remote_addr")?,
        details: serde_json::from_str(details)
            .map_err(|error| StoreError::Corrupt(format!("audit record details: {error}")))?,
    })
}

fn change_from_row(row: &SqliteRow) -> Result<Change, StoreError> {
    Ok(Change {
        id: row.try_get("id")?,
        key_id: optional_uuid_column(row, "key_id")?.map(KeyId::from_uuid),
        tenant_id: optional_uuid_column(row, "tenant_id")?.map(TenantId::from_uuid),
        client_id: optional_uuid_column(row, "client_id")?.map(ClientId::from_uuid),
        jti: row.try_get("jti")?,
        jti_expires_at: optional_time_column(row, "jti_expires_at")?,
        kid: row.try_get("kid")?,
        cert_serial: row.try_get("cert_serial")?,
        trusted_ca_id: optional_uuid_column(row, "trusted_ca_id")?,
        at: time_column(row, "at")?,
    })
}

/// Converts a time to milliseconds since the Unix epoch, dropping any
/// finer part.
fn to_millis(at: OffsetDateTime) -> i64 {
    at.unix_timestamp() * 1000 + i64::from(at.millisecond())
}

fn time_column(row: &SqliteRow, column: &'static str) -> Result<OffsetDateTime, StoreError> {
    let millis: i64 = row.try_get(column)?;
    from_millis(column, millis)
}

fn optional_time_column(
    row: &SqliteRow,
    column: &'static str,
) -> Result<Option<OffsetDateTime>, StoreError> {
    let millis: Option<i64> = row.try_get(column)?;
    millis.map(|millis| from_millis(column, millis)).transpose()
}

fn from_millis(column: &str, millis: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).map_err(|error| {
        StoreError::Corrupt(format!(
            "column {column}: {millis} ms is not a valid time: {error}"
        ))
    })
}

fn uuid_column(row: &SqliteRow, column: &'static str) -> Result<Uuid, StoreError> {
    let text: &str = row.try_get(column)?;
    parse_uuid(column, text)
}

fn optional_uuid_column(row: &SqliteRow, column: &'static str) -> Result<Option<Uuid>, StoreError> {
    let text: Option<&str> = row.try_get(column)?;
    text.map(|text| parse_uuid(column, text)).transpose()
}

fn parse_uuid(column: &str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|error| {
        StoreError::Corrupt(format!("column {column}: {text:?} is not a UUID: {error}"))
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn millis_round_trip_drops_finer_part() {
        for at in [
            datetime!(2026-12-04 15:42:49.123_456_789 UTC),
            datetime!(1969-12-31 23:59:59.5 UTC),
            OffsetDateTime::UNIX_EPOCH,
        ] {
            let back = from_millis("at", to_millis(at)).unwrap();
            assert_eq!(back.unix_timestamp(), at.unix_timestamp());
            assert_eq!(back.millisecond(), at.millisecond());
            assert_eq!(back.nanosecond() % 1_000_000, 0);
        }
    }
}
