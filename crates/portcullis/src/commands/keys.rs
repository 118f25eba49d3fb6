//! `portcullis keys create|list|show|revoke|rotate|update|narrow`.
//!
//! JSON output uses the admin API's shapes ([`key_json`], [`issued_json`]),
//! so scripts can switch between the two without changes.

use anyhow::Context;
use portcullis_core::credential::{ApiKeyRecord, KeyLimits, RateLimits};
use portcullis_core::duration::parse_duration;
use portcullis_core::ids::KeyId;
use portcullis_core::scope::ScopeSet;
use portcullis_server::admin::{issued_json, key_json};
use portcullis_server::manage::{self, IssuedKey, KeyRequest};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::{Admin, manage_error};
use crate::cli::{
    KeyOwner, KeysCommand, KeysCreateArgs, KeysListArgs, KeysNarrowArgs, KeysRevokeArgs,
    KeysRotateArgs, KeysShowArgs, KeysUpdateArgs, LimitChanges, OutputFormat,
};
use crate::output::{self, Table};

/// Printed after a new secret in table output.
const SHOWN_ONCE: &str = "Store the key now: it is shown only this once and cannot be recovered.";

pub(crate) async fn run(admin: &Admin, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => create(admin, args).await,
        KeysCommand::List(args) => list(admin, &args).await,
        KeysCommand::Show(args) => show(admin, &args).await,
        KeysCommand::Revoke(args) => revoke(admin, &args).await,
        KeysCommand::Rotate(args) => rotate(admin, &args).await,
        KeysCommand::Update(args) => update(admin, args).await,
        KeysCommand::Narrow(args) => narrow(admin, &args).await,
    }
}

async fn create(admin: &Admin, args: KeysCreateArgs) -> anyhow::Result<()> {
    let scopes = ScopeSet::parse_list(&args.scopes).context("invalid --scopes")?;
    let expires_in = args
        .expires_in
        .as_deref()
        .map(parse_duration)
        .transpose()
        .context("invalid --expires-in")?;
    let request = KeyRequest {
        tenant: owner_tenant(&args.owner),
        scopes,
        name: args.name,
        expires_in,
        environment: args.environment.into(),
        limits: KeyLimits {
            rate_limits: args.rate_limits,
            plan: args.plan,
            max_uses: args.max_uses.map(i64::from),
            uses_spent: 0,
        },
    };

    let audit = admin.audit();
    let issued = admin
        .manager
        .create_key(request, &audit)
        .await
        .map_err(|error| manage_error(error, key_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&issued_json(&issued, audit.at)),
        OutputFormat::Table => {
            let mut text = format!("Created API key {}.\n\n", issued.record.id);
            text.push_str(&issued_details(&issued, audit.at));
            text.push('\n');
            text.push_str(SHOWN_ONCE);
            text.push('\n');
            output::print(&text)
        }
    }
}

async fn update(admin: &Admin, args: KeysUpdateArgs) -> anyhow::Result<()> {
    let id = parse_key_id(&args.id)?;
    args.limits.check_not_empty()?;
    let current = admin
        .manager
        .key(id)
        .await
        .map_err(|error| manage_error(error, key_flag))?;
    let changed = args.limits.apply(RateLimits {
        rate_limits: current.limits.rate_limits,
        plan: current.limits.plan,
    });
    let limits = KeyLimits {
        rate_limits: changed.rate_limits,
        plan: changed.plan,
        ..current.limits
    };
    let audit = admin.audit();
    let key = admin
        .manager
        .update_key_limits(id, limits, &audit)
        .await
        .map_err(|error| manage_error(error, key_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&key_json(&key, audit.at)),
        OutputFormat::Table => {
            let mut text = format!("Updated the limits of API key {}.\n\n", key.id);
            text.push_str(&output::details(&limit_details(&key)));
            output::print(&text)
        }
    }
}

async fn narrow(admin: &Admin, args: &KeysNarrowArgs) -> anyhow::Result<()> {
    let id = parse_key_id(&args.id)?;
    // An empty list parses to an empty set, which the manager rejects.
    let scopes = ScopeSet::parse_list(&args.scopes).context("invalid --scopes")?;
    let audit = admin.audit();
    let key = admin
        .manager
        .narrow_key_scopes(id, &scopes, &audit)
        .await
        .map_err(|error| manage_error(error, key_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&key_json(&key, audit.at)),
        OutputFormat::Table => output::print(&format!(
            "Narrowed the scopes of API key {} to {}.\n",
            key.id,
            scopes_text(&key.scopes)
        )),
    }
}

impl LimitChanges {
    /// Fails when the options change nothing.
    pub(crate) fn check_not_empty(&self) -> anyhow::Result<()> {
        let changes_rates = !self.rate_limits.is_empty() || self.no_rate_limit;
        let changes_plan = self.plan.is_some() || self.no_plan;
        if !changes_rates && !changes_plan {
            anyhow::bail!(
                "nothing to update; give --rate-limit, --no-rate-limit, --plan or --no-plan"
            );
        }
        Ok(())
    }

    /// Returns `current` with the named changes made.
    pub(crate) fn apply(self, current: RateLimits) -> RateLimits {
        let changes_rates = !self.rate_limits.is_empty() || self.no_rate_limit;
        let changes_plan = self.plan.is_some() || self.no_plan;
        RateLimits {
            rate_limits: if changes_rates {
                self.rate_limits
            } else {
                current.rate_limits
            },
            plan: if changes_plan {
                self.plan
            } else {
                current.plan
            },
        }
    }
}

/// Returns the rows that show the rate limits and plan of a key or client.
pub(crate) fn rate_limit_details(
    rates: &[String],
    plan: Option<&str>,
) -> [(&'static str, String); 2] {
    let rate_limits = if rates.is_empty() {
        "-".to_owned()
    } else {
        rates.join(", ")
    };
    [
        ("rate limits", rate_limits),
        ("plan", plan.unwrap_or("-").to_owned()),
    ]
}

/// Returns the rows that show a key's rate limits, plan and uses.
fn limit_details(key: &ApiKeyRecord) -> [(&'static str, String); 3] {
    let [rate_limits, plan] =
        rate_limit_details(&key.limits.rate_limits, key.limits.plan.as_deref());
    let uses = key.limits.max_uses.map_or_else(
        || "unlimited".to_owned(),
        |max| format!("{} of {max}", key.limits.uses_spent),
    );
    [rate_limits, plan, ("uses", uses)]
}

async fn list(admin: &Admin, args: &KeysListArgs) -> anyhow::Result<()> {
    let tenant = owner_tenant(&args.owner);
    let keys = admin
        .manager
        .list_keys(tenant.as_deref())
        .await
        .map_err(|error| manage_error(error, key_flag))?;
    let now = manage::now();

    match admin.output {
        OutputFormat::Json => {
            let items: Vec<Value> = keys.iter().map(|key| key_json(key, now)).collect();
            output::print_json(&json!({ "keys": items }))
        }
        OutputFormat::Table => output::print(&keys_table(&keys, now)),
    }
}

async fn show(admin: &Admin, args: &KeysShowArgs) -> anyhow::Result<()> {
    let id = parse_key_id(&args.id)?;
    let key = admin
        .manager
        .key(id)
        .await
        .map_err(|error| manage_error(error, key_flag))?;
    let now = manage::now();

    match admin.output {
        OutputFormat::Json => output::print_json(&key_json(&key, now)),
        OutputFormat::Table => output::print(&key_details(&key, now)),
    }
}

/// Formats every field of a stored key as aligned lines.
fn key_details(key: &ApiKeyRecord, now: OffsetDateTime) -> String {
    let [rate_limits, plan, uses] = limit_details(key);
    let owner = match &key.tenant {
        Some(tenant) => format!("tenant {tenant}"),
        None => "operator".to_owned(),
    };
    let rotated_to = key.rotated_to.map(|id| id.to_string());
    output::details(&[
        ("id", key.id.to_string()),
        ("owner", owner),
        ("name", key.name.clone().unwrap_or_else(|| "-".to_owned())),
        ("prefix", key.visible_prefix.clone()),
        ("environment", key.environment.to_string()),
        ("scopes", scopes_text(&key.scopes)),
        ("status", key.status(now).to_string()),
        ("created", output::time_or(Some(key.created_at), "-")),
        (
            "created by",
            key.created_by.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("expires", output::time_or(key.expires_at, "never")),
        ("revoked", output::time_or(key.revoked_at, "-")),
        (
            "revoked reason",
            key.revoked_reason.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("rotated to", rotated_to.unwrap_or_else(|| "-".to_owned())),
        ("last used", output::time_or(key.last_used_at, "never")),
        (
            "last used from",
            key.last_used_from.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("use count", key.use_count.to_string()),
        rate_limits,
        plan,
        uses,
    ])
}

async fn revoke(admin: &Admin, args: &KeysRevokeArgs) -> anyhow::Result<()> {
    let id = parse_key_id(&args.id)?;
    let audit = admin.audit();
    let key = admin
        .manager
        .revoke_key(id, args.reason.as_deref(), &audit)
        .await
        .map_err(|error| manage_error(error, key_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&key_json(&key, audit.at)),
        OutputFormat::Table => {
            let mut text = format!("Revoked API key {}.\n\n", key.id);
            text.push_str(&output::details(&[
                ("prefix", key.visible_prefix.clone()),
                ("status", key.status(audit.at).to_string()),
                ("revoked", output::time_or(key.revoked_at, "-")),
                (
                    "reason",
                    key.revoked_reason.unwrap_or_else(|| "-".to_owned()),
                ),
            ]));
            output::print(&text)
        }
    }
}

async fn rotate(admin: &Admin, args: &KeysRotateArgs) -> anyhow::Result<()> {
    let id = parse_key_id(&args.id)?;
    let grace = parse_grace(&args.grace)?;
    let audit = admin.audit();
    let (old, issued) = admin
        .manager
        .rotate_key(id, grace, &audit)
        .await
        .map_err(|error| manage_error(error, key_flag))?;

    match admin.output {
        OutputFormat::Json => output::print_json(&json!({
            "old": key_json(&old, audit.at),
            "new": issued_json(&issued, audit.at),
        })),
        OutputFormat::Table => {
            let mut text = format!(
                "Rotated API key {} to {}. The old key is {} until {}.\n\n",
                old.id,
                issued.record.id,
                old.status(audit.at),
                output::time_or(old.expires_at, "its expiry"),
            );
            text.push_str(&issued_details(&issued, audit.at));
            text.push('\n');
            text.push_str(SHOWN_ONCE);
            text.push('\n');
            output::print(&text)
        }
    }
}

/// Returns the tenant named by `--tenant`, or `None` for `--operator`.
fn owner_tenant(owner: &KeyOwner) -> Option<String> {
    if owner.operator {
        None
    } else {
        owner.tenant.clone()
    }
}

fn parse_key_id(text: &str) -> anyhow::Result<KeyId> {
    text.trim().parse().map_err(|_| {
        anyhow::anyhow!("invalid key id {text:?}: expected a UUID, as `keys list` prints it")
    })
}

/// Parses `--grace`. Zero is allowed here, although `parse_duration`
/// rejects it, because an immediate cut-over is a legitimate rotation.
pub(super) fn parse_grace(text: &str) -> anyhow::Result<Duration> {
    match text.trim() {
        "0" | "0s" | "0m" | "0h" | "0d" | "0w" => Ok(Duration::ZERO),
        other => parse_duration(other).context("invalid --grace"),
    }
}

/// Formats the fields of a new key, its secret included, as aligned lines.
fn issued_details(issued: &IssuedKey, now: OffsetDateTime) -> String {
    let record = &issued.record;
    let [rate_limits, plan, uses] = limit_details(record);
    let owner = match &record.tenant {
        Some(tenant) => format!("tenant {tenant}"),
        None => "operator".to_owned(),
    };
    output::details(&[
        ("id", record.id.to_string()),
        ("owner", owner),
        (
            "name",
            record.name.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        ("environment", record.environment.to_string()),
        ("scopes", scopes_text(&record.scopes)),
        ("expires", output::time_or(record.expires_at, "never")),
        ("status", record.status(now).to_string()),
        rate_limits,
        plan,
        uses,
        ("key", issued.secret.expose().to_owned()),
    ])
}

/// Formats the key list as a table. It contains no secret, because the
/// records have none.
fn keys_table(keys: &[ApiKeyRecord], now: OffsetDateTime) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "PREFIX",
        "SCOPES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "LAST FROM",
        "STATUS",
    ]);
    for key in keys {
        table.push(&[
            &key.id.to_string(),
            key.name.as_deref().unwrap_or("-"),
            &key.visible_prefix,
            &scopes_text(&key.scopes),
            &output::time_or(Some(key.created_at), "-"),
            &output::time_or(key.expires_at, "never"),
            &output::time_or(key.last_used_at, "never"),
            key.last_used_from.as_deref().unwrap_or("-"),
            key.status(now).as_str(),
        ]);
    }
    table.render()
}

/// Joins scopes with commas, as `--scopes` takes them, because spaces would
/// blur the table's columns.
pub(super) fn scopes_text(scopes: &ScopeSet) -> String {
    let names: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
    names.join(",")
}

/// Maps a field that the manager rejected to its command-line name.
fn key_flag(field: &str) -> &str {
    match field {
        "tenant" => "--tenant",
        "scopes" => "--scopes",
        "name" => "--name",
        "expires_in" => "--expires-in",
        "reason" => "--reason",
        "grace" => "--grace",
        "rate_limits" => "--rate-limit",
        "plan" => "--plan",
        "max_uses" => "--max-uses",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_accepts_zero_and_durations() {
        assert_eq!(parse_grace("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_grace("24h").unwrap(), Duration::hours(24));
        assert!(parse_grace("-1h").is_err());
        assert!(parse_grace("soon").is_err());
    }

    #[test]
    fn key_id_must_be_uuid() {
        let message = parse_key_id("not\nan id").unwrap_err().to_string();
        assert!(message.contains("expected a UUID"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
