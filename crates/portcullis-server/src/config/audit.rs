//! The `[audit]` table, checked.

use std::time::Duration;

use super::ConfigError;
use super::raw::RawAudit;
use super::validate::check_duration;

/// Default retention of audit records: 400 days, so a full year stays
/// available for yearly reviews even when the review runs late.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

/// Shortest accepted retention. A shorter one would delete records that
/// an investigation of last week's incident still needs.
pub const MIN_AUDIT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `[audit]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// How long audit records are kept before pruning deletes them.
    pub retention: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention: DEFAULT_AUDIT_RETENTION,
        }
    }
}

pub(super) fn check_audit(raw: RawAudit) -> Result<AuditConfig, ConfigError> {
    let retention = check_duration("audit.retention", raw.retention, DEFAULT_AUDIT_RETENTION)?;
    if retention < MIN_AUDIT_RETENTION {
        return Err(ConfigError::invalid(
            "audit.retention",
            "shorter than 7d; keep audit records for at least 7d, such as \"400d\"",
        ));
    }
    Ok(AuditConfig { retention })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retention: Option<&str>) -> Result<AuditConfig, ConfigError> {
        check_audit(RawAudit {
            retention: retention.map(str::to_owned),
        })
    }

    #[test]
    fn retention_defaults_to_400_days() {
        assert_eq!(check(None).unwrap().retention, DEFAULT_AUDIT_RETENTION);
    }

    #[test]
    fn retention_parsed() {
        let config = check(Some("90d")).unwrap();
        assert_eq!(config.retention, Duration::from_secs(90 * 24 * 3600));
    }

    #[test]
    fn bad_retention_names_setting() {
        for text in ["1d", "soon", "-5d"] {
            let error = check(Some(text)).unwrap_err().to_string();
            assert!(error.contains("audit.retention"), "{text}: {error}");
        }
    }
}
