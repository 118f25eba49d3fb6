//! Records of the internal certificate authority, the client certificates
//! it issues and the partner CAs that operators trust per tenant.
//!
//! Certificates are named by serial number, written as lowercase hex
//! without separators. Revocation goes by serial, so the issuer gives every
//! certificate a fresh random serial.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::ids::{ClientId, TenantId};

/// The maximum length of a serial number in hex digits: RFC 5280 §4.1.2.2
/// allows at most 20 octets.
pub const MAX_SERIAL_HEX_LEN: usize = 40;

/// A certificate serial number as lowercase hex digits, such as
/// `3f09a1…`, without leading zero octets.
///
/// A serial is a positive integer. Its DER form gains a zero octet when the
/// top bit is set and tools print it with or without that octet, so both
/// parse to the same value here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertificateSerial(String);

impl CertificateSerial {
    /// Writes the serial's big-endian octets as lowercase hex, without
    /// leading zero octets.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut hex = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            hex.push_str(&format!("{byte:02x}"));
        }
        Self(strip_leading_zeros(&hex))
    }

    /// Returns the serial as lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the serial's octets, without leading zero octets.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0
            .as_bytes()
            .chunks(2)
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
            .collect()
    }
}

impl fmt::Display for CertificateSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The error of parsing a serial number that is not hex.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid certificate serial {0:?}: expected 2 to {MAX_SERIAL_HEX_LEN} hex digits, \
     an even number, optionally separated by colons"
)]
pub struct InvalidSerial(pub String);

impl FromStr for CertificateSerial {
    type Err = InvalidSerial;

    /// Parses hex digits in either case, with or without the colons that
    /// `openssl x509 -serial` and many tools print between octets.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
        let valid = !digits.is_empty()
            && digits.len() <= MAX_SERIAL_HEX_LEN
            && digits.len().is_multiple_of(2)
            && digits.chars().all(|c| c.is_ascii_hexdigit());
        if valid {
            Ok(Self(strip_leading_zeros(&digits.to_ascii_lowercase())))
        } else {
            Err(InvalidSerial(s.to_owned()))
        }
    }
}

/// Drops leading `00` octets from even-length hex, keeping at least one.
fn strip_leading_zeros(hex: &str) -> String {
    let mut rest = hex;
    while rest.len() > 2 && rest.starts_with("00") {
        rest = rest.get(2..).unwrap_or(rest);
    }
    rest.to_owned()
}

/// The internal CA as stored: its certificate and its sealed private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CaRecord {
    /// The CA's id, also the associated data of its sealed private key.
    pub id: Uuid,
    /// The CA certificate, PEM.
    pub certificate_pem: String,
    /// The PKCS#8 private key, sealed with the master key's `ca-key`
    /// sealing key.
    pub sealed_private_key: Vec<u8>,
    /// When the CA was created.
    pub created_at: OffsetDateTime,
}

impl fmt::Debug for CaRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaRecord")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A client certificate that the internal CA issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    /// The serial number.
    pub serial: CertificateSerial,
    /// The OAuth client that the certificate names.
    pub client_id: ClientId,
    /// The client's tenant.
    pub tenant_id: TenantId,
    /// The subject DN as text, such as `CN=0190…`.
    pub subject: String,
    /// The subject alternative names, one per line, such as
    /// `URI:urn:portcullis:client:0190…`.
    pub subject_alt_names: String,
    /// The start of the validity period.
    pub not_before: OffsetDateTime,
    /// The end of the validity period.
    pub not_after: OffsetDateTime,
    /// The SHA-256 of the DER certificate as lowercase hex: the
    /// `x5t#S256` value of RFC 8705 in another encoding.
    pub sha256: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// When the certificate was issued.
    pub created_at: OffsetDateTime,
    /// When the certificate was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// The reason given at revocation.
    pub revoked_reason: Option<String>,
}

impl CertificateRecord {
    /// Returns whether the certificate is usable at `now`: issued, not
    /// revoked and inside its validity period.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.not_before <= now && now <= self.not_after
    }
}

/// A revocation reason of RFC 5280 §5.3.1 that an operator may give.
///
/// certificateHold (6) and removeFromCRL (8) are not offered, because the
/// internal CA never suspends a certificate, and aACompromise (10) concerns
/// attribute certificates, which it does not issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// unspecified (0).
    Unspecified,
    /// keyCompromise (1).
    KeyCompromise,
    /// cACompromise (2).
    CaCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// Every reason, in the order of their RFC 5280 codes.
    pub const ALL: [Self; 7] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The reason's name in RFC 5280's ASN.1 module, such as
    /// `keyCompromise`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    /// Returns the names of every reason, for help text and errors.
    pub fn names() -> [&'static str; 7] {
        Self::ALL.map(Self::as_str)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a revocation reason that RFC 5280 does not name,
/// or that is not offered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid revocation reason {0:?}: expected one of unspecified, keyCompromise, \
     cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn"
)]
pub struct InvalidRevocationReason(pub String);

impl FromStr for RevocationReason {
    type Err = InvalidRevocationReason;

    /// Parses an RFC 5280 reason name in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| InvalidRevocationReason(s.to_owned()))
    }
}

/// A revoked certificate that a CRL lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedCertificate {
    /// The serial number.
    pub serial: CertificateSerial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// The reason given at revocation, or `None` for a stored reason that
    /// names no [`RevocationReason`].
    pub reason: Option<RevocationReason>,
    /// When it expires; a CRL may drop it after that.
    pub not_after: OffsetDateTime,
}

/// A partner CA that an operator trusts for one tenant's clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedCaRecord {
    /// The record's id.
    pub id: Uuid,
    /// The tenant whose clients the CA may certify.
    pub tenant_id: TenantId,
    /// The CA certificate's subject DN as text.
    pub subject: String,
    /// The CA certificate, PEM.
    pub certificate_pem: String,
    /// The SHA-256 of the DER certificate as lowercase hex.
    pub sha256: String,
    /// When the operator added it.
    pub added_at: OffsetDateTime,
    /// Absolute paths of PEM files with the CA's CRLs, which every server
    /// reads and reads again when they change.
    pub crl_files: Vec<String>,
    /// Whether the operator acknowledged that the CA publishes no CRL, so
    /// that its certificates are accepted without a revocation check.
    pub revocation_unchecked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_parses_colons_and_case() {
        let serial: CertificateSerial = "3F:0a:B1".parse().unwrap();
        assert_eq!(serial.as_str(), "3f0ab1");
        assert_eq!(serial.to_bytes(), vec![0x3f, 0x0a, 0xb1]);
    }

    #[test]
    fn serial_round_trips_bytes() {
        let bytes = [0x7f, 0xff, 0x10];
        let serial = CertificateSerial::from_bytes(&bytes);
        assert_eq!(serial.as_str(), "7fff10");
        assert_eq!(serial.to_bytes(), bytes);
    }

    #[test]
    fn serial_drops_leading_zero_octets() {
        let from_bytes = CertificateSerial::from_bytes(&[0x00, 0x00, 0x85, 0x01]);
        let parsed: CertificateSerial = "00:85:01".parse().unwrap();
        assert_eq!(from_bytes.as_str(), "8501");
        assert_eq!(parsed, from_bytes);
        assert_eq!("0000".parse::<CertificateSerial>().unwrap().as_str(), "00");
    }

    #[test]
    fn revocation_reasons_parse_any_case() {
        for reason in RevocationReason::ALL {
            assert_eq!(reason.as_str().parse(), Ok(reason));
            assert_eq!(reason.as_str().to_ascii_uppercase().parse(), Ok(reason));
        }
        for word in [
            "certificateHold",
            "removeFromCRL",
            "aACompromise",
            "key compromise",
            "",
        ] {
            let error = word.parse::<RevocationReason>().unwrap_err();
            assert!(error.to_string().contains("keyCompromise"), "{error}");
        }
    }

    #[test]
    fn serial_rejects_bad_input() {
        for input in ["", "abc", "zz", "0x10", &"ab".repeat(21)] {
            assert!(input.parse::<CertificateSerial>().is_err(), "{input:?}");
        }
    }
}
