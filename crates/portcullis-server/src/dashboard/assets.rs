//! The dashboard's style sheet and its one script, compiled into the binary
//! and served under names that contain their content hash, so browsers may
//! cache them for a year and still fetch a changed file after an upgrade.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use portcullis_core::crypto::sha256;

use super::pages::not_found_page;

/// The style sheet's text.
const STYLESHEET: &str = include_str!("../../static/dashboard.css");

/// The script of the copy buttons. Every action works without it.
const SCRIPT: &str = include_str!("../../static/copy.js");

/// Bytes of the SHA-256 digest in the file name: 64 bits tell versions
/// apart, and a collision only serves a stale file.
const NAME_HASH_BYTES: usize = 8;

/// The style sheet's file name, such as `dashboard-0123456789abcdef.css`.
static STYLESHEET_FILE: LazyLock<String> =
    LazyLock::new(|| hashed_name("dashboard", STYLESHEET, "css"));

/// The script's file name, such as `copy-0123456789abcdef.js`.
static SCRIPT_FILE: LazyLock<String> = LazyLock::new(|| hashed_name("copy", SCRIPT, "js"));

/// The style sheet's path, as the pages link it.
pub(super) static STYLESHEET_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/dashboard/static/{}", STYLESHEET_FILE.as_str()));

/// The script's path, as the secret page links it.
pub(super) static SCRIPT_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/dashboard/static/{}", SCRIPT_FILE.as_str()));

/// Builds `{stem}-{hash}.{extension}` from the start of the SHA-256 digest
/// of `content`.
fn hashed_name(stem: &str, content: &str, extension: &str) -> String {
    let digest = sha256(content.as_bytes());
    let mut name = format!("{stem}-");
    for byte in digest.iter().take(NAME_HASH_BYTES) {
        let _ = write!(name, "{byte:02x}");
    }
    name.push('.');
    name.push_str(extension);
    name
}

/// Handles `GET /dashboard/static/{file}`: the style sheet or the script
/// under its current name, or 404.
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let (content, content_type) = if file == *STYLESHEET_FILE {
        (STYLESHEET, "text/css; charset=utf-8")
    } else if file == *SCRIPT_FILE {
        (SCRIPT, "text/javascript; charset=utf-8")
    } else {
        return not_found_page();
    };
    let mut response = (StatusCode::OK, content).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The name changes with the content, so the file never goes stale.
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stylesheet_name_carries_hash() {
        let name = STYLESHEET_FILE.as_str();
        let hash = name
            .strip_prefix("dashboard-")
            .and_then(|rest| rest.strip_suffix(".css"))
            .unwrap();
        assert_eq!(hash.len(), NAME_HASH_BYTES * 2);
        assert!(hash.bytes().all(|byte| byte.is_ascii_hexdigit()), "{name}");
    }
}
