//! The internal CA in the admin API: create it, sign a client's CSR, list
//! and revoke client certificates, and trust, change and remove partner CAs
//! per tenant.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::pki::{CertificateRecord, CertificateSerial, TrustedCaRecord};
use portcullis_store::CertificateFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::clients::parse_client_id;
use super::{
    ADMIN_READ, ADMIN_WRITE, RequestBody, audit_context, authenticate_operator, respond, timestamp,
};
use crate::app::AppState;
use crate::openapi::schemas;
use crate::pki::ca::CaError;
use crate::pki::partner_ca::RevocationSource;
use crate::problem::Problem;
use crate::telemetry::ErrorChain;

/// Builds the CA routes, to be merged into the admin router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ca_init))
        .routes(routes!(certificates_list, certificates_sign))
        .routes(routes!(certificates_revoke))
        .routes(routes!(trusted_cas_list, trusted_cas_add))
        .routes(routes!(trusted_cas_remove))
        .routes(routes!(trusted_cas_set_revocation))
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

/// Builds the public view of a trusted partner CA. `revocation_check` is
/// `crl_files` when the CA names its CRL files, `unchecked` when the
/// operator acknowledged that it has none, and `partner_crls` when it relies
/// on the server's `partner_crls` setting.
pub fn trusted_ca_json(ca: &TrustedCaRecord) -> Value {
    json!({
        "id": ca.id.to_string(),
        "tenant_id": ca.tenant_id.to_string(),
        "subject": ca.subject,
        "sha256": ca.sha256,
        "certificate_pem": ca.certificate_pem,
        "added_at": timestamp(Some(ca.added_at)),
        "crl_files": ca.crl_files,
        "revocation_check": revocation_check(ca),
    })
}

/// Names how a trusted CA's certificates are checked for revocation, as
/// [`trusted_ca_json`] describes.
pub fn revocation_check(ca: &TrustedCaRecord) -> &'static str {
    if ca.revocation_unchecked {
        "unchecked"
    } else if ca.crl_files.is_empty() {
        "partner_crls"
    } else {
        "crl_files"
    }
}

/// Maps a CA error to a problem response.
pub fn ca_problem(error: &CaError) -> Problem {
    match error {
        CaError::InvalidCsr(_) => Problem::invalid_field("csr", error.to_string()),
        CaError::InvalidDays(_) => Problem::invalid_field("days", error.to_string()),
        CaError::InvalidReason(_) => Problem::invalid_field("reason", error.to_string()),
        CaError::InvalidCertificate(_) => {
            Problem::invalid_field("certificate_pem", error.to_string())
        }
        CaError::UnsupportedNameConstraint(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            error.code(),
            "Unsupported name constraint",
            error.to_string(),
        )
        .with_extension("field", json!("certificate_pem")),
        CaError::InvalidCrlFile(_) => Problem::invalid_field("crl_files", error.to_string()),
        CaError::ConflictingRevocation => Problem::invalid_field("no_crl", error.to_string()),
        CaError::ClientNotFound(_)
        | CaError::TenantNotFound(_)
        | CaError::CertificateNotFound(_)
        | CaError::TrustedCaNotFound(_) => Problem::not_found(error.to_string()),
        CaError::NotInitialized
        | CaError::AlreadyInitialized
        | CaError::ClientRevoked(_)
        | CaError::NotTlsClientAuth { .. }
        | CaError::MappingNotIssuable { .. }
        | CaError::AlreadyRevoked(_)
        | CaError::Conflict(_) => Problem::conflict(error.code(), error.to_string()),
        CaError::Store(_) => {
            tracing::error!(error = %ErrorChain(error), "CA operation failed in the store");
            Problem::store_failed()
        }
        CaError::Crypto(_) => {
            tracing::error!(error = %ErrorChain(error), "CA key operation failed");
            Problem::internal()
        }
    }
}

/// Body of a certificate signing request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignInput {
    /// The PKCS#10 request, PEM.
    csr: String,
    /// The validity in days.
    days: Option<u32>,
}

/// Body of a certificate revocation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CertificateRevokeInput)]
struct RevokeInput {
    /// An RFC 5280 §5.3.1 reason, such as `keyCompromise`. The CRL entry
    /// carries it, except `unspecified`, whose entry has no reason code.
    #[schema(value_type = schemas::RevocationReason)]
    reason: String,
}

/// Body of a request to trust a partner CA.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TrustInput {
    /// The CA certificate, PEM.
    certificate_pem: String,
    /// Absolute paths of the CA's CRL files on the servers.
    #[serde(default)]
    crl_files: Vec<String>,
    /// The acknowledgement that the CA publishes no CRL, so its
    /// certificates are accepted without a revocation check.
    #[serde(default)]
    no_crl: bool,
}

/// Body of a change to a trusted CA's revocation check: CRL files, or the
/// acknowledgement that it has none. Neither falls back to the server's
/// `partner_crls`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevocationInput {
    /// Absolute paths of the CA's CRL files on the servers.
    #[serde(default)]
    crl_files: Vec<String>,
    /// The acknowledgement that the CA publishes no CRL.
    #[serde(default)]
    no_crl: bool,
}

/// Create the internal CA
///
/// The CA signs client certificates for mutual TLS. It can be created once.
#[utoipa::path(
    post,
    path = "/ca/init",
    tag = "certificates",
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new CA certificate", body = schemas::CertificateAuthority),
        (status = 409, description = "The CA exists"),
        (status = 413, description = "The body is larger than 64 KiB"),
    ),
)]
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

/// Sign a client's CSR with the internal CA
#[utoipa::path(
    post,
    path = "/clients/{id}/certificates",
    tag = "certificates",
    params(("id" = String, Path, format = Uuid, description = "The client id")),
    request_body = SignInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new certificate", body = schemas::Certificate),
        (status = 400, description = "`id` is not a UUID, or the CSR or `days` is invalid"),
        (status = 404, description = "No client with this id"),
        (status = 409, description = "The CA does not exist yet, the client is revoked \
            (`client_revoked`), its token endpoint auth method is not `tls_client_auth` \
            (`client_not_tls_client_auth`), or its registered certificate subject is not the SAN \
            URI `urn:portcullis:client:<id>` that the CA writes (`client_mapping_not_issuable`)"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
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

/// List a client's certificates
#[utoipa::path(
    get,
    path = "/clients/{id}/certificates",
    tag = "certificates",
    params(("id" = String, Path, format = Uuid, description = "The client id")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The client's certificates", body = schemas::CertificateList),
        (status = 400, description = "`id` is not a UUID"),
        (status = 404, description = "No client with this id"),
    ),
)]
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

/// Revoke a client certificate
///
/// The certificate is refused from now on and listed in the CRL.
#[utoipa::path(
    post,
    path = "/certificates/{serial}/revoke",
    tag = "certificates",
    params(("serial" = String, Path, description = "The certificate's serial number in hex")),
    request_body = RevokeInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The revoked certificate", body = schemas::Certificate),
        (status = 400, description = "`serial` or `reason` is invalid"),
        (status = 404, description = "No certificate with this serial number"),
        (status = 409, description = "The certificate is already revoked"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
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
                .revoke_certificate(&serial, &input.reason, &audit)
                .await
                .map_err(|error| ca_problem(&error))?;
            Ok(axum::Json(certificate_json(&cert)).into_response())
        }
        .await,
    )
}

/// Trust a partner CA for a tenant's client certificates
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/trusted-cas",
    tag = "certificates",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = TrustInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The trusted CA", body = schemas::TrustedCa),
        (status = 400, description = "The certificate is not a valid CA certificate, or a CRL file is invalid"),
        (status = 404, description = "No tenant of this name"),
        (status = 409, description = "The tenant trusts this CA already"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
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
                .trust_add(
                    &tenant,
                    &input.certificate_pem,
                    &RevocationSource {
                        crl_files: input.crl_files,
                        no_crl: input.no_crl,
                    },
                    &audit,
                )
                .await
                .map_err(|error| ca_problem(&error))?;
            Ok((StatusCode::CREATED, axum::Json(trusted_ca_json(&ca))).into_response())
        }
        .await,
    )
}

/// List a tenant's trusted partner CAs
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/trusted-cas",
    tag = "certificates",
    params(("tenant" = String, Path, description = "The tenant's name")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The tenant's trusted CAs", body = schemas::TrustedCaList),
        (status = 404, description = "No tenant of this name"),
    ),
)]
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

/// Change how a trusted partner CA is checked for revocation
///
/// Replaces the CA's CRL files, or records that it publishes none. Running
/// servers use the change within about two seconds.
#[utoipa::path(
    put,
    path = "/tenants/{tenant}/trusted-cas/{id}/revocation",
    tag = "certificates",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("id" = String, Path, description = "The trusted CA's id, or the SHA-256 fingerprint of its certificate"),
    ),
    request_body = RevocationInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The changed trusted CA", body = schemas::TrustedCa),
        (status = 400, description = "A CRL file is invalid, or both CRL files and no_crl are given"),
        (status = 404, description = "No tenant of this name, or the tenant trusts no such CA"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn trusted_cas_set_revocation(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let input: RevocationInput = body.json()?;
            let audit = audit_context(&parts, &state, &operator);
            let revocation = RevocationSource {
                crl_files: input.crl_files,
                no_crl: input.no_crl,
            };
            let ca = state
                .ca
                .trust_set_revocation(&tenant, &id, &revocation, &audit)
                .await
                .map_err(|error| ca_problem(&error))?;
            Ok(axum::Json(trusted_ca_json(&ca)).into_response())
        }
        .await,
    )
}

/// Stop trusting a partner CA
///
/// Within about two seconds, running servers reject new handshakes and the
/// next request of open connections whose certificate chain ends at the CA.
#[utoipa::path(
    delete,
    path = "/tenants/{tenant}/trusted-cas/{id}",
    tag = "certificates",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("id" = String, Path, description = "The trusted CA's id, or the SHA-256 fingerprint of its certificate"),
    ),
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The removed trusted CA", body = schemas::TrustedCa),
        (status = 404, description = "No tenant of this name, or the tenant trusts no such CA"),
    ),
)]
async fn trusted_cas_remove(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let audit = audit_context(&parts, &state, &operator);
            let ca = state
                .ca
                .trust_remove(&tenant, &id, &audit)
                .await
                .map_err(|error| ca_problem(&error))?;
            Ok(axum::Json(trusted_ca_json(&ca)).into_response())
        }
        .await,
    )
}
