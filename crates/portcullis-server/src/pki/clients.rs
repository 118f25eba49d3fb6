//! The OAuth client that a client certificate authenticates when the
//! request names no client, as on gateway routes with `auth = ["mtls"]`.
//!
//! A certificate seen before is mapped without a store round trip, because
//! the outcome is cached by the leaf's SHA-256 thumbprint. On a miss the
//! candidates come from the store:
//!
//! - internal CA: the client that the CA's record for the serial names;
//! - partner CA: the live `tls_client_auth` clients of the tenants that
//!   trust the anchor;
//! - self-signed: the live `self_signed_tls_client_auth` clients of every
//!   tenant, searched only when the leaf's public key is one of the keys
//!   that such clients registered.
//!
//! Each candidate is then held to the rules of the token endpoint
//! ([`super::identity`]). A certificate that authenticates two clients is
//! rejected as ambiguous, because picking one would be a guess.
//!
//! The change feed calls [`CertificateClients::invalidate_all`] for every
//! change that names a client or a certificate. The whole cache goes,
//! because a new client can make a cached mapping ambiguous. Entries are
//! also not used once they are [`MAX_ENTRY_AGE`] old, when the anchor of the
//! chain has changed, or while the feed is stale.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_core::ids::ClientId;
use portcullis_core::oauth::{ClientAuthMethod, ClientRecord};
use portcullis_core::pki::{CertificateRecord, CertificateSerial};
use portcullis_store::{Store, StoreError};
use quick_cache::sync::Cache;
use time::OffsetDateTime;

use super::identity::{check_self_signed, check_tls_client_auth};
use super::trust::ClientCertificateTrust;
use super::verify::{AnchorOwner, VerifiedClient};
use crate::listener::ClientCertificate;

/// Number of certificates whose outcome is cached.
pub const CAPACITY: usize = 10_000;

/// Age after which an entry is looked up again. The change feed drops
/// entries within a poll interval, and this age is a backstop for a lost
/// change notice.
pub const MAX_ENTRY_AGE: Duration = Duration::from_secs(300);

/// The reason a certificate authenticates no client. [`Self::code`] is the code of
/// the 401 and of the failure's audit record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unmapped {
    /// No live client is registered for the certificate.
    #[error("no live OAuth client is registered for this client certificate")]
    NoClient,
    /// Two or more live clients are registered for the certificate.
    #[error("the client certificate matches {} OAuth clients", .0.len())]
    Ambiguous(Vec<ClientId>),
}

impl Unmapped {
    /// Returns the stable snake_case code.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::NoClient => "certificate_not_registered",
            Self::Ambiguous(_) => "certificate_ambiguous",
        }
    }
}

/// An error from [`CertificateClients::client_for`].
#[derive(Debug, thiserror::Error)]
pub enum CertificateClientError {
    /// The certificate authenticates no single client.
    #[error(transparent)]
    Unmapped(#[from] Unmapped),
    /// The store could not be read.
    #[error("looking up the client of a certificate failed")]
    Store(#[from] StoreError),
}

#[derive(Clone)]
struct Entry {
    outcome: Result<Arc<ClientRecord>, Unmapped>,
    /// The anchor of the chain when the entry was stored, `None` for a
    /// chain that did not verify (a registered self-signed certificate).
    anchor: Option<AnchorOwner>,
    generation: u64,
    loaded_at: Instant,
}

/// The cache from certificate thumbprints to OAuth clients.
pub struct CertificateClients {
    by_thumbprint: Cache<String, Entry>,
    /// Counts [`Self::invalidate_all`] calls, so that a lookup that began
    /// before one does not store what it read.
    generation: AtomicU64,
}

impl Default for CertificateClients {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl CertificateClients {
    /// Creates an empty cache of at most `capacity` certificates.
    pub fn new(capacity: usize) -> Self {
        Self {
            by_thumbprint: Cache::new(capacity),
            generation: AtomicU64::new(0),
        }
    }

    /// Drops every entry, for a change to a client or a certificate.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.by_thumbprint.clear();
    }

    /// Finds the one live client that `certificate` authenticates at `now`.
    ///
    /// `feed_current` is whether the change feed was read recently. When it
    /// was not, the cache is bypassed and the store decides.
    ///
    /// # Errors
    ///
    /// [`Unmapped`] when no client or several clients match, and
    /// [`StoreError`] when the store cannot be read.
    pub async fn client_for(
        &self,
        store: &Store,
        trust: Option<&ClientCertificateTrust>,
        certificate: &ClientCertificate,
        feed_current: bool,
        now: OffsetDateTime,
    ) -> Result<Arc<ClientRecord>, CertificateClientError> {
        let anchor = certificate
            .verified()
            .map(|verified| verified.anchor.clone());
        let generation = self.generation.load(Ordering::Acquire);
        if feed_current
            && let Some(entry) = self.by_thumbprint.get(&certificate.thumbprint_sha256)
            && entry.generation == generation
            && entry.anchor == anchor
            && entry.loaded_at.elapsed() < MAX_ENTRY_AGE
        {
            return still_valid(entry.outcome, certificate, now);
        }

        let loaded_at = Instant::now();
        let outcome = match find_clients(store, trust, certificate, now)
            .await?
            .as_slice()
        {
            [] => Err(Unmapped::NoClient),
            [client] => Ok(Arc::new(client.clone())),
            several => {
                let ids: Vec<ClientId> = several.iter().map(|client| client.id).collect();
                tracing::warn!(
                    thumbprint = %certificate.thumbprint_sha256,
                    clients = ?ids,
                    "a client certificate matches several OAuth clients; rejecting it"
                );
                Err(Unmapped::Ambiguous(ids))
            }
        };
        if self.generation.load(Ordering::Acquire) == generation {
            self.by_thumbprint.insert(
                certificate.thumbprint_sha256.clone(),
                Entry {
                    outcome: outcome.clone(),
                    anchor,
                    generation,
                    loaded_at,
                },
            );
        }
        outcome.map_err(CertificateClientError::from)
    }
}

/// Checks a cached outcome again where time decides it: a self-signed
/// certificate is held to its own validity period, which no CA checks.
fn still_valid(
    outcome: Result<Arc<ClientRecord>, Unmapped>,
    certificate: &ClientCertificate,
    now: OffsetDateTime,
) -> Result<Arc<ClientRecord>, CertificateClientError> {
    let client = outcome?;
    if client.auth_method == ClientAuthMethod::SelfSignedTlsClientAuth
        && check_self_signed(&client, certificate.leaf(), now).is_err()
    {
        return Err(Unmapped::NoClient.into());
    }
    Ok(client)
}

/// Collects the live clients that `certificate` authenticates, each once.
async fn find_clients(
    store: &Store,
    trust: Option<&ClientCertificateTrust>,
    certificate: &ClientCertificate,
    now: OffsetDateTime,
) -> Result<Vec<ClientRecord>, StoreError> {
    let leaf = certificate.leaf().as_ref();
    let mut found: Vec<ClientRecord> = Vec::new();
    let mut keep = |client: ClientRecord| {
        if !found.iter().any(|known| known.id == client.id) {
            found.push(client);
        }
    };

    if let Ok(verified) = &certificate.verdict {
        let issued_to = internal_ca_client(store, certificate, verified).await?;
        if let Some(client_id) = issued_to
            && let Some(client) = store.find_client(client_id).await?
            && client.revoked_at.is_none()
            && check_tls_client_auth(&client, leaf, verified, issued_to).is_ok()
        {
            keep(client);
        }
        for owner in verified.anchor.owners() {
            let AnchorOwner::Partner { tenant_id } = owner else {
                continue;
            };
            for client in store.list_clients(*tenant_id).await? {
                if client.revoked_at.is_none()
                    && check_tls_client_auth(&client, leaf, verified, issued_to).is_ok()
                {
                    keep(client);
                }
            }
        }
    }

    let key_registered =
        trust.is_some_and(|trust| trust.self_signed_keys().accepts(certificate.leaf()));
    // NOTE: this reads every client of every tenant, on a cache miss for a
    // certificate whose key some self-signed client registered. That is
    // fine for hundreds of clients; many thousands would need a store
    // index by key.
    if key_registered {
        for tenant in store.list_tenants().await? {
            for client in store.list_clients(tenant.id).await? {
                if client.revoked_at.is_none() && check_self_signed(&client, leaf, now).is_ok() {
                    keep(client);
                }
            }
        }
    }
    Ok(found)
}

/// Returns the client that the internal CA issued a verified certificate
/// to, from the CA's record of the serial, when the chain ended at the
/// internal CA and the record's SHA-256 is this certificate's and it is
/// not revoked.
pub(crate) async fn internal_ca_client(
    store: &Store,
    certificate: &ClientCertificate,
    verified: &VerifiedClient,
) -> Result<Option<ClientId>, StoreError> {
    let record = internal_ca_record(store, certificate, verified).await?;
    Ok(record
        .filter(|record| record.revoked_at.is_none())
        .map(|record| record.client_id))
}

/// Returns whether the internal CA's record of a verified certificate marks
/// it as revoked. The store records a revocation before the change feed
/// brings it to the listener, so a request in between gets
/// `certificate_revoked` rather than a message that it authenticates no client.
pub(crate) async fn revoked_by_internal_ca(
    store: &Store,
    certificate: &ClientCertificate,
    verified: &VerifiedClient,
) -> Result<bool, StoreError> {
    let record = internal_ca_record(store, certificate, verified).await?;
    Ok(record.is_some_and(|record| record.revoked_at.is_some()))
}

/// Finds the internal CA's record of a verified certificate, when the chain
/// ended at the internal CA and the record's SHA-256 is this certificate's.
async fn internal_ca_record(
    store: &Store,
    certificate: &ClientCertificate,
    verified: &VerifiedClient,
) -> Result<Option<CertificateRecord>, StoreError> {
    if !verified.anchor.includes_internal_ca() {
        return Ok(None);
    }
    let Ok(serial) = verified.serial.parse::<CertificateSerial>() else {
        return Ok(None);
    };
    let Some(record) = store.find_certificate(&serial).await? else {
        return Ok(None);
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate.leaf());
    let thumbprint: String = digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((record.sha256 == thumbprint).then_some(record))
}
