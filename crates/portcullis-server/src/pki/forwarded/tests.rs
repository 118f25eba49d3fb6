//! Forwarded certificate headers as Envoy and nginx write them.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rcgen::{CertificateParams, KeyPair};

use super::*;

fn certificate(name: &str) -> (CertificateDer<'static>, String) {
    let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    (certificate.der().clone(), certificate.pem())
}

fn encode(pem: &str) -> String {
    utf8_percent_encode(pem, NON_ALPHANUMERIC).to_string()
}

fn envoy(value: &str) -> Result<Option<Vec<CertificateDer<'static>>>, ForwardedCertificateError> {
    parse_forwarded_chain(ForwardedCertificateFormat::Envoy, value.as_bytes())
}

#[test]
fn nginx_leaf_read() {
    let (der, pem) = certificate("leaf.example.com");

    let chain =
        parse_forwarded_chain(ForwardedCertificateFormat::Nginx, encode(&pem).as_bytes()).unwrap();

    assert_eq!(chain, Some(vec![der]));
}

#[test]
fn empty_value_is_no_certificate() {
    assert_eq!(
        parse_forwarded_chain(ForwardedCertificateFormat::Nginx, b""),
        Ok(None)
    );
    assert_eq!(envoy(" "), Ok(None));
}

#[test]
fn envoy_last_element_counts() {
    let (first, first_pem) = certificate("first.example.com");
    let (last, last_pem) = certificate("last.example.com");
    let value = format!(
        "By=spiffe://a;Hash=00;Cert=\"{}\";Subject=\"CN=a,O=b\",Hash=11;Cert=\"{}\";DNS=last.example.com",
        encode(&first_pem),
        encode(&last_pem)
    );

    let chain = envoy(&value).unwrap().unwrap();

    assert_eq!(chain, vec![last]);
    assert_ne!(chain, vec![first]);
}

#[test]
fn envoy_chain_preferred_and_checked() {
    let (leaf, leaf_pem) = certificate("leaf.example.com");
    let (issuer, issuer_pem) = certificate("issuer.example.com");
    let chain_pem = format!("{leaf_pem}{issuer_pem}");
    let value = format!(
        "Hash=00;Cert=\"{}\";Chain=\"{}\"",
        encode(&leaf_pem),
        encode(&chain_pem)
    );
    let mismatched = format!(
        "Hash=00;Cert=\"{}\";Chain=\"{}\"",
        encode(&issuer_pem),
        encode(&chain_pem)
    );

    assert_eq!(envoy(&value), Ok(Some(vec![leaf, issuer])));
    assert_eq!(
        envoy(&mismatched),
        Err(ForwardedCertificateError::CertificateMismatch)
    );
}

#[test]
fn envoy_unquoted_cert_read() {
    let (der, pem) = certificate("leaf.example.com");
    let value = format!("Hash=00;Cert={}", encode(&pem));

    assert_eq!(envoy(&value), Ok(Some(vec![der])));
}

#[test]
fn envoy_malformed_values_rejected() {
    let (_, pem) = certificate("leaf.example.com");

    assert_eq!(
        envoy("Hash=00;Subject=\"CN=a"),
        Err(ForwardedCertificateError::UnterminatedQuote)
    );
    assert_eq!(
        envoy("Hash=00;DNS=a.example.com"),
        Err(ForwardedCertificateError::NoCertificate)
    );
    assert!(matches!(
        envoy("Cert=\"not%20a%20certificate\""),
        Err(ForwardedCertificateError::InvalidPem(_))
    ));
    let truncated = pem.lines().take(3).collect::<Vec<_>>().join("\n");
    let Err(ForwardedCertificateError::InvalidPem(detail)) =
        envoy(&format!("Cert=\"{}\"", encode(&truncated)))
    else {
        panic!("a PEM block without its END line was accepted");
    };
    assert!(detail.contains("-----END CERTIFICATE-----"), "{detail}");
    assert!(!detail.contains('['), "{detail}");
    // The certificate is in an earlier element, and the nearest proxy
    // forwarded none.
    let value = format!("Cert=\"{}\",Hash=11", encode(&pem));
    assert_eq!(envoy(&value), Err(ForwardedCertificateError::NoCertificate));
}

#[test]
fn oversized_header_rejected() {
    let value = vec![b'a'; MAX_FORWARDED_HEADER_BYTES + 1];

    let result = parse_forwarded_chain(ForwardedCertificateFormat::Nginx, &value);

    assert_eq!(
        result,
        Err(ForwardedCertificateError::TooLarge {
            length: MAX_FORWARDED_HEADER_BYTES + 1
        })
    );
}

#[test]
fn overlong_chain_rejected() {
    let (_, pem) = certificate("leaf.example.com");
    let chain = pem.repeat(MAX_FORWARDED_CHAIN_LENGTH + 1);

    let result =
        parse_forwarded_chain(ForwardedCertificateFormat::Nginx, encode(&chain).as_bytes());

    assert_eq!(result, Err(ForwardedCertificateError::ChainTooLong));
}
