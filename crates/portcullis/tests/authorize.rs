//! `/oauth/authorize` through a real server: redirect URI matching, PKCE,
//! sign-in, consent, codes, CSRF protection and sign-in throttling, and
//! the end of a disabled user's grants.
//!
//! The client drives the forms as a browser would, with its own cookie jar
//! and without following redirects, so every response can be inspected.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use portcullis_core::crypto::{MasterKey, Pepper};
use portcullis_core::oauth::{ClientRecord, GrantType, Role};
use portcullis_core::scope::ScopeSet;
use portcullis_server::clients::ClientRequest;
use portcullis_server::manage::Manager;
use portcullis_store::{AuditAction, AuditContext, AuditFilter, ConsumeCode, Store};
use reqwest::{StatusCode, Url};
use secrecy::SecretString;
use support::browser::{Browser, Reply, hidden_fields, url_encode};
use support::{DataDir, Server, all_bytes_under, contains_bytes};
use time::OffsetDateTime;

/// Query parameters or request headers, as name and value.
type Pairs<'a> = &'a [(&'a str, &'a str)];

/// The fields of a form to post.
type FormFields<'a> = &'a [(String, String)];

const PASSWORD: &str = "correct horse battery staple";
const CHALLENGE: &str = "3cPVHIQLnsgqpwwGE33tCJEswn0QApLxx7Mds9Rn_jk";
/// A PKCE code verifier and its S256 challenge (RFC 7636 §4.2), for the
/// tests that exchange their code.
const VERIFIER: &str = "interop-test-verifier-0123456789-abcdefghijklmnop";
const VERIFIER_CHALLENGE: &str = "v4EhhD64DCTbTOO6R2frx1ca_8-kzr5O2OS86PKeg8A";
const WEB_CALLBACK: &str = "https://app.example.com/callback";
const NATIVE_CALLBACK: &str = "http://127.0.0.1/callback";

/// A server with tenants `acme` and `globex`, three clients of `acme` and
/// users of both tenants. Fields drop in order: the server stops before its
/// data directory goes.
struct Fixture {
    server: Server,
    store: Store,
    pepper: Pepper,
    issuer: String,
    /// Confidential, one redirect URI: [`WEB_CALLBACK`].
    web: ClientRecord,
    /// Confidential, two redirect URIs: the callback and `/alt`.
    two_uris: ClientRecord,
    /// Public native app on [`NATIVE_CALLBACK`].
    native: ClientRecord,
    data: DataDir,
}

async fn fixture() -> Fixture {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "globex"]);
    let key_text = std::fs::read_to_string(data.path().join("master.key")).unwrap();
    let pepper = MasterKey::from_encoded(&key_text).unwrap().derive_pepper();
    let store = data.open_store().await;
    let manager = Manager::new(store.clone(), pepper.clone());
    let audit = AuditContext {
        actor: "test".to_owned(),
        remote_addr: None,
        at: OffsetDateTime::now_utc(),
    };

    let web = create_client(&manager, &audit, "Web App", &[WEB_CALLBACK], false).await;
    let two_uris = create_client(
        &manager,
        &audit,
        "Two URIs",
        &[WEB_CALLBACK, "https://app.example.com/alt"],
        false,
    )
    .await;
    let native = create_client(&manager, &audit, "Native App", &[NATIVE_CALLBACK], true).await;
    for (tenant, email) in [
        ("acme", "ops@example.com"),
        ("acme", "dev@example.com"),
        ("globex", "outsider@example.com"),
    ] {
        manager
            .create_user(
                tenant,
                email,
                &SecretString::from(PASSWORD.to_owned()),
                Role::Viewer,
                &audit,
            )
            .await
            .unwrap();
    }

    // One e-mail address is blocked at its sixth failure, without delays
    // before it. The whole file signs in from 127.0.0.1, so that address
    // is allowed many failures.
    data.write_config(
        r#"
[limits.brute_force.identity]
slow_after = 5
block_after = 5

[limits.brute_force.client_ip]
slow_after = 1000
block_after = 1000
"#,
    );
    let server = Server::start(&data);
    let issuer = format!("https://localhost:{}", server.address.port());
    Fixture {
        server,
        store,
        pepper,
        issuer,
        web,
        two_uris,
        native,
        data,
    }
}

async fn create_client(
    manager: &Manager,
    audit: &AuditContext,
    name: &str,
    redirect_uris: &[&str],
    public: bool,
) -> ClientRecord {
    let mut grant_types = vec![GrantType::AuthorizationCode, GrantType::RefreshToken];
    if !public {
        grant_types.push(GrantType::ClientCredentials);
    }
    let request = ClientRequest {
        tenant: "acme".to_owned(),
        name: name.to_owned(),
        grant_types,
        scopes: ScopeSet::parse_list("orders:read orders:write").unwrap(),
        redirect_uris: redirect_uris.iter().map(|uri| (*uri).to_owned()).collect(),
        public,
        auth_method: None,
        jwks: None,
        tls_subjects: Vec::new(),
        access_token_ttl: None,
        limits: Default::default(),
    };
    manager.create_client(request, audit).await.unwrap().record
}

impl Fixture {
    /// Builds the authorize URL for `client` with the usual parameters, minus
    /// those named in `omit`, plus `extra` (appended, so a name in both
    /// appears twice).
    fn authorize_url(
        &self,
        client: &ClientRecord,
        redirect_uri: Option<&str>,
        omit: &[&str],
        extra: &[(&str, &str)],
    ) -> String {
        let client_id = client.id.to_string();
        let mut parameters = vec![
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("state", "st-1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("scope", "orders:read"),
        ];
        if let Some(uri) = redirect_uri {
            parameters.push(("redirect_uri", uri));
        }
        parameters.retain(|(name, _)| !omit.contains(name));
        parameters.extend_from_slice(extra);
        let mut url = Url::parse(&self.server.url("/oauth/authorize")).unwrap();
        url.query_pairs_mut().extend_pairs(parameters);
        url.to_string()
    }

    fn browser(&self) -> Browser {
        Browser::new(&self.server, "/oauth/authorize")
    }

    /// Signs `email` in through the form of `authorize_url` and returns
    /// the browser, now holding a session, and the sign-in response.
    async fn signed_in(&self, authorize_url: &str, email: &str) -> (Browser, Reply) {
        let mut browser = self.browser();
        let login = browser.get(authorize_url).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        let mut fields = hidden_fields(&login.body);
        fields.push(("email".to_owned(), email.to_owned()));
        fields.push(("password".to_owned(), PASSWORD.to_owned()));
        let reply = browser.post(&fields).await;
        (browser, reply)
    }

    /// Spends the stored code `code` of `client` and returns its record.
    async fn stored_code(
        &self,
        code: &str,
        client: &ClientRecord,
    ) -> portcullis_core::oauth::AuthorizationCodeRecord {
        let hash = self.pepper.hash(code.as_bytes());
        let now = OffsetDateTime::now_utc();
        match self
            .store
            .consume_code(&hash, client.id, now)
            .await
            .unwrap()
        {
            ConsumeCode::Fresh(record) => record,
            other => panic!("code not stored as fresh: {other:?}"),
        }
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

fn without(fields: &[(String, String)], name: &str) -> Vec<(String, String)> {
    fields
        .iter()
        .filter(|(key, _)| key != name)
        .cloned()
        .collect()
}

fn with_action(fields: &[(String, String)], action: &str) -> Vec<(String, String)> {
    let mut fields = without(fields, "action");
    fields.push(("action".to_owned(), action.to_owned()));
    fields
}

/// Asserts the headers every HTML page of the endpoint carries.
fn assert_page_headers(reply: &Reply) {
    let header = |name: &str| {
        reply
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        header("content-security-policy"),
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("cache-control"), "no-store");
    assert!(header("content-type").starts_with("text/html"));
    assert_eq!(header("access-control-allow-origin"), "");
    assert_eq!(header("access-control-allow-credentials"), "");
}

/// Asserts a 400 error page that sends the browser nowhere and does not
/// show `presented` as a link.
fn assert_error_page(reply: &Reply, presented: &str, case: &str) {
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{case}: {}",
        reply.body
    );
    assert!(reply.location().is_none(), "{case}: has a Location header");
    assert!(!reply.body.contains("href="), "{case}: the page has a link");
    if !presented.is_empty() {
        assert!(
            !reply.body.contains(presented),
            "{case}: the page shows the requested URI"
        );
    }
    assert!(!reply.body.contains("code="), "{case}");
    assert_page_headers(reply);
}

// -----------------------------------------------------------------------
// Requests shown as an error page

#[tokio::test]
async fn redirect_uri_mismatch_shows_error_page() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();
    let web = &fixture.web;
    let native = &fixture.native;
    let cases = [
        (web, "https://app.example.com.example.test/callback"),
        (web, "https://app.example.com/callbackx"),
        (web, "https://app.example.com/callback/more"),
        (web, "https://app.example.com/callback?next=%2F"),
        (web, "https://app.example.com:443/callback"),
        (web, "https://app.example.com/Callback"),
        (&fixture.two_uris, "https://app.example.com:8443/callback"),
        (native, "http://localhost:53219/callback"),
        (native, "http://127.0.0.1:53219/other"),
        (native, "https://127.0.0.1:53219/callback"),
        (native, "http://[::1]:53219/callback"),
    ];
    for (client, presented) in cases {
        let url = fixture.authorize_url(client, Some(presented), &[], &[]);
        let reply = browser.get(&url).await;
        assert_error_page(&reply, presented, presented);
    }
}

#[tokio::test]
async fn missing_redirect_uri_needs_single_registration() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();

    let url = fixture.authorize_url(&fixture.two_uris, None, &[], &[]);
    let reply = browser.get(&url).await;
    assert_error_page(&reply, "", "two registered URIs");
    assert!(
        reply.body.contains("redirect_uri is missing"),
        "{}",
        reply.body
    );

    // With one registered URI, the request may leave it out.
    let url = fixture.authorize_url(&fixture.web, None, &[], &[]);
    let reply = browser.get(&url).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn unknown_client_and_repeated_client_id_rejected() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();
    let evil = "https://evil.example.test/cb";

    let unknown = format!(
        "{}?response_type=code&client_id=no-such-client&state=x&code_challenge={CHALLENGE}\
         &code_challenge_method=S256&redirect_uri=https%3A%2F%2Fevil.example.test%2Fcb",
        fixture.server.url("/oauth/authorize")
    );
    let reply = browser.get(&unknown).await;
    assert_error_page(&reply, evil, "unknown client");

    // A client id in another spelling does not name the client.
    let upper = fixture.web.id.to_string().to_uppercase();
    let url = fixture.authorize_url(
        &fixture.web,
        Some(WEB_CALLBACK),
        &["client_id"],
        &[("client_id", upper.as_str())],
    );
    assert_error_page(&browser.get(&url).await, "", "upper-case client id");

    let native_id = fixture.native.id.to_string();
    let url = fixture.authorize_url(
        &fixture.web,
        Some(WEB_CALLBACK),
        &[],
        &[("client_id", native_id.as_str())],
    );
    assert_error_page(&browser.get(&url).await, "", "repeated client_id");

    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[("state", "st-2")]);
    assert_error_page(&browser.get(&url).await, "", "repeated state");
}

// -----------------------------------------------------------------------
// Errors redirected to the client

#[tokio::test]
async fn invalid_parameters_redirect_with_error() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();
    let web = &fixture.web;
    let cases: [(&str, &[&str], Pairs<'_>, &str); 8] = [
        (
            "no PKCE",
            &["code_challenge", "code_challenge_method"],
            &[],
            "invalid_request",
        ),
        (
            "method missing means plain",
            &["code_challenge_method"],
            &[],
            "invalid_request",
        ),
        (
            "plain",
            &["code_challenge_method"],
            &[("code_challenge_method", "plain")],
            "invalid_request",
        ),
        (
            "malformed challenge",
            &["code_challenge"],
            &[("code_challenge", "too-short")],
            "invalid_request",
        ),
        (
            "implicit grant",
            &["response_type"],
            &[("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            "scope beyond the client's",
            &["scope"],
            &[("scope", "orders:read admin:write")],
            "invalid_scope",
        ),
        (
            "resource with fragment",
            &[],
            &[("resource", "https://api.example.com/#part")],
            "invalid_target",
        ),
        (
            "relative resource",
            &[],
            &[("resource", "/orders")],
            "invalid_target",
        ),
    ];
    for (case, omit, extra, expected) in cases {
        let url = fixture.authorize_url(web, Some(WEB_CALLBACK), omit, extra);
        let reply = browser.get(&url).await;
        assert_eq!(reply.status, StatusCode::FOUND, "{case}: {}", reply.body);
        let query = reply.redirect_query(WEB_CALLBACK);
        assert_eq!(query["error"], expected, "{case}");
        assert!(query.contains_key("error_description"), "{case}");
        assert_eq!(query["state"], "st-1", "{case}");
        assert_eq!(query["iss"], fixture.issuer, "{case}");
        assert!(!query.contains_key("code"), "{case}");
    }

    // The public client is held to PKCE too.
    let url = fixture.authorize_url(
        &fixture.native,
        Some("http://127.0.0.1:53219/callback"),
        &["code_challenge", "code_challenge_method"],
        &[],
    );
    let reply = browser.get(&url).await;
    let query = reply.redirect_query("http://127.0.0.1:53219/callback");
    assert_eq!(query["error"], "invalid_request");
    assert_eq!(query["state"], "st-1");
}

// -----------------------------------------------------------------------
// Sign-in, consent and codes

#[tokio::test]
async fn sign_in_consent_then_code() {
    let fixture = fixture().await;
    let web = &fixture.web;
    let url = fixture.authorize_url(web, Some(WEB_CALLBACK), &[], &[]);

    // The sign-in form and its CSRF cookie.
    let mut browser = fixture.browser();
    let login = browser.get(&url).await;
    assert_eq!(login.status, StatusCode::OK);
    assert_page_headers(&login);
    assert!(login.body.contains("Web App"), "{}", login.body);
    let csrf_cookie = login.set_cookie("__Host-pc_csrf").unwrap();
    for attribute in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(csrf_cookie.contains(attribute), "{csrf_cookie}");
    }
    let mut fields = hidden_fields(&login.body);
    assert_eq!(field(&fields, "action"), "sign_in");
    assert_eq!(field(&fields, "code_challenge"), CHALLENGE);
    assert_eq!(field(&fields, "redirect_uri"), WEB_CALLBACK);
    assert!(!field(&fields, "csrf_token").is_empty());

    // Sign-in sets the session cookie and returns to the request.
    fields.push(("email".to_owned(), "Ops@Example.com".to_owned()));
    fields.push(("password".to_owned(), PASSWORD.to_owned()));
    let signed_in = browser.post(&fields).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let session_cookie = signed_in.set_cookie("__Host-pc_session").unwrap();
    for attribute in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    assert!(!session_cookie.contains("Domain"), "{session_cookie}");
    let session_id = browser.cookies["__Host-pc_session"].clone();
    assert!(session_id.len() >= 43, "session id too short: {session_id}");
    let back = signed_in.location().unwrap().to_owned();
    assert!(back.starts_with("/oauth/authorize?"), "{back}");

    // The consent page names the client, tenant and scopes in words.
    let consent = browser.get(&back).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert_page_headers(&consent);
    for text in [
        "Web App",
        "acme",
        "Read orders",
        "orders:read",
        "ops@example.com",
    ] {
        assert!(consent.body.contains(text), "consent page lacks {text}");
    }
    assert!(!consent.body.contains("orders:write"));
    let fields = hidden_fields(&consent.body);
    let approved = browser.post(&with_action(&fields, "approve")).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let query = approved.redirect_query(WEB_CALLBACK);
    assert_eq!(query["state"], "st-1");
    assert_eq!(query["iss"], fixture.issuer);
    let code = query["code"].clone();
    assert!(code.starts_with("pca_"), "{code}");

    // The stored code is bound to the client, user, URI and challenge.
    let record = fixture.stored_code(&code, web).await;
    assert_eq!(record.code_challenge, CHALLENGE);
    assert_eq!(record.redirect_uri, WEB_CALLBACK);
    assert_eq!(record.scopes.to_space_separated(), "orders:read");
    assert_eq!(
        record.expires_at - record.created_at,
        time::Duration::seconds(60)
    );
    assert_ne!(record.hash.as_bytes(), code.as_bytes());
    let user = fixture
        .store
        .find_user(record.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.email.as_str(), "ops@example.com");

    // Remembered consent: the next request gets its code at once, still
    // bound to its own challenge.
    let url = fixture.authorize_url(web, Some(WEB_CALLBACK), &["state"], &[("state", "st-2")]);
    let again = browser.get(&url).await;
    assert_eq!(again.status, StatusCode::FOUND, "{}", again.body);
    let query = again.redirect_query(WEB_CALLBACK);
    assert_eq!(query["state"], "st-2");
    let record = fixture.stored_code(&query["code"], web).await;
    assert_eq!(record.code_challenge, CHALLENGE);

    // A scope outside the consent shows the consent page again.
    let url = fixture.authorize_url(
        web,
        Some(WEB_CALLBACK),
        &["scope"],
        &[("scope", "orders:read orders:write")],
    );
    let wider = browser.get(&url).await;
    assert_eq!(wider.status, StatusCode::OK);
    assert!(wider.body.contains("Change orders"), "{}", wider.body);

    // Sign-in and consent are audited, without the code or password.
    let audit = fixture
        .store
        .list_audit(&AuditFilter {
            tenant_id: Some(web.tenant_id),
            action: None,
            target: None,
            limit: 100,
        })
        .await
        .unwrap();
    let actions: Vec<AuditAction> = audit.iter().map(|event| event.action).collect();
    assert!(actions.contains(&AuditAction::UserSignedIn), "{actions:?}");
    assert!(
        actions.contains(&AuditAction::ConsentGranted),
        "{actions:?}"
    );
    for event in &audit {
        let details = event.details.to_string();
        assert!(!details.contains(&code), "an audit record holds the code");
        assert!(
            !details.contains(PASSWORD),
            "an audit record holds the password"
        );
    }
    // The data directory contains only keyed hashes of the session id and code.
    let files = all_bytes_under(fixture.data.path());
    assert!(
        !contains_bytes(&files, session_id.as_bytes()),
        "the session id is stored"
    );
    assert!(
        !contains_bytes(&files, code.as_bytes()),
        "the code is stored"
    );

    let logs = fixture.server.log_text();
    assert!(!logs.contains(&code), "the code reached the logs");
    assert!(!logs.contains(PASSWORD), "the password reached the logs");
    assert!(
        !logs.contains(session_id.as_str()),
        "the session id reached the logs"
    );
}

#[tokio::test]
async fn loopback_redirect_accepts_any_port() {
    let fixture = fixture().await;
    let presented = "http://127.0.0.1:53219/callback";
    let url = fixture.authorize_url(
        &fixture.native,
        Some(presented),
        &["state"],
        &[("state", "st-2")],
    );
    let (mut browser, signed_in) = fixture.signed_in(&url, "ops@example.com").await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let consent = browser.get(signed_in.location().unwrap()).await;
    assert!(consent.body.contains("Native App"));
    let fields = hidden_fields(&consent.body);
    let approved = browser.post(&with_action(&fields, "approve")).await;
    let query = approved.redirect_query(presented);
    assert_eq!(query["state"], "st-2");
    assert_eq!(query["iss"], fixture.issuer);
    let record = fixture.stored_code(&query["code"], &fixture.native).await;
    assert_eq!(record.redirect_uri, presented);
}

#[tokio::test]
async fn deny_redirects_access_denied() {
    let fixture = fixture().await;
    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[]);
    let (mut browser, signed_in) = fixture.signed_in(&url, "ops@example.com").await;
    let consent = browser.get(signed_in.location().unwrap()).await;
    let fields = hidden_fields(&consent.body);
    let denied = browser.post(&with_action(&fields, "deny")).await;
    assert_eq!(denied.status, StatusCode::SEE_OTHER);
    let query = denied.redirect_query(WEB_CALLBACK);
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], "st-1");
    assert_eq!(query["iss"], fixture.issuer);
    assert!(!query.contains_key("code"));

    let user = signed_in_user(&fixture, "ops@example.com").await;
    let consent = fixture
        .store
        .find_consent(user, fixture.web.id)
        .await
        .unwrap();
    assert!(consent.is_none(), "a denial stored consent");
}

/// Sends a token request of the public native client with `fields` and
/// returns the status and the JSON body.
async fn native_token(
    fixture: &Fixture,
    fields: &[(&str, &str)],
) -> (StatusCode, serde_json::Value) {
    let mut form: Vec<(String, String)> = fields
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    form.push(("client_id".to_owned(), fixture.native.id.to_string()));
    let response = fixture
        .server
        .client()
        .post(fixture.server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(url_encode(&form))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Exchanges `code` of the native client and returns the status and body.
async fn exchange_native_code(fixture: &Fixture, code: &str) -> (StatusCode, serde_json::Value) {
    native_token(
        fixture,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", NATIVE_CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// Redeems `refresh_token` of the native client and returns the status
/// and body.
async fn refresh_native(fixture: &Fixture, refresh_token: &str) -> (StatusCode, serde_json::Value) {
    native_token(
        fixture,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// The two ways an operator disables and enables a user.
enum UserSwitch {
    /// `portcullis users disable|enable`.
    Cli,
    /// The admin API, with an operator key of this id and secret.
    AdminApi { key_id: String, key: String },
}

impl UserSwitch {
    fn admin_api(fixture: &Fixture) -> Self {
        let (key_id, key) =
            fixture
                .data
                .create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
        Self::AdminApi { key_id, key }
    }

    /// The actor that the audit records of a change made this way name.
    fn actor(&self) -> String {
        match self {
            Self::Cli => "cli".to_owned(),
            Self::AdminApi { key_id, .. } => format!("operator-key:{key_id}"),
        }
    }

    async fn set_enabled(&self, fixture: &Fixture, email: &str, enabled: bool) {
        let verb = if enabled { "enable" } else { "disable" };
        match self {
            Self::Cli => {
                fixture
                    .data
                    .cli(&["users", verb, "--tenant", "acme", "--email", email]);
            }
            Self::AdminApi { key, .. } => {
                let user = signed_in_user(fixture, email).await;
                let path = format!("/admin/v1/tenants/acme/users/{user}/{verb}");
                let response = fixture
                    .server
                    .client()
                    .post(fixture.server.url(&path))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{verb} {email}");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["disabled_at"].is_null(), enabled, "{body}");
            }
        }
    }
}

#[tokio::test]
async fn disabled_user_refresh_token_rejected() {
    disabled_user_grants_end(|_| UserSwitch::Cli).await;
}

#[tokio::test]
async fn admin_api_disabled_user_refresh_token_rejected() {
    disabled_user_grants_end(UserSwitch::admin_api).await;
}

/// Approves a grant for `dev@example.com`, disables the user the way
/// `switch` returns, and checks that the refresh token, an unexchanged code
/// and sign-in stop working, and that sign-in works again after enabling.
async fn disabled_user_grants_end(switch: fn(&Fixture) -> UserSwitch) {
    let fixture = fixture().await;
    let switch = switch(&fixture);
    let url = fixture.authorize_url(
        &fixture.native,
        Some(NATIVE_CALLBACK),
        &["code_challenge"],
        &[("code_challenge", VERIFIER_CHALLENGE)],
    );
    let (mut browser, signed_in) = fixture.signed_in(&url, "dev@example.com").await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let consent = browser.get(signed_in.location().unwrap()).await;
    let fields = hidden_fields(&consent.body);
    let approved = browser.post(&with_action(&fields, "approve")).await;
    let code = approved.redirect_query(NATIVE_CALLBACK)["code"].clone();

    let (status, tokens) = exchange_native_code(&fixture, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (status, rotated) =
        refresh_native(&fixture, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let refresh_token = rotated["refresh_token"].as_str().unwrap().to_owned();

    // A second code, remembered consent, not exchanged before the user is
    // disabled.
    let again = browser.get(&url).await;
    assert_eq!(again.status, StatusCode::FOUND, "{}", again.body);
    let pending_code = again.redirect_query(NATIVE_CALLBACK)["code"].clone();

    switch.set_enabled(&fixture, "dev@example.com", false).await;

    let (status, body) = refresh_native(&fixture, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = exchange_native_code(&fixture, &pending_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    // The session the browser holds ended, so the request asks for sign-in.
    let ended = browser.get(&url).await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert!(ended.location().is_none());
    let (_, refused) = fixture.signed_in(&url, "dev@example.com").await;
    assert_eq!(refused.status, StatusCode::OK, "{}", refused.body);
    assert!(refused.set_cookie("__Host-pc_session").is_none());
    assert!(
        refused
            .body
            .contains("The e-mail address or password is incorrect."),
        "{}",
        refused.body
    );

    let user = signed_in_user(&fixture, "dev@example.com").await;
    let records = fixture
        .store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::UserDisabled),
            target: Some(user.to_string()),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].actor, switch.actor());
    assert_eq!(records[0].details["refresh_tokens_revoked"], 1);
    assert_eq!(records[0].details["codes_revoked"], 1);

    // Enabled again, the user signs in, but the revoked token stays
    // revoked.
    switch.set_enabled(&fixture, "dev@example.com", true).await;
    let (status, body) = refresh_native(&fixture, &refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (_, signed_in) = fixture.signed_in(&url, "dev@example.com").await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
}

async fn signed_in_user(fixture: &Fixture, email: &str) -> portcullis_core::ids::UserId {
    let email = portcullis_core::oauth::Email::parse(email).unwrap();
    fixture
        .store
        .find_user_by_email(fixture.web.tenant_id, &email)
        .await
        .unwrap()
        .unwrap()
        .id
}

// -----------------------------------------------------------------------
// CSRF

#[tokio::test]
async fn sign_in_without_csrf_proof_rejected() {
    let fixture = fixture().await;
    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[]);
    let mut browser = fixture.browser();
    let login = browser.get(&url).await;
    let mut fields = hidden_fields(&login.body);
    fields.push(("email".to_owned(), "ops@example.com".to_owned()));
    fields.push(("password".to_owned(), PASSWORD.to_owned()));

    let evil = [("origin", "https://evil.example.test")];
    let cross_site = [("sec-fetch-site", "cross-site")];
    let no_token = without(&fields, "csrf_token");
    let wrong_token = {
        let mut wrong = without(&fields, "csrf_token");
        wrong.push(("csrf_token".to_owned(), "A".repeat(43)));
        wrong
    };
    let cases: [(&str, FormFields<'_>, Pairs<'_>); 4] = [
        ("foreign Origin", &fields, &evil),
        ("cross-site fetch", &fields, &cross_site),
        ("no token", &no_token, &[]),
        ("wrong token", &wrong_token, &[]),
    ];
    for (case, fields, headers) in cases {
        let reply = browser.post_with(fields, headers).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{case}: {}",
            reply.body
        );
        assert!(reply.set_cookie("__Host-pc_session").is_none(), "{case}");
        assert!(reply.location().is_none(), "{case}");
        assert_page_headers(&reply);
    }

    // Without the CSRF cookie, the token alone proves nothing.
    browser.cookies.remove("__Host-pc_csrf");
    let reply = browser.post(&fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.set_cookie("__Host-pc_session").is_none());
}

#[tokio::test]
async fn consent_without_csrf_proof_rejected() {
    let fixture = fixture().await;
    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[]);
    let (mut browser, signed_in) = fixture.signed_in(&url, "ops@example.com").await;
    let consent = browser.get(signed_in.location().unwrap()).await;
    let fields = with_action(&hidden_fields(&consent.body), "approve");

    let evil = [("origin", "https://evil.example.test")];
    let no_token = without(&fields, "csrf_token");
    let sign_in_token = {
        // The double-submit token of the sign-in form is no consent token.
        let mut other = without(&fields, "csrf_token");
        other.push((
            "csrf_token".to_owned(),
            browser.cookies["__Host-pc_csrf"].clone(),
        ));
        other
    };
    let cases: [(&str, FormFields<'_>, Pairs<'_>); 3] = [
        ("foreign Origin", &fields, &evil),
        ("no token", &no_token, &[]),
        ("sign-in token", &sign_in_token, &[]),
    ];
    for (case, fields, headers) in cases {
        let reply = browser.post_with(fields, headers).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{case}: {}",
            reply.body
        );
        assert!(reply.location().is_none(), "{case}");
    }
    let user = signed_in_user(&fixture, "ops@example.com").await;
    let consent = fixture
        .store
        .find_consent(user, fixture.web.id)
        .await
        .unwrap();
    assert!(consent.is_none(), "a rejected form stored consent");

    // The same form with its token and Origin goes through.
    let approved = browser.post(&fields).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER);
    assert!(approved.redirect_query(WEB_CALLBACK).contains_key("code"));
}

// -----------------------------------------------------------------------
// Failed sign-ins

#[tokio::test]
async fn other_tenant_user_cannot_sign_in() {
    let fixture = fixture().await;
    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[]);

    let (_, outsider) = fixture.signed_in(&url, "outsider@example.com").await;
    assert_eq!(outsider.status, StatusCode::OK);
    assert!(outsider.set_cookie("__Host-pc_session").is_none());
    assert!(outsider.location().is_none());

    let (_, unknown) = fixture.signed_in(&url, "nobody@example.com").await;
    let mut browser = fixture.browser();
    let login = browser.get(&url).await;
    let mut fields = hidden_fields(&login.body);
    fields.push(("email".to_owned(), "ops@example.com".to_owned()));
    fields.push(("password".to_owned(), "wrong password entirely".to_owned()));
    let wrong = browser.post(&fields).await;

    // One message for all three, so the form does not tell which exists.
    let message = "The e-mail address or password is incorrect.";
    for (case, reply) in [
        ("other tenant", &outsider),
        ("unknown", &unknown),
        ("wrong", &wrong),
    ] {
        assert_eq!(reply.status, StatusCode::OK, "{case}");
        assert!(reply.body.contains(message), "{case}: {}", reply.body);
        assert!(!reply.body.contains("wrong password entirely"), "{case}");
        assert_page_headers(reply);
    }

    let audit = fixture
        .store
        .list_audit(&AuditFilter {
            tenant_id: Some(fixture.web.tenant_id),
            action: Some(AuditAction::UserSignInFailed),
            target: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 3);
    assert!(
        audit
            .iter()
            .all(|event| !event.details.to_string().contains("wrong password")),
        "an audit record holds the password"
    );
}

#[tokio::test]
async fn repeated_failures_throttled_per_email() {
    let fixture = fixture().await;
    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[]);
    let mut attacker = fixture.browser();
    let login = attacker.get(&url).await;
    let form = hidden_fields(&login.body);
    let attempt = |password: &str| {
        let mut fields = form.clone();
        fields.push(("email".to_owned(), "ops@example.com".to_owned()));
        fields.push(("password".to_owned(), password.to_owned()));
        fields
    };

    for round in 1..=5 {
        let reply = attacker.post(&attempt("wrong password guess")).await;
        assert_eq!(reply.status, StatusCode::OK, "failure {round}");
    }
    let throttled = attacker.post(&attempt("wrong password guess")).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        throttled.body.contains("Try again in 1 minute"),
        "{}",
        throttled.body
    );
    assert!(
        throttled.body.contains("name=\"password\""),
        "the form is gone"
    );
    assert_page_headers(&throttled);

    // Even the right password waits now.
    let locked = attacker.post(&attempt(PASSWORD)).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.set_cookie("__Host-pc_session").is_none());

    // Another user, from the same address, signs in.
    let (_, other) = fixture.signed_in(&url, "dev@example.com").await;
    assert_eq!(other.status, StatusCode::SEE_OTHER, "{}", other.body);
    assert!(other.set_cookie("__Host-pc_session").is_some());

    // The metrics count each sign-in by its outcome.
    let (_, _, metrics) = fixture.server.scrape().await;
    let series = "portcullis_http_requests_total{route=\"oauth_authorize\",method=\"POST\"";
    for (status_class, outcome, count) in [
        ("2xx", "rejected", 5),
        ("4xx", "blocked", 2),
        ("3xx", "success", 1),
    ] {
        let line = format!(
            "{series},status_class=\"{status_class}\",auth_method=\"password\",\
             auth_outcome=\"{outcome}\"}} {count}\n"
        );
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn email_with_line_break_stays_data() {
    let fixture = fixture().await;
    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[]);
    let forged = "ops@example.com\n[audit] role granted: admin";
    let (_, reply) = fixture.signed_in(&url, forged).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.set_cookie("__Host-pc_session").is_none());
    assert!(
        reply
            .body
            .contains("The e-mail address or password is incorrect."),
        "{}",
        reply.body
    );

    let audit = fixture
        .store
        .list_audit(&AuditFilter {
            tenant_id: Some(fixture.web.tenant_id),
            action: Some(AuditAction::UserSignInFailed),
            target: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["email"], forged);

    // Every log line is one JSON object, so the line break stayed inside a
    // field.
    for line in fixture.server.log_text().lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "a log line is not JSON: {line}");
        assert!(!line.starts_with("[audit]"), "a forged log line: {line}");
    }
}

#[tokio::test]
async fn preflight_from_other_origin_gets_no_cors() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();
    let reply = browser
        .request(
            reqwest::Method::OPTIONS,
            "/oauth/authorize",
            &[
                ("origin", "https://evil.example.test"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    let headers = &reply.headers;
    assert!(headers.get("access-control-allow-origin").is_none());
    assert!(headers.get("access-control-allow-credentials").is_none());
    assert!(headers.get("access-control-allow-methods").is_none());
}

#[tokio::test]
async fn sign_in_replaces_planted_session_id() {
    let fixture = fixture().await;
    let url = fixture.authorize_url(&fixture.web, Some(WEB_CALLBACK), &[], &[]);
    let mut browser = fixture.browser();
    let planted = "A".repeat(43);
    browser
        .cookies
        .insert("__Host-pc_session".to_owned(), planted.clone());

    let login = browser.get(&url).await;
    assert_eq!(
        login.status,
        StatusCode::OK,
        "a planted id counts as a session"
    );
    let mut fields = hidden_fields(&login.body);
    fields.push(("email".to_owned(), "ops@example.com".to_owned()));
    fields.push(("password".to_owned(), PASSWORD.to_owned()));
    let signed_in = browser.post(&fields).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_ne!(browser.cookies["__Host-pc_session"], planted);

    // The planted id stays signed out.
    let mut attacker = fixture.browser();
    attacker
        .cookies
        .insert("__Host-pc_session".to_owned(), planted);
    let reply = attacker.get(&url).await;
    assert!(reply.body.contains("name=\"password\""), "{}", reply.body);
}
