//! Token-signing keys: generation, the public JWK, and the in-memory
//! [`KeySet`] that signs access tokens and publishes the JWKS.
//!
//! Each key has exactly one algorithm, fixed when it is generated, and a
//! token is verified only with the algorithm of the key its `kid` names
//! (RFC 8725 §3.1). The kid is the RFC 7638 JWK thumbprint (SHA-256,
//! base64url): it is unique per key, anyone can recompute it from the JWKS,
//! and a random kid would hide nothing, because the key is public anyway.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use portcullis_core::crypto::{
    CryptoError, PublicKeyParts, SealingKey, SigningKeyPair, generate_private_key, sha256,
};
use portcullis_core::signing::{SigningAlgorithm, SigningKeyRecord, SigningKeyState};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::jwt::AccessTokenClaims;
use super::rotation::RotationPlan;

/// The sealing purpose of token-signing keys. It selects the derived
/// sealing key and is bound into every sealed key's associated data.
pub const SIGNING_KEY_PURPOSE: &str = "token-signing-key";

/// The JWS `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The members a published JWK may contain. Every other member is dropped
/// from the JWKS and rejected in a stored JWK, so no private member (`d`,
/// `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) can leave Portcullis.
const PUBLIC_JWK_MEMBERS: [&str; 9] = ["kty", "kid", "use", "alg", "n", "e", "crv", "x", "y"];

/// An error while generating, loading or using a signing key.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A cryptographic operation failed: key generation, sealing, opening
    /// a sealed key (for example under another master key) or signing.
    #[error("signing key {kid}: {source}")]
    Crypto {
        /// The key concerned, or an empty string for a key not yet named.
        kid: String,
        /// The underlying failure.
        source: CryptoError,
    },
    /// A stored public JWK is not valid JSON, contains a member that is
    /// not public, or does not match its record.
    #[error("signing key {kid}: invalid stored public JWK: {reason}")]
    InvalidPublicJwk {
        /// The key concerned.
        kid: String,
        /// The fault, without key material.
        reason: &'static str,
    },
    /// The private key opened from storage does not belong to the stored
    /// public JWK.
    #[error("signing key {kid}: the private key does not match the public JWK")]
    KeyMismatch {
        /// The key concerned.
        kid: String,
    },
    /// A plan named a key that is not among the records.
    #[error("signing key {kid} is named by the rotation plan but was not loaded")]
    MissingRecord {
        /// The key concerned.
        kid: String,
    },
    /// No key is active, so no token can be signed.
    #[error("no active signing key: generate one with `portcullis signing-keys rotate`")]
    NoActiveKey,
    /// The claims could not be serialized.
    #[error("failed to serialize access token claims: {0}")]
    Claims(#[from] serde_json::Error),
}

/// Generates a new key pair, seals its private key and returns the record
/// to store, in state `Pending`. The key starts signing only when the
/// rotation rule promotes it, at `activates_at` or later.
pub fn generate_signing_key(
    algorithm: SigningAlgorithm,
    sealing: &SealingKey,
    now: OffsetDateTime,
    activates_at: OffsetDateTime,
) -> Result<SigningKeyRecord, SigningError> {
    let crypto_error = |source| SigningError::Crypto {
        kid: String::new(),
        source,
    };
    let pkcs8 = generate_private_key(algorithm).map_err(crypto_error)?;
    let pair = SigningKeyPair::from_pkcs8(algorithm, &pkcs8).map_err(crypto_error)?;

    let key_members = public_key_members(&pair.public_key());
    let kid = thumbprint(&key_members);
    let jwk = public_jwk(&key_members, &kid, algorithm);

    let sealed_private_key =
        sealing
            .seal(&pkcs8, kid.as_bytes())
            .map_err(|source| SigningError::Crypto {
                kid: kid.clone(),
                source,
            })?;

    Ok(SigningKeyRecord {
        kid,
        algorithm,
        state: SigningKeyState::Pending,
        public_jwk: Value::Object(jwk).to_string(),
        sealed_private_key,
        created_at: now,
        activates_at,
        retired_at: None,
        publish_until: None,
        revoked_at: None,
        revoked_reason: None,
    })
}

/// A published key: its public JWK and the decoded key that verifies
/// tokens, used with exactly one algorithm.
#[derive(Clone)]
pub struct PublishedKey {
    kid: String,
    algorithm: SigningAlgorithm,
    jwk: Map<String, Value>,
    decoding_key: DecodingKey,
}

impl PublishedKey {
    /// Builds a published key from a stored record, checking that its JWK
    /// contains only public members and agrees with the record.
    pub fn from_record(record: &SigningKeyRecord) -> Result<Self, SigningError> {
        let invalid = |reason| SigningError::InvalidPublicJwk {
            kid: record.kid.clone(),
            reason,
        };
        let Ok(Value::Object(jwk)) = serde_json::from_str::<Value>(&record.public_jwk) else {
            return Err(invalid("not a JSON object"));
        };
        if jwk
            .keys()
            .any(|name| !PUBLIC_JWK_MEMBERS.contains(&name.as_str()))
        {
            return Err(invalid("contains a member that is not a public key member"));
        }
        if jwk.get("kid").and_then(Value::as_str) != Some(record.kid.as_str()) {
            return Err(invalid("kid differs from the record"));
        }
        if jwk.get("alg").and_then(Value::as_str) != Some(record.algorithm.as_str()) {
            return Err(invalid("alg differs from the record"));
        }
        if jwk.get("use").and_then(Value::as_str) != Some("sig") {
            return Err(invalid("use is not sig"));
        }

        let decoding_key = decoding_key(&jwk, record.algorithm).map_err(invalid)?;
        if thumbprint(&jwk) != record.kid {
            return Err(invalid("kid is not the JWK thumbprint"));
        }
        Ok(Self {
            kid: record.kid.clone(),
            algorithm: record.algorithm,
            jwk,
            decoding_key,
        })
    }

    /// Returns the key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm that tokens under this key must use.
    pub const fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// Returns the key for jsonwebtoken's signature check.
    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding_key
    }

    /// Returns the public JWK, public members only.
    pub fn jwk(&self) -> Value {
        Value::Object(self.jwk.clone())
    }
}

impl fmt::Debug for PublishedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The signing keys in use at one moment: the active key that signs new
/// tokens, and every published key by kid, which verify tokens.
///
/// Built from the stored records and a [`RotationPlan`]. Rebuild it when the
/// plan changes. A key absent from the set (deleted, or never published)
/// verifies nothing, and no key is ever fetched from elsewhere.
#[derive(Debug, Default)]
pub struct KeySet {
    signer: Option<ActiveKey>,
    published: BTreeMap<String, PublishedKey>,
}

/// The key that signs, with its private half opened from storage.
struct ActiveKey {
    kid: String,
    pair: SigningKeyPair,
}

impl fmt::Debug for ActiveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.pair.algorithm())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Builds the key set that `plan` describes. Only the signer's private
    /// key is opened. Each published key's JWK is checked, and the signer's
    /// private key must match its own JWK.
    pub fn from_plan(
        records: &[SigningKeyRecord],
        plan: &RotationPlan,
        sealing: &SealingKey,
    ) -> Result<Self, SigningError> {
        let find = |kid: &str| {
            records
                .iter()
                .find(|record| record.kid == kid)
                .ok_or_else(|| SigningError::MissingRecord {
                    kid: kid.to_owned(),
                })
        };

        let mut published = BTreeMap::new();
        for kid in &plan.published {
            let key = PublishedKey::from_record(find(kid)?)?;
            published.insert(key.kid.clone(), key);
        }

        let signer = match &plan.signer {
            Some(kid) => Some(open_signer(find(kid)?, sealing)?),
            None => None,
        };
        if let Some(signer) = &signer
            && !published.contains_key(&signer.kid)
        {
            let key = PublishedKey::from_record(find(&signer.kid)?)?;
            published.insert(key.kid.clone(), key);
        }
        Ok(Self { signer, published })
    }

    /// Returns the kid and algorithm of the key that signs, if any.
    pub fn active(&self) -> Option<(&str, SigningAlgorithm)> {
        self.signer
            .as_ref()
            .map(|signer| (signer.kid.as_str(), signer.pair.algorithm()))
    }

    /// Returns the published key with this kid, if any.
    pub fn key(&self, kid: &str) -> Option<&PublishedKey> {
        self.published.get(kid)
    }

    /// Signs an access token with the active key: a compact JWS with the
    /// header `{"alg", "typ": "at+jwt", "kid"}` (RFC 9068 §2.1).
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, SigningError> {
        let signer = self.signer.as_ref().ok_or(SigningError::NoActiveKey)?;
        let header = json!({
            "alg": signer.pair.algorithm().as_str(),
            "typ": ACCESS_TOKEN_TYPE,
            "kid": signer.kid,
        });

        let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));

        let signature =
            signer
                .pair
                .sign(token.as_bytes())
                .map_err(|source| SigningError::Crypto {
                    kid: signer.kid.clone(),
                    source,
                })?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    /// Builds the JWK Set document for `/.well-known/jwks.json` (RFC 7517 §5):
    /// every published key, ordered by kid, with public members only.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .published
            .values()
            .map(|key| {
                let public: Map<String, Value> = key
                    .jwk
                    .iter()
                    .filter(|(name, _)| PUBLIC_JWK_MEMBERS.contains(&name.as_str()))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect();
                Value::Object(public)
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// Opens the sealed private key of `record` and checks it against the
/// record's public JWK.
fn open_signer(record: &SigningKeyRecord, sealing: &SealingKey) -> Result<ActiveKey, SigningError> {
    let crypto_error = |source| SigningError::Crypto {
        kid: record.kid.clone(),
        source,
    };
    let pkcs8 = sealing
        .open(&record.sealed_private_key, record.kid.as_bytes())
        .map_err(crypto_error)?;
    let pair = SigningKeyPair::from_pkcs8(record.algorithm, pkcs8.expose_secret())
        .map_err(crypto_error)?;

    if thumbprint(&public_key_members(&pair.public_key())) != record.kid {
        return Err(SigningError::KeyMismatch {
            kid: record.kid.clone(),
        });
    }
    Ok(ActiveKey {
        kid: record.kid.clone(),
        pair,
    })
}

/// Builds the key-type members of a public JWK (RFC 7518 §6): `kty` plus `n`, `e`
/// for RSA, `crv`, `x`, `y` for P-256, and `crv`, `x` for Ed25519 (RFC 8037).
fn public_key_members(public: &PublicKeyParts) -> Map<String, Value> {
    let mut members = Map::new();
    match public {
        PublicKeyParts::Rsa { modulus, exponent } => {
            members.insert("kty".into(), "RSA".into());
            members.insert("n".into(), URL_SAFE_NO_PAD.encode(modulus).into());
            members.insert("e".into(), URL_SAFE_NO_PAD.encode(exponent).into());
        }
        PublicKeyParts::P256 { point } => {
            // The uncompressed point is 0x04 || x (32 bytes) || y (32 bytes).
            let coordinates = point.get(1..).unwrap_or_default();
            let (x, y) = coordinates.split_at(coordinates.len() / 2);
            members.insert("kty".into(), "EC".into());
            members.insert("crv".into(), "P-256".into());
            members.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
            members.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
        }
        PublicKeyParts::Ed25519 { key } => {
            members.insert("kty".into(), "OKP".into());
            members.insert("crv".into(), "Ed25519".into());
            members.insert("x".into(), URL_SAFE_NO_PAD.encode(key).into());
        }
    }
    members
}

/// Adds `kid`, `use` and `alg` to the key-type members.
fn public_jwk(
    key_members: &Map<String, Value>,
    kid: &str,
    algorithm: SigningAlgorithm,
) -> Map<String, Value> {
    let mut jwk = key_members.clone();
    jwk.insert("kid".into(), kid.into());
    jwk.insert("use".into(), "sig".into());
    jwk.insert("alg".into(), algorithm.as_str().into());
    jwk
}

/// Computes the RFC 7638 thumbprint: SHA-256 over the required members of
/// the key type, in lexicographic order, as JSON with no whitespace, then
/// base64url without padding. Other members are ignored.
fn thumbprint(jwk: &Map<String, Value>) -> String {
    let required: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => &["kty"],
    };
    // serde_json's Map is ordered by key unless the `preserve_order`
    // feature is on, so build the canonical text by hand to be sure.
    let mut canonical = String::from("{");
    for (index, name) in required.iter().enumerate() {
        if index > 0 {
            canonical.push(',');
        }
        let value = jwk.get(*name).cloned().unwrap_or(Value::Null);
        canonical.push_str(&Value::from(*name).to_string());
        canonical.push(':');
        canonical.push_str(&value.to_string());
    }
    canonical.push('}');
    URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
}

/// Builds the verification key from a public JWK, checking that its key
/// type and curve fit `algorithm`.
fn decoding_key(
    jwk: &Map<String, Value>,
    algorithm: SigningAlgorithm,
) -> Result<DecodingKey, &'static str> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kty = member("kty");
    match algorithm {
        SigningAlgorithm::Rs256 => {
            let (Some("RSA"), Some(n), Some(e)) = (kty, member("n"), member("e")) else {
                return Err("RS256 needs kty RSA with n and e");
            };
            DecodingKey::from_rsa_components(n, e).map_err(|_| "n or e is not base64url")
        }
        SigningAlgorithm::Es256 => {
            let (Some("EC"), Some("P-256"), Some(x), Some(y)) =
                (kty, member("crv"), member("x"), member("y"))
            else {
                return Err("ES256 needs kty EC, crv P-256, x and y");
            };
            DecodingKey::from_ec_components(x, y).map_err(|_| "x or y is not base64url")
        }
        SigningAlgorithm::EdDsa => {
            let (Some("OKP"), Some("Ed25519"), Some(x)) = (kty, member("crv"), member("x")) else {
                return Err("EdDSA needs kty OKP, crv Ed25519 and x");
            };
            DecodingKey::from_ed_components(x).map_err(|_| "x is not base64url")
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
    use portcullis_core::crypto::MasterKey;
    use time::Duration;

    use super::*;
    use crate::oauth::jwt::Audience;
    use crate::oauth::rotation::{RotationPolicy, plan};
    use crate::oauth::test_keys::{ALGORITHMS, active_key, key_set, sealing_key};

    const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

    fn expected_members(algorithm: SigningAlgorithm) -> Vec<&'static str> {
        let mut members = match algorithm {
            SigningAlgorithm::Rs256 => vec!["kty", "kid", "use", "alg", "n", "e"],
            SigningAlgorithm::Es256 => vec!["kty", "kid", "use", "alg", "crv", "x", "y"],
            SigningAlgorithm::EdDsa => vec!["kty", "kid", "use", "alg", "crv", "x"],
        };
        members.sort_unstable();
        members
    }

    fn claims(now: OffsetDateTime) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://portcullis.example.test".to_owned(),
            sub: "client-1".to_owned(),
            aud: Audience::One("https://api.example.com".to_owned()),
            exp: now.unix_timestamp() + 300,
            iat: now.unix_timestamp(),
            nbf: None,
            jti: "token-1".to_owned(),
            client_id: "client-1".to_owned(),
            scope: "orders:read".to_owned(),
            tenant: "acme".to_owned(),
            cnf: None,
        }
    }

    #[test]
    fn generated_record_is_pending_and_sealed() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        for algorithm in ALGORITHMS {
            let activates_at = now + Duration::hours(1);
            let record = generate_signing_key(algorithm, &sealing, now, activates_at).unwrap();
            assert_eq!(record.algorithm, algorithm);
            assert_eq!(record.state, SigningKeyState::Pending);
            assert_eq!(record.created_at, now);
            assert_eq!(record.activates_at, activates_at);
            assert_eq!(record.retired_at, None);
            assert_eq!(record.publish_until, None);
            assert!(
                sealing
                    .open(&record.sealed_private_key, record.kid.as_bytes())
                    .is_ok()
            );
            assert!(
                sealing
                    .open(&record.sealed_private_key, b"other-kid")
                    .is_err()
            );
        }
    }

    #[test]
    fn stored_jwk_has_public_members_only() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        for algorithm in ALGORITHMS {
            let record = generate_signing_key(algorithm, &sealing, now, now).unwrap();
            let jwk: Map<String, Value> = serde_json::from_str(&record.public_jwk).unwrap();
            let mut members: Vec<&str> = jwk.keys().map(String::as_str).collect();
            members.sort_unstable();
            assert_eq!(members, expected_members(algorithm), "{algorithm}");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], algorithm.as_str());
            assert_eq!(jwk["kid"], record.kid.as_str());
        }
    }

    #[test]
    fn kid_is_rfc7638_thumbprint() {
        // jsonwebtoken computes the thumbprint independently of our code.
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        for algorithm in ALGORITHMS {
            let record = generate_signing_key(algorithm, &sealing, now, now).unwrap();
            let jwk: Jwk = serde_json::from_str(&record.public_jwk).unwrap();
            let expected = jwk.thumbprint(ThumbprintHash::SHA256).unwrap();
            assert_eq!(record.kid, expected, "{algorithm}");
        }
    }

    #[test]
    fn jwks_has_public_members_only() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        for algorithm in ALGORITHMS {
            let key = active_key(algorithm, &sealing, now);
            let keys = key_set(std::slice::from_ref(&key.record), &sealing, now);
            let jwks = keys.jwks();
            let entries = jwks["keys"].as_array().unwrap();
            assert_eq!(entries.len(), 1);
            for entry in entries {
                let entry = entry.as_object().unwrap();
                for private in PRIVATE_MEMBERS {
                    assert!(
                        !entry.contains_key(private),
                        "{algorithm} JWKS has {private}"
                    );
                }
                assert_ne!(entry["kty"], "oct");
                let mut members: Vec<&str> = entry.keys().map(String::as_str).collect();
                members.sort_unstable();
                assert_eq!(members, expected_members(algorithm), "{algorithm}");
            }
        }
    }

    #[test]
    fn jwks_keeps_retired_key_during_window() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let old = active_key(SigningAlgorithm::Rs256, &sealing, now - Duration::days(31));
        let new = active_key(SigningAlgorithm::EdDsa, &sealing, now);
        let mut pending = new.record.clone();
        pending.state = SigningKeyState::Pending;

        let keys = key_set(&[old.record, pending], &sealing, now);
        assert_eq!(
            keys.active().map(|(kid, _)| kid),
            Some(new.record.kid.as_str())
        );
        let jwks = keys.jwks();
        let entries = jwks["keys"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        for entry in entries {
            for private in PRIVATE_MEMBERS {
                assert!(entry.get(private).is_none(), "JWKS entry has {private}");
            }
        }
    }

    #[test]
    fn stored_private_member_rejected() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let mut record = active_key(SigningAlgorithm::Es256, &sealing, now).record;
        let mut jwk: Map<String, Value> = serde_json::from_str(&record.public_jwk).unwrap();
        jwk.insert("d".into(), "AAAA".into());
        record.public_jwk = Value::Object(jwk).to_string();
        let error = PublishedKey::from_record(&record).unwrap_err();
        assert!(
            matches!(error, SigningError::InvalidPublicJwk { .. }),
            "{error}"
        );
    }

    #[test]
    fn stored_jwk_must_match_record() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let record = active_key(SigningAlgorithm::Es256, &sealing, now).record;

        let mut wrong_algorithm = record.clone();
        wrong_algorithm.algorithm = SigningAlgorithm::Rs256;
        assert!(PublishedKey::from_record(&wrong_algorithm).is_err());

        let mut wrong_kid = record.clone();
        wrong_kid.kid = "another-kid".to_owned();
        assert!(PublishedKey::from_record(&wrong_kid).is_err());

        let other = active_key(SigningAlgorithm::Es256, &sealing, now).record;
        let mut swapped = record;
        swapped.public_jwk = other.public_jwk;
        assert!(PublishedKey::from_record(&swapped).is_err());
    }

    #[test]
    fn other_master_key_cannot_load_signer() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let key = active_key(SigningAlgorithm::EdDsa, &sealing, now);
        let other = MasterKey::generate()
            .unwrap()
            .sealing_key(SIGNING_KEY_PURPOSE);
        let records = [key.record];
        let plan = plan(&records, now, &RotationPolicy::default());
        let error = KeySet::from_plan(&records, &plan, &other).unwrap_err();
        assert!(matches!(error, SigningError::Crypto { .. }), "{error}");
    }

    #[test]
    fn sealed_key_bound_to_its_kid() {
        // A sealed key copied onto another key's row does not open.
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let first = active_key(SigningAlgorithm::Es256, &sealing, now);
        let second = active_key(SigningAlgorithm::Es256, &sealing, now);
        let mut moved = second.record;
        moved.sealed_private_key = first.record.sealed_private_key;
        let plan = RotationPlan {
            signer: Some(moved.kid.clone()),
            published: vec![moved.kid.clone()],
            ..Default::default()
        };
        assert!(KeySet::from_plan(&[moved], &plan, &sealing).is_err());
    }

    #[test]
    fn sign_needs_active_key() {
        let keys = KeySet::default();
        let error = keys.sign(&claims(OffsetDateTime::now_utc())).unwrap_err();
        assert!(matches!(error, SigningError::NoActiveKey));
    }

    #[test]
    fn signed_header_names_key() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        for algorithm in ALGORITHMS {
            let key = active_key(algorithm, &sealing, now);
            let keys = key_set(std::slice::from_ref(&key.record), &sealing, now);
            let token = keys.sign(&claims(now)).unwrap();
            let header = token.split('.').next().unwrap();
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
            assert_eq!(
                header,
                json!({"alg": algorithm.as_str(), "typ": "at+jwt", "kid": key.record.kid})
            );
        }
    }

    #[test]
    fn jwks_verifies_tokens_with_library() {
        // A resource server that knows only the JWKS document: jsonwebtoken
        // parses each JWK and checks our token, as PyJWT or jose would.
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        for algorithm in ALGORITHMS {
            let key = active_key(algorithm, &sealing, now);
            let keys = key_set(std::slice::from_ref(&key.record), &sealing, now);
            let token = keys.sign(&claims(now)).unwrap();

            let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(keys.jwks()).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
            let decoding_key = DecodingKey::from_jwk(jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(header.alg);
            validation.set_audience(&["https://api.example.com"]);
            validation.set_issuer(&["https://portcullis.example.test"]);
            let decoded =
                jsonwebtoken::decode::<AccessTokenClaims>(&token, &decoding_key, &validation)
                    .unwrap();
            assert_eq!(decoded.claims, claims(now), "{algorithm}");
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        }
    }

    #[test]
    fn key_set_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<KeySet>();
    }

    #[test]
    fn debug_omits_key_material() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let key = active_key(SigningAlgorithm::Rs256, &sealing, now);
        let keys = key_set(std::slice::from_ref(&key.record), &sealing, now);
        let text = format!("{keys:?}");
        assert!(text.contains(&key.record.kid));
        let jwk: Map<String, Value> = serde_json::from_str(&key.record.public_jwk).unwrap();
        let modulus = jwk["n"].as_str().unwrap();
        assert!(!text.contains(&modulus[..16]));
    }
}
