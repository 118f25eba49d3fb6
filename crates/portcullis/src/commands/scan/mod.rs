//! `portcullis scan`: finds API keys in files or in a git repository's
//! history, looks each one up by its keyed hash, and with `--revoke`
//! revokes the usable ones through the same [`Manager`] path as
//! `keys revoke`.
//!
//! - [`files`]: walking files and directories.
//! - [`git`]: reading every blob reachable from a repository's refs.
//!
//! Output names each key by its visible prefix and id only. The whole key
//! is held in a [`KeySecret`], wiped on drop, and never printed.
//!
//! [`Manager`]: portcullis_server::manage::Manager

mod files;
mod git;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_core::credential::{ApiKeyRecord, KeyStatus, shorten_label};
use portcullis_core::crypto::{SHA256_LEN, sha256};
use portcullis_core::key::KeySecret;
use portcullis_core::leak::{Verdict, find_candidates};
use serde_json::{Value, json};

use super::{Admin, manage_error};
use crate::cli::{GlobalArgs, OutputFormat, ScanArgs};
use crate::output::{self, Table};

/// Exit code when at least one usable key was found, so that a CI job
/// fails. 1 and 2 are taken by errors and by usage errors.
const USABLE_KEY_FOUND: u8 = 3;

/// Longest `--reason`, in characters. The place where the key was found is
/// appended, and the whole must fit in a revocation reason.
const MAX_REASON_LEN: usize = 100;

/// Files and blobs with a NUL byte among their first this many bytes are
/// treated as binary and skipped.
const BINARY_CHECK_LEN: usize = 8000;

/// Runs `portcullis scan`.
pub(crate) async fn run(
    global: &GlobalArgs,
    args: &ScanArgs,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    if let Some(reason) = &args.reason
        && reason.chars().count() > MAX_REASON_LEN
    {
        anyhow::bail!("invalid --reason: longer than {MAX_REASON_LEN} characters");
    }

    // Open the store first, so a wrong data directory or master key fails
    // before a long scan.
    let admin = Admin::open(global, env).await?;

    let mut scan = Scan::new(args.max_file_size);
    for path in &args.paths {
        if args.git {
            git::scan_repository(path, &mut scan)?;
        } else {
            files::scan_path(path, &mut scan)?;
        }
    }

    let now = portcullis_server::manage::now();
    for key in &mut scan.keys {
        key.record = admin
            .manager
            .key_by_secret(&key.secret)
            .await
            .map_err(|error| manage_error(error, |field| field))
            .context("looking up a found key failed")?;
        key.status = key.record.as_ref().map(|record| record.status(now));
    }

    if let Some(reason) = args.reason.as_deref().filter(|_| args.revoke) {
        revoke_usable(&admin, &mut scan, reason).await?;
    }

    match admin.output {
        OutputFormat::Json => output::print_json(&scan.to_json(args.revoke))?,
        OutputFormat::Table => output::print(&scan.to_text(args.revoke))?,
    }

    let usable = scan.keys.iter().any(FoundKey::is_usable);
    Ok(if usable {
        ExitCode::from(USABLE_KEY_FOUND)
    } else {
        ExitCode::SUCCESS
    })
}

/// Revokes every usable key in `scan`. The audit record's reason is
/// `reason` followed by the first place the key was found.
async fn revoke_usable(admin: &Admin, scan: &mut Scan, reason: &str) -> anyhow::Result<()> {
    for index in 0..scan.keys.len() {
        let Some(key) = scan.keys.get(index) else {
            continue;
        };
        let Some(record) = key.record.as_ref().filter(|_| key.is_usable()) else {
            continue;
        };
        let place = scan
            .sightings
            .iter()
            .find(|sighting| sighting.key == index)
            .map(|sighting| sighting.location.to_string())
            .unwrap_or_default();
        let full_reason = shorten_label(&format!("{reason} (found by portcullis scan at {place})"));
        let audit = admin.audit();
        let revoked = admin
            .manager
            .revoke_key(record.id, Some(&full_reason), &audit)
            .await
            .map_err(|error| manage_error(error, |field| field))
            .with_context(|| format!("revoking key {} failed", record.id))?;
        if let Some(key) = scan.keys.get_mut(index) {
            key.revoked = Some(revoked);
        }
    }
    Ok(())
}

/// Everything a scan found: the distinct keys, where each was seen, the
/// look-alikes and what was skipped.
pub(crate) struct Scan {
    max_file_size: u64,
    keys: Vec<FoundKey>,
    /// Index into `keys` by the SHA-256 of the whole key, so each key is
    /// looked up once however often it appears. The digest of a 190-bit
    /// random secret reveals nothing about it.
    index: HashMap<[u8; SHA256_LEN], usize>,
    sightings: Vec<Sighting>,
    look_alikes: usize,
    skipped: Vec<Skipped>,
    scanned: usize,
}

/// One distinct key and its stored record.
struct FoundKey {
    secret: KeySecret,
    /// The stored key, or `None` when no stored key has this secret.
    record: Option<ApiKeyRecord>,
    /// The status when found, before any revocation by this scan.
    status: Option<KeyStatus>,
    /// The record after this scan revoked it.
    revoked: Option<ApiKeyRecord>,
}

impl FoundKey {
    fn is_usable(&self) -> bool {
        self.status.is_some_and(KeyStatus::is_usable)
    }
}

/// One place where a key was found.
struct Sighting {
    key: usize,
    location: Location,
}

/// A line and column inside a file or blob, both counted from 1. The
/// column counts bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// The place where a key was found.
pub(crate) enum Location {
    /// In a file on disk.
    File { path: String, position: Position },
    /// In a blob of a git repository, added at `path` by `commit`. Without a
    /// commit, the blob is reachable but no commit's diff adds it (a merge
    /// resolution, or a tag pointing at the blob), and `path` is a name git
    /// gave it while listing objects.
    Git {
        commit: Option<String>,
        path: String,
        position: Position,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, position } => {
                write!(f, "{path}:{}:{}", position.line, position.column)
            }
            Self::Git {
                commit,
                path,
                position,
            } => write!(
                f,
                "{}:{path}:{}:{}",
                commit.as_deref().unwrap_or("(no commit)"),
                position.line,
                position.column
            ),
        }
    }
}

impl Location {
    fn to_json(&self) -> Value {
        match self {
            Self::File { path, position } => json!({
                "path": path,
                "line": position.line,
                "column": position.column,
            }),
            Self::Git {
                commit,
                path,
                position,
            } => json!({
                "commit": commit,
                "path": path,
                "line": position.line,
                "column": position.column,
            }),
        }
    }
}

/// A file, directory or blob that was not scanned, and why.
struct Skipped {
    path: String,
    reason: String,
}

/// A key found by [`Scan::search`]: its index and position.
pub(crate) struct Hit {
    pub(crate) key: usize,
    pub(crate) position: Position,
}

impl Scan {
    fn new(max_file_size: u64) -> Self {
        Self {
            max_file_size,
            keys: Vec::new(),
            index: HashMap::new(),
            sightings: Vec::new(),
            look_alikes: 0,
            skipped: Vec::new(),
            scanned: 0,
        }
    }

    /// Returns the size limit of a file or blob, in bytes.
    pub(crate) const fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Searches the contents of one file or blob and returns the keys in
    /// it. Look-alikes are only counted. Binary contents are skipped under
    /// `name` and return nothing.
    pub(crate) fn search(&mut self, name: &str, contents: &[u8]) -> Vec<Hit> {
        let head = contents.get(..BINARY_CHECK_LEN).unwrap_or(contents);
        if head.contains(&0) {
            self.skip(name, "binary contents (a NUL byte near the start)");
            return Vec::new();
        }
        self.scanned += 1;

        let mut hits = Vec::new();
        let mut lines = LineCounter::default();
        for candidate in find_candidates(contents) {
            let position = lines.advance(contents, candidate.offset);
            match candidate.verdict {
                Verdict::BadChecksum => self.look_alikes += 1,
                Verdict::Key(_) => {
                    let text = candidate.text(contents);
                    let Ok(secret) = KeySecret::parse(text) else {
                        continue;
                    };
                    let key = self.key_index(secret);
                    hits.push(Hit { key, position });
                }
            }
        }
        hits
    }

    /// Records that key `key` (from a [`Hit`]) was seen at `location`.
    pub(crate) fn record(&mut self, key: usize, location: Location) {
        self.sightings.push(Sighting { key, location });
    }

    /// Records that `path` was not scanned, and why.
    pub(crate) fn skip(&mut self, path: &str, reason: &str) {
        self.skipped.push(Skipped {
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn key_index(&mut self, secret: KeySecret) -> usize {
        let digest = sha256(secret.expose().as_bytes());
        if let Some(&index) = self.index.get(&digest) {
            return index;
        }
        let index = self.keys.len();
        self.keys.push(FoundKey {
            secret,
            record: None,
            status: None,
            revoked: None,
        });
        self.index.insert(digest, index);
        index
    }

    fn to_text(&self, revoke: bool) -> String {
        let mut headers = vec!["LOCATION", "PREFIX", "KEY ID", "TENANT", "STATUS"];
        if revoke {
            headers.push("ACTION");
        }
        let mut table = Table::new(&headers);
        for sighting in &self.sightings {
            let Some(key) = self.keys.get(sighting.key) else {
                continue;
            };
            let (id, tenant) = key_names(key.record.as_ref());
            let mut row = vec![
                sighting.location.to_string(),
                key.secret.visible_prefix(),
                id,
                tenant,
                status_text(key.status).to_owned(),
            ];
            if revoke {
                let action = if key.revoked.is_some() {
                    "revoked"
                } else {
                    "-"
                };
                row.push(action.to_owned());
            }
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            table.push(&cells);
        }

        let usable = self.keys.iter().filter(|key| key.is_usable()).count();
        let mut text = if self.sightings.is_empty() {
            String::new()
        } else {
            format!("{}\n", table.render())
        };
        text.push_str(&format!(
            "Scanned {} files or blobs: {} distinct keys, {} usable, {} look-alikes with a wrong checksum (not keys).\n",
            self.scanned,
            self.keys.len(),
            usable,
            self.look_alikes,
        ));
        if !self.skipped.is_empty() {
            text.push_str(&format!("Skipped {}:\n", self.skipped.len()));
            for skipped in &self.skipped {
                text.push_str(&format!(
                    "  {}: {}\n",
                    output::cell(&skipped.path),
                    skipped.reason
                ));
            }
        }
        text
    }

    fn to_json(&self, revoke: bool) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let locations: Vec<Value> = self
                    .sightings
                    .iter()
                    .filter(|sighting| sighting.key == index)
                    .map(|sighting| sighting.location.to_json())
                    .collect();
                let record = key.record.as_ref();
                json!({
                    "visible_prefix": key.secret.visible_prefix(),
                    "environment": key.secret.environment().as_str(),
                    "key_id": record.map(|record| record.id.to_string()),
                    "tenant": record.and_then(|record| record.tenant.as_ref()).map(|name| name.as_str()),
                    "status": status_text(key.status),
                    "revoked_by_scan": revoke && key.revoked.is_some(),
                    "locations": locations,
                })
            })
            .collect();
        let skipped: Vec<Value> = self
            .skipped
            .iter()
            .map(|skipped| json!({ "path": skipped.path, "reason": skipped.reason }))
            .collect();
        json!({
            "keys": keys,
            "usable": self.keys.iter().filter(|key| key.is_usable()).count(),
            "look_alikes": self.look_alikes,
            "scanned": self.scanned,
            "skipped": skipped,
        })
    }
}

/// Returns the id and owner columns of a key: `-` for a key the store does not
/// have, and `operator` for an operator key.
fn key_names(record: Option<&ApiKeyRecord>) -> (String, String) {
    match record {
        None => ("-".to_owned(), "-".to_owned()),
        Some(record) => (
            record.id.to_string(),
            record
                .tenant
                .as_ref()
                .map_or_else(|| "operator".to_owned(), |name| name.as_str().to_owned()),
        ),
    }
}

/// Returns the status of a key when found: the store's status, or `unknown` when
/// no stored key has that secret.
fn status_text(status: Option<KeyStatus>) -> &'static str {
    status.map_or("unknown", KeyStatus::as_str)
}

/// Turns byte offsets into lines and columns, for offsets in increasing
/// order, reading each byte once.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: usize,
    line_start: usize,
}

impl LineCounter {
    fn advance(&mut self, contents: &[u8], offset: usize) -> Position {
        let passed = contents.get(self.offset..offset).unwrap_or_default();
        for (index, byte) in passed.iter().enumerate() {
            if *byte == b'\n' {
                self.line += 1;
                self.line_start = self.offset + index + 1;
            }
        }
        self.offset = offset.max(self.offset);
        Position {
            line: self.line + 1,
            column: offset.saturating_sub(self.line_start) + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::key::Environment;

    use super::*;

    #[test]
    fn positions_count_lines_and_bytes() {
        let key = KeySecret::generate(Environment::Live).unwrap();
        let text = format!("first\n\nx = {}\n  {}", key.expose(), key.expose());
        let mut scan = Scan::new(1024);
        let hits = scan.search("file", text.as_bytes());
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].position, Position { line: 3, column: 5 });
        assert_eq!(hits[1].position, Position { line: 4, column: 3 });
        assert_eq!(hits[0].key, hits[1].key);
        assert_eq!(scan.keys.len(), 1);
    }

    #[test]
    fn binary_contents_are_skipped() {
        let key = KeySecret::generate(Environment::Live).unwrap();
        let contents = [b"\0\x01".as_slice(), key.expose().as_bytes()].concat();
        let mut scan = Scan::new(1024);
        assert!(scan.search("image.png", &contents).is_empty());
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(scan.scanned, 0);
    }
}
