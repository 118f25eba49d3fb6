//! The dashboard's HTML pages and the responses that carry them.

use askama::Template;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, StatusCode};
use portcullis_core::oauth::UserRecord;

use super::assets::STYLESHEET_PATH;
use super::policy::may_manage_members;

/// The product name in page titles and the page header.
const BRAND: &str = "Portcullis";

/// The frame of every page: the product name, the style sheet and, on
/// signed-in pages, the navigation links the user's role may follow.
pub(super) struct Layout {
    /// The product name.
    pub(super) brand: &'static str,
    /// The path of the style sheet, named by its content hash.
    pub(super) stylesheet: &'static str,
    /// Whether the navigation links to the members page, which only admins
    /// may open.
    pub(super) members_link: bool,
}

/// The frame of a page shown without a session, such as the sign-in form
/// and the error pages.
pub(super) fn layout() -> Layout {
    Layout {
        brand: BRAND,
        stylesheet: STYLESHEET_PATH.as_str(),
        members_link: false,
    }
}

/// Builds the frame of a page for the signed-in `user`. Its navigation
/// links only to pages that the user's role may open.
pub(super) fn signed_in_layout(user: &UserRecord) -> Layout {
    Layout {
        members_link: may_manage_members(user),
        ..layout()
    }
}

/// The sign-in form.
#[derive(Template)]
#[template(path = "dashboard/sign_in.html")]
pub(super) struct SignInPage<'a> {
    pub(super) layout: Layout,
    /// The organization (tenant) name to fill in again after a failure.
    pub(super) tenant: &'a str,
    /// The e-mail address to fill in again after a failure.
    pub(super) email: &'a str,
    /// The message of a failed attempt.
    pub(super) error: Option<String>,
    /// The double-submit CSRF token.
    pub(super) csrf_token: &'a str,
}

/// The signed-in user's overview: account facts and the sign-out forms.
#[derive(Template)]
#[template(path = "dashboard/home.html")]
pub(super) struct HomePage<'a> {
    pub(super) layout: Layout,
    /// The signed-in user's e-mail address.
    pub(super) email: &'a str,
    /// The user's tenant.
    pub(super) tenant: &'a str,
    /// The user's role.
    pub(super) role: &'a str,
    /// The session-bound CSRF token of the page's forms.
    pub(super) csrf_token: &'a str,
}

/// An error page with a title and a message for the user.
#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    title: &'a str,
    message: &'a str,
}

/// Renders `page` as an HTML response with `status`. The security headers
/// are added to every dashboard response by the router's layer.
pub(super) fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(error) => {
            tracing::error!(error = %error, "rendering a dashboard page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

/// Renders the error page.
pub(super) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        &ErrorPage {
            layout: layout(),
            title,
            message,
        },
    )
}

/// Renders the 403 page of a POST that failed a CSRF check.
pub(super) fn forbidden_page() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form rejected",
        "This form was sent from another site, or it has expired. Nothing was changed. Open \
         the page again and resend the form.",
    )
}

/// Renders the 404 page.
pub(super) fn not_found_page() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no such page in your organization's dashboard.",
    )
}

/// Renders the 503 page of a failed store.
pub(super) fn unavailable_page() -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable",
        "The service is unavailable. Try again in a minute.",
    )
}

/// Renders the 500 page.
pub(super) fn internal_error_page() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error",
        "Something went wrong on our side. Try again in a minute.",
    )
}

/// Builds a 303 redirect to a dashboard path, so the browser follows with
/// a GET and drops any form body.
pub(super) fn see_other(location: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(location));
    response
}

/// Builds a 303 redirect to a dashboard path built at run time, such as a
/// key's page. A path that is no valid header value gets the 500 page.
pub(super) fn see_other_to(location: &str) -> Response {
    let Ok(value) = HeaderValue::from_str(location) else {
        tracing::error!(
            location,
            "dashboard redirect target is no valid header value"
        );
        return internal_error_page();
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    response.headers_mut().insert(LOCATION, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_page_escapes_typed_values() {
        let page = SignInPage {
            layout: layout(),
            tenant: "\"><b>acme",
            email: "<script>x</script>",
            error: Some("<i>no</i>".to_owned()),
            csrf_token: "t",
        };
        let body = page.render().unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(!body.contains("<b>"), "{body}");
        assert!(!body.contains("<i>"), "{body}");
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        let body = HomePage {
            layout: layout(),
            email: "ops@example.com",
            tenant: "acme",
            role: "admin",
            csrf_token: "t",
        }
        .render()
        .unwrap();
        assert!(!body.contains("<script"), "{body}");
        assert!(!body.contains("<style"), "{body}");
        assert!(!body.contains("style="), "{body}");
        assert!(body.contains(STYLESHEET_PATH.as_str()), "{body}");
    }
}
