//! Store cases of the audit hash chain. They cover verification of an
//! intact chain and the detection of edited, deleted and reordered records,
//! of a cut tail, and of a head row deleted, reset, forged or put back.
//! They also cover linear chaining with two writers, the one-time seal that
//! chains records from before the chain, pruning with a checkpoint, and
//! paged queries.
//!
//! Tampering goes straight to the database, as someone with write access
//! to it but without the master key would do.

use portcullis_core::ids::AuditId;
use portcullis_store::{
    AuditAction, AuditEvent, AuditQuery, BreakKind, ChainSummary, Store, StoreError,
};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use time::{Duration, OffsetDateTime};

use super::{Fixture, Place, context, create_tenant, now};

/// Runs SQL statements on the test database past the store.
async fn tamper(place: &Place, statements: &[&str]) {
    match place {
        Place::Sqlite(path) => {
            let options = SqliteConnectOptions::new().filename(path);
            let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
            for statement in statements {
                sqlx::query(AssertSqlSafe(*statement))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            connection.close().await.unwrap();
        }
        Place::Postgres(url) => {
            let mut connection = PgConnection::connect(url).await.unwrap();
            for statement in statements {
                sqlx::query(AssertSqlSafe(*statement))
                    .execute(&mut connection)
                    .await
                    .unwrap();
            }
            connection.close().await.unwrap();
        }
    }
}

fn failure(at: OffsetDateTime, target: &str) -> AuditEvent {
    AuditEvent {
        id: AuditId::generate(),
        at,
        actor: "anonymous".to_owned(),
        action: AuditAction::AuthFailed,
        tenant_id: None,
        target: Some(target.to_owned()),
        remote_addr: Some("203.0.113.9".to_owned()),
        details: json!({ "code": "not_found", "surface": "gateway" }),
    }
}

/// Writes four records: a tenant creation and three failures.
async fn four_records(store: &Store) {
    create_tenant(store, "acme").await;
    let at = now();
    let batch: Vec<AuditEvent> = (0..3)
        .map(|index| failure(at + Duration::seconds(index), "pc_test_abcd"))
        .collect();
    store.append_audit(&batch).await.unwrap();
}

async fn verified(store: &Store) -> ChainSummary {
    store.verify_audit_chain(None).await.unwrap().unwrap()
}

async fn broken(store: &Store) -> portcullis_store::ChainBreak {
    store.verify_audit_chain(None).await.unwrap().unwrap_err()
}

/// The SQL that sets the head row back to the state of a new database:
/// every field zero and no MAC.
fn reset_head(place: &Place) -> &'static str {
    match place {
        Place::Sqlite(_) => {
            "UPDATE audit_chain SET head_seq = 0, head_hash = zeroblob(32), checkpoint_seq = 0, \
             checkpoint_hash = zeroblob(32), mac = NULL"
        }
        Place::Postgres(_) => {
            "UPDATE audit_chain SET head_seq = 0, head_hash = decode(repeat('00', 32), 'hex'), \
             checkpoint_seq = 0, checkpoint_hash = decode(repeat('00', 32), 'hex'), mac = NULL"
        }
    }
}

/// Cuts record 4, the newest of [`four_records`], and moves the head back
/// to record 3 without the master key.
const ROLL_BACK_HEAD: [&str; 2] = [
    "UPDATE audit_chain SET head_seq = 3, head_hash = (SELECT hash FROM audit_events WHERE seq = 3)",
    "DELETE FROM audit_events WHERE seq = 4",
];

/// Returns the number of records that have no sequence number.
async fn unchained_count(place: &Place) -> i64 {
    let statement = "SELECT COUNT(*) AS n FROM audit_events WHERE seq IS NULL";
    match place {
        Place::Sqlite(path) => {
            let options = SqliteConnectOptions::new().filename(path);
            let mut connection = SqliteConnection::connect_with(&options).await.unwrap();
            let row = sqlx::query(statement)
                .fetch_one(&mut connection)
                .await
                .unwrap();
            connection.close().await.unwrap();
            row.get("n")
        }
        Place::Postgres(url) => {
            let mut connection = PgConnection::connect(url).await.unwrap();
            let row = sqlx::query(statement)
                .fetch_one(&mut connection)
                .await
                .unwrap();
            connection.close().await.unwrap();
            row.get("n")
        }
    }
}

pub(super) async fn audit_chain_intact_after_changes(fixture: Fixture) {
    let store = fixture.store;
    let empty = verified(&store).await;
    assert_eq!(empty.records, 0);
    assert_eq!(empty.head_seq, 0);

    four_records(&store).await;
    // Details that PostgreSQL's jsonb stores in its own form: reordered
    // keys, numbers, nested values and characters outside ASCII.
    let varied = AuditEvent {
        details: json!({
            "zeta": [1.5, -2, 1e3, {"b": null, "a": true}],
            "alpha": "line\u{2028}sep \u{85} \u{202e} 東京 ✓ \"quoted\" \\",
            "count": 18_446_744_073_709_551_615_u64,
        }),
        ..failure(now(), "pc_test_abcd")
    };
    store.append_audit(&[varied]).await.unwrap();
    let summary = verified(&store).await;
    assert_eq!(summary.records, 5);
    assert_eq!(summary.first_seq, Some(1));
    assert_eq!(summary.head_seq, 5);
    assert_eq!(summary.checkpoint_seq, 0);

    let records = store
        .query_audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let seqs: Vec<i64> = records.iter().map(|record| record.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(records[1].prev_hash, records[0].hash);
    assert_eq!(summary.head_hash, records[4].hash);
}

pub(super) async fn audit_chain_edited_record_detected(fixture: Fixture) {
    four_records(&fixture.store).await;
    tamper(
        &fixture.place,
        &["UPDATE audit_events SET remote_addr = '198.51.100.1' WHERE seq = 3"],
    )
    .await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.seq, 3);
    assert_eq!(found.kind, BreakKind::Edited);
    assert_eq!(found.code(), "edited");
    assert!(found.id.is_some());
    assert!(found.to_string().contains("record 3"), "{found}");
}

pub(super) async fn audit_chain_deleted_record_detected(fixture: Fixture) {
    four_records(&fixture.store).await;
    tamper(&fixture.place, &["DELETE FROM audit_events WHERE seq = 2"]).await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.seq, 3);
    assert_eq!(found.kind, BreakKind::Missing { expected: 2 });
    assert!(found.to_string().contains("records 2 to 2"), "{found}");
}

pub(super) async fn audit_chain_reordered_records_detected(fixture: Fixture) {
    four_records(&fixture.store).await;
    // Swap the places of records 2 and 3, through a free number because
    // sequence numbers are unique.
    tamper(
        &fixture.place,
        &[
            "UPDATE audit_events SET seq = 1000 WHERE seq = 2",
            "UPDATE audit_events SET seq = 2 WHERE seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE seq = 1000",
        ],
    )
    .await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.seq, 2);
    assert_eq!(found.kind, BreakKind::OutOfOrder { follows: 3 });
    assert_eq!(found.code(), "out_of_order");
}

pub(super) async fn audit_chain_deleted_tail_detected(fixture: Fixture) {
    four_records(&fixture.store).await;
    tamper(&fixture.place, &["DELETE FROM audit_events WHERE seq = 4"]).await;
    let found = broken(&fixture.store).await;
    assert_eq!(
        found.kind,
        BreakKind::TruncatedTail {
            first_missing: 4,
            head_seq: 4
        }
    );
    assert_eq!(found.code(), "truncated_tail");
}

pub(super) async fn audit_chain_linear_with_two_writers(fixture: Fixture) {
    let first = fixture.store.clone();
    let second = fixture.open_another().await;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in [first.clone(), second.clone()] {
        tasks.spawn(async move {
            for index in 0..10 {
                let event = failure(now(), &format!("writer-{index}"));
                writer.append_audit(&[event]).await.unwrap();
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let summary = verified(&first).await;
    assert_eq!(summary.records, 20);
    assert_eq!(summary.head_seq, 20);
    second.close().await;
}

pub(super) async fn audit_chain_reset_head_not_rechained(fixture: Fixture) {
    // Someone with write access removes every hash, resets the head and
    // edits a record, hoping that the next start chains the records again.
    four_records(&fixture.store).await;
    tamper(
        &fixture.place,
        &[
            "UPDATE audit_events SET seq = NULL, prev_hash = NULL, hash = NULL",
            "UPDATE audit_events SET remote_addr = '198.51.100.1' WHERE action = 'auth.failed'",
            reset_head(&fixture.place),
        ],
    )
    .await;
    let reopened = fixture.open_another().await;
    let found = broken(&reopened).await;
    assert_eq!(found.kind, BreakKind::HeadUnsealed);
    assert_eq!(found.code(), "head_unsealed");
    let at_start = reopened.check_audit_head().await.unwrap().unwrap_err();
    assert_eq!(at_start.kind, BreakKind::HeadUnsealed);
    assert_eq!(
        unchained_count(&fixture.place).await,
        4,
        "verify wrote nothing"
    );

    let error = reopened
        .append_audit(&[failure(now(), "x")])
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::AuditChainBroken(ref b) if b.kind == BreakKind::HeadUnsealed),
        "{error:?}"
    );
    assert_eq!(
        unchained_count(&fixture.place).await,
        4,
        "append wrote nothing"
    );
    reopened.close().await;
}

pub(super) async fn audit_chain_removed_hash_stays_broken(fixture: Fixture) {
    four_records(&fixture.store).await;
    tamper(
        &fixture.place,
        &["UPDATE audit_events SET seq = NULL, prev_hash = NULL, hash = NULL WHERE seq = 4"],
    )
    .await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::Unchained);
    assert!(found.id.is_some());

    let reopened = fixture.open_another().await;
    assert_eq!(broken(&reopened).await.kind, BreakKind::Unchained);
    let at_start = reopened.check_audit_head().await.unwrap().unwrap_err();
    assert_eq!(at_start.kind, BreakKind::Unchained);
    // Sealing does not chain a record that lost its hash after the chain
    // started.
    let error = reopened
        .seal_audit_chain(&context(now()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(unchained_count(&fixture.place).await, 1);
    reopened.close().await;
}

pub(super) async fn audit_chain_deleted_head_detected(fixture: Fixture) {
    four_records(&fixture.store).await;
    tamper(&fixture.place, &["DELETE FROM audit_chain"]).await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::HeadMissing);
    assert_eq!(found.code(), "head_missing");
    let at_start = fixture.store.check_audit_head().await.unwrap().unwrap_err();
    assert_eq!(at_start.kind, BreakKind::HeadMissing);
    let error = fixture
        .store
        .append_audit(&[failure(now(), "x")])
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::AuditChainBroken(_)),
        "{error:?}"
    );
}

pub(super) async fn audit_chain_rolled_back_head_detected(fixture: Fixture) {
    // Cutting the newest record and moving the head back to the one before
    // it leaves a chain that verifies, but the head no longer matches its
    // MAC.
    four_records(&fixture.store).await;
    tamper(&fixture.place, &ROLL_BACK_HEAD).await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::HeadForged);
    assert_eq!(found.code(), "head_forged");
    assert_eq!(found.seq, 3);
    let at_start = fixture.store.check_audit_head().await.unwrap().unwrap_err();
    assert_eq!(at_start.kind, BreakKind::HeadForged);
}

pub(super) async fn audit_chain_replayed_head_needs_expected(fixture: Fixture) {
    // A head row that the store wrote earlier, put back after cutting the
    // records that followed it, has a valid MAC. Only a head kept outside
    // the database reveals the cut.
    four_records(&fixture.store).await;
    let kept = verified(&fixture.store).await;
    tamper(
        &fixture.place,
        &["CREATE TABLE saved_head AS SELECT * FROM audit_chain"],
    )
    .await;
    fixture
        .store
        .append_audit(&[failure(now(), "newest")])
        .await
        .unwrap();
    let newest = verified(&fixture.store).await;
    assert_eq!(newest.head_seq, 5);
    tamper(
        &fixture.place,
        &[
            "DELETE FROM audit_events WHERE seq = 5",
            "DELETE FROM audit_chain",
            "INSERT INTO audit_chain SELECT * FROM saved_head",
        ],
    )
    .await;
    assert_eq!(verified(&fixture.store).await.head_seq, 4);
    let older = fixture
        .store
        .verify_audit_chain(Some(&kept.head_hash))
        .await
        .unwrap();
    assert!(older.is_ok(), "{older:?}");
    let found = fixture
        .store
        .verify_audit_chain(Some(&newest.head_hash))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        found.kind,
        BreakKind::ExpectedHeadMissing { checkpoint_seq: 0 }
    );
    assert_eq!(found.code(), "expected_head_missing");
}

pub(super) async fn audit_chain_seal_chains_legacy_once(fixture: Fixture) {
    // A row as a release before the chain wrote it: no sequence number,
    // and a head that was never written.
    let legacy_id = AuditId::generate();
    let insert = match &fixture.place {
        Place::Sqlite(_) => format!(
            "INSERT INTO audit_events (id, at, actor, action, details) \
             VALUES ('{legacy_id}', 1000, 'cli', 'tenant.created', '{{\"name\":\"old\"}}')"
        ),
        Place::Postgres(_) => format!(
            "INSERT INTO audit_events (id, at, actor, action, details) \
             VALUES ('{legacy_id}', to_timestamp(1), 'cli', 'tenant.created', \
             '{{\"name\":\"old\"}}'::jsonb)"
        ),
    };
    tamper(&fixture.place, &[insert.as_str()]).await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::HeadUnsealed);
    let reopened = fixture.open_another().await;
    assert_eq!(broken(&reopened).await.kind, BreakKind::HeadUnsealed);
    assert_eq!(
        unchained_count(&fixture.place).await,
        1,
        "opening chains nothing"
    );

    let outcome = reopened.seal_audit_chain(&context(now())).await.unwrap();
    assert_eq!(outcome.legacy_records, 1);
    assert_eq!(outcome.head_seq, 2);
    let summary = verified(&reopened).await;
    assert_eq!(summary.records, 2);
    assert_eq!(summary.head_hash, outcome.head_hash);
    let records = reopened
        .query_audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(records[0].event.id, legacy_id);
    assert_eq!(records[1].event.action, AuditAction::AuditChainSealed);
    assert_eq!(records[1].event.details["found"], "head_unsealed");
    assert_eq!(records[1].event.details["legacy_records"], 1);
    assert_eq!(records[1].event.details["previous_head_seq"], 0);

    let again = reopened
        .seal_audit_chain(&context(now()))
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    reopened.close().await;

    // A row written past the chain after that stays unchained.
    let late_id = AuditId::generate();
    let late = insert.replace(&legacy_id.to_string(), &late_id.to_string());
    tamper(&fixture.place, &[late.as_str()]).await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::Unchained);
    assert_eq!(found.id, Some(late_id));
}

async fn sealed_now(store: &Store) -> portcullis_store::SealOutcome {
    store.seal_audit_chain(&context(now())).await.unwrap()
}

/// Returns the `audit.chain_sealed` records in sequence order.
async fn seal_records(store: &Store) -> Vec<portcullis_store::ChainedAuditEvent> {
    let query = AuditQuery {
        action: Some(AuditAction::AuditChainSealed),
        limit: 10,
        ..AuditQuery::default()
    };
    store.query_audit(&query).await.unwrap()
}

pub(super) async fn audit_chain_seal_after_tampering_recorded(fixture: Fixture) {
    // An operator who decides to go on after a forged head seals it, and
    // the chain records what was found.
    four_records(&fixture.store).await;
    tamper(&fixture.place, &ROLL_BACK_HEAD).await;
    let outcome = sealed_now(&fixture.store).await;
    assert_eq!(outcome.legacy_records, 0);
    assert_eq!(outcome.head_seq, 4);
    assert_eq!(verified(&fixture.store).await.records, 4);
    let sealed = seal_records(&fixture.store).await;
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].event.details["found"], "head_forged");
    assert_eq!(sealed[0].event.details["previous_head_seq"], 3);
}

/// Writes three records ten days old and two fresh ones, and prunes what
/// is older than five days.
async fn prune_old_records(store: &Store) -> portcullis_store::PruneOutcome {
    let at = now();
    let old: Vec<AuditEvent> = (0..3)
        .map(|index| failure(at - Duration::days(10) + Duration::seconds(index), "old"))
        .collect();
    store.append_audit(&old).await.unwrap();
    let fresh = [failure(at, "fresh"), failure(at, "fresh")];
    store.append_audit(&fresh).await.unwrap();
    store
        .prune_audit(at - Duration::days(5), &context(at))
        .await
        .unwrap()
        .unwrap()
}

pub(super) async fn audit_chain_pruned_and_still_verified(fixture: Fixture) {
    let store = fixture.store;
    let outcome = prune_old_records(&store).await;
    assert_eq!(outcome.through_seq, 3);
    assert_eq!(outcome.deleted, 3);

    let summary = verified(&store).await;
    assert_eq!(summary.checkpoint_seq, 3);
    assert_eq!(summary.first_seq, Some(4));
    assert_eq!(summary.records, 3, "two fresh records and the pruning");
    let pruned = store
        .query_audit(&AuditQuery {
            action: Some(AuditAction::AuditPruned),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(pruned[0].seq, 6);
    assert_eq!(pruned[0].event.details["through_seq"], 3);
    assert_eq!(pruned[0].event.details["deleted"], 3);

    let nothing = store
        .prune_audit(now() - Duration::days(5), &context(now()))
        .await
        .unwrap();
    assert_eq!(nothing, None, "nothing left that is old enough");
}

pub(super) async fn audit_chain_moved_checkpoint_detected(fixture: Fixture) {
    prune_old_records(&fixture.store).await;
    // Hiding record 4 by deleting it and moving the checkpoint past it.
    tamper(
        &fixture.place,
        &[
            "UPDATE audit_chain SET checkpoint_seq = 4, \
             checkpoint_hash = (SELECT hash FROM audit_events WHERE seq = 4)",
            "DELETE FROM audit_events WHERE seq = 4",
        ],
    )
    .await;
    // The head's MAC covers the checkpoint, so verification stops there.
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::HeadForged);
    // Sealing walks the chain from the moved checkpoint, which no pruning
    // record names, so it refuses.
    let error = fixture
        .store
        .seal_audit_chain(&context(now()))
        .await
        .unwrap_err();
    let StoreError::AuditChainBroken(found) = error else {
        panic!("{error:?}");
    };
    assert_eq!(found.kind, BreakKind::CheckpointUnrecorded);
    assert_eq!(found.seq, 4);
}

pub(super) async fn audit_query_filters_and_pages(fixture: Fixture) {
    let store = fixture.store;
    let acme = create_tenant(&store, "acme").await;
    let at = now();
    let mut batch: Vec<AuditEvent> = (0..5)
        .map(|index| AuditEvent {
            tenant_id: Some(acme.id),
            ..failure(at + Duration::seconds(index), "key-1")
        })
        .collect();
    batch.push(failure(at, "key-2"));
    store.append_audit(&batch).await.unwrap();

    let base = AuditQuery {
        tenant_id: Some(acme.id),
        action: Some(AuditAction::AuthFailed),
        limit: 2,
        ..AuditQuery::default()
    };
    let first = store.query_audit(&base).await.unwrap();
    assert_eq!(first.len(), 2);
    let second = store
        .query_audit(&AuditQuery {
            after_seq: first[1].seq,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(second.len(), 2);
    assert!(second[0].seq > first[1].seq, "pages follow on");

    let by_target = store
        .query_audit(&AuditQuery {
            target: Some("key-2".to_owned()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_target.len(), 1);

    let by_actor = store
        .query_audit(&AuditQuery {
            actor: Some("cli".to_owned()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_actor.len(), 1, "only the tenant creation");

    let window = store
        .query_audit(&AuditQuery {
            target: Some("key-1".to_owned()),
            since: Some(at + Duration::seconds(1)),
            until: Some(at + Duration::seconds(3)),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let times: Vec<OffsetDateTime> = window.iter().map(|record| record.event.at).collect();
    assert_eq!(
        times,
        [at + Duration::seconds(1), at + Duration::seconds(2)],
        "since is inclusive, until exclusive"
    );
}

/// Builds the `auth.succeeded` record of the minute starting at `minute`,
/// with successes from `first` to `last` seconds into it.
fn success_minute(minute: OffsetDateTime, first: i64, last: i64) -> AuditEvent {
    let format = |seconds: i64| {
        (minute + Duration::seconds(seconds))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    AuditEvent {
        id: AuditId::generate(),
        at: minute,
        actor: "key:success".to_owned(),
        action: AuditAction::AuthSucceeded,
        tenant_id: None,
        target: Some("success".to_owned()),
        remote_addr: Some("203.0.113.9".to_owned()),
        details: json!({
            "credential_kind": "key",
            "count": 2,
            "first_at": format(first),
            "last_at": format(last),
        }),
    }
}

pub(super) async fn audit_query_time_range_overlaps_success_minute(fixture: Fixture) {
    let store = fixture.store;
    let start = now();
    let minute = start
        - Duration::seconds(i64::from(start.second()))
        - Duration::milliseconds(i64::from(start.millisecond()));
    let next_minute = minute + Duration::MINUTE;
    store
        .append_audit(&[
            success_minute(minute, 20, 40),
            failure(minute + Duration::seconds(30), "success"),
            success_minute(next_minute, 5, 50),
        ])
        .await
        .unwrap();

    let cases: [(Option<i64>, Option<i64>, &[&str]); 8] = [
        // `since` inside the first minute's successes.
        (Some(30), None, &["first", "failure", "second"]),
        // `since` after the first minute's last success.
        (Some(41), None, &["second"]),
        // `since` exactly at the last success is inclusive.
        (Some(40), None, &["first", "second"]),
        // `until` before the first minute's first success.
        (None, Some(10), &[]),
        // `until` just after the first success, in whole seconds.
        (None, Some(21), &["first"]),
        // `until` exactly at the first success is exclusive.
        (None, Some(20), &[]),
        // A window inside one minute's span.
        (Some(25), Some(35), &["first", "failure"]),
        // A window that ends before the second minute's first success.
        (Some(45), Some(64), &[]),
    ];
    for (since, until, expected) in cases {
        let listed = store
            .query_audit(&AuditQuery {
                target: Some("success".to_owned()),
                since: since.map(|seconds| minute + Duration::seconds(seconds)),
                until: until.map(|seconds| minute + Duration::seconds(seconds)),
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let names: Vec<&str> = listed
            .iter()
            .map(|record| match (record.event.action, record.event.at) {
                (AuditAction::AuthFailed, _) => "failure",
                (_, at) if at == minute => "first",
                _ => "second",
            })
            .collect();
        assert_eq!(names, expected, "since {since:?} and until {until:?}");
    }

    // Pages over overlapping records follow on without a gap or repeat.
    let base = AuditQuery {
        target: Some("success".to_owned()),
        since: Some(minute + Duration::seconds(30)),
        limit: 1,
        ..AuditQuery::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store
            .query_audit(&AuditQuery {
                after_seq: seen.last().copied().unwrap_or(0),
                ..base.clone()
            })
            .await
            .unwrap();
        let Some(record) = page.first() else {
            break;
        };
        seen.push(record.seq);
    }
    assert_eq!(seen.len(), 3, "three records from three pages: {seen:?}");
    assert!(seen.is_sorted(), "{seen:?}");
}

pub(super) async fn audit_write_without_key_rejected(fixture: Fixture) {
    let keyless = match &fixture.place {
        Place::Sqlite(path) => Store::open_sqlite(path).await.unwrap(),
        Place::Postgres(url) => Store::open_postgres(url).await.unwrap(),
    };
    let error = keyless
        .append_audit(&[failure(now(), "x")])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::AuditKeyMissing), "{error:?}");
    let error = keyless.verify_audit_chain(None).await.unwrap_err();
    assert!(matches!(error, StoreError::AuditKeyMissing), "{error:?}");
    keyless.close().await;
}

/// The SQL value of `bytes` zero bytes on the backend of `place`.
fn zero_bytes(place: &Place, bytes: usize) -> String {
    match place {
        Place::Sqlite(_) => format!("zeroblob({bytes})"),
        Place::Postgres(_) => format!("decode(repeat('00', {bytes}), 'hex')"),
    }
}

pub(super) async fn audit_chain_malformed_hash_named(fixture: Fixture) {
    // A NULL or short hash is a break at that record, for verify and for
    // the start-up check alike, and not a failure to read the row.
    four_records(&fixture.store).await;
    tamper(
        &fixture.place,
        &["UPDATE audit_events SET hash = NULL WHERE seq = 4"],
    )
    .await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::Unchained);
    assert_eq!(found.seq, 4);
    assert!(found.id.is_some());
    assert!(found.to_string().starts_with("record 4 (id "), "{found}");
    let at_start = fixture.store.check_audit_head().await.unwrap().unwrap_err();
    assert_eq!(at_start.kind, BreakKind::Unchained);
    assert_eq!(at_start.seq, 4);

    let short = format!(
        "UPDATE audit_events SET prev_hash = {} WHERE seq = 2",
        zero_bytes(&fixture.place, 16)
    );
    tamper(&fixture.place, &[short.as_str()]).await;
    let found = broken(&fixture.store).await;
    assert_eq!(found.kind, BreakKind::Unchained);
    assert_eq!(found.seq, 2, "the oldest malformed record comes first");
}

pub(super) async fn audit_chain_start_check_names_last_record(fixture: Fixture) {
    // Every record deleted, head row kept: nothing after the checkpoint.
    four_records(&fixture.store).await;
    tamper(&fixture.place, &["DELETE FROM audit_events"]).await;
    let at_start = fixture.store.check_audit_head().await.unwrap().unwrap_err();
    assert_eq!(
        at_start.kind,
        BreakKind::TruncatedTail {
            first_missing: 1,
            head_seq: 4
        }
    );
    assert!(
        at_start.to_string().contains("the last stored record is 0"),
        "{at_start}"
    );
    assert_eq!(broken(&fixture.store).await, at_start);
}

pub(super) async fn audit_chain_start_check_names_appended_record(fixture: Fixture) {
    // A record appended past the head without the master key.
    four_records(&fixture.store).await;
    let forged_id = AuditId::generate();
    let id_value = match &fixture.place {
        Place::Sqlite(_) => format!("'{forged_id}'"),
        Place::Postgres(_) => format!("'{forged_id}'::uuid"),
    };
    let append = format!(
        "INSERT INTO audit_events (id, seq, prev_hash, hash, at, actor, action, tenant_id, \
         target, remote_addr, details) SELECT {id_value}, 5, hash, hash, at, actor, action, \
         tenant_id, target, remote_addr, details FROM audit_events WHERE seq = 4"
    );
    tamper(&fixture.place, &[append.as_str()]).await;
    let at_start = fixture.store.check_audit_head().await.unwrap().unwrap_err();
    assert_eq!(at_start.kind, BreakKind::HeadMismatch { head_seq: 4 });
    assert_eq!(at_start.seq, 5);
    assert_eq!(at_start.id, Some(forged_id));
    assert!(
        at_start.to_string().contains("the last stored record 5"),
        "{at_start}"
    );
}

pub(super) async fn audit_chain_seal_rebuilds_lost_head(fixture: Fixture) {
    four_records(&fixture.store).await;
    tamper(&fixture.place, &["DELETE FROM audit_chain"]).await;
    let outcome = sealed_now(&fixture.store).await;
    assert_eq!(outcome.legacy_records, 0);
    assert_eq!(outcome.head_seq, 5, "the seal follows record 4");
    assert_eq!(verified(&fixture.store).await.records, 5);
    assert!(fixture.store.check_audit_head().await.unwrap().is_ok());

    // A head reset to record 0, its MAC kept.
    let reset = format!(
        "UPDATE audit_chain SET head_seq = 0, head_hash = {}",
        zero_bytes(&fixture.place, 32)
    );
    tamper(&fixture.place, &[reset.as_str()]).await;
    assert_eq!(broken(&fixture.store).await.kind, BreakKind::HeadForged);
    let outcome = sealed_now(&fixture.store).await;
    assert_eq!(outcome.head_seq, 6);
    assert_eq!(verified(&fixture.store).await.records, 6);

    let sealed = seal_records(&fixture.store).await;
    assert_eq!(sealed.len(), 2);
    assert_eq!(sealed[0].event.details["found"], "head_missing");
    assert_eq!(sealed[0].event.details["previous_head_seq"], 0);
    assert_eq!(sealed[1].event.details["found"], "head_forged");
    assert_eq!(sealed[1].event.details["previous_head_seq"], 0);
}

pub(super) async fn audit_chain_seal_rebuilds_pruned_head(fixture: Fixture) {
    // With the head row gone, the checkpoint comes from the first stored
    // record, and the pruning record still has to name it.
    prune_old_records(&fixture.store).await;
    tamper(&fixture.place, &["DELETE FROM audit_chain"]).await;
    let outcome = sealed_now(&fixture.store).await;
    assert_eq!(outcome.head_seq, 7);
    let summary = verified(&fixture.store).await;
    assert_eq!(summary.checkpoint_seq, 3);
    assert_eq!(summary.records, 4);
}

pub(super) async fn audit_chain_seal_rejects_broken_records(fixture: Fixture) {
    // A deleted head row does not let a seal accept records cut from the
    // middle of the chain.
    four_records(&fixture.store).await;
    tamper(
        &fixture.place,
        &[
            "DELETE FROM audit_chain",
            "DELETE FROM audit_events WHERE seq = 2",
        ],
    )
    .await;
    let error = fixture
        .store
        .seal_audit_chain(&context(now()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::AuditChainBroken(found) if found.code() == "missing"),
        "{error:?}"
    );
}

pub(super) async fn audit_pruning_after_deleted_records_broken(fixture: Fixture) {
    // Pruning needs the hash of the last record it deletes. When that
    // record was deleted past the store, the failure names the gap.
    let at = now();
    let old: Vec<AuditEvent> = (0..3)
        .map(|index| failure(at - Duration::days(10) + Duration::seconds(index), "old"))
        .collect();
    fixture.store.append_audit(&old).await.unwrap();
    fixture
        .store
        .append_audit(&[failure(at, "fresh")])
        .await
        .unwrap();
    let before = at - Duration::days(5);
    let prune_context = context(at);

    tamper(&fixture.place, &["DELETE FROM audit_events WHERE seq = 3"]).await;
    let error = fixture
        .store
        .prune_audit(before, &prune_context)
        .await
        .unwrap_err();
    let StoreError::AuditChainBroken(found) = &error else {
        panic!("expected a chain break, got {error:?}");
    };
    assert_eq!(found.kind, BreakKind::Missing { expected: 3 });
    assert_eq!(found.seq, 4);

    // With the first records gone too, the first gap is named.
    tamper(&fixture.place, &["DELETE FROM audit_events WHERE seq = 1"]).await;
    let error = fixture
        .store
        .prune_audit(before, &prune_context)
        .await
        .unwrap_err();
    let StoreError::AuditChainBroken(found) = &error else {
        panic!("expected a chain break, got {error:?}");
    };
    assert_eq!(found.kind, BreakKind::Missing { expected: 1 });
    assert_eq!(found.seq, 2);
    assert!(
        found.to_string().starts_with("records 1 to 1 are missing"),
        "{found}"
    );
}
