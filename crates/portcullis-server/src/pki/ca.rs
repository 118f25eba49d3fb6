//! The internal certificate authority: it signs partners' CSRs as client
//! certificates, issues key pairs for testing, revokes certificates and
//! publishes a CRL.
//!
//! The CA key is an ECDSA P-256 key, stored sealed with the master key's
//! [`CA_KEY_PURPOSE`] sealing key and opened only to sign. An issued
//! certificate names one OAuth client: subject CN is the client id and the
//! only SAN is the URI [`client_uri`]. Whatever a CSR requests beyond its
//! public key (subject, SANs, key usage, basic constraints) is ignored. The
//! CA signs only for a `tls_client_auth` client registered with one of those
//! two names, so every certificate it issues authenticates its client.

use std::sync::Mutex;

use portcullis_core::crypto::{SealingKey, fill_random, sha256};
use portcullis_core::ids::ClientId;
use portcullis_core::name::TenantName;
use portcullis_core::oauth::tls_subject::DistinguishedName as SubjectName;
use portcullis_core::oauth::{ClientAuthMethod, ClientRecord, TlsClientAuthSubject};
use portcullis_core::pki::{
    CaRecord, CertificateRecord, CertificateSerial, InvalidRevocationReason, RevocationReason,
    RevokedCertificate,
};
use portcullis_store::{AuditContext, CertificateFilter, Store, StoreError};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// The sealing purpose of the internal CA's private key. It selects the
/// derived sealing key and is bound into the sealed key's associated data.
pub const CA_KEY_PURPOSE: &str = "ca-key";

/// The CA certificate's subject common name. It names no tenant because
/// one CA serves every tenant.
pub const CA_COMMON_NAME: &str = "Portcullis client CA";

/// The validity of the CA certificate: ten years, because replacing the CA
/// means every partner enrolls again.
pub const CA_VALIDITY: Duration = Duration::days(3650);

/// The validity of a client certificate when the request names none.
pub const DEFAULT_CERTIFICATE_DAYS: u32 = 90;

/// The maximum validity of a client certificate in days: the CA/Browser
/// Forum limit for TLS server certificates issued since September 2020.
pub const MAX_CERTIFICATE_DAYS: u32 = 397;

/// The offset of a certificate's `not_before` before its issue time, so a
/// partner whose clock is a little behind accepts it at once. The validity
/// period is counted from `not_before`, so it never exceeds the request.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);

/// The maximum age of a cached CRL. After it, the CRL is signed again even
/// without a new revocation.
pub const CRL_REFRESH: Duration = Duration::days(1);

/// The distance from a CRL's `thisUpdate` to its `nextUpdate`: two refresh
/// periods, so a relying party that caches the CRL never holds one past its
/// `nextUpdate` while the server runs.
pub const CRL_NEXT_UPDATE: Duration = Duration::days(2);

/// The shortest RSA modulus accepted in a CSR, in bits.
const MIN_RSA_BITS: usize = 2048;

/// The start of the SAN URIs that the internal CA writes. Only the
/// internal CA may vouch for a URI in this namespace.
pub const CLIENT_URI_PREFIX: &str = "urn:portcullis:client:";

/// Returns the SAN URI that names a client in its certificates.
pub fn client_uri(client_id: ClientId) -> String {
    format!("{CLIENT_URI_PREFIX}{client_id}")
}

/// Returns whether `uri` starts with [`CLIENT_URI_PREFIX`], compared without
/// regard to ASCII case. RFC 8141 §3.1 makes the `urn` scheme and the
/// namespace identifier case-insensitive. The rest of the prefix is compared
/// the same way, so every spelling of the namespace is reserved.
pub fn in_client_uri_namespace(uri: &str) -> bool {
    uri.get(..CLIENT_URI_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(CLIENT_URI_PREFIX))
}

/// Returns whether `registered` is the subject DN `CN=<client_id>` that the
/// CA writes into that client's certificates, compared as parsed names
/// (RFC 4514), so that `cn=<client_id>` matches too.
pub fn is_client_subject_dn(registered: &TlsClientAuthSubject, client_id: ClientId) -> bool {
    matches!(registered, TlsClientAuthSubject::SubjectDn(_))
        && SubjectName::parse(&format!("CN={client_id}"))
            .is_ok_and(|written| registered.matches_subject(&written))
}

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// No CA exists yet.
    #[error("the internal CA is not initialized; run `portcullis ca init` first")]
    NotInitialized,
    /// `init` ran on a store that has a CA.
    #[error("the internal CA already exists; it is created only once")]
    AlreadyInitialized,
    /// The CSR could not be parsed, its signature is invalid or its key is
    /// not accepted.
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),
    /// The requested validity is out of range.
    #[error("invalid validity of {0} days: expected 1 to {MAX_CERTIFICATE_DAYS}")]
    InvalidDays(u32),
    /// A CA certificate to trust could not be parsed, is no CA, or is
    /// outside its validity period.
    #[error("invalid CA certificate: {0}")]
    InvalidCertificate(String),
    /// A CA certificate to trust has name constraints of a kind that path
    /// validation does not support.
    #[error(
        "unsupported name constraint in the CA certificate: {0} subtrees are not supported by \
         the path validation (rustls-webpki 0.103), which would reject every certificate \
         below this CA that has a subject name; ask the partner for a CA certificate without \
         them, such as one constrained by dNSName or iPAddress subtrees only"
    )]
    UnsupportedNameConstraint(&'static str),
    /// A CRL file given for a trusted CA is not an absolute path, cannot be
    /// read, or contains no CRL that the CA signed.
    #[error("invalid CRL file: {0}")]
    InvalidCrlFile(String),
    /// Both CRL files and the acknowledgement that the CA has none were
    /// given.
    #[error("give CRL files or acknowledge that the CA publishes none (no_crl), not both")]
    ConflictingRevocation,
    /// The tenant trusts no CA with this id or fingerprint.
    #[error("the tenant trusts no CA {0}")]
    TrustedCaNotFound(String),
    /// The revocation reason is not one of RFC 5280's that the CA offers.
    #[error(transparent)]
    InvalidReason(#[from] InvalidRevocationReason),
    /// The client does not exist.
    #[error("client {0} not found")]
    ClientNotFound(ClientId),
    /// The client is revoked, so it gets no new certificate.
    #[error("client {0} is revoked")]
    ClientRevoked(ClientId),
    /// The client does not authenticate with `tls_client_auth`, so no
    /// certificate of the CA would authenticate it.
    #[error(
        "client {client_id} authenticates with {method}, not tls_client_auth, so no certificate \
         of the internal CA can authenticate it; register a client with the token endpoint auth \
         method tls_client_auth and no certificate subject, which maps it to the SAN URI \
         {CLIENT_URI_PREFIX}<client id> that the CA writes"
    )]
    NotTlsClientAuth {
        /// The client.
        client_id: ClientId,
        /// The client's token endpoint auth method.
        method: ClientAuthMethod,
    },
    /// The client's registered certificate subject is neither of the names
    /// that the CA writes into the client's certificates.
    #[error(
        "client {client_id} is registered with {registered}, which no certificate of the \
         internal CA carries; it needs tls_client_auth_san_uri {needed:?}, so register a new \
         tls_client_auth client with no certificate subject and issue its certificate"
    )]
    MappingNotIssuable {
        /// The client.
        client_id: ClientId,
        /// The registered subject as `member "value"`.
        registered: String,
        /// The SAN URI that the CA writes for the client.
        needed: String,
    },
    /// The tenant does not exist or its name is invalid.
    #[error("tenant {0:?} not found")]
    TenantNotFound(String),
    /// No certificate has this serial.
    #[error("certificate {0} not found")]
    CertificateNotFound(CertificateSerial),
    /// The certificate was revoked earlier.
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(CertificateSerial),
    /// The tenant trusts this CA certificate already.
    #[error("{0}")]
    Conflict(String),
    /// Generating, signing, sealing or opening a key failed.
    #[error("CA key operation failed: {0}")]
    Crypto(String),
    /// The store failed.
    #[error("store operation failed")]
    Store(#[source] StoreError),
}

impl CaError {
    /// Returns a stable snake_case code for problem responses and scripts.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotInitialized => "ca_not_initialized",
            Self::AlreadyInitialized => "ca_exists",
            Self::InvalidCsr(_) => "invalid_csr",
            Self::InvalidDays(_) => "invalid_days",
            Self::InvalidCertificate(_) => "invalid_certificate",
            Self::UnsupportedNameConstraint(_) => "unsupported_name_constraint",
            Self::InvalidCrlFile(_) => "invalid_crl_file",
            Self::ConflictingRevocation => "conflicting_revocation",
            Self::TrustedCaNotFound(_) => "trusted_ca_not_found",
            Self::InvalidReason(_) => "invalid_reason",
            Self::ClientNotFound(_) => "client_not_found",
            Self::ClientRevoked(_) => "client_revoked",
            Self::NotTlsClientAuth { .. } => "client_not_tls_client_auth",
            Self::MappingNotIssuable { .. } => "client_mapping_not_issuable",
            Self::TenantNotFound(_) => "tenant_not_found",
            Self::CertificateNotFound(_) => "certificate_not_found",
            Self::AlreadyRevoked(_) => "certificate_revoked",
            Self::Conflict(_) => "trusted_ca_exists",
            Self::Crypto(_) => "ca_key_failed",
            Self::Store(_) => "store_unavailable",
        }
    }
}

fn crypto(error: impl std::fmt::Display) -> CaError {
    CaError::Crypto(error.to_string())
}

/// A certificate issued with a key pair generated here, for tests.
pub struct TestCertificate {
    /// The issued certificate.
    pub record: CertificateRecord,
    /// The certificate's private key, PKCS#8 PEM. It is not stored.
    pub key_pem: SecretString,
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// The last CRL signed, with the serials it lists.
struct CachedCrl {
    pem: String,
    this_update: OffsetDateTime,
    serials: Vec<CertificateSerial>,
}

/// The internal CA over one store.
pub struct CertificateAuthority {
    pub(super) store: Store,
    sealing: SealingKey,
    crl: Mutex<Option<CachedCrl>>,
}

impl CertificateAuthority {
    /// Creates the CA operations on `store`. `sealing` must be the master
    /// key's [`CA_KEY_PURPOSE`] sealing key.
    pub fn new(store: Store, sealing: SealingKey) -> Self {
        Self {
            store,
            sealing,
            crl: Mutex::new(None),
        }
    }

    /// Creates the internal CA: an ECDSA P-256 key, sealed, and a
    /// self-signed certificate valid for [`CA_VALIDITY`].
    ///
    /// Fails with [`CaError::AlreadyInitialized`] when a CA exists.
    pub async fn init_ca(&self, audit: &AuditContext) -> Result<CaRecord, CaError> {
        if self
            .store
            .active_ca()
            .await
            .map_err(CaError::Store)?
            .is_some()
        {
            return Err(CaError::AlreadyInitialized);
        }
        let id = uuid::Uuid::now_v7();
        let generated = generate_ca(audit.at)?;
        let sealed_private_key = self
            .sealing
            .seal(&generated.key_pkcs8, id.as_bytes())
            .map_err(crypto)?;
        let record = CaRecord {
            id,
            certificate_pem: generated.certificate_pem,
            sealed_private_key,
            created_at: audit.at,
        };
        match self.store.insert_ca(&record, audit).await {
            Ok(()) => Ok(record),
            // Another process created one between the check and the insert.
            Err(StoreError::Conflict(_)) => Err(CaError::AlreadyInitialized),
            Err(error) => Err(CaError::Store(error)),
        }
    }

    /// Returns the CA certificate, PEM.
    pub async fn ca_pem(&self) -> Result<String, CaError> {
        Ok(self.active_ca().await?.certificate_pem)
    }

    /// Signs a CSR as a client certificate of `client_id`, valid for
    /// `days` (default [`DEFAULT_CERTIFICATE_DAYS`]), and stores it.
    ///
    /// Only the CSR's public key is used, once its self-signature checks
    /// out: see [`issue_certificate`] for what the certificate contains.
    pub async fn sign_csr(
        &self,
        client_id: ClientId,
        csr_pem: &str,
        days: Option<u32>,
        audit: &AuditContext,
    ) -> Result<CertificateRecord, CaError> {
        let days = check_days(days)?;
        let public_key = parse_csr(csr_pem)?;
        self.issue(client_id, &public_key, days, audit).await
    }

    /// Generates a P-256 key pair, issues a certificate for it as
    /// [`Self::sign_csr`] would, and returns both. The private key is not
    /// stored, so this is for tests and trials, not for partners.
    pub async fn issue_for_testing(
        &self,
        client_id: ClientId,
        days: Option<u32>,
        audit: &AuditContext,
    ) -> Result<TestCertificate, CaError> {
        let days = check_days(days)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let record = self.issue(client_id, &key, days, audit).await?;
        Ok(TestCertificate {
            record,
            key_pem: SecretString::from(key.serialize_pem()),
        })
    }

    /// Revokes a certificate for an RFC 5280 §5.3.1 reason, such as
    /// `keyCompromise`, which the CRL entry carries. Dropping the cached CRL
    /// makes the next request sign a new one.
    pub async fn revoke(
        &self,
        serial: &CertificateSerial,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<CertificateRecord, CaError> {
        let reason: RevocationReason = reason.parse()?;
        let revoked = self
            .store
            .revoke_certificate(serial, reason.as_str(), audit)
            .await
            .map_err(|error| match error {
                StoreError::NotFound(_) => CaError::CertificateNotFound(serial.clone()),
                StoreError::Revoked(_) => CaError::AlreadyRevoked(serial.clone()),
                other => CaError::Store(other),
            })?;
        if let Ok(mut cached) = self.crl.lock() {
            *cached = None;
        }
        Ok(revoked)
    }

    /// Returns the CA's CRL, PEM, listing every revoked certificate that
    /// has not expired at `now`.
    ///
    /// The CRL is signed again when the list of revoked serials differs
    /// from the cached CRL's (a revocation on this or another node) or
    /// the cached one is older than [`CRL_REFRESH`].
    pub async fn crl(&self, now: OffsetDateTime) -> Result<String, CaError> {
        let revoked = self
            .store
            .revoked_certificates(now)
            .await
            .map_err(CaError::Store)?;
        let serials: Vec<CertificateSerial> =
            revoked.iter().map(|entry| entry.serial.clone()).collect();
        if let Ok(cached) = self.crl.lock()
            && let Some(cached) = cached.as_ref()
            && cached.serials == serials
            && now - cached.this_update < CRL_REFRESH
        {
            return Ok(cached.pem.clone());
        }

        let issuer = self.open_issuer().await?;
        let pem = sign_crl(&issuer, &revoked, now)?;
        if let Ok(mut cached) = self.crl.lock() {
            *cached = Some(CachedCrl {
                pem: pem.clone(),
                this_update: now,
                serials,
            });
        }
        Ok(pem)
    }

    /// Lists issued certificates, newest first.
    pub async fn list(&self, filter: CertificateFilter) -> Result<Vec<CertificateRecord>, CaError> {
        self.store
            .list_certificates(filter)
            .await
            .map_err(CaError::Store)
    }

    /// Finds a tenant's id by name, for filters.
    pub async fn tenant_id(&self, tenant: &str) -> Result<portcullis_core::ids::TenantId, CaError> {
        let name =
            TenantName::parse(tenant).map_err(|_| CaError::TenantNotFound(tenant.to_owned()))?;
        let found = self
            .store
            .find_tenant(&name)
            .await
            .map_err(CaError::Store)?;
        found
            .map(|tenant| tenant.id)
            .ok_or_else(|| CaError::TenantNotFound(tenant.to_owned()))
    }

    async fn active_ca(&self) -> Result<CaRecord, CaError> {
        self.store
            .active_ca()
            .await
            .map_err(CaError::Store)?
            .ok_or(CaError::NotInitialized)
    }

    /// Opens the sealed CA key and rebuilds the issuer from the stored CA
    /// certificate.
    async fn open_issuer(&self) -> Result<Issuer<'static, KeyPair>, CaError> {
        let ca = self.active_ca().await?;
        open_issuer(&ca, &self.sealing)
    }

    async fn issue(
        &self,
        client_id: ClientId,
        public_key: &impl rcgen::PublicKeyData,
        days: u32,
        audit: &AuditContext,
    ) -> Result<CertificateRecord, CaError> {
        let client = self
            .store
            .find_client(client_id)
            .await
            .map_err(CaError::Store)?
            .ok_or(CaError::ClientNotFound(client_id))?;
        if client.revoked_at.is_some() {
            return Err(CaError::ClientRevoked(client_id));
        }
        check_issuable(&client)?;
        let issuer = self.open_issuer().await?;
        let issued = issue_certificate(&issuer, client_id, public_key, days, audit.at)?;
        let record = CertificateRecord {
            serial: issued.serial,
            client_id,
            tenant_id: client.tenant_id,
            subject: format!("CN={client_id}"),
            subject_alt_names: format!("URI:{}", client_uri(client_id)),
            not_before: issued.not_before,
            not_after: issued.not_after,
            sha256: issued.sha256,
            certificate_pem: issued.pem,
            created_at: audit.at,
            revoked_at: None,
            revoked_reason: None,
        };
        self.store
            .insert_certificate(&record, audit)
            .await
            .map_err(|error| match error {
                StoreError::NotFound(_) => CaError::ClientNotFound(client_id),
                other => CaError::Store(other),
            })?;
        Ok(record)
    }
}

/// Checks that a certificate of the CA would authenticate `client` at the
/// token endpoint and the gateway. The client must use `tls_client_auth`,
/// and its registered subject (RFC 8705 §2.1.2) must be the SAN URI
/// [`client_uri`] or the subject DN `CN=<client id>` that
/// [`issue_certificate`] writes.
fn check_issuable(client: &ClientRecord) -> Result<(), CaError> {
    if client.auth_method != ClientAuthMethod::TlsClientAuth {
        return Err(CaError::NotTlsClientAuth {
            client_id: client.id,
            method: client.auth_method,
        });
    }
    let needed = client_uri(client.id);
    let Some(registered) = &client.tls_client_auth_subject else {
        return Err(CaError::MappingNotIssuable {
            client_id: client.id,
            registered: "no certificate subject".to_owned(),
            needed,
        });
    };
    let matched = match registered {
        TlsClientAuthSubject::SanUri(_) => registered.matches_uri(&needed),
        TlsClientAuthSubject::SubjectDn(_) => is_client_subject_dn(registered, client.id),
        _ => false,
    };
    if matched {
        Ok(())
    } else {
        Err(CaError::MappingNotIssuable {
            client_id: client.id,
            registered: format!("{} {:?}", registered.kind(), registered.value()),
            needed,
        })
    }
}

fn check_days(days: Option<u32>) -> Result<u32, CaError> {
    let days = days.unwrap_or(DEFAULT_CERTIFICATE_DAYS);
    if (1..=MAX_CERTIFICATE_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(CaError::InvalidDays(days))
    }
}

/// A new CA: its certificate and its unsealed PKCS#8 private key.
struct GeneratedCa {
    certificate_pem: String,
    key_pkcs8: Vec<u8>,
}

fn generate_ca(now: OffsetDateTime) -> Result<GeneratedCa, CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - CLOCK_SKEW_ALLOWANCE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(random_serial()?);
    params.key_identifier_method = KeyIdMethod::Sha256;
    let certificate = params.self_signed(&key).map_err(crypto)?;
    Ok(GeneratedCa {
        certificate_pem: certificate.pem(),
        key_pkcs8: key.serialize_der(),
    })
}

fn open_issuer(ca: &CaRecord, sealing: &SealingKey) -> Result<Issuer<'static, KeyPair>, CaError> {
    use secrecy::ExposeSecret;

    let pkcs8 = sealing
        .open(&ca.sealed_private_key, ca.id.as_bytes())
        .map_err(crypto)?;
    let key = KeyPair::try_from(pkcs8.expose_secret().as_slice()).map_err(crypto)?;
    let der = CertificateDer::from_pem_slice(ca.certificate_pem.as_bytes()).map_err(crypto)?;
    Issuer::from_ca_cert_der(&der, key).map_err(crypto)
}

/// A client certificate as signed.
struct IssuedCertificate {
    serial: CertificateSerial,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    sha256: String,
    pem: String,
}

/// Signs a client certificate for `public_key`: subject CN = the client
/// id, one SAN URI [`client_uri`], EKU clientAuth only, key usage
/// digitalSignature, basic constraints CA:FALSE, a random 16-byte serial
/// and a validity of `days` from `now` less [`CLOCK_SKEW_ALLOWANCE`].
fn issue_certificate(
    issuer: &Issuer<'_, KeyPair>,
    client_id: ClientId,
    public_key: &impl rcgen::PublicKeyData,
    days: u32,
    now: OffsetDateTime,
) -> Result<IssuedCertificate, CaError> {
    let serial = random_serial()?;
    let not_before = now - CLOCK_SKEW_ALLOWANCE;
    let not_after = not_before + Duration::days(i64::from(days));

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, client_id.to_string());
    params.distinguished_name = name;
    let uri = client_uri(client_id).try_into().map_err(crypto)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(serial.clone());
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;

    let certificate = params.signed_by(public_key, issuer).map_err(crypto)?;
    Ok(IssuedCertificate {
        serial: CertificateSerial::from_bytes(&serial.to_bytes()),
        not_before,
        not_after,
        sha256: hex(&sha256(certificate.der())),
        pem: certificate.pem(),
    })
}

/// Parses a CSR, checks its self-signature and its key, and returns its
/// public key. Every extension the CSR requests is ignored.
///
/// The CSR goes through x509-parser rather than rcgen's
/// `CertificateSigningRequestParams::from_pem`, because rcgen 0.14 rejects
/// a CSR that requests an extension it does not model (such as
/// subjectKeyIdentifier), and such requests are common and harmless here.
fn parse_csr(csr_pem: &str) -> Result<SubjectPublicKeyInfo, CaError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|_| CaError::InvalidCsr("expected a PEM CERTIFICATE REQUEST block".to_owned()))?;
    if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
        return Err(CaError::InvalidCsr(format!(
            "expected a PEM CERTIFICATE REQUEST block, found {:?}",
            pem.label
        )));
    }
    // The parser's own error names ASN.1 tags, which mean nothing to a
    // partner, so the message names the expected format instead.
    let (rest, csr) = X509CertificationRequest::from_der(&pem.contents).map_err(|_| {
        CaError::InvalidCsr(
            "cannot parse the request: it is not a PKCS#10 certification request \
             (RFC 2986); create one with `openssl req -new`"
                .to_owned(),
        )
    })?;
    if !rest.is_empty() {
        return Err(CaError::InvalidCsr(
            "trailing bytes after the request".to_owned(),
        ));
    }
    let spki = &csr.certification_request_info.subject_pki;
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() < MIN_RSA_BITS => {
            return Err(CaError::InvalidCsr(format!(
                "RSA key of {} bits is too short: at least {MIN_RSA_BITS} bits are required",
                rsa.key_size()
            )));
        }
        Ok(PublicKey::RSA(_) | PublicKey::EC(_)) => {}
        // Ed25519 keys parse as `Unknown` in x509-parser 0.18; rcgen below
        // decides whether the algorithm is one it can certify.
        Ok(PublicKey::Unknown(_)) => {}
        Ok(_) | Err(_) => {
            return Err(CaError::InvalidCsr(
                "unsupported public key: expected ECDSA, Ed25519 or RSA".to_owned(),
            ));
        }
    }
    // The key is checked first: aws-lc-rs does not verify signatures of
    // short RSA keys, and "too short" is the more useful message.
    csr.verify_signature()
        .map_err(|_| CaError::InvalidCsr("the request's signature is invalid".to_owned()))?;
    SubjectPublicKeyInfo::from_der(spki.raw).map_err(|error| {
        CaError::InvalidCsr(format!(
            "unsupported public key: expected ECDSA P-256 or P-384, Ed25519 or RSA ({error})"
        ))
    })
}

fn sign_crl(
    issuer: &Issuer<'_, KeyPair>,
    revoked: &[RevokedCertificate],
    now: OffsetDateTime,
) -> Result<String, CaError> {
    // The CRL number must grow with each CRL (RFC 5280 §5.2.3). Milliseconds
    // since the epoch grow without a stored counter, also across nodes
    // whose clocks agree to within the time between two CRLs.
    let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_NEXT_UPDATE,
        crl_number: SerialNumber::from(millis),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|entry| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&entry.serial.to_bytes()),
                revocation_time: entry.revoked_at,
                reason_code: entry.reason.and_then(crl_reason_code),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer).map_err(crypto)?;
    crl.pem().map_err(crypto)
}

/// Maps a reason to the CRLReason extension of its CRL entry (RFC 5280
/// §5.3.1), or to `None` for `unspecified`, whose entry omits the
/// extension as that section recommends.
fn crl_reason_code(reason: RevocationReason) -> Option<rcgen::RevocationReason> {
    match reason {
        RevocationReason::Unspecified => None,
        RevocationReason::KeyCompromise => Some(rcgen::RevocationReason::KeyCompromise),
        RevocationReason::CaCompromise => Some(rcgen::RevocationReason::CaCompromise),
        RevocationReason::AffiliationChanged => Some(rcgen::RevocationReason::AffiliationChanged),
        RevocationReason::Superseded => Some(rcgen::RevocationReason::Superseded),
        RevocationReason::CessationOfOperation => {
            Some(rcgen::RevocationReason::CessationOfOperation)
        }
        RevocationReason::PrivilegeWithdrawn => Some(rcgen::RevocationReason::PrivilegeWithdrawn),
    }
}

/// Returns 16 random bytes with the top bit clear, so the DER integer is
/// positive and within the 20 octets RFC 5280 §4.1.2.2 allows.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes).map_err(crypto)?;
    if let Some(first) = bytes.first_mut() {
        *first &= 0x7f;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// Writes a DER certificate as PEM with 64-character lines (RFC 7468).
pub(super) fn certificate_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// Writes a DER PKCS#10 request as PEM, so that [`CertificateAuthority::sign_csr`]
/// takes a request uploaded as DER with the checks of a PEM one.
pub fn csr_pem_from_der(der: &[u8]) -> String {
    pem_block("CERTIFICATE REQUEST", der)
}

/// Writes `der` as a PEM block labelled `label`, with 64-character lines
/// (RFC 7468 §2).
fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;

    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

pub(super) fn hex(bytes: &[u8]) -> String {
    CertificateSerial::from_bytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use portcullis_core::crypto::MasterKey;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;
    use x509_parser::revocation_list::CertificateRevocationList;

    use super::*;

    struct TestCa {
        record: CaRecord,
        sealing: SealingKey,
    }

    impl TestCa {
        fn new(now: OffsetDateTime) -> Self {
            let sealing = MasterKey::generate().unwrap().sealing_key(CA_KEY_PURPOSE);
            let id = uuid::Uuid::now_v7();
            let generated = generate_ca(now).unwrap();
            let record = CaRecord {
                id,
                certificate_pem: generated.certificate_pem,
                sealed_private_key: sealing.seal(&generated.key_pkcs8, id.as_bytes()).unwrap(),
                created_at: now,
            };
            Self { record, sealing }
        }

        fn issuer(&self) -> Issuer<'static, KeyPair> {
            open_issuer(&self.record, &self.sealing).unwrap()
        }

        fn issue(&self, public_key: &impl rcgen::PublicKeyData, days: u32) -> IssuedCertificate {
            issue_certificate(&self.issuer(), client(), public_key, days, now()).unwrap()
        }
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-12-04 12:00 UTC)
    }

    fn client() -> ClientId {
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".parse().unwrap()
    }

    fn der_of(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    fn leaf_key() -> KeyPair {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    }

    #[test]
    fn ca_is_constrained_signing_ca() {
        let ca = TestCa::new(now());
        let der = der_of(&ca.record.certificate_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();

        let constraints = cert.basic_constraints().unwrap().unwrap().value;
        assert!(constraints.ca);
        assert_eq!(constraints.path_len_constraint, Some(0));
        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign());
        assert!(usage.crl_sign());
        assert!(!usage.digital_signature());
        assert_eq!(cert.subject().to_string(), format!("CN={CA_COMMON_NAME}"));
        assert_eq!(
            cert.validity().not_after.timestamp(),
            (now() + CA_VALIDITY).unix_timestamp()
        );
    }

    #[test]
    fn ca_key_needs_its_id_to_open() {
        let ca = TestCa::new(now());
        let other_id = uuid::Uuid::now_v7();
        assert!(
            ca.sealing
                .open(&ca.record.sealed_private_key, other_id.as_bytes())
                .is_err()
        );
        let other_master = MasterKey::generate().unwrap().sealing_key(CA_KEY_PURPOSE);
        assert!(open_issuer(&ca.record, &other_master).is_err());
    }

    #[test]
    fn issued_certificate_is_client_leaf() {
        let ca = TestCa::new(now());
        let issued = ca.issue(&leaf_key(), 90);
        let der = der_of(&issued.pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();

        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert!(!eku.server_auth);
        assert!(!eku.any);
        assert!(eku.other.is_empty());

        let usage = cert.key_usage().unwrap().unwrap().value;
        assert!(usage.digital_signature());
        assert!(!usage.key_cert_sign());

        let constraints = cert.basic_constraints().unwrap().unwrap().value;
        assert!(!constraints.ca);

        let names = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        let expected = client_uri(client());
        assert_eq!(names, &vec![GeneralName::URI(&expected)]);
        assert_eq!(cert.subject().to_string(), format!("CN={}", client()));
        assert_eq!(cert.issuer().to_string(), format!("CN={CA_COMMON_NAME}"));
        assert_eq!(issued.sha256, hex(&sha256(&der)));
    }

    #[test]
    fn validity_matches_requested_days() {
        let ca = TestCa::new(now());
        for days in [1, 90, MAX_CERTIFICATE_DAYS] {
            let issued = ca.issue(&leaf_key(), days);
            let der = der_of(&issued.pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let validity = cert.validity();
            let length = validity.not_after.timestamp() - validity.not_before.timestamp();
            assert_eq!(length, i64::from(days) * 86_400, "{days} days");
            assert!(validity.not_before.timestamp() <= now().unix_timestamp());
            assert_eq!(
                issued.not_after.unix_timestamp(),
                validity.not_after.timestamp()
            );
        }
    }

    #[test]
    fn days_out_of_range_rejected() {
        assert_eq!(check_days(None).unwrap(), DEFAULT_CERTIFICATE_DAYS);
        assert_eq!(check_days(Some(397)).unwrap(), 397);
        for days in [0, MAX_CERTIFICATE_DAYS + 1, u32::MAX] {
            assert!(
                matches!(check_days(Some(days)), Err(CaError::InvalidDays(_))),
                "{days}"
            );
        }
    }

    #[test]
    fn serials_random_positive_and_unique() {
        let ca = TestCa::new(now());
        let key = leaf_key();
        let mut seen = HashSet::new();
        for _ in 0..50 {
            // The same key every time: the serial must still differ.
            let issued = ca.issue(&key, 30);
            let bytes = issued.serial.to_bytes();
            assert!(bytes.len() <= 16, "{}", issued.serial);
            let der = der_of(&issued.pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            let raw = cert.raw_serial();
            assert!(raw.len() <= 17, "{} octets", raw.len());
            assert_eq!(raw.first().map(|byte| byte & 0x80), Some(0));
            let printed: CertificateSerial = cert.raw_serial_as_string().parse().unwrap();
            assert_eq!(printed, issued.serial);
            assert!(
                seen.insert(issued.serial.clone()),
                "{} repeated",
                issued.serial
            );
        }
    }

    #[test]
    fn csr_signature_checked() {
        let key = leaf_key();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let good = csr.pem().unwrap();
        assert!(parse_csr(&good).is_ok());

        // Flip a bit in the last octet, which belongs to the signature.
        let mut der = csr.der().to_vec();
        if let Some(last) = der.last_mut() {
            *last ^= 0x01;
        }
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(&der)
            }
        );
        let error = parse_csr(&tampered).unwrap_err();
        assert!(
            error.to_string().contains("signature is invalid"),
            "{error}"
        );
    }

    #[test]
    fn der_csr_parses_as_pem() {
        let key = leaf_key();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let pem = csr_pem_from_der(csr.der());
        assert_eq!(pem, csr.pem().unwrap());
        assert!(parse_csr(&pem).is_ok());
    }

    #[test]
    fn csr_garbage_rejected() {
        for input in [
            "",
            "not pem",
            "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(parse_csr(input), Err(CaError::InvalidCsr(_))),
                "{input:?}"
            );
        }
    }

    #[test]
    fn csr_requests_ignored() {
        let key = leaf_key();
        let mut requested = CertificateParams::new(vec!["evil.example.com".to_owned()]).unwrap();
        requested.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        requested.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        requested.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        requested
            .distinguished_name
            .push(DnType::CommonName, "Another client");
        let csr = requested.serialize_request(&key).unwrap().pem().unwrap();

        let ca = TestCa::new(now());
        let public_key = parse_csr(&csr).unwrap();
        let issued = ca.issue(&public_key, 90);
        let der = der_of(&issued.pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();

        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(!cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert!(!eku.server_auth);
        let names = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert_eq!(names.len(), 1);
        assert_eq!(cert.subject().to_string(), format!("CN={}", client()));
        // The certificate still certifies the CSR's key.
        assert_eq!(
            cert.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        );
    }

    #[test]
    fn short_rsa_csr_rejected() {
        // NOTE: aws-lc-rs generates no RSA keys below 2048 bits, so this
        // 1024-bit CSR is a fixed test vector made with `openssl req`.
        let csr = include_str!("testdata/rsa1024.csr");
        let error = parse_csr(csr).unwrap_err();
        assert!(error.to_string().contains("too short"), "{error}");
    }

    #[test]
    fn crl_lists_revoked_serials() {
        let ca = TestCa::new(now());
        let revoked = vec![
            RevokedCertificate {
                serial: "01ff".parse().unwrap(),
                revoked_at: now() - Duration::hours(1),
                reason: Some(RevocationReason::KeyCompromise),
                not_after: now() + Duration::days(10),
            },
            RevokedCertificate {
                serial: "7a0b0c".parse().unwrap(),
                revoked_at: now() - Duration::hours(2),
                reason: None,
                not_after: now() + Duration::days(10),
            },
        ];
        let pem = sign_crl(&ca.issuer(), &revoked, now()).unwrap();
        let der =
            rustls_pki_types::CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();

        let serials: Vec<CertificateSerial> = crl
            .iter_revoked_certificates()
            .map(|entry| entry.raw_serial_as_string().parse().unwrap())
            .collect();
        assert_eq!(
            serials,
            vec![revoked[0].serial.clone(), revoked[1].serial.clone()]
        );
        assert_eq!(crl.last_update().timestamp(), now().unix_timestamp());
        assert_eq!(
            crl.next_update().map(|at| at.timestamp()),
            Some((now() + CRL_NEXT_UPDATE).unix_timestamp())
        );
        assert_eq!(crl.issuer().to_string(), format!("CN={CA_COMMON_NAME}"));
        let ca_der = der_of(&ca.record.certificate_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        crl.verify_signature(ca_cert.public_key()).unwrap();
    }

    #[test]
    fn crl_entries_carry_reason_codes() {
        let ca = TestCa::new(now());
        let revoked: Vec<RevokedCertificate> = RevocationReason::ALL
            .into_iter()
            .zip(1u8..)
            .map(|(reason, serial)| RevokedCertificate {
                serial: CertificateSerial::from_bytes(&[serial]),
                revoked_at: now() - Duration::hours(1),
                reason: Some(reason),
                not_after: now() + Duration::days(10),
            })
            .collect();
        let pem = sign_crl(&ca.issuer(), &revoked, now()).unwrap();
        let der =
            rustls_pki_types::CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();

        let codes: Vec<Option<u8>> = crl
            .iter_revoked_certificates()
            .map(|entry| entry.reason_code().map(|(_, code)| code.0))
            .collect();
        // unspecified (0) has no extension; the rest carry their RFC 5280
        // codes, with 6 (certificateHold) and 8 (removeFromCRL) never used.
        assert_eq!(
            codes,
            vec![None, Some(1), Some(2), Some(3), Some(4), Some(5), Some(9)]
        );
    }

    fn client_record(
        auth_method: ClientAuthMethod,
        subject: Option<(portcullis_core::oauth::TlsSubjectKind, &str)>,
    ) -> ClientRecord {
        ClientRecord {
            id: client(),
            tenant_id: portcullis_core::ids::TenantId::generate(),
            tenant: TenantName::parse("acme").unwrap(),
            name: "Partner".to_owned(),
            confidential: true,
            grant_types: vec![portcullis_core::oauth::GrantType::ClientCredentials],
            scopes: portcullis_core::scope::ScopeSet::parse_list("orders:read").unwrap(),
            redirect_uris: Vec::new(),
            auth_method,
            jwks: None,
            tls_client_auth_subject: subject
                .map(|(kind, value)| TlsClientAuthSubject::parse(kind, value).unwrap()),
            access_token_ttl_seconds: 900,
            created_at: now(),
            revoked_at: None,
            limits: portcullis_core::credential::RateLimits::default(),
            created_by: None,
        }
    }

    #[test]
    fn issuable_only_for_written_names() {
        use portcullis_core::oauth::TlsSubjectKind;

        let own_uri = client_uri(client());
        let own_dn = format!("CN={}", client());
        let other = ClientId::generate();
        let accepted = [
            (TlsSubjectKind::SanUri, own_uri.as_str()),
            (TlsSubjectKind::SubjectDn, own_dn.as_str()),
        ];
        for (kind, value) in accepted {
            let record = client_record(ClientAuthMethod::TlsClientAuth, Some((kind, value)));
            assert!(check_issuable(&record).is_ok(), "{kind} {value}");
        }

        let other_uri = client_uri(other);
        let other_dn = format!("CN={other}");
        let own_upper = own_uri.to_uppercase();
        let rejected = [
            (TlsSubjectKind::SanUri, other_uri.as_str()),
            (TlsSubjectKind::SanUri, own_upper.as_str()),
            (TlsSubjectKind::SanUri, "urn:acme:billing"),
            (TlsSubjectKind::SubjectDn, other_dn.as_str()),
            (TlsSubjectKind::SubjectDn, "CN=billing,O=Acme"),
            (TlsSubjectKind::SanDns, "billing.example.com"),
        ];
        for (kind, value) in rejected {
            let record = client_record(ClientAuthMethod::TlsClientAuth, Some((kind, value)));
            let error = check_issuable(&record).unwrap_err();
            assert_eq!(
                error.code(),
                "client_mapping_not_issuable",
                "{kind} {value}"
            );
            let message = error.to_string();
            assert!(message.contains(value), "{message}");
            assert!(message.contains(&own_uri), "{message}");
        }

        for method in [
            ClientAuthMethod::ClientSecretBasic,
            ClientAuthMethod::PrivateKeyJwt,
            ClientAuthMethod::SelfSignedTlsClientAuth,
        ] {
            let error = check_issuable(&client_record(method, None)).unwrap_err();
            assert_eq!(error.code(), "client_not_tls_client_auth", "{method}");
            assert!(error.to_string().contains(method.as_str()), "{error}");
        }
    }

    fn audit_at(at: OffsetDateTime) -> AuditContext {
        AuditContext {
            actor: "test".to_owned(),
            remote_addr: None,
            at,
        }
    }

    #[tokio::test]
    async fn authority_rejects_bad_requests() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("test.db"))
            .await
            .unwrap()
            .attach_audit_key(MasterKey::generate().unwrap().audit_chain_key())
            .await
            .unwrap();
        let sealing = MasterKey::generate().unwrap().sealing_key(CA_KEY_PURPOSE);
        let ca = CertificateAuthority::new(store, sealing);
        let audit = audit_at(OffsetDateTime::now_utc());

        assert!(matches!(ca.ca_pem().await, Err(CaError::NotInitialized)));
        assert!(matches!(
            ca.crl(audit.at).await,
            Err(CaError::NotInitialized)
        ));

        let record = ca.init_ca(&audit).await.unwrap();
        assert_eq!(ca.ca_pem().await.unwrap(), record.certificate_pem);
        assert!(matches!(
            ca.init_ca(&audit).await,
            Err(CaError::AlreadyInitialized)
        ));

        let unknown = ClientId::generate();
        let signed = ca.issue_for_testing(unknown, None, &audit).await;
        assert!(
            matches!(signed, Err(CaError::ClientNotFound(id)) if id == unknown),
            "{signed:?}"
        );
        let too_long = ca.issue_for_testing(unknown, Some(398), &audit).await;
        assert!(matches!(too_long, Err(CaError::InvalidDays(398))));

        let serial: CertificateSerial = "0102".parse().unwrap();
        for reason in ["", "   ", "lost", "certificateHold", "removeFromCRL"] {
            let revoked = ca.revoke(&serial, reason, &audit).await;
            assert!(
                matches!(revoked, Err(CaError::InvalidReason(_))),
                "{reason:?}"
            );
        }
        let missing = ca.revoke(&serial, "keyCompromise", &audit).await;
        assert!(matches!(missing, Err(CaError::CertificateNotFound(_))));

        // The CRL is cached until the revoked list changes or it ages.
        let first = ca.crl(audit.at).await.unwrap();
        let cached = ca.crl(audit.at + Duration::hours(1)).await.unwrap();
        assert_eq!(cached, first);
        let aged = ca.crl(audit.at + CRL_REFRESH).await.unwrap();
        assert_ne!(aged, first);
    }
}
