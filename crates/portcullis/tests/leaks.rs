//! `POST /v1/leaks` on a running server: reports signed with a P-256 key
//! pair made here, whose public key is in `[leaks]`, and reports that are
//! forged, signed with an unknown key id or too large.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis_store::{
    AlertFilter, AlertRecord, AlertRule, AlertSeverity, AuditAction, AuditFilter,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DataDir, Server};

const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
const LEAK_URL: &str = "https://github.com/octo/demo/blob/0123abc/config.env";

/// A P-256 key pair that signs reports as the sender would.
struct Signer(EcdsaKeyPair);

impl Signer {
    fn generate() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        Self(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap())
    }

    /// Returns the public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    fn public_pem(&self) -> String {
        let der = self.0.public_key().as_der().unwrap();
        let encoded = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature = self.0.sign(&SystemRandom::new(), body).unwrap();
        STANDARD.encode(signature.as_ref())
    }
}

/// Creates a data directory with tenant `acme`, a live key and a revoked key, and
/// `[leaks]` trusting `signer` under [`KEY_ID`] with `action`.
fn setup(signer: &Signer, action: &str) -> (DataDir, (String, String), (String, String)) {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    let live = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let revoked = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    data.cli(&["keys", "revoke", &revoked.0]);

    let pem_path = data.path().join("github-leaks.pem");
    std::fs::write(&pem_path, signer.public_pem()).unwrap();
    data.write_config(&format!(
        "[leaks]\naction = \"{action}\"\npublic_keys = [{{ id = \"{KEY_ID}\", pem_file = \"{}\" }}]\n",
        pem_path.display()
    ));
    (data, live, revoked)
}

fn report_item(token: &str) -> Value {
    json!({
        "token": token,
        "type": "portcullis_api_key",
        "url": LEAK_URL,
        "source": "content",
    })
}

async fn post(
    server: &Server,
    body: &[u8],
    key_id: Option<&str>,
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .client()
        .post(server.url("/v1/leaks"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(key_id) = key_id {
        request = request.header("Github-Public-Key-Identifier", key_id);
    }
    if let Some(signature) = signature {
        request = request.header("Github-Public-Key-Signature", signature);
    }
    request.send().await.unwrap()
}

/// Reads the `leak_reported` alerts of `key_id` from the store.
async fn leak_alerts(data: &DataDir, key_id: &str) -> Vec<AlertRecord> {
    read_alerts(
        data,
        AlertFilter {
            rule: Some(AlertRule::LeakReported),
            credential: Some(key_id.to_owned()),
            limit: 10,
            ..AlertFilter::default()
        },
    )
    .await
}

/// Reads every `leak_reported` alert from the store.
async fn leak_alerts_all(data: &DataDir) -> Vec<AlertRecord> {
    read_alerts(
        data,
        AlertFilter {
            rule: Some(AlertRule::LeakReported),
            limit: 10,
            ..AlertFilter::default()
        },
    )
    .await
}

async fn read_alerts(data: &DataDir, filter: AlertFilter) -> Vec<AlertRecord> {
    let store = data.open_store().await;
    let alerts = store.list_alerts(&filter).await.unwrap();
    store.close().await;
    alerts
}

async fn leak_records(data: &DataDir, key_id: &str) -> Vec<portcullis_store::AuditEvent> {
    let store = data.open_store().await;
    let events = store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::KeyLeakReported),
            target: Some(key_id.to_owned()),
            limit: 10,
        })
        .await
        .unwrap();
    store.close().await;
    events
}

async fn assert_rejected(response: reqwest::Response, status: StatusCode) {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    if status == StatusCode::UNAUTHORIZED {
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Signature "), "{challenge}");
    }
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status.as_u16());
}

#[tokio::test]
async fn leak_reports_revoke_or_reject() {
    let signer = Signer::generate();
    let (data, (live_id, live), (revoked_id, revoked)) = setup(&signer, "revoke");
    let server = Server::start(&data);

    let body = serde_json::to_vec(&json!([report_item(&live)])).unwrap();

    // Signed by another key pair under the configured id.
    let forger = Signer::generate();
    let forged = post(&server, &body, Some(KEY_ID), Some(&forger.sign(&body))).await;
    assert_rejected(forged, StatusCode::UNAUTHORIZED).await;

    // The right signature over a different body.
    let other_body = serde_json::to_vec(&json!([report_item("ghp_other")])).unwrap();
    let mismatched = post(
        &server,
        &body,
        Some(KEY_ID),
        Some(&signer.sign(&other_body)),
    )
    .await;
    assert_rejected(mismatched, StatusCode::UNAUTHORIZED).await;

    let unknown = post(
        &server,
        &body,
        Some("unknown-id"),
        Some(&signer.sign(&body)),
    )
    .await;
    assert_rejected(unknown, StatusCode::UNAUTHORIZED).await;

    let unsigned = post(&server, &body, None, None).await;
    assert_rejected(unsigned, StatusCode::UNAUTHORIZED).await;

    let not_base64 = post(&server, &body, Some(KEY_ID), Some("%%%")).await;
    assert_rejected(not_base64, StatusCode::UNAUTHORIZED).await;

    // Over the body limit, even when signed.
    let filler = "x".repeat(600 * 1024);
    let large = serde_json::to_vec(&json!([report_item(&live), { "padding": filler }])).unwrap();
    let oversize = post(&server, &large, Some(KEY_ID), Some(&signer.sign(&large))).await;
    assert_rejected(oversize, StatusCode::PAYLOAD_TOO_LARGE).await;

    assert_eq!(data.tenant_key("acme", &live_id)["status"], "active");
    assert!(leak_records(&data, &live_id).await.is_empty());

    // A valid report: our live key, our revoked key, a look-alike and a
    // token of another service.
    let mut look_alike = live.clone().into_bytes();
    let last = look_alike.len() - 1;
    look_alike[last] = if look_alike[last] == b'a' { b'b' } else { b'a' };
    let look_alike = String::from_utf8(look_alike).unwrap();
    let tokens = [live.as_str(), revoked.as_str(), &look_alike, "ghp_notours"];
    let items: Vec<Value> = tokens.iter().map(|token| report_item(token)).collect();
    let body = serde_json::to_vec(&items).unwrap();
    let response = post(&server, &body, Some(KEY_ID), Some(&signer.sign(&body))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let verdicts: Value = response.json().await.unwrap();
    let labels: Vec<&str> = verdicts
        .as_array()
        .unwrap()
        .iter()
        .map(|verdict| verdict["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive"
        ]
    );
    for (verdict, token) in verdicts.as_array().unwrap().iter().zip(tokens) {
        assert_eq!(verdict["token_raw"], token);
        assert_eq!(verdict["token_type"], "portcullis_api_key");
    }

    let key = data.tenant_key("acme", &live_id);
    assert_eq!(key["status"], "revoked");
    let reason = key["revoked_reason"].as_str().unwrap();
    assert!(reason.contains(LEAK_URL), "{reason}");

    let records = leak_records(&data, &live_id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].actor, "leak-report");
    assert_eq!(records[0].details["url"], LEAK_URL);
    assert_eq!(records[0].details["action"], "revoke");
    assert!(!records[0].details.to_string().contains(&live));

    let records = leak_records(&data, &revoked_id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].details["action"], "none");

    let alerts = leak_alerts(&data, &live_id).await;
    assert_eq!(alerts.len(), 1, "the revoked key raised one alert");
    assert_eq!(alerts[0].severity, AlertSeverity::Warning);
    assert_eq!(alerts[0].details["action"], "revoke");
    assert_eq!(alerts[0].details["url"], LEAK_URL);
    assert!(alerts[0].tenant_id.is_some(), "the alert names the tenant");
    assert!(!alerts[0].details.to_string().contains(&live));
    let alerts = leak_alerts(&data, &revoked_id).await;
    assert_eq!(alerts.len(), 1, "a key that no longer works raises one too");
    assert_eq!(alerts[0].details["action"], "none");
    let look_alike_alerts = leak_alerts_all(&data).await;
    assert_eq!(look_alike_alerts.len(), 2, "false positives raise nothing");

    let logs = server.log_text();
    assert!(!logs.contains(&live), "a reported key reached the log");
    server.stop().await;
}

#[tokio::test]
async fn flag_action_keeps_key() {
    let signer = Signer::generate();
    let (data, (live_id, live), _) = setup(&signer, "flag");
    let server = Server::start(&data);

    let body = serde_json::to_vec(&json!([report_item(&live)])).unwrap();
    let response = post(&server, &body, Some(KEY_ID), Some(&signer.sign(&body))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let verdicts: Value = response.json().await.unwrap();
    assert_eq!(verdicts[0]["label"], "true_positive");

    assert_eq!(data.tenant_key("acme", &live_id)["status"], "active");
    let records = leak_records(&data, &live_id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].details["action"], "flag");

    let alerts = leak_alerts(&data, &live_id).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].severity,
        AlertSeverity::Critical,
        "a flagged key still works"
    );
    assert_eq!(alerts[0].details["status"], "active");
    let tenants = data.cli_json(&["tenants", "list"]);
    assert_eq!(
        alerts[0].tenant_id.map(|id| id.to_string()).as_deref(),
        tenants["tenants"][0]["id"].as_str()
    );

    let logs = server.log_text();
    assert!(logs.contains("flagged, not revoked"), "{logs}");
    assert!(!logs.contains(&live), "a reported key reached the log");
    server.stop().await;
}

#[test]
fn invalid_leaks_config_stops_start() {
    let data = DataDir::new();
    data.write_config("[leaks]\naction = \"ignore\"\n");
    let output = data
        .command()
        .arg("serve")
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("leaks.action"), "{message}");

    data.write_config(
        "[leaks]\npublic_keys = [{ id = \"k\", pem = \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\\n\" }]\n",
    );
    let output = data
        .command()
        .arg("serve")
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("not a PEM ECDSA P-256 PUBLIC KEY"),
        "{message}"
    );
}
