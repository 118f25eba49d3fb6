//! Creates many API keys in a SQLite data directory, for load tests.
//!
//! ```sh
//! cargo run --release -p portcullis --example seed_keys -- \
//!     --data-dir DIR --tenant NAME --count 100000 --out FILE
//! ```
//!
//! Keys go through [`Manager::create_key`], the code behind `portcullis keys
//! create`, so their hashes and audit records are the real ones. The tenant
//! is created when it does not exist. `FILE` receives one key per line and
//! is created with mode 0600; it must not exist yet. The master key is read
//! from `DIR/master.key` (run `portcullis serve` once to create it);
//! `PORTCULLIS_MASTER_KEY` is not consulted.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use portcullis_core::crypto::MasterKey;
use portcullis_core::key::Environment;
use portcullis_core::scope::ScopeSet;
use portcullis_server::manage::{self, KeyRequest, ManageError, Manager};
use portcullis_store::{AuditContext, Store};
use tokio::task::JoinSet;

/// Audit actor recorded on every key this tool creates.
const AUDIT_ACTOR: &str = "seed-keys";

#[derive(Parser)]
#[command(about = "Create many API keys in a Portcullis SQLite data directory")]
struct Args {
    /// Data directory holding `master.key` and `portcullis.db`.
    #[arg(long)]
    data_dir: PathBuf,
    /// Tenant that owns the keys, created when missing.
    #[arg(long)]
    tenant: String,
    /// Number of keys to create.
    #[arg(long)]
    count: usize,
    /// File that receives the keys, one per line. It must not exist yet.
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated scopes of every key.
    #[arg(long, default_value = "bench:read")]
    scopes: String,
    /// Number of keys created at the same time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match seed(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn seed(args: &Args) -> anyhow::Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let scopes = ScopeSet::parse_list(&args.scopes)
        .map_err(|error| anyhow::anyhow!("invalid --scopes: {error}"))?;

    // Created before any key, so that an existing file stops the run
    // before it writes to the store.
    let out = create_key_file(&args.out)?;
    let manager = open_manager(&args.data_dir).await?;
    ensure_tenant(&manager, &args.tenant).await?;

    let started = Instant::now();
    let keys = create_keys(&manager, args, &scopes).await?;
    let elapsed = started.elapsed().as_secs_f64();
    write_keys(out, &args.out, &keys)?;

    let rate = keys.len() as f64 / elapsed.max(f64::EPSILON);
    eprintln!(
        "created {} keys for tenant {} in {elapsed:.1} s ({rate:.0} keys/s, concurrency {})",
        keys.len(),
        args.tenant,
        args.concurrency
    );
    Ok(())
}

/// Opens the SQLite store in `dir` with the master key from `dir/master.key`,
/// after checking that the store belongs to that key.
async fn open_manager(dir: &Path) -> anyhow::Result<Manager> {
    let key_path = dir.join("master.key");
    let encoded = fs::read_to_string(&key_path).with_context(|| {
        format!(
            "failed to read master key file {}; run `portcullis serve` once to create it",
            key_path.display()
        )
    })?;
    let master_key = MasterKey::from_encoded(&encoded)
        .with_context(|| format!("master key file {} is invalid", key_path.display()))?;

    let database_path = dir.join("portcullis.db");
    let store = Store::open_sqlite(&database_path)
        .await
        .with_context(|| format!("failed to open SQLite database {}", database_path.display()))?;
    store
        .check_master_key(&master_key.check_value())
        .await
        .with_context(|| {
            format!(
                "the master key in {} does not match the one this database was first opened with",
                key_path.display()
            )
        })?;
    let store = store
        .attach_audit_key(master_key.audit_chain_key())
        .await
        .context("failed to attach the audit chain key")?;
    Ok(Manager::new(store, master_key.derive_pepper()))
}

/// Creates the tenant unless one with that name exists.
async fn ensure_tenant(manager: &Manager, name: &str) -> anyhow::Result<()> {
    match manager.create_tenant(name, &audit_context()).await {
        Ok(_) | Err(ManageError::Conflict { .. }) => Ok(()),
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("failed to create tenant {name}")))
        }
    }
}

/// Creates `args.count` keys with `args.concurrency` tasks and returns
/// their secrets. Stops at the first failure.
async fn create_keys(
    manager: &Manager,
    args: &Args,
    scopes: &ScopeSet,
) -> anyhow::Result<Vec<String>> {
    let mut tasks = JoinSet::new();
    for worker in 0..args.concurrency {
        // Spread the remainder over the first workers.
        let share =
            args.count / args.concurrency + usize::from(worker < args.count % args.concurrency);
        let manager = manager.clone();
        let request = KeyRequest {
            tenant: Some(args.tenant.clone()),
            scopes: scopes.clone(),
            name: None,
            expires_in: None,
            environment: Environment::Live,
            limits: Default::default(),
        };
        tasks.spawn(async move {
            let mut secrets = Vec::with_capacity(share);
            for _ in 0..share {
                let issued = manager
                    .create_key(request.clone(), &audit_context())
                    .await?;
                secrets.push(issued.secret.expose().to_owned());
            }
            Ok::<_, ManageError>(secrets)
        });
    }

    let mut keys = Vec::with_capacity(args.count);
    while let Some(joined) = tasks.join_next().await {
        let secrets = joined
            .context("a key-creating task failed")?
            .context("failed to create a key")?;
        keys.extend(secrets);
    }
    Ok(keys)
}

/// Creates the key file with mode 0600, failing when it exists.
fn create_key_file(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create key file {}", path.display()))
}

/// Writes one key per line to `file`, which was opened at `path`.
fn write_keys(file: File, path: &Path, keys: &[String]) -> anyhow::Result<()> {
    let mut writer = BufWriter::new(file);
    for key in keys {
        writeln!(writer, "{key}")
            .with_context(|| format!("failed to write key file {}", path.display()))?;
    }
    writer
        .flush()
        .with_context(|| format!("failed to write key file {}", path.display()))
}

fn audit_context() -> AuditContext {
    AuditContext {
        actor: AUDIT_ACTOR.to_owned(),
        remote_addr: None,
        at: manage::now(),
    }
}
