//! Public key infrastructure for mutual TLS.
//!
//! - [`ca`]: the internal CA: client certificates from CSRs, revocation, the
//!   CRL, and the partner CAs trusted per tenant.
//! - [`verify`]: the one verification of a client certificate chain that the
//!   listener, the forwarded-certificate path and `portcullis certs verify`
//!   share.

pub mod ca;
pub mod verify;
