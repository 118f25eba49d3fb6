//! `portcullis users create|list|disable|enable`.
//!
//! The password comes from `PORTCULLIS_USER_PASSWORD` or else from the
//! first line of standard input, never from an argument, because other
//! local users can read a process's arguments (`ps`). It is never printed.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Read as _};

use anyhow::Context;
use portcullis_core::oauth::UserRecord;
use portcullis_server::admin::users::{DEFAULT_ROLE, user_json};
use portcullis_server::users::MAX_PASSWORD_LEN;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{Admin, manage_error};
use crate::cli::{OutputFormat, TenantArgs, UserArgs, UsersCommand, UsersCreateArgs};
use crate::output::{self, Table};

/// Environment variable that supplies the new user's password.
pub(crate) const PASSWORD_VARIABLE: &str = "PORTCULLIS_USER_PASSWORD";

/// Most bytes read from standard input: the longest password in UTF-8
/// (four bytes per character) and a CRLF line end.
const MAX_PASSWORD_LINE_BYTES: usize = MAX_PASSWORD_LEN * 4 + 2;

pub(crate) async fn run(
    admin: &Admin,
    command: UsersCommand,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create(args) => create(admin, &args, env).await,
        UsersCommand::List(args) => list(admin, &args).await,
        UsersCommand::Disable(args) => set_enabled(admin, &args, false).await,
        UsersCommand::Enable(args) => set_enabled(admin, &args, true).await,
    }
}

async fn create(
    admin: &Admin,
    args: &UsersCreateArgs,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let password = match env.get(PASSWORD_VARIABLE) {
        Some(password) => SecretString::from(password.clone()),
        None => read_password_line()?,
    };
    let audit = admin.audit();
    let user = admin
        .manager
        .create_user(
            &args.tenant,
            &args.email,
            &password,
            args.role.unwrap_or(DEFAULT_ROLE),
            &audit,
        )
        .await
        .map_err(|error| manage_error(error, user_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&user_json(&user)),
        OutputFormat::Table => {
            let mut text = format!("Created user {}.\n\n", user.id);
            text.push_str(&output::details(&[
                ("tenant", user.tenant.to_string()),
                ("email", user.email.to_string()),
                ("role", user.role.to_string()),
            ]));
            output::print(&text)
        }
    }
}

async fn list(admin: &Admin, args: &TenantArgs) -> anyhow::Result<()> {
    let users = admin
        .manager
        .list_users(&args.tenant)
        .await
        .map_err(|error| manage_error(error, user_flag))?;

    match admin.output {
        OutputFormat::Json => {
            let items: Vec<Value> = users.iter().map(user_json).collect();
            output::print_json(&json!({ "users": items }))
        }
        OutputFormat::Table => output::print(&users_table(&users)),
    }
}

/// Enables or disables one user through the manager, which writes the
/// audit record and keeps the tenant's last enabled admin.
async fn set_enabled(admin: &Admin, args: &UserArgs, enabled: bool) -> anyhow::Result<()> {
    let user = admin
        .manager
        .user(&args.tenant, &args.email)
        .await
        .map_err(|error| manage_error(error, user_flag))?;
    let audit = admin.audit();
    let changed = if enabled {
        admin.manager.enable_user(&user, &audit).await
    } else {
        admin.manager.disable_user(&user, &audit).await
    }
    .map_err(|error| manage_error(error, user_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&user_json(&changed)),
        OutputFormat::Table => {
            let verb = if enabled { "Enabled" } else { "Disabled" };
            output::print(&format!(
                "{verb} user {} ({}).\n",
                changed.email, changed.id
            ))
        }
    }
}

/// Reads the password from the first line of standard input, without its
/// line end. A terminal is rejected, because the typed password would show.
fn read_password_line() -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        anyhow::bail!(
            "no password given: set {PASSWORD_VARIABLE} or pipe the password on standard input"
        );
    }
    let mut line = String::new();
    stdin
        .lock()
        .take(MAX_PASSWORD_LINE_BYTES as u64 + 1)
        .read_line(&mut line)
        .context("failed to read the password from standard input")?;
    let password = SecretString::from(line.trim_end_matches(['\n', '\r']).to_owned());
    if line.len() > MAX_PASSWORD_LINE_BYTES {
        anyhow::bail!("invalid password: longer than {MAX_PASSWORD_LEN} characters");
    }
    Ok(password)
}

fn users_table(users: &[UserRecord]) -> String {
    let mut table = Table::new(&["ID", "EMAIL", "ROLE", "CREATED", "STATUS"]);
    for user in users {
        let status = if user.disabled_at.is_some() {
            "disabled"
        } else {
            "active"
        };
        table.push(&[
            &user.id.to_string(),
            user.email.as_str(),
            user.role.as_str(),
            &output::time_or(Some(user.created_at), "-"),
            status,
        ]);
    }
    table.render()
}

/// Maps a field that the manager rejected to its command-line name.
fn user_flag(field: &str) -> &str {
    match field {
        "tenant" => "--tenant",
        "email" => "--email",
        other => other,
    }
}
