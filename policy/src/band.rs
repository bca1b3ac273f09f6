//! Price bands: how far from keyward's own reference price an order may be priced.
//! This is the guard against the 3Commas pattern on an allowlisted pair: buying far
//! above the market from the attacker's asks, or selling far below it into the
//! attacker's bids.

use std::fmt;
use std::str::FromStr;

use crate::decimal::{Amount, Decimal};
use crate::intent::{Quote, Side};

/// Parts per million in one percent.
const PPM_PER_PERCENT: u128 = 10_000;
/// The widest band accepted: beyond half the price a band protects little.
const MAX_PPM: u128 = 500_000;

/// A band around the reference price, written as a percentage (`"2%"`, `"0.5%"`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Band {
    ppm: u128,
}

/// Why a string is not a band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a price band is a percentage above 0 and at most 50 with up to 4 decimals, e.g. \"2%\" or \"0.25%\""
)]
pub struct BandError;

impl FromStr for Band {
    type Err = BandError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let percent: Amount = s
            .strip_suffix('%')
            .ok_or(BandError)?
            .parse()
            .map_err(|_| BandError)?;
        // One percent is 10^18 units of an Amount and 10^4 ppm, so a ppm is 10^14 units.
        let units = percent.to_units();
        let per_ppm = 10u128.pow(14);
        if !units.is_multiple_of(per_ppm) {
            return Err(BandError);
        }
        let ppm = units / per_ppm;
        if ppm == 0 || ppm > MAX_PPM {
            return Err(BandError);
        }
        Ok(Self { ppm })
    }
}

impl Band {
    /// The highest price a buy may have: `ask * (1 + band)`.
    pub fn buy_ceiling(self, ask: Decimal) -> Amount {
        ask.to_amount()
            .mul_decimal(Decimal::from_parts(1_000_000 + self.ppm, 6))
    }

    /// The lowest price a sell may have: `bid * (1 - band)`.
    pub fn sell_floor(self, bid: Decimal) -> Amount {
        bid.to_amount()
            .mul_decimal(Decimal::from_parts(1_000_000 - self.ppm, 6))
    }

    /// `1 + band`, the factor of the buy ceiling.
    pub fn up_factor(self) -> Decimal {
        Decimal::from_parts(1_000_000 + self.ppm, 6)
    }

    /// `1 - band`, the factor of the sell floor.
    pub fn down_factor(self) -> Decimal {
        Decimal::from_parts(1_000_000 - self.ppm, 6)
    }

    /// True if a `side` order priced at `price` is within the band around `quote`
    /// (its ask for a buy and bid for a sell, or the slow price where that is the
    /// more conservative).
    pub fn allows(self, side: Side, price: Decimal, quote: Quote) -> bool {
        match side {
            Side::Buy => price.to_amount() <= self.buy_ceiling(quote.buy_reference()),
            Side::Sell => price.to_amount() >= self.sell_floor(quote.sell_reference()),
        }
    }

    /// True if the book's spread is wider than the band: the market price is then
    /// whatever a thin book says, and no order can be held to the band.
    pub fn is_narrower_than_spread(self, quote: Quote) -> bool {
        quote.ask.to_amount() > self.buy_ceiling(quote.bid)
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.ppm / PPM_PER_PERCENT;
        let fraction = self.ppm % PPM_PER_PERCENT;
        if fraction == 0 {
            write!(f, "{whole}%")
        } else {
            let digits = format!("{fraction:04}");
            write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Band({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(bid: &str, ask: &str) -> Quote {
        Quote {
            bid: bid.parse().unwrap(),
            ask: ask.parse().unwrap(),
            slow: None,
        }
    }

    #[test]
    fn parses_percentages() {
        assert_eq!("2%".parse::<Band>().unwrap().to_string(), "2%");
        assert_eq!("0.25%".parse::<Band>().unwrap().to_string(), "0.25%");
        assert_eq!("50%".parse::<Band>().unwrap().to_string(), "50%");
        for bad in ["2", "0%", "50.0001%", "0.00001%", "-1%", "2 %", "%", "1e1%"] {
            assert_eq!(bad.parse::<Band>(), Err(BandError), "{bad}");
        }
    }

    #[test]
    fn buys_above_and_sells_below_the_band_are_outside() {
        let band: Band = "2%".parse().unwrap();
        let q = quote("99", "100");
        let price = |p: &str| p.parse::<Decimal>().unwrap();
        assert!(band.allows(Side::Buy, price("102"), q));
        assert!(!band.allows(Side::Buy, price("102.0001"), q));
        assert!(
            band.allows(Side::Buy, price("1"), q),
            "a cheap buy only rests"
        );
        assert!(band.allows(Side::Sell, price("97.02"), q));
        assert!(!band.allows(Side::Sell, price("97.0199"), q));
        assert!(
            band.allows(Side::Sell, price("1000"), q),
            "a dear sell only rests"
        );
    }

    #[test]
    fn a_large_reference_price_still_bounds_buys() {
        // The reference in 10^-18 units times 1_020_000 passed u128 before the
        // division by 10^6 and saturated: the buy ceiling was unbounded (any buy price
        // passed the band) and the sell floor too (every sell was refused).
        let band: Band = "2%".parse().unwrap();
        let q = quote("1000000000000000", "1000000000000000");
        let price = |p: &str| p.parse::<Decimal>().unwrap();
        assert_eq!(
            band.buy_ceiling(q.ask),
            "1020000000000000".parse::<Amount>().unwrap()
        );
        assert!(band.allows(Side::Buy, price("1020000000000000"), q));
        assert!(!band.allows(Side::Buy, price("1020000000000000.1"), q));
        assert!(!band.allows(Side::Buy, price("1000000000000000000"), q));
        assert!(band.allows(Side::Sell, price("980000000000000"), q));
        assert!(!band.allows(Side::Sell, price("979999999999999.9"), q));
    }
}
