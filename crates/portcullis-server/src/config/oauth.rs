//! The `[oauth]` table and route audiences, checked.

use std::time::Duration;

use portcullis_core::duration::parse_duration;
use portcullis_core::signing::SigningAlgorithm;

use super::ConfigError;
use super::raw::RawOAuth;

/// Default access-token lifetime. Access tokens cannot be recalled from a
/// resource server that validates them offline, so they are short-lived;
/// 15 minutes keeps a leaked token's window small while clients refresh
/// rarely enough not to load the token endpoint.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Shortest access-token lifetime a client may be given.
pub const MIN_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(60);

/// Longest access-token lifetime. Signing keys stay published until every
/// token they signed has expired, so this also bounds how long a retired key
/// lingers in the JWKS.
pub const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(60 * 60);

/// Default refresh-token lifetime. Refresh tokens rotate on every use, so
/// this is how long a client may stay idle before its user signs in again.
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Default time a signing key signs before its successor takes over.
pub const DEFAULT_KEY_ROTATION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Largest clock leeway accepted: past ten minutes a "leeway" hides a broken
/// clock rather than absorbing drift.
pub const MAX_LEEWAY: Duration = Duration::from_secs(600);

/// The authorization server's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The issuer identifier; `None` means `https://localhost:PORT`, worked
    /// out once the listener is bound.
    pub issuer: Option<String>,
    /// Default access-token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh-token lifetime.
    pub refresh_token_ttl: Duration,
    /// Algorithm of new signing keys.
    pub signing_algorithm: SigningAlgorithm,
    /// How long a signing key signs.
    pub key_rotation: Duration,
    /// Clock leeway for time claims.
    pub leeway: Duration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            signing_algorithm: SigningAlgorithm::Es256,
            key_rotation: DEFAULT_KEY_ROTATION,
            leeway: DEFAULT_LEEWAY,
        }
    }
}

/// Checks the `[oauth]` table.
pub(super) fn check_oauth(raw: RawOAuth) -> Result<OAuthConfig, ConfigError> {
    let defaults = OAuthConfig::default();
    let issuer = raw
        .issuer
        .map(|text| {
            check_issuer(&text).map_err(|message| ConfigError::invalid("oauth.issuer", message))
        })
        .transpose()?;
    let access_token_ttl = duration(
        "oauth.access_token_ttl",
        raw.access_token_ttl,
        defaults.access_token_ttl,
    )?;
    if !(MIN_ACCESS_TOKEN_TTL..=MAX_ACCESS_TOKEN_TTL).contains(&access_token_ttl) {
        return Err(ConfigError::invalid(
            "oauth.access_token_ttl",
            "must be between 1m and 1h; access tokens are short-lived, refresh tokens last longer",
        ));
    }
    let signing_algorithm = match raw.signing_algorithm {
        None => defaults.signing_algorithm,
        Some(name) => name.parse().map_err(|_| {
            ConfigError::invalid(
                "oauth.signing_algorithm",
                format!("unknown algorithm {name:?}; expected \"ES256\", \"RS256\" or \"EdDSA\""),
            )
        })?,
    };
    let leeway = duration("oauth.leeway", raw.leeway, defaults.leeway)?;
    if leeway > MAX_LEEWAY {
        return Err(ConfigError::invalid("oauth.leeway", "must be at most 10m"));
    }
    Ok(OAuthConfig {
        issuer,
        access_token_ttl,
        refresh_token_ttl: duration(
            "oauth.refresh_token_ttl",
            raw.refresh_token_ttl,
            defaults.refresh_token_ttl,
        )?,
        signing_algorithm,
        key_rotation: duration(
            "oauth.key_rotation",
            raw.key_rotation,
            defaults.key_rotation,
        )?,
        leeway,
    })
}

fn duration(
    setting: &str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let parsed =
        parse_duration(&text).map_err(|error| ConfigError::invalid(setting, error.to_string()))?;
    Duration::try_from(parsed)
        .map_err(|_| ConfigError::invalid(setting, format!("invalid duration {text:?}")))
}

/// Checks an issuer identifier: an https URL with no query and no fragment
/// (RFC 8414 §2), or http on a loopback host for local use. It is kept as
/// written, because tokens compare it as an exact string.
fn check_issuer(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|error| format!("{text:?} is not a URL ({error})"))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(format!(
            "{text:?} must use https (http only on a loopback host)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?} must have no query and no fragment (RFC 8414 §2)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?} must not contain a user name or password"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Checks a route audience: visible ASCII without spaces, compared later as
/// an exact, case-sensitive string (RFC 7519 §4.1.3).
pub(super) fn check_audience(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 2000 {
        return Err(
            "must be between 1 and 2000 characters, such as \"https://api.example.com\"".to_owned(),
        );
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains {}; only visible ASCII characters are allowed",
            portcullis_core::name::CharDisplay(c)
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_rules() {
        assert_eq!(
            check_issuer("https://auth.example.com/").as_deref(),
            Ok("https://auth.example.com")
        );
        assert!(check_issuer("http://127.0.0.1:8443").is_ok());
        for bad in [
            "http://auth.example.com",
            "https://a.example?x=1",
            "https://a.example#f",
            "ftp://a",
            "nope",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lifetimes_bounded() {
        let raw = RawOAuth {
            access_token_ttl: Some("2h".into()),
            ..RawOAuth::default()
        };
        assert!(check_oauth(raw).is_err());
        let raw = RawOAuth {
            leeway: Some("1h".into()),
            ..RawOAuth::default()
        };
        assert!(check_oauth(raw).is_err());
        let raw = RawOAuth {
            signing_algorithm: Some("HS256".into()),
            ..RawOAuth::default()
        };
        assert!(
            check_oauth(raw)
                .unwrap_err()
                .to_string()
                .contains("oauth.signing_algorithm")
        );
    }

    #[test]
    fn audience_look_alike_rejected() {
        assert!(check_audience("https://\u{0430}pi.example.com").is_err());
        assert!(check_audience("https://api.example.com ").is_err());
        assert!(check_audience("https://api.example.com").is_ok());
    }
}
