//! The shared state, the router that joins every surface, and [`run`],
//! which serves it until a shutdown signal.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::middleware;
use axum::routing::get;
use portcullis_core::crypto::{Pepper, SealingKey};
use portcullis_core::pki::{CertificateRecord, CertificateSerial};
use portcullis_store::{AuditContext, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::auth::KeyVerifier;
use crate::cache::{CACHE_CAPACITY, CredentialCache, follow_changes};
use crate::client_ip::TrustedProxies;
use crate::config::ClientCertificateMode;
use crate::config::{Config, LimitsConfig, TlsMode};
use crate::credential_audit::AuditSettings;
use crate::gateway::client_limits::ClientLimits;
use crate::gateway::proxy::UpstreamClient;
use crate::gateway::routes::RouteTable;
use crate::listener::{ListenerLimits, serve, serve_with_client_certificates};
use crate::manage::{Manager, PlanNames};
use crate::oauth::authorize;
use crate::oauth::server::{AuthorizationServer, maintain};
use crate::pki::ca::{CaError, CertificateAuthority};
use crate::pki::clients::CertificateClients;
use crate::pki::identity::maintain_self_signed_keys;
use crate::pki::presented::{ForwardedCertificates, reject_malformed_forwarded_certificate};
use crate::pki::trust::{ClientCertificateTrust, TrustError};
use crate::ratelimit::RateLimiter;
use crate::ratelimit::brute_force::BruteForceTracker;
use crate::ratelimit::local::EVICTION_INTERVAL;
use crate::usage::{UsageRecorder, flush_periodically};
use crate::{dashboard, docs, gateway, health, leaks, method_not_allowed, openapi, telemetry};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every handler shares.
pub struct Shared {
    /// The store.
    pub store: Store,
    /// API key verification, with its cache.
    pub verifier: KeyVerifier,
    /// Buffered usage and failure records.
    pub usage: Arc<UsageRecorder>,
    /// The gateway's routes.
    pub routes: RouteTable,
    /// The operator's trusted proxies.
    pub proxies: TrustedProxies,
    /// The client for upstreams.
    pub upstream: UpstreamClient,
    /// Tenant and key operations.
    pub manager: Manager,
    /// The authorization server: issuer, signing keys, deny list.
    pub oauth: Arc<AuthorizationServer>,
    /// The internal CA for client certificates.
    pub ca: Arc<CertificateAuthority>,
    /// Whether client certificates can reach the handlers: the listener
    /// uses TLS and requests them, or trusted proxies forward them. The
    /// metadata advertises the RFC 8705 methods only then.
    pub client_certificates_reach: bool,
    /// The anchors, CRLs and revoked serials that client certificates are
    /// verified against, once [`start_client_certificates`] has started
    /// them. Unset while neither the listener nor a proxy passes
    /// certificates.
    pub client_certificate_trust: OnceLock<Arc<ClientCertificateTrust>>,
    /// The OAuth clients of client certificates, for `mtls` routes.
    pub certificate_clients: Arc<CertificateClients>,
    /// The rate limits of the clients whose access tokens call the gateway.
    pub client_limits: Arc<ClientLimits>,
    /// The certificate header of trusted proxies, when configured.
    pub forwarded_certificates: Option<ForwardedCertificates>,
    /// The `[limits]` table: tenant limit and plans.
    pub limits: LimitsConfig,
    /// The rate limiter: in memory, or shared through Redis.
    pub rate_limiter: RateLimiter,
    /// The keys that sign leak reports, and the action on a match.
    pub leaks: leaks::LeakReceiver,
    /// Failed authentication counts per client address and identity.
    pub brute_force: BruteForceTracker,
    /// Raises alerts and delivers them to webhooks.
    pub alerts: Arc<Alerts>,
    /// The credential audit's policy and the listener it judges.
    pub audit_settings: AuditSettings,
    /// The scopes and lifetimes that dashboard users may give their keys.
    pub key_policy: dashboard::KeyPolicy,
    /// Whether `/docs/` is served, and its branding.
    pub docs: crate::config::DocsConfig,
}

/// A cheap handle on [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Builds the state from the configuration, the store, the pepper and
    /// the internal CA's sealing key.
    pub fn new(
        config: &Config,
        store: Store,
        pepper: Pepper,
        oauth: Arc<AuthorizationServer>,
        ca_sealing: SealingKey,
    ) -> std::io::Result<Self> {
        let cache = Arc::new(CredentialCache::new(CACHE_CAPACITY));
        let redis = crate::ratelimit::redis_from_config(&config.limits).map_err(|error| {
            std::io::Error::other(format!("limits.redis_url: invalid Redis URL: {error}"))
        })?;
        let rate_limiter = RateLimiter::from_config(&config.limits, redis.as_ref());
        let brute_force = BruteForceTracker::from_config(&config.limits, redis.as_ref());
        let leaks = leaks::LeakReceiver::load(&config.leaks).map_err(std::io::Error::other)?;
        let alerts = Arc::new(Alerts::new(&config.alerts, store.clone())?);
        Ok(Self(Arc::new(Shared {
            verifier: KeyVerifier::new(store.clone(), pepper.clone(), cache),
            usage: Arc::new(UsageRecorder::default()),
            routes: RouteTable::new(config.routes.clone()),
            proxies: TrustedProxies::new(config.server.trusted_proxies.clone())
                .with_header(config.server.forwarded_header),
            upstream: UpstreamClient::new()?,
            manager: Manager::new(store.clone(), pepper).with_plans(PlanNames::Known(
                config.limits.plans.keys().cloned().collect(),
            )),
            oauth,
            ca: Arc::new(CertificateAuthority::new(store.clone(), ca_sealing)),
            client_certificates_reach: (!matches!(config.server.tls, TlsMode::PlainHttp)
                && config.server.client_certificates != ClientCertificateMode::Off)
                || config.server.forwarded_client_certificate.is_some(),
            store,
            client_certificate_trust: OnceLock::new(),
            certificate_clients: Arc::new(CertificateClients::default()),
            client_limits: Arc::new(ClientLimits::default()),
            forwarded_certificates: config
                .server
                .forwarded_client_certificate
                .clone()
                .map(ForwardedCertificates::new),
            limits: config.limits.clone(),
            rate_limiter,
            leaks,
            brute_force,
            alerts,
            audit_settings: AuditSettings::from_config(config),
            key_policy: dashboard::KeyPolicy::from_config(config),
            docs: config.docs.clone(),
        })))
    }

    /// Revokes a certificate of the internal CA, as
    /// [`CertificateAuthority::revoke`] does, and adds its serial to this
    /// node's revoked set before returning. An open connection that
    /// presented it is rejected on its next request to this node, without
    /// waiting for the change feed's next poll. Other nodes learn of it from
    /// the feed.
    pub async fn revoke_certificate(
        &self,
        serial: &CertificateSerial,
        reason: &str,
        audit: &AuditContext,
    ) -> Result<CertificateRecord, CaError> {
        let revoked = self.ca.revoke(serial, reason, audit).await?;
        if let Some(trust) = self.client_certificate_trust.get() {
            trust.certificate_revoked(revoked.serial.as_str());
        }
        Ok(revoked)
    }
}

/// The whole HTTP surface: Portcullis's own endpoints, then the gateway for
/// everything else. Paths are normalized before any of it routes.
pub fn router(state: AppState) -> Router {
    let inner = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(Router::from(openapi::public::public_routes(|forms| {
            authorize::protect_forms(&state, forms)
        })))
        .merge(Router::from(openapi::documented_routes()))
        .merge(dashboard::routes(&state))
        .merge(docs::routes(&state.docs))
        .route_layer(middleware::from_fn(telemetry::label_matched_route))
        .method_not_allowed_fallback(method_not_allowed::discard_body)
        .fallback(gateway::handle)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            reject_malformed_forwarded_certificate,
        ))
        .with_state(state);

    // Layered around the whole router, not with `Router::layer`, so that the
    // rewritten path is the one routing matches.
    let observed = tower::ServiceBuilder::new()
        .layer(middleware::from_fn(telemetry::observe))
        .layer(middleware::from_fn(method_not_allowed::describe))
        .service(inner);
    Router::new().fallback_service(observed)
}

/// Builds the client certificate trust when the TLS listener requests
/// certificates (`server.client_certificates` not `off`) or a proxy
/// forwards them (`server.forwarded_client_certificate`), and stores it in
/// `state`. `tls` is the listener's configuration without client
/// certificates.
///
/// # Errors
///
/// [`TrustError::NoTrustAnchor`] for `required` without any trusted CA,
/// and the errors of reading the CAs and CRLs.
pub async fn start_client_certificates(
    config: &Config,
    state: &AppState,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<Option<Arc<ClientCertificateTrust>>, TrustError> {
    let mode = config.server.client_certificates;
    let listener_config = tls.filter(|_| mode != ClientCertificateMode::Off);
    if listener_config.is_none() && state.forwarded_certificates.is_none() {
        return Ok(None);
    }
    let trust = ClientCertificateTrust::start(
        mode,
        listener_config.cloned(),
        config.server.partner_crls.clone(),
        state.store.clone(),
        state.ca.clone(),
    )
    .await?;
    let trust = Arc::new(trust);
    // `start_client_certificates` runs once per state, so the cell is
    // empty, and a second call keeps the first trust.
    let _ = state.client_certificate_trust.set(Arc::clone(&trust));
    Ok(Some(trust))
}

/// Runs background tasks and serves on `listener` until `shutdown`, then
/// drains requests and flushes buffered writes. With `certificates`, TLS
/// handshakes use its configuration in place of `tls`.
pub async fn run(
    config: &Config,
    state: AppState,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    certificates: Option<Arc<ClientCertificateTrust>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let background = CancellationToken::new();
    let feed = tokio::spawn(follow_changes(
        state.store.clone(),
        state.verifier.cache().clone(),
        state.oauth.clone(),
        certificates.clone(),
        state.certificate_clients.clone(),
        state.client_limits.clone(),
        background.clone(),
    ));
    let trust_task = certificates
        .clone()
        .map(|trust| tokio::spawn(trust.maintain(background.clone())));
    let self_signed_task = certificates.clone().map(|trust| {
        tokio::spawn(maintain_self_signed_keys(
            trust,
            state.store.clone(),
            background.clone(),
        ))
    });
    let keys = tokio::spawn(maintain(state.oauth.clone(), background.clone()));
    let flusher = tokio::spawn(flush_periodically(
        state.usage.clone(),
        state.store.clone(),
        background.clone(),
    ));
    let evictor = tokio::spawn(evict_rate_limits(state.clone(), background.clone()));
    let audit_pruner = tokio::spawn(crate::audit_retention::prune_audit_periodically(
        state.store.clone(),
        config.audit.retention,
        background.clone(),
    ));
    let alerts = tokio::spawn(
        Arc::clone(&state.alerts).run(Arc::clone(state.usage.alert_signals()), background.clone()),
    );

    let limits = ListenerLimits {
        handshake_timeout: HANDSHAKE_TIMEOUT,
        ..ListenerLimits::from_config(&config.server)
    };
    let grace = config.server.shutdown_grace;
    // A trust started only for forwarded certificates has no TLS
    // configuration for the listener.
    let listener_trust = certificates
        .clone()
        .filter(|trust| trust.snapshot().server_config.is_some());
    let served = match listener_trust {
        Some(trust) => {
            let app = router(state.clone());
            let usage = Arc::clone(&state.usage);
            serve_with_client_certificates(listener, trust, usage, app, limits, shutdown, grace)
                .await
        }
        None => {
            serve(
                listener,
                tls,
                router(state.clone()),
                limits,
                shutdown,
                grace,
            )
            .await
        }
    };

    background.cancel();
    let _ = tokio::join!(feed, flusher, keys, evictor, alerts, audit_pruner);
    if let Some(task) = trust_task {
        let _ = task.await;
    }
    if let Some(task) = self_signed_task {
        let _ = task.await;
    }
    state.usage.flush_final(&state.store).await;
    tracing::info!("buffered writes flushed; stopped");
    served
}

/// Drops idle in-memory rate limit entries every [`EVICTION_INTERVAL`]
/// until `shutdown`, so memory follows the active callers.
async fn evict_rate_limits(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(EVICTION_INTERVAL) => {
                let dropped = state.rate_limiter.local().evict_idle();
                tracing::debug!(dropped, "dropped idle rate limit entries");
            }
        }
    }
}
