//! The audit hash chain on SQLite: the head row, chaining of records from
//! before the chain existed, pages for verification and export, and
//! pruning.

use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use time::OffsetDateTime;

use super::{SqliteStore, audit_from_row, insert_audit, to_millis};
use crate::audit::{AuditContext, AuditEvent, AuditQuery};
use crate::chain::{ChainHash, ChainState, ChainedAuditEvent, PruneOutcome, link, parse_hash};
use crate::error::StoreError;

/// The columns of a [`ChainedAuditEvent`].
macro_rules! select_chained {
    () => {
        "SELECT seq, prev_hash, hash, id, at, actor, action, tenant_id, target, remote_addr, \
         details FROM audit_events"
    };
}

impl SqliteStore {
    pub(crate) fn audit_key(&self) -> Result<&portcullis_core::crypto::AuditChainKey, StoreError> {
        self.audit_key.get()
    }

    pub(crate) fn set_audit_key(&mut self, key: portcullis_core::crypto::AuditChainKey) {
        self.audit_key = crate::chain::AuditKeySlot::new(key);
    }

    /// Chains the records written before the chain existed, once, in time
    /// order, and returns how many.
    pub(crate) async fn chain_legacy_audit(&self) -> Result<u64, StoreError> {
        let key = self.audit_key.get()?;
        let mut tx = self.begin_write().await?;
        let done: i64 = sqlx::query("SELECT legacy_chained FROM audit_chain WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("legacy_chained")?;
        if done != 0 {
            return Ok(0);
        }
        let rows = sqlx::query(
            "SELECT id, at, actor, action, tenant_id, target, remote_addr, details \
             FROM audit_events WHERE seq IS NULL ORDER BY at, id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let (mut head_seq, mut head_hash) = read_head(&mut tx).await?;
        for row in &rows {
            let event = audit_from_row(row)?;
            let (seq, prev_hash, hash) = link(key, head_seq, head_hash, &event);
            sqlx::query(
                "UPDATE audit_events SET seq = ?1, prev_hash = ?2, hash = ?3 WHERE id = ?4",
            )
            .bind(seq)
            .bind(prev_hash.as_slice())
            .bind(hash.as_slice())
            .bind(event.id.to_string())
            .execute(&mut *tx)
            .await?;
            (head_seq, head_hash) = (seq, hash);
        }
        write_head(&mut tx, head_seq, &head_hash).await?;
        sqlx::query("UPDATE audit_chain SET legacy_chained = 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }

    pub(crate) async fn audit_chain_state(&self) -> Result<ChainState, StoreError> {
        let row = sqlx::query(
            "SELECT head_seq, head_hash, checkpoint_seq, checkpoint_hash FROM audit_chain \
             WHERE id = 1",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(ChainState {
            head_seq: row.try_get("head_seq")?,
            head_hash: hash_column(&row, "head_hash")?,
            checkpoint_seq: row.try_get("checkpoint_seq")?,
            checkpoint_hash: hash_column(&row, "checkpoint_hash")?,
        })
    }

    pub(crate) async fn audit_chain_page(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ChainedAuditEvent>, StoreError> {
        let rows = sqlx::query(concat!(
            select_chained!(),
            " WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(chained_from_row).collect()
    }

    pub(crate) async fn find_audit_seq_by_hash(
        &self,
        hash: &ChainHash,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT seq FROM audit_events WHERE hash = ?1 LIMIT 1")
            .bind(hash.as_slice())
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|row| row.try_get("seq")).transpose()?)
    }

    pub(crate) async fn first_unchained_audit(&self) -> Result<Option<AuditEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT id, at, actor, action, tenant_id, target, remote_addr, details \
             FROM audit_events WHERE seq IS NULL ORDER BY at LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(audit_from_row).transpose()
    }

    pub(crate) async fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> Result<Vec<ChainedAuditEvent>, StoreError> {
        let rows = sqlx::query(concat!(
            select_chained!(),
            " WHERE seq > ?1 AND (?2 IS NULL OR tenant_id = ?2) AND (?3 IS NULL OR actor = ?3) \
             AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR target = ?5) \
             AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) \
             ORDER BY seq LIMIT ?8"
        ))
        .bind(query.after_seq)
        .bind(query.tenant_id.map(|id| id.to_string()))
        .bind(query.actor.as_deref())
        .bind(query.action.map(|action| action.as_str()))
        .bind(query.target.as_deref())
        .bind(query.since.map(to_millis))
        .bind(query.until.map(to_millis))
        .bind(query.limit.max(0))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(chained_from_row).collect()
    }

    pub(crate) async fn prune_audit(
        &self,
        before: OffsetDateTime,
        context: &AuditContext,
    ) -> Result<Option<PruneOutcome>, StoreError> {
        let mut tx = self.begin_write().await?;
        let checkpoint_seq: i64 =
            sqlx::query("SELECT checkpoint_seq FROM audit_chain WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?
                .try_get("checkpoint_seq")?;
        // Prune up to the first record that is still within retention, so
        // that what remains is one unbroken run of the chain.
        let through: Option<i64> = sqlx::query(
            "SELECT COALESCE((SELECT MIN(seq) FROM audit_events WHERE seq > ?1 AND at >= ?2) - 1, \
             (SELECT MAX(seq) FROM audit_events)) AS through",
        )
        .bind(checkpoint_seq)
        .bind(to_millis(before))
        .fetch_one(&mut *tx)
        .await?
        .try_get("through")?;
        let Some(through) = through.filter(|through| *through > checkpoint_seq) else {
            return Ok(None);
        };

        let through_hash: Vec<u8> = sqlx::query("SELECT hash FROM audit_events WHERE seq = ?1")
            .bind(through)
            .fetch_one(&mut *tx)
            .await?
            .try_get("hash")?;
        let through_hash = parse_hash(&through_hash)?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= ?1")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE audit_chain SET checkpoint_seq = ?1, checkpoint_hash = ?2 WHERE id = 1",
        )
        .bind(through)
        .bind(through_hash.as_slice())
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::audit_pruned(context, through, &through_hash, deleted, before);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        tx.commit().await?;
        Ok(Some(PruneOutcome {
            through_seq: through,
            deleted,
        }))
    }
}

/// Reads the chain head. The caller's transaction holds the write lock.
pub(super) async fn read_head(conn: &mut SqliteConnection) -> Result<(i64, ChainHash), StoreError> {
    let row = sqlx::query("SELECT head_seq, head_hash FROM audit_chain WHERE id = 1")
        .fetch_one(conn)
        .await?;
    Ok((row.try_get("head_seq")?, hash_column(&row, "head_hash")?))
}

pub(super) async fn write_head(
    conn: &mut SqliteConnection,
    seq: i64,
    hash: &ChainHash,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE audit_chain SET head_seq = ?1, head_hash = ?2 WHERE id = 1")
        .bind(seq)
        .bind(hash.as_slice())
        .execute(conn)
        .await?;
    Ok(())
}

fn hash_column(row: &SqliteRow, column: &'static str) -> Result<ChainHash, StoreError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    parse_hash(&bytes)
}

fn chained_from_row(row: &SqliteRow) -> Result<ChainedAuditEvent, StoreError> {
    Ok(ChainedAuditEvent {
        seq: row.try_get("seq")?,
        prev_hash: hash_column(row, "prev_hash")?,
        hash: hash_column(row, "hash")?,
        event: audit_from_row(row)?,
    })
}
