//! The listener on a real socket: development TLS, HTTP/1.1 and HTTP/2,
//! connection facts for handlers, and the graceful drain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions fail the test by panicking"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_server::config::TlsMode;
use portcullis_server::listener::{ConnectionInfo, ListenerLimits, PerAddressCap, serve};
use portcullis_server::tls::{self, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the slow handler takes to respond.
const SLOW_RESPONSE: Duration = Duration::from_millis(800);

/// A running listener and what a test needs to reach and stop it.
struct Running {
    address: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
    /// Notified when the slow handler has started.
    slow_started: Arc<Notify>,
}

fn limits(max_connections: usize, header_read_timeout: Duration) -> ListenerLimits {
    ListenerLimits {
        max_connections,
        per_address: None,
        header_read_timeout,
        body_read_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
    }
}

fn app(slow_started: Arc<Notify>) -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|Extension(info): Extension<ConnectionInfo>| async move {
                format!("local={} peer={} tls={}", info.local, info.peer, info.tls)
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                slow_started.notify_one();
                tokio::time::sleep(SLOW_RESPONSE).await;
                "done"
            }),
        )
}

async fn start(tls: Option<Arc<rustls::ServerConfig>>, header_read_timeout: Duration) -> Running {
    start_limited(tls, limits(16, header_read_timeout)).await
}

async fn start_limited(tls: Option<Arc<rustls::ServerConfig>>, limits: ListenerLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let slow_started = Arc::new(Notify::new());
    let task = tokio::spawn(serve(
        listener,
        tls,
        app(Arc::clone(&slow_started)),
        limits,
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    Running {
        address,
        shutdown,
        task,
        slow_started,
    }
}

async fn start_development(data_dir: &Path) -> (Running, TlsSource) {
    let (config, source) = tls::server_config(&TlsMode::Development, data_dir)
        .unwrap()
        .unwrap();
    (start(Some(config), Duration::from_secs(5)).await, source)
}

/// Returns a client builder that trusts only the development CA and resolves
/// `localhost` to the listener's address.
fn client(data_dir: &Path, address: SocketAddr) -> reqwest::ClientBuilder {
    let ca_pem = std::fs::read(data_dir.join("tls/ca.pem")).unwrap();
    let ca = reqwest::Certificate::from_pem(&ca_pem).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", address)
        .no_proxy()
}

fn url(address: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", address.port())
}

async fn stop(running: Running) {
    running.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("serve did not return after cancellation")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn https_over_http1_and_http2() {
    let data_dir = tempfile::tempdir().unwrap();
    let (running, source) = start_development(data_dir.path()).await;
    assert_eq!(
        source.development_ca(),
        Some(data_dir.path().join("tls/ca.pem").as_path())
    );

    let http1 = client(data_dir.path(), running.address)
        .http1_only()
        .build()
        .unwrap();
    let response = http1
        .get(url(running.address, "/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let body = response.text().await.unwrap();
    let local = format!("local={} ", running.address);
    assert!(body.starts_with(&local), "{body}");
    assert!(body.contains(" peer=127.0.0.1:"), "{body}");
    assert!(body.ends_with("tls=true"), "{body}");

    let http2 = client(data_dir.path(), running.address).build().unwrap();
    let response = http2
        .get(url(running.address, "/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN selects h2"
    );
    let body = response.text().await.unwrap();
    assert!(body.ends_with("tls=true"), "{body}");

    stop(running).await;
}

#[tokio::test]
async fn client_without_ca_rejected() {
    let data_dir = tempfile::tempdir().unwrap();
    let (running, _) = start_development(data_dir.path()).await;
    let other_dir = tempfile::tempdir().unwrap();
    tls::server_config(&TlsMode::Development, other_dir.path()).unwrap();

    // A client that trusts a different development CA must fail the handshake.
    let stranger = client(other_dir.path(), running.address).build().unwrap();
    let result = stranger.get(url(running.address, "/whoami")).send().await;
    assert!(result.is_err(), "{result:?}");

    stop(running).await;
}

#[cfg(unix)]
#[tokio::test]
async fn development_key_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;

    let data_dir = tempfile::tempdir().unwrap();
    let (running, source) = start_development(data_dir.path()).await;
    assert!(
        matches!(source, TlsSource::DevelopmentCreated { .. }),
        "{source:?}"
    );
    stop(running).await;

    let mode = |name: &str| {
        let metadata = std::fs::metadata(data_dir.path().join("tls").join(name)).unwrap();
        metadata.permissions().mode() & 0o777
    };
    assert_eq!(mode("server-key.pem"), 0o600);
    assert_eq!(mode(""), 0o700);

    let certificate = std::fs::read(data_dir.path().join("tls/server.pem")).unwrap();
    let (running, source) = start_development(data_dir.path()).await;
    assert!(
        matches!(source, TlsSource::DevelopmentLoaded { .. }),
        "{source:?}"
    );
    let reloaded = std::fs::read(data_dir.path().join("tls/server.pem")).unwrap();
    assert_eq!(
        reloaded, certificate,
        "the second start reuses the certificate"
    );

    let client = client(data_dir.path(), running.address).build().unwrap();
    let response = client
        .get(url(running.address, "/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stop(running).await;
}

#[tokio::test]
async fn plain_http_on_tls_port_rejected() {
    let data_dir = tempfile::tempdir().unwrap();
    let (running, _) = start_development(data_dir.path()).await;

    let mut stream = TcpStream::connect(running.address).await.unwrap();
    stream
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    assert!(
        !reply.starts_with(b"HTTP/"),
        "got an HTTP answer: {:?}",
        String::from_utf8_lossy(&reply)
    );

    stop(running).await;
}

#[tokio::test]
async fn plain_http_listener_reports_no_tls() {
    let running = start(None, Duration::from_secs(5)).await;

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{}/whoami", running.address);
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(body.contains(" peer=127.0.0.1:"), "{body}");
    assert!(body.ends_with("tls=false"), "{body}");

    let http2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = http2.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);

    stop(running).await;
}

#[tokio::test]
async fn silent_connection_closed_after_header_timeout() {
    let running = start(None, Duration::from_millis(300)).await;

    let mut stream = TcpStream::connect(running.address).await.unwrap();
    let mut reply = Vec::new();
    let started = tokio::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(250));

    stop(running).await;
}

/// An HTTP/2 connection that made a request and went quiet is closed after
/// the idle timeout, and a request that takes longer than the timeout is
/// not taken for idleness.
#[tokio::test]
async fn idle_http2_connection_closed() {
    let running = start_limited(
        None,
        ListenerLimits {
            idle_timeout: SLOW_RESPONSE / 4,
            ..limits(16, Duration::from_secs(5))
        },
    )
    .await;

    let stream = TcpStream::connect(running.address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/slow", running.address))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"done", "the slow request was cut off");

    let ended = tokio::time::timeout(Duration::from_secs(30), connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");

    stop(running).await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_request_finish() {
    let data_dir = tempfile::tempdir().unwrap();
    let (running, _) = start_development(data_dir.path()).await;
    let client = client(data_dir.path(), running.address).build().unwrap();

    let request = tokio::spawn({
        let client = client.clone();
        let url = url(running.address, "/slow");
        async move { client.get(url).send().await?.text().await }
    });
    running.slow_started.notified().await;
    let cancelled_at = tokio::time::Instant::now();
    running.shutdown.cancel();

    let served = tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("serve did not return within its grace period")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    assert!(
        cancelled_at.elapsed() >= SLOW_RESPONSE / 2,
        "serve returned before the slow request could finish"
    );

    let body = request.await.unwrap().unwrap();
    assert_eq!(body, "done");

    let after = client.get(url(running.address, "/whoami")).send().await;
    assert!(after.is_err(), "a new request succeeded after shutdown");
}

#[tokio::test]
async fn connection_limit_queues_new_clients() {
    let running = start_limited(None, limits(1, Duration::from_secs(30))).await;
    let url = format!("http://{}/whoami", running.address);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // A silent connection takes the only slot.
    let holder = TcpStream::connect(running.address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = client
        .get(&url)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(queued.is_err(), "served past the limit: {queued:?}");

    drop(holder);
    let response = client
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    stop(running).await;
}

/// Opens a TCP connection to `address` from the local address `source`.
async fn connect_from(source: [u8; 4], address: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((std::net::Ipv4Addr::from(source), 0)))
        .unwrap();
    socket.connect(address).await.unwrap()
}

/// Sends `GET /whoami` over `stream` with HTTP/1.1 and returns the sender,
/// which keeps the connection open, and the response body, or the error
/// when the server closed the connection without a response.
async fn whoami_over(
    stream: TcpStream,
) -> (
    Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
    Result<String, hyper::Error>,
) {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/whoami")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(error) => return (None, Err(error)),
    };
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        Some(sender),
        Ok(String::from_utf8_lossy(&body).into_owned()),
    )
}

/// One address at its cap gets new connections closed unanswered, while
/// another address and a trusted proxy are still served, and a closed
/// connection gives its slot back.
#[tokio::test]
async fn per_address_cap_spares_other_addresses() {
    let running = start_limited(
        None,
        ListenerLimits {
            per_address: Some(PerAddressCap {
                max_connections: 2,
                exempt: vec!["127.0.0.3/32".parse().unwrap()],
            }),
            ..limits(16, Duration::from_secs(60))
        },
    )
    .await;

    let (first, answer) = whoami_over(connect_from([127, 0, 0, 1], running.address).await).await;
    assert!(answer.unwrap().contains("peer=127.0.0.1:"));
    let (second, answer) = whoami_over(connect_from([127, 0, 0, 1], running.address).await).await;
    assert!(answer.unwrap().contains("peer=127.0.0.1:"));

    let (_, over_cap) = whoami_over(connect_from([127, 0, 0, 1], running.address).await).await;
    assert!(over_cap.is_err(), "third connection served: {over_cap:?}");

    let (_other, answer) = whoami_over(connect_from([127, 0, 0, 2], running.address).await).await;
    assert!(answer.unwrap().contains("peer=127.0.0.2:"));

    let mut proxy_connections = Vec::new();
    for _ in 0..4 {
        let (sender, answer) =
            whoami_over(connect_from([127, 0, 0, 3], running.address).await).await;
        assert!(answer.unwrap().contains("peer=127.0.0.3:"));
        proxy_connections.push(sender);
    }

    // The server notices the close only when it next reads, so retry until
    // it has released the slot. The bound makes a leaked slot fail the test.
    drop(first);
    let mut served_again = false;
    for _ in 0..50 {
        let (sender, answer) =
            whoami_over(connect_from([127, 0, 0, 1], running.address).await).await;
        if answer.is_ok() {
            served_again = sender.is_some();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served_again,
        "the closed connection's slot was not given back"
    );

    drop(second);
    stop(running).await;
}
