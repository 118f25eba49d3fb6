//! The listener's TLS configuration: the operator's certificate files, or a
//! development CA and server certificate that Portcullis creates itself.
//!
//! Development mode keeps three files in `DATA_DIR/tls/`: `ca.pem` (the CA
//! certificate that clients trust), `server.pem` and `server-key.pem`. They
//! are created at the first start, and created again whenever one is
//! missing, they do not fit together, or the server certificate expires
//! within [`RENEW_BEFORE`]. The CA's private key is never written: it signs
//! the one server certificate and is then dropped, so nobody, Portcullis
//! included, can issue another certificate under a CA that developers have
//! told their clients to trust. Renewal therefore creates a new CA too.
//!
//! Nothing here installs a process-wide crypto provider: each configuration
//! gets aws-lc-rs explicitly, so tests need no global state.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

use crate::config::TlsMode;

/// Folder of the development certificates inside the data directory.
pub const DEVELOPMENT_DIR: &str = "tls";
/// Development CA certificate, for clients to trust.
pub const CA_FILE: &str = "ca.pem";
/// Development server certificate.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// Development server private key (mode 0600).
pub const SERVER_KEY_FILE: &str = "server-key.pem";

/// Common name of the development CA, as shown by certificate viewers.
pub const CA_COMMON_NAME: &str = "Portcullis development CA";

/// Lifetime of the development CA: 10 years, so a CA that developers added
/// to a trust store outlives many server certificates.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);

/// Lifetime of the development server certificate: 397 days, within the
/// 398-day maximum that Apple platforms and the CA/Browser Forum Baseline
/// Requirements set for TLS server certificates issued since September 2020.
const SERVER_VALIDITY: time::Duration = time::Duration::days(397);

/// The development certificates are created again when the server
/// certificate expires within this time, so a long-running server does not
/// reach the expiry date unnoticed.
pub const RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// How far `not_before` lies in the past, so a client whose clock is a
/// little behind still accepts a certificate created just now.
const CLOCK_SKEW_ALLOWANCE: time::Duration = time::Duration::hours(1);

/// Names the development server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// ALPN protocols offered, in order of preference. `http/1.0` is listed so
/// that a client offering only it gets HTTP rather than a failed handshake
/// (RFC 7301 §3.2 requires the server to end a handshake whose ALPN offer it
/// cannot meet).
const ALPN_PROTOCOLS: [&[u8]; 3] = [b"h2", b"http/1.1", b"http/1.0"];

/// Source of the certificate that the listener presents, for the start-up
/// log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Development certificates that already existed in `DATA_DIR/tls/`.
    DevelopmentLoaded {
        /// The development CA certificate, for clients to trust.
        ca: PathBuf,
    },
    /// Development certificates created at this start.
    DevelopmentCreated {
        /// The development CA certificate, for clients to trust.
        ca: PathBuf,
        /// The reason they were created.
        reason: CreationReason,
    },
    /// The operator's files from `[server.tls]`.
    Files {
        /// The certificate chain file.
        cert: PathBuf,
    },
}

impl TlsSource {
    /// Returns the development CA certificate's path, if the listener uses
    /// development certificates.
    pub fn development_ca(&self) -> Option<&Path> {
        match self {
            Self::DevelopmentLoaded { ca } | Self::DevelopmentCreated { ca, .. } => Some(ca),
            Self::Files { .. } => None,
        }
    }
}

/// Reason the development certificates were created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreationReason {
    /// At least one of the three files did not exist (the first start).
    Missing,
    /// The server certificate expired or expires within [`RENEW_BEFORE`].
    ExpiresSoon,
    /// The files exist but are unusable: unreadable, malformed, or not
    /// signed by the CA in `ca.pem`.
    Unusable(String),
}

impl fmt::Display for CreationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no development certificate existed"),
            Self::ExpiresSoon => write!(
                f,
                "the previous certificate expires within {} days",
                RENEW_BEFORE.whole_days()
            ),
            Self::Unusable(problem) => write!(f, "the previous files were unusable: {problem}"),
        }
    }
}

/// Error that prevents the listener from getting its TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A configured file does not exist.
    #[error("{}: file not found", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("failed to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{}: invalid PEM: {message}", path.display())]
    InvalidPem {
        /// The file.
        path: PathBuf,
        /// The PEM parser's message.
        message: String,
    },
    /// The certificate file contains no certificate.
    #[error(
        "{}: no certificate found; expected PEM blocks starting with \
         -----BEGIN CERTIFICATE-----",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file contains no private key.
    #[error(
        "{}: no private key found; expected a PEM block such as \
         -----BEGIN PRIVATE KEY-----",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key belongs to a different certificate.
    #[error(
        "private key {} does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls rejected the certificate or key for another reason.
    #[error(
        "certificate {} with key {} rejected: {source}",
        cert.display(),
        key.display()
    )]
    Rejected {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls error.
        source: rustls::Error,
    },
    /// A development certificate could not be generated.
    #[error("failed to generate the development certificate: {0}")]
    Generate(String),
    /// A development certificate file could not be written.
    #[error("failed to write {}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Builds the listener's rustls configuration for `mode`, or returns `None`
/// for plain HTTP. Development mode reads, or creates, the files in
/// `data_dir/tls/`.
pub fn server_config(
    mode: &TlsMode,
    data_dir: &Path,
) -> Result<Option<(Arc<rustls::ServerConfig>, TlsSource)>, TlsError> {
    server_config_at(mode, data_dir, OffsetDateTime::now_utc())
}

/// [`server_config`] with the current time passed in, so tests can check
/// renewal.
pub fn server_config_at(
    mode: &TlsMode,
    data_dir: &Path,
    now: OffsetDateTime,
) -> Result<Option<(Arc<rustls::ServerConfig>, TlsSource)>, TlsError> {
    match mode {
        TlsMode::PlainHttp => Ok(None),
        TlsMode::Files { cert, key } => {
            let chain = read_certificates(cert)?;
            let private_key = read_private_key(key)?;
            let config = build_config(chain, private_key, cert, key)?;
            Ok(Some((config, TlsSource::Files { cert: cert.clone() })))
        }
        TlsMode::Development => development_config(data_dir, now).map(Some),
    }
}

/// Paths of the three development files.
struct DevelopmentPaths {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl DevelopmentPaths {
    fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join(DEVELOPMENT_DIR);
        Self {
            ca: dir.join(CA_FILE),
            cert: dir.join(SERVER_CERT_FILE),
            key: dir.join(SERVER_KEY_FILE),
            dir,
        }
    }
}

fn development_config(
    data_dir: &Path,
    now: OffsetDateTime,
) -> Result<(Arc<rustls::ServerConfig>, TlsSource), TlsError> {
    let paths = DevelopmentPaths::new(data_dir);
    let reason = match load_development(&paths, now) {
        Ok(config) => {
            let source = TlsSource::DevelopmentLoaded { ca: paths.ca };
            return Ok((config, source));
        }
        Err(reason) => reason,
    };

    let serials = [random_serial()?, random_serial()?];
    let files = generate_development(now, serials)
        .map_err(|error| TlsError::Generate(error.to_string()))?;
    write_development(&paths, &files)?;

    let chain = read_certificates(&paths.cert)?;
    let private_key = read_private_key(&paths.key)?;
    let config = build_config(chain, private_key, &paths.cert, &paths.key)?;
    let source = TlsSource::DevelopmentCreated {
        ca: paths.ca,
        reason,
    };
    Ok((config, source))
}

/// Loads the existing development files, or returns why they must be
/// created again.
fn load_development(
    paths: &DevelopmentPaths,
    now: OffsetDateTime,
) -> Result<Arc<rustls::ServerConfig>, CreationReason> {
    if [&paths.ca, &paths.cert, &paths.key]
        .iter()
        .any(|path| !path.exists())
    {
        return Err(CreationReason::Missing);
    }
    let unusable = |error: TlsError| CreationReason::Unusable(error.to_string());

    let ca = read_certificates(&paths.ca).map_err(unusable)?;
    let chain = read_certificates(&paths.cert).map_err(unusable)?;
    let private_key = read_private_key(&paths.key).map_err(unusable)?;
    check_still_valid(&ca, &chain, now + RENEW_BEFORE)?;
    let config = build_config(chain, private_key, &paths.cert, &paths.key).map_err(unusable)?;

    // A copy or a restore from backup may have widened the permissions.
    for (path, mode) in [(&paths.dir, 0o700), (&paths.key, 0o600)] {
        set_mode(path, mode).map_err(|error| {
            CreationReason::Unusable(format!(
                "failed to restrict the permissions of {}: {error}",
                path.display()
            ))
        })?;
    }
    Ok(config)
}

/// Checks that `chain` verifies against `ca` for `localhost` as a client
/// would at `moment`. Verifying at a future moment catches a certificate
/// that will have expired by then.
fn check_still_valid(
    ca: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    moment: OffsetDateTime,
) -> Result<(), CreationReason> {
    let unusable = |message: String| CreationReason::Unusable(message);

    let mut roots = rustls::RootCertStore::empty();
    for certificate in ca {
        roots
            .add(certificate.clone())
            .map_err(|error| unusable(format!("{CA_FILE}: {error}")))?;
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|error| unusable(format!("{CA_FILE}: {error}")))?;

    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(unusable(format!(
            "{SERVER_CERT_FILE} contains no certificate"
        )));
    };
    let seconds = u64::try_from(moment.unix_timestamp()).unwrap_or(0);
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
    let name = ServerName::try_from("localhost")
        .map_err(|error| unusable(format!("invalid server name: {error}")))?;

    match verifier.verify_server_cert(end_entity, intermediates, &name, &[], at) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. },
        )) => Err(CreationReason::ExpiresSoon),
        Err(error) => Err(unusable(format!("{SERVER_CERT_FILE}: {error}"))),
    }
}

/// PEM text of a freshly generated development CA and server certificate.
struct DevelopmentFiles {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// Generates the development CA and server certificate, with the serial
/// numbers of the CA and the server certificate in that order.
fn generate_development(
    now: OffsetDateTime,
    serials: [SerialNumber; 2],
) -> Result<DevelopmentFiles, rcgen::Error> {
    let [ca_serial, server_serial] = serials;
    let not_before = now - CLOCK_SKEW_ALLOWANCE;

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = common_name(CA_COMMON_NAME);
    // Path length 0: the CA signs server certificates, never another CA.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = now + CA_VALIDITY;
    ca_params.serial_number = Some(ca_serial);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    // The issuer takes ownership of the CA key, and both are dropped at the
    // end of this function: the key exists only in memory and only for the
    // one signature below.
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let names: Vec<String> = SERVER_NAMES.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = common_name("localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = now + SERVER_VALIDITY;
    params.serial_number = Some(server_serial);
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&server_key, &issuer)?;

    Ok(DevelopmentFiles {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: server_key.serialize_pem(),
    })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

/// Returns 16 random bytes with the top bit clear, so the DER integer stays
/// positive and within the 20 octets RFC 5280 allows.
fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    portcullis_core::crypto::fill_random(&mut bytes)
        .map_err(|error| TlsError::Generate(format!("serial number: {error}")))?;
    if let Some(first) = bytes.first_mut() {
        *first &= 0x7f;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// Writes the development files: the folder with mode 0700, the key with
/// mode 0600. Each file is written under a temporary name and renamed, so
/// a crash leaves either the old file or the new one. A crash between two
/// files leaves a set that does not verify, which the next start replaces.
fn write_development(paths: &DevelopmentPaths, files: &DevelopmentFiles) -> Result<(), TlsError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(&paths.dir).map_err(write_error(&paths.dir))?;
    set_mode(&paths.dir, 0o700).map_err(write_error(&paths.dir))?;

    write_atomically(&paths.key, files.key_pem.as_bytes(), 0o600)
        .map_err(write_error(&paths.key))?;
    write_atomically(&paths.cert, files.cert_pem.as_bytes(), 0o644)
        .map_err(write_error(&paths.cert))?;
    write_atomically(&paths.ca, files.ca_pem.as_bytes(), 0o644).map_err(write_error(&paths.ca))
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);

    // A leftover temporary file may have wider permissions; the mode below
    // applies only to a file that open() creates.
    match std::fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    // NOTE: outside Unix the folder keeps the permissions it inherits.
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TlsError::NotFound {
            path: path.to_path_buf(),
        },
        _ => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Reads every certificate in a PEM file, in order.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::InvalidPem {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

/// Reads the first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        other => TlsError::InvalidPem {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a server configuration with rustls's safe default protocol
/// versions (TLS 1.2 and 1.3), no client certificates, and ALPN for HTTP/2
/// and HTTP/1.1.
fn build_config(
    chain: Vec<CertificateDer<'static>>,
    private_key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let rejected = |source: rustls::Error| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            }
        }
        source => TlsError::Rejected {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        },
    };

    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(rejected)?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn development(dir: &Path, now: OffsetDateTime) -> (Arc<rustls::ServerConfig>, TlsSource) {
        server_config_at(&TlsMode::Development, dir, now)
            .unwrap()
            .unwrap()
    }

    fn server_pem(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(DEVELOPMENT_DIR).join(SERVER_CERT_FILE)).unwrap()
    }

    #[test]
    fn plain_http_has_no_config() {
        let dir = tempfile::tempdir().unwrap();
        let result = server_config(&TlsMode::PlainHttp, dir.path()).unwrap();
        assert!(result.is_none());
    }

    #[test]
    fn development_created_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();

        let (config, source) = development(dir.path(), now);
        assert_eq!(
            source,
            TlsSource::DevelopmentCreated {
                ca: dir.path().join("tls/ca.pem"),
                reason: CreationReason::Missing,
            }
        );
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        );
        let first = server_pem(dir.path());

        let (_, source) = development(dir.path(), now + time::Duration::days(300));
        assert_eq!(
            source,
            TlsSource::DevelopmentLoaded {
                ca: dir.path().join("tls/ca.pem")
            }
        );
        assert_eq!(server_pem(dir.path()), first);
    }

    #[test]
    fn development_renewed_before_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        development(dir.path(), now);
        let first = server_pem(dir.path());

        let (_, source) = development(dir.path(), now + time::Duration::days(370));
        assert!(
            matches!(
                source,
                TlsSource::DevelopmentCreated {
                    reason: CreationReason::ExpiresSoon,
                    ..
                }
            ),
            "{source:?}"
        );
        assert_ne!(server_pem(dir.path()), first);
    }

    #[test]
    fn development_replaced_when_files_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        development(dir.path(), now);
        development(other.path(), now);
        std::fs::copy(
            other.path().join("tls/ca.pem"),
            dir.path().join("tls/ca.pem"),
        )
        .unwrap();

        let (_, source) = development(dir.path(), now);
        assert!(
            matches!(
                source,
                TlsSource::DevelopmentCreated {
                    reason: CreationReason::Unusable(_),
                    ..
                }
            ),
            "{source:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn development_file_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        development(dir.path(), OffsetDateTime::now_utc());
        let mode = |name: &str| {
            let path = dir.path().join(DEVELOPMENT_DIR).join(name);
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode(SERVER_KEY_FILE), 0o600);
        assert_eq!(mode(SERVER_CERT_FILE), 0o644);

        let key = dir.path().join(DEVELOPMENT_DIR).join(SERVER_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, source) = development(dir.path(), OffsetDateTime::now_utc());
        assert!(
            matches!(source, TlsSource::DevelopmentLoaded { .. }),
            "{source:?}"
        );
        assert_eq!(
            mode(SERVER_KEY_FILE),
            0o600,
            "loading restores the key's mode"
        );
    }

    #[test]
    fn files_mode_errors_name_file() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        development(dir.path(), OffsetDateTime::now_utc());
        development(other.path(), OffsetDateTime::now_utc());
        let cert = dir.path().join("tls/server.pem");
        let key = dir.path().join("tls/server-key.pem");
        let files = |cert: &Path, key: &Path| TlsMode::Files {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        };

        let (_, source) = server_config(&files(&cert, &key), dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(source, TlsSource::Files { cert: cert.clone() });

        let missing = dir.path().join("missing.pem");
        let error = server_config(&files(&missing, &key), dir.path()).unwrap_err();
        assert!(matches!(error, TlsError::NotFound { .. }), "{error}");
        assert!(error.to_string().contains("missing.pem"), "{error}");

        let error = server_config(&files(&key, &key), dir.path()).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");

        let error = server_config(&files(&cert, &cert), dir.path()).unwrap_err();
        assert!(matches!(error, TlsError::NoPrivateKey { .. }), "{error}");

        let other_key = other.path().join("tls/server-key.pem");
        let error = server_config(&files(&cert, &other_key), dir.path()).unwrap_err();
        assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    }
}
