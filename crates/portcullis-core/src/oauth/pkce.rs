//! Proof Key for Code Exchange (RFC 7636), `S256` only.
//!
//! The `plain` method is not offered: it protects nothing once the
//! authorization request leaks (RFC 9700 §2.1.1).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{constant_time_eq, sha256};
use crate::name::CharDisplay;

/// Minimum length of a code verifier, in characters (RFC 7636 §4.1).
pub const MIN_VERIFIER_LEN: usize = 43;

/// Maximum length of a code verifier, in characters (RFC 7636 §4.1).
pub const MAX_VERIFIER_LEN: usize = 128;

/// Length of an S256 code challenge: a SHA-256 digest in unpadded
/// base64url (RFC 7636 §4.2).
pub const CHALLENGE_LEN: usize = 43;

/// Why a code verifier or challenge is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    /// The value has the wrong length.
    #[error("{kind} is {length} characters long; it must be {expected}")]
    Length {
        /// "code_verifier" or "code_challenge".
        kind: &'static str,
        /// The length in characters.
        length: usize,
        /// The allowed length, in words.
        expected: &'static str,
    },
    /// A character is outside the allowed set.
    #[error("{kind} contains {character} at position {position}; allowed are {allowed}")]
    Character {
        /// "code_verifier" or "code_challenge".
        kind: &'static str,
        /// The character, written with its code point.
        character: CharDisplay,
        /// Position of the character, counting from 1.
        position: usize,
        /// The allowed characters, in words.
        allowed: &'static str,
    },
}

/// Checks a `code_verifier`: 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`
/// (RFC 7636 §4.1).
pub fn check_verifier(verifier: &str) -> Result<(), PkceError> {
    check(
        "code_verifier",
        verifier,
        "ASCII letters, digits, '-', '.', '_' and '~'",
        |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'),
    )?;
    let length = verifier.len();
    if !(MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&length) {
        return Err(PkceError::Length {
            kind: "code_verifier",
            length,
            expected: "43 to 128",
        });
    }
    Ok(())
}

/// Checks an S256 `code_challenge`: 43 characters of unpadded base64url.
pub fn check_challenge(challenge: &str) -> Result<(), PkceError> {
    check(
        "code_challenge",
        challenge,
        "ASCII letters, digits, '-' and '_'",
        |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'),
    )?;
    if challenge.len() != CHALLENGE_LEN {
        return Err(PkceError::Length {
            kind: "code_challenge",
            length: challenge.len(),
            expected: "43",
        });
    }
    Ok(())
}

/// Computes the S256 challenge of a verifier:
/// BASE64URL-NOPAD(SHA-256(ASCII(verifier))).
pub fn challenge_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()))
}

/// Checks a verifier against the stored S256 challenge (RFC 7636 §4.6).
///
/// Returns `false` when either value is malformed, so a caller that skipped
/// [`check_verifier`] cannot accept a short verifier. The final comparison
/// runs in constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    if check_verifier(verifier).is_err() || check_challenge(challenge).is_err() {
        return false;
    }
    constant_time_eq(challenge_s256(verifier).as_bytes(), challenge.as_bytes())
}

fn check(
    kind: &'static str,
    input: &str,
    allowed: &'static str,
    is_allowed: impl Fn(char) -> bool,
) -> Result<(), PkceError> {
    match input.chars().enumerate().find(|(_, c)| !is_allowed(*c)) {
        Some((index, c)) => Err(PkceError::Character {
            kind,
            character: CharDisplay(c),
            position: index + 1,
            allowed,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of RFC 7636 Appendix B.
    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_example_verifies() {
        assert_eq!(challenge_s256(RFC_VERIFIER), RFC_CHALLENGE);
        assert!(verify_s256(RFC_VERIFIER, RFC_CHALLENGE));
    }

    #[test]
    fn test_pair_verifies() {
        let verifier = "portcullis-test-verifier-0123456789-abcdefghijklmnop";
        let challenge = "3cPVHIQLnsgqpwwGE33tCJEswn0QApLxx7Mds9Rn_jk";
        assert!(verify_s256(verifier, challenge));
    }

    #[test]
    fn wrong_verifier_rejected() {
        assert!(!verify_s256(
            "wrong-verifier-000000000000000000000000000000000",
            RFC_CHALLENGE
        ));
        // The challenge itself, sent as the verifier, is what a `plain`
        // downgrade would try.
        assert!(!verify_s256(RFC_CHALLENGE, RFC_CHALLENGE));
        assert!(!verify_s256(
            RFC_VERIFIER,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
    }

    #[test]
    fn malformed_values_never_verify() {
        let short = &RFC_VERIFIER[..42];
        assert!(!verify_s256(short, &challenge_s256(short)));
        let padded = format!("{RFC_CHALLENGE}=");
        assert!(!verify_s256(RFC_VERIFIER, &padded));
        assert!(!verify_s256("", ""));
    }

    #[test]
    fn verifier_rules() {
        assert_eq!(check_verifier(RFC_VERIFIER), Ok(()));
        assert_eq!(check_verifier(&"~".repeat(128)), Ok(()));
        assert!(matches!(
            check_verifier(&"a".repeat(42)),
            Err(PkceError::Length { length: 42, .. })
        ));
        assert!(matches!(
            check_verifier(&"a".repeat(129)),
            Err(PkceError::Length { length: 129, .. })
        ));
        let with_plus = format!("{}+", &RFC_VERIFIER[..42]);
        assert!(matches!(
            check_verifier(&with_plus),
            Err(PkceError::Character { position: 43, .. })
        ));
        let cyrillic = format!("\u{0430}{}", &RFC_VERIFIER[1..]);
        let error = check_verifier(&cyrillic).unwrap_err().to_string();
        assert!(error.contains("U+0430"), "{error}");
        assert!(error.contains("position 1"), "{error}");
    }

    #[test]
    fn challenge_rules() {
        assert_eq!(check_challenge(RFC_CHALLENGE), Ok(()));
        assert!(matches!(
            check_challenge(&RFC_CHALLENGE[..42]),
            Err(PkceError::Length { length: 42, .. })
        ));
        assert!(matches!(
            check_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw.cM"),
            Err(PkceError::Character { position: 41, .. })
        ));
    }
}
