//! Tenant and key operations, shared by the admin API and the CLI so that
//! both check the same rules and write the same audit records.

use std::collections::BTreeSet;

use portcullis_core::credential::{
    ApiKeyRecord, KeyKind, KeyLimits, RateLimits, check_label, check_name,
};
use portcullis_core::crypto::Pepper;
use portcullis_core::ids::KeyId;
use portcullis_core::key::{Environment, KeySecret};
use portcullis_core::name::TenantName;
use portcullis_core::scope::ScopeSet;
use portcullis_store::{
    AuditContext, AuditQuery, ChainBreak, ChainSummary, ChainedAuditEvent, KeyFilter, NewKey,
    Store, StoreError, Tenant, UsagePoint, UsageQuery,
};
use time::{Duration, OffsetDateTime};

/// Longest rotation grace period: past a week the old key is not being
/// replaced, it is being kept.
pub const MAX_ROTATION_GRACE: Duration = Duration::days(7);

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// An input failed its check; `field` names it as the caller wrote it.
    #[error("{field}: {message}")]
    Invalid {
        /// The input's name (`name`, `scopes`, `expires_in`, …).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// A stable code (`tenant_exists`, `key_revoked`, …).
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// The store failed.
    #[error("store operation failed")]
    Store(#[source] StoreError),
    /// The system random number generator failed.
    #[error("generating a key failed")]
    Random,
}

impl ManageError {
    fn invalid(field: &'static str, message: &impl ToString) -> Self {
        Self::Invalid {
            field,
            message: message.to_string(),
        }
    }
}

/// What a new key should be.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// The owning tenant's name, or `None` for an operator key.
    pub tenant: Option<String>,
    /// The scopes, at least one.
    pub scopes: ScopeSet,
    /// An optional label.
    pub name: Option<String>,
    /// How long the key lives; `None` means until revoked.
    pub expires_in: Option<Duration>,
    /// Live or test.
    pub environment: Environment,
    /// The key's own rate limits and plan.
    pub limits: KeyLimits,
}

/// A freshly created key: its record and the secret, shown once.
#[derive(Debug)]
pub struct IssuedKey {
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The whole key.
    pub secret: KeySecret,
}

/// Tenant and key operations over one store.
#[derive(Clone)]
pub struct Manager {
    store: Store,
    pepper: Pepper,
    plans: PlanNames,
}

/// The plans that keys may name, from the configuration.
#[derive(Clone, Debug)]
pub enum PlanNames {
    /// The names in `[limits.plans]`.
    Known(BTreeSet<String>),
    /// The configuration could not be loaded, for this reason, so no plan
    /// can be checked and none is accepted.
    Unavailable(String),
}

/// Maximum rate limits of one key or client, besides its plan's.
pub const MAX_KEY_RATE_LIMITS: usize = 4;

impl Manager {
    /// Creates a manager writing to `store`, hashing keys with `pepper`.
    /// It accepts no plan until [`Self::with_plans`] names them.
    pub fn new(store: Store, pepper: Pepper) -> Self {
        Self {
            store,
            pepper,
            plans: PlanNames::Known(BTreeSet::new()),
        }
    }

    /// Sets the plans that keys may name.
    pub fn with_plans(mut self, plans: PlanNames) -> Self {
        self.plans = plans;
        self
    }

    /// Checks a key's limits and returns them with each rate in its
    /// canonical form (`100/s`, not `100/s burst 100`).
    pub fn check_key_limits(&self, limits: KeyLimits) -> Result<KeyLimits, ManageError> {
        // A key allowed no use could never authenticate. Such a key is a
        // revoked key, and `keys revoke` records that in the audit log.
        if limits.max_uses.is_some_and(|max| max < 1) {
            return Err(ManageError::invalid(
                "max_uses",
                &"must be 1 or more; revoke the key to stop every use",
            ));
        }
        let checked = self.check_rate_limits(RateLimits {
            rate_limits: limits.rate_limits,
            plan: limits.plan,
        })?;
        Ok(KeyLimits {
            rate_limits: checked.rate_limits,
            plan: checked.plan,
            max_uses: limits.max_uses,
            uses_spent: limits.uses_spent,
        })
    }

    /// Checks the rates and plan of a key or client and returns them with
    /// each rate in its canonical form.
    pub fn check_rate_limits(&self, limits: RateLimits) -> Result<RateLimits, ManageError> {
        if limits.rate_limits.len() > MAX_KEY_RATE_LIMITS {
            return Err(ManageError::invalid(
                "rate_limits",
                &format!(
                    "{} rate limits given, at most {MAX_KEY_RATE_LIMITS}; put more in a plan",
                    limits.rate_limits.len()
                ),
            ));
        }
        let mut rate_limits = Vec::with_capacity(limits.rate_limits.len());
        for text in &limits.rate_limits {
            let rate = text
                .parse::<crate::ratelimit::Rate>()
                .map_err(|error| ManageError::invalid("rate_limits", &error))?;
            rate_limits.push(rate.to_string());
        }
        if let Some(plan) = &limits.plan {
            match &self.plans {
                PlanNames::Known(names) if names.contains(plan) => {}
                PlanNames::Known(names) => {
                    let known: Vec<&str> = names.iter().map(String::as_str).collect();
                    return Err(ManageError::invalid(
                        "plan",
                        &format!(
                            "no plan named {plan:?} in [limits.plans]; configured plans: {}",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
                PlanNames::Unavailable(reason) => {
                    return Err(ManageError::invalid(
                        "plan",
                        &format!("cannot check the plan name: {reason}"),
                    ));
                }
            }
        }
        Ok(RateLimits {
            rate_limits,
            plan: limits.plan,
        })
    }

    /// Replaces a key's rate limits and plan. Nodes apply the change within
    /// a second, through the change feed.
    pub async fn update_key_limits(
        &self,
        id: KeyId,
        limits: KeyLimits,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, ManageError> {
        let limits = self.check_key_limits(limits)?;
        self.store
            .update_key_limits(id, &limits, audit)
            .await
            .map_err(|error| key_error(id, error))
    }

    /// Replaces a key's scopes by a narrower set, each of which a current
    /// scope must grant. Nodes apply the change within a second, through the
    /// change feed, and the audit log records it as `key.scopes_narrowed`.
    ///
    /// Fails with [`ManageError::Invalid`] on `scopes` for an empty set, a
    /// set equal to the current one, or a scope that the key does not
    /// grant, which the message names.
    pub async fn narrow_key_scopes(
        &self,
        id: KeyId,
        scopes: &ScopeSet,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, ManageError> {
        if scopes.is_empty() {
            return Err(ManageError::invalid(
                "scopes",
                &"at least one scope is required; revoke the key to remove them all",
            ));
        }
        let current = self.key(id).await?;
        if let Some(wider) = scopes.iter().find(|scope| !current.scopes.grants(scope)) {
            return Err(ManageError::invalid(
                "scopes",
                &format!(
                    "{wider} is not granted by the key's scopes ({}); narrowing only removes \
                     scopes",
                    current.scopes.to_space_separated()
                ),
            ));
        }
        // The store checks the set again in its transaction, against the
        // key as it is then.
        self.store
            .narrow_key_scopes(id, scopes, audit)
            .await
            .map_err(|error| match error {
                StoreError::Invalid(message) => ManageError::invalid("scopes", &message),
                other => key_error(id, other),
            })
    }

    /// The store, for the client and user operations in their own modules.
    /// Returns the usage series that `query` selects, oldest first,
    /// periods without requests left out.
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsagePoint>, ManageError> {
        self.store
            .usage_series(query)
            .await
            .map_err(ManageError::Store)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The pepper that keys the hashes of issued secrets.
    pub(crate) fn pepper(&self) -> &Pepper {
        &self.pepper
    }

    /// Creates a tenant.
    pub async fn create_tenant(
        &self,
        name: &str,
        audit: &AuditContext,
    ) -> Result<Tenant, ManageError> {
        let name = TenantName::parse(name).map_err(|error| ManageError::invalid("name", &error))?;
        self.store
            .create_tenant(&name, audit)
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => ManageError::Conflict {
                    code: "tenant_exists",
                    message: format!("a tenant named {name} already exists"),
                },
                other => ManageError::Store(other),
            })
    }

    /// Lists all tenants.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, ManageError> {
        self.store.list_tenants().await.map_err(ManageError::Store)
    }

    /// Lists the audit records that `query` selects, in chain order.
    pub async fn audit_records(
        &self,
        query: &AuditQuery,
    ) -> Result<Vec<ChainedAuditEvent>, ManageError> {
        self.store
            .query_audit(query)
            .await
            .map_err(ManageError::Store)
    }

    /// Checks the audit hash chain, and that it still contains
    /// `expected_head` when given, and returns its summary or the first
    /// problem. It only reads.
    pub async fn verify_audit_chain(
        &self,
        expected_head: Option<&portcullis_store::chain::ChainHash>,
    ) -> Result<Result<ChainSummary, ChainBreak>, ManageError> {
        self.store
            .verify_audit_chain(expected_head)
            .await
            .map_err(ManageError::Store)
    }

    /// Seals the audit chain head with its MAC, once, and records the seal
    /// in the chain. See [`portcullis_store::Store::seal_audit_chain`].
    pub async fn seal_audit_chain(
        &self,
        audit: &AuditContext,
    ) -> Result<portcullis_store::SealOutcome, ManageError> {
        self.store
            .seal_audit_chain(audit)
            .await
            .map_err(|error| match error {
                StoreError::Conflict(message) => ManageError::Conflict {
                    code: "audit_chain_sealed",
                    message,
                },
                other => ManageError::Store(other),
            })
    }

    /// Finds a tenant by name.
    pub async fn tenant(&self, name: &str) -> Result<Tenant, ManageError> {
        let name =
            TenantName::parse(name).map_err(|error| ManageError::invalid("tenant", &error))?;
        self.store
            .find_tenant(&name)
            .await
            .map_err(ManageError::Store)?
            .ok_or_else(|| ManageError::NotFound(format!("no tenant named {name}")))
    }

    /// Creates a key and returns its secret, which is not stored.
    pub async fn create_key(
        &self,
        request: KeyRequest,
        audit: &AuditContext,
    ) -> Result<IssuedKey, ManageError> {
        if request.scopes.is_empty() {
            return Err(ManageError::invalid(
                "scopes",
                &"at least one scope is required",
            ));
        }
        if let Some(name) = &request.name {
            check_name("key name", name).map_err(|error| ManageError::invalid("name", &error))?;
        }
        let expires_at = match request.expires_in {
            Some(lifetime) if lifetime <= Duration::ZERO => {
                return Err(ManageError::invalid("expires_in", &"must be above zero"));
            }
            Some(lifetime) => Some(audit.at + lifetime),
            None => None,
        };
        let limits = self.check_key_limits(request.limits)?;
        let (kind, tenant_id) = match &request.tenant {
            Some(tenant) => (KeyKind::Tenant, Some(self.tenant(tenant).await?.id)),
            None => (KeyKind::Operator, None),
        };

        let secret = KeySecret::generate(request.environment).map_err(|_| ManageError::Random)?;
        let new_key = NewKey {
            id: KeyId::generate(),
            kind,
            tenant_id,
            name: request.name,
            environment: request.environment,
            visible_prefix: secret.visible_prefix(),
            hash: self.pepper.hash(secret.expose().as_bytes()),
            scopes: request.scopes,
            created_at: audit.at,
            expires_at,
            limits,
            created_by: Some(audit.actor.clone()),
        };
        let record = self
            .store
            .insert_key(&new_key, audit)
            .await
            .map_err(ManageError::Store)?;
        Ok(IssuedKey { record, secret })
    }

    /// Lists keys: one tenant's, or the operator keys when `tenant` is `None`.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, ManageError> {
        let filter = match tenant {
            Some(name) => KeyFilter::Tenant(self.tenant(name).await?.id),
            None => KeyFilter::Operator,
        };
        self.store
            .list_keys(filter)
            .await
            .map_err(ManageError::Store)
    }

    /// Finds one key by id.
    pub async fn key(&self, id: KeyId) -> Result<ApiKeyRecord, ManageError> {
        self.store
            .find_key(id)
            .await
            .map_err(ManageError::Store)?
            .ok_or_else(|| ManageError::NotFound(format!("no key with id {id}")))
    }

    /// Finds the key whose whole secret is `secret`, by its keyed hash.
    /// `None` when no stored key has that hash.
    pub async fn key_by_secret(
        &self,
        secret: &KeySecret,
    ) -> Result<Option<ApiKeyRecord>, ManageError> {
        let hash = self.pepper.hash(secret.expose().as_bytes());
        self.store
            .find_key_by_hash(&hash)
            .await
            .map_err(ManageError::Store)
    }

    /// Revokes a key at once.
    pub async fn revoke_key(
        &self,
        id: KeyId,
        reason: Option<&str>,
        audit: &AuditContext,
    ) -> Result<ApiKeyRecord, ManageError> {
        if let Some(reason) = reason {
            check_label("reason", reason)
                .map_err(|error| ManageError::invalid("reason", &error))?;
        }
        self.store
            .revoke_key(id, reason, audit)
            .await
            .map_err(|error| key_error(id, error))
    }

    /// Replaces a key with a new one of the same tenant, kind, scopes and
    /// environment. The old key keeps working for `grace`, then expires.
    pub async fn rotate_key(
        &self,
        id: KeyId,
        grace: Duration,
        audit: &AuditContext,
    ) -> Result<(ApiKeyRecord, IssuedKey), ManageError> {
        if grace < Duration::ZERO || grace > MAX_ROTATION_GRACE {
            return Err(ManageError::invalid("grace", &"must be between 0s and 7d"));
        }
        let old = self.key(id).await?;
        if let Some(rejection) = old.rejection(audit.at) {
            return Err(ManageError::Conflict {
                code: "key_not_usable",
                message: format!("key {id} is {} and cannot be rotated", rejection.code()),
            });
        }

        let secret = KeySecret::generate(old.environment).map_err(|_| ManageError::Random)?;
        let new_key = NewKey {
            id: KeyId::generate(),
            kind: old.kind,
            tenant_id: old.tenant_id,
            name: old.name.clone(),
            environment: old.environment,
            visible_prefix: secret.visible_prefix(),
            hash: self.pepper.hash(secret.expose().as_bytes()),
            scopes: old.scopes.clone(),
            created_at: audit.at,
            // The replacement keeps the old key's remaining lifetime.
            expires_at: old.expires_at,
            // and its limits. A usage-limited replacement gets the uses the
            // old key has left now.
            // NOTE: the old key may still spend uses during the grace
            // period, so both together can exceed the original maximum by
            // what the old key spends after the rotation.
            limits: KeyLimits {
                max_uses: old
                    .limits
                    .max_uses
                    .map(|max| (max - old.limits.uses_spent).max(0)),
                uses_spent: 0,
                ..old.limits.clone()
            },
            // The replacement stays with the key's creator, so a developer
            // keeps managing a key that an admin rotated.
            created_by: old.created_by.clone(),
        };
        let grace_ends = audit.at + grace;
        let (old, new) = self
            .store
            .rotate_key(id, &new_key, grace_ends, audit)
            .await
            .map_err(|error| key_error(id, error))?;
        Ok((
            old,
            IssuedKey {
                record: new,
                secret,
            },
        ))
    }
}

fn key_error(id: KeyId, error: StoreError) -> ManageError {
    match error {
        StoreError::NotFound(_) => ManageError::NotFound(format!("no key with id {id}")),
        StoreError::AlreadyRevoked => ManageError::Conflict {
            code: "key_revoked",
            message: format!("key {id} is already revoked"),
        },
        StoreError::AlreadyRotated => ManageError::Conflict {
            code: "key_rotated",
            message: format!("key {id} was already rotated"),
        },
        StoreError::Expired => ManageError::Conflict {
            code: "key_expired",
            message: format!("key {id} has expired"),
        },
        other => ManageError::Store(other),
    }
}

/// The current time, for audit contexts.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
