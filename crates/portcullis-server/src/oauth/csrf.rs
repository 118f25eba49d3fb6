//! CSRF tokens of the sign-in and consent forms.
//!
//! Two layers protect every POST of the authorization endpoint. First,
//! tower-http's [`CsrfLayer`] rejects requests whose `Sec-Fetch-Site` or
//! `Origin` header names another site. Second, every form carries a token
//! that another site cannot read:
//!
//! - the sign-in form, shown before a session exists, uses a double-submit
//!   token: a random value both in the `__Host-pc_csrf` cookie and in the
//!   form, which must match;
//! - the consent form uses a token derived from the session id with the
//!   pepper, so it is valid only with that session's cookie.
//!
//! Both comparisons run in constant time.

use axum::body::Body;
use axum::response::Response;
use http::HeaderMap;
use portcullis_core::crypto::{CryptoError, Pepper, constant_time_eq};
use tower_http::csrf::{CsrfLayer, ProtectionError};

use super::session::{SessionId, cookie_value, is_token_of_len, random_token};

/// Name of the double-submit cookie of the sign-in form.
pub const CSRF_COOKIE: &str = "__Host-pc_csrf";

/// Length of a double-submit token in bytes: 256 bits from the CSPRNG.
const CSRF_TOKEN_LEN: usize = 32;

/// Label hashed in front of the session id to derive the consent form's
/// token, so the token is never the session id's stored hash.
const SESSION_TOKEN_LABEL: &[u8] = b"portcullis consent csrf token\0";

/// The sign-in form's token: the one the browser's cookie already has, or a
/// new one with the `Set-Cookie` value that stores it.
pub struct SignInToken {
    /// The token for the form's hidden field.
    pub token: String,
    /// The `Set-Cookie` value, when the browser had no valid token yet.
    pub set_cookie: Option<String>,
}

/// Returns the sign-in token for a form, reusing the cookie's token so that
/// two open tabs keep working.
pub fn sign_in_token(headers: &HeaderMap) -> Result<SignInToken, CryptoError> {
    if let Some(token) = cookie_value(headers, CSRF_COOKIE)
        && is_token_of_len(token, CSRF_TOKEN_LEN)
    {
        return Ok(SignInToken {
            token: token.to_owned(),
            set_cookie: None,
        });
    }
    let token = random_token(CSRF_TOKEN_LEN)?;
    // A browser-session cookie: it lives only as long as the sign-in form
    // is likely to be open.
    let set_cookie = format!("{CSRF_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Lax");
    Ok(SignInToken {
        token,
        set_cookie: Some(set_cookie),
    })
}

/// Checks that the sign-in form's `submitted` token equals the cookie's.
pub fn check_sign_in_token(headers: &HeaderMap, submitted: &str) -> bool {
    let Some(cookie) = cookie_value(headers, CSRF_COOKIE) else {
        return false;
    };
    is_token_of_len(cookie, CSRF_TOKEN_LEN)
        && constant_time_eq(cookie.as_bytes(), submitted.as_bytes())
}

/// Derives the consent form's token from the session id.
pub fn session_token(pepper: &Pepper, session: &SessionId) -> String {
    use base64::Engine as _;

    let mut input = SESSION_TOKEN_LABEL.to_vec();
    input.extend_from_slice(session.expose().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pepper.hash(&input).as_bytes())
}

/// Checks that `submitted` is the consent form's token for `session`.
pub fn check_session_token(pepper: &Pepper, session: &SessionId, submitted: &str) -> bool {
    constant_time_eq(
        session_token(pepper, session).as_bytes(),
        submitted.as_bytes(),
    )
}

/// Returns the origin of `issuer`, such as `https://auth.example.com`,
/// when it is an `http` or `https` URL.
pub fn issuer_origin(issuer: &str) -> Option<String> {
    url::Url::parse(issuer)
        .ok()
        .map(|issuer| issuer.origin())
        .filter(url::Origin::is_tuple)
        .map(|origin| origin.ascii_serialization())
}

/// Builds the layer that rejects cross-site POSTs with `rejection`, trusting
/// `issuer_origin` too, for deployments behind a proxy that rewrites `Host`.
pub fn cross_origin_layer(
    issuer_origin: Option<&str>,
    rejection: fn(ProtectionError) -> Response<Body>,
) -> CsrfLayer<fn(ProtectionError) -> Response<Body>> {
    let mut layer = CsrfLayer::new();
    if let Some(origin) = issuer_origin {
        layer = match layer.clone().add_trusted_origin(origin) {
            Ok(with_origin) => with_origin,
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    origin = ?origin,
                    "the issuer's origin cannot be trusted for sign-in forms; only the Host \
                     header is compared"
                );
                layer
            }
        };
    }
    layer.with_rejection_response(rejection)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::COOKIE;

    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn sign_in_token_matches_its_cookie() {
        let issued = sign_in_token(&HeaderMap::new()).unwrap();
        let set_cookie = issued.set_cookie.unwrap();
        let cookie = set_cookie.split(';').next().unwrap();
        let headers = with_cookie(cookie);
        assert!(check_sign_in_token(&headers, &issued.token));
        assert!(!check_sign_in_token(&headers, "other"));
        assert!(!check_sign_in_token(&HeaderMap::new(), &issued.token));

        let reused = sign_in_token(&headers).unwrap();
        assert_eq!(reused.token, issued.token);
        assert!(reused.set_cookie.is_none());
    }

    #[test]
    fn session_token_bound_to_session() {
        let pepper = portcullis_core::crypto::MasterKey::generate()
            .unwrap()
            .derive_pepper();
        let session = SessionId::generate().unwrap();
        let other = SessionId::generate().unwrap();
        let token = session_token(&pepper, &session);
        assert!(check_session_token(&pepper, &session, &token));
        assert!(!check_session_token(&pepper, &other, &token));
        assert!(!check_session_token(&pepper, &session, ""));
        assert_ne!(token, session.expose());
    }
}
