//! `portcullis serve`: configuration, logging, store, TLS, listener, and
//! a shutdown on SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use portcullis_server::app::{self, AppState};
use portcullis_server::config;
use portcullis_server::oauth::server::AuthorizationServer;
use portcullis_server::tls::TlsSource;
use portcullis_server::{metrics, telemetry, tls};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::data_dir;

pub(crate) async fn run(
    global: &GlobalArgs,
    args: &ServeArgs,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let data_dir = &global.data_dir;
    data_dir::ensure_dir(data_dir)?;
    let config =
        config::load(global.config.as_deref(), data_dir, env).context("invalid configuration")?;

    let log_format = args.log_format.map_or(config.server.log_format, Into::into);
    telemetry::init(log_format, args.log_filter.as_deref());
    // Enabled before the state is built, so that its components record
    // from the first request on.
    let metrics = config.metrics.listen.map(|_| metrics::enable());

    let opened = data_dir::open_store(data_dir, global.database_url.as_deref(), env).await?;
    // Fail closed: records appended to a tampered chain would seem to vouch
    // for it.
    let head = opened
        .store
        .check_audit_head()
        .await
        .context("failed to check the audit chain")?;
    if let Err(broken) = head {
        anyhow::bail!(
            "refusing to start: the audit chain is broken: {broken}. Run `portcullis audit-log \
             verify` for the first problem. {}",
            super::audit_log::remedy(&broken)
        );
    }
    let backend = opened.store.backend();
    let tls = tls::server_config(&config.server.tls, data_dir).context("failed to set up TLS")?;
    if let Some((_, source)) = &tls {
        log_tls_source(source);
    }
    // Handlers go in before the listener exists, so a signal sent as soon
    // as `listening` is logged is a clean shutdown, not the default kill.
    let shutdown = CancellationToken::new();
    let signals = ShutdownSignals::install().context("failed to install signal handlers")?;
    let signal_task = tokio::spawn(signals.cancel_on_first(shutdown.clone()));

    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("failed to listen on {}", config.server.listen))?;
    let address = listener
        .local_addr()
        .context("failed to read the listening address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() {
        tracing::warn!(
            address = %address,
            "serving plain HTTP without TLS; use it only on loopback or behind a \
             TLS-terminating proxy"
        );
    }
    let issuer = config.oauth.issuer.clone().unwrap_or_else(|| {
        // Without a configured issuer only local use makes sense: name the
        // loopback host with the port actually bound.
        format!("{scheme}://localhost:{}", address.port())
    });
    let oauth = AuthorizationServer::start(
        &opened.store,
        opened.signing_sealing,
        config.oauth.clone(),
        issuer,
    )
    .await
    .context("failed to load the token-signing keys")?;
    let state = AppState::new(
        &config,
        opened.store,
        opened.pepper,
        Arc::new(oauth),
        opened.ca_sealing,
    )
    .context("failed to build the server state")?;

    let certificates =
        app::start_client_certificates(&config, &state, tls.as_ref().map(|(config, _)| config))
            .await
            .context("failed to set up client certificates")?;
    if let Some(trust) = &certificates
        && trust.snapshot().server_config.is_some()
    {
        tracing::info!(
            mode = ?config.server.client_certificates,
            "TLS clients are asked for a certificate"
        );
    }
    portcullis_server::gateway::limits::log_keys_on_missing_plans(&state).await;
    match &config.limits.redis_url {
        Some(url) => tracing::info!(
            redis = %url.redacted(),
            redis_failure = ?config.limits.redis_failure,
            "rate limits are counted in Redis"
        ),
        None => tracing::info!("rate limits are counted in this node's memory"),
    }
    if let Some(forwarded) = &config.server.forwarded_client_certificate {
        tracing::info!(
            format = ?forwarded.format,
            header = %forwarded.header,
            "client certificates forwarded by trusted proxies are read"
        );
    }

    let metrics_shutdown = CancellationToken::new();
    let metrics_task = match (config.metrics.listen, metrics) {
        (Some(listen), Some(metrics)) => {
            let listener = bind_metrics(listen).await?;
            Some(tokio::spawn(metrics::server::run(
                listener,
                metrics,
                metrics_shutdown.clone(),
            )))
        }
        _ => {
            tracing::info!("metrics listener is off (metrics.listen = \"off\")");
            None
        }
    };

    // Tests and scripts read the bound address from this line, so it comes
    // last, once the listener accepts connections.
    tracing::info!(address = %address, scheme, backend, "listening");

    let server_config = tls.map(|(server_config, _)| server_config);
    let served = app::run(
        &config,
        state,
        listener,
        server_config,
        certificates,
        shutdown,
    )
    .await;
    signal_task.abort();
    metrics_shutdown.cancel();
    if let Some(task) = metrics_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %error, "metrics listener failed"),
            Err(error) => tracing::error!(error = %error, "metrics listener task failed"),
        }
    }
    served.context("server failed")
}

/// Binds the metrics listener and logs its address. Tests read the address
/// from the `metrics listening` line.
async fn bind_metrics(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!(
            "failed to listen on {listen} for metrics; set metrics.listen to a free address \
             or \"off\""
        )
    })?;
    let address = listener
        .local_addr()
        .context("failed to read the metrics listening address")?;
    if !address.ip().is_loopback() {
        tracing::warn!(
            address = %address,
            "metrics listener is reachable beyond this host; the metrics name routes and \
             show traffic, so restrict who can reach it"
        );
    }
    tracing::info!(address = %address, path = "/metrics", "metrics listening");
    Ok(listener)
}

/// Logs where the listener's certificate comes from. For development
/// certificates, the line names the CA file that clients must trust.
fn log_tls_source(source: &TlsSource) {
    match source {
        TlsSource::DevelopmentCreated { ca, reason } => tracing::info!(
            ca = %ca.display(),
            reason = %reason,
            "created development certificate authority; configure clients to trust its \
             certificate"
        ),
        TlsSource::DevelopmentLoaded { ca } => tracing::info!(
            ca = %ca.display(),
            "using development certificate authority; configure clients to trust its certificate"
        ),
        TlsSource::Files { cert } => {
            tracing::info!(cert = %cert.display(), "using configured TLS certificate");
        }
    }
}

/// Handlers for the signals that stop the server.
struct ShutdownSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl ShutdownSignals {
    /// Installs handlers for SIGINT and SIGTERM, replacing their default
    /// action of ending the process at once.
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the first SIGINT or SIGTERM, then cancels `shutdown`.
    async fn cancel_on_first(mut self, shutdown: CancellationToken) {
        let name = tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutdown requested; draining connections");
        shutdown.cancel();
    }
}
