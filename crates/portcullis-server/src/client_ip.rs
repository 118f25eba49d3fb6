//! The one resolver of a request's client address.
//!
//! `X-Forwarded-For` or `Forwarded` is believed only when the direct peer
//! is a proxy the operator named (RFC 7239 §5.2); anyone else can write
//! them. Behind trusted proxies the client is the rightmost address that is
//! not itself a trusted proxy, because each proxy appends the address it
//! saw and only the part written by trusted proxies can be relied on.
//!
//! A trusted proxy may hide the client: `Forwarded: for=unknown` or an
//! obfuscated identifier such as `for=_hidden` (RFC 7239 §6.2 and §6.3),
//! or any other node that is not an address. Such a node is where the
//! known chain ends, so the request is counted under the address of the
//! trusted proxy that wrote the node, the nearest address that is known.
//! Every client that proxy hides then shares one brute-force and rate
//! bucket, so an operator should have it pass real addresses. An address
//! with an obfuscated port (`for="192.0.2.1:_port"`) still names its client.
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
        // Walk from the right: skip our own trusted hops, stop at the first
        // address a trusted proxy vouched for that is not one of them.
        let mut writer = peer;
        for node in forwarded_chain(headers, self.header).into_iter().rev() {
            match node {
                Some(address) if self.contains(address) => writer = address,
                Some(address) => return address,
                None => {
                    tracing::debug!(
                        proxy = %writer,
                        "a trusted proxy hid the client address; counting the request under the proxy's address"
                    );
                    return writer;
                }
            }
        }
        peer
    }
}

/// Nodes listed in `X-Forwarded-For` or in `Forwarded: for=`, in order:
/// the address, or `None` for a node that names no address (`unknown`, an
/// obfuscated identifier, a missing `for=`, text that does not parse).
fn forwarded_chain(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
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
    chain
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
    if port.parse::<u16>().is_err() && !is_obfuscated_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Returns whether `port` is an obfuscated port of RFC 7239 §6.3: `_` followed by
/// letters, digits, `.`, `_` or `-`.
fn is_obfuscated_port(port: &str) -> bool {
    port.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    })
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

    /// `unknown`, an obfuscated identifier and a missing `for=` end the
    /// known chain, and the request counts under the trusted proxy that
    /// wrote that node: the peer, or the trusted hop to the node's right.
    #[test]
    fn hidden_client_counts_under_writer() {
        let proxies = TrustedProxies::new(vec![
            "127.0.0.2/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ])
        .with_header(ForwardedHeader::Forwarded);
        let peer = ip("127.0.0.2");
        for (value, client) in [
            ("for=unknown", "127.0.0.2"),
            ("for=_hidden", "127.0.0.2"),
            ("for=\"_x.Y-z\";proto=https", "127.0.0.2"),
            ("proto=https", "127.0.0.2"),
            ("for=198.51.100.7, for=unknown", "127.0.0.2"),
            ("for=unknown, for=10.1.2.3", "10.1.2.3"),
            ("for=_hidden, for=10.1.2.3, for=10.4.5.6", "10.1.2.3"),
            (
                "for=unknown, for=198.51.100.7, for=10.1.2.3",
                "198.51.100.7",
            ),
        ] {
            assert_eq!(
                proxies.client_ip(peer, &with("forwarded", value)),
                ip(client),
                "{value}"
            );
        }
    }

    /// An obfuscated port (RFC 7239 §6.3) hides the port, not the client.
    #[test]
    fn obfuscated_port_keeps_address() {
        let proxies = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()])
            .with_header(ForwardedHeader::Forwarded);
        let peer = ip("127.0.0.2");
        for (value, client) in [
            ("for=\"198.51.100.7:_abc\"", "198.51.100.7"),
            ("for=\"[2001:db8::7]:_p-1\"", "2001:db8::7"),
            ("for=\"198.51.100.7:_\"", "127.0.0.2"),
            ("for=\"198.51.100.7:_a b\"", "127.0.0.2"),
        ] {
            assert_eq!(
                proxies.client_ip(peer, &with("forwarded", value)),
                ip(client),
                "{value}"
            );
        }
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
