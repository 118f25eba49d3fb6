//! The rustls client certificate verifier of the listener.
//!
//! [`HandshakeVerifier`] decides with [`verify_client_chain`], against the
//! same anchors and CRLs as the verdict that requests carry, so the
//! handshake and the application cannot disagree on a chain. The
//! CertificateVerify signature, which proves that the client has the
//! leaf's private key, is checked by rustls's own functions in every mode.
//!
//! - `optional`: every presented chain passes this verifier. The verdict
//!   travels with the connection in
//!   [`ClientCertificate::verdict`](crate::listener::ClientCertificate), and
//!   the application rejects a failed one.
//! - `required`: the chain must verify, except a single self-signed
//!   certificate whose public key is in [`SelfSignedKeys`], which RFC 8705
//!   §2.2 `self_signed_tls_client_auth` clients present. Any other failure
//!   ends the handshake with the TLS alert of its kind.
//!
//! In both modes a rejection is handed to the connection task through
//! [`capture_rejection`], so that a handshake that then fails is recorded
//! with it. A rejected chain can still end an `optional` handshake: a leaf
//! whose key is too weak for the CertificateVerify check fails there. A
//! CertificateVerify signature that does not verify is a rejection too.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use super::verify::{Rejection, RejectionKind, TrustAnchors, verify_client_chain};

/// SHA-256 digests of the SubjectPublicKeyInfo of self-signed certificates
/// that registered clients may present where chains are required.
///
/// The set is shared by every rebuilt verifier, so replacing it reaches the
/// next handshake.
#[derive(Debug, Clone, Default)]
pub struct SelfSignedKeys {
    digests: Arc<ArcSwap<HashSet<[u8; 32]>>>,
}

impl SelfSignedKeys {
    /// Replaces the set of accepted public key digests.
    pub fn set(&self, digests: HashSet<[u8; 32]>) {
        self.digests.store(Arc::new(digests));
    }

    /// Returns whether `certificate` is self-signed (issuer equal to
    /// subject) and its public key is in the set. A certificate that does
    /// not parse is not.
    pub fn accepts(&self, certificate: &CertificateDer<'_>) -> bool {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate) else {
            return false;
        };
        if parsed.issuer().as_raw() != parsed.subject().as_raw() {
            return false;
        }
        let digest = spki_sha256(parsed.public_key().raw);
        self.digests.load().contains(&digest)
    }
}

/// Returns the SHA-256 of a DER SubjectPublicKeyInfo.
pub fn spki_sha256(spki: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    let mut output = [0; 32];
    output.copy_from_slice(digest.as_ref());
    output
}

tokio::task_local! {
    /// The rejection of the certificate in the handshake that the current
    /// task runs, set by [`HandshakeVerifier`].
    static HANDSHAKE_REJECTION: RefCell<Option<Rejection>>;
}

/// Runs a handshake future and returns its output with the rejection that
/// [`HandshakeVerifier`] stored while it ran, if any. The verifier has no
/// access to the connection, so the connection task reads the rejection
/// from here to record it.
pub async fn capture_rejection<F: Future>(handshake: F) -> (F::Output, Option<Rejection>) {
    HANDSHAKE_REJECTION
        .scope(RefCell::new(None), async {
            let output = handshake.await;
            let rejection = HANDSHAKE_REJECTION.with(|slot| slot.borrow_mut().take());
            (output, rejection)
        })
        .await
}

/// Stores the rejection of the current handshake, unless one is stored
/// already: the chain's verdict names the cause better than the signature
/// check that fails after it.
fn store_rejection(rejection: Rejection) {
    // Outside `capture_rejection` there is no slot, and the rejection still
    // ends the handshake.
    let _ = HANDSHAKE_REJECTION.try_with(|slot| {
        slot.borrow_mut().get_or_insert(rejection);
    });
}

/// Stores the rejection of a CertificateVerify signature that failed.
fn reject_signature<T>(
    certificate: &CertificateDer<'_>,
    result: Result<T, rustls::Error>,
) -> Result<T, rustls::Error> {
    if let Err(error) = &result {
        store_rejection(Rejection::handshake_signature(certificate, error));
    }
    result
}

/// The listener's [`ClientCertVerifier`] for one trust snapshot.
#[derive(Debug)]
pub struct HandshakeVerifier {
    mandatory: bool,
    anchors: TrustAnchors,
    crls: Vec<CertificateRevocationListDer<'static>>,
    root_hints: Vec<DistinguishedName>,
    self_signed: SelfSignedKeys,
    algorithms: WebPkiSupportedAlgorithms,
}

impl HandshakeVerifier {
    /// Builds the verifier. `root_hints` are the subjects sent in the
    /// CertificateRequest so that clients pick a matching certificate.
    pub fn new(
        mandatory: bool,
        anchors: TrustAnchors,
        crls: Vec<CertificateRevocationListDer<'static>>,
        root_hints: Vec<DistinguishedName>,
        self_signed: SelfSignedKeys,
    ) -> Self {
        Self {
            mandatory,
            anchors,
            crls,
            root_hints,
            self_signed,
            algorithms: crate::tls::provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for HandshakeVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(intermediates.len() + 1);
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());

        let Err(rejection) = verify_client_chain(&chain, &self.anchors, &self.crls, now) else {
            return Ok(ClientCertVerified::assertion());
        };
        if intermediates.is_empty() && self.self_signed.accepts(end_entity) {
            return Ok(ClientCertVerified::assertion());
        }

        let error = rustls::Error::InvalidCertificate(certificate_error(rejection.kind()));
        store_rejection(rejection);
        if !self.mandatory {
            return Ok(ClientCertVerified::assertion());
        }
        Err(error)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let result = rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.algorithms,
        );
        reject_signature(certificate, result)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let result = rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.algorithms,
        );
        reject_signature(certificate, result)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Maps a rejection to the rustls error whose alert (RFC 8446 §6.2) names
/// the failure to the client.
fn certificate_error(kind: RejectionKind) -> CertificateError {
    match kind {
        RejectionKind::Expired => CertificateError::Expired,
        RejectionKind::NotYetValid => CertificateError::NotValidYet,
        RejectionKind::UnknownIssuer => CertificateError::UnknownIssuer,
        RejectionKind::Revoked => CertificateError::Revoked,
        RejectionKind::WrongUsage => CertificateError::InvalidPurpose,
        RejectionKind::BadSignature => CertificateError::BadSignature,
        RejectionKind::Malformed => CertificateError::BadEncoding,
        RejectionKind::RevocationUnknown => CertificateError::UnknownRevocationStatus,
        RejectionKind::CrlExpired => CertificateError::ExpiredRevocationList,
        _ => CertificateError::ApplicationVerificationFailure,
    }
}
