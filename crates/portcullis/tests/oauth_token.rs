//! The token, introspection and revocation endpoints end to end: the real
//! binary, clients made by the CLI, and every error checked for its
//! RFC 6749 error code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "assertions carry wall-clock times, and the expiry test waits in real time"
)]

mod support;

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use support::{DataDir, Server};

/// The audience of the `/orders` route, and the default `resource` below.
const ORDERS: &str = "https://orders.example.test";
/// The audience of the `/billing` route.
const BILLING: &str = "https://billing.example.test";

/// The one redirect URI of the code-flow client.
const CALLBACK: &str = "https://app.example.com/callback";
const USER_EMAIL: &str = "ops@example.com";
const USER_PASSWORD: &str = "correct horse battery staple";
/// A PKCE verifier and its S256 challenge, BASE64URL(SHA-256(verifier))
/// (RFC 7636 §4.2), worked out with Python's hashlib.
const VERIFIER: &str = "interop-test-verifier-0123456789-abcdefghijklmnop";
const CHALLENGE: &str = "v4EhhD64DCTbTOO6R2frx1ca_8-kzr5O2OS86PKeg8A";

/// The assertion type of RFC 7523 §2.2, form-encoded.
const JWT_BEARER: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

/// A P-256 key made for these tests only. Its public half is registered as
/// the JWKS of the `private_key_jwt` client.
const REGISTERED_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOYQABvJhFWPIiM4F
qz+deyhaP0sREwTbmO4y+yaD+SKhRANCAAQkSF+KzNejEuNcm9HJJVTFhF4NWPSB
wisMee69Rw+EEf0AsA20Pw3nnQYGD44pp4GbfuIm6Bn0ZuMk1ZNzCurK
-----END PRIVATE KEY-----
";
const REGISTERED_KEY_X: &str = "JEhfiszXoxLjXJvRySVUxYReDVj0gcIrDHnuvUcPhBE";
const REGISTERED_KEY_Y: &str = "_QCwDbQ_DeedBgYPjimngZt-4iboGfRm4yTVk3MK6so";
const REGISTERED_KID: &str = "interop-test-key-1";

/// Another P-256 key made for these tests, registered nowhere.
const UNREGISTERED_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJRCODOC/sAp2XMBP
DfIIT/lIwyLDCkj0hVmsZNa4bsChRANCAASI+bctYDmb69MZDQQGxzjljcrTJD/r
jQCR3nlen1M/GVV5D6bp/NUbtdjG+7uCtHbgiI4GxIgnRcf6zulHNjFC
-----END PRIVATE KEY-----
";

/// A client's id and, for confidential clients, its secret.
struct Client {
    id: String,
    secret: String,
}

impl Client {
    fn basic(&self) -> String {
        basic(&self.id, &self.secret)
    }
}

struct Fixture {
    data: DataDir,
    server: Server,
    /// acme, `client_secret_basic`, `orders:read`.
    a: Client,
    /// acme, `client_secret_basic`, `orders:read orders:write`.
    b: Client,
    /// acme, `client_secret_post`, `orders:read`.
    post: Client,
    /// acme, `private_key_jwt` with [`REGISTERED_KEY_PEM`], `orders:read`.
    jwt: Client,
    /// acme, `client_secret_basic`, `orders:read`, one-minute tokens.
    short: Client,
    /// acme, revoked after it was created.
    revoked: Client,
    /// acme, `client_secret_basic`, authorization code and refresh token
    /// grants on [`CALLBACK`], `orders:read orders:write`, one-minute tokens.
    web: Client,
    /// Operator key with `tokens:introspect`.
    operator: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let data = DataDir::new();
    // Nothing is forwarded in these tests, so the upstream is never dialed.
    // The smallest leeway lets the expiry test wait little past the token's
    // lifetime.
    data.write_config(&format!(
        r#"
[oauth]
leeway = "1s"

# The tests fail many client authentications from 127.0.0.1 on purpose, so
# brute-force protection is set high enough never to slow or block them.
[limits.brute_force.client_ip]
slow_after = 10000
block_after = 10000

[limits.brute_force.identity]
slow_after = 10000
block_after = 10000

[[routes]]
path_prefix = "/orders"
upstream = "http://127.0.0.1:9"
auth = ["api_key", "jwt"]
audience = "{ORDERS}"
[routes.scopes]
GET = ["orders:read"]

[[routes]]
path_prefix = "/billing"
upstream = "http://127.0.0.1:9"
auth = ["jwt"]
audience = "{BILLING}"
[routes.scopes]
GET = ["orders:read"]
"#
    ));
    data.cli(&["tenants", "create", "acme"]);
    let a = create_client(&data, &["--scopes", "orders:read"]);
    let b = create_client(&data, &["--scopes", "orders:read,orders:write"]);
    let post = create_client(
        &data,
        &[
            "--scopes",
            "orders:read",
            "--auth-method",
            "client_secret_post",
        ],
    );
    let jwks_path = data.path().join("client-jwks.json");
    let jwks = json!({"keys": [{
        "kty": "EC",
        "crv": "P-256",
        "kid": REGISTERED_KID,
        "use": "sig",
        "alg": "ES256",
        "x": REGISTERED_KEY_X,
        "y": REGISTERED_KEY_Y,
    }]});
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let jwt = create_client(
        &data,
        &[
            "--scopes",
            "orders:read",
            "--auth-method",
            "private_key_jwt",
            "--jwks",
            jwks_path.to_str().unwrap(),
        ],
    );
    let short = create_client(
        &data,
        &["--scopes", "orders:read", "--access-token-ttl", "1m"],
    );
    let revoked = create_client(&data, &["--scopes", "orders:read"]);
    data.cli(&["clients", "revoke", &revoked.id]);
    let web = create_client(
        &data,
        &[
            "--grant-types",
            "authorization_code,refresh_token",
            "--scopes",
            "orders:read,orders:write",
            "--redirect-uri",
            CALLBACK,
            "--access-token-ttl",
            "1m",
        ],
    );
    create_user(&data, USER_EMAIL);
    let (_, operator) = data.create_key(&["--operator", "--scopes", "tokens:introspect"]);
    // Debug events of the server crate carry the client ids that were sent,
    // which the log-injection test needs to see in the log.
    let server = Server::start_with(&data, &[("PORTCULLIS_LOG", "info,portcullis_server=debug")]);
    Fixture {
        data,
        server,
        a,
        b,
        post,
        jwt,
        short,
        revoked,
        web,
        operator,
    }
});

/// Registers a client of acme with `extra` arguments, by default for the
/// `client_credentials` grant.
fn create_client(data: &DataDir, extra: &[&str]) -> Client {
    let mut args = vec![
        "clients", "create", "--tenant", "acme", "--name", "Test app",
    ];
    if !extra.contains(&"--grant-types") {
        args.extend_from_slice(&["--grant-types", "client_credentials"]);
    }
    args.extend_from_slice(extra);
    let created = data.cli_json(&args);
    Client {
        id: created["client_id"].as_str().unwrap().to_owned(),
        secret: created["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Creates a user of acme with [`USER_PASSWORD`].
fn create_user(data: &DataDir, email: &str) {
    let output = data
        .command()
        .args(["users", "create", "--tenant", "acme", "--email", email])
        .env("PORTCULLIS_USER_PASSWORD", USER_PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "users create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Status, headers and JSON body of one response (`Null` for no JSON).
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// Asserts an RFC 6749 §5.2 error response.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["error"], code, "{self:?}");
        assert!(self.body.get("access_token").is_none(), "{self:?}");
    }

    /// Asserts a 401 `invalid_client` with a Basic challenge.
    #[track_caller]
    fn assert_basic_challenge(&self) {
        self.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
        let challenge = self
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge.to_ascii_lowercase().starts_with("basic"),
            "{self:?}"
        );
    }

    fn access_token(&self) -> &str {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        self.body["access_token"].as_str().unwrap()
    }
}

/// Sends a form body to `path`, with an `Authorization` header when given.
async fn post(path: &str, authorization: Option<&str>, body: &str) -> Reply {
    let server = &FIXTURE.server;
    let mut request = server
        .client()
        .post(server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn token(authorization: Option<&str>, body: &str) -> Reply {
    post("/oauth/token", authorization, body).await
}

/// Sends a `client_credentials` request for [`ORDERS`], authenticating
/// `client` with HTTP Basic.
async fn basic_token(client: &Client) -> Reply {
    let body = format!("grant_type=client_credentials&resource={}", encode(ORDERS));
    token(Some(&client.basic()), &body).await
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// Decodes a JWT segment (0 header, 1 payload) without checking anything.
fn jwt_part(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Builds the claims RFC 7523 §3 requires of a client assertion, for
/// `audience`.
fn assertion_claims(client_id: &str, audience: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 60,
        "jti": uuid::Uuid::now_v7().to_string(),
    })
}

/// Signs `claims` with ES256 and a PKCS#8 PEM key, under [`REGISTERED_KID`].
fn sign_assertion(claims: &Value, key_pem: &str) -> String {
    sign_assertion_with_kid(claims, key_pem, Some(REGISTERED_KID))
}

/// Signs `claims` like [`sign_assertion`], with `kid` in the header or none.
fn sign_assertion_with_kid(claims: &Value, key_pem: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(ToOwned::to_owned);
    let base64_body: String = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let key = EncodingKey::from_ec_der(&STANDARD.decode(base64_body).unwrap());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Builds a `client_credentials` request body authenticated by `assertion`.
fn assertion_body(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&resource={}&client_assertion_type={JWT_BEARER}&client_assertion={assertion}",
        encode(ORDERS)
    )
}

fn token_endpoint() -> String {
    FIXTURE.server.url("/oauth/token")
}

/// Replaces one character of a UUID with a Cyrillic look-alike, trying the
/// letters `a`, `c`, `e`, `d`, `b` and then the digits `0` and `3`.
fn look_alike(id: &str) -> String {
    let swaps = [
        ('a', '\u{430}'),
        ('c', '\u{441}'),
        ('e', '\u{435}'),
        ('d', '\u{501}'),
        ('b', '\u{44c}'),
        ('0', '\u{41e}'),
        ('3', '\u{417}'),
    ];
    for (latin, cyrillic) in swaps {
        if let Some(position) = id.find(latin) {
            let mut changed = id.to_owned();
            changed.replace_range(position..=position, &cyrillic.to_string());
            return changed;
        }
    }
    panic!("no letter to swap in {id}");
}

#[tokio::test]
async fn client_credentials_issues_tokens() {
    let fixture = &*FIXTURE;
    let by_basic = basic_token(&fixture.a).await;
    let access_token = by_basic.access_token();
    assert_eq!(by_basic.body["token_type"], "Bearer");
    assert_eq!(by_basic.body["scope"], "orders:read");
    assert!(by_basic.body.get("refresh_token").is_none());
    assert_eq!(
        by_basic.headers.get("cache-control").unwrap(),
        "no-store",
        "RFC 6749 §5.1"
    );

    let header = jwt_part(access_token, 0);
    assert_eq!(header["typ"], "at+jwt");
    let claims = jwt_part(access_token, 1);
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["client_id"], fixture.a.id.as_str());
    assert_eq!(claims["sub"], fixture.a.id.as_str());
    assert_eq!(claims["iss"], fixture.server.url(""));

    let body = format!(
        "grant_type=client_credentials&resource={}&client_id={}&client_secret={}",
        encode(ORDERS),
        fixture.post.id,
        encode(&fixture.post.secret)
    );
    token(None, &body).await.access_token();
}

#[tokio::test]
async fn wrong_secret_is_invalid_client() {
    let fixture = &*FIXTURE;
    let wrong = Client {
        id: fixture.a.id.clone(),
        secret: format!("{}x", fixture.a.secret),
    };
    basic_token(&wrong).await.assert_basic_challenge();

    let body = format!(
        "grant_type=client_credentials&resource={}&client_id={}&client_secret=wrong",
        encode(ORDERS),
        fixture.post.id
    );
    let by_post = token(None, &body).await;
    by_post.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(by_post.headers.get(WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn unknown_client_is_invalid_client() {
    let unknown = Client {
        id: uuid::Uuid::now_v7().to_string(),
        secret: FIXTURE.a.secret.clone(),
    };
    basic_token(&unknown).await.assert_basic_challenge();

    let garbage = Client {
        id: "no-such-client".to_owned(),
        secret: "anything".to_owned(),
    };
    basic_token(&garbage).await.assert_basic_challenge();
}

#[tokio::test]
async fn look_alike_client_id_is_invalid_client() {
    let fixture = &*FIXTURE;
    let spoofed = Client {
        id: look_alike(&fixture.a.id),
        secret: fixture.a.secret.clone(),
    };
    assert_ne!(spoofed.id, fixture.a.id);
    basic_token(&spoofed).await.assert_basic_challenge();

    let body = format!(
        "grant_type=client_credentials&resource={}&client_id={}&client_secret={}",
        encode(ORDERS),
        encode(&look_alike(&fixture.post.id)),
        encode(&fixture.post.secret)
    );
    token(None, &body)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn ambiguous_requests_are_invalid_request() {
    let fixture = &*FIXTURE;
    let (a, b) = (&fixture.a, &fixture.b);
    let resource = format!("resource={}", encode(ORDERS));
    let cases = [
        (
            "a: grant_type twice",
            Some(a.basic()),
            format!(
                "grant_type=client_credentials&scope=orders%3Aread&grant_type=authorization_code&{resource}"
            ),
        ),
        (
            "b: client_id twice",
            None,
            format!(
                "grant_type=client_credentials&client_id={}&client_id={}&client_secret={}&{resource}",
                a.id,
                b.id,
                encode(&a.secret)
            ),
        ),
        (
            "c: Basic and another client in the body",
            Some(a.basic()),
            format!(
                "grant_type=client_credentials&client_id={}&client_secret={}&{resource}",
                b.id,
                encode(&b.secret)
            ),
        ),
        (
            "d: Basic and the same client in the body",
            Some(a.basic()),
            format!(
                "grant_type=client_credentials&client_id={}&client_secret={}&{resource}",
                a.id,
                encode(&a.secret)
            ),
        ),
        (
            "e: scope twice",
            Some(b.basic()),
            format!(
                "grant_type=client_credentials&scope=orders%3Aread&scope=orders%3Awrite&{resource}"
            ),
        ),
        (
            "client_secret and client_assertion together",
            None,
            format!(
                "grant_type=client_credentials&client_id={}&client_secret={}&client_assertion_type={JWT_BEARER}&client_assertion=a.b.c&{resource}",
                a.id,
                encode(&a.secret)
            ),
        ),
    ];
    for (case, authorization, body) in cases {
        let reply = token(authorization.as_deref(), &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{case}: {reply:?}");
        assert_eq!(reply.body["error"], "invalid_request", "{case}: {reply:?}");
        assert!(reply.body.get("access_token").is_none(), "{case}");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request() {
    let fixture = &*FIXTURE;
    let server = &fixture.server;
    let response = server
        .client()
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", fixture.a.basic())
        .header("authorization", fixture.b.basic())
        .body(format!(
            "grant_type=client_credentials&resource={}",
            encode(ORDERS)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn basic_parts_are_form_decoded() {
    let fixture = &*FIXTURE;
    // RFC 6749 §2.3.1: id and secret are form-encoded before base64, so a
    // secret with every character percent-encoded is the same secret.
    let every_byte_encoded: String = fixture
        .a
        .secret
        .bytes()
        .map(|byte| format!("%{byte:02X}"))
        .collect();
    let encoded = Client {
        id: fixture.a.id.clone(),
        secret: every_byte_encoded,
    };
    basic_token(&encoded).await.access_token();
}

#[tokio::test]
async fn basic_split_at_first_colon() {
    let fixture = &*FIXTURE;
    // The secret is `<secret>:extra`, which is wrong.
    let extra = Client {
        id: fixture.a.id.clone(),
        secret: format!("{}:extra", fixture.a.secret),
    };
    basic_token(&extra).await.assert_basic_challenge();
}

#[tokio::test]
async fn private_key_jwt_valid_assertion_accepted_once() {
    let fixture = &*FIXTURE;
    let claims = assertion_claims(&fixture.jwt.id, &token_endpoint());
    let assertion = sign_assertion(&claims, REGISTERED_KEY_PEM);
    let body = assertion_body(&assertion);

    let first = token(None, &body).await;
    let access_token = first.access_token();
    assert_eq!(
        jwt_part(access_token, 1)["client_id"],
        fixture.jwt.id.as_str()
    );

    // RFC 7523 §3: the same jti must not be accepted twice.
    token(None, &body)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn private_key_jwt_client_with_secret_rejected() {
    let fixture = &*FIXTURE;
    let guessed = Client {
        id: fixture.jwt.id.clone(),
        secret: "anything".to_owned(),
    };
    basic_token(&guessed).await.assert_basic_challenge();

    // A well-formed secret of another client does not work either.
    let borrowed = Client {
        id: fixture.jwt.id.clone(),
        secret: fixture.a.secret.clone(),
    };
    basic_token(&borrowed).await.assert_basic_challenge();
}

#[tokio::test]
async fn private_key_jwt_unsigned_assertion_rejected() {
    let fixture = &*FIXTURE;
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let claims = assertion_claims(&fixture.jwt.id, &token_endpoint());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    for assertion in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let body = format!(
            "{}&client_id={}",
            assertion_body(&assertion),
            fixture.jwt.id
        );
        token(None, &body)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
}

#[tokio::test]
async fn private_key_jwt_wrong_audience_rejected() {
    let fixture = &*FIXTURE;
    let claims = assertion_claims(&fixture.jwt.id, "https://other.example.test/oauth/token");
    let assertion = sign_assertion(&claims, REGISTERED_KEY_PEM);
    token(None, &assertion_body(&assertion))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn private_key_jwt_unregistered_key_rejected() {
    let fixture = &*FIXTURE;
    let claims = assertion_claims(&fixture.jwt.id, &token_endpoint());
    // Signed by another key under the registered kid.
    let assertion = sign_assertion(&claims, UNREGISTERED_KEY_PEM);
    token(None, &assertion_body(&assertion))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

/// Returns the public JWK, without `kid`, of a P-256 PKCS#8 PEM key.
fn public_jwk_without_kid(key_pem: &str) -> Value {
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
    let point = key.public_key_raw();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    })
}

#[tokio::test]
async fn private_key_jwt_keys_without_kid() {
    let fixture = &*FIXTURE;
    let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let jwks_path = fixture.data.path().join("client-jwks-no-kid.json");
    let jwks = json!({"keys": [
        public_jwk_without_kid(&other_key),
        public_jwk_without_kid(REGISTERED_KEY_PEM),
    ]});
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let client = create_client(
        &fixture.data,
        &[
            "--scopes",
            "orders:read",
            "--auth-method",
            "private_key_jwt",
            "--jwks",
            jwks_path.to_str().unwrap(),
        ],
    );

    // Without a header kid every key is tried, and with one the keys that
    // have no kid are.
    for kid in [None, Some("any-kid")] {
        let claims = assertion_claims(&client.id, &token_endpoint());
        let assertion = sign_assertion_with_kid(&claims, REGISTERED_KEY_PEM, kid);
        let reply = token(None, &assertion_body(&assertion)).await;
        let access_token = reply.access_token();
        assert_eq!(
            jwt_part(access_token, 1)["client_id"],
            client.id.as_str(),
            "{kid:?}"
        );
    }

    // A key that is not in the set still fails, with or without a kid.
    for kid in [None, Some("any-kid")] {
        let claims = assertion_claims(&client.id, &token_endpoint());
        let assertion = sign_assertion_with_kid(&claims, UNREGISTERED_KEY_PEM, kid);
        token(None, &assertion_body(&assertion))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
}

#[tokio::test]
async fn private_key_jwt_kid_selects_key() {
    let fixture = &*FIXTURE;
    // The registered key has a kid, so a header naming another kid finds
    // no key, while a header without kid tries the registered key.
    let claims = assertion_claims(&fixture.jwt.id, &token_endpoint());
    let assertion = sign_assertion_with_kid(&claims, REGISTERED_KEY_PEM, Some("other-kid"));
    token(None, &assertion_body(&assertion))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let claims = assertion_claims(&fixture.jwt.id, &token_endpoint());
    let assertion = sign_assertion_with_kid(&claims, REGISTERED_KEY_PEM, None);
    let reply = token(None, &assertion_body(&assertion)).await;
    assert_eq!(
        jwt_part(reply.access_token(), 1)["client_id"],
        fixture.jwt.id.as_str()
    );
}

#[tokio::test]
async fn private_key_jwt_other_client_subject_rejected() {
    let fixture = &*FIXTURE;
    // A valid signature by J's key, but claiming to be client A.
    let claims = assertion_claims(&fixture.a.id, &token_endpoint());
    let assertion = sign_assertion(&claims, REGISTERED_KEY_PEM);
    token(None, &assertion_body(&assertion))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn scope_beyond_client_is_invalid_scope() {
    let fixture = &*FIXTURE;
    let body = format!(
        "grant_type=client_credentials&scope=orders%3Aread+orders%3Awrite&resource={}",
        encode(ORDERS)
    );
    token(Some(&fixture.a.basic()), &body)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_scope");

    // A narrower scope than allowed is granted as asked.
    let narrower = format!(
        "grant_type=client_credentials&scope=orders%3Aread&resource={}",
        encode(ORDERS)
    );
    let reply = token(Some(&fixture.b.basic()), &narrower).await;
    reply.access_token();
    assert_eq!(reply.body["scope"], "orders:read");
}

#[tokio::test]
async fn revoked_client_is_invalid_client() {
    basic_token(&FIXTURE.revoked).await.assert_basic_challenge();
}

#[tokio::test]
async fn resource_sets_audience() {
    let fixture = &*FIXTURE;
    let body = format!("grant_type=client_credentials&resource={}", encode(BILLING));
    let reply = token(Some(&fixture.a.basic()), &body).await;
    assert_eq!(jwt_part(reply.access_token(), 1)["aud"], BILLING);
}

#[tokio::test]
async fn unknown_or_missing_resource_is_invalid_target() {
    let fixture = &*FIXTURE;
    let unknown = format!(
        "grant_type=client_credentials&resource={}",
        encode("https://elsewhere.example.test")
    );
    token(Some(&fixture.a.basic()), &unknown)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_target");

    // Two routes take tokens, so a request must name one of them.
    token(Some(&fixture.a.basic()), "grant_type=client_credentials")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_target");
}

/// Returns whether `GET /orders/1` with `access_token` gets past the
/// gateway's authentication. The route's upstream is closed, so a request
/// that passes gets a 5xx and one that fails gets 401.
async fn gateway_accepts(access_token: &str) -> bool {
    let server = &FIXTURE.server;
    let response = server
        .client()
        .get(server.url("/orders/1"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(
        status == StatusCode::UNAUTHORIZED || status.is_server_error(),
        "unexpected gateway status {status}"
    );
    status != StatusCode::UNAUTHORIZED
}

async fn introspect(authorization: Option<&str>, body: &str) -> Reply {
    post("/oauth/introspect", authorization, body).await
}

/// Asserts RFC 7662 §2.2's response for an inactive token, with no other
/// member.
#[track_caller]
fn assert_inactive(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, json!({"active": false}), "{reply:?}");
}

#[tokio::test]
async fn introspection_of_fresh_token_is_active() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.a).await;
    let access_token = issued.access_token();
    let operator = format!("Bearer {}", fixture.operator);
    let requests = [
        (Some(fixture.a.basic()), format!("token={access_token}")),
        (Some(operator.clone()), format!("token={access_token}")),
        // RFC 7662 §2.1: a wrong hint does not change the response.
        (
            Some(fixture.a.basic()),
            format!("token={access_token}&token_type_hint=refresh_token"),
        ),
    ];
    for (authorization, body) in requests {
        let reply = introspect(authorization.as_deref(), &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let answer = &reply.body;
        assert_eq!(answer["active"], true, "{body}: {answer}");
        assert_eq!(answer["scope"], "orders:read");
        assert_eq!(answer["client_id"], fixture.a.id.as_str());
        assert_eq!(answer["sub"], fixture.a.id.as_str());
        assert_eq!(answer["iss"], fixture.server.url(""));
        assert_eq!(answer["aud"], ORDERS);
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["tenant"], "acme");
        assert!(answer["exp"].is_u64(), "{answer}");
        assert!(answer["iat"].is_u64(), "{answer}");
    }
    assert!(
        gateway_accepts(access_token).await,
        "introspection and the gateway disagree"
    );
}

#[tokio::test]
async fn introspection_of_garbage_is_inactive() {
    let fixture = &*FIXTURE;
    for token in ["garbage", "a.b.c", "pc_rt_garbage"] {
        let reply = introspect(Some(&fixture.a.basic()), &format!("token={token}")).await;
        assert_inactive(&reply);
    }
}

#[tokio::test]
async fn introspection_of_other_clients_token_is_inactive() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.a).await;
    let body = format!("token={}", issued.access_token());
    assert_inactive(&introspect(Some(&fixture.b.basic()), &body).await);
}

#[tokio::test]
async fn introspection_without_authentication_is_401() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.a).await;
    let reply = introspect(None, &format!("token={}", issued.access_token())).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_ne!(reply.body["active"], true, "{reply:?}");

    // An operator key without `tokens:introspect` is no better.
    let (_, other) = fixture
        .data
        .create_key(&["--operator", "--scopes", "keys:verify"]);
    let reply = introspect(
        Some(&format!("Bearer {other}")),
        &format!("token={}", issued.access_token()),
    )
    .await;
    assert!(
        matches!(
            reply.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ),
        "{reply:?}"
    );
    assert_ne!(reply.body["active"], true, "{reply:?}");
}

#[tokio::test]
async fn revoked_access_token_is_inactive() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.a).await;
    let body = format!("token={}", issued.access_token());
    let before = introspect(Some(&fixture.a.basic()), &body).await;
    assert_eq!(before.body["active"], true, "{before:?}");

    let revoked = post("/oauth/revoke", Some(&fixture.a.basic()), &body).await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");

    assert_inactive(&introspect(Some(&fixture.a.basic()), &body).await);
    let operator = format!("Bearer {}", fixture.operator);
    assert_inactive(&introspect(Some(&operator), &body).await);
    assert!(
        !gateway_accepts(issued.access_token()).await,
        "the gateway accepts a revoked token"
    );
}

#[tokio::test]
async fn revocation_by_other_client_changes_nothing() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.a).await;
    let body = format!("token={}", issued.access_token());
    // RFC 7009 §2.2: the status is 200 either way, and the token stays.
    let revoked = post("/oauth/revoke", Some(&fixture.b.basic()), &body).await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    let after = introspect(Some(&fixture.a.basic()), &body).await;
    assert_eq!(after.body["active"], true, "{after:?}");
}

#[tokio::test]
async fn revocation_requires_client_authentication() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.a).await;
    let body = format!("token={}", issued.access_token());
    let reply = post("/oauth/revoke", None, &body).await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let wrong = basic(&fixture.a.id, "wrong");
    post("/oauth/revoke", Some(&wrong), &body)
        .await
        .assert_basic_challenge();
}

#[tokio::test]
async fn expired_access_token_is_inactive() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.short).await;
    let access_token = issued.access_token().to_owned();
    let claims = jwt_part(&access_token, 1);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 60, "{claims}");
    let body = format!("token={access_token}");
    let before = introspect(Some(&fixture.short.basic()), &body).await;
    assert_eq!(before.body["active"], true, "{before:?}");

    // The server's leeway is one second, so the token is dead two seconds
    // after its `exp`.
    let wait = claims["exp"].as_u64().unwrap() + 3 - unix_now();
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_inactive(&introspect(Some(&fixture.short.basic()), &body).await);
    assert!(
        !gateway_accepts(&access_token).await,
        "the gateway accepts an expired token"
    );
}

#[tokio::test]
async fn introspection_and_revocation_reject_ambiguity() {
    let fixture = &*FIXTURE;
    let issued = basic_token(&fixture.a).await;
    let access_token = issued.access_token();
    let a = &fixture.a;
    let cases = [
        (
            "/oauth/introspect",
            Some(a.basic()),
            format!("token={access_token}&token={access_token}"),
        ),
        (
            "/oauth/introspect",
            Some(a.basic()),
            format!(
                "token={access_token}&client_id={}&client_secret={}",
                a.id,
                encode(&a.secret)
            ),
        ),
        (
            "/oauth/revoke",
            Some(a.basic()),
            format!("token={access_token}&token=other"),
        ),
        (
            "/oauth/revoke",
            Some(a.basic()),
            format!(
                "token={access_token}&client_id={}&client_secret={}",
                a.id,
                encode(&a.secret)
            ),
        ),
    ];
    for (path, authorization, body) in cases {
        let reply = post(path, authorization.as_deref(), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {reply:?}"
        );
        assert_eq!(reply.body["error"], "invalid_request", "{path}: {reply:?}");
    }

    // None of the rejected revocations took effect.
    let after = introspect(Some(&a.basic()), &format!("token={access_token}")).await;
    assert_eq!(after.body["active"], true, "{after:?}");
}

#[tokio::test]
async fn client_id_line_breaks_stay_escaped() {
    let fixture = &*FIXTURE;
    let forged = "svc%0D%0A2026-12-04T00%3A00%3A00Z%20INFO%20token%20issued%20client_id%3Dadmin";
    let client_ids = [
        forged.to_owned(),
        format!("{}%E2%80%A8forged", fixture.a.id),
        format!("{}%C2%85forged", fixture.a.id),
        format!("{}%E2%80%AEforged", fixture.a.id),
        "svc%E2%80%A9%1B%5B2Jforged".to_owned(),
    ];
    for client_id in &client_ids {
        let body = format!(
            "grant_type=client_credentials&client_secret=x&client_id={client_id}&resource={}",
            encode(ORDERS)
        );
        token(None, &body)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    let logs = fixture.server.logs.lock().unwrap().clone();
    // The client ids reach the log (escaped) through the debug event of the
    // failed authentication, so the checks below see them.
    assert!(
        logs.iter().any(|line| line.contains("forged")),
        "no log line names the sent client ids"
    );
    for line in &logs {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("log line is not JSON ({error}): {line:?}"));
        assert!(parsed.is_object(), "{line:?}");
        for raw in [
            '\r', '\n', '\u{2028}', '\u{2029}', '\u{85}', '\u{202e}', '\u{1b}',
        ] {
            assert!(
                !line.contains(raw),
                "log line holds a raw {:?}: {line:?}",
                raw.escape_unicode().to_string()
            );
        }
        assert!(
            !line.starts_with("2026-12-04T00:00:00Z"),
            "forged log line: {line:?}"
        );
    }
}

// -----------------------------------------------------------------------
// Authorization code and refresh token grants. A code comes from driving
// the sign-in and consent forms over HTTP, as a browser would.

/// A client that keeps cookies and does not follow redirects.
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        let server = &FIXTURE.server;
        let ca = reqwest::Certificate::from_pem(&server.ca_pem).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", server.address)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            cookies: BTreeMap::new(),
        }
    }

    /// Sends a GET of `target`, an absolute URL or a path on the server.
    async fn get(&mut self, target: &str) -> (StatusCode, HeaderMap, String) {
        let url = if target.starts_with('/') {
            FIXTURE.server.url(target)
        } else {
            target.to_owned()
        };
        let request = self.http.get(url);
        self.send(request).await
    }

    /// Posts form fields to `/oauth/authorize` with the server's own
    /// `Origin`, as a browser submitting its forms does.
    async fn submit(&mut self, fields: &[(String, String)]) -> (StatusCode, HeaderMap, String) {
        let mut encoded = Url::parse("https://form.invalid/").unwrap();
        encoded.query_pairs_mut().extend_pairs(fields);
        let request = self
            .http
            .post(FIXTURE.server.url("/oauth/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", FIXTURE.server.url(""))
            .body(encoded.query().unwrap_or_default().to_owned());
        self.send(request).await
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, String) {
        let cookie_header = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = request
            .header("cookie", cookie_header)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for set_cookie in headers.get_all(SET_COOKIE) {
            let text = set_cookie.to_str().unwrap();
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        (status, headers, response.text().await.unwrap())
    }
}

/// Reads the hidden inputs of an HTML page as (name, value) pairs.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut inputs = Vec::new();
    for tag in html.split("<input").skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        if attribute(tag, "type").as_deref() != Some("hidden") {
            continue;
        }
        if let (Some(name), Some(value)) = (attribute(tag, "name"), attribute(tag, "value")) {
            inputs.push((name, value));
        }
    }
    inputs
}

/// Reads a double-quoted attribute from the inside of a tag and decodes its
/// HTML character references.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let rest = tag.get(start..)?;
    let value = rest.get(..rest.find('"')?)?;
    Some(decode_html(value))
}

/// Decodes `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;` and numeric character
/// references, the forms an HTML template engine writes.
fn decode_html(text: &str) -> String {
    let mut decoded = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        decoded.push_str(&rest[..start]);
        let Some(end) = rest[start..].find(';') else {
            break;
        };
        let entity = &rest[start + 1..start + end];
        let character = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match character {
            Some(character) => decoded.push(character),
            None => decoded.push_str(&rest[start..=start + end]),
        }
        rest = &rest[start + end + 1..];
    }
    decoded.push_str(rest);
    decoded
}

fn query_of(location: &str) -> BTreeMap<String, String> {
    Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Signs the user in and approves `scope` for the code-flow client (or
/// finds the consent remembered), and returns the authorization code.
async fn authorization_code(scope: &str) -> String {
    let mut authorize = Url::parse(&FIXTURE.server.url("/oauth/authorize")).unwrap();
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", FIXTURE.web.id.as_str()),
        ("redirect_uri", CALLBACK),
        ("scope", scope),
        ("state", "state-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", ORDERS),
    ]);
    let mut browser = Browser::new();

    let (status, _, sign_in_page) = browser.get(authorize.as_str()).await;
    assert_eq!(status, StatusCode::OK, "{sign_in_page}");
    let mut fields = hidden_inputs(&sign_in_page);
    fields.push(("email".to_owned(), USER_EMAIL.to_owned()));
    fields.push(("password".to_owned(), USER_PASSWORD.to_owned()));
    let (status, headers, body) = browser.submit(&fields).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "sign-in failed: {body}");

    let (status, headers, consent_page) = match browser.get(&location(&headers)).await {
        (StatusCode::OK, _, page) => {
            let mut fields = hidden_inputs(&page);
            fields.retain(|(name, _)| name != "action");
            fields.push(("action".to_owned(), "approve".to_owned()));
            browser.submit(&fields).await
        }
        // Consent given by an earlier test is remembered.
        remembered => remembered,
    };
    assert!(status.is_redirection(), "{status}: {consent_page}");
    let redirect = location(&headers);
    assert!(redirect.starts_with(&format!("{CALLBACK}?")), "{redirect}");
    let query = query_of(&redirect);
    assert_eq!(query.get("state").map(String::as_str), Some("state-1"));
    query["code"].clone()
}

/// Exchanges `code` with `verifier`, authenticating the code-flow client.
async fn exchange(code: &str, verifier: &str) -> Reply {
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={}",
        encode(code),
        encode(CALLBACK),
        encode(verifier)
    );
    token(Some(&FIXTURE.web.basic()), &body).await
}

/// Redeems `refresh_token`, optionally for a narrower or wider `scope`.
async fn refresh(refresh_token: &str, scope: Option<&str>) -> Reply {
    let mut body = format!(
        "grant_type=refresh_token&refresh_token={}",
        encode(refresh_token)
    );
    if let Some(scope) = scope {
        body.push_str(&format!("&scope={}", encode(scope)));
    }
    token(Some(&FIXTURE.web.basic()), &body).await
}

/// The tokens of a successful code or refresh response.
struct Tokens {
    access: String,
    refresh: String,
}

#[track_caller]
fn tokens_of(reply: &Reply) -> Tokens {
    let access = reply.access_token().to_owned();
    let refresh = reply.body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {reply:?}"))
        .to_owned();
    Tokens { access, refresh }
}

/// Introspects `token` as the code-flow client.
async fn web_introspect(token: &str) -> Reply {
    introspect(
        Some(&FIXTURE.web.basic()),
        &format!("token={}", encode(token)),
    )
    .await
}

/// Waits up to two seconds for `token` to introspect as inactive, since
/// revocations reach the deny list through the change feed within a second.
async fn assert_becomes_inactive(token: &str, what: &str) {
    let mut last = None;
    for _ in 0..20 {
        let reply = web_introspect(token).await;
        if reply.status == StatusCode::OK && reply.body == json!({"active": false}) {
            return;
        }
        last = Some(reply);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} is still active after 2 s: {last:?}");
}

#[tokio::test]
async fn code_exchange_issues_user_tokens() {
    let code = authorization_code("orders:read").await;
    let reply = exchange(&code, VERIFIER).await;
    let tokens = tokens_of(&reply);
    assert_eq!(reply.body["scope"], "orders:read");

    let claims = jwt_part(&tokens.access, 1);
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["client_id"], FIXTURE.web.id.as_str());
    assert_ne!(claims["sub"], FIXTURE.web.id.as_str(), "sub is the user");

    let refresh_answer = web_introspect(&tokens.refresh).await;
    assert_eq!(refresh_answer.body["active"], true, "{refresh_answer:?}");
    assert_eq!(refresh_answer.body["sub"], claims["sub"]);
    assert_eq!(refresh_answer.body["client_id"], FIXTURE.web.id.as_str());
}

#[tokio::test]
async fn pkce_verifier_mismatch_is_invalid_grant() {
    let code = authorization_code("orders:read").await;
    let wrong = format!("{VERIFIER}x");
    exchange(&code, &wrong)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // The failed attempt spent the code, so the right verifier is too late.
    exchange(&code, VERIFIER)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn missing_pkce_verifier_rejected() {
    let code = authorization_code("orders:read").await;
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}",
        encode(&code),
        encode(CALLBACK)
    );
    let reply = token(Some(&FIXTURE.web.basic()), &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(
        ["invalid_request", "invalid_grant"].contains(&reply.body["error"].as_str().unwrap_or("")),
        "{reply:?}"
    );
    assert!(reply.body.get("access_token").is_none());
}

#[tokio::test]
async fn code_redirect_uri_mismatch_is_invalid_grant() {
    let code = authorization_code("orders:read").await;
    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        encode(&code),
        encode("https://app.example.com/callback/other")
    );
    token(Some(&FIXTURE.web.basic()), &body)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn code_exchange_needs_client_secret() {
    let code = authorization_code("orders:read").await;
    let web = &FIXTURE.web;
    let without_secret = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}&client_id={}",
        encode(&code),
        encode(CALLBACK),
        web.id
    );
    token(None, &without_secret)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");

    let body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        encode(&code),
        encode(CALLBACK)
    );
    let wrong = basic(&web.id, "wrong-secret");
    token(Some(&wrong), &body).await.assert_basic_challenge();

    // Client authentication comes first, so the code is still unspent.
    tokens_of(&exchange(&code, VERIFIER).await);
}

#[tokio::test]
async fn code_reuse_revokes_first_tokens() {
    let code = authorization_code("orders:read").await;
    let first = tokens_of(&exchange(&code, VERIFIER).await);
    let before = web_introspect(&first.access).await;
    assert_eq!(before.body["active"], true, "{before:?}");

    exchange(&code, VERIFIER)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");

    assert_becomes_inactive(&first.access, "the first access token").await;
    assert_becomes_inactive(&first.refresh, "the first refresh token").await;
    refresh(&first.refresh, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_family() {
    let code = authorization_code("orders:read").await;
    let first = tokens_of(&exchange(&code, VERIFIER).await);

    let second = tokens_of(&refresh(&first.refresh, None).await);
    assert_ne!(second.refresh, first.refresh, "refresh tokens rotate");
    assert_becomes_inactive(&first.refresh, "the used refresh token").await;
    let live = web_introspect(&second.refresh).await;
    assert_eq!(live.body["active"], true, "{live:?}");

    // Reuse of the first refresh token revokes everything of its family.
    refresh(&first.refresh, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert_becomes_inactive(&second.refresh, "the rotated refresh token").await;
    assert_becomes_inactive(&second.access, "the rotated access token").await;
    assert_becomes_inactive(&first.access, "the first access token").await;
    refresh(&second.refresh, None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_scope_escalation_is_invalid_scope() {
    let code = authorization_code("orders:read").await;
    let first = tokens_of(&exchange(&code, VERIFIER).await);
    // The client may hold orders:write, but this grant never gave it.
    refresh(&first.refresh, Some("orders:read orders:write"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_scope");

    let narrower = refresh(&first.refresh, Some("orders:read")).await;
    tokens_of(&narrower);
    assert_eq!(narrower.body["scope"], "orders:read");
}

#[tokio::test]
async fn expired_code_and_access_token() {
    let issued_code = authorization_code("orders:read").await;
    let tokens = tokens_of(&exchange(&issued_code, VERIFIER).await);
    let unused_code = authorization_code("orders:read").await;
    let access_expiry = jwt_part(&tokens.access, 1)["exp"].as_u64().unwrap();

    // Codes live 60 s and these access tokens 60 s, with a one-second
    // leeway for the token. Both were made just now.
    let deadline = (unix_now() + 62).max(access_expiry + 3);
    tokio::time::sleep(Duration::from_secs(deadline - unix_now())).await;

    exchange(&unused_code, VERIFIER)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert_inactive(&web_introspect(&tokens.access).await);

    // The refresh token outlives its access token and still works.
    let refresh_answer = web_introspect(&tokens.refresh).await;
    assert_eq!(refresh_answer.body["active"], true, "{refresh_answer:?}");
    tokens_of(&refresh(&tokens.refresh, None).await);
}
