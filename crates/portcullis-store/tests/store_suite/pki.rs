//! Store cases of the internal CA: the CA record, issued certificates,
//! their revocation and the partner CAs trusted per tenant.

use portcullis_core::ids::ClientId;
use portcullis_core::oauth::ClientRecord;
use portcullis_core::pki::{CaRecord, CertificateRecord, CertificateSerial, TrustedCaRecord};
use portcullis_store::{AuditAction, CertificateFilter, StoreError};
use time::{Duration, OffsetDateTime};

use super::{Fixture, audit_of, context, create_client, create_tenant, now};

fn ca_record(at: OffsetDateTime) -> CaRecord {
    CaRecord {
        id: uuid::Uuid::now_v7(),
        certificate_pem: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
            .to_owned(),
        sealed_private_key: vec![9, 8, 7],
        created_at: at,
    }
}

fn certificate(client: &ClientRecord, serial: &str, at: OffsetDateTime) -> CertificateRecord {
    CertificateRecord {
        serial: serial.parse().unwrap(),
        client_id: client.id,
        tenant_id: client.tenant_id,
        subject: format!("CN={}", client.id),
        subject_alt_names: format!("URI:urn:portcullis:client:{}", client.id),
        not_before: at,
        not_after: at + Duration::days(90),
        sha256: format!("{serial:0>64}"),
        certificate_pem: format!("PEM of {serial}"),
        created_at: at,
        revoked_at: None,
        revoked_reason: None,
    }
}

pub(super) async fn ca_stored_once(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    assert_eq!(store.active_ca().await.unwrap(), None);

    let ca = ca_record(at);
    store.insert_ca(&ca, &context(at)).await.unwrap();
    assert_eq!(store.active_ca().await.unwrap(), Some(ca.clone()));

    let second = store.insert_ca(&ca_record(at), &context(at)).await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    assert_eq!(store.active_ca().await.unwrap(), Some(ca.clone()));

    let records = store
        .list_audit(&audit_of(ca.id.to_string()))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, AuditAction::CaCreated);
}

pub(super) async fn certificates_stored_and_listed(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let first = create_client(&store, &acme).await;
    let second = create_client(&store, &globex).await;

    let a = certificate(&first, "01aa", at);
    let b = certificate(&first, "02bb", at + Duration::seconds(1));
    let c = certificate(&second, "03cc", at + Duration::seconds(2));
    for cert in [&a, &b, &c] {
        store.insert_certificate(cert, &context(at)).await.unwrap();
    }

    assert_eq!(
        store.find_certificate(&a.serial).await.unwrap(),
        Some(a.clone())
    );
    let missing: CertificateSerial = "ff".parse().unwrap();
    assert_eq!(store.find_certificate(&missing).await.unwrap(), None);
    assert_eq!(
        store
            .list_certificates(CertificateFilter::Client(first.id))
            .await
            .unwrap(),
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        store
            .list_certificates(CertificateFilter::Tenant(globex.id))
            .await
            .unwrap(),
        vec![c.clone()]
    );
    assert_eq!(
        store
            .list_certificates(CertificateFilter::All)
            .await
            .unwrap(),
        vec![c.clone(), b.clone(), a.clone()]
    );

    let records = store
        .list_audit(&audit_of("01aa".to_owned()))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, AuditAction::CertificateIssued);
    assert_eq!(records[0].tenant_id, Some(acme.id));
}

pub(super) async fn invalid_certificates_rejected(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let cert = certificate(&client, "0a0b", at);
    store.insert_certificate(&cert, &context(at)).await.unwrap();

    let same_serial = store.insert_certificate(&cert, &context(at)).await;
    assert!(
        matches!(same_serial, Err(StoreError::Conflict(_))),
        "{same_serial:?}"
    );
    let same_thumbprint = CertificateRecord {
        serial: "0c0d".parse().unwrap(),
        ..cert.clone()
    };
    let error = store
        .insert_certificate(&same_thumbprint, &context(at))
        .await;
    assert!(matches!(error, Err(StoreError::Conflict(_))), "{error:?}");

    let unknown_client = CertificateRecord {
        client_id: ClientId::generate(),
        ..certificate(&client, "0e0f", at)
    };
    let error = store
        .insert_certificate(&unknown_client, &context(at))
        .await;
    assert!(matches!(error, Err(StoreError::NotFound(_))), "{error:?}");
}

pub(super) async fn certificate_revocation_reaches_feed(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let acme = create_tenant(&store, "acme").await;
    let client = create_client(&store, &acme).await;
    let live = certificate(&client, "1111", at);
    let revoked = certificate(&client, "2222", at);
    let expired = CertificateRecord {
        not_before: at - Duration::days(100),
        not_after: at - Duration::days(10),
        ..certificate(&client, "3333", at)
    };
    for cert in [&live, &revoked, &expired] {
        store.insert_certificate(cert, &context(at)).await.unwrap();
    }
    let cursor = store.latest_change().await.unwrap();

    let later = at + Duration::seconds(5);
    let record = store
        .revoke_certificate(&revoked.serial, "keyCompromise", &context(later))
        .await
        .unwrap();
    assert_eq!(record.revoked_at, Some(later));
    assert_eq!(record.revoked_reason.as_deref(), Some("keyCompromise"));
    assert!(!record.is_valid_at(later));
    store
        .revoke_certificate(&expired.serial, "superseded", &context(later))
        .await
        .unwrap();

    let again = store
        .revoke_certificate(&revoked.serial, "again", &context(later))
        .await;
    assert!(matches!(again, Err(StoreError::Revoked(_))), "{again:?}");
    let missing = store
        .revoke_certificate(&"abcd".parse().unwrap(), "gone", &context(later))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    let serials: Vec<_> = changes
        .iter()
        .filter_map(|c| c.cert_serial.clone())
        .collect();
    assert_eq!(serials, vec!["2222".to_owned(), "3333".to_owned()]);
    assert_eq!(changes[0].client_id, Some(client.id));
    assert_eq!(changes[0].tenant_id, Some(acme.id));

    // The CRL lists revoked certificates until they expire.
    let listed = store.revoked_certificates(later).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].serial, revoked.serial);
    assert_eq!(listed[0].revoked_at, later);
    assert_eq!(
        listed[0].reason,
        Some(portcullis_core::pki::RevocationReason::KeyCompromise)
    );

    let records = store
        .list_audit(&audit_of("2222".to_owned()))
        .await
        .unwrap();
    let actions: Vec<_> = records.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::CertificateRevoked,
            AuditAction::CertificateIssued
        ]
    );
    assert_eq!(records[0].details["reason"], "keyCompromise");
}

pub(super) async fn trusted_cas_added_per_tenant(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let trusted = |tenant_id, sha256: &str, added_at| TrustedCaRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id,
        subject: "CN=Partner CA".to_owned(),
        certificate_pem: "PEM".to_owned(),
        sha256: sha256.to_owned(),
        added_at,
        crl_files: Vec::new(),
        revocation_unchecked: false,
    };
    let first = trusted(acme.id, "aa", at);
    let second = trusted(globex.id, "aa", at + Duration::seconds(1));
    store.insert_trusted_ca(&first, &context(at)).await.unwrap();
    store
        .insert_trusted_ca(&second, &context(at))
        .await
        .unwrap();

    let duplicate = store
        .insert_trusted_ca(&trusted(acme.id, "aa", at), &context(at))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );
    let unknown = store
        .insert_trusted_ca(
            &trusted(portcullis_core::ids::TenantId::generate(), "bb", at),
            &context(at),
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );

    assert_eq!(
        store.list_trusted_cas(Some(acme.id)).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(
        store.list_trusted_cas(None).await.unwrap(),
        vec![first.clone(), second]
    );
    let records = store
        .list_audit(&audit_of(first.id.to_string()))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, AuditAction::TrustedCaAdded);
}

pub(super) async fn trusted_ca_changed_and_removed(fixture: Fixture) {
    let store = fixture.store;
    let at = now();
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let ca = TrustedCaRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id: acme.id,
        subject: "CN=Partner CA".to_owned(),
        certificate_pem: "PEM".to_owned(),
        sha256: "cc".to_owned(),
        added_at: at,
        crl_files: vec![
            "/etc/partner/a.crl".to_owned(),
            "/etc/partner/b.crl".to_owned(),
        ],
        revocation_unchecked: false,
    };
    let cursor = store.latest_change().await.unwrap();
    store.insert_trusted_ca(&ca, &context(at)).await.unwrap();
    assert_eq!(
        store.list_trusted_cas(Some(acme.id)).await.unwrap(),
        vec![ca.clone()]
    );

    let changed = store
        .set_trusted_ca_revocation(acme.id, ca.id, &[], true, &context(at))
        .await
        .unwrap();
    assert!(changed.revocation_unchecked);
    assert!(changed.crl_files.is_empty());
    assert_eq!(
        store.list_trusted_cas(Some(acme.id)).await.unwrap(),
        vec![changed.clone()]
    );

    // Another tenant cannot change or remove acme's CA.
    let foreign = store
        .set_trusted_ca_revocation(globex.id, ca.id, &[], false, &context(at))
        .await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound(_))),
        "{foreign:?}"
    );
    let foreign = store
        .remove_trusted_ca(globex.id, ca.id, &context(at))
        .await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound(_))),
        "{foreign:?}"
    );

    let removed = store
        .remove_trusted_ca(acme.id, ca.id, &context(at))
        .await
        .unwrap();
    assert_eq!(removed, changed);
    assert!(store.list_trusted_cas(None).await.unwrap().is_empty());
    let again = store.remove_trusted_ca(acme.id, ca.id, &context(at)).await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");

    let changes = store.changes_since(cursor, Duration::ZERO).await.unwrap();
    let trust_changes: Vec<_> = changes.iter().filter_map(|c| c.trusted_ca_id).collect();
    assert_eq!(trust_changes, vec![ca.id, ca.id, ca.id]);

    let records = store
        .list_audit(&audit_of(ca.id.to_string()))
        .await
        .unwrap();
    let actions: Vec<_> = records.iter().map(|record| record.action).collect();
    assert!(
        actions.contains(&AuditAction::TrustedCaAdded),
        "{actions:?}"
    );
    assert!(
        actions.contains(&AuditAction::TrustedCaRevocationChanged),
        "{actions:?}"
    );
    assert!(
        actions.contains(&AuditAction::TrustedCaRemoved),
        "{actions:?}"
    );
    let changed_record = records
        .iter()
        .find(|record| record.action == AuditAction::TrustedCaRevocationChanged)
        .unwrap();
    assert_eq!(changed_record.details["revocation_unchecked"], true);
}
