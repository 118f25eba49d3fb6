//! The gateway: requests under a configured route are authenticated,
//! authorized against the route's scopes and proxied to its upstream.
//!
//! - [`path`]: the path normalization every request goes through first.
//! - [`routes`]: the route table and upstream URIs.
//! - [`proxy`]: forwarding, header policy and streaming.
//!
//! Order of checks: route (404), credential (400/401), key kind (403),
//! method (405), scope (403), body size (413), then the upstream (502/504).
//! What the cache holds is only what is true of the key; the route's rules
//! are applied to every request, cached key or not.

pub mod path;
pub mod proxy;
pub mod routes;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::HeaderName;
use http::{HeaderValue, Request};
use portcullis_core::credential::KeyKind;

use crate::app::AppState;
use crate::auth::{Authenticated, authenticate_key};
use crate::listener::ConnectionInfo;
use crate::problem::Problem;
use crate::telemetry::{FactsHandle, RequestId};
use proxy::ForwardContext;

/// Handles every request that no Portcullis endpoint matched.
pub async fn handle(State(state): State<AppState>, request: Request<Body>) -> Response {
    match gateway(&state, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn gateway(state: &AppState, request: Request<Body>) -> Result<Response, Problem> {
    let facts = request
        .extensions()
        .get::<FactsHandle>()
        .cloned()
        .unwrap_or_default();
    let connection = request
        .extensions()
        .get::<ConnectionInfo>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("request reached the gateway without connection info");
            Problem::internal()
        })?;
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();

    // The path was normalized by the outer middleware; this is the path
    // that is judged and the path the upstream receives.
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let route = state
        .routes
        .find(&path)
        .ok_or_else(|| Problem::not_found("no route matches this path"))?;
    facts.update(|facts| facts.route = Some(route.path_prefix.clone()));

    let peer_ip = connection.peer.ip();
    let client_ip = state.proxies.client_ip(peer_ip, request.headers());
    let authenticated = authenticate_key(
        &state.verifier,
        &state.usage,
        request.headers(),
        query.as_deref(),
        client_ip,
        "gateway",
    )
    .await?;
    let key = &authenticated.key;
    facts.update(|facts| {
        facts.key_id = Some(key.id);
        facts.tenant = key.tenant.as_ref().map(ToString::to_string);
    });
    if key.kind != KeyKind::Tenant {
        return Err(Problem::forbidden(
            "operator_key_not_allowed",
            "operator keys are for the admin and verify APIs; call the gateway with a tenant key",
        ));
    }

    let Some(required) = route.scopes.required(request.method()) else {
        let allowed: Vec<&str> = route.scopes.by_method.keys().map(String::as_str).collect();
        return Err(Problem::method_not_allowed(&allowed));
    };
    if let Some(missing) = key.scopes.first_missing(required) {
        return Err(Problem::insufficient_scope(missing));
    }

    let uri = routes::upstream_uri(route, &path, query.as_deref()).map_err(|error| {
        tracing::error!(error = %error, route = ?route.path_prefix, "building the upstream URI failed");
        Problem::internal()
    })?;
    let context = ForwardContext {
        identity: identity_headers(&authenticated),
        peer_ip,
        peer_trusted: state.proxies.contains(peer_ip),
        tls: connection.tls,
        request_id: &request_id,
    };
    state.upstream.forward(route, uri, request, context).await
}

/// The `X-Portcullis-*` headers that tell the upstream who is calling.
fn identity_headers(authenticated: &Authenticated) -> Vec<(HeaderName, HeaderValue)> {
    let key = &authenticated.key;
    let mut headers = Vec::with_capacity(4);
    let mut add = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.push((HeaderName::from_static(name), value));
        }
    };
    if let Some(tenant) = &key.tenant {
        add("x-portcullis-tenant", tenant.to_string());
    }
    add("x-portcullis-key-id", key.id.to_string());
    add("x-portcullis-scopes", key.scopes.to_space_separated());
    add("x-portcullis-auth-method", "api_key".to_owned());
    headers
}
