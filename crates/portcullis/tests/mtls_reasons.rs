//! The reason a rejected client certificate gets, and the client an
//! accepted one maps to, on the real server. A partner CA with name
//! constraints meets the internal CA's CRL and a partner CRL. A partner
//! leaf copies the subject DN that the internal CA writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use rcgen::{DnType, SerialNumber};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use support::mtls::{
    Identity, PartnerCa, create_tls_client, failure_record, https, issue, leaf_params,
    partner_leaf, trust_partner,
};
use support::upstream::Upstream;
use support::{DataDir, Server, marker};

/// The DNS subtree that the constrained partner CA may certify.
const PERMITTED_DOMAIN: &str = "partner.example";
const INSIDE_DNS: &str = "svc.partner.example";
const OUTSIDE_DNS: &str = "evil.test";

/// Writes a configuration with client certificates in `mode`, the CRL
/// files `partner_crls`, and the route `/orders` that authenticates by
/// client certificate.
fn write_config(
    data: &DataDir,
    mode: &str,
    partner_crls: &[&std::path::Path],
    upstream: &Upstream,
) {
    let crls: Vec<String> = partner_crls
        .iter()
        .map(|path| format!("{:?}", path.to_str().unwrap()))
        .collect();
    data.write_config(&format!(
        r#"[server]
client_certificates = "{mode}"
partner_crls = [{crls}]

[[routes]]
path_prefix = "/orders"
upstream = "{upstream}"
auth = ["mtls"]

[routes.scopes]
GET = ["orders:read"]
"#,
        crls = crls.join(", "),
        upstream = upstream.url(),
    ));
}

/// Sends `GET /orders/items` with `identity` and returns the status and
/// JSON body, or `None` when the handshake or the connection failed.
async fn call(server: &Server, identity: &Identity) -> Option<(StatusCode, Value)> {
    let response = https(server, Some(identity))
        .get(server.url("/orders/items"))
        .header("x-test-case", marker())
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Asserts a 401 `code` whose detail names the verification code `reason`.
fn assert_rejected(answer: Option<(StatusCode, Value)>, code: &str, reason: &str) {
    let (status, body) = answer.expect("the request failed before any response");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("({reason})")), "{body}");
}

/// A leaf outside the partner CA's name constraints is rejected as
/// `name_constraint_violated` with the internal CA's CRL alone, with a
/// partner CRL that revokes it, at the gateway and in the handshake. A
/// leaf inside the constraints keeps `revocation_unknown` and `revoked`.
#[tokio::test]
async fn name_constraint_named_whatever_the_crls() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    create_tls_client(&data, "acme", &["--tls-san-dns", INSIDE_DNS]);
    data.cli(&["ca", "init"]);
    let partner = PartnerCa::constrained("Constrained partner CA", PERMITTED_DOMAIN);
    let crl_path = trust_partner(&data, &partner, "acme");
    std::fs::write(
        &crl_path,
        partner.revoking_crl_of(&[&[0x0f, 0x03], &[0x0f, 0x04], &[0x0f, 0x06]], None),
    )
    .unwrap();

    // The internal CA's CRL alone: no CRL covers the partner's leaves.
    write_config(&data, "optional", &[], &upstream);
    let server = Server::start(&data);
    let store = data.open_store().await;
    let outside = partner_leaf(&partner, OUTSIDE_DNS, &[0x0f, 0x01]);
    let inside = partner_leaf(&partner, INSIDE_DNS, &[0x0f, 0x02]);

    let outside_answer = call(&server, &outside).await;
    let inside_answer = call(&server, &inside).await;

    assert_rejected(
        outside_answer,
        "invalid_client_certificate",
        "name_constraint_violated",
    );
    assert_rejected(
        inside_answer,
        "invalid_client_certificate",
        "revocation_unknown",
    );
    let record = failure_record(&store, None, "0f01").await;
    assert_eq!(record["code"], "name_constraint_violated", "{record}");
    assert_eq!(record["surface"], "gateway", "{record}");
    let record = failure_record(&store, None, "0f02").await;
    assert_eq!(record["code"], "revocation_unknown", "{record}");
    let (_, _, metrics) = server.scrape().await;
    assert!(
        metrics.contains(
            "portcullis_certificate_verifications_total{outcome=\"name_constraint_violated\"}"
        ),
        "{metrics}"
    );
    drop(server);

    // A partner CRL that revokes 0f03, 0f04 and 0f06.
    write_config(&data, "optional", &[&crl_path], &upstream);
    let server = Server::start(&data);
    let outside_revoked = partner_leaf(&partner, OUTSIDE_DNS, &[0x0f, 0x03]);
    let inside_revoked = partner_leaf(&partner, INSIDE_DNS, &[0x0f, 0x04]);
    let inside_valid = partner_leaf(&partner, INSIDE_DNS, &[0x0f, 0x05]);

    let outside_answer = call(&server, &outside_revoked).await;
    let revoked_answer = call(&server, &inside_revoked).await;
    let valid_answer = call(&server, &inside_valid).await;

    assert_rejected(
        outside_answer,
        "invalid_client_certificate",
        "name_constraint_violated",
    );
    assert_rejected(revoked_answer, "certificate_revoked", "revoked");
    let (status, body) = valid_answer.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let record = failure_record(&store, None, "0f03").await;
    assert_eq!(record["code"], "name_constraint_violated", "{record}");
    let record = failure_record(&store, None, "0f04").await;
    assert_eq!(record["code"], "revoked", "{record}");
    drop(server);

    // The handshake of a listener that requires certificates fails, and
    // its audit record and metric name the constraint.
    write_config(&data, "required", &[&crl_path], &upstream);
    let server = Server::start(&data);
    let outside_revoked = partner_leaf(&partner, OUTSIDE_DNS, &[0x0f, 0x06]);

    let answer = call(&server, &outside_revoked).await;

    assert!(answer.is_none(), "the handshake succeeded: {answer:?}");
    let record = failure_record(&store, None, "0f06").await;
    assert_eq!(record["code"], "name_constraint_violated", "{record}");
    assert_eq!(record["surface"], "tls", "{record}");
    let (_, _, metrics) = server.scrape().await;
    assert!(
        metrics.contains(
            "portcullis_certificate_verifications_total{outcome=\"name_constraint_violated\"}"
        ),
        "{metrics}"
    );
    store.close().await;
}

/// Registration cannot give a client the subject DN `CN=<its own id>`,
/// because the id does not exist yet, so the test writes it to the
/// database as a restored or hand-edited store would hold it.
async fn map_client_to_own_common_name(data: &DataDir, client_id: &str) {
    let options = SqliteConnectOptions::new().filename(data.path().join("portcullis.db"));
    let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
    let updated = sqlx::query(
        "UPDATE oauth_clients SET tls_subject_kind = 'tls_client_auth_subject_dn', \
         tls_subject = ?1 WHERE id = ?2",
    )
    .bind(format!("CN={client_id}"))
    .bind(client_id)
    .execute(&mut connection)
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 1);
    connection.close().await.unwrap();
}

/// A client mapped by the subject DN `CN=<client id>`, which the internal
/// CA writes, authenticates with the internal CA's certificate. A partner
/// CA trusted for the same tenant that writes the same subject
/// authenticates no one.
#[tokio::test]
async fn partner_leaf_with_client_common_name_not_mapped() {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let client_id = create_tls_client(&data, "acme", &[])["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    map_client_to_own_common_name(&data, &client_id).await;
    let (internal_cert, _) = issue(&data, &client_id, "internal");
    let partner = PartnerCa::new();
    let crl_path = trust_partner(&data, &partner, "acme");
    let mut params = leaf_params();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, client_id.as_str());
    params.subject_alt_names = Vec::new();
    params.serial_number = Some(SerialNumber::from_slice(&[0x0f, 0x11]));
    let copied_cert = partner.sign(&params);
    write_config(&data, "optional", &[&crl_path], &upstream);
    let server = Server::start(&data);
    let store = data.open_store().await;

    let internal_answer = call(&server, &internal_cert).await;
    let copied_answer = call(&server, &copied_cert).await;

    let (status, body) = internal_answer.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header("x-portcullis-client-id"),
        Some(client_id.as_str())
    );
    let (status, body) = copied_answer.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "certificate_not_registered", "{body}");
    let record = failure_record(&store, None, "0f11").await;
    assert_eq!(record["code"], "certificate_not_registered", "{record}");
    assert_ne!(record["client_id"], client_id.as_str(), "{record}");
    store.close().await;
}
