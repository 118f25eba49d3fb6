//! `portcullis ca init|trust add|trust crl|trust remove|trust list` and `portcullis certs
//! sign|issue|list|revoke`: the internal CA and its client certificates.
//!
//! JSON output uses the admin API's shapes ([`certificate_json`],
//! [`trusted_ca_json`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use portcullis_core::ids::ClientId;
use portcullis_core::pki::{CertificateRecord, CertificateSerial, TrustedCaRecord};
use portcullis_server::admin::certificates::{certificate_json, revocation_check, trusted_ca_json};
use portcullis_server::config::LogFormat;
use portcullis_server::pki::ca::CertificateAuthority;
use portcullis_server::pki::partner_ca::RevocationSource;
use portcullis_server::telemetry;
use portcullis_store::{AuditContext, CertificateFilter};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::issue_files::{OutputDirectory, OutputFile};
use super::{ADMIN_LOG_FILTER, AUDIT_ACTOR};
use crate::cli::{
    CaCommand, CaTrustCommand, CertsCommand, CertsIssueArgs, CertsListArgs, CertsRevokeArgs,
    CertsSignArgs, GlobalArgs, OutputFormat, RevocationArgs,
};
use crate::data_dir;
use crate::output::{self, Table};

/// The largest CSR or CA certificate file read, in bytes. Both are a few
/// kilobytes at most.
const MAX_PEM_FILE: u64 = 64 * 1024;

/// Runs a `ca` command.
pub(crate) async fn run_ca(
    global: &GlobalArgs,
    command: CaCommand,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let ca = open(global, env).await?;
    match command {
        CaCommand::Init => {
            let record = ca.init_ca(&audit()).await?;
            match global.output {
                OutputFormat::Json => output::print_json(&json!({
                    "id": record.id.to_string(),
                    "certificate_pem": record.certificate_pem,
                    "created_at": output::time_or(Some(record.created_at), "-"),
                })),
                OutputFormat::Table => output::print(&format!(
                    "Created the internal CA {}. Its certificate is served at /ca/ca.pem:\n\n{}",
                    record.id, record.certificate_pem
                )),
            }
        }
        CaCommand::Trust(CaTrustCommand::Add(args)) => {
            let pem = read_pem_file(&args.file)?;
            let revocation = revocation_source(&args.revocation)?;
            let record = ca
                .trust_add(&args.tenant, &pem, &revocation, &audit())
                .await?;
            match global.output {
                OutputFormat::Json => output::print_json(&trusted_ca_json(&record)),
                OutputFormat::Table => output::print(&format!(
                    "Tenant {} now trusts the CA {} (id {}, SHA-256 {}). {}\n",
                    args.tenant,
                    record.subject,
                    record.id,
                    record.sha256,
                    describe_revocation(&record)
                )),
            }
        }
        CaCommand::Trust(CaTrustCommand::Crl(args)) => {
            let revocation = revocation_source(&args.revocation)?;
            let record = ca
                .trust_set_revocation(&args.tenant, &args.reference, &revocation, &audit())
                .await?;
            match global.output {
                OutputFormat::Json => output::print_json(&trusted_ca_json(&record)),
                OutputFormat::Table => output::print(&format!(
                    "Changed the revocation check of the CA {} of tenant {}. {}\n",
                    record.subject,
                    args.tenant,
                    describe_revocation(&record)
                )),
            }
        }
        CaCommand::Trust(CaTrustCommand::Remove(args)) => {
            let record = ca
                .trust_remove(&args.tenant, &args.reference, &audit())
                .await?;
            match global.output {
                OutputFormat::Json => output::print_json(&trusted_ca_json(&record)),
                OutputFormat::Table => output::print(&format!(
                    "Tenant {} no longer trusts the CA {} (SHA-256 {}).\n",
                    args.tenant, record.subject, record.sha256
                )),
            }
        }
        CaCommand::Trust(CaTrustCommand::List(args)) => {
            let records = ca.trusted(&args.tenant).await?;
            match global.output {
                OutputFormat::Json => {
                    let items: Vec<Value> = records.iter().map(trusted_ca_json).collect();
                    output::print_json(&json!({ "trusted_cas": items }))
                }
                OutputFormat::Table => {
                    let mut table = Table::new(&[
                        "ID",
                        "SUBJECT",
                        "SHA-256",
                        "ADDED",
                        "REVOCATION",
                        "CRL FILES",
                    ]);
                    for record in &records {
                        table.push(&[
                            &record.id.to_string(),
                            &record.subject,
                            &record.sha256,
                            &output::time_or(Some(record.added_at), "-"),
                            revocation_check(record),
                            &record.crl_files.join(" "),
                        ]);
                    }
                    output::print(&table.render())
                }
            }
        }
    }
}

/// Turns `--crl` and `--no-crl` into what the CA stores. Each CRL path is
/// made absolute against the current directory, without resolving
/// symbolic links, so that a link the operator swaps keeps working.
fn revocation_source(args: &RevocationArgs) -> anyhow::Result<RevocationSource> {
    let mut crl_files = Vec::with_capacity(args.crls.len());
    for path in &args.crls {
        let absolute = std::path::absolute(path)
            .with_context(|| format!("invalid --crl {}", path.display()))?;
        let text = absolute
            .to_str()
            .with_context(|| format!("--crl {} is not valid UTF-8", absolute.display()))?;
        crl_files.push(text.to_owned());
    }
    Ok(RevocationSource {
        crl_files,
        no_crl: args.no_crl,
    })
}

/// Describes how a trusted CA's certificates are checked for revocation.
fn describe_revocation(record: &TrustedCaRecord) -> String {
    if record.revocation_unchecked {
        "Its certificates are not checked for revocation (--no-crl).".to_owned()
    } else if record.crl_files.is_empty() {
        "Its CRLs come from [server] partner_crls; without one, its certificates are rejected \
         as revocation_unknown once `ca init` has run."
            .to_owned()
    } else {
        format!("CRL files: {}.", record.crl_files.join(", "))
    }
}

/// Runs a `certs` command other than `verify`.
pub(crate) async fn run_certs(
    global: &GlobalArgs,
    command: CertsCommand,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let ca = open(global, env).await?;
    match command {
        CertsCommand::Sign(args) => sign(&ca, global.output, &args).await,
        CertsCommand::Issue(args) => issue(&ca, global.output, &args).await,
        CertsCommand::List(args) => list(&ca, global.output, &args).await,
        CertsCommand::Revoke(args) => revoke(&ca, global.output, &args).await,
        CertsCommand::Verify(_) => {
            bail!("certs verify is dispatched before the data directory opens")
        }
    }
}

async fn open(
    global: &GlobalArgs,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<CertificateAuthority> {
    telemetry::init(LogFormat::Human, Some(ADMIN_LOG_FILTER));
    let opened =
        data_dir::open_store(&global.data_dir, global.database_url.as_deref(), env).await?;
    Ok(CertificateAuthority::new(opened.store, opened.ca_sealing))
}

fn audit() -> AuditContext {
    AuditContext {
        actor: AUDIT_ACTOR.to_owned(),
        remote_addr: None,
        at: portcullis_server::manage::now(),
    }
}

fn parse_client(text: &str) -> anyhow::Result<ClientId> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("invalid --client {text:?}: client ids are UUIDs"))
}

async fn sign(
    ca: &CertificateAuthority,
    format: OutputFormat,
    args: &CertsSignArgs,
) -> anyhow::Result<()> {
    let client = parse_client(&args.client)?;
    let csr = read_pem_file(&args.csr)?;
    let record = ca.sign_csr(client, &csr, Some(args.days), &audit()).await?;
    if let Some(path) = &args.out {
        write_file(path, record.certificate_pem.as_bytes(), 0o644)?;
    }
    match (format, &args.out) {
        (OutputFormat::Json, _) => output::print_json(&certificate_json(&record)),
        (OutputFormat::Table, Some(path)) => output::print(&format!(
            "Signed certificate {} for client {}, valid until {}, written to {}.\n",
            record.serial,
            record.client_id,
            output::time_or(Some(record.not_after), "-"),
            path.display()
        )),
        (OutputFormat::Table, None) => output::print(&record.certificate_pem),
    }
}

async fn issue(
    ca: &CertificateAuthority,
    format: OutputFormat,
    args: &CertsIssueArgs,
) -> anyhow::Result<()> {
    let client = parse_client(&args.client)?;
    let ca_pem = ca.ca_pem().await?;
    // Nothing is written until the CA has issued the certificate, so a
    // rejected client leaves the file system as it was.
    let directory = OutputDirectory::check(&args.out)?;
    let issued = ca
        .issue_for_testing(client, Some(args.days), &audit())
        .await?;
    let files = [
        OutputFile {
            name: "key.pem",
            contents: issued.key_pem.expose_secret().as_bytes(),
            mode: 0o600,
        },
        OutputFile {
            name: "cert.pem",
            contents: issued.record.certificate_pem.as_bytes(),
            mode: 0o644,
        },
        OutputFile {
            name: "ca.pem",
            contents: ca_pem.as_bytes(),
            mode: 0o644,
        },
    ];
    if let Err(error) = directory.write(&files) {
        return Err(revoke_unwritten(ca, &issued.record, error).await);
    }
    match format {
        OutputFormat::Json => output::print_json(&certificate_json(&issued.record)),
        OutputFormat::Table => output::print(&format!(
            "Issued certificate {} for client {}, valid until {}.\n\
             Wrote key.pem, cert.pem and ca.pem to {}.\n",
            issued.record.serial,
            issued.record.client_id,
            output::time_or(Some(issued.record.not_after), "-"),
            args.out.display()
        )),
    }
}

/// Revokes a certificate whose private key could not be written. The key
/// exists nowhere else, so nobody can use the certificate, and revoking it
/// keeps it out of the CA's list of valid certificates.
async fn revoke_unwritten(
    ca: &CertificateAuthority,
    record: &CertificateRecord,
    error: anyhow::Error,
) -> anyhow::Error {
    let revoked = ca
        .revoke(&record.serial, "cessationOfOperation", &audit())
        .await;
    let outcome = match revoked {
        Ok(_) => "it was revoked".to_owned(),
        Err(revoke_error) => format!(
            "revoking it failed too ({revoke_error}); run `portcullis certs revoke {}`",
            record.serial
        ),
    };
    error.context(format!(
        "certificate {} was issued, but its files could not be written, and {outcome}",
        record.serial
    ))
}

async fn list(
    ca: &CertificateAuthority,
    format: OutputFormat,
    args: &CertsListArgs,
) -> anyhow::Result<()> {
    let filter = match (&args.client, &args.tenant) {
        (Some(client), _) => CertificateFilter::Client(parse_client(client)?),
        (None, Some(tenant)) => CertificateFilter::Tenant(ca.tenant_id(tenant).await?),
        (None, None) => CertificateFilter::All,
    };
    let records = ca.list(filter).await?;
    match format {
        OutputFormat::Json => {
            let items: Vec<Value> = records.iter().map(certificate_json).collect();
            output::print_json(&json!({ "certificates": items }))
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["SERIAL", "CLIENT", "STATUS", "NOT AFTER", "SHA-256"]);
            for record in &records {
                table.push(&[
                    record.serial.as_str(),
                    &record.client_id.to_string(),
                    status(record),
                    &output::time_or(Some(record.not_after), "-"),
                    &record.sha256,
                ]);
            }
            output::print(&table.render())
        }
    }
}

async fn revoke(
    ca: &CertificateAuthority,
    format: OutputFormat,
    args: &CertsRevokeArgs,
) -> anyhow::Result<()> {
    let serial: CertificateSerial = args.serial.parse()?;
    let record = ca.revoke(&serial, &args.reason, &audit()).await?;
    match format {
        OutputFormat::Json => output::print_json(&certificate_json(&record)),
        OutputFormat::Table => output::print(&format!(
            "Revoked certificate {} of client {}.\n",
            record.serial, record.client_id
        )),
    }
}

fn status(record: &CertificateRecord) -> &'static str {
    if record.revoked_at.is_some() {
        "revoked"
    } else if record.not_after < portcullis_server::manage::now() {
        "expired"
    } else {
        "active"
    }
}

fn read_pem_file(path: &Path) -> anyhow::Result<String> {
    let size = fs::metadata(path)
        .with_context(|| format!("failed to read {}", path.display()))?
        .len();
    if size > MAX_PEM_FILE {
        bail!(
            "{} is {size} bytes; a PEM file here is at most {MAX_PEM_FILE} bytes",
            path.display()
        );
    }
    fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

/// Writes `contents` to a new or truncated file with `mode`, and sets the
/// mode also on an existing file.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;

    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to set the mode of {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("failed to write {}", path.display()))
}
