//! Opens TLS connections to a Portcullis listener as fast as it can, for
//! the handshake benchmark `bench/mtls.sh`.
//!
//! ```sh
//! cargo run --release -p portcullis --example tls_handshakes -- \
//!     --connect 127.0.0.1:8443 --server-cert DATA_DIR/tls/server.pem \
//!     [--cert cert.pem --key key.pem] [--resume] \
//!     --tasks 32 --seconds 20
//! ```
//!
//! Each connection makes one handshake, sends `GET /healthz` with
//! `Connection: close`, reads the response to the end and checks its status
//! line. The client offers only X25519 for the key exchange, the group of
//! the one key share that `openssl s_time` (OpenSSL 3.0) sends, so that the
//! server makes the same exchange for both clients.
//!
//! The client trusts exactly the server certificate given by
//! `--server-cert`, and it still checks the handshake signature with that
//! certificate's key. It skips the verification of the certificate chain,
//! because that would add a second signature check per handshake to the
//! client, which shares one CPU with all its connections.
//!
//! Without `--resume`, every handshake is a full one. With it, each task
//! keeps its own session cache, so its first connection makes a full
//! handshake and every later one resumes the session of the one before,
//! with a TLS 1.3 ticket or a TLS 1.2 session id. At the end it prints one
//! `name value` line per figure: `connections`, `full`, `resumed`, `errors`
//! and `seconds`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, Tls12Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::{DigitallySignedStruct, HandshakeKind, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

/// The request of every connection. The `/healthz` handler reads nothing
/// from the store.
const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
/// The status line that counts a connection as served.
const EXPECTED_STATUS: &[u8] = b"HTTP/1.1 200 ";
/// Maximum response size read. A larger response counts as an error.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Time one connection gets from connect to the end of the response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Server names each task keeps sessions for. A task talks to one server,
/// and rustls keeps up to 8 TLS 1.3 tickets per name.
const SESSION_CACHE_SIZE: usize = 1;

#[derive(Parser)]
#[command(about = "Open TLS connections to a Portcullis listener and count the handshakes")]
struct Args {
    /// Address of the listener, like 127.0.0.1:8443.
    #[arg(long)]
    connect: SocketAddr,
    /// PEM file with the server's certificate, the only one trusted.
    #[arg(long, value_name = "FILE")]
    server_cert: PathBuf,
    /// PEM file with the client certificate chain to present.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM file with the private key of `--cert`.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Resume sessions instead of making a full handshake each time.
    #[arg(long)]
    resume: bool,
    /// The only TLS version offered.
    #[arg(long, value_enum, default_value_t = TlsVersion::Tls13)]
    tls: TlsVersion,
    /// Connections open at the same time.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    tasks: u16,
    /// Time to keep opening connections, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum TlsVersion {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

/// Counts of finished connections, shared by the tasks.
#[derive(Default)]
struct Counters {
    full: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
}

/// Server certificate verifier that accepts exactly one certificate and
/// checks handshake signatures against its public key.
#[derive(Debug)]
struct PinnedServerCert {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread: the benchmark pins this process to one CPU.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the Tokio runtime failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let config = client_config(args)?;
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);

    let mut tasks = JoinSet::new();
    for _ in 0..args.tasks {
        // A cache per task: a shared one would hold at most 8 tickets for
        // all tasks together, and the other tasks would make full
        // handshakes.
        let mut task_config = config.clone();
        if args.resume {
            task_config.resumption = Resumption::in_memory_sessions(SESSION_CACHE_SIZE)
                .tls12_resumption(Tls12Resumption::SessionIdOnly);
        }
        let connector = TlsConnector::from(Arc::new(task_config));
        let counters = Arc::clone(&counters);
        let address = args.connect;
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let result =
                    tokio::time::timeout(CONNECTION_TIMEOUT, connect_once(&connector, address))
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                match result {
                    Ok(HandshakeKind::Resumed) => counters.resumed.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => counters.full.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        // Only the first error is printed, so that a failing
                        // server does not flood the output.
                        if counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("connection to {address} failed: {error:#}");
                        }
                        0
                    }
                };
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a connection task failed")?;
    }
    let seconds = started.elapsed().as_secs_f64();

    let full = counters.full.load(Ordering::Relaxed);
    let resumed = counters.resumed.load(Ordering::Relaxed);
    println!("connections {}", full + resumed);
    println!("full {full}");
    println!("resumed {resumed}");
    println!("errors {}", counters.errors.load(Ordering::Relaxed));
    println!("seconds {seconds:.3}");
    Ok(())
}

/// Builds the client configuration: the aws-lc-rs provider reduced to
/// X25519, one TLS version, the pinned server certificate, the optional
/// client certificate and no resumption.
fn client_config(args: &Args) -> anyhow::Result<rustls::ClientConfig> {
    let default = aws_lc_rs::default_provider();
    let algorithms = default.signature_verification_algorithms;
    let provider = Arc::new(CryptoProvider {
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        ..default
    });
    let versions: &[&rustls::SupportedProtocolVersion] = match args.tls {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let verifier = Arc::new(PinnedServerCert {
        certificate: read_certificate(&args.server_cert)?,
        algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .context("the TLS version does not fit the crypto provider")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .with_context(|| {
                    format!("reading the certificates in {} failed", cert.display())
                })?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading the private key in {} failed", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the client certificate and key were rejected")?
        }
        _ => builder.with_no_client_auth(),
    };
    config.resumption = Resumption::disabled();
    Ok(config)
}

fn read_certificate(path: &Path) -> anyhow::Result<CertificateDer<'static>> {
    let mut certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {} failed", path.display()))?;
    match certificates.next() {
        Some(certificate) => {
            certificate.with_context(|| format!("invalid certificate PEM in {}", path.display()))
        }
        None => bail!("no certificate in {}", path.display()),
    }
}

/// Makes one connection with one request and returns the kind of its
/// handshake.
async fn connect_once(
    connector: &TlsConnector,
    address: SocketAddr,
) -> anyhow::Result<HandshakeKind> {
    let tcp = TcpStream::connect(address)
        .await
        .context("connect failed")?;
    tcp.set_nodelay(true)
        .context("setting TCP_NODELAY failed")?;
    // The pinned-certificate verifier ignores the name. rustls sends no SNI
    // for an IP address, and s_time sends none either.
    let name = ServerName::IpAddress(address.ip().into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .context("TLS handshake failed")?;
    let kind = tls
        .get_ref()
        .1
        .handshake_kind()
        .context("no handshake kind after the handshake")?;

    tls.write_all(REQUEST)
        .await
        .context("sending the request failed")?;
    let mut response = Vec::with_capacity(512);
    let read = (&mut tls)
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut response)
        .await
        .context("reading the response failed")?;
    if read > MAX_RESPONSE_BYTES {
        bail!("response longer than {MAX_RESPONSE_BYTES} bytes");
    }
    if !response.starts_with(EXPECTED_STATUS) {
        let line = response
            .split(|byte| *byte == b'\n')
            .next()
            .unwrap_or_default();
        bail!(
            "unexpected response status line {:?}",
            String::from_utf8_lossy(line).trim_end()
        );
    }
    Ok(kind)
}
