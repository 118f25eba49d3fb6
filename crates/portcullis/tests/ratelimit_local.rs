//! Route and tenant rate limits at the gateway, counted in one node's
//! memory: burst, sustained rate, header fields, the 429 body, and the
//! strictest of several limits deciding.

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

struct Fixture {
    _data: DataDir,
    server: Server,
    _upstream: Upstream,
}

/// The tenant limit: 6 requests at once, then one a minute, so no request
/// of a test is refilled while it runs.
const TENANT_BURST: usize = 6;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
    let data = DataDir::new();
    let up = upstream.url();
    data.write_config(&format!(
        r#"
[limits]
tenant = "1/min burst {TENANT_BURST}"

[[routes]]
path_prefix = "/burst"
upstream = "{up}"
rate_limit = "1/min burst 5"
[routes.scopes]
"*" = []

[[routes]]
path_prefix = "/scoped"
upstream = "{up}"
rate_limit = "1/min burst 5"
[routes.scopes]
POST = ["orders:write"]

[[routes]]
path_prefix = "/headers"
upstream = "{up}"
rate_limit = "10/min burst 3"
[routes.scopes]
"*" = []

[[routes]]
path_prefix = "/steady"
upstream = "{up}"
rate_limit = "20/s burst 20"
[routes.scopes]
"*" = []

[[routes]]
path_prefix = "/strict"
upstream = "{up}"
rate_limit = "1/min burst 4"
[routes.scopes]
"*" = []

[[routes]]
path_prefix = "/open"
upstream = "{up}"
[routes.scopes]
"*" = []
"#
    ));
    let server = Server::start(&data);
    Fixture {
        _data: data,
        server,
        _upstream: upstream,
    }
});

/// Creates a tenant of its own for one test, since the tenant limit
/// counts every request of a tenant, and returns a key of it.
fn key_of_new_tenant(tenant: &str, scopes: &str) -> String {
    let data = &FIXTURE._data;
    data.cli(&["tenants", "create", tenant]);
    let (_, key) = data.create_key(&["--tenant", tenant, "--scopes", scopes]);
    key
}

async fn get(path: &str, key: &str) -> reqwest::Response {
    FIXTURE
        .server
        .client()
        .get(FIXTURE.server.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn burst_admitted_then_429() {
    let key = key_of_new_tenant("burst-a", "orders:read");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get("/burst/1", &key).await.status());
    }
    assert_eq!(statuses, [StatusCode::OK; 5]);

    let limited = get("/burst/1", &key).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After {retry_after} is outside one emission interval"
    );
    assert_eq!(
        header(&limited, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        header(&limited, "ratelimit-policy"),
        Some("\"tenant\";q=6;w=360, \"route\";q=5;w=300")
    );
    let ratelimit = header(&limited, "ratelimit").unwrap().to_owned();
    assert!(
        ratelimit.starts_with("\"tenant\";r=1;t="),
        "the denied request took from the tenant: {ratelimit}"
    );
    assert!(ratelimit.contains(", \"route\";r=0;t="), "{ratelimit}");

    let body: Value = limited.json().await.unwrap();
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["status"], 429);
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["limit"], "route");
    assert_eq!(body["violated-policies"], serde_json::json!(["route"]));
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("route rate limit (1/min burst 5)"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("retry after {retry_after} seconds")),
        "{detail}"
    );
}

#[tokio::test]
async fn headers_exact_on_each_answer() {
    let key = key_of_new_tenant("headers-a", "orders:read");

    // The route's 10/min burst 3 refills in 3 × 6 s = 18 s, and one
    // request takes 6 s of it. The tenant's 1/min burst 6 refills in 360 s,
    // and one request takes 60 s of it.
    let first = get("/headers/1", &key).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"tenant\";q=6;w=360, \"route\";q=3;w=18")
    );
    assert_eq!(
        header(&first, "ratelimit"),
        Some("\"tenant\";r=5;t=60, \"route\";r=2;t=6")
    );
    assert_eq!(header(&first, "retry-after"), None);

    // A route without a limit of its own carries only the tenant's.
    let open = get("/open/1", &key).await;
    assert_eq!(open.status(), StatusCode::OK);
    assert_eq!(
        header(&open, "ratelimit-policy"),
        Some("\"tenant\";q=6;w=360")
    );
    assert_eq!(header(&open, "ratelimit"), Some("\"tenant\";r=4;t=120"));
}

#[tokio::test]
async fn forbidden_response_spends_no_allowance() {
    // The key lacks orders:write, so the POST is rejected before the limit
    // check: the response carries no limit fields and spends nothing.
    let key = key_of_new_tenant("scope-a", "orders:read");
    let client = FIXTURE.server.client();
    for _ in 0..TENANT_BURST + 2 {
        let response = client
            .post(FIXTURE.server.url("/scoped/probe"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(header(&response, "ratelimit-policy"), None);
        assert_eq!(header(&response, "ratelimit"), None);
    }

    // The tenant still has its whole burst.
    let open = get("/open/1", &key).await;
    assert_eq!(open.status(), StatusCode::OK);
    let ratelimit = header(&open, "ratelimit").unwrap();
    assert!(
        ratelimit.starts_with(&format!("\"tenant\";r={};t=", TENANT_BURST - 1)),
        "{ratelimit}"
    );
}

#[tokio::test]
async fn readiness_names_memory_backend() {
    let response = FIXTURE
        .server
        .client()
        .get(FIXTURE.server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["rate_limits"], "memory");
    assert_eq!(body["redis_failures"], Value::Null);
    assert_eq!(body["brute_force"], "memory");
    let logs = FIXTURE.server.log_text();
    assert!(
        logs.contains("rate limits are counted in this node's memory"),
        "{logs}"
    );
}

#[tokio::test]
async fn missing_key_gets_no_headers() {
    let response = FIXTURE
        .server
        .client()
        .get(FIXTURE.server.url("/headers/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "ratelimit"), None);
    assert_eq!(header(&response, "ratelimit-policy"), None);
}

#[tokio::test]
async fn strictest_limit_decides() {
    let key = key_of_new_tenant("strict-a", "orders:read");
    let other = key_of_new_tenant("strict-b", "orders:read");

    // The route allows 4 of the tenant's 6.
    for index in 0..4 {
        let response = get("/strict/1", &key).await;
        assert_eq!(response.status(), StatusCode::OK, "request {index}");
    }
    let limited = get("/strict/1", &key).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["limit"], "route");
    assert_eq!(body["violated-policies"], serde_json::json!(["route"]));

    // The denied request took nothing from the tenant: 2 are left.
    for index in 0..2 {
        let response = get("/open/1", &key).await;
        assert_eq!(response.status(), StatusCode::OK, "request {index}");
    }
    let limited = get("/open/1", &key).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["limit"], "tenant");

    // Another tenant keeps its own allowance; the route's is spent for all.
    let response = get("/open/1", &other).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = get("/strict/1", &other).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["limit"], "route");
}

#[tokio::test]
async fn sustained_rate_within_five_percent() {
    // The tenant limit admits 6 requests per tenant, so the load is spread
    // over 40 tenants and the route's 20/s is the limit that denies. Each
    // worker moves to the next key after an admission, starting 10 keys
    // after the previous worker, so a key gets one admission per worker
    // for each 40 that worker gets: at most 4 while each gets under 40.
    let mut keys = Vec::new();
    for index in 0..40 {
        keys.push(key_of_new_tenant(&format!("steady-{index}"), "orders:read"));
    }
    let client = FIXTURE.server.client();
    let started = Instant::now();
    let run_for = Duration::from_secs(4);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let client = client.clone();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0_u64;
            while started.elapsed() < run_for {
                let key = &keys[(worker * 10 + admitted as usize) % keys.len()];
                let response = client
                    .get(FIXTURE.server.url("/steady/1"))
                    .header("x-api-key", key)
                    .send()
                    .await
                    .unwrap();
                match response.status() {
                    StatusCode::OK => admitted += 1,
                    StatusCode::TOO_MANY_REQUESTS => {
                        let body: Value = response.json().await.unwrap();
                        assert_eq!(body["limit"], "route", "a tenant limit was hit");
                    }
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

    // GCRA admits the burst at once, then one request per 50 ms.
    let expected = 20.0 + 20.0 * elapsed;
    let admitted = admitted as f64;
    assert!(
        (admitted - expected).abs() <= expected * 0.05,
        "admitted {admitted} in {elapsed:.2} s, expected {expected:.0} ± 5%"
    );
}
