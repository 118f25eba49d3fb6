//! Rate limits in this process's memory: GCRA over a sharded map.
//!
//! Why not governor's keyed limiter: a request is checked against several
//! limits at once and must be charged to all or none, and governor charges
//! each limiter as it checks it. Our own map also runs the same arithmetic
//! as the Redis script ([`super::gcra`]), so both backends return the same decisions.
//!
//! Memory is bounded in two ways. An entry whose TAT has passed is the same
//! as no entry, so [`LocalLimiter::evict_idle`] drops those (run it on a
//! timer with [`LocalLimiter::evict_periodically`]). And each shard contains
//! at most [`MAX_KEYS_PER_SHARD`] entries. When a new key arrives at a full
//! shard, idle entries go first, then the entry closest to being idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ratelimit::LimitRequest;
use crate::ratelimit::decision::{Decision, LimitStatus, Verdict};
use crate::ratelimit::gcra::{Gcra, Outcome};

/// Number of shards. Checks on different shards do not wait for each other.
pub const SHARDS: usize = 64;

/// Maximum entries per shard: 64 × 16,384 ≈ 1 million subjects, about
/// 100 MB at 100 bytes per entry (an estimate: key text plus map overhead).
pub const MAX_KEYS_PER_SHARD: usize = 16_384;

/// How often [`LocalLimiter::evict_periodically`] drops idle entries.
pub const EVICTION_INTERVAL: Duration = Duration::from_secs(10);

/// GCRA limits kept in memory, keyed by limit name and subject.
pub struct LocalLimiter {
    shards: Box<[Mutex<HashMap<String, u64>>]>,
    max_keys_per_shard: usize,
    epoch: Instant,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self::with_capacity(MAX_KEYS_PER_SHARD)
    }
}

impl LocalLimiter {
    /// Builds a limiter that keeps at most `max_keys_per_shard` entries in
    /// each of its [`SHARDS`] shards.
    pub fn with_capacity(max_keys_per_shard: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_keys_per_shard: max_keys_per_shard.max(1),
            epoch: Instant::now(),
        }
    }

    /// Checks one request against every limit in `limits`. It is admitted
    /// only if all admit it, and only then is it charged to each; a denied
    /// request changes nothing.
    pub fn check(&self, limits: &[LimitRequest]) -> Decision {
        let now = self.now();
        let keys: Vec<String> = limits.iter().map(LimitRequest::storage_key).collect();
        let mut guards = self.lock_shards(&keys);

        // Decide every limit against the stored TATs, and against earlier
        // limits of this request that share a key.
        let mut pending: Vec<(usize, u64)> = Vec::with_capacity(limits.len());
        let mut outcomes = Vec::with_capacity(limits.len());
        for (index, (limit, key)) in limits.iter().zip(&keys).enumerate() {
            let stored = pending
                .iter()
                .rev()
                .find(|(earlier, _)| keys.get(*earlier) == Some(key))
                .map(|(_, tat)| *tat)
                .or_else(|| guards.get(key).copied())
                .unwrap_or(0);
            let gcra = Gcra::new(&limit.rate);
            let outcome = gcra.step(stored, now, 1);
            if let Outcome::Admit { new_tat, .. } = outcome {
                pending.push((index, new_tat));
            }
            outcomes.push((gcra, stored.saturating_sub(now), outcome));
        }

        let decision = decide(limits, &outcomes, false);
        if decision.is_admitted() {
            for (index, new_tat) in pending {
                if let Some(key) = keys.get(index) {
                    guards.insert(key, new_tat, now, self.max_keys_per_shard);
                }
            }
        }
        decision
    }

    /// Gives back one request to every limit in `limits`, for a request
    /// that [`Self::check`] admitted and that was rejected afterwards. A
    /// limit listed twice gets two requests back, as it was charged twice.
    pub fn refund(&self, limits: &[LimitRequest]) {
        let now = self.now();
        let keys: Vec<String> = limits.iter().map(LimitRequest::storage_key).collect();
        let mut guards = self.lock_shards(&keys);
        for (limit, key) in limits.iter().zip(&keys) {
            let Some(map) = guards.shard(key) else {
                continue;
            };
            let Some(stored) = map.get(key).copied() else {
                continue;
            };
            match Gcra::new(&limit.rate).refund(stored, now, 1) {
                Some(tat) => {
                    map.insert(key.clone(), tat);
                }
                None => {
                    map.remove(key);
                }
            }
        }
    }

    /// Drops every entry whose allowance is full again, and returns how
    /// many were dropped.
    pub fn evict_idle(&self) -> usize {
        let now = self.now();
        let mut dropped = 0;
        for shard in &self.shards {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, tat| *tat > now);
            dropped += before - map.len();
            if map.capacity() > 4 * map.len().max(64) {
                map.shrink_to_fit();
            }
        }
        dropped
    }

    /// Returns the number of subjects held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Returns whether no subject is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs [`Self::evict_idle`] every [`EVICTION_INTERVAL`] until `shutdown`.
    pub async fn evict_periodically(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(EVICTION_INTERVAL) => {
                    let dropped = self.evict_idle();
                    tracing::debug!(dropped, "dropped idle rate limit entries");
                }
            }
        }
    }

    /// Returns microseconds since this limiter was built, from tokio's
    /// clock, so tests can pause and advance it.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Locks the shards of `keys`, in ascending order so two checks never
    /// wait for each other in a cycle.
    fn lock_shards(&self, keys: &[String]) -> ShardGuards<'_> {
        let mut indexes: Vec<usize> = keys.iter().map(|key| shard_of(key)).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let guards = indexes
            .into_iter()
            .filter_map(|index| Some((index, lock(self.shards.get(index)?))))
            .collect();
        ShardGuards(guards)
    }
}

/// The locked shards of one check, sorted by shard index.
struct ShardGuards<'a>(Vec<(usize, MutexGuard<'a, HashMap<String, u64>>)>);

impl ShardGuards<'_> {
    fn shard(&mut self, key: &str) -> Option<&mut HashMap<String, u64>> {
        let index = shard_of(key);
        let position = self
            .0
            .binary_search_by_key(&index, |(index, _)| *index)
            .ok()?;
        self.0.get_mut(position).map(|(_, guard)| &mut **guard)
    }

    fn get(&mut self, key: &str) -> Option<&u64> {
        self.shard(key)?.get(key)
    }

    fn insert(&mut self, key: &str, tat: u64, now: u64, max_keys: usize) {
        let Some(map) = self.shard(key) else {
            return;
        };
        if map.len() >= max_keys && !map.contains_key(key) {
            make_room(map, now, max_keys);
        }
        map.insert(key.to_owned(), tat);
    }
}

/// Frees one slot in a full shard: idle entries first, and when none is
/// idle, the entry whose allowance refills soonest. Losing that entry gives
/// its subject at most a fresh burst early.
fn make_room(map: &mut HashMap<String, u64>, now: u64, max_keys: usize) {
    map.retain(|_, tat| *tat > now);
    if map.len() < max_keys {
        return;
    }
    let soonest = map
        .iter()
        .min_by_key(|(_, tat)| **tat)
        .map(|(key, _)| key.clone());
    if let Some(soonest) = soonest {
        map.remove(&soonest);
    }
}

/// Builds the decision from each limit's outcome.
/// Each outcome comes with how far the stored TAT was ahead of now before
/// the request, which gives the state of a limit that was not charged.
/// `denied_elsewhere` is set when something other than the limits (a use
/// counter) denied the request, so no limit was charged.
pub(crate) fn decide(
    limits: &[LimitRequest],
    outcomes: &[(Gcra, u64, Outcome)],
    denied_elsewhere: bool,
) -> Decision {
    let admitted = !denied_elsewhere
        && outcomes
            .iter()
            .all(|(_, _, outcome)| matches!(outcome, Outcome::Admit { .. }));
    let statuses: Vec<LimitStatus> = limits
        .iter()
        .zip(outcomes)
        .map(|(limit, (gcra, ahead, outcome))| {
            let (remaining, reset, retry_after) = match *outcome {
                // A request denied elsewhere is not charged here, so this
                // limit reports what it had before the request.
                Outcome::Admit {
                    remaining, reset, ..
                } if admitted => (remaining, reset, None),
                Outcome::Admit { .. } => (gcra.remaining_when_ahead(*ahead), *ahead, None),
                Outcome::Deny { retry_after, reset } => (0, reset, Some(retry_after)),
            };
            LimitStatus {
                name: limit.name.clone(),
                rate: limit.rate,
                remaining,
                reset: Duration::from_micros(reset),
                retry_after: retry_after.map(Duration::from_micros),
            }
        })
        .collect();
    let verdict = limited_verdict(&statuses).unwrap_or(Verdict::Admitted);
    Decision {
        verdict,
        limits: statuses,
        uses: None,
    }
}

/// Returns the verdict of the denying limit with the longest wait, if any.
pub(crate) fn limited_verdict(statuses: &[LimitStatus]) -> Option<Verdict> {
    statuses
        .iter()
        .filter_map(|status| Some((status, status.retry_after?)))
        .max_by_key(|(_, retry_after)| *retry_after)
        .map(|(status, retry_after)| Verdict::Limited {
            limit: status.name.clone(),
            retry_after,
        })
}

fn shard_of(key: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    usize::try_from(hash % SHARDS as u64).unwrap_or(0)
}

/// Locks a shard. It holds plain numbers, so a panic elsewhere cannot leave
/// it half-written, and a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::policy::LimitName;

    fn limit(name: &str, rate: &str, subject: &str) -> LimitRequest {
        LimitRequest::new(
            LimitName::new(name).unwrap(),
            rate.parse().unwrap(),
            subject,
        )
    }

    fn admitted(limiter: &LocalLimiter, limits: &[LimitRequest], attempts: usize) -> usize {
        (0..attempts)
            .filter(|_| limiter.check(limits).is_admitted())
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn burst_as_configured() {
        let limiter = LocalLimiter::default();
        let key = [limit("key", "10/s burst 25", "key_1")];
        assert_eq!(admitted(&limiter, &key, 100), 25);
        let other = [limit("key", "10/s burst 25", "key_2")];
        assert_eq!(admitted(&limiter, &other, 100), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_holds_over_seconds() {
        let limiter = LocalLimiter::default();
        let key = [limit("key", "50/s burst 5", "key_1")];
        let mut total = 0;
        // 20 attempts every 100 ms for 5 s: 200 per second offered.
        for _ in 0..50 {
            total += admitted(&limiter, &key, 20);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let expected = 5 + 50 * 5;
        assert!(
            total.abs_diff(expected) * 20 <= expected,
            "admitted {total}, expected {expected}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn strictest_limit_wins() {
        let limiter = LocalLimiter::default();
        let limits = [
            limit("tenant", "100/s", "acme"),
            limit("key", "2/min", "key_1"),
            limit("route", "1/s burst 3", "/orders"),
        ];
        assert!(limiter.check(&limits).is_admitted());
        assert!(limiter.check(&limits).is_admitted());
        let decision = limiter.check(&limits);
        let Verdict::Limited { limit, retry_after } = &decision.verdict else {
            panic!("third request admitted: {decision:?}");
        };
        assert_eq!(limit.as_str(), "key");
        assert_eq!(*retry_after, Duration::from_secs(30));
        assert_eq!(decision.retry_after_seconds(), Some(30));
        assert_eq!(decision.violated_policies(), ["key"]);
    }

    #[tokio::test(start_paused = true)]
    async fn denied_request_consumes_nothing() {
        let limiter = LocalLimiter::default();
        let tenant = limit("tenant", "5/min", "acme");
        let key = limit("key", "1/min", "key_1");
        assert!(limiter.check(&[tenant.clone(), key.clone()]).is_admitted());
        // Denied by the key limit: the tenant limit must not be charged.
        for _ in 0..10 {
            let decision = limiter.check(&[tenant.clone(), key.clone()]);
            assert!(!decision.is_admitted());
            let tenant_status = &decision.limits[0];
            assert_eq!(tenant_status.remaining, 4);
            assert_eq!(tenant_status.retry_after, None);
        }
        // The tenant still has four of its five.
        assert_eq!(admitted(&limiter, std::slice::from_ref(&tenant), 10), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn refund_gives_request_back() {
        let limiter = LocalLimiter::default();
        let tenant = limit("tenant", "3/min", "acme");
        let route = limit("route", "3/min", "/orders");
        let both = [tenant.clone(), route.clone()];
        assert!(limiter.check(&both).is_admitted());
        assert!(limiter.check(&both).is_admitted());
        limiter.refund(&both);
        limiter.refund(&both);
        assert!(limiter.is_empty());
        // Each limit has its whole allowance again.
        assert_eq!(admitted(&limiter, &[tenant], 10), 3);
        assert_eq!(admitted(&limiter, &[route], 10), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn same_key_twice_counts_twice() {
        let limiter = LocalLimiter::default();
        let key = limit("key", "4/min", "key_1");
        assert_eq!(admitted(&limiter, &[key.clone(), key], 10), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_entries_evicted() {
        let limiter = LocalLimiter::default();
        limiter.check(&[limit("key", "10/s", "a")]);
        limiter.check(&[limit("key", "1/min", "b")]);
        assert_eq!(limiter.len(), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.evict_idle(), 1);
        assert_eq!(limiter.len(), 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(limiter.evict_idle(), 1);
        assert!(limiter.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn full_shard_stays_bounded() {
        let limiter = LocalLimiter::with_capacity(4);
        for index in 0..10_000 {
            limiter.check(&[limit("client", "1/h", &format!("192.0.2.{index}"))]);
        }
        assert!(limiter.len() <= 4 * SHARDS, "{} entries", limiter.len());
    }
}
