//! The tenant's members, for admins: list them, change a member's role,
//! disable a member and enable them again. Invites are in [`super::invites`].
//!
//! Every change goes through a [`portcullis_store::Store`] operation that
//! writes its audit record in the transaction of the change, with the
//! signed-in admin as the actor. The store refuses to demote or disable
//! the tenant's last enabled admin, so the tenant is never left without
//! someone who can manage it. A member of another tenant gets the 404
//! page, exactly as one that does not exist.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::ids::UserId;
use portcullis_core::oauth::{Role, UserRecord};
use portcullis_store::StoreError;
use time::OffsetDateTime;

use super::account::{checked_form, page_session, store_failure};
use super::invites::InviteRow;
use super::key_pages::format_time;
use super::keys::{audit_context, role_forbidden};
use super::pages::{
    Layout, error_page, html, not_found_page, see_other, see_other_to, signed_in_layout,
};
use super::policy::may_manage_members;
use super::submissions::{CheckedToken, SubmissionForm, page_token};
use crate::app::AppState;
use crate::oauth::csrf::session_token;
use crate::oauth::session::ActiveSession;

pub(super) const MEMBERS: &str = "/dashboard/members";

/// The roles in the order the forms offer them.
pub(super) const ROLES: [&str; 3] = ["admin", "developer", "viewer"];

/// One member as the list shows them.
struct MemberRow {
    id: String,
    email: String,
    role: &'static str,
    created: String,
    last_sign_in: String,
    status: &'static str,
    /// Whether the member is enabled, so the role and disable forms apply
    /// rather than the enable form.
    active: bool,
}

#[derive(Template)]
#[template(path = "dashboard/members.html")]
struct MembersPage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    /// The invite form's one-time submission token.
    submission_token: String,
    members: Vec<MemberRow>,
    invites: Vec<InviteRow>,
    roles: [&'static str; 3],
    invite_email: &'a str,
    invite_role: &'a str,
    invite_hours: i64,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/member_disable.html")]
struct DisablePage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    member_id: String,
    member_email: &'a str,
}

/// The invite form's values to show again after a failed attempt, and
/// the failure's message.
pub(super) struct Retry<'a> {
    pub(super) email: &'a str,
    pub(super) role: &'a str,
    pub(super) message: String,
    /// The submission token the rejected POST sent, for the form shown
    /// again, or `None` when it is still claimed and a new one is needed.
    pub(super) sent: Option<&'a CheckedToken>,
}

/// Handles `GET /dashboard/members`: the members and pending invites.
pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match admin_page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    members_page(&state, &session, StatusCode::OK, None).await
}

/// Renders the members page with `status`, and with the invite form filled
/// in again and a message when `retry` is given.
pub(super) async fn members_page(
    state: &AppState,
    session: &ActiveSession,
    status: StatusCode,
    retry: Option<Retry<'_>>,
) -> Response {
    let user = &session.user;
    let now = OffsetDateTime::now_utc();
    let users = match state.store.list_users(user.tenant_id).await {
        Ok(users) => users,
        Err(error) => return store_failure(&error),
    };
    let sign_ins: HashMap<UserId, OffsetDateTime> =
        match state.store.last_sign_ins(user.tenant_id).await {
            Ok(times) => times.into_iter().collect(),
            Err(error) => return store_failure(&error),
        };
    let invites = match state.store.list_pending_invites(user.tenant_id, now).await {
        Ok(invites) => invites,
        Err(error) => return store_failure(&error),
    };
    let emails: HashMap<String, String> = users
        .iter()
        .map(|member| (super::policy::actor(member), member.email.to_string()))
        .collect();
    let members = users
        .iter()
        .map(|member| MemberRow {
            id: member.id.to_string(),
            email: member.email.to_string(),
            role: member.role.as_str(),
            created: format_time(member.created_at),
            last_sign_in: sign_ins
                .get(&member.id)
                .map_or_else(|| "not known".to_owned(), |at| format_time(*at)),
            status: if member.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            },
            active: member.disabled_at.is_none(),
        })
        .collect();
    let invites = invites
        .iter()
        .map(|invite| InviteRow::new(invite, &emails))
        .collect();
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    let (invite_email, invite_role, error) = match &retry {
        Some(retry) => (retry.email, retry.role, Some(retry.message.clone())),
        None => ("", Role::Developer.as_str(), None),
    };
    html(
        status,
        &MembersPage {
            layout: signed_in_layout(&session.user),
            email: user.email.as_str(),
            tenant: user.tenant.as_str(),
            csrf_token: &csrf_token,
            submission_token: page_token(
                state,
                session,
                SubmissionForm::InviteCreate,
                "",
                retry.as_ref().and_then(|retry| retry.sent),
            ),
            members,
            invites,
            roles: ROLES,
            invite_email,
            invite_role,
            invite_hours: state.key_policy.invite_expiry.whole_hours(),
            error,
        },
    )
}

/// Handles `POST /dashboard/members/{id}/role`: gives the member the
/// chosen role.
pub(super) async fn change_role(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let member = match tenant_member(&state, &session, &id).await {
        Ok(member) => member,
        Err(response) => return response,
    };
    let Ok(role) = form.field("role").parse::<Role>() else {
        return error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Change rejected",
            "Role: choose admin, developer or viewer. Nothing was changed.",
        );
    };
    let audit = audit_context(&state, &parts, &session);
    match state.store.change_user_role(member.id, role, &audit).await {
        Ok(changed) => {
            tracing::info!(
                member_id = %changed.id,
                user_id = %session.user.id,
                role = %changed.role,
                "member role changed in the dashboard"
            );
            // An admin who made themselves a developer or viewer can no
            // longer open the members page.
            if changed.id == session.user.id && changed.role != Role::Admin {
                see_other("/dashboard/")
            } else {
                see_other(MEMBERS)
            }
        }
        Err(error) => member_change_failure(&session, &member, &error),
    }
}

/// Handles `GET /dashboard/members/{id}/disable`: the confirmation page.
pub(super) async fn disable_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match admin_page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let member = match tenant_member(&state, &session, &id).await {
        Ok(member) => member,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &DisablePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            member_id: member.id.to_string(),
            member_email: member.email.as_str(),
        },
    )
}

/// Handles `POST /dashboard/members/{id}/disable`: disables the member
/// and ends their sessions at once.
pub(super) async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, _form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let member = match tenant_member(&state, &session, &id).await {
        Ok(member) => member,
        Err(response) => return response,
    };
    let audit = audit_context(&state, &parts, &session);
    match state.store.disable_user(member.id, &audit).await {
        Ok(disabled) => {
            tracing::info!(
                member_id = %disabled.id,
                user_id = %session.user.id,
                "member disabled in the dashboard"
            );
            see_other_to(MEMBERS)
        }
        Err(error) => member_change_failure(&session, &member, &error),
    }
}

/// Handles `POST /dashboard/members/{id}/enable`: enables a disabled
/// member, who then signs in with their old password.
pub(super) async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, _form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let member = match tenant_member(&state, &session, &id).await {
        Ok(member) => member,
        Err(response) => return response,
    };
    let audit = audit_context(&state, &parts, &session);
    match state.store.enable_user(member.id, &audit).await {
        Ok(enabled) => {
            tracing::info!(
                member_id = %enabled.id,
                user_id = %session.user.id,
                "member enabled in the dashboard"
            );
            see_other_to(MEMBERS)
        }
        Err(error) => member_change_failure(&session, &member, &error),
    }
}

/// Loads the session of a members page, which only admins may open.
pub(super) async fn admin_page_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<ActiveSession, Response> {
    let session = page_session(state, headers).await?;
    match non_admin_rejection(&session) {
        Some(response) => Err(response),
        None => Ok(session),
    }
}

/// Returns the 403 page when the signed-in user is no admin, and `None`
/// for an admin.
pub(super) fn non_admin_rejection(session: &ActiveSession) -> Option<Response> {
    if may_manage_members(&session.user) {
        return None;
    }
    tracing::info!(
        user_id = %session.user.id,
        role = %session.user.role,
        "dashboard members page rejected: role does not allow it"
    );
    Some(role_forbidden())
}

/// Finds member `id` of the admin's tenant. The role is checked first, so
/// a developer learns nothing about ids. After it, a malformed id, an
/// unknown user and another tenant's user all get the same 404 page.
async fn tenant_member(
    state: &AppState,
    session: &ActiveSession,
    id: &str,
) -> Result<UserRecord, Response> {
    if let Some(response) = non_admin_rejection(session) {
        return Err(response);
    }
    let Ok(id) = id.parse::<UserId>() else {
        return Err(not_found_page());
    };
    match state.store.find_user(id).await {
        Ok(Some(member)) if member.tenant_id == session.user.tenant_id => Ok(member),
        Ok(_) => Err(not_found_page()),
        Err(error) => Err(store_failure(&error)),
    }
}

/// Renders the page of a refused or failed member change.
fn member_change_failure(
    session: &ActiveSession,
    member: &UserRecord,
    error: &StoreError,
) -> Response {
    match error {
        StoreError::LastAdmin => {
            tracing::info!(member_id = %member.id, "dashboard member change rejected: last admin");
            let message = format!(
                "{} is the last admin of {}. Make another member admin first, then change \
                 or disable {}. Nothing was changed.",
                member.email, session.user.tenant, member.email
            );
            error_page(StatusCode::CONFLICT, "Change rejected", &message)
        }
        StoreError::Revoked(_) => {
            let message = format!("{} is disabled already. Nothing was changed.", member.email);
            error_page(StatusCode::CONFLICT, "Change rejected", &message)
        }
        StoreError::Conflict(_) => {
            let message = format!("{} is enabled already. Nothing was changed.", member.email);
            error_page(StatusCode::CONFLICT, "Change rejected", &message)
        }
        StoreError::NotFound(_) => not_found_page(),
        other => store_failure(other),
    }
}
