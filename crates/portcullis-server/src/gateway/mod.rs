//! The gateway: requests under a configured route are authenticated,
//! authorized against the route's scopes and proxied to its upstream.
//!
//! - [`path`]: the path normalization every request goes through first.
//! - [`limits`]: the rate limits of a request and their header fields.
//! - [`routes`]: the route table and upstream URIs.
//! - [`proxy`]: forwarding, header policy and streaming.
//! - [`certificate`]: the caller of an `mtls` route, from its client
//!   certificate.
//!
//! Order of checks: route (404), a presented client certificate that
//! failed verification (401), credential (400/401), key kind (403), method
//! (405), scope (403), rate limits (429, or 503 when they cannot be
//! checked), the uses of a usage-limited key (403), body size (413) and the
//! upstream (502/504).
//!
//! A request rejected before it reaches the upstream spends no allowance.
//! Method and scope are checked before the rate limits, and a request that
//! the limits admitted but that is then rejected for its uses (or because
//! the store cannot count them) gets its charge back. So a key without uses
//! left does not use up its tenant's or route's allowance. Method and scope
//! checks are in memory and cost less than a rate-limit check would.
//!
//! The credential check returns 401 for a credential of a kind the route
//! does not accept, and for a certificate that authenticates no single
//! OAuth client.
//!
//! What the cache holds is only what is true of the key; the route's rules are
//! applied to every request, cached key or not. An access token is checked
//! against the route's audience on every request.

mod certificate;
pub mod client_limits;
pub mod limits;
pub mod path;
pub mod proxy;
pub mod routes;

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::{EXPECT, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
use portcullis_core::credential::KeyKind;
use portcullis_store::CredentialRef;

use crate::app::AppState;
use crate::auth::token::check_certificate_binding;
use crate::auth::{AuthenticatedToken, Caller, CertificateCaller, CheckContext};
use crate::config::RouteConfig;
use crate::listener::ClientCertificate;
use crate::listener::ConnectionInfo;
use crate::pki::presented::{ForwardedCertificates, client_certificate, rejected_certificate};
use crate::problem::Problem;
use crate::ratelimit::Decision;
use crate::telemetry::{FactsHandle, RequestId};
use crate::usage::FailedAuthentication;
use limits::Rejection;
use proxy::ForwardContext;

/// Most request-body bytes read and thrown away before an early error
/// response. Over HTTP/2 a response sent while the client is still sending
/// ends the stream with a reset, and some clients (curl 7.88) then drop the
/// response; reading a small body first lets them see it. Larger bodies are
/// not read: their sender gets the reset.
pub const DISCARD_LIMIT: usize = 64 * 1024;

/// How long reading such a body may take.
pub const DISCARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Handles every request that no Portcullis endpoint matched.
pub async fn handle(State(state): State<AppState>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();

    let judged = match judge(&state, &parts).await {
        Ok(judged) => judged,
        Err(rejection) => {
            discard(&parts.headers, body).await;
            let mut response = rejection.problem.into_response();
            if let Some(decision) = &rejection.decision {
                limits::set_header_fields(response.headers_mut(), decision);
            }
            return response;
        }
    };
    let mut identity = identity_headers(&judged.caller);
    if let Some(thumbprint) = judged.certificate_thumbprint
        && let Ok(value) = HeaderValue::from_str(&thumbprint)
    {
        identity.push((
            HeaderName::from_static(CERTIFICATE_THUMBPRINT_HEADER),
            value,
        ));
    }
    let context = ForwardContext {
        identity,
        peer_ip: judged.peer_ip,
        peer_trusted: state.proxies.contains(judged.peer_ip),
        tls: judged.tls,
        request_id: &request_id,
        client_certificate_header: state
            .forwarded_certificates
            .as_ref()
            .map(ForwardedCertificates::header),
    };
    let request = Request::from_parts(parts, body);
    let usage_limited = match &judged.caller {
        Caller::ApiKey(authenticated) if authenticated.key.limits.max_uses.is_some() => {
            Some(authenticated.key.id)
        }
        _ => None,
    };
    let mut response = match state
        .upstream
        .forward(judged.route, judged.uri, request, context)
        .await
    {
        Ok(response) => response,
        Err(problem) => {
            // No upstream response arrived (a body over the limit or too
            // slow, an unreachable or slow upstream), so the request was
            // not one of the key's `--max-uses` successful requests.
            if let Some(key_id) = usage_limited
                && let Err(error) = state.store.refund_key_use(key_id).await
            {
                tracing::warn!(key_id = %key_id, error = %error, "giving back a use of a usage-limited key failed");
            }
            problem.into_response()
        }
    };
    if let Some(decision) = &judged.decision {
        limits::set_header_fields(response.headers_mut(), decision);
    }
    response
}

/// A request that passed every check, ready to forward.
struct Judged<'a> {
    route: &'a RouteConfig,
    uri: http::Uri,
    caller: Caller,
    peer_ip: std::net::IpAddr,
    tls: bool,
    /// The `x5t#S256` thumbprint of the request's verified client
    /// certificate.
    certificate_thumbprint: Option<String>,
    /// The rate limit decision, when a limit applies.
    decision: Option<Decision>,
}

/// The identity header that carries the SHA-256 thumbprint (base64url, RFC
/// 8705 §3.1 `x5t#S256`) of the caller's verified client certificate.
pub const CERTIFICATE_THUMBPRINT_HEADER: &str = "x-portcullis-client-certificate-sha256";

/// Applies the checks in the order the module docs give.
async fn judge<'a>(state: &'a AppState, parts: &Parts) -> Result<Judged<'a>, Rejection> {
    let facts = parts
        .extensions
        .get::<FactsHandle>()
        .cloned()
        .unwrap_or_default();
    let connection = parts
        .extensions
        .get::<ConnectionInfo>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("request reached the gateway without connection info");
            Problem::internal()
        })?;

    // The path was normalized by the outer middleware; this is the path
    // that is judged and the path the upstream receives.
    let path = parts.uri.path();
    let query = parts.uri.query();
    let (route, label) = state
        .routes
        .find_labelled(path)
        .ok_or_else(|| Problem::not_found("no route matches this path"))?;
    facts.update(|facts| {
        facts.route = Some(route.path_prefix.clone());
        facts.metric_route = Some(label.clone());
    });

    let peer_ip = connection.peer.ip();
    let context = CheckContext {
        usage: &state.usage,
        client_ip: state.proxies.client_ip(peer_ip, &parts.headers),
        surface: "gateway",
        facts: &facts,
        now: time::OffsetDateTime::now_utc(),
        brute_force: &state.brute_force,
    };
    let certificate = client_certificate(state, &connection, &parts.headers);
    if let Some(certificate) = &certificate {
        check_presented_certificate(state, certificate, &context)?;
    }

    let caller =
        certificate::authenticate_caller(state, route, parts, certificate.as_deref(), &context)
            .await?;
    if let Caller::AccessToken(authenticated) = &caller {
        check_certificate_binding(authenticated, certificate.as_deref(), &context)?;
    }
    if route.client_certificate_required {
        certificate::require_client_certificate(state, &caller, certificate.as_deref(), &context)
            .await?;
    }
    if let Some(client_id) = caller.client_id() {
        // API keys were counted when they verified; a client counts once
        // its token or certificate passed every check above.
        context
            .usage
            .count_request(CredentialRef::Client(client_id), None, context.now, false);
        context.usage.record_success(
            CredentialRef::Client(client_id),
            None,
            context.now,
            context.client_ip,
        );
    }
    if let Caller::ApiKey(authenticated) = &caller
        && authenticated.key.kind != KeyKind::Tenant
    {
        return Err(Problem::forbidden(
            "operator_key_not_allowed",
            "operator keys are for the admin and verify APIs; call the gateway with a tenant key",
        )
        .into());
    }

    let Some(required) = route.scopes.required(&parts.method) else {
        return Err(Problem::method_not_allowed(&route.scopes.allowed_methods()).into());
    };
    if let Some(missing) = caller.scopes().first_missing(required) {
        return Err(Problem::insufficient_scope(missing).into());
    }
    let uri = routes::upstream_uri(route, path, query).map_err(|error| {
        tracing::error!(error = %error, route = ?route.path_prefix, "building the upstream URI failed");
        Problem::internal()
    })?;

    let client_limits = match &caller {
        Caller::AccessToken(authenticated) => Some(
            state
                .client_limits
                .get(&state.store, authenticated.client_id)
                .await
                .map_err(|error| {
                    tracing::error!(client_id = %authenticated.client_id, error = %error, "reading the rate limits of a client failed");
                    Problem::store_unavailable()
                })?,
        ),
        Caller::ApiKey(_) | Caller::Certificate(_) => None,
    };
    let applicable =
        limits::applicable_limits(&state.limits, route, &caller, client_limits.as_deref())?;
    let mut decision = limits::check(&state.rate_limiter, &applicable).await?;
    if let Err(problem) = limits::spend_use(&state.store, &caller).await {
        limits::refund(&state.rate_limiter, &applicable, decision.as_mut()).await;
        return Err(Rejection { problem, decision });
    }
    context
        .usage
        .record_scope_use(caller.credential(), required.iter(), context.now);

    let certificate_thumbprint = authenticating_thumbprint(route, &caller, certificate.as_deref());
    Ok(Judged {
        route,
        uri,
        caller,
        peer_ip,
        tls: connection.tls,
        certificate_thumbprint,
        decision,
    })
}

/// Returns the thumbprint of the client certificate when it took part in
/// authenticating `caller`, so the upstream never reads a certificate
/// identity that the caller was not checked against:
///
/// - the certificate is the caller's credential (a route that accepts
///   `mtls`, which also covers a registered self-signed certificate);
/// - the access token is bound to it (RFC 8705 §3 `cnf` `x5t#S256`), which
///   [`check_certificate_binding`] has compared;
/// - the route sets `client_certificate = "required"`, and
///   [`certificate::require_client_certificate`] has found that the
///   certificate authenticates the token's client.
///
/// An API key belongs to no OAuth client, so a certificate sent with one
/// is never forwarded, nor one sent with an unbound token on another route.
fn authenticating_thumbprint(
    route: &RouteConfig,
    caller: &Caller,
    certificate: Option<&ClientCertificate>,
) -> Option<String> {
    let took_part = match caller {
        Caller::Certificate(authenticated) => {
            return Some(authenticated.thumbprint_sha256.clone());
        }
        Caller::AccessToken(authenticated) => {
            authenticated.certificate_thumbprint.is_some() || route.client_certificate_required
        }
        Caller::ApiKey(_) => false,
    };
    let certificate = certificate.filter(|_| took_part)?;
    Some(certificate.thumbprint_sha256.clone())
}

/// Rejects a client certificate that failed verification with 401 and
/// records the failure with its serial and issuer. A single self-signed
/// certificate whose public key is registered for RFC 8705 §2.2 passes:
/// it chains to no CA by design, and the credential check decides.
fn check_presented_certificate(
    state: &AppState,
    certificate: &ClientCertificate,
    context: &CheckContext<'_>,
) -> Result<(), Problem> {
    let Err(rejection) = &certificate.verdict else {
        return Ok(());
    };
    let registered_self_signed = state
        .client_certificate_trust
        .get()
        .is_some_and(|trust| trust.accepts_self_signed(&certificate.chain));
    if registered_self_signed {
        return Ok(());
    }

    Err(reject_certificate(rejection, context))
}

/// Records the failure of a rejected client certificate with its serial
/// and issuer, and builds its 401.
fn reject_certificate(
    rejection: &crate::pki::verify::Rejection,
    context: &CheckContext<'_>,
) -> Problem {
    context
        .usage
        .record_failure(FailedAuthentication::certificate_rejected(
            context.now,
            context.client_ip,
            context.surface,
            rejection,
        ));
    rejected_certificate(rejection)
}

/// Reads and drops up to [`DISCARD_LIMIT`] bytes of a body that will not be
/// forwarded; see the constant for why. A client that sent
/// `Expect: 100-continue` is waiting for permission to send its body, so
/// nothing is read and it never sends it (RFC 9110 §10.1.1).
pub(crate) async fn discard(headers: &HeaderMap, body: Body) {
    let expects_continue = headers
        .get(EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return;
    }
    let limited = http_body_util::Limited::new(body, DISCARD_LIMIT);
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, limited.collect()).await;
}

const TENANT_HEADER: HeaderName = HeaderName::from_static("x-portcullis-tenant");
const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-portcullis-key-id");
const CLIENT_ID_HEADER: HeaderName = HeaderName::from_static("x-portcullis-client-id");
const SUBJECT_HEADER: HeaderName = HeaderName::from_static("x-portcullis-subject");
const SCOPES_HEADER: HeaderName = HeaderName::from_static("x-portcullis-scopes");
const TOKEN_ID_HEADER: HeaderName = HeaderName::from_static("x-portcullis-token-id");
const AUTH_METHOD_HEADER: HeaderName = HeaderName::from_static("x-portcullis-auth-method");
const ENVIRONMENT_HEADER: HeaderName = HeaderName::from_static("x-portcullis-environment");

/// Builds the `X-Portcullis-*` headers that tell the upstream who is calling.
/// The names are constants built at compile time, so no name is parsed per
/// request.
fn identity_headers(caller: &Caller) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::with_capacity(6);
    let mut add = |name: HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.push((name, value));
        }
    };
    match caller {
        Caller::ApiKey(authenticated) => {
            let key = &authenticated.key;
            if let Some(tenant) = &key.tenant {
                add(TENANT_HEADER, tenant.to_string());
            }
            add(KEY_ID_HEADER, key.id.to_string());
            add(SCOPES_HEADER, key.scopes.to_space_separated());
            add(AUTH_METHOD_HEADER, "api_key".to_owned());
            add(ENVIRONMENT_HEADER, key.environment.as_str().to_owned());
        }
        Caller::AccessToken(authenticated) => {
            // Every value here was checked to be a valid header value when
            // the token was verified, so none is dropped.
            let AuthenticatedToken {
                token,
                client_id,
                tenant,
                scopes,
                certificate_thumbprint: _,
            } = authenticated.as_ref();
            add(TENANT_HEADER, tenant.to_string());
            add(CLIENT_ID_HEADER, client_id.to_string());
            add(SUBJECT_HEADER, token.claims.sub.clone());
            add(SCOPES_HEADER, scopes.to_space_separated());
            add(TOKEN_ID_HEADER, token.claims.jti.clone());
            add(AUTH_METHOD_HEADER, "jwt".to_owned());
        }
        Caller::Certificate(authenticated) => {
            let CertificateCaller {
                client,
                thumbprint_sha256: _,
            } = authenticated.as_ref();
            add(TENANT_HEADER, client.tenant.to_string());
            add(CLIENT_ID_HEADER, client.id.to_string());
            add(SCOPES_HEADER, client.scopes.to_space_separated());
            add(AUTH_METHOD_HEADER, client.auth_method.as_str().to_owned());
        }
    }
    headers
}
