//! Bearer access tokens: validation against the published signing keys,
//! then the deny list of revoked tokens.
//!
//! Validation is local. A token costs no store round trip unless the change
//! feed that fills the deny list has fallen behind
//! ([`CredentialCache::is_trusted`] is false). Then the store decides
//! whether the token is revoked, and an unreachable store denies the
//! request (503), because a revocation could be waiting in the feed.

use http::{HeaderValue, StatusCode};
use portcullis_core::crypto::constant_time_eq;
use portcullis_core::ids::ClientId;
use portcullis_core::name::TenantName;
use portcullis_core::scope::{Scope, ScopeSet};
use portcullis_store::{Store, StoreError};
use secrecy::{ExposeSecret, SecretString};

use super::CheckContext;
use crate::cache::CredentialCache;
use crate::listener::ClientCertificate;
use crate::oauth::jwt::{Expectations, TokenError, ValidatedToken, validate};
use crate::oauth::server::AuthorizationServer;
use crate::problem::{Challenge, Problem};
use crate::ratelimit::brute_force::Subject;

/// A request whose access token passed every check.
#[derive(Clone, Debug)]
pub struct AuthenticatedToken {
    /// The token's key and claims.
    pub token: ValidatedToken,
    /// The `client_id` claim, parsed.
    pub client_id: ClientId,
    /// The `tenant` claim, parsed.
    pub tenant: TenantName,
    /// The `scope` claim, parsed.
    pub scopes: ScopeSet,
    /// The `cnf` claim's `x5t#S256`: the thumbprint of the client
    /// certificate that the token is bound to (RFC 8705 §3.1), if any.
    pub certificate_thumbprint: Option<String>,
}

/// The reason an access token was rejected. The messages name no part of
/// the token, so they are safe to send to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// The signature, the header or a claim is invalid.
    #[error(transparent)]
    Invalid(#[from] TokenError),
    /// The token is valid but was revoked before its expiry.
    #[error("the access token has been revoked")]
    Revoked,
    /// The token is bound to a client certificate (RFC 8705 §3) that the
    /// request did not present.
    #[error(
        "the access token is bound to a client certificate; present that certificate with \
         the request"
    )]
    CertificateMismatch,
}

impl TokenRejection {
    /// Returns a stable snake_case code for logs and audit records.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Invalid(error) => error.code(),
            Self::Revoked => "revoked",
            Self::CertificateMismatch => "certificate_binding_mismatch",
        }
    }
}

/// The failure to accept an access token.
#[derive(Debug, thiserror::Error)]
pub enum TokenVerifyError {
    /// The token was rejected: a client's mistake, a forgery or a dead token.
    #[error("access token rejected: {}", .rejection.code())]
    Rejected {
        /// Why.
        rejection: TokenRejection,
        /// The token, when its signature and standard claims verified, so
        /// that its `jti` and `client_id` can be trusted in records.
        token: Option<Box<ValidatedToken>>,
    },
    /// The store could not be asked whether the token is revoked.
    #[error("access token revocation lookup failed")]
    Store(#[source] StoreError),
}

/// Checks presented access tokens against the authorization server's keys
/// and deny list. Cheap to build per request: it only borrows.
#[derive(Clone, Copy)]
pub struct TokenVerifier<'a> {
    server: &'a AuthorizationServer,
    store: &'a Store,
    cache: &'a CredentialCache,
}

impl<'a> TokenVerifier<'a> {
    /// Creates a verifier. `cache` reports whether the change feed, and with
    /// it the deny list, is current.
    pub const fn new(
        server: &'a AuthorizationServer,
        store: &'a Store,
        cache: &'a CredentialCache,
    ) -> Self {
        Self {
            server,
            store,
            cache,
        }
    }

    /// Validates `token` for `audience` (RFC 9068 §4) and checks that it is
    /// not revoked.
    ///
    /// Besides the checks of [`validate`], the claims that the gateway
    /// forwards must be usable: `client_id` a Portcullis client id,
    /// `tenant` a tenant name, `scope` space-separated scope names, and
    /// `sub` and `jti` valid header values.
    pub async fn verify(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<AuthenticatedToken, TokenVerifyError> {
        let expected = Expectations {
            issuer: self.server.issuer.clone(),
            audience: audience.to_owned(),
            leeway: self.server.settings.leeway,
        };
        let keys = self.server.keys.current();
        let validated =
            validate(token, &keys, &expected).map_err(|error| TokenVerifyError::Rejected {
                rejection: error.into(),
                token: None,
            })?;

        let parsed = parse_claims(&validated);
        let (client_id, tenant, scopes) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return Err(rejected(error.into(), validated)),
        };

        match self.is_revoked(&validated.claims.jti).await {
            Ok(false) => {}
            Ok(true) => return Err(rejected(TokenRejection::Revoked, validated)),
            Err(error) => return Err(TokenVerifyError::Store(error)),
        }
        let certificate_thumbprint = validated
            .claims
            .cnf
            .as_ref()
            .map(|confirmation| confirmation.x5t_s256.clone());
        Ok(AuthenticatedToken {
            token: validated,
            client_id,
            tenant,
            scopes,
            certificate_thumbprint,
        })
    }

    /// Checks whether the token `jti` is revoked: in the deny list, or,
    /// while the change feed is stale, in the store. A `jti` the store does
    /// not know is not revoked, because only a recorded token can be.
    pub async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        if self.server.deny.contains(jti) {
            return Ok(true);
        }
        if self.cache.is_trusted() {
            return Ok(false);
        }
        let record = self.store.find_access_token(jti).await?;
        Ok(record.is_some_and(|record| record.revoked_at.is_some()))
    }
}

/// Verifies a presented access token for `audience`, recording the outcome
/// for the log line and, on failure, an audit record.
///
/// A token whose signature does not verify counts as a failed
/// authentication of the client address, like a wrong key. One that is
/// signed but expired, revoked or for another audience does not: it came
/// from Portcullis, and an honest client that forgot to refresh must not
/// block its whole network.
///
/// Errors are the problem to respond with: 401 `invalid_token` for a
/// rejected token, 429 for an address blocked after too many failures, 503
/// when the store cannot be queried for revocation.
pub async fn authenticate_token(
    verifier: &TokenVerifier<'_>,
    token: &SecretString,
    audience: &str,
    context: &CheckContext<'_>,
) -> Result<AuthenticatedToken, Problem> {
    let subjects = [Subject::ClientIp(context.client_ip)];
    if let Err(retry_after) = context.brute_force.admit(&subjects).await {
        context
            .usage
            .record_failure(context.failure("authentication_blocked"));
        return Err(Problem::authentication_blocked(retry_after));
    }

    match verifier.verify(token.expose_secret(), audience).await {
        Ok(authenticated) => {
            context.facts.update(|facts| {
                facts.tenant = Some(authenticated.tenant.to_string());
                facts.client_id = Some(authenticated.client_id.to_string());
            });
            // The gateway counts the request against the client once every
            // check passed. Tokens themselves get no last-used time.
            Ok(authenticated)
        }
        Err(TokenVerifyError::Rejected { rejection, token }) => {
            let mut failure = context.failure(rejection.code());
            if let Some(token) = &token {
                let claims = &token.claims;
                failure.client_id = claims.client_id.parse().ok();
                failure.token_id = Some(claims.jti.clone());
                context.facts.update(|facts| {
                    facts.tenant = Some(claims.tenant.clone());
                    facts.client_id = Some(claims.client_id.clone());
                });
            }
            context.usage.record_failure(failure);
            if token.is_none()
                && let Some(retry_after) = context
                    .brute_force
                    .record_failure(&subjects)
                    .await
                    .retry_after_seconds()
            {
                return Err(Problem::authentication_blocked(retry_after.max(1)));
            }
            Err(rejected_token(&rejection))
        }
        Err(TokenVerifyError::Store(error)) => {
            tracing::error!(error = %crate::telemetry::ErrorChain(&error), "access token revocation lookup failed; denying the request");
            Err(Problem::store_unavailable())
        }
    }
}

/// Checks a certificate-bound token against the request's client
/// certificate (RFC 8705 §3), on every request, and records a mismatch.
/// A token without `cnf` passes.
///
/// # Errors
///
/// 401 `invalid_token` when the token is bound and the request presents no
/// certificate or one with another thumbprint.
pub fn check_certificate_binding(
    authenticated: &AuthenticatedToken,
    certificate: Option<&ClientCertificate>,
    context: &CheckContext<'_>,
) -> Result<(), Problem> {
    let presented = certificate.map(|certificate| certificate.thumbprint_sha256.as_str());
    if binding_holds(authenticated.certificate_thumbprint.as_deref(), presented) {
        return Ok(());
    }
    let rejection = TokenRejection::CertificateMismatch;
    let mut failure = context.failure(rejection.code());
    failure.client_id = Some(authenticated.client_id);
    failure.token_id = Some(authenticated.token.claims.jti.clone());
    failure.certificate_serial = certificate
        .and_then(ClientCertificate::verified)
        .map(|verified| verified.serial.clone());
    failure.certificate_issuer = certificate
        .and_then(ClientCertificate::verified)
        .map(|verified| verified.issuer.clone());
    context.usage.record_failure(failure);
    Err(rejected_token(&rejection))
}

/// Returns whether a presented thumbprint satisfies a token's binding,
/// compared in constant time.
fn binding_holds(bound: Option<&str>, presented: Option<&str>) -> bool {
    match (bound, presented) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(bound), Some(presented)) => constant_time_eq(bound.as_bytes(), presented.as_bytes()),
    }
}

/// Builds the 401 for a rejected access token, with the RFC 6750 §3.1 `invalid_token`
/// challenge.
pub fn rejected_token(rejection: &TokenRejection) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "Invalid access token",
        rejection.to_string(),
    )
    .with_challenge(Challenge::InvalidToken)
}

fn rejected(rejection: TokenRejection, token: ValidatedToken) -> TokenVerifyError {
    TokenVerifyError::Rejected {
        rejection,
        token: Some(Box::new(token)),
    }
}

/// Parses the claims that become identity headers and the scope check.
fn parse_claims(token: &ValidatedToken) -> Result<(ClientId, TenantName, ScopeSet), TokenError> {
    let claims = &token.claims;
    let client_id = claims
        .client_id
        .parse()
        .map_err(|_| TokenError::MalformedClaim("client_id"))?;
    let tenant =
        TenantName::parse(&claims.tenant).map_err(|_| TokenError::MalformedClaim("tenant"))?;
    let scopes = parse_scope_claim(&claims.scope).ok_or(TokenError::MalformedClaim("scope"))?;
    if HeaderValue::from_str(&claims.sub).is_err() {
        return Err(TokenError::MalformedClaim("sub"));
    }
    if HeaderValue::from_str(&claims.jti).is_err() {
        return Err(TokenError::MalformedClaim("jti"));
    }
    Ok((client_id, tenant, scopes))
}

/// Parses a `scope` claim: scope names separated by single spaces
/// (RFC 6749 §3.3). An empty claim grants no scope. Commas, doubled or
/// surrounding spaces and invalid names make it malformed.
fn parse_scope_claim(claim: &str) -> Option<ScopeSet> {
    if claim.is_empty() {
        return Some(ScopeSet::default());
    }
    let scopes = claim
        .split(' ')
        .map(Scope::parse)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    ScopeSet::try_from(scopes).ok()
}

#[cfg(test)]
mod tests {
    use portcullis_core::credential::RateLimits;
    use portcullis_core::crypto::MasterKey;
    use portcullis_core::oauth::{AccessTokenRecord, ClientAuthMethod, GrantType};
    use portcullis_store::{AuditContext, NewClient};
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::config::OAuthConfig;
    use crate::oauth::signing::SIGNING_KEY_PURPOSE;

    #[test]
    fn certificate_binding_cases() {
        let bound = "bm90LWEtcmVhbC10aHVtYnByaW50LWJ1dC00My1jaGFycw";
        let other = "b3RoZXItdGh1bWJwcmludC1vZi10aGUtc2FtZS1zaXpl";

        assert!(binding_holds(None, None));
        assert!(binding_holds(None, Some(other)));
        assert!(!binding_holds(Some(bound), None));
        assert!(!binding_holds(Some(bound), Some(other)));
        assert!(!binding_holds(Some(bound), Some(&bound[..42])));
        assert!(binding_holds(Some(bound), Some(bound)));
    }

    /// Opens a store with one client and starts an authorization server on
    /// it.
    async fn server_with_client(dir: &tempfile::TempDir) -> (Store, AuthorizationServer, ClientId) {
        let store = Store::open_sqlite(&dir.path().join("test.db"))
            .await
            .unwrap()
            .attach_audit_key(MasterKey::generate().unwrap().audit_chain_key())
            .await
            .unwrap();
        let audit = AuditContext {
            actor: "test".to_owned(),
            remote_addr: None,
            at: OffsetDateTime::now_utc(),
        };
        let tenant = store
            .create_tenant(&TenantName::parse("acme").unwrap(), &audit)
            .await
            .unwrap();
        let client = NewClient {
            id: ClientId::generate(),
            tenant_id: tenant.id,
            name: "app".to_owned(),
            confidential: true,
            grant_types: vec![GrantType::ClientCredentials],
            scopes: ScopeSet::parse_list("orders:read").unwrap(),
            redirect_uris: Vec::new(),
            auth_method: ClientAuthMethod::ClientSecretBasic,
            jwks: None,
            tls_client_auth_subject: None,
            access_token_ttl_seconds: 900,
            created_at: audit.at,
            limits: RateLimits::default(),
            created_by: None,
        };
        store.create_client(&client, None, &audit).await.unwrap();
        let server = AuthorizationServer::start(
            &store,
            MasterKey::generate()
                .unwrap()
                .sealing_key(SIGNING_KEY_PURPOSE),
            OAuthConfig::default(),
            "https://portcullis.example.test".to_owned(),
        )
        .await
        .unwrap();
        (store, server, client.id)
    }

    #[tokio::test]
    async fn stale_feed_asks_store_and_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, server, client_id) = server_with_client(&dir).await;
        let now = OffsetDateTime::now_utc();
        store
            .record_access_token(&AccessTokenRecord {
                jti: "revoked-jti".to_owned(),
                client_id,
                family_id: None,
                expires_at: now + Duration::minutes(5),
                revoked_at: None,
                certificate_thumbprint: None,
            })
            .await
            .unwrap();
        let audit = AuditContext {
            actor: "test".to_owned(),
            remote_addr: None,
            at: now,
        };
        store
            .revoke_access_token("revoked-jti", &audit)
            .await
            .unwrap();

        // A cache that never saw a feed poll is not trusted, and the deny
        // list loaded before the revocation does not hold the jti.
        let cache = CredentialCache::new(16);
        assert!(!cache.is_trusted());
        assert!(!server.deny.contains("revoked-jti"));
        let verifier = TokenVerifier::new(&server, &store, &cache);
        assert!(verifier.is_revoked("revoked-jti").await.unwrap());
        assert!(!verifier.is_revoked("unknown-jti").await.unwrap());

        store.close().await;
        assert!(verifier.is_revoked("unknown-jti").await.is_err());
    }

    #[test]
    fn scope_claim_parsed_strictly() {
        let parsed = parse_scope_claim("orders:read orders:write").unwrap();
        assert_eq!(parsed.to_space_separated(), "orders:read orders:write");
        assert!(parse_scope_claim("").unwrap().is_empty());
        for malformed in [
            "orders:read,orders:write",
            "orders:read  orders:write",
            " orders:read",
            "orders:read ",
            "Orders:Read",
            "orders:read\torders:write",
        ] {
            assert!(parse_scope_claim(malformed).is_none(), "{malformed:?}");
        }
    }

    #[test]
    fn rejection_problem_names_no_token() {
        let problem = rejected_token(&TokenRejection::Invalid(TokenError::AlgorithmMismatch));
        assert_eq!(problem.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(problem.code(), "invalid_token");
        assert_eq!(
            problem.detail(),
            "the access token algorithm does not match its key"
        );
        assert_eq!(TokenRejection::Revoked.code(), "revoked");
    }
}
