//! Rates written as `N/period` (`10/s`, `10/10s`, `1200/m`), and their governor quotas.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::Quota;

/// At most `count` events per `period`, with a burst of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    period: Duration,
}

/// Why a string is not a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a rate is COUNT/PERIOD with a period in s, m, h or d, e.g. \"10/s\", \"10/10s\" or \"1200/m\""
)]
pub struct RateError;

impl Rate {
    /// Events allowed per period.
    pub fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The GCRA quota: a burst of `count`, refilling one event every `period / count`.
    pub fn quota(&self) -> Quota {
        let per_event = self.period / self.count.get();
        // `period` is at least one second and `count` at most 1_000_000, so
        // `per_event` is at least a microsecond and never zero.
        Quota::with_period(per_event)
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, period) = s.split_once('/').ok_or(RateError)?;
        let count = parse_digits(count)?;
        if count == 0 || count > 1_000_000 {
            return Err(RateError);
        }
        let unit_at = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or(RateError)?;
        let (multiplier, unit) = period.split_at(unit_at);
        let multiplier = if multiplier.is_empty() {
            1
        } else {
            parse_digits(multiplier)?
        };
        let unit_seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(RateError),
        };
        if multiplier == 0 || multiplier > 1_000 {
            return Err(RateError);
        }
        Ok(Self {
            count: NonZeroU32::new(count).ok_or(RateError)?,
            period: Duration::from_secs(u64::from(multiplier) * unit_seconds),
        })
    }
}

fn parse_digits(s: &str) -> Result<u32, RateError> {
    if s.is_empty() || s.len() > 7 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RateError);
    }
    s.parse().map_err(|_| RateError)
}

impl fmt::Display for Rate {
    /// Writes the rate back in the form it is configured in (`10/s`, `10/10s`, `5/2h`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.period.as_secs();
        let (multiplier, unit) = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")]
            .into_iter()
            .find(|(unit, _)| seconds.is_multiple_of(*unit))
            .map_or((seconds, "s"), |(size, unit)| (seconds / size, unit));
        if multiplier == 1 {
            write!(f, "{}/{unit}", self.count)
        } else {
            write!(f, "{}/{multiplier}{unit}", self.count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let r: Rate = "10/s".parse().unwrap();
        assert_eq!((r.count().get(), r.period()), (10, Duration::from_secs(1)));
        let r: Rate = "10/10s".parse().unwrap();
        assert_eq!(r.period(), Duration::from_secs(10));
        let r: Rate = "1200/m".parse().unwrap();
        assert_eq!(r.period(), Duration::from_secs(60));
        let r: Rate = "5/2h".parse().unwrap();
        assert_eq!(r.period(), Duration::from_secs(7200));
    }

    #[test]
    fn displays_as_configured() {
        for text in ["10/s", "10/10s", "1200/m", "5/2h", "1/d", "3/90s"] {
            assert_eq!(text.parse::<Rate>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_rates() {
        for bad in [
            "", "10", "10/", "/s", "0/s", "10/0s", "-1/s", "10/sec", "10/ms", "1.5/s", "10/s ",
            "10/10",
        ] {
            assert_eq!(bad.parse::<Rate>(), Err(RateError), "{bad:?}");
        }
    }
}
