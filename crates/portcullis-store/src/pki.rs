//! The [`Store`] methods of the internal CA, the client certificates it
//! issues and the partner CAs trusted per tenant.
//!
//! Each change writes its audit record in its transaction. A revocation
//! also writes a change row with the certificate's serial, so that every
//! node rejects the certificate within a poll of the feed. A change to the
//! trusted partner CAs writes a change row with the CA's id, so that every
//! node rebuilds its client certificate trust.

use portcullis_core::ids::TenantId;
use portcullis_core::pki::{
    CaRecord, CertificateRecord, CertificateSerial, RevocationReason, RevokedCertificate,
    TrustedCaRecord,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::audit::AuditContext;
use crate::error::StoreError;
use crate::records::CertificateFilter;

impl Store {
    /// Stores the internal CA as the active one, with its audit record.
    ///
    /// Fails with [`StoreError::Conflict`] when a CA is active already.
    pub async fn insert_ca(&self, ca: &CaRecord, audit: &AuditContext) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert_ca(ca, audit))
    }

    /// Finds the active internal CA.
    pub async fn active_ca(&self) -> Result<Option<CaRecord>, StoreError> {
        dispatch!(self, store => store.active_ca())
    }

    /// Stores an issued client certificate, with its audit record.
    ///
    /// Fails with [`StoreError::NotFound`] when the client or tenant does
    /// not exist and [`StoreError::Conflict`] when the serial or the
    /// thumbprint is taken.
    pub async fn insert_certificate(
        &self,
        cert: &CertificateRecord,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert_certificate(cert, audit))
    }

    /// Finds an issued certificate by serial, revoked ones included.
    pub async fn find_certificate(
        &self,
        serial: &CertificateSerial,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        dispatch!(self, store => store.find_certificate(serial))
    }

    /// Lists the issued certificates that `filter` selects, newest first.
    pub async fn list_certificates(
        &self,
        filter: CertificateFilter,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        dispatch!(self, store => store.list_certificates(filter))
    }

    /// Revokes a certificate at `audit.at`, with its audit record and a
    /// change row naming its serial, and returns it.
    ///
    /// Fails with [`StoreError::NotFound`] and [`StoreError::Revoked`].
    pub async fn revoke_certificate(
        &self,
        serial: &CertificateSerial,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<CertificateRecord, StoreError> {
        dispatch!(self, store => store.revoke_certificate(serial, reason, audit))
    }

    /// Lists the revoked certificates that have not expired at `now`, in
    /// serial order: the entries of the internal CA's CRL.
    pub async fn revoked_certificates(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<RevokedCertificate>, StoreError> {
        dispatch!(self, store => store.revoked_certificates(now))
    }

    /// Trusts a partner CA for a tenant, with its audit record and a change
    /// row.
    ///
    /// Fails with [`StoreError::NotFound`] when the tenant does not exist
    /// and [`StoreError::Conflict`] when the tenant trusts this
    /// certificate already.
    pub async fn insert_trusted_ca(
        &self,
        ca: &TrustedCaRecord,
        audit: &AuditContext,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.insert_trusted_ca(ca, audit))
    }

    /// Replaces how a tenant's trusted partner CA is checked for
    /// revocation: the CRL files read for it, and whether the operator
    /// accepts its certificates without a revocation check. Writes its audit
    /// record and a change row, and returns the updated record.
    ///
    /// Fails with [`StoreError::NotFound`] when the tenant does not trust
    /// a CA with this id.
    pub async fn set_trusted_ca_revocation(
        &self,
        tenant_id: TenantId,
        id: Uuid,
        crl_files: &[String],
        revocation_unchecked: bool,
        audit: &AuditContext,
    ) -> Result<TrustedCaRecord, StoreError> {
        dispatch!(self, store => store.set_trusted_ca_revocation(
            tenant_id, id, crl_files, revocation_unchecked, audit
        ))
    }

    /// Stops trusting a partner CA for a tenant, with its audit record and
    /// a change row, and returns the removed record.
    ///
    /// Fails with [`StoreError::NotFound`] when the tenant does not trust
    /// a CA with this id.
    pub async fn remove_trusted_ca(
        &self,
        tenant_id: TenantId,
        id: Uuid,
        audit: &AuditContext,
    ) -> Result<TrustedCaRecord, StoreError> {
        dispatch!(self, store => store.remove_trusted_ca(tenant_id, id, audit))
    }

    /// Lists the partner CAs trusted for one tenant, or for every tenant
    /// when `tenant_id` is `None`, oldest first.
    pub async fn list_trusted_cas(
        &self,
        tenant_id: Option<TenantId>,
    ) -> Result<Vec<TrustedCaRecord>, StoreError> {
        dispatch!(self, store => store.list_trusted_cas(tenant_id))
    }
}

/// Reads a stored revocation reason. A reason stored as free text, before
/// reasons were limited to RFC 5280's names, reads as `None`, so its CRL
/// entry carries no reason code, as for `unspecified`.
pub(crate) fn revocation_reason(stored: Option<String>) -> Option<RevocationReason> {
    stored.and_then(|text| text.parse().ok())
}
