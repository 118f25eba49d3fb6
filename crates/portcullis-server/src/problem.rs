//! Error responses: RFC 9457 problem details, with the RFC 6750 challenge on
//! every 401 and on scope failures.
//!
//! This is the one place that turns a failure into HTTP. Three texts are kept
//! apart: the `code` is stable and machine-readable, `detail` is written for
//! the caller and names no secret and no internal, and operators read the
//! cause in the log, not here.

use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use portcullis_core::credential::KeyRejection;
use portcullis_core::scope::Scope;
use serde_json::{Map, Value, json};

/// Media type of problem details (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The `limit` member of a 429 for too many failed authentications.
pub const BRUTE_FORCE_LIMIT: &str = "brute_force";

/// Realm named in every `WWW-Authenticate` challenge.
const REALM: &str = "portcullis";

/// The `error` of an RFC 6750 §3 bearer challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// No credential was sent: the challenge carries no error code
    /// (RFC 6750 §3.1).
    Missing,
    /// The request is malformed, such as two credentials at once.
    InvalidRequest,
    /// The credential is malformed, unknown, expired or revoked.
    InvalidToken,
    /// The credential lacks the named scope.
    InsufficientScope(Scope),
    /// A signed request (a leak report) has no valid signature. RFC 9110
    /// §15.5.2 requires a challenge on every 401, and no registered scheme
    /// fits, so the challenge names the two signature headers.
    RequestSignature,
}

/// One error response. Boxed, because it travels in `Err` through every
/// handler and a small `Result` keeps the success path cheap.
#[derive(Clone, Debug)]
pub struct Problem(Box<Details>);

#[derive(Clone, Debug)]
struct Details {
    status: StatusCode,
    /// The `type` URI when it is not `urn:portcullis:problem:CODE`.
    type_uri: Option<&'static str>,
    code: &'static str,
    title: &'static str,
    detail: String,
    challenge: Option<Challenge>,
    extensions: Map<String, Value>,
    allow: Option<String>,
    /// The `Retry-After` value in seconds (RFC 9110 §10.2.3).
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem with a status, a stable code, a short title and a detail
    /// sentence for the caller.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Details {
            status,
            type_uri: None,
            code,
            title,
            detail: detail.into(),
            challenge: None,
            extensions: Map::new(),
            allow: None,
            retry_after: None,
        }))
    }

    /// Adds an RFC 6750 challenge.
    pub fn with_challenge(mut self, challenge: Challenge) -> Self {
        self.0.challenge = Some(challenge);
        self
    }

    /// Sets the `type` member to a registered problem type, in place of
    /// `urn:portcullis:problem:CODE`. The `code` member stays.
    pub fn with_type(mut self, type_uri: &'static str) -> Self {
        self.0.type_uri = Some(type_uri);
        self
    }

    /// Adds an extension member to the body (RFC 9457 §3.2).
    pub fn with_extension(mut self, name: &str, value: Value) -> Self {
        self.0.extensions.insert(name.to_owned(), value);
        self
    }

    /// The HTTP status.
    pub const fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable machine-readable code.
    pub const fn code(&self) -> &'static str {
        self.0.code
    }

    /// The detail sentence.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// An extension member of the body, such as `field`.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.0.extensions.get(name)
    }

    /// 401: no credential was sent.
    pub fn missing_credential() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_credential",
            "Authentication required",
            "send an API key in the Authorization header (Bearer) or in X-API-Key",
        )
        .with_challenge(Challenge::Missing)
    }

    /// 401: an API key was sent and refused.
    pub fn rejected_key(rejection: KeyRejection) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            rejection.code(),
            "Invalid API key",
            rejection.message(),
        )
        .with_challenge(Challenge::InvalidToken)
    }

    /// 401: the credential is of a kind this endpoint does not accept.
    pub fn wrong_credential_kind(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Invalid credential",
            detail,
        )
        .with_challenge(Challenge::InvalidToken)
    }

    /// 400: the request carried its credential in a way that is not allowed
    /// (RFC 6750 §2 allows one method per request).
    pub fn invalid_credential_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code,
            "Invalid authentication request",
            detail,
        )
        .with_challenge(Challenge::InvalidRequest)
    }

    /// 403: the credential lacks `scope` (RFC 6750 §3.1 `insufficient_scope`).
    pub fn insufficient_scope(scope: &Scope) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Insufficient scope",
            format!("this request requires the scope {scope}"),
        )
        .with_extension("required_scope", json!(scope.as_str()))
        .with_challenge(Challenge::InsufficientScope(scope.clone()))
    }

    /// 403: authenticated, but this kind of key may not use this endpoint.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, "Forbidden", detail)
    }

    /// 400: a field of the request body or path is invalid.
    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "Invalid request",
            detail,
        )
        .with_extension("field", json!(field))
    }

    /// 400: the request target is written in a form that could be read as
    /// another path.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "Invalid request path",
            detail,
        )
    }

    /// 404: nothing is served at this path.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
    }

    /// 405: the route exists but not for this method.
    pub fn method_not_allowed(allowed: &[&str]) -> Self {
        let allow = allowed.join(", ");
        let mut problem = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            format!("this route accepts {allow}"),
        );
        problem.0.allow = Some(allow);
        problem
    }

    /// 409: the change conflicts with the current state.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, "Conflict", detail)
    }

    /// 413: the body is larger than the route allows (RFC 9110 §15.5.14).
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Request body too large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
        .with_extension("limit_bytes", json!(limit))
    }

    /// 502: the upstream could not be reached or broke the exchange.
    pub fn bad_gateway() -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "Bad gateway",
            "the upstream service did not respond",
        )
    }

    /// 504: the upstream did not respond in time.
    pub fn gateway_timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "Gateway timeout",
            "the upstream service did not respond in time",
        )
    }

    /// 503: the store cannot be reached, so no decision can be made; the
    /// request is denied (fail closed).
    pub fn store_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "Service unavailable",
            "credentials cannot be checked right now; retry later",
        )
    }

    /// 503 `store_unavailable` for an admin operation whose operator key was
    /// already checked: the store failed while reading or changing the
    /// records the operation names.
    pub fn store_failed() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "Service unavailable",
            "the store failed to complete this operation; retry later",
        )
    }

    /// 429: the client address or the identity the request names failed to
    /// authenticate too often and is blocked for `retry_after` seconds
    /// (RFC 6585 §4). No credential was checked.
    pub fn authentication_blocked(retry_after: u64) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "authentication_blocked",
            "Too many failed authentications",
            format!(
                "too many failed authentications from this address or for this credential; \
                 retry after {}",
                seconds_text(retry_after)
            ),
        )
        .with_extension("limit", json!(BRUTE_FORCE_LIMIT));
        problem.0.retry_after = Some(retry_after);
        problem
    }

    /// Sets the `Retry-After` field (RFC 9110 §10.2.3) to `seconds`.
    pub const fn with_retry_after(mut self, seconds: u64) -> Self {
        self.0.retry_after = Some(seconds);
        self
    }

    /// Returns the `Retry-After` value in seconds, when the response has one.
    pub const fn retry_after(&self) -> Option<u64> {
        self.0.retry_after
    }

    /// 500: a Portcullis fault. The body stays generic; the cause is logged.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "an internal error occurred",
        )
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = Map::new();
        let type_uri = match self.0.type_uri {
            Some(uri) => uri.to_owned(),
            None => format!("urn:portcullis:problem:{}", self.0.code),
        };
        body.insert("type".to_owned(), json!(type_uri));
        body.insert("title".to_owned(), json!(self.0.title));
        body.insert("status".to_owned(), json!(self.0.status.as_u16()));
        body.insert("detail".to_owned(), json!(self.0.detail));
        body.insert("code".to_owned(), json!(self.0.code));
        for (name, value) in &self.0.extensions {
            body.insert(name.clone(), value.clone());
        }
        Value::Object(body)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.0.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(challenge) = &self.0.challenge {
            let value = challenge_header(challenge, &self.0.detail);
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(WWW_AUTHENTICATE, value);
            }
        }
        if let Some(allow) = self
            .0
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            headers.insert(ALLOW, allow);
        }
        if let Some(seconds) = self.0.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ProblemCode(self.0.code));
        response
    }
}

/// The code of a problem response, left in the response extensions for the
/// request log line.
#[derive(Clone, Copy, Debug)]
pub struct ProblemCode(pub &'static str);

/// Writes a `Bearer` challenge (RFC 6750 §3).
fn challenge_header(challenge: &Challenge, detail: &str) -> String {
    let error = match challenge {
        Challenge::Missing => return format!("Bearer realm=\"{REALM}\""),
        Challenge::RequestSignature => {
            return format!(
                "Signature realm=\"{REALM}\", headers=\"github-public-key-identifier github-public-key-signature\""
            );
        }
        Challenge::InvalidRequest => "invalid_request",
        Challenge::InvalidToken => "invalid_token",
        Challenge::InsufficientScope(_) => "insufficient_scope",
    };
    let mut value = format!(
        "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{}\"",
        quoted_text(detail)
    );
    if let Challenge::InsufficientScope(scope) = challenge {
        value.push_str(&format!(", scope=\"{scope}\""));
    }
    value
}

/// Keeps only the characters RFC 6750 §3 allows inside `error_description`
/// (printable ASCII except `"` and `\`).
fn quoted_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if matches!(c, '\x20'..='\x7e') && c != '"' && c != '\\' {
                c
            } else {
                '\''
            }
        })
        .collect()
}

/// Writes a number of seconds for a message: `1 second`, `30 seconds`.
pub fn seconds_text(seconds: u64) -> String {
    if seconds == 1 {
        "1 second".to_owned()
    } else {
        format!("{seconds} seconds")
    }
}

#[cfg(test)]
pub(crate) mod reference_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credential_challenge_has_no_error() {
        let header = challenge_header(&Challenge::Missing, "x");
        assert_eq!(header, "Bearer realm=\"portcullis\"");
    }

    #[test]
    fn scope_challenge_names_scope() {
        let scope = Scope::parse("admin:read").unwrap();
        let header = challenge_header(&Challenge::InsufficientScope(scope), "needs admin:read");
        assert!(header.contains("error=\"insufficient_scope\""), "{header}");
        assert!(header.contains("scope=\"admin:read\""), "{header}");
    }

    #[test]
    fn description_is_header_safe() {
        assert_eq!(quoted_text("a \"b\" \\ c\n"), "a 'b' ' c'");
    }
}
