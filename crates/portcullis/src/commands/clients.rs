//! `portcullis clients create|list|rotate-secret|revoke`.
//!
//! JSON output uses the admin API's shapes ([`client_json`],
//! [`issued_client_json`]), which follow RFC 7591's field names.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context;
use portcullis_core::credential::RateLimits;
use portcullis_core::duration::parse_duration;
use portcullis_core::ids::ClientId;
use portcullis_core::oauth::{ClientRecord, TlsSubjectKind};
use portcullis_core::scope::ScopeSet;
use portcullis_server::admin::MAX_JSON_BODY;
use portcullis_server::admin::clients::{client_json, issued_client_json};
use portcullis_server::clients::{ClientRequest, IssuedClient};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::keys::{parse_grace, rate_limit_details, scopes_text};
use super::{Admin, manage_error};
use crate::cli::{
    ClientsCommand, ClientsCreateArgs, ClientsRevokeArgs, ClientsRotateSecretArgs,
    ClientsUpdateArgs, OutputFormat, TenantArgs,
};
use crate::output::{self, Table};

/// Printed after a new secret in table output.
const SHOWN_ONCE: &str =
    "Store the client secret now: it is shown only this once and cannot be recovered.";

pub(crate) async fn run(admin: &Admin, command: ClientsCommand) -> anyhow::Result<()> {
    match command {
        ClientsCommand::Create(args) => create(admin, *args).await,
        ClientsCommand::List(args) => list(admin, &args).await,
        ClientsCommand::RotateSecret(args) => rotate_secret(admin, &args).await,
        ClientsCommand::Update(args) => update(admin, args).await,
        ClientsCommand::Revoke(args) => revoke(admin, &args).await,
    }
}

async fn create(admin: &Admin, args: ClientsCreateArgs) -> anyhow::Result<()> {
    let scopes = ScopeSet::parse_list(&args.scopes).context("invalid --scopes")?;
    let access_token_ttl = args
        .access_token_ttl
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("invalid --access-token-ttl")?;
    let jwks = args.jwks.as_deref().map(read_jwks).transpose()?;
    let tls_subjects = [
        (TlsSubjectKind::SubjectDn, args.tls_subject_dn),
        (TlsSubjectKind::SanDns, args.tls_san_dns),
        (TlsSubjectKind::SanUri, args.tls_san_uri),
        (TlsSubjectKind::SanIp, args.tls_san_ip),
        (TlsSubjectKind::SanEmail, args.tls_san_email),
    ]
    .into_iter()
    .filter_map(|(kind, value)| Some((kind, value?)))
    .collect();
    let request = ClientRequest {
        tenant: args.tenant,
        name: args.name,
        grant_types: args.grant_types,
        scopes,
        redirect_uris: args.redirect_uris,
        public: args.public,
        auth_method: args.auth_method,
        jwks,
        tls_subjects,
        access_token_ttl,
        limits: RateLimits {
            rate_limits: args.rate_limits,
            plan: args.plan,
        },
    };

    let audit = admin.audit();
    let issued = admin
        .manager
        .create_client(request, &audit)
        .await
        .map_err(|error| manage_error(error, client_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&issued_client_json(&issued)),
        OutputFormat::Table => {
            let mut text = format!("Registered OAuth client {}.\n\n", issued.record.id);
            text.push_str(&issued_details(&issued));
            if issued.secret.is_some() {
                text.push('\n');
                text.push_str(SHOWN_ONCE);
                text.push('\n');
            }
            output::print(&text)
        }
    }
}

async fn update(admin: &Admin, args: ClientsUpdateArgs) -> anyhow::Result<()> {
    let id = parse_client_id(&args.id)?;
    args.limits.check_not_empty()?;
    let current = admin
        .manager
        .client(id)
        .await
        .map_err(|error| manage_error(error, client_flag))?;
    let limits = args.limits.apply(current.limits);
    let audit = admin.audit();
    let client = admin
        .manager
        .update_client_limits(id, limits, &audit)
        .await
        .map_err(|error| manage_error(error, client_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&client_json(&client)),
        OutputFormat::Table => {
            let mut text = format!("Updated the limits of OAuth client {}.\n\n", client.id);
            text.push_str(&output::details(&rate_limit_details(
                &client.limits.rate_limits,
                client.limits.plan.as_deref(),
            )));
            output::print(&text)
        }
    }
}

async fn list(admin: &Admin, args: &TenantArgs) -> anyhow::Result<()> {
    let clients = admin
        .manager
        .list_clients(&args.tenant)
        .await
        .map_err(|error| manage_error(error, client_flag))?;

    match admin.output {
        OutputFormat::Json => {
            let items: Vec<Value> = clients.iter().map(client_json).collect();
            output::print_json(&json!({ "clients": items }))
        }
        OutputFormat::Table => output::print(&clients_table(&clients)),
    }
}

async fn rotate_secret(admin: &Admin, args: &ClientsRotateSecretArgs) -> anyhow::Result<()> {
    let id = parse_client_id(&args.id)?;
    let grace = parse_grace(&args.grace)?;
    let audit = admin.audit();
    let (client, secret) = admin
        .manager
        .rotate_secret(id, grace, &audit)
        .await
        .map_err(|error| manage_error(error, client_flag))?;
    let issued = IssuedClient {
        record: client,
        secret: Some(secret),
    };
    let previous_expire_at = audit.at + grace;

    match admin.output {
        OutputFormat::Json => {
            let mut value = issued_client_json(&issued);
            if let Value::Object(map) = &mut value {
                let expire_at = previous_expire_at
                    .format(&Rfc3339)
                    .context("failed to format the grace period's end")?;
                map.insert(
                    "previous_secrets_expire_at".to_owned(),
                    Value::from(expire_at),
                );
            }
            output::print_json(&value)
        }
        OutputFormat::Table => {
            let mut text = format!(
                "Rotated the secret of OAuth client {}. Older secrets work until {}.\n\n",
                issued.record.id,
                output::time_or(Some(previous_expire_at), "-"),
            );
            text.push_str(&issued_details(&issued));
            text.push('\n');
            text.push_str(SHOWN_ONCE);
            text.push('\n');
            output::print(&text)
        }
    }
}

async fn revoke(admin: &Admin, args: &ClientsRevokeArgs) -> anyhow::Result<()> {
    let id = parse_client_id(&args.id)?;
    let audit = admin.audit();
    let client = admin
        .manager
        .revoke_client(id, args.reason.as_deref(), &audit)
        .await
        .map_err(|error| manage_error(error, client_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&client_json(&client)),
        OutputFormat::Table => {
            let mut text = format!("Revoked OAuth client {}.\n\n", client.id);
            text.push_str(&output::details(&[
                ("name", client.name.clone()),
                ("revoked", output::time_or(client.revoked_at, "-")),
            ]));
            output::print(&text)
        }
    }
}

/// Reads `--jwks`, refusing a file larger than the admin API would take.
fn read_jwks(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("failed to open --jwks file {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_JSON_BODY as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("failed to read --jwks file {}", path.display()))?;
    if text.len() > MAX_JSON_BODY {
        anyhow::bail!(
            "--jwks file {} is larger than {} KiB",
            path.display(),
            MAX_JSON_BODY / 1024
        );
    }
    Ok(text)
}

fn parse_client_id(text: &str) -> anyhow::Result<ClientId> {
    text.trim().parse().map_err(|_| {
        anyhow::anyhow!("invalid client id {text:?}: expected a UUID, as `clients list` prints it")
    })
}

/// Formats the fields of a client, its new secret included, as aligned
/// lines.
fn issued_details(issued: &IssuedClient) -> String {
    let record = &issued.record;
    let mut pairs = vec![
        ("client_id", record.id.to_string()),
        ("tenant", record.tenant.to_string()),
        ("name", record.name.clone()),
        ("grant types", grant_types_text(record)),
        ("scopes", scopes_text(&record.scopes)),
        ("redirect URIs", redirect_uris_text(record)),
        ("auth method", record.auth_method.to_string()),
        (
            "token lifetime",
            format!("{}s", record.access_token_ttl_seconds),
        ),
    ];
    if let Some(subject) = &record.tls_client_auth_subject {
        pairs.push((subject.kind().as_str(), subject.value()));
    }
    pairs.extend(rate_limit_details(
        &record.limits.rate_limits,
        record.limits.plan.as_deref(),
    ));
    if let Some(secret) = &issued.secret {
        pairs.push(("client_secret", secret.expose().to_owned()));
    }
    output::details(&pairs)
}

/// Formats the client list as a table. It contains no secret, because the
/// records have none.
fn clients_table(clients: &[ClientRecord]) -> String {
    let mut table = Table::new(&[
        "CLIENT ID",
        "NAME",
        "GRANT TYPES",
        "AUTH METHOD",
        "SCOPES",
        "CREATED",
        "STATUS",
    ]);
    for client in clients {
        let status = if client.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        table.push(&[
            &client.id.to_string(),
            &client.name,
            &grant_types_text(client),
            client.auth_method.as_str(),
            &scopes_text(&client.scopes),
            &output::time_or(Some(client.created_at), "-"),
            status,
        ]);
    }
    table.render()
}

fn grant_types_text(client: &ClientRecord) -> String {
    let names: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
    names.join(",")
}

fn redirect_uris_text(client: &ClientRecord) -> String {
    if client.redirect_uris.is_empty() {
        return "-".to_owned();
    }
    let uris: Vec<&str> = client.redirect_uris.iter().map(|u| u.as_str()).collect();
    uris.join(" ")
}

/// Maps a field that the manager rejected to its command-line name.
fn client_flag(field: &str) -> &str {
    match field {
        "tenant" => "--tenant",
        "name" => "--name",
        "grant_types" => "--grant-types",
        "scopes" => "--scopes",
        "redirect_uris" => "--redirect-uri",
        "auth_method" => "--auth-method",
        "jwks" => "--jwks",
        "tls_client_auth_subject" => "--tls-subject-dn or --tls-san-*",
        "tls_client_auth_subject_dn" => "--tls-subject-dn",
        "tls_client_auth_san_dns" => "--tls-san-dns",
        "tls_client_auth_san_uri" => "--tls-san-uri",
        "tls_client_auth_san_ip" => "--tls-san-ip",
        "tls_client_auth_san_email" => "--tls-san-email",
        "access_token_ttl" => "--access-token-ttl",
        "rate_limits" => "--rate-limit",
        "plan" => "--plan",
        "reason" => "--reason",
        "grace" => "--grace",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_must_be_uuid() {
        let message = parse_client_id("not\nan id").unwrap_err().to_string();
        assert!(message.contains("expected a UUID"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
