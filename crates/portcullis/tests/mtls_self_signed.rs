//! `self_signed_tls_client_auth` (RFC 8705 §2.2) on a listener that
//! requires client certificates. A self-signed certificate completes the
//! handshake only when its key is registered for a live client. A client
//! registered while the server runs is picked up without a restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_server::pki::verify::thumbprint_sha256;
use rcgen::{CertificateParams, KeyPair};
use reqwest::StatusCode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use support::upstream::Upstream;
use support::{DataDir, Server};

/// A self-signed certificate, its private key and the JWK of its key.
struct SelfSigned {
    cert_pem: String,
    key_pem: String,
    jwk: Value,
}

impl SelfSigned {
    /// Returns the JWK of the certificate's key with no `kid`.
    fn jwk_without_kid(&self) -> Value {
        let mut jwk = self.jwk.clone();
        jwk.as_object_mut().unwrap().remove("kid");
        jwk
    }

    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["svc.example.com".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
        let point = key.public_key_raw();
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "kid": "self-signed",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            jwk,
        }
    }

    fn thumbprint(&self) -> String {
        let leaf = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        thumbprint_sha256(&leaf)
    }
}

/// Registers a `self_signed_tls_client_auth` client of acme with the key
/// of `certificate` and returns its id.
fn register(data: &DataDir, certificate: &SelfSigned, name: &str) -> String {
    register_keys(data, std::slice::from_ref(&certificate.jwk), name)
}

/// Registers a `self_signed_tls_client_auth` client of acme with the JWKS
/// of `keys` and returns its id.
fn register_keys(data: &DataDir, keys: &[Value], name: &str) -> String {
    let path = data.path().join(format!("{name}-jwks.json"));
    let jwks = serde_json::json!({ "keys": keys });
    std::fs::write(&path, jwks.to_string()).unwrap();
    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        name,
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--auth-method",
        "self_signed_tls_client_auth",
        "--jwks",
        path.to_str().unwrap(),
    ]);
    created["client_id"].as_str().unwrap().to_owned()
}

/// Builds an HTTPS client of `server` that presents `certificate`.
fn https(server: &Server, certificate: &SelfSigned) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&server.ca_pem).unwrap();
    let pem = format!("{}{}", certificate.cert_pem, certificate.key_pem);
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", server.address)
        .no_proxy()
        .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// Sends a `client_credentials` request for `client_id`, presenting
/// `certificate`, and returns the status and JSON body, or the error of a
/// failed handshake.
async fn token(
    server: &Server,
    certificate: &SelfSigned,
    client_id: &str,
) -> Result<(StatusCode, Value), String> {
    let response = https(server, certificate)
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}"
        ))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Retries [`token`] until it returns 200 or `limit` passes, because the
/// listener reloads registered keys every few seconds.
async fn token_within(
    server: &Server,
    certificate: &SelfSigned,
    client_id: &str,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let outcome = token(server, certificate, client_id).await;
        if let Ok((StatusCode::OK, body)) = outcome {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no token within {limit:?}: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn cnf_thumbprint(body: &Value) -> Value {
    let jwt = body["access_token"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["cnf"]["x5t#S256"].clone()
}

#[tokio::test]
async fn required_mode_admits_registered_keys() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let registered = SelfSigned::new();
    let client_id = register(&data, &registered, "first");
    data.write_config("[server]\nclient_certificates = \"required\"\n");
    let server = Server::start(&data);

    let body = token_within(&server, &registered, &client_id, Duration::from_secs(10)).await;
    assert_eq!(cnf_thumbprint(&body), registered.thumbprint());

    // A self-signed certificate whose key no client registered fails the
    // handshake.
    let stranger = SelfSigned::new();
    let outcome = token(&server, &stranger, &client_id).await;
    assert!(outcome.is_err(), "expected a failed handshake: {outcome:?}");

    // A client registered while the server runs.
    let later = SelfSigned::new();
    let later_id = register(&data, &later, "later");
    let body = token_within(&server, &later, &later_id, Duration::from_secs(15)).await;
    assert_eq!(cnf_thumbprint(&body), later.thumbprint());
}

#[tokio::test]
async fn jwks_without_kid_authenticates() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    // RFC 7517 §4.5 makes kid optional: neither key of this set has one,
    // and the certificate's key is the second.
    let decoy = SelfSigned::new();
    let registered = SelfSigned::new();
    let keys = [decoy.jwk_without_kid(), registered.jwk_without_kid()];
    let client_id = register_keys(&data, &keys, "no-kid");
    data.write_config(&format!(
        r#"[server]
client_certificates = "required"

[[routes]]
path_prefix = "/orders"
upstream = "{upstream}"
auth = ["mtls"]

[routes.scopes]
GET = ["orders:read"]
"#,
        upstream = upstream.url(),
    ));
    let server = Server::start(&data);

    let body = token_within(&server, &registered, &client_id, Duration::from_secs(10)).await;
    assert_eq!(cnf_thumbprint(&body), registered.thumbprint());

    let response = https(&server, &registered)
        .get(server.url("/orders/items"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{answer}");
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header("x-portcullis-client-id"),
        Some(client_id.as_str())
    );
    assert_eq!(
        seen.header("x-portcullis-auth-method"),
        Some("self_signed_tls_client_auth")
    );
    assert_eq!(
        seen.header("x-portcullis-client-certificate-sha256"),
        Some(registered.thumbprint().as_str())
    );
}

/// The gateway finds a self-signed client from the certificate's key, so a
/// second client, of any tenant, that registers a copy of the key would
/// make the certificate match two clients and lock the first one out.
#[test]
fn registered_key_rejected_for_another_client() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "beta"]);
    let victim = SelfSigned::new();
    register(&data, &victim, "victim");

    let path = data.path().join("copied-jwks.json");
    let jwks = serde_json::json!({ "keys": [victim.jwk_without_kid()] });
    std::fs::write(&path, jwks.to_string()).unwrap();
    let error = data.cli_error(&[
        "clients",
        "create",
        "--tenant",
        "beta",
        "--name",
        "copycat",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--auth-method",
        "self_signed_tls_client_auth",
        "--jwks",
        path.to_str().unwrap(),
    ]);
    assert!(error.contains("already registered"), "{error}");
    let beta = data.cli_json(&["clients", "list", "--tenant", "beta"]);
    assert_eq!(beta["clients"].as_array().map(Vec::len), Some(0), "{beta}");
}
