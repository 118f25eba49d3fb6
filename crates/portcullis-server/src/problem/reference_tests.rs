//! Checks `docs/consumers/errors.md` against the code: every error code the
//! server can send to an API consumer is listed on the page, and every code
//! the page lists is one the server sends.
//!
//! The codes are collected from the source text, because most are string
//! literals passed to [`Problem::new`] and its shorthands, to the
//! `OAuthError` constructors and to the authorization endpoint's redirect
//! errors. A call whose code is not a literal must be listed in
//! [`computed_code_calls`] with the codes it can produce, so a new call of
//! that kind fails this test until its codes are accounted for.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use portcullis_core::credential::KeyRejection;
use portcullis_core::ids::ClientId;
use portcullis_core::key::KeyFormatError;

use crate::pki::clients::Unmapped;

/// The consumer error reference, as the repository holds it.
const REFERENCE: &str = include_str!("../../../../docs/consumers/errors.md");

/// A call that takes an error code, and the position of the code among its
/// arguments. `file` limits the pattern to files whose path relative to
/// `src` starts with it.
struct CodeCall {
    pattern: &'static str,
    file: &'static str,
    argument: usize,
}

const CODE_CALLS: &[CodeCall] = &[
    CodeCall {
        pattern: "Problem::new(",
        file: "",
        argument: 1,
    },
    CodeCall {
        pattern: "Self::new(",
        file: "problem.rs",
        argument: 1,
    },
    CodeCall {
        pattern: "Problem::forbidden(",
        file: "",
        argument: 0,
    },
    CodeCall {
        pattern: "Problem::conflict(",
        file: "",
        argument: 0,
    },
    CodeCall {
        pattern: "Problem::invalid_credential_request(",
        file: "",
        argument: 0,
    },
    // RFC 6749 §5.2 errors of the token, introspection and revocation
    // endpoints.
    CodeCall {
        pattern: "Self::new(",
        file: "oauth/error.rs",
        argument: 0,
    },
    // RFC 6749 §4.1.2.1 errors that the authorization endpoint sends back
    // to the client's redirect URI.
    CodeCall {
        pattern: "fail(",
        file: "oauth/authorize",
        argument: 0,
    },
];

/// Calls whose code argument is computed, as `(file, argument text)`, and
/// the codes that argument can take, read from the enums that produce
/// them where there is one. The admin API's conflicts are left
/// out, because only operators call that API.
fn computed_code_calls() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    let key_rejections = [
        KeyRejection::InvalidFormat(KeyFormatError::Prefix),
        KeyRejection::NotFound,
        KeyRejection::Revoked,
        KeyRejection::Expired,
    ];
    let unmapped = [
        Unmapped::NoClient,
        Unmapped::Ambiguous(vec![ClientId::generate()]),
    ];
    vec![
        (
            "problem.rs",
            "rejection.code()",
            key_rejections.iter().map(|r| r.code()).collect(),
        ),
        // The shorthands pass their caller's code on, and the callers are
        // scanned through the `Problem::…` patterns.
        ("problem.rs", "code", Vec::new()),
        (
            "gateway/certificate.rs",
            "unmapped.code()",
            unmapped.iter().map(Unmapped::code).collect(),
        ),
        (
            "pki/presented.rs",
            "code",
            vec!["certificate_revoked", "invalid_client_certificate"],
        ),
        ("admin/mod.rs", "code", Vec::new()),
        ("admin/certificates.rs", "error.code()", Vec::new()),
        ("admin/signing_keys.rs", "error.code()", Vec::new()),
    ]
}

/// Returns the non-test source files under `src`, with their paths
/// relative to it.
pub(crate) fn source_files() -> Vec<(String, String)> {
    fn walk(root: &Path, directory: &Path, found: &mut Vec<(String, String)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, found);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let is_test = name == "tests.rs" || name.ends_with("_tests.rs");
            if is_test || !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // A file's inline unit tests are its last module.
            let text = match text.rfind("\n#[cfg(test)]\nmod tests {") {
                Some(end) => text[..end].to_owned(),
                None => text,
            };
            let relative = path.strip_prefix(root).unwrap().to_string_lossy();
            found.push((relative.into_owned(), text));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    walk(&root, &root, &mut found);
    found
}

/// Splits the arguments of the call whose `(` is at `text[0]`, at the
/// commas outside nested brackets and string literals.
fn call_arguments(text: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            current.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                current.push(c);
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > 1 {
                    current.push(c);
                }
            }
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    arguments.push(current.trim().to_owned());
                    return arguments;
                }
                current.push(c);
            }
            ',' if depth == 1 => {
                arguments.push(current.trim().to_owned());
                current.clear();
            }
            _ => current.push(c),
        }
    }
    arguments
}

/// Returns the text inside `"…"` when `argument` is one string literal.
fn string_literal(argument: &str) -> Option<&str> {
    let inner = argument.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some(inner)
}

/// Returns the codes the server can send to a consumer, and the calls
/// whose code is computed but not listed in [`computed_code_calls`].
fn codes_in_source() -> (BTreeSet<String>, Vec<String>) {
    let computed = computed_code_calls();
    let mut codes = BTreeSet::new();
    let mut unlisted = Vec::new();
    for (file, text) in source_files() {
        for call in CODE_CALLS.iter().filter(|call| file.starts_with(call.file)) {
            for (at, _) in text.match_indices(call.pattern) {
                let preceding = text[..at].chars().next_back();
                if preceding.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let open = at + call.pattern.len() - 1;
                let arguments = call_arguments(&text[open..]);
                let Some(argument) = arguments.get(call.argument) else {
                    continue;
                };
                if let Some(code) = string_literal(argument) {
                    codes.insert(code.to_owned());
                    continue;
                }
                let listed = computed
                    .iter()
                    .find(|(site, text, _)| *site == file && text == argument);
                match listed {
                    Some((_, _, site_codes)) => {
                        codes.extend(site_codes.iter().map(|code| (*code).to_owned()));
                    }
                    None => unlisted.push(format!("{file}: {}{argument}", call.pattern)),
                }
            }
        }
        // The consent page's refusal, the one redirect error built without
        // `fail`.
        if file.starts_with("oauth/authorize") {
            for (at, _) in text.match_indices("error: \"") {
                let rest = &text[at + "error: \"".len()..];
                if let Some(end) = rest.find('"') {
                    codes.insert(rest[..end].to_owned());
                }
            }
        }
    }
    (codes, unlisted)
}

/// Returns the codes in backticks in the code column of the page's tables:
/// the column headed `code`, or `error` in the OAuth tables.
fn documented_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut code_column = None;
    for line in REFERENCE.lines() {
        let Some(inner) = line.trim().strip_prefix('|') else {
            code_column = None;
            continue;
        };
        let cells: Vec<&str> = inner
            .trim_end_matches('|')
            .split(" | ")
            .map(str::trim)
            .collect();
        let Some(column) = code_column else {
            // The first row of a table is its header.
            code_column = Some(
                cells
                    .iter()
                    .position(|cell| matches!(*cell, "code" | "error" | "`error`")),
            );
            continue;
        };
        let Some(cell) = column.and_then(|column| cells.get(column)) else {
            continue;
        };
        let spans = cell.split('`').skip(1).step_by(2);
        codes.extend(spans.map(str::to_owned));
    }
    codes
}

#[test]
fn computed_codes_listed() {
    let (_, unlisted) = codes_in_source();
    assert!(
        unlisted.is_empty(),
        "these calls take a computed code; list the codes they can produce in \
         computed_code_calls: {unlisted:#?}"
    );
}

#[test]
fn every_code_documented() {
    let (codes, _) = codes_in_source();
    assert!(codes.contains("rate_limited"), "the scan found {codes:?}");
    assert!(codes.contains("invalid_grant"), "the scan found {codes:?}");
    let documented = documented_codes();
    let missing: Vec<_> = codes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/consumers/errors.md does not list these codes: {missing:?}"
    );
}

#[test]
fn every_documented_code_exists() {
    let (codes, _) = codes_in_source();
    let documented = documented_codes();
    let stale: Vec<_> = documented.difference(&codes).collect();
    assert!(
        stale.is_empty(),
        "docs/consumers/errors.md lists codes the server never sends: {stale:?}"
    );
}

#[test]
fn arguments_split_outside_brackets() {
    let arguments = call_arguments("(StatusCode::OK, \"a, b\", f(x, y), [1, 2]) trailing");
    assert_eq!(
        arguments,
        ["StatusCode::OK", "\"a, b\"", "f(x, y)", "[1, 2]"]
    );
    assert_eq!(string_literal("\"rate_limited\""), Some("rate_limited"));
    assert_eq!(string_literal("code"), None);
}
