//! Scanning files and directory trees on disk.
//!
//! A path named on the command line is opened as given, even through a
//! symbolic link. Inside a directory no symbolic link is followed, so the
//! walk cannot leave the tree or loop, and `.git` directories are skipped
//! because their objects are compressed: `--git` reads them through git.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use anyhow::Context;

use super::{Location, Scan};

/// Scans one file, or every regular file under one directory.
pub(super) fn scan_path(path: &Path, scan: &mut Scan) -> anyhow::Result<()> {
    let metadata = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_dir() {
        walk(path, scan);
        Ok(())
    } else if metadata.is_file() {
        scan_file(path, metadata.len(), scan);
        Ok(())
    } else {
        anyhow::bail!("{} is not a regular file or a directory", path.display())
    }
}

/// Walks `root` depth first, in name order. Problems inside the tree are
/// listed as skipped paths instead of ending the scan.
fn walk(root: &Path, scan: &mut Scan) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let name = directory.display().to_string();
        let entries = match fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) => {
                scan.skip(&name, &format!("cannot list the directory: {error}"));
                continue;
            }
        };
        let mut entries: Vec<fs::DirEntry> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(fs::DirEntry::file_name);

        let mut subdirectories = Vec::new();
        for entry in entries {
            let path = entry.path();
            let name = path.display().to_string();
            // `DirEntry::file_type` does not follow symbolic links.
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(error) => {
                    scan.skip(&name, &format!("cannot read the file type: {error}"));
                    continue;
                }
            };
            if file_type.is_symlink() {
                scan.skip(&name, "symbolic link, not followed");
            } else if file_type.is_dir() {
                if entry.file_name() == ".git" {
                    scan.skip(&name, "git metadata; scan the history with --git");
                } else {
                    subdirectories.push(path);
                }
            } else if file_type.is_file() {
                match entry.metadata() {
                    Ok(metadata) => scan_file(&path, metadata.len(), scan),
                    Err(error) => scan.skip(&name, &format!("cannot read the file: {error}")),
                }
            } else {
                scan.skip(&name, "not a regular file");
            }
        }
        // Pushed in reverse so the stack pops them in name order.
        pending.extend(subdirectories.into_iter().rev());
    }
}

/// Scans one regular file of `size` bytes, or lists it as skipped when it
/// is too large, unreadable or binary.
fn scan_file(path: &Path, size: u64, scan: &mut Scan) {
    let name = path.display().to_string();
    let limit = scan.max_file_size();
    if size > limit {
        scan.skip(&name, &format!("larger than {limit} bytes"));
        return;
    }

    // Read at most one byte past the limit, in case the file grew since
    // its size was read.
    let mut contents = Vec::new();
    let read = File::open(path).and_then(|file| {
        file.take(limit.saturating_add(1))
            .read_to_end(&mut contents)
    });
    if let Err(error) = read {
        scan.skip(&name, &format!("cannot read the file: {error}"));
        return;
    }
    if contents.len() as u64 > limit {
        scan.skip(&name, &format!("larger than {limit} bytes"));
        return;
    }

    for hit in scan.search(&name, &contents) {
        let location = Location::File {
            path: name.clone(),
            position: hit.position,
        };
        scan.record(hit.key, location);
    }
}
