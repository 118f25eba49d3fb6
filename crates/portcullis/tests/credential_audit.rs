//! `portcullis audit` and `GET /admin/v1/audit/credentials` on real data
//! directories: findings of credentials made by the CLI, exit codes of
//! `--fail-on`, tenant scoping and the shared JSON shape. The rules that
//! need time to pass (rotation, unused, expiry) are covered by the unit
//! tests of `credential_audit`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failed step should fail the test at once"
)]

mod support;

use std::collections::BTreeSet;
use std::process::Output;

use reqwest::StatusCode;
use serde_json::Value;
use support::{DataDir, Server};

/// Runs `portcullis audit` with `args` and returns its output, whatever
/// the exit code.
fn audit(data: &DataDir, args: &[&str]) -> Output {
    data.command().arg("audit").args(args).output().unwrap()
}

fn audit_json(data: &DataDir, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let output = audit(data, &all);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "audit printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Returns the `(code, subject kind, subject id)` of every finding.
fn findings(report: &Value) -> BTreeSet<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["code"].as_str().unwrap().to_owned(),
                finding["subject"]["kind"].as_str().unwrap().to_owned(),
                finding["subject"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn codes(report: &Value) -> BTreeSet<String> {
    findings(report)
        .into_iter()
        .map(|(code, _, _)| code)
        .collect()
}

/// A data directory with a credential for each rule that fires at once,
/// and a plain-HTTP listener on loopback.
struct Dirty {
    data: DataDir,
    wildcard_key: String,
    operator_key: String,
    client: String,
}

fn dirty() -> Dirty {
    let data = DataDir::new();
    data.write_config(
        "[server]\nplain_http = true\nlisten = \"127.0.0.1:8080\"\n\n\
         [audit_policy]\nmax_access_token_ttl = \"20m\"\n",
    );
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "beta"]);
    let (wildcard_key, _) = data.create_key(&["--tenant", "acme", "--scopes", "orders:*"]);
    let (operator_key, _) = data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let client = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Reporting",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--access-token-ttl",
        "30m",
    ]);
    let client = client["client_id"].as_str().unwrap().to_owned();
    Dirty {
        data,
        wildcard_key,
        operator_key,
        client,
    }
}

#[test]
fn findings_reported_for_dirty_server() {
    let dirty = dirty();
    let report = audit_json(&dirty.data, &[]);
    let found = findings(&report);
    let key = |code: &str, id: &str| (code.to_owned(), "key".to_owned(), id.to_owned());
    for expected in [
        key("key_no_expiry", &dirty.wildcard_key),
        key("wildcard_scope", &dirty.wildcard_key),
        key("key_no_expiry", &dirty.operator_key),
        key("administrative_scope", &dirty.operator_key),
        (
            "client_token_lifetime_long".to_owned(),
            "client".to_owned(),
            dirty.client.clone(),
        ),
        (
            "plain_http_listener".to_owned(),
            "listener".to_owned(),
            "127.0.0.1:8080".to_owned(),
        ),
    ] {
        assert!(found.contains(&expected), "{expected:?} missing: {report}");
    }
    assert_eq!(found.len(), 6, "{report}");

    let operator = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|finding| finding["code"] == "administrative_scope")
        .unwrap();
    assert_eq!(operator["severity"], "high");
    assert_eq!(report["summary"]["highest_severity"], "high");
    assert_eq!(report["summary"]["total"], 6);
    assert_eq!(report["policy"]["max_access_token_ttl_seconds"], 1200);
    assert!(report["tenant"].is_null());
}

#[test]
fn tenant_report_leaves_out_server_subjects() {
    let dirty = dirty();
    let acme = audit_json(&dirty.data, &["--tenant", "acme"]);
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(
        codes(&acme),
        BTreeSet::from([
            "client_token_lifetime_long".to_owned(),
            "key_no_expiry".to_owned(),
            "wildcard_scope".to_owned(),
        ])
    );
    let beta = audit_json(&dirty.data, &["--tenant", "beta"]);
    assert_eq!(beta["summary"]["total"], 0, "{beta}");

    let missing = audit(&dirty.data, &["--tenant", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("nobody"), "{stderr}");
}

#[test]
fn fail_on_sets_exit_code() {
    let dirty = dirty();
    for (args, code) in [
        (&[][..], 0),
        (&["--fail-on", "info"][..], 3),
        (&["--fail-on", "high"][..], 3),
        (&["--fail-on", "critical"][..], 0),
        (&["--tenant", "acme", "--fail-on", "high"][..], 0),
        (&["--tenant", "acme", "--fail-on", "medium"][..], 3),
        (&["--fail-on", "severe"][..], 2),
    ] {
        let output = audit(&dirty.data, args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let table = audit(&dirty.data, &["--fail-on", "high"]);
    let text = String::from_utf8(table.stdout).unwrap();
    let header = text.lines().next().unwrap();
    for column in ["SEVERITY", "CODE", "SUBJECT", "TENANT", "MESSAGE"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(text.contains("6 findings for the whole server"), "{text}");
    assert!(text.contains("1 high"), "{text}");
}

#[test]
fn clean_server_has_no_findings() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
        "--expires-in",
        "30d",
    ]);
    let output = audit(&data, &["--fail-on", "info"]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text, "No findings for the whole server.\n");
    let report = audit_json(&data, &[]);
    assert_eq!(report["summary"]["total"], 0);
    assert!(report["summary"]["highest_severity"].is_null());
}

#[tokio::test]
async fn admin_api_matches_cli() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.create_key(&["--tenant", "acme", "--scopes", "orders:*"]);
    let (_, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let server = Server::start(&data);

    let get = |query: &'static str| {
        let client = server.client();
        let url = server.url(&format!("/admin/v1/audit/credentials{query}"));
        let reader = reader.clone();
        async move {
            let response = client.get(url).bearer_auth(reader).send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };

    let (status, from_api) = get("").await;
    assert_eq!(status, StatusCode::OK, "{from_api}");
    let from_cli = audit_json(&data, &[]);
    assert_eq!(findings(&from_api), findings(&from_cli));
    assert_eq!(from_api["summary"], from_cli["summary"]);
    assert_eq!(from_api["policy"], from_cli["policy"]);
    let members: BTreeSet<&str> = from_api
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        members,
        BTreeSet::from(["findings", "generated_at", "policy", "summary", "tenant"])
    );

    let (status, acme) = get("?tenant=acme").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        findings(&acme),
        findings(&audit_json(&data, &["--tenant", "acme"]))
    );

    let (status, problem) = get("?tenant=nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, problem) = get("?severity=high").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "severity");
}
