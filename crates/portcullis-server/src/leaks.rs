//! `POST /v1/leaks`: leak reports in the batch format of GitHub's secret
//! scanning partner program.
//!
//! The body is a JSON array of `{"token", "type", "url", "source"}`. The
//! sender signs the raw body with ECDSA P-256 and SHA-256, sends the
//! base64 DER signature in `Github-Public-Key-Signature` and names its key
//! in `Github-Public-Key-Identifier`. Only keys from the `[leaks]` table
//! are trusted, and nothing is fetched from the network. A report that is
//! unsigned, signed with an unknown key or wrongly signed gets 401 and
//! changes nothing.
//!
//! Each token that is one of our keys is labelled `true_positive`, gets a
//! `key.leak_reported` audit record naming the URL, and when still usable
//! is revoked or flagged, as the `[leaks] action` setting selects, and
//! raises a `leak_reported` alert for the key's tenant. Every other token
//! is a `false_positive`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::credential::{ApiKeyRecord, shorten_label};
use portcullis_core::crypto::EcdsaP256PublicKey;
use portcullis_core::ids::AuditId;
use portcullis_core::key::KeySecret;
use portcullis_store::{AlertRule, AlertSeverity, AuditAction, AuditContext, AuditEvent};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::alerts::NewAlert;
use crate::app::AppState;
use crate::config::{LeakAction, LeaksConfig, PemSource};
use crate::listener::ConnectionInfo;
use crate::manage::ManageError;
use crate::problem::{Challenge, Problem};

/// Header naming the public key that signed a report.
pub const KEY_ID_HEADER: &str = "github-public-key-identifier";

/// Header carrying the base64 DER signature of the raw body.
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// Largest accepted body, in bytes. An estimate: one report item is about
/// 300 bytes, so this fits [`MAX_REPORT_ITEMS`] with room to spare.
pub const MAX_REPORT_BODY: usize = 512 * 1024;

/// Largest number of tokens in one report.
pub const MAX_REPORT_ITEMS: usize = 1000;

/// Longest accepted `url`, `type` or `source` value, in bytes.
const MAX_FIELD_LEN: usize = 2048;

/// Audit actor of changes made because of a leak report.
const AUDIT_ACTOR: &str = "leak-report";

/// The public keys that sign leak reports, and the action on a match.
#[derive(Debug, Clone, Default)]
pub struct LeakReceiver {
    keys: Vec<(String, EcdsaP256PublicKey)>,
    action: LeakAction,
}

/// An error loading the `[leaks]` public keys.
#[derive(Debug, thiserror::Error)]
pub enum LeakConfigError {
    /// A `pem_file` could not be read.
    #[error("leaks.public_keys: failed to read {path}: {source}")]
    Read {
        /// The file as configured.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM is not one ECDSA P-256 `PUBLIC KEY`.
    #[error("leaks.public_keys: key {id:?} is not a PEM ECDSA P-256 PUBLIC KEY")]
    InvalidKey {
        /// The key's configured id.
        id: String,
    },
}

impl LeakReceiver {
    /// Reads and parses the configured public keys.
    pub fn load(config: &LeaksConfig) -> Result<Self, LeakConfigError> {
        let mut keys = Vec::with_capacity(config.public_keys.len());
        for configured in &config.public_keys {
            let pem = match &configured.pem {
                PemSource::Inline(text) => text.clone(),
                PemSource::File(path) => {
                    std::fs::read_to_string(path).map_err(|source| LeakConfigError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
                }
            };
            let invalid = || LeakConfigError::InvalidKey {
                id: configured.id.clone(),
            };
            let der =
                SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|_| invalid())?;
            let key = EcdsaP256PublicKey::from_spki_der(der.as_ref()).map_err(|_| invalid())?;
            keys.push((configured.id.clone(), key));
        }
        Ok(Self {
            keys,
            action: config.action,
        })
    }

    /// Checks the signature headers against the raw `body`.
    fn check_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Problem> {
        let Some(id) = header_text(headers, KEY_ID_HEADER) else {
            return Err(unauthorized(
                "send the signing key's id in Github-Public-Key-Identifier",
            ));
        };
        let Some(signature) = header_text(headers, SIGNATURE_HEADER) else {
            return Err(unauthorized(
                "send the body's signature in Github-Public-Key-Signature",
            ));
        };
        let Some((_, key)) = self.keys.iter().find(|(known, _)| known == id) else {
            tracing::warn!(
                key_id = %id.chars().take(128).collect::<String>(),
                "leak report signed with an unknown key id"
            );
            return Err(unauthorized(
                "the signing key id is not configured in [leaks] public_keys",
            ));
        };
        let Ok(signature) = STANDARD.decode(signature) else {
            return Err(unauthorized("the signature is not valid base64"));
        };
        if !key.verify(body, &signature) {
            tracing::warn!(key_id = %id, "leak report with an invalid signature");
            return Err(unauthorized("the signature does not match the body"));
        }
        Ok(())
    }
}

/// One item of a report.
#[derive(Deserialize, ToSchema)]
pub struct ReportItem {
    /// The leaked string, which may or may not be an API key.
    token: String,
    /// The sender's name for the kind of secret.
    #[serde(rename = "type")]
    token_type: String,
    /// The URL at which the token was found.
    url: String,
    /// The kind of location, such as `content` or `commit`.
    source: Option<String>,
}

/// The verdict on one reported token, in the partner program's format.
#[derive(Serialize, ToSchema)]
pub struct LeakVerdict<'a> {
    /// The reported token, returned only to the signed sender.
    pub token_raw: &'a str,
    pub token_type: &'a str,
    /// `true_positive` for one of this server's keys, else
    /// `false_positive`.
    #[schema(value_type = String)]
    pub label: &'static str,
}

/// Handles `POST /v1/leaks`.
#[utoipa::path(
    post,
    path = "/v1/leaks",
    tag = "leaks",
    summary = "Report leaked tokens",
    description = "Takes a batch in the format of GitHub's secret scanning partner program, \
                   signed with ECDSA P-256 over the raw body by a key from the `[leaks]` \
                   settings. Revokes or flags each reported key of this server.",
    request_body(content = Vec<ReportItem>, description = "At most 1000 items"),
    security(("leak_key_id" = [], "leak_signature" = [])),
    responses(
        (status = 200, description = "One verdict per reported token, in order", body = Vec<LeakVerdict<'static>>),
        (status = 400, description = "The body is not a JSON array of report items, or a value is longer than 2048 bytes"),
        (status = 401, description = "The report is unsigned, signed with an unknown key, or the signature does not match"),
        (status = 404, description = "No `[leaks]` public key is configured, so reports are not accepted"),
        (status = 413, description = "The body is larger than 512 KiB"),
        (status = 503, description = "The store cannot be reached; retry later"),
    ),
)]
pub async fn report(State(state): State<AppState>, request: Request) -> Response {
    match handle(&state, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn handle(state: &AppState, request: Request) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    if state.leaks.keys.is_empty() {
        return Err(Problem::not_found(
            "leak reports are not accepted: configure [leaks] public_keys",
        ));
    }
    let body = read_body(body).await?;
    state.leaks.check_signature(&parts.headers, &body)?;

    let items: Vec<ReportItem> = serde_json::from_slice(&body).map_err(|_| {
        Problem::invalid_field(
            "body",
            "expected a JSON array of objects with token, type, url and source",
        )
    })?;
    if items.len() > MAX_REPORT_ITEMS {
        return Err(Problem::invalid_field(
            "body",
            format!("a report may contain at most {MAX_REPORT_ITEMS} tokens"),
        ));
    }
    if let Some(field) = items.iter().find_map(oversize_field) {
        return Err(Problem::invalid_field(
            field,
            format!("longer than {MAX_FIELD_LEN} bytes"),
        ));
    }

    let remote_addr = parts.extensions.get::<ConnectionInfo>().map(|info| {
        state
            .proxies
            .client_ip(info.peer.ip(), &parts.headers)
            .to_string()
    });
    let mut verdicts = Vec::with_capacity(items.len());
    for item in &items {
        let audit = AuditContext {
            actor: AUDIT_ACTOR.to_owned(),
            remote_addr: remote_addr.clone(),
            at: OffsetDateTime::now_utc(),
        };
        let matched = handle_item(state, item, &audit).await?;
        let label = if matched {
            "true_positive"
        } else {
            "false_positive"
        };
        // The token goes back only to the sender, whose signature was just
        // checked, because the verdict format names tokens by value.
        verdicts.push(LeakVerdict {
            token_raw: &item.token,
            token_type: &item.token_type,
            label,
        });
    }
    Ok((StatusCode::OK, axum::Json(verdicts)).into_response())
}

/// Acts on one reported token and returns whether it is one of our keys.
async fn handle_item(
    state: &AppState,
    item: &ReportItem,
    audit: &AuditContext,
) -> Result<bool, Problem> {
    let Ok(secret) = KeySecret::parse(&item.token) else {
        return Ok(false);
    };
    let record = match state.manager.key_by_secret(&secret).await {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(false),
        Err(error) => return Err(store_problem(&error)),
    };

    let usable = record.status(audit.at).is_usable();
    let action = if usable {
        state.leaks.action
    } else {
        // A revoked or expired key needs no action, only the record.
        LeakAction::Flag
    };
    let event = leak_event(audit, &record, item, action, usable);
    if let Err(error) = state.store.append_audit(&[event]).await {
        tracing::error!(error = %crate::telemetry::ErrorChain(&error), key_id = %record.id, "writing a leak report audit record failed");
        return Err(Problem::store_unavailable());
    }

    raise_leak_alert(state, &record, item, action, usable, audit.at).await;
    if !usable {
        tracing::info!(key_id = %record.id, status = %record.status(audit.at), "leak report names a key that no longer works");
        return Ok(true);
    }
    match action {
        LeakAction::Revoke => {
            let reason = shorten_label(&format!("reported leaked at {}", item.url));
            match state
                .manager
                .revoke_key(record.id, Some(&reason), audit)
                .await
            {
                // A key named twice in one report is revoked by the first.
                Ok(_) | Err(ManageError::Conflict { .. }) => {}
                Err(error) => return Err(store_problem(&error)),
            }
            tracing::warn!(key_id = %record.id, tenant = record.tenant.as_ref().map_or("-", |name| name.as_str()), "revoked a key reported as leaked");
        }
        LeakAction::Flag => {
            tracing::warn!(key_id = %record.id, tenant = record.tenant.as_ref().map_or("-", |name| name.as_str()), "a usable key was reported as leaked and is flagged, not revoked");
        }
    }
    Ok(true)
}

/// Raises the `leak_reported` alert for the key's tenant: critical while
/// the key still works (flagged, not revoked), a warning otherwise. A
/// failure to store it is logged and does not fail the report, whose
/// revocation matters more.
async fn raise_leak_alert(
    state: &AppState,
    record: &ApiKeyRecord,
    item: &ReportItem,
    action: LeakAction,
    usable: bool,
    at: OffsetDateTime,
) {
    let still_usable = usable && action == LeakAction::Flag;
    let mut details = leak_details(record, item, action, usable);
    if let Value::Object(map) = &mut details {
        map.insert("status".to_owned(), Value::from(record.status(at).as_str()));
    }
    let alert = NewAlert {
        tenant_id: record.tenant_id,
        credential: Some(record.id.to_string()),
        key_id: Some(record.id),
        rule: AlertRule::LeakReported,
        severity: if still_usable {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        },
        details,
    };
    if let Err(error) = state.alerts.raise(alert).await {
        tracing::error!(error = %crate::telemetry::ErrorChain(&error), key_id = %record.id, "storing the alert of a leak report failed");
    }
}

/// Builds the `key.leak_reported` record: the key, where it was found and
/// what was done. It contains the URL, never the token.
fn leak_event(
    audit: &AuditContext,
    record: &ApiKeyRecord,
    item: &ReportItem,
    action: LeakAction,
    usable: bool,
) -> AuditEvent {
    AuditEvent {
        id: AuditId::generate(),
        at: audit.at,
        actor: audit.actor.clone(),
        action: AuditAction::KeyLeakReported,
        tenant_id: record.tenant_id,
        target: Some(record.id.to_string()),
        remote_addr: audit.remote_addr.clone(),
        details: leak_details(record, item, action, usable),
    }
}

/// Describes a reported key: its visible prefix, where it was found and
/// what was done. It contains the URL, never the token.
fn leak_details(
    record: &ApiKeyRecord,
    item: &ReportItem,
    action: LeakAction,
    usable: bool,
) -> Value {
    json!({
        "visible_prefix": record.visible_prefix,
        "url": item.url,
        "type": item.token_type,
        "source": item.source,
        "action": if usable { action.as_str() } else { "none" },
    })
}

/// Reads the body up to [`MAX_REPORT_BODY`] bytes.
async fn read_body(body: Body) -> Result<Vec<u8>, Problem> {
    crate::body::read_limited(body, MAX_REPORT_BODY)
        .await
        .map(|bytes| bytes.to_vec())
        .map_err(crate::body::BodyReadError::into_problem)
}

/// Returns the name of the first field of `item` over [`MAX_FIELD_LEN`].
fn oversize_field(item: &ReportItem) -> Option<&'static str> {
    if item.url.len() > MAX_FIELD_LEN {
        Some("url")
    } else if item.token_type.len() > MAX_FIELD_LEN {
        Some("type")
    } else if item
        .source
        .as_ref()
        .is_some_and(|source| source.len() > MAX_FIELD_LEN)
    {
        Some("source")
    } else {
        None
    }
}

/// Returns a header's value when it is present once and printable ASCII.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok().map(str::trim)
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        "Invalid leak report signature",
        detail,
    )
    .with_challenge(Challenge::RequestSignature)
}

fn store_problem(error: &ManageError) -> Problem {
    tracing::error!(error = %crate::telemetry::ErrorChain(error), "leak report handling failed in the store");
    Problem::store_unavailable()
}
