//! Rate limit policies: a rate with a burst (`100/s burst 200`), and the
//! name each limit is reported under.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Maximum rate: one request per microsecond, the resolution of the GCRA
/// arithmetic.
pub const MAX_REQUESTS_PER_SECOND: u64 = 1_000_000;

/// Maximum time a full burst takes to refill. It keeps every timestamp of
/// the arithmetic below 2^53 microseconds, so Redis's Lua numbers (doubles)
/// represent them exactly.
pub const MAX_BURST_WINDOW: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Maximum length of a limit name.
pub const MAX_NAME_LEN: usize = 32;

/// The unit of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// `s`
    Second,
    /// `min`
    Minute,
    /// `h`
    Hour,
    /// `d`
    Day,
}

impl RateUnit {
    /// Returns the length of the unit in seconds.
    pub const fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 60 * 60,
            Self::Day => 24 * 60 * 60,
        }
    }

    const fn symbol(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "min",
            Self::Hour => "h",
            Self::Day => "d",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "s" => Some(Self::Second),
            "min" => Some(Self::Minute),
            "h" => Some(Self::Hour),
            "d" => Some(Self::Day),
            _ => None,
        }
    }
}

/// A rate limit: `count` requests per `unit` on average, with up to `burst`
/// requests at once. Written `COUNT/UNIT [burst N]`; the burst defaults to
/// the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u64,
    unit: RateUnit,
    burst: u64,
}

impl Rate {
    /// Returns a compact form of the rate for storage keys, such as
    /// `100-s-200`: printable, without spaces, one per rate.
    pub fn state_key(&self) -> String {
        format!("{}-{}-{}", self.count, self.unit.symbol(), self.burst)
    }

    /// Builds a rate, checking the same bounds as the parser.
    pub fn new(count: u64, unit: RateUnit, burst: u64) -> Result<Self, RateError> {
        let input = format!("{count}/{} burst {burst}", unit.symbol());
        let invalid = |reason| RateError {
            input: input.clone(),
            reason,
        };
        if count == 0 {
            return Err(invalid(RateErrorReason::ZeroCount));
        }
        if burst == 0 {
            return Err(invalid(RateErrorReason::ZeroBurst));
        }
        if count > MAX_REQUESTS_PER_SECOND.saturating_mul(unit.seconds()) {
            return Err(invalid(RateErrorReason::TooFast));
        }
        let rate = Self { count, unit, burst };
        let window = rate.emission_interval_micros().saturating_mul(burst);
        if u128::from(window) > MAX_BURST_WINDOW.as_micros() {
            return Err(invalid(RateErrorReason::WindowTooLong));
        }
        Ok(rate)
    }

    /// Returns the average number of requests per unit.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// Returns the unit of the rate.
    pub const fn unit(&self) -> RateUnit {
        self.unit
    }

    /// Returns the number of requests admitted at once.
    pub const fn burst(&self) -> u64 {
        self.burst
    }

    /// Returns the GCRA emission interval: the time one request costs, in
    /// microseconds. It is rounded up, so the enforced rate is never above
    /// the configured one. For rates up to 1000 per second the difference
    /// is below one part in a million.
    pub const fn emission_interval_micros(&self) -> u64 {
        (self.unit.seconds() * 1_000_000).div_ceil(self.count)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.symbol())?;
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| RateError {
            input: input.to_owned(),
            reason,
        };
        let words: Vec<&str> = input.split_whitespace().collect();
        let (rate, burst) = match words.as_slice() {
            [rate] => (*rate, None),
            [rate, "burst", burst] => (*rate, Some(*burst)),
            _ => return Err(invalid(RateErrorReason::Shape)),
        };
        let (count, unit) = rate
            .split_once('/')
            .ok_or_else(|| invalid(RateErrorReason::Shape))?;
        let count = parse_positive(count).ok_or_else(|| invalid(RateErrorReason::ZeroCount))?;
        let unit = RateUnit::parse(unit)
            .ok_or_else(|| invalid(RateErrorReason::UnknownUnit(unit.to_owned())))?;
        let burst = match burst {
            Some(text) => {
                parse_positive(text).ok_or_else(|| invalid(RateErrorReason::ZeroBurst))?
            }
            None => count,
        };
        Self::new(count, unit, burst).map_err(|error| invalid(error.reason))
    }
}

/// Parses a decimal integer above zero, digits only.
fn parse_positive(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|value| *value > 0)
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A rate limit that does not parse or is out of bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate limit \"{input}\": {reason}")]
pub struct RateError {
    input: String,
    reason: RateErrorReason,
}

/// The reason a rate limit is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum RateErrorReason {
    #[error("expected COUNT/UNIT [burst N], such as 100/s or 5000/h burst 500")]
    Shape,
    #[error("the count must be a whole number above 0")]
    ZeroCount,
    #[error("the burst must be a whole number above 0")]
    ZeroBurst,
    #[error("unknown unit \"{0}\"; use s, min, h or d")]
    UnknownUnit(String),
    #[error("the rate is above {MAX_REQUESTS_PER_SECOND} per second")]
    TooFast,
    #[error("a full burst would take more than 366 days to refill; lower the burst")]
    WindowTooLong,
}

/// The name a limit is reported under, in the `RateLimit` headers and in
/// the problem body of a 429: `key`, `tenant`, `route`, `client` or a plan's
/// limit. Lowercase ASCII letters, digits, `-` and `_`, at most
/// [`MAX_NAME_LEN`] characters, so that it needs no escaping in a header.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitName(String);

impl LimitName {
    /// Checks and wraps a name.
    pub fn new(name: &str) -> Result<Self, LimitNameError> {
        let valid_byte = |byte: u8| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        };
        if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(valid_byte) {
            return Err(LimitNameError(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    /// Returns the name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps the name of a built-in limit (`key`, `tenant`, …). The name is
    /// a literal, checked against [`Self::new`] in debug builds.
    pub(crate) fn builtin(name: &'static str) -> Self {
        debug_assert!(
            Self::new(name).is_ok(),
            "invalid built-in limit name {name}"
        );
        Self(name.to_owned())
    }
}

impl fmt::Display for LimitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LimitName {
    type Err = LimitNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl Serialize for LimitName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LimitName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A limit name with characters outside `a-z 0-9 - _` or a bad length.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid limit name \"{0}\": use 1 to {MAX_NAME_LEN} lowercase letters, digits, '-' or '_'"
)]
pub struct LimitNameError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let cases = [
            (
                "100/s burst 200",
                "100/s burst 200",
                100,
                RateUnit::Second,
                200,
            ),
            ("5000/h", "5000/h", 5000, RateUnit::Hour, 5000),
            ("10/min", "10/min", 10, RateUnit::Minute, 10),
            ("  7/d   burst 7 ", "7/d", 7, RateUnit::Day, 7),
            ("3/s burst 1", "3/s burst 1", 3, RateUnit::Second, 1),
        ];
        for (input, printed, count, unit, burst) in cases {
            let rate: Rate = input.parse().unwrap();
            assert_eq!(rate.count(), count, "{input}");
            assert_eq!(rate.unit(), unit, "{input}");
            assert_eq!(rate.burst(), burst, "{input}");
            assert_eq!(rate.to_string(), printed, "{input}");
            assert_eq!(printed.parse::<Rate>().unwrap(), rate, "{input}");
        }
    }

    #[test]
    fn bad_rates_name_the_problem() {
        let cases = [
            ("", "expected COUNT/UNIT [burst N]"),
            ("100", "expected COUNT/UNIT [burst N]"),
            ("100/s 200", "expected COUNT/UNIT [burst N]"),
            ("100/s burst", "expected COUNT/UNIT [burst N]"),
            ("100 / s", "expected COUNT/UNIT [burst N]"),
            ("0/s", "the count must be a whole number above 0"),
            ("-1/s", "the count must be a whole number above 0"),
            ("1.5/s", "the count must be a whole number above 0"),
            ("10/s burst 0", "the burst must be a whole number above 0"),
            ("10/sec", "unknown unit \"sec\"; use s, min, h or d"),
            ("10/m", "unknown unit \"m\""),
            ("2000000/s", "above 1000000 per second"),
            ("1/d burst 400", "more than 366 days"),
            (
                "99999999999999999999999/s",
                "the count must be a whole number above 0",
            ),
        ];
        for (input, expected) in cases {
            let message = input.parse::<Rate>().unwrap_err().to_string();
            let prefix = format!("invalid rate limit \"{input}\": ");
            assert!(message.starts_with(&prefix), "{input}: {message}");
            assert!(message.contains(expected), "{input}: {message}");
        }
    }

    #[test]
    fn emission_interval_rounds_up() {
        assert_eq!(
            "100/s".parse::<Rate>().unwrap().emission_interval_micros(),
            10_000
        );
        assert_eq!(
            "3/s".parse::<Rate>().unwrap().emission_interval_micros(),
            333_334
        );
        assert_eq!(
            "5000/h".parse::<Rate>().unwrap().emission_interval_micros(),
            720_000
        );
    }

    #[test]
    fn rate_serde_uses_text() {
        #[derive(Serialize, Deserialize)]
        struct Holder {
            rate: Rate,
            name: LimitName,
        }
        let holder: Holder = toml::from_str("rate = \"100/s burst 200\"\nname = \"key\"").unwrap();
        assert_eq!(holder.rate.burst(), 200);
        assert_eq!(holder.name.as_str(), "key");
        assert_eq!(
            toml::to_string(&holder).unwrap(),
            "rate = \"100/s burst 200\"\nname = \"key\"\n"
        );
        let error = toml::from_str::<Holder>("rate = \"fast\"\nname = \"key\"")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("invalid rate limit \"fast\""), "{error}");
    }

    #[test]
    fn limit_names_checked() {
        for good in ["key", "tenant", "route", "client", "plan-gold_2"] {
            assert!(LimitName::new(good).is_ok(), "{good}");
        }
        for bad in ["", "Key", "a b", "quote\"", "x".repeat(33).as_str()] {
            assert!(LimitName::new(bad).is_err(), "{bad}");
        }
    }
}
