//! Logging: the subscriber set-up and the one log line per request.
//!
//! Values that come from outside (paths, names, header values) are logged
//! only as `Debug`-formatted fields, which escape line breaks and other
//! control characters, so no input can forge a log line.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use portcullis_core::escape::{escape_json_line, escape_text_line};
use portcullis_core::ids::KeyId;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::gateway::path::normalize;
use crate::listener::MAX_URI_BYTES;
use crate::metrics::labels::RequestLabels;
use crate::metrics::{self, AuthMethodLabel, AuthOutcome, MethodLabel, RouteLabel, StatusClass};
use crate::problem::Problem;

/// Formats an error with its sources, `outer: inner: root`, so a log line
/// shows the cause that a wrapping error's own text leaves out.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Log filter used when `PORTCULLIS_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber: human-readable lines or JSON objects on
/// standard error. `filter` uses `EnvFilter` syntax (`info`,
/// `portcullis_server=debug`).
pub fn init(format: LogFormat, filter: Option<&str>) {
    let filter = with_quiet_rustls(filter.unwrap_or(DEFAULT_FILTER));
    let filter = EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_rustls(DEFAULT_FILTER)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(EscapingStderr {
            json: format == LogFormat::Json,
        });
    // A second call (tests starting several servers) keeps the first.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Human => builder.with_ansi(false).try_init(),
    };
}

/// Standard error, written one escaped line per event.
///
/// `Debug` fields already escape line breaks, but a `Display` field or a
/// message may carry outside text. So this writer escapes each character of
/// [`is_unsafe_in_line`](portcullis_core::escape::is_unsafe_in_line) in
/// every formatted event, except the final line break. No value can then
/// start a new line or send terminal controls.
struct EscapingStderr {
    json: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EscapingStderr {
    type Writer = EscapedLine;

    fn make_writer(&'a self) -> Self::Writer {
        EscapedLine {
            json: self.json,
            buffer: Vec::new(),
        }
    }
}

/// One event's output, collected and written escaped when dropped. The
/// formatter makes one writer per event and drops it after the event.
struct EscapedLine {
    json: bool,
    buffer: Vec<u8>,
}

impl std::io::Write for EscapedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EscapedLine {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let line = escape_log_line(&self.buffer, self.json);
        // A log line that cannot be written has nowhere to report the error.
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }
}

/// Escapes one formatted event and ends it with a single line break. JSON
/// events get `\uXXXX` escapes, which keep them valid JSON, and
/// human-readable events get `\n`, `\r`, `\t` and `\u{XX}`.
fn escape_log_line(bytes: &[u8], json: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let mut line = if json {
        escape_json_line(text)
    } else {
        escape_text_line(text)
    };
    line.push('\n');
    line
}

/// Adds `rustls=error` to a filter that says nothing about rustls. rustls
/// warns once per connection about client mistakes, such as an IP address
/// sent as the TLS server name, which would flood the log under load; the
/// handshake outcome is logged by the listener instead.
fn with_quiet_rustls(filter: &str) -> String {
    if filter.contains("rustls") {
        filter.to_owned()
    } else {
        format!("{filter},rustls=error")
    }
}

/// Facts about a request that handlers learn and the log line reports.
#[derive(Clone, Debug, Default)]
pub struct RequestFacts {
    /// The matched route: a gateway route prefix or an endpoint pattern.
    pub route: Option<String>,
    /// The authenticated tenant.
    pub tenant: Option<String>,
    /// The authenticated key.
    pub key_id: Option<KeyId>,
    /// The OAuth client of an authenticated access token.
    pub client_id: Option<String>,
    /// The route as a metric label; unset means `unmatched`.
    pub metric_route: Option<RouteLabel>,
    /// The credential kind the request authenticated with, or tried to.
    pub auth_method: Option<AuthMethodLabel>,
    /// The outcome of the request's authentication.
    pub auth_outcome: Option<AuthOutcome>,
}

/// A handle for handlers to fill in [`RequestFacts`].
#[derive(Clone, Debug, Default)]
pub struct FactsHandle(Arc<Mutex<RequestFacts>>);

impl FactsHandle {
    /// Updates the facts.
    pub fn update(&self, change: impl FnOnce(&mut RequestFacts)) {
        let mut facts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut facts);
    }

    fn snapshot(&self) -> RequestFacts {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// This request's id, also sent to the upstream and returned in
/// `X-Request-Id`.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Outermost middleware: gives the request an id, normalizes its path
/// before any routing, and writes one log line and records the request's
/// metrics when the response head is ready.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Always a fresh id: an inbound X-Request-Id is the client's text and
    // would let it choose what the logs contain.
    let request_id = uuid::Uuid::now_v7().to_string();
    let facts = FactsHandle::default();
    let method = request.method().clone();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    request.extensions_mut().insert(facts.clone());

    let mut response = match normalized_uri(request.uri()) {
        Ok(Some(uri)) => {
            *request.uri_mut() = uri;
            next.run(request).await
        }
        Ok(None) => next.run(request).await,
        Err(problem) => problem.into_response(),
    };

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let facts = facts.snapshot();
    if let Some(metrics) = metrics::get() {
        let labels = RequestLabels {
            route: facts.metric_route.clone().unwrap_or(RouteLabel::Unmatched),
            method: MethodLabel::from(&method),
            status_class: StatusClass::from(response.status()),
            auth_method: facts.auth_method.unwrap_or(AuthMethodLabel::None),
            auth_outcome: facts.auth_outcome.unwrap_or(AuthOutcome::None),
        };
        metrics.record_request(&labels, started.elapsed());
    }
    tracing::info!(
        request_id = %request_id,
        method = %method,
        // Plain strings, so a log query matches `route="/api"`; the log
        // writer escapes every control character in them.
        route = %facts.route.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        tenant = %facts.tenant.as_deref().unwrap_or("-"),
        key_id = %facts.key_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
        client_id = %facts.client_id.as_deref().unwrap_or("-"),
        latency_ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0,
        "request"
    );
    response
}

/// The request URI with its path normalized: `Ok(None)` when it is already
/// canonical, a 400 problem when it is ambiguous.
fn normalized_uri(uri: &http::Uri) -> Result<Option<http::Uri>, Problem> {
    check_uri_length(uri)?;
    let path = uri.path();
    let normalized = normalize(path).map_err(|error| Problem::invalid_path(error.to_string()))?;
    if normalized == path {
        return Ok(None);
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| Problem::invalid_path("the request path is invalid"))?,
    );
    http::Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| Problem::invalid_path("the request path is invalid"))
}

/// Rejects a request target (path and query) longer than
/// [`MAX_URI_BYTES`] with 414, before the path is normalized.
fn check_uri_length(uri: &http::Uri) -> Result<(), Problem> {
    let length = uri
        .path_and_query()
        .map_or(0, |path_and_query| path_and_query.as_str().len());
    if length <= MAX_URI_BYTES {
        return Ok(());
    }
    Err(Problem::new(
        http::StatusCode::URI_TOO_LONG,
        "uri_too_long",
        "URI too long",
        format!(
            "the request target is {length} bytes, over the limit of {MAX_URI_BYTES} bytes; \
             send long parameters in the request body"
        ),
    )
    .with_extension("limit_bytes", serde_json::json!(MAX_URI_BYTES)))
}

/// Route-level middleware for Portcullis's own endpoints: records the
/// matched route pattern for the log line and the metrics.
pub async fn label_matched_route(request: Request, next: Next) -> Response {
    if let (Some(matched), Some(facts)) = (
        request.extensions().get::<MatchedPath>(),
        request.extensions().get::<FactsHandle>(),
    ) {
        let route = matched.as_str().to_owned();
        let label = RouteLabel::endpoint(&route);
        facts.update(|facts| {
            facts.route = Some(route);
            facts.metric_route = Some(label);
        });
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use portcullis_core::escape::is_unsafe_in_line;

    use super::*;

    #[test]
    fn json_event_stays_one_valid_line() {
        let event = "{\"message\":\"request\",\"route\":\"/a\u{2028}b\u{85}c\u{1b}[2J\"}\n";
        let line = escape_log_line(event.as_bytes(), true);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert!(!line.trim_end().chars().any(is_unsafe_in_line), "{line}");
        let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(parsed["route"], "/a\u{2028}b\u{85}c\u{1b}[2J");
    }

    #[test]
    fn human_event_shows_escapes() {
        let event = "INFO token issued reason=a\r\n2026-12-04 INFO forged\u{2029}x\n";
        let line = escape_log_line(event.as_bytes(), false);
        assert_eq!(
            line,
            "INFO token issued reason=a\\r\\n2026-12-04 INFO forged\\u{2029}x\n"
        );
    }
}
