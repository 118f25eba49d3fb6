//! Documents that tell clients and resource servers how to use this
//! authorization server: the JWK Set (RFC 7517 §5) and the authorization
//! server metadata (RFC 8414).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use serde_json::json;

use crate::app::AppState;

/// How long clients may cache the JWKS. It must stay below the rotation
/// policy's `publish_ahead` (one hour), so that a cached copy always holds
/// a new key before that key signs anything.
pub const JWKS_MAX_AGE_SECONDS: u32 = 300;

/// `GET /.well-known/jwks.json`: the published keys, public members only.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "oauth",
    summary = "The token-signing keys (RFC 7517 §5)",
    responses(
        (status = 200, description = "The JWK Set; cacheable for 300 seconds", body = crate::openapi::public_schemas::JwkSet),
    ),
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let document = state.oauth.keys.current().jwks();
    let mut response = axum::Json(document).into_response();
    let cache = format!("public, max-age={JWKS_MAX_AGE_SECONDS}");
    if let Ok(value) = HeaderValue::from_str(&cache) {
        response.headers_mut().insert(CACHE_CONTROL, value);
    }
    response
}

/// Algorithms of access tokens and of the client assertions accepted for
/// `private_key_jwt`: the three Portcullis can sign and verify.
const SIGNING_ALGORITHMS: [&str; 3] = ["ES256", "RS256", "EdDSA"];

/// Client authentication methods of the token, introspection and
/// revocation endpoints that need no client certificate.
const CLIENT_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

/// The RFC 8705 §2 methods, advertised only when client certificates can
/// reach the server.
const CERTIFICATE_METHODS: [&str; 2] = ["tls_client_auth", "self_signed_tls_client_auth"];

/// `GET /.well-known/oauth-authorization-server` (RFC 8414 §3): lists only
/// the endpoints, grants, methods and algorithms this server implements.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "oauth",
    summary = "Authorization server metadata (RFC 8414)",
    responses(
        (status = 200, description = "The metadata; the RFC 8705 members only when client certificates can reach the server", body = crate::openapi::public_schemas::AuthorizationServerMetadata),
    ),
)]
pub async fn authorization_server_metadata(State(state): State<AppState>) -> Response {
    let issuer = &state.oauth.issuer;
    let mtls = state.client_certificates_reach;
    let certificate_methods: &[&str] = if mtls { &CERTIFICATE_METHODS } else { &[] };
    // Introspection takes no public client; token and revocation do.
    let introspection_methods: Vec<&str> = CLIENT_METHODS
        .iter()
        .chain(certificate_methods)
        .copied()
        .collect();
    let mut token_methods = introspection_methods.clone();
    token_methods.push("none");

    let token_endpoint = format!("{issuer}/oauth/token");
    let introspection_endpoint = format!("{issuer}/oauth/introspect");
    let revocation_endpoint = format!("{issuer}/oauth/revoke");
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": token_endpoint,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": introspection_endpoint,
        "revocation_endpoint": revocation_endpoint,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": token_methods,
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "introspection_endpoint_auth_methods_supported": introspection_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "revocation_endpoint_auth_methods_supported": token_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": SIGNING_ALGORITHMS,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    });
    if mtls && let Some(map) = document.as_object_mut() {
        // RFC 8705 §3.3: tokens of certificate-authenticated clients are
        // always bound. §5: the listener that takes client certificates is
        // the one at the usual URLs, so the aliases repeat them.
        map.insert(
            "tls_client_certificate_bound_access_tokens".to_owned(),
            json!(true),
        );
        map.insert(
            "mtls_endpoint_aliases".to_owned(),
            json!({
                "token_endpoint": token_endpoint,
                "introspection_endpoint": introspection_endpoint,
                "revocation_endpoint": revocation_endpoint,
            }),
        );
    }
    axum::Json(document).into_response()
}
