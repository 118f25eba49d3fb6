//! The [`Store`] methods of usage rollups: requests and failures per
//! credential and hour or day, and the scopes each credential exercised per
//! day.
//!
//! The server gathers these in memory and writes them once a second, so the
//! writes take batches: each batch becomes one multi-row upsert per table
//! (split into chunks of [`UPSERT_CHUNK_ROWS`] rows). Hour rows can be
//! pruned; day rows and scope rows stay until pruned separately.

use std::collections::BTreeMap;
use std::fmt;

use portcullis_core::ids::{ClientId, KeyId, TenantId};
use time::{Duration, OffsetDateTime, Time};

use crate::Store;
use crate::error::StoreError;

/// Rows per multi-row upsert statement. Each row binds at most six values,
/// so a statement stays under SQLite's default limit of 32,766 bound
/// parameters (since SQLite 3.32) and PostgreSQL's limit of 65,535.
pub(crate) const UPSERT_CHUNK_ROWS: usize = 1000;

/// The credential that usage is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialRef {
    /// An API key, tenant or operator.
    Key(KeyId),
    /// An OAuth client, for its access tokens and client certificates.
    Client(ClientId),
}

impl CredentialRef {
    /// Returns the kind as stored: `key` or `client`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Client(_) => "client",
        }
    }

    /// Returns the id as a UUID.
    pub const fn uuid(&self) -> uuid::Uuid {
        match self {
            Self::Key(id) => id.as_uuid(),
            Self::Client(id) => id.as_uuid(),
        }
    }

    /// Rebuilds a reference from its stored kind and id.
    pub(crate) fn from_parts(kind: &str, id: uuid::Uuid) -> Result<Self, StoreError> {
        match kind {
            "key" => Ok(Self::Key(KeyId::from_uuid(id))),
            "client" => Ok(Self::Client(ClientId::from_uuid(id))),
            other => Err(StoreError::Corrupt(format!(
                "column credential_kind: {other:?} is neither key nor client"
            ))),
        }
    }
}

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.uuid())
    }
}

/// Requests and failures of one credential in one hour, gathered in memory
/// and added to the stored hour and day totals in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageCount {
    /// The credential presented.
    pub credential: CredentialRef,
    /// The credential's tenant; `None` for operator keys.
    pub tenant_id: Option<TenantId>,
    /// A time within the hour; the store rounds it down to the UTC hour.
    pub hour: OffsetDateTime,
    /// Requests that presented the credential, failed ones included.
    pub requests: i64,
    /// Those of the requests that authentication rejected.
    pub failures: i64,
}

/// The counts of one credential in one hour or day, one row of an upsert.
#[derive(Clone, Debug)]
pub(crate) struct PeriodCount {
    pub(crate) credential: CredentialRef,
    pub(crate) tenant_id: Option<TenantId>,
    pub(crate) start: OffsetDateTime,
    pub(crate) requests: i64,
    pub(crate) failures: i64,
}

/// One scope of a credential that authorised a request on a day.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScopeUse {
    /// The credential.
    pub credential: CredentialRef,
    /// The start of the day (UTC), as [`day_start`] returns it.
    pub day: OffsetDateTime,
    /// The scope a route required and the credential's scopes granted.
    pub scope: String,
}

/// The length of the periods that a usage series adds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One point per UTC hour.
    Hour,
    /// One point per UTC day.
    Day,
}

impl Granularity {
    /// Returns the name used in queries and JSON: `hour` or `day`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// Returns the start of the period that contains `at`.
    pub fn period_start(self, at: OffsetDateTime) -> OffsetDateTime {
        match self {
            Self::Hour => hour_start(at),
            Self::Day => day_start(at),
        }
    }

    /// Returns the length of one period.
    pub const fn period(self) -> Duration {
        match self {
            Self::Hour => Duration::HOUR,
            Self::Day => Duration::DAY,
        }
    }

    pub(crate) const fn table(self) -> &'static str {
        match self {
            Self::Hour => "usage_hours",
            Self::Day => "usage_days",
        }
    }
}

/// Whose usage a series adds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageSubject {
    /// One credential.
    Credential(CredentialRef),
    /// Every credential of one tenant.
    Tenant(TenantId),
}

/// A request for a usage series: the periods that start in
/// `since..until` (start inclusive, end exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    /// Whose usage.
    pub subject: UsageSubject,
    /// Hours or days.
    pub granularity: Granularity,
    /// The first period start included.
    pub since: OffsetDateTime,
    /// The period start where the series ends, excluded.
    pub until: OffsetDateTime,
}

/// The totals of one period. Periods without requests have no point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsagePoint {
    /// The start of the hour or day (UTC).
    pub start: OffsetDateTime,
    /// Requests that presented the credential, failed ones included.
    pub requests: i64,
    /// Those of the requests that authentication rejected.
    pub failures: i64,
}

/// Returns the start of the UTC hour that contains `at`.
pub fn hour_start(at: OffsetDateTime) -> OffsetDateTime {
    let utc = at.to_offset(time::UtcOffset::UTC);
    utc.replace_time(Time::MIDNIGHT) + Duration::hours(i64::from(utc.hour()))
}

/// Returns the start of the UTC day that contains `at`.
pub fn day_start(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(time::UtcOffset::UTC)
        .replace_time(Time::MIDNIGHT)
}

impl Store {
    /// Adds a batch of hourly counts to the stored hour totals and to the
    /// totals of the days that contain them, in one transaction.
    ///
    /// A batch may name a credential and hour more than once; the entries
    /// add up. Counts for credentials the store does not know are stored
    /// too, because rows carry no foreign key, so that usage outlives the
    /// credential.
    pub async fn record_usage_counts(&self, batch: &[UsageCount]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let hours = merge_counts(batch, Granularity::Hour);
        let days = merge_counts(batch, Granularity::Day);
        dispatch!(self, store => store.record_usage_counts(&hours, &days))
    }

    /// Returns the totals of each period of `query` that has any, oldest
    /// first. Hour rows older than the hour retention are gone, so an
    /// hour series reaches back only that far.
    pub async fn usage_series(&self, query: &UsageQuery) -> Result<Vec<UsagePoint>, StoreError> {
        dispatch!(self, store => store.usage_series(query))
    }

    /// Returns the requests of each of `tenant`'s keys on the days that
    /// start at or after `since`, in one query. Keys without requests are
    /// missing from the list.
    pub async fn key_request_totals(
        &self,
        tenant: TenantId,
        since: OffsetDateTime,
    ) -> Result<Vec<(KeyId, i64)>, StoreError> {
        dispatch!(self, store => store.key_request_totals(tenant, since))
    }

    /// Deletes hour rows of periods that started before `before`, day
    /// rows of days that started before `days_before`, and scope-use rows
    /// of those days, and returns how many rows went.
    pub async fn prune_usage(
        &self,
        before: OffsetDateTime,
        days_before: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        dispatch!(self, store => store.prune_usage(before, days_before))
    }

    /// Records scopes that authorised requests, once per credential, day
    /// and scope; repeats are ignored.
    pub async fn record_scope_uses(&self, batch: &[ScopeUse]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut unique: Vec<ScopeUse> = batch.to_vec();
        unique
            .sort_by(|a, b| (a.credential, a.day, &a.scope).cmp(&(b.credential, b.day, &b.scope)));
        unique.dedup();
        dispatch!(self, store => store.record_scope_uses(&unique))
    }

    /// Lists the distinct scopes each credential exercised on days that
    /// start at or after `since`, by credential and scope.
    pub async fn scope_uses_since(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(CredentialRef, String)>, StoreError> {
        dispatch!(self, store => store.scope_uses_since(since))
    }

    /// Returns the start of the latest day with any recorded request, per
    /// OAuth client. Clients with none are missing from the list.
    pub async fn client_last_use_days(
        &self,
    ) -> Result<Vec<(ClientId, OffsetDateTime)>, StoreError> {
        dispatch!(self, store => store.client_last_use_days())
    }
}

/// Adds up entries that fall in the same period of `granularity`, so that
/// no upsert statement names one row twice (PostgreSQL rejects that).
fn merge_counts(batch: &[UsageCount], granularity: Granularity) -> Vec<PeriodCount> {
    let mut merged: BTreeMap<(CredentialRef, OffsetDateTime), PeriodCount> = BTreeMap::new();
    for count in batch {
        let start = granularity.period_start(count.hour);
        let entry = merged
            .entry((count.credential, start))
            .or_insert_with(|| PeriodCount {
                credential: count.credential,
                tenant_id: count.tenant_id,
                start,
                requests: 0,
                failures: 0,
            });
        entry.requests += count.requests;
        entry.failures += count.failures;
    }
    merged.into_values().collect()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn period_starts_are_utc() {
        let at = datetime!(2026-12-04 15:42:49.5 +02:00);
        assert_eq!(hour_start(at), datetime!(2026-12-04 13:00 UTC));
        assert_eq!(day_start(at), datetime!(2026-12-04 00:00 UTC));
        let late = datetime!(2026-12-04 23:30 -05:00);
        assert_eq!(day_start(late), datetime!(2026-12-05 00:00 UTC));
    }

    #[test]
    fn merge_adds_same_period() {
        let key = CredentialRef::Key(KeyId::generate());
        let count = |hour, requests| UsageCount {
            credential: key,
            tenant_id: None,
            hour,
            requests,
            failures: 1,
        };
        let batch = [
            count(datetime!(2026-12-04 10:00 UTC), 3),
            count(datetime!(2026-12-04 11:00 UTC), 4),
            count(datetime!(2026-12-04 10:00 UTC), 5),
        ];
        let hours = merge_counts(&batch, Granularity::Hour);
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].requests, 8);
        assert_eq!(hours[0].failures, 2);
        let days = merge_counts(&batch, Granularity::Day);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].start, datetime!(2026-12-04 00:00 UTC));
        assert_eq!(days[0].requests, 12);
        assert_eq!(days[0].failures, 3);
    }
}
