//! Authentication: reading the credential a request carries ([`extract`]),
//! verifying API keys against the cache and the store ([`keys`]) and bearer
//! access tokens against the signing keys and deny list ([`token`]).

pub mod extract;
pub mod keys;
pub mod token;

pub use extract::{CredentialSource, Presented, presented_credential};
pub use keys::{KeyVerifier, VerifyError};
pub use token::{AuthenticatedToken, TokenRejection, TokenVerifier, TokenVerifyError};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, StatusCode};
use portcullis_core::credential::{ApiKeyRecord, KeyRejection};
use portcullis_core::ids::ClientId;
use portcullis_core::key::{check_format, visible_prefix};
use portcullis_core::oauth::ClientRecord;
use portcullis_core::scope::ScopeSet;
use portcullis_store::CredentialRef;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::config::{AuthMethod, RouteConfig};
use crate::metrics::{self, AuthMethodLabel};
use crate::problem::{Challenge, Problem};
use crate::ratelimit::brute_force::{BruteForceTracker, Subject};
use crate::telemetry::FactsHandle;
use crate::usage::{FailedAuthentication, UsageRecorder};

/// A request whose API key was verified.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The key's record as of the last cache load.
    pub key: Arc<ApiKeyRecord>,
    /// The place in the request where the key was found.
    pub source: CredentialSource,
}

/// A gateway caller, authenticated by one of the methods its route accepts.
#[derive(Clone, Debug)]
pub enum Caller {
    /// An API key.
    ApiKey(Authenticated),
    /// A bearer access token.
    AccessToken(Box<AuthenticatedToken>),
    /// A client certificate that authenticates an OAuth client.
    Certificate(Box<CertificateCaller>),
}

/// An OAuth client authenticated by its client certificate alone (RFC 8705
/// §2), on a route that accepts `mtls`.
#[derive(Clone, Debug)]
pub struct CertificateCaller {
    /// The client, as of the last lookup; its registered scopes are the
    /// caller's scopes.
    pub client: Arc<ClientRecord>,
    /// The certificate's SHA-256 thumbprint, base64url (RFC 8705 §3.1
    /// `x5t#S256`).
    pub thumbprint_sha256: String,
}

impl Caller {
    /// Returns the scopes that the credential grants.
    pub fn scopes(&self) -> &ScopeSet {
        match self {
            Self::ApiKey(authenticated) => &authenticated.key.scopes,
            Self::AccessToken(authenticated) => &authenticated.scopes,
            Self::Certificate(authenticated) => &authenticated.client.scopes,
        }
    }

    /// Returns the OAuth client of a token or certificate caller.
    pub fn client_id(&self) -> Option<ClientId> {
        match self {
            Self::ApiKey(_) => None,
            Self::AccessToken(authenticated) => Some(authenticated.client_id),
            Self::Certificate(authenticated) => Some(authenticated.client.id),
        }
    }

    /// Returns the credential that usage is counted against: the key, or
    /// the OAuth client.
    pub fn credential(&self) -> CredentialRef {
        match self {
            Self::ApiKey(authenticated) => CredentialRef::Key(authenticated.key.id),
            Self::AccessToken(authenticated) => CredentialRef::Client(authenticated.client_id),
            Self::Certificate(authenticated) => CredentialRef::Client(authenticated.client.id),
        }
    }
}

/// The context of a credential check, which failure records and the
/// request log line need.
pub struct CheckContext<'a> {
    /// The buffer of usage and failure records.
    pub usage: &'a UsageRecorder,
    /// The resolved client address.
    pub client_ip: IpAddr,
    /// The caller named in failure records (`gateway`, `verify`, `admin`).
    pub surface: &'static str,
    /// The facts of the request log line.
    pub facts: &'a FactsHandle,
    /// The time the request is judged at.
    pub now: OffsetDateTime,
    /// Failed authentication counts, checked before a key is verified.
    pub brute_force: &'a BruteForceTracker,
}

impl CheckContext<'_> {
    /// Starts a failure record with `code` and no credential details.
    pub(crate) fn failure(&self, code: &'static str) -> FailedAuthentication {
        FailedAuthentication {
            at: self.now,
            client_ip: self.client_ip,
            code,
            key_id: None,
            tenant_id: None,
            visible_prefix: None,
            client_id: None,
            token_id: None,
            surface: self.surface,
            certificate_serial: None,
            certificate_issuer: None,
        }
    }
}

/// Authenticates a gateway request with the one credential it carries,
/// which must be of a kind that `route` accepts, recording the outcome.
///
/// Errors are the problem to respond with: 400 for a malformed request or
/// several credentials, 401 for a missing, refused or not accepted
/// credential, 503 when the store cannot be asked (Portcullis fails
/// closed). Route rules beyond the credential kind (operator keys, method,
/// scopes) are the caller's to check.
pub async fn authenticate_for_route(
    keys: &KeyVerifier,
    tokens: &TokenVerifier<'_>,
    route: &RouteConfig,
    headers: &HeaderMap,
    query: Option<&str>,
    context: &CheckContext<'_>,
) -> Result<Caller, Problem> {
    let presented = find_credential(headers, query, context, || missing_credential(&route.auth))?;
    let method = presented.method();
    if !route.auth.contains(&method) {
        context
            .usage
            .record_failure(context.failure("auth_method_not_accepted"));
        return Err(Problem::wrong_credential_kind(not_accepted_detail(
            method,
            &route.auth,
        )));
    }

    match method {
        AuthMethod::ApiKey => verify_presented_key(keys, presented, context)
            .await
            .map(Caller::ApiKey),
        AuthMethod::Jwt => {
            let Some(audience) = route.audience.as_deref() else {
                tracing::error!(route = ?route.path_prefix, "route accepts access tokens but has no audience");
                return Err(Problem::internal());
            };
            token::authenticate_token(tokens, &presented.secret, audience, context)
                .await
                .map(|authenticated| Caller::AccessToken(Box::new(authenticated)))
        }
        AuthMethod::Mtls => {
            // A credential read from headers is never a certificate.
            tracing::error!("a header credential was read as a client certificate");
            Err(Problem::internal())
        }
    }
}

/// Finds and verifies a request's API key, recording the outcome: a use of
/// the key, or an audit record of the failure.
///
/// `context.surface` names the caller in failure records (`gateway`,
/// `verify`, `admin`). Errors are the problem to respond with: 400 for a
/// malformed request, 401 for a missing or refused key, 429 for a blocked
/// source, 503 when the store cannot be asked (Portcullis fails closed).
pub async fn authenticate_key(
    verifier: &KeyVerifier,
    headers: &HeaderMap,
    query: Option<&str>,
    context: &CheckContext<'_>,
) -> Result<Authenticated, Problem> {
    let started = Instant::now();
    let (method, result) =
        match find_credential(headers, query, context, Problem::missing_credential) {
            Ok(presented) => (
                AuthMethodLabel::from(presented.method()),
                verify_presented_key(verifier, presented, context).await,
            ),
            Err(problem) => (AuthMethodLabel::None, Err(problem)),
        };
    let outcome = metrics::auth_outcome(&result);
    metrics::record_authentication(context.facts, method, outcome, started.elapsed());
    result
}

/// Finds the request's one credential, recording a failure when there is
/// none (`missing` builds that problem) or the request is malformed.
fn find_credential(
    headers: &HeaderMap,
    query: Option<&str>,
    context: &CheckContext<'_>,
    missing: impl FnOnce() -> Problem,
) -> Result<Presented, Problem> {
    let problem = match presented_credential(headers, query) {
        Ok(Some(presented)) => return Ok(presented),
        Ok(None) => missing(),
        Err(problem) => problem,
    };
    context
        .usage
        .record_failure(context.failure(problem.code()));
    Err(problem)
}

/// Verifies a presented API key, recording a use of the key or an audit
/// record of the failure.
async fn verify_presented_key(
    verifier: &KeyVerifier,
    presented: Presented,
    context: &CheckContext<'_>,
) -> Result<Authenticated, Problem> {
    let secret = presented.secret.expose_secret();
    let identity = key_identity(secret);
    let address = [Subject::ClientIp(context.client_ip)];
    let mut subjects = address.to_vec();
    if let Some(identity) = &identity {
        subjects.push(Subject::Identity(identity.clone()));
    }
    // Only the address is checked before the key. A key has too much
    // entropy to guess, so a block or delay of its prefix must not keep its
    // owner out. Wrong keys wait the prefix's delay or get its 429 below.
    if let Err(retry_after) = context.brute_force.admit(&address).await {
        context
            .usage
            .record_failure(context.failure("authentication_blocked"));
        return Err(Problem::authentication_blocked(retry_after));
    }

    let record_facts = |key: &ApiKeyRecord| {
        context.facts.update(|facts| {
            facts.key_id = Some(key.id);
            facts.tenant = key.tenant.as_ref().map(ToString::to_string);
        });
    };

    match verifier.verify(secret, context.now).await {
        Ok(key) => {
            record_facts(&key);
            context
                .usage
                .record_use(key.id, context.now, context.client_ip);
            context.usage.count_request(
                CredentialRef::Key(key.id),
                key.tenant_id,
                context.now,
                false,
            );
            context.usage.record_success(
                CredentialRef::Key(key.id),
                key.tenant_id,
                context.now,
                context.client_ip,
            );
            Ok(Authenticated {
                key,
                source: presented.source,
            })
        }
        Err(VerifyError::Rejected { rejection, key }) => {
            let mut failure = context.failure(rejection.code());
            if let Some(key) = &key {
                record_facts(key);
                failure.key_id = Some(key.id);
                failure.tenant_id = key.tenant_id;
            }
            // Only a string in the key format has a prefix worth recording;
            // anything else may be some other secret pasted by mistake.
            failure.visible_prefix = (!matches!(rejection, KeyRejection::InvalidFormat(_)))
                .then(|| visible_prefix(secret));
            context.usage.record_failure(failure);
            let counted = context.brute_force.record_failure(&subjects).await;
            if let Some(retry_after) = counted.retry_after_seconds() {
                return Err(Problem::authentication_blocked(retry_after.max(1)));
            }
            Err(Problem::rejected_key(rejection))
        }
        Err(VerifyError::Store(error)) => {
            tracing::error!(error = %crate::telemetry::ErrorChain(&error), "credential lookup failed; denying the request");
            Err(Problem::store_unavailable())
        }
    }
}

/// Returns the brute-force identity that `secret` names: its visible prefix
/// when it is in the key format. Anything else may be some other secret
/// pasted by mistake, so it names no identity and is never stored.
pub(crate) fn key_identity(secret: &str) -> Option<String> {
    check_format(secret)
        .is_ok()
        .then(|| format!("key:{}", visible_prefix(secret)))
}

/// 401 for a request without a credential, naming what the route accepts.
pub(crate) fn missing_credential(accepted: &[AuthMethod]) -> Problem {
    if accepted == [AuthMethod::ApiKey] {
        return Problem::missing_credential();
    }
    let ways: Vec<&str> = accepted
        .iter()
        .map(|method| match method {
            AuthMethod::ApiKey => "an API key (Authorization: Bearer or X-API-Key)",
            AuthMethod::Jwt => "an access token (Authorization: Bearer)",
            AuthMethod::Mtls => "the client certificate of a registered OAuth client",
        })
        .collect();
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "missing_credential",
        "Authentication required",
        format!("send {}", ways.join(" or ")),
    )
    .with_challenge(Challenge::Missing)
}

/// Writes the detail of a 401 for a credential of a kind the route does not accept.
fn not_accepted_detail(presented: AuthMethod, accepted: &[AuthMethod]) -> String {
    let names: Vec<&str> = accepted.iter().map(|method| method_noun(*method)).collect();
    format!(
        "this route does not accept {}; it accepts {}",
        method_noun(presented),
        names.join(" or ")
    )
}

const fn method_noun(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::ApiKey => "API keys",
        AuthMethod::Jwt => "access tokens (bearer JWTs)",
        AuthMethod::Mtls => "client certificates",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_accepted_detail_names_route_methods() {
        assert_eq!(
            not_accepted_detail(AuthMethod::Jwt, &[AuthMethod::ApiKey]),
            "this route does not accept access tokens (bearer JWTs); it accepts API keys"
        );
        assert_eq!(
            not_accepted_detail(AuthMethod::ApiKey, &[AuthMethod::Jwt]),
            "this route does not accept API keys; it accepts access tokens (bearer JWTs)"
        );
    }

    #[test]
    fn missing_credential_detail_follows_route() {
        let jwt_only = missing_credential(&[AuthMethod::Jwt]);
        assert_eq!(jwt_only.code(), "missing_credential");
        assert!(jwt_only.detail().contains("access token"));
        let certificate_only = missing_credential(&[AuthMethod::Mtls]);
        assert!(certificate_only.detail().contains("client certificate"));
        assert!(!certificate_only.detail().contains("API key"));
        let keys_only = missing_credential(&[AuthMethod::ApiKey]);
        assert_eq!(keys_only.detail(), Problem::missing_credential().detail());
    }
}
