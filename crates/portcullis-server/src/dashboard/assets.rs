//! The dashboard's style sheet, compiled into the binary and served under
//! a name that contains its content hash, so browsers may cache it for a
//! year and still fetch a changed sheet after an upgrade.

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

/// Bytes of the SHA-256 digest in the file name: 64 bits tell versions
/// apart, and a collision only serves a stale sheet.
const NAME_HASH_BYTES: usize = 8;

/// The style sheet's file name, such as `dashboard-0123456789abcdef.css`.
static STYLESHEET_FILE: LazyLock<String> = LazyLock::new(|| {
    let digest = sha256(STYLESHEET.as_bytes());
    let mut name = String::from("dashboard-");
    for byte in digest.iter().take(NAME_HASH_BYTES) {
        let _ = write!(name, "{byte:02x}");
    }
    name.push_str(".css");
    name
});

/// The style sheet's path, as the pages link it.
pub(super) static STYLESHEET_PATH: LazyLock<String> =
    LazyLock::new(|| format!("/dashboard/static/{}", STYLESHEET_FILE.as_str()));

/// Handles `GET /dashboard/static/{file}`: the style sheet under its
/// current name, or 404.
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    if file != *STYLESHEET_FILE {
        return not_found_page();
    }
    let mut response = (StatusCode::OK, STYLESHEET).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    // The name changes with the content, so the sheet never goes stale.
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
