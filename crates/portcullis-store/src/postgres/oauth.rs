//! The OAuth tables on PostgreSQL. Each read-then-write step (spending a
//! code or a refresh token, revoking) first locks its row with
//! `SELECT … FOR UPDATE`, so concurrent nodes take turns on one row.

use portcullis_core::credential::RateLimits;
use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{ClientId, TenantId, TokenFamilyId, UserId};
use portcullis_core::oauth::{
    AccessTokenRecord, AuthorizationCodeRecord, ClientAuthMethod, ClientRecord, ClientSecretRecord,
    ConsentRecord, Email, RedirectUri, RefreshTokenRecord, TlsClientAuthSubject, UserRecord,
};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{PostgresStore, insert_audit};
use crate::audit::{AuditContext, AuditEvent, FamilyRevocationReason};
use crate::chain::AuditKeySlot;
use crate::error::{StoreError, is_foreign_key_violation, is_unique_violation};
use crate::members::UserTokensRevoked;
use crate::records::{
    ConsumeCode, LoginSession, NewClient, NewClientSecret, NewUser, RotateRefresh,
    check_new_client, client_limits_from_columns, join_words, parse_auth_method, parse_email,
    parse_grant_types, parse_hash, parse_oauth_scopes, parse_redirect_uris, parse_role,
    parse_tenant_name, parse_tls_subject, rate_limits_column,
};
use crate::{CHANGE_CHANNEL, EXPIRED_CODE_RETENTION};

/// The access tokens that a revocation covers.
#[derive(Clone, Copy)]
enum TokenSelection<'a> {
    Client(ClientId),
    Family(TokenFamilyId),
    Jti(&'a str),
    /// The tokens of every grant that a user's codes and refresh tokens
    /// belong to.
    User(UserId),
}

/// Appends one change row per access token of `selection` that is neither
/// revoked nor expired at `$2`, and queues one notification for them all.
/// Runs before the tokens are marked revoked.
macro_rules! insert_jti_changes {
    ($condition:literal) => {
        concat!(
            "WITH change AS ( \
                 INSERT INTO changes (client_id, tenant_id, jti, jti_expires_at, at) \
                 SELECT a.client_id, c.tenant_id, a.jti, a.expires_at, clock_timestamp() \
                 FROM access_tokens a JOIN oauth_clients c ON c.id = a.client_id \
                 WHERE a.revoked_at IS NULL AND a.expires_at > $2 AND ",
            $condition,
            " RETURNING id \
             ) \
             SELECT pg_notify($3, max(id)::text) FROM change HAVING count(*) > 0"
        )
    };
}

impl PostgresStore {
    pub(crate) async fn create_client(
        &self,
        client: &NewClient,
        first_secret: Option<&NewClientSecret>,
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        check_new_client(client)?;
        if first_secret.is_some() {
            check_secret_allowed(client.auth_method)?;
        }
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO oauth_clients (id, tenant_id, name, confidential, grant_types, scopes, \
             redirect_uris, auth_method, jwks, access_token_ttl_seconds, created_at, \
             tls_subject_kind, tls_subject, rate_limits, plan, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16)",
        )
        .bind(client.id.as_uuid())
        .bind(client.tenant_id.as_uuid())
        .bind(&client.name)
        .bind(client.confidential)
        .bind(join_words(client.grant_types.iter().map(|g| g.as_str())))
        .bind(client.scopes.to_space_separated())
        .bind(join_words(client.redirect_uris.iter().map(|u| u.as_str())))
        .bind(client.auth_method.as_str())
        .bind(client.jwks.as_deref())
        .bind(client.access_token_ttl_seconds)
        .bind(client.created_at)
        .bind(
            client
                .tls_client_auth_subject
                .as_ref()
                .map(|subject| subject.kind().as_str()),
        )
        .bind(
            client
                .tls_client_auth_subject
                .as_ref()
                .map(TlsClientAuthSubject::value),
        )
        .bind(rate_limits_column(&client.limits.rate_limits))
        .bind(client.limits.plan.as_deref())
        .bind(client.created_by.as_deref())
        .execute(&mut *tx)
        .await;
        map_insert(inserted, "a client with this id already exists", "tenant")?;
        if let Some(secret) = first_secret {
            insert_secret_row(&mut tx, client.id, secret).await?;
        }

        let event = AuditEvent::client_created(audit, client, first_secret);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_client_change(&mut tx, client.id, client.tenant_id).await?;
        let record = lock_client(&mut tx, client.id).await?;
        tx.commit().await?;
        record.ok_or(StoreError::NotFound("client"))
    }

    pub(crate) async fn find_client(
        &self,
        id: ClientId,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(concat!(select_client!(), " WHERE c.id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    pub(crate) async fn list_clients(
        &self,
        tenant_id: TenantId,
    ) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            select_client!(),
            " WHERE c.tenant_id = $1 ORDER BY c.created_at DESC, c.id DESC"
        ))
        .bind(tenant_id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    pub(crate) async fn client_secrets(
        &self,
        client_id: ClientId,
        now: OffsetDateTime,
    ) -> Result<Vec<ClientSecretRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, client_id, secret_hash, created_at, expires_at FROM oauth_client_secrets \
             WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2) \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(client_id.as_uuid())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(secret_from_row).collect()
    }

    pub(crate) async fn add_client_secret(
        &self,
        client_id: ClientId,
        secret: &NewClientSecret,
        old_expires_at: OffsetDateTime,
        audit: &AuditContext,
    ) -> Result<ClientSecretRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let client = lock_client(&mut tx, client_id)
            .await?
            .ok_or(StoreError::NotFound("client"))?;
        if client.revoked_at.is_some() {
            return Err(StoreError::Revoked("client"));
        }
        check_secret_allowed(client.auth_method)?;

        sqlx::query(
            "UPDATE oauth_client_secrets SET expires_at = $2 \
             WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(client_id.as_uuid())
        .bind(old_expires_at)
        .execute(&mut *tx)
        .await?;
        insert_secret_row(&mut tx, client_id, secret).await?;
        let event = AuditEvent::client_secret_added(audit, &client, secret, old_expires_at);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_client_change(&mut tx, client_id, client.tenant_id).await?;
        tx.commit().await?;

        Ok(ClientSecretRecord {
            id: secret.id,
            client_id,
            hash: secret.hash.clone(),
            created_at: secret.created_at,
            expires_at: secret.expires_at,
        })
    }

    pub(crate) async fn revoke_client(
        &self,
        id: ClientId,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let client = lock_client(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("client"))?;
        if client.revoked_at.is_some() {
            return Err(StoreError::Revoked("client"));
        }

        sqlx::query("UPDATE oauth_clients SET revoked_at = $2, revoked_reason = $3 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(audit.at)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        let access_tokens = revoke_tokens(&mut tx, TokenSelection::Client(id), audit.at).await?;
        let event = AuditEvent::client_revoked(audit, &client, reason, access_tokens);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_client_change(&mut tx, id, client.tenant_id).await?;

        let revoked = lock_client(&mut tx, id).await?;
        tx.commit().await?;
        revoked.ok_or(StoreError::NotFound("client"))
    }

    pub(crate) async fn update_client_limits(
        &self,
        id: ClientId,
        limits: &RateLimits,
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let client = lock_client(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("client"))?;

        sqlx::query("UPDATE oauth_clients SET rate_limits = $2, plan = $3 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(rate_limits_column(&limits.rate_limits))
            .bind(limits.plan.as_deref())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::client_limits_changed(audit, &client, limits);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_client_change(&mut tx, id, client.tenant_id).await?;

        let updated = lock_client(&mut tx, id).await?;
        tx.commit().await?;
        updated.ok_or(StoreError::NotFound("client"))
    }

    pub(crate) async fn update_client_redirect_uris(
        &self,
        id: ClientId,
        redirect_uris: &[RedirectUri],
        audit: &AuditContext,
    ) -> Result<ClientRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let client = lock_client(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound("client"))?;
        if client.revoked_at.is_some() {
            return Err(StoreError::Revoked("client"));
        }

        sqlx::query("UPDATE oauth_clients SET redirect_uris = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(join_words(redirect_uris.iter().map(|u| u.as_str())))
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::client_redirect_uris_changed(audit, &client, redirect_uris);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        insert_client_change(&mut tx, id, client.tenant_id).await?;

        let updated = lock_client(&mut tx, id).await?;
        tx.commit().await?;
        updated.ok_or(StoreError::NotFound("client"))
    }

    pub(crate) async fn create_user(
        &self,
        user: &NewUser,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
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
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "user {} already exists in this tenant",
                    user.email
                )));
            }
            Err(error) if is_foreign_key_violation(&error) => {
                return Err(StoreError::NotFound("tenant"));
            }
            Err(error) => return Err(error.into()),
        }

        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::user_created(audit, user),
        )
        .await?;
        let row = sqlx::query(concat!(select_user!(), " WHERE u.id = $1"))
            .bind(user.id.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref()
            .map(user_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("user"))
    }

    pub(crate) async fn find_user_by_email(
        &self,
        tenant_id: TenantId,
        email: &Email,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(concat!(
            select_user!(),
            " WHERE u.tenant_id = $1 AND u.email = $2"
        ))
        .bind(tenant_id.as_uuid())
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn find_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(concat!(select_user!(), " WHERE u.id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn list_users(
        &self,
        tenant_id: TenantId,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            select_user!(),
            " WHERE u.tenant_id = $1 ORDER BY u.email"
        ))
        .bind(tenant_id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub(crate) async fn insert_code(
        &self,
        code: &AuthorizationCodeRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO authorization_codes (code_hash, client_id, user_id, redirect_uri, \
             code_challenge, scopes, resource, family_id, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(code.hash.as_bytes())
        .bind(code.client_id.as_uuid())
        .bind(code.user_id.as_uuid())
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(code.scopes.to_space_separated())
        .bind(code.resource.as_deref())
        .bind(code.family_id.as_uuid())
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(code.used_at)
        .execute(&mut *tx)
        .await;
        map_insert(
            inserted,
            "this authorization code already exists",
            "client or user",
        )?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn consume_code(
        &self,
        hash: &SecretHash,
        client_id: ClientId,
        at: OffsetDateTime,
    ) -> Result<ConsumeCode, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(select_code!(), " WHERE code_hash = $1 FOR UPDATE"))
            .bind(hash.as_bytes())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut code) = row.as_ref().map(code_from_row).transpose()? else {
            return Ok(ConsumeCode::NotFound);
        };
        if code.client_id != client_id {
            return Ok(ConsumeCode::WrongClient);
        }
        if code.used_at.is_some() {
            return Ok(ConsumeCode::AlreadyUsed(code));
        }
        if at >= code.expires_at {
            return Ok(ConsumeCode::Expired);
        }

        sqlx::query("UPDATE authorization_codes SET used_at = $2 WHERE code_hash = $1")
            .bind(hash.as_bytes())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        code.used_at = Some(at);
        Ok(ConsumeCode::Fresh(code))
    }

    pub(crate) async fn insert_refresh_token(
        &self,
        token: &RefreshTokenRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_refresh_row(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn rotate_refresh_token(
        &self,
        old_hash: &SecretHash,
        new: &RefreshTokenRecord,
        at: OffsetDateTime,
    ) -> Result<RotateRefresh, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(concat!(
            select_refresh!(),
            " WHERE token_hash = $1 FOR UPDATE"
        ))
        .bind(old_hash.as_bytes())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old) = row.as_ref().map(refresh_from_row).transpose()? else {
            return Ok(RotateRefresh::NotFound);
        };
        if old.client_id != new.client_id {
            return Ok(RotateRefresh::WrongClient);
        }
        if old.revoked_at.is_some() || at >= old.expires_at {
            return Ok(RotateRefresh::Dead);
        }
        if old.used_at.is_some() {
            let context = AuditContext {
                actor: format!("client:{}", old.client_id),
                remote_addr: None,
                at,
            };
            let reason = FamilyRevocationReason::RefreshTokenReused;
            revoke_family_in(&mut tx, &self.audit_key, old.family_id, reason, &context).await?;
            tx.commit().await?;
            return Ok(RotateRefresh::Reused(old));
        }
        if new.family_id != old.family_id {
            return Err(StoreError::Invalid(
                "a new refresh token must join the family of the token it replaces",
            ));
        }

        sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1")
            .bind(old_hash.as_bytes())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        insert_refresh_row(&mut tx, new).await?;
        tx.commit().await?;
        Ok(RotateRefresh::Rotated(old))
    }

    pub(crate) async fn revoke_family(
        &self,
        family_id: TokenFamilyId,
        reason: FamilyRevocationReason,
        audit: &AuditContext,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let revoked = revoke_family_in(&mut tx, &self.audit_key, family_id, reason, audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    pub(crate) async fn find_refresh_token(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let row = sqlx::query(concat!(select_refresh!(), " WHERE token_hash = $1"))
            .bind(hash.as_bytes())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(refresh_from_row).transpose()
    }

    pub(crate) async fn record_access_token(
        &self,
        token: &AccessTokenRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO access_tokens (jti, client_id, family_id, expires_at, revoked_at, \
             certificate_thumbprint) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.jti)
        .bind(token.client_id.as_uuid())
        .bind(token.family_id.map(|id| id.as_uuid()))
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .bind(token.certificate_thumbprint.as_deref())
        .execute(&mut *tx)
        .await;
        map_insert(
            inserted,
            "an access token with this jti already exists",
            "client",
        )?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn revoke_access_token(
        &self,
        jti: &str,
        audit: &AuditContext,
    ) -> Result<AccessTokenRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut token = lock_access_token(&mut tx, jti)
            .await?
            .ok_or(StoreError::NotFound("access token"))?;
        if token.revoked_at.is_some() {
            return Err(StoreError::Revoked("access token"));
        }
        let tenant_id = client_tenant(&mut tx, token.client_id).await?;

        revoke_tokens(&mut tx, TokenSelection::Jti(jti), audit.at).await?;
        token.revoked_at = Some(audit.at);
        let event = AuditEvent::access_token_revoked(audit, &token, tenant_id);
        insert_audit(&mut tx, &self.audit_key, &event).await?;
        tx.commit().await?;
        Ok(token)
    }

    pub(crate) async fn find_access_token(
        &self,
        jti: &str,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT jti, client_id, family_id, expires_at, revoked_at, certificate_thumbprint \
             FROM access_tokens \
             WHERE jti = $1",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(access_token_from_row).transpose()
    }

    pub(crate) async fn live_revoked_jtis(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, OffsetDateTime)>, StoreError> {
        let rows = sqlx::query(
            "SELECT jti, expires_at FROM access_tokens \
             WHERE revoked_at IS NOT NULL AND expires_at > $1 ORDER BY expires_at, jti",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("jti")?, row.try_get("expires_at")?)))
            .collect()
    }

    pub(crate) async fn prune_oauth(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let code_cutoff = now - EXPIRED_CODE_RETENTION;
        let statements = [
            ("DELETE FROM access_tokens WHERE expires_at <= $1", now),
            ("DELETE FROM refresh_tokens WHERE expires_at <= $1", now),
            (
                "DELETE FROM client_assertion_jtis WHERE expires_at <= $1",
                now,
            ),
            (
                "DELETE FROM login_sessions \
                 WHERE idle_expires_at <= $1 OR absolute_expires_at <= $1",
                now,
            ),
            (
                "DELETE FROM dashboard_submissions WHERE expires_at <= $1",
                now,
            ),
            (
                "DELETE FROM authorization_codes WHERE expires_at <= $1",
                code_cutoff,
            ),
        ];
        let mut tx = self.pool.begin().await?;
        let mut deleted = 0;
        for (statement, cutoff) in statements {
            deleted += sqlx::query(statement)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        tracing::debug!(deleted, "pruned expired OAuth rows");
        Ok(deleted)
    }

    pub(crate) async fn grant_consent(&self, consent: &ConsentRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let upserted = sqlx::query(
            "INSERT INTO consents (user_id, client_id, scopes, granted_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id) \
             DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
        )
        .bind(consent.user_id.as_uuid())
        .bind(consent.client_id.as_uuid())
        .bind(consent.scopes.to_space_separated())
        .bind(consent.granted_at)
        .execute(&mut *tx)
        .await;
        map_insert(upserted, "consent conflicts", "user or client")?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn find_consent(
        &self,
        user_id: UserId,
        client_id: ClientId,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, client_id, scopes, granted_at FROM consents \
             WHERE user_id = $1 AND client_id = $2",
        )
        .bind(user_id.as_uuid())
        .bind(client_id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(ConsentRecord {
            user_id: UserId::from_uuid(row.try_get::<Uuid, _>("user_id")?),
            client_id: ClientId::from_uuid(row.try_get::<Uuid, _>("client_id")?),
            scopes: parse_oauth_scopes(row.try_get("scopes")?, "consent")?,
            granted_at: row.try_get("granted_at")?,
        }))
    }

    pub(crate) async fn use_assertion_jti(
        &self,
        client_id: ClientId,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM client_assertion_jtis WHERE expires_at < clock_timestamp()")
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id.as_uuid())
        .bind(jti)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    pub(crate) async fn create_session(&self, session: &LoginSession) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO login_sessions (session_hash, user_id, created_at, idle_expires_at, \
             absolute_expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.hash.as_bytes())
        .bind(session.user_id.as_uuid())
        .bind(session.created_at)
        .bind(session.idle_expires_at)
        .bind(session.absolute_expires_at)
        .execute(&mut *tx)
        .await;
        map_insert(inserted, "this session already exists", "user")?;
        // Kept on the user for the dashboard's member list.
        sqlx::query("UPDATE users SET last_sign_in_at = $2 WHERE id = $1")
            .bind(session.user_id.as_uuid())
            .bind(session.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn find_session(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<LoginSession>, StoreError> {
        let row = sqlx::query(
            "SELECT session_hash, user_id, created_at, idle_expires_at, absolute_expires_at \
             FROM login_sessions WHERE session_hash = $1",
        )
        .bind(hash.as_bytes())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: &[u8] = row.try_get("session_hash")?;
        Ok(Some(LoginSession {
            hash: parse_hash(stored)?,
            user_id: UserId::from_uuid(row.try_get::<Uuid, _>("user_id")?),
            created_at: row.try_get("created_at")?,
            idle_expires_at: row.try_get("idle_expires_at")?,
            absolute_expires_at: row.try_get("absolute_expires_at")?,
        }))
    }

    pub(crate) async fn touch_session(
        &self,
        hash: &SecretHash,
        idle_expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE login_sessions SET idle_expires_at = LEAST($2, absolute_expires_at) \
             WHERE session_hash = $1",
        )
        .bind(hash.as_bytes())
        .bind(idle_expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }

    pub(crate) async fn delete_session(&self, hash: &SecretHash) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM login_sessions WHERE session_hash = $1")
            .bind(hash.as_bytes())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    pub(crate) async fn delete_user_sessions(&self, user_id: UserId) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM login_sessions WHERE user_id = $1")
            .bind(user_id.as_uuid())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Rejects a secret for a client whose method uses none.
fn check_secret_allowed(method: ClientAuthMethod) -> Result<(), StoreError> {
    match method {
        ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => Ok(()),
        ClientAuthMethod::PrivateKeyJwt
        | ClientAuthMethod::None
        | ClientAuthMethod::TlsClientAuth
        | ClientAuthMethod::SelfSignedTlsClientAuth => Err(StoreError::Invalid(
            "only a client that authenticates with client_secret_basic or client_secret_post \
             has secrets",
        )),
    }
}

/// Maps the outcome of an INSERT: a unique violation is a conflict with
/// `conflict` as its message, a foreign-key violation means `missing` was
/// not found.
fn map_insert<T>(
    outcome: Result<T, sqlx::Error>,
    conflict: &str,
    missing: &'static str,
) -> Result<T, StoreError> {
    match outcome {
        Ok(value) => Ok(value),
        Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict(conflict.to_owned())),
        Err(error) if is_foreign_key_violation(&error) => Err(StoreError::NotFound(missing)),
        Err(error) => Err(error.into()),
    }
}

async fn insert_secret_row(
    conn: &mut PgConnection,
    client_id: ClientId,
    secret: &NewClientSecret,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO oauth_client_secrets (id, client_id, secret_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secret.id)
    .bind(client_id.as_uuid())
    .bind(secret.hash.as_bytes())
    .bind(secret.created_at)
    .bind(secret.expires_at)
    .execute(conn)
    .await;
    map_insert(
        inserted,
        "a client secret with this id or hash already exists",
        "client",
    )?;
    Ok(())
}

async fn insert_refresh_row(
    conn: &mut PgConnection,
    token: &RefreshTokenRecord,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, user_id, scopes, \
         resource, created_at, expires_at, used_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(token.hash.as_bytes())
    .bind(token.family_id.as_uuid())
    .bind(token.client_id.as_uuid())
    .bind(token.user_id.map(|id| id.as_uuid()))
    .bind(token.scopes.to_space_separated())
    .bind(token.resource.as_deref())
    .bind(token.created_at)
    .bind(token.expires_at)
    .bind(token.used_at)
    .bind(token.revoked_at)
    .execute(conn)
    .await;
    map_insert(
        inserted,
        "this refresh token already exists",
        "client or user",
    )?;
    Ok(())
}

/// Ends every OAuth grant of a disabled user. The access tokens of each
/// grant are revoked after their change rows are written, and so are the
/// refresh tokens. Codes not yet exchanged are deleted, so an exchange
/// fails as for an unknown code.
pub(super) async fn revoke_user_tokens(
    conn: &mut PgConnection,
    user_id: UserId,
    at: OffsetDateTime,
) -> Result<UserTokensRevoked, StoreError> {
    let access_tokens = revoke_tokens(conn, TokenSelection::User(user_id), at).await?;

    let refresh_tokens = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 \
         WHERE user_id = $1 AND revoked_at IS NULL AND used_at IS NULL AND expires_at > $2",
    )
    .bind(user_id.as_uuid())
    .bind(at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // Spent refresh tokens are revoked too, without being counted, so a
    // replay of one is rejected as revoked rather than as reuse.
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id.as_uuid())
    .bind(at)
    .execute(&mut *conn)
    .await?;
    let codes =
        sqlx::query("DELETE FROM authorization_codes WHERE user_id = $1 AND used_at IS NULL")
            .bind(user_id.as_uuid())
            .execute(&mut *conn)
            .await?
            .rows_affected();
    Ok(UserTokensRevoked {
        access_tokens,
        refresh_tokens,
        codes,
    })
}

/// Revokes every refresh and access token of a family and writes the audit
/// record. Returns how many access tokens were revoked.
async fn revoke_family_in(
    conn: &mut PgConnection,
    audit_key: &AuditKeySlot,
    family_id: TokenFamilyId,
    reason: FamilyRevocationReason,
    audit: &AuditContext,
) -> Result<u64, StoreError> {
    let owner = sqlx::query(
        "SELECT c.id, c.tenant_id FROM oauth_clients c WHERE c.id IN \
         (SELECT client_id FROM refresh_tokens WHERE family_id = $1 \
          UNION SELECT client_id FROM access_tokens WHERE family_id = $1) LIMIT 1",
    )
    .bind(family_id.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    let owner = match owner {
        Some(row) => Some((
            ClientId::from_uuid(row.try_get::<Uuid, _>("id")?),
            TenantId::from_uuid(row.try_get::<Uuid, _>("tenant_id")?),
        )),
        None => None,
    };

    let access_tokens = revoke_tokens(conn, TokenSelection::Family(family_id), audit.at).await?;
    let event = AuditEvent::token_family_revoked(audit, family_id, owner, reason, access_tokens);
    insert_audit(conn, audit_key, &event).await?;
    Ok(access_tokens)
}

/// Revokes the access tokens of `selection`, after writing a change row for
/// each that is still live, and, for a client or a family, its refresh
/// tokens. Returns how many access tokens were revoked.
async fn revoke_tokens(
    conn: &mut PgConnection,
    selection: TokenSelection<'_>,
    at: OffsetDateTime,
) -> Result<u64, StoreError> {
    let (changes, access, refresh, key) = match selection {
        TokenSelection::Client(id) => (
            insert_jti_changes!("a.client_id = $1::uuid"),
            "UPDATE access_tokens SET revoked_at = $2 \
             WHERE client_id = $1::uuid AND revoked_at IS NULL",
            Some(
                "UPDATE refresh_tokens SET revoked_at = $2 \
                 WHERE client_id = $1::uuid AND revoked_at IS NULL",
            ),
            id.to_string(),
        ),
        TokenSelection::Family(id) => (
            insert_jti_changes!("a.family_id = $1::uuid"),
            "UPDATE access_tokens SET revoked_at = $2 \
             WHERE family_id = $1::uuid AND revoked_at IS NULL",
            Some(
                "UPDATE refresh_tokens SET revoked_at = $2 \
                 WHERE family_id = $1::uuid AND revoked_at IS NULL",
            ),
            id.to_string(),
        ),
        TokenSelection::User(id) => (
            insert_jti_changes!(
                "a.family_id IN (SELECT family_id FROM refresh_tokens WHERE user_id = $1::uuid \
                 UNION SELECT family_id FROM authorization_codes WHERE user_id = $1::uuid)"
            ),
            "UPDATE access_tokens SET revoked_at = $2 WHERE revoked_at IS NULL AND family_id IN \
             (SELECT family_id FROM refresh_tokens WHERE user_id = $1::uuid \
             UNION SELECT family_id FROM authorization_codes WHERE user_id = $1::uuid)",
            None,
            id.to_string(),
        ),
        TokenSelection::Jti(jti) => (
            insert_jti_changes!("a.jti = $1"),
            "UPDATE access_tokens SET revoked_at = $2 WHERE jti = $1 AND revoked_at IS NULL",
            None,
            jti.to_owned(),
        ),
    };

    sqlx::query(changes)
        .bind(&key)
        .bind(at)
        .bind(CHANGE_CHANNEL)
        .execute(&mut *conn)
        .await?;
    let revoked = sqlx::query(access)
        .bind(&key)
        .bind(at)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if let Some(refresh) = refresh {
        sqlx::query(refresh)
            .bind(&key)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(revoked)
}

/// Appends a change row naming a client, and queues its notification.
async fn insert_client_change(
    conn: &mut PgConnection,
    client_id: ClientId,
    tenant_id: TenantId,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH change AS ( \
             INSERT INTO changes (client_id, tenant_id, at) \
             VALUES ($1, $2, clock_timestamp()) RETURNING id \
         ) \
         SELECT pg_notify($3, id::text) FROM change",
    )
    .bind(client_id.as_uuid())
    .bind(tenant_id.as_uuid())
    .bind(CHANGE_CHANNEL)
    .execute(conn)
    .await?;
    Ok(())
}

async fn client_tenant(
    conn: &mut PgConnection,
    client_id: ClientId,
) -> Result<Option<TenantId>, StoreError> {
    let row = sqlx::query("SELECT tenant_id FROM oauth_clients WHERE id = $1")
        .bind(client_id.as_uuid())
        .fetch_optional(conn)
        .await?;
    let tenant_id: Option<Uuid> = row.map(|row| row.try_get("tenant_id")).transpose()?;
    Ok(tenant_id.map(TenantId::from_uuid))
}

/// Reads a client and locks its row until the transaction ends. The lock is
/// `FOR NO KEY UPDATE`, which lets concurrent inserts of tokens that refer
/// to the client check their foreign key, so that a revocation and a
/// refresh cannot deadlock on each other's rows.
async fn lock_client(
    conn: &mut PgConnection,
    id: ClientId,
) -> Result<Option<ClientRecord>, StoreError> {
    let row = sqlx::query(concat!(
        select_client!(),
        " WHERE c.id = $1 FOR NO KEY UPDATE OF c"
    ))
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(client_from_row).transpose()
}

/// Reads an access token and locks its row until the transaction ends.
async fn lock_access_token(
    conn: &mut PgConnection,
    jti: &str,
) -> Result<Option<AccessTokenRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT jti, client_id, family_id, expires_at, revoked_at, certificate_thumbprint \
             FROM access_tokens \
         WHERE jti = $1 FOR UPDATE",
    )
    .bind(jti)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(access_token_from_row).transpose()
}

fn client_from_row(row: &PgRow) -> Result<ClientRecord, StoreError> {
    let id = ClientId::from_uuid(row.try_get::<Uuid, _>("id")?);
    Ok(ClientRecord {
        id,
        tenant_id: TenantId::from_uuid(row.try_get::<Uuid, _>("tenant_id")?),
        tenant: parse_tenant_name(row.try_get("tenant_name")?)?,
        name: row.try_get("name")?,
        confidential: row.try_get("confidential")?,
        grant_types: parse_grant_types(row.try_get("grant_types")?)?,
        scopes: parse_oauth_scopes(row.try_get("scopes")?, &format!("client {id}"))?,
        redirect_uris: parse_redirect_uris(row.try_get("redirect_uris")?)?,
        auth_method: parse_auth_method(row.try_get("auth_method")?)?,
        jwks: row.try_get("jwks")?,
        tls_client_auth_subject: parse_tls_subject(
            row.try_get("tls_subject_kind")?,
            row.try_get("tls_subject")?,
        )?,
        access_token_ttl_seconds: row.try_get("access_token_ttl_seconds")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        limits: client_limits_from_columns(row.try_get("rate_limits")?, row.try_get("plan")?),
        created_by: row.try_get("created_by")?,
    })
}

fn secret_from_row(row: &PgRow) -> Result<ClientSecretRecord, StoreError> {
    let hash: &[u8] = row.try_get("secret_hash")?;
    Ok(ClientSecretRecord {
        id: row.try_get::<Uuid, _>("id")?,
        client_id: ClientId::from_uuid(row.try_get::<Uuid, _>("client_id")?),
        hash: parse_hash(hash)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(super) fn user_from_row(row: &PgRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: UserId::from_uuid(row.try_get::<Uuid, _>("id")?),
        tenant_id: TenantId::from_uuid(row.try_get::<Uuid, _>("tenant_id")?),
        tenant: parse_tenant_name(row.try_get("tenant_name")?)?,
        email: parse_email(row.try_get("email")?)?,
        password_hash: row.try_get("password_hash")?,
        role: parse_role(row.try_get("role")?)?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

fn code_from_row(row: &PgRow) -> Result<AuthorizationCodeRecord, StoreError> {
    let hash: &[u8] = row.try_get("code_hash")?;
    Ok(AuthorizationCodeRecord {
        hash: parse_hash(hash)?,
        client_id: ClientId::from_uuid(row.try_get::<Uuid, _>("client_id")?),
        user_id: UserId::from_uuid(row.try_get::<Uuid, _>("user_id")?),
        redirect_uri: row.try_get("redirect_uri")?,
        code_challenge: row.try_get("code_challenge")?,
        scopes: parse_oauth_scopes(row.try_get("scopes")?, "authorization code")?,
        resource: row.try_get("resource")?,
        family_id: TokenFamilyId::from_uuid(row.try_get::<Uuid, _>("family_id")?),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

fn refresh_from_row(row: &PgRow) -> Result<RefreshTokenRecord, StoreError> {
    let hash: &[u8] = row.try_get("token_hash")?;
    Ok(RefreshTokenRecord {
        hash: parse_hash(hash)?,
        family_id: TokenFamilyId::from_uuid(row.try_get::<Uuid, _>("family_id")?),
        client_id: ClientId::from_uuid(row.try_get::<Uuid, _>("client_id")?),
        user_id: row
            .try_get::<Option<Uuid>, _>("user_id")?
            .map(UserId::from_uuid),
        scopes: parse_oauth_scopes(row.try_get("scopes")?, "refresh token")?,
        resource: row.try_get("resource")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn access_token_from_row(row: &PgRow) -> Result<AccessTokenRecord, StoreError> {
    Ok(AccessTokenRecord {
        jti: row.try_get("jti")?,
        client_id: ClientId::from_uuid(row.try_get::<Uuid, _>("client_id")?),
        family_id: row
            .try_get::<Option<Uuid>, _>("family_id")?
            .map(TokenFamilyId::from_uuid),
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        certificate_thumbprint: row.try_get("certificate_thumbprint")?,
    })
}
