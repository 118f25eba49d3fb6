//! Key policy of the dashboard: the role rules for keys and OAuth clients,
//! and the scopes and lifetimes that the operator lets dashboard users
//! choose.

use portcullis_core::credential::ApiKeyRecord;
use portcullis_core::oauth::{ClientRecord, Role, UserRecord};
use portcullis_core::scope::{Scope, ScopeSet};

use crate::config::Config;

/// Seconds in a day: the dashboard offers key lifetimes in whole days.
const DAY_SECONDS: u64 = 24 * 3600;

/// The operator's limits on keys made in the dashboard, and the lifetime
/// of invites, from `[dashboard]`.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    /// The lifetime that the create form proposes, in days.
    pub expiry_default_days: u32,
    /// The maximum lifetime a user may choose, in days.
    pub expiry_max_days: u32,
    /// The scopes a user may grant, each on its own.
    pub grantable: Vec<Scope>,
    /// How long an invite link works.
    pub invite_expiry: time::Duration,
}

impl KeyPolicy {
    /// Builds the policy from the checked configuration. Without
    /// `dashboard.scopes`, the grantable scopes are those that the routes
    /// require, so no dashboard key gets a scope that no route requires.
    pub fn from_config(config: &Config) -> Self {
        let dashboard = &config.dashboard;
        let grantable: Vec<Scope> = match &dashboard.scopes {
            Some(scopes) => scopes.iter().cloned().collect(),
            None => {
                let mut all: Vec<Scope> = config
                    .routes
                    .iter()
                    .flat_map(|route| {
                        route
                            .scopes
                            .by_method
                            .values()
                            .chain(route.scopes.any_method.iter())
                    })
                    .flat_map(ScopeSet::iter)
                    .cloned()
                    .collect();
                all.sort();
                all.dedup();
                all
            }
        };
        Self {
            expiry_default_days: whole_days(dashboard.key_expiry_default),
            expiry_max_days: whole_days(dashboard.key_expiry_max),
            grantable,
            invite_expiry: time::Duration::try_from(dashboard.invite_expiry)
                .unwrap_or(time::Duration::MAX),
        }
    }

    /// Returns whether `scope` is one that dashboard users may grant.
    pub fn may_grant(&self, scope: &str) -> bool {
        self.grantable
            .iter()
            .any(|allowed| allowed.as_str() == scope)
    }
}

/// Converts a lifetime to whole days, at least one. The configuration
/// check rejects lifetimes under a day.
fn whole_days(duration: std::time::Duration) -> u32 {
    u32::try_from(duration.as_secs() / DAY_SECONDS)
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The audit actor of a dashboard user, also stored as a key's creator.
pub(super) fn actor(user: &UserRecord) -> String {
    format!("user:{}", user.id)
}

/// Returns whether `user` may manage the tenant's members and invites:
/// admins only.
pub(super) fn may_manage_members(user: &UserRecord) -> bool {
    user.role == Role::Admin
}

/// Returns whether `user` may create keys: admins and developers.
pub(super) fn may_create(user: &UserRecord) -> bool {
    matches!(user.role, Role::Admin | Role::Developer)
}

/// Returns whether `user` may rotate or revoke `key`: admins any key of
/// their tenant, developers the keys they created. The caller has already
/// checked that the key belongs to the user's tenant.
pub(super) fn may_manage(user: &UserRecord, key: &ApiKeyRecord) -> bool {
    match user.role {
        Role::Admin => true,
        Role::Developer => key.created_by.as_deref() == Some(actor(user).as_str()),
        Role::Viewer => false,
    }
}

/// Returns whether `user` may rotate, revoke or edit `client` and get
/// certificates for it: admins any client of their tenant, developers the
/// clients they registered. The caller has already checked that the client
/// belongs to the user's tenant.
pub(super) fn may_manage_client(user: &UserRecord, client: &ClientRecord) -> bool {
    match user.role {
        Role::Admin => true,
        Role::Developer => client.created_by.as_deref() == Some(actor(user).as_str()),
        Role::Viewer => false,
    }
}
