//! Rate limits of OAuth clients: their own rates and plans, set by
//! `clients create`, changed by `clients update` and the admin API while the
//! server runs, and counted per client over all of its access tokens.

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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::upstream::Upstream;
use support::{DataDir, Server, header};

/// The time within which a change must reach the node: the change feed is
/// polled every few hundred milliseconds.
const BOUND: Duration = Duration::from_secs(1);

const ORDERS: &str = "https://orders.example.com";

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
rate = "1/h burst 2"

[[routes]]
path_prefix = "/orders"
upstream = "{}"
auth = ["jwt"]
audience = "{ORDERS}"
[routes.scopes]
GET = ["orders:read"]
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

struct Client {
    id: String,
    secret: String,
}

/// Registers a `client_credentials` client of acme with `extra` arguments.
fn create_client(extra: &[&str]) -> Client {
    let mut args = vec![
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Reporting job",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ];
    args.extend_from_slice(extra);
    let created = FIXTURE.data.cli_json(&args);
    Client {
        id: created["client_id"].as_str().unwrap().to_owned(),
        secret: created["client_secret"].as_str().unwrap().to_owned(),
    }
}

/// Gets an access token for the orders API.
async fn token(client: &Client) -> String {
    let basic = STANDARD.encode(format!("{}:{}", client.id, client.secret));
    let response = FIXTURE
        .server
        .client()
        .post(FIXTURE.server.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&resource=https%3A%2F%2Forders.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(token: &str) -> reqwest::Response {
    FIXTURE
        .server
        .client()
        .get(FIXTURE.server.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn limit_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&response, "retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    body["limit"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn client_limits_count_over_all_tokens() {
    let client = create_client(&["--rate-limit", "1/h burst 3"]);
    let first_token = token(&client).await;
    let second_token = token(&client).await;

    let first = get(&first_token).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"client\";q=3;w=10800")
    );
    assert_eq!(header(&first, "ratelimit"), Some("\"client\";r=2;t=3600"));

    // A second token of the same client draws on the same allowance.
    assert_eq!(get(&second_token).await.status(), StatusCode::OK);
    assert_eq!(get(&first_token).await.status(), StatusCode::OK);
    assert_eq!(limit_of(get(&second_token).await).await, "client");

    // Another client of the tenant is not affected.
    let other = create_client(&[]);
    let response = get(&token(&other).await).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "ratelimit"), None);
}

#[tokio::test]
async fn update_takes_effect_within_bound() {
    let client = create_client(&[]);
    let token = token(&client).await;
    assert_eq!(get(&token).await.status(), StatusCode::OK);

    let updated = FIXTURE
        .data
        .cli_json(&["clients", "update", &client.id, "--plan", "basic"]);
    assert_eq!(updated["plan"], "basic");
    let changed = Instant::now();
    let mut limit = None;
    while changed.elapsed() < BOUND && limit.is_none() {
        let response = get(&token).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limit = Some(limit_of(response).await);
        }
    }
    assert_eq!(
        limit.as_deref(),
        Some("rate"),
        "the plan did not apply within {BOUND:?}"
    );

    FIXTURE
        .data
        .cli(&["clients", "update", &client.id, "--no-plan"]);
    let changed = Instant::now();
    let mut admitted = false;
    while changed.elapsed() < BOUND && !admitted {
        admitted = get(&token).await.status() == StatusCode::OK;
    }
    assert!(admitted, "removing the plan did not apply within {BOUND:?}");

    let stderr = FIXTURE.data.cli_error(&["clients", "update", &client.id]);
    assert!(stderr.contains("nothing to update"), "{stderr}");
}

#[test]
fn unknown_plan_or_rate_rejected() {
    let create = [
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Job",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ];
    let stderr = FIXTURE
        .data
        .cli_error(&[&create[..], &["--plan", "gold"]].concat());
    assert!(stderr.contains("--plan"), "{stderr}");
    assert!(stderr.contains("no plan named \"gold\""), "{stderr}");

    let stderr = FIXTURE
        .data
        .cli_error(&[&create[..], &["--rate-limit", "10 per second"]].concat());
    assert!(stderr.contains("--rate-limit"), "{stderr}");

    let listed = FIXTURE
        .data
        .cli_json(&["clients", "list", "--tenant", "acme"]);
    let names: Vec<&str> = listed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|client| client["client_name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"Job"), "a rejected client was stored");
}

#[tokio::test]
async fn admin_api_sets_client_limits() {
    let (_, admin) = FIXTURE
        .data
        .create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let client = create_client(&[]);
    let token = token(&client).await;
    let http = FIXTURE.server.client();
    let url = FIXTURE
        .server
        .url(&format!("/admin/v1/clients/{}/limits", client.id));

    let response = http
        .put(&url)
        .header("x-api-key", &admin)
        .json(&json!({"rate_limits": ["1/h burst 1"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["rate_limits"], json!(["1/h"]));
    assert_eq!(body["plan"], Value::Null);

    // The node that served the change applies it at once.
    assert_eq!(get(&token).await.status(), StatusCode::OK);
    assert_eq!(limit_of(get(&token).await).await, "client");

    for (input, field) in [
        (json!({"rate_limits": ["ten a second"]}), "rate_limits"),
        (json!({"plan": "gold"}), "plan"),
    ] {
        let response = http
            .put(&url)
            .header("x-api-key", &admin)
            .json(&input)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{input}");
        let body: Value = response.json().await.unwrap();
        assert!(body.to_string().contains(field), "{input}: {body}");
    }

    let shown: Value = http
        .get(
            FIXTURE
                .server
                .url(&format!("/admin/v1/clients/{}", client.id)),
        )
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["rate_limits"],
        json!(["1/h"]),
        "rejected changes kept"
    );
}
