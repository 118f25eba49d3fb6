//! End users of a tenant, who sign in and grant consent, and their
//! passwords.
//!
//! Passwords are stored as Argon2id PHC strings with the `argon2` crate's
//! default cost (version 0.6: 19 MiB, two passes, one lane). Each hash
//! takes that memory and tens of milliseconds of CPU, so hashing runs on the
//! blocking thread pool behind [`MAX_CONCURRENT_HASHES`] permits: without a
//! bound, a burst of sign-in attempts would exhaust memory.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use portcullis_core::ids::UserId;
use portcullis_core::oauth::{Email, Role, UserRecord};
use portcullis_store::{AuditContext, NewUser, StoreError};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Semaphore;

use crate::manage::{ManageError, Manager};

/// Shortest accepted password, in characters. NIST SP 800-63B §3.1.1.2
/// sets a minimum of 8 for a password the user chooses when it is one of
/// several factors, and revision 4 (2025) raises it to 15 when the password
/// is the only factor. 12 keeps a three-word passphrase acceptable while
/// putting an online guesser, slowed by the sign-in limits, far out of reach.
///
/// NOTE: sign-in is password-only for now, so this is below revision 4's 15.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Longest accepted password, in characters. NIST SP 800-63B recommends
/// accepting at least 64. The bound keeps one hash request from feeding megabytes into
/// Argon2.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// How many password hashes may run at once in this process. Each takes
/// about 19 MiB, so two cap the memory at about 40 MiB and leave the other
/// blocking threads to database and file work.
pub const MAX_CONCURRENT_HASHES: usize = 2;

static HASH_PERMITS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// The hash [`verify_password`] checks when the user does not exist, so the
/// check takes as long as for a real user. It has the default parameters
/// of real hashes. Its salt and output are random bytes, so no password is
/// known to produce it.
const DUMMY_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
    vqfkLqhB0l1S6nHqGmvJNQ$lY0mYTbgUNQ2rsV2vmVMsm+VG7ez6EvxQ4lZF7HCGjw";

/// The reason a password was rejected. No variant contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_LEN`].
    #[error("password is {0} characters long; the minimum is {MIN_PASSWORD_LEN}")]
    TooShort(usize),
    /// Longer than [`MAX_PASSWORD_LEN`].
    #[error("password is {0} characters long; the maximum is {MAX_PASSWORD_LEN}")]
    TooLong(usize),
}

/// Checks a new password's length, the only rule. NIST SP 800-63B
/// §3.1.1.2 (revision 4) forbids composition rules such as "one digit",
/// which push users to predictable patterns without adding strength.
///
/// NOTE: the password is hashed as given, without Unicode normalization,
/// so a password typed on a keyboard that composes accents differently
/// will not match.
pub fn check_password(password: &str) -> Result<(), PasswordError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort(length));
    }
    if length > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong(length));
    }
    Ok(())
}

/// Hashes a password as an Argon2id PHC string with a random salt.
pub async fn hash_password(password: &SecretString) -> Result<String, ManageError> {
    let password = SecretString::from(password.expose_secret().to_owned());
    let result = run_limited(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|hash| hash.to_string())
    })
    .await;
    match result {
        Some(Ok(hash)) => Ok(hash),
        Some(Err(error)) => {
            // Default parameters and any password length are valid, so the
            // salt's random source is the only part of hashing that fails.
            tracing::error!(error = %error, "hashing a password failed");
            Err(ManageError::Random)
        }
        None => Err(ManageError::Random),
    }
}

/// Checks `password` against `user`'s hash. Returns `false` for a disabled
/// user, and for a missing one after checking a dummy hash, so the time
/// taken does not tell whether an e-mail address has an account.
pub async fn verify_password(user: Option<&UserRecord>, password: &SecretString) -> bool {
    // Too long for any stored password: rejected without a hash, at the
    // same speed for existing and unknown users.
    if password.expose_secret().chars().count() > MAX_PASSWORD_LEN {
        return false;
    }
    let (hash, usable) = match user {
        Some(user) => (user.password_hash.clone(), user.disabled_at.is_none()),
        None => (DUMMY_PASSWORD_HASH.to_owned(), false),
    };
    let password = SecretString::from(password.expose_secret().to_owned());
    let matched = run_limited(move || {
        Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), hash.as_str())
            .is_ok()
    })
    .await;
    usable && matched == Some(true)
}

/// Runs `work` on the blocking thread pool once a hash permit is free.
/// Returns `None`, after logging why, when the task could not finish.
async fn run_limited<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    // The semaphore is never closed, so acquiring only waits.
    let _permit = HASH_PERMITS.acquire().await.ok()?;
    match tokio::task::spawn_blocking(work).await {
        Ok(output) => Some(output),
        Err(error) => {
            tracing::error!(error = %error, "password hashing task failed");
            None
        }
    }
}

impl Manager {
    /// Creates a user of `tenant` with an Argon2id hash of `password`.
    pub async fn create_user(
        &self,
        tenant: &str,
        email: &str,
        password: &SecretString,
        role: Role,
        audit: &AuditContext,
    ) -> Result<UserRecord, ManageError> {
        let tenant = self.tenant(tenant).await?;
        let email = Email::parse(email).map_err(|error| ManageError::Invalid {
            field: "email",
            message: error.to_string(),
        })?;
        check_password(password.expose_secret()).map_err(|error| ManageError::Invalid {
            field: "password",
            message: error.to_string(),
        })?;

        let user = NewUser {
            id: UserId::generate(),
            tenant_id: tenant.id,
            email,
            password_hash: hash_password(password).await?,
            role,
            created_at: audit.at,
        };
        self.store()
            .create_user(&user, audit)
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => ManageError::Conflict {
                    code: "user_exists",
                    message: format!(
                        "tenant {} already has a user with the e-mail address {}",
                        tenant.name, user.email
                    ),
                },
                StoreError::NotFound(_) => {
                    ManageError::NotFound(format!("no tenant named {}", tenant.name))
                }
                other => ManageError::Store(other),
            })
    }

    /// Finds the user of `tenant` who signs in with `email`.
    pub async fn user(&self, tenant: &str, email: &str) -> Result<UserRecord, ManageError> {
        let tenant = self.tenant(tenant).await?;
        let email = Email::parse(email).map_err(|error| ManageError::Invalid {
            field: "email",
            message: error.to_string(),
        })?;
        self.store()
            .find_user_by_email(tenant.id, &email)
            .await
            .map_err(ManageError::Store)?
            .ok_or_else(|| {
                ManageError::NotFound(format!("tenant {} has no user {email}", tenant.name))
            })
    }

    /// Finds the user of `tenant` with `id`. A user of another tenant is
    /// reported as not found, so a caller learns nothing about the ids of
    /// other tenants.
    pub async fn user_by_id(&self, tenant: &str, id: UserId) -> Result<UserRecord, ManageError> {
        let tenant = self.tenant(tenant).await?;
        self.store()
            .find_user(id)
            .await
            .map_err(ManageError::Store)?
            .filter(|user| user.tenant_id == tenant.id)
            .ok_or_else(|| {
                ManageError::NotFound(format!("tenant {} has no user with id {id}", tenant.name))
            })
    }

    /// Disables a user: they can no longer sign in, their sessions end and
    /// their OAuth grants are revoked, in one transaction with the
    /// `user.disabled` audit record. The tenant's last enabled admin cannot
    /// be disabled.
    pub async fn disable_user(
        &self,
        user: &UserRecord,
        audit: &AuditContext,
    ) -> Result<UserRecord, ManageError> {
        self.store()
            .disable_user(user.id, audit)
            .await
            .map_err(|error| user_error(user, error))
    }

    /// Enables a disabled user again, with the `user.enabled` audit record.
    pub async fn enable_user(
        &self,
        user: &UserRecord,
        audit: &AuditContext,
    ) -> Result<UserRecord, ManageError> {
        self.store()
            .enable_user(user.id, audit)
            .await
            .map_err(|error| user_error(user, error))
    }

    /// Lists a tenant's users, by e-mail address.
    pub async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>, ManageError> {
        let tenant = self.tenant(tenant).await?;
        self.store()
            .list_users(tenant.id)
            .await
            .map_err(ManageError::Store)
    }
}

/// Maps a store error of a change to `user` onto the manager's error.
fn user_error(user: &UserRecord, error: StoreError) -> ManageError {
    match error {
        StoreError::NotFound(_) => ManageError::NotFound(format!("no user with id {}", user.id)),
        StoreError::LastAdmin => ManageError::Conflict {
            code: "last_admin",
            message: format!(
                "{} is the last enabled admin of tenant {}; make another user admin first",
                user.email, user.tenant
            ),
        },
        StoreError::Revoked(_) => ManageError::Conflict {
            code: "user_disabled",
            message: format!("{} is disabled already", user.email),
        },
        StoreError::Conflict(_) => ManageError::Conflict {
            code: "user_enabled",
            message: format!("{} is not disabled", user.email),
        },
        other => ManageError::Store(other),
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::phc::PasswordHash;

    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn password_length_bounds() {
        assert_eq!(
            check_password("eleven char"),
            Err(PasswordError::TooShort(11))
        );
        assert_eq!(check_password("twelve chars"), Ok(()));
        assert_eq!(check_password(&"é".repeat(12)), Ok(()));
        assert_eq!(check_password(&"a".repeat(MAX_PASSWORD_LEN)), Ok(()));
        assert_eq!(
            check_password(&"a".repeat(MAX_PASSWORD_LEN + 1)),
            Err(PasswordError::TooLong(MAX_PASSWORD_LEN + 1))
        );
    }

    #[test]
    fn password_needs_no_composition() {
        assert_eq!(check_password("alllowercaseletters"), Ok(()));
        assert_eq!(check_password("correct horse battery"), Ok(()));
    }

    #[test]
    fn password_error_omits_password() {
        let message = check_password("short-pw").unwrap_err().to_string();
        assert!(!message.contains("short-pw"), "{message}");
    }

    #[tokio::test]
    async fn hash_is_argon2id_and_verifies() {
        let hash = hash_password(&secret("correct horse battery"))
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );

        let user = UserRecord {
            id: UserId::generate(),
            tenant_id: portcullis_core::ids::TenantId::generate(),
            tenant: portcullis_core::name::TenantName::parse("acme").unwrap(),
            email: Email::parse("ops@example.com").unwrap(),
            password_hash: hash,
            role: Role::Viewer,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            disabled_at: None,
        };
        assert!(verify_password(Some(&user), &secret("correct horse battery")).await);
        assert!(!verify_password(Some(&user), &secret("correct horse batterz")).await);
        assert!(!verify_password(None, &secret("correct horse battery")).await);

        let disabled = UserRecord {
            disabled_at: Some(time::OffsetDateTime::UNIX_EPOCH),
            ..user
        };
        assert!(!verify_password(Some(&disabled), &secret("correct horse battery")).await);
    }

    #[test]
    fn dummy_hash_matches_default_cost() {
        let dummy = PasswordHash::new(DUMMY_PASSWORD_HASH).unwrap();
        let fresh = Argon2::default().hash_password(b"any password").unwrap();
        assert_eq!(dummy.algorithm, fresh.algorithm);
        assert_eq!(dummy.version, fresh.version);
        assert_eq!(dummy.params, fresh.params);
        // A parse error would skip the hash and return sooner than for a
        // real user.
        assert_eq!(
            Argon2::default().verify_password(b"any password", &dummy),
            Err(argon2::password_hash::Error::PasswordInvalid)
        );
    }
}
