//! Brute-force protection end to end: failed client authentications and
//! unknown API keys block the client address that sends them, the address
//! is resolved through trusted proxies only, and other addresses with right
//! credentials are not affected. Other source addresses are 127.0.0.2 and
//! 127.0.0.3, which the loopback interface accepts on Linux.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::key::{Environment, KeySecret};
use reqwest::StatusCode;
use serde_json::Value;
use support::upstream::Upstream;
use support::{DataDir, Server};

const ORDERS: &str = "https://orders.example.test";

/// Failed authentications from one address that start a block.
const BLOCK_AFTER: usize = 5;

/// Writes the configuration: addresses blocked after [`BLOCK_AFTER`]
/// failures in a minute, identities only after many, so that the failures
/// against one client id test the counting per address alone.
fn write_config(data: &DataDir, upstream: &str, trusted_proxies: &str) {
    write_config_with(data, upstream, trusted_proxies, 1000, 1000);
}

/// Writes the configuration with identities slowed after
/// `identity_slow_after` failures and blocked after `identity_block_after`.
fn write_config_with(
    data: &DataDir,
    upstream: &str,
    trusted_proxies: &str,
    identity_slow_after: usize,
    identity_block_after: usize,
) {
    data.write_config(&format!(
        r#"
[server]
trusted_proxies = [{trusted_proxies}]

[limits.brute_force.client_ip]
slow_after = {BLOCK_AFTER}
block_after = {BLOCK_AFTER}
window = "1m"

[limits.brute_force.identity]
slow_after = {identity_slow_after}
block_after = {identity_block_after}

[[routes]]
path_prefix = "/orders"
upstream = "{upstream}"
auth = ["api_key", "jwt"]
audience = "{ORDERS}"
[routes.scopes]
GET = ["orders:read"]
"#
    ));
}

struct Client {
    id: String,
    secret: String,
}

fn create_client(data: &DataDir) -> Client {
    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Test app",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ]);
    Client {
        id: created["client_id"].as_str().unwrap().to_owned(),
        secret: created["client_secret"].as_str().unwrap().to_owned(),
    }
}

/// Builds an HTTPS client of `server` whose requests leave from `source`.
fn client_from(server: &Server, source: Ipv4Addr) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&server.ca_pem).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", server.address)
        .local_address(IpAddr::V4(source))
        .no_proxy()
        .build()
        .unwrap()
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Value,
}

async fn reply(response: reqwest::Response) -> Reply {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let retry_after = header("retry-after");
    let content_type = header("content-type");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        content_type,
        body,
    }
}

/// Sends a `client_credentials` request for `id:secret` with extra headers.
async fn token(
    http: &reqwest::Client,
    server: &Server,
    id: &str,
    secret: &str,
    headers: &[(&str, String)],
) -> Reply {
    let basic = STANDARD.encode(format!("{id}:{secret}"));
    let mut request = http
        .post(server.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&resource={}",
            ORDERS.replace(':', "%3A").replace('/', "%2F")
        ));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    reply(request.send().await.unwrap()).await
}

async fn get_orders(
    http: &reqwest::Client,
    server: &Server,
    key: &str,
    headers: &[(&str, String)],
) -> Reply {
    let mut request = http
        .get(server.url("/orders/1"))
        .header("authorization", format!("Bearer {key}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    reply(request.send().await.unwrap()).await
}

/// Checks that `reply` is the 429 of a brute-force block.
fn assert_blocked(reply: &Reply, step: &str) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{step}");
    let seconds: u64 = reply
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{step}: no Retry-After"))
        .parse()
        .unwrap();
    assert!((1..=60).contains(&seconds), "{step}: Retry-After {seconds}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/problem+json"),
        "{step}"
    );
    assert_eq!(reply.body["status"], 429, "{step}");
    assert_eq!(reply.body["limit"], "brute_force", "{step}");
}

/// Rotating `X-Forwarded-For` and `Forwarded` from an untrusted peer does
/// not change the counted address, headers from a trusted proxy count the
/// rightmost untrusted address, and a right secret from another address
/// passes.
#[tokio::test]
async fn spoofed_forwarded_for_is_ignored() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    write_config(&data, &upstream.url(), "");
    data.cli(&["tenants", "create", "acme"]);
    let c = create_client(&data);
    let d = create_client(&data);
    let server = Server::start(&data);
    let local = client_from(&server, Ipv4Addr::LOCALHOST);

    // Step 1: twenty wrong secrets for C from 127.0.0.1, each with a new
    // forwarded address.
    for n in 1..=20 {
        let mut headers = vec![("x-forwarded-for", format!("203.0.113.{n}"))];
        if n % 2 == 0 {
            headers.push(("forwarded", format!("for=203.0.113.{n}")));
        }
        let reply = token(&local, &server, &c.id, "wrong-secret", &headers).await;
        if n <= BLOCK_AFTER {
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "step 1, request {n}"
            );
            assert_eq!(reply.body["error"], "invalid_client", "step 1, request {n}");
        } else {
            assert_blocked(&reply, &format!("step 1, request {n}"));
            assert_eq!(reply.body["error"], "temporarily_unavailable");
        }
    }

    // Step 2: twenty unknown keys with a valid checksum, the same way.
    // 127.0.0.1 is blocked already, so every one is refused unchecked.
    for n in 1..=20 {
        let unknown = KeySecret::generate(Environment::Test).unwrap();
        let headers = [("x-forwarded-for", format!("203.0.113.{n}"))];
        let reply = get_orders(&local, &server, unknown.expose(), &headers).await;
        assert_blocked(&reply, &format!("step 2, request {n}"));
    }
    server.stop().await;

    // Step 3: 127.0.0.2 becomes a trusted proxy. Memory counts start over
    // with the restart, so the failures below count on their own.
    write_config(&data, &upstream.url(), "\"127.0.0.2\"");
    let server = Server::start(&data);
    let proxy = client_from(&server, Ipv4Addr::new(127, 0, 0, 2));
    let forwarded_9 = [("x-forwarded-for", "198.51.100.7, 203.0.113.9".to_owned())];
    for n in 1..=BLOCK_AFTER {
        let reply = token(&proxy, &server, &c.id, "wrong-secret", &forwarded_9).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "step 3, request {n}"
        );
    }
    let sixth = token(&proxy, &server, &c.id, "wrong-secret", &forwarded_9).await;
    assert_blocked(&sixth, "step 3, sixth request");
    let forwarded_10 = [("x-forwarded-for", "198.51.100.7, 203.0.113.10".to_owned())];
    let other = token(&proxy, &server, &c.id, "wrong-secret", &forwarded_10).await;
    assert_eq!(
        other.status,
        StatusCode::UNAUTHORIZED,
        "step 3, 203.0.113.10"
    );

    // Step 4: an untrusted peer's forwarded address counts for nothing, so
    // ten failures from 127.0.0.3 do not block 192.0.2.50.
    let untrusted = client_from(&server, Ipv4Addr::new(127, 0, 0, 3));
    let forwarded_50 = [("x-forwarded-for", "192.0.2.50".to_owned())];
    for n in 1..=10 {
        let reply = token(&untrusted, &server, &c.id, "wrong-secret", &forwarded_50).await;
        let expected = if n <= BLOCK_AFTER {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(reply.status, expected, "step 4, request {n}");
    }
    let right = token(&proxy, &server, &d.id, &d.secret, &forwarded_50).await;
    assert_eq!(right.status, StatusCode::OK, "step 4, D's right secret");
    assert!(right.body["access_token"].is_string());
    server.stop().await;
}

/// Unknown keys from one address block it, even for a right key, while
/// another address with a right key passes.
#[tokio::test]
async fn key_guessing_blocks_one_address() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    write_config(&data, &upstream.url(), "");
    data.cli(&["tenants", "create", "acme"]);
    let (_, key) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let server = Server::start(&data);
    let attacker = client_from(&server, Ipv4Addr::new(127, 0, 0, 2));
    let caller = client_from(&server, Ipv4Addr::new(127, 0, 0, 3));

    for n in 1..=BLOCK_AFTER {
        let unknown = KeySecret::generate(Environment::Test).unwrap();
        let reply = get_orders(&attacker, &server, unknown.expose(), &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "guess {n}");
        assert_eq!(reply.body["code"], "not_found", "guess {n}");
    }
    let unknown = KeySecret::generate(Environment::Test).unwrap();
    let blocked = get_orders(&attacker, &server, unknown.expose(), &[]).await;
    assert_blocked(&blocked, "guess after the block");

    // A blocked address is refused before any key is checked, so even a
    // right key waits.
    let right_from_attacker = get_orders(&attacker, &server, &key, &[]).await;
    assert_blocked(&right_from_attacker, "right key from the blocked address");

    let right = get_orders(&caller, &server, &key, &[]).await;
    assert_eq!(
        right.status,
        StatusCode::OK,
        "right key from another address"
    );
    server.stop().await;
}

/// Access tokens whose signature does not verify block the address that
/// sends them, like unknown keys, while the same client's real token from
/// another address passes.
#[tokio::test]
async fn forged_tokens_block_one_address() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    write_config(&data, &upstream.url(), "");
    data.cli(&["tenants", "create", "acme"]);
    let c = create_client(&data);
    let server = Server::start(&data);
    let attacker = client_from(&server, Ipv4Addr::new(127, 0, 0, 2));
    let caller = client_from(&server, Ipv4Addr::new(127, 0, 0, 3));

    let issued = token(&caller, &server, &c.id, &c.secret, &[]).await;
    let real = issued.body["access_token"].as_str().unwrap().to_owned();
    // The same header and claims with another signature.
    let (signed, _) = real.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", "A".repeat(86));

    for n in 1..=BLOCK_AFTER {
        let reply = get_orders(&attacker, &server, &forged, &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "forgery {n}");
    }
    let blocked = get_orders(&attacker, &server, &forged, &[]).await;
    assert_blocked(&blocked, "forgery after the block");
    let real_from_attacker = get_orders(&attacker, &server, &real, &[]).await;
    assert_blocked(&real_from_attacker, "real token from the blocked address");

    let right = get_orders(&caller, &server, &real, &[]).await;
    assert_eq!(
        right.status,
        StatusCode::OK,
        "real token from another address"
    );
    server.stop().await;
}

/// Unknown keys sent all at once from one address do not all get 401. Once
/// the failures reach the threshold, the rest, checked in parallel, get the
/// block.
#[tokio::test]
async fn parallel_guesses_stop_at_threshold() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    write_config(&data, &upstream.url(), "");
    data.cli(&["tenants", "create", "acme"]);
    let server = Server::start(&data);
    let attacker = client_from(&server, Ipv4Addr::new(127, 0, 0, 2));

    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let attacker = attacker.clone();
        let url = server.url("/orders/1");
        let guess = KeySecret::generate(Environment::Test).unwrap();
        let guess = guess.expose().to_owned();
        guesses.spawn(async move {
            attacker
                .get(url)
                .header("x-api-key", guess)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let mut rejected = 0;
    let mut blocked = 0;
    while let Some(status) = guesses.join_next().await {
        match status.unwrap() {
            StatusCode::UNAUTHORIZED => rejected += 1,
            StatusCode::TOO_MANY_REQUESTS => blocked += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(rejected, BLOCK_AFTER, "guesses answered past the threshold");
    assert_eq!(blocked, 40 - BLOCK_AFTER);
    server.stop().await;
}

/// Wrong secrets for a client id, each from a new address, block the id
/// for wrong secrets, but its right secret from elsewhere still works: a
/// generated secret cannot be guessed, and the client id is public.
#[tokio::test]
async fn blocked_client_id_keeps_its_right_secret() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    write_config_with(&data, &upstream.url(), "", 3, 3);
    data.cli(&["tenants", "create", "acme"]);
    let c = create_client(&data);
    let server = Server::start(&data);

    for n in 0..3u8 {
        let from = client_from(&server, Ipv4Addr::new(127, 0, 1, 10 + n));
        let reply = token(&from, &server, &c.id, "wrong-secret", &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "wrong secret {n}");
    }
    let another = client_from(&server, Ipv4Addr::new(127, 0, 1, 20));
    let wrong = token(&another, &server, &c.id, "wrong-secret", &[]).await;
    assert_blocked(&wrong, "wrong secret after the block");

    let owner = client_from(&server, Ipv4Addr::new(127, 0, 1, 30));
    let right = token(&owner, &server, &c.id, &c.secret, &[]).await;
    assert_eq!(
        right.status,
        StatusCode::OK,
        "the right secret was locked out"
    );

    // The owner's success does not lift the block that others built.
    let later = client_from(&server, Ipv4Addr::new(127, 0, 1, 40));
    let wrong = token(&later, &server, &c.id, "wrong-secret", &[]).await;
    assert_blocked(&wrong, "wrong secret after the owner's success");
    server.stop().await;
}

/// Reads the `brute_force_delays` counter from the metrics listener.
async fn delays_counted(server: &Server) -> u64 {
    let (_, _, body) = server.scrape().await;
    let line = body
        .lines()
        .find(|line| line.starts_with("portcullis_brute_force_delays_total "))
        .unwrap_or_else(|| panic!("no brute_force_delays counter in:\n{body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Wrong secrets for one client id from many addresses are delayed once
/// the id has `slow_after` failures, although no address reaches its own
/// threshold. The right secret is not delayed.
#[tokio::test]
async fn spread_guesses_slowed_by_identity() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    write_config_with(&data, &upstream.url(), "", 2, 1000);
    data.cli(&["tenants", "create", "acme"]);
    let c = create_client(&data);
    let server = Server::start(&data);

    for n in 0..4u8 {
        let from = client_from(&server, Ipv4Addr::new(127, 0, 2, 10 + n));
        let reply = token(&from, &server, &c.id, "wrong-secret", &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "wrong secret {n}");
    }
    // Guesses 3 and 4 met the identity's delay.
    assert_eq!(delays_counted(&server).await, 2);

    let owner = client_from(&server, Ipv4Addr::new(127, 0, 2, 30));
    let right = token(&owner, &server, &c.id, &c.secret, &[]).await;
    assert_eq!(right.status, StatusCode::OK, "right secret");
    assert_eq!(delays_counted(&server).await, 2, "the right secret waited");
    server.stop().await;
}
