//! `portcullis audit-log verify|export`.

use std::process::ExitCode;

use anyhow::Context;
use portcullis_server::admin::audit::{
    MAX_AUDIT_PAGE, audit_record_json, json_line, parse_filter_time,
};
use portcullis_store::AuditQuery;
use portcullis_store::chain::hex;
use serde_json::json;

use super::{Admin, manage_error};
use crate::cli::{AuditLogCommand, OutputFormat};
use crate::output;

/// Exit code of `verify` when the chain is broken.
const CHAIN_BROKEN: u8 = 3;

pub(crate) async fn run(admin: &Admin, command: AuditLogCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditLogCommand::Verify => verify(admin).await,
        AuditLogCommand::Export {
            tenant,
            since,
            until,
        } => export(admin, tenant.as_deref(), since.as_deref(), until.as_deref())
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

async fn verify(admin: &Admin) -> anyhow::Result<ExitCode> {
    let outcome = admin
        .manager
        .verify_audit_chain()
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
                }))?,
                OutputFormat::Table => {
                    eprintln!("error: audit log broken: {broken}");
                }
            }
            Ok(ExitCode::from(CHAIN_BROKEN))
        }
    }
}

async fn export(
    admin: &Admin,
    tenant: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<()> {
    let parse = |flag: &str, text: Option<&str>| {
        text.map(parse_filter_time)
            .transpose()
            .map_err(|message| anyhow::anyhow!("invalid {flag}: {message}"))
    };
    let mut query = AuditQuery {
        since: parse("--since", since)?,
        until: parse("--until", until)?,
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
