//! The command line: global options, then commands grouped by noun
//! (`serve`, `tenants …`, `keys …`, `clients …`, `users …`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use portcullis_core::key::Environment;
use portcullis_core::oauth::{ClientAuthMethod, GrantType, Role};
use portcullis_core::pki::RevocationReason;
use portcullis_server::config::LogFormat;
use portcullis_server::credential_audit::Severity;

/// Default data directory, relative to the working directory.
pub(crate) const DEFAULT_DATA_DIR: &str = "./portcullis-data";

/// Help section of the options that every command takes.
const GLOBAL_HEADING: &str = "Global options";

/// Portcullis: API keys, scopes and an authenticating gateway for B2B APIs.
#[derive(Parser)]
#[command(name = "portcullis", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options that every command takes.
///
/// No `Debug`: `database_url` may carry a password.
#[derive(Args)]
pub(crate) struct GlobalArgs {
    /// Directory of the SQLite database, the master key and `tls/`. Created
    /// with mode 0700 when missing.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        env = "PORTCULLIS_DATA_DIR",
        value_name = "DIR",
        default_value = DEFAULT_DATA_DIR
    )]
    pub(crate) data_dir: PathBuf,

    /// Configuration file of `serve` [default: DIR/portcullis.toml].
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        env = "PORTCULLIS_CONFIG",
        value_name = "FILE"
    )]
    pub(crate) config: Option<PathBuf>,

    /// PostgreSQL database (`postgres://…`) to use instead of SQLite in
    /// DIR/portcullis.db.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        env = "PORTCULLIS_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) database_url: Option<String>,

    /// Output format of the admin commands.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        value_enum,
        default_value_t = OutputFormat::Table
    )]
    pub(crate) output: OutputFormat,
}

/// Output format of the admin commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document, in the shapes of the admin API.
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Start the server. SIGINT or SIGTERM drains requests and stops it.
    Serve(ServeArgs),

    /// Create and list tenants (the SaaS company's customers).
    #[command(subcommand)]
    Tenants(TenantsCommand),

    /// Create, list, revoke and rotate API keys.
    #[command(subcommand)]
    Keys(KeysCommand),

    /// Register OAuth clients, rotate their secrets and revoke them.
    #[command(subcommand)]
    Clients(ClientsCommand),

    /// Create and list the end users who sign in and grant consent.
    #[command(subcommand)]
    Users(UsersCommand),

    /// List, rotate and revoke the keys that sign access tokens.
    #[command(subcommand)]
    SigningKeys(SigningKeysCommand),

    /// The internal CA that issues client certificates, and the partner
    /// CAs trusted per tenant.
    #[command(subcommand)]
    Ca(CaCommand),

    /// Client certificates for mutual TLS.
    #[command(subcommand)]
    Certs(CertsCommand),

    /// Find API keys in files or in a git repository's history, and
    /// optionally revoke the ones still usable.
    #[command(after_help = SCAN_EXIT_CODES)]
    Scan(ScanArgs),

    /// Report credential hygiene: keys without expiry or past rotation,
    /// unused keys, clients and scopes, broad scopes, long token lifetimes,
    /// old secrets, expiring certificates, partner CAs without a revocation
    /// check, old signing keys and plain-HTTP listeners. Thresholds come from
    /// `[audit_policy]`.
    #[command(after_help = AUDIT_EXIT_CODES)]
    Audit(AuditArgs),

    /// Verify the hash chain of the audit log, and export its records.
    #[command(subcommand)]
    AuditLog(AuditLogCommand),
}

/// The exit codes of `audit-log verify`, printed under its `--help`.
const VERIFY_EXIT_CODES: &str = "\
Exit codes:
  0  the chain is intact from the pruning checkpoint to the head
  1  the check failed: the store or the master key could not be read
  2  invalid command-line arguments
  3  the chain is broken, or its head row was deleted, reset or changed;
     the message names the first problem";

/// The exit codes of `audit-log export`, printed under its `--help`.
const EXPORT_EXIT_CODES: &str = "\
Exit codes:
  0  the records were written
  1  the export failed: the store could not be read, or no tenant has that name
  2  invalid command-line arguments, such as --since later than --until";

#[derive(Subcommand)]
pub(crate) enum AuditLogCommand {
    /// Check every record's hash and link, from the pruning checkpoint to
    /// the chain head, and name the first broken record.
    /// It only reads, and prints the head to keep outside the database.
    #[command(after_help = VERIFY_EXIT_CODES)]
    Verify {
        /// The head hash (64 hexadecimal digits) that an earlier `verify`
        /// printed. The chain must still contain that record, which
        /// detects newest records cut together with an old head row put
        /// back.
        #[arg(long, value_name = "HASH", value_parser = parse_head_hash)]
        expect_head: Option<portcullis_store::chain::ChainHash>,
    },

    /// Tag the chain head with its MAC, once, when `verify` reports that it
    /// has none or was reset, deleted or changed. Records from before the
    /// hash chain are chained first when the chain was never written. The
    /// seal is itself an audit record, so it shows in every later export.
    Seal,

    /// Write audit records to standard output as JSON Lines (one JSON
    /// object per line), oldest first.
    #[command(after_help = EXPORT_EXIT_CODES)]
    Export {
        /// Only records about this tenant.
        #[arg(long, value_name = "NAME")]
        tenant: Option<String>,

        /// Only records at or after this RFC 3339 time, such as
        /// 2026-12-01T00:00:00Z. An auth.succeeded record matches when a
        /// success of its minute is at or after it.
        #[arg(long, value_name = "TIME", value_parser = parse_filter_time)]
        since: Option<time::OffsetDateTime>,

        /// Only records before this RFC 3339 time. An auth.succeeded
        /// record matches when a success of its minute is before it.
        #[arg(long, value_name = "TIME", value_parser = parse_filter_time)]
        until: Option<time::OffsetDateTime>,
    },
}

fn parse_head_hash(text: &str) -> Result<portcullis_store::chain::ChainHash, String> {
    portcullis_store::chain::parse_hex(text)
        .ok_or_else(|| "expected 64 hexadecimal digits, as `audit-log verify` prints".to_owned())
}

fn parse_filter_time(text: &str) -> Result<time::OffsetDateTime, String> {
    portcullis_server::admin::audit::parse_filter_time(text)
}

/// The exit codes of `audit`, printed under its `--help`.
const AUDIT_EXIT_CODES: &str = "\
Exit codes:
  0  no finding reached the --fail-on severity, or --fail-on was not given
  1  the audit failed: the store or the configuration could not be read
  2  invalid command-line arguments
  3  at least one finding reached the --fail-on severity";

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Only this tenant's keys, clients and certificates; without it, the
    /// whole server, operator keys, the CA, signing keys and the listener
    /// included.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: Option<String>,

    /// Exit with code 3 when a finding is at least this severe, so the
    /// audit can fail a CI job or alert from cron.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub(crate) fail_on: Option<SeverityArg>,
}

/// A finding severity, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SeverityArg {
    /// Worth knowing; no action needed.
    Info,
    /// Hygiene to fix when convenient.
    Low,
    /// Fix soon.
    Medium,
    /// A credential or setting an attacker would look for first.
    High,
    /// Act at once.
    Critical,
}

impl From<SeverityArg> for Severity {
    fn from(value: SeverityArg) -> Self {
        match value {
            SeverityArg::Info => Self::Info,
            SeverityArg::Low => Self::Low,
            SeverityArg::Medium => Self::Medium,
            SeverityArg::High => Self::High,
            SeverityArg::Critical => Self::Critical,
        }
    }
}

/// The exit codes of `scan`, printed under its `--help`.
const SCAN_EXIT_CODES: &str = "\
Exit codes:
  0  no usable key was found (look-alikes and revoked or expired keys do not count)
  1  the scan failed: a path, git or the store could not be read
  2  invalid command-line arguments
  3  at least one usable (active or rotating) key was found, revoked or not";

#[derive(Args)]
pub(crate) struct ScanArgs {
    /// Files and directories to scan. Directories are walked recursively
    /// without following symbolic links and without entering `.git`.
    #[arg(value_name = "PATH", required = true)]
    pub(crate) paths: Vec<PathBuf>,

    /// Treat each PATH as a git repository and scan every blob reachable
    /// from any ref, so keys deleted in later commits are found too.
    /// Needs the `git` command on PATH.
    #[arg(long)]
    pub(crate) git: bool,

    /// Revoke each usable key found, with an audit record naming where it
    /// was found.
    #[arg(long, requires = "reason")]
    pub(crate) revoke: bool,

    /// Reason recorded with each revocation, before the place where the key
    /// was found.
    #[arg(long, value_name = "TEXT", requires = "revoke")]
    pub(crate) reason: Option<String>,

    /// Largest file or blob to scan, in bytes. Larger ones are listed as
    /// skipped.
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024)]
    pub(crate) max_file_size: u64,
}

#[derive(Subcommand)]
pub(crate) enum CaCommand {
    /// Create the internal CA: an ECDSA P-256 key sealed with the master
    /// key and a certificate valid for ten years. Fails when it exists.
    Init,

    /// Manage the partner CAs trusted for a tenant's clients.
    #[command(subcommand)]
    Trust(CaTrustCommand),
}

#[derive(Subcommand)]
pub(crate) enum CaTrustCommand {
    /// Trust the CA certificate in a PEM file for one tenant's clients.
    /// Running servers trust it within about two seconds.
    Add(CaTrustAddArgs),

    /// Replace the CRL files of a trusted CA, or acknowledge that it
    /// publishes none. Running servers use the change within about two
    /// seconds.
    Crl(CaTrustCrlArgs),

    /// Stop trusting a CA for a tenant. Within about two seconds, running
    /// servers reject new handshakes and the next request of open
    /// connections whose certificate chain ends at it.
    Remove(CaTrustRemoveArgs),

    /// List the partner CAs trusted for a tenant.
    List(TenantArgs),
}

/// The revocation check of a trusted CA: its CRL files, or the
/// acknowledgement that it has none.
#[derive(Args)]
pub(crate) struct RevocationArgs {
    /// PEM file with the CA's CRL, read by every server and read again when
    /// it changes. Give a path that is valid on the servers. Repeat for
    /// several files.
    #[arg(long = "crl", value_name = "FILE", conflicts_with = "no_crl")]
    pub(crate) crls: Vec<PathBuf>,

    /// Acknowledge that the CA publishes no CRL, so its certificates are
    /// accepted without a revocation check. Recorded in the audit log and
    /// reported by `portcullis audit`.
    #[arg(long)]
    pub(crate) no_crl: bool,
}

#[derive(Args)]
pub(crate) struct CaTrustAddArgs {
    /// The tenant whose clients the CA may certify.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,

    /// PEM file with exactly one CA certificate (basic constraints CA:TRUE)
    /// inside its validity period.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,

    #[command(flatten)]
    pub(crate) revocation: RevocationArgs,
}

#[derive(Args)]
pub(crate) struct CaTrustCrlArgs {
    /// The tenant that trusts the CA.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,

    /// The trusted CA's id, or the SHA-256 fingerprint of its certificate,
    /// as `ca trust list` prints them.
    #[arg(value_name = "ID|FINGERPRINT")]
    pub(crate) reference: String,

    #[command(flatten)]
    pub(crate) revocation: RevocationArgs,
}

#[derive(Args)]
pub(crate) struct CaTrustRemoveArgs {
    /// The tenant that trusts the CA.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,

    /// The trusted CA's id, or the SHA-256 fingerprint of its certificate,
    /// as `ca trust list` prints them.
    #[arg(value_name = "ID|FINGERPRINT")]
    pub(crate) reference: String,
}

#[derive(Args)]
pub(crate) struct CertsSignArgs {
    /// The OAuth client the certificate names, as `clients list` prints it.
    #[arg(long, value_name = "ID")]
    pub(crate) client: String,

    /// PEM file with the partner's PKCS#10 certificate signing request.
    /// Only its public key is used.
    #[arg(long, value_name = "FILE")]
    pub(crate) csr: PathBuf,

    /// Validity in days, 1 to 397.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub(crate) days: u32,

    /// Write the certificate PEM to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct CertsIssueArgs {
    /// The OAuth client the certificate names, as `clients list` prints it.
    #[arg(long, value_name = "ID")]
    pub(crate) client: String,

    /// Directory to write `key.pem` (mode 0600), `cert.pem` and `ca.pem`
    /// to; created with mode 0700 when missing. A failed command writes
    /// nothing there.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,

    /// Validity in days, 1 to 397.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub(crate) days: u32,
}

#[derive(Args)]
pub(crate) struct CertsListArgs {
    /// Only the certificates of this client.
    #[arg(long, value_name = "ID", conflicts_with = "tenant")]
    pub(crate) client: Option<String>,

    /// Only the certificates of this tenant's clients.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: Option<String>,
}

#[derive(Args)]
pub(crate) struct CertsRevokeArgs {
    /// The certificate's serial number in hex, as `certs list` or `openssl
    /// x509 -serial` prints it.
    pub(crate) serial: String,

    /// Why the certificate is revoked: an RFC 5280 reason, which the CRL
    /// entry carries (`unspecified` adds no reason code to the entry). Also
    /// kept in the audit log.
    #[arg(
        long,
        value_name = "REASON",
        ignore_case = true,
        value_parser = clap::builder::PossibleValuesParser::new(RevocationReason::names())
    )]
    pub(crate) reason: String,
}

#[derive(Subcommand)]
pub(crate) enum CertsCommand {
    /// Verify a client certificate chain as the TLS listener does and print
    /// the verdict with its reason.
    ///
    /// Exit status: 0 when the chain is accepted, 1 when it is verified and
    /// rejected. The status is 2 when no verdict was reached, because an
    /// argument is invalid or an input file cannot be read or parsed (a
    /// certificate that is not X.509, a CRL that cannot be used).
    Verify(CertsVerifyArgs),

    /// Sign a partner's CSR as a client certificate. The partner keeps its
    /// private key.
    Sign(CertsSignArgs),

    /// Generate a key pair and a client certificate for tests. The private
    /// key is written once and not stored.
    Issue(CertsIssueArgs),

    /// List issued client certificates, newest first.
    List(CertsListArgs),

    /// Revoke a client certificate. The CRL at `/ca/crl.pem` lists it from
    /// then on.
    Revoke(CertsRevokeArgs),
}

#[derive(Args)]
pub(crate) struct CertsVerifyArgs {
    /// PEM file with the client certificate first, then any intermediates
    /// (a single DER certificate works too).
    #[arg(long, value_name = "FILE")]
    pub(crate) chain: PathBuf,

    /// PEM file of CA certificates that chains may end at (a single DER
    /// certificate works too). Repeat for several files.
    // TODO: default to the trust anchors of the certificate store once the
    // listener reads them from there; until then `--trust` is required.
    #[arg(long, value_name = "FILE", required = true)]
    pub(crate) trust: Vec<PathBuf>,

    /// Time to verify at, in RFC 3339 such as `2026-12-04T17:00:00Z`
    /// [default: now].
    #[arg(long, value_name = "TIME", value_parser = crate::commands::certs_verify::parse_time)]
    pub(crate) at: Option<time::OffsetDateTime>,

    /// PEM or DER file of a CRL to check every certificate of the chain
    /// against. Repeat for several. With any CRL given, a certificate that no
    /// CRL covers is rejected. CRLs are never fetched from the network.
    #[arg(long = "crl", value_name = "FILE")]
    pub(crate) crls: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum SigningKeysCommand {
    /// List the signing keys with their state and dates; never a private key.
    List,

    /// Generate a new signing key. It is published in the JWKS at once and
    /// signs after one hour, so clients that cache the JWKS learn it first.
    Rotate,

    /// Revoke a compromised signing key: it leaves the JWKS at once, and
    /// every token it signed is rejected from then on. When it is the key
    /// that signs, the pending key created first takes over, or else a new
    /// key generated now.
    Revoke(SigningKeysRevokeArgs),
}

#[derive(Args)]
pub(crate) struct SigningKeysRevokeArgs {
    /// The kid of the key, as `signing-keys list` prints it.
    pub(crate) kid: String,

    /// The reason for the revocation, such as where the key leaked, at most
    /// 200 characters. The key record and the audit log keep it.
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: String,
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Log line format [default: `server.log_format` of the configuration].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormatArg>,

    /// Log filter in tracing's `EnvFilter` syntax, such as `info` or
    /// `portcullis_server=debug` [default: info].
    #[arg(long, env = "PORTCULLIS_LOG", value_name = "FILTER")]
    pub(crate) log_filter: Option<String>,
}

/// Log line format, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(value: LogFormatArg) -> Self {
        match value {
            LogFormatArg::Human => Self::Human,
            LogFormatArg::Json => Self::Json,
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum TenantsCommand {
    /// Create a tenant.
    Create {
        /// Lower-case ASCII letters, digits, '.', '_' and '-', such as
        /// `acme-billing`.
        name: String,
    },

    /// List every tenant.
    List,
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create an API key and print its secret, once.
    Create(KeysCreateArgs),

    /// List keys without their secrets.
    List(KeysListArgs),

    /// Show one key without its secret: owner, scopes, status, limits and
    /// its last use (time and client address).
    Show(KeysShowArgs),

    /// Revoke a key at once.
    Revoke(KeysRevokeArgs),

    /// Replace a key with a new one. The old key works until the grace
    /// period ends.
    Rotate(KeysRotateArgs),

    /// Change a key's rate limits or plan. Running nodes apply the change
    /// within a second.
    Update(KeysUpdateArgs),

    /// Replace a key's scopes by a subset of them, such as the scopes a
    /// credential audit found in use. Running nodes apply the change within
    /// a second.
    Narrow(KeysNarrowArgs),
}

/// Whose keys a command acts on: one tenant's or the operator's.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KeyOwner {
    /// The tenant whose keys to create or list.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: Option<String>,

    /// Operator keys: the SaaS company's own keys for the admin and verify
    /// APIs.
    #[arg(long)]
    pub(crate) operator: bool,
}

#[derive(Args)]
pub(crate) struct KeysCreateArgs {
    #[command(flatten)]
    pub(crate) owner: KeyOwner,

    /// Comma-separated scopes, such as `orders:read,orders:write`.
    #[arg(long, value_name = "LIST")]
    pub(crate) scopes: String,

    /// A label for people, such as "billing sync".
    #[arg(long, value_name = "LABEL")]
    pub(crate) name: Option<String>,

    /// Lifetime, such as `90d`, `12h` or `2w` [default: until revoked].
    #[arg(long, value_name = "DURATION")]
    pub(crate) expires_in: Option<String>,

    /// Environment named in the key's prefix: `pc_live_` or `pc_test_`.
    #[arg(long, value_enum, default_value_t = EnvironmentArg::Live)]
    pub(crate) environment: EnvironmentArg,

    /// A rate limit of the key, such as `100/s burst 200` or `5000/h`.
    /// Repeat it for several limits, all of which apply.
    #[arg(long = "rate-limit", value_name = "RATE")]
    pub(crate) rate_limits: Vec<String>,

    /// A plan of the server's `[limits.plans]`, whose limits all apply.
    #[arg(long, value_name = "NAME")]
    pub(crate) plan: Option<String>,

    /// Number of requests the key may make in all; past it the gateway
    /// rejects the key with 403. Exact across nodes.
    #[arg(long, value_name = "N")]
    pub(crate) max_uses: Option<u32>,
}

#[derive(Args)]
pub(crate) struct KeysUpdateArgs {
    /// The key's id, as `keys list` prints it.
    pub(crate) id: String,

    #[command(flatten)]
    pub(crate) limits: LimitChanges,
}

/// Changes to the rate limits and plan of a key or client. What is not
/// named stays as it is.
#[derive(Args)]
pub(crate) struct LimitChanges {
    /// Replace the own rate limits, such as `100/s burst 200`; repeat it
    /// for several.
    #[arg(
        long = "rate-limit",
        value_name = "RATE",
        conflicts_with = "no_rate_limit"
    )]
    pub(crate) rate_limits: Vec<String>,

    /// Remove the own rate limits.
    #[arg(long)]
    pub(crate) no_rate_limit: bool,

    /// Put it on this plan of `[limits.plans]`.
    #[arg(long, value_name = "NAME", conflicts_with = "no_plan")]
    pub(crate) plan: Option<String>,

    /// Take it off its plan.
    #[arg(long)]
    pub(crate) no_plan: bool,
}

/// Key environment, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum EnvironmentArg {
    /// Production traffic.
    Live,
    /// Test and sandbox traffic.
    Test,
}

impl From<EnvironmentArg> for Environment {
    fn from(value: EnvironmentArg) -> Self {
        match value {
            EnvironmentArg::Live => Self::Live,
            EnvironmentArg::Test => Self::Test,
        }
    }
}

#[derive(Args)]
pub(crate) struct KeysListArgs {
    #[command(flatten)]
    pub(crate) owner: KeyOwner,
}

#[derive(Args)]
pub(crate) struct KeysShowArgs {
    /// The key's id, as `keys list` prints it.
    pub(crate) id: String,
}

#[derive(Args)]
pub(crate) struct KeysRevokeArgs {
    /// The key's id, as `keys list` prints it.
    pub(crate) id: String,

    /// Reason for the revocation, kept in the key record and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: Option<String>,
}

#[derive(Args)]
pub(crate) struct KeysNarrowArgs {
    /// The key's id, as `keys list` prints it.
    pub(crate) id: String,

    /// Comma-separated scopes to keep, each granted by the key's current
    /// scopes, such as `orders:read`.
    #[arg(long, value_name = "LIST")]
    pub(crate) scopes: String,
}

#[derive(Args)]
pub(crate) struct KeysRotateArgs {
    /// The key's id, as `keys list` prints it.
    pub(crate) id: String,

    /// Grace period of the old key, such as `24h`, at most 7d. With `0s` the
    /// old key stops working at once.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub(crate) grace: String,
}

#[derive(Subcommand)]
pub(crate) enum ClientsCommand {
    /// Register an OAuth client and print its secret, once.
    // Boxed because its many options make it far larger than the others.
    Create(Box<ClientsCreateArgs>),

    /// List a tenant's clients without their secrets.
    List(TenantArgs),

    /// Give a client a new secret. The old secret works until the grace
    /// period ends.
    RotateSecret(ClientsRotateSecretArgs),

    /// Change a client's rate limits or plan. Running nodes apply the
    /// change within a second.
    Update(ClientsUpdateArgs),

    /// Revoke a client at once, with every token issued to it.
    Revoke(ClientsRevokeArgs),
}

#[derive(Args)]
pub(crate) struct ClientsUpdateArgs {
    /// The client's id, as `clients list` prints it.
    pub(crate) id: String,

    #[command(flatten)]
    pub(crate) limits: LimitChanges,
}

#[derive(Args)]
pub(crate) struct ClientsCreateArgs {
    /// The tenant that owns the client.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,

    /// Display name, shown to users on the consent page.
    #[arg(long, value_name = "APP")]
    pub(crate) name: String,

    /// Comma-separated grant types: `client_credentials`,
    /// `authorization_code`, `refresh_token`.
    #[arg(long, value_name = "LIST", value_delimiter = ',', required = true)]
    pub(crate) grant_types: Vec<GrantType>,

    /// Comma-separated scopes that the client's tokens may grant, such as
    /// `orders:read,orders:write`.
    #[arg(long, value_name = "LIST")]
    pub(crate) scopes: String,

    /// A redirect URI, compared as an exact string. Repeat for several.
    #[arg(long = "redirect-uri", value_name = "URL")]
    pub(crate) redirect_uris: Vec<String>,

    /// A public client (a browser or mobile app) that keeps no secret and
    /// authenticates with `none`.
    #[arg(long, conflicts_with = "auth_method")]
    pub(crate) public: bool,

    /// Token endpoint authentication of a confidential client:
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt`,
    /// `tls_client_auth` or `self_signed_tls_client_auth`
    /// [default: client_secret_basic].
    #[arg(long, value_name = "METHOD")]
    pub(crate) auth_method: Option<ClientAuthMethod>,

    /// File with the client's public JWKS, required for `private_key_jwt`
    /// and `self_signed_tls_client_auth`.
    #[arg(long, value_name = "FILE")]
    pub(crate) jwks: Option<PathBuf>,

    /// For `tls_client_auth`: the certificate's subject DN, in RFC 4514
    /// form such as `CN=svc,O=Acme`. Give at most one of the `--tls-*`
    /// options. Without one, the server maps the client to the SAN URI
    /// `urn:portcullis:client:<client id>` that the internal CA writes into
    /// the certificates it issues, and only then does `certs sign` or
    /// `certs issue` accept the client.
    #[arg(long, value_name = "DN")]
    pub(crate) tls_subject_dn: Option<String>,

    /// For `tls_client_auth`: a DNS name in the certificate's SAN.
    #[arg(long, value_name = "NAME")]
    pub(crate) tls_san_dns: Option<String>,

    /// For `tls_client_auth`: a URI in the certificate's SAN, outside the
    /// internal CA's `urn:portcullis:client:` namespace.
    #[arg(long, value_name = "URI")]
    pub(crate) tls_san_uri: Option<String>,

    /// For `tls_client_auth`: an IP address in the certificate's SAN.
    #[arg(long, value_name = "IP")]
    pub(crate) tls_san_ip: Option<String>,

    /// For `tls_client_auth`: an e-mail address in the certificate's SAN.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) tls_san_email: Option<String>,

    /// Lifetime of the client's access tokens, from `1m` to `1h`
    /// [default: 15m].
    #[arg(long, value_name = "DURATION")]
    pub(crate) access_token_ttl: Option<String>,

    /// A rate limit of the client, counted over all its tokens and
    /// certificates, such as `100/s burst 200`. Repeat it for several.
    #[arg(long = "rate-limit", value_name = "RATE")]
    pub(crate) rate_limits: Vec<String>,

    /// A plan of the server's `[limits.plans]`, whose limits all apply.
    #[arg(long, value_name = "NAME")]
    pub(crate) plan: Option<String>,
}

/// The `--tenant` of a listing.
#[derive(Args)]
pub(crate) struct TenantArgs {
    /// The tenant whose records to list.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,
}

#[derive(Args)]
pub(crate) struct ClientsRotateSecretArgs {
    /// The client's id, as `clients list` prints it.
    pub(crate) id: String,

    /// Grace period of the old secret, such as `24h`, at most 7d. With `0s`
    /// the old secret stops working at once.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub(crate) grace: String,
}

#[derive(Args)]
pub(crate) struct ClientsRevokeArgs {
    /// The client's id, as `clients list` prints it.
    pub(crate) id: String,

    /// Reason for the revocation, kept in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a user. The password is read from `PORTCULLIS_USER_PASSWORD`
    /// or else from the first line of standard input, never from an
    /// argument, because other local users can read a process's arguments.
    Create(UsersCreateArgs),

    /// List a tenant's users.
    List(TenantArgs),

    /// Disable a user: they can no longer sign in, their dashboard
    /// sessions end and the OAuth tokens and codes they approved are
    /// revoked. The tenant's last enabled admin cannot be disabled.
    Disable(UserArgs),

    /// Enable a disabled user again. They sign in with their old password.
    Enable(UserArgs),
}

/// One user, named by tenant and e-mail address.
#[derive(Args)]
pub(crate) struct UserArgs {
    /// The tenant the user belongs to.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,

    /// The address the user signs in with.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) email: String,
}

#[derive(Args)]
pub(crate) struct UsersCreateArgs {
    /// The tenant the user belongs to.
    #[arg(long, value_name = "NAME")]
    pub(crate) tenant: String,

    /// The address the user signs in with, unique within the tenant.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) email: String,

    /// What the user may do in the tenant's dashboard: `admin`,
    /// `developer` or `viewer` [default: viewer].
    #[arg(long, value_name = "ROLE")]
    pub(crate) role: Option<Role>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_owner_required_and_exclusive() {
        let neither = Cli::try_parse_from(["portcullis", "keys", "list"]);
        assert!(neither.is_err());
        let both =
            Cli::try_parse_from(["portcullis", "keys", "list", "--tenant", "a", "--operator"]);
        assert!(both.is_err());
        let operator = Cli::try_parse_from(["portcullis", "keys", "list", "--operator"]);
        assert!(operator.is_ok());
    }

    #[test]
    fn output_flag_accepted_after_subcommand() {
        let cli =
            Cli::try_parse_from(["portcullis", "tenants", "list", "--output", "json"]).unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
    }
}
