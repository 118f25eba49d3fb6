//! The listener with client certificates on a real socket: the certificate
//! and verdict that handlers read from `ConnectionInfo`, the `optional` and
//! `required` handshakes, and the audit record of a rejected certificate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail the test by panicking"
)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use portcullis_core::crypto::MasterKey;
use portcullis_core::ids::TenantId;
use portcullis_core::name::TenantName;
use portcullis_server::config::{ClientCertificateMode, TlsMode};
use portcullis_server::listener::{ConnectionInfo, ListenerLimits, serve_with_client_certificates};
use portcullis_server::pki::ca::{CA_KEY_PURPOSE, CertificateAuthority};
use portcullis_server::pki::handshake::spki_sha256;
use portcullis_server::pki::partner_ca::RevocationSource;
use portcullis_server::pki::trust::ClientCertificateTrust;
use portcullis_server::pki::verify::AnchorOwner;
use portcullis_server::tls;
use portcullis_server::usage::UsageRecorder;
use portcullis_store::{AuditAction, AuditContext, AuditFilter, Store};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

type Identity = (CertificateDer<'static>, PrivateKeyDer<'static>);

fn audit() -> AuditContext {
    AuditContext {
        actor: "test".to_owned(),
        remote_addr: None,
        at: OffsetDateTime::now_utc(),
    }
}

/// A partner CA made by the test.
struct PartnerCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl PartnerCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Partner CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs a clientAuth leaf with the given serial, valid from `days.0`
    /// to `days.1` days from now (negative values lie in the past).
    fn leaf(&self, serial: &[u8], days: (i64, i64)) -> Identity {
        let mut params = leaf_params(serial, days);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.issuer).unwrap();
        (leaf.der().clone(), private_key(&key))
    }
}

fn leaf_params(serial: &[u8], (from, until): (i64, i64)) -> CertificateParams {
    let mut params = CertificateParams::new(vec!["partner-svc.example.com".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "partner service");
    params.serial_number = Some(SerialNumber::from_slice(serial));
    let now = OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from);
    params.not_after = now + time::Duration::days(until);
    params
}

fn private_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap()
}

/// Returns a self-signed clientAuth certificate, its key and the SHA-256 of
/// its public key.
fn self_signed() -> (Identity, [u8; 32]) {
    let mut params = leaf_params(&[0x51], (-1, 30));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let digest = spki_sha256(&key.subject_public_key_info());
    ((certificate.der().clone(), private_key(&key)), digest)
}

/// A listener with client certificates in `mode`, one tenant `acme`, and a
/// partner CA trusted for it.
struct Listener {
    dir: TempDir,
    store: Store,
    tenant_id: TenantId,
    partner: PartnerCa,
    trust: Arc<ClientCertificateTrust>,
    usage: Arc<UsageRecorder>,
    address: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Listener {
    async fn start(mode: ClientCertificateMode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("test.db"))
            .await
            .unwrap()
            .attach_audit_key(MasterKey::generate().unwrap().audit_chain_key())
            .await
            .unwrap();
        let tenant = store
            .create_tenant(&TenantName::parse("acme").unwrap(), &audit())
            .await
            .unwrap();
        let sealing = MasterKey::generate().unwrap().sealing_key(CA_KEY_PURPOSE);
        let ca = Arc::new(CertificateAuthority::new(store.clone(), sealing));
        let partner = PartnerCa::new();
        ca.trust_add("acme", &partner.pem, &RevocationSource::default(), &audit())
            .await
            .unwrap();

        let (base, _) = tls::server_config(&TlsMode::Development, dir.path())
            .unwrap()
            .unwrap();
        let trust = ClientCertificateTrust::start(mode, Some(base), Vec::new(), store.clone(), ca)
            .await
            .unwrap();
        let trust = Arc::new(trust);
        let usage = Arc::new(UsageRecorder::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let limits = ListenerLimits {
            max_connections: 16,
            per_address: None,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        };
        let app = Router::new().route("/whoami", get(describe));
        let task = tokio::spawn(serve_with_client_certificates(
            listener,
            Arc::clone(&trust),
            Arc::clone(&usage),
            app,
            limits,
            shutdown.clone(),
            Duration::from_secs(5),
        ));
        Self {
            dir,
            store,
            tenant_id: tenant.id,
            partner,
            trust,
            usage,
            address,
            shutdown,
            task,
        }
    }

    async fn whoami(&self, identity: Option<Identity>) -> Result<String, String> {
        whoami(self.address, self.dir.path(), identity).await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Writes the client certificate and its verdict from the request's
/// `ConnectionInfo` as text.
async fn describe(Extension(info): Extension<ConnectionInfo>) -> String {
    let Some(certificate) = info.client_certificate.map(|presented| presented.last()) else {
        return "no certificate".to_owned();
    };
    match &certificate.verdict {
        Ok(verified) => format!(
            "serial={} leaf_bytes={} thumbprint={} anchor={:?}",
            verified.serial,
            certificate.leaf().len(),
            certificate.thumbprint_sha256,
            verified.anchor
        ),
        Err(rejection) => format!(
            "rejected={} thumbprint={}",
            rejection.code(),
            certificate.thumbprint_sha256
        ),
    }
}

fn thumbprint(certificate: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate);
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        digest.as_ref(),
    )
}

#[tokio::test]
async fn handler_reads_verified_certificate() {
    let listener = Listener::start(ClientCertificateMode::Optional).await;
    // The serial `00 8a 03` carries the leading zero octet that DER
    // requires before a first octet of 0x80 or more.
    let (leaf, key) = listener.partner.leaf(&[0x00, 0x8a, 0x03], (-1, 30));

    let with_certificate = listener.whoami(Some((leaf.clone(), key))).await.unwrap();
    let anonymous = listener.whoami(None).await.unwrap();

    assert!(
        with_certificate.contains("serial=8a03 "),
        "{with_certificate}"
    );
    assert!(
        with_certificate.contains(&format!(" leaf_bytes={} ", leaf.len())),
        "{with_certificate}"
    );
    assert!(
        with_certificate.contains(&format!(" thumbprint={} ", thumbprint(&leaf))),
        "{with_certificate}"
    );
    let anchor = AnchorOwner::Partner {
        tenant_id: listener.tenant_id,
    };
    assert!(
        with_certificate.contains(&format!(" anchor={anchor:?}")),
        "{with_certificate}"
    );
    assert!(anonymous.contains("no certificate"), "{anonymous}");
    listener.stop().await;
}

#[tokio::test]
async fn optional_serves_rejected_certificate_with_verdict() {
    let listener = Listener::start(ClientCertificateMode::Optional).await;
    let expired = listener.partner.leaf(&[0x0e], (-10, -1));
    let expired_thumbprint = thumbprint(&expired.0);
    let ((unknown, key), _) = self_signed();

    let expired_response = listener.whoami(Some(expired)).await.unwrap();
    let unknown_response = listener.whoami(Some((unknown.clone(), key))).await.unwrap();

    assert!(
        expired_response.contains("rejected=expired "),
        "{expired_response}"
    );
    assert!(
        expired_response.contains(&format!(" thumbprint={expired_thumbprint}")),
        "{expired_response}"
    );
    assert!(
        unknown_response.contains("rejected=unknown_issuer "),
        "{unknown_response}"
    );
    assert!(
        unknown_response.contains(&format!(" thumbprint={}", thumbprint(&unknown))),
        "{unknown_response}"
    );
    listener.stop().await;
}

#[tokio::test]
async fn required_rejection_is_audited() {
    let listener = Listener::start(ClientCertificateMode::Required).await;
    let expired = listener.partner.leaf(&[0x0e, 0x0d], (-10, -1));

    let result = listener.whoami(Some(expired)).await;
    // The connection task records the failure after the client sees the
    // alert, so the flush waits until the record is queued.
    let mut records = Vec::new();
    for _ in 0..50 {
        listener.usage.flush(&listener.store).await;
        let filter = AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::AuthFailed),
            target: None,
            limit: 10,
        };
        records = listener.store.list_audit(&filter).await.unwrap();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(result.is_err(), "expected a failed handshake: {result:?}");
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.remote_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(record.details["code"], "expired");
    assert_eq!(record.details["surface"], "tls");
    assert_eq!(record.details["certificate_serial"], "0e0d");
    assert_eq!(record.details["certificate_issuer"], "CN=Partner CA");
    listener.stop().await;
}

#[tokio::test]
async fn required_accepts_registered_self_signed_only() {
    let listener = Listener::start(ClientCertificateMode::Required).await;
    let ((registered, registered_key), digest) = self_signed();
    let (stranger, _) = self_signed();
    listener
        .trust
        .self_signed_keys()
        .set(HashSet::from([digest]));

    let registered_response = listener
        .whoami(Some((registered.clone(), registered_key)))
        .await;
    let stranger_response = listener.whoami(Some(stranger)).await;

    let registered_response = registered_response.unwrap();
    assert!(
        registered_response.contains("rejected=unknown_issuer "),
        "{registered_response}"
    );
    assert!(
        registered_response.contains(&format!(" thumbprint={}", thumbprint(&registered))),
        "{registered_response}"
    );
    assert!(
        stranger_response.is_err(),
        "expected a failed handshake: {stranger_response:?}"
    );
    listener.stop().await;
}

/// Sends `GET /whoami` over TLS, presenting `identity` if given, and
/// returns the whole response, or the error that ended the connection
/// before any response.
async fn whoami(
    address: SocketAddr,
    data_dir: &std::path::Path,
    identity: Option<Identity>,
) -> Result<String, String> {
    let ca_pem = std::fs::read(data_dir.join("tls/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((leaf, key)) => builder.with_client_auth_cert(vec![leaf], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    // With TLS 1.3 the server checks the client certificate after the
    // client's side of the handshake is done, so a rejection shows when
    // reading.
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|error| error.to_string())?;
    let _ = tls
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut buffer = Vec::new();
    match tls.read_to_end(&mut buffer).await {
        Err(error) if buffer.is_empty() => Err(error.to_string()),
        _ => Ok(String::from_utf8_lossy(&buffer).into_owned()),
    }
}
