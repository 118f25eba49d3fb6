//! Test harness: the real `portcullis` binary on a free port with real TLS,
//! in front of a real upstream HTTP server, driven by a real HTTP client.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]
#![allow(unreachable_pub, reason = "the harness is a module of each test crate")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "a harness failure should fail the test at once, and it waits on processes, not tasks"
)]

pub mod browser;
pub mod mtls;
pub mod raw;
pub mod services;
pub mod upstream;
pub mod webhook;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Returns `ready`. When it is false, fails the test under `CI=true` with
/// `message`, which says what is missing, and otherwise prints it as a
/// notice, so a machine without an optional runtime still passes.
pub fn runtime_available(message: &str, ready: bool) -> bool {
    if ready {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("skipping: {message}");
    false
}

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// A data directory and the CLI commands run against it.
pub struct DataDir {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

impl DataDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            database_url: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(binary());
        command.env_clear();
        command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        // A free port for each server's metrics listener, so that servers
        // of parallel tests never compete for the default port.
        command.env("PORTCULLIS_METRICS__LISTEN", "127.0.0.1:0");
        command.arg("--data-dir").arg(self.path());
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command
    }

    /// Runs a CLI command and returns its output, failing the test when it
    /// exits non-zero.
    pub fn cli(&self, args: &[&str]) -> Output {
        let output = self.command().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "portcullis {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Opens the data directory's store as `serve` does: the SQLite file,
    /// or `database_url` when set, with the audit chain key derived from
    /// the directory's master key, so the test can write audit records.
    pub async fn open_store(&self) -> portcullis_store::Store {
        let store = match &self.database_url {
            Some(url) => portcullis_store::Store::open_postgres(url).await,
            None => portcullis_store::Store::open_sqlite(&self.path().join("portcullis.db")).await,
        }
        .unwrap();
        let encoded = std::fs::read_to_string(self.path().join("master.key")).unwrap();
        let master_key = portcullis_core::crypto::MasterKey::from_encoded(&encoded).unwrap();
        store
            .attach_audit_key(master_key.audit_chain_key())
            .await
            .unwrap()
    }

    /// Runs a CLI command that must fail and returns its error output.
    pub fn cli_error(&self, args: &[&str]) -> String {
        let output = self.command().args(args).output().unwrap();
        assert!(!output.status.success(), "portcullis {args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Runs a CLI command with `--output json` and parses its output.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let output = self.cli(&all);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "portcullis {args:?} printed no JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Creates a key and returns (id, secret).
    pub fn create_key(&self, args: &[&str]) -> (String, String) {
        let mut all = vec!["keys", "create"];
        all.extend_from_slice(args);
        let created = self.cli_json(&all);
        (
            created["id"].as_str().unwrap().to_owned(),
            created["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Returns key `id` of `tenant` as `keys list --output json` prints it.
    pub fn tenant_key(&self, tenant: &str, id: &str) -> Value {
        let keys = self.cli_json(&["keys", "list", "--tenant", tenant]);
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("key {id} not listed for {tenant}: {keys}"))
    }

    /// Creates a user of `tenant` with `role` (admin, developer or viewer)
    /// through the CLI, reading the password from the environment as an
    /// operator would.
    pub fn create_user(&self, tenant: &str, email: &str, role: &str, password: &str) {
        let output = self
            .command()
            .args(["users", "create", "--tenant", tenant, "--email", email])
            .args(["--role", role])
            .env("PORTCULLIS_USER_PASSWORD", password)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Returns every audit record of `tenant` as `audit-log export` prints
    /// them.
    pub fn exported_audit(&self, tenant: &str) -> Vec<Value> {
        let output = self.cli(&["audit-log", "export", "--tenant", tenant]);
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .collect()
    }

    /// Returns the records of `tenant` from `audit-log export` whose action
    /// is `action` and whose target is `target`.
    pub fn audit_records(&self, tenant: &str, action: &str, target: &str) -> Vec<Value> {
        self.exported_audit(tenant)
            .into_iter()
            .filter(|record| record["action"] == action && record["target"] == target)
            .collect()
    }

    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.path().join("portcullis.toml"), toml).unwrap();
    }
}

/// A running `portcullis serve`.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    /// The metrics listener's address, `None` with `metrics.listen = "off"`.
    pub metrics_address: Option<SocketAddr>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub ca_pem: Vec<u8>,
}

impl Server {
    /// Starts `serve` on a free port and waits for its `listening` line.
    pub fn start(data: &DataDir) -> Self {
        Self::start_with(data, &[])
    }

    pub fn start_with(data: &DataDir, env: &[(&str, &str)]) -> Self {
        let mut command = data.command();
        command
            .args(["serve", "--log-format", "json"])
            .env("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0")
            .env("PORTCULLIS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        watch_for_exit(child.id());
        let stderr = child.stderr.take().unwrap();

        let logs = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "listening"
                {
                    {
                        let _ =
                            sender.send(event["address"].as_str().unwrap_or_default().to_owned());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });

        let address = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not report its address; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let ca_pem = std::fs::read(data.path().join("tls/ca.pem")).unwrap_or_default();
        // The metrics line comes before `listening`, so it is already logged.
        let metrics_address = logs.lock().unwrap().iter().find_map(|line| {
            let event = serde_json::from_str::<Value>(line).ok()?;
            (event["message"] == "metrics listening")
                .then(|| event["address"].as_str().unwrap().parse().unwrap())
        });
        Self {
            child,
            address,
            metrics_address,
            logs,
            ca_pem,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.address.port())
    }

    /// An HTTPS client that trusts only the server's development CA.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", self.address)
            .no_proxy()
            .build()
            .unwrap()
    }

    /// Scrapes the metrics listener and returns the status, the
    /// `Content-Type` and the body.
    pub async fn scrape(&self) -> (u16, String, String) {
        let address = self
            .metrics_address
            .expect("the server logged no metrics address");
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// Sends SIGTERM and waits for the process to exit.
    ///
    /// The wait yields to the test's runtime, because the test's HTTP/2
    /// clients live there: they must answer the server's GOAWAY and PING
    /// for the server to close their idle connections before its grace
    /// period ends.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM; last log lines:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `lines` lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let logs = self.logs.lock().unwrap();
        logs[logs.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the response header `name`, which must be visible ASCII.
pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

/// Starts a shell that kills the server `server_pid` once this test process
/// has exited. Servers kept in `static` fixtures are never dropped, so
/// without it they would outlive the test binary. The shell also ends when
/// the server stops first.
fn watch_for_exit(server_pid: u32) {
    let script = format!(
        "while kill -0 {test} 2>/dev/null && kill -0 {server} 2>/dev/null; do sleep 1; done; \
         kill -0 {test} 2>/dev/null || kill -KILL {server} 2>/dev/null; true",
        test = std::process::id(),
        server = server_pid,
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A fresh marker for `X-Test-Case`.
pub fn marker() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Reads every file under `dir` (the database, its WAL, TLS files) as bytes.
pub fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        } else if let Ok(content) = std::fs::read(&path) {
            bytes.extend_from_slice(&content);
        }
    }
    bytes
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Percent-encodes every byte except ASCII letters and digits, which covers
/// at least the characters that a proxy's URL encoding of a PEM encodes.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
