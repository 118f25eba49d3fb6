//! Mapping rules checked with certificates made by rcgen, one test per
//! rule, with the negative cases next to the positive ones.

use std::time::Duration as StdDuration;

use portcullis_core::credential::RateLimits;
use portcullis_core::name::TenantName;
use portcullis_core::oauth::{GrantType, TlsClientAuthSubject, TlsSubjectKind};
use portcullis_core::scope::ScopeSet;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName as RcgenName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType, SignatureAlgorithm,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::macros::datetime;

use super::*;
use portcullis_core::ids::TenantId;

use crate::pki::verify::{AnchorOwner, TrustAnchors, verify_client_chain};

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const DAY: time::Duration = time::Duration::days(1);

fn client(auth_method: ClientAuthMethod, subject: Option<(TlsSubjectKind, &str)>) -> ClientRecord {
    ClientRecord {
        id: ClientId::generate(),
        tenant_id: TenantId::generate(),
        tenant: TenantName::parse("acme").unwrap(),
        name: "Partner".to_owned(),
        confidential: true,
        grant_types: vec![GrantType::ClientCredentials],
        scopes: ScopeSet::parse_list("orders:read").unwrap(),
        redirect_uris: Vec::new(),
        auth_method,
        jwks: None,
        tls_client_auth_subject: subject
            .map(|(kind, value)| TlsClientAuthSubject::parse(kind, value).unwrap()),
        access_token_ttl_seconds: 900,
        created_at: NOW,
        revoked_at: None,
        limits: RateLimits::default(),
        created_by: None,
    }
}

fn tls_client(kind: TlsSubjectKind, value: &str) -> ClientRecord {
    client(ClientAuthMethod::TlsClientAuth, Some((kind, value)))
}

/// A CA, and leaf certificates it signs and verifies.
struct Authority {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new() -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Partner CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = NOW - DAY * 30;
        params.not_after = NOW + DAY * 365;
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Self {
            der,
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs a clientAuth leaf with `sans` and `subject`, and verifies it
    /// with this CA as an anchor of `owner`.
    fn leaf(
        &self,
        owner: AnchorOwner,
        sans: Vec<SanType>,
        subject: RcgenName,
    ) -> (Vec<u8>, VerifiedClient) {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = NOW - DAY;
        params.not_after = NOW + DAY * 90;
        let key = KeyPair::generate().unwrap();
        let der = params.signed_by(&key, &self.issuer).unwrap().der().clone();
        let anchors = TrustAnchors::from_owned_certificates(&[(self.der.clone(), owner)]).unwrap();
        let at = UnixTime::since_unix_epoch(StdDuration::from_secs(
            NOW.unix_timestamp().try_into().unwrap(),
        ));
        let verified = verify_client_chain(std::slice::from_ref(&der), &anchors, &[], at).unwrap();
        (der.to_vec(), verified)
    }

    fn leaf_with_sans(&self, owner: AnchorOwner, sans: Vec<SanType>) -> (Vec<u8>, VerifiedClient) {
        let mut subject = RcgenName::new();
        subject.push(DnType::CommonName, "partner");
        self.leaf(owner, sans, subject)
    }
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn uri(value: &str) -> SanType {
    SanType::URI(value.try_into().unwrap())
}

fn partner(client: &ClientRecord) -> AnchorOwner {
    AnchorOwner::Partner {
        tenant_id: client.tenant_id,
    }
}

#[test]
fn san_dns_matches_without_case() {
    let ca = Authority::new();
    let client = tls_client(TlsSubjectKind::SanDns, "partner-svc.example.com");
    let (der, verified) = ca.leaf_with_sans(partner(&client), vec![dns("Partner-Svc.Example.COM")]);
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, None),
        Ok(())
    );

    let other = ClientRecord {
        tls_client_auth_subject: Some(
            TlsClientAuthSubject::parse(TlsSubjectKind::SanDns, "other-svc.example.com").unwrap(),
        ),
        ..client
    };
    assert_eq!(
        check_tls_client_auth(&other, &der, &verified, None),
        Err(CertificateMismatch::SubjectMismatch(
            "tls_client_auth_san_dns"
        ))
    );
}

#[test]
fn partner_ca_of_other_tenant_rejected() {
    let ca = Authority::new();
    let client = tls_client(TlsSubjectKind::SanDns, "partner-svc.example.com");
    let sans = vec![dns("partner-svc.example.com")];
    let other_tenant = AnchorOwner::Partner {
        tenant_id: TenantId::generate(),
    };
    let (der, verified) = ca.leaf_with_sans(other_tenant, sans.clone());
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, None),
        Err(CertificateMismatch::AnchorNotTrusted)
    );
    let (der, verified) = ca.leaf_with_sans(AnchorOwner::Listed { index: 0 }, sans);
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, None),
        Err(CertificateMismatch::AnchorNotTrusted)
    );
}

#[test]
fn internal_ca_needs_certificate_issued_to_client() {
    let ca = Authority::new();
    let client = client(ClientAuthMethod::TlsClientAuth, None);
    let own_uri = crate::pki::ca::client_uri(client.id);
    let client = ClientRecord {
        tls_client_auth_subject: Some(
            TlsClientAuthSubject::parse(TlsSubjectKind::SanUri, &own_uri).unwrap(),
        ),
        ..client
    };
    let (der, verified) = ca.leaf_with_sans(AnchorOwner::InternalCa, vec![uri(&own_uri)]);
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, Some(client.id)),
        Ok(())
    );
    // The CA's records name another client for this serial, or none.
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, Some(ClientId::generate())),
        Err(CertificateMismatch::NotIssuedToClient)
    );
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, None),
        Err(CertificateMismatch::NotIssuedToClient)
    );
}

#[test]
fn internal_namespace_uri_needs_internal_ca() {
    let ca = Authority::new();
    let client = client(ClientAuthMethod::TlsClientAuth, None);
    let own_uri = crate::pki::ca::client_uri(client.id);
    let client = ClientRecord {
        tls_client_auth_subject: Some(
            TlsClientAuthSubject::parse(TlsSubjectKind::SanUri, &own_uri).unwrap(),
        ),
        ..client
    };
    // A partner CA trusted for the client's own tenant writes the URI.
    let (der, verified) = ca.leaf_with_sans(partner(&client), vec![uri(&own_uri)]);
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, None),
        Err(CertificateMismatch::InternalNamespace)
    );
}

#[test]
fn internal_namespace_any_case_needs_internal_ca() {
    let ca = Authority::new();
    let id = ClientId::generate();
    // RFC 8141 §3.1: the scheme and the namespace identifier are
    // case-insensitive, so each spelling is the internal CA's namespace.
    // Registration rejects these URIs now, but a stored client may have one.
    for spelling in [
        format!("URN:portcullis:client:{id}"),
        format!("urn:PortCullis:client:{id}"),
        format!("Urn:PORTCULLIS:CLIENT:{id}"),
    ] {
        let client = tls_client(TlsSubjectKind::SanUri, &spelling);
        let (der, verified) = ca.leaf_with_sans(partner(&client), vec![uri(&spelling)]);
        assert_eq!(
            check_tls_client_auth(&client, &der, &verified, None),
            Err(CertificateMismatch::InternalNamespace),
            "{spelling}"
        );
    }
}

/// The internal CA writes `CN=<client id>` into the subject, so a client
/// mapped by that DN, in any case, maps from the internal CA only. A DN
/// naming another client's id is an ordinary partner DN.
#[test]
fn own_client_subject_dn_needs_internal_ca() {
    let ca = Authority::new();
    let id = ClientId::generate();
    for spelling in [format!("CN={id}"), format!("cn={id}")] {
        let client = ClientRecord {
            id,
            ..tls_client(TlsSubjectKind::SubjectDn, &spelling)
        };
        let mut subject = RcgenName::new();
        subject.push(DnType::CommonName, id.to_string());

        let (der, verified) = ca.leaf(partner(&client), Vec::new(), subject.clone());
        assert_eq!(
            check_tls_client_auth(&client, &der, &verified, None),
            Err(CertificateMismatch::InternalSubjectDn),
            "{spelling}"
        );
        let (der, verified) = ca.leaf(AnchorOwner::InternalCa, Vec::new(), subject);
        assert_eq!(
            check_tls_client_auth(&client, &der, &verified, Some(id)),
            Ok(()),
            "{spelling}"
        );
    }

    let other = ClientId::generate();
    let client = tls_client(TlsSubjectKind::SubjectDn, &format!("CN={other}"));
    let mut subject = RcgenName::new();
    subject.push(DnType::CommonName, other.to_string());
    let (der, verified) = ca.leaf(partner(&client), Vec::new(), subject);
    assert_eq!(
        check_tls_client_auth(&client, &der, &verified, None),
        Ok(())
    );
}

#[test]
fn san_uri_ip_email_rules() {
    let ca = Authority::new();
    let cases = [
        (TlsSubjectKind::SanUri, "urn:acme:Payments", true),
        (TlsSubjectKind::SanUri, "urn:acme:payments", false),
        (TlsSubjectKind::SanIp, "2001:db8:0::7", true),
        (TlsSubjectKind::SanIp, "192.0.2.7", false),
        (TlsSubjectKind::SanEmail, "Ops@example.com", true),
        (TlsSubjectKind::SanEmail, "ops@example.com", false),
    ];
    for (kind, value, expected) in cases {
        let client = tls_client(kind, value);
        let (der, verified) = ca.leaf_with_sans(
            partner(&client),
            vec![
                uri("urn:acme:Payments"),
                SanType::IpAddress("2001:db8::7".parse().unwrap()),
                SanType::Rfc822Name("Ops@Example.COM".try_into().unwrap()),
            ],
        );
        let outcome = check_tls_client_auth(&client, &der, &verified, None);
        assert_eq!(outcome.is_ok(), expected, "{kind} {value}: {outcome:?}");
    }
}

#[test]
fn subject_dn_compared_as_names() {
    let ca = Authority::new();
    let cases = [
        ("CN=payments service,O=ACME\\, Inc.,C=de", true),
        ("cn=Payments Service, o=Acme\\2C Inc., c=DE", true),
        ("C=DE,O=Acme\\, Inc.,CN=Payments Service", false),
        ("CN=Payments Service,O=Acme\\, Inc.", false),
        ("CN=Payments Service,O=Acme,C=DE", false),
    ];
    for (registered, expected) in cases {
        let client = tls_client(TlsSubjectKind::SubjectDn, registered);
        let mut subject = RcgenName::new();
        subject.push(DnType::CountryName, "DE");
        subject.push(DnType::OrganizationName, "Acme, Inc.");
        subject.push(DnType::CommonName, "Payments  Service");
        let (der, verified) = ca.leaf(partner(&client), Vec::new(), subject);
        let outcome = check_tls_client_auth(&client, &der, &verified, None);
        assert_eq!(outcome.is_ok(), expected, "{registered}: {outcome:?}");
    }
}

#[test]
fn other_methods_not_authenticated() {
    let ca = Authority::new();
    let secret = client(ClientAuthMethod::ClientSecretBasic, None);
    let (der, verified) = ca.leaf_with_sans(partner(&secret), vec![dns("partner-svc.example.com")]);
    assert_eq!(
        check_tls_client_auth(&secret, &der, &verified, None),
        Err(CertificateMismatch::WrongMethod(
            ClientAuthMethod::ClientSecretBasic
        ))
    );
    assert_eq!(
        check_self_signed(&secret, &der, NOW),
        Err(CertificateMismatch::WrongMethod(
            ClientAuthMethod::ClientSecretBasic
        ))
    );
}

/// Makes a self-signed certificate with a fresh key of `algorithm`, valid
/// from `not_before` to `not_after`, and returns it with the key's JWK.
fn self_signed(
    algorithm: &'static SignatureAlgorithm,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> (Vec<u8>, Value) {
    let key = KeyPair::generate_for(algorithm).unwrap();
    let mut params = CertificateParams::new(vec!["svc.example.com".to_owned()]).unwrap();
    params.not_before = not_before;
    params.not_after = not_after;
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let jwk = match key_material(cert.public_key()).unwrap() {
        KeyMaterial::P256(point) => serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "k",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }),
        KeyMaterial::Ed25519(x) => serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "k", "x": URL_SAFE_NO_PAD.encode(x),
        }),
        KeyMaterial::Rsa { modulus, exponent } => serde_json::json!({
            "kty": "RSA", "kid": "k",
            "n": URL_SAFE_NO_PAD.encode(modulus),
            "e": URL_SAFE_NO_PAD.encode(exponent),
        }),
    };
    (der, jwk)
}

fn self_signed_client(keys: &[Value]) -> ClientRecord {
    ClientRecord {
        jwks: Some(serde_json::json!({ "keys": keys }).to_string()),
        ..client(ClientAuthMethod::SelfSignedTlsClientAuth, None)
    }
}

#[test]
fn self_signed_key_must_be_registered() {
    for algorithm in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
    ] {
        let (der, jwk) = self_signed(algorithm, NOW - DAY, NOW + DAY);
        let (_, other_jwk) = self_signed(algorithm, NOW - DAY, NOW + DAY);
        let registered = self_signed_client(&[other_jwk.clone(), jwk]);
        assert_eq!(check_self_signed(&registered, &der, NOW), Ok(()));
        let unregistered = self_signed_client(&[other_jwk]);
        assert_eq!(
            check_self_signed(&unregistered, &der, NOW),
            Err(CertificateMismatch::KeyNotRegistered)
        );
    }
}

#[test]
fn self_signed_validity_period_enforced() {
    let (expired, jwk) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, NOW - DAY * 10, NOW - DAY);
    let client = self_signed_client(&[jwk]);
    assert_eq!(
        check_self_signed(&client, &expired, NOW),
        Err(CertificateMismatch::Expired)
    );
    let (future, jwk) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, NOW + DAY, NOW + DAY * 10);
    let client = self_signed_client(&[jwk]);
    assert_eq!(
        check_self_signed(&client, &future, NOW),
        Err(CertificateMismatch::NotYetValid)
    );
}

#[test]
fn self_signed_key_compared_as_material() {
    // The same point written with a different kid and member order is the
    // same key, and the same x with another y is not.
    let (der, jwk) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, NOW - DAY, NOW + DAY);
    let reordered = serde_json::json!({
        "y": jwk["y"], "x": jwk["x"], "crv": "P-256", "kty": "EC", "kid": "renamed",
    });
    assert_eq!(
        check_self_signed(&self_signed_client(&[reordered]), &der, NOW),
        Ok(())
    );
    let mut wrong_y = jwk.clone();
    wrong_y["y"] = jwk["x"].clone();
    assert_eq!(
        check_self_signed(&self_signed_client(&[wrong_y]), &der, NOW),
        Err(CertificateMismatch::KeyNotRegistered)
    );
    assert_eq!(
        check_self_signed(&self_signed_client(&[]), b"not a certificate", NOW),
        Err(CertificateMismatch::Malformed)
    );
}

#[test]
fn spki_rebuilt_from_jwk_material() {
    for algorithm in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ED25519,
        &rcgen::PKCS_RSA_SHA256,
    ] {
        let (der, jwk) = self_signed(algorithm, NOW - DAY, NOW + DAY);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let material = jwk_material(&jwk).unwrap();
        assert_eq!(
            spki_der(&material).as_deref(),
            Some(cert.public_key().raw),
            "{algorithm:?}"
        );
    }
}

#[test]
fn der_lengths_encoded() {
    assert_eq!(der_tlv(0x04, &[1, 2]), vec![0x04, 0x02, 1, 2]);
    let long = der_tlv(0x04, &[0; 300]);
    assert_eq!(long.get(..4), Some([0x04, 0x82, 0x01, 0x2c].as_slice()));
    assert_eq!(der_integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
    assert_eq!(der_integer(&[0x00, 0x01]), vec![0x02, 0x01, 0x01]);
    assert_eq!(der_integer(&[]), vec![0x02, 0x01, 0x00]);
}
