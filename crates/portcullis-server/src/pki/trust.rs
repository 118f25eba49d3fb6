//! The listener's client certificate trust: the rustls configuration that
//! requests client certificates, rebuilt when trust or revocations change.
//!
//! The handshake's [`HandshakeVerifier`] takes its trust anchors and CRLs
//! when it is built. So [`ClientCertificateTrust`] keeps the current configuration
//! in an [`ArcSwap`] that the listener reads at each accept, and
//! [`ClientCertificateTrust::maintain`] builds a new one after a revocation
//! or a change to the trusted partner CAs (both reported by the change
//! feed), within [`CRL_FILE_CHECK_INTERVAL`] of a change to a CRL file, or
//! when its poll finds a new internal CA. Each snapshot has a generation number, and
//! the request path verifies a connection's chain again when the generation
//! changed since its verdict (see [`super::presented::client_certificate`]).
//! [`RevokedSerials`] is also checked on every request, so an internal
//! revocation reaches open connections before the rebuild.
//!
//! Trust anchors are the internal CA (once `portcullis ca init` has run) and
//! every partner CA trusted for any tenant. CRLs are the internal CA's CRL,
//! the files in `server.partner_crls` and the CRL files stored with each
//! trusted partner CA. The handshake decides with [`verify_client_chain`]
//! too, so the handshake and the verdict agree on revocation. When any CRL
//! is configured, every certificate below the trust anchor must be covered
//! by one of them, and a CRL past its nextUpdate rejects the chain. A
//! partner CA therefore needs a CRL file once the internal CA exists, unless
//! the operator trusted it with `--no-crl`.
//!
//! A CRL file that cannot be read or parsed after the start keeps the CRLs
//! of its last good read, and the failure is logged once per change of the
//! file. A CRL file of a trusted partner CA that was never read contributes
//! no CRL, so that CA's certificates are rejected as `revocation_unknown`. The internal CRL is signed again at every rebuild
//! that finds it older than [`super::ca::CRL_REFRESH`], and a rebuild runs
//! at least every [`TRUST_POLL_INTERVAL`].

use std::collections::HashMap;
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
    /// A file of `server.partner_crls` could not be read or parsed at start.
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
    /// Each anchor certificate, its owner, and whether the owner accepts
    /// its certificates without a revocation check.
    roots: Vec<(CertificateDer<'static>, AnchorOwner, bool)>,
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
    /// The CRL files of the last build: `server.partner_crls`, then those
    /// of the trusted partner CAs.
    crl_files: Mutex<CrlFiles>,
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
        let mut trust = Self {
            mode,
            base: base.clone(),
            partner_crls,
            store,
            ca,
            crl_files: Mutex::new(CrlFiles::default()),
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

    /// Schedules a rebuild after the change feed reported that a trusted
    /// partner CA was added, changed or removed.
    pub fn trusted_cas_changed(&self) {
        self.rebuild.notify_one();
    }

    /// Records a revoked serial from the change feed and, when it is new,
    /// schedules a rebuild so that new handshakes see the new CRL.
    pub fn certificate_revoked(&self, serial: &str) {
        if self.revoked.insert(serial) {
            self.rebuild.notify_one();
        }
    }

    /// Rebuilds the configuration until `shutdown`: at once after a
    /// revocation or a change to the trusted CAs, within
    /// [`CRL_FILE_CHECK_INTERVAL`] after a CRL file changed, otherwise every [`TRUST_POLL_INTERVAL`], and at most once
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

    /// Completes once a CRL file of the last build has a modification time
    /// or size other than when the build read it, checking every
    /// [`CRL_FILE_CHECK_INTERVAL`].
    ///
    /// NOTE: a file rewritten with the same size within the file system's
    /// timestamp granularity looks unchanged, and waits for the next poll.
    async fn crl_file_changed(&self) {
        loop {
            tokio::time::sleep(CRL_FILE_CHECK_INTERVAL).await;
            let read = lock(&self.crl_files).stamps();
            for (path, stamp) in read {
                if read_file_stamp(&path).await != stamp {
                    return;
                }
            }
        }
    }

    async fn build(&self, now: OffsetDateTime) -> Result<TrustSnapshot, TrustError> {
        let mut roots = Vec::new();
        let mut crls = Vec::new();
        match self.ca.ca_pem().await {
            Ok(pem) => {
                let certificate = parse_certificate("the internal CA", &pem)?;
                roots.push((certificate, AnchorOwner::InternalCa, false));
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
        let partners = self.store.list_trusted_cas(None).await?;
        for partner in &partners {
            let certificate = parse_certificate(&partner.subject, &partner.certificate_pem)?;
            let owner = AnchorOwner::Partner {
                tenant_id: partner.tenant_id,
            };
            roots.push((certificate, owner, partner.revocation_unchecked));
        }
        {
            let mut files = lock(&self.crl_files);
            files.begin_build();
            for (index, path) in self.partner_crls.iter().enumerate() {
                match files.read(path) {
                    Ok(found) => crls.extend(found),
                    // Only the first build stops here: later ones keep the
                    // CRLs of the last good read (see the module docs).
                    Err(message) => {
                        return Err(TrustError::PartnerCrl {
                            index,
                            path: path.clone(),
                            message,
                        });
                    }
                }
            }
            for partner in &partners {
                for path in &partner.crl_files {
                    // A file that was never read is logged by `read` and
                    // adds no CRL, which fails closed for this CA only.
                    if let Ok(found) = files.read(Path::new(path)) {
                        crls.extend(found);
                    }
                }
            }
        }

        if roots.is_empty() && self.mode == ClientCertificateMode::Required {
            return Err(TrustError::NoTrustAnchor);
        }

        let anchors =
            TrustAnchors::from_owned_certificates_with_revocation(&roots).map_err(|error| {
                TrustError::InvalidCa {
                    name: format!("number {}", error.index),
                    message: error.detail,
                }
            })?;
        let mut store = RootCertStore::empty();
        for (root, _, _) in &roots {
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

/// Reads the stamp of a file, `None` for a file that cannot be read, so
/// that a file that appears or disappears counts as changed.
async fn read_file_stamp(path: &Path) -> Option<FileStamp> {
    tokio::fs::metadata(path)
        .await
        .ok()
        .map(|metadata| FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
}

/// The CRL files that builds read, with the CRLs of each file's last good
/// read.
#[derive(Default)]
struct CrlFiles {
    files: HashMap<PathBuf, CrlFile>,
    /// The files that the current or last build read, in order.
    read_in_build: Vec<PathBuf>,
}

/// One CRL file as [`CrlFiles`] last saw it.
#[derive(Default)]
struct CrlFile {
    /// The stamp read just before the file's contents, so that a change
    /// during the read shows at the next check.
    stamp: Option<FileStamp>,
    /// The CRLs of the last read that succeeded.
    crls: Option<Vec<CertificateRevocationListDer<'static>>>,
    /// The stamp of the last failed read that was logged.
    failure_logged: Option<Option<FileStamp>>,
}

impl CrlFiles {
    /// Forgets which files the previous build read.
    fn begin_build(&mut self) {
        self.read_in_build.clear();
    }

    /// Reads one CRL file for the current build. A failure is logged once
    /// per stamp and returns the CRLs of the last good read, or the
    /// failure when the file was never read.
    fn read(&mut self, path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
        let stamp = std::fs::metadata(path).ok().map(|metadata| FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        });
        if !self.read_in_build.iter().any(|read| read == path) {
            self.read_in_build.push(path.to_path_buf());
        }
        let file = self.files.entry(path.to_path_buf()).or_default();
        file.stamp = stamp;
        match read_crl_file(path) {
            Ok(crls) => {
                file.crls = Some(crls.clone());
                file.failure_logged = None;
                Ok(crls)
            }
            Err(message) => {
                if file.failure_logged != Some(stamp) {
                    file.failure_logged = Some(stamp);
                    tracing::error!(
                        path = %path.display(),
                        error = %message,
                        kept_previous = file.crls.is_some(),
                        "reading a CRL file failed; the CRLs of its last good read are kept, \
                         and without one the CA's certificates are rejected as \
                         revocation_unknown"
                    );
                }
                file.crls.clone().ok_or(message)
            }
        }
    }

    /// Returns the files of the last build with the stamps read then.
    fn stamps(&self) -> Vec<(PathBuf, Option<FileStamp>)> {
        self.read_in_build
            .iter()
            .map(|path| {
                let stamp = self.files.get(path).and_then(|file| file.stamp);
                (path.clone(), stamp)
            })
            .collect()
    }
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

/// Reads every CRL in one PEM file.
pub(crate) fn read_crl_file(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|error| format!("failed to read: {error}"))?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("invalid PEM: {error}"))?;
    if crls.is_empty() {
        return Err(
            "no CRL found; expected PEM blocks starting with -----BEGIN X509 CRL-----".to_owned(),
        );
    }
    Ok(crls)
}
