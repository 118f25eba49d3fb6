//! The route table: which configured route a normalized path belongs to, and
//! the upstream URI a request is forwarded to.

use std::sync::Arc;

use http::Uri;

use crate::config::RouteConfig;
use crate::metrics::RouteLabel;

/// The configured routes, longest prefix first.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<RouteConfig>,
    /// The metric label of each route, in the order of `routes`, built once
    /// so that labelling a request allocates nothing.
    labels: Vec<RouteLabel>,
}

impl RouteTable {
    /// Builds the table from the validated configuration.
    pub fn new(mut routes: Vec<RouteConfig>) -> Self {
        routes.sort_by_key(|route| std::cmp::Reverse(route.path_prefix.len()));
        let labels = routes
            .iter()
            .map(|route| RouteLabel::Gateway(Arc::from(route.path_prefix.as_str())))
            .collect();
        Self { routes, labels }
    }

    /// Finds the route for a normalized path. A prefix matches only at a
    /// segment boundary, so `/orders` matches `/orders` and `/orders/1` but
    /// not `/ordersadmin`; matching is case-sensitive (RFC 3986 §6.2.2.1).
    pub fn find(&self, path: &str) -> Option<&RouteConfig> {
        self.find_labelled(path).map(|(route, _)| route)
    }

    /// Finds the route for a normalized path as [`Self::find`] does, with
    /// its metric label.
    pub fn find_labelled(&self, path: &str) -> Option<(&RouteConfig, &RouteLabel)> {
        self.routes
            .iter()
            .zip(&self.labels)
            .find(|(route, _)| prefix_matches(&route.path_prefix, path))
    }

    /// The distinct audiences of routes that accept access tokens, the
    /// values a token request's `resource` may name (RFC 8707).
    pub fn audiences(&self) -> Vec<&str> {
        let mut audiences: Vec<&str> = self
            .routes
            .iter()
            .filter_map(|route| route.audience.as_deref())
            .collect();
        audiences.sort_unstable();
        audiences.dedup();
        audiences
    }

    /// Whether any route is configured.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Builds the URI the upstream receives: the upstream's base path, then the
/// normalized request path (less the route prefix with `strip_prefix`), then
/// the query exactly as the client sent it.
pub fn upstream_uri(
    route: &RouteConfig,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, http::Error> {
    let forwarded_path = if route.strip_prefix && route.path_prefix != "/" {
        path.strip_prefix(route.path_prefix.as_str())
            .unwrap_or(path)
    } else {
        path
    };
    let base = route.upstream.path().trim_end_matches('/');
    let mut target = String::with_capacity(base.len() + forwarded_path.len() + 1);
    target.push_str(base);
    if !forwarded_path.starts_with('/') {
        target.push('/');
    }
    target.push_str(forwarded_path);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }

    let authority = match route.upstream.port() {
        Some(port) => format!("{}:{port}", host_for_authority(&route.upstream)),
        None => host_for_authority(&route.upstream),
    };
    Uri::builder()
        .scheme(route.upstream.scheme())
        .authority(authority)
        .path_and_query(target)
        .build()
}

/// The upstream's host as an authority writes it (IPv6 in brackets).
fn host_for_authority(url: &url::Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(address)) => format!("[{address}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_at_segment_boundary() {
        assert!(prefix_matches("/orders", "/orders"));
        assert!(prefix_matches("/orders", "/orders/1"));
        assert!(prefix_matches("/orders", "/orders/"));
        assert!(!prefix_matches("/orders", "/ordersadmin/users"));
        assert!(!prefix_matches("/orders", "/ORDERS/1"));
        assert!(prefix_matches("/", "/anything"));
    }
}
