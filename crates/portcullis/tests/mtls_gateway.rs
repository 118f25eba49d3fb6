//! Gateway routes with `auth = ["mtls"]`, end to end: the real binary with
//! client certificates `optional`, a real upstream, and certificates from
//! the internal CA, from a partner CA made here and self-signed ones. One
//! server serves every case.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::time::{Duration, Instant};

use rcgen::{SanType, SerialNumber};
use reqwest::StatusCode;
use serde_json::Value;
use support::mtls::{
    PARTNER_DNS, PartnerCa, Protocol, create_self_signed_client, create_tls_client, failure_record,
    https, https_over, issue, leaf_params, partner_leaf, self_signed_with_jwk, trust_partner,
};
use support::upstream::Upstream;
use support::{DataDir, Server, marker, url_encode};

/// The audience of the route that requires a token and a certificate.
const API: &str = "https://api.example.com";

/// Registers a `tls_client_auth` client of `tenant` with `extra` options
/// and returns its id.
fn create_client(data: &DataDir, tenant: &str, extra: &[&str]) -> String {
    create_tls_client(data, tenant, extra)["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends `method /orders/items` with the test case `mark` through `client`
/// and returns the status and JSON body.
async fn call(
    server: &Server,
    client: &reqwest::Client,
    method: reqwest::Method,
    mark: &str,
) -> (StatusCode, Value) {
    let response = client
        .request(method, server.url("/orders/items"))
        .header("x-test-case", mark)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{error}; server log:\n{}", server.log_text()));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Gets an access token for [`API`] with the client credentials grant
/// through `client`, for `client_id` with its `secret` (HTTP Basic) or, when
/// `secret` is `None`, with the certificate that `client` presents.
async fn access_token(
    server: &Server,
    client: &reqwest::Client,
    client_id: &str,
    secret: Option<&str>,
) -> String {
    let mut request = client
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded");
    let mut form = format!("grant_type=client_credentials&resource={}", url_encode(API));
    match secret {
        Some(secret) => request = request.basic_auth(client_id, Some(secret)),
        None => form.push_str(&format!("&client_id={client_id}")),
    }
    let body: Value = request
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {body}"))
        .to_owned()
}

/// Sends `GET /both/items` with `token` through `client` and returns the
/// status and JSON body.
async fn call_both(server: &Server, client: &reqwest::Client, token: &str) -> (StatusCode, Value) {
    let response = client
        .get(server.url("/both/items"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends requests through `client` until one gets a status other than
/// 200, for at most three seconds, and returns it with the time it took.
async fn until_rejected(
    server: &Server,
    client: &reqwest::Client,
    mark: &str,
) -> (StatusCode, Value, Duration) {
    let (answer, delay) = until_rejected_answer(server, client, mark).await;
    (answer.status, answer.body, delay)
}

/// A response of the gateway with the facts that must not depend on the
/// HTTP version.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    version: reqwest::Version,
    challenge: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// Sends `GET /orders/items` like [`call`] and returns the whole response.
async fn call_answer(server: &Server, client: &reqwest::Client, mark: &str) -> Answer {
    let response = client
        .get(server.url("/orders/items"))
        .header("x-test-case", mark)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{error}; server log:\n{}", server.log_text()));
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    Answer {
        status: response.status(),
        version: response.version(),
        challenge: header("www-authenticate"),
        content_type: header("content-type"),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// Polls like [`until_rejected`] and returns the whole response.
async fn until_rejected_answer(
    server: &Server,
    client: &reqwest::Client,
    mark: &str,
) -> (Answer, Duration) {
    let started = Instant::now();
    loop {
        let answer = call_answer(server, client, mark).await;
        if answer.status != StatusCode::OK || started.elapsed() > Duration::from_secs(3) {
            return (answer, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `GET /mixed/items` through `client` with the `headers` given and
/// returns the status and what the upstream received, if anything.
async fn call_mixed(
    server: &Server,
    upstream: &Upstream,
    client: &reqwest::Client,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<support::upstream::Seen>) {
    let mark = marker();
    let mut request = client
        .get(server.url("/mixed/items"))
        .header("x-test-case", &mark);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, upstream.marked(&mark).pop())
}

#[tokio::test]
async fn mtls_routes_authenticate_certificate_clients() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "globex"]);
    data.cli(&["ca", "init"]);

    let internal_id = create_client(&data, "acme", &[]);
    // A registration that copies the internal client's SAN URI, in any
    // case, is rejected: only the server maps a client into that namespace.
    for copycat_san in [
        format!("urn:portcullis:client:{internal_id}"),
        format!("URN:Portcullis:Client:{internal_id}"),
    ] {
        let output = data
            .command()
            .args(["clients", "create", "--tenant", "acme", "--name", "Copycat"])
            .args([
                "--grant-types",
                "client_credentials",
                "--scopes",
                "orders:read",
            ])
            .args([
                "--auth-method",
                "tls_client_auth",
                "--tls-san-uri",
                &copycat_san,
            ])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{copycat_san} was registered");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--tls-san-uri"), "{stderr}");
        assert!(stderr.contains("urn:portcullis:client:"), "{stderr}");
    }
    let revoked_client_id = create_client(&data, "acme", &[]);
    let partner_id = create_client(&data, "acme", &["--tls-san-dns", PARTNER_DNS]);
    // The partner CA is not trusted for globex, so this client never
    // matches a partner certificate.
    let globex_id = create_client(&data, "globex", &["--tls-san-dns", PARTNER_DNS]);

    let (self_signed, jwk) = self_signed_with_jwk();
    let self_signed_id =
        create_self_signed_client(&data, "globex", "orders:read orders:write", &jwk);

    let (internal_cert, _) = issue(&data, &internal_id, "internal");
    let secret_client = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Secret client",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ]);
    let (revoked_cert, revoked_serial) = issue(&data, &internal_id, "to-revoke");
    let (revoked_client_cert, _) = issue(&data, &revoked_client_id, "client-to-revoke");

    let partner = PartnerCa::new();
    let crl_path = trust_partner(&data, &partner, "acme");
    let partner_cert = partner_leaf(&partner, PARTNER_DNS, &[0x0d, 0x01]);
    let unregistered_cert = partner_leaf(&partner, "nobody.example.com", &[0x0d, 0x02]);
    // Partner leaves that copy the subject DN the internal CA writes for
    // the internal client, alone and with its SAN URI.
    let copied_dn = |serial: &[u8], sans: Vec<SanType>| {
        let mut params = leaf_params();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, internal_id.as_str());
        params.subject_alt_names = sans;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        partner.sign(&params)
    };
    let copied_dn_cert = copied_dn(&[0x0d, 0x03], Vec::new());
    let copied_uri = format!("urn:portcullis:client:{internal_id}");
    let copied_both_cert = copied_dn(
        &[0x0d, 0x04],
        vec![SanType::URI(copied_uri.as_str().try_into().unwrap())],
    );

    data.write_config(&format!(
        r#"[server]
client_certificates = "optional"
partner_crls = [{crl:?}]

[[routes]]
path_prefix = "/orders"
upstream = "{upstream}"
auth = ["mtls"]

[routes.scopes]
GET = ["orders:read"]
POST = ["orders:write"]

[[routes]]
path_prefix = "/mixed"
upstream = "{upstream}"
auth = ["mtls", "api_key", "jwt"]
audience = "{API}"

[routes.scopes]
GET = ["orders:read"]

[[routes]]
path_prefix = "/both"
upstream = "{upstream}"
auth = ["jwt"]
audience = "{API}"
client_certificate = "required"

[routes.scopes]
GET = ["orders:read"]
"#,
        crl = crl_path.to_str().unwrap(),
        upstream = upstream.url(),
        API = API,
    ));
    let server = Server::start(&data);
    let store = data.open_store().await;

    // An internal-CA certificate authenticates the client it was issued
    // to, with that client's scopes, and the upstream learns who called.
    let mark = marker();
    let internal = https(&server, Some(&internal_cert));
    let (status, body) = call(&server, &internal, reqwest::Method::GET, &mark).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header("x-portcullis-client-id"),
        Some(internal_id.as_str())
    );
    assert_eq!(seen.header("x-portcullis-tenant"), Some("acme"));
    assert_eq!(
        seen.header("x-portcullis-auth-method"),
        Some("tls_client_auth")
    );
    assert_eq!(seen.header("x-portcullis-scopes"), Some("orders:read"));
    assert_eq!(
        seen.header("x-portcullis-client-certificate-sha256"),
        Some(internal_cert.thumbprint().as_str())
    );

    // The client's registered scopes decide: it has no orders:write.
    let (status, body) = call(&server, &internal, reqwest::Method::POST, &mark).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "insufficient_scope", "{body}");
    assert_eq!(upstream.count_marked(&mark), 1);

    // No certificate: 401 naming what the route accepts.
    let mark = marker();
    let anonymous = https(&server, None);
    let (status, body) = call(&server, &anonymous, reqwest::Method::GET, &mark).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "missing_credential");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("client certificate"),
        "{body}"
    );
    assert_eq!(upstream.count_marked(&mark), 0);

    // A partner certificate authenticates the client of the tenant that
    // trusts the partner CA, not the globex client with the same SAN.
    let partner_client = https(&server, Some(&partner_cert));
    let (status, body) = call(&server, &partner_client, reqwest::Method::GET, &marker()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header("x-portcullis-client-id"),
        Some(partner_id.as_str())
    );
    assert_ne!(
        seen.header("x-portcullis-client-id"),
        Some(globex_id.as_str())
    );
    assert_eq!(seen.header("x-portcullis-tenant"), Some("acme"));

    // A self-signed certificate authenticates the client whose JWKS contains
    // its key. The listener learns registered keys every few seconds.
    let self_signed_client = https(&server, Some(&self_signed));
    let deadline = Instant::now() + Duration::from_secs(8);
    let (status, body) = loop {
        let answer = call(
            &server,
            &self_signed_client,
            reqwest::Method::POST,
            &marker(),
        )
        .await;
        if answer.0 == StatusCode::OK || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header("x-portcullis-client-id"),
        Some(self_signed_id.as_str())
    );
    assert_eq!(
        seen.header("x-portcullis-auth-method"),
        Some("self_signed_tls_client_auth")
    );
    assert_eq!(
        seen.header("x-portcullis-client-certificate-sha256"),
        Some(self_signed.thumbprint().as_str())
    );

    // A verified certificate that no client is registered for: 401 and an
    // audit record with its serial and issuer; the upstream gets nothing.
    let mark = marker();
    let unregistered = https(&server, Some(&unregistered_cert));
    let (status, body) = call(&server, &unregistered, reqwest::Method::GET, &mark).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "certificate_not_registered");
    assert_eq!(upstream.count_marked(&mark), 0);
    let record = failure_record(&store, None, "0d02").await;
    assert_eq!(record["code"], "certificate_not_registered");
    assert_eq!(record["surface"], "gateway");
    assert!(
        record["certificate_issuer"]
            .as_str()
            .unwrap()
            .contains("Partner CA"),
        "{record}"
    );

    // A partner certificate that copies the internal client's subject DN,
    // with or without its SAN URI, authenticates no one.
    for (case, identity, serial) in [
        ("subject DN", &copied_dn_cert, "0d03"),
        ("subject DN and SAN URI", &copied_both_cert, "0d04"),
    ] {
        let mark = marker();
        let copycat = https(&server, Some(identity));
        let (status, body) = call(&server, &copycat, reqwest::Method::GET, &mark).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "certificate_not_registered", "{case}");
        assert_eq!(upstream.count_marked(&mark), 0, "{case}");
        let record = failure_record(&store, None, serial).await;
        assert_eq!(record["code"], "certificate_not_registered", "{case}");
        assert_ne!(record["client_id"], internal_id.as_str(), "{case}");
    }

    // A second acme client with the partner SAN makes the certificate
    // ambiguous. The change feed drops the cached mapping within a second.
    create_client(&data, "acme", &["--tls-san-dns", PARTNER_DNS]);
    let mark = marker();
    let (status, body, delay) = until_rejected(&server, &partner_client, &mark).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "certificate_ambiguous");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");
    let record = failure_record(&store, None, "0d01").await;
    assert_eq!(record["code"], "certificate_ambiguous");
    let logs = server.log_text();
    assert!(
        logs.contains("matches several OAuth clients"),
        "no log of the ambiguity: {logs}"
    );

    // A route that requires a token and a certificate: the token's client
    // must be the certificate's client.
    let bound_token = access_token(&server, &internal, &internal_id, None).await;
    let (status, body) = call_both(&server, &internal, &bound_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        upstream.last().unwrap().header("x-portcullis-client-id"),
        Some(internal_id.as_str())
    );
    let secret_token = access_token(
        &server,
        &anonymous,
        secret_client["client_id"].as_str().unwrap(),
        secret_client["client_secret"].as_str(),
    )
    .await;
    let (status, body) = call_both(&server, &anonymous, &secret_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "client_certificate_required");
    let (status, body) = call_both(&server, &internal, &secret_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "client_certificate_mismatch");

    // A certificate that did not authenticate the request never reaches
    // the upstream as an identity: an API key of globex with acme's
    // internal certificate, or with a certificate that maps to no client,
    // and an unbound token with a certificate.
    let globex_key = data.cli_json(&[
        "keys",
        "create",
        "--tenant",
        "globex",
        "--scopes",
        "orders:read",
    ]);
    let globex_key = globex_key["key"].as_str().unwrap();
    let spoofed_thumbprint = "c3Bvb2ZlZC10aHVtYnByaW50";
    let key_header = [("x-api-key", globex_key)];
    let secret_bearer = format!("Bearer {secret_token}");
    let token_header = [("authorization", secret_bearer.as_str())];
    let cases = [
        (
            "api key, other tenant's certificate",
            &internal,
            &key_header,
        ),
        ("api key, unmapped certificate", &unregistered, &key_header),
        ("unbound token, certificate", &internal, &token_header),
    ];
    for (case, client, headers) in cases {
        let (status, seen) = call_mixed(&server, &upstream, client, headers).await;
        assert_eq!(status, StatusCode::OK, "{case}");
        let seen = seen.unwrap_or_else(|| panic!("{case}: nothing reached the upstream"));
        assert!(seen.header("x-portcullis-auth-method").is_some(), "{case}");
        assert_eq!(
            seen.header_count("x-portcullis-client-certificate-sha256"),
            0,
            "{case}"
        );
    }
    // Headers of those names that a client sends are removed, whatever
    // credential it uses.
    let spoofing = [
        ("x-api-key", globex_key),
        ("x-portcullis-client-certificate-sha256", spoofed_thumbprint),
        ("x-portcullis-client-id", internal_id.as_str()),
        ("x-portcullis-tenant", "acme"),
    ];
    for client in [&anonymous, &internal] {
        let (status, seen) = call_mixed(&server, &upstream, client, &spoofing).await;
        assert_eq!(status, StatusCode::OK);
        let seen = seen.unwrap();
        assert_eq!(
            seen.header_count("x-portcullis-client-certificate-sha256"),
            0
        );
        assert_eq!(seen.header_count("x-portcullis-client-id"), 0);
        assert_eq!(seen.header("x-portcullis-tenant"), Some("globex"));
    }
    // The certificate took part when the token is bound to it, or when it
    // is the credential.
    let bound_bearer = format!("Bearer {bound_token}");
    let (status, seen) = call_mixed(
        &server,
        &upstream,
        &internal,
        &[("authorization", bound_bearer.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen.unwrap()
            .header("x-portcullis-client-certificate-sha256"),
        Some(internal_cert.thumbprint().as_str())
    );
    let (status, seen) = call_mixed(&server, &upstream, &internal, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let seen = seen.unwrap();
    assert_eq!(
        seen.header("x-portcullis-client-certificate-sha256"),
        Some(internal_cert.thumbprint().as_str())
    );
    assert_eq!(
        seen.header("x-portcullis-client-id"),
        Some(internal_id.as_str())
    );

    // A revoked client loses access within a second on an open connection.
    let revoked_client = https(&server, Some(&revoked_client_cert));
    let (status, body) = call(&server, &revoked_client, reqwest::Method::GET, &marker()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    data.cli(&["clients", "revoke", &revoked_client_id]);
    let mark = marker();
    let (status, body, delay) = until_rejected(&server, &revoked_client, &mark).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "certificate_not_registered");
    assert!(delay < Duration::from_secs(1), "took {delay:?}");
    // Requests before the revocation took effect reached the upstream, so
    // what follows gets a mark of its own.
    let mark = marker();
    let (status, _) = call(&server, &revoked_client, reqwest::Method::GET, &mark).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count_marked(&mark), 0);

    // A revoked certificate: open connections over HTTP/1.1 and HTTP/2 are
    // rejected within a second with the same response and stay rejected, and
    // a new connection gets that response too.
    let open_http1 = https_over(&server, Some(&revoked_cert), Protocol::Http1);
    let open_http2 = https_over(&server, Some(&revoked_cert), Protocol::Http2);
    for open in [&open_http1, &open_http2] {
        let (status, body) = call(&server, open, reqwest::Method::GET, &marker()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    data.cli(&[
        "certs",
        "revoke",
        &revoked_serial,
        "--reason",
        "keyCompromise",
    ]);
    let mark = marker();
    let (http1, delay) = until_rejected_answer(&server, &open_http1, &mark).await;
    assert!(delay < Duration::from_secs(1), "took {delay:?}");
    let (http2, _) = until_rejected_answer(&server, &open_http2, &mark).await;
    assert_eq!(http1.version, reqwest::Version::HTTP_11);
    assert_eq!(http2.version, reqwest::Version::HTTP_2);
    for answer in [&http1, &http2] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
        assert_eq!(answer.body["code"], "certificate_revoked", "{answer:?}");
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/problem+json")
        );
        let challenge = answer.challenge.as_deref().unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\""),
            "{answer:?}"
        );
    }
    assert_eq!(http1.challenge, http2.challenge);
    assert_eq!(http1.body, http2.body);
    let mark = marker();
    for open in [&open_http1, &open_http2] {
        for _ in 0..3 {
            let answer = call_answer(&server, open, &mark).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
            assert_eq!(answer.body["code"], "certificate_revoked", "{answer:?}");
        }
    }
    let fresh = https(&server, Some(&revoked_cert));
    match fresh
        .get(server.url("/orders/items"))
        .header("x-test-case", &mark)
        .send()
        .await
    {
        // The listener has rebuilt its CRLs and refuses the handshake.
        Err(_) => {}
        // Or the request reached the gateway, which rejects the revoked
        // certificate with the same answer.
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "certificate_revoked", "{body}");
        }
    }
    assert_eq!(upstream.count_marked(&mark), 0);

    // The internal client still works: the other certificate is unaffected.
    let (status, body) = call(&server, &internal, reqwest::Method::GET, &marker()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
