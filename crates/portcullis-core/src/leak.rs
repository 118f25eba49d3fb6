//! Finding API keys in arbitrary text, for `portcullis scan` and leak
//! reports.
//!
//! The search uses the key format alone, with no regular expression: find
//! `pc_live_` or `pc_test_`, take the next [`RANDOM_LEN`] + [`CHECKSUM_LEN`]
//! bytes, and check alphabet and checksum with [`check_format`]. A string
//! that has a key's shape but a wrong checksum is a look-alike (an example
//! in documentation, a truncated or edited key) and never counts as a key.

use crate::key::{CHECKSUM_LEN, Environment, KEY_LEN, KeyFormatError, PREFIX_LEN, RANDOM_LEN};
use crate::key::{check_format, visible_prefix};

/// One key-shaped string found in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Byte offset of the prefix's first character.
    pub offset: usize,
    /// The classification: a key of one environment, or a look-alike.
    pub verdict: Verdict,
}

/// Whether a key-shaped string is a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Prefix, length, alphabet and checksum are all right.
    Key(Environment),
    /// The string has a key's prefix, length and alphabet, but its checksum
    /// does not match.
    BadChecksum,
}

impl Candidate {
    /// Returns the key text inside `haystack`, the slice this candidate was
    /// found in. The text is empty when `haystack` is another slice.
    pub fn text<'a>(&self, haystack: &'a [u8]) -> &'a str {
        haystack
            .get(self.offset..self.offset + KEY_LEN)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }

    /// Returns the part of the candidate that may be shown, as
    /// [`visible_prefix`] cuts it.
    pub fn visible_prefix(&self, haystack: &[u8]) -> String {
        visible_prefix(self.text(haystack))
    }
}

/// Finds every key-shaped string in `haystack`, in order of offset.
///
/// A match needs a prefix followed by [`RANDOM_LEN`] + [`CHECKSUM_LEN`]
/// ASCII letters and digits. What comes before or after does not matter,
/// so a key glued to other text (`KEY=pc_live_…`, `"pc_live_…"x`) is still
/// found. The cost is linear in the length of `haystack`.
pub fn find_candidates(haystack: &[u8]) -> Vec<Candidate> {
    let mut found = Vec::new();
    let mut start = 0;
    while let Some(position) = find_prefix(haystack, start) {
        let Some(window) = haystack.get(position..position + KEY_LEN) else {
            break;
        };
        let tail = window.get(PREFIX_LEN..).unwrap_or_default();
        if tail.len() != RANDOM_LEN + CHECKSUM_LEN || !tail.iter().all(u8::is_ascii_alphanumeric) {
            start = position + 1;
            continue;
        }

        // The window is ASCII: a prefix and alphanumerics.
        let text = std::str::from_utf8(window).unwrap_or_default();
        let verdict = match check_format(text) {
            Ok(environment) => Verdict::Key(environment),
            Err(KeyFormatError::Checksum) => Verdict::BadChecksum,
            Err(_) => {
                start = position + 1;
                continue;
            }
        };
        found.push(Candidate {
            offset: position,
            verdict,
        });
        start = position + KEY_LEN;
    }
    found
}

/// Finds the next `pc_live_` or `pc_test_` at or after `start`.
fn find_prefix(haystack: &[u8], start: usize) -> Option<usize> {
    let live = Environment::Live.prefix().as_bytes();
    let test = Environment::Test.prefix().as_bytes();
    let rest = haystack.get(start..)?;
    rest.windows(PREFIX_LEN)
        .position(|window| window == live || window == test)
        .map(|position| start + position)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::key::KeySecret;

    fn bad_checksum(key: &str) -> String {
        let mut bytes = key.as_bytes().to_vec();
        let last = KEY_LEN - 1;
        bytes[last] = if bytes[last] == b'a' { b'b' } else { b'a' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn finds_keys_glued_to_text() {
        let live = KeySecret::generate(Environment::Live).unwrap();
        let test = KeySecret::generate(Environment::Test).unwrap();
        let text = format!("API_KEY={}\n\"{}\"x", live.expose(), test.expose());
        let found = find_candidates(text.as_bytes());
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].offset, 8);
        assert_eq!(found[0].verdict, Verdict::Key(Environment::Live));
        assert_eq!(found[0].text(text.as_bytes()), live.expose());
        assert_eq!(found[1].verdict, Verdict::Key(Environment::Test));
        assert_eq!(found[1].text(text.as_bytes()), test.expose());
        assert_eq!(
            found[1].visible_prefix(text.as_bytes()),
            test.visible_prefix()
        );
    }

    #[test]
    fn look_alike_is_not_a_key() {
        let key = KeySecret::generate(Environment::Live).unwrap();
        let text = format!("token: {}", bad_checksum(key.expose()));
        let found = find_candidates(text.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::BadChecksum);
    }

    #[test]
    fn short_or_symbol_broken_strings_are_skipped() {
        let key = KeySecret::generate(Environment::Live).unwrap();
        let short = &key.expose()[..KEY_LEN - 1];
        let broken = format!("{}-{}", &key.expose()[..20], &key.expose()[21..]);
        for text in [
            "pc_live_".to_owned(),
            "see pc_live_... in the docs".to_owned(),
            short.to_owned(),
            broken,
        ] {
            assert_eq!(find_candidates(text.as_bytes()), Vec::new(), "{text}");
        }
    }

    #[test]
    fn prefix_inside_a_look_alike_is_found() {
        // A failed window must not hide a key that starts inside it.
        let key = KeySecret::generate(Environment::Test).unwrap();
        let text = format!("pc_live_abc{}", key.expose());
        let found = find_candidates(text.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, 11);
        assert_eq!(found[0].verdict, Verdict::Key(Environment::Test));
    }

    proptest! {
        #[test]
        fn any_bytes_are_searched_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for candidate in find_candidates(&bytes) {
                prop_assert!(candidate.offset + KEY_LEN <= bytes.len());
            }
        }

        #[test]
        fn embedded_key_is_found(
            before in "[ -~]{0,40}",
            after in "[ -~]{0,40}",
        ) {
            let key = KeySecret::generate(Environment::Live).unwrap();
            let text = format!("{before}{}{after}", key.expose());
            let found = find_candidates(text.as_bytes());
            let keys: Vec<&Candidate> = found
                .iter()
                .filter(|candidate| candidate.text(text.as_bytes()) == key.expose())
                .collect();
            prop_assert_eq!(keys.len(), 1);
        }
    }
}
