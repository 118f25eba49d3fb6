//! The dashboard's one-time form submissions on SQLite. Each claim runs in
//! a `BEGIN IMMEDIATE` transaction, which holds the database's write lock,
//! so two POSTs of one token cannot both find it unused.

use portcullis_core::crypto::SecretHash;
use sqlx::Row;

use super::{SqliteStore, to_millis};
use crate::error::{StoreError, is_foreign_key_violation};
use crate::submissions::{NewSubmission, SubmissionClaim};

impl SqliteStore {
    pub(crate) async fn claim_submission(
        &self,
        submission: &NewSubmission<'_>,
        max_per_session: u32,
    ) -> Result<SubmissionClaim, StoreError> {
        let session = submission.session_hash.as_bytes();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM dashboard_submissions WHERE session_hash = ?1 AND expires_at <= ?2",
        )
        .bind(session)
        .bind(to_millis(submission.created_at))
        .execute(&mut *tx)
        .await?;

        let used = sqlx::query(
            "SELECT kind, target FROM dashboard_submissions WHERE session_hash = ?1 AND nonce = ?2",
        )
        .bind(session)
        .bind(submission.nonce)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = used {
            return Ok(SubmissionClaim::Used {
                kind: row.try_get("kind")?,
                target: row.try_get("target")?,
            });
        }

        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM dashboard_submissions WHERE session_hash = ?1",
        )
        .bind(session)
        .fetch_one(&mut *tx)
        .await?;
        if held >= i64::from(max_per_session) {
            return Ok(SubmissionClaim::SessionFull);
        }

        let inserted = sqlx::query(
            "INSERT INTO dashboard_submissions (session_hash, nonce, kind, target, created_at, \
             expires_at) VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
        )
        .bind(session)
        .bind(submission.nonce)
        .bind(submission.kind)
        .bind(to_millis(submission.created_at))
        .bind(to_millis(submission.expires_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_foreign_key_violation(&error) => {
                return Err(StoreError::NotFound("session"));
            }
            Err(error) => return Err(error.into()),
        }
        tx.commit().await?;
        Ok(SubmissionClaim::Claimed)
    }

    pub(crate) async fn finish_submission(
        &self,
        session_hash: &SecretHash,
        nonce: &str,
        target: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE dashboard_submissions SET target = ?3 WHERE session_hash = ?1 AND nonce = ?2",
        )
        .bind(session_hash.as_bytes())
        .bind(nonce)
        .bind(target)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn release_submission(
        &self,
        session_hash: &SecretHash,
        nonce: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM dashboard_submissions WHERE session_hash = ?1 AND nonce = ?2")
            .bind(session_hash.as_bytes())
            .bind(nonce)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
