//! `portcullis certs verify`: runs the listener's client certificate
//! verification on PEM files, so an operator can see why a partner's
//! certificate is rejected without a TLS handshake.
//!
//! Exit status: 0 when the chain is accepted, 1 when it was verified and
//! rejected, and 2 when the arguments are invalid or an input file cannot
//! be read or parsed, so that no verdict on the chain was reached.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use portcullis_server::manage;
use portcullis_server::pki::verify::{
    Rejection, RejectionKind, TrustAnchors, VerifiedClient, verify_client_chain,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::UsageError;
use crate::cli::{CertsVerifyArgs, OutputFormat};
use crate::output;

/// Verifies the chain and prints the verdict.
///
/// # Errors
///
/// A [`UsageError`], which exits with status 2, for an unreadable or empty
/// file, an invalid trust anchor, an invalid `--at`, a certificate that
/// does not parse, or a CRL that cannot be used. Any other error is a
/// rejected chain, which exits with status 1. A verdict is printed first,
/// so the caller sees the reason on standard output.
pub(crate) fn run(args: &CertsVerifyArgs, format: OutputFormat) -> anyhow::Result<()> {
    let inputs = read_inputs(args).map_err(|error| UsageError::new(format!("{error:#}")))?;
    let verdict = verify_client_chain(&inputs.chain, &inputs.trust, &inputs.crls, inputs.at);

    match (&verdict, format) {
        (Ok(client), OutputFormat::Json) => output::print_json(&accepted_json(client))?,
        (Ok(client), OutputFormat::Table) => output::print(&accepted_text(client))?,
        (Err(rejection), OutputFormat::Json) => output::print_json(&rejected_json(rejection))?,
        (Err(rejection), OutputFormat::Table) => output::print(&rejected_text(rejection))?,
    }
    match verdict {
        Ok(_) => Ok(()),
        Err(rejection) if is_input_error(&rejection) => {
            Err(UsageError::new(format!("cannot verify the chain: {}", rejection.reason())).into())
        }
        Err(rejection) => bail!("certificate chain rejected ({})", rejection.code()),
    }
}

/// The files of a verification, read and parsed as far as the CLI can.
struct Inputs {
    chain: Vec<CertificateDer<'static>>,
    trust: TrustAnchors,
    crls: Vec<CertificateRevocationListDer<'static>>,
    at: UnixTime,
}

fn read_inputs(args: &CertsVerifyArgs) -> anyhow::Result<Inputs> {
    let chain = read_certificates(&args.chain)?;
    let trust = read_trust_anchors(&args.trust)?;
    let crls = args
        .crls
        .iter()
        .map(|path| read_crls(path))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let at = unix_time(args.at.unwrap_or_else(manage::now))?;
    Ok(Inputs {
        chain,
        trust,
        crls,
        at,
    })
}

/// Returns whether a rejection means that the input could not be parsed
/// (a certificate that is not X.509 DER, or a CRL that cannot be used), so
/// the chain itself was never judged.
fn is_input_error(rejection: &Rejection) -> bool {
    matches!(
        rejection.kind(),
        RejectionKind::Malformed | RejectionKind::InvalidCrl
    )
}

/// Parses `--at`: an RFC 3339 time such as `2026-12-04T17:00:00Z`.
pub(crate) fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|error| format!("expected an RFC 3339 time such as 2026-12-04T17:00:00Z: {error}"))
}

fn unix_time(at: OffsetDateTime) -> anyhow::Result<UnixTime> {
    let seconds = u64::try_from(at.unix_timestamp())
        .with_context(|| format!("invalid --at {at}: the time is before 1970"))?;
    Ok(UnixTime::since_unix_epoch(Duration::from_secs(seconds)))
}

/// Reads every certificate of a PEM file, or one DER certificate.
fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path)?;
    let certificates = if is_pem(&bytes) {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("invalid PEM in {}", path.display()))?
    } else {
        vec![CertificateDer::from(bytes)]
    };
    if certificates.is_empty() {
        bail!(
            "no CERTIFICATE block found in {}: expected PEM certificates",
            path.display()
        );
    }
    Ok(certificates)
}

fn read_trust_anchors(paths: &[impl AsRef<Path>]) -> anyhow::Result<TrustAnchors> {
    let mut certificates = Vec::new();
    for path in paths {
        certificates.extend(read_certificates(path.as_ref())?);
    }
    TrustAnchors::from_certificates(&certificates).context("invalid --trust certificate")
}

/// Reads every CRL of a PEM file, or one DER CRL.
fn read_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = read(path)?;
    let crls = if is_pem(&bytes) {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("invalid PEM in {}", path.display()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        bail!(
            "no X509 CRL block found in {}: expected a PEM or DER CRL",
            path.display()
        );
    }
    Ok(crls)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))
}

/// Returns whether `bytes` look like PEM text rather than DER, whose first
/// octet is the SEQUENCE tag 0x30.
fn is_pem(bytes: &[u8]) -> bool {
    bytes.first() != Some(&0x30)
}

fn accepted_text(client: &VerifiedClient) -> String {
    let names = client
        .subject_alt_names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    output::details(&[
        ("verdict", "accepted".to_owned()),
        ("serial", client.serial.clone()),
        ("subject", client.subject.clone()),
        ("issuer", client.issuer.clone()),
        ("names", names),
        ("x5t#S256", client.thumbprint_sha256.clone()),
        ("not after", output::time_or(Some(client.not_after), "")),
    ])
}

fn rejected_text(rejection: &Rejection) -> String {
    let mut pairs = vec![
        ("verdict", "rejected".to_owned()),
        ("code", rejection.code().to_owned()),
        ("reason", rejection.reason().to_owned()),
    ];
    if let Some(leaf) = rejection.leaf() {
        pairs.push(("serial", leaf.serial.clone()));
        pairs.push(("subject", leaf.subject.clone()));
        pairs.push(("issuer", leaf.issuer.clone()));
    }
    output::details(&pairs)
}

fn accepted_json(client: &VerifiedClient) -> Value {
    json!({ "verdict": "accepted", "certificate": client })
}

fn rejected_json(rejection: &Rejection) -> Value {
    json!({
        "verdict": "rejected",
        "code": rejection.code(),
        "reason": rejection.reason(),
        "certificate": rejection.leaf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parses_rfc3339() {
        let at = parse_time("2026-12-04T17:00:00Z").unwrap();
        assert_eq!(at.unix_timestamp(), 1_796_403_600);
    }

    #[test]
    fn time_rejects_other_formats() {
        let error = parse_time("2026-12-04 17:00").unwrap_err();
        assert!(error.contains("RFC 3339"), "{error}");
    }

    #[test]
    fn time_before_epoch_rejected() {
        let at = parse_time("1969-12-31T23:59:59Z").unwrap();
        assert!(unix_time(at).is_err());
    }

    #[test]
    fn der_detected_by_sequence_tag() {
        assert!(!is_pem(&[0x30, 0x82]));
        assert!(is_pem(b"-----BEGIN CERTIFICATE-----"));
    }
}
