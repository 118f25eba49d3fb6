//! The one door to aws-lc-rs: randomness, keyed hashes of secrets,
//! constant-time comparison and the master key.
//!
//! Secrets that Portcullis issues (API keys, later client secrets and codes)
//! are stored only as HMAC-SHA-256 digests keyed with a pepper. The pepper is
//! derived from the master key, which lives outside the database, so a copy
//! of the database alone cannot confirm a guessed key.

use std::fmt;

use aws_lc_rs::{constant_time, digest, hkdf, hmac, rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretBox};

/// Length in bytes of the master key (256 bits).
pub const MASTER_KEY_LEN: usize = 32;

/// Length in bytes of a [`SecretHash`]: one SHA-256 output.
pub const SECRET_HASH_LEN: usize = 32;

/// HKDF `info` labels, one per purpose, so no derived key serves two jobs.
const PEPPER_INFO: &[u8] = b"portcullis/v1/pepper";
const CHECK_INFO: &[u8] = b"portcullis/v1/master-key-check";

/// Why random bytes or a master key could not be had.
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

    fn derive_hmac_key(&self, info: &[u8]) -> hmac::Key {
        // RFC 5869: the master key is already uniformly random, so HKDF needs
        // no secret salt; the fixed salt only separates Portcullis's use.
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis");
        let prk = salt.extract(self.0.expose_secret());
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
    fn debug_hides_secrets() {
        let key = MasterKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
        assert_eq!(format!("{:?}", key.derive_pepper()), "Pepper(..)");
    }
}
