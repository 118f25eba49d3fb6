//! The `[alerts]` table, checked: thresholds of the anomaly rules, the
//! delivery policy and the webhooks, whose secrets are read from the
//! environment or a file when the configuration loads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::crypto::{constant_time_eq, sha256};
use secrecy::{ExposeSecret, SecretSlice};

use super::ConfigError;
use super::env::PREFIX;
use super::raw::{
    RawAlerts, RawDeliveryPolicy, RawFailureRule, RawNewNetworkRule, RawRateSpikeRule,
    RawRevokedKeyRule, RawWebhook,
};
use super::validate::check_duration;

/// Maximum number of webhooks. Each alert is queued once per webhook.
pub const MAX_WEBHOOKS: usize = 16;

/// Shortest accepted webhook secret, in bytes: 256 bits of text such as
/// the output of `openssl rand -hex 32` is 64 bytes, and anything shorter
/// than 32 bytes is too easy to guess offline from one signed request.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 32;

/// Longest accepted webhook secret, in bytes.
pub const MAX_WEBHOOK_SECRET_LEN: usize = 1024;

/// Default time alerts are kept: 90 days, so an incident noticed weeks
/// late still has its alerts.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Upper bound of every window, period and retry setting: one year.
const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Upper bound of the per-attempt timeout of a webhook request.
const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// Upper bound of the attempts per delivery.
const MAX_ATTEMPTS: u32 = 100;

/// Upper bound of the networks remembered per credential.
const MAX_NETWORKS_PER_CREDENTIAL: u32 = 10_000;

/// The `[alerts]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Whether the rules run at all. Alerts from leak reports are raised
    /// either way.
    pub enabled: bool,
    /// How long alerts are kept.
    pub retention: Duration,
    /// Rate spike against a credential's own baseline.
    pub rate_spike: RateSpikeRule,
    /// Failed authentications per credential and per client address.
    pub failures: FailureRule,
    /// Uses of revoked or expired keys.
    pub revoked_key: RevokedKeyRule,
    /// First use of a credential from a network.
    pub new_network: NewNetworkRule,
    /// Retries of webhook deliveries.
    pub delivery: DeliveryPolicy,
    /// The webhooks every alert is sent to, in file order.
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: DEFAULT_RETENTION,
            rate_spike: RateSpikeRule::default(),
            failures: FailureRule::default(),
            revoked_key: RevokedKeyRule::default(),
            new_network: NewNetworkRule::default(),
            delivery: DeliveryPolicy::default(),
            webhooks: Vec::new(),
        }
    }
}

/// When a credential's request rate counts as a spike: a window's count at
/// least `floor` and more than `factor` times the credential's baseline,
/// the exponentially weighted moving average of its earlier windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSpikeRule {
    /// The counting window.
    pub window: Duration,
    /// How many times the baseline a window must exceed.
    pub factor: u32,
    /// The minimum request count of a window that can be a spike, so a
    /// quiet key does not alert on a handful of calls.
    pub floor: u64,
    /// Windows a credential must have been seen for before its baseline
    /// counts.
    pub learning_windows: u32,
    /// The shortest time between two spike alerts of one credential.
    pub cooldown: Duration,
}

impl Default for RateSpikeRule {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            factor: 10,
            floor: 100,
            learning_windows: 30,
            cooldown: Duration::from_secs(60 * 60),
        }
    }
}

/// When failed authentications raise an alert: `per_credential` failures
/// naming one key or client, or `per_source` failures from one client
/// address, within one window. Each subject alerts at most once per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRule {
    /// The counting window.
    pub window: Duration,
    /// Failures against one credential that raise an alert.
    pub per_credential: u32,
    /// Failures from one client address that raise an alert.
    pub per_source: u32,
}

impl Default for FailureRule {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(5 * 60),
            per_credential: 20,
            per_source: 100,
        }
    }
}

/// How often one revoked or expired key may raise an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedKeyRule {
    /// At most one alert per key per this period.
    pub window: Duration,
}

impl Default for RevokedKeyRule {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60 * 60),
        }
    }
}

/// When a credential counts as used from a new network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNetworkRule {
    /// Prefix length that groups IPv4 addresses into one network.
    pub ipv4_prefix: u8,
    /// Prefix length that groups IPv6 addresses into one network.
    pub ipv6_prefix: u8,
    /// Time after a credential's first recorded use during which new
    /// networks are learned without an alert.
    pub learning_period: Duration,
    /// Networks remembered per credential; past it, the least recently
    /// used one is forgotten.
    pub max_networks: u32,
}

impl Default for NewNetworkRule {
    fn default() -> Self {
        Self {
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            learning_period: Duration::from_secs(7 * 24 * 60 * 60),
            max_networks: 100,
        }
    }
}

/// Retries of a webhook delivery: the first retry after `first_retry`,
/// each later one after twice the previous delay up to `max_retry`, with
/// random jitter, and at most `max_attempts` attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub first_retry: Duration,
    /// The maximum delay between two attempts.
    pub max_retry: Duration,
    /// Time one attempt may take, connection included.
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            first_retry: Duration::from_secs(10),
            max_retry: Duration::from_secs(60 * 60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One webhook: where alerts go and the secret that signs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// A stable id derived from the URL, stored with each delivery so that
    /// deliveries queued before a restart find their webhook again.
    pub id: String,
    /// The URL: https, or http to a loopback address.
    pub url: url::Url,
    /// The source of the secret.
    pub secret_source: SecretSource,
    /// The secret, read from its source when the configuration loads.
    /// `None` only in a configuration checked without its environment.
    pub secret: Option<WebhookSecret>,
}

/// The source of a webhook secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable, by name.
    Environment(String),
    /// A file, whose trailing whitespace is dropped.
    File(PathBuf),
}

/// The shared secret of a webhook. `Debug` does not print it, and equality
/// is checked in constant time.
#[derive(Clone)]
pub struct WebhookSecret(Arc<SecretSlice<u8>>);

impl WebhookSecret {
    /// Returns the secret's bytes, for the signing key.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.expose(), other.expose())
    }
}

impl Eq for WebhookSecret {}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// Checks the `[alerts]` table. Webhook secrets stay unread until
/// [`read_webhook_secrets`].
pub(super) fn check_alerts(raw: RawAlerts) -> Result<AlertsConfig, ConfigError> {
    let raw_webhooks = raw.webhooks.unwrap_or_default();
    if raw_webhooks.len() > MAX_WEBHOOKS {
        return Err(ConfigError::invalid(
            "alerts.webhooks",
            format!("at most {MAX_WEBHOOKS} webhooks are allowed"),
        ));
    }
    let mut webhooks: Vec<WebhookConfig> = Vec::with_capacity(raw_webhooks.len());
    for (index, raw_webhook) in raw_webhooks.into_iter().enumerate() {
        let webhook = check_webhook(index, raw_webhook)?;
        if let Some(earlier) = webhooks.iter().position(|w| w.url == webhook.url) {
            return Err(ConfigError::invalid(
                format!("alerts.webhooks[{index}].url"),
                format!("the same URL as alerts.webhooks[{earlier}]; each URL may appear once"),
            ));
        }
        webhooks.push(webhook);
    }
    Ok(AlertsConfig {
        enabled: raw.enabled.unwrap_or(true),
        retention: check_period("alerts", "retention", raw.retention, DEFAULT_RETENTION)?,
        rate_spike: check_rate_spike(raw.rate_spike.unwrap_or_default())?,
        failures: check_failures(raw.failures.unwrap_or_default())?,
        revoked_key: check_revoked_key(raw.revoked_key.unwrap_or_default())?,
        new_network: check_new_network(raw.new_network.unwrap_or_default())?,
        delivery: check_delivery(raw.delivery.unwrap_or_default())?,
        webhooks,
    })
}

/// Reads each webhook's secret from `env` (the `PORTCULLIS_*` variables)
/// or its file.
pub(super) fn read_webhook_secrets(
    alerts: &mut AlertsConfig,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (index, webhook) in alerts.webhooks.iter_mut().enumerate() {
        let text = match &webhook.secret_source {
            SecretSource::Environment(variable) => {
                let setting = format!("alerts.webhooks[{index}].secret_env");
                env.get(variable).cloned().ok_or_else(|| {
                    ConfigError::invalid(
                        setting,
                        format!("the environment variable {variable} is not set"),
                    )
                })?
            }
            SecretSource::File(path) => std::fs::read_to_string(path).map_err(|error| {
                ConfigError::invalid(
                    format!("alerts.webhooks[{index}].secret_file"),
                    format!("failed to read {}: {error}", path.display()),
                )
            })?,
        };
        let secret = text.trim_end().as_bytes().to_vec();
        if !(MIN_WEBHOOK_SECRET_LEN..=MAX_WEBHOOK_SECRET_LEN).contains(&secret.len()) {
            let setting = match webhook.secret_source {
                SecretSource::Environment(_) => "secret_env",
                SecretSource::File(_) => "secret_file",
            };
            return Err(ConfigError::invalid(
                format!("alerts.webhooks[{index}].{setting}"),
                format!(
                    "the secret must be {MIN_WEBHOOK_SECRET_LEN} to {MAX_WEBHOOK_SECRET_LEN} \
                     bytes; generate one with `openssl rand -hex 32`"
                ),
            ));
        }
        webhook.secret = Some(WebhookSecret(Arc::new(SecretSlice::from(secret))));
    }
    Ok(())
}

fn check_webhook(index: usize, raw: RawWebhook) -> Result<WebhookConfig, ConfigError> {
    let setting = |key: &str| format!("alerts.webhooks[{index}].{key}");
    let url = check_webhook_url(&raw.url)
        .map_err(|message| ConfigError::invalid(setting("url"), message))?;
    let secret_source = match (raw.secret_env, raw.secret_file) {
        (Some(variable), None) => {
            if !variable.starts_with(PREFIX) || variable.contains("__") || variable == PREFIX {
                return Err(ConfigError::invalid(
                    setting("secret_env"),
                    format!(
                        "{variable:?} is not read: name a variable that starts with {PREFIX} \
                         and has no \"__\", such as PORTCULLIS_ALERT_WEBHOOK_SECRET"
                    ),
                ));
            }
            SecretSource::Environment(variable)
        }
        (None, Some(path)) => SecretSource::File(path),
        _ => {
            return Err(ConfigError::invalid(
                format!("alerts.webhooks[{index}]"),
                "set exactly one of secret_env and secret_file",
            ));
        }
    };
    let digest = sha256(url.as_str().as_bytes());
    let id = digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(WebhookConfig {
        id,
        url,
        secret_source,
        secret: None,
    })
}

/// Checks a webhook URL: https with a host, or http to a loopback address
/// (for a receiver on the same machine), without user name or fragment.
fn check_webhook_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|error| format!("invalid URL {text:?}: {error}"))?;
    let Some(host) = url.host() else {
        return Err("the URL has no host".to_owned());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("remove the user name and password from the URL".to_owned());
    }
    if url.fragment().is_some() {
        return Err("remove the fragment (#…) from the URL".to_owned());
    }
    let loopback = match host {
        url::Host::Ipv4(address) => IpAddr::V4(address).is_loopback(),
        url::Host::Ipv6(address) => IpAddr::V6(address).is_loopback(),
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("use https; plain http is allowed only to a loopback address".to_owned()),
        other => Err(format!("unsupported scheme {other:?}: use https")),
    }
}

fn check_rate_spike(raw: RawRateSpikeRule) -> Result<RateSpikeRule, ConfigError> {
    let defaults = RateSpikeRule::default();
    let table = "alerts.rate_spike";
    let rule = RateSpikeRule {
        window: check_period(table, "window", raw.window, defaults.window)?,
        factor: raw.factor.unwrap_or(defaults.factor),
        floor: raw.floor.unwrap_or(defaults.floor),
        learning_windows: raw.learning_windows.unwrap_or(defaults.learning_windows),
        cooldown: check_period(table, "cooldown", raw.cooldown, defaults.cooldown)?,
    };
    check_range(table, "factor", u64::from(rule.factor), 2, 1_000)?;
    check_range(table, "floor", rule.floor, 1, 100_000_000)?;
    check_range(
        table,
        "learning_windows",
        u64::from(rule.learning_windows),
        1,
        100_000,
    )?;
    Ok(rule)
}

fn check_failures(raw: RawFailureRule) -> Result<FailureRule, ConfigError> {
    let defaults = FailureRule::default();
    let table = "alerts.failures";
    let rule = FailureRule {
        window: check_period(table, "window", raw.window, defaults.window)?,
        per_credential: raw.per_credential.unwrap_or(defaults.per_credential),
        per_source: raw.per_source.unwrap_or(defaults.per_source),
    };
    check_range(
        table,
        "per_credential",
        u64::from(rule.per_credential),
        1,
        1_000_000,
    )?;
    check_range(
        table,
        "per_source",
        u64::from(rule.per_source),
        1,
        1_000_000,
    )?;
    Ok(rule)
}

fn check_revoked_key(raw: RawRevokedKeyRule) -> Result<RevokedKeyRule, ConfigError> {
    let defaults = RevokedKeyRule::default();
    Ok(RevokedKeyRule {
        window: check_period("alerts.revoked_key", "window", raw.window, defaults.window)?,
    })
}

fn check_new_network(raw: RawNewNetworkRule) -> Result<NewNetworkRule, ConfigError> {
    let defaults = NewNetworkRule::default();
    let table = "alerts.new_network";
    let rule = NewNetworkRule {
        ipv4_prefix: raw.ipv4_prefix.unwrap_or(defaults.ipv4_prefix),
        ipv6_prefix: raw.ipv6_prefix.unwrap_or(defaults.ipv6_prefix),
        learning_period: check_period(
            table,
            "learning_period",
            raw.learning_period,
            defaults.learning_period,
        )?,
        max_networks: raw.max_networks.unwrap_or(defaults.max_networks),
    };
    check_range(table, "ipv4_prefix", u64::from(rule.ipv4_prefix), 8, 32)?;
    check_range(table, "ipv6_prefix", u64::from(rule.ipv6_prefix), 16, 128)?;
    check_range(
        table,
        "max_networks",
        u64::from(rule.max_networks),
        1,
        u64::from(MAX_NETWORKS_PER_CREDENTIAL),
    )?;
    Ok(rule)
}

fn check_delivery(raw: RawDeliveryPolicy) -> Result<DeliveryPolicy, ConfigError> {
    let defaults = DeliveryPolicy::default();
    let table = "alerts.delivery";
    let policy = DeliveryPolicy {
        max_attempts: raw.max_attempts.unwrap_or(defaults.max_attempts),
        first_retry: check_period(table, "first_retry", raw.first_retry, defaults.first_retry)?,
        max_retry: check_period(table, "max_retry", raw.max_retry, defaults.max_retry)?,
        timeout: check_period(table, "timeout", raw.timeout, defaults.timeout)?,
    };
    check_range(
        table,
        "max_attempts",
        u64::from(policy.max_attempts),
        1,
        u64::from(MAX_ATTEMPTS),
    )?;
    if policy.first_retry > policy.max_retry {
        return Err(ConfigError::invalid(
            format!("{table}.first_retry"),
            "must not exceed max_retry",
        ));
    }
    if policy.timeout > MAX_WEBHOOK_TIMEOUT {
        return Err(ConfigError::invalid(
            format!("{table}.timeout"),
            format!("at most {}s", MAX_WEBHOOK_TIMEOUT.as_secs()),
        ));
    }
    Ok(policy)
}

/// Checks a duration setting of `table` within one second and
/// [`MAX_PERIOD`].
fn check_period(
    table: &str,
    field: &str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let setting = format!("{table}.{field}");
    let period = check_duration(&setting, text, default)?;
    if period > MAX_PERIOD {
        return Err(ConfigError::invalid(setting, "at most 366d"));
    }
    Ok(period)
}

fn check_range(
    table: &str,
    field: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            format!("{table}.{field}"),
            format!("{value} is out of range: expected {min} to {max}"),
        ))
    }
}
