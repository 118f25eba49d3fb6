//! `POST /oauth/introspect` (RFC 7662): whether a token is active, decided
//! by the same checks the gateway and the token endpoint apply.
//!
//! Callers authenticate as a client (which learns only about its own
//! tokens) or with an operator key holding `tokens:introspect`. An inactive
//! token gets exactly `{"active": false}` (RFC 7662 §2.2).

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::AUTHORIZATION;
use http::request::Parts;
use portcullis_core::ids::ClientId;
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::scope::Scope;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::client_auth::{RequestFacts, authenticate, presented_client, store_failure};
use super::error::OAuthError;
use super::form::Form;
use super::jwt::Audience;
use crate::admin::authenticate_operator;
use crate::app::AppState;
use crate::auth::token::{TokenVerifier, TokenVerifyError};
use crate::verify::scope_constant;

/// The scope an operator key needs to introspect any token.
pub static TOKENS_INTROSPECT: LazyLock<Scope> =
    LazyLock::new(|| scope_constant("tokens:introspect"));

/// Who is asking.
pub(crate) enum Caller {
    /// A client, which may introspect only tokens issued to it.
    Client(ClientId),
    /// An operator key, which may introspect any token.
    Operator,
}

impl Caller {
    fn may_see(&self, client_id: &str) -> bool {
        match self {
            Self::Client(id) => id.to_string() == client_id,
            Self::Operator => true,
        }
    }
}

/// Handles `POST /oauth/introspect`.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    summary = "Introspect a token (RFC 7662)",
    description = "A client authenticates as at the token endpoint, but not as a public \
                   client, and learns only about its own tokens. An operator key with \
                   `tokens:introspect`, sent as a Bearer token, may introspect any token; its \
                   errors are problem details.",
    request_body(
        content = crate::openapi::public_schemas::IntrospectionRequest,
        content_type = "application/x-www-form-urlencoded",
    ),
    security(
        (),
        ("client_secret_basic" = []),
        ("tls_client_auth" = []),
        ("operator_key" = ["tokens:introspect"]),
    ),
    responses(
        (status = 200, description = "The token's state (RFC 7662 §2.2)", body = crate::openapi::public_schemas::IntrospectionResponse),
        (status = 400, description = "`invalid_request`: `token` is missing, a parameter is repeated, or the caller authenticated twice", content(
            (super::error::ErrorResponse = "application/json"),
            (crate::openapi::schemas::ProblemDetails = "application/problem+json"),
        )),
        (status = 401, description = "Client authentication failed (`invalid_client`), or the operator key is invalid", content(
            (super::error::ErrorResponse = "application/json"),
            (crate::openapi::schemas::ProblemDetails = "application/problem+json"),
        )),
        (status = 403, description = "The operator key lacks `tokens:introspect`, or is a tenant's key"),
        (status = 408, description = "The body stopped arriving"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 429, description = "Too many failed authentications; see Retry-After"),
        (status = 500, description = "`server_error`", body = super::error::ErrorResponse),
        (status = 503, description = "The store cannot be reached", content(
            (super::error::ErrorResponse = "application/json"),
            (crate::openapi::schemas::ProblemDetails = "application/problem+json"),
        )),
    ),
)]
pub async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        let form = Form::read(&parts.headers, body).await?;
        let caller = caller(&state, &parts, &form).await?;
        let token = form.require("token")?;
        // token_type_hint only orders the lookups (RFC 7662 §2.1); both
        // kinds are tried, so a wrong hint changes nothing.
        let verdict = match refresh_token_verdict(&state, token).await? {
            Some(verdict) => verdict,
            None => access_token_verdict(&state, token).await?,
        };
        Ok::<_, Answer>(match verdict {
            Some((client_id, body)) if caller.may_see(&client_id) => body,
            _ => inactive(),
        })
    }
    .await;
    match result {
        Ok(body) => no_store(axum::Json(body).into_response()),
        Err(Answer::OAuth(error)) => error.into_response(),
        Err(Answer::Problem(problem)) => problem.into_response(),
    }
}

/// An error response in either of the two forms this endpoint uses.
pub(crate) enum Answer {
    /// An RFC 6749 error, for client callers.
    OAuth(OAuthError),
    /// A problem response, for operator-key callers.
    Problem(crate::problem::Problem),
}

impl From<OAuthError> for Answer {
    fn from(error: OAuthError) -> Self {
        Self::OAuth(error)
    }
}

/// Authenticates the caller: a client by its registered method, or an
/// operator key sent as a Bearer token. A request with neither gets 401
/// (RFC 7662 §2.1).
pub(crate) async fn caller(state: &AppState, parts: &Parts, form: &Form) -> Result<Caller, Answer> {
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.get(..7))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "));
    if bearer {
        if form.get("client_id").is_some() || form.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "the caller authenticated in more than one way",
            )
            .into());
        }
        authenticate_operator(state, parts, &TOKENS_INTROSPECT, "introspect")
            .await
            .map_err(Answer::Problem)?;
        return Ok(Caller::Operator);
    }
    let presented =
        presented_client(&parts.headers, form)?.ok_or_else(|| OAuthError::invalid_client(false))?;
    let facts = RequestFacts::of(state, parts);
    let client = authenticate(state, &presented, &facts, OffsetDateTime::now_utc()).await?;
    Ok(Caller::Client(client.id))
}

fn inactive() -> Value {
    json!({"active": false})
}

/// The verdict on a refresh token: `None` when `token` is not one,
/// `Some(None)` when it is inactive, else its owner and response body.
async fn refresh_token_verdict(
    state: &AppState,
    token: &str,
) -> Result<Option<Option<(String, Value)>>, OAuthError> {
    let Ok(secret) = OpaqueSecret::parse(SecretKind::RefreshToken, token) else {
        return Ok(None);
    };
    let hash = state.manager.pepper().hash(secret.expose().as_bytes());
    let Some(record) = state
        .store
        .find_refresh_token(&hash)
        .await
        .map_err(store_failure)?
    else {
        return Ok(Some(None));
    };
    let now = OffsetDateTime::now_utc();
    let live = record.used_at.is_none() && record.revoked_at.is_none() && record.expires_at > now;
    let Some(client) = state
        .store
        .find_client(record.client_id)
        .await
        .map_err(store_failure)?
    else {
        return Ok(Some(None));
    };
    if !live || client.revoked_at.is_some() {
        return Ok(Some(None));
    }
    let subject = record
        .user_id
        .map_or_else(|| client.id.to_string(), |user| user.to_string());
    let body = json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": record.scopes.to_space_separated(),
        "client_id": client.id.to_string(),
        "sub": subject,
        "iss": state.oauth.issuer,
        "aud": record.resource,
        "iat": record.created_at.unix_timestamp(),
        "exp": record.expires_at.unix_timestamp(),
        "tenant": client.tenant.to_string(),
    });
    Ok(Some(Some((client.id.to_string(), body))))
}

/// The verdict on an access token, from the gateway's own verifier: the
/// signature, issuer, type, times, claims and the deny list (or the store,
/// when the change feed is behind). The audience is the token's own, since
/// introspection serves every resource.
async fn access_token_verdict(
    state: &AppState,
    token: &str,
) -> Result<Option<(String, Value)>, OAuthError> {
    let Some(audience) = unverified_audience(token) else {
        return Ok(None);
    };
    let verifier = TokenVerifier::new(&state.oauth, &state.store, state.verifier.cache());
    let authenticated = match verifier.verify(token, &audience).await {
        Ok(authenticated) => authenticated,
        Err(TokenVerifyError::Rejected { .. }) => return Ok(None),
        Err(TokenVerifyError::Store(error)) => return Err(store_failure(error)),
    };
    let claims = authenticated.token.claims;
    let aud = match &claims.aud {
        Audience::One(one) => json!(one),
        Audience::Many(many) => json!(many),
    };
    let mut body = json!({
        "active": true,
        "token_type": "Bearer",
        "scope": claims.scope,
        "client_id": claims.client_id,
        "sub": claims.sub,
        "iss": claims.iss,
        "aud": aud,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "tenant": claims.tenant,
    });
    // RFC 8705 §3.2: a certificate-bound token's confirmation, so that a
    // resource server can check the certificate of the request.
    if let (Some(cnf), Value::Object(map)) = (&claims.cnf, &mut body) {
        map.insert("cnf".to_owned(), json!({ "x5t#S256": cnf.x5t_s256 }));
    }
    Ok(Some((claims.client_id, body)))
}

/// The first `aud` value of a token's payload, read before validation only
/// to say which audience validation should expect.
pub(crate) fn unverified_audience(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get("aud")? {
        Value::String(one) => Some(one.clone()),
        Value::Array(many) => many.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}
