//! `portcullis scan` against a fixture repository built here with git:
//! one commit adds a usable key, one adds a key that is revoked and a
//! look-alike with a wrong checksum, and a last commit deletes the usable
//! key, so only the history still contains it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use portcullis_store::{AuditAction, AuditFilter};
use serde_json::Value;
use support::DataDir;

/// Exit code of a scan that found a usable key.
const USABLE_KEY_FOUND: i32 = 3;

/// Runs git in `dir` with a fixed identity, failing the test on an error.
fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Fixture",
            "-c",
            "user.email=fixture@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Changes the last checksum character, so the string keeps a key's shape
/// but fails the checksum.
fn look_alike(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

struct Fixture {
    data: DataDir,
    repo: tempfile::TempDir,
    usable_id: String,
    usable: String,
    revoked_id: String,
    revoked: String,
    added_usable: String,
}

impl Fixture {
    fn new() -> Self {
        let data = DataDir::new();
        data.cli(&["tenants", "create", "acme"]);
        let (usable_id, usable) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
        let (revoked_id, revoked) =
            data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
        data.cli(&["keys", "revoke", &revoked_id, "--reason", "rotated by hand"]);

        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path();
        git(dir, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(
            dir.join("config.env"),
            format!("# staging\nAPI_KEY={usable}\n"),
        )
        .unwrap();
        git(dir, &["add", "config.env"]);
        git(dir, &["commit", "--quiet", "-m", "Add staging settings"]);
        let added_usable = head(dir);

        let notes = format!("old key: \"{revoked}\"\nexample: {}\n", look_alike(&usable));
        std::fs::write(dir.join("notes.md"), notes).unwrap();
        git(dir, &["add", "notes.md"]);
        git(dir, &["commit", "--quiet", "-m", "Add notes"]);

        git(dir, &["rm", "--quiet", "config.env"]);
        git(dir, &["commit", "--quiet", "-m", "Remove the key"]);

        Self {
            data,
            repo,
            usable_id,
            usable,
            revoked_id,
            revoked,
            added_usable,
        }
    }

    fn scan(&self, args: &[&str]) -> Output {
        let output = self.data.command().args(args).output().unwrap();
        self.assert_no_secret(&output);
        output
    }

    fn scan_json(&self, args: &[&str], expected_code: i32) -> Value {
        let mut all = vec!["--output", "json", "scan"];
        all.extend_from_slice(args);
        let output = self.scan(&all);
        assert_eq!(
            output.status.code(),
            Some(expected_code),
            "stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn assert_no_secret(&self, output: &Output) {
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(!text.contains(&self.usable), "usable key printed: {text}");
            assert!(!text.contains(&self.revoked), "revoked key printed: {text}");
            assert!(
                !text.contains(&look_alike(&self.usable)),
                "look-alike printed: {text}"
            );
        }
    }

    fn repo_path(&self) -> &str {
        self.repo.path().to_str().unwrap()
    }
}

fn head(dir: &Path) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Returns the report entry of the key with `id`.
fn entry<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["key_id"] == id)
        .unwrap_or_else(|| panic!("key {id} not in report: {report:#}"))
}

#[test]
fn working_tree_misses_deleted_key() {
    let fixture = Fixture::new();
    let report = fixture.scan_json(&[fixture.repo_path()], 0);

    let keys = report["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{report:#}");
    let revoked = entry(&report, &fixture.revoked_id);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["tenant"], "acme");
    assert_eq!(revoked["visible_prefix"], &fixture.revoked[..12]);
    let location = &revoked["locations"][0];
    assert!(location["path"].as_str().unwrap().ends_with("notes.md"));
    assert_eq!(location["line"], 1);
    assert_eq!(location["column"], 11);
    assert_eq!(report["look_alikes"], 1);
    assert_eq!(report["usable"], 0);

    let skipped = report["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|entry| entry["path"].as_str().unwrap().ends_with(".git")),
        "{report:#}"
    );
}

#[test]
fn git_history_finds_deleted_key() {
    let fixture = Fixture::new();
    let report = fixture.scan_json(&["--git", fixture.repo_path()], USABLE_KEY_FOUND);

    assert_eq!(report["keys"].as_array().unwrap().len(), 2, "{report:#}");
    let usable = entry(&report, &fixture.usable_id);
    assert_eq!(usable["status"], "active");
    assert_eq!(usable["tenant"], "acme");
    assert_eq!(usable["revoked_by_scan"], false);
    let locations = usable["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 1, "{report:#}");
    assert_eq!(locations[0]["commit"], fixture.added_usable.as_str());
    assert_eq!(locations[0]["path"], "config.env");
    assert_eq!(locations[0]["line"], 2);
    assert_eq!(locations[0]["column"], 9);

    assert_eq!(entry(&report, &fixture.revoked_id)["status"], "revoked");
    assert_eq!(report["look_alikes"], 1);
    assert_eq!(report["usable"], 1);
    assert_eq!(
        fixture.data.tenant_key("acme", &fixture.usable_id)["status"],
        "active"
    );
}

#[test]
fn table_names_commit_and_path() {
    let fixture = Fixture::new();
    let output = fixture.scan(&["scan", "--git", fixture.repo_path()]);
    assert_eq!(output.status.code(), Some(USABLE_KEY_FOUND));
    let text = String::from_utf8(output.stdout).unwrap();
    let place = format!("{}:config.env:2:9", fixture.added_usable);
    let row = text
        .lines()
        .find(|line| line.starts_with(&place))
        .unwrap_or_else(|| panic!("no row for {place}: {text}"));
    assert!(row.contains(&fixture.usable_id), "{row}");
    assert!(row.contains(&fixture.usable[..12]), "{row}");
    assert!(row.ends_with("active"), "{row}");
}

#[tokio::test]
async fn revoke_ends_only_usable_key() {
    let fixture = Fixture::new();
    let report = fixture.scan_json(
        &[
            "--git",
            "--revoke",
            "--reason",
            "pushed to a public fork",
            fixture.repo_path(),
        ],
        USABLE_KEY_FOUND,
    );
    assert_eq!(entry(&report, &fixture.usable_id)["revoked_by_scan"], true);
    assert_eq!(
        entry(&report, &fixture.revoked_id)["revoked_by_scan"],
        false
    );

    let usable = fixture.data.tenant_key("acme", &fixture.usable_id);
    assert_eq!(usable["status"], "revoked");
    let reason = usable["revoked_reason"].as_str().unwrap();
    let place = format!("{}:config.env:2:9", fixture.added_usable);
    assert!(reason.starts_with("pushed to a public fork"), "{reason}");
    assert!(reason.contains("found by portcullis scan"), "{reason}");
    assert!(reason.contains(&place), "{reason}");
    let revoked = fixture.data.tenant_key("acme", &fixture.revoked_id);
    assert_eq!(revoked["revoked_reason"], "rotated by hand");

    let store = fixture.data.open_store().await;
    let events = store
        .list_audit(&AuditFilter {
            tenant_id: None,
            action: Some(AuditAction::KeyRevoked),
            target: Some(fixture.usable_id.clone()),
            limit: 10,
        })
        .await
        .unwrap();
    store.close().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "cli");
    assert_eq!(events[0].details["reason"], reason);

    // Nothing usable is left, so a second scan passes.
    let again = fixture.scan_json(&["--git", fixture.repo_path()], 0);
    assert_eq!(again["usable"], 0);
}

#[test]
fn skips_links_binary_and_large_files() {
    let fixture = Fixture::new();
    let tree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let key = &fixture.usable;
    std::fs::write(outside.path().join("secret.txt"), key).unwrap();
    std::os::unix::fs::symlink(outside.path(), tree.path().join("linked")).unwrap();
    std::fs::write(
        tree.path().join("image.bin"),
        [b"\x89PNG\0\0".as_slice(), key.as_bytes()].concat(),
    )
    .unwrap();
    let large = format!("{}{key}", " ".repeat(2000));
    std::fs::write(tree.path().join("large.txt"), large).unwrap();
    let tree_path = tree.path().to_str().unwrap();

    let report = fixture.scan_json(&["--max-file-size", "1000", tree_path], 0);
    assert_eq!(report["keys"].as_array().unwrap().len(), 0, "{report:#}");
    assert_eq!(report["scanned"], 0);
    let reasons: Vec<(String, String)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let path = entry["path"].as_str().unwrap();
            let name = Path::new(path).file_name().unwrap().to_str().unwrap();
            (
                name.to_owned(),
                entry["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reason_of = |name: &str| {
        reasons
            .iter()
            .find(|(skipped, _)| skipped == name)
            .map(|(_, reason)| reason.clone())
            .unwrap_or_else(|| panic!("{name} not skipped: {reasons:?}"))
    };
    assert!(reason_of("linked").contains("symbolic link"));
    assert!(reason_of("image.bin").contains("binary"));
    assert!(reason_of("large.txt").contains("larger than 1000 bytes"));
}

#[test]
fn exit_codes_for_errors() {
    let fixture = Fixture::new();
    let missing = fixture.repo.path().join("missing");
    let output = fixture.scan(&["scan", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));

    let not_a_repo = tempfile::tempdir().unwrap();
    let output = fixture.scan(&["scan", "--git", not_a_repo.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("git rev-list failed"), "{message}");

    let output = fixture.scan(&["scan", "--revoke", fixture.repo_path()]);
    assert_eq!(output.status.code(), Some(2));

    let long_reason = "x".repeat(101);
    let output = fixture.scan(&[
        "scan",
        "--revoke",
        "--reason",
        &long_reason,
        fixture.repo_path(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        fixture.data.tenant_key("acme", &fixture.usable_id)["status"],
        "active"
    );
}

#[test]
fn help_lists_exit_codes() {
    let data = DataDir::new();
    let output = data.command().args(["scan", "--help"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Exit codes:"), "{text}");
    assert!(text.contains("3  at least one usable"), "{text}");
}
