//! What a request would do, in venue-neutral terms: the [`Intent`] a venue adapter
//! extracts from a fully validated request and the policy decides on.

use std::fmt;
use std::sync::Arc;

use crate::decimal::{Amount, Decimal};

/// The kind of effect an endpoint has. Operators grant the first five by name; the
/// last two are the hard floor that no configuration can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointClass {
    /// Public market data: tickers, order books, exchange info.
    Market,
    /// Private reads with no side effect: balances, orders, fills.
    Read,
    /// Anything that can create or change an order.
    Trade,
    /// Cancelling orders.
    Cancel,
    /// Account risk settings such as leverage, margin type or position mode.
    Configure,
    /// Withdrawals, transfers, conversions, borrowing, sub-accounts, user-data-stream
    /// keys and WebSocket tokens: never signed.
    MoneyMovement,
    /// Creating, changing or deleting API keys or their restrictions: never signed.
    KeyManagement,
}

impl EndpointClass {
    /// The classes an operator may name in `allow`.
    pub const GRANTABLE: [Self; 5] = [
        Self::Market,
        Self::Read,
        Self::Trade,
        Self::Cancel,
        Self::Configure,
    ];

    /// The name used in configuration files and explanations.
    pub fn name(self) -> &'static str {
        match self {
            Self::Market => "market",
            Self::Read => "read",
            Self::Trade => "trade",
            Self::Cancel => "cancel",
            Self::Configure => "configure",
            Self::MoneyMovement => "money-movement",
            Self::KeyManagement => "key-management",
        }
    }

    /// Parses a grantable class name; the floor classes are deliberately not parseable.
    pub fn grantable_from_name(name: &str) -> Option<Self> {
        Self::GRANTABLE.into_iter().find(|c| c.name() == name)
    }

    /// True for the classes that are refused whatever a policy says.
    pub fn is_floor(self) -> bool {
        matches!(self, Self::MoneyMovement | Self::KeyManagement)
    }
}

impl fmt::Display for EndpointClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One endpoint as the venue catalogue names it, e.g. `POST /api/v3/order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRef {
    /// `METHOD /exact/path`, the key operators use in `endpoints = [...]`.
    pub key: Arc<str>,
    /// What the endpoint does.
    pub class: EndpointClass,
}

/// A trading symbol exactly as the request spelled it after one percent-decode.
///
/// Comparison is byte-exact: no case folding, no Unicode normalisation, no alias
/// resolution here (venues that have aliases resolve them before building an intent).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

/// Why a string cannot be a [`Symbol`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a symbol is 1 to 64 bytes of letters, digits, '-', '/', '_' or ':'")]
pub struct SymbolError;

impl Symbol {
    /// Validates the venue-neutral shape of a symbol; venues check their own charset first.
    pub fn new(text: &str) -> Result<Self, SymbolError> {
        let shape_ok = !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '/' | '_' | ':'));
        if shape_ok {
            Ok(Self(Arc::from(text)))
        } else {
            Err(SymbolError)
        }
    }

    /// The symbol text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Acquire the base asset.
    Buy,
    /// Give up the base asset.
    Sell,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Buy => "BUY",
            Self::Sell => "SELL",
        })
    }
}

/// How an order will execute, which decides how its notional can be bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// Rests at, or fills no worse than, its limit price.
    Limit,
    /// Fills now at whatever the book offers.
    Market,
    /// Becomes a market order when a trigger price is reached.
    StopMarket,
    /// Becomes a limit order when a trigger price is reached.
    StopLimit,
    /// Trigger follows the market; becomes a market order.
    TrailingMarket,
}

impl Execution {
    /// True when the fill price is chosen by the market rather than bounded by the order.
    pub fn is_market_like(self) -> bool {
        matches!(self, Self::Market | Self::StopMarket | Self::TrailingMarket)
    }
}

/// The unit an order is sized in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Base-asset quantity (Binance `quantity`).
    Base(Decimal),
    /// Quote-asset amount (Binance `quoteOrderQty`): the notional itself.
    Quote(Decimal),
    /// The order has no size of its own (close the whole position): unbounded.
    WholePosition,
}

/// One order inside a request: a single order, one leg of an order list, one element
/// of a batch, the new leg of a cancel-replace, or an amend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Instrument.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// The venue's order-type name (`LIMIT`, `STOP_LOSS_LIMIT`, ...).
    pub order_type: Arc<str>,
    /// How it executes.
    pub execution: Execution,
    /// Size and its unit.
    pub size: Size,
    /// Limit price, when the order has one.
    pub price: Option<Decimal>,
    /// Trigger (stop) price, when the order has one.
    pub trigger: Option<Decimal>,
    /// True when this changes an existing order rather than placing a new one.
    pub amend: bool,
    /// True if the exchange will only let the order reduce a position (Binance USD-M
    /// `reduceOnly` or `closePosition`, Bybit and OKX `reduceOnly`, Kraken
    /// `reduce_only`).
    pub reduce_only: bool,
    /// True if the order trades on borrowed funds on a spot market (Bybit
    /// `isLeverage=1`, OKX `tdMode` other than `cash` on a spot instrument, Kraken
    /// `leverage`); refused unless the bot has `allow_margin`.
    pub margin: bool,
}

/// Best bid and ask for a symbol, as keyward itself observed them, and a slower
/// price where the venue has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Highest bid.
    pub bid: Decimal,
    /// Lowest ask.
    pub ask: Decimal,
    /// A price a burst of orders cannot move at once: the venue's average (Binance's
    /// 5-minute `avgPrice`, Kraken's 24-hour volume-weighted price) or index price.
    pub slow: Option<Decimal>,
}

impl Quote {
    /// The reference a buy is held to: the ask, or the slow price where it is lower
    /// (an ask pumped on a thin book does not raise the ceiling).
    pub fn buy_reference(&self) -> Decimal {
        self.slow.map_or(self.ask, |slow| slow.min(self.ask))
    }

    /// The reference a sell is held to: the bid, or the slow price where it is
    /// higher (bids dumped on a thin book do not lower the floor).
    pub fn sell_reference(&self) -> Decimal {
        self.slow.map_or(self.bid, |slow| slow.max(self.bid))
    }

    /// The reference a market-priced order is valued at: the worse of book and slow
    /// price for the side it takes.
    pub fn market_value(&self, side: Side) -> Decimal {
        match side {
            Side::Buy => self.slow.map_or(self.ask, |slow| slow.max(self.ask)),
            Side::Sell => self.slow.map_or(self.bid, |slow| slow.max(self.bid)),
        }
    }
}

/// Source of reference prices; the policy never trusts prices from the bot.
pub trait Quotes {
    /// The current quote for `symbol`, if a fresh one is known.
    fn quote(&self, symbol: &Symbol) -> Option<Quote>;
}

/// Reference prices when none are available: market-priced sizes stay unbounded.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQuotes;

impl Quotes for NoQuotes {
    fn quote(&self, _symbol: &Symbol) -> Option<Quote> {
        None
    }
}

impl Order {
    /// True if the exchange, not the order, decides how much it trades: a
    /// whole-position close, or a zero size, which some venues read as "everything"
    /// (Bybit `qty="0"` with `reduceOnly` and `closeOnTrigger`, Kraken `volume=0`).
    pub fn exchange_sized(&self) -> bool {
        match self.size {
            Size::WholePosition => true,
            Size::Base(amount) | Size::Quote(amount) => amount.is_zero(),
        }
    }
}

/// The notional of an order as far as keyward can bound it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notional {
    /// An upper bound in quote currency.
    Bounded(Amount),
    /// No bound without a reference price (market-like, sized in base units), or none at all.
    Unbounded,
}

impl Order {
    /// Upper bound of the quote-currency value this order can move.
    ///
    /// Limit-priced orders are bounded by their own price. Market-like orders sized in
    /// base units are bounded by the reference price on the side they take (ask for a
    /// buy, bid for a sell), or by the trigger when that is worse: a buy stop fires
    /// at or above its trigger. A sell priced below the market still reports the market
    /// value it gives away, so a far-below-market sell cannot hide under the cap.
    pub fn notional(&self, quotes: &dyn Quotes) -> Notional {
        if self.exchange_sized() {
            return Notional::Unbounded;
        }
        let quantity = match self.size {
            Size::Quote(amount) => return Notional::Bounded(amount.to_amount()),
            Size::WholePosition => return Notional::Unbounded,
            Size::Base(quantity) => quantity,
        };
        let reference = quotes
            .quote(&self.symbol)
            .map(|q| q.market_value(self.side));
        let order_price = match self.execution {
            Execution::Limit | Execution::StopLimit => self.price,
            Execution::Market | Execution::StopMarket | Execution::TrailingMarket => None,
        };
        let unit_price = match (order_price, reference, self.side) {
            (Some(price), Some(reference), Side::Sell) => Some(price.max(reference)),
            (Some(price), _, _) => Some(price),
            (None, Some(reference), _) => Some(match (self.trigger, self.side) {
                (Some(trigger), Side::Buy) => trigger.max(reference),
                _ => reference,
            }),
            (None, None, _) => None,
        };
        match unit_price {
            Some(price) => Notional::Bounded(quantity.times(price)),
            None => Notional::Unbounded,
        }
    }
}

/// Everything the policy needs to know about one validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The endpoint called.
    pub endpoint: EndpointRef,
    /// Every symbol the request names, orders included.
    pub symbols: Vec<Symbol>,
    /// Every order the request would place or change.
    pub orders: Vec<Order>,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Quote);
    impl Quotes for Fixed {
        fn quote(&self, _symbol: &Symbol) -> Option<Quote> {
            Some(self.0)
        }
    }

    fn order(execution: Execution, side: Side, size: Size, price: Option<&str>) -> Order {
        Order {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side,
            order_type: Arc::from("X"),
            execution,
            size,
            price: price.map(|p| p.parse().unwrap()),
            trigger: None,
            amend: false,
            margin: false,
            reduce_only: false,
        }
    }

    fn base(q: &str) -> Size {
        Size::Base(q.parse().unwrap())
    }

    fn bounded(s: &str) -> Notional {
        Notional::Bounded(s.parse().unwrap())
    }

    #[test]
    fn symbols_are_exact_and_shaped() {
        assert!(Symbol::new("BTCUSDT").is_ok());
        assert!(Symbol::new("１２３４５６").is_ok());
        assert!(Symbol::new("BTC-USDT").is_ok());
        for bad in ["", "BTC USDT", "BTC\nUSDT", "BTC;USDT", &"A".repeat(65)] {
            assert_eq!(Symbol::new(bad), Err(SymbolError), "{bad:?}");
        }
        assert_ne!(
            Symbol::new("btcusdt").unwrap(),
            Symbol::new("BTCUSDT").unwrap()
        );
    }

    #[test]
    fn floor_classes_cannot_be_named() {
        assert_eq!(
            EndpointClass::grantable_from_name("trade"),
            Some(EndpointClass::Trade)
        );
        assert_eq!(EndpointClass::grantable_from_name("money-movement"), None);
        assert_eq!(EndpointClass::grantable_from_name("key-management"), None);
    }

    #[test]
    fn limit_orders_are_bounded_by_their_price() {
        let o = order(Execution::Limit, Side::Buy, base("0.001"), Some("60000"));
        assert_eq!(o.notional(&NoQuotes), bounded("60"));
    }

    #[test]
    fn market_orders_need_a_reference() {
        let o = order(Execution::Market, Side::Buy, base("2"), None);
        assert_eq!(o.notional(&NoQuotes), Notional::Unbounded);
        let q = Fixed(Quote {
            bid: "99".parse().unwrap(),
            ask: "101".parse().unwrap(),
            slow: None,
        });
        assert_eq!(o.notional(&q), bounded("202"));
        let sell = order(Execution::Market, Side::Sell, base("2"), None);
        assert_eq!(sell.notional(&q), bounded("198"));
    }

    #[test]
    fn quote_sized_orders_are_their_own_notional() {
        let o = order(
            Execution::Market,
            Side::Buy,
            Size::Quote("20000".parse().unwrap()),
            None,
        );
        assert_eq!(o.notional(&NoQuotes), bounded("20000"));
    }

    #[test]
    fn cheap_sells_count_at_market_value() {
        let q = Fixed(Quote {
            bid: "60000".parse().unwrap(),
            ask: "60001".parse().unwrap(),
            slow: None,
        });
        let o = order(Execution::Limit, Side::Sell, base("1"), Some("1"));
        assert_eq!(o.notional(&q), bounded("60000"));
        assert_eq!(o.notional(&NoQuotes), bounded("1"));
    }

    #[test]
    fn whole_position_closes_are_unbounded() {
        let o = order(Execution::StopMarket, Side::Sell, Size::WholePosition, None);
        assert_eq!(o.notional(&NoQuotes), Notional::Unbounded);
    }

    #[test]
    fn a_zero_size_is_sized_by_the_exchange_in_any_unit() {
        let q = Fixed(Quote {
            bid: "99".parse().unwrap(),
            ask: "101".parse().unwrap(),
            slow: None,
        });
        for size in [
            base("0"),
            base("0.000"),
            Size::Quote("0.0".parse().unwrap()),
        ] {
            let o = order(Execution::Market, Side::Sell, size, None);
            assert!(o.exchange_sized(), "{size:?}");
            assert_eq!(o.notional(&q), Notional::Unbounded, "{size:?}");
            let o = order(Execution::Limit, Side::Buy, size, Some("100"));
            assert_eq!(o.notional(&q), Notional::Unbounded, "{size:?}");
        }
        assert!(!order(Execution::Market, Side::Sell, base("0.001"), None).exchange_sized());
    }
}
