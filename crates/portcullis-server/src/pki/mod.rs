//! Public key infrastructure for mutual TLS.
//!
//! - [`ca`]: the internal CA: client certificates from CSRs, revocation, the
//!   CRL, and the partner CAs trusted per tenant.
//! - [`clients`]: the OAuth client that a client certificate authenticates
//!   when the request names none, cached by thumbprint.
//! - [`forwarded`]: client certificates forwarded in a header by a
//!   TLS-terminating proxy.
//! - [`handshake`]: the rustls client certificate verifier of the listener.
//! - [`identity`]: whether a presented client certificate authenticates an
//!   OAuth client (RFC 8705 §2).
//! - [`partner_ca`]: partner CAs trusted per tenant, with their CRL files,
//!   and their removal.
//! - [`presented`]: the client certificate of a request, from the
//!   handshake, with its verdict under the current trust.
//! - [`publish`]: `GET /ca/ca.pem` and `GET /ca/crl.pem`, without
//!   authentication.
//! - [`revoked`]: serials of revoked client certificates, checked on every
//!   request so that a revocation also reaches open connections.
//! - [`trust`]: the listener's rustls configuration for client
//!   certificates, rebuilt when CAs or revocations change.
//! - [`verify`]: the one verification of a client certificate chain that the
//!   listener, the forwarded-certificate path and `portcullis certs verify`
//!   share.

pub mod ca;
pub mod clients;
pub mod forwarded;
pub mod handshake;
pub mod identity;
pub mod partner_ca;
pub mod presented;
pub mod publish;
pub mod revoked;
pub mod trust;
pub mod verify;
