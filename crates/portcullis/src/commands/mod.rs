//! One module per command noun. Admin commands go through
//! [`Manager`](portcullis_server::manage::Manager), the code behind the admin
//! API, so both check the same rules and write the same audit records.

pub(crate) mod audit;
pub(crate) mod audit_log;
pub(crate) mod ca;
pub(crate) mod certs_verify;
pub(crate) mod clients;
pub(crate) mod issue_files;
pub(crate) mod keys;
pub(crate) mod scan;
pub(crate) mod serve;
pub(crate) mod signing_keys;
pub(crate) mod tenants;
pub(crate) mod users;

use std::collections::BTreeMap;
use std::process::ExitCode;

use portcullis_server::config::{self, LogFormat};
use portcullis_server::manage::{self, ManageError, Manager, PlanNames};
use portcullis_server::telemetry;
use portcullis_store::{AuditContext, Store};

use crate::cli::{CertsCommand, Cli, Command, GlobalArgs, OutputFormat};
use crate::data_dir;

/// Audit actor of changes made from the command line.
pub(crate) const AUDIT_ACTOR: &str = "cli";

/// Log filter of the admin commands: only problems, so that standard
/// output and standard error stay readable.
pub(crate) const ADMIN_LOG_FILTER: &str = "warn";

/// Runs the parsed command and returns the exit code of a success. `env`
/// contains the `PORTCULLIS_*` variables.
pub(crate) async fn run(cli: Cli, env: BTreeMap<String, String>) -> anyhow::Result<ExitCode> {
    let result = match cli.command {
        Command::Scan(args) => return scan::run(&cli.global, &args, &env).await,
        Command::AuditLog(command) => {
            let admin = Admin::open(&cli.global, &env).await?;
            return audit_log::run(&admin, command).await;
        }
        Command::Audit(args) => return audit::run(&cli.global, &args, &env).await,
        Command::Serve(args) => serve::run(&cli.global, &args, &env).await,
        Command::Tenants(command) => {
            let admin = Admin::open(&cli.global, &env).await?;
            tenants::run(&admin, command).await
        }
        Command::Keys(command) => {
            let admin = Admin::open(&cli.global, &env).await?;
            keys::run(&admin, command).await
        }
        Command::Clients(command) => {
            let admin = Admin::open(&cli.global, &env).await?;
            clients::run(&admin, command).await
        }
        Command::SigningKeys(command) => signing_keys::run(&cli.global, command, &env).await,
        Command::Users(command) => {
            let admin = Admin::open(&cli.global, &env).await?;
            users::run(&admin, command, &env).await
        }
        Command::Certs(CertsCommand::Verify(args)) => certs_verify::run(&args, cli.global.output),
        Command::Certs(command) => ca::run_certs(&cli.global, command, &env).await,
        Command::Ca(command) => ca::run_ca(&cli.global, command, &env).await,
    };
    result.map(|()| ExitCode::SUCCESS)
}

/// Shared state of the admin commands: the manager and the output format.
pub(crate) struct Admin {
    pub(crate) manager: Manager,
    /// The store the manager writes, for read-only reports.
    pub(crate) store: Store,
    pub(crate) output: OutputFormat,
}

impl Admin {
    async fn open(global: &GlobalArgs, env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        telemetry::init(LogFormat::Human, Some(ADMIN_LOG_FILTER));
        let opened =
            data_dir::open_store(&global.data_dir, global.database_url.as_deref(), env).await?;
        // Keys may name plans of the configuration, so the plan names come
        // from the same file the server reads. A configuration that fails to
        // load only stops commands that name a plan.
        let plans = match config::load(global.config.as_deref(), &global.data_dir, env) {
            Ok(config) => PlanNames::Known(config.limits.plans.into_keys().collect()),
            Err(error) => PlanNames::Unavailable(format!(
                "the configuration failed to load ({error}); fix it and try again"
            )),
        };
        Ok(Self {
            store: opened.store.clone(),
            manager: Manager::new(opened.store, opened.pepper).with_plans(plans),
            output: global.output,
        })
    }

    /// Returns the audit context of a change made now.
    pub(crate) fn audit(&self) -> AuditContext {
        AuditContext {
            actor: AUDIT_ACTOR.to_owned(),
            remote_addr: None,
            at: manage::now(),
        }
    }
}

/// An invalid command-line argument that clap cannot check by itself,
/// such as two flags that contradict each other. `main` exits with code 2
/// on it, as clap does on its own usage errors.
#[derive(Debug)]
pub(crate) struct UsageError(String);

impl UsageError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Converts a [`ManageError`] into a one-line error, naming a rejected
/// input by its command-line spelling: `flag` maps the manager's field
/// names (`name`, `scopes`, …) to it.
pub(crate) fn manage_error(error: ManageError, flag: fn(&str) -> &str) -> anyhow::Error {
    match error {
        ManageError::Invalid { field, message } => {
            anyhow::anyhow!("invalid {}: {message}", flag(field))
        }
        other => anyhow::Error::new(other),
    }
}
