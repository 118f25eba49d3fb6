//! Rules for identifiers that people type and read.
//!
//! Tenant names and scope names allow only lower-case ASCII letters, digits
//! and a few separators. That one rule closes off every look-alike: no
//! Cyrillic `а` passing for a Latin `a`, no zero-width space, no full-width
//! letters, no upper case that could fold onto an existing name. A rejected
//! name is reported with the offending character and its position, so the
//! person who typed it can see what went wrong.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest tenant name, so it fits a header value and a log field.
pub const MAX_TENANT_NAME_LEN: usize = 63;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// What kind of identifier was checked ("tenant name", "scope").
        kind: &'static str,
    },
    /// The name was longer than allowed.
    #[error("{kind} is {length} characters long; the maximum is {max}")]
    TooLong {
        /// What kind of identifier was checked.
        kind: &'static str,
        /// The length in characters.
        length: usize,
        /// The maximum length in characters.
        max: usize,
    },
    /// A character is outside the allowed set.
    #[error("{kind} contains {character} at position {position}; allowed are {allowed}")]
    Character {
        /// What kind of identifier was checked.
        kind: &'static str,
        /// The character, written as `U+0430 'а'` so invisible ones show.
        character: CharDisplay,
        /// Position of the character, counting from 1.
        position: usize,
        /// The allowed characters, in words.
        allowed: &'static str,
    },
    /// The name must start with a letter or digit.
    #[error("{kind} must start with a lower-case letter or a digit")]
    Start {
        /// What kind of identifier was checked.
        kind: &'static str,
    },
}

/// A character shown with its code point, so that an invisible or
/// look-alike character is visible in an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharDisplay(pub char);

impl fmt::Display for CharDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.is_ascii_graphic() {
            write!(f, "U+{:04X} '{c}'", u32::from(c))
        } else {
            // The character itself may be invisible or a control character
            // that would break the line: show the code point only.
            write!(f, "U+{:04X}", u32::from(c))
        }
    }
}

/// Checks `input` against an allowed character set, reporting the first
/// character outside it with its position.
pub(crate) fn check_identifier(
    kind: &'static str,
    input: &str,
    max_len: usize,
    allowed_words: &'static str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    if input.is_empty() {
        return Err(NameError::Empty { kind });
    }
    for (index, c) in input.chars().enumerate() {
        if !allowed(c) {
            return Err(NameError::Character {
                kind,
                character: CharDisplay(c),
                position: index + 1,
                allowed: allowed_words,
            });
        }
    }
    let length = input.chars().count();
    if length > max_len {
        return Err(NameError::TooLong {
            kind,
            length,
            max: max_len,
        });
    }
    Ok(())
}

/// A tenant's name: one customer of the SaaS company, such as
/// `acme-billing`.
///
/// Lower-case ASCII letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit, at most [`MAX_TENANT_NAME_LEN`] characters. Upper case
/// is rejected rather than folded, so what is stored is exactly what was
/// typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

const TENANT_ALLOWED: &str = "lower-case ASCII letters, digits, '.', '_' and '-'";

impl TenantName {
    /// Checks and wraps a tenant name.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        const KIND: &str = "tenant name";
        check_identifier(KIND, input, MAX_TENANT_NAME_LEN, TENANT_ALLOWED, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
        })?;
        if !input.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(NameError::Start { kind: KIND });
        }
        Ok(Self(input.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantName {
    type Error = NameError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TenantName> for String {
    fn from(value: TenantName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_accepted() {
        for name in ["acme", "acme-billing", "a.b_c-9", "9lives"] {
            assert!(TenantName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn look_alikes_rejected_with_position() {
        let cases = [
            ("\u{0430}cme-billing", 1, 0x0430),
            ("acme-billing\u{200b}", 13, 0x200B),
            ("\u{ff41}\u{ff43}\u{ff4d}\u{ff45}-billing", 1, 0xFF41),
            ("Acme-Billing", 1, u32::from('A')),
        ];
        for (input, position, code_point) in cases {
            match TenantName::parse(input) {
                Err(NameError::Character {
                    position: p,
                    character,
                    ..
                }) => {
                    assert_eq!(p, position, "{input:?}");
                    assert_eq!(u32::from(character.0), code_point, "{input:?}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn message_shows_invisible_character() {
        let error = TenantName::parse("acme\u{200b}").unwrap_err().to_string();
        assert!(error.contains("U+200B"), "{error}");
        assert!(error.contains("position 5"), "{error}");
        assert!(!error.contains('\u{200b}'), "{error}");
    }

    #[test]
    fn empty_long_and_bad_start_rejected() {
        assert!(matches!(
            TenantName::parse(""),
            Err(NameError::Empty { .. })
        ));
        let long = "a".repeat(MAX_TENANT_NAME_LEN + 1);
        assert!(matches!(
            TenantName::parse(&long),
            Err(NameError::TooLong { .. })
        ));
        assert!(matches!(
            TenantName::parse("-acme"),
            Err(NameError::Start { .. })
        ));
    }
}
