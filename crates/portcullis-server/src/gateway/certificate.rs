//! Authentication by client certificate on routes that accept `mtls`.
//!
//! `auth` lists alternatives. A request that carries an API key or a bearer
//! token is judged by that credential, as on any route. A request that
//! carries neither is judged by its client certificate when the route
//! accepts `mtls`, and then the OAuth client that the certificate
//! authenticates is the caller, with that client's registered scopes.
//!
//! A route with `client_certificate = "required"` requires both: an access
//! token and a certificate that authenticates the token's client.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use http::request::Parts;

use crate::app::AppState;
use crate::auth::{
    Caller, CertificateCaller, CheckContext, TokenVerifier, authenticate_for_route,
    presented_credential,
};
use crate::config::{AuthMethod, RouteConfig};
use crate::listener::ClientCertificate;
use crate::metrics::{self, AuthMethodLabel};
use crate::pki::clients::{CertificateClientError, Unmapped, revoked_by_internal_ca};
use crate::pki::verify::Rejection;
use crate::problem::{Challenge, Problem};
use crate::telemetry::ErrorChain;

/// Authenticates a gateway request by the one credential it carries or, on
/// a route that accepts `mtls` and without such a credential, by its client
/// certificate.
///
/// `certificate` has passed the gateway's certificate check: its chain
/// verified, or it is a registered self-signed certificate.
pub(super) async fn authenticate_caller(
    state: &AppState,
    route: &RouteConfig,
    parts: &Parts,
    certificate: Option<&ClientCertificate>,
    context: &CheckContext<'_>,
) -> Result<Caller, Problem> {
    let started = Instant::now();
    let presented = presented_credential(&parts.headers, parts.uri.query());
    let header_credential = !matches!(presented, Ok(None));
    if let (false, true, Some(certificate)) = (
        header_credential,
        route.auth.contains(&AuthMethod::Mtls),
        certificate,
    ) {
        let result = authenticate_certificate(state, certificate, context).await;
        let outcome = metrics::auth_outcome(&result);
        metrics::record_authentication(
            context.facts,
            AuthMethodLabel::Mtls,
            outcome,
            started.elapsed(),
        );
        return result;
    }

    let tokens = TokenVerifier::new(&state.oauth, &state.store, state.verifier.cache());
    let result = authenticate_for_route(
        &state.verifier,
        &tokens,
        route,
        &parts.headers,
        parts.uri.query(),
        context,
    )
    .await;
    let method = match presented {
        Ok(Some(presented)) => AuthMethodLabel::from(presented.method()),
        Ok(None) | Err(_) => AuthMethodLabel::None,
    };
    let outcome = metrics::auth_outcome(&result);
    metrics::record_authentication(context.facts, method, outcome, started.elapsed());
    result
}

/// Finds the OAuth client that `certificate` authenticates, recording a
/// failure with the certificate's serial and issuer when there is none.
async fn authenticate_certificate(
    state: &AppState,
    certificate: &ClientCertificate,
    context: &CheckContext<'_>,
) -> Result<Caller, Problem> {
    let trust = state.client_certificate_trust.get().map(Arc::as_ref);
    let found = state
        .certificate_clients
        .client_for(
            &state.store,
            trust,
            certificate,
            state.verifier.cache().is_trusted(),
            context.now,
        )
        .await;
    let unmapped = match found {
        Ok(client) => {
            context.facts.update(|facts| {
                facts.tenant = Some(client.tenant.to_string());
            });
            return Ok(Caller::Certificate(Box::new(CertificateCaller {
                client,
                thumbprint_sha256: certificate.thumbprint_sha256.clone(),
            })));
        }
        Err(CertificateClientError::Unmapped(unmapped)) => unmapped,
        Err(CertificateClientError::Store(error)) => {
            tracing::error!(error = %ErrorChain(&error), "looking up the client of a certificate failed; denying the request");
            return Err(Problem::store_unavailable());
        }
    };
    if unmapped == Unmapped::NoClient
        && let Some(verified) = certificate.verified()
    {
        let revoked = revoked_by_internal_ca(&state.store, certificate, verified)
            .await
            .map_err(|error| {
                tracing::error!(error = %ErrorChain(&error), "reading the internal CA's record of a certificate failed; denying the request");
                Problem::store_unavailable()
            })?;
        if revoked {
            let rejection = Rejection::revoked_serial(verified);
            return Err(super::reject_certificate(&rejection, context));
        }
    }

    let mut failure = context.failure(unmapped.code());
    let (serial, issuer) = certificate.serial_and_issuer().unzip();
    failure.certificate_serial = serial;
    failure.certificate_issuer = issuer;
    context.usage.record_failure(failure);
    let detail = match unmapped {
        Unmapped::NoClient => {
            "no live OAuth client is registered for this client certificate; register it \
             for tls_client_auth or self_signed_tls_client_auth"
        }
        Unmapped::Ambiguous(_) => {
            "this client certificate matches more than one OAuth client, so it identifies \
             none; give each client its own certificate"
        }
    };
    Err(Problem::new(
        StatusCode::UNAUTHORIZED,
        unmapped.code(),
        "Invalid client certificate",
        detail,
    )
    .with_challenge(Challenge::InvalidToken))
}

/// Enforces a route's `client_certificate = "required"`: the client of an
/// access token must also present a certificate that authenticates it. A
/// caller authenticated by its certificate meets the rule already.
pub(super) async fn require_client_certificate(
    state: &AppState,
    caller: &Caller,
    certificate: Option<&ClientCertificate>,
    context: &CheckContext<'_>,
) -> Result<(), Problem> {
    let token = match caller {
        Caller::AccessToken(token) => token,
        Caller::Certificate(_) => return Ok(()),
        Caller::ApiKey(_) => {
            // The configuration rejects this setting next to "api_key".
            tracing::error!("an API key reached a route that requires a client certificate");
            return Err(Problem::internal());
        }
    };
    let mut failure = context.failure("client_certificate_mismatch");
    failure.client_id = Some(token.client_id);
    let Some(certificate) = certificate else {
        failure.code = "client_certificate_missing";
        context.usage.record_failure(failure);
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "Client certificate required",
            "this route needs the client certificate of the token's client besides the access \
             token; connect with that certificate",
        )
        .with_challenge(Challenge::InvalidToken));
    };

    let found = state
        .certificate_clients
        .client_for(
            &state.store,
            state.client_certificate_trust.get().map(Arc::as_ref),
            certificate,
            state.verifier.cache().is_trusted(),
            context.now,
        )
        .await;
    match found {
        Ok(client) if client.id == token.client_id => return Ok(()),
        Ok(_) | Err(CertificateClientError::Unmapped(_)) => {}
        Err(CertificateClientError::Store(error)) => {
            tracing::error!(error = %ErrorChain(&error), client_id = %token.client_id, "looking up the client of a certificate failed; denying the request");
            return Err(Problem::store_unavailable());
        }
    }
    let (serial, issuer) = certificate.serial_and_issuer().unzip();
    failure.certificate_serial = serial;
    failure.certificate_issuer = issuer;
    context.usage.record_failure(failure);
    Err(Problem::new(
        StatusCode::UNAUTHORIZED,
        "client_certificate_mismatch",
        "Invalid client certificate",
        "the client certificate does not authenticate the access token's client; connect \
         with that client's certificate",
    )
    .with_challenge(Challenge::InvalidToken))
}
