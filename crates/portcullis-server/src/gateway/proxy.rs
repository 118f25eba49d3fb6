//! Forwarding a judged request to its upstream and streaming the response
//! back.
//!
//! Header policy:
//! - hop-by-hop headers (RFC 9110 §7.6.1) and the headers named in
//!   `Connection` are dropped both ways;
//! - the credential and every inbound `X-Portcullis-*` header are dropped;
//! - `X-Forwarded-*` are set afresh, keeping inbound values only from a
//!   trusted proxy;
//! - identity headers are added last, so nothing the client sent can pose
//!   as them.

use std::error::Error as StdError;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Request, Response, Version};
use http_body_util::{BodyExt, Limited, combinators::UnsyncBoxBody};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::RouteConfig;
use crate::problem::Problem;

/// A boxed error, as bodies and the client report them.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The request body type sent upstream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// How long connecting to an upstream may take before the request fails
/// with 502.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle upstream connection is kept for reuse. It should stay
/// below the upstream's own keep-alive timeout, or a reused socket can race
/// the upstream closing it. 15 s is below nginx's default of 75 s.
/// NOTE: Apache httpd closes idle connections after 5 s by default, so such
/// an upstream can still win that race; this is not configurable per route.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the legacy `Proxy-Connection` and `Keep-Alive`. They are
/// `HeaderName` constants, built at compile time, because removing by a
/// `&str` parses and lowercases the name again on every request.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Identity and forwarding facts the upstream receives.
#[derive(Debug)]
pub struct ForwardContext<'a> {
    /// Headers to add, such as `X-Portcullis-Tenant`.
    pub identity: Vec<(HeaderName, HeaderValue)>,
    /// The address that connected to Portcullis.
    pub peer_ip: std::net::IpAddr,
    /// Whether that peer is a trusted proxy.
    pub peer_trusted: bool,
    /// Whether the client connection used TLS.
    pub tls: bool,
    /// This request's id.
    pub request_id: &'a str,
    /// The header in which trusted proxies forward the client certificate,
    /// removed so that the upstream never reads a certificate it cannot
    /// tell was checked.
    pub client_certificate_header: Option<&'a HeaderName>,
}

/// Builds an HTTP/1.1 client for `http` and `https` URLs with
/// [`CONNECT_TIMEOUT`] and [`POOL_IDLE_TIMEOUT`]. HTTPS servers are
/// verified against the operating system's trust store.
pub(crate) fn http_client<B>() -> std::io::Result<Client<HttpsConnector<HttpConnector>, B>>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(https))
}

/// The HTTP client for upstreams (HTTP and HTTPS).
#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
}

impl UpstreamClient {
    /// Builds the client. HTTPS upstreams are verified against the
    /// operating system's trust store.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            client: http_client()?,
        })
    }

    /// Sends `request` to the route's upstream and returns its response, with
    /// the body streamed both ways.
    pub async fn forward(
        &self,
        route: &RouteConfig,
        uri: http::Uri,
        request: Request<Body>,
        context: ForwardContext<'_>,
    ) -> Result<Response<Body>, Problem> {
        let (parts, body) = request.into_parts();
        if declared_length(&parts.headers).is_some_and(|length| length > route.max_body_bytes) {
            return Err(Problem::payload_too_large(route.max_body_bytes));
        }

        let mut outbound = Request::builder()
            .method(parts.method)
            .uri(uri)
            .version(Version::HTTP_11)
            .body(limited(body, route.max_body_bytes))
            .map_err(|error| {
                tracing::error!(error = %error, "building the upstream request failed");
                Problem::internal()
            })?;
        // HTTP/2 clients send the host as the `:authority` pseudo-header,
        // which arrives in the URI rather than as a Host header.
        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
        });
        *outbound.headers_mut() = forwarded_headers(parts.headers, host, &context);

        let response =
            match tokio::time::timeout(route.timeout, self.client.request(outbound)).await {
                Err(_) => return Err(Problem::gateway_timeout()),
                Ok(Err(error)) => return Err(upstream_failure(&error, route)),
                Ok(Ok(response)) => response,
            };

        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// Wraps the request body so that more than `limit` bytes fail the stream,
/// whatever the framing (`Content-Length`, chunked or HTTP/2 frames).
fn limited(body: Body, limit: u64) -> ProxyBody {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Limited::new(body, limit)
        .map_err(BoxError::from)
        .boxed_unsync()
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Builds the upstream's header map from the client's.
fn forwarded_headers(
    mut headers: HeaderMap,
    host: Option<HeaderValue>,
    context: &ForwardContext<'_>,
) -> HeaderMap {
    let inbound_xff = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let inbound_proto = headers.get(&X_FORWARDED_PROTO).cloned();
    let inbound_host = headers.get(&X_FORWARDED_HOST).cloned();

    strip_hop_by_hop(&mut headers);
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("x-portcullis-")
                || name.starts_with("x-forwarded-")
                || name == "forwarded"
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(&name);
    }
    if let Some(name) = context.client_certificate_header {
        headers.remove(name);
    }
    headers.remove(http::header::AUTHORIZATION);
    headers.remove(&crate::auth::extract::API_KEY_HEADER);
    // The client sets Host from the upstream URI.
    headers.remove(HOST);

    let peer = context.peer_ip.to_string();
    let xff = if context.peer_trusted && !inbound_xff.is_empty() {
        format!("{inbound_xff}, {peer}")
    } else {
        peer
    };
    insert(
        &mut headers,
        X_FORWARDED_FOR,
        HeaderValue::from_str(&xff).ok(),
    );
    let proto = match (context.peer_trusted, inbound_proto) {
        (true, Some(proto)) => proto,
        _ => HeaderValue::from_static(if context.tls { "https" } else { "http" }),
    };
    headers.insert(X_FORWARDED_PROTO, proto);
    let forwarded_host = match (context.peer_trusted, inbound_host) {
        (true, Some(inbound)) => Some(inbound),
        _ => host,
    };
    insert(&mut headers, X_FORWARDED_HOST, forwarded_host);
    insert(
        &mut headers,
        X_REQUEST_ID,
        HeaderValue::from_str(context.request_id).ok(),
    );

    for (name, value) in &context.identity {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    if let Some(value) = value {
        headers.insert(name, value);
    }
}

/// Removes hop-by-hop headers and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Maps a client error to 413 (the body limit cut the stream), 408 (the
/// client paused its body past the body read timeout) or 502.
fn upstream_failure(error: &hyper_util::client::legacy::Error, route: &RouteConfig) -> Problem {
    if crate::body::caused_by_timeout(error) {
        return crate::body::BodyReadError::TimedOut.into_problem();
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return Problem::payload_too_large(route.max_body_bytes);
        }
        source = cause.source();
    }
    tracing::warn!(error = %crate::telemetry::ErrorChain(error), upstream = %route.upstream, "upstream request failed");
    Problem::bad_gateway()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(trusted: bool) -> ForwardContext<'static> {
        ForwardContext {
            identity: vec![(
                HeaderName::from_static("x-portcullis-tenant"),
                HeaderValue::from_static("acme"),
            )],
            peer_ip: "127.0.0.9".parse().unwrap(),
            peer_trusted: trusted,
            tls: true,
            request_id: "req-1",
            client_certificate_header: None,
        }
    }

    fn inbound() -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer pc_test_x"),
            ("x-api-key", "pc_test_x"),
            ("x-portcullis-tenant", "evil"),
            ("x-portcullis-anything", "evil"),
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=203.0.113.1"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "application/json"),
            ("host", "portcullis.example.test"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn untrusted_client_headers_replaced() {
        let host = Some(HeaderValue::from_static("portcullis.example.test"));
        let headers = forwarded_headers(inbound(), host, &context(false));
        for gone in [
            "authorization",
            "x-api-key",
            "x-portcullis-anything",
            "forwarded",
            "connection",
            "x-custom-hop",
            "keep-alive",
            "te",
            "host",
        ] {
            assert!(!headers.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(headers["x-portcullis-tenant"], "acme");
        assert_eq!(headers.get_all("x-portcullis-tenant").iter().count(), 1);
        assert_eq!(headers["x-forwarded-for"], "127.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "portcullis.example.test");
        assert_eq!(headers["accept"], "application/json");
        assert_eq!(headers["x-request-id"], "req-1");
    }

    #[test]
    fn trusted_proxy_chain_extended() {
        let headers = forwarded_headers(inbound(), None, &context(true));
        assert_eq!(headers["x-forwarded-for"], "203.0.113.1, 127.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }
}
