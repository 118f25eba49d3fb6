//! The audit hash chain on PostgreSQL: the head row and its MAC, pages for
//! verification and export, pruning, and the one-time seal.

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use time::OffsetDateTime;

use super::{PostgresStore, audit_from_row, insert_audit};
use crate::audit::{AUTH_SUCCEEDED_SPAN, AuditContext, AuditEvent, AuditQuery};
use crate::chain::{
    ChainHash, ChainState, ChainedAuditEvent, NewestRecord, PruneOutcome, SealOutcome, link,
    missing_records, parse_hash, stored_record_hash,
};
use crate::chain_head::{EMPTY_STATE, HeadRead, StoredHead, head_mac};
use crate::error::StoreError;

/// The head row and whether any audit record exists.
macro_rules! select_head {
    () => {
        "SELECT head_seq, head_hash, checkpoint_seq, checkpoint_hash, mac, \
         EXISTS (SELECT 1 FROM audit_events) AS has_records FROM audit_chain WHERE id = 1"
    };
}

/// The columns of a [`ChainedAuditEvent`].
macro_rules! select_chained {
    () => {
        "SELECT seq, prev_hash, hash, id, at, actor, action, tenant_id, target, remote_addr, \
         details::text AS details FROM audit_events"
    };
}

impl PostgresStore {
    pub(crate) fn audit_key(&self) -> Result<&portcullis_core::crypto::AuditChainKey, StoreError> {
        self.audit_key.get()
    }

    pub(crate) fn set_audit_key(&mut self, key: portcullis_core::crypto::AuditChainKey) {
        self.audit_key = crate::chain::AuditKeySlot::new(key);
    }

    /// Reads the head row and whether any audit record exists, for checks
    /// that only read.
    pub(crate) async fn audit_head_row(&self) -> Result<HeadRead, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_head_row(&mut conn, false).await
    }

    pub(crate) async fn audit_chain_page(
        &self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<ChainedAuditEvent>, StoreError> {
        let rows = sqlx::query(concat!(
            select_chained!(),
            " WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chained_from_row).collect()
    }

    pub(crate) async fn find_audit_seq_by_hash(
        &self,
        hash: &ChainHash,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT seq FROM audit_events WHERE hash = $1 LIMIT 1")
            .bind(hash.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("seq")).transpose()?)
    }

    pub(crate) async fn first_unchained_audit(&self) -> Result<Option<AuditEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT id, at, actor, action, tenant_id, target, remote_addr, details::text AS details \
             FROM audit_events WHERE seq IS NULL ORDER BY at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(audit_from_row).transpose()
    }

    /// Returns the oldest record that has a sequence number but a missing
    /// or malformed hash or previous hash. It reads the whole table.
    pub(crate) async fn first_malformed_audit(
        &self,
    ) -> Result<Option<(i64, AuditEvent)>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, id, at, actor, action, tenant_id, target, remote_addr, details::text AS details \
             FROM audit_events WHERE seq IS NOT NULL AND (hash IS NULL OR prev_hash IS NULL \
             OR octet_length(hash) <> 32 \
             OR octet_length(prev_hash) <> 32) ORDER BY at, seq LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| Ok((row.try_get("seq")?, audit_from_row(row)?)))
            .transpose()
    }

    /// Returns the record with the highest sequence number, reading its
    /// hashes without failing on a malformed one.
    pub(crate) async fn newest_audit(&self) -> Result<Option<NewestRecord>, StoreError> {
        let row = sqlx::query(concat!(
            select_chained!(),
            " WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let prev_hash: Option<Vec<u8>> = row.try_get("prev_hash")?;
        let hash: Option<Vec<u8>> = row.try_get("hash")?;
        Ok(Some(NewestRecord::new(
            row.try_get("seq")?,
            audit_from_row(&row)?.id,
            prev_hash.as_deref(),
            hash.as_deref(),
        )))
    }

    pub(crate) async fn query_audit(
        &self,
        query: &AuditQuery,
    ) -> Result<Vec<ChainedAuditEvent>, StoreError> {
        // An `auth.succeeded` record matches a time range when the span of
        // its successes, `first_at` to `last_at`, overlaps it. The bound
        // `$9` keeps a use of the `at` index. CASE reads the details only
        // of those records, whose times the server wrote in RFC 3339.
        let rows = sqlx::query(concat!(
            select_chained!(),
            " WHERE seq > $1 AND ($2::uuid IS NULL OR tenant_id = $2) \
             AND ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR action = $4) \
             AND ($5::text IS NULL OR target = $5) \
             AND ($6::timestamptz IS NULL OR (at >= $9 AND (at >= $6 OR CASE \
                 WHEN action = 'auth.succeeded' \
                 THEN (details->>'last_at')::timestamptz >= $6 END))) \
             AND ($7::timestamptz IS NULL OR (at < $7 AND CASE \
                 WHEN action = 'auth.succeeded' \
                 THEN COALESCE((details->>'first_at')::timestamptz, at) < $7 \
                 ELSE true END)) \
             ORDER BY seq LIMIT $8"
        ))
        .bind(query.after_seq)
        .bind(query.tenant_id.map(|id| id.as_uuid()))
        .bind(query.actor.as_deref())
        .bind(query.action.map(|action| action.as_str()))
        .bind(query.target.as_deref())
        .bind(query.since)
        .bind(query.until)
        .bind(query.limit.max(0))
        .bind(query.since.map(|since| since - AUTH_SUCCEEDED_SPAN))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chained_from_row).collect()
    }

    pub(crate) async fn prune_audit(
        &self,
        before: OffsetDateTime,
        context: &AuditContext,
    ) -> Result<Option<PruneOutcome>, StoreError> {
        let key = self.audit_key.get()?;
        let mut tx = self.pool.begin().await?;
        let mut state = read_head_row(&mut tx, true).await?.checked_for_write(key)?;
        let checkpoint_seq = state.checkpoint_seq;
        // Prune up to the first record that is still within retention, so
        // that what remains is one unbroken run of the chain.
        let through: Option<i64> = sqlx::query(
            "SELECT COALESCE((SELECT MIN(seq) FROM audit_events WHERE seq > $1 AND at >= $2) - 1, \
             (SELECT MAX(seq) FROM audit_events)) AS through",
        )
        .bind(checkpoint_seq)
        .bind(before)
        .fetch_one(&mut *tx)
        .await?
        .try_get("through")?;
        let Some(through) = through.filter(|through| *through > checkpoint_seq) else {
            return Ok(None);
        };

        let through_row = sqlx::query("SELECT hash FROM audit_events WHERE seq = $1")
            .bind(through)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(through_row) = through_row else {
            // Records were deleted past the store. Name the first gap after
            // the checkpoint and the stored record that follows it.
            let gap = sqlx::query(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM audit_events WHERE seq = $1 + 1) \
                 THEN (SELECT MIN(a.seq) + 1 FROM audit_events a WHERE a.seq > $1 \
                 AND a.seq < $2 AND NOT EXISTS \
                 (SELECT 1 FROM audit_events b WHERE b.seq = a.seq + 1)) \
                 ELSE $1 + 1 END AS first_missing",
            )
            .bind(checkpoint_seq)
            .bind(through)
            .fetch_one(&mut *tx)
            .await?;
            let first_missing: i64 = gap
                .try_get::<Option<i64>, _>("first_missing")?
                .unwrap_or(through);
            let next: Option<i64> =
                sqlx::query("SELECT MIN(seq) AS next FROM audit_events WHERE seq > $1")
                    .bind(first_missing)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("next")?;
            return Err(missing_records(first_missing, next.unwrap_or(through + 1)));
        };
        let through_hash: Option<Vec<u8>> = through_row.try_get("hash")?;
        let through_hash = stored_record_hash(through, through_hash.as_deref())?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        state.checkpoint_seq = through;
        state.checkpoint_hash = through_hash;
        write_head(&mut tx, key, &state).await?;
        let event = AuditEvent::audit_pruned(context, through, &through_hash, deleted, before);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        tx.commit().await?;
        Ok(Some(PruneOutcome {
            through_seq: through,
            deleted,
        }))
    }
}

impl PostgresStore {
    /// Chains the records from before the hash chain when the chain is
    /// empty, writes the head `rebuilt` from the verified records with its
    /// tag and appends the seal record, all in one transaction. `expected`
    /// is the head row that the caller read before verifying: a row changed
    /// since then fails with a conflict.
    pub(crate) async fn seal_audit_head(
        &self,
        expected: &HeadRead,
        rebuilt: &ChainState,
        seal: impl FnOnce(&ChainState, u64) -> AuditEvent,
    ) -> Result<SealOutcome, StoreError> {
        let key = self.audit_key.get()?;
        let mut tx = self.pool.begin().await?;
        let read = read_head_row(&mut tx, true).await?;
        if read.stored != expected.stored {
            return Err(StoreError::Conflict(
                "the audit chain head changed while sealing; run the command again".to_owned(),
            ));
        }
        // Only a row deleted by someone else is missing: put back the row of
        // an empty chain, which the seal then tags.
        if read.stored.is_none() {
            sqlx::query(
                "INSERT INTO audit_chain (id, head_seq, head_hash, checkpoint_seq, \
                 checkpoint_hash) VALUES (1, 0, $1, 0, $1)",
            )
            .bind(crate::chain::GENESIS_HASH.as_slice())
            .execute(&mut *tx)
            .await?;
        }

        let previous = read.state_or_empty();
        let mut state = *rebuilt;
        let mut legacy = 0_u64;
        if previous == EMPTY_STATE && state == EMPTY_STATE {
            let rows = sqlx::query(
                "SELECT id, at, actor, action, tenant_id, target, remote_addr, \
                 details::text AS details FROM audit_events WHERE seq IS NULL ORDER BY at, id",
            )
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let event = audit_from_row(row)?;
                let (seq, prev_hash, hash) = link(key, state.head_seq, state.head_hash, &event);
                sqlx::query(
                    "UPDATE audit_events SET seq = $1, prev_hash = $2, hash = $3 WHERE id = $4",
                )
                .bind(seq)
                .bind(prev_hash.as_slice())
                .bind(hash.as_slice())
                .bind(event.id.as_uuid())
                .execute(&mut *tx)
                .await?;
                (state.head_seq, state.head_hash) = (seq, hash);
                legacy += 1;
            }
        }

        write_head(&mut tx, key, &state).await?;
        insert_audit(&mut tx, &self.audit_key, &seal(&previous, legacy)).await?;
        let head = read_head_row(&mut tx, true).await?.checked_for_write(key)?;
        tx.commit().await?;
        Ok(SealOutcome {
            legacy_records: legacy,
            head_seq: head.head_seq,
            head_hash: head.head_hash,
        })
    }
}

/// Reads the chain head and whether any audit record exists, in one
/// statement so that both come from one snapshot. With `lock`, the row
/// stays locked until the transaction ends, so that writers on every node
/// append one after the other.
pub(super) async fn read_head_row(
    conn: &mut PgConnection,
    lock: bool,
) -> Result<HeadRead, StoreError> {
    let statement = if lock {
        concat!(select_head!(), " FOR UPDATE")
    } else {
        select_head!()
    };
    let row = sqlx::query(statement).fetch_optional(conn).await?;
    // Without the row the chain is broken whatever the records are.
    let Some(row) = row else {
        return Ok(HeadRead {
            stored: None,
            has_records: true,
        });
    };
    Ok(HeadRead {
        stored: Some(StoredHead {
            state: ChainState {
                head_seq: row.try_get("head_seq")?,
                head_hash: hash_column(&row, "head_hash")?,
                checkpoint_seq: row.try_get("checkpoint_seq")?,
                checkpoint_hash: hash_column(&row, "checkpoint_hash")?,
            },
            mac: row.try_get("mac")?,
        }),
        has_records: row.try_get("has_records")?,
    })
}

/// Writes the head and checkpoint with their tag. The caller's transaction
/// locked the row and checked it.
pub(super) async fn write_head(
    conn: &mut PgConnection,
    key: &portcullis_core::crypto::AuditChainKey,
    state: &ChainState,
) -> Result<(), StoreError> {
    let mac = head_mac(key, state);
    sqlx::query(
        "UPDATE audit_chain SET head_seq = $1, head_hash = $2, checkpoint_seq = $3, \
         checkpoint_hash = $4, mac = $5 WHERE id = 1",
    )
    .bind(state.head_seq)
    .bind(state.head_hash.as_slice())
    .bind(state.checkpoint_seq)
    .bind(state.checkpoint_hash.as_slice())
    .bind(mac.as_slice())
    .execute(conn)
    .await?;
    Ok(())
}

fn hash_column(row: &PgRow, column: &'static str) -> Result<ChainHash, StoreError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    parse_hash(&bytes)
}

fn chained_from_row(row: &PgRow) -> Result<ChainedAuditEvent, StoreError> {
    Ok(ChainedAuditEvent {
        seq: row.try_get("seq")?,
        prev_hash: hash_column(row, "prev_hash")?,
        hash: hash_column(row, "hash")?,
        event: audit_from_row(row)?,
    })
}
