//! The dashboard's one-time form submissions on PostgreSQL. A claim locks
//! its session's row with `SELECT … FOR UPDATE`, so claims of one session
//! take turns on every node: two POSTs of one token cannot both find it
//! unused, and the per-session limit holds.

use portcullis_core::crypto::SecretHash;
use sqlx::Row;

use super::PostgresStore;
use crate::error::StoreError;
use crate::submissions::{NewSubmission, SubmissionClaim};

impl PostgresStore {
    pub(crate) async fn claim_submission(
        &self,
        submission: &NewSubmission<'_>,
        max_per_session: u32,
    ) -> Result<SubmissionClaim, StoreError> {
        let session = submission.session_hash.as_bytes();
        let mut tx = self.pool.begin().await?;
        let locked = sqlx::query("SELECT 1 FROM login_sessions WHERE session_hash = $1 FOR UPDATE")
            .bind(session)
            .fetch_optional(&mut *tx)
            .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound("session"));
        }
        sqlx::query(
            "DELETE FROM dashboard_submissions WHERE session_hash = $1 AND expires_at <= $2",
        )
        .bind(session)
        .bind(submission.created_at)
        .execute(&mut *tx)
        .await?;

        let used = sqlx::query(
            "SELECT kind, target FROM dashboard_submissions WHERE session_hash = $1 AND nonce = $2",
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
            "SELECT COUNT(*) FROM dashboard_submissions WHERE session_hash = $1",
        )
        .bind(session)
        .fetch_one(&mut *tx)
        .await?;
        if held >= i64::from(max_per_session) {
            return Ok(SubmissionClaim::SessionFull);
        }

        sqlx::query(
            "INSERT INTO dashboard_submissions (session_hash, nonce, kind, target, created_at, \
             expires_at) VALUES ($1, $2, $3, NULL, $4, $5)",
        )
        .bind(session)
        .bind(submission.nonce)
        .bind(submission.kind)
        .bind(submission.created_at)
        .bind(submission.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SubmissionClaim::Claimed)
    }

    pub(crate) async fn finish_submission(
        &self,
        session_hash: &SecretHash,
        nonce: &str,
        target: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE dashboard_submissions SET target = $3 WHERE session_hash = $1 AND nonce = $2",
        )
        .bind(session_hash.as_bytes())
        .bind(nonce)
        .bind(target)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn release_submission(
        &self,
        session_hash: &SecretHash,
        nonce: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dashboard_submissions WHERE session_hash = $1 AND nonce = $2")
            .bind(session_hash.as_bytes())
            .bind(nonce)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
