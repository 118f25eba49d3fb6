//! The generic cell rate algorithm (GCRA, the virtual-scheduling form of
//! ITU-T I.371), in integer microseconds.
//!
//! Each limit stores one number per subject: the theoretical arrival time
//! (TAT), the time at which the subject's allowance is fully restored. A
//! request is admitted when, after adding its cost to the TAT, the TAT is
//! at most one burst window (`burst × emission interval`) ahead of now.
//!
//! The local limiter calls these functions and the Redis script
//! (`limit.lua`) repeats the same formulas line for line, so one node and
//! ten return the same decisions. Keep both in step when changing either.

use crate::ratelimit::policy::Rate;

/// The parameters of one limit, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// Time one request costs.
    pub emission_interval: u64,
    /// Requests admitted at once.
    pub burst: u64,
}

/// The outcome of one GCRA step for one subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request fits. Store `new_tat`.
    Admit {
        /// The TAT to store.
        new_tat: u64,
        /// Requests that would still be admitted right now.
        remaining: u64,
        /// Time until the allowance is full again.
        reset: u64,
    },
    /// The request does not fit. Store nothing.
    Deny {
        /// Time until this request would fit.
        retry_after: u64,
        /// Time until the allowance is full again.
        reset: u64,
    },
}

impl Gcra {
    /// Returns the parameters of `rate`.
    pub const fn new(rate: &Rate) -> Self {
        Self {
            emission_interval: rate.emission_interval_micros(),
            burst: rate.burst(),
        }
    }

    /// Returns the burst window: how far the TAT may run ahead of now.
    pub const fn window(&self) -> u64 {
        self.emission_interval.saturating_mul(self.burst)
    }

    /// Decides a request of `cost` units at `now`, given the stored TAT
    /// (0 when the subject has none, which is the same as a full allowance).
    pub fn step(&self, stored_tat: u64, now: u64, cost: u64) -> Outcome {
        let tat = stored_tat.max(now);
        let new_tat = tat.saturating_add(cost.saturating_mul(self.emission_interval));
        // Both differences are from now, so nothing goes below zero when
        // `now` is small, as on a clock that starts at process start.
        let ahead = new_tat - now;
        if ahead > self.window() {
            return Outcome::Deny {
                retry_after: ahead - self.window(),
                reset: tat - now,
            };
        }
        Outcome::Admit {
            new_tat,
            remaining: (self.window() - ahead) / self.emission_interval,
            reset: ahead,
        }
    }

    /// Returns the TAT after giving back `cost` units that [`Self::step`]
    /// charged, or `None` when the allowance is then full at `now`, so the
    /// entry can go. A rejected request that was already charged gets its
    /// units back this way.
    pub fn refund(&self, stored_tat: u64, now: u64, cost: u64) -> Option<u64> {
        let tat = stored_tat.saturating_sub(cost.saturating_mul(self.emission_interval));
        (tat > now).then_some(tat)
    }

    /// Returns the requests that would be admitted at `now` without
    /// changing anything, for the headers of a response that was not charged.
    pub fn remaining(&self, stored_tat: u64, now: u64) -> u64 {
        self.remaining_when_ahead(stored_tat.saturating_sub(now))
    }

    /// Returns the requests that would be admitted when the stored TAT is
    /// `ahead` microseconds past now.
    pub fn remaining_when_ahead(&self, ahead: u64) -> u64 {
        self.window().saturating_sub(ahead) / self.emission_interval
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ratelimit::policy::RateUnit;

    fn gcra(count: u64, unit: RateUnit, burst: u64) -> Gcra {
        Gcra::new(&Rate::new(count, unit, burst).unwrap())
    }

    /// Sends requests at the given offsets from `start` and returns the
    /// offsets of the admitted ones.
    fn admitted_at(gcra: &Gcra, start: u64, offsets: &[u64]) -> Vec<u64> {
        let mut tat = 0;
        let mut admitted = Vec::new();
        for offset in offsets {
            if let Outcome::Admit { new_tat, .. } = gcra.step(tat, start + offset, 1) {
                tat = new_tat;
                admitted.push(*offset);
            }
        }
        admitted
    }

    #[test]
    fn burst_then_rate() {
        let limit = gcra(10, RateUnit::Second, 3);
        let now = 5_000_000;
        let mut tat = 0;
        for expected_remaining in [2, 1, 0] {
            let Outcome::Admit {
                new_tat, remaining, ..
            } = limit.step(tat, now, 1)
            else {
                panic!("burst request denied");
            };
            assert_eq!(remaining, expected_remaining);
            tat = new_tat;
        }
        assert_eq!(
            limit.step(tat, now, 1),
            Outcome::Deny {
                retry_after: 100_000,
                reset: 300_000
            }
        );
        assert!(matches!(
            limit.step(tat, now + 100_000, 1),
            Outcome::Admit { .. }
        ));
        assert_eq!(limit.remaining(tat, now), 0);
        assert_eq!(limit.remaining(tat, now + 300_000), 3);
    }

    #[test]
    fn clock_near_zero_counts_full_burst() {
        let limit = gcra(10, RateUnit::Minute, 5);
        let Outcome::Admit {
            remaining, reset, ..
        } = limit.step(0, 1, 1)
        else {
            panic!("first request denied");
        };
        assert_eq!(remaining, 4);
        assert_eq!(reset, 6_000_000);
    }

    #[test]
    fn refund_restores_allowance() {
        let limit = gcra(10, RateUnit::Second, 2);
        let now = 1_000_000;
        let Outcome::Admit { new_tat: first, .. } = limit.step(0, now, 1) else {
            panic!("first request denied");
        };
        let Outcome::Admit {
            new_tat: second, ..
        } = limit.step(first, now, 1)
        else {
            panic!("second request denied");
        };
        assert!(matches!(limit.step(second, now, 1), Outcome::Deny { .. }));

        assert_eq!(limit.refund(second, now, 1), Some(first));
        assert_eq!(limit.remaining(first, now), 1);
        // Giving back the only charge leaves a full allowance and no entry.
        assert_eq!(limit.refund(first, now, 1), None);
        assert_eq!(limit.refund(0, now, 1), None);
    }

    proptest! {
        /// No window of any length admits more than the burst plus what
        /// the rate allows in that window.
        #[test]
        fn never_more_than_burst_plus_rate(
            count in 1u64..200,
            burst in 1u64..50,
            gaps in proptest::collection::vec(0u64..50_000, 1..400),
        ) {
            let limit = gcra(count, RateUnit::Second, burst);
            let mut offsets = Vec::with_capacity(gaps.len());
            let mut clock = 0;
            for gap in gaps {
                clock += gap;
                offsets.push(clock);
            }
            let admitted = admitted_at(&limit, 1_000_000, &offsets);
            for (index, first) in admitted.iter().enumerate() {
                for (later, last) in admitted.iter().enumerate().skip(index) {
                    let span = last - first;
                    let allowed = burst + span / limit.emission_interval;
                    prop_assert!((later - index + 1) as u64 <= allowed);
                }
            }
        }

        /// A client that tries every 100 µs gets the burst plus exactly one
        /// request per emission interval: the long-run rate is the
        /// configured one. A burst of 2 or more keeps the TAT ahead of the
        /// clock between attempts, so no slot is lost to the 100 µs grid.
        #[test]
        fn long_run_rate_matches(count in 1u64..2000, burst in 2u64..100, seconds in 1u64..4) {
            let limit = gcra(count, RateUnit::Second, burst);
            let horizon = seconds * 1_000_000;
            let offsets: Vec<u64> = (0..=horizon / 100).map(|i| i * 100).collect();
            let admitted = admitted_at(&limit, 7_000_000, &offsets).len() as u64;
            prop_assert_eq!(admitted, burst + horizon / limit.emission_interval);
        }

        /// Retry-after is exact: one microsecond early is still denied and
        /// at the given time the request is admitted.
        #[test]
        fn retry_after_exact(count in 1u64..500, burst in 1u64..20, extra in 1u64..5, now in 1u64..1_000_000_000) {
            let limit = gcra(count, RateUnit::Minute, burst);
            let mut tat = 0;
            for _ in 0..burst + extra {
                if let Outcome::Admit { new_tat, .. } = limit.step(tat, now, 1) {
                    tat = new_tat;
                }
            }
            let Outcome::Deny { retry_after, reset } = limit.step(tat, now, 1) else {
                panic!("request past the burst admitted");
            };
            prop_assert_eq!(reset, tat - now);
            let early = matches!(limit.step(tat, now + retry_after - 1, 1), Outcome::Deny { .. });
            let on_time = matches!(limit.step(tat, now + retry_after, 1), Outcome::Admit { .. });
            prop_assert!(early, "admitted 1 µs before retry-after");
            prop_assert!(on_time, "denied at retry-after");
        }
    }
}
