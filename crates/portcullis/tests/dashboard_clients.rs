//! The dashboard's OAuth client pages through one real server: the list,
//! registering a client, rotating its secret, revoking it, editing its
//! redirect URIs, what each role may do, tenant isolation and the CSRF
//! check of the forms.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;

use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Browser, Reply, unescape};
use support::{DataDir, Server};

const PASSWORD: &str = "correct horse battery staple";
const EVIL_ORIGIN: &str = "https://evil.example.test";

/// Tenants `acme` (an admin, two developers and a viewer) and `globex` (an
/// admin), with the internal CA and client certificates accepted.
struct Fixture {
    server: Server,
    data: DataDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "globex"]);
    data.cli(&["ca", "init"]);
    for (tenant, email, role) in [
        ("acme", "admin@acme.test", "admin"),
        ("acme", "dev@acme.test", "developer"),
        ("acme", "dev2@acme.test", "developer"),
        ("acme", "viewer@acme.test", "viewer"),
        ("globex", "admin@globex.test", "admin"),
    ] {
        data.create_user(tenant, email, role, PASSWORD);
    }
    data.write_config(
        r#"
[server]
client_certificates = "optional"

[dashboard]
scopes = ["orders:read", "orders:write"]
"#,
    );
    let server = Server::start(&data);
    Fixture { server, data }
});

/// Signs `email` of `tenant` in and returns the browser.
async fn signed_in(tenant: &str, email: &str) -> Browser {
    Browser::signed_in(&FIXTURE.server, tenant, email, PASSWORD).await
}

/// Returns the form fields of a confidential `client_credentials` client
/// named `name` that authenticates with `client_secret_basic`.
fn secret_client_fields(name: &str) -> Vec<(&str, &str)> {
    vec![
        ("name", name),
        ("client_type", "confidential"),
        ("grant_type.1", "client_credentials"),
        ("scope.0", "orders:read"),
        ("auth_method", "client_secret_basic"),
        ("tls_subject_kind", "internal_ca"),
    ]
}

/// Registers a client in the dashboard with `fields` and returns the reply.
async fn register(browser: &mut Browser, fields: &[(&str, &str)]) -> Reply {
    let fields = browser.csrf_fields("/dashboard/clients/new", fields).await;
    browser.post_to("/dashboard/clients", &fields).await
}

/// Registers a secret client and returns (id, secret, page).
async fn create_secret_client(browser: &mut Browser, name: &str) -> (String, String, Reply) {
    let reply = register(browser, &secret_client_fields(name)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let secret = secret_on(&reply);
    let id = client_link(&reply.body);
    (id, secret, reply)
}

/// Returns the secret in the page's `<code id="secret">`.
fn secret_on(reply: &Reply) -> String {
    let start = reply
        .body
        .find("id=\"secret\"")
        .expect("a secret on the page");
    let rest = &reply.body[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</code>").unwrap();
    unescape(&rest[open..close])
}

/// Returns the client id in the page's "Go to the client" link.
fn client_link(body: &str) -> String {
    let marker = "<a href=\"/dashboard/clients/";
    let start = body.find(marker).expect("a client link") + marker.len();
    let rest = &body[start..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Returns the client as `clients list --output json` prints it.
fn stored_client(tenant: &str, id: &str) -> Value {
    let clients = FIXTURE
        .data
        .cli_json(&["clients", "list", "--tenant", tenant]);
    clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|client| client["client_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("client {id} not listed for {tenant}: {clients}"))
}

/// Requests a `client_credentials` token with the client's secret and
/// returns the status.
async fn token_status(client_id: &str, secret: &str) -> StatusCode {
    let f = &*FIXTURE;
    f.server
        .client()
        .post(f.server.url("/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=orders%3Aread")
        .send()
        .await
        .unwrap()
        .status()
}

/// Returns the tenant's audit records of `action` about `target`.
fn audit_records(tenant: &str, action: &str, target: &str) -> Vec<Value> {
    FIXTURE.data.audit_records(tenant, action, target)
}

/// Registers a client of `tenant` through the CLI and returns its id.
fn cli_client(tenant: &str) -> String {
    let created = FIXTURE.data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        tenant,
        "--name",
        "CLI app",
        "--grant-types",
        "authorization_code",
        "--scopes",
        "orders:read",
        "--redirect-uri",
        "https://app.example.com/callback",
    ]);
    created["client_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn admin_registers_rotates_revokes_client() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (id, secret, page) = create_secret_client(&mut admin, "Billing sync").await;
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.body.contains("shown only once"), "{}", page.body);
    assert!(page.body.contains("data-copy=\"secret\""), "{}", page.body);
    assert_eq!(token_status(&id, &secret).await, StatusCode::OK);

    let stored = stored_client("acme", &id);
    assert_eq!(stored["client_name"], "Billing sync");
    assert_eq!(stored["scope"], "orders:read");
    assert_eq!(stored["token_endpoint_auth_method"], "client_secret_basic");
    let actor = stored["created_by"].as_str().unwrap().to_owned();
    assert!(actor.starts_with("user:"), "{stored}");

    // The list shows the client with its creator, and never its secret.
    let list = admin.get("/dashboard/clients").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("Billing sync"), "{}", list.body);
    assert!(list.body.contains(&id), "{}", list.body);
    assert!(list.body.contains("admin@acme.test"), "{}", list.body);
    assert!(list.body.contains("confidential"), "{}", list.body);
    assert!(!list.body.contains(&secret), "the list showed a secret");

    // A rotation without grace ends the old secret at once.
    let path = format!("/dashboard/clients/{id}/rotate");
    let fields = admin.csrf_fields(&path, &[("grace_hours", "0")]).await;
    let rotated = admin.post_to(&path, &fields).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.header("cache-control"), "no-store");
    let new_secret = secret_on(&rotated);
    assert_ne!(new_secret, secret);
    assert_eq!(token_status(&id, &new_secret).await, StatusCode::OK);
    assert_eq!(token_status(&id, &secret).await, StatusCode::UNAUTHORIZED);

    // The confirmation page names the client before it is revoked.
    let path = format!("/dashboard/clients/{id}/revoke");
    let confirm = admin.get(&path).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Revoke client Billing sync"),
        "{}",
        confirm.body
    );
    let fields = admin
        .csrf_fields(&path, &[("reason", "integration retired")])
        .await;
    let revoked = admin.post_to(&path, &fields).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(stored_client("acme", &id)["status"], "revoked");
    assert_eq!(
        token_status(&id, &new_secret).await,
        StatusCode::UNAUTHORIZED
    );

    // Each change is audited as the CLI's, with the user as actor.
    for action in ["client.created", "client.secret_added", "client.revoked"] {
        let records = audit_records("acme", action, &id);
        assert_eq!(records.len(), 1, "{action}: {records:?}");
        assert_eq!(records[0]["actor"], actor.as_str(), "{action}");
    }
    let revoked = &audit_records("acme", "client.revoked", &id)[0];
    assert_eq!(revoked["details"]["reason"], "integration retired");
}

#[tokio::test]
async fn public_client_has_no_secret() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let reply = register(
        &mut admin,
        &[
            ("name", "Mobile app"),
            ("client_type", "public"),
            ("grant_type.0", "authorization_code"),
            ("scope.0", "orders:read"),
            ("auth_method", "client_secret_basic"),
            ("tls_subject_kind", "internal_ca"),
            ("redirect_uri.0", "http://127.0.0.1/callback"),
            ("redirect_uri.1", "com.example.app:/oauth"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let id = reply
        .location()
        .unwrap()
        .strip_prefix("/dashboard/clients/")
        .unwrap()
        .to_owned();
    let stored = stored_client("acme", &id);
    assert_eq!(stored["token_endpoint_auth_method"], "none");
    assert_eq!(
        stored["redirect_uris"],
        serde_json::json!(["http://127.0.0.1/callback", "com.example.app:/oauth"])
    );
    let page = admin.get(&format!("/dashboard/clients/{id}")).await;
    assert!(page.body.contains("public"), "{}", page.body);
    assert!(!page.body.contains("/rotate"), "{}", page.body);
}

/// The redirect URIs that registration rejects, one of each kind, with
/// the words of the message shown next to the field.
const REJECTED_URIS: [(&str, &str); 7] = [
    ("https://app.example.com*", "must not contain '*'"),
    ("https://*.example.com/callback", "must not contain '*'"),
    ("https://app.example.com/callback#top", "fragment"),
    ("http://app.example.com/callback", "use https"),
    ("/callback", "not an absolute URI"),
    (
        "https://user:pw@app.example.com/callback",
        "user name or password",
    ),
    (
        "javascript:alert(1)",
        "scheme \"javascript\" is not allowed",
    ),
];

#[tokio::test]
async fn create_form_rejects_each_uri() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    for (uri, message) in REJECTED_URIS {
        let reply = register(
            &mut admin,
            &[
                ("name", "rejected client"),
                ("client_type", "confidential"),
                ("grant_type.0", "authorization_code"),
                ("scope.0", "orders:read"),
                ("auth_method", "client_secret_basic"),
                ("tls_subject_kind", "internal_ca"),
                ("redirect_uri.0", "https://app.example.com/ok"),
                ("redirect_uri.1", uri),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        let body = unescape(&reply.body);
        assert!(body.contains(message), "{uri}: {body}");
        // The message is next to the second field, which keeps the
        // typed URI, and the first field keeps its own.
        let field = body.find("id=\"redirect_uri-1\"").unwrap();
        let error = body.find("id=\"redirect_uri-1-error\"").unwrap();
        assert!(error > field, "{uri}: {body}");
        assert!(body[field..error].contains(uri), "{uri}: {body}");
        assert!(
            body.contains("value=\"https://app.example.com/ok\""),
            "{uri}"
        );
        assert!(body.contains("value=\"rejected client\""), "{uri}");
        assert!(!body.contains("id=\"secret\""), "{uri}");
    }

    let other_cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("name", "rejected client"),
                ("client_type", "confidential"),
                ("grant_type.1", "client_credentials"),
                ("scope.0", "admin:write"),
                ("auth_method", "client_secret_basic"),
            ],
            "Scopes: choose only scopes from the list",
        ),
        (
            &[
                ("name", "rejected client"),
                ("client_type", "confidential"),
                ("scope.0", "orders:read"),
                ("auth_method", "client_secret_basic"),
            ],
            "Grant types: choose at least one",
        ),
        (
            &[
                ("name", "rejected client"),
                ("client_type", "confidential"),
                ("grant_type.0", "authorization_code"),
                ("scope.0", "orders:read"),
                ("auth_method", "client_secret_basic"),
            ],
            "Redirect URIs: the authorization_code grant needs at least one redirect URI",
        ),
        (
            &[
                ("name", "rejected client"),
                ("client_type", "public"),
                ("grant_type.1", "client_credentials"),
                ("scope.0", "orders:read"),
            ],
            "Grant types: a public client cannot use client_credentials",
        ),
        (
            &[
                ("name", "rejected client"),
                ("client_type", "confidential"),
                ("grant_type.1", "client_credentials"),
                ("scope.0", "orders:read"),
                ("auth_method", "tls_client_auth"),
                ("tls_subject_kind", "tls_client_auth_san_uri"),
                (
                    "tls_subject_value",
                    "URN:portcullis:client:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                ),
            ],
            "namespace, which the internal CA reserves",
        ),
    ];
    for (fields, message) in other_cases {
        let reply = register(&mut admin, fields).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
        assert!(
            unescape(&reply.body).contains(message),
            "{message}: {}",
            reply.body
        );
    }

    // No case registered a client.
    let clients = FIXTURE
        .data
        .cli_json(&["clients", "list", "--tenant", "acme"]);
    let stored = clients["clients"].as_array().unwrap();
    assert!(
        stored
            .iter()
            .all(|client| client["client_name"] != "rejected client"),
        "{clients}"
    );
}

#[tokio::test]
async fn redirect_uris_edited_and_checked() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let reply = register(
        &mut admin,
        &[
            ("name", "Web app"),
            ("client_type", "confidential"),
            ("grant_type.0", "authorization_code"),
            ("scope.0", "orders:read"),
            ("auth_method", "client_secret_basic"),
            ("redirect_uri.0", "https://app.example.com/callback"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let id = client_link(&reply.body);
    let path = format!("/dashboard/clients/{id}/redirect-uris");

    let form = admin.get(&path).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body
            .contains("value=\"https://app.example.com/callback\""),
        "{}",
        form.body
    );

    for (uri, message) in REJECTED_URIS {
        let fields = admin
            .csrf_fields(
                &path,
                &[
                    ("redirect_uri.0", "https://app.example.com/new"),
                    ("redirect_uri.1", uri),
                ],
            )
            .await;
        let reply = admin.post_to(&path, &fields).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        let body = unescape(&reply.body);
        assert!(body.contains(message), "{uri}: {body}");
        assert!(body.contains("id=\"redirect_uri-1-error\""), "{uri}");
        assert!(
            body.contains("value=\"https://app.example.com/new\""),
            "{uri}"
        );
        assert!(body.contains(&format!("value=\"{uri}\"")), "{uri}: {body}");
    }

    // Removing every URI of an authorization_code client is refused too.
    let fields = admin.csrf_fields(&path, &[("redirect_uri.0", "")]).await;
    let reply = admin.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply.body.contains("needs at least one redirect URI"),
        "{}",
        reply.body
    );
    assert_eq!(
        stored_client("acme", &id)["redirect_uris"],
        serde_json::json!(["https://app.example.com/callback"])
    );
    assert!(audit_records("acme", "client.redirect_uris_changed", &id).is_empty());

    let fields = admin
        .csrf_fields(
            &path,
            &[
                ("redirect_uri.0", "https://app.example.com/new"),
                ("redirect_uri.1", "http://[::1]/native"),
            ],
        )
        .await;
    let reply = admin.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        stored_client("acme", &id)["redirect_uris"],
        serde_json::json!(["https://app.example.com/new", "http://[::1]/native"])
    );
    let records = audit_records("acme", "client.redirect_uris_changed", &id);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["details"]["previous_redirect_uris"],
        serde_json::json!(["https://app.example.com/callback"])
    );
}

#[tokio::test]
async fn viewer_reads_but_cannot_change() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (id, secret, _) = create_secret_client(&mut admin, "Viewer target").await;

    let mut viewer = signed_in("acme", "viewer@acme.test").await;
    let list = viewer.get("/dashboard/clients").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("Viewer target"), "{}", list.body);
    assert!(
        !list.body.contains("/dashboard/clients/new"),
        "{}",
        list.body
    );
    let page = viewer.get(&format!("/dashboard/clients/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("/revoke"), "{}", page.body);
    assert!(!page.body.contains("/rotate"), "{}", page.body);
    for form in [
        "new".to_owned(),
        format!("{id}/rotate"),
        format!("{id}/revoke"),
    ] {
        let reply = viewer.get(&format!("/dashboard/clients/{form}")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "GET {form}");
    }

    // Forms posted with a valid token are still refused.
    let token = viewer.csrf_fields("/dashboard/clients", &[]).await;
    let mut create = token.clone();
    for (name, value) in secret_client_fields("viewer made") {
        create.push((name.to_owned(), value.to_owned()));
    }
    let reply = viewer.post_to("/dashboard/clients", &create).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    for action in ["rotate", "revoke", "redirect-uris"] {
        let mut fields = token.clone();
        fields.push(("grace_hours".to_owned(), "0".to_owned()));
        fields.push((
            "redirect_uri.0".to_owned(),
            "https://evil.example.test/".to_owned(),
        ));
        let path = format!("/dashboard/clients/{id}/{action}");
        let reply = viewer.post_to(&path, &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{action}");
    }
    let stored = stored_client("acme", &id);
    assert_eq!(stored["status"], "active");
    assert_eq!(stored["redirect_uris"], serde_json::json!([]));
    assert_eq!(token_status(&id, &secret).await, StatusCode::OK);
}

#[tokio::test]
async fn developer_manages_only_own_clients() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (admin_client, _, _) = create_secret_client(&mut admin, "Admin owned").await;
    let mut developer = signed_in("acme", "dev@acme.test").await;
    let (own_client, own_secret, _) = create_secret_client(&mut developer, "Dev owned").await;

    // The developer reads every client of the tenant.
    let list = developer.get("/dashboard/clients").await;
    assert!(list.body.contains("Admin owned"), "{}", list.body);
    assert!(list.body.contains("Dev owned"), "{}", list.body);
    let page = developer
        .get(&format!("/dashboard/clients/{admin_client}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("/revoke"), "{}", page.body);

    let token = developer.csrf_fields("/dashboard/clients", &[]).await;
    let mut fields = token.clone();
    fields.push(("grace_hours".to_owned(), "0".to_owned()));
    for action in ["rotate", "revoke"] {
        let path = format!("/dashboard/clients/{admin_client}/{action}");
        let reply = developer.post_to(&path, &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(stored_client("acme", &admin_client)["status"], "active");
    assert!(audit_records("acme", "client.secret_added", &admin_client).is_empty());

    // Another developer's client is not theirs either.
    let mut other = signed_in("acme", "dev2@acme.test").await;
    let fields = other.csrf_fields("/dashboard/clients", &[]).await;
    let path = format!("/dashboard/clients/{own_client}/revoke");
    let reply = other.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(token_status(&own_client, &own_secret).await, StatusCode::OK);

    let fields = developer.csrf_fields(&path, &[]).await;
    let reply = developer.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(stored_client("acme", &own_client)["status"], "revoked");
}

#[tokio::test]
async fn other_tenant_client_not_found() {
    let globex_client = cli_client("globex");
    let mut admin = signed_in("acme", "admin@acme.test").await;
    for page in [
        format!("/dashboard/clients/{globex_client}"),
        format!("/dashboard/clients/{globex_client}/rotate"),
        format!("/dashboard/clients/{globex_client}/revoke"),
        format!("/dashboard/clients/{globex_client}/redirect-uris"),
        "/dashboard/clients/not-a-client-id".to_owned(),
    ] {
        let reply = admin.get(&page).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "GET {page}");
    }
    let list = admin.get("/dashboard/clients").await;
    assert!(!list.body.contains(&globex_client), "{}", list.body);

    let token = admin.csrf_fields("/dashboard/clients", &[]).await;
    for action in ["rotate", "revoke", "redirect-uris"] {
        let mut fields = token.clone();
        fields.push(("grace_hours".to_owned(), "0".to_owned()));
        fields.push((
            "redirect_uri.0".to_owned(),
            "https://evil.example.test/".to_owned(),
        ));
        let path = format!("/dashboard/clients/{globex_client}/{action}");
        let reply = admin.post_to(&path, &fields).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "POST {path}");
    }
    let stored = stored_client("globex", &globex_client);
    assert_eq!(stored["status"], "active");
    assert_eq!(
        stored["redirect_uris"],
        serde_json::json!(["https://app.example.com/callback"])
    );
    for action in [
        "client.secret_added",
        "client.revoked",
        "client.redirect_uris_changed",
    ] {
        assert!(
            audit_records("globex", action, &globex_client).is_empty(),
            "{action}"
        );
    }
}

/// Client forms posted from another site, with the victim's cookie but
/// without the page's token, are refused with 403 and change nothing. A
/// CORS preflight grants nothing.
#[tokio::test]
async fn cross_site_client_forms_rejected() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (id, secret, _) = create_secret_client(&mut admin, "CSRF target").await;

    let revoke = format!("/dashboard/clients/{id}/revoke");
    let preflight = admin
        .request(
            reqwest::Method::OPTIONS,
            &revoke,
            &[
                ("origin", EVIL_ORIGIN),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert!(
        preflight
            .headers
            .get("access-control-allow-origin")
            .is_none()
    );
    assert!(
        preflight
            .headers
            .get("access-control-allow-credentials")
            .is_none()
    );

    let no_token = vec![
        ("reason".to_owned(), "x".to_owned()),
        ("grace_hours".to_owned(), "0".to_owned()),
        (
            "redirect_uri.0".to_owned(),
            "https://evil.example.test/".to_owned(),
        ),
    ];
    let mut create = no_token.clone();
    for (name, value) in secret_client_fields("cross-site made") {
        create.push((name.to_owned(), value.to_owned()));
    }
    for path in [
        revoke.clone(),
        format!("/dashboard/clients/{id}/rotate"),
        format!("/dashboard/clients/{id}/redirect-uris"),
    ] {
        let reply = admin
            .post_to_with(&path, &no_token, &[("origin", EVIL_ORIGIN)])
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        let reply = admin.post_to(&path, &no_token).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}, same origin");
    }
    let reply = admin.post_to("/dashboard/clients", &create).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // A valid token does not help a post from another origin.
    let with_token = admin.csrf_fields(&revoke, &[]).await;
    let reply = admin
        .post_to_with(&revoke, &with_token, &[("origin", EVIL_ORIGIN)])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let stored = stored_client("acme", &id);
    assert_eq!(stored["status"], "active");
    assert_eq!(stored["redirect_uris"], serde_json::json!([]));
    assert_eq!(token_status(&id, &secret).await, StatusCode::OK);
    assert!(audit_records("acme", "client.secret_added", &id).is_empty());
}
