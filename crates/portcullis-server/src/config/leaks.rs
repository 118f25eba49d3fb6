//! The `[leaks]` table, checked: the public keys that sign leak reports and
//! what to do with a reported key.

use std::path::PathBuf;

use super::ConfigError;
use super::raw::RawLeaks;

/// Maximum number of public keys, a bound on a runaway file.
pub const MAX_LEAK_PUBLIC_KEYS: usize = 32;

/// Maximum length of a public key id, in bytes. The ids in GitHub's
/// documented examples are 64 hex characters.
pub const MAX_LEAK_KEY_ID_LEN: usize = 128;

/// The `[leaks]` table, checked. With no public keys, `POST /v1/leaks`
/// accepts no report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaksConfig {
    /// Keys whose signatures are accepted, in file order.
    pub public_keys: Vec<LeakPublicKey>,
    /// The action on a reported key that is still usable.
    pub action: LeakAction,
}

/// One public key that signs leak reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakPublicKey {
    /// The id that reports name in `Github-Public-Key-Identifier`.
    pub id: String,
    /// The location of the PEM `PUBLIC KEY`.
    pub pem: PemSource,
}

/// A PEM document given by path or inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file, read when the server starts.
    File(PathBuf),
    /// The PEM text itself.
    Inline(String),
}

/// The response to a reported key that is still usable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LeakAction {
    /// Revoke the key at once.
    #[default]
    Revoke,
    /// Keep the key, and write an audit record and a warning log line.
    Flag,
}

impl LeakAction {
    /// Returns the action's name as configured and audited.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Flag => "flag",
        }
    }
}

/// Checks the `[leaks]` table.
pub(super) fn check_leaks(raw: RawLeaks) -> Result<LeaksConfig, ConfigError> {
    let action = match raw.action.as_deref() {
        None | Some("revoke") => LeakAction::Revoke,
        Some("flag") => LeakAction::Flag,
        Some(other) => {
            return Err(ConfigError::invalid(
                "leaks.action",
                format!("unknown action {other:?}: expected \"revoke\" or \"flag\""),
            ));
        }
    };

    let raw_keys = raw.public_keys.unwrap_or_default();
    if raw_keys.len() > MAX_LEAK_PUBLIC_KEYS {
        return Err(ConfigError::invalid(
            "leaks.public_keys",
            format!("at most {MAX_LEAK_PUBLIC_KEYS} keys are allowed"),
        ));
    }
    let mut public_keys: Vec<LeakPublicKey> = Vec::with_capacity(raw_keys.len());
    for (index, raw_key) in raw_keys.into_iter().enumerate() {
        let setting = format!("leaks.public_keys[{index}]");
        let id = raw_key.id.trim().to_owned();
        if id.is_empty() || id.len() > MAX_LEAK_KEY_ID_LEN || !id.is_ascii() {
            return Err(ConfigError::invalid(
                format!("{setting}.id"),
                format!("must be 1 to {MAX_LEAK_KEY_ID_LEN} ASCII characters"),
            ));
        }
        if public_keys.iter().any(|key| key.id == id) {
            return Err(ConfigError::invalid(
                format!("{setting}.id"),
                format!("{id:?} appears twice; each id may appear once"),
            ));
        }
        let pem = match (raw_key.pem_file, raw_key.pem) {
            (Some(path), None) => PemSource::File(path),
            (None, Some(text)) => PemSource::Inline(text),
            _ => {
                return Err(ConfigError::invalid(
                    setting,
                    "set exactly one of pem_file and pem".to_owned(),
                ));
            }
        };
        public_keys.push(LeakPublicKey { id, pem });
    }
    Ok(LeaksConfig {
        public_keys,
        action,
    })
}
