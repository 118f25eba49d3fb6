//! Whether the TLS handshake can verify signatures made with a
//! certificate's public key.
//!
//! A client proves that it has its leaf's private key with the
//! CertificateVerify signature (RFC 8446 §4.4.3), which rustls checks with
//! the same aws-lc-rs algorithms that path validation uses. A key that none
//! of them accepts passes path validation, because only the issuer's key
//! verifies a certificate, and then fails the handshake with
//! `decrypt_error`. Checking the key here gives `certs verify`, the
//! forwarded-certificate path and the listener the same verdict, with a
//! reason an operator can act on.

use std::ops::RangeInclusive;

use rustls_pki_types::SignatureVerificationAlgorithm;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, FromDer};
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::public_key::PublicKey;

use super::RejectionKind;
use crate::clients::modulus_bits;

/// RSA modulus sizes, in bits, that rustls 0.23's aws-lc-rs provider
/// verifies signatures with: its RSA algorithms are the
/// `RSA_PKCS1_2048_8192_*` and `RSA_PSS_2048_8192_*` ones.
const HANDSHAKE_RSA_MODULUS_BITS: RangeInclusive<usize> = 2048..=8192;

/// Checks that one of `algorithms` verifies signatures made with the public
/// key of `cert`, and for RSA that the modulus size is in
/// [`HANDSHAKE_RSA_MODULUS_BITS`]. `role` names the certificate in the
/// reason, such as "leaf".
///
/// # Errors
///
/// [`RejectionKind::WeakKey`] for an RSA key below 2048 bits, and
/// [`RejectionKind::UnsupportedAlgorithm`] for any other key that the
/// algorithms do not accept, each with a reason for operators.
pub(super) fn check_public_key(
    cert: &X509Certificate<'_>,
    role: &str,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<(), (RejectionKind, String)> {
    let spki = cert.public_key();
    let subject = cert.subject();
    if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err((
                RejectionKind::Malformed,
                format!("the RSA public key of the {role} ({subject}) cannot be parsed"),
            ));
        };
        let bits = modulus_bits(rsa.modulus);
        if bits < *HANDSHAKE_RSA_MODULUS_BITS.start() {
            return Err((
                RejectionKind::WeakKey,
                format!(
                    "the {role} ({subject}) has an RSA key of {bits} bits; at least {} are \
                     required",
                    HANDSHAKE_RSA_MODULUS_BITS.start()
                ),
            ));
        }
        if bits > *HANDSHAKE_RSA_MODULUS_BITS.end() {
            return Err((
                RejectionKind::UnsupportedAlgorithm,
                format!(
                    "the {role} ({subject}) has an RSA key of {bits} bits; the TLS handshake \
                     verifies RSA keys of at most {} bits",
                    HANDSHAKE_RSA_MODULUS_BITS.end()
                ),
            ));
        }
    }

    // webpki compares the contents of the SubjectPublicKeyInfo's
    // AlgorithmIdentifier (key type and, for EC, the curve) with each
    // algorithm's `public_key_alg_id`, so this check does the same.
    let algorithm_id = algorithm_identifier_contents(spki.raw);
    let accepted = algorithm_id.is_some_and(|id| {
        algorithms
            .iter()
            .any(|algorithm| algorithm.public_key_alg_id().as_ref() == id)
    });
    if accepted {
        return Ok(());
    }
    Err((
        RejectionKind::UnsupportedAlgorithm,
        format!(
            "the {role} ({subject}) has {}, which the TLS handshake cannot verify; use RSA \
             of 2048 to 8192 bits, ECDSA on P-256, P-384 or P-521, or Ed25519",
            describe_key(cert)
        ),
    ))
}

/// Returns the DER contents of the AlgorithmIdentifier of a DER
/// SubjectPublicKeyInfo, without its SEQUENCE tag and length.
fn algorithm_identifier_contents(spki: &[u8]) -> Option<&[u8]> {
    let (_, outer) = Any::from_der(spki).ok()?;
    let (_, algorithm) = Any::from_der(outer.data).ok()?;
    Some(algorithm.data)
}

/// Describes the key of `cert` for a reason: the curve of an EC key, the
/// algorithm OID of any other.
fn describe_key(cert: &X509Certificate<'_>) -> String {
    let algorithm = &cert.public_key().algorithm;
    if algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return format!("a key of algorithm {}", algorithm.algorithm);
    }
    let curve = algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.as_oid().ok());
    match curve {
        Some(curve) => format!("an EC key on curve {curve}"),
        None => "an EC key without a named curve".to_owned(),
    }
}
