//! The gateway end to end: real TLS, a real upstream, keys made by the CLI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;

use base64::Engine as _;
use portcullis_core::key::{Environment, KeySecret};
use reqwest::StatusCode;
use serde_json::Value;
use support::upstream::Upstream;
use support::{DataDir, Server, marker, raw};

struct Fixture {
    data: DataDir,
    server: Server,
    upstream: Upstream,
    /// acme, `orders:read`.
    read: String,
    read_id: String,
    /// acme, `orders:read orders:write customers:read customers:write`.
    all: String,
    /// beta, `orders:read admin:read`.
    beta: String,
    /// Operator key with `keys:verify`.
    operator: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let data = DataDir::new();
    let up = upstream.url();
    data.write_config(&format!(
        r#"
[[routes]]
path_prefix = "/orders"
upstream = "{up}"
[routes.scopes]
GET = ["orders:read"]
POST = ["orders:write"]

[[routes]]
path_prefix = "/admin"
upstream = "{up}"
[routes.scopes]
GET = ["admin:read"]

[[routes]]
path_prefix = "/api"
upstream = "{up}/base"
strip_prefix = true
[routes.scopes]
GET = ["customers:read"]
POST = ["customers:write"]

[[routes]]
path_prefix = "/small"
upstream = "{up}"
max_body_bytes = 1048576
[routes.scopes]
POST = ["orders:write"]

[[routes]]
path_prefix = "/timeout"
upstream = "{up}"
timeout = "1s"
[routes.scopes]
"*" = []

[[routes]]
path_prefix = "/down"
upstream = "http://{closed}"
[routes.scopes]
"*" = []
"#
    ));
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "beta"]);
    let (read_id, read) = data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
        "--environment",
        "test",
    ]);
    let (_, all) = data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:read,orders:write,customers:read,customers:write",
        "--environment",
        "test",
    ]);
    let (_, beta) = data.create_key(&[
        "--tenant",
        "beta",
        "--scopes",
        "orders:read,admin:read",
        "--environment",
        "test",
    ]);
    let (_, operator) = data.create_key(&["--operator", "--scopes", "keys:verify"]);
    let server = Server::start(&data);
    Fixture {
        data,
        server,
        upstream,
        read,
        read_id,
        all,
        beta,
        operator,
    }
});

fn fixture() -> &'static Fixture {
    &FIXTURE
}

async fn problem(response: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    (status, challenge, body)
}

#[tokio::test]
async fn key_in_each_header_form_reaches_upstream() {
    let f = fixture();
    let client = f.server.client();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", f.read))
    );
    for (name, value) in [
        ("authorization", format!("Bearer {}", f.read)),
        ("authorization", basic),
        ("x-api-key", f.read.clone()),
    ] {
        let response = client
            .get(f.server.url("/orders/1?page=2"))
            .header(name, &value)
            .header("x-portcullis-tenant", "evil")
            .header("x-portcullis-scopes", "admin:*")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert!(
            response.headers().get("x-upstream-hop").is_none(),
            "hop-by-hop header came back"
        );
        assert!(response.headers().get("x-request-id").is_some());

        let seen = f.upstream.last().unwrap();
        assert_eq!(seen.path_and_query, "/orders/1?page=2");
        assert_eq!(seen.header("x-portcullis-tenant"), Some("acme"));
        assert_eq!(seen.header_count("x-portcullis-tenant"), 1);
        assert_eq!(seen.header("x-portcullis-key-id"), Some(f.read_id.as_str()));
        assert_eq!(seen.header("x-portcullis-scopes"), Some("orders:read"));
        assert_eq!(seen.header("x-portcullis-auth-method"), Some("api_key"));
        assert_eq!(seen.header("authorization"), None);
        assert_eq!(seen.header("x-api-key"), None);
        assert_eq!(seen.header("x-hop"), None);
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        let host = format!("localhost:{}", f.server.address.port());
        assert_eq!(seen.header("x-forwarded-host"), Some(host.as_str()));
        assert!(seen.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn missing_key_gets_401_without_error_code() {
    let f = fixture();
    let case = marker();
    let response = f
        .server
        .client()
        .get(f.server.url("/orders/1"))
        .header("x-test-case", &case)
        .send()
        .await
        .unwrap();
    let (status, challenge, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"portcullis\""));
    assert_eq!(body["code"], "missing_credential");
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn bad_keys_get_401_invalid_token() {
    let f = fixture();
    let unknown = KeySecret::generate(Environment::Test).unwrap();
    let mut mistyped = f.read.clone();
    mistyped.replace_range(10..11, if &f.read[10..11] == "a" { "b" } else { "a" });
    let cases = [
        (unknown.expose().to_owned(), "not_found"),
        (mistyped.clone(), "invalid_format"),
        ("pc_live_short".to_owned(), "invalid_format"),
        ("sk_live_0123456789".to_owned(), "invalid_format"),
    ];
    let case = marker();
    for (key, code) in cases {
        let response = f
            .server
            .client()
            .get(f.server.url("/orders/1"))
            .header("x-api-key", &key)
            .header("x-test-case", &case)
            .send()
            .await
            .unwrap();
        let (status, challenge, body) = problem(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{code}");
        assert!(challenge.unwrap().contains("error=\"invalid_token\""));
        assert_eq!(body["code"], code);
        assert!(!body.to_string().contains(&key), "error echoed the key");
    }
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn missing_scope_gets_403_naming_scope() {
    let f = fixture();
    let case = marker();
    let response = f
        .server
        .client()
        .post(f.server.url("/orders"))
        .header("x-api-key", &f.read)
        .header("x-test-case", &case)
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, challenge, body) = problem(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = challenge.unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"orders:write\""), "{challenge}");
    assert_eq!(body["required_scope"], "orders:write");
    assert!(body["detail"].as_str().unwrap().contains("orders:write"));
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn cached_key_still_checked_against_each_route() {
    // A key is cached after its first use; the next requests with it must
    // still be judged against their own route and method.
    let f = fixture();
    let client = f.server.client();
    let first = client
        .get(f.server.url("/orders/1"))
        .header("x-api-key", &f.read)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let case = marker();

    let admin = client
        .get(f.server.url("/admin/users"))
        .header("x-api-key", &f.read)
        .header("x-test-case", &case)
        .send()
        .await
        .unwrap();
    let (status, challenge, body) = problem(admin).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge
            .as_deref()
            .map(|c| c.contains("scope=\"admin:read\"")),
        Some(true)
    );
    assert_eq!(body["required_scope"], "admin:read");

    let post = client
        .post(f.server.url("/orders"))
        .header("x-api-key", &f.read)
        .header("x-test-case", &case)
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(post).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["required_scope"], "orders:write");
    assert_eq!(
        f.upstream.count_marked(&case),
        0,
        "the upstream received a refused request"
    );

    let verify = client
        .post(f.server.url("/v1/keys/verify"))
        .bearer_auth(&f.operator)
        .json(&serde_json::json!({"key": f.read}))
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), StatusCode::OK);
    let verdict: Value = verify.json().await.unwrap();
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["scopes"], serde_json::json!(["orders:read"]));
}

#[tokio::test]
async fn method_outside_route_gets_405() {
    let f = fixture();
    let response = f
        .server
        .client()
        .delete(f.server.url("/orders/1"))
        .header("x-api-key", &f.all)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST, HEAD");
    let (status, _, body) = problem(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "method_not_allowed");

    // HEAD is GET without the body (RFC 9110 §9.3.2), so it needs GET's scope.
    let head = f
        .server
        .client()
        .head(f.server.url("/orders/1"))
        .header("x-api-key", &f.read)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let admin_head = f
        .server
        .client()
        .head(f.server.url("/admin/users"))
        .header("x-api-key", &f.read)
        .send()
        .await
        .unwrap();
    assert_eq!(admin_head.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn operator_key_refused_on_gateway() {
    let f = fixture();
    let response = f
        .server
        .client()
        .get(f.server.url("/orders/1"))
        .header("x-api-key", &f.operator)
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "operator_key_not_allowed");
}

#[tokio::test]
async fn strip_prefix_forwards_the_rest() {
    let f = fixture();
    let response = f
        .server
        .client()
        .get(f.server.url("/api/customers/7?expand=a%2Fb"))
        .header("x-api-key", &f.all)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/base/customers/7?expand=a%2Fb");
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let f = fixture();
    let client = f.server.client();
    let upload = vec![b'u'; 8 * 1024 * 1024];
    let response = client
        .post(f.server.url("/orders"))
        .header("x-api-key", &f.all)
        .body(upload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["body_len"], 8 * 1024 * 1024);

    let response = client
        .get(f.server.url("/orders/large"))
        .header("x-api-key", &f.all)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().len(), 8 * 1024 * 1024);
}

#[tokio::test]
async fn oversized_bodies_rejected_whatever_the_framing() {
    let f = fixture();
    let client = f.server.client();
    let case = marker();

    let declared = client
        .post(f.server.url("/small"))
        .header("x-api-key", &f.all)
        .header("x-test-case", &case)
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(declared).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["limit_bytes"], 1_048_576);
    assert_eq!(
        f.upstream.count_marked(&case),
        0,
        "a body over the limit reached the upstream"
    );

    // Chunked: no Content-Length, so the limit is counted as bytes arrive.
    let mut request = format!(
        "POST /small HTTP/1.1\r\nHost: portcullis.example.test\r\nX-API-Key: {}\r\nX-Test-Case: {case}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        f.all
    )
    .into_bytes();
    for _ in 0..32 {
        request.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        request.extend_from_slice(&[b'y'; 64 * 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
    assert_eq!(response.status, 413, "{}", response.text);
    assert_eq!(
        f.upstream.count_marked(&case),
        0,
        "the upstream received a complete over-limit body"
    );
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let f = fixture();
    let client = f.server.client();
    let down = client
        .get(f.server.url("/down/1"))
        .header("x-api-key", &f.all)
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(down).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["code"], "upstream_unavailable");

    let slow = client
        .get(f.server.url("/timeout/slow"))
        .header("x-api-key", &f.all)
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(slow).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["code"], "upstream_timeout");
}

#[tokio::test]
async fn ambiguous_paths_never_reach_another_route() {
    // Each request line goes out byte for byte. The right answers follow
    // RFC 3986: dot segments resolve (§5.2.4), `%61` is `a` (§6.2.2.2),
    // encoded separators, backslashes and `..;` are refused, `%25` is never
    // decoded twice, and paths are case-sensitive.
    let f = fixture();
    let header = format!("X-API-Key: {}", f.read);
    let cases: [(&str, &[u16]); 13] = [
        ("/orders/../admin/users", &[400, 403]),
        ("//admin/users", &[400, 403]),
        ("/%61dmin/users", &[400, 403]),
        ("/orders/%2e%2e/admin/users", &[400]),
        ("/orders/%2E%2E%2Fadmin%2Fusers", &[400]),
        ("/admin%2fusers", &[400]),
        ("/orders/..\\admin\\users", &[400]),
        ("/orders/%5c..%5cadmin/users", &[400]),
        ("/orders/..;/admin/users", &[400]),
        ("/admin/users#x", &[400, 403]),
        ("/orders/%252e%252e/admin/users", &[200, 400]),
        ("/ADMIN/users", &[404]),
        ("/ordersadmin/users", &[404]),
    ];
    for (target, allowed) in cases {
        let case = marker();
        let case_header = format!("X-Test-Case: {case}");
        let response = raw::send(
            f.server.address,
            &f.server.ca_pem,
            &raw::get(target, &[&header, &case_header]),
        )
        .await;
        assert!(
            allowed.contains(&response.status),
            "{target}: got {} {}",
            response.status,
            response.text
        );
        let reached: Vec<_> = f
            .upstream
            .all()
            .into_iter()
            .filter(|seen| seen.header("x-test-case") == Some(case.as_str()))
            .collect();
        if response.status != 200 {
            assert!(reached.is_empty(), "{target} reached the upstream");
        } else {
            assert_eq!(reached.len(), 1, "{target}");
            assert_eq!(
                reached[0].path_and_query, "/orders/%252e%252e/admin/users",
                "{target}"
            );
        }
        if response.status == 400 {
            assert!(
                response.text.contains("application/problem+json"),
                "{target}: {}",
                response.text
            );
        }
    }
}

#[tokio::test]
async fn two_credentials_rejected_before_upstream() {
    let f = fixture();
    let basic = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", f.read))
    );
    let read = &f.read;
    let beta = &f.beta;
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "/orders/1".into(),
            vec![
                format!("Authorization: Bearer {read}"),
                format!("X-API-Key: {beta}"),
            ],
        ),
        (
            "/orders/1".into(),
            vec![format!("X-API-Key: {read}"), format!("X-API-Key: {beta}")],
        ),
        (
            "/orders/1".into(),
            vec![
                format!("Authorization: Bearer {read}"),
                "Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig".into(),
            ],
        ),
        (
            "/orders/1".into(),
            vec![format!("Authorization: Bearer {read}, Bearer {beta}")],
        ),
        (
            "/orders/1".into(),
            vec![format!("X-API-Key: {read}, {beta}")],
        ),
        (
            "/orders/1".into(),
            vec![basic, format!("X-API-Key: {read}")],
        ),
        (
            format!("/orders/1?access_token={beta}"),
            vec!["Authorization: Bearer not-a-real-token".into()],
        ),
    ];
    for (target, mut headers) in cases {
        let case = marker();
        headers.push(format!("X-Test-Case: {case}"));
        let lines: Vec<&str> = headers.iter().map(String::as_str).collect();
        let response = raw::send(
            f.server.address,
            &f.server.ca_pem,
            &raw::get(&target, &lines),
        )
        .await;
        assert_eq!(response.status, 400, "{headers:?}: {}", response.text);
        assert!(
            response.text.contains("error=\"invalid_request\""),
            "{}",
            response.text
        );
        assert!(
            response.text.contains("multiple_credentials"),
            "{}",
            response.text
        );
        assert!(
            !response.text.contains(read.as_str()),
            "the answer echoed a key"
        );
        assert_eq!(f.upstream.count_marked(&case), 0);
    }
}

#[tokio::test]
async fn request_log_line_names_key_not_secret() {
    let f = fixture();
    let response = f
        .server
        .client()
        .get(f.server.url("/orders/9"))
        .header("x-api-key", &f.read)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // The log line is written after the answer; give the reader a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let logs = f.server.log_text();
    let line = logs
        .lines()
        .find(|line| line.contains(&request_id))
        .expect("no log line for the request");
    let event: Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["message"], "request");
    assert_eq!(event["status"], 200);
    assert_eq!(event["method"], "GET");
    assert_eq!(event["key_id"], f.read_id.as_str());
    assert_eq!(event["route"], "/orders");
    assert_eq!(event["tenant"], "acme");
    assert!(event["latency_ms"].is_number());
    for secret in [&f.read, &f.all, &f.beta, &f.operator] {
        assert!(!logs.contains(secret.as_str()), "a key reached the logs");
    }
    let _ = &f.data;
}

#[tokio::test]
async fn hostile_input_stays_inside_one_log_line() {
    // An encoded CR LF in the path and an ESC in a header must not forge a
    // log line: the request gets its 401 and exactly one JSON log line.
    let f = fixture();
    let response = raw::send(
        f.server.address,
        &f.server.ca_pem,
        &raw::get("/orders/%0D%0Afake-line", &["User-Agent: x\\x1b[2J"]),
    )
    .await;
    assert_eq!(response.status, 401, "{}", response.text);

    // A raw ESC byte in a header value is refused by the HTTP parser itself
    // (RFC 9110 §5.5 allows no control characters there).
    let refused = raw::send(
        f.server.address,
        &f.server.ca_pem,
        &raw::get("/orders/1", &["User-Agent: x\x1b[2J"]),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    let request_id = response
        .text
        .lines()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .expect("no request id")
        .trim()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let logs = f.server.log_text();
    assert!(
        !logs.contains('\x1b'),
        "a raw control character reached the logs"
    );
    for line in logs.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|_| panic!("not one JSON object: {line:?}"));
    }
    let lines = logs
        .lines()
        .filter(|line| line.contains(&request_id))
        .count();
    assert_eq!(lines, 1);
}

#[tokio::test]
async fn early_rejection_reaches_curl_over_http2() {
    // A 401 or 403 sent before the request body is read must still reach a
    // third-party HTTP/2 client; curl 7.88 dropped such answers when the
    // stream was reset before the body was consumed.
    let f = fixture();
    let ca = f.data.path().join("tls/ca.pem");
    let port = f.server.address.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = f.server.url("/orders");
    let key_header = format!("x-api-key: {}", f.read);
    // A body of several frames, so curl is still sending when the answer
    // comes back.
    let body = f.data.path().join("body.bin");
    std::fs::write(&body, vec![b'b'; 48 * 1024]).unwrap();
    let body_arg = format!("@{}", body.display());
    for (auth, expected) in [(None, "401"), (Some(key_header.as_str()), "403")] {
        for _ in 0..10 {
            let mut command = std::process::Command::new("curl");
            command.args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--http2",
                "--cacert",
            ]);
            command
                .arg(&ca)
                .args(["--resolve", &resolve, "--data-binary", &body_arg]);
            if let Some(header) = auth {
                command.args(["-H", header]);
            }
            let output = command
                .arg(&url)
                .output()
                .expect("curl is installed by .ci/run");
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                expected,
                "{:?}",
                output.status
            );
        }
    }
}
