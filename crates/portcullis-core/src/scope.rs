//! Scope names, scope sets and scope matching.
//!
//! A scope is a resource and an action, such as `customers:read`. A granted
//! scope may end in `:*` to cover every action on its resource
//! (`customers:*` covers `customers:read` and `customers:write`). A route
//! never requires a wildcard; it names the exact scope it needs.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::{NameError, check_identifier};

/// Longest scope name.
pub const MAX_SCOPE_LEN: usize = 64;

/// Most scopes one credential or route may carry, so a header listing them
/// stays small.
pub const MAX_SCOPES: usize = 64;

const SCOPE_ALLOWED: &str = "lower-case ASCII letters, digits, ':', '.', '_', '-' and a final '*'";

/// Why a scope or scope list was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A scope name broke the character rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A `*` appeared anywhere but as the whole last segment.
    #[error("scope {0:?} may use '*' only as its whole last part, as in customers:*")]
    Wildcard(String),
    /// More scopes than [`MAX_SCOPES`].
    #[error("too many scopes: {0}; the maximum is {MAX_SCOPES}")]
    TooMany(usize),
}

/// One scope name, checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    /// Checks and wraps a scope name.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        check_identifier("scope", input, MAX_SCOPE_LEN, SCOPE_ALLOWED, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '.' | '_' | '-' | '*')
        })?;
        if let Some(star) = input.find('*') {
            let whole_last_part = star + 1 == input.len() && input[..star].ends_with(':');
            if !whole_last_part {
                return Err(ScopeError::Wildcard(input.to_owned()));
            }
        }
        Ok(Self(input.to_owned()))
    }

    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this scope ends in `:*`.
    pub fn is_wildcard(&self) -> bool {
        self.0.ends_with(":*")
    }

    /// Whether holding this scope grants `required`.
    pub fn grants(&self, required: &Self) -> bool {
        match self.0.strip_suffix('*') {
            Some(resource) => required.0.starts_with(resource) && !required.is_wildcard(),
            None => self.0 == required.0,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Scope> for String {
    fn from(value: Scope) -> Self {
        value.0
    }
}

/// A set of scopes, kept sorted so it prints and compares the same way
/// wherever it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Scope>", into = "Vec<Scope>")]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// Parses a comma- or space-separated list, such as `a:read,b:write`.
    pub fn parse_list(input: &str) -> Result<Self, ScopeError> {
        let scopes = input
            .split([',', ' '])
            .filter(|part| !part.is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Self::try_from(scopes)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The scopes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether some scope of this set grants `required`.
    pub fn grants(&self, required: &Scope) -> bool {
        self.0.iter().any(|held| held.grants(required))
    }

    /// The first scope of `required` that this set does not grant, if any.
    pub fn first_missing<'a>(&self, required: &'a Self) -> Option<&'a Scope> {
        required.iter().find(|scope| !self.grants(scope))
    }

    /// The scopes joined by single spaces, as OAuth's `scope` parameter and
    /// the `X-Portcullis-Scopes` header write them.
    pub fn to_space_separated(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(Scope::as_str).collect();
        names.join(" ")
    }
}

impl TryFrom<Vec<Scope>> for ScopeSet {
    type Error = ScopeError;

    fn try_from(scopes: Vec<Scope>) -> Result<Self, Self::Error> {
        let set: BTreeSet<Scope> = scopes.into_iter().collect();
        if set.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany(set.len()));
        }
        Ok(Self(set))
    }
}

impl From<ScopeSet> for Vec<Scope> {
    fn from(value: ScopeSet) -> Self {
        value.0.into_iter().collect()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_space_separated())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn exact_scope_grants_only_itself() {
        assert!(scope("customers:read").grants(&scope("customers:read")));
        assert!(!scope("customers:read").grants(&scope("customers:write")));
        assert!(!scope("customers:read").grants(&scope("customers:readx")));
    }

    #[test]
    fn wildcard_grants_its_resource() {
        let all = scope("customers:*");
        assert!(all.grants(&scope("customers:read")));
        assert!(all.grants(&scope("customers:write")));
        assert!(!all.grants(&scope("orders:read")));
        assert!(!all.grants(&scope("customersx:read")));
        assert!(
            !all.grants(&scope("customers:*")),
            "a wildcard is never required"
        );
    }

    #[test]
    fn misplaced_wildcards_rejected() {
        for input in ["*", "customers*", "*:read", "customers:*:read", "a:b*"] {
            assert!(Scope::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn look_alike_scope_rejected() {
        let error = Scope::parse("\u{043e}rders:read").unwrap_err().to_string();
        assert!(error.contains("U+043E"), "{error}");
        assert!(error.contains("position 1"), "{error}");
    }

    #[test]
    fn list_parses_and_sorts() {
        let set = ScopeSet::parse_list("b:write, a:read,a:read").unwrap();
        assert_eq!(set.to_space_separated(), "a:read b:write");
    }

    #[test]
    fn first_missing_names_scope() {
        let held = ScopeSet::parse_list("orders:read").unwrap();
        let needed = ScopeSet::parse_list("orders:read,orders:write").unwrap();
        assert_eq!(
            held.first_missing(&needed).map(Scope::as_str),
            Some("orders:write")
        );
        assert_eq!(held.first_missing(&held), None);
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_rejected(input in ".{0,80}") {
            let _ = ScopeSet::parse_list(&input);
        }

        #[test]
        fn exact_scopes_grant_exactly(a in "[a-z]{1,8}:[a-z]{1,8}", b in "[a-z]{1,8}:[a-z]{1,8}") {
            prop_assert_eq!(scope(&a).grants(&scope(&b)), a == b);
        }
    }
}
