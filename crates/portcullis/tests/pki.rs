//! The internal CA through the real binary: `ca init`, `certs sign` with
//! a CSR from `openssl req`, `certs issue`, `certs revoke`, and the CA
//! certificate and CRL served at `/ca/ca.pem` and `/ca/crl.pem`. The
//! `openssl` command checks what Portcullis writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use portcullis_core::crypto::MasterKey;
use secrecy::ExposeSecret;
use serde_json::Value;
use support::{DataDir, Server, all_bytes_under, contains_bytes};

/// Runs `openssl` with `args` and returns its output, whatever the status.
fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command is required for these tests")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Creates tenant acme and a `client_credentials` client of it, and
/// returns the client's id.
fn create_client(data: &DataDir) -> String {
    data.cli(&["tenants", "create", "acme"]);
    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Partner",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--auth-method",
        "tls_client_auth",
    ]);
    created["client_id"].as_str().unwrap().to_owned()
}

/// Asserts that `openssl verify` accepts `cert` as a TLS client
/// certificate issued by `ca`.
fn assert_openssl_accepts(ca: &Path, cert: &Path) {
    let output = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        "-purpose",
        "sslclient",
        cert.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "openssl verify rejected {}: {}{}",
        cert.display(),
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Strips colons and case from a serial as openssl or Portcullis print it.
fn normalize_serial(serial: &str) -> String {
    serial.replace(':', "").to_ascii_lowercase()
}

#[test]
fn ca_init_twice_fails_clearly() {
    let data = DataDir::new();
    let created = data.cli_json(&["ca", "init"]);
    assert!(
        created["certificate_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let again = data.command().args(["ca", "init"]).output().unwrap();
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn certs_need_initialized_ca() {
    let data = DataDir::new();
    let client = create_client(&data);
    let out = data.path().join("issued");
    let output = data
        .command()
        .args(["certs", "issue", "--client", &client, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("portcullis ca init"), "{stderr}");
    assert!(!out.exists(), "certs issue created {}", out.display());
}

/// Asserts that `certs issue` and `certs sign` both fail for `client` with a
/// message containing each of `expected`, and returns the `certs issue`
/// message.
fn assert_certs_rejected(data: &DataDir, client: &str, expected: &[&str]) -> String {
    let out = data.path().join(format!("rejected-{client}"));
    let csr = data.path().join("rejected.csr");
    std::fs::write(&csr, csr_pem()).unwrap();
    let issued = data
        .command()
        .args(["certs", "issue", "--client", client, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let signed = data
        .command()
        .args(["certs", "sign", "--client", client, "--csr"])
        .arg(&csr)
        .output()
        .unwrap();
    for (command, output) in [("issue", &issued), ("sign", &signed)] {
        assert!(!output.status.success(), "certs {command} succeeded");
        let stderr = text(&output.stderr);
        for part in expected {
            assert!(stderr.contains(part), "certs {command}: {stderr}");
        }
    }
    // A rejected `certs issue` creates no directory and leaves an existing
    // one as it was.
    assert!(!out.exists(), "certs issue created {}", out.display());
    let existing = data.path().join(format!("existing-{client}"));
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("cert.pem"), "kept").unwrap();
    let into_existing = data
        .command()
        .args(["certs", "issue", "--client", client, "--out"])
        .arg(&existing)
        .output()
        .unwrap();
    assert!(!into_existing.status.success(), "certs issue succeeded");
    let entries: Vec<_> = std::fs::read_dir(&existing)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["cert.pem"]);
    assert_eq!(std::fs::read(existing.join("cert.pem")).unwrap(), b"kept");
    text(&issued.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_rejected_for_unissuable_clients() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let create = |extra: &[&str]| {
        let mut args = vec![
            "clients",
            "create",
            "--tenant",
            "acme",
            "--name",
            "Partner",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "orders:read",
        ];
        args.extend_from_slice(extra);
        data.cli_json(&args)["client_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let secret_client = create(&[]);
    let partner_client = create(&[
        "--auth-method",
        "tls_client_auth",
        "--tls-san-dns",
        "partner-svc.example.com",
    ]);
    let dn_client = create(&[
        "--auth-method",
        "tls_client_auth",
        "--tls-subject-dn",
        "CN=partner service,O=Acme",
    ]);

    let message = assert_certs_rejected(
        &data,
        &secret_client,
        &[&secret_client, "client_secret_basic", "tls_client_auth"],
    );
    assert!(message.contains("urn:portcullis:client:"), "{message}");
    let needed = format!("urn:portcullis:client:{partner_client}");
    assert_certs_rejected(
        &data,
        &partner_client,
        &[
            "tls_client_auth_san_dns",
            "partner-svc.example.com",
            &needed,
        ],
    );
    let needed = format!("urn:portcullis:client:{dn_client}");
    assert_certs_rejected(
        &data,
        &dn_client,
        &["tls_client_auth_subject_dn", "CN=partner service", &needed],
    );

    // Nothing was signed, stored or audited as issued.
    let store = data.open_store().await;
    let stored = store
        .list_certificates(portcullis_store::CertificateFilter::All)
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    let issued = store
        .list_audit(&portcullis_store::AuditFilter {
            tenant_id: None,
            action: Some(portcullis_store::AuditAction::CertificateIssued),
            target: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert!(issued.is_empty(), "{issued:?}");
}

#[test]
fn openssl_csr_signed_as_client_certificate() {
    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("partner.key");
    let csr = work.path().join("partner.csr");
    let cert = work.path().join("partner.pem");

    // The CSR requests a DNS name and CA:TRUE, and neither may reach the
    // certificate.
    let generated = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-subj",
        "/CN=partner-svc.example.com",
        "-addext",
        "subjectAltName=DNS:partner-svc.example.com",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-out",
        csr.to_str().unwrap(),
    ]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));

    let signed = data.cli_json(&[
        "certs",
        "sign",
        "--client",
        &client,
        "--csr",
        csr.to_str().unwrap(),
        "--days",
        "30",
        "--out",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(signed["client_id"], client.as_str());
    assert_eq!(signed["status"], "active");

    let ca_path = work.path().join("ca.pem");
    let ca = data.cli_json(&["ca", "trust", "list", "--tenant", "acme"]);
    assert_eq!(ca["trusted_cas"], Value::Array(Vec::new()));
    let issued_dir = work.path().join("issued");
    data.cli(&[
        "certs",
        "issue",
        "--client",
        &client,
        "--out",
        issued_dir.to_str().unwrap(),
    ]);
    std::fs::copy(issued_dir.join("ca.pem"), &ca_path).unwrap();
    assert_openssl_accepts(&ca_path, &cert);

    let shown = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    let shown = text(&shown.stdout);
    assert!(shown.contains("CA:FALSE"), "{shown}");
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
    assert!(!shown.contains("TLS Web Server Authentication"), "{shown}");
    assert!(
        shown.contains(&format!("URI:urn:portcullis:client:{client}")),
        "{shown}"
    );
    assert!(!shown.contains("DNS:"), "{shown}");
    assert!(
        shown.contains(&format!("Subject: CN = {client}")),
        "{shown}"
    );

    let serial = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-serial"]);
    let serial = text(&serial.stdout);
    let serial = serial.trim().trim_start_matches("serial=");
    assert_eq!(normalize_serial(serial), signed["serial"].as_str().unwrap());
}

/// `/proc/self` is a directory in which nobody, root included, can create
/// a directory, so the files fail to be written after the CA issued the
/// certificate. The certificate, whose key is then lost, must be revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_issue_output_revokes_certificate() {
    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);

    let output = data
        .command()
        .args(["certs", "issue", "--client", &client, "--out", "/proc/self"])
        .output()
        .unwrap();

    assert!(!output.status.success(), "certs issue succeeded");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("could not be written"), "{stderr}");
    assert!(stderr.contains("it was revoked"), "{stderr}");
    let store = data.open_store().await;
    let stored = store
        .list_certificates(portcullis_store::CertificateFilter::All)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].revoked_at.is_some(), "{stored:?}");
    assert!(stderr.contains(stored[0].serial.as_str()), "{stderr}");
    assert_eq!(
        stored[0].revoked_reason.as_deref(),
        Some("cessationOfOperation")
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_certificate_revoked_into_crl() {
    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);
    let out = data.path().join("issued");
    let issued = data.cli_json(&[
        "certs",
        "issue",
        "--client",
        &client,
        "--out",
        out.to_str().unwrap(),
    ]);
    let serial = issued["serial"].as_str().unwrap().to_owned();

    let key_mode = std::fs::metadata(out.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_openssl_accepts(&out.join("ca.pem"), &out.join("cert.pem"));

    let listed = data.cli_json(&["certs", "list", "--client", &client]);
    assert_eq!(listed["certificates"].as_array().unwrap().len(), 1);
    let by_tenant = data.cli_json(&["certs", "list", "--tenant", "acme"]);
    assert_eq!(by_tenant["certificates"][0]["serial"], serial.as_str());

    let server = Server::start(&data);
    let http = server.client();
    let ca = http.get(server.url("/ca/ca.pem")).send().await.unwrap();
    assert_eq!(ca.status(), 200);
    assert!(ca.headers().contains_key("cache-control"));
    let served_ca = ca.text().await.unwrap();
    assert_eq!(
        served_ca,
        std::fs::read_to_string(out.join("ca.pem")).unwrap()
    );

    // A CRL signed before the revocation, so the server has one cached
    // when another process revokes.
    let empty = http.get(server.url("/ca/crl.pem")).send().await.unwrap();
    assert_eq!(empty.status(), 200);
    let empty_path = data.path().join("empty-crl.pem");
    std::fs::write(&empty_path, empty.text().await.unwrap()).unwrap();
    let empty_text = openssl(&[
        "crl",
        "-in",
        empty_path.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        text(&empty_text.stdout).contains("No Revoked Certificates"),
        "{}",
        text(&empty_text.stdout)
    );

    let revoked = data.cli_json(&["certs", "revoke", &serial, "--reason", "keyCompromise"]);
    assert_eq!(revoked["status"], "revoked");
    let again = data
        .command()
        .args(["certs", "revoke", &serial, "--reason", "superseded"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already revoked"),
        "{}",
        text(&again.stderr)
    );

    let crl = http.get(server.url("/ca/crl.pem")).send().await.unwrap();
    assert_eq!(crl.status(), 200);
    let crl_path = data.path().join("crl.pem");
    std::fs::write(&crl_path, crl.text().await.unwrap()).unwrap();
    let shown = openssl(&[
        "crl",
        "-in",
        crl_path.to_str().unwrap(),
        "-noout",
        "-text",
        "-CAfile",
        out.join("ca.pem").to_str().unwrap(),
    ]);
    let shown_text = text(&shown.stdout);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    assert!(
        text(&shown.stderr).contains("verify OK"),
        "{}",
        text(&shown.stderr)
    );
    assert!(
        normalize_serial(&shown_text).contains(&serial),
        "serial {serial} missing from {shown_text}"
    );
    assert!(shown_text.contains("Next Update"), "{shown_text}");

    let checked = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        crl_path.to_str().unwrap(),
        "-CAfile",
        out.join("ca.pem").to_str().unwrap(),
        out.join("cert.pem").to_str().unwrap(),
    ]);
    assert!(!checked.status.success());
    assert!(
        text(&checked.stdout).contains("revoked") || text(&checked.stderr).contains("revoked"),
        "{}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    server.stop().await;
}

/// Returns the text of the CRL entry of `serial` in `openssl crl -text`
/// output: from its `Serial Number:` line to the next entry.
fn crl_entry(crl_text: &str, serial: &str) -> String {
    crl_text
        .split("Serial Number:")
        .skip(1)
        .find(|entry| {
            let first_line = entry.lines().next().unwrap_or_default();
            normalize_serial(first_line.trim()) == serial
        })
        .unwrap_or_else(|| panic!("serial {serial} missing from {crl_text}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_entries_carry_revocation_reasons() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;

    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);
    let issue = |name: &str| {
        let out = data.path().join(name);
        let issued = data.cli_json(&[
            "certs",
            "issue",
            "--client",
            &client,
            "--out",
            out.to_str().unwrap(),
        ]);
        issued["serial"].as_str().unwrap().to_owned()
    };
    let compromised = issue("compromised");
    let retired = issue("retired");
    let plain = issue("plain");
    let replaced = issue("replaced");

    // Only RFC 5280 names are accepted, and certificateHold is not offered.
    for reason in ["key compromise", "certificateHold", "removeFromCRL"] {
        let rejected = data
            .command()
            .args(["certs", "revoke", &compromised, "--reason", reason])
            .output()
            .unwrap();
        assert_eq!(rejected.status.code(), Some(2), "{reason}");
        assert!(
            text(&rejected.stderr).contains("keyCompromise"),
            "{}",
            text(&rejected.stderr)
        );
    }
    data.cli(&["certs", "revoke", &compromised, "--reason", "keyCompromise"]);
    data.cli(&[
        "certs",
        "revoke",
        &retired,
        "--reason",
        "CessationOfOperation",
    ]);
    data.cli(&["certs", "revoke", &plain, "--reason", "unspecified"]);

    let (_, writer) = data.create_key(&["--operator", "--scopes", "admin:write"]);
    let server = Server::start(&data);
    let revoke = format!("/certificates/{replaced}/revoke");
    let (status, body) = admin(
        &server,
        Method::POST,
        &revoke,
        &writer,
        Some(json!({ "reason": "certificateHold" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "reason");
    let (status, body) = admin(
        &server,
        Method::POST,
        &revoke,
        &writer,
        Some(json!({ "reason": "superseded" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked_reason"], "superseded");

    let crl = server
        .client()
        .get(server.url("/ca/crl.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(crl.status(), 200);
    let crl_path = data.path().join("crl.pem");
    std::fs::write(&crl_path, crl.text().await.unwrap()).unwrap();
    let shown = openssl(&["crl", "-in", crl_path.to_str().unwrap(), "-noout", "-text"]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);

    let compromised_entry = crl_entry(&shown, &compromised);
    assert!(
        compromised_entry.contains("CRL Reason Code"),
        "{compromised_entry}"
    );
    assert!(
        compromised_entry.contains("Key Compromise"),
        "{compromised_entry}"
    );
    let retired_entry = crl_entry(&shown, &retired);
    assert!(
        retired_entry.contains("Cessation Of Operation"),
        "{retired_entry}"
    );
    let replaced_entry = crl_entry(&shown, &replaced);
    assert!(replaced_entry.contains("Superseded"), "{replaced_entry}");
    // RFC 5280 §5.3.1: an unspecified reason is left out of the entry.
    let plain_entry = crl_entry(&shown, &plain);
    assert!(!plain_entry.contains("CRL Reason Code"), "{plain_entry}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_key_never_stored_unsealed() {
    let data = DataDir::new();
    let client = create_client(&data);
    data.cli(&["ca", "init"]);
    data.cli(&[
        "certs",
        "issue",
        "--client",
        &client,
        "--out",
        data.path().join("issued").to_str().unwrap(),
    ]);

    let store = data.open_store().await;
    let ca = store.active_ca().await.unwrap().unwrap();
    store.close().await;
    let master = std::fs::read_to_string(data.path().join("master.key")).unwrap();
    let sealing = MasterKey::from_encoded(master.trim())
        .unwrap()
        .sealing_key(portcullis_server::pki::ca::CA_KEY_PURPOSE);
    let pkcs8 = sealing
        .open(&ca.sealed_private_key, ca.id.as_bytes())
        .unwrap();
    let pkcs8 = pkcs8.expose_secret();

    // The private scalar follows `02 01 01 04 20` (ECPrivateKey version 1,
    // then a 32-byte OCTET STRING, RFC 5915 §3) inside the PKCS#8.
    let marker = [0x02, 0x01, 0x01, 0x04, 0x20];
    let start = pkcs8
        .windows(marker.len())
        .position(|window| window == marker)
        .unwrap()
        + marker.len();
    let scalar = &pkcs8[start..start + 32];

    let everything = all_bytes_under(data.path());
    assert!(!contains_bytes(&everything, pkcs8));
    assert!(!contains_bytes(&everything, scalar));
    // The second line of a PEM body (bytes 48 to 95) covers most of the
    // scalar, so it is unique to this key, unlike the first line.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(pkcs8);
    assert!(!contains_bytes(&everything, &encoded.as_bytes()[64..128]));
}

/// Sends an admin API request with `key` and returns the status and the
/// JSON body (`Null` when the body is not JSON).
async fn admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut request = server
        .client()
        .request(method, server.url(&format!("/admin/v1{path}")))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Generates a PKCS#10 request, PEM, for a fresh P-256 key.
fn csr_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

/// Generates a self-signed partner CA certificate (CA:TRUE) and a leaf it
/// signed, both PEM.
fn partner_ca_and_leaf() -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Partner CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["partner-svc.example.com".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_manages_ca() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;

    let data = DataDir::new();
    let client = create_client(&data);
    let (_, writer) = data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let (_, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let server = Server::start(&data);

    let before = server
        .client()
        .get(server.url("/ca/ca.pem"))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), StatusCode::NOT_FOUND);
    let (status, body) = admin(&server, Method::POST, "/ca/init", &reader, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = admin(&server, Method::POST, "/ca/init", &writer, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = admin(&server, Method::POST, "/ca/init", &writer, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "ca_exists");

    let certificates = format!("/clients/{client}/certificates");
    let (status, signed) = admin(
        &server,
        Method::POST,
        &certificates,
        &writer,
        Some(json!({ "csr": csr_pem(), "days": 30 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{signed}");
    assert_eq!(signed["client_id"], client.as_str());
    let serial = signed["serial"].as_str().unwrap().to_owned();

    let (status, body) = admin(
        &server,
        Method::POST,
        &certificates,
        &writer,
        Some(json!({ "csr": "not a CSR" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "csr");
    let (status, body) = admin(
        &server,
        Method::POST,
        &certificates,
        &writer,
        Some(json!({ "csr": csr_pem(), "days": 398 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "days");

    let (status, listed) = admin(&server, Method::GET, &certificates, &reader, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["certificates"].as_array().unwrap().len(), 1);

    // A client that no certificate of the CA would authenticate gets none.
    let (status, secret_client) = admin(
        &server,
        Method::POST,
        "/tenants/acme/clients",
        &writer,
        Some(json!({
            "client_name": "Secret client",
            "grant_types": ["client_credentials"],
            "scope": "orders:read",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{secret_client}");
    let (status, partner_client) = admin(
        &server,
        Method::POST,
        "/tenants/acme/clients",
        &writer,
        Some(json!({
            "client_name": "Partner client",
            "grant_types": ["client_credentials"],
            "scope": "orders:read",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_san_dns": "partner-svc.example.com",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{partner_client}");
    let cases = [
        (
            &secret_client,
            "client_not_tls_client_auth",
            "client_secret_basic",
        ),
        (
            &partner_client,
            "client_mapping_not_issuable",
            "partner-svc.example.com",
        ),
    ];
    for (rejected, code, detail) in cases {
        let id = rejected["client_id"].as_str().unwrap();
        let path = format!("/clients/{id}/certificates");
        let (status, body) = admin(
            &server,
            Method::POST,
            &path,
            &writer,
            Some(json!({ "csr": csr_pem() })),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["code"], code, "{body}");
        let message = body["detail"].as_str().unwrap();
        assert!(message.contains(detail), "{message}");
        assert!(message.contains("urn:portcullis:client:"), "{message}");
        let (status, listed) = admin(&server, Method::GET, &path, &reader, None).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["certificates"], json!([]), "{code}");
    }

    let revoke = format!("/certificates/{serial}/revoke");
    let reason = json!({ "reason": "superseded" });
    let (status, revoked) = admin(
        &server,
        Method::POST,
        &revoke,
        &writer,
        Some(reason.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    let (status, body) = admin(&server, Method::POST, &revoke, &writer, Some(reason)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "certificate_revoked");
    let (status, _) = admin(
        &server,
        Method::POST,
        "/certificates/not-hex/revoke",
        &writer,
        Some(json!({ "reason": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (partner_ca, partner_leaf) = partner_ca_and_leaf();
    let trusted = "/tenants/acme/trusted-cas";
    let (status, added) = admin(
        &server,
        Method::POST,
        trusted,
        &writer,
        Some(json!({ "certificate_pem": partner_ca })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["subject"], "CN=Partner CA");
    let (status, body) = admin(
        &server,
        Method::POST,
        trusted,
        &writer,
        Some(json!({ "certificate_pem": partner_leaf })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = admin(
        &server,
        Method::POST,
        "/tenants/nobody/trusted-cas",
        &writer,
        Some(json!({ "certificate_pem": partner_ca })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, listed) = admin(&server, Method::GET, trusted, &reader, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["trusted_cas"].as_array().unwrap().len(), 1);
    assert_eq!(listed["trusted_cas"][0]["revocation_check"], "partner_crls");

    let one = format!("{trusted}/{}", added["id"].as_str().unwrap());
    let revocation = format!("{one}/revocation");
    let (status, changed) = admin(
        &server,
        Method::PUT,
        &revocation,
        &writer,
        Some(json!({ "no_crl": true })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["revocation_check"], "unchecked");
    let (status, body) = admin(
        &server,
        Method::PUT,
        &revocation,
        &writer,
        Some(json!({ "crl_files": ["partner.crl"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "crl_files");
    let (status, body) = admin(&server, Method::DELETE, &one, &reader, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, removed) = admin(&server, Method::DELETE, &one, &writer, None).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["id"], added["id"]);
    let (status, body) = admin(&server, Method::DELETE, &one, &writer, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, listed) = admin(&server, Method::GET, trusted, &reader, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["trusted_cas"], json!([]));
    server.stop().await;
}
