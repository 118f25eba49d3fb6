//! The [`Store`] methods of a tenant's members: role changes, disabling,
//! sign-in times, and the invites that let an admin add a member.
//!
//! Each change writes its audit record in its own transaction. That
//! transaction also checks that the tenant keeps at least one enabled admin.
//! PostgreSQL locks the tenant's admin rows and SQLite holds its write lock,
//! so two admins demoting each other at once cannot both succeed.

use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{InviteId, TenantId, UserId};
use portcullis_core::name::TenantName;
use portcullis_core::oauth::{Email, Role, UserRecord};
use time::OffsetDateTime;

use crate::Store;
use crate::audit::AuditContext;
use crate::error::StoreError;
use crate::records::NewUser;

/// An invite to create. The caller generates the id and the token, and
/// passes only the token's keyed hash.
#[derive(Clone, Debug)]
pub struct NewInvite {
    /// The invite's id, shown in the dashboard.
    pub id: InviteId,
    /// The tenant the invited user joins.
    pub tenant_id: TenantId,
    /// The address invited, which becomes the user's sign-in address.
    pub email: Email,
    /// The role the user gets.
    pub role: Role,
    /// The keyed hash of the token in the invite link.
    pub token_hash: SecretHash,
    /// The audit actor who sent the invite, such as `user:<uuid>`.
    pub created_by: String,
    /// When the invite was sent.
    pub created_at: OffsetDateTime,
    /// When the link stops working.
    pub expires_at: OffsetDateTime,
}

/// A stored invite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRecord {
    /// The invite's id.
    pub id: InviteId,
    /// The tenant the invited user joins.
    pub tenant_id: TenantId,
    /// The tenant's name.
    pub tenant: TenantName,
    /// The address invited.
    pub email: Email,
    /// The role the user gets.
    pub role: Role,
    /// The keyed hash of the token in the invite link.
    pub token_hash: SecretHash,
    /// The audit actor who sent the invite.
    pub created_by: String,
    /// When the invite was sent.
    pub created_at: OffsetDateTime,
    /// When the link stops working.
    pub expires_at: OffsetDateTime,
    /// When the invite was accepted.
    pub used_at: Option<OffsetDateTime>,
    /// The user that accepting the invite created.
    pub user_id: Option<UserId>,
    /// When an admin revoked the invite.
    pub revoked_at: Option<OffsetDateTime>,
}

impl InviteRecord {
    /// Returns the invite's state at `now`.
    pub fn state(&self, now: OffsetDateTime) -> InviteState {
        if self.used_at.is_some() {
            InviteState::Used
        } else if self.revoked_at.is_some() {
            InviteState::Revoked
        } else if now >= self.expires_at {
            InviteState::Expired
        } else {
            InviteState::Pending
        }
    }
}

/// The state of an invite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteState {
    /// The link works.
    Pending,
    /// The link was used to create a user.
    Used,
    /// An admin revoked the invite.
    Revoked,
    /// The link is past its expiry.
    Expired,
}

/// How many OAuth credentials of a user were revoked when the user was
/// disabled. The `user.disabled` audit record contains these counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserTokensRevoked {
    /// Access tokens revoked before their expiry.
    pub(crate) access_tokens: u64,
    /// Refresh tokens that could still be exchanged.
    pub(crate) refresh_tokens: u64,
    /// Authorization codes not yet exchanged, which were deleted.
    pub(crate) codes: u64,
}

/// The outcome of [`Store::accept_invite`]. Only
/// [`AcceptInvite::Accepted`] changes anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptInvite {
    /// The user was created and the invite is used up.
    Accepted(UserRecord),
    /// No invite has this token hash.
    Unknown,
    /// The invite is no longer pending.
    NotPending(InviteState),
    /// The tenant got a user with the invited address after the invite
    /// was sent.
    EmailTaken,
}

impl Store {
    /// Gives a user another role, with its audit record, and returns the
    /// user. Setting the role a user already has changes nothing and writes
    /// no record.
    ///
    /// Fails with [`StoreError::NotFound`] and, when the user is the
    /// tenant's last enabled admin and `role` is not admin,
    /// [`StoreError::LastAdmin`].
    pub async fn change_user_role(
        &self,
        id: UserId,
        role: Role,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        dispatch!(self, store => store.change_user_role(id, role, audit))
    }

    /// Disables a user, ends every session of theirs and revokes the OAuth
    /// grants they approved (access and refresh tokens, codes not yet
    /// exchanged), in one transaction with its audit record, and returns
    /// the user. A disabled user cannot sign in. Their API keys stay as
    /// they are.
    ///
    /// Fails with [`StoreError::NotFound`], [`StoreError::Revoked`] for a
    /// user disabled before, and [`StoreError::LastAdmin`] for the tenant's
    /// last enabled admin.
    pub async fn disable_user(
        &self,
        id: UserId,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        dispatch!(self, store => store.disable_user(id, audit))
    }

    /// Enables a disabled user again, with its audit record, and returns the
    /// user. They sign in with their old password. The sessions and tokens
    /// that disabling ended stay ended.
    ///
    /// Fails with [`StoreError::NotFound`], and [`StoreError::Conflict`]
    /// for a user who is not disabled.
    pub async fn enable_user(
        &self,
        id: UserId,
        audit: &AuditContext,
    ) -> Result<UserRecord, StoreError> {
        dispatch!(self, store => store.enable_user(id, audit))
    }

    /// Lists when each user of a tenant last signed in, for the users who
    /// did since the time was first recorded.
    pub async fn last_sign_ins(
        &self,
        tenant_id: TenantId,
    ) -> Result<Vec<(UserId, OffsetDateTime)>, StoreError> {
        dispatch!(self, store => store.last_sign_ins(tenant_id))
    }

    /// Stores an invite, with its audit record.
    ///
    /// Fails with [`StoreError::Conflict`] when the tenant already has a
    /// user with the address (the message names it), or has a pending
    /// invite for it, and [`StoreError::NotFound`] when the tenant does not
    /// exist.
    pub async fn create_invite(
        &self,
        invite: &NewInvite,
        audit: &AuditContext,
    ) -> Result<InviteRecord, StoreError> {
        dispatch!(self, store => store.create_invite(invite, audit))
    }

    /// Finds an invite by id.
    pub async fn find_invite(&self, id: InviteId) -> Result<Option<InviteRecord>, StoreError> {
        dispatch!(self, store => store.find_invite(id))
    }

    /// Finds an invite by the keyed hash of its token.
    pub async fn find_invite_by_hash(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<InviteRecord>, StoreError> {
        dispatch!(self, store => store.find_invite_by_hash(hash))
    }

    /// Lists a tenant's invites that are pending at `now`, newest first.
    pub async fn list_pending_invites(
        &self,
        tenant_id: TenantId,
        now: OffsetDateTime,
    ) -> Result<Vec<InviteRecord>, StoreError> {
        dispatch!(self, store => store.list_pending_invites(tenant_id, now))
    }

    /// Revokes a pending invite at `audit.at`, with its audit record.
    ///
    /// Fails with [`StoreError::NotFound`], and [`StoreError::Revoked`]
    /// when the invite is not pending any more.
    pub async fn revoke_invite(
        &self,
        id: InviteId,
        audit: &AuditContext,
    ) -> Result<InviteRecord, StoreError> {
        dispatch!(self, store => store.revoke_invite(id, audit))
    }

    /// Spends the invite with token hash `hash` at `audit.at` and creates
    /// `user` in one step: the invite's tenant, address and role replace
    /// those of `user`. The invite is locked first, so a link used twice at
    /// once creates one user. Writes a `user.created` record that names
    /// the invite.
    pub async fn accept_invite(
        &self,
        hash: &SecretHash,
        user: &NewUser,
        audit: &AuditContext,
    ) -> Result<AcceptInvite, StoreError> {
        dispatch!(self, store => store.accept_invite(hash, user, audit))
    }
}

/// Builds the user that accepting `invite` creates: `user`'s id, password
/// hash and time, with the invite's tenant, address and role.
pub(crate) fn invited_user(user: &NewUser, invite: &InviteRecord) -> NewUser {
    NewUser {
        tenant_id: invite.tenant_id,
        email: invite.email.clone(),
        role: invite.role,
        ..user.clone()
    }
}
