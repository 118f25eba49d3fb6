//! The tenants' self-service dashboard under `/dashboard/`: server-rendered
//! pages that work without JavaScript.
//!
//! Users of a tenant sign in with the tenant's name, their e-mail address
//! and password. The dashboard shares the authorization endpoint's
//! sign-in sessions (`__Host-pc_session`), brute-force counts and CSRF
//! tokens. Every POST passes two checks: tower-http's cross-origin check
//! of `Sec-Fetch-Site` and `Origin`, then a token that another site cannot
//! read (double-submit on the sign-in form, derived from the session on the
//! others). Every response carries the headers of [`add_security_headers`]
//! and never a CORS header.
//!
//! - [`account`]: sign-in, sign-out, sign-out everywhere and the overview.
//! - [`keys`]: the tenant's API keys: list, create, rotate and revoke.
//! - [`clients`] and [`client_pages`]: the tenant's OAuth clients.
//! - [`certificates`] and [`certificate_pages`]: the client certificates
//!   of the internal CA: request one with a CSR, download, revoke.
//! - [`upload`]: the multipart forms, whose CSRF token is a part.
//! - [`key_pages`]: the key pages' templates and rows.
//! - [`usage`] and [`chart`]: the usage pages and their SVG bar charts.
//! - [`audit_log`]: the tenant's audit log, filtered and paged.
//! - [`findings`]: the credential audit's findings about the tenant, and
//!   the narrowing of a key's scopes to those it used.
//! - [`members`] and [`invites`]: the tenant's members, for admins, and
//!   the invite links that add members.
//! - [`submissions`]: the one-time tokens of the forms that show a secret
//!   once, so a form sent again creates nothing.
//! - [`policy`]: what each role may do with keys, and the operator's
//!   limits on new keys.
//! - [`pages`]: the templates and response helpers.
//! - [`assets`]: the embedded style sheet and copy-button script.

mod account;
mod assets;
mod audit_log;
mod certificate_pages;
mod certificates;
mod chart;
mod client_pages;
mod clients;
mod findings;
mod invites;
mod key_pages;
mod keys;
mod members;
mod pages;
mod policy;
mod submissions;
mod upload;
mod usage;

pub use self::policy::KeyPolicy;

use axum::Router;
use axum::body::Body;
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tower_http::csrf::ProtectionError;

use self::pages::{error_page, forbidden_page, not_found_page};
use crate::app::AppState;
use crate::body::{BodyReadError, is_form_urlencoded, read_limited};
use crate::oauth::authorize::parse_pairs;
use crate::oauth::csrf::{cross_origin_layer, issuer_origin};

/// The Content-Security-Policy of every dashboard response: the embedded
/// style sheet and copy-button script and nothing else (no inline script or
/// style), forms posting only to this origin, no framing (clickjacking,
/// RFC 6749 §10.13) and no `<base>`.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; style-src 'self'; \
    script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Maximum dashboard form body, in bytes. The largest form contains a tenant
/// name, an e-mail address, a password of at most 1024 characters and a
/// token, each at most a few kilobytes once percent-encoded.
pub const MAX_FORM_LEN: usize = 16 * 1024;

/// The dashboard's routes, with the cross-origin check on every POST and
/// the security headers on every response. Paths under `/dashboard/` that
/// no page serves return 404 here instead of reaching the gateway.
pub fn routes(state: &AppState) -> Router<AppState> {
    let trusted_origin = issuer_origin(&state.oauth.issuer);
    Router::new()
        .route("/dashboard", get(account::to_overview))
        .route("/dashboard/", get(account::overview))
        .route(
            "/dashboard/sign-in",
            get(account::sign_in_page).post(account::sign_in),
        )
        .route("/dashboard/sign-out", post(account::sign_out))
        .route(
            "/dashboard/sign-out-everywhere",
            post(account::sign_out_everywhere),
        )
        .route("/dashboard/keys", get(keys::list).post(keys::create))
        .route("/dashboard/keys/new", get(keys::new_form))
        .route("/dashboard/keys/{id}", get(keys::show))
        .route("/dashboard/keys/{id}/usage", get(usage::key))
        .route(
            "/dashboard/keys/{id}/narrow",
            get(findings::narrow_form).post(findings::narrow),
        )
        .route("/dashboard/usage", get(usage::tenant))
        .route("/dashboard/audit", get(audit_log::list))
        .route("/dashboard/findings", get(findings::list))
        .route(
            "/dashboard/keys/{id}/rotate",
            get(keys::rotate_form).post(keys::rotate),
        )
        .route(
            "/dashboard/keys/{id}/revoke",
            get(keys::revoke_form).post(keys::revoke),
        )
        .merge(client_routes())
        .merge(certificate_routes())
        .merge(members_routes())
        .route("/dashboard/static/{file}", get(assets::serve))
        .route("/dashboard/{*rest}", any(not_found))
        // Set here, inside the layers, so that a 405 carries the security
        // headers too: the application router's fallback would replace a
        // default one outside them.
        .method_not_allowed_fallback(crate::method_not_allowed::discard_body)
        .layer(cross_origin_layer(
            trusted_origin.as_deref(),
            reject_cross_origin,
        ))
        .layer(middleware::map_response(add_security_headers))
}

/// Returns the routes of the OAuth client pages.
fn client_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard/clients",
            get(clients::list).post(clients::create),
        )
        .route("/dashboard/clients/new", get(clients::new_form))
        .route("/dashboard/clients/{id}", get(clients::show))
        .route(
            "/dashboard/clients/{id}/rotate",
            get(clients::rotate_form).post(clients::rotate),
        )
        .route(
            "/dashboard/clients/{id}/revoke",
            get(clients::revoke_form).post(clients::revoke),
        )
        .route(
            "/dashboard/clients/{id}/redirect-uris",
            get(clients::redirect_uris_form).post(clients::update_redirect_uris),
        )
}

/// Returns the routes of the client certificate pages.
fn certificate_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/dashboard/certificates",
            get(certificates::list).post(certificates::create),
        )
        .route("/dashboard/certificates/new", get(certificates::new_form))
        .route(
            "/dashboard/certificates/ca.pem",
            get(certificates::ca_download),
        )
        .route("/dashboard/certificates/{serial}", get(certificates::show))
        .route(
            "/dashboard/certificates/{serial}/certificate.pem",
            get(certificates::download),
        )
        .route(
            "/dashboard/certificates/{serial}/revoke",
            get(certificates::revoke_form).post(certificates::revoke),
        )
}

/// Returns the routes of the members and invites pages.
fn members_routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard/members", get(members::list))
        .route("/dashboard/members/{id}/role", post(members::change_role))
        .route(
            "/dashboard/members/{id}/disable",
            get(members::disable_form).post(members::disable),
        )
        .route("/dashboard/members/{id}/enable", post(members::enable))
        .route("/dashboard/invites", post(invites::create))
        .route("/dashboard/invites/{id}/revoke", post(invites::revoke))
        .route(
            "/dashboard/join/{token}",
            get(invites::join_form).post(invites::join),
        )
}

async fn not_found() -> Response {
    not_found_page()
}

/// Renders the 403 page for a form rejected by the cross-origin check.
#[expect(
    clippy::needless_pass_by_value,
    reason = "tower-http's rejection builder passes the error by value"
)]
fn reject_cross_origin(error: ProtectionError) -> Response<Body> {
    tracing::info!(error = %error, "dashboard form rejected: sent from another origin");
    forbidden_page()
}

/// Adds the headers every dashboard response carries: the CSP,
/// `X-Frame-Options: DENY` for browsers without `frame-ancestors`,
/// `Referrer-Policy: no-referrer`, `X-Content-Type-Options: nosniff` and,
/// unless the handler chose caching (the style sheet does),
/// `Cache-Control: no-store`, because pages show account data and tokens.
/// Any `Access-Control-*` header is removed, so no other origin is ever
/// granted CORS access.
async fn add_security_headers(mut response: Response) -> Response {
    set_security_headers(response.headers_mut(), CONTENT_SECURITY_POLICY_VALUE);
    response
}

/// Sets the headers of [`add_security_headers`] on a page with the
/// Content-Security-Policy `content_security_policy`, so that pages that
/// need less (the docs run no scripts) can send a stricter policy.
pub(crate) fn set_security_headers(headers: &mut HeaderMap, content_security_policy: &'static str) {
    let cors: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in cors {
        headers.remove(name);
    }
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(content_security_policy),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Reads a dashboard form: checks the media type and size, and rejects a
/// field named twice, so no form can be read two ways. A failure is
/// already the error page.
async fn read_form(headers: &HeaderMap, body: Body) -> Result<Form, Response> {
    if !is_form_urlencoded(headers) {
        return Err(error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Form rejected",
            "The form was not sent as application/x-www-form-urlencoded. Open the page again \
             and resend the form.",
        ));
    }
    let bytes: Bytes = read_limited(body, MAX_FORM_LEN)
        .await
        .map_err(|error| match error {
            BodyReadError::TooLarge { .. } => error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Form rejected",
                "The form is larger than 16 KiB. Shorten the values and resend it.",
            ),
            BodyReadError::TimedOut => error_page(
                StatusCode::REQUEST_TIMEOUT,
                "Form rejected",
                "The form stopped arriving. Resend it.",
            ),
            BodyReadError::Failed(_) => error_page(
                StatusCode::BAD_REQUEST,
                "Form rejected",
                "The form could not be read. Resend it.",
            ),
        })?;
    match parse_pairs(&bytes) {
        Ok(pairs) => Ok(Form(pairs)),
        Err(error) => {
            tracing::info!(field = ?error.0, "dashboard form rejected: repeated field");
            Err(error_page(
                StatusCode::BAD_REQUEST,
                "Form rejected",
                "The form names a field more than once. Open the page again and resend the form.",
            ))
        }
    }
}

/// The fields of a submitted form, each at most once.
struct Form(Vec<(String, String)>);

impl Form {
    /// Returns the value of the field `name`, or `""` when it is missing.
    fn field(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// Returns the values of the fields whose names start with `prefix`,
    /// such as the checked boxes `scope.0`, `scope.3`, in form order.
    fn values_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(key, _)| key.starts_with(prefix))
            .map(|(_, value)| value.as_str())
    }
}
