//! Schemas of the OAuth form requests and of the JSON documents that the
//! OAuth handlers build from stored data: introspection, server metadata
//! and the JWK Set.
//!
//! The form handlers read parameters by name from a strict parser
//! (`oauth::form::Form`), so these request types describe the forms
//! rather than parse them. The token response, the OAuth error body, the
//! verify API and leak reports use their real types instead. The contract
//! test checks the server's responses against these schemas.

use serde::Serialize;
use utoipa::ToSchema;

/// The grant types of the token endpoint.
#[derive(Serialize, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §4.4.
    ClientCredentials,
    /// RFC 6749 §4.1.3, with PKCE (RFC 7636).
    AuthorizationCode,
    /// RFC 6749 §6.
    RefreshToken,
}

/// The client authentication members of a form body (RFC 6749 §2.3.1
/// `client_secret_post`, RFC 7523 §2.2 `private_key_jwt`). A client that
/// authenticates with HTTP Basic or a client certificate sends none of
/// them, except `client_id` for a certificate or a public client. A
/// request may use one method only.
#[derive(Serialize, ToSchema)]
pub struct ClientAuthentication {
    /// The client's id. Required for `client_secret_post`, public clients
    /// and `tls_client_auth`, optional with an assertion.
    #[schema(required = false, format = Uuid)]
    pub client_id: String,
    /// The client secret, for `client_secret_post`.
    #[schema(required = false)]
    pub client_secret: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, for
    /// `private_key_jwt`.
    #[schema(required = false)]
    pub client_assertion_type: String,
    /// A JWT signed with the client's registered key (RFC 7523 §3), for
    /// `private_key_jwt`.
    #[schema(required = false)]
    pub client_assertion: String,
}

/// A token request (RFC 6749 §4.4.2, §4.1.3 and §6), sent as
/// `application/x-www-form-urlencoded`. A parameter may appear once, and
/// an empty value counts as absent (RFC 6749 §3.1).
#[derive(Serialize, ToSchema)]
pub struct TokenRequest {
    pub grant_type: GrantType,
    /// Space-separated scopes, within the client's or the refresh token's.
    /// All of them when absent (RFC 6749 §3.3).
    #[schema(required = false)]
    pub scope: String,
    /// The API the token is for (RFC 8707 §2), one of the configured
    /// audiences. Required when more than one API accepts tokens.
    #[schema(required = false)]
    pub resource: String,
    /// The authorization code, for `authorization_code`.
    #[schema(required = false)]
    pub code: String,
    /// The redirect URI of the authorization request, for
    /// `authorization_code`.
    #[schema(required = false)]
    pub redirect_uri: String,
    /// The PKCE verifier (RFC 7636 §4.5), for `authorization_code`.
    #[schema(required = false)]
    pub code_verifier: String,
    /// The refresh token, for `refresh_token`.
    #[schema(required = false)]
    pub refresh_token: String,
    #[serde(flatten)]
    pub client: ClientAuthentication,
}

/// Which kind of token a caller believes it sends (RFC 7009 §2.1, RFC
/// 7662 §2.1). The server tries both kinds whatever the hint.
#[derive(Serialize, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

/// An introspection request (RFC 7662 §2.1), sent as
/// `application/x-www-form-urlencoded`.
#[derive(Serialize, ToSchema)]
pub struct IntrospectionRequest {
    /// The access token or refresh token to look up.
    pub token: String,
    #[schema(required = false)]
    pub token_type_hint: TokenTypeHint,
    #[serde(flatten)]
    pub client: ClientAuthentication,
}

/// A revocation request (RFC 7009 §2.1), sent as
/// `application/x-www-form-urlencoded`.
#[derive(Serialize, ToSchema)]
pub struct RevocationRequest {
    /// The access token or refresh token to revoke.
    pub token: String,
    #[schema(required = false)]
    pub token_type_hint: TokenTypeHint,
    #[serde(flatten)]
    pub client: ClientAuthentication,
}

/// A token's audience: one value or several (RFC 7519 §4.1.3).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The confirmation of a certificate-bound token (RFC 8705 §3.1).
#[derive(Serialize, ToSchema)]
pub struct Confirmation {
    /// The base64url SHA-256 thumbprint of the client certificate.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// An introspection response (RFC 7662 §2.2). An inactive, unknown or
/// foreign token gets exactly `{"active": false}`, so every member but
/// `active` is absent then.
#[derive(Serialize, ToSchema)]
pub struct IntrospectionResponse {
    pub active: bool,
    /// `Bearer` for an access token, `refresh_token` for a refresh token.
    #[schema(required = false)]
    pub token_type: String,
    /// Space-separated scopes.
    #[schema(required = false)]
    pub scope: String,
    #[schema(required = false)]
    pub client_id: String,
    /// The user, or the client for a client credentials token.
    #[schema(required = false)]
    pub sub: String,
    #[schema(required = false)]
    pub iss: String,
    /// The audience. `null` for a refresh token issued without `resource`.
    #[schema(required = false)]
    pub aud: Option<Audience>,
    /// Issue time, in seconds since the Unix epoch.
    #[schema(required = false)]
    pub iat: i64,
    /// Expiry time, in seconds since the Unix epoch.
    #[schema(required = false)]
    pub exp: i64,
    /// The access token's id. Absent for refresh tokens.
    #[schema(required = false)]
    pub jti: String,
    /// The name of the client's tenant.
    #[schema(required = false)]
    pub tenant: String,
    /// Sent for an access token bound to a client certificate.
    #[schema(required = false)]
    pub cnf: Confirmation,
}

/// The endpoints that a client authenticated by certificate uses (RFC 8705
/// §5). Portcullis takes certificates on its one listener, so the aliases
/// are the usual URLs.
#[derive(Serialize, ToSchema)]
pub struct MtlsEndpointAliases {
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
}

/// Authorization server metadata (RFC 8414 §2). The RFC 8705 members are
/// present only when client certificates can reach the server.
#[derive(Serialize, ToSchema)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207 §3.
    pub authorization_response_iss_parameter_supported: bool,
    /// RFC 8705 §3.3.
    #[schema(required = false)]
    pub tls_client_certificate_bound_access_tokens: bool,
    /// RFC 8705 §5.
    #[schema(required = false)]
    pub mtls_endpoint_aliases: MtlsEndpointAliases,
}

/// A public key of the token-signing keys (RFC 7517 §4, with the members
/// of RFC 7518 §6 and RFC 8037 §2). Private members are never published.
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    /// `EC`, `RSA` or `OKP`.
    pub kty: String,
    pub kid: String,
    #[serde(rename = "use")]
    #[schema(required = false)]
    pub use_: String,
    /// `ES256`, `RS256` or `EdDSA`.
    #[schema(required = false)]
    pub alg: String,
    /// `P-256` or `Ed25519`.
    #[schema(required = false)]
    pub crv: String,
    #[schema(required = false)]
    pub x: String,
    #[schema(required = false)]
    pub y: String,
    /// The RSA modulus.
    #[schema(required = false)]
    pub n: String,
    /// The RSA public exponent.
    #[schema(required = false)]
    pub e: String,
}

/// The published token-signing keys (RFC 7517 §5), including keys about to
/// sign and keys that signed tokens still valid.
#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}
