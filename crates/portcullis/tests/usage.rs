//! Usage counts end to end: traffic through the gateway of the real binary,
//! read back by hour and day from the admin API, per key, client and
//! tenant, with the last-used address in `keys show` and `keys list`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "a failed step should fail the test at once, and waiting for the flush needs the wall clock"
)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis_store::{CredentialRef, Store};
use reqwest::StatusCode;
use serde_json::Value;
use support::upstream::Upstream;
use support::{DataDir, Server};

const AUDIENCE: &str = "https://api.example.com";

/// How long the test waits for the once-a-second flush to reach the store.
const FLUSH_WAIT: Duration = Duration::from_secs(20);

/// Sends a GET to the gateway with `key` in `X-API-Key` and returns the
/// status.
async fn get_with_key(server: &Server, path: &str, key: &str) -> StatusCode {
    server
        .client()
        .get(server.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
}

/// Sends an admin GET with the operator key and returns status and body.
async fn admin_get(server: &Server, operator: &str, path: &str) -> (StatusCode, Value) {
    let response = server
        .client()
        .get(server.url(path))
        .bearer_auth(operator)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Polls `path` until its totals are `(requests, failures)`, and returns the
/// last body. Counts are flushed once a second, so they arrive late.
async fn wait_for_totals(
    server: &Server,
    operator: &str,
    path: &str,
    requests: i64,
    failures: i64,
) -> Value {
    let deadline = Instant::now() + FLUSH_WAIT;
    loop {
        let (status, body) = admin_get(server, operator, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let totals = &body["totals"];
        if totals["requests"] == requests && totals["failures"] == failures {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: expected {requests} requests and {failures} failures, got {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Returns the one point of `body` with requests, checking that the
/// others are zero.
fn only_busy_point(body: &Value) -> &Value {
    let busy: Vec<&Value> = body["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|point| point["requests"] != 0)
        .collect();
    assert_eq!(busy.len(), 1, "{body}");
    busy[0]
}

/// Gets an access token for `client_id` by the client credentials grant.
async fn client_token(server: &Server, client_id: &str, secret: &str) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    let response = server
        .client()
        .post(server.url("/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&resource={}",
            support::url_encode(AUDIENCE)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn gateway_traffic_counted_by_hour_and_day() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&format!(
        r#"
[[routes]]
path_prefix = "/orders"
upstream = "{up}"
auth = ["api_key", "jwt"]
audience = "{AUDIENCE}"
[routes.scopes]
GET = ["orders:read"]
POST = ["orders:write"]
"#,
        up = upstream.url()
    ));
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "beta"]);
    let scopes = ["--scopes", "orders:read,orders:write"];
    let (live_id, live) = data.create_key(&["--tenant", "acme", scopes[0], scopes[1]]);
    let (revoked_id, revoked) = data.create_key(&["--tenant", "acme", scopes[0], scopes[1]]);
    data.cli(&["keys", "revoke", &revoked_id]);
    let (expired_id, expired) = data.create_key(&[
        "--tenant",
        "acme",
        scopes[0],
        scopes[1],
        "--expires-in",
        "1s",
    ]);
    let (beta_id, beta) = data.create_key(&["--tenant", "beta", scopes[0], scopes[1]]);
    let (operator_id, operator) = data.create_key(&["--operator", "--scopes", "admin:read"]);
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
    ]);
    let client_id = client["client_id"].as_str().unwrap();
    let client_secret = client["client_secret"].as_str().unwrap();
    let server = Server::start(&data);
    // The server and the CLI read the same clock, so once the CLI lists
    // the key as expired, the server rejects it as expired too.
    let deadline = Instant::now() + FLUSH_WAIT;
    while data.tenant_key("acme", &expired_id)["status"] != "expired" {
        assert!(Instant::now() < deadline, "key did not expire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for _ in 0..3 {
        assert_eq!(
            get_with_key(&server, "/orders/1", &live).await,
            StatusCode::OK
        );
    }
    // A POST needs orders:write, which the key holds.
    let posted = server
        .client()
        .post(server.url("/orders"))
        .header("x-api-key", &live)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(
            get_with_key(&server, "/orders/1", &revoked).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        get_with_key(&server, "/orders/1", &expired).await,
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..2 {
        assert_eq!(
            get_with_key(&server, "/orders/1", &beta).await,
            StatusCode::OK
        );
    }
    let token = client_token(&server, client_id, client_secret).await;
    let by_token = server
        .client()
        .get(server.url("/orders/1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), StatusCode::OK);

    // Per key, by hour: every count falls in the current hour.
    let live_hours = wait_for_totals(
        &server,
        &operator,
        &format!("/admin/v1/keys/{live_id}/usage?granularity=hour"),
        4,
        0,
    )
    .await;
    assert_eq!(live_hours["granularity"], "hour");
    assert_eq!(live_hours["subject"]["kind"], "key");
    assert_eq!(live_hours["subject"]["tenant"], "acme");
    assert_eq!(live_hours["points"].as_array().unwrap().len(), 25);
    assert_eq!(only_busy_point(&live_hours)["requests"], 4);
    let revoked_hours = wait_for_totals(
        &server,
        &operator,
        &format!("/admin/v1/keys/{revoked_id}/usage"),
        2,
        2,
    )
    .await;
    assert_eq!(only_busy_point(&revoked_hours)["failures"], 2);
    wait_for_totals(
        &server,
        &operator,
        &format!("/admin/v1/keys/{expired_id}/usage"),
        1,
        1,
    )
    .await;

    // By day, the same numbers in today's point.
    let live_days = wait_for_totals(
        &server,
        &operator,
        &format!("/admin/v1/keys/{live_id}/usage?granularity=day"),
        4,
        0,
    )
    .await;
    assert_eq!(live_days["points"].as_array().unwrap().len(), 31);
    assert_eq!(only_busy_point(&live_days)["requests"], 4);

    // The client counts its authentication at the token endpoint and its
    // token's use at the gateway. Acme adds up its three keys and its
    // client; beta only its key.
    wait_for_totals(
        &server,
        &operator,
        &format!("/admin/v1/clients/{client_id}/usage"),
        2,
        0,
    )
    .await;
    let acme = wait_for_totals(
        &server,
        &operator,
        "/admin/v1/tenants/acme/usage?granularity=day",
        9,
        3,
    )
    .await;
    assert_eq!(acme["subject"]["name"], "acme");
    wait_for_totals(&server, &operator, "/admin/v1/tenants/beta/usage", 2, 0).await;
    wait_for_totals(
        &server,
        &operator,
        &format!("/admin/v1/keys/{beta_id}/usage"),
        2,
        0,
    )
    .await;

    // The last use and its address, in the CLI and the admin API.
    let shown = data.cli(&["keys", "show", &live_id]);
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("last used from  127.0.0.1"), "{shown}");
    let listed = data.cli(&["keys", "list", "--tenant", "acme"]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let row = listed.lines().find(|line| line.contains(&live_id)).unwrap();
    assert!(row.contains("127.0.0.1"), "{listed}");
    let (_, key) = admin_get(&server, &operator, &format!("/admin/v1/keys/{live_id}")).await;
    assert_eq!(key["last_used_from"], "127.0.0.1");
    assert!(key["last_used_at"].is_string(), "{key}");

    // The scopes that authorised requests, per credential, for the
    // credential audit: the routes' scopes at the gateway, and the admin
    // API's scope for the operator key.
    let store = Store::open_sqlite(&data.path().join("portcullis.db"))
        .await
        .unwrap();
    let key_id = |id: &str| CredentialRef::Key(id.parse().unwrap());
    let expected = [
        (key_id(&live_id), "orders:read"),
        (key_id(&live_id), "orders:write"),
        (key_id(&beta_id), "orders:read"),
        (
            CredentialRef::Client(client_id.parse().unwrap()),
            "orders:read",
        ),
        (key_id(&operator_id), "admin:read"),
    ];
    let deadline = Instant::now() + FLUSH_WAIT;
    let since = time::OffsetDateTime::now_utc() - time::Duration::DAY;
    loop {
        let used = store.scope_uses_since(since).await.unwrap();
        let all_there = expected
            .iter()
            .all(|(credential, scope)| used.contains(&(*credential, (*scope).to_owned())));
        if all_there {
            assert_eq!(used.len(), expected.len(), "{used:?}");
            break;
        }
        assert!(Instant::now() < deadline, "scope uses missing: {used:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.close().await;
}

#[tokio::test]
async fn usage_parameters_validated() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    let (id, _) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let (_, operator) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let (_, writer) = data.create_key(&["--operator", "--scopes", "admin:write"]);
    let server = Server::start(&data);

    for (query, field) in [
        ("granularity=minute", "granularity"),
        ("since=last-week", "since"),
        ("granularity=hour&since=2020-01-01T00:00:00Z", "since"),
        ("page=2", "page"),
    ] {
        let response = server
            .client()
            .get(server.url(&format!("/admin/v1/keys/{id}/usage?{query}")))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_field", "{query}");
        assert_eq!(body["field"], field, "{query}");
    }

    let (status, _) = admin_get(
        &server,
        &operator,
        "/admin/v1/keys/0190a5c4-0000-7000-8000-000000000000/usage",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin_get(&server, &operator, "/admin/v1/tenants/nobody/usage").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = admin_get(&server, &writer, "/admin/v1/tenants/acme/usage").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = admin_get(&server, &operator, "/admin/v1/tenants/acme/usage").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totals"]["requests"], 0);
}
