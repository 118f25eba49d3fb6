//! The credential audit: a report of credential hygiene for `portcullis
//! audit` and `GET /admin/v1/audit/credentials`, with the same JSON in
//! both.
//!
//! [`gather`] reads an [`Inventory`] from the store and the configuration,
//! and [`findings::evaluate`] judges it against the `[audit_policy]`
//! thresholds without I/O, so every rule is testable on a built fixture.
//! Revoked and expired credentials are skipped: they can no longer be
//! used, so their hygiene no longer matters.

pub mod findings;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use portcullis_core::credential::ApiKeyRecord;
use portcullis_core::ids::ClientId;
use portcullis_core::oauth::{ClientRecord, ClientSecretRecord};
use portcullis_core::pki::{CertificateRecord, TrustedCaRecord};
use portcullis_core::signing::SigningKeyRecord;
use portcullis_store::{CertificateFilter, CredentialRef, KeyFilter, Store, StoreError, Tenant};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{AuditPolicy, Config, TlsMode};

/// The seriousness of a finding, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no action needed.
    Info,
    /// Hygiene to fix when convenient.
    Low,
    /// Raises the damage of a leak or the chance of an outage; fix soon.
    Medium,
    /// A credential or setting that an attacker would look for first.
    High,
    /// Exposed now; act at once.
    Critical,
}

impl Severity {
    /// Every severity, from least to most.
    pub const ALL: [Self; 5] = [
        Self::Info,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    /// Returns the name used in JSON and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|severity| severity.as_str() == text)
            .ok_or_else(|| {
                format!("unknown severity {text:?}; expected info, low, medium, high or critical")
            })
    }
}

/// The subject of a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// `key`, `client`, `certificate`, `ca`, `trusted_ca`, `signing_key` or
    /// `listener`.
    pub kind: &'static str,
    /// The id: a key or client UUID, a certificate serial, a `kid`, or the
    /// listen address.
    pub id: String,
    /// The owning tenant's name, for tenant credentials.
    pub tenant: Option<String>,
    /// A label for people: a key's or client's name, a key's visible
    /// prefix, a certificate's subject.
    pub label: Option<String>,
}

/// One finding of the audit.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// A stable snake_case code, such as `key_no_expiry`.
    pub code: &'static str,
    /// The seriousness.
    pub severity: Severity,
    /// The credential, certificate, key or listener concerned.
    pub subject: Subject,
    /// One sentence for people: what is wrong and what to do.
    pub message: String,
    /// Facts behind the finding, such as ages and scope sets.
    pub details: Map<String, Value>,
}

/// Everything the audit judges, read at one time.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// API keys, with every status; the rules skip unusable ones.
    pub keys: Vec<ApiKeyRecord>,
    /// OAuth clients, revoked ones included.
    pub clients: Vec<ClientRecord>,
    /// The live secrets of each client.
    pub client_secrets: HashMap<ClientId, Vec<ClientSecretRecord>>,
    /// The start of the last day with a recorded request, per client.
    pub client_last_use: HashMap<ClientId, OffsetDateTime>,
    /// The scopes each credential exercised within the scope look-back.
    pub scope_uses: HashMap<CredentialRef, BTreeSet<String>>,
    /// Client certificates issued by the internal CA.
    pub certificates: Vec<CertificateRecord>,
    /// The internal CA's id and the end of its certificate's validity.
    pub ca: Option<CaValidity>,
    /// Partner CAs trusted per tenant.
    pub trusted_cas: Vec<TrustedCaRecord>,
    /// Token-signing keys.
    pub signing_keys: Vec<SigningKeyRecord>,
    /// The listener, or `None` in a report scoped to one tenant.
    pub listener: Option<ListenerFacts>,
    /// The plain-HTTP metrics listener's address, when it runs and the
    /// report covers the whole server.
    pub metrics_listener: Option<SocketAddr>,
}

/// The validity of the internal CA's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaValidity {
    /// The CA's id.
    pub id: uuid::Uuid,
    /// When its certificate expires.
    pub not_after: OffsetDateTime,
}

/// The listener as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerFacts {
    /// The listen address.
    pub address: SocketAddr,
    /// Whether it serves plain HTTP instead of TLS.
    pub plain_http: bool,
}

/// The parts of the configuration that the audit uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// The thresholds.
    pub policy: AuditPolicy,
    /// The listener as configured.
    pub listener: ListenerFacts,
    /// The metrics listener's address, or `None` when it is off.
    pub metrics_listener: Option<SocketAddr>,
}

impl AuditSettings {
    /// Takes the policy and the listener from a checked configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            policy: config.audit_policy,
            listener: ListenerFacts {
                address: config.server.listen,
                plain_http: config.server.tls == TlsMode::PlainHttp,
            },
            metrics_listener: config.metrics.listen,
        }
    }
}

/// The audit's result.
#[derive(Clone, Debug)]
pub struct Report {
    /// When the inventory was read.
    pub generated_at: OffsetDateTime,
    /// The tenant the report is scoped to, or `None` for the whole server.
    pub tenant: Option<String>,
    /// The thresholds applied.
    pub policy: AuditPolicy,
    /// The findings, most severe first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Returns the most severe finding's severity, or `None` when the
    /// report is clean.
    pub fn highest_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|finding| finding.severity).max()
    }

    /// Returns whether any finding is at least as severe as `threshold`.
    pub fn reaches(&self, threshold: Severity) -> bool {
        self.highest_severity()
            .is_some_and(|highest| highest >= threshold)
    }

    /// Builds the JSON form that the CLI prints and the admin API returns.
    pub fn to_json(&self) -> Value {
        let mut counts = Map::new();
        for severity in Severity::ALL {
            let count = self
                .findings
                .iter()
                .filter(|finding| finding.severity == severity)
                .count();
            counts.insert(severity.as_str().to_owned(), Value::from(count));
        }
        let findings: Vec<Value> = self.findings.iter().map(finding_json).collect();
        json!({
            "generated_at": rfc3339(self.generated_at),
            "tenant": self.tenant,
            "policy": policy_json(&self.policy),
            "summary": {
                "total": self.findings.len(),
                "by_severity": counts,
                "highest_severity": self.highest_severity(),
            },
            "findings": findings,
        })
    }
}

fn finding_json(finding: &Finding) -> Value {
    json!({
        "code": finding.code,
        "severity": finding.severity,
        "subject": {
            "kind": finding.subject.kind,
            "id": finding.subject.id,
            "tenant": finding.subject.tenant,
            "label": finding.subject.label,
        },
        "message": finding.message,
        "details": finding.details,
    })
}

fn policy_json(policy: &AuditPolicy) -> Value {
    json!({
        "key_rotation_days": policy.key_rotation_days,
        "unused_days": policy.unused_days,
        "scope_unused_days": policy.scope_unused_days,
        "client_secret_rotation_days": policy.client_secret_rotation_days,
        "max_access_token_ttl_seconds": policy.max_access_token_ttl.as_secs(),
        "certificate_expiry_days": policy.certificate_expiry_days,
        "ca_expiry_days": policy.ca_expiry_days,
        "signing_key_rotation_days": policy.signing_key_rotation_days,
    })
}

/// Formats a time as RFC 3339, or `null` if it cannot be.
pub(crate) fn rfc3339(at: OffsetDateTime) -> Value {
    at.format(&Rfc3339).map_or(Value::Null, Value::from)
}

/// Reads the inventory and judges it: the whole server, or only the keys,
/// clients and certificates of `tenant`. Server-wide subjects (operator
/// keys, the CA, signing keys, the listener) appear only in the
/// server-wide report.
pub async fn run(
    store: &Store,
    settings: &AuditSettings,
    tenant: Option<&Tenant>,
    now: OffsetDateTime,
) -> Result<Report, StoreError> {
    let inventory = gather(store, settings, tenant, now).await?;
    let findings = findings::evaluate(&inventory, &settings.policy, now);
    Ok(Report {
        generated_at: now,
        tenant: tenant.map(|tenant| tenant.name.to_string()),
        policy: settings.policy,
        findings,
    })
}

/// Reads what the audit judges from the store and the settings.
pub async fn gather(
    store: &Store,
    settings: &AuditSettings,
    tenant: Option<&Tenant>,
    now: OffsetDateTime,
) -> Result<Inventory, StoreError> {
    let (key_filter, certificate_filter) = match tenant {
        Some(tenant) => (
            KeyFilter::Tenant(tenant.id),
            CertificateFilter::Tenant(tenant.id),
        ),
        None => (KeyFilter::All, CertificateFilter::All),
    };
    let keys = store.list_keys(key_filter).await?;
    let tenants = match tenant {
        Some(tenant) => vec![tenant.clone()],
        None => store.list_tenants().await?,
    };
    let mut clients = Vec::new();
    for tenant in &tenants {
        clients.extend(store.list_clients(tenant.id).await?);
    }
    let mut client_secrets = HashMap::new();
    for client in clients.iter().filter(|client| client.revoked_at.is_none()) {
        client_secrets.insert(client.id, store.client_secrets(client.id, now).await?);
    }
    let client_last_use = store.client_last_use_days().await?.into_iter().collect();

    let since = portcullis_store::usage::day_start(
        now - time::Duration::days(i64::from(settings.policy.scope_unused_days)),
    );
    let mut scope_uses: HashMap<CredentialRef, BTreeSet<String>> = HashMap::new();
    for (credential, scope) in store.scope_uses_since(since).await? {
        scope_uses.entry(credential).or_default().insert(scope);
    }

    let certificates = store.list_certificates(certificate_filter).await?;
    let trusted_cas = store
        .list_trusted_cas(tenant.map(|tenant| tenant.id))
        .await?;
    let server_wide = tenant.is_none();
    let (ca, signing_keys, listener, metrics_listener) = if server_wide {
        let ca = store.active_ca().await?.and_then(|ca| {
            let not_after = ca_not_after(&ca.certificate_pem);
            if not_after.is_none() {
                tracing::warn!(ca_id = %ca.id, "the internal CA certificate does not parse; its expiry is not audited");
            }
            not_after.map(|not_after| CaValidity { id: ca.id, not_after })
        });
        let signing_keys = store.list_signing_keys().await?;
        (
            ca,
            signing_keys,
            Some(settings.listener),
            settings.metrics_listener,
        )
    } else {
        (None, Vec::new(), None, None)
    };

    Ok(Inventory {
        keys,
        clients,
        client_secrets,
        client_last_use,
        scope_uses,
        certificates,
        ca,
        trusted_cas,
        signing_keys,
        listener,
        metrics_listener,
    })
}

/// Reads the end of validity of a PEM certificate.
fn ca_not_after(pem: &str) -> Option<OffsetDateTime> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let certificate = pem.parse_x509().ok()?;
    OffsetDateTime::from_unix_timestamp(certificate.validity().not_after.timestamp()).ok()
}

#[cfg(test)]
mod tests;
