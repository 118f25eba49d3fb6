//! `portcullis tenants create|list`.

use portcullis_server::admin::tenant_json;
use serde_json::{Value, json};

use super::{Admin, manage_error};
use crate::cli::{OutputFormat, TenantsCommand};
use crate::output::{self, Table};

pub(crate) async fn run(admin: &Admin, command: TenantsCommand) -> anyhow::Result<()> {
    match command {
        TenantsCommand::Create { name } => create(admin, &name).await,
        TenantsCommand::List => list(admin).await,
    }
}

async fn create(admin: &Admin, name: &str) -> anyhow::Result<()> {
    let tenant = admin
        .manager
        .create_tenant(name, &admin.audit())
        .await
        .map_err(|error| manage_error(error, tenant_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&tenant_json(&tenant)),
        OutputFormat::Table => output::print(&format!(
            "Created tenant {} with id {}.\n",
            tenant.name, tenant.id
        )),
    }
}

async fn list(admin: &Admin) -> anyhow::Result<()> {
    let tenants = admin
        .manager
        .list_tenants()
        .await
        .map_err(|error| manage_error(error, tenant_flag))?;

    match admin.output {
        OutputFormat::Json => {
            let items: Vec<Value> = tenants.iter().map(tenant_json).collect();
            output::print_json(&json!({ "tenants": items }))
        }
        OutputFormat::Table => {
            let mut table = Table::new(&["NAME", "ID", "CREATED"]);
            for tenant in &tenants {
                table.push(&[
                    tenant.name.as_str(),
                    &tenant.id.to_string(),
                    &output::time_or(Some(tenant.created_at), "-"),
                ]);
            }
            output::print(&table.render())
        }
    }
}

/// Maps a field that the manager rejected to its command-line name.
fn tenant_flag(field: &str) -> &str {
    match field {
        "name" => "NAME",
        other => other,
    }
}
