//! JWT access tokens (RFC 9068): the claims and their validation.
//!
//! [`validate`] trusts nothing in the token to choose how it is checked:
//! - headers that point to or carry keys (`jku`, `x5u`, `jwk`, `x5c`) are
//!   rejected and never followed, and so is any `crit` header, because
//!   Portcullis implements no JWS extension;
//! - the key comes from the [`KeySet`] by `kid` only, and the token's `alg`
//!   must equal that key's one algorithm, so `none`, HMAC over a public key
//!   and any other algorithm fail (RFC 8725 §3.1);
//! - every claim is read from the raw JSON with its exact type, so a
//!   mistyped claim is malformed, never treated as absent.
//!
//! jsonwebtoken then checks the signature and, as a second layer, the
//! standard claims with the same issuer, audience and leeway.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use portcullis_core::signing::SigningAlgorithm;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::signing::{ACCESS_TOKEN_TYPE, KeySet, PublishedKey};

/// Default clock leeway in seconds on `exp`, `nbf` and `iat`. Sixty seconds
/// absorbs ordinary NTP drift between Portcullis nodes and resource servers
/// while letting an expired token live at most one more minute.
pub const DEFAULT_LEEWAY_SECONDS: i64 = 60;

/// The default clock leeway, as a [`Duration`].
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(DEFAULT_LEEWAY_SECONDS.unsigned_abs());

/// Maximum clock leeway in seconds; a larger configured leeway is reduced
/// to this. Ten minutes is already most of a default 15-minute token
/// lifetime, and jsonwebtoken subtracts the leeway from the current Unix
/// time as an unsigned number, which must not go below zero.
pub const MAX_LEEWAY_SECONDS: u64 = 600;

/// Maximum token length accepted, in bytes. Portcullis's own tokens are well under
/// 2 KiB (an RS256 signature is 342 characters). The limit keeps a huge
/// header from being decoded and parsed at all.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// JOSE header members that name or carry a key. A token never supplies
/// its own trust, so a token with any of them is rejected without a fetch
/// (RFC 8725 §3.10). `b64` (RFC 7797) is rejected too, because Portcullis
/// never signs an unencoded payload.
const FORBIDDEN_HEADERS: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "b64"];

/// The `typ` values accepted for an access token (RFC 9068 §4), compared
/// without regard to case as media types are.
const ACCEPTED_TYPES: [&str; 2] = [ACCESS_TOKEN_TYPE, "application/at+jwt"];

/// The claims of a Portcullis access token (RFC 9068 §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The issuer: Portcullis's issuer URL.
    pub iss: String,
    /// The subject: the end user, or the client itself for
    /// `client_credentials`.
    pub sub: String,
    /// The audience: the resource server or servers the token is for.
    pub aud: Audience,
    /// Expiry as seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time as seconds since the Unix epoch.
    pub iat: i64,
    /// The earliest time of use as seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The unique token id, used by the deny list of revoked tokens.
    pub jti: String,
    /// The OAuth client that the token was issued to.
    pub client_id: String,
    /// The granted scopes, separated by spaces (RFC 8693 §4.2).
    pub scope: String,
    /// The name of the Portcullis tenant that the token belongs to.
    pub tenant: String,
    /// The certificate the token is bound to (RFC 8705 §3.1), for tokens
    /// issued to a client that authenticated with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` claim of a certificate-bound access token (RFC 8705 §3.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The base64url SHA-256 of the client certificate's DER, without
    /// padding.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Checks whether `audience` is among the values, compared exactly and
    /// case-sensitively (RFC 7519 §4.1.3).
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(value) => value == audience,
            Self::Many(values) => values.iter().any(|value| value == audience),
        }
    }
}

/// The issuer, audience and clock leeway that a validator requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectations {
    /// The exact `iss` value: Portcullis's own issuer.
    pub issuer: String,
    /// The audience that must be among the token's `aud` values, such as a
    /// gateway route's audience.
    pub audience: String,
    /// The clock leeway on `exp`, `nbf` and `iat`. Only whole seconds are
    /// used, up to [`MAX_LEEWAY_SECONDS`].
    pub leeway: Duration,
}

impl Expectations {
    /// Creates expectations with the [`DEFAULT_LEEWAY`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// Returns the leeway in whole seconds, at most [`MAX_LEEWAY_SECONDS`].
    fn leeway_seconds(&self) -> u64 {
        self.leeway.as_secs().min(MAX_LEEWAY_SECONDS)
    }
}

/// A token whose signature, header and claims passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedToken {
    /// The kid of the key that signed it.
    pub kid: String,
    /// The algorithm it was signed with.
    pub algorithm: SigningAlgorithm,
    /// Its claims.
    pub claims: AccessTokenClaims,
}

/// The reason a token was rejected. The messages are safe to send to the
/// client because none contains any part of the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("the access token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// The token is not three base64url segments holding JSON objects.
    #[error("the access token is malformed: {0}")]
    Malformed(&'static str),
    /// The header has a member that names or carries a key.
    #[error("the access token header contains `{0}`, which is not accepted")]
    ForbiddenHeader(&'static str),
    /// The header has a `crit` member.
    #[error("the access token header lists critical extensions, and none is supported")]
    CriticalHeader,
    /// The `typ` header is missing or not `at+jwt`.
    #[error("the access token header `typ` must be at+jwt")]
    InvalidType,
    /// The header has no `kid`.
    #[error("the access token header has no `kid`")]
    MissingKeyId,
    /// No published key has the token's `kid`.
    #[error("the access token was signed with an unknown key")]
    UnknownKey,
    /// The token's `alg` differs from the algorithm of the key it names.
    #[error("the access token algorithm does not match its key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("the access token signature is invalid")]
    InvalidSignature,
    /// A required claim is absent.
    #[error("the access token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an invalid value.
    #[error("the access token claim `{0}` is malformed")]
    MalformedClaim(&'static str),
    /// `exp` is in the past, beyond the leeway.
    #[error("the access token has expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    #[error("the access token was issued in the future")]
    IssuedInFuture,
    /// `iss` is not Portcullis's issuer.
    #[error("the access token was issued by another issuer")]
    InvalidIssuer,
    /// The expected audience is not among the `aud` values.
    #[error("the access token is not meant for this audience")]
    InvalidAudience,
}

impl TokenError {
    /// Returns a stable snake_case code for logs, metrics and audit records.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Malformed(_) => "malformed",
            Self::ForbiddenHeader(_) => "forbidden_header",
            Self::CriticalHeader => "critical_header",
            Self::InvalidType => "invalid_type",
            Self::MissingKeyId => "missing_kid",
            Self::UnknownKey => "unknown_kid",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::InvalidSignature => "invalid_signature",
            Self::MissingClaim(_) => "missing_claim",
            Self::MalformedClaim(_) => "malformed_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
        }
    }

    /// Returns whether a jsonwebtoken error may come from the claims, which
    /// is every error except a failed signature or algorithm check.
    const fn may_concern_claims(&self) -> bool {
        !matches!(self, Self::InvalidSignature | Self::AlgorithmMismatch)
    }
}

/// Validates an access token against the key set, at the current time.
pub fn validate(
    token: &str,
    keys: &KeySet,
    expected: &Expectations,
) -> Result<ValidatedToken, TokenError> {
    validate_at(token, keys, expected, OffsetDateTime::now_utc())
}

/// Validates at `now`. jsonwebtoken's second-layer time check reads the
/// system clock, so `now` must be the current time up to a second or two.
fn validate_at(
    token: &str,
    keys: &KeySet,
    expected: &Expectations,
    now: OffsetDateTime,
) -> Result<ValidatedToken, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed(
            "expected three dot-separated segments",
        ));
    };
    let header = decode_object(header, "the header is not a base64url JSON object")?;
    let claims = decode_object(payload, "the payload is not a base64url JSON object")?;

    let key = check_header(&header, keys)?;
    if let Err(error) = verify_with_library(token, key, expected) {
        // Apart from a failed signature or algorithm check, a jsonwebtoken
        // error almost always comes from the claims, and it reports a
        // mistyped required claim as missing or as a JSON error. Our own
        // checks then name the precise fault. If they pass, its error stands.
        if error.may_concern_claims() {
            check_claims(&claims, expected, now)?;
        }
        return Err(error);
    }
    let claims = check_claims(&claims, expected, now)?;

    Ok(ValidatedToken {
        kid: key.kid().to_owned(),
        algorithm: key.algorithm(),
        claims,
    })
}

/// Checks the JOSE header and returns the key that its `kid` names.
fn check_header<'a>(
    header: &Map<String, Value>,
    keys: &'a KeySet,
) -> Result<&'a PublishedKey, TokenError> {
    if let Some(name) = FORBIDDEN_HEADERS
        .iter()
        .find(|name| header.contains_key(**name))
    {
        return Err(TokenError::ForbiddenHeader(name));
    }
    if header.contains_key("crit") {
        return Err(TokenError::CriticalHeader);
    }

    let typ = header.get("typ").and_then(Value::as_str);
    let typ_accepted = typ.is_some_and(|typ| {
        ACCEPTED_TYPES
            .iter()
            .any(|accepted| typ.eq_ignore_ascii_case(accepted))
    });
    if !typ_accepted {
        return Err(TokenError::InvalidType);
    }

    let kid = match header.get("kid") {
        None => return Err(TokenError::MissingKeyId),
        Some(Value::String(kid)) => kid,
        Some(_) => return Err(TokenError::Malformed("the header `kid` is not a string")),
    };
    let key = keys.key(kid).ok_or(TokenError::UnknownKey)?;

    // The key fixes the algorithm. The header must name exactly that one,
    // so `none`, `None`, `HS256` and `PS256` all fail here.
    let alg = header.get("alg").and_then(Value::as_str);
    if alg != Some(key.algorithm().as_str()) {
        return Err(TokenError::AlgorithmMismatch);
    }
    Ok(key)
}

/// Verifies the signature with jsonwebtoken, allowing only the key's own
/// algorithm, and lets it check the standard claims as a second layer.
fn verify_with_library(
    token: &str,
    key: &PublishedKey,
    expected: &Expectations,
) -> Result<(), TokenError> {
    let algorithm = match key.algorithm() {
        SigningAlgorithm::Es256 => Algorithm::ES256,
        SigningAlgorithm::Rs256 => Algorithm::RS256,
        SigningAlgorithm::EdDsa => Algorithm::EdDSA,
    };
    let mut validation = Validation::new(algorithm);
    validation.leeway = expected.leeway_seconds();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_issuer(&[expected.issuer.as_str()]);
    validation.set_audience(&[expected.audience.as_str()]);
    validation.required_spec_claims = ["exp", "iss", "aud", "sub"]
        .into_iter()
        .map(str::to_owned)
        .collect::<HashSet<_>>();

    match jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation) {
        Ok(_) => Ok(()),
        Err(error) => Err(library_error(error.kind())),
    }
}

fn library_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::InvalidSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::AlgorithmMismatch
        }
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::InvalidIssuer,
        ErrorKind::InvalidAudience => TokenError::InvalidAudience,
        ErrorKind::MissingRequiredClaim(name) => TokenError::MissingClaim(claim_name(name)),
        ErrorKind::InvalidClaimFormat(name) => TokenError::MalformedClaim(claim_name(name)),
        _ => TokenError::Malformed("the token could not be decoded"),
    }
}

/// Maps a claim name from a library error to a static name, so the error
/// carries no text that came from the token.
fn claim_name(name: &str) -> &'static str {
    ["exp", "nbf", "iat", "iss", "aud", "sub"]
        .into_iter()
        .find(|known| *known == name)
        .unwrap_or("unknown")
}

/// Checks every claim with its JSON type, then the times, issuer and
/// audience, and returns the typed claims.
fn check_claims(
    claims: &Map<String, Value>,
    expected: &Expectations,
    now: OffsetDateTime,
) -> Result<AccessTokenClaims, TokenError> {
    let exp = required_time(claims, "exp")?;
    let iat = required_time(claims, "iat")?;
    let nbf = match claims.get("nbf") {
        None => None,
        Some(value) => Some(numeric_date(value, "nbf")?),
    };
    let iss = required_string(claims, "iss")?;
    let aud = audience(claims)?;
    let sub = required_identifier(claims, "sub")?;
    let jti = required_identifier(claims, "jti")?;
    let client_id = required_identifier(claims, "client_id")?;
    let tenant = required_identifier(claims, "tenant")?;
    let scope = required_string(claims, "scope")?;
    let cnf = confirmation(claims)?;

    let now = now.unix_timestamp();
    let leeway = i64::try_from(expected.leeway_seconds()).unwrap_or(i64::MAX);
    // The token is valid while now < exp (RFC 7519 §4.1.4), widened by the
    // leeway. Saturating arithmetic keeps extreme values from wrapping.
    if exp.saturating_add(leeway) <= now {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > now) {
        return Err(TokenError::NotYetValid);
    }
    if iat.saturating_sub(leeway) > now {
        return Err(TokenError::IssuedInFuture);
    }
    if iss != expected.issuer {
        return Err(TokenError::InvalidIssuer);
    }
    if !aud.contains(&expected.audience) {
        return Err(TokenError::InvalidAudience);
    }

    Ok(AccessTokenClaims {
        iss: iss.to_owned(),
        sub: sub.to_owned(),
        aud,
        exp,
        iat,
        nbf,
        jti: jti.to_owned(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        tenant: tenant.to_owned(),
        cnf,
    })
}

/// Reads the `cnf` claim. A `cnf` without a string `x5t#S256` is rejected
/// rather than ignored, because ignoring it would turn a bound token into a
/// bearer token.
fn confirmation(claims: &Map<String, Value>) -> Result<Option<Confirmation>, TokenError> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(None);
    };
    let thumbprint = cnf
        .as_object()
        .and_then(|cnf| cnf.get("x5t#S256"))
        .and_then(Value::as_str)
        .filter(|thumbprint| !thumbprint.is_empty())
        .ok_or(TokenError::MalformedClaim("cnf"))?;
    Ok(Some(Confirmation {
        x5t_s256: thumbprint.to_owned(),
    }))
}

fn required_time(claims: &Map<String, Value>, name: &'static str) -> Result<i64, TokenError> {
    let value = claims.get(name).ok_or(TokenError::MissingClaim(name))?;
    numeric_date(value, name)
}

/// Reads a NumericDate (RFC 7519 §2): a JSON number. Portcullis accepts
/// only integers that fit in an `i64`. A string, `null`, a boolean, an
/// array, a fraction or a number too large is malformed.
fn numeric_date(value: &Value, name: &'static str) -> Result<i64, TokenError> {
    value.as_i64().ok_or(TokenError::MalformedClaim(name))
}

fn required_string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, TokenError> {
    match claims.get(name) {
        None => Err(TokenError::MissingClaim(name)),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(TokenError::MalformedClaim(name)),
    }
}

/// Reads a string claim that names something, so it must not be empty.
fn required_identifier<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, TokenError> {
    let value = required_string(claims, name)?;
    if value.is_empty() {
        return Err(TokenError::MalformedClaim(name));
    }
    Ok(value)
}

/// Reads `aud`: a string, or a non-empty array of strings.
fn audience(claims: &Map<String, Value>) -> Result<Audience, TokenError> {
    match claims.get("aud") {
        None => Err(TokenError::MissingClaim("aud")),
        Some(Value::String(value)) => Ok(Audience::One(value.clone())),
        Some(Value::Array(values)) if values.is_empty() => Err(TokenError::InvalidAudience),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| value.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Audience::Many)
            .ok_or(TokenError::MalformedClaim("aud")),
        Some(_) => Err(TokenError::MalformedClaim("aud")),
    }
}

/// Decodes one base64url segment (no padding) holding a JSON object whose
/// member names are unique. A duplicate name is rejected because two
/// parsers could pick different values (RFC 7515 §5.2).
fn decode_object(segment: &str, problem: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed(problem))?;
    let object: UniqueObject =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(problem))?;
    Ok(object.0)
}

/// A JSON object that fails to deserialize if a member name repeats.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<Self::Value, A::Error> {
        let mut object = Map::new();
        while let Some((name, value)) = access.next_entry::<String, Value>()? {
            if object.contains_key(&name) {
                return Err(serde::de::Error::custom("duplicate member name"));
            }
            object.insert(name, value);
        }
        Ok(UniqueObject(object))
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::EncodingKey;
    use portcullis_core::crypto::{PublicKeyParts, SigningKeyPair, generate_private_key};
    use portcullis_core::signing::SigningKeyState;
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use time::Duration as TimeDuration;

    use super::*;
    use crate::oauth::test_keys::{ALGORITHMS, TestKey, active_key, key_set, sealing_key};

    const ISSUER: &str = "https://portcullis.example.test";
    const AUDIENCE: &str = "https://api.example.com";

    fn expectations() -> Expectations {
        Expectations::new(ISSUER, AUDIENCE)
    }

    fn segment(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Joins a header and claims given as raw JSON text and signs them with
    /// `sign`, so the test controls every byte of the input.
    fn token(header: &str, claims: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let message = format!("{}.{}", segment(header), segment(claims));
        let signature = sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn signed_by(pair: &SigningKeyPair) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
        |message| pair.sign(message).unwrap()
    }

    fn header(algorithm: &str, kid: &str) -> String {
        format!(r#"{{"alg":"{algorithm}","typ":"at+jwt","kid":"{kid}"}}"#)
    }

    /// A claim name and its raw JSON value, or `None` to remove the claim.
    type ClaimChange<'a> = (&'a str, Option<&'a str>);

    /// Builds claims as raw JSON text: the valid base claims at `now`, with
    /// each `(name, Some(raw JSON))` replacing or adding a member and each
    /// `(name, None)` removing one.
    fn claims(now: OffsetDateTime, changes: &[ClaimChange<'_>]) -> String {
        let now = now.unix_timestamp();
        let iat = now.to_string();
        let exp = (now + 300).to_string();
        let mut members: Vec<(String, String)> = [
            ("iss", format!("\"{ISSUER}\"")),
            ("sub", "\"client-1\"".to_owned()),
            ("aud", format!("\"{AUDIENCE}\"")),
            ("client_id", "\"client-1\"".to_owned()),
            ("scope", "\"orders:read\"".to_owned()),
            ("iat", iat),
            ("exp", exp),
            ("jti", "\"case-1\"".to_owned()),
            ("tenant", "\"acme\"".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        for (name, change) in changes {
            members.retain(|(existing, _)| existing != name);
            if let Some(raw) = change {
                members.push(((*name).to_owned(), (*raw).to_owned()));
            }
        }
        let body: Vec<String> = members
            .iter()
            .map(|(name, value)| format!("\"{name}\":{value}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    struct Fixture {
        key: TestKey,
        keys: KeySet,
        now: OffsetDateTime,
    }

    fn fixture(algorithm: SigningAlgorithm) -> Fixture {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let key = active_key(algorithm, &sealing, now);
        let keys = key_set(std::slice::from_ref(&key.record), &sealing, now);
        Fixture { key, keys, now }
    }

    impl Fixture {
        fn kid(&self) -> &str {
            &self.key.record.kid
        }

        /// Signs raw claims with the fixture's key under a correct header.
        fn sign_claims(&self, claims: &str) -> String {
            let algorithm = self.key.record.algorithm.as_str();
            token(
                &header(algorithm, self.kid()),
                claims,
                signed_by(&self.key.pair),
            )
        }

        fn check(&self, token: &str) -> Result<ValidatedToken, TokenError> {
            validate_at(token, &self.keys, &expectations(), self.now)
        }
    }

    fn hmac_token(algorithm: Algorithm, header: &str, claims: &str, secret: &[u8]) -> String {
        let message = format!("{}.{}", segment(header), segment(claims));
        let key = EncodingKey::from_secret(secret).unwrap();
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, algorithm).unwrap();
        format!("{message}.{signature}")
    }

    fn pem(der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    fn rsa_jwk_text(pair: &SigningKeyPair) -> String {
        let PublicKeyParts::Rsa { modulus, exponent } = pair.public_key() else {
            panic!("not an RSA key");
        };
        format!(
            r#"{{"kty":"RSA","n":"{}","e":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(modulus),
            URL_SAFE_NO_PAD.encode(exponent)
        )
    }

    // Round trips and rotation.

    #[test]
    fn signed_token_round_trips() {
        for algorithm in ALGORITHMS {
            let fixture = fixture(algorithm);
            let now = fixture.now.unix_timestamp();
            let claims = AccessTokenClaims {
                iss: ISSUER.to_owned(),
                sub: "user-7".to_owned(),
                aud: Audience::Many(vec![AUDIENCE.to_owned(), "https://b.example".to_owned()]),
                exp: now + 900,
                iat: now,
                nbf: Some(now),
                jti: "jti-1".to_owned(),
                client_id: "client-1".to_owned(),
                scope: "orders:read orders:write".to_owned(),
                tenant: "acme".to_owned(),
                cnf: None,
            };
            let token = fixture.keys.sign(&claims).unwrap();
            let validated = validate(&token, &fixture.keys, &expectations()).unwrap();
            assert_eq!(validated.claims, claims, "{algorithm}");
            assert_eq!(validated.kid, fixture.kid(), "{algorithm}");
            assert_eq!(validated.algorithm, algorithm);
        }
    }

    #[test]
    fn retired_published_key_still_validates() {
        let sealing = sealing_key();
        let now = OffsetDateTime::now_utc();
        let old = active_key(
            SigningAlgorithm::Rs256,
            &sealing,
            now - TimeDuration::days(30),
        );
        let before = key_set(std::slice::from_ref(&old.record), &sealing, now);
        let token = before
            .sign(&AccessTokenClaims {
                iss: ISSUER.to_owned(),
                sub: "client-1".to_owned(),
                aud: Audience::One(AUDIENCE.to_owned()),
                exp: now.unix_timestamp() + 900,
                iat: now.unix_timestamp(),
                nbf: None,
                jti: "jti-2".to_owned(),
                client_id: "client-1".to_owned(),
                scope: "orders:read".to_owned(),
                tenant: "acme".to_owned(),
                cnf: None,
            })
            .unwrap();

        // A successor published for an hour takes over now, and the old key
        // retires but stays published.
        let mut successor = active_key(SigningAlgorithm::Es256, &sealing, now).record;
        successor.state = SigningKeyState::Pending;
        let records = [old.record.clone(), successor.clone()];
        let after = key_set(&records, &sealing, now);
        assert_eq!(
            after.active().map(|(kid, _)| kid),
            Some(successor.kid.as_str())
        );
        let validated = validate(&token, &after, &expectations()).unwrap();
        assert_eq!(validated.kid, old.record.kid);

        // Once the old key is deleted, its tokens fail.
        let deleted = key_set(&[successor], &sealing, now);
        assert_eq!(
            validate(&token, &deleted, &expectations()),
            Err(TokenError::UnknownKey)
        );
    }

    // alg none, in every spelling.

    #[test]
    fn alg_none_without_kid_rejected() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let claims = claims(fixture.now, &[("jti", Some("\"case-none-1\""))]);
        for alg in ["none", "None", "NONE", ""] {
            let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt"}}"#);
            let token = format!("{}.{}.", segment(&header), segment(&claims));
            assert_eq!(
                fixture.check(&token),
                Err(TokenError::MissingKeyId),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn alg_none_with_real_kid_rejected() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let claims = claims(fixture.now, &[]);
        let real = fixture.sign_claims(&claims);
        let real_signature = real.rsplit('.').next().unwrap();
        for alg in ["none", "None", "NONE", ""] {
            let header = header(alg, fixture.kid());
            let unsigned = format!("{}.{}.", segment(&header), segment(&claims));
            assert_eq!(
                fixture.check(&unsigned),
                Err(TokenError::AlgorithmMismatch),
                "{alg:?}"
            );
            // The none token with the signature copied from a real token.
            let copied = format!("{unsigned}{real_signature}");
            assert_eq!(
                fixture.check(&copied),
                Err(TokenError::AlgorithmMismatch),
                "{alg:?} with a copied signature"
            );
        }
    }

    // A public key used as an HMAC secret.

    #[test]
    fn rsa_public_key_as_hmac_secret_rejected() {
        let fixture = fixture(SigningAlgorithm::Rs256);
        let der = fixture.key.pair.public_key_der().unwrap();
        let jwks = fixture.keys.jwks();
        let jwk_text = jwks["keys"][0].to_string();
        let secrets = [pem(&der).into_bytes(), der, jwk_text.into_bytes()];
        assert_hmac_rejected(&fixture, &secrets);
    }

    #[test]
    fn ec_public_key_as_hmac_secret_rejected() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let der = fixture.key.pair.public_key_der().unwrap();
        let jwks = fixture.keys.jwks();
        let jwk_text = jwks["keys"][0].to_string();
        let secrets = [pem(&der).into_bytes(), der, jwk_text.into_bytes()];
        assert_hmac_rejected(&fixture, &secrets);
    }

    fn assert_hmac_rejected(fixture: &Fixture, secrets: &[Vec<u8>]) {
        let claims = claims(fixture.now, &[]);
        let algorithms = [
            (Algorithm::HS256, "HS256"),
            (Algorithm::HS384, "HS384"),
            (Algorithm::HS512, "HS512"),
        ];
        for (algorithm, name) in algorithms {
            for (index, secret) in secrets.iter().enumerate() {
                let header = header(name, fixture.kid());
                let token = hmac_token(algorithm, &header, &claims, secret);
                assert_eq!(
                    fixture.check(&token),
                    Err(TokenError::AlgorithmMismatch),
                    "{name} over public key form {index}"
                );
            }
        }
    }

    #[test]
    fn signature_of_other_algorithm_rejected() {
        // A real ES256 signature presented under an RSA kid.
        let fixture = fixture(SigningAlgorithm::Rs256);
        let ec_key = generate_private_key(SigningAlgorithm::Es256).unwrap();
        let ec_pair = SigningKeyPair::from_pkcs8(SigningAlgorithm::Es256, &ec_key).unwrap();
        let token = token(
            &header("ES256", fixture.kid()),
            &claims(fixture.now, &[]),
            signed_by(&ec_pair),
        );
        assert_eq!(fixture.check(&token), Err(TokenError::AlgorithmMismatch));

        let token = token_with_alg(&fixture, "PS256");
        assert_eq!(fixture.check(&token), Err(TokenError::AlgorithmMismatch));
    }

    fn token_with_alg(fixture: &Fixture, alg: &str) -> String {
        token(
            &header(alg, fixture.kid()),
            &claims(fixture.now, &[]),
            signed_by(&fixture.key.pair),
        )
    }

    // Keys named or carried by the token.

    #[test]
    fn key_from_token_header_rejected() {
        let fixture = fixture(SigningAlgorithm::Rs256);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let stub = format!("https://{}", listener.local_addr().unwrap());

        let test_pkcs8 = generate_private_key(SigningAlgorithm::Rs256).unwrap();
        let test_pair = SigningKeyPair::from_pkcs8(SigningAlgorithm::Rs256, &test_pkcs8).unwrap();
        let rcgen_key =
            rcgen::KeyPair::try_from(&PrivatePkcs8KeyDer::from(test_pkcs8.to_vec())).unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["keys.example.test".to_owned()])
            .unwrap()
            .self_signed(&rcgen_key)
            .unwrap();
        let certificate = STANDARD.encode(certificate.der());

        let kid = fixture.kid();
        let jwk = rsa_jwk_text(&test_pair);
        let cases = [
            (
                "T1",
                format!(r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","jwk":{jwk}}}"#),
                "jwk",
            ),
            (
                "T2",
                format!(
                    r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","jku":"{stub}/jwks.json"}}"#
                ),
                "jku",
            ),
            (
                "T3",
                format!(
                    r#"{{"alg":"RS256","typ":"at+jwt","kid":"{kid}","x5u":"{stub}/cert.pem"}}"#
                ),
                "x5u",
            ),
            (
                "T4",
                format!(r#"{{"alg":"RS256","typ":"at+jwt","x5c":["{certificate}"]}}"#),
                "x5c",
            ),
        ];
        let claims = claims(fixture.now, &[("scope", Some("\"admin:read\""))]);
        for (case, header, member) in cases {
            let token = token(&header, &claims, signed_by(&test_pair));
            assert_eq!(
                fixture.check(&token),
                Err(TokenError::ForbiddenHeader(member)),
                "{case}"
            );
        }

        // Nothing connected to the stub that T2 and T3 point at.
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
            "validation connected to the stub: {accepted:?}"
        );
    }

    #[test]
    fn unknown_kid_rejected() {
        let fixture = fixture(SigningAlgorithm::Rs256);
        let test_pkcs8 = generate_private_key(SigningAlgorithm::Rs256).unwrap();
        let test_pair = SigningKeyPair::from_pkcs8(SigningAlgorithm::Rs256, &test_pkcs8).unwrap();
        let token = token(
            &header("RS256", "never-published"),
            &claims(fixture.now, &[]),
            signed_by(&test_pair),
        );
        assert_eq!(fixture.check(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn known_kid_wrong_key_rejected() {
        // Signed by the test's own key under the real kid.
        let fixture = fixture(SigningAlgorithm::Rs256);
        let test_pkcs8 = generate_private_key(SigningAlgorithm::Rs256).unwrap();
        let test_pair = SigningKeyPair::from_pkcs8(SigningAlgorithm::Rs256, &test_pkcs8).unwrap();
        let token = token(
            &header("RS256", fixture.kid()),
            &claims(fixture.now, &[]),
            signed_by(&test_pair),
        );
        assert_eq!(fixture.check(&token), Err(TokenError::InvalidSignature));
    }

    // Time claims.

    #[test]
    fn time_claims_checked_strictly() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let now = fixture.now.unix_timestamp();
        let in_five_minutes = (now + 300).to_string();
        let quoted_in_five_minutes = format!("\"{in_five_minutes}\"");
        let array_in_five_minutes = format!("[{in_five_minutes}]");
        let two_minutes_ago = (now - 120).to_string();
        let in_ten_minutes = (now + 600).to_string();

        let cases: Vec<(&str, Vec<ClaimChange<'_>>, TokenError)> = vec![
            ("a", vec![("exp", None)], TokenError::MissingClaim("exp")),
            (
                "b",
                vec![("nbf", Some("\"99999999999\""))],
                TokenError::MalformedClaim("nbf"),
            ),
            (
                "c",
                vec![("exp", Some("\"never\""))],
                TokenError::MalformedClaim("exp"),
            ),
            (
                "d",
                vec![("exp", Some(&quoted_in_five_minutes))],
                TokenError::MalformedClaim("exp"),
            ),
            (
                "e null",
                vec![("exp", Some("null"))],
                TokenError::MalformedClaim("exp"),
            ),
            (
                "e true",
                vec![("exp", Some("true"))],
                TokenError::MalformedClaim("exp"),
            ),
            (
                "e array",
                vec![("exp", Some(&array_in_five_minutes))],
                TokenError::MalformedClaim("exp"),
            ),
            (
                "f",
                vec![("exp", Some(&two_minutes_ago))],
                TokenError::Expired,
            ),
            (
                "g",
                vec![("nbf", Some(&in_ten_minutes))],
                TokenError::NotYetValid,
            ),
            (
                "h",
                vec![("exp", Some("123456789012345678901234567890"))],
                TokenError::MalformedClaim("exp"),
            ),
        ];
        for (case, changes, expected) in cases {
            let token = fixture.sign_claims(&claims(fixture.now, &changes));
            assert_eq!(fixture.check(&token), Err(expected), "case {case}");
        }

        let control = fixture.sign_claims(&claims(fixture.now, &[]));
        assert!(fixture.check(&control).is_ok(), "control token rejected");
    }

    #[test]
    fn iat_checked_strictly() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let now = fixture.now.unix_timestamp();
        let in_ten_minutes = (now + 600).to_string();
        let cases: Vec<(Option<&str>, TokenError)> = vec![
            (None, TokenError::MissingClaim("iat")),
            (Some("\"now\""), TokenError::MalformedClaim("iat")),
            (Some("1.5"), TokenError::MalformedClaim("iat")),
            (Some(&in_ten_minutes), TokenError::IssuedInFuture),
        ];
        for (iat, expected) in cases {
            let token = fixture.sign_claims(&claims(fixture.now, &[("iat", iat)]));
            assert_eq!(fixture.check(&token), Err(expected), "iat {iat:?}");
        }
    }

    #[test]
    fn leeway_bounds_exp_and_nbf() {
        let fixture = fixture(SigningAlgorithm::EdDsa);
        let now = fixture.now.unix_timestamp();
        // A one-second margin on each side keeps the library's own clock
        // read, a moment later, on the same side of the boundary.
        let just_expired = (now - 62).to_string();
        let within_leeway = (now - 50).to_string();
        let nbf_within = (now + 50).to_string();
        let nbf_beyond = (now + 62).to_string();

        let expired = fixture.sign_claims(&claims(fixture.now, &[("exp", Some(&just_expired))]));
        assert_eq!(fixture.check(&expired), Err(TokenError::Expired));
        let late = fixture.sign_claims(&claims(fixture.now, &[("exp", Some(&within_leeway))]));
        assert!(fixture.check(&late).is_ok());
        let early = fixture.sign_claims(&claims(fixture.now, &[("nbf", Some(&nbf_within))]));
        assert!(fixture.check(&early).is_ok());
        let too_early = fixture.sign_claims(&claims(fixture.now, &[("nbf", Some(&nbf_beyond))]));
        assert_eq!(fixture.check(&too_early), Err(TokenError::NotYetValid));
    }

    #[test]
    fn huge_leeway_is_capped() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let expected = Expectations {
            leeway: Duration::from_secs(u64::MAX),
            ..expectations()
        };
        let now = fixture.now.unix_timestamp();
        let long_expired = (now - 3600).to_string();
        let token = fixture.sign_claims(&claims(fixture.now, &[("exp", Some(&long_expired))]));
        assert_eq!(
            validate(&token, &fixture.keys, &expected),
            Err(TokenError::Expired)
        );
    }

    // Audience and issuer.

    #[test]
    fn audience_and_issuer_enforced() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let cases: Vec<(&str, Vec<ClaimChange<'_>>, Result<(), TokenError>)> = vec![
            (
                "a",
                vec![("aud", Some(r#""https://billing.example.com""#))],
                Err(TokenError::InvalidAudience),
            ),
            (
                "b",
                vec![("aud", None)],
                Err(TokenError::MissingClaim("aud")),
            ),
            (
                "c",
                vec![(
                    "aud",
                    Some(r#"["https://billing.example.com","https://api.example.com"]"#),
                )],
                Ok(()),
            ),
            (
                "d",
                vec![("aud", Some(r#""https://API.example.com""#))],
                Err(TokenError::InvalidAudience),
            ),
            (
                "e",
                vec![("aud", Some(r#""https://api.example.com/""#))],
                Err(TokenError::InvalidAudience),
            ),
            (
                "f",
                vec![("aud", Some(r#"["https://api.example.com "]"#))],
                Err(TokenError::InvalidAudience),
            ),
            (
                "g",
                vec![("aud", Some("[]"))],
                Err(TokenError::InvalidAudience),
            ),
            (
                "h",
                vec![("iss", Some(r#""https://other-issuer.example.test""#))],
                Err(TokenError::InvalidIssuer),
            ),
        ];
        for (case, changes, expected) in cases {
            let token = fixture.sign_claims(&claims(fixture.now, &changes));
            let outcome = fixture.check(&token).map(|_| ());
            assert_eq!(outcome, expected, "case {case}");
        }
    }

    #[test]
    fn token_for_other_resource_rejected() {
        // A real Portcullis token issued for another resource (RFC 8707).
        let fixture = fixture(SigningAlgorithm::Es256);
        let now = fixture.now.unix_timestamp();
        let token = fixture
            .keys
            .sign(&AccessTokenClaims {
                iss: ISSUER.to_owned(),
                sub: "client-1".to_owned(),
                aud: Audience::One("https://billing.example.com".to_owned()),
                exp: now + 300,
                iat: now,
                nbf: None,
                jti: "jti-3".to_owned(),
                client_id: "client-1".to_owned(),
                scope: "orders:read".to_owned(),
                tenant: "acme".to_owned(),
                cnf: None,
            })
            .unwrap();
        assert_eq!(fixture.check(&token), Err(TokenError::InvalidAudience));
    }

    #[test]
    fn audience_of_wrong_type_malformed() {
        let fixture = fixture(SigningAlgorithm::Es256);
        for aud in ["42", "null", r#"["https://api.example.com",7]"#, "{}"] {
            let token = fixture.sign_claims(&claims(fixture.now, &[("aud", Some(aud))]));
            let outcome = fixture.check(&token);
            assert!(
                matches!(outcome, Err(TokenError::MalformedClaim("aud"))),
                "aud {aud}: {outcome:?}"
            );
        }
    }

    // Other required claims.

    #[test]
    fn identity_claims_required_as_strings() {
        let fixture = fixture(SigningAlgorithm::Es256);
        for name in ["sub", "client_id", "jti", "scope", "tenant"] {
            let missing = fixture.sign_claims(&claims(fixture.now, &[(name, None)]));
            let outcome = fixture.check(&missing);
            assert!(
                matches!(outcome, Err(TokenError::MissingClaim(_))),
                "missing {name}: {outcome:?}"
            );
            for raw in ["42", "null", "[\"x\"]", "true"] {
                let mistyped = fixture.sign_claims(&claims(fixture.now, &[(name, Some(raw))]));
                let outcome = fixture.check(&mistyped);
                assert!(
                    matches!(outcome, Err(TokenError::MalformedClaim(_))),
                    "{name} = {raw}: {outcome:?}"
                );
            }
        }
        for name in ["sub", "client_id", "jti", "tenant"] {
            let empty = fixture.sign_claims(&claims(fixture.now, &[(name, Some("\"\""))]));
            assert_eq!(
                fixture.check(&empty),
                Err(TokenError::MalformedClaim(match name {
                    "sub" => "sub",
                    "client_id" => "client_id",
                    "jti" => "jti",
                    _ => "tenant",
                })),
                "empty {name}"
            );
        }
    }

    // Header rules and framing.

    #[test]
    fn typ_must_be_access_token() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let kid = fixture.kid();
        let claims = claims(fixture.now, &[]);
        for typ in [None, Some("JWT"), Some("jwt"), Some("at+jwt+x"), Some("")] {
            let header = match typ {
                Some(typ) => format!(r#"{{"alg":"ES256","typ":"{typ}","kid":"{kid}"}}"#),
                None => format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#),
            };
            let token = token(&header, &claims, signed_by(&fixture.key.pair));
            assert_eq!(
                fixture.check(&token),
                Err(TokenError::InvalidType),
                "typ {typ:?}"
            );
        }
        for typ in ["AT+JWT", "application/at+jwt", "Application/AT+JWT"] {
            let header = format!(r#"{{"alg":"ES256","typ":"{typ}","kid":"{kid}"}}"#);
            let token = token(&header, &claims, signed_by(&fixture.key.pair));
            assert!(fixture.check(&token).is_ok(), "typ {typ} rejected");
        }
    }

    #[test]
    fn crit_header_rejected() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let kid = fixture.kid();
        let claims = claims(fixture.now, &[]);
        let headers = [
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","crit":["exp"],"exp":1}}"#),
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","crit":["b64"],"b64":true}}"#),
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","crit":[]}}"#),
        ];
        for header in headers {
            let token = token(&header, &claims, signed_by(&fixture.key.pair));
            let outcome = fixture.check(&token);
            assert!(outcome.is_err(), "{header}");
            assert!(
                matches!(
                    outcome,
                    Err(TokenError::CriticalHeader | TokenError::ForbiddenHeader("b64"))
                ),
                "{header}: {outcome:?}"
            );
        }
    }

    #[test]
    fn duplicate_members_rejected() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let kid = fixture.kid();
        let header = format!(r#"{{"alg":"HS256","alg":"ES256","typ":"at+jwt","kid":"{kid}"}}"#);
        let token = token(
            &header,
            &claims(fixture.now, &[]),
            signed_by(&fixture.key.pair),
        );
        assert!(matches!(
            fixture.check(&token),
            Err(TokenError::Malformed(_))
        ));

        let base = claims(fixture.now, &[]);
        let doubled = format!(
            r#"{},"aud":"https://billing.example.com"}}"#,
            base.trim_end_matches('}')
        );
        let token = fixture.sign_claims(&doubled);
        assert!(matches!(
            fixture.check(&token),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn framing_errors_rejected() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let valid = fixture.sign_claims(&claims(fixture.now, &[]));
        let (message, signature) = valid.rsplit_once('.').unwrap();
        let padded_header = format!("{}=", valid.split('.').next().unwrap());
        let not_json = format!("{}.{}.{signature}", segment("not json"), segment("[]"));
        let array_claims = format!(
            "{}.{}.{signature}",
            segment(&header("ES256", fixture.kid())),
            segment("[1,2]")
        );
        let cases = [
            String::new(),
            "a.b".to_owned(),
            format!("{valid}.extra"),
            format!("{padded_header}.x.y"),
            format!("{message}.{signature}=="),
            not_json,
            array_claims,
            valid.replace('.', "..").replacen("..", ".", 1),
        ];
        for case in cases {
            let outcome = fixture.check(&case);
            assert!(
                matches!(
                    outcome,
                    Err(TokenError::Malformed(_) | TokenError::InvalidSignature)
                ),
                "{case:?}: {outcome:?}"
            );
        }
    }

    #[test]
    fn tampered_signature_rejected() {
        for algorithm in ALGORITHMS {
            let fixture = fixture(algorithm);
            let valid = fixture.sign_claims(&claims(fixture.now, &[]));
            let (message, signature) = valid.rsplit_once('.').unwrap();
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
            bytes[0] ^= 0x01;
            let tampered = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert_eq!(
                fixture.check(&tampered),
                Err(TokenError::InvalidSignature),
                "{algorithm}"
            );

            // Claims changed after signing.
            let other_claims = claims(fixture.now, &[("scope", Some("\"admin:write\""))]);
            let header = message.split('.').next().unwrap();
            let swapped = format!("{header}.{}.{signature}", segment(&other_claims));
            assert_eq!(
                fixture.check(&swapped),
                Err(TokenError::InvalidSignature),
                "{algorithm}"
            );
        }
    }

    #[test]
    fn oversized_token_rejected() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let padding = "x".repeat(MAX_TOKEN_LEN);
        let claims = claims(fixture.now, &[("pad", Some(&format!("\"{padding}\"")))]);
        let token = fixture.sign_claims(&claims);
        assert_eq!(fixture.check(&token), Err(TokenError::TooLong));
    }

    #[test]
    fn errors_never_echo_token() {
        let fixture = fixture(SigningAlgorithm::Es256);
        let secret_marker = "SECRETMARKER";
        let claims = claims(
            fixture.now,
            &[
                ("exp", Some("\"SECRETMARKER\"")),
                ("aud", Some("\"SECRETMARKER\"")),
            ],
        );
        let token = fixture.sign_claims(&claims);
        let error = fixture.check(&token).unwrap_err();
        assert!(!error.to_string().contains(secret_marker));
        assert!(!error.to_string().contains(&token[..20]));
        assert_eq!(error.code(), "malformed_claim");
    }
}
