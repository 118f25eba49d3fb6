//! Redirect URIs: what a client may register and how a presented URI is
//! matched against the registered ones.
//!
//! A registered URI is one of:
//!
//! - an `https` URI;
//! - an `http` URI on a loopback host, written `127.0.0.1`, `[::1]` or
//!   `localhost`, for native apps (RFC 8252 §7.3). RFC 8252 §8.3 prefers the
//!   IP literals, because `localhost` may resolve elsewhere;
//! - a private-use scheme with a dot in it, such as `com.example.app:/cb`
//!   (RFC 8252 §7.1).
//!
//! It has no fragment (RFC 6749 §3.1.2), no user information, no `*` (no
//! patterns are registered) and only printable ASCII, so look-alike hosts
//! must be written in punycode.
//!
//! Matching compares whole strings exactly (RFC 9700 §2.1 and §4.1.3): no
//! prefix, no case folding, no normalisation. The one exception is the port
//! of an `http` URI whose host is a loopback IP literal, which may differ,
//! because a native app listens on whatever port the system gives it
//! (RFC 8252 §7.3). `localhost` gets no such exception.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

use crate::name::CharDisplay;

/// Maximum length of a redirect URI, in characters. The code, `state` and
/// `iss` are appended to it, so the limit leaves room below the URL lengths
/// that browsers and servers commonly accept (an estimate, not a standard).
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

/// The loopback hosts whose port is ignored when matching (RFC 8252 §7.3).
const LOOPBACK_IP_HOSTS: [&str; 2] = ["127.0.0.1", "[::1]"];

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    /// The URI was empty.
    #[error("redirect URI must not be empty")]
    Empty,
    /// The URI was longer than [`MAX_REDIRECT_URI_LEN`].
    #[error("redirect URI is {0} characters long; the maximum is {MAX_REDIRECT_URI_LEN}")]
    TooLong(usize),
    /// A character is not printable ASCII.
    #[error(
        "redirect URI contains {character} at position {position}; only printable ASCII is \
         allowed, so write international host names in punycode"
    )]
    Character {
        /// The character, written with its code point.
        character: CharDisplay,
        /// Position of the character, counting from 1.
        position: usize,
    },
    /// The URI contains `*`: patterns are not registered.
    #[error("redirect URI must not contain '*'; register each URI in full")]
    Wildcard,
    /// The URI is not an absolute URI.
    #[error("redirect URI is not an absolute URI: {0}")]
    Invalid(url::ParseError),
    /// The URI has a fragment (RFC 6749 §3.1.2).
    #[error("redirect URI must not contain a fragment ('#')")]
    Fragment,
    /// The URI has a user name or password.
    #[error("redirect URI must not contain a user name or password")]
    UserInfo,
    /// `http` on a host that is not a loopback address.
    #[error("redirect URI uses http on a host other than 127.0.0.1, [::1] or localhost; use https")]
    HttpNotLoopback,
    /// A scheme that is neither `https`, `http` nor a private-use scheme.
    #[error(
        "redirect URI scheme {0:?} is not allowed; use https, http on a loopback address, or a \
         private-use scheme with a dot such as com.example.app"
    )]
    Scheme(String),
}

/// A registered redirect URI, checked against the rules of this module and
/// kept exactly as it was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Checks a URI for registration and wraps it unchanged.
    pub fn parse(input: &str) -> Result<Self, RedirectUriError> {
        check_text(input)?;
        let url = Url::parse(input).map_err(RedirectUriError::Invalid)?;
        if url.fragment().is_some() {
            return Err(RedirectUriError::Fragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo);
        }

        match url.scheme() {
            "https" if url.host().is_some() => {}
            "http" => {
                // The URL parser also reads `127.1` or `2130706433` as
                // 127.0.0.1, so the host is checked as written, too.
                let loopback = matches!(
                    url.host(),
                    Some(Host::Ipv4(ip)) if ip.is_loopback()
                ) || matches!(url.host(), Some(Host::Ipv6(ip)) if ip.is_loopback())
                    || url.host_str() == Some("localhost");
                if !loopback || split_http(input).is_none() {
                    return Err(RedirectUriError::HttpNotLoopback);
                }
            }
            scheme if scheme.contains('.') && input.starts_with(scheme) => {}
            scheme => return Err(RedirectUriError::Scheme(scheme.to_owned())),
        }
        Ok(Self(input.to_owned()))
    }

    /// The URI as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this URI uses `http` on a loopback IP literal, so that
    /// [`Self::matches`] accepts any port.
    pub fn is_loopback_ip(&self) -> bool {
        split_http(&self.0).is_some_and(|parts| LOOPBACK_IP_HOSTS.contains(&parts.host))
    }

    /// Whether `presented`, a `redirect_uri` from a request, names this
    /// registered URI.
    ///
    /// The comparison is exact, character for character, except that for
    /// an `http` URI on `127.0.0.1` or `[::1]` the port may differ or be
    /// absent (RFC 8252 §7.3). Scheme, host, path and query must still be
    /// identical, and the port must be a number from 1 to 65535.
    pub fn matches(&self, presented: &str) -> bool {
        if self.0 == presented {
            return true;
        }
        if !self.is_loopback_ip() {
            return false;
        }
        let (Some(registered), Some(presented)) = (split_http(&self.0), split_http(presented))
        else {
            return false;
        };
        registered.host == presented.host
            && registered.rest == presented.rest
            && presented.port.is_none_or(is_port_number)
    }
}

/// An `http://` URI on a loopback host, cut into its parts as written.
struct HttpParts<'a> {
    /// `127.0.0.1`, `[::1]` or `localhost`.
    host: &'a str,
    /// The digits after `:`, if any.
    port: Option<&'a str>,
    /// Path, query and fragment: everything after the authority.
    rest: &'a str,
}

/// Splits `http://HOST[:PORT]REST` when HOST is written exactly as one of
/// the loopback hosts. Returns `None` for anything else, user information
/// included.
fn split_http(uri: &str) -> Option<HttpParts<'_>> {
    let after_scheme = uri.strip_prefix("http://")?;
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(authority_end);
    let host_end = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |end| end + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(host_end);
    if !(LOOPBACK_IP_HOSTS.contains(&host) || host == "localhost") {
        return None;
    }
    let port = match port.strip_prefix(':') {
        Some(digits) => Some(digits),
        None if port.is_empty() => None,
        None => return None,
    };
    Some(HttpParts { host, port, rest })
}

/// Whether `digits` is a port number from 1 to 65535, written in decimal.
fn is_port_number(digits: &str) -> bool {
    digits.bytes().all(|byte| byte.is_ascii_digit())
        && digits.parse::<u16>().is_ok_and(|port| port != 0)
}

/// Checks length, characters and `*` before the URI is parsed, because
/// the URL parser would silently drop tabs, line breaks and surrounding
/// spaces.
fn check_text(input: &str) -> Result<(), RedirectUriError> {
    if input.is_empty() {
        return Err(RedirectUriError::Empty);
    }
    for (index, c) in input.chars().enumerate() {
        if !c.is_ascii_graphic() {
            return Err(RedirectUriError::Character {
                character: CharDisplay(c),
                position: index + 1,
            });
        }
    }
    if input.len() > MAX_REDIRECT_URI_LEN {
        return Err(RedirectUriError::TooLong(input.len()));
    }
    if input.contains('*') {
        return Err(RedirectUriError::Wildcard);
    }
    Ok(())
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RedirectUri {
    type Err = RedirectUriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for RedirectUri {
    type Error = RedirectUriError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RedirectUri> for String {
    fn from(value: RedirectUri) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> RedirectUri {
        RedirectUri::parse(text).unwrap()
    }

    #[test]
    fn allowed_uris_registered_unchanged() {
        for text in [
            "https://app.example.com/callback",
            "https://app.example.com",
            "https://app.example.com:8443/cb?tenant=acme",
            "http://127.0.0.1/callback",
            "http://127.0.0.1:8080/callback",
            "http://[::1]/callback",
            "http://localhost:3000/callback",
            "com.example.app:/cb",
            "com.example.app:/oauth2redirect/example-provider",
        ] {
            assert_eq!(uri(text).as_str(), text);
        }
    }

    #[test]
    fn patterns_rejected_at_registration() {
        for text in [
            "https://app.example.com*",
            "https://*.example.com/callback",
            "https://app.example.com/*",
        ] {
            assert_eq!(
                RedirectUri::parse(text),
                Err(RedirectUriError::Wildcard),
                "{text}"
            );
        }
    }

    #[test]
    fn unsafe_uris_rejected_at_registration() {
        let cases = [
            ("", RedirectUriError::Empty),
            ("https://app.example.com/cb#top", RedirectUriError::Fragment),
            (
                "https://user:pw@app.example.com/cb",
                RedirectUriError::UserInfo,
            ),
            (
                "https://user@app.example.com/cb",
                RedirectUriError::UserInfo,
            ),
            (
                "http://app.example.com/cb",
                RedirectUriError::HttpNotLoopback,
            ),
            ("http://127.1/cb", RedirectUriError::HttpNotLoopback),
            ("http://2130706433/cb", RedirectUriError::HttpNotLoopback),
            (
                "http://127.0.0.1.example.test/cb",
                RedirectUriError::HttpNotLoopback,
            ),
            (
                "javascript:alert(1)",
                RedirectUriError::Scheme("javascript".to_owned()),
            ),
            (
                "ftp://files.example.com/cb",
                RedirectUriError::Scheme("ftp".to_owned()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(RedirectUri::parse(text), Err(expected), "{text}");
        }
        assert!(matches!(
            RedirectUri::parse("/callback"),
            Err(RedirectUriError::Invalid(_))
        ));
        let long = format!(
            "https://app.example.com/{}",
            "a".repeat(MAX_REDIRECT_URI_LEN)
        );
        assert!(matches!(
            RedirectUri::parse(&long),
            Err(RedirectUriError::TooLong(_))
        ));
    }

    #[test]
    fn invisible_and_look_alike_characters_rejected_with_position() {
        let cases = [
            (" https://app.example.com/cb", 1, 0x20),
            ("https://app.example.com/cb\t", 27, 0x09),
            ("https://\u{0430}pp.example.com/cb", 9, 0x0430),
            ("https://app.example.com/c\u{200b}b", 26, 0x200B),
        ];
        for (text, position, code_point) in cases {
            match RedirectUri::parse(text) {
                Err(RedirectUriError::Character {
                    character,
                    position: p,
                }) => {
                    assert_eq!(p, position, "{text:?}");
                    assert_eq!(u32::from(character.0), code_point, "{text:?}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    /// A presented URI that only starts like the registered one, or differs
    /// in port, case or a trailing part, is no match.
    #[test]
    fn https_matches_only_exact_string() {
        let registered = uri("https://app.example.com/callback");
        assert!(registered.matches("https://app.example.com/callback"));
        for presented in [
            "https://app.example.com.example.test/callback",
            "https://app.example.com/callbackx",
            "https://app.example.com/callback/more",
            "https://app.example.com/callback?next=%2F",
            "https://app.example.com:443/callback",
            "https://app.example.com/Callback",
            "https://app.example.com:8443/callback",
            "HTTPS://app.example.com/callback",
            "https://app.example.com/callback#",
            "https://app.example.com/callback/",
            "",
        ] {
            assert!(!registered.matches(presented), "{presented}");
        }
    }

    /// For `http://127.0.0.1/callback`, any port matches, and nothing else
    /// may differ: not the host spelling, the scheme or the path.
    #[test]
    fn loopback_ip_matches_any_port() {
        let registered = uri("http://127.0.0.1/callback");
        assert!(registered.is_loopback_ip());
        for presented in [
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53219/callback",
            "http://127.0.0.1:1/callback",
            "http://127.0.0.1:65535/callback",
        ] {
            assert!(registered.matches(presented), "{presented}");
        }
        for presented in [
            "http://localhost:53219/callback",
            "http://127.0.0.1:53219/other",
            "https://127.0.0.1:53219/callback",
            "http://[::1]:53219/callback",
            "http://127.0.0.1:53219/callback?x=1",
            "http://127.0.0.1:53219/callback#frag",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:65536/callback",
            "http://127.0.0.1:+80/callback",
            "http://127.0.0.1:80x/callback",
            "http://evil@127.0.0.1:53219/callback",
            "http://127.0.0.1.example.test/callback",
            "http://127.0.0.1:53219",
        ] {
            assert!(!registered.matches(presented), "{presented}");
        }
    }

    #[test]
    fn ipv6_loopback_matches_any_port() {
        let registered = uri("http://[::1]:8080/cb");
        assert!(registered.matches("http://[::1]:53219/cb"));
        assert!(registered.matches("http://[::1]/cb"));
        assert!(!registered.matches("http://127.0.0.1:53219/cb"));
        assert!(!registered.matches("http://[0:0:0:0:0:0:0:1]:53219/cb"));
    }

    /// `localhost` is registrable but matches exactly, port included.
    #[test]
    fn localhost_matches_exactly() {
        let registered = uri("http://localhost:3000/cb");
        assert!(!registered.is_loopback_ip());
        assert!(registered.matches("http://localhost:3000/cb"));
        assert!(!registered.matches("http://localhost:3001/cb"));
        assert!(!registered.matches("http://127.0.0.1:3000/cb"));
    }

    #[test]
    fn https_on_loopback_matches_exactly() {
        let registered = uri("https://127.0.0.1/cb");
        assert!(!registered.is_loopback_ip());
        assert!(!registered.matches("https://127.0.0.1:8443/cb"));
    }

    #[test]
    fn private_use_scheme_matches_exactly() {
        let registered = uri("com.example.app:/cb");
        assert!(registered.matches("com.example.app:/cb"));
        assert!(!registered.matches("com.example.app:/cb2"));
        assert!(!registered.matches("com.example.evil:/cb"));
        assert!(!registered.matches("COM.EXAMPLE.APP:/cb"));
    }
}
