//! Issuing tokens: the signed access token (RFC 9068), its record for
//! revocation, and a refresh token when the grant brings one.

use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::{CACHE_CONTROL, PRAGMA};
use portcullis_core::ids::{TokenFamilyId, UserId};
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::{AccessTokenRecord, ClientRecord, RefreshTokenRecord};
use portcullis_core::scope::ScopeSet;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::client_auth::store_failure;
use super::error::OAuthError;
use super::jwt::{AccessTokenClaims, Audience, Confirmation};
use crate::app::AppState;
use crate::config::{MAX_ACCESS_TOKEN_TTL, MIN_ACCESS_TOKEN_TTL};
use crate::telemetry::ErrorChain;

/// What a grant decided: whom the tokens are for and what they allow.
#[derive(Debug)]
pub struct TokenGrant {
    /// The `sub` claim: the user, or the client acting for itself.
    pub subject: String,
    /// The user, for user grants.
    pub user_id: Option<UserId>,
    /// The granted scopes.
    pub scopes: ScopeSet,
    /// The `aud` claim.
    pub audience: String,
    /// The token family of a user grant, so reuse can revoke it whole.
    pub family_id: Option<TokenFamilyId>,
    /// Whether to issue a refresh token as well.
    pub refresh: bool,
    /// The `x5t#S256` thumbprint of the client certificate the token is
    /// bound to (RFC 8705 §3.1); `None` for a bearer token.
    pub certificate_thumbprint: Option<String>,
}

/// A token response (RFC 6749 §5.1). `Debug` omits the tokens.
pub struct IssuedTokens {
    /// The signed access token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The granted scopes.
    pub scopes: ScopeSet,
    /// A new refresh token, when one was issued.
    pub refresh_token: Option<OpaqueSecret>,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct TokenResponse<'a> {
    /// The signed access token, a JWT (RFC 9068).
    pub access_token: &'a str,
    /// Always `Bearer`. A certificate-bound token carries its binding in
    /// the `cnf` claim (RFC 8705 §3).
    #[schema(value_type = String)]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// A new refresh token, when the grant issues one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub refresh_token: Option<&'a str>,
}

impl IntoResponse for IssuedTokens {
    fn into_response(self) -> Response {
        let body = TokenResponse {
            access_token: &self.access_token,
            token_type: "Bearer",
            expires_in: self.expires_in,
            scope: self.scopes.to_space_separated(),
            refresh_token: self.refresh_token.as_ref().map(OpaqueSecret::expose),
        };
        let mut response = axum::Json(body).into_response();
        // RFC 6749 §5.1: token responses must not be cached.
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
            .headers_mut()
            .insert(PRAGMA, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Signs an access token for `grant`, records it for revocation, and adds a
/// refresh token of the same family when the grant includes one.
pub async fn issue_tokens(
    state: &AppState,
    client: &ClientRecord,
    grant: TokenGrant,
    now: OffsetDateTime,
) -> Result<IssuedTokens, OAuthError> {
    let lifetime = access_token_lifetime(client);
    let expires_at = now + lifetime;
    let jti = uuid::Uuid::now_v7().simple().to_string();
    let claims = AccessTokenClaims {
        iss: state.oauth.issuer.clone(),
        sub: grant.subject.clone(),
        aud: Audience::One(grant.audience.clone()),
        exp: expires_at.unix_timestamp(),
        iat: now.unix_timestamp(),
        nbf: None,
        jti: jti.clone(),
        client_id: client.id.to_string(),
        scope: grant.scopes.to_space_separated(),
        tenant: client.tenant.to_string(),
        cnf: grant
            .certificate_thumbprint
            .clone()
            .map(|x5t_s256| Confirmation { x5t_s256 }),
    };
    let access_token = state.oauth.keys.current().sign(&claims).map_err(|error| {
        tracing::error!(error = %ErrorChain(&error), "signing an access token failed");
        OAuthError::server_error()
    })?;
    let record = AccessTokenRecord {
        jti,
        client_id: client.id,
        family_id: grant.family_id,
        expires_at,
        revoked_at: None,
        certificate_thumbprint: grant.certificate_thumbprint.clone(),
    };
    state
        .store
        .record_access_token(&record)
        .await
        .map_err(store_failure)?;

    let refresh_token = match (grant.refresh, grant.family_id) {
        (true, Some(family_id)) => {
            Some(issue_refresh_token(state, client, &grant, family_id, now).await?)
        }
        _ => None,
    };
    Ok(IssuedTokens {
        access_token,
        expires_in: lifetime.whole_seconds(),
        scopes: grant.scopes,
        refresh_token,
    })
}

async fn issue_refresh_token(
    state: &AppState,
    client: &ClientRecord,
    grant: &TokenGrant,
    family_id: TokenFamilyId,
    now: OffsetDateTime,
) -> Result<OpaqueSecret, OAuthError> {
    let secret =
        OpaqueSecret::generate(SecretKind::RefreshToken).map_err(|_| OAuthError::server_error())?;
    let record = RefreshTokenRecord {
        hash: state.manager.pepper().hash(secret.expose().as_bytes()),
        family_id,
        client_id: client.id,
        user_id: grant.user_id,
        scopes: grant.scopes.clone(),
        resource: Some(grant.audience.clone()),
        created_at: now,
        expires_at: now + refresh_lifetime(state),
        used_at: None,
        revoked_at: None,
    };
    state
        .store
        .insert_refresh_token(&record)
        .await
        .map_err(store_failure)?;
    Ok(secret)
}

/// The client's access-token lifetime, kept within the server's bounds.
fn access_token_lifetime(client: &ClientRecord) -> time::Duration {
    let min = MIN_ACCESS_TOKEN_TTL.as_secs().cast_signed();
    let max = MAX_ACCESS_TOKEN_TTL.as_secs().cast_signed();
    time::Duration::seconds(client.access_token_ttl_seconds.clamp(min, max))
}

/// The refresh-token lifetime from `[oauth]`.
pub fn refresh_lifetime(state: &AppState) -> time::Duration {
    time::Duration::try_from(state.oauth.settings.refresh_token_ttl)
        .unwrap_or(time::Duration::days(30))
}
