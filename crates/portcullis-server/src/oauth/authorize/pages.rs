//! The HTML pages of the authorization endpoint, the headers every page
//! carries, and the redirects back to the client.

use askama::Template;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, RETRY_AFTER,
    SET_COOKIE, X_FRAME_OPTIONS,
};
use http::{HeaderValue, StatusCode};
use portcullis_core::scope::ScopeSet;

/// The product name in page titles.
pub(super) const BRAND: &str = "Portcullis";

/// The Content-Security-Policy of every page: no scripts or other
/// resources at all, inline styles only, forms posting only to this origin,
/// and no framing (RFC 6749 §10.13 clickjacking).
pub(super) const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The sign-in form.
#[derive(Template)]
#[template(path = "oauth/login.html")]
pub(super) struct LoginPage<'a> {
    /// The product name.
    pub(super) brand: &'static str,
    /// The client's display name.
    pub(super) client_name: &'a str,
    /// The client's tenant.
    pub(super) tenant: &'a str,
    /// The e-mail address to fill in again after a failure.
    pub(super) email: &'a str,
    /// The message of a failed attempt.
    pub(super) error: Option<String>,
    /// The double-submit CSRF token.
    pub(super) csrf_token: &'a str,
    /// The authorization parameters, as hidden fields.
    pub(super) request: &'a [(String, String)],
}

/// The consent page.
#[derive(Template)]
#[template(path = "oauth/consent.html")]
pub(super) struct ConsentPage<'a> {
    /// The product name.
    pub(super) brand: &'static str,
    /// The client's display name.
    pub(super) client_name: &'a str,
    /// The client's tenant.
    pub(super) tenant: &'a str,
    /// The signed-in user's e-mail address.
    pub(super) email: &'a str,
    /// The requested scopes, described.
    pub(super) scopes: Vec<ScopeLine>,
    /// The session-bound CSRF token.
    pub(super) csrf_token: &'a str,
    /// The authorization parameters, as hidden fields.
    pub(super) request: &'a [(String, String)],
}

/// One requested scope on the consent page.
pub(super) struct ScopeLine {
    /// The scope in plain words, such as "Read orders".
    pub(super) description: String,
    /// The scope's name, such as `orders:read`.
    pub(super) name: String,
}

/// The error page, shown when the browser cannot be sent back to the
/// client.
#[derive(Template)]
#[template(path = "oauth/error.html")]
struct ErrorPage<'a> {
    brand: &'static str,
    message: &'a str,
}

/// Lists `scopes` in plain words for the consent page.
pub(super) fn describe_scopes(scopes: &ScopeSet) -> Vec<ScopeLine> {
    scopes
        .iter()
        .map(|scope| ScopeLine {
            description: describe_scope(scope.as_str()),
            name: scope.as_str().to_owned(),
        })
        .collect()
}

/// Describes a scope in plain words from its name: `orders:read` is "Read
/// orders", `billing.invoices:write` is "Change billing invoices" and
/// `orders:*` is "Full access to orders". A name without `:` is spelled out
/// as it is.
pub(super) fn describe_scope(name: &str) -> String {
    let Some((resource, action)) = name.rsplit_once(':') else {
        return capitalize(&words(name));
    };
    let resource = words(resource);
    let verb = match action {
        "read" => "Read".to_owned(),
        "write" => "Change".to_owned(),
        "delete" => "Delete".to_owned(),
        "create" => "Create".to_owned(),
        "*" => "Full access to".to_owned(),
        other => capitalize(&words(other)),
    };
    format!("{verb} {resource}")
}

/// Replaces the separators of a scope name with spaces.
fn words(text: &str) -> String {
    text.replace(['.', '_', '-', ':'], " ")
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Renders `page` as an HTML response with `status` and the page headers.
pub(super) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => with_page_headers(status, body),
        Err(error) => {
            tracing::error!(error = %error, "rendering an authorization page failed");
            with_page_headers(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error".to_owned(),
            )
        }
    }
}

/// Renders the error page with `status` and a `message` for the user.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    html(
        status,
        &ErrorPage {
            brand: BRAND,
            message,
        },
    )
}

/// Renders the 403 page of a POST that failed a CSRF check.
pub(super) fn forbidden_page() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This form was sent from another site, or it has expired. Nothing was changed.",
    )
}

/// Turns a sign-in page into the 429 response sent after too many
/// failures. `retry_after` is the wait in seconds.
pub(crate) fn too_many_attempts(mut page: Response, retry_after: u64) -> Response {
    *page.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    page.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after));
    page
}

/// Adds a `Set-Cookie` header.
pub(crate) fn set_cookie(mut response: Response, cookie: &str) -> Response {
    match HeaderValue::from_str(cookie) {
        Ok(value) => {
            response.headers_mut().append(SET_COOKIE, value);
        }
        Err(error) => tracing::error!(error = %error, "a cookie value is not a valid header"),
    }
    response
}

fn with_page_headers(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    add_no_store_headers(headers);
    response
}

/// `Cache-Control: no-store` and `Referrer-Policy: no-referrer`: pages and
/// redirects carry codes, tokens or the client's `state`, which must not
/// be cached or leak in a `Referer` header.
fn add_no_store_headers(headers: &mut http::HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// Builds a redirect to `location` with `status`: 302 after a GET and 303
/// after a POST. A 303 makes the browser follow with a GET and drop the form
/// body, which may contain the password. A 307 would post it to the client.
pub(super) fn redirect(status: StatusCode, location: &str) -> Response {
    let Ok(value) = HeaderValue::from_str(location) else {
        tracing::error!("a redirect location is not a valid header");
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The return address could not be built.",
        );
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response.headers_mut().insert(LOCATION, value);
    add_no_store_headers(response.headers_mut());
    response
}

/// Appends the form-encoded `parameters` to `uri`'s query, with `?` when it
/// has none yet and `&` otherwise (RFC 6749 §4.1.2 keeps the registered
/// query).
pub(super) fn with_query(uri: &str, parameters: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in parameters {
        serializer.append_pair(name, value);
    }
    let query = serializer.finish();
    let separator = match uri.find('?') {
        None => "?",
        Some(_) if uri.ends_with('?') || uri.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{uri}{separator}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_descriptions() {
        assert_eq!(describe_scope("orders:read"), "Read orders");
        assert_eq!(describe_scope("orders:write"), "Change orders");
        assert_eq!(describe_scope("orders:*"), "Full access to orders");
        assert_eq!(
            describe_scope("billing.invoices:write"),
            "Change billing invoices"
        );
        assert_eq!(describe_scope("reports:export"), "Export reports");
        assert_eq!(describe_scope("profile"), "Profile");
    }

    #[test]
    fn query_appended_with_right_separator() {
        let pairs = [("code", "c 1"), ("state", "a&b")];
        assert_eq!(
            with_query("https://app.example.com/cb", &pairs),
            "https://app.example.com/cb?code=c+1&state=a%26b"
        );
        assert_eq!(
            with_query("https://app.example.com/cb?tenant=acme", &pairs),
            "https://app.example.com/cb?tenant=acme&code=c+1&state=a%26b"
        );
        assert_eq!(
            with_query("https://app.example.com/cb?", &pairs),
            "https://app.example.com/cb?code=c+1&state=a%26b"
        );
    }

    #[test]
    fn pages_carry_security_headers() {
        let response = error_page(StatusCode::BAD_REQUEST, "<b>bad</b>");
        let headers = response.headers();
        assert_eq!(
            headers[CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY_VALUE
        );
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert!(headers.get(LOCATION).is_none());
    }

    #[test]
    fn hidden_fields_escaped() {
        let request = vec![("state".to_owned(), "\"><script>x</script>".to_owned())];
        let page = LoginPage {
            brand: BRAND,
            client_name: "<App>",
            tenant: "acme",
            email: "",
            error: None,
            csrf_token: "t",
            request: &request,
        };
        let body = page.render().unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(!body.contains("<App>"), "{body}");
        assert!(
            body.contains("value=\"&#34;&#62;&#60;script&#62;"),
            "{body}"
        );
    }
}
