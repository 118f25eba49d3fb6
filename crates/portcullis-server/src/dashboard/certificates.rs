//! The tenant's client certificates from the internal CA: list them, get
//! one for a client by uploading or pasting a CSR, download it and the CA
//! certificate, and revoke it.
//!
//! Signing and revoking go through [`crate::pki::ca::CertificateAuthority`],
//! the operations of the CLI's `certs sign` and `certs revoke` and of the
//! admin API, so they check the same things and write the same audit
//! records. A client or certificate of another tenant gets 404, exactly as
//! one that does not exist.

use std::collections::HashMap;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use portcullis_core::ids::ClientId;
use portcullis_core::oauth::ClientRecord;
use portcullis_core::pki::{CertificateRecord, CertificateSerial, RevocationReason};
use portcullis_store::CertificateFilter;
use time::OffsetDateTime;

use super::account::{checked_form, page_session, store_failure};
use super::certificate_pages::{
    CertificatePage, CertificateRevokePage, CertificateRow, CertificatesPage, ClientOption,
    CsrForm, NewCertificatePage,
};
use super::client_pages::{FieldErrors, choices, takes_internal_certificates};
use super::clients::{managed_client, tenant_client};
use super::keys::{audit_context, role_forbidden};
use super::pages::{
    error_page, html, internal_error_page, not_found_page, see_other_to, signed_in_layout,
    unavailable_page,
};
use super::policy::{may_create, may_manage_client};
use super::upload::{MAX_CSR_LEN, UploadForm, checked_upload, upload_too_large};
use crate::app::AppState;
use crate::oauth::csrf::session_token;
use crate::oauth::session::ActiveSession;
use crate::pki::ca::{CaError, DEFAULT_CERTIFICATE_DAYS, MAX_CERTIFICATE_DAYS, csr_pem_from_der};
use crate::telemetry::ErrorChain;

const CERTIFICATES: &str = "/dashboard/certificates";

/// The media type of a single PEM certificate download.
const PEM_FILE: &str = "application/x-pem-file";

/// Handles `GET /dashboard/certificates`: the tenant's certificates, or
/// with `?client=ID` those of one client, newest first.
pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let user = &session.user;
    let client = match query_client(&uri) {
        Some(id) => match tenant_client(&state, &session, &id).await {
            Ok(client) => Some(client),
            Err(response) => return response,
        },
        None => None,
    };
    let filter = match &client {
        Some(client) => CertificateFilter::Client(client.id),
        None => CertificateFilter::Tenant(user.tenant_id),
    };
    let certificates = match state.ca.list(filter).await {
        Ok(certificates) => certificates,
        Err(error) => return ca_failure(&error),
    };
    let clients = match state.store.list_clients(user.tenant_id).await {
        Ok(clients) => clients,
        Err(error) => return store_failure(&error),
    };
    let by_id: HashMap<ClientId, &ClientRecord> =
        clients.iter().map(|client| (client.id, client)).collect();
    let now = OffsetDateTime::now_utc();
    let rows = certificates
        .iter()
        // The store filters by tenant or by a client of the tenant already,
        // so this only guards against a change to that filter.
        .filter(|certificate| certificate.tenant_id == user.tenant_id)
        .map(|certificate| {
            let manageable = by_id
                .get(&certificate.client_id)
                .is_some_and(|client| may_manage_client(user, client));
            CertificateRow::new(certificate, &by_id, manageable, now)
        })
        .collect();
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &CertificatesPage {
            layout: signed_in_layout(&session.user),
            email: user.email.as_str(),
            tenant: user.tenant.as_str(),
            csrf_token: &csrf_token,
            client: client.map(|client| (client.id.to_string(), client.name)),
            certificates: rows,
            may_request: may_create(user),
        },
    )
}

/// Handles `GET /dashboard/certificates/new`: the CSR form, with the
/// client of `?client=ID` chosen.
pub(super) async fn new_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if !may_create(&session.user) {
        return role_forbidden();
    }
    let chosen = match query_client(&uri) {
        Some(id) => match managed_client(&state, &session, &id).await {
            Ok(client) => Some(client),
            Err(response) => return response,
        },
        None => None,
    };
    let clients = match client_options(&state, &session, chosen.as_ref()).await {
        Ok(clients) => clients,
        Err(response) => return response,
    };
    let form = CsrForm {
        clients,
        days: DEFAULT_CERTIFICATE_DAYS.to_string(),
        csr_text: String::new(),
        errors: FieldErrors::default(),
    };
    new_certificate_page(&state, &session, StatusCode::OK, form, None)
}

/// Handles `POST /dashboard/certificates`, a `multipart/form-data` form:
/// checks the CSRF token, the client and the CSR, and has the internal CA
/// sign the CSR. On success the browser goes to the new certificate's
/// page. Otherwise the form comes back and keeps the client, the validity
/// and the CSR as PEM.
pub(super) async fn create(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form) = match checked_upload(&state, parts.clone(), body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let client_field = form.text("client").unwrap_or("");
    let client = match managed_client(&state, &session, client_field).await {
        Ok(client) => client,
        Err(response) => return response,
    };
    let csr = match read_csr(&form) {
        Ok(pem) => Ok(pem),
        Err(CsrInputError::TooLarge) => return upload_too_large(),
        Err(CsrInputError::Invalid(message)) => Err(message),
    };

    let days_typed = form.text("days").unwrap_or("").trim().to_owned();
    let mut errors = FieldErrors::default();
    let days = match days_typed.parse::<u32>() {
        Ok(days) => Some(days),
        Err(_) => {
            errors.add(
                "days",
                format!("Validity: enter a whole number of days from 1 to {MAX_CERTIFICATE_DAYS}."),
            );
            None
        }
    };
    let csr_pem = match &csr {
        Ok(pem) => pem.clone(),
        Err(message) => {
            errors.add("csr", message.clone());
            String::new()
        }
    };

    let mut error = None;
    if let (Some(days), true) = (days, errors.is_empty()) {
        let audit = audit_context(&state, &parts, &session);
        match state
            .ca
            .sign_csr(client.id, &csr_pem, Some(days), &audit)
            .await
        {
            Ok(certificate) => {
                tracing::info!(
                    serial = %certificate.serial,
                    client_id = %client.id,
                    user_id = %session.user.id,
                    "client certificate issued in the dashboard"
                );
                return see_other_to(&format!("{CERTIFICATES}/{}", certificate.serial));
            }
            Err(CaError::InvalidCsr(message)) => {
                tracing::info!(client_id = %client.id, error = %message, "dashboard CSR rejected");
                errors.add(
                    "csr",
                    format!("CSR: {message}. Choose or paste another CSR."),
                );
            }
            Err(rejected @ CaError::InvalidDays(_)) => {
                errors.add("days", format!("Validity: {rejected}."));
            }
            Err(CaError::ClientNotFound(_)) => return not_found_page(),
            Err(failed @ (CaError::Store(_) | CaError::Crypto(_))) => return ca_failure(&failed),
            // Every other refusal, such as a revoked client, a client that
            // certificates of the CA do not authenticate, or a CA not yet
            // created, is about the request as a whole.
            Err(rejected) => {
                tracing::info!(
                    client_id = %client.id,
                    code = rejected.code(),
                    error = %rejected,
                    "dashboard certificate request rejected by the CA"
                );
                error = Some(format!(
                    "The CA rejected the request: {rejected}. No certificate was issued."
                ));
            }
        }
    }

    let clients = match client_options(&state, &session, Some(&client)).await {
        Ok(clients) => clients,
        Err(response) => return response,
    };
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let shown = CsrForm {
        clients,
        days: days_typed,
        csr_text: csr_pem_or_typed(&form, csr),
        errors,
    };
    new_certificate_page(&state, &session, status, shown, error)
}

/// Handles `GET /dashboard/certificates/{serial}`.
pub(super) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let (certificate, client) = match tenant_certificate(&state, &session, &serial).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let row = certificate_row(&session, &certificate, &client);
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        StatusCode::OK,
        &CertificatePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            certificate: row,
        },
    )
}

/// Handles `GET /dashboard/certificates/{serial}/certificate.pem`: the
/// issued certificate as a PEM file download.
pub(super) async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    match tenant_certificate(&state, &session, &serial).await {
        Ok((certificate, _)) => pem_download(
            certificate.certificate_pem,
            &format!("client-certificate-{}.pem", certificate.serial),
        ),
        Err(response) => response,
    }
}

/// Handles `GET /dashboard/certificates/ca.pem`: the internal CA's
/// certificate, which servers that check the client certificates trust.
pub(super) async fn ca_download(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(response) = page_session(&state, &headers).await {
        return response;
    }
    match state.ca.ca_pem().await {
        Ok(pem) => pem_download(pem, "portcullis-client-ca.pem"),
        Err(CaError::NotInitialized) => ca_missing(),
        Err(error) => ca_failure(&error),
    }
}

/// Handles `GET /dashboard/certificates/{serial}/revoke`: the confirmation
/// page, naming the certificate, with the reason to choose.
pub(super) async fn revoke_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(serial): Path<String>,
) -> Response {
    let session = match page_session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let (certificate, client) = match managed_certificate(&state, &session, &serial).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let row = certificate_row(&session, &certificate, &client);
    revoke_page(&state, &session, row, StatusCode::OK, "", None)
}

/// Handles `POST /dashboard/certificates/{serial}/revoke`: revokes the
/// certificate for the chosen RFC 5280 §5.3.1 reason. The gateway rejects
/// it within a second, as after `certs revoke`.
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let (session, form) = match checked_form(&state, &parts, body).await {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let (certificate, client) = match managed_certificate(&state, &session, &serial).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let reason = form.field("reason");
    let audit = audit_context(&state, &parts, &session);
    match state
        .revoke_certificate(&certificate.serial, reason, &audit)
        .await
    {
        Ok(revoked) => {
            tracing::info!(
                serial = %revoked.serial,
                client_id = %revoked.client_id,
                user_id = %session.user.id,
                reason,
                "client certificate revoked in the dashboard"
            );
            see_other_to(&format!("{CERTIFICATES}/{}", revoked.serial))
        }
        Err(CaError::InvalidReason(_)) => {
            let row = certificate_row(&session, &certificate, &client);
            let message = format!(
                "Reason: choose one of the RFC 5280 reasons in the list ({}).",
                RevocationReason::names().join(", ")
            );
            revoke_page(
                &state,
                &session,
                row,
                StatusCode::UNPROCESSABLE_ENTITY,
                reason,
                Some(message),
            )
        }
        Err(CaError::CertificateNotFound(_)) => not_found_page(),
        Err(rejected @ CaError::AlreadyRevoked(_)) => {
            tracing::info!(serial = %certificate.serial, "dashboard revocation rejected: already revoked");
            error_page(
                StatusCode::CONFLICT,
                "Revocation rejected",
                &format!("The {rejected}. Nothing was changed. Open the certificate again."),
            )
        }
        Err(error) => ca_failure(&error),
    }
}

/// Returns the `client` parameter of the query string, if given and not
/// empty.
fn query_client(uri: &Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(name, _)| name == "client")
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Lists the clients that the CSR form offers: the live clients of the
/// tenant that the user may change and that the CA's certificates
/// authenticate. `chosen` is added and selected even when it is not one of
/// them, so that the CA's own refusal explains why.
async fn client_options(
    state: &AppState,
    session: &ActiveSession,
    chosen: Option<&ClientRecord>,
) -> Result<Vec<ClientOption>, Response> {
    let clients = match state.store.list_clients(session.user.tenant_id).await {
        Ok(clients) => clients,
        Err(error) => return Err(store_failure(&error)),
    };
    let chosen_id = chosen.map(|client| client.id);
    let mut options: Vec<ClientOption> = clients
        .iter()
        .filter(|client| {
            Some(client.id) == chosen_id
                || (client.revoked_at.is_none()
                    && may_manage_client(&session.user, client)
                    && takes_internal_certificates(client))
        })
        .map(|client| ClientOption {
            id: client.id.to_string(),
            name: client.name.clone(),
            selected: Some(client.id) == chosen_id,
        })
        .collect();
    if let Some(client) = chosen
        && !options.iter().any(|option| option.selected)
    {
        options.push(ClientOption {
            id: client.id.to_string(),
            name: client.name.clone(),
            selected: true,
        });
    }
    Ok(options)
}

/// A reason that the CSR fields cannot be used.
enum CsrInputError {
    /// The file or the pasted text is larger than [`MAX_CSR_LEN`].
    TooLarge,
    /// The fields are empty, both filled, or not text where text is
    /// expected. The message is for the form.
    Invalid(String),
}

/// Reads the CSR from the uploaded file `csr_file` or, when no file was
/// chosen, the pasted `csr_text`, and returns it as PEM. A file that does
/// not start with a PEM header is taken as DER. The CA checks the rest.
fn read_csr(form: &UploadForm) -> Result<String, CsrInputError> {
    let file = form.bytes("csr_file");
    let pasted = form.text("csr_text").unwrap_or("").trim();
    if file.len() > MAX_CSR_LEN || pasted.len() > MAX_CSR_LEN {
        return Err(CsrInputError::TooLarge);
    }
    match (file.is_empty(), pasted.is_empty()) {
        (true, true) => Err(CsrInputError::Invalid(
            "CSR: choose a CSR file or paste a CSR that starts with -----BEGIN CERTIFICATE \
             REQUEST-----."
                .to_owned(),
        )),
        (true, false) => Ok(format!("{pasted}\n")),
        (false, false) => Err(CsrInputError::Invalid(
            "CSR: choose a file or paste a CSR, not both. Clear the text box or the file and \
             resend."
                .to_owned(),
        )),
        (false, true) if file.trim_ascii_start().starts_with(b"-----BEGIN") => {
            std::str::from_utf8(file)
                .map(ToOwned::to_owned)
                .map_err(|_| {
                    CsrInputError::Invalid(
                        "CSR: the PEM file is not text. Choose the CSR file, PEM or DER."
                            .to_owned(),
                    )
                })
        }
        (false, true) => Ok(csr_pem_from_der(file)),
    }
}

/// Returns what the CSR text box shows again: the CSR as PEM when the
/// fields gave one, otherwise the pasted text.
fn csr_pem_or_typed(form: &UploadForm, csr: Result<String, String>) -> String {
    match csr {
        Ok(pem) => pem,
        Err(_) => form.text("csr_text").unwrap_or("").to_owned(),
    }
}

/// Finds certificate `serial` of the session's tenant and its client. A
/// malformed serial, an unknown certificate and another tenant's all get
/// the same 404 page.
async fn tenant_certificate(
    state: &AppState,
    session: &ActiveSession,
    serial: &str,
) -> Result<(CertificateRecord, ClientRecord), Response> {
    let Ok(serial) = serial.parse::<CertificateSerial>() else {
        return Err(not_found_page());
    };
    let certificate = match state.store.find_certificate(&serial).await {
        Ok(Some(certificate)) if certificate.tenant_id == session.user.tenant_id => certificate,
        Ok(_) => return Err(not_found_page()),
        Err(error) => return Err(store_failure(&error)),
    };
    let client = tenant_client(state, session, &certificate.client_id.to_string()).await?;
    Ok((certificate, client))
}

/// Finds certificate `serial` of the session's tenant and checks that the
/// user may change its client (403 otherwise).
async fn managed_certificate(
    state: &AppState,
    session: &ActiveSession,
    serial: &str,
) -> Result<(CertificateRecord, ClientRecord), Response> {
    let (certificate, client) = tenant_certificate(state, session, serial).await?;
    if !may_manage_client(&session.user, &client) {
        tracing::info!(
            serial = %certificate.serial,
            user_id = %session.user.id,
            role = %session.user.role,
            "dashboard certificate change rejected: role does not allow it"
        );
        return Err(role_forbidden());
    }
    Ok((certificate, client))
}

fn certificate_row(
    session: &ActiveSession,
    certificate: &CertificateRecord,
    client: &ClientRecord,
) -> CertificateRow {
    let clients = HashMap::from([(client.id, client)]);
    let manageable = may_manage_client(&session.user, client);
    CertificateRow::new(certificate, &clients, manageable, OffsetDateTime::now_utc())
}

/// Builds a download of the PEM text `pem` named `filename`.
fn pem_download(pem: String, filename: &str) -> Response {
    let mut response = (StatusCode::OK, pem).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PEM_FILE));
    // The file name contains only hex digits, letters and dashes.
    match HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        Ok(value) => {
            headers.insert(CONTENT_DISPOSITION, value);
            response
        }
        Err(_) => internal_error_page(),
    }
}

fn new_certificate_page(
    state: &AppState,
    session: &ActiveSession,
    status: StatusCode,
    form: CsrForm,
    error: Option<String>,
) -> Response {
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &NewCertificatePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            form,
            default_days: DEFAULT_CERTIFICATE_DAYS,
            max_days: MAX_CERTIFICATE_DAYS,
            error,
        },
    )
}

fn revoke_page(
    state: &AppState,
    session: &ActiveSession,
    certificate: CertificateRow,
    status: StatusCode,
    reason: &str,
    error: Option<String>,
) -> Response {
    let csrf_token = session_token(state.manager.pepper(), &session.id);
    html(
        status,
        &CertificateRevokePage {
            layout: signed_in_layout(&session.user),
            email: session.user.email.as_str(),
            tenant: session.user.tenant.as_str(),
            csrf_token: &csrf_token,
            certificate,
            reasons: choices(&RevocationReason::names(), &[reason]),
            error,
        },
    )
}

/// Renders the page shown when the operator has not created the CA yet.
fn ca_missing() -> Response {
    error_page(
        StatusCode::CONFLICT,
        "No certificate authority",
        "The internal certificate authority is not set up yet, so there is no CA certificate \
         to download. Ask your provider to create it.",
    )
}

/// Renders the page of a CA operation that failed on the server's side.
fn ca_failure(error: &CaError) -> Response {
    match error {
        CaError::Store(_) => {
            tracing::error!(error = %ErrorChain(error), "CA operation failed in the dashboard");
            unavailable_page()
        }
        _ => {
            tracing::error!(error = %ErrorChain(error), "CA operation failed in the dashboard");
            internal_error_page()
        }
    }
}
