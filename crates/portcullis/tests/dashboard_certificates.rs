//! The dashboard's client certificate pages through one real server: a CSR
//! made here is uploaded, the certificate is downloaded and authenticates a
//! mutual TLS call to a gateway route, and revoking it in the dashboard
//! stops that call. Also the CSR checks, the multipart form's CSRF check,
//! what each role may do and tenant isolation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::sync::LazyLock;

use rcgen::{CertificateParams, KeyPair};
use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{Browser, Part, Reply, unescape};
use support::mtls::{Identity, create_tls_client, https, issue};
use support::upstream::Upstream;
use support::{DataDir, Server, marker};

const PASSWORD: &str = "correct horse battery staple";
const EVIL_ORIGIN: &str = "https://evil.example.test";
const CERTIFICATES: &str = "/dashboard/certificates";

/// A 1024-bit RSA CSR, too short for the CA, made with `openssl req`
/// because aws-lc-rs generates no RSA keys that short.
const RSA_1024_CSR: &str = include_str!("../../portcullis-server/src/pki/testdata/rsa1024.csr");

/// Tenants `acme` (an admin, two developers and a viewer) and `globex` (an
/// admin), the internal CA, and a gateway route that only client
/// certificates authenticate.
struct Fixture {
    server: Server,
    data: DataDir,
    _upstream: Upstream,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let upstream = Upstream::start();
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
    data.write_config(&format!(
        r#"
[server]
client_certificates = "optional"

[dashboard]
scopes = ["orders:read"]

[[routes]]
path_prefix = "/orders"
upstream = "{upstream}"
auth = ["mtls"]

[routes.scopes]
GET = ["orders:read"]
"#,
        upstream = upstream.url(),
    ));
    let server = Server::start(&data);
    Fixture {
        server,
        data,
        _upstream: upstream,
    }
});

async fn signed_in(tenant: &str, email: &str) -> Browser {
    Browser::signed_in(&FIXTURE.server, tenant, email, PASSWORD).await
}

/// Registers a `tls_client_auth` client of `tenant` for the internal CA
/// through the CLI and returns its id.
fn cli_client(tenant: &str) -> String {
    create_tls_client(&FIXTURE.data, tenant, &[])["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Makes a P-256 key and a CSR for it, and returns both.
fn new_csr() -> (KeyPair, rcgen::CertificateSigningRequest) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "billing service");
    let csr = params.serialize_request(&key).unwrap();
    (key, csr)
}

/// Opens the CSR form of `client` and returns its CSRF token.
async fn form_token(browser: &mut Browser, client: &str) -> String {
    let fields = browser
        .csrf_fields(&format!("{CERTIFICATES}/new?client={client}"), &[])
        .await;
    fields[0].1.clone()
}

/// Posts the CSR form for `client` with the token `token`, the validity
/// `days` and `csr` as the part `csr_part` (`csr_file` or `csr_text`).
async fn post_csr(
    browser: &mut Browser,
    token: &str,
    client: &str,
    days: &str,
    csr_part: Part,
) -> Reply {
    let parts = vec![
        Part::text("csrf_token", token),
        Part::text("client", client),
        Part::text("days", days),
        csr_part,
    ];
    browser.post_multipart_to(CERTIFICATES, &parts).await
}

/// Returns the serial at the end of the `Location` of a successful upload.
fn issued_serial(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let location = reply.location().unwrap();
    location
        .strip_prefix(&format!("{CERTIFICATES}/"))
        .unwrap_or_else(|| panic!("{location} is no certificate page"))
        .to_owned()
}

/// Returns the certificates of `client` as `certs list --output json`
/// prints them.
fn stored_certificates(client: &str) -> Vec<Value> {
    let listed = FIXTURE
        .data
        .cli_json(&["certs", "list", "--client", client]);
    listed["certificates"].as_array().unwrap().clone()
}

/// Returns the tenant's audit records of `action` about `target`.
fn audit_records(tenant: &str, action: &str, target: &str) -> Vec<Value> {
    FIXTURE.data.audit_records(tenant, action, target)
}

/// Sends `GET /orders/items` through `client` and returns the status and
/// JSON body.
async fn call(client: &reqwest::Client) -> (StatusCode, Value) {
    let server = &FIXTURE.server;
    let response = client
        .get(server.url("/orders/items"))
        .header("x-test-case", marker())
        .send()
        .await
        .unwrap_or_else(|error| panic!("{error}; server log:\n{}", server.log_text()));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends [`call`] until the server has learned of a client that the CLI
/// created. The CLI is another process, so the server learns of the client
/// from the change feed's next poll, which can lag on a loaded machine.
async fn call_once_client_known(client: &reqwest::Client) -> (StatusCode, Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = call(client).await;
        let unknown = body["code"] == "certificate_not_registered";
        if !unknown || std::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn uploaded_csr_certificate_calls_then_revoked() {
    let client = cli_client("acme");
    let mut admin = signed_in("acme", "admin@acme.test").await;

    // The client's page links the certificate pages.
    let client_page = admin.get(&format!("/dashboard/clients/{client}")).await;
    assert!(
        client_page
            .body
            .contains(&format!("{CERTIFICATES}/new?client={client}")),
        "{}",
        client_page.body
    );
    let form = admin
        .get(&format!("{CERTIFICATES}/new?client={client}"))
        .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(
        form.body.contains("enctype=\"multipart/form-data\""),
        "{}",
        form.body
    );
    assert!(form.body.contains("type=\"file\""), "{}", form.body);
    assert!(form.body.contains("<textarea"), "{}", form.body);
    assert!(form.body.contains("value=\"90\""), "{}", form.body);
    assert!(form.body.contains("max=\"397\""), "{}", form.body);
    assert!(
        form.body
            .contains(&format!("<option value=\"{client}\" selected>")),
        "{}",
        form.body
    );

    // Upload the CSR as a PEM file.
    let (key, csr) = new_csr();
    let token = form_token(&mut admin, &client).await;
    let file = Part::file("csr_file", "client.csr", csr.pem().unwrap().as_bytes());
    let reply = post_csr(&mut admin, &token, &client, "30", file).await;
    let serial = issued_serial(&reply);

    let stored = stored_certificates(&client);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["serial"], serial.as_str());
    let issued = audit_records("acme", "certificate.issued", &serial);
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert!(
        issued[0]["actor"].as_str().unwrap().starts_with("user:"),
        "{issued:?}"
    );

    // The certificate's page and the list show it with its expiry.
    let page = admin.get(&format!("{CERTIFICATES}/{serial}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let sha256 = stored[0]["sha256"].as_str().unwrap();
    for expected in [
        serial.as_str(),
        sha256,
        &format!("CN={client}"),
        &format!("URI:urn:portcullis:client:{client}"),
        "29 days",
        "status-active",
        "/certificate.pem",
        "/revoke",
    ] {
        assert!(page.body.contains(expected), "{expected}: {}", page.body);
    }
    let list = admin.get(CERTIFICATES).await;
    assert_eq!(list.status, StatusCode::OK);
    for expected in [serial.as_str(), sha256, "29 days", "active"] {
        assert!(list.body.contains(expected), "{expected}: {}", list.body);
    }
    let of_client = admin.get(&format!("{CERTIFICATES}?client={client}")).await;
    assert!(of_client.body.contains(&serial), "{}", of_client.body);

    // Download the certificate and the CA certificate.
    let download = admin
        .get(&format!("{CERTIFICATES}/{serial}/certificate.pem"))
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.header("content-type"), "application/x-pem-file");
    assert_eq!(
        download.header("content-disposition"),
        format!("attachment; filename=\"client-certificate-{serial}.pem\"")
    );
    assert_eq!(
        download.body,
        stored[0]["certificate_pem"].as_str().unwrap()
    );
    let ca = admin.get(&format!("{CERTIFICATES}/ca.pem")).await;
    assert_eq!(ca.status, StatusCode::OK);
    assert_eq!(ca.header("content-type"), "application/x-pem-file");
    assert!(
        ca.header("content-disposition").starts_with("attachment;"),
        "{}",
        ca.header("content-disposition")
    );
    let published = FIXTURE
        .server
        .client()
        .get(FIXTURE.server.url("/ca/ca.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ca.body, published);

    // The downloaded certificate authenticates the client on the gateway.
    let identity = Identity {
        cert_pem: download.body.clone(),
        key_pem: key.serialize_pem(),
    };
    let open = https(&FIXTURE.server, Some(&identity));
    let (status, body) = call_once_client_known(&open).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The confirmation page names the certificate and offers RFC 5280
    // reasons only.
    let path = format!("{CERTIFICATES}/{serial}/revoke");
    let confirm = admin.get(&path).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains(&serial), "{}", confirm.body);
    assert!(
        confirm.body.contains("value=\"keyCompromise\""),
        "{}",
        confirm.body
    );
    let fields = admin.csrf_fields(&path, &[("reason", "lost")]).await;
    let rejected = admin.post_to(&path, &fields).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        rejected.body.contains("keyCompromise, cACompromise"),
        "{}",
        rejected.body
    );
    assert_eq!(stored_certificates(&client)[0]["status"], "active");

    // Revoke it. The node that revokes adds the serial to its revoked set
    // before it answers, so the very next request on the open connection is
    // rejected, whenever the change feed's poll runs.
    let fields = admin
        .csrf_fields(&path, &[("reason", "keyCompromise")])
        .await;
    let revoked = admin.post_to(&path, &fields).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    let (status, body) = call(&open).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "certificate_revoked", "{body}");

    let stored = stored_certificates(&client);
    assert_eq!(stored[0]["status"], "revoked");
    assert_eq!(stored[0]["revoked_reason"], "keyCompromise");
    let records = audit_records("acme", "certificate.revoked", &serial);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["details"]["reason"], "keyCompromise");
    let page = admin.get(&format!("{CERTIFICATES}/{serial}")).await;
    assert!(page.body.contains("status-revoked"), "{}", page.body);
    assert!(!page.body.contains("/revoke\""), "{}", page.body);

    // A second revocation changes nothing.
    let again = admin.post_to(&path, &fields).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.body.contains("already revoked"), "{}", again.body);
}

#[tokio::test]
async fn der_file_and_pasted_csr_accepted() {
    let client = cli_client("acme");
    let mut admin = signed_in("acme", "admin@acme.test").await;

    let (_, csr) = new_csr();
    let token = form_token(&mut admin, &client).await;
    let file = Part::file("csr_file", "client.der", csr.der());
    let reply = post_csr(&mut admin, &token, &client, "90", file).await;
    let from_der = issued_serial(&reply);

    let (_, csr) = new_csr();
    let pasted = Part::text("csr_text", &csr.pem().unwrap());
    let reply = post_csr(&mut admin, &token, &client, "397", pasted).await;
    let from_text = issued_serial(&reply);

    let stored = stored_certificates(&client);
    let serials: Vec<&str> = stored
        .iter()
        .map(|certificate| certificate["serial"].as_str().unwrap())
        .collect();
    assert!(serials.contains(&from_der.as_str()), "{stored:?}");
    assert!(serials.contains(&from_text.as_str()), "{stored:?}");
    let page = admin.get(&format!("{CERTIFICATES}/{from_text}")).await;
    assert!(page.body.contains("396 days"), "{}", page.body);
}

#[tokio::test]
async fn invalid_csrs_rejected_with_message() {
    let client = cli_client("acme");
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let token = form_token(&mut admin, &client).await;

    let (_, good) = new_csr();
    let good_pem = good.pem().unwrap();
    let mut tampered = good.der().to_vec();
    *tampered.last_mut().unwrap() ^= 0x01;

    let cases: Vec<(&str, &str, Part, &str)> = vec![
        (
            "garbage file",
            "30",
            Part::file("csr_file", "client.csr", b"hello, not a CSR"),
            "it is not a PKCS#10 certification request",
        ),
        (
            "garbage text",
            "30",
            Part::text("csr_text", "not a CSR at all"),
            "expected a PEM CERTIFICATE REQUEST block",
        ),
        (
            "weak RSA key",
            "30",
            Part::file("csr_file", "weak.csr", RSA_1024_CSR.as_bytes()),
            "RSA key of 1024 bits is too short",
        ),
        (
            "bad signature",
            "30",
            Part::file("csr_file", "tampered.der", &tampered),
            "signature is invalid",
        ),
        (
            "no CSR",
            "30",
            Part::text("csr_text", ""),
            "choose a CSR file or paste a CSR",
        ),
        (
            "zero days",
            "0",
            Part::text("csr_text", &good_pem),
            "invalid validity of 0 days: expected 1 to 397",
        ),
        (
            "too many days",
            "398",
            Part::text("csr_text", &good_pem),
            "invalid validity of 398 days",
        ),
        (
            "days not a number",
            "ninety",
            Part::text("csr_text", &good_pem),
            "enter a whole number of days from 1 to 397",
        ),
    ];
    for (case, days, part, message) in cases {
        let reply = post_csr(&mut admin, &token, &client, days, part).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{case}");
        let body = unescape(&reply.body);
        assert!(body.contains(message), "{case}: {body}");
        assert!(body.contains("No certificate was issued"), "{case}: {body}");
        // The typed validity comes back.
        assert!(
            body.contains(&format!("value=\"{days}\"")),
            "{case}: {body}"
        );
    }

    // A file and a pasted CSR together are ambiguous.
    let parts = vec![
        Part::text("csrf_token", &token),
        Part::text("client", &client),
        Part::text("days", "30"),
        Part::file("csr_file", "client.csr", good_pem.as_bytes()),
        Part::text("csr_text", &good_pem),
    ];
    let reply = admin.post_multipart_to(CERTIFICATES, &parts).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body.contains("not both"), "{}", reply.body);

    // A file larger than the form's limit, and one under it but larger
    // than a CSR may be.
    for size in [200 * 1024, 70 * 1024] {
        let big = vec![b'A'; size];
        let file = Part::file("csr_file", "big.csr", &big);
        let reply = post_csr(&mut admin, &token, &client, "30", file).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{size}");
        assert!(
            reply.body.contains("a CSR is at most 64 KiB"),
            "{size}: {}",
            reply.body
        );
    }

    assert!(stored_certificates(&client).is_empty());
}

#[tokio::test]
async fn multipart_without_csrf_token_rejected() {
    let client = cli_client("acme");
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let (_, csr) = new_csr();
    let pem = csr.pem().unwrap();

    let without = vec![
        Part::text("client", &client),
        Part::text("days", "30"),
        Part::file("csr_file", "client.csr", pem.as_bytes()),
    ];
    let reply = admin.post_multipart_to(CERTIFICATES, &without).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    let mut wrong = vec![Part::text("csrf_token", "not-the-token")];
    wrong.extend(without.iter().cloned());
    let reply = admin.post_multipart_to(CERTIFICATES, &wrong).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    // The token sent twice is rejected before it is checked.
    let token = form_token(&mut admin, &client).await;
    let twice = vec![
        Part::text("csrf_token", &token),
        Part::text("csrf_token", &token),
        Part::text("client", &client),
        Part::text("csr_text", &pem),
    ];
    let reply = admin.post_multipart_to(CERTIFICATES, &twice).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);

    // The right token from another origin is rejected too.
    admin.origin = EVIL_ORIGIN.to_owned();
    let file = Part::file("csr_file", "client.csr", pem.as_bytes());
    let reply = post_csr(&mut admin, &token, &client, "30", file).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    assert!(stored_certificates(&client).is_empty());
}

#[tokio::test]
async fn ca_refusal_shown_on_form() {
    let client = cli_client("acme");
    let mut admin = signed_in("acme", "admin@acme.test").await;
    let token = form_token(&mut admin, &client).await;
    FIXTURE.data.cli(&["clients", "revoke", &client]);

    let (_, csr) = new_csr();
    let pem = csr.pem().unwrap();
    let file = Part::file("csr_file", "client.csr", pem.as_bytes());
    let reply = post_csr(&mut admin, &token, &client, "45", file).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    let body = unescape(&reply.body);
    assert!(
        body.contains(&format!(
            "The CA rejected the request: client {client} is revoked"
        )),
        "{body}"
    );
    // The form keeps the client, the validity and the uploaded CSR.
    assert!(body.contains("value=\"45\""), "{body}");
    assert!(body.contains(pem.trim()), "{body}");
    assert!(
        body.contains(&format!("<option value=\"{client}\" selected>")),
        "{body}"
    );
    assert!(stored_certificates(&client).is_empty());
}

#[tokio::test]
async fn viewer_reads_but_cannot_change() {
    let client = cli_client("acme");
    let (_, serial) = issue(&FIXTURE.data, &client, &format!("viewer-{}", marker()));
    let mut viewer = signed_in("acme", "viewer@acme.test").await;

    let list = viewer.get(CERTIFICATES).await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&serial), "{}", list.body);
    assert!(!list.body.contains("Get a certificate"), "{}", list.body);
    let page = viewer.get(&format!("{CERTIFICATES}/{serial}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("/revoke\""), "{}", page.body);
    let download = viewer
        .get(&format!("{CERTIFICATES}/{serial}/certificate.pem"))
        .await;
    assert_eq!(download.status, StatusCode::OK);

    for path in [
        format!("{CERTIFICATES}/new"),
        format!("{CERTIFICATES}/new?client={client}"),
        format!("{CERTIFICATES}/{serial}/revoke"),
    ] {
        let reply = viewer.get(&path).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
    }

    let token = viewer.csrf_fields(CERTIFICATES, &[]).await[0].1.clone();
    let (_, csr) = new_csr();
    let file = Part::file("csr_file", "client.csr", csr.pem().unwrap().as_bytes());
    let reply = post_csr(&mut viewer, &token, &client, "30", file).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let fields = vec![
        ("csrf_token".to_owned(), token),
        ("reason".to_owned(), "keyCompromise".to_owned()),
    ];
    let path = format!("{CERTIFICATES}/{serial}/revoke");
    let reply = viewer.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);

    let stored = stored_certificates(&client);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["status"], "active");
}

#[tokio::test]
async fn developer_manages_only_own_clients() {
    let mut developer = signed_in("acme", "dev@acme.test").await;
    let fields = developer
        .csrf_fields(
            "/dashboard/clients/new",
            &[
                ("name", "Developer mTLS service"),
                ("client_type", "confidential"),
                ("grant_type.1", "client_credentials"),
                ("scope.0", "orders:read"),
                ("auth_method", "tls_client_auth"),
                ("tls_subject_kind", "internal_ca"),
            ],
        )
        .await;
    let registered = developer.post_to("/dashboard/clients", &fields).await;
    assert_eq!(
        registered.status,
        StatusCode::SEE_OTHER,
        "{}",
        registered.body
    );
    let own = registered
        .location()
        .unwrap()
        .strip_prefix("/dashboard/clients/")
        .unwrap()
        .to_owned();

    // The form offers the developer's client and not the admin's.
    let admins = cli_client("acme");
    let form = developer.get(&format!("{CERTIFICATES}/new")).await;
    assert!(form.body.contains(&own), "{}", form.body);
    assert!(!form.body.contains(&admins), "{}", form.body);
    let reply = developer
        .get(&format!("{CERTIFICATES}/new?client={admins}"))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let token = form_token(&mut developer, &own).await;
    let (_, csr) = new_csr();
    let pem = csr.pem().unwrap();
    let reply = post_csr(
        &mut developer,
        &token,
        &own,
        "30",
        Part::text("csr_text", &pem),
    )
    .await;
    let serial = issued_serial(&reply);

    let reply = post_csr(
        &mut developer,
        &token,
        &admins,
        "30",
        Part::text("csr_text", &pem),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert!(stored_certificates(&admins).is_empty());

    // Another developer may neither get certificates for the client nor
    // revoke its certificate.
    let mut other = signed_in("acme", "dev2@acme.test").await;
    let token = other.csrf_fields(CERTIFICATES, &[]).await[0].1.clone();
    let reply = post_csr(&mut other, &token, &own, "30", Part::text("csr_text", &pem)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let path = format!("{CERTIFICATES}/{serial}/revoke");
    let fields = vec![
        ("csrf_token".to_owned(), token),
        ("reason".to_owned(), "superseded".to_owned()),
    ];
    let reply = other.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(stored_certificates(&own).len(), 1);
    assert_eq!(stored_certificates(&own)[0]["status"], "active");

    let fields = developer
        .csrf_fields(&path, &[("reason", "superseded")])
        .await;
    let reply = developer.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(stored_certificates(&own)[0]["status"], "revoked");
}

#[tokio::test]
async fn other_tenant_certificates_not_found() {
    let globex_client = cli_client("globex");
    let (_, globex_serial) = issue(
        &FIXTURE.data,
        &globex_client,
        &format!("globex-{}", marker()),
    );
    let mut admin = signed_in("acme", "admin@acme.test").await;

    for path in [
        format!("{CERTIFICATES}?client={globex_client}"),
        format!("{CERTIFICATES}/new?client={globex_client}"),
        format!("{CERTIFICATES}/{globex_serial}"),
        format!("{CERTIFICATES}/{globex_serial}/certificate.pem"),
        format!("{CERTIFICATES}/{globex_serial}/revoke"),
        format!("{CERTIFICATES}/not-a-serial"),
    ] {
        let reply = admin.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let list = admin.get(CERTIFICATES).await;
    assert!(!list.body.contains(&globex_serial), "{}", list.body);

    let own = cli_client("acme");
    let token = form_token(&mut admin, &own).await;
    let (_, csr) = new_csr();
    let reply = post_csr(
        &mut admin,
        &token,
        &globex_client,
        "30",
        Part::text("csr_text", &csr.pem().unwrap()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

    let fields = vec![
        ("csrf_token".to_owned(), token),
        ("reason".to_owned(), "keyCompromise".to_owned()),
    ];
    let path = format!("{CERTIFICATES}/{globex_serial}/revoke");
    let reply = admin.post_to(&path, &fields).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);

    let stored = stored_certificates(&globex_client);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["status"], "active");
    assert!(audit_records("globex", "certificate.revoked", &globex_serial).is_empty());
}
