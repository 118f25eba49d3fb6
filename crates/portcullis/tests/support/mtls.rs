//! Client certificates for mTLS tests: a partner CA made in the test,
//! self-signed certificates with their JWK, internal-CA certificates from
//! `portcullis certs issue`, and HTTPS clients that present them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_server::pki::verify::thumbprint_sha256;
use portcullis_store::{AuditAction, AuditFilter, Store};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CrlIssuingDistributionPoint, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

use super::{DataDir, Server};

pub const PARTNER_DNS: &str = "partner-svc.example.com";

/// A client certificate and its private key, PEM.
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Identity {
    pub fn read(dir: &Path) -> Self {
        Self {
            cert_pem: std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
            key_pem: std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        }
    }

    /// Returns the `x5t#S256` of the leaf: SHA-256 of its DER, base64url.
    pub fn thumbprint(&self) -> String {
        let leaf = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        thumbprint_sha256(&leaf)
    }
}

/// A partner CA made here, trusted for one tenant.
pub struct PartnerCa {
    pub issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub key_pem: String,
}

/// Serial of the partner CA's own certificate, as the audit log writes it.
pub const PARTNER_CA_SERIAL: &str = "0c01";

impl PartnerCa {
    pub fn new() -> Self {
        Self::named("Partner CA")
    }

    /// Makes a partner CA whose subject common name is `name`.
    pub fn named(name: &str) -> Self {
        Self::with_name_constraints(name, None)
    }

    /// Makes a partner CA named `name` whose name constraints permit DNS
    /// names under `domain` only.
    pub fn constrained(name: &str, domain: &str) -> Self {
        let constraints = NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName(domain.to_owned())],
            excluded_subtrees: Vec::new(),
        };
        Self::with_name_constraints(name, Some(constraints))
    }

    /// Makes a partner CA named `name` with `name_constraints`, if any.
    pub fn with_name_constraints(name: &str, name_constraints: Option<NameConstraints>) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.name_constraints = name_constraints;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from_slice(&[0x0c, 0x01]));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Returns the CA's own certificate and key, to present as a leaf.
    pub fn as_leaf(&self) -> Identity {
        Identity {
            cert_pem: self.pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// Returns a CRL, PEM, that revokes nothing and is valid for a week.
    pub fn empty_crl(&self) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    /// Returns a CRL, PEM, that revokes `serial` and is valid for a week,
    /// with `idp` as its issuingDistributionPoint.
    pub fn revoking_crl(&self, serial: &[u8], idp: Option<&str>) -> String {
        self.revoking_crl_of(&[serial], idp)
    }

    /// Returns a CRL like [`Self::revoking_crl`] that revokes each of
    /// `serials`.
    pub fn revoking_crl_of(&self, serials: &[&[u8]], idp: Option<&str>) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from_slice(&[2]),
            issuing_distribution_point: idp.map(|uri| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![uri.to_owned()],
                },
                scope: None,
            }),
            revoked_certs: serials
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - time::Duration::hours(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    /// Signs a leaf for [`PARTNER_DNS`] with the clientAuth extended key
    /// usage, or without the extension when `client_auth_eku` is false.
    pub fn leaf(&self, client_auth_eku: bool) -> Identity {
        let mut params = leaf_params();
        if !client_auth_eku {
            params.extended_key_usages = Vec::new();
        }
        self.sign(&params)
    }

    pub fn sign(&self, params: &CertificateParams) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Signs a leaf of `partner` like [`leaf_params`], for `dns` with `serial`.
pub fn partner_leaf(partner: &PartnerCa, dns: &str, serial: &[u8]) -> Identity {
    let mut params = leaf_params();
    params.subject_alt_names = vec![SanType::DnsName(dns.try_into().unwrap())];
    params.serial_number = Some(SerialNumber::from_slice(serial));
    partner.sign(&params)
}

/// Makes a self-signed P-256 certificate and returns it with the public
/// JWK of its key.
pub fn self_signed_with_jwk() -> (Identity, Value) {
    let key = KeyPair::generate().unwrap();
    let params = leaf_params();
    let cert = params.self_signed(&key).unwrap();
    // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
    let point = key.public_key_raw();
    let jwk = serde_json::json!({
        "kty": "EC",
        "crv": "P-256",
        "kid": "self-signed",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    let identity = Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    (identity, jwk)
}

/// Returns the parameters of a valid partner leaf: SAN [`PARTNER_DNS`], clientAuth,
/// valid from yesterday for 30 days.
pub fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::new(vec![PARTNER_DNS.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "partner service");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
    params
}

/// Registers a `client_credentials` client of `tenant` for
/// `tls_client_auth` with `extra` options and returns its JSON view.
pub fn create_tls_client(data: &DataDir, tenant: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "clients",
        "create",
        "--tenant",
        tenant,
        "--name",
        "Partner",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--auth-method",
        "tls_client_auth",
    ];
    args.extend_from_slice(extra);
    data.cli_json(&args)
}

/// Runs `certs issue` for `client` into `DATA_DIR/NAME` and returns the
/// certificate and the serial.
pub fn issue(data: &DataDir, client: &str, name: &str) -> (Identity, String) {
    let out = data.path().join(name);
    let issued = data.cli_json(&[
        "certs",
        "issue",
        "--client",
        client,
        "--out",
        out.to_str().unwrap(),
    ]);
    (
        Identity::read(&out),
        issued["serial"].as_str().unwrap().to_owned(),
    )
}

/// The HTTP version an HTTPS client of [`https_over`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Whatever ALPN settles on: HTTP/2 with Portcullis.
    Negotiated,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// Builds an HTTPS client of `server` that presents `identity`, if given.
pub fn https(server: &Server, identity: Option<&Identity>) -> reqwest::Client {
    https_over(server, identity, Protocol::Negotiated)
}

/// Builds an HTTPS client like [`https`] that speaks only `protocol`.
pub fn https_over(
    server: &Server,
    identity: Option<&Identity>,
    protocol: Protocol,
) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&server.ca_pem).unwrap();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", server.address)
        .no_proxy();
    if let Some(identity) = identity {
        let pem = format!("{}{}", identity.cert_pem, identity.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder = match protocol {
        Protocol::Negotiated => builder,
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_prior_knowledge(),
    };
    builder.build().unwrap()
}

/// Registers a `client_credentials` client of `tenant` for
/// `self_signed_tls_client_auth` with `scopes` and a JWKS of `jwk`, and
/// returns its id.
pub fn create_self_signed_client(
    data: &DataDir,
    tenant: &str,
    scopes: &str,
    jwk: &Value,
) -> String {
    let jwks_path = data.path().join(format!("jwks-{}.json", super::marker()));
    let jwks = serde_json::json!({ "keys": [jwk] });
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        tenant,
        "--name",
        "Self-signed partner",
        "--grant-types",
        "client_credentials",
        "--scopes",
        scopes,
        "--auth-method",
        "self_signed_tls_client_auth",
        "--jwks",
        jwks_path.to_str().unwrap(),
    ])["client_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Trusts `partner` for `tenant` with `ca trust add` and writes its empty
/// CRL, whose path is returned for `server.partner_crls`. With the internal
/// CA's CRL in play, every CA needs a CRL that covers its certificates.
pub fn trust_partner(data: &DataDir, partner: &PartnerCa, tenant: &str) -> PathBuf {
    let partner_path = data.path().join(format!("partner-ca-{tenant}.pem"));
    std::fs::write(&partner_path, &partner.pem).unwrap();
    data.cli(&[
        "ca",
        "trust",
        "add",
        "--tenant",
        tenant,
        partner_path.to_str().unwrap(),
    ]);
    let crl_path = data.path().join("partner-crl.pem");
    std::fs::write(&crl_path, partner.empty_crl()).unwrap();
    crl_path
}

/// Sends a `client_credentials` token request for `client_id`, without a
/// secret, on an open HTTP/1.1 connection and returns the status and body.
pub async fn token_on(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    client_id: &str,
) -> (u16, String) {
    use http_body_util::BodyExt as _;

    let body = format!("grant_type=client_credentials&client_id={client_id}");
    let request = hyper::Request::post("/oauth/token")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Waits up to five seconds for an `auth_failed` audit record whose details
/// name `serial`, of `target` when given, and returns its details.
pub async fn failure_record(store: &Store, target: Option<&str>, serial: &str) -> Value {
    let filter = AuditFilter {
        tenant_id: None,
        action: Some(AuditAction::AuthFailed),
        target: target.map(ToOwned::to_owned),
        limit: 200,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = store.list_audit(&filter).await.unwrap();
        if let Some(record) = records
            .into_iter()
            .find(|record| record.details["certificate_serial"] == serial)
        {
            return record.details;
        }
        assert!(
            Instant::now() < deadline,
            "no audit record names serial {serial}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
