//! The admin API under `/admin/v1/`: tenants and keys, for the SaaS
//! company's backend and operators.
//!
//! Callers authenticate with operator keys. Reading needs `admin:read`,
//! changing needs `admin:write`. Every change goes through [`Manager`], the
//! same code the CLI runs, so both check the same rules and write the same
//! audit records.
//!
//! [`Manager`]: crate::manage::Manager

pub mod alerts;
pub mod audit;
pub mod certificates;
pub mod clients;
pub mod credential_audit;
mod request_body;
pub mod signing_keys;
pub mod usage;
pub mod users;

pub use request_body::RequestBody;

use std::sync::LazyLock;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use portcullis_core::credential::{ApiKeyRecord, KeyKind, KeyLimits};
use portcullis_core::duration::parse_duration;
use portcullis_core::ids::KeyId;
use portcullis_core::key::Environment;
use portcullis_core::scope::{Scope, ScopeSet};
use portcullis_store::{AuditContext, CredentialRef, Tenant};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Authenticated, CheckContext, authenticate_key};
use crate::listener::ConnectionInfo;
use crate::manage::{IssuedKey, KeyRequest, ManageError};
use crate::openapi::schemas;
use crate::problem::Problem;
use crate::telemetry::FactsHandle;
use crate::verify::scope_constant;

/// Scope to read tenants and keys.
pub static ADMIN_READ: LazyLock<Scope> = LazyLock::new(|| scope_constant("admin:read"));

/// Scope to create, rotate and revoke.
pub static ADMIN_WRITE: LazyLock<Scope> = LazyLock::new(|| scope_constant("admin:write"));

/// Largest JSON body the admin and verify APIs read. Their requests are a
/// few hundred bytes; 64 KiB leaves room without inviting large uploads.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// The admin API's routes with their OpenAPI descriptions, to be nested
/// under `/admin/v1`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(crate::openapi::openapi_json))
        .routes(routes!(tenants_list, tenants_create))
        .routes(routes!(keys_list, keys_create))
        .routes(routes!(operator_keys_list, operator_keys_create))
        .routes(routes!(keys_show))
        .routes(routes!(keys_revoke))
        .routes(routes!(keys_rotate))
        .routes(routes!(keys_limits))
        .routes(routes!(keys_narrow))
        .merge(clients::routes())
        .merge(users::routes())
        .merge(signing_keys::routes())
        .merge(certificates::routes())
        .merge(usage::routes())
        .merge(audit::routes())
        .merge(alerts::routes())
        .merge(credential_audit::routes())
}

/// Authenticates an operator key holding `scope`.
pub async fn authenticate_operator(
    state: &AppState,
    parts: &Parts,
    scope: &Scope,
    surface: &'static str,
) -> Result<Authenticated, Problem> {
    let peer = parts
        .extensions
        .get::<ConnectionInfo>()
        .map(|info| info.peer.ip())
        .ok_or_else(|| {
            tracing::error!("request reached the admin API without connection info");
            Problem::internal()
        })?;
    let client_ip = state.proxies.client_ip(peer, &parts.headers);
    let facts = parts
        .extensions
        .get::<FactsHandle>()
        .cloned()
        .unwrap_or_default();
    let context = CheckContext {
        usage: &state.usage,
        client_ip,
        surface,
        facts: &facts,
        now: OffsetDateTime::now_utc(),
        brute_force: &state.brute_force,
    };
    let authenticated =
        authenticate_key(&state.verifier, &parts.headers, parts.uri.query(), &context).await?;
    if authenticated.key.kind != KeyKind::Operator {
        return Err(Problem::forbidden(
            "operator_key_required",
            "this endpoint needs an operator key; create one with `portcullis keys create --operator`",
        ));
    }
    if !authenticated.key.scopes.grants(scope) {
        return Err(Problem::insufficient_scope(scope));
    }
    state.usage.record_scope_use(
        CredentialRef::Key(authenticated.key.id),
        [scope],
        context.now,
    );
    Ok(authenticated)
}

/// The audit context of a request made with an operator key.
pub(crate) fn audit_context(
    parts: &Parts,
    state: &AppState,
    operator: &Authenticated,
) -> AuditContext {
    let remote = parts.extensions.get::<ConnectionInfo>().map(|info| {
        state
            .proxies
            .client_ip(info.peer.ip(), &parts.headers)
            .to_string()
    });
    AuditContext {
        actor: format!("operator-key:{}", operator.key.id),
        remote_addr: remote,
        at: OffsetDateTime::now_utc(),
    }
}

fn problem_of(error: ManageError) -> Problem {
    match error {
        ManageError::Invalid { field, message } => Problem::invalid_field(field, message),
        ManageError::NotFound(message) => Problem::not_found(message),
        ManageError::Conflict { code, message } => Problem::conflict(code, message),
        ManageError::Store(error) => {
            tracing::error!(error = %crate::telemetry::ErrorChain(&error), "admin operation failed in the store");
            Problem::store_failed()
        }
        ManageError::Random => {
            tracing::error!("the system random number generator failed");
            Problem::internal()
        }
    }
}

/// Parses the `scopes` member of a request body.
fn parse_scope_list(scopes: &[String]) -> Result<ScopeSet, Problem> {
    scopes
        .iter()
        .map(|scope| Scope::parse(scope))
        .collect::<Result<Vec<_>, _>>()
        .and_then(ScopeSet::try_from)
        .map_err(|error| Problem::invalid_field("scopes", error.to_string()))
}

fn respond(result: Result<Response, Problem>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn timestamp(at: Option<OffsetDateTime>) -> Value {
    at.and_then(|at| at.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::from)
}

/// The public view of a key: everything but the secret, which is not stored.
pub fn key_json(key: &ApiKeyRecord, now: OffsetDateTime) -> Value {
    json!({
        "id": key.id,
        "kind": key.kind,
        "tenant": key.tenant,
        "name": key.name,
        "environment": key.environment,
        "prefix": key.visible_prefix,
        "scopes": key.scopes,
        "status": key.status(now),
        "created_at": timestamp(Some(key.created_at)),
        "expires_at": timestamp(key.expires_at),
        "revoked_at": timestamp(key.revoked_at),
        "revoked_reason": key.revoked_reason,
        "rotated_to": key.rotated_to,
        "last_used_at": timestamp(key.last_used_at),
        "last_used_from": key.last_used_from,
        "use_count": key.use_count,
        "rate_limits": key.limits.rate_limits,
        "plan": key.limits.plan,
        "max_uses": key.limits.max_uses,
        "uses_spent": key.limits.uses_spent,
        "created_by": key.created_by,
    })
}

/// The view of a new key, with its secret under `key`: shown this once.
pub fn issued_json(issued: &IssuedKey, now: OffsetDateTime) -> Value {
    let mut value = key_json(&issued.record, now);
    if let Value::Object(map) = &mut value {
        map.insert("key".to_owned(), Value::from(issued.secret.expose()));
    }
    value
}

/// The public view of a tenant.
pub fn tenant_json(tenant: &Tenant) -> Value {
    json!({"id": tenant.id, "name": tenant.name, "created_at": timestamp(Some(tenant.created_at))})
}

fn parse_key_id(text: &str) -> Result<KeyId, Problem> {
    text.parse()
        .map_err(|_| Problem::invalid_field("id", "key ids are UUIDs, as `keys list` prints them"))
}

/// Body of `POST /admin/v1/tenants`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TenantInput {
    /// Lower-case letters, digits, `.`, `_` and `-`, starting with a letter
    /// or digit, at most 63 characters.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    name: String,
}

/// Create a tenant
#[utoipa::path(
    post,
    path = "/tenants",
    tag = "tenants",
    request_body = TenantInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new tenant", body = schemas::Tenant),
        (status = 400, description = "The body is not valid JSON, or `name` is invalid"),
        (status = 409, description = "A tenant of this name exists"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn tenants_create(State(state): State<AppState>, request: Request) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let input: TenantInput = body.json()?;
            let audit = audit_context(&parts, &state, &operator);
            let tenant = state
                .manager
                .create_tenant(&input.name, &audit)
                .await
                .map_err(problem_of)?;
            Ok((StatusCode::CREATED, axum::Json(tenant_json(&tenant))).into_response())
        }
        .await,
    )
}

/// List tenants
#[utoipa::path(
    get,
    path = "/tenants",
    tag = "tenants",
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses((status = 200, description = "Every tenant", body = schemas::TenantList)),
)]
async fn tenants_list(State(state): State<AppState>, request: Request) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let tenants = state.manager.list_tenants().await.map_err(problem_of)?;
            let items: Vec<Value> = tenants.iter().map(tenant_json).collect();
            Ok(axum::Json(json!({"tenants": items})).into_response())
        }
        .await,
    )
}

/// Body of a request for a new API key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    /// Scopes such as `invoices:read`; the key may do only what these allow.
    scopes: Vec<String>,
    name: Option<String>,
    /// A lifetime such as `90d`; without it the key does not expire.
    expires_in: Option<String>,
    /// `live` (the default) or `test`.
    #[schema(value_type = Option<schemas::Environment>)]
    environment: Option<Environment>,
    /// Rates such as `"100/s burst 200"`, all of which apply.
    rate_limits: Option<Vec<String>>,
    /// A plan of the server's `[limits.plans]`.
    plan: Option<String>,
    /// The number of requests the key may make in all, at least 1.
    #[schema(minimum = 1)]
    max_uses: Option<u32>,
}

impl KeyInput {
    fn into_request(self, tenant: Option<String>) -> Result<KeyRequest, Problem> {
        let scopes = parse_scope_list(&self.scopes)?;
        let expires_in = self
            .expires_in
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|error| Problem::invalid_field("expires_in", error.to_string()))?;
        Ok(KeyRequest {
            tenant,
            scopes,
            name: self.name,
            expires_in,
            environment: self.environment.unwrap_or(Environment::Live),
            limits: KeyLimits {
                rate_limits: self.rate_limits.unwrap_or_default(),
                plan: self.plan,
                max_uses: self.max_uses.map(i64::from),
                uses_spent: 0,
            },
        })
    }
}

async fn create_key(
    state: &AppState,
    request: Request,
    tenant: Option<String>,
) -> Result<Response, Problem> {
    let (parts, body) = request.into_parts();
    let body = RequestBody::read(&parts, body).await?;
    let operator = authenticate_operator(state, &parts, &ADMIN_WRITE, "admin").await?;
    let input: KeyInput = body.json()?;
    let key_request = input.into_request(tenant)?;
    let audit = audit_context(&parts, state, &operator);
    let issued = state
        .manager
        .create_key(key_request, &audit)
        .await
        .map_err(problem_of)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(issued_json(&issued, audit.at)),
    )
        .into_response())
}

/// Create an API key for a tenant
///
/// The response contains the secret key, which is shown only here.
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/keys",
    tag = "keys",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = KeyInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new key and its secret", body = schemas::IssuedApiKey),
        (status = 400, description = "The body is not valid JSON, or a member is invalid"),
        (status = 404, description = "No tenant of this name"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn keys_create(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(create_key(&state, request, Some(tenant)).await)
}

/// Create an operator key
///
/// Operator keys call the admin and verify APIs. The response contains the
/// secret key, which is shown only here.
#[utoipa::path(
    post,
    path = "/operator-keys",
    tag = "keys",
    request_body = KeyInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new key and its secret", body = schemas::IssuedApiKey),
        (status = 400, description = "The body is not valid JSON, or a member is invalid"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn operator_keys_create(State(state): State<AppState>, request: Request) -> Response {
    respond(create_key(&state, request, None).await)
}

async fn list_keys(
    state: &AppState,
    request: Request,
    tenant: Option<String>,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    authenticate_operator(state, &parts, &ADMIN_READ, "admin").await?;
    let keys = state
        .manager
        .list_keys(tenant.as_deref())
        .await
        .map_err(problem_of)?;
    let now = OffsetDateTime::now_utc();
    let items: Vec<Value> = keys.iter().map(|key| key_json(key, now)).collect();
    Ok(axum::Json(json!({"keys": items})).into_response())
}

/// List a tenant's API keys
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/keys",
    tag = "keys",
    params(("tenant" = String, Path, description = "The tenant's name")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The tenant's keys", body = schemas::ApiKeyList),
        (status = 404, description = "No tenant of this name"),
    ),
)]
async fn keys_list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(list_keys(&state, request, Some(tenant)).await)
}

/// List operator keys
#[utoipa::path(
    get,
    path = "/operator-keys",
    tag = "keys",
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses((status = 200, description = "The operator keys", body = schemas::ApiKeyList)),
)]
async fn operator_keys_list(State(state): State<AppState>, request: Request) -> Response {
    respond(list_keys(&state, request, None).await)
}

/// Show an API key
#[utoipa::path(
    get,
    path = "/keys/{id}",
    tag = "keys",
    params(("id" = String, Path, format = Uuid, description = "The key id")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The key, without its secret", body = schemas::ApiKey),
        (status = 400, description = "`id` is not a UUID"),
        (status = 404, description = "No key with this id"),
    ),
)]
async fn keys_show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let key = state
                .manager
                .key(parse_key_id(&id)?)
                .await
                .map_err(problem_of)?;
            Ok(axum::Json(key_json(&key, OffsetDateTime::now_utc())).into_response())
        }
        .await,
    )
}

/// Body of a key revocation; it may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyRevokeInput)]
struct RevokeInput {
    /// Reason for the revocation, stored in the audit log.
    reason: Option<String>,
}

/// Revoke an API key
///
/// The key stops working on every node within about a second.
#[utoipa::path(
    post,
    path = "/keys/{id}/revoke",
    tag = "keys",
    params(("id" = String, Path, format = Uuid, description = "The key id")),
    request_body(content = Option<RevokeInput>, description = "Optional; an empty body revokes without a reason"),
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The revoked key", body = schemas::ApiKey),
        (status = 400, description = "`id` is not a UUID, or the body is invalid"),
        (status = 404, description = "No key with this id"),
        (status = 409, description = "The key is already revoked"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn keys_revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let id = parse_key_id(&id)?;
            let input: RevokeInput = body.json_or_default()?;
            let audit = audit_context(&parts, &state, &operator);
            let key = state
                .manager
                .revoke_key(id, input.reason.as_deref(), &audit)
                .await
                .map_err(problem_of)?;
            // This node's cache changes now; other nodes follow the change feed.
            state.verifier.cache().invalidate(id);
            Ok(axum::Json(key_json(&key, audit.at)).into_response())
        }
        .await,
    )
}

/// Body of `PUT /admin/v1/keys/{id}/limits`: the key's whole set of limits.
/// A member left out means none of that kind.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyLimitsInput)]
struct LimitsInput {
    /// Rates such as `100/s burst 200`, all of which apply.
    rate_limits: Option<Vec<String>>,
    /// A plan of the server's `[limits.plans]`.
    plan: Option<String>,
    /// The number of requests the key may make in all, at least 1.
    #[schema(minimum = 1)]
    max_uses: Option<u32>,
}

/// Replace an API key's limits
#[utoipa::path(
    put,
    path = "/keys/{id}/limits",
    tag = "keys",
    params(("id" = String, Path, format = Uuid, description = "The key id")),
    request_body = LimitsInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The key with its new limits", body = schemas::ApiKey),
        (status = 400, description = "`id` is not a UUID, or the body is invalid"),
        (status = 404, description = "No key with this id"),
        (status = 409, description = "The key is revoked"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn keys_limits(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let id = parse_key_id(&id)?;
            let input: LimitsInput = body.json()?;
            let current = state.manager.key(id).await.map_err(problem_of)?;
            let limits = KeyLimits {
                rate_limits: input.rate_limits.unwrap_or_default(),
                plan: input.plan,
                max_uses: input.max_uses.map(i64::from),
                uses_spent: current.limits.uses_spent,
            };
            let audit = audit_context(&parts, &state, &operator);
            let key = state
                .manager
                .update_key_limits(id, limits, &audit)
                .await
                .map_err(problem_of)?;
            // This node's cache changes now; other nodes follow the change feed.
            state.verifier.cache().invalidate(id);
            Ok(axum::Json(key_json(&key, audit.at)).into_response())
        }
        .await,
    )
}

/// Body of `POST /admin/v1/keys/{id}/narrow`: the scopes the key keeps.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyNarrowInput)]
struct NarrowInput {
    /// At least one scope, each granted by one of the key's current
    /// scopes.
    scopes: Vec<String>,
}

/// Narrow an API key's scopes
///
/// Replaces the key's scopes by a subset of them, such as the scopes a
/// credential audit found in use. The change reaches every node within
/// about a second and is audited as `key.scopes_narrowed`.
#[utoipa::path(
    post,
    path = "/keys/{id}/narrow",
    tag = "keys",
    params(("id" = String, Path, format = Uuid, description = "The key id")),
    request_body = NarrowInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The key with its narrower scopes", body = schemas::ApiKey),
        (status = 400, description = "`id` is not a UUID, or a scope is invalid, not granted by the key, or missing"),
        (status = 404, description = "No key with this id"),
        (status = 409, description = "The key is revoked or expired"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn keys_narrow(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let id = parse_key_id(&id)?;
            let input: NarrowInput = body.json()?;
            let scopes = parse_scope_list(&input.scopes)?;
            let audit = audit_context(&parts, &state, &operator);
            let key = state
                .manager
                .narrow_key_scopes(id, &scopes, &audit)
                .await
                .map_err(problem_of)?;
            // This node's cache changes now; other nodes follow the change feed.
            state.verifier.cache().invalidate(id);
            Ok(axum::Json(key_json(&key, audit.at)).into_response())
        }
        .await,
    )
}

/// Body of a key rotation; it may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyRotateInput)]
struct RotateInput {
    /// How long the old key keeps working, such as `1h`; `0s` cuts over
    /// now. The default is 24 hours.
    grace: Option<String>,
}

/// Grace period of a rotation when the request names none.
pub const DEFAULT_ROTATION_GRACE: time::Duration = time::Duration::hours(24);

/// Rotate an API key
///
/// Issues a successor with the same scopes and limits. The old key keeps
/// working for the grace period. The response contains the new secret,
/// which is shown only here.
#[utoipa::path(
    post,
    path = "/keys/{id}/rotate",
    tag = "keys",
    params(("id" = String, Path, format = Uuid, description = "The key id")),
    request_body(content = Option<RotateInput>, description = "Optional; an empty body uses a 24-hour grace period"),
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The old key and its successor", body = schemas::KeyRotation),
        (status = 400, description = "`id` is not a UUID, or the body is invalid"),
        (status = 404, description = "No key with this id"),
        (status = 409, description = "The key is revoked or already rotated"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn keys_rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let id = parse_key_id(&id)?;
            let input: RotateInput = body.json_or_default()?;
            let grace = match input.grace.as_deref() {
                // "0s" is not a duration parse_duration takes, but an immediate
                // cut-over is a legitimate rotation.
                Some("0s" | "0") => time::Duration::ZERO,
                Some(text) => parse_duration(text)
                    .map_err(|error| Problem::invalid_field("grace", error.to_string()))?,
                None => DEFAULT_ROTATION_GRACE,
            };
            let audit = audit_context(&parts, &state, &operator);
            let (old, issued) = state
                .manager
                .rotate_key(id, grace, &audit)
                .await
                .map_err(problem_of)?;
            state.verifier.cache().invalidate(id);
            let body =
                json!({"old": key_json(&old, audit.at), "new": issued_json(&issued, audit.at)});
            Ok((StatusCode::CREATED, axum::Json(body)).into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scopes_parse() {
        assert_eq!(ADMIN_READ.as_str(), "admin:read");
        assert_eq!(ADMIN_WRITE.as_str(), "admin:write");
        assert_eq!(crate::verify::KEYS_VERIFY.as_str(), "keys:verify");
    }

    #[test]
    fn store_failure_detail_names_store() {
        let error = portcullis_store::StoreError::Corrupt("unknown role".to_owned());
        let problem = problem_of(ManageError::Store(error));
        assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(problem.code(), "store_unavailable");
        assert_eq!(
            problem.detail(),
            "the store failed to complete this operation; retry later"
        );
    }
}
