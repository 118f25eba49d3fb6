//! The admin API and the verify API, authenticated by operator keys.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;

use portcullis_core::key::{Environment, KeySecret};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DataDir, Server};

struct Fixture {
    _data: DataDir,
    server: Server,
    admin: String,
    reader: String,
    verifier: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let data = DataDir::new();
    let (_, admin) = data.create_key(&[
        "--operator",
        "--scopes",
        "admin:read,admin:write,keys:verify",
    ]);
    let (_, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let (_, verifier) = data.create_key(&["--operator", "--scopes", "keys:verify"]);
    let server = Server::start(&data);
    Fixture {
        _data: data,
        server,
        admin,
        reader,
        verifier,
    }
});

async fn call(
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let f = &*FIXTURE;
    let mut request = f
        .server
        .client()
        .request(method, f.server.url(path))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn tenants_and_keys_managed_over_http() {
    let f = &*FIXTURE;
    let (status, tenant) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants",
        &f.admin,
        Some(json!({"name": "globex"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    assert_eq!(tenant["name"], "globex");

    let (status, body) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants",
        &f.admin,
        Some(json!({"name": "globex"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "tenant_exists");

    let (status, created) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/globex/keys",
        &f.admin,
        Some(json!({"scopes": ["orders:read"], "name": "sync", "expires_in": "90d", "environment": "test"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pc_test_"));
    assert_eq!(created["prefix"], &secret[..12]);
    assert!(created["expires_at"].is_string());
    let creator = created["created_by"].as_str().unwrap().to_owned();
    assert!(creator.starts_with("operator-key:"), "{created}");

    let (status, listed) = call(
        reqwest::Method::GET,
        "/admin/v1/tenants/globex/keys",
        &f.reader,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert!(
        !listed.to_string().contains(&secret),
        "a listing showed the secret"
    );

    let (status, rotated) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/keys/{id}/rotate"),
        &f.admin,
        Some(json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["old"]["status"], "rotating");
    assert_eq!(rotated["new"]["scopes"], json!(["orders:read"]));
    assert_eq!(rotated["new"]["created_by"], creator.as_str());
    let new_id = rotated["new"]["id"].as_str().unwrap().to_owned();

    let (status, again) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/keys/{id}/rotate"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let (status, revoked) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/keys/{new_id}/revoke"),
        &f.admin,
        Some(json!({"reason": "done"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_reason"], "done");

    let (status, body) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/keys/{new_id}/revoke"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "key_revoked");
}

#[tokio::test]
async fn scopes_and_key_kinds_enforced() {
    let f = &*FIXTURE;
    let (status, body) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants",
        &f.reader,
        Some(json!({"name": "x1"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["required_scope"], "admin:write");

    let (status, _) = call(reqwest::Method::GET, "/admin/v1/tenants", &f.verifier, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = call(
        reqwest::Method::POST,
        "/v1/keys/verify",
        &f.reader,
        Some(json!({"key": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["required_scope"], "keys:verify");

    let (status, body) = call(reqwest::Method::GET, "/admin/v1/tenants", "", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A tenant key is refused on the operator surfaces.
    call(
        reqwest::Method::POST,
        "/admin/v1/tenants",
        &f.admin,
        Some(json!({"name": "initech"})),
    )
    .await;
    let (_, created) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/initech/keys",
        &f.admin,
        Some(json!({"scopes": ["admin:read"]})),
    )
    .await;
    let tenant_key = created["key"].as_str().unwrap();
    let (status, body) = call(reqwest::Method::GET, "/admin/v1/tenants", tenant_key, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "operator_key_required");
}

#[tokio::test]
async fn invalid_input_named_in_problem() {
    let f = &*FIXTURE;
    for name in [
        "\u{0430}cme-billing",
        "acme-billing\u{200b}",
        "\u{ff41}\u{ff43}\u{ff4d}\u{ff45}-billing",
        "Acme-Billing",
    ] {
        let (status, body) = call(
            reqwest::Method::POST,
            "/admin/v1/tenants",
            &f.admin,
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}");
        assert_eq!(body["field"], "name");
        assert!(
            body["detail"].as_str().unwrap().contains("position"),
            "{body}"
        );
    }
    let (_, tenants) = call(reqwest::Method::GET, "/admin/v1/tenants", &f.admin, None).await;
    assert!(
        !tenants.to_string().contains("billing"),
        "a look-alike tenant was created"
    );

    call(
        reqwest::Method::POST,
        "/admin/v1/tenants",
        &f.admin,
        Some(json!({"name": "umbrella"})),
    )
    .await;
    let cases = [
        (json!({"scopes": ["\u{043e}rders:read"]}), "scopes"),
        (json!({"scopes": []}), "scopes"),
        (
            json!({"scopes": ["a:read"], "expires_in": "soon"}),
            "expires_in",
        ),
        // Members that do not parse are named by their path in the body.
        (json!({}), "scopes"),
        (json!({"scopes": ["a:read", 7]}), "scopes[1]"),
        (json!({"scopes": ["a:read"], "max_uses": 1.5}), "max_uses"),
        // A key with no use allowed could never authenticate.
        (json!({"scopes": ["a:read"], "max_uses": 0}), "max_uses"),
        (
            json!({"scopes": ["a:read"], "rate_limits": ["fast"]}),
            "rate_limits",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = call(
            reqwest::Method::POST,
            "/admin/v1/tenants/umbrella/keys",
            &f.admin,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, problem) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/umbrella/keys",
        &f.admin,
        Some(json!({"scopes": ["a:read"], "colour": "red"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().contains("colour"),
        "{problem}"
    );
    assert_eq!(problem["field"], "colour", "{problem}");

    let (status, _) = call(
        reqwest::Method::POST,
        "/admin/v1/keys/not-a-uuid/revoke",
        &f.admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/nobody/keys",
        &f.admin,
        Some(json!({"scopes": ["a:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn verify_answers_each_verdict() {
    let f = &*FIXTURE;
    call(
        reqwest::Method::POST,
        "/admin/v1/tenants",
        &f.admin,
        Some(json!({"name": "hooli"})),
    )
    .await;
    let (_, created) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/hooli/keys",
        &f.admin,
        Some(json!({"scopes": ["b:write", "a:read"]})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();

    let (status, verdict) = call(
        reqwest::Method::POST,
        "/v1/keys/verify",
        &f.verifier,
        Some(json!({"key": key})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["tenant"], "hooli");
    assert_eq!(verdict["key_id"], created["id"]);
    assert_eq!(verdict["scopes"], json!(["a:read", "b:write"]));
    assert_eq!(verdict["expires_at"], Value::Null);

    let unknown = KeySecret::generate(Environment::Live).unwrap();
    let (_, verdict) = call(
        reqwest::Method::POST,
        "/v1/keys/verify",
        &f.verifier,
        Some(json!({"key": unknown.expose()})),
    )
    .await;
    assert_eq!(verdict, json!({"valid": false, "code": "not_found"}));

    let (_, verdict) = call(
        reqwest::Method::POST,
        "/v1/keys/verify",
        &f.verifier,
        Some(json!({"key": "pc_live_typo"})),
    )
    .await;
    assert_eq!(verdict, json!({"valid": false, "code": "invalid_format"}));

    let id = created["id"].as_str().unwrap();
    call(
        reqwest::Method::POST,
        &format!("/admin/v1/keys/{id}/revoke"),
        &f.admin,
        None,
    )
    .await;
    let (_, verdict) = call(
        reqwest::Method::POST,
        "/v1/keys/verify",
        &f.verifier,
        Some(json!({"key": key})),
    )
    .await;
    assert_eq!(verdict, json!({"valid": false, "code": "revoked"}));

    let (status, problem) = call(
        reqwest::Method::POST,
        "/v1/keys/verify",
        &f.verifier,
        Some(json!({"token": key})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        !problem.to_string().contains(&key),
        "an error echoed the key"
    );
}

#[tokio::test]
async fn health_endpoints_answer() {
    let f = &*FIXTURE;
    let client = f.server.client();
    let health = client.get(f.server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready: Value = client
        .get(f.server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], "sqlite");
}

#[tokio::test]
async fn unsupported_method_gets_problem() {
    let f = &*FIXTURE;
    let response = f
        .server
        .client()
        .request(reqwest::Method::TRACE, f.server.url("/admin/v1/tenants"))
        .bearer_auth(&f.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = support::header(&response, "allow").unwrap_or_default();
    assert!(allow.contains("GET"), "{allow}");
    assert!(allow.contains("POST"), "{allow}");
    assert_eq!(
        support::header(&response, "content-type"),
        Some("application/problem+json")
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "method_not_allowed");
    assert_eq!(problem["status"], 405);
}

/// Reads one HTTP/1.1 response with a `Content-Length` from `stream` and
/// returns its status line.
async fn read_one_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if body.len() >= length {
                return head.lines().next().unwrap().to_owned();
            }
        }
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the server closed the connection after {text:?}");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn connection_reused_after_405_with_body() {
    use tokio::io::AsyncWriteExt;
    let f = &*FIXTURE;
    let mut tls = support::raw::connect(f.server.address, &f.server.ca_pem).await;
    let body = r#"{"name": "patched"}"#;
    let head = format!(
        "PATCH /admin/v1/tenants HTTP/1.1\r\nHost: portcullis.example.test\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        f.admin,
        body.len()
    );
    // The body follows the head in a later packet, as it does from clients
    // that write them separately, so the server has the head alone when
    // it finds that the method is not allowed. The pause only makes that
    // order likely, and the assertions hold however the bytes arrive.
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tls.write_all(body.as_bytes()).await.unwrap();
    let status = read_one_response(&mut tls).await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");

    // A client that keeps connections alive sends its next request on the
    // same connection, which must still be open.
    let get = format!(
        "GET /admin/v1/tenants HTTP/1.1\r\nHost: portcullis.example.test\r\n\
         Authorization: Bearer {}\r\n\r\n",
        f.admin
    );
    tls.write_all(get.as_bytes()).await.unwrap();
    let status = read_one_response(&mut tls).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn body_without_json_media_type_rejected() {
    let f = &*FIXTURE;
    let response = f
        .server
        .client()
        .post(f.server.url("/admin/v1/tenants"))
        .bearer_auth(&f.admin)
        .header("content-type", "text/plain")
        .body(r#"{"name": "plain"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (status, problem) = call(
        reqwest::Method::POST,
        "/v1/keys/verify",
        &f.verifier,
        Some(json!([])),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["detail"], "the body must be a JSON object");
}
