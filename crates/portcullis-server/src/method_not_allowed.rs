//! The 405 of Portcullis's own endpoints, sent when a route exists but not
//! for the request's method (RFC 9110 §15.5.6).
//!
//! axum responds to such a request with an empty body and drops the
//! request body unread. When the body has not arrived by the time the
//! response is written, hyper closes the connection. The next request of a
//! client that keeps the connection alive then fails, because the TLS
//! connection ends without close_notify.
//! [`discard_body`] reads a small body first, as the gateway does, and
//! [`describe`] gives the response the problem+json body of every other
//! error.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};

use crate::gateway::discard;
use crate::problem::Problem;

/// The method-not-allowed fallback of the built-in routes: reads and drops
/// a small request body, then returns 405. axum adds `Allow` afterwards.
pub async fn discard_body(request: Request<Body>) -> StatusCode {
    let (parts, body) = request.into_parts();
    discard(&parts.headers, body).await;
    StatusCode::METHOD_NOT_ALLOWED
}

/// Middleware that adds the problem+json body to a bare 405, keeping the
/// `Allow` list that axum computed. It has to wrap the whole router,
/// because axum adds `Allow` after the router's own layers have run.
pub async fn describe(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(CONTENT_TYPE)
    {
        return response;
    }
    let allow = response
        .headers()
        .get(ALLOW)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let methods: Vec<&str> = allow
        .split(',')
        .map(str::trim)
        .filter(|method| !method.is_empty())
        .collect();
    let problem = Problem::method_not_allowed(&methods).into_response();

    // Keep the headers that inner layers set, such as the dashboard's
    // Content-Security-Policy, and take only the body and its type from
    // the problem.
    let (mut parts, _) = response.into_parts();
    let (problem_parts, body) = problem.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    for (name, value) in &problem_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, body)
}
