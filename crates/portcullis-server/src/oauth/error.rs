//! OAuth error responses (RFC 6749 §5.2): a JSON object with `error` and
//! `error_description`, status 400, or 401 for `invalid_client`.

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::client_auth::CertificateRefusal;
use crate::body::BodyReadError;
use crate::problem::Problem;

/// One OAuth error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    code: &'static str,
    description: String,
    status: StatusCode,
    basic_challenge: bool,
    /// Set when the body exceeded this many bytes. The response is then a
    /// problem+json 413, because RFC 6749 defines no error code for it.
    body_limit: Option<u64>,
    /// Set when the client paused too long while sending the body. The
    /// response is then the problem+json 408 of every other endpoint.
    body_timed_out: bool,
    /// Set on a 429 for too many failed authentications: the block's time
    /// left in seconds.
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(code: &'static str, status: StatusCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            status,
            basic_challenge: false,
            body_limit: None,
            body_timed_out: false,
            retry_after: None,
        }
    }

    /// 413: the form body exceeds `limit` bytes.
    pub fn payload_too_large(limit: u64) -> Self {
        let mut error = Self::new(
            "invalid_request",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {limit} bytes"),
        );
        error.body_limit = Some(limit);
        error
    }

    /// 408: the body stopped arriving for longer than the body read
    /// timeout (RFC 9110 §15.5.9).
    pub fn body_timed_out() -> Self {
        let mut error = Self::new(
            "invalid_request",
            StatusCode::REQUEST_TIMEOUT,
            "the request body stopped arriving; send it again without pauses",
        );
        error.body_timed_out = true;
        error
    }

    /// `invalid_request`: a missing, repeated or malformed parameter.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", StatusCode::BAD_REQUEST, description)
    }

    /// `invalid_client`: client authentication failed (RFC 6749 §5.2). When
    /// the client tried HTTP Basic, the 401 carries a Basic challenge.
    pub fn invalid_client(used_basic: bool) -> Self {
        let mut error = Self::new(
            "invalid_client",
            StatusCode::UNAUTHORIZED,
            "client authentication failed",
        );
        error.basic_challenge = used_basic;
        error
    }

    /// `invalid_client` for a client certificate that did not authenticate
    /// the client. RFC 6749 §5.2 allows a human-readable
    /// `error_description`, so it names the reason code, which is also the
    /// audit record's code. It names no registered value, and the
    /// certificate it describes is the caller's own.
    pub fn invalid_client_certificate(refusal: &CertificateRefusal) -> Self {
        let description = format!(
            "client certificate rejected ({}): {}",
            refusal.code, refusal.message
        );
        // RFC 6749 §5.2 limits error_description to printable ASCII
        // without the double quote and the backslash.
        let description: String = description
            .chars()
            .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
            .collect();
        Self::new("invalid_client", StatusCode::UNAUTHORIZED, description)
    }

    /// `invalid_grant`: the code, refresh token or credentials are invalid,
    /// expired, revoked or were issued to another client.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", StatusCode::BAD_REQUEST, description)
    }

    /// `unauthorized_client`: the client may not use this grant type.
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new("unauthorized_client", StatusCode::BAD_REQUEST, description)
    }

    /// `unsupported_grant_type`.
    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            "unsupported_grant_type",
            StatusCode::BAD_REQUEST,
            description,
        )
    }

    /// `invalid_scope`: a scope is unknown or beyond what the client may get.
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new("invalid_scope", StatusCode::BAD_REQUEST, description)
    }

    /// `invalid_target` (RFC 8707 §2): the `resource` is not acceptable.
    pub fn invalid_target(description: impl Into<String>) -> Self {
        Self::new("invalid_target", StatusCode::BAD_REQUEST, description)
    }

    /// `server_error`: Portcullis could not complete the request. The cause
    /// is logged, never sent.
    pub fn server_error() -> Self {
        Self::new(
            "server_error",
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request could not be completed",
        )
    }

    /// `temporarily_unavailable`: the store cannot be reached.
    pub fn temporarily_unavailable() -> Self {
        Self::new(
            "temporarily_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "retry later",
        )
    }

    /// 429 for a client address or client id blocked after too many failed
    /// authentications. RFC 6749 defines no code for this, so the body is
    /// an RFC 9457 problem naming the `brute_force` limit that also carries
    /// `error` = `temporarily_unavailable`, which OAuth client libraries
    /// read as "retry later". `Retry-After` (RFC 6585 §4) gives the wait.
    pub fn authentication_blocked(retry_after: u64) -> Self {
        let mut error = Self::new(
            "temporarily_unavailable",
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed authentications; retry after {}",
                crate::problem::seconds_text(retry_after)
            ),
        );
        error.retry_after = Some(retry_after);
        error
    }

    /// The RFC 6749 error code.
    pub const fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub const fn status(&self) -> StatusCode {
        self.status
    }
}

/// An error response of the token, introspection and revocation endpoints
/// (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
#[schema(as = OAuthError)]
pub struct ErrorResponse {
    /// The RFC 6749 §5.2 error code, such as `invalid_grant`.
    #[schema(value_type = String)]
    pub error: &'static str,
    /// A sentence for the client's developer, in printable ASCII.
    pub error_description: String,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = if let Some(limit) = self.body_limit {
            Problem::payload_too_large(limit).into_response()
        } else if self.body_timed_out {
            BodyReadError::TimedOut.into_problem().into_response()
        } else if let Some(seconds) = self.retry_after {
            Problem::authentication_blocked(seconds)
                .with_extension("error", json!(self.code))
                .with_extension("error_description", json!(self.description))
                .into_response()
        } else {
            let body = ErrorResponse {
                error: self.code,
                error_description: self.description,
            };
            (self.status, axum::Json(body)).into_response()
        };
        let headers = response.headers_mut();
        // RFC 6749 §5.1 and §5.2: token responses must not be cached.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis\""),
            );
        }
        response
    }
}
