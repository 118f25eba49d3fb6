//! Public key infrastructure for mutual TLS.
//!
//! - [`verify`]: the one verification of a client certificate chain that the
//!   listener, the forwarded-certificate path and `portcullis certs verify`
//!   share.

pub mod verify;
