//! The `[dashboard]` table, checked: what the tenants' dashboard lets its
//! users put into a new key.

use std::time::Duration;

use portcullis_core::scope::{Scope, ScopeSet};

use super::ConfigError;
use super::raw::RawDashboard;
use super::validate::check_duration;

/// Default lifetime of a key created in the dashboard: 90 days, so a
/// forgotten key stops working within a quarter.
pub const DEFAULT_KEY_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

/// Default maximum lifetime of a key created in the dashboard: one year,
/// so every dashboard key is renewed at least once a year.
pub const DEFAULT_KEY_EXPIRY_MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Largest accepted `key_expiry_max`: five years. A longer lifetime is a
/// key that never expires in practice, which the dashboard does not offer.
pub const KEY_EXPIRY_MAX_LIMIT: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// Shortest accepted lifetime setting: one day, because the create form
/// offers lifetimes in whole days.
pub const MIN_KEY_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Default lifetime of an invite link: 72 hours, long enough to span a
/// weekend, short enough that a forwarded old e-mail is useless.
pub const DEFAULT_INVITE_EXPIRY: Duration = Duration::from_secs(72 * 3600);

/// Accepted range of `invite_expiry`: from one hour to 30 days.
const INVITE_EXPIRY_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(3600)..=Duration::from_secs(30 * 24 * 3600);

/// The `[dashboard]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Lifetime that the create form proposes.
    pub key_expiry_default: Duration,
    /// Maximum lifetime that a dashboard user may choose.
    pub key_expiry_max: Duration,
    /// Scopes that dashboard users may grant to their keys, or `None` for
    /// the scopes that the configured routes require.
    pub scopes: Option<ScopeSet>,
    /// How long an invite link works after an admin sends it.
    pub invite_expiry: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            key_expiry_default: DEFAULT_KEY_EXPIRY,
            key_expiry_max: DEFAULT_KEY_EXPIRY_MAX,
            scopes: None,
            invite_expiry: DEFAULT_INVITE_EXPIRY,
        }
    }
}

pub(super) fn check_dashboard(raw: RawDashboard) -> Result<DashboardConfig, ConfigError> {
    let key_expiry_max = check_duration(
        "dashboard.key_expiry_max",
        raw.key_expiry_max,
        DEFAULT_KEY_EXPIRY_MAX,
    )?;
    if key_expiry_max < MIN_KEY_EXPIRY {
        return Err(ConfigError::invalid(
            "dashboard.key_expiry_max",
            "shorter than 1d; the dashboard offers lifetimes in whole days, such as \"365d\"",
        ));
    }
    if key_expiry_max > KEY_EXPIRY_MAX_LIMIT {
        return Err(ConfigError::invalid(
            "dashboard.key_expiry_max",
            "longer than 1825d (five years); choose a shorter maximum, such as \"365d\"",
        ));
    }
    let key_expiry_default = check_duration(
        "dashboard.key_expiry_default",
        raw.key_expiry_default,
        DEFAULT_KEY_EXPIRY.min(key_expiry_max),
    )?;
    if key_expiry_default < MIN_KEY_EXPIRY {
        return Err(ConfigError::invalid(
            "dashboard.key_expiry_default",
            "shorter than 1d; the dashboard offers lifetimes in whole days, such as \"90d\"",
        ));
    }
    if key_expiry_default > key_expiry_max {
        return Err(ConfigError::invalid(
            "dashboard.key_expiry_default",
            "longer than dashboard.key_expiry_max; shorten it or raise the maximum",
        ));
    }
    let scopes = match raw.scopes {
        None => None,
        Some(list) => Some(check_scopes(&list)?),
    };
    let invite_expiry = check_duration(
        "dashboard.invite_expiry",
        raw.invite_expiry,
        DEFAULT_INVITE_EXPIRY,
    )?;
    if !INVITE_EXPIRY_RANGE.contains(&invite_expiry) {
        return Err(ConfigError::invalid(
            "dashboard.invite_expiry",
            "outside 1h to 30d; choose a lifetime such as \"72h\"",
        ));
    }
    Ok(DashboardConfig {
        key_expiry_default,
        key_expiry_max,
        scopes,
        invite_expiry,
    })
}

/// Parses each listed scope on its own, so one entry cannot hide two
/// scopes behind a space.
fn check_scopes(list: &[String]) -> Result<ScopeSet, ConfigError> {
    let mut scopes = Vec::with_capacity(list.len());
    for (index, text) in list.iter().enumerate() {
        let scope = Scope::parse(text).map_err(|error| {
            ConfigError::invalid(
                format!("dashboard.scopes[{index}]"),
                format!("{error}; write one scope per entry, such as \"orders:read\""),
            )
        })?;
        scopes.push(scope);
    }
    ScopeSet::try_from(scopes)
        .map_err(|error| ConfigError::invalid("dashboard.scopes", error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(default: Option<&str>, max: Option<&str>) -> Result<DashboardConfig, ConfigError> {
        check_dashboard(RawDashboard {
            key_expiry_default: default.map(str::to_owned),
            key_expiry_max: max.map(str::to_owned),
            ..RawDashboard::default()
        })
    }

    #[test]
    fn expiry_defaults_apply() {
        let config = check(None, None).unwrap();
        assert_eq!(config.key_expiry_default, DEFAULT_KEY_EXPIRY);
        assert_eq!(config.key_expiry_max, DEFAULT_KEY_EXPIRY_MAX);
        assert_eq!(config.scopes, None);
    }

    #[test]
    fn default_follows_shorter_maximum() {
        let config = check(None, Some("30d")).unwrap();
        assert_eq!(
            config.key_expiry_default,
            Duration::from_secs(30 * 24 * 3600)
        );
    }

    #[test]
    fn default_above_maximum_rejected() {
        let error = check(Some("400d"), Some("365d")).unwrap_err().to_string();
        assert!(error.contains("dashboard.key_expiry_default"), "{error}");
    }

    #[test]
    fn maximum_above_limit_rejected() {
        let error = check(None, Some("2000d")).unwrap_err().to_string();
        assert!(error.contains("dashboard.key_expiry_max"), "{error}");
    }

    #[test]
    fn lifetime_under_a_day_rejected() {
        let error = check(Some("12h"), None).unwrap_err().to_string();
        assert!(error.contains("dashboard.key_expiry_default"), "{error}");
        let error = check(None, Some("1h")).unwrap_err().to_string();
        assert!(error.contains("dashboard.key_expiry_max"), "{error}");
    }

    #[test]
    fn invite_expiry_checked() {
        let config = check(None, None).unwrap();
        assert_eq!(config.invite_expiry, DEFAULT_INVITE_EXPIRY);
        let raw = |text: &str| RawDashboard {
            invite_expiry: Some(text.to_owned()),
            ..RawDashboard::default()
        };
        let config = check_dashboard(raw("7d")).unwrap();
        assert_eq!(config.invite_expiry, Duration::from_secs(7 * 24 * 3600));
        for text in ["10m", "31d"] {
            let error = check_dashboard(raw(text)).unwrap_err().to_string();
            assert!(error.contains("dashboard.invite_expiry"), "{error}");
        }
    }

    #[test]
    fn bad_scope_names_setting() {
        let error = check_dashboard(RawDashboard {
            scopes: Some(vec![
                "orders:read".to_owned(),
                "orders:read invoices:read".to_owned(),
            ]),
            ..RawDashboard::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("dashboard.scopes[1]"), "{error}");
    }
}
