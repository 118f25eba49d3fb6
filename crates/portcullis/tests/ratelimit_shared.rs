//! Rate limits shared through Redis: two nodes together admit the
//! configured rate and block a guessing address together, and a Redis
//! outage gives each node its configured fallback until Redis is back,
//! with one warning and one recovery line per node. Every test runs its own
//! `redis-server`, so it can stop it without touching the Redis that other
//! tests use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "fixtures outside #[test] functions fail the test on any error, and tests read their settings from the environment"
)]

mod support;

use std::time::{Duration, Instant};

use portcullis_core::key::{Environment, KeySecret};
use reqwest::StatusCode;
use serde_json::Value;
use support::services::{OwnRedis, fresh_postgres};
use support::upstream::Upstream;
use support::{DataDir, Server};

fn config(upstream: &Upstream) -> String {
    let up = upstream.url();
    format!(
        r#"
[[routes]]
path_prefix = "/steady"
upstream = "{up}"
rate_limit = "20/s burst 20"
[routes.scopes]
"*" = []

[[routes]]
path_prefix = "/few"
upstream = "{up}"
rate_limit = "1/min burst 3"
[routes.scopes]
"*" = []

[[routes]]
path_prefix = "/unlimited"
upstream = "{up}"
[routes.scopes]
"*" = []
"#
    )
}

/// Creates a tenant and a key in `data` and returns the key.
fn create_key(data: &DataDir) -> String {
    data.cli(&["tenants", "create", "acme"]);
    let (_, key) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    key
}

async fn status(node: &Server, path: &str, key: &str) -> StatusCode {
    node.client()
        .get(node.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
}

/// Sends `count` requests to `path` and returns their statuses.
async fn statuses(node: &Server, path: &str, key: &str, count: usize) -> Vec<StatusCode> {
    let mut all = Vec::with_capacity(count);
    for _ in 0..count {
        all.push(status(node, path, key).await);
    }
    all
}

/// Sends requests to `path` until one gets `expected`, for at most
/// `within`, and returns whether one did.
async fn wait_for_status(
    node: &Server,
    path: &str,
    key: &str,
    expected: StatusCode,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if status(node, path, key).await == expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Returns the body of `/readyz`, checking that the node is ready.
async fn readiness(node: &Server) -> Value {
    let response = node.client().get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Returns the `rate_limits` member of `/readyz`.
async fn readiness_backend(node: &Server) -> String {
    readiness(node).await["rate_limits"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Counts the log lines with `message`. The rate limiter and the
/// brute-force tracker share one Redis connection per node, so an outage
/// gives one line of each kind per node.
fn count_logs(node: &Server, message: &str) -> usize {
    node.log_text()
        .lines()
        .filter(|line| line.contains(message))
        .count()
}

/// Polls `/readyz` until both counters are kept in Redis again, for at most
/// `within`, and returns whether they were. Sends no gateway request.
async fn wait_for_redis_backend(node: &Server, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let body = readiness(node).await;
        if body["rate_limits"] == "redis" && body["brute_force"] == "redis" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn two_nodes_share_one_rate() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(database_url) = fresh_postgres("portcullis_ratelimit") else {
        return;
    };
    let upstream = Upstream::start();
    let mut data = DataDir::new();
    data.database_url = Some(database_url);
    data.write_config(&config(&upstream));
    let key = create_key(&data);
    let env = [("PORTCULLIS_REDIS_URL", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let nodes = [
        Server::start_with(&data, &env),
        Server::start_with(&data, &env),
    ];

    let started = Instant::now();
    let run_for = Duration::from_secs(4);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let node = &nodes[worker % 2];
        let client = node.client();
        let url = node.url("/steady/1");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0_u64;
            while started.elapsed() < run_for {
                let response = client
                    .get(&url)
                    .header("x-api-key", &key)
                    .send()
                    .await
                    .unwrap();
                match response.status() {
                    StatusCode::OK => admitted += 1,
                    StatusCode::TOO_MANY_REQUESTS => {}
                    other => panic!("unexpected status {other}"),
                }
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();

    // One allowance for both nodes: the burst of 20, then 20 per second.
    // Two separate allowances would admit about twice as many.
    let expected = 20.0 + 20.0 * elapsed;
    let admitted = admitted as f64;
    assert!(
        (admitted - expected).abs() <= expected * 0.05,
        "admitted {admitted} in {elapsed:.2} s on two nodes, expected {expected:.0} ± 5%"
    );
    for node in &nodes {
        assert_eq!(count_logs(node, "redis is unreachable"), 0);
    }
}

#[tokio::test]
async fn max_uses_exact_on_two_nodes() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(database_url) = fresh_postgres("portcullis_max_uses") else {
        return;
    };
    let upstream = Upstream::start();
    let mut data = DataDir::new();
    data.database_url = Some(database_url);
    data.write_config(&config(&upstream));
    data.cli(&["tenants", "create", "acme"]);
    let (_, key) = data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
        "--max-uses",
        "25",
    ]);
    let url = redis.url();
    let env = [("PORTCULLIS_REDIS_URL", url.as_str())];
    let nodes = [
        Server::start_with(&data, &env),
        Server::start_with(&data, &env),
    ];

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..80 {
        let node = &nodes[index % 2];
        let client = node.client();
        let url = node.url("/unlimited/1");
        let key = key.clone();
        tasks.spawn(async move {
            client
                .get(&url)
                .header("x-api-key", &key)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let mut admitted = 0;
    let mut exhausted = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            StatusCode::OK => admitted += 1,
            StatusCode::FORBIDDEN => exhausted += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 25);
    assert_eq!(exhausted, 55);

    // The route limit of /few (1/min burst 3) admits these requests before
    // the spent uses reject them, and each gives its charge back in Redis,
    // so another key still gets the route's whole burst.
    for index in 0..6 {
        let status = status(&nodes[index % 2], "/few/1", &key).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (_, other) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    for index in 0..3 {
        let status = status(&nodes[index % 2], "/few/1", &other).await;
        assert_eq!(status, StatusCode::OK, "request {index} of the burst");
    }
    let status = status(&nodes[1], "/few/1", &other).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn redis_outage_uses_fallback_then_recovers() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let upstream = Upstream::start();
    let local_data = DataDir::new();
    local_data.write_config(&config(&upstream));
    let local_key = create_key(&local_data);
    let deny_data = DataDir::new();
    deny_data.write_config(&config(&upstream));
    let deny_key = create_key(&deny_data);
    let url = redis.url();
    let local = Server::start_with(&local_data, &[("PORTCULLIS_REDIS_URL", &url)]);
    let deny = Server::start_with(
        &deny_data,
        &[
            ("PORTCULLIS_REDIS_URL", &url),
            ("PORTCULLIS_LIMITS__REDIS_FAILURE", "deny"),
        ],
    );

    // Both nodes count `/few` in Redis: the local node spends the route's
    // 3 requests, and the other node is then denied too.
    let first = statuses(&local, "/few/1", &local_key, 4).await;
    assert_eq!(
        first,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(
        status(&deny, "/few/1", &deny_key).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    assert_eq!(readiness_backend(&local).await, "redis");
    assert_eq!(readiness(&local).await["redis_failures"], 0);
    assert_eq!(readiness(&local).await["brute_force"], "redis");
    redis.stop();

    // The local node counts in its own memory, which starts full.
    let during = statuses(&local, "/few/1", &local_key, 4).await;
    assert_eq!(
        during,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // The deny node rejects every limited request.
    let response = deny
        .client()
        .get(deny.url("/few/1"))
        .header("x-api-key", &deny_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limits_unavailable");
    for _ in 0..3 {
        assert_eq!(
            status(&deny, "/steady/1", &deny_key).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(count_logs(&local, "redis is unreachable"), 1);
    assert_eq!(count_logs(&deny, "redis is unreachable"), 1);
    assert_eq!(readiness_backend(&local).await, "redis_unreachable");
    // Both components share the node's connection and its outage state.
    // Every key request checks the failure counts first, so the failed calls
    // may all be the tracker's.
    let body = readiness(&local).await;
    assert_eq!(body["brute_force"], "redis_unreachable");
    let failures = body["redis_failures"].as_u64().unwrap()
        + body["brute_force_redis_failures"].as_u64().unwrap();
    assert!(failures >= 1, "{failures} failed Redis calls counted");

    // The restarted Redis is empty. The local node's memory has spent
    // `/few`, so an admission there shows that Redis counts again.
    redis.restart();
    // The background probe ends the outage without any request.
    for node in [&local, &deny] {
        let ready = wait_for_redis_backend(node, Duration::from_secs(15)).await;
        assert!(ready, "/readyz did not report Redis in use again");
        assert_eq!(count_logs(node, "redis is reachable again"), 1);
    }
    let recovered = wait_for_status(
        &local,
        "/few/1",
        &local_key,
        StatusCode::OK,
        Duration::from_secs(15),
    )
    .await;
    assert!(recovered, "the local node did not use Redis again");
    let recovered = wait_for_status(
        &deny,
        "/few/1",
        &deny_key,
        StatusCode::OK,
        Duration::from_secs(15),
    )
    .await;
    assert!(recovered, "the deny node did not admit requests again");
    // Together they spent 2 of the fresh 3; one is left, then 429.
    let after = statuses(&deny, "/few/1", &deny_key, 2).await;
    assert_eq!(after, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);

    for node in [&local, &deny] {
        assert_eq!(readiness_backend(node).await, "redis");
        assert_eq!(count_logs(node, "redis is unreachable"), 1);
        assert_eq!(count_logs(node, "redis is reachable again"), 1);
    }
}

/// Failed authentications from one address count in Redis, so guesses
/// spread over two nodes block the address on both, while another address
/// with a right key passes on both.
#[tokio::test]
async fn guesses_on_two_nodes_block_together() {
    let Some(redis) = OwnRedis::start() else {
        return;
    };
    let Some(database_url) = fresh_postgres("portcullis_brute_force") else {
        return;
    };
    let upstream = Upstream::start();
    let mut data = DataDir::new();
    data.database_url = Some(database_url);
    data.write_config(&format!(
        "[limits.brute_force.client_ip]\nslow_after = 4\nblock_after = 4\nwindow = \"1m\"\n{}",
        config(&upstream)
    ));
    let key = create_key(&data);
    let url = redis.url();
    let env = [("PORTCULLIS_REDIS_URL", url.as_str())];
    let nodes = [
        Server::start_with(&data, &env),
        Server::start_with(&data, &env),
    ];

    // Four guesses from 127.0.0.1, alternating between the nodes.
    for n in 0..4 {
        let guess = KeySecret::generate(Environment::Live).unwrap();
        let status = status(&nodes[n % 2], "/unlimited/1", guess.expose()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    for node in &nodes {
        let response = node
            .client()
            .get(node.url("/unlimited/1"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["limit"], "brute_force");
    }

    for node in &nodes {
        let other = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&node.ca_pem).unwrap()])
            .resolve("localhost", node.address)
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .no_proxy()
            .build()
            .unwrap();
        let response = other
            .get(node.url("/unlimited/1"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "another address");
    }
}
