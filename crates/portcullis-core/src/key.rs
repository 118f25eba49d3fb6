//! The API key format.
//!
//! A key reads `pc_live_` or `pc_test_`, then 32 base62 characters drawn
//! from the CSPRNG (about 190 bits), then 6 base62 characters holding the
//! CRC32 of everything before them:
//!
//! ```text
//! pc_live_ 4f1Xq…(32 random)… 0aZ9k3
//! ├prefix┤ ├──── random ────┤ ├check┤
//! ```
//!
//! The prefix lets a secret scanner find keys and tells live from test
//! traffic; the checksum lets the scanner skip look-alikes and lets the
//! server reject a mistyped key before any lookup. The random part is never
//! decoded: the whole string is what gets hashed and stored.
//!
//! OAuth client secrets, authorization codes and refresh tokens
//! ([`OpaqueSecret`]) use the same random part and checksum behind their
//! own prefixes: `pcs_`, `pca_` and `pcr_`.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, fill_random};

/// The characters of the random part and the checksum, in value order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Number of random base62 characters: 32 × log2(62) ≈ 190 bits.
pub const RANDOM_LEN: usize = 32;

/// Number of checksum characters: 62^6 > 2^32, so any CRC32 fits.
pub const CHECKSUM_LEN: usize = 6;

/// Length of `pc_live_` and `pc_test_`.
pub const PREFIX_LEN: usize = 8;

/// Total length of a key.
pub const KEY_LEN: usize = PREFIX_LEN + RANDOM_LEN + CHECKSUM_LEN;

/// Number of random characters shown in a key's visible prefix. Four
/// characters (about 24 bits) tell keys apart in a list while leaving about
/// 166 bits unknown.
pub const VISIBLE_RANDOM_LEN: usize = 4;

/// Which environment a key belongs to, named in its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production traffic: `pc_live_`.
    Live,
    /// Test and sandbox traffic: `pc_test_`.
    Test,
}

impl Environment {
    /// The key prefix of this environment.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Live => "pc_live_",
            Self::Test => "pc_test_",
        }
    }

    /// The environment's name as stored and printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            other => Err(format!(
                "unknown environment {other:?}: expected live or test"
            )),
        }
    }
}

/// Why a string is not a Portcullis API key. None of the variants carries
/// the string itself, so an error can never echo a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// It does not start with `pc_live_` or `pc_test_`.
    #[error("API key must start with pc_live_ or pc_test_")]
    Prefix,
    /// It has the wrong number of characters.
    #[error("API key must be {KEY_LEN} characters long")]
    Length,
    /// A character after the prefix is not a base62 letter or digit.
    #[error("API key may contain only letters and digits after its prefix")]
    Alphabet,
    /// The checksum does not match: the key was mistyped or cut.
    #[error("API key checksum does not match; check that the key was copied whole")]
    Checksum,
}

impl KeyFormatError {
    /// A stable machine-readable code.
    pub const fn code(self) -> &'static str {
        "invalid_format"
    }
}

/// A whole API key. Shown to its owner once, at creation, and otherwise held
/// only long enough to hash it.
///
/// `Debug` prints only the visible prefix and the bytes are wiped on drop.
pub struct KeySecret {
    secret: SecretString,
    environment: Environment,
}

impl KeySecret {
    /// Generates a new key for `environment` from the CSPRNG.
    pub fn generate(environment: Environment) -> Result<Self, CryptoError> {
        let mut text = String::with_capacity(KEY_LEN);
        text.push_str(environment.prefix());
        push_random_base62(&mut text, RANDOM_LEN)?;
        let checksum = encode_checksum(crc32fast::hash(text.as_bytes()));
        text.push_str(&checksum);
        Ok(Self {
            secret: SecretString::from(text),
            environment,
        })
    }

    /// Checks the format of a presented key and wraps it.
    pub fn parse(input: &str) -> Result<Self, KeyFormatError> {
        let environment = check_format(input)?;
        Ok(Self {
            secret: SecretString::from(input.to_owned()),
            environment,
        })
    }

    /// The whole key. Only to hash it or to show it once to its owner.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The environment named in the prefix.
    pub const fn environment(&self) -> Environment {
        self.environment
    }

    /// The part of the key that may be shown and logged, such as
    /// `pc_live_4f1X`.
    pub fn visible_prefix(&self) -> String {
        visible_prefix(self.expose())
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySecret({}…)", self.visible_prefix())
    }
}

/// Checks prefix, length, alphabet and checksum, in that order, and returns
/// the environment. Safe to run on any input: it never panics and never
/// allocates.
pub fn check_format(input: &str) -> Result<Environment, KeyFormatError> {
    let environment = if input.starts_with(Environment::Live.prefix()) {
        Environment::Live
    } else if input.starts_with(Environment::Test.prefix()) {
        Environment::Test
    } else {
        return Err(KeyFormatError::Prefix);
    };
    if input.len() != KEY_LEN {
        return Err(KeyFormatError::Length);
    }

    let bytes = input.as_bytes();
    let (body, checksum) = bytes.split_at(KEY_LEN - CHECKSUM_LEN);
    let random = body.get(PREFIX_LEN..).unwrap_or_default();
    if !random.iter().chain(checksum).all(u8::is_ascii_alphanumeric) {
        return Err(KeyFormatError::Alphabet);
    }

    let expected = encode_checksum(crc32fast::hash(body));
    if expected.as_bytes() != checksum {
        return Err(KeyFormatError::Checksum);
    }
    Ok(environment)
}

/// The visible prefix of a key string: its environment prefix and the first
/// [`VISIBLE_RANDOM_LEN`] random characters. Works on any string, cutting at
/// a character boundary.
pub fn visible_prefix(key: &str) -> String {
    key.chars().take(PREFIX_LEN + VISIBLE_RANDOM_LEN).collect()
}

/// A kind of opaque OAuth secret. Each has the API key's shape, random
/// part and checksum behind its own four-character prefix, so a secret
/// scanner can tell them apart and the server can reject a mistyped one
/// before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// A confidential client's secret: `pcs_`.
    ClientSecret,
    /// An authorization code: `pca_`.
    AuthorizationCode,
    /// A refresh token: `pcr_`.
    RefreshToken,
}

/// Length of `pcs_`, `pca_` and `pcr_`.
pub const SECRET_PREFIX_LEN: usize = 4;

/// Total length of an opaque OAuth secret.
pub const SECRET_LEN: usize = SECRET_PREFIX_LEN + RANDOM_LEN + CHECKSUM_LEN;

impl SecretKind {
    /// The prefix of secrets of this kind.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::ClientSecret => "pcs_",
            Self::AuthorizationCode => "pca_",
            Self::RefreshToken => "pcr_",
        }
    }

    /// The kind's name for messages, such as "client secret".
    pub const fn description(self) -> &'static str {
        match self {
            Self::ClientSecret => "client secret",
            Self::AuthorizationCode => "authorization code",
            Self::RefreshToken => "refresh token",
        }
    }
}

/// Why a string is not an opaque OAuth secret of the expected kind. None of
/// the variants carries the string itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    /// It does not start with the kind's prefix.
    #[error("{} must start with {}", .0.description(), .0.prefix())]
    Prefix(SecretKind),
    /// It has the wrong number of characters.
    #[error("{} must be {SECRET_LEN} characters long", .0.description())]
    Length(SecretKind),
    /// A character after the prefix is not a base62 letter or digit.
    #[error("{} may contain only letters and digits after its prefix", .0.description())]
    Alphabet(SecretKind),
    /// The checksum does not match: the value was mistyped or cut.
    #[error("{} checksum does not match; check that it was copied whole", .0.description())]
    Checksum(SecretKind),
}

/// An opaque OAuth secret: a client secret, authorization code or refresh
/// token. Shown once to the client and otherwise held only long enough to
/// hash it with [`crate::crypto::Pepper::hash`].
///
/// `Debug` prints only the kind and the bytes are wiped on drop.
pub struct OpaqueSecret {
    secret: SecretString,
    kind: SecretKind,
}

impl OpaqueSecret {
    /// Generates a new secret of `kind` from the CSPRNG.
    pub fn generate(kind: SecretKind) -> Result<Self, CryptoError> {
        let mut text = String::with_capacity(SECRET_LEN);
        text.push_str(kind.prefix());
        push_random_base62(&mut text, RANDOM_LEN)?;
        let checksum = encode_checksum(crc32fast::hash(text.as_bytes()));
        text.push_str(&checksum);
        Ok(Self {
            secret: SecretString::from(text),
            kind,
        })
    }

    /// Checks the format of a presented secret of `kind` and wraps it.
    pub fn parse(kind: SecretKind, input: &str) -> Result<Self, SecretFormatError> {
        check_secret_format(kind, input)?;
        Ok(Self {
            secret: SecretString::from(input.to_owned()),
            kind,
        })
    }

    /// The whole secret. Only to hash it or to hand it to the client once.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The secret's kind.
    pub const fn kind(&self) -> SecretKind {
        self.kind
    }
}

impl fmt::Debug for OpaqueSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpaqueSecret({}…)", self.kind.prefix())
    }
}

/// Checks prefix, length, alphabet and checksum of a secret of `kind`, in
/// that order. Safe to run on any input: it never panics.
pub fn check_secret_format(kind: SecretKind, input: &str) -> Result<(), SecretFormatError> {
    if !input.starts_with(kind.prefix()) {
        return Err(SecretFormatError::Prefix(kind));
    }
    if input.len() != SECRET_LEN {
        return Err(SecretFormatError::Length(kind));
    }

    let bytes = input.as_bytes();
    let (body, checksum) = bytes.split_at(SECRET_LEN - CHECKSUM_LEN);
    let random = body.get(SECRET_PREFIX_LEN..).unwrap_or_default();
    if !random.iter().chain(checksum).all(u8::is_ascii_alphanumeric) {
        return Err(SecretFormatError::Alphabet(kind));
    }

    let expected = encode_checksum(crc32fast::hash(body));
    if expected.as_bytes() != checksum {
        return Err(SecretFormatError::Checksum(kind));
    }
    Ok(())
}

/// Appends `count` uniformly random base62 characters.
fn push_random_base62(out: &mut String, count: usize) -> Result<(), CryptoError> {
    // Rejection sampling: 248 = 4 × 62, so bytes below 248 map onto base62
    // without bias and the rest are drawn again.
    let mut pushed = 0;
    let mut pool = [0u8; 64];
    while pushed < count {
        fill_random(&mut pool)?;
        for byte in pool {
            if pushed == count {
                break;
            }
            if byte < 248 {
                out.push(base62_char(byte % 62));
                pushed += 1;
            }
        }
    }
    Ok(())
}

/// Encodes a CRC32 as exactly [`CHECKSUM_LEN`] base62 characters, most
/// significant first.
fn encode_checksum(mut value: u32) -> String {
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = base62_char((value % 62) as u8) as u8;
        value /= 62;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

fn base62_char(value: u8) -> char {
    BASE62
        .get(usize::from(value))
        .map_or('0', |&b| char::from(b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_keys_parse() {
        for environment in [Environment::Live, Environment::Test] {
            let key = KeySecret::generate(environment).unwrap();
            assert_eq!(key.expose().len(), KEY_LEN);
            assert!(key.expose().starts_with(environment.prefix()));
            assert_eq!(check_format(key.expose()), Ok(environment));
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = KeySecret::generate(Environment::Live).unwrap();
        let b = KeySecret::generate(Environment::Live).unwrap();
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn single_character_change_fails_checksum() {
        let key = KeySecret::generate(Environment::Test).unwrap();
        let text = key.expose();
        for position in PREFIX_LEN..KEY_LEN {
            let mut bytes = text.as_bytes().to_vec();
            bytes[position] = if bytes[position] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(
                check_format(&changed),
                Err(KeyFormatError::Checksum),
                "at {position}"
            );
        }
    }

    #[test]
    fn errors_in_order() {
        let key = KeySecret::generate(Environment::Live).unwrap();
        let text = key.expose();
        assert_eq!(check_format("sk_live_abc"), Err(KeyFormatError::Prefix));
        assert_eq!(
            check_format(&text[..KEY_LEN - 1]),
            Err(KeyFormatError::Length)
        );
        let with_symbol = format!("{}-{}", &text[..20], &text[21..]);
        assert_eq!(check_format(&with_symbol), Err(KeyFormatError::Alphabet));
    }

    #[test]
    fn debug_shows_only_prefix() {
        let key = KeySecret::generate(Environment::Live).unwrap();
        let printed = format!("{key:?}");
        assert!(!printed.contains(key.expose()));
        assert!(printed.contains(&key.visible_prefix()));
        assert_eq!(key.visible_prefix().len(), PREFIX_LEN + VISIBLE_RANDOM_LEN);
    }

    #[test]
    fn checksum_is_fixed_width() {
        assert_eq!(encode_checksum(0), "000000");
        assert_eq!(encode_checksum(u32::MAX).len(), CHECKSUM_LEN);
    }

    const SECRET_KINDS: [SecretKind; 3] = [
        SecretKind::ClientSecret,
        SecretKind::AuthorizationCode,
        SecretKind::RefreshToken,
    ];

    #[test]
    fn generated_secrets_parse_as_their_kind_only() {
        for kind in SECRET_KINDS {
            let secret = OpaqueSecret::generate(kind).unwrap();
            assert_eq!(secret.expose().len(), SECRET_LEN);
            assert!(secret.expose().starts_with(kind.prefix()));
            assert_eq!(check_secret_format(kind, secret.expose()), Ok(()));
            for other in SECRET_KINDS.into_iter().filter(|other| *other != kind) {
                assert_eq!(
                    check_secret_format(other, secret.expose()),
                    Err(SecretFormatError::Prefix(other))
                );
            }
            assert_eq!(check_format(secret.expose()), Err(KeyFormatError::Prefix));
        }
    }

    #[test]
    fn secret_errors_in_order() {
        let kind = SecretKind::RefreshToken;
        let secret = OpaqueSecret::generate(kind).unwrap();
        let text = secret.expose();
        assert_eq!(
            check_secret_format(kind, &text[..SECRET_LEN - 1]),
            Err(SecretFormatError::Length(kind))
        );
        let with_symbol = format!("{}-{}", &text[..10], &text[11..]);
        assert_eq!(
            check_secret_format(kind, &with_symbol),
            Err(SecretFormatError::Alphabet(kind))
        );
        let mut bytes = text.as_bytes().to_vec();
        bytes[12] = if bytes[12] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert_eq!(
            check_secret_format(kind, &changed),
            Err(SecretFormatError::Checksum(kind))
        );
        assert!(OpaqueSecret::parse(kind, text).is_ok());
    }

    #[test]
    fn secret_debug_and_errors_hide_value() {
        let secret = OpaqueSecret::generate(SecretKind::ClientSecret).unwrap();
        let printed = format!("{secret:?}");
        assert!(!printed.contains(secret.expose()), "{printed}");
        assert_eq!(printed, "OpaqueSecret(pcs_…)");
        let error = OpaqueSecret::parse(SecretKind::ClientSecret, "pcs_short").unwrap_err();
        assert_eq!(
            error.to_string(),
            "client secret must be 42 characters long"
        );
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_rejected(input in ".{0,80}") {
            let _ = check_format(&input);
            let _ = visible_prefix(&input);
        }

        #[test]
        fn any_key_shaped_string_parses_or_is_rejected(
            random in "[0-9A-Za-z]{32}",
            checksum in "[0-9A-Za-z_\\-]{0,8}",
            prefix in prop_oneof![Just("pc_live_"), Just("pc_test_"), Just("pc_lïve_")],
        ) {
            let input = format!("{prefix}{random}{checksum}");
            if let Ok(environment) = check_format(&input) {
                prop_assert_eq!(environment.prefix(), prefix);
                prop_assert_eq!(input.len(), KEY_LEN);
            }
        }
    }
}
