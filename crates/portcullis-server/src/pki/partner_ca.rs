//! Partner CAs trusted per tenant: adding one with the way its certificates
//! are checked for revocation, changing that later, and removing it.
//!
//! Each trusted CA either names CRL files, which every server reads and
//! reads again when they change, or carries the operator's acknowledgement
//! that it publishes no CRL (`no_crl`), which accepts its certificates
//! without a revocation check. A CA with neither relies on the files in
//! `server.partner_crls`. Every change writes a change row, so running
//! servers rebuild their trust within a poll of the change feed and a
//! rebuild (see [`super::trust`]).

use std::path::Path;

use portcullis_core::crypto::sha256;
use portcullis_core::pki::TrustedCaRecord;
use portcullis_store::{AuditContext, StoreError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;
use webpki::BorrowedCertRevocationList;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::ca::{CaError, CertificateAuthority, certificate_pem, hex};
use super::trust::read_crl_file;
use super::verify::describe_webpki_error;

/// The way a trusted CA's certificates are checked for revocation, as an
/// operator gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSource {
    /// Absolute paths of PEM files with the CA's CRLs.
    pub crl_files: Vec<String>,
    /// The acknowledgement that the CA publishes no CRL.
    pub no_crl: bool,
}

impl CertificateAuthority {
    /// Trusts the partner CA certificate in `pem` for `tenant`'s clients,
    /// with its CRL files or the acknowledgement that it has none.
    ///
    /// The certificate must carry basic constraints with CA:TRUE and be
    /// inside its validity period at `audit.at`. Each CRL file must pass
    /// [`check_crl_files`]. Path validation against the CA happens in
    /// [`super::verify`].
    pub async fn trust_add(
        &self,
        tenant: &str,
        pem: &str,
        revocation: &RevocationSource,
        audit: &AuditContext,
    ) -> Result<TrustedCaRecord, CaError> {
        let tenant_id = self.tenant_id(tenant).await?;
        let parsed = parse_ca_certificate(pem, audit.at)?;
        check_revocation(revocation, &parsed.der)?;
        let record = TrustedCaRecord {
            id: Uuid::now_v7(),
            tenant_id,
            subject: parsed.subject,
            certificate_pem: parsed.pem,
            sha256: parsed.sha256,
            added_at: audit.at,
            crl_files: revocation.crl_files.clone(),
            revocation_unchecked: revocation.no_crl,
        };
        self.store
            .insert_trusted_ca(&record, audit)
            .await
            .map_err(|error| match error {
                StoreError::Conflict(message) => CaError::Conflict(message),
                StoreError::NotFound(_) => CaError::TenantNotFound(tenant.to_owned()),
                other => CaError::Store(other),
            })?;
        Ok(record)
    }

    /// Replaces the CRL files of a CA that `tenant` trusts, or its
    /// acknowledgement that it has none. `reference` is the record's id or
    /// the certificate's SHA-256 fingerprint.
    pub async fn trust_set_revocation(
        &self,
        tenant: &str,
        reference: &str,
        revocation: &RevocationSource,
        audit: &AuditContext,
    ) -> Result<TrustedCaRecord, CaError> {
        let found = self.find_trusted(tenant, reference).await?;
        let der = CertificateDer::from_pem_slice(found.certificate_pem.as_bytes())
            .map_err(|error| CaError::InvalidCertificate(format!("stored PEM: {error}")))?;
        check_revocation(revocation, &der)?;
        self.store
            .set_trusted_ca_revocation(
                found.tenant_id,
                found.id,
                &revocation.crl_files,
                revocation.no_crl,
                audit,
            )
            .await
            .map_err(|error| not_found_or_store(error, reference))
    }

    /// Stops trusting a CA for `tenant`. `reference` is the record's id or
    /// the certificate's SHA-256 fingerprint. Running servers reject new
    /// handshakes and open connections whose chain ends at it once they
    /// rebuild their trust.
    pub async fn trust_remove(
        &self,
        tenant: &str,
        reference: &str,
        audit: &AuditContext,
    ) -> Result<TrustedCaRecord, CaError> {
        let found = self.find_trusted(tenant, reference).await?;
        self.store
            .remove_trusted_ca(found.tenant_id, found.id, audit)
            .await
            .map_err(|error| not_found_or_store(error, reference))
    }

    /// Lists the partner CAs trusted for `tenant`.
    pub async fn trusted(&self, tenant: &str) -> Result<Vec<TrustedCaRecord>, CaError> {
        let tenant_id = self.tenant_id(tenant).await?;
        self.store
            .list_trusted_cas(Some(tenant_id))
            .await
            .map_err(CaError::Store)
    }

    /// Finds the CA that `tenant` trusts by record id or by the SHA-256
    /// fingerprint of its certificate (hex, colons allowed).
    async fn find_trusted(
        &self,
        tenant: &str,
        reference: &str,
    ) -> Result<TrustedCaRecord, CaError> {
        let reference = reference.trim();
        let id = Uuid::parse_str(reference).ok();
        let fingerprint: String = reference
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        let is_fingerprint =
            fingerprint.len() == 64 && fingerprint.chars().all(|c| c.is_ascii_hexdigit());
        if id.is_none() && !is_fingerprint {
            return Err(CaError::TrustedCaNotFound(format!(
                "{reference:?}: expected the id or the SHA-256 fingerprint (64 hex digits) \
                 that `ca trust list` prints"
            )));
        }
        self.trusted(tenant)
            .await?
            .into_iter()
            .find(|ca| Some(ca.id) == id || (is_fingerprint && ca.sha256 == fingerprint))
            .ok_or_else(|| CaError::TrustedCaNotFound(reference.to_owned()))
    }
}

fn not_found_or_store(error: StoreError, reference: &str) -> CaError {
    match error {
        // Removed by another operator between the lookup and the change.
        StoreError::NotFound(_) => CaError::TrustedCaNotFound(reference.to_owned()),
        other => CaError::Store(other),
    }
}

/// Checks that `revocation` names CRL files or the acknowledgement, not
/// both, and checks each file against the CA certificate `ca_der`.
fn check_revocation(
    revocation: &RevocationSource,
    ca_der: &CertificateDer<'_>,
) -> Result<(), CaError> {
    if revocation.no_crl && !revocation.crl_files.is_empty() {
        return Err(CaError::ConflictingRevocation);
    }
    check_crl_files(&revocation.crl_files, ca_der)
}

/// Checks the CRL files of a CA before they are stored: each path is
/// absolute, because every server reads it from its own working
/// directory; each file contains PEM CRLs that webpki can use; and at least
/// one of them is issued and signed by the CA. A file may also hold CRLs
/// of the CA's intermediates, which sign their own.
pub fn check_crl_files(paths: &[String], ca_der: &CertificateDer<'_>) -> Result<(), CaError> {
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(ca_der)
        .map_err(|error| CaError::InvalidCertificate(format!("cannot parse: {error}")))?;
    for path in paths {
        if !Path::new(path).is_absolute() {
            return Err(CaError::InvalidCrlFile(format!(
                "{path} is not an absolute path; every server reads the file, so give its full \
                 path"
            )));
        }
        let crls = read_crl_file(Path::new(path))
            .map_err(|message| CaError::InvalidCrlFile(format!("{path}: {message}")))?;
        let mut signed_by_ca = false;
        for (index, der) in crls.iter().enumerate() {
            BorrowedCertRevocationList::from_der(der).map_err(|error| {
                CaError::InvalidCrlFile(format!(
                    "{path}: CRL {index} cannot be used: {}",
                    describe_webpki_error(&error)
                ))
            })?;
            let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|error| {
                CaError::InvalidCrlFile(format!("{path}: CRL {index} cannot be parsed: {error}"))
            })?;
            signed_by_ca |= crl.issuer().as_raw() == ca.subject().as_raw()
                && crl.verify_signature(ca.public_key()).is_ok();
        }
        if !signed_by_ca {
            return Err(CaError::InvalidCrlFile(format!(
                "{path} contains no CRL issued and signed by {}; give the CRL that this \
                 CA publishes",
                ca.subject()
            )));
        }
    }
    Ok(())
}

/// Rejects a CA certificate whose name constraints contain directoryName
/// subtrees. rustls-webpki 0.103 does not match them: it treats a permitted
/// directoryName subtree as matching no subject and an excluded one as
/// matching every subject, which RFC 5280 §4.2.1.10 allows for a name form
/// it does not process. Every leaf below such a CA would be rejected as
/// `name_constraint_violated`, so the CA is refused when it is added.
fn check_name_constraints(
    certificate: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<(), CaError> {
    for extension in certificate.extensions() {
        let ParsedExtension::NameConstraints(constraints) = extension.parsed_extension() else {
            continue;
        };
        let subtrees = constraints
            .permitted_subtrees
            .iter()
            .chain(constraints.excluded_subtrees.iter())
            .flatten();
        for subtree in subtrees {
            if matches!(subtree.base, GeneralName::DirectoryName(_)) {
                return Err(CaError::UnsupportedNameConstraint("directoryName"));
            }
        }
    }
    Ok(())
}

/// A partner CA certificate as parsed for [`CertificateAuthority::trust_add`].
#[derive(Debug)]
pub(super) struct ParsedCaCertificate {
    pub(super) subject: String,
    pub(super) sha256: String,
    pub(super) pem: String,
    pub(super) der: CertificateDer<'static>,
}

/// Parses the one CA certificate of a PEM file and checks that it is a CA
/// and valid at `now`: an expired or not yet valid anchor would only
/// reject every certificate below it later, with a less clear reason.
pub(super) fn parse_ca_certificate(
    pem_text: &str,
    now: OffsetDateTime,
) -> Result<ParsedCaCertificate, CaError> {
    let mut certificates = CertificateDer::pem_slice_iter(pem_text.as_bytes());
    let der = match (certificates.next(), certificates.next()) {
        (Some(Ok(der)), None) => der,
        (None, _) => {
            return Err(CaError::InvalidCertificate(
                "expected one PEM CERTIFICATE block, found none".to_owned(),
            ));
        }
        (Some(Err(error)), _) => {
            return Err(CaError::InvalidCertificate(format!(
                "cannot read PEM: {error}"
            )));
        }
        (Some(Ok(_)), Some(_)) => {
            return Err(CaError::InvalidCertificate(
                "expected one certificate per file, found several".to_owned(),
            ));
        }
    };
    let (_, certificate) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|error| CaError::InvalidCertificate(format!("cannot parse: {error}")))?;
    if !certificate.is_ca() {
        return Err(CaError::InvalidCertificate(
            "basic constraints do not say CA:TRUE, so it cannot issue client certificates"
                .to_owned(),
        ));
    }
    check_name_constraints(&certificate)?;
    let validity = certificate.validity();
    let not_before = validity.not_before.to_datetime();
    let not_after = validity.not_after.to_datetime();
    if now > not_after {
        return Err(CaError::InvalidCertificate(format!(
            "it expired at {}; ask the partner for its current CA certificate",
            not_after.format(&Rfc3339).unwrap_or_default()
        )));
    }
    if now < not_before {
        return Err(CaError::InvalidCertificate(format!(
            "it is not valid before {}; add it once it is valid",
            not_before.format(&Rfc3339).unwrap_or_default()
        )));
    }
    Ok(ParsedCaCertificate {
        subject: certificate.subject().to_string(),
        sha256: hex(&sha256(&der)),
        pem: certificate_pem(&der),
        der,
    })
}

#[cfg(test)]
mod tests;
