//! The PostgreSQL backend, for one node or many.
//!
//! Every change-feed row also sends a notification on [`CHANGE_CHANNEL`]
//! from inside its transaction. PostgreSQL delivers it at commit, so a
//! listener never hears of a change that it cannot read yet.

use std::time::Duration;

use portcullis_core::credential::{ApiKeyRecord, KeyLimits};
use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{AuditId, ClientId, KeyId, TenantId};
use portcullis_core::name::TenantName;
use portcullis_core::scope::ScopeSet;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Row, SqlSafeStr};
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
use crate::{CHANGE_CHANNEL, CHANGE_RETENTION, PruneSchedule, duration_millis};

/// Number of pooled connections per store. Requests do not wait on the
/// database when their credential is cached, so ten covers admin traffic,
/// batch writers and one listener while leaving room on a server whose
/// default `max_connections` is 100 for several nodes.
const MAX_CONNECTIONS: u32 = 10;

/// How long a caller waits to connect or for a pooled connection before the
/// store counts as unavailable, short enough for a readiness probe.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

mod alerts;
mod audit;
mod members;
mod oauth;
mod pki;
mod signing;
mod submissions;
mod usage;

/// A store on one PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    prune: PruneSchedule,
    audit_key: AuditKeySlot,
}

/// A subscription to change notifications on PostgreSQL.
///
/// A notification carries no data to trust: on each wake-up, read
/// [`crate::Store::changes_since`].
///
/// The listener keeps one pooled connection checked out, and
/// [`crate::Store::close`] waits for it to come back. So drop the listener
/// first unless a `recv` call is pending, which sqlx cancels when the pool
/// closes.
#[derive(Debug)]
pub struct ChangeListener {
    listener: PgListener,
}

impl ChangeListener {
    /// Waits for the next change notification.
    ///
    /// Also returns when the connection was lost, because notifications
    /// sent meanwhile are gone and the caller should read the change feed
    /// to catch up. The next call reconnects; it fails with
    /// [`StoreError::Unavailable`] while the database cannot be reached.
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        match self.listener.try_recv().await? {
            Some(_notification) => Ok(()),
            None => {
                tracing::warn!("change listener lost its connection and will reconnect");
                Ok(())
            }
        }
    }
}

impl PostgresStore {
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        // sqlx holds a PostgreSQL advisory lock while it migrates, so nodes
        // that start together apply each migration once. `run_direct`
        // instead of `run` keeps this future Send, as in the SQLite backend.
        let mut connection = pool.acquire().await?;
        migrator().run_direct(None, &mut *connection, false).await?;
        drop(connection);
        tracing::info!("opened postgres store");
        Ok(Self {
            pool,
            prune: PruneSchedule::default(),
            audit_key: AuditKeySlot::default(),
        })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn listen(&self) -> Result<ChangeListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANGE_CHANNEL).await?;
        Ok(ChangeListener { listener })
    }

    pub(crate) async fn check_master_key(&self, check: &SecretHash) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO master_key_check (id, check_value) VALUES (1, $1) \
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
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, name, created_at",
        )
        .bind(TenantId::generate().as_uuid())
        .bind(name.as_str())
        .bind(audit.at)
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
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    pub(crate) async fn find_tenant(
        &self,
        name: &TenantName,
    ) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub(crate) async fn insert_key(
        &self,
        key: &NewKey,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        check_new_key(key)?;
        let mut tx = self.pool.begin().await?;
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
        let row = sqlx::query(concat!(select_key!(), " WHERE k.secret_hash = $1"))
            .bind(hash.as_bytes())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn find_key(&self, id: KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(concat!(select_key!(), " WHERE k.id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    pub(crate) async fn list_keys(
        &self,
        filter: KeyFilter,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let (tenant_id, kind) = match filter {
            KeyFilter::All => (None, None),
            KeyFilter::Tenant(tenant_id) => (Some(tenant_id.as_uuid()), None),
            KeyFilter::Operator => (None, Some("operator")),
        };
        let rows = sqlx::query(concat!(
            select_key!(),
            " WHERE ($1::uuid IS NULL OR k.tenant_id = $1) AND ($2::text IS NULL OR k.kind = $2)",
            " ORDER BY k.created_at DESC, k.id DESC"
        ))
        .bind(tenant_id)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn keys_on_other_plans(
        &self,
        plans: &[String],
    ) -> Result<Vec<(String, KeyId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT plan, id FROM api_keys \
             WHERE plan IS NOT NULL AND revoked_at IS NULL AND NOT (plan = ANY($1)) \
             ORDER BY plan, created_at, id",
        )
        .bind(plans)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("plan")?, KeyId::from_uuid(row.try_get("id")?))))
            .collect()
    }

    pub(crate) async fn revoke_key(
        &self,
        id: KeyId,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let key = lock_key(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("key"))?;
        if key.revoked_at.is_some() {
            return Err(StoreError::AlreadyRevoked);
        }

        sqlx::query("UPDATE api_keys SET revoked_at = $2, revoked_reason = $3 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(audit.at)
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
        let mut tx = self.pool.begin().await?;
        let key = lock_key(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("key"))?;

        sqlx::query("UPDATE api_keys SET rate_limits = $2, plan = $3, max_uses = $4 WHERE id = $1")
            .bind(id.as_uuid())
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
        let mut tx = self.pool.begin().await?;
        let key = lock_key(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("key"))?;
        check_narrowing(&key, scopes, audit.at)?;

        sqlx::query("UPDATE api_keys SET scopes = $2 WHERE id = $1")
            .bind(id.as_uuid())
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
        // One statement: PostgreSQL locks the row, so concurrent spends on
        // any node serialize and never pass max_uses.
        let spent: Option<i64> = sqlx::query_scalar(
            "UPDATE api_keys SET uses_spent = uses_spent + 1 \
             WHERE id = $1 AND max_uses IS NOT NULL AND uses_spent < max_uses \
             RETURNING uses_spent",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        Ok(spent)
    }

    pub(crate) async fn refund_key_use(&self, id: KeyId) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET uses_spent = uses_spent - 1 WHERE id = $1 AND uses_spent > 0",
        )
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn rotate_key(
        &self,
        old: KeyId,
        new_key: &NewKey,
        grace_ends: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<(ApiKeyRecord, ApiKeyRecord), StoreError> {
        let mut tx = self.pool.begin().await?;
        let old_key = lock_key(&mut tx, old)
            .await?
            .ok_or(StoreError::NotFound("key"))?;
        check_rotation(&old_key, new_key, audit.at)?;
        let old_expires_at = rotated_expiry(old_key.expires_at, grace_ends);

        insert_key_row(&mut tx, new_key).await?;
        sqlx::query("UPDATE api_keys SET rotated_to = $2, expires_at = $3 WHERE id = $1")
            .bind(old.as_uuid())
            .bind(new_key.id.as_uuid())
            .bind(old_expires_at)
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
        let mut tx = self.pool.begin().await?;
        for chunk in batch.chunks(crate::usage::UPSERT_CHUNK_ROWS) {
            // PostgreSQL evaluates every SET expression against the old row,
            // so both CASEs compare with the stored last_used_at. The caller
            // merged the batch, so each key joins one row of v.
            let mut builder = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "UPDATE api_keys AS k SET use_count = k.use_count + v.n, \
                 last_used_from = CASE WHEN k.last_used_at IS NULL OR k.last_used_at < v.at \
                     THEN v.address ELSE k.last_used_from END, \
                 last_used_at = CASE WHEN k.last_used_at IS NULL OR k.last_used_at < v.at \
                     THEN v.at ELSE k.last_used_at END \
                 FROM (",
            );
            builder.push_values(chunk, |mut row, usage| {
                row.push_bind(usage.key_id.as_uuid())
                    .push_bind(usage.count)
                    .push_bind(usage.last_used_at)
                    .push_bind(usage.last_used_from.clone());
            });
            builder.push(") AS v (id, n, at, address) WHERE k.id = v.id");
            builder.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
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
            "SELECT id, at, actor, action, tenant_id, target, remote_addr, \
             details::text AS details \
             FROM audit_events \
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR action = $2) \
             AND ($3::text IS NULL OR target = $3) \
             ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(filter.tenant_id.map(|id| id.as_uuid()))
        .bind(filter.action.map(|action| action.as_str()))
        .bind(filter.target.as_deref())
        .bind(filter.limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    pub(crate) async fn latest_change(&self) -> Result<i64, StoreError> {
        let latest = sqlx::query("SELECT COALESCE(MAX(id), 0) AS latest FROM changes")
            .fetch_one(&self.pool)
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
        let rows = sqlx::query(
            "SELECT id, key_id, tenant_id, client_id, jti, jti_expires_at, kid, cert_serial, \
             trusted_ca_id, at FROM changes \
             WHERE id > $1 OR at >= clock_timestamp() - $2 * interval '1 millisecond' \
             ORDER BY id",
        )
        .bind(cursor)
        .bind(duration_millis(lookback))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    pub(crate) async fn prune_changes(&self, age: time::Duration) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM changes WHERE at < clock_timestamp() - $1 * interval '1 millisecond'",
        )
        .bind(duration_millis(age))
        .execute(&self.pool)
        .await?
        .rows_affected();
        tracing::debug!(deleted, "pruned the change feed");
        Ok(deleted)
    }
}

/// The schema migrations, in version order.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "initial".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0001_initial.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "oauth".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0002_oauth.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "pki".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0003_pki.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "mtls_clients".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0004_mtls_clients.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            "key_limits".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0005_key_limits.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            "key_max_uses".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0006_key_max_uses.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            "audit_chain".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0007_audit_chain.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            "usage_rollups".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0008_usage_rollups.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            "alerts".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0009_alerts.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            "client_limits".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0011_client_limits.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            12,
            "key_created_by".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0012_key_created_by.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            13,
            "audit_head_mac".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0013_audit_head_mac.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            14,
            "trusted_ca_revocation".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0014_trusted_ca_revocation.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            15,
            "client_created_by".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0015_client_created_by.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            16,
            "members".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0016_members.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            17,
            "dashboard_submissions".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0017_dashboard_submissions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            18,
            "signing_key_revocation".into(),
            MigrationType::Simple,
            include_str!("../migrations/postgres/0018_signing_key_revocation.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Inserts the row of a new key. A taken id or hash is a conflict, an
/// unknown tenant is not found.
async fn insert_key_row(conn: &mut PgConnection, key: &NewKey) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO api_keys (id, kind, tenant_id, name, environment, visible_prefix, \
         secret_hash, scopes, created_at, expires_at, rate_limits, plan, max_uses, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(key.id.as_uuid())
    .bind(key.kind.as_str())
    .bind(key.tenant_id.map(|id| id.as_uuid()))
    .bind(key.name.as_deref())
    .bind(key.environment.as_str())
    .bind(&key.visible_prefix)
    .bind(key.hash.as_bytes())
    .bind(key.scopes.to_space_separated())
    .bind(key.created_at)
    .bind(key.expires_at)
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
    conn: &mut PgConnection,
    id: KeyId,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let row = sqlx::query(concat!(select_key!(), " WHERE k.id = $1"))
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// Reads a key and locks its row until the transaction ends, so that two
/// concurrent revocations or rotations of one key run one after the other.
async fn lock_key(conn: &mut PgConnection, id: KeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
    let row = sqlx::query(concat!(select_key!(), " WHERE k.id = $1 FOR UPDATE OF k"))
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// Writes one audit record at the head of the hash chain: the only path by
/// which audit rows are written. The head row stays locked until the
/// caller's transaction ends, so the chain stays linear across nodes.
async fn insert_audit(
    conn: &mut PgConnection,
    audit_key: &AuditKeySlot,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    let key = audit_key.get()?;
    // A tampered head fails the write, so nothing is appended to it.
    let mut state = audit::read_head_row(&mut *conn, true)
        .await?
        .checked_for_write(key)?;
    let (seq, prev_hash, hash) = crate::chain::link(key, state.head_seq, state.head_hash, event);
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor, action, tenant_id, target, remote_addr, \
         details, seq, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11)",
    )
    .bind(event.id.as_uuid())
    // The hash covers whole milliseconds, the precision of the SQLite
    // backend, so finer digits are not stored either.
    .bind(crate::chain::truncate_to_millis(event.at))
    .bind(&event.actor)
    .bind(event.action.as_str())
    .bind(event.tenant_id.map(|id| id.as_uuid()))
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

/// Appends a change-feed row and queues its notification, which
/// PostgreSQL sends when the transaction commits.
async fn insert_change(
    conn: &mut PgConnection,
    key_id: Option<KeyId>,
    tenant_id: Option<TenantId>,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH change AS ( \
             INSERT INTO changes (key_id, tenant_id, at) VALUES ($1, $2, clock_timestamp()) \
             RETURNING id \
         ) \
         SELECT pg_notify($3, id::text) FROM change",
    )
    .bind(key_id.map(|id| id.as_uuid()))
    .bind(tenant_id.map(|id| id.as_uuid()))
    .bind(CHANGE_CHANNEL)
    .execute(conn)
    .await?;
    Ok(())
}

fn tenant_from_row(row: &PgRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: TenantId::from_uuid(row.try_get("id")?),
        name: parse_tenant_name(row.try_get("name")?)?,
        created_at: row.try_get("created_at")?,
    })
}

fn key_from_row(row: &PgRow) -> Result<ApiKeyRecord, StoreError> {
    let id = KeyId::from_uuid(row.try_get("id")?);
    let tenant_id: Option<Uuid> = row.try_get("tenant_id")?;
    let tenant: Option<&str> = row.try_get("tenant_name")?;
    let rotated_to: Option<Uuid> = row.try_get("rotated_to")?;
    Ok(ApiKeyRecord {
        id,
        kind: parse_kind(row.try_get("kind")?)?,
        tenant_id: tenant_id.map(TenantId::from_uuid),
        tenant: tenant.map(parse_tenant_name).transpose()?,
        name: row.try_get("name")?,
        environment: parse_environment(row.try_get("environment")?)?,
        visible_prefix: row.try_get("visible_prefix")?,
        scopes: parse_scopes(row.try_get("scopes")?, id)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
        rotated_to: rotated_to.map(KeyId::from_uuid),
        last_used_at: row.try_get("last_used_at")?,
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

fn audit_from_row(row: &PgRow) -> Result<AuditEvent, StoreError> {
    let action: &str = row.try_get("action")?;
    let details: &str = row.try_get("details")?;
    let tenant_id: Option<Uuid> = row.try_get("tenant_id")?;
    Ok(AuditEvent {
        id: AuditId::from_uuid(row.try_get("id")?),
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: action
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("audit record: {error}")))?,
        tenant_id: tenant_id.map(TenantId::from_uuid),
        target: row.try_get("target")?,
        remote_addr: row.try_get("remote_addr")?,
        details: serde_json::from_str(details)
            .map_err(|error| StoreError::Corrupt(format!("audit record details: {error}")))?,
    })
}

fn change_from_row(row: &PgRow) -> Result<Change, StoreError> {
    let key_id: Option<Uuid> = row.try_get("key_id")?;
    let tenant_id: Option<Uuid> = row.try_get("tenant_id")?;
    let client_id: Option<Uuid> = row.try_get("client_id")?;
    Ok(Change {
        id: row.try_get("id")?,
        key_id: key_id.map(KeyId::from_uuid),
        tenant_id: tenant_id.map(TenantId::from_uuid),
        client_id: client_id.map(ClientId::from_uuid),
        jti: row.try_get("jti")?,
        jti_expires_at: row.try_get("jti_expires_at")?,
        kid: row.try_get("kid")?,
        cert_serial: row.try_get("cert_serial")?,
        trusted_ca_id: row.try_get("trusted_ca_id")?,
        at: row.try_get("at")?,
    })
}
