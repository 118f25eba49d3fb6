//! Audit records: who changed what, from where and when.
//!
//! Administrative changes write their record in the transaction of the
//! change itself, so a change without its record cannot be committed. The
//! records name keys by id and visible prefix and never hold a secret or a
//! secret's hash.

use std::fmt;
use std::str::FromStr;

use portcullis_core::credential::{ApiKeyRecord, KeyLimits, RateLimits};
use portcullis_core::ids::{AuditId, ClientId, TenantId, TokenFamilyId};
use portcullis_core::oauth::{AccessTokenRecord, ClientRecord, RedirectUri};
use portcullis_core::pki::{CaRecord, CertificateRecord, TrustedCaRecord};
use portcullis_core::scope::ScopeSet;
use portcullis_core::signing::SigningKeyRecord;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::members::{InviteRecord, NewInvite, UserTokensRevoked};
use crate::records::{NewClient, NewClientSecret, NewKey, NewUser, Tenant};
use portcullis_core::oauth::{Role, UserRecord};

/// The actor, client address and time of a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditContext {
    /// The acting principal, such as `cli`, `operator-key:<uuid>` or
    /// `anonymous`.
    pub actor: String,
    /// The client address, when the change came over the network.
    pub remote_addr: Option<String>,
    /// When the change was made. The store also uses it as the time of the
    /// change itself (a tenant's creation, a key's revocation).
    pub at: OffsetDateTime,
}

/// The kind of event that an audit record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A tenant was created.
    TenantCreated,
    /// An API key was created.
    KeyCreated,
    /// An API key was revoked.
    KeyRevoked,
    /// An API key was replaced by a new one.
    KeyRotated,
    /// An API key's rate limits or plan changed.
    KeyLimitsChanged,
    /// An API key's scopes were replaced by a narrower set.
    KeyScopesNarrowed,
    /// A presented credential was rejected.
    AuthFailed,
    /// An OAuth client was registered.
    ClientCreated,
    /// An OAuth client got a new secret; older secrets expire after a grace
    /// period.
    ClientSecretAdded,
    /// An OAuth client was revoked, with its tokens.
    ClientRevoked,
    /// An OAuth client's rate limits or plan changed.
    ClientLimitsChanged,
    /// An OAuth client's registered redirect URIs were replaced.
    ClientRedirectUrisChanged,
    /// A user was created.
    UserCreated,
    /// A user's role changed.
    UserRoleChanged,
    /// A user was disabled: they can no longer sign in, their sessions
    /// ended and their OAuth grants were revoked.
    UserDisabled,
    /// A disabled user was enabled again.
    UserEnabled,
    /// An admin invited an e-mail address into the tenant with a role.
    InviteCreated,
    /// An admin revoked a pending invite.
    InviteRevoked,
    /// Every token of one grant was revoked: on request, or because a code
    /// or refresh token was used twice.
    TokenFamilyRevoked,
    /// One access token was revoked.
    AccessTokenRevoked,
    /// A token-signing key was created.
    SigningKeyCreated,
    /// A token-signing key started signing, and the previous one retired.
    SigningKeyActivated,
    /// A retired token-signing key was deleted.
    SigningKeyDeleted,
    /// An operator revoked a token-signing key: it left the JWKS at once.
    SigningKeyRevoked,
    /// A user signed in at the authorization endpoint.
    UserSignedIn,
    /// A sign-in at the authorization endpoint failed: unknown e-mail
    /// address, wrong password or a disabled user.
    UserSignInFailed,
    /// A user signed out of the dashboard: one session, or every session
    /// of the user when the details say `"everywhere": true`.
    UserSignedOut,
    /// A user approved a client's access to a set of scopes.
    ConsentGranted,
    /// The internal certificate authority was created.
    CaCreated,
    /// The internal CA issued a client certificate.
    CertificateIssued,
    /// A client certificate was revoked.
    CertificateRevoked,
    /// A partner CA was trusted for a tenant.
    TrustedCaAdded,
    /// The CRL files of a trusted partner CA, or the acknowledgement that
    /// it has none, changed.
    TrustedCaRevocationChanged,
    /// A partner CA stopped being trusted for a tenant.
    TrustedCaRemoved,
    /// A signed leak report named an API key as found in public.
    KeyLeakReported,
    /// A credential authenticated successfully. One record covers one
    /// credential and one minute, with the count of requests.
    AuthSucceeded,
    /// Audit records older than the retention period were deleted.
    AuditPruned,
    /// An operator sealed the chain head with its MAC, after an upgrade or
    /// after the head was found tampered with. The details name the head
    /// found and how many records from before the chain were chained.
    AuditChainSealed,
}

impl AuditAction {
    /// Every action, in the order of the enum, such as for a filter's
    /// choices.
    pub const ALL: [Self; 38] = [
        Self::TenantCreated,
        Self::KeyCreated,
        Self::KeyRevoked,
        Self::KeyRotated,
        Self::KeyLimitsChanged,
        Self::KeyScopesNarrowed,
        Self::AuthFailed,
        Self::ClientCreated,
        Self::ClientSecretAdded,
        Self::ClientRevoked,
        Self::ClientLimitsChanged,
        Self::ClientRedirectUrisChanged,
        Self::UserCreated,
        Self::UserRoleChanged,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::InviteCreated,
        Self::InviteRevoked,
        Self::TokenFamilyRevoked,
        Self::AccessTokenRevoked,
        Self::SigningKeyCreated,
        Self::SigningKeyActivated,
        Self::SigningKeyDeleted,
        Self::SigningKeyRevoked,
        Self::UserSignedIn,
        Self::UserSignInFailed,
        Self::UserSignedOut,
        Self::ConsentGranted,
        Self::CaCreated,
        Self::CertificateIssued,
        Self::CertificateRevoked,
        Self::TrustedCaAdded,
        Self::TrustedCaRevocationChanged,
        Self::TrustedCaRemoved,
        Self::KeyLeakReported,
        Self::AuthSucceeded,
        Self::AuditPruned,
        Self::AuditChainSealed,
    ];

    /// Returns the action's name as stored and printed, such as
    /// `key.revoked`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TenantCreated => "tenant.created",
            Self::KeyCreated => "key.created",
            Self::KeyRevoked => "key.revoked",
            Self::KeyRotated => "key.rotated",
            Self::KeyLimitsChanged => "key.limits_changed",
            Self::KeyScopesNarrowed => "key.scopes_narrowed",
            Self::AuthFailed => "auth.failed",
            Self::ClientCreated => "client.created",
            Self::ClientSecretAdded => "client.secret_added",
            Self::ClientRevoked => "client.revoked",
            Self::ClientLimitsChanged => "client.limits_changed",
            Self::ClientRedirectUrisChanged => "client.redirect_uris_changed",
            Self::UserCreated => "user.created",
            Self::UserRoleChanged => "user.role_changed",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::InviteCreated => "invite.created",
            Self::InviteRevoked => "invite.revoked",
            Self::TokenFamilyRevoked => "token_family.revoked",
            Self::AccessTokenRevoked => "access_token.revoked",
            Self::SigningKeyCreated => "signing_key.created",
            Self::SigningKeyActivated => "signing_key.activated",
            Self::SigningKeyDeleted => "signing_key.deleted",
            Self::SigningKeyRevoked => "signing_key.revoked",
            Self::UserSignedIn => "user.signed_in",
            Self::UserSignInFailed => "user.sign_in_failed",
            Self::UserSignedOut => "user.signed_out",
            Self::ConsentGranted => "consent.granted",
            Self::CaCreated => "ca.created",
            Self::CertificateIssued => "certificate.issued",
            Self::CertificateRevoked => "certificate.revoked",
            Self::TrustedCaAdded => "trusted_ca.added",
            Self::TrustedCaRevocationChanged => "trusted_ca.revocation_changed",
            Self::TrustedCaRemoved => "trusted_ca.removed",
            Self::KeyLeakReported => "key.leak_reported",
            Self::AuthSucceeded => "auth.succeeded",
            Self::AuditPruned => "audit.pruned",
            Self::AuditChainSealed => "audit.chain_sealed",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown audit action name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAuditAction(pub String);

impl FromStr for AuditAction {
    type Err = UnknownAuditAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tenant.created" => Ok(Self::TenantCreated),
            "key.created" => Ok(Self::KeyCreated),
            "key.revoked" => Ok(Self::KeyRevoked),
            "key.rotated" => Ok(Self::KeyRotated),
            "key.limits_changed" => Ok(Self::KeyLimitsChanged),
            "key.scopes_narrowed" => Ok(Self::KeyScopesNarrowed),
            "auth.failed" => Ok(Self::AuthFailed),
            "client.created" => Ok(Self::ClientCreated),
            "client.secret_added" => Ok(Self::ClientSecretAdded),
            "client.revoked" => Ok(Self::ClientRevoked),
            "client.limits_changed" => Ok(Self::ClientLimitsChanged),
            "client.redirect_uris_changed" => Ok(Self::ClientRedirectUrisChanged),
            "user.created" => Ok(Self::UserCreated),
            "user.role_changed" => Ok(Self::UserRoleChanged),
            "user.disabled" => Ok(Self::UserDisabled),
            "user.enabled" => Ok(Self::UserEnabled),
            "invite.created" => Ok(Self::InviteCreated),
            "invite.revoked" => Ok(Self::InviteRevoked),
            "token_family.revoked" => Ok(Self::TokenFamilyRevoked),
            "access_token.revoked" => Ok(Self::AccessTokenRevoked),
            "signing_key.created" => Ok(Self::SigningKeyCreated),
            "signing_key.activated" => Ok(Self::SigningKeyActivated),
            "signing_key.deleted" => Ok(Self::SigningKeyDeleted),
            "signing_key.revoked" => Ok(Self::SigningKeyRevoked),
            "user.signed_in" => Ok(Self::UserSignedIn),
            "user.sign_in_failed" => Ok(Self::UserSignInFailed),
            "user.signed_out" => Ok(Self::UserSignedOut),
            "consent.granted" => Ok(Self::ConsentGranted),
            "ca.created" => Ok(Self::CaCreated),
            "certificate.issued" => Ok(Self::CertificateIssued),
            "certificate.revoked" => Ok(Self::CertificateRevoked),
            "trusted_ca.added" => Ok(Self::TrustedCaAdded),
            "trusted_ca.revocation_changed" => Ok(Self::TrustedCaRevocationChanged),
            "trusted_ca.removed" => Ok(Self::TrustedCaRemoved),
            "key.leak_reported" => Ok(Self::KeyLeakReported),
            "auth.succeeded" => Ok(Self::AuthSucceeded),
            "audit.pruned" => Ok(Self::AuditPruned),
            "audit.chain_sealed" => Ok(Self::AuditChainSealed),
            other => Err(UnknownAuditAction(other.to_owned())),
        }
    }
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The record's id.
    pub id: AuditId,
    /// When the audited thing happened.
    pub at: OffsetDateTime,
    /// The acting principal, as in [`AuditContext::actor`].
    pub actor: String,
    /// What happened.
    pub action: AuditAction,
    /// The tenant concerned, if any.
    pub tenant_id: Option<TenantId>,
    /// The object acted on, such as a key id.
    pub target: Option<String>,
    /// The client address, when known.
    pub remote_addr: Option<String>,
    /// Action-specific facts, such as scopes or a revocation reason. Never a
    /// secret or a secret's hash.
    pub details: Value,
}

/// A selection of audit records for [`crate::Store::list_audit`]. Each
/// filter that is set must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records about this tenant.
    pub tenant_id: Option<TenantId>,
    /// Only records of this action.
    pub action: Option<AuditAction>,
    /// Only records about this object, such as a key id.
    pub target: Option<String>,
    /// The maximum number of records returned, newest first.
    pub limit: i64,
}

/// The maximum time an `auth.succeeded` record covers: its `first_at` and
/// `last_at` details lie within this span from its `at`, the start of the
/// minute it aggregates. Time filters rely on it to bound their search.
pub const AUTH_SUCCEEDED_SPAN: time::Duration = time::Duration::MINUTE;

/// A selection of audit records in chain order, for export and the admin
/// API. Each filter that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records about this tenant.
    pub tenant_id: Option<TenantId>,
    /// Only records by this actor, such as `cli`.
    pub actor: Option<String>,
    /// Only records of this action.
    pub action: Option<AuditAction>,
    /// Only records about this object, such as a key or client id.
    pub target: Option<String>,
    /// Only records at or after this time. An `auth.succeeded` record
    /// matches when its `last_at` is at or after it, so a minute that
    /// starts before `since` and has successes after it is included.
    pub since: Option<OffsetDateTime>,
    /// Only records before this time. An `auth.succeeded` record matches
    /// when its `first_at` is before it.
    pub until: Option<OffsetDateTime>,
    /// Only records with a sequence number above this one: the cursor of
    /// the next page.
    pub after_seq: i64,
    /// The maximum number of records returned, in sequence order.
    pub limit: i64,
}

impl AuditEvent {
    /// Starts a record of `action` by the actor of `context`.
    fn new(context: &AuditContext, action: AuditAction) -> Self {
        Self {
            id: AuditId::generate(),
            at: context.at,
            actor: context.actor.clone(),
            action,
            tenant_id: None,
            target: None,
            remote_addr: context.remote_addr.clone(),
            details: Value::Object(serde_json::Map::new()),
        }
    }

    pub(crate) fn tenant_created(context: &AuditContext, tenant: &Tenant) -> Self {
        Self {
            tenant_id: Some(tenant.id),
            target: Some(tenant.id.to_string()),
            details: json!({ "name": tenant.name.as_str() }),
            ..Self::new(context, AuditAction::TenantCreated)
        }
    }

    pub(crate) fn key_created(context: &AuditContext, key: &NewKey) -> Self {
        Self {
            tenant_id: key.tenant_id,
            target: Some(key.id.to_string()),
            details: json!({
                "kind": key.kind.as_str(),
                "environment": key.environment.as_str(),
                "name": key.name,
                "visible_prefix": key.visible_prefix,
                "scopes": key.scopes.to_space_separated(),
                "expires_at": key.expires_at.and_then(format_time),
                "rate_limits": key.limits.rate_limits,
                "plan": key.limits.plan,
                "max_uses": key.limits.max_uses,
            }),
            ..Self::new(context, AuditAction::KeyCreated)
        }
    }

    /// Records that `key`'s limits changed to `limits`.
    pub(crate) fn key_limits_changed(
        context: &AuditContext,
        key: &ApiKeyRecord,
        limits: &KeyLimits,
    ) -> Self {
        Self {
            tenant_id: key.tenant_id,
            target: Some(key.id.to_string()),
            details: json!({
                "visible_prefix": key.visible_prefix,
                "rate_limits": limits.rate_limits,
                "plan": limits.plan,
                "max_uses": limits.max_uses,
                "previous_rate_limits": key.limits.rate_limits,
                "previous_plan": key.limits.plan,
            }),
            ..Self::new(context, AuditAction::KeyLimitsChanged)
        }
    }

    pub(crate) fn key_scopes_narrowed(
        context: &AuditContext,
        key: &ApiKeyRecord,
        scopes: &ScopeSet,
    ) -> Self {
        Self {
            tenant_id: key.tenant_id,
            target: Some(key.id.to_string()),
            details: json!({
                "visible_prefix": key.visible_prefix,
                "scopes": scopes.to_space_separated(),
                "previous_scopes": key.scopes.to_space_separated(),
            }),
            ..Self::new(context, AuditAction::KeyScopesNarrowed)
        }
    }

    pub(crate) fn key_revoked(
        context: &AuditContext,
        key: &ApiKeyRecord,
        reason: Option<&str>,
    ) -> Self {
        Self {
            tenant_id: key.tenant_id,
            target: Some(key.id.to_string()),
            details: json!({
                "visible_prefix": key.visible_prefix,
                "reason": reason,
            }),
            ..Self::new(context, AuditAction::KeyRevoked)
        }
    }

    /// Records that `old` was replaced by `new` and now expires at
    /// `old_expires_at`.
    pub(crate) fn key_rotated(
        context: &AuditContext,
        old: &ApiKeyRecord,
        new: &NewKey,
        old_expires_at: OffsetDateTime,
    ) -> Self {
        Self {
            tenant_id: old.tenant_id,
            target: Some(old.id.to_string()),
            details: json!({
                "visible_prefix": old.visible_prefix,
                "new_key_id": new.id.to_string(),
                "new_visible_prefix": new.visible_prefix,
                "scopes": new.scopes.to_space_separated(),
                "old_expires_at": format_time(old_expires_at),
                "new_expires_at": new.expires_at.and_then(format_time),
            }),
            ..Self::new(context, AuditAction::KeyRotated)
        }
    }
}

/// The reason every token of a family was revoked, as written in the audit
/// record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyRevocationReason {
    /// A caller revoked the grant, such as through the revocation endpoint.
    Requested,
    /// An authorization code was redeemed a second time.
    CodeReused,
    /// A refresh token was used a second time (RFC 9700 §4.14.2).
    RefreshTokenReused,
}

impl FamilyRevocationReason {
    /// The reason as written in the audit record.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::CodeReused => "authorization_code_reused",
            Self::RefreshTokenReused => "refresh_token_reused",
        }
    }
}

impl AuditEvent {
    pub(crate) fn client_created(
        context: &AuditContext,
        client: &NewClient,
        secret: Option<&NewClientSecret>,
    ) -> Self {
        let grant_types: Vec<&str> = client.grant_types.iter().map(|g| g.as_str()).collect();
        let redirect_uris: Vec<&str> = client.redirect_uris.iter().map(|u| u.as_str()).collect();
        Self {
            tenant_id: Some(client.tenant_id),
            target: Some(client.id.to_string()),
            details: json!({
                "name": client.name,
                "confidential": client.confidential,
                "grant_types": grant_types,
                "scopes": client.scopes.to_space_separated(),
                "redirect_uris": redirect_uris,
                "auth_method": client.auth_method.as_str(),
                "access_token_ttl_seconds": client.access_token_ttl_seconds,
                "secret_id": secret.map(|secret| secret.id.to_string()),
                "rate_limits": client.limits.rate_limits,
                "plan": client.limits.plan,
            }),
            ..Self::new(context, AuditAction::ClientCreated)
        }
    }

    pub(crate) fn client_limits_changed(
        context: &AuditContext,
        client: &ClientRecord,
        limits: &RateLimits,
    ) -> Self {
        Self {
            tenant_id: Some(client.tenant_id),
            target: Some(client.id.to_string()),
            details: json!({
                "name": client.name,
                "rate_limits": limits.rate_limits,
                "plan": limits.plan,
                "previous_rate_limits": client.limits.rate_limits,
                "previous_plan": client.limits.plan,
            }),
            ..Self::new(context, AuditAction::ClientLimitsChanged)
        }
    }

    pub(crate) fn client_redirect_uris_changed(
        context: &AuditContext,
        client: &ClientRecord,
        redirect_uris: &[RedirectUri],
    ) -> Self {
        let uris: Vec<&str> = redirect_uris.iter().map(RedirectUri::as_str).collect();
        let previous: Vec<&str> = client
            .redirect_uris
            .iter()
            .map(RedirectUri::as_str)
            .collect();
        Self {
            tenant_id: Some(client.tenant_id),
            target: Some(client.id.to_string()),
            details: json!({
                "name": client.name,
                "redirect_uris": uris,
                "previous_redirect_uris": previous,
            }),
            ..Self::new(context, AuditAction::ClientRedirectUrisChanged)
        }
    }

    pub(crate) fn client_secret_added(
        context: &AuditContext,
        client: &ClientRecord,
        secret: &NewClientSecret,
        old_expires_at: OffsetDateTime,
    ) -> Self {
        Self {
            tenant_id: Some(client.tenant_id),
            target: Some(client.id.to_string()),
            details: json!({
                "secret_id": secret.id.to_string(),
                "expires_at": secret.expires_at.and_then(format_time),
                "old_expires_at": format_time(old_expires_at),
            }),
            ..Self::new(context, AuditAction::ClientSecretAdded)
        }
    }

    pub(crate) fn client_revoked(
        context: &AuditContext,
        client: &ClientRecord,
        reason: Option<&str>,
        access_tokens: u64,
    ) -> Self {
        Self {
            tenant_id: Some(client.tenant_id),
            target: Some(client.id.to_string()),
            details: json!({
                "name": client.name,
                "reason": reason,
                "access_tokens_revoked": access_tokens,
            }),
            ..Self::new(context, AuditAction::ClientRevoked)
        }
    }

    pub(crate) fn user_created(context: &AuditContext, user: &NewUser) -> Self {
        Self {
            tenant_id: Some(user.tenant_id),
            target: Some(user.id.to_string()),
            details: json!({
                "email": user.email.as_str(),
                "role": user.role.as_str(),
            }),
            ..Self::new(context, AuditAction::UserCreated)
        }
    }

    pub(crate) fn user_role_changed(context: &AuditContext, user: &UserRecord, role: Role) -> Self {
        Self {
            tenant_id: Some(user.tenant_id),
            target: Some(user.id.to_string()),
            details: json!({
                "email": user.email.as_str(),
                "from": user.role.as_str(),
                "to": role.as_str(),
            }),
            ..Self::new(context, AuditAction::UserRoleChanged)
        }
    }

    pub(crate) fn user_disabled(
        context: &AuditContext,
        user: &UserRecord,
        sessions_ended: u64,
        tokens: UserTokensRevoked,
    ) -> Self {
        Self {
            tenant_id: Some(user.tenant_id),
            target: Some(user.id.to_string()),
            details: json!({
                "email": user.email.as_str(),
                "sessions_ended": sessions_ended,
                "access_tokens_revoked": tokens.access_tokens,
                "refresh_tokens_revoked": tokens.refresh_tokens,
                "codes_revoked": tokens.codes,
            }),
            ..Self::new(context, AuditAction::UserDisabled)
        }
    }

    pub(crate) fn user_enabled(context: &AuditContext, user: &UserRecord) -> Self {
        Self {
            tenant_id: Some(user.tenant_id),
            target: Some(user.id.to_string()),
            details: json!({ "email": user.email.as_str() }),
            ..Self::new(context, AuditAction::UserEnabled)
        }
    }

    pub(crate) fn invite_created(context: &AuditContext, invite: &NewInvite) -> Self {
        Self {
            tenant_id: Some(invite.tenant_id),
            target: Some(invite.id.to_string()),
            details: json!({
                "email": invite.email.as_str(),
                "role": invite.role.as_str(),
                "expires_at": format_time(invite.expires_at),
            }),
            ..Self::new(context, AuditAction::InviteCreated)
        }
    }

    pub(crate) fn invite_revoked(context: &AuditContext, invite: &InviteRecord) -> Self {
        Self {
            tenant_id: Some(invite.tenant_id),
            target: Some(invite.id.to_string()),
            details: json!({ "email": invite.email.as_str() }),
            ..Self::new(context, AuditAction::InviteRevoked)
        }
    }

    /// Builds the `user.created` record of a user who accepted `invite`,
    /// naming the invite and the admin who sent it.
    pub(crate) fn user_created_by_invite(
        context: &AuditContext,
        user: &NewUser,
        invite: &InviteRecord,
    ) -> Self {
        let mut event = Self::user_created(context, user);
        event.details = json!({
            "email": user.email.as_str(),
            "role": user.role.as_str(),
            "invite_id": invite.id.to_string(),
            "invited_by": invite.created_by,
        });
        event
    }

    pub(crate) fn token_family_revoked(
        context: &AuditContext,
        family_id: TokenFamilyId,
        client: Option<(ClientId, TenantId)>,
        reason: FamilyRevocationReason,
        access_tokens: u64,
    ) -> Self {
        Self {
            tenant_id: client.map(|(_, tenant_id)| tenant_id),
            target: Some(family_id.to_string()),
            details: json!({
                "client_id": client.map(|(client_id, _)| client_id.to_string()),
                "reason": reason.as_str(),
                "access_tokens_revoked": access_tokens,
            }),
            ..Self::new(context, AuditAction::TokenFamilyRevoked)
        }
    }

    pub(crate) fn access_token_revoked(
        context: &AuditContext,
        token: &AccessTokenRecord,
        tenant_id: Option<TenantId>,
    ) -> Self {
        Self {
            tenant_id,
            target: Some(token.jti.clone()),
            details: json!({
                "client_id": token.client_id.to_string(),
                "family_id": token.family_id.map(|id| id.to_string()),
                "expires_at": format_time(token.expires_at),
            }),
            ..Self::new(context, AuditAction::AccessTokenRevoked)
        }
    }

    pub(crate) fn signing_key_event(
        context: &AuditContext,
        action: AuditAction,
        key: &SigningKeyRecord,
    ) -> Self {
        Self {
            target: Some(key.kid.clone()),
            details: json!({
                "algorithm": key.algorithm.as_str(),
                "state": key.state.as_str(),
                "activates_at": format_time(key.activates_at),
                "publish_until": key.publish_until.and_then(format_time),
            }),
            ..Self::new(context, action)
        }
    }

    /// Builds the record of a signing key's revocation, with the state the
    /// key had before it and the operator's reason.
    pub(crate) fn signing_key_revoked(
        context: &AuditContext,
        key: &SigningKeyRecord,
        reason: &str,
    ) -> Self {
        Self {
            target: Some(key.kid.clone()),
            details: json!({
                "algorithm": key.algorithm.as_str(),
                "previous_state": key.state.as_str(),
                "reason": reason,
            }),
            ..Self::new(context, AuditAction::SigningKeyRevoked)
        }
    }
}

impl AuditEvent {
    pub(crate) fn ca_created(context: &AuditContext, ca: &CaRecord) -> Self {
        Self {
            target: Some(ca.id.to_string()),
            ..Self::new(context, AuditAction::CaCreated)
        }
    }

    pub(crate) fn certificate_issued(context: &AuditContext, cert: &CertificateRecord) -> Self {
        Self {
            tenant_id: Some(cert.tenant_id),
            target: Some(cert.serial.to_string()),
            details: json!({
                "client_id": cert.client_id.to_string(),
                "subject": cert.subject,
                "sha256": cert.sha256,
                "not_before": format_time(cert.not_before),
                "not_after": format_time(cert.not_after),
            }),
            ..Self::new(context, AuditAction::CertificateIssued)
        }
    }

    pub(crate) fn certificate_revoked(
        context: &AuditContext,
        cert: &CertificateRecord,
        reason: &str,
    ) -> Self {
        Self {
            tenant_id: Some(cert.tenant_id),
            target: Some(cert.serial.to_string()),
            details: json!({
                "client_id": cert.client_id.to_string(),
                "sha256": cert.sha256,
                "reason": reason,
            }),
            ..Self::new(context, AuditAction::CertificateRevoked)
        }
    }

    pub(crate) fn trusted_ca_added(context: &AuditContext, ca: &TrustedCaRecord) -> Self {
        Self {
            tenant_id: Some(ca.tenant_id),
            target: Some(ca.id.to_string()),
            details: trusted_ca_details(ca),
            ..Self::new(context, AuditAction::TrustedCaAdded)
        }
    }

    pub(crate) fn trusted_ca_revocation_changed(
        context: &AuditContext,
        ca: &TrustedCaRecord,
    ) -> Self {
        Self {
            tenant_id: Some(ca.tenant_id),
            target: Some(ca.id.to_string()),
            details: trusted_ca_details(ca),
            ..Self::new(context, AuditAction::TrustedCaRevocationChanged)
        }
    }

    pub(crate) fn trusted_ca_removed(context: &AuditContext, ca: &TrustedCaRecord) -> Self {
        Self {
            tenant_id: Some(ca.tenant_id),
            target: Some(ca.id.to_string()),
            details: json!({ "subject": ca.subject, "sha256": ca.sha256 }),
            ..Self::new(context, AuditAction::TrustedCaRemoved)
        }
    }
}

/// Builds the details of a trusted CA's audit record: its certificate and
/// its revocation check.
fn trusted_ca_details(ca: &TrustedCaRecord) -> Value {
    json!({
        "subject": ca.subject,
        "sha256": ca.sha256,
        "crl_files": ca.crl_files,
        "revocation_unchecked": ca.revocation_unchecked,
    })
}

impl AuditEvent {
    /// Records that the records up to `through_seq`, older than `before`,
    /// were deleted. `through_hash` is the hash of record `through_seq`,
    /// from which verification now starts.
    pub(crate) fn audit_pruned(
        context: &AuditContext,
        through_seq: i64,
        through_hash: &crate::chain::ChainHash,
        deleted: u64,
        before: OffsetDateTime,
    ) -> Self {
        Self {
            details: json!({
                "through_seq": through_seq,
                "through_hash": crate::chain::hex(through_hash),
                "deleted": deleted,
                "before": format_time(before),
            }),
            ..Self::new(context, AuditAction::AuditPruned)
        }
    }
}

impl AuditEvent {
    /// Records that the chain head was sealed. `found` is the code of the
    /// head's state before (such as `head_unsealed`), `previous` the head
    /// and checkpoint it held, and `legacy_records` the number of records
    /// from before the chain that were chained just before this record.
    pub(crate) fn audit_chain_sealed(
        context: &AuditContext,
        found: &str,
        previous: &crate::chain::ChainState,
        legacy_records: u64,
    ) -> Self {
        Self {
            details: json!({
                "found": found,
                "previous_head_seq": previous.head_seq,
                "previous_head_hash": crate::chain::hex(&previous.head_hash),
                "previous_checkpoint_seq": previous.checkpoint_seq,
                "legacy_records": legacy_records,
            }),
            ..Self::new(context, AuditAction::AuditChainSealed)
        }
    }
}

/// Formats a time as RFC 3339 for audit details. `None` only for a year
/// outside 0 to 9999, which RFC 3339 cannot write.
fn format_time(at: OffsetDateTime) -> Option<String> {
    at.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for action in AuditAction::ALL {
            assert_eq!(action.as_str().parse::<AuditAction>(), Ok(action));
        }
        assert!("key.deleted".parse::<AuditAction>().is_err());
    }
}
