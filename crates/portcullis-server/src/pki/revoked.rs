//! Serials of revoked client certificates, checked on every request.
//!
//! rustls checks CRLs only during the handshake, so a connection opened
//! before a revocation would keep its certificate. This set closes that gap:
//! it is loaded from the store at start, fed by the change feed, and the
//! listener rejects every request whose connection presented a serial in it.
//!
//! NOTE: the change feed reports serials only for the internal CA. Serials
//! are compared without their issuer, so a partner certificate with the same
//! serial as a revoked internal one is rejected too. Random 16-byte serials
//! make that unlikely, and the result errs on the side of rejecting.

use std::collections::HashSet;
use std::sync::RwLock;

use portcullis_core::pki::CertificateSerial;
use portcullis_store::{Store, StoreError};
use time::OffsetDateTime;

/// Revoked certificate serials, as lowercase hex without leading zero
/// octets ([`CertificateSerial`]).
#[derive(Debug, Default)]
pub struct RevokedSerials {
    serials: RwLock<HashSet<String>>,
}

impl RevokedSerials {
    /// Loads the serials of every revoked certificate that has not expired
    /// at `now`.
    ///
    /// # Errors
    ///
    /// The store's error when the lookup fails.
    pub async fn load(store: &Store, now: OffsetDateTime) -> Result<Self, StoreError> {
        let set = Self::default();
        for entry in store.revoked_certificates(now).await? {
            set.insert(entry.serial.as_str());
        }
        Ok(set)
    }

    /// Adds a serial, written in any form [`CertificateSerial`] parses.
    /// Returns whether it was new. A serial that does not parse is stored
    /// as given in lowercase.
    pub fn insert(&self, serial: &str) -> bool {
        let normalized = serial
            .parse::<CertificateSerial>()
            .map(|parsed| parsed.as_str().to_owned())
            .unwrap_or_else(|_| serial.to_ascii_lowercase());
        self.serials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(normalized)
    }

    /// Returns whether `serial`, in the form of
    /// [`VerifiedClient::serial`](super::verify::VerifiedClient::serial),
    /// is revoked.
    pub fn contains(&self, serial: &str) -> bool {
        self.serials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(serial)
    }

    /// Returns the number of serials.
    pub fn len(&self) -> usize {
        self.serials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Returns whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_normalizes_serials() {
        let set = RevokedSerials::default();

        assert!(set.insert("00:9A:01"));
        assert!(!set.insert("9a01"));

        assert!(set.contains("9a01"));
        assert!(!set.contains("009a01"));
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn unknown_serial_not_revoked() {
        let set = RevokedSerials::default();
        set.insert("0102");

        assert!(!set.contains("0103"));
        assert!(!set.is_empty());
    }
}
