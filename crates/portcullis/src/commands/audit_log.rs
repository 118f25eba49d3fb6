//! `portcullis audit-log verify|seal|export`.

use std::process::ExitCode;

use anyhow::Context;
use portcullis_server::admin::audit::{MAX_AUDIT_PAGE, audit_record_json, json_line};
use portcullis_store::chain::{ChainHash, hex};
use portcullis_store::{AuditQuery, ChainBreak};
use serde_json::json;
use time::OffsetDateTime;

use super::{Admin, UsageError, manage_error};
use crate::cli::{AuditLogCommand, OutputFormat};
use crate::output;

/// Exit code of `verify` when the chain is broken.
const CHAIN_BROKEN: u8 = 3;

pub(crate) async fn run(admin: &Admin, command: AuditLogCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditLogCommand::Verify { expect_head } => verify(admin, expect_head.as_ref()).await,
        AuditLogCommand::Seal => seal(admin).await.map(|()| ExitCode::SUCCESS),
        AuditLogCommand::Export {
            tenant,
            since,
            until,
        } => export(admin, tenant.as_deref(), since, until)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

/// Returns what an operator should do about a break, for the line after
/// the message.
pub(crate) fn remedy(broken: &ChainBreak) -> &'static str {
    match broken.code() {
        "head_unsealed" | "head_missing" | "head_forged" => {
            "Keep this output and compare the records with a backup or an export. To go on \
             with this database as it is, run `portcullis audit-log seal`, which records the \
             seal in the chain."
        }
        _ => {
            "Keep this output and compare the records with a backup or an export; the chain \
             cannot be repaired in place."
        }
    }
}

async fn verify(admin: &Admin, expect_head: Option<&ChainHash>) -> anyhow::Result<ExitCode> {
    let outcome = admin
        .manager
        .verify_audit_chain(expect_head)
        .await
        .map_err(|error| manage_error(error, |field| field))?;
    match outcome {
        Ok(summary) => {
            let head_hash = hex(&summary.head_hash);
            match admin.output {
                OutputFormat::Json => output::print_json(&json!({
                    "intact": true,
                    "records": summary.records,
                    "first_seq": summary.first_seq,
                    "head_seq": summary.head_seq,
                    "head_hash": head_hash,
                    "checkpoint_seq": summary.checkpoint_seq,
                }))?,
                OutputFormat::Table => output::print(&format!(
                    "Audit log intact: {} records checked after checkpoint {}. Head: record {}, \
                     hash {head_hash}.\n",
                    summary.records, summary.checkpoint_seq, summary.head_seq
                ))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            match admin.output {
                OutputFormat::Json => output::print_json(&json!({
                    "intact": false,
                    "seq": broken.seq,
                    "id": broken.id,
                    "code": broken.code(),
                    "message": broken.to_string(),
                    "remedy": remedy(&broken),
                }))?,
                OutputFormat::Table => {
                    output::print_error(&format!(
                        "error: audit log broken: {broken}\n{}",
                        remedy(&broken)
                    ));
                }
            }
            Ok(ExitCode::from(CHAIN_BROKEN))
        }
    }
}

async fn seal(admin: &Admin) -> anyhow::Result<()> {
    let outcome = admin
        .manager
        .seal_audit_chain(&admin.audit())
        .await
        .map_err(|error| manage_error(error, |field| field))?;
    let head_hash = hex(&outcome.head_hash);
    match admin.output {
        OutputFormat::Json => output::print_json(&json!({
            "sealed": true,
            "legacy_records": outcome.legacy_records,
            "head_seq": outcome.head_seq,
            "head_hash": head_hash,
        }))?,
        OutputFormat::Table => output::print(&format!(
            "Audit chain head sealed: {} records from before the hash chain chained, seal \
             recorded as record {}. Head: record {}, hash {head_hash}.\n",
            outcome.legacy_records, outcome.head_seq, outcome.head_seq
        ))?,
    }
    Ok(())
}

async fn export(
    admin: &Admin,
    tenant: Option<&str>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> anyhow::Result<()> {
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        return Err(UsageError::new(format!(
            "invalid --until: {until} is earlier than --since {since}; give --since first and \
             --until later"
        ))
        .into());
    }
    let mut query = AuditQuery {
        since,
        until,
        limit: MAX_AUDIT_PAGE,
        ..AuditQuery::default()
    };
    if let Some(name) = tenant {
        let tenant = admin
            .manager
            .tenant(name)
            .await
            .map_err(|error| manage_error(error, |_| "--tenant"))?;
        query.tenant_id = Some(tenant.id);
    }

    loop {
        let records = admin
            .manager
            .audit_records(&query)
            .await
            .map_err(|error| manage_error(error, |field| field))?;
        let Some(last) = records.last() else {
            return Ok(());
        };
        query.after_seq = last.seq;
        let mut page = String::new();
        for record in &records {
            page.push_str(&json_line(&audit_record_json(record)));
            page.push('\n');
        }
        output::print(&page).context("failed to write the export")?;
    }
}
