//! Token-signing keys: rotation publishes before signing, rotation never
//! invalidates a live token, and no listing shows a private member.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use support::upstream::Upstream;
use support::{DataDir, Server};

/// JWK members that hold private or secret key material (RFC 7518 §6.2.2,
/// §6.3.2 and §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

const AUDIENCE: &str = "https://api.example.com";

fn assert_public_only(key: &Value) {
    for member in PRIVATE_MEMBERS {
        assert!(
            key.get(member).is_none(),
            "private member {member} in {key}"
        );
    }
    assert_ne!(key["kty"], "oct");
}

async fn jwks_kids(server: &Server) -> Vec<String> {
    let jwks: Value = server
        .client()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    keys.iter().for_each(assert_public_only);
    keys.iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn token_kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn token(server: &Server, client_id: &str, secret: &str) -> String {
    let response = server
        .client()
        .post(server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&resource=https%3A%2F%2Fapi.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn gateway_status(server: &Server, token: &str) -> StatusCode {
    server
        .client()
        .get(server.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn rotation_publishes_first_and_keeps_tokens_valid() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&format!(
        "[[routes]]\npath_prefix = \"/orders\"\nupstream = \"{}\"\nauth = [\"jwt\"]\naudience = \"{AUDIENCE}\"\n[routes.scopes]\nGET = [\"orders:read\"]\n",
        upstream.url()
    ));
    data.cli(&["tenants", "create", "acme"]);
    let client = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "sync",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ]);
    let (client_id, secret) = (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    let server = Server::start(&data);

    let before = jwks_kids(&server).await;
    assert_eq!(before.len(), 1, "the first start makes one key");
    let old_token = token(&server, client_id, secret).await;
    assert_eq!(token_kid(&old_token), before[0]);
    assert_eq!(gateway_status(&server, &old_token).await, StatusCode::OK);

    // A separate CLI process rotates; the running server learns it through
    // the change feed and publishes the new key before it signs anything.
    let rotated = data.cli_json(&["signing-keys", "rotate"]);
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_eq!(rotated["state"], "pending");
    assert_public_only(&rotated["public_jwk"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let kids = jwks_kids(&server).await;
        if kids.contains(&new_kid) {
            assert!(kids.contains(&before[0]), "the signing key left the JWKS");
            break;
        }
        assert!(Instant::now() < deadline, "the new key was not published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = token(&server, client_id, secret).await;
    assert_eq!(
        token_kid(&fresh),
        before[0],
        "a key signed before its publish-ahead time"
    );
    assert_eq!(gateway_status(&server, &old_token).await, StatusCode::OK);
    assert_eq!(gateway_status(&server, &fresh).await, StatusCode::OK);

    let listed = data.cli_json(&["signing-keys", "list"]);
    let keys = listed["signing_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for key in keys {
        assert_public_only(&key["public_jwk"]);
        assert!(key.get("sealed_private_key").is_none());
    }
    let text = String::from_utf8(data.cli(&["signing-keys", "list"]).stdout).unwrap();
    assert!(text.contains(&new_kid));
}

#[tokio::test]
async fn admin_api_lists_and_rotates_public_keys() {
    let data = DataDir::new();
    let (_, operator) = data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let server = Server::start(&data);
    let client = server.client();

    let rotated = client
        .post(server.url("/admin/v1/signing-keys/rotate"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::CREATED);
    let rotated: Value = rotated.json().await.unwrap();
    assert_public_only(&rotated["public_jwk"]);

    let listed: Value = client
        .get(server.url("/admin/v1/signing-keys"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = listed["signing_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    keys.iter()
        .for_each(|key| assert_public_only(&key["public_jwk"]));
    assert!(
        jwks_kids(&server)
            .await
            .contains(&rotated["kid"].as_str().unwrap().to_owned())
    );
}

#[tokio::test]
async fn metadata_names_what_is_served() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let metadata: Value = server
        .client()
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = metadata["issuer"].as_str().unwrap();
    assert_eq!(
        issuer,
        format!("https://localhost:{}", server.address.port())
    );
    for (member, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("revocation_endpoint", "/oauth/revoke"),
    ] {
        assert_eq!(metadata[member], format!("{issuer}{path}"));
    }
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
}
