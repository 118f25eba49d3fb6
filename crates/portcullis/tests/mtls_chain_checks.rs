//! Partner chains that fail path validation (RFC 5280 §6.1) at the token
//! endpoint: with client certificates `optional` each gets 401
//! `invalid_client` and an audit record with the leaf's serial and issuer,
//! and with `required` each fails the handshake while the control leaf
//! gets a token.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use rcgen::{
    BasicConstraints, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use reqwest::StatusCode;
use serde_json::Value;
use support::mtls::{
    Identity, PARTNER_DNS, PartnerCa, create_tls_client, failure_record, https, leaf_params,
    trust_partner,
};
use support::{DataDir, Server};

/// Signs a leaf with `serial` by an intermediate of `partner`, and returns
/// the leaf followed by the intermediate, as a TLS client sends them.
/// `ca` sets the intermediate's basicConstraints CA flag and `expired`
/// ends its validity yesterday.
fn leaf_under_intermediate(partner: &PartnerCa, serial: u8, ca: bool, expired: bool) -> Identity {
    let now = time::OffsetDateTime::now_utc();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Partner Intermediate");
    params.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - time::Duration::days(30);
    params.not_after = if expired {
        now - time::Duration::days(1)
    } else {
        now + time::Duration::days(30)
    };
    let intermediate_key = KeyPair::generate().unwrap();
    let intermediate = params
        .signed_by(&intermediate_key, &partner.issuer)
        .unwrap();
    let issuer = Issuer::new(params, intermediate_key);

    let mut leaf = leaf_params();
    leaf.serial_number = Some(SerialNumber::from_slice(&[0x0f, serial]));
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    Identity {
        cert_pem: format!("{}{}", cert.pem(), intermediate.pem()),
        key_pem: key.serialize_pem(),
    }
}

/// Returns leaves that fail path validation, each with a label and the
/// serial its audit record must name.
fn rejected_leaves(partner: &PartnerCa) -> Vec<(&'static str, Identity, &'static str)> {
    let now = time::OffsetDateTime::now_utc();
    let with_serial = |serial: u8, edit: &dyn Fn(&mut rcgen::CertificateParams)| {
        let mut params = leaf_params();
        params.serial_number = Some(SerialNumber::from_slice(&[0x0f, serial]));
        edit(&mut params);
        partner.sign(&params)
    };
    let server_auth = with_serial(0x02, &|params| {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    let expired = with_serial(0x04, &|params| {
        params.not_before = now - time::Duration::days(10);
        params.not_after = now - time::Duration::days(1);
    });
    let future = with_serial(0x05, &|params| {
        params.not_before = now + time::Duration::days(1);
        params.not_after = now + time::Duration::days(10);
    });
    let mut self_signed_params = leaf_params();
    self_signed_params.serial_number = Some(SerialNumber::from_slice(&[0x0f, 0x06]));
    let key = KeyPair::generate().unwrap();
    let self_signed = Identity {
        cert_pem: self_signed_params.self_signed(&key).unwrap().pem(),
        key_pem: key.serialize_pem(),
    };
    vec![
        ("b: serverAuth only", server_auth, "0f02"),
        ("d: expired", expired, "0f04"),
        ("e: not yet valid", future, "0f05"),
        ("f: self-signed", self_signed, "0f06"),
        (
            "g: expired intermediate",
            leaf_under_intermediate(partner, 0x07, true, true),
            "0f07",
        ),
        ("h: CA as leaf", partner.as_leaf(), "0c01"),
        (
            "i: intermediate without CA:TRUE",
            leaf_under_intermediate(partner, 0x09, false, false),
            "0f09",
        ),
    ]
}

/// Starts a server in `mode` with a partner CA trusted for `acme` and its
/// `tls_client_auth` client, and returns them.
fn start(mode: &str) -> (DataDir, Server, PartnerCa, String) {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let client_id = create_tls_client(&data, "acme", &["--tls-san-dns", PARTNER_DNS])["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let partner = PartnerCa::new();
    let crl_path = trust_partner(&data, &partner, "acme");
    data.write_config(&format!(
        "[server]\nclient_certificates = \"{mode}\"\npartner_crls = [{:?}]\n",
        crl_path.to_str().unwrap()
    ));
    let server = Server::start(&data);
    (data, server, partner, client_id)
}

/// Sends a `client_credentials` request for `client_id` over a connection
/// that presents `identity`.
async fn token(
    server: &Server,
    identity: &Identity,
    client_id: &str,
) -> reqwest::Result<reqwest::Response> {
    https(server, Some(identity))
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}"
        ))
        .send()
        .await
}

#[tokio::test]
async fn optional_mode_rejects_bad_chains() {
    let (data, server, partner, client_id) = start("optional");
    let store = data.open_store().await;

    for (case, identity, serial) in rejected_leaves(&partner) {
        let response = token(&server, &identity, &client_id).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{case}");
        assert!(body.get("access_token").is_none(), "{case}");

        let record = failure_record(&store, Some(&client_id), serial).await;
        assert!(
            !record["certificate_issuer"].as_str().unwrap().is_empty(),
            "{case}: {record}"
        );
    }
}

#[tokio::test]
async fn required_mode_fails_bad_handshakes() {
    let (_data, server, partner, client_id) = start("required");

    let control = partner.leaf(true);
    let response = token(&server, &control, &client_id).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");

    for (case, identity, _) in rejected_leaves(&partner) {
        let result = token(&server, &identity, &client_id).await;
        assert!(
            result.is_err(),
            "{case}: expected a failed handshake, got {result:?}"
        );
    }
}
