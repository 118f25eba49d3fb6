//! Token-signing keys: rotation publishes before signing, rotation never
//! invalidates a live token, revocation rejects a key's tokens at once, and
//! no listing shows a private member.

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

/// Writes a configuration with one JWT route, and creates tenant `acme` with
/// a `client_credentials` client. Returns the client's id and secret.
fn jwt_route_and_client(data: &DataDir, upstream: &Upstream) -> (String, String) {
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
    (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// Returns the `active` member of the introspection response for `token`,
/// with the client authenticating itself (RFC 7662 §2.1).
async fn introspect_active(server: &Server, client_id: &str, secret: &str, token: &str) -> Value {
    let response = server
        .client()
        .post(server.url("/oauth/introspect"))
        .basic_auth(client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["active"].clone()
}

/// Returns the audit records of signing key `kid` with `action`.
fn signing_key_audit(data: &DataDir, action: &str, kid: &str) -> Vec<Value> {
    let output = data.cli(&["audit-log", "export"]);
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["action"] == action && record["target"] == kid)
        .collect()
}

fn listed_key(data: &DataDir, kid: &str) -> Value {
    let listed = data.cli_json(&["signing-keys", "list"]);
    listed["signing_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == kid)
        .cloned()
        .unwrap_or_else(|| panic!("signing key {kid} not listed: {listed}"))
}

#[tokio::test]
async fn revoked_key_tokens_rejected_on_running_server() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    let (client_id, secret) = jwt_route_and_client(&data, &upstream);
    let server = Server::start(&data);

    let kids = jwks_kids(&server).await;
    assert_eq!(kids.len(), 1, "the first start makes one key");
    let compromised = kids[0].clone();
    let old_token = token(&server, &client_id, &secret).await;
    assert_eq!(token_kid(&old_token), compromised);
    assert_eq!(gateway_status(&server, &old_token).await, StatusCode::OK);
    assert_eq!(
        introspect_active(&server, &client_id, &secret, &old_token).await,
        true
    );

    // A separate CLI process revokes the key that signs. No key is
    // pending, so the command generates the key that takes over.
    let output = data.cli(&[
        "signing-keys",
        "revoke",
        &compromised,
        "--reason",
        "private key found in a public bucket",
    ]);
    let text = String::from_utf8(output.stdout).unwrap();
    let successor = listed_key_signing(&data);
    assert_ne!(successor, compromised);
    assert!(
        text.contains(&format!("signing key {compromised} is revoked")),
        "{text}"
    );
    assert!(
        text.contains(&format!("key {successor} signs now")),
        "{text}"
    );
    assert!(text.contains("cache the JWKS"), "{text}");
    assert!(text.contains("refresh tokens stay valid"), "{text}");

    // The running server learns it through the change feed, which it polls
    // every 250 ms; the deadline only bounds a hung test.
    let deadline = Instant::now() + Duration::from_secs(3);
    while gateway_status(&server, &old_token).await == StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the revoked key's token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let rejected = server
        .client()
        .get(server.url("/orders/1"))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
    let challenge = rejected.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["code"], "invalid_token");
    assert_eq!(
        introspect_active(&server, &client_id, &secret, &old_token).await,
        false
    );
    assert_eq!(jwks_kids(&server).await, vec![successor.clone()]);

    let fresh = token(&server, &client_id, &secret).await;
    assert_eq!(token_kid(&fresh), successor);
    assert_eq!(gateway_status(&server, &fresh).await, StatusCode::OK);
    assert_eq!(
        introspect_active(&server, &client_id, &secret, &fresh).await,
        true
    );

    let revoked = listed_key(&data, &compromised);
    assert_eq!(revoked["state"], "revoked");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(
        revoked["revoked_reason"],
        "private key found in a public bucket"
    );
    let table = String::from_utf8(data.cli(&["signing-keys", "list"]).stdout).unwrap();
    let row = table
        .lines()
        .find(|line| line.starts_with(&compromised))
        .unwrap();
    assert!(row.contains("revoked"), "{row}");
    assert!(
        row.contains("private key found in a public bucket"),
        "{row}"
    );

    let records = signing_key_audit(&data, "signing_key.revoked", &compromised);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["details"]["reason"],
        "private key found in a public bucket"
    );
    assert_eq!(records[0]["details"]["previous_state"], "active");
    // The revoking command generated the successor, so its records name
    // the command as actor and not the rotation schedule.
    let created = signing_key_audit(&data, "signing_key.created", &successor);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["actor"], "cli");
    let activated = signing_key_audit(&data, "signing_key.activated", &successor);
    assert_eq!(activated.len(), 1, "{activated:?}");
    assert_eq!(activated[0]["actor"], "cli");

    let again = data.cli_error(&["signing-keys", "revoke", &compromised, "--reason", "again"]);
    assert!(
        again.contains(&format!("signing key {compromised} is already revoked")),
        "{again}"
    );
    let unknown = data.cli_error(&["signing-keys", "revoke", "no-such-kid", "--reason", "x"]);
    assert!(
        unknown.contains("no signing key with kid no-such-kid"),
        "{unknown}"
    );
    for (kid, shown) in [
        ("\u{1b}[31mred", "\\u{1b}"),
        ("\u{202e}evil", "\\u{202e}"),
        ("kid.with.dots", "'.'"),
    ] {
        let invalid = data.cli_error(&["signing-keys", "revoke", kid, "--reason", "x"]);
        assert!(invalid.contains("kid contains the character"), "{invalid}");
        assert!(invalid.contains(shown), "{invalid}");
        assert!(!invalid.contains('\u{1b}'), "{invalid:?}");
        assert!(!invalid.contains('\u{202e}'), "{invalid:?}");
    }
    let long = "a".repeat(129);
    let too_long = data.cli_error(&["signing-keys", "revoke", &long, "--reason", "x"]);
    assert!(
        too_long.contains("kid is longer than 128 bytes"),
        "{too_long}"
    );
    let empty = data.cli_error(&["signing-keys", "revoke", &successor, "--reason", " "]);
    assert!(empty.contains("reason must not be empty"), "{empty}");
    assert_eq!(
        signing_key_audit(&data, "signing_key.revoked", &compromised).len(),
        1
    );
}

/// Returns the kid of the active key, as `signing-keys list` shows it.
fn listed_key_signing(data: &DataDir) -> String {
    let listed = data.cli_json(&["signing-keys", "list"]);
    let active: Vec<&Value> = listed["signing_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{listed}");
    active[0]["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn admin_api_revoke_pending_key_takes_over() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    let (client_id, secret) = jwt_route_and_client(&data, &upstream);
    let (operator_id, operator) =
        data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let (_, reader) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    let server = Server::start(&data);
    let client = server.client();
    let compromised = jwks_kids(&server).await[0].clone();
    let old_token = token(&server, &client_id, &secret).await;

    let rotated: Value = client
        .post(server.url("/admin/v1/signing-keys/rotate"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pending = rotated["kid"].as_str().unwrap().to_owned();
    let revoke_url = server.url(&format!("/admin/v1/signing-keys/{compromised}/revoke"));

    let forbidden = client
        .post(&revoke_url)
        .bearer_auth(&reader)
        .json(&serde_json::json!({"reason": "leaked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    for (body, field) in [
        (serde_json::json!({}), None),
        (serde_json::json!({"reason": ""}), Some("reason")),
        (
            serde_json::json!({"reason": "x".repeat(201)}),
            Some("reason"),
        ),
    ] {
        let invalid = client
            .post(&revoke_url)
            .bearer_auth(&operator)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST, "{body}");
        let problem: Value = invalid.json().await.unwrap();
        if let Some(field) = field {
            assert_eq!(problem["field"], field, "{problem}");
        }
    }
    assert_eq!(listed_key_signing(&data), compromised);

    let response = client
        .post(&revoke_url)
        .bearer_auth(&operator)
        .json(&serde_json::json!({"reason": "leaked in a support ticket"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let revocation: Value = response.json().await.unwrap();
    assert_eq!(revocation["revoked"]["kid"], compromised);
    assert_eq!(revocation["revoked"]["state"], "revoked");
    assert_eq!(
        revocation["revoked"]["revoked_reason"],
        "leaked in a support ticket"
    );
    assert_public_only(&revocation["revoked"]["public_jwk"]);
    // The pending key takes over at once instead of a new key.
    assert_eq!(revocation["successor"]["kid"], pending);
    assert_eq!(revocation["successor"]["state"], "active");
    assert_eq!(revocation["signing_kid"], pending);

    // The node that served the request swapped its keys before it sent
    // the response.
    assert_eq!(jwks_kids(&server).await, vec![pending.clone()]);
    assert_eq!(
        gateway_status(&server, &old_token).await,
        StatusCode::UNAUTHORIZED
    );
    let fresh = token(&server, &client_id, &secret).await;
    assert_eq!(token_kid(&fresh), pending);
    assert_eq!(gateway_status(&server, &fresh).await, StatusCode::OK);
    let listed = data.cli_json(&["signing-keys", "list"]);
    assert_eq!(listed["signing_keys"].as_array().unwrap().len(), 2);

    let records = signing_key_audit(&data, "signing_key.revoked", &compromised);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["actor"], format!("operator-key:{operator_id}"));
    assert_eq!(
        records[0]["details"]["reason"],
        "leaked in a support ticket"
    );
    let activated = signing_key_audit(&data, "signing_key.activated", &pending);
    assert_eq!(activated.len(), 1, "{activated:?}");

    let again = client
        .post(&revoke_url)
        .bearer_auth(&operator)
        .json(&serde_json::json!({"reason": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let problem: Value = again.json().await.unwrap();
    assert_eq!(problem["code"], "signing_key_revoked");

    let unknown = client
        .post(server.url("/admin/v1/signing-keys/no-such-kid/revoke"))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"reason": "leaked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let problem: Value = unknown.json().await.unwrap();
    assert_eq!(problem["code"], "not_found");
    assert_eq!(jwks_kids(&server).await, vec![pending.clone()]);

    // A kid outside base64url is rejected before any lookup, and the
    // detail shows the character escaped, never raw.
    for (path_kid, shown) in [
        ("%E2%80%AEevil", "\\u{202e}"),
        ("%1B%5B31m", "\\u{1b}"),
        ("kid.with.dots", "'.'"),
    ] {
        let invalid = client
            .post(server.url(&format!("/admin/v1/signing-keys/{path_kid}/revoke")))
            .bearer_auth(&operator)
            .json(&serde_json::json!({"reason": "leaked"}))
            .send()
            .await
            .unwrap();
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST, "{path_kid}");
        let problem: Value = invalid.json().await.unwrap();
        assert_eq!(problem["code"], "invalid_field", "{problem}");
        assert_eq!(problem["field"], "kid", "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(shown), "{detail}");
        assert!(!detail.contains('\u{202e}'), "{detail:?}");
        assert!(!detail.contains('\u{1b}'), "{detail:?}");
    }

    // With no pending key left, revoking the signer generates the key that
    // takes over, and its records name the operator who revoked.
    let response = client
        .post(server.url(&format!("/admin/v1/signing-keys/{pending}/revoke")))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"reason": "leaked again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let revocation: Value = response.json().await.unwrap();
    let generated = revocation["successor"]["kid"].as_str().unwrap().to_owned();
    assert_ne!(generated, pending);
    assert_ne!(generated, compromised);
    let operator_actor = format!("operator-key:{operator_id}");
    let created = signing_key_audit(&data, "signing_key.created", &generated);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["actor"], operator_actor.as_str());
    let activated = signing_key_audit(&data, "signing_key.activated", &generated);
    assert_eq!(activated.len(), 1, "{activated:?}");
    assert_eq!(activated[0]["actor"], operator_actor.as_str());
}

#[tokio::test]
async fn rotation_publishes_first_and_keeps_tokens_valid() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    let (client_id, secret) = jwt_route_and_client(&data, &upstream);
    let server = Server::start(&data);

    let before = jwks_kids(&server).await;
    assert_eq!(before.len(), 1, "the first start makes one key");
    let old_token = token(&server, &client_id, &secret).await;
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
    let fresh = token(&server, &client_id, &secret).await;
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
