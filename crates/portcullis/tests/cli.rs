//! The `portcullis` command line against a temporary SQLite data directory.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "helpers outside #[test] functions fail the test on unexpected output, as tests do"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use portcullis_core::crypto::MasterKey;
use serde_json::Value;
use tempfile::TempDir;

/// A data directory and the binary run against it with a clean environment.
struct DataDir {
    dir: TempDir,
}

impl DataDir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self) -> Command {
        let mut command = cargo_bin_cmd!("portcullis");
        command.env_clear().arg("--data-dir").arg(self.path());
        command
    }

    /// Runs `args`, expects success and returns standard output.
    fn run(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "portcullis {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `args` with `--output json`, expects success and parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let stdout = self.run(&all);
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
    }

    /// Runs `args`, expects exit code 1 and returns standard error.
    fn fail(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "portcullis {args:?}");
        String::from_utf8(output.stderr).unwrap()
    }

    fn tenant_names(&self) -> Vec<String> {
        let listed = self.json(&["tenants", "list"]);
        listed["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tenant| tenant["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Creates a key with `--output json` and returns (id, secret).
    fn create_key(&self, args: &[&str]) -> (String, String) {
        let mut all = vec!["keys", "create"];
        all.extend_from_slice(args);
        let created = self.json(&all);
        let id = created["id"].as_str().unwrap().to_owned();
        let key = created["key"].as_str().unwrap().to_owned();
        (id, key)
    }

    /// Finds the key with `id` in `keys list --output json` of `owner`.
    fn listed_key(&self, owner: &[&str], id: &str) -> Value {
        let mut args = vec!["keys", "list"];
        args.extend_from_slice(owner);
        let listed = self.json(&args);
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("key {id} not listed: {listed}"))
    }
}

/// Asserts that `stderr` is one line naming the problem.
fn assert_one_line(stderr: &str) {
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

/// Returns the 32 random characters between the prefix and the checksum.
fn random_part(secret: &str) -> &str {
    &secret[8..40]
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Returns the value of the `key` line in table output.
fn secret_from_table(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|line| line.starts_with("key "))
        .unwrap_or_else(|| panic!("no key line: {stdout}"));
    line["key".len()..].trim().to_owned()
}

#[test]
fn tenants_created_and_listed() {
    let data = DataDir::new();
    let stdout = data.run(&["tenants", "create", "acme-billing"]);
    assert!(stdout.contains("acme-billing"), "{stdout}");
    let created = data.json(&["tenants", "create", "globex"]);
    assert_eq!(created["name"], "globex");
    assert!(created["id"].as_str().is_some(), "{created}");

    let table = data.run(&["tenants", "list"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    assert!(table.contains("acme-billing"), "{table}");
    assert!(table.contains("globex"), "{table}");
    assert_eq!(data.tenant_names(), ["acme-billing", "globex"]);
}

#[test]
fn duplicate_tenant_rejected() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme-billing"]);
    let stderr = data.fail(&["tenants", "create", "acme-billing"]);
    assert_one_line(&stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("acme-billing"), "{stderr}");
    assert_eq!(data.tenant_names(), ["acme-billing"]);
}

#[test]
fn look_alike_tenant_names_rejected() {
    let data = DataDir::new();
    let cases = [
        ("\u{0430}cme-billing", "U+0430", "position 1"),
        ("acme-billing\u{200b}", "U+200B", "position 13"),
        (
            "\u{ff41}\u{ff43}\u{ff4d}\u{ff45}-billing",
            "U+FF41",
            "position 1",
        ),
        ("Acme-Billing", "U+0041", "position 1"),
    ];
    for (name, character, position) in cases {
        let stderr = data.fail(&["tenants", "create", name]);
        assert_one_line(&stderr);
        assert!(stderr.contains(character), "{name:?}: {stderr}");
        assert!(stderr.contains(position), "{name:?}: {stderr}");
        assert!(stderr.contains("NAME"), "{name:?}: {stderr}");
    }
    assert!(data.tenant_names().is_empty());
}

#[test]
fn key_created_as_table() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let stdout = data.run(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scopes",
        "orders:read,orders:write",
        "--name",
        "billing sync",
        "--expires-in",
        "90d",
    ]);
    let secret = secret_from_table(&stdout);
    assert!(secret.starts_with("pc_live_"), "{stdout}");
    assert_eq!(secret.len(), 46, "{stdout}");
    assert!(stdout.contains("orders:read,orders:write"), "{stdout}");
    assert!(stdout.contains("billing sync"), "{stdout}");
    assert!(stdout.contains("shown only this once"), "{stdout}");
}

#[test]
fn key_created_as_json() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let created = data.json(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scopes",
        "a:read,b:write",
        "--environment",
        "test",
    ]);
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("pc_test_"), "{created}");
    assert!(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).is_ok());
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["environment"], "test");
    assert_eq!(created["status"], "active");
    assert_eq!(created["scopes"], serde_json::json!(["a:read", "b:write"]));
    assert_eq!(created["prefix"], &key[..12]);
}

#[test]
fn operator_key_created_and_listed() {
    let data = DataDir::new();
    let (id, secret) = data.create_key(&[
        "--operator",
        "--scopes",
        "admin:read,admin:write,keys:verify",
    ]);
    let listed = data.listed_key(&["--operator"], &id);
    assert_eq!(listed["kind"], "operator");
    assert!(listed["tenant"].is_null());
    assert!(secret.starts_with("pc_live_"));
}

#[test]
fn key_list_never_prints_secret() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let (id, json_secret) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let table_output = data.run(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
        "--name",
        "second",
    ]);
    let table_secret = secret_from_table(&table_output);

    let table = data.run(&["keys", "list", "--tenant", "acme"]);
    let json = data.run(&["--output", "json", "keys", "list", "--tenant", "acme"]);
    for listing in [&table, &json] {
        for secret in [&json_secret, &table_secret] {
            assert!(!listing.contains(secret.as_str()), "{listing}");
            assert!(!listing.contains(random_part(secret)), "{listing}");
        }
        assert!(listing.contains(&id), "{listing}");
        assert!(listing.contains(&json_secret[..12]), "{listing}");
    }
    let header = table.lines().next().unwrap();
    for column in [
        "ID",
        "NAME",
        "PREFIX",
        "SCOPES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "LAST FROM",
        "STATUS",
    ] {
        assert!(header.contains(column), "{header}");
    }
    assert!(table.contains("active"), "{table}");
}

#[test]
fn revoked_key_listed_with_reason() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let (id, _) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let reason = "leaked in a CI log\nsee the incident notes";

    let stdout = data.run(&["keys", "revoke", &id, "--reason", reason]);
    assert!(stdout.contains("Revoked"), "{stdout}");
    assert!(stdout.contains("leaked in a CI log\\nsee"), "{stdout}");

    let listed = data.listed_key(&["--tenant", "acme"], &id);
    assert_eq!(listed["status"], "revoked");
    assert_eq!(listed["revoked_reason"], reason);
    assert_eq!(listed["created_by"], "cli");
    let table = data.run(&["keys", "list", "--tenant", "acme"]);
    assert!(table.contains("revoked"), "{table}");

    let stderr = data.fail(&["keys", "revoke", &id]);
    assert_one_line(&stderr);
    assert!(stderr.contains("already revoked"), "{stderr}");
}

#[test]
fn rotated_key_prints_new_secret() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let (id, old_secret) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);

    let rotated = data.json(&["keys", "rotate", &id, "--grace", "1h"]);
    let new_secret = rotated["new"]["key"].as_str().unwrap();
    let new_id = rotated["new"]["id"].as_str().unwrap();
    assert!(new_secret.starts_with("pc_live_"), "{rotated}");
    assert_ne!(new_secret, old_secret);
    assert_eq!(rotated["old"]["status"], "rotating");
    assert!(rotated["old"].get("key").is_none(), "{rotated}");
    assert_eq!(
        data.listed_key(&["--tenant", "acme"], &id)["status"],
        "rotating"
    );
    assert_eq!(
        data.listed_key(&["--tenant", "acme"], new_id)["status"],
        "active"
    );

    let stdout = data.run(&["keys", "rotate", new_id]);
    let third = secret_from_table(&stdout);
    assert!(third.starts_with("pc_live_"), "{stdout}");
    assert_ne!(third, new_secret);
    assert!(stdout.contains("rotating"), "{stdout}");

    let stderr = data.fail(&["keys", "rotate", &id]);
    assert_one_line(&stderr);
}

#[test]
fn invalid_key_input_named() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let cases: [(&[&str], &str); 5] = [
        (
            &["--tenant", "nobody", "--scopes", "a:read"],
            "no tenant named nobody",
        ),
        (
            &["--tenant", "acme", "--scopes", "\u{043e}rders:read"],
            "U+043E",
        ),
        (
            &[
                "--tenant",
                "acme",
                "--scopes",
                "a:read",
                "--expires-in",
                "soon",
            ],
            "--expires-in",
        ),
        (&["--tenant", "acme", "--scopes", ","], "at least one scope"),
        (&["--tenant", "Acme", "--scopes", "a:read"], "--tenant"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["keys", "create"];
        all.extend_from_slice(args);
        let stderr = data.fail(&all);
        assert_one_line(&stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let stderr = data.fail(&["keys", "revoke", "not-an-id"]);
    assert!(stderr.contains("invalid key id"), "{stderr}");
}

#[test]
fn key_narrowed_to_subset() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let (id, _) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read,orders:write"]);

    let stdout = data.run(&["keys", "narrow", &id, "--scopes", "orders:read"]);
    assert!(stdout.contains("to orders:read"), "{stdout}");
    let listed = data.listed_key(&["--tenant", "acme"], &id);
    assert_eq!(listed["scopes"], serde_json::json!(["orders:read"]));

    // The removed scope is now wider than the key's.
    let stderr = data.fail(&["keys", "narrow", &id, "--scopes", "orders:write"]);
    assert_one_line(&stderr);
    assert!(stderr.contains("invalid --scopes"), "{stderr}");
    assert!(stderr.contains("orders:write"), "{stderr}");
    let stderr = data.fail(&["keys", "narrow", &id, "--scopes", ""]);
    assert_one_line(&stderr);
    assert!(stderr.contains("at least one scope"), "{stderr}");
    let stderr = data.fail(&["keys", "narrow", &id, "--scopes", "orders:read"]);
    assert_one_line(&stderr);
    assert!(stderr.contains("equal"), "{stderr}");
    let stderr = data.fail(&["keys", "narrow", "not-an-id", "--scopes", "orders:read"]);
    assert_one_line(&stderr);

    let records = data.run(&["audit-log", "export", "--tenant", "acme"]);
    assert!(records.contains("\"key.scopes_narrowed\""), "{records}");
}

/// Creates a user of `tenant` with `role` and a fixed password.
fn create_user(data: &DataDir, tenant: &str, email: &str, role: &str) {
    let output = data
        .command()
        .env("PORTCULLIS_USER_PASSWORD", "correct horse battery staple")
        .args(["users", "create", "--tenant", tenant, "--email", email])
        .args(["--role", role])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn user_disabled_and_enabled() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    create_user(&data, "acme", "admin@acme.test", "admin");
    create_user(&data, "acme", "dev@acme.test", "developer");
    let dev = ["--tenant", "acme", "--email", "dev@acme.test"];

    let stdout = data.run(&[&["users", "disable"][..], &dev].concat());
    assert!(
        stdout.starts_with("Disabled user dev@acme.test"),
        "{stdout}"
    );
    let listed = data.json(&["users", "list", "--tenant", "acme"]);
    let user = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["email"] == "dev@acme.test")
        .unwrap();
    assert!(user["disabled_at"].is_string(), "{user}");
    let stderr = data.fail(&[&["users", "disable"][..], &dev].concat());
    assert_one_line(&stderr);
    assert!(stderr.contains("disabled already"), "{stderr}");

    let enabled = data.json(&[&["users", "enable"][..], &dev].concat());
    assert_eq!(enabled["email"], "dev@acme.test");
    assert!(enabled["disabled_at"].is_null(), "{enabled}");
    let stderr = data.fail(&[&["users", "enable"][..], &dev].concat());
    assert_one_line(&stderr);
    assert!(stderr.contains("not disabled"), "{stderr}");

    let records = data.run(&["audit-log", "export", "--tenant", "acme"]);
    assert!(records.contains("\"user.disabled\""), "{records}");
    assert!(records.contains("\"user.enabled\""), "{records}");
}

#[test]
fn user_disable_keeps_last_admin() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    create_user(&data, "acme", "admin@acme.test", "admin");
    let admin = ["--tenant", "acme", "--email", "admin@acme.test"];
    let stderr = data.fail(&[&["users", "disable"][..], &admin].concat());
    assert_one_line(&stderr);
    assert!(stderr.contains("last enabled admin"), "{stderr}");

    let stderr = data.fail(&[
        "users",
        "disable",
        "--tenant",
        "acme",
        "--email",
        "nobody@acme.test",
    ]);
    assert_one_line(&stderr);
    assert!(stderr.contains("no user nobody@acme.test"), "{stderr}");
    let stderr = data.fail(&[
        "users",
        "enable",
        "--tenant",
        "acme",
        "--email",
        "not-an-address",
    ]);
    assert_one_line(&stderr);
    assert!(stderr.contains("invalid --email"), "{stderr}");
}

#[test]
fn master_key_file_has_mode_0600() {
    let data = DataDir::new();
    let nested = data.path().join("nested");
    let mut command = cargo_bin_cmd!("portcullis");
    command
        .env_clear()
        .arg("--data-dir")
        .arg(&nested)
        .args(["tenants", "list"]);
    command.assert().success();

    let key_mode = std::fs::metadata(nested.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(&nested).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let text = std::fs::read_to_string(nested.join("master.key")).unwrap();
    assert!(MasterKey::from_encoded(&text).is_ok());
}

#[test]
fn environment_master_key_used_without_file() {
    let data = DataDir::new();
    let key = MasterKey::generate().unwrap().to_encoded();
    let mut command = data.command();
    command
        .env("PORTCULLIS_MASTER_KEY", &key)
        .args(["tenants", "create", "acme"]);
    command.assert().success();
    assert!(!data.path().join("master.key").exists());

    let mut again = data.command();
    again
        .env("PORTCULLIS_MASTER_KEY", &key)
        .args(["tenants", "list"]);
    again.assert().success();
}

#[test]
fn wrong_master_key_rejected() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let right = std::fs::read_to_string(data.path().join("master.key")).unwrap();
    let wrong = MasterKey::generate().unwrap().to_encoded();

    let output = data
        .command()
        .env("PORTCULLIS_MASTER_KEY", &wrong)
        .args(["tenants", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_one_line(&stderr);
    assert!(stderr.contains("PORTCULLIS_MASTER_KEY"), "{stderr}");
    assert!(stderr.contains("does not match"), "{stderr}");
    assert!(!stderr.contains(&wrong), "{stderr}");
    assert!(!stderr.contains(right.trim()), "{stderr}");

    let output = data
        .command()
        .env("PORTCULLIS_MASTER_KEY", "too-short")
        .args(["tenants", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("PORTCULLIS_MASTER_KEY is not a valid master key"),
        "{stderr}"
    );
    assert!(!stderr.contains("too-short"), "{stderr}");
}

#[test]
fn missing_master_key_file_not_replaced() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    std::fs::remove_file(data.path().join("master.key")).unwrap();

    let stderr = data.fail(&["tenants", "list"]);
    assert_one_line(&stderr);
    assert!(stderr.contains("master.key is missing"), "{stderr}");
    assert!(!data.path().join("master.key").exists());
}

#[test]
fn database_holds_no_secret() {
    let data = DataDir::new();
    data.run(&["tenants", "create", "acme"]);
    let mut secrets = Vec::new();
    let (id, secret) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    secrets.push(secret);
    let (_, secret) = data.create_key(&[
        "--tenant",
        "acme",
        "--scopes",
        "orders:read",
        "--environment",
        "test",
    ]);
    secrets.push(secret);
    let (_, secret) = data.create_key(&["--operator", "--scopes", "admin:read"]);
    secrets.push(secret);
    let rotated = data.json(&["keys", "rotate", &id]);
    secrets.push(rotated["new"]["key"].as_str().unwrap().to_owned());
    let table = data.run(&["keys", "create", "--tenant", "acme", "--scopes", "b:write"]);
    secrets.push(secret_from_table(&table));

    let mut bytes = Vec::new();
    for name in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
        if let Ok(content) = std::fs::read(data.path().join(name)) {
            bytes.extend(content);
        }
    }
    assert!(!bytes.is_empty());
    for secret in &secrets {
        assert!(!contains_bytes(&bytes, secret.as_bytes()), "secret stored");
        let random = random_part(secret);
        assert!(
            !contains_bytes(&bytes, random.as_bytes()),
            "random part stored"
        );
    }
}

#[test]
fn invalid_configuration_names_setting() {
    let data = DataDir::new();
    std::fs::write(
        data.path().join("portcullis.toml"),
        "[server]\nlisten = \"nowhere\"\n",
    )
    .unwrap();
    let stderr = data.fail(&["serve"]);
    assert_one_line(&stderr);
    assert!(stderr.contains("server.listen"), "{stderr}");
}

#[test]
fn serve_stops_on_sigterm() {
    let data = DataDir::new();
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin!("portcullis"))
        .env_clear()
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--log-format", "json", "--log-filter", "info"])
        .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_METRICS__LISTEN", "127.0.0.1:0")
        .env("PORTCULLIS_SERVER__PLAIN_HTTP", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let address = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            panic!("server exited before listening:\n{}", seen.join("\n"));
        };
        let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        seen.push(line);
        if event["message"] == "listening" {
            assert_eq!(event["scheme"], "http");
            break event["address"].as_str().unwrap().to_owned();
        }
    };
    assert!(
        seen.iter().any(|line| line.contains("plain HTTP")),
        "{seen:?}"
    );

    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let pid = child.id().to_string();
    let killed = StdCommand::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "exit {status:?}; logs:\n{}",
        rest.join("\n")
    );
    assert!(rest.iter().any(|line| line.contains("SIGTERM")), "{rest:?}");
}
