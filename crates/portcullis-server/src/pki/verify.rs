//! Verification of a client certificate chain for mutual TLS.
//!
//! [`verify_client_chain`] is the only place that decides whether a client
//! certificate is trusted. The TLS listener, the certificate forwarded by a
//! trusted proxy and `portcullis certs verify` all call it, so they cannot
//! reach different verdicts. Path validation (RFC 5280 §6.1) and revocation
//! checks are rustls-webpki's. This module maps its errors to stable codes and
//! reads the leaf's names with x509-parser for display and client mapping.
//!
//! Missing extended key usage: webpki's `KeyUsage::client_auth()` requires
//! clientAuth only when a certificate carries the extended key usage
//! extension. RFC 5280 §4.2.1.12 reads an absent extension as "any purpose",
//! so a leaf without it is accepted. An extension that lists other purposes,
//! or none, is rejected.
//!
//! Revocation: when CRLs are given, every certificate in the path must be
//! covered by one of them (an unknown status is a rejection) and a CRL past its
//! nextUpdate is a rejection. A CRL covers a certificate when its issuer
//! matches and, if it has an issuingDistributionPoint, one of its names
//! matches a name in any of the certificate's CRL distribution points
//! (RFC 5280 §6.3.3). Portcullis never fetches a CRL from a distribution
//! point. Without CRLs no revocation check runs. A revocation failure
//! (`revoked`, `revocation_unknown`, `crl_expired`, or `invalid_crl` for a
//! CRL that parses but cannot be used for the path) is reported only for a
//! chain that passes every other check. A chain that
//! also fails another check, such as a name constraint, is rejected with
//! that check's code.
//!
//! Key usage: webpki 0.103 reads the key usage extension only of a CRL's
//! issuer (cRLSign), so [`check_key_usage`] reads it once webpki has built
//! the path. A leaf whose key usage leaves out digitalSignature may not sign
//! the handshake's CertificateVerify (RFC 8446 §4.4.3, RFC 5280 §4.2.1.3).
//! An intermediate whose key usage leaves out keyCertSign may not issue
//! certificates (RFC 5280 §6.1.4 (n)). A certificate without the extension
//! allows every use.
//!
//! Public keys: a leaf whose key the TLS handshake cannot verify a
//! signature with, such as RSA below 2048 bits, is rejected as `weak_key` or
//! `unsupported_algorithm` (see [`public_key`]).

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::ids::TenantId;
use portcullis_core::pki::CertificateSerial;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, SignatureVerificationAlgorithm, TrustAnchor,
    UnixTime,
};
use serde::Serialize;
use time::OffsetDateTime;
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, FromDer};
use x509_parser::extensions::{GeneralName, KeyUsage as KeyUsageBits, ParsedExtension};
use x509_parser::x509::SubjectPublicKeyInfo;

/// Returns the signature algorithms that rustls's aws-lc-rs provider accepts
/// in certificates, the list its `WebPkiClientVerifier` uses.
fn signature_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
}

/// Verifies a client certificate chain at time `at` and describes its leaf.
///
/// `chain` is the leaf followed by any intermediates, in the order a TLS
/// client sends them. The path must end at one of `trust`, every certificate
/// must be valid at `at`, and the leaf must allow clientAuth (see the module
/// documentation for a leaf without extended key usage). When `crls` is not
/// empty, every certificate in the path is checked against them.
///
/// # Errors
///
/// A [`Rejection`] with a stable [`RejectionKind::code`] and a reason for
/// operators. It names the leaf's serial and issuer whenever the leaf parses.
pub fn verify_client_chain(
    chain: &[CertificateDer<'_>],
    trust: &TrustAnchors,
    crls: &[CertificateRevocationListDer<'_>],
    at: UnixTime,
) -> Result<VerifiedClient, Rejection> {
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        return Err(Rejection::new(
            RejectionKind::Malformed,
            "the chain contains no certificate".to_owned(),
            None,
        ));
    };
    let leaf = LeafInfo::parse(leaf_der)?;
    let summary = Some(leaf.summary());

    if trust.anchors.is_empty() {
        return Err(Rejection::new(
            RejectionKind::UnknownIssuer,
            "no trust anchors are configured".to_owned(),
            summary,
        ));
    }

    check_leaf_key(leaf_der, summary.as_ref())?;
    parse_crls(crls, summary.as_ref())?;

    // webpki takes the first CRL whose issuer name matches a certificate
    // and fails the path when that CRL's signature does not verify, so a
    // CRL of another CA with the same name would reject this path. Each
    // candidate anchor is therefore verified on its own, with only the CRLs
    // that it or a presented intermediate signed (RFC 5280 §6.3.3 (f)). A
    // chain is accepted when any candidate path verifies (RFC 4158 §2.4).
    let mut best: Option<Rejection> = None;
    for position in trust.candidates(chain) {
        let candidate = trust.single(position);
        let candidate_crls = crls_signed_for_path(crls, &candidate, intermediates);
        let checks_revocation = !crls.is_empty();
        match verify_against_anchor(
            &leaf,
            chain,
            &candidate,
            &candidate_crls,
            checks_revocation,
            at,
        ) {
            Ok(anchor) => return Ok(leaf.into_verified(anchor)),
            Err(rejection) => {
                if best
                    .as_ref()
                    .is_none_or(|known| rejection_rank(&rejection) > rejection_rank(known))
                {
                    best = Some(rejection);
                }
            }
        }
    }
    // `candidates` is never empty for a non-empty list of anchors.
    Err(best.unwrap_or_else(|| {
        Rejection::new(
            RejectionKind::UnknownIssuer,
            "no path from the leaf to a trusted CA certificate was found".to_owned(),
            summary,
        )
    }))
}

/// Returns the CRLs whose signature verifies with the key of the anchor in
/// `trust` or of a presented intermediate with the CRL's issuer name. A CRL
/// that fails to parse is kept, so that webpki reports it as before.
fn crls_signed_for_path<'c>(
    crls: &[CertificateRevocationListDer<'c>],
    trust: &TrustAnchors,
    intermediates: &[CertificateDer<'_>],
) -> Vec<CertificateRevocationListDer<'c>> {
    let parsed_intermediates: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert)
        .collect();
    crls.iter()
        .filter(|der| {
            let Ok((_, crl)) = x509_parser::parse_x509_crl(der) else {
                return true;
            };
            let issuer = crl.issuer().as_raw();
            let signed_by_anchor = trust.keys.iter().any(|key| {
                key.subject == issuer
                    && SubjectPublicKeyInfo::from_der(&key.spki)
                        .is_ok_and(|(_, spki)| crl.verify_signature(&spki).is_ok())
            });
            signed_by_anchor
                || parsed_intermediates.iter().any(|cert| {
                    cert.subject().as_raw() == issuer
                        && crl.verify_signature(cert.public_key()).is_ok()
                })
        })
        .cloned()
        .collect()
}

/// Ranks the rejections of several candidate anchors, so that the reported
/// one names the most specific fault. An anchor with a name that issues no
/// certificate of the chain (`unknown_issuer`), or whose key does not verify
/// the signature (`bad_signature`), is most likely not the chain's issuer,
/// so any other fault that a candidate found ranks above them.
fn rejection_rank(rejection: &Rejection) -> u8 {
    match rejection.kind {
        RejectionKind::UnknownIssuer => 0,
        RejectionKind::BadSignature => 1,
        _ => 2,
    }
}

/// Verifies `chain` against the anchors of `trust` with `crls`, and returns
/// the owner of the anchor the verified path ends at. With
/// `checks_revocation`, a path that no CRL of `crls` covers has an unknown
/// status, even when `crls` is empty.
fn verify_against_anchor(
    leaf: &LeafInfo,
    chain: &[CertificateDer<'_>],
    trust: &TrustAnchors,
    crls: &[CertificateRevocationListDer<'_>],
    checks_revocation: bool,
    at: UnixTime,
) -> Result<AnchorOwner, Rejection> {
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        return Err(Rejection::new(
            RejectionKind::Malformed,
            "the chain contains no certificate".to_owned(),
            None,
        ));
    };
    let summary = Some(leaf.summary());
    let parsed_crls = parse_crls(crls, summary.as_ref())?;
    let crl_refs: Vec<&CertRevocationList<'_>> = parsed_crls.iter().collect();

    let end_entity = EndEntityCert::try_from(leaf_der).map_err(|error| {
        Rejection::new(
            RejectionKind::Malformed,
            format!(
                "the leaf certificate is malformed: {}",
                describe_webpki_error(&error)
            ),
            summary.clone(),
        )
    })?;
    // `unknown_status` is `None` for a search without any revocation check.
    let verify = |unknown_status: Option<UnknownStatusPolicy>| {
        // `RevocationOptionsBuilder::new` fails only for an empty list, which
        // means no revocation check.
        let revocation = unknown_status.and_then(|unknown_status| {
            RevocationOptionsBuilder::new(&crl_refs)
                .ok()
                .map(|builder| {
                    builder
                        .with_depth(RevocationCheckDepth::Chain)
                        .with_status_policy(unknown_status)
                        .with_expiration_policy(ExpirationPolicy::Enforce)
                        .build()
                })
        });
        let verified = end_entity.verify_for_usage(
            signature_algorithms(),
            &trust.anchors,
            intermediates,
            at,
            KeyUsage::client_auth(),
            revocation,
            None,
        );
        // webpki cannot check against an empty list of CRLs, so a status
        // that must be known is unknown here for every path it accepts.
        if checks_revocation
            && crl_refs.is_empty()
            && unknown_status == Some(UnknownStatusPolicy::Deny)
        {
            return verified.and(Err(webpki::Error::UnknownRevocationStatus));
        }
        verified
    };

    let mut verified = verify(Some(UnknownStatusPolicy::Deny));
    // A path that no CRL covers may end at a CA that the operator accepts
    // without a revocation check. Searching again with unknown statuses
    // allowed finds that path, and it counts only when its anchor is such
    // a CA. CRLs that do cover the path still apply.
    if let Err(error) = &verified
        && classify(error) == RejectionKind::RevocationUnknown
        && trust.any_revocation_unchecked()
        && let Ok(path) = verify(Some(UnknownStatusPolicy::Allow))
        && trust.is_revocation_unchecked(path.anchor())
    {
        verified = Ok(path);
    }

    // webpki checks revocation while it builds a path, before the name
    // constraints, and ranks a revocation error above most others. Status
    // checking is one step of RFC 5280 §6.1.3 (a), and a chain that another
    // step rejects is wrong whatever its status. So a revocation error is
    // reported only when the chain passes every other check, and otherwise
    // a search without CRLs finds the real fault.
    if let Err(error) = &verified
        && is_revocation_failure(classify(error))
    {
        match verify(None) {
            Err(path_error) => verified = Err(path_error),
            Ok(path) => {
                checked_issuers(leaf_der, &path, summary.as_ref())?;
            }
        }
    }

    match verified {
        Ok(path) => {
            let anchor = trust.owner_of(path.anchor()).ok_or_else(|| {
                Rejection::new(
                    RejectionKind::Other,
                    "webpki returned a trust anchor that is not in the list".to_owned(),
                    summary.clone(),
                )
            })?;
            let issuers = checked_issuers(leaf_der, &path, summary.as_ref())?;
            if !trust.is_revocation_unchecked(path.anchor()) {
                check_partitioned_crls(leaf_der, &issuers, crls).map_err(|reason| {
                    Rejection::new(RejectionKind::RevocationUnknown, reason, summary)
                })?;
            }
            Ok(anchor)
        }
        Err(error) => {
            let rejection = explain(&error, chain, &parsed_crls, summary);
            Err(find_issuer_key_problem(&rejection, intermediates).unwrap_or(rejection))
        }
    }
}

/// Returns the intermediates of a path that webpki accepted, once the key
/// usage of the leaf and of each intermediate allows the path (see
/// [`check_key_usage`]).
fn checked_issuers<'p>(
    leaf: &CertificateDer<'_>,
    path: &'p webpki::VerifiedPath<'p>,
    summary: Option<&CertificateSummary>,
) -> Result<Vec<CertificateDer<'p>>, Rejection> {
    let issuers: Vec<CertificateDer<'p>> = path
        .intermediate_certificates()
        .map(|cert| cert.der())
        .collect();
    check_key_usage(leaf, &issuers)
        .map_err(|reason| Rejection::new(RejectionKind::WrongUsage, reason, summary.cloned()))?;
    Ok(issuers)
}

/// Returns whether a rejection comes from a revocation check: a revoked
/// certificate, a status no CRL gives, or a CRL that cannot be used.
fn is_revocation_failure(kind: RejectionKind) -> bool {
    matches!(
        kind,
        RejectionKind::Revoked
            | RejectionKind::RevocationUnknown
            | RejectionKind::CrlExpired
            | RejectionKind::InvalidCrl
    )
}

/// Rejects a leaf whose public key the handshake's CertificateVerify check
/// would not accept.
fn check_leaf_key(
    leaf: &CertificateDer<'_>,
    summary: Option<&CertificateSummary>,
) -> Result<(), Rejection> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        // LeafInfo::parse has parsed this certificate already.
        return Ok(());
    };
    public_key::check_public_key(&cert, "leaf", signature_algorithms())
        .map_err(|(kind, reason)| Rejection::new(kind, reason, summary.cloned()))
}

/// Names an intermediate whose public key no accepted algorithm verifies
/// with, when webpki rejected the chain for a signature. webpki reports only
/// that a signature failed, and a 1024-bit RSA issuer key is a common cause
/// that the operator can fix.
fn find_issuer_key_problem(
    rejection: &Rejection,
    intermediates: &[CertificateDer<'_>],
) -> Option<Rejection> {
    if !matches!(
        rejection.kind,
        RejectionKind::BadSignature | RejectionKind::UnsupportedAlgorithm
    ) {
        return None;
    }
    intermediates.iter().find_map(|der| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let (kind, reason) =
            public_key::check_public_key(&cert, "intermediate", signature_algorithms()).err()?;
        Some(Rejection::new(kind, reason, rejection.leaf.clone()))
    })
}

/// Checks the key usage extension of the leaf and of the intermediates of a
/// path that webpki accepted (see the module documentation), and returns the
/// reason for a rejection. The trust anchor is not checked: an operator
/// trusts it as configured, as RFC 5280 §6.1 does.
fn check_key_usage(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), String> {
    let (_, leaf_usage) = read_key_usage(leaf)?;
    if leaf_usage.is_some_and(|usage| !usage.digital_signature()) {
        return Err(
            "the key usage of the leaf does not include digitalSignature, which a client \
             certificate needs to sign the TLS handshake"
                .to_owned(),
        );
    }

    for intermediate in intermediates {
        let (subject, usage) = read_key_usage(intermediate)?;
        if usage.is_some_and(|usage| !usage.key_cert_sign()) {
            return Err(format!(
                "the key usage of the intermediate {subject} does not include keyCertSign, so \
                 it may not issue certificates"
            ));
        }
    }
    Ok(())
}

/// Rejects a path in which a certificate without CRL distribution points is
/// covered only by CRLs that an issuingDistributionPoint limits to named
/// distribution points.
///
/// webpki treats such a CRL as covering every certificate of its issuer that
/// names no distribution point. RFC 5280 §5.2.5 and §6.3.3 (b)(2)(i) read it
/// as a partition that covers only certificates naming one of its points.
/// The status of such a certificate is then unknown, and an unknown status
/// is a rejection whenever CRLs are configured.
fn check_partitioned_crls(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    crls: &[CertificateRevocationListDer<'_>],
) -> Result<(), String> {
    if crls.is_empty() {
        return Ok(());
    }
    let parsed: Vec<_> = crls
        .iter()
        .filter_map(|der| x509_parser::parse_x509_crl(der).ok().map(|(_, crl)| crl))
        .collect();

    for der in std::iter::once(leaf).chain(intermediates) {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|error| format!("a certificate of the path is malformed: {error}"))?;
        let names_points = cert.extensions().iter().any(|extension| {
            matches!(
                extension.parsed_extension(),
                ParsedExtension::CRLDistributionPoints(_)
            )
        });
        if names_points {
            continue;
        }
        let mut covering = parsed
            .iter()
            .filter(|crl| crl.issuer().as_raw() == cert.issuer().as_raw())
            .peekable();
        if covering.peek().is_some() && covering.all(limited_to_named_points) {
            return Err(format!(
                "{} names no CRL distribution point, and every CRL of its issuer covers only \
                 the distribution points its issuingDistributionPoint names; configure a CRL \
                 of {} without a distribution point name",
                cert.subject(),
                cert.issuer()
            ));
        }
    }
    Ok(())
}

/// Returns whether a CRL's issuingDistributionPoint names distribution
/// points, which makes it a partition of its issuer's revocations.
fn limited_to_named_points(
    crl: &x509_parser::revocation_list::CertificateRevocationList<'_>,
) -> bool {
    crl.extensions().iter().any(|extension| {
        matches!(
            extension.parsed_extension(),
            ParsedExtension::IssuingDistributionPoint(point) if point.distribution_point.is_some()
        )
    })
}

/// Reads a certificate's subject and its key usage extension (`None` when
/// the extension is absent).
fn read_key_usage(der: &CertificateDer<'_>) -> Result<(String, Option<KeyUsageBits>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("a certificate of the path is malformed: {error}"))?;
    let subject = cert.subject().to_string();
    let usage = cert
        .key_usage()
        .map_err(|error| format!("invalid key usage in {subject}: {error}"))?;
    Ok((subject, usage.map(|usage| *usage.value)))
}

/// Returns the SHA-256 of a certificate's DER, base64url without padding:
/// the `x5t#S256` confirmation of RFC 8705 §3.1. It needs no parsing, so it
/// also identifies a certificate that fails verification.
pub fn thumbprint_sha256(certificate: &CertificateDer<'_>) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate);
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The CA certificates that client certificate chains may end at, each with
/// the owner a verified chain reports in [`VerifiedClient::anchor`].
///
/// Anchors are kept once per distinct webpki trust anchor (subject, public
/// key and name constraints). A CA certificate given several times, such as
/// a partner CA that two tenants trust, is one anchor whose owner is
/// [`AnchorOwner::Shared`] listing every owner. webpki reports only which
/// anchor a path ended at, and identical anchors are indistinguishable, so
/// reporting one of several owners would let one tenant's CA certify a
/// client of another tenant.
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
    /// The owner of `anchors[i]`, at the same position.
    owners: Vec<AnchorOwner>,
    /// Whether every owner of `anchors[i]` accepts its certificates without
    /// a revocation check, at the same position.
    revocation_unchecked: Vec<bool>,
    /// The names and keys of `anchors[i]` as x509-parser reads them, at the
    /// same position.
    keys: Vec<AnchorKey>,
}

/// The subject, public key and subject key identifier of a trust anchor's
/// certificate, each in DER with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnchorKey {
    subject: Vec<u8>,
    spki: Vec<u8>,
    key_id: Option<Vec<u8>>,
}

impl AnchorKey {
    fn read(certificate: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(certificate).map_err(|error| error.to_string())?;
        let key_id =
            cert.extensions()
                .iter()
                .find_map(|extension| match extension.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                    _ => None,
                });
        Ok(Self {
            subject: cert.subject().as_raw().to_vec(),
            spki: cert.public_key().raw.to_vec(),
            key_id,
        })
    }
}

impl TrustAnchors {
    /// Builds trust anchors from CA certificates in DER given by hand, each
    /// owned by [`AnchorOwner::Listed`] with its position.
    ///
    /// # Errors
    ///
    /// [`InvalidTrustAnchor`] naming the first certificate, counted from 0,
    /// that webpki cannot read as a trust anchor.
    pub fn from_certificates(
        certificates: &[CertificateDer<'_>],
    ) -> Result<Self, InvalidTrustAnchor> {
        let owned: Vec<(CertificateDer<'_>, AnchorOwner)> = certificates
            .iter()
            .enumerate()
            .map(|(index, certificate)| (certificate.clone(), AnchorOwner::Listed { index }))
            .collect();
        Self::from_owned_certificates(&owned)
    }

    /// Builds trust anchors from CA certificates in DER with their owners.
    /// Certificates that give the same webpki trust anchor are merged into
    /// one anchor owned by all of them (see the type's documentation).
    ///
    /// # Errors
    ///
    /// [`InvalidTrustAnchor`] naming the first certificate, counted from 0,
    /// that webpki cannot read as a trust anchor.
    pub fn from_owned_certificates(
        certificates: &[(CertificateDer<'_>, AnchorOwner)],
    ) -> Result<Self, InvalidTrustAnchor> {
        let checked: Vec<(CertificateDer<'_>, AnchorOwner, bool)> = certificates
            .iter()
            .map(|(certificate, owner)| (certificate.clone(), owner.clone(), false))
            .collect();
        Self::from_owned_certificates_with_revocation(&checked)
    }

    /// Builds trust anchors like [`Self::from_owned_certificates`], each
    /// with whether its owner accepts the certificates below it without a
    /// revocation check. A merged anchor is unchecked only when every one
    /// of its owners is, so one tenant's acknowledgement never turns off
    /// the check for another tenant that trusts the same CA.
    ///
    /// # Errors
    ///
    /// [`InvalidTrustAnchor`] naming the first certificate, counted from 0,
    /// that webpki cannot read as a trust anchor.
    pub fn from_owned_certificates_with_revocation(
        certificates: &[(CertificateDer<'_>, AnchorOwner, bool)],
    ) -> Result<Self, InvalidTrustAnchor> {
        let mut trust = Self::default();
        for (index, (certificate, owner, unchecked)) in certificates.iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(certificate).map_err(|error| {
                InvalidTrustAnchor {
                    index,
                    detail: describe_webpki_error(&error),
                }
            })?;
            let key = AnchorKey::read(certificate)
                .map_err(|detail| InvalidTrustAnchor { index, detail })?;
            let known = trust.anchors.iter().position(|known| *known == anchor);
            let known = known.and_then(|position| {
                let owner = trust.owners.get_mut(position)?;
                let unchecked = trust.revocation_unchecked.get_mut(position)?;
                Some((owner, unchecked))
            });
            match known {
                Some((known_owner, known_unchecked)) => {
                    known_owner.add(owner);
                    *known_unchecked &= *unchecked;
                }
                None => {
                    trust.anchors.push(anchor.to_owned());
                    trust.owners.push(owner.clone());
                    trust.revocation_unchecked.push(*unchecked);
                    trust.keys.push(key);
                }
            }
        }
        Ok(trust)
    }

    /// Returns the number of distinct trust anchors.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Returns whether there is no trust anchor, so every chain is rejected.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Returns the positions of the anchors whose subject is the issuer of a
    /// certificate of `chain`. Anchors whose subject key identifier matches
    /// that certificate's authority key identifier (RFC 5280 §4.2.1.1) come
    /// first. A mismatch only moves an anchor later, because the signature
    /// decides. Without any such anchor, every anchor is returned, so that
    /// webpki reports why no path exists.
    fn candidates(&self, chain: &[CertificateDer<'_>]) -> Vec<usize> {
        let issuers: Vec<(Vec<u8>, Option<Vec<u8>>)> = chain
            .iter()
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| (cert.issuer().as_raw().to_vec(), authority_key_id(&cert)))
            .collect();
        let mut matching = Vec::new();
        let mut other_key_id = Vec::new();
        for (position, key) in self.keys.iter().enumerate() {
            let named: Vec<&Option<Vec<u8>>> = issuers
                .iter()
                .filter(|(issuer, _)| *issuer == key.subject)
                .map(|(_, key_id)| key_id)
                .collect();
            if named.is_empty() {
                continue;
            }
            let key_id_differs = named.iter().all(|authority_key_id| {
                matches!((authority_key_id, &key.key_id), (Some(a), Some(s)) if a != s)
            });
            if key_id_differs {
                other_key_id.push(position);
            } else {
                matching.push(position);
            }
        }
        matching.extend(other_key_id);
        if matching.is_empty() {
            return (0..self.anchors.len()).collect();
        }
        matching
    }

    /// Returns the anchor at `position` alone, with its owner and keys.
    fn single(&self, position: usize) -> Self {
        let pick = |index: usize| index == position;
        Self {
            anchors: pick_at(&self.anchors, pick),
            owners: pick_at(&self.owners, pick),
            revocation_unchecked: pick_at(&self.revocation_unchecked, pick),
            keys: pick_at(&self.keys, pick),
        }
    }

    /// Returns whether any anchor accepts its certificates without a
    /// revocation check.
    fn any_revocation_unchecked(&self) -> bool {
        self.revocation_unchecked.contains(&true)
    }

    /// Returns whether an anchor that webpki returned from this list accepts
    /// its certificates without a revocation check.
    fn is_revocation_unchecked(&self, anchor: &TrustAnchor<'_>) -> bool {
        self.anchors
            .iter()
            .position(|known| known == anchor)
            .and_then(|position| self.revocation_unchecked.get(position))
            .is_some_and(|unchecked| *unchecked)
    }

    /// Finds the owner of an anchor that webpki returned from this list.
    fn owner_of(&self, anchor: &TrustAnchor<'_>) -> Option<AnchorOwner> {
        let position = self.anchors.iter().position(|known| known == anchor)?;
        self.owners.get(position).cloned()
    }
}

/// Returns the elements of `items` at the positions that `pick` accepts.
fn pick_at<T: Clone>(items: &[T], pick: impl Fn(usize) -> bool) -> Vec<T> {
    items
        .iter()
        .enumerate()
        .filter(|(index, _)| pick(*index))
        .map(|(_, item)| item.clone())
        .collect()
}

/// Returns the keyIdentifier of a certificate's authority key identifier.
fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                id.key_identifier.as_ref().map(|key_id| key_id.0.to_vec())
            }
            _ => None,
        })
}

/// The owner of the trust anchor that a verified chain ended at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnchorOwner {
    /// Portcullis's internal CA.
    InternalCa,
    /// A partner CA that an operator trusted for this tenant.
    Partner {
        /// The tenant whose clients the CA may certify.
        tenant_id: TenantId,
    },
    /// The trust anchor at this position of a list given by hand (certs
    /// verify --trust).
    Listed {
        /// Position in the list, from 0.
        index: usize,
    },
    /// One CA certificate with several owners, such as a partner CA trusted
    /// for two tenants. `owners` has at least two entries, none of them
    /// `Shared`, in the order the certificates were given.
    Shared {
        /// Every owner of the certificate.
        owners: Vec<Self>,
    },
}

impl AnchorOwner {
    /// Returns whether this is, or includes, a partner CA trusted for
    /// `tenant_id`.
    pub fn includes_tenant(&self, tenant_id: TenantId) -> bool {
        self.owners().contains(&Self::Partner { tenant_id })
    }

    /// Returns whether this is, or includes, the internal CA.
    pub fn includes_internal_ca(&self) -> bool {
        self.owners().contains(&Self::InternalCa)
    }

    /// Returns the single owners: the list of `Shared`, or this owner alone.
    pub fn owners(&self) -> &[Self] {
        match self {
            Self::Shared { owners } => owners,
            single => std::slice::from_ref(single),
        }
    }

    /// Adds another owner of the same anchor, turning this into `Shared`.
    fn add(&mut self, owner: &Self) {
        let mut owners = self.owners().to_vec();
        for owner in owner.owners() {
            if !owners.contains(owner) {
                owners.push(owner.clone());
            }
        }
        *self = if owners.len() == 1 {
            owners.remove(0)
        } else {
            Self::Shared { owners }
        };
    }
}

/// A CA certificate that cannot serve as a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trust anchor certificate {index} is invalid: {detail}")]
pub struct InvalidTrustAnchor {
    /// Position of the certificate in the list, from 0.
    pub index: usize,
    /// webpki's error.
    pub detail: String,
}

/// The leaf of a chain that [`verify_client_chain`] accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedClient {
    /// Serial number as lowercase hex without leading zero octets, the form
    /// the internal CA stores and its change feed reports
    /// ([`CertificateSerial`]).
    pub serial: String,
    /// Issuer distinguished name as x509-parser 0.18 formats it, such as
    /// `CN=Partner CA, O=Acme`.
    ///
    /// NOTE: the attributes are in the certificate's order, the reverse of
    /// the RFC 4514 string that RFC 8705 `tls_client_auth_subject_dn` uses.
    /// Matching a registered DN needs a comparison of parsed names.
    pub issuer: String,
    /// Subject distinguished name, written like `issuer`.
    pub subject: String,
    /// Subject alternative names of the kinds RFC 8705 maps to clients.
    pub subject_alt_names: Vec<SubjectAltName>,
    /// The owner of the trust anchor the verified path ended at. A client
    /// mapped from this certificate must belong to it: a partner CA
    /// certifies clients of its tenants only.
    pub anchor: AnchorOwner,
    /// SHA-256 of the certificate's DER, base64url without padding: the
    /// `x5t#S256` confirmation of RFC 8705 §3.1.
    pub thumbprint_sha256: String,
    /// End of the validity period.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// A subject alternative name that RFC 8705 §2.1.2 can match a client to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum SubjectAltName {
    /// `dNSName`.
    Dns(String),
    /// `uniformResourceIdentifier`.
    Uri(String),
    /// `iPAddress`.
    Ip(IpAddr),
    /// `rfc822Name`, an e-mail address.
    Email(String),
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => write!(f, "DNS:{name}"),
            Self::Uri(uri) => write!(f, "URI:{uri}"),
            Self::Ip(address) => write!(f, "IP:{address}"),
            Self::Email(address) => write!(f, "email:{address}"),
        }
    }
}

/// Serial and names of a rejected leaf, for the failure's audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateSummary {
    /// Serial number, written as in [`VerifiedClient::serial`].
    pub serial: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Subject distinguished name.
    pub subject: String,
}

/// A rejected client certificate chain: the kind of failure, a reason for
/// operators and the leaf's serial and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    reason: String,
    leaf: Option<CertificateSummary>,
}

impl Rejection {
    fn new(kind: RejectionKind, reason: String, leaf: Option<CertificateSummary>) -> Self {
        Self { kind, reason, leaf }
    }

    /// Builds the rejection of a verified leaf whose serial is in the set
    /// of revoked serials, for a revocation that no CRL lists yet.
    pub fn revoked_serial(client: &VerifiedClient) -> Self {
        let summary = CertificateSummary {
            serial: client.serial.clone(),
            issuer: client.issuer.clone(),
            subject: client.subject.clone(),
        };
        Self::new(
            RejectionKind::Revoked,
            format!("leaf certificate serial {} is revoked", client.serial),
            Some(summary),
        )
    }

    /// Builds the rejection of a leaf whose CertificateVerify signature
    /// (RFC 8446 §4.4.3) failed rustls's check with `error`, so the client
    /// did not prove that it has the leaf's private key.
    pub fn handshake_signature(leaf: &CertificateDer<'_>, error: &rustls::Error) -> Self {
        let summary = LeafInfo::parse(leaf).ok().map(|info| info.summary);
        Self::new(
            RejectionKind::BadSignature,
            format!(
                "the client's CertificateVerify signature does not verify with the leaf's public \
                 key: {error}"
            ),
            summary,
        )
    }

    /// Returns the kind of failure.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// Returns the stable snake_case code of the failure, such as `expired`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// Returns the reason for operators, naming the certificate at fault.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Returns the leaf's serial and names, or `None` when the leaf does not
    /// parse.
    pub fn leaf(&self) -> Option<&CertificateSummary> {
        self.leaf.as_ref()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.reason)
    }
}

impl std::error::Error for Rejection {}

/// The kinds of failure that [`Rejection::code`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A certificate's notAfter is before the verification time.
    Expired,
    /// A certificate's notBefore is after the verification time.
    NotYetValid,
    /// No path leads to a trust anchor, or the anchor list is empty.
    UnknownIssuer,
    /// The leaf's, or an intermediate's, extended key usage lacks
    /// clientAuth, the leaf's key usage lacks digitalSignature, or an
    /// intermediate's key usage lacks keyCertSign.
    WrongUsage,
    /// The leaf is a CA certificate (basicConstraints CA:TRUE).
    CaUsedAsLeaf,
    /// An issuing certificate lacks basicConstraints CA:TRUE.
    IntermediateNotCa,
    /// A CA's pathLenConstraint allows fewer intermediates than the path has.
    PathLengthExceeded,
    /// A CRL lists a certificate of the path.
    Revoked,
    /// A CA's name constraints exclude a name of a certificate below it.
    NameConstraintViolated,
    /// A signature does not verify with the issuer's public key.
    BadSignature,
    /// A signature or key algorithm is not in the accepted list, such as a
    /// key on a curve the handshake does not support or RSA above 8192 bits.
    UnsupportedAlgorithm,
    /// An RSA key is shorter than 2048 bits, the minimum the handshake
    /// verifies signatures with.
    WeakKey,
    /// CRLs were given but none covers a certificate of the path.
    RevocationUnknown,
    /// A CRL that covers the path is past its nextUpdate.
    CrlExpired,
    /// A CRL cannot be parsed, verified or used (delta, indirect, partitioned).
    InvalidCrl,
    /// The path search hit webpki's limits on depth or work.
    PathTooComplex,
    /// A certificate is not valid DER or has an invalid or unsupported
    /// extension.
    Malformed,
    /// A webpki error that this version does not classify.
    Other,
}

impl RejectionKind {
    /// Returns the stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::WrongUsage => "wrong_usage",
            Self::CaUsedAsLeaf => "ca_used_as_leaf",
            Self::IntermediateNotCa => "intermediate_not_ca",
            Self::PathLengthExceeded => "path_length_exceeded",
            Self::Revoked => "revoked",
            Self::NameConstraintViolated => "name_constraint_violated",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::WeakKey => "weak_key",
            Self::RevocationUnknown => "revocation_unknown",
            Self::CrlExpired => "crl_expired",
            Self::InvalidCrl => "invalid_crl",
            Self::PathTooComplex => "path_too_complex",
            Self::Malformed => "malformed",
            Self::Other => "rejected",
        }
    }
}

/// Classifies a webpki error.
fn classify(error: &webpki::Error) -> RejectionKind {
    use webpki::Error as E;

    #[expect(deprecated, reason = "webpki 0.103 may still return the old variants")]
    match error {
        E::CertExpired { .. } => RejectionKind::Expired,
        E::CertNotValidYet { .. } => RejectionKind::NotYetValid,
        E::UnknownIssuer | E::CertDistrusted => RejectionKind::UnknownIssuer,
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            RejectionKind::WrongUsage
        }
        E::CaUsedAsEndEntity => RejectionKind::CaUsedAsLeaf,
        E::EndEntityUsedAsCa => RejectionKind::IntermediateNotCa,
        E::PathLenConstraintViolated => RejectionKind::PathLengthExceeded,
        E::CertRevoked => RejectionKind::Revoked,
        E::NameConstraintViolation => RejectionKind::NameConstraintViolated,
        E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => {
            RejectionKind::BadSignature
        }
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            RejectionKind::UnsupportedAlgorithm
        }
        E::UnknownRevocationStatus => RejectionKind::RevocationUnknown,
        E::CrlExpired { .. } => RejectionKind::CrlExpired,
        E::InvalidCrlSignatureForPublicKey
        | E::IssuerNotCrlSigner
        | E::InvalidCrlNumber
        | E::UnsupportedCrlIssuingDistributionPoint
        | E::UnsupportedCrlVersion
        | E::UnsupportedDeltaCrl
        | E::UnsupportedIndirectCrl
        | E::UnsupportedRevocationReason
        | E::UnsupportedRevocationReasonsPartitioning
        | E::UnsupportedCrlSignatureAlgorithm
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => RejectionKind::InvalidCrl,
        E::MaximumPathDepthExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumSignatureChecksExceeded
        | E::MaximumNameConstraintComparisonsExceeded => RejectionKind::PathTooComplex,
        E::BadDer
        | E::BadDerTime
        | E::TrailingData(_)
        | E::ExtensionValueInvalid
        | E::InvalidCertValidity
        | E::InvalidNetworkMaskConstraint
        | E::InvalidSerialNumber
        | E::MalformedDnsIdentifier
        | E::MalformedExtensions
        | E::MalformedNameConstraint
        | E::UnsupportedCertVersion
        | E::UnsupportedCriticalExtension
        | E::UnsupportedNameType => RejectionKind::Malformed,
        _ => RejectionKind::Other,
    }
}

/// Turns webpki's error into a rejection whose reason names the certificate
/// at fault where webpki's error allows it.
fn explain(
    error: &webpki::Error,
    chain: &[CertificateDer<'_>],
    crls: &[CertRevocationList<'_>],
    leaf: Option<CertificateSummary>,
) -> Rejection {
    let kind = classify(error);
    let reason = match (kind, error) {
        (_, webpki::Error::CertExpired { not_after, .. }) => {
            let certificate = describe_by_time(chain, *not_after, |cert| cert.not_after);
            format!("{certificate} expired at {}", format_unix_time(*not_after))
        }
        (_, webpki::Error::CertNotValidYet { not_before, .. }) => {
            let certificate = describe_by_time(chain, *not_before, |cert| cert.not_before);
            format!(
                "{certificate} is not valid before {}",
                format_unix_time(*not_before)
            )
        }
        (RejectionKind::Revoked, _) => describe_revoked(chain, crls),
        (RejectionKind::UnknownIssuer, webpki::Error::CertDistrusted) => {
            "a certificate in the path has a public key that webpki distrusts".to_owned()
        }
        (RejectionKind::UnknownIssuer, _) => {
            "no path from the leaf to a trusted CA certificate was found".to_owned()
        }
        (RejectionKind::WrongUsage, _) => {
            "the extended key usage of the leaf or an intermediate does not include clientAuth"
                .to_owned()
        }
        (RejectionKind::CaUsedAsLeaf, _) => {
            "the leaf is a CA certificate (basicConstraints CA:TRUE)".to_owned()
        }
        (RejectionKind::IntermediateNotCa, _) => {
            "an issuing certificate is not a CA (basicConstraints CA:TRUE is missing)".to_owned()
        }
        (RejectionKind::PathLengthExceeded, _) => {
            "the path has more intermediates than a CA's pathLenConstraint allows".to_owned()
        }
        (RejectionKind::NameConstraintViolated, _) => {
            "a name in the leaf is outside a CA's name constraints".to_owned()
        }
        (RejectionKind::BadSignature, _) => {
            "a certificate's signature does not verify with its issuer's public key".to_owned()
        }
        (RejectionKind::RevocationUnknown, _) => {
            "no given CRL covers a certificate of the path (issuer and distribution point)"
                .to_owned()
        }
        (RejectionKind::CrlExpired, _) => {
            "a CRL covering the path is past its nextUpdate".to_owned()
        }
        (_, other) => format!("the chain is rejected: {}", describe_webpki_error(other)),
    };
    Rejection::new(kind, reason, leaf)
}

/// Describes a webpki error in words, for the errors that a certificate or
/// CRL can cause before or outside path building. Errors without a
/// description here keep webpki's name, which is still better than none.
pub fn describe_webpki_error(error: &webpki::Error) -> String {
    use webpki::Error as E;

    #[expect(deprecated, reason = "webpki 0.103 may still return the old variants")]
    let text = match error {
        E::BadDer => "it is not valid DER",
        E::BadDerTime => "a time in it is not valid DER",
        E::TrailingData(_) => "it has bytes after the end of its DER structure",
        E::ExtensionValueInvalid => "an extension has an invalid value",
        E::InvalidCertValidity => "its validity period ends before it starts",
        E::InvalidSerialNumber => {
            "its serial number is not a positive integer of at most 20 octets"
        }
        E::MalformedExtensions => {
            "its extensions are malformed: an extension repeats, cannot be parsed, or sets a \
             flag that RFC 5280 forbids (such as onlyContainsAttributeCerts in a CRL)"
        }
        E::MalformedNameConstraint => "a name constraint is malformed",
        E::MalformedDnsIdentifier => "a DNS name in it is malformed",
        E::UnsupportedCertVersion => "it is not an X.509 version 3 certificate",
        E::UnsupportedCriticalExtension => "it has a critical extension that is not supported",
        E::UnsupportedNameType => "it has a name of a type that is not supported",
        E::InvalidCrlNumber => "its CRL number is not a positive integer of at most 20 octets",
        E::InvalidCrlSignatureForPublicKey => {
            "its signature does not verify with the public key of its issuer"
        }
        E::IssuerNotCrlSigner => "the key usage of its issuer does not include cRLSign",
        E::UnsupportedCrlIssuingDistributionPoint => {
            "its issuingDistributionPoint names no distribution point or names one relative \
             to the issuer; only a full name (such as a URI) is supported"
        }
        E::UnsupportedCrlVersion => "it is not a version 2 CRL",
        E::UnsupportedDeltaCrl => "it is a delta CRL, and only complete CRLs are supported",
        E::UnsupportedIndirectCrl => "it is an indirect CRL, which is not supported",
        E::UnsupportedRevocationReason => "an entry has a revocation reason that is not defined",
        E::UnsupportedRevocationReasonsPartitioning => {
            "it covers only some revocation reasons (onlySomeReasons), which is not supported"
        }
        E::UnsupportedCrlSignatureAlgorithm
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKey
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => {
            "its signature algorithm is not supported"
        }
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a signature or public key algorithm in it is not supported"
        }
        other => return format!("webpki error {other:?}"),
    };
    text.to_owned()
}

/// Parses each CRL, or rejects the whole verification naming the first CRL
/// that fails.
fn parse_crls<'a>(
    crls: &'a [CertificateRevocationListDer<'_>],
    leaf: Option<&CertificateSummary>,
) -> Result<Vec<CertRevocationList<'a>>, Rejection> {
    crls.iter()
        .enumerate()
        .map(|(index, der)| {
            BorrowedCertRevocationList::from_der(der)
                .map(CertRevocationList::from)
                .map_err(|error| {
                    Rejection::new(
                        RejectionKind::InvalidCrl,
                        format!(
                            "CRL {index} cannot be used: {}",
                            describe_webpki_error(&error)
                        ),
                        leaf.cloned(),
                    )
                })
        })
        .collect()
}

/// Finds the revoked certificate of the chain, the leaf first, and names its
/// serial and the revocation reason.
///
/// webpki reports only that the path is revoked, so the serial of each
/// certificate is looked up in the CRLs of its issuer.
fn describe_revoked(chain: &[CertificateDer<'_>], crls: &[CertRevocationList<'_>]) -> String {
    for (position, der) in chain.iter().enumerate() {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        for crl in crls.iter().filter(|crl| issued_by_issuer_of(crl, &cert)) {
            let Ok(Some(entry)) = crl.find_serial(cert.raw_serial()) else {
                continue;
            };
            let role = if position == 0 {
                "leaf"
            } else {
                "intermediate"
            };
            let reason = entry
                .reason_code
                .map(|code| format!(", reason {code:?}"))
                .unwrap_or_default();
            return format!(
                "{role} certificate serial {} ({}) is revoked{reason}",
                CertificateSerial::from_bytes(cert.raw_serial()),
                cert.subject()
            );
        }
    }
    "a certificate of the path is revoked".to_owned()
}

/// Returns whether `crl` names the issuer of `cert`. webpki stores the CRL's
/// issuer Name without its DER header and x509-parser keeps the header, so the
/// header is stripped before comparing.
fn issued_by_issuer_of(crl: &CertRevocationList<'_>, cert: &X509Certificate<'_>) -> bool {
    match Any::from_der(cert.issuer().as_raw()) {
        Ok((_, name)) => name.data == crl.issuer(),
        Err(_) => false,
    }
}

/// Validity period of one certificate, in seconds since the Unix epoch.
struct Validity {
    not_before: i64,
    not_after: i64,
}

/// Names the first certificate of `chain` whose `field` equals `time`, such
/// as "leaf certificate (CN=svc)". webpki's time errors carry the time but
/// not the certificate.
fn describe_by_time(
    chain: &[CertificateDer<'_>],
    time: UnixTime,
    field: impl Fn(&Validity) -> i64,
) -> String {
    let expected = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    for (position, der) in chain.iter().enumerate() {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            continue;
        };
        let validity = Validity {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        };
        if field(&validity) == expected {
            let role = if position == 0 {
                "leaf"
            } else {
                "intermediate"
            };
            return format!("{role} certificate ({})", cert.subject());
        }
    }
    "a certificate of the path".to_owned()
}

/// Formats a webpki time as RFC 3339, or as seconds when out of range.
fn format_unix_time(time: UnixTime) -> String {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{} seconds after the Unix epoch", time.as_secs()))
}

/// The leaf's fields that a verdict reports, read before path validation so
/// that a rejection can name the serial and issuer too.
struct LeafInfo {
    summary: CertificateSummary,
    subject_alt_names: Vec<SubjectAltName>,
    thumbprint_sha256: String,
    not_after: OffsetDateTime,
}

impl LeafInfo {
    fn parse(der: &CertificateDer<'_>) -> Result<Self, Rejection> {
        let malformed = |detail: String| {
            Rejection::new(
                RejectionKind::Malformed,
                format!("the leaf certificate is malformed: {detail}"),
                None,
            )
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|error| malformed(error.to_string()))?;
        let summary = CertificateSummary {
            serial: CertificateSerial::from_bytes(cert.raw_serial())
                .as_str()
                .to_owned(),
            issuer: cert.issuer().to_string(),
            subject: cert.subject().to_string(),
        };
        let subject_alt_names = read_subject_alt_names(&cert).map_err(|detail| Rejection {
            leaf: Some(summary.clone()),
            ..malformed(detail)
        })?;

        Ok(Self {
            summary,
            subject_alt_names,
            thumbprint_sha256: thumbprint_sha256(der),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }

    fn summary(&self) -> CertificateSummary {
        self.summary.clone()
    }

    fn into_verified(self, anchor: AnchorOwner) -> VerifiedClient {
        VerifiedClient {
            serial: self.summary.serial,
            issuer: self.summary.issuer,
            subject: self.summary.subject,
            subject_alt_names: self.subject_alt_names,
            anchor,
            thumbprint_sha256: self.thumbprint_sha256,
            not_after: self.not_after,
        }
    }
}

/// Reads the DNS, URI, IP and e-mail subject alternative names. Other kinds
/// (directory names, other names) are skipped: RFC 8705 maps none of them.
fn read_subject_alt_names(cert: &X509Certificate<'_>) -> Result<Vec<SubjectAltName>, String> {
    let extension = cert
        .subject_alternative_name()
        .map_err(|error| format!("invalid subjectAltName: {error}"))?;
    let Some(extension) = extension else {
        return Ok(Vec::new());
    };

    let mut names = Vec::new();
    for name in &extension.value.general_names {
        let name = match name {
            GeneralName::DNSName(dns) => SubjectAltName::Dns((*dns).to_owned()),
            GeneralName::URI(uri) => SubjectAltName::Uri((*uri).to_owned()),
            GeneralName::RFC822Name(email) => SubjectAltName::Email((*email).to_owned()),
            GeneralName::IPAddress(octets) => match ip_from_octets(octets) {
                Some(address) => SubjectAltName::Ip(address),
                None => return Err(format!("invalid iPAddress of {} octets", octets.len())),
            },
            _ => continue,
        };
        names.push(name);
    }
    Ok(names)
}

fn ip_from_octets(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
}

mod public_key;
#[cfg(test)]
mod tests;
