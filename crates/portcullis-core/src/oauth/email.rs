//! The e-mail address a user signs in with.
//!
//! Addresses are ASCII only and drawn from a conservative character set,
//! so two addresses that look alike on screen are the same bytes: no
//! Cyrillic `о` for a Latin `o`, no zero-width space, no full-width letters.
//! The whole address is lower-cased, so `Ops@Example.com` and
//! `ops@example.com` name one user. Mail servers may treat the local part
//! as case-sensitive (RFC 5321 §2.4), but almost none do, and one identity
//! per spelling matters more here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::{CharDisplay, NameError, check_identifier};

/// Maximum length of an address, in characters: the longest forward path of RFC 5321
/// §4.5.3.1.3 (256) less its angle brackets.
pub const MAX_EMAIL_LEN: usize = 254;

/// Maximum length of the local part, in characters (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_LEN: usize = 64;

/// Maximum length of one label of the domain, in characters (RFC 1035
/// §2.3.4).
pub const MAX_DOMAIN_LABEL_LEN: usize = 63;

const KIND: &str = "e-mail address";

const EMAIL_ALLOWED: &str = "ASCII letters, digits, '.', '_', '%', '+' and '-' before the '@', \
                             and ASCII letters, digits, '-' and '.' after it";

/// Why an e-mail address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Empty, too long or a character outside the allowed set.
    #[error(transparent)]
    Name(#[from] NameError),
    /// Not of the form `local@domain` with one `@`.
    #[error("e-mail address must have the form name@example.com with one '@'")]
    Form,
    /// The local part is longer than [`MAX_LOCAL_PART_LEN`].
    #[error(
        "e-mail address has {0} characters before the '@'; the maximum is {MAX_LOCAL_PART_LEN}"
    )]
    LocalPartTooLong(usize),
    /// A dot at the start or end of a part, or two dots in a row.
    #[error("e-mail address has a misplaced '.' in {0}")]
    Dot(&'static str),
    /// The domain has no dot, or a label starts or ends with '-'.
    #[error("e-mail address domain must be a name such as example.com: {0}")]
    Domain(&'static str),
}

/// A checked, lower-cased e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Checks an address and returns it lower-cased.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        // One pass over the whole address with the union of both parts'
        // sets catches non-ASCII and invisible characters with their
        // position; the part-specific rules follow.
        check_identifier(KIND, input, MAX_EMAIL_LEN, EMAIL_ALLOWED, |c| {
            is_local_char(c) || c == '@'
        })?;
        let Some((local, domain)) = input.split_once('@') else {
            return Err(EmailError::Form);
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(EmailError::Form);
        }
        if local.len() > MAX_LOCAL_PART_LEN {
            return Err(EmailError::LocalPartTooLong(local.len()));
        }
        check_dots(local, "the part before the '@'")?;

        let domain_start = local.len() + 1;
        for (index, c) in domain.chars().enumerate() {
            if !is_domain_char(c) {
                return Err(NameError::Character {
                    kind: KIND,
                    character: CharDisplay(c),
                    position: domain_start + index + 1,
                    allowed: EMAIL_ALLOWED,
                }
                .into());
            }
        }
        check_dots(domain, "the domain")?;
        if !domain.contains('.') {
            return Err(EmailError::Domain("it has no '.'"));
        }
        if domain
            .split('.')
            .any(|label| label.starts_with('-') || label.ends_with('-'))
        {
            return Err(EmailError::Domain("a part starts or ends with '-'"));
        }
        if domain
            .split('.')
            .any(|label| label.len() > MAX_DOMAIN_LABEL_LEN)
        {
            return Err(EmailError::Domain("a part is longer than 63 characters"));
        }
        Ok(Self(input.to_ascii_lowercase()))
    }

    /// The address as text, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.')
}

fn check_dots(part: &str, which: &'static str) -> Result<(), EmailError> {
    if part.starts_with('.') || part.ends_with('.') || part.contains("..") {
        return Err(EmailError::Dot(which));
    }
    Ok(())
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Email {
    type Err = EmailError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_accepted() {
        for text in [
            "ops@example.com",
            "first.last+tag@mail.example.co.uk",
            "a_b%c-d@x-y.example",
            "9@example.com",
        ] {
            assert_eq!(Email::parse(text).unwrap().as_str(), text);
        }
    }

    #[test]
    fn case_folds_to_one_address() {
        let upper = Email::parse("Ops@Example.COM").unwrap();
        let lower = Email::parse("ops@example.com").unwrap();
        assert_eq!(upper, lower);
        assert_eq!(upper.as_str(), "ops@example.com");
    }

    #[test]
    fn look_alikes_rejected_with_position() {
        let cases = [
            ("\u{043e}ps@example.com", 1, 0x043E),
            ("ops@ex\u{0430}mple.com", 7, 0x0430),
            ("ops\u{200b}@example.com", 4, 0x200B),
            ("\u{ff4f}ps@example.com", 1, 0xFF4F),
            ("ops@example.com\u{0}", 16, 0),
            ("o ps@example.com", 2, 0x20),
            ("ops@exa_mple.com", 8, u32::from('_')),
            ("ops@example+x.com", 12, u32::from('+')),
        ];
        for (input, position, code_point) in cases {
            match Email::parse(input) {
                Err(EmailError::Name(NameError::Character {
                    position: p,
                    character,
                    ..
                })) => {
                    assert_eq!(p, position, "{input:?}");
                    assert_eq!(u32::from(character.0), code_point, "{input:?}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn message_names_character_and_position() {
        let error = Email::parse("\u{043e}ps@example.com")
            .unwrap_err()
            .to_string();
        assert!(error.contains("U+043E"), "{error}");
        assert!(error.contains("position 1"), "{error}");
        assert!(error.starts_with("e-mail address"), "{error}");
    }

    #[test]
    fn malformed_addresses_rejected() {
        assert!(matches!(
            Email::parse(""),
            Err(EmailError::Name(NameError::Empty { .. }))
        ));
        for text in ["ops", "@example.com", "ops@", "a@b@example.com"] {
            assert_eq!(Email::parse(text), Err(EmailError::Form), "{text}");
        }
        for text in [".ops@example.com", "o..ps@example.com", "ops@example.com."] {
            assert!(
                matches!(Email::parse(text), Err(EmailError::Dot(_))),
                "{text}"
            );
        }
        let long_label = format!("ops@{}.com", "a".repeat(MAX_DOMAIN_LABEL_LEN + 1));
        for text in [
            "ops@localhost",
            "ops@-example.com",
            "ops@example-.com",
            long_label.as_str(),
        ] {
            assert!(
                matches!(Email::parse(text), Err(EmailError::Domain(_))),
                "{text}"
            );
        }
        let long_local = format!("{}@example.com", "a".repeat(MAX_LOCAL_PART_LEN + 1));
        assert_eq!(
            Email::parse(&long_local),
            Err(EmailError::LocalPartTooLong(MAX_LOCAL_PART_LEN + 1))
        );
        let long = format!("ops@{}.com", "a".repeat(MAX_EMAIL_LEN));
        assert!(matches!(
            Email::parse(&long),
            Err(EmailError::Name(NameError::TooLong { .. }))
        ));
    }
}
