//! A tenant's members and invites on PostgreSQL. A role change, disable
//! or enable locks the target user and the tenant's enabled admins with
//! one `SELECT … ORDER BY id FOR UPDATE`, and accepting an invite locks
//! the invite's row, so concurrent nodes take turns on them.

use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{InviteId, TenantId, UserId};
use portcullis_core::oauth::{Role, UserRecord};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use time::OffsetDateTime;

use super::oauth::{revoke_user_tokens, user_from_row};
use uuid::Uuid;

use super::{PostgresStore, insert_audit};
use crate::audit::{AuditContext, AuditEvent};
use crate::error::{StoreError, is_foreign_key_violation, is_unique_violation};
use crate::members::{AcceptInvite, InviteRecord, InviteState, NewInvite, invited_user};
use crate::records::{NewUser, parse_email, parse_hash, parse_role, parse_tenant_name};

impl PostgresStore {
    pub(crate) async fn change_user_role(
        &self,
        id: UserId,
        role: Role,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (user, other_admins) = lock_member(&mut tx, id).await?;
        if user.role == role {
            return Ok(user);
        }
        if user.role == Role::Admin && user.disabled_at.is_none() && other_admins == 0 {
            return Err(StoreError::LastAdmin);
        }
        sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::user_role_changed(audit, &user, role);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        let updated = select_user(&mut tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub(crate) async fn disable_user(
        &self,
        id: UserId,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (user, other_admins) = lock_member(&mut tx, id).await?;
        if user.disabled_at.is_some() {
            return Err(StoreError::Revoked("user"));
        }
        if user.role == Role::Admin && other_admins == 0 {
            return Err(StoreError::LastAdmin);
        }
        sqlx::query("UPDATE users SET disabled_at = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(audit.at)
            .execute(&mut *tx)
            .await?;
        let ended = sqlx::query("DELETE FROM login_sessions WHERE user_id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let tokens = revoke_user_tokens(&mut tx, id, audit.at).await?;
        let event = AuditEvent::user_disabled(audit, &user, ended, tokens);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        let updated = select_user(&mut tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub(crate) async fn enable_user(
        &self,
        id: UserId,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (user, _) = lock_member(&mut tx, id).await?;
        if user.disabled_at.is_none() {
            return Err(StoreError::Conflict(format!(
                "{} is not disabled",
                user.email
            )));
        }
        sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::user_enabled(audit, &user);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        let updated = select_user(&mut tx, id).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub(crate) async fn last_sign_ins(
        &self,
        tenant_id: TenantId,
    ) -> Result<Vec<(UserId, OffsetDateTime)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, last_sign_in_at FROM users \
             WHERE tenant_id = $1 AND last_sign_in_at IS NOT NULL",
        )
        .bind(tenant_id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    UserId::from_uuid(row.try_get::<Uuid, _>("id")?),
                    row.try_get("last_sign_in_at")?,
                ))
            })
            .collect()
    }

    pub(crate) async fn create_invite(
        &self,
        invite: &NewInvite,
        audit: &AuditContext,
    ) -> Result<InviteRecord, StoreError> {
        let mut tx = self.pool.begin().await?;

        let member = sqlx::query("SELECT 1 FROM users WHERE tenant_id = $1 AND email = $2")
            .bind(invite.tenant_id.as_uuid())
            .bind(invite.email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if member.is_some() {
            return Err(StoreError::Conflict(format!(
                "{} is already a member of this organization",
                invite.email
            )));
        }

        let pending = sqlx::query(
            "SELECT 1 FROM user_invites WHERE tenant_id = $1 AND email = $2 \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(invite.tenant_id.as_uuid())
        .bind(invite.email.as_str())
        .bind(audit.at)
        .fetch_optional(&mut *tx)
        .await?;
        if pending.is_some() {
            return Err(StoreError::Conflict(format!(
                "{} has a pending invite already; revoke it first to send a new one",
                invite.email
            )));
        }

        let inserted = sqlx::query(
            "INSERT INTO user_invites (id, tenant_id, email, role, token_hash, created_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(invite.id.as_uuid())
        .bind(invite.tenant_id.as_uuid())
        .bind(invite.email.as_str())
        .bind(invite.role.as_str())
        .bind(invite.token_hash.as_bytes())
        .bind(&invite.created_by)
        .bind(invite.created_at)
        .bind(invite.expires_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(
                    "an invite with this id or token already exists".to_owned(),
                ));
            }
            Err(error) if is_foreign_key_violation(&error) => {
                return Err(StoreError::NotFound("tenant"));
            }
            Err(error) => return Err(error.into()),
        }

        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::invite_created(audit, invite),
        )
        .await?;

        let stored = select_invite_by_id(&mut tx, invite.id).await?;
        tx.commit().await?;
        stored.ok_or(StoreError::NotFound("invite"))
    }

    pub(crate) async fn find_invite(
        &self,
        id: InviteId,
    ) -> Result<Option<InviteRecord>, StoreError> {
        let row = sqlx::query(concat!(select_invite!(), " WHERE i.id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    pub(crate) async fn find_invite_by_hash(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<InviteRecord>, StoreError> {
        let row = sqlx::query(concat!(select_invite!(), " WHERE i.token_hash = $1"))
            .bind(hash.as_bytes())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(invite_from_row).transpose()
    }

    pub(crate) async fn list_pending_invites(
        &self,
        tenant_id: TenantId,
        now: OffsetDateTime,
    ) -> Result<Vec<InviteRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            select_invite!(),
            " WHERE i.tenant_id = $1 AND i.used_at IS NULL AND i.revoked_at IS NULL \
             AND i.expires_at > $2 ORDER BY i.created_at DESC, i.id DESC"
        ))
        .bind(tenant_id.as_uuid())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invite_from_row).collect()
    }

    pub(crate) async fn revoke_invite(
        &self,
        id: InviteId,
        audit: &AuditContext,
    ) -> Result<InviteRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let invite = select_invite_by_id(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("invite"))?;
        if invite.state(audit.at) != InviteState::Pending {
            return Err(StoreError::Revoked("invite"));
        }
        sqlx::query("UPDATE user_invites SET revoked_at = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(audit.at)
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::invite_revoked(audit, &invite);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        let revoked = select_invite_by_id(&mut tx, id).await?;
        tx.commit().await?;
        revoked.ok_or(StoreError::NotFound("invite"))
    }

    pub(crate) async fn accept_invite(
        &self,
        hash: &SecretHash,
        user: &NewUser,
        audit: &AuditContext,
    ) -> Result<AcceptInvite, StoreError> {
        let mut tx = self.pool.begin().await?;

        let Some(invite) = select_invite_by_hash(&mut tx, hash).await? else {
            return Ok(AcceptInvite::Unknown);
        };

        let state = invite.state(audit.at);
        if state != InviteState::Pending {
            return Ok(AcceptInvite::NotPending(state));
        }

        let user = invited_user(user, &invite);

        let inserted = sqlx::query(
            "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.as_uuid())
        .bind(user.tenant_id.as_uuid())
        .bind(user.email.as_str())
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(user.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => return Ok(AcceptInvite::EmailTaken),
            Err(error) => return Err(error.into()),
        }
        sqlx::query("UPDATE user_invites SET used_at = $2, user_id = $3 WHERE id = $1")
            .bind(invite.id.as_uuid())
            .bind(audit.at)
            .bind(user.id.as_uuid())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::user_created_by_invite(audit, &user, &invite);

        insert_audit(&mut tx, &self.audit_key, &event).await?;

        let created = select_user(&mut tx, user.id).await?;

        tx.commit().await?;

        Ok(AcceptInvite::Accepted(created))
    }
}

async fn select_user(conn: &mut PgConnection, id: UserId) -> Result<UserRecord, StoreError> {
    let row = sqlx::query(concat!(select_user!(), " WHERE u.id = $1 FOR UPDATE OF u"))
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await?;
    row.as_ref()
        .map(user_from_row)
        .transpose()?
        .ok_or(StoreError::NotFound("user"))
}

/// Locks user `id` and every enabled admin of its tenant, then returns the
/// user and how many of those admins are other users.
///
/// Every transaction that changes a member's role or enabled state takes
/// its row locks here, in one statement and in ascending id order. Locking
/// the target and the admins in separate statements let two transactions
/// take the same rows in opposite orders and deadlock. With one order, a
/// transaction waits for the other instead. While it waits, PostgreSQL
/// rechecks the WHERE clause on the newest row version, so an admin that
/// the other transaction disabled or demoted drops out of the count, and
/// the last-admin rule stays enforced without a serialization failure to
/// retry.
async fn lock_member(
    conn: &mut PgConnection,
    id: UserId,
) -> Result<(UserRecord, usize), StoreError> {
    // A user never moves to another tenant, so reading the tenant
    // without a lock is safe.
    let tenant_id: Uuid = sqlx::query_scalar("SELECT tenant_id FROM users WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    let locked: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM users WHERE tenant_id = $1 \
         AND (id = $2 OR (role = 'admin' AND disabled_at IS NULL)) \
         ORDER BY id FOR UPDATE",
    )
    .bind(tenant_id)
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await?;
    let other_admins = locked
        .iter()
        .filter(|locked| **locked != id.as_uuid())
        .count();
    // The row is locked already, so this read waits for nothing.
    let user = select_user(conn, id).await?;
    Ok((user, other_admins))
}

async fn select_invite_by_id(
    conn: &mut PgConnection,
    id: InviteId,
) -> Result<Option<InviteRecord>, StoreError> {
    let row = sqlx::query(concat!(
        select_invite!(),
        " WHERE i.id = $1 FOR UPDATE OF i"
    ))
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(invite_from_row).transpose()
}

async fn select_invite_by_hash(
    conn: &mut PgConnection,
    hash: &SecretHash,
) -> Result<Option<InviteRecord>, StoreError> {
    let row = sqlx::query(concat!(
        select_invite!(),
        " WHERE i.token_hash = $1 FOR UPDATE OF i"
    ))
    .bind(hash.as_bytes())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(invite_from_row).transpose()
}

fn invite_from_row(row: &PgRow) -> Result<InviteRecord, StoreError> {
    let hash: &[u8] = row.try_get("token_hash")?;
    Ok(InviteRecord {
        id: InviteId::from_uuid(row.try_get::<Uuid, _>("id")?),
        tenant_id: TenantId::from_uuid(row.try_get::<Uuid, _>("tenant_id")?),
        tenant: parse_tenant_name(row.try_get("tenant_name")?)?,
        email: parse_email(row.try_get("email")?)?,
        role: parse_role(row.try_get("role")?)?,
        token_hash: parse_hash(hash)?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        user_id: row
            .try_get::<Option<Uuid>, _>("user_id")?
            .map(UserId::from_uuid),
        revoked_at: row.try_get("revoked_at")?,
    })
}
