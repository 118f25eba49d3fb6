//! Alerts, their webhook outbox and credential networks on PostgreSQL.

use portcullis_core::ids::{AlertId, DeliveryId, TenantId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::PostgresStore;
use crate::alerts::{
    AlertFilter, AlertRecord, AttemptOutcome, CredentialNetwork, Delivery, DeliveryState,
    NewDelivery,
};
use crate::error::{StoreError, is_unique_violation};

/// The columns of a [`Delivery`].
const DELIVERY_COLUMNS: &str = "id, alert_id, webhook, body, state, attempts, next_attempt_at, \
     last_error, created_at, finished_at";

impl PostgresStore {
    pub(crate) async fn insert_alert(
        &self,
        alert: &AlertRecord,
        deliveries: &[NewDelivery],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO alerts (id, at, tenant_id, credential, rule, severity, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        )
        .bind(alert.id.as_uuid())
        .bind(alert.at)
        .bind(alert.tenant_id.map(|id| id.as_uuid()))
        .bind(alert.credential.as_deref())
        .bind(alert.rule.as_str())
        .bind(alert.severity.as_str())
        .bind(alert.details.to_string())
        .execute(&mut *tx)
        .await;
        conflict_on_unique(inserted, "an alert with this id already exists")?;
        for delivery in deliveries {
            let inserted = sqlx::query(
                "INSERT INTO alert_deliveries \
                 (id, alert_id, webhook, body, state, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
            )
            .bind(delivery.id.as_uuid())
            .bind(alert.id.as_uuid())
            .bind(&delivery.webhook)
            .bind(&delivery.body)
            .bind(alert.at)
            .execute(&mut *tx)
            .await;
            conflict_on_unique(inserted, "a delivery with this id already exists")?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_alerts(
        &self,
        filter: &AlertFilter,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, tenant_id, credential, rule, severity, details::text AS details \
             FROM alerts \
             WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR credential = $2) \
             AND ($3::text IS NULL OR rule = $3) AND ($4::text IS NULL OR severity = $4) \
             AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6) \
             AND ($7::uuid IS NULL OR id < $7) \
             ORDER BY id DESC LIMIT $8",
        )
        .bind(filter.tenant_id.map(|id| id.as_uuid()))
        .bind(filter.credential.as_deref())
        .bind(filter.rule.map(|rule| rule.as_str()))
        .bind(filter.severity.map(|severity| severity.as_str()))
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before.map(|id| id.as_uuid()))
        .bind(filter.limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    pub(crate) async fn list_deliveries(
        &self,
        alert_id: AlertId,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE alert_id = $1 \
             ORDER BY created_at, id"
        )))
        .bind(alert_id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub(crate) async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        // The old due time comes back from the subquery, and SKIP LOCKED
        // keeps two nodes from taking the same row.
        let rows = sqlx::query(
            "WITH due AS ( \
                 SELECT id, next_attempt_at FROM alert_deliveries \
                 WHERE state = 'pending' AND next_attempt_at <= $1 \
                 ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE alert_deliveries d SET next_attempt_at = $2 FROM due WHERE d.id = due.id \
             RETURNING d.id, d.alert_id, d.webhook, d.body, d.state, d.attempts, \
             due.next_attempt_at, d.last_error, d.created_at, d.finished_at",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|delivery| (delivery.next_attempt_at, delivery.id));
        Ok(claimed)
    }

    pub(crate) async fn finish_attempt(
        &self,
        id: DeliveryId,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let (state, next_attempt_at, error, finished_at) = match outcome {
            AttemptOutcome::Delivered { at } => (DeliveryState::Delivered, None, None, Some(*at)),
            AttemptOutcome::Retry {
                next_attempt_at,
                error,
            } => (
                DeliveryState::Pending,
                Some(*next_attempt_at),
                Some(error.as_str()),
                None,
            ),
            AttemptOutcome::Failed { at, error } => {
                (DeliveryState::Failed, None, Some(error.as_str()), Some(*at))
            }
        };
        let updated = sqlx::query(
            "UPDATE alert_deliveries SET state = $1, attempts = attempts + 1, \
             next_attempt_at = COALESCE($2, next_attempt_at), \
             last_error = COALESCE($3, last_error), finished_at = $4 \
             WHERE id = $5 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(next_attempt_at)
        .bind(error)
        .bind(finished_at)
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound("pending delivery"));
        }
        Ok(())
    }

    pub(crate) async fn prune_alerts(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM alerts WHERE at < $1 AND NOT EXISTS ( \
                 SELECT 1 FROM alert_deliveries d \
                 WHERE d.alert_id = alerts.id AND d.state = 'pending')",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    pub(crate) async fn credential_networks(
        &self,
        credential: &str,
    ) -> Result<Vec<CredentialNetwork>, StoreError> {
        let rows = sqlx::query(
            "SELECT network, first_seen_at, last_seen_at FROM credential_networks \
             WHERE credential = $1 ORDER BY first_seen_at, network",
        )
        .bind(credential)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CredentialNetwork {
                    network: row.try_get("network")?,
                    first_seen_at: row.try_get("first_seen_at")?,
                    last_seen_at: row.try_get("last_seen_at")?,
                })
            })
            .collect()
    }

    pub(crate) async fn record_network(
        &self,
        credential: &str,
        network: &str,
        at: OffsetDateTime,
        max_networks: u32,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // ON CONFLICT makes concurrent first sightings on two nodes agree:
        // exactly one of them sees the row inserted.
        let inserted: bool = sqlx::query(
            "INSERT INTO credential_networks (credential, network, first_seen_at, last_seen_at) \
             VALUES ($1, $2, $3, $3) \
             ON CONFLICT (credential, network) DO UPDATE \
             SET last_seen_at = GREATEST(credential_networks.last_seen_at, EXCLUDED.last_seen_at) \
             RETURNING (xmax = 0) AS inserted",
        )
        .bind(credential)
        .bind(network)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?
        .try_get("inserted")?;
        if inserted {
            sqlx::query(
                "DELETE FROM credential_networks WHERE credential = $1 AND network NOT IN ( \
                     SELECT network FROM credential_networks WHERE credential = $1 \
                     ORDER BY last_seen_at DESC, network LIMIT $2)",
            )
            .bind(credential)
            .bind(i64::from(max_networks))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

fn conflict_on_unique(
    result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>,
    message: &str,
) -> Result<(), StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict(message.to_owned())),
        Err(error) => Err(error.into()),
    }
}

fn alert_from_row(row: &PgRow) -> Result<AlertRecord, StoreError> {
    let rule: &str = row.try_get("rule")?;
    let severity: &str = row.try_get("severity")?;
    let details: &str = row.try_get("details")?;
    let tenant_id: Option<Uuid> = row.try_get("tenant_id")?;
    Ok(AlertRecord {
        id: AlertId::from_uuid(row.try_get("id")?),
        at: row.try_get("at")?,
        tenant_id: tenant_id.map(TenantId::from_uuid),
        credential: row.try_get("credential")?,
        rule: rule
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("alert: {error}")))?,
        severity: severity
            .parse()
            .map_err(|error| StoreError::Corrupt(format!("alert: {error}")))?,
        details: serde_json::from_str(details)
            .map_err(|error| StoreError::Corrupt(format!("alert details: {error}")))?,
    })
}

fn delivery_from_row(row: &PgRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: DeliveryId::from_uuid(row.try_get("id")?),
        alert_id: AlertId::from_uuid(row.try_get("alert_id")?),
        webhook: row.try_get("webhook")?,
        body: row.try_get("body")?,
        state: DeliveryState::parse(row.try_get("state")?)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}
