//! Every way a key ends (revocation by the CLI or the admin API, the end of
//! a rotation grace, expiry) reaches every running node within one second,
//! including changes written by a separate CLI process. So does narrowing a
//! key's scopes, by the CLI or the admin API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "fixtures outside #[test] functions fail the test on any error, and tests read their settings from the environment"
)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_store::{AuditAction, AuditFilter, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::services::fresh_postgres;
use support::upstream::Upstream;
use support::{DataDir, Server, all_bytes_under, contains_bytes};

/// The bound within which a change must reach every node.
const BOUND: Duration = Duration::from_secs(1);

/// The route, and brute-force thresholds high enough that polling a revoked
/// key every 100 ms is never delayed or blocked.
fn config(upstream: &Upstream) -> String {
    format!(
        "[limits.brute_force.client_ip]\nslow_after = 10000\nblock_after = 10000\n\
         [limits.brute_force.identity]\nslow_after = 10000\nblock_after = 10000\n\
         [[routes]]\npath_prefix = \"/orders\"\nupstream = \"{}\"\n[routes.scopes]\nGET = [\"orders:read\"]\n",
        upstream.url()
    )
}

/// Sends `GET /orders/1` with `key` to every node every 100 ms for 3 s from
/// `changed` on, and checks that every request started later than the bound
/// gets 401 `invalid_token` with `code`, and that none of those reached the
/// upstream.
async fn assert_ends_within_bound(
    nodes: &[&Server],
    upstream: &Upstream,
    key: &str,
    changed: Instant,
    code: &str,
) {
    let clients: Vec<reqwest::Client> = nodes.iter().map(|node| node.client()).collect();
    while changed.elapsed() < Duration::from_secs(3) {
        for (node, client) in nodes.iter().zip(&clients) {
            let before = upstream.count();
            let started = Instant::now();
            let response = client
                .get(node.url("/orders/1"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            if started.duration_since(changed) <= BOUND {
                continue;
            }
            let status = response.status();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{:?} after the change",
                started.duration_since(changed)
            );
            assert!(
                challenge
                    .unwrap_or_default()
                    .contains("error=\"invalid_token\"")
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], code);
            assert_eq!(
                upstream.count(),
                before,
                "the upstream got a request after the bound"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn verify(node: &Server, operator: &str, key: &str) -> Value {
    let response = node
        .client()
        .post(node.url("/v1/keys/verify"))
        .bearer_auth(operator)
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn get_status(node: &Server, key: &str) -> StatusCode {
    node.client()
        .get(node.url("/orders/1"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
}

async fn run_lifecycle(data: &DataDir, nodes: &[&Server], upstream: &Upstream) -> Vec<String> {
    let mut secrets = Vec::new();
    data.cli(&["tenants", "create", "acme"]);
    let (_, operator) = data.create_key(&[
        "--operator",
        "--scopes",
        "keys:verify,admin:read,admin:write",
    ]);
    secrets.push(operator.clone());
    let create = |extra: &[&str]| {
        let mut args = vec![
            "--tenant",
            "acme",
            "--scopes",
            "orders:read",
            "--environment",
            "test",
        ];
        args.extend_from_slice(extra);
        data.create_key(&args)
    };

    // 1. Revoked by a separate CLI process while the nodes run.
    let (id, key) = create(&[]);
    secrets.push(key.clone());
    for node in nodes {
        assert_eq!(get_status(node, &key).await, StatusCode::OK);
    }
    let changed = Instant::now();
    data.cli(&["keys", "revoke", &id, "--reason", "case test"]);
    assert_ends_within_bound(nodes, upstream, &key, changed, "revoked").await;
    for node in nodes {
        let verdict = verify(node, &operator, &key).await;
        assert_eq!(verdict, json!({"valid": false, "code": "revoked"}));
    }

    // 2. Revoked through the admin API of the first node.
    let (id, key) = create(&[]);
    secrets.push(key.clone());
    for node in nodes {
        assert_eq!(get_status(node, &key).await, StatusCode::OK);
    }
    let changed = Instant::now();
    let response = nodes[0]
        .client()
        .post(nodes[0].url(&format!("/admin/v1/keys/{id}/revoke")))
        .bearer_auth(&operator)
        .json(&json!({"reason": "admin api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_ends_within_bound(nodes, upstream, &key, changed, "revoked").await;

    // 3. Rotated with a two-second grace: the old key works during the
    // grace and stops after it; the new key works.
    let (id, old) = create(&[]);
    secrets.push(old.clone());
    for node in nodes {
        assert_eq!(get_status(node, &old).await, StatusCode::OK);
    }
    let rotated = data.cli_json(&["keys", "rotate", &id, "--grace", "2s"]);
    let rotated_at = Instant::now();
    let new = rotated["key"]
        .as_str()
        .or(rotated["new"]["key"].as_str())
        .unwrap()
        .to_owned();
    secrets.push(new.clone());
    for node in nodes {
        assert_eq!(
            get_status(node, &old).await,
            StatusCode::OK,
            "old key refused during its grace"
        );
        assert_eq!(get_status(node, &new).await, StatusCode::OK);
    }
    let grace_end = rotated_at + Duration::from_secs(2);
    tokio::time::sleep_until(grace_end.into()).await;
    assert_ends_within_bound(nodes, upstream, &old, grace_end, "expired").await;
    for node in nodes {
        assert_eq!(get_status(node, &new).await, StatusCode::OK);
        assert_eq!(verify(node, &operator, &old).await["code"], "expired");
    }

    // 4. Created with a short lifetime.
    let (_, short) = create(&["--expires-in", "2s"]);
    let created = Instant::now();
    secrets.push(short.clone());
    for node in nodes {
        assert_eq!(get_status(node, &short).await, StatusCode::OK);
    }
    let expiry = created + Duration::from_secs(2);
    tokio::time::sleep_until(expiry.into()).await;
    assert_ends_within_bound(nodes, upstream, &short, expiry, "expired").await;
    assert_eq!(
        verify(nodes[0], &operator, &short).await,
        json!({"valid": false, "code": "expired"})
    );

    secrets
}

async fn audit_has_revocation_and_failures(store: &Store) {
    let filter = |action| AuditFilter {
        tenant_id: None,
        action: Some(action),
        target: None,
        limit: 1000,
    };
    // Failure records are written in batches about once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let revoked = store
        .list_audit(&filter(AuditAction::KeyRevoked))
        .await
        .unwrap();
    assert!(
        revoked
            .iter()
            .any(|event| event.details.to_string().contains("case test"))
    );
    let failed = store
        .list_audit(&filter(AuditAction::AuthFailed))
        .await
        .unwrap();
    assert!(
        failed
            .iter()
            .any(|event| event.details["code"] == "revoked" && event.target.is_some())
    );
}

#[tokio::test]
async fn key_ends_reach_sqlite_node_within_one_second() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&config(&upstream));
    let node = Server::start(&data);
    let secrets = run_lifecycle(&data, &[&node], &upstream).await;

    let store = data.open_store().await;
    audit_has_revocation_and_failures(&store).await;
    store.close().await;

    // Stopping flushes buffers, so the files below hold everything the
    // server would write.
    let logs = node.log_text();
    assert!(node.stop().await.success());
    let files = all_bytes_under(data.path());
    for secret in &secrets {
        assert!(
            !contains_bytes(&files, secret.as_bytes()),
            "a secret is stored in the data directory"
        );
        assert!(
            !contains_bytes(&files, &secret.as_bytes()[8..]),
            "a key's random part is stored"
        );
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}

#[tokio::test]
async fn key_ends_reach_two_postgres_nodes_within_one_second() {
    let Some(url) = fresh_postgres("portcullis_lifecycle") else {
        return;
    };
    let upstream = Upstream::start();
    let mut data = DataDir::new();
    data.database_url = Some(url.clone());
    data.write_config(&config(&upstream));
    // Both nodes share the data directory, so they share the master key.
    let first = Server::start(&data);
    let second = Server::start(&data);
    let secrets = run_lifecycle(&data, &[&first, &second], &upstream).await;

    let store = Store::open_postgres(&url).await.unwrap();
    audit_has_revocation_and_failures(&store).await;
    store.close().await;

    let dump = Command::new("pg_dump")
        .args(["--data-only", url.as_str()])
        .output();
    if let Some(dump) = dump.ok().filter(|output| output.status.success()) {
        for secret in &secrets {
            assert!(
                !contains_bytes(&dump.stdout, secret.as_bytes()),
                "a secret is stored in PostgreSQL"
            );
        }
    }
}

/// Sends `GET /orders/1` with `key` every 100 ms for 3 s from `changed` on,
/// and checks that every request started later than the bound gets 403
/// `insufficient_scope` without reaching the upstream.
async fn assert_scope_lost_within_bound(
    node: &Server,
    upstream: &Upstream,
    key: &str,
    changed: Instant,
) {
    while changed.elapsed() < Duration::from_secs(3) {
        let before = upstream.count();
        let started = Instant::now();
        let response = node
            .client()
            .get(node.url("/orders/1"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        if started.duration_since(changed) > BOUND {
            let elapsed = started.duration_since(changed);
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{elapsed:?} after narrowing"
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "insufficient_scope");
            assert_eq!(upstream.count(), before, "the upstream got the request");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `POST /admin/v1/keys/{id}/narrow` with `body`.
async fn narrow(node: &Server, operator: &str, id: &str, body: &Value) -> (StatusCode, Value) {
    let response = node
        .client()
        .post(node.url(&format!("/admin/v1/keys/{id}/narrow")))
        .bearer_auth(operator)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn narrowed_scopes_reach_node_within_one_second() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&config(&upstream));
    let node = Server::start(&data);
    data.cli(&["tenants", "create", "acme"]);
    let (_, operator) = data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let create = || data.create_key(&["--tenant", "acme", "--scopes", "orders:read,orders:write"]);

    // 1. Narrowed by a separate CLI process while the node runs.
    let (id, key) = create();
    assert_eq!(get_status(&node, &key).await, StatusCode::OK);
    let changed = Instant::now();
    let narrowed = data.cli_json(&["keys", "narrow", &id, "--scopes", "orders:write"]);
    assert_eq!(narrowed["scopes"], json!(["orders:write"]));
    assert_scope_lost_within_bound(&node, &upstream, &key, changed).await;

    // 2. Narrowed through the admin API.
    let (id, key) = create();
    assert_eq!(get_status(&node, &key).await, StatusCode::OK);
    let changed = Instant::now();
    let (status, body) = narrow(&node, &operator, &id, &json!({"scopes": ["orders:write"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scopes"], json!(["orders:write"]));
    assert_scope_lost_within_bound(&node, &upstream, &key, changed).await;

    let store = data.open_store().await;
    let records = store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::KeyScopesNarrowed),
            target: Some(id.clone()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].actor.contains("key:"), "{}", records[0].actor);
    store.close().await;

    // A wider, an empty and a malformed set are rejected, naming the field,
    // and an unknown key is not found.
    let (status, body) = narrow(&node, &operator, &id, &json!({"scopes": ["orders:read"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "scopes");
    assert!(
        body["detail"].as_str().unwrap().contains("orders:read"),
        "{body}"
    );
    let (status, body) = narrow(&node, &operator, &id, &json!({"scopes": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "scopes");
    let (status, body) = narrow(&node, &operator, &id, &json!({"scopes": ["Orders Read"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "scopes");
    let unknown = "0193b6c4-0000-7000-8000-000000000000";
    let (status, body) = narrow(
        &node,
        &operator,
        unknown,
        &json!({"scopes": ["orders:write"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(get_status(&node, &key).await, StatusCode::FORBIDDEN);
}
