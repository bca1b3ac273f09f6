//! Exact decimal arithmetic for sizes, prices and notionals; no floating point anywhere.
//!
//! Two types, so that the parsing grammar and the arithmetic cannot drift apart:
//! - [`Decimal`] is one number as a bot or an operator wrote it (`0.001`, `60000`):
//!   at most 19 significant digits and 18 fractional digits, so it fits a `u64`
//!   mantissa and every product of two of them fits a `u128`.
//! - [`Amount`] is a result or a limit: a `u128` count of 10^-18 units. Products are
//!   rounded *up* to that precision and saturate at the maximum instead of wrapping, so
//!   an absurd order can only ever look larger than it is, never smaller.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Fractional digits kept by [`Amount`].
const AMOUNT_SCALE: u32 = 18;
/// Most fractional digits a [`Decimal`] may have.
const MAX_SCALE: u32 = 18;
/// Most significant digits a [`Decimal`] may have (fits in `u64`).
const MAX_DIGITS: usize = 19;
/// Longest decimal string accepted at all (digits, zeros and the point).
const MAX_LEN: usize = 40;

/// An exact, non-negative decimal parsed from the strict grammar
/// `(0|[1-9][0-9]*)(\.[0-9]+)?`.
///
/// Equality and ordering are numeric (`0.10 == 0.1`), so the original spelling is
/// kept only by whoever parsed it.
#[derive(Clone, Copy)]
pub struct Decimal {
    mantissa: u64,
    scale: u32,
}

/// Why a string is not a [`Decimal`] or an [`Amount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not of the form `123` or `123.45` (no sign, exponent, spaces or leading zeros).
    #[error("not a plain decimal number (digits with an optional '.' and fraction)")]
    Syntax,
    /// More digits than keyward can represent exactly.
    #[error("too many digits (at most 19 significant and 18 after the point)")]
    TooPrecise,
}

impl Decimal {
    /// Zero.
    pub const ZERO: Self = Self {
        mantissa: 0,
        scale: 0,
    };

    /// `mantissa / 10^scale`, for values computed inside this crate. Callers keep
    /// `mantissa` below 2^64 and `scale` at most 18.
    pub(crate) fn from_parts(mantissa: u128, scale: u32) -> Self {
        Self {
            mantissa: u64::try_from(mantissa).unwrap_or(u64::MAX),
            scale: scale.min(MAX_SCALE),
        }
    }

    /// True if the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The exact value as an [`Amount`]; never rounds, since 18 fractional digits fit.
    pub fn to_amount(self) -> Amount {
        // mantissa < 2^64 and the factor <= 10^18, so the product < 2^124: no overflow.
        Amount(u128::from(self.mantissa) * pow10(AMOUNT_SCALE - self.scale))
    }

    /// `self * other`, rounded up to 18 fractional digits (a notional from size and price).
    pub fn times(self, other: Self) -> Amount {
        let product = u128::from(self.mantissa) * u128::from(other.mantissa);
        let scale = self.scale + other.scale;
        Amount::from_scaled(product, scale)
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Digits {
            value,
            significant,
            scale,
        } = split_decimal(s)?;
        if scale > MAX_SCALE as usize || significant > MAX_DIGITS {
            return Err(DecimalError::TooPrecise);
        }
        let mantissa = value
            .and_then(|v| u64::try_from(v).ok())
            .ok_or(DecimalError::TooPrecise)?;
        Ok(Self {
            mantissa,
            scale: scale as u32,
        })
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.to_amount() == other.to_amount()
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_amount().cmp(&other.to_amount())
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_amount().fmt(f)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

/// A non-negative quantity with 18 fractional digits that saturates instead of
/// overflowing: notionals, budgets and operator limits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u128);

impl Amount {
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// The saturation point; any value at or past it compares as "too large".
    pub const MAX: Self = Self(u128::MAX);

    /// Value `scaled / 10^scale`, rounded up to 18 fractional digits, saturating.
    fn from_scaled(scaled: u128, scale: u32) -> Self {
        match scale.cmp(&AMOUNT_SCALE) {
            Ordering::Equal => Self(scaled),
            Ordering::Less => Self(scaled.saturating_mul(pow10(AMOUNT_SCALE - scale))),
            Ordering::Greater => {
                let divisor = pow10(scale - AMOUNT_SCALE);
                let quotient = scaled / divisor;
                let rounded_up = quotient + u128::from(!scaled.is_multiple_of(divisor));
                Self(rounded_up)
            }
        }
    }

    /// `self + other`, saturating.
    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// `self - other`, or zero if `other` is larger.
    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    /// `self * factor` for a decimal factor, rounded up, saturating.
    ///
    /// The product is split at the factor's scale (`self = whole * 10^scale + rest`),
    /// so it saturates only when the result itself does not fit: an intermediate
    /// `self * mantissa` past `u128` used to saturate a result that fits, which made a
    /// band's buy ceiling unbounded for a large reference price.
    pub fn mul_decimal(self, factor: Decimal) -> Self {
        let mantissa = u128::from(factor.mantissa);
        let divisor = pow10(factor.scale);
        let (whole, rest) = (self.0 / divisor, self.0 % divisor);
        // rest < 10^18 and mantissa < 2^64, so rest * mantissa < 2^124: no overflow.
        let fraction = Self::from_scaled(rest * mantissa, AMOUNT_SCALE + factor.scale);
        match whole.checked_mul(mantissa) {
            Some(product) => Self(product).saturating_add(fraction),
            None => Self::MAX,
        }
    }

    /// True once arithmetic has saturated.
    pub fn is_saturated(&self) -> bool {
        self.0 == u128::MAX
    }

    /// The raw count of 10^-18 units (for persistence and reference arithmetic).
    pub fn to_units(self) -> u128 {
        self.0
    }

    /// The amount with this many 10^-18 units.
    pub fn from_units(units: u128) -> Self {
        Self(units)
    }
}

impl FromStr for Amount {
    type Err = DecimalError;

    /// Parses the same strict grammar as [`Decimal`], but allows up to 20 integer digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Digits {
            value,
            significant,
            scale,
        } = split_decimal(s)?;
        if scale > AMOUNT_SCALE as usize || significant > 38 {
            return Err(DecimalError::TooPrecise);
        }
        let scaled = value.ok_or(DecimalError::TooPrecise)?;
        let value = scaled
            .checked_mul(pow10(AMOUNT_SCALE - scale as u32))
            .ok_or(DecimalError::TooPrecise)?;
        Ok(Self(value))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_saturated() {
            return f.write_str("overflow");
        }
        let unit = pow10(AMOUNT_SCALE);
        let whole = self.0 / unit;
        let fraction = self.0 % unit;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:018}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

/// A strict decimal read as one integer with the point removed.
struct Digits {
    /// That integer; `None` if it does not fit a u128 (over 38 significant digits).
    value: Option<u128>,
    /// Its digits after leading zeros.
    significant: usize,
    /// Digits after the point.
    scale: usize,
}

/// Reads a strict decimal (digits, at most one point with digits on both sides, no
/// leading zero but a lone one) without allocating: it is on the path of every
/// order's price and size.
fn split_decimal(s: &str) -> Result<Digits, DecimalError> {
    if s.is_empty() || s.len() > MAX_LEN {
        return Err(DecimalError::Syntax);
    }
    let (integer, fraction) = match s.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (s, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(integer) || (integer.len() > 1 && integer.starts_with('0')) {
        return Err(DecimalError::Syntax);
    }
    if fraction.is_some_and(|fraction| !all_digits(fraction)) {
        return Err(DecimalError::Syntax);
    }
    let mut digits = Digits {
        value: Some(0),
        significant: 0,
        scale: fraction.map_or(0, str::len),
    };
    for digit in integer.bytes().chain(fraction.unwrap_or("").bytes()) {
        if digits.significant == 0 && digit == b'0' {
            continue;
        }
        digits.significant += 1;
        digits.value = digits
            .value
            .and_then(|v| v.checked_mul(10))
            .and_then(|v| v.checked_add(u128::from(digit - b'0')));
    }
    Ok(digits)
}

const fn pow10(exponent: u32) -> u128 {
    10u128.pow(exponent)
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn a(s: &str) -> Amount {
        s.parse().unwrap()
    }

    #[test]
    fn accepts_plain_decimals() {
        for ok in [
            "0",
            "1",
            "0.1",
            "60000",
            "0.00100000",
            "123456789.123456789",
        ] {
            assert!(ok.parse::<Decimal>().is_ok(), "{ok}");
        }
        assert_eq!(d("0.10"), d("0.1"));
        assert_eq!(d("0.00100000").to_string(), "0.001");
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "", ".", "1.", ".5", "01", "00.1", "+1", "-1", "1e3", "6e4", " 1", "1 ", "1,5", "0x10",
            "１", "1.2.3", "NaN", "inf",
        ] {
            assert_eq!(bad.parse::<Decimal>(), Err(DecimalError::Syntax), "{bad:?}");
        }
        assert_eq!(
            "0.0000000000000000001".parse::<Decimal>(),
            Err(DecimalError::TooPrecise)
        );
        assert_eq!(
            "12345678901234567890".parse::<Decimal>(),
            Err(DecimalError::TooPrecise)
        );
    }

    #[test]
    fn multiplies_exactly() {
        assert_eq!(d("0.001").times(d("60000")), a("60"));
        assert_eq!(d("1.25").times(d("37500")), a("46875"));
        assert_eq!(d("0.1").times(d("0.2")), a("0.02"));
    }

    #[test]
    fn rounds_products_up_never_down() {
        let tiny = d("0.000000001").times(d("0.0000000001"));
        assert_eq!(tiny, Amount::from_units(1));
        assert!(tiny > Amount::ZERO);
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let huge = d("9999999999999999999").times(d("9999999999999999999"));
        assert!(huge.is_saturated());
        assert!(huge > a("100000000000000000000"));
        assert!(Amount::MAX.saturating_add(a("1")).is_saturated());
        assert!(a("1").mul_decimal(d("0")) == Amount::ZERO);
    }

    #[test]
    fn amount_times_decimal_saturates_only_when_the_result_does_not_fit() {
        // Found by the property tests: the amount times the mantissa (112311) passes
        // u128 although the product (divided by 10) fits.
        let amount = Amount::from_units(6_291_389_186_328_294_478_587_731_015_433_806);
        assert_eq!(
            amount.mul_decimal(d("11231.1")),
            Amount::from_units(70_659_221_090_571_708_118_466_665_807_438_618_567)
        );
        assert_eq!(
            a("0.000000000000000001").mul_decimal(d("0.5")),
            Amount::from_units(1)
        );
        assert_eq!(a("3").mul_decimal(d("1.000001")), a("3.000003"));
        assert!(Amount::MAX.mul_decimal(d("1.5")).is_saturated());
        assert_eq!(Amount::MAX.mul_decimal(d("0")), Amount::ZERO);
    }

    #[test]
    fn amounts_display_without_trailing_zeros() {
        assert_eq!(a("500").to_string(), "500");
        assert_eq!(a("0.050").to_string(), "0.05");
        assert_eq!(a("20000.5").to_string(), "20000.5");
    }
}
