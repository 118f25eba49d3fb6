//! The internal CA in the admin API: create it, sign a client's CSR, list
//! and revoke client certificates, and trust partner CAs per tenant.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use portcullis_core::pki::{CertificateRecord, CertificateSerial, TrustedCaRecord};
use portcullis_store::CertificateFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use super::clients::parse_client_id;
use super::{
    ADMIN_READ, ADMIN_WRITE, RequestBody, audit_context, authenticate_operator, respond, timestamp,
};
use crate::app::AppState;
use crate::pki::ca::CaError;
use crate::problem::Problem;
use crate::telemetry::ErrorChain;

/// Builds the CA routes, to be merged into the admin router.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ca/init", post(ca_init))
        .route(
            "/clients/{id}/certificates",
            get(certificates_list).post(certificates_sign),
        )
        .route("/certificates/{serial}/revoke", post(certificates_revoke))
        .route(
            "/tenants/{tenant}/trusted-cas",
            get(trusted_cas_list).post(trusted_cas_add),
        )
}

/// Builds the public view of an issued certificate. `sha256` is the hex
/// thumbprint and `x5t#S256` the same digest in the base64url form of
/// RFC 8705 §3.1.
pub fn certificate_json(cert: &CertificateRecord) -> Value {
    json!({
        "serial": cert.serial.as_str(),
        "client_id": cert.client_id.to_string(),
        "tenant_id": cert.tenant_id.to_string(),
        "subject": cert.subject,
        "subject_alt_names": cert.subject_alt_names.lines().collect::<Vec<_>>(),
        "not_before": timestamp(Some(cert.not_before)),
        "not_after": timestamp(Some(cert.not_after)),
        "sha256": cert.sha256,
        "status": if cert.revoked_at.is_some() { "revoked" } else { "active" },
        "revoked_at": timestamp(cert.revoked_at),
        "revoked_reason": cert.revoked_reason,
        "certificate_pem": cert.certificate_pem,
        "created_at": timestamp(Some(cert.created_at)),
    })
}

/// Builds the public view of a trusted partner CA.
pub fn trusted_ca_json(ca: &TrustedCaRecord) -> Value {
    json!({
        "id": ca.id.to_string(),
        "tenant_id": ca.tenant_id.to_string(),
        "subject": ca.subject,
        "sha256": ca.sha256,
        "certificate_pem": ca.certificate_pem,
        "added_at": timestamp(Some(ca.added_at)),
    })
}

/// Maps a CA error to a problem response.
pub fn ca_problem(error: &CaError) -> Problem {
    match error {
        CaError::InvalidCsr(_) => Problem::invalid_field("csr", error.to_string()),
        CaError::InvalidDays(_) => Problem::invalid_field("days", error.to_string()),
        CaError::InvalidReason => Problem::invalid_field("reason", error.to_string()),
        CaError::InvalidCertificate(_) => {
            Problem::invalid_field("certificate_pem", error.to_string())
        }
        CaError::ClientNotFound(_)
        | CaError::TenantNotFound(_)
        | CaError::CertificateNotFound(_) => Problem::not_found(error.to_string()),
        CaError::NotInitialized
        | CaError::AlreadyInitialized
        | CaError::ClientRevoked(_)
        | CaError::AlreadyRevoked(_)
        | CaError::Conflict(_) => Problem::conflict(error.code(), error.to_string()),
        CaError::Store(_) => {
            tracing::error!(error = %ErrorChain(error), "CA operation failed in the store");
            Problem::store_unavailable()
        }
        CaError::Crypto(_) => {
            tracing::error!(error = %ErrorChain(error), "CA key operation failed");
            Problem::internal()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInput {
    /// The PKCS#10 request, PEM.
    csr: String,
    /// The validity in days.
    days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeInput {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustInput {
    certificate_pem: String,
}

async fn ca_init(State(state): State<AppState>, request: Request) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let audit = audit_context(&parts, &state, &operator);
            let ca = state
                .ca
                .init_ca(&audit)
                .await
                .map_err(|error| ca_problem(&error))?;
            let body = json!({
                "id": ca.id.to_string(),
                "certificate_pem": ca.certificate_pem,
                "created_at": timestamp(Some(ca.created_at)),
            });
            Ok((StatusCode::CREATED, axum::Json(body)).into_response())
        }
        .await,
    )
}

async fn certificates_sign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let id = parse_client_id(&id)?;
            let input: SignInput = body.json()?;
            let audit = audit_context(&parts, &state, &operator);
            let cert = state
                .ca
                .sign_csr(id, &input.csr, input.days, &audit)
                .await
                .map_err(|error| ca_problem(&error))?;
            Ok((StatusCode::CREATED, axum::Json(certificate_json(&cert))).into_response())
        }
        .await,
    )
}

async fn certificates_list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let id = parse_client_id(&id)?;
            let certs = state
                .ca
                .list(CertificateFilter::Client(id))
                .await
                .map_err(|error| ca_problem(&error))?;
            let items: Vec<Value> = certs.iter().map(certificate_json).collect();
            Ok(axum::Json(json!({ "certificates": items })).into_response())
        }
        .await,
    )
}

async fn certificates_revoke(
    State(state): State<AppState>,
    Path(serial): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let serial: CertificateSerial =
                serial
                    .parse()
                    .map_err(|error: portcullis_core::pki::InvalidSerial| {
                        Problem::invalid_field("serial", error.to_string())
                    })?;
            let input: RevokeInput = body.json()?;
            let audit = audit_context(&parts, &state, &operator);
            let cert = state
                .ca
                .revoke(&serial, &input.reason, &audit)
                .await
                .map_err(|error| ca_problem(&error))?;
            Ok(axum::Json(certificate_json(&cert)).into_response())
        }
        .await,
    )
}

async fn trusted_cas_add(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let input: TrustInput = body.json()?;
            let audit = audit_context(&parts, &state, &operator);
            let ca = state
                .ca
                .trust_add(&tenant, &input.certificate_pem, &audit)
                .await
                .map_err(|error| ca_problem(&error))?;
            Ok((StatusCode::CREATED, axum::Json(trusted_ca_json(&ca))).into_response())
        }
        .await,
    )
}

async fn trusted_cas_list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let cas = state
                .ca
                .trusted(&tenant)
                .await
                .map_err(|error| ca_problem(&error))?;
            let items: Vec<Value> = cas.iter().map(trusted_ca_json).collect();
            Ok(axum::Json(json!({ "trusted_cas": items })).into_response())
        }
        .await,
    )
}
