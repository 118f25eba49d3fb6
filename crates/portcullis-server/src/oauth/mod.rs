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

pub mod deny_list;
pub mod jwt;
pub mod keys;
pub mod metadata;
pub mod rotation;
pub mod server;
pub mod signing;

#[cfg(test)]
mod test_keys;
