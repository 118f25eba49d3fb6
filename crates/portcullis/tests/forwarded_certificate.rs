//! Client certificates forwarded by a TLS-terminating proxy in Envoy's
//! `x-forwarded-client-cert` header, end to end: a plain HTTP listener
//! behind a proxy at 127.0.0.1, a partner CA trusted for `acme`, and a
//! client at 127.0.0.2 that is not a proxy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use serde_json::Value;
use support::mtls::create_tls_client;
use support::upstream::Upstream;
use support::{DataDir, Server, marker, url_encode};
use time::OffsetDateTime;

const HEADER: &str = "x-forwarded-client-cert";
const THUMBPRINT_HEADER: &str = "x-portcullis-client-certificate-sha256";

struct Fixture {
    data: DataDir,
    server: Server,
    upstream: Upstream,
    /// acme, `orders:read`.
    key: String,
    /// A clientAuth leaf of the partner CA, PEM.
    valid: String,
    /// An expired leaf of the partner CA, PEM.
    expired: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
    let data = DataDir::new();
    let up = upstream.url();
    data.write_config(&format!(
        r#"
[server]
plain_http = true
trusted_proxies = ["127.0.0.1"]
forwarded_client_certificate = "envoy"

[[routes]]
path_prefix = "/orders"
upstream = "{up}"
[routes.scopes]
GET = ["orders:read"]

[[routes]]
path_prefix = "/partner"
upstream = "{up}"
auth = ["mtls", "api_key"]
[routes.scopes]
GET = ["orders:read"]
"#
    ));
    data.cli(&["tenants", "create", "acme"]);
    create_tls_client(&data, "acme", &["--tls-san-dns", "partner-svc.example.com"]);
    let (_, key) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);

    let (ca_pem, issuer) = partner_ca();
    let ca_path = data.path().join("partner-ca.pem");
    std::fs::write(&ca_path, &ca_pem).unwrap();
    data.cli(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        "acme",
        ca_path.to_str().unwrap(),
    ]);
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let valid = leaf(&issuer, now - day, now + day * 30);
    let expired = leaf(&issuer, now - day * 10, now - day);

    let server = Server::start(&data);
    Fixture {
        data,
        server,
        upstream,
        key,
        valid,
        expired,
    }
});

fn partner_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Partner CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> String {
    let mut params = CertificateParams::new(vec!["partner-svc.example.com".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, issuer).unwrap().pem()
}

fn xfcc(pem: &str) -> String {
    format!(
        "Hash=00ff;Cert=\"{}\";Subject=\"CN=partner service\"",
        url_encode(pem)
    )
}

/// Returns the thumbprint that `portcullis certs verify` reports for `pem`.
fn thumbprint(fixture: &Fixture, pem: &str) -> String {
    let chain = fixture.data.path().join(format!("{}.pem", marker()));
    std::fs::write(&chain, pem).unwrap();
    let ca = fixture.data.path().join("partner-ca.pem");
    let verdict: Value = fixture.data.cli_json(&[
        "certs",
        "verify",
        "--chain",
        chain.to_str().unwrap(),
        "--trust",
        ca.to_str().unwrap(),
    ]);
    verdict["certificate"]["thumbprint_sha256"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends `GET /orders/<mark>` from `source` with the key and, if given, a
/// forwarded certificate header.
async fn get(source: Ipv4Addr, header: Option<&str>) -> (StatusCode, Value, String) {
    get_from("/orders", true, source, header).await
}

/// Sends `GET <prefix>/<mark>` from `source`, with the key when `with_key`
/// and with a forwarded certificate header if given.
async fn get_from(
    prefix: &str,
    with_key: bool,
    source: Ipv4Addr,
    header: Option<&str>,
) -> (StatusCode, Value, String) {
    let fixture = &*FIXTURE;
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(source))
        .no_proxy()
        .build()
        .unwrap();
    let mark = marker();
    let url = format!("http://{}{prefix}/{mark}", fixture.server.address);
    let mut request = client.get(url);
    if with_key {
        request = request.header("x-api-key", &fixture.key);
    }
    if let Some(header) = header {
        request = request.header(HEADER, header);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, mark)
}

/// Returns the request that the upstream received with `mark` in its path.
fn seen_with_mark(fixture: &Fixture, mark: &str) -> Option<support::upstream::Seen> {
    fixture
        .upstream
        .all()
        .into_iter()
        .find(|seen| seen.path_and_query.contains(mark))
}

const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[tokio::test]
async fn trusted_proxy_certificate_reaches_upstream() {
    let fixture = &*FIXTURE;

    let (status, body, mark) =
        get_from("/partner", false, PROXY, Some(&xfcc(&fixture.valid))).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = seen_with_mark(fixture, &mark).unwrap();
    assert_eq!(
        seen.header(THUMBPRINT_HEADER),
        Some(thumbprint(fixture, &fixture.valid).as_str())
    );
    assert_eq!(
        seen.header("x-portcullis-auth-method"),
        Some("tls_client_auth")
    );
    assert_eq!(seen.header(HEADER), None);
}

/// A request that its API key authenticates reaches the upstream without
/// the thumbprint of the certificate forwarded with it, and without the
/// proxy's header, on a route that also accepts `mtls`.
#[tokio::test]
async fn key_request_gets_no_certificate_identity() {
    let fixture = &*FIXTURE;

    for prefix in ["/orders", "/partner"] {
        let (status, body, mark) = get_from(prefix, true, PROXY, Some(&xfcc(&fixture.valid))).await;

        assert_eq!(status, StatusCode::OK, "{prefix}: {body}");
        let seen = seen_with_mark(fixture, &mark).unwrap();
        assert_eq!(seen.header("x-portcullis-auth-method"), Some("api_key"));
        assert_eq!(seen.header(THUMBPRINT_HEADER), None, "{prefix}");
        assert_eq!(seen.header(HEADER), None, "{prefix}");
    }
}

#[tokio::test]
async fn untrusted_peer_header_ignored() {
    let fixture = &*FIXTURE;

    let (status, _, mark) = get(STRANGER, Some(&xfcc(&fixture.valid))).await;
    let (expired_status, _, _) = get(STRANGER, Some(&xfcc(&fixture.expired))).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(expired_status, StatusCode::OK);
    let seen = seen_with_mark(fixture, &mark).unwrap();
    assert_eq!(seen.header(THUMBPRINT_HEADER), None);
    assert_eq!(seen.header(HEADER), None);
}

#[tokio::test]
async fn forwarded_expired_certificate_rejected() {
    let fixture = &*FIXTURE;

    let (status, body, mark) = get(PROXY, Some(&xfcc(&fixture.expired))).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "invalid_client_certificate", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    // Other tests share the upstream, so only this request's mark counts.
    assert!(seen_with_mark(fixture, &mark).is_none());
}

#[tokio::test]
async fn malformed_forwarded_header_rejected() {
    let (unterminated, body, _) = get(PROXY, Some("Hash=00;Cert=\"%2D%2D%2D")).await;
    let (no_cert, no_cert_body, _) = get(PROXY, Some("Hash=00;DNS=a.example.com")).await;

    assert_eq!(unterminated, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_client_certificate_header", "{body}");
    assert_eq!(no_cert, StatusCode::BAD_REQUEST);
    assert!(
        no_cert_body["detail"].as_str().unwrap().contains("Cert"),
        "{no_cert_body}"
    );
}
