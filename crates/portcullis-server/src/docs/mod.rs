//! The documentation site under `/docs/`: the Markdown of the repository's
//! `docs/` folder, rendered to HTML by the build script and embedded in the
//! binary. The site needs no files at run time, and it serves the docs of
//! its own version.
//!
//! Pages are found by exact match of the request path against the embedded
//! list, never by a file system path, so no path can reach anything else.
//! Every response carries the dashboard's security headers with a stricter
//! CSP that allows the site's own style sheet and nothing else, and also
//! no framing, no referrer and `nosniff`. `[docs] title` and `[docs] product_name` brand
//! the pages, `[docs] pages = "consumers"` leaves out the operator pages
//! (they return 404 and the table of contents omits them), and
//! `[docs] enabled = false` leaves `/docs/` unserved.

mod layout;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

use crate::app::AppState;
use crate::config::{DocsConfig, DocsPages};
use crate::dashboard::set_security_headers;

mod generated {
    //! The output of `build.rs`.

    /// One rendered page.
    pub(crate) struct DocPage {
        /// Path below `/docs/`, such as `consumers/api-keys`; empty for the
        /// index page.
        pub(crate) path: &'static str,
        /// The text of the page's first heading, not escaped.
        pub(crate) title: &'static str,
        /// The page's HTML, without the layout.
        pub(crate) body: &'static str,
        /// Whether the page is under `docs/operators/`, for the people who
        /// run the server rather than those who call the API.
        pub(crate) for_operators: bool,
    }

    include!(concat!(env!("OUT_DIR"), "/docs_pages.rs"));
}

/// The style sheet's text.
const STYLESHEET: &str = include_str!("../../static/docs.css");

/// The Content-Security-Policy of every docs response: the site's own
/// style sheet and nothing else, so no script runs, no form posts and no
/// other site frames a page.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; style-src 'self'; \
    form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Path of the style sheet, as the pages link it.
const STYLESHEET_PATH: &str = "/docs/docs.css";

/// Maximum length of a page path that is looked up, in bytes. The longest real one is far
/// shorter, and a bound keeps the check cheap for any request.
const MAX_PAGE_PATH_LEN: usize = 200;

/// How long browsers and proxies may reuse a page or the style sheet
/// before they ask again: short, so an upgrade shows within minutes.
const CACHE_CONTROL_VALUE: &str = "public, max-age=300";

/// The rendered site: each page's full HTML with the layout and the
/// configured branding, by path.
struct Site {
    pages: HashMap<&'static str, Bytes>,
    not_found: Bytes,
}

/// Returns the routes of `/docs/` when `[docs] enabled` is true, and no
/// routes otherwise, so that `/docs/` then gets the gateway's 404.
pub fn routes(config: &DocsConfig) -> Router<AppState> {
    if !config.enabled {
        return Router::new();
    }
    let site = Arc::new(Site::render(config));
    Router::new()
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route("/docs/", get(index))
        .route("/docs/{*path}", get(page))
        .with_state(site)
        .method_not_allowed_fallback(crate::method_not_allowed::discard_body)
        .layer(middleware::map_response(add_security_headers))
}

/// Adds the dashboard's security headers with the docs' stricter policy.
async fn add_security_headers(mut response: Response) -> Response {
    set_security_headers(response.headers_mut(), CONTENT_SECURITY_POLICY_VALUE);
    response
}

impl Site {
    fn render(config: &DocsConfig) -> Self {
        let branding = layout::Branding::new(config);
        let published = |page: &&generated::DocPage| match config.pages {
            DocsPages::All => true,
            DocsPages::Consumers => !page.for_operators,
        };
        let pages = generated::PAGES
            .iter()
            .filter(published)
            .map(|page| (page.path, Bytes::from(branding.page(page))))
            .collect();
        Self {
            pages,
            not_found: Bytes::from(branding.not_found()),
        }
    }
}

async fn index(State(site): State<Arc<Site>>) -> Response {
    serve_page(&site, "")
}

async fn page(State(site): State<Arc<Site>>, Path(path): Path<String>) -> Response {
    if path == STYLESHEET_PATH.trim_start_matches("/docs/") {
        return with_type(StatusCode::OK, "text/css; charset=utf-8", STYLESHEET.into());
    }
    serve_page(&site, &path)
}

/// Returns the page at `path`, or the 404 page when `path` is not a page
/// path (lower-case letters, digits, `-` and `/`) or names no page.
fn serve_page(site: &Site, path: &str) -> Response {
    let valid = path.len() <= MAX_PAGE_PATH_LEN
        && path.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-/".contains(&byte)
        })
        && !path.contains("//");
    match site.pages.get(path).filter(|_| valid) {
        Some(html) => with_type(StatusCode::OK, "text/html; charset=utf-8", html.clone()),
        None => with_type(
            StatusCode::NOT_FOUND,
            "text/html; charset=utf-8",
            site.not_found.clone(),
        ),
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::OK {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site::render(&DocsConfig::default())
    }

    #[test]
    fn index_page_embedded() {
        assert!(site().pages.contains_key(""));
    }

    #[test]
    fn traversal_paths_not_found() {
        let site = site();
        for path in [
            "../Cargo.toml",
            "..",
            "consumers/../",
            "SUMMARY",
            "%2e%2e/x",
            "a//b",
        ] {
            let response = serve_page(&site, path);
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn consumer_site_omits_operator_pages() {
        let site = Site::render(&DocsConfig {
            pages: DocsPages::Consumers,
            ..DocsConfig::default()
        });
        let operator_pages: Vec<_> = generated::PAGES
            .iter()
            .filter(|page| page.for_operators)
            .collect();
        assert!(!operator_pages.is_empty());
        for page in generated::PAGES {
            let status = serve_page(&site, page.path).status();
            let expected = if page.for_operators {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            assert_eq!(status, expected, "{}", page.path);
        }
        for (path, html) in &site.pages {
            let html = String::from_utf8_lossy(html);
            assert!(
                !html.contains("href=\"/docs/operators/"),
                "{path} links an operator page"
            );
        }
        let not_found = String::from_utf8_lossy(&site.not_found);
        assert!(!not_found.contains("href=\"/docs/operators/"));
    }

    #[test]
    fn every_page_served() {
        let site = site();
        for page in generated::PAGES {
            let response = serve_page(&site, page.path);
            assert_eq!(response.status(), StatusCode::OK, "{}", page.path);
        }
    }
}
