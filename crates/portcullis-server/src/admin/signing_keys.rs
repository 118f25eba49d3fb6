//! Token-signing keys in the admin API: list them, and rotate now.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::signing::SigningKeyRecord;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ADMIN_READ, ADMIN_WRITE, RequestBody, audit_context, authenticate_operator};
use crate::app::AppState;
use crate::oauth::keys::KeysError;
use crate::openapi::schemas;
use crate::problem::Problem;
use crate::telemetry::ErrorChain;

/// The signing-key routes, nested under `/admin/v1`.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signing_keys_list))
        .routes(routes!(signing_keys_rotate))
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
        "public_jwk": public_jwk,
    })
}

fn keys_problem(error: &KeysError) -> Problem {
    tracing::error!(error = %ErrorChain(error), "signing key operation failed");
    Problem::store_unavailable()
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
