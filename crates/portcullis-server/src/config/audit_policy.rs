//! The `[audit_policy]` table: the thresholds of the credential audit
//! (`portcullis audit` and `GET /admin/v1/audit/credentials`).

use std::time::Duration;

use portcullis_core::duration::parse_duration;
use serde::Deserialize;

use super::ConfigError;

/// Default maximum age of an API key: 90 days, a common rotation period
/// for long-lived access keys.
pub const DEFAULT_KEY_ROTATION_DAYS: u32 = 90;

/// Default number of days without use after which a key or client is
/// reported as unused.
pub const DEFAULT_UNUSED_DAYS: u32 = 30;

/// Default look-back for scopes that authorised nothing.
pub const DEFAULT_SCOPE_UNUSED_DAYS: u32 = 30;

/// Default maximum age of a client secret, as for keys.
pub const DEFAULT_CLIENT_SECRET_ROTATION_DAYS: u32 = 90;

/// Default maximum access-token lifetime of a client before it is
/// reported: 30 minutes, twice the server's 15-minute default. A client may
/// be given up to one hour.
pub const DEFAULT_MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

/// Default warning period before a client certificate expires.
pub const DEFAULT_CERTIFICATE_EXPIRY_DAYS: u32 = 30;

/// Default warning period before the internal CA expires: half a year,
/// because replacing a CA means reissuing every partner certificate.
pub const DEFAULT_CA_EXPIRY_DAYS: u32 = 180;

/// Default maximum age of the active token-signing key.
pub const DEFAULT_SIGNING_KEY_ROTATION_DAYS: u32 = 90;

/// Largest day count a threshold takes: ten years.
pub const MAX_POLICY_DAYS: u32 = 3650;

/// The `[audit_policy]` table as written. Every key is optional.
///
/// ```toml
/// [audit_policy]
/// key_rotation_days = 90
/// unused_days = 30
/// max_access_token_ttl = "30m"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditPolicy {
    /// Keys older than this many days are due for rotation; default 90.
    pub key_rotation_days: Option<u32>,
    /// Keys and clients unused for this many days are reported; default 30.
    pub unused_days: Option<u32>,
    /// Granted scopes that authorised no request in this many days are
    /// reported, with the narrower set that the requests needed; default 30.
    pub scope_unused_days: Option<u32>,
    /// Client secrets older than this many days are due for rotation;
    /// default 90.
    pub client_secret_rotation_days: Option<u32>,
    /// Clients whose access tokens live longer than this are reported, such
    /// as `"20m"`; default 30 minutes.
    pub max_access_token_ttl: Option<String>,
    /// Client certificates that expire within this many days are reported;
    /// default 30.
    pub certificate_expiry_days: Option<u32>,
    /// The internal CA is reported this many days before it expires;
    /// default 180.
    pub ca_expiry_days: Option<u32>,
    /// An active token-signing key older than this many days is due for
    /// rotation; default 90.
    pub signing_key_rotation_days: Option<u32>,
}

/// The `[audit_policy]` table, checked. Day counts are 1 to
/// [`MAX_POLICY_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPolicy {
    /// Maximum age of a key in days.
    pub key_rotation_days: u32,
    /// Days without use before a key or client is reported.
    pub unused_days: u32,
    /// Look-back of the unused-scope finding in days.
    pub scope_unused_days: u32,
    /// Maximum age of a client secret in days.
    pub client_secret_rotation_days: u32,
    /// Maximum access-token lifetime of a client before it is reported.
    pub max_access_token_ttl: Duration,
    /// Warning period before a client certificate expires, in days.
    pub certificate_expiry_days: u32,
    /// Warning period before the internal CA expires, in days.
    pub ca_expiry_days: u32,
    /// Maximum age of the active token-signing key in days.
    pub signing_key_rotation_days: u32,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self {
            key_rotation_days: DEFAULT_KEY_ROTATION_DAYS,
            unused_days: DEFAULT_UNUSED_DAYS,
            scope_unused_days: DEFAULT_SCOPE_UNUSED_DAYS,
            client_secret_rotation_days: DEFAULT_CLIENT_SECRET_ROTATION_DAYS,
            max_access_token_ttl: DEFAULT_MAX_ACCESS_TOKEN_TTL,
            certificate_expiry_days: DEFAULT_CERTIFICATE_EXPIRY_DAYS,
            ca_expiry_days: DEFAULT_CA_EXPIRY_DAYS,
            signing_key_rotation_days: DEFAULT_SIGNING_KEY_ROTATION_DAYS,
        }
    }
}

/// Checks the `[audit_policy]` table; errors name the setting.
pub(super) fn check_audit_policy(raw: RawAuditPolicy) -> Result<AuditPolicy, ConfigError> {
    let defaults = AuditPolicy::default();
    let max_access_token_ttl = match raw.max_access_token_ttl {
        None => defaults.max_access_token_ttl,
        Some(text) => {
            let setting = "audit_policy.max_access_token_ttl";
            let parsed = parse_duration(&text)
                .map_err(|error| ConfigError::invalid(setting, error.to_string()))?;
            Duration::try_from(parsed)
                .map_err(|_| ConfigError::invalid(setting, format!("invalid duration {text:?}")))?
        }
    };
    Ok(AuditPolicy {
        key_rotation_days: days(
            "key_rotation_days",
            raw.key_rotation_days,
            defaults.key_rotation_days,
        )?,
        unused_days: days("unused_days", raw.unused_days, defaults.unused_days)?,
        scope_unused_days: days(
            "scope_unused_days",
            raw.scope_unused_days,
            defaults.scope_unused_days,
        )?,
        client_secret_rotation_days: days(
            "client_secret_rotation_days",
            raw.client_secret_rotation_days,
            defaults.client_secret_rotation_days,
        )?,
        max_access_token_ttl,
        certificate_expiry_days: days(
            "certificate_expiry_days",
            raw.certificate_expiry_days,
            defaults.certificate_expiry_days,
        )?,
        ca_expiry_days: days(
            "ca_expiry_days",
            raw.ca_expiry_days,
            defaults.ca_expiry_days,
        )?,
        signing_key_rotation_days: days(
            "signing_key_rotation_days",
            raw.signing_key_rotation_days,
            defaults.signing_key_rotation_days,
        )?,
    })
}

fn days(name: &str, value: Option<u32>, default: u32) -> Result<u32, ConfigError> {
    match value {
        None => Ok(default),
        Some(days) if (1..=MAX_POLICY_DAYS).contains(&days) => Ok(days),
        Some(days) => Err(ConfigError::invalid(
            format!("audit_policy.{name}"),
            format!("{days} is out of range; expected 1 to {MAX_POLICY_DAYS} days"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_absent() {
        let policy = check_audit_policy(RawAuditPolicy::default()).unwrap();
        assert_eq!(policy, AuditPolicy::default());
        assert_eq!(policy.key_rotation_days, 90);
        assert_eq!(policy.max_access_token_ttl, Duration::from_secs(1800));
    }

    #[test]
    fn settings_checked_and_named() {
        let raw = RawAuditPolicy {
            unused_days: Some(0),
            ..RawAuditPolicy::default()
        };
        let error = check_audit_policy(raw).unwrap_err().to_string();
        assert!(error.contains("audit_policy.unused_days"), "{error}");

        let raw = RawAuditPolicy {
            max_access_token_ttl: Some("soon".to_owned()),
            ..RawAuditPolicy::default()
        };
        let error = check_audit_policy(raw).unwrap_err().to_string();
        assert!(
            error.contains("audit_policy.max_access_token_ttl"),
            "{error}"
        );

        let raw = RawAuditPolicy {
            key_rotation_days: Some(30),
            max_access_token_ttl: Some("2h".to_owned()),
            ..RawAuditPolicy::default()
        };
        let policy = check_audit_policy(raw).unwrap();
        assert_eq!(policy.key_rotation_days, 30);
        assert_eq!(policy.max_access_token_ttl, Duration::from_secs(7200));
    }
}
