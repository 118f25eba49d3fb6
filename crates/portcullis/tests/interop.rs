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
const REDIRECT_URI: &str = "https://app.example.com/callback";
const USER_EMAIL: &str = "ops@example.com";
const USER_PASSWORD: &str = "correct horse battery staple";

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
    let basic = create_client(&data, "client_secret_basic", &[]);
    let post = create_client(&data, "client_secret_post", &[]);
    let web = create_client(
        &data,
        "client_secret_basic",
        &[
            "--grant-types",
            "authorization_code,refresh_token",
            "--redirect-uri",
            REDIRECT_URI,
        ],
    );
    create_user(&data);
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
        ("PORTCULLIS_WEB_CLIENT_ID", web.0),
        ("PORTCULLIS_WEB_CLIENT_SECRET", web.1),
        ("PORTCULLIS_REDIRECT_URI", REDIRECT_URI.to_owned()),
        ("PORTCULLIS_USER_EMAIL", USER_EMAIL.to_owned()),
        ("PORTCULLIS_USER_PASSWORD", USER_PASSWORD.to_owned()),
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

/// Registers a client of acme for `orders:read` with `extra` arguments, by
/// default for the `client_credentials` grant, and returns its id and secret.
fn create_client(data: &DataDir, auth_method: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Interop app",
        "--scopes",
        "orders:read",
        "--auth-method",
        auth_method,
    ];
    if !extra.contains(&"--grant-types") {
        args.extend_from_slice(&["--grant-types", "client_credentials"]);
    }
    args.extend_from_slice(extra);
    let created = data.cli_json(&args);
    (
        created["client_id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// Creates the user who signs in and approves the code flow.
fn create_user(data: &DataDir) {
    let output = data
        .command()
        .args(["users", "create", "--tenant", "acme", "--email", USER_EMAIL])
        .env("PORTCULLIS_USER_PASSWORD", USER_PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "users create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Returns `ready`. When it is false, fails the test under `CI=true` and
/// otherwise prints a notice naming `what` is missing.
fn runtime_available(what: &str, ready: bool) -> bool {
    support::runtime_available(
        &format!("{what} is not installed; run scripts/interop-setup"),
        ready,
    )
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

/// Returns the virtual environment's Python when it has the packages of
/// `interop/python/requirements.txt`.
fn python() -> Option<PathBuf> {
    let python = repository_root().join("interop/.venv/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import authlib, jwt, requests"])
        .output()
        .is_ok_and(|output| output.status.success());
    runtime_available("interop/.venv with authlib, PyJWT and requests", ready).then_some(python)
}

#[test]
fn python_client_credentials() {
    let Some(python) = python() else { return };
    let script = repository_root().join("interop/python/client_credentials.py");
    run_script(&python, &script);
}

#[test]
fn python_authorization_code() {
    let Some(python) = python() else { return };
    let script = repository_root().join("interop/python/authorization_code.py");
    run_script(&python, &script);
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
