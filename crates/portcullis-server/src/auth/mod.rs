//! Authentication: reading the credential a request carries ([`extract`])
//! and verifying API keys against the cache and the store ([`keys`]).

pub mod extract;
pub mod keys;

pub use extract::{CredentialSource, Presented, presented_credential};
pub use keys::{KeyVerifier, VerifyError};

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use portcullis_core::credential::{ApiKeyRecord, KeyRejection};
use portcullis_core::key::visible_prefix;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

use crate::problem::Problem;
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

/// Finds and verifies a request's API key, recording the outcome: a use of
/// the key, or an audit record of the failure.
///
/// `surface` names the caller in failure records (`gateway`, `verify`,
/// `admin`). Errors are the problem to respond with: 400 for a malformed
/// request, 401 for a missing or refused key, 503 when the store cannot be
/// asked (Portcullis fails closed).
pub async fn authenticate_key(
    verifier: &KeyVerifier,
    usage: &UsageRecorder,
    headers: &HeaderMap,
    query: Option<&str>,
    client_ip: IpAddr,
    surface: &'static str,
    facts: &FactsHandle,
) -> Result<Authenticated, Problem> {
    let now = OffsetDateTime::now_utc();
    let failure = |code: &'static str, prefix: Option<String>, key: Option<&ApiKeyRecord>| {
        FailedAuthentication {
            at: now,
            client_ip,
            code,
            key_id: key.map(|key| key.id),
            tenant_id: key.and_then(|key| key.tenant_id),
            visible_prefix: prefix,
            surface,
        }
    };

    let presented = match presented_credential(headers, query) {
        Ok(Some(presented)) => presented,
        Ok(None) => {
            let problem = Problem::missing_credential();
            usage.record_failure(failure(problem.code(), None, None));
            return Err(problem);
        }
        Err(problem) => {
            usage.record_failure(failure(problem.code(), None, None));
            return Err(problem);
        }
    };
    let secret = presented.secret.expose_secret();

    match verifier.verify(secret, now).await {
        Ok(key) => {
            facts.update(|facts| {
                facts.key_id = Some(key.id);
                facts.tenant = key.tenant.as_ref().map(ToString::to_string);
            });
            usage.record_use(key.id, now, client_ip);
            Ok(Authenticated {
                key,
                source: presented.source,
            })
        }
        Err(VerifyError::Rejected { rejection, key }) => {
            if let Some(key) = &key {
                facts.update(|facts| {
                    facts.key_id = Some(key.id);
                    facts.tenant = key.tenant.as_ref().map(ToString::to_string);
                });
            }
            // Only a string in the key format has a prefix worth recording;
            // anything else may be some other secret pasted by mistake.
            let prefix = (!matches!(rejection, KeyRejection::InvalidFormat(_)))
                .then(|| visible_prefix(secret));
            usage.record_failure(failure(rejection.code(), prefix, key.as_deref()));
            Err(Problem::rejected_key(rejection))
        }
        Err(VerifyError::Store(error)) => {
            tracing::error!(error = %crate::telemetry::ErrorChain(&error), "credential lookup failed; denying the request");
            Err(Problem::store_unavailable())
        }
    }
}
