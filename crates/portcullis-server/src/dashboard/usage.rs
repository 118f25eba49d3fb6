//! Usage charts: requests and failures per hour over the last 48 hours and
//! per day over the last 30 days, for the whole tenant or one of its keys.
//!
//! The windows are fixed, so a page costs two store queries whatever the
//! request, and every role of the tenant may read them.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use portcullis_store::{CredentialRef, Granularity, UsageQuery, UsageSubject};
use time::OffsetDateTime;

use super::account::{page_session, store_failure};
use super::chart::{Chart, Window, lay_out};
use super::keys::tenant_key_page;
use super::pages::{Layout, html, signed_in_layout};
use crate::app::AppState;
use crate::oauth::csrf::session_token;
use crate::oauth::session::ActiveSession;

/// Hours in the hourly chart, the current hour included.
const CHART_HOURS: i64 = 48;

/// Days in the daily chart, today included.
const CHART_DAYS: i64 = 30;

/// The usage page of the tenant or of one key.
#[derive(Template)]
#[template(path = "dashboard/usage.html")]
struct UsagePage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    /// The page's heading.
    heading: String,
    /// The key's id, on a key's page.
    key_id: Option<String>,
    hours: Chart,
    days: Chart,
}

/// Handles `GET /dashboard/usage`: the charts of every key and OAuth client
/// of the user's tenant together.
pub(super) async fn tenant(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let subject = UsageSubject::Tenant(session.user.tenant_id);
    let heading = format!("Usage of {}", session.user.tenant);
    usage_page(&state, &session, subject, heading, None).await
}

/// Handles `GET /dashboard/keys/{id}/usage`: the charts of one key of the
/// user's tenant. Any other id gets the 404 page.
pub(super) async fn key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (session, key) = match tenant_key_page(&state, &headers, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let subject = UsageSubject::Credential(CredentialRef::Key(key.id));
    let name = key.name.as_deref().unwrap_or("(unnamed)");
    let heading = format!("Usage of key {name} ({})", key.visible_prefix);
    usage_page(&state, &session, subject, heading, Some(key.id.to_string())).await
}

/// Renders the usage page of `subject`.
async fn usage_page(
    state: &AppState,
    session: &ActiveSession,
    subject: UsageSubject,
    heading: String,
    key_id: Option<String>,
) -> Response {
    let (hours, days) = match charts(state, subject).await {
        Ok(charts) => charts,
        Err(response) => return response,
    };
    let user = &session.user;
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &UsagePage {
            layout: signed_in_layout(&session.user),
            email: user.email.as_str(),
            tenant: user.tenant.as_str(),
            csrf_token: &csrf_token,
            heading,
            key_id,
            hours,
            days,
        },
    )
}

/// Reads and lays out the hourly and the daily chart of `subject`, with
/// one store query each.
async fn charts(state: &AppState, subject: UsageSubject) -> Result<(Chart, Chart), Response> {
    let now = OffsetDateTime::now_utc();
    let hours = Window::ending_at(Granularity::Hour, CHART_HOURS, now);
    let days = Window::ending_at(Granularity::Day, CHART_DAYS, now);
    let hourly = chart(state, subject, &hours, "hours", "Requests per hour").await?;
    let daily = chart(state, subject, &days, "days", "Requests per day").await?;
    Ok((hourly, daily))
}

async fn chart(
    state: &AppState,
    subject: UsageSubject,
    window: &Window,
    id: &'static str,
    title: &str,
) -> Result<Chart, Response> {
    let query = UsageQuery {
        subject,
        granularity: window.granularity,
        since: window.since,
        until: window.until,
    };
    match state.store.usage_series(&query).await {
        Ok(points) => Ok(lay_out(id, title.to_owned(), window, &points)),
        Err(error) => Err(store_failure(&error)),
    }
}
