//! Outside text with line breaks and other control characters must stay
//! escaped data in logs and audit records.
//!
//! The requests are a token request whose `client_id` ends in CR LF and a
//! forged log line, and token requests whose `client_id` contains U+2028,
//! U+0085 or U+202E. Then come a gateway path with an encoded CR LF and no
//! key, and a key revoked with a reason that contains a line break and
//! U+2028. The right answer: 401 `invalid_client` (RFC 6749 §5.2) or 401 for the
//! missing key, one request log line per request, every log and export
//! line one JSON object with those characters escaped (RFC 8259 §7, plus
//! U+2028, U+2029 and U+0085), and a chain that still verifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use portcullis_core::escape::is_unsafe_in_line;
use reqwest::StatusCode;
use serde_json::Value;
use support::{DataDir, Server, url_encode};

const FORGED_CLIENT_ID: &str = "svc\r\n2026-12-04T00:00:00Z INFO token issued client_id=admin";

const SEPARATOR_CLIENT_IDS: [&str; 3] = ["svc\u{2028}admin", "svc\u{85}admin", "svc\u{202e}nimda"];

async fn token_request(server: &Server, client_id: &str) -> (StatusCode, Value) {
    let response = server
        .client()
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_secret=x&client_id={}",
            url_encode(client_id)
        ))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Asserts that `line` is one JSON object without a raw character that
/// could split or rewrite it.
fn assert_safe_json_line(line: &str) {
    assert!(
        !line.chars().any(is_unsafe_in_line),
        "raw control or separator character in {line:?}"
    );
    let parsed: Value = serde_json::from_str(line).unwrap_or_else(|error| {
        panic!("not one JSON object ({error}): {line:?}");
    });
    assert!(parsed.is_object(), "{line:?}");
}

#[tokio::test]
async fn injected_line_breaks_stay_escaped() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    let (key_id, _) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    // The upstream is never reached: every request here fails
    // authentication first.
    data.write_config(
        "[[routes]]\npath_prefix = \"/orders\"\nupstream = \"http://127.0.0.1:9\"\n\
         [routes.scopes]\nGET = [\"orders:read\"]\n",
    );
    let server = Server::start(&data);

    let (status, body) = token_request(&server, FORGED_CLIENT_ID).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    for client_id in SEPARATOR_CLIENT_IDS {
        let (status, body) = token_request(&server, client_id).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{client_id:?}");
        assert_eq!(body["error"], "invalid_client", "{client_id:?}");
    }
    let response = server
        .client()
        .get(server.url("/orders/%0D%0Afake-line"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    data.cli(&[
        "keys",
        "revoke",
        &key_id,
        "--reason",
        "leaked\n[audit] role granted: admin\u{2028}x",
    ]);
    let logs = server.log_text();
    assert!(server.stop().await.success());

    let lines: Vec<&str> = logs.lines().collect();
    for line in &lines {
        assert_safe_json_line(line);
    }
    let request_lines = lines
        .iter()
        .filter(|line| line.contains("\"message\":\"request\""))
        .count();
    assert_eq!(request_lines, 5, "one request line per request");
    assert!(
        !lines.iter().any(|line| line.contains("token issued")),
        "a forged line appears in the log"
    );

    let export = data.cli(&["audit-log", "export"]);
    let text = String::from_utf8(export.stdout).unwrap();
    for line in text.lines() {
        assert_safe_json_line(line);
    }
    assert!(text.contains("\\u2028"), "U+2028 not escaped: {text}");
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .collect();
    let revoked: Vec<&Value> = records
        .iter()
        .filter(|record| record["action"] == "key.revoked")
        .collect();
    assert_eq!(revoked.len(), 1);
    let failed: Vec<&Value> = records
        .iter()
        .filter(|record| record["action"] == "auth.failed")
        .collect();
    // Each of the four token requests and the gateway request without a
    // key leaves exactly one record.
    assert_eq!(failed.len(), 5, "{failed:?}");
    let surfaces: Vec<&str> = failed
        .iter()
        .map(|record| record["details"]["surface"].as_str().unwrap())
        .collect();
    assert_eq!(
        surfaces
            .iter()
            .filter(|surface| **surface == "oauth")
            .count(),
        4,
        "{surfaces:?}"
    );
    assert_eq!(
        surfaces
            .iter()
            .filter(|surface| **surface == "gateway")
            .count(),
        1,
        "{surfaces:?}"
    );
    assert_eq!(
        revoked[0]["details"]["reason"],
        "leaked\n[audit] role granted: admin\u{2028}x"
    );

    let verify = data
        .command()
        .args(["audit-log", "verify"])
        .output()
        .unwrap();
    assert!(verify.status.success());
}
