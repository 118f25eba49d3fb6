//! The tenant's API keys: list, create, rotate and revoke.
//!
//! Every change goes through the [`crate::manage::Manager`] operations of
//! the CLI and admin API, so it writes the same audit record and change-feed
//! row, and the gateway stops accepting a revoked key within a second. A
//! key of another tenant is answered with 404, exactly as a key that does
//! not exist, so ids of other tenants cannot be probed. The create and
//! rotate forms carry a one-time submission token ([`super::submissions`]),
//! so a form that the browser sends again makes no second key.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis_core::credential::ApiKeyRecord;
use portcullis_core::key::Environment;
use portcullis_core::scope::ScopeSet;
use portcullis_store::usage::day_start;
use portcullis_store::{AuditContext, KeyFilter};
use time::{Duration, OffsetDateTime};

use super::Form;
use super::account::{checked_form, page_session, store_failure};
use super::assets::SCRIPT_PATH;
use super::key_pages::{
    KeyForm, KeyPage, KeyRow, KeysPage, NewKeyPage, RevokePage, RotatePage, ScopeChoice,
    SecretPage, parse_key_id, user_emails,
};
use super::pages::{
    error_page, html, internal_error_page, not_found_page, see_other_to, signed_in_layout,
};
use super::policy::{actor, may_create, may_manage};
use super::submissions::{
    CheckedToken, SUBMISSION_FIELD, SubmissionForm, checked_token, claim, page_token,
};
use crate::app::AppState;
use crate::manage::{IssuedKey, KeyRequest, MAX_ROTATION_GRACE, ManageError};
use crate::oauth::csrf::session_token;
use crate::oauth::session::ActiveSession;
use crate::sign_in::client_ip;
use crate::telemetry::ErrorChain;

const KEYS: &str = "/dashboard/keys";

/// Days of usage that the list adds up per key, today included.
const USAGE_LIST_DAYS: i64 = 7;

/// Grace period that the rotation form proposes, in hours.
const DEFAULT_GRACE_HOURS: i64 = 24;

/// Handles `GET /dashboard/keys`: every key of the user's tenant, with
/// its requests of the last seven days from one query.
pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let user = &session.user;
    let now = OffsetDateTime::now_utc();
    let keys = match state
        .store
        .list_keys(KeyFilter::Tenant(user.tenant_id))
        .await
    {
        Ok(keys) => keys,
        Err(error) => return store_failure(&error),
    };
    let since = day_start(now) - Duration::days(USAGE_LIST_DAYS - 1);
    let totals: HashMap<_, _> = match state.store.key_request_totals(user.tenant_id, since).await {
        Ok(totals) => totals.into_iter().collect(),
        Err(error) => return store_failure(&error),
    };
    let users = match state.store.list_users(user.tenant_id).await {
        Ok(users) => user_emails(&users),
        Err(error) => return store_failure(&error),
    };
    let rows = keys
        .iter()
        .map(|key| {
            let requests = totals.get(&key.id).copied().unwrap_or(0);
            KeyRow::new(key, &users, requests, may_manage(user, key), now)
        })
        .collect();
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &KeysPage {
            layout: signed_in_layout(&session.user),
            email: user.email.as_str(),
            tenant: user.tenant.as_str(),
            csrf_token: &csrf_token,
            keys: rows,
            may_create: may_create(user),
        },
    )
}

/// Handles `GET /dashboard/keys/{id}`: one key and its actions.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, key) = match tenant_key_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let row = match key_row(&state, &session, &key).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &KeyPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            key: row,
            rotated_to: key.rotated_to.map(|id| id.to_string()),
        },
    )
}

/// Handles `GET /dashboard/keys/new`: the create form, for admins and
/// developers.
pub(super) async fn new_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if !may_create(&session.user) {
        return role_forbidden();
    }
    let policy = &state.key_policy;
    let form = KeyForm {
        name: String::new(),
        scopes: scope_choices(&state, &[]),
        expires_in_days: policy.expiry_default_days.to_string(),
        max_days: policy.expiry_max_days,
        live: true,
        errors: Vec::new(),
    };
    new_key_page(&state, &session, StatusCode::OK, form, None)
}

/// Handles `POST /dashboard/keys`: checks the form and creates the key, or
/// shows the form again with one message per invalid field.
pub(super) async fn create(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    if !may_create(&session.user) {
        return role_forbidden();
    }
    let submitted = form.field(SUBMISSION_FIELD);
    let token = match checked_token(&state, &session, SubmissionForm::KeyCreate, "", submitted) {
        Ok(token) => token,
        Err(rejection) => return rejection.page(),
    };
    let checked = match check_key_form(&state, &form) {
        Ok(checked) => checked,
        Err(form) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return new_key_page(&state, &session, status, form, Some(&token));
        }
    };
    let claim = match claim(&state, &session, SubmissionForm::KeyCreate, token).await {
        Ok(claim) => claim,
        Err(response) => return response,
    };
    let audit = audit_context(&state, &parts, &session);
    let request = KeyRequest {
        tenant: Some(session.user.tenant.to_string()),
        scopes: checked.scopes,
        name: Some(checked.name),
        expires_in: Some(Duration::days(i64::from(checked.days))),
        environment: checked.environment,
        limits: Default::default(),
    };
    match state.manager.create_key(request, &audit).await {
        Ok(issued) => {
            tracing::info!(
                key_id = %issued.record.id,
                user_id = %session.user.id,
                "key created in the dashboard"
            );
            claim.finish(&state, &issued.record.id.to_string()).await;
            secret_page(&state, &session, &issued, "Key created", None).await
        }
        Err(error) => {
            claim.release(&state).await;
            manage_failure(&error)
        }
    }
}

/// Handles `GET /dashboard/keys/{id}/rotate`: the rotation form.
pub(super) async fn rotate_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, key) = match managed_key_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    rotate_page(
        &state,
        &session,
        &key,
        StatusCode::OK,
        DEFAULT_GRACE_HOURS.to_string(),
        None,
        None,
    )
    .await
}

/// Handles `POST /dashboard/keys/{id}/rotate`: replaces the key and shows
/// the new secret once. The old key keeps working for the chosen grace
/// period.
pub(super) async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form, key) = match checked_key_form(&state, &parts, body, &id).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let subject = key.id.to_string();
    let submitted = form.field(SUBMISSION_FIELD);
    let form_kind = SubmissionForm::KeyRotate;
    let token = match checked_token(&state, &session, form_kind, &subject, submitted) {
        Ok(token) => token,
        Err(rejection) => return rejection.page(),
    };
    let hours = match read_grace_hours(&form) {
        Ok(hours) => hours,
        Err((typed, message)) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let sent = Some(&token);
            return rotate_page(&state, &session, &key, status, typed, Some(message), sent).await;
        }
    };
    let claim = match claim(&state, &session, form_kind, token).await {
        Ok(claim) => claim,
        Err(response) => return response,
    };
    let audit = audit_context(&state, &parts, &session);
    match state
        .manager
        .rotate_key(key.id, Duration::hours(hours), &audit)
        .await
    {
        Ok((old, issued)) => {
            claim.finish(&state, &issued.record.id.to_string()).await;
            tracing::info!(
                key_id = %old.id,
                new_key_id = %issued.record.id,
                user_id = %session.user.id,
                "key rotated in the dashboard"
            );
            let note = format!(
                "The old key {} keeps working for {hours} hours, until {}.",
                old.visible_prefix,
                old.expires_at
                    .map_or_else(|| "it is revoked".to_owned(), super::key_pages::format_time)
            );
            secret_page(&state, &session, &issued, "Key rotated", Some(note)).await
        }
        Err(error) => {
            claim.release(&state).await;
            manage_failure(&error)
        }
    }
}

/// Reads the rotation form's grace period in whole hours, from 0 to
/// [`MAX_ROTATION_GRACE`]. On failure, returns the typed value and the
/// message to show with it.
pub(super) fn read_grace_hours(form: &Form) -> Result<i64, (String, String)> {
    let typed = form.field("grace_hours").trim().to_owned();
    let max_hours = MAX_ROTATION_GRACE.whole_hours();
    match typed.parse::<i64>() {
        Ok(hours) if (0..=max_hours).contains(&hours) => Ok(hours),
        _ => {
            let message =
                format!("Grace period: enter a whole number of hours from 0 to {max_hours}.");
            Err((typed, message))
        }
    }
}

/// Handles `GET /dashboard/keys/{id}/revoke`: the confirmation page, which
/// names the key.
pub(super) async fn revoke_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, key) = match managed_key_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    revoke_page(&state, &session, &key, StatusCode::OK, String::new(), None).await
}

/// Handles `POST /dashboard/keys/{id}/revoke`: revokes the key at once.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form, key) = match checked_key_form(&state, &parts, body, &id).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let reason = form.field("reason").trim();
    if reason.chars().count() > portcullis_core::credential::MAX_LABEL_LEN {
        let message = format!(
            "Reason: shorten it to at most {} characters.",
            portcullis_core::credential::MAX_LABEL_LEN
        );
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return revoke_page(
            &state,
            &session,
            &key,
            status,
            reason.to_owned(),
            Some(message),
        )
        .await;
    }
    let audit = audit_context(&state, &parts, &session);
    let reason = (!reason.is_empty()).then_some(reason);
    match state.manager.revoke_key(key.id, reason, &audit).await {
        Ok(revoked) => {
            tracing::info!(
                key_id = %revoked.id,
                user_id = %session.user.id,
                "key revoked in the dashboard"
            );
            see_other_to(&format!("{KEYS}/{}", revoked.id))
        }
        Err(error) => manage_failure(&error),
    }
}

/// Finds key `id` of the session's tenant. A malformed id, an unknown key
/// and another tenant's key all get the same 404 page.
pub(super) async fn tenant_key(
    state: &AppState,
    session: &ActiveSession,
    id: &str,
) -> Result<ApiKeyRecord, Response> {
    let Some(id) = parse_key_id(id) else {
        return Err(not_found_page());
    };
    match state.store.find_key(id).await {
        Ok(Some(key)) if key.tenant_id == Some(session.user.tenant_id) => Ok(key),
        Ok(_) => Err(not_found_page()),
        Err(error) => Err(store_failure(&error)),
    }
}

/// Loads the session of a page about key `id` of the user's tenant, and
/// the key.
pub(super) async fn tenant_key_page(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(ActiveSession, ApiKeyRecord), Response> {
    let session = page_session(state, headers).await?;
    let key = tenant_key(state, &session, id).await?;
    Ok((session, key))
}

/// Loads the session of a page about key `id` that only a user who may
/// manage the key can open, and the key.
pub(super) async fn managed_key_page(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(ActiveSession, ApiKeyRecord), Response> {
    let session = page_session(state, headers).await?;
    let key = managed_key(state, &session, id).await?;
    Ok((session, key))
}

/// Reads a form about key `id`, checks its CSRF token first, then that the
/// key belongs to the user's tenant (404) and that the user may manage it
/// (403).
async fn checked_key_form(
    state: &AppState,
    parts: &Parts,
    body: axum::body::Body,
    id: &str,
) -> Result<(ActiveSession, Form, ApiKeyRecord), Response> {
    let (session, form) = checked_form(state, parts, body).await?;
    let key = managed_key(state, &session, id).await?;
    Ok((session, form, key))
}

/// Finds key `id` of the session's tenant and checks that the user may
/// rotate and revoke it.
async fn managed_key(
    state: &AppState,
    session: &ActiveSession,
    id: &str,
) -> Result<ApiKeyRecord, Response> {
    let key = tenant_key(state, session, id).await?;
    if !may_manage(&session.user, &key) {
        tracing::info!(
            key_id = %key.id,
            user_id = %session.user.id,
            role = %session.user.role,
            "dashboard key change rejected: role does not allow it"
        );
        return Err(role_forbidden());
    }
    Ok(key)
}

/// Builds the row of one key, with its requests of the last seven days.
async fn key_row(
    state: &AppState,
    session: &ActiveSession,
    key: &ApiKeyRecord,
) -> Result<KeyRow, Response> {
    let now = OffsetDateTime::now_utc();
    let user = &session.user;
    let since = day_start(now) - Duration::days(USAGE_LIST_DAYS - 1);
    let requests = match state.store.key_request_totals(user.tenant_id, since).await {
        Ok(totals) => totals
            .into_iter()
            .find(|(id, _)| *id == key.id)
            .map_or(0, |(_, requests)| requests),
        Err(error) => return Err(store_failure(&error)),
    };
    let users = match state.store.list_users(user.tenant_id).await {
        Ok(users) => user_emails(&users),
        Err(error) => return Err(store_failure(&error)),
    };
    Ok(KeyRow::new(
        key,
        &users,
        requests,
        may_manage(user, key),
        now,
    ))
}

/// The create form's values once checked.
struct CheckedKeyForm {
    name: String,
    scopes: ScopeSet,
    days: u32,
    environment: Environment,
}

/// Checks the create form against the operator's key policy. On failure,
/// returns the form to show again, with one message per invalid field.
fn check_key_form(state: &AppState, form: &Form) -> Result<CheckedKeyForm, KeyForm> {
    let policy = &state.key_policy;
    let mut errors = Vec::new();

    let name = form.field("name").trim().to_owned();
    if name.is_empty() {
        errors.push("Name: enter a name that says where the key is used.".to_owned());
    } else if name.chars().count() > portcullis_core::credential::MAX_LABEL_LEN {
        errors.push(format!(
            "Name: shorten it to at most {} characters.",
            portcullis_core::credential::MAX_LABEL_LEN
        ));
    } else if let Err(error) = portcullis_core::credential::check_name("key name", &name) {
        errors.push(format!("Name: {error}."));
    }

    let chosen: Vec<&str> = form.values_with_prefix("scope.").collect();
    let not_offered: Vec<&str> = chosen
        .iter()
        .copied()
        .filter(|scope| !policy.may_grant(scope))
        .collect();
    if chosen.is_empty() {
        errors.push("Scopes: choose at least one scope.".to_owned());
    } else if !not_offered.is_empty() {
        errors.push("Scopes: choose only scopes from the list.".to_owned());
    }
    let scopes = ScopeSet::parse_list(&chosen.join(" ")).ok();

    let typed_days = form.field("expires_in_days").trim().to_owned();
    let days = typed_days
        .parse::<u32>()
        .ok()
        .filter(|days| (1..=policy.expiry_max_days).contains(days));
    if days.is_none() {
        errors.push(format!(
            "Expires in: enter a whole number of days from 1 to {}.",
            policy.expiry_max_days
        ));
    }

    let environment = match form.field("environment") {
        "live" => Some(Environment::Live),
        "test" => Some(Environment::Test),
        _ => {
            errors.push("Environment: choose live or test.".to_owned());
            None
        }
    };

    match (scopes, days, environment) {
        (Some(scopes), Some(days), Some(environment)) if errors.is_empty() => Ok(CheckedKeyForm {
            name,
            scopes,
            days,
            environment,
        }),
        _ => Err(KeyForm {
            name,
            scopes: scope_choices(state, &chosen),
            expires_in_days: typed_days,
            max_days: policy.expiry_max_days,
            live: form.field("environment") != "test",
            errors,
        }),
    }
}

/// The grantable scopes as checkboxes, with `chosen` checked.
pub(super) fn scope_choices(state: &AppState, chosen: &[&str]) -> Vec<ScopeChoice> {
    state
        .key_policy
        .grantable
        .iter()
        .map(|scope| ScopeChoice {
            scope: scope.as_str().to_owned(),
            checked: chosen.contains(&scope.as_str()),
        })
        .collect()
}

fn new_key_page(
    state: &AppState,
    session: &ActiveSession,
    status: StatusCode,
    form: KeyForm,
    sent: Option<&CheckedToken>,
) -> Response {
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &NewKeyPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            submission_token: page_token(state, session, SubmissionForm::KeyCreate, "", sent),
            form,
        },
    )
}

/// Shows a new key's secret, this once. The security layer sets
/// `Cache-Control: no-store` on every page, and this page sets it itself
/// as well, so no later change to the layer can let a cache keep a secret.
async fn secret_page(
    state: &AppState,
    session: &ActiveSession,
    issued: &IssuedKey,
    heading: &str,
    note: Option<String>,
) -> Response {
    let row = match key_row(state, session, &issued.record).await {
        Ok(row) => row,
        // The key exists now, so its secret must still be shown.
        Err(_) => KeyRow::new(
            &issued.record,
            &HashMap::new(),
            0,
            true,
            OffsetDateTime::now_utc(),
        ),
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    let mut response = html(
        StatusCode::OK,
        &SecretPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            heading,
            key: row,
            secret: issued.secret.expose(),
            script: SCRIPT_PATH.as_str(),
            note,
        },
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn rotate_page(
    state: &AppState,
    session: &ActiveSession,
    key: &ApiKeyRecord,
    status: StatusCode,
    grace_hours: String,
    error: Option<String>,
    sent: Option<&CheckedToken>,
) -> Response {
    let row = match key_row(state, session, key).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &RotatePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            submission_token: page_token(
                state,
                session,
                SubmissionForm::KeyRotate,
                &key.id.to_string(),
                sent,
            ),
            key: row,
            grace_hours,
            max_grace_hours: MAX_ROTATION_GRACE.whole_hours(),
            error,
        },
    )
}

async fn revoke_page(
    state: &AppState,
    session: &ActiveSession,
    key: &ApiKeyRecord,
    status: StatusCode,
    reason: String,
    error: Option<String>,
) -> Response {
    let row = match key_row(state, session, key).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &RevokePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            key: row,
            reason,
            error,
        },
    )
}

/// The audit context of a change made by the signed-in user.
pub(super) fn audit_context(
    state: &AppState,
    parts: &Parts,
    session: &ActiveSession,
) -> AuditContext {
    AuditContext {
        actor: actor(&session.user),
        remote_addr: Some(client_ip(state, parts).to_string()),
        at: OffsetDateTime::now_utc(),
    }
}

/// Renders the 403 page of an action that the user's role does not allow.
pub(super) fn role_forbidden() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "Your role does not allow this change. Nothing was changed. Ask an admin of your \
         organization.",
    )
}

/// Renders the page of a failed key operation.
pub(super) fn manage_failure(error: &ManageError) -> Response {
    match error {
        ManageError::Conflict { message, .. } => {
            tracing::info!(error = %error, "dashboard key change rejected");
            let message = format!("{message}. Nothing was changed. Open the list again.");
            error_page(StatusCode::CONFLICT, "Change rejected", &message)
        }
        ManageError::NotFound(_) => not_found_page(),
        ManageError::Invalid { field, message } => {
            tracing::info!(field, error = %message, "dashboard key change rejected");
            let message =
                format!("The field {field} is invalid: {message}. Correct it and resend.");
            error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Change rejected",
                &message,
            )
        }
        ManageError::Store(_) | ManageError::Random => {
            tracing::error!(error = %ErrorChain(error), "dashboard key change failed");
            internal_error_page()
        }
    }
}
