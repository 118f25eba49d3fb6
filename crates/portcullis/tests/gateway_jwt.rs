//! Bearer JWT access tokens at the gateway, end to end: the real binary, a
//! real upstream, and tokens signed in this process with Portcullis's own
//! active signing key, opened from the data directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "fixtures fail the test on any error, and token times come from the wall clock"
)]

mod support;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_core::crypto::{MasterKey, PublicKeyParts, SigningKeyPair, generate_private_key};
use portcullis_core::ids::ClientId;
use portcullis_core::oauth::AccessTokenRecord;
use portcullis_core::signing::SigningAlgorithm;
use portcullis_server::oauth::jwt::{AccessTokenClaims, Audience};
use portcullis_server::oauth::rotation::{RotationPolicy, plan};
use portcullis_server::oauth::signing::{KeySet, SIGNING_KEY_PURPOSE};
use portcullis_store::{AuditAction, AuditContext, AuditFilter, Store};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use support::upstream::Upstream;
use support::{DataDir, Server, marker};
use time::OffsetDateTime;

const API: &str = "https://api.example.com";
const BILLING: &str = "https://billing.example.com";

struct Fixture {
    data: DataDir,
    server: Server,
    upstream: Upstream,
    signer: Signer,
    /// acme, `orders:read`.
    key: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&routes_config(&upstream.url(), ""));
    data.cli(&["tenants", "create", "acme"]);
    let (_, key) = data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
        "--environment",
        "test",
    ]);
    let client_id = create_client(&data);
    let server = Server::start(&data);
    let signer = Signer::load(&data, &server, &client_id);
    Fixture {
        data,
        server,
        upstream,
        signer,
        key,
    }
});

fn fixture() -> &'static Fixture {
    &FIXTURE
}

/// Returns the configuration every server here runs, with `oauth` added to
/// the `[oauth]` table.
fn routes_config(upstream: &str, oauth: &str) -> String {
    format!(
        r#"
# The whole file sends forged tokens from 127.0.0.1, which would block
# that address after the default twenty.
[limits.brute_force.client_ip]
slow_after = 10000
block_after = 10000

[oauth]
leeway = "60s"
{oauth}

[[routes]]
path_prefix = "/orders"
upstream = "{upstream}"
auth = ["api_key", "jwt"]
audience = "{API}"
[routes.scopes]
GET = ["orders:read"]
POST = ["orders:write"]

[[routes]]
path_prefix = "/admin"
upstream = "{upstream}"
auth = ["jwt"]
audience = "{API}"
[routes.scopes]
GET = ["admin:read"]

[[routes]]
path_prefix = "/billing"
upstream = "{upstream}"
auth = ["jwt"]
audience = "{BILLING}"
[routes.scopes]
GET = ["orders:read"]

[[routes]]
path_prefix = "/keys-only"
upstream = "{upstream}"
auth = ["api_key"]
[routes.scopes]
GET = ["orders:read"]
"#
    )
}

/// Registers a `client_credentials` client of acme and returns its id.
fn create_client(data: &DataDir) -> String {
    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "orders-app",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read,orders:write,admin:read",
    ]);
    created["client_id"].as_str().unwrap().to_owned()
}

/// Portcullis's active signing key, opened in this process, and the values
/// its tokens carry.
struct Signer {
    issuer: String,
    client_id: String,
    kid: String,
    algorithm: SigningAlgorithm,
    /// The key set built by Portcullis's own code, for well-formed tokens.
    keys: KeySet,
    /// The raw key pair, for tokens whose bytes the test controls.
    pair: SigningKeyPair,
    /// The body of `/.well-known/jwks.json`, as served.
    jwks_text: String,
}

impl Signer {
    /// Opens the store and master key of `data` (which `server` serves) on
    /// a thread of its own, because tests run inside their own runtimes.
    fn load(data: &DataDir, server: &Server, client_id: &str) -> Self {
        let path = data.path().to_path_buf();
        let client = server.client();
        let metadata_url = server.url("/.well-known/oauth-authorization-server");
        let jwks_url = server.url("/.well-known/jwks.json");
        let client_id = client_id.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let metadata: Value = client
                    .get(metadata_url)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let jwks_text = client
                    .get(jwks_url)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();

                let store = Store::open_sqlite(&path.join("portcullis.db"))
                    .await
                    .unwrap();
                let encoded = std::fs::read_to_string(path.join("master.key")).unwrap();
                let master = MasterKey::from_encoded(encoded.trim()).unwrap();
                let sealing = master.sealing_key(SIGNING_KEY_PURPOSE);
                let records = store.list_signing_keys().await.unwrap();
                let decided = plan(
                    &records,
                    OffsetDateTime::now_utc(),
                    &RotationPolicy::default(),
                );
                let keys = KeySet::from_plan(&records, &decided, &sealing).unwrap();
                let (kid, algorithm) = keys.active().unwrap();
                let (kid, algorithm) = (kid.to_owned(), algorithm);
                let record = records.iter().find(|record| record.kid == kid).unwrap();
                let pkcs8 = sealing
                    .open(&record.sealed_private_key, kid.as_bytes())
                    .unwrap();
                let pair = SigningKeyPair::from_pkcs8(algorithm, pkcs8.expose_secret()).unwrap();
                store.close().await;
                Self {
                    issuer: metadata["issuer"].as_str().unwrap().to_owned(),
                    client_id,
                    kid,
                    algorithm,
                    keys,
                    pair,
                    jwks_text,
                }
            })
        })
        .join()
        .unwrap()
    }

    /// Ordinary claims for `audience` and `scope`, valid for five minutes.
    fn claims(&self, audience: &str, scope: &str) -> Map<String, Value> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(self.client_id));
        claims.insert("aud".into(), json!(audience));
        claims.insert("client_id".into(), json!(self.client_id));
        claims.insert("scope".into(), json!(scope));
        claims.insert("tenant".into(), json!("acme"));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + 300));
        claims.insert("jti".into(), json!(uuid::Uuid::now_v7().to_string()));
        claims
    }

    /// Returns the header Portcullis writes on its own tokens.
    fn header(&self) -> String {
        json!({"alg": self.algorithm.as_str(), "typ": "at+jwt", "kid": self.kid}).to_string()
    }

    /// Signs `claims` under the ordinary header with the raw key pair.
    fn sign(&self, claims: &Map<String, Value>) -> String {
        self.sign_text(&self.header(), &Value::Object(claims.clone()).to_string())
    }

    /// Signs header and claims given as JSON text, byte for byte.
    fn sign_text(&self, header: &str, claims: &str) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.pair.sign(message.as_bytes()).unwrap();
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Issues a token with Portcullis's own signing code.
    fn issue(&self, audience: &str, scope: &str) -> (String, AccessTokenClaims) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: self.client_id.clone(),
            aud: Audience::One(audience.to_owned()),
            exp: now + 300,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::now_v7().to_string(),
            client_id: self.client_id.clone(),
            scope: scope.to_owned(),
            tenant: "acme".to_owned(),
            cnf: None,
        };
        (self.keys.sign(&claims).unwrap(), claims)
    }
}

/// Sends `GET path` with `token` as the bearer credential.
async fn get(server: &Server, path: &str, token: &str, case: &str) -> reqwest::Response {
    server
        .client()
        .get(server.url(path))
        .bearer_auth(token)
        .header("x-test-case", case)
        .send()
        .await
        .unwrap()
}

/// Checks a problem+json response and returns its status, challenge and
/// body.
async fn problem(response: reqwest::Response) -> (StatusCode, String, Value) {
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    (status, challenge, body)
}

/// Asserts a 401 `invalid_token` response that does not echo `token`.
async fn assert_invalid_token(response: reqwest::Response, token: &str, label: &str) {
    let (status, challenge, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {body}");
    assert!(
        challenge.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\""),
        "{label}: {challenge}"
    );
    assert_eq!(body["code"], "invalid_token", "{label}");
    assert!(
        !challenge.contains(token),
        "{label}: challenge echoed the token"
    );
    assert!(
        !body.to_string().contains(token),
        "{label}: body echoed the token"
    );
}

fn header_of(seen: &support::upstream::Seen, name: &str) -> Option<String> {
    seen.header(name).map(str::to_owned)
}

#[tokio::test]
async fn valid_token_reaches_upstream_with_identity() {
    let f = fixture();
    let (token, claims) = f.signer.issue(API, "orders:read");
    let case = marker();
    let response = f
        .server
        .client()
        .get(f.server.url("/orders/42"))
        .bearer_auth(&token)
        .header("x-test-case", &case)
        .header("x-portcullis-client-id", "forged")
        .header("x-portcullis-subject", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let seen = f.upstream.all();
    let seen = seen
        .iter()
        .find(|seen| seen.header("x-test-case") == Some(case.as_str()))
        .unwrap();
    let client_id = f.signer.client_id.as_str();
    assert_eq!(
        header_of(seen, "x-portcullis-tenant").as_deref(),
        Some("acme")
    );
    assert_eq!(
        header_of(seen, "x-portcullis-client-id").as_deref(),
        Some(client_id)
    );
    assert_eq!(
        header_of(seen, "x-portcullis-subject").as_deref(),
        Some(client_id)
    );
    assert_eq!(
        header_of(seen, "x-portcullis-scopes").as_deref(),
        Some("orders:read")
    );
    assert_eq!(
        header_of(seen, "x-portcullis-token-id").as_deref(),
        Some(claims.jti.as_str())
    );
    assert_eq!(
        header_of(seen, "x-portcullis-auth-method").as_deref(),
        Some("jwt")
    );
    assert_eq!(seen.header_count("x-portcullis-client-id"), 1);
    assert_eq!(seen.header_count("x-portcullis-subject"), 1);
    assert_eq!(seen.header("x-portcullis-key-id"), None);
    assert_eq!(seen.header("authorization"), None);

    // The log line is written after the response, so give the reader a
    // moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = f.server.log_text();
    let line = logs
        .lines()
        .find(|line| line.contains(&request_id) && line.contains("\"request\""))
        .expect("no log line for the request");
    let event: Value = serde_json::from_str(line).unwrap();
    assert!(event["tenant"].as_str().unwrap().contains("acme"));
    assert!(event["client_id"].as_str().unwrap().contains(client_id));
    assert!(!logs.contains(&token), "the token reached the logs");
}

#[tokio::test]
async fn alg_none_tokens_rejected() {
    let f = fixture();
    let s = &f.signer;
    let claims = Value::Object(s.claims(API, "orders:read")).to_string();
    let (real, _) = s.issue(API, "orders:read");
    let real_signature = real.rsplit('.').next().unwrap();

    let mut tokens = Vec::new();
    for alg in ["none", "None", "NONE", ""] {
        for header in [
            json!({"alg": alg, "typ": "at+jwt"}),
            json!({"alg": alg, "typ": "at+jwt", "kid": s.kid}),
        ] {
            let unsigned = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(&claims)
            );
            tokens.push((format!("{alg:?} {header}"), format!("{unsigned}.")));
            tokens.push((
                format!("{alg:?} {header} with a real signature"),
                format!("{unsigned}.{real_signature}"),
            ));
        }
    }

    let case = marker();
    for (label, token) in &tokens {
        let response = get(&f.server, "/orders/1", token, &case).await;
        assert_invalid_token(response, token, label).await;
    }
    assert_eq!(f.upstream.count_marked(&case), 0);
}

/// HMAC-signs a token under `kid` with `secret` as the key.
fn hmac_token(
    signer: &Signer,
    algorithm: jsonwebtoken::Algorithm,
    name: &str,
    secret: &[u8],
) -> String {
    let header = json!({"alg": name, "typ": "at+jwt", "kid": signer.kid}).to_string();
    let claims = Value::Object(signer.claims(API, "orders:read")).to_string();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, algorithm).unwrap();
    format!("{message}.{signature}")
}

/// Lists the forms a published public key takes as an HMAC secret: the SPKI as
/// PEM (with and without a final line break) and DER, the key's JWK text,
/// and the whole JWKS document as served.
fn public_key_forms(signer: &Signer) -> Vec<(&'static str, Vec<u8>)> {
    let der = signer.pair.public_key_der().unwrap();
    let body = STANDARD.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let jwks: Value = serde_json::from_str(&signer.jwks_text).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == signer.kid.as_str())
        .expect("the active key is not in the JWKS")
        .to_string();
    vec![
        ("pem", pem.clone().into_bytes()),
        (
            "pem without final newline",
            pem.trim_end().as_bytes().to_vec(),
        ),
        ("der", der),
        ("jwk", jwk.into_bytes()),
        ("jwks document", signer.jwks_text.clone().into_bytes()),
    ]
}

async fn assert_hmac_over_public_key_rejected(
    server: &Server,
    upstream: &Upstream,
    signer: &Signer,
) {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let case = marker();
    for (form, secret) in public_key_forms(signer) {
        for (algorithm, name) in [
            (jsonwebtoken::Algorithm::HS256, "HS256"),
            (jsonwebtoken::Algorithm::HS384, "HS384"),
            (jsonwebtoken::Algorithm::HS512, "HS512"),
        ] {
            let token = hmac_token(signer, algorithm, name, &secret);
            let response = get(server, "/orders/1", &token, &case).await;
            let label = format!("{} key as {form}, {name}", signer.algorithm.as_str());
            assert_invalid_token(response, &token, &label).await;
        }
    }
    assert_eq!(upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn es256_public_key_as_hmac_secret_rejected() {
    let f = fixture();
    assert_eq!(f.signer.algorithm, SigningAlgorithm::Es256);
    assert_hmac_over_public_key_rejected(&f.server, &f.upstream, &f.signer).await;
}

#[tokio::test]
async fn rs256_public_key_as_hmac_secret_rejected() {
    // A second server whose signing key is RSA.
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&routes_config(
        &upstream.url(),
        "signing_algorithm = \"RS256\"",
    ));
    data.cli(&["tenants", "create", "acme"]);
    let client_id = create_client(&data);
    let server = Server::start(&data);
    let signer = Signer::load(&data, &server, &client_id);
    assert_eq!(signer.algorithm, SigningAlgorithm::Rs256);

    // The control: an RS256 token of this server is accepted.
    let (token, _) = signer.issue(API, "orders:read");
    let response = get(&server, "/orders/1", &token, &marker()).await;
    assert_eq!(response.status(), StatusCode::OK);

    assert_hmac_over_public_key_rejected(&server, &upstream, &signer).await;
}

#[tokio::test]
async fn key_named_by_token_header_never_fetched() {
    let f = fixture();
    let s = &f.signer;
    // The jku and x5u URLs below name this loopback listener, and any
    // connection to it lands in its backlog.
    let stub = TcpListener::bind("127.0.0.1:0").unwrap();
    stub.set_nonblocking(true).unwrap();
    let stub_url = format!("https://{}", stub.local_addr().unwrap());

    let pkcs8 = generate_private_key(SigningAlgorithm::Rs256).unwrap();
    let foreign = SigningKeyPair::from_pkcs8(SigningAlgorithm::Rs256, &pkcs8).unwrap();
    let PublicKeyParts::Rsa { modulus, exponent } = foreign.public_key() else {
        panic!("an RS256 key pair has an RSA public key");
    };
    let foreign_jwk = json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(modulus),
        "e": URL_SAFE_NO_PAD.encode(exponent),
        "alg": "RS256",
        "use": "sig",
    });
    // NOTE: the x5c value is the development CA certificate, not a
    // certificate of the foreign key, because no certificate builder is a
    // dependency of this crate. The gateway rejects any x5c before reading
    // it, and the foreign key's signature verifies under no trusted key.
    let ca_pem = String::from_utf8(f.server.ca_pem.clone()).unwrap();
    let ca_der: String = ca_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();

    let headers = [
        json!({"alg": "RS256", "typ": "at+jwt", "kid": s.kid, "jwk": foreign_jwk}),
        json!({"alg": "RS256", "typ": "at+jwt", "kid": s.kid,
               "jku": format!("{stub_url}/jwks.json")}),
        json!({"alg": "RS256", "typ": "at+jwt", "kid": s.kid,
               "x5u": format!("{stub_url}/cert.pem")}),
        json!({"alg": "RS256", "typ": "at+jwt", "x5c": [ca_der]}),
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "unknown-kid"}),
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "unknown-kid",
               "jku": format!("{stub_url}/jwks.json")}),
    ];
    let case = marker();
    for header in headers {
        let claims = Value::Object(s.claims(API, "admin:read")).to_string();
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = foreign.sign(message.as_bytes()).unwrap();
        let token = format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature));
        let response = get(&f.server, "/admin/users", &token, &case).await;
        assert_invalid_token(response, &token, &header.to_string()).await;
    }
    assert_eq!(f.upstream.count_marked(&case), 0);

    // A late fetch gets a moment to arrive before the check.
    tokio::time::sleep(Duration::from_millis(200)).await;
    match stub.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        Err(error) => panic!("checking the stub failed: {error}"),
        Ok((_, peer)) => panic!("Portcullis connected to the stub from {peer}"),
    }
}

#[tokio::test]
async fn time_claims_checked_with_their_types() {
    let f = fixture();
    let s = &f.signer;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let with = |changes: &[(&str, Option<Value>)]| {
        let mut claims = s.claims(API, "orders:read");
        for (name, value) in changes {
            match value {
                Some(value) => claims.insert((*name).to_owned(), value.clone()),
                None => claims.remove(*name),
            };
        }
        Value::Object(claims).to_string()
    };
    let too_large = {
        // serde_json cannot hold this number, so it is spliced in as text.
        let text = with(&[("exp", Some(json!("PLACEHOLDER")))]);
        text.replace("\"PLACEHOLDER\"", "123456789012345678901234567890")
    };
    let cases = [
        ("no exp", with(&[("exp", None)])),
        (
            "nbf as a string",
            with(&[("nbf", Some(json!("99999999999")))]),
        ),
        ("exp as a word", with(&[("exp", Some(json!("never")))])),
        (
            "exp as a numeric string",
            with(&[("exp", Some(json!((now + 300).to_string())))]),
        ),
        ("exp null", with(&[("exp", Some(Value::Null))])),
        ("exp true", with(&[("exp", Some(json!(true)))])),
        (
            "exp in an array",
            with(&[("exp", Some(json!([now + 300])))]),
        ),
        (
            "expired beyond the leeway",
            with(&[("exp", Some(json!(now - 120)))]),
        ),
        (
            "nbf beyond the leeway",
            with(&[("nbf", Some(json!(now + 600)))]),
        ),
        ("exp too large for 64 bits", too_large),
    ];
    let case = marker();
    for (label, claims) in &cases {
        let token = s.sign_text(&s.header(), claims);
        let response = get(&f.server, "/orders/1", &token, &case).await;
        assert_invalid_token(response, &token, label).await;
    }
    assert_eq!(f.upstream.count_marked(&case), 0);

    // The control, and the only request the upstream receives.
    let token = s.sign_text(&s.header(), &with(&[]));
    let response = get(&f.server, "/orders/1", &token, &case).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(f.upstream.count_marked(&case), 1);
    let health = f.server.client().get(f.server.url("/healthz")).send().await;
    assert_eq!(health.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn audience_and_issuer_compared_exactly() {
    let f = fixture();
    let s = &f.signer;
    let with = |name: &str, value: Option<Value>| {
        let mut claims = s.claims(API, "orders:read");
        match value {
            Some(value) => claims.insert(name.to_owned(), value),
            None => claims.remove(name),
        };
        claims
    };
    let rejected = [
        ("other audience", with("aud", Some(json!(BILLING)))),
        ("no aud", with("aud", None)),
        (
            "audience in other case",
            with("aud", Some(json!("https://API.example.com"))),
        ),
        (
            "trailing slash",
            with("aud", Some(json!("https://api.example.com/"))),
        ),
        (
            "trailing space",
            with("aud", Some(json!(["https://api.example.com "]))),
        ),
        ("empty array", with("aud", Some(json!([])))),
        (
            "other issuer",
            with("iss", Some(json!("https://other-issuer.example.test"))),
        ),
    ];
    let case = marker();
    for (label, claims) in &rejected {
        let token = s.sign(claims);
        let response = get(&f.server, "/orders/1", &token, &case).await;
        assert_invalid_token(response, &token, label).await;
    }
    assert_eq!(f.upstream.count_marked(&case), 0);

    // Another audience beside the route's own does not invalidate a token.
    let both = with("aud", Some(json!([BILLING, API])));
    let response = get(&f.server, "/orders/1", &s.sign(&both), &case).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(f.upstream.count_marked(&case), 1);
}

#[tokio::test]
async fn missing_scope_gets_403_naming_scope() {
    let f = fixture();
    let (token, _) = f.signer.issue(API, "orders:read");
    let case = marker();
    let post = f
        .server
        .client()
        .post(f.server.url("/orders"))
        .bearer_auth(&token)
        .header("x-test-case", &case)
        .body("{}")
        .send()
        .await
        .unwrap();
    let admin = get(&f.server, "/admin/users", &token, &case).await;

    for (response, scope) in [(post, "orders:write"), (admin, "admin:read")] {
        let (status, challenge, body) = problem(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{scope}");
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(
            challenge.contains(&format!("scope=\"{scope}\"")),
            "{challenge}"
        );
        assert_eq!(body["required_scope"], scope);
        assert!(body["detail"].as_str().unwrap().contains(scope));
    }
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn malformed_scope_claim_rejected() {
    let f = fixture();
    let case = marker();
    for scope in [
        "orders:read,admin:read",
        "orders:read  admin:read",
        "Orders:Read",
        " orders:read",
    ] {
        let token = f.signer.sign(&f.signer.claims(API, scope));
        let response = get(&f.server, "/orders/1", &token, &case).await;
        assert_invalid_token(response, &token, scope).await;
    }
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn token_checked_against_each_route_audience() {
    // The first request validates the token; the next, on a route of
    // another audience, must be judged on its own.
    let f = fixture();
    let (token, _) = f.signer.issue(API, "orders:read");
    let first = get(&f.server, "/orders/1", &token, &marker()).await;
    assert_eq!(first.status(), StatusCode::OK);

    let case = marker();
    let billing = get(&f.server, "/billing/1", &token, &case).await;
    assert_invalid_token(billing, &token, "billing").await;
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn credential_kind_outside_route_gets_401() {
    let f = fixture();
    let (token, _) = f.signer.issue(API, "orders:read");
    let case = marker();

    let token_on_keys_route = get(&f.server, "/keys-only/1", &token, &case).await;
    let (status, challenge, body) = problem(token_on_keys_route).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["code"], "invalid_token");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("accepts API keys"),
        "{body}"
    );

    for (name, value) in [
        ("x-api-key", f.key.clone()),
        ("authorization", format!("Bearer {}", f.key)),
    ] {
        let key_on_token_route = f
            .server
            .client()
            .get(f.server.url("/billing/1"))
            .header(name, value)
            .header("x-test-case", &case)
            .send()
            .await
            .unwrap();
        let (status, challenge, body) = problem(key_on_token_route).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("accepts access tokens"),
            "{body}"
        );
    }
    assert_eq!(f.upstream.count_marked(&case), 0);

    // The key still works where keys are accepted.
    let response = f
        .server
        .client()
        .get(f.server.url("/orders/1"))
        .header("x-api-key", &f.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_credential_on_token_route_gets_401() {
    let f = fixture();
    let case = marker();
    let response = f
        .server
        .client()
        .get(f.server.url("/admin/users"))
        .header("x-test-case", &case)
        .send()
        .await
        .unwrap();
    let (status, challenge, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge, "Bearer realm=\"portcullis\"");
    assert_eq!(body["code"], "missing_credential");
    assert!(body["detail"].as_str().unwrap().contains("access token"));
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn key_and_token_together_get_400() {
    let f = fixture();
    let (token, _) = f.signer.issue(API, "orders:read");
    let case = marker();
    let requests = [
        vec![
            ("authorization", format!("Bearer {token}")),
            ("x-api-key", f.key.clone()),
        ],
        vec![
            ("authorization", format!("Bearer {}", f.key)),
            ("authorization", format!("Bearer {token}")),
        ],
    ];
    for headers in requests {
        let mut request = f
            .server
            .client()
            .get(f.server.url("/orders/1"))
            .header("x-test-case", &case);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let (status, challenge, body) = problem(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{challenge}"
        );
        assert_eq!(body["code"], "multiple_credentials");
    }

    let in_query = f
        .server
        .client()
        .get(f.server.url(&format!("/orders/1?access_token={token}")))
        .header("x-api-key", &f.key)
        .header("x-test-case", &case)
        .send()
        .await
        .unwrap();
    let (status, _, body) = problem(in_query).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "multiple_credentials");
    assert_eq!(f.upstream.count_marked(&case), 0);
}

#[tokio::test]
async fn revoked_token_rejected_within_one_second() {
    let f = fixture();
    let s = &f.signer;
    let store = f.data.open_store().await;
    let (token, claims) = s.issue(API, "orders:read");
    let client_id: ClientId = s.client_id.parse().unwrap();
    store
        .record_access_token(&AccessTokenRecord {
            jti: claims.jti.clone(),
            client_id,
            family_id: None,
            expires_at: OffsetDateTime::from_unix_timestamp(claims.exp).unwrap(),
            revoked_at: None,
            certificate_thumbprint: None,
        })
        .await
        .unwrap();
    let before = get(&f.server, "/orders/1", &token, &marker()).await;
    assert_eq!(before.status(), StatusCode::OK);

    let audit = AuditContext {
        actor: "test".to_owned(),
        remote_addr: None,
        at: OffsetDateTime::now_utc(),
    };
    store
        .revoke_access_token(&claims.jti, &audit)
        .await
        .unwrap();
    let revoked_at = Instant::now();
    let case = marker();
    let response = loop {
        let response = get(&f.server, "/orders/1", &token, &case).await;
        if response.status() != StatusCode::OK {
            break response;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the revoked token still worked after one second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = revoked_at.elapsed();
    let (status, challenge, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(body["detail"], "the access token has been revoked");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    // The failure is audited with the token's id and client once the
    // usage buffer is flushed (every second), and never with the token.
    let filter = AuditFilter {
        tenant_id: None,
        action: Some(AuditAction::AuthFailed),
        target: Some(s.client_id.clone()),
        limit: 50,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let records = store.list_audit(&filter).await.unwrap();
        let found = records
            .into_iter()
            .find(|record| record.details["token_id"] == claims.jti.as_str());
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no audit record of the failure");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record.details["code"], "revoked");
    assert_eq!(record.details["client_id"], s.client_id.as_str());
    assert_eq!(record.details["surface"], "gateway");
    assert!(!record.details.to_string().contains(&token));
    store.close().await;
}
