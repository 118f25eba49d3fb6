//! The OpenAPI 3.1 document of the endpoints that API consumers, OAuth
//! clients and partners call: the verify API, leak reports, the OAuth 2.0
//! endpoints and the internal CA's published documents. It is served at
//! `GET /openapi.json` without a credential.
//!
//! As in the admin document, [`public_routes`] registers each handler
//! together with its `#[utoipa::path]` description, and the application
//! router serves exactly that list.

use std::sync::LazyLock;

use axum::response::Response;
use axum::routing::MethodRouter;
use bytes::Bytes;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{complete_all_errors, document_response, public_schemas, schemas};
use crate::app::AppState;
use crate::leaks::{KEY_ID_HEADER, SIGNATURE_HEADER};
use crate::oauth::{authorize, introspect, metadata, revoke, token};
use crate::pki::publish;
use crate::{leaks, verify};

/// Name of the HTTP Basic client authentication scheme (RFC 6749 §2.3.1).
pub const CLIENT_SECRET_BASIC: &str = "client_secret_basic";

/// Name of the client certificate scheme (RFC 8705 §2).
pub const TLS_CLIENT_AUTH: &str = "tls_client_auth";

/// Name of the scheme of the header naming a leak report's signing key.
/// A report needs it together with [`LEAK_SIGNATURE`].
pub const LEAK_KEY_ID: &str = "leak_key_id";

/// Name of the scheme of the header carrying a leak report's signature.
pub const LEAK_SIGNATURE: &str = "leak_signature";

/// Builds the routes that the document describes, with their handlers.
/// `protect_forms` wraps the method router of `/oauth/authorize`, whose
/// form posts the server accepts only from the issuer's origin.
pub fn public_routes(
    protect_forms: impl FnOnce(MethodRouter<AppState>) -> MethodRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let (schemas, paths, forms) = routes!(authorize::authorize_get, authorize::authorize_post);
    OpenApiRouter::with_openapi(PublicApiDoc::openapi())
        .routes(routes!(public_openapi_json))
        .routes(routes!(verify::keys_verify))
        .routes(routes!(leaks::report))
        .routes(routes!(token::token))
        .routes(routes!(introspect::introspect))
        .routes(routes!(revoke::revoke))
        .routes((schemas, paths, protect_forms(forms)))
        .routes(routes!(metadata::jwks))
        .routes(routes!(metadata::authorization_server_metadata))
        .routes(routes!(publish::ca_certificate))
        .routes(routes!(publish::crl))
}

/// Builds the document of [`public_routes`], with the problem+json body
/// filled in on the errors that do not name another one.
pub fn public_document() -> OpenApi {
    let mut api = public_routes(|forms| forms).into_openapi();
    complete_all_errors(&mut api);
    api
}

/// The document as JSON, built once.
static PUBLIC_DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    // The document's maps all have string keys, so serializing it does not
    // fail. An empty body would fail the contract test.
    let text = serde_json::to_vec(&public_document()).unwrap_or_default();
    Bytes::from(text)
});

/// Returns the OpenAPI document of the consumer endpoints. Like the admin
/// document, it needs no credential and contains nothing about this
/// server's data.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "public_openapi_document",
    summary = "This document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
    ),
)]
pub async fn public_openapi_json() -> Response {
    document_response(&PUBLIC_DOCUMENT)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Portcullis consumer API",
        description = "The key verification API, leak reports, the OAuth 2.0 endpoints and the \
                       internal CA's documents. Errors of the verify API and leak reports are \
                       RFC 9457 problem details; errors of the token, introspection and \
                       revocation endpoints follow RFC 6749 §5.2. The admin API has its own \
                       document at /admin/v1/openapi.json.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(schemas::ProblemDetails, public_schemas::ClientAuthentication)),
    modifiers(&PublicSecuritySchemes),
    tags(
        (name = "verify", description = "Checking API keys from a backend outside the gateway"),
        (name = "leaks", description = "Leaked token reports from secret scanning partners"),
        (name = "oauth", description = "The OAuth 2.0 authorization server"),
        (name = "certificates", description = "The internal CA's certificate and CRL"),
        (name = "meta", description = "This document"),
    ),
)]
struct PublicApiDoc;

/// Adds the security schemes of the consumer endpoints. The
/// `client_secret_post` and `private_key_jwt` methods send their
/// credentials in the form body, a place no OpenAPI security scheme can
/// name, so the operations list an empty requirement for them and the
/// request bodies describe the members.
struct PublicSecuritySchemes;

impl Modify for PublicSecuritySchemes {
    fn modify(&self, api: &mut OpenApi) {
        super::SecuritySchemes.modify(api);
        let components = api.components.get_or_insert_with(Default::default);
        let basic = HttpBuilder::new()
            .scheme(HttpAuthScheme::Basic)
            .description(Some(
                "`client_secret_basic` (RFC 6749 §2.3.1): the client id and secret, each \
                 form-urlencoded, as the HTTP Basic user and password.",
            ))
            .build();
        components.add_security_scheme(CLIENT_SECRET_BASIC, SecurityScheme::Http(basic));
        components.add_security_scheme(
            TLS_CLIENT_AUTH,
            SecurityScheme::MutualTls {
                description: Some(
                    "`tls_client_auth` or `self_signed_tls_client_auth` (RFC 8705 §2): the \
                     client certificate registered for the client, with `client_id` in the \
                     body. Tokens issued this way are bound to the certificate."
                        .to_owned(),
                ),
                deprecated: None,
                extensions: None,
            },
        );
        let key_id = ApiKey::Header(ApiKeyValue::with_description(
            KEY_ID_HEADER,
            "The id of the `[leaks]` public key that signed the report",
        ));
        components.add_security_scheme(LEAK_KEY_ID, SecurityScheme::ApiKey(key_id));
        let signature = ApiKey::Header(ApiKeyValue::with_description(
            SIGNATURE_HEADER,
            "The base64 DER ECDSA P-256 SHA-256 signature of the raw body",
        ));
        components.add_security_scheme(LEAK_SIGNATURE, SecurityScheme::ApiKey(signature));
    }
}
