//! Schemas of the JSON bodies that the admin API, the verify API and the
//! OAuth endpoints write.
//!
//! The handlers build their bodies with `serde_json::json!`, so these types
//! describe those bodies rather than produce them. The contract test runs
//! schemathesis against the real server and checks every response against
//! these schemas, which is what keeps the two in step. Request bodies are
//! not described here: their own `Deserialize` types derive `ToSchema`.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// An error response (RFC 9457 problem details), sent as
/// `application/problem+json`. Besides the members of RFC 9457 §3.1 it has
/// the stable `code` and, depending on the error, the extension members
/// below.
#[derive(ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDetails {
    /// `urn:portcullis:problem:CODE`, or a registered problem type URI.
    pub r#type: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation of the error and the next step, written for the caller.
    pub detail: String,
    /// A stable machine-readable code, such as `invalid_field`.
    pub code: String,
    /// The request member, path segment or query parameter that is
    /// invalid. Sent with `invalid_field` and with body errors that serde
    /// can place.
    #[schema(required = false)]
    pub field: String,
    /// The scope the credential lacks. Sent with `insufficient_scope`.
    #[schema(required = false)]
    pub required_scope: String,
    /// The body size limit in bytes. Sent with `payload_too_large`.
    #[schema(required = false)]
    pub limit_bytes: u64,
    /// The limit that was reached, such as `brute_force`. Sent with 429.
    #[schema(required = false)]
    pub limit: String,
    /// Every rate limit policy the request exceeded, such as `route` or
    /// `key-2`, named as in the `RateLimit-Policy` header. Sent with
    /// `rate_limited`.
    #[schema(required = false, rename = "violated-policies")]
    pub violated_policies: Vec<String>,
    /// The RFC 6749 §5.2 error code. Sent only by the OAuth endpoints,
    /// with the 429 of a client blocked after failed authentications.
    #[schema(required = false)]
    pub error: String,
    /// The RFC 6749 §5.2 error description, sent with `error`.
    #[schema(required = false)]
    pub error_description: String,
}

/// A tenant: one customer of the SaaS company.
#[derive(ToSchema)]
pub struct Tenant {
    #[schema(format = Uuid)]
    pub id: String,
    /// Lower-case letters, digits, `.`, `_` and `-`, at most 63 characters.
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// The tenants, oldest first.
#[derive(ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// Whether a key belongs to a tenant or to an operator.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyKind {
    Tenant,
    Operator,
}

/// The environment named by a key's prefix (`pc_live_`, `pc_test_`).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Test,
}

/// Whether a key is accepted now.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Rotating,
    Expired,
    Revoked,
}

/// An API key without its secret, which is not stored.
#[derive(Serialize, ToSchema)]
pub struct ApiKey {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(value_type = KeyKind)]
    pub kind: String,
    /// The owning tenant's name, or `null` for an operator key.
    #[schema(required = true)]
    pub tenant: Option<String>,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(value_type = Environment)]
    pub environment: String,
    /// The visible start of the key, enough to recognize it.
    pub prefix: String,
    pub scopes: Vec<String>,
    #[schema(value_type = KeyStatus)]
    pub status: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    #[schema(required = true)]
    pub revoked_reason: Option<String>,
    /// The key that replaced this one in a rotation.
    #[schema(required = true, format = Uuid)]
    pub rotated_to: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(required = true)]
    pub last_used_from: Option<String>,
    pub use_count: i64,
    /// Rates such as `100/s burst 200`, all of which apply.
    pub rate_limits: Vec<String>,
    #[schema(required = true)]
    pub plan: Option<String>,
    /// The number of requests the key may make in all, or `null`.
    #[schema(required = true)]
    pub max_uses: Option<i64>,
    pub uses_spent: i64,
}

/// A new API key, with its secret under `key`. The secret is shown in
/// this response only.
#[derive(Serialize, ToSchema)]
pub struct IssuedApiKey {
    #[serde(flatten)]
    pub view: ApiKey,
    /// The secret API key.
    pub key: String,
}

/// The keys, oldest first.
#[derive(ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKey>,
}

/// A rotation: the old key, now in its grace period, and its successor.
#[derive(ToSchema)]
pub struct KeyRotation {
    pub old: ApiKey,
    pub new: IssuedApiKey,
}

/// An OAuth grant type (RFC 6749).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
}

/// A client authentication method at the token endpoint (RFC 7591 §2).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
    TlsClientAuth,
    SelfSignedTlsClientAuth,
}

/// A certificate revocation reason of RFC 5280 §5.3.1. certificateHold and
/// removeFromCRL are not offered.
#[derive(ToSchema)]
pub enum RevocationReason {
    #[schema(rename = "unspecified")]
    Unspecified,
    #[schema(rename = "keyCompromise")]
    KeyCompromise,
    #[schema(rename = "cACompromise")]
    CaCompromise,
    #[schema(rename = "affiliationChanged")]
    AffiliationChanged,
    #[schema(rename = "superseded")]
    Superseded,
    #[schema(rename = "cessationOfOperation")]
    CessationOfOperation,
    #[schema(rename = "privilegeWithdrawn")]
    PrivilegeWithdrawn,
}

/// Whether a credential is accepted.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum CredentialStatus {
    Active,
    Revoked,
}

/// An OAuth client in RFC 7591 §3.2.1 names, without secrets.
#[derive(Serialize, ToSchema)]
pub struct Client {
    #[schema(format = Uuid)]
    pub client_id: String,
    pub client_name: String,
    #[schema(value_type = Vec<GrantType>)]
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    /// The scopes the client may request, separated by spaces.
    pub scope: String,
    #[schema(value_type = ClientAuthMethod)]
    pub token_endpoint_auth_method: String,
    /// Registration time in seconds since the Unix epoch.
    pub client_id_issued_at: i64,
    pub tenant: String,
    #[schema(value_type = CredentialStatus)]
    pub status: String,
    /// The lifetime of the client's access tokens in seconds.
    pub access_token_ttl: i64,
    pub rate_limits: Vec<String>,
    #[schema(required = true)]
    pub plan: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    /// The audit actor that registered the client: `cli`,
    /// `operator-key:<uuid>` or `user:<uuid>`; null when not recorded.
    #[schema(required = true)]
    pub created_by: Option<String>,
    /// The client's public keys (RFC 7517), for `private_key_jwt` and
    /// `self_signed_tls_client_auth`.
    #[schema(required = false, value_type = Object)]
    pub jwks: Value,
    #[schema(required = false)]
    pub tls_client_auth_subject_dn: String,
    #[schema(required = false)]
    pub tls_client_auth_san_dns: String,
    #[schema(required = false)]
    pub tls_client_auth_san_uri: String,
    #[schema(required = false)]
    pub tls_client_auth_san_ip: String,
    #[schema(required = false)]
    pub tls_client_auth_san_email: String,
    /// Present and `true` for clients that authenticate with a
    /// certificate: their tokens are bound to it (RFC 8705 §3.4).
    #[schema(required = false)]
    pub tls_client_certificate_bound_access_tokens: bool,
}

/// A client as registered or after a secret rotation. A confidential
/// client's new secret is under `client_secret`, shown in this response
/// only.
#[derive(Serialize, ToSchema)]
pub struct IssuedClient {
    #[serde(flatten)]
    pub view: Client,
    #[schema(required = false)]
    pub client_secret: String,
    /// Always 0, which RFC 7591 §3.2.1 defines as "does not expire".
    #[schema(required = false)]
    pub client_secret_expires_at: i64,
    /// After a rotation: when the previous secrets stop working.
    #[schema(required = false, format = DateTime)]
    pub previous_secrets_expire_at: String,
}

/// The tenant's OAuth clients.
#[derive(ToSchema)]
pub struct ClientList {
    pub clients: Vec<Client>,
}

/// A user's permissions in the tenant's dashboard.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Developer,
    Viewer,
}

/// A tenant's end user, without the password hash.
#[derive(ToSchema)]
pub struct User {
    #[schema(format = Uuid)]
    pub id: String,
    pub tenant: String,
    pub email: String,
    pub role: Role,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = true, format = DateTime)]
    pub disabled_at: Option<String>,
}

/// The tenant's users.
#[derive(ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// A token-signing key: dates, state and the public JWK. The private key
/// never leaves the store.
#[derive(ToSchema)]
pub struct SigningKey {
    /// The `kid` of tokens signed with this key.
    pub kid: String,
    /// The JWS algorithm (RFC 7518), such as `ES256`.
    pub algorithm: String,
    /// The key's place in its rotation: `pending`, `active`, `retired`,
    /// or `revoked` after an operator withdrew it.
    pub state: String,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub activates_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub retired_at: Option<String>,
    /// Until when the JWKS keeps publishing the key.
    #[schema(required = true, format = DateTime)]
    pub publish_until: Option<String>,
    /// When an operator revoked the key, which left the JWKS at that time.
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    /// The operator's reason for the revocation.
    #[schema(required = true)]
    pub revoked_reason: Option<String>,
    /// The public key as a JWK (RFC 7517).
    #[schema(required = true, value_type = Option<Object>)]
    pub public_jwk: Value,
}

/// The outcome of a signing key's revocation.
#[derive(ToSchema)]
pub struct SigningKeyRevocation {
    /// The revoked key.
    pub revoked: SigningKey,
    /// The key that took over signing because the revoked key was active:
    /// the pending key created first, or a key generated by the
    /// revocation. Resource servers that cache the JWKS may reject its
    /// tokens until their cache refreshes.
    #[schema(required = true)]
    pub successor: Option<SigningKey>,
    /// The kid of the key that signs new tokens now.
    #[schema(required = true)]
    pub signing_kid: Option<String>,
}

/// The signing keys.
#[derive(ToSchema)]
pub struct SigningKeyList {
    pub signing_keys: Vec<SigningKey>,
}

/// The internal CA's certificate.
#[derive(ToSchema)]
pub struct CertificateAuthority {
    #[schema(format = Uuid)]
    pub id: String,
    pub certificate_pem: String,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
}

/// A client certificate issued by the internal CA.
#[derive(ToSchema)]
pub struct Certificate {
    /// The serial number in hex.
    pub serial: String,
    #[schema(format = Uuid)]
    pub client_id: String,
    #[schema(format = Uuid)]
    pub tenant_id: String,
    pub subject: String,
    pub subject_alt_names: Vec<String>,
    #[schema(required = true, format = DateTime)]
    pub not_before: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub not_after: Option<String>,
    /// The SHA-256 thumbprint in hex.
    pub sha256: String,
    pub status: CredentialStatus,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    #[schema(required = true)]
    pub revoked_reason: Option<String>,
    pub certificate_pem: String,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
}

/// The client's certificates.
#[derive(ToSchema)]
pub struct CertificateList {
    pub certificates: Vec<Certificate>,
}

/// A partner CA that a tenant trusts for client certificates.
#[derive(ToSchema)]
pub struct TrustedCa {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub tenant_id: String,
    pub subject: String,
    pub sha256: String,
    pub certificate_pem: String,
    #[schema(required = true, format = DateTime)]
    pub added_at: Option<String>,
    /// Absolute paths of the CA's CRL files on the servers.
    pub crl_files: Vec<String>,
    /// `crl_files`, `unchecked` (trusted with `no_crl`), or `partner_crls`
    /// when the CA relies on the server's `partner_crls` setting.
    pub revocation_check: String,
}

/// The tenant's trusted partner CAs.
#[derive(ToSchema)]
pub struct TrustedCaList {
    pub trusted_cas: Vec<TrustedCa>,
}

/// The length of one point of a usage series.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

/// Subject of a usage series: a key, a client or a whole tenant.
#[derive(ToSchema)]
pub struct UsageSubject {
    /// `key`, `client` or `tenant`.
    pub kind: String,
    #[schema(format = Uuid)]
    pub id: String,
    /// The tenant's name, for a key or a client.
    #[schema(required = false)]
    pub tenant: Option<String>,
    /// The tenant's name, for a tenant.
    #[schema(required = false)]
    pub name: String,
}

/// Request and failure counts.
#[derive(ToSchema)]
pub struct UsageCounts {
    pub requests: i64,
    pub failures: i64,
}

/// The counts of one period.
#[derive(ToSchema)]
pub struct UsagePoint {
    #[schema(required = true, format = DateTime)]
    pub start: Option<String>,
    pub requests: i64,
    pub failures: i64,
}

/// A usage series: one point per period from `since` to `until`, with
/// zeros where nothing was counted.
#[derive(ToSchema)]
pub struct UsageSeries {
    pub subject: UsageSubject,
    pub granularity: Granularity,
    #[schema(required = true, format = DateTime)]
    pub since: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub until: Option<String>,
    pub totals: UsageCounts,
    pub points: Vec<UsagePoint>,
}

/// One record of the tamper-evident audit log and its place in the hash
/// chain.
#[derive(ToSchema)]
pub struct AuditEvent {
    /// The record's position in the chain.
    pub seq: i64,
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(required = true, format = DateTime)]
    pub at: Option<String>,
    pub actor: String,
    /// The action, such as `key.revoked`.
    pub action: String,
    #[schema(required = true, format = Uuid)]
    pub tenant_id: Option<String>,
    #[schema(required = true)]
    pub target: Option<String>,
    #[schema(required = true)]
    pub remote_addr: Option<String>,
    /// Action-specific details.
    pub details: Value,
    /// The previous record's hash, lower-case hex.
    pub prev_hash: String,
    /// This record's hash, lower-case hex.
    pub hash: String,
}

/// A page of audit records in chain order.
#[derive(ToSchema)]
pub struct AuditEventPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `after` to read the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_after: Option<i64>,
}

/// An alert raised by an anomaly rule.
#[derive(ToSchema)]
pub struct Alert {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(required = true, format = DateTime)]
    pub at: Option<String>,
    #[schema(required = true, format = Uuid)]
    pub tenant_id: Option<String>,
    /// The key or client id the alert is about.
    #[schema(required = true)]
    pub credential: Option<String>,
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub details: Value,
}

/// A page of alerts, newest first.
#[derive(ToSchema)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    /// Pass as `before` to read the next page; `null` on the last page.
    #[schema(required = true, format = Uuid)]
    pub next_before: Option<String>,
}

/// One webhook delivery of an alert, without its body.
#[derive(ToSchema)]
pub struct Delivery {
    #[schema(format = Uuid)]
    pub id: String,
    pub webhook: String,
    pub state: String,
    pub attempts: i32,
    #[schema(required = true, format = DateTime)]
    pub next_attempt_at: Option<String>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub finished_at: Option<String>,
}

/// The webhook deliveries of one alert.
#[derive(ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

/// The credential a finding is about.
#[derive(ToSchema)]
pub struct FindingSubject {
    /// Kind of credential or component, such as `key` or `client`.
    pub kind: String,
    pub id: String,
    #[schema(required = true)]
    pub tenant: Option<String>,
    #[schema(required = true)]
    pub label: Option<String>,
}

/// One finding of the credential audit.
#[derive(ToSchema)]
pub struct Finding {
    pub code: String,
    pub severity: String,
    pub subject: FindingSubject,
    pub message: String,
    pub details: Map<String, Value>,
}

/// The counts of a credential audit.
#[derive(ToSchema)]
pub struct FindingSummary {
    pub total: u64,
    /// The number of findings per severity.
    pub by_severity: Map<String, Value>,
    #[schema(required = true)]
    pub highest_severity: Option<String>,
}

/// The credential hygiene report of `portcullis audit`.
#[derive(ToSchema)]
pub struct CredentialAuditReport {
    #[schema(required = true, format = DateTime)]
    pub generated_at: Option<String>,
    /// The tenant the report covers, or `null` for the whole server.
    #[schema(required = true)]
    pub tenant: Option<String>,
    /// The thresholds the report applied.
    pub policy: Map<String, Value>,
    pub summary: FindingSummary,
    pub findings: Vec<Finding>,
}
