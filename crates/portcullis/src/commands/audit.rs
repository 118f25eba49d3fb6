//! `portcullis audit`: the credential hygiene report, as a table or as the
//! JSON of `GET /admin/v1/audit/credentials`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use portcullis_server::config;
use portcullis_server::credential_audit::{self, AuditSettings, Report, Severity};

use super::{Admin, manage_error};
use crate::cli::{AuditArgs, GlobalArgs, OutputFormat};
use crate::output::{self, Table};

/// Exit code when a finding reaches the `--fail-on` severity. 1 and 2 are
/// taken by errors and by invalid arguments.
const FINDING_AT_THRESHOLD: u8 = 3;

/// Runs `portcullis audit`.
pub(crate) async fn run(
    global: &GlobalArgs,
    args: &AuditArgs,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let admin = Admin::open(global, env).await?;
    // Unlike the other admin commands, the audit needs the configuration:
    // its thresholds and the listener are part of the report.
    let config = config::load(global.config.as_deref(), &global.data_dir, env)
        .context("loading the configuration failed; the audit reads its thresholds from it")?;
    let tenant = match &args.tenant {
        Some(name) => Some(
            admin
                .manager
                .tenant(name)
                .await
                .map_err(|error| manage_error(error, tenant_flag))?,
        ),
        None => None,
    };

    let report = credential_audit::run(
        &admin.store,
        &AuditSettings::from_config(&config),
        tenant.as_ref(),
        portcullis_server::manage::now(),
    )
    .await
    .context("the credential audit failed to read the store")?;

    match admin.output {
        OutputFormat::Json => output::print_json(&report.to_json())?,
        OutputFormat::Table => output::print(&report_text(&report))?,
    }

    let threshold = args.fail_on.map(Severity::from);
    Ok(match threshold {
        Some(threshold) if report.reaches(threshold) => ExitCode::from(FINDING_AT_THRESHOLD),
        _ => ExitCode::SUCCESS,
    })
}

/// Formats the report as a table of findings and a summary line.
fn report_text(report: &Report) -> String {
    let scope = report.tenant.as_ref().map_or_else(
        || "the whole server".to_owned(),
        |tenant| format!("tenant {tenant}"),
    );
    if report.findings.is_empty() {
        return format!("No findings for {scope}.\n");
    }
    let mut table = Table::new(&["SEVERITY", "CODE", "SUBJECT", "TENANT", "MESSAGE"]);
    for finding in &report.findings {
        let subject = match &finding.subject.label {
            Some(label) => format!("{} {} ({label})", finding.subject.kind, finding.subject.id),
            None => format!("{} {}", finding.subject.kind, finding.subject.id),
        };
        table.push(&[
            finding.severity.as_str(),
            finding.code,
            &subject,
            finding.subject.tenant.as_deref().unwrap_or("-"),
            &finding.message,
        ]);
    }
    let counts: Vec<String> = Severity::ALL
        .iter()
        .rev()
        .map(|severity| {
            let count = report
                .findings
                .iter()
                .filter(|finding| finding.severity == *severity)
                .count();
            format!("{count} {severity}")
        })
        .collect();
    format!(
        "{}\n{} findings for {scope}: {}.\n",
        table.render(),
        report.findings.len(),
        counts.join(", ")
    )
}

fn tenant_flag(field: &str) -> &str {
    match field {
        "tenant" | "name" => "--tenant",
        other => other,
    }
}
