//! The label sets of every metric, as typed structs.
//!
//! Each label value is an enum, a `&'static str` from a fixed list, or the
//! prefix of a configured route. So no label can carry a key id, client
//! id, address or raw path, and the number of series stays bounded.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// Defines an enum of label values with its text and its encoding.
macro_rules! label_values {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Returns the label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// The request method: the common methods by name, any other as `OTHER`.
    MethodLabel {
        /// `GET`.
        Get => "GET",
        /// `HEAD`.
        Head => "HEAD",
        /// `POST`.
        Post => "POST",
        /// `PUT`.
        Put => "PUT",
        /// `PATCH`.
        Patch => "PATCH",
        /// `DELETE`.
        Delete => "DELETE",
        /// `OPTIONS`.
        Options => "OPTIONS",
        /// Any other method, including extension methods a client made up.
        Other => "OTHER",
    }
}

impl From<&http::Method> for MethodLabel {
    fn from(method: &http::Method) -> Self {
        match *method {
            http::Method::GET => Self::Get,
            http::Method::HEAD => Self::Head,
            http::Method::POST => Self::Post,
            http::Method::PUT => Self::Put,
            http::Method::PATCH => Self::Patch,
            http::Method::DELETE => Self::Delete,
            http::Method::OPTIONS => Self::Options,
            _ => Self::Other,
        }
    }
}

label_values! {
    /// The class of a response status (RFC 9110 §15).
    StatusClass {
        /// 1xx.
        Informational => "1xx",
        /// 2xx.
        Success => "2xx",
        /// 3xx.
        Redirection => "3xx",
        /// 4xx.
        ClientError => "4xx",
        /// 5xx, and any code above 599.
        ServerError => "5xx",
    }
}

impl From<http::StatusCode> for StatusClass {
    fn from(status: http::StatusCode) -> Self {
        match status.as_u16() {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }
}

label_values! {
    /// The way a request authenticated, or tried to.
    AuthMethodLabel {
        /// No credential was presented, or the endpoint needs none.
        None => "none",
        /// A Portcullis API key.
        ApiKey => "api_key",
        /// A Portcullis access token (a bearer JWT).
        Jwt => "jwt",
        /// A client certificate (RFC 8705).
        Mtls => "mtls",
        /// An OAuth client secret, by Basic or in the form body.
        ClientSecret => "client_secret",
        /// An OAuth client assertion (`private_key_jwt`).
        PrivateKeyJwt => "private_key_jwt",
        /// A user's password, on the sign-in form of `/oauth/authorize` or
        /// the dashboard.
        Password => "password",
    }
}

impl From<crate::config::AuthMethod> for AuthMethodLabel {
    fn from(method: crate::config::AuthMethod) -> Self {
        use crate::config::AuthMethod;
        match method {
            AuthMethod::ApiKey => Self::ApiKey,
            AuthMethod::Jwt => Self::Jwt,
            AuthMethod::Mtls => Self::Mtls,
        }
    }
}

label_values! {
    /// The outcome of an authentication.
    AuthOutcome {
        /// The request needed no authentication, or never reached it.
        None => "none",
        /// The credential was valid.
        Success => "success",
        /// The request carried no credential.
        Missing => "missing",
        /// The credential was invalid, revoked, expired or not accepted here.
        Rejected => "rejected",
        /// Brute-force protection blocked the source before any check.
        Blocked => "blocked",
        /// The credential could not be checked, such as with the store down.
        Error => "error",
    }
}

label_values! {
    /// The kind of limit that rejected a request.
    LimitKind {
        /// One of an API key's own limits (`key`, `key-2`, …).
        Key => "key",
        /// An OAuth client's limit.
        Client => "client",
        /// The limit that a tenant's credentials share.
        Tenant => "tenant",
        /// The limit that a route's callers share.
        Route => "route",
        /// A limit of a configured plan.
        Plan => "plan",
        /// A usage-limited key without uses left.
        Uses => "uses",
        /// Limits that could not be checked (Redis away with
        /// `redis_failure = "deny"`, or a usage-limited key without Redis).
        Unavailable => "unavailable",
    }
}

impl LimitKind {
    /// Returns the kind of the limit named `name`. Plan limits can take
    /// neither a built-in name nor `key-N`, so the rest are plan limits.
    pub fn of_limit(name: &str) -> Self {
        match name {
            "client" => Self::Client,
            "tenant" => Self::Tenant,
            "route" => Self::Route,
            "key" | "key-2" | "key-3" | "key-4" => Self::Key,
            _ => Self::Plan,
        }
    }
}

label_values! {
    /// The part of Portcullis that talks to Redis.
    RedisComponent {
        /// The shared rate limiter.
        RateLimit => "rate_limit",
        /// The shared brute-force counters.
        BruteForce => "brute_force",
    }
}

label_values! {
    /// The kind of a failed Redis call.
    RedisErrorKind {
        /// Redis sent no reply within the call's timeout.
        Timeout => "timeout",
        /// The connection or the command failed.
        Error => "error",
        /// Redis sent a reply that Portcullis cannot parse.
        Reply => "reply",
    }
}

/// An OAuth grant type, by its RFC 6749 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrantTypeLabel(pub portcullis_core::oauth::GrantType);

impl EncodeLabelValue for GrantTypeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(self.0.as_str())
    }
}

/// The route of a request: a Portcullis endpoint by a fixed name, a
/// gateway route by its configured prefix, or none.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteLabel {
    /// One of Portcullis's own endpoints, such as `oauth_token`.
    Endpoint(&'static str),
    /// A configured gateway route, by its path prefix.
    Gateway(Arc<str>),
    /// No endpoint and no gateway route matched, or the path was rejected
    /// before routing.
    Unmatched,
}

impl RouteLabel {
    /// Names the Portcullis endpoint whose route pattern is `pattern`
    /// (axum's matched path). Every admin API path is `admin`, and a
    /// pattern not listed here is `other`.
    pub fn endpoint(pattern: &str) -> Self {
        let name = match pattern {
            "/healthz" | "/readyz" => "health",
            "/v1/keys/verify" => "verify",
            "/v1/leaks" => "leaks",
            "/oauth/token" => "oauth_token",
            "/oauth/introspect" => "oauth_introspect",
            "/oauth/revoke" => "oauth_revoke",
            "/oauth/authorize" => "oauth_authorize",
            "/.well-known/jwks.json" => "jwks",
            "/.well-known/oauth-authorization-server" => "oauth_metadata",
            "/ca/ca.pem" | "/ca/crl.pem" => "ca",
            _ if pattern.starts_with("/admin/") => "admin",
            _ if pattern == "/dashboard" || pattern.starts_with("/dashboard/") => "dashboard",
            _ => "other",
        };
        Self::Endpoint(name)
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        match self {
            Self::Endpoint(name) => encoder.write_str(name),
            Self::Gateway(prefix) => {
                encoder.write_str("gateway:")?;
                encoder.write_str(prefix)
            }
            Self::Unmatched => encoder.write_str("unmatched"),
        }
    }
}

/// Labels of `portcullis_http_requests_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route.
    pub route: RouteLabel,
    /// The request method.
    pub method: MethodLabel,
    /// The response status class.
    pub status_class: StatusClass,
    /// The credential kind of the request.
    pub auth_method: AuthMethodLabel,
    /// The outcome of its authentication.
    pub auth_outcome: AuthOutcome,
}

/// Labels of `portcullis_http_request_duration_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route.
    pub route: RouteLabel,
}

/// Labels of `portcullis_authentication_duration_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AuthLabels {
    /// The credential kind.
    pub method: AuthMethodLabel,
    /// The outcome of the authentication.
    pub outcome: AuthOutcome,
}

/// Labels of `portcullis_credential_cache_lookups_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Labels of `portcullis_rate_limit_rejections_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitLabels {
    /// The kind of the deciding limit.
    pub limit: LimitKind,
}

/// Labels of the store metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StoreLabels {
    /// The store method, such as `find_key_by_hash`.
    pub operation: &'static str,
}

/// Labels of `portcullis_store_errors_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StoreErrorLabels {
    /// The store method.
    pub operation: &'static str,
    /// The error's code, such as `unavailable`.
    pub kind: &'static str,
}

/// Labels of the Redis metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RedisLabels {
    /// The component that made the call.
    pub component: RedisComponent,
}

/// Labels of `portcullis_redis_errors_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RedisErrorLabels {
    /// The component that made the call.
    pub component: RedisComponent,
    /// The kind of failure.
    pub kind: RedisErrorKind,
}

/// Labels of `portcullis_tokens_issued_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GrantLabels {
    /// The grant that issued the tokens.
    pub grant_type: GrantTypeLabel,
}

/// Labels of `portcullis_certificate_verifications_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CertificateLabels {
    /// `valid`, or the rejection's code, such as `expired` or `revoked`.
    pub outcome: &'static str,
}

/// Labels of `portcullis_alerts_raised_total`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AlertLabels {
    /// The alert rule's name.
    pub rule: &'static str,
}

/// Labels of `portcullis_build_info`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    /// The Portcullis version.
    pub version: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_kind_of_names() {
        assert_eq!(LimitKind::of_limit("key"), LimitKind::Key);
        assert_eq!(LimitKind::of_limit("key-3"), LimitKind::Key);
        assert_eq!(LimitKind::of_limit("tenant"), LimitKind::Tenant);
        assert_eq!(LimitKind::of_limit("route"), LimitKind::Route);
        assert_eq!(LimitKind::of_limit("client"), LimitKind::Client);
        assert_eq!(LimitKind::of_limit("hourly"), LimitKind::Plan);
    }

    #[test]
    fn endpoint_names_are_fixed() {
        assert_eq!(
            RouteLabel::endpoint("/admin/v1/keys/{id}"),
            RouteLabel::Endpoint("admin")
        );
        assert_eq!(
            RouteLabel::endpoint("/oauth/token"),
            RouteLabel::Endpoint("oauth_token")
        );
        assert_eq!(
            RouteLabel::endpoint("/dashboard/sign-in"),
            RouteLabel::Endpoint("dashboard")
        );
        assert_eq!(
            RouteLabel::endpoint("/something/new"),
            RouteLabel::Endpoint("other")
        );
    }

    #[test]
    fn methods_outside_list_are_other() {
        let custom = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(MethodLabel::from(&custom), MethodLabel::Other);
        assert_eq!(MethodLabel::from(&http::Method::GET), MethodLabel::Get);
    }
}
