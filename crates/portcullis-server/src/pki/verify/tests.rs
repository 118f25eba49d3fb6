//! Client certificate chains made by rcgen, one per way a partner's
//! certificate can be wrong.

use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams,
    CrlDistributionPoint, CrlIssuingDistributionPoint, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::macros::datetime;

use super::*;

/// Verification time of every test, so that no test reads the clock.
const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const DAY: time::Duration = time::Duration::days(1);
const CLIENT_DNS: &str = "partner-svc.example.com";
const DP_A: &str = "http://crl-a.example.test/ca.crl";
const DP_B: &str = "http://crl-b.example.test/ca.crl";

fn unix(at: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(at.unix_timestamp().try_into().unwrap()))
}

/// A CA certificate with the issuer that signs with its key.
struct Authority {
    cert: Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn root(name: &str) -> Self {
        Self::root_with(ca_params(name))
    }

    fn root_with(params: CertificateParams) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    fn intermediate(&self, params: CertificateParams) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Self {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    fn sign(&self, params: &CertificateParams) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &self.issuer).unwrap().der().clone()
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::from_certificates(&[self.cert.der().clone()]).unwrap()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// Signs a CRL that lists `serials` as revoked, valid from a day before
    /// `NOW` until `next_update`.
    fn crl(
        &self,
        serials: &[&[u8]],
        idp: Option<&str>,
        next_update: OffsetDateTime,
    ) -> CertificateRevocationListDer<'static> {
        let revoked_certs = serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: NOW - DAY,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let issuing_distribution_point = idp.map(|uri| CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint {
                uris: vec![uri.to_owned()],
            },
            scope: None,
        });
        let params = CertificateRevocationListParams {
            this_update: NOW - DAY,
            next_update,
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().der().clone()
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Acme");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = NOW - DAY * 365;
    params.not_after = NOW + DAY * 365;
    params.serial_number = Some(SerialNumber::from_slice(&[0x0c, 0xa0]));
    params
}

/// Parameters of the control leaf: clientAuth, the client's DNS name, valid
/// from 30 days before `NOW` to 60 days after, serial `10 20 <serial>`.
fn leaf_params(serial: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "partner service");
    params.subject_alt_names = vec![SanType::DnsName(CLIENT_DNS.try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = NOW - DAY * 30;
    params.not_after = NOW + DAY * 60;
    params.serial_number = Some(SerialNumber::from_slice(&leaf_serial(serial)));
    params
}

fn leaf_serial(serial: u8) -> [u8; 3] {
    [0x10, 0x20, serial]
}

fn verify(
    chain: &[CertificateDer<'static>],
    trust: &TrustAnchors,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<VerifiedClient, Rejection> {
    verify_client_chain(chain, trust, crls, unix(NOW))
}

fn rejection_code(result: Result<VerifiedClient, Rejection>) -> &'static str {
    match result {
        Ok(client) => panic!("expected a rejection, the chain was accepted: {client:?}"),
        Err(rejection) => rejection.code(),
    }
}

#[test]
fn control_leaf_accepted_with_details() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_params(1));

    let client = verify(std::slice::from_ref(&leaf), &ca.anchors(), &[]).unwrap();

    assert_eq!(client.serial, "102001");
    assert_eq!(client.issuer, "CN=Partner CA, O=Acme");
    assert_eq!(client.subject, "CN=partner service");
    assert_eq!(
        client.subject_alt_names,
        vec![SubjectAltName::Dns(CLIENT_DNS.to_owned())]
    );
    assert_eq!(client.not_after, NOW + DAY * 60);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf);
    assert_eq!(client.thumbprint_sha256, URL_SAFE_NO_PAD.encode(digest));
    assert_eq!(client.thumbprint_sha256.len(), 43);
    assert_eq!(client.thumbprint_sha256, thumbprint_sha256(&leaf));
    assert_eq!(client.anchor, AnchorOwner::Listed { index: 0 });
}

#[test]
fn anchor_owner_names_the_anchor_reached() {
    let first = Authority::root("First CA");
    let second = Authority::root("Second CA");
    let tenant_id = TenantId::generate();
    let trust = TrustAnchors::from_owned_certificates(&[
        (first.der(), AnchorOwner::InternalCa),
        (second.der(), AnchorOwner::Partner { tenant_id }),
    ])
    .unwrap();

    let internal = verify(&[first.sign(&leaf_params(1))], &trust, &[]).unwrap();
    let partner = verify(&[second.sign(&leaf_params(2))], &trust, &[]).unwrap();

    assert_eq!(internal.anchor, AnchorOwner::InternalCa);
    assert_eq!(partner.anchor, AnchorOwner::Partner { tenant_id });
    assert!(partner.anchor.includes_tenant(tenant_id));
    assert!(!partner.anchor.includes_internal_ca());
    assert!(!internal.anchor.includes_tenant(tenant_id));
}

#[test]
fn ca_trusted_for_two_tenants_lists_both() {
    let partner = Authority::root("Partner CA");
    let other = Authority::root("Other CA");
    let acme = TenantId::generate();
    let globex = TenantId::generate();
    let initech = TenantId::generate();
    let trust = TrustAnchors::from_owned_certificates(&[
        (partner.der(), AnchorOwner::Partner { tenant_id: acme }),
        (other.der(), AnchorOwner::Partner { tenant_id: initech }),
        (partner.der(), AnchorOwner::Partner { tenant_id: globex }),
    ])
    .unwrap();

    let client = verify(&[partner.sign(&leaf_params(1))], &trust, &[]).unwrap();

    assert_eq!(trust.len(), 2);
    assert_eq!(
        client.anchor,
        AnchorOwner::Shared {
            owners: vec![
                AnchorOwner::Partner { tenant_id: acme },
                AnchorOwner::Partner { tenant_id: globex },
            ]
        }
    );
    assert!(client.anchor.includes_tenant(acme));
    assert!(client.anchor.includes_tenant(globex));
    assert!(!client.anchor.includes_tenant(initech));
}

#[test]
fn same_certificate_listed_twice_is_one_owner() {
    let ca = Authority::root("Partner CA");
    let tenant_id = TenantId::generate();
    let owner = AnchorOwner::Partner { tenant_id };
    let trust = TrustAnchors::from_owned_certificates(&[
        (ca.der(), owner.clone()),
        (ca.der(), owner.clone()),
    ])
    .unwrap();

    let client = verify(&[ca.sign(&leaf_params(1))], &trust, &[]).unwrap();

    assert_eq!(trust.len(), 1);
    assert_eq!(client.anchor, owner);
}

#[test]
fn client_certificate_keeps_rejected_chain() {
    let ca = Authority::root("Partner CA");
    let stranger = Authority::root("Stranger CA");
    let leaf = stranger.sign(&leaf_params(1));
    let verdict = verify(std::slice::from_ref(&leaf), &ca.anchors(), &[]);

    let certificate = crate::listener::ClientCertificate::new(vec![leaf.clone()], verdict).unwrap();

    assert_eq!(certificate.leaf(), &leaf);
    assert_eq!(certificate.thumbprint_sha256, thumbprint_sha256(&leaf));
    assert!(certificate.verified().is_none());
    assert_eq!(
        certificate.verdict.as_ref().map_err(Rejection::code),
        Err("unknown_issuer")
    );
    assert!(crate::listener::ClientCertificate::new(Vec::new(), verdict_for_empty()).is_none());
}

fn verdict_for_empty() -> Result<VerifiedClient, Rejection> {
    verify(&[], &TrustAnchors::default(), &[])
}

#[test]
fn server_auth_only_leaf_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(2);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let rejection = verify(&[ca.sign(&params)], &ca.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "wrong_usage");
    assert!(rejection.reason().contains("clientAuth"), "{rejection}");
    let leaf = rejection.leaf().unwrap();
    assert_eq!(leaf.serial, "102002");
    assert_eq!(leaf.issuer, "CN=Partner CA, O=Acme");
}

/// A serial whose first octet has the high bit set is written with a
/// leading zero octet in DER. The verdict drops it, like the internal CA's
/// records and the change feed do.
#[test]
fn serial_without_leading_zero_octet() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(9);
    params.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x90, 0x01]));

    let client = verify(&[ca.sign(&params)], &ca.anchors(), &[]).unwrap();

    assert_eq!(client.serial, "9001");
}

/// RFC 5280 §4.2.1.12 reads a missing extended key usage extension as "any
/// purpose", and webpki's `KeyUsage::client_auth()` agrees, so Portcullis
/// accepts such a leaf.
#[test]
fn leaf_without_eku_accepted() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(3);
    params.extended_key_usages = Vec::new();

    let client = verify(&[ca.sign(&params)], &ca.anchors(), &[]).unwrap();

    assert_eq!(client.serial, "102003");
}

#[test]
fn expired_leaf_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(4);
    params.not_before = NOW - DAY * 10;
    params.not_after = NOW - DAY;

    let rejection = verify(&[ca.sign(&params)], &ca.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "expired");
    assert!(
        rejection.reason().starts_with("leaf certificate"),
        "{rejection}"
    );
    assert!(
        rejection.reason().contains("2026-05-31T12:00:00Z"),
        "{rejection}"
    );
}

#[test]
fn not_yet_valid_leaf_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(5);
    params.not_before = NOW + DAY;
    params.not_after = NOW + DAY * 30;

    let rejection = verify(&[ca.sign(&params)], &ca.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "not_yet_valid");
    assert!(
        rejection.reason().starts_with("leaf certificate"),
        "{rejection}"
    );
}

#[test]
fn self_signed_look_alike_rejected() {
    let ca = Authority::root("Partner CA");
    // The control leaf's subject, names and usage, signed by its own key.
    let key = KeyPair::generate().unwrap();
    let look_alike = leaf_params(6).self_signed(&key).unwrap();

    let result = verify(&[look_alike.der().clone()], &ca.anchors(), &[]);

    assert_eq!(rejection_code(result), "unknown_issuer");
}

#[test]
fn leaf_of_impostor_ca_with_same_name_rejected() {
    let ca = Authority::root("Partner CA");
    // Same subject name as the trusted CA, another key: the issuer name
    // matches the anchor but the signature does not verify with its key.
    let impostor = Authority::root("Partner CA");

    let result = verify(&[impostor.sign(&leaf_params(8))], &ca.anchors(), &[]);

    assert_eq!(rejection_code(result), "bad_signature");
}

#[test]
fn leaf_of_expired_intermediate_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = ca_params("Partner Issuing CA");
    params.not_before = NOW - DAY * 100;
    params.not_after = NOW - DAY * 2;
    let intermediate = ca.intermediate(params);
    let leaf = intermediate.sign(&leaf_params(7));

    let rejection = verify(&[leaf, intermediate.der()], &ca.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "expired");
    assert!(
        rejection
            .reason()
            .starts_with("intermediate certificate (CN=Partner Issuing CA"),
        "{rejection}"
    );
}

#[test]
fn ca_certificate_as_leaf_rejected() {
    let ca = Authority::root("Partner CA");

    let result = verify(&[ca.der()], &ca.anchors(), &[]);

    assert_eq!(rejection_code(result), "ca_used_as_leaf");
}

#[test]
fn intermediate_without_ca_flag_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = ca_params("Partner Issuing CA");
    params.is_ca = IsCa::ExplicitNoCa;
    let intermediate = ca.intermediate(params);
    let leaf = intermediate.sign(&leaf_params(9));

    let result = verify(&[leaf, intermediate.der()], &ca.anchors(), &[]);

    assert_eq!(rejection_code(result), "intermediate_not_ca");
}

#[test]
fn intermediate_without_basic_constraints_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = ca_params("Partner Issuing CA");
    params.is_ca = IsCa::NoCa;
    let intermediate = ca.intermediate(params);
    let leaf = intermediate.sign(&leaf_params(9));

    let result = verify(&[leaf, intermediate.der()], &ca.anchors(), &[]);

    assert_eq!(rejection_code(result), "intermediate_not_ca");
}

#[test]
fn leaf_without_digital_signature_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(11);
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let leaf = ca.sign(&params);

    let rejection = verify(&[leaf], &ca.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "wrong_usage");
    assert!(
        rejection.reason().contains("digitalSignature"),
        "{rejection}"
    );
}

#[test]
fn leaf_without_key_usage_accepted() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(12);
    params.key_usages = Vec::new();
    let leaf = ca.sign(&params);

    verify(&[leaf], &ca.anchors(), &[]).unwrap();
}

#[test]
fn intermediate_without_key_cert_sign_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = ca_params("Partner Issuing CA");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let intermediate = ca.intermediate(params);
    let leaf = intermediate.sign(&leaf_params(13));

    let rejection = verify(&[leaf, intermediate.der()], &ca.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "wrong_usage");
    assert!(
        rejection.reason().contains("Partner Issuing CA")
            && rejection.reason().contains("keyCertSign"),
        "{rejection}"
    );
    assert_eq!(rejection.leaf().unwrap().serial, "10200d");
}

#[test]
fn intermediate_without_key_usage_accepted() {
    let ca = Authority::root("Partner CA");
    let mut params = ca_params("Partner Issuing CA");
    params.key_usages = Vec::new();
    let intermediate = ca.intermediate(params);
    let leaf = intermediate.sign(&leaf_params(14));

    verify(&[leaf, intermediate.der()], &ca.anchors(), &[]).unwrap();
}

#[test]
fn leaf_of_valid_intermediate_accepted() {
    let ca = Authority::root("Partner CA");
    let intermediate = ca.intermediate(ca_params("Partner Issuing CA"));
    let leaf = intermediate.sign(&leaf_params(10));

    let client = verify(&[leaf, intermediate.der()], &ca.anchors(), &[]).unwrap();

    assert_eq!(client.issuer, "CN=Partner Issuing CA, O=Acme");
}

#[test]
fn name_outside_constraints_rejected() {
    let mut params = ca_params("Constrained CA");
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".to_owned())],
        excluded_subtrees: Vec::new(),
    });
    let ca = Authority::root_with(params);
    let mut inside = leaf_params(11);
    inside.subject_alt_names = vec![SanType::DnsName("svc.example.com".try_into().unwrap())];
    let mut outside = leaf_params(12);
    outside.subject_alt_names = vec![SanType::DnsName("evil.test".try_into().unwrap())];

    let accepted = verify(&[ca.sign(&inside)], &ca.anchors(), &[]);
    let rejected = verify(&[ca.sign(&outside)], &ca.anchors(), &[]);

    assert!(accepted.is_ok(), "{accepted:?}");
    assert_eq!(rejection_code(rejected), "name_constraint_violated");
}

/// Makes a CA that permits DNS names under `example.com` only, and a leaf
/// it signs for a name outside them.
fn constrained_ca_and_outside_leaf(serial: u8) -> (Authority, CertificateDer<'static>) {
    let mut params = ca_params("Constrained CA");
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".to_owned())],
        excluded_subtrees: Vec::new(),
    });
    let ca = Authority::root_with(params);
    let mut outside = leaf_params(serial);
    outside.subject_alt_names = vec![SanType::DnsName("evil.test".try_into().unwrap())];
    let leaf = ca.sign(&outside);
    (ca, leaf)
}

/// webpki checks revocation before name constraints. Each CRL case fails
/// a revocation check on its own, and the name constraint must still be
/// the reason reported.
#[test]
fn name_constraint_reported_before_revocation() {
    let (ca, leaf) = constrained_ca_and_outside_leaf(50);
    let other = Authority::root("Internal CA");
    let cases = [
        ("another CA's CRL only", other.crl(&[], None, NOW + DAY * 7)),
        ("own CRL, not revoked", ca.crl(&[], None, NOW + DAY * 7)),
        (
            "own CRL, revoked",
            ca.crl(&[&leaf_serial(50)], None, NOW + DAY * 7),
        ),
        (
            "own CRL, expired",
            ca.crl(&[], None, NOW - time::Duration::hours(1)),
        ),
    ];

    for (case, crl) in cases {
        let result = verify(std::slice::from_ref(&leaf), &ca.anchors(), &[crl]);

        assert_eq!(rejection_code(result), "name_constraint_violated", "{case}");
    }
}

#[test]
fn expiry_reported_before_unknown_revocation() {
    let ca = Authority::root("Partner CA");
    let other = Authority::root("Internal CA");
    let mut params = leaf_params(51);
    params.not_after = NOW - DAY;
    let leaf = ca.sign(&params);
    let crl = other.crl(&[], None, NOW + DAY * 7);

    let result = verify(&[leaf], &ca.anchors(), &[crl]);

    assert_eq!(rejection_code(result), "expired");
}

#[test]
fn wrong_key_usage_reported_before_unknown_revocation() {
    let ca = Authority::root("Partner CA");
    let other = Authority::root("Internal CA");
    let mut params = leaf_params(52);
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let leaf = ca.sign(&params);
    let crl = other.crl(&[], None, NOW + DAY * 7);

    let result = verify(&[leaf], &ca.anchors(), &[crl]);

    assert_eq!(rejection_code(result), "wrong_usage");
}

#[test]
fn valid_chain_keeps_revocation_reason() {
    let (ca, _) = constrained_ca_and_outside_leaf(53);
    let mut inside = leaf_params(54);
    inside.subject_alt_names = vec![SanType::DnsName("svc.example.com".try_into().unwrap())];
    let leaf = ca.sign(&inside);
    let other = Authority::root("Internal CA");

    let revoked = verify(
        std::slice::from_ref(&leaf),
        &ca.anchors(),
        &[ca.crl(&[&leaf_serial(54)], None, NOW + DAY * 7)],
    );
    let unknown = verify(
        std::slice::from_ref(&leaf),
        &ca.anchors(),
        &[other.crl(&[], None, NOW + DAY * 7)],
    );
    let expired = verify(
        &[leaf],
        &ca.anchors(),
        &[ca.crl(&[], None, NOW - time::Duration::hours(1))],
    );

    assert_eq!(rejection_code(revoked), "revoked");
    assert_eq!(rejection_code(unknown), "revocation_unknown");
    assert_eq!(rejection_code(expired), "crl_expired");
}

#[test]
fn empty_chain_rejected_as_malformed() {
    let ca = Authority::root("Partner CA");

    let result = verify(&[], &ca.anchors(), &[]);

    assert_eq!(rejection_code(result), "malformed");
}

#[test]
fn garbage_leaf_rejected_as_malformed() {
    let ca = Authority::root("Partner CA");
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);

    let rejection = verify(&[garbage], &ca.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "malformed");
    assert_eq!(rejection.leaf(), None);
}

#[test]
fn empty_trust_anchors_reject_everything() {
    let ca = Authority::root("Partner CA");

    let result = verify(&[ca.sign(&leaf_params(13))], &TrustAnchors::default(), &[]);

    assert_eq!(rejection_code(result), "unknown_issuer");
}

#[test]
fn tampered_signature_rejected() {
    let ca = Authority::root("Partner CA");
    let mut leaf = ca.sign(&leaf_params(14)).to_vec();
    // The last octet belongs to the signature value.
    let last = leaf.last_mut().unwrap();
    *last ^= 0x01;

    let result = verify(&[CertificateDer::from(leaf)], &ca.anchors(), &[]);

    assert_eq!(rejection_code(result), "bad_signature");
}

/// Returns leaf parameters with two CRL distribution points, in `order`.
fn leaf_with_distribution_points(serial: u8, order: [&str; 2]) -> CertificateParams {
    let mut params = leaf_params(serial);
    params.crl_distribution_points = order
        .iter()
        .map(|uri| CrlDistributionPoint {
            uris: vec![(*uri).to_owned()],
        })
        .collect();
    params
}

/// RFC 5280 §6.3.3: a CRL is in scope when its issuingDistributionPoint
/// names any of the leaf's distribution points, not only the first. Each
/// case revokes the leaf, so each must be rejected as revoked.
#[test]
fn revoked_leaf_rejected_for_every_distribution_point() {
    let ca = Authority::root("Partner CA");
    let cases = [
        ("idp matches second", [DP_A, DP_B], Some(DP_B)),
        ("idp matches first", [DP_A, DP_B], Some(DP_A)),
        ("reversed, idp matches first", [DP_B, DP_A], Some(DP_B)),
        ("reversed, idp matches second", [DP_B, DP_A], Some(DP_A)),
        ("no idp", [DP_A, DP_B], None),
    ];

    for (serial, (case, order, idp)) in (20u8..).zip(cases) {
        let leaf = ca.sign(&leaf_with_distribution_points(serial, order));
        let crl = ca.crl(&[&leaf_serial(serial)], idp, NOW + DAY * 7);

        let rejection = verify(&[leaf], &ca.anchors(), &[crl]).unwrap_err();

        assert_eq!(rejection.code(), "revoked", "{case}: {rejection}");
        let serial_hex = CertificateSerial::from_bytes(&leaf_serial(serial)).to_string();
        assert!(
            rejection.reason().contains(&serial_hex),
            "{case}: reason does not name serial {serial_hex}: {rejection}"
        );
    }
}

#[test]
fn revoked_leaf_without_distribution_points_rejected() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_params(30));
    let crl = ca.crl(&[&leaf_serial(30)], None, NOW + DAY * 7);

    let rejection = verify(&[leaf], &ca.anchors(), &[crl]).unwrap_err();

    assert_eq!(rejection.code(), "revoked");
    assert!(
        rejection
            .reason()
            .contains("leaf certificate serial 10201e"),
        "{rejection}"
    );
    assert!(rejection.reason().contains("KeyCompromise"), "{rejection}");
}

#[test]
fn unrevoked_leaf_accepted_with_crl() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_with_distribution_points(31, [DP_A, DP_B]));
    let crl = ca.crl(&[&leaf_serial(99)], Some(DP_B), NOW + DAY * 7);

    let result = verify(&[leaf], &ca.anchors(), &[crl]);

    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn crl_for_another_distribution_point_leaves_status_unknown() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_with_distribution_points(32, [DP_A, DP_B]));
    let crl = ca.crl(
        &[&leaf_serial(32)],
        Some("http://crl-c.example.test/ca.crl"),
        NOW + DAY * 7,
    );

    let result = verify(&[leaf], &ca.anchors(), &[crl]);

    assert_eq!(rejection_code(result), "revocation_unknown");
}

#[test]
fn partitioned_crl_leaves_leaf_without_distribution_points_unknown() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_params(33));
    let crl = ca.crl(&[], Some(DP_B), NOW + DAY * 7);

    let rejection = verify(
        std::slice::from_ref(&leaf),
        &ca.anchors(),
        std::slice::from_ref(&crl),
    )
    .unwrap_err();

    assert_eq!(rejection.code(), "revocation_unknown");
    assert!(
        rejection
            .reason()
            .contains("names no CRL distribution point"),
        "{rejection}"
    );

    let full = ca.crl(&[], None, NOW + DAY * 7);
    verify(&[leaf], &ca.anchors(), &[crl, full]).unwrap();
}

#[test]
fn crl_of_another_issuer_leaves_status_unknown() {
    let ca = Authority::root("Partner CA");
    let other = Authority::root("Other CA");
    let leaf = ca.sign(&leaf_params(33));
    let crl = other.crl(&[], None, NOW + DAY * 7);

    let result = verify(&[leaf], &ca.anchors(), &[crl]);

    assert_eq!(rejection_code(result), "revocation_unknown");
}

#[test]
fn expired_crl_rejected() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_params(34));
    let crl = ca.crl(&[], None, NOW - time::Duration::hours(1));

    let result = verify(&[leaf], &ca.anchors(), &[crl]);

    assert_eq!(rejection_code(result), "crl_expired");
}

#[test]
fn revoked_intermediate_rejected() {
    let ca = Authority::root("Partner CA");
    let mut params = ca_params("Partner Issuing CA");
    params.serial_number = Some(SerialNumber::from_slice(&[0x1c, 0x01]));
    let intermediate = ca.intermediate(params);
    let leaf = intermediate.sign(&leaf_params(35));
    let root_crl = ca.crl(&[&[0x1c, 0x01]], None, NOW + DAY * 7);
    let intermediate_crl = intermediate.crl(&[], None, NOW + DAY * 7);

    let rejection = verify(
        &[leaf, intermediate.der()],
        &ca.anchors(),
        &[root_crl, intermediate_crl],
    )
    .unwrap_err();

    assert_eq!(rejection.code(), "revoked");
    assert!(
        rejection
            .reason()
            .contains("intermediate certificate serial 1c01"),
        "{rejection}"
    );
}

#[test]
fn unparsable_crl_rejected() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_params(36));
    let crl = CertificateRevocationListDer::from(vec![0x30, 0x00]);

    let result = verify(&[leaf], &ca.anchors(), &[crl]);

    assert_eq!(rejection_code(result), "invalid_crl");
}

#[test]
fn invalid_trust_anchor_named_by_index() {
    let ca = Authority::root("Partner CA");
    let garbage = CertificateDer::from(vec![0x01, 0x02]);

    let error = TrustAnchors::from_certificates(&[ca.der(), garbage]).unwrap_err();

    assert_eq!(error.index, 1);
}

#[test]
fn subject_alt_names_of_every_kind_read() {
    let ca = Authority::root("Partner CA");
    let mut params = leaf_params(37);
    params.subject_alt_names = vec![
        SanType::DnsName(CLIENT_DNS.try_into().unwrap()),
        SanType::URI("spiffe://acme/payments".try_into().unwrap()),
        SanType::IpAddress("192.0.2.7".parse().unwrap()),
        SanType::Rfc822Name("ops@acme.example".try_into().unwrap()),
    ];

    let client = verify(&[ca.sign(&params)], &ca.anchors(), &[]).unwrap();

    assert_eq!(
        client.subject_alt_names,
        vec![
            SubjectAltName::Dns(CLIENT_DNS.to_owned()),
            SubjectAltName::Uri("spiffe://acme/payments".to_owned()),
            SubjectAltName::Ip("192.0.2.7".parse().unwrap()),
            SubjectAltName::Email("ops@acme.example".to_owned()),
        ]
    );
}

#[test]
fn rejection_codes_are_distinct() {
    let kinds = [
        RejectionKind::Expired,
        RejectionKind::NotYetValid,
        RejectionKind::UnknownIssuer,
        RejectionKind::WrongUsage,
        RejectionKind::CaUsedAsLeaf,
        RejectionKind::IntermediateNotCa,
        RejectionKind::PathLengthExceeded,
        RejectionKind::Revoked,
        RejectionKind::NameConstraintViolated,
        RejectionKind::BadSignature,
        RejectionKind::UnsupportedAlgorithm,
        RejectionKind::RevocationUnknown,
        RejectionKind::CrlExpired,
        RejectionKind::InvalidCrl,
        RejectionKind::PathTooComplex,
        RejectionKind::Malformed,
        RejectionKind::Other,
    ];
    let codes: std::collections::HashSet<_> = kinds.iter().map(|kind| kind.code()).collect();
    assert_eq!(codes.len(), kinds.len());
}

/// Trust anchors of `ca` owned by one partner tenant, with its
/// acknowledgement that the CA publishes no CRL when `unchecked`.
fn partner_anchors(ca: &Authority, tenant_id: TenantId, unchecked: bool) -> TrustAnchors {
    let owner = AnchorOwner::Partner { tenant_id };
    TrustAnchors::from_owned_certificates_with_revocation(&[(ca.der(), owner, unchecked)]).unwrap()
}

#[test]
fn unchecked_anchor_accepted_without_crl() {
    let ca = Authority::root("Partner CA");
    let other = Authority::root("Internal CA");
    let leaf = ca.sign(&leaf_params(40));
    // Another CA's CRL turns the revocation check on, as the internal CA's
    // CRL does on a server.
    let crl = other.crl(&[], None, NOW + DAY * 7);
    let tenant_id = TenantId::generate();

    let checked = verify(
        std::slice::from_ref(&leaf),
        &partner_anchors(&ca, tenant_id, false),
        std::slice::from_ref(&crl),
    );
    assert_eq!(rejection_code(checked), "revocation_unknown");

    let client = verify(&[leaf], &partner_anchors(&ca, tenant_id, true), &[crl]).unwrap();
    assert!(client.anchor.includes_tenant(tenant_id));
}

#[test]
fn unchecked_anchor_still_applies_its_crl() {
    let ca = Authority::root("Partner CA");
    let leaf = ca.sign(&leaf_params(41));
    let crl = ca.crl(&[&leaf_serial(41)], None, NOW + DAY * 7);

    let result = verify(
        &[leaf],
        &partner_anchors(&ca, TenantId::generate(), true),
        &[crl],
    );

    assert_eq!(rejection_code(result), "revoked");
}

#[test]
fn shared_anchor_checked_unless_every_owner_unchecked() {
    let ca = Authority::root("Partner CA");
    let other = Authority::root("Internal CA");
    let leaf = ca.sign(&leaf_params(42));
    let crl = other.crl(&[], None, NOW + DAY * 7);
    let acme = AnchorOwner::Partner {
        tenant_id: TenantId::generate(),
    };
    let globex = AnchorOwner::Partner {
        tenant_id: TenantId::generate(),
    };
    let trust = TrustAnchors::from_owned_certificates_with_revocation(&[
        (ca.der(), acme, true),
        (ca.der(), globex, false),
    ])
    .unwrap();

    let result = verify(&[leaf], &trust, &[crl]);

    assert_eq!(rejection_code(result), "revocation_unknown");
}

#[test]
fn webpki_errors_described_in_words() {
    let errors = [
        webpki::Error::UnsupportedCrlIssuingDistributionPoint,
        webpki::Error::MalformedExtensions,
        webpki::Error::UnsupportedDeltaCrl,
        webpki::Error::InvalidCrlSignatureForPublicKey,
        webpki::Error::BadDer,
    ];
    for error in errors {
        let text = describe_webpki_error(&error);
        assert!(
            !text.contains(&format!("{error:?}")),
            "{error:?} is described by its name: {text}"
        );
    }
}

/// Encodes a DER length.
fn der_length(length: usize) -> Vec<u8> {
    if length < 0x80 {
        return vec![u8::try_from(length).unwrap()];
    }
    let bytes: Vec<u8> = length
        .to_be_bytes()
        .into_iter()
        .skip_while(|byte| *byte == 0)
        .collect();
    let mut encoded = vec![0x80 | u8::try_from(bytes.len()).unwrap()];
    encoded.extend(bytes);
    encoded
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut encoded = vec![tag];
    encoded.extend(der_length(contents.len()));
    encoded.extend_from_slice(contents);
    encoded
}

/// Builds an RSA SubjectPublicKeyInfo with a modulus of exactly `bits`
/// bits. Only its size matters: the leaf's key signs nothing here.
fn rsa_public_key(bits: usize) -> rcgen::SubjectPublicKeyInfo {
    let top = 1_u8 << ((bits - 1) % 8);
    // A DER INTEGER whose first octet has its high bit set needs a leading
    // zero octet to stay positive.
    let mut modulus = if top & 0x80 == 0 { vec![] } else { vec![0x00] };
    modulus.push(top);
    modulus.resize(modulus.len() + bits.div_ceil(8) - 1, 0x5b);
    let rsa_key = der(
        0x30,
        &[der(0x02, &modulus), der(0x02, &[0x01, 0x00, 0x01])].concat(),
    );
    // rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let bit_string = der(0x03, &[vec![0x00], rsa_key].concat());
    let spki = der(0x30, &[algorithm, bit_string].concat());
    rcgen::SubjectPublicKeyInfo::from_der(&spki).unwrap()
}

#[test]
fn leaf_with_short_rsa_key_rejected() {
    let root = Authority::root("Partner CA");
    let leaf = leaf_params(40)
        .signed_by(&rsa_public_key(1024), &root.issuer)
        .unwrap();

    let rejection = verify(&[leaf.der().clone()], &root.anchors(), &[]).unwrap_err();

    assert_eq!(rejection.code(), "weak_key");
    assert!(
        rejection
            .reason()
            .contains("RSA key of 1024 bits; at least 2048 are required"),
        "{}",
        rejection.reason()
    );
    assert_eq!(rejection.leaf().unwrap().serial, "102028");
}

#[test]
fn leaf_rsa_key_size_bounds() {
    let root = Authority::root("Partner CA");
    let cases = [
        (2047, Some("weak_key")),
        (2048, None),
        (8192, None),
        (8200, Some("unsupported_algorithm")),
    ];

    for (bits, expected) in cases {
        let leaf = leaf_params(41)
            .signed_by(&rsa_public_key(bits), &root.issuer)
            .unwrap();
        let verdict = verify(&[leaf.der().clone()], &root.anchors(), &[]);
        let code = verdict.as_ref().err().map(Rejection::code);
        assert_eq!(code, expected, "{bits} bits: {verdict:?}");
    }
}

/// Two CAs with the same subject name and different keys, each with its
/// own leaf and CRL.
struct SameNamedCas {
    first: Authority,
    second: Authority,
    first_leaf: CertificateDer<'static>,
    second_leaf: CertificateDer<'static>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

impl SameNamedCas {
    fn new(name: &str) -> Self {
        let first = Authority::root(name);
        let second = Authority::root(name);
        let first_leaf = first.sign(&leaf_params(1));
        let second_leaf = second.sign(&leaf_params(2));
        let crls = vec![
            first.crl(&[], None, NOW + DAY),
            second.crl(&[], None, NOW + DAY),
        ];
        Self {
            first,
            second,
            first_leaf,
            second_leaf,
            crls,
        }
    }
}

/// Checks that each leaf of `cas` is accepted and reports its own CA's
/// owner, with the CAs trusted in both orders and the CRLs in both orders.
fn assert_each_leaf_maps_to_its_ca(cas: &SameNamedCas, first: &AnchorOwner, second: &AnchorOwner) {
    let orders = [
        vec![
            (cas.first.der(), first.clone()),
            (cas.second.der(), second.clone()),
        ],
        vec![
            (cas.second.der(), second.clone()),
            (cas.first.der(), first.clone()),
        ],
    ];
    let mut reversed_crls = cas.crls.clone();
    reversed_crls.reverse();
    for owned in &orders {
        let trust = TrustAnchors::from_owned_certificates(owned).unwrap();
        for crls in [&cas.crls, &reversed_crls] {
            let first_client = verify(std::slice::from_ref(&cas.first_leaf), &trust, crls);
            let second_client = verify(std::slice::from_ref(&cas.second_leaf), &trust, crls);
            assert_eq!(first_client.unwrap().anchor, *first);
            assert_eq!(second_client.unwrap().anchor, *second);
        }
    }
}

#[test]
fn same_named_cas_of_two_tenants() {
    let cas = SameNamedCas::new("CA dns");
    let acme = AnchorOwner::Partner {
        tenant_id: TenantId::generate(),
    };
    let globex = AnchorOwner::Partner {
        tenant_id: TenantId::generate(),
    };

    assert_each_leaf_maps_to_its_ca(&cas, &acme, &globex);
}

#[test]
fn same_named_cas_of_one_tenant() {
    let cas = SameNamedCas::new("CA dns");
    let tenant_id = TenantId::generate();
    let owner = AnchorOwner::Partner { tenant_id };

    assert_each_leaf_maps_to_its_ca(&cas, &owner, &owner);
}

#[test]
fn partner_ca_named_like_internal_ca() {
    let cas = SameNamedCas::new(crate::pki::ca::CA_COMMON_NAME);
    let partner = AnchorOwner::Partner {
        tenant_id: TenantId::generate(),
    };

    assert_each_leaf_maps_to_its_ca(&cas, &AnchorOwner::InternalCa, &partner);
}

#[test]
fn same_named_ca_revocation_still_applies() {
    let first = Authority::root("CA dns");
    let second = Authority::root("CA dns");
    let revoked_leaf = second.sign(&leaf_params(3));
    let crls = vec![
        first.crl(&[], None, NOW + DAY),
        second.crl(&[&leaf_serial(3)], None, NOW + DAY),
    ];
    let trust = TrustAnchors::from_certificates(&[first.der(), second.der()]).unwrap();

    let result = verify(&[revoked_leaf], &trust, &crls);

    assert_eq!(rejection_code(result), "revoked");
}

#[test]
fn same_named_ca_without_its_crl_unknown() {
    let first = Authority::root("CA dns");
    let second = Authority::root("CA dns");
    let leaf = second.sign(&leaf_params(4));
    // Only the other CA's CRL, whose issuer name matches the leaf's issuer.
    let crls = vec![first.crl(&[], None, NOW + DAY)];
    let trust = TrustAnchors::from_certificates(&[first.der(), second.der()]).unwrap();

    let result = verify(&[leaf], &trust, &crls);

    assert_eq!(rejection_code(result), "revocation_unknown");
}

#[test]
fn removed_same_named_ca_rejects_its_leaf() {
    let cas = SameNamedCas::new("CA dns");
    // Only the second CA stays trusted, as after removing the first.
    let trust = TrustAnchors::from_certificates(&[cas.second.der()]).unwrap();

    let removed = verify(std::slice::from_ref(&cas.first_leaf), &trust, &cas.crls);
    let trusted = verify(std::slice::from_ref(&cas.second_leaf), &trust, &cas.crls);

    assert_eq!(rejection_code(removed), "bad_signature");
    assert!(trusted.is_ok());
}
