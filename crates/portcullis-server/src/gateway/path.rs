//! Request path normalization, done once before any route is matched.
//!
//! The path that Portcullis judges must be the path the upstream receives,
//! so every spelling that another parser could read differently is either
//! rewritten to one canonical form or rejected:
//!
//! - percent-encoded letters, digits, `-`, `_` and `~` are decoded
//!   (RFC 3986 §6.2.2.2), and other escapes get upper-case hex (§6.2.2.1);
//! - `%2E` (dot), `%2F` (slash), `%5C` and `\` (backslash) are rejected,
//!   because servers disagree on whether they separate or name segments;
//! - `.` and `..` segments are removed (RFC 3986 §5.2.4), and a `..` that
//!   would climb above the root is rejected;
//! - a dot segment carrying `;` parameters (`..;`) is rejected, because some
//!   servers strip the parameters and then see a dot segment;
//! - empty segments (`//`) are merged;
//! - literal control characters and `%00` are rejected; other encoded
//!   control characters stay encoded;
//! - nothing is decoded twice: `%252e` stays `%252e`.
//!
//! Case is kept, because paths are case-sensitive (RFC 3986 §6.2.2.1).

use std::fmt;

/// Maximum length of a request path, in bytes.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// The reason a request path was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// The path is longer than [`MAX_PATH_LEN`].
    TooLong,
    /// A `%` is not followed by two hex digits.
    BadEscape,
    /// An encoded dot (`%2E`).
    EncodedDot,
    /// An encoded slash (`%2F`).
    EncodedSlash,
    /// A backslash, literal or encoded (`%5C`).
    Backslash,
    /// A literal control character, or an encoded NUL.
    ControlCharacter,
    /// A dot segment with `;` parameters, such as `..;`.
    DotSegmentParameters,
    /// A `..` segment that climbs above the root.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "the request path must start with '/'",
            Self::TooLong => "the request path is too long",
            Self::BadEscape => "the request path has a '%' not followed by two hex digits",
            Self::EncodedDot => {
                "the request path contains an encoded dot (%2E); write '.' or remove it"
            }
            Self::EncodedSlash => {
                "the request path contains an encoded slash (%2F), which is not accepted"
            }
            Self::Backslash => "the request path contains a backslash, which is not accepted",
            Self::ControlCharacter => {
                "the request path contains a control character or an encoded NUL"
            }
            Self::DotSegmentParameters => {
                "the request path contains a dot segment with ';' parameters"
            }
            Self::AboveRoot => "the request path climbs above the root with '..'",
        })
    }
}

impl std::error::Error for PathError {}

/// Returns the canonical form of `path`, or why it is rejected.
pub fn normalize(path: &str) -> Result<String, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }

    let decoded = decode_unreserved(path)?;
    let ends_with_slash = decoded.ends_with('/');
    let mut segments: Vec<&str> = Vec::new();
    let mut last_was_dot = false;
    for segment in decoded.split('/') {
        let (name, parameters) = match segment.split_once(';') {
            Some((name, _)) => (name, true),
            None => (segment, false),
        };
        last_was_dot = false;
        match name {
            "." | ".." if parameters => return Err(PathError::DotSegmentParameters),
            "" if !parameters => {}
            "." => last_was_dot = true,
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
                last_was_dot = true;
            }
            _ => segments.push(segment),
        }
    }

    let mut normalized = String::with_capacity(decoded.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || ((ends_with_slash || last_was_dot) && !segments.is_empty()) {
        normalized.push('/');
    }
    Ok(normalized)
}

/// Decodes escapes of unreserved characters except `.`, upper-cases the hex
/// of the others, and rejects the characters and escapes listed in the
/// module docs.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex_value);
                let low = bytes.get(index + 2).copied().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(PathError::BadEscape);
                };
                let value = high * 16 + low;
                match value {
                    b'.' => return Err(PathError::EncodedDot),
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    // NUL ends the path for C-based upstreams; other control
                    // characters stay encoded and so cannot split a line.
                    0 => return Err(PathError::ControlCharacter),
                    _ if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'_' | b'~') => {
                        out.push(char::from(value));
                    }
                    _ => {
                        out.push('%');
                        out.push(hex_digit(high));
                        out.push(hex_digit(low));
                    }
                }
                index += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            _ => {
                // The http crate admits only visible ASCII in a path; any
                // other byte is copied as it is and stays a whole character.
                out.push(char::from(byte));
                index += 1;
            }
        }
    }
    Ok(out)
}

fn hex_digit(value: u8) -> char {
    char::from_digit(u32::from(value), 16).map_or('0', |digit| digit.to_ascii_uppercase())
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_unchanged() {
        for path in [
            "/",
            "/orders",
            "/orders/1",
            "/orders/",
            "/a/b;v=1/c",
            "/x%20y",
        ] {
            assert_eq!(normalize(path).as_deref(), Ok(path), "{path}");
        }
    }

    #[test]
    fn dot_segments_and_empty_segments_resolve() {
        let cases = [
            ("/orders/../admin/users", "/admin/users"),
            ("//admin/users", "/admin/users"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a//b//", "/a/b/"),
            ("/..x/y", "/..x/y"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn unreserved_escapes_decode_once() {
        assert_eq!(normalize("/%61dmin/users").as_deref(), Ok("/admin/users"));
        assert_eq!(normalize("/a%7eb%2d").as_deref(), Ok("/a~b-"));
        assert_eq!(
            normalize("/orders/%252e%252e/admin").as_deref(),
            Ok("/orders/%252e%252e/admin")
        );
        assert_eq!(normalize("/q%3fx").as_deref(), Ok("/q%3Fx"));
        assert_eq!(
            normalize("/orders/%0d%0afake").as_deref(),
            Ok("/orders/%0D%0Afake")
        );
    }

    #[test]
    fn ambiguous_spellings_rejected() {
        let cases = [
            ("/orders/%2e%2e/admin/users", PathError::EncodedDot),
            ("/orders/%2E%2E%2Fadmin%2Fusers", PathError::EncodedDot),
            ("/admin%2fusers", PathError::EncodedSlash),
            ("/orders/..\\admin\\users", PathError::Backslash),
            ("/orders/%5c..%5cadmin/users", PathError::Backslash),
            ("/orders/..;/admin/users", PathError::DotSegmentParameters),
            ("/orders/.;x/admin", PathError::DotSegmentParameters),
            ("/%00", PathError::ControlCharacter),
            ("/a\x01b", PathError::ControlCharacter),
            ("/%zz", PathError::BadEscape),
            ("/%4", PathError::BadEscape),
            ("/..", PathError::AboveRoot),
            ("/a/../../b", PathError::AboveRoot),
            ("orders", PathError::NotAbsolute),
        ];
        for (input, error) in cases {
            assert_eq!(normalize(input), Err(error), "{input}");
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for path in ["/orders/../admin/users", "/%61/b/", "//x//y", "/a%252e"] {
            let once = normalize(path).unwrap();
            assert_eq!(normalize(&once).unwrap(), once, "{path}");
        }
    }
}
