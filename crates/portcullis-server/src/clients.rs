//! OAuth client operations, shared by the admin API and the CLI: register,
//! list, rotate a secret, revoke.
//!
//! A confidential client gets a client secret unless it authenticates with
//! `private_key_jwt` or `self_signed_tls_client_auth`, which need a public
//! JWKS instead, or with `tls_client_auth`, which needs the certificate
//! subject (RFC 8705 §2.1.2). The secret is an
//! [`OpaqueSecret`] shown once and stored only as its keyed hash, like an API
//! key. Public clients authenticate with `none` and get no secret.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::credential::{RateLimits, check_label, check_name};
use portcullis_core::ids::ClientId;
use portcullis_core::key::{OpaqueSecret, SecretKind};
use portcullis_core::oauth::{
    ClientAuthMethod, ClientRecord, GrantType, RedirectUri, TlsClientAuthSubject, TlsSubjectKind,
};
use portcullis_core::scope::ScopeSet;
use portcullis_store::{AuditContext, NewClient, NewClientSecret, StoreError};
use serde_json::{Map, Value};
use time::Duration;
use uuid::Uuid;

use crate::manage::{MAX_ROTATION_GRACE, ManageError, Manager};
use crate::pki::ca::{CLIENT_URI_PREFIX, client_uri, in_client_uri_namespace};
use crate::pki::identity::{jwks_spki_digests, self_signed_digests};

/// Access token lifetime of a client that names none. RFC 9068 access
/// tokens are self-contained JWTs that a resource server accepts until they
/// expire. A short lifetime bounds how long a revoked grant keeps working,
/// and clients refresh or request a new token when it ends.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);

/// Shortest allowed access token lifetime. Below a minute, network delay
/// and clock skew between servers eat a large part of a token's life.
pub const MIN_ACCESS_TOKEN_TTL: Duration = Duration::minutes(1);

/// Longest allowed access token lifetime: a JWT cannot be recalled from a
/// resource server that does not introspect, so an hour is the most a
/// leaked token may stay usable.
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::hours(1);

/// Smallest RSA modulus accepted in a client's JWKS. 2048 bits is the
/// minimum RFC 7518 §3.3 sets for RS256 keys.
pub const MIN_RSA_MODULUS_BITS: usize = 2048;

/// Maximum number of keys in a client's JWKS. A client needs one, or two while it rolls
/// its key over; more only makes every assertion check slower.
pub const MAX_JWKS_KEYS: usize = 10;

/// Members that carry private or secret key material (RFC 7518 §6.2.2,
/// §6.3.2, §6.4; `d` is also the OKP private key in RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The settings of a client to register.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// The owning tenant's name.
    pub tenant: String,
    /// The display name shown on the consent page.
    pub name: String,
    /// The grant types the client may use, at least one.
    pub grant_types: Vec<GrantType>,
    /// The maximum scopes of the client's tokens, at least one.
    pub scopes: ScopeSet,
    /// Redirect URIs as given; each is checked by [`RedirectUri::parse`].
    pub redirect_uris: Vec<String>,
    /// Whether the client is public (RFC 6749 §2.1): it keeps no secret.
    pub public: bool,
    /// The token endpoint authentication method. `None` picks `none` for a
    /// public client and `client_secret_basic` for a confidential one.
    pub auth_method: Option<ClientAuthMethod>,
    /// The client's public JWKS as JSON text, required for
    /// `private_key_jwt` and `self_signed_tls_client_auth` and rejected
    /// otherwise.
    pub jwks: Option<String>,
    /// The certificate subjects given for `tls_client_auth`, as RFC 8705
    /// member name and value. At most one is accepted. Without one, a
    /// `tls_client_auth` client is registered with the SAN URI that the
    /// internal CA writes into its certificates.
    pub tls_subjects: Vec<(TlsSubjectKind, String)>,
    /// Lifetime of the client's access tokens; `None` means
    /// [`DEFAULT_ACCESS_TOKEN_TTL`].
    pub access_token_ttl: Option<Duration>,
    /// The client's own rate limits and plan.
    pub limits: RateLimits,
}

/// A freshly registered client: its record and, for a client that
/// authenticates with a secret, the secret, shown once.
#[derive(Debug)]
pub struct IssuedClient {
    /// The stored record.
    pub record: ClientRecord,
    /// The whole client secret; `None` for public and `private_key_jwt`
    /// clients.
    pub secret: Option<OpaqueSecret>,
}

/// The reason a client's JWKS was rejected. `Display` names the key by its index
/// in `keys` and never contains a member's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The text is not JSON.
    #[error("JWKS is not valid JSON: {0}")]
    Json(String),
    /// The document is not an object with a `keys` array.
    #[error("JWKS must be a JSON object with a \"keys\" array")]
    Shape,
    /// `keys` is empty.
    #[error("JWKS contains no key")]
    Empty,
    /// `keys` has more than [`MAX_JWKS_KEYS`] entries.
    #[error("JWKS contains {0} keys; the maximum is {MAX_JWKS_KEYS}")]
    TooMany(usize),
    /// An entry of `keys` is not a JSON object.
    #[error("keys[{index}] is not a JSON object")]
    NotObject {
        /// Position in `keys`, from 0.
        index: usize,
    },
    /// A key contains a private or secret member.
    #[error("keys[{index}] contains the private member \"{member}\"; register public keys only")]
    PrivateMember {
        /// Position in `keys`, from 0.
        index: usize,
        /// The member's name, such as `d`.
        member: &'static str,
    },
    /// A key is symmetric (`kty` `oct`).
    #[error("keys[{index}] is a symmetric key (kty \"oct\"); register public keys only")]
    Symmetric {
        /// Position in `keys`, from 0.
        index: usize,
    },
    /// A key's `kty` is missing or not EC, RSA or OKP.
    #[error("keys[{index}] has kty {kty}; expected \"EC\", \"RSA\" or \"OKP\"")]
    KeyType {
        /// Position in `keys`, from 0.
        index: usize,
        /// The `kty` as JSON, or `missing`.
        kty: String,
    },
    /// A required member is missing or not a string.
    #[error("keys[{index}] needs the string member \"{member}\"")]
    MissingMember {
        /// Position in `keys`, from 0.
        index: usize,
        /// The member's name.
        member: &'static str,
    },
    /// The curve is not the one this key type is accepted with.
    #[error("keys[{index}] has crv {crv}; expected \"{expected}\"")]
    Curve {
        /// Position in `keys`, from 0.
        index: usize,
        /// The `crv` as JSON.
        crv: String,
        /// The accepted curve.
        expected: &'static str,
    },
    /// A coordinate or modulus is not base64url or has the wrong length.
    #[error("keys[{index}] member \"{member}\" is not base64url of the right length")]
    Encoding {
        /// Position in `keys`, from 0.
        index: usize,
        /// The member's name.
        member: &'static str,
    },
    /// An RSA modulus is shorter than [`MIN_RSA_MODULUS_BITS`].
    #[error("keys[{index}] is a {bits}-bit RSA key; the minimum is {MIN_RSA_MODULUS_BITS} bits")]
    RsaTooShort {
        /// Position in `keys`, from 0.
        index: usize,
        /// The modulus size in bits.
        bits: usize,
    },
    /// `use` is present and is not `sig`.
    #[error("keys[{index}] has use {value}; a client key must be for \"sig\"")]
    Use {
        /// Position in `keys`, from 0.
        index: usize,
        /// The `use` as JSON.
        value: String,
    },
    /// A key's `kid` is present but is not a non-empty string.
    #[error(
        "keys[{index}] has a kid that is not a non-empty string; give a string or leave kid out"
    )]
    InvalidKid {
        /// Position in `keys`, from 0.
        index: usize,
    },
    /// Two keys share a `kid`, so an assertion's `kid` would be ambiguous.
    #[error("keys[{index}] repeats the kid of an earlier key")]
    DuplicateKid {
        /// Position in `keys`, from 0.
        index: usize,
    },
    /// The key passes the checks above but the JWK parser rejects it, such
    /// as for an unknown `alg`.
    #[error("JWKS is not a valid JWK set: {0}")]
    Jwk(String),
}

/// Checks a client's JWKS (RFC 7517 §5): a `keys` array of public signing
/// keys, each EC on P-256, RSA of at least [`MIN_RSA_MODULUS_BITS`] or OKP
/// on Ed25519, none with a private member. A `kid` is optional (RFC 7517
/// §4.5), but when present it is a non-empty string unique in the set.
pub fn check_jwks(text: &str) -> Result<(), JwksError> {
    let document: Value =
        serde_json::from_str(text).map_err(|error| JwksError::Json(error.to_string()))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::Shape)?;
    if keys.is_empty() {
        return Err(JwksError::Empty);
    }
    if keys.len() > MAX_JWKS_KEYS {
        return Err(JwksError::TooMany(keys.len()));
    }

    let mut kids = BTreeSet::new();
    for (index, key) in keys.iter().enumerate() {
        let key = key.as_object().ok_or(JwksError::NotObject { index })?;
        check_jwk(index, key)?;
        let Some(kid) = key.get("kid") else {
            continue;
        };
        let kid = kid
            .as_str()
            .filter(|kid| !kid.is_empty())
            .ok_or(JwksError::InvalidKid { index })?;
        if !kids.insert(kid) {
            return Err(JwksError::DuplicateKid { index });
        }
    }

    // The token endpoint reads the set with jsonwebtoken, so a set it cannot
    // parse would make every assertion fail later instead of now.
    serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(document)
        .map_err(|error| JwksError::Jwk(error.to_string()))?;
    Ok(())
}

/// Checks one key of a JWKS. Private members are looked for first, so that
/// the error for a private key always names the member.
fn check_jwk(index: usize, key: &Map<String, Value>) -> Result<(), JwksError> {
    if let Some(member) = PRIVATE_MEMBERS
        .into_iter()
        .find(|member| key.contains_key(*member))
    {
        return Err(JwksError::PrivateMember { index, member });
    }
    if let Some(value) = key.get("use")
        && value.as_str() != Some("sig")
    {
        return Err(JwksError::Use {
            index,
            value: value.to_string(),
        });
    }

    match key.get("kty").and_then(Value::as_str) {
        Some("EC") => {
            check_curve(index, key, "P-256")?;
            check_coordinate(index, key, "x", 32)?;
            check_coordinate(index, key, "y", 32)
        }
        Some("OKP") => {
            check_curve(index, key, "Ed25519")?;
            check_coordinate(index, key, "x", 32)
        }
        Some("RSA") => check_rsa(index, key),
        Some("oct") => Err(JwksError::Symmetric { index }),
        _ => Err(JwksError::KeyType {
            index,
            kty: key
                .get("kty")
                .map_or_else(|| "missing".to_owned(), Value::to_string),
        }),
    }
}

fn string_member<'a>(
    index: usize,
    key: &'a Map<String, Value>,
    member: &'static str,
) -> Result<&'a str, JwksError> {
    key.get(member)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .ok_or(JwksError::MissingMember { index, member })
}

fn check_curve(
    index: usize,
    key: &Map<String, Value>,
    expected: &'static str,
) -> Result<(), JwksError> {
    let crv = string_member(index, key, "crv")?;
    if crv != expected {
        return Err(JwksError::Curve {
            index,
            crv: Value::from(crv).to_string(),
            expected,
        });
    }
    Ok(())
}

fn decode_member(
    index: usize,
    key: &Map<String, Value>,
    member: &'static str,
) -> Result<Vec<u8>, JwksError> {
    let text = string_member(index, key, member)?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwksError::Encoding { index, member })
}

fn check_coordinate(
    index: usize,
    key: &Map<String, Value>,
    member: &'static str,
    length: usize,
) -> Result<(), JwksError> {
    if decode_member(index, key, member)?.len() != length {
        return Err(JwksError::Encoding { index, member });
    }
    Ok(())
}

fn check_rsa(index: usize, key: &Map<String, Value>) -> Result<(), JwksError> {
    let modulus = decode_member(index, key, "n")?;
    decode_member(index, key, "e")?;
    let bits = modulus_bits(&modulus);
    if bits < MIN_RSA_MODULUS_BITS {
        return Err(JwksError::RsaTooShort { index, bits });
    }
    Ok(())
}

/// Counts the significant bits of a big-endian unsigned integer.
pub(crate) fn modulus_bits(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|byte| *byte != 0) else {
        return 0;
    };
    let significant = bytes.get(first..).unwrap_or_default();
    let leading = significant.first().map_or(0, |byte| byte.leading_zeros());
    significant.len() * 8 - leading as usize
}

impl Manager {
    /// Registers a client and returns its secret, which is not stored.
    pub async fn create_client(
        &self,
        request: ClientRequest,
        audit: &AuditContext,
    ) -> Result<IssuedClient, ManageError> {
        let limits = self.check_rate_limits(request.limits.clone())?;
        let checked = check_request(request)?;
        let tenant = self.tenant(&checked.tenant).await?;
        if checked.auth_method == ClientAuthMethod::SelfSignedTlsClientAuth {
            self.check_self_signed_keys_unused(checked.jwks.as_deref())
                .await?;
        }

        let secret = if uses_secret(checked.auth_method) {
            Some(
                OpaqueSecret::generate(SecretKind::ClientSecret)
                    .map_err(|_| ManageError::Random)?,
            )
        } else {
            None
        };
        let first_secret = secret.as_ref().map(|secret| NewClientSecret {
            id: Uuid::now_v7(),
            hash: self.pepper().hash(secret.expose().as_bytes()),
            created_at: audit.at,
            expires_at: None,
        });
        let id = ClientId::generate();
        // The internal CA names the client by this URI in every certificate
        // it issues, so `certs issue --client ID` gives a working
        // certificate.
        let tls_client_auth_subject = match checked.tls_subject {
            Some(subject) => Some(subject),
            None if checked.auth_method == ClientAuthMethod::TlsClientAuth => Some(
                TlsClientAuthSubject::parse(TlsSubjectKind::SanUri, &client_uri(id))
                    .map_err(|error| invalid("tls_client_auth_san_uri", error.to_string()))?,
            ),
            None => None,
        };
        let client = NewClient {
            id,
            tenant_id: tenant.id,
            name: checked.name,
            confidential: checked.auth_method != ClientAuthMethod::None,
            grant_types: checked.grant_types,
            scopes: checked.scopes,
            redirect_uris: checked.redirect_uris,
            auth_method: checked.auth_method,
            jwks: checked.jwks,
            tls_client_auth_subject,
            access_token_ttl_seconds: checked.access_token_ttl.whole_seconds(),
            created_at: audit.at,
            limits,
            created_by: Some(audit.actor.clone()),
        };
        let record = self
            .store()
            .create_client(&client, first_secret.as_ref(), audit)
            .await
            .map_err(|error| client_error(client.id, error))?;
        Ok(IssuedClient { record, secret })
    }

    /// Lists a tenant's clients, newest first.
    pub async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>, ManageError> {
        let tenant = self.tenant(tenant).await?;
        self.store()
            .list_clients(tenant.id)
            .await
            .map_err(ManageError::Store)
    }

    /// Finds one client by id, revoked ones included.
    pub async fn client(&self, id: ClientId) -> Result<ClientRecord, ManageError> {
        self.store()
            .find_client(id)
            .await
            .map_err(ManageError::Store)?
            .ok_or_else(|| ManageError::NotFound(format!("no client with id {id}")))
    }

    /// Gives a client a new secret. Its older secrets keep working for
    /// `grace`, then expire. Returns the client and the new secret.
    pub async fn rotate_secret(
        &self,
        id: ClientId,
        grace: Duration,
        audit: &AuditContext,
    ) -> Result<(ClientRecord, OpaqueSecret), ManageError> {
        if grace < Duration::ZERO || grace > MAX_ROTATION_GRACE {
            return Err(invalid("grace", "must be between 0s and 7d".to_owned()));
        }
        let client = self.client(id).await?;
        if !uses_secret(client.auth_method) {
            return Err(ManageError::Conflict {
                code: "client_has_no_secret",
                message: format!(
                    "client {id} authenticates with {} and has no secret to rotate",
                    client.auth_method
                ),
            });
        }

        let secret =
            OpaqueSecret::generate(SecretKind::ClientSecret).map_err(|_| ManageError::Random)?;
        let new_secret = NewClientSecret {
            id: Uuid::now_v7(),
            hash: self.pepper().hash(secret.expose().as_bytes()),
            created_at: audit.at,
            expires_at: None,
        };
        self.store()
            .add_client_secret(id, &new_secret, audit.at + grace, audit)
            .await
            .map_err(|error| client_error(id, error))?;
        Ok((client, secret))
    }

    /// Rejects a self-signed client's JWKS when a live self-signed client,
    /// of any tenant, already registered one of its keys. The gateway finds
    /// the client from the certificate's key alone (RFC 8705 §2.2), so a
    /// key shared by two clients identifies neither, and a copy of another
    /// client's public key would lock that client out of its routes.
    async fn check_self_signed_keys_unused(&self, jwks: Option<&str>) -> Result<(), ManageError> {
        let requested = jwks_spki_digests(jwks);
        let registered = self_signed_digests(self.store())
            .await
            .map_err(ManageError::Store)?;
        if requested.is_disjoint(&registered) {
            return Ok(());
        }
        Err(ManageError::Conflict {
            code: "jwks_key_registered",
            message: "a key of this JWKS is already registered by another \
                      self_signed_tls_client_auth client, and a certificate must identify one \
                      client; generate a new key pair for this client"
                .to_owned(),
        })
    }

    /// Replaces a client's registered redirect URIs, each checked by
    /// [`RedirectUri::parse`] exactly as at registration, with exact
    /// repeats dropped. A client with the `authorization_code` grant keeps
    /// at least one. Nodes reload the client within a second, through the
    /// change feed.
    pub async fn update_redirect_uris(
        &self,
        id: ClientId,
        redirect_uris: &[String],
        audit: &AuditContext,
    ) -> Result<ClientRecord, ManageError> {
        let checked = check_redirect_uris(redirect_uris)?;
        let client = self.client(id).await?;
        if client.allows_grant(GrantType::AuthorizationCode) && checked.is_empty() {
            return Err(invalid(
                "redirect_uris",
                "the authorization_code grant needs at least one redirect URI".to_owned(),
            ));
        }
        self.store()
            .update_client_redirect_uris(id, &checked, audit)
            .await
            .map_err(|error| client_error(id, error))
    }

    /// Replaces a client's rate limits and plan. Nodes apply the change
    /// within a second, through the change feed.
    pub async fn update_client_limits(
        &self,
        id: ClientId,
        limits: RateLimits,
        audit: &AuditContext,
    ) -> Result<ClientRecord, ManageError> {
        let limits = self.check_rate_limits(limits)?;
        self.store()
            .update_client_limits(id, &limits, audit)
            .await
            .map_err(|error| client_error(id, error))
    }

    /// Revokes a client at once, with every token issued to it.
    pub async fn revoke_client(
        &self,
        id: ClientId,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<ClientRecord, ManageError> {
        if let Some(reason) = reason {
            check_label("reason", reason).map_err(|error| invalid("reason", error.to_string()))?;
        }
        self.store()
            .revoke_client(id, reason, audit)
            .await
            .map_err(|error| client_error(id, error))
    }
}

/// Whether a client that authenticates with `method` is issued a secret.
fn uses_secret(method: ClientAuthMethod) -> bool {
    matches!(
        method,
        ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost
    )
}

/// A [`ClientRequest`] whose fields passed every check.
struct CheckedClient {
    tenant: String,
    name: String,
    grant_types: Vec<GrantType>,
    scopes: ScopeSet,
    redirect_uris: Vec<RedirectUri>,
    auth_method: ClientAuthMethod,
    jwks: Option<String>,
    tls_subject: Option<TlsClientAuthSubject>,
    access_token_ttl: Duration,
}

fn check_request(request: ClientRequest) -> Result<CheckedClient, ManageError> {
    check_client_name(&request.name)?;

    let grant_types: Vec<GrantType> = request
        .grant_types
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if grant_types.is_empty() {
        return Err(invalid(
            "grant_types",
            "at least one grant type is required".to_owned(),
        ));
    }
    if request.scopes.is_empty() {
        return Err(invalid(
            "scopes",
            "at least one scope is required".to_owned(),
        ));
    }

    let auth_method = auth_method(request.public, request.auth_method)?;
    if auth_method == ClientAuthMethod::None && grant_types.contains(&GrantType::ClientCredentials)
    {
        return Err(invalid(
            "grant_types",
            "a public client cannot use client_credentials, because it has no credentials to \
             authenticate with"
                .to_owned(),
        ));
    }

    let redirect_uris = check_redirect_uris(&request.redirect_uris)?;
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(invalid(
            "redirect_uris",
            "the authorization_code grant needs at least one redirect URI".to_owned(),
        ));
    }

    let uses_jwks = matches!(
        auth_method,
        ClientAuthMethod::PrivateKeyJwt | ClientAuthMethod::SelfSignedTlsClientAuth
    );
    match (&request.jwks, uses_jwks) {
        (Some(jwks), true) => {
            check_jwks(jwks).map_err(|error| invalid("jwks", error.to_string()))?;
        }
        (None, true) => {
            return Err(invalid(
                "jwks",
                format!("{auth_method} needs the client's JWKS with its public keys"),
            ));
        }
        (Some(_), false) => {
            return Err(invalid(
                "jwks",
                "a JWKS is used only with private_key_jwt and self_signed_tls_client_auth"
                    .to_owned(),
            ));
        }
        (None, false) => {}
    }
    let tls_subject = check_tls_subjects(auth_method, &request.tls_subjects)?;

    let access_token_ttl = request.access_token_ttl.unwrap_or(DEFAULT_ACCESS_TOKEN_TTL);
    if !(MIN_ACCESS_TOKEN_TTL..=MAX_ACCESS_TOKEN_TTL).contains(&access_token_ttl) {
        return Err(invalid(
            "access_token_ttl",
            "must be between 1m and 1h".to_owned(),
        ));
    }

    Ok(CheckedClient {
        tenant: request.tenant,
        name: request.name,
        grant_types,
        scopes: request.scopes,
        redirect_uris,
        auth_method,
        jwks: request.jwks,
        tls_subject,
        access_token_ttl,
    })
}

/// Checks the certificate subject of a `tls_client_auth` client: at most
/// one, and only with that method (RFC 8705 §2.1.2).
fn check_tls_subjects(
    auth_method: ClientAuthMethod,
    subjects: &[(TlsSubjectKind, String)],
) -> Result<Option<TlsClientAuthSubject>, ManageError> {
    let [(kind, value)] = subjects else {
        if subjects.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = subjects.iter().map(|(kind, _)| kind.as_str()).collect();
        return Err(invalid(
            "tls_client_auth_subject",
            format!(
                "a client registers exactly one certificate subject, but {} were given: {}",
                names.len(),
                names.join(", ")
            ),
        ));
    };
    if auth_method != ClientAuthMethod::TlsClientAuth {
        return Err(invalid(
            kind.as_str(),
            format!("{kind} is used only with tls_client_auth, not with {auth_method}"),
        ));
    }
    let subject = TlsClientAuthSubject::parse(*kind, value)
        .map_err(|error| invalid(kind.as_str(), error.to_string()))?;
    // A new client has no id yet, so a URI of the internal CA's namespace
    // names another client. A partner CA that wrote it into a leaf would
    // then impersonate that client wherever the mapping is trusted.
    if let TlsClientAuthSubject::SanUri(uri) = &subject
        && in_client_uri_namespace(uri)
    {
        return Err(invalid(
            kind.as_str(),
            format!(
                "{kind} {uri:?} is in the {CLIENT_URI_PREFIX} namespace, which the internal CA \
                 reserves for the clients it issues certificates to; give no certificate subject \
                 to have the server map the new client to its own {CLIENT_URI_PREFIX}<client id> \
                 URI, or give the subject that the partner CA's certificates carry"
            ),
        ));
    }
    Ok(Some(subject))
}

/// Checks a client name: not blank, and a one-line name as
/// [`check_name`] defines it, because the consent page and the CLI show it.
fn check_client_name(name: &str) -> Result<(), ManageError> {
    if name.trim().is_empty() {
        return Err(invalid("name", "a client name is required".to_owned()));
    }
    check_name("client name", name).map_err(|error| invalid("name", error.to_string()))
}

/// Resolves the authentication method from `--public` and the requested
/// method.
fn auth_method(
    public: bool,
    requested: Option<ClientAuthMethod>,
) -> Result<ClientAuthMethod, ManageError> {
    match (public, requested) {
        (true, None | Some(ClientAuthMethod::None)) => Ok(ClientAuthMethod::None),
        (true, Some(other)) => Err(invalid(
            "auth_method",
            format!("a public client authenticates with none, not {other}"),
        )),
        (false, None) => Ok(ClientAuthMethod::ClientSecretBasic),
        (false, Some(ClientAuthMethod::None)) => Err(invalid(
            "auth_method",
            "auth method none is for public clients; register the client as public".to_owned(),
        )),
        (false, Some(method)) => Ok(method),
    }
}

/// Most redirect URIs one client may register. Each authorization request
/// compares its `redirect_uri` with every registered one, and an
/// application needs one per environment and platform, not hundreds.
pub const MAX_REDIRECT_URIS: usize = 20;

/// Parses each redirect URI, naming the first one rejected, and drops exact
/// repeats.
fn check_redirect_uris(uris: &[String]) -> Result<Vec<RedirectUri>, ManageError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid(
            "redirect_uris",
            format!(
                "{} redirect URIs given; a client may register at most {MAX_REDIRECT_URIS}",
                uris.len()
            ),
        ));
    }
    let mut checked: Vec<RedirectUri> = Vec::with_capacity(uris.len());
    for uri in uris {
        let parsed = RedirectUri::parse(uri)
            .map_err(|error| invalid("redirect_uris", format!("{uri:?}: {error}")))?;
        if !checked.contains(&parsed) {
            checked.push(parsed);
        }
    }
    Ok(checked)
}

fn invalid(field: &'static str, message: String) -> ManageError {
    ManageError::Invalid { field, message }
}

fn client_error(id: ClientId, error: StoreError) -> ManageError {
    match error {
        StoreError::NotFound("tenant") => ManageError::NotFound("tenant not found".to_owned()),
        StoreError::NotFound(_) => ManageError::NotFound(format!("no client with id {id}")),
        StoreError::Revoked(_) => ManageError::Conflict {
            code: "client_revoked",
            message: format!("client {id} is revoked"),
        },
        StoreError::Invalid(rule) => invalid("client", rule.to_owned()),
        StoreError::Conflict(message) => ManageError::Conflict {
            code: "client_exists",
            message,
        },
        other => ManageError::Store(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec_key() -> Value {
        serde_json::json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": EC_X, "y": EC_Y})
    }

    fn rsa_key(modulus_bytes: usize) -> Value {
        let mut modulus = vec![0xC5_u8; modulus_bytes];
        if let Some(last) = modulus.last_mut() {
            *last = 0x01;
        }
        serde_json::json!({
            "kty": "RSA",
            "kid": "r1",
            "n": URL_SAFE_NO_PAD.encode(&modulus),
            "e": "AQAB",
        })
    }

    fn set(keys: &[Value]) -> String {
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn jwks_accepts_public_keys() {
        let okp = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "o1", "use": "sig",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        });
        assert_eq!(check_jwks(&set(&[ec_key(), rsa_key(256), okp])), Ok(()));
    }

    #[test]
    fn jwks_private_members_named() {
        for member in PRIVATE_MEMBERS {
            let mut key = ec_key();
            key[member] = Value::from("c2VjcmV0");
            let error = check_jwks(&set(&[rsa_key(256), key.clone()])).unwrap_err();
            assert_eq!(error, JwksError::PrivateMember { index: 1, member });
            let message = error.to_string();
            assert!(message.contains(&format!("\"{member}\"")), "{message}");
            assert!(message.contains("keys[1]"), "{message}");
            assert!(!message.contains("c2VjcmV0"), "{message}");

            // A key without a kid is held to the same rule.
            key.as_object_mut().unwrap().remove("kid");
            let error = check_jwks(&set(&[key])).unwrap_err();
            assert_eq!(error, JwksError::PrivateMember { index: 0, member });
        }
    }

    #[test]
    fn jwks_symmetric_key_rejected() {
        let key = serde_json::json!({"kty": "oct", "kid": "s"});
        assert_eq!(
            check_jwks(&set(&[key])),
            Err(JwksError::Symmetric { index: 0 })
        );
    }

    #[test]
    fn jwks_short_rsa_rejected() {
        assert_eq!(
            check_jwks(&set(&[rsa_key(128)])),
            Err(JwksError::RsaTooShort {
                index: 0,
                bits: 1024
            })
        );
    }

    #[test]
    fn jwks_wrong_curves_rejected() {
        let mut ec = ec_key();
        ec["crv"] = Value::from("P-384");
        assert!(matches!(
            check_jwks(&set(&[ec])),
            Err(JwksError::Curve { index: 0, .. })
        ));
        let okp = serde_json::json!({"kty": "OKP", "crv": "X25519", "kid": "o", "x": EC_X});
        assert!(matches!(
            check_jwks(&set(&[okp])),
            Err(JwksError::Curve { index: 0, .. })
        ));
    }

    #[test]
    fn jwks_shape_errors() {
        assert!(matches!(check_jwks("{"), Err(JwksError::Json(_))));
        assert_eq!(check_jwks("[]"), Err(JwksError::Shape));
        assert_eq!(check_jwks(r#"{"keys": {}}"#), Err(JwksError::Shape));
        assert_eq!(check_jwks(r#"{"keys": []}"#), Err(JwksError::Empty));
        assert_eq!(
            check_jwks(r#"{"keys": [1]}"#),
            Err(JwksError::NotObject { index: 0 })
        );
        let many: Vec<Value> = (0..=MAX_JWKS_KEYS).map(|_| ec_key()).collect();
        assert_eq!(
            check_jwks(&set(&many)),
            Err(JwksError::TooMany(MAX_JWKS_KEYS + 1))
        );
    }

    #[test]
    fn jwks_member_errors() {
        let mut no_kid = ec_key();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_eq!(check_jwks(&set(&[no_kid.clone(), no_kid.clone()])), Ok(()));
        assert_eq!(check_jwks(&set(&[ec_key(), no_kid])), Ok(()));
        for kid in [Value::from(""), Value::from(7), Value::Null] {
            let mut bad_kid = ec_key();
            bad_kid["kid"] = kid.clone();
            assert_eq!(
                check_jwks(&set(&[bad_kid])),
                Err(JwksError::InvalidKid { index: 0 }),
                "{kid}"
            );
        }

        let mut short_x = ec_key();
        short_x["x"] = Value::from("AAAA");
        assert_eq!(
            check_jwks(&set(&[short_x])),
            Err(JwksError::Encoding {
                index: 0,
                member: "x"
            })
        );

        let mut encryption = ec_key();
        encryption["use"] = Value::from("enc");
        assert!(matches!(
            check_jwks(&set(&[encryption])),
            Err(JwksError::Use { index: 0, .. })
        ));

        let unknown = serde_json::json!({"kty": "DSA", "kid": "d"});
        assert!(matches!(
            check_jwks(&set(&[unknown])),
            Err(JwksError::KeyType { index: 0, .. })
        ));
        assert_eq!(
            check_jwks(&set(&[ec_key(), ec_key()])),
            Err(JwksError::DuplicateKid { index: 1 })
        );
    }

    #[test]
    fn modulus_bits_ignores_leading_zeros() {
        assert_eq!(modulus_bits(&[]), 0);
        assert_eq!(modulus_bits(&[0, 0]), 0);
        assert_eq!(modulus_bits(&[0, 0x01]), 1);
        assert_eq!(modulus_bits(&[0x80, 0]), 16);
        assert_eq!(modulus_bits(&[0, 0x7F, 0xFF]), 15);
    }

    fn request() -> ClientRequest {
        ClientRequest {
            tenant: "acme".to_owned(),
            name: "Billing app".to_owned(),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: ScopeSet::parse_list("orders:read").unwrap(),
            redirect_uris: vec!["https://app.example.com/callback".to_owned()],
            public: false,
            auth_method: None,
            jwks: None,
            tls_subjects: Vec::new(),
            access_token_ttl: None,
            limits: RateLimits::default(),
        }
    }

    fn rejected_field(request: ClientRequest) -> (&'static str, String) {
        match check_request(request) {
            Err(ManageError::Invalid { field, message }) => (field, message),
            other => panic!("expected an invalid field, got {:?}", other.err()),
        }
    }

    #[test]
    fn request_defaults_resolved() {
        let checked = check_request(request()).unwrap();
        assert_eq!(checked.auth_method, ClientAuthMethod::ClientSecretBasic);
        assert_eq!(checked.access_token_ttl, DEFAULT_ACCESS_TOKEN_TTL);
        let public = check_request(ClientRequest {
            public: true,
            ..request()
        })
        .unwrap();
        assert_eq!(public.auth_method, ClientAuthMethod::None);
    }

    #[test]
    fn request_redirect_patterns_rejected() {
        for uri in ["https://app.example.com*", "https://*.example.com/cb"] {
            let (field, message) = rejected_field(ClientRequest {
                redirect_uris: vec![uri.to_owned()],
                ..request()
            });
            assert_eq!(field, "redirect_uris");
            assert!(message.contains(uri), "{message}");
        }
    }

    #[test]
    fn request_rule_violations_rejected() {
        let cases = [
            (
                ClientRequest {
                    public: true,
                    grant_types: vec![GrantType::ClientCredentials],
                    ..request()
                },
                "grant_types",
            ),
            (
                ClientRequest {
                    redirect_uris: Vec::new(),
                    ..request()
                },
                "redirect_uris",
            ),
            (
                ClientRequest {
                    redirect_uris: (0..=MAX_REDIRECT_URIS)
                        .map(|port| format!("http://127.0.0.1:{}/callback", 8000 + port))
                        .collect(),
                    ..request()
                },
                "redirect_uris",
            ),
            (
                ClientRequest {
                    auth_method: Some(ClientAuthMethod::PrivateKeyJwt),
                    ..request()
                },
                "jwks",
            ),
            (
                ClientRequest {
                    jwks: Some(set(&[ec_key()])),
                    ..request()
                },
                "jwks",
            ),
            (
                ClientRequest {
                    access_token_ttl: Some(Duration::seconds(59)),
                    ..request()
                },
                "access_token_ttl",
            ),
            (
                ClientRequest {
                    access_token_ttl: Some(Duration::minutes(61)),
                    ..request()
                },
                "access_token_ttl",
            ),
            (
                ClientRequest {
                    name: "line\nbreak".to_owned(),
                    ..request()
                },
                "name",
            ),
            (
                ClientRequest {
                    name: "  ".to_owned(),
                    ..request()
                },
                "name",
            ),
            (
                ClientRequest {
                    public: true,
                    auth_method: Some(ClientAuthMethod::ClientSecretPost),
                    ..request()
                },
                "auth_method",
            ),
            (
                ClientRequest {
                    grant_types: Vec::new(),
                    ..request()
                },
                "grant_types",
            ),
        ];
        for (request, expected) in cases {
            let (field, message) = rejected_field(request);
            assert_eq!(field, expected, "{message}");
        }
    }

    #[test]
    fn request_ttl_bounds_accepted() {
        for ttl in [MIN_ACCESS_TOKEN_TTL, MAX_ACCESS_TOKEN_TTL] {
            let checked = check_request(ClientRequest {
                access_token_ttl: Some(ttl),
                ..request()
            })
            .unwrap();
            assert_eq!(checked.access_token_ttl, ttl);
        }
    }

    fn tls_request(subjects: &[(TlsSubjectKind, &str)]) -> ClientRequest {
        ClientRequest {
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: Vec::new(),
            auth_method: Some(ClientAuthMethod::TlsClientAuth),
            tls_subjects: subjects
                .iter()
                .map(|(kind, value)| (*kind, (*value).to_owned()))
                .collect(),
            ..request()
        }
    }

    #[test]
    fn tls_subject_checked() {
        let checked =
            check_request(tls_request(&[(TlsSubjectKind::SanDns, "Svc.Example.com")])).unwrap();
        assert_eq!(
            checked.tls_subject,
            Some(TlsClientAuthSubject::SanDns("svc.example.com".to_owned()))
        );
        let without = check_request(tls_request(&[])).unwrap();
        assert_eq!(without.tls_subject, None);
    }

    #[test]
    fn tls_subject_combinations_rejected() {
        let (field, message) = rejected_field(tls_request(&[
            (TlsSubjectKind::SanDns, "svc.example.com"),
            (TlsSubjectKind::SanUri, "urn:acme:svc"),
        ]));
        assert_eq!(field, "tls_client_auth_subject");
        assert!(message.contains("tls_client_auth_san_uri"), "{message}");

        let (field, message) = rejected_field(ClientRequest {
            auth_method: Some(ClientAuthMethod::ClientSecretBasic),
            ..tls_request(&[(TlsSubjectKind::SanDns, "svc.example.com")])
        });
        assert_eq!(field, "tls_client_auth_san_dns");
        assert!(message.contains("client_secret_basic"), "{message}");

        let (field, message) =
            rejected_field(tls_request(&[(TlsSubjectKind::SubjectDn, "not a dn")]));
        assert_eq!(field, "tls_client_auth_subject_dn");
        assert!(message.contains("RFC 4514"), "{message}");

        let (field, _) = rejected_field(tls_request(&[(TlsSubjectKind::SanIp, "10.0.0.300")]));
        assert_eq!(field, "tls_client_auth_san_ip");
    }

    #[test]
    fn self_signed_needs_public_jwks() {
        let self_signed = |jwks: Option<String>| ClientRequest {
            grant_types: vec![GrantType::ClientCredentials],
            redirect_uris: Vec::new(),
            auth_method: Some(ClientAuthMethod::SelfSignedTlsClientAuth),
            jwks,
            ..request()
        };
        assert!(check_request(self_signed(Some(set(&[ec_key()])))).is_ok());
        let (field, message) = rejected_field(self_signed(None));
        assert_eq!(field, "jwks");
        assert!(message.contains("self_signed_tls_client_auth"), "{message}");
        let mut private = ec_key();
        private["d"] = Value::from("c2VjcmV0");
        let (field, _) = rejected_field(self_signed(Some(set(&[private]))));
        assert_eq!(field, "jwks");
        let (field, _) = rejected_field(ClientRequest {
            jwks: Some(set(&[ec_key()])),
            ..tls_request(&[])
        });
        assert_eq!(field, "jwks");
    }
}
