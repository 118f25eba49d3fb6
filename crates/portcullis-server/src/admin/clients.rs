//! OAuth clients in the admin API: register, list, show, rotate the secret,
//! change the rate limits and revoke.
//!
//! Request and response bodies use the client metadata names of RFC 7591
//! §2 and §3.2.1 (`client_name`, `scope`, `token_endpoint_auth_method`, …),
//! so a registration tool written for that RFC reads them unchanged. A
//! public client is one registered with `token_endpoint_auth_method`
//! `none`, as RFC 7591 expresses it.

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::credential::RateLimits;
use portcullis_core::duration::parse_duration;
use portcullis_core::ids::ClientId;
use portcullis_core::oauth::{ClientAuthMethod, ClientRecord, GrantType, TlsSubjectKind};
use portcullis_core::scope::ScopeSet;
use serde::Deserialize;
use serde_json::{Value, json};
use time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    ADMIN_READ, ADMIN_WRITE, DEFAULT_ROTATION_GRACE, RequestBody, audit_context,
    authenticate_operator, problem_of, respond, timestamp,
};
use crate::app::AppState;
use crate::clients::{ClientRequest, IssuedClient};
use crate::manage::ManageError;
use crate::openapi::schemas;
use crate::problem::Problem;

/// Builds the client routes, to be merged into the admin router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(clients_list, clients_create))
        .routes(routes!(clients_show))
        .routes(routes!(clients_rotate_secret))
        .routes(routes!(clients_limits))
        .routes(routes!(clients_revoke))
}

/// Builds the public view of a client in RFC 7591 §3.2.1 names, plus `tenant`,
/// `status`, `access_token_ttl` (seconds), `rate_limits`, `plan` and
/// `revoked_at`. It contains no
/// secret, because the record has none.
pub fn client_json(client: &ClientRecord) -> Value {
    let grant_types: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
    let redirect_uris: Vec<&str> = client.redirect_uris.iter().map(|u| u.as_str()).collect();
    let mut value = json!({
        "client_id": client.id,
        "client_name": client.name,
        "grant_types": grant_types,
        "redirect_uris": redirect_uris,
        "scope": client.scopes.to_space_separated(),
        "token_endpoint_auth_method": client.auth_method.as_str(),
        "client_id_issued_at": client.created_at.unix_timestamp(),
        "tenant": client.tenant,
        "status": if client.revoked_at.is_some() { "revoked" } else { "active" },
        "access_token_ttl": client.access_token_ttl_seconds,
        "rate_limits": client.limits.rate_limits,
        "plan": client.limits.plan,
        "revoked_at": timestamp(client.revoked_at),
        "created_by": client.created_by,
    });
    // The stored JWKS passed `check_jwks`, so it contains public keys only.
    let jwks = client
        .jwks
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    if let (Value::Object(map), Some(jwks)) = (&mut value, jwks) {
        map.insert("jwks".to_owned(), jwks);
    }
    if let (Value::Object(map), Some(subject)) = (&mut value, &client.tls_client_auth_subject) {
        map.insert(
            subject.kind().as_str().to_owned(),
            Value::from(subject.value()),
        );
    }
    // RFC 8705 §3.4: every token of a client that authenticates with a
    // certificate is bound to it.
    if client.auth_method.uses_certificate()
        && let Value::Object(map) = &mut value
    {
        map.insert(
            "tls_client_certificate_bound_access_tokens".to_owned(),
            Value::from(true),
        );
    }
    value
}

/// Builds the view of a new client, with its secret under `client_secret` when it
/// has one: shown this once. `client_secret_expires_at` is 0, which RFC
/// 7591 §3.2.1 defines as "does not expire".
pub fn issued_client_json(issued: &IssuedClient) -> Value {
    let mut value = client_json(&issued.record);
    if let (Value::Object(map), Some(secret)) = (&mut value, &issued.secret) {
        map.insert("client_secret".to_owned(), Value::from(secret.expose()));
        map.insert("client_secret_expires_at".to_owned(), Value::from(0));
    }
    value
}

/// Parses a client id from a path or argument.
pub(super) fn parse_client_id(text: &str) -> Result<ClientId, Problem> {
    text.parse().map_err(|_| {
        Problem::invalid_field("id", "client ids are UUIDs, as `clients list` prints them")
    })
}

/// An access token lifetime: seconds, as responses write it, or a duration
/// such as `"15m"`.
#[derive(Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "a number of seconds or a duration such as \"15m\""
)]
enum TtlInput {
    Seconds(i64),
    Text(String),
}

/// Body of a client registration, in RFC 7591 §2 names.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClientInput {
    client_name: String,
    #[schema(value_type = Vec<schemas::GrantType>)]
    grant_types: Vec<String>,
    /// The scopes the client may request, separated by spaces.
    scope: String,
    /// Required for the authorization code grant; at most 20, as
    /// `clients::MAX_REDIRECT_URIS` allows.
    #[serde(default)]
    #[schema(max_items = 20)]
    redirect_uris: Vec<String>,
    /// `client_secret_basic` when left out, or `none` for a public client.
    #[schema(value_type = Option<schemas::ClientAuthMethod>)]
    token_endpoint_auth_method: Option<String>,
    /// Public keys (RFC 7517) for `private_key_jwt` and
    /// `self_signed_tls_client_auth`.
    #[schema(value_type = Option<Object>)]
    jwks: Option<Value>,
    access_token_ttl: Option<TtlInput>,
    #[serde(default)]
    rate_limits: Vec<String>,
    plan: Option<String>,
    /// For `tls_client_auth`, the certificate's subject DN (RFC 4514). Give
    /// at most one `tls_client_auth_*` member. With none, the server maps
    /// the client to the SAN URI `urn:portcullis:client:<client id>` that the
    /// internal CA writes, and only such a client gets certificates from
    /// `POST /clients/{id}/certificates`.
    tls_client_auth_subject_dn: Option<String>,
    /// For `tls_client_auth`, a DNS name in the certificate's SAN.
    tls_client_auth_san_dns: Option<String>,
    /// For `tls_client_auth`, a URI in the certificate's SAN. URIs in the
    /// internal CA's `urn:portcullis:client:` namespace, in any case, are
    /// rejected.
    tls_client_auth_san_uri: Option<String>,
    /// For `tls_client_auth`, an IP address in the certificate's SAN.
    tls_client_auth_san_ip: Option<String>,
    /// For `tls_client_auth`, an e-mail address in the certificate's SAN.
    tls_client_auth_san_email: Option<String>,
}

impl ClientInput {
    fn into_request(self, tenant: String) -> Result<ClientRequest, Problem> {
        let grant_types = self
            .grant_types
            .iter()
            .map(|name| name.parse::<GrantType>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| Problem::invalid_field("grant_types", error.to_string()))?;
        let scopes = ScopeSet::parse_list(&self.scope)
            .map_err(|error| Problem::invalid_field("scope", error.to_string()))?;
        let auth_method = self
            .token_endpoint_auth_method
            .as_deref()
            .map(str::parse::<ClientAuthMethod>)
            .transpose()
            .map_err(|error| {
                Problem::invalid_field("token_endpoint_auth_method", error.to_string())
            })?;
        let access_token_ttl =
            match self.access_token_ttl {
                None => None,
                Some(TtlInput::Seconds(seconds)) => Some(Duration::seconds(seconds)),
                Some(TtlInput::Text(text)) => Some(parse_duration(&text).map_err(|error| {
                    Problem::invalid_field("access_token_ttl", error.to_string())
                })?),
            };
        let tls_subjects = [
            (TlsSubjectKind::SubjectDn, self.tls_client_auth_subject_dn),
            (TlsSubjectKind::SanDns, self.tls_client_auth_san_dns),
            (TlsSubjectKind::SanUri, self.tls_client_auth_san_uri),
            (TlsSubjectKind::SanIp, self.tls_client_auth_san_ip),
            (TlsSubjectKind::SanEmail, self.tls_client_auth_san_email),
        ]
        .into_iter()
        .filter_map(|(kind, value)| Some((kind, value?)))
        .collect();
        Ok(ClientRequest {
            tenant,
            name: self.client_name,
            grant_types,
            scopes,
            redirect_uris: self.redirect_uris,
            public: auth_method == Some(ClientAuthMethod::None),
            auth_method,
            jwks: self.jwks.map(|jwks| jwks.to_string()),
            tls_subjects,
            access_token_ttl,
            limits: RateLimits {
                rate_limits: self.rate_limits,
                plan: self.plan,
            },
        })
    }
}

/// Maps a manager error to a problem, naming a rejected field by its
/// RFC 7591 name.
fn client_problem(error: ManageError) -> Problem {
    match error {
        ManageError::Invalid { field, message } => {
            let field = match field {
                "name" => "client_name",
                "scopes" => "scope",
                "auth_method" => "token_endpoint_auth_method",
                other => other,
            };
            Problem::invalid_field(field, message)
        }
        other => problem_of(other),
    }
}

/// Register an OAuth client
///
/// A confidential client's secret is in the response, shown only here.
#[utoipa::path(
    post,
    path = "/tenants/{tenant}/clients",
    tag = "clients",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = ClientInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The new client and its secret", body = schemas::IssuedClient),
        (status = 400, description = "The body is not valid JSON, or a member is invalid"),
        (status = 404, description = "No tenant of this name"),
        (status = 409, description = "A key of the JWKS is registered by another self-signed client (`jwks_key_registered`)"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn clients_create(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, body) = request.into_parts();
            let body = RequestBody::read(&parts, body).await?;
            let operator = authenticate_operator(&state, &parts, &ADMIN_WRITE, "admin").await?;
            let input: ClientInput = body.json()?;
            let client_request = input.into_request(tenant)?;
            let audit = audit_context(&parts, &state, &operator);
            let issued = state
                .manager
                .create_client(client_request, &audit)
                .await
                .map_err(client_problem)?;
            Ok((StatusCode::CREATED, axum::Json(issued_client_json(&issued))).into_response())
        }
        .await,
    )
}

/// List a tenant's OAuth clients
#[utoipa::path(
    get,
    path = "/tenants/{tenant}/clients",
    tag = "clients",
    params(("tenant" = String, Path, description = "The tenant's name")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The tenant's clients", body = schemas::ClientList),
        (status = 404, description = "No tenant of this name"),
    ),
)]
async fn clients_list(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let clients = state
                .manager
                .list_clients(&tenant)
                .await
                .map_err(client_problem)?;
            let items: Vec<Value> = clients.iter().map(client_json).collect();
            Ok(axum::Json(json!({"clients": items})).into_response())
        }
        .await,
    )
}

/// Show an OAuth client
#[utoipa::path(
    get,
    path = "/clients/{id}",
    tag = "clients",
    params(("id" = String, Path, format = Uuid, description = "The client id")),
    security(("operator_key" = ["admin:read"]), ("operator_key_header" = ["admin:read"])),
    responses(
        (status = 200, description = "The client, without secrets", body = schemas::Client),
        (status = 400, description = "`id` is not a UUID"),
        (status = 404, description = "No client with this id"),
    ),
)]
async fn clients_show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    respond(
        async {
            let (parts, _) = request.into_parts();
            authenticate_operator(&state, &parts, &ADMIN_READ, "admin").await?;
            let client = state
                .manager
                .client(parse_client_id(&id)?)
                .await
                .map_err(client_problem)?;
            Ok(axum::Json(client_json(&client)).into_response())
        }
        .await,
    )
}

/// Body of a secret rotation; it may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateSecretInput {
    /// How long the previous secrets keep working, such as `1h`; `0s`
    /// cuts over now. The default is 24 hours.
    grace: Option<String>,
}

/// Rotate an OAuth client's secret
///
/// The new secret is in the response, shown only here. The previous
/// secrets keep working until `previous_secrets_expire_at`.
#[utoipa::path(
    post,
    path = "/clients/{id}/rotate-secret",
    tag = "clients",
    params(("id" = String, Path, format = Uuid, description = "The client id")),
    request_body(content = Option<RotateSecretInput>, description = "Optional; an empty body uses a 24-hour grace period"),
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 201, description = "The client and its new secret", body = schemas::IssuedClient),
        (status = 400, description = "`id` is not a UUID, or the body is invalid"),
        (status = 404, description = "No client with this id"),
        (status = 409, description = "The client is revoked or public"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn clients_rotate_secret(
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
            let input: RotateSecretInput = body.json_or_default()?;
            let grace = match input.grace.as_deref() {
                // An immediate cut-over is a legitimate rotation, though
                // parse_duration takes no zero.
                Some("0s" | "0") => Duration::ZERO,
                Some(text) => parse_duration(text)
                    .map_err(|error| Problem::invalid_field("grace", error.to_string()))?,
                None => DEFAULT_ROTATION_GRACE,
            };
            let audit = audit_context(&parts, &state, &operator);
            let (client, secret) = state
                .manager
                .rotate_secret(id, grace, &audit)
                .await
                .map_err(client_problem)?;

            let mut body = issued_client_json(&IssuedClient {
                record: client,
                secret: Some(secret),
            });
            if let Value::Object(map) = &mut body {
                map.insert(
                    "previous_secrets_expire_at".to_owned(),
                    timestamp(Some(audit.at + grace)),
                );
            }
            Ok((StatusCode::CREATED, axum::Json(body)).into_response())
        }
        .await,
    )
}

/// Body of a client revocation; it may be empty.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClientRevokeInput)]
struct RevokeInput {
    /// Reason for the revocation, stored in the audit log.
    reason: Option<String>,
}

/// Body of `PUT /admin/v1/clients/{id}/limits`: the client's whole set of
/// limits. A member left out means none of that kind.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClientLimitsInput {
    /// Rates such as `100/s burst 200`, all of which apply.
    #[serde(default)]
    rate_limits: Vec<String>,
    /// A plan of the server's `[limits.plans]`.
    plan: Option<String>,
}

/// Replace an OAuth client's rate limits
#[utoipa::path(
    put,
    path = "/clients/{id}/limits",
    tag = "clients",
    params(("id" = String, Path, format = Uuid, description = "The client id")),
    request_body = ClientLimitsInput,
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The client with its new limits", body = schemas::Client),
        (status = 400, description = "`id` is not a UUID, or the body is invalid"),
        (status = 404, description = "No client with this id"),
        (status = 409, description = "The client is revoked"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn clients_limits(
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
            let input: ClientLimitsInput = body.json()?;
            let limits = RateLimits {
                rate_limits: input.rate_limits,
                plan: input.plan,
            };
            let audit = audit_context(&parts, &state, &operator);
            let client = state
                .manager
                .update_client_limits(id, limits, &audit)
                .await
                .map_err(client_problem)?;
            // This node applies the change now; other nodes follow the
            // change feed.
            state.client_limits.invalidate_all();
            state.certificate_clients.invalidate_all();
            Ok(axum::Json(client_json(&client)).into_response())
        }
        .await,
    )
}

/// Revoke an OAuth client
///
/// The client's secrets, tokens and certificates stop working.
#[utoipa::path(
    post,
    path = "/clients/{id}/revoke",
    tag = "clients",
    params(("id" = String, Path, format = Uuid, description = "The client id")),
    request_body(content = Option<RevokeInput>, description = "Optional; an empty body revokes without a reason"),
    security(("operator_key" = ["admin:write"]), ("operator_key_header" = ["admin:write"])),
    responses(
        (status = 200, description = "The revoked client", body = schemas::Client),
        (status = 400, description = "`id` is not a UUID, or the body is invalid"),
        (status = 404, description = "No client with this id"),
        (status = 409, description = "The client is already revoked"),
        (status = 413, description = "The body is larger than 64 KiB"),
        (status = 415, description = "The body is not JSON"),
    ),
)]
async fn clients_revoke(
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
            let input: RevokeInput = body.json_or_default()?;
            let audit = audit_context(&parts, &state, &operator);
            let client = state
                .manager
                .revoke_client(id, input.reason.as_deref(), &audit)
                .await
                .map_err(client_problem)?;
            Ok(axum::Json(client_json(&client)).into_response())
        }
        .await,
    )
}
