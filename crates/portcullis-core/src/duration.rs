//! Human durations for command-line flags and settings: `30s`, `15m`, `24h`,
//! `90d`, `2w`.

use time::Duration;

/// The longest duration accepted, 100 years, so that adding it to the
/// current time cannot overflow a date.
pub const MAX_DURATION: Duration = Duration::days(36_500);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty or had no unit.
    #[error("invalid duration {0:?}: expected a number followed by s, m, h, d or w, such as 90d")]
    Syntax(String),
    /// The number was zero or beyond [`MAX_DURATION`].
    #[error("duration {0:?} is out of range: it must be above zero and at most 36500d")]
    OutOfRange(String),
}

/// Parses a duration such as `90d` (one number and one unit).
///
/// Units: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(input.to_owned());
    let trimmed = input.trim();
    let unit_at = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(syntax)?;
    let (number, unit) = trimmed.split_at(unit_at);
    if number.is_empty() || number.len() > 12 {
        return Err(syntax());
    }
    let count: i64 = number.parse().map_err(|_| syntax())?;

    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(syntax()),
    };
    let duration = count
        .checked_mul(seconds_per_unit)
        .map(Duration::seconds)
        .ok_or_else(|| DurationError::OutOfRange(input.to_owned()))?;
    if duration <= Duration::ZERO || duration > MAX_DURATION {
        return Err(DurationError::OutOfRange(input.to_owned()));
    }
    Ok(duration)
}

/// Formats a duration in the largest unit that divides it (`86400s` → `1d`).
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.whole_seconds();
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds != 0 && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::seconds(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::minutes(15)));
        assert_eq!(parse_duration("24h"), Ok(Duration::hours(24)));
        assert_eq!(parse_duration("90d"), Ok(Duration::days(90)));
        assert_eq!(parse_duration("2w"), Ok(Duration::weeks(2)));
    }

    #[test]
    fn bad_input_rejected() {
        for input in [
            "",
            "d",
            "10",
            "10y",
            "-5d",
            "1.5h",
            "0s",
            "99999999999999d",
            "1d2h",
        ] {
            assert!(parse_duration(input).is_err(), "{input:?} parsed");
        }
    }

    #[test]
    fn formats_largest_unit() {
        assert_eq!(format_duration(Duration::days(1)), "1d");
        assert_eq!(format_duration(Duration::seconds(90)), "90s");
        assert_eq!(format_duration(Duration::weeks(3)), "3w");
    }
}
