//! Reading the one credential a request carries.
//!
//! RFC 6750 §2 allows a client to send its credential by one method per
//! request. Portcullis counts credentials in every place it could read one:
//! each `Authorization` line and scheme, each `X-API-Key` line, values
//! joined by commas, and `access_token` or `api_key` in the query. It
//! rejects a request that carries more than one, so that no request is
//! judged by one credential while another travels on to the upstream.
//!
//! A `Bearer` value that starts with an API key prefix (`pc_live_`,
//! `pc_test_`) is an API key, and any other `Bearer` value is an access
//! token. The prefix alone decides, so a mistyped key is still judged as a
//! key and gets the key's error. Basic and `X-API-Key` carry API keys only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use portcullis_core::key::Environment;
use secrecy::{ExposeSecret, SecretString};

use crate::config::AuthMethod;
use crate::problem::Problem;

/// Header that carries an API key on its own.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// Query parameters that would carry a credential. Portcullis reads none of
/// them, because URLs end up in logs and browser histories, but it counts
/// them so that a second credential cannot hide there.
const QUERY_CREDENTIALS: [&str; 3] = ["access_token", "api_key", "apikey"];

/// Maximum length of a credential, in bytes. Longer values are malformed.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// Where a credential was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer …`.
    Bearer,
    /// `Authorization: Basic …` with the key as the user name.
    Basic,
    /// `X-API-Key: …`.
    ApiKeyHeader,
}

impl CredentialSource {
    /// The source as logged.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Basic => "basic",
            Self::ApiKeyHeader => "x-api-key",
        }
    }
}

/// The credential a request carries. `Debug` omits the value.
pub struct Presented {
    /// The credential itself.
    pub secret: SecretString,
    /// Where it was found.
    pub source: CredentialSource,
}

impl Presented {
    /// Returns the kind of credential: an API key, or an access token for a
    /// `Bearer` value without an API key prefix.
    pub fn method(&self) -> AuthMethod {
        let secret = self.secret.expose_secret();
        let key_prefixed = [Environment::Live, Environment::Test]
            .iter()
            .any(|environment| secret.starts_with(environment.prefix()));
        match self.source {
            CredentialSource::Bearer if !key_prefixed => AuthMethod::Jwt,
            _ => AuthMethod::ApiKey,
        }
    }
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Finds the request's single credential: `Ok(None)` when there is none,
/// and a 400 problem when there are several or one is malformed.
pub fn presented_credential(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Presented>, Problem> {
    let mut found: Vec<Presented> = Vec::new();

    for value in headers.get_all(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| malformed("the Authorization header is not visible ASCII"))?;
        found.push(parse_authorization(value)?);
    }
    for value in headers.get_all(&API_KEY_HEADER) {
        let value = value
            .to_str()
            .map_err(|_| malformed("the X-API-Key header is not visible ASCII"))?;
        if value.contains(',') {
            return Err(several());
        }
        found.push(Presented {
            secret: bounded(value.trim())?,
            source: CredentialSource::ApiKeyHeader,
        });
    }
    let in_query = query.map_or(0, count_query_credentials);

    match (found.len() + in_query, found.pop()) {
        (0, _) => Ok(None),
        (1, Some(presented)) => Ok(Some(presented)),
        (1, None) => Err(Problem::invalid_credential_request(
            "credential_in_query",
            "credentials in the query string are not accepted; send the key in the Authorization or X-API-Key header",
        )),
        _ => Err(several()),
    }
}

fn parse_authorization(value: &str) -> Result<Presented, Problem> {
    // A comma would join two credentials on one line (RFC 9110 §5.3); no
    // bearer token or Basic credential contains one.
    if value.contains(',') {
        return Err(several());
    }
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(malformed(
            "the Authorization header has no credential after its scheme",
        ));
    }

    // Authentication scheme names are case-insensitive (RFC 9110 §11.1).
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Presented {
            secret: bounded(rest)?,
            source: CredentialSource::Bearer,
        });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(rest)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| malformed("the Basic credential is not valid base64 of UTF-8 text"))?;
        let secret = SecretString::from(decoded);
        // The key is the user name; the password part is ignored and, like
        // the whole header, never forwarded.
        let user = secret.expose_secret().split(':').next().unwrap_or_default();
        return Ok(Presented {
            secret: bounded(user)?,
            source: CredentialSource::Basic,
        });
    }
    Err(malformed(
        "unsupported authorization scheme; use Bearer, or Basic with the key as user name",
    ))
}

/// Returns whether `name` is a query parameter that can carry a
/// credential, which other query parsers skip.
pub(crate) fn is_query_credential(name: &str) -> bool {
    QUERY_CREDENTIALS
        .iter()
        .any(|known| name.eq_ignore_ascii_case(known))
}

fn count_query_credentials(query: &str) -> usize {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| is_query_credential(name))
        .count()
}

fn bounded(value: &str) -> Result<SecretString, Problem> {
    if value.is_empty() {
        return Err(malformed("the credential is empty"));
    }
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(malformed("the credential is too long"));
    }
    Ok(SecretString::from(value.to_owned()))
}

fn malformed(detail: &'static str) -> Problem {
    Problem::invalid_credential_request("malformed_credential", detail)
}

fn several() -> Problem {
    Problem::invalid_credential_request(
        "multiple_credentials",
        "the request carries more than one credential; send exactly one",
    )
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn code(result: Result<Option<Presented>, Problem>) -> &'static str {
        match result {
            Ok(Some(_)) => "one",
            Ok(None) => "none",
            Err(problem) => problem.code(),
        }
    }

    #[test]
    fn one_credential_found_in_each_place() {
        let basic = format!("Basic {}", STANDARD.encode("pc_test_k:"));
        for (name, value, source) in [
            (
                "authorization",
                "Bearer pc_test_k".to_owned(),
                CredentialSource::Bearer,
            ),
            (
                "authorization",
                "bearer pc_test_k".to_owned(),
                CredentialSource::Bearer,
            ),
            ("authorization", basic, CredentialSource::Basic),
            (
                "x-api-key",
                "pc_test_k".to_owned(),
                CredentialSource::ApiKeyHeader,
            ),
        ] {
            let found = presented_credential(&headers(&[(name, &value)]), None)
                .unwrap()
                .unwrap();
            assert_eq!(found.source, source);
            assert_eq!(found.secret.expose_secret(), "pc_test_k");
        }
    }

    #[test]
    fn two_credentials_rejected_wherever_they_are() {
        let basic = format!("Basic {}", STANDARD.encode("K1:"));
        type Case<'a> = (Vec<(&'static str, &'a str)>, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (
                vec![("authorization", "Bearer K1"), ("x-api-key", "K2")],
                None,
            ),
            (vec![("x-api-key", "K1"), ("x-api-key", "K2")], None),
            (
                vec![
                    ("authorization", "Bearer K1"),
                    ("authorization", "Bearer T"),
                ],
                None,
            ),
            (vec![("authorization", "Bearer K1, Bearer K2")], None),
            (vec![("x-api-key", "K1, K2")], None),
            (vec![("authorization", &basic), ("x-api-key", "K1")], None),
            (
                vec![("authorization", "Bearer not-a-real-token")],
                Some("access_token=T"),
            ),
            (vec![("x-api-key", "K1")], Some("a=1&API_KEY=K2")),
        ];
        for (lines, query) in cases {
            assert_eq!(
                code(presented_credential(&headers(&lines), query)),
                "multiple_credentials",
                "{lines:?} {query:?}"
            );
        }
    }

    #[test]
    fn bearer_without_key_prefix_is_access_token() {
        let basic = format!("Basic {}", STANDARD.encode("eyJhbGciOiJFUzI1NiJ9.e30.sig:"));
        for (name, value, method) in [
            (
                "authorization",
                "Bearer pc_test_k".to_owned(),
                AuthMethod::ApiKey,
            ),
            (
                "authorization",
                "Bearer pc_live_k".to_owned(),
                AuthMethod::ApiKey,
            ),
            (
                "authorization",
                "Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig".to_owned(),
                AuthMethod::Jwt,
            ),
            (
                "authorization",
                "Bearer sk_live_k".to_owned(),
                AuthMethod::Jwt,
            ),
            ("authorization", basic, AuthMethod::ApiKey),
            (
                "x-api-key",
                "eyJhbGciOiJFUzI1NiJ9.e30.sig".to_owned(),
                AuthMethod::ApiKey,
            ),
        ] {
            let found = presented_credential(&headers(&[(name, &value)]), None)
                .unwrap()
                .unwrap();
            assert_eq!(found.method(), method, "{name}: {value}");
        }
    }

    #[test]
    fn query_credential_alone_rejected() {
        assert_eq!(
            code(presented_credential(
                &HeaderMap::new(),
                Some("access_token=T")
            )),
            "credential_in_query"
        );
        assert_eq!(
            code(presented_credential(&HeaderMap::new(), Some("page=2"))),
            "none"
        );
    }

    #[test]
    fn malformed_headers_rejected() {
        for value in ["Bearer", "Bearer ", "Digest abc", "Basic !!!", "Token x"] {
            assert_eq!(
                code(presented_credential(
                    &headers(&[("authorization", value)]),
                    None
                )),
                "malformed_credential",
                "{value}"
            );
        }
        let long = "k".repeat(MAX_CREDENTIAL_LEN + 1);
        assert_eq!(
            code(presented_credential(
                &headers(&[("x-api-key", &long)]),
                None
            )),
            "malformed_credential"
        );
    }
}
