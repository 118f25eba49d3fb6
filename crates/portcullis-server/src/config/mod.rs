//! The server configuration: a TOML file, then an environment overlay, then
//! one validation step into typed values.
//!
//! 1. The file is `DATA_DIR/portcullis.toml`, or the path given on the
//!    command line. A missing explicit file is an error; a missing default
//!    file means every setting takes its default.
//! 2. Each variable `PORTCULLIS_<PATH>` whose name contains `__` overrides one
//!    setting. Path segments are joined by `__` and array elements are
//!    numbered from 0: `PORTCULLIS_SERVER__LISTEN=127.0.0.1:9443`,
//!    `PORTCULLIS_ROUTES__0__UPSTREAM=http://127.0.0.1:9001`. The value is
//!    read as a TOML value when it parses as one (`true`, `42`,
//!    `["10.0.0.0/8"]`, `"123"`) and taken as a plain string otherwise, so a
//!    string that looks like a number or a date must be quoted. Variables
//!    without `__` (`PORTCULLIS_DATA_DIR`, `PORTCULLIS_DATABASE_URL`, …) are
//!    not settings and are ignored here.
//! 3. [`Config::try_from`] checks every value. Each error names the setting,
//!    such as `routes[2].upstream: …`, and unknown keys are errors, so a typo
//!    stops the start instead of being ignored.
//! 4. Webhook secrets are read from the variable that `secret_env` names
//!    (one of the `PORTCULLIS_*` variables, without `__`) or from
//!    `secret_file`, never from the file itself.
//!
//! The [`raw`] structs document every key and its default, and
//! `docs/operators/configuration.md` lists them for operators; a test keeps
//! the two in step.

mod alerts;
mod audit;
pub mod audit_policy;
mod brute_force;
mod dashboard;
mod docs;
mod env;
mod leaks;
mod limits;
mod metrics;
mod oauth;
pub mod raw;
mod validate;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_core::scope::ScopeSet;

pub use alerts::{
    AlertsConfig, DEFAULT_RETENTION as DEFAULT_ALERT_RETENTION, DeliveryPolicy, FailureRule,
    MAX_WEBHOOK_SECRET_LEN, MAX_WEBHOOKS, MIN_WEBHOOK_SECRET_LEN, NewNetworkRule, RateSpikeRule,
    RevokedKeyRule, SecretSource, WebhookConfig, WebhookSecret,
};
pub use audit::{AuditConfig, DEFAULT_AUDIT_RETENTION, MIN_AUDIT_RETENTION};
pub use audit_policy::{AuditPolicy, MAX_POLICY_DAYS};
pub use dashboard::{
    DEFAULT_INVITE_EXPIRY, DEFAULT_KEY_EXPIRY, DEFAULT_KEY_EXPIRY_MAX, DashboardConfig,
    KEY_EXPIRY_MAX_LIMIT, MIN_KEY_EXPIRY,
};
pub use docs::{
    DEFAULT_DOCS_TITLE, DEFAULT_PRODUCT_NAME, DocsConfig, DocsPages, MAX_DOCS_NAME_LEN,
};
pub use leaks::{
    LeakAction, LeakPublicKey, LeaksConfig, MAX_LEAK_KEY_ID_LEN, MAX_LEAK_PUBLIC_KEYS, PemSource,
};
pub use limits::{
    LimitsConfig, MAX_PLAN_LIMITS, MAX_PLANS, Plan, REDIS_URL_VARIABLE, RESERVED_LIMIT_NAMES,
    RedisUrl,
};
pub use metrics::{DEFAULT_METRICS_LISTEN, MetricsConfig};
pub use oauth::{
    DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_KEY_ROTATION, DEFAULT_LEEWAY, DEFAULT_REFRESH_TOKEN_TTL,
    MAX_ACCESS_TOKEN_TTL, MAX_LEEWAY, MIN_ACCESS_TOKEN_TTL, OAuthConfig,
};
pub use raw::RawConfig;

/// Name of the configuration file inside the data directory.
pub const CONFIG_FILE_NAME: &str = "portcullis.toml";

/// Default listen address: loopback only, so a first start exposes nothing
/// to the network until the operator chooses an address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8443));

/// Default time that in-flight requests get to finish after a shutdown
/// signal. It matches Kubernetes' default termination grace period (30 s),
/// after which the process is killed anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Default maximum of open client connections. A proxied request can hold a
/// second socket to the upstream, so the process needs about twice this many
/// file descriptors: raise the limit (`ulimit -n`, systemd `LimitNOFILE`)
/// above 20,000 or lower this setting. Past the maximum, new connections wait
/// in the kernel's accept queue instead of failing.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Share of `max_connections` that one client address may hold by default
/// (1,000 of the default 10,000). One host then cannot lock every other
/// client out, and a network address translator with many users behind it
/// still gets a large share.
pub const DEFAULT_CONNECTIONS_PER_ADDRESS_DIVISOR: usize = 10;

/// Default time a client has to send a complete HTTP/1 request head. Short
/// enough that a slow-header client (slowloris) ties up a connection slot
/// only briefly, long enough for a slow mobile link.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default maximum pause between two parts of a request body. A client that
/// trickles its body slower than this gets 408 and loses the connection,
/// while a slow link that keeps sending is never cut off.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time a connection may stay open with no request in flight. A
/// client that sent one HTTP/2 request and then went quiet gives its
/// connection slot back within a minute. HTTP/1 keep-alive connections
/// close sooner, at the header read timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default time the gateway waits for an upstream response: half the 60 s
/// default idle timeout of common proxies in front (AWS ALB, nginx
/// `proxy_read_timeout`), so Portcullis returns 504 before such a proxy
/// gives up.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default maximum request body size of a route: 10 MiB, enough for JSON
/// APIs; raise it per route for uploads.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// The checked configuration of one Portcullis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listener, TLS, proxies, logging and limits.
    pub server: ServerConfig,
    /// Gateway routes, in the order of the file.
    pub routes: Vec<RouteConfig>,
    /// The authorization server's settings.
    pub oauth: OAuthConfig,
    /// Rate limits: where they are counted, the tenant limit and plans.
    pub limits: LimitsConfig,
    /// Leak reports: the keys that sign them and the action on a match.
    pub leaks: LeaksConfig,
    /// The metrics listener.
    pub metrics: MetricsConfig,
    /// Anomaly rules, delivery policy and webhooks.
    pub alerts: AlertsConfig,
    /// Thresholds of the credential audit.
    pub audit_policy: AuditPolicy,
    /// Retention of audit records.
    pub audit: AuditConfig,
    /// Limits on the keys that dashboard users create.
    pub dashboard: DashboardConfig,
    /// The documentation site: whether it is served, and its branding.
    pub docs: DocsConfig,
}

/// The `[server]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address of the one listener, [`DEFAULT_LISTEN`] unless set.
    pub listen: SocketAddr,
    /// Certificate source of the listener, or plain HTTP.
    pub tls: TlsMode,
    /// Networks of proxies whose `X-Forwarded-*` headers are believed.
    /// Empty by default. A single address is stored as a /32 or /128 network.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header in which trusted proxies pass the client address.
    pub forwarded_header: crate::client_ip::ForwardedHeader,
    /// Log line format.
    pub log_format: LogFormat,
    /// Time in-flight requests get after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Maximum of open client connections.
    pub max_connections: usize,
    /// Maximum of open connections from one client address, or `None` for
    /// no cap. Connections from `trusted_proxies` are not counted.
    pub max_connections_per_address: Option<usize>,
    /// Time a client has to send a complete HTTP/1 request head.
    pub header_read_timeout: Duration,
    /// Maximum pause between two parts of a request body.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Whether TLS clients are asked for a certificate.
    pub client_certificates: ClientCertificateMode,
    /// CRL files of trusted partner CAs, in PEM.
    pub partner_crls: Vec<PathBuf>,
    /// The client certificate that a trusted TLS-terminating proxy
    /// forwards in a header, or `None` when no header is read.
    pub forwarded_client_certificate: Option<ForwardedCertificateConfig>,
}

/// The header in which a trusted TLS-terminating proxy forwards the client
/// certificate (`server.forwarded_client_certificate` and
/// `server.forwarded_client_certificate_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedCertificateConfig {
    /// The proxy's header format.
    pub format: ForwardedCertificateFormat,
    /// The header name, lowercase.
    pub header: http::HeaderName,
}

/// The header formats of TLS-terminating proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedCertificateFormat {
    /// Envoy's `x-forwarded-client-cert`: elements separated by commas,
    /// each of `Key=value` pairs separated by semicolons, with the
    /// certificate URL-encoded PEM in `Cert` and the chain in `Chain`.
    Envoy,
    /// nginx's `$ssl_client_escaped_cert`: the leaf as URL-encoded PEM.
    Nginx,
}

impl ForwardedCertificateFormat {
    /// Returns the header that the proxy uses unless configured otherwise.
    pub fn default_header(self) -> &'static str {
        match self {
            Self::Envoy => "x-forwarded-client-cert",
            Self::Nginx => "x-ssl-client-cert",
        }
    }
}

/// Whether the listener asks TLS clients for a certificate
/// (`server.client_certificates`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientCertificateMode {
    /// No certificate is requested. The default.
    #[default]
    Off,
    /// A certificate is requested. A connection without one is served, and
    /// so is one whose certificate fails verification: the verdict travels
    /// with the connection for endpoints to reject.
    Optional,
    /// A verified certificate is required to complete the handshake, or
    /// a single self-signed certificate whose public key an RFC 8705 §2.2
    /// `self_signed_tls_client_auth` client registered.
    Required,
}

/// Source of the listener's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// A development CA and server certificate kept in `DATA_DIR/tls/`,
    /// created at the first start. The default.
    Development,
    /// The operator's PEM certificate chain and private key.
    Files {
        /// PEM file with the server certificate first, then intermediates.
        cert: PathBuf,
        /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// No TLS. Allowed only on a loopback address or behind a
    /// TLS-terminating proxy listed in `server.trusted_proxies`.
    PlainHttp,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// One gateway route, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Path prefix that selects this route, such as `/api`. It starts with
    /// `/`, has no trailing `/` (except `/` itself), no empty, `.` or `..`
    /// segment, and none of `%`, `\`, `?`, `#`, `;`.
    pub path_prefix: String,
    /// Base URL that requests are forwarded to: http or https, with a host
    /// and without query, fragment or user name.
    pub upstream: url::Url,
    /// Whether the prefix is removed from the path before forwarding.
    pub strip_prefix: bool,
    /// Scopes required per method.
    pub scopes: RouteScopes,
    /// Accepted ways to authenticate, in order of preference.
    pub auth: Vec<AuthMethod>,
    /// Time the upstream has to respond.
    pub timeout: Duration,
    /// Maximum request body size in bytes.
    pub max_body_bytes: u64,
    /// The audience a bearer JWT must name on this route; set when `auth`
    /// includes [`AuthMethod::Jwt`].
    pub audience: Option<String>,
    /// Rate that all callers of the route share.
    pub rate_limit: Option<crate::ratelimit::Rate>,
    /// Whether an access token on this route must come with a client
    /// certificate of the token's own client (`client_certificate =
    /// "required"`). A caller authenticated by `mtls` meets it already.
    pub client_certificate_required: bool,
}

/// Scopes that a route requires, per HTTP method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteScopes {
    /// Scopes per method, keyed by the upper-case method name.
    pub by_method: BTreeMap<String, ScopeSet>,
    /// Scopes for every method not in `by_method` (the `"*"` key). `None`
    /// means such methods are not allowed on the route.
    pub any_method: Option<ScopeSet>,
}

impl RouteScopes {
    /// Scopes that allow every method once the caller is authenticated, as
    /// `"*" = []` writes them.
    pub fn authentication_only() -> Self {
        Self {
            by_method: BTreeMap::new(),
            any_method: Some(ScopeSet::default()),
        }
    }

    /// Returns the scopes that `method` requires on this route, or `None`
    /// when the route does not allow the method (a 405).
    ///
    /// Methods are matched ignoring ASCII case. HTTP methods are
    /// case-sensitive, but many upstream frameworks treat `get` as `GET`, so
    /// an exact match would let `get` skip the scopes configured for `GET`.
    /// A `HEAD` request needs what `GET` needs unless `HEAD` is listed, because
    /// HEAD is GET without the body (RFC 9110 §9.3.2).
    pub fn required(&self, method: &http::Method) -> Option<&ScopeSet> {
        let name = method.as_str().to_ascii_uppercase();
        let listed = self.by_method.get(&name);
        let as_get = || {
            (name == "HEAD")
                .then(|| self.by_method.get("GET"))
                .flatten()
        };
        listed.or_else(as_get).or(self.any_method.as_ref())
    }

    /// The methods this route accepts without `"*"`, for the `Allow` header.
    /// `HEAD` is included wherever `GET` is.
    pub fn allowed_methods(&self) -> Vec<&str> {
        let mut methods: Vec<&str> = self.by_method.keys().map(String::as_str).collect();
        if self.by_method.contains_key("GET") && !self.by_method.contains_key("HEAD") {
            methods.push("HEAD");
        }
        methods
    }
}

/// A way for a caller to authenticate on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthMethod {
    /// A Portcullis API key (`pc_live_…`, `pc_test_…`).
    ApiKey,
    /// A Portcullis access token: a JWT bearer token (RFC 9068).
    Jwt,
    /// A verified client certificate of an OAuth client registered for
    /// `tls_client_auth` or `self_signed_tls_client_auth` (RFC 8705 §2).
    Mtls,
}

impl AuthMethod {
    /// Returns the name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Mtls => "mtls",
        }
    }
}

/// Error from loading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given on the command line does not exist.
    #[error("configuration file {} not found", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("failed to read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML. The message shows the line and column.
    #[error("invalid TOML in {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A `PORTCULLIS_*` variable could not be applied.
    #[error("environment variable {variable}: {message}")]
    Environment {
        /// The variable's name.
        variable: String,
        /// The problem found.
        message: String,
    },
    /// A setting is missing, unknown or has an invalid value.
    #[error("{setting}: {message}")]
    Invalid {
        /// Path of the setting, such as `routes[2].upstream`.
        setting: String,
        /// The problem and, where it helps, the value to write instead.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// Loads the configuration: the file (`explicit`, or `data_dir/portcullis.toml`
/// when that exists), then the `PORTCULLIS_*` overrides found in `env`, then
/// validation.
///
/// `env` is passed in so tests need not change the process environment; the
/// binary passes [`process_env`].
pub fn load(
    explicit: Option<&Path>,
    data_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    let (path, required) = match explicit {
        Some(path) => (path.to_path_buf(), true),
        None => (data_dir.join(CONFIG_FILE_NAME), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound { path });
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let table = text
        .parse::<toml::Table>()
        .map_err(|error| ConfigError::Syntax {
            path: path.clone(),
            message: error.to_string().trim_end().to_owned(),
        })?;
    from_table(table, env)
}

/// Parses configuration text as if it were the configuration file, then
/// applies `env` and validates. Syntax errors name the file `<text>`.
pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let table = text
        .parse::<toml::Table>()
        .map_err(|error| ConfigError::Syntax {
            path: PathBuf::from("<text>"),
            message: error.to_string().trim_end().to_owned(),
        })?;
    from_table(table, env)
}

fn from_table(
    mut table: toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    apply_redis_url(&mut table, env)?;
    env::apply_overrides(&mut table, env)?;
    let raw = RawConfig::from_table(table)?;
    let mut config = Config::try_from(raw)?;
    alerts::read_webhook_secrets(&mut config.alerts, env)?;
    Ok(config)
}

/// Sets `limits.redis_url` from [`REDIS_URL_VARIABLE`] when it is set and
/// not empty.
fn apply_redis_url(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let Some(url) = env.get(REDIS_URL_VARIABLE).filter(|url| !url.is_empty()) else {
        return Ok(());
    };
    let limits = table
        .entry("limits")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(limits) = limits.as_table_mut() else {
        return Err(ConfigError::Environment {
            variable: REDIS_URL_VARIABLE.to_owned(),
            message: "`limits` in the configuration file is not a table".to_owned(),
        });
    };
    limits.insert("redis_url".to_owned(), toml::Value::String(url.clone()));
    Ok(())
}

/// Returns the process environment's `PORTCULLIS_*` variables, the only
/// read of the process environment in Portcullis.
///
/// Variables whose name is not valid Unicode are skipped. A value that is
/// not valid Unicode gets U+FFFD for its invalid bytes, so that validation
/// reports it instead of the setting silently keeping its file value.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            name.starts_with(env::PREFIX)
                .then(|| (name, value.to_string_lossy().into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
