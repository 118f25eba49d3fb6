//! Sign-in, sign-out, sign-out everywhere and the signed-in overview.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use portcullis_core::name::TenantName;
use portcullis_core::oauth::UserRecord;
use portcullis_store::{AuditAction, AuditEvent, StoreError};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use super::pages::{
    HomePage, SignInPage, forbidden_page, html, internal_error_page, layout, see_other,
    signed_in_layout, unavailable_page,
};
use super::{Form, read_form};
use crate::app::AppState;
use crate::oauth::authorize::{set_cookie, too_many_attempts};
use crate::oauth::csrf::{check_session_token, check_sign_in_token, session_token, sign_in_token};
use crate::oauth::session::{ActiveSession, load_session, removal_cookie, start_session};
use crate::sign_in::{
    SIGN_IN_FAILED, SignInAttempt, SignInOutcome, append_audit, audit_event, check_credentials,
    client_ip, describe_wait, record_sign_in,
};
use crate::telemetry::ErrorChain;

/// Maximum length of the tenant name kept from the sign-in form, in
/// characters. It exceeds any valid tenant name, so the form can show a typo
/// back.
const MAX_TYPED_TENANT_LEN: usize = 128;

const OVERVIEW: &str = "/dashboard/";
const SIGN_IN: &str = "/dashboard/sign-in";

/// Handles `GET /dashboard`: redirects to the overview.
pub(super) async fn to_overview() -> Response {
    see_other(OVERVIEW)
}

/// Handles `GET /dashboard/`: the overview, or a redirect to the sign-in
/// form without a session.
pub(super) async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match current_session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return see_other(SIGN_IN),
        Err(error) => return store_failure(&error),
    };
    let user = &session.user;
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &HomePage {
            layout: signed_in_layout(&session.user),
            email: user.email.as_str(),
            tenant: user.tenant.as_str(),
            role: user.role.as_str(),
            csrf_token: &csrf_token,
        },
    )
}

/// Handles `GET /dashboard/sign-in`: the form, or the overview when the
/// browser is signed in already.
pub(super) async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match current_session(&state, &headers).await {
        Ok(Some(_)) => see_other(OVERVIEW),
        Ok(None) => sign_in_form(&headers, "", "", None),
        Err(error) => store_failure(&error),
    }
}

/// Handles `POST /dashboard/sign-in`: checks the double-submit CSRF token,
/// then the credentials, and starts a session with a new id.
pub(super) async fn sign_in(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form = match read_form(&parts.headers, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if !check_sign_in_token(&parts.headers, form.field("csrf_token")) {
        tracing::info!("dashboard sign-in rejected: CSRF token missing or wrong");
        return forbidden_page();
    }

    let typed_tenant: String = form
        .field("tenant")
        .trim()
        .chars()
        .take(MAX_TYPED_TENANT_LEN)
        .collect();
    let tenant = match TenantName::parse(&typed_tenant) {
        Ok(name) => match state.store.find_tenant(&name).await {
            Ok(tenant) => tenant,
            Err(error) => return store_failure(&error),
        },
        Err(_) => None,
    };
    // An unknown tenant gets its own failure count, keyed by the typed name,
    // so guessing tenant names is throttled too.
    let tenant_key = tenant.as_ref().map_or_else(
        || format!("unknown-tenant:{}", typed_tenant.to_ascii_lowercase()),
        |tenant| tenant.id.to_string(),
    );
    let attempt = SignInAttempt::new(form.field("email"), client_ip(&state, &parts));
    let password = SecretString::from(form.field("password").to_owned());
    let tenant_id = tenant.as_ref().map(|tenant| tenant.id);
    let started = Instant::now();
    let outcome = check_credentials(&state, tenant_id, &tenant_key, &attempt, &password).await;
    record_sign_in(&parts, &outcome, started);
    match outcome {
        Ok(SignInOutcome::SignedIn(user)) => start_signed_in(&state, &parts, &attempt, &user).await,
        Ok(SignInOutcome::Rejected) => {
            reject_sign_in(&state, &parts, tenant_id, &typed_tenant, &attempt).await
        }
        Ok(SignInOutcome::Throttled(retry_after)) => {
            let message = format!(
                "Too many failed sign-ins. Try again in {}.",
                describe_wait(Duration::from_secs(retry_after))
            );
            let page = sign_in_form(
                &parts.headers,
                &typed_tenant,
                &attempt.typed_email,
                Some(message),
            );
            too_many_attempts(page, retry_after)
        }
        Err(error) => store_failure(&error),
    }
}

/// Starts a session for `user`, replacing any id the browser had, audits
/// the sign-in and sends the browser to the overview.
pub(super) async fn start_signed_in(
    state: &AppState,
    parts: &Parts,
    attempt: &SignInAttempt,
    user: &UserRecord,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let pepper = state.manager.pepper();
    let session = match start_session(&state.store, pepper, &parts.headers, user, now).await {
        Ok(session) => session,
        Err(error) => {
            tracing::error!(error = %ErrorChain(&error), "starting a dashboard session failed");
            return internal_error_page();
        }
    };
    tracing::info!(
        user_id = %user.id,
        client_ip = %attempt.client_ip,
        "user signed in to the dashboard"
    );
    let event = AuditEvent {
        actor: format!("user:{}", user.id),
        target: Some(user.id.to_string()),
        details: json!({ "via": "dashboard" }),
        ..audit_event(
            AuditAction::UserSignedIn,
            user.tenant_id,
            attempt.client_ip,
            now,
        )
    };
    append_audit(state, event).await;
    set_cookie(see_other(OVERVIEW), &session.set_cookie())
}

/// Logs and audits a failed sign-in and shows the form again with the one
/// message for every failure. An unknown tenant has no audit log, so that
/// failure is only logged.
async fn reject_sign_in(
    state: &AppState,
    parts: &Parts,
    tenant_id: Option<portcullis_core::ids::TenantId>,
    typed_tenant: &str,
    attempt: &SignInAttempt,
) -> Response {
    tracing::info!(
        tenant = ?typed_tenant,
        email = ?attempt.typed_email,
        client_ip = %attempt.client_ip,
        "dashboard sign-in failed"
    );
    if let Some(tenant_id) = tenant_id {
        let event = AuditEvent {
            actor: "anonymous".to_owned(),
            details: json!({ "email": attempt.typed_email, "via": "dashboard" }),
            ..audit_event(
                AuditAction::UserSignInFailed,
                tenant_id,
                attempt.client_ip,
                OffsetDateTime::now_utc(),
            )
        };
        append_audit(state, event).await;
    }
    sign_in_form(
        &parts.headers,
        typed_tenant,
        &attempt.typed_email,
        Some(SIGN_IN_FAILED.to_owned()),
    )
}

/// Handles `POST /dashboard/sign-out`: ends this browser's session.
pub(super) async fn sign_out(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let session = match checked_session(&state, &parts, body).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let pepper = state.manager.pepper();
    if let Err(error) = state.store.delete_session(&session.id.hash(pepper)).await {
        return store_failure(&error);
    }
    audit_sign_out(&state, &parts, &session.user, false, 1).await;
    signed_out()
}

/// Handles `POST /dashboard/sign-out-everywhere`: ends every session of
/// the signed-in user, in every browser, this one included.
pub(super) async fn sign_out_everywhere(
    State(state): State<AppState>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let session = match checked_session(&state, &parts, body).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let ended = match state.store.delete_user_sessions(session.user.id).await {
        Ok(ended) => ended,
        Err(error) => return store_failure(&error),
    };
    audit_sign_out(&state, &parts, &session.user, true, ended).await;
    signed_out()
}

/// Reads a signed-in form and checks its session-bound CSRF token. Without
/// a session the browser is sent to the sign-in form and nothing changes.
async fn checked_session(
    state: &AppState,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<ActiveSession, Response> {
    checked_form(state, parts, body)
        .await
        .map(|(session, _)| session)
}

/// Reads a signed-in form, checks its session-bound CSRF token and returns
/// the session with the form's fields. Without a session the browser is
/// sent to the sign-in form and nothing changes.
pub(super) async fn checked_form(
    state: &AppState,
    parts: &Parts,
    body: axum::body::Body,
) -> Result<(ActiveSession, Form), Response> {
    let form: Form = read_form(&parts.headers, body).await?;
    let session = token_session(state, &parts.headers, form.field("csrf_token")).await?;
    Ok((session, form))
}

/// Loads the browser's live session for a posted form and checks the
/// form's CSRF token `submitted` against it. Without a session the user
/// goes to the sign-in form, and a missing or wrong token gets the 403
/// page.
pub(super) async fn token_session(
    state: &AppState,
    headers: &HeaderMap,
    submitted: &str,
) -> Result<ActiveSession, Response> {
    let session = match current_session(state, headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return Err(see_other(SIGN_IN)),
        Err(error) => return Err(store_failure(&error)),
    };
    if !check_session_token(state.manager.pepper(), &session.id, submitted) {
        tracing::info!(
            user_id = %session.user.id,
            "dashboard form rejected: CSRF token missing or wrong"
        );
        return Err(forbidden_page());
    }
    Ok(session)
}

async fn audit_sign_out(
    state: &AppState,
    parts: &Parts,
    user: &UserRecord,
    everywhere: bool,
    sessions_ended: u64,
) {
    let client_ip = client_ip(state, parts);
    tracing::info!(
        user_id = %user.id,
        everywhere,
        sessions_ended,
        client_ip = %client_ip,
        "user signed out of the dashboard"
    );
    let event = AuditEvent {
        actor: format!("user:{}", user.id),
        target: Some(user.id.to_string()),
        details: json!({ "everywhere": everywhere, "sessions_ended": sessions_ended }),
        ..audit_event(
            AuditAction::UserSignedOut,
            user.tenant_id,
            client_ip,
            OffsetDateTime::now_utc(),
        )
    };
    append_audit(state, event).await;
}

/// Builds the response after sign-out: a redirect to the sign-in form that
/// removes the session cookie.
fn signed_out() -> Response {
    set_cookie(see_other(SIGN_IN), &removal_cookie())
}

/// Loads the browser's live session for a page, or returns the redirect
/// to the sign-in form (or the error page) to send instead.
pub(super) async fn page_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<ActiveSession, Response> {
    match current_session(state, headers).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(see_other(SIGN_IN)),
        Err(error) => Err(store_failure(&error)),
    }
}

/// Loads the browser's live session, moving its idle expiry forward.
async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<ActiveSession>, StoreError> {
    let now = OffsetDateTime::now_utc();
    load_session(&state.store, state.manager.pepper(), headers, now).await
}

/// Renders the sign-in form with the double-submit token and, when the
/// browser has none yet, its cookie.
fn sign_in_form(headers: &HeaderMap, tenant: &str, email: &str, error: Option<String>) -> Response {
    let token = match sign_in_token(headers) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(error = %error, "generating a CSRF token failed");
            return internal_error_page();
        }
    };
    let page = html(
        StatusCode::OK,
        &SignInPage {
            layout: layout(),
            tenant,
            email,
            error,
            csrf_token: &token.token,
        },
    );
    match &token.set_cookie {
        Some(cookie) => set_cookie(page, cookie),
        None => page,
    }
}

pub(super) fn store_failure(error: &StoreError) -> Response {
    tracing::error!(error = %ErrorChain(error), "store failed in the dashboard");
    unavailable_page()
}
