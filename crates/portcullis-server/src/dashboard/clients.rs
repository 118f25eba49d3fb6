//! The tenant's OAuth clients: list, register, rotate the secret, revoke
//! and edit the redirect URIs.
//!
//! Every change goes through the [`crate::manage::Manager`] client
//! operations of the CLI and admin API, so it writes the same audit record
//! and change-feed row. A client of another tenant gets 404, exactly as a
//! client that does not exist, so ids of other tenants cannot be probed.
//! The register and rotate forms carry a one-time submission token
//! ([`super::submissions`]), so a form sent again makes no second client or
//! secret.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis_core::credential::MAX_LABEL_LEN;
use portcullis_core::ids::{ClientId, UserId};
use portcullis_core::oauth::{
    ClientAuthMethod, ClientRecord, GrantType, RedirectUri, TlsSubjectKind,
};
use portcullis_core::scope::ScopeSet;
use time::{Duration, OffsetDateTime};

use super::Form;
use super::account::{checked_form, page_session, store_failure};
use super::assets::SCRIPT_PATH;
use super::client_pages::{
    ClientForm, ClientPage, ClientRevokePage, ClientRotatePage, ClientRow, ClientSecretPage,
    ClientsPage, FieldErrors, NewClientPage, RedirectUrisPage, UriField, choices, grant_type_names,
    parse_client_id, uri_fields,
};
use super::key_pages::{format_time, user_emails};
use super::keys::{audit_context, manage_failure, read_grace_hours, role_forbidden, scope_choices};
use super::pages::{html, not_found_page, see_other_to, signed_in_layout};
use super::policy::{may_create, may_manage_client};
use super::submissions::{
    CheckedToken, SUBMISSION_FIELD, SubmissionForm, checked_token, claim, page_token,
};
use crate::app::AppState;
use crate::clients::ClientRequest;
use crate::manage::{MAX_ROTATION_GRACE, ManageError};
use crate::oauth::csrf::session_token;
use crate::oauth::session::ActiveSession;

const CLIENTS: &str = "/dashboard/clients";

/// Grace period that the rotation form proposes, in hours.
const DEFAULT_GRACE_HOURS: i64 = 24;

/// The authentication methods that the create form offers a confidential
/// client, the default first.
const CONFIDENTIAL_METHODS: [&str; 5] = [
    "client_secret_basic",
    "client_secret_post",
    "tls_client_auth",
    "private_key_jwt",
    "self_signed_tls_client_auth",
];

/// The subject choice of a `tls_client_auth` client that takes the
/// internal CA's certificates: the SAN URI that the CA writes.
const INTERNAL_CA_SUBJECT: &str = "internal_ca";

/// Handles `GET /dashboard/clients`: every client of the user's tenant.
pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let user = &session.user;
    let clients = match state.store.list_clients(user.tenant_id).await {
        Ok(clients) => clients,
        Err(error) => return store_failure(&error),
    };
    let users = match tenant_users(&state, &session).await {
        Ok(users) => users,
        Err(response) => return response,
    };
    let last_use_days = match last_use_days(&state).await {
        Ok(days) => days,
        Err(response) => return response,
    };
    let rows = clients
        .iter()
        .map(|client| {
            let last_use_day = last_use_days.get(&client.id).copied();
            ClientRow::new(
                client,
                &users,
                last_use_day,
                may_manage_client(user, client),
            )
        })
        .collect();
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &ClientsPage {
            layout: signed_in_layout(&session.user),
            email: user.email.as_str(),
            tenant: user.tenant.as_str(),
            csrf_token: &csrf_token,
            clients: rows,
            may_create: may_create(user),
        },
    )
}

/// Handles `GET /dashboard/clients/{id}`: one client and its actions.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let client = match tenant_client(&state, &session, &id).await {
        Ok(client) => client,
        Err(response) => return response,
    };
    let row = match client_row(&state, &session, &client).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &ClientPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            client: row,
        },
    )
}

/// Handles `GET /dashboard/clients/new`: the registration form, for admins
/// and developers.
pub(super) async fn new_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if !may_create(&session.user) {
        return role_forbidden();
    }
    let form = ClientForm {
        name: String::new(),
        public: false,
        grant_types: choices(&grant_type_names(), &["client_credentials"]),
        scopes: scope_choices(&state, &[]),
        auth_methods: choices(&CONFIDENTIAL_METHODS, &["client_secret_basic"]),
        tls_subject_kinds: tls_subject_choices(INTERNAL_CA_SUBJECT),
        tls_subject_value: String::new(),
        jwks: String::new(),
        redirect_uris: uri_fields(&[]),
        errors: FieldErrors::default(),
    };
    new_client_page(&state, &session, StatusCode::OK, form, None)
}

/// Handles `POST /dashboard/clients`: checks the form and registers the
/// client, or shows the form again with a message next to each invalid
/// field and the values as typed.
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
    let form_kind = SubmissionForm::ClientCreate;
    let token = match checked_token(&state, &session, form_kind, "", submitted) {
        Ok(token) => token,
        Err(rejection) => return rejection.page(),
    };
    let (request, mut shown) = read_client_form(&state, &session, &form);
    let Some(request) = request else {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return new_client_page(&state, &session, status, shown, Some(&token));
    };
    let claim = match claim(&state, &session, form_kind, token).await {
        Ok(claim) => claim,
        Err(response) => return response,
    };
    let audit = audit_context(&state, &parts, &session);
    match state.manager.create_client(request, &audit).await {
        Ok(issued) => {
            tracing::info!(
                client_id = %issued.record.id,
                user_id = %session.user.id,
                "client registered in the dashboard"
            );
            claim.finish(&state, &issued.record.id.to_string()).await;
            match &issued.secret {
                Some(secret) => {
                    let heading = "Client registered";
                    secret_page(
                        &state,
                        &session,
                        &issued.record,
                        secret.expose(),
                        heading,
                        None,
                    )
                    .await
                }
                None => see_other_to(&format!("{CLIENTS}/{}", issued.record.id)),
            }
        }
        Err(ManageError::Invalid { field, message }) => {
            tracing::info!(field, error = %message, "dashboard client registration rejected");
            let sent = claim.release(&state).await;
            let (name, label) = form_field(field);
            shown.errors.add(name, format!("{label}: {message}."));
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            new_client_page(&state, &session, status, shown, sent.as_ref())
        }
        Err(error) => {
            claim.release(&state).await;
            manage_failure(&error)
        }
    }
}

/// Handles `GET /dashboard/clients/{id}/rotate`: the secret rotation form.
pub(super) async fn rotate_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, client) = match managed_client_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let grace = DEFAULT_GRACE_HOURS.to_string();
    rotate_page(&state, &session, &client, StatusCode::OK, grace, None, None).await
}

/// Handles `POST /dashboard/clients/{id}/rotate`: gives the client a new
/// secret and shows it once. The older secrets keep working for the chosen
/// grace period, as with `clients rotate-secret --grace`.
pub(super) async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form, client) = match checked_client_form(&state, &parts, body, &id).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let subject = client.id.to_string();
    let submitted = form.field(SUBMISSION_FIELD);
    let form_kind = SubmissionForm::ClientRotate;
    let token = match checked_token(&state, &session, form_kind, &subject, submitted) {
        Ok(token) => token,
        Err(rejection) => return rejection.page(),
    };
    let hours = match read_grace_hours(&form) {
        Ok(hours) => hours,
        Err((typed, message)) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let sent = Some(&token);
            return rotate_page(
                &state,
                &session,
                &client,
                status,
                typed,
                Some(message),
                sent,
            )
            .await;
        }
    };
    let claim = match claim(&state, &session, form_kind, token).await {
        Ok(claim) => claim,
        Err(response) => return response,
    };
    let audit = audit_context(&state, &parts, &session);
    let grace = Duration::hours(hours);
    match state.manager.rotate_secret(client.id, grace, &audit).await {
        Ok((client, secret)) => {
            tracing::info!(
                client_id = %client.id,
                user_id = %session.user.id,
                "client secret rotated in the dashboard"
            );
            claim.finish(&state, &subject).await;
            let note = format!(
                "The previous secret keeps working for {hours} hours, until {}.",
                format_time(audit.at + grace)
            );
            let heading = "Client secret rotated";
            secret_page(
                &state,
                &session,
                &client,
                secret.expose(),
                heading,
                Some(note),
            )
            .await
        }
        Err(error) => {
            claim.release(&state).await;
            manage_failure(&error)
        }
    }
}

/// Handles `GET /dashboard/clients/{id}/revoke`: the confirmation page,
/// which names the client.
pub(super) async fn revoke_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, client) = match managed_client_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    revoke_page(
        &state,
        &session,
        &client,
        StatusCode::OK,
        String::new(),
        None,
    )
    .await
}

/// Handles `POST /dashboard/clients/{id}/revoke`: revokes the client and
/// every token issued to it at once.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form, client) = match checked_client_form(&state, &parts, body, &id).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let reason = form.field("reason").trim().to_owned();
    if reason.chars().count() > MAX_LABEL_LEN {
        let message = format!("Reason: shorten it to at most {MAX_LABEL_LEN} characters.");
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return revoke_page(&state, &session, &client, status, reason, Some(message)).await;
    }
    let audit = audit_context(&state, &parts, &session);
    let given = (!reason.is_empty()).then_some(reason.as_str());
    match state.manager.revoke_client(client.id, given, &audit).await {
        Ok(revoked) => {
            tracing::info!(
                client_id = %revoked.id,
                user_id = %session.user.id,
                "client revoked in the dashboard"
            );
            see_other_to(&format!("{CLIENTS}/{}", revoked.id))
        }
        Err(ManageError::Invalid { message, .. }) => {
            let message = format!("Reason: {message}.");
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            revoke_page(&state, &session, &client, status, reason, Some(message)).await
        }
        Err(error) => manage_failure(&error),
    }
}

/// Handles `GET /dashboard/clients/{id}/redirect-uris`: the form that
/// replaces the client's redirect URIs.
pub(super) async fn redirect_uris_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, client) = match managed_client_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let registered: Vec<String> = client
        .redirect_uris
        .iter()
        .map(|uri| uri.as_str().to_owned())
        .collect();
    let fields = uri_fields(&registered);
    redirect_uris_page(&state, &session, &client, StatusCode::OK, fields, None).await
}

/// Handles `POST /dashboard/clients/{id}/redirect-uris`: checks every URI
/// with the registration rules and replaces the list, or shows the form
/// again with a message next to each rejected URI.
pub(super) async fn update_redirect_uris(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form, client) = match checked_client_form(&state, &parts, body, &id).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let (uris, fields) = read_uri_fields(&form);
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    if fields.iter().any(|field| field.error.is_some()) {
        return redirect_uris_page(&state, &session, &client, status, fields, None).await;
    }
    let audit = audit_context(&state, &parts, &session);
    match state
        .manager
        .update_redirect_uris(client.id, &uris, &audit)
        .await
    {
        Ok(updated) => {
            tracing::info!(
                client_id = %updated.id,
                user_id = %session.user.id,
                "client redirect URIs changed in the dashboard"
            );
            see_other_to(&format!("{CLIENTS}/{}", updated.id))
        }
        Err(ManageError::Invalid { message, .. }) => {
            let message = Some(format!("Redirect URIs: {message}."));
            redirect_uris_page(&state, &session, &client, status, fields, message).await
        }
        Err(error) => manage_failure(&error),
    }
}

/// Finds client `id` of the session's tenant. A malformed id, an unknown
/// client and another tenant's client all get the same 404 page.
pub(super) async fn tenant_client(
    state: &AppState,
    session: &ActiveSession,
    id: &str,
) -> Result<ClientRecord, Response> {
    let Some(id) = parse_client_id(id) else {
        return Err(not_found_page());
    };
    match state.store.find_client(id).await {
        Ok(Some(client)) if client.tenant_id == session.user.tenant_id => Ok(client),
        Ok(_) => Err(not_found_page()),
        Err(error) => Err(store_failure(&error)),
    }
}

/// Finds client `id` of the session's tenant and checks that the user may
/// change it (403 otherwise).
pub(super) async fn managed_client(
    state: &AppState,
    session: &ActiveSession,
    id: &str,
) -> Result<ClientRecord, Response> {
    let client = tenant_client(state, session, id).await?;
    if !may_manage_client(&session.user, &client) {
        tracing::info!(
            client_id = %client.id,
            user_id = %session.user.id,
            role = %session.user.role,
            "dashboard client change rejected: role does not allow it"
        );
        return Err(role_forbidden());
    }
    Ok(client)
}

/// Loads the session of a page about client `id` that only a user who may
/// change the client can open, and the client.
async fn managed_client_page(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(ActiveSession, ClientRecord), Response> {
    let session = page_session(state, headers).await?;
    let client = managed_client(state, &session, id).await?;
    Ok((session, client))
}

/// Reads a form about client `id`, checks its CSRF token first, then that
/// the client belongs to the user's tenant (404) and that the user may
/// change it (403).
async fn checked_client_form(
    state: &AppState,
    parts: &Parts,
    body: axum::body::Body,
    id: &str,
) -> Result<(ActiveSession, Form, ClientRecord), Response> {
    let (session, form) = checked_form(state, parts, body).await?;
    let client = managed_client(state, &session, id).await?;
    Ok((session, form, client))
}

/// Names the tenant's users by id, for the "created by" column.
pub(super) async fn tenant_users(
    state: &AppState,
    session: &ActiveSession,
) -> Result<HashMap<UserId, String>, Response> {
    match state.store.list_users(session.user.tenant_id).await {
        Ok(users) => Ok(user_emails(&users)),
        Err(error) => Err(store_failure(&error)),
    }
}

/// Returns the start of the latest day with a recorded request, per client.
async fn last_use_days(state: &AppState) -> Result<HashMap<ClientId, OffsetDateTime>, Response> {
    match state.store.client_last_use_days().await {
        Ok(days) => Ok(days.into_iter().collect()),
        Err(error) => Err(store_failure(&error)),
    }
}

async fn client_row(
    state: &AppState,
    session: &ActiveSession,
    client: &ClientRecord,
) -> Result<ClientRow, Response> {
    let users = tenant_users(state, session).await?;
    let last_use_day = last_use_days(state).await?.get(&client.id).copied();
    let manageable = may_manage_client(&session.user, client);
    Ok(ClientRow::new(client, &users, last_use_day, manageable))
}

/// Reads the registration form. Returns the request when every field
/// passed the dashboard's checks, and always the form to show again, with
/// one message per invalid field. The manager checks the request again
/// with the rules that the CLI and admin API share.
fn read_client_form(
    state: &AppState,
    session: &ActiveSession,
    form: &Form,
) -> (Option<ClientRequest>, ClientForm) {
    let mut errors = FieldErrors::default();

    let name = form.field("name").trim().to_owned();
    if name.is_empty() {
        errors.add(
            "name",
            "Name: enter the name that users see on the consent page.".to_owned(),
        );
    }

    let public = form.field("client_type") == "public";
    if !matches!(form.field("client_type"), "public" | "confidential") {
        errors.add(
            "client_type",
            "Client type: choose confidential or public.".to_owned(),
        );
    }

    let chosen_grants: Vec<&str> = form.values_with_prefix("grant_type.").collect();
    let grant_types: Vec<GrantType> = chosen_grants
        .iter()
        .filter_map(|grant| grant.parse().ok())
        .collect();
    if grant_types.is_empty() || grant_types.len() != chosen_grants.len() {
        errors.add(
            "grant_types",
            "Grant types: choose at least one grant type from the list.".to_owned(),
        );
    }

    let chosen_scopes: Vec<&str> = form.values_with_prefix("scope.").collect();
    if chosen_scopes.is_empty() {
        errors.add("scopes", "Scopes: choose at least one scope.".to_owned());
    } else if !chosen_scopes
        .iter()
        .all(|scope| state.key_policy.may_grant(scope))
    {
        errors.add(
            "scopes",
            "Scopes: choose only scopes from the list.".to_owned(),
        );
    }
    let scopes = ScopeSet::parse_list(&chosen_scopes.join(" ")).ok();

    let typed_method = form.field("auth_method");
    let auth_method = if public {
        Some(ClientAuthMethod::None)
    } else if CONFIDENTIAL_METHODS.contains(&typed_method) {
        typed_method.parse().ok()
    } else {
        None
    };
    if auth_method.is_none() {
        errors.add(
            "auth_method",
            "Authentication method: choose one from the list.".to_owned(),
        );
    }

    let subject_kind = form.field("tls_subject_kind");
    let subject_value = form.field("tls_subject_value").trim().to_owned();
    let mut tls_subjects = Vec::new();
    if auth_method == Some(ClientAuthMethod::TlsClientAuth) && subject_kind != INTERNAL_CA_SUBJECT {
        match subject_kind.parse::<TlsSubjectKind>() {
            Ok(kind) if !subject_value.is_empty() => {
                tls_subjects.push((kind, subject_value.clone()))
            }
            Ok(_) => errors.add(
                "tls_subject",
                "Certificate subject: enter the value that the client's certificate carries."
                    .to_owned(),
            ),
            Err(_) => errors.add(
                "tls_subject",
                "Certificate subject: choose a kind from the list.".to_owned(),
            ),
        }
    }

    let jwks = form.field("jwks").trim().to_owned();
    let uses_jwks = matches!(
        auth_method,
        Some(ClientAuthMethod::PrivateKeyJwt | ClientAuthMethod::SelfSignedTlsClientAuth)
    );

    let (uris, redirect_uris) = read_uri_fields(form);
    for (index, field) in redirect_uris.iter().enumerate() {
        if let Some(message) = &field.error {
            errors.add(&format!("redirect_uri.{index}"), message.clone());
        }
    }

    let shown = ClientForm {
        name: name.clone(),
        public,
        grant_types: choices(&grant_type_names(), &chosen_grants),
        scopes: scope_choices(state, &chosen_scopes),
        auth_methods: choices(&CONFIDENTIAL_METHODS, &[typed_method]),
        tls_subject_kinds: tls_subject_choices(subject_kind),
        tls_subject_value: subject_value,
        jwks: jwks.clone(),
        redirect_uris,
        errors,
    };
    let request = match (scopes, auth_method) {
        (Some(scopes), Some(auth_method)) if shown.errors.is_empty() => Some(ClientRequest {
            tenant: session.user.tenant.to_string(),
            name,
            grant_types,
            scopes,
            redirect_uris: uris,
            public,
            auth_method: Some(auth_method),
            jwks: (uses_jwks || !jwks.is_empty()).then_some(jwks),
            tls_subjects,
            access_token_ttl: None,
            limits: Default::default(),
        }),
        _ => None,
    };
    (request, shown)
}

/// Reads the redirect URI fields `redirect_uri.N` in form order, skipping
/// blank ones, and checks each with [`RedirectUri::parse`], the check of
/// registration. Returns the URIs and the fields to show again, a message
/// next to each rejected one.
fn read_uri_fields(form: &Form) -> (Vec<String>, Vec<UriField>) {
    let mut uris = Vec::new();
    let mut fields = Vec::new();
    for typed in form.values_with_prefix("redirect_uri.") {
        // A URI has no white space, so what surrounds it is a paste error.
        let typed = typed.trim();
        if typed.is_empty() {
            continue;
        }
        let error = RedirectUri::parse(typed)
            .err()
            .map(|error| format!("Redirect URI {typed}: {error}."));
        uris.push(typed.to_owned());
        fields.push(UriField {
            value: typed.to_owned(),
            error,
        });
    }
    let blanks = uri_fields(&[]);
    fields.extend(blanks);
    (uris, fields)
}

/// Maps a field that a manager error names to the form's field and its
/// label.
fn form_field(field: &str) -> (&'static str, &'static str) {
    match field {
        "name" => ("name", "Name"),
        "grant_types" => ("grant_types", "Grant types"),
        "scopes" => ("scopes", "Scopes"),
        "auth_method" => ("auth_method", "Authentication method"),
        "redirect_uris" => ("redirect_uris", "Redirect URIs"),
        "jwks" => ("jwks", "JWKS"),
        subject if subject.starts_with("tls_client_auth") => ("tls_subject", "Certificate subject"),
        _ => ("form", "Client"),
    }
}

/// Lists the subject kinds of a `tls_client_auth` client, with `selected`
/// selected: the internal CA's SAN URI first, then the RFC 8705 §2.1.2 members.
fn tls_subject_choices(selected: &str) -> Vec<super::client_pages::Choice> {
    let mut all = vec![INTERNAL_CA_SUBJECT];
    all.extend(TlsSubjectKind::ALL.iter().map(|kind| kind.as_str()));
    let selected = if all.contains(&selected) {
        selected
    } else {
        INTERNAL_CA_SUBJECT
    };
    choices(&all, &[selected])
}

fn new_client_page(
    state: &AppState,
    session: &ActiveSession,
    status: StatusCode,
    mut form: ClientForm,
    sent: Option<&CheckedToken>,
) -> Response {
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    let redirect_uris = std::mem::take(&mut form.redirect_uris);
    html(
        status,
        &NewClientPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            submission_token: page_token(state, session, SubmissionForm::ClientCreate, "", sent),
            form,
            redirect_uris,
        },
    )
}

/// Shows a new client secret, this once, with `Cache-Control: no-store`
/// set here as well as by the security layer, as the key secret page does.
async fn secret_page(
    state: &AppState,
    session: &ActiveSession,
    client: &ClientRecord,
    secret: &str,
    heading: &str,
    note: Option<String>,
) -> Response {
    let row = match client_row(state, session, client).await {
        Ok(row) => row,
        // The secret is stored now, so it must still be shown.
        Err(_) => ClientRow::new(client, &HashMap::new(), None, true),
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    let mut response = html(
        StatusCode::OK,
        &ClientSecretPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            heading,
            client: row,
            secret,
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
    client: &ClientRecord,
    status: StatusCode,
    grace_hours: String,
    error: Option<String>,
    sent: Option<&CheckedToken>,
) -> Response {
    let row = match client_row(state, session, client).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &ClientRotatePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            submission_token: page_token(
                state,
                session,
                SubmissionForm::ClientRotate,
                &client.id.to_string(),
                sent,
            ),
            client: row,
            grace_hours,
            max_grace_hours: MAX_ROTATION_GRACE.whole_hours(),
            error,
        },
    )
}

async fn revoke_page(
    state: &AppState,
    session: &ActiveSession,
    client: &ClientRecord,
    status: StatusCode,
    reason: String,
    error: Option<String>,
) -> Response {
    let row = match client_row(state, session, client).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &ClientRevokePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            client: row,
            reason,
            error,
        },
    )
}

async fn redirect_uris_page(
    state: &AppState,
    session: &ActiveSession,
    client: &ClientRecord,
    status: StatusCode,
    redirect_uris: Vec<UriField>,
    error: Option<String>,
) -> Response {
    let row = match client_row(state, session, client).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &RedirectUrisPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            client: row,
            rejected: redirect_uris.iter().any(|field| field.error.is_some()),
            redirect_uris,
            error,
        },
    )
}
