//! `portcullis signing-keys list|rotate`: the token-signing keys.

use std::collections::BTreeMap;

use anyhow::Context;
use portcullis_server::admin::signing_keys::signing_key_json;
use portcullis_server::config::{self, LogFormat, MAX_ACCESS_TOKEN_TTL};
use portcullis_server::oauth::keys::SigningKeys;
use portcullis_server::oauth::rotation::RotationPolicy;
use portcullis_server::telemetry;
use portcullis_store::AuditContext;
use serde_json::{Value, json};

use super::{ADMIN_LOG_FILTER, AUDIT_ACTOR};
use crate::cli::{GlobalArgs, OutputFormat, SigningKeysCommand};
use crate::data_dir;
use crate::output::{self, Table};

/// Runs a `signing-keys` command.
pub(crate) async fn run(
    global: &GlobalArgs,
    command: SigningKeysCommand,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Human, Some(ADMIN_LOG_FILTER));
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
        SigningKeysCommand::List => {
            let records = keys
                .list()
                .await
                .context("failed to list the signing keys")?;
            match global.output {
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
                    ]);
                    for record in &records {
                        table.push(&[
                            &record.kid,
                            record.algorithm.as_str(),
                            record.state.as_str(),
                            &output::time_or(Some(record.created_at), "-"),
                            &output::time_or(Some(record.activates_at), "-"),
                            &output::time_or(record.publish_until, "-"),
                        ]);
                    }
                    output::print(&table.render())
                }
            }
        }
        SigningKeysCommand::Rotate => {
            let audit = AuditContext {
                actor: AUDIT_ACTOR.to_owned(),
                remote_addr: None,
                at: time::OffsetDateTime::now_utc(),
            };
            let record = keys
                .rotate(&audit)
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
    }
}
