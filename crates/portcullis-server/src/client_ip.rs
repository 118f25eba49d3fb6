//! The one resolver of a request's client address.
//!
//! `X-Forwarded-For` and `Forwarded` are believed only when the direct peer
//! is a proxy the operator named (RFC 7239 §5.2); anyone else can write
//! them. Behind trusted proxies the client is the rightmost address that is
//! not itself a trusted proxy, because each proxy appends the address it
//! saw and only the part written by trusted proxies can be relied on.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The operator's trusted proxies.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Wraps the configured networks.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client address of a request that arrived from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let mut chain = forwarded_chain(headers);
        // Walk from the right: skip our own trusted hops, stop at the first
        // address a trusted proxy vouched for that is not one of them.
        while let Some(address) = chain.pop() {
            if !self.contains(address) {
                return address;
            }
        }
        peer
    }
}

/// Addresses listed in `X-Forwarded-For`, or else in `Forwarded: for=`, in
/// order. An entry that does not parse ends the chain there, since nothing
/// to its left can be trusted either.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut chain = Vec::new();
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !xff.is_empty() {
        for part in xff.iter().flat_map(|line| line.split(',')) {
            chain.push(parse_forwarded_node(part));
        }
    } else {
        for line in headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for element in line.split(',') {
                let value = element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for").then_some(value)
                });
                chain.push(value.and_then(parse_forwarded_node));
            }
        }
    }
    // Keep only the trailing run of parseable addresses.
    let start = chain
        .iter()
        .rposition(Option::is_none)
        .map_or(0, |index| index + 1);
    chain.into_iter().skip(start).flatten().collect()
}

/// Parses a node of `Forwarded` (RFC 7239 §6) or `X-Forwarded-For`, with
/// or without a port, as proxies write them: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `"[2001:db8::1]:4711"`.
fn parse_forwarded_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Ok(address) = value.parse() {
        return Some(address);
    }
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    // Only IPv4 has a single colon before a port; a bare IPv6 address
    // parsed above.
    let (host, port) = value.split_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Maps IPv4-mapped IPv6 addresses to IPv4, so one client has one form.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn nodes_with_ports_parse() {
        let proxies = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()]);
        let proxy = ip("127.0.0.2");
        for (header, value, client) in [
            ("x-forwarded-for", "5.5.5.7:80", "5.5.5.7"),
            ("x-forwarded-for", "[2001:db8::7]:443", "2001:db8::7"),
            ("x-forwarded-for", "2001:db8::8", "2001:db8::8"),
            ("forwarded", "for=\"[2001:db8::9]:4711\"", "2001:db8::9"),
            ("forwarded", "for=5.5.5.9:8080", "5.5.5.9"),
        ] {
            assert_eq!(
                proxies.client_ip(proxy, &with(header, value)),
                ip(client),
                "{header}: {value}"
            );
        }
        // Neither a port out of range nor a name is an address.
        for value in ["5.5.5.7:99999", "unknown", "host.example:80"] {
            assert_eq!(
                proxies.client_ip(proxy, &with("x-forwarded-for", value)),
                proxy,
                "{value}"
            );
        }
    }

    #[test]
    fn untrusted_peer_headers_ignored() {
        let proxies = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()]);
        let headers = with("x-forwarded-for", "192.0.2.50");
        assert_eq!(
            proxies.client_ip(ip("127.0.0.3"), &headers),
            ip("127.0.0.3")
        );
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted() {
        let proxies = TrustedProxies::new(vec![
            "127.0.0.2/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        let headers = with("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.1.2.3");
        assert_eq!(
            proxies.client_ip(ip("127.0.0.2"), &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_header_read_when_no_xff() {
        let proxies = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()]);
        let headers = with(
            "forwarded",
            "for=198.51.100.7, for=\"[2001:db8::1]:4711\";proto=https",
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.2"), &headers),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn garbage_entry_stops_chain() {
        let proxies = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()]);
        let headers = with("x-forwarded-for", "203.0.113.9, unknown");
        assert_eq!(
            proxies.client_ip(ip("127.0.0.2"), &headers),
            ip("127.0.0.2")
        );
    }
}
