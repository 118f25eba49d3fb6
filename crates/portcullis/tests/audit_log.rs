//! `portcullis audit-log verify|seal|export`, the audit check of `serve`
//! at start, and `GET /admin/v1/audit-events`.
//!
//! Tampering goes straight to the SQLite file, as someone with write
//! access to the database but without the master key would do.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::collections::BTreeSet;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection};
use support::{DataDir, Server};

/// Exit code of `audit-log verify` on a broken chain.
const CHAIN_BROKEN: i32 = 3;

/// The fields of every exported record.
const RECORD_FIELDS: [&str; 11] = [
    "action",
    "actor",
    "at",
    "details",
    "hash",
    "id",
    "prev_hash",
    "remote_addr",
    "seq",
    "target",
    "tenant_id",
];

/// Creates a data directory with four audit records: the creation of tenant
/// `acme`, the creation of a key, its revocation, and the creation of
/// tenant `globex`.
fn four_records() -> DataDir {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    let (id, _) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    data.cli(&["keys", "revoke", &id, "--reason", "rotated by hand"]);
    data.cli(&["tenants", "create", "globex"]);
    data
}

async fn tamper(data: &DataDir, statements: &[&str]) {
    let options = SqliteConnectOptions::new().filename(data.path().join("portcullis.db"));
    let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
    for statement in statements {
        sqlx::query(AssertSqlSafe(*statement))
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection.close().await.unwrap();
}

fn verify(data: &DataDir) -> Output {
    data.command()
        .args(["audit-log", "verify"])
        .output()
        .unwrap()
}

/// Runs `verify`, expects the broken-chain exit code and returns the
/// message on standard error and the `--output json` verdict.
fn verify_broken(data: &DataDir) -> (String, Value) {
    let output = verify(data);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(CHAIN_BROKEN), "{stderr}");
    let json = data
        .command()
        .args(["--output", "json", "audit-log", "verify"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(CHAIN_BROKEN));
    (stderr, serde_json::from_slice(&json.stdout).unwrap())
}

fn export(data: &DataDir, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit-log", "export"];
    all.extend_from_slice(args);
    let output = data.cli(&all);
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn verify_intact_chain_exits_zero() {
    let data = four_records();
    let output = verify(&data);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Audit log intact: 4 records"), "{text}");

    let summary = data.cli_json(&["audit-log", "verify"]);
    assert_eq!(summary["intact"], true);
    assert_eq!(summary["records"], 4);
    assert_eq!(summary["head_seq"], 4);
    assert_eq!(summary["head_hash"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn verify_names_edited_record() {
    let data = four_records();
    tamper(
        &data,
        &["UPDATE audit_events SET details = '{\"reason\":\"routine\"}' WHERE seq = 3"],
    )
    .await;
    let (message, verdict) = verify_broken(&data);
    assert!(message.contains("record 3"), "{message}");
    assert!(message.contains("was edited"), "{message}");
    assert_eq!(verdict["intact"], false);
    assert_eq!(verdict["code"], "edited");
    assert_eq!(verdict["seq"], 3);
    assert!(verdict["id"].is_string());
}

#[tokio::test]
async fn verify_names_deleted_record() {
    let data = four_records();
    tamper(&data, &["DELETE FROM audit_events WHERE seq = 2"]).await;
    let (message, verdict) = verify_broken(&data);
    assert!(message.contains("records 2 to 2 are missing"), "{message}");
    assert_eq!(verdict["code"], "missing");
    assert_eq!(verdict["seq"], 3);
}

#[tokio::test]
async fn verify_names_reordered_record() {
    let data = four_records();
    tamper(
        &data,
        &[
            "UPDATE audit_events SET seq = 100 WHERE seq = 2",
            "UPDATE audit_events SET seq = 2 WHERE seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE seq = 100",
        ],
    )
    .await;
    let (message, verdict) = verify_broken(&data);
    assert!(message.contains("record 2"), "{message}");
    assert!(message.contains("out of order"), "{message}");
    assert_eq!(verdict["code"], "out_of_order");
}

#[tokio::test]
async fn verify_names_deleted_tail() {
    let data = four_records();
    tamper(&data, &["DELETE FROM audit_events WHERE seq = 4"]).await;
    let (message, verdict) = verify_broken(&data);
    assert!(message.contains("newest records are missing"), "{message}");
    assert_eq!(verdict["code"], "truncated_tail");
    assert_eq!(verdict["seq"], 4);
}

#[tokio::test]
async fn verify_names_deleted_head() {
    let data = four_records();
    tamper(&data, &["DELETE FROM audit_chain"]).await;
    let (message, verdict) = verify_broken(&data);
    assert!(message.contains("head row is missing"), "{message}");
    assert!(message.contains("audit-log seal"), "{message}");
    assert_eq!(verdict["code"], "head_missing");
}

#[tokio::test]
async fn reset_head_stays_broken_and_blocks_serve() {
    // Hashes removed, a record edited and the head reset: neither `verify`
    // nor `serve` may chain the records again.
    let data = four_records();
    tamper(
        &data,
        &[
            "UPDATE audit_events SET seq = NULL, prev_hash = NULL, hash = NULL",
            "UPDATE audit_events SET details = '{\"reason\":\"routine\"}' \
             WHERE action = 'key.revoked'",
            "UPDATE audit_chain SET head_seq = 0, head_hash = zeroblob(32), checkpoint_seq = 0, \
             checkpoint_hash = zeroblob(32), mac = NULL",
        ],
    )
    .await;
    for _ in 0..2 {
        let (message, verdict) = verify_broken(&data);
        assert!(message.contains("has no MAC"), "{message}");
        assert_eq!(verdict["code"], "head_unsealed");
    }
    let stderr = data.cli_error(&["serve"]);
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("audit-log verify"), "{stderr}");
    assert!(stderr.contains("audit-log seal"), "{stderr}");
    let stderr = data.cli_error(&["tenants", "create", "initech"]);
    assert!(stderr.contains("audit chain is broken"), "{stderr}");
    let (_, verdict) = verify_broken(&data);
    assert_eq!(verdict["code"], "head_unsealed", "nothing was chained");
}

#[tokio::test]
async fn rolled_back_head_detected_and_sealed() {
    let data = four_records();
    tamper(
        &data,
        &[
            "UPDATE audit_chain SET head_seq = 3, \
             head_hash = (SELECT hash FROM audit_events WHERE seq = 3)",
            "DELETE FROM audit_events WHERE seq = 4",
        ],
    )
    .await;
    let (message, verdict) = verify_broken(&data);
    assert!(message.contains("does not match its MAC"), "{message}");
    assert_eq!(verdict["code"], "head_forged");
    assert!(data.cli_error(&["serve"]).contains("refusing to start"));

    let sealed = data.cli_json(&["audit-log", "seal"]);
    assert_eq!(sealed["sealed"], true);
    assert_eq!(sealed["legacy_records"], 0);
    assert_eq!(sealed["head_seq"], 4);
    let summary = data.cli_json(&["audit-log", "verify"]);
    assert_eq!(summary["intact"], true);
    assert_eq!(summary["head_hash"], sealed["head_hash"]);
    let records = export(&data, &[]);
    assert_eq!(records[3]["action"], "audit.chain_sealed");
    assert_eq!(records[3]["details"]["found"], "head_forged");

    let stderr = data.cli_error(&["audit-log", "seal"]);
    assert!(stderr.contains("nothing to seal"), "{stderr}");
}

#[tokio::test]
async fn verify_expect_head_catches_replayed_head() {
    let data = four_records();
    let kept = data.cli_json(&["audit-log", "verify"])["head_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    tamper(
        &data,
        &["CREATE TABLE saved_head AS SELECT * FROM audit_chain"],
    )
    .await;
    data.cli(&["tenants", "create", "initech"]);
    let newest = data.cli_json(&["audit-log", "verify"])["head_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let output = data
        .command()
        .args(["audit-log", "verify", "--expect-head", &kept])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "an older kept head is still in the chain"
    );

    // Cut the newest record and put back the head row saved before it.
    tamper(
        &data,
        &[
            "DELETE FROM audit_events WHERE seq = 5",
            "DELETE FROM audit_chain",
            "INSERT INTO audit_chain SELECT * FROM saved_head",
        ],
    )
    .await;
    assert!(
        verify(&data).status.success(),
        "undetectable without a kept head"
    );
    let output = data
        .command()
        .args(["audit-log", "verify", "--expect-head", &newest])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(CHAIN_BROKEN), "{stderr}");
    assert!(
        stderr.contains("expected head is not in the chain"),
        "{stderr}"
    );

    let output = data
        .command()
        .args(["audit-log", "verify", "--expect-head", "abc"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("64 hexadecimal digits"), "{stderr}");
}

#[test]
fn export_writes_json_lines() {
    let data = four_records();
    let records = export(&data, &[]);
    assert_eq!(records.len(), 4);
    for (index, record) in records.iter().enumerate() {
        let fields: BTreeSet<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, BTreeSet::from(RECORD_FIELDS));
        assert_eq!(record["seq"], index + 1);
        let at = record["at"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{at}"
        );
    }
    assert_eq!(records[1]["prev_hash"], records[0]["hash"]);
    assert_eq!(records[2]["action"], "key.revoked");
    assert_eq!(records[2]["details"]["reason"], "rotated by hand");
}

#[test]
fn export_filters_by_tenant_and_time() {
    let data = four_records();
    let acme = data.cli_json(&["tenants", "list"])["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tenant| tenant["name"] == "acme")
        .unwrap()["id"]
        .clone();
    let of_acme = export(&data, &["--tenant", "acme"]);
    assert_eq!(of_acme.len(), 3);
    assert!(of_acme.iter().all(|record| record["tenant_id"] == acme));

    let future = export(&data, &["--since", "2999-01-01T00:00:00Z"]);
    assert!(future.is_empty());
    let past = export(&data, &["--until", "2000-01-01T00:00:00Z"]);
    assert!(past.is_empty());

    let output = data
        .command()
        .args(["audit-log", "export", "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--since"), "{stderr}");
    assert!(stderr.contains("RFC 3339"), "{stderr}");

    let output = data
        .command()
        .args([
            "audit-log",
            "export",
            "--since",
            "2026-12-02T00:00:00Z",
            "--until",
            "2026-12-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid --until"), "{stderr}");
    assert!(output.stdout.is_empty());

    let output = data
        .command()
        .args(["audit-log", "export", "--tenant", "initech"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("initech"), "{stderr}");
}

async fn admin_get(server: &Server, key: &str, query: &str) -> (StatusCode, Value) {
    let response = server
        .client()
        .get(server.url(&format!("/admin/v1/audit-events{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn admin_lists_and_pages_audit_events() {
    let data = four_records();
    let (reader_id, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let server = Server::start(&data);

    let (status, first) = admin_get(&server, &reader, "?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(first["next_after"], 2);

    let (_, second) = admin_get(&server, &reader, "?limit=2&after=2").await;
    let seqs: Vec<&Value> = second["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| &event["seq"])
        .collect();
    assert_eq!(seqs, [3, 4]);

    let (_, revoked) = admin_get(&server, &reader, "?tenant=acme&action=key.revoked").await;
    let revoked = revoked["events"].as_array().unwrap();
    assert_eq!(revoked.len(), 1);
    let key_id = revoked[0]["target"].as_str().unwrap().to_owned();

    let (_, by_credential) =
        admin_get(&server, &reader, &format!("?credential={key_id}&actor=cli")).await;
    let actions: Vec<&Value> = by_credential["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| &event["action"])
        .collect();
    assert_eq!(actions, ["key.created", "key.revoked"]);
    assert_eq!(by_credential["next_after"], Value::Null);

    let (_, window) = admin_get(
        &server,
        &reader,
        "?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(window["events"].as_array().unwrap().len(), 0);

    // The operator key's own creation is in the log too.
    let (_, created) = admin_get(&server, &reader, &format!("?credential={reader_id}")).await;
    assert_eq!(created["events"][0]["action"], "key.created");
}

#[tokio::test]
async fn admin_rejects_bad_filters_by_field() {
    let data = four_records();
    let (_, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let (_, writer_only) = data.create_key(&["--operator", "--scopes", "admin:write"]);
    let server = Server::start(&data);

    for (query, field) in [
        ("?since=last-week", "since"),
        ("?limit=5000", "limit"),
        ("?action=key.exploded", "action"),
        ("?tenantt=acme", "tenantt"),
        (
            "?since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
            "until",
        ),
    ] {
        let (status, body) = admin_get(&server, &reader, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["code"], "invalid_field", "{query}");
        assert_eq!(body["field"], field, "{query}");
    }

    let (status, body) = admin_get(&server, &reader, "?tenant=initech").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = admin_get(&server, &writer_only, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn successes_aggregated_per_minute() {
    let data = DataDir::new();
    let (reader_id, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let server = Server::start(&data);
    for _ in 0..5 {
        let (status, _) = admin_get(&server, &reader, "?limit=1").await;
        assert_eq!(status, StatusCode::OK);
    }
    // Stopping writes the records of the minute still open.
    assert!(server.stop().await.success());

    let successes: Vec<Value> = export(&data, &[])
        .into_iter()
        .filter(|record| record["action"] == "auth.succeeded")
        .collect();
    // Five requests make one record, or two when a minute ends between them.
    assert!((1..=2).contains(&successes.len()), "{successes:?}");
    let total: u64 = successes
        .iter()
        .map(|record| record["details"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 5);
    for record in &successes {
        assert_eq!(record["target"], reader_id.as_str());
        assert_eq!(record["actor"], format!("key:{reader_id}"));
        assert_eq!(record["remote_addr"], "127.0.0.1");
        assert_eq!(record["details"]["addresses"][0], "127.0.0.1");
    }
    assert!(verify(&data).status.success());
}
