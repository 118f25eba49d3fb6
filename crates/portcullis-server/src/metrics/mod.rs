//! Prometheus metrics: what Portcullis counts and times, and the listener
//! that serves them.
//!
//! - [`labels`]: the label set of every metric, as typed structs.
//! - [`server`]: the separate `/metrics` listener (`[metrics] listen`).
//!
//! The metrics live in one process-wide [`Metrics`], created by [`enable`]
//! when the metrics listener is configured. Until then [`get`] returns
//! `None` and every recording call is one atomic load, so a server with
//! `listen = "off"` pays nearly nothing. Recording touches atomics and the
//! short-lived locks of `prometheus-client`'s families and histograms,
//! never across an `.await`.

pub mod labels;
pub mod server;

use std::sync::OnceLock;
use std::time::Duration;

use portcullis_store::StoreError;
use portcullis_store::observe::StoreObserver;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use labels::{
    AlertLabels, AuthLabels, BuildLabels, CacheLabels, CertificateLabels, GrantLabels,
    GrantTypeLabel, LimitLabels, RedisErrorLabels, RedisLabels, RequestLabels, RouteLabels,
    StoreErrorLabels, StoreLabels,
};
pub use labels::{
    AuthMethodLabel, AuthOutcome, LimitKind, MethodLabel, RedisComponent, RedisErrorKind,
    RouteLabel, StatusClass,
};

use crate::problem::Problem;
use crate::telemetry::FactsHandle;

/// Bucket bounds of whole-request latency, in seconds: 0.5 ms to 30 s,
/// which covers a cached key check and the default upstream timeout.
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// Bucket bounds of authentication latency, in seconds: 50 µs (a cached
/// key) to 5 s, above the longest brute-force delay of 2 s by default.
const AUTH_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
];

/// Bucket bounds of store and Redis call latency, in seconds.
const BACKEND_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// The bucket bounds of a histogram family, which builds each new
/// histogram with them.
#[derive(Clone, Copy, Debug)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistogramFamily<S> = Family<S, Histogram, Buckets>;

/// Every Portcullis metric, registered under the `portcullis_` prefix.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    authentication_duration: HistogramFamily<AuthLabels>,
    cache_lookups: Family<CacheLabels, Counter>,
    rate_limit_rejections: Family<LimitLabels, Counter>,
    brute_force_blocks: Counter,
    brute_force_delays: Counter,
    connections_rejected_per_address: Counter,
    store_duration: HistogramFamily<StoreLabels>,
    store_errors: Family<StoreErrorLabels, Counter>,
    redis_duration: HistogramFamily<RedisLabels>,
    redis_errors: Family<RedisErrorLabels, Counter>,
    redis_outages: Family<RedisLabels, Counter>,
    redis_fallbacks: Family<RedisLabels, Counter>,
    redis_up: Family<RedisLabels, Gauge>,
    tokens_issued: Family<GrantLabels, Counter>,
    certificate_verifications: Family<CertificateLabels, Counter>,
    alerts_raised: Family<AlertLabels, Counter>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Creates the process-wide metrics, once, and routes store operations to
/// them. Later calls return the same metrics.
pub fn enable() -> &'static Metrics {
    let metrics = METRICS.get_or_init(Metrics::new);
    portcullis_store::observe::set_observer(metrics);
    metrics
}

/// Returns the process-wide metrics, or `None` while they are not enabled.
pub fn get() -> Option<&'static Metrics> {
    METRICS.get()
}

/// Counts one alert raised by the rule named `rule`. The name must come
/// from a fixed list in the code (hence `&'static str`), never from input,
/// so that the label stays bounded. Does nothing while metrics are off.
pub fn record_alert(rule: &'static str) {
    if let Some(metrics) = get() {
        metrics
            .alerts_raised
            .get_or_create(&AlertLabels { rule })
            .inc();
    }
}

/// Records one authentication: its duration, and its method and outcome
/// for the request's own counter. Does nothing while metrics are off.
pub fn record_authentication(
    facts: &FactsHandle,
    method: AuthMethodLabel,
    outcome: AuthOutcome,
    elapsed: Duration,
) {
    let Some(metrics) = get() else {
        return;
    };
    facts.update(|facts| {
        facts.auth_method = Some(method);
        facts.auth_outcome = Some(outcome);
    });
    metrics
        .authentication_duration
        .get_or_create(&AuthLabels { method, outcome })
        .observe(elapsed.as_secs_f64());
}

/// Returns the outcome of an authentication that ended in `result`.
pub fn auth_outcome<T>(result: &Result<T, Problem>) -> AuthOutcome {
    let Err(problem) = result else {
        return AuthOutcome::Success;
    };
    match problem.code() {
        "missing_credential" => AuthOutcome::Missing,
        "authentication_blocked" => AuthOutcome::Blocked,
        _ if problem.status().is_server_error() => AuthOutcome::Error,
        _ => AuthOutcome::Rejected,
    }
}

impl Metrics {
    fn new() -> Self {
        let metrics = Self {
            registry: Registry::with_prefix("portcullis"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(Buckets(&REQUEST_BUCKETS)),
            authentication_duration: Family::new_with_constructor(Buckets(&AUTH_BUCKETS)),
            cache_lookups: Family::default(),
            rate_limit_rejections: Family::default(),
            brute_force_blocks: Counter::default(),
            brute_force_delays: Counter::default(),
            connections_rejected_per_address: Counter::default(),
            store_duration: Family::new_with_constructor(Buckets(&BACKEND_BUCKETS)),
            store_errors: Family::default(),
            redis_duration: Family::new_with_constructor(Buckets(&BACKEND_BUCKETS)),
            redis_errors: Family::default(),
            redis_outages: Family::default(),
            redis_fallbacks: Family::default(),
            redis_up: Family::default(),
            tokens_issued: Family::default(),
            certificate_verifications: Family::default(),
            alerts_raised: Family::default(),
        };
        metrics.register()
    }

    /// Registers every metric with its help text. Counter names leave out
    /// `_total`, which the encoder adds.
    fn register(mut self) -> Self {
        let registry = &mut self.registry;

        registry.register(
            "http_requests",
            "Requests served by the main listener, by route, method, status class and \
             authentication",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to its response head, by route",
            self.request_duration.clone(),
        );
        registry.register(
            "authentication_duration_seconds",
            "Time to check a request's credential, brute-force delays included",
            self.authentication_duration.clone(),
        );

        registry.register(
            "credential_cache_lookups",
            "API key lookups in the credential cache, by hit or miss",
            self.cache_lookups.clone(),
        );
        registry.register(
            "rate_limit_rejections",
            "Requests rejected by a rate limit, by the kind of the deciding limit",
            self.rate_limit_rejections.clone(),
        );
        registry.register(
            "brute_force_blocks",
            "Authentication attempts refused because their source or identity is blocked",
            self.brute_force_blocks.clone(),
        );
        registry.register(
            "connections_rejected_per_address",
            "Connections closed at accept because their client address already had \
             server.max_connections_per_address open",
            self.connections_rejected_per_address.clone(),
        );
        registry.register(
            "brute_force_delays",
            "Authentication attempts delayed after repeated failures",
            self.brute_force_delays.clone(),
        );

        registry.register(
            "store_operation_duration_seconds",
            "Time of each store operation, by operation",
            self.store_duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed in the database (not not-found or conflict \
             answers), by operation and error kind",
            self.store_errors.clone(),
        );
        registry.register(
            "redis_command_duration_seconds",
            "Time of each Redis call, by component",
            self.redis_duration.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis calls that failed or timed out, by component and kind",
            self.redis_errors.clone(),
        );
        registry.register(
            "redis_outages",
            "Times Redis became unreachable, by component",
            self.redis_outages.clone(),
        );
        registry.register(
            "redis_fallbacks",
            "Checks decided without Redis while it was unreachable (in local memory, or \
             denied by redis_failure = \"deny\"), by component",
            self.redis_fallbacks.clone(),
        );
        registry.register(
            "redis_up",
            "Whether the component considers Redis reachable (1) or in an outage (0)",
            self.redis_up.clone(),
        );

        registry.register(
            "tokens_issued",
            "Access tokens issued by the token endpoint, by grant type",
            self.tokens_issued.clone(),
        );
        registry.register(
            "certificate_verifications",
            "Client certificate chain verifications, by outcome (valid or the rejection code)",
            self.certificate_verifications.clone(),
        );
        registry.register(
            "alerts_raised",
            "Alerts raised, by rule",
            self.alerts_raised.clone(),
        );

        registry.register(
            "build",
            "The Portcullis version; the value is always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let start_time: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
        start_time.set(time::OffsetDateTime::now_utc().unix_timestamp() as f64);
        registry.register(
            "start_time_seconds",
            "Unix time at which the process enabled its metrics; uptime is time() minus this",
            start_time,
        );
        self
    }

    /// Writes every metric in the Prometheus text exposition format 0.0.4.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Records a finished request of the main listener.
    pub fn record_request(&self, labels: &RequestLabels, elapsed: Duration) {
        self.request_duration
            .get_or_create(&RouteLabels {
                route: labels.route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(labels).inc();
    }

    /// Counts an API key lookup in the credential cache.
    pub fn record_cache_lookup(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_lookups
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// Counts a request rejected by a limit of kind `limit`.
    pub fn record_rate_limit_rejection(&self, limit: LimitKind) {
        self.rate_limit_rejections
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Counts an attempt refused by a brute-force block.
    pub fn record_brute_force_block(&self) {
        self.brute_force_blocks.inc();
    }

    /// Counts a connection closed because its address was at the
    /// per-address connection cap.
    pub fn record_connection_rejected_per_address(&self) {
        self.connections_rejected_per_address.inc();
    }

    /// Counts an attempt delayed by brute-force protection.
    pub fn record_brute_force_delay(&self) {
        self.brute_force_delays.inc();
    }

    /// Records the duration of one Redis call of `component`.
    pub fn record_redis_call(&self, component: RedisComponent, elapsed: Duration) {
        self.redis_duration
            .get_or_create(&RedisLabels { component })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed Redis call of `component`.
    pub fn record_redis_error(&self, component: RedisComponent, kind: RedisErrorKind) {
        self.redis_errors
            .get_or_create(&RedisErrorLabels { component, kind })
            .inc();
    }

    /// Records the start (`up` false) or the end (`up` true) of a Redis
    /// outage seen by `component`.
    pub fn record_redis_state(&self, component: RedisComponent, up: bool) {
        let labels = RedisLabels { component };
        self.redis_up.get_or_create(&labels).set(i64::from(up));
        if !up {
            self.redis_outages.get_or_create(&labels).inc();
        }
    }

    /// Counts a check decided without Redis during an outage.
    pub fn record_redis_fallback(&self, component: RedisComponent) {
        self.redis_fallbacks
            .get_or_create(&RedisLabels { component })
            .inc();
    }

    /// Counts an access token issued by the grant `grant`.
    pub fn record_token_issued(&self, grant: portcullis_core::oauth::GrantType) {
        self.tokens_issued
            .get_or_create(&GrantLabels {
                grant_type: GrantTypeLabel(grant),
            })
            .inc();
    }

    /// Counts a client certificate verification: `None` for a valid chain,
    /// or the rejection's code.
    pub fn record_certificate_verification(&self, rejection: Option<&'static str>) {
        let outcome = rejection.unwrap_or("valid");
        self.certificate_verifications
            .get_or_create(&CertificateLabels { outcome })
            .inc();
    }
}

impl StoreObserver for Metrics {
    fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&StoreError>) {
        self.store_duration
            .get_or_create(&StoreLabels { operation })
            .observe(elapsed.as_secs_f64());
        // Not found, conflict and the other results about the data are
        // normal outcomes. Only failures of the database itself count.
        let failed = matches!(
            error,
            Some(
                StoreError::Unavailable(_)
                    | StoreError::Database(_)
                    | StoreError::Corrupt(_)
                    | StoreError::Migration(_)
            )
        );
        if let (true, Some(error)) = (failed, error) {
            self.store_errors
                .get_or_create(&StoreErrorLabels {
                    operation,
                    kind: error.code(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests;
