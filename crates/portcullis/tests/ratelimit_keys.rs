//! Rate limits of API keys: their own rates and plans, set by `keys
//! create` and changed by `keys update` while the server runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::upstream::Upstream;
use support::{DataDir, Server, header};

/// The time within which a change must reach the node: the change feed is
/// polled every few hundred milliseconds.
const BOUND: Duration = Duration::from_secs(1);

struct Fixture {
    data: DataDir,
    server: Server,
    _upstream: Upstream,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&format!(
        r#"
[limits.plans.basic]
rate = "1/min burst 2"
daily = "1000/d"

[[routes]]
path_prefix = "/orders"
upstream = "{0}"
[routes.scopes]
"*" = []

# Only the test of rejected requests uses this route, so its allowance
# is not shared with other tests.
[[routes]]
path_prefix = "/metered"
upstream = "{0}"
rate_limit = "1/h burst 3"
[routes.scopes]
GET = ["orders:read"]

# Nothing listens on port 9 (discard) here, so every request gets 502.
[[routes]]
path_prefix = "/down"
upstream = "http://127.0.0.1:9"
[routes.scopes]
"*" = []
"#,
        upstream.url()
    ));
    data.cli(&["tenants", "create", "acme"]);
    let server = Server::start(&data);
    Fixture {
        data,
        server,
        _upstream: upstream,
    }
});

/// Creates a key of acme with `extra` arguments and returns (id, secret).
fn create_key(extra: &[&str]) -> (String, String) {
    let mut args = vec!["--tenant", "acme", "--scopes", "orders:read"];
    args.extend_from_slice(extra);
    FIXTURE.data.create_key(&args)
}

async fn get(key: &str) -> reqwest::Response {
    send(reqwest::Method::GET, "/orders/1", key).await
}

async fn send(method: reqwest::Method, path: &str, key: &str) -> reqwest::Response {
    FIXTURE
        .server
        .client()
        .request(method, FIXTURE.server.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

async fn limit_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.unwrap();
    body["limit"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn key_rate_limits_apply() {
    let (_, key) = create_key(&[
        "--rate-limit",
        "1/min burst 3",
        "--rate-limit",
        "1/h burst 100",
    ]);
    let first = get(&key).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"key\";q=3;w=180, \"key-2\";q=100;w=360000")
    );
    assert_eq!(
        header(&first, "ratelimit"),
        Some("\"key\";r=2;t=60, \"key-2\";r=99;t=3600")
    );
    for _ in 0..2 {
        assert_eq!(get(&key).await.status(), StatusCode::OK);
    }
    assert_eq!(limit_of(get(&key).await).await, "key");
}

#[tokio::test]
async fn plan_limits_apply() {
    let (_, key) = create_key(&["--plan", "basic"]);
    let first = get(&key).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"daily\";q=1000;w=86400, \"rate\";q=2;w=120")
    );
    assert_eq!(get(&key).await.status(), StatusCode::OK);
    assert_eq!(limit_of(get(&key).await).await, "rate");
}

#[test]
fn unknown_plan_or_rate_rejected() {
    let create = [
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
    ];
    let stderr = FIXTURE
        .data
        .cli_error(&[&create[..], &["--plan", "gold"]].concat());
    assert!(stderr.contains("--plan"), "{stderr}");
    assert!(stderr.contains("no plan named \"gold\""), "{stderr}");
    assert!(stderr.contains("basic"), "{stderr}");

    let stderr = FIXTURE
        .data
        .cli_error(&[&create[..], &["--rate-limit", "10 per second"]].concat());
    assert!(stderr.contains("--rate-limit"), "{stderr}");
    assert!(stderr.contains("COUNT/UNIT"), "{stderr}");
}

#[test]
fn list_shows_limits() {
    let (id, _) = create_key(&["--rate-limit", "100/s burst 100", "--plan", "basic"]);
    let listed = FIXTURE.data.cli_json(&["keys", "list", "--tenant", "acme"]);
    let key = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["id"] == id.as_str())
        .unwrap();
    // The rate is stored in its canonical form.
    assert_eq!(key["rate_limits"], serde_json::json!(["100/s"]));
    assert_eq!(key["plan"], "basic");
}

/// Raising a spent limit admits the key again within the bound, with
/// headers of the new policy: the old rate's wait does not carry over.
#[tokio::test]
async fn raised_limit_replaces_spent_one() {
    let (id, key) = create_key(&["--rate-limit", "2/h"]);
    for _ in 0..2 {
        assert_eq!(get(&key).await.status(), StatusCode::OK);
    }
    assert_eq!(limit_of(get(&key).await).await, "key");

    FIXTURE
        .data
        .cli(&["keys", "update", &id, "--rate-limit", "100/s"]);
    let changed = Instant::now();
    let mut admitted = None;
    while changed.elapsed() < BOUND && admitted.is_none() {
        let response = get(&key).await;
        if response.status() == StatusCode::OK {
            admitted = Some(response);
        }
    }
    let admitted = admitted.expect("the raised limit did not apply within the bound");
    assert_eq!(
        header(&admitted, "ratelimit-policy"),
        Some("\"key\";q=100;w=1")
    );
    assert_eq!(header(&admitted, "ratelimit"), Some("\"key\";r=99;t=1"));
}

#[tokio::test]
async fn update_takes_effect_within_bound() {
    let (id, key) = create_key(&[]);
    assert_eq!(get(&key).await.status(), StatusCode::OK);
    assert_eq!(header(&get(&key).await, "ratelimit"), None);

    FIXTURE
        .data
        .cli(&["keys", "update", &id, "--rate-limit", "1/min burst 1"]);
    let changed = Instant::now();
    let mut limited = false;
    while changed.elapsed() < BOUND && !limited {
        limited = get(&key).await.status() == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the new limit did not apply within {BOUND:?}");

    let updated = FIXTURE
        .data
        .cli_json(&["keys", "update", &id, "--no-rate-limit"]);
    assert_eq!(updated["rate_limits"], serde_json::json!([]));
    let changed = Instant::now();
    let mut admitted = false;
    while changed.elapsed() < BOUND && !admitted {
        admitted = get(&key).await.status() == StatusCode::OK;
    }
    assert!(
        admitted,
        "removing the limit did not apply within {BOUND:?}"
    );

    let stderr = FIXTURE.data.cli_error(&["keys", "update", &id]);
    assert!(stderr.contains("nothing to update"), "{stderr}");
}

#[tokio::test]
async fn max_uses_exact_under_concurrency() {
    let (id, key) = create_key(&["--max-uses", "10"]);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let key = key.clone();
        tasks.spawn(async move { get(&key).await.status() });
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
    assert_eq!(admitted, 10);
    assert_eq!(exhausted, 20);

    let response = get(&key).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "key_uses_exhausted");
    assert!(
        body["detail"].as_str().unwrap().contains("all 10 requests"),
        "{body}"
    );

    let listed = FIXTURE.data.cli_json(&["keys", "list", "--tenant", "acme"]);
    let record = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|record| record["id"] == id.as_str())
        .unwrap();
    assert_eq!(record["max_uses"], 10);
    assert_eq!(record["uses_spent"], 10);
}

/// Calls the verify API for `key` with a new operator key.
async fn verify(key: &str) -> reqwest::Response {
    static OPERATOR: LazyLock<String> = LazyLock::new(|| {
        FIXTURE
            .data
            .create_key(&["--operator", "--scopes", "keys:verify"])
            .1
    });
    FIXTURE
        .server
        .client()
        .post(FIXTURE.server.url("/v1/keys/verify"))
        .header("x-api-key", OPERATOR.as_str())
        .json(&serde_json::json!({ "key": key }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn verify_counts_against_key_limits() {
    let (_, key) = create_key(&["--rate-limit", "1/min burst 2"]);
    let first = verify(&key).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "ratelimit"), Some("\"key\";r=1;t=60"));
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["valid"], true);

    // The gateway shares the allowance: its request is the second of two.
    assert_eq!(get(&key).await.status(), StatusCode::OK);

    let limited = verify(&key).await;
    assert_eq!(limited.status(), StatusCode::OK);
    assert_eq!(header(&limited, "retry-after"), None);
    assert!(header(&limited, "ratelimit").is_some());
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["valid"], false);
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["limit"], "key");
    let retry_after = body["retry_after"].as_u64().unwrap();
    assert!((1..=60).contains(&retry_after), "{body}");
}

/// A request without an upstream response is not one of the key's
/// successful requests, so its use is given back.
#[tokio::test]
async fn upstream_failures_spend_no_uses() {
    let (_, key) = create_key(&["--max-uses", "2"]);
    for _ in 0..3 {
        let response = FIXTURE
            .server
            .client()
            .get(FIXTURE.server.url("/down/1"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }
    for _ in 0..2 {
        assert_eq!(get(&key).await.status(), StatusCode::OK);
    }
    assert_eq!(get(&key).await.status(), StatusCode::FORBIDDEN);
}

async fn send_metered(method: reqwest::Method, key: &str) -> reqwest::Response {
    send(method, "/metered/1", key).await
}

/// Requests rejected with 403 or 405 spend none of the route's allowance
/// (`1/h burst 3`): not for a missing scope or method, and not for a key
/// whose uses are spent, although that last check follows the rate limit.
#[tokio::test]
async fn rejected_requests_spend_no_allowance() {
    let (_, spent) = create_key(&["--max-uses", "1"]);
    assert_eq!(
        send_metered(reqwest::Method::GET, &spent).await.status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        let response = send_metered(reqwest::Method::GET, &spent).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // The header shows the allowance after the refund: two requests.
        let ratelimit = header(&response, "ratelimit").unwrap_or_default();
        assert!(ratelimit.starts_with("\"route\";r=2;t="), "{ratelimit}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "key_uses_exhausted");
    }

    let (_, unscoped) = FIXTURE
        .data
        .create_key(&["--tenant", "acme", "--scopes", "orders:write"]);
    for _ in 0..5 {
        let response = send_metered(reqwest::Method::GET, &unscoped).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(header(&response, "ratelimit"), None);
        let response = send_metered(reqwest::Method::POST, &unscoped).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    // The route still has two of its three requests.
    let (_, other) = create_key(&[]);
    let response = send_metered(reqwest::Method::GET, &other).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Two of the three requests are spent, so the full allowance returns in
    // about two hours: `t` counts down from 7200 while the test runs.
    let ratelimit = header(&response, "ratelimit").unwrap_or_default();
    let reset = ratelimit
        .strip_prefix("\"route\";r=1;t=")
        .and_then(|t| t.parse::<u64>().ok());
    assert!(
        reset.is_some_and(|t| (7000..=7200).contains(&t)),
        "{ratelimit}"
    );
    assert_eq!(
        send_metered(reqwest::Method::GET, &other).await.status(),
        StatusCode::OK
    );
    let limited = send_metered(reqwest::Method::GET, &other).await;
    assert_eq!(limit_of(limited).await, "route");
}

#[tokio::test]
async fn verify_spends_uses() {
    let (_, key) = create_key(&["--max-uses", "1"]);
    let body: Value = verify(&key).await.json().await.unwrap();
    assert_eq!(body["valid"], true);
    let body: Value = verify(&key).await.json().await.unwrap();
    assert_eq!(body["valid"], false);
    assert_eq!(body["code"], "key_uses_exhausted");
    assert_eq!(get(&key).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admin_api_sets_limits() {
    let (_, admin) = FIXTURE
        .data
        .create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let (id, key) = create_key(&[]);
    let client = FIXTURE.server.client();
    let url = FIXTURE.server.url(&format!("/admin/v1/keys/{id}/limits"));

    let response = client
        .put(&url)
        .header("x-api-key", &admin)
        .json(&serde_json::json!({"rate_limits": ["1/min burst 1"], "plan": "basic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["rate_limits"], serde_json::json!(["1/min"]));
    assert_eq!(body["plan"], "basic");
    assert_eq!(body["max_uses"], Value::Null);

    // The node that served the change applies it at once.
    assert_eq!(get(&key).await.status(), StatusCode::OK);
    assert_eq!(limit_of(get(&key).await).await, "key");

    let response = client
        .put(&url)
        .header("x-api-key", &admin)
        .json(&serde_json::json!({"plan": "gold"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("no plan named"),
        "{body}"
    );
}

#[tokio::test]
async fn removed_plan_fails_closed() {
    let (id, key) = create_key(&["--plan", "basic"]);

    // A second node on the same store, whose configuration lacks the plan.
    let config = FIXTURE.data.path().join("without-plans.toml");
    let routes = std::fs::read_to_string(FIXTURE.data.path().join("portcullis.toml")).unwrap();
    let (_, routes) = routes.split_once("[[routes]]").unwrap();
    std::fs::write(&config, format!("[[routes]]{routes}")).unwrap();
    let node = Server::start_with(
        &FIXTURE.data,
        &[("PORTCULLIS_CONFIG", config.to_str().unwrap())],
    );

    let response = node
        .client()
        .get(node.url("/orders/1"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "plan_not_configured");

    let logs = node.log_text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("name a plan that [limits.plans] does not define"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains(&id), "{}", warnings[0]);
    assert!(
        warnings[0].contains("\"plan\":\"basic\""),
        "{}",
        warnings[0]
    );
}
