//! OAuth 2.0 domain types: grant types, client authentication methods,
//! user roles, redirect URIs, e-mail addresses, PKCE and the stored records
//! of clients, users, codes and tokens.
//!
//! - [`redirect`]: [`RedirectUri`], its registration rules and matching.
//! - [`email`]: [`Email`], the checked address a user signs in with.
//! - [`pkce`]: PKCE verifier and challenge checks (RFC 7636), S256 only.
//! - [`tls_subject`]: the certificate subject a `tls_client_auth` client
//!   registers (RFC 8705 §2.1.2), and distinguished names.
//!
//! The records contain no secret. Client secrets, authorization codes and
//! refresh tokens are [`crate::key::OpaqueSecret`]s, stored only as keyed
//! hashes ([`SecretHash`]).

pub mod email;
pub mod pkce;
pub mod redirect;
pub mod tls_subject;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::credential::RateLimits;
use crate::crypto::SecretHash;
use crate::ids::{ClientId, TenantId, TokenFamilyId, UserId};
use crate::name::TenantName;
use crate::scope::ScopeSet;

pub use self::email::{Email, EmailError};
pub use self::pkce::PkceError;
pub use self::redirect::{RedirectUri, RedirectUriError};
pub use self::tls_subject::{TlsClientAuthSubject, TlsSubjectError, TlsSubjectKind};

/// The error of parsing an unknown grant type, authentication method or
/// role name. It names the value and the accepted names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of {expected}")]
pub struct UnknownName {
    /// What was parsed, such as "grant type".
    pub kind: &'static str,
    /// The value that was given.
    pub value: String,
    /// The accepted names, comma-separated.
    pub expected: String,
}

/// Defines a fieldless enum whose variants have fixed wire names, with
/// `as_str`, `Display`, `FromStr` and serde under those names.
macro_rules! named_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $kind:literal {
            $($(#[$variant_doc:meta])* $variant:ident => $text:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$variant_doc])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The standard name, as sent on the wire and stored.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            /// Parses the exact, case-sensitive standard name.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    other => Err(UnknownName {
                        kind: $kind,
                        value: other.to_owned(),
                        expected: Self::ALL
                            .iter()
                            .map(|name| name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    };
}

named_enum!(
    /// An OAuth grant type that a client may use, named as in RFC 6749.
    GrantType, "grant type" {
        /// The authorization code grant (RFC 6749 §4.1), with PKCE.
        AuthorizationCode => "authorization_code",
        /// The client credentials grant (RFC 6749 §4.4).
        ClientCredentials => "client_credentials",
        /// The refresh token grant (RFC 6749 §6).
        RefreshToken => "refresh_token",
    }
);

named_enum!(
    /// A client's authentication method at the token endpoint, named as in
    /// RFC 7591 §2 (`token_endpoint_auth_method`).
    ClientAuthMethod, "client authentication method" {
        /// The secret in HTTP Basic authentication (RFC 6749 §2.3.1).
        ClientSecretBasic => "client_secret_basic",
        /// The secret in the form body (RFC 6749 §2.3.1).
        ClientSecretPost => "client_secret_post",
        /// A JWT signed with a key of the client's registered JWKS
        /// (RFC 7523 §2.2).
        PrivateKeyJwt => "private_key_jwt",
        /// No authentication: a public client (RFC 6749 §2.1).
        None => "none",
        /// A client certificate from a trusted CA whose subject matches the
        /// registered one (RFC 8705 §2.1).
        TlsClientAuth => "tls_client_auth",
        /// A self-signed client certificate whose public key is in the
        /// client's registered JWKS (RFC 8705 §2.2).
        SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
    }
);

impl ClientAuthMethod {
    /// Returns whether the client authenticates with its TLS client
    /// certificate (RFC 8705 §2), so its access tokens are bound to it.
    pub const fn uses_certificate(self) -> bool {
        matches!(self, Self::TlsClientAuth | Self::SelfSignedTlsClientAuth)
    }
}

named_enum!(
    /// A user's permissions in the tenant's dashboard.
    Role, "role" {
        /// Manages the tenant's users, clients and keys.
        Admin => "admin",
        /// Manages the tenant's clients and keys.
        Developer => "developer",
        /// Reads only.
        Viewer => "viewer",
    }
);

/// A registered OAuth client. It contains no secret, because its secrets
/// are [`ClientSecretRecord`]s, which contain only keyed hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client's id, sent as `client_id`.
    pub id: ClientId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The owning tenant's name.
    pub tenant: TenantName,
    /// A display name, shown on the consent page.
    pub name: String,
    /// Whether the client can keep a secret (RFC 6749 §2.1). A public
    /// client authenticates with [`ClientAuthMethod::None`].
    pub confidential: bool,
    /// The grant types the client may use.
    pub grant_types: Vec<GrantType>,
    /// The maximum set of scopes that any token of the client may grant.
    pub scopes: ScopeSet,
    /// The registered redirect URIs, compared by [`RedirectUri::matches`].
    pub redirect_uris: Vec<RedirectUri>,
    /// The one way the client authenticates at the token endpoint.
    pub auth_method: ClientAuthMethod,
    /// The client's public JWKS as JSON text, for `private_key_jwt` and
    /// `self_signed_tls_client_auth`. The server validates it when it is
    /// registered.
    pub jwks: Option<String>,
    /// The certificate subject of a `tls_client_auth` client; `None` for
    /// every other method.
    pub tls_client_auth_subject: Option<TlsClientAuthSubject>,
    /// Lifetime of the client's access tokens, in seconds.
    pub access_token_ttl_seconds: i64,
    /// When the client was registered.
    pub created_at: OffsetDateTime,
    /// When the client was revoked; a revoked client gets no token.
    pub revoked_at: Option<OffsetDateTime>,
    /// The client's own rate limits and plan, which apply to every request
    /// its tokens or its certificate make at the gateway.
    #[serde(default)]
    pub limits: RateLimits,
    /// The audit actor that registered the client (`cli`,
    /// `operator-key:<uuid>` or `user:<uuid>`); `None` for clients
    /// registered before this was recorded.
    #[serde(default)]
    pub created_by: Option<String>,
}

impl ClientRecord {
    /// Whether the client may use `grant_type`.
    pub fn allows_grant(&self, grant_type: GrantType) -> bool {
        self.grant_types.contains(&grant_type)
    }

    /// The registered redirect URI that `presented` matches, if any.
    pub fn redirect_uri_for(&self, presented: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|uri| uri.matches(presented))
    }
}

/// One secret of a confidential client, as its keyed hash. A client has two
/// live secrets while a rotation's grace period runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSecretRecord {
    /// The secret's id, safe to show and log.
    pub id: Uuid,
    /// The client the secret belongs to.
    pub client_id: ClientId,
    /// The keyed hash of the whole secret.
    pub hash: SecretHash,
    /// When the secret was created.
    pub created_at: OffsetDateTime,
    /// When the secret stops working; `None` means never. A rotation sets
    /// it on the older secrets to the end of the grace period.
    pub expires_at: Option<OffsetDateTime>,
}

impl ClientSecretRecord {
    /// Whether the secret is accepted at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }
}

/// An end user of a tenant, who signs in and grants consent.
///
/// `Debug` omits the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user's id.
    pub id: UserId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The owning tenant's name.
    pub tenant: TenantName,
    /// The sign-in address, unique within the tenant.
    pub email: Email,
    /// The Argon2id hash of the password, as a PHC string.
    pub password_hash: String,
    /// What the user may do in the dashboard.
    pub role: Role,
    /// When the user was created.
    pub created_at: OffsetDateTime,
    /// When the user was disabled; a disabled user cannot sign in.
    pub disabled_at: Option<OffsetDateTime>,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// An issued authorization code, as its keyed hash, with everything the
/// token request must match (RFC 6749 §4.1.3, RFC 7636 §4.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationCodeRecord {
    /// The keyed hash of the whole code.
    pub hash: SecretHash,
    /// The client the code was issued to.
    pub client_id: ClientId,
    /// The user who approved it.
    pub user_id: UserId,
    /// The redirect URI of the authorization request, exactly as sent, which
    /// the token request must repeat.
    pub redirect_uri: String,
    /// The S256 PKCE challenge of the authorization request.
    pub code_challenge: String,
    /// The granted scopes.
    pub scopes: ScopeSet,
    /// The `resource` of the authorization request (RFC 8707), if any.
    pub resource: Option<String>,
    /// The family that every token issued from this code joins.
    pub family_id: TokenFamilyId,
    /// When the code was issued.
    pub created_at: OffsetDateTime,
    /// When the code stops working.
    pub expires_at: OffsetDateTime,
    /// When the code was redeemed; a code is single-use.
    pub used_at: Option<OffsetDateTime>,
}

/// An issued refresh token, as its keyed hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// The keyed hash of the whole token.
    pub hash: SecretHash,
    /// The family of the grant the token descends from.
    pub family_id: TokenFamilyId,
    /// The client the token was issued to; only that client may use it.
    pub client_id: ClientId,
    /// The user who approved the grant; `None` for a client acting for
    /// itself.
    pub user_id: Option<UserId>,
    /// The granted scopes; a refresh may narrow them, never widen them.
    pub scopes: ScopeSet,
    /// The resource (RFC 8707) the grant was made for, if any.
    pub resource: Option<String>,
    /// When the token was issued.
    pub created_at: OffsetDateTime,
    /// When the token stops working.
    pub expires_at: OffsetDateTime,
    /// When the token was exchanged for its successor; a refresh token is
    /// single-use (RFC 9700 §4.14.2).
    pub used_at: Option<OffsetDateTime>,
    /// When the token was revoked, alone or with its family.
    pub revoked_at: Option<OffsetDateTime>,
}

impl RefreshTokenRecord {
    /// Whether the token could still be exchanged at `now`: not used, not
    /// revoked and not expired.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && now < self.expires_at
    }
}

/// An issued access token, one row per JWT, written when it is issued so
/// that a replayed code, a revoked family or a revoked client can revoke
/// it. Never written per API request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTokenRecord {
    /// The JWT's `jti` claim.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: ClientId,
    /// The family of the grant, for tokens issued from a code or a refresh
    /// token; `None` for client credentials.
    pub family_id: Option<TokenFamilyId>,
    /// The JWT's `exp`: after it, the token needs no deny-list entry.
    pub expires_at: OffsetDateTime,
    /// The `x5t#S256` confirmation of a certificate-bound token (RFC 8705
    /// §3.1): the base64url SHA-256 of the client certificate's DER.
    pub certificate_thumbprint: Option<String>,
    /// When the token was revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A user's remembered consent to a client for a set of scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    /// The user who consented.
    pub user_id: UserId,
    /// The client the consent is for.
    pub client_id: ClientId,
    /// The approved scopes. A later request for scopes outside this set
    /// needs new consent.
    pub scopes: ScopeSet,
    /// When the consent was last given.
    pub granted_at: OffsetDateTime,
}

impl ConsentRecord {
    /// Whether this consent covers every scope of `requested`.
    pub fn covers(&self, requested: &ScopeSet) -> bool {
        requested
            .iter()
            .all(|scope| self.scopes.iter().any(|held| held == scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_type_names_round_trip() {
        for grant_type in GrantType::ALL {
            assert_eq!(grant_type.as_str().parse(), Ok(*grant_type));
        }
        assert_eq!(GrantType::AuthorizationCode.as_str(), "authorization_code");
        assert_eq!(GrantType::ClientCredentials.as_str(), "client_credentials");
        assert_eq!(GrantType::RefreshToken.as_str(), "refresh_token");
        assert!("password".parse::<GrantType>().is_err());
        assert!("Authorization_Code".parse::<GrantType>().is_err());
    }

    #[test]
    fn auth_method_names_round_trip() {
        for method in ClientAuthMethod::ALL {
            assert_eq!(method.as_str().parse(), Ok(*method));
        }
        assert_eq!(ClientAuthMethod::None.as_str(), "none");
        assert_eq!(ClientAuthMethod::PrivateKeyJwt.as_str(), "private_key_jwt");
        let error = "client_secret_jwt".parse::<ClientAuthMethod>().unwrap_err();
        assert!(error.to_string().contains("client_secret_jwt"), "{error}");
        assert!(error.to_string().contains("private_key_jwt"), "{error}");
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse(), Ok(*role));
        }
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn consent_covers_only_its_scopes() {
        let consent = ConsentRecord {
            user_id: UserId::generate(),
            client_id: ClientId::generate(),
            scopes: ScopeSet::parse_list("orders:read orders:write").unwrap(),
            granted_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(consent.covers(&ScopeSet::parse_list("orders:read").unwrap()));
        assert!(consent.covers(&ScopeSet::default()));
        assert!(!consent.covers(&ScopeSet::parse_list("orders:read invoices:read").unwrap()));
    }

    #[test]
    fn secret_liveness_follows_expiry() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let mut secret = ClientSecretRecord {
            id: Uuid::now_v7(),
            client_id: ClientId::generate(),
            hash: crate::crypto::MasterKey::generate()
                .unwrap()
                .derive_pepper()
                .hash(b"s"),
            created_at: now,
            expires_at: None,
        };
        assert!(secret.is_live(now));
        secret.expires_at = Some(now);
        assert!(!secret.is_live(now));
    }
}
