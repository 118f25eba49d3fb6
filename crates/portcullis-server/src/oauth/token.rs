//! `POST /oauth/token` (RFC 6749 §3.2): the `client_credentials`,
//! `authorization_code` (with PKCE, RFC 7636) and `refresh_token` grants.
//!
//! Each request is read once and strictly: one value per parameter and one
//! client authentication. The client is authenticated with its registered
//! method. Every single-use value (code, refresh token) is spent in one
//! atomic store step before a token is issued.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use portcullis_core::ids::UserId;
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::{ClientRecord, GrantType, RefreshTokenRecord, pkce};
use portcullis_core::scope::ScopeSet;
use portcullis_store::{
    AuditContext, ConsumeCode, CredentialRef, FamilyRevocationReason, RotateRefresh,
};
use time::OffsetDateTime;

use super::client_auth::{RequestFacts, authenticate, presented_client, store_failure};
use super::error::OAuthError;
use super::form::Form;
use super::issue::{IssuedTokens, TokenGrant, issue_tokens, refresh_lifetime};
use crate::app::AppState;
use crate::listener::ConnectionInfo;

/// Handles `POST /oauth/token`.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    summary = "Issue tokens (RFC 6749 §3.2)",
    description = "The client credentials (RFC 6749 §4.4), authorization code with PKCE \
                   (§4.1.3, RFC 7636) and refresh token (§6) grants. The client authenticates \
                   with HTTP Basic (`client_secret_basic`), with `client_id` and \
                   `client_secret` in the body (`client_secret_post`), with a signed \
                   `client_assertion` (`private_key_jwt`, RFC 7523), with its certificate \
                   (`tls_client_auth`, `self_signed_tls_client_auth`, RFC 8705 §2), or as a \
                   public client with only `client_id`. Responses are not cached.",
    request_body(
        content = crate::openapi::public_schemas::TokenRequest,
        content_type = "application/x-www-form-urlencoded",
    ),
    security((), ("client_secret_basic" = []), ("tls_client_auth" = [])),
    responses(
        (status = 200, description = "The tokens (RFC 6749 §5.1)", body = super::issue::TokenResponse<'static>),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope` or `invalid_target` (RFC 6749 §5.2, RFC 8707 §2)", body = super::error::ErrorResponse),
        (status = 401, description = "`invalid_client`; with a Basic challenge when the client used HTTP Basic", body = super::error::ErrorResponse),
        (status = 408, description = "The body stopped arriving"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 429, description = "Too many failed client authentications; the problem also carries `error` = `temporarily_unavailable`. See Retry-After"),
        (status = 500, description = "`server_error`", body = super::error::ErrorResponse),
        (status = 503, description = "`temporarily_unavailable`: the store cannot be reached", body = super::error::ErrorResponse),
    ),
)]
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    match exchange(&state, request).await {
        Ok(issued) => issued.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn exchange(state: &AppState, request: Request) -> Result<IssuedTokens, OAuthError> {
    let (parts, body): (_, Body) = request.into_parts();
    let form = Form::read(&parts.headers, body).await?;
    let presented = presented_client(&parts.headers, &form)?
        .ok_or_else(|| OAuthError::invalid_client(false))?;
    let now = OffsetDateTime::now_utc();
    let facts = RequestFacts::of(state, &parts);
    let client = authenticate(state, &presented, &facts, now).await?;
    state.usage.record_success(
        CredentialRef::Client(client.id),
        Some(client.tenant_id),
        now,
        facts.client_ip,
    );
    let remote = parts
        .extensions
        .get::<ConnectionInfo>()
        .map(|_| facts.client_ip.to_string());
    let context = Context {
        state,
        client: &client,
        form: &form,
        now,
        remote,
        certificate_thumbprint: facts.binding_for(&client),
    };

    let grant_type = form.require("grant_type")?;
    let grant: GrantType = grant_type.parse().map_err(|_| {
        OAuthError::unsupported_grant_type(format!("unsupported grant_type {grant_type:?}"))
    })?;
    if !client.allows_grant(grant) {
        return Err(OAuthError::unauthorized_client(format!(
            "this client is not registered for the {} grant",
            grant.as_str()
        )));
    }
    let issued = match grant {
        GrantType::ClientCredentials => client_credentials(&context).await,
        GrantType::AuthorizationCode => authorization_code(&context).await,
        GrantType::RefreshToken => refresh_token(&context).await,
    };
    if issued.is_ok()
        && let Some(metrics) = crate::metrics::get()
    {
        metrics.record_token_issued(grant);
    }
    issued
}

/// What every grant needs.
struct Context<'a> {
    state: &'a AppState,
    client: &'a ClientRecord,
    form: &'a Form,
    now: OffsetDateTime,
    remote: Option<String>,
    /// The `x5t#S256` of the certificate the client authenticated with,
    /// which every token of this request is bound to (RFC 8705 §3.1). A
    /// refresh binds the new token to the refresh request's certificate.
    certificate_thumbprint: Option<String>,
}

impl Context<'_> {
    fn audit(&self) -> AuditContext {
        AuditContext {
            actor: format!("client:{}", self.client.id),
            remote_addr: self.remote.clone(),
            at: self.now,
        }
    }
}

/// RFC 6749 §4.4: a confidential client acting for itself.
async fn client_credentials(context: &Context<'_>) -> Result<IssuedTokens, OAuthError> {
    let client = context.client;
    if !client.confidential {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use client_credentials",
        ));
    }
    let scopes = requested_scopes(context.form, &client.scopes)?;
    let audience = audience(context.state, context.form.get("resource"))?;
    let grant = TokenGrant {
        subject: client.id.to_string(),
        user_id: None,
        scopes,
        audience,
        family_id: None,
        refresh: false,
        certificate_thumbprint: context.certificate_thumbprint.clone(),
    };
    issue_tokens(context.state, client, grant, context.now).await
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.5: a code for tokens.
async fn authorization_code(context: &Context<'_>) -> Result<IssuedTokens, OAuthError> {
    let (state, client, form) = (context.state, context.client, context.form);
    let code = form.require("code")?;
    let Ok(code) = OpaqueSecret::parse(SecretKind::AuthorizationCode, code) else {
        return Err(OAuthError::invalid_grant("the code is invalid or expired"));
    };
    let hash = state.manager.pepper().hash(code.expose().as_bytes());

    // The code is spent first: a failed check below means it may have
    // leaked, so it must not be tried again (RFC 9700 §4.8).
    let record = match state
        .store
        .consume_code(&hash, client.id, context.now)
        .await
        .map_err(store_failure)?
    {
        ConsumeCode::Fresh(record) => record,
        ConsumeCode::AlreadyUsed(record) => {
            // RFC 6749 §4.1.2: a code used twice revokes what it issued.
            state
                .store
                .revoke_family(
                    record.family_id,
                    FamilyRevocationReason::CodeReused,
                    &context.audit(),
                )
                .await
                .map_err(store_failure)?;
            tracing::warn!(client_id = %client.id, "authorization code reused; its tokens were revoked");
            return Err(OAuthError::invalid_grant("the code was already used"));
        }
        ConsumeCode::Expired | ConsumeCode::WrongClient | ConsumeCode::NotFound => {
            return Err(OAuthError::invalid_grant("the code is invalid or expired"));
        }
    };

    require_enabled_user(state, record.user_id).await?;

    // RFC 6749 §4.1.3: the same redirect_uri as in the authorization
    // request, compared exactly.
    match form.get("redirect_uri") {
        Some(uri) if uri == record.redirect_uri => {}
        None if client.redirect_uris.len() == 1 => {}
        _ => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
    }
    let verifier = form.require("code_verifier")?;
    if !pkce::verify_s256(verifier, &record.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }

    let grant = TokenGrant {
        subject: record.user_id.to_string(),
        user_id: Some(record.user_id),
        scopes: record.scopes.clone(),
        audience: audience(state, record.resource.as_deref())?,
        family_id: Some(record.family_id),
        refresh: client.allows_grant(GrantType::RefreshToken),
        certificate_thumbprint: context.certificate_thumbprint.clone(),
    };
    issue_tokens(state, client, grant, context.now).await
}

/// RFC 6749 §6 with rotation on every use (RFC 9700 §4.14.2).
async fn refresh_token(context: &Context<'_>) -> Result<IssuedTokens, OAuthError> {
    let (state, client, form) = (context.state, context.client, context.form);
    let presented = form.require("refresh_token")?;
    let Ok(presented) = OpaqueSecret::parse(SecretKind::RefreshToken, presented) else {
        return Err(OAuthError::invalid_grant("the refresh token is invalid"));
    };
    let old_hash = state.manager.pepper().hash(presented.expose().as_bytes());
    let Some(old) = state
        .store
        .find_refresh_token(&old_hash)
        .await
        .map_err(store_failure)?
    else {
        return Err(OAuthError::invalid_grant("the refresh token is invalid"));
    };
    // Bound to its client (RFC 6749 §6), checked before anything is spent.
    if old.client_id != client.id {
        return Err(OAuthError::invalid_grant("the refresh token is invalid"));
    }
    if let Some(user_id) = old.user_id {
        require_enabled_user(state, user_id).await?;
    }
    // A narrower scope may be asked for, never a wider one (RFC 6749 §6).
    let scopes = requested_scopes(form, &old.scopes)?;

    let secret =
        OpaqueSecret::generate(SecretKind::RefreshToken).map_err(|_| OAuthError::server_error())?;
    let next = RefreshTokenRecord {
        hash: state.manager.pepper().hash(secret.expose().as_bytes()),
        family_id: old.family_id,
        client_id: client.id,
        user_id: old.user_id,
        scopes: old.scopes.clone(),
        resource: old.resource.clone(),
        created_at: context.now,
        expires_at: context.now + refresh_lifetime(state),
        used_at: None,
        revoked_at: None,
    };
    match state
        .store
        .rotate_refresh_token(&old_hash, &next, context.now)
        .await
        .map_err(store_failure)?
    {
        RotateRefresh::Rotated(_) => {}
        RotateRefresh::Reused(_) => {
            tracing::warn!(client_id = %client.id, "refresh token reused; its family was revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used",
            ));
        }
        RotateRefresh::Dead | RotateRefresh::WrongClient | RotateRefresh::NotFound => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
    }

    let subject = old
        .user_id
        .map_or_else(|| client.id.to_string(), |user: UserId| user.to_string());
    let grant = TokenGrant {
        subject,
        user_id: old.user_id,
        scopes,
        audience: audience(state, old.resource.as_deref())?,
        family_id: Some(old.family_id),
        refresh: false,
        certificate_thumbprint: context.certificate_thumbprint.clone(),
    };
    let mut issued = issue_tokens(state, client, grant, context.now).await?;
    issued.refresh_token = Some(secret);
    Ok(issued)
}

/// The scopes asked for with `scope`, which must all be within `allowed`;
/// all of `allowed` when `scope` is absent (RFC 6749 §3.3).
/// Rejects a code or refresh token of a user who is disabled or gone.
/// Disabling a user revokes their codes and tokens in the same
/// transaction, so this catches those issued while that transaction ran.
///
/// NOTE: an access token issued while that transaction runs is not in its
/// revocation, so it stays valid until it expires.
async fn require_enabled_user(state: &AppState, user_id: UserId) -> Result<(), OAuthError> {
    let user = state
        .store
        .find_user(user_id)
        .await
        .map_err(store_failure)?;
    if user.is_some_and(|user| user.disabled_at.is_none()) {
        return Ok(());
    }
    tracing::info!(user_id = %user_id, "token request rejected: the user is disabled");
    Err(OAuthError::invalid_grant("the grant's user is disabled"))
}

fn requested_scopes(form: &Form, allowed: &ScopeSet) -> Result<ScopeSet, OAuthError> {
    let Some(requested) = form.get("scope") else {
        return Ok(allowed.clone());
    };
    let requested = ScopeSet::parse_list(requested)
        .map_err(|error| OAuthError::invalid_scope(error.to_string()))?;
    if let Some(beyond) = requested.iter().find(|scope| !allowed.grants(scope)) {
        return Err(OAuthError::invalid_scope(format!(
            "the scope {beyond} is not allowed for this client"
        )));
    }
    Ok(requested)
}

/// Chooses the token's audience. A requested `resource` (RFC 8707) must be
/// the audience of a configured route. Without one, the audience is the
/// routes' only audience, or the issuer when no route accepts tokens.
fn audience(state: &AppState, resource: Option<&str>) -> Result<String, OAuthError> {
    let known: Vec<&str> = state.routes.audiences();
    match resource {
        Some(resource) if known.contains(&resource) => Ok(resource.to_owned()),
        // A refresh token stores its grant's audience as its resource, and
        // with no API configured that audience is the issuer.
        Some(resource) if known.is_empty() && resource == state.oauth.issuer => {
            Ok(resource.to_owned())
        }
        Some(_) => Err(OAuthError::invalid_target(
            "resource is not an API this server issues tokens for",
        )),
        None => match known.as_slice() {
            [] => Ok(state.oauth.issuer.clone()),
            [only] => Ok((*only).to_owned()),
            _ => Err(OAuthError::invalid_target(
                "resource is required: name the API the token is for",
            )),
        },
    }
}
