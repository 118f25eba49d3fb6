//! Successful authentications, aggregated into one audit record per
//! credential and minute.
//!
//! A record per request would grow the audit log with the traffic, so the
//! hot path only counts in memory. The usage flush writes the record of a
//! minute once that minute is over (and every open minute at shutdown),
//! with the count, the first and last time and up to
//! [`MAX_ADDRESSES_PER_MINUTE`] client addresses.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use portcullis_core::ids::{AuditId, TenantId};
use portcullis_store::{AuditAction, AuditEvent, CredentialRef};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Maximum client addresses listed in one minute's record. More are counted in
/// `other_addresses` but not listed, so a key used from a botnet cannot
/// make one record arbitrarily large.
pub const MAX_ADDRESSES_PER_MINUTE: usize = 16;

/// Maximum credential-minutes buffered at once. Past it, successes are
/// counted in `dropped` but not recorded, so memory stays bounded even if
/// the store is down for long.
pub const MAX_PENDING_MINUTES: usize = 100_000;

/// The successes of one credential in one minute.
#[derive(Clone, Debug)]
struct Minute {
    tenant_id: Option<TenantId>,
    count: u64,
    first_at: OffsetDateTime,
    last_at: OffsetDateTime,
    addresses: BTreeSet<IpAddr>,
    /// Requests from addresses past [`MAX_ADDRESSES_PER_MINUTE`].
    other_addresses: u64,
}

/// In-memory counts of successful authentications per credential and
/// minute.
#[derive(Debug, Default)]
pub struct SuccessCounts {
    minutes: HashMap<(CredentialRef, OffsetDateTime), Minute>,
    /// Successes not recorded because [`MAX_PENDING_MINUTES`] was reached.
    pub dropped: u64,
}

impl SuccessCounts {
    /// Counts one successful authentication of `credential` at `at` from
    /// `client_ip`.
    pub fn record(
        &mut self,
        credential: CredentialRef,
        tenant_id: Option<TenantId>,
        at: OffsetDateTime,
        client_ip: IpAddr,
    ) {
        let key = (credential, minute_start(at));
        if !self.minutes.contains_key(&key) && self.minutes.len() >= MAX_PENDING_MINUTES {
            self.dropped += 1;
            return;
        }
        let minute = self.minutes.entry(key).or_insert_with(|| Minute {
            tenant_id,
            count: 0,
            first_at: at,
            last_at: at,
            addresses: BTreeSet::new(),
            other_addresses: 0,
        });
        minute.tenant_id = minute.tenant_id.or(tenant_id);
        minute.count += 1;
        minute.first_at = minute.first_at.min(at);
        minute.last_at = minute.last_at.max(at);
        let known = minute.addresses.contains(&client_ip);
        if known || minute.addresses.len() < MAX_ADDRESSES_PER_MINUTE {
            minute.addresses.insert(client_ip);
        } else {
            minute.other_addresses += 1;
        }
    }

    /// Removes and returns the records of every minute that ended at or
    /// before `now`. With `now` as `None`, returns every minute.
    pub fn take_closed(&mut self, now: Option<OffsetDateTime>) -> Vec<AuditEvent> {
        let open_from = now.map(minute_start);
        let closed: Vec<(CredentialRef, OffsetDateTime)> = self
            .minutes
            .keys()
            .filter(|(_, minute)| open_from.is_none_or(|open| *minute < open))
            .copied()
            .collect();
        let mut records = Vec::with_capacity(closed.len());
        for key in closed {
            if let Some(minute) = self.minutes.remove(&key) {
                records.push(success_record(key.0, key.1, &minute));
            }
        }
        records.sort_by_key(|record| record.at);
        records
    }
}

/// Returns the start of the minute of `at`.
fn minute_start(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_second(0)
        .and_then(|at| at.replace_nanosecond(0))
        .unwrap_or(at)
}

fn format(at: OffsetDateTime) -> Option<String> {
    at.format(&Rfc3339).ok()
}

/// Builds the `auth.succeeded` record of one credential's minute. The
/// actor is the credential itself, `key:<id>` or `client:<id>`.
fn success_record(credential: CredentialRef, start: OffsetDateTime, minute: &Minute) -> AuditEvent {
    let id = credential.uuid().to_string();
    let addresses: Vec<String> = minute.addresses.iter().map(ToString::to_string).collect();
    let remote_addr = match addresses.as_slice() {
        [only] if minute.other_addresses == 0 => Some(only.clone()),
        _ => None,
    };
    AuditEvent {
        id: AuditId::generate(),
        at: start,
        actor: format!("{}:{id}", credential.kind()),
        action: AuditAction::AuthSucceeded,
        tenant_id: minute.tenant_id,
        target: Some(id),
        remote_addr,
        details: json!({
            "credential_kind": credential.kind(),
            "count": minute.count,
            "first_at": format(minute.first_at),
            "last_at": format(minute.last_at),
            "addresses": addresses,
            "other_addresses": minute.other_addresses,
        }),
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::ids::KeyId;

    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).unwrap()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn one_record_per_credential_and_minute() {
        let mut counts = SuccessCounts::default();
        let key = CredentialRef::Key(KeyId::generate());
        let other = CredentialRef::Key(KeyId::generate());
        // 1_800_000_000 is the start of a minute.
        for second in [0, 5, 59] {
            counts.record(key, None, at(second), ip(1));
        }
        counts.record(key, None, at(60), ip(2));
        counts.record(other, None, at(1), ip(3));

        let records = counts.take_closed(None);
        assert_eq!(records.len(), 3);
        let first = records
            .iter()
            .find(|record| record.target == Some(key.uuid().to_string()) && record.at == at(0))
            .unwrap();
        assert_eq!(first.action, AuditAction::AuthSucceeded);
        assert_eq!(first.details["count"], 3);
        assert_eq!(first.details["first_at"], format(at(0)).unwrap());
        assert_eq!(first.details["last_at"], format(at(59)).unwrap());
        assert_eq!(first.remote_addr.as_deref(), Some("192.0.2.1"));
        assert_eq!(first.actor, format!("key:{}", key.uuid()));
    }

    #[test]
    fn open_minute_kept_until_it_ends() {
        let mut counts = SuccessCounts::default();
        let key = CredentialRef::Key(KeyId::generate());
        counts.record(key, None, at(0), ip(1));
        assert!(counts.take_closed(Some(at(59))).is_empty());
        assert_eq!(counts.take_closed(Some(at(60))).len(), 1);
        assert!(counts.take_closed(None).is_empty());
    }

    #[test]
    fn addresses_bounded_per_minute() {
        let mut counts = SuccessCounts::default();
        let key = CredentialRef::Key(KeyId::generate());
        for last in 0..40 {
            counts.record(key, None, at(0), ip(last));
        }
        counts.record(key, None, at(1), ip(0));
        let records = counts.take_closed(None);
        let details = &records[0].details;
        assert_eq!(details["count"], 41);
        assert_eq!(
            details["addresses"].as_array().unwrap().len(),
            MAX_ADDRESSES_PER_MINUTE
        );
        assert_eq!(details["other_addresses"], 40 - MAX_ADDRESSES_PER_MINUTE);
        assert_eq!(records[0].remote_addr, None);
    }
}
