//! The certificate pages' templates and the rows they show.

use std::collections::HashMap;

use askama::Template;
use portcullis_core::ids::ClientId;
use portcullis_core::oauth::ClientRecord;
use portcullis_core::pki::CertificateRecord;
use time::OffsetDateTime;

use super::client_pages::FieldErrors;
use super::key_pages::format_time;
use super::pages::Layout;

/// One certificate as the list and the detail page show it.
pub(super) struct CertificateRow {
    /// The serial number in hex.
    pub(super) serial: String,
    pub(super) client_id: String,
    /// The client's name, or its id when the client is not found.
    pub(super) client_name: String,
    pub(super) subject: String,
    /// The subject alternative names, one per entry, such as
    /// `URI:urn:portcullis:client:…`.
    pub(super) subject_alt_names: Vec<String>,
    pub(super) not_before: String,
    pub(super) not_after: String,
    /// Whole days until `not_after`, such as `89 days`, or `expired`.
    pub(super) days_left: String,
    /// `active`, `expired` or `revoked`.
    pub(super) status: &'static str,
    /// The RFC 5280 reason and time of a revocation.
    pub(super) revoked: Option<(String, String)>,
    /// The SHA-256 thumbprint of the DER certificate, lowercase hex.
    pub(super) sha256: String,
    /// Whether the signed-in user may revoke the certificate: it is still
    /// active and the user may change its client.
    pub(super) revocable: bool,
}

impl CertificateRow {
    /// Builds the row of `certificate` at `now`. `clients` names the
    /// tenant's clients by id, and `manageable` is whether the user may
    /// change the certificate's client.
    pub(super) fn new(
        certificate: &CertificateRecord,
        clients: &HashMap<ClientId, &ClientRecord>,
        manageable: bool,
        now: OffsetDateTime,
    ) -> Self {
        let status = if certificate.revoked_at.is_some() {
            "revoked"
        } else if now >= certificate.not_after {
            "expired"
        } else {
            "active"
        };
        Self {
            serial: certificate.serial.to_string(),
            client_id: certificate.client_id.to_string(),
            client_name: clients.get(&certificate.client_id).map_or_else(
                || certificate.client_id.to_string(),
                |client| client.name.clone(),
            ),
            subject: certificate.subject.clone(),
            subject_alt_names: certificate
                .subject_alt_names
                .lines()
                .map(ToOwned::to_owned)
                .collect(),
            not_before: format_time(certificate.not_before),
            not_after: format_time(certificate.not_after),
            days_left: days_left(certificate.not_after, now),
            status,
            revoked: certificate.revoked_at.map(|at| {
                let reason = certificate
                    .revoked_reason
                    .clone()
                    .unwrap_or_else(|| "unspecified".to_owned());
                (reason, format_time(at))
            }),
            sha256: certificate.sha256.clone(),
            revocable: manageable && status == "active",
        }
    }
}

/// Describes the time left until `not_after` in whole days.
fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> String {
    let left = not_after - now;
    match left.whole_days() {
        _ if !left.is_positive() => "expired".to_owned(),
        0 => "less than a day".to_owned(),
        1 => "1 day".to_owned(),
        days => format!("{days} days"),
    }
}

/// A client that the CSR form offers.
pub(super) struct ClientOption {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) selected: bool,
}

/// The values and errors of the CSR form.
pub(super) struct CsrForm {
    pub(super) clients: Vec<ClientOption>,
    /// The validity in days, as typed.
    pub(super) days: String,
    /// The pasted CSR, or the uploaded one as PEM after a rejection, so
    /// that the user need not choose the file again.
    pub(super) csr_text: String,
    pub(super) errors: FieldErrors,
}

/// The tenant's client certificates, or one client's.
#[derive(Template)]
#[template(path = "dashboard/certificates.html")]
pub(super) struct CertificatesPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    /// The client whose certificates are listed, as id and name, or
    /// `None` for every client of the tenant.
    pub(super) client: Option<(String, String)>,
    pub(super) certificates: Vec<CertificateRow>,
    /// Whether the user may request certificates, so the page links the
    /// form.
    pub(super) may_request: bool,
}

/// One certificate with its downloads and actions.
#[derive(Template)]
#[template(path = "dashboard/certificate.html")]
pub(super) struct CertificatePage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) certificate: CertificateRow,
}

/// The form that uploads or pastes a CSR for a client certificate.
#[derive(Template)]
#[template(path = "dashboard/certificate_new.html")]
pub(super) struct NewCertificatePage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) form: CsrForm,
    pub(super) default_days: u32,
    pub(super) max_days: u32,
    /// A message about the whole request, such as the CA's refusal.
    pub(super) error: Option<String>,
}

/// The confirmation page of a certificate revocation, naming the
/// certificate.
#[derive(Template)]
#[template(path = "dashboard/certificate_revoke.html")]
pub(super) struct CertificateRevokePage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) certificate: CertificateRow,
    /// The RFC 5280 §5.3.1 reasons, with the chosen one selected.
    pub(super) reasons: Vec<super::client_pages::Choice>,
    pub(super) error: Option<String>,
}
