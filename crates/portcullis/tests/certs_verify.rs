//! `portcullis certs verify` on PEM files written by rcgen, with exit codes
//! and printed reasons, cross-checked with `openssl verify` where the two
//! verifiers must agree.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "helpers outside #[test] functions fail the test on unexpected output, as tests do"
)]

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use assert_cmd::cargo::cargo_bin_cmd;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CrlIssuingDistributionPoint, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};
use serde_json::Value;
use tempfile::TempDir;
use time::OffsetDateTime;
use time::macros::datetime;

/// Verification time of every test, passed as `--at`, so that no test
/// depends on the clock.
const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const AT: &str = "2026-06-01T12:00:00Z";
const DAY: time::Duration = time::Duration::days(1);
const DP_A: &str = "http://crl-a.example.test/ca.crl";
const DP_B: &str = "http://crl-b.example.test/ca.crl";

/// A partner CA in a temporary directory, which also contains the files
/// that tests write.
struct Partner {
    dir: TempDir,
    ca_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Partner {
    fn new() -> Self {
        Self::with_name_constraints("Partner CA", None)
    }

    /// Makes a partner CA named "Constrained CA" whose name constraints
    /// permit DNS names under `domain` only.
    fn constrained(domain: &str) -> Self {
        let constraints = NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName(domain.to_owned())],
            excluded_subtrees: Vec::new(),
        };
        Self::with_name_constraints("Constrained CA", Some(constraints))
    }

    fn with_name_constraints(name: &str, name_constraints: Option<NameConstraints>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = NOW - DAY * 365;
        params.not_after = NOW + DAY * 365;
        params.serial_number = Some(SerialNumber::from_slice(&[0x0c, 0xa0]));
        params.name_constraints = name_constraints;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();

        let ca_path = dir.path().join("partner-ca.pem");
        std::fs::write(&ca_path, cert.pem()).unwrap();
        Self {
            dir,
            ca_path,
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs `params` and writes the certificate to `name`.
    fn write_leaf(&self, name: &str, params: &CertificateParams) -> PathBuf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let path = self.dir.path().join(name);
        std::fs::write(&path, cert.pem()).unwrap();
        path
    }

    /// Writes a CRL that revokes `serial`, with `idp` as its
    /// issuingDistributionPoint.
    fn write_crl(&self, name: &str, serial: &[u8], idp: Option<&str>) -> PathBuf {
        let params = CertificateRevocationListParams {
            this_update: NOW - DAY,
            next_update: NOW + DAY * 7,
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: idp.map(|uri| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![uri.to_owned()],
                },
                scope: None,
            }),
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: NOW - DAY,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        let path = self.dir.path().join(name);
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }

    /// Runs `portcullis certs verify --chain chain --trust partner-ca.pem
    /// --at AT` with `extra` arguments appended.
    fn verify(&self, chain: &Path, extra: &[&str]) -> Output {
        self.verify_at(chain, AT, extra)
    }

    fn verify_at(&self, chain: &Path, at: &str, extra: &[&str]) -> Output {
        cargo_bin_cmd!("portcullis")
            .env_clear()
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["certs", "verify", "--at", at, "--chain"])
            .arg(chain)
            .arg("--trust")
            .arg(&self.ca_path)
            .args(extra)
            .output()
            .unwrap()
    }

    /// Runs `openssl verify -purpose sslclient` at `NOW`.
    fn openssl_verify(&self, chain: &Path) -> Output {
        StdCommand::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-attime"])
            .arg(NOW.unix_timestamp().to_string())
            .arg("-CAfile")
            .arg(&self.ca_path)
            .arg(chain)
            .output()
            .unwrap()
    }
}

/// Parameters of a valid client leaf with serial `10 20 <serial>`.
fn leaf_params(serial: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "partner service");
    params.subject_alt_names = vec![SanType::DnsName(
        "partner-svc.example.com".try_into().unwrap(),
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = NOW - DAY * 30;
    params.not_after = NOW + DAY * 60;
    params.serial_number = Some(SerialNumber::from_slice(&[0x10, 0x20, serial]));
    params
}

fn expired_params(serial: u8) -> CertificateParams {
    let mut params = leaf_params(serial);
    params.not_before = NOW - DAY * 10;
    params.not_after = NOW - DAY;
    params
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Returns the value after `label` in the `label  value` lines of a verdict.
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(label)?;
            rest.starts_with("  ").then(|| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
}

#[test]
fn control_leaf_accepted() {
    let partner = Partner::new();
    let leaf = partner.write_leaf("a.pem", &leaf_params(1));

    let output = partner.verify(&leaf, &[]);

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(field(&text, "verdict"), "accepted");
    assert_eq!(field(&text, "serial"), "102001");
    assert_eq!(field(&text, "issuer"), "CN=Partner CA");
    assert_eq!(field(&text, "names"), "DNS:partner-svc.example.com");
    assert_eq!(field(&text, "x5t#S256").len(), 43);
}

#[test]
fn expired_leaf_rejected_with_reason() {
    let partner = Partner::new();
    let leaf = partner.write_leaf("d.pem", &expired_params(4));

    let output = partner.verify(&leaf, &[]);

    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert_eq!(field(&text, "verdict"), "rejected");
    assert_eq!(field(&text, "code"), "expired");
    assert!(
        field(&text, "reason").starts_with("leaf certificate"),
        "{text}"
    );
    assert_eq!(field(&text, "serial"), "102004");
    assert_eq!(field(&text, "issuer"), "CN=Partner CA");
    assert!(
        stderr(&output).contains("certificate chain rejected (expired)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn server_auth_leaf_rejected_as_wrong_usage() {
    let partner = Partner::new();
    let mut params = leaf_params(2);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = partner.write_leaf("b.pem", &params);

    let output = partner.verify(&leaf, &[]);

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(field(&stdout(&output), "code"), "wrong_usage");
}

#[test]
fn ca_certificate_rejected_as_leaf() {
    let partner = Partner::new();

    let output = partner.verify(&partner.ca_path, &[]);

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(field(&stdout(&output), "code"), "ca_used_as_leaf");
}

#[test]
fn later_time_makes_leaf_expired() {
    let partner = Partner::new();
    let leaf = partner.write_leaf("a.pem", &leaf_params(1));

    // The control leaf is valid until 2026-07-31T12:00:00Z.
    let output = partner.verify_at(&leaf, "2026-08-15T00:00:00Z", &[]);

    assert_eq!(output.status.code(), Some(1));
    assert_eq!(field(&stdout(&output), "code"), "expired");
}

#[test]
fn revoked_leaf_named_for_either_distribution_point() {
    let partner = Partner::new();
    for (serial, order, idp) in [(40u8, [DP_A, DP_B], DP_B), (41u8, [DP_B, DP_A], DP_B)] {
        let mut params = leaf_params(serial);
        params.crl_distribution_points = order
            .iter()
            .map(|uri| CrlDistributionPoint {
                uris: vec![(*uri).to_owned()],
            })
            .collect();
        let leaf = partner.write_leaf("l.pem", &params);
        let crl = partner.write_crl("partner.crl", &[0x10, 0x20, serial], Some(idp));

        let output = partner.verify(&leaf, &["--crl", crl.to_str().unwrap()]);

        assert_eq!(output.status.code(), Some(1), "serial {serial}");
        let text = stdout(&output);
        assert_eq!(field(&text, "code"), "revoked", "{text}");
        let expected = format!("serial 1020{serial:02x}");
        assert!(field(&text, "reason").contains(&expected), "{text}");
    }
}

/// Writes a leaf of `partner` with serial `10 20 <serial>` for the DNS
/// name `dns`.
fn write_leaf_for(partner: &Partner, name: &str, serial: u8, dns: &str) -> PathBuf {
    let mut params = leaf_params(serial);
    params.subject_alt_names = vec![SanType::DnsName(dns.try_into().unwrap())];
    partner.write_leaf(name, &params)
}

/// A leaf outside its CA's name constraints is `name_constraint_violated`
/// with any CRL, even one that revokes it. A leaf inside them keeps the
/// revocation codes.
#[test]
fn name_constraint_violation_named_before_revocation() {
    let partner = Partner::constrained("example.com");
    let other = Partner::new();
    let outside = write_leaf_for(&partner, "outside.pem", 60, "evil.test");
    let inside = write_leaf_for(&partner, "inside.pem", 61, "svc.example.com");
    let other_crl = other.write_crl("other.crl", &[0x01], None);
    let outside_revoked = partner.write_crl("outside-revoked.crl", &[0x10, 0x20, 60], None);
    let inside_revoked = partner.write_crl("inside-revoked.crl", &[0x10, 0x20, 61], None);
    let path = |crl: &Path| crl.to_str().unwrap().to_owned();

    let cases = [
        (
            "outside, another CA's CRL",
            &outside,
            &other_crl,
            1,
            "name_constraint_violated",
        ),
        (
            "outside, revoked",
            &outside,
            &outside_revoked,
            1,
            "name_constraint_violated",
        ),
        (
            "inside, another CA's CRL",
            &inside,
            &other_crl,
            1,
            "revocation_unknown",
        ),
        ("inside, revoked", &inside, &inside_revoked, 1, "revoked"),
        (
            "inside, not revoked",
            &inside,
            &outside_revoked,
            0,
            "accepted",
        ),
    ];
    for (case, leaf, crl, status, expected) in cases {
        let output = partner.verify(leaf, &["--crl", &path(crl)]);

        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(status), "{case}: {text}");
        let verdict = if status == 0 {
            field(&text, "verdict")
        } else {
            field(&text, "code")
        };
        assert_eq!(verdict, expected, "{case}: {text}");
    }

    let output = partner.verify(&outside, &["--crl", &path(&other_crl), "--output", "json"]);
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(json["code"], "name_constraint_violated", "{json}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn chain_file_with_intermediate_read_in_order() {
    let partner = Partner::new();
    for (is_ca, expected) in [
        (IsCa::Ca(BasicConstraints::Unconstrained), "accepted"),
        (IsCa::ExplicitNoCa, "rejected"),
    ] {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Partner Issuing CA");
        params.is_ca = is_ca;
        params.not_before = NOW - DAY * 100;
        params.not_after = NOW + DAY * 100;
        let key = KeyPair::generate().unwrap();
        let intermediate = params.signed_by(&key, &partner.issuer).unwrap();
        let issuer = Issuer::new(params, key);
        let leaf = leaf_params(50)
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        // Leaf first, then the intermediate, as a TLS client sends them.
        let chain = partner.dir.path().join("chain.pem");
        std::fs::write(&chain, format!("{}{}", leaf.pem(), intermediate.pem())).unwrap();

        let output = partner.verify(&chain, &[]);

        let text = stdout(&output);
        assert_eq!(field(&text, "verdict"), expected, "{text}");
        if expected == "rejected" {
            assert_eq!(field(&text, "code"), "intermediate_not_ca", "{text}");
            assert_eq!(output.status.code(), Some(1));
        } else {
            assert_eq!(field(&text, "issuer"), "CN=Partner Issuing CA");
            assert_eq!(output.status.code(), Some(0));
        }
    }
}

#[test]
fn json_output_carries_verdict() {
    let partner = Partner::new();
    let good = partner.write_leaf("a.pem", &leaf_params(1));
    let expired = partner.write_leaf("d.pem", &expired_params(4));

    let accepted = partner.verify(&good, &["--output", "json"]);
    let rejected = partner.verify(&expired, &["--output", "json"]);

    let accepted: Value = serde_json::from_slice(&accepted.stdout).unwrap();
    assert_eq!(accepted["verdict"], "accepted");
    assert_eq!(accepted["certificate"]["serial"], "102001");
    assert_eq!(
        accepted["certificate"]["subject_alt_names"][0]["value"],
        "partner-svc.example.com"
    );
    assert_eq!(accepted["certificate"]["not_after"], "2026-07-31T12:00:00Z");
    let rejected: Value = serde_json::from_slice(&rejected.stdout).unwrap();
    assert_eq!(rejected["verdict"], "rejected");
    assert_eq!(rejected["code"], "expired");
    assert_eq!(rejected["certificate"]["serial"], "102004");
}

#[test]
fn missing_trust_is_usage_error() {
    let partner = Partner::new();
    let leaf = partner.write_leaf("a.pem", &leaf_params(1));

    let output = cargo_bin_cmd!("portcullis")
        .env_clear()
        .args(["certs", "verify", "--chain"])
        .arg(&leaf)
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--trust"), "{}", stderr(&output));
}

#[test]
fn unreadable_chain_file_reported() {
    let partner = Partner::new();
    let missing = partner.dir.path().join("missing.pem");

    let output = partner.verify(&missing, &[]);

    // Status 2: no verdict was reached, unlike a rejection's status 1.
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("failed to read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unparsable_chain_is_input_error() {
    let partner = Partner::new();
    let not_pem = partner.dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
    let not_x509 = partner.dir.path().join("not-x509.der");
    std::fs::write(&not_x509, [0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
    let empty = partner.dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();

    for path in [&not_pem, &not_x509, &empty] {
        let output = partner.verify(path, &[]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {}",
            path.display(),
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("error:"),
            "{}: {}",
            path.display(),
            stderr(&output)
        );
    }
}

#[test]
fn unparsable_crl_is_input_error() {
    let partner = Partner::new();
    let leaf = partner.write_leaf("leaf.pem", &leaf_params(0x41));
    let garbage = partner.dir.path().join("garbage.crl");
    std::fs::write(&garbage, [0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
    let missing = partner.dir.path().join("missing.crl");

    let output = partner.verify(&leaf, &["--crl", garbage.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot verify the chain"),
        "{}",
        stderr(&output)
    );
    assert_eq!(field(&stdout(&output), "code"), "invalid_crl");

    let output = partner.verify(&leaf, &["--crl", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    // The same leaf with a usable CRL that lists it is a verdict: status 1.
    let crl = partner.write_crl("revoking.crl", &[0x10, 0x20, 0x41], None);
    let output = partner.verify(&leaf, &["--crl", crl.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(field(&stdout(&output), "code"), "revoked");
}

#[test]
fn openssl_agrees_on_control_and_expired() {
    let partner = Partner::new();
    let good = partner.write_leaf("a.pem", &leaf_params(1));
    let expired = partner.write_leaf("d.pem", &expired_params(4));

    let ours_good = partner.verify(&good, &[]);
    let openssl_good = partner.openssl_verify(&good);
    let ours_expired = partner.verify(&expired, &[]);
    let openssl_expired = partner.openssl_verify(&expired);

    assert!(ours_good.status.success());
    assert!(
        openssl_good.status.success(),
        "openssl rejected the control leaf: {}{}",
        stdout(&openssl_good),
        stderr(&openssl_good)
    );
    assert!(!ours_expired.status.success());
    assert!(!openssl_expired.status.success());
    let openssl_text = format!("{}{}", stdout(&openssl_expired), stderr(&openssl_expired));
    assert!(
        openssl_text.contains("certificate has expired"),
        "{openssl_text}"
    );
}

/// Runs `openssl` with `args` in `dir` and returns its standard output.
fn openssl_in(dir: &Path, args: &[&str]) -> String {
    let output = StdCommand::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Generates a 1024-bit RSA key with openssl in `dir` as `name`, because
/// aws-lc-rs generates no RSA key below 2048 bits, and returns its public
/// key for rcgen.
fn rsa_1024_key(dir: &Path, name: &str) -> rcgen::SubjectPublicKeyInfo {
    openssl_in(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
            name,
        ],
    );
    let public_pem = openssl_in(dir, &["pkey", "-in", name, "-pubout"]);
    rcgen::SubjectPublicKeyInfo::from_pem(&public_pem).unwrap()
}

#[test]
fn leaf_with_1024_bit_rsa_key_rejected() {
    let partner = Partner::new();
    let public_key = rsa_1024_key(partner.dir.path(), "weak-key.pem");
    let cert = leaf_params(50)
        .signed_by(&public_key, &partner.issuer)
        .unwrap();
    let leaf = partner.dir.path().join("weak.pem");
    std::fs::write(&leaf, cert.pem()).unwrap();

    let output = partner.verify(&leaf, &[]);

    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert_eq!(field(&text, "code"), "weak_key", "{text}");
    assert!(
        field(&text, "reason").contains("RSA key of 1024 bits; at least 2048 are required"),
        "{text}"
    );
}

/// An intermediate with a 1024-bit RSA key signs the leaf with openssl.
/// webpki reports only that the leaf's signature fails, and the verdict
/// names the intermediate's key as the cause.
#[test]
fn intermediate_with_1024_bit_rsa_key_named() {
    let partner = Partner::new();
    let dir = partner.dir.path();
    let public_key = rsa_1024_key(dir, "intermediate-key.pem");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Weak Intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.not_before = NOW - DAY * 30;
    params.not_after = NOW + DAY * 300;
    let intermediate = params.signed_by(&public_key, &partner.issuer).unwrap();
    std::fs::write(dir.join("intermediate.pem"), intermediate.pem()).unwrap();
    openssl_in(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf-key.pem",
            "-subj",
            "/CN=partner service",
            "-addext",
            "extendedKeyUsage=clientAuth",
            "-out",
            "leaf.csr",
        ],
    );
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "intermediate.pem",
            "-CAkey",
            "intermediate-key.pem",
            "-CAcreateserial",
            "-days",
            "30",
            "-copy_extensions",
            "copy",
            "-out",
            "leaf.pem",
        ],
    );
    let leaf = std::fs::read_to_string(dir.join("leaf.pem")).unwrap();
    let chain = dir.join("chain.pem");
    std::fs::write(&chain, format!("{leaf}{}", intermediate.pem())).unwrap();
    // openssl dates the leaf from now, so the chain is verified now.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    let output = partner.verify_at(&chain, &now, &[]);

    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert_eq!(field(&text, "code"), "weak_key", "{text}");
    let reason = field(&text, "reason");
    assert!(reason.contains("intermediate"), "{text}");
    assert!(reason.contains("Weak Intermediate"), "{text}");
    assert!(reason.contains("1024 bits"), "{text}");
}

/// A reader that stops early (`certs verify … 2>&1 | head -1`) closes the
/// pipe before the error line is written. The exit status must still be
/// the verdict's 1, not a panic's 101.
#[test]
fn closed_pipe_keeps_exit_status() {
    let partner = Partner::new();
    let leaf = partner.write_leaf("closed.pem", &expired_params(9));
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);

    let status = StdCommand::new(env!("CARGO_BIN_EXE_portcullis"))
        .env_clear()
        .arg("--data-dir")
        .arg(partner.dir.path().join("data"))
        .args(["certs", "verify", "--at", AT, "--chain"])
        .arg(&leaf)
        .arg("--trust")
        .arg(&partner.ca_path)
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .status()
        .unwrap();

    assert_eq!(status.code(), Some(1));
}

#[test]
fn same_named_cas_accept_their_own_leaves() {
    let first = Partner::with_name_constraints("CA dns", None);
    let second = Partner::with_name_constraints("CA dns", None);
    let first_leaf = first.write_leaf("first.pem", &leaf_params(1));
    let second_leaf = second.write_leaf("second.pem", &leaf_params(2));
    // Each CRL revokes a serial that neither leaf has.
    let first_crl = first.write_crl("first.crl", &[0x99], None);
    let second_crl = second.write_crl("second.crl", &[0x99], None);
    let crl_orders = [[&first_crl, &second_crl], [&second_crl, &first_crl]];

    // `verify` lists the partner's own CA first, so the two partners give
    // the two trust orders.
    for (partner, other) in [(&first, &second), (&second, &first)] {
        for crls in &crl_orders {
            for leaf in [&first_leaf, &second_leaf] {
                let output = partner.verify(
                    leaf,
                    &[
                        "--trust",
                        other.ca_path.to_str().unwrap(),
                        "--crl",
                        crls[0].to_str().unwrap(),
                        "--crl",
                        crls[1].to_str().unwrap(),
                    ],
                );
                assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
                assert_eq!(field(&stdout(&output), "verdict"), "accepted");
            }
        }
    }
}
