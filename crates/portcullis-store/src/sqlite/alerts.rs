//! Alerts, their webhook outbox and credential networks on SQLite.

use portcullis_core::ids::{AlertId, DeliveryId, TenantId};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;

use super::{
    SqliteStore, optional_time_column, optional_uuid_column, time_column, to_millis, uuid_column,
};
use crate::alerts::{
    AlertFilter, AlertRecord, AttemptOutcome, CredentialNetwork, Delivery, DeliveryState,
    NewDelivery,
};
use crate::error::{StoreError, is_unique_violation};

/// The columns of a [`Delivery`].
const DELIVERY_COLUMNS: &str = "id, alert_id, webhook, body, state, attempts, next_attempt_at, \
     last_error, created_at, finished_at";

impl SqliteStore {
    pub(crate) async fn insert_alert(
        &self,
        alert: &AlertRecord,
        deliveries: &[NewDelivery],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO alerts (id, at, tenant_id, credential, rule, severity, details) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(alert.id.to_string())
        .bind(to_millis(alert.at))
        .bind(alert.tenant_id.map(|id| id.to_string()))
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
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
            )
            .bind(delivery.id.to_string())
            .bind(alert.id.to_string())
            .bind(&delivery.webhook)
            .bind(&delivery.body)
            .bind(to_millis(alert.at))
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
            "SELECT id, at, tenant_id, credential, rule, severity, details FROM alerts \
             WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR credential = ?2) \
             AND (?3 IS NULL OR rule = ?3) AND (?4 IS NULL OR severity = ?4) \
             AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6) \
             AND (?7 IS NULL OR id < ?7) \
             ORDER BY id DESC LIMIT ?8",
        )
        .bind(filter.tenant_id.map(|id| id.to_string()))
        .bind(filter.credential.as_deref())
        .bind(filter.rule.map(|rule| rule.as_str()))
        .bind(filter.severity.map(|severity| severity.as_str()))
        .bind(filter.since.map(to_millis))
        .bind(filter.until.map(to_millis))
        .bind(filter.before.map(|id| id.to_string()))
        .bind(filter.limit.max(0))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    pub(crate) async fn list_deliveries(
        &self,
        alert_id: AlertId,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE alert_id = ?1 \
             ORDER BY created_at, id"
        )))
        .bind(alert_id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub(crate) async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        // A read first, so that an idle outbox costs no write lock, which
        // the CLI and the other writers would have to wait for.
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM alert_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= ?1 LIMIT 1",
        )
        .bind(to_millis(now))
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        // The write lock of BEGIN IMMEDIATE keeps two processes from taking
        // the same rows.
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries \
             WHERE state = 'pending' AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at, id LIMIT ?2"
        )))
        .bind(to_millis(now))
        .bind(limit.max(0))
        .fetch_all(&mut *tx)
        .await?;
        let claimed = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for delivery in &claimed {
            sqlx::query("UPDATE alert_deliveries SET next_attempt_at = ?1 WHERE id = ?2")
                .bind(to_millis(lease_until))
                .bind(delivery.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
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
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE alert_deliveries SET state = ?1, attempts = attempts + 1, \
             next_attempt_at = COALESCE(?2, next_attempt_at), \
             last_error = COALESCE(?3, last_error), finished_at = ?4 \
             WHERE id = ?5 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(next_attempt_at.map(to_millis))
        .bind(error)
        .bind(finished_at.map(to_millis))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if updated == 0 {
            return Err(StoreError::NotFound("pending delivery"));
        }
        Ok(())
    }

    pub(crate) async fn prune_alerts(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(
            "DELETE FROM alerts WHERE at < ?1 AND NOT EXISTS ( \
                 SELECT 1 FROM alert_deliveries d \
                 WHERE d.alert_id = alerts.id AND d.state = 'pending')",
        )
        .bind(to_millis(cutoff))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    pub(crate) async fn credential_networks(
        &self,
        credential: &str,
    ) -> Result<Vec<CredentialNetwork>, StoreError> {
        let rows = sqlx::query(
            "SELECT network, first_seen_at, last_seen_at FROM credential_networks \
             WHERE credential = ?1 ORDER BY first_seen_at, network",
        )
        .bind(credential)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CredentialNetwork {
                    network: row.try_get("network")?,
                    first_seen_at: time_column(row, "first_seen_at")?,
                    last_seen_at: time_column(row, "last_seen_at")?,
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
        let mut tx = self.begin_write().await?;
        let touched = sqlx::query(
            "UPDATE credential_networks SET last_seen_at = MAX(last_seen_at, ?3) \
             WHERE credential = ?1 AND network = ?2",
        )
        .bind(credential)
        .bind(network)
        .bind(to_millis(at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if touched > 0 {
            tx.commit().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO credential_networks (credential, network, first_seen_at, last_seen_at) \
             VALUES (?1, ?2, ?3, ?3)",
        )
        .bind(credential)
        .bind(network)
        .bind(to_millis(at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM credential_networks WHERE credential = ?1 AND network NOT IN ( \
                 SELECT network FROM credential_networks WHERE credential = ?1 \
                 ORDER BY last_seen_at DESC, network LIMIT ?2)",
        )
        .bind(credential)
        .bind(i64::from(max_networks))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

fn conflict_on_unique(
    result: Result<sqlx::sqlite::SqliteQueryResult, sqlx::Error>,
    message: &str,
) -> Result<(), StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(StoreError::Conflict(message.to_owned())),
        Err(error) => Err(error.into()),
    }
}

fn alert_from_row(row: &SqliteRow) -> Result<AlertRecord, StoreError> {
    let rule: &str = row.try_get("rule")?;
    let severity: &str = row.try_get("severity")?;
    let details: &str = row.try_get("details")?;
    Ok(AlertRecord {
        id: AlertId::from_uuid(uuid_column(row, "id")?),
        at: time_column(row, "at")?,
        tenant_id: optional_uuid_column(row, "tenant_id")?.map(TenantId::from_uuid),
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

fn delivery_from_row(row: &SqliteRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: DeliveryId::from_uuid(uuid_column(row, "id")?),
        alert_id: AlertId::from_uuid(uuid_column(row, "alert_id")?),
        webhook: row.try_get("webhook")?,
        body: row.try_get("body")?,
        state: DeliveryState::parse(row.try_get("state")?)?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: time_column(row, "next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: time_column(row, "created_at")?,
        finished_at: optional_time_column(row, "finished_at")?,
    })
}
