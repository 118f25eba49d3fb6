//! Escaping of text that goes into one line of a log or of a JSON Lines
//! export, so that no value can start a new line or rewrite what a
//! terminal shows.
//!
//! JSON (RFC 8259 §7) requires escapes only for U+0000 to U+001F, `"` and
//! `\`. Other characters still end a line or change the display in common
//! readers: U+0085 (NEL), U+2028 and U+2029 are line terminators in
//! Unicode-aware tools and in JavaScript before ES2019, DEL and the other C1
//! controls drive terminals, and the bidirectional controls reorder the
//! text that follows them. Both functions below escape all of these.

use std::fmt::Write as _;

/// Returns whether `c` must not appear raw in a log line or export line.
pub fn is_unsafe_in_line(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// Escapes every character of [`is_unsafe_in_line`] in serialized JSON as
/// `\uXXXX`.
///
/// `json` must be the compact output of a JSON serializer. There, these
/// characters can only occur inside strings, where `\uXXXX` is a valid
/// escape with the same meaning, so the result parses to the same value.
pub fn escape_json_line(json: &str) -> String {
    let mut escaped = String::with_capacity(json.len());
    for c in json.chars() {
        if is_unsafe_in_line(c) {
            // Each of these characters is in the Basic Multilingual Plane,
            // so one four-digit escape writes it.
            let _ = write!(escaped, "\\u{:04x}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Escapes every character of [`is_unsafe_in_line`] in human-readable text:
/// `\n`, `\r` and `\t` by name, the others as `\u{XX}` as Rust's `Debug`
/// writes them. Backslashes stay as they are.
pub fn escape_text_line(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if is_unsafe_in_line(c) => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
            }
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_escapes_separators_and_controls() {
        let value =
            serde_json::json!({ "reason": "a\u{2028}b\u{2029}c\u{85}d\u{202e}e\u{7f}f\ng" });
        let line = escape_json_line(&value.to_string());
        assert_eq!(
            line,
            r#"{"reason":"a\u2028b\u2029c\u0085d\u202ee\u007ff\ng"}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, value);
    }

    #[test]
    fn json_line_keeps_other_text() {
        let line = r#"{"name":"Zoë \\ 東京 ✓"}"#;
        assert_eq!(escape_json_line(line), line);
    }

    #[test]
    fn text_line_has_no_raw_controls() {
        let escaped = escape_text_line("a\r\nb\u{1b}[2J\u{2028}c\u{85}\\n");
        assert_eq!(escaped, "a\\r\\nb\\u{1b}[2J\\u{2028}c\\u{85}\\n");
        assert!(!escaped.chars().any(is_unsafe_in_line));
    }
}
