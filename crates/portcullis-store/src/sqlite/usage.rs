//! Usage rollups and scope uses on SQLite.

use portcullis_core::ids::{ClientId, KeyId, TenantId};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;

use super::{SqliteStore, from_millis, parse_uuid, to_millis};
use crate::error::StoreError;
use crate::usage::{
    CredentialRef, Granularity, PeriodCount, ScopeUse, UPSERT_CHUNK_ROWS, UsagePoint, UsageQuery,
    UsageSubject,
};

impl SqliteStore {
    pub(crate) async fn record_usage_counts(
        &self,
        hours: &[PeriodCount],
        days: &[PeriodCount],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        upsert_counts(&mut tx, Granularity::Hour.table(), hours).await?;
        upsert_counts(&mut tx, Granularity::Day.table(), days).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn usage_series(
        &self,
        query: &UsageQuery,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        let table = query.granularity.table();
        let mut builder = QueryBuilder::<Sqlite>::new(format!(
            "SELECT period_start, SUM(requests) AS requests, SUM(failures) AS failures \
             FROM {table} WHERE "
        ));
        match query.subject {
            UsageSubject::Credential(credential) => {
                builder.push("credential_kind = ");
                builder.push_bind(credential.kind());
                builder.push(" AND credential_id = ");
                builder.push_bind(credential.uuid().to_string());
            }
            UsageSubject::Tenant(tenant) => {
                builder.push("tenant_id = ");
                builder.push_bind(tenant.to_string());
            }
        }
        builder.push(" AND period_start >= ");
        builder.push_bind(to_millis(query.since));
        builder.push(" AND period_start < ");
        builder.push_bind(to_millis(query.until));
        builder.push(" GROUP BY period_start ORDER BY period_start");

        let rows = builder.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|row| {
                Ok(UsagePoint {
                    start: from_millis("period_start", row.try_get("period_start")?)?,
                    requests: row.try_get("requests")?,
                    failures: row.try_get("failures")?,
                })
            })
            .collect()
    }

    pub(crate) async fn key_request_totals(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
    ) -> Result<Vec<(KeyId, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT credential_id, SUM(requests) AS requests FROM usage_days \
             WHERE tenant_id = ?1 AND credential_kind = 'key' AND period_start >= ?2 \
             GROUP BY credential_id",
        )
        .bind(tenant.to_string())
        .bind(to_millis(since))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let id = parse_uuid("credential_id", row.try_get("credential_id")?)?;
                Ok((KeyId::from_uuid(id), row.try_get("requests")?))
            })
            .collect()
    }

    pub(crate) async fn prune_usage(
        &self,
        before: OffsetDateTime,
        days_before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let hours = sqlx::query("DELETE FROM usage_hours WHERE period_start < ?1")
            .bind(to_millis(before))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let days = sqlx::query("DELETE FROM usage_days WHERE period_start < ?1")
            .bind(to_millis(days_before))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let scopes = sqlx::query("DELETE FROM scope_uses WHERE day_start < ?1")
            .bind(to_millis(days_before))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(hours + days + scopes)
    }

    pub(crate) async fn record_scope_uses(&self, batch: &[ScopeUse]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for chunk in batch.chunks(UPSERT_CHUNK_ROWS) {
            let mut builder = QueryBuilder::<Sqlite>::new(
                "INSERT INTO scope_uses (credential_kind, credential_id, day_start, scope) ",
            );
            builder.push_values(chunk, |mut row, scope_use| {
                row.push_bind(scope_use.credential.kind())
                    .push_bind(scope_use.credential.uuid().to_string())
                    .push_bind(to_millis(scope_use.day))
                    .push_bind(scope_use.scope.clone());
            });
            builder.push(" ON CONFLICT DO NOTHING");
            builder.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn scope_uses_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(CredentialRef, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT credential_kind, credential_id, scope FROM scope_uses \
             WHERE day_start >= ?1 ORDER BY credential_kind, credential_id, scope",
        )
        .bind(to_millis(since))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: &str = row.try_get("credential_kind")?;
                let id = parse_uuid("credential_id", row.try_get("credential_id")?)?;
                Ok((CredentialRef::from_parts(kind, id)?, row.try_get("scope")?))
            })
            .collect()
    }

    pub(crate) async fn client_last_use_days(
        &self,
    ) -> Result<Vec<(ClientId, OffsetDateTime)>, StoreError> {
        let rows = sqlx::query(
            "SELECT credential_id, MAX(period_start) AS last_day FROM usage_days \
             WHERE credential_kind = 'client' GROUP BY credential_id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let id = parse_uuid("credential_id", row.try_get("credential_id")?)?;
                let last = from_millis("last_day", row.try_get("last_day")?)?;
                Ok((ClientId::from_uuid(id), last))
            })
            .collect()
    }
}

/// Adds `counts` to the rows of `table` in one statement per chunk.
async fn upsert_counts(
    conn: &mut SqliteConnection,
    table: &str,
    counts: &[PeriodCount],
) -> Result<(), StoreError> {
    for chunk in counts.chunks(UPSERT_CHUNK_ROWS) {
        let mut builder = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {table} \
             (credential_kind, credential_id, period_start, tenant_id, requests, failures) "
        ));
        builder.push_values(chunk, |mut row, count| {
            row.push_bind(count.credential.kind())
                .push_bind(count.credential.uuid().to_string())
                .push_bind(to_millis(count.start))
                .push_bind(count.tenant_id.map(|id| id.to_string()))
                .push_bind(count.requests)
                .push_bind(count.failures);
        });
        builder.push(
            " ON CONFLICT (credential_kind, credential_id, period_start) DO UPDATE SET \
             requests = requests + excluded.requests, \
             failures = failures + excluded.failures",
        );
        builder.build().execute(&mut *conn).await?;
    }
    Ok(())
}
