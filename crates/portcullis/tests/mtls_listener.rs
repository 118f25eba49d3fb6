//! Client certificates on the real listener: `server.client_certificates`
//! set to `required` or `optional`, certificates from `portcullis certs
//! issue` and from rcgen, curl and tokio-rustls as clients, and a
//! revocation from the CLI reaching a connection that is already open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::mtls::{PARTNER_DNS, create_tls_client, failure_record, token_on};
use support::{DataDir, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A client certificate chain and its private key, PEM.
struct Identity {
    cert_pem: String,
    key_pem: String,
}

impl Identity {
    fn read(dir: &Path) -> Self {
        Self {
            cert_pem: std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
            key_pem: std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        }
    }
}

/// Creates tenant acme with a `tls_client_auth` client that the server maps
/// to the internal CA's SAN URI for it, and returns the client's id.
fn create_client(data: &DataDir) -> String {
    data.cli(&["tenants", "create", "acme"]);
    create_tls_client(data, "acme", &[])["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs `certs issue` into `DATA_DIR/NAME` and returns the folder and the
/// certificate's serial.
fn issue(data: &DataDir, client: &str, name: &str) -> (PathBuf, String) {
    let out = data.path().join(name);
    let issued = data.cli_json(&[
        "certs",
        "issue",
        "--client",
        client,
        "--out",
        out.to_str().unwrap(),
    ]);
    (out, issued["serial"].as_str().unwrap().to_owned())
}

/// A CA made by rcgen.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs a clientAuth leaf valid from `not_before` to `not_after`.
    fn leaf(&self, not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> Identity {
        self.leaf_with_serial(not_before, not_after, None)
    }

    /// Signs a clientAuth leaf like [`Self::leaf`], with `serial` in place
    /// of a random one.
    fn leaf_with_serial(
        &self,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
        serial: Option<&[u8]>,
    ) -> Identity {
        let mut params =
            CertificateParams::new(vec!["partner-svc.example.com".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "partner service");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = serial.map(SerialNumber::from_slice);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn valid_leaf(&self) -> Identity {
        let now = time::OffsetDateTime::now_utc();
        self.leaf(
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        )
    }

    /// Returns a CRL, PEM, that revokes `serials` and is valid for a week.
    fn crl(&self, serials: &[&[u8]]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: now - time::Duration::hours(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

fn start(data: &DataDir, mode: &str) -> Server {
    data.write_config(&format!("[server]\nclient_certificates = \"{mode}\"\n"));
    Server::start(data)
}

/// Connects with TLS, presenting `identity` if given. With TLS 1.3 the
/// server checks the client certificate after the client's side of the
/// handshake is done, so a rejection shows on the first read, not here.
async fn connect(
    address: SocketAddr,
    server_ca_pem: &[u8],
    identity: Option<&Identity>,
) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(server_ca_pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends `GET /healthz` on a new connection and returns the status, or the
/// error that ended the connection before any response.
async fn healthz(server: &Server, identity: Option<&Identity>) -> Result<u16, String> {
    let mut tls = connect(server.address, &server.ca_pem, identity).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    // A write can succeed before the server's alert arrives.
    let _ = tls.write_all(request).await;
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buffer))
        .await
        .map_err(|_| "timed out".to_owned())?;
    if let Err(error) = read
        && buffer.is_empty()
    {
        return Err(error.to_string());
    }
    let text = String::from_utf8_lossy(&buffer);
    text.get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {text:?}"))
}

#[tokio::test]
async fn required_without_certificate_fails() {
    let data = DataDir::new();
    data.cli(&["ca", "init"]);
    let server = start(&data, "required");

    let result = healthz(&server, None).await;

    assert!(result.is_err(), "expected a failed handshake: {result:?}");
}

#[tokio::test]
async fn required_accepts_issued_certificate_with_curl() {
    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);
    let (dir, _) = issue(&data, &client, "issued");
    let server = start(&data, "required");
    let port = server.address.port();

    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--output", "/dev/null"])
        .args(["--write-out", "%{http_code}"])
        .arg("--cacert")
        .arg(data.path().join("tls/ca.pem"))
        .arg("--cert")
        .arg(dir.join("cert.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/healthz"))
        .output()
        .expect("the curl command is required for this test");

    let code = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        code,
        "200",
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let identity = Identity::read(&dir);
    assert_eq!(healthz(&server, Some(&identity)).await, Ok(200));
}

#[tokio::test]
async fn required_rejects_untrusted_certificate() {
    let data = DataDir::new();
    data.cli(&["ca", "init"]);
    let server = start(&data, "required");
    let stranger = TestCa::new("Unknown CA").valid_leaf();

    let result = healthz(&server, Some(&stranger)).await;

    assert!(result.is_err(), "expected a failed handshake: {result:?}");
}

/// Only a partner CA is trusted and no CRL is configured, so validity
/// dates are the only difference between the two leaves.
#[tokio::test]
async fn required_rejects_expired_partner_certificate() {
    let data = DataDir::new();
    create_client(&data);
    let partner = trust_partner(&data);
    let server = start(&data, "required");
    let now = time::OffsetDateTime::now_utc();
    let expired = partner.leaf(
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    );

    let valid = healthz(&server, Some(&partner.valid_leaf())).await;
    let result = healthz(&server, Some(&expired)).await;

    assert_eq!(valid, Ok(200));
    assert!(result.is_err(), "expected a failed handshake: {result:?}");
}

/// Trusts a partner CA for tenant acme and returns it.
fn trust_partner(data: &DataDir) -> TestCa {
    let partner = TestCa::new("Partner CA");
    let partner_path = data.path().join("partner-ca.pem");
    std::fs::write(&partner_path, &partner.pem).unwrap();
    data.cli(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        partner_path.to_str().unwrap(),
    ]);
    partner
}

/// Both CAs have a CRL: the internal CA its own, the partner CA one from
/// `server.partner_crls`.
#[tokio::test]
async fn partner_crl_rejects_revoked_certificate() {
    let data = DataDir::new();
    create_client(&data);
    data.cli(&["ca", "init"]);
    let partner = trust_partner(&data);
    let crl_path = data.path().join("partner-crl.pem");
    std::fs::write(&crl_path, partner.crl(&[&[0x0a, 0x01]])).unwrap();
    data.write_config(&format!(
        "[server]\nclient_certificates = \"required\"\npartner_crls = [{:?}]\n",
        crl_path.to_str().unwrap()
    ));
    let server = Server::start(&data);
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(30);
    let revoked = partner.leaf_with_serial(not_before, not_after, Some(&[0x0a, 0x01]));
    let valid = partner.leaf_with_serial(not_before, not_after, Some(&[0x0a, 0x02]));

    let valid_result = healthz(&server, Some(&valid)).await;
    let revoked_result = healthz(&server, Some(&revoked)).await;

    assert_eq!(valid_result, Ok(200));
    assert!(
        revoked_result.is_err(),
        "expected a failed handshake: {revoked_result:?}"
    );
}

/// With the internal CA's CRL in use, a partner CA without a CRL file
/// cannot show that its certificates are unrevoked, so they are rejected,
/// as `certs verify` rejects them.
#[tokio::test]
async fn partner_without_crl_rejected() {
    let data = DataDir::new();
    create_client(&data);
    data.cli(&["ca", "init"]);
    let partner = trust_partner(&data);
    let server = start(&data, "required");

    let result = healthz(&server, Some(&partner.valid_leaf())).await;

    assert!(result.is_err(), "expected a failed handshake: {result:?}");
}

#[test]
fn invalid_partner_crl_fails_start() {
    let data = DataDir::new();
    data.cli(&["ca", "init"]);
    let crl_path = data.path().join("not-a-crl.pem");
    std::fs::write(&crl_path, "hello\n").unwrap();
    data.write_config(&format!(
        "[server]\nclient_certificates = \"optional\"\npartner_crls = [{:?}]\n",
        crl_path.to_str().unwrap()
    ));

    let output = data
        .command()
        .args(["serve"])
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.partner_crls[0]"), "{stderr}");
}

#[tokio::test]
async fn optional_without_trust_anchor_serves() {
    let data = DataDir::new();
    let server = start(&data, "optional");

    let result = healthz(&server, None).await;

    assert_eq!(result, Ok(200));
}

#[test]
fn required_without_trust_anchor_fails_start() {
    let data = DataDir::new();
    data.write_config("[server]\nclient_certificates = \"required\"\n");

    let output = data
        .command()
        .args(["serve"])
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.client_certificates"), "{stderr}");
}

#[tokio::test]
async fn optional_serves_client_without_certificate() {
    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);
    let (dir, _) = issue(&data, &client, "issued");
    let server = start(&data, "optional");

    let anonymous = healthz(&server, None).await;
    let with_certificate = healthz(&server, Some(&Identity::read(&dir))).await;
    let stranger = healthz(&server, Some(&TestCa::new("Unknown CA").valid_leaf())).await;

    assert_eq!(anonymous, Ok(200));
    assert_eq!(with_certificate, Ok(200));
    // `optional` completes the handshake for an untrusted certificate and
    // leaves the rejection to endpoints that read it. `/healthz` reads none.
    assert_eq!(stranger, Ok(200));
}

/// Sends `GET /healthz` on an open HTTP/1.1 connection and returns the
/// status, body and content type.
async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>,
) -> (u16, String, Option<String>) {
    let request = hyper::Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        content_type,
    )
}

#[tokio::test]
async fn revocation_reaches_open_connection() {
    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);
    let (dir, serial) = issue(&data, &client, "issued");
    let identity = Identity::read(&dir);
    let server = start(&data, "required");

    let tls = connect(server.address, &server.ca_pem, Some(&identity)).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let (before, _, _) = get_on(&mut sender).await;
    assert_eq!(before, 200);

    data.cli(&["certs", "revoke", &serial, "--reason", "keyCompromise"]);
    let revoked_at = Instant::now();

    // The same connection: polled until the change feed delivers the
    // revocation, which must take less than one second.
    let (status, body, content_type) = loop {
        let answer = get_on(&mut sender).await;
        if answer.0 != 200 || revoked_at.elapsed() > Duration::from_secs(3) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delay = revoked_at.elapsed();
    assert_eq!(status, 401, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert!(body.contains("certificate_revoked"), "{body}");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");

    // A new handshake with the revoked certificate fails once the listener
    // has rebuilt its configuration with the new CRL.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut result = healthz(&server, Some(&identity)).await;
    while result.is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = healthz(&server, Some(&identity)).await;
    }
    assert!(result.is_err(), "expected a failed handshake: {result:?}");
    let logs = server.log_text();
    assert!(
        logs.contains("client certificate trust rebuilt"),
        "no rebuild after the revocation: {logs}"
    );

    // The rebuilt trust does not change the response on the open connection.
    let (after_rebuild, body, _) = get_on(&mut sender).await;
    assert_eq!(after_rebuild, 401, "{body}");
    assert!(body.contains("certificate_revoked"), "{body}");
}

/// A partner CRL file replaced while the server runs reaches a connection
/// opened before it, and new handshakes, without a restart.
#[tokio::test]
async fn replaced_partner_crl_reaches_open_connection() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let partner = trust_partner(&data);
    let created = create_tls_client(&data, "acme", &["--tls-san-dns", PARTNER_DNS]);
    let client_id = created["client_id"].as_str().unwrap().to_owned();
    let crl_path = data.path().join("partner-crl.pem");
    std::fs::write(&crl_path, partner.crl(&[&[0x0b, 0x01]])).unwrap();
    data.write_config(&format!(
        "[server]\nclient_certificates = \"required\"\npartner_crls = [{:?}]\n",
        crl_path.to_str().unwrap()
    ));
    let server = Server::start(&data);
    let now = time::OffsetDateTime::now_utc();
    let leaf = partner.leaf_with_serial(
        now - time::Duration::days(1),
        now + time::Duration::days(30),
        Some(&[0x0a, 0x07]),
    );

    let tls = connect(server.address, &server.ca_pem, Some(&leaf)).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let (before, body) = token_on(&mut sender, &client_id).await;
    assert_eq!(before, 200, "{body}");

    // Written to a new file and renamed, as an operator replaces a CRL, so
    // the server never reads half a file.
    let staged = data.path().join("partner-crl.pem.new");
    std::fs::write(&staged, partner.crl(&[&[0x0b, 0x01], &[0x0a, 0x07]])).unwrap();
    std::fs::rename(&staged, &crl_path).unwrap();

    // The same connection, polled with a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let answer = token_on(&mut sender, &client_id).await;
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
    let store = data.open_store().await;
    let record = failure_record(&store, Some(&client_id), "0a07").await;
    assert_eq!(record["code"], "revoked", "{record}");
    let issuer = record["certificate_issuer"].as_str().unwrap_or_default();
    assert!(issuer.contains("Partner CA"), "issuer {issuer:?}");
    store.close().await;

    let new_handshake = healthz(&server, Some(&leaf)).await;
    assert!(
        new_handshake.is_err(),
        "expected a failed handshake: {new_handshake:?}"
    );
}

/// Runs `openssl` with `args` and returns its standard output.
fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is required for this test");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Signs a leaf with serial `0a 0d` for a 1024-bit RSA key that openssl
/// generates, because aws-lc-rs generates no RSA key below 2048 bits, and
/// writes the certificate and key to `dir` as `weak-cert.pem` and
/// `weak-key.pem`.
fn weak_key_leaf(partner: &TestCa, dir: &Path) -> (PathBuf, PathBuf) {
    let key_path = dir.join("weak-key.pem");
    let key = key_path.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        key,
    ]);
    let public_pem = openssl(&["pkey", "-in", key, "-pubout"]);
    let public_key = rcgen::SubjectPublicKeyInfo::from_pem(&public_pem).unwrap();

    let mut params = CertificateParams::new(vec![PARTNER_DNS.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "partner service");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(SerialNumber::from_slice(&[0x0a, 0x0d]));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
    let cert = params.signed_by(&public_key, &partner.issuer).unwrap();
    let cert_path = dir.join("weak-cert.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    (cert_path, key_path)
}

/// A leaf with a 1024-bit RSA key chains to a trusted CA, but the
/// handshake cannot verify its CertificateVerify signature. In both modes
/// the failed handshake leaves an audit record and a metric with the
/// reason, as `certs verify` gives it.
#[tokio::test]
async fn weak_key_handshake_recorded() {
    for mode in ["optional", "required"] {
        let data = DataDir::new();
        create_client(&data);
        let partner = trust_partner(&data);
        let server = start(&data, mode);
        let (cert_path, key_path) = weak_key_leaf(&partner, data.path());

        // openssl's default security level refuses to use a key this short,
        // so level 0 lets it present one.
        let output = Command::new("openssl")
            .args(["s_client", "-quiet", "-servername", "localhost"])
            .args(["-connect", &server.address.to_string()])
            .arg("-CAfile")
            .arg(data.path().join("tls/ca.pem"))
            .arg("-cert")
            .arg(&cert_path)
            .arg("-key")
            .arg(&key_path)
            .args(["-cipher", "DEFAULT@SECLEVEL=0"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the openssl command is required for this test");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("HTTP/1.1 200"), "{mode}: {stdout}");

        let store = data.open_store().await;
        let record = failure_record(&store, None, "0a0d").await;
        assert_eq!(record["code"], "weak_key", "{mode}: {record}");
        assert_eq!(record["surface"], "tls", "{mode}: {record}");
        store.close().await;
        let (_, _, metrics) = server.scrape().await;
        assert!(
            metrics.contains("portcullis_certificate_verifications_total{outcome=\"weak_key\"} 1"),
            "{mode}: {metrics}"
        );
    }
}
