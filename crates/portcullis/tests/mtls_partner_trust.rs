//! Partner CAs trusted, changed and removed while the real binary runs
//! with client certificates `required` and the internal CA's CRL in play:
//! a CRL file given with `ca trust add --crl` and read again when it
//! changes, a CA trusted with `--no-crl`, and `ca trust remove` reaching
//! an open connection. One server serves every step.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper_util::rt::TokioIo;
use portcullis_store::{AuditAction, AuditFilter, Store};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use support::mtls::{
    Identity, PartnerCa, create_tls_client, failure_record, https, partner_leaf, token_on,
};
use support::{DataDir, Server};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Maximum wait for a change to reach the server. The README states about
/// two seconds, and the margin keeps a loaded test machine from failing.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(10);

const CRL_DNS: &str = "crl-partner.example.com";
const NO_CRL_DNS: &str = "no-crl-partner.example.com";

/// Writes `contents` to `path` through a rename, as an operator replaces a
/// CRL, so that the server never reads half a file.
fn replace_file(path: &std::path::Path, contents: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, contents).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// Requests a token for `client_id` with the certificate `identity` on a
/// new connection, and returns the status and body. A handshake that the
/// server rejects gives status 0 and the error.
async fn token_on_new_connection(
    server: &Server,
    identity: &Identity,
    client_id: &str,
) -> (u16, String) {
    let client = https(server, Some(identity));
    let sent = client
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}"
        ))
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (0, format!("{error:?}")),
    }
}

/// Repeats [`token_on_new_connection`] until `done` accepts the answer or
/// [`PROPAGATION_DEADLINE`] passes, and returns the last answer.
async fn token_until(
    server: &Server,
    identity: &Identity,
    client_id: &str,
    done: impl Fn(u16) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    loop {
        let answer = token_on_new_connection(server, identity, client_id).await;
        if done(answer.0) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens an HTTP/1.1 connection that presents `identity` and returns its
/// request sender.
async fn open_connection(
    server: &Server,
    identity: &Identity,
) -> hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&server.ca_pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = TcpStream::connect(server.address).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Waits up to five seconds for an `auth_failed` audit record of the
/// certificate `serial` with `code`.
async fn assert_failure_recorded(store: &Store, serial: &str, code: &str) {
    let filter = AuditFilter {
        tenant_id: None,
        action: Some(AuditAction::AuthFailed),
        target: None,
        limit: 200,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = store.list_audit(&filter).await.unwrap();
        let found = records.iter().any(|record| {
            record.details["certificate_serial"] == serial && record.details["code"] == code
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {code} audit record names serial {serial}: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn client_id_of(created: &Value) -> String {
    created["client_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn partner_trust_changes_reach_running_server() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let crl_client = client_id_of(&create_tls_client(
        &data,
        "acme",
        &["--tls-san-dns", CRL_DNS],
    ));
    let no_crl_client = client_id_of(&create_tls_client(
        &data,
        "acme",
        &["--tls-san-dns", NO_CRL_DNS],
    ));
    data.write_config("[server]\nclient_certificates = \"required\"\n");
    let server = Server::start(&data);
    let store = data.open_store().await;

    // A partner CA trusted with its CRL file on a running server: its
    // leaves authenticate without a restart.
    let with_crl = PartnerCa::named("Partner CA with CRL");
    let with_crl_pem = data.path().join("with-crl-ca.pem");
    std::fs::write(&with_crl_pem, &with_crl.pem).unwrap();
    let crl_path = data.path().join("with-crl.crl");
    std::fs::write(&crl_path, with_crl.empty_crl()).unwrap();
    let added = data.cli_json(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        with_crl_pem.to_str().unwrap(),
        "--crl",
        crl_path.to_str().unwrap(),
    ]);
    assert_eq!(added["revocation_check"], "crl_files", "{added}");
    assert_eq!(added["crl_files"][0], crl_path.to_str().unwrap(), "{added}");
    let crl_leaf = partner_leaf(&with_crl, CRL_DNS, &[0x0e, 0x01]);
    let (status, body) = token_until(&server, &crl_leaf, &crl_client, |s| s == 200).await;
    assert_eq!(status, 200, "{body}");

    // The CRL file replaced: the server reads it again and the leaf it
    // now lists is rejected.
    replace_file(&crl_path, &with_crl.revoking_crl(&[0x0e, 0x01], None));
    let (status, body) = token_until(&server, &crl_leaf, &crl_client, |s| s != 200).await;
    assert!(status == 0 || status == 401, "{status} {body}");
    // Handshakes before the CA was trusted left `unknown_issuer` records
    // of the same serial.
    assert_failure_recorded(&store, "0e01", "revoked").await;

    // A partner CA that publishes no CRL, trusted with --no-crl.
    let without_crl = PartnerCa::named("Partner CA without CRL");
    let without_crl_pem = data.path().join("no-crl-ca.pem");
    std::fs::write(&without_crl_pem, &without_crl.pem).unwrap();
    let unchecked = data.cli_json(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        without_crl_pem.to_str().unwrap(),
        "--no-crl",
    ]);
    assert_eq!(unchecked["revocation_check"], "unchecked", "{unchecked}");
    let no_crl_leaf = partner_leaf(&without_crl, NO_CRL_DNS, &[0x0f, 0x01]);
    let (status, body) = token_until(&server, &no_crl_leaf, &no_crl_client, |s| s == 200).await;
    assert_eq!(status, 200, "{body}");

    let listed = data.cli_json(&["ca", "trust", "list", "--tenant", "acme"]);
    let checks: Vec<&Value> = listed["trusted_cas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ca| &ca["revocation_check"])
        .collect();
    assert_eq!(checks, ["crl_files", "unchecked"], "{listed}");

    // Removing the CA reaches a connection opened before the removal, and
    // new handshakes.
    let mut open = open_connection(&server, &no_crl_leaf).await;
    let (before, body) = token_on(&mut open, &no_crl_client).await;
    assert_eq!(before, 200, "{body}");
    let fingerprint = unchecked["sha256"].as_str().unwrap();
    let removed = data.cli_json(&["ca", "trust", "remove", "--tenant", "acme", fingerprint]);
    assert_eq!(removed["id"], unchecked["id"], "{removed}");
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    let (status, body) = loop {
        let answer = token_on(&mut open, &no_crl_client).await;
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 401, "{body}");
    let record = failure_record(&store, Some(&no_crl_client), "0f01").await;
    assert_eq!(record["code"], "unknown_issuer", "{record}");
    assert_eq!(record["surface"], "oauth", "{record}");
    let (status, body) = token_on_new_connection(&server, &no_crl_leaf, &no_crl_client).await;
    assert_eq!(status, 0, "expected a failed handshake: {status} {body}");

    let filter = AuditFilter {
        tenant_id: None,
        action: Some(AuditAction::TrustedCaRemoved),
        target: Some(unchecked["id"].as_str().unwrap().to_owned()),
        limit: 10,
    };
    let records = store.list_audit(&filter).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].details["sha256"], fingerprint);

    // Removing it again names what is missing.
    let error = data.cli_error(&["ca", "trust", "remove", "--tenant", "acme", fingerprint]);
    assert!(error.contains("trusts no CA"), "{error}");

    // The CA with its CRL file is still trusted, and its other leaves
    // still authenticate.
    let other_leaf = partner_leaf(&with_crl, CRL_DNS, &[0x0e, 0x02]);
    let (status, body) = token_on_new_connection(&server, &other_leaf, &crl_client).await;
    assert_eq!(status, 200, "{body}");
    store.close().await;
}

#[test]
fn trust_add_rejects_bad_input() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    let partner = PartnerCa::new();
    let partner_pem = data.path().join("partner-ca.pem");
    std::fs::write(&partner_pem, &partner.pem).unwrap();

    let missing = data.path().join("missing.crl");
    let error = data.cli_error(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        partner_pem.to_str().unwrap(),
        "--crl",
        missing.to_str().unwrap(),
    ]);
    assert!(error.contains("invalid CRL file"), "{error}");
    assert!(error.contains("missing.crl"), "{error}");

    let other = PartnerCa::named("Other partner CA");
    let foreign_crl = data.path().join("foreign.crl");
    std::fs::write(&foreign_crl, other.empty_crl()).unwrap();
    let error = data.cli_error(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        partner_pem.to_str().unwrap(),
        "--crl",
        foreign_crl.to_str().unwrap(),
    ]);
    assert!(error.contains("no CRL issued and signed by"), "{error}");

    let error = data.cli_error(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        partner_pem.to_str().unwrap(),
        "--crl",
        foreign_crl.to_str().unwrap(),
        "--no-crl",
    ]);
    assert!(error.contains("cannot be used with"), "{error}");

    let listed = data.cli_json(&["ca", "trust", "list", "--tenant", "acme"]);
    assert_eq!(listed["trusted_cas"], serde_json::json!([]), "{listed}");
}

#[test]
fn trust_add_rejects_directory_name_constraints() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    let mut permitted = rcgen::DistinguishedName::new();
    permitted.push(rcgen::DnType::OrganizationName, "Partner");
    let constraints = rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DirectoryName(permitted)],
        excluded_subtrees: Vec::new(),
    };
    let partner = PartnerCa::with_name_constraints("CA dns", Some(constraints));
    let partner_pem = data.path().join("partner-ca.pem");
    std::fs::write(&partner_pem, &partner.pem).unwrap();

    let error = data.cli_error(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        partner_pem.to_str().unwrap(),
        "--no-crl",
    ]);

    assert!(error.contains("unsupported name constraint"), "{error}");
    assert!(error.contains("directoryName"), "{error}");
    let listed = data.cli_json(&["ca", "trust", "list", "--tenant", "acme"]);
    assert_eq!(listed["trusted_cas"], serde_json::json!([]), "{listed}");
}
