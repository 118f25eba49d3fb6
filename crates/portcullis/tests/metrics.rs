//! The metrics listener of a real `portcullis serve`: the families and
//! labels that traffic moves, and what the scrape must never contain.
//!
//! The server listens on plain HTTP behind a trusted proxy at 127.0.0.1
//! that forwards client certificates in Envoy's header, so one server
//! covers API keys, access tokens, rate limits, brute-force blocks and a
//! rejected certificate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::Value;
use support::mtls::{PartnerCa, trust_partner};
use support::upstream::Upstream;
use support::{DataDir, Server, url_encode};

const AUDIENCE: &str = "https://api.example.test";

/// Returns the sum of the samples named `name` whose labels include every
/// pair of `labels`, or `None` when no sample matches.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (series_name, series_labels) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let matches = labels.iter().all(|(key, expected)| {
            series_labels
                .split(',')
                .any(|pair| pair == format!("{key}=\"{expected}\""))
        });
        if matches {
            *total.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    total
}

/// Asserts that the scrape `text` has `name` with `labels` at `expected`.
fn assert_sample(text: &str, name: &str, labels: &[(&str, &str)], expected: f64) {
    let found = sample(text, name, labels);
    assert_eq!(
        found,
        Some(expected),
        "{name} {labels:?} in the scrape:\n{text}"
    );
}

fn config(upstream: &Upstream) -> String {
    let up = upstream.url();
    format!(
        r#"
[server]
plain_http = true
trusted_proxies = ["127.0.0.1"]
forwarded_client_certificate = "envoy"

[limits.brute_force.identity]
slow_after = 2
block_after = 2

[[routes]]
path_prefix = "/api"
upstream = "{up}"
auth = ["api_key", "jwt"]
audience = "{AUDIENCE}"
[routes.scopes]
GET = ["orders:read"]

[[routes]]
path_prefix = "/limited"
upstream = "{up}"
rate_limit = "1/h"
[routes.scopes]
GET = ["orders:read"]
"#
    )
}

/// Everything a test needs to drive the server and check the scrape.
struct Fixture {
    _upstream: Upstream,
    _data: DataDir,
    server: Server,
    key_id: String,
    key: String,
    revoked_key: String,
    client_id: String,
    client_secret: String,
}

fn start() -> Fixture {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&config(&upstream));
    data.cli(&["tenants", "create", "acme"]);
    let (key_id, key) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let (revoked_id, revoked_key) =
        data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    data.cli(&["keys", "revoke", &revoked_id]);

    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "reports",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ]);
    // Forwarded certificates need a trusted CA to verify against.
    trust_partner(&data, &PartnerCa::new(), "acme");

    let server = Server::start(&data);
    Fixture {
        _upstream: upstream,
        _data: data,
        server,
        key_id,
        key,
        revoked_key,
        client_id: created["client_id"].as_str().unwrap().to_owned(),
        client_secret: created["client_secret"].as_str().unwrap().to_owned(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.address)
    }

    async fn get(&self, path: &str, key: Option<&str>) -> StatusCode {
        let mut request = client().get(self.url(path));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request.send().await.unwrap().status()
    }

    async fn token(&self) -> String {
        let basic = STANDARD.encode(format!("{}:{}", self.client_id, self.client_secret));
        let response = client()
            .post(self.url("/oauth/token"))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&resource={}",
                url_encode(AUDIENCE)
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn traffic_moves_labelled_families() {
    let fixture = start();
    let (status, content_type, before) = fixture.server.scrape().await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        before.contains("# TYPE portcullis_build_info gauge"),
        "{before}"
    );
    assert_eq!(
        sample(&before, "portcullis_http_requests_total", &[]),
        None,
        "no request was served yet"
    );

    assert_eq!(
        fixture.get("/api/a", Some(&fixture.key)).await,
        StatusCode::OK
    );
    assert_eq!(
        fixture.get("/api/b", Some(&fixture.key)).await,
        StatusCode::OK
    );
    assert_eq!(fixture.get("/api/c", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        fixture.get("/limited", Some(&fixture.key)).await,
        StatusCode::OK
    );
    assert_eq!(
        fixture.get("/limited", Some(&fixture.key)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let token = fixture.token().await;
    assert_eq!(fixture.get("/api/d", Some(&token)).await, StatusCode::OK);
    assert_eq!(fixture.get("/nowhere", None).await, StatusCode::NOT_FOUND);

    let (_, _, text) = fixture.server.scrape().await;
    assert!(text.contains("# TYPE portcullis_http_requests_total counter"));
    let requests = "portcullis_http_requests_total";
    assert_sample(
        &text,
        requests,
        &[
            ("route", "gateway:/api"),
            ("method", "GET"),
            ("status_class", "2xx"),
            ("auth_method", "api_key"),
            ("auth_outcome", "success"),
        ],
        2.0,
    );
    assert_sample(
        &text,
        requests,
        &[
            ("route", "gateway:/api"),
            ("status_class", "4xx"),
            ("auth_method", "none"),
            ("auth_outcome", "missing"),
        ],
        1.0,
    );
    assert_sample(
        &text,
        requests,
        &[
            ("route", "gateway:/limited"),
            ("status_class", "4xx"),
            ("auth_outcome", "success"),
        ],
        1.0,
    );
    assert_sample(
        &text,
        requests,
        &[
            ("route", "gateway:/api"),
            ("auth_method", "jwt"),
            ("auth_outcome", "success"),
        ],
        1.0,
    );
    assert_sample(
        &text,
        requests,
        &[
            ("route", "oauth_token"),
            ("method", "POST"),
            ("status_class", "2xx"),
            ("auth_method", "client_secret"),
            ("auth_outcome", "success"),
        ],
        1.0,
    );
    assert_sample(
        &text,
        requests,
        &[("route", "unmatched"), ("status_class", "4xx")],
        1.0,
    );
    assert_sample(
        &text,
        "portcullis_rate_limit_rejections_total",
        &[("limit", "route")],
        1.0,
    );
    assert_sample(
        &text,
        "portcullis_tokens_issued_total",
        &[("grant_type", "client_credentials")],
        1.0,
    );
    assert_sample(
        &text,
        "portcullis_http_request_duration_seconds_count",
        &[("route", "gateway:/api")],
        4.0,
    );
    assert_sample(
        &text,
        "portcullis_authentication_duration_seconds_count",
        &[("method", "api_key"), ("outcome", "success")],
        4.0,
    );
    // Four key checks: the first missed the cache. The later ones hit once
    // the change feed's first poll has marked the cache current.
    let cache = "portcullis_credential_cache_lookups_total";
    let hits = sample(&text, cache, &[("result", "hit")]).unwrap_or(0.0);
    let misses = sample(&text, cache, &[("result", "miss")]).unwrap_or(0.0);
    assert_eq!(hits + misses, 4.0, "{text}");
    assert!(misses >= 1.0, "{text}");
    let store_calls = sample(
        &text,
        "portcullis_store_operation_duration_seconds_count",
        &[("operation", "find_key_by_hash")],
    );
    assert!(store_calls >= Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "portcullis_store_errors_total", &[]),
        None,
        "{text}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_sample(&text, "portcullis_build_info", &[("version", version)], 1.0);
    assert!(sample(&text, "portcullis_start_time_seconds", &[]) > Some(1.0e9));
}

#[tokio::test]
async fn blocks_and_rejected_certificates_counted() {
    let fixture = start();

    for _ in 0..2 {
        let status = fixture.get("/api/x", Some(&fixture.revoked_key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let blocked = fixture.get("/api/x", Some(&fixture.revoked_key)).await;
    assert_eq!(blocked, StatusCode::TOO_MANY_REQUESTS);
    // A forged leaf: it names the trusted partner CA as its issuer, but
    // another CA key with the same name signed it.
    let untrusted = PartnerCa::new().leaf(true);
    let forwarded = format!("Cert=\"{}\"", url_encode(&untrusted.cert_pem));
    let response = client()
        .get(fixture.url("/api/y"))
        .header("authorization", format!("Bearer {}", fixture.key))
        .header("x-forwarded-client-cert", forwarded)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let (_, _, text) = fixture.server.scrape().await;
    assert_sample(&text, "portcullis_brute_force_blocks_total", &[], 1.0);
    assert_sample(
        &text,
        "portcullis_http_requests_total",
        &[
            ("route", "gateway:/api"),
            ("status_class", "4xx"),
            ("auth_method", "api_key"),
            ("auth_outcome", "rejected"),
        ],
        2.0,
    );
    assert_sample(
        &text,
        "portcullis_http_requests_total",
        &[("auth_method", "api_key"), ("auth_outcome", "blocked")],
        1.0,
    );
    assert_sample(
        &text,
        "portcullis_certificate_verifications_total",
        &[("outcome", "bad_signature")],
        1.0,
    );
    assert_eq!(
        sample(
            &text,
            "portcullis_certificate_verifications_total",
            &[("outcome", "valid")]
        ),
        None
    );
}

#[tokio::test]
async fn scrape_names_no_credential_or_address() {
    let fixture = start();
    assert_eq!(
        fixture.get("/api/a", Some(&fixture.key)).await,
        StatusCode::OK
    );
    let token = fixture.token().await;
    assert_eq!(fixture.get("/api/b", Some(&token)).await, StatusCode::OK);
    assert_eq!(
        fixture.get("/api/c", Some(&fixture.revoked_key)).await,
        StatusCode::UNAUTHORIZED
    );

    let (_, _, text) = fixture.server.scrape().await;
    assert!(sample(&text, "portcullis_http_requests_total", &[]) >= Some(4.0));
    let visible_prefix = portcullis_core::key::visible_prefix(&fixture.revoked_key);
    let forbidden = [
        ("key id", fixture.key_id.as_str()),
        ("key secret", fixture.key.as_str()),
        ("key prefix", visible_prefix.as_str()),
        ("client id", fixture.client_id.as_str()),
        ("client secret", fixture.client_secret.as_str()),
        ("access token", token.as_str()),
        ("client address", "127.0.0.1"),
        ("tenant", "acme"),
        ("request path", "/api/a"),
    ];
    for (what, value) in forbidden {
        assert!(
            !text.contains(value),
            "the scrape contains the {what}:\n{text}"
        );
    }
    let logs = fixture.server.log_text();
    assert!(!logs.contains(&fixture.key), "the log contains the key");
}

#[tokio::test]
async fn main_listener_serves_no_metrics() {
    let fixture = start();
    let response = client().get(fixture.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response.text().await.unwrap();
    assert!(!body.contains("portcullis_"), "{body}");

    let metrics = fixture.server.metrics_address.unwrap();
    let other = client()
        .get(format!("http://{metrics}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert!(metrics.ip().is_loopback());
    assert_ne!(metrics.port(), fixture.server.address.port());
}

#[test]
fn metrics_off_serves_none() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&config(&upstream));
    let server = Server::start_with(&data, &[("PORTCULLIS_METRICS__LISTEN", "off")]);
    assert_eq!(server.metrics_address, None);
    assert!(
        server.log_text().contains("metrics listener is off"),
        "{}",
        server.log_text()
    );
}

#[test]
fn busy_metrics_port_stops_start() {
    let occupant = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = occupant.local_addr().unwrap().to_string();
    let data = DataDir::new();
    let output = data
        .command()
        .arg("serve")
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_METRICS__LISTEN", &address)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("metrics.listen"), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
}
