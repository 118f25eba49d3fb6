//! Tests of the dashboard's members and invites pages against one real server.
//! They cover who may open the pages, role changes and the last-admin rule, and
//! disabling a member. They follow an invite link from creation to sign-in, try
//! expired, used, revoked and unknown links, and check tenant isolation and the
//! CSRF token of every new form.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;

use portcullis_core::oauth::Role;
use portcullis_store::{AuditAction, AuditFilter};
use reqwest::StatusCode;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection};
use support::browser::{Browser, Reply, unescape};
use support::{DataDir, Server, all_bytes_under, contains_bytes};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a long new member passphrase";
const EVIL_ORIGIN: &str = "https://evil.example.test";

/// Tenants `acme` (two admins, developers and a viewer), `solo` (one
/// admin) and `globex` (an admin).
struct Fixture {
    server: Server,
    data: DataDir,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let data = DataDir::new();
    for tenant in ["acme", "solo", "globex"] {
        data.cli(&["tenants", "create", tenant]);
    }
    for (tenant, email, role) in [
        ("acme", "admin@acme.test", "admin"),
        ("acme", "admin2@acme.test", "admin"),
        ("acme", "dev@acme.test", "developer"),
        ("acme", "leaver@acme.test", "developer"),
        ("acme", "returner@acme.test", "viewer"),
        ("acme", "viewer@acme.test", "viewer"),
        ("acme", "member@acme.test", "viewer"),
        ("solo", "only@solo.test", "admin"),
        ("globex", "admin@globex.test", "admin"),
    ] {
        data.create_user(tenant, email, role, PASSWORD);
    }
    data.write_config("[dashboard]\ninvite_expiry = \"48h\"\n");
    let server = Server::start(&data);
    Fixture { server, data }
});

async fn signed_in(tenant: &str, email: &str) -> Browser {
    Browser::signed_in(&FIXTURE.server, tenant, email, PASSWORD).await
}

/// Returns the id of the user `email` in `tenant`, read from the store.
async fn user_id(tenant: &str, email: &str) -> String {
    let store = FIXTURE.data.open_store().await;
    let name = portcullis_core::name::TenantName::parse(tenant).unwrap();
    let tenant = store.find_tenant(&name).await.unwrap().unwrap();
    let users = store.list_users(tenant.id).await.unwrap();
    users
        .iter()
        .find(|user| user.email.as_str() == email)
        .map(|user| user.id.to_string())
        .unwrap_or_else(|| panic!("no user {email} in {tenant:?}"))
}

async fn user(id: &str) -> portcullis_core::oauth::UserRecord {
    let store = FIXTURE.data.open_store().await;
    store.find_user(id.parse().unwrap()).await.unwrap().unwrap()
}

/// Returns the actions of the audit records about `target`, newest first.
async fn audit_actions(target: &str) -> Vec<(AuditAction, String)> {
    let store = FIXTURE.data.open_store().await;
    let filter = AuditFilter {
        tenant_id: None,
        action: None,
        target: Some(target.to_owned()),
        limit: 100,
    };
    store
        .list_audit(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|event| (event.action, event.actor))
        .collect()
}

/// Posts a form of `page` to `path`, with the page's CSRF token.
async fn post_form(browser: &mut Browser, page: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    let fields = browser.csrf_fields(page, extra).await;
    browser.post_to(path, &fields).await
}

/// Invites `email` into the admin's tenant and returns the link's path.
async fn invite(admin: &mut Browser, email: &str, role: &str) -> String {
    let reply = post_form(
        admin,
        "/dashboard/members",
        "/dashboard/invites",
        &[("email", email), ("role", role)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), "no-store");
    let link = secret_on(&reply);
    let start = link.find("/dashboard/join/").expect("an invite link");
    assert!(link.starts_with("https://localhost:"), "{link}");
    link[start..].to_owned()
}

fn secret_on(reply: &Reply) -> String {
    let start = reply
        .body
        .find("id=\"secret\"")
        .expect("a link on the page");
    let rest = &reply.body[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest.find("</code>").unwrap();
    unescape(&rest[open..close])
}

/// Returns the id of the pending invite for `email` on the members page.
async fn invite_id(admin: &mut Browser, email: &str) -> String {
    let page = admin.get("/dashboard/members").await;
    let row = page
        .body
        .split("<tr>")
        .find(|row| row.contains(email) && row.contains("/dashboard/invites/"))
        .unwrap_or_else(|| panic!("no pending invite of {email}: {}", page.body));
    let marker = "/dashboard/invites/";
    let start = row.find(marker).unwrap() + marker.len();
    row[start..start + 36].to_owned()
}

/// Follows an invite link in a fresh browser and posts the join form.
async fn join(link: &str, password: &str, confirm: &str) -> (Browser, Reply) {
    let mut browser = Browser::new(&FIXTURE.server, link);
    let page = browser.get(link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let fields = browser
        .csrf_fields(link, &[("password", password), ("confirm", confirm)])
        .await;
    let reply = browser.post(&fields).await;
    (browser, reply)
}

async fn sign_in_status(tenant: &str, email: &str, password: &str) -> StatusCode {
    let mut browser = Browser::new(&FIXTURE.server, "/dashboard/sign-in");
    let page = browser.get("/dashboard/sign-in").await;
    let mut fields = support::browser::hidden_fields(&page.body);
    fields.push(("tenant".to_owned(), tenant.to_owned()));
    fields.push(("email".to_owned(), email.to_owned()));
    fields.push(("password".to_owned(), password.to_owned()));
    browser.post(&fields).await.status
}

#[tokio::test]
async fn members_page_for_admins_only() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let page = admin.get("/dashboard/members").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for email in ["admin2@acme.test", "dev@acme.test", "viewer@acme.test"] {
        assert!(page.body.contains(email), "{email}: {}", page.body);
    }
    assert!(!page.body.contains("globex"), "{}", page.body);
    // The admin signed in, so their last sign-in is known.
    let own_row = page
        .body
        .split("<tr>")
        .find(|row| row.contains("admin@acme.test</td>"))
        .unwrap();
    assert!(!own_row.contains("not known"), "{own_row}");
    assert!(page.body.contains("48 hours"), "{}", page.body);

    for email in ["dev@acme.test", "viewer@acme.test"] {
        let mut browser = signed_in("acme", email).await;
        let reply = browser.get("/dashboard/members").await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{email}");
        let id = user_id("acme", "member@acme.test").await;
        let reply = browser
            .get(&format!("/dashboard/members/{id}/disable"))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{email}");
        // A developer's token is valid, but the role is not.
        let fields = browser
            .csrf_fields("/dashboard/", &[("role", "admin")])
            .await;
        let reply = browser
            .post_to(&format!("/dashboard/members/{id}/role"), &fields)
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{email}");
        let fields = browser
            .csrf_fields(
                "/dashboard/",
                &[("email", "x@acme.test"), ("role", "admin")],
            )
            .await;
        let reply = browser.post_to("/dashboard/invites", &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{email}");
    }
    assert_eq!(
        user(&user_id("acme", "member@acme.test").await).await.role,
        Role::Viewer
    );
}

#[tokio::test]
async fn members_link_shown_to_admins_only() {
    const LINK: &str = "<a href=\"/dashboard/members\">Members</a>";
    let pages = [
        "/dashboard/",
        "/dashboard/keys",
        "/dashboard/clients",
        "/dashboard/usage",
        "/dashboard/audit",
    ];
    for (email, shown) in [
        ("admin@acme.test", true),
        ("dev@acme.test", false),
        ("viewer@acme.test", false),
    ] {
        let mut browser = signed_in("acme", email).await;
        for page in pages {
            let reply = browser.get(page).await;
            assert_eq!(reply.status, StatusCode::OK, "{email} {page}");
            assert_eq!(reply.body.contains(LINK), shown, "{email} {page}");
        }
        // The members page itself answers as the link promises.
        let expected = if shown {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(browser.get("/dashboard/members").await.status, expected);
    }
}

#[tokio::test]
async fn role_changed_and_audited() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let admin_id = user_id("acme", "admin@acme.test").await;
    let id = user_id("acme", "member@acme.test").await;
    let reply = post_form(
        &mut admin,
        "/dashboard/members",
        &format!("/dashboard/members/{id}/role"),
        &[("role", "developer")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(user(&id).await.role, Role::Developer);
    assert_eq!(
        audit_actions(&id).await[0],
        (AuditAction::UserRoleChanged, format!("user:{admin_id}"))
    );

    let reply = post_form(
        &mut admin,
        "/dashboard/members",
        &format!("/dashboard/members/{id}/role"),
        &[("role", "owner")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(user(&id).await.role, Role::Developer);
}

#[tokio::test]
async fn last_admin_kept() {
    let mut only = signed_in("solo", "only@solo.test").await;
    let id = user_id("solo", "only@solo.test").await;
    let reply = post_form(
        &mut only,
        "/dashboard/members",
        &format!("/dashboard/members/{id}/role"),
        &[("role", "viewer")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.body.contains("last admin"), "{}", reply.body);
    let path = format!("/dashboard/members/{id}/disable");
    let reply = post_form(&mut only, &path, &path, &[]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.body.contains("last admin"), "{}", reply.body);
    let stored = user(&id).await;
    assert_eq!(stored.role, Role::Admin);
    assert!(stored.disabled_at.is_none());
    assert_eq!(only.get("/dashboard/members").await.status, StatusCode::OK);
}

#[tokio::test]
async fn disabled_member_signed_out_at_once() {
    let mut leaver = signed_in("acme", "leaver@acme.test").await;
    assert_eq!(leaver.get("/dashboard/keys").await.status, StatusCode::OK);
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let admin_id = user_id("acme", "admin@acme.test").await;
    let id = user_id("acme", "leaver@acme.test").await;
    let path = format!("/dashboard/members/{id}/disable");
    let confirm = admin.get(&path).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("leaver@acme.test"),
        "{}",
        confirm.body
    );
    let reply = post_form(&mut admin, &path, &path, &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);

    let reply = leaver.get("/dashboard/keys").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), Some("/dashboard/sign-in"));
    // The failed sign-in shows the form again instead of redirecting.
    assert_eq!(
        sign_in_status("acme", "leaver@acme.test", PASSWORD).await,
        StatusCode::OK
    );
    assert!(user(&id).await.disabled_at.is_some());
    assert_eq!(
        audit_actions(&id).await[0],
        (AuditAction::UserDisabled, format!("user:{admin_id}"))
    );
    let page = admin.get("/dashboard/members").await;
    let row = page
        .body
        .split("<tr>")
        .find(|row| row.contains("leaver@acme.test"))
        .unwrap();
    assert!(row.contains("disabled"), "{row}");
}

#[tokio::test]
async fn disabled_member_enabled_again() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let admin_id = user_id("acme", "admin@acme.test").await;
    let id = user_id("acme", "returner@acme.test").await;
    let disable = format!("/dashboard/members/{id}/disable");
    let reply = post_form(&mut admin, &disable, &disable, &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        sign_in_status("acme", "returner@acme.test", PASSWORD).await,
        StatusCode::OK
    );

    // The members page offers the enable form for the disabled member.
    let enable = format!("/dashboard/members/{id}/enable");
    let page = admin.get("/dashboard/members").await;
    assert!(page.body.contains(&enable), "{}", page.body);
    let reply = post_form(&mut admin, "/dashboard/members", &enable, &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(user(&id).await.disabled_at.is_none());
    assert_eq!(
        audit_actions(&id).await[0],
        (AuditAction::UserEnabled, format!("user:{admin_id}"))
    );
    assert_eq!(
        sign_in_status("acme", "returner@acme.test", PASSWORD).await,
        StatusCode::SEE_OTHER
    );

    // Enabling an enabled member changes nothing.
    let reply = post_form(&mut admin, "/dashboard/members", &enable, &[]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.body.contains("enabled already"), "{}", reply.body);
    let enabled = audit_actions(&id)
        .await
        .into_iter()
        .filter(|(action, _)| *action == AuditAction::UserEnabled)
        .count();
    assert_eq!(enabled, 1);
}

#[tokio::test]
async fn invited_member_joins_and_signs_in() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let link = invite(&mut admin, "new@acme.test", "developer").await;
    let token = link.rsplit('/').next().unwrap().to_owned();
    assert!(
        !contains_bytes(&all_bytes_under(FIXTURE.data.path()), token.as_bytes()),
        "the invite token is stored in plaintext"
    );
    let id = invite_id(&mut admin, "new@acme.test").await;
    assert_eq!(audit_actions(&id).await[0].0, AuditAction::InviteCreated);

    let (_, reply) = join(&link, "too short", "too short").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("Password:"), "{}", reply.body);
    let (_, reply) = join(&link, NEW_PASSWORD, "another long passphrase").await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    let (mut member, reply) = join(&link, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), Some("/dashboard/"));
    let cookie = reply.set_cookie("__Host-pc_session").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure"),
        "{cookie}"
    );
    let overview = member.get("/dashboard/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("new@acme.test"), "{}", overview.body);
    assert!(overview.body.contains("developer"), "{}", overview.body);
    assert_eq!(
        member.get("/dashboard/keys/new").await.status,
        StatusCode::OK
    );
    assert_eq!(
        member.get("/dashboard/members").await.status,
        StatusCode::FORBIDDEN
    );

    // The link worked once.
    let mut again = Browser::new(&FIXTURE.server, &link);
    let reply = again.get(&link).await;
    assert_eq!(reply.status, StatusCode::GONE);
    assert!(reply.body.contains("used already"), "{}", reply.body);
    assert_eq!(
        sign_in_status("acme", "new@acme.test", NEW_PASSWORD).await,
        StatusCode::SEE_OTHER
    );
    let new_id = user_id("acme", "new@acme.test").await;
    assert_eq!(user(&new_id).await.role, Role::Developer);
    let page = admin.get("/dashboard/members").await;
    let pending = page
        .body
        .split("<tr>")
        .any(|row| row.contains("new@acme.test") && row.contains("/dashboard/invites/"));
    assert!(!pending, "{}", page.body);
}

#[tokio::test]
async fn invite_refused_for_member_or_bad_input() {
    let mut admin = signed_in("acme", "admin@acme.test").await;

    let reply = post_form(
        &mut admin,
        "/dashboard/members",
        "/dashboard/invites",
        &[("email", "Viewer@acme.test"), ("role", "viewer")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(reply.body.contains("already a member"), "{}", reply.body);

    let reply = post_form(
        &mut admin,
        "/dashboard/members",
        "/dashboard/invites",
        &[("email", "not an address"), ("role", "viewer")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("Email:"), "{}", reply.body);

    let reply = post_form(
        &mut admin,
        "/dashboard/members",
        "/dashboard/invites",
        &[("email", "someone@acme.test"), ("role", "root")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    let page = admin.get("/dashboard/members").await;
    assert!(
        !page.body.contains("someone@acme.test</td>"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn revoked_expired_and_unknown_links_change_nothing() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let revoked = invite(&mut admin, "revoked@acme.test", "admin").await;
    let id = invite_id(&mut admin, "revoked@acme.test").await;
    let reply = post_form(
        &mut admin,
        "/dashboard/members",
        &format!("/dashboard/invites/{id}/revoke"),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let mut browser = Browser::new(&FIXTURE.server, &revoked);
    let reply = browser.get(&revoked).await;
    assert_eq!(reply.status, StatusCode::GONE);
    assert!(reply.body.contains("revoked"), "{}", reply.body);
    // Revoking twice is refused.
    let reply = post_form(
        &mut admin,
        "/dashboard/members",
        &format!("/dashboard/invites/{id}/revoke"),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);

    let expired = invite(&mut admin, "late@acme.test", "viewer").await;
    let expired_id = invite_id(&mut admin, "late@acme.test").await;
    // Move the expiry into the past, as 48 hours of waiting would.
    let options = SqliteConnectOptions::new().filename(FIXTURE.data.path().join("portcullis.db"));
    let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
    let statement = format!(
        "UPDATE user_invites SET expires_at = expires_at - 48 * 3600 * 1000 \
         WHERE id = '{expired_id}'"
    );
    sqlx::query(AssertSqlSafe(statement))
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    let mut browser = Browser::new(&FIXTURE.server, &expired);
    let reply = browser.get(&expired).await;
    assert_eq!(reply.status, StatusCode::GONE);
    assert!(reply.body.contains("expired"), "{}", reply.body);
    // The form posted anyway is refused the same way.
    let page = browser.get("/dashboard/sign-in").await;
    let mut fields: Vec<(String, String)> = support::browser::hidden_fields(&page.body);
    fields.push(("password".to_owned(), NEW_PASSWORD.to_owned()));
    fields.push(("confirm".to_owned(), NEW_PASSWORD.to_owned()));
    let reply = browser.post(&fields).await;
    assert_eq!(reply.status, StatusCode::GONE, "{}", reply.body);
    assert!(!browser.cookies.contains_key("__Host-pc_session"));

    for path in [
        "/dashboard/join/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/dashboard/join/short",
    ] {
        let reply = browser.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let store = FIXTURE.data.open_store().await;
    let acme = store
        .find_tenant(&portcullis_core::name::TenantName::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    let emails: Vec<String> = store
        .list_users(acme.id)
        .await
        .unwrap()
        .iter()
        .map(|user| user.email.to_string())
        .collect();
    assert!(
        !emails.contains(&"revoked@acme.test".to_owned()),
        "{emails:?}"
    );
    assert!(!emails.contains(&"late@acme.test".to_owned()), "{emails:?}");
}

#[tokio::test]
async fn other_tenants_members_and_invites_not_found() {
    let mut acme = signed_in("acme", "admin2@acme.test").await;
    invite(&mut acme, "isolated@acme.test", "viewer").await;
    let invite = invite_id(&mut acme, "isolated@acme.test").await;
    let member = user_id("acme", "dev@acme.test").await;

    let mut globex = signed_in("globex", "admin@globex.test").await;
    let page = globex.get("/dashboard/members").await;
    assert!(!page.body.contains("acme.test"), "{}", page.body);
    let disable = format!("/dashboard/members/{member}/disable");
    assert_eq!(globex.get(&disable).await.status, StatusCode::NOT_FOUND);
    for (path, extra) in [
        (
            format!("/dashboard/members/{member}/role"),
            vec![("role", "viewer")],
        ),
        (disable.clone(), vec![]),
        (format!("/dashboard/invites/{invite}/revoke"), vec![]),
        // An invite id is no user id and the other way round.
        (format!("/dashboard/members/{invite}/disable"), vec![]),
        (format!("/dashboard/invites/{member}/revoke"), vec![]),
        ("/dashboard/members/not-an-id/disable".to_owned(), vec![]),
    ] {
        let reply = post_form(&mut globex, "/dashboard/members", &path, &extra).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.body
        );
    }
    let stored = user(&member).await;
    assert_eq!(stored.role, Role::Developer);
    assert!(stored.disabled_at.is_none());
    assert_eq!(
        invite_id(&mut acme, "isolated@acme.test").await,
        invite,
        "the invite is still pending"
    );
}

#[tokio::test]
async fn forms_without_csrf_token_rejected() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let member = user_id("acme", "viewer@acme.test").await;
    let preflight = admin
        .request(
            reqwest::Method::OPTIONS,
            "/dashboard/invites",
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
    for (path, fields) in [
        (
            "/dashboard/invites".to_owned(),
            vec![
                ("email".to_owned(), "csrf@acme.test".to_owned()),
                ("role".to_owned(), "admin".to_owned()),
            ],
        ),
        (
            format!("/dashboard/members/{member}/role"),
            vec![("role".to_owned(), "admin".to_owned())],
        ),
        (format!("/dashboard/members/{member}/disable"), vec![]),
    ] {
        let reply = admin.post_to(&path, &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        let mut with_token = admin.csrf_fields("/dashboard/members", &[]).await;
        with_token.extend(fields.iter().cloned());
        let reply = admin
            .post_to_with(&path, &with_token, &[("origin", EVIL_ORIGIN)])
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }
    let stored = user(&member).await;
    assert_eq!(stored.role, Role::Viewer);
    assert!(stored.disabled_at.is_none());
    let page = admin.get("/dashboard/members").await;
    assert!(!page.body.contains("csrf@acme.test"), "{}", page.body);

    // The join form: no double-submit token, or another site's post.
    let link = invite(&mut admin, "joiner@acme.test", "viewer").await;
    let mut browser = Browser::new(&FIXTURE.server, &link);
    browser.get(&link).await;
    let password = vec![
        ("password".to_owned(), NEW_PASSWORD.to_owned()),
        ("confirm".to_owned(), NEW_PASSWORD.to_owned()),
    ];
    let reply = browser.post(&password).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let with_token = browser
        .csrf_fields(
            &link,
            &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)],
        )
        .await;
    let reply = browser
        .post_with(&with_token, &[("origin", EVIL_ORIGIN)])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(!browser.cookies.contains_key("__Host-pc_session"));
    assert_eq!(
        browser.get(&link).await.status,
        StatusCode::OK,
        "still pending"
    );
}
