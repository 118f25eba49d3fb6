//! `POST /oauth/revoke` (RFC 7009): a client revokes one of its own tokens.
//!
//! Revoking a refresh token revokes its whole family, access tokens
//! included (RFC 7009 §2.1 allows it, and a refresh token stands for the
//! grant). The response is 200 whether or not the token was known, so the
//! endpoint tells nothing about tokens (RFC 7009 §2.2).

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::ClientRecord;
use portcullis_store::{AuditContext, FamilyRevocationReason, StoreError};
use time::OffsetDateTime;

use super::client_auth::{RequestFacts, authenticate, presented_client, store_failure};
use super::error::OAuthError;
use super::form::Form;
use super::jwt::{Expectations, validate};
use crate::app::AppState;

/// Handles `POST /oauth/revoke`.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "oauth",
    summary = "Revoke a token (RFC 7009)",
    description = "The client authenticates as at the token endpoint. Revoking a refresh \
                   token revokes its whole family. The response is the same whether or not \
                   the token was known (RFC 7009 §2.2).",
    request_body(
        content = crate::openapi::public_schemas::RevocationRequest,
        content_type = "application/x-www-form-urlencoded",
    ),
    security((), ("client_secret_basic" = []), ("tls_client_auth" = [])),
    responses(
        (status = 200, description = "The token is revoked, or was not a live token of this client"),
        (status = 400, description = "`invalid_request`", body = super::error::ErrorResponse),
        (status = 401, description = "`invalid_client`", body = super::error::ErrorResponse),
        (status = 408, description = "The body stopped arriving"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 429, description = "Too many failed client authentications; see Retry-After"),
        (status = 500, description = "`server_error`", body = super::error::ErrorResponse),
        (status = 503, description = "`temporarily_unavailable`", body = super::error::ErrorResponse),
    ),
)]
pub async fn revoke(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        let form = Form::read(&parts.headers, body).await?;
        let presented = presented_client(&parts.headers, &form)?
            .ok_or_else(|| OAuthError::invalid_client(false))?;
        let now = OffsetDateTime::now_utc();
        let facts = RequestFacts::of(&state, &parts);
        let client = authenticate(&state, &presented, &facts, now).await?;
        let token = form.require("token")?;
        let audit = AuditContext {
            actor: format!("client:{}", client.id),
            remote_addr: None,
            at: now,
        };
        if !revoke_refresh_token(&state, &client, token, &audit).await? {
            revoke_access_token(&state, &client, token, &audit).await?;
        }
        Ok::<_, OAuthError>(())
    }
    .await;
    match result {
        Ok(()) => (StatusCode::OK, [(http::header::CACHE_CONTROL, "no-store")]).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Revokes the family of a refresh token of `client`; returns whether the
/// token was a refresh token at all.
async fn revoke_refresh_token(
    state: &AppState,
    client: &ClientRecord,
    token: &str,
    audit: &AuditContext,
) -> Result<bool, OAuthError> {
    let Ok(secret) = OpaqueSecret::parse(SecretKind::RefreshToken, token) else {
        return Ok(false);
    };
    let hash = state.manager.pepper().hash(secret.expose().as_bytes());
    let record = state
        .store
        .find_refresh_token(&hash)
        .await
        .map_err(store_failure)?;
    // Another client's token is left alone, and the response is the same.
    if let Some(record) = record.filter(|record| record.client_id == client.id) {
        state
            .store
            .revoke_family(record.family_id, FamilyRevocationReason::Requested, audit)
            .await
            .map_err(store_failure)?;
    }
    Ok(true)
}

/// Revokes an access token of `client`, found by its `jti` once its
/// signature checks out.
async fn revoke_access_token(
    state: &AppState,
    client: &ClientRecord,
    token: &str,
    audit: &AuditContext,
) -> Result<(), OAuthError> {
    let Some(audience) = super::introspect::unverified_audience(token) else {
        return Ok(());
    };
    let mut expected = Expectations::new(state.oauth.issuer.clone(), audience);
    expected.leeway = state.oauth.settings.leeway;
    let Ok(validated) = validate(token, &state.oauth.keys.current(), &expected) else {
        return Ok(());
    };
    if validated.claims.client_id != client.id.to_string() {
        return Ok(());
    }
    match state
        .store
        .revoke_access_token(&validated.claims.jti, audit)
        .await
    {
        Ok(record) => {
            state.oauth.deny.insert(record.jti, record.expires_at);
            Ok(())
        }
        Err(StoreError::NotFound(_) | StoreError::Revoked(_)) => Ok(()),
        Err(error) => Err(store_failure(error)),
    }
}
