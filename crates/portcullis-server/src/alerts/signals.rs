//! The in-memory counters that the request path feeds and the rules read.
//!
//! Recording is a map update under a short lock and never touches the
//! store. The evaluator takes the whole batch once per tick. Each map is
//! bounded: past [`MAX_SUBJECTS`] subjects in one tick, new subjects are
//! counted as dropped, so a flood of random addresses cannot exhaust
//! memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use portcullis_core::ids::{ClientId, KeyId, TenantId};

use crate::usage::{FailedAuthentication, lock};

/// Maximum subjects (keys, credentials, addresses) kept per map between
/// two ticks.
pub const MAX_SUBJECTS: usize = 10_000;

/// Maximum distinct OAuth clients kept per client address between two
/// ticks, for the tenant of a source failure alert. An address that names
/// more is taken to concern several tenants.
pub const MAX_CLIENTS_PER_SOURCE: usize = 8;

/// Maximum distinct client addresses kept per key between two ticks. The
/// first ones of a tick are checked, and the others wait for a later tick
/// in which they recur.
pub const MAX_ADDRESSES_PER_KEY: usize = 16;

/// Counters of one tick, fed by the request path.
#[derive(Default)]
pub struct AlertSignals {
    enabled: AtomicBool,
    pending: Mutex<Signals>,
    dropped: AtomicU64,
}

/// The counters of one tick.
#[derive(Debug, Default)]
pub struct Signals {
    /// Successful uses per key.
    pub uses: HashMap<KeyId, KeyUses>,
    /// Failures that named a key or OAuth client, by credential id.
    pub credential_failures: HashMap<String, CredentialFailures>,
    /// Failures per client address.
    pub source_failures: HashMap<IpAddr, SourceFailures>,
    /// Presentations of revoked or expired keys.
    pub revoked_keys: HashMap<KeyId, RevokedKeyUse>,
}

/// Successful uses of one key in one tick.
#[derive(Debug, Default)]
pub struct KeyUses {
    /// The number of uses.
    pub count: u64,
    /// The distinct client addresses, at most [`MAX_ADDRESSES_PER_KEY`].
    pub addresses: Vec<IpAddr>,
}

/// Failures against one credential in one tick.
#[derive(Debug, Default)]
pub struct CredentialFailures {
    /// The number of failures.
    pub count: u64,
    /// The credential's tenant, when known.
    pub tenant_id: Option<TenantId>,
    /// The OAuth client, when the credential is one. Its tenant is looked
    /// up before the rules run, off the request path.
    pub client_id: Option<ClientId>,
}

/// Failures from one client address in one tick.
#[derive(Debug, Default)]
pub struct SourceFailures {
    /// The number of failures.
    pub count: u64,
    /// The tenants of the credentials that the failures named.
    pub tenants: TenantMark,
    /// The OAuth clients named, whose tenants are looked up before the
    /// rules run. At most [`MAX_CLIENTS_PER_SOURCE`].
    pub clients: Vec<ClientId>,
}

/// The tenants that a set of failures concerned, as far as a single tenant
/// can be named: none, exactly one, or several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TenantMark {
    /// No failure named a credential of a known tenant.
    #[default]
    Unknown,
    /// Every failure that named a credential of a known tenant named one
    /// of this tenant's.
    One(TenantId),
    /// The failures named credentials of several tenants, or more clients
    /// than could be looked up.
    Several,
}

impl TenantMark {
    /// Adds a failure that concerned `tenant_id`.
    pub fn add(&mut self, tenant_id: TenantId) {
        *self = match *self {
            Self::Unknown => Self::One(tenant_id),
            Self::One(seen) if seen == tenant_id => Self::One(seen),
            Self::One(_) | Self::Several => Self::Several,
        };
    }

    /// Adds the failures of another mark.
    pub fn merge(&mut self, other: Self) {
        match other {
            Self::Unknown => {}
            Self::One(tenant_id) => self.add(tenant_id),
            Self::Several => *self = Self::Several,
        }
    }

    /// Returns the tenant when exactly one was concerned.
    pub const fn single(self) -> Option<TenantId> {
        match self {
            Self::One(tenant_id) => Some(tenant_id),
            Self::Unknown | Self::Several => None,
        }
    }
}

/// Presentations of one revoked or expired key in one tick.
#[derive(Debug)]
pub struct RevokedKeyUse {
    /// The number of presentations.
    pub count: u64,
    /// The key's tenant.
    pub tenant_id: Option<TenantId>,
    /// `revoked` or `expired`.
    pub code: &'static str,
    /// The client address of the latest presentation.
    pub address: IpAddr,
    /// The surface of the latest presentation (`gateway`, `verify`, …).
    pub surface: &'static str,
}

impl AlertSignals {
    /// Starts counting. Until then every record is ignored, so a server
    /// without the rules keeps nothing.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Counts one successful use of `key_id` from `client_ip`.
    pub fn record_use(&self, key_id: KeyId, client_ip: IpAddr) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut pending = lock(&self.pending);
        let full = pending.uses.len() >= MAX_SUBJECTS;
        let Some(uses) = entry_within(&mut pending.uses, key_id, full) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        uses.count += 1;
        if uses.addresses.len() < MAX_ADDRESSES_PER_KEY && !uses.addresses.contains(&client_ip) {
            uses.addresses.push(client_ip);
        }
    }

    /// Counts one failed authentication.
    pub fn record_failure(&self, failure: &FailedAuthentication) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut pending = lock(&self.pending);
        let mut dropped = 0;

        let full = pending.source_failures.len() >= MAX_SUBJECTS;
        match entry_within(&mut pending.source_failures, failure.client_ip, full) {
            Some(source) => count_source_failure(source, failure),
            None => dropped += 1,
        }

        let credential = failure
            .key_id
            .map(|id| id.to_string())
            .or_else(|| failure.client_id.map(|id| id.to_string()));
        if let Some(credential) = credential {
            let full = pending.credential_failures.len() >= MAX_SUBJECTS;
            match entry_within(&mut pending.credential_failures, credential, full) {
                Some(failures) => {
                    failures.count += 1;
                    failures.tenant_id = failures.tenant_id.or(failure.tenant_id);
                    failures.client_id = failures.client_id.or(failure.client_id);
                }
                None => dropped += 1,
            }
        }

        let revoked_code = matches!(failure.code, "revoked" | "expired");
        if let (Some(key_id), true) = (failure.key_id, revoked_code) {
            let full = pending.revoked_keys.len() >= MAX_SUBJECTS;
            if full && !pending.revoked_keys.contains_key(&key_id) {
                dropped += 1;
            } else {
                let entry = pending.revoked_keys.entry(key_id).or_insert(RevokedKeyUse {
                    count: 0,
                    tenant_id: failure.tenant_id,
                    code: failure.code,
                    address: failure.client_ip,
                    surface: failure.surface,
                });
                entry.count += 1;
                entry.code = failure.code;
                entry.address = failure.client_ip;
                entry.surface = failure.surface;
            }
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// Takes everything counted since the last call, and the number of
    /// records dropped because a map was full.
    pub fn take(&self) -> (Signals, u64) {
        let signals = std::mem::take(&mut *lock(&self.pending));
        (signals, self.dropped.swap(0, Ordering::Relaxed))
    }
}

/// Counts one failure from a client address, with the tenant or OAuth
/// client that it named.
fn count_source_failure(source: &mut SourceFailures, failure: &FailedAuthentication) {
    source.count += 1;
    match (failure.tenant_id, failure.client_id) {
        (Some(tenant_id), _) => source.tenants.add(tenant_id),
        (None, Some(client_id)) if source.clients.contains(&client_id) => {}
        (None, Some(client_id)) if source.clients.len() < MAX_CLIENTS_PER_SOURCE => {
            source.clients.push(client_id);
        }
        (None, Some(_)) => source.tenants = TenantMark::Several,
        (None, None) => {}
    }
}

/// Returns the entry of `key`, inserting a default one unless the map is
/// `full`.
fn entry_within<K, V>(map: &mut HashMap<K, V>, key: K, full: bool) -> Option<&mut V>
where
    K: std::hash::Hash + Eq,
    V: Default,
{
    if full && !map.contains_key(&key) {
        return None;
    }
    Some(map.entry(key).or_default())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use time::OffsetDateTime;

    use super::*;

    fn failure(code: &'static str, key_id: Option<KeyId>, ip: IpAddr) -> FailedAuthentication {
        FailedAuthentication {
            at: OffsetDateTime::UNIX_EPOCH,
            client_ip: ip,
            code,
            key_id,
            tenant_id: None,
            visible_prefix: None,
            client_id: None,
            token_id: None,
            surface: "gateway",
            certificate_serial: None,
            certificate_issuer: None,
        }
    }

    #[test]
    fn disabled_signals_keep_nothing() {
        let signals = AlertSignals::default();
        signals.record_use(KeyId::generate(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (taken, dropped) = signals.take();
        assert!(taken.uses.is_empty());
        assert_eq!(dropped, 0);
    }

    #[test]
    fn failures_counted_per_subject() {
        let signals = AlertSignals::default();
        signals.enable();
        let key = KeyId::generate();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        signals.record_failure(&failure("revoked", Some(key), ip));
        signals.record_failure(&failure("revoked", Some(key), ip));
        signals.record_failure(&failure("not_found", None, ip));
        let (taken, _) = signals.take();
        assert_eq!(taken.source_failures[&ip].count, 3);
        assert_eq!(taken.credential_failures[&key.to_string()].count, 2);
        assert_eq!(taken.revoked_keys[&key].count, 2);
        assert!(signals.take().0.source_failures.is_empty(), "take empties");
    }

    #[test]
    fn addresses_per_key_bounded() {
        let signals = AlertSignals::default();
        signals.enable();
        let key = KeyId::generate();
        for last in 0..40u8 {
            signals.record_use(key, IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)));
        }
        let (taken, _) = signals.take();
        assert_eq!(taken.uses[&key].count, 40);
        assert_eq!(taken.uses[&key].addresses.len(), MAX_ADDRESSES_PER_KEY);
    }

    #[test]
    fn subjects_bounded() {
        let signals = AlertSignals::default();
        signals.enable();
        for index in 0..=MAX_SUBJECTS {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from(u128::try_from(index).unwrap()));
            signals.record_failure(&failure("not_found", None, ip));
        }
        let (taken, dropped) = signals.take();
        assert_eq!(taken.source_failures.len(), MAX_SUBJECTS);
        assert_eq!(dropped, 1);
    }
}
