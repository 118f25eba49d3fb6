//! The certificate subject a `tls_client_auth` client registers (RFC 8705
//! §2.1.2): exactly one of a subject distinguished name or a subject
//! alternative name of type DNS, URI, IP address or e-mail.
//!
//! Distinguished names are read in the RFC 4514 string form and compared
//! as parsed names, attribute by attribute (RFC 4517 §4.2.15
//! distinguishedNameMatch), never as strings.
//!
//! NOTE: text values are compared after trimming, folding runs of white
//! space to one space and lower-casing. That covers caseIgnoreMatch for
//! the usual attributes, but is not the full RFC 4518 string preparation
//! (no Unicode normalization or mapping of look-alike characters).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Maximum length of a registered subject value, in bytes. Subject names of
/// real certificates are a few hundred bytes. The limit keeps a stored
/// registration and the comparison of every presented certificate bounded.
pub const MAX_TLS_SUBJECT_LEN: usize = 1024;

/// Maximum length of a DNS name, in characters (RFC 1035 §2.3.4).
const MAX_DNS_NAME_LEN: usize = 253;

/// Maximum length of one DNS label, in characters (RFC 1035 §2.3.4).
const MAX_DNS_LABEL_LEN: usize = 63;

/// Maximum length of an e-mail local part, in characters (RFC 5321
/// §4.5.3.1.1).
const MAX_LOCAL_PART_LEN: usize = 64;

/// The RFC 7591 client metadata member that names the registered subject,
/// one per kind of value (RFC 8705 §2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsSubjectKind {
    /// `tls_client_auth_subject_dn`: the certificate's subject DN.
    #[serde(rename = "tls_client_auth_subject_dn")]
    SubjectDn,
    /// `tls_client_auth_san_dns`: a dNSName SAN entry.
    #[serde(rename = "tls_client_auth_san_dns")]
    SanDns,
    /// `tls_client_auth_san_uri`: a uniformResourceIdentifier SAN entry.
    #[serde(rename = "tls_client_auth_san_uri")]
    SanUri,
    /// `tls_client_auth_san_ip`: an iPAddress SAN entry.
    #[serde(rename = "tls_client_auth_san_ip")]
    SanIp,
    /// `tls_client_auth_san_email`: an rfc822Name SAN entry.
    #[serde(rename = "tls_client_auth_san_email")]
    SanEmail,
}

impl TlsSubjectKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [Self] = &[
        Self::SubjectDn,
        Self::SanDns,
        Self::SanUri,
        Self::SanIp,
        Self::SanEmail,
    ];

    /// Returns the RFC 8705 metadata member name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SubjectDn => "tls_client_auth_subject_dn",
            Self::SanDns => "tls_client_auth_san_dns",
            Self::SanUri => "tls_client_auth_san_uri",
            Self::SanIp => "tls_client_auth_san_ip",
            Self::SanEmail => "tls_client_auth_san_email",
        }
    }
}

impl fmt::Display for TlsSubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsSubjectKind {
    type Err = TlsSubjectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| TlsSubjectError::UnknownKind(s.to_owned()))
    }
}

/// The reason a registered certificate subject was rejected. The message
/// names the metadata member and what is wrong with the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSubjectError {
    /// The member name is not one of RFC 8705 §2.1.2.
    #[error("unknown certificate subject member {0:?}")]
    UnknownKind(String),
    /// The value is empty.
    #[error("{0} is empty")]
    Empty(TlsSubjectKind),
    /// The value is longer than [`MAX_TLS_SUBJECT_LEN`] bytes.
    #[error("{kind} is {length} bytes long; the maximum is {MAX_TLS_SUBJECT_LEN}")]
    TooLong {
        /// The member.
        kind: TlsSubjectKind,
        /// The value's length in bytes.
        length: usize,
    },
    /// The value contains a control character.
    #[error("{0} contains a control character")]
    Control(TlsSubjectKind),
    /// The distinguished name does not follow RFC 4514.
    #[error("tls_client_auth_subject_dn is not an RFC 4514 distinguished name: {0}")]
    Dn(String),
    /// The DNS name is not a host name of letters, digits and hyphens.
    #[error(
        "tls_client_auth_san_dns {0:?} is not a DNS name: use labels of ASCII letters, digits \
         and '-', up to 63 characters each, with no wildcard"
    )]
    Dns(String),
    /// The URI is not absolute.
    #[error("tls_client_auth_san_uri {0:?} is not an absolute URI such as urn:example:client")]
    Uri(String),
    /// The IP address does not parse.
    #[error("tls_client_auth_san_ip {0:?} is not an IPv4 or IPv6 address")]
    Ip(String),
    /// The e-mail address is not `local@domain`.
    #[error("tls_client_auth_san_email {0:?} is not an e-mail address of the form local@domain")]
    Email(String),
}

/// The one certificate subject a `tls_client_auth` client is registered
/// with (RFC 8705 §2.1.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TlsSubjectParts", into = "TlsSubjectParts")]
pub enum TlsClientAuthSubject {
    /// The subject distinguished name.
    SubjectDn(DistinguishedName),
    /// A dNSName, lower-cased; matched without regard to case.
    SanDns(String),
    /// A URI, matched exactly.
    SanUri(String),
    /// An IP address, matched by value.
    SanIp(IpAddr),
    /// An e-mail address whose domain is lower-cased; the local part is
    /// matched exactly and the domain without regard to case.
    SanEmail(String),
}

impl TlsClientAuthSubject {
    /// Parses and checks a value of the metadata member `kind`.
    ///
    /// # Errors
    ///
    /// A [`TlsSubjectError`] naming the member and the fault.
    pub fn parse(kind: TlsSubjectKind, value: &str) -> Result<Self, TlsSubjectError> {
        if value.is_empty() {
            return Err(TlsSubjectError::Empty(kind));
        }
        if value.len() > MAX_TLS_SUBJECT_LEN {
            return Err(TlsSubjectError::TooLong {
                kind,
                length: value.len(),
            });
        }
        if value.chars().any(char::is_control) {
            return Err(TlsSubjectError::Control(kind));
        }
        match kind {
            TlsSubjectKind::SubjectDn => DistinguishedName::parse(value).map(Self::SubjectDn),
            TlsSubjectKind::SanDns => check_dns_name(value)
                .then(|| Self::SanDns(value.to_ascii_lowercase()))
                .ok_or_else(|| TlsSubjectError::Dns(value.to_owned())),
            TlsSubjectKind::SanUri => check_absolute_uri(value)
                .then(|| Self::SanUri(value.to_owned()))
                .ok_or_else(|| TlsSubjectError::Uri(value.to_owned())),
            TlsSubjectKind::SanIp => value
                .parse()
                .map(Self::SanIp)
                .map_err(|_| TlsSubjectError::Ip(value.to_owned())),
            TlsSubjectKind::SanEmail => normalize_email(value)
                .map(Self::SanEmail)
                .ok_or_else(|| TlsSubjectError::Email(value.to_owned())),
        }
    }

    /// Returns the metadata member this value is registered under.
    pub const fn kind(&self) -> TlsSubjectKind {
        match self {
            Self::SubjectDn(_) => TlsSubjectKind::SubjectDn,
            Self::SanDns(_) => TlsSubjectKind::SanDns,
            Self::SanUri(_) => TlsSubjectKind::SanUri,
            Self::SanIp(_) => TlsSubjectKind::SanIp,
            Self::SanEmail(_) => TlsSubjectKind::SanEmail,
        }
    }

    /// Returns the value as registered, the text [`Self::parse`] reads back.
    pub fn value(&self) -> String {
        match self {
            Self::SubjectDn(name) => name.as_str().to_owned(),
            Self::SanDns(name) => name.clone(),
            Self::SanUri(uri) => uri.clone(),
            Self::SanIp(address) => address.to_string(),
            Self::SanEmail(address) => address.clone(),
        }
    }

    /// Returns whether a dNSName SAN of a certificate matches: equal
    /// without regard to ASCII case.
    pub fn matches_dns(&self, presented: &str) -> bool {
        matches!(self, Self::SanDns(name) if name.eq_ignore_ascii_case(presented))
    }

    /// Returns whether a uniformResourceIdentifier SAN matches: equal
    /// byte for byte.
    pub fn matches_uri(&self, presented: &str) -> bool {
        matches!(self, Self::SanUri(uri) if uri == presented)
    }

    /// Returns whether an iPAddress SAN matches.
    pub fn matches_ip(&self, presented: IpAddr) -> bool {
        matches!(self, Self::SanIp(address) if *address == presented)
    }

    /// Returns whether an rfc822Name SAN matches: the local part equal byte
    /// for byte, the domain equal without regard to ASCII case.
    pub fn matches_email(&self, presented: &str) -> bool {
        let Self::SanEmail(registered) = self else {
            return false;
        };
        let (Some((local, domain)), Some((presented_local, presented_domain))) =
            (registered.rsplit_once('@'), presented.rsplit_once('@'))
        else {
            return false;
        };
        local == presented_local && domain.eq_ignore_ascii_case(presented_domain)
    }

    /// Returns whether a certificate's subject name matches, compared as
    /// parsed names.
    pub fn matches_subject(&self, presented: &DistinguishedName) -> bool {
        matches!(self, Self::SubjectDn(name) if name.matches(presented))
    }
}

/// The stored and serialized form: the member name and the value text.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TlsSubjectParts {
    kind: TlsSubjectKind,
    value: String,
}

impl TryFrom<TlsSubjectParts> for TlsClientAuthSubject {
    type Error = TlsSubjectError;

    fn try_from(parts: TlsSubjectParts) -> Result<Self, Self::Error> {
        Self::parse(parts.kind, &parts.value)
    }
}

impl From<TlsClientAuthSubject> for TlsSubjectParts {
    fn from(subject: TlsClientAuthSubject) -> Self {
        Self {
            kind: subject.kind(),
            value: subject.value(),
        }
    }
}

/// Checks a host name: dot-separated labels of ASCII letters, digits and
/// inner hyphens. A trailing dot and wildcards are rejected, because the
/// value is compared with certificate entries that carry neither.
fn check_dns_name(name: &str) -> bool {
    name.len() <= MAX_DNS_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_DNS_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        })
}

/// Checks an absolute URI (RFC 3986 §4.3): a scheme, a colon and a
/// non-empty rest without spaces.
fn check_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut scheme_bytes = scheme.bytes();
    let starts_with_letter = scheme_bytes
        .next()
        .is_some_and(|byte| byte.is_ascii_alphabetic());
    starts_with_letter
        && scheme_bytes
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !uri.chars().any(char::is_whitespace)
        && url::Url::parse(uri).is_ok()
}

/// Checks `local@domain` and lower-cases the domain. The local part is kept
/// as given, because RFC 5321 §2.4 lets it be case-sensitive.
fn normalize_email(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let local_valid = !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_LEN
        && !local.contains('@')
        && !local.chars().any(char::is_whitespace);
    if !local_valid || !check_dns_name(domain) {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// A distinguished name parsed from its RFC 4514 string, or built from a
/// certificate's subject, ready for comparison.
///
/// The relative distinguished names are in RFC 4514 order: the most
/// specific (such as `CN`) first, the reverse of their order in the
/// certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistinguishedName {
    text: String,
    rdns: Vec<Vec<Attribute>>,
}

/// One attribute of a relative distinguished name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attribute {
    /// The attribute type as a dotted OID, such as `2.5.4.3` for `CN`.
    pub oid: String,
    /// The value, normalized for comparison.
    pub value: AttributeValue,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttributeValue {
    /// A string value, trimmed, with runs of white space folded to one
    /// space and lower-cased, so equal values under caseIgnoreMatch are
    /// equal strings.
    Text(String),
    /// The DER encoding of a value that is not a string, written `#hex` in
    /// RFC 4514. It matches only the same bytes.
    Der(Vec<u8>),
}

impl AttributeValue {
    /// Normalizes a string value for comparison.
    pub fn text(value: &str) -> Self {
        let folded = value.split_whitespace().collect::<Vec<_>>().join(" ");
        Self::Text(folded.to_lowercase())
    }
}

/// Attribute type names of RFC 4514 §3 and a few more that certificate
/// subjects commonly use, with their OIDs.
const ATTRIBUTE_TYPES: [(&str, &str); 15] = [
    ("cn", "2.5.4.3"),
    ("l", "2.5.4.7"),
    ("st", "2.5.4.8"),
    ("o", "2.5.4.10"),
    ("ou", "2.5.4.11"),
    ("c", "2.5.4.6"),
    ("street", "2.5.4.9"),
    ("dc", "0.9.2342.19200300.100.1.25"),
    ("uid", "0.9.2342.19200300.100.1.1"),
    ("serialnumber", "2.5.4.5"),
    ("sn", "2.5.4.4"),
    ("givenname", "2.5.4.42"),
    ("title", "2.5.4.12"),
    ("organizationidentifier", "2.5.4.97"),
    ("emailaddress", "1.2.840.113549.1.9.1"),
];

impl DistinguishedName {
    /// Parses an RFC 4514 string such as `CN=svc,O=Acme\, Inc.,C=DE`.
    ///
    /// Attribute types are the names of RFC 4514 §3 (and `serialNumber`,
    /// `SN`, `givenName`, `title`, `organizationIdentifier`,
    /// `emailAddress`) or dotted OIDs. Spaces around `,`, `+` and `=` are
    /// allowed. A value is a string with `\` escapes or `#` and hex digits.
    ///
    /// # Errors
    ///
    /// [`TlsSubjectError::Dn`] naming the fault.
    pub fn parse(text: &str) -> Result<Self, TlsSubjectError> {
        let mut parser = DnParser {
            bytes: text.as_bytes(),
            position: 0,
        };
        let mut rdns = Vec::new();
        loop {
            let mut rdn = Vec::new();
            loop {
                rdn.push(parser.attribute()?);
                if !parser.consume(b'+') {
                    break;
                }
            }
            rdn.sort();
            rdns.push(rdn);
            if parser.at_end() {
                break;
            }
            if !parser.consume(b',') {
                return Err(parser.error("expected ',' between relative distinguished names"));
            }
        }
        Ok(Self {
            text: text.trim().to_owned(),
            rdns,
        })
    }

    /// Builds a name from attributes in RFC 4514 order, most specific
    /// first. String values are normalized here.
    pub fn from_rdns(rdns: Vec<Vec<Attribute>>) -> Self {
        let rdns: Vec<Vec<Attribute>> = rdns
            .into_iter()
            .map(|mut rdn| {
                for attribute in &mut rdn {
                    if let AttributeValue::Text(value) = &attribute.value {
                        attribute.value = AttributeValue::text(value);
                    }
                }
                rdn.sort();
                rdn
            })
            .collect();
        let text = rdns
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|attribute| match &attribute.value {
                        AttributeValue::Text(value) => format!("{}={value}", attribute.oid),
                        AttributeValue::Der(bytes) => format!("{}=#{}", attribute.oid, hex(bytes)),
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect::<Vec<_>>()
            .join(",");
        Self { text, rdns }
    }

    /// Returns the name as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns whether both names have the same relative distinguished
    /// names in the same order, each with the same set of attributes
    /// (RFC 4517 §4.2.15).
    pub fn matches(&self, other: &Self) -> bool {
        self.rdns == other.rdns
    }
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A cursor over an RFC 4514 string.
struct DnParser<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl DnParser<'_> {
    fn error(&self, message: &str) -> TlsSubjectError {
        TlsSubjectError::Dn(format!("{message} at byte {}", self.position + 1))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.position += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_spaces();
        self.position >= self.bytes.len()
    }

    fn consume(&mut self, expected: u8) -> bool {
        self.skip_spaces();
        if self.peek() == Some(expected) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    /// Reads `type=value`.
    fn attribute(&mut self) -> Result<Attribute, TlsSubjectError> {
        self.skip_spaces();
        let start = self.position;
        while self
            .peek()
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
        {
            self.position += 1;
        }
        let name = std::str::from_utf8(self.bytes.get(start..self.position).unwrap_or_default())
            .unwrap_or_default();
        let oid = attribute_oid(name).ok_or_else(|| {
            self.error("expected an attribute type such as CN, O or a dotted OID")
        })?;
        if !self.consume(b'=') {
            return Err(self.error("expected '=' after the attribute type"));
        }
        self.skip_spaces();
        let value = if self.peek() == Some(b'#') {
            self.position += 1;
            AttributeValue::Der(self.hex_value()?)
        } else {
            AttributeValue::text(&self.string_value()?)
        };
        Ok(Attribute { oid, value })
    }

    /// Reads `#` hex pairs up to the next separator.
    fn hex_value(&mut self) -> Result<Vec<u8>, TlsSubjectError> {
        let mut bytes = Vec::new();
        while let Some(high) = self.peek().and_then(hex_digit) {
            let low = self
                .bytes
                .get(self.position + 1)
                .copied()
                .and_then(hex_digit)
                .ok_or_else(|| self.error("expected pairs of hex digits after '#'"))?;
            bytes.push(high << 4 | low);
            self.position += 2;
        }
        self.skip_spaces();
        if bytes.is_empty() || !matches!(self.peek(), None | Some(b',' | b'+')) {
            return Err(self.error("expected pairs of hex digits after '#'"));
        }
        Ok(bytes)
    }

    /// Reads a string value up to an unescaped `,` or `+`, resolving `\`
    /// escapes.
    fn string_value(&mut self) -> Result<String, TlsSubjectError> {
        let mut value = Vec::new();
        while let Some(byte) = self.peek() {
            match byte {
                b',' | b'+' => break,
                b'\\' => {
                    self.position += 1;
                    let next = self
                        .peek()
                        .ok_or_else(|| self.error("the string ends in a lone '\\'"))?;
                    if let Some(high) = hex_digit(next) {
                        let low = self
                            .bytes
                            .get(self.position + 1)
                            .copied()
                            .and_then(hex_digit)
                            .ok_or_else(|| self.error("expected two hex digits after '\\'"))?;
                        value.push(high << 4 | low);
                        self.position += 2;
                    } else if b"\\\"+,;<>= #".contains(&next) {
                        value.push(next);
                        self.position += 1;
                    } else {
                        return Err(self.error("'\\' escapes only a special character or hex"));
                    }
                }
                b'"' | b';' | b'<' | b'>' | 0 => {
                    return Err(self.error("this character must be escaped with '\\'"));
                }
                other => {
                    value.push(other);
                    self.position += 1;
                }
            }
        }
        String::from_utf8(value).map_err(|_| self.error("the value is not UTF-8"))
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Maps an attribute type name (without regard to case) or a dotted OID to
/// the OID.
fn attribute_oid(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    if name
        .bytes()
        .next()
        .is_some_and(|byte| byte.is_ascii_digit())
    {
        let valid = name.split('.').count() >= 2
            && name.split('.').all(|arc| {
                !arc.is_empty()
                    && arc.bytes().all(|byte| byte.is_ascii_digit())
                    && (arc == "0" || !arc.starts_with('0'))
            });
        return valid.then(|| name.to_owned());
    }
    let lower = name.to_ascii_lowercase();
    ATTRIBUTE_TYPES
        .iter()
        .find(|(known, _)| *known == lower)
        .map(|(_, oid)| (*oid).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(text: &str) -> DistinguishedName {
        DistinguishedName::parse(text).unwrap()
    }

    #[test]
    fn dn_compared_as_parsed_names() {
        let registered = dn("CN=Payments Service,O=Acme\\, Inc.,C=DE");
        assert!(registered.matches(&dn("cn=payments  service, o = ACME\\2C Inc., c=de")));
        assert!(registered.matches(&dn("2.5.4.3=Payments Service,2.5.4.10=Acme\\, Inc.,C=DE")));
        assert!(!registered.matches(&dn("C=DE,O=Acme\\, Inc.,CN=Payments Service")));
        assert!(!registered.matches(&dn("CN=Payments Service,O=Acme,C=DE")));
        assert!(!registered.matches(&dn("CN=Payments Service,O=Acme\\, Inc.")));
    }

    #[test]
    fn dn_multi_valued_rdn_is_a_set() {
        let registered = dn("CN=svc+UID=42,O=Acme");
        assert!(registered.matches(&dn("UID=42+CN=svc,O=Acme")));
        assert!(!registered.matches(&dn("CN=svc,UID=42,O=Acme")));
    }

    #[test]
    fn dn_hex_value_matches_same_bytes() {
        let registered = dn("1.2.3.4=#0403010203,O=Acme");
        assert!(registered.matches(&dn("1.2.3.4=#0403010203,O=acme")));
        assert!(!registered.matches(&dn("1.2.3.4=#0403010204,O=acme")));
    }

    #[test]
    fn dn_syntax_errors_rejected() {
        for text in [
            "CN",
            "CN=a,",
            "=a",
            "XX=a",
            "CN=a;O=b",
            "CN=a\\",
            "CN=a\\q",
            "CN=\"quoted\"",
            "1.2.=a",
            "01.2=a",
            "CN=#zz",
            "CN=#0",
            "CN=a\\c3",
        ] {
            assert!(DistinguishedName::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn dn_built_from_certificate_attributes() {
        let built = DistinguishedName::from_rdns(vec![
            vec![Attribute {
                oid: "2.5.4.3".to_owned(),
                value: AttributeValue::Text(" Payments   Service ".to_owned()),
            }],
            vec![Attribute {
                oid: "2.5.4.10".to_owned(),
                value: AttributeValue::Text("Acme".to_owned()),
            }],
        ]);
        assert!(dn("CN=payments service,O=ACME").matches(&built));
    }

    #[test]
    fn subject_kinds_checked() {
        let accepted = [
            (TlsSubjectKind::SubjectDn, "CN=svc,O=Acme"),
            (TlsSubjectKind::SanDns, "Partner-Svc.Example.com"),
            (TlsSubjectKind::SanUri, "urn:portcullis:client:1"),
            (TlsSubjectKind::SanUri, "https://svc.example.com/id"),
            (TlsSubjectKind::SanIp, "192.0.2.7"),
            (TlsSubjectKind::SanIp, "2001:db8::7"),
            (TlsSubjectKind::SanEmail, "Ops@Example.com"),
        ];
        for (kind, value) in accepted {
            let subject = TlsClientAuthSubject::parse(kind, value).unwrap();
            assert_eq!(subject.kind(), kind);
        }
        let rejected = [
            (TlsSubjectKind::SubjectDn, "svc"),
            (TlsSubjectKind::SanDns, "*.example.com"),
            (TlsSubjectKind::SanDns, "example.com."),
            (TlsSubjectKind::SanDns, "-a.example.com"),
            (TlsSubjectKind::SanDns, "a b.example.com"),
            (TlsSubjectKind::SanUri, "/relative/path"),
            (TlsSubjectKind::SanUri, "1http://x"),
            (TlsSubjectKind::SanUri, "urn:has space"),
            (TlsSubjectKind::SanIp, "192.0.2.300"),
            (TlsSubjectKind::SanEmail, "no-at-sign"),
            (TlsSubjectKind::SanEmail, "@example.com"),
            (TlsSubjectKind::SanEmail, "a@-bad-.com"),
            (TlsSubjectKind::SanDns, ""),
            (TlsSubjectKind::SanUri, "urn:a\nb"),
        ];
        for (kind, value) in rejected {
            assert!(
                TlsClientAuthSubject::parse(kind, value).is_err(),
                "{kind} {value:?}"
            );
        }
        let long = format!("urn:{}", "a".repeat(MAX_TLS_SUBJECT_LEN));
        assert!(matches!(
            TlsClientAuthSubject::parse(TlsSubjectKind::SanUri, &long),
            Err(TlsSubjectError::TooLong { .. })
        ));
    }

    #[test]
    fn san_matching_rules() {
        let dns = TlsClientAuthSubject::parse(TlsSubjectKind::SanDns, "Svc.Example.com").unwrap();
        assert!(dns.matches_dns("svc.example.COM"));
        assert!(!dns.matches_dns("svc.example.com.evil"));
        assert!(!dns.matches_uri("svc.example.com"));

        let uri = TlsClientAuthSubject::parse(TlsSubjectKind::SanUri, "urn:acme:Svc").unwrap();
        assert!(uri.matches_uri("urn:acme:Svc"));
        assert!(!uri.matches_uri("urn:acme:svc"));

        let ip = TlsClientAuthSubject::parse(TlsSubjectKind::SanIp, "2001:db8::7").unwrap();
        assert!(ip.matches_ip("2001:0db8:0::7".parse().unwrap()));
        assert!(!ip.matches_ip("2001:db8::8".parse().unwrap()));

        let email =
            TlsClientAuthSubject::parse(TlsSubjectKind::SanEmail, "Ops@Example.com").unwrap();
        assert!(email.matches_email("Ops@example.COM"));
        assert!(!email.matches_email("ops@example.com"));
    }

    #[test]
    fn subject_serde_round_trip() {
        for (kind, value) in [
            (TlsSubjectKind::SubjectDn, "CN=svc,O=Acme"),
            (TlsSubjectKind::SanIp, "192.0.2.7"),
        ] {
            let subject = TlsClientAuthSubject::parse(kind, value).unwrap();
            let text = serde_json::to_string(&subject).unwrap();
            assert!(text.contains(kind.as_str()), "{text}");
            let back: TlsClientAuthSubject = serde_json::from_str(&text).unwrap();
            assert_eq!(back, subject);
        }
        let bad = r#"{"kind":"tls_client_auth_san_ip","value":"nope"}"#;
        assert!(serde_json::from_str::<TlsClientAuthSubject>(bad).is_err());
    }
}
