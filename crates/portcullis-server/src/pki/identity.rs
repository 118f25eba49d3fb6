//! Whether a presented client certificate authenticates a given OAuth
//! client (RFC 8705 §2).
//!
//! - `tls_client_auth` (§2.1): the chain verified, the trust anchor that
//!   vouched for it may speak for the client's tenant, and the registered
//!   subject matches. A certificate of the internal CA must also be one the
//!   CA issued to this very client, so a registration that copies another
//!   client's SAN URI gains nothing. A name that the internal CA writes
//!   (its SAN URI or the subject DN `CN=<client id>`) maps only from a
//!   certificate of the internal CA.
//! - `self_signed_tls_client_auth` (§2.2): no chain is needed. The leaf's
//!   public key must be one of the client's registered JWKS keys, compared
//!   as key material, and the leaf must be within its validity period.
//!
//! [`maintain_self_signed_keys`] gives the listener the public keys of
//! registered self-signed certificates, so that a listener that requires
//! client certificates lets them complete the handshake.
//!
//! Both rely on the TLS handshake having proved that the client has the
//! leaf's private key (the CertificateVerify message), or on a trusted
//! proxy having checked it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::ids::ClientId;
use portcullis_core::oauth::tls_subject::{Attribute, AttributeValue, DistinguishedName};
use portcullis_core::oauth::{ClientAuthMethod, ClientRecord, TlsClientAuthSubject};
use portcullis_store::{Store, StoreError};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::ToDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::handshake::spki_sha256;
use super::trust::ClientCertificateTrust;
use super::verify::{SubjectAltName, VerifiedClient};
use crate::telemetry::ErrorChain;

/// How often the keys of `self_signed_tls_client_auth` clients are reloaded
/// for the handshake. A new client's certificate completes a `required`
/// handshake within this time, and a revoked client's stops doing so.
pub const SELF_SIGNED_KEYS_REFRESH: Duration = Duration::from_secs(5);

/// DER of a P-256 SubjectPublicKeyInfo up to the point: the algorithm
/// (id-ecPublicKey, prime256v1) and the BIT STRING header (RFC 5480 §2).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key (RFC 8410 §4).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER of the rsaEncryption AlgorithmIdentifier, with its NULL parameters
/// (RFC 8017 Appendix C).
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// OID of id-ecPublicKey (RFC 5480 §2.1.1).
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";

/// OID of the P-256 curve, secp256r1 (RFC 5480 §2.1.1.1).
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// OID of Ed25519 keys (RFC 8410 §3).
const ED25519_OID: &str = "1.3.101.112";

/// OID of rsaEncryption (RFC 8017 Appendix C).
const RSA_OID: &str = "1.2.840.113549.1.1.1";

/// The reason a certificate does not authenticate a client. [`Self::code`]
/// is the stable code of the failure's audit record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateMismatch {
    /// The client does not authenticate with a certificate.
    #[error("the client is registered for {0}, not for a certificate method")]
    WrongMethod(ClientAuthMethod),
    /// The anchor may not vouch for clients of the client's tenant.
    #[error("the certificate's CA is not trusted for the client's tenant")]
    AnchorNotTrusted,
    /// No SAN or subject DN equals the registered value.
    #[error("the certificate's subject does not match the registered {0}")]
    SubjectMismatch(&'static str),
    /// The client is mapped by a URI of the internal CA's namespace, and
    /// another CA issued the certificate.
    #[error(
        "the client is mapped by an urn:portcullis:client: URI, which only the internal CA \
         may certify; register the partner certificate's own subject or SAN instead"
    )]
    InternalNamespace,
    /// The client is mapped by the subject DN `CN=<client id>` that the
    /// internal CA writes, and another CA issued the certificate.
    #[error(
        "the client is mapped by the subject DN CN=<client id>, which only the internal CA \
         may certify; register the partner certificate's own subject or SAN instead"
    )]
    InternalSubjectDn,
    /// The internal CA issued the certificate to another client, or has no
    /// record of it.
    #[error("the internal CA did not issue this certificate to the client")]
    NotIssuedToClient,
    /// The leaf's key is not in the client's JWKS.
    #[error("the certificate's public key is not in the client's registered JWKS")]
    KeyNotRegistered,
    /// The leaf's notAfter has passed.
    #[error("the certificate expired")]
    Expired,
    /// The leaf's notBefore has not come yet.
    #[error("the certificate is not valid yet")]
    NotYetValid,
    /// The leaf does not parse.
    #[error("the certificate is malformed")]
    Malformed,
}

impl CertificateMismatch {
    /// Returns the stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::WrongMethod(_) => "wrong_auth_method",
            Self::AnchorNotTrusted => "anchor_not_trusted_for_tenant",
            Self::SubjectMismatch(_) => "subject_mismatch",
            Self::InternalNamespace => "internal_namespace_uri",
            Self::InternalSubjectDn => "internal_subject_dn",
            Self::NotIssuedToClient => "not_issued_to_client",
            Self::KeyNotRegistered => "key_not_registered",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Malformed => "malformed",
        }
    }
}

/// Checks that a verified certificate authenticates a `tls_client_auth`
/// client (RFC 8705 §2.1).
///
/// The anchor that vouched for the chain must be a partner CA trusted for
/// the client's tenant, or the internal CA. For the internal CA,
/// `issued_to` must name the client: it is the client that the CA's
/// records name for the certificate's serial and thumbprint.
///
/// # Errors
///
/// The first rule the certificate fails.
pub fn check_tls_client_auth(
    client: &ClientRecord,
    leaf_der: &[u8],
    verified: &VerifiedClient,
    issued_to: Option<ClientId>,
) -> Result<(), CertificateMismatch> {
    if client.auth_method != ClientAuthMethod::TlsClientAuth {
        return Err(CertificateMismatch::WrongMethod(client.auth_method));
    }
    // A partner CA speaks only for the tenants that trust it. An anchor
    // that is also the internal CA is held to the stricter rule below.
    let anchor = &verified.anchor;
    if anchor.includes_internal_ca() {
        if issued_to != Some(client.id) {
            return Err(CertificateMismatch::NotIssuedToClient);
        }
    } else if !anchor.includes_tenant(client.tenant_id) {
        return Err(CertificateMismatch::AnchorNotTrusted);
    }

    let Some(registered) = &client.tls_client_auth_subject else {
        return Err(CertificateMismatch::SubjectMismatch("subject"));
    };
    // An identity that the internal CA writes maps only through a chain
    // that ends at the internal CA, because a partner CA can write the same
    // names into a leaf. The CA writes the SAN URI `urn:portcullis:client:<id>`
    // and the subject DN `CN=<id>`, and `check_issuable` signs for a client
    // mapped by either. Registration follows the same rule: a new client has
    // no id when its subject is checked, so it rejects every URI of the
    // namespace, and it can never register `CN=<its own id>`.
    if !anchor.includes_internal_ca() {
        if let TlsClientAuthSubject::SanUri(uri) = registered
            && super::ca::in_client_uri_namespace(uri)
        {
            return Err(CertificateMismatch::InternalNamespace);
        }
        if super::ca::is_client_subject_dn(registered, client.id) {
            return Err(CertificateMismatch::InternalSubjectDn);
        }
    }
    let matched = match registered {
        TlsClientAuthSubject::SubjectDn(_) => {
            let subject = subject_name(leaf_der)?;
            registered.matches_subject(&subject)
        }
        _ => verified.subject_alt_names.iter().any(|name| match name {
            SubjectAltName::Dns(dns) => registered.matches_dns(dns),
            SubjectAltName::Uri(uri) => registered.matches_uri(uri),
            SubjectAltName::Ip(address) => registered.matches_ip(*address),
            SubjectAltName::Email(address) => registered.matches_email(address),
        }),
    };
    if !matched {
        return Err(CertificateMismatch::SubjectMismatch(
            registered.kind().as_str(),
        ));
    }
    Ok(())
}

/// Checks that a certificate, verified or not, authenticates a
/// `self_signed_tls_client_auth` client at `now` (RFC 8705 §2.2).
///
/// # Errors
///
/// The first rule the certificate fails.
pub fn check_self_signed(
    client: &ClientRecord,
    leaf_der: &[u8],
    now: OffsetDateTime,
) -> Result<(), CertificateMismatch> {
    if client.auth_method != ClientAuthMethod::SelfSignedTlsClientAuth {
        return Err(CertificateMismatch::WrongMethod(client.auth_method));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|_| CertificateMismatch::Malformed)?;
    let validity = cert.validity();
    if now.unix_timestamp() < validity.not_before.timestamp() {
        return Err(CertificateMismatch::NotYetValid);
    }
    if now.unix_timestamp() > validity.not_after.timestamp() {
        return Err(CertificateMismatch::Expired);
    }

    let presented = key_material(cert.public_key()).ok_or(CertificateMismatch::KeyNotRegistered)?;
    let registered = registered_keys(client.jwks.as_deref());
    if registered.contains(&presented) {
        Ok(())
    } else {
        Err(CertificateMismatch::KeyNotRegistered)
    }
}

/// Public key material in one comparable form per key type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyMaterial {
    /// A P-256 point, uncompressed: `04 || x || y`.
    P256(Vec<u8>),
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
    /// An RSA modulus and exponent, without leading zero octets.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
}

/// Reads the key of a certificate's SubjectPublicKeyInfo, for the key
/// types a client JWKS may hold.
fn key_material(spki: &SubjectPublicKeyInfo<'_>) -> Option<KeyMaterial> {
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        EC_PUBLIC_KEY_OID => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .map(|oid| oid.to_id_string());
            (curve.as_deref() == Some(P256_OID))
                .then(|| KeyMaterial::P256(spki.subject_public_key.data.to_vec()))
        }
        ED25519_OID => Some(KeyMaterial::Ed25519(spki.subject_public_key.data.to_vec())),
        RSA_OID => match spki.parsed().ok()? {
            PublicKey::RSA(rsa) => Some(KeyMaterial::Rsa {
                modulus: strip_leading_zeros(rsa.modulus),
                exponent: strip_leading_zeros(rsa.exponent),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// Reads the keys of a registered JWKS. The JWKS was checked when it was
/// registered, so a key that does not read here is skipped.
fn registered_keys(jwks: Option<&str>) -> Vec<KeyMaterial> {
    let Some(document) = jwks.and_then(|text| serde_json::from_str::<Value>(text).ok()) else {
        return Vec::new();
    };
    let Some(keys) = document.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter().filter_map(jwk_material).collect()
}

fn jwk_material(key: &Value) -> Option<KeyMaterial> {
    let member = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
    };
    match (
        key.get("kty").and_then(Value::as_str)?,
        key.get("crv").and_then(Value::as_str),
    ) {
        ("EC", Some("P-256")) => {
            let mut point = vec![0x04];
            point.extend(member("x")?);
            point.extend(member("y")?);
            Some(KeyMaterial::P256(point))
        }
        ("OKP", Some("Ed25519")) => Some(KeyMaterial::Ed25519(member("x")?)),
        ("RSA", _) => Some(KeyMaterial::Rsa {
            modulus: strip_leading_zeros(&member("n")?),
            exponent: strip_leading_zeros(&member("e")?),
        }),
        _ => None,
    }
}

/// Reloads the SPKI digests of the registered keys of live
/// `self_signed_tls_client_auth` clients into `trust` every
/// [`SELF_SIGNED_KEYS_REFRESH`], until `shutdown`. A failed load keeps the
/// previous set and is logged.
pub async fn maintain_self_signed_keys(
    trust: Arc<ClientCertificateTrust>,
    store: Store,
    shutdown: CancellationToken,
) {
    loop {
        match self_signed_digests(&store).await {
            Ok(digests) => trust.self_signed_keys().set(digests),
            Err(error) => tracing::error!(
                error = %ErrorChain(&error),
                "loading the keys of self-signed client certificates failed; handshakes keep \
                 the previous keys"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SELF_SIGNED_KEYS_REFRESH) => {}
        }
    }
}

/// Collects the SHA-256 of the SubjectPublicKeyInfo of every key that a
/// live `self_signed_tls_client_auth` client registered.
// NOTE: this reads every client of every tenant on each refresh, which is
// fine for hundreds of clients. Many thousands would need a store query
// by authentication method.
pub(crate) async fn self_signed_digests(store: &Store) -> Result<HashSet<[u8; 32]>, StoreError> {
    let mut digests = HashSet::new();
    for tenant in store.list_tenants().await? {
        for client in store.list_clients(tenant.id).await? {
            if client.auth_method != ClientAuthMethod::SelfSignedTlsClientAuth
                || client.revoked_at.is_some()
            {
                continue;
            }
            digests.extend(jwks_spki_digests(client.jwks.as_deref()));
        }
    }
    Ok(digests)
}

/// Returns the SHA-256 of the SubjectPublicKeyInfo of each key in a JWKS,
/// the form in which a self-signed certificate carries the key.
pub(crate) fn jwks_spki_digests(jwks: Option<&str>) -> HashSet<[u8; 32]> {
    registered_keys(jwks)
        .iter()
        .filter_map(spki_der)
        .map(|spki| spki_sha256(&spki))
        .collect()
}

/// Encodes key material as the DER SubjectPublicKeyInfo a certificate
/// carries for it, or `None` for a point or key of the wrong length.
fn spki_der(key: &KeyMaterial) -> Option<Vec<u8>> {
    match key {
        KeyMaterial::P256(point) if point.len() == 65 => {
            Some([P256_SPKI_PREFIX.as_slice(), point].concat())
        }
        KeyMaterial::Ed25519(key) if key.len() == 32 => {
            Some([ED25519_SPKI_PREFIX.as_slice(), key].concat())
        }
        KeyMaterial::Rsa { modulus, exponent } => {
            let rsa_key = der_tlv(
                0x30,
                &[der_integer(modulus), der_integer(exponent)].concat(),
            );
            let bit_string = der_tlv(0x03, &[[0x00].as_slice(), &rsa_key].concat());
            Some(der_tlv(
                0x30,
                &[RSA_ALGORITHM.as_slice(), &bit_string].concat(),
            ))
        }
        _ => None,
    }
}

/// Encodes an unsigned big-endian integer as a DER INTEGER.
fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let mut content = strip_leading_zeros(magnitude);
    if content.first().is_none_or(|first| first & 0x80 != 0) {
        content.insert(0, 0x00);
    }
    der_tlv(0x02, &content)
}

/// Encodes a DER tag, definite length and content.
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut encoded = vec![tag];
    match u8::try_from(content.len()) {
        Ok(short) if short < 0x80 => encoded.push(short),
        _ => {
            let length = content.len().to_be_bytes();
            let significant = strip_leading_zeros(&length);
            encoded.push(0x80 | u8::try_from(significant.len()).unwrap_or(0));
            encoded.extend(significant);
        }
    }
    encoded.extend_from_slice(content);
    encoded
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

/// Reads a certificate's subject as a [`DistinguishedName`] in RFC 4514
/// order, the reverse of the certificate's.
fn subject_name(leaf_der: &[u8]) -> Result<DistinguishedName, CertificateMismatch> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|_| CertificateMismatch::Malformed)?;
    Ok(distinguished_name(&cert))
}

fn distinguished_name(cert: &X509Certificate<'_>) -> DistinguishedName {
    let mut rdns: Vec<Vec<Attribute>> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| Attribute {
                    oid: attribute.attr_type().to_id_string(),
                    value: match attribute.as_str() {
                        Ok(text) => AttributeValue::Text(text.to_owned()),
                        Err(_) => AttributeValue::Der(
                            attribute.attr_value().to_der_vec().unwrap_or_default(),
                        ),
                    },
                })
                .collect()
        })
        .collect();
    rdns.reverse();
    DistinguishedName::from_rdns(rdns)
}

#[cfg(test)]
mod tests;
