//! The new-network rule: a credential used from a network (an IPv4 /24 or
//! IPv6 /48 by default) that it never used before raises an alert, once
//! its learning period has passed.
//!
//! The networks live in the store, so a restart forgets none, and the
//! store decides which node saw a network first. This module keeps a
//! cache of them so that a known network costs no query, and refreshes a
//! network's last-seen time at most once per [`TOUCH_INTERVAL`].

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use portcullis_core::ids::KeyId;
use portcullis_store::{AlertRule, AlertSeverity, Store, StoreError};
use serde_json::json;
use time::OffsetDateTime;

use super::NewAlert;
use crate::config::NewNetworkRule;

/// How often a known network's last-seen time is written, so that the
/// least recently used network is the one forgotten.
pub const TOUCH_INTERVAL: time::Duration = time::Duration::hours(1);

/// Most credentials whose networks are cached. Past it, the cache starts
/// over and reloads from the store.
const MAX_CACHED_CREDENTIALS: usize = 10_000;

/// The rule and its cache.
pub struct NetworkRule {
    rule: NewNetworkRule,
    known: HashMap<KeyId, KnownNetworks>,
}

/// The networks of one credential.
struct KnownNetworks {
    /// Each network and when this node last wrote its last-seen time.
    touched: HashMap<IpNet, OffsetDateTime>,
    /// The first recorded use of the credential, or `None` before it.
    learning_started: Option<OffsetDateTime>,
}

impl NetworkRule {
    /// Starts with an empty cache.
    pub fn new(rule: NewNetworkRule) -> Self {
        Self {
            rule,
            known: HashMap::new(),
        }
    }

    /// Returns the network of `address` under the configured prefixes.
    pub fn network_of(&self, address: IpAddr) -> IpNet {
        let prefix = match address {
            IpAddr::V4(_) => self.rule.ipv4_prefix,
            IpAddr::V6(_) => self.rule.ipv6_prefix,
        };
        // Prefixes are checked to fit when the configuration loads.
        IpNet::new(address, prefix)
            .map(|network| network.trunc())
            .unwrap_or_else(|_| IpNet::from(address))
    }

    /// Records a use of `key_id` from `address` at `now` and returns an
    /// alert when the network is new to the key and its learning period has
    /// passed.
    pub async fn observe(
        &mut self,
        store: &Store,
        key_id: KeyId,
        address: IpAddr,
        now: OffsetDateTime,
    ) -> Result<Option<NewAlert>, StoreError> {
        let network = self.network_of(address);
        if !self.known.contains_key(&key_id) {
            let loaded = load(store, key_id).await?;
            if self.known.len() >= MAX_CACHED_CREDENTIALS {
                self.known.clear();
            }
            self.known.insert(key_id, loaded);
        }
        let Some(known) = self.known.get_mut(&key_id) else {
            return Ok(None);
        };

        if let Some(touched) = known.touched.get(&network)
            && now - *touched < TOUCH_INTERVAL
        {
            return Ok(None);
        }
        let credential = key_id.to_string();
        let is_new = store
            .record_network(
                &credential,
                &network.to_string(),
                now,
                self.rule.max_networks,
            )
            .await?;
        let known_before = known.touched.len();
        known.touched.insert(network, now);
        // A credential's first recorded use starts its learning period, and
        // its first network is never new.
        let learning_started = known.learning_started;
        known.learning_started.get_or_insert(now);
        if known.touched.len() > usize::try_from(self.rule.max_networks).unwrap_or(usize::MAX) {
            // The store forgot one network; reload to forget the same one.
            self.known.remove(&key_id);
        }
        let Some(learning_started) = learning_started else {
            return Ok(None);
        };

        let learning =
            time::Duration::try_from(self.rule.learning_period).unwrap_or(time::Duration::MAX);
        if !is_new || now - learning_started < learning {
            return Ok(None);
        }
        Ok(Some(NewAlert {
            tenant_id: None,
            credential: Some(credential),
            key_id: Some(key_id),
            rule: AlertRule::NewNetwork,
            severity: AlertSeverity::Warning,
            details: json!({
                "network": network.to_string(),
                "client_ip": address.to_string(),
                "known_networks": known_before,
            }),
        }))
    }
}

async fn load(store: &Store, key_id: KeyId) -> Result<KnownNetworks, StoreError> {
    let stored = store.credential_networks(&key_id.to_string()).await?;
    let learning_started = stored.iter().map(|network| network.first_seen_at).min();
    let touched = stored
        .iter()
        .filter_map(|row| {
            let network = row.network.parse::<IpNet>().ok()?;
            Some((network, row.last_seen_at))
        })
        .collect();
    Ok(KnownNetworks {
        touched,
        learning_started,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn networks_truncated_to_prefix() {
        let rule = NetworkRule::new(NewNetworkRule::default());
        let v4 = rule.network_of(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77)));
        assert_eq!(v4.to_string(), "203.0.113.0/24");
        let v6 = rule.network_of(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0xabcd, 0x12, 0, 0, 0, 1,
        )));
        assert_eq!(v6.to_string(), "2001:db8:abcd::/48");
    }
}
