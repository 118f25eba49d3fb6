//! Raw HTTP/1.1 over TLS: request bytes exactly as written, with no
//! client-side clean-up of the path or headers.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Status code and raw text of one answer.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub text: String,
    /// Whether the server closed the connection within the read deadline.
    pub closed: bool,
}

/// Opens a TLS connection to `address` that trusts only `ca_pem`.
pub async fn connect(address: SocketAddr, ca_pem: &[u8]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads from `stream` until the server closes the connection or 15 s pass.
/// A reset after some bytes arrived counts as a close.
pub async fn read_until_closed(stream: &mut TlsStream<TcpStream>) -> RawResponse {
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        stream.read_to_end(&mut buffer),
    )
    .await;
    let closed = read.is_ok();
    let text = String::from_utf8_lossy(&buffer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    RawResponse {
        status,
        text,
        closed,
    }
}

/// Sends `request` (the whole message, CRLFs included) and reads until the
/// server closes the connection.
pub async fn send(address: SocketAddr, ca_pem: &[u8], request: &[u8]) -> RawResponse {
    let mut tls = connect(address, ca_pem).await;
    // The server may respond and close before the whole request is sent,
    // for a body over its limit. The response is still read below.
    let _ = tls.write_all(request).await;
    read_until_closed(&mut tls).await
}

/// A GET with `Connection: close` and the given extra header lines.
pub fn get(target: &str, headers: &[&str]) -> Vec<u8> {
    let mut request =
        format!("GET {target} HTTP/1.1\r\nHost: portcullis.example.test\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}
