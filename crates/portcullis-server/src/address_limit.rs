//! The cap on open connections per client address
//! (`[server] max_connections_per_address`).
//!
//! Without it, one host that opens slow or idle connections can hold every
//! slot of `max_connections` and lock every other client out. Connections
//! are counted by the socket's peer address, an IPv6 peer by its /64 as in
//! brute-force counting, because a subscriber is usually given a whole /64.
//! A connection over the cap is closed right after `accept`, before its TLS
//! handshake, so it costs no handshake work. Connections from trusted
//! proxies are not counted: every client behind a proxy shares its address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::client_ip::TrustedProxies;

/// Minimum time between two warnings about the same address, so an address
/// that keeps hitting its cap logs once a minute, not once per connection.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Maximum number of addresses whose last warning time is kept. Past it,
/// rejections of further addresses are counted in the metric but not
/// logged, so a flood from many addresses cannot flood the log or grow the
/// map without bound.
const MAX_WARNED_ADDRESSES: usize = 1024;

/// The address under which a connection is counted: an IPv4 address, or
/// the first 64 bits of an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AddressKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl AddressKey {
    fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => Self::V6Prefix((v6.to_bits() >> 64) as u64),
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V4(v4) => write!(formatter, "{v4}"),
            Self::V6Prefix(prefix) => {
                let network = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(formatter, "{network}/64")
            }
        }
    }
}

/// Open connections per client address, with the cap and its exemptions.
pub struct AddressLimit {
    max_per_address: usize,
    exempt: TrustedProxies,
    /// Open connections by address. Only addresses with at least one open
    /// connection have an entry, so the map never has more entries than
    /// the listener has connections.
    open: Mutex<HashMap<AddressKey, usize>>,
    /// When each address was last logged, and how many rejections of it
    /// were not logged since.
    warnings: Mutex<HashMap<AddressKey, (Instant, u64)>>,
}

/// The outcome of [`AddressLimit::admit`].
pub enum Admission {
    /// The peer is a trusted proxy, so its connections are not counted.
    Exempt,
    /// The connection is counted until the slot is dropped.
    Admitted(AddressSlot),
    /// The peer's address already has the maximum of open connections.
    Rejected,
}

/// One counted connection. Dropping it gives the slot back.
pub struct AddressSlot {
    limit: Arc<AddressLimit>,
    key: AddressKey,
}

impl AddressLimit {
    /// Builds a cap of `max_per_address` open connections per address that
    /// does not count connections from `exempt`.
    pub fn new(max_per_address: usize, exempt: TrustedProxies) -> Self {
        Self {
            max_per_address,
            exempt,
            open: Mutex::new(HashMap::new()),
            warnings: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `peer`, or rejects it when its address
    /// is at the cap. A rejection is counted in the metrics and logged at
    /// most once per [`WARNING_INTERVAL`] and address.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Admission {
        if self.exempt.contains(peer) {
            return Admission::Exempt;
        }
        let key = AddressKey::of(peer);
        {
            let mut open = lock(&self.open);
            let count = open.entry(key).or_insert(0);
            if *count < self.max_per_address {
                *count += 1;
                return Admission::Admitted(AddressSlot {
                    limit: Arc::clone(self),
                    key,
                });
            }
        }
        if let Some(metrics) = crate::metrics::get() {
            metrics.record_connection_rejected_per_address();
        }
        self.warn(key);
        Admission::Rejected
    }

    /// Returns the open connections counted for `peer`'s address.
    pub fn open_connections(&self, peer: IpAddr) -> usize {
        lock(&self.open)
            .get(&AddressKey::of(peer))
            .copied()
            .unwrap_or(0)
    }

    fn release(&self, key: AddressKey) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }

    fn warn(&self, key: AddressKey) {
        let now = Instant::now();
        let mut warnings = lock(&self.warnings);
        if let Some((last, suppressed)) = warnings.get_mut(&key) {
            if now.duration_since(*last) < WARNING_INTERVAL {
                *suppressed += 1;
                return;
            }
            let not_logged = *suppressed;
            *last = now;
            *suppressed = 0;
            drop(warnings);
            self.log_rejection(key, not_logged);
            return;
        }
        if warnings.len() >= MAX_WARNED_ADDRESSES {
            warnings.retain(|_, (last, _)| now.duration_since(*last) < WARNING_INTERVAL);
            if warnings.len() >= MAX_WARNED_ADDRESSES {
                return;
            }
        }
        warnings.insert(key, (now, 0));
        drop(warnings);
        self.log_rejection(key, 0);
    }

    fn log_rejection(&self, key: AddressKey, not_logged: u64) {
        warn!(
            address = %key,
            max_connections_per_address = self.max_per_address,
            rejected_since_last_warning = not_logged,
            "connection limit per address reached; closing new connections from this address"
        );
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        self.limit.release(self.key);
    }
}

/// Locks a map of plain counts. A panic elsewhere cannot leave it
/// half-written, so a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: usize, exempt: &[&str]) -> Arc<AddressLimit> {
        let networks = exempt.iter().map(|text| text.parse().unwrap()).collect();
        Arc::new(AddressLimit::new(max, TrustedProxies::new(networks)))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn cap_applies_per_address() {
        let limit = limit(2, &[]);
        let first = limit.admit(ip("192.0.2.1"));
        let second = limit.admit(ip("192.0.2.1"));
        assert!(matches!(first, Admission::Admitted(_)));
        assert!(matches!(second, Admission::Admitted(_)));
        assert!(matches!(limit.admit(ip("192.0.2.1")), Admission::Rejected));
        assert!(matches!(
            limit.admit(ip("192.0.2.2")),
            Admission::Admitted(_)
        ));

        drop(first);
        assert_eq!(limit.open_connections(ip("192.0.2.1")), 1);
        assert!(matches!(
            limit.admit(ip("192.0.2.1")),
            Admission::Admitted(_)
        ));
    }

    #[tokio::test]
    async fn ipv6_counted_by_prefix() {
        let limit = limit(1, &[]);
        let held = limit.admit(ip("2001:db8:1:2::1"));
        assert!(matches!(held, Admission::Admitted(_)));
        let same_prefix = limit.admit(ip("2001:db8:1:2:ffff::9"));
        assert!(matches!(same_prefix, Admission::Rejected));
        let other_prefix = limit.admit(ip("2001:db8:1:3::1"));
        assert!(matches!(other_prefix, Admission::Admitted(_)));
        // The IPv4-mapped form is the IPv4 client.
        let v4 = limit.admit(ip("192.0.2.1"));
        assert!(matches!(v4, Admission::Admitted(_)));
        assert!(matches!(
            limit.admit(ip("::ffff:192.0.2.1")),
            Admission::Rejected
        ));
    }

    #[tokio::test]
    async fn trusted_proxy_not_counted() {
        let limit = limit(1, &["10.0.0.0/8"]);
        for _ in 0..5 {
            assert!(matches!(limit.admit(ip("10.1.2.3")), Admission::Exempt));
        }
        assert_eq!(limit.open_connections(ip("10.1.2.3")), 0);
    }

    #[tokio::test]
    async fn released_addresses_leave_map() {
        let limit = limit(3, &[]);
        let slots: Vec<Admission> = (0..3).map(|_| limit.admit(ip("192.0.2.7"))).collect();
        assert_eq!(limit.open_connections(ip("192.0.2.7")), 3);
        drop(slots);
        assert!(lock(&limit.open).is_empty());
    }

    #[test]
    fn prefix_displayed_as_network() {
        let key = AddressKey::of(ip("2001:db8:1:2:3:4:5:6"));
        assert_eq!(key.to_string(), "2001:db8:1:2::/64");
        assert_eq!(AddressKey::of(ip("192.0.2.9")).to_string(), "192.0.2.9");
    }
}
