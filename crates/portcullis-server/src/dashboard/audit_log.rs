//! The tenant's own audit log: records about the user's tenant only,
//! filtered by action, actor, credential and time, in pages of
//! [`PAGE_SIZE`] records in chain order (oldest first).
//!
//! Every member of the tenant may read it. The filters arrive in the query
//! string, so a filtered page can be bookmarked. Each invalid filter gets
//! its own message that names it, and the page then lists no records.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use http::request::Parts;
use http::{StatusCode, Uri};
use portcullis_core::ids::{ClientId, KeyId, UserId};
use portcullis_core::oauth::UserRecord;
use portcullis_store::{AuditAction, AuditQuery, ChainedAuditEvent};
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use super::account::{page_session, store_failure};
use super::key_pages::{format_time, user_emails};
use super::pages::{Layout, html, not_found_page, signed_in_layout};
use crate::app::AppState;
use crate::oauth::csrf::session_token;
use crate::oauth::session::ActiveSession;

/// Records per page.
const PAGE_SIZE: i64 = 50;

/// Maximum length of a text filter, in bytes. No actor or id is longer.
const MAX_FILTER_LEN: usize = 256;

/// Days before now where the log starts when the form names no time.
const DEFAULT_DAYS: i64 = 7;

/// The filters as typed, shown again in the form.
#[derive(Default)]
struct Filters {
    action: String,
    actor: String,
    credential: String,
    since: String,
    until: String,
}

/// One record as the table shows it.
struct AuditRow {
    at: String,
    action: String,
    actor: String,
    target: String,
    remote_addr: String,
    details: String,
}

/// An action that the filter offers, with whether it is selected.
struct ActionChoice {
    name: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "dashboard/audit_log.html")]
struct AuditLogPage<'a> {
    layout: Layout,
    email: &'a str,
    tenant: &'a str,
    csrf_token: &'a str,
    filters: Filters,
    actions: Vec<ActionChoice>,
    /// One message per invalid filter, each naming the filter.
    errors: Vec<String>,
    rows: Vec<AuditRow>,
    /// The link to the next page, when this page is full.
    next_page: Option<String>,
    /// Whether this page follows another, so the page links to the first.
    paged: bool,
    /// The first page's link with the same filters.
    first_page: String,
}

/// Handles `GET /dashboard/audit`: the filter form and one page of the
/// tenant's records.
pub(super) async fn list(State(state): State<AppState>, parts: Parts) -> Response {
    let session = match page_session(&state, &parts.headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let members = match state.store.list_users(session.user.tenant_id).await {
        Ok(users) => users,
        Err(error) => return store_failure(&error),
    };
    let now = OffsetDateTime::now_utc();
    let parsed = parse_filters(&parts.uri, &members, now);
    let mut errors = parsed.errors;
    if let Some(credential) = parsed.credential {
        match credential_in_tenant(&state, &session, credential).await {
            Ok(true) => {}
            // Another tenant's key or client gets the page of an unknown
            // one, so ids of other tenants cannot be probed.
            Ok(false) => return not_found_page(),
            Err(response) => return response,
        }
    }

    let mut query = parsed.query;
    query.tenant_id = Some(session.user.tenant_id);
    // Reading one record more than a page shows whether a next page
    // exists, so a page that is exactly full links to no empty page.
    query.limit = PAGE_SIZE + 1;
    let mut records = if errors.is_empty() {
        match state.store.query_audit(&query).await {
            Ok(records) => records,
            Err(error) => return store_failure(&error),
        }
    } else {
        Vec::new()
    };
    if records.is_empty() && errors.is_empty() && query.after_seq > 0 {
        errors.push("There are no more records.".to_owned());
    }

    let emails = user_emails(&members);
    let page_size = usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    let next_page = if records.len() > page_size {
        records.truncate(page_size);
        records
            .last()
            .map(|last| page_link(&parsed.filters, Some(last.seq)))
    } else {
        None
    };
    let rows = records.iter().map(|record| row(record, &emails)).collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let actions = AuditAction::ALL
        .iter()
        .map(|action| ActionChoice {
            name: action.as_str(),
            selected: action.as_str() == parsed.filters.action,
        })
        .collect();
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    let first_page = page_link(&parsed.filters, None);
    html(
        status,
        &AuditLogPage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            filters: parsed.filters,
            actions,
            errors,
            rows,
            next_page,
            paged: query.after_seq > 0,
            first_page,
        },
    )
}

/// The query string, checked.
struct ParsedFilters {
    filters: Filters,
    query: AuditQuery,
    /// The credential filter's id, which the caller checks against the
    /// tenant.
    credential: Option<uuid::Uuid>,
    errors: Vec<String>,
}

/// Parses the filters of the query string. Unknown and repeated parameters
/// are errors too, so a mistyped filter never widens the list silently.
fn parse_filters(uri: &Uri, members: &[UserRecord], now: OffsetDateTime) -> ParsedFilters {
    let mut filters = Filters::default();
    let mut query = AuditQuery::default();
    let mut errors = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut time_given = false;
    let pairs = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes());
    for (name, value) in pairs {
        let name = name.into_owned();
        let value = value.trim().to_owned();
        if seen.contains(&name) {
            errors.push(format!("{}: give it at most once.", field_label(&name)));
            continue;
        }
        seen.push(name.clone());
        if value.is_empty() {
            // An empty field of the form means no filter, except for the
            // times, whose emptiness turns the default window off.
            time_given |= name == "since" || name == "until";
            continue;
        }
        if value.len() > MAX_FILTER_LEN {
            errors.push(format!(
                "{}: shorten it to at most {MAX_FILTER_LEN} characters.",
                field_label(&name)
            ));
            continue;
        }
        match name.as_str() {
            "action" => {
                match value.parse::<AuditAction>() {
                    Ok(action) => query.action = Some(action),
                    Err(_) => errors.push("Action: choose an action from the list.".to_owned()),
                }
                filters.action = value;
            }
            "actor" => {
                match parse_actor(&value, members) {
                    Ok(actor) => query.actor = Some(actor),
                    Err(message) => errors.push(message),
                }
                filters.actor = value;
            }
            "credential" => {
                filters.credential = value;
            }
            "since" | "until" => {
                time_given = true;
                match parse_time(&value) {
                    Ok(at) if name == "since" => query.since = Some(at),
                    Ok(at) => query.until = Some(at),
                    Err(()) => errors.push(format!(
                        "{}: enter a date and time such as 2026-12-04T09:30 (UTC).",
                        field_label(&name)
                    )),
                }
                if name == "since" {
                    filters.since = value;
                } else {
                    filters.until = value;
                }
            }
            "after" => match value.parse::<i64>() {
                Ok(seq) if seq >= 0 => query.after_seq = seq,
                _ => errors
                    .push("Page: the page link is damaged. Open the first page again.".to_owned()),
            },
            other => errors.push(format!(
                "The filter {other:?} is unknown: use action, actor, credential, since or until."
            )),
        }
    }
    let credential = if filters.credential.is_empty() {
        None
    } else {
        match filters.credential.parse::<uuid::Uuid>() {
            Ok(id) => {
                query.target = Some(id.to_string());
                Some(id)
            }
            Err(_) => {
                errors.push(
                    "Credential: enter the id of a key or an OAuth client of your \
                     organization, such as 0193b0c2-7f4e-7c8a-9d1e-2f3a4b5c6d7e."
                        .to_owned(),
                );
                None
            }
        }
    };
    if !time_given {
        let since = now - Duration::days(DEFAULT_DAYS);
        query.since = Some(since);
        filters.since = datetime_local(since);
    }
    if let (Some(since), Some(until)) = (query.since, query.until)
        && until <= since
    {
        errors.push("Until: choose a time after the start (Since).".to_owned());
    }
    ParsedFilters {
        filters,
        query,
        credential,
        errors,
    }
}

/// Names a filter as the form labels it.
fn field_label(name: &str) -> String {
    match name {
        "action" => "Action".to_owned(),
        "actor" => "Actor".to_owned(),
        "credential" => "Credential".to_owned(),
        "since" => "Since".to_owned(),
        "until" => "Until".to_owned(),
        "after" => "Page".to_owned(),
        other => format!("The filter {other:?}"),
    }
}

/// Turns the actor filter into the stored actor: a member's e-mail address
/// becomes `user:<id>`, and `cli`, `user:<id>` and `operator-key:<id>`
/// stay as they are.
fn parse_actor(value: &str, members: &[UserRecord]) -> Result<String, String> {
    if value.contains('@') {
        return members
            .iter()
            .find(|member| member.email.as_str().eq_ignore_ascii_case(value))
            .map(|member| format!("user:{}", member.id))
            .ok_or_else(|| {
                "Actor: no member of your organization has this e-mail address.".to_owned()
            });
    }
    let valid = value == "cli"
        || value == "anonymous"
        || value
            .strip_prefix("user:")
            .is_some_and(|id| id.parse::<UserId>().is_ok())
        || value
            .strip_prefix("operator-key:")
            .is_some_and(|id| id.parse::<KeyId>().is_ok());
    if valid {
        Ok(value.to_owned())
    } else {
        Err(
            "Actor: enter a member's e-mail address, cli, anonymous, user:<id> or \
             operator-key:<id>."
                .to_owned(),
        )
    }
}

/// Returns whether the credential is a key or an OAuth client of the
/// session's tenant.
/// Key and client ids are both UUIDs, so the id is looked up as either.
async fn credential_in_tenant(
    state: &AppState,
    session: &ActiveSession,
    uuid: uuid::Uuid,
) -> Result<bool, Response> {
    let tenant = session.user.tenant_id;
    match state.store.find_key(KeyId::from_uuid(uuid)).await {
        Ok(Some(key)) => return Ok(key.tenant_id == Some(tenant)),
        Ok(None) => {}
        Err(error) => return Err(store_failure(&error)),
    }
    match state.store.find_client(ClientId::from_uuid(uuid)).await {
        Ok(Some(client)) => Ok(client.tenant_id == tenant),
        Ok(None) => Ok(false),
        Err(error) => Err(store_failure(&error)),
    }
}

/// Parses a time from the form: `2026-12-04T09:30` as a browser's
/// `datetime-local` input sends it, with optional seconds, taken as UTC.
fn parse_time(value: &str) -> Result<OffsetDateTime, ()> {
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(value, minutes)
        .or_else(|_| PrimitiveDateTime::parse(value, seconds))
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| ())
}

/// Formats a time as a `datetime-local` value, to the minute.
fn datetime_local(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!("[year]-[month]-[day]T[hour]:[minute]"))
        .unwrap_or_default()
}

/// Builds the link to a page of the log with `filters`, after record
/// `after` or from the start.
fn page_link(filters: &Filters, after: Option<i64>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("action", &filters.action),
        ("actor", &filters.actor),
        ("credential", &filters.credential),
        ("since", &filters.since),
        ("until", &filters.until),
    ] {
        query.append_pair(name, value);
    }
    if let Some(after) = after {
        query.append_pair("after", &after.to_string());
    }
    format!("/dashboard/audit?{}", query.finish())
}

/// Builds the table row of a record. A user actor is shown by e-mail
/// address when the user is a member of the tenant.
fn row(record: &ChainedAuditEvent, emails: &HashMap<UserId, String>) -> AuditRow {
    let event = &record.event;
    let actor = event
        .actor
        .strip_prefix("user:")
        .and_then(|id| id.parse::<UserId>().ok())
        .and_then(|id| emails.get(&id).cloned())
        .unwrap_or_else(|| event.actor.clone());
    AuditRow {
        at: format_time(event.at),
        action: event.action.as_str().to_owned(),
        actor,
        target: event.target.clone().unwrap_or_default(),
        remote_addr: event.remote_addr.clone().unwrap_or_default(),
        details: event.details.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn parse(query: &str) -> ParsedFilters {
        let uri: Uri = format!("/dashboard/audit?{query}").parse().unwrap();
        parse_filters(&uri, &[], datetime!(2026-12-05 12:00 UTC))
    }

    #[test]
    fn filters_parsed() {
        let parsed = parse(
            "action=key.revoked&actor=cli&credential=0193b0c2-7f4e-7c8a-9d1e-2f3a4b5c6d7e\
             &since=2026-12-01T00%3A00&until=2026-12-02T08%3A30%3A15&after=40",
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let query = parsed.query;
        assert_eq!(query.action, Some(AuditAction::KeyRevoked));
        assert_eq!(query.actor.as_deref(), Some("cli"));
        assert_eq!(
            query.target.as_deref(),
            Some("0193b0c2-7f4e-7c8a-9d1e-2f3a4b5c6d7e")
        );
        assert_eq!(query.since, Some(datetime!(2026-12-01 00:00 UTC)));
        assert_eq!(query.until, Some(datetime!(2026-12-02 08:30:15 UTC)));
        assert_eq!(query.after_seq, 40);
    }

    #[test]
    fn default_window_only_without_times() {
        let parsed = parse("");
        assert_eq!(parsed.query.since, Some(datetime!(2026-11-28 12:00 UTC)));
        assert_eq!(parsed.filters.since, "2026-11-28T12:00");
        let cleared = parse("since=&until=");
        assert_eq!(cleared.query.since, None);
        assert!(cleared.errors.is_empty(), "{:?}", cleared.errors);
    }

    #[test]
    fn each_invalid_filter_named() {
        for (query, field) in [
            ("action=key.deleted", "Action:"),
            ("actor=root", "Actor:"),
            ("actor=nobody%40example.com", "Actor:"),
            ("credential=42", "Credential:"),
            ("since=yesterday", "Since:"),
            ("until=2026-13-01T00%3A00", "Until:"),
            (
                "since=2026-12-02T00%3A00&until=2026-12-01T00%3A00",
                "Until:",
            ),
            ("after=-1", "Page:"),
            ("action=key.revoked&action=key.created", "Action:"),
            ("tenant=globex", "\"tenant\""),
        ] {
            let errors = parse(query).errors;
            assert_eq!(errors.len(), 1, "{query}: {errors:?}");
            assert!(errors[0].contains(field), "{query}: {errors:?}");
        }
    }
}
