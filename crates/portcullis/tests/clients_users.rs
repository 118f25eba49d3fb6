//! OAuth clients and end users, through the CLI and the admin API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::sync::LazyLock;

use portcullis_core::name::TenantName;
use portcullis_core::oauth::Email;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DataDir, Server, all_bytes_under, contains_bytes};

const PASSWORD: &str = "correct horse battery staple";

/// Returns a public EC P-256 key: the example key of RFC 7517 appendix A.1.
fn public_ec_key() -> Value {
    json!({
        "kty": "EC",
        "crv": "P-256",
        "kid": "client-key-1",
        "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
        "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
    })
}

fn rsa_key_with_private_members() -> Value {
    json!({
        "kty": "RSA",
        "kid": "rsa-1",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "p": "cA",
        "q": "cQ",
        "dp": "ZHA",
        "dq": "ZHE",
        "qi": "cWk",
    })
}

struct Fixture {
    data: DataDir,
    server: Server,
    admin: String,
    /// The id of the operator key `admin`.
    admin_id: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    let (admin_id, admin) = data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let server = Server::start(&data);
    Fixture {
        data,
        server,
        admin,
        admin_id,
    }
});

/// Creates a tenant of its own for one test, so counts are not disturbed by
/// the other tests sharing the fixture.
fn tenant(data: &DataDir, name: &str) -> String {
    data.cli(&["tenants", "create", name]);
    name.to_owned()
}

/// Runs a CLI command that must fail, and returns its standard error.
fn fail(data: &DataDir, args: &[&str]) -> String {
    let output = data.command().args(args).output().unwrap();
    assert!(
        !output.status.success(),
        "portcullis {args:?} should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// Runs a CLI command with `stdin` as its standard input.
fn with_stdin(data: &DataDir, args: &[&str], stdin: &str) -> Output {
    let mut child = data
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn call(method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let f = &*FIXTURE;
    call_on(&f.server, &f.admin, method, path, body).await
}

async fn call_on(
    server: &Server,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server
        .client()
        .request(method, server.url(path))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    if !status.is_success() {
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "application/problem+json");
    }
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn client_count(data: &DataDir, tenant: &str) -> usize {
    let listed = data.cli_json(&["clients", "list", "--tenant", tenant]);
    listed["clients"].as_array().unwrap().len()
}

fn confidential_args<'a>(tenant: &'a str, name: &'a str) -> Vec<&'a str> {
    vec![
        "clients",
        "create",
        "--tenant",
        tenant,
        "--name",
        name,
        "--grant-types",
        "authorization_code,refresh_token",
        "--scopes",
        "orders:read,orders:write",
        "--redirect-uri",
        "https://app.example.com/callback",
    ]
}

#[test]
fn cli_client_created_with_rfc7591_names() {
    let data = &FIXTURE.data;
    let created = data.cli_json(&confidential_args("acme", "Billing app"));

    assert!(
        created["client_id"].as_str().unwrap().len() == 36,
        "{created}"
    );
    assert!(
        created["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("pcs_")
    );
    assert_eq!(created["client_secret_expires_at"], 0);
    assert_eq!(created["client_name"], "Billing app");
    assert_eq!(
        created["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        created["redirect_uris"],
        json!(["https://app.example.com/callback"])
    );
    assert_eq!(created["scope"], "orders:read orders:write");
    assert_eq!(created["token_endpoint_auth_method"], "client_secret_basic");
    assert!(created["client_id_issued_at"].is_i64(), "{created}");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["status"], "active");
    assert_eq!(created["access_token_ttl"], 900);
}

#[test]
fn cli_secret_shown_once() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "shown-once");
    let output = data.cli(&confidential_args(&tenant, "Table app"));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let secret_line = stdout
        .lines()
        .find(|line| line.starts_with("client_secret"))
        .unwrap_or_else(|| panic!("no client_secret line in:\n{stdout}"));
    let secret = secret_line.split_whitespace().last().unwrap().to_owned();
    assert!(secret.starts_with("pcs_"), "{stdout}");
    assert!(stdout.contains("shown only this once"), "{stdout}");

    let table = data.cli(&["clients", "list", "--tenant", &tenant]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("Table app"), "{table}");
    assert!(!table.contains(&secret), "{table}");

    let listed = data.cli_json(&["clients", "list", "--tenant", &tenant]);
    let client = &listed["clients"][0];
    assert!(client.get("client_secret").is_none(), "{listed}");
    assert!(!listed.to_string().contains(&secret));
}

#[test]
fn cli_secret_rotated_and_client_revoked() {
    let data = &FIXTURE.data;
    let created = data.cli_json(&confidential_args("acme", "Rotating app"));
    let id = created["client_id"].as_str().unwrap();
    let first = created["client_secret"].as_str().unwrap();

    let rotated = data.cli_json(&["clients", "rotate-secret", id, "--grace", "1h"]);
    assert_eq!(rotated["client_id"], id);
    let second = rotated["client_secret"].as_str().unwrap();
    assert!(second.starts_with("pcs_"));
    assert_ne!(first, second);
    let expire_at = rotated["previous_secrets_expire_at"].as_str().unwrap();
    assert!(expire_at.contains('T'), "not RFC 3339: {expire_at}");

    let stderr = fail(data, &["clients", "rotate-secret", id, "--grace", "8d"]);
    assert!(stderr.contains("--grace"), "{stderr}");

    let revoked = data.cli_json(&["clients", "revoke", id, "--reason", "replaced"]);
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    let stderr = fail(data, &["clients", "revoke", id]);
    assert!(stderr.contains("revoked"), "{stderr}");
    let stderr = fail(data, &["clients", "rotate-secret", id]);
    assert!(stderr.contains("revoked"), "{stderr}");
}

#[test]
fn cli_public_client_without_secret() {
    let data = &FIXTURE.data;
    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Mobile app",
        "--grant-types",
        "authorization_code,refresh_token",
        "--scopes",
        "orders:read",
        "--redirect-uri",
        "com.example.app:/callback",
        "--public",
    ]);
    assert_eq!(created["token_endpoint_auth_method"], "none");
    assert!(created.get("client_secret").is_none(), "{created}");

    let id = created["client_id"].as_str().unwrap();
    let stderr = fail(data, &["clients", "rotate-secret", id]);
    assert!(stderr.contains("no secret"), "{stderr}");
}

#[test]
fn cli_public_client_credentials_rejected() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "public-cc");
    let stderr = fail(
        data,
        &[
            "clients",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "SPA",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "orders:read",
            "--public",
        ],
    );
    assert!(stderr.contains("--grant-types"), "{stderr}");
    assert!(stderr.contains("client_credentials"), "{stderr}");
    assert_eq!(client_count(data, &tenant), 0);
}

#[test]
fn cli_redirect_patterns_rejected() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "patterns");
    for uri in ["https://app.example.com*", "https://*.example.com/callback"] {
        let mut args = confidential_args(&tenant, "Pattern app");
        args.extend(["--redirect-uri", uri]);
        let stderr = fail(data, &args);
        assert!(stderr.contains("--redirect-uri"), "{stderr}");
        assert!(stderr.contains(uri), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    assert_eq!(client_count(data, &tenant), 0);
}

#[test]
fn cli_authorization_code_needs_redirect_uri() {
    let data = &FIXTURE.data;
    let stderr = fail(
        data,
        &[
            "clients",
            "create",
            "--tenant",
            "acme",
            "--name",
            "No redirect",
            "--grant-types",
            "authorization_code",
            "--scopes",
            "orders:read",
        ],
    );
    assert!(stderr.contains("redirect URI"), "{stderr}");
}

#[test]
fn cli_jwks_private_members_rejected() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "jwks-private");
    let mut ec_private = public_ec_key();
    ec_private["d"] = json!("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE");
    let cases = [
        (json!({"keys": [ec_private]}), "\"d\"", "keys[0]"),
        (
            json!({"keys": [public_ec_key(), rsa_key_with_private_members()]}),
            "\"p\"",
            "keys[1]",
        ),
        (
            json!({"keys": [{"kty": "oct", "kid": "s"}]}),
            "oct",
            "keys[0]",
        ),
    ];
    for (jwks, member, index) in cases {
        let file = data.path().join("client-jwks.json");
        std::fs::write(&file, jwks.to_string()).unwrap();
        let stderr = fail(
            data,
            &[
                "clients",
                "create",
                "--tenant",
                &tenant,
                "--name",
                "Key app",
                "--grant-types",
                "client_credentials",
                "--scopes",
                "orders:read",
                "--auth-method",
                "private_key_jwt",
                "--jwks",
                file.to_str().unwrap(),
            ],
        );
        assert!(stderr.contains("--jwks"), "{stderr}");
        assert!(stderr.contains(member), "{stderr}");
        assert!(stderr.contains(index), "{stderr}");
        assert!(!stderr.contains("870MB6gf"), "{stderr}");
    }
    assert_eq!(client_count(data, &tenant), 0);
}

#[test]
fn cli_private_key_jwt_client_registered() {
    let data = &FIXTURE.data;
    let file = data.path().join("public-jwks.json");
    std::fs::write(&file, json!({"keys": [public_ec_key()]}).to_string()).unwrap();
    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Signed app",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--auth-method",
        "private_key_jwt",
        "--jwks",
        file.to_str().unwrap(),
        "--access-token-ttl",
        "5m",
    ]);
    assert_eq!(created["token_endpoint_auth_method"], "private_key_jwt");
    assert!(created.get("client_secret").is_none(), "{created}");
    assert_eq!(created["jwks"]["keys"][0]["kid"], "client-key-1");
    assert_eq!(created["access_token_ttl"], 300);

    let stderr = fail(
        data,
        &[
            "clients",
            "create",
            "--tenant",
            "acme",
            "--name",
            "No keys",
            "--grant-types",
            "client_credentials",
            "--scopes",
            "orders:read",
            "--auth-method",
            "private_key_jwt",
        ],
    );
    assert!(stderr.contains("--jwks"), "{stderr}");
}

#[test]
fn cli_client_input_checked() {
    let data = &FIXTURE.data;
    let mut look_alike = confidential_args("\u{0430}cme", "App");
    let stderr = fail(data, &look_alike);
    assert!(stderr.contains("U+0430"), "{stderr}");
    assert!(stderr.contains("position 1"), "{stderr}");

    look_alike = confidential_args("acme", "App");
    look_alike.extend(["--access-token-ttl", "2h"]);
    let stderr = fail(data, &look_alike);
    assert!(stderr.contains("--access-token-ttl"), "{stderr}");

    let mut scopes = confidential_args("acme", "App");
    scopes[9] = "\u{043e}rders:read";
    let stderr = fail(data, &scopes);
    assert!(stderr.contains("U+043E"), "{stderr}");

    let mut grant = confidential_args("acme", "App");
    grant[7] = "password";
    let stderr = fail(data, &grant);
    assert!(stderr.contains("password"), "{stderr}");
}

#[tokio::test]
async fn admin_client_lifecycle() {
    let (status, created) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/clients",
        Some(json!({
            "client_name": "Backend sync",
            "grant_types": ["client_credentials"],
            "scope": "orders:read invoices:read",
            "access_token_ttl": "10m",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pcs_"));
    assert_eq!(created["client_name"], "Backend sync");
    assert_eq!(created["grant_types"], json!(["client_credentials"]));
    assert_eq!(created["redirect_uris"], json!([]));
    assert_eq!(created["scope"], "invoices:read orders:read");
    assert_eq!(created["token_endpoint_auth_method"], "client_secret_basic");
    assert!(created["client_id_issued_at"].is_i64());
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["status"], "active");
    assert_eq!(created["access_token_ttl"], 600);

    let (status, shown) = call(
        reqwest::Method::GET,
        &format!("/admin/v1/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["client_id"], id.as_str());
    assert!(shown.get("client_secret").is_none(), "{shown}");

    let (status, listed) = call(reqwest::Method::GET, "/admin/v1/tenants/acme/clients", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|client| client["client_id"] == id.as_str())
    );
    assert!(!listed.to_string().contains(&secret));

    let (status, rotated) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/clients/{id}/rotate-secret"),
        Some(json!({"grace": "0s"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    assert_ne!(rotated["client_secret"], secret.as_str());
    assert!(
        rotated["previous_secrets_expire_at"].is_string(),
        "{rotated}"
    );

    let (status, problem) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/clients",
        Some(json!({
            "client_name": "Bad lifetime",
            "grant_types": ["client_credentials"],
            "scope": "orders:read",
            "access_token_ttl": 1.5,
        })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(!detail.contains("TtlInput"), "{detail}");

    let (status, revoked) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/clients/{id}/revoke"),
        Some(json!({"reason": "test over"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");

    let (status, again) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/clients/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
}

#[tokio::test]
async fn admin_client_rejections() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "admin-rejects");
    let path = format!("/admin/v1/tenants/{tenant}/clients");
    let base = json!({
        "client_name": "App",
        "grant_types": ["authorization_code"],
        "scope": "orders:read",
        "redirect_uris": ["https://app.example.com/callback"],
    });
    let mut ec_private = public_ec_key();
    ec_private["d"] = json!("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE");
    let cases = [
        (
            json!({"redirect_uris": ["https://app.example.com*"]}),
            "redirect_uris",
            "https://app.example.com*",
        ),
        (
            json!({"redirect_uris": ["https://*.example.com/callback"]}),
            "redirect_uris",
            "https://*.example.com/callback",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [ec_private]},
            }),
            "jwks",
            "\"d\"",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [rsa_key_with_private_members()]},
            }),
            "jwks",
            "\"p\"",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "none",
            }),
            "grant_types",
            "client_credentials",
        ),
        (
            json!({"redirect_uris": []}),
            "redirect_uris",
            "redirect URI",
        ),
        (
            json!({"client_name": "a\u{1b}[31m"}),
            "client_name",
            "U+001B",
        ),
        (json!({"scope": "\u{043e}rders:read"}), "scope", "U+043E"),
        (json!({"access_token_ttl": 30}), "access_token_ttl", "1m"),
        (
            json!({"token_endpoint_auth_method": "client_secret_jwt"}),
            "token_endpoint_auth_method",
            "client_secret_jwt",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_san_dns": "svc.example.com",
                "tls_client_auth_san_uri": "urn:acme:svc",
            }),
            "tls_client_auth_subject",
            "tls_client_auth_san_uri",
        ),
        (
            json!({"tls_client_auth_san_dns": "svc.example.com"}),
            "tls_client_auth_san_dns",
            "client_secret_basic",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_san_uri": "urn:portcullis:client:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            }),
            "tls_client_auth_san_uri",
            "namespace",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_san_uri": "URN:PORTCULLIS:CLIENT:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            }),
            "tls_client_auth_san_uri",
            "namespace",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": "not a name",
            }),
            "tls_client_auth_subject_dn",
            "RFC 4514",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
            }),
            "jwks",
            "self_signed_tls_client_auth",
        ),
        (
            json!({
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "jwks": {"keys": [ec_private.clone()]},
            }),
            "jwks",
            "\"d\"",
        ),
    ];
    for (change, field, named) in cases {
        let mut body = base.clone();
        for (name, value) in change.as_object().unwrap() {
            body[name] = value.clone();
        }
        let (status, problem) = call(reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{detail}");
        assert!(!detail.contains("870MB6gf"), "{detail}");
    }
    assert_eq!(client_count(data, &tenant), 0);

    let (status, problem) = call(
        reqwest::Method::POST,
        "/admin/v1/tenants/\u{0430}cme/clients",
        Some(base),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("U+0430"));

    let (status, _) = call(reqwest::Method::GET, "/admin/v1/clients/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn admin_tls_client_registered() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "admin-tls");
    let path = format!("/admin/v1/tenants/{tenant}/clients");
    let body = json!({
        "client_name": "Bank",
        "grant_types": ["client_credentials"],
        "scope": "orders:read",
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=Payments,O=Bank\\, AG,C=DE",
    });
    let (status, created) = call(reqwest::Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["token_endpoint_auth_method"], "tls_client_auth");
    assert_eq!(
        created["tls_client_auth_subject_dn"],
        "CN=Payments,O=Bank\\, AG,C=DE"
    );
    assert_eq!(created["tls_client_certificate_bound_access_tokens"], true);
    assert!(created.get("client_secret").is_none(), "{created}");

    let id = created["client_id"].as_str().unwrap();
    let (status, shown) = call(
        reqwest::Method::GET,
        &format!("/admin/v1/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        shown["tls_client_auth_subject_dn"],
        created["tls_client_auth_subject_dn"]
    );
}

#[tokio::test]
async fn admin_tls_client_mapped_to_own_uri() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "admin-tls-own");
    let path = format!("/admin/v1/tenants/{tenant}/clients");
    let body = json!({
        "client_name": "Internal CA partner",
        "grant_types": ["client_credentials"],
        "scope": "orders:read",
        "token_endpoint_auth_method": "tls_client_auth",
    });
    let (status, created) = call(reqwest::Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["client_id"].as_str().unwrap();
    assert_eq!(
        created["tls_client_auth_san_uri"],
        format!("urn:portcullis:client:{id}")
    );
}

#[test]
fn cli_internal_namespace_uri_rejected() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "tls-namespace");
    let existing = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        &tenant,
        "--name",
        "Internal CA partner",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--auth-method",
        "tls_client_auth",
    ]);
    let id = existing["client_id"].as_str().unwrap();
    assert_eq!(
        existing["tls_client_auth_san_uri"],
        format!("urn:portcullis:client:{id}")
    );
    for uri in [
        format!("urn:portcullis:client:{id}"),
        format!("URN:portcullis:client:{id}"),
        format!("urn:Portcullis:Client:{id}"),
        "urn:portcullis:client:".to_owned(),
    ] {
        let stderr = fail(
            data,
            &[
                "clients",
                "create",
                "--tenant",
                &tenant,
                "--name",
                "Copycat",
                "--grant-types",
                "client_credentials",
                "--scopes",
                "orders:read",
                "--auth-method",
                "tls_client_auth",
                "--tls-san-uri",
                &uri,
            ],
        );
        assert!(stderr.contains("--tls-san-uri"), "{uri}: {stderr}");
        assert!(stderr.contains("namespace"), "{uri}: {stderr}");
    }
    assert_eq!(client_count(data, &tenant), 1);
}

#[test]
fn cli_user_created_with_argon2id() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "users-cli");
    let output = with_stdin(
        data,
        &[
            "--output",
            "json",
            "users",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "Ops@Example.com",
            "--role",
            "admin",
        ],
        &format!("{PASSWORD}\n"),
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(!stdout.contains(PASSWORD));
    assert!(!stderr.contains(PASSWORD));
    let created: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(created["email"], "ops@example.com");
    assert_eq!(created["role"], "admin");
    assert_eq!(created["tenant"], tenant.as_str());
    assert!(created.get("password").is_none());
    assert!(created.get("password_hash").is_none());
    assert!(!stdout.contains("argon2"));

    let hash = stored_password_hash(data, &tenant, "ops@example.com");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));

    let listed = data.cli_json(&["users", "list", "--tenant", &tenant]);
    assert_eq!(listed["users"][0]["email"], "ops@example.com");
    assert!(!listed.to_string().contains("argon2"));
}

#[test]
fn cli_user_rules_enforced() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "users-rules");
    let from_env = data
        .command()
        .args(["users", "create", "--tenant", &tenant, "--email"])
        .arg("ops@example.com")
        .env("PORTCULLIS_USER_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(from_env.status.success());

    let duplicate = with_stdin(
        data,
        &[
            "users",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "OPS@example.com",
        ],
        PASSWORD,
    );
    let stderr = String::from_utf8(duplicate.stderr).unwrap();
    assert!(!duplicate.status.success());
    assert!(stderr.contains("already has a user"), "{stderr}");

    let look_alike = with_stdin(
        data,
        &[
            "users",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "\u{043e}ps@example.com",
        ],
        PASSWORD,
    );
    let stderr = String::from_utf8(look_alike.stderr).unwrap();
    assert!(!look_alike.status.success());
    assert!(stderr.contains("U+043E"), "{stderr}");
    assert!(stderr.contains("position 1"), "{stderr}");

    let short = with_stdin(
        data,
        &[
            "users",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "new@example.com",
        ],
        "hunter2hunt\n",
    );
    let stderr = String::from_utf8(short.stderr).unwrap();
    assert!(!short.status.success());
    assert!(stderr.contains("minimum is 12"), "{stderr}");
    assert!(!stderr.contains("hunter2hunt"), "{stderr}");

    let listed = data.cli_json(&["users", "list", "--tenant", &tenant]);
    assert_eq!(listed["users"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn admin_users_created_and_listed() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "users-admin");
    let path = format!("/admin/v1/tenants/{tenant}/users");
    let (status, created) = call(
        reqwest::Method::POST,
        &path,
        Some(json!({"email": "dev@example.com", "password": PASSWORD, "role": "developer"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["email"], "dev@example.com");
    assert_eq!(created["role"], "developer");
    assert!(!created.to_string().contains(PASSWORD));
    assert!(!created.to_string().contains("argon2"));

    let cases = [
        (
            json!({"email": "DEV@example.com", "password": PASSWORD}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"email": "\u{043e}ps@example.com", "password": PASSWORD}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"email": "short@example.com", "password": "too short"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"email": "role@example.com", "password": PASSWORD, "role": "owner"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, expected) in cases {
        let (status, problem) = call(reqwest::Method::POST, &path, Some(body)).await;
        assert_eq!(status, expected, "{problem}");
        assert!(!problem.to_string().contains(PASSWORD), "{problem}");
    }

    let (_, problem) = call(
        reqwest::Method::POST,
        &path,
        Some(json!({"email": "\u{043e}ps@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(problem["field"], "email", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("U+043E"), "{detail}");
    assert!(detail.contains("position 1"), "{detail}");

    let (status, listed) = call(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    let users = listed["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{listed}");
    assert!(!listed.to_string().contains("argon2"));
}

#[tokio::test]
async fn admin_user_disabled_and_enabled() {
    let data = &FIXTURE.data;
    let tenant = tenant(data, "users-switch");
    let users = format!("/admin/v1/tenants/{tenant}/users");
    let mut ids = Vec::new();
    for (email, role) in [
        ("admin@example.com", "admin"),
        ("dev@example.com", "developer"),
    ] {
        let body = json!({"email": email, "password": PASSWORD, "role": role});
        let (status, created) = call(reqwest::Method::POST, &users, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let [admin, dev] = <[String; 2]>::try_from(ids).unwrap();
    let switch = |id: &str, verb: &str| format!("{users}/{id}/{verb}");

    let (status, disabled) = call(reqwest::Method::POST, &switch(&dev, "disable"), None).await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["id"], dev.as_str());
    assert!(disabled["disabled_at"].is_string(), "{disabled}");
    let (status, listed) = call(reqwest::Method::GET, &users, None).await;
    assert_eq!(status, StatusCode::OK);
    let listed_dev = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["id"] == dev.as_str())
        .unwrap();
    assert!(listed_dev["disabled_at"].is_string(), "{listed}");

    // A repeated change is a conflict, as it is for the CLI.
    let (status, problem) = call(reqwest::Method::POST, &switch(&dev, "disable"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "user_disabled");
    let (status, enabled) = call(reqwest::Method::POST, &switch(&dev, "enable"), None).await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert!(enabled["disabled_at"].is_null(), "{enabled}");
    let (status, problem) = call(reqwest::Method::POST, &switch(&dev, "enable"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "user_enabled");

    let (status, problem) = call(reqwest::Method::POST, &switch(&admin, "disable"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "last_admin");

    // The audit records name the operator key that made the change.
    let (status, page) = call(
        reqwest::Method::GET,
        &format!("/admin/v1/audit-events?tenant={tenant}&credential={dev}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["action"] != "user.created")
        .map(|event| {
            assert_eq!(event["actor"], format!("operator-key:{}", FIXTURE.admin_id));
            event["action"].as_str().unwrap()
        })
        .collect();
    assert_eq!(actions, ["user.disabled", "user.enabled"], "{page}");
}

#[tokio::test]
async fn admin_user_switch_rejections() {
    let data = &FIXTURE.data;
    let other = tenant(data, "users-reject-other");
    let tenant = tenant(data, "users-reject");
    let (status, outsider) = call(
        reqwest::Method::POST,
        &format!("/admin/v1/tenants/{other}/users"),
        Some(json!({"email": "outsider@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{outsider}");
    let outsider = outsider["id"].as_str().unwrap();
    let unknown = "00000000-0000-4000-8000-000000000000";

    let cases = [
        (
            format!("{tenant}/users/{outsider}/disable"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("{tenant}/users/{unknown}/enable"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("no-such-tenant/users/{outsider}/disable"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("{tenant}/users/not-a-uuid/disable"),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ];
    for (path, expected, code) in cases {
        let path = format!("/admin/v1/tenants/{path}");
        let (status, problem) = call(reqwest::Method::POST, &path, None).await;
        assert_eq!(status, expected, "{path}: {problem}");
        assert_eq!(problem["code"], code, "{path}");
    }

    // The user of the other tenant stays enabled.
    let (_, listed) = call(
        reqwest::Method::GET,
        &format!("/admin/v1/tenants/{other}/users"),
        None,
    )
    .await;
    assert!(listed["users"][0]["disabled_at"].is_null(), "{listed}");

    let (_, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let path = format!("/admin/v1/tenants/{other}/users/{outsider}/disable");
    let (status, problem) =
        call_on(&FIXTURE.server, &reader, reqwest::Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(problem["code"], "insufficient_scope");
}

#[tokio::test]
async fn secrets_absent_from_database_and_logs() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "quiet"]);
    let (_, admin) = data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let mut secrets = Vec::new();

    let created = data.cli_json(&confidential_args("quiet", "CLI app"));
    secrets.push(created["client_secret"].as_str().unwrap().to_owned());
    let id = created["client_id"].as_str().unwrap().to_owned();
    let rotated = data.cli_json(&["clients", "rotate-secret", &id]);
    secrets.push(rotated["client_secret"].as_str().unwrap().to_owned());

    let server = Server::start(&data);
    let (status, created) = call_on(
        &server,
        &admin,
        reqwest::Method::POST,
        "/admin/v1/tenants/quiet/clients",
        Some(json!({
            "client_name": "API app",
            "grant_types": ["client_credentials"],
            "scope": "orders:read",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    secrets.push(created["client_secret"].as_str().unwrap().to_owned());
    let id = created["client_id"].as_str().unwrap();
    let (_, rotated) = call_on(
        &server,
        &admin,
        reqwest::Method::POST,
        &format!("/admin/v1/clients/{id}/rotate-secret"),
        None,
    )
    .await;
    secrets.push(rotated["client_secret"].as_str().unwrap().to_owned());
    let (status, _) = call_on(
        &server,
        &admin,
        reqwest::Method::POST,
        "/admin/v1/tenants/quiet/users",
        Some(json!({"email": "ops@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let logs = server.log_text();
    drop(server);
    let stored = all_bytes_under(data.path());
    for secret in &secrets {
        assert!(secret.starts_with("pcs_"));
        assert!(!contains_bytes(&stored, secret.as_bytes()), "secret stored");
        assert!(!logs.contains(secret.as_str()), "secret logged");
    }
    assert!(
        !contains_bytes(&stored, PASSWORD.as_bytes()),
        "password stored"
    );
    assert!(!logs.contains(PASSWORD), "password logged");
}

/// Reads a user's stored password hash straight from the database.
fn stored_password_hash(data: &DataDir, tenant: &str, email: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = data.open_store().await;
        let tenant = store
            .find_tenant(&TenantName::parse(tenant).unwrap())
            .await
            .unwrap()
            .unwrap();
        let user = store
            .find_user_by_email(tenant.id, &Email::parse(email).unwrap())
            .await
            .unwrap()
            .unwrap();
        store.close().await;
        user.password_hash
    })
}
