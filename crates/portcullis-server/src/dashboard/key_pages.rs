//! The key pages' templates and the rows they show.

use std::collections::HashMap;

use askama::Template;
use portcullis_core::credential::ApiKeyRecord;
use portcullis_core::ids::{KeyId, UserId};
use portcullis_core::oauth::UserRecord;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::pages::Layout;

/// One key as the list and the detail page show it.
pub(super) struct KeyRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) prefix: String,
    pub(super) environment: String,
    pub(super) scopes: Vec<String>,
    pub(super) created_by: String,
    pub(super) created: String,
    pub(super) expires: String,
    pub(super) last_used: String,
    pub(super) last_used_from: String,
    pub(super) status: String,
    pub(super) requests_7d: i64,
    /// Whether the signed-in user may rotate and revoke the key.
    pub(super) manageable: bool,
    /// Whether the key can still be rotated or revoked.
    pub(super) usable: bool,
}

impl KeyRow {
    /// Builds the row of `key`. `users` names the tenant's users by id, so
    /// a key created in the dashboard shows its creator's e-mail address.
    pub(super) fn new(
        key: &ApiKeyRecord,
        users: &HashMap<UserId, String>,
        requests_7d: i64,
        manageable: bool,
        now: OffsetDateTime,
    ) -> Self {
        let status = key.status(now);
        Self {
            id: key.id.to_string(),
            name: key.name.clone().unwrap_or_else(|| "(unnamed)".to_owned()),
            prefix: key.visible_prefix.clone(),
            environment: key.environment.to_string(),
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_by: creator_label(key.created_by.as_deref(), users),
            created: format_time(key.created_at),
            expires: key
                .expires_at
                .map_or_else(|| "never".to_owned(), format_time),
            last_used: key
                .last_used_at
                .map_or_else(|| "never".to_owned(), format_time),
            last_used_from: key.last_used_from.clone().unwrap_or_default(),
            status: status.to_string(),
            requests_7d,
            manageable,
            usable: key.rejection(now).is_none(),
        }
    }
}

/// Names a key's creator for people: a user's e-mail address, `CLI`, or
/// `operator key` for the admin API.
pub(super) fn creator_label(created_by: Option<&str>, users: &HashMap<UserId, String>) -> String {
    let Some(actor) = created_by else {
        return "unknown".to_owned();
    };
    if actor == "cli" {
        return "CLI".to_owned();
    }
    if actor.starts_with("operator-key:") {
        return "operator key".to_owned();
    }
    actor
        .strip_prefix("user:")
        .and_then(|id| id.parse::<UserId>().ok())
        .and_then(|id| users.get(&id).cloned())
        .unwrap_or_else(|| actor.to_owned())
}

/// Formats a time as RFC 3339 in UTC, to the second.
pub(super) fn format_time(at: OffsetDateTime) -> String {
    let whole = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    whole.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Names the tenant's users by id.
pub(super) fn user_emails(users: &[UserRecord]) -> HashMap<UserId, String> {
    users
        .iter()
        .map(|user| (user.id, user.email.as_str().to_owned()))
        .collect()
}

/// The tenant's keys.
#[derive(Template)]
#[template(path = "dashboard/keys.html")]
pub(super) struct KeysPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) keys: Vec<KeyRow>,
    /// Whether the user may create keys, so the page offers the form.
    pub(super) may_create: bool,
}

/// One key with its actions.
#[derive(Template)]
#[template(path = "dashboard/key.html")]
pub(super) struct KeyPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) key: KeyRow,
    /// The id of the key that replaced this one, if any.
    pub(super) rotated_to: Option<String>,
}

/// A scope that the create form offers, with whether it is checked.
pub(super) struct ScopeChoice {
    pub(super) scope: String,
    pub(super) checked: bool,
}

/// The values and errors of the create form.
pub(super) struct KeyForm {
    pub(super) name: String,
    pub(super) scopes: Vec<ScopeChoice>,
    pub(super) expires_in_days: String,
    pub(super) max_days: u32,
    pub(super) live: bool,
    /// One message per invalid field, each naming the field.
    pub(super) errors: Vec<String>,
}

/// The form that creates a key.
#[derive(Template)]
#[template(path = "dashboard/key_new.html")]
pub(super) struct NewKeyPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    /// The form's one-time submission token.
    pub(super) submission_token: String,
    pub(super) form: KeyForm,
}

/// The page that shows a new secret, once.
#[derive(Template)]
#[template(path = "dashboard/key_secret.html")]
pub(super) struct SecretPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) heading: &'a str,
    pub(super) key: KeyRow,
    /// The whole key.
    pub(super) secret: &'a str,
    /// The path of the copy button's script.
    pub(super) script: &'static str,
    /// Status of the replaced key after a rotation.
    pub(super) note: Option<String>,
}

/// The rotation form, with the grace period to choose.
#[derive(Template)]
#[template(path = "dashboard/key_rotate.html")]
pub(super) struct RotatePage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    /// The form's one-time submission token.
    pub(super) submission_token: String,
    pub(super) key: KeyRow,
    pub(super) grace_hours: String,
    pub(super) max_grace_hours: i64,
    pub(super) error: Option<String>,
}

/// The confirmation page of a revocation, naming the key.
#[derive(Template)]
#[template(path = "dashboard/key_revoke.html")]
pub(super) struct RevokePage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) key: KeyRow,
    pub(super) reason: String,
    pub(super) error: Option<String>,
}

/// Parses a key id from a path. Returns `None` for anything else, and the
/// caller then responds with 404.
pub(super) fn parse_key_id(text: &str) -> Option<KeyId> {
    text.parse().ok()
}
