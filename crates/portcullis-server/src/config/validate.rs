//! The checks that turn a [`RawConfig`] into a [`Config`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use portcullis_core::duration::parse_duration;
use portcullis_core::name::CharDisplay;
use portcullis_core::scope::{Scope, ScopeSet};

use super::raw::{RawConnectionCap, RawRoute, RawServer, RawTls};
use super::{
    AuthMethod, ClientCertificateMode, Config, ConfigError, DEFAULT_BODY_READ_TIMEOUT,
    DEFAULT_CONNECTIONS_PER_ADDRESS_DIVISOR, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_ROUTE_TIMEOUT,
    DEFAULT_SHUTDOWN_GRACE, ForwardedCertificateConfig, ForwardedCertificateFormat, RawConfig,
    RouteConfig, RouteScopes, ServerConfig, TlsMode,
};

/// Scopes key that applies to every method not listed on its own.
const ANY_METHOD_KEY: &str = "*";

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let server = check_server(raw.server.unwrap_or_default())?;

        let mut routes: Vec<RouteConfig> = Vec::new();
        for (index, raw_route) in raw.routes.unwrap_or_default().into_iter().enumerate() {
            let route = check_route(index, raw_route)?;
            let certificates_off = server.client_certificates == ClientCertificateMode::Off
                && server.forwarded_client_certificate.is_none();
            if route.client_certificate_required && certificates_off {
                return Err(ConfigError::invalid(
                    format!("routes[{index}].client_certificate"),
                    "\"required\" needs client certificates; set server.client_certificates \
                     to \"optional\" or \"required\", or set server.forwarded_client_certificate",
                ));
            }
            if let Some(position) = route.auth.iter().position(|m| *m == AuthMethod::Mtls)
                && certificates_off
            {
                return Err(ConfigError::invalid(
                    format!("routes[{index}].auth[{position}]"),
                    "\"mtls\" needs client certificates; set server.client_certificates to \
                     \"optional\" or \"required\", or set server.forwarded_client_certificate",
                ));
            }
            if let Some(earlier) = routes
                .iter()
                .position(|r| r.path_prefix == route.path_prefix)
            {
                return Err(ConfigError::invalid(
                    format!("routes[{index}].path_prefix"),
                    format!(
                        "{:?} is already the prefix of routes[{earlier}]; each prefix may \
                         appear once",
                        route.path_prefix
                    ),
                ));
            }
            routes.push(route);
        }

        let oauth = super::oauth::check_oauth(raw.oauth.unwrap_or_default())?;
        let limits = super::limits::check_limits(raw.limits.unwrap_or_default())?;
        let leaks = super::leaks::check_leaks(raw.leaks.unwrap_or_default())?;
        let metrics =
            super::metrics::check_metrics(&raw.metrics.unwrap_or_default(), server.listen)?;
        let alerts = super::alerts::check_alerts(raw.alerts.unwrap_or_default())?;
        let audit_policy =
            super::audit_policy::check_audit_policy(raw.audit_policy.unwrap_or_default())?;
        let audit = super::audit::check_audit(raw.audit.unwrap_or_default())?;
        let dashboard = super::dashboard::check_dashboard(raw.dashboard.unwrap_or_default())?;
        let docs = super::docs::check_docs(raw.docs.unwrap_or_default())?;
        Ok(Self {
            server,
            routes,
            oauth,
            limits,
            leaks,
            metrics,
            alerts,
            audit_policy,
            audit,
            dashboard,
            docs,
        })
    }
}

fn check_server(raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let listen = match raw.listen {
        None => DEFAULT_LISTEN,
        Some(text) => text.parse::<SocketAddr>().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!(
                    "invalid socket address {text:?}; expected an IP address and a port, \
                     such as 127.0.0.1:8443 or [::1]:8443"
                ),
            )
        })?,
    };

    let trusted_proxies = raw
        .trusted_proxies
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(index, text)| check_proxy(&format!("server.trusted_proxies[{index}]"), text))
        .collect::<Result<Vec<_>, _>>()?;

    let forwarded_header = match raw.forwarded_header.as_deref() {
        None => crate::client_ip::ForwardedHeader::default(),
        Some(text) => crate::client_ip::ForwardedHeader::parse(text).ok_or_else(|| {
            ConfigError::invalid(
                "server.forwarded_header",
                "write \"x-forwarded-for\" or \"forwarded\": the one header your proxies write",
            )
        })?,
    };

    let tls = check_tls_mode(
        raw.plain_http.unwrap_or(false),
        raw.tls,
        listen,
        &trusted_proxies,
    )?;

    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(ConfigError::invalid(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    let max_connections_per_address =
        check_connections_per_address(raw.max_connections_per_address, max_connections)?;

    let client_certificates = check_client_certificates(raw.client_certificates.as_deref(), &tls)?;
    let forwarded_client_certificate = check_forwarded_certificate(
        raw.forwarded_client_certificate.as_deref(),
        raw.forwarded_client_certificate_header.as_deref(),
        &trusted_proxies,
    )?;
    let partner_crls = raw.partner_crls.unwrap_or_default();
    if !partner_crls.is_empty()
        && client_certificates == ClientCertificateMode::Off
        && forwarded_client_certificate.is_none()
    {
        return Err(ConfigError::invalid(
            "server.partner_crls",
            "CRLs are used only to check client certificates; set \
             server.client_certificates to \"optional\" or \"required\", or \
             server.forwarded_client_certificate, or remove server.partner_crls",
        ));
    }

    Ok(ServerConfig {
        listen,
        tls,
        trusted_proxies,
        forwarded_header,
        log_format: raw.log_format.unwrap_or_default(),
        shutdown_grace: check_duration(
            "server.shutdown_grace",
            raw.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        max_connections,
        max_connections_per_address,
        header_read_timeout: check_bounded_duration(
            "server.header_read_timeout",
            raw.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
            MAX_HEADER_READ_TIMEOUT,
        )?,
        body_read_timeout: check_bounded_duration(
            "server.body_read_timeout",
            raw.body_read_timeout,
            DEFAULT_BODY_READ_TIMEOUT,
            MAX_BODY_READ_TIMEOUT,
        )?,
        idle_timeout: check_bounded_duration(
            "server.idle_timeout",
            raw.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            MAX_IDLE_TIMEOUT,
        )?,
        client_certificates,
        partner_crls,
        forwarded_client_certificate,
    })
}

/// Checks `server.max_connections_per_address`: `None` means no cap. A cap
/// above `max_connections` could never be reached, so it is rejected
/// rather than accepted as a cap that does nothing.
fn check_connections_per_address(
    raw: Option<RawConnectionCap>,
    max_connections: usize,
) -> Result<Option<usize>, ConfigError> {
    const SETTING: &str = "server.max_connections_per_address";
    let count = match raw {
        None => {
            return Ok(Some(
                (max_connections / DEFAULT_CONNECTIONS_PER_ADDRESS_DIVISOR).max(1),
            ));
        }
        Some(RawConnectionCap::Word(word)) if word.eq_ignore_ascii_case("off") => return Ok(None),
        Some(RawConnectionCap::Word(word)) => {
            return Err(ConfigError::invalid(
                SETTING,
                format!(
                    "invalid value {word:?}; write a number of connections, or 0 or \"off\" \
                     for no cap"
                ),
            ));
        }
        Some(RawConnectionCap::Count(count)) => count,
    };
    let Ok(count) = usize::try_from(count) else {
        return Err(ConfigError::invalid(
            SETTING,
            format!(
                "{count} is negative; write a number of connections, or 0 or \"off\" for no cap"
            ),
        ));
    };
    if count == 0 {
        return Ok(None);
    }
    if count > max_connections {
        return Err(ConfigError::invalid(
            SETTING,
            format!(
                "{count} is more than server.max_connections ({max_connections}), so the cap \
                 would never apply; lower it, or write \"off\" for no cap"
            ),
        ));
    }
    Ok(Some(count))
}

/// Parses `server.forwarded_client_certificate` and its header. A forwarded
/// certificate is believed only from a trusted proxy, so forwarding
/// without `trusted_proxies` would never take effect and is rejected.
fn check_forwarded_certificate(
    format: Option<&str>,
    header: Option<&str>,
    trusted_proxies: &[ipnet::IpNet],
) -> Result<Option<ForwardedCertificateConfig>, ConfigError> {
    let format = match format {
        None | Some("off") => {
            if header.is_some() {
                return Err(ConfigError::invalid(
                    "server.forwarded_client_certificate_header",
                    "set only together with server.forwarded_client_certificate = \"envoy\" \
                     or \"nginx\"; remove it or set the format",
                ));
            }
            return Ok(None);
        }
        Some("envoy") => ForwardedCertificateFormat::Envoy,
        Some("nginx") => ForwardedCertificateFormat::Nginx,
        Some(other) => {
            return Err(ConfigError::invalid(
                "server.forwarded_client_certificate",
                format!("invalid value {other:?}; expected \"off\", \"envoy\" or \"nginx\""),
            ));
        }
    };
    if trusted_proxies.is_empty() {
        return Err(ConfigError::invalid(
            "server.forwarded_client_certificate",
            "a forwarded certificate is read only from a trusted proxy; list the proxy's \
             address in server.trusted_proxies",
        ));
    }
    let text = header.unwrap_or(format.default_header());
    let header = http::HeaderName::from_bytes(text.as_bytes()).map_err(|_| {
        ConfigError::invalid(
            "server.forwarded_client_certificate_header",
            format!("invalid header name {text:?}; expected a token such as x-client-cert"),
        )
    })?;
    Ok(Some(ForwardedCertificateConfig { format, header }))
}

/// Parses `server.client_certificates`. Client certificates travel in the
/// TLS handshake, so they need a listener that terminates TLS itself.
fn check_client_certificates(
    text: Option<&str>,
    tls: &TlsMode,
) -> Result<ClientCertificateMode, ConfigError> {
    let mode = match text {
        None | Some("off") => ClientCertificateMode::Off,
        Some("optional") => ClientCertificateMode::Optional,
        Some("required") => ClientCertificateMode::Required,
        Some(other) => {
            return Err(ConfigError::invalid(
                "server.client_certificates",
                format!("invalid value {other:?}; expected \"off\", \"optional\" or \"required\""),
            ));
        }
    };
    if mode != ClientCertificateMode::Off && *tls == TlsMode::PlainHttp {
        return Err(ConfigError::invalid(
            "server.client_certificates",
            "client certificates need TLS on the listener; remove server.plain_http or set \
             client_certificates = \"off\"",
        ));
    }
    Ok(mode)
}

/// Parses `10.0.0.1` as a one-address network and `10.0.0.0/8` as written.
fn check_proxy(setting: &str, text: &str) -> Result<ipnet::IpNet, ConfigError> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(address));
    }
    let network = text.parse::<ipnet::IpNet>().map_err(|_| {
        ConfigError::invalid(
            setting,
            format!("invalid address or network {text:?}; expected 10.0.0.1 or 10.0.0.0/8"),
        )
    })?;
    // Trusting every address lets any client write its own address, which
    // is the same as trusting no proxy, only worse: it looks configured.
    if network.prefix_len() == 0 {
        return Err(ConfigError::invalid(
            setting,
            format!(
                "{text:?} trusts every address, so any client could forge its address; \
                 name the proxies' own addresses or networks"
            ),
        ));
    }
    // A network with host bits set, like 10.0.0.5/8, is most likely a typo
    // for a single address or a different prefix length, and trusting the
    // wrong network lets clients forge their address.
    if network.trunc() != network {
        return Err(ConfigError::invalid(
            setting,
            format!(
                "{text:?} has bits set after the prefix length; write the network as {} \
                 or the single address without a prefix length",
                network.trunc()
            ),
        ));
    }
    Ok(network)
}

fn check_tls_mode(
    plain_http: bool,
    tls: Option<RawTls>,
    listen: SocketAddr,
    trusted_proxies: &[ipnet::IpNet],
) -> Result<TlsMode, ConfigError> {
    match (plain_http, tls) {
        (true, Some(_)) => Err(ConfigError::invalid(
            "server.plain_http",
            "plain_http = true contradicts [server.tls]; remove one of them",
        )),
        (true, None) => {
            if listen.ip().is_loopback() || !trusted_proxies.is_empty() {
                Ok(TlsMode::PlainHttp)
            } else {
                Err(ConfigError::invalid(
                    "server.plain_http",
                    format!(
                        "plain HTTP on {listen} would expose credentials on the network; it \
                         is allowed only on a loopback address, or behind a TLS-terminating \
                         proxy listed in server.trusted_proxies"
                    ),
                ))
            }
        }
        (false, None) => Ok(TlsMode::Development),
        (false, Some(RawTls { cert, key })) => match (cert, key) {
            (Some(cert), Some(key)) => Ok(TlsMode::Files { cert, key }),
            (Some(_), None) => Err(ConfigError::invalid(
                "server.tls.key",
                "missing; set both cert and key, or remove [server.tls] to use a development \
                 certificate",
            )),
            (None, _) => Err(ConfigError::invalid(
                "server.tls.cert",
                "missing; set both cert and key, or remove [server.tls] to use a development \
                 certificate",
            )),
        },
    }
}

/// Longest `server.header_read_timeout`: past it a slow client could hold
/// a connection for long enough that the timeout no longer protects.
const MAX_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Longest `server.body_read_timeout`, for the same reason.
const MAX_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Longest `server.idle_timeout`, for the same reason.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Like [`check_duration`], and at most `max`.
fn check_bounded_duration(
    setting: &str,
    text: Option<String>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let duration = check_duration(setting, text, default)?;
    if duration > max {
        return Err(ConfigError::invalid(
            setting,
            format!(
                "{}s is longer than the most this protection allows, {}s",
                duration.as_secs(),
                max.as_secs()
            ),
        ));
    }
    Ok(duration)
}

pub(super) fn check_duration(
    setting: &str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let duration =
        parse_duration(&text).map_err(|error| ConfigError::invalid(setting, error.to_string()))?;
    // parse_duration accepts only positive durations, which always convert.
    Duration::try_from(duration)
        .map_err(|_| ConfigError::invalid(setting, format!("invalid duration {text:?}")))
}

fn check_route(index: usize, raw: RawRoute) -> Result<RouteConfig, ConfigError> {
    let setting = |key: &str| format!("routes[{index}].{key}");

    let Some(path_prefix) = raw.path_prefix else {
        return Err(ConfigError::invalid(
            setting("path_prefix"),
            "missing; every route needs a path prefix such as \"/api\"",
        ));
    };
    check_path_prefix(&path_prefix).map_err(|message| {
        ConfigError::invalid(setting("path_prefix"), format!("{path_prefix:?} {message}"))
    })?;

    let Some(upstream) = raw.upstream else {
        return Err(ConfigError::invalid(
            setting("upstream"),
            "missing; every route needs an upstream URL such as \"http://127.0.0.1:9000\"",
        ));
    };
    let upstream = check_upstream(&upstream).map_err(|message| {
        ConfigError::invalid(setting("upstream"), format!("{upstream:?} {message}"))
    })?;

    // A route without scopes would let any valid key use any method, so the
    // table is required; `"*" = []` says "any authenticated key" explicitly.
    let Some(table) = raw.scopes else {
        return Err(ConfigError::invalid(
            setting("scopes"),
            "missing; list the scopes each method needs (GET = [\"orders:read\"]), or write \
             \"*\" = [] to let any valid key use every method",
        ));
    };
    let scopes = check_scopes(&setting("scopes"), table)?;

    let auth = check_auth(&setting("auth"), raw.auth)?;
    let audience = match (auth.contains(&AuthMethod::Jwt), raw.audience) {
        (true, None) => {
            return Err(ConfigError::invalid(
                setting("audience"),
                "missing; a route that accepts \"jwt\" needs the audience its tokens must \
                 name, such as \"https://api.example.com\"",
            ));
        }
        (_, Some(audience)) => Some(
            super::oauth::check_audience(&audience)
                .map_err(|message| ConfigError::invalid(setting("audience"), message))?,
        ),
        (false, None) => None,
    };
    let client_certificate_required = check_route_certificate(
        &setting("client_certificate"),
        raw.client_certificate.as_deref(),
        &auth,
    )?;

    Ok(RouteConfig {
        path_prefix,
        upstream,
        strip_prefix: raw.strip_prefix.unwrap_or(false),
        scopes,
        audience,
        auth,
        timeout: check_duration(&setting("timeout"), raw.timeout, DEFAULT_ROUTE_TIMEOUT)?,
        max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        rate_limit: raw
            .rate_limit
            .map(|text| super::limits::check_rate(&setting("rate_limit"), &text))
            .transpose()?,
        client_certificate_required,
    })
}

/// Parses a route's `client_certificate`: whether a token must come with
/// its client's certificate. An API key belongs to no OAuth client, so it
/// cannot be tied to a certificate.
fn check_route_certificate(
    setting: &str,
    text: Option<&str>,
    auth: &[AuthMethod],
) -> Result<bool, ConfigError> {
    let required = match text {
        None | Some("optional") => false,
        Some("required") => true,
        Some(other) => {
            return Err(ConfigError::invalid(
                setting,
                format!("invalid value {other:?}; expected \"optional\" or \"required\""),
            ));
        }
    };
    if required && auth.contains(&AuthMethod::ApiKey) {
        return Err(ConfigError::invalid(
            setting,
            "\"required\" ties an access token to its client's certificate, and API keys \
             belong to no OAuth client; remove \"api_key\" from auth or this setting",
        ));
    }
    Ok(required)
}

/// Checks a path prefix. The rules keep prefix matching on the raw request
/// path unambiguous: no encoded characters, no dot segments that a server
/// behind the gateway would resolve differently, and no parameters.
fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with '/'".to_owned());
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err("must not end with '/'; write \"/api\", which also matches \"/api/…\"".into());
    }
    if let Some(c) = prefix.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains {}; only visible ASCII characters are allowed",
            CharDisplay(c)
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| matches!(c, '%' | '\\' | '?' | '#' | ';'))
    {
        return Err(format!("must not contain {c:?}"));
    }
    if prefix == "/" {
        return Ok(());
    }
    if let Some(reserved) = RESERVED_PREFIXES
        .iter()
        .find(|reserved| within(prefix, reserved))
    {
        return Err(format!(
            "is inside {reserved}, which Portcullis serves itself; choose another prefix"
        ));
    }
    for segment in prefix.split('/').skip(1) {
        match segment {
            "" => return Err("contains an empty segment (\"//\")".to_owned()),
            "." | ".." => return Err(format!("contains a {segment:?} segment")),
            _ => {}
        }
    }
    Ok(())
}

/// Paths that Portcullis serves itself, now or in a planned release. A route
/// prefix above one of them (such as `/admin` or `/`) is allowed: Portcullis's
/// own endpoints are matched first, and the route gets everything else.
const RESERVED_PREFIXES: [&str; 11] = [
    "/admin/v1",
    "/openapi.json",
    "/v1/keys",
    "/healthz",
    "/readyz",
    "/oauth",
    "/.well-known",
    "/dashboard",
    "/docs",
    "/ca",
    "/metrics",
];

/// Whether `prefix` is `reserved` or a path below it.
fn within(prefix: &str, reserved: &str) -> bool {
    prefix
        .strip_prefix(reserved)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn check_upstream(text: &str) -> Result<url::Url, String> {
    const EXAMPLE: &str = "such as \"http://127.0.0.1:9000\"";
    let url = url::Url::parse(text).map_err(|error| {
        format!("is not a valid URL ({error}); expected an http or https URL {EXAMPLE}")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "has scheme {:?}; expected an http or https URL {EXAMPLE}",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err(format!("has no host; expected a URL {EXAMPLE}"));
    }
    if url.query().is_some() {
        return Err("must not have a query ('?'); requests keep their own query".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment ('#')".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not contain a user name or password; credentials in a URL end up in logs"
                .to_owned(),
        );
    }
    Ok(url)
}

fn check_scopes(
    setting: &str,
    table: BTreeMap<String, Vec<String>>,
) -> Result<RouteScopes, ConfigError> {
    if table.is_empty() {
        return Err(ConfigError::invalid(
            setting,
            "an empty table allows no method; list methods with their scopes, or write \
             \"*\" = [] to let any valid key use every method",
        ));
    }

    let mut scopes = RouteScopes::default();
    for (key, names) in table {
        let key_setting = format!("{setting}.{}", display_key(&key));
        let set = check_scope_list(&key_setting, &names)?;
        if key == ANY_METHOD_KEY {
            scopes.any_method = Some(set);
            continue;
        }
        check_method(&key).map_err(|message| ConfigError::invalid(&key_setting, message))?;
        let method = key.to_ascii_uppercase();
        if scopes.by_method.insert(method.clone(), set).is_some() {
            return Err(ConfigError::invalid(
                key_setting,
                format!("method {method} is listed twice (keys differ only in case)"),
            ));
        }
    }
    Ok(scopes)
}

/// Checks that `key` is an HTTP method name: one or more token characters
/// (RFC 9110, section 5.6.2).
fn check_method(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty method name; use a method such as GET, or \"*\" for any other".into());
    }
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if let Some(c) = key.chars().find(|&c| !is_token_char(c)) {
        return Err(format!(
            "{key:?} is not an HTTP method: it contains {}; use a method such as GET, or \
             \"*\" for any other",
            CharDisplay(c)
        ));
    }
    Ok(())
}

fn check_scope_list(setting: &str, names: &[String]) -> Result<ScopeSet, ConfigError> {
    let mut scopes = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let scope = Scope::parse(name).map_err(|error| {
            ConfigError::invalid(format!("{setting}[{index}]"), error.to_string())
        })?;
        if scope.is_wildcard() {
            return Err(ConfigError::invalid(
                format!("{setting}[{index}]"),
                format!(
                    "a route requires exact scopes, not the wildcard {name:?}; wildcards are \
                     for granting"
                ),
            ));
        }
        scopes.push(scope);
    }
    ScopeSet::try_from(scopes).map_err(|error| ConfigError::invalid(setting, error.to_string()))
}

fn check_auth(setting: &str, names: Option<Vec<String>>) -> Result<Vec<AuthMethod>, ConfigError> {
    let Some(names) = names else {
        return Ok(vec![AuthMethod::ApiKey]);
    };
    if names.is_empty() {
        return Err(ConfigError::invalid(
            setting,
            "must list at least one method, such as [\"api_key\"]",
        ));
    }
    let mut methods = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let method = match name.as_str() {
            "api_key" => AuthMethod::ApiKey,
            "jwt" => AuthMethod::Jwt,
            "mtls" => AuthMethod::Mtls,
            _ => {
                return Err(ConfigError::invalid(
                    format!("{setting}[{index}]"),
                    format!(
                        "unknown authentication method {name:?}; expected \"api_key\", \"jwt\" or \"mtls\""
                    ),
                ));
            }
        };
        if methods.contains(&method) {
            return Err(ConfigError::invalid(
                format!("{setting}[{index}]"),
                format!("{name:?} is listed twice"),
            ));
        }
        methods.push(method);
    }
    Ok(methods)
}

/// Writes a table key as TOML would: bare when it can be, quoted otherwise.
fn display_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}
