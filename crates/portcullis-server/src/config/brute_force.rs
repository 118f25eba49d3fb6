//! The `[limits.brute_force]` table, checked.

use std::time::Duration;

use crate::ratelimit::brute_force::{BruteForcePolicy, Thresholds};

use super::ConfigError;
use super::raw::{RawBruteForce, RawThresholds};
use super::validate::check_duration;

/// Maximum failure count a threshold may name. Counts above it would let an
/// attacker guess for a long time before any block.
pub(super) const MAX_FAILURE_THRESHOLD: u32 = 10_000;

/// Maximum window and block: one day. A longer block would let one burst
/// of failures lock an identity's owner out for days.
pub(super) const MAX_BLOCK_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// Maximum delay, because a delayed request keeps its connection open while
/// it waits.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(10);

/// Checks the `[limits.brute_force]` table, filling in each missing field
/// from [`BruteForcePolicy::default`].
pub(super) fn check_brute_force(raw: RawBruteForce) -> Result<BruteForcePolicy, ConfigError> {
    let defaults = BruteForcePolicy::default();
    Ok(BruteForcePolicy {
        client_ip: check_thresholds(
            "limits.brute_force.client_ip",
            raw.client_ip.unwrap_or_default(),
            defaults.client_ip,
        )?,
        identity: check_thresholds(
            "limits.brute_force.identity",
            raw.identity.unwrap_or_default(),
            defaults.identity,
        )?,
    })
}

fn check_thresholds(
    table: &str,
    raw: RawThresholds,
    defaults: Thresholds,
) -> Result<Thresholds, ConfigError> {
    let setting = |field: &str| format!("{table}.{field}");
    let thresholds = Thresholds {
        slow_after: raw.slow_after.unwrap_or(defaults.slow_after),
        block_after: raw.block_after.unwrap_or(defaults.block_after),
        window: check_duration(&setting("window"), raw.window, defaults.window)?,
        first_block: check_duration(
            &setting("first_block"),
            raw.first_block,
            defaults.first_block,
        )?,
        max_block: check_duration(&setting("max_block"), raw.max_block, defaults.max_block)?,
        delay_step: raw
            .delay_step_ms
            .map_or(defaults.delay_step, Duration::from_millis),
        max_delay: raw
            .max_delay_ms
            .map_or(defaults.max_delay, Duration::from_millis),
    };

    for (field, count) in [
        ("slow_after", thresholds.slow_after),
        ("block_after", thresholds.block_after),
    ] {
        if count == 0 || count > MAX_FAILURE_THRESHOLD {
            return Err(ConfigError::invalid(
                setting(field),
                format!("{count} is out of range; write a count from 1 to {MAX_FAILURE_THRESHOLD}"),
            ));
        }
    }
    if thresholds.slow_after > thresholds.block_after {
        return Err(ConfigError::invalid(
            setting("slow_after"),
            format!(
                "{} is above block_after ({}); slowing starts at or before the block",
                thresholds.slow_after, thresholds.block_after
            ),
        ));
    }
    for (field, period) in [
        ("window", thresholds.window),
        ("max_block", thresholds.max_block),
    ] {
        if period > MAX_BLOCK_PERIOD {
            return Err(ConfigError::invalid(
                setting(field),
                format!("{period:?} is longer than the maximum of 1d"),
            ));
        }
    }
    if thresholds.first_block > thresholds.max_block {
        return Err(ConfigError::invalid(
            setting("first_block"),
            format!(
                "{:?} is longer than max_block ({:?})",
                thresholds.first_block, thresholds.max_block
            ),
        ));
    }
    if thresholds.max_delay > MAX_DELAY {
        return Err(ConfigError::invalid(
            setting("max_delay_ms"),
            format!(
                "{} ms is above the maximum of {} ms",
                thresholds.max_delay.as_millis(),
                MAX_DELAY.as_millis()
            ),
        ));
    }
    if thresholds.delay_step > thresholds.max_delay {
        return Err(ConfigError::invalid(
            setting("delay_step_ms"),
            format!(
                "{} ms is above max_delay_ms ({} ms)",
                thresholds.delay_step.as_millis(),
                thresholds.max_delay.as_millis()
            ),
        ));
    }
    Ok(thresholds)
}
