//! The client certificate of a request, wherever it was presented.
//!
//! Code that needs a request's certificate (the token endpoint, the gateway,
//! the verify API) reads it through [`client_certificate`], so that they all
//! see the same certificate and the same verdict.

use std::sync::Arc;

use http::HeaderMap;

use crate::app::AppState;
use crate::listener::{ClientCertificate, ConnectionInfo};

/// Returns the client certificate of a request, with its verdict, or `None`
/// when the request carries none.
///
/// The certificate is the one the client presented in this connection's TLS
/// handshake.
// NOTE: `state` and `headers` are unused until a certificate forwarded by a
// trusted TLS-terminating proxy is read from its header.
pub fn client_certificate(
    state: &AppState,
    connection: &ConnectionInfo,
    headers: &HeaderMap,
) -> Option<Arc<ClientCertificate>> {
    let _ = (state, headers);
    connection.client_certificate.clone()
}
