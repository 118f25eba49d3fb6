//! The token endpoint with `tls_client_auth` clients (RFC 8705 §2.1):
//! certificates from `portcullis certs issue` and from a partner CA made
//! here, certificate-bound tokens (§3.1), their introspection (§3.2) and
//! the server metadata (§3.3, §5). One server, with client certificates
//! `optional`, serves every case.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::crypto::MasterKey;
use portcullis_core::ids::TokenFamilyId;
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::RefreshTokenRecord;
use portcullis_core::scope::ScopeSet;
use portcullis_store::Store;
use rcgen::{ExtendedKeyUsagePurpose, KeyPair, SerialNumber};
use reqwest::StatusCode;
use serde_json::Value;
use support::mtls::{
    Identity, PARTNER_CA_SERIAL, PARTNER_DNS, PartnerCa, create_self_signed_client,
    create_tls_client, failure_record, https, issue, leaf_params, self_signed_with_jwk,
    trust_partner,
};
use support::{DataDir, Server, url_encode};

const FORM: &str = "application/x-www-form-urlencoded";

/// Sends a `client_credentials` request for `client_id` and returns the
/// status and JSON body.
async fn token(
    server: &Server,
    identity: Option<&Identity>,
    client_id: &str,
) -> (StatusCode, Value) {
    let response = https(server, identity)
        .post(server.url("/oauth/token"))
        .header("content-type", FORM)
        .body(format!(
            "grant_type=client_credentials&client_id={client_id}"
        ))
        .send()
        .await
        .unwrap_or_else(|error| panic!("{error}; server log:\n{}", server.log_text()));
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Stores a refresh token of `client_id`, as a client credentials grant
/// that allowed refreshing would, and returns the token.
async fn insert_refresh_token(data: &DataDir, store: &Store, client_id: &str) -> String {
    let key_text = std::fs::read_to_string(data.path().join("master.key")).unwrap();
    let pepper = MasterKey::from_encoded(key_text.trim())
        .unwrap()
        .derive_pepper();
    let secret = OpaqueSecret::generate(SecretKind::RefreshToken).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let record = RefreshTokenRecord {
        hash: pepper.hash(secret.expose().as_bytes()),
        family_id: TokenFamilyId::generate(),
        client_id: client_id.parse().unwrap(),
        user_id: None,
        scopes: ScopeSet::parse_list("orders:read").unwrap(),
        resource: None,
        created_at: now,
        expires_at: now + time::Duration::days(1),
        used_at: None,
        revoked_at: None,
    };
    store.insert_refresh_token(&record).await.unwrap();
    secret.expose().to_owned()
}

/// Sends a `refresh_token` grant for `client_id` over a connection that
/// presents `identity`.
async fn refresh_grant(
    server: &Server,
    identity: &Identity,
    client_id: &str,
    refresh_token: &str,
) -> (StatusCode, Value) {
    let response = https(server, Some(identity))
        .post(server.url("/oauth/token"))
        .header("content-type", FORM)
        // Refresh tokens and UUIDs need no form encoding.
        .body(format!(
            "grant_type=refresh_token&refresh_token={refresh_token}&client_id={client_id}"
        ))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Decodes the claims of a JWT without checking the signature.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Returns leaves that fail chain verification, each with a label, the
/// serial the audit record must name and the expected failure code.
fn rejected_chains(partner: &PartnerCa) -> Vec<(&'static str, Identity, String, &'static str)> {
    let now = time::OffsetDateTime::now_utc();
    let mut cases = Vec::new();

    let mut server_auth = leaf_params();
    server_auth.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_auth.serial_number = Some(SerialNumber::from_slice(&[0x0b, 0x02]));
    cases.push((
        "serverAuth only",
        partner.sign(&server_auth),
        "0b02",
        "wrong_usage",
    ));

    let mut expired = leaf_params();
    expired.not_before = now - time::Duration::days(10);
    expired.not_after = now - time::Duration::days(1);
    expired.serial_number = Some(SerialNumber::from_slice(&[0x0b, 0x04]));
    cases.push(("expired", partner.sign(&expired), "0b04", "expired"));

    let mut future = leaf_params();
    future.not_before = now + time::Duration::days(1);
    future.not_after = now + time::Duration::days(10);
    future.serial_number = Some(SerialNumber::from_slice(&[0x0b, 0x05]));
    cases.push((
        "not yet valid",
        partner.sign(&future),
        "0b05",
        "not_yet_valid",
    ));

    let mut self_signed = leaf_params();
    self_signed.serial_number = Some(SerialNumber::from_slice(&[0x0b, 0x06]));
    let key = KeyPair::generate().unwrap();
    let cert = self_signed.self_signed(&key).unwrap();
    let stranger = Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    cases.push(("self-signed", stranger, "0b06", "unknown_issuer"));

    cases.push((
        "CA as leaf",
        partner.as_leaf(),
        PARTNER_CA_SERIAL,
        "ca_used_as_leaf",
    ));

    cases
        .into_iter()
        .map(|(case, identity, serial, code)| (case, identity, serial.to_owned(), code))
        .collect()
}

#[tokio::test]
async fn certificate_clients_get_bound_tokens() {
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["tenants", "create", "globex"]);
    data.cli(&["ca", "init"]);
    let internal = create_tls_client(&data, "acme", &["--grant-types", "refresh_token"]);
    let internal_id = internal["client_id"].as_str().unwrap().to_owned();
    let other_id = create_tls_client(&data, "acme", &[])["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let partner_id = create_tls_client(&data, "acme", &["--tls-san-dns", PARTNER_DNS])["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let globex_id =
        create_tls_client(&data, "globex", &["--tls-san-dns", PARTNER_DNS])["client_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let (self_signed, self_signed_jwk) = self_signed_with_jwk();
    let self_signed_id =
        create_self_signed_client(&data, "globex", "orders:read", &self_signed_jwk);
    let (cert_a, _) = issue(&data, &internal_id, "a");
    let (other_cert, other_serial) = issue(&data, &other_id, "other");
    let partner = PartnerCa::new();
    let crl_path = trust_partner(&data, &partner, "acme");
    data.write_config(&format!(
        "[server]\nclient_certificates = \"optional\"\npartner_crls = [{:?}]\n",
        crl_path.to_str().unwrap()
    ));
    let server = Server::start(&data);
    let store = data.open_store().await;

    // The registration defaults to the SAN URI the internal CA writes.
    assert_eq!(
        internal["tls_client_auth_san_uri"],
        format!("urn:portcullis:client:{internal_id}")
    );
    assert_eq!(internal["tls_client_certificate_bound_access_tokens"], true);

    // An internal-CA certificate of the client: a token bound to it.
    let (status, body) = token(&server, Some(&cert_a), &internal_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access_token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims(&access_token)["cnf"]["x5t#S256"],
        cert_a.thumbprint(),
        "the token is bound to certificate A"
    );

    // Introspection by the same client returns the confirmation.
    let introspected: Value = https(&server, Some(&cert_a))
        .post(server.url("/oauth/introspect"))
        .header("content-type", FORM)
        // A JWT and a UUID need no form encoding.
        .body(format!("token={access_token}&client_id={internal_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["cnf"]["x5t#S256"], cert_a.thumbprint());

    // Metadata of a server that takes client certificates.
    let metadata: Value = https(&server, None)
        .get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    let methods = metadata["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("\"tls_client_auth\""), "{methods}");
    assert!(
        methods.contains("\"self_signed_tls_client_auth\""),
        "{methods}"
    );
    assert_eq!(
        metadata["mtls_endpoint_aliases"]["token_endpoint"],
        metadata["token_endpoint"]
    );
    assert_eq!(
        metadata["mtls_endpoint_aliases"]["introspection_endpoint"],
        metadata["introspection_endpoint"]
    );
    assert_eq!(
        metadata["mtls_endpoint_aliases"]["revocation_endpoint"],
        metadata["revocation_endpoint"]
    );

    // A certificate the internal CA issued to another client.
    let (status, body) = token(&server, Some(&other_cert), &internal_id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_description_names(&body, "not_issued_to_client");
    let record = failure_record(&store, Some(&internal_id), &other_serial).await;
    assert_eq!(record["code"], "not_issued_to_client");
    assert_eq!(record["surface"], "oauth");
    assert!(
        record["certificate_issuer"]
            .as_str()
            .is_some_and(|issuer| !issuer.is_empty()),
        "{record}"
    );

    // A refresh binds the new token to the certificate of the refresh
    // request, which must authenticate the same client.
    let (cert_b, _) = issue(&data, &internal_id, "b");
    let refresh = insert_refresh_token(&data, &store, &internal_id).await;
    let (status, body) = refresh_grant(&server, &other_cert, &internal_id, &refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = refresh_grant(&server, &cert_b, &internal_id, &refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed = claims(body["access_token"].as_str().unwrap());
    assert_eq!(refreshed["cnf"]["x5t#S256"], cert_b.thumbprint());

    // No certificate at all.
    let (status, body) = token(&server, None, &internal_id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_description_names(&body, "certificate_missing");

    // A partner CA trusted for acme, mapped by SAN DNS.
    let partner_leaf = partner.leaf(true);
    let (status, body) = token(&server, Some(&partner_leaf), &partner_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bound = claims(body["access_token"].as_str().unwrap());
    assert_eq!(bound["cnf"]["x5t#S256"], partner_leaf.thumbprint());

    // The same certificate for a client of globex, which does not trust
    // the partner CA.
    let (status, body) = token(&server, Some(&partner_leaf), &globex_id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_description_names(&body, "anchor_not_trusted_for_tenant");

    // A leaf without the extended key usage extension is accepted: RFC
    // 5280 §4.2.1.12 reads it as any purpose.
    let (status, body) = token(&server, Some(&partner.leaf(false)), &partner_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A self-signed certificate whose key is in the client's JWKS (RFC
    // 8705 §2.2), and one whose key is not.
    let (status, body) = token(&server, Some(&self_signed), &self_signed_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bound = claims(body["access_token"].as_str().unwrap());
    assert_eq!(bound["cnf"]["x5t#S256"], self_signed.thumbprint());
    let (unregistered, _) = self_signed_with_jwk();
    let (status, body) = token(&server, Some(&unregistered), &self_signed_id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert_description_names(&body, "key_not_registered");

    // Chains that fail verification reach the application in optional
    // mode and get 401 invalid_client, with an audit record that
    // names the leaf's serial and issuer.
    for (case, identity, serial, code) in rejected_chains(&partner) {
        let (status, body) = token(&server, Some(&identity), &partner_id).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error"], "invalid_client", "{case}");
        assert_description_names(&body, code);
        let record = failure_record(&store, Some(&partner_id), &serial).await;
        assert_eq!(record["code"], code, "{case}");
        assert_eq!(record["certificate_serial"], serial.as_str(), "{case}");
        let issuer = record["certificate_issuer"].as_str().unwrap_or_default();
        assert!(issuer.contains("CN="), "{case}: issuer {issuer:?}");
    }

    store.close().await;
}

/// Asserts that an `invalid_client` body's `error_description` names the
/// reason `code` and stays within the characters RFC 6749 §5.2 allows.
fn assert_description_names(body: &Value, code: &str) {
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains(&format!("({code})")),
        "expected {code} in {body}"
    );
    assert!(
        description
            .chars()
            .all(|c| matches!(c, ' '..='~') && c != '"' && c != '\\'),
        "{description:?}"
    );
}

/// Sends `GET /orders/1` with `access_token`, presenting `identity` and
/// adding `extra` headers, and returns the status and `WWW-Authenticate`.
async fn get_orders(
    server: &Server,
    identity: Option<&Identity>,
    access_token: &str,
    extra: &[(&str, String)],
) -> (StatusCode, Option<String>) {
    let mut request = https(server, identity)
        .get(server.url("/orders/1"))
        .bearer_auth(access_token);
    for (name, value) in extra {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned());
    (response.status(), challenge)
}

#[tokio::test]
async fn bound_token_needs_its_certificate() {
    let upstream = support::upstream::Upstream::start();
    let data = DataDir::new();
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let client_id = create_tls_client(&data, "acme", &[])["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (cert_a, _) = issue(&data, &client_id, "a");
    let (cert_b, _) = issue(&data, &client_id, "b");
    data.write_config(&format!(
        r#"
[server]
client_certificates = "optional"

[[routes]]
path_prefix = "/orders"
upstream = "{}"
auth = ["jwt"]
audience = "https://api.example.com"
[routes.scopes]
GET = ["orders:read"]
"#,
        upstream.url()
    ));
    let server = Server::start(&data);
    let (status, body) = token(&server, Some(&cert_a), &client_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access_token = body["access_token"].as_str().unwrap().to_owned();

    let without = get_orders(&server, None, &access_token, &[]).await;
    let other = get_orders(&server, Some(&cert_b), &access_token, &[]).await;
    // 127.0.0.1 is not a trusted proxy here, so the header is ignored.
    let xfcc = format!("Hash=00;Cert=\"{}\"", url_encode(&cert_a.cert_pem));
    let forged = get_orders(
        &server,
        None,
        &access_token,
        &[("x-forwarded-client-cert", xfcc)],
    )
    .await;
    let before = upstream.count();
    let bound = get_orders(&server, Some(&cert_a), &access_token, &[]).await;

    for (case, (status, challenge)) in [("none", &without), ("B", &other), ("xfcc", &forged)] {
        assert_eq!(*status, StatusCode::UNAUTHORIZED, "certificate {case}");
        let challenge = challenge.as_deref().unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "certificate {case}: {challenge}"
        );
    }
    assert_eq!(before, 0, "the upstream received a rejected request");
    assert_eq!(bound.0, StatusCode::OK);
    assert_eq!(upstream.count(), 1);
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header("x-portcullis-client-certificate-sha256"),
        Some(cert_a.thumbprint().as_str())
    );
}
