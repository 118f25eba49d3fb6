//! Reading how a client authenticates at the token, introspection and
//! revocation endpoints.
//!
//! A request carries exactly one of: HTTP Basic (`client_secret_basic`),
//! `client_id` and `client_secret` in the body (`client_secret_post`), a
//! signed assertion (`private_key_jwt`, RFC 7523), or only a `client_id`
//! (a public client, or a client that authenticates with its TLS client
//! certificate, RFC 8705 §2). Credentials in two places are two readings of
//! one request and are rejected (RFC 6749 §2.3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use portcullis_core::ids::ClientId;
use portcullis_core::key::{SecretKind, check_secret_format};
use portcullis_core::oauth::{ClientAuthMethod, ClientRecord};
use portcullis_store::CredentialRef;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use super::error::OAuthError;
use super::form::Form;
use crate::app::AppState;
use crate::clients::MAX_JWKS_KEYS;
use crate::listener::{ClientCertificate, ConnectionInfo};
use crate::metrics::{self, AuthMethodLabel, AuthOutcome};
use crate::pki::clients::internal_ca_client;
use crate::pki::identity::{check_self_signed, check_tls_client_auth};
use crate::ratelimit::brute_force::Subject;
use crate::telemetry::{ErrorChain, FactsHandle};
use crate::usage::FailedAuthentication;

/// The assertion type of RFC 7523 §2.2.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client credentials a request presents. `Debug` omits secrets.
pub enum PresentedClient {
    /// `Authorization: Basic` with the id and secret.
    SecretBasic {
        /// The client id as sent, decoded.
        client_id: String,
        /// The secret as sent, decoded.
        secret: SecretString,
    },
    /// `client_id` and `client_secret` in the form body.
    SecretPost {
        /// The client id as sent.
        client_id: String,
        /// The secret as sent.
        secret: SecretString,
    },
    /// A `private_key_jwt` assertion, with the `client_id` when sent.
    Assertion {
        /// The body's `client_id`, which must then match the assertion.
        client_id: Option<String>,
        /// The compact JWS.
        assertion: String,
    },
    /// Only a `client_id`: a public client, or a client registered for
    /// `tls_client_auth` or `self_signed_tls_client_auth`, whose credential
    /// is the request's client certificate.
    PublicClient {
        /// The client id as sent.
        client_id: String,
    },
}

impl std::fmt::Debug for PresentedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (method, client_id) = match self {
            Self::SecretBasic { client_id, .. } => ("client_secret_basic", Some(client_id)),
            Self::SecretPost { client_id, .. } => ("client_secret_post", Some(client_id)),
            Self::Assertion { client_id, .. } => ("private_key_jwt", client_id.as_ref()),
            Self::PublicClient { client_id } => ("none", Some(client_id)),
        };
        f.debug_struct("PresentedClient")
            .field("method", &method)
            .field("client_id", &client_id)
            .finish()
    }
}

impl PresentedClient {
    /// Whether the client tried HTTP Basic, so a failure carries a Basic
    /// challenge (RFC 6749 §5.2).
    pub const fn used_basic(&self) -> bool {
        matches!(self, Self::SecretBasic { .. })
    }
}

/// Finds the one way the request authenticates its client.
///
/// `Authorization` headers of other schemes are left to the caller, because
/// the introspection endpoint also accepts operator keys as Bearer.
/// `Ok(None)` means the request names no client at all.
pub fn presented_client(
    headers: &HeaderMap,
    form: &Form,
) -> Result<Option<PresentedClient>, OAuthError> {
    let mut authorizations = headers.get_all(AUTHORIZATION).iter();
    let basic = match (authorizations.next(), authorizations.next()) {
        (_, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "more than one Authorization header",
            ));
        }
        (Some(value), None) => basic_credentials(value.to_str().unwrap_or_default())?,
        (None, None) => None,
    };
    let secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let assertion_type = form.get("client_assertion_type");
    let client_id = form.get("client_id");

    if let Some((basic_id, basic_secret)) = basic {
        if secret.is_some() || assertion.is_some() {
            return Err(OAuthError::invalid_request(
                "the client authenticated in more than one way",
            ));
        }
        // A body client_id is allowed alongside Basic only when it names the
        // same client (RFC 6749 §4.1.3 sends it in code exchanges).
        if client_id.is_some_and(|id| id != basic_id) {
            return Err(OAuthError::invalid_request(
                "client_id in the body differs from the Basic credentials",
            ));
        }
        return Ok(Some(PresentedClient::SecretBasic {
            client_id: basic_id,
            secret: basic_secret,
        }));
    }

    match (secret, assertion, assertion_type) {
        (Some(_), Some(_), _) => Err(OAuthError::invalid_request(
            "the client authenticated in more than one way",
        )),
        (Some(secret), None, None) => {
            let client_id = client_id.ok_or_else(|| {
                OAuthError::invalid_request("client_secret was sent without client_id")
            })?;
            Ok(Some(PresentedClient::SecretPost {
                client_id: client_id.to_owned(),
                secret: SecretString::from(secret.to_owned()),
            }))
        }
        (None, Some(assertion), Some(JWT_BEARER_ASSERTION)) => {
            Ok(Some(PresentedClient::Assertion {
                client_id: client_id.map(str::to_owned),
                assertion: assertion.to_owned(),
            }))
        }
        (None, Some(_), _) | (None, None, Some(_)) | (Some(_), None, Some(_)) => {
            Err(OAuthError::invalid_request(format!(
                "client_assertion and client_assertion_type={JWT_BEARER_ASSERTION} go together"
            )))
        }
        (None, None, None) => Ok(client_id.map(|id| PresentedClient::PublicClient {
            client_id: id.to_owned(),
        })),
    }
}

/// Decodes `Basic` credentials: base64, split at the first colon, then
/// each part form-decoded (RFC 6749 §2.3.1). Other schemes give `None`.
fn basic_credentials(value: &str) -> Result<Option<(String, SecretString)>, OAuthError> {
    let (scheme, encoded) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            OAuthError::invalid_request("the Basic credentials are not base64 of UTF-8 text")
        })?;
    let (id, secret) = decoded.split_once(':').ok_or_else(|| {
        OAuthError::invalid_request("the Basic credentials have no ':' between id and secret")
    })?;
    Ok(Some((
        form_decode(id),
        SecretString::from(form_decode(secret)),
    )))
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default()
}

/// How far ahead an assertion's `exp` may lie. Used `jti`s are kept until
/// their assertion expires, so this bounds that table; RFC 7523 §3 leaves
/// the limit to the server.
pub const MAX_ASSERTION_LIFETIME: time::Duration = time::Duration::minutes(10);

/// Header members that would let an assertion name its own key.
const FORBIDDEN_ASSERTION_HEADERS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "crit"];

/// The facts of a request that client authentication reads besides its
/// form: the client certificate and the client's address for failure
/// records.
pub struct RequestFacts {
    /// The request's client certificate with its verdict, if one was
    /// presented.
    pub certificate: Option<Arc<ClientCertificate>>,
    /// The client's address, resolved through trusted proxies.
    pub client_ip: IpAddr,
    /// The facts of the request's log line and metrics.
    pub telemetry: FactsHandle,
}

impl RequestFacts {
    /// Reads the certificate and the client address of a request.
    pub fn of(state: &AppState, parts: &Parts) -> Self {
        let connection = parts.extensions.get::<ConnectionInfo>();
        let certificate = connection.and_then(|connection| {
            crate::pki::presented::client_certificate(state, connection, &parts.headers)
        });
        // Every request the listener serves carries its ConnectionInfo.
        // Without it (a router driven directly) the address is unknown.
        let client_ip = connection.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |connection| {
            state
                .proxies
                .client_ip(connection.peer.ip(), &parts.headers)
        });
        let telemetry = parts
            .extensions
            .get::<FactsHandle>()
            .cloned()
            .unwrap_or_default();
        Self {
            certificate,
            client_ip,
            telemetry,
        }
    }

    /// Returns the `x5t#S256` thumbprint that tokens of `client` are bound
    /// to: the certificate's, when the client authenticates with one (RFC
    /// 8705 §3).
    pub fn binding_for(&self, client: &ClientRecord) -> Option<String> {
        if !client.auth_method.uses_certificate() {
            return None;
        }
        self.certificate
            .as_ref()
            .map(|certificate| certificate.thumbprint_sha256.clone())
    }
}

/// Authenticates the client a request presents, with the one method
/// registered for it. Every failure is `invalid_client` (RFC 6749 §5.2),
/// with a Basic challenge when the client tried Basic; the cause is logged
/// at debug, never sent. A failed certificate authentication is also
/// written to the audit log with the certificate's serial and issuer.
///
/// Brute-force protection runs first: a blocked client address gets 429
/// before any secret, assertion or certificate is checked. Each
/// `invalid_client` counts against the address and the client id, and one
/// that meets a block of either gets 429. A client id's block
/// does not stop its right credential: a generated secret, a signed
/// assertion or a certificate cannot be guessed, so the block would only
/// let anyone who knows the public client id lock the client out.
pub async fn authenticate(
    state: &AppState,
    presented: &PresentedClient,
    facts: &RequestFacts,
    now: OffsetDateTime,
) -> Result<ClientRecord, OAuthError> {
    let started = Instant::now();
    let result = admit_and_verify(state, presented, facts, now).await;
    let method = match presented {
        PresentedClient::SecretBasic { .. } | PresentedClient::SecretPost { .. } => {
            AuthMethodLabel::ClientSecret
        }
        PresentedClient::Assertion { .. } => AuthMethodLabel::PrivateKeyJwt,
        PresentedClient::PublicClient { .. } => {
            let by_certificate = match &result {
                Ok(client) => client.auth_method.uses_certificate(),
                Err(_) => facts.certificate.is_some(),
            };
            if by_certificate {
                AuthMethodLabel::Mtls
            } else {
                AuthMethodLabel::None
            }
        }
    };
    let outcome = match &result {
        Ok(_) => AuthOutcome::Success,
        Err(error) if error.status() == StatusCode::TOO_MANY_REQUESTS => AuthOutcome::Blocked,
        Err(error) if error.status().is_server_error() => AuthOutcome::Error,
        Err(_) => AuthOutcome::Rejected,
    };
    metrics::record_authentication(&facts.telemetry, method, outcome, started.elapsed());
    result
}

/// Runs the checks of [`authenticate`]: brute-force admission, then the
/// client credential.
async fn admit_and_verify(
    state: &AppState,
    presented: &PresentedClient,
    facts: &RequestFacts,
    now: OffsetDateTime,
) -> Result<ClientRecord, OAuthError> {
    let identity = presented_client_id(presented).map(|id| format!("client:{id}"));
    let address = [Subject::ClientIp(facts.client_ip)];
    let mut subjects = address.to_vec();
    if let Some(identity) = &identity {
        subjects.push(Subject::Identity(identity.clone()));
    }
    if let Err(retry_after) = state.brute_force.admit(&address).await {
        tracing::debug!(client = ?presented, client_ip = %facts.client_ip, "client authentication blocked after repeated failures");
        record_client_failure(state, presented, facts, "authentication_blocked", now);
        return Err(OAuthError::authentication_blocked(retry_after));
    }

    let outcome = verify_client(state, presented, facts, now).await;
    match &outcome {
        Ok(client) => {
            state.usage.count_request(
                CredentialRef::Client(client.id),
                Some(client.tenant_id),
                now,
                false,
            );
        }
        Err(error) if error.code() == "invalid_client" => {
            // A failed certificate was recorded with its serial and issuer
            // where it was checked.
            let by_certificate = matches!(presented, PresentedClient::PublicClient { .. })
                && facts.certificate.is_some();
            let counted = state.brute_force.record_failure(&subjects).await;
            if let Some(retry_after) = counted.retry_after_seconds() {
                record_client_failure(state, presented, facts, "authentication_blocked", now);
                return Err(OAuthError::authentication_blocked(retry_after.max(1)));
            }
            if !by_certificate {
                record_client_failure(state, presented, facts, "invalid_client", now);
            }
        }
        Err(_) => {}
    }
    outcome
}

/// Queues the audit record of a failed client authentication at an OAuth
/// endpoint: an unknown client, a wrong secret or assertion, or a blocked
/// source. The client id is recorded only when it is a well-formed id, so
/// a value crafted to look like log text never reaches the record.
fn record_client_failure(
    state: &AppState,
    presented: &PresentedClient,
    facts: &RequestFacts,
    code: &'static str,
    now: OffsetDateTime,
) {
    let client_id = presented_client_id(presented).and_then(|id| id.parse::<ClientId>().ok());
    state.usage.record_failure(FailedAuthentication {
        at: now,
        client_ip: facts.client_ip,
        code,
        key_id: None,
        tenant_id: None,
        visible_prefix: None,
        client_id,
        token_id: None,
        surface: "oauth",
        certificate_serial: None,
        certificate_issuer: None,
    });
}

/// Returns the client id a request names, from the assertion's subject when
/// the body has no `client_id`.
fn presented_client_id(presented: &PresentedClient) -> Option<String> {
    match presented {
        PresentedClient::SecretBasic { client_id, .. }
        | PresentedClient::SecretPost { client_id, .. }
        | PresentedClient::PublicClient { client_id } => Some(client_id.clone()),
        PresentedClient::Assertion {
            client_id,
            assertion,
        } => client_id.clone().or_else(|| assertion_subject(assertion)),
    }
}

/// Checks the presented client credential against the registered client.
async fn verify_client(
    state: &AppState,
    presented: &PresentedClient,
    facts: &RequestFacts,
    now: OffsetDateTime,
) -> Result<ClientRecord, OAuthError> {
    let rejected = || OAuthError::invalid_client(presented.used_basic());
    let client = match presented {
        PresentedClient::SecretBasic { client_id, .. }
        | PresentedClient::SecretPost { client_id, .. }
        | PresentedClient::PublicClient { client_id } => find_client(state, client_id).await?,
        PresentedClient::Assertion {
            assertion,
            client_id,
        } => {
            let claimed = assertion_subject(assertion).ok_or_else(rejected)?;
            if client_id.as_deref().is_some_and(|id| id != claimed) {
                return Err(rejected());
            }
            find_client(state, &claimed).await?
        }
    };
    let Some(client) = client else {
        tracing::debug!(client = ?presented, "unknown or revoked client");
        return Err(rejected());
    };

    let registered = client.auth_method;
    let accepted = match (presented, registered) {
        (PresentedClient::SecretBasic { secret, .. }, ClientAuthMethod::ClientSecretBasic)
        | (PresentedClient::SecretPost { secret, .. }, ClientAuthMethod::ClientSecretPost) => {
            secret_matches(state, &client, secret.expose_secret(), now).await?
        }
        (PresentedClient::Assertion { assertion, .. }, ClientAuthMethod::PrivateKeyJwt) => {
            assertion_valid(state, &client, assertion, now).await?
        }
        (PresentedClient::PublicClient { .. }, ClientAuthMethod::None) => true,
        (
            PresentedClient::PublicClient { .. },
            ClientAuthMethod::TlsClientAuth | ClientAuthMethod::SelfSignedTlsClientAuth,
        ) => {
            if let Err(refusal) = certificate_authenticates(state, &client, facts, now).await? {
                return Err(OAuthError::invalid_client_certificate(&refusal));
            }
            true
        }
        _ => {
            tracing::debug!(client_id = %client.id, registered = registered.as_str(), "client used another authentication method");
            false
        }
    };
    if !accepted {
        return Err(rejected());
    }
    Ok(client)
}

/// The reason a client certificate did not authenticate a client, as the
/// `invalid_client` response and the audit record name it.
pub struct CertificateRefusal {
    /// The stable snake_case code, also the audit record's code.
    pub code: &'static str,
    /// The fault, in words that name no registered value.
    pub message: String,
}

/// Checks the request's certificate against a client registered for
/// `tls_client_auth` or `self_signed_tls_client_auth`, and records a failure
/// in the audit log. The inner error is the reason for the refusal.
async fn certificate_authenticates(
    state: &AppState,
    client: &ClientRecord,
    facts: &RequestFacts,
    now: OffsetDateTime,
) -> Result<Result<(), CertificateRefusal>, OAuthError> {
    let Some(certificate) = facts.certificate.as_deref() else {
        record_certificate_failure(state, client, facts, "certificate_missing", None, now);
        return Ok(Err(CertificateRefusal {
            code: "certificate_missing",
            message: "the request presented no client certificate".to_owned(),
        }));
    };
    let leaf = certificate.leaf().as_ref();
    let summary = certificate.serial_and_issuer();
    let outcome = match (client.auth_method, &certificate.verdict) {
        (ClientAuthMethod::SelfSignedTlsClientAuth, _) => check_self_signed(client, leaf, now),
        (_, Err(rejection)) => {
            record_certificate_failure(state, client, facts, rejection.code(), summary, now);
            return Ok(Err(CertificateRefusal {
                code: rejection.code(),
                message: "the certificate chain failed verification".to_owned(),
            }));
        }
        (_, Ok(verified)) => {
            let issued_to = internal_ca_client(&state.store, certificate, verified)
                .await
                .map_err(store_failure)?;
            check_tls_client_auth(client, leaf, verified, issued_to)
        }
    };
    match outcome {
        Ok(()) => Ok(Ok(())),
        Err(mismatch) => {
            tracing::debug!(client_id = %client.id, reason = %mismatch, "client certificate does not authenticate the client");
            record_certificate_failure(state, client, facts, mismatch.code(), summary, now);
            Ok(Err(CertificateRefusal {
                code: mismatch.code(),
                message: mismatch.to_string(),
            }))
        }
    }
}

/// Queues the audit record of a failed certificate authentication.
fn record_certificate_failure(
    state: &AppState,
    client: &ClientRecord,
    facts: &RequestFacts,
    code: &'static str,
    summary: Option<(String, String)>,
    now: OffsetDateTime,
) {
    let (certificate_serial, certificate_issuer) = summary.unzip();
    state.usage.record_failure(FailedAuthentication {
        at: now,
        client_ip: facts.client_ip,
        code,
        key_id: None,
        tenant_id: Some(client.tenant_id),
        visible_prefix: None,
        client_id: Some(client.id),
        token_id: None,
        surface: "oauth",
        certificate_serial,
        certificate_issuer,
    });
}

/// Looks a client up by the id as sent. An id that is not a UUID, such as
/// one with a look-alike letter from another script, names no client.
async fn find_client(
    state: &AppState,
    client_id: &str,
) -> Result<Option<ClientRecord>, OAuthError> {
    let Ok(id) = client_id.parse::<ClientId>() else {
        return Ok(None);
    };
    let client = state.store.find_client(id).await.map_err(store_failure)?;
    Ok(client.filter(|client| client.revoked_at.is_none()))
}

/// Checks a secret against the client's live secrets in constant time. The
/// format is checked first, so a mistyped secret costs no lookup.
async fn secret_matches(
    state: &AppState,
    client: &ClientRecord,
    presented: &str,
    now: OffsetDateTime,
) -> Result<bool, OAuthError> {
    if check_secret_format(SecretKind::ClientSecret, presented).is_err() {
        return Ok(false);
    }
    let hash = state.manager.pepper().hash(presented.as_bytes());
    let secrets = state
        .store
        .client_secrets(client.id, now)
        .await
        .map_err(store_failure)?;
    // Every stored hash is compared, so the time taken does not tell which
    // one matched.
    let mut matched = false;
    for secret in &secrets {
        matched |= secret.hash.ct_eq(&hash);
    }
    Ok(matched)
}

/// The `sub` (falling back to `iss`) of an assertion, read before its
/// signature is checked only to find the client whose keys check it.
fn assertion_subject(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("sub")
        .or_else(|| claims.get("iss"))?
        .as_str()
        .map(str::to_owned)
}

/// Verifies a `private_key_jwt` assertion (RFC 7523 §3) against the
/// client's registered JWKS, and spends its `jti`.
async fn assertion_valid(
    state: &AppState,
    client: &ClientRecord,
    assertion: &str,
    now: OffsetDateTime,
) -> Result<bool, OAuthError> {
    let client_id = client.id.to_string();
    let Some(claims) = verify_assertion(state, client, &client_id, assertion) else {
        return Ok(false);
    };
    let Some(jti) = claims
        .get("jti")
        .and_then(serde_json::Value::as_str)
        .filter(|jti| !jti.is_empty())
    else {
        return Ok(false);
    };
    let Some(expires_at) = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok())
    else {
        return Ok(false);
    };
    if expires_at > now + MAX_ASSERTION_LIFETIME {
        tracing::debug!(client_id = %client.id, "assertion lives too long");
        return Ok(false);
    }
    let first_use = state
        .store
        .use_assertion_jti(client.id, jti, expires_at)
        .await
        .map_err(store_failure)?;
    if !first_use {
        tracing::debug!(client_id = %client.id, "assertion jti replayed");
    }
    Ok(first_use)
}

/// Checks an assertion's header, signature and standard claims; returns its
/// claims when all pass.
fn verify_assertion(
    state: &AppState,
    client: &ClientRecord,
    client_id: &str,
    assertion: &str,
) -> Option<serde_json::Value> {
    let header_segment = assertion.split('.').next()?;
    let header_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_segment)
        .ok()?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header_bytes).ok()?;
    if FORBIDDEN_ASSERTION_HEADERS
        .iter()
        .any(|name| header.contains_key(*name))
    {
        return None;
    }

    let jwks: JwkSet = serde_json::from_str(client.jwks.as_deref()?).ok()?;
    let header_kid = match header.get("kid") {
        None => None,
        Some(serde_json::Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return None,
    };
    // The registered key fixes the algorithm, so the header must name it.
    let header_alg = header.get("alg").and_then(serde_json::Value::as_str)?;

    // RFC 7517 §4.5 makes `kid` optional. A header `kid` selects the key with
    // that `kid` and the keys without one. A header without `kid` tries every
    // key of the header's algorithm. Registration already allows at most
    // MAX_JWKS_KEYS keys, and the cap here bounds the work per assertion
    // whatever the store holds.
    let candidates = jwks
        .keys
        .iter()
        .filter(|jwk| match (header_kid, jwk.common.key_id.as_deref()) {
            (Some(wanted), Some(kid)) => kid == wanted,
            _ => true,
        })
        .filter_map(|jwk| {
            let algorithm = key_algorithm(jwk)?;
            (algorithm_name(algorithm) == header_alg).then_some((jwk, algorithm))
        })
        .take(MAX_JWKS_KEYS);

    let issuer = &state.oauth.issuer;
    let token_endpoint = format!("{issuer}/oauth/token");
    let mut last_error = None;
    for (jwk, algorithm) in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[token_endpoint.as_str(), issuer.as_str()]);
        validation.set_issuer(&[client_id]);
        validation.sub = Some(client_id.to_owned());
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = state.oauth.settings.leeway.as_secs();
        match decode::<serde_json::Value>(assertion, &key, &validation) {
            Ok(data) => return Some(data.claims),
            Err(error) => last_error = Some(error),
        }
    }
    match last_error {
        Some(error) => {
            tracing::debug!(client_id = %client.id, error = %error, "client assertion rejected");
        }
        None => tracing::debug!(
            client_id = %client.id,
            "no registered key matches the client assertion's kid and alg"
        ),
    }
    None
}

/// The one algorithm a registered key may sign with.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let from_type = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    // A key that names its algorithm must name the same one.
    match jwk.common.key_algorithm {
        None => Some(from_type),
        Some(named) if algorithm_name(from_type) == format!("{named:?}") => Some(from_type),
        Some(_) => None,
    }
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// Logs a store failure and returns `temporarily_unavailable`.
#[expect(clippy::needless_pass_by_value, reason = "used as a map_err function")]
pub(crate) fn store_failure(error: portcullis_store::StoreError) -> OAuthError {
    tracing::error!(error = %ErrorChain(&error), "OAuth store operation failed");
    OAuthError::temporarily_unavailable()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        headers
    }

    fn form(body: &str) -> Form {
        Form::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn credentials_in_two_places_rejected() {
        let cases = [
            (
                basic("A", "s"),
                "grant_type=client_credentials&client_id=B&client_secret=t",
            ),
            (
                basic("A", "s"),
                "grant_type=client_credentials&client_id=A&client_secret=s",
            ),
            (
                basic("A", "s"),
                "client_assertion_type=x&client_assertion=y",
            ),
            (
                HeaderMap::new(),
                "client_id=A&client_secret=s&client_assertion=y",
            ),
        ];
        for (headers, body) in cases {
            let error = presented_client(&headers, &form(body)).unwrap_err();
            assert_eq!(error.code(), "invalid_request", "{body}");
        }
    }

    #[test]
    fn basic_parts_form_decoded_after_split() {
        let encoded: String = "s3cr:t".bytes().map(|b| format!("%{b:02X}")).collect();
        let presented = presented_client(
            &basic("A", &encoded),
            &form("grant_type=client_credentials"),
        )
        .unwrap()
        .unwrap();
        let PresentedClient::SecretBasic { client_id, secret } = presented else {
            panic!("not basic")
        };
        assert_eq!(client_id, "A");
        assert_eq!(secret.expose_secret(), "s3cr:t");
    }

    #[test]
    fn basic_split_at_first_colon() {
        let presented = presented_client(&basic("A", "secret:extra"), &form(""))
            .unwrap()
            .unwrap();
        let PresentedClient::SecretBasic { secret, .. } = presented else {
            panic!("not basic")
        };
        assert_eq!(secret.expose_secret(), "secret:extra");
    }

    #[test]
    fn each_single_method_recognized() {
        let post =
            presented_client(&HeaderMap::new(), &form("client_id=A&client_secret=s")).unwrap();
        assert!(matches!(post, Some(PresentedClient::SecretPost { .. })));
        let body = format!(
            "client_assertion_type={}&client_assertion=a.b.c",
            url::form_urlencoded::byte_serialize(JWT_BEARER_ASSERTION.as_bytes())
                .collect::<String>()
        );
        let assertion = presented_client(&HeaderMap::new(), &form(&body)).unwrap();
        assert!(matches!(
            assertion,
            Some(PresentedClient::Assertion {
                client_id: None,
                ..
            })
        ));
        let public = presented_client(&HeaderMap::new(), &form("client_id=A")).unwrap();
        assert!(matches!(public, Some(PresentedClient::PublicClient { .. })));
        assert!(
            presented_client(&HeaderMap::new(), &form("grant_type=x"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn debug_omits_secret() {
        let presented = presented_client(&basic("A", "topsecret"), &form(""))
            .unwrap()
            .unwrap();
        assert!(!format!("{presented:?}").contains("topsecret"));
    }
}
