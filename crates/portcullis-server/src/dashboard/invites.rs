//! Invites: an admin invites an e-mail address with a role, and the
//! person who follows the link sets a password and becomes a member.
//!
//! The link carries a random 256-bit token. Only its keyed hash is stored,
//! under a label of its own so it never equals the hash of another kind of
//! secret, and the found row's hash is compared again in constant time.
//! The link page is shown once and never cached, and the invite form
//! carries a one-time submission token ([`super::submissions`]), so a form
//! sent again makes no second invite. The link works once, until the
//! operator's `dashboard.invite_expiry`; expired, used and revoked links
//! get 410 and unknown ones 404, and none of them changes anything. The
//! join form has no session yet, so it carries the double-submit token of
//! the sign-in form.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{InviteId, UserId};
use portcullis_core::oauth::{Email, Role};
use portcullis_store::{
    AcceptInvite, AuditContext, InviteRecord, InviteState, NewInvite, NewUser, StoreError,
};
use secrecy::SecretString;
use time::OffsetDateTime;

use super::account::{checked_form, start_signed_in, store_failure};
use super::assets::SCRIPT_PATH;
use super::key_pages::format_time;
use super::keys::audit_context;
use super::members::{MEMBERS, Retry, members_page, non_admin_rejection};
use super::pages::{
    Layout, error_page, html, internal_error_page, layout, not_found_page, see_other,
    signed_in_layout,
};
use super::policy::actor;
use super::read_form;
use super::submissions::{SUBMISSION_FIELD, SubmissionForm, checked_token, claim};
use crate::app::AppState;
use crate::oauth::authorize::set_cookie;
use crate::oauth::csrf::{check_sign_in_token, issuer_origin, session_token, sign_in_token};
use crate::oauth::session::{is_token_of_len, random_token};
use crate::sign_in::{SignInAttempt, client_ip};
use crate::telemetry::ErrorChain;
use crate::users::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, check_password, hash_password};

/// Length of an invite token, in random bytes: 256 bits.
const INVITE_TOKEN_LEN: usize = 32;

/// Label hashed in front of an invite token.
const INVITE_HASH_LABEL: &[u8] = b"portcullis invite token\0";

/// One pending invite as the members page shows it.
pub(super) struct InviteRow {
    pub(super) id: String,
    pub(super) email: String,
    pub(super) role: &'static str,
    pub(super) invited_by: String,
    pub(super) created: String,
    pub(super) expires: String,
}

impl InviteRow {
    /// Builds the row of `invite`, naming its sender by e-mail address when
    /// `emails` (audit actor to address) contains them.
    pub(super) fn new(invite: &InviteRecord, emails: &HashMap<String, String>) -> Self {
        Self {
            id: invite.id.to_string(),
            email: invite.email.to_string(),
            role: invite.role.as_str(),
            invited_by: emails
                .get(&invite.created_by)
                .cloned()
                .unwrap_or_else(|| invite.created_by.clone()),
            created: format_time(invite.created_at),
            expires: format_time(invite.expires_at),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/invite_link.html")]
struct LinkPage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    invite_email: &'a str,
    invite_role: &'a str,
    link: &'a str,
    expires: String,
    script: &'static str,
}

#[derive(Template)]
#[template(path = "dashboard/join.html")]
struct JoinPage<'a> {
    layout: Layout,
    tenant: &'a str,
    email: &'a str,
    role: &'a str,
    token: &'a str,
    csrf_token: &'a str,
    min_len: usize,
    max_len: usize,
    error: Option<String>,
}

/// Handles `POST /dashboard/invites`: creates an invite and shows its link
/// once.
pub(super) async fn create(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();

    let (session, form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };

    if let Some(response) = non_admin_rejection(&session) {
        return response;
    }

    let submitted = form.field(SUBMISSION_FIELD);
    let checked = checked_token(
        &state,
        &session,
        SubmissionForm::InviteCreate,
        "",
        submitted,
    );
    let submission = match checked {
        Ok(submission) => submission,
        Err(rejection) => return rejection.page(),
    };

    let typed_email = form.field("email").trim();
    let typed_role = form.field("role");

    let retry = |message: String, sent| Retry {
        email: typed_email,
        role: typed_role,
        message,
        sent,
    };

    let email = match Email::parse(typed_email) {
        Ok(email) => email,
        Err(error) => {
            let message = format!("Email: {error}. Enter the address the person signs in with.");
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let retry = retry(message, Some(&submission));
            return members_page(&state, &session, status, Some(retry)).await;
        }
    };

    let Ok(role) = typed_role.parse::<Role>() else {
        let message = "Role: choose admin, developer or viewer.".to_owned();
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        let retry = retry(message, Some(&submission));
        return members_page(&state, &session, status, Some(retry)).await;
    };

    let Ok(token) = random_token(INVITE_TOKEN_LEN) else {
        tracing::error!("generating an invite token failed");
        return internal_error_page();
    };

    let claim = match claim(&state, &session, SubmissionForm::InviteCreate, submission).await {
        Ok(claim) => claim,
        Err(response) => return response,
    };

    let audit = audit_context(&state, &parts, &session);
    let invite = NewInvite {
        id: InviteId::generate(),
        tenant_id: session.user.tenant_id,
        email,
        role,
        token_hash: token_hash(&state, &token),
        created_by: actor(&session.user),
        created_at: audit.at,
        expires_at: audit.at + state.key_policy.invite_expiry,
    };

    let stored = match state.store.create_invite(&invite, &audit).await {
        Ok(stored) => stored,
        Err(StoreError::Conflict(message)) => {
            tracing::info!(user_id = %session.user.id, "dashboard invite rejected: {message}");
            let sent = claim.release(&state).await;
            let message = format!("Email: {message}. No invite was created.");
            let status = StatusCode::CONFLICT;
            let retry = retry(message, sent.as_ref());
            return members_page(&state, &session, status, Some(retry)).await;
        }
        Err(error) => {
            claim.release(&state).await;
            return store_failure(&error);
        }
    };
    claim.finish(&state, &stored.id.to_string()).await;
    tracing::info!(
        invite_id = %stored.id,
        user_id = %session.user.id,
        role = %stored.role,
        "member invited in the dashboard"
    );

    let origin = issuer_origin(&state.oauth.issuer).unwrap_or_default();
    let link = format!("{origin}/dashboard/join/{token}");

    let csrf_token = session_token(state.manager.pepper(), &session.id);

    let mut response = html(
        StatusCode::OK,
        &LinkPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            invite_email: stored.email.as_str(),
            invite_role: stored.role.as_str(),
            link: &link,
            expires: format_time(stored.expires_at),
            script: SCRIPT_PATH.as_str(),
        },
    );
    // Set here as well as by the security layer, because the page contains a secret.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Handles `POST /dashboard/invites/{id}/revoke`: revokes a pending invite
/// of the admin's tenant.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, _form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    if let Some(response) = non_admin_rejection(&session) {
        return response;
    }
    let Ok(id) = id.parse::<InviteId>() else {
        return not_found_page();
    };
    match state.store.find_invite(id).await {
        Ok(Some(invite)) if invite.tenant_id == session.user.tenant_id => {}
        Ok(_) => return not_found_page(),
        Err(error) => return store_failure(&error),
    }
    let audit = audit_context(&state, &parts, &session);
    match state.store.revoke_invite(id, &audit).await {
        Ok(revoked) => {
            tracing::info!(invite_id = %revoked.id, user_id = %session.user.id, "invite revoked in the dashboard");
            see_other(MEMBERS)
        }
        Err(StoreError::Revoked(_)) => error_page(
            StatusCode::CONFLICT,
            "Change rejected",
            "The invite was used, revoked or expired already. Nothing was changed.",
        ),
        Err(StoreError::NotFound(_)) => not_found_page(),
        Err(error) => store_failure(&error),
    }
}

/// Handles `GET /dashboard/join/{token}`: the form that sets the invited
/// member's password.
pub(super) async fn join_form(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let invite = match pending_invite(&state, &token).await {
        Ok(invite) => invite,
        Err(response) => return response,
    };
    join_page(&headers, &invite, &token, StatusCode::OK, None)
}

/// Handles `POST /dashboard/join/{token}`: checks the double-submit token
/// and the password, creates the member, spends the invite and signs the
/// member in with a new session.
pub(super) async fn join(
    State(state): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let form = match read_form(&parts.headers, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if !check_sign_in_token(&parts.headers, form.field("csrf_token")) {
        tracing::info!("dashboard join rejected: CSRF token missing or wrong");
        return super::pages::forbidden_page();
    }
    let invite = match pending_invite(&state, &token).await {
        Ok(invite) => invite,
        Err(response) => return response,
    };
    let password = form.field("password");
    if let Err(error) = check_password(password) {
        let message = format!("Password: {error}. Choose another one.");
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return join_page(&parts.headers, &invite, &token, status, Some(message));
    }
    if password != form.field("confirm") {
        let message = "Password again: the two passwords differ. Type them again.".to_owned();
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return join_page(&parts.headers, &invite, &token, status, Some(message));
    }
    let password_hash = match hash_password(&SecretString::from(password.to_owned())).await {
        Ok(hash) => hash,
        Err(error) => {
            tracing::error!(error = %ErrorChain(&error), "hashing an invited member's password failed");
            return internal_error_page();
        }
    };
    accept(&state, &parts, &invite, &token, password_hash).await
}

/// Spends the invite and creates the member, then signs them in.
async fn accept(
    state: &AppState,
    parts: &Parts,
    invite: &InviteRecord,
    token: &str,
    password_hash: String,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let user = NewUser {
        id: UserId::generate(),
        tenant_id: invite.tenant_id,
        email: invite.email.clone(),
        password_hash,
        role: invite.role,
        created_at: now,
    };
    let audit = AuditContext {
        actor: format!("user:{}", user.id),
        remote_addr: Some(client_ip(state, parts).to_string()),
        at: now,
    };
    let hash = token_hash(state, token);
    match state.store.accept_invite(&hash, &user, &audit).await {
        Ok(AcceptInvite::Accepted(created)) => {
            tracing::info!(invite_id = %invite.id, user_id = %created.id, "invite accepted");
            let attempt = SignInAttempt::new(created.email.as_str(), client_ip(state, parts));
            start_signed_in(state, parts, &attempt, &created).await
        }
        Ok(AcceptInvite::Unknown) => unknown_invite(),
        Ok(AcceptInvite::NotPending(state)) => spent_invite(state),
        Ok(AcceptInvite::EmailTaken) => error_page(
            StatusCode::CONFLICT,
            "Already a member",
            "This address is a member of the organization already, so the invite was not \
             used. Sign in instead, or ask an admin.",
        ),
        Err(error) => store_failure(&error),
    }
}

/// Finds the pending invite of the link's token, or returns the 404 or 410
/// page to send instead.
async fn pending_invite(state: &AppState, token: &str) -> Result<InviteRecord, Response> {
    if !is_token_of_len(token, INVITE_TOKEN_LEN) {
        return Err(unknown_invite());
    }
    let hash = token_hash(state, token);
    let invite = match state.store.find_invite_by_hash(&hash).await {
        Ok(Some(invite)) if invite.token_hash.ct_eq(&hash) => invite,
        Ok(_) => return Err(unknown_invite()),
        Err(error) => return Err(store_failure(&error)),
    };
    match invite.state(OffsetDateTime::now_utc()) {
        InviteState::Pending => Ok(invite),
        other => Err(spent_invite(other)),
    }
}

/// Computes the keyed hash under which the store keeps an invite token.
fn token_hash(state: &AppState, token: &str) -> SecretHash {
    let mut input = INVITE_HASH_LABEL.to_vec();
    input.extend_from_slice(token.as_bytes());
    state.manager.pepper().hash(&input)
}

fn join_page(
    headers: &HeaderMap,
    invite: &InviteRecord,
    token: &str,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let csrf = match sign_in_token(headers) {
        Ok(csrf) => csrf,
        Err(error) => {
            tracing::error!(error = %error, "generating a CSRF token failed");
            return internal_error_page();
        }
    };
    let page = html(
        status,
        &JoinPage {
            layout: layout(),
            tenant: invite.tenant.as_str(),
            email: invite.email.as_str(),
            role: invite.role.as_str(),
            token,
            csrf_token: &csrf.token,
            min_len: MIN_PASSWORD_LEN,
            max_len: MAX_PASSWORD_LEN,
            error,
        },
    );
    match &csrf.set_cookie {
        Some(cookie) => set_cookie(page, cookie),
        None => page,
    }
}

fn unknown_invite() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Invite not found",
        "This invite link is not valid. Check that you copied the whole link, or ask an admin \
         of your organization for a new invite.",
    )
}

/// Renders the 410 page of a link that worked once and no longer does.
fn spent_invite(state: InviteState) -> Response {
    let reason = match state {
        InviteState::Used => "was used already",
        InviteState::Revoked => "was revoked by an admin",
        // A pending invite never reaches this page.
        InviteState::Expired | InviteState::Pending => "has expired",
    };
    let message = format!(
        "This invite link {reason}, so it no longer works. Nothing was changed. Ask an admin \
         of your organization for a new invite, or sign in if you have an account."
    );
    error_page(StatusCode::GONE, "Invite no longer valid", &message)
}
