//! The JSON request body of the admin and verify APIs: read within a size
//! limit, then parsed into the handler's input type. A body that does not
//! fit that type gets a problem naming the member at fault.

use axum::body::Body;
use bytes::Bytes;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::MAX_JSON_BODY;
use crate::body::{BodyReadError, read_limited};
use crate::problem::Problem;

/// A request body read within [`MAX_JSON_BODY`] before authentication, so
/// that an early error response does not race a client still sending (see
/// `gateway::DISCARD_LIMIT`), and parsed as JSON after it.
pub struct RequestBody {
    content_type: Option<String>,
    bytes: Bytes,
}

impl RequestBody {
    /// Reads the whole body, up to [`MAX_JSON_BODY`] bytes.
    pub async fn read(parts: &Parts, body: Body) -> Result<Self, Problem> {
        let bytes = read_limited(body, MAX_JSON_BODY)
            .await
            .map_err(BodyReadError::into_problem)?;
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Self {
            content_type,
            bytes,
        })
    }

    /// Parses the body as JSON. Errors are problem responses that name the
    /// field where serde can tell which.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        let media_type = self
            .content_type
            .as_deref()
            .and_then(|value| value.split(';').next())
            .map(str::trim);
        let is_json = media_type.is_some_and(|media| {
            media.eq_ignore_ascii_case("application/json")
                || media.to_ascii_lowercase().ends_with("+json")
        });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as application/json",
            ));
        }
        // serde's derived `Deserialize` also accepts a struct written as an
        // array of its members in order, a form no client means to send.
        let first = self.bytes.iter().find(|byte| !byte.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(invalid_body_problem(
                "the body must be a JSON object".to_owned(),
                None,
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&self.bytes);
        let value: T = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| invalid_body(&error))?;
        deserializer.end().map_err(|_| {
            invalid_body_problem("trailing data after the JSON body".to_owned(), None)
        })?;
        Ok(value)
    }

    /// Parses the body as JSON, or gives the defaults when it is empty.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, Problem> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        self.json()
    }
}

/// Converts a failed parse into a 400 `invalid_body` problem. Its `field`
/// is the path of the member at fault (`scopes[1]`, `jwks.keys`), when
/// serde can place the error.
fn invalid_body(error: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let inner = error.inner();
    let message = inner.to_string();
    let field = member_at_fault(&error.path().to_string(), &message);
    // serde_json reports some type errors as syntax errors, such as `{}`
    // for a string enum, so a syntax error inside a member names it too.
    if inner.is_eof() || (field.is_none() && inner.is_syntax()) {
        return invalid_body_problem(format!("the body is not valid JSON: {inner}"), None);
    }
    // serde names the Rust type it expected ("struct KeyInput"), which
    // means nothing to a caller.
    let message = match message.split_once("expected struct ") {
        None => message,
        Some((head, _)) => format!("{head}expected a JSON object"),
    };
    let detail = match &field {
        Some(field) => format!("invalid member {field}: {message}"),
        None => format!("invalid JSON body: {message}"),
    };
    invalid_body_problem(detail, field)
}

/// Returns the path of the member that `message` is about. serde reports a
/// missing member as an error of the object that should contain it, so
/// `path` ends at that object and the member's name is only in the message
/// (`missing field `name``).
fn member_at_fault(path: &str, message: &str) -> Option<String> {
    let parent = if path == "." { "" } else { path };
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_owned())
    };
    if let Some(name) = named("missing field `") {
        return Some(if parent.is_empty() {
            name
        } else {
            format!("{parent}.{name}")
        });
    }
    // The path of an unknown member already ends at its name, but the
    // empty name prints as no segment at all.
    if let Some(name) = named("unknown field `")
        && parent.is_empty()
    {
        return Some(name);
    }
    (!parent.is_empty()).then(|| parent.to_owned())
}

fn invalid_body_problem(detail: String, field: Option<String>) -> Problem {
    let problem = Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        "Invalid request",
        detail,
    );
    match field {
        Some(field) => problem.with_extension("field", json!(field)),
        None => problem,
    }
}

#[cfg(test)]
mod tests;
