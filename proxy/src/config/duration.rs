//! Durations as operators write them (`"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"`),
//! read into milliseconds for the settings that also take a `*_ms` integer.

/// Milliseconds per unit, longest suffix first so that `ms` is not read as `m`.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// One whole number and one unit; anything else (no unit, a fraction, a sign, two
/// parts) is refused rather than guessed at.
pub(crate) fn parse_millis(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(if unit.is_empty() {
            "write the unit, e.g. \"10s\" or \"500ms\"".to_owned()
        } else {
            "write a whole number and one unit of ms, s, m, h or d, e.g. \"10s\" or \"500ms\""
                .to_owned()
        });
    };
    if number.is_empty() {
        return Err("write a whole number before the unit, e.g. \"10s\"".to_owned());
    }
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .ok_or_else(|| "too large".to_owned())
}

/// Milliseconds in the largest unit that divides them, for messages.
pub(super) fn human(ms: u64) -> String {
    UNITS
        .iter()
        .rev()
        .find(|(_, per_unit)| ms != 0 && ms.is_multiple_of(*per_unit))
        .map_or_else(
            || format!("{ms}ms"),
            |(name, per_unit)| format!("{}{name}", ms / per_unit),
        )
}

#[cfg(test)]
mod tests {
    use super::{human, parse_millis};

    #[test]
    fn durations_read_as_written_and_nothing_is_guessed() {
        for (text, ms) in [
            ("500ms", 500),
            ("10s", 10_000),
            ("0s", 0),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(parse_millis(text), Ok(ms), "{text}");
        }
        for text in [
            "10",
            "",
            "s",
            "1.5s",
            "-1s",
            "10 s",
            "1m30s",
            "10sec",
            "10S",
            "99999999999999999999d",
        ] {
            assert!(parse_millis(text).is_err(), "{text} must be refused");
        }
        assert_eq!(human(500), "500ms");
        assert_eq!(human(120_000), "2m");
        assert_eq!(human(1_500), "1500ms");
        assert_eq!(human(0), "0ms");
        assert_eq!(human(86_400_000), "1d");
    }
}
