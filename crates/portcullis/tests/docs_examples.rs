//! Runs the examples of the Markdown docs against the real binary, so an
//! example that no longer works, or prints something other than the page
//! shows, fails here.
//!
//! Each page's fenced code blocks run in order, in one working directory
//! per page, so a block can read the files that an earlier block wrote:
//!
//! - `sh` runs with `bash -e -o pipefail`, `python` with the interop
//!   virtual environment's Python (or `python3`), and `javascript` as an ES
//!   module with `node`, which Node 20 runs with its built-in `fetch`.
//! - An `output` block right after one of those holds the expected
//!   standard output. `…` in a line matches any text, and a line that is
//!   only `…` matches any number of lines.
//! - `toml` blocks must load as a configuration, through the same parser
//!   that `portcullis serve` uses.
//! - `json`, `http` and `text` blocks show data and are not run.
//! - A runnable block marked `no-run` after its language (`sh no-run`) is
//!   not run. Each page's count of such blocks is listed in [`PAGES`], so
//!   none is skipped without the list saying so.
//!
//! The examples read `API_BASE` (the server's URL) and `API_KEY` (a key of
//! their own tenant, with `customers:read`) from the environment, and curl,
//! requests, Python's `ssl` and Node trust the server's development CA
//! through `CURL_CA_BUNDLE`, `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE` and
//! `NODE_EXTRA_CA_CERTS`. The gateway serves `/v1/customers` (API keys),
//! `/v1/orders` (API keys and access tokens for `API_AUDIENCE`) and
//! `/v1/partner` (client certificates) from a test upstream that echoes
//! each request. `OAUTH_ISSUER` is the issuer, and the OAuth pages get
//! clients of their own (see [`oauth_env`]).
//!
//! Each example must finish within [`EXAMPLE_TIMEOUT`], so a hung example
//! fails the test instead of hanging it.
//!
//! When Python with `requests` or Node is missing, the tests fail under
//! `CI=true`, and elsewhere print a notice and pass.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the tests read CI from the environment, as the harness does"
)]

mod support;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use support::upstream::Upstream;
use support::{DataDir, Server};

/// Every page with code blocks, and how many of its runnable blocks are
/// marked `no-run`.
const PAGES: &[(&str, usize)] = &[
    ("consumers/api-keys.md", 0),
    ("consumers/errors.md", 0),
    ("consumers/jwt-access-tokens.md", 0),
    ("consumers/leaked-keys.md", 0),
    ("consumers/mutual-tls.md", 0),
    ("consumers/oauth-authorization-code.md", 0),
    ("consumers/oauth-client-credentials.md", 0),
    ("consumers/rate-limits.md", 0),
    ("consumers/rotating-keys.md", 0),
    ("operators/backups.md", 1),
    ("operators/install.md", 2),
    ("operators/master-key.md", 0),
    ("operators/metrics.md", 0),
    ("operators/multi-node.md", 0),
    ("operators/proxies.md", 0),
    ("operators/runbooks.md", 0),
    ("operators/tls.md", 0),
];

/// The scopes of each page's `API_KEY`.
const PAGE_KEY_SCOPES: &str = "customers:read";

/// The audience of the access tokens that `/v1/orders` accepts.
const API_AUDIENCE: &str = "https://api.example.com";

/// The password of the user who signs in on the authorization code page.
const USER_PASSWORD: &str = "correct horse battery staple";

struct Fixture {
    data: DataDir,
    server: Server,
    _upstream: Upstream,
}

/// The server of every page but the runbooks.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(start_fixture);

/// The runbooks' own server. Their compromised-signing-key runbook revokes
/// the key that signs access tokens, which would reject the tokens of pages
/// that run at the same time on a shared server.
static RUNBOOK_FIXTURE: LazyLock<Fixture> = LazyLock::new(start_fixture);

/// Returns the server that `page` runs against.
fn fixture(page: &str) -> &'static Fixture {
    if page == "operators/runbooks.md" {
        &RUNBOOK_FIXTURE
    } else {
        &FIXTURE
    }
}

fn start_fixture() -> Fixture {
    let upstream = Upstream::start();
    let data = DataDir::new();
    data.write_config(&format!(
        r#"
[server]
client_certificates = "optional"

[limits]
tenant = "100/s burst 200"

# Every example connects from 127.0.0.1, so the address's count of failed
# authentications adds up the failures that the pages show on purpose.
[limits.brute_force.client_ip]
slow_after = 200
block_after = 400

[[routes]]
path_prefix = "/v1/customers"
upstream = "{upstream}"
[routes.scopes]
GET = ["customers:read"]
POST = ["customers:write"]

[[routes]]
path_prefix = "/v1/exports"
upstream = "{upstream}"
rate_limit = "1/s"
[routes.scopes]
GET = ["customers:read"]

[[routes]]
path_prefix = "/v1/orders"
upstream = "{upstream}"
auth = ["api_key", "jwt"]
audience = "{API_AUDIENCE}"
[routes.scopes]
GET = ["orders:read"]
POST = ["orders:write"]

[[routes]]
path_prefix = "/v1/partner"
upstream = "{upstream}"
auth = ["mtls"]
[routes.scopes]
GET = ["orders:read"]
"#,
        upstream = upstream.url()
    ));
    // The internal CA signs the certificates of the mutual TLS page.
    data.cli(&["ca", "init"]);
    let server = Server::start(&data);
    Fixture {
        data,
        server,
        _upstream: upstream,
    }
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// A fenced code block: its language, whether it is marked `no-run`, its
/// text and the line it starts on.
#[derive(Debug)]
struct Block {
    language: String,
    no_run: bool,
    text: String,
    line: usize,
}

/// An open fence: its marker (three or more backticks or tildes), its
/// indentation and the block read so far.
struct OpenFence {
    marker: String,
    indent: usize,
    block: Block,
}

/// Returns the fenced code blocks of a Markdown text: fences of three or
/// more backticks or tildes, also indented ones inside lists, whose
/// content loses the fence's indentation as CommonMark specifies.
fn code_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<OpenFence> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(fence) = &mut open {
            if trimmed.trim_end() == fence.marker {
                blocks.push(open.take().unwrap().block);
                continue;
            }
            let strip = line
                .chars()
                .take(fence.indent)
                .take_while(|c| *c == ' ')
                .count();
            fence.block.text.push_str(&line[strip..]);
            fence.block.text.push('\n');
            continue;
        }
        let Some(first) = trimmed.chars().next().filter(|c| *c == '`' || *c == '~') else {
            continue;
        };
        let marker: String = trimmed.chars().take_while(|c| *c == first).collect();
        if marker.len() < 3 {
            continue;
        }
        let mut words = trimmed[marker.len()..].split_whitespace();
        let language = words.next().unwrap_or_default().to_owned();
        let no_run = words.any(|word| word == "no-run");
        open = Some(OpenFence {
            marker,
            indent,
            block: Block {
                language,
                no_run,
                text: String::new(),
                line: index + 1,
            },
        });
    }
    if let Some(fence) = open {
        panic!("the code block of line {} is not closed", fence.block.line);
    }
    blocks
}

/// Returns whether `actual` matches `expected`, line by line, where `…` in a line
/// matches any text and a line that is only `…` matches any number of
/// lines. Trailing blank lines do not count.
fn output_matches(expected: &str, actual: &str) -> bool {
    let expected: Vec<&str> = expected.trim_end().lines().collect();
    let actual: Vec<&str> = actual.trim_end().lines().collect();
    lines_match(&expected, &actual)
}

fn lines_match(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"…", rest)) => (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..])),
        Some((pattern, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(pattern, line) && lines_match(rest, more)),
    }
}

/// Returns whether `line` matches `pattern`, where each `…` matches any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        let Some(position) = rest.find(part) else {
            return false;
        };
        rest = &rest[position + part.len()..];
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Returns the interpreter of a runnable language and its script file
/// extension, or `None` when it is missing (which fails under `CI=true`).
fn interpreter(language: &str) -> Option<(PathBuf, &'static str)> {
    static PYTHON: LazyLock<Option<PathBuf>> = LazyLock::new(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/.venv/bin/python");
        let python = if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        };
        let ready = Command::new(&python)
            .args(["-c", "import requests"])
            .output()
            .is_ok_and(|output| output.status.success());
        runtime_available("Python with requests", ready).then_some(python)
    });
    static NODE: LazyLock<Option<PathBuf>> = LazyLock::new(|| {
        let ready = Command::new("node")
            .args(["-e", "if (typeof fetch !== 'function') process.exit(1)"])
            .output()
            .is_ok_and(|output| output.status.success());
        runtime_available("Node 20 or later", ready).then(|| PathBuf::from("node"))
    });
    match language {
        "sh" => Some((PathBuf::from("bash"), "sh")),
        "python" => PYTHON.clone().map(|path| (path, "py")),
        "javascript" => NODE.clone().map(|path| (path, "mjs")),
        other => panic!("{other} is not a runnable language"),
    }
}

/// Returns `ready`. When it is false, fails the test under `CI=true` and
/// otherwise prints a notice naming `what` is missing.
fn runtime_available(what: &str, ready: bool) -> bool {
    support::runtime_available(
        &format!("{what} is not installed, so the docs' examples in it cannot run"),
        ready,
    )
}

/// Returns whether `command` runs with `version_argument`. When it does
/// not, fails the test under `CI=true` and otherwise prints a notice naming
/// the Debian `package`.
fn command_available(command: &str, version_argument: &str, package: &str) -> bool {
    let ready = Command::new(command)
        .arg(version_argument)
        .output()
        .is_ok_and(|output| output.status.success());
    support::runtime_available(
        &format!(
            "{command} (Debian package {package}) is not installed, so the docs' examples \
             that run it cannot run"
        ),
        ready,
    )
}

/// Creates the keys of a page's examples and returns the variables they
/// run with: the server, the CA
/// to trust and keys of a tenant of the page's own. `OLD_API_KEY` was
/// rotated to `NEW_API_KEY` with an hour of grace, and `REVOKED_API_KEY`
/// was revoked.
fn page_env(page: &str) -> BTreeMap<String, String> {
    let fixture = fixture(page);
    let tenant = format!(
        "docs-{}",
        page.trim_end_matches(".md").replace(['/', '.'], "-")
    );
    fixture.data.cli(&["tenants", "create", &tenant]);
    let create = || {
        fixture.data.create_key(&[
            "--tenant",
            &tenant,
            "--scopes",
            PAGE_KEY_SCOPES,
            "--name",
            "docs example",
        ])
    };
    let (_, key) = create();
    let (old_id, old_key) = create();
    let rotated = fixture
        .data
        .cli_json(&["keys", "rotate", &old_id, "--grace", "1h"]);
    let new_key = rotated["new"]["key"].as_str().unwrap().to_owned();
    let (revoked_id, revoked_key) = create();
    fixture
        .data
        .cli(&["keys", "revoke", &revoked_id, "--reason", "docs example"]);

    let oauth = oauth_env(page, &tenant);
    let ca_file = fixture.data.path().join("tls/ca.pem").display().to_string();
    let binary_dir = support::binary().parent().unwrap().display().to_string();
    let path = std::env::var("PATH").unwrap_or_default();
    [
        ("API_BASE", fixture.server.url("")),
        ("API_KEY", key),
        ("OLD_API_KEY", old_key),
        ("NEW_API_KEY", new_key),
        ("REVOKED_API_KEY", revoked_key),
        ("TENANT", tenant),
        ("CURL_CA_BUNDLE", ca_file.clone()),
        ("REQUESTS_CA_BUNDLE", ca_file.clone()),
        ("NODE_EXTRA_CA_CERTS", ca_file.clone()),
        ("SSL_CERT_FILE", ca_file),
        (
            "PORTCULLIS_DATA_DIR",
            fixture.data.path().display().to_string(),
        ),
        ("PATH", format!("{binary_dir}:{path}")),
        ("NO_PROXY", "localhost,127.0.0.1".to_owned()),
        ("no_proxy", "localhost,127.0.0.1".to_owned()),
        ("OAUTH_ISSUER", fixture.server.url("")),
        ("API_AUDIENCE", API_AUDIENCE.to_owned()),
    ]
    .into_iter()
    .chain(oauth)
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// Registers the OAuth clients and users that `page` needs in `tenant`
/// and returns the variables that name them.
fn oauth_env(page: &str, tenant: &str) -> Vec<(&'static str, String)> {
    let data = &fixture(page).data;
    let create_client = |extra: &[&str]| {
        let mut args = vec![
            "clients",
            "create",
            "--tenant",
            tenant,
            "--name",
            "Docs example",
        ];
        args.extend_from_slice(extra);
        let created = data.cli_json(&args);
        let secret = created["client_secret"].as_str().unwrap_or_default();
        (
            created["client_id"].as_str().unwrap().to_owned(),
            secret.to_owned(),
        )
    };
    let machine = [
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
    ];
    match page {
        "consumers/oauth-client-credentials.md" => {
            let (id, secret) = create_client(&machine);
            let mut post = machine.to_vec();
            post.extend(["--auth-method", "client_secret_post"]);
            let (post_id, post_secret) = create_client(&post);
            vec![
                ("CLIENT_ID", id),
                ("CLIENT_SECRET", secret),
                ("POST_CLIENT_ID", post_id),
                ("POST_CLIENT_SECRET", post_secret),
            ]
        }
        "consumers/jwt-access-tokens.md" => {
            let (id, secret) = create_client(&machine);
            vec![("CLIENT_ID", id), ("CLIENT_SECRET", secret)]
        }
        "consumers/oauth-authorization-code.md" => {
            let (id, _) = create_client(&[
                "--grant-types",
                "authorization_code,refresh_token",
                "--scopes",
                "orders:read,orders:write",
                "--public",
                "--redirect-uri",
                "http://127.0.0.1/callback",
            ]);
            let email = format!("{tenant}@example.com");
            data.create_user(tenant, &email, "viewer", USER_PASSWORD);
            vec![
                ("CLIENT_ID", id),
                ("USER_EMAIL", email),
                ("USER_PASSWORD", USER_PASSWORD.to_owned()),
            ]
        }
        "consumers/mutual-tls.md" => {
            let created = support::mtls::create_tls_client(data, tenant, &[]);
            vec![(
                "CLIENT_ID",
                created["client_id"].as_str().unwrap().to_owned(),
            )]
        }
        "operators/runbooks.md" => {
            // A client with a certificate from the internal CA, and a
            // partner CA, for the compromised-certificate runbook.
            let created = support::mtls::create_tls_client(data, tenant, &[]);
            let client_id = created["client_id"].as_str().unwrap();
            support::mtls::issue(data, client_id, tenant);
            // A second certificate and a second CA, listed before the
            // compromised ones, so that the runbook must pick by SHA-256.
            let leaked = data.path().join(tenant).join("cert.pem");
            support::mtls::issue(data, client_id, &format!("{tenant}-renewed"));
            support::mtls::trust_partner(data, &support::mtls::PartnerCa::new(), tenant);
            let partner_ca = data.path().join(format!("{tenant}-compromised-ca.pem"));
            std::fs::copy(
                data.path().join(format!("partner-ca-{tenant}.pem")),
                &partner_ca,
            )
            .unwrap();
            support::mtls::trust_partner(
                data,
                &support::mtls::PartnerCa::named("Other CA"),
                tenant,
            );
            vec![
                ("LEAKED_CERT", leaked.to_str().unwrap().to_owned()),
                ("PARTNER_CA", partner_ca.to_str().unwrap().to_owned()),
            ]
        }
        _ => Vec::new(),
    }
}

/// Runs every block of `page` in order and checks each output and
/// configuration it shows.
fn run_page(page: &str) {
    let (_, expected_no_run) = PAGES
        .iter()
        .find(|(listed, _)| *listed == page)
        .unwrap_or_else(|| panic!("{page} is not listed in PAGES"));
    let markdown = std::fs::read_to_string(docs_dir().join(page)).unwrap();
    let blocks = code_blocks(&markdown);
    let env = page_env(page);
    let work = tempfile::tempdir().unwrap();

    let mut no_run = 0;
    let mut previous_output: Option<String> = None;
    for (index, block) in blocks.iter().enumerate() {
        let at = format!("{page}:{}", block.line);
        match block.language.as_str() {
            "sh" | "python" | "javascript" if block.no_run => no_run += 1,
            "sh" | "python" | "javascript" => {
                previous_output = run_block(block, index, &env, work.path(), &at, page);
                continue;
            }
            "output" => {
                let actual = previous_output.take().unwrap_or_else(|| {
                    panic!("{at}: an output block must follow a block that ran")
                });
                assert!(
                    output_matches(&block.text, &actual),
                    "{at}: the output differs from the page.\n--- page:\n{}--- actual:\n{actual}",
                    block.text
                );
            }
            "toml" => {
                if let Err(error) =
                    portcullis_server::config::from_toml(&block.text, &BTreeMap::new())
                {
                    panic!("{at}: the configuration does not load: {error}");
                }
            }
            "json" | "http" | "text" => {}
            other => panic!(
                "{at}: unknown code block language {other:?}; use sh, python, javascript, \
                 output, toml, json, http or text"
            ),
        }
        previous_output = None;
    }
    assert_eq!(
        no_run, *expected_no_run,
        "{page}: the count of no-run blocks changed; update PAGES"
    );
}

/// Runs one block and returns its standard output, or `None` when its
/// interpreter is missing outside CI. Fails the test when it exits non-zero.
fn run_block(
    block: &Block,
    index: usize,
    env: &BTreeMap<String, String>,
    work: &Path,
    at: &str,
    page: &str,
) -> Option<String> {
    let (program, extension) = interpreter(&block.language)?;
    let script = work.join(format!("block-{index}.{extension}"));
    std::fs::write(&script, &block.text).unwrap();
    let mut command = Command::new(&program);
    if block.language == "sh" {
        command.args(["-e", "-o", "pipefail"]);
    }
    command
        .arg(&script)
        .current_dir(work)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout ends the example's child
        // processes too, which would otherwise keep its pipes open.
        .process_group(0);
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("{at}: failed to start {}: {error}", program.display()));
    let output = wait_with_timeout(child, at, EXAMPLE_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{at}: the example failed ({}):\n{}\nstdout:\n{stdout}\nstderr:\n{}\nserver logs:\n{}",
        output.status,
        block.text,
        String::from_utf8_lossy(&output.stderr),
        fixture(page).server.log_tail(20)
    );
    Some(stdout)
}

/// How long one example may run before it fails the test. The slowest
/// examples sign a user in and exchange codes, which takes a few seconds.
const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for an example's process and collects its output. After
/// `timeout` it kills the process group and fails the test, so a hung
/// example cannot hang the test run.
fn wait_with_timeout(mut child: Child, at: &str, timeout: Duration) -> Output {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stderr.read_to_end(&mut bytes).map(|_| bytes)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            panic!(
                "{at}: the example did not finish within {} s and was stopped",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Processes that the example left running in the background would keep
    // the pipes open, so they end with it.
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    Output {
        status,
        stdout: stdout_reader.join().unwrap().unwrap(),
        stderr: stderr_reader.join().unwrap().unwrap(),
    }
}

/// Pages under `docs/` whose Markdown contains a runnable block.
fn pages_with_examples() -> Vec<String> {
    fn walk(root: &Path, directory: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, found);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "md") {
                continue;
            }
            let markdown = std::fs::read_to_string(&path).unwrap();
            if !code_blocks(&markdown).is_empty() {
                let relative = path.strip_prefix(root).unwrap();
                found.push(relative.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(&docs_dir(), &docs_dir(), &mut found);
    found.sort();
    found
}

#[test]
fn every_page_with_code_listed() {
    let mut listed: Vec<String> = PAGES.iter().map(|(page, _)| (*page).to_owned()).collect();
    listed.sort();
    assert_eq!(pages_with_examples(), listed);
}

#[test]
fn output_pattern_matching() {
    assert!(output_matches("200\n", "200\n"));
    assert!(!output_matches("200\n", "401\n"));
    assert!(output_matches(
        "RateLimit: …;r=…\n",
        "RateLimit: \"tenant\";r=199;t=0\n"
    ));
    assert!(output_matches("a\n…\nz\n", "a\nb\nc\nz\n"));
    assert!(output_matches("a\n…\nz\n", "a\nz\n"));
    assert!(!output_matches("a\n…\nz\n", "a\nb\n"));
    assert!(!output_matches("x…y\n", "xz\n"));
}

#[test]
#[should_panic(expected = "did not finish within 1 s")]
fn hung_example_stopped() {
    // The background `sleep` keeps the output pipes open, as a hung
    // server started by an example would.
    let child = Command::new("bash")
        .args(["-c", "sleep 30 & wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_with_timeout(child, "hung example", Duration::from_secs(1));
}

#[test]
fn fences_parsed() {
    let markdown =
        "text\n\n```sh\necho hi\n```\n\n1. step\n\n   ```python no-run\n   print(1)\n   ```\n";
    let blocks = code_blocks(markdown);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].language, "sh");
    assert_eq!(blocks[0].text, "echo hi\n");
    assert!(!blocks[0].no_run);
    assert_eq!(blocks[1].language, "python");
    assert_eq!(blocks[1].text, "print(1)\n");
    assert!(blocks[1].no_run);
}

#[test]
fn consumers_api_keys() {
    run_page("consumers/api-keys.md");
}

#[test]
fn consumers_errors() {
    run_page("consumers/errors.md");
}

#[test]
fn consumers_leaked_keys() {
    run_page("consumers/leaked-keys.md");
}

#[test]
fn consumers_jwt_access_tokens() {
    run_page("consumers/jwt-access-tokens.md");
}

#[test]
fn consumers_mutual_tls() {
    run_page("consumers/mutual-tls.md");
}

#[test]
fn consumers_oauth_authorization_code() {
    run_page("consumers/oauth-authorization-code.md");
}

#[test]
fn consumers_oauth_client_credentials() {
    run_page("consumers/oauth-client-credentials.md");
}

#[test]
fn consumers_rate_limits() {
    run_page("consumers/rate-limits.md");
}

#[test]
fn consumers_rotating_keys() {
    run_page("consumers/rotating-keys.md");
}

#[test]
fn operators_metrics() {
    if command_available("promtool", "--version", "prometheus") {
        run_page("operators/metrics.md");
    }
}

#[test]
fn operators_backups() {
    run_page("operators/backups.md");
}

#[test]
fn operators_install() {
    run_page("operators/install.md");
}

#[test]
fn operators_master_key() {
    run_page("operators/master-key.md");
}

#[test]
fn operators_multi_node() {
    // The page creates a database on the PostgreSQL server and uses the
    // Redis server that `scripts/services` starts.
    let reachable = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    if support::runtime_available(
        "PostgreSQL on 127.0.0.1:5432 or Redis on 127.0.0.1:6379 is not running \
         (scripts/services starts both), so the multi-node page cannot run",
        reachable(5432) && reachable(6379),
    ) {
        run_page("operators/multi-node.md");
    }
}

#[test]
fn operators_proxies() {
    if command_available("nginx", "-v", "nginx") {
        run_page("operators/proxies.md");
    }
}

#[test]
fn operators_runbooks() {
    run_page("operators/runbooks.md");
}

#[test]
fn operators_tls() {
    run_page("operators/tls.md");
}
