//! Each rule of the credential audit fires on a fixture built to trigger it
//! and stays silent on a clean inventory.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use portcullis_core::credential::{ApiKeyRecord, KeyKind, KeyLimits, RateLimits};
use portcullis_core::crypto::SecretHash;
use portcullis_core::ids::{ClientId, KeyId, TenantId};
use portcullis_core::key::Environment;
use portcullis_core::name::TenantName;
use portcullis_core::oauth::{ClientAuthMethod, ClientRecord, ClientSecretRecord, GrantType};
use portcullis_core::pki::{CertificateRecord, TrustedCaRecord};
use portcullis_core::scope::ScopeSet;
use portcullis_core::signing::{SigningAlgorithm, SigningKeyRecord, SigningKeyState};
use portcullis_store::CredentialRef;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::findings::evaluate;
use super::*;

const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

fn days_ago(days: i64) -> OffsetDateTime {
    NOW - Duration::days(days)
}

fn scopes(list: &str) -> ScopeSet {
    ScopeSet::parse_list(list).unwrap()
}

fn tenant_key(tenant_id: TenantId) -> ApiKeyRecord {
    ApiKeyRecord {
        id: KeyId::generate(),
        kind: KeyKind::Tenant,
        tenant_id: Some(tenant_id),
        tenant: Some(TenantName::parse("acme").unwrap()),
        name: Some("billing sync".to_owned()),
        environment: Environment::Live,
        visible_prefix: "pc_live_abcd".to_owned(),
        scopes: scopes("orders:read"),
        created_at: days_ago(40),
        expires_at: Some(NOW + Duration::days(30)),
        revoked_at: None,
        revoked_reason: None,
        rotated_to: None,
        last_used_at: Some(days_ago(1)),
        last_used_from: Some("198.51.100.7".to_owned()),
        use_count: 10,
        limits: KeyLimits::default(),
        created_by: Some("cli".to_owned()),
    }
}

fn client(tenant_id: TenantId) -> ClientRecord {
    ClientRecord {
        id: ClientId::generate(),
        tenant_id,
        tenant: TenantName::parse("acme").unwrap(),
        name: "Reporting".to_owned(),
        confidential: true,
        grant_types: vec![GrantType::ClientCredentials],
        scopes: scopes("orders:read"),
        redirect_uris: Vec::new(),
        auth_method: ClientAuthMethod::ClientSecretBasic,
        jwks: None,
        tls_client_auth_subject: None,
        access_token_ttl_seconds: 900,
        created_at: days_ago(40),
        revoked_at: None,
        limits: RateLimits::default(),
        created_by: None,
    }
}

fn secret(client_id: ClientId, created_at: OffsetDateTime) -> ClientSecretRecord {
    ClientSecretRecord {
        id: uuid::Uuid::now_v7(),
        client_id,
        hash: SecretHash::from_slice(&[7; 32]).unwrap(),
        created_at,
        expires_at: None,
    }
}

fn certificate(client: &ClientRecord, not_after: OffsetDateTime) -> CertificateRecord {
    CertificateRecord {
        serial: "0a1b2c3d".parse().unwrap(),
        client_id: client.id,
        tenant_id: client.tenant_id,
        subject: format!("CN={}", client.id),
        subject_alt_names: String::new(),
        not_before: days_ago(10),
        not_after,
        sha256: "00".repeat(32),
        certificate_pem: String::new(),
        created_at: days_ago(10),
        revoked_at: None,
        revoked_reason: None,
    }
}

fn signing_key(created_at: OffsetDateTime, state: SigningKeyState) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: format!("kid-{}", created_at.unix_timestamp()),
        algorithm: SigningAlgorithm::Es256,
        state,
        public_jwk: "{}".to_owned(),
        sealed_private_key: Vec::new(),
        created_at,
        activates_at: created_at,
        retired_at: None,
        publish_until: None,
        revoked_at: None,
        revoked_reason: None,
    }
}

/// Builds an inventory with one of everything, all within the default
/// policy.
fn clean() -> Inventory {
    let tenant_id = TenantId::generate();
    let key = tenant_key(tenant_id);
    let client = client(tenant_id);
    let mut scope_uses = HashMap::new();
    scope_uses.insert(
        CredentialRef::Key(key.id),
        BTreeSet::from(["orders:read".to_owned()]),
    );
    scope_uses.insert(
        CredentialRef::Client(client.id),
        BTreeSet::from(["orders:read".to_owned()]),
    );
    Inventory {
        client_secrets: HashMap::from([(client.id, vec![secret(client.id, days_ago(10))])]),
        client_last_use: HashMap::from([(client.id, days_ago(1))]),
        certificates: vec![certificate(&client, NOW + Duration::days(300))],
        keys: vec![key],
        clients: vec![client],
        scope_uses,
        ca: Some(CaValidity {
            id: uuid::Uuid::now_v7(),
            not_after: NOW + Duration::days(3000),
        }),
        trusted_cas: vec![trusted_ca(tenant_id, false)],
        signing_keys: vec![
            signing_key(days_ago(10), SigningKeyState::Active),
            signing_key(days_ago(400), SigningKeyState::Retired),
        ],
        listener: Some(ListenerFacts {
            address: "0.0.0.0:8443".parse().unwrap(),
            plain_http: false,
        }),
        metrics_listener: Some("127.0.0.1:9464".parse().unwrap()),
    }
}

fn run(inventory: &Inventory) -> Vec<Finding> {
    evaluate(inventory, &AuditPolicy::default(), NOW)
}

/// Returns the one finding with `code`, failing when there is not exactly
/// one.
fn only(findings: &[Finding], code: &str) -> Finding {
    let matching: Vec<&Finding> = findings.iter().filter(|f| f.code == code).collect();
    assert_eq!(matching.len(), 1, "{code} in {findings:#?}");
    matching[0].clone()
}

#[test]
fn clean_inventory_has_no_findings() {
    let findings = run(&clean());
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn key_without_expiry_reported() {
    let mut inventory = clean();
    inventory.keys[0].expires_at = None;
    let finding = only(&run(&inventory), "key_no_expiry");
    assert_eq!(finding.severity, Severity::Low);
    assert_eq!(finding.subject.kind, "key");
    assert_eq!(finding.subject.tenant.as_deref(), Some("acme"));
}

#[test]
fn old_key_due_for_rotation() {
    let mut inventory = clean();
    inventory.keys[0].created_at = days_ago(91);
    let finding = only(&run(&inventory), "key_rotation_overdue");
    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(finding.details["age_days"], 91);

    inventory.keys[0].created_at = days_ago(90);
    assert!(run(&inventory).is_empty());
}

#[test]
fn unused_key_and_client_reported() {
    let mut inventory = clean();
    inventory.keys[0].last_used_at = Some(days_ago(31));
    inventory.client_last_use.clear();
    let findings = run(&inventory);
    let key = only(&findings, "key_unused");
    assert_eq!(key.severity, Severity::Low);
    assert_eq!(key.details["idle_days"], 31);
    assert_eq!(key.details["last_used_from"], "198.51.100.7");
    let client = only(&findings, "client_unused");
    assert_eq!(client.details["idle_days"], 40);
    assert!(client.details["last_used_on"].is_null());
}

#[test]
fn never_used_new_key_not_unused() {
    let mut inventory = clean();
    inventory.keys[0].last_used_at = None;
    inventory.keys[0].created_at = days_ago(5);
    assert!(run(&inventory).is_empty());
    inventory.keys[0].created_at = days_ago(35);
    let finding = only(&run(&inventory), "key_unused");
    assert!(
        finding.message.contains("never used"),
        "{}",
        finding.message
    );
}

#[test]
fn wildcard_scope_reported() {
    let mut inventory = clean();
    inventory.keys[0].scopes = scopes("orders:*");
    inventory.scope_uses.clear();
    let finding = only(&run(&inventory), "wildcard_scope");
    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(finding.details["scopes"][0], "orders:*");

    inventory.clients[0].scopes = scopes("admin:*");
    let findings = run(&inventory);
    let on_client: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.code == "wildcard_scope" && f.subject.kind == "client")
        .collect();
    assert_eq!(on_client.len(), 1, "{findings:#?}");
    assert_eq!(on_client[0].severity, Severity::High);
}

#[test]
fn administrative_scope_reported() {
    let mut inventory = clean();
    let mut operator = tenant_key(TenantId::generate());
    operator.kind = KeyKind::Operator;
    operator.tenant_id = None;
    operator.tenant = None;
    operator.scopes = scopes("admin:read,admin:write");
    inventory.keys.push(operator);
    let finding = only(&run(&inventory), "administrative_scope");
    assert_eq!(finding.severity, Severity::High);
    assert!(finding.subject.tenant.is_none());

    inventory.keys[1].scopes = scopes("admin:read");
    let finding = only(&run(&inventory), "administrative_scope");
    assert_eq!(finding.severity, Severity::Medium);
}

#[test]
fn unused_scopes_come_with_narrower_set() {
    let mut inventory = clean();
    let key_id = inventory.keys[0].id;
    inventory.keys[0].scopes = scopes("orders:read,orders:write,customers:read");
    let finding = only(&run(&inventory), "scopes_unused");
    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(
        finding.details["unused_scopes"],
        serde_json::json!(["customers:read", "orders:write"])
    );
    assert_eq!(
        finding.details["suggested_scopes"],
        serde_json::json!(["orders:read"])
    );

    // A wildcard that one exact scope would do is narrowed too.
    inventory.keys[0].scopes = scopes("orders:*");
    let findings = run(&inventory);
    let finding = only(&findings, "scopes_unused");
    assert_eq!(
        finding.details["unused_scopes"],
        serde_json::json!([] as [&str; 0])
    );
    assert_eq!(
        finding.details["suggested_scopes"],
        serde_json::json!(["orders:read"])
    );

    // A key younger than the look-back, or one with no recorded use, is
    // left to the other rules.
    inventory.keys[0].scopes = scopes("orders:read,orders:write");
    inventory.keys[0].created_at = days_ago(10);
    assert!(run(&inventory).is_empty());
    inventory.keys[0].created_at = days_ago(40);
    inventory.scope_uses.remove(&CredentialRef::Key(key_id));
    assert!(run(&inventory).is_empty());
}

#[test]
fn long_token_lifetime_reported() {
    let mut inventory = clean();
    inventory.clients[0].access_token_ttl_seconds = 1801;
    let finding = only(&run(&inventory), "client_token_lifetime_long");
    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(finding.details["access_token_ttl_seconds"], 1801);

    inventory.clients[0].access_token_ttl_seconds = 1800;
    assert!(run(&inventory).is_empty());
}

#[test]
fn old_client_secret_reported() {
    let mut inventory = clean();
    let client_id = inventory.clients[0].id;
    inventory
        .client_secrets
        .insert(client_id, vec![secret(client_id, days_ago(100))]);
    let finding = only(&run(&inventory), "client_secret_not_rotated");
    assert_eq!(finding.details["age_days"], 100);

    // A rotation adds a newer secret; the old one stays live for the grace
    // period, and the client is fine.
    inventory
        .client_secrets
        .get_mut(&client_id)
        .unwrap()
        .push(secret(client_id, days_ago(1)));
    assert!(run(&inventory).is_empty());
}

#[test]
fn expiring_certificate_reported() {
    let mut inventory = clean();
    inventory.certificates[0].not_after = NOW + Duration::days(20);
    let finding = only(&run(&inventory), "certificate_expiring");
    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(finding.subject.tenant.as_deref(), Some("acme"));
    assert_eq!(finding.details["days_left"], 20);

    // Revoked or already expired certificates can no longer be used.
    inventory.certificates[0].revoked_at = Some(days_ago(1));
    assert!(run(&inventory).is_empty());
    inventory.certificates[0].revoked_at = None;
    inventory.certificates[0].not_after = days_ago(1);
    assert!(run(&inventory).is_empty());
}

#[test]
fn expiring_ca_reported() {
    let mut inventory = clean();
    let ca = inventory.ca.as_mut().unwrap();
    ca.not_after = NOW + Duration::days(100);
    let finding = only(&run(&inventory), "ca_expiring");
    assert_eq!(finding.severity, Severity::High);

    inventory.ca.as_mut().unwrap().not_after = days_ago(1);
    let finding = only(&run(&inventory), "ca_expiring");
    assert_eq!(finding.severity, Severity::Critical);
}

#[test]
fn old_signing_key_reported() {
    let mut inventory = clean();
    inventory.signing_keys[0].created_at = days_ago(91);
    let finding = only(&run(&inventory), "signing_key_rotation_overdue");
    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(finding.subject.label.as_deref(), Some("ES256"));
}

#[test]
fn plain_http_listener_reported() {
    let mut inventory = clean();
    let address: SocketAddr = "10.0.0.5:8080".parse().unwrap();
    inventory.listener = Some(ListenerFacts {
        address,
        plain_http: true,
    });
    let finding = only(&run(&inventory), "plain_http_listener");
    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(finding.subject.id, "10.0.0.5:8080");

    inventory.listener = Some(ListenerFacts {
        address: "127.0.0.1:8080".parse().unwrap(),
        plain_http: true,
    });
    let finding = only(&run(&inventory), "plain_http_listener");
    assert_eq!(finding.severity, Severity::Low);
}

#[test]
fn exposed_metrics_listener_reported() {
    let mut inventory = clean();
    inventory.metrics_listener = Some("0.0.0.0:9464".parse().unwrap());
    let finding = only(&run(&inventory), "plain_http_listener");
    assert_eq!(finding.severity, Severity::Low);
    assert_eq!(finding.subject.label.as_deref(), Some("metrics"));
}

#[test]
fn unusable_credentials_skipped() {
    let mut inventory = clean();
    inventory.keys[0].expires_at = None;
    inventory.keys[0].created_at = days_ago(400);
    inventory.keys[0].revoked_at = Some(days_ago(1));
    inventory.clients[0].access_token_ttl_seconds = 86_400;
    inventory.clients[0].revoked_at = Some(days_ago(1));
    assert!(run(&inventory).is_empty());
}

#[test]
fn policy_thresholds_apply() {
    let mut inventory = clean();
    inventory.keys[0].created_at = days_ago(40);
    let strict = AuditPolicy {
        key_rotation_days: 30,
        ..AuditPolicy::default()
    };
    let findings = evaluate(&inventory, &strict, NOW);
    assert_eq!(
        only(&findings, "key_rotation_overdue").details["age_days"],
        40
    );
}

#[test]
fn findings_sorted_most_severe_first() {
    let mut inventory = clean();
    inventory.keys[0].expires_at = None;
    inventory.ca.as_mut().unwrap().not_after = days_ago(1);
    let findings = run(&inventory);
    let severities: Vec<Severity> = findings.iter().map(|f| f.severity).collect();
    assert_eq!(severities, [Severity::Critical, Severity::Low]);
}

#[test]
fn report_json_shape() {
    let mut inventory = clean();
    inventory.keys[0].expires_at = None;
    let report = Report {
        generated_at: NOW,
        tenant: Some("acme".to_owned()),
        policy: AuditPolicy::default(),
        findings: run(&inventory),
    };
    assert!(report.reaches(Severity::Low));
    assert!(!report.reaches(Severity::Medium));
    let value = report.to_json();
    assert_eq!(value["generated_at"], "2026-12-04T12:00:00Z");
    assert_eq!(value["tenant"], "acme");
    assert_eq!(value["policy"]["key_rotation_days"], 90);
    assert_eq!(value["summary"]["total"], 1);
    assert_eq!(value["summary"]["by_severity"]["low"], 1);
    assert_eq!(value["summary"]["by_severity"]["critical"], 0);
    assert_eq!(value["summary"]["highest_severity"], "low");
    let finding = &value["findings"][0];
    assert_eq!(finding["code"], "key_no_expiry");
    assert_eq!(finding["severity"], "low");
    assert_eq!(finding["subject"]["kind"], "key");
    assert_eq!(finding["subject"]["label"], "billing sync");
    assert!(finding["message"].is_string());
    assert!(finding["details"].is_object());
}

#[test]
fn severity_parsed_and_ordered() {
    assert_eq!("high".parse::<Severity>().unwrap(), Severity::High);
    assert!("severe".parse::<Severity>().is_err());
    assert!(Severity::Critical > Severity::High);
    assert!(Severity::Info < Severity::Low);
}

fn trusted_ca(tenant_id: TenantId, revocation_unchecked: bool) -> TrustedCaRecord {
    TrustedCaRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id,
        subject: "CN=Partner CA".to_owned(),
        certificate_pem: String::new(),
        sha256: "ab".repeat(32),
        added_at: days_ago(30),
        crl_files: if revocation_unchecked {
            Vec::new()
        } else {
            vec!["/etc/portcullis/partner.crl".to_owned()]
        },
        revocation_unchecked,
    }
}

#[test]
fn trusted_ca_without_revocation_check_reported() {
    let mut inventory = clean();
    let tenant_id = inventory.clients[0].tenant_id;
    let unchecked = trusted_ca(tenant_id, true);
    inventory.trusted_cas.push(unchecked.clone());

    let finding = only(&run(&inventory), "trusted_ca_revocation_unchecked");

    assert_eq!(finding.severity, Severity::Medium);
    assert_eq!(finding.subject.kind, "trusted_ca");
    assert_eq!(finding.subject.id, unchecked.id.to_string());
    assert_eq!(finding.subject.tenant.as_deref(), Some("acme"));
    assert!(finding.message.contains("--no-crl"), "{}", finding.message);
}
