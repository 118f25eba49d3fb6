//! Third-party OAuth clients against the real binary: Python's authlib and
//! PyJWT (`interop/python`) and npm's openid-client (`interop/node`), run
//! as child processes. `scripts/interop-setup` installs them.
//!
//! When a runtime or its packages are missing the tests fail under
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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use support::{DataDir, Server};

/// The audience of the one route that takes tokens.
const RESOURCE: &str = "https://orders.example.test";

struct Fixture {
    /// Kept so the data directory outlives the server.
    _data: DataDir,
    server: Server,
    /// Variables every script reads: URLs, the CA file and credentials.
    env: Vec<(String, String)>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let data = DataDir::new();
    data.write_config(&format!(
        r#"
[[routes]]
path_prefix = "/orders"
upstream = "http://127.0.0.1:9"
auth = ["api_key", "jwt"]
audience = "{RESOURCE}"
[routes.scopes]
GET = ["orders:read"]
"#
    ));
    data.cli(&["tenants", "create", "acme"]);
    let basic = create_client(&data, "client_secret_basic");
    let post = create_client(&data, "client_secret_post");
    let server = Server::start(&data);

    let ca_file = data.path().join("tls/ca.pem");
    let env = vec![
        ("PORTCULLIS_ISSUER", server.url("")),
        ("PORTCULLIS_CA_FILE", ca_file.display().to_string()),
        ("PORTCULLIS_RESOURCE", RESOURCE.to_owned()),
        ("PORTCULLIS_BASIC_CLIENT_ID", basic.0),
        ("PORTCULLIS_BASIC_CLIENT_SECRET", basic.1),
        ("PORTCULLIS_POST_CLIENT_ID", post.0),
        ("PORTCULLIS_POST_CLIENT_SECRET", post.1),
        // Node's fetch trusts this CA in addition to its built-in roots.
        ("NODE_EXTRA_CA_CERTS", ca_file.display().to_string()),
        // The server is on this machine: no proxy may be in the way.
        ("NO_PROXY", "localhost,127.0.0.1".to_owned()),
        ("no_proxy", "localhost,127.0.0.1".to_owned()),
    ];
    Fixture {
        _data: data,
        server,
        env: env
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    }
});

/// Registers a `client_credentials` client of acme and returns its id and
/// secret.
fn create_client(data: &DataDir, auth_method: &str) -> (String, String) {
    let created = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Interop app",
        "--grant-types",
        "client_credentials",
        "--scopes",
        "orders:read",
        "--auth-method",
        auth_method,
    ]);
    (
        created["client_id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    )
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Returns `ready`. When it is false, fails the test under `CI=true` and
/// otherwise prints a notice naming `what` is missing.
fn runtime_available(what: &str, ready: bool) -> bool {
    if ready {
        return true;
    }
    let message = format!("{what} is not installed; run scripts/interop-setup");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("skipping: {message}");
    false
}

/// Checks that `program --version` runs and exits 0.
fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs a script with the fixture's variables and fails the test, showing
/// its output, when it exits non-zero.
fn run_script(program: &Path, script: &Path) {
    let fixture = &*FIXTURE;
    let output = Command::new(program)
        .arg(script)
        .current_dir(script.parent().unwrap())
        .envs(fixture.env.iter().map(|(name, value)| (name, value)))
        .output()
        .unwrap_or_else(|error| panic!("failed to start {}: {error}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}\nserver logs:\n{}",
        script.display(),
        output.status,
        fixture.server.log_text()
    );
    print!("{stdout}");
}

#[test]
fn python_authlib_and_pyjwt() {
    let root = repository_root();
    let python = root.join("interop/.venv/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import authlib, jwt, requests"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !runtime_available("interop/.venv with authlib, PyJWT and requests", ready) {
        return;
    }
    run_script(&python, &root.join("interop/python/client_credentials.py"));
}

#[test]
fn node_openid_client() {
    let root = repository_root();
    let ready = on_path("node")
        && root
            .join("interop/node/node_modules/openid-client/package.json")
            .is_file();
    if !runtime_available("node with interop/node/node_modules", ready) {
        return;
    }
    run_script(
        Path::new("node"),
        &root.join("interop/node/client_credentials.mjs"),
    );
}
