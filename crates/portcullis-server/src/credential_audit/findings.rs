//! The rules of the credential audit, judged on an [`Inventory`] without
//! I/O.
//!
//! | code | severity |
//! | --- | --- |
//! | `key_no_expiry` | low |
//! | `key_rotation_overdue` | medium |
//! | `key_unused`, `client_unused` | low |
//! | `wildcard_scope` | medium, high for `admin:*` |
//! | `administrative_scope` | medium, high for an operator key that can write |
//! | `scopes_unused` | medium |
//! | `client_token_lifetime_long` | medium |
//! | `client_secret_not_rotated` | medium |
//! | `certificate_expiring` | medium |
//! | `ca_expiring` | high, critical once expired |
//! | `signing_key_rotation_overdue` | medium |
//! | `plain_http_listener` | low on loopback, medium otherwise; low for a metrics listener beyond loopback |

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use portcullis_core::credential::{ApiKeyRecord, KeyKind, KeyStatus};
use portcullis_core::ids::TenantId;
use portcullis_core::oauth::ClientRecord;
use portcullis_core::scope::{Scope, ScopeSet};
use portcullis_core::signing::SigningKeyState;
use portcullis_store::CredentialRef;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};

use super::{Finding, Inventory, ListenerFacts, Severity, Subject, rfc3339};
use crate::config::AuditPolicy;

/// The resource of Portcullis's own administrative scopes, and a common
/// name for administrative scopes of the APIs behind the gateway.
const ADMIN_RESOURCE: &str = "admin:";

/// Judges `inventory` against `policy` at `now` and returns the findings,
/// most severe first.
pub fn evaluate(inventory: &Inventory, policy: &AuditPolicy, now: OffsetDateTime) -> Vec<Finding> {
    let mut findings = Vec::new();
    for key in &inventory.keys {
        key_findings(key, inventory, policy, now, &mut findings);
    }
    for client in &inventory.clients {
        client_findings(client, inventory, policy, now, &mut findings);
    }
    certificate_findings(inventory, policy, now, &mut findings);
    trusted_ca_findings(inventory, &mut findings);
    signing_key_findings(inventory, policy, now, &mut findings);
    if let Some(listener) = &inventory.listener {
        listener_findings(listener, &mut findings);
    }
    if let Some(address) = inventory.metrics_listener {
        metrics_listener_findings(address, &mut findings);
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.code.cmp(b.code))
            .then_with(|| a.subject.id.cmp(&b.subject.id))
    });
    findings
}

fn key_findings(
    key: &ApiKeyRecord,
    inventory: &Inventory,
    policy: &AuditPolicy,
    now: OffsetDateTime,
    findings: &mut Vec<Finding>,
) {
    let status = key.status(now);
    if !matches!(status, KeyStatus::Active | KeyStatus::Rotating) {
        return;
    }
    let subject = Subject {
        kind: "key",
        id: key.id.to_string(),
        tenant: key.tenant.as_ref().map(ToString::to_string),
        label: Some(
            key.name
                .clone()
                .unwrap_or_else(|| key.visible_prefix.clone()),
        ),
    };
    let finding = finding_about(subject);

    if key.expires_at.is_none() {
        findings.push(finding(
            "key_no_expiry",
            Severity::Low,
            "the key never expires; rotate it to a key created with --expires-in".to_owned(),
            json!({}),
        ));
    }
    let age = whole_days(now - key.created_at);
    if status == KeyStatus::Active && age > i64::from(policy.key_rotation_days) {
        findings.push(finding(
            "key_rotation_overdue",
            Severity::Medium,
            format!(
                "the key is {age} days old, past the rotation policy of {} days; rotate it \
                 with `portcullis keys rotate`",
                policy.key_rotation_days
            ),
            json!({"age_days": age, "created_at": rfc3339(key.created_at)}),
        ));
    }
    let last_activity = key
        .last_used_at
        .unwrap_or(key.created_at)
        .max(key.created_at);
    let idle = whole_days(now - last_activity);
    if idle > i64::from(policy.unused_days) {
        let message = match key.last_used_at {
            Some(_) => {
                format!("the key has not been used for {idle} days; revoke it if nothing needs it")
            }
            None => format!(
                "the key was never used in the {idle} days since it was created; revoke it if nothing needs it"
            ),
        };
        findings.push(finding(
            "key_unused",
            Severity::Low,
            message,
            json!({
                "idle_days": idle,
                "last_used_at": key.last_used_at.map(rfc3339),
                "last_used_from": key.last_used_from,
            }),
        ));
    }

    let grant = Grant {
        kind: "key",
        scopes: &key.scopes,
        created_at: key.created_at,
        exercised: inventory.scope_uses.get(&CredentialRef::Key(key.id)),
        operator: key.kind == KeyKind::Operator,
    };
    scope_findings(&grant, policy, now, &finding, findings);
}

fn client_findings(
    client: &ClientRecord,
    inventory: &Inventory,
    policy: &AuditPolicy,
    now: OffsetDateTime,
    findings: &mut Vec<Finding>,
) {
    if client.revoked_at.is_some() {
        return;
    }
    let subject = Subject {
        kind: "client",
        id: client.id.to_string(),
        tenant: Some(client.tenant.to_string()),
        label: Some(client.name.clone()),
    };
    let finding = finding_about(subject);

    let last_use = inventory.client_last_use.get(&client.id).copied();
    let last_activity = last_use.unwrap_or(client.created_at).max(client.created_at);
    let idle = whole_days(now - last_activity);
    if idle > i64::from(policy.unused_days) {
        findings.push(finding(
            "client_unused",
            Severity::Low,
            format!(
                "the client has not been used for {idle} days; revoke it with `portcullis \
                 clients revoke` if nothing needs it"
            ),
            json!({"idle_days": idle, "last_used_on": last_use.map(rfc3339)}),
        ));
    }

    let max_ttl = i64::try_from(policy.max_access_token_ttl.as_secs()).unwrap_or(i64::MAX);
    if client.access_token_ttl_seconds > max_ttl {
        findings.push(finding(
            "client_token_lifetime_long",
            Severity::Medium,
            format!(
                "the client's access tokens live {} seconds, longer than the policy's {max_ttl}; \
                 a stolen token stays usable that long, so shorten --access-token-ttl",
                client.access_token_ttl_seconds
            ),
            json!({
                "access_token_ttl_seconds": client.access_token_ttl_seconds,
                "max_access_token_ttl_seconds": max_ttl,
            }),
        ));
    }

    let newest_secret = inventory
        .client_secrets
        .get(&client.id)
        .and_then(|secrets| secrets.iter().max_by_key(|secret| secret.created_at));
    if let Some(secret) = newest_secret {
        let age = whole_days(now - secret.created_at);
        if age > i64::from(policy.client_secret_rotation_days) {
            findings.push(finding(
                "client_secret_not_rotated",
                Severity::Medium,
                format!(
                    "the client's newest secret is {age} days old, past the rotation policy \
                     of {} days; rotate it with `portcullis clients rotate-secret`",
                    policy.client_secret_rotation_days
                ),
                json!({"secret_id": secret.id, "age_days": age}),
            ));
        }
    }

    let grant = Grant {
        kind: "client",
        scopes: &client.scopes,
        created_at: client.created_at,
        exercised: inventory.scope_uses.get(&CredentialRef::Client(client.id)),
        operator: false,
    };
    scope_findings(&grant, policy, now, &finding, findings);
}

/// The scopes of one key or client, and those its requests exercised.
struct Grant<'a> {
    /// `key` or `client`, for messages.
    kind: &'static str,
    scopes: &'a ScopeSet,
    created_at: OffsetDateTime,
    exercised: Option<&'a BTreeSet<String>>,
    /// Whether the credential is an operator key.
    operator: bool,
}

/// Reports wildcard, administrative and unused scopes of one credential.
fn scope_findings(
    grant: &Grant<'_>,
    policy: &AuditPolicy,
    now: OffsetDateTime,
    finding: &impl Fn(&'static str, Severity, String, Value) -> Finding,
    findings: &mut Vec<Finding>,
) {
    let scopes = grant.scopes;
    let wildcards: Vec<&str> = scopes
        .iter()
        .filter(|scope| scope.is_wildcard())
        .map(Scope::as_str)
        .collect();
    if !wildcards.is_empty() {
        let severity = if wildcards
            .iter()
            .any(|scope| scope.starts_with(ADMIN_RESOURCE))
        {
            Severity::High
        } else {
            Severity::Medium
        };
        findings.push(finding(
            "wildcard_scope",
            severity,
            format!(
                "wildcard scopes {} grant every action on their resource, including actions \
                 added later; grant the exact scopes instead",
                wildcards.join(", ")
            ),
            json!({"scopes": wildcards}),
        ));
    }

    let administrative: Vec<&str> = scopes
        .iter()
        .map(Scope::as_str)
        .filter(|scope| scope.starts_with(ADMIN_RESOURCE))
        .collect();
    if !administrative.is_empty() {
        let writes = administrative
            .iter()
            .any(|scope| *scope == "admin:write" || *scope == "admin:*");
        let severity = if grant.operator && writes {
            Severity::High
        } else {
            Severity::Medium
        };
        findings.push(finding(
            "administrative_scope",
            severity,
            format!(
                "administrative scopes {} let a leaked credential manage others; keep them \
                 on few credentials, with short expiry",
                administrative.join(", ")
            ),
            json!({"scopes": administrative}),
        ));
    }

    if let Some(unused) = unused_scopes(scopes, grant.created_at, grant.exercised, policy, now) {
        findings.push(finding(
            "scopes_unused",
            Severity::Medium,
            unused.message(grant.kind),
            unused.details(),
        ));
    }
}

/// A credential's granted scopes against those its requests exercised.
struct UnusedScopes {
    granted: Vec<String>,
    unused: Vec<String>,
    used: Vec<String>,
    days: u32,
}

impl UnusedScopes {
    fn message(&self, kind: &str) -> String {
        format!(
            "the {kind}'s requests of the last {} days needed only {}; narrow its scopes to \
             that set",
            self.days,
            self.used.join(",")
        )
    }

    fn details(&self) -> Value {
        json!({
            "granted_scopes": self.granted,
            "unused_scopes": self.unused,
            "suggested_scopes": self.used,
            "look_back_days": self.days,
        })
    }
}

/// Compares granted scopes with the exercised ones. Returns `None` when
/// the credential is younger than the look-back (its record is partial),
/// exercised nothing (the unused rule covers it), or already has exactly
/// the scopes it used.
///
/// NOTE: only requests through this server's gateway, admin and verify APIs
/// are seen. A client whose tokens go to other resource servers exercises
/// scopes that this rule cannot see.
fn unused_scopes(
    granted: &ScopeSet,
    created_at: OffsetDateTime,
    exercised: Option<&BTreeSet<String>>,
    policy: &AuditPolicy,
    now: OffsetDateTime,
) -> Option<UnusedScopes> {
    let exercised = exercised.filter(|exercised| !exercised.is_empty())?;
    if now - created_at < Duration::days(i64::from(policy.scope_unused_days)) {
        return None;
    }
    let exercised: Vec<Scope> = exercised
        .iter()
        .filter_map(|scope| Scope::parse(scope).ok())
        .collect();
    let unused: Vec<String> = granted
        .iter()
        .filter(|held| !exercised.iter().any(|used| held.grants(used)))
        .map(|scope| scope.as_str().to_owned())
        .collect();
    // Only exercised scopes that the credential still grants belong in the
    // suggestion: a scope used before the grant was narrowed is gone.
    let used: Vec<String> = exercised
        .iter()
        .filter(|used| granted.grants(used))
        .map(|scope| scope.as_str().to_owned())
        .collect();
    let granted: Vec<String> = granted
        .iter()
        .map(|scope| scope.as_str().to_owned())
        .collect();
    if used.is_empty() || used == granted {
        return None;
    }
    Some(UnusedScopes {
        granted,
        unused,
        used,
        days: policy.scope_unused_days,
    })
}

fn certificate_findings(
    inventory: &Inventory,
    policy: &AuditPolicy,
    now: OffsetDateTime,
    findings: &mut Vec<Finding>,
) {
    let tenant_names: HashMap<TenantId, String> = inventory
        .clients
        .iter()
        .map(|client| (client.tenant_id, client.tenant.to_string()))
        .collect();
    let warning = Duration::days(i64::from(policy.certificate_expiry_days));
    for certificate in &inventory.certificates {
        let expired = certificate.not_after <= now;
        if certificate.revoked_at.is_some() || expired || certificate.not_after - now > warning {
            continue;
        }
        let days_left = whole_days(certificate.not_after - now);
        findings.push(Finding {
            code: "certificate_expiring",
            severity: Severity::Medium,
            subject: Subject {
                kind: "certificate",
                id: certificate.serial.to_string(),
                tenant: tenant_names.get(&certificate.tenant_id).cloned(),
                label: Some(certificate.subject.clone()),
            },
            message: format!(
                "the client certificate expires in {days_left} days; issue a new one with \
                 `portcullis certs issue` before then"
            ),
            details: object(json!({
                "client_id": certificate.client_id,
                "not_after": rfc3339(certificate.not_after),
                "days_left": days_left,
            })),
        });
    }

    let Some(ca) = &inventory.ca else {
        return;
    };
    let days_left = whole_days(ca.not_after - now);
    if ca.not_after - now > Duration::days(i64::from(policy.ca_expiry_days)) {
        return;
    }
    let (severity, message) = if ca.not_after <= now {
        (
            Severity::Critical,
            "the internal CA certificate has expired, so no client certificate it issued \
             verifies; create a new CA and reissue the certificates"
                .to_owned(),
        )
    } else {
        (
            Severity::High,
            format!(
                "the internal CA certificate expires in {days_left} days, and every client \
                 certificate it issued stops verifying then; plan a new CA now"
            ),
        )
    };
    findings.push(Finding {
        code: "ca_expiring",
        severity,
        subject: Subject {
            kind: "ca",
            id: ca.id.to_string(),
            tenant: None,
            label: None,
        },
        message,
        details: object(json!({"not_after": rfc3339(ca.not_after), "days_left": days_left})),
    });
}

/// Reports each partner CA whose certificates are accepted without a
/// revocation check, because a stolen partner key then stays usable until
/// its certificate expires.
fn trusted_ca_findings(inventory: &Inventory, findings: &mut Vec<Finding>) {
    let tenant_names: HashMap<TenantId, String> = inventory
        .clients
        .iter()
        .map(|client| (client.tenant_id, client.tenant.to_string()))
        .collect();
    for ca in inventory
        .trusted_cas
        .iter()
        .filter(|ca| ca.revocation_unchecked)
    {
        findings.push(Finding {
            code: "trusted_ca_revocation_unchecked",
            severity: Severity::Medium,
            subject: Subject {
                kind: "trusted_ca",
                id: ca.id.to_string(),
                tenant: tenant_names.get(&ca.tenant_id).cloned(),
                label: Some(ca.subject.clone()),
            },
            message: "the partner CA was trusted with --no-crl, so a revoked certificate of it \
                      is accepted until it expires; give its CRL file with `portcullis ca trust \
                      crl --crl FILE` once the partner publishes one"
                .to_owned(),
            details: object(json!({ "sha256": ca.sha256 })),
        });
    }
}

fn signing_key_findings(
    inventory: &Inventory,
    policy: &AuditPolicy,
    now: OffsetDateTime,
    findings: &mut Vec<Finding>,
) {
    for key in &inventory.signing_keys {
        if key.state != SigningKeyState::Active {
            continue;
        }
        let age = whole_days(now - key.created_at);
        if age <= i64::from(policy.signing_key_rotation_days) {
            continue;
        }
        findings.push(Finding {
            code: "signing_key_rotation_overdue",
            severity: Severity::Medium,
            subject: Subject {
                kind: "signing_key",
                id: key.kid.clone(),
                tenant: None,
                label: Some(key.algorithm.to_string()),
            },
            message: format!(
                "the active token-signing key is {age} days old, past the rotation policy of {} \
                 days; rotate it with `portcullis signing-keys rotate`",
                policy.signing_key_rotation_days
            ),
            details: object(json!({"age_days": age, "created_at": rfc3339(key.created_at)})),
        });
    }
}

fn listener_findings(listener: &ListenerFacts, findings: &mut Vec<Finding>) {
    if !listener.plain_http {
        return;
    }
    let loopback = listener.address.ip().is_loopback();
    let (severity, message) = if loopback {
        (
            Severity::Low,
            "the listener serves plain HTTP on a loopback address; only local clients can \
             reach it, and they send credentials unencrypted"
                .to_owned(),
        )
    } else {
        (
            Severity::Medium,
            "the listener serves plain HTTP and relies on a TLS-terminating proxy; any \
             path around the proxy carries credentials unencrypted"
                .to_owned(),
        )
    };
    findings.push(Finding {
        code: "plain_http_listener",
        severity,
        subject: Subject {
            kind: "listener",
            id: listener.address.to_string(),
            tenant: None,
            label: None,
        },
        message,
        details: object(json!({"loopback": loopback})),
    });
}

/// Reports a metrics listener reachable beyond this host. It carries no
/// credentials, but its plain-HTTP responses tell anyone who can reach it
/// about traffic and routes.
fn metrics_listener_findings(address: SocketAddr, findings: &mut Vec<Finding>) {
    if address.ip().is_loopback() {
        return;
    }
    findings.push(Finding {
        code: "plain_http_listener",
        severity: Severity::Low,
        subject: Subject {
            kind: "listener",
            id: address.to_string(),
            tenant: None,
            label: Some("metrics".to_owned()),
        },
        message: "the metrics listener serves plain HTTP beyond this host; anyone who can \
                  reach it reads the traffic figures, so bind it to loopback or firewall it"
            .to_owned(),
        details: object(json!({"loopback": false})),
    });
}

/// Returns a builder of findings about `subject`.
fn finding_about(subject: Subject) -> impl Fn(&'static str, Severity, String, Value) -> Finding {
    move |code, severity, message, details| Finding {
        code,
        severity,
        subject: subject.clone(),
        message,
        details: object(details),
    }
}

/// Returns whole days, rounded down, never below zero.
fn whole_days(duration: Duration) -> i64 {
    duration.whole_days().max(0)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
