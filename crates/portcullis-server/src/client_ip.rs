//! The one resolver of a request's client address.
//!
//! `X-Forwarded-For` or `Forwarded` is believed only when the direct peer
//! is a proxy the operator named (RFC 7239 §5.2); anyone else can write
//! them. Behind trusted proxies the client is the rightmost address that is
//! not itself a trusted proxy, because each proxy appends the address it
//! saw and only the part written by trusted proxies can be relied on.
//!
//! Only the one header the operator's proxies write is read
//! (`server.forwarded_header`): a proxy that appends to `Forwarded` passes
//! a client's own `X-Forwarded-For` on untouched, and reading that one
//! would let the client choose its address.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The header in which trusted proxies pass on the client address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, as nginx, HAProxy and most load balancers write it.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), as Envoy and Traefik can write it.
    Forwarded,
}

impl ForwardedHeader {
    /// Parses the setting's value, `x-forwarded-for` or `forwarded`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("x-forwarded-for") {
            Some(Self::XForwardedFor)
        } else if text.eq_ignore_ascii_case("forwarded") {
            Some(Self::Forwarded)
        } else {
            None
        }
    }
}

/// The operator's trusted proxies.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Wraps the configured networks, which pass the client address in
    /// `X-Forwarded-For`.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self {
            networks,
            header: ForwardedHeader::XForwardedFor,
        }
    }

    /// Reads the client address from `header` instead.
    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client address of a request that arrived from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let mut chain = forwarded_chain(headers, self.header);
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

/// Addresses listed in `X-Forwarded-For` or in `Forwarded: for=`, in
/// order. An entry that does not parse ends the chain there, since nothing
/// to its left can be trusted either.
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<IpAddr> {
    let mut chain = Vec::new();
    if header == ForwardedHeader::XForwardedFor {
        let lines = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        for part in lines.flat_map(|line| line.split(',')) {
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
        let networks = vec!["127.0.0.2/32".parse().unwrap()];
        let by_xff = TrustedProxies::new(networks.clone());
        let by_forwarded = TrustedProxies::new(networks).with_header(ForwardedHeader::Forwarded);
        let proxy = ip("127.0.0.2");
        for (header, value, client) in [
            ("x-forwarded-for", "5.5.5.7:80", "5.5.5.7"),
            ("x-forwarded-for", "[2001:db8::7]:443", "2001:db8::7"),
            ("x-forwarded-for", "2001:db8::8", "2001:db8::8"),
            ("forwarded", "for=\"[2001:db8::9]:4711\"", "2001:db8::9"),
            ("forwarded", "for=5.5.5.9:8080", "5.5.5.9"),
        ] {
            let proxies = if header == "forwarded" {
                &by_forwarded
            } else {
                &by_xff
            };
            assert_eq!(
                proxies.client_ip(proxy, &with(header, value)),
                ip(client),
                "{header}: {value}"
            );
        }
        // Neither a port out of range nor a name is an address.
        for value in ["5.5.5.7:99999", "unknown", "host.example:80"] {
            assert_eq!(
                by_xff.client_ip(proxy, &with("x-forwarded-for", value)),
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
    fn forwarded_header_read_when_chosen() {
        let proxies = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()])
            .with_header(ForwardedHeader::Forwarded);
        let headers = with(
            "forwarded",
            "for=198.51.100.7, for=\"[2001:db8::1]:4711\";proto=https",
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.2"), &headers),
            ip("2001:db8::1")
        );
    }

    /// A proxy that writes one header passes a client's own copy of the
    /// other on untouched, so only the chosen header counts.
    #[test]
    fn other_header_ignored() {
        let mut headers = with("x-forwarded-for", "192.0.2.66");
        headers.insert("forwarded", HeaderValue::from_static("for=198.51.100.7"));
        let networks = vec!["127.0.0.2/32".parse().unwrap()];
        let by_forwarded =
            TrustedProxies::new(networks.clone()).with_header(ForwardedHeader::Forwarded);
        assert_eq!(
            by_forwarded.client_ip(ip("127.0.0.2"), &headers),
            ip("198.51.100.7")
        );
        let by_xff = TrustedProxies::new(networks);
        assert_eq!(
            by_xff.client_ip(ip("127.0.0.2"), &headers),
            ip("192.0.2.66")
        );
        assert_eq!(
            ForwardedHeader::parse("Forwarded"),
            Some(ForwardedHeader::Forwarded)
        );
        assert_eq!(ForwardedHeader::parse("x-real-ip"), None);
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
