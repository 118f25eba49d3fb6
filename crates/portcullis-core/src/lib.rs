//! Portcullis domain types and rules, with no I/O.
//!
//! - [`crypto`]: the one door to aws-lc-rs: randomness, keyed hashes of
//!   secrets, constant-time comparison, the master key and what derives from it.
//! - [`key`]: the API key format (`pc_live_…`, `pc_test_…`), its generation,
//!   checksum and parser.
//! - [`leak`]: finding API keys in arbitrary text, for the leak scanner.
//! - [`scope`]: scope names, scope sets and scope matching.
//! - [`name`]: rules for identifiers that people type and read (tenant names).
//! - [`ids`]: typed ids of stored objects.
//! - [`credential`]: what is known about a credential once it is verified.
//! - [`escape`]: escaping of outside text for one line of a log or export.
//! - [`duration`]: human durations such as `90d` or `24h`.
//! - [`oauth`]: OAuth 2.0 types: grant types, redirect URIs, user e-mail
//!   addresses, PKCE, and the records of clients, users, codes and tokens.
//! - [`signing`]: token-signing keys as stored: algorithm, state, sealed key.
//! - [`pki`]: the internal CA, issued client certificates and trusted
//!   partner CAs as stored, and certificate serial numbers.

pub mod credential;
pub mod crypto;
pub mod duration;
pub mod escape;
pub mod ids;
pub mod key;
pub mod leak;
pub mod name;
pub mod oauth;
pub mod pki;
pub mod scope;
pub mod signing;
