use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::Duration;

use super::*;

/// A CA made by rcgen, valid from `not_before` to `not_after`.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn valid(name: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self::new(name, now - Duration::days(1), now + Duration::days(30))
    }

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    fn crl_pem(&self) -> String {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

fn write_temp(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("partner-ca-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn ca_certificate_must_be_ca() {
    let ca = TestCa::valid("Partner CA");
    let now = OffsetDateTime::now_utc();
    let parsed = parse_ca_certificate(&ca.pem, now).unwrap();
    assert_eq!(parsed.subject, "CN=Partner CA");
    assert_eq!(parsed.der, ca.der());

    let mut leaf = CertificateParams::new(vec!["svc.example.com".to_owned()]).unwrap();
    leaf.is_ca = IsCa::ExplicitNoCa;
    let leaf = leaf
        .signed_by(&KeyPair::generate().unwrap(), &ca.issuer)
        .unwrap();
    let error = parse_ca_certificate(&leaf.pem(), now).unwrap_err();
    assert!(error.to_string().contains("CA:TRUE"), "{error}");

    let two = format!("{}{}", ca.pem, ca.pem);
    assert!(parse_ca_certificate(&two, now).is_err());
    assert!(parse_ca_certificate("", now).is_err());
}

#[test]
fn expired_ca_certificate_rejected() {
    let now = OffsetDateTime::now_utc();
    let ca = TestCa::new("Old CA", now - Duration::days(30), now - Duration::days(1));
    let error = parse_ca_certificate(&ca.pem, now).unwrap_err();
    assert_eq!(error.code(), "invalid_certificate");
    assert!(error.to_string().contains("expired at"), "{error}");
}

#[test]
fn future_ca_certificate_rejected() {
    let now = OffsetDateTime::now_utc();
    let ca = TestCa::new("Next CA", now + Duration::days(1), now + Duration::days(30));
    let error = parse_ca_certificate(&ca.pem, now).unwrap_err();
    assert!(error.to_string().contains("not valid before"), "{error}");
}

#[test]
fn crl_file_of_the_ca_accepted() {
    let ca = TestCa::valid("Partner CA");
    let path = write_temp("ca.crl", &ca.crl_pem());
    check_crl_files(&[path], &ca.der()).unwrap();
}

#[test]
fn crl_file_relative_path_rejected() {
    let ca = TestCa::valid("Partner CA");
    let error = check_crl_files(&["ca.crl".to_owned()], &ca.der()).unwrap_err();
    assert_eq!(error.code(), "invalid_crl_file");
    assert!(error.to_string().contains("absolute path"), "{error}");
}

#[test]
fn crl_file_of_another_ca_rejected() {
    let ca = TestCa::valid("Partner CA");
    let other = TestCa::valid("Other CA");
    let path = write_temp("other.crl", &other.crl_pem());
    let error = check_crl_files(&[path], &ca.der()).unwrap_err();
    assert!(
        error.to_string().contains("no CRL issued and signed by"),
        "{error}"
    );
}

#[test]
fn crl_file_signed_by_another_key_rejected() {
    // Same subject name, other key: the issuer matches but the signature
    // does not verify.
    let ca = TestCa::valid("Partner CA");
    let impostor = TestCa::valid("Partner CA");
    let path = write_temp("impostor.crl", &impostor.crl_pem());
    let error = check_crl_files(&[path], &ca.der()).unwrap_err();
    assert!(
        error.to_string().contains("no CRL issued and signed by"),
        "{error}"
    );
}

#[test]
fn missing_crl_file_rejected() {
    let ca = TestCa::valid("Partner CA");
    let error = check_crl_files(&["/nonexistent/partner.crl".to_owned()], &ca.der()).unwrap_err();
    assert!(error.to_string().contains("failed to read"), "{error}");
}

#[test]
fn crl_files_and_no_crl_conflict() {
    let ca = TestCa::valid("Partner CA");
    let path = write_temp("ca.crl", &ca.crl_pem());
    let revocation = RevocationSource {
        crl_files: vec![path],
        no_crl: true,
    };
    let error = check_revocation(&revocation, &ca.der()).unwrap_err();
    assert_eq!(error.code(), "conflicting_revocation");
}

/// Makes the PEM of a valid CA certificate with the given name constraints.
fn constrained_ca_pem(constraints: rcgen::NameConstraints) -> String {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Partner");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
    params.name_constraints = Some(constraints);
    params
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

fn partner_directory_name() -> rcgen::DistinguishedName {
    let mut name = rcgen::DistinguishedName::new();
    name.push(DnType::OrganizationName, "Partner");
    name
}

#[test]
fn directory_name_constraints_rejected() {
    let now = OffsetDateTime::now_utc();
    let permitted = constrained_ca_pem(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DirectoryName(
            partner_directory_name(),
        )],
        excluded_subtrees: Vec::new(),
    });
    let excluded = constrained_ca_pem(rcgen::NameConstraints {
        permitted_subtrees: Vec::new(),
        excluded_subtrees: vec![rcgen::GeneralSubtree::DirectoryName(
            partner_directory_name(),
        )],
    });

    for pem in [permitted, excluded] {
        let error = parse_ca_certificate(&pem, now).unwrap_err();
        assert_eq!(error.code(), "unsupported_name_constraint");
        assert!(error.to_string().contains("directoryName"), "{error}");
    }
}

#[test]
fn dns_name_constraints_accepted() {
    let now = OffsetDateTime::now_utc();
    let pem = constrained_ca_pem(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("example.com".to_owned())],
        excluded_subtrees: Vec::new(),
    });

    assert!(parse_ca_certificate(&pem, now).is_ok());
}
