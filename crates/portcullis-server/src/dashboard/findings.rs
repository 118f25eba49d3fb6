//! The credential audit's findings about the user's tenant, and the
//! narrowing of a key's scopes to those its requests used.
//!
//! The findings come from the same audit as `portcullis audit --tenant`
//! and `GET /admin/v1/audit/credentials?tenant=`, run when the page is
//! opened. Every member may read them. Narrowing follows the key rules of
//! [`super::policy::may_manage`] and goes through
//! [`crate::manage::Manager::narrow_key_scopes`], so it writes the
//! `key.scopes_narrowed` audit record and reaches the gateway through the
//! change feed like every other key change.

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_core::credential::ApiKeyRecord;
use portcullis_core::scope::ScopeSet;
use serde_json::Value;
use time::OffsetDateTime;

use super::account::{checked_form, page_session, store_failure};
use super::keys::{audit_context, manage_failure, managed_key_page, role_forbidden, tenant_key};
use super::pages::{Layout, error_page, html, see_other_to, signed_in_layout};
use super::policy::may_manage;
use crate::app::AppState;
use crate::credential_audit::{self, Finding};
use crate::oauth::csrf::session_token;
use crate::oauth::session::ActiveSession;
use crate::telemetry::ErrorChain;

/// The finding code whose suggestion the dashboard can apply.
const SCOPES_UNUSED: &str = "scopes_unused";

/// One finding as the page shows it.
struct FindingRow {
    severity: &'static str,
    code: &'static str,
    kind: &'static str,
    /// The key's id when the finding is about a key, for its link.
    key_id: Option<String>,
    label: String,
    message: String,
    /// Whether the page offers to narrow the key's scopes.
    narrowable: bool,
}

#[derive(Template)]
#[template(path = "dashboard/findings.html")]
struct FindingsPage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    generated_at: String,
    findings: Vec<FindingRow>,
}

#[derive(Template)]
#[template(path = "dashboard/key_narrow.html")]
struct NarrowPage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    key_id: String,
    key_name: String,
    prefix: String,
    current: Vec<String>,
    narrower: Vec<String>,
    /// The narrower set as the form sends it back.
    narrower_field: String,
    look_back_days: String,
}

/// Handles `GET /dashboard/findings`: the audit's findings about the
/// user's tenant.
pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let now = OffsetDateTime::now_utc();
    let findings = match tenant_findings(&state, &session, now).await {
        Ok(findings) => findings,
        Err(response) => return response,
    };
    let keys = match state
        .store
        .list_keys(portcullis_store::KeyFilter::Tenant(session.user.tenant_id))
        .await
    {
        Ok(keys) => keys,
        Err(error) => return store_failure(&error),
    };
    let rows = findings
        .iter()
        .map(|finding| {
            let key = (finding.subject.kind == "key")
                .then(|| {
                    keys.iter()
                        .find(|key| key.id.to_string() == finding.subject.id)
                })
                .flatten();
            FindingRow {
                severity: finding.severity.as_str(),
                code: finding.code,
                kind: finding.subject.kind,
                key_id: key.map(|key| key.id.to_string()),
                label: finding
                    .subject
                    .label
                    .clone()
                    .unwrap_or_else(|| finding.subject.id.clone()),
                message: finding.message.clone(),
                narrowable: finding.code == SCOPES_UNUSED
                    && key.is_some_and(|key| may_manage(&session.user, key)),
            }
        })
        .collect();
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &FindingsPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            generated_at: super::key_pages::format_time(now),
            findings: rows,
        },
    )
}

/// Handles `GET /dashboard/keys/{id}/narrow`: the confirmation page, which
/// names the key, its current scopes and the narrower set.
pub(super) async fn narrow_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, key) = match managed_key_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let suggestion = match suggestion(&state, &session, &key).await {
        Ok(suggestion) => suggestion,
        Err(response) => return response,
    };
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &NarrowPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            key_id: key.id.to_string(),
            key_name: key.name.clone().unwrap_or_else(|| "(unnamed)".to_owned()),
            prefix: key.visible_prefix.clone(),
            current: key
                .scopes
                .iter()
                .map(|scope| scope.as_str().to_owned())
                .collect(),
            narrower: suggestion
                .scopes
                .iter()
                .map(|scope| scope.as_str().to_owned())
                .collect(),
            narrower_field: suggestion.scopes.to_space_separated(),
            look_back_days: suggestion.look_back_days,
        },
    )
}

/// Handles `POST /dashboard/keys/{id}/narrow`: replaces the key's scopes
/// by the set that the confirmation page named, if the audit still
/// suggests exactly that set.
pub(super) async fn narrow(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };

    // 404 for a key of another tenant comes before 403 for the role, as on
    // the other key forms.
    let key = match tenant_key(&state, &session, &id).await {
        Ok(key) => key,
        Err(response) => return response,
    };
    if !may_manage(&session.user, &key) {
        tracing::info!(
            key_id = %key.id,
            user_id = %session.user.id,
            role = %session.user.role,
            "dashboard scope narrowing rejected: role does not allow it"
        );
        return role_forbidden();
    }

    let Ok(confirmed) = ScopeSet::parse_list(form.field("scopes")) else {
        tracing::info!(key_id = %key.id, "dashboard scope narrowing rejected: invalid scopes field");
        return error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Change rejected",
            "Scopes: the confirmed scope set is invalid. Nothing was changed. Open the \
             confirmation page again.",
        );
    };
    let suggestion = match suggestion(&state, &session, &key).await {
        Ok(suggestion) => suggestion,
        Err(response) => return response,
    };
    // The user confirmed one set: apply it only while the audit still
    // suggests it, so a page left open never applies a stale suggestion.
    if confirmed != suggestion.scopes {
        tracing::info!(
            key_id = %key.id,
            confirmed = %confirmed.to_space_separated(),
            suggested = %suggestion.scopes.to_space_separated(),
            "dashboard scope narrowing rejected: the suggestion changed"
        );
        return error_page(
            StatusCode::CONFLICT,
            "Change rejected",
            "Scopes: the suggested scopes changed since the confirmation page was opened. \
             Nothing was changed. Open the confirmation page again.",
        );
    }

    let audit = audit_context(&state, &parts, &session);
    match state
        .manager
        .narrow_key_scopes(key.id, &suggestion.scopes, &audit)
        .await
    {
        Ok(narrowed) => {
            tracing::info!(
                key_id = %narrowed.id,
                user_id = %session.user.id,
                scopes = %narrowed.scopes.to_space_separated(),
                "key scopes narrowed in the dashboard"
            );
            see_other_to(&format!("/dashboard/keys/{}", narrowed.id))
        }
        Err(error) => manage_failure(&error),
    }
}

/// Runs the credential audit over the session's tenant.
async fn tenant_findings(
    state: &AppState,
    session: &ActiveSession,
    now: OffsetDateTime,
) -> Result<Vec<Finding>, Response> {
    let tenant = match state.store.find_tenant(&session.user.tenant).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => {
            tracing::error!(tenant_id = %session.user.tenant_id, "signed-in user's tenant not found");
            return Err(super::pages::internal_error_page());
        }
        Err(error) => return Err(store_failure(&error)),
    };
    match credential_audit::run(&state.store, &state.audit_settings, Some(&tenant), now).await {
        Ok(report) => Ok(report.findings),
        Err(error) => {
            tracing::error!(error = %ErrorChain(&error), "credential audit failed in the dashboard");
            Err(super::pages::unavailable_page())
        }
    }
}

/// The narrower scope set that the audit suggests for one key.
struct Suggestion {
    scopes: ScopeSet,
    look_back_days: String,
}

/// Finds the audit's `scopes_unused` suggestion for `key`, or returns the
/// 409 page when the audit suggests nothing for it now.
async fn suggestion(
    state: &AppState,
    session: &ActiveSession,
    key: &ApiKeyRecord,
) -> Result<Suggestion, Response> {
    let now = OffsetDateTime::now_utc();
    let findings = tenant_findings(state, session, now).await?;
    let id = key.id.to_string();
    let found = findings
        .iter()
        .find(|finding| {
            finding.code == SCOPES_UNUSED
                && finding.subject.kind == "key"
                && finding.subject.id == id
        })
        .and_then(|finding| {
            let suggested: Vec<&str> = finding
                .details
                .get("suggested_scopes")?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let scopes = ScopeSet::parse_list(&suggested.join(" ")).ok()?;
            let days = finding
                .details
                .get("look_back_days")
                .map(Value::to_string)
                .unwrap_or_default();
            Some(Suggestion {
                scopes,
                look_back_days: days,
            })
        });
    found.ok_or_else(|| {
        error_page(
            StatusCode::CONFLICT,
            "Nothing to narrow",
            "The credential audit suggests no narrower scopes for this key now. Nothing was \
             changed. Open the findings again.",
        )
    })
}
