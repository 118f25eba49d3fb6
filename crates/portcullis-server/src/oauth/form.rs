//! Strict reading of `application/x-www-form-urlencoded` OAuth requests.
//!
//! RFC 6749 §3.1 and §3.2 forbid a parameter more than once, so a request
//! that repeats one has two readings and is rejected as `invalid_request`
//! before anything else reads it. Empty values count as absent, as RFC
//! 6749 §3.1 requires.

use std::collections::BTreeMap;

use axum::body::Body;
use http::HeaderMap;
use http::header::CONTENT_TYPE;

use super::error::OAuthError;
use crate::body::{BodyReadError, read_limited};

/// Largest form body the OAuth endpoints read. Token requests are a few
/// hundred bytes; a client assertion signed with RSA-4096 is under 2 KiB.
pub const MAX_FORM_BODY: usize = 64 * 1024;

/// The parameters of one request, each present at most once.
#[derive(Debug, Default)]
pub struct Form(BTreeMap<String, String>);

impl Form {
    /// Parses a query string or form body, rejecting repeated parameters.
    pub fn parse(encoded: &[u8]) -> Result<Self, OAuthError> {
        let mut parameters = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(encoded) {
            if value.is_empty() {
                continue;
            }
            let name = name.into_owned();
            if parameters.contains_key(&name) {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {name} appears more than once"
                )));
            }
            parameters.insert(name, value.into_owned());
        }
        Ok(Self(parameters))
    }

    /// Reads a form body: checks the media type and the size limit.
    pub async fn read(headers: &HeaderMap, body: Body) -> Result<Self, OAuthError> {
        let media_type = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(str::trim);
        if !media_type
            .is_some_and(|media| media.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = read_limited(body, MAX_FORM_BODY)
            .await
            .map_err(|error| match error {
                BodyReadError::TooLarge { limit } => OAuthError::payload_too_large(limit),
                BodyReadError::TimedOut => OAuthError::body_timed_out(),
                BodyReadError::Failed(_) => {
                    OAuthError::invalid_request("the request body could not be read")
                }
            })?;
        Self::parse(&bytes)
    }

    /// The value of `name`, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("the parameter {name} is missing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameter_rejected() {
        for body in [
            "grant_type=client_credentials&scope=a&grant_type=authorization_code",
            "client_id=a&client_id=b",
            "scope=a%3Aread&scope=a%3Awrite",
        ] {
            let error = Form::parse(body.as_bytes()).unwrap_err();
            assert_eq!(error.code(), "invalid_request", "{body}");
        }
    }

    #[test]
    fn values_decoded_once() {
        let form = Form::parse(b"scope=orders%3Aread+x&empty=").unwrap();
        assert_eq!(form.get("scope"), Some("orders:read x"));
        assert_eq!(form.get("empty"), None);
        assert_eq!(
            form.require("grant_type").unwrap_err().code(),
            "invalid_request"
        );
    }
}
