//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, RFC 8707 §2):
//! its parameters, read strictly, and their checks in the order that decides
//! whether an error may be redirected to the client.

use std::collections::HashSet;

use portcullis_core::ids::ClientId;
use portcullis_core::oauth::{ClientRecord, GrantType, pkce};
use portcullis_core::scope::{Scope, ScopeSet};
use portcullis_store::{Store, StoreError};
use url::Url;

/// The parameters of an authorization request that this server reads. The
/// sign-in and consent forms carry exactly these, as received.
pub(super) const AUTHORIZATION_PARAMETERS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
];

/// Form-encoded name and value pairs, in order.
pub(crate) type Pairs = Vec<(String, String)>;

/// A parameter that appeared more than once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the parameter {0:?} appears more than once")]
pub(crate) struct RepeatedParameter(pub String);

/// Decodes a form-encoded query or body and rejects any name that appears
/// twice (RFC 6749 §3.1), so that no request can be read two ways.
pub(crate) fn parse_pairs(input: &[u8]) -> Result<Pairs, RepeatedParameter> {
    let mut seen = HashSet::new();
    let mut pairs = Vec::new();
    for (name, value) in url::form_urlencoded::parse(input) {
        if !seen.insert(name.clone().into_owned()) {
            return Err(RepeatedParameter(name.into_owned()));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// Selects the authorization parameters among `pairs`, in order. Parameters
/// this server does not read are dropped, as RFC 6749 §3.1 requires.
pub(super) fn authorization_parameters(pairs: &[(String, String)]) -> Pairs {
    pairs
        .iter()
        .filter(|(name, _)| AUTHORIZATION_PARAMETERS.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub(super) struct AuthorizationRequest {
    /// The client, registered, not revoked and allowed the code grant.
    pub(super) client: ClientRecord,
    /// The URI the response goes to: the `redirect_uri` exactly as sent, or
    /// the client's only registered URI when the request left it out.
    pub(super) redirect_uri: String,
    /// The requested scopes, or the client's registered ones when the
    /// request named none.
    pub(super) scopes: ScopeSet,
    /// The client's `state`, returned unchanged.
    pub(super) state: Option<String>,
    /// The S256 PKCE challenge.
    pub(super) code_challenge: String,
    /// The `resource` (RFC 8707), if any.
    pub(super) resource: Option<String>,
    /// The authorization parameters as received, for the forms.
    pub(super) parameters: Pairs,
}

/// The reason an authorization request was rejected.
#[derive(Debug)]
pub(super) enum RequestError {
    /// The client or redirect URI is missing or invalid, so the user sees
    /// an error page and the browser is never sent anywhere
    /// (RFC 6749 §4.1.2.1). The message is for the user.
    Fatal(&'static str),
    /// The client and redirect URI are valid, so the error goes back to the
    /// client at its redirect URI.
    Redirect(RedirectError),
    /// The store failed.
    Store(StoreError),
}

/// An error response for the client (RFC 6749 §4.1.2.1), and where to send
/// it.
#[derive(Debug, Clone)]
pub(super) struct RedirectError {
    /// The redirect URI to send it to.
    pub(super) redirect_uri: String,
    /// The client's `state`, returned unchanged.
    pub(super) state: Option<String>,
    /// The error code, such as `invalid_request`.
    pub(super) error: &'static str,
    /// A description for the client's developer.
    pub(super) description: String,
}

impl From<StoreError> for RequestError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Checks the authorization parameters in `parameters`: first the client
/// and redirect URI, whose failure is shown to the user, then everything
/// else, whose failure is redirected to the client.
///
/// `audiences` are the APIs this server issues tokens for; a `resource`
/// outside them is `invalid_target` now rather than at the code exchange.
pub(super) async fn check_request(
    store: &Store,
    audiences: &[&str],
    parameters: Pairs,
) -> Result<AuthorizationRequest, RequestError> {
    let read = |name: &str| {
        parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            // RFC 6749 §3.1: a parameter sent without a value is omitted.
            .filter(|value| !value.is_empty())
    };

    let client = find_client(store, read("client_id")).await?;
    let redirect_uri = choose_redirect_uri(&client, read("redirect_uri"))?;
    let state = read("state").map(str::to_owned);
    let fail = |error: &'static str, description: String| {
        RequestError::Redirect(RedirectError {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description,
        })
    };

    match read("response_type") {
        Some("code") => {}
        None => {
            return Err(fail(
                "invalid_request",
                "response_type is missing".to_owned(),
            ));
        }
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported".to_owned(),
            ));
        }
    }
    let code_challenge = check_pkce(read("code_challenge"), read("code_challenge_method"))
        .map_err(|description| fail("invalid_request", description))?;
    let scopes = check_scopes(&client, read("scope"))
        .map_err(|description| fail("invalid_scope", description))?;
    let resource = read("resource")
        .map(check_resource)
        .transpose()
        .map_err(|description| fail("invalid_target", description.to_owned()))?;
    if resource
        .as_deref()
        .is_some_and(|resource| !audiences.contains(&resource))
    {
        return Err(fail(
            "invalid_target",
            "resource is not an API this server issues tokens for".to_owned(),
        ));
    }

    Ok(AuthorizationRequest {
        client,
        redirect_uri,
        scopes,
        state,
        code_challenge,
        resource,
        parameters,
    })
}

/// Finds the client named by `client_id`, if it may use the code grant.
async fn find_client(store: &Store, client_id: Option<&str>) -> Result<ClientRecord, RequestError> {
    const UNKNOWN: &str = "The application that sent you here is not registered, or its \
                           registration was withdrawn.";
    let Some(text) = client_id else {
        return Err(RequestError::Fatal(
            "The request does not say which application sent you here (client_id is missing).",
        ));
    };
    // Only the canonical spelling is accepted, so that no second spelling
    // (upper case, braces, a URN) names the same client.
    let Ok(id) = text.parse::<ClientId>() else {
        return Err(RequestError::Fatal(UNKNOWN));
    };
    if id.to_string() != text {
        return Err(RequestError::Fatal(UNKNOWN));
    }
    match store.find_client(id).await? {
        Some(client) if client.revoked_at.is_none() => {
            if client.allows_grant(GrantType::AuthorizationCode) {
                Ok(client)
            } else {
                Err(RequestError::Fatal(
                    "The application that sent you here may not ask users for access.",
                ))
            }
        }
        _ => Err(RequestError::Fatal(UNKNOWN)),
    }
}

/// Picks the redirect URI: the presented one when it matches a registered
/// one (RFC 9700 §2.1 exact matching), or the only registered one when the
/// request has none (RFC 6749 §3.1.2.3).
fn choose_redirect_uri(
    client: &ClientRecord,
    presented: Option<&str>,
) -> Result<String, RequestError> {
    match presented {
        Some(uri) if client.redirect_uri_for(uri).is_some() => Ok(uri.to_owned()),
        Some(_) => Err(RequestError::Fatal(
            "The address the application asked to return you to is not registered for it.",
        )),
        None => match client.redirect_uris.as_slice() {
            [only] => Ok(only.as_str().to_owned()),
            _ => Err(RequestError::Fatal(
                "The request does not say where to return you (redirect_uri is missing), and the \
                 application has more than one registered address.",
            )),
        },
    }
}

/// Checks the PKCE parameters and returns the challenge. A missing method
/// means `plain` (RFC 7636 §4.3), which this server does not accept.
fn check_pkce(challenge: Option<&str>, method: Option<&str>) -> Result<String, String> {
    let Some(challenge) = challenge else {
        return Err("code_challenge is required; use PKCE with method S256".to_owned());
    };
    match method {
        Some("S256") => {}
        None => {
            return Err(
                "code_challenge_method is missing, which means plain; only S256 is supported"
                    .to_owned(),
            );
        }
        Some(_) => return Err("code_challenge_method must be S256".to_owned()),
    }
    pkce::check_challenge(challenge).map_err(|error| error.to_string())?;
    Ok(challenge.to_owned())
}

/// Reads the space-separated `scope` (RFC 6749 §3.3) and checks that the
/// client may have every scope. No `scope` means the client's registered
/// scopes.
fn check_scopes(client: &ClientRecord, scope: Option<&str>) -> Result<ScopeSet, String> {
    let Some(text) = scope else {
        return Ok(client.scopes.clone());
    };
    let mut requested = Vec::new();
    for name in text.split(' ').filter(|name| !name.is_empty()) {
        let scope = Scope::parse(name).map_err(|error| error.to_string())?;
        let allowed =
            client.scopes.iter().any(|held| *held == scope) || client.scopes.grants(&scope);
        if !allowed {
            return Err(format!("the client may not request the scope {name}"));
        }
        requested.push(scope);
    }
    ScopeSet::try_from(requested).map_err(|error| error.to_string())
}

/// Checks a `resource`: an absolute URI without a fragment (RFC 8707 §2).
fn check_resource(resource: &str) -> Result<String, &'static str> {
    const INVALID: &str = "resource must be an absolute URI without a fragment";
    if !resource.chars().all(|c| c.is_ascii_graphic()) {
        return Err(INVALID);
    }
    match Url::parse(resource) {
        Ok(url) if url.fragment().is_none() => Ok(resource.to_owned()),
        _ => Err(INVALID),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameter_rejected() {
        let error = parse_pairs(b"client_id=a&state=x&client_id=b").unwrap_err();
        assert_eq!(error, RepeatedParameter("client_id".to_owned()));
        assert!(parse_pairs(b"client_id=a&state=x").is_ok());
    }

    #[test]
    fn encoded_names_count_as_repeats() {
        assert!(parse_pairs(b"state=a&st%61te=b").is_err());
    }

    #[test]
    fn unknown_parameters_dropped() {
        let pairs = parse_pairs(b"client_id=a&prompt=login&state=s").unwrap();
        let kept = authorization_parameters(&pairs);
        assert_eq!(
            kept,
            vec![
                ("client_id".to_owned(), "a".to_owned()),
                ("state".to_owned(), "s".to_owned())
            ]
        );
    }

    #[test]
    fn pkce_rules() {
        let challenge = "3cPVHIQLnsgqpwwGE33tCJEswn0QApLxx7Mds9Rn_jk";
        assert_eq!(
            check_pkce(Some(challenge), Some("S256")).unwrap(),
            challenge
        );
        assert!(check_pkce(None, Some("S256")).is_err());
        assert!(check_pkce(Some(challenge), None).is_err());
        assert!(check_pkce(Some(challenge), Some("plain")).is_err());
        assert!(check_pkce(Some(challenge), Some("s256")).is_err());
        assert!(check_pkce(Some("short"), Some("S256")).is_err());
    }

    #[test]
    fn resource_rules() {
        assert!(check_resource("https://api.example.com/orders").is_ok());
        assert!(check_resource("urn:example:orders").is_ok());
        assert!(check_resource("https://api.example.com/#x").is_err());
        assert!(check_resource("/orders").is_err());
        assert!(check_resource("https://api.example.com/ x").is_err());
    }
}
