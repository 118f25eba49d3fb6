//! Request limits end to end over raw TLS sockets: body sizes on every
//! kind of endpoint whatever the framing, request smuggling attempts,
//! oversize headers, and slow or idle clients.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;

use reqwest::StatusCode;
use support::upstream::Upstream;
use support::{DataDir, Server, marker, raw};
use tokio::io::AsyncWriteExt;

/// Header read timeout of the test server: short, so that the slow-client
/// tests finish quickly, and still far above what a local request needs.
const HEADER_READ_TIMEOUT: &str = "2s";

/// Body read timeout of the test server, short for the same reason.
const BODY_READ_TIMEOUT: &str = "2s";

struct Fixture {
    _data: DataDir,
    server: Server,
    upstream: Upstream,
    /// acme, `orders:write`.
    write: String,
    /// Operator key with `keys:verify`.
    operator: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&format!(
        r#"
[[routes]]
path_prefix = "/orders"
upstream = "{}"
max_body_bytes = 1048576
[routes.scopes]
POST = ["orders:write"]
"#,
        upstream.url()
    ));
    data.cli(&["tenants", "create", "acme"]);
    let (_, write) = data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:write",
        "--environment",
        "test",
    ]);
    let (_, operator) = data.create_key(&["--operator", "--scopes", "keys:verify"]);
    let server = Server::start_with(
        &data,
        &[
            (
                "PORTCULLIS_SERVER__HEADER_READ_TIMEOUT",
                HEADER_READ_TIMEOUT,
            ),
            ("PORTCULLIS_SERVER__BODY_READ_TIMEOUT", BODY_READ_TIMEOUT),
        ],
    );
    Fixture {
        _data: data,
        server,
        upstream,
        write,
        operator,
    }
});

fn fixture() -> &'static Fixture {
    &FIXTURE
}

/// Builds a request: `head` with `Transfer-Encoding: chunked`, then `total`
/// bytes of body in 64 KiB chunks that start with `prefix`, then the last
/// chunk.
fn chunked_request(head: &str, prefix: &[u8], total: usize) -> Vec<u8> {
    const CHUNK: usize = 64 * 1024;
    let mut request = format!("{head}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    let mut body = prefix.to_vec();
    body.resize(total, b'A');
    for chunk in body.chunks(CHUNK) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

fn assert_problem_413(response: &raw::RawResponse, limit: usize) {
    assert_eq!(response.status, 413, "{}", response.text);
    assert!(
        response
            .text
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{}",
        response.text
    );
    assert!(
        response.text.contains(&format!("\"limit_bytes\":{limit}")),
        "{}",
        response.text
    );
    assert!(response.closed, "the connection stayed open after 413");
}

/// Checks that a new client is served while a slow one keeps a connection open.
async fn assert_other_client_served(f: &Fixture) {
    let healthy = f
        .server
        .client()
        .get(f.server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_chunked_body_gets_413() {
    let f = fixture();
    let head = "POST /oauth/token HTTP/1.1\r\nHost: portcullis.example.test\r\n\
                Content-Type: application/x-www-form-urlencoded\r\n";
    let request = chunked_request(head, b"grant_type=client_credentials&x=", 10 * 1024 * 1024);
    let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
    assert_problem_413(&response, 64 * 1024);
}

#[tokio::test]
async fn every_parsing_endpoint_bounds_its_body() {
    let f = fixture();
    // Each endpoint with its documented limit and a content type it accepts.
    // Leak reports need signing keys configured, so tests/leaks.rs checks
    // their 512 KiB limit.
    let endpoints = [
        (
            "/oauth/token",
            "application/x-www-form-urlencoded",
            64 * 1024,
        ),
        (
            "/oauth/introspect",
            "application/x-www-form-urlencoded",
            64 * 1024,
        ),
        (
            "/oauth/revoke",
            "application/x-www-form-urlencoded",
            64 * 1024,
        ),
        ("/v1/keys/verify", "application/json", 64 * 1024),
        ("/admin/v1/tenants", "application/json", 64 * 1024),
    ];
    for (path, content_type, limit) in endpoints {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: portcullis.example.test\r\n\
             Authorization: Bearer {}\r\nContent-Type: {content_type}\r\n",
            f.operator
        );
        let chunked = chunked_request(&head, b"", limit + 64 * 1024);
        let response = raw::send(f.server.address, &f.server.ca_pem, &chunked).await;
        assert_problem_413(&response, limit);

        // A declared length over the limit is rejected before the body is
        // read, so the server sends 413 although no body byte is sent.
        let declared = format!("{head}Content-Length: {}\r\n\r\n", limit + 1);
        let mut stream = raw::connect(f.server.address, &f.server.ca_pem).await;
        stream.write_all(declared.as_bytes()).await.unwrap();
        let response = raw::read_until_closed(&mut stream).await;
        assert_problem_413(&response, limit);
    }
}

#[tokio::test]
async fn gateway_chunked_body_over_limit_gets_413() {
    let f = fixture();
    let case = marker();
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: portcullis.example.test\r\nX-API-Key: {}\r\n\
         X-Test-Case: {case}\r\n",
        f.write
    );
    let request = chunked_request(&head, b"", 2 * 1024 * 1024);
    let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
    assert_problem_413(&response, 1_048_576);
    // The upstream may have seen the request start, but the proxy aborts it
    // before the last chunk, so the echo server never records it.
    assert_eq!(
        f.upstream.count_marked(&case),
        0,
        "the upstream received a complete over-limit body"
    );
}

#[tokio::test]
async fn gateway_declared_length_rejected_unread() {
    let f = fixture();
    let case = marker();
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: portcullis.example.test\r\nX-API-Key: {}\r\n\
         X-Test-Case: {case}\r\nContent-Length: 2097152\r\n\r\n",
        f.write
    );
    // No body byte is sent: the 413 must come from the header alone.
    let mut stream = raw::connect(f.server.address, &f.server.ca_pem).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    let response = raw::read_until_closed(&mut stream).await;
    assert_problem_413(&response, 1_048_576);
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn bytes_past_content_length_read_as_next_request() {
    let f = fixture();
    let case = marker();
    let mut request = format!(
        "POST /orders HTTP/1.1\r\nHost: portcullis.example.test\r\nX-API-Key: {}\r\n\
         X-Test-Case: {case}\r\nContent-Length: 10\r\n\r\n",
        f.write
    )
    .into_bytes();
    request.extend_from_slice(b"0123456789");
    // `{` cannot start a request method (RFC 9110 §9.1 token), so the rest
    // is an invalid request rather than the tail of the first body.
    request.extend(std::iter::repeat_n(b'{', 5 * 1024 * 1024));

    let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(
        response.text.contains("\"body_len\":10"),
        "{}",
        response.text
    );
    let second = response
        .text
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(index, _)| &response.text[index..]);
    assert!(
        second.is_some_and(|text| text.starts_with("HTTP/1.1 400")),
        "no 400 for the bytes after the body: {}",
        response.text
    );
    assert!(response.closed);

    let seen = f.upstream.marked(&case);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_len, 10);
}

/// hyper 1.13 handles a request with both Content-Length and
/// Transfer-Encoding by the chunked framing alone, drops the Content-Length
/// and closes the connection after the response, as RFC 9112 §6.1 allows.
/// Anything sent after the chunked body is never read as a request.
#[tokio::test]
async fn content_length_with_chunked_closes_connection() {
    let f = fixture();
    let case = marker();
    let mut request = format!(
        "POST /orders HTTP/1.1\r\nHost: portcullis.example.test\r\nX-API-Key: {key}\r\n\
         X-Test-Case: {case}\r\nContent-Length: 2048\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n\
         POST /orders/smuggled HTTP/1.1\r\nHost: portcullis.example.test\r\n\
         X-API-Key: {key}\r\nX-Test-Case: {case}\r\nContent-Length: 0\r\n\r\n",
        key = f.write
    )
    .into_bytes();
    request.resize(request.len() + 2048, b' ');

    let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
    assert!(response.closed, "the connection stayed open");
    assert_eq!(
        response.text.matches("HTTP/1.1 ").count(),
        1,
        "{}",
        response.text
    );

    let seen = f.upstream.marked(&case);
    assert!(seen.len() <= 1, "{seen:?}");
    assert!(
        seen.iter().all(|seen| seen.path_and_query == "/orders"),
        "a smuggled request reached the upstream: {seen:?}"
    );
    assert!(seen.iter().all(|seen| seen.body_len == 5), "{seen:?}");
}

#[tokio::test]
async fn oversize_header_gets_431() {
    let f = fixture();
    let filler = "a".repeat(70 * 1024);
    let request = raw::get("/healthz", &[&format!("X-Filler: {filler}")]);
    let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
    assert_eq!(response.status, 431, "{}", response.text);
    assert!(response.closed);
}

/// A request target over 16 KiB gets 414 with a problem body, on a
/// Portcullis endpoint and on a gateway route alike, and one of 16 KiB is
/// served.
#[tokio::test]
async fn long_uri_gets_414() {
    let f = fixture();
    for path in ["/healthz", "/orders"] {
        let query = format!("?q={}", "a".repeat(20 * 1024));
        let request = raw::get(&format!("{path}{query}"), &[]);
        let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
        assert_eq!(response.status, 414, "{path}: {}", response.text);
        assert!(
            response.text.contains("\"code\":\"uri_too_long\""),
            "{}",
            response.text
        );
        assert!(
            response.text.contains("\"limit_bytes\":16384"),
            "{}",
            response.text
        );
    }

    let target = format!("/healthz?q={}", "a".repeat(16 * 1024 - "/healthz?q=".len()));
    let request = raw::get(&target, &[]);
    let response = raw::send(f.server.address, &f.server.ca_pem, &request).await;
    assert_eq!(response.status, 200, "{}", response.text);
}

/// A target that does not fit in the 64 KiB head buffer gets 431 from
/// hyper, which cannot tell a long request line from long header fields.
#[tokio::test]
async fn uri_over_head_buffer_gets_431() {
    let f = fixture();
    let target = format!("/healthz?q={}", "a".repeat(70 * 1024));
    let response = raw::send(f.server.address, &f.server.ca_pem, &raw::get(&target, &[])).await;
    assert_eq!(response.status, 431, "{}", response.text);
    assert!(response.closed);
}

/// hyper 1.13 reads at most 100 header fields; the 101st gets 431.
#[tokio::test]
async fn header_count_over_100_gets_431() {
    let f = fixture();
    let lines: Vec<String> = (0..100)
        .map(|index| format!("X-Field-{index}: 1"))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    // raw::get adds Host and Connection, so this is 102 header fields.
    let response = raw::send(
        f.server.address,
        &f.server.ca_pem,
        &raw::get("/healthz", &lines),
    )
    .await;
    assert_eq!(response.status, 431, "{}", response.text);

    // Host, Connection and 98 more make 100 fields, which is served.
    let response = raw::send(
        f.server.address,
        &f.server.ca_pem,
        &raw::get("/healthz", &lines[..98]),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text);
}

#[tokio::test]
async fn slow_header_cut_off_others_served() {
    let f = fixture();
    let mut slow = raw::connect(f.server.address, &f.server.ca_pem).await;
    slow.write_all(b"POST /orders HTTP/1.1\r\nHost: portcullis.example.test\r\n")
        .await
        .unwrap();

    assert_other_client_served(f).await;

    // hyper 1.13 ends the connection at the header read timeout without a
    // response, because no request exists yet to respond to.
    let response = raw::read_until_closed(&mut slow).await;
    assert!(response.closed, "the slow client was not cut off");
    assert!(
        response.text.is_empty() || response.status == 408,
        "{}",
        response.text
    );
}

#[tokio::test]
async fn idle_keep_alive_connection_closed() {
    let f = fixture();
    let mut idle = raw::connect(f.server.address, &f.server.ca_pem).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: portcullis.example.test\r\n\r\n")
        .await
        .unwrap();
    // The server keeps the connection open after the response and then
    // closes it when no next request head arrives in time.
    let response = raw::read_until_closed(&mut idle).await;
    assert!(response.closed, "the idle connection stayed open");
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.text.matches("HTTP/1.1 ").count(), 1);
}

#[tokio::test]
async fn trickling_body_gets_408() {
    let f = fixture();
    let head = format!(
        "POST /v1/keys/verify HTTP/1.1\r\nHost: portcullis.example.test\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"key\":",
        f.operator
    );
    let mut slow = raw::connect(f.server.address, &f.server.ca_pem).await;
    slow.write_all(head.as_bytes()).await.unwrap();

    assert_other_client_served(f).await;

    let response = raw::read_until_closed(&mut slow).await;
    assert_eq!(response.status, 408, "{}", response.text);
    assert!(
        response.text.contains("body_read_timeout"),
        "{}",
        response.text
    );
    assert!(response.closed, "the slow client was not cut off");
}

/// The token endpoint answers a trickling form body as every other endpoint
/// does: 408, not an OAuth 400 that would send the client to fix its
/// parameters.
#[tokio::test]
async fn token_endpoint_trickling_body_gets_408() {
    let f = fixture();
    let head = "POST /oauth/token HTTP/1.1\r\nHost: portcullis.example.test\r\n\
                Content-Type: application/x-www-form-urlencoded\r\n\
                Content-Length: 100\r\n\r\ngrant_type=client_credentials";
    let mut slow = raw::connect(f.server.address, &f.server.ca_pem).await;
    slow.write_all(head.as_bytes()).await.unwrap();
    assert_other_client_served(f).await;

    let response = raw::read_until_closed(&mut slow).await;
    assert_eq!(response.status, 408, "{}", response.text);
    assert!(
        response.text.contains("body_read_timeout"),
        "{}",
        response.text
    );
    assert!(response.text.contains("no-store"), "{}", response.text);
    assert!(response.closed, "the slow client was not cut off");
}

#[tokio::test]
async fn gateway_trickling_body_gets_408() {
    let f = fixture();
    let case = marker();
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: portcullis.example.test\r\nX-API-Key: {}\r\n\
         X-Test-Case: {case}\r\nContent-Length: 100\r\n\r\n0123456789",
        f.write
    );
    let mut slow = raw::connect(f.server.address, &f.server.ca_pem).await;
    slow.write_all(head.as_bytes()).await.unwrap();
    assert_other_client_served(f).await;

    let response = raw::read_until_closed(&mut slow).await;
    assert_eq!(response.status, 408, "{}", response.text);
    assert!(response.closed, "the slow client was not cut off");
    assert_eq!(
        f.upstream.count_marked(&case),
        0,
        "the upstream received an incomplete body as a request"
    );
}
