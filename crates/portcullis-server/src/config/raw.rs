//! The configuration as written: every key of `portcullis.toml`, each
//! optional, with its default in the doc comment. [`super::Config`] is the
//! checked form.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8443"
//! [server.tls]
//! cert = "/etc/portcullis/server.pem"
//! key = "/etc/portcullis/server-key.pem"
//!
//! [[routes]]
//! path_prefix = "/api"
//! upstream = "http://127.0.0.1:9000"
//! [routes.scopes]
//! GET = ["customers:read"]
//! "*" = ["customers:admin"]
//!
//! [limits]
//! tenant = "1000/s burst 2000"
//! [limits.plans.basic]
//! rate = "10/s burst 20"
//! hourly = "5000/h"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use super::audit_policy::RawAuditPolicy;
use super::{ConfigError, LogFormat};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The `[server]` table; every key has a default.
    pub server: Option<RawServer>,
    /// The `[[routes]]` array; no routes by default.
    pub routes: Option<Vec<RawRoute>>,
    /// The `[oauth]` table; every key has a default.
    pub oauth: Option<RawOAuth>,
    /// The `[limits]` table; no limits by default.
    pub limits: Option<RawLimits>,
    /// The `[leaks]` table; no leak reports accepted by default.
    pub leaks: Option<RawLeaks>,
    /// The `[audit_policy]` table; every key has a default.
    pub audit_policy: Option<RawAuditPolicy>,
    /// The `[metrics]` table; metrics on `127.0.0.1:9464` by default.
    pub metrics: Option<RawMetrics>,
    /// The `[alerts]` table; every rule on with its defaults, no webhooks.
    pub alerts: Option<RawAlerts>,
    /// The `[audit]` table; records kept 400 days by default.
    pub audit: Option<RawAudit>,
    /// The `[dashboard]` table; every key has a default.
    pub dashboard: Option<RawDashboard>,
    /// The `[docs]` table; the documentation site is served by default.
    pub docs: Option<RawDocs>,
}

/// The `[dashboard]` table: what dashboard users may put into a new key.
///
/// ```toml
/// [dashboard]
/// key_expiry_default = "90d"
/// key_expiry_max = "365d"
/// scopes = ["orders:read", "orders:write"]
/// invite_expiry = "72h"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    /// Lifetime that the create form proposes, default 90 days (or the
    /// maximum, when that is shorter).
    pub key_expiry_default: Option<String>,
    /// Maximum lifetime a dashboard user may choose, default 365 days, at
    /// most 1825 days.
    pub key_expiry_max: Option<String>,
    /// Scopes that dashboard users may grant. By default, every scope that
    /// a configured route requires.
    pub scopes: Option<Vec<String>>,
    /// How long an invite link works, default 72 hours, from 1 hour to 30
    /// days.
    pub invite_expiry: Option<String>,
}

/// The `[docs]` table: the documentation site under `/docs/`.
///
/// ```toml
/// [docs]
/// title = "Acme API documentation"
/// product_name = "Acme"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocs {
    /// Whether the main listener serves the documentation under `/docs/`;
    /// default `true`.
    pub enabled: Option<bool>,
    /// Heading and window title of every page; default `"API
    /// documentation"`.
    pub title: Option<String>,
    /// Name that replaces the word "Portcullis" in the text of the pages
    /// (not in code); default `"Portcullis"`.
    pub product_name: Option<String>,
    /// The set of pages the site publishes: `"all"` (the default) or
    /// `"consumers"`, the pages for API callers without those for
    /// operators.
    pub pages: Option<String>,
}

/// The `[audit]` table: how long audit records are kept.
///
/// ```toml
/// [audit]
/// retention = "400d"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Age past which audit records are pruned, such as `"400d"`; at least
    /// 7 days, default 400 days. Pruning keeps the chain verifiable.
    pub retention: Option<String>,
}

/// The `[metrics]` table: the Prometheus metrics listener.
///
/// ```toml
/// [metrics]
/// listen = "127.0.0.1:9464"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `IP:port` of the plain-HTTP listener that serves `GET /metrics`, or
    /// `"off"`; default `127.0.0.1:9464`. An address other than loopback is
    /// allowed, and logged as a warning at start, because the metrics tell
    /// anyone who can reach them about traffic and routes.
    pub listen: Option<String>,
}

/// The `[alerts]` table: anomaly rules and the webhooks alerts go to.
///
/// ```toml
/// [alerts.rate_spike]
/// factor = 10
/// [[alerts.webhooks]]
/// url = "https://hooks.example.com/portcullis"
/// secret_env = "PORTCULLIS_ALERT_WEBHOOK_SECRET"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Whether the anomaly rules run; default `true`. Leak reports raise
    /// alerts either way.
    pub enabled: Option<bool>,
    /// How long alerts are kept, such as `"90d"` (default), at most 366
    /// days. An alert with a pending delivery is kept until it ends.
    pub retention: Option<String>,
    /// A credential's request rate far above its own baseline.
    pub rate_spike: Option<RawRateSpikeRule>,
    /// Failed authentications per credential and per client address.
    pub failures: Option<RawFailureRule>,
    /// Revoked or expired keys still presented.
    pub revoked_key: Option<RawRevokedKeyRule>,
    /// A credential used from a network it never used before.
    pub new_network: Option<RawNewNetworkRule>,
    /// Retries of webhook deliveries.
    pub delivery: Option<RawDeliveryPolicy>,
    /// The webhooks every alert is sent to; default none.
    pub webhooks: Option<Vec<RawWebhook>>,
}

/// The `[alerts.rate_spike]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateSpikeRule {
    /// The counting window, such as `"1m"` (default).
    pub window: Option<String>,
    /// How many times its baseline a credential's window count must
    /// exceed; default 10, from 2 to 1000.
    pub factor: Option<u32>,
    /// The fewest requests in one window that can count as a spike;
    /// default 100.
    pub floor: Option<u64>,
    /// Windows of history a credential needs before it can spike; default
    /// 30.
    pub learning_windows: Option<u32>,
    /// The shortest time between two spike alerts of one credential, such
    /// as `"1h"` (default).
    pub cooldown: Option<String>,
}

/// The `[alerts.failures]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailureRule {
    /// The counting window, such as `"5m"` (default).
    pub window: Option<String>,
    /// Failures naming one key or OAuth client within the window that raise
    /// an alert; default 20.
    pub per_credential: Option<u32>,
    /// Failures from one client address within the window that raise an
    /// alert; default 100.
    pub per_source: Option<u32>,
}

/// The `[alerts.revoked_key]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevokedKeyRule {
    /// At most one alert per key within this period, such as `"1h"`
    /// (default).
    pub window: Option<String>,
}

/// The `[alerts.new_network]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNewNetworkRule {
    /// Prefix length of an IPv4 network; default 24, from 8 to 32.
    pub ipv4_prefix: Option<u8>,
    /// Prefix length of an IPv6 network; default 48, from 16 to 128.
    pub ipv6_prefix: Option<u8>,
    /// Time after a credential's first recorded use in which new networks
    /// raise no alert, such as `"7d"` (default).
    pub learning_period: Option<String>,
    /// Networks remembered per credential; default 100.
    pub max_networks: Option<u32>,
}

/// The `[alerts.delivery]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeliveryPolicy {
    /// Attempts before a delivery is given up; default 12.
    pub max_attempts: Option<u32>,
    /// Delay before the first retry, such as `"10s"` (default). Each later
    /// delay doubles, with jitter.
    pub first_retry: Option<String>,
    /// The longest delay between attempts, such as `"1h"` (default).
    pub max_retry: Option<String>,
    /// Time one attempt may take, such as `"10s"` (default), at most 60 s.
    pub timeout: Option<String>,
}

/// One `[[alerts.webhooks]]` entry: a URL and exactly one of `secret_env`
/// and `secret_file`. The secret is never written in this file, which is
/// often readable by more people than the secret should be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// The receiver: `https://…`, or `http://` to a loopback address.
    pub url: String,
    /// Name of the environment variable that holds the secret. It must
    /// start with `PORTCULLIS_` and contain no `__`.
    pub secret_env: Option<String>,
    /// File that holds the secret; trailing whitespace is dropped.
    pub secret_file: Option<PathBuf>,
}

/// The `[leaks]` table: leak reports in the format of GitHub's secret
/// scanning partner program, sent to `POST /v1/leaks`.
///
/// ```toml
/// [leaks]
/// action = "revoke"
/// public_keys = [{ id = "90a4…", pem_file = "/etc/portcullis/github-leaks.pem" }]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLeaks {
    /// Public keys whose signatures are accepted; default none, which
    /// rejects every report.
    pub public_keys: Option<Vec<RawLeakPublicKey>>,
    /// Action on a reported key that is still usable: `"revoke"` (default)
    /// or `"flag"`, which keeps the key and writes an audit record and a
    /// warning.
    pub action: Option<String>,
}

/// One entry of `leaks.public_keys`: an id and exactly one of `pem_file`
/// and `pem`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLeakPublicKey {
    /// The id that reports name in the `Github-Public-Key-Identifier`
    /// header.
    pub id: String,
    /// File with the PEM `PUBLIC KEY` (an ECDSA P-256 key).
    pub pem_file: Option<PathBuf>,
    /// The PEM `PUBLIC KEY` itself.
    pub pem: Option<String>,
}

/// The `[limits]` table: where rate limits are counted, and the limits that
/// keys, clients and tenants share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Redis server that every node counts limits in, such as
    /// `"redis://127.0.0.1:6379/0"` (`rediss://` for TLS); default none,
    /// which counts limits in each node's memory. The variable
    /// `PORTCULLIS_REDIS_URL` sets it too.
    pub redis_url: Option<String>,
    /// Behaviour of a node while Redis cannot be reached: `"local"`
    /// (default) counts limits in its own memory, and `"deny"` rejects
    /// limited requests with 503.
    pub redis_failure: Option<String>,
    /// Time in milliseconds one Redis call may take before the node treats
    /// Redis as unreachable, from 10 to 5000; default 250.
    pub redis_timeout_ms: Option<u64>,
    /// Rate that all credentials of one tenant share, such as
    /// `"1000/s burst 2000"`; default none.
    pub tenant: Option<String>,
    /// Named plans that keys and clients refer to; default none. A plan is
    /// a table of limit names and rates (`rate = "100/s burst 200"`,
    /// `hourly = "5000/h"`), and all of its limits apply.
    pub plans: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Thresholds of brute-force protection; defaults when left out.
    pub brute_force: Option<RawBruteForce>,
}

/// The `[limits.brute_force]` table: when failed authentications slow and
/// then block a client address or a targeted identity.
///
/// ```toml
/// [limits.brute_force.client_ip]
/// block_after = 20
/// window = "5m"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBruteForce {
    /// Thresholds per resolved client address.
    pub client_ip: Option<RawThresholds>,
    /// Thresholds per key prefix, OAuth client id or user e-mail address.
    pub identity: Option<RawThresholds>,
}

/// The thresholds of one kind of brute-force subject. Every field is
/// optional and falls back to its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThresholds {
    /// Failures within the window after which attempts are delayed.
    pub slow_after: Option<u32>,
    /// Failures within the window that start a block.
    pub block_after: Option<u32>,
    /// The period failures are counted over, such as `"5m"`.
    pub window: Option<String>,
    /// The first block, such as `"1m"`; each further block in a row doubles it.
    pub first_block: Option<String>,
    /// The maximum block, such as `"1h"`.
    pub max_block: Option<String>,
    /// The first delay in milliseconds; each further failure doubles it.
    pub delay_step_ms: Option<u64>,
    /// The maximum delay in milliseconds.
    pub max_delay_ms: Option<u64>,
}

/// The `[oauth]` table: the authorization server's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    /// The issuer identifier written into tokens and metadata, such as
    /// `"https://auth.example.com"`; default `https://localhost:PORT` with
    /// the listening port, which suits only local use.
    pub issuer: Option<String>,
    /// Default access-token lifetime, such as `"15m"`; default 15 minutes,
    /// at most 1 hour. Clients may set their own within the same bounds.
    pub access_token_ttl: Option<String>,
    /// Refresh-token lifetime, such as `"30d"`; default 30 days.
    pub refresh_token_ttl: Option<String>,
    /// Algorithm of new signing keys: `"ES256"` (default), `"RS256"` or
    /// `"EdDSA"`.
    pub signing_algorithm: Option<String>,
    /// How long a signing key signs before its successor takes over, such as
    /// `"30d"`; default 30 days.
    pub key_rotation: Option<String>,
    /// Clock leeway when checking `exp`, `nbf` and `iat`, such as `"60s"`;
    /// default 60 seconds, at most 10 minutes.
    pub leeway: Option<String>,
}

/// The `[server]` table.
/// A connection cap as written: a count, or a word such as `"off"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawConnectionCap {
    /// A number of connections; 0 switches the cap off.
    Count(i64),
    /// A word; only `"off"` is valid.
    Word(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `IP:port` to listen on; default `127.0.0.1:8443`.
    pub listen: Option<String>,
    /// Serve plain HTTP instead of HTTPS; default `false`. Allowed only when
    /// `listen` is a loopback address or `trusted_proxies` names the
    /// TLS-terminating proxy in front, and never together with `[server.tls]`.
    pub plain_http: Option<bool>,
    /// The operator's certificate; default: a development certificate
    /// created in `DATA_DIR/tls/`.
    pub tls: Option<RawTls>,
    /// Addresses (`10.0.0.1`) or networks (`10.0.0.0/8`) of proxies whose
    /// forwarding headers are believed; default none.
    pub trusted_proxies: Option<Vec<String>>,
    /// The header in which those proxies pass the client address:
    /// `"x-forwarded-for"` (default) or `"forwarded"`.
    pub forwarded_header: Option<String>,
    /// `"human"` (default) or `"json"`.
    pub log_format: Option<LogFormat>,
    /// Time in-flight requests get after a shutdown signal, such as `"30s"`;
    /// default 30 s.
    pub shutdown_grace: Option<String>,
    /// Maximum of open client connections; default 10,000.
    pub max_connections: Option<usize>,
    /// Maximum of open connections from one client address, an IPv6 client
    /// by its /64. `0` or `"off"` means no cap. Default: a tenth of
    /// `max_connections`. Trusted proxies are exempt.
    pub max_connections_per_address: Option<RawConnectionCap>,
    /// Time a client has to send an HTTP/1 request head, such as `"10s"`;
    /// default 10 s.
    pub header_read_timeout: Option<String>,
    /// Maximum pause between two parts of a request body, such as `"30s"`;
    /// default 30 s.
    pub body_read_timeout: Option<String>,
    /// Time a connection may stay open with no request in flight, such as
    /// `"60s"`; default 60 s.
    pub idle_timeout: Option<String>,
    /// Whether the listener asks TLS clients for a certificate: `"off"`
    /// (default), `"optional"` or `"required"`.
    pub client_certificates: Option<String>,
    /// PEM files with CRLs of trusted partner CAs, read at start and at each
    /// trust rebuild; default none. A file whose modification time or size
    /// changes is read again within about a second. Portcullis never
    /// downloads a CRL.
    pub partner_crls: Option<Vec<PathBuf>>,
    /// The format in which a TLS-terminating proxy in `trusted_proxies`
    /// forwards the client certificate: `"off"` (default), `"envoy"` or
    /// `"nginx"`.
    pub forwarded_client_certificate: Option<String>,
    /// The header that carries the forwarded certificate; default
    /// `x-forwarded-client-cert` for envoy and `x-ssl-client-cert` for
    /// nginx.
    pub forwarded_client_certificate_header: Option<String>,
}

/// The `[server.tls]` table: both keys or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the server certificate, then any intermediates.
    pub cert: Option<PathBuf>,
    /// PEM file with the server's private key.
    pub key: Option<PathBuf>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Path prefix that selects the route, such as `"/api"`; required.
    pub path_prefix: Option<String>,
    /// Base URL to forward to, such as `"http://127.0.0.1:9000"`; required.
    pub upstream: Option<String>,
    /// Remove the prefix from the path before forwarding; default `false`.
    pub strip_prefix: Option<bool>,
    /// Required scopes per method (`GET = ["customers:read"]`), with `"*"`
    /// for every other method; required. A method that is neither listed
    /// nor covered by `"*"` gets 405, `HEAD` follows `GET` unless listed,
    /// and an empty list (`"*" = []`) accepts any valid key.
    pub scopes: Option<BTreeMap<String, Vec<String>>>,
    /// Accepted ways to authenticate, any one of which is enough: `"api_key"`,
    /// `"jwt"` and `"mtls"` (a client certificate of an OAuth client);
    /// default `["api_key"]`.
    pub auth: Option<Vec<String>>,
    /// Time the upstream has to respond, such as `"30s"`; default 30 s.
    pub timeout: Option<String>,
    /// Maximum request body size in bytes; default 10485760 (10 MiB).
    pub max_body_bytes: Option<u64>,
    /// The audience a bearer JWT must name to be accepted on this route,
    /// such as `"https://api.example.com"`; required when `auth` lists
    /// `"jwt"`. Clients ask for it with the `resource` parameter (RFC 8707).
    pub audience: Option<String>,
    /// Rate that all callers of the route share, such as `"500/s burst
    /// 1000"`; default none.
    pub rate_limit: Option<String>,
    /// `"required"` makes a request present a client certificate besides
    /// its access token, and the token's client must be the certificate's
    /// client; default `"optional"`. Not allowed with `"api_key"` in `auth`.
    pub client_certificate: Option<String>,
}

/// Top level with the sections left as TOML, so that each section can be
/// deserialized on its own and its errors prefixed with its path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    server: Option<toml::Value>,
    routes: Option<Vec<toml::Value>>,
    oauth: Option<toml::Value>,
    limits: Option<toml::Value>,
    leaks: Option<toml::Value>,
    metrics: Option<toml::Value>,
    alerts: Option<toml::Value>,
    audit_policy: Option<toml::Value>,
    audit: Option<toml::Value>,
    dashboard: Option<toml::Value>,
    docs: Option<toml::Value>,
}

impl RawConfig {
    /// Deserializes a parsed file. Errors name the setting, such as
    /// `routes[1].timeout`, which deserializing the whole table at once
    /// would lose for array elements.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let sections: Sections = toml::Value::Table(table)
            .try_into()
            .map_err(|error| deserialize_error("", &error))?;

        let server = sections
            .server
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("server", &error))
            })
            .transpose()?;

        let routes = sections
            .routes
            .map(|routes| {
                routes
                    .into_iter()
                    .enumerate()
                    .map(|(index, value)| {
                        value
                            .try_into()
                            .map_err(|error| deserialize_error(&format!("routes[{index}]"), &error))
                    })
                    .collect::<Result<Vec<RawRoute>, _>>()
            })
            .transpose()?;

        let oauth = sections
            .oauth
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("oauth", &error))
            })
            .transpose()?;

        let limits = sections
            .limits
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("limits", &error))
            })
            .transpose()?;

        let leaks = sections
            .leaks
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("leaks", &error))
            })
            .transpose()?;

        let metrics = sections
            .metrics
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("metrics", &error))
            })
            .transpose()?;

        let alerts = sections
            .alerts
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("alerts", &error))
            })
            .transpose()?;

        let audit_policy = sections
            .audit_policy
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("audit_policy", &error))
            })
            .transpose()?;

        let audit = sections
            .audit
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("audit", &error))
            })
            .transpose()?;

        let dashboard = sections
            .dashboard
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("dashboard", &error))
            })
            .transpose()?;

        let docs = sections
            .docs
            .map(|value| {
                value
                    .try_into()
                    .map_err(|error| deserialize_error("docs", &error))
            })
            .transpose()?;

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

/// Turns a deserialization error into one that names the setting: `prefix`
/// joined with the keys below it where toml recorded them.
fn deserialize_error(prefix: &str, error: &toml::de::Error) -> ConfigError {
    let setting = match (prefix, key_path(error)) {
        ("", None) => "configuration".to_owned(),
        ("", Some(keys)) => keys,
        (prefix, None) => prefix.to_owned(),
        (prefix, Some(keys)) => format!("{prefix}.{keys}"),
    };
    ConfigError::invalid(setting, error.message())
}

/// Returns the dotted key path toml 1.x recorded for an error. It keeps the keys
/// private and prints them as a last line "in `a.b`" when the error has no
/// position in a source text, which is the case for `Value::try_into`.
fn key_path(error: &toml::de::Error) -> Option<String> {
    let text = error.to_string();
    let last = text.trim_end().lines().last()?;
    let keys = last.strip_prefix("in `")?.strip_suffix('`')?;
    Some(keys.to_owned())
}
