//! The client certificate of a request, wherever it was presented.
//!
//! Code that needs a request's certificate (the token endpoint and the
//! gateway) reads it through [`client_certificate`], so that both see the
//! same certificate and the same verdict.
//!
//! With `server.forwarded_client_certificate`, a request from a peer in
//! `server.trusted_proxies` carries the certificate that the proxy forwards
//! in its header, and only that one. A trusted proxy without the header
//! forwards a client that presented none, so the proxy's own TLS
//! certificate is never taken as the client's. From any other peer the
//! header is ignored and the connection's certificate counts.
//!
//! The verdict of a handshake certificate is made under the trust snapshot
//! of the accept. When the trust was rebuilt since (a new CRL or CA), the
//! chain is verified again under the current snapshot at the connection's
//! next request, and that verdict is kept for the connection, so requests
//! between two rebuilds do not verify again.
//!
//! A forwarded chain is verified with the listener's anchors, CRLs and
//! revoked serials. Verdicts are cached by the SHA-256 of the header value
//! for [`FORWARDED_CACHE_TTL`], at most [`FORWARDED_CACHE_CAPACITY`] of them,
//! and an entry is not used once the trust was rebuilt or a certificate was
//! revoked after it was stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use super::forwarded::{ForwardedCertificateError, parse_forwarded_chain};
use super::trust::{ClientCertificateTrust, TrustSnapshot};
use super::verify::{Rejection, RejectionKind, VerifiedClient};
use crate::app::AppState;
use crate::config::ForwardedCertificateConfig;
use crate::listener::{ClientCertificate, ConnectionInfo};
use crate::problem::{Challenge, Problem};

/// Time a cached verdict of a forwarded certificate is used.
pub const FORWARDED_CACHE_TTL: Duration = Duration::from_secs(60);

/// Maximum number of cached verdicts. When it is reached, expired entries
/// are dropped, and if none has expired the whole cache is cleared.
pub const FORWARDED_CACHE_CAPACITY: usize = 1024;

/// Returns the client certificate of a request, with its verdict, or `None`
/// when the request carries none.
///
/// A malformed forwarded header from a trusted proxy gives `None` here,
/// because [`reject_malformed_forwarded_certificate`] has rejected such a
/// request with 400 before any handler runs.
pub fn client_certificate(
    state: &AppState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
) -> Option<Arc<ClientCertificate>> {
    match forwarded_certificate(state, connection, headers) {
        Forwarded::NotApplicable => {
            let presented = connection.client_certificate.as_ref()?;
            Some(match state.client_certificate_trust.get() {
                Some(trust) => presented.current(trust),
                None => presented.last(),
            })
        }
        Forwarded::Certificate(certificate) => certificate,
        Forwarded::Malformed(_) => None,
    }
}

/// Builds the 401 for a client certificate that failed verification:
/// `certificate_revoked` for a revoked one, whether a CRL or the internal
/// CA's revoked serials list it, and `invalid_client_certificate` for any
/// other failure. The listener and the gateway both send it, so a revoked
/// certificate gets one response whatever the protocol and wherever it is
/// caught.
///
/// RFC 9110 §15.5.2 requires a challenge on every 401. The certificate is
/// the credential that was rejected, so the challenge is RFC 6750's
/// `invalid_token`, the error for a revoked or invalid credential.
pub fn rejected_certificate(rejection: &Rejection) -> Problem {
    let (code, title, next_step) = match rejection.kind() {
        RejectionKind::Revoked => (
            "certificate_revoked",
            "Revoked client certificate",
            "connect again with a valid certificate",
        ),
        _ => (
            "invalid_client_certificate",
            "Invalid client certificate",
            "present a valid certificate or none",
        ),
    };
    Problem::new(
        StatusCode::UNAUTHORIZED,
        code,
        title,
        format!(
            "the client certificate was rejected ({}): {}; {next_step}",
            rejection.code(),
            rejection.reason()
        ),
    )
    .with_challenge(Challenge::InvalidToken)
}

/// The client certificate of a TLS connection, with the latest verdict on
/// it and the generation of the trust snapshot that made the verdict.
#[derive(Debug)]
pub struct ConnectionCertificate {
    handshake: Arc<ClientCertificate>,
    verdict: Mutex<(u64, Arc<ClientCertificate>)>,
}

impl ConnectionCertificate {
    /// Wraps the certificate whose verdict was made under the trust
    /// snapshot with `generation`.
    pub fn new(generation: u64, certificate: ClientCertificate) -> Self {
        let handshake = Arc::new(certificate);
        Self {
            verdict: Mutex::new((generation, Arc::clone(&handshake))),
            handshake,
        }
    }

    /// Returns the certificate with the verdict made at the handshake. The
    /// listener checks its serial against the revoked serials, so that an
    /// internal revocation gets the same response before and after a
    /// rebuild.
    pub fn handshake(&self) -> Arc<ClientCertificate> {
        Arc::clone(&self.handshake)
    }

    /// Returns the certificate with the latest verdict, without checking
    /// whether the trust changed since.
    pub fn last(&self) -> Arc<ClientCertificate> {
        Arc::clone(&lock(&self.verdict).1)
    }

    /// Returns the certificate with its verdict under the current trust.
    /// When the trust's generation differs from the verdict's, the chain is
    /// verified again under the current snapshot and the new verdict
    /// replaces the old one. The lock makes concurrent requests of one
    /// HTTP/2 connection verify once.
    pub fn current(&self, trust: &ClientCertificateTrust) -> Arc<ClientCertificate> {
        let generation = trust.generation();
        let mut verdict = lock(&self.verdict);
        if verdict.0 == generation {
            return Arc::clone(&verdict.1);
        }
        let snapshot = trust.snapshot();
        let chain = verdict.1.chain.clone();
        let result = snapshot.verify(&chain);
        if let Err(rejection) = &result {
            tracing::debug!(
                code = rejection.code(),
                reason = rejection.reason(),
                generation = snapshot.generation,
                "client certificate of an open connection rejected after a trust rebuild"
            );
        }
        let thumbprint_sha256 = verdict.1.thumbprint_sha256.clone();
        let certificate = Arc::new(ClientCertificate {
            chain,
            thumbprint_sha256,
            verdict: result,
        });
        *verdict = (snapshot.generation, Arc::clone(&certificate));
        certificate
    }
}

impl PartialEq for ConnectionCertificate {
    fn eq(&self, other: &Self) -> bool {
        // Comparing a value with itself must not lock its mutex twice.
        std::ptr::eq(self, other)
            || (self.handshake == other.handshake && *lock(&self.verdict) == *lock(&other.verdict))
    }
}

impl Eq for ConnectionCertificate {}

/// Middleware that rejects a request whose trusted proxy forwarded a
/// certificate header that cannot be read, with 400
/// `invalid_client_certificate_header`.
pub async fn reject_malformed_forwarded_certificate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let malformed = request
        .extensions()
        .get::<ConnectionInfo>()
        .and_then(|connection| {
            match forwarded_certificate(&state, connection, request.headers()) {
                Forwarded::Malformed(error) => Some(error),
                Forwarded::NotApplicable | Forwarded::Certificate(_) => None,
            }
        });
    match malformed {
        Some(error) => {
            tracing::warn!(error = %error, "malformed forwarded client certificate header from a trusted proxy");
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_client_certificate_header",
                "Invalid forwarded client certificate",
                format!("the proxy's client certificate header is invalid: {error}"),
            )
            .into_response()
        }
        None => next.run(request).await,
    }
}

/// The outcome of reading the forwarded header.
enum Forwarded {
    /// Forwarding is off, or the peer is not a trusted proxy.
    NotApplicable,
    /// The certificate that a trusted proxy forwarded, or `None` when it
    /// forwarded none.
    Certificate(Option<Arc<ClientCertificate>>),
    /// The header of a trusted proxy cannot be read.
    Malformed(ForwardedCertificateError),
}

fn forwarded_certificate(
    state: &AppState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
) -> Forwarded {
    let Some(forwarding) = &state.forwarded_certificates else {
        return Forwarded::NotApplicable;
    };
    if !state.proxies.contains(connection.peer.ip()) {
        return Forwarded::NotApplicable;
    }
    let mut values = headers.get_all(&forwarding.config.header).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // No header, or several: a proxy sets exactly one.
        return match headers.contains_key(&forwarding.config.header) {
            false => Forwarded::Certificate(None),
            true => Forwarded::Malformed(ForwardedCertificateError::Repeated),
        };
    };
    let Some(trust) = state.client_certificate_trust.get() else {
        tracing::error!("forwarded client certificate without a started trust; ignoring it");
        return Forwarded::Certificate(None);
    };
    forwarding.verdict(value.as_bytes(), trust)
}

/// The forwarding settings with the cache of verdicts.
pub struct ForwardedCertificates {
    config: ForwardedCertificateConfig,
    cache: Mutex<HashMap<[u8; 32], CachedVerdict>>,
}

struct CachedVerdict {
    certificate: Option<Arc<ClientCertificate>>,
    stored_at: Instant,
    snapshot: Arc<TrustSnapshot>,
    revoked_count: usize,
}

impl ForwardedCertificates {
    /// Builds the settings with an empty cache.
    pub fn new(config: ForwardedCertificateConfig) -> Self {
        Self {
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the configured header.
    pub fn header(&self) -> &http::HeaderName {
        &self.config.header
    }

    fn verdict(&self, value: &[u8], trust: &ClientCertificateTrust) -> Forwarded {
        let snapshot = trust.snapshot();
        let revoked_count = trust.revoked().len();
        let key = sha256(value);
        let now = Instant::now();
        if let Some(cached) = lock(&self.cache).get(&key)
            && now.duration_since(cached.stored_at) < FORWARDED_CACHE_TTL
            && Arc::ptr_eq(&cached.snapshot, &snapshot)
            && cached.revoked_count == revoked_count
        {
            return Forwarded::Certificate(cached.certificate.clone());
        }

        let chain = match parse_forwarded_chain(self.config.format, value) {
            Ok(Some(chain)) => chain,
            Ok(None) => return Forwarded::Certificate(None),
            Err(error) => return Forwarded::Malformed(error),
        };
        let verdict = verify_with_revocations(&snapshot, trust, &chain);
        let certificate = ClientCertificate::new(chain, verdict).map(Arc::new);

        let mut cache = lock(&self.cache);
        if cache.len() >= FORWARDED_CACHE_CAPACITY {
            cache.retain(|_, entry| now.duration_since(entry.stored_at) < FORWARDED_CACHE_TTL);
            if cache.len() >= FORWARDED_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(
            key,
            CachedVerdict {
                certificate: certificate.clone(),
                stored_at: now,
                snapshot,
                revoked_count,
            },
        );
        Forwarded::Certificate(certificate)
    }
}

/// Verifies a forwarded chain under `snapshot` and rejects a leaf whose
/// serial was revoked after the snapshot's CRL was built.
fn verify_with_revocations(
    snapshot: &TrustSnapshot,
    trust: &ClientCertificateTrust,
    chain: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<VerifiedClient, Rejection> {
    let verified = snapshot.verify(chain)?;
    if trust.revoked().contains(&verified.serial) {
        return Err(Rejection::revoked_serial(&verified));
    }
    Ok(verified)
}

fn sha256(value: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    let mut output = [0; 32];
    output.copy_from_slice(digest.as_ref());
    output
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use portcullis_core::crypto::MasterKey;
    use portcullis_core::name::TenantName;
    use portcullis_store::{AuditContext, Store};
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevokedCertParams, SerialNumber,
    };
    use time::OffsetDateTime;

    use super::*;
    use crate::config::{ClientCertificateMode, ForwardedCertificateFormat};
    use crate::pki::ca::{CA_KEY_PURPOSE, CertificateAuthority};
    use crate::pki::partner_ca::RevocationSource;

    fn audit() -> AuditContext {
        AuditContext {
            actor: "test".to_owned(),
            remote_addr: None,
            at: OffsetDateTime::now_utc(),
        }
    }

    /// Opens a store in `dir` with tenant acme and returns it with its CA.
    async fn store_with_acme(dir: &std::path::Path) -> (Store, Arc<CertificateAuthority>) {
        let store = Store::open_sqlite(&dir.join("test.db"))
            .await
            .unwrap()
            .attach_audit_key(MasterKey::generate().unwrap().audit_chain_key())
            .await
            .unwrap();
        store
            .create_tenant(&TenantName::parse("acme").unwrap(), &audit())
            .await
            .unwrap();
        let sealing = MasterKey::generate().unwrap().sealing_key(CA_KEY_PURPOSE);
        let ca = Arc::new(CertificateAuthority::new(store.clone(), sealing));
        (store, ca)
    }

    /// Returns a partner CA's PEM and its issuer.
    fn partner_ca() -> (String, Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Partner CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&key).unwrap().pem();
        (ca_pem, Issuer::new(params, key))
    }

    /// Signs a clientAuth leaf with `serial`, valid from yesterday to
    /// tomorrow.
    fn partner_leaf(issuer: &Issuer<'static, KeyPair>, serial: &[u8]) -> rcgen::Certificate {
        let mut leaf = CertificateParams::new(vec!["svc.example.com".to_owned()]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.serial_number = Some(SerialNumber::from_slice(serial));
        let now = OffsetDateTime::now_utc();
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(1);
        let leaf_key = KeyPair::generate().unwrap();
        leaf.signed_by(&leaf_key, issuer).unwrap()
    }

    /// Returns a partner CA's PEM and a leaf it signed with serial `0a 0b`,
    /// as the URL-encoded PEM that nginx forwards.
    fn partner_and_leaf() -> (String, String) {
        let (ca_pem, issuer) = partner_ca();
        let pem = partner_leaf(&issuer, &[0x0a, 0x0b]).pem();
        let encoded =
            percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC);
        (ca_pem, encoded.to_string())
    }

    fn verdict_code(forwarded: Forwarded) -> Result<String, &'static str> {
        match forwarded {
            Forwarded::Certificate(Some(certificate)) => match &certificate.verdict {
                Ok(verified) => Ok(verified.serial.clone()),
                Err(rejection) => Err(rejection.code()),
            },
            Forwarded::Certificate(None) => Err("none"),
            Forwarded::Malformed(_) => Err("malformed"),
            Forwarded::NotApplicable => Err("not_applicable"),
        }
    }

    /// Returns a CRL of `issuer`, PEM, that lists `serials`.
    fn crl_pem(issuer: &Issuer<'static, KeyPair>, serials: &[&[u8]]) -> String {
        let now = OffsetDateTime::now_utc();
        let revoked_certs = serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: now - time::Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from_slice(&[u8::try_from(serials.len()).unwrap() + 1]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(issuer).unwrap().pem().unwrap()
    }

    #[tokio::test]
    async fn connection_verdict_rechecked_after_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ca) = store_with_acme(dir.path()).await;
        let (ca_pem, issuer) = partner_ca();
        ca.trust_add("acme", &ca_pem, &RevocationSource::default(), &audit())
            .await
            .unwrap();
        let leaf_der = partner_leaf(&issuer, &[0x0a, 0x0c]).der().clone();
        let crl_path = dir.path().join("partner.crl");
        std::fs::write(&crl_path, crl_pem(&issuer, &[])).unwrap();
        let trust = ClientCertificateTrust::start(
            ClientCertificateMode::Off,
            None,
            vec![crl_path.clone()],
            store,
            ca,
        )
        .await
        .unwrap();
        let chain = vec![leaf_der];
        let handshake_verdict = trust.snapshot().verify(&chain);
        let presented = ConnectionCertificate::new(
            trust.generation(),
            ClientCertificate::new(chain, handshake_verdict).unwrap(),
        );

        let before = presented.current(&trust);
        let unchanged = presented.current(&trust);
        trust.rebuild().await;
        let same_trust = presented.current(&trust);
        std::fs::write(&crl_path, crl_pem(&issuer, &[&[0x0a, 0x0c]])).unwrap();
        trust.rebuild().await;
        let after_crl = presented.current(&trust);
        let cached = presented.current(&trust);

        assert_eq!(
            before.verified().map(|verified| verified.serial.as_str()),
            Some("0a0c")
        );
        assert!(Arc::ptr_eq(&before, &unchanged));
        assert!(Arc::ptr_eq(&before, &same_trust));
        assert_eq!(trust.generation(), 1);
        assert_eq!(
            after_crl.verdict.as_ref().map_err(Rejection::code).err(),
            Some("revoked")
        );
        assert_eq!(after_crl.thumbprint_sha256, before.thumbprint_sha256);
        assert!(Arc::ptr_eq(&after_crl, &cached));
        assert!(presented.last().verified().is_none());
    }

    #[tokio::test]
    async fn cached_verdict_dropped_after_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ca) = store_with_acme(dir.path()).await;
        let (ca_pem, header) = partner_and_leaf();
        ca.trust_add("acme", &ca_pem, &RevocationSource::default(), &audit())
            .await
            .unwrap();
        let trust =
            ClientCertificateTrust::start(ClientCertificateMode::Off, None, Vec::new(), store, ca)
                .await
                .unwrap();
        let forwarded = ForwardedCertificates::new(ForwardedCertificateConfig {
            format: ForwardedCertificateFormat::Nginx,
            header: http::HeaderName::from_static("x-ssl-client-cert"),
        });

        let first = verdict_code(forwarded.verdict(header.as_bytes(), &trust));
        let cached = verdict_code(forwarded.verdict(header.as_bytes(), &trust));
        trust.certificate_revoked("0a0b");
        let after_revocation = verdict_code(forwarded.verdict(header.as_bytes(), &trust));

        assert_eq!(first, Ok("0a0b".to_owned()));
        assert_eq!(cached, Ok("0a0b".to_owned()));
        assert_eq!(lock(&forwarded.cache).len(), 1);
        assert_eq!(after_revocation, Err("revoked"));
    }
}
