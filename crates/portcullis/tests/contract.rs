//! The admin API against its own OpenAPI document. schemathesis (from
//! `interop/.venv`, which `scripts/interop-setup` installs) reads the
//! document the real binary serves and sends generated valid and invalid
//! requests to every admin operation. It fails on any 5xx, on a status,
//! media type or body the document does not allow, and, through
//! `interop/python/contract_checks.py`, on a 4xx that is not a problem
//! naming the invalid field.
//!
//! The consumer document at `/openapi.json` gets the same run over the
//! operations that schemathesis can authenticate, and a check that the
//! server routes every path it lists.
//!
//! When schemathesis is missing the test fails under `CI=true`, and
//! elsewhere prints a notice and passes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "fixtures outside #[test] functions fail the test on any error"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the test reads CI from the environment, as the harness does"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{DataDir, Server};

/// Generated requests per operation and phase. With about 35 operations
/// this keeps a run within a few minutes on two cores (an estimate from
/// local runs of a debug build).
const MAX_EXAMPLES: u32 = 25;

/// The run is killed, and the test fails, after this long.
const RUN_LIMIT: Duration = Duration::from_secs(900);

/// The environment variable that carries the operator key to schemathesis,
/// so the key is in neither the command line nor the configuration file.
const KEY_VARIABLE: &str = "PORTCULLIS_CONTRACT_KEY";

/// The environment variable that carries the operator key's id to the
/// hooks in `contract_checks.py`, which keep generated requests from
/// revoking or limiting that key.
const KEY_ID_VARIABLE: &str = "PORTCULLIS_CONTRACT_KEY_ID";

/// Thresholds of failed authentications that a run does not reach. Some
/// generated requests leave out the key on purpose. Each counts as a
/// failed authentication from 127.0.0.1, and the default thresholds would
/// block the address and turn every later response into a 429.
const LENIENT_BRUTE_FORCE: &str = r#"
[limits.brute_force.client_ip]
slow_after = 10000
block_after = 10000

[limits.brute_force.identity]
slow_after = 10000
block_after = 10000
"#;

/// The operator key that schemathesis authenticates with.
struct Operator {
    id: String,
    secret: String,
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Returns the schemathesis program when it runs. When it does not, fails
/// the test under `CI=true` and otherwise prints a notice.
fn schemathesis() -> Option<PathBuf> {
    let program = repository_root().join("interop/.venv/bin/schemathesis");
    let ready = Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if ready {
        return Some(program);
    }
    let message = "schemathesis is not installed in interop/.venv; run scripts/interop-setup";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("skipping: {message}");
    None
}

/// Ids of the records the fixture creates, so that generated requests
/// reach existing tenants, keys, clients and users and not only 404s.
struct Seeds {
    tenant: String,
    key_id: String,
    client_id: String,
    user_id: String,
}

fn seed(data: &DataDir) -> Seeds {
    data.cli(&["tenants", "create", "acme"]);
    data.cli(&["ca", "init"]);
    let (key_id, _) = data.create_key(&["--tenant", "acme", "--scopes", "orders:read"]);
    let client = data.cli_json(&[
        "clients",
        "create",
        "--tenant",
        "acme",
        "--name",
        "Contract app",
        "--scopes",
        "orders:read",
        "--grant-types",
        "client_credentials",
    ]);
    // Two admins, so that disabling either is not refused as the last one.
    data.create_user("acme", "ops@example.com", "admin", "contract test password");
    data.create_user(
        "acme",
        "lead@example.com",
        "admin",
        "contract test password",
    );
    let users = data.cli_json(&["users", "list", "--tenant", "acme"]);
    Seeds {
        tenant: "acme".to_owned(),
        key_id,
        client_id: client["client_id"].as_str().unwrap().to_owned(),
        user_id: users["users"][0]["id"].as_str().unwrap().to_owned(),
    }
}

/// Writes the schemathesis configuration: the server's base URL and CA,
/// the operator key (read from [`KEY_VARIABLE`]), and the seeded ids,
/// used for most but not all generated path parameters.
fn write_config(dir: &Path, server: &Server, ca_file: &Path, seeds: &Seeds) -> PathBuf {
    let port = server.address.port();
    // NOTE: each `[[operations]]` entry repeats the headers in case it
    // replaces the top-level ones; runs behave the same either way.
    let headers = format!("{{ Authorization = \"Bearer ${{{KEY_VARIABLE}}}\" }}");
    let config = format!(
        r#"
base-url = "https://127.0.0.1:{port}"
tls-verify = "{ca}"
headers = {headers}

[generation]
with-security-parameters = false
database = "none"

[dictionaries]
tenants = {{ values = ["{tenant}"] }}
keys = {{ values = ["{key}"] }}
clients = {{ values = ["{client}"] }}
users = {{ values = ["{user}"] }}

# Listed before the `{{tenant}}` entry, which the user paths match too.
[[operations]]
include-path-regex = "/users/\\{{id\\}}/"
headers = {headers}
parameters = {{ "path.tenant" = {{ dictionary = "tenants", probability = 0.8 }}, "path.id" = {{ dictionary = "users", probability = 0.8 }} }}

[[operations]]
include-path-regex = "\\{{tenant\\}}"
headers = {headers}
parameters = {{ "path.tenant" = {{ dictionary = "tenants", probability = 0.8 }} }}

[[operations]]
include-path-regex = "^/admin/v1/keys/\\{{id\\}}"
headers = {headers}
parameters = {{ "path.id" = {{ dictionary = "keys", probability = 0.8 }} }}

[[operations]]
include-path-regex = "^/admin/v1/clients/\\{{id\\}}"
headers = {headers}
parameters = {{ "path.id" = {{ dictionary = "clients", probability = 0.8 }} }}
"#,
        ca = ca_file.display(),
        tenant = seeds.tenant,
        key = seeds.key_id,
        client = seeds.client_id,
        user = seeds.user_id,
    );
    let path = dir.join("schemathesis.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// What one schemathesis run covers: the document, the operations, and
/// the checks (a check registered by a hook runs only when listed).
struct Run<'a> {
    document: &'a str,
    include_path_regex: &'a str,
    checks: &'a str,
}

/// The admin API: every operation, and every 4xx must be a problem.
const ADMIN_RUN: Run<'static> = Run {
    document: "/admin/v1/openapi.json",
    include_path_regex: "^/admin/v1/",
    checks: "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,client_errors_are_problems",
};

/// Runs schemathesis until it exits or [`RUN_LIMIT`] passes, and returns
/// whether it succeeded and its output.
fn run_schemathesis(
    program: &Path,
    config: &Path,
    server: &Server,
    operator: &Operator,
    run: &Run<'_>,
) -> (bool, String) {
    let work = config.parent().unwrap();
    let base = format!("https://127.0.0.1:{}", server.address.port());
    let mut child = Command::new(program)
        .arg("--config-file")
        .arg(config)
        .args(["run", "--no-color", "--mode", "all", "--workers", "1"])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--include-path-regex", run.include_path_regex])
        .args(["--checks", run.checks])
        .args(["--url", &base])
        .arg(format!("{base}{}", run.document))
        .current_dir(work)
        .env(KEY_VARIABLE, &operator.secret)
        .env(KEY_ID_VARIABLE, &operator.id)
        .env("SCHEMATHESIS_HOOKS", "contract_checks")
        .env("PYTHONPATH", repository_root().join("interop/python"))
        // The server is on this machine: no proxy may be in the way.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn document_served_without_key() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let response = server
        .client()
        .get(server.url("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        support::header(&response, "content-type"),
        Some("application/json")
    );
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/admin/v1/tenants"]["post"].is_object());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_meets_its_contract() {
    let Some(program) = schemathesis() else {
        return;
    };
    let data = DataDir::new();
    data.write_config(LENIENT_BRUTE_FORCE);
    let seeds = seed(&data);
    let (id, secret) = data.create_key(&["--operator", "--scopes", "admin:read,admin:write"]);
    let operator = Operator { id, secret };
    let server = Server::start(&data);

    let work = tempfile::tempdir().unwrap();
    let ca_file = data.path().join("tls/ca.pem");
    let config = write_config(work.path(), &server, &ca_file, &seeds);
    let (succeeded, output) = tokio::task::block_in_place(|| {
        run_schemathesis(&program, &config, &server, &operator, &ADMIN_RUN)
    });
    assert!(
        succeeded,
        "schemathesis found failures:\n{output}\nserver log tail:\n{}",
        server.log_tail(40)
    );
    println!("{output}");
    server.stop().await;
}

/// The operations of the consumer document that schemathesis runs. It
/// cannot authenticate the others. `/v1/leaks` needs an ECDSA signature
/// of each generated body, and `/oauth/authorize` is a browser flow of
/// HTML pages with a CSRF token. The token and revocation endpoints need a
/// client credential, which a bearer header does not carry. Their own
/// integration tests (`leaks`, `authorize`, `oauth_token`) cover them; here
/// they are only checked to be routed.
const PUBLIC_RUN: Run<'static> = Run {
    document: "/openapi.json",
    include_path_regex: "^/(v1/keys/verify|oauth/introspect|openapi\\.json|\\.well-known/|ca/)",
    // OAuth errors are RFC 6749 §5.2 JSON, not problems, so the problem
    // check of the admin run does not apply.
    checks: "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
};

#[tokio::test]
async fn public_document_served_without_key() {
    let data = DataDir::new();
    let server = Server::start(&data);
    let response = server
        .client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        support::header(&response, "content-type"),
        Some("application/json")
    );
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/oauth/token"]["post"].is_object());
    assert!(document["paths"]["/admin/v1/tenants"].is_null());
    server.stop().await;
}

#[tokio::test]
async fn public_document_paths_routed() {
    let data = DataDir::new();
    data.cli(&["ca", "init"]);
    let server = Server::start(&data);
    let client = server.client();
    let document: Value = client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 11, "{paths:?}");
    for (path, item) in paths {
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            let request = match method {
                "get" => client.get(server.url(path)),
                _ => client.post(server.url(path)),
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            // Without a route the gateway returns 404 with this detail, and
            // a route without the method returns 405.
            assert!(
                !body.contains("no route matches this path"),
                "{method} {path} reached the gateway"
            );
            assert_ne!(status, 405, "{method} {path}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_api_meets_its_contract() {
    let Some(program) = schemathesis() else {
        return;
    };
    let data = DataDir::new();
    data.write_config(LENIENT_BRUTE_FORCE);
    let seeds = seed(&data);
    let (id, secret) =
        data.create_key(&["--operator", "--scopes", "keys:verify,tokens:introspect"]);
    let operator = Operator { id, secret };
    let server = Server::start(&data);

    let work = tempfile::tempdir().unwrap();
    let ca_file = data.path().join("tls/ca.pem");
    let config = write_config(work.path(), &server, &ca_file, &seeds);
    let (succeeded, output) = tokio::task::block_in_place(|| {
        run_schemathesis(&program, &config, &server, &operator, &PUBLIC_RUN)
    });
    assert!(
        succeeded,
        "schemathesis found failures:\n{output}\nserver log tail:\n{}",
        server.log_tail(40)
    );
    println!("{output}");
    server.stop().await;
}
