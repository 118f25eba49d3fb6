//! Token-signing keys in the admin API: list them, rotate now, and revoke
//! a compromised key.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::signing::SigningKeyRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ADMIN_READ, ADMIN_WRITE, RequestBody, audit_context, authenticate_operator, respond};
use crate::app::AppState;
use crate::oauth::keys::{KeysError, Revocation, check_kid};
use crate::openapi::schemas;
use crate::problem::Problem;
use crate::telemetry::ErrorChain;

/// The signing-key routes, nested under `/admin/v1`.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signing_keys_list))
        .routes(routes!(signing_keys_rotate))
        .routes(routes!(signing_keys_revoke))
}

/// The public view of a signing key: dates, state and the public JWK. The
/// sealed private key never leaves the store.
pub fn signing_key_json(record: &SigningKeyRecord) -> Value {
    let time = |at: Option<OffsetDateTime>| at.and_then(|at| at.format(&Rfc3339).ok());
    let public_jwk: Value = serde_json::from_str(&record.public_jwk).unwrap_or(Value::Null);
    json!({
        "kid": record.kid,
        "algorithm": record.algorithm.as_str(),
        "state": record.state.as_str(),
        "created_at": time(Some(record.created_at)),
        "activates_at": time(Some(record.activates_at)),
        "retired_at": time(record.retired_at),
        "publish_until": time(record.publish_until),
        "revoked_at": time(record.revoked_at),
        "revoked_reason": record.revoked_reason,
        "public_jwk": public_jwk,
    })
}

/// Builds the JSON view of a revocation: the revoked key, the key that
/// took over, and the kid that signs now.
pub fn revocation_json(revocation: &Revocation) -> Value {
    json!({
        "revoked": signing_key_json(&revocation.revoked),
        "successor": revocation.successor.as_ref().map(signing_key_json),
        "signing_kid": revocation.signer,
    })
}

fn keys_problem(error: &KeysError) -> Problem {
    match error {
        KeysError::InvalidReason(_) => Problem::invalid_field("reason", error.to_string()),
        KeysError::InvalidKid(_) => Problem::invalid_field("kid", error.to_string()),
        KeysError::NotFound(_) => Problem::not_found(error.to_string()),
        KeysError::AlreadyRevoked(_) => Problem::conflict(error.code(), error.to_string()),
        KeysError::Store(_) | KeysError::Signing(_) => {
            tracing::error!(error = %ErrorChain(error), "signing key operation failed");
            Problem::store_failed()
        }
    }
}

/// List token-signing keys
#[utoipa::path(
    get,
    path = "/signing-keys",
    tag = "signing-keys",
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses((status = 200, description = "The signing keys", body = schemas::SigningKeyList)),
)]
async fn signing_keys_list(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let result = async {
        authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
        let records = state
            .oauth
            .keys
            .list()
            .await
            .map_err(|error| keys_problem(&error))?;
        let items: Vec<Value> = records.iter().map(signing_key_json).collect();
        Ok::<_, Problem>(axum::Json(json!({"signing_keys": items})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Rotate the token-signing key now
///
/// The new key signs from now on; the old one stays in the JWKS until the
/// tokens it signed have expired.
#[utoipa::path(
    post,
    path = "/signing-keys/rotate",
    tag = "signing-keys",
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new signing key", body = schemas::SigningKey),
        (status = 413, description = "The body is larger than 64 KiB"),
    ),
)]
async fn signing_keys_rotate(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        RequestBody::read(&parts, body).await?;
        let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
        let audit = audit_context(&parts, &state, &operator);
        let record = state
            .oauth
            .keys
            .rotate(&audit)
            .await
            .map_err(|error| keys_problem(&error))?;
        Ok::<_, Problem>(
            (StatusCode::CREATED, axum::Json(signing_key_json(&record))).into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Body of a signing key's revocation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SigningKeyRevokeInput)]
struct RevokeInput {
    /// The reason for the revocation, such as where the key leaked, at
    /// most 200 characters. The key record and the audit log keep it.
    reason: String,
}

/// Revoke a compromised token-signing key
///
/// The key leaves the JWKS at once, and every node rejects the tokens it
/// signed within about a second. When it was the key that signs, the
/// pending key created first takes over, or else a new key generated now.
#[utoipa::path(
    post,
    path = "/signing-keys/{kid}/revoke",
    tag = "signing-keys",
    params(("kid" = String, Path, description = "The key's kid, as `GET /signing-keys` lists it")),
    request_body = RevokeInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The revoked key and the key that signs now", body = schemas::SigningKeyRevocation),
        (status = 400, description = "`kid` is empty, too long or has a character outside base64url, or `reason` is missing, empty or too long"),
        (status = 404, description = "No signing key with this kid"),
        (status = 409, description = "The key is already revoked (`signing_key_revoked`)"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn signing_keys_revoke(
    State(state): State<AppState>,
    Path(kid): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            check_kid(&kid).map_err(|error| keys_problem(&error))?;
            let input: RevokeInput = body.json()?;
            let audit = audit_context(&parts, &state, &operator);
            let revocation = state
                .oauth
                .keys
                .revoke(&kid, &input.reason, &audit)
                .await
                .map_err(|error| keys_problem(&error))?;
            Ok(axum::Json(revocation_json(&revocation)).into_response())
        }
        .await,
    )
}
