//! Anomaly alerts on a running server: each rule fires on a scripted
//! traffic pattern and stays silent on normal traffic, and alerts reach a
//! real webhook receiver on 127.0.0.1, signed, retried and kept across a
//! restart.
//!
//! Every request comes from 127.0.0.1, which the configuration trusts as a
//! proxy, so `X-Forwarded-For` sets the client address a rule sees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "fixtures outside #[test] functions fail the test on any error, and they wait on processes"
)]

mod support;

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use reqwest::StatusCode;
use serde_json::Value;
use support::upstream::Upstream;
use support::webhook::{Received, Receiver, free_port};
use support::{DataDir, Server};

const SECRET_VARIABLE: &str = "PORTCULLIS_ALERT_WEBHOOK_SECRET";
const SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// How far a receiver lets a signature's timestamp stray from its clock.
const TOLERANCE_SECONDS: i64 = 300;

/// A data directory with tenant `acme`, an operator key that reads alerts
/// and a configuration with small windows and thresholds.
struct Fixture {
    data: DataDir,
    operator: String,
    _upstream: Upstream,
}

/// The thresholds a test may change.
struct Thresholds {
    per_source: u32,
    per_credential: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            per_source: 10_000,
            per_credential: 1000,
        }
    }
}

impl Fixture {
    /// Builds the fixture, with a webhook to `webhook_url` when given.
    fn new(webhook_url: Option<&str>, thresholds: &Thresholds) -> Self {
        let data = DataDir::new();
        data.cli(&["tenants", "create", "acme"]);
        let (_, operator) = data.create_key(&["--operator", "--scopes", "admin:read"]);
        let upstream = Upstream::start();
        let Thresholds {
            per_source,
            per_credential,
        } = thresholds;
        let webhook = webhook_url.map_or_else(String::new, |url| {
            format!("[[alerts.webhooks]]\nurl = \"{url}\"\nsecret_env = \"{SECRET_VARIABLE}\"\n")
        });
        data.write_config(&format!(
            r#"
[server]
trusted_proxies = ["127.0.0.1"]

[limits.brute_force.client_ip]
slow_after = 10000
block_after = 10000

[limits.brute_force.identity]
slow_after = 10000
block_after = 10000

[[routes]]
path_prefix = "/api"
upstream = "{upstream}"
[routes.scopes]
"*" = []

[alerts.rate_spike]
window = "1s"
factor = 5
floor = 40
learning_windows = 3

[alerts.failures]
window = "1h"
per_credential = {per_credential}
per_source = {per_source}

[alerts.new_network]
learning_period = "2s"

[alerts.delivery]
max_attempts = 50
first_retry = "1s"
max_retry = "1s"
timeout = "5s"

{webhook}"#,
            upstream = upstream.url(),
        ));
        Self {
            data,
            operator,
            _upstream: upstream,
        }
    }

    fn start(&self) -> Server {
        Server::start_with(&self.data, &[(SECRET_VARIABLE, SECRET)])
    }

    fn key(&self) -> (String, String) {
        self.data
            .create_key(&["--tenant", "acme", "--scopes", "orders:read"])
    }

    fn revoked_key(&self) -> (String, String) {
        let key = self.key();
        self.data.cli(&["keys", "revoke", &key.0]);
        key
    }

    fn tenant_id(&self) -> String {
        let tenants = self.data.cli_json(&["tenants", "list"]);
        tenants["tenants"][0]["id"].as_str().unwrap().to_owned()
    }
}

/// Calls the gateway with `key` as if from `client_ip`.
async fn call(server: &Server, client: &reqwest::Client, key: &str, client_ip: &str) -> StatusCode {
    client
        .get(server.url("/api/orders"))
        .header("x-api-key", key)
        .header("x-forwarded-for", client_ip)
        .send()
        .await
        .unwrap()
        .status()
}

/// Lists alerts through the admin API with `query`.
async fn list_alerts(server: &Server, operator: &str, query: &str) -> Value {
    let response = server
        .client()
        .get(server.url(&format!("/admin/v1/alerts{query}")))
        .header("x-api-key", operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET alerts{query}");
    response.json().await.unwrap()
}

/// Polls the alert list with `query` for up to a minute until it contains at
/// least `count` alerts, and returns them.
async fn wait_for_alerts(server: &Server, operator: &str, query: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = list_alerts(server, operator, query).await;
        let alerts = listed["alerts"].as_array().unwrap().clone();
        if alerts.len() >= count {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} alerts for {query} after a minute: {listed}\nlogs:\n{}",
            alerts.len(),
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Raises a `revoked_key_used` alert for a fresh revoked key presented
/// after everything sent so far, and waits for it. Once it is listed, the
/// evaluator has seen every earlier request, so a rule that did not fire
/// on them will not fire later.
async fn mark_and_wait(fixture: &Fixture, server: &Server) {
    let (marker_id, marker) = fixture.revoked_key();
    let client = server.client();
    assert_eq!(
        call(server, &client, &marker, "192.0.2.250").await,
        StatusCode::UNAUTHORIZED
    );
    wait_for_alerts(
        server,
        &fixture.operator,
        &format!("?rule=revoked_key_used&credential={marker_id}"),
        1,
    )
    .await;
}

/// Checks a delivery's signature the way a receiver should: HMAC-SHA256
/// over `t.body` with `secret`, compared in constant time, and `t` within
/// the tolerance.
fn signature_valid(received: &Received, secret: &str) -> bool {
    let header = received.header("portcullis-signature").unwrap();
    let (timestamp, hex) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap();
    let sent_at: i64 = timestamp.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if (i64::try_from(now).unwrap() - sent_at).abs() > TOLERANCE_SECONDS {
        return false;
    }
    let Ok(tag) = decode_hex(hex) else {
        return false;
    };
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(&received.body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, &message, &tag).is_ok()
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, std::num::ParseIntError> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..(at + 2).min(hex.len())], 16))
        .collect()
}

#[tokio::test]
async fn revoked_key_alert_signed_and_delivered() {
    let receiver = Receiver::start();
    let fixture = Fixture::new(Some(&receiver.url()), &Thresholds::default());
    let (live_id, live) = fixture.key();
    let (revoked_id, revoked) = fixture.revoked_key();
    let server = fixture.start();
    let client = server.client();

    assert_eq!(
        call(&server, &client, &live, "192.0.2.1").await,
        StatusCode::OK
    );
    for _ in 0..3 {
        assert_eq!(
            call(&server, &client, &revoked, "198.51.100.7").await,
            StatusCode::UNAUTHORIZED
        );
    }

    let query = format!("?rule=revoked_key_used&credential={revoked_id}");
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 1).await;
    assert_eq!(alerts.len(), 1, "one alert per key per window: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["tenant_id"], fixture.tenant_id());
    assert_eq!(alert["details"]["status"], "revoked");
    assert_eq!(alert["details"]["client_ip"], "198.51.100.7");
    assert!(
        !alert.to_string().contains(&revoked),
        "the key reached the alert"
    );

    let delivered = receiver.wait_for(1);
    let delivery = &delivered[0];
    let body = delivery.json();
    assert_eq!(body["alert"]["id"], alert["id"]);
    assert_eq!(body["alert"]["rule"], "revoked_key_used");
    assert_eq!(
        delivery.header("portcullis-delivery"),
        body["delivery_id"].as_str()
    );
    assert_eq!(delivery.header("content-type"), Some("application/json"));
    assert!(
        signature_valid(delivery, SECRET),
        "the right secret verifies"
    );
    assert!(
        !signature_valid(delivery, "a-wrong-secret-of-the-same-kind-0123456789abcdef"),
        "a wrong secret fails"
    );
    let mut tampered = delivery.clone();
    tampered.body.push(b' ');
    assert!(!signature_valid(&tampered, SECRET), "a changed body fails");

    let live_alerts = list_alerts(
        &server,
        &fixture.operator,
        &format!("?credential={live_id}"),
    )
    .await;
    assert_eq!(
        live_alerts["alerts"],
        Value::Array(vec![]),
        "a live key raised nothing"
    );

    let (status, _, metrics) = server.scrape().await;
    assert_eq!(status, 200);
    let raised = metrics.lines().find_map(|line| {
        line.strip_prefix(r#"portcullis_alerts_raised_total{rule="revoked_key_used"} "#)
    });
    assert_eq!(raised, Some("1"), "{metrics}");

    let logs = server.log_text();
    assert!(logs.contains("alert raised"), "{logs}");
    assert!(!logs.contains(&revoked), "the key reached the log");
    assert!(!logs.contains(SECRET), "the webhook secret reached the log");
    server.stop().await;
}

#[tokio::test]
async fn credential_failures_alert_past_threshold() {
    let fixture = Fixture::new(
        None,
        &Thresholds {
            per_credential: 5,
            ..Thresholds::default()
        },
    );
    let (hammered_id, hammered) = fixture.revoked_key();
    let (quiet_id, quiet) = fixture.revoked_key();
    let server = fixture.start();
    let client = server.client();

    for _ in 0..4 {
        call(&server, &client, &quiet, "192.0.2.1").await;
    }
    for _ in 0..6 {
        call(&server, &client, &hammered, "192.0.2.1").await;
    }

    let query = format!("?rule=credential_failures&credential={hammered_id}");
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 1).await;
    assert_eq!(alerts[0]["severity"], "warning");
    assert!(alerts[0]["details"]["failures"].as_u64().unwrap() >= 5);

    mark_and_wait(&fixture, &server).await;
    let quiet_alerts = list_alerts(
        &server,
        &fixture.operator,
        &format!("?rule=credential_failures&credential={quiet_id}"),
    )
    .await;
    assert_eq!(
        quiet_alerts["alerts"],
        Value::Array(vec![]),
        "4 failures stay below 5"
    );
    server.stop().await;
}

#[tokio::test]
async fn source_failures_alert_past_threshold() {
    let fixture = Fixture::new(
        None,
        &Thresholds {
            per_source: 10,
            ..Thresholds::default()
        },
    );
    let server = fixture.start();
    let client = server.client();

    for _ in 0..5 {
        call(&server, &client, "pc_live_not-a-key", "203.0.113.10").await;
    }
    for _ in 0..12 {
        let status = call(&server, &client, "pc_live_not-a-key", "203.0.113.9").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    let alerts = wait_for_alerts(&server, &fixture.operator, "?rule=source_failures", 1).await;
    mark_and_wait(&fixture, &server).await;
    let alerts_after = list_alerts(&server, &fixture.operator, "?rule=source_failures").await;
    assert_eq!(
        alerts_after["alerts"].as_array().unwrap().len(),
        1,
        "5 failures from another address stay silent: {alerts_after}"
    );
    assert_eq!(alerts[0]["details"]["client_ip"], "203.0.113.9");
    assert_eq!(alerts[0]["tenant_id"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn rate_spike_alert_above_baseline() {
    let fixture = Fixture::new(None, &Thresholds::default());
    let (spiking_id, spiking) = fixture.key();
    let (steady_id, steady) = fixture.key();
    let server = fixture.start();
    let client = server.client();

    // About four requests a second for both keys: the baseline.
    let learning_until = Instant::now() + Duration::from_millis(4500);
    while Instant::now() < learning_until {
        assert_eq!(
            call(&server, &client, &spiking, "192.0.2.1").await,
            StatusCode::OK
        );
        assert_eq!(
            call(&server, &client, &steady, "192.0.2.1").await,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 300 requests from 8 workers, far above 5 times the baseline.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = client.clone();
        let url = server.url("/api/orders");
        let key = spiking.clone();
        burst.spawn(async move {
            for _ in 0..38 {
                let response = client
                    .get(&url)
                    .header("x-api-key", &key)
                    .header("x-forwarded-for", "192.0.2.1")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
        });
    }
    // The steady key keeps its pace meanwhile.
    while !burst.is_empty() {
        assert_eq!(
            call(&server, &client, &steady, "192.0.2.1").await,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        while let Some(done) = burst.try_join_next() {
            done.unwrap();
        }
    }

    let query = format!("?rule=rate_spike&credential={spiking_id}");
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 1).await;
    assert_eq!(alerts.len(), 1, "the cooldown allows one alert: {alerts:?}");
    assert!(alerts[0]["details"]["requests"].as_u64().unwrap() >= 40);
    assert_eq!(alerts[0]["tenant_id"], fixture.tenant_id());

    mark_and_wait(&fixture, &server).await;
    let steady_alerts = list_alerts(
        &server,
        &fixture.operator,
        &format!("?rule=rate_spike&credential={steady_id}"),
    )
    .await;
    assert_eq!(
        steady_alerts["alerts"],
        Value::Array(vec![]),
        "steady traffic stays silent"
    );
    server.stop().await;
}

/// Lists the `new_network` alerts of `key_id`.
async fn network_alerts(server: &Server, operator: &str, key_id: &str) -> Value {
    let query = format!("?rule=new_network&credential={key_id}");
    list_alerts(server, operator, &query).await["alerts"].clone()
}

#[tokio::test]
async fn new_network_alert_after_learning() {
    let fixture = Fixture::new(None, &Thresholds::default());
    let (key_id, key) = fixture.key();
    let (fresh_id, fresh) = fixture.key();
    let server = fixture.start();
    let client = server.client();

    // The first network starts the learning period and raises nothing.
    assert_eq!(
        call(&server, &client, &key, "198.51.100.7").await,
        StatusCode::OK
    );
    mark_and_wait(&fixture, &server).await;
    // Past the two-second learning period.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Another address in the same /24 is the same network.
    assert_eq!(
        call(&server, &client, &key, "198.51.100.200").await,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, &client, &key, "203.0.113.5").await,
        StatusCode::OK
    );
    // A brand-new key's first network raises nothing.
    assert_eq!(
        call(&server, &client, &fresh, "192.0.2.60").await,
        StatusCode::OK
    );
    let query = format!("?rule=new_network&credential={key_id}");
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 1).await;
    mark_and_wait(&fixture, &server).await;
    assert_eq!(
        network_alerts(&server, &fixture.operator, &key_id)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(alerts[0]["details"]["network"], "203.0.113.0/24");
    assert_eq!(alerts[0]["details"]["client_ip"], "203.0.113.5");
    assert_eq!(alerts[0]["tenant_id"], fixture.tenant_id());
    assert_eq!(
        network_alerts(&server, &fixture.operator, &fresh_id).await,
        Value::Array(vec![])
    );
    server.stop().await;

    // The known networks survive a restart.
    let server = fixture.start();
    let client = server.client();
    assert_eq!(
        call(&server, &client, &key, "203.0.113.77").await,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, &client, &key, "198.51.100.1").await,
        StatusCode::OK
    );
    assert_eq!(
        call(&server, &client, &key, "2001:db8:1:2::5").await,
        StatusCode::OK
    );
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 2).await;
    mark_and_wait(&fixture, &server).await;
    let all = network_alerts(&server, &fixture.operator, &key_id).await;
    assert_eq!(
        all.as_array().unwrap().len(),
        2,
        "only the IPv6 network is new: {all}"
    );
    assert_eq!(alerts[0]["details"]["network"], "2001:db8:1::/48");
    server.stop().await;
}

#[tokio::test]
async fn webhook_retried_after_server_error() {
    let receiver = Receiver::start_on(0, &[500, 503]);
    let fixture = Fixture::new(Some(&receiver.url()), &Thresholds::default());
    let (_, revoked) = fixture.revoked_key();
    let server = fixture.start();
    call(&server, &server.client(), &revoked, "192.0.2.1").await;

    let received = receiver.wait_for(3);
    assert_eq!(received[0].answered, 500);
    assert_eq!(received[1].answered, 503);
    assert_eq!(received[2].answered, 200);
    let ids: Vec<Option<&str>> = received
        .iter()
        .map(|r| r.header("portcullis-delivery"))
        .collect();
    assert!(ids[0].is_some());
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one delivery id: {ids:?}"
    );
    assert_eq!(
        received[0].body, received[2].body,
        "the same body each time"
    );
    for attempt in &received {
        assert!(signature_valid(attempt, SECRET));
    }

    let alert_id = received[2].json()["alert"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deliveries =
        wait_for_delivery_state(&server, &fixture.operator, &alert_id, "delivered").await;
    assert_eq!(deliveries["attempts"], 3);
    assert_eq!(deliveries["last_error"], "HTTP 503");
    server.stop().await;
}

#[tokio::test]
async fn webhook_client_error_not_retried() {
    let receiver = Receiver::start_on(0, &[410]);
    let fixture = Fixture::new(Some(&receiver.url()), &Thresholds::default());
    let (_, revoked) = fixture.revoked_key();
    let server = fixture.start();
    call(&server, &server.client(), &revoked, "192.0.2.1").await;

    let received = receiver.wait_for(1);
    let alert_id = received[0].json()["alert"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delivery = wait_for_delivery_state(&server, &fixture.operator, &alert_id, "failed").await;
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["last_error"], "HTTP 410");
    assert_eq!(receiver.received().len(), 1, "a 4xx is final");
    server.stop().await;
}

/// Polls the one delivery of `alert_id` for up to a minute until it is in
/// `state`, and returns it.
async fn wait_for_delivery_state(
    server: &Server,
    operator: &str,
    alert_id: &str,
    state: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = server
            .client()
            .get(server.url(&format!("/admin/v1/alerts/{alert_id}/deliveries")))
            .header("x-api-key", operator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let listed: Value = response.json().await.unwrap();
        let delivery = listed["deliveries"][0].clone();
        if delivery["state"] == state {
            return delivery;
        }
        assert!(
            Instant::now() < deadline,
            "delivery not {state} after a minute: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn delivery_resumes_after_restart() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let fixture = Fixture::new(Some(&url), &Thresholds::default());
    let (revoked_id, revoked) = fixture.revoked_key();
    let server = fixture.start();
    call(&server, &server.client(), &revoked, "192.0.2.1").await;

    // Nothing listens on the port yet: wait for a failed attempt.
    let query = format!("?rule=revoked_key_used&credential={revoked_id}");
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 1).await;
    let alert_id = alerts[0]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = server
            .client()
            .get(server.url(&format!("/admin/v1/alerts/{alert_id}/deliveries")))
            .header("x-api-key", &fixture.operator)
            .send()
            .await
            .unwrap();
        let listed: Value = response.json().await.unwrap();
        if listed["deliveries"][0]["attempts"].as_u64().unwrap_or(0) >= 1 {
            assert_eq!(listed["deliveries"][0]["state"], "pending");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempt: {listed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;

    let receiver = Receiver::start_on(port, &[]);
    let server = fixture.start();
    let received = receiver.wait_for(1);
    let body = received[0].json();
    assert_eq!(body["alert"]["id"], alert_id.as_str());
    assert!(signature_valid(&received[0], SECRET));
    wait_for_delivery_state(&server, &fixture.operator, &alert_id, "delivered").await;
    server.stop().await;
}

#[tokio::test]
async fn alert_list_filtered_and_paged() {
    let fixture = Fixture::new(None, &Thresholds::default());
    let keys: Vec<(String, String)> = (0..3).map(|_| fixture.revoked_key()).collect();
    let server = fixture.start();
    let client = server.client();
    for (_, key) in &keys {
        call(&server, &client, key, "192.0.2.1").await;
    }
    let all = wait_for_alerts(&server, &fixture.operator, "?rule=revoked_key_used", 3).await;

    let first = list_alerts(&server, &fixture.operator, "?limit=2").await;
    assert_eq!(first["alerts"].as_array().unwrap().len(), 2);
    let cursor = first["next_before"].as_str().unwrap();
    let second = list_alerts(
        &server,
        &fixture.operator,
        &format!("?limit=2&before={cursor}"),
    )
    .await;
    let mut paged: Vec<Value> = first["alerts"].as_array().unwrap().clone();
    paged.extend(second["alerts"].as_array().unwrap().iter().cloned());
    assert_eq!(paged, all, "two pages give the whole list in order");
    assert_eq!(
        second["next_before"],
        Value::Null,
        "the last page has no cursor"
    );

    let tenant = list_alerts(&server, &fixture.operator, "?tenant=acme&severity=critical").await;
    assert_eq!(tenant["alerts"].as_array().unwrap().len(), 3);
    let none = list_alerts(&server, &fixture.operator, "?severity=info").await;
    assert_eq!(none["alerts"], Value::Array(vec![]));

    for (query, field) in [
        ("?rule=nonsense", "rule"),
        ("?severity=loud", "severity"),
        ("?limit=0", "limit"),
        ("?since=yesterday", "since"),
        ("?before=42", "before"),
        ("?limit=many", "limit"),
        ("?tenantt=acme", "tenantt"),
        ("?rule=rate_spike&rule=rate_spike", "rule"),
    ] {
        let response = client
            .get(server.url(&format!("/admin/v1/alerts{query}")))
            .header("x-api-key", &fixture.operator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["field"], field, "{query}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            !detail.contains("Failed to deserialize"),
            "{query}: {detail}"
        );
    }
    let response = client
        .get(server.url("/admin/v1/alerts?tenantt=acme"))
        .header("x-api-key", &fixture.operator)
        .send()
        .await
        .unwrap();
    let problem: Value = response.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("unknown parameter tenantt"), "{detail}");
    assert!(detail.contains("credential"), "{detail}");
    let unknown = client
        .get(server.url("/admin/v1/alerts?tenant=nobody"))
        .header("x-api-key", &fixture.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let (_, tenant_key) = fixture.key();
    let refused = client
        .get(server.url("/admin/v1/alerts"))
        .header("x-api-key", &tenant_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "a tenant key is rejected"
    );
    server.stop().await;
}

/// Sends a `client_credentials` token request that authenticates as
/// `client_id` with a wrong secret, as if from `client_ip`, and returns the
/// status and body.
async fn wrong_client_secret(
    server: &Server,
    client: &reqwest::Client,
    client_id: &str,
    client_ip: &str,
) -> (StatusCode, String) {
    let response = client
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some("wrong-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", client_ip)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// Polls the admin audit list with `query` for up to a minute until it
/// contains at least `count` records, and returns them.
async fn wait_for_audit(server: &Server, operator: &str, query: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = server
            .client()
            .get(server.url(&format!("/admin/v1/audit-events{query}")))
            .header("x-api-key", operator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET audit-events{query}");
        let listed: Value = response.json().await.unwrap();
        let events = listed["events"].as_array().unwrap().clone();
        if events.len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} audit records for {query} after a minute: {listed}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn oauth_client_failures_carry_tenant() {
    let fixture = Fixture::new(
        None,
        &Thresholds {
            per_source: 8,
            per_credential: 5,
        },
    );
    let tenant_id = fixture.tenant_id();
    let created = fixture.data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Billing",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ]);
    let known = created["client_id"].as_str().unwrap().to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();
    let server = fixture.start();
    let client = server.client();

    let mut known_responses = Vec::new();
    let mut unknown_responses = Vec::new();
    for _ in 0..9 {
        known_responses.push(wrong_client_secret(&server, &client, &known, "203.0.113.20").await);
        unknown_responses
            .push(wrong_client_secret(&server, &client, &unknown, "203.0.113.21").await);
    }
    assert_eq!(known_responses[0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        known_responses, unknown_responses,
        "a caller cannot tell an existing client from an unknown one"
    );

    let query = format!("?rule=credential_failures&credential={known}");
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 1).await;
    assert_eq!(alerts[0]["tenant_id"], tenant_id.as_str());
    let query = format!("?rule=credential_failures&credential={unknown}");
    let alerts = wait_for_alerts(&server, &fixture.operator, &query, 1).await;
    assert_eq!(alerts[0]["tenant_id"], Value::Null);

    let sources = wait_for_alerts(&server, &fixture.operator, "?rule=source_failures", 2).await;
    let tenant_of_source = |address: &str| {
        let alert = sources
            .iter()
            .find(|alert| alert["details"]["client_ip"] == address)
            .unwrap_or_else(|| panic!("no source alert for {address}: {sources:?}"));
        alert["tenant_id"].clone()
    };
    assert_eq!(tenant_of_source("203.0.113.20"), tenant_id.as_str());
    assert_eq!(tenant_of_source("203.0.113.21"), Value::Null);

    let query = format!("?tenant=acme&action=auth.failed&credential={known}");
    let records = wait_for_audit(&server, &fixture.operator, &query, 9).await;
    for record in &records {
        assert_eq!(record["tenant_id"], tenant_id.as_str(), "{record}");
        assert_eq!(record["details"]["surface"], "oauth", "{record}");
    }
    let query = format!("?action=auth.failed&credential={unknown}");
    let records = wait_for_audit(&server, &fixture.operator, &query, 9).await;
    for record in &records {
        assert_eq!(record["tenant_id"], Value::Null, "{record}");
    }
    server.stop().await;
}
