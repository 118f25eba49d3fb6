//! `portcullis signing-keys list|rotate|revoke`: the token-signing keys.

use std::collections::BTreeMap;

use anyhow::Context;
use portcullis_server::admin::signing_keys::{revocation_json, signing_key_json};
use portcullis_server::config::{self, LogFormat, MAX_ACCESS_TOKEN_TTL};
use portcullis_server::oauth::keys::{KeysError, Revocation, SigningKeys, check_kid};
use portcullis_server::oauth::metadata::JWKS_MAX_AGE_SECONDS;
use portcullis_server::oauth::rotation::RotationPolicy;
use portcullis_server::telemetry;
use portcullis_store::AuditContext;
use serde_json::{Value, json};

use super::{ADMIN_LOG_FILTER, AUDIT_ACTOR};
use crate::cli::{GlobalArgs, OutputFormat, SigningKeysCommand, SigningKeysRevokeArgs};
use crate::data_dir;
use crate::output::{self, Table};

/// Runs a `signing-keys` command.
pub(crate) async fn run(
    global: &GlobalArgs,
    command: SigningKeysCommand,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Human, Some(ADMIN_LOG_FILTER));
    // A kid from the command line is checked before the store is opened,
    // and its error message never prints the raw argument.
    if let SigningKeysCommand::Revoke(args) = &command {
        check_kid(&args.kid)?;
    }
    // The configuration says which algorithm and schedule rotations use.
    let config = config::load(global.config.as_deref(), &global.data_dir, env)
        .context("invalid configuration")?;
    let opened =
        data_dir::open_store(&global.data_dir, global.database_url.as_deref(), env).await?;
    let policy = RotationPolicy {
        algorithm: config.oauth.signing_algorithm,
        rotate_every: time::Duration::try_from(config.oauth.key_rotation)
            .unwrap_or(time::Duration::MAX),
        max_token_lifetime: time::Duration::try_from(MAX_ACCESS_TOKEN_TTL)
            .unwrap_or(time::Duration::MAX),
        leeway: time::Duration::try_from(config.oauth.leeway).unwrap_or(time::Duration::MAX),
        ..RotationPolicy::default()
    };
    let keys = SigningKeys::load(opened.store, opened.signing_sealing, policy)
        .await
        .context("failed to load the signing keys")?;

    match command {
        SigningKeysCommand::List => list(&keys, global.output).await,
        SigningKeysCommand::Rotate => {
            let record = keys
                .rotate(&audit_context())
                .await
                .context("failed to rotate the signing key")?;
            match global.output {
                OutputFormat::Json => output::print_json(&signing_key_json(&record)),
                OutputFormat::Table => output::print(&format!(
                    "new {} key {} is published now and signs from {}\n",
                    record.algorithm.as_str(),
                    record.kid,
                    output::time_or(Some(record.activates_at), "-")
                )),
            }
        }
        SigningKeysCommand::Revoke(args) => revoke(&keys, &args, global.output).await,
    }
}

async fn list(keys: &SigningKeys, format: OutputFormat) -> anyhow::Result<()> {
    let records = keys
        .list()
        .await
        .context("failed to list the signing keys")?;
    match format {
        OutputFormat::Json => {
            let items: Vec<Value> = records.iter().map(signing_key_json).collect();
            output::print_json(&json!({ "signing_keys": items }))
        }
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "KID",
                "ALGORITHM",
                "STATE",
                "CREATED",
                "SIGNS FROM",
                "PUBLISHED UNTIL",
                "REVOKED",
                "REASON",
            ]);
            for record in &records {
                table.push(&[
                    &record.kid,
                    record.algorithm.as_str(),
                    record.state.as_str(),
                    &output::time_or(Some(record.created_at), "-"),
                    &output::time_or(Some(record.activates_at), "-"),
                    &output::time_or(record.publish_until, "-"),
                    &output::time_or(record.revoked_at, "-"),
                    record.revoked_reason.as_deref().unwrap_or("-"),
                ]);
            }
            output::print(&table.render())
        }
    }
}

async fn revoke(
    keys: &SigningKeys,
    args: &SigningKeysRevokeArgs,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let revocation = match keys.revoke(&args.kid, &args.reason, &audit_context()).await {
        Ok(revocation) => revocation,
        // These messages name the fault and the fix, so they need no prefix.
        Err(
            error @ (KeysError::NotFound(_)
            | KeysError::AlreadyRevoked(_)
            | KeysError::InvalidReason(_)
            | KeysError::InvalidKid(_)),
        ) => return Err(error.into()),
        Err(error) => return Err(error).context("failed to revoke the signing key"),
    };
    match format {
        OutputFormat::Json => output::print_json(&revocation_json(&revocation)),
        OutputFormat::Table => output::print(&revocation_text(&revocation)),
    }
}

/// Describes a revocation for an operator: what stopped, which key signs
/// now, and what clients and resource servers see.
fn revocation_text(revocation: &Revocation) -> String {
    let kid = &revocation.revoked.kid;
    let mut text = format!(
        "signing key {kid} is revoked: it left the JWKS, and tokens signed with it are \
         rejected (running servers follow within a second)\n"
    );
    match (&revocation.successor, &revocation.signer) {
        (Some(_), Some(signer)) => text.push_str(&format!(
            "key {signer} signs now, in place of the revoked key. Resource servers that cache \
             the JWKS may reject tokens signed by {signer} until their cached copy expires \
             (Portcullis serves it with max-age={JWKS_MAX_AGE_SECONDS} seconds)\n"
        )),
        (None, Some(signer)) => text.push_str(&format!("key {signer} signs now\n")),
        (_, None) => text.push_str(
            "no key signs now, so no access token can be issued: run \
             `portcullis signing-keys rotate`\n",
        ),
    }
    text.push_str(
        "refresh tokens stay valid, so clients get a new access token with their refresh \
         token or client credentials\n",
    );
    text
}

fn audit_context() -> AuditContext {
    AuditContext {
        actor: AUDIT_ACTOR.to_owned(),
        remote_addr: None,
        at: time::OffsetDateTime::now_utc(),
    }
}
