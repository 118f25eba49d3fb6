//! Client certificates that a TLS-terminating proxy forwards in a header.
//!
//! Envoy's `x-forwarded-client-cert` (XFCC) has one element per proxy,
//! separated by commas, each proxy appending its own. An element is a list
//! of `Key=value` pairs separated by semicolons, and some values, such as
//! `Subject`, are in double quotes. This parser ignores separators inside
//! quotes and reads a backslash there as escaping the next character.
//! `Cert` is the client's certificate and `Chain` its chain, leaf included,
//! both as URL-encoded PEM. Only the last
//! element counts, because it is the one the proxy nearest to Portcullis
//! added. nginx's `$ssl_client_escaped_cert` is the leaf as URL-encoded
//! PEM.

use percent_encoding::percent_decode;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::ForwardedCertificateFormat;

/// Maximum size of a forwarded certificate header. PEM is about 1.4 times
/// the DER size, and URL encoding adds little to base64 text, so by
/// estimate this fits a chain of several certificates of 1 to 3 KB each.
pub const MAX_FORWARDED_HEADER_BYTES: usize = 32 * 1024;

/// Maximum number of certificates read from one forwarded chain.
pub const MAX_FORWARDED_CHAIN_LENGTH: usize = 8;

/// A forwarded certificate header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedCertificateError {
    /// The header is longer than [`MAX_FORWARDED_HEADER_BYTES`].
    #[error("the header is {length} bytes, more than the maximum of {MAX_FORWARDED_HEADER_BYTES}")]
    TooLarge {
        /// The header's length in bytes.
        length: usize,
    },
    /// The header appears more than once.
    #[error("the header appears more than once; a proxy sets exactly one")]
    Repeated,
    /// A quoted XFCC value has no closing quote.
    #[error("a quoted value has no closing double quote")]
    UnterminatedQuote,
    /// The last XFCC element has neither `Cert` nor `Chain`.
    #[error(
        "the last element has no Cert or Chain value; configure the proxy to forward the \
         certificate (Envoy: set_current_client_cert_details with cert: true)"
    )]
    NoCertificate,
    /// `Cert` and the first certificate of `Chain` differ.
    #[error("the Cert value differs from the first certificate of the Chain value")]
    CertificateMismatch,
    /// The value is not PEM after URL decoding.
    #[error("the certificate is not valid URL-encoded PEM: {0}")]
    InvalidPem(String),
    /// The chain has more than [`MAX_FORWARDED_CHAIN_LENGTH`] certificates.
    #[error("the chain has more than {MAX_FORWARDED_CHAIN_LENGTH} certificates")]
    ChainTooLong,
}

/// Reads the forwarded chain, leaf first, from a header value. Returns
/// `None` for an empty value: nginx's `$ssl_client_escaped_cert` is empty
/// when the client presented no certificate.
///
/// # Errors
///
/// A [`ForwardedCertificateError`] for a value that is too large or
/// malformed, so that the request can be rejected with 400.
pub fn parse_forwarded_chain(
    format: ForwardedCertificateFormat,
    value: &[u8],
) -> Result<Option<Vec<CertificateDer<'static>>>, ForwardedCertificateError> {
    if value.len() > MAX_FORWARDED_HEADER_BYTES {
        return Err(ForwardedCertificateError::TooLarge {
            length: value.len(),
        });
    }
    if value.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match format {
        ForwardedCertificateFormat::Nginx => decode_pem_chain(value).map(Some),
        ForwardedCertificateFormat::Envoy => parse_xfcc(value).map(Some),
    }
}

/// Reads the chain of the last XFCC element, preferring `Chain` and
/// checking that it starts with `Cert` when both are present.
fn parse_xfcc(value: &[u8]) -> Result<Vec<CertificateDer<'static>>, ForwardedCertificateError> {
    let elements = split_unquoted(value, b',')?;
    let last = elements.last().copied().unwrap_or_default();

    let mut cert = None;
    let mut chain = None;
    for pair in split_unquoted(last, b';')? {
        let Some(position) = pair.iter().position(|&byte| byte == b'=') else {
            continue;
        };
        let (key, rest) = pair.split_at(position);
        let raw_value = rest.get(1..).unwrap_or_default();
        let key = key.trim_ascii();
        if key.eq_ignore_ascii_case(b"Cert") {
            cert = Some(unquote(raw_value.trim_ascii()));
        } else if key.eq_ignore_ascii_case(b"Chain") {
            chain = Some(unquote(raw_value.trim_ascii()));
        }
    }

    match (cert, chain) {
        (None, None) => Err(ForwardedCertificateError::NoCertificate),
        (Some(cert), None) => decode_pem_chain(&cert),
        (cert, Some(chain)) => {
            let chain = decode_pem_chain(&chain)?;
            if let Some(cert) = cert {
                let leaf = decode_pem_chain(&cert)?;
                if leaf.first() != chain.first() {
                    return Err(ForwardedCertificateError::CertificateMismatch);
                }
            }
            Ok(chain)
        }
    }
}

/// Splits at every `separator` outside double quotes.
fn split_unquoted(value: &[u8], separator: u8) -> Result<Vec<&[u8]>, ForwardedCertificateError> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (index, &byte) in value.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && byte == b'\\' {
            escaped = true;
        } else if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && byte == separator {
            parts.push(value.get(start..index).unwrap_or_default());
            start = index + 1;
        }
    }
    if quoted {
        return Err(ForwardedCertificateError::UnterminatedQuote);
    }
    parts.push(value.get(start..).unwrap_or_default());
    Ok(parts)
}

/// Removes surrounding double quotes and the backslashes that escape a
/// character inside them. An unquoted value is returned as it is.
fn unquote(value: &[u8]) -> Vec<u8> {
    let Some(inner) = value
        .strip_prefix(b"\"")
        .and_then(|rest| rest.strip_suffix(b"\""))
    else {
        return value.to_vec();
    };
    let mut output = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &byte in inner {
        if !escaped && byte == b'\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        output.push(byte);
    }
    output
}

/// URL-decodes a value and reads its PEM certificates.
fn decode_pem_chain(
    encoded: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ForwardedCertificateError> {
    let pem: Vec<u8> = percent_decode(encoded).collect();
    let mut chain = Vec::new();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate
            .map_err(|error| ForwardedCertificateError::InvalidPem(describe_pem_error(&error)))?;
        if chain.len() == MAX_FORWARDED_CHAIN_LENGTH {
            return Err(ForwardedCertificateError::ChainTooLong);
        }
        chain.push(certificate);
    }
    if chain.is_empty() {
        return Err(ForwardedCertificateError::InvalidPem(
            "no CERTIFICATE block found".to_owned(),
        ));
    }
    Ok(chain)
}

/// Describes a PEM error in words. The error's own `Display` prints the
/// expected label and the offending line as arrays of byte values.
fn describe_pem_error(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;

    match error {
        Error::MissingSectionEnd { end_marker } => format!(
            "a PEM block has no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_owned(),
        Error::Base64Decode(detail) => format!("a PEM block is not valid base64: {detail}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
