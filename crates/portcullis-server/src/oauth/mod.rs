//! The OAuth 2.0 authorization server and its JWT access tokens.
//!
//! - [`signing`]: token-signing keys: generation, sealing, the public JWK
//!   and the [`signing::KeySet`] that signs tokens and publishes the JWKS.
//! - [`rotation`]: the rule that decides which key signs, which keys are
//!   published and which can be deleted.
//! - [`jwt`]: the access token claims (RFC 9068) and their validation.
//! - [`keys`]: the signing keys of a running server and their rotation.
//! - [`deny_list`]: access tokens revoked before they expire.
//! - [`metadata`]: `/.well-known/jwks.json` and the RFC 8414 metadata.
//! - [`server`]: the authorization server's shared state and upkeep task.
//! - [`form`], [`error`], [`client_auth`]: strict request parsing, RFC 6749
//!   error responses and client authentication, shared by the endpoints.
//! - [`token`] and [`issue`]: the token endpoint and token issuance.
//! - [`introspect`] and [`revoke`]: RFC 7662 introspection and RFC 7009
//!   revocation.
//! - [`authorize`]: the authorization endpoint, with its sign-in
//!   [`session`]s and [`csrf`] tokens. Failed sign-ins count in the
//!   node's brute-force tracker, shared through Redis when it is set.

pub mod authorize;
pub mod client_auth;
pub mod csrf;
pub mod deny_list;
pub mod error;
pub mod form;
pub mod introspect;
pub mod issue;
pub mod jwt;
pub mod keys;
pub mod metadata;
pub mod revoke;
pub mod rotation;
pub mod server;
pub mod session;
pub mod signing;
pub mod token;

#[cfg(test)]
mod test_keys;
