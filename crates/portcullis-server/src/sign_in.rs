//! The password check behind every browser sign-in form: the
//! authorization endpoint's and the dashboard's.
//!
//! Both forms count failures in the node's brute-force tracker under the
//! same two subjects, the client address and `user:<tenant id>:<e-mail>`,
//! so guesses spread over the two forms add up.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http::request::Parts;
use portcullis_core::ids::{AuditId, TenantId};
use portcullis_core::oauth::email::MAX_EMAIL_LEN;
use portcullis_core::oauth::{Email, UserRecord};
use portcullis_store::{AuditAction, AuditEvent, StoreError};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::metrics::{self, AuthMethodLabel, AuthOutcome};
use crate::ratelimit::brute_force::Subject;
use crate::telemetry::{ErrorChain, FactsHandle};
use crate::users::verify_password;

/// The message of every failed sign-in, the same for an unknown e-mail
/// address, an unknown tenant and a wrong password, so the form does not
/// tell which accounts exist.
pub const SIGN_IN_FAILED: &str = "The e-mail address or password is incorrect.";

/// The e-mail address typed into a sign-in form, and where it came from.
pub struct SignInAttempt {
    /// The address as typed, trimmed and cut to the maximum address length,
    /// for the form, the logs and the audit record.
    pub typed_email: String,
    /// The address, when it is a valid one.
    pub email: Option<Email>,
    /// The key of the address's failure count: the checked address, or the
    /// typed text lower-cased.
    pub failure_key: String,
    /// The resolved client address.
    pub client_ip: IpAddr,
}

impl SignInAttempt {
    /// Reads the typed e-mail address of an attempt from `client_ip`.
    pub fn new(typed: &str, client_ip: IpAddr) -> Self {
        let typed_email: String = typed.trim().chars().take(MAX_EMAIL_LEN).collect();
        let email = Email::parse(&typed_email).ok();
        let failure_key = email.as_ref().map_or_else(
            || typed_email.to_ascii_lowercase(),
            |email| email.as_str().to_owned(),
        );
        Self {
            typed_email,
            email,
            failure_key,
            client_ip,
        }
    }
}

/// The result of checking a sign-in form's credentials.
#[derive(Debug)]
pub enum SignInOutcome {
    /// The password is right and the user is not disabled.
    SignedIn(UserRecord),
    /// Unknown tenant or address, wrong password or disabled user. The
    /// failure is counted.
    Rejected,
    /// Too many failures: the attempt was not checked. The value is the
    /// wait in seconds.
    Throttled(u64),
}

/// Checks `password` for the attempt's address in `tenant_id`, behind the
/// brute-force tracker. `tenant_key` names the tenant in the failure count:
/// the tenant id when the tenant exists, any other fixed text otherwise.
///
/// # Errors
///
/// The store's, when looking the user up fails. Nothing is counted then.
pub async fn check_credentials(
    state: &AppState,
    tenant_id: Option<TenantId>,
    tenant_key: &str,
    attempt: &SignInAttempt,
    password: &SecretString,
) -> Result<SignInOutcome, StoreError> {
    // E-mail addresses are unique per tenant, so the tenant is part of the
    // identity.
    let identity = format!("user:{tenant_key}:{}", attempt.failure_key);
    let subjects = [
        Subject::ClientIp(attempt.client_ip),
        Subject::Identity(identity),
    ];
    // The attempt is counted as failed before the password hash runs, so a
    // blocked source costs no Argon2 work. Guesses sent in parallel also
    // stop at the threshold, and a success gives the count back. Known and
    // unknown addresses are treated the same.
    if let Err(retry_after) = state.brute_force.reserve(&subjects).await {
        tracing::info!(
            email = ?attempt.typed_email,
            client_ip = %attempt.client_ip,
            "sign-in throttled"
        );
        return Ok(SignInOutcome::Throttled(retry_after));
    }

    let user = match (tenant_id, &attempt.email) {
        (Some(tenant_id), Some(email)) => {
            match state.store.find_user_by_email(tenant_id, email).await {
                Ok(user) => user,
                Err(error) => {
                    state.brute_force.refund(&subjects).await;
                    return Err(error);
                }
            }
        }
        _ => None,
    };
    // Runs for unknown addresses too, so the response time does not reveal
    // whether the address has an account.
    let verified = verify_password(user.as_ref(), password).await;
    match user.filter(|_| verified) {
        Some(user) => {
            state.brute_force.refund(&subjects).await;
            Ok(SignInOutcome::SignedIn(user))
        }
        // The reservation counted the failure.
        None => Ok(SignInOutcome::Rejected),
    }
}

/// Records a password sign-in that began at `started` in the request's
/// metrics, by the outcome of [`check_credentials`].
pub fn record_sign_in(
    parts: &Parts,
    outcome: &Result<SignInOutcome, StoreError>,
    started: Instant,
) {
    let Some(facts) = parts.extensions.get::<FactsHandle>() else {
        return;
    };
    let outcome = match outcome {
        Ok(SignInOutcome::SignedIn(_)) => AuthOutcome::Success,
        Ok(SignInOutcome::Rejected) => AuthOutcome::Rejected,
        Ok(SignInOutcome::Throttled(_)) => AuthOutcome::Blocked,
        Err(_) => AuthOutcome::Error,
    };
    metrics::record_authentication(facts, AuthMethodLabel::Password, outcome, started.elapsed());
}

/// Resolves the client address of the request by the trusted-proxy rule.
pub fn client_ip(state: &AppState, parts: &Parts) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    state.proxies.client_ip(peer, &parts.headers)
}

/// Formats a wait in words, rounded up to whole minutes.
pub fn describe_wait(wait: Duration) -> String {
    match wait.as_secs().div_ceil(60) {
        0 | 1 => "1 minute".to_owned(),
        minutes => format!("{minutes} minutes"),
    }
}

/// Starts an audit record of a sign-in, sign-out or consent event.
pub fn audit_event(
    action: AuditAction,
    tenant_id: TenantId,
    client_ip: IpAddr,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        id: AuditId::generate(),
        at,
        actor: String::new(),
        action,
        tenant_id: Some(tenant_id),
        target: None,
        remote_addr: Some(client_ip.to_string()),
        details: json!({}),
    }
}

/// Appends an audit record. A failure is logged and does not stop the
/// sign-in, sign-out or consent, which has already happened.
pub async fn append_audit(state: &AppState, event: AuditEvent) {
    let action = event.action;
    if let Err(error) = state.store.append_audit(&[event]).await {
        tracing::error!(
            error = %ErrorChain(&error),
            action = %action,
            "writing an audit record failed"
        );
    }
}
