//! The `[limits]` table and route rate limits, checked.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::ratelimit::brute_force::BruteForcePolicy;
use crate::ratelimit::redis::{DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT};
use crate::ratelimit::{FailurePolicy, LimitName, Rate};

use super::ConfigError;
use super::raw::RawLimits;

/// The environment variable that sets `limits.redis_url`. The generic
/// `PORTCULLIS_LIMITS__REDIS_URL` is applied after it and wins when both
/// are set.
pub const REDIS_URL_VARIABLE: &str = "PORTCULLIS_REDIS_URL";

/// Maximum limits in one plan. With the key's or client's own limit, the
/// tenant's and the route's, one request then has at most 11 limits, within
/// the 16 that one Redis check takes.
pub const MAX_PLAN_LIMITS: usize = 8;

/// Maximum number of plans.
pub const MAX_PLANS: usize = 1_000;

/// Limit names that the gateway gives its own limits, which a plan's limit
/// may not take, so that a header or a 429 names one limit unambiguously.
/// A key's or client's further own limits are numbered (`key-2`,
/// `client-3`), so those forms are reserved too.
pub const RESERVED_LIMIT_NAMES: [&str; 4] = ["key", "client", "tenant", "route"];

/// Returns whether `name` is a reserved name, or a reserved name followed
/// by `-` and a number.
fn is_reserved_limit_name(name: &str) -> bool {
    RESERVED_LIMIT_NAMES.iter().any(|reserved| {
        let Some(rest) = name.strip_prefix(reserved) else {
            return false;
        };
        match rest.strip_prefix('-') {
            Some(number) => !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit()),
            None => rest.is_empty(),
        }
    })
}

/// The `[limits]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// The Redis server that limits are counted in, or `None` for memory.
    pub redis_url: Option<RedisUrl>,
    /// Behaviour of a node while Redis cannot be reached.
    pub redis_failure: FailurePolicy,
    /// Time one Redis call may take before it counts as failed.
    pub redis_timeout: Duration,
    /// Rate shared by all credentials of one tenant.
    pub tenant: Option<Rate>,
    /// Plans by name.
    pub plans: BTreeMap<String, Plan>,
    /// When failed authentications slow and block a source.
    pub brute_force: BruteForcePolicy,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_failure: FailurePolicy::default(),
            redis_timeout: DEFAULT_TIMEOUT,
            tenant: None,
            plans: BTreeMap::new(),
            brute_force: BruteForcePolicy::default(),
        }
    }
}

/// A named set of limits, all of which apply to a key or client on the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The limits, ordered by name.
    pub limits: Vec<(LimitName, Rate)>,
}

/// A Redis URL. It may contain a password, so `Debug` shows only the
/// scheme, host and port.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(url::Url);

impl RedisUrl {
    /// Returns the whole URL, password included, for the Redis client.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Returns `scheme://host:port` without credentials or database, for
    /// logs.
    pub fn redacted(&self) -> String {
        let host = self.0.host_str().unwrap_or("");
        match self.0.port() {
            Some(port) => format!("{}://{host}:{port}", self.0.scheme()),
            None => format!("{}://{host}", self.0.scheme()),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.redacted()).finish()
    }
}

/// Checks the `[limits]` table.
pub(super) fn check_limits(raw: RawLimits) -> Result<LimitsConfig, ConfigError> {
    let redis_url = raw
        .redis_url
        .map(|text| {
            check_redis_url(&text)
                .map_err(|message| ConfigError::invalid("limits.redis_url", message))
        })
        .transpose()?;

    let redis_failure = match raw.redis_failure.as_deref() {
        None | Some("local") => FailurePolicy::Local,
        Some("deny") => FailurePolicy::Deny,
        Some(other) => {
            return Err(ConfigError::invalid(
                "limits.redis_failure",
                format!("unknown value {other:?}; write \"local\" or \"deny\""),
            ));
        }
    };

    let redis_timeout = match raw.redis_timeout_ms {
        None => DEFAULT_TIMEOUT,
        Some(millis) => check_redis_timeout(millis)?,
    };

    let tenant = raw
        .tenant
        .map(|text| check_rate("limits.tenant", &text))
        .transpose()?;

    let raw_plans = raw.plans.unwrap_or_default();
    if raw_plans.len() > MAX_PLANS {
        return Err(ConfigError::invalid(
            "limits.plans",
            format!(
                "{} plans configured, at most {MAX_PLANS}; merge plans that share limits",
                raw_plans.len()
            ),
        ));
    }
    let mut plans = BTreeMap::new();
    for (name, raw_limits) in raw_plans {
        let plan = check_plan(&name, raw_limits)?;
        plans.insert(name, plan);
    }

    let brute_force = super::brute_force::check_brute_force(raw.brute_force.unwrap_or_default())?;

    Ok(LimitsConfig {
        redis_url,
        redis_failure,
        redis_timeout,
        tenant,
        plans,
        brute_force,
    })
}

/// Parses a rate setting such as `routes[0].rate_limit`.
pub(super) fn check_rate(setting: &str, text: &str) -> Result<Rate, ConfigError> {
    text.parse::<Rate>()
        .map_err(|error| ConfigError::invalid(setting, error.to_string()))
}

fn check_plan(name: &str, raw: BTreeMap<String, String>) -> Result<Plan, ConfigError> {
    let setting = format!("limits.plans.{name}");
    if LimitName::new(name).is_err() {
        return Err(ConfigError::invalid(
            setting,
            "invalid plan name; use 1 to 32 lowercase letters, digits, '-' or '_'",
        ));
    }
    if raw.is_empty() {
        return Err(ConfigError::invalid(
            setting,
            "the plan has no limits; add one such as rate = \"100/s burst 200\"",
        ));
    }
    if raw.len() > MAX_PLAN_LIMITS {
        return Err(ConfigError::invalid(
            setting,
            format!(
                "{} limits in one plan, at most {MAX_PLAN_LIMITS}",
                raw.len()
            ),
        ));
    }
    let mut limits = Vec::with_capacity(raw.len());
    for (limit, text) in raw {
        let limit_setting = format!("{setting}.{limit}");
        if is_reserved_limit_name(&limit) {
            return Err(ConfigError::invalid(
                limit_setting,
                format!(
                    "{limit:?} is the name of a built-in limit; name the plan's limit after \
                     its period instead, such as \"rate\" or \"hourly\""
                ),
            ));
        }
        let limit_name = LimitName::new(&limit).map_err(|_| {
            ConfigError::invalid(
                limit_setting.clone(),
                "invalid limit name; use 1 to 32 lowercase letters, digits, '-' or '_'",
            )
        })?;
        let rate = check_rate(&limit_setting, &text)?;
        limits.push((limit_name, rate));
    }
    Ok(Plan { limits })
}

fn check_redis_timeout(millis: u64) -> Result<Duration, ConfigError> {
    let timeout = Duration::from_millis(millis);
    if timeout < MIN_TIMEOUT || timeout > MAX_TIMEOUT {
        return Err(ConfigError::invalid(
            "limits.redis_timeout_ms",
            format!(
                "{millis} is out of range; write a timeout from {} to {} milliseconds",
                MIN_TIMEOUT.as_millis(),
                MAX_TIMEOUT.as_millis()
            ),
        ));
    }
    Ok(timeout)
}

fn check_redis_url(text: &str) -> Result<RedisUrl, String> {
    // The parse error of `url` never echoes the input, which may hold a
    // password, and neither does this message.
    let url = url::Url::parse(text)
        .map_err(|error| format!("invalid URL ({error}); expected redis://HOST:PORT/DB"))?;
    if url.scheme() != "redis" && url.scheme() != "rediss" {
        return Err(format!(
            "unsupported scheme {:?}; use redis:// or rediss:// (TLS)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host; expected redis://HOST:PORT/DB".to_owned());
    }
    Ok(RedisUrl(url))
}
