//! Store cases of anomaly alerts: stored alerts with filters and paging,
//! the webhook outbox and the networks each credential was used from.

use portcullis_core::ids::{AlertId, DeliveryId, TenantId};
use portcullis_store::{
    AlertFilter, AlertRecord, AlertRule, AlertSeverity, AttemptOutcome, DeliveryState, NewDelivery,
    StoreError,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::{Fixture, create_tenant, now};

fn alert(
    tenant_id: Option<TenantId>,
    credential: &str,
    rule: AlertRule,
    at: OffsetDateTime,
) -> AlertRecord {
    AlertRecord {
        id: AlertId::generate(),
        at,
        tenant_id,
        credential: Some(credential.to_owned()),
        rule,
        severity: AlertSeverity::Warning,
        details: json!({"count": 42}),
    }
}

fn delivery(webhook: &str) -> NewDelivery {
    NewDelivery {
        id: DeliveryId::generate(),
        webhook: webhook.to_owned(),
        body: format!("{{\"webhook\":\"{webhook}\"}}"),
    }
}

pub(super) async fn alerts_filtered_and_paged(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let globex = create_tenant(&store, "globex").await;
    let start = now();
    let mut acme_ids = Vec::new();
    for minute in 0..5 {
        let record = alert(
            Some(acme.id),
            "key-a",
            AlertRule::RateSpike,
            start + Duration::minutes(minute),
        );
        store.insert_alert(&record, &[]).await.unwrap();
        acme_ids.push(record.id);
    }
    let mut other = alert(Some(globex.id), "key-b", AlertRule::NewNetwork, start);
    other.severity = AlertSeverity::Critical;
    store.insert_alert(&other, &[]).await.unwrap();

    let all = store
        .list_alerts(&AlertFilter {
            limit: 100,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].id, other.id, "newest id first");
    assert_eq!(all[1], *alert_with_id(&all, acme_ids[4]));
    assert_eq!(all[1].details, json!({"count": 42}));

    let by_tenant = AlertFilter {
        tenant_id: Some(acme.id),
        limit: 2,
        ..AlertFilter::default()
    };
    let first_page = store.list_alerts(&by_tenant).await.unwrap();
    let ids: Vec<AlertId> = first_page.iter().map(|alert| alert.id).collect();
    assert_eq!(ids, vec![acme_ids[4], acme_ids[3]]);
    let second_page = store
        .list_alerts(&AlertFilter {
            before: Some(acme_ids[3]),
            ..by_tenant.clone()
        })
        .await
        .unwrap();
    let ids: Vec<AlertId> = second_page.iter().map(|alert| alert.id).collect();
    assert_eq!(ids, vec![acme_ids[2], acme_ids[1]]);

    let in_window = store
        .list_alerts(&AlertFilter {
            since: Some(start + Duration::minutes(1)),
            until: Some(start + Duration::minutes(3)),
            limit: 100,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<AlertId> = in_window.iter().map(|alert| alert.id).collect();
    assert_eq!(
        ids,
        vec![acme_ids[2], acme_ids[1]],
        "since is inclusive, until is not"
    );

    for (filter, expected) in [
        (
            AlertFilter {
                rule: Some(AlertRule::NewNetwork),
                limit: 100,
                ..AlertFilter::default()
            },
            vec![other.id],
        ),
        (
            AlertFilter {
                severity: Some(AlertSeverity::Critical),
                limit: 100,
                ..AlertFilter::default()
            },
            vec![other.id],
        ),
        (
            AlertFilter {
                credential: Some("key-b".to_owned()),
                limit: 100,
                ..AlertFilter::default()
            },
            vec![other.id],
        ),
    ] {
        let found = store.list_alerts(&filter).await.unwrap();
        let ids: Vec<AlertId> = found.iter().map(|alert| alert.id).collect();
        assert_eq!(ids, expected, "filter {filter:?}");
    }

    let again = store.insert_alert(&other, &[]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

fn alert_with_id(alerts: &[AlertRecord], id: AlertId) -> &AlertRecord {
    alerts.iter().find(|alert| alert.id == id).unwrap()
}

pub(super) async fn deliveries_claimed_and_finished(fixture: Fixture) {
    let store = fixture.store;
    let start = now();
    let record = alert(None, "key-a", AlertRule::SourceFailures, start);
    let first = delivery("hook-1");
    let second = delivery("hook-2");
    store
        .insert_alert(&record, &[first.clone(), second.clone()])
        .await
        .unwrap();

    let stored = store.list_deliveries(record.id).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|d| d.state == DeliveryState::Pending));
    assert!(stored.iter().all(|d| d.next_attempt_at == start));

    let early = store
        .claim_deliveries(start - Duration::seconds(1), start, 10)
        .await
        .unwrap();
    assert!(early.is_empty(), "nothing is due before the alert");

    let lease = start + Duration::seconds(60);
    let claimed = store.claim_deliveries(start, lease, 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "the limit applies");
    let claimed_more = store.claim_deliveries(start, lease, 10).await.unwrap();
    assert_eq!(claimed_more.len(), 1, "a claimed row is not claimed twice");
    assert_ne!(claimed[0].id, claimed_more[0].id);
    assert_eq!(
        claimed[0].body,
        stored_body(&[&first, &second], claimed[0].id)
    );
    let none_left = store
        .claim_deliveries(start + Duration::seconds(59), lease, 10)
        .await
        .unwrap();
    assert!(none_left.is_empty(), "leased rows wait for the lease");

    let retry_at = start + Duration::seconds(5);
    store
        .finish_attempt(
            first.id,
            &AttemptOutcome::Retry {
                next_attempt_at: retry_at,
                error: "HTTP 500".to_owned(),
            },
        )
        .await
        .unwrap();
    store
        .finish_attempt(second.id, &AttemptOutcome::Delivered { at: start })
        .await
        .unwrap();
    let again = store.claim_deliveries(retry_at, lease, 10).await.unwrap();
    let ids: Vec<DeliveryId> = again.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![first.id], "the retried row is due again");
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("HTTP 500"));

    store
        .finish_attempt(
            first.id,
            &AttemptOutcome::Failed {
                at: retry_at,
                error: "HTTP 410".to_owned(),
            },
        )
        .await
        .unwrap();
    let finished = store.list_deliveries(record.id).await.unwrap();
    let first_row = finished.iter().find(|d| d.id == first.id).unwrap();
    assert_eq!(first_row.state, DeliveryState::Failed);
    assert_eq!(first_row.attempts, 2);
    assert_eq!(first_row.finished_at, Some(retry_at));
    let second_row = finished.iter().find(|d| d.id == second.id).unwrap();
    assert_eq!(second_row.state, DeliveryState::Delivered);
    assert_eq!(second_row.attempts, 1);

    let late = store
        .finish_attempt(second.id, &AttemptOutcome::Delivered { at: start })
        .await;
    assert!(
        matches!(late, Err(StoreError::NotFound(_))),
        "a finished delivery is left alone: {late:?}"
    );
    let after_all = store
        .claim_deliveries(start + Duration::days(1), lease, 10)
        .await
        .unwrap();
    assert!(after_all.is_empty(), "finished rows are never due");
}

fn stored_body(deliveries: &[&NewDelivery], id: DeliveryId) -> String {
    deliveries
        .iter()
        .find(|delivery| delivery.id == id)
        .map(|delivery| delivery.body.clone())
        .unwrap()
}

pub(super) async fn credential_networks_bounded(fixture: Fixture) {
    let store = fixture.store;
    let start = now();
    let new = store
        .record_network("key-a", "192.0.2.0/24", start, 2)
        .await
        .unwrap();
    assert!(new, "the first sighting is new");
    let seen_again = store
        .record_network("key-a", "192.0.2.0/24", start + Duration::minutes(1), 2)
        .await
        .unwrap();
    assert!(!seen_again, "a known network is not new");
    let other_key = store
        .record_network("key-b", "192.0.2.0/24", start, 2)
        .await
        .unwrap();
    assert!(other_key, "networks are per credential");

    let networks = store.credential_networks("key-a").await.unwrap();
    assert_eq!(networks.len(), 1);
    assert_eq!(networks[0].first_seen_at, start);
    assert_eq!(networks[0].last_seen_at, start + Duration::minutes(1));

    store
        .record_network("key-a", "198.51.100.0/24", start + Duration::minutes(2), 2)
        .await
        .unwrap();
    store
        .record_network("key-a", "203.0.113.0/24", start + Duration::minutes(3), 2)
        .await
        .unwrap();
    let networks = store.credential_networks("key-a").await.unwrap();
    let names: Vec<&str> = networks.iter().map(|n| n.network.as_str()).collect();
    assert_eq!(
        names,
        vec!["198.51.100.0/24", "203.0.113.0/24"],
        "the least recently used network is forgotten past the maximum"
    );
    assert_eq!(store.credential_networks("key-b").await.unwrap().len(), 1);
}

pub(super) async fn first_network_sighting_wins_once(fixture: Fixture) {
    let other = fixture.open_another().await;
    let store = fixture.store;
    let at = now();
    let mut sightings = tokio::task::JoinSet::new();
    for node in [store.clone(), other.clone(), store.clone(), other.clone()] {
        sightings.spawn(async move {
            node.record_network("key-a", "203.0.113.0/24", at, 10)
                .await
                .unwrap()
        });
    }
    let mut new_count = 0;
    while let Some(is_new) = sightings.join_next().await {
        if is_new.unwrap() {
            new_count += 1;
        }
    }
    assert_eq!(new_count, 1, "exactly one writer sees the network as new");
    other.close().await;
}

pub(super) async fn old_alerts_pruned_unless_pending(fixture: Fixture) {
    let store = fixture.store;
    let start = now();
    let old_delivered = alert(
        None,
        "key-a",
        AlertRule::RateSpike,
        start - Duration::days(100),
    );
    let old_pending = alert(
        None,
        "key-b",
        AlertRule::RateSpike,
        start - Duration::days(100),
    );
    let recent = alert(None, "key-c", AlertRule::RateSpike, start);
    let delivered = delivery("hook-1");
    store
        .insert_alert(&old_delivered, std::slice::from_ref(&delivered))
        .await
        .unwrap();
    store
        .finish_attempt(delivered.id, &AttemptOutcome::Delivered { at: start })
        .await
        .unwrap();
    store
        .insert_alert(&old_pending, &[delivery("hook-1")])
        .await
        .unwrap();
    store.insert_alert(&recent, &[]).await.unwrap();

    let pruned = store
        .prune_alerts(start - Duration::days(90))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left = store
        .list_alerts(&AlertFilter {
            limit: 10,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    let ids: Vec<AlertId> = left.iter().map(|alert| alert.id).collect();
    assert_eq!(ids, vec![recent.id, old_pending.id]);
    let deliveries = store.list_deliveries(old_delivered.id).await.unwrap();
    assert!(deliveries.is_empty(), "deliveries go with their alert");
}
