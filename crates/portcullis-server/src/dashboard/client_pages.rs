//! The OAuth client pages' templates, the rows they show and the values of
//! their forms.

use std::collections::HashMap;

use askama::Template;
use portcullis_core::ids::{ClientId, UserId};
use portcullis_core::oauth::{ClientAuthMethod, ClientRecord, GrantType};
use time::OffsetDateTime;

use super::key_pages::{ScopeChoice, creator_label, format_time};
use super::pages::Layout;
use crate::pki::ca::client_uri;

/// Blank redirect URI fields that a form offers after the filled ones, so
/// that URIs can be added without JavaScript.
pub(super) const BLANK_URI_FIELDS: usize = 3;

/// One client as the list and the detail page show it.
pub(super) struct ClientRow {
    pub(super) id: String,
    pub(super) name: String,
    /// `confidential` or `public` (RFC 6749 §2.1).
    pub(super) client_type: &'static str,
    pub(super) auth_method: &'static str,
    /// The registered certificate subject of a `tls_client_auth` client,
    /// as RFC 8705 member name and value.
    pub(super) tls_subject: Option<(&'static str, String)>,
    pub(super) grant_types: Vec<&'static str>,
    pub(super) scopes: Vec<String>,
    pub(super) redirect_uris: Vec<String>,
    pub(super) created_by: String,
    pub(super) created: String,
    /// The UTC day of the client's latest recorded request, or `never`.
    pub(super) last_used: String,
    /// `active` or `revoked`.
    pub(super) status: &'static str,
    /// Whether the signed-in user may change the client.
    pub(super) manageable: bool,
    /// Whether the client is not revoked, so it can still be changed.
    pub(super) usable: bool,
    /// Whether the client authenticates with a secret that can be rotated.
    pub(super) has_secret: bool,
    /// Whether certificates of the internal CA authenticate the client.
    pub(super) takes_internal_certificates: bool,
}

impl ClientRow {
    /// Builds the row of `client`. `users` names the tenant's users by id,
    /// so a client registered in the dashboard shows its creator's e-mail
    /// address. `last_use_day` is the start of the latest day with a
    /// recorded request.
    pub(super) fn new(
        client: &ClientRecord,
        users: &HashMap<UserId, String>,
        last_use_day: Option<OffsetDateTime>,
        manageable: bool,
    ) -> Self {
        let usable = client.revoked_at.is_none();
        Self {
            id: client.id.to_string(),
            name: client.name.clone(),
            client_type: if client.confidential {
                "confidential"
            } else {
                "public"
            },
            auth_method: client.auth_method.as_str(),
            tls_subject: client
                .tls_client_auth_subject
                .as_ref()
                .map(|subject| (subject.kind().as_str(), subject.value())),
            grant_types: client.grant_types.iter().map(|g| g.as_str()).collect(),
            scopes: client
                .scopes
                .iter()
                .map(|scope| scope.as_str().to_owned())
                .collect(),
            redirect_uris: client
                .redirect_uris
                .iter()
                .map(|uri| uri.as_str().to_owned())
                .collect(),
            created_by: creator_label(client.created_by.as_deref(), users),
            created: format_time(client.created_at),
            last_used: last_use_day
                .map_or_else(|| "never".to_owned(), |day| day.date().to_string()),
            status: if usable { "active" } else { "revoked" },
            manageable,
            usable,
            has_secret: matches!(
                client.auth_method,
                ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost
            ),
            takes_internal_certificates: takes_internal_certificates(client),
        }
    }
}

/// Returns whether certificates of the internal CA authenticate `client`:
/// a `tls_client_auth` client registered with the SAN URI that the CA
/// writes into every certificate it issues to that client. A client mapped
/// to another subject name would be rejected with such a certificate.
pub(super) fn takes_internal_certificates(client: &ClientRecord) -> bool {
    client.auth_method == ClientAuthMethod::TlsClientAuth
        && client
            .tls_client_auth_subject
            .as_ref()
            .is_some_and(|subject| subject.matches_uri(&client_uri(client.id)))
}

/// Messages about invalid form fields, each under the name of the field it
/// concerns, in the order found.
#[derive(Default)]
pub(super) struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// Adds the message `message` about field `field`.
    pub(super) fn add(&mut self, field: &str, message: String) {
        self.0.push((field.to_owned(), message));
    }

    /// Returns the first message about `field`, if any.
    pub(super) fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, message)| message.as_str())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns every message, for the summary at the top of a form.
    pub(super) fn messages(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(_, message)| message.as_str())
    }
}

/// One redirect URI field of a form, with what the user typed and the
/// message if it was rejected.
pub(super) struct UriField {
    pub(super) value: String,
    pub(super) error: Option<String>,
}

/// Builds the redirect URI fields of a form: `values` followed by
/// [`BLANK_URI_FIELDS`] empty ones.
pub(super) fn uri_fields(values: &[String]) -> Vec<UriField> {
    values
        .iter()
        .cloned()
        .chain(std::iter::repeat_n(String::new(), BLANK_URI_FIELDS))
        .map(|value| UriField { value, error: None })
        .collect()
}

/// A choice of a checkbox, radio button or select option, with whether it
/// is selected.
pub(super) struct Choice {
    pub(super) value: &'static str,
    pub(super) selected: bool,
}

/// Builds the choices of every variant's name in `all`, with those in
/// `chosen` selected.
pub(super) fn choices(all: &[&'static str], chosen: &[&str]) -> Vec<Choice> {
    all.iter()
        .map(|value| Choice {
            value,
            selected: chosen.contains(value),
        })
        .collect()
}

/// Lists the grant types that the create form offers.
pub(super) fn grant_type_names() -> Vec<&'static str> {
    GrantType::ALL.iter().map(|grant| grant.as_str()).collect()
}

/// The values and errors of the form that registers a client.
pub(super) struct ClientForm {
    pub(super) name: String,
    /// Whether the client is public; otherwise confidential.
    pub(super) public: bool,
    pub(super) grant_types: Vec<Choice>,
    pub(super) scopes: Vec<ScopeChoice>,
    /// The authentication methods of a confidential client.
    pub(super) auth_methods: Vec<Choice>,
    /// The RFC 8705 subject kinds of a `tls_client_auth` client.
    pub(super) tls_subject_kinds: Vec<Choice>,
    pub(super) tls_subject_value: String,
    pub(super) jwks: String,
    pub(super) redirect_uris: Vec<UriField>,
    pub(super) errors: FieldErrors,
}

/// The tenant's clients.
#[derive(Template)]
#[template(path = "dashboard/clients.html")]
pub(super) struct ClientsPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) clients: Vec<ClientRow>,
    /// Whether the user may register clients, so the page offers the form.
    pub(super) may_create: bool,
}

/// One client with its actions.
#[derive(Template)]
#[template(path = "dashboard/client.html")]
pub(super) struct ClientPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) client: ClientRow,
}

/// The form that registers a client.
#[derive(Template)]
#[template(path = "dashboard/client_new.html")]
pub(super) struct NewClientPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    /// The form's one-time submission token.
    pub(super) submission_token: String,
    pub(super) form: ClientForm,
    /// The redirect URI fields, taken out of the form so that the page and
    /// the redirect URI page share their template.
    pub(super) redirect_uris: Vec<UriField>,
}

/// The page that shows a new client secret, once.
#[derive(Template)]
#[template(path = "dashboard/client_secret.html")]
pub(super) struct ClientSecretPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) heading: &'a str,
    pub(super) client: ClientRow,
    /// The whole client secret.
    pub(super) secret: &'a str,
    /// The path of the copy button's script.
    pub(super) script: &'static str,
    /// Until when the previous secret works, after a rotation.
    pub(super) note: Option<String>,
}

/// The secret rotation form, with the grace period to choose.
#[derive(Template)]
#[template(path = "dashboard/client_rotate.html")]
pub(super) struct ClientRotatePage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    /// The form's one-time submission token.
    pub(super) submission_token: String,
    pub(super) client: ClientRow,
    pub(super) grace_hours: String,
    pub(super) max_grace_hours: i64,
    pub(super) error: Option<String>,
}

/// The confirmation page of a client revocation, naming the client.
#[derive(Template)]
#[template(path = "dashboard/client_revoke.html")]
pub(super) struct ClientRevokePage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) client: ClientRow,
    pub(super) reason: String,
    pub(super) error: Option<String>,
}

/// The form that replaces a client's redirect URIs.
#[derive(Template)]
#[template(path = "dashboard/client_redirect_uris.html")]
pub(super) struct RedirectUrisPage<'a> {
    pub(super) layout: Layout,
    pub(super) email: &'a str,
    pub(super) tenant: &'a str,
    pub(super) csrf_token: &'a str,
    pub(super) client: ClientRow,
    pub(super) redirect_uris: Vec<UriField>,
    /// Whether a URI was rejected, so the page reports that nothing changed.
    pub(super) rejected: bool,
    /// A message about the whole list, such as a grant that needs a URI.
    pub(super) error: Option<String>,
}

/// Parses a client id from a path. Returns `None` for anything else, and
/// the caller then responds with 404.
pub(super) fn parse_client_id(text: &str) -> Option<ClientId> {
    text.parse().ok()
}
