//! The dashboard forms whose response shows a secret once, sent twice as a
//! browser does on reload, back and forward, or a double click: the second
//! POST creates nothing, audits nothing and links to what the first made.
//! Also the submission token's checks: missing, from another session, from
//! another form, and kept by a form shown again after a rejected POST, so
//! that one rendered form makes at most one key, client or invite.

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
use support::browser::{Browser, Reply, hidden_fields};
use support::{DataDir, Server};

const PASSWORD: &str = "correct horse battery staple";

/// The tests, one tenant each, so no test reads another's keys or audit
/// records.
const TENANTS: [&str; 12] = [
    "key-create",
    "key-rotate",
    "client-create",
    "client-rotate",
    "invite",
    "tokens",
    "retry",
    "retry-key-rotate",
    "retry-client-create",
    "retry-client-rotate",
    "retry-invite",
    "parallel",
];

struct Fixture {
    server: Server,
    data: DataDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let data = DataDir::new();
    for tenant in TENANTS {
        data.cli(&["tenants", "create", tenant]);
        data.create_user(tenant, &admin_email(tenant), "admin", PASSWORD);
    }
    data.write_config(
        r#"
[dashboard]
scopes = ["orders:read", "orders:write"]
"#,
    );
    let server = Server::start(&data);
    Fixture { server, data }
});

fn admin_email(tenant: &str) -> String {
    format!("admin@{tenant}.test")
}

async fn signed_in_admin(tenant: &str) -> Browser {
    Browser::signed_in(&FIXTURE.server, tenant, &admin_email(tenant), PASSWORD).await
}

fn key_fields(name: &str) -> Vec<(&str, &str)> {
    vec![
        ("name", name),
        ("scope.0", "orders:read"),
        ("expires_in_days", "30"),
        ("environment", "test"),
    ]
}

fn client_fields(name: &str) -> Vec<(&str, &str)> {
    vec![
        ("name", name),
        ("client_type", "confidential"),
        ("grant_type.1", "client_credentials"),
        ("scope.0", "orders:read"),
        ("auth_method", "client_secret_basic"),
        ("tls_subject_kind", "internal_ca"),
    ]
}

/// Lists the tenant's keys as `keys list --output json` prints them.
fn tenant_keys(tenant: &str) -> Vec<Value> {
    let keys = FIXTURE.data.cli_json(&["keys", "list", "--tenant", tenant]);
    keys["keys"].as_array().unwrap().clone()
}

/// Lists the tenant's clients as `clients list --output json` prints them.
fn tenant_clients(tenant: &str) -> Vec<Value> {
    let clients = FIXTURE
        .data
        .cli_json(&["clients", "list", "--tenant", tenant]);
    clients["clients"].as_array().unwrap().clone()
}

/// Returns the id in the first link to `prefix` followed by an id.
fn linked_id(body: &str, prefix: &str) -> String {
    let marker = format!("<a href=\"{prefix}");
    let start = body.find(&marker).expect("a link") + marker.len();
    let rest = &body[start..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Checks the page of a form sent again: 409, the heading, the notice that
/// the secret was shown once, the links, no secret and no caching.
fn assert_already_done(reply: &Reply, heading: &str, links: &[String]) {
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), "no-store");
    assert!(reply.body.contains(heading), "{}", reply.body);
    assert!(
        reply.body.contains("cannot be shown again"),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("id=\"secret\""), "{}", reply.body);
    for link in links {
        assert!(
            reply.body.contains(&format!("href=\"{link}\"")),
            "{link}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn key_create_sent_twice_creates_one_key() {
    let tenant = "key-create";
    let mut admin = signed_in_admin(tenant).await;
    let fields = admin
        .csrf_fields("/dashboard/keys/new", &key_fields("Twice"))
        .await;
    assert!(fields.iter().any(|(name, _)| name == "submission_token"));

    let first = admin.post_to("/dashboard/keys", &fields).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("cache-control"), "no-store");
    assert!(first.body.contains("id=\"secret\""), "{}", first.body);
    let id = linked_id(&first.body, "/dashboard/keys/");
    let audited = FIXTURE.data.exported_audit(tenant).len();

    let second = admin.post_to("/dashboard/keys", &fields).await;
    assert_already_done(
        &second,
        "Key already created",
        &[
            format!("/dashboard/keys/{id}"),
            format!("/dashboard/keys/{id}/rotate"),
        ],
    );
    let keys = tenant_keys(tenant);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["id"], id.as_str());
    assert_eq!(
        FIXTURE.data.exported_audit(tenant).len(),
        audited,
        "the second POST audited"
    );
}

#[tokio::test]
async fn key_rotate_sent_twice_rotates_once() {
    let tenant = "key-rotate";
    let (old, _) = FIXTURE.data.create_key(&[
        "--tenant",
        tenant,
        "--name",
        "CLI key",
        "--scopes",
        "orders:read",
    ]);
    let mut admin = signed_in_admin(tenant).await;
    let path = format!("/dashboard/keys/{old}/rotate");
    let fields = admin.csrf_fields(&path, &[("grace_hours", "1")]).await;

    let first = admin.post_to(&path, &fields).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("cache-control"), "no-store");
    let new = linked_id(&first.body, "/dashboard/keys/");
    assert_ne!(new, old);
    let audited = FIXTURE.data.exported_audit(tenant).len();

    let second = admin.post_to(&path, &fields).await;
    assert_already_done(
        &second,
        "Key already rotated",
        &[
            format!("/dashboard/keys/{new}"),
            format!("/dashboard/keys/{new}/rotate"),
        ],
    );
    let keys = tenant_keys(tenant);
    assert_eq!(keys.len(), 2, "the old key and one new key: {keys:?}");
    assert_eq!(
        FIXTURE.data.exported_audit(tenant).len(),
        audited,
        "the second POST audited"
    );
}

#[tokio::test]
async fn client_create_sent_twice_registers_one() {
    let tenant = "client-create";
    let mut admin = signed_in_admin(tenant).await;
    let fields = admin
        .csrf_fields("/dashboard/clients/new", &client_fields("Twice"))
        .await;

    let first = admin.post_to("/dashboard/clients", &fields).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body.contains("id=\"secret\""), "{}", first.body);
    let id = linked_id(&first.body, "/dashboard/clients/");
    let audited = FIXTURE.data.exported_audit(tenant).len();

    let second = admin.post_to("/dashboard/clients", &fields).await;
    assert_already_done(
        &second,
        "Client already registered",
        &[
            format!("/dashboard/clients/{id}"),
            format!("/dashboard/clients/{id}/rotate"),
        ],
    );
    let clients = tenant_clients(tenant);
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0]["client_id"], id.as_str());
    assert_eq!(
        FIXTURE.data.exported_audit(tenant).len(),
        audited,
        "the second POST audited"
    );
}

#[tokio::test]
async fn client_rotate_sent_twice_rotates_once() {
    let tenant = "client-rotate";
    let mut admin = signed_in_admin(tenant).await;
    let fields = admin
        .csrf_fields("/dashboard/clients/new", &client_fields("Rotated"))
        .await;
    let created = admin.post_to("/dashboard/clients", &fields).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let id = linked_id(&created.body, "/dashboard/clients/");

    let path = format!("/dashboard/clients/{id}/rotate");
    let fields = admin.csrf_fields(&path, &[("grace_hours", "0")]).await;
    let first = admin.post_to(&path, &fields).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body.contains("id=\"secret\""), "{}", first.body);
    let audited = FIXTURE.data.exported_audit(tenant).len();

    let second = admin.post_to(&path, &fields).await;
    assert_already_done(
        &second,
        "Client secret already rotated",
        &[path.clone(), format!("/dashboard/clients/{id}")],
    );
    let added: Vec<Value> = FIXTURE
        .data
        .exported_audit(tenant)
        .into_iter()
        .filter(|record| record["action"] == "client.secret_added")
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(
        FIXTURE.data.exported_audit(tenant).len(),
        audited,
        "the second POST audited"
    );
}

#[tokio::test]
async fn invite_sent_twice_creates_one() {
    let tenant = "invite";
    let mut admin = signed_in_admin(tenant).await;
    let fields = admin
        .csrf_fields(
            "/dashboard/members",
            &[("email", "new@invite.test"), ("role", "viewer")],
        )
        .await;

    let first = admin.post_to("/dashboard/invites", &fields).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.header("cache-control"), "no-store");
    assert!(first.body.contains("/dashboard/join/"), "{}", first.body);
    let audited = FIXTURE.data.exported_audit(tenant).len();

    let second = admin.post_to("/dashboard/invites", &fields).await;
    assert_already_done(
        &second,
        "Invite already created",
        &["/dashboard/members".to_owned()],
    );
    assert!(!second.body.contains("/dashboard/join/"), "{}", second.body);

    let store = FIXTURE.data.open_store().await;
    let tenant_id = store
        .find_tenant(&portcullis_core::name::TenantName::parse(tenant).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let now = time::OffsetDateTime::now_utc();
    let pending = store.list_pending_invites(tenant_id, now).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        FIXTURE.data.exported_audit(tenant).len(),
        audited,
        "the second POST audited"
    );
}

#[tokio::test]
async fn missing_or_foreign_token_rejected() {
    let tenant = "tokens";
    let mut admin = signed_in_admin(tenant).await;
    let mut other_session = signed_in_admin(tenant).await;

    // No submission token.
    let fields: Vec<(String, String)> = admin
        .csrf_fields("/dashboard/keys/new", &key_fields("No token"))
        .await
        .into_iter()
        .filter(|(name, _)| name != "submission_token")
        .collect();
    let reply = admin.post_to("/dashboard/keys", &fields).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(reply.body.contains("no submission token"), "{}", reply.body);
    assert!(reply.body.contains("Open the form again"), "{}", reply.body);

    // A token of the same user's other session.
    let foreign = other_session
        .csrf_fields("/dashboard/keys/new", &[])
        .await
        .into_iter()
        .find(|(name, _)| name == "submission_token")
        .unwrap();
    let mut fields = fields.clone();
    fields.push(foreign);
    let reply = admin.post_to("/dashboard/keys", &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert!(
        reply.body.contains("another sign-in session"),
        "{}",
        reply.body
    );

    // A token of this session's client form, sent with the key form.
    let client_token = admin
        .csrf_fields("/dashboard/clients/new", &[])
        .await
        .into_iter()
        .find(|(name, _)| name == "submission_token")
        .unwrap();
    let mut fields: Vec<(String, String)> = fields
        .into_iter()
        .filter(|(name, _)| name != "submission_token")
        .collect();
    fields.push(client_token);
    let reply = admin.post_to("/dashboard/keys", &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    assert!(tenant_keys(tenant).is_empty(), "a rejected form made a key");
}

/// Returns the value of the hidden `submission_token` field of a page.
fn page_submission_token(body: &str) -> String {
    hidden_fields(body)
        .into_iter()
        .find(|(name, _)| name == "submission_token")
        .expect("a submission token")
        .1
}

/// Returns the value of the `submission_token` field among `fields`.
fn form_submission_token(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .find(|(name, _)| name == "submission_token")
        .expect("a submission token")
        .1
        .clone()
}

/// Returns `fields` with the value of `name` set to `value`, added when
/// missing.
fn with_field(fields: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut changed: Vec<(String, String)> = fields
        .iter()
        .filter(|(field, _)| field != name)
        .cloned()
        .collect();
    changed.push((name.to_owned(), value.to_owned()));
    changed
}

/// Sends `rejected` (the form with an invalid field) to `path`, then the
/// corrected form `fixed` with the token of the page shown again, then
/// `fixed` with the form's original token. Checks that the page shown
/// again carries the original token, that the corrected form acts once
/// and that the original copy gets the 409 page. Returns the reply to the
/// corrected form.
async fn send_rejected_then_fixed(
    admin: &mut Browser,
    path: &str,
    rejected: &[(String, String)],
    rejected_status: StatusCode,
    fixed: &[(String, String)],
    used_heading: &str,
) -> Reply {
    let original = form_submission_token(rejected);

    let reply = admin.post_to(path, rejected).await;
    assert_eq!(reply.status, rejected_status, "{}", reply.body);
    let shown_again = page_submission_token(&reply.body);
    assert_eq!(
        shown_again, original,
        "the page shown again has a new token"
    );

    let corrected = with_field(fixed, "submission_token", &shown_again);
    let done = admin.post_to(path, &corrected).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);

    let copy = with_field(fixed, "submission_token", &original);
    let again = admin.post_to(path, &copy).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.body.contains(used_heading), "{}", again.body);
    done
}

#[tokio::test]
async fn key_create_field_error_keeps_token() {
    let tenant = "retry";
    let mut admin = signed_in_admin(tenant).await;
    let fixed = admin
        .csrf_fields("/dashboard/keys/new", &key_fields("Retried"))
        .await;
    let too_long = with_field(&fixed, "expires_in_days", "9999");
    let unscoped: Vec<(String, String)> = fixed
        .iter()
        .filter(|(name, _)| name != "scope.0")
        .cloned()
        .collect();

    // Two rejected POSTs in a row keep the token as well.
    let reply = admin.post_to("/dashboard/keys", &unscoped).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let original = page_submission_token(&reply.body);
    assert_eq!(original, form_submission_token(&fixed));

    send_rejected_then_fixed(
        &mut admin,
        "/dashboard/keys",
        &too_long,
        StatusCode::UNPROCESSABLE_ENTITY,
        &fixed,
        "Key already created",
    )
    .await;
    let keys = tenant_keys(tenant);
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[tokio::test]
async fn key_rotate_field_error_keeps_token() {
    let tenant = "retry-key-rotate";
    let (old, _) = FIXTURE.data.create_key(&[
        "--tenant",
        tenant,
        "--name",
        "CLI key",
        "--scopes",
        "orders:read",
    ]);
    let mut admin = signed_in_admin(tenant).await;
    let path = format!("/dashboard/keys/{old}/rotate");
    let fixed = admin.csrf_fields(&path, &[("grace_hours", "1")]).await;
    let rejected = with_field(&fixed, "grace_hours", "many");

    send_rejected_then_fixed(
        &mut admin,
        &path,
        &rejected,
        StatusCode::UNPROCESSABLE_ENTITY,
        &fixed,
        "Key already rotated",
    )
    .await;
    let keys = tenant_keys(tenant);
    assert_eq!(keys.len(), 2, "the old key and one new key: {keys:?}");
}

#[tokio::test]
async fn client_create_field_error_keeps_token() {
    let tenant = "retry-client-create";
    let mut admin = signed_in_admin(tenant).await;
    let fixed = admin
        .csrf_fields("/dashboard/clients/new", &client_fields("Retried"))
        .await;
    let rejected: Vec<(String, String)> = fixed
        .iter()
        .filter(|(name, _)| name != "scope.0")
        .cloned()
        .collect();

    send_rejected_then_fixed(
        &mut admin,
        "/dashboard/clients",
        &rejected,
        StatusCode::UNPROCESSABLE_ENTITY,
        &fixed,
        "Client already registered",
    )
    .await;
    let clients = tenant_clients(tenant);
    assert_eq!(clients.len(), 1, "{clients:?}");
}

#[tokio::test]
async fn client_rotate_field_error_keeps_token() {
    let tenant = "retry-client-rotate";
    let mut admin = signed_in_admin(tenant).await;
    let fields = admin
        .csrf_fields("/dashboard/clients/new", &client_fields("Rotated"))
        .await;
    let created = admin.post_to("/dashboard/clients", &fields).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let id = linked_id(&created.body, "/dashboard/clients/");

    let path = format!("/dashboard/clients/{id}/rotate");
    let fixed = admin.csrf_fields(&path, &[("grace_hours", "0")]).await;
    let rejected = with_field(&fixed, "grace_hours", "-1");

    send_rejected_then_fixed(
        &mut admin,
        &path,
        &rejected,
        StatusCode::UNPROCESSABLE_ENTITY,
        &fixed,
        "Client secret already rotated",
    )
    .await;
    let added: Vec<Value> = FIXTURE
        .data
        .exported_audit(tenant)
        .into_iter()
        .filter(|record| record["action"] == "client.secret_added")
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
}

#[tokio::test]
async fn invite_rejections_keep_token() {
    let tenant = "retry-invite";
    let mut admin = signed_in_admin(tenant).await;
    let fixed = admin
        .csrf_fields(
            "/dashboard/members",
            &[("email", "new@retry-invite.test"), ("role", "viewer")],
        )
        .await;
    // A field error, then a conflict that the store reports: the admin is
    // already a member.
    let invalid = with_field(&fixed, "email", "not an address");
    let member = with_field(&fixed, "email", &admin_email(tenant));

    let reply = admin.post_to("/dashboard/invites", &invalid).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let original = page_submission_token(&reply.body);
    assert_eq!(original, form_submission_token(&fixed));

    let done = send_rejected_then_fixed(
        &mut admin,
        "/dashboard/invites",
        &member,
        StatusCode::CONFLICT,
        &fixed,
        "Invite already created",
    )
    .await;
    assert!(done.body.contains("/dashboard/join/"), "{}", done.body);

    let store = FIXTURE.data.open_store().await;
    let tenant_id = store
        .find_tenant(&portcullis_core::name::TenantName::parse(tenant).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let now = time::OffsetDateTime::now_utc();
    let pending = store.list_pending_invites(tenant_id, now).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
}

#[tokio::test]
async fn parallel_key_creates_make_one_key() {
    let tenant = "parallel";
    let mut admin = signed_in_admin(tenant).await;
    let fields = admin
        .csrf_fields("/dashboard/keys/new", &key_fields("Clicked"))
        .await;

    // Eight copies of one rendered form, all sent before any response
    // arrives, as a browser sends a quick series of clicks.
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut browser = Browser::new(&FIXTURE.server, "/dashboard/keys");
        browser.cookies = admin.cookies.clone();
        let fields = fields.clone();
        posts.spawn(async move { browser.post_to("/dashboard/keys", &fields).await.status });
    }
    let statuses = posts.join_all().await;
    let created = statuses.iter().filter(|status| **status == StatusCode::OK);
    assert_eq!(created.count(), 1, "{statuses:?}");
    let conflicts = statuses
        .iter()
        .filter(|status| **status == StatusCode::CONFLICT);
    assert_eq!(conflicts.count(), 7, "{statuses:?}");
    let keys = tenant_keys(tenant);
    assert_eq!(keys.len(), 1, "{keys:?}");
}
