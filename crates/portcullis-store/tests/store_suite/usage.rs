//! Store cases of usage rollups: hourly and daily counts per credential
//! and tenant, pruning, scope uses and the last day a client was used.

use portcullis_core::ids::{ClientId, KeyId, TenantId};
use portcullis_store::{
    CredentialRef, Granularity, ScopeUse, UsageCount, UsagePoint, UsageQuery, UsageSubject,
};
use time::OffsetDateTime;
use time::macros::datetime;

use super::Fixture;

fn count(
    credential: CredentialRef,
    tenant_id: Option<TenantId>,
    hour: OffsetDateTime,
    requests: i64,
    failures: i64,
) -> UsageCount {
    UsageCount {
        credential,
        tenant_id,
        hour,
        requests,
        failures,
    }
}

fn point(start: OffsetDateTime, requests: i64, failures: i64) -> UsagePoint {
    UsagePoint {
        start,
        requests,
        failures,
    }
}

fn query(subject: UsageSubject, granularity: Granularity) -> UsageQuery {
    UsageQuery {
        subject,
        granularity,
        since: datetime!(2026-11-01 00:00 UTC),
        until: datetime!(2026-12-01 00:00 UTC),
    }
}

pub(super) async fn usage_counts_add_up_by_hour_and_day(fixture: Fixture) {
    let store = fixture.store;
    let acme = TenantId::generate();
    let globex = TenantId::generate();
    let key = CredentialRef::Key(KeyId::generate());
    let client = CredentialRef::Client(ClientId::generate());
    let other_key = CredentialRef::Key(KeyId::generate());
    let operator_key = CredentialRef::Key(KeyId::generate());

    // One batch may name a credential and hour twice, with a time inside
    // the hour; the entries add up.
    store
        .record_usage_counts(&[
            count(key, Some(acme), datetime!(2026-11-10 09:15 UTC), 3, 1),
            count(key, Some(acme), datetime!(2026-11-10 09:59:59 UTC), 2, 0),
            count(key, Some(acme), datetime!(2026-11-10 10:00 UTC), 4, 2),
            count(client, Some(acme), datetime!(2026-11-10 09:30 UTC), 7, 0),
            count(
                other_key,
                Some(globex),
                datetime!(2026-11-10 09:30 UTC),
                100,
                50,
            ),
            count(operator_key, None, datetime!(2026-11-10 09:30 UTC), 1, 0),
        ])
        .await
        .unwrap();
    // A later batch adds to stored rows.
    store
        .record_usage_counts(&[count(
            key,
            Some(acme),
            datetime!(2026-11-11 23:00 UTC),
            1,
            1,
        )])
        .await
        .unwrap();

    let by_hour = store
        .usage_series(&query(UsageSubject::Credential(key), Granularity::Hour))
        .await
        .unwrap();
    assert_eq!(
        by_hour,
        [
            point(datetime!(2026-11-10 09:00 UTC), 5, 1),
            point(datetime!(2026-11-10 10:00 UTC), 4, 2),
            point(datetime!(2026-11-11 23:00 UTC), 1, 1),
        ]
    );
    let by_day = store
        .usage_series(&query(UsageSubject::Credential(key), Granularity::Day))
        .await
        .unwrap();
    assert_eq!(
        by_day,
        [
            point(datetime!(2026-11-10 00:00 UTC), 9, 3),
            point(datetime!(2026-11-11 00:00 UTC), 1, 1),
        ]
    );

    // The tenant adds up its key and its client, and nothing of globex or
    // the operator key.
    let tenant_hours = store
        .usage_series(&query(UsageSubject::Tenant(acme), Granularity::Hour))
        .await
        .unwrap();
    assert_eq!(
        tenant_hours[0],
        point(datetime!(2026-11-10 09:00 UTC), 12, 1)
    );
    let tenant_days = store
        .usage_series(&query(UsageSubject::Tenant(acme), Granularity::Day))
        .await
        .unwrap();
    assert_eq!(
        tenant_days[0],
        point(datetime!(2026-11-10 00:00 UTC), 16, 3)
    );
    assert_eq!(tenant_days[1], point(datetime!(2026-11-11 00:00 UTC), 1, 1));

    // The range is start-inclusive and end-exclusive.
    let narrow = UsageQuery {
        since: datetime!(2026-11-10 10:00 UTC),
        until: datetime!(2026-11-11 23:00 UTC),
        ..query(UsageSubject::Credential(key), Granularity::Hour)
    };
    assert_eq!(
        store.usage_series(&narrow).await.unwrap(),
        [point(datetime!(2026-11-10 10:00 UTC), 4, 2)]
    );

    // A key id and a client id are different credentials even as bare
    // UUIDs, and an empty batch is no error.
    let same_uuid_client = CredentialRef::Client(ClientId::from_uuid(key.uuid()));
    let none = store
        .usage_series(&query(
            UsageSubject::Credential(same_uuid_client),
            Granularity::Day,
        ))
        .await
        .unwrap();
    assert!(none.is_empty());
    store.record_usage_counts(&[]).await.unwrap();
}

pub(super) async fn key_request_totals_per_tenant(fixture: Fixture) {
    let store = fixture.store;
    let acme = TenantId::generate();
    let globex = TenantId::generate();
    let busy = KeyId::generate();
    let quiet = KeyId::generate();
    let client = ClientId::generate();
    let other = KeyId::generate();
    store
        .record_usage_counts(&[
            count(
                CredentialRef::Key(busy),
                Some(acme),
                datetime!(2026-11-03 12:00 UTC),
                50,
                9,
            ),
            count(
                CredentialRef::Key(busy),
                Some(acme),
                datetime!(2026-11-10 09:00 UTC),
                3,
                1,
            ),
            count(
                CredentialRef::Key(busy),
                Some(acme),
                datetime!(2026-11-11 22:00 UTC),
                4,
                0,
            ),
            count(
                CredentialRef::Key(quiet),
                Some(acme),
                datetime!(2026-11-11 08:00 UTC),
                1,
                0,
            ),
            count(
                CredentialRef::Client(client),
                Some(acme),
                datetime!(2026-11-11 08:00 UTC),
                8,
                0,
            ),
            count(
                CredentialRef::Key(other),
                Some(globex),
                datetime!(2026-11-11 08:00 UTC),
                70,
                0,
            ),
        ])
        .await
        .unwrap();

    // Days before `since` are left out, and so are clients and other
    // tenants' keys.
    let mut totals = store
        .key_request_totals(acme, datetime!(2026-11-05 00:00 UTC))
        .await
        .unwrap();
    totals.sort();
    let mut expected = vec![(busy, 7), (quiet, 1)];
    expected.sort();
    assert_eq!(totals, expected);

    let none = store
        .key_request_totals(TenantId::generate(), datetime!(2026-11-01 00:00 UTC))
        .await
        .unwrap();
    assert!(none.is_empty());
}

pub(super) async fn large_usage_batch_written(fixture: Fixture) {
    let store = fixture.store;
    let tenant = TenantId::generate();
    let hour = datetime!(2026-11-20 08:00 UTC);
    // More rows than one statement takes, so the batch is split.
    let batch: Vec<UsageCount> = (0..2500)
        .map(|_| {
            count(
                CredentialRef::Key(KeyId::generate()),
                Some(tenant),
                hour,
                2,
                1,
            )
        })
        .collect();
    store.record_usage_counts(&batch).await.unwrap();
    let total = store
        .usage_series(&query(UsageSubject::Tenant(tenant), Granularity::Day))
        .await
        .unwrap();
    assert_eq!(total, [point(datetime!(2026-11-20 00:00 UTC), 5000, 2500)]);
}

pub(super) async fn old_usage_pruned(fixture: Fixture) {
    let store = fixture.store;
    let key = CredentialRef::Key(KeyId::generate());
    store
        .record_usage_counts(&[
            count(key, None, datetime!(2026-11-02 05:00 UTC), 1, 0),
            count(key, None, datetime!(2026-11-20 05:00 UTC), 2, 0),
        ])
        .await
        .unwrap();
    store
        .record_scope_uses(&[
            scope_use(key, datetime!(2026-11-02 00:00 UTC), "orders:read"),
            scope_use(key, datetime!(2026-11-20 00:00 UTC), "orders:write"),
        ])
        .await
        .unwrap();

    // Hours before the 10th go; days and scope uses before the 1st stay.
    let deleted = store
        .prune_usage(
            datetime!(2026-11-10 00:00 UTC),
            datetime!(2026-11-01 00:00 UTC),
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let hours = store
        .usage_series(&query(UsageSubject::Credential(key), Granularity::Hour))
        .await
        .unwrap();
    assert_eq!(hours, [point(datetime!(2026-11-20 05:00 UTC), 2, 0)]);
    let days = store
        .usage_series(&query(UsageSubject::Credential(key), Granularity::Day))
        .await
        .unwrap();
    assert_eq!(days.len(), 2);

    // Then days and scope uses before the 10th go as well.
    let deleted = store
        .prune_usage(
            datetime!(2026-11-10 00:00 UTC),
            datetime!(2026-11-10 00:00 UTC),
        )
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    let days = store
        .usage_series(&query(UsageSubject::Credential(key), Granularity::Day))
        .await
        .unwrap();
    assert_eq!(days, [point(datetime!(2026-11-20 00:00 UTC), 2, 0)]);
    let scopes = store
        .scope_uses_since(datetime!(2026-01-01 00:00 UTC))
        .await
        .unwrap();
    assert_eq!(scopes, [(key, "orders:write".to_owned())]);
}

fn scope_use(credential: CredentialRef, day: OffsetDateTime, scope: &str) -> ScopeUse {
    ScopeUse {
        credential,
        day,
        scope: scope.to_owned(),
    }
}

pub(super) async fn scope_uses_recorded_once(fixture: Fixture) {
    let store = fixture.store;
    let key = CredentialRef::Key(KeyId::generate());
    let client = CredentialRef::Client(ClientId::generate());
    let day = datetime!(2026-11-20 00:00 UTC);
    let earlier = datetime!(2026-11-01 00:00 UTC);
    store
        .record_scope_uses(&[
            scope_use(key, day, "orders:read"),
            scope_use(key, day, "orders:read"),
            scope_use(key, earlier, "orders:write"),
            scope_use(client, day, "invoices:read"),
        ])
        .await
        .unwrap();
    // A second flush of the same use is ignored.
    store
        .record_scope_uses(&[scope_use(key, day, "orders:read")])
        .await
        .unwrap();

    let mut all = store.scope_uses_since(earlier).await.unwrap();
    all.sort();
    let mut expected = vec![
        (key, "orders:read".to_owned()),
        (key, "orders:write".to_owned()),
        (client, "invoices:read".to_owned()),
    ];
    expected.sort();
    assert_eq!(all, expected);

    let recent = store.scope_uses_since(day).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert!(!recent.contains(&(key, "orders:write".to_owned())));
    store.record_scope_uses(&[]).await.unwrap();
}

pub(super) async fn client_last_use_day_found(fixture: Fixture) {
    let store = fixture.store;
    let client = ClientId::generate();
    let unused = ClientId::generate();
    store
        .record_usage_counts(&[
            count(
                CredentialRef::Client(client),
                None,
                datetime!(2026-11-02 05:00 UTC),
                1,
                0,
            ),
            count(
                CredentialRef::Client(client),
                None,
                datetime!(2026-11-05 05:00 UTC),
                1,
                1,
            ),
            count(
                CredentialRef::Key(KeyId::from_uuid(unused.as_uuid())),
                None,
                datetime!(2026-11-09 05:00 UTC),
                1,
                0,
            ),
        ])
        .await
        .unwrap();
    let last = store.client_last_use_days().await.unwrap();
    assert_eq!(last, [(client, datetime!(2026-11-05 00:00 UTC))]);
}
