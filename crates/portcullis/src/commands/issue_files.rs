//! The output directory of `portcullis certs issue`, written so that a failed
//! command leaves the file system as it was.
//!
//! [`OutputDirectory::check`] runs before the CA issues anything and writes
//! nothing. [`OutputDirectory::write`] writes every file into a hidden
//! staging directory and moves them into place only once all of them are
//! written. For a new directory, the staging directory itself is renamed to
//! the directory's name. For an existing directory, each file is renamed
//! into it, replacing a file of the same name. On a failure, the staging
//! directory and any parent directories this command created are removed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use portcullis_core::crypto::fill_random;

/// A file to write: its name in the directory, its contents and its Unix mode.
pub(crate) struct OutputFile<'a> {
    pub(crate) name: &'static str,
    pub(crate) contents: &'a [u8],
    pub(crate) mode: u32,
}

/// The directory that `--out` names, checked but not yet written.
pub(crate) struct OutputDirectory {
    path: PathBuf,
    exists: bool,
}

impl OutputDirectory {
    /// Checks that `path` is a directory, or that it is missing and its
    /// nearest existing ancestor is a directory. Writes nothing.
    ///
    /// # Errors
    ///
    /// When `path` or that ancestor exists and is not a directory, or cannot
    /// be read.
    pub(crate) fn check(path: &Path) -> anyhow::Result<Self> {
        if let Some(metadata) = metadata_if_exists(path)? {
            if !metadata.is_dir() {
                bail!(
                    "--out {} exists and is not a directory; give a directory or a new path",
                    path.display()
                );
            }
            return Ok(Self {
                path: path.to_owned(),
                exists: true,
            });
        }
        let (ancestor, _) = missing_ancestors(path)?;
        if !ancestor.is_dir() {
            bail!(
                "cannot create --out {}: {} is not a directory",
                path.display(),
                ancestor.display()
            );
        }
        Ok(Self {
            path: path.to_owned(),
            exists: false,
        })
    }

    /// Writes `files` into the directory, creating it (mode 0700) and its
    /// missing parents when needed.
    ///
    /// # Errors
    ///
    /// Any failure to create, write or rename, after removing what this
    /// call created.
    pub(crate) fn write(&self, files: &[OutputFile<'_>]) -> anyhow::Result<()> {
        let (_, missing) = missing_ancestors(&self.path)?;
        // For a new directory, the staging directory is its sibling, so that
        // one rename moves it into place. For an existing one, it is inside.
        let staging_parent = match self.path.parent() {
            _ if self.exists => self.path.clone(),
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };

        let mut created = Vec::new();
        let result = create_parents(&missing, &mut created)
            .and_then(|()| self.write_staged(&staging_parent, files));
        if result.is_err() {
            // Only directories this call created, innermost first, each empty
            // once the staging directory is gone.
            for directory in created.iter().rev() {
                let _ = fs::remove_dir(directory);
            }
        }
        result
    }

    fn write_staged(&self, staging_parent: &Path, files: &[OutputFile<'_>]) -> anyhow::Result<()> {
        let staging = staging_parent.join(staging_name()?);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .with_context(|| format!("failed to create directory {}", staging.display()))?;

        let result = write_files(&staging, files).and_then(|()| {
            if self.exists {
                move_files(&staging, &self.path, files)
            } else {
                fs::rename(&staging, &self.path).with_context(|| {
                    format!(
                        "failed to move {} to {}",
                        staging.display(),
                        self.path.display()
                    )
                })
            }
        });
        // The staging directory is gone after a rename of the whole directory,
        // and empty after the files were moved out of it.
        if result.is_err() || self.exists {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }
}

/// Returns the nearest existing ancestor of `path` and the missing directories
/// between it and `path`, outermost first, without `path` itself.
fn missing_ancestors(path: &Path) -> anyhow::Result<(PathBuf, Vec<PathBuf>)> {
    let mut missing = Vec::new();
    let mut current = path.parent();
    while let Some(directory) = current {
        if directory.as_os_str().is_empty() {
            break;
        }
        if metadata_if_exists(directory)?.is_some() {
            missing.reverse();
            return Ok((directory.to_owned(), missing));
        }
        missing.push(directory.to_owned());
        current = directory.parent();
    }
    missing.reverse();
    Ok((PathBuf::from("."), missing))
}

/// Reads `path`'s metadata, or `None` when it does not exist, also when an
/// ancestor is a file (`ENOTDIR`), which [`missing_ancestors`] reports.
fn metadata_if_exists(path: &Path) -> anyhow::Result<Option<fs::Metadata>> {
    use std::io::ErrorKind;

    match fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(error) if matches!(error.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            Ok(None)
        }
        Err(error) => Err(error).with_context(|| format!("failed to read {}", path.display())),
    }
}

/// Creates each missing parent directory (mode 0700), recording the ones it
/// created so that a failure can remove them.
fn create_parents(missing: &[PathBuf], created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for directory in missing {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(directory)
            .with_context(|| format!("failed to create directory {}", directory.display()))?;
        created.push(directory.clone());
    }
    Ok(())
}

/// Returns a hidden directory name with 64 random bits. Creating it fails
/// if it exists, so a collision between two runs fails one of them.
fn staging_name() -> anyhow::Result<String> {
    let mut random = [0u8; 8];
    fill_random(&mut random).context("failed to draw a random staging directory name")?;
    let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(".portcullis-certs-issue-{suffix}"))
}

fn write_files(directory: &Path, files: &[OutputFile<'_>]) -> anyhow::Result<()> {
    for file in files {
        let path = directory.join(file.name);
        let mut handle = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&path)
            .with_context(|| format!("failed to write {}", path.display()))?;
        handle
            .write_all(file.contents)
            .and_then(|()| handle.sync_all())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// Renames each staged file into `directory`.
// NOTE: the renames are not one atomic step. A rename that fails after an
// earlier one succeeded leaves the earlier file replaced. Renames inside
// one directory fail only when the directory itself changes under the command.
fn move_files(staging: &Path, directory: &Path, files: &[OutputFile<'_>]) -> anyhow::Result<()> {
    for file in files {
        let target = directory.join(file.name);
        fs::rename(staging.join(file.name), &target)
            .with_context(|| format!("failed to write {}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: [OutputFile<'static>; 2] = [
        OutputFile {
            name: "key.pem",
            contents: b"key",
            mode: 0o600,
        },
        OutputFile {
            name: "cert.pem",
            contents: b"cert",
            mode: 0o644,
        },
    ];

    fn scratch() -> PathBuf {
        let mut random = [0u8; 8];
        fill_random(&mut random).unwrap();
        let name: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let path = std::env::temp_dir().join(format!("portcullis-issue-files-{name}"));
        fs::create_dir(&path).unwrap();
        path
    }

    fn entries(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn new_nested_directory_created_with_files() {
        use std::os::unix::fs::PermissionsExt as _;

        let root = scratch();
        let out = root.join("a/b/issued");

        OutputDirectory::check(&out).unwrap().write(&FILES).unwrap();

        assert_eq!(entries(&out), ["cert.pem", "key.pem"]);
        assert_eq!(entries(&root.join("a/b")), ["issued"]);
        let mode = fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn existing_directory_keeps_other_files() {
        let root = scratch();
        fs::write(root.join("notes.txt"), "mine").unwrap();
        fs::write(root.join("cert.pem"), "old").unwrap();

        OutputDirectory::check(&root)
            .unwrap()
            .write(&FILES)
            .unwrap();

        assert_eq!(entries(&root), ["cert.pem", "key.pem", "notes.txt"]);
        assert_eq!(fs::read(root.join("cert.pem")).unwrap(), b"cert");
        assert_eq!(fs::read(root.join("notes.txt")).unwrap(), b"mine");
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn file_as_out_rejected_before_writing() {
        let root = scratch();
        fs::write(root.join("taken"), "file").unwrap();

        let error = OutputDirectory::check(&root.join("taken")).err().unwrap();
        let below = OutputDirectory::check(&root.join("taken/issued"))
            .err()
            .unwrap();

        assert!(error.to_string().contains("not a directory"), "{error}");
        assert!(below.to_string().contains("not a directory"), "{below}");
        assert_eq!(entries(&root), ["taken"]);
        fs::remove_dir_all(root).unwrap();
    }

    /// A file name that cannot be created fails the write after the
    /// staging directory and the missing parents exist, and both go again.
    #[test]
    fn failed_write_removes_what_it_created() {
        let root = scratch();
        let out = root.join("a/issued");
        let bad = [OutputFile {
            name: "missing-directory/key.pem",
            contents: b"key",
            mode: 0o600,
        }];

        let result = OutputDirectory::check(&out).unwrap().write(&bad);

        assert!(result.is_err());
        assert!(entries(&root).is_empty(), "{:?}", entries(&root));
        fs::write(root.join("notes.txt"), "mine").unwrap();
        let result = OutputDirectory::check(&root).unwrap().write(&bad);
        assert!(result.is_err());
        assert_eq!(entries(&root), ["notes.txt"]);
        fs::remove_dir_all(root).unwrap();
    }
}
