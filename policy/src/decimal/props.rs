//! Property tests of [`Decimal`] and [`Amount`] against an independent reference:
//! arbitrary-precision integers (num-bigint) over the digits of the text, so that
//! parsing limits, rounding up, saturation and ordering are checked for inputs no
//! one wrote by hand. `PROPTEST_CASES` raises the number of cases (default 256).

use std::cmp::Ordering;

use num_bigint::BigUint;
use proptest::prelude::*;

use super::{Amount, Decimal, DecimalError};

/// What a decimal text means: `digits / 10^scale`, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exact {
    digits: BigUint,
    scale: u32,
}

impl Exact {
    /// Reads text that is already known to match `(0|[1-9][0-9]*)(\.[0-9]+)?`.
    fn of(text: &str) -> Self {
        let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all = format!("{integer}{fraction}");
        Self {
            digits: all.parse().unwrap(),
            scale: u32::try_from(fraction.len()).unwrap(),
        }
    }

    /// The value in 10^-18 units, rounded up; `None` past `u128::MAX`.
    fn units_rounded_up(&self) -> BigUint {
        let ten = BigUint::from(10u32);
        if self.scale <= 18 {
            &self.digits * ten.pow(18 - self.scale)
        } else {
            let divisor = ten.pow(self.scale - 18);
            (&self.digits + &divisor - 1u32) / divisor
        }
    }

    fn times(&self, other: &Self) -> Self {
        Self {
            digits: &self.digits * &other.digits,
            scale: self.scale + other.scale,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        let ten = BigUint::from(10u32);
        let scale = self.scale.max(other.scale);
        let left = &self.digits * ten.pow(scale - self.scale);
        let right = &other.digits * ten.pow(scale - other.scale);
        left.cmp(&right)
    }

    /// The shortest text with this value: no leading zeros, no trailing fraction zeros.
    fn normal_text(&self) -> String {
        let digits = self.digits.to_string();
        let scale = self.scale as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (integer, fraction) = padded.split_at(padded.len() - scale);
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            integer.to_owned()
        } else {
            format!("{integer}.{fraction}")
        }
    }
}

/// What the reference expects an [`Amount`] to hold: the units, saturated.
fn saturated(units: &BigUint) -> u128 {
    u128::try_from(units).unwrap_or(u128::MAX)
}

/// Digits for an integer part: `0`, or no leading zero.
fn integer_part(max_len: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        (1..=9u8, proptest::collection::vec(0..=9u8, 0..max_len)).prop_map(|(first, rest)| {
            std::iter::once(first)
                .chain(rest)
                .map(|d| char::from(b'0' + d))
                .collect()
        }),
    ]
}

fn fraction_part(max_len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(0..=9u8, 1..=max_len)
        .prop_map(|ds| ds.into_iter().map(|d| char::from(b'0' + d)).collect())
}

/// Text in the grammar, of every size around the limits (19 significant digits, 18
/// fractional digits, 40 characters).
fn grammatical(max_integer: usize, max_fraction: usize) -> impl Strategy<Value = String> {
    (
        integer_part(max_integer),
        proptest::option::of(fraction_part(max_fraction)),
    )
        .prop_map(|(integer, fraction)| match fraction {
            Some(fraction) => format!("{integer}.{fraction}"),
            None => integer,
        })
}

/// Text in the grammar that [`Decimal`] must accept: a `u64`-sized mantissa below
/// 10^19 at a scale of 0 to 18.
fn representable() -> impl Strategy<Value = String> {
    (0..10_000_000_000_000_000_000u64, 0..=18u32, any::<bool>()).prop_map(
        |(mantissa, scale, small)| {
            // Half the cases are short numbers, where most real prices and sizes are.
            let mantissa = if small {
                mantissa % 1_000_000
            } else {
                mantissa
            };
            Exact {
                digits: BigUint::from(mantissa),
                scale,
            }
            .normal_text()
        },
    )
}

/// What the grammar and the limits say about `text` (built by [`grammatical`]).
fn expected_decimal(text: &str) -> Result<Exact, DecimalError> {
    if text.len() > 40 {
        return Err(DecimalError::Syntax);
    }
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    let significant = format!("{integer}{fraction}").trim_start_matches('0').len();
    if fraction.len() > 18 || significant > 19 {
        return Err(DecimalError::TooPrecise);
    }
    Ok(Exact::of(text))
}

/// Ways to leave the grammar: each turns grammatical text into text the parser must
/// refuse as `Syntax`.
fn ungrammatical() -> impl Strategy<Value = String> {
    (grammatical(6, 6), 0..12usize, "[^0-9.]", fraction_part(3)).prop_map(
        |(text, mutation, other, fraction)| match mutation {
            0 => format!("-{text}"),
            1 => format!("+{text}"),
            2 => format!("0{text}"),
            3 => format!("{text}e3"),
            4 => format!(" {text}"),
            5 => format!("{text} "),
            6 => format!("{text}."),
            7 => format!(".{text}"),
            8 => format!("{},5", text.replacen('.', ",", 1)),
            9 => format!("{text}.{fraction}.{fraction}"),
            10 => format!("{text}{other}"),
            _ => String::new(),
        },
    )
}

proptest! {
    #[test]
    fn grammatical_text_parses_exactly_within_the_limits(text in grammatical(24, 22)) {
        let parsed = text.parse::<Decimal>();
        match expected_decimal(&text) {
            Ok(exact) => {
                let parsed = parsed.unwrap();
                prop_assert_eq!(parsed.to_amount().to_units(), saturated(&exact.units_rounded_up()));
                prop_assert_eq!(parsed.to_string(), exact.normal_text());
            }
            Err(reason) => prop_assert_eq!(parsed, Err(reason)),
        }
    }

    #[test]
    fn text_outside_the_grammar_is_a_syntax_error(text in ungrammatical()) {
        prop_assert_eq!(text.parse::<Decimal>(), Err(DecimalError::Syntax));
        prop_assert_eq!(text.parse::<Amount>(), Err(DecimalError::Syntax));
    }

    #[test]
    fn arbitrary_text_is_refused_or_round_trips(text in "[-+0-9.eE ,]{0,24}") {
        if let Ok(parsed) = text.parse::<Decimal>() {
            // Only grammatical text can have parsed; its printed form means the same.
            prop_assert_eq!(expected_decimal(&text).map(|e| e.normal_text()), Ok(parsed.to_string()));
            prop_assert_eq!(parsed.to_string().parse::<Decimal>(), Ok(parsed));
        }
    }

    #[test]
    fn format_then_parse_is_the_identity(text in representable()) {
        let parsed: Decimal = text.parse().unwrap();
        let printed = parsed.to_string();
        prop_assert_eq!(&printed, &text);
        let again: Decimal = printed.parse().unwrap();
        prop_assert_eq!(again.to_amount(), parsed.to_amount());
    }

    #[test]
    fn trailing_zeros_change_nothing(text in representable(), zeros in 1..=6usize) {
        let padded = if text.contains('.') {
            format!("{text}{}", "0".repeat(zeros))
        } else {
            format!("{text}.{}", "0".repeat(zeros))
        };
        let exact = expected_decimal(&padded);
        let parsed = padded.parse::<Decimal>();
        match exact {
            Ok(_) => prop_assert_eq!(parsed.unwrap(), text.parse::<Decimal>().unwrap()),
            Err(reason) => prop_assert_eq!(parsed, Err(reason)),
        }
    }

    #[test]
    fn comparisons_agree_with_the_exact_values(a in representable(), b in representable()) {
        let (x, y): (Decimal, Decimal) = (a.parse().unwrap(), b.parse().unwrap());
        let expected = Exact::of(&a).cmp(&Exact::of(&b));
        prop_assert_eq!(x.cmp(&y), expected);
        prop_assert_eq!(x == y, expected == Ordering::Equal);
        prop_assert_eq!(x.to_amount().cmp(&y.to_amount()), expected);
    }

    #[test]
    fn notionals_are_exact_products_rounded_up_and_saturated(
        quantity in representable(),
        price in representable(),
    ) {
        let (q, p): (Decimal, Decimal) = (quantity.parse().unwrap(), price.parse().unwrap());
        let exact = Exact::of(&quantity).times(&Exact::of(&price));
        let expected = saturated(&exact.units_rounded_up());
        let notional = q.times(p);
        prop_assert_eq!(notional.to_units(), expected);
        prop_assert_eq!(p.times(q), notional);
        // Never below the true value unless saturated: rounding goes up.
        let units = BigUint::from(notional.to_units());
        prop_assert!(
            notional.is_saturated()
                || units * BigUint::from(10u32).pow(exact.scale) >= exact.digits * BigUint::from(10u32).pow(18)
        );
        prop_assert_eq!(notional.is_saturated(), expected == u128::MAX);
    }

    #[test]
    fn amounts_times_decimals_round_up_and_saturate(units in any::<u128>(), factor in representable()) {
        let amount = Amount::from_units(units);
        let f: Decimal = factor.parse().unwrap();
        let exact = Exact { digits: BigUint::from(units), scale: 18 }.times(&Exact::of(&factor));
        prop_assert_eq!(amount.mul_decimal(f).to_units(), saturated(&exact.units_rounded_up()));
    }

    #[test]
    fn sums_and_differences_saturate_instead_of_wrapping(a in any::<u128>(), b in any::<u128>()) {
        let (x, y) = (Amount::from_units(a), Amount::from_units(b));
        let sum = BigUint::from(a) + BigUint::from(b);
        prop_assert_eq!(x.saturating_add(y).to_units(), saturated(&sum));
        let (big_a, big_b) = (BigUint::from(a), BigUint::from(b));
        let difference = if big_a >= big_b { big_a - big_b } else { BigUint::ZERO };
        prop_assert_eq!(x.saturating_sub(y).to_units(), saturated(&difference));
    }

    #[test]
    fn amount_text_parses_exactly_or_is_refused(text in grammatical(40, 20)) {
        let parsed = text.parse::<Amount>();
        let (integer, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let significant = format!("{integer}{fraction}").trim_start_matches('0').len();
        if text.len() > 40 {
            prop_assert_eq!(parsed, Err(DecimalError::Syntax));
        } else if fraction.len() > 18 || significant > 38 {
            prop_assert_eq!(parsed, Err(DecimalError::TooPrecise));
        } else {
            let units = Exact::of(&text).units_rounded_up();
            match u128::try_from(&units) {
                Ok(units) => prop_assert_eq!(parsed.unwrap().to_units(), units),
                // Past u128 the text is refused, never wrapped into a small amount.
                Err(_) => prop_assert_eq!(parsed, Err(DecimalError::TooPrecise)),
            }
        }
    }

    #[test]
    fn amounts_print_as_text_that_parses_back(units in any::<u128>(), small in any::<bool>()) {
        let units = if small { units % 10u128.pow(24) } else { units };
        let amount = Amount::from_units(units);
        let printed = amount.to_string();
        if amount.is_saturated() {
            prop_assert_eq!(printed, "overflow");
        } else {
            prop_assert_eq!(
                Exact::of(&printed).units_rounded_up(),
                BigUint::from(units),
                "{} printed as {}", units, printed
            );
            match printed.parse::<Amount>() {
                Ok(again) => prop_assert_eq!(again, amount),
                // 39 significant digits do not parse: refused, never rounded.
                Err(reason) => {
                    prop_assert_eq!(reason, DecimalError::TooPrecise);
                    prop_assert!(units >= 10u128.pow(38), "{}", printed);
                }
            }
        }
    }
}
