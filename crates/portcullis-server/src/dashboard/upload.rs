//! The dashboard's `multipart/form-data` forms (RFC 7578), such as the CSR
//! upload: the body is read whole under a size limit, then split into its
//! fields, and the CSRF token is one of those fields.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;

use super::account::token_session;
use super::pages::error_page;
use crate::app::AppState;
use crate::body::{BodyReadError, read_limited};
use crate::oauth::session::ActiveSession;

/// Maximum size of one CSR, uploaded or pasted, in bytes. A PKCS#10
/// request for a 4096-bit RSA key is under 2 KiB as PEM, so this leaves
/// room for requests with many attributes and rejects key stores and
/// certificate bundles chosen by mistake.
pub(super) const MAX_CSR_LEN: usize = 64 * 1024;

/// Maximum size of a multipart form body, in bytes: one CSR of
/// [`MAX_CSR_LEN`] plus the other fields and the part headers.
pub(super) const MAX_UPLOAD_LEN: usize = MAX_CSR_LEN + 16 * 1024;

/// The fields of a submitted multipart form, each at most once.
pub(super) struct UploadForm(Vec<(String, Bytes)>);

impl UploadForm {
    /// Returns the content of the field `name`, empty when it is missing.
    pub(super) fn bytes(&self, name: &str) -> &[u8] {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or(&[], |(_, value)| value.as_ref())
    }

    /// Returns the field `name` as text, `""` when it is missing, or
    /// `None` when it is not UTF-8.
    pub(super) fn text(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.bytes(name)).ok()
    }
}

/// Reads a multipart dashboard form and checks its `csrf_token` field
/// against the browser's session. Returns the error page when the media
/// type is not `multipart/form-data`, the body is larger than
/// [`MAX_UPLOAD_LEN`], a field is named twice or the token is missing or
/// wrong.
pub(super) async fn checked_upload(
    state: &AppState,
    parts: Parts,
    body: Body,
) -> Result<(ActiveSession, UploadForm), Response> {
    let form = read_upload(state, parts.clone(), body).await?;
    let token = form.text("csrf_token").unwrap_or("");
    let session = token_session(state, &parts.headers, token).await?;
    Ok((session, form))
}

async fn read_upload(state: &AppState, parts: Parts, body: Body) -> Result<UploadForm, Response> {
    let bytes = read_limited(body, MAX_UPLOAD_LEN)
        .await
        .map_err(|error| match error {
            BodyReadError::TooLarge { .. } => upload_too_large(),
            BodyReadError::TimedOut => error_page(
                StatusCode::REQUEST_TIMEOUT,
                "Form rejected",
                "The form stopped arriving. Resend it.",
            ),
            BodyReadError::Failed(_) => unreadable(),
        })?;
    let request = Request::from_parts(parts, Body::from(bytes));
    // The extractor rejects a media type other than multipart/form-data and
    // a missing boundary.
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| {
            tracing::info!(error = %rejection, "dashboard upload rejected: not multipart");
            error_page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Form rejected",
                "The form was not sent as multipart/form-data. Open the page again and resend \
                 the form.",
            )
        })?;
    let mut fields: Vec<(String, Bytes)> = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => {
                tracing::info!(error = %error, "dashboard upload rejected: malformed body");
                return Err(unreadable());
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        let content = field.bytes().await.map_err(|error| {
            tracing::info!(error = %error, "dashboard upload rejected: malformed field");
            unreadable()
        })?;
        if fields.iter().any(|(known, _)| *known == name) {
            tracing::info!(field = %name, "dashboard upload rejected: repeated field");
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "Form rejected",
                "The form names a field more than once. Open the page again and resend the form.",
            ));
        }
        fields.push((name, content));
    }
    Ok(UploadForm(fields))
}

/// Renders the 413 page of an upload larger than [`MAX_UPLOAD_LEN`].
pub(super) fn upload_too_large() -> Response {
    error_page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Upload rejected",
        "The upload is larger than 80 KiB, and a CSR is at most 64 KiB. Nothing was issued. \
         Choose the CSR file itself (a file such as client.csr, not a key store or a \
         certificate bundle), or paste the CSR, and resend the form.",
    )
}

fn unreadable() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Form rejected",
        "The form could not be read. Resend it.",
    )
}
