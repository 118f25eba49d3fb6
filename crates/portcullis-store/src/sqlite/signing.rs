//! Token-signing keys on SQLite. Each change writes its audit record and a
//! change row naming the key's `kid`, so every node reloads its JWKS.

use portcullis_core::signing::{SigningKeyRecord, SigningKeyState};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use time::OffsetDateTime;

use super::{SqliteStore, insert_audit, optional_time_column, time_column, to_millis};
use crate::audit::{AuditAction, AuditContext, AuditEvent};
use crate::error::{StoreError, is_unique_violation};
use crate::records::{
    SigningKeyRevocation, SigningKeyTakeover, parse_algorithm, parse_signing_state,
};

impl SqliteStore {
    pub(crate) async fn insert_signing_key(
        &self,
        key: &SigningKeyRecord,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_signing_key_row(&mut tx, key).await?;
        let event = AuditEvent::signing_key_event(audit, AuditAction::SigningKeyCreated, key);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_kid_change(&mut tx, &key.kid).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(concat!(select_signing_key!(), " ORDER BY created_at, kid"))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    pub(crate) async fn activate_signing_key(
        &self,
        kid: &str,
        retired_publish_until: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<SigningKeyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let key = select_signing_key(&mut tx, kid)
            .await?
            .ok_or(StoreError::NotFound("signing key"))?;
        if key.state != SigningKeyState::Pending {
            return Err(StoreError::Invalid(
                "only a pending signing key can be activated",
            ));
        }

        let retired: Vec<String> = sqlx::query(
            "UPDATE signing_keys SET state = 'retired', retired_at = ?1, publish_until = ?2 \
             WHERE state = 'active' RETURNING kid",
        )
        .bind(to_millis(audit.at))
        .bind(to_millis(retired_publish_until))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("kid"))
        .collect::<Result<_, _>>()?;
        sqlx::query("UPDATE signing_keys SET state = 'active' WHERE kid = ?1")
            .bind(kid)
            .execute(&mut *tx)
            .await?;

        let active = select_signing_key(&mut tx, kid)
            .await?
            .ok_or(StoreError::NotFound("signing key"))?;
        let event = AuditEvent::signing_key_event(audit, AuditAction::SigningKeyActivated, &active);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_kid_change(&mut tx, kid).await?;
        for retired_kid in &retired {
            insert_kid_change(&mut tx, retired_kid).await?;
        }
        tx.commit().await?;
        Ok(active)
    }

    pub(crate) async fn revoke_signing_key(
        &self,
        kid: &str,
        reason: &str,
        takeover: SigningKeyTakeover<'_>,
        audit: &AuditContext,
    ) -> Result<SigningKeyRevocation, StoreError> {
        let mut tx = self.begin_write().await?;
        let key = select_signing_key(&mut tx, kid)
            .await?
            .ok_or(StoreError::NotFound("signing key"))?;
        if key.state == SigningKeyState::Revoked {
            return Err(StoreError::Revoked("signing key"));
        }

        sqlx::query(
            "UPDATE signing_keys SET state = 'revoked', revoked_at = ?2, revoked_reason = ?3, \
             sealed_private_key = X'' WHERE kid = ?1",
        )
        .bind(kid)
        .bind(to_millis(audit.at))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::signing_key_revoked(audit, &key, reason);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_kid_change(&mut tx, kid).await?;

        let successor = if key.state == SigningKeyState::Active {
            self.take_over(&mut tx, takeover, audit).await?
        } else {
            None
        };
        let revoked = select_signing_key(&mut tx, kid)
            .await?
            .ok_or(StoreError::NotFound("signing key"))?;
        tx.commit().await?;
        Ok(SigningKeyRevocation { revoked, successor })
    }

    /// Activates the key that `takeover` names after the active key was
    /// revoked, storing the replacement if no key is pending. The new
    /// signer's `activates_at` moves to now if it was later.
    async fn take_over(
        &self,
        conn: &mut SqliteConnection,
        takeover: SigningKeyTakeover<'_>,
        audit: &AuditContext,
    ) -> Result<Option<SigningKeyRecord>, StoreError> {
        let preferred = match takeover.preferred {
            Some(kid) => {
                sqlx::query(concat!(
                    select_signing_key!(),
                    " WHERE kid = ?1 AND state = 'pending'"
                ))
                .bind(kid)
                .fetch_optional(&mut *conn)
                .await?
            }
            None => None,
        };
        let pending = match preferred {
            Some(row) => Some(row),
            None => {
                sqlx::query(concat!(
                    select_signing_key!(),
                    " WHERE state = 'pending' ORDER BY created_at, kid LIMIT 1"
                ))
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        let kid = match (pending, takeover.replacement) {
            (Some(row), _) => signing_key_from_row(&row)?.kid,
            (None, Some(new_key)) => {
                insert_signing_key_row(conn, new_key).await?;
                let event =
                    AuditEvent::signing_key_event(audit, AuditAction::SigningKeyCreated, new_key);
                insert_audit(conn, &self.audit_key, &event).await?;
                insert_kid_change(conn, &new_key.kid).await?;
                new_key.kid.clone()
            }
            (None, None) => return Ok(None),
        };

        sqlx::query(
            "UPDATE signing_keys SET state = 'active', activates_at = MIN(activates_at, ?2) \
             WHERE kid = ?1",
        )
        .bind(&kid)
        .bind(to_millis(audit.at))
        .execute(&mut *conn)
        .await?;
        let active = select_signing_key(conn, &kid)
            .await?
            .ok_or(StoreError::NotFound("signing key"))?;
        let event = AuditEvent::signing_key_event(audit, AuditAction::SigningKeyActivated, &active);
        insert_audit(conn, &self.audit_key, &event).await?;
        insert_kid_change(conn, &kid).await?;
        Ok(Some(active))
    }

    pub(crate) async fn delete_unpublished_signing_keys(
        &self,
        audit: &AuditContext,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(concat!(
            select_signing_key!(),
            " WHERE state = 'retired' AND publish_until <= ?1 ORDER BY created_at, kid"
        ))
        .bind(to_millis(audit.at))
        .fetch_all(&mut *tx)
        .await?;
        let keys = rows
            .iter()
            .map(signing_key_from_row)
            .collect::<Result<Vec<_>, _>>()?;

        for key in &keys {
            sqlx::query("DELETE FROM signing_keys WHERE kid = ?1")
                .bind(&key.kid)
                .execute(&mut *tx)
                .await?;
            let event = AuditEvent::signing_key_event(audit, AuditAction::SigningKeyDeleted, key);
            insert_audit(&mut tx, &self.audit_key, &event).await?;
            insert_kid_change(&mut tx, &key.kid).await?;
        }
        tx.commit().await?;
        Ok(keys.into_iter().map(|key| key.kid).collect())
    }
}

/// Inserts a signing key's row. A taken kid, or a second active key, is a
/// conflict.
async fn insert_signing_key_row(
    conn: &mut SqliteConnection,
    key: &SigningKeyRecord,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO signing_keys (kid, algorithm, state, public_jwk, sealed_private_key, \
         created_at, activates_at, retired_at, publish_until, revoked_at, revoked_reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .bind(&key.kid)
    .bind(key.algorithm.as_str())
    .bind(key.state.as_str())
    .bind(&key.public_jwk)
    .bind(key.sealed_private_key.as_slice())
    .bind(to_millis(key.created_at))
    .bind(to_millis(key.activates_at))
    .bind(key.retired_at.map(to_millis))
    .bind(key.publish_until.map(to_millis))
    .bind(key.revoked_at.map(to_millis))
    .bind(key.revoked_reason.as_deref())
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict(format!(
            "signing key {} already exists, or another key is already active",
            key.kid
        ))),
        Err(error) => Err(error.into()),
    }
}

/// Appends a change row naming a signing key.
async fn insert_kid_change(conn: &mut SqliteConnection, kid: &str) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO changes (kid, at) VALUES (?1, ",
        now_millis!(),
        ")"
    ))
    .bind(kid)
    .execute(conn)
    .await?;
    Ok(())
}

async fn select_signing_key(
    conn: &mut SqliteConnection,
    kid: &str,
) -> Result<Option<SigningKeyRecord>, StoreError> {
    let row = sqlx::query(concat!(select_signing_key!(), " WHERE kid = ?1"))
        .bind(kid)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(signing_key_from_row).transpose()
}

fn signing_key_from_row(row: &SqliteRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        algorithm: parse_algorithm(row.try_get("algorithm")?)?,
        state: parse_signing_state(row.try_get("state")?)?,
        public_jwk: row.try_get("public_jwk")?,
        sealed_private_key: row.try_get("sealed_private_key")?,
        created_at: time_column(row, "created_at")?,
        activates_at: time_column(row, "activates_at")?,
        retired_at: optional_time_column(row, "retired_at")?,
        publish_until: optional_time_column(row, "publish_until")?,
        revoked_at: optional_time_column(row, "revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
    })
}
