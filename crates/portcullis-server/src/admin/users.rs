//! A tenant's end users in the admin API: create and list. Responses never
//! contain the password or its hash.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
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

/// Role of a user created without one: the least privileged.
pub const DEFAULT_ROLE: Role = Role::Viewer;

/// Builds the user routes, to be merged into the admin router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(users_list, users_create))
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
