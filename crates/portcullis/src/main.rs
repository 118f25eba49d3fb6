//! The `portcullis` binary: `serve` and the admin commands.
//!
//! - [`cli`]: the command line, parsed by clap.
//! - [`commands`]: one module per command noun (`serve`, `tenants`, `keys`).
//! - [`data_dir`]: the data directory, the master key and opening the store.
//! - [`output`]: tables for people and JSON for scripts.
//!
//! Errors end the process with exit code 1 and one line on standard error;
//! usage errors found by clap, or by a command as a `UsageError`, exit with
//! code 2. `scan` exits with 3 when it
//! finds a usable key.

mod cli;
mod commands;
mod data_dir;
mod output;

use std::process::ExitCode;

use clap::Parser;
use portcullis_server::config;

use crate::cli::Cli;

/// Exit code of invalid command-line arguments, the one clap uses.
const USAGE_EXIT_CODE: u8 = 2;

fn main() -> ExitCode {
    // rustls needs a process-wide crypto provider before any TLS config is
    // built. An error means one is installed already, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();

    let cli = Cli::parse();
    let env = config::process_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            output::print_error(&format!(
                "error: failed to start the async runtime: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };

    match runtime.block_on(commands::run(cli, env)) {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` joins the error and its causes with ": " on one line.
            output::print_error(&format!("error: {error:#}"));
            if error.downcast_ref::<commands::UsageError>().is_some() {
                ExitCode::from(USAGE_EXIT_CODE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
