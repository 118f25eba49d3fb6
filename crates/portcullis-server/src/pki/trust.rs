//! The listener's client certificate trust: the rustls configuration that
//! requests client certificates, rebuilt when trust or revocations change.
//!
//! The handshake's [`HandshakeVerifier`] takes its trust anchors and CRLs
//! when it is built. So [`ClientCertificateTrust`] keeps the current configuration
//! in an [`ArcSwap`] that the listener reads at each accept, and
//! [`ClientCertificateTrust::maintain`] builds a new one after a revocation,
//! within [`CRL_FILE_CHECK_INTERVAL`] of a change to a partner CRL file, or
//! when its poll finds a new CA. Each snapshot has a generation number, and
//! the request path verifies a connection's chain again when the generation
//! changed since its verdict (see [`super::presented::client_certificate`]).
//! [`RevokedSerials`] is also checked on every request, so an internal
//! revocation reaches open connections before the rebuild.
//!
//! Trust anchors are the internal CA (once `portcullis ca init` has run) and
//! every partner CA trusted for any tenant. CRLs are the internal CA's CRL
//! and the files in `server.partner_crls`. The handshake decides with
//! [`verify_client_chain`] too, so the handshake and the verdict agree on
//! revocation: when any CRL is configured, every certificate below the trust
//! anchor must be covered by one of them, and a CRL past its nextUpdate
//! rejects the chain. A partner CA therefore needs its CRL file once the
//! internal CA exists. The internal CRL is signed again at every rebuild
//! that finds it older than [`super::ca::CRL_REFRESH`], and a rebuild runs
//! at least every [`TRUST_POLL_INTERVAL`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use portcullis_store::Store;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ca::{CaError, CertificateAuthority};
use super::handshake::{HandshakeVerifier, SelfSignedKeys};
use super::revoked::RevokedSerials;
use super::verify::{AnchorOwner, Rejection, TrustAnchors, VerifiedClient, verify_client_chain};
use crate::config::ClientCertificateMode;

/// Minimum time between two rebuilds, so a burst of revocations costs one
/// rebuild per second at most.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// Time between two rebuilds when the change feed reports nothing and no
/// partner CRL file changed. The feed reports revocations only, so this is
/// how a new internal or partner CA reaches new handshakes. It also keeps
/// the internal CRL signed well before its nextUpdate.
pub const TRUST_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Time between two checks of the modification time and size of the files
/// in `server.partner_crls`. A changed file triggers a rebuild.
pub const CRL_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Error that prevents building the client certificate trust.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// `required` with no CA to verify certificates against.
    #[error(
        "server.client_certificates = \"required\" but no CA is trusted: run `portcullis ca \
         init`, or add a partner CA with `portcullis ca trust add --tenant NAME FILE`"
    )]
    NoTrustAnchor,
    /// A partner CRL file could not be read or parsed.
    #[error("server.partner_crls[{index}]: {}: {message}", path.display())]
    PartnerCrl {
        /// Position of the file in `server.partner_crls`, from 0.
        index: usize,
        /// The file.
        path: PathBuf,
        /// The failure.
        message: String,
    },
    /// A stored CA certificate could not be parsed.
    #[error("invalid trusted CA certificate {name}: {message}")]
    InvalidCa {
        /// The internal CA, or the partner CA's subject.
        name: String,
        /// The failure.
        message: String,
    },
    /// The internal CA or the store failed.
    #[error("failed to read the internal CA: {0}")]
    Ca(#[from] CaError),
    /// The store failed.
    #[error("failed to read the trusted CAs: {0}")]
    Store(#[from] portcullis_store::StoreError),
    /// rustls rejected the verifier or the configuration.
    #[error("failed to build the TLS client certificate verifier: {0}")]
    Rustls(String),
}

/// One built configuration with the anchors and CRLs it verifies against,
/// so that [`verify_client_chain`] can repeat the handshake's check.
pub struct TrustSnapshot {
    /// The rustls configuration for new handshakes, or `None` for a trust
    /// that only verifies forwarded certificates.
    pub server_config: Option<Arc<rustls::ServerConfig>>,
    /// Number of this snapshot, from 0 at start and one higher at each
    /// rebuild that changed the anchors or CRLs.
    pub generation: u64,
    roots: Vec<(CertificateDer<'static>, AnchorOwner)>,
    anchors: TrustAnchors,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

impl TrustSnapshot {
    /// Verifies the chain a client presented in a handshake under this
    /// snapshot, to describe its leaf.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] when the chain fails: with `optional` for any
    /// untrusted certificate, with `required` for a registered self-signed
    /// certificate or one that expired since the handshake.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<VerifiedClient, Rejection> {
        let verdict = verify_client_chain(chain, &self.anchors, &self.crls, UnixTime::now());
        if let Some(metrics) = crate::metrics::get() {
            metrics.record_certificate_verification(verdict.as_ref().err().map(Rejection::code));
        }
        verdict
    }
}

/// The client certificate trust of one listener.
pub struct ClientCertificateTrust {
    mode: ClientCertificateMode,
    base: Option<Arc<rustls::ServerConfig>>,
    partner_crls: Vec<PathBuf>,
    store: Store,
    ca: Arc<CertificateAuthority>,
    /// Modification time and size of each partner CRL file, as read before
    /// the last build.
    crl_file_stamps: Mutex<Vec<Option<FileStamp>>>,
    current: ArcSwap<TrustSnapshot>,
    revoked: RevokedSerials,
    self_signed: SelfSignedKeys,
    rebuild: Notify,
}

impl ClientCertificateTrust {
    /// Builds the first configuration and loads the revoked serials.
    ///
    /// `base` is the listener's configuration without client certificates.
    /// Its certificate and ALPN protocols are kept in every rebuild. Without
    /// `base`, no rustls configuration is built, and the trust only
    /// verifies certificates forwarded by a proxy.
    ///
    /// # Errors
    ///
    /// [`TrustError::NoTrustAnchor`] for `required` without any CA, and the
    /// errors of reading the CAs, the CRLs and the partner CRL files.
    pub async fn start(
        mode: ClientCertificateMode,
        base: Option<Arc<rustls::ServerConfig>>,
        partner_crls: Vec<PathBuf>,
        store: Store,
        ca: Arc<CertificateAuthority>,
    ) -> Result<Self, TrustError> {
        let now = OffsetDateTime::now_utc();
        let revoked = RevokedSerials::load(&store, now).await?;
        let crl_file_stamps = Mutex::new(read_file_stamps(&partner_crls).await);
        let mut trust = Self {
            mode,
            base: base.clone(),
            partner_crls,
            store,
            ca,
            crl_file_stamps,
            current: ArcSwap::from_pointee(TrustSnapshot {
                server_config: base,
                generation: 0,
                roots: Vec::new(),
                anchors: TrustAnchors::default(),
                crls: Vec::new(),
            }),
            revoked,
            self_signed: SelfSignedKeys::default(),
            rebuild: Notify::new(),
        };
        let snapshot = trust.build(now).await?;
        trust.current = ArcSwap::from_pointee(snapshot);
        Ok(trust)
    }

    /// Returns the current anchors, CRLs and configuration.
    pub fn snapshot(&self) -> Arc<TrustSnapshot> {
        self.current.load_full()
    }

    /// Returns the generation of the current snapshot, without taking a
    /// reference to it.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// Returns the serials of revoked certificates.
    pub fn revoked(&self) -> &RevokedSerials {
        &self.revoked
    }

    /// Returns the listener's mode.
    pub fn mode(&self) -> ClientCertificateMode {
        self.mode
    }

    /// Returns whether `chain` is a single self-signed certificate whose
    /// public key is in [`Self::self_signed_keys`].
    pub fn accepts_self_signed(&self, chain: &[CertificateDer<'_>]) -> bool {
        match chain {
            [certificate] => self.self_signed.accepts(certificate),
            _ => false,
        }
    }

    /// Returns the public keys of self-signed certificates that `required`
    /// accepts without a chain. Setting them reaches the next handshake.
    pub fn self_signed_keys(&self) -> &SelfSignedKeys {
        &self.self_signed
    }

    /// Records a revoked serial from the change feed and, when it is new,
    /// schedules a rebuild so that new handshakes see the new CRL.
    pub fn certificate_revoked(&self, serial: &str) {
        if self.revoked.insert(serial) {
            self.rebuild.notify_one();
        }
    }

    /// Rebuilds the configuration until `shutdown`: at once after a
    /// revocation, within [`CRL_FILE_CHECK_INTERVAL`] after a partner CRL
    /// file changed, otherwise every [`TRUST_POLL_INTERVAL`], and at most once
    /// per [`MIN_REBUILD_INTERVAL`]. A rebuild that finds the same CAs and CRLs
    /// keeps the current configuration, and with it the TLS session cache
    /// and the generation. A failed rebuild keeps the previous configuration
    /// and is logged.
    pub async fn maintain(self: Arc<Self>, shutdown: CancellationToken) {
        let mut next_poll = tokio::time::Instant::now() + TRUST_POLL_INTERVAL;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.rebuild.notified() => {}
                () = tokio::time::sleep_until(next_poll) => {}
                () = self.crl_file_changed() => {}
            }
            next_poll = tokio::time::Instant::now() + TRUST_POLL_INTERVAL;
            self.rebuild().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(MIN_REBUILD_INTERVAL) => {}
            }
        }
    }

    /// Builds a snapshot and makes it current, with the next generation,
    /// when its anchors or CRLs differ from the current one. A failure is
    /// logged and keeps the current snapshot.
    pub(crate) async fn rebuild(&self) {
        // Read before the build, so that a file replaced during the build
        // shows as changed at the next check.
        let stamps = read_file_stamps(&self.partner_crls).await;
        *lock(&self.crl_file_stamps) = stamps;
        match self.build(OffsetDateTime::now_utc()).await {
            Ok(mut snapshot) => {
                let current = self.current.load();
                if snapshot.roots != current.roots || snapshot.crls != current.crls {
                    snapshot.generation = current.generation + 1;
                    tracing::info!(
                        trust_anchors = snapshot.roots.len(),
                        crls = snapshot.crls.len(),
                        generation = snapshot.generation,
                        "client certificate trust rebuilt"
                    );
                    self.current.store(Arc::new(snapshot));
                }
            }
            Err(error) => tracing::error!(
                error = %error,
                "rebuilding the client certificate trust failed; new handshakes keep \
                 the previous CAs and CRLs"
            ),
        }
    }

    /// Completes once a file in `server.partner_crls` has a modification
    /// time or size other than at the last build, checking every
    /// [`CRL_FILE_CHECK_INTERVAL`]. Never completes without partner CRLs.
    ///
    /// NOTE: a file rewritten with the same size within the file system's
    /// timestamp granularity looks unchanged, and waits for the next poll.
    async fn crl_file_changed(&self) {
        if self.partner_crls.is_empty() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(CRL_FILE_CHECK_INTERVAL).await;
            let stamps = read_file_stamps(&self.partner_crls).await;
            if *lock(&self.crl_file_stamps) != stamps {
                return;
            }
        }
    }

    async fn build(&self, now: OffsetDateTime) -> Result<TrustSnapshot, TrustError> {
        let mut roots = Vec::new();
        let mut crls = Vec::new();
        match self.ca.ca_pem().await {
            Ok(pem) => {
                let certificate = parse_certificate("the internal CA", &pem)?;
                roots.push((certificate, AnchorOwner::InternalCa));
                let crl = self.ca.crl(now).await?;
                crls.push(parse_crl(&crl).map_err(|message| TrustError::InvalidCa {
                    name: "the internal CA's CRL".to_owned(),
                    message,
                })?);
            }
            Err(CaError::NotInitialized) => {}
            Err(error) => return Err(error.into()),
        }
        // One entry per trust record, so a CA trusted for two tenants is
        // owned by both (see `TrustAnchors`).
        for partner in self.store.list_trusted_cas(None).await? {
            let certificate = parse_certificate(&partner.subject, &partner.certificate_pem)?;
            let owner = AnchorOwner::Partner {
                tenant_id: partner.tenant_id,
            };
            roots.push((certificate, owner));
        }
        for (index, path) in self.partner_crls.iter().enumerate() {
            crls.extend(read_crl_file(index, path)?);
        }

        if roots.is_empty() && self.mode == ClientCertificateMode::Required {
            return Err(TrustError::NoTrustAnchor);
        }

        let anchors = TrustAnchors::from_owned_certificates(&roots).map_err(|error| {
            TrustError::InvalidCa {
                name: format!("number {}", error.index),
                message: error.detail,
            }
        })?;
        let mut store = RootCertStore::empty();
        for (root, _) in &roots {
            store
                .add(root.clone())
                .map_err(|error| TrustError::Rustls(error.to_string()))?;
        }
        // `optional` requests a certificate even without any CA, because a
        // self-signed certificate of an RFC 8705 §2.2 client needs none.
        let verifier = HandshakeVerifier::new(
            self.mode == ClientCertificateMode::Required,
            anchors.clone(),
            crls.clone(),
            store.subjects(),
            self.self_signed.clone(),
        );

        let server_config = match &self.base {
            Some(base) => {
                let mut config =
                    rustls::ServerConfig::builder_with_provider(crate::tls::provider())
                        .with_safe_default_protocol_versions()
                        .map_err(|error| TrustError::Rustls(error.to_string()))?
                        .with_client_cert_verifier(Arc::new(verifier))
                        .with_cert_resolver(Arc::clone(&base.cert_resolver));
                config.alpn_protocols = base.alpn_protocols.clone();
                Some(Arc::new(config))
            }
            None => None,
        };

        Ok(TrustSnapshot {
            server_config,
            generation: 0,
            roots,
            anchors,
            crls,
        })
    }
}

/// The modification time and size of a file, to notice that it changed
/// without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// Reads the stamp of each file, `None` for a file that cannot be read, so
/// that a file that appears or disappears counts as changed.
async fn read_file_stamps(paths: &[PathBuf]) -> Vec<Option<FileStamp>> {
    let mut stamps = Vec::with_capacity(paths.len());
    for path in paths {
        let stamp = tokio::fs::metadata(path)
            .await
            .ok()
            .map(|metadata| FileStamp {
                modified: metadata.modified().ok(),
                len: metadata.len(),
            });
        stamps.push(stamp);
    }
    stamps
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_certificate(name: &str, pem: &str) -> Result<CertificateDer<'static>, TrustError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|error| TrustError::InvalidCa {
        name: name.to_owned(),
        message: format!("invalid PEM: {error}"),
    })
}

fn parse_crl(pem: &str) -> Result<CertificateRevocationListDer<'static>, String> {
    CertificateRevocationListDer::from_pem_slice(pem.as_bytes())
        .map_err(|error| format!("invalid PEM: {error}"))
}

/// Reads every CRL in one PEM file of `server.partner_crls`.
fn read_crl_file(
    index: usize,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TrustError> {
    let failed = |message: String| TrustError::PartnerCrl {
        index,
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|error| failed(format!("failed to read: {error}")))?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| failed(format!("invalid PEM: {error}")))?;
    if crls.is_empty() {
        return Err(failed(
            "no CRL found; expected PEM blocks starting with -----BEGIN X509 CRL-----".to_owned(),
        ));
    }
    Ok(crls)
}
