//! `/dashboard/` through a real server: sign-in, sessions, sign-out,
//! sign-out everywhere, the security headers of every response, CSRF and
//! cross-origin protection, and sign-in throttling.
//!
//! The browser keeps its own cookie jar and does not follow redirects, so
//! every response can be inspected.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use portcullis_core::crypto::{MasterKey, Pepper};
use portcullis_core::oauth::{Role, UserRecord};
use portcullis_server::manage::Manager;
use portcullis_server::oauth::session::SessionId;
use portcullis_store::{AuditAction, AuditContext, AuditEvent, AuditFilter, Store};
use reqwest::header::{COOKIE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use support::browser::{Browser, Reply, hidden_fields};
use support::{DataDir, Server};
use time::OffsetDateTime;

const PASSWORD: &str = "correct horse battery staple";
const SESSION_COOKIE: &str = "__Host-pc_session";
const CSRF_COOKIE: &str = "__Host-pc_csrf";
const EVIL_ORIGIN: &str = "https://evil.example.test";

/// A server with tenants `acme` and `globex`. `ops@example.com` exists in
/// both, as an admin of `acme` and a viewer of `globex`. Fields drop in
/// order: the server stops before its data directory goes.
struct Fixture {
    server: Server,
    store: Store,
    pepper: Pepper,
    admin: UserRecord,
    developer: UserRecord,
    outsider: UserRecord,
    _data: DataDir,
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
    let password = SecretString::from(PASSWORD.to_owned());
    let mut users = Vec::new();
    for (tenant, email, role) in [
        ("acme", "ops@example.com", Role::Admin),
        ("acme", "dev@example.com", Role::Developer),
        ("globex", "ops@example.com", Role::Viewer),
    ] {
        let user = manager
            .create_user(tenant, email, &password, role, &audit)
            .await
            .unwrap();
        users.push(user);
    }
    let outsider = users.pop().unwrap();
    let developer = users.pop().unwrap();
    let admin = users.pop().unwrap();

    // One account is blocked at its fourth failure, without delays before
    // it. The whole file signs in from 127.0.0.1, so that address is
    // allowed many failures.
    data.write_config(
        r#"
[limits.brute_force.identity]
slow_after = 3
block_after = 3

[limits.brute_force.client_ip]
slow_after = 1000
block_after = 1000
"#,
    );
    let server = Server::start(&data);
    Fixture {
        server,
        store,
        pepper,
        admin,
        developer,
        outsider,
        _data: data,
    }
}

impl Fixture {
    fn browser(&self) -> Browser {
        Browser::new(&self.server, "/dashboard/sign-in")
    }

    /// Opens the sign-in form and returns its fields with `tenant`,
    /// `email` and `password` filled in.
    async fn sign_in_fields(
        browser: &mut Browser,
        tenant: &str,
        email: &str,
        password: &str,
    ) -> Vec<(String, String)> {
        let page = browser.get("/dashboard/sign-in").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let mut fields = hidden_fields(&page.body);
        fields.push(("tenant".to_owned(), tenant.to_owned()));
        fields.push(("email".to_owned(), email.to_owned()));
        fields.push(("password".to_owned(), password.to_owned()));
        fields
    }

    /// Signs `email` of `tenant` in and returns the browser, now holding a
    /// session.
    async fn signed_in(&self, tenant: &str, email: &str) -> Browser {
        let mut browser = self.browser();
        let fields = Self::sign_in_fields(&mut browser, tenant, email, PASSWORD).await;
        let reply = browser.post(&fields).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        assert_eq!(reply.location(), Some("/dashboard/"));
        browser
    }

    /// The store's hash of the browser's session id.
    fn session_hash(&self, browser: &Browser) -> portcullis_core::crypto::SecretHash {
        let mut headers = HeaderMap::new();
        let cookie = format!("{SESSION_COOKIE}={}", browser.cookies[SESSION_COOKIE]);
        headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
        SessionId::from_headers(&headers)
            .unwrap()
            .hash(&self.pepper)
    }

    async fn audit(&self, user: &UserRecord, action: AuditAction) -> Vec<AuditEvent> {
        self.store
            .list_audit(&AuditFilter {
                tenant_id: Some(user.tenant_id),
                action: Some(action),
                target: None,
                limit: 100,
            })
            .await
            .unwrap()
    }
}

/// Returns `true` when the overview shows the browser as signed in.
async fn is_signed_in(browser: &mut Browser) -> bool {
    let reply = browser.get("/dashboard/").await;
    match reply.status {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            assert_eq!(reply.location(), Some("/dashboard/sign-in"));
            false
        }
        other => panic!("unexpected overview status {other}: {}", reply.body),
    }
}

/// The session-bound CSRF token of the overview's forms.
async fn page_token(browser: &mut Browser) -> String {
    let page = browser.get("/dashboard/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let fields = hidden_fields(&page.body);
    let (_, token) = fields
        .iter()
        .find(|(name, _)| name == "csrf_token")
        .expect("a CSRF token on the overview");
    token.clone()
}

fn token_field(token: &str) -> Vec<(String, String)> {
    vec![("csrf_token".to_owned(), token.to_owned())]
}

/// Asserts the headers every dashboard response carries.
fn assert_security_headers(reply: &Reply, case: &str) {
    assert_eq!(
        reply.header("content-security-policy"),
        "default-src 'none'; style-src 'self'; script-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
        "{case}"
    );
    assert_eq!(reply.header("x-frame-options"), "DENY", "{case}");
    assert_eq!(reply.header("referrer-policy"), "no-referrer", "{case}");
    assert_eq!(reply.header("x-content-type-options"), "nosniff", "{case}");
    for name in reply.headers.keys() {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "{case}: CORS header {name}"
        );
    }
}

/// Asserts the headers of a page that shows account data or a token.
fn assert_page_headers(reply: &Reply, case: &str) {
    assert_security_headers(reply, case);
    assert_eq!(reply.header("cache-control"), "no-store", "{case}");
}

#[tokio::test]
async fn sign_in_starts_fresh_session() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();

    let anonymous = browser.get("/dashboard/").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location(), Some("/dashboard/sign-in"));
    assert_page_headers(&anonymous, "redirect to sign-in");

    let form = browser.get("/dashboard/sign-in").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_page_headers(&form, "sign-in form");
    assert!(!form.body.contains("<script"), "{}", form.body);
    assert!(
        form.body.contains("<label for=\"password\">"),
        "{}",
        form.body
    );
    let csrf_cookie = form.set_cookie(CSRF_COOKIE).expect("a CSRF cookie");
    for attribute in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(csrf_cookie.contains(attribute), "{csrf_cookie}");
    }

    // An id planted before sign-in is never signed in.
    let planted = "A".repeat(43);
    browser
        .cookies
        .insert(SESSION_COOKIE.to_owned(), planted.clone());
    let mut fields = hidden_fields(&form.body);
    fields.push(("tenant".to_owned(), "acme".to_owned()));
    fields.push(("email".to_owned(), "ops@example.com".to_owned()));
    fields.push(("password".to_owned(), PASSWORD.to_owned()));
    let signed_in = browser.post(&fields).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert_eq!(signed_in.location(), Some("/dashboard/"));
    assert_page_headers(&signed_in, "sign-in redirect");
    let cookie = signed_in
        .set_cookie(SESSION_COOKIE)
        .expect("a session cookie");
    for attribute in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_ne!(browser.cookies[SESSION_COOKIE], planted);

    let overview = browser.get("/dashboard/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert_page_headers(&overview, "overview");
    assert!(
        overview.body.contains("ops@example.com"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains("<dd>acme</dd>"), "{}", overview.body);
    assert!(
        overview.body.contains("<dd>admin</dd>"),
        "{}",
        overview.body
    );

    let mut attacker = fixture.browser();
    attacker.cookies.insert(SESSION_COOKIE.to_owned(), planted);
    assert!(
        !is_signed_in(&mut attacker).await,
        "the planted id signed in"
    );

    // A signed-in browser skips the form.
    let again = browser.get("/dashboard/sign-in").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), Some("/dashboard/"));

    let audit = fixture
        .audit(&fixture.admin, AuditAction::UserSignedIn)
        .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, format!("user:{}", fixture.admin.id));
    assert_eq!(audit[0].details["via"], "dashboard");
    fixture.server.stop().await;
}

#[tokio::test]
async fn sign_in_uses_the_named_tenant() {
    let fixture = fixture().await;
    let mut browser = fixture.signed_in("globex", "ops@example.com").await;
    let overview = browser.get("/dashboard/").await;
    assert!(
        overview.body.contains("<dd>globex</dd>"),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains("<dd>viewer</dd>"),
        "{}",
        overview.body
    );
    assert!(!overview.body.contains("acme"), "{}", overview.body);

    let failures = [
        (
            "acme",
            "ops@example.com",
            "wrong password guess",
            "wrong password",
        ),
        ("initech", "ops@example.com", PASSWORD, "unknown tenant"),
        (
            "globex",
            "dev@example.com",
            PASSWORD,
            "user of another tenant",
        ),
        (
            "acme",
            "nobody@example.com",
            PASSWORD,
            "unknown e-mail address",
        ),
        ("acme", "not an address", PASSWORD, "invalid e-mail address"),
        (
            "not a tenant!",
            "ops@example.com",
            PASSWORD,
            "invalid tenant name",
        ),
    ];
    for (tenant, email, password, case) in failures {
        let mut browser = fixture.browser();
        let fields = Fixture::sign_in_fields(&mut browser, tenant, email, password).await;
        let reply = browser.post(&fields).await;
        assert_eq!(reply.status, StatusCode::OK, "{case}");
        assert_page_headers(&reply, case);
        assert!(
            reply
                .body
                .contains("The e-mail address or password is incorrect."),
            "{case}: {}",
            reply.body
        );
        assert!(reply.set_cookie(SESSION_COOKIE).is_none(), "{case}");
        assert!(!is_signed_in(&mut browser).await, "{case}");
    }
    let failed = fixture
        .audit(&fixture.admin, AuditAction::UserSignInFailed)
        .await;
    assert_eq!(failed.len(), 3, "failures naming acme");
    assert_eq!(failed[0].actor, "anonymous");
    fixture.server.stop().await;
}

#[tokio::test]
async fn repeated_failures_blocked() {
    let fixture = fixture().await;
    let mut attacker = fixture.browser();
    let wrong =
        Fixture::sign_in_fields(&mut attacker, "acme", "dev@example.com", "wrong guess 123").await;
    for round in 1..=3 {
        let reply = attacker.post(&wrong).await;
        assert_eq!(reply.status, StatusCode::OK, "failure {round}");
    }
    let blocked = attacker.post(&wrong).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_page_headers(&blocked, "blocked sign-in");
    let retry_after: u64 = blocked.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        blocked.body.contains("Too many failed sign-ins"),
        "{}",
        blocked.body
    );

    // Even the right password waits now.
    let right = Fixture::sign_in_fields(&mut attacker, "acme", "dev@example.com", PASSWORD).await;
    let locked = attacker.post(&right).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.set_cookie(SESSION_COOKIE).is_none());

    // The same address in another tenant is another account.
    let mut other = fixture.signed_in("acme", "ops@example.com").await;
    assert!(is_signed_in(&mut other).await);
    fixture.server.stop().await;
}

#[tokio::test]
async fn sign_out_ends_only_this_session() {
    let fixture = fixture().await;
    let mut first = fixture.signed_in("acme", "ops@example.com").await;
    let mut second = fixture.signed_in("acme", "ops@example.com").await;
    let old_cookie = first.cookies[SESSION_COOKIE].clone();

    let token = page_token(&mut first).await;
    let reply = first
        .post_to("/dashboard/sign-out", &token_field(&token))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), Some("/dashboard/sign-in"));
    assert_page_headers(&reply, "sign-out");
    let removal = reply.set_cookie(SESSION_COOKIE).expect("a removal cookie");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(!is_signed_in(&mut first).await);

    // The old id is dead on the server, not only gone from the browser.
    let mut replay = fixture.browser();
    replay.cookies.insert(SESSION_COOKIE.to_owned(), old_cookie);
    assert!(!is_signed_in(&mut replay).await);

    assert!(is_signed_in(&mut second).await, "the other session ended");
    let audit = fixture
        .audit(&fixture.admin, AuditAction::UserSignedOut)
        .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["everywhere"], false);
    fixture.server.stop().await;
}

#[tokio::test]
async fn sign_out_everywhere_ends_all_sessions() {
    let fixture = fixture().await;
    let mut first = fixture.signed_in("acme", "ops@example.com").await;
    let mut second = fixture.signed_in("acme", "ops@example.com").await;
    let mut colleague = fixture.signed_in("acme", "dev@example.com").await;
    let mut namesake = fixture.signed_in("globex", "ops@example.com").await;

    let token = page_token(&mut first).await;
    let reply = first
        .post_to("/dashboard/sign-out-everywhere", &token_field(&token))
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), Some("/dashboard/sign-in"));
    assert!(reply.set_cookie(SESSION_COOKIE).is_some());

    assert!(!is_signed_in(&mut first).await);
    assert!(
        !is_signed_in(&mut second).await,
        "the second browser stayed in"
    );
    assert!(
        is_signed_in(&mut colleague).await,
        "another user was signed out"
    );
    assert!(
        is_signed_in(&mut namesake).await,
        "another tenant's user was signed out"
    );

    let audit = fixture
        .audit(&fixture.admin, AuditAction::UserSignedOut)
        .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["everywhere"], true);
    assert_eq!(audit[0].details["sessions_ended"], 2);
    assert!(fixture.developer.id != fixture.admin.id);
    fixture.server.stop().await;
}

#[tokio::test]
async fn idle_session_expires() {
    let fixture = fixture().await;
    let mut browser = fixture.signed_in("acme", "ops@example.com").await;
    let hash = fixture.session_hash(&browser);
    let past = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    assert!(fixture.store.touch_session(&hash, past).await.unwrap());

    assert!(!is_signed_in(&mut browser).await);
    assert!(
        fixture.store.find_session(&hash).await.unwrap().is_none(),
        "the expired session was kept"
    );
    fixture.server.stop().await;
}

/// Another site's requests with the user's cookies: a CORS preflight and
/// form posts without the page's token or from another origin. Each post
/// answers 403 and changes nothing (RFC 6749 §10.12, RFC 9700 §4.7).
#[tokio::test]
async fn cross_site_requests_change_nothing() {
    let fixture = fixture().await;
    let mut victim = fixture.signed_in("acme", "ops@example.com").await;
    let token = page_token(&mut victim).await;

    for path in [
        "/dashboard/sign-out",
        "/dashboard/sign-out-everywhere",
        "/dashboard/sign-in",
    ] {
        let preflight = victim
            .request(
                Method::OPTIONS,
                path,
                &[
                    ("origin", EVIL_ORIGIN),
                    ("access-control-request-method", "POST"),
                ],
            )
            .await;
        assert_security_headers(&preflight, path);
        assert!(
            preflight.header("access-control-allow-origin").is_empty(),
            "{path}"
        );
        assert!(
            preflight
                .header("access-control-allow-credentials")
                .is_empty(),
            "{path}"
        );
    }

    let cross_site: [(&str, &str); 2] = [("origin", EVIL_ORIGIN), ("sec-fetch-site", "cross-site")];
    for path in ["/dashboard/sign-out", "/dashboard/sign-out-everywhere"] {
        let with_token = victim
            .post_to_with(path, &token_field(&token), &cross_site)
            .await;
        assert_eq!(
            with_token.status,
            StatusCode::FORBIDDEN,
            "{path} from another site"
        );
        assert_page_headers(&with_token, path);

        let origin_only = victim
            .post_to_with(path, &token_field(&token), &[("origin", EVIL_ORIGIN)])
            .await;
        assert_eq!(
            origin_only.status,
            StatusCode::FORBIDDEN,
            "{path} with Origin"
        );

        let without_token = victim.post_to(path, &[]).await;
        assert_eq!(
            without_token.status,
            StatusCode::FORBIDDEN,
            "{path} without token"
        );

        let wrong_token = victim.post_to(path, &token_field("forged")).await;
        assert_eq!(
            wrong_token.status,
            StatusCode::FORBIDDEN,
            "{path} with wrong token"
        );
        assert!(is_signed_in(&mut victim).await, "{path} ended the session");
    }

    // A cross-site sign-in as another account (login CSRF) starts no session.
    let mut planted = fixture.browser();
    let fields = Fixture::sign_in_fields(&mut planted, "acme", "dev@example.com", PASSWORD).await;
    let cross = planted
        .post_to_with("/dashboard/sign-in", &fields, &cross_site)
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(cross.set_cookie(SESSION_COOKIE).is_none());
    let mut tokenless = fields.clone();
    tokenless.retain(|(name, _)| name != "csrf_token");
    let no_token = planted.post(&tokenless).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(no_token.set_cookie(SESSION_COOKIE).is_none());
    planted.cookies.remove(CSRF_COOKIE);
    let no_cookie = planted.post(&fields).await;
    assert_eq!(no_cookie.status, StatusCode::FORBIDDEN);
    assert!(no_cookie.set_cookie(SESSION_COOKIE).is_none());
    assert!(!is_signed_in(&mut planted).await);

    let signed_out = fixture
        .audit(&fixture.admin, AuditAction::UserSignedOut)
        .await;
    assert!(signed_out.is_empty(), "{signed_out:?}");
    let signed_in = fixture
        .audit(&fixture.developer, AuditAction::UserSignedIn)
        .await;
    assert!(
        signed_in
            .iter()
            .all(|event| event.target != Some(fixture.developer.id.to_string())),
        "{signed_in:?}"
    );
    fixture.server.stop().await;
}

#[tokio::test]
async fn malformed_forms_rejected() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();
    let fields = Fixture::sign_in_fields(&mut browser, "acme", "ops@example.com", PASSWORD).await;

    let mut repeated = fields.clone();
    repeated.push(("tenant".to_owned(), "globex".to_owned()));
    let reply = browser.post(&repeated).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_page_headers(&reply, "repeated field");
    assert!(reply.set_cookie(SESSION_COOKIE).is_none());

    let origin = browser.origin.clone();
    let json = browser
        .request(
            Method::POST,
            "/dashboard/sign-in",
            &[
                ("origin", origin.as_str()),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut huge = fields.clone();
    huge.push(("padding".to_owned(), "x".repeat(20_000)));
    let reply = browser.post(&huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!is_signed_in(&mut browser).await);
    let _ = &fixture.outsider;
    fixture.server.stop().await;
}

#[tokio::test]
async fn stylesheet_and_unknown_paths() {
    let fixture = fixture().await;
    let mut browser = fixture.browser();

    let bare = browser.get("/dashboard").await;
    assert_eq!(bare.status, StatusCode::SEE_OTHER);
    assert_eq!(bare.location(), Some("/dashboard/"));

    let form = browser.get("/dashboard/sign-in").await;
    let start = form.body.find("href=\"/dashboard/static/").unwrap() + "href=\"".len();
    let length = form.body[start..].find('"').unwrap();
    let stylesheet_path = form.body[start..start + length].to_owned();
    let stylesheet = browser.get(&stylesheet_path).await;
    assert_eq!(stylesheet.status, StatusCode::OK);
    assert_security_headers(&stylesheet, "style sheet");
    assert_eq!(stylesheet.header("content-type"), "text/css; charset=utf-8");
    assert_eq!(
        stylesheet.header("cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(stylesheet.body.contains("font"), "{}", stylesheet.body);
    assert!(
        !stylesheet.body.contains("url("),
        "the sheet loads other resources"
    );

    for path in [
        "/dashboard/static/dashboard.css",
        "/dashboard/static/dashboard-0000000000000000.css",
        "/dashboard/nowhere/else",
        "/dashboard/nowhere",
    ] {
        let reply = browser.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_page_headers(&reply, path);
    }
    let _ = &fixture.outsider;
    fixture.server.stop().await;
}
