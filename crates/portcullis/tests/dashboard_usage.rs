//! The dashboard's usage charts, the tenant's audit log and the credential
//! audit's findings, through one real server. The tests check what each
//! page shows, the filters and their errors, and the scope narrowing with
//! its role rules. Ids of another tenant must get 404 and change nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;

use portcullis_core::credential::{KeyKind, KeyLimits};
use portcullis_core::crypto::MasterKey;
use portcullis_core::ids::{AuditId, KeyId};
use portcullis_core::key::{Environment, KeySecret};
use portcullis_core::name::TenantName;
use portcullis_core::scope::ScopeSet;
use portcullis_store::usage::{day_start, hour_start};
use portcullis_store::{
    AuditAction, AuditContext, AuditEvent, CredentialRef, NewKey, ScopeUse, Store, Tenant,
    UsageCount,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::browser::Browser;
use support::{DataDir, Server};
use time::{Duration, OffsetDateTime};

const PASSWORD: &str = "correct horse battery staple";

/// Records appended to acme's log for the paging test: exactly two pages,
/// so the second page is full and must still link to no third one.
const PAGED_RECORDS: usize = 100;

/// Tenants `acme` (an admin, two developers and a viewer) and `globex`
/// (an admin). Keys written to the store before the server starts:
/// created 40 days ago, never expiring, and granted `orders:read
/// orders:write` of which only `orders:read` was used, so the audit
/// suggests narrowing each. Usage counts for the charts.
struct Fixture {
    server: Server,
    data: DataDir,
    /// Acme's key created by `dev@acme.test`.
    dev_key: String,
    /// Acme's key created by the CLI, for the admin.
    admin_key: String,
    /// Globex's key, which acme's users must never reach.
    globex_key: String,
    /// Acme's key with the usage counts of the charts.
    charted_key: String,
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
    let (charted_key, _) = data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
        "--name",
        "charted",
    ]);
    data.write_config(
        r#"
[dashboard]
scopes = ["orders:read", "orders:write"]

[audit_policy]
unused_days = 5
scope_unused_days = 5
"#,
    );
    // The store is written from another thread's runtime, because the
    // fixture is first used inside a test's runtime, which cannot block.
    let (dev_key, admin_key, globex_key) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Runtime::new()
                    .unwrap()
                    .block_on(seed_store(&data, &charted_key))
            })
            .join()
            .unwrap()
    });
    let server = Server::start(&data);
    Fixture {
        server,
        data,
        dev_key,
        admin_key,
        globex_key,
        charted_key,
    }
});

/// Writes the old keys, their scope uses, the usage counts and the extra
/// audit records, and returns the ids of (dev's key, admin's key,
/// globex's key).
async fn seed_store(data: &DataDir, charted_key: &str) -> (String, String, String) {
    let store = data.open_store().await;
    let acme = tenant(&store, "acme").await;
    let globex = tenant(&store, "globex").await;
    let users = store.list_users(acme.id).await.unwrap();
    let dev = users
        .iter()
        .find(|user| user.email.as_str() == "dev@acme.test")
        .unwrap();
    let dev_key = old_key(
        &store,
        &acme,
        "dev integration",
        &format!("user:{}", dev.id),
    )
    .await;
    let admin_key = old_key(&store, &acme, "admin integration", "cli").await;
    let globex_key = old_key(&store, &globex, "globex integration", "cli").await;

    let now = OffsetDateTime::now_utc();
    let uses: Vec<ScopeUse> = [dev_key, admin_key, globex_key]
        .iter()
        .map(|id| ScopeUse {
            credential: CredentialRef::Key(*id),
            day: day_start(now),
            scope: "orders:read".to_owned(),
        })
        .collect();
    store.record_scope_uses(&uses).await.unwrap();

    // 7 requests (2 failed) this hour and 5 three days ago for acme's
    // charted key, and 1000 for globex's key, which acme's charts must
    // leave out.
    let charted: KeyId = charted_key.parse().unwrap();
    let count = |credential: KeyId, tenant: &Tenant, hour, requests, failures| UsageCount {
        credential: CredentialRef::Key(credential),
        tenant_id: Some(tenant.id),
        hour,
        requests,
        failures,
    };
    store
        .record_usage_counts(&[
            count(charted, &acme, now, 7, 2),
            count(charted, &acme, now - Duration::days(3), 5, 0),
            count(globex_key, &globex, now, 1000, 0),
        ])
        .await
        .unwrap();

    // Enough consent records for two pages of acme's log, and one globex
    // record that acme's log must leave out. No test grants consent, so
    // no other record matches the filter of the paging test.
    let consent = |tenant: &Tenant, actor: &str| AuditEvent {
        id: AuditId::generate(),
        at: OffsetDateTime::now_utc(),
        actor: actor.to_owned(),
        action: AuditAction::ConsentGranted,
        tenant_id: Some(tenant.id),
        target: None,
        remote_addr: Some("192.0.2.10".to_owned()),
        details: json!({ "seeded": true }),
    };
    let mut events: Vec<AuditEvent> = (0..PAGED_RECORDS)
        .map(|_| consent(&acme, &format!("user:{}", dev.id)))
        .collect();
    events.push(consent(&globex, "globex-marker"));
    store.append_audit(&events).await.unwrap();
    store.close().await;
    (
        dev_key.to_string(),
        admin_key.to_string(),
        globex_key.to_string(),
    )
}

async fn tenant(store: &Store, name: &str) -> Tenant {
    store
        .find_tenant(&TenantName::parse(name).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// Inserts a key of `tenant` created 40 days ago by `created_by`, with no
/// expiry and the scopes `orders:read orders:write`. Its secret is never
/// used, so it is hashed with a throwaway pepper.
async fn old_key(store: &Store, tenant: &Tenant, name: &str, created_by: &str) -> KeyId {
    let created_at = OffsetDateTime::now_utc() - Duration::days(40);
    let secret = KeySecret::generate(Environment::Test).unwrap();
    let pepper = MasterKey::generate().unwrap().derive_pepper();
    let key = NewKey {
        id: KeyId::generate(),
        kind: KeyKind::Tenant,
        tenant_id: Some(tenant.id),
        name: Some(name.to_owned()),
        environment: Environment::Test,
        visible_prefix: secret.visible_prefix(),
        hash: pepper.hash(secret.expose().as_bytes()),
        scopes: ScopeSet::parse_list("orders:read orders:write").unwrap(),
        created_at,
        expires_at: None,
        limits: KeyLimits::default(),
        created_by: Some(created_by.to_owned()),
    };
    let context = AuditContext {
        actor: created_by.to_owned(),
        remote_addr: None,
        at: created_at,
    };
    store.insert_key(&key, &context).await.unwrap().id
}

/// Signs `email` of `tenant` in and returns the browser.
async fn signed_in(tenant: &str, email: &str) -> Browser {
    Browser::signed_in(&FIXTURE.server, tenant, email, PASSWORD).await
}

/// Returns the CSRF token of `page`, followed by `extra`.
async fn form_fields(
    browser: &mut Browser,
    page: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    browser.csrf_fields(page, extra).await
}

/// Returns the key as `keys list --output json` prints it.
fn stored_key(tenant: &str, id: &str) -> Value {
    FIXTURE.data.tenant_key(tenant, id)
}

/// Returns the text of the `<figcaption>` of the chart whose ids start
/// with `id`.
fn caption(body: &str, id: &str) -> String {
    let start = body
        .find(&format!("id=\"{id}-title\""))
        .unwrap_or_else(|| panic!("no chart {id}: {body}"));
    let rest = &body[start..];
    let open = rest.find("<figcaption>").unwrap() + "<figcaption>".len();
    let close = rest.find("<span").unwrap();
    rest[open..close].trim().to_owned()
}

/// Checks the captions of both charts against the seeded counts: 7
/// requests this hour, 2 of them failed, and 5 more three days ago.
fn assert_seeded_totals(body: &str) {
    assert_eq!(
        caption(body, "hours"),
        "Requests per hour: 7 requests, 2 failed."
    );
    assert_eq!(
        caption(body, "days"),
        "Requests per day: 12 requests, 2 failed."
    );
}

#[tokio::test]
async fn key_usage_page_draws_charts() {
    let f = &*FIXTURE;
    let mut viewer = signed_in("acme", "viewer@acme.test").await;
    let list = viewer.get("/dashboard/keys").await;
    let link = format!("/dashboard/keys/{}/usage", f.charted_key);
    assert!(list.body.contains(&link), "{}", list.body);

    let page = viewer.get(&link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.header("content-security-policy")
            .contains("default-src 'none'"),
        "{:?}",
        page.headers
    );
    assert!(page.body.contains("Usage of key charted"), "{}", page.body);
    assert_seeded_totals(&page.body);
    // Accessible text and a table for each chart, and nothing the CSP
    // would block.
    assert_eq!(page.body.matches("<svg role=\"img\"").count(), 2);
    assert!(
        page.body.contains("<desc id=\"hours-desc\">"),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("<table>").count(), 2);
    assert!(page.body.contains("<td class=\"number\">7</td>"));
    assert!(!page.body.contains("style="), "{}", page.body);
    assert!(!page.body.contains("<script"), "{}", page.body);
    // 48 hours and 30 days: one bar and one table row per period.
    assert_eq!(page.body.matches("<rect class=\"requests\"").count(), 78);
    let hour = hour_start(OffsetDateTime::now_utc());
    let label = format!(
        "{:04}-{:02}-{:02} {:02}:00",
        hour.year(),
        u8::from(hour.month()),
        hour.day(),
        hour.hour()
    );
    // The last row of the hourly table is the current hour.
    assert!(page.body.contains(&label), "{label}: {}", page.body);
}

#[tokio::test]
async fn tenant_usage_leaves_out_other_tenants() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let page = admin.get("/dashboard/usage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Usage of acme"), "{}", page.body);
    // Globex's 1000 requests are not in acme's totals.
    assert_seeded_totals(&page.body);
}

#[tokio::test]
async fn audit_log_filters_and_pages() {
    let f = &*FIXTURE;
    let mut viewer = signed_in("acme", "viewer@acme.test").await;
    let first = viewer
        .get("/dashboard/audit?action=consent.granted&actor=dev%40acme.test")
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        first
            .body
            .matches("<td><code>consent.granted</code></td>")
            .count(),
        50
    );
    assert!(!first.body.contains("globex-marker"), "{}", first.body);
    // The dev's user id is shown as the e-mail address.
    assert!(
        first.body.contains("<td>dev@acme.test</td>"),
        "{}",
        first.body
    );
    let marker = "<a href=\"/dashboard/audit?";
    let start = first.body.rfind(marker).expect("a next-page link") + "<a href=\"".len();
    let rest = &first.body[start..];
    let next = support::browser::unescape(&rest[..rest.find('"').unwrap()]);
    assert!(next.contains("after="), "{next}");

    let second = viewer.get(&next).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(
        second
            .body
            .matches("<td><code>consent.granted</code></td>")
            .count(),
        PAGED_RECORDS - 50
    );
    assert!(second.body.contains("First page"), "{}", second.body);
    assert!(!second.body.contains("Next page"), "{}", second.body);

    // The credential filter shows the records about one key.
    let by_key = viewer
        .get(&format!(
            "/dashboard/audit?credential={}&since=&until=",
            f.dev_key
        ))
        .await;
    assert_eq!(by_key.status, StatusCode::OK, "{}", by_key.body);
    assert!(
        by_key.body.contains("<td><code>key.created</code></td>"),
        "{}",
        by_key.body
    );
    assert!(!by_key.body.contains("consent.granted</code></td>"));
}

#[tokio::test]
async fn audit_filter_errors_name_fields() {
    let mut admin = signed_in("acme", "admin@acme.test").await;
    for (query, message) in [
        (
            "action=key.deleted",
            "Action: choose an action from the list.",
        ),
        (
            "actor=nobody%40acme.test",
            "Actor: no member of your organization",
        ),
        ("actor=root", "Actor: enter a member"),
        ("credential=42", "Credential: enter the id of a key"),
        ("since=yesterday", "Since: enter a date and time"),
        ("until=2026-02-30T00%3A00", "Until: enter a date and time"),
        (
            "since=2026-12-02T00%3A00&until=2026-12-01T00%3A00",
            "Until: choose a time after the start",
        ),
        (
            "tenant=globex",
            "is unknown: use action, actor, credential, since or until.",
        ),
    ] {
        let reply = admin.get(&format!("/dashboard/audit?{query}")).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(reply.body.contains(message), "{query}: {}", reply.body);
        assert!(
            !reply.body.contains("<td><code>"),
            "{query}: records listed despite the error"
        );
    }
}

#[tokio::test]
async fn findings_list_tenant_keys_only() {
    let f = &*FIXTURE;
    let mut viewer = signed_in("acme", "viewer@acme.test").await;
    let page = viewer.get("/dashboard/findings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for code in ["key_no_expiry", "key_unused", "scopes_unused"] {
        assert!(
            page.body.contains(&format!("<code>{code}</code>")),
            "{code}: {}",
            page.body
        );
    }
    assert!(page.body.contains("admin integration"), "{}", page.body);
    assert!(!page.body.contains("globex integration"), "{}", page.body);
    // A viewer may change nothing, so no narrowing is offered.
    assert!(!page.body.contains("/narrow"), "{}", page.body);

    let mut admin = signed_in("acme", "admin@acme.test").await;
    let page = admin.get("/dashboard/findings").await;
    assert!(
        page.body
            .contains(&format!("/dashboard/keys/{}/narrow", f.admin_key)),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn narrowing_follows_roles() {
    let f = &*FIXTURE;
    let narrow = format!("/dashboard/keys/{}/narrow", f.dev_key);

    // A viewer and another developer are refused, even with a valid token.
    for email in ["viewer@acme.test", "dev2@acme.test"] {
        let mut browser = signed_in("acme", email).await;
        assert_eq!(
            browser.get(&narrow).await.status,
            StatusCode::FORBIDDEN,
            "{email}"
        );
        let mut fields = form_fields(&mut browser, "/dashboard/keys", &[]).await;
        fields.push(("scopes".to_owned(), "orders:read".to_owned()));
        let reply = browser.post_to(&narrow, &fields).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{email}");
    }
    assert_eq!(
        stored_key("acme", &f.dev_key)["scopes"],
        json!(["orders:read", "orders:write"])
    );

    // The confirmation page shows the key's creator both scope sets.
    let mut developer = signed_in("acme", "dev@acme.test").await;
    let confirm = developer.get(&narrow).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(
        confirm
            .body
            .contains("Narrow the scopes of key dev integration"),
        "{}",
        confirm.body
    );
    assert!(
        confirm.body.contains(
            "<dt>Current scopes</dt><dd><code>orders:read</code> <code>orders:write</code></dd>"
        ),
        "{}",
        confirm.body
    );
    assert!(
        confirm
            .body
            .contains("<dt>New scopes</dt><dd><code>orders:read</code></dd>"),
        "{}",
        confirm.body
    );

    // A form without the CSRF token, or with a set other than the
    // suggestion, changes nothing.
    let reply = developer
        .post_to(&narrow, &[("scopes".to_owned(), "orders:read".to_owned())])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let fields = form_fields(&mut developer, &narrow, &[("scopes", "orders:write")]).await;
    let reply = developer.post_to(&narrow, &fields).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert!(
        reply.body.contains("Scopes: the suggested scopes changed"),
        "{}",
        reply.body
    );
    assert_eq!(
        stored_key("acme", &f.dev_key)["scopes"],
        json!(["orders:read", "orders:write"])
    );

    let fields = form_fields(&mut developer, &narrow, &[]).await;
    let mut fields = fields;
    fields.push(("scopes".to_owned(), "orders:read".to_owned()));
    let reply = developer.post_to(&narrow, &fields).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        stored_key("acme", &f.dev_key)["scopes"],
        json!(["orders:read"])
    );

    let record = FIXTURE
        .data
        .exported_audit("acme")
        .into_iter()
        .find(|record| {
            record["action"] == "key.scopes_narrowed" && record["target"] == f.dev_key.as_str()
        })
        .expect("a key.scopes_narrowed record");
    assert_eq!(record["details"]["scopes"], "orders:read", "{record}");
    assert_eq!(
        record["details"]["previous_scopes"], "orders:read orders:write",
        "{record}"
    );
    assert!(
        record["actor"].as_str().unwrap().starts_with("user:"),
        "{record}"
    );

    // Nothing is left to narrow, so the confirmation page returns 409.
    let again = developer.get(&narrow).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
}

#[tokio::test]
async fn other_tenant_key_not_found() {
    let f = &*FIXTURE;
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let globex = &f.globex_key;
    for page in [
        format!("/dashboard/keys/{globex}/usage"),
        format!("/dashboard/keys/{globex}/narrow"),
        format!("/dashboard/audit?credential={globex}"),
        "/dashboard/keys/not-a-key-id/usage".to_owned(),
        "/dashboard/keys/not-a-key-id/narrow".to_owned(),
    ] {
        let reply = admin.get(&page).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{page}");
        assert!(!reply.body.contains("globex integration"), "{page}");
    }
    let mut fields = form_fields(&mut admin, "/dashboard/keys", &[]).await;
    fields.push(("scopes".to_owned(), "orders:read".to_owned()));
    let reply = admin
        .post_to(&format!("/dashboard/keys/{globex}/narrow"), &fields)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        stored_key("globex", globex)["scopes"],
        json!(["orders:read", "orders:write"])
    );
    assert!(
        FIXTURE
            .data
            .exported_audit("globex")
            .iter()
            .all(|record| record["action"] != "key.scopes_narrowed"),
        "a globex key was narrowed"
    );
}
