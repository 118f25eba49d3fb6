//! The store's error type and the mapping from sqlx errors onto it.

use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// The error of a store operation.
///
/// The variants that wrap a sqlx error keep it as their `source`, so the
/// `Display` text names only what failed and a `{:#}` chain adds the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named object ("key", "tenant") does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is taken, such as a tenant name.
    #[error("{0}")]
    Conflict(String),
    /// The input breaks a rule of the store, such as a tenant key without a
    /// tenant. The text names the rule.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// The key was revoked earlier.
    #[error("API key is already revoked")]
    AlreadyRevoked,
    /// The named object ("client", "access token") was revoked earlier, so
    /// it can be neither revoked again nor changed.
    #[error("{0} is already revoked")]
    Revoked(&'static str),
    /// The key was rotated earlier; a key rotates only once.
    #[error("API key has already been rotated")]
    AlreadyRotated,
    /// The key is past its expiry.
    #[error("API key has expired")]
    Expired,
    /// The change would leave the tenant without an enabled admin.
    #[error("the user is the tenant's last admin")]
    LastAdmin,
    /// The master key differs from the one the database was first used with.
    #[error("master key does not match the master key this database was first opened with")]
    MasterKeyMismatch,
    /// The database cannot be reached: connection, I/O, lock timeout or a
    /// closed pool. Callers fail closed on this variant.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database rejected a statement for another reason.
    #[error("database statement failed")]
    Database(#[source] sqlx::Error),
    /// A stored value could not be read back into its type.
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// An audit record was to be written or verified, but the store was
    /// opened without the audit chain key.
    #[error("the audit chain key is not set; open the store with the master key")]
    AuditKeyMissing,
    /// The audit chain is broken where a write or a seal needs it intact,
    /// such as a head row changed without the master key. Writers fail
    /// closed on it.
    #[error("the audit chain is broken: {0}")]
    AuditChainBroken(crate::chain::ChainBreak),
    /// Applying the schema migrations failed.
    #[error("database migration failed")]
    Migration(#[source] MigrateError),
}

impl StoreError {
    /// Returns a stable snake_case code for the variant.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) => "invalid",
            Self::AlreadyRevoked => "already_revoked",
            Self::Revoked(_) => "revoked",
            Self::AlreadyRotated => "already_rotated",
            Self::Expired => "expired",
            Self::LastAdmin => "last_admin",
            Self::MasterKeyMismatch => "master_key_mismatch",
            Self::Unavailable(_) => "unavailable",
            Self::Database(_) => "database",
            Self::Corrupt(_) => "corrupt",
            Self::AuditKeyMissing => "audit_key_missing",
            Self::AuditChainBroken(_) => "audit_chain_broken",
            Self::Migration(_) => "migration",
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

impl From<MigrateError> for StoreError {
    fn from(error: MigrateError) -> Self {
        match error {
            MigrateError::Execute(inner) => Self::from(inner),
            other => Self::Migration(other),
        }
    }
}

/// Returns whether the error means the database cannot be reached at all, as
/// opposed to a statement that it rejected.
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => is_unavailable_database(database.as_ref()),
        _ => false,
    }
}

fn is_unavailable_database(error: &dyn DatabaseError) -> bool {
    if let Some(sqlite) = error.try_downcast_ref::<SqliteError>() {
        // The primary result code is the low byte of the extended code:
        // BUSY (5) and LOCKED (6) after busy_timeout, IOERR (10), FULL (13)
        // and CANTOPEN (14).
        let primary = sqlite
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff);
        return matches!(primary, Some(5 | 6 | 10 | 13 | 14));
    }
    if let Some(postgres) = error.try_downcast_ref::<PgDatabaseError>() {
        // SQLSTATE classes 08 (connection exception), 28 (invalid
        // authorization), 3D (no such database), 53 (insufficient
        // resources) and 57P (server shutting down or starting).
        let code = postgres.code();
        return ["08", "28", "3D", "53", "57P"]
            .iter()
            .any(|class| code.starts_with(class));
    }
    false
}

/// Returns whether the error is a violation of a unique constraint.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(DatabaseError::is_unique_violation)
}

/// Returns whether the error is a violation of a foreign key.
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(DatabaseError::is_foreign_key_violation)
}
