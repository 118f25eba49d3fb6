//! The accept loop: connection limit, TLS handshake, HTTP/1.1 and HTTP/2
//! through hyper, and a graceful drain on shutdown.
//!
//! Every request reaches the router with a [`ConnectionInfo`] extension (and
//! axum's `ConnectInfo<SocketAddr>` with the peer address), so handlers and
//! middleware can tell who connected, whether the connection was TLS, and
//! which client certificate it presented.
//!
//! With client certificates ([`serve_with_client_certificates`]), a request
//! on a connection whose certificate has been revoked since the handshake
//! gets 401 `certificate_revoked` instead of reaching the router, over
//! HTTP/1.1 and HTTP/2 alike, the response the gateway sends for a
//! certificate that a CRL lists.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, error, info, warn};

use crate::activity::{Activity, GuardedBody};
use crate::address_limit::{AddressLimit, AddressSlot, Admission};
use crate::body::ReadTimeoutBody;
use crate::client_ip::TrustedProxies;
use crate::config::{ClientCertificateMode, ServerConfig};
use crate::pki::handshake::capture_rejection;
use crate::pki::presented::ConnectionCertificate;
use crate::pki::presented::rejected_certificate;
use crate::pki::trust::ClientCertificateTrust;
use crate::pki::verify::{Rejection, VerifiedClient, thumbprint_sha256};
use crate::usage::{FailedAuthentication, UsageRecorder};

/// Default time a client has to complete the TLS handshake. A handshake
/// takes two or three round trips, a few seconds at most even on slow links,
/// so this cuts off only stalled or deliberately slow clients.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept`. Failures such as EMFILE (too many open
/// files) persist until a connection closes, so retrying at once would spin
/// a CPU core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Minimum time between two "connection limit reached" warnings, so a
/// listener that stays at its limit logs once a minute, not per connection.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Facts about the connection a request arrived on, added to every request
/// as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address, or the address of the proxy in front of it.
    pub peer: SocketAddr,
    /// The local address the connection was accepted on.
    pub local: SocketAddr,
    /// Whether the connection uses TLS.
    pub tls: bool,
    /// The certificate the client presented in the TLS handshake, with its
    /// verdict. `None` without TLS, with client certificates off, and for a
    /// client that sent none where they are optional. Handlers read it
    /// through [`crate::pki::presented::client_certificate`], which checks
    /// the verdict against the current trust and is also where a
    /// certificate forwarded by a trusted proxy is read.
    pub client_certificate: Option<Arc<ConnectionCertificate>>,
}

/// A client certificate chain as presented, with the verdict of
/// [`verify_client_chain`](crate::pki::verify::verify_client_chain) against
/// the listener's trust anchors and CRLs.
///
/// A chain that fails verification is kept, with its rejection, so that the
/// application can reject it (401 `invalid_client`) and so that a
/// self-signed certificate registered for RFC 8705 §2.2
/// `self_signed_tls_client_auth` can be matched by its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificates as the client sent them, leaf first, DER. Not
    /// empty when built by [`ClientCertificate::new`].
    pub chain: Vec<CertificateDer<'static>>,
    /// SHA-256 of the leaf's DER, base64url without padding (RFC 8705 §3.1
    /// `x5t#S256`).
    pub thumbprint_sha256: String,
    /// The verdict of `verify_client_chain` against the listener's anchors
    /// and CRLs.
    pub verdict: Result<VerifiedClient, Rejection>,
}

impl ClientCertificate {
    /// Builds the certificate from a presented chain and its verdict, or
    /// returns `None` when the chain is empty.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        verdict: Result<VerifiedClient, Rejection>,
    ) -> Option<Self> {
        let thumbprint_sha256 = thumbprint_sha256(chain.first()?);
        Some(Self {
            chain,
            thumbprint_sha256,
            verdict,
        })
    }

    /// Returns the leaf certificate, DER. A value built with an empty
    /// `chain` (which [`ClientCertificate::new`] prevents) returns an empty
    /// DER, which no certificate parser accepts.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        static EMPTY: CertificateDer<'static> = CertificateDer::from_slice(&[]);
        self.chain.first().unwrap_or(&EMPTY)
    }

    /// Returns the verified leaf, or `None` when the chain was rejected.
    pub fn verified(&self) -> Option<&VerifiedClient> {
        self.verdict.as_ref().ok()
    }

    /// Returns the leaf's serial and issuer, for failure records, or `None`
    /// when a rejected leaf does not parse.
    pub fn serial_and_issuer(&self) -> Option<(String, String)> {
        match &self.verdict {
            Ok(verified) => Some((verified.serial.clone(), verified.issuer.clone())),
            Err(rejection) => rejection
                .leaf()
                .map(|leaf| (leaf.serial.clone(), leaf.issuer.clone())),
        }
    }
}

/// Limits that protect the listener from too many or too slow clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Maximum of open connections. When it is reached, the listener stops
    /// accepting and new connections wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Cap on open connections per client address, so that one host cannot
    /// hold every slot of `max_connections`, or `None` for no cap.
    pub per_address: Option<PerAddressCap>,
    /// Time a client has to send its first request, and each later HTTP/1
    /// request head.
    pub header_read_timeout: Duration,
    /// Maximum pause between two parts of a request body.
    pub body_read_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
}

/// The per-address connection cap of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerAddressCap {
    /// Maximum of open connections from one address, an IPv6 client by its
    /// /64. A connection over it is closed at once, before TLS.
    pub max_connections: usize,
    /// Proxies whose connections are not counted, because every client
    /// behind a proxy shares its address.
    pub exempt: Vec<ipnet::IpNet>,
}

impl ListenerLimits {
    /// Takes the limits from the `[server]` settings, with
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`] for the handshake.
    pub fn from_config(server: &ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections,
            per_address: server
                .max_connections_per_address
                .map(|max_connections| PerAddressCap {
                    max_connections,
                    exempt: server.trusted_proxies.clone(),
                }),
            header_read_timeout: server.header_read_timeout,
            body_read_timeout: server.body_read_timeout,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: server.idle_timeout,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops
/// accepting and waits up to `grace` for in-flight requests. Connections
/// still open after `grace` are closed.
///
/// With `tls`, every connection must complete a TLS handshake first; without
/// it, the listener speaks plain HTTP. Errors of single connections are
/// logged at debug level and never end the loop.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let tls = match tls {
        Some(config) => ListenerTls::Fixed(TlsAcceptor::from(config)),
        None => ListenerTls::Off,
    };
    serve_with(listener, tls, None, app, limits, shutdown, grace).await
}

/// [`serve`] over TLS with client certificates: each handshake uses the
/// configuration `trust` contains at accept time, and each request is checked
/// against its revoked serials. Certificates rejected at the connection are
/// recorded in `usage` as failed authentications.
pub async fn serve_with_client_certificates(
    listener: TcpListener,
    trust: Arc<ClientCertificateTrust>,
    usage: Arc<UsageRecorder>,
    app: axum::Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let tls = ListenerTls::ClientCertificates(trust);
    serve_with(listener, tls, Some(usage), app, limits, shutdown, grace).await
}

async fn serve_with(
    listener: TcpListener,
    tls: ListenerTls,
    usage: Option<Arc<UsageRecorder>>,
    app: axum::Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    // The caller logs the address and warns about plain HTTP, because it
    // knows why the listener runs without TLS.
    debug!(address = %local, tls = !matches!(tls, ListenerTls::Off), "accept loop started");

    let max_connections = limits.max_connections;
    let address_limit = limits.per_address.as_ref().map(|cap| {
        Arc::new(AddressLimit::new(
            cap.max_connections,
            TrustedProxies::new(cap.exempt.clone()),
        ))
    });
    let shared = Arc::new(Shared {
        tls,
        usage,
        builder: http_builder(limits.header_read_timeout),
        app,
        limits,
    });
    // Semaphore::new panics above MAX_PERMITS (2^61 - 1 on 64-bit targets),
    // far beyond any real limit, so clamping changes nothing in practice.
    let permits = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let mut tasks = JoinSet::new();
    let mut consecutive_failures: u64 = 0;
    let mut limit_warning = LimitWarning::default();

    loop {
        reap_finished(&mut tasks);

        if permits.available_permits() == 0 {
            limit_warning.record(max_connections);
        }
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed, so this branch is not taken.
                Err(_) => break,
            },
        };

        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                consecutive_failures = 0;
                pair
            }
            Err(error) => {
                consecutive_failures += 1;
                log_accept_failure(&error, consecutive_failures);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };

        // Dropping a rejected stream closes it before any byte is read, and
        // dropping its permit gives the global slot back.
        let address_slot = match address_limit.as_ref().map(|limit| limit.admit(peer.ip())) {
            Some(Admission::Rejected) => {
                debug!(peer = %peer, "connection over the per-address cap; closing");
                continue;
            }
            Some(Admission::Admitted(slot)) => Some(slot),
            Some(Admission::Exempt) | None => None,
        };

        tasks.spawn(handle_connection(
            Arc::clone(&shared),
            stream,
            local,
            peer,
            shutdown.clone(),
            ConnectionSlots {
                _global: permit,
                _address: address_slot,
            },
        ));
    }

    drop(listener);
    drain(tasks, grace).await;
    info!(address = %local, "listener stopped");
    Ok(())
}

/// The slots a connection keeps until its task ends: one of
/// `max_connections`, and one of its address's cap when that applies.
struct ConnectionSlots {
    _global: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
}

/// The listener's TLS mode.
enum ListenerTls {
    /// Plain HTTP.
    Off,
    /// One configuration for the listener's lifetime, without client
    /// certificates.
    Fixed(TlsAcceptor),
    /// The configuration that `trust` holds at each accept.
    ClientCertificates(Arc<ClientCertificateTrust>),
}

/// State shared by every connection task.
struct Shared {
    tls: ListenerTls,
    /// The buffer that rejected client certificates are recorded in.
    usage: Option<Arc<UsageRecorder>>,
    builder: Builder<TokioExecutor>,
    app: axum::Router,
    limits: ListenerLimits,
}

/// Maximum size of a request's header block. Headers are read whole before
/// any check runs, so this bounds memory per connection; 64 KiB is twice
/// nginx's default (four 8 KiB buffers) and far above what API clients send.
/// HTTP/1 requests over it get 431 from hyper; HTTP/2 ones a stream error.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Maximum length of a request target (path and query). A longer one gets
/// 414 (RFC 9110 §15.5.15). This is twice the 8,000 octets that RFC 9110
/// §4.1 recommends every recipient to support.
///
/// NOTE: a target too long to fit in the [`MAX_HEADER_BYTES`] head buffer
/// gets 431 from hyper instead. hyper 1.13 stops reading when the head
/// buffer is full, before the request line has ended, and it has one limit
/// for the request line and the header fields together.
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Builds hyper's protocol-detecting server for HTTP/1.1 and HTTP/2. The
/// timer is what makes `header_read_timeout` take effect.
fn http_builder(header_read_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    builder
}

/// Rate limit of the "connection limit reached" warning.
#[derive(Default)]
struct LimitWarning {
    last: Option<tokio::time::Instant>,
    since_last: u64,
}

impl LimitWarning {
    fn record(&mut self, max_connections: usize) {
        self.since_last += 1;
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LIMIT_WARNING_INTERVAL)
        {
            return;
        }
        warn!(
            max_connections,
            times_reached = self.since_last,
            "connection limit reached; new connections wait until one closes"
        );
        self.last = Some(now);
        self.since_last = 0;
    }
}

fn reap_finished(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.try_join_next() {
        log_panic(result);
    }
}

fn log_panic(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result
        && error.is_panic()
    {
        error!(error = %error, "connection task panicked");
    }
}

/// Logs the first failure of a run and then every power of two, so a
/// persistent failure (EMFILE under load) stays visible without flooding
/// the log ten times a second.
fn log_accept_failure(error: &std::io::Error, consecutive_failures: u64) {
    if consecutive_failures.is_power_of_two() {
        warn!(
            error = %error,
            consecutive_failures,
            retry_in_ms = ACCEPT_ERROR_PAUSE.as_millis(),
            "accepting a connection failed"
        );
    }
}

/// Waits up to `grace` for every connection task to end. Each task has
/// seen the shutdown signal and lets its connection finish the requests in
/// flight; connections still open after `grace` are closed.
async fn drain(mut tasks: JoinSet<()>, grace: Duration) {
    info!(
        open_connections = tasks.len(),
        grace_seconds = grace.as_secs_f64(),
        "shutting down: no new connections, waiting for in-flight requests"
    );
    let all_ended = async {
        while let Some(result) = tasks.join_next().await {
            log_panic(result);
        }
    };
    if tokio::time::timeout(grace, all_ended).await.is_err() {
        warn!(
            open_connections = tasks.len(),
            "grace period ended; closing the remaining connections"
        );
    }
    tasks.shutdown().await;
}

async fn handle_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    listen_address: SocketAddr,
    peer: SocketAddr,
    shutdown: CancellationToken,
    _slots: ConnectionSlots,
) {
    // Small responses go out at once instead of waiting for Nagle's
    // algorithm to fill a packet.
    if let Err(error) = stream.set_nodelay(true) {
        debug!(peer = %peer, error = %error, "setting TCP_NODELAY failed");
    }
    // On a wildcard listener (0.0.0.0), the listener's address is not the one
    // the client reached; the accepted socket's address is.
    let local = stream.local_addr().unwrap_or(listen_address);
    let mut info = ConnectionInfo {
        peer,
        local,
        tls: !matches!(shared.tls, ListenerTls::Off),
        client_certificate: None,
    };

    let (acceptor, trust) = match &shared.tls {
        ListenerTls::Off => {
            serve_connection(&shared, TokioIo::new(stream), info, &shutdown).await;
            return;
        }
        ListenerTls::Fixed(acceptor) => (acceptor.clone(), None),
        ListenerTls::ClientCertificates(trust) => {
            let snapshot = trust.snapshot();
            let Some(config) = &snapshot.server_config else {
                error!(
                    peer = %peer,
                    "the client certificate trust has no TLS configuration; closing the connection"
                );
                return;
            };
            let acceptor = TlsAcceptor::from(Arc::clone(config));
            (acceptor, Some((trust, snapshot)))
        }
    };
    // Handshake failures are the client's problem (wrong protocol, untrusted
    // certificate, a scanner), so they are logged at debug level only. A
    // rejected client certificate is also recorded as a failed
    // authentication.
    let handshake = tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(stream));
    let (handshake, rejection) = capture_rejection(handshake).await;
    let tls_stream = match handshake {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(error)) => {
            debug!(peer = %peer, error = %error, "TLS handshake failed");
            if let Some(rejection) = rejection {
                // The handshake's verifier calls `verify_client_chain`
                // itself, not `TrustSnapshot::verify`, which counts
                // verdicts, so the rejection that ended it is counted here.
                if let Some(metrics) = crate::metrics::get() {
                    metrics.record_certificate_verification(Some(rejection.code()));
                }
                record_rejected_certificate(shared.usage.as_deref(), peer, &rejection);
            }
            return;
        }
        Err(_) => {
            debug!(peer = %peer, "TLS handshake timed out");
            return;
        }
    };

    if let Some((trust, snapshot)) = trust
        && let Some(chain) = tls_stream.get_ref().1.peer_certificates()
        && !chain.is_empty()
    {
        // The handshake's verifier decided with the same function, so this
        // repeats its verdict to read the leaf's names and to carry it with
        // the connection.
        let verdict = snapshot.verify(chain);
        if let Err(rejection) = &verdict
            && trust.mode() == ClientCertificateMode::Required
            && !trust.accepts_self_signed(chain)
        {
            // With `required`, only a chain whose verdict changed since the
            // handshake gets here, such as a certificate that expired.
            debug!(
                peer = %peer,
                code = rejection.code(),
                reason = rejection.reason(),
                "client certificate rejected after the handshake; closing the connection"
            );
            record_rejected_certificate(shared.usage.as_deref(), peer, rejection);
            return;
        }
        // rustls 0.23 restores the chain of a resumed session without
        // verifying it again, so a session from before a revocation is
        // caught here.
        if let Ok(verified) = &verdict
            && trust.revoked().contains(&verified.serial)
        {
            debug!(peer = %peer, serial = %verified.serial, "revoked client certificate; closing");
            return;
        }
        let chain = chain.iter().map(|der| der.clone().into_owned()).collect();
        info.client_certificate = ClientCertificate::new(chain, verdict).map(|certificate| {
            Arc::new(ConnectionCertificate::new(snapshot.generation, certificate))
        });
    }
    serve_connection(&shared, TokioIo::new(tls_stream), info, &shutdown).await;
}

/// Queues the audit record of a client certificate rejected by the
/// listener: at the handshake, or on a request after a revocation.
fn record_rejected_certificate(
    usage: Option<&UsageRecorder>,
    peer: SocketAddr,
    rejection: &Rejection,
) {
    if let Some(usage) = usage {
        let at = OffsetDateTime::now_utc();
        usage.record_failure(FailedAuthentication::certificate_rejected(
            at,
            peer.ip(),
            "tls",
            rejection,
        ));
    }
}

/// Time an HTTP/2 client gets to close its connection after the idle
/// timeout sent GOAWAY. hyper waits for the client's answer to a PING
/// before it closes, and a client that never answers must not keep the
/// connection; nothing is in flight, so nothing is cut off.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves HTTP on one connection until the client closes it, the shutdown
/// signal or the idle timeout ends it, or the client sends no request in
/// time.
async fn serve_connection<I>(
    shared: &Shared,
    io: TokioIo<I>,
    info: ConnectionInfo,
    shutdown: &CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request_seen = Arc::new(AtomicBool::new(false));
    let activity = Arc::new(Activity::default());
    let peer = info.peer;
    let service = {
        let app = shared.app.clone();
        let request_seen = Arc::clone(&request_seen);
        let activity = Arc::clone(&activity);
        let trust = match &shared.tls {
            ListenerTls::ClientCertificates(trust) => Some(Arc::clone(trust)),
            ListenerTls::Off | ListenerTls::Fixed(_) => None,
        };
        let usage = shared.usage.clone();
        let body_read_timeout = shared.limits.body_read_timeout;
        hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request_seen.store(true, Ordering::Relaxed);
            let in_flight = activity.begin();
            let revoked = revoked_certificate(&info, trust.as_deref());
            if let Some(rejection) = &revoked {
                debug!(peer = %peer, reason = rejection.reason(), "request on a connection with a revoked client certificate");
                record_rejected_certificate(usage.as_deref(), peer, rejection);
            }
            request.extensions_mut().insert(info.clone());
            request.extensions_mut().insert(ConnectInfo(info.peer));
            let app = app.clone();
            let request = request
                .map(|body| axum::body::Body::new(ReadTimeoutBody::new(body, body_read_timeout)));
            async move {
                let response = if let Some(rejection) = revoked {
                    rejected_certificate(&rejection).into_response()
                } else {
                    let Ok(response) = app.oneshot(request).await;
                    response
                };
                // The request stays in flight until its body has been sent.
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| axum::body::Body::new(GuardedBody::new(body, in_flight))),
                )
            }
        })
    };
    // NOTE: connections are served without HTTP upgrades (WebSocket), because
    // hyper-util 0.1.21 cannot shut an upgradeable connection down gracefully.
    let connection = shared.builder.serve_connection(io, service);
    tokio::pin!(connection);

    // hyper's header timeout covers HTTP/1 request heads only. This deadline
    // also closes a connection that sends nothing, or only part of the
    // protocol preface, or opens HTTP/2 and never sends a request.
    let first_request_deadline = async {
        tokio::time::sleep(shared.limits.header_read_timeout).await;
        if request_seen.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(first_request_deadline);
    // The idle timeout closes what the header timeout does not: an HTTP/2
    // connection that has made requests and then stays quiet.
    let idle = activity.idle_for(shared.limits.idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    let mut close_deadline = None;

    loop {
        let forced_close = async {
            match close_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    debug!(peer = %peer, error = %error, "connection ended with an error");
                }
                return;
            }
            () = &mut first_request_deadline => {
                debug!(peer = %peer, "no request within the header read timeout; closing");
                return;
            }
            // Requests in flight finish; the listener's grace period bounds
            // how long they may take.
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut idle, if !closing => {
                debug!(peer = %peer, "connection idle; closing");
                connection.as_mut().graceful_shutdown();
                closing = true;
                close_deadline = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
            }
            () = forced_close => {
                debug!(peer = %peer, "idle connection not closed by the client; closing");
                return;
            }
        }
    }
}

/// Returns the rejection of the connection's client certificate when its
/// serial has been revoked since the handshake.
fn revoked_certificate(
    info: &ConnectionInfo,
    trust: Option<&ClientCertificateTrust>,
) -> Option<Rejection> {
    let certificate = info.client_certificate.as_ref()?.handshake();
    let verified = certificate.verified()?;
    trust?
        .revoked()
        .contains(&verified.serial)
        .then(|| Rejection::revoked_serial(verified))
}
