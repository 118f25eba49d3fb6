//! The one door to aws-lc-rs: randomness, keyed hashes of secrets,
//! constant-time comparison, the master key, sealing of private keys at
//! rest and the token-signing key pairs.
//!
//! Secrets that Portcullis issues (API keys, later client secrets and codes)
//! are stored only as HMAC-SHA-256 digests keyed with a pepper. The pepper is
//! derived from the master key, which lives outside the database, so a copy
//! of the database alone cannot confirm a guessed key.
//!
//! Private keys that Portcullis must use again (token-signing keys) are
//! sealed with AES-256-GCM under a [`SealingKey`], also derived from the
//! master key, so a copy of the database alone cannot sign anything.

use std::fmt;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self, KeyPair as _};
use aws_lc_rs::{aead, constant_time, digest, hkdf, hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use crate::signing::SigningAlgorithm;

/// Length in bytes of the master key (256 bits).
pub const MASTER_KEY_LEN: usize = 32;

/// Length in bytes of a [`SecretHash`]: one SHA-256 output.
pub const SECRET_HASH_LEN: usize = 32;

/// HKDF `info` labels, one per purpose, so no derived key serves two jobs.
const PEPPER_INFO: &[u8] = b"portcullis/v1/pepper";
const CHECK_INFO: &[u8] = b"portcullis/v1/master-key-check";
const AUDIT_CHAIN_INFO: &[u8] = b"portcullis/v1/audit-chain";
/// Prefix of the HKDF `info` of a sealing key. The purpose follows it.
const SEALING_INFO_PREFIX: &[u8] = b"portcullis/v1/sealing/";

/// The first byte of every sealed value. It names the master key version
/// and the cipher, so a later master-key rotation can tell old ciphertexts
/// from new ones. Version 1 is AES-256-GCM with a random 96-bit nonce under
/// a key derived from the current master key.
const SEALED_VERSION_1: u8 = 1;

/// Length of an AES-256-GCM key in bytes.
const SEALING_KEY_LEN: usize = 32;

/// RSA modulus size of generated RS256 keys. 2048 bits is 112-bit security,
/// which NIST SP 800-57 Part 1 lists as acceptable for new signatures
/// through 2030. Signing keys rotate after days, not years. A private-key
/// operation grows with about the cube of the modulus size, so a 2048-bit
/// signature costs about a third of a 3072-bit one (an estimate), and every
/// issued token is one signature.
pub const RSA_KEY_SIZE: aws_lc_rs::rsa::KeySize = aws_lc_rs::rsa::KeySize::Rsa2048;

/// An error from a cryptographic operation. No variant contains key
/// material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// A master key was given in the wrong form.
    #[error(
        "invalid master key: expected {MASTER_KEY_LEN} bytes in URL-safe base64 without padding ({0})"
    )]
    MasterKeyFormat(&'static str),
    /// Encrypting a value with a sealing key failed.
    #[error("sealing a private key failed")]
    Seal,
    /// A sealed value does not start with a known version byte or is too
    /// short to hold a nonce and a tag.
    #[error("invalid sealed value: {0}")]
    SealedFormat(&'static str),
    /// A sealed value failed authentication: it was sealed under another
    /// master key, for another row or purpose, or it was changed.
    #[error(
        "sealed value failed authentication: wrong master key, wrong key id or purpose, or tampered data"
    )]
    Open,
    /// Generating a key pair failed.
    #[error("generating a {0} key pair failed")]
    KeyGeneration(SigningAlgorithm),
    /// A private key is not valid PKCS#8 for its algorithm.
    #[error("invalid {0} private key: not PKCS#8 for this algorithm")]
    PrivateKey(SigningAlgorithm),
    /// Signing a message failed.
    #[error("signing with a {0} key failed")]
    Signing(SigningAlgorithm),
    /// A public key is not a DER SubjectPublicKeyInfo of the expected
    /// algorithm.
    #[error("invalid public key: expected an ECDSA P-256 SubjectPublicKeyInfo")]
    PublicKey,
}

/// Fills `buffer` from the operating system's CSPRNG.
pub fn fill_random(buffer: &mut [u8]) -> Result<(), CryptoError> {
    rand::fill(buffer).map_err(|_| CryptoError::Random)
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Length in bytes of a SHA-256 digest.
pub const SHA256_LEN: usize = 32;

/// Computes the SHA-256 digest of `data`, unkeyed. For public values such as
/// PKCE challenges; stored secrets are hashed with [`Pepper::hash`] instead.
pub fn sha256(data: &[u8]) -> [u8; SHA256_LEN] {
    let digest = digest::digest(&digest::SHA256, data);
    let mut bytes = [0u8; SHA256_LEN];
    bytes.copy_from_slice(digest.as_ref());
    bytes
}

/// An ECDSA P-256 public key that checks SHA-256 signatures in ASN.1 DER
/// form (`ECDSA_P256_SHA256_ASN1`), such as those GitHub puts on secret
/// scanning reports.
#[derive(Clone)]
pub struct EcdsaP256PublicKey(signature::ParsedPublicKey);

impl EcdsaP256PublicKey {
    /// Parses a DER `SubjectPublicKeyInfo` (RFC 5280) of a P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        signature::ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, der)
            .map(Self)
            .map_err(|_| CryptoError::PublicKey)
    }

    /// Checks `signature` over `message`. Any failure, a malformed
    /// signature included, returns `false`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for EcdsaP256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EcdsaP256PublicKey(..)")
    }
}

/// The master key: the root of every key Portcullis derives.
///
/// It is never stored in the database. `Debug` prints only the type name and
/// the bytes are wiped on drop.
pub struct MasterKey(SecretBox<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    /// Generates a new random master key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Box::new([0u8; MASTER_KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Self(SecretBox::new(bytes)))
    }

    /// Decodes a master key from its text form (URL-safe base64, no padding).
    pub fn from_encoded(text: &str) -> Result<Self, CryptoError> {
        let decoded = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| CryptoError::MasterKeyFormat("not base64"))?;
        let bytes: [u8; MASTER_KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::MasterKeyFormat("wrong length"))?;
        Ok(Self(SecretBox::new(Box::new(bytes))))
    }

    /// Encodes the key as text for the key file. The caller must write it
    /// only to a file readable by its owner alone.
    pub fn to_encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.expose_secret())
    }

    /// Derives the pepper that keys the hashes of stored secrets.
    pub fn derive_pepper(&self) -> Pepper {
        Pepper(self.derive_hmac_key(PEPPER_INFO))
    }

    /// A value stored in the database at first start, so that a process
    /// started later with a different master key stops with a clear error
    /// instead of failing every credential.
    pub fn check_value(&self) -> SecretHash {
        let key = self.derive_hmac_key(CHECK_INFO);
        SecretHash::from_tag(&hmac::sign(&key, b"portcullis master key"))
    }

    /// Derives the key of the audit log's hash chain. Because it comes from
    /// the master key, someone who can write to the database but does not
    /// hold the master key cannot compute the hashes of a forged record.
    pub fn audit_chain_key(&self) -> AuditChainKey {
        AuditChainKey(self.derive_hmac_key(AUDIT_CHAIN_INFO))
    }

    /// Derives the key that seals private keys of one purpose, such as
    /// `"signing-key"`. Each purpose gets its own key (HKDF with the purpose
    /// in `info`), and the purpose is also bound into every ciphertext's
    /// associated data.
    pub fn sealing_key(&self, purpose: &str) -> SealingKey {
        let prk = self.prk();
        let info = [SEALING_INFO_PREFIX, purpose.as_bytes()];
        let mut bytes = Zeroizing::new([0u8; SEALING_KEY_LEN]);
        let filled = prk
            .expand(&info, &aead::AES_256_GCM)
            .and_then(|okm| okm.fill(bytes.as_mut()));
        if filled.is_err() {
            unreachable_hkdf();
        }
        let Ok(key) = aead::RandomizedNonceKey::new(&aead::AES_256_GCM, bytes.as_ref()) else {
            unreachable_aead_key()
        };
        SealingKey {
            key,
            purpose: purpose.to_owned(),
        }
    }

    fn prk(&self) -> hkdf::Prk {
        // RFC 5869: the master key is already uniformly random, so HKDF needs
        // no secret salt; the fixed salt only separates Portcullis's use.
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis");
        salt.extract(self.0.expose_secret())
    }

    fn derive_hmac_key(&self, info: &[u8]) -> hmac::Key {
        let prk = self.prk();
        let info = [info];
        match prk.expand(&info, hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            // Expansion fails only when the requested length exceeds
            // 255 * 32 bytes; an HMAC-SHA-256 key is 32 bytes.
            Err(_) => unreachable_hkdf(),
        }
    }
}

#[expect(
    clippy::panic,
    reason = "HKDF output of 32 bytes is always within its limit"
)]
fn unreachable_hkdf() -> ! {
    panic!("HKDF-SHA-256 refused a 32-byte output")
}

#[expect(
    clippy::panic,
    reason = "AES-256-GCM accepts every 32-byte key, and the key is 32 bytes"
)]
fn unreachable_aead_key() -> ! {
    panic!("AES-256-GCM rejected a 32-byte key")
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// The HMAC-SHA-256 key that hashes stored secrets.
#[derive(Clone)]
pub struct Pepper(hmac::Key);

impl Pepper {
    /// Computes the keyed hash under which a secret is stored.
    pub fn hash(&self, secret: &[u8]) -> SecretHash {
        SecretHash::from_tag(&hmac::sign(&self.0, secret))
    }

    /// Checks a secret against a stored hash in constant time.
    pub fn verify(&self, secret: &[u8], stored: &SecretHash) -> bool {
        hmac::verify(&self.0, secret, &stored.0).is_ok()
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pepper(..)")
    }
}

/// The HMAC-SHA-256 key that links audit records into a hash chain.
#[derive(Clone)]
pub struct AuditChainKey(hmac::Key);

impl AuditChainKey {
    /// Computes the HMAC-SHA-256 tag of one encoded audit record.
    pub fn tag(&self, message: &[u8]) -> [u8; SHA256_LEN] {
        let mut tag = [0u8; SHA256_LEN];
        tag.copy_from_slice(hmac::sign(&self.0, message).as_ref());
        tag
    }

    /// Checks a stored tag against `message` in constant time.
    pub fn verify(&self, message: &[u8], stored: &[u8]) -> bool {
        hmac::verify(&self.0, message, stored).is_ok()
    }
}

impl fmt::Debug for AuditChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditChainKey(..)")
    }
}

/// The HMAC-SHA-256 key that signs outgoing webhook requests, built from a
/// secret shared with the receiver.
#[derive(Clone)]
pub struct WebhookKey(hmac::Key);

impl WebhookKey {
    /// Builds the key from the shared secret's bytes.
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Computes the HMAC-SHA-256 tag of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SHA256_LEN] {
        let tag = hmac::sign(&self.0, message);
        let mut bytes = [0u8; SHA256_LEN];
        bytes.copy_from_slice(tag.as_ref());
        bytes
    }

    /// Checks a tag of `message` in constant time.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, message, tag).is_ok()
    }
}

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

/// A keyed hash of a secret, as stored. It reveals nothing without the
/// pepper, but it is still not printed, so it cannot be mistaken for one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; SECRET_HASH_LEN]);

impl SecretHash {
    fn from_tag(tag: &hmac::Tag) -> Self {
        let mut bytes = [0u8; SECRET_HASH_LEN];
        bytes.copy_from_slice(tag.as_ref());
        Self(bytes)
    }

    /// Wraps a hash read from storage; `None` when the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The digest bytes, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Compares two hashes in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        constant_time_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// An AES-256-GCM key for sealing private keys of one purpose at rest.
///
/// A sealed value is `version (1 byte) || nonce (12 bytes) || ciphertext ||
/// tag (16 bytes)`. The associated data binds the version, the purpose and
/// the caller's row id (for signing keys, the kid), so a ciphertext copied
/// to another row or used for another purpose fails to open.
pub struct SealingKey {
    key: aead::RandomizedNonceKey,
    purpose: String,
}

impl SealingKey {
    /// Encrypts `plaintext` for the row named by `row_id`.
    pub fn seal(&self, plaintext: &[u8], row_id: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let aad = self.associated_data(SEALED_VERSION_1, row_id);
        let mut in_out = Zeroizing::new(plaintext.to_vec());
        let nonce = self
            .key
            .seal_in_place_append_tag(aead::Aad::from(aad.as_slice()), &mut *in_out)
            .map_err(|_| CryptoError::Seal)?;

        let mut sealed = Vec::with_capacity(1 + aead::NONCE_LEN + in_out.len());
        sealed.push(SEALED_VERSION_1);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Decrypts a value sealed for the row named by `row_id`. The plaintext
    /// is wiped when the returned box is dropped.
    pub fn open(&self, sealed: &[u8], row_id: &[u8]) -> Result<SecretBox<Vec<u8>>, CryptoError> {
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(CryptoError::SealedFormat("empty"));
        };
        if version != SEALED_VERSION_1 {
            return Err(CryptoError::SealedFormat("unknown version byte"));
        }
        let Some((nonce, ciphertext)) = rest.split_first_chunk::<{ aead::NONCE_LEN }>() else {
            return Err(CryptoError::SealedFormat("too short"));
        };
        if ciphertext.len() < aead::AES_256_GCM.tag_len() {
            return Err(CryptoError::SealedFormat("too short"));
        }

        let aad = self.associated_data(version, row_id);
        let nonce = aead::Nonce::assume_unique_for_key(*nonce);
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plaintext = self
            .key
            .open_in_place(
                nonce,
                aead::Aad::from(aad.as_slice()),
                in_out.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Open)?;
        Ok(SecretBox::new(Box::new(plaintext.to_vec())))
    }

    /// Builds `version || len(purpose) as u32 BE || purpose || row_id`.
    /// The length prefix keeps a purpose/row pair from reading as another.
    fn associated_data(&self, version: u8, row_id: &[u8]) -> Vec<u8> {
        let purpose = self.purpose.as_bytes();
        let purpose_len = u32::try_from(purpose.len()).unwrap_or(u32::MAX);
        let mut aad = Vec::with_capacity(5 + purpose.len() + row_id.len());
        aad.push(version);
        aad.extend_from_slice(&purpose_len.to_be_bytes());
        aad.extend_from_slice(purpose);
        aad.extend_from_slice(row_id);
        aad
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// Generates a private key for `algorithm` and returns it as PKCS#8 DER:
/// a P-256 key for ES256, an RSA key of [`RSA_KEY_SIZE`] for RS256 and an
/// Ed25519 key for EdDSA. The bytes are wiped on drop.
pub fn generate_private_key(
    algorithm: SigningAlgorithm,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let failed = |_| CryptoError::KeyGeneration(algorithm);
    let rng = rand::SystemRandom::new();
    let pkcs8 = match algorithm {
        SigningAlgorithm::Es256 => {
            let document = signature::EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            )
            .map_err(failed)?;
            document.as_ref().to_vec()
        }
        SigningAlgorithm::Rs256 => {
            let pair = signature::RsaKeyPair::generate(RSA_KEY_SIZE).map_err(failed)?;
            pair.as_der().map_err(failed)?.as_ref().to_vec()
        }
        SigningAlgorithm::EdDsa => {
            let document = signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?;
            document.as_ref().to_vec()
        }
    };
    Ok(Zeroizing::new(pkcs8))
}

/// The public half of a signing key, in the forms that a JWK uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKeyParts {
    /// An RSA public key: modulus and exponent, big-endian, no leading zeros.
    Rsa {
        /// The modulus `n`.
        modulus: Vec<u8>,
        /// The public exponent `e`.
        exponent: Vec<u8>,
    },
    /// A P-256 public key as the uncompressed point `0x04 || x || y`.
    P256 {
        /// The 65-byte uncompressed point.
        point: Vec<u8>,
    },
    /// An Ed25519 public key: 32 bytes.
    Ed25519 {
        /// The 32-byte public key.
        key: Vec<u8>,
    },
}

/// A token-signing key pair, parsed once from PKCS#8 and then used for
/// every signature. `Debug` prints only the algorithm, and aws-lc-rs frees
/// the private key on drop.
pub struct SigningKeyPair {
    algorithm: SigningAlgorithm,
    inner: KeyPairInner,
}

enum KeyPairInner {
    Es256(signature::EcdsaKeyPair),
    Rs256(signature::RsaKeyPair),
    EdDsa(signature::Ed25519KeyPair),
}

impl SigningKeyPair {
    /// Parses a PKCS#8 private key of `algorithm`. A key of another type
    /// (an RSA key given as ES256, say) is rejected.
    pub fn from_pkcs8(algorithm: SigningAlgorithm, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let rejected = |_| CryptoError::PrivateKey(algorithm);
        let inner = match algorithm {
            SigningAlgorithm::Es256 => KeyPairInner::Es256(
                signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                )
                .map_err(rejected)?,
            ),
            SigningAlgorithm::Rs256 => {
                KeyPairInner::Rs256(signature::RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?)
            }
            SigningAlgorithm::EdDsa => {
                KeyPairInner::EdDsa(signature::Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?)
            }
        };
        Ok(Self { algorithm, inner })
    }

    /// The one algorithm this key signs with.
    pub const fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// Signs `message` as the JWS algorithm requires: RSASSA-PKCS1-v1_5
    /// with SHA-256, ECDSA P-256 with the fixed-length `r || s` encoding of
    /// RFC 7518 §3.4, or Ed25519.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let failed = |_| CryptoError::Signing(self.algorithm);
        match &self.inner {
            KeyPairInner::Es256(pair) => {
                let rng = rand::SystemRandom::new();
                let signature = pair.sign(&rng, message).map_err(failed)?;
                Ok(signature.as_ref().to_vec())
            }
            KeyPairInner::Rs256(pair) => {
                let rng = rand::SystemRandom::new();
                let mut signature = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
            KeyPairInner::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// The public key, for the JWK.
    pub fn public_key(&self) -> PublicKeyParts {
        match &self.inner {
            KeyPairInner::Es256(pair) => PublicKeyParts::P256 {
                point: pair.public_key().as_ref().to_vec(),
            },
            KeyPairInner::Rs256(pair) => {
                let components =
                    signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                PublicKeyParts::Rsa {
                    modulus: components.n,
                    exponent: components.e,
                }
            }
            KeyPairInner::EdDsa(pair) => PublicKeyParts::Ed25519 {
                key: pair.public_key().as_ref().to_vec(),
            },
        }
    }

    /// The public key as an X.509 SubjectPublicKeyInfo in DER.
    pub fn public_key_der(&self) -> Result<Vec<u8>, CryptoError> {
        let failed = |_| CryptoError::PrivateKey(self.algorithm);
        let der = match &self.inner {
            KeyPairInner::Es256(pair) => pair.public_key().as_der().map_err(failed)?,
            KeyPairInner::Rs256(pair) => pair.public_key().as_der().map_err(failed)?,
            KeyPairInner::EdDsa(pair) => pair.public_key().as_der().map_err(failed)?,
        };
        Ok(der.as_ref().to_vec())
    }
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_round_trips_as_text() {
        let key = MasterKey::generate().unwrap();
        let again = MasterKey::from_encoded(&key.to_encoded()).unwrap();
        assert!(key.check_value().ct_eq(&again.check_value()));
    }

    #[test]
    fn master_key_text_checked() {
        assert!(MasterKey::from_encoded("short").is_err());
        assert!(MasterKey::from_encoded("!!!!").is_err());
    }

    #[test]
    fn pepper_depends_on_master_key() {
        let a = MasterKey::generate().unwrap().derive_pepper();
        let b = MasterKey::generate().unwrap().derive_pepper();
        assert_ne!(a.hash(b"secret").as_bytes(), b.hash(b"secret").as_bytes());
        assert!(a.verify(b"secret", &a.hash(b"secret")));
        assert!(!a.verify(b"secret", &b.hash(b"secret")));
    }

    #[test]
    fn sha256_matches_known_digest() {
        // SHA-256("abc"), from FIPS 180-2 Appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn webhook_key_matches_rfc_4231() {
        // RFC 4231 section 4.3, test case 2: key "Jefe".
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let key = WebhookKey::new(b"Jefe");
        let tag = key.sign(b"what do ya want for nothing?");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert!(key.verify(b"what do ya want for nothing?", &tag));
        assert!(!key.verify(b"what do ya want for nothing!", &tag));
        assert!(!WebhookKey::new(b"Jeff").verify(b"what do ya want for nothing?", &tag));
    }

    #[test]
    fn debug_hides_secrets() {
        let key = MasterKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
        assert_eq!(format!("{:?}", key.derive_pepper()), "Pepper(..)");
    }

    const PURPOSE: &str = "signing-key";

    #[test]
    fn sealed_value_round_trips() {
        let master = MasterKey::generate().unwrap();
        let sealing = master.sealing_key(PURPOSE);
        let sealed = sealing.seal(b"private key bytes", b"kid-1").unwrap();
        assert_eq!(sealed.first(), Some(&SEALED_VERSION_1));
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        let opened = sealing.open(&sealed, b"kid-1").unwrap();
        assert_eq!(opened.expose_secret().as_slice(), b"private key bytes");
    }

    #[test]
    fn sealed_value_round_trips_after_reload() {
        let master = MasterKey::generate().unwrap();
        let sealed = master
            .sealing_key(PURPOSE)
            .seal(b"secret", b"kid-1")
            .unwrap();
        let reloaded = MasterKey::from_encoded(&master.to_encoded()).unwrap();
        let opened = reloaded
            .sealing_key(PURPOSE)
            .open(&sealed, b"kid-1")
            .unwrap();
        assert_eq!(opened.expose_secret().as_slice(), b"secret");
    }

    #[test]
    fn sealing_uses_fresh_nonces() {
        let sealing = MasterKey::generate().unwrap().sealing_key(PURPOSE);
        let first = sealing.seal(b"secret", b"kid-1").unwrap();
        let second = sealing.seal(b"secret", b"kid-1").unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn open_rejects_other_row_id() {
        let sealing = MasterKey::generate().unwrap().sealing_key(PURPOSE);
        let sealed = sealing.seal(b"secret", b"kid-1").unwrap();
        assert_eq!(
            sealing.open(&sealed, b"kid-2").err(),
            Some(CryptoError::Open)
        );
        assert_eq!(sealing.open(&sealed, b"").err(), Some(CryptoError::Open));
    }

    #[test]
    fn open_rejects_other_purpose() {
        let master = MasterKey::generate().unwrap();
        let sealed = master
            .sealing_key(PURPOSE)
            .seal(b"secret", b"kid-1")
            .unwrap();
        let other = master.sealing_key("ca-key");
        assert_eq!(other.open(&sealed, b"kid-1").err(), Some(CryptoError::Open));
    }

    #[test]
    fn open_rejects_other_master_key() {
        let sealed = MasterKey::generate()
            .unwrap()
            .sealing_key(PURPOSE)
            .seal(b"secret", b"kid-1")
            .unwrap();
        let other = MasterKey::generate().unwrap().sealing_key(PURPOSE);
        assert_eq!(other.open(&sealed, b"kid-1").err(), Some(CryptoError::Open));
    }

    #[test]
    fn open_rejects_tampered_bytes() {
        let sealing = MasterKey::generate().unwrap().sealing_key(PURPOSE);
        let sealed = sealing.seal(b"secret", b"kid-1").unwrap();
        // Flip one bit in the nonce, the ciphertext and the tag in turn.
        for index in 1..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x01;
            assert_eq!(
                sealing.open(&tampered, b"kid-1").err(),
                Some(CryptoError::Open),
                "bit flip at byte {index} was not detected"
            );
        }
        let mut truncated = sealed;
        truncated.pop();
        assert_eq!(
            sealing.open(&truncated, b"kid-1").err(),
            Some(CryptoError::Open)
        );
    }

    #[test]
    fn open_rejects_bad_framing() {
        let sealing = MasterKey::generate().unwrap().sealing_key(PURPOSE);
        let mut sealed = sealing.seal(b"secret", b"kid-1").unwrap();
        assert!(matches!(
            sealing.open(&[], b"kid-1"),
            Err(CryptoError::SealedFormat(_))
        ));
        assert!(matches!(
            sealing.open(&sealed[..20], b"kid-1"),
            Err(CryptoError::SealedFormat(_))
        ));
        sealed[0] = 2;
        assert!(matches!(
            sealing.open(&sealed, b"kid-1"),
            Err(CryptoError::SealedFormat(_))
        ));
    }

    #[test]
    fn sealing_key_debug_hides_key() {
        let sealing = MasterKey::generate().unwrap().sealing_key(PURPOSE);
        assert_eq!(
            format!("{sealing:?}"),
            "SealingKey { purpose: \"signing-key\", .. }"
        );
    }

    const ALGORITHMS: [SigningAlgorithm; 3] = [
        SigningAlgorithm::Es256,
        SigningAlgorithm::Rs256,
        SigningAlgorithm::EdDsa,
    ];

    fn verification_algorithm(
        algorithm: SigningAlgorithm,
    ) -> &'static dyn signature::VerificationAlgorithm {
        match algorithm {
            SigningAlgorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            SigningAlgorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            SigningAlgorithm::EdDsa => &signature::ED25519,
        }
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        for algorithm in ALGORITHMS {
            let pkcs8 = generate_private_key(algorithm).unwrap();
            let pair = SigningKeyPair::from_pkcs8(algorithm, &pkcs8).unwrap();
            assert_eq!(pair.algorithm(), algorithm);
            let signature = pair.sign(b"header.claims").unwrap();

            let public = match pair.public_key() {
                PublicKeyParts::Rsa { modulus, exponent } => {
                    assert_eq!(modulus.len(), 256, "RSA keys are 2048 bits");
                    assert_eq!(exponent, vec![1, 0, 1]);
                    let components = signature::RsaPublicKeyComponents {
                        n: modulus,
                        e: exponent,
                    };
                    components
                        .verify(
                            &signature::RSA_PKCS1_2048_8192_SHA256,
                            b"header.claims",
                            &signature,
                        )
                        .unwrap();
                    continue;
                }
                PublicKeyParts::P256 { point } => {
                    assert_eq!(point.len(), 65);
                    assert_eq!(point[0], 0x04);
                    point
                }
                PublicKeyParts::Ed25519 { key } => {
                    assert_eq!(key.len(), 32);
                    key
                }
            };
            let verifier =
                signature::UnparsedPublicKey::new(verification_algorithm(algorithm), &public);
            verifier.verify(b"header.claims", &signature).unwrap();
            assert!(verifier.verify(b"header.claimz", &signature).is_err());
        }
    }

    #[test]
    fn signatures_have_jws_lengths() {
        let expected = [(SigningAlgorithm::Es256, 64), (SigningAlgorithm::EdDsa, 64)];
        for (algorithm, length) in expected {
            let pkcs8 = generate_private_key(algorithm).unwrap();
            let pair = SigningKeyPair::from_pkcs8(algorithm, &pkcs8).unwrap();
            assert_eq!(pair.sign(b"message").unwrap().len(), length, "{algorithm}");
        }
    }

    #[test]
    fn key_of_other_algorithm_rejected() {
        for algorithm in ALGORITHMS {
            let pkcs8 = generate_private_key(algorithm).unwrap();
            for other in ALGORITHMS.into_iter().filter(|other| *other != algorithm) {
                assert_eq!(
                    SigningKeyPair::from_pkcs8(other, &pkcs8).err(),
                    Some(CryptoError::PrivateKey(other)),
                    "{algorithm} key accepted as {other}"
                );
            }
        }
    }

    #[test]
    fn public_key_der_parses() {
        for algorithm in ALGORITHMS {
            let pkcs8 = generate_private_key(algorithm).unwrap();
            let pair = SigningKeyPair::from_pkcs8(algorithm, &pkcs8).unwrap();
            let der = pair.public_key_der().unwrap();
            // Every SubjectPublicKeyInfo is a DER SEQUENCE.
            assert_eq!(der.first(), Some(&0x30), "{algorithm}");
        }
    }

    #[test]
    fn key_pair_debug_hides_key() {
        let pkcs8 = generate_private_key(SigningAlgorithm::EdDsa).unwrap();
        let pair = SigningKeyPair::from_pkcs8(SigningAlgorithm::EdDsa, &pkcs8).unwrap();
        assert_eq!(
            format!("{pair:?}"),
            "SigningKeyPair { algorithm: EdDsa, .. }"
        );
    }
}
