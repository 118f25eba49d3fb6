//! Pruning of audit records past the configured retention.
//!
//! Every node prunes once an hour. Pruning runs in one transaction that
//! locks the chain head, so two nodes pruning at once delete each record
//! once, and the second finds nothing old enough.

use std::time::Duration;

use portcullis_store::{AuditContext, Store};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::telemetry::ErrorChain;

/// Time between two prunes. Retention is counted in days, so an hour's
/// delay keeps at most an hour of records longer than configured.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Audit actor of the pruning record.
pub const PRUNE_ACTOR: &str = "retention";

/// Deletes audit records older than `retention` now, and then every
/// [`PRUNE_INTERVAL`] until `shutdown`.
pub async fn prune_audit_periodically(
    store: Store,
    retention: Duration,
    shutdown: CancellationToken,
) {
    loop {
        prune_once(&store, retention, OffsetDateTime::now_utc()).await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
        }
    }
}

/// Deletes the audit records older than `retention` before `now`, and
/// logs the outcome.
pub async fn prune_once(store: &Store, retention: Duration, now: OffsetDateTime) {
    let Ok(retention) = time::Duration::try_from(retention) else {
        tracing::error!("audit retention is too long to compute a cut-off; nothing pruned");
        return;
    };
    let before = now - retention;
    let context = AuditContext {
        actor: PRUNE_ACTOR.to_owned(),
        remote_addr: None,
        at: now,
    };
    match store.prune_audit(before, &context).await {
        Ok(Some(outcome)) => tracing::info!(
            deleted = outcome.deleted,
            through_seq = outcome.through_seq,
            "pruned audit records past retention"
        ),
        Ok(None) => tracing::debug!("no audit records past retention"),
        Err(error) => tracing::warn!(
            error = %ErrorChain(&error),
            "pruning audit records failed; will retry in an hour"
        ),
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::crypto::MasterKey;
    use portcullis_core::ids::AuditId;
    use portcullis_store::{AuditAction, AuditEvent, AuditQuery};
    use serde_json::json;

    use super::*;

    fn failure(at: OffsetDateTime) -> AuditEvent {
        AuditEvent {
            id: AuditId::generate(),
            at,
            actor: "anonymous".to_owned(),
            action: AuditAction::AuthFailed,
            tenant_id: None,
            target: None,
            remote_addr: None,
            details: json!({}),
        }
    }

    #[tokio::test]
    async fn prune_keeps_chain_verifiable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("test.db"))
            .await
            .unwrap()
            .attach_audit_key(MasterKey::generate().unwrap().audit_chain_key())
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let old = now - time::Duration::days(30);
        store
            .append_audit(&[failure(old), failure(old), failure(now)])
            .await
            .unwrap();

        prune_once(&store, Duration::from_secs(7 * 24 * 3600), now).await;

        let summary = store.verify_audit_chain(None).await.unwrap().unwrap();
        assert_eq!(summary.checkpoint_seq, 2);
        let records = store
            .query_audit(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let actions: Vec<AuditAction> = records.iter().map(|r| r.event.action).collect();
        assert_eq!(actions, [AuditAction::AuthFailed, AuditAction::AuditPruned]);
        assert_eq!(records[1].event.actor, PRUNE_ACTOR);
    }
}
