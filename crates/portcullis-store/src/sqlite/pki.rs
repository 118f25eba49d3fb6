//! The internal CA, client certificates and trusted partner CAs on SQLite.

use portcullis_core::ids::{ClientId, TenantId};
use portcullis_core::pki::{
    CaRecord, CertificateRecord, CertificateSerial, RevokedCertificate, TrustedCaRecord,
};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{SqliteStore, insert_audit, optional_time_column, time_column, to_millis, uuid_column};
use crate::audit::{AuditContext, AuditEvent};
use crate::error::{StoreError, is_foreign_key_violation, is_unique_violation};
use crate::pki::revocation_reason;
use crate::records::CertificateFilter;

/// The columns of a [`CertificateRecord`].
const SELECT_CERTIFICATE: &str = "SELECT serial, client_id, tenant_id, subject, \
     subject_alt_names, not_before, not_after, sha256, certificate_pem, created_at, revoked_at, \
     revoked_reason FROM certificates";

impl SqliteStore {
    pub(crate) async fn insert_ca(
        &self,
        ca: &CaRecord,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO certificate_authorities \
             (id, state, certificate_pem, sealed_private_key, created_at) \
             VALUES (?1, 'active', ?2, ?3, ?4)",
        )
        .bind(ca.id.to_string())
        .bind(&ca.certificate_pem)
        .bind(ca.sealed_private_key.as_slice())
        .bind(to_millis(ca.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(
                    "the internal CA already exists".to_owned(),
                ));
            }
            Err(error) => return Err(error.into()),
        }
        insert_audit(&mut tx, &self.audit_key, &AuditEvent::ca_created(audit, ca)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn active_ca(&self) -> Result<Option<CaRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, certificate_pem, sealed_private_key, created_at \
             FROM certificate_authorities WHERE state = 'active'",
        )
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(CaRecord {
                id: uuid_column(&row, "id")?,
                certificate_pem: row.try_get("certificate_pem")?,
                sealed_private_key: row.try_get("sealed_private_key")?,
                created_at: time_column(&row, "created_at")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn insert_certificate(
        &self,
        cert: &CertificateRecord,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO certificates (serial, client_id, tenant_id, subject, \
             subject_alt_names, not_before, not_after, sha256, certificate_pem, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(cert.serial.as_str())
        .bind(cert.client_id.to_string())
        .bind(cert.tenant_id.to_string())
        .bind(&cert.subject)
        .bind(&cert.subject_alt_names)
        .bind(to_millis(cert.not_before))
        .bind(to_millis(cert.not_after))
        .bind(&cert.sha256)
        .bind(&cert.certificate_pem)
        .bind(to_millis(cert.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "a certificate with serial {} or the same thumbprint already exists",
                    cert.serial
                )));
            }
            Err(error) if is_foreign_key_violation(&error) => {
                return Err(StoreError::NotFound("client"));
            }
            Err(error) => return Err(error.into()),
        }
        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::certificate_issued(audit, cert),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn find_certificate(
        &self,
        serial: &CertificateSerial,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_CERTIFICATE} WHERE serial = ?1"
        )))
        .bind(serial.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(certificate_from_row).transpose()
    }

    pub(crate) async fn list_certificates(
        &self,
        filter: CertificateFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let (condition, id) = match filter {
            CertificateFilter::All => ("", None),
            CertificateFilter::Client(id) => (" WHERE client_id = ?1", Some(id.to_string())),
            CertificateFilter::Tenant(id) => (" WHERE tenant_id = ?1", Some(id.to_string())),
        };
        // The condition is one of the literals above; the id goes in a bind.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_CERTIFICATE}{condition} ORDER BY created_at DESC, serial"
        )))
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(certificate_from_row).collect()
    }

    pub(crate) async fn revoke_certificate(
        &self,
        serial: &CertificateSerial,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<CertificateRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let cert = select_certificate(&mut tx, serial)
            .await?
            .ok_or(StoreError::NotFound("certificate"))?;
        if cert.revoked_at.is_some() {
            return Err(StoreError::Revoked("certificate"));
        }
        sqlx::query(
            "UPDATE certificates SET revoked_at = ?1, revoked_reason = ?2 WHERE serial = ?3",
        )
        .bind(to_millis(audit.at))
        .bind(reason)
        .bind(serial.as_str())
        .execute(&mut *tx)
        .await?;
        let revoked = select_certificate(&mut tx, serial)
            .await?
            .ok_or(StoreError::NotFound("certificate"))?;

        insert_audit(
            &mut tx,
            &self.audit_key,
            &AuditEvent::certificate_revoked(audit, &revoked, reason),
        )
        .await?;
        sqlx::query(concat!(
            "INSERT INTO changes (tenant_id, client_id, cert_serial, at) VALUES (?1, ?2, ?3, ",
            now_millis!(),
            ")"
        ))
        .bind(revoked.tenant_id.to_string())
        .bind(revoked.client_id.to_string())
        .bind(serial.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    pub(crate) async fn revoked_certificates(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<RevokedCertificate>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial, revoked_at, revoked_reason, not_after FROM certificates \
             WHERE revoked_at IS NOT NULL AND not_after >= ?1 ORDER BY serial",
        )
        .bind(to_millis(now))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RevokedCertificate {
                    serial: parse_serial(row.try_get("serial")?)?,
                    revoked_at: time_column(row, "revoked_at")?,
                    not_after: time_column(row, "not_after")?,
                    reason: revocation_reason(row.try_get("revoked_reason")?),
                })
            })
            .collect()
    }

    pub(crate) async fn insert_trusted_ca(
        &self,
        ca: &TrustedCaRecord,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO trusted_cas (id, tenant_id, subject, certificate_pem, sha256, added_at, \
             crl_files, revocation_unchecked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(ca.id.to_string())
        .bind(ca.tenant_id.to_string())
        .bind(&ca.subject)
        .bind(&ca.certificate_pem)
        .bind(&ca.sha256)
        .bind(to_millis(ca.added_at))
        .bind(ca.crl_files.join("\n"))
        .bind(ca.revocation_unchecked)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "the tenant already trusts the CA certificate with SHA-256 {}",
                    ca.sha256
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
            &AuditEvent::trusted_ca_added(audit, ca),
        )
        .await?;
        insert_trust_change(&mut tx, ca).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn set_trusted_ca_revocation(
        &self,
        tenant_id: TenantId,
        id: Uuid,
        crl_files: &[String],
        revocation_unchecked: bool,
        audit: &AuditContext,
    ) -> Result<TrustedCaRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE trusted_cas SET crl_files = ?1, revocation_unchecked = ?2 \
             WHERE id = ?3 AND tenant_id = ?4 RETURNING {TRUSTED_CA_COLUMNS}"
        )))
        .bind(crl_files.join("\n"))
        .bind(revocation_unchecked)
        .bind(id.to_string())
        .bind(tenant_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        self.finish_trusted_ca_change(
            tx,
            updated.as_ref(),
            audit,
            AuditEvent::trusted_ca_revocation_changed,
        )
        .await
    }

    pub(crate) async fn remove_trusted_ca(
        &self,
        tenant_id: TenantId,
        id: Uuid,
        audit: &AuditContext,
    ) -> Result<TrustedCaRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM trusted_cas WHERE id = ?1 AND tenant_id = ?2 \
             RETURNING {TRUSTED_CA_COLUMNS}"
        )))
        .bind(id.to_string())
        .bind(tenant_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        self.finish_trusted_ca_change(tx, removed.as_ref(), audit, AuditEvent::trusted_ca_removed)
            .await
    }

    /// Ends a change to the trusted CA in `row`, the row that the change
    /// returned: writes its audit record and change row, and commits. No
    /// row means the tenant trusts no such CA.
    async fn finish_trusted_ca_change(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        row: Option<&SqliteRow>,
        audit: &AuditContext,
        event: fn(&AuditContext, &TrustedCaRecord) -> AuditEvent,
    ) -> Result<TrustedCaRecord, StoreError> {
        let ca = row
            .map(trusted_ca_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("trusted CA"))?;
        insert_audit(&mut tx, &self.audit_key, &event(audit, &ca)).await?;
        insert_trust_change(&mut tx, &ca).await?;
        tx.commit().await?;
        Ok(ca)
    }

    pub(crate) async fn list_trusted_cas(
        &self,
        tenant_id: Option<TenantId>,
    ) -> Result<Vec<TrustedCaRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRUSTED_CA_COLUMNS} FROM trusted_cas \
             WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY added_at, id"
        )))
        .bind(tenant_id.map(|id| id.to_string()))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(trusted_ca_from_row).collect()
    }
}

/// The columns of a [`TrustedCaRecord`].
const TRUSTED_CA_COLUMNS: &str =
    "id, tenant_id, subject, certificate_pem, sha256, added_at, crl_files, revocation_unchecked";

fn trusted_ca_from_row(row: &SqliteRow) -> Result<TrustedCaRecord, StoreError> {
    let crl_files: String = row.try_get("crl_files")?;
    Ok(TrustedCaRecord {
        id: uuid_column(row, "id")?,
        tenant_id: TenantId::from_uuid(uuid_column(row, "tenant_id")?),
        subject: row.try_get("subject")?,
        certificate_pem: row.try_get("certificate_pem")?,
        sha256: row.try_get("sha256")?,
        added_at: time_column(row, "added_at")?,
        crl_files: crl_files.lines().map(ToOwned::to_owned).collect(),
        revocation_unchecked: row.try_get("revocation_unchecked")?,
    })
}

/// Writes the change row that makes every server rebuild its client
/// certificate trust after `ca` was added, changed or removed.
async fn insert_trust_change(
    conn: &mut SqliteConnection,
    ca: &TrustedCaRecord,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO changes (tenant_id, trusted_ca_id, at) VALUES (?1, ?2, ",
        now_millis!(),
        ")"
    ))
    .bind(ca.tenant_id.to_string())
    .bind(ca.id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

async fn select_certificate(
    conn: &mut SqliteConnection,
    serial: &CertificateSerial,
) -> Result<Option<CertificateRecord>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{SELECT_CERTIFICATE} WHERE serial = ?1"
    )))
    .bind(serial.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(certificate_from_row).transpose()
}

fn certificate_from_row(row: &SqliteRow) -> Result<CertificateRecord, StoreError> {
    Ok(CertificateRecord {
        serial: parse_serial(row.try_get("serial")?)?,
        client_id: ClientId::from_uuid(uuid_column(row, "client_id")?),
        tenant_id: TenantId::from_uuid(uuid_column(row, "tenant_id")?),
        subject: row.try_get("subject")?,
        subject_alt_names: row.try_get("subject_alt_names")?,
        not_before: time_column(row, "not_before")?,
        not_after: time_column(row, "not_after")?,
        sha256: row.try_get("sha256")?,
        certificate_pem: row.try_get("certificate_pem")?,
        created_at: time_column(row, "created_at")?,
        revoked_at: optional_time_column(row, "revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
    })
}

fn parse_serial(text: &str) -> Result<CertificateSerial, StoreError> {
    text.parse()
        .map_err(|error| StoreError::Corrupt(format!("certificate serial: {error}")))
}
