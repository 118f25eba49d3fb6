//! The two OpenAPI 3.1 documents: the admin API's, served at
//! `GET /admin/v1/openapi.json`, and the consumer endpoints' ([`public`]),
//! served at `GET /openapi.json`.
//!
//! Every documented route is registered with utoipa-axum's `routes!`, which
//! adds the handler to the router and its `#[utoipa::path]` description to
//! the document in one step. [`documented_routes`] and
//! [`public::public_routes`] are the lists of them: the application router
//! serves them and [`document`] and [`public::public_document`] describe
//! them, so a documented route cannot be served without its description.
//!
//! The dashboard, the health checks and the gateway routes, whose paths
//! come from the configuration, are in neither document.

pub mod public;
pub mod public_schemas;
pub mod schemas;

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Response as ApiResponse, ResponseBuilder,
};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;

use crate::admin;
use crate::app::AppState;
use crate::problem::PROBLEM_JSON;

/// Name of the security scheme of an operator key sent as a bearer token.
pub const OPERATOR_BEARER: &str = "operator_key";

/// Name of the security scheme of an operator key sent in `X-API-Key`.
pub const OPERATOR_HEADER: &str = "operator_key_header";

/// Builds the routes that the document describes, with their handlers.
pub fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/admin/v1", admin::router())
}

/// Builds the document of [`documented_routes`], with the problem+json
/// body and the authentication errors filled in on every operation.
pub fn document() -> OpenApi {
    let mut api = documented_routes().into_openapi();
    complete_all_errors(&mut api);
    api
}

/// Runs [`complete_errors`] on every operation of `api`.
fn complete_all_errors(api: &mut OpenApi) {
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            complete_errors(operation);
        }
    }
}

/// The document as JSON, built once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    // The document's maps all have string keys, so serializing it does not
    // fail. An empty body would fail the contract test.
    let text = serde_json::to_vec(&document()).unwrap_or_default();
    Bytes::from(text)
});

/// Returns the OpenAPI document.
///
/// It needs no credential: it describes the public contract and contains
/// no secret and nothing about this server's data, so a client can fetch
/// it to generate code before it has a key.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi_document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
    ),
)]
pub async fn openapi_json() -> Response {
    document_response(&DOCUMENT)
}

/// Sends a serialized document as JSON that clients revalidate before
/// reusing, since a new release may change it.
fn document_response(document: &Bytes) -> Response {
    let mut response = document.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Portcullis admin API",
        description = "The admin API of Portcullis. Its errors are RFC 9457 problem details. \
                       The verify API, leak reports and the OAuth 2.0 endpoints are described \
                       at /openapi.json.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(schemas::ProblemDetails)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "tenants", description = "Tenants: the SaaS company's customers"),
        (name = "keys", description = "API keys of tenants and operators"),
        (name = "clients", description = "OAuth clients"),
        (name = "users", description = "Tenants' dashboard users"),
        (name = "certificates", description = "The internal CA, client certificates and trusted partner CAs"),
        (name = "signing-keys", description = "Token-signing keys"),
        (name = "usage", description = "Request and failure counts over time"),
        (name = "audit", description = "The audit log and the credential audit"),
        (name = "alerts", description = "Anomaly alerts and their webhook deliveries"),
        (name = "meta", description = "This document"),
    ),
)]
struct ApiDoc;

/// Adds the two ways of sending an operator key (RFC 6750 §2.1 bearer, or
/// `X-API-Key`) as security schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("Portcullis API key")
            .description(Some(
                "An operator key (`portcullis keys create --operator`). The scopes listed in a \
                 requirement are the ones the key must hold.",
            ))
            .build();
        components.add_security_scheme(OPERATOR_BEARER, SecurityScheme::Http(bearer));
        let header = ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "The same operator key in the X-API-Key header",
        ));
        components.add_security_scheme(OPERATOR_HEADER, SecurityScheme::ApiKey(header));
    }
}

/// Adds the errors of operator authentication to an operation that needs
/// an operator key, and gives every 4xx and 5xx response without a body
/// the problem+json body.
fn complete_errors(operation: &mut Operation) {
    let needs_operator = operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement)
            .ok()
            .and_then(|value| value.get(OPERATOR_BEARER).cloned())
            .is_some()
    });
    let responses = &mut operation.responses.responses;
    if needs_operator {
        let unauthorized =
            problem_response("The operator key is missing, malformed, unknown, expired or revoked");
        let challenge = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some("The RFC 6750 §3 challenge"))
            .build();
        let mut unauthorized = unauthorized;
        unauthorized
            .headers
            .insert("WWW-Authenticate".to_owned(), RefOr::T(challenge));
        let shared = [
            (
                "400",
                problem_response("Two credentials in one request, or a credential in the query"),
            ),
            ("401", unauthorized),
            (
                "403",
                problem_response(
                    "The key is not an operator key or lacks the scope named in `required_scope`",
                ),
            ),
            (
                "429",
                problem_response(
                    "Too many failed authentications from this address; see Retry-After",
                ),
            ),
            (
                "503",
                problem_response("The store cannot be reached; retry later"),
            ),
        ];
        for (status, response) in shared {
            responses
                .entry(status.to_owned())
                .or_insert(RefOr::T(response));
        }
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response)
            && response.content.is_empty()
        {
            response
                .content
                .insert(PROBLEM_JSON.to_owned(), RefOr::T(problem_content()));
        }
    }
}

fn problem_response(description: &str) -> ApiResponse {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, problem_content())
        .build()
}

fn problem_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

#[cfg(test)]
mod tests;
