//! The dashboard's key pages through one real server: the list, creating a
//! key, rotating and revoking it, what each role may do, tenant isolation
//! and the CSRF check of the revoke form.

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
use serde_json::{Value, json};
use support::browser::{Browser, Reply, unescape};
use support::{DataDir, Server};

const PASSWORD: &str = "correct horse battery staple";
const EVIL_ORIGIN: &str = "https://evil.example.test";

/// Tenants `acme` (an admin, a developer and a viewer) and `globex` (an
/// admin), and an operator key that may verify keys.
struct Fixture {
    server: Server,
    data: DataDir,
    verifier: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "globex"]);
    for (tenant, email, role) in [
        ("acme", "admin@acme.test", "admin"),
        ("acme", "dev@acme.test", "developer"),
        ("acme", "dev2@acme.test", "developer"),
        ("acme", "viewer@acme.test", "viewer"),
        ("globex", "admin@globex.test", "admin"),
    ] {
        data.create_user(tenant, email, role, PASSWORD);
    }
    let (_, verifier) = data.create_key(&["--operator", "--scopes", "keys:verify"]);
    data.write_config(
        r#"
[dashboard]
key_expiry_default = "30d"
key_expiry_max = "90d"
scopes = ["orders:read", "orders:write"]
"#,
    );
    let server = Server::start(&data);
    Fixture {
        server,
        data,
        verifier,
    }
});

/// Signs `email` of `tenant` in and returns the browser.
async fn signed_in(tenant: &str, email: &str) -> Browser {
    Browser::signed_in(&FIXTURE.server, tenant, email, PASSWORD).await
}

/// The CSRF token of `page`, followed by `extra`.
async fn form_fields(
    browser: &mut Browser,
    page: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    browser.csrf_fields(page, extra).await
}

/// Creates a key in the dashboard and returns (id, secret, page).
async fn create_key(browser: &mut Browser, name: &str) -> (String, String, Reply) {
    let fields = form_fields(
        browser,
        "/dashboard/keys/new",
        &[
            ("name", name),
            ("scope.0", "orders:read"),
            ("expires_in_days", "30"),
            ("environment", "test"),
        ],
    )
    .await;
    let reply = browser.post_to("/dashboard/keys", &fields).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let secret = secret_on(&reply);
    let id = key_link(&reply.body);
    (id, secret, reply)
}

/// The secret shown in the page's `<code id="secret">`.
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

/// The id in the page's "Go to the key" link.
fn key_link(body: &str) -> String {
    let marker = "<a href=\"/dashboard/keys/";
    let start = body.find(marker).expect("a key link") + marker.len();
    let rest = &body[start..];
    rest[..rest.find('"').unwrap()].to_owned()
}

async fn verify(secret: &str) -> Value {
    let f = &*FIXTURE;
    let response = f
        .server
        .client()
        .post(f.server.url("/v1/keys/verify"))
        .bearer_auth(&f.verifier)
        .json(&json!({ "key": secret }))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// The key as `keys list --output json` prints it.
fn stored_key(tenant: &str, id: &str) -> Value {
    FIXTURE.data.tenant_key(tenant, id)
}

/// Asks the gateway until the key is refused, at most 30 times 100 ms.
/// The revocation reaches the cache through the change feed.
async fn wait_refused(secret: &str) -> Value {
    let mut verdict = verify(secret).await;
    for _ in 0..30 {
        if verdict["valid"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        verdict = verify(secret).await;
    }
    verdict
}

#[tokio::test]
async fn admin_creates_rotates_revokes_key() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (id, secret, page) = create_key(&mut admin, "billing sync").await;
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.body.contains("shown only once"), "{}", page.body);
    assert!(secret.starts_with("pc_test_"), "{secret}");
    assert_eq!(verify(&secret).await["valid"], true);

    let stored = stored_key("acme", &id);
    assert_eq!(stored["scopes"], json!(["orders:read"]));
    assert_eq!(stored["name"], "billing sync");
    assert!(
        stored["created_by"].as_str().unwrap().starts_with("user:"),
        "{stored}"
    );
    assert!(stored["expires_at"].is_string(), "{stored}");

    // The list shows the key with its creator, and never its secret.
    let list = admin.get("/dashboard/keys").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("billing sync"), "{}", list.body);
    assert!(list.body.contains("admin@acme.test"), "{}", list.body);
    assert!(list.body.contains(&secret[..12]), "{}", list.body);
    assert!(!list.body.contains(&secret), "the list showed a secret");

    // Rotation shows a new secret; the old key works during the grace.
    let fields = form_fields(
        &mut admin,
        &format!("/dashboard/keys/{id}/rotate"),
        &[("grace_hours", "2")],
    )
    .await;
    let rotated = admin
        .post_to(&format!("/dashboard/keys/{id}/rotate"), &fields)
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.header("cache-control"), "no-store");
    let new_secret = secret_on(&rotated);
    let new_id = key_link(&rotated.body);
    assert_ne!(new_id, id);
    assert_eq!(stored_key("acme", &id)["status"], "rotating");
    assert_eq!(verify(&new_secret).await["valid"], true);
    assert_eq!(
        stored_key("acme", &new_id)["created_by"],
        stored["created_by"]
    );

    // The confirmation page names the key before it is revoked.
    let confirm = admin.get(&format!("/dashboard/keys/{new_id}/revoke")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("Revoke key billing sync"),
        "{}",
        confirm.body
    );
    let fields = form_fields(
        &mut admin,
        &format!("/dashboard/keys/{new_id}/revoke"),
        &[("reason", "integration retired")],
    )
    .await;
    let revoked = admin
        .post_to(&format!("/dashboard/keys/{new_id}/revoke"), &fields)
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    let stored = stored_key("acme", &new_id);
    assert_eq!(stored["status"], "revoked");
    assert_eq!(stored["revoked_reason"], "integration retired");
    assert_eq!(wait_refused(&new_secret).await["code"], "revoked");

    // The revocation is audited like the CLI's, with the user as actor.
    let output = FIXTURE
        .data
        .cli(&["audit-log", "export", "--tenant", "acme"]);
    let lines = String::from_utf8(output.stdout).unwrap();
    let record = lines
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|record| record["action"] == "key.revoked" && record["target"] == new_id.as_str())
        .unwrap_or_else(|| panic!("no revocation record for {new_id}: {lines}"));
    assert_eq!(record["actor"], stored["created_by"], "{record}");
    assert!(!lines.contains(&new_secret), "the audit log holds a secret");
}

#[tokio::test]
async fn create_form_errors_name_fields() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[
                ("name", "red\u{1B}[31m"),
                ("scope.0", "orders:read"),
                ("expires_in_days", "30"),
                ("environment", "live"),
            ],
            "Name: key name contains the character U+001B at position 4",
        ),
        (
            &[
                ("name", "pay\u{202E}lanif"),
                ("scope.0", "orders:read"),
                ("expires_in_days", "30"),
                ("environment", "live"),
            ],
            "Name: key name contains the character U+202E at position 4",
        ),
        (
            &[
                ("scope.0", "orders:read"),
                ("expires_in_days", "30"),
                ("environment", "live"),
            ],
            "Name:",
        ),
        (
            &[
                ("name", "rejected form"),
                ("expires_in_days", "30"),
                ("environment", "live"),
            ],
            "Scopes: choose at least one",
        ),
        (
            &[
                ("name", "rejected form"),
                ("scope.0", "admin:write"),
                ("expires_in_days", "30"),
                ("environment", "live"),
            ],
            "Scopes: choose only scopes from the list",
        ),
        (
            &[
                ("name", "rejected form"),
                ("scope.0", "orders:read"),
                ("expires_in_days", "91"),
                ("environment", "live"),
            ],
            "Expires in: enter a whole number of days from 1 to 90",
        ),
        (
            &[
                ("name", "rejected form"),
                ("scope.0", "orders:read"),
                ("expires_in_days", "30"),
                ("environment", "prod"),
            ],
            "Environment: choose live or test",
        ),
    ];
    for (extra, message) in cases {
        let fields = form_fields(&mut admin, "/dashboard/keys/new", extra).await;
        let reply = admin.post_to("/dashboard/keys", &fields).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{message}");
        assert!(reply.body.contains(message), "{message}: {}", reply.body);
        assert!(!reply.body.contains("id=\"secret\""), "{message}");
    }
    // No case stored a key, whatever other tests create meanwhile.
    let keys = FIXTURE.data.cli_json(&["keys", "list", "--tenant", "acme"]);
    let stored = keys["keys"].as_array().unwrap();
    assert!(
        stored.iter().all(|key| key["name"] != "rejected form"),
        "{keys}"
    );
    assert!(
        stored.iter().all(|key| {
            let name = key["name"].as_str().unwrap_or_default();
            !name.contains(['\u{1B}', '\u{202E}'])
        }),
        "{keys}"
    );
}

#[tokio::test]
async fn viewer_reads_but_cannot_change() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (id, secret, _) = create_key(&mut admin, "viewer target").await;

    let mut viewer = signed_in("acme", "viewer@acme.test").await;
    let list = viewer.get("/dashboard/keys").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("viewer target"), "{}", list.body);
    assert!(!list.body.contains("/dashboard/keys/new"), "{}", list.body);
    let page = viewer.get(&format!("/dashboard/keys/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("/revoke"), "{}", page.body);
    assert!(!page.body.contains("/rotate"), "{}", page.body);
    assert_eq!(
        viewer.get("/dashboard/keys/new").await.status,
        StatusCode::FORBIDDEN
    );

    // Forms posted with a valid token are still refused.
    let token = form_fields(&mut viewer, "/dashboard/keys", &[]).await;
    let mut create = token.clone();
    create.extend([
        ("name".to_owned(), "x".to_owned()),
        ("scope.0".to_owned(), "orders:read".to_owned()),
        ("expires_in_days".to_owned(), "30".to_owned()),
        ("environment".to_owned(), "live".to_owned()),
    ]);
    let reply = viewer.post_to("/dashboard/keys", &create).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    for action in ["rotate", "revoke"] {
        let mut fields = token.clone();
        fields.push(("grace_hours".to_owned(), "1".to_owned()));
        let reply = viewer
            .post_to(&format!("/dashboard/keys/{id}/{action}"), &fields)
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(stored_key("acme", &id)["status"], "active");
    assert_eq!(verify(&secret).await["valid"], true);
}

#[tokio::test]
async fn developer_manages_only_own_keys() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (admin_key, _, _) = create_key(&mut admin, "admin owned").await;
    let mut developer = signed_in("acme", "dev@acme.test").await;
    let (own_key, _, _) = create_key(&mut developer, "dev owned").await;

    // The developer reads every key of the tenant.
    let list = developer.get("/dashboard/keys").await;
    assert!(list.body.contains("admin owned"), "{}", list.body);
    assert!(list.body.contains("dev owned"), "{}", list.body);

    let fields = form_fields(&mut developer, "/dashboard/keys", &[]).await;
    let reply = developer
        .post_to(&format!("/dashboard/keys/{admin_key}/revoke"), &fields)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(stored_key("acme", &admin_key)["status"], "active");

    // Another developer's key is not theirs either.
    let mut other = signed_in("acme", "dev2@acme.test").await;
    let fields = form_fields(&mut other, "/dashboard/keys", &[]).await;
    let reply = other
        .post_to(&format!("/dashboard/keys/{own_key}/revoke"), &fields)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(stored_key("acme", &own_key)["status"], "active");

    let fields = form_fields(&mut developer, "/dashboard/keys", &[]).await;
    let reply = developer
        .post_to(&format!("/dashboard/keys/{own_key}/revoke"), &fields)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(stored_key("acme", &own_key)["status"], "revoked");
}

#[tokio::test]
async fn other_tenant_key_not_found() {
    let (globex_key, globex_secret) =
        FIXTURE
            .data
            .create_key(&["--tenant", "globex", "--scopes", "orders:read"]);
    let mut admin = signed_in("acme", "admin@acme.test").await;
    for page in [
        format!("/dashboard/keys/{globex_key}"),
        format!("/dashboard/keys/{globex_key}/rotate"),
        format!("/dashboard/keys/{globex_key}/revoke"),
        "/dashboard/keys/not-a-key-id".to_owned(),
    ] {
        let reply = admin.get(&page).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "GET {page}");
    }
    let list = admin.get("/dashboard/keys").await;
    assert!(!list.body.contains(&globex_key), "{}", list.body);

    let token = form_fields(&mut admin, "/dashboard/keys", &[]).await;
    for action in ["rotate", "revoke"] {
        let mut fields = token.clone();
        fields.push(("grace_hours".to_owned(), "1".to_owned()));
        let path = format!("/dashboard/keys/{globex_key}/{action}");
        let reply = admin.post_to(&path, &fields).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "POST {path}");
    }
    let stored = stored_key("globex", &globex_key);
    assert_eq!(stored["status"], "active");
    assert_eq!(stored["rotated_to"], Value::Null);
    assert_eq!(verify(&globex_secret).await["valid"], true);
}

/// A revoke form posted from another site, with the victim's cookie but
/// without the page's token, is refused with 403 and the key stays active.
/// A CORS preflight for that path grants nothing.
#[tokio::test]
async fn cross_site_revoke_rejected() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (id, secret, _) = create_key(&mut admin, "csrf target").await;
    let path = format!("/dashboard/keys/{id}/revoke");

    let preflight = admin
        .request(
            reqwest::Method::OPTIONS,
            &path,
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

    let no_token = vec![("reason".to_owned(), "x".to_owned())];
    let reply = admin
        .post_to_with(&path, &no_token, &[("origin", EVIL_ORIGIN)])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = admin.post_to(&path, &no_token).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "same origin, no token");

    // A valid token does not help a post from another origin.
    let with_token = form_fields(&mut admin, &path, &[]).await;
    let reply = admin
        .post_to_with(&path, &with_token, &[("origin", EVIL_ORIGIN)])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    assert_eq!(stored_key("acme", &id)["status"], "active");
    assert_eq!(verify(&secret).await["valid"], true);
}
