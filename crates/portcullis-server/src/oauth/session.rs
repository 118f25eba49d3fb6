//! Sign-in sessions of the authorization endpoint and the dashboard, which
//! share one cookie.
//!
//! The browser keeps a 256-bit random session id in the `__Host-pc_session`
//! cookie. The store keeps only the id's keyed hash, so a copy of the
//! database cannot be turned into a signed-in browser. A session ends
//! [`SESSION_IDLE_TIMEOUT`] after its last use and [`SESSION_ABSOLUTE_TIMEOUT`]
//! after sign-in, whichever comes first. Every sign-in gets a new id, so an
//! id planted in the browser before sign-in (session fixation) never
//! becomes a signed-in session.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::COOKIE;
use portcullis_core::crypto::{CryptoError, Pepper, SecretHash, fill_random};
use portcullis_core::oauth::UserRecord;
use portcullis_store::{LoginSession, Store, StoreError};
use time::OffsetDateTime;

/// Name of the session cookie. The `__Host-` prefix makes browsers accept
/// it only with `Secure`, `Path=/` and no `Domain`, so a sibling subdomain
/// cannot set or overwrite it.
pub const SESSION_COOKIE: &str = "__Host-pc_session";

/// How long a session stays valid without use. Thirty minutes covers a
/// user who reads the consent page slowly, and a browser left open ends
/// its session soon after.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long a session stays valid after sign-in, however often it is used:
/// one working day, after which the user signs in again.
pub const SESSION_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);

/// Length of a session id in bytes: 256 bits from the CSPRNG.
const SESSION_ID_LEN: usize = 32;

/// Label hashed in front of a session id, so that the stored hash of a
/// session id can never equal the hash of another kind of secret.
const SESSION_HASH_LABEL: &[u8] = b"portcullis session id\0";

/// A session id as the cookie carries it: unpadded base64url text.
pub struct SessionId(String);

impl SessionId {
    /// Generates a new random session id.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(random_token(SESSION_ID_LEN)?))
    }

    /// Reads the session id from the request's cookies, if one is there and
    /// well-formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = cookie_value(headers, SESSION_COOKIE)?;
        is_token_of_len(value, SESSION_ID_LEN).then(|| Self(value.to_owned()))
    }

    /// Returns the id as text, only for the cookie and for deriving tokens.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Computes the keyed hash under which the store keeps the session.
    pub fn hash(&self, pepper: &Pepper) -> SecretHash {
        let mut input = SESSION_HASH_LABEL.to_vec();
        input.extend_from_slice(self.0.as_bytes());
        pepper.hash(&input)
    }

    /// Builds the `Set-Cookie` value that stores this id in the browser until
    /// the session's absolute expiry.
    pub fn set_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
            self.0,
            SESSION_ABSOLUTE_TIMEOUT.as_secs()
        )
    }
}

/// Builds the `Set-Cookie` value that deletes the session cookie from the
/// browser, as at sign-out.
pub fn removal_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// A live session and its user.
#[derive(Debug)]
pub struct ActiveSession {
    /// The id from the cookie.
    pub id: SessionId,
    /// The signed-in user, not disabled.
    pub user: UserRecord,
}

/// Finds the live session named by the request's cookie and moves its idle
/// expiry forward. Returns `None` when there is no cookie, the session is
/// unknown or expired, or its user is gone or disabled.
pub async fn load_session(
    store: &Store,
    pepper: &Pepper,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<Option<ActiveSession>, StoreError> {
    let Some(id) = SessionId::from_headers(headers) else {
        return Ok(None);
    };
    let hash = id.hash(pepper);
    let Some(session) = store.find_session(&hash).await? else {
        return Ok(None);
    };
    if !session.is_live(now) {
        store.delete_session(&hash).await?;
        return Ok(None);
    }
    let Some(user) = store.find_user(session.user_id).await? else {
        return Ok(None);
    };
    if user.disabled_at.is_some() {
        return Ok(None);
    }
    store
        .touch_session(&hash, now + SESSION_IDLE_TIMEOUT)
        .await?;
    Ok(Some(ActiveSession { id, user }))
}

/// Starts a new session for `user` and ends the one the browser had, if
/// any, so that each sign-in gets a fresh id.
pub async fn start_session(
    store: &Store,
    pepper: &Pepper,
    headers: &HeaderMap,
    user: &UserRecord,
    now: OffsetDateTime,
) -> Result<SessionId, StartSessionError> {
    if let Some(previous) = SessionId::from_headers(headers) {
        store.delete_session(&previous.hash(pepper)).await?;
    }
    let id = SessionId::generate()?;
    let session = LoginSession {
        hash: id.hash(pepper),
        user_id: user.id,
        created_at: now,
        idle_expires_at: now + SESSION_IDLE_TIMEOUT,
        absolute_expires_at: now + SESSION_ABSOLUTE_TIMEOUT,
    };
    store.create_session(&session).await?;
    Ok(id)
}

/// The reason a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartSessionError {
    /// The CSPRNG failed.
    #[error("generating a session id failed")]
    Random(#[from] CryptoError),
    /// The store failed.
    #[error("storing the session failed")]
    Store(#[from] StoreError),
}

/// Returns `len` random bytes as unpadded base64url text.
pub(crate) fn random_token(len: usize) -> Result<String, CryptoError> {
    let mut bytes = vec![0u8; len];
    fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Returns `true` when `value` is unpadded base64url text of `len` bytes.
pub(crate) fn is_token_of_len(value: &str, len: usize) -> bool {
    URL_SAFE_NO_PAD
        .decode(value)
        .is_ok_and(|bytes| bytes.len() == len)
}

/// Finds the value of the cookie `name` in the request's `Cookie` headers.
/// Returns `None` when the cookie is missing or appears more than once,
/// because two cookies of one name mean someone else set one of them.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for cookie in cookies {
            map.append(COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        map
    }

    #[test]
    fn session_id_round_trips_through_cookie() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.expose().len(), 43);
        let cookie = format!("other=1; {SESSION_COOKIE}={}", id.expose());
        let read = SessionId::from_headers(&headers(&[&cookie])).unwrap();
        assert_eq!(read.expose(), id.expose());
    }

    #[test]
    fn malformed_or_repeated_cookie_ignored() {
        assert!(SessionId::from_headers(&headers(&["__Host-pc_session=short"])).is_none());
        let id = SessionId::generate().unwrap();
        let cookie = format!("{SESSION_COOKIE}={}", id.expose());
        assert!(SessionId::from_headers(&headers(&[&cookie, &cookie])).is_none());
        assert!(SessionId::from_headers(&headers(&[])).is_none());
    }

    #[test]
    fn set_cookie_has_required_attributes() {
        let cookie = SessionId::generate().unwrap().set_cookie();
        assert!(cookie.starts_with("__Host-pc_session="), "{cookie}");
        for attribute in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
    }

    #[test]
    fn hash_depends_on_label_and_id() {
        let pepper = portcullis_core::crypto::MasterKey::generate()
            .unwrap()
            .derive_pepper();
        let id = SessionId::generate().unwrap();
        assert!(!id.hash(&pepper).ct_eq(&pepper.hash(id.expose().as_bytes())));
        let other = SessionId::generate().unwrap();
        assert!(!id.hash(&pepper).ct_eq(&other.hash(&pepper)));
    }
}
