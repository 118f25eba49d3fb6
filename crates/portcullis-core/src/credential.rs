//! What is known about an API key once it is found: the stored record, its
//! status at a given time, and why a presented key was not accepted.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{KeyId, TenantId};
use crate::key::{Environment, KeyFormatError};
use crate::name::TenantName;
use crate::scope::ScopeSet;

/// Longest label of a key and longest revocation reason, in characters.
pub const MAX_LABEL_LEN: usize = 200;

/// Whose key it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A key of one tenant, used on the gateway.
    Tenant,
    /// A key of the SaaS company itself, used on the admin and verify APIs.
    Operator,
}

impl KeyKind {
    /// The kind as stored and printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Operator => "operator",
        }
    }
}

/// A key's state at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Accepted.
    Active,
    /// Replaced by a newer key, and accepted until its grace period ends.
    Rotating,
    /// Past its expiry (or past the end of its rotation grace).
    Expired,
    /// Revoked by an operator or a tenant admin.
    Revoked,
}

impl KeyStatus {
    /// The status as printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Rotating => "rotating",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    /// Whether a key in this state authenticates.
    pub const fn is_usable(self) -> bool {
        matches!(self, Self::Active | Self::Rotating)
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored API key. It holds no secret: the key itself is kept only as a
/// keyed hash, which the store does not hand out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key's id, safe to show and log.
    pub id: KeyId,
    /// Tenant key or operator key.
    pub kind: KeyKind,
    /// The owning tenant; `None` for operator keys.
    pub tenant_id: Option<TenantId>,
    /// The owning tenant's name; `None` for operator keys.
    pub tenant: Option<TenantName>,
    /// A label chosen at creation, such as "billing sync".
    pub name: Option<String>,
    /// Live or test.
    pub environment: Environment,
    /// The key's first characters, such as `pc_live_4f1X`.
    pub visible_prefix: String,
    /// What the key may do.
    pub scopes: ScopeSet,
    /// When the key was created.
    pub created_at: OffsetDateTime,
    /// When the key stops working; `None` means never. Rotation sets it to
    /// the end of the grace period.
    pub expires_at: Option<OffsetDateTime>,
    /// When the key was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// Why the key was revoked, as the operator wrote it.
    pub revoked_reason: Option<String>,
    /// The key that replaced this one by rotation.
    pub rotated_to: Option<KeyId>,
    /// When the key last authenticated a request (written in batches, so up
    /// to a few seconds late).
    pub last_used_at: Option<OffsetDateTime>,
    /// The client address of that request.
    pub last_used_from: Option<String>,
    /// How many requests the key has authenticated.
    pub use_count: i64,
    /// The key's own rate limits and plan.
    #[serde(default)]
    pub limits: KeyLimits,
    /// The audit actor that created the key (`cli`, `operator-key:<uuid>`,
    /// `user:<uuid>`). It is `None` for keys stored before schema version 12.
    #[serde(default)]
    pub created_by: Option<String>,
}

/// The rate limits of one key, as the operator wrote them. The server
/// parses and checks the rates and the plan name; the store keeps them as
/// text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Rates such as `100/s burst 200`, all of which apply.
    pub rate_limits: Vec<String>,
    /// The name of a plan in the server's `[limits.plans]`.
    pub plan: Option<String>,
    /// The number of requests the key may make in all (`--max-uses`).
    #[serde(default)]
    pub max_uses: Option<i64>,
    /// Uses spent so far, as of the last load of the record. Only a key
    /// with `max_uses` counts them, one store write per admitted request.
    #[serde(default)]
    pub uses_spent: i64,
}

/// The rate limits of an OAuth client, as the operator wrote them: its own
/// rates and a plan, like a key's, without a use count (a client's tokens
/// are counted per request, not spent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// Rates such as `100/s burst 200`, all of which apply.
    pub rate_limits: Vec<String>,
    /// The name of a plan in the server's `[limits.plans]`.
    pub plan: Option<String>,
}

impl RateLimits {
    /// Whether neither a rate nor a plan is set.
    pub fn is_empty(&self) -> bool {
        self.rate_limits.is_empty() && self.plan.is_none()
    }
}

impl ApiKeyRecord {
    /// The key's status at `now`.
    pub fn status(&self, now: OffsetDateTime) -> KeyStatus {
        if self.revoked_at.is_some() {
            return KeyStatus::Revoked;
        }
        if self.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return KeyStatus::Expired;
        }
        if self.rotated_to.is_some() {
            return KeyStatus::Rotating;
        }
        KeyStatus::Active
    }

    /// Why this key is refused at `now`, or `None` when it is usable.
    pub fn rejection(&self, now: OffsetDateTime) -> Option<KeyRejection> {
        match self.status(now) {
            KeyStatus::Active | KeyStatus::Rotating => None,
            KeyStatus::Expired => Some(KeyRejection::Expired),
            KeyStatus::Revoked => Some(KeyRejection::Revoked),
        }
    }
}

/// Why a presented API key was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRejection {
    /// The string is not in the key format.
    InvalidFormat(KeyFormatError),
    /// The format is right but no such key exists.
    NotFound,
    /// The key was revoked.
    Revoked,
    /// The key expired, or its rotation grace ended.
    Expired,
}

impl KeyRejection {
    /// A stable machine-readable code, as the verify API returns it.
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidFormat(_) => "invalid_format",
            Self::NotFound => "not_found",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    /// A sentence for the caller, naming no secret.
    pub fn message(self) -> String {
        match self {
            Self::InvalidFormat(error) => error.to_string(),
            Self::NotFound => "API key not found; check that it was copied whole".to_owned(),
            Self::Revoked => "API key has been revoked; ask for a new key".to_owned(),
            Self::Expired => {
                "API key has expired; use its replacement or ask for a new key".to_owned()
            }
        }
    }
}

/// Why a key label or revocation reason was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Longer than [`MAX_LABEL_LEN`].
    #[error("{0} is longer than {MAX_LABEL_LEN} characters")]
    TooLong(&'static str),
    /// A name contains a character that changes how the text around it is
    /// shown: a control character, a line or paragraph separator, or a
    /// bidirectional formatting character.
    #[error(
        "{what} contains the character U+{code_point:04X} at position {position}; \
         a name must be one line of text without control or text-direction characters"
    )]
    Unprintable {
        what: &'static str,
        code_point: u32,
        position: usize,
    },
}

/// Checks a key label or revocation reason. Any text is allowed, line
/// breaks included, because it is stored and printed as escaped data and
/// never spliced into a log line.
pub fn check_label(what: &'static str, text: &str) -> Result<(), LabelError> {
    if text.chars().count() > MAX_LABEL_LEN {
        return Err(LabelError::TooLong(what));
    }
    Ok(())
}

/// Checks a name that dashboards, the consent page and the CLI show next to
/// other names: a label that is one line and cannot change the direction of
/// the text around it. A right-to-left override (U+202E) would otherwise
/// let `invoice\u{202E}fdp.exe` read as another name (Unicode Standard
/// Annex #9 lists the formatting characters).
pub fn check_name(what: &'static str, text: &str) -> Result<(), LabelError> {
    check_label(what, text)?;
    let found = text
        .chars()
        .enumerate()
        .find(|(_, character)| changes_layout(*character));
    if let Some((index, character)) = found {
        return Err(LabelError::Unprintable {
            what,
            code_point: u32::from(character),
            position: index + 1,
        });
    }
    Ok(())
}

/// Control characters (C0, DEL, C1), U+2028 and U+2029, and the
/// bidirectional formatting characters of UAX #9: ALM, LRM, RLM, the
/// embeddings and overrides U+202A to U+202E, and the isolates U+2066 to
/// U+2069.
fn changes_layout(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Cuts `text` to at most [`MAX_LABEL_LEN`] characters, marking a cut with
/// `…`, so that generated text such as a revocation reason passes
/// [`check_label`].
pub fn shorten_label(text: &str) -> String {
    if text.chars().count() <= MAX_LABEL_LEN {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_LABEL_LEN - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn check_name_rejects_layout_characters() {
        assert_eq!(check_name("key name", "billing sync (ÉU) 請求"), Ok(()));
        for (text, code_point, position) in [
            ("a\u{1B}[31m", 0x1B, 2),
            ("nul\0", 0, 4),
            ("two\nlines", 0x0A, 4),
            ("tab\there", 0x09, 4),
            ("next\u{85}line", 0x85, 5),
            ("line\u{2028}sep", 0x2028, 5),
            ("pay\u{202E}lanif", 0x202E, 4),
            ("\u{2066}isolate", 0x2066, 1),
            ("mark\u{200F}", 0x200F, 5),
        ] {
            assert_eq!(
                check_name("key name", text),
                Err(LabelError::Unprintable {
                    what: "key name",
                    code_point,
                    position,
                }),
                "{text:?}"
            );
        }
        let long = "x".repeat(MAX_LABEL_LEN + 1);
        assert_eq!(
            check_name("key name", &long),
            Err(LabelError::TooLong("key name"))
        );
    }

    #[test]
    fn check_label_keeps_line_breaks() {
        assert_eq!(
            check_label("reason", "leaked\nin a public repository"),
            Ok(())
        );
    }

    #[test]
    fn shorten_label_marks_cut() {
        assert_eq!(shorten_label("short"), "short");
        let long = "x".repeat(MAX_LABEL_LEN + 5);
        let cut = shorten_label(&long);
        assert_eq!(cut.chars().count(), MAX_LABEL_LEN);
        assert!(cut.ends_with('…'));
        assert!(check_label("reason", &cut).is_ok());
    }

    fn record() -> ApiKeyRecord {
        ApiKeyRecord {
            id: KeyId::generate(),
            kind: KeyKind::Tenant,
            tenant_id: Some(TenantId::generate()),
            tenant: Some(TenantName::parse("acme").unwrap()),
            name: None,
            environment: Environment::Test,
            visible_prefix: "pc_test_abcd".to_owned(),
            scopes: ScopeSet::parse_list("orders:read").unwrap(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
            revoked_reason: None,
            rotated_to: None,
            last_used_at: None,
            limits: KeyLimits::default(),
            last_used_from: None,
            use_count: 0,
            created_by: None,
        }
    }

    #[test]
    fn status_follows_time_and_revocation() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        let mut key = record();
        assert_eq!(key.status(now), KeyStatus::Active);

        key.rotated_to = Some(KeyId::generate());
        key.expires_at = Some(now + Duration::hours(1));
        assert_eq!(key.status(now), KeyStatus::Rotating);
        assert_eq!(key.status(now + Duration::hours(1)), KeyStatus::Expired);
        assert_eq!(
            key.rejection(now + Duration::hours(2)),
            Some(KeyRejection::Expired)
        );

        key.revoked_at = Some(now);
        assert_eq!(key.status(now), KeyStatus::Revoked);
        assert_eq!(key.rejection(now).map(KeyRejection::code), Some("revoked"));
    }
}
