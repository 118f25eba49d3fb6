//! The listener with client certificates on a real socket: the verified
//! certificate that handlers read from `ConnectionInfo`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail the test by panicking"
)]

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use portcullis_core::crypto::MasterKey;
use portcullis_core::name::TenantName;
use portcullis_server::config::{ClientCertificateMode, TlsMode};
use portcullis_server::listener::{ConnectionInfo, ListenerLimits, serve_with_client_certificates};
use portcullis_server::pki::ca::{CA_KEY_PURPOSE, CertificateAuthority};
use portcullis_server::pki::trust::ClientCertificateTrust;
use portcullis_server::pki::verify::AnchorOwner;
use portcullis_server::tls;
use portcullis_store::{AuditContext, Store};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

fn audit() -> AuditContext {
    AuditContext {
        actor: "test".to_owned(),
        remote_addr: None,
        at: OffsetDateTime::now_utc(),
    }
}

/// Returns a partner CA (PEM) and a clientAuth leaf it signed, with the
/// leaf's key. The serial `00 8a 03` carries the leading zero octet that DER
/// requires before a first octet of 0x80 or more.
fn partner_chain() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Partner CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["partner-svc.example.com".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x8a, 0x03]));
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
    let key = KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &issuer).unwrap();
    let key_der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    (ca_pem, leaf.der().clone(), key_der)
}

/// Writes the client certificate from the request's `ConnectionInfo` as
/// text.
async fn describe(Extension(info): Extension<ConnectionInfo>) -> String {
    let Some(certificate) = info.client_certificate else {
        return "no certificate".to_owned();
    };
    match certificate.verified() {
        Some(verified) => format!(
            "serial={} leaf_bytes={} thumbprint={} anchor={:?}",
            verified.serial,
            certificate.leaf().len(),
            certificate.thumbprint_sha256,
            verified.anchor
        ),
        None => "rejected certificate".to_owned(),
    }
}

#[tokio::test]
async fn handler_reads_verified_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("test.db"))
        .await
        .unwrap();
    let tenant = store
        .create_tenant(&TenantName::parse("acme").unwrap(), &audit())
        .await
        .unwrap();
    let sealing = MasterKey::generate().unwrap().sealing_key(CA_KEY_PURPOSE);
    let ca = Arc::new(CertificateAuthority::new(store.clone(), sealing));
    let (partner_pem, leaf, key) = partner_chain();
    ca.trust_add("acme", &partner_pem, &audit()).await.unwrap();

    let (base, _) = tls::server_config(&TlsMode::Development, dir.path())
        .unwrap()
        .unwrap();
    let trust =
        ClientCertificateTrust::start(ClientCertificateMode::Optional, base, Vec::new(), store, ca)
            .await
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let limits = ListenerLimits {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
    };
    let app = Router::new().route("/whoami", get(describe));
    let task = tokio::spawn(serve_with_client_certificates(
        listener,
        Arc::new(trust),
        app,
        limits,
        shutdown.clone(),
        Duration::from_secs(5),
    ));

    let with_certificate = whoami(address, dir.path(), Some((leaf.clone(), key))).await;
    let anonymous = whoami(address, dir.path(), None).await;

    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf);
    let thumbprint = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        digest.as_ref(),
    );
    assert!(
        with_certificate.contains("serial=8a03 "),
        "{with_certificate}"
    );
    assert!(
        with_certificate.contains(&format!(" leaf_bytes={} ", leaf.len())),
        "{with_certificate}"
    );
    assert!(
        with_certificate.contains(&format!(" thumbprint={thumbprint}")),
        "{with_certificate}"
    );
    let anchor = AnchorOwner::Partner {
        tenant_id: tenant.id,
    };
    assert!(
        with_certificate.contains(&format!(" anchor={anchor:?}")),
        "{with_certificate}"
    );
    assert!(anonymous.contains("no certificate"), "{anonymous}");

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Sends `GET /whoami` over TLS, presenting `identity` if given, and
/// returns the whole response.
async fn whoami(
    address: std::net::SocketAddr,
    data_dir: &std::path::Path,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> String {
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
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    tls.read_to_end(&mut buffer).await.unwrap();
    String::from_utf8_lossy(&buffer).into_owned()
}
