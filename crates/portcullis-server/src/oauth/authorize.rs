//! `/oauth/authorize`: the authorization endpoint of the code grant
//! (RFC 6749 §4.1), with sign-in, consent and PKCE (RFC 7636).
//!
//! A `GET` carries the client's authorization request. Once the client and
//! redirect URI are valid, the endpoint shows the sign-in form unless the
//! browser has a session for a user of the client's tenant. It then shows
//! the consent page, unless the user's remembered consent covers the
//! requested scopes. Finally it redirects to the client with a code, the
//! `state` and the `iss` parameter (RFC 9207). The forms `POST` back to the same path,
//! carrying the authorization parameters as hidden fields, and every `POST`
//! checks them again.
//!
//! - [`request`]: parsing and checking the authorization request.
//! - [`pages`]: the HTML pages, their headers and the redirects.

mod pages;
mod request;

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::MethodRouter;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use portcullis_core::ids::TokenFamilyId;
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::{AuthorizationCodeRecord, ConsentRecord, UserRecord};
use portcullis_store::{AuditAction, AuditEvent, StoreError};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use self::pages::{
    ConsentPage, LoginPage, describe_scopes, error_page, forbidden_page, html, redirect, with_query,
};
pub(crate) use self::pages::{set_cookie, too_many_attempts};
pub(crate) use self::request::parse_pairs;
use self::request::{
    AuthorizationRequest, RedirectError, RequestError, authorization_parameters, check_request,
};
use super::csrf::{
    check_session_token, check_sign_in_token, cross_origin_layer, issuer_origin, session_token,
    sign_in_token,
};
use super::session::{ActiveSession, load_session, start_session};
use crate::app::AppState;
use crate::body::is_form_urlencoded;
use crate::sign_in::{
    SIGN_IN_FAILED, SignInAttempt, SignInOutcome, append_audit, audit_event, check_credentials,
    client_ip, describe_wait, record_sign_in,
};
use crate::telemetry::ErrorChain;

/// How long an authorization code is valid. RFC 6749 §4.1.2 recommends a
/// maximum lifetime of 10 minutes, and RFC 9700 advises short-lived codes.
/// A client redeems its code within seconds of the redirect, so one minute
/// is ample.
pub const CODE_LIFETIME: time::Duration = time::Duration::seconds(60);

/// Largest accepted form body, in bytes. The forms carry the authorization
/// parameters, an e-mail address and a password, far below this.
pub const MAX_FORM_LEN: usize = 64 * 1024;

/// Puts the method router of `/oauth/authorize` behind the cross-origin
/// check for `POST`s.
pub fn protect_forms(
    state: &AppState,
    method_router: MethodRouter<AppState>,
) -> MethodRouter<AppState> {
    let issuer_origin = issuer_origin(&state.oauth.issuer);
    method_router.layer::<_, std::convert::Infallible>(cross_origin_layer(
        issuer_origin.as_deref(),
        reject_cross_origin,
    ))
}

/// Handles `GET /oauth/authorize`: the client's authorization request.
#[utoipa::path(
    get,
    path = "/oauth/authorize",
    tag = "oauth",
    summary = "Start an authorization code grant (RFC 6749 §4.1.1)",
    description = "A browser flow: the user signs in and consents on HTML pages, then the \
                   browser is redirected to the client with `code`, `state` and `iss` \
                   (RFC 9207), or with `error` (RFC 6749 §4.1.2.1). Each parameter may appear \
                   once.",
    params(
        ("response_type" = String, Query, description = "`code`"),
        ("client_id" = String, Query, format = Uuid, description = "A registered client"),
        ("redirect_uri" = Option<String>, Query, description = "One of the client's registered redirect URIs, compared exactly; optional when it has only one"),
        ("scope" = Option<String>, Query, description = "Space-separated scopes within the client's"),
        ("state" = Option<String>, Query, description = "Returned unchanged in the redirect"),
        ("code_challenge" = String, Query, description = "The PKCE challenge (RFC 7636 §4.2)"),
        ("code_challenge_method" = String, Query, description = "`S256`"),
        ("resource" = Option<String>, Query, description = "The API the token is for (RFC 8707)"),
    ),
    responses(
        (status = 200, description = "The sign-in or consent page", content_type = "text/html", body = String),
        (status = 302, description = "To the client's redirect URI, with a code or an error"),
        (status = 400, description = "An error page: the client or redirect URI is missing or invalid, or a parameter is repeated", content_type = "text/html", body = String),
        (status = 500, description = "An error page", content_type = "text/html", body = String),
        (status = 503, description = "An error page: the store cannot be reached", content_type = "text/html", body = String),
    ),
)]
pub async fn authorize_get(State(state): State<AppState>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default();
    let pairs = match parse_pairs(query.as_bytes()) {
        Ok(pairs) => pairs,
        Err(error) => return repeated_parameter_page(&error.0),
    };
    let authorization = match check_request(
        &state.store,
        &state.routes.audiences(),
        authorization_parameters(&pairs),
    )
    .await
    {
        Ok(authorization) => authorization,
        Err(error) => {
            return request_error_response(error, StatusCode::FOUND, &state.oauth.issuer);
        }
    };

    let now = OffsetDateTime::now_utc();
    let headers = request.headers();
    let session = match load_session(&state.store, state.manager.pepper(), headers, now).await {
        Ok(session) => session,
        Err(error) => return store_failure(&error),
    };
    match session.filter(|session| session.user.tenant_id == authorization.client.tenant_id) {
        Some(session) => continue_signed_in(&state, &authorization, &session, now).await,
        None => login_form(headers, &authorization, "", None),
    }
}

/// Handles `POST /oauth/authorize`: the sign-in form (`action=sign_in`) and
/// the consent form (`action=approve` or `action=deny`).
#[utoipa::path(
    post,
    path = "/oauth/authorize",
    tag = "oauth",
    summary = "Submit the sign-in or consent form",
    description = "Sent by the pages of `GET /oauth/authorize` from the issuer's origin, with \
                   the authorization parameters as hidden fields and a CSRF token. Not meant \
                   for clients to call.",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`action` is `sign_in`, `approve` or `deny`"),
    responses(
        (status = 200, description = "The consent page, or the sign-in page again after a failed sign-in", content_type = "text/html", body = String),
        (status = 303, description = "To the client's redirect URI, with a code or `access_denied`"),
        (status = 400, description = "An error page: the form is incomplete or its parameters are invalid", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the form was sent from another origin, or its CSRF token is invalid", content_type = "text/html", body = String),
        (status = 413, description = "An error page: the form is larger than 64 KiB", content_type = "text/html", body = String),
        (status = 415, description = "An error page: the body is not a form", content_type = "text/html", body = String),
        (status = 429, description = "The sign-in page: too many failed sign-ins; see Retry-After", content_type = "text/html", body = String),
        (status = 500, description = "An error page", content_type = "text/html", body = String),
        (status = 503, description = "An error page: the store cannot be reached", content_type = "text/html", body = String),
    ),
)]
pub async fn authorize_post(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !is_form_urlencoded(&parts.headers) {
        return error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The form was not sent as a form. Go back to the application and start again.",
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_LEN).await else {
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large. Go back to the application and start again.",
        );
    };
    let pairs = match parse_pairs(&bytes) {
        Ok(pairs) => pairs,
        Err(error) => return repeated_parameter_page(&error.0),
    };
    let form = Form(&pairs);
    match form.field("action") {
        Some("sign_in") => sign_in_form(&state, &parts, form).await,
        Some("approve") => consent_form(&state, &parts, form, Decision::Allow).await,
        Some("deny") => consent_form(&state, &parts, form, Decision::Deny).await,
        _ => error_page(
            StatusCode::BAD_REQUEST,
            "The form is incomplete. Go back to the application and start again.",
        ),
    }
}

/// The user's decision on the consent page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Allow,
    Deny,
}

/// Handles the sign-in form: checks its double-submit CSRF token, then the
/// authorization request, then the credentials.
async fn sign_in_form(state: &AppState, parts: &Parts, form: Form<'_>) -> Response {
    let submitted_token = form.field("csrf_token").unwrap_or_default();
    if !check_sign_in_token(&parts.headers, submitted_token) {
        tracing::info!("sign-in form rejected: CSRF token missing or wrong");
        return forbidden_page();
    }
    let authorization = match checked(state, form).await {
        Ok(authorization) => authorization,
        Err(response) => return response,
    };
    sign_in(state, parts, &authorization, form).await
}

/// Handles the consent form: checks its session-bound CSRF token, then the
/// authorization request, then carries out the user's `decision`.
async fn consent_form(
    state: &AppState,
    parts: &Parts,
    form: Form<'_>,
    decision: Decision,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let pepper = state.manager.pepper();
    let session = match load_session(&state.store, pepper, &parts.headers, now).await {
        Ok(session) => session,
        Err(error) => return store_failure(&error),
    };
    let submitted_token = form.field("csrf_token").unwrap_or_default();
    if let Some(session) = &session
        && !check_session_token(pepper, &session.id, submitted_token)
    {
        tracing::info!("consent form rejected: CSRF token missing or wrong");
        return forbidden_page();
    }
    let authorization = match checked(state, form).await {
        Ok(authorization) => authorization,
        Err(response) => return response,
    };

    // Without a session for the client's tenant (it expired while the page
    // was open) nothing changes: the user signs in again.
    let Some(session) =
        session.filter(|session| session.user.tenant_id == authorization.client.tenant_id)
    else {
        return login_form(&parts.headers, &authorization, "", None);
    };
    match decision {
        Decision::Allow => approve(state, parts, &authorization, &session.user, now).await,
        Decision::Deny => {
            tracing::info!(
                client_id = %authorization.client.id,
                user_id = %session.user.id,
                "user denied consent"
            );
            let denied = RedirectError {
                redirect_uri: authorization.redirect_uri.clone(),
                state: authorization.state.clone(),
                error: "access_denied",
                description: "the user denied the request".to_owned(),
            };
            redirect_error(&denied, StatusCode::SEE_OTHER, &state.oauth.issuer)
        }
    }
}

/// The fields of a submitted form.
#[derive(Clone, Copy)]
struct Form<'a>(&'a [(String, String)]);

impl<'a> Form<'a> {
    fn field(self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Checks the authorization parameters of a form. A failure is already
/// the response, with 303 for redirects since the request was a POST.
async fn checked(state: &AppState, form: Form<'_>) -> Result<AuthorizationRequest, Response> {
    check_request(
        &state.store,
        &state.routes.audiences(),
        authorization_parameters(form.0),
    )
    .await
    .map_err(|error| request_error_response(error, StatusCode::SEE_OTHER, &state.oauth.issuer))
}

/// Checks the sign-in form's credentials against the client's tenant and,
/// when they are right, starts a session and sends the browser back to the
/// authorization request.
async fn sign_in(
    state: &AppState,
    parts: &Parts,
    authorization: &AuthorizationRequest,
    form: Form<'_>,
) -> Response {
    let typed_email = form.field("email").unwrap_or_default();
    let attempt = SignInAttempt::new(typed_email, client_ip(state, parts));
    let password = SecretString::from(form.field("password").unwrap_or_default().to_owned());
    let tenant_id = authorization.client.tenant_id;
    let started = Instant::now();
    let outcome = check_credentials(
        state,
        Some(tenant_id),
        &tenant_id.to_string(),
        &attempt,
        &password,
    )
    .await;
    record_sign_in(parts, &outcome, started);
    match outcome {
        Ok(SignInOutcome::SignedIn(user)) => {
            start_signed_in(state, parts, authorization, &attempt, &user).await
        }
        Ok(SignInOutcome::Rejected) => reject_sign_in(state, parts, authorization, &attempt).await,
        Ok(SignInOutcome::Throttled(retry_after)) => {
            let wait = Duration::from_secs(retry_after);
            let message = format!(
                "Too many failed sign-ins. Try again in {}.",
                describe_wait(wait)
            );
            let page = login_form(
                &parts.headers,
                authorization,
                &attempt.typed_email,
                Some(message),
            );
            too_many_attempts(page, retry_after)
        }
        Err(error) => store_failure(&error),
    }
}

/// Logs and audits a failed sign-in and shows the form again with the one
/// message for every failure.
async fn reject_sign_in(
    state: &AppState,
    parts: &Parts,
    authorization: &AuthorizationRequest,
    attempt: &SignInAttempt,
) -> Response {
    tracing::info!(
        email = ?attempt.typed_email,
        client_id = %authorization.client.id,
        client_ip = %attempt.client_ip,
        "sign-in failed"
    );
    let event = AuditEvent {
        actor: "anonymous".to_owned(),
        details: json!({
            "email": attempt.typed_email,
            "client_id": authorization.client.id.to_string(),
        }),
        ..audit_event(
            AuditAction::UserSignInFailed,
            authorization.client.tenant_id,
            attempt.client_ip,
            OffsetDateTime::now_utc(),
        )
    };
    append_audit(state, event).await;
    let error = Some(SIGN_IN_FAILED.to_owned());
    login_form(&parts.headers, authorization, &attempt.typed_email, error)
}

/// Starts a session for `user`, audits the sign-in and sends the browser
/// back to the authorization request.
async fn start_signed_in(
    state: &AppState,
    parts: &Parts,
    authorization: &AuthorizationRequest,
    attempt: &SignInAttempt,
    user: &UserRecord,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let pepper = state.manager.pepper();
    let session = match start_session(&state.store, pepper, &parts.headers, user, now).await {
        Ok(session) => session,
        Err(error) => {
            tracing::error!(error = %ErrorChain(&error), "starting a sign-in session failed");
            return internal_error_page();
        }
    };
    tracing::info!(
        user_id = %user.id,
        client_id = %authorization.client.id,
        client_ip = %attempt.client_ip,
        "user signed in"
    );
    let event = AuditEvent {
        actor: format!("user:{}", user.id),
        target: Some(user.id.to_string()),
        details: json!({ "client_id": authorization.client.id.to_string() }),
        ..audit_event(
            AuditAction::UserSignedIn,
            authorization.client.tenant_id,
            attempt.client_ip,
            now,
        )
    };
    append_audit(state, event).await;

    // Back to the authorization request with a GET, which now finds the
    // session and shows the consent page or issues the code.
    let parameters: Vec<(&str, &str)> = authorization
        .parameters
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let location = with_query("/oauth/authorize", &parameters);
    let response = redirect(StatusCode::SEE_OTHER, &location);
    set_cookie(response, &session.set_cookie())
}

/// Issues the code when the user's remembered consent covers the request,
/// or else shows the consent page.
async fn continue_signed_in(
    state: &AppState,
    authorization: &AuthorizationRequest,
    session: &ActiveSession,
    now: OffsetDateTime,
) -> Response {
    let user = &session.user;
    let consent = match state
        .store
        .find_consent(user.id, authorization.client.id)
        .await
    {
        Ok(consent) => consent,
        Err(error) => return store_failure(&error),
    };
    if consent.is_some_and(|consent| consent.covers(&authorization.scopes)) {
        return issue_code(state, authorization, user, StatusCode::FOUND, now).await;
    }
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &ConsentPage {
            brand: pages::BRAND,
            client_name: &authorization.client.name,
            tenant: authorization.client.tenant.as_str(),
            email: user.email.as_str(),
            scopes: describe_scopes(&authorization.scopes),
            csrf_token: &csrf_token,
            request: &authorization.parameters,
        },
    )
}

/// Stores the user's consent, widened by any earlier one, and issues the
/// code.
async fn approve(
    state: &AppState,
    parts: &Parts,
    authorization: &AuthorizationRequest,
    user: &UserRecord,
    now: OffsetDateTime,
) -> Response {
    let client_id = authorization.client.id;
    let earlier = match state.store.find_consent(user.id, client_id).await {
        Ok(earlier) => earlier,
        Err(error) => return store_failure(&error),
    };
    let mut scopes: Vec<_> = authorization.scopes.iter().cloned().collect();
    if let Some(earlier) = earlier {
        scopes.extend(earlier.scopes.iter().cloned());
    }
    let Ok(scopes) = scopes.try_into() else {
        // The union of two scope sets of one client is within the client's
        // scopes, which fit in a scope set.
        tracing::error!(client_id = %client_id, "consented scopes exceed the scope limit");
        return internal_error_page();
    };
    let consent = ConsentRecord {
        user_id: user.id,
        client_id,
        scopes,
        granted_at: now,
    };
    if let Err(error) = state.store.grant_consent(&consent).await {
        return store_failure(&error);
    }
    let event = AuditEvent {
        actor: format!("user:{}", user.id),
        target: Some(client_id.to_string()),
        details: json!({
            "user_id": user.id.to_string(),
            "scopes": authorization.scopes.to_space_separated(),
        }),
        ..audit_event(
            AuditAction::ConsentGranted,
            authorization.client.tenant_id,
            client_ip(state, parts),
            now,
        )
    };
    append_audit(state, event).await;
    issue_code(state, authorization, user, StatusCode::SEE_OTHER, now).await
}

/// Issues an authorization code bound to the client, user, redirect URI,
/// PKCE challenge and scopes, and redirects to the client with it.
async fn issue_code(
    state: &AppState,
    authorization: &AuthorizationRequest,
    user: &UserRecord,
    status: StatusCode,
    now: OffsetDateTime,
) -> Response {
    let code = match OpaqueSecret::generate(SecretKind::AuthorizationCode) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = %error, "generating an authorization code failed");
            return internal_error_page();
        }
    };
    let record = AuthorizationCodeRecord {
        hash: state.manager.pepper().hash(code.expose().as_bytes()),
        client_id: authorization.client.id,
        user_id: user.id,
        redirect_uri: authorization.redirect_uri.clone(),
        code_challenge: authorization.code_challenge.clone(),
        scopes: authorization.scopes.clone(),
        resource: authorization.resource.clone(),
        family_id: TokenFamilyId::generate(),
        created_at: now,
        expires_at: now + CODE_LIFETIME,
        used_at: None,
    };
    if let Err(error) = state.store.insert_code(&record).await {
        return store_failure(&error);
    }
    tracing::info!(
        client_id = %authorization.client.id,
        user_id = %user.id,
        family_id = %record.family_id,
        "authorization code issued"
    );

    let mut parameters = vec![("code", code.expose())];
    if let Some(client_state) = &authorization.state {
        parameters.push(("state", client_state));
    }
    parameters.push(("iss", &state.oauth.issuer));
    redirect(
        status,
        &with_query(&authorization.redirect_uri, &parameters),
    )
}

/// Renders the sign-in form for `authorization`, with the sign-in CSRF
/// token and, when the browser has none yet, its cookie.
fn login_form(
    headers: &HeaderMap,
    authorization: &AuthorizationRequest,
    email: &str,
    error: Option<String>,
) -> Response {
    let token = match sign_in_token(headers) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(error = %error, "generating a CSRF token failed");
            return internal_error_page();
        }
    };
    let page = html(
        StatusCode::OK,
        &LoginPage {
            brand: pages::BRAND,
            client_name: &authorization.client.name,
            tenant: authorization.client.tenant.as_str(),
            email,
            error,
            csrf_token: &token.token,
            request: &authorization.parameters,
        },
    );
    match &token.set_cookie {
        Some(cookie) => set_cookie(page, cookie),
        None => page,
    }
}

/// Builds the response to a rejected authorization request: the error
/// page, or a redirect to the client with `status`.
fn request_error_response(error: RequestError, status: StatusCode, issuer: &str) -> Response {
    match error {
        RequestError::Fatal(message) => {
            tracing::info!(reason = message, "authorization request rejected");
            error_page(StatusCode::BAD_REQUEST, message)
        }
        RequestError::Redirect(error) => redirect_error(&error, status, issuer),
        RequestError::Store(error) => store_failure(&error),
    }
}

/// Redirects an error to the client (RFC 6749 §4.1.2.1), with `iss`.
fn redirect_error(error: &RedirectError, status: StatusCode, issuer: &str) -> Response {
    tracing::info!(error = error.error, description = ?error.description, "authorization error sent to the client");
    let mut parameters = vec![
        ("error", error.error),
        ("error_description", error.description.as_str()),
    ];
    if let Some(client_state) = &error.state {
        parameters.push(("state", client_state));
    }
    parameters.push(("iss", issuer));
    redirect(status, &with_query(&error.redirect_uri, &parameters))
}

fn repeated_parameter_page(name: &str) -> Response {
    tracing::info!(parameter = ?name, "authorization request rejected: repeated parameter");
    error_page(
        StatusCode::BAD_REQUEST,
        "The request names a parameter more than once, so it can be read two ways. Go back to \
         the application and start again.",
    )
}

/// Renders the 403 page for a form rejected by the cross-origin check.
#[expect(
    clippy::needless_pass_by_value,
    reason = "tower-http's rejection builder passes the error by value"
)]
fn reject_cross_origin(error: tower_http::csrf::ProtectionError) -> Response {
    tracing::info!(error = %error, "authorization form rejected: sent from another origin");
    forbidden_page()
}

fn store_failure(error: &StoreError) -> Response {
    tracing::error!(error = %ErrorChain(error), "store failed at the authorization endpoint");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is unavailable. Try again in a minute.",
    )
}

fn internal_error_page() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. Try again in a minute.",
    )
}
