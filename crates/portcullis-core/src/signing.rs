//! Token-signing keys as stored: algorithm, lifecycle state and the
//! sealed private key.
//!
//! A key is `Pending` from creation until it starts signing, `Active` while
//! it signs, and `Retired` once a newer key signs. The public JWK stays
//! published until `publish_until`, so tokens signed before retirement
//! still validate until they expire. An operator can revoke a key in any
//! of these states after a compromise: a `Revoked` key leaves the JWKS at
//! once, verifies no token and never signs again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A JWS algorithm that Portcullis signs access tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// ECDSA with P-256 and SHA-256 (RFC 7518 §3.4).
    #[serde(rename = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    #[serde(rename = "RS256")]
    Rs256,
    /// Ed25519 (RFC 8037 §3.1).
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl SigningAlgorithm {
    /// Returns the `alg` name of RFC 7518 and RFC 8037, as stored and as
    /// written in JWS headers and JWKs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;

    /// Parses the exact, case-sensitive `alg` name, as JWS requires.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            "EdDSA" => Ok(Self::EdDsa),
            other => Err(format!(
                "unsupported signing algorithm {other:?}: expected ES256, RS256 or EdDSA"
            )),
        }
    }
}

/// The lifecycle stage of a signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyState {
    /// Created and published, but not yet signing, so that clients can
    /// fetch the public key before the first token signed with it arrives.
    Pending,
    /// The key that signs new tokens.
    Active,
    /// Replaced by a newer key. Its public key stays published until
    /// `publish_until`, and then the key can be deleted.
    Retired,
    /// Withdrawn by an operator. The key is no longer published, and its
    /// sealed private key is erased. The record stays, so that the
    /// revocation remains visible and the key is never used again.
    Revoked,
}

impl SigningKeyState {
    /// Returns the state as stored and printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for SigningKeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningKeyState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "retired" => Ok(Self::Retired),
            "revoked" => Ok(Self::Revoked),
            other => Err(format!(
                "unknown signing key state {other:?}: expected pending, active, retired or revoked"
            )),
        }
    }
}

/// A stored token-signing key.
///
/// The private key is kept only sealed (AES-256-GCM under a key derived
/// from the master key, with the kid in the associated data), so a copy of
/// the database alone cannot sign tokens. `Debug` prints the ciphertext's
/// length, not its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id written in the JWS header `kid` and the JWK. Unique.
    pub kid: String,
    /// The one algorithm this key signs and verifies with.
    pub algorithm: SigningAlgorithm,
    /// The lifecycle state.
    pub state: SigningKeyState,
    /// The public JWK as JSON text, with public members only.
    pub public_jwk: String,
    /// The private key sealed with the signing-key sealing key. The
    /// plaintext is PKCS#8 DER. Empty once the key is revoked.
    pub sealed_private_key: Vec<u8>,
    /// When the key was generated.
    pub created_at: OffsetDateTime,
    /// The earliest time at which the key may start signing.
    pub activates_at: OffsetDateTime,
    /// When a newer key replaced this one; `None` until then.
    pub retired_at: Option<OffsetDateTime>,
    /// The time after which no token signed with this key can still be
    /// valid, so the key leaves the JWKS; `None` while it still signs.
    pub publish_until: Option<OffsetDateTime>,
    /// When an operator revoked the key; `None` unless it is `Revoked`.
    pub revoked_at: Option<OffsetDateTime>,
    /// The operator's reason for the revocation.
    pub revoked_reason: Option<String>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("state", &self.state)
            .field("public_jwk", &self.public_jwk)
            .field(
                "sealed_private_key",
                &format_args!("<{} bytes>", self.sealed_private_key.len()),
            )
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("retired_at", &self.retired_at)
            .field("publish_until", &self.publish_until)
            .field("revoked_at", &self.revoked_at)
            .field("revoked_reason", &self.revoked_reason)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for algorithm in [
            SigningAlgorithm::Es256,
            SigningAlgorithm::Rs256,
            SigningAlgorithm::EdDsa,
        ] {
            assert_eq!(algorithm.as_str().parse(), Ok(algorithm));
        }
        assert!("es256".parse::<SigningAlgorithm>().is_err());
        assert!("HS256".parse::<SigningAlgorithm>().is_err());
        assert!("none".parse::<SigningAlgorithm>().is_err());
    }

    #[test]
    fn state_names_round_trip() {
        for state in [
            SigningKeyState::Pending,
            SigningKeyState::Active,
            SigningKeyState::Retired,
            SigningKeyState::Revoked,
        ] {
            assert_eq!(state.as_str().parse(), Ok(state));
        }
        assert!("deleted".parse::<SigningKeyState>().is_err());
    }

    #[test]
    fn debug_omits_sealed_bytes() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let record = SigningKeyRecord {
            kid: "k1".to_owned(),
            algorithm: SigningAlgorithm::Es256,
            state: SigningKeyState::Active,
            public_jwk: "{}".to_owned(),
            sealed_private_key: vec![0xAB; 5],
            created_at: now,
            activates_at: now,
            retired_at: None,
            publish_until: None,
            revoked_at: None,
            revoked_reason: None,
        };
        let text = format!("{record:?}");
        assert!(text.contains("<5 bytes>"));
        assert!(!text.contains("171"));
    }
}
