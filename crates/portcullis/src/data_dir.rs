//! The data directory: the master key, and the store bound to it.
//!
//! Layout of `DIR`:
//!
//! - `master.key`: the master key, URL-safe base64, mode 0600. Written at the
//!   first start unless `PORTCULLIS_MASTER_KEY` supplies the key. When that
//!   variable is set, it wins, and the file is neither read nor written.
//! - `portcullis.db`: the SQLite database, unless a PostgreSQL URL is given.
//! - `tls/`: the development CA and server certificate (written by `serve`).
//!
//! The database stores a check value of the master key at first use, so a
//! later start with another key stops here with a clear message instead of
//! rejecting every credential.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use portcullis_core::crypto::{MasterKey, Pepper, SealingKey};
use portcullis_server::oauth::signing::SIGNING_KEY_PURPOSE;
use portcullis_server::pki::ca::CA_KEY_PURPOSE;
use portcullis_store::{Store, StoreError};

/// Name of the master key file inside the data directory.
pub(crate) const MASTER_KEY_FILE: &str = "master.key";

/// Name of the SQLite database file inside the data directory.
pub(crate) const DATABASE_FILE: &str = "portcullis.db";

/// Environment variable that supplies the master key instead of the file.
pub(crate) const MASTER_KEY_VARIABLE: &str = "PORTCULLIS_MASTER_KEY";

/// An opened store and the keys derived from the master key it is bound to.
pub(crate) struct OpenedStore {
    pub(crate) store: Store,
    pub(crate) pepper: Pepper,
    /// Seals and opens token-signing private keys.
    pub(crate) signing_sealing: SealingKey,
    /// Seals and opens the internal CA's private key.
    pub(crate) ca_sealing: SealingKey,
}

/// Origin of the master key, for error messages and clean-up.
enum KeySource {
    /// The `PORTCULLIS_MASTER_KEY` variable.
    Environment,
    /// An existing key file.
    File(PathBuf),
    /// A key file written by this process just now.
    Generated(PathBuf),
}

/// Creates the data directory with mode 0700 when it is missing. An
/// existing directory keeps its mode.
pub(crate) fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create data directory {}", dir.display()))
}

/// Creates the data directory if needed, loads or creates the master key,
/// opens the store (PostgreSQL at `database_url`, else SQLite in `dir`) and
/// checks that the store belongs to this master key.
///
/// `env` contains the `PORTCULLIS_*` variables, of which only
/// [`MASTER_KEY_VARIABLE`] is read.
pub(crate) async fn open_store(
    dir: &Path,
    database_url: Option<&str>,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<OpenedStore> {
    ensure_dir(dir)?;
    let (master_key, source) = load_master_key(dir, env)?;
    let store = connect(dir, database_url).await?;

    match store.check_master_key(&master_key.check_value()).await {
        Ok(()) => {}
        Err(StoreError::MasterKeyMismatch) => {
            store.close().await;
            return Err(mismatch_error(dir, &source));
        }
        Err(error) => {
            return Err(anyhow::Error::new(error).context("failed to check the master key"));
        }
    }
    let store = store
        .attach_audit_key(master_key.audit_chain_key())
        .await
        .context("failed to attach the audit chain key")?;
    Ok(OpenedStore {
        store,
        pepper: master_key.derive_pepper(),
        signing_sealing: master_key.sealing_key(SIGNING_KEY_PURPOSE),
        ca_sealing: master_key.sealing_key(CA_KEY_PURPOSE),
    })
}

/// Returns the master key from the environment, from the key file, or newly
/// generated and written to the key file, in that order.
fn load_master_key(
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<(MasterKey, KeySource)> {
    if let Some(text) = env
        .get(MASTER_KEY_VARIABLE)
        .filter(|text| !text.trim().is_empty())
    {
        let key = MasterKey::from_encoded(text)
            .with_context(|| format!("{MASTER_KEY_VARIABLE} is not a valid master key"))?;
        return Ok((key, KeySource::Environment));
    }

    let path = dir.join(MASTER_KEY_FILE);
    if let Some(key) = read_key_file(&path)? {
        return Ok((key, KeySource::File(path)));
    }

    let key = MasterKey::generate().context("failed to generate a master key")?;
    if write_key_file(dir, &path, &key)? {
        tracing::info!(path = %path.display(), "created master key file");
        return Ok((key, KeySource::Generated(path)));
    }
    // Another process wrote the file between the read and the write above.
    match read_key_file(&path)? {
        Some(key) => Ok((key, KeySource::File(path))),
        None => bail!(
            "master key file {} disappeared while starting",
            path.display()
        ),
    }
}

/// Reads and decodes the key file. Returns `None` when it does not exist.
fn read_key_file(path: &Path) -> anyhow::Result<Option<MasterKey>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("failed to read master key file {}", path.display()));
        }
    };
    warn_if_shared(path);
    let key = MasterKey::from_encoded(&text)
        .with_context(|| format!("master key file {} is invalid", path.display()))?;
    Ok(Some(key))
}

/// Warns when group or others may read the key file. Not an error, because
/// some secret mounts (Kubernetes' default among them) use mode 0644.
fn warn_if_shared(path: &Path) {
    let Ok(metadata) = fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "master key file is accessible to other users; run chmod 600 on it"
        );
    }
}

/// Writes `key` to `path` with mode 0600 unless the file exists. Returns
/// whether this call created it.
///
/// The key goes to a temporary file first and is then hard-linked into
/// place, which fails if `path` exists. So a second process starting at the
/// same moment never reads a half-written key, and neither overwrites the
/// other's key.
fn write_key_file(dir: &Path, path: &Path, key: &MasterKey) -> anyhow::Result<bool> {
    let temporary = dir.join(format!(".{MASTER_KEY_FILE}.{}", std::process::id()));
    let write_temporary = || -> io::Result<()> {
        // A leftover from a crashed process with the same id.
        let _ = fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(key.to_encoded().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    let linked = write_temporary().and_then(|()| fs::hard_link(&temporary, path));
    let _ = fs::remove_file(&temporary);

    match linked {
        Ok(()) => {
            // Make the new directory entry durable before the key is used.
            File::open(dir)
                .and_then(|directory| directory.sync_all())
                .with_context(|| format!("failed to sync data directory {}", dir.display()))?;
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error)
            .with_context(|| format!("failed to write master key file {}", path.display())),
    }
}

/// Opens PostgreSQL when `database_url` is given, else SQLite in `dir`.
async fn connect(dir: &Path, database_url: Option<&str>) -> anyhow::Result<Store> {
    let Some(url) = database_url.filter(|url| !url.is_empty()) else {
        let path = dir.join(DATABASE_FILE);
        return Store::open_sqlite(&path)
            .await
            .with_context(|| format!("failed to open SQLite database {}", path.display()));
    };
    // The URL may hold a password, so messages name only its scheme.
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    if scheme != "postgres" && scheme != "postgresql" {
        bail!(
            "--database-url: unsupported scheme {scheme:?}; expected a postgres:// URL, or no \
             URL for SQLite in the data directory"
        );
    }
    Store::open_postgres(url)
        .await
        .context("failed to open the PostgreSQL database given by --database-url")
}

/// Explains a master key that differs from the store's, and removes a key
/// file that this process has just generated, so the next start does not
/// mistake it for the right one.
fn mismatch_error(dir: &Path, source: &KeySource) -> anyhow::Error {
    match source {
        KeySource::Environment => anyhow::anyhow!(
            "the master key in {MASTER_KEY_VARIABLE} does not match the one this database was \
             first opened with; set the original key, or unset the variable to use {}",
            dir.join(MASTER_KEY_FILE).display()
        ),
        KeySource::File(path) => anyhow::anyhow!(
            "the master key in {} does not match the one this database was first opened with; \
             restore the original key file or set {MASTER_KEY_VARIABLE}",
            path.display()
        ),
        KeySource::Generated(path) => {
            let _ = fs::remove_file(path);
            anyhow::anyhow!(
                "master key file {} is missing, and this database was first opened with a \
                 master key; restore the original key file or set {MASTER_KEY_VARIABLE}",
                path.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_written_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        let first = MasterKey::generate().unwrap();
        assert!(write_key_file(dir.path(), &path, &first).unwrap());

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let second = MasterKey::generate().unwrap();
        assert!(!write_key_file(dir.path(), &path, &second).unwrap());
        let stored = read_key_file(&path).unwrap().unwrap();
        assert!(stored.check_value().ct_eq(&first.check_value()));

        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
    }

    #[test]
    fn environment_key_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let env_key = MasterKey::generate().unwrap();
        let env = BTreeMap::from([(MASTER_KEY_VARIABLE.to_owned(), env_key.to_encoded())]);
        let (key, source) = load_master_key(dir.path(), &env).unwrap();
        assert!(matches!(source, KeySource::Environment));
        assert!(key.check_value().ct_eq(&env_key.check_value()));
        assert!(!dir.path().join(MASTER_KEY_FILE).exists());
    }

    #[test]
    fn invalid_environment_key_rejected_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::from([(MASTER_KEY_VARIABLE.to_owned(), "not-a-key".to_owned())]);
        let message = format!("{:#}", load_master_key(dir.path(), &env).err().unwrap());
        assert!(message.contains(MASTER_KEY_VARIABLE), "{message}");
        assert!(!message.contains("not-a-key"), "{message}");
    }
}
