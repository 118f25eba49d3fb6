//! A partner leaf revoked by a CRL file is rejected whatever the order of
//! its CRL distribution points and whichever of them the CRL's
//! issuingDistributionPoint names (RFC 5280 §6.3.3), or when the CRL has
//! none: at the token endpoint, at an `auth = ["mtls"]` route and by
//! `portcullis certs verify`. The distribution points name a local
//! listener, which must never be connected to, because CRLs are read from
//! files only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::io::ErrorKind;
use std::net::TcpListener;

use rcgen::{CrlDistributionPoint, SerialNumber};
use reqwest::StatusCode;
use serde_json::Value;
use support::mtls::{
    PARTNER_DNS, PartnerCa, create_tls_client, failure_record, https, leaf_params, trust_partner,
};
use support::upstream::Upstream;
use support::{DataDir, Server, marker};

#[tokio::test]
async fn revoked_leaf_rejected_for_every_distribution_point() {
    // The distribution points name this listener, so a fetch would show.
    let fetch_trap = TcpListener::bind("127.0.0.1:0").unwrap();
    fetch_trap.set_nonblocking(true).unwrap();
    let trap = fetch_trap.local_addr().unwrap();
    let point_a = format!("http://{trap}/a.crl");
    let point_b = format!("http://{trap}/b.crl");
    let upstream = Upstream::start();

    let variants = [
        (
            "A then B, IDP B",
            [&point_a, &point_b],
            Some(&point_b),
            0x01u8,
        ),
        (
            "B then A, IDP B",
            [&point_b, &point_a],
            Some(&point_b),
            0x02,
        ),
        (
            "A then B, IDP A",
            [&point_a, &point_b],
            Some(&point_a),
            0x03,
        ),
        ("A then B, no IDP", [&point_a, &point_b], None, 0x04),
    ];
    for (variant, points, idp, serial_byte) in variants {
        let data = DataDir::new();
        data.cli(&["tenants", "create", "acme"]);
        data.cli(&["ca", "init"]);
        let client_id =
            create_tls_client(&data, "acme", &["--tls-san-dns", PARTNER_DNS])["client_id"]
                .as_str()
                .unwrap()
                .to_owned();
        let partner = PartnerCa::new();
        let crl_path = trust_partner(&data, &partner, "acme");
        let serial = [0x0e, serial_byte];
        std::fs::write(
            &crl_path,
            partner.revoking_crl(&serial, idp.map(String::as_str)),
        )
        .unwrap();
        let serial_hex = format!("0e{serial_byte:02x}");

        let mut params = leaf_params();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.crl_distribution_points = points
            .iter()
            .map(|uri| CrlDistributionPoint {
                uris: vec![(*uri).clone()],
            })
            .collect();
        let leaf = partner.sign(&params);

        data.write_config(&format!(
            r#"[server]
client_certificates = "optional"
partner_crls = [{crl:?}]

[[routes]]
path_prefix = "/orders"
upstream = "{upstream}"
auth = ["mtls"]

[routes.scopes]
GET = ["orders:read"]
"#,
            crl = crl_path.to_str().unwrap(),
            upstream = upstream.url(),
        ));
        let server = Server::start(&data);
        let store = data.open_store().await;
        let client = https(&server, Some(&leaf));

        // The token endpoint.
        let response = client
            .post(server.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={client_id}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{variant}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client", "{variant}");

        // The gateway: 401, and the upstream receives nothing.
        let mark = marker();
        let response = client
            .get(server.url("/orders/1"))
            .header("x-test-case", &mark)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{variant}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "certificate_revoked", "{variant}");
        assert_eq!(upstream.count_marked(&mark), 0, "{variant}");

        // The audit log names the serial and the reason.
        let record = failure_record(&store, None, &serial_hex).await;
        assert_eq!(record["code"], "revoked", "{variant}: {record}");
        assert!(
            record["certificate_issuer"]
                .as_str()
                .unwrap()
                .contains("Partner CA"),
            "{variant}: {record}"
        );

        // `certs verify` gives the same verdict and exits with status 1.
        let leaf_path = data.path().join("leaf.pem");
        std::fs::write(&leaf_path, &leaf.cert_pem).unwrap();
        let ca_path = data.path().join("partner-ca-for-verify.pem");
        std::fs::write(&ca_path, &partner.pem).unwrap();
        let output = data
            .command()
            .args([
                "certs",
                "verify",
                "--chain",
                leaf_path.to_str().unwrap(),
                "--trust",
                ca_path.to_str().unwrap(),
                "--crl",
                crl_path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{variant}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("revoked"), "{variant}: {text}");
        assert!(text.contains(&serial_hex), "{variant}: {text}");

        // Killed, not stopped: this test is not about graceful shutdown.
        drop(server);
    }

    // Nothing connected to the distribution points.
    match fetch_trap.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!("a CRL distribution point was contacted: {other:?}"),
    }
}
