//! The OAuth 2.0 authorization server and its JWT access tokens.
//!
//! - [`signing`]: token-signing keys: generation, sealing, the public JWK
//!   and the [`signing::KeySet`] that signs tokens and publishes the JWKS.
//! - [`rotation`]: the rule that decides which key signs, which keys are
//!   published and which can be deleted.
//! - [`jwt`]: the access token claims (RFC 9068) and their validation.

pub mod jwt;
pub mod rotation;
pub mod signing;

#[cfg(test)]
mod test_keys;
