//! A tenant's end users in the admin API: create, list, disable and enable.
//! Responses never contain the password or its hash.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::ids::UserId;
use portcullis_core::oauth::{Role, UserRecord};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    ADMIN_READ, ADMIN_WRITE, RequestBody, audit_context, authenticate_operator, problem_of,
    respond, timestamp,
};
use crate::app::AppState;
use crate::openapi::schemas;
use crate::problem::Problem;

/// Role of a user created without one: the least privileged.
pub const DEFAULT_ROLE: Role = Role::Viewer;

/// Builds the user routes, to be merged into the admin router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users_list, users_create))
        .routes(routes!(users_disable))
        .routes(routes!(users_enable))
}

/// Builds the public view of a user, without the password hash.
pub fn user_json(user: &UserRecord) -> Value {
    json!({
        "id": user.id,
        "tenant": user.tenant,
        "email": user.email,
        "role": user.role,
        "created_at": timestamp(Some(user.created_at)),
        "disabled_at": timestamp(user.disabled_at),
    })
}

/// The body of a create request. No `Debug`: it contains the password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserInput {
    #[schema(format = Email)]
    email: String,
    /// The user's first password.
    #[schema(format = Password)]
    password: String,
    /// `viewer` when left out.
    #[schema(value_type = Option<schemas::Role>)]
    role: Option<Role>,
}

/// Create a dashboard user for a tenant
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/users",
    tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = UserInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new user", body = schemas::User),
        (status = 400, description = "The body is not valid JSON, or a member is invalid"),
        (status = 404, description = "No tenant of this name"),
        (status = 409, description = "A user with this email exists"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn users_create(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let input: UserInput = body.json()?;
            let password = SecretString::from(input.password);
            let audit = audit_context(&parts, &state, &operator);
            let user = state
                .manager
                .create_user(
                    &tenant,
                    &input.email,
                    &password,
                    input.role.unwrap_or(DEFAULT_ROLE),
                    &audit,
                )
                .await
                .map_err(problem_of)?;
            Ok((StatusCode::CREATED, axum::Json(user_json(&user))).into_response())
        }
        .await,
    )
}

/// List a tenant's dashboard users
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/users",
    tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The tenant's users", body = schemas::UserList),
        (status = 404, description = "No tenant of this name"),
    ),
)]
async fn users_list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let users = state
                .manager
                .list_users(&tenant)
                .await
                .map_err(problem_of)?;
            let items: Vec<Value> = users.iter().map(user_json).collect();
            Ok(axum::Json(json!({"users": items})).into_response())
        }
        .await,
    )
}

/// The path of one user of a tenant.
// `IntoParams` stays qualified and not imported: the code `utoipa::path`
// generates names `utoipa::IntoParams`, which an import would make an
// unnecessary qualification.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct UserPath {
    /// The tenant's name.
    tenant: String,
    /// The user id.
    #[param(format = Uuid)]
    id: String,
}

/// Disable a user
///
/// The user can no longer sign in. Their dashboard sessions end, and the
/// OAuth grants they approved are revoked: access and refresh tokens, and
/// codes not yet exchanged. Their tenant's API keys stay as they are.
/// Enabling the user again restores sign-in, not the revoked grants. The
/// change is audited as `user.disabled`.
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/users/{id}/disable",
    tag = "users",
    params(UserPath),
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The disabled user", body = schemas::User),
        (status = 400, description = "`id` is not a UUID, or `tenant` is not a tenant name"),
        (status = 404, description = "No tenant of this name, or the tenant has no user with this id"),
        (status = 409, description = "The user is disabled already (`user_disabled`), or is the \
            tenant's last enabled admin (`last_admin`)"),
    ),
)]
async fn users_disable(
    State(state): State<AppState>,
    Path(path): Path<UserPath>,
    request: Request,
) -> Response {
    respond(set_enabled(&state, &path, request, false).await)
}

/// Enable a disabled user
///
/// The user signs in with their old password again. The sessions and
/// grants that disabling ended stay ended. The change is audited as
/// `user.enabled`.
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/users/{id}/enable",
    tag = "users",
    params(UserPath),
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The enabled user", body = schemas::User),
        (status = 400, description = "`id` is not a UUID, or `tenant` is not a tenant name"),
        (status = 404, description = "No tenant of this name, or the tenant has no user with this id"),
        (status = 409, description = "The user is not disabled (`user_enabled`)"),
    ),
)]
async fn users_enable(
    State(state): State<AppState>,
    Path(path): Path<UserPath>,
    request: Request,
) -> Response {
    respond(set_enabled(&state, &path, request, true).await)
}

/// Disables or enables one user through the manager, as `portcullis users
/// disable|enable` does, so both reject a repeated change with the same 409.
async fn set_enabled(
    state: &AppState,
    path: &UserPath,
    request: Request,
    enabled: bool,
) -> Result<Response, Problem> {
    let (parts, _) = request.into_parts();
    let operator = authenticate_operator(state, &parts, &ADMIN_WRITE, "admin").await?;
    let id: UserId = path.id.parse().map_err(|_| {
        Problem::invalid_field("id", "user ids are UUIDs, as `users list` prints them")
    })?;
    let user = state
        .manager
        .user_by_id(&path.tenant, id)
        .await
        .map_err(problem_of)?;

    let audit = audit_context(&parts, state, &operator);
    let changed = if enabled {
        state.manager.enable_user(&user, &audit).await
    } else {
        state.manager.disable_user(&user, &audit).await
    }
    .map_err(problem_of)?;
    Ok(axum::Json(user_json(&changed)).into_response())
}
