//! Request-time denials ([`Denied`]) and load-time policy mistakes ([`PolicyError`]).
//!
//! Messages go back to bots and into logs, so they never contain a token, a secret or
//! a full query string, and they do not list what *is* allowed (a leaked token should
//! not learn the allowlist from its refusals; `keyward explain` shows that to operators).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::band::Band;
use crate::decimal::{Amount, Decimal};
use crate::intent::{Side, Symbol};
use crate::rate::Rate;
use crate::token::TokenDigest;

/// The policy field that decided a request, so `explain` can point at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The bot's `tokens` / `revoked_tokens`.
    Tokens,
    /// The bot's `expires`.
    Expires,
    /// The hard floor of money movement and key management (not configurable).
    Floor,
    /// The endpoint is neither in an `allow`ed class nor in `endpoints`.
    NotGranted,
    /// An `allow`ed class granted the endpoint.
    Allow,
    /// An `endpoints` entry granted the endpoint.
    Endpoints,
    /// The bot's `symbols`.
    Symbols,
    /// The bot's `order_types`.
    OrderTypes,
    /// The bot's `allow_margin`.
    AllowMargin,
    /// The bot's `max_order_notional`.
    MaxOrderNotional,
    /// The bot's `max_order_qty`.
    MaxOrderQty,
    /// The bot's `allow_position_close`.
    AllowPositionClose,
    /// The bot's `rate`.
    Rate,
    /// The bot's `order_rate`.
    OrderRate,
    /// The account's `rate`.
    AccountRate,
    /// The account's `public_market_data`.
    PublicMarketData,
    /// The bot's `price_band`.
    PriceBand,
    /// `daily_notional` of the bot or its account.
    DailyNotional,
    /// `max_orders` of the bot or its account.
    MaxOrders,
    /// `max_open_orders` of the bot or its account.
    MaxOpenOrders,
    /// keyward's own reads and cancels.
    Housekeeping,
}

impl Rule {
    /// The configuration key this rule comes from.
    pub fn key(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Expires => "expires",
            Self::Floor => "(built-in money-movement floor)",
            Self::NotGranted => "allow / endpoints",
            Self::Allow => "allow",
            Self::Endpoints => "endpoints",
            Self::AllowMargin => "allow_margin",
            Self::Symbols => "symbols",
            Self::OrderTypes => "order_types",
            Self::MaxOrderNotional => "max_order_notional",
            Self::MaxOrderQty => "max_order_qty",
            Self::AllowPositionClose => "allow_position_close",
            Self::Rate => "rate",
            Self::OrderRate => "order_rate",
            Self::AccountRate => "rate",
            Self::PublicMarketData => "public_market_data",
            Self::PriceBand => "price_band",
            Self::DailyNotional => "daily_notional",
            Self::MaxOrders => "max_orders",
            Self::MaxOpenOrders => "max_open_orders",
            Self::Housekeeping => "(keyward's own reads and cancels)",
        }
    }
}

/// Which limiter refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// The bot's request rate.
    Bot,
    /// The bot's order rate (each order in a batch counts).
    BotOrders,
    /// The account's request rate, shared by every bot on it.
    Account,
}

/// Whose budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    /// The bot's own.
    Bot,
    /// The account's, shared by its bots.
    Account,
}

impl fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bot => "this bot's",
            Self::Account => "the account's",
        })
    }
}

/// Why a request was refused by policy. Each variant has a stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token was presented.
    #[error("no keyward token was presented in the API-key header")]
    AuthMissing,
    /// The token is malformed or unknown.
    #[error("the token is not valid")]
    AuthInvalid,
    /// The token belongs to a bot whose tokens have expired.
    #[error("the token is not valid")]
    AuthExpired,
    /// The token was revoked.
    #[error("the token is not valid")]
    AuthRevoked,
    /// The endpoint exists but this bot may not call it.
    #[error("endpoint {endpoint} is not allowed for this bot")]
    PathNotAllowed {
        /// `METHOD /path`.
        endpoint: Arc<str>,
    },
    /// Withdrawals, transfers and their kin: never signed.
    #[error("endpoint {endpoint} moves money; keyward never signs it")]
    MoneyMovement {
        /// `METHOD /path`.
        endpoint: Arc<str>,
    },
    /// API-key management: never signed.
    #[error("endpoint {endpoint} manages API keys; keyward never signs it")]
    KeyManagement {
        /// `METHOD /path`.
        endpoint: Arc<str>,
    },
    /// The symbol is not on the bot's allowlist.
    #[error("symbol {symbol} is not allowed for this bot")]
    SymbolNotAllowed {
        /// The symbol as sent.
        symbol: Symbol,
    },
    /// The order type is not on the bot's allowlist.
    #[error("order type {order_type} is not allowed for this bot")]
    OrderTypeNotAllowed {
        /// The venue's order-type name.
        order_type: Arc<str>,
    },
    /// A spot order on borrowed funds from a bot without `allow_margin`.
    #[error("order on {symbol} would trade on margin (borrowed funds); this bot may not")]
    MarginNotAllowed {
        /// The order's symbol.
        symbol: Symbol,
    },
    /// The order's notional is over the bot's per-order cap.
    #[error("order notional {notional} exceeds this bot's limit of {limit}")]
    NotionalExceedsLimit {
        /// The order's notional bound.
        notional: Amount,
        /// `max_order_notional`.
        limit: Amount,
    },
    /// The order's quantity is over the bot's per-order cap for the symbol.
    #[error("order quantity {quantity} {symbol} exceeds this bot's limit of {limit}")]
    QtyExceedsLimit {
        /// Instrument.
        symbol: Symbol,
        /// Quantity ordered.
        quantity: Amount,
        /// `max_order_qty` for the symbol.
        limit: Amount,
    },
    /// A market-priced order sized in base units, with no reference price to bound it.
    #[error(
        "a {order_type} order sized in base quantity has no price to bound its notional; size it in quote currency or give it a limit price"
    )]
    NotionalUnbounded {
        /// The venue's order-type name.
        order_type: Arc<str>,
    },
    /// An order whose size the exchange decides (a whole-position close, a zero
    /// size): nothing the request says bounds what it trades.
    #[error(
        "a {order_type} order on {symbol} whose size the exchange decides (a whole-position close or a zero size) has no bound; {}",
        if *closes_allowed {
            "only a reduce-only close may be sent that way"
        } else {
            "this bot may not close positions that way"
        }
    )]
    ExchangeSized {
        /// Instrument.
        symbol: Symbol,
        /// The venue's order-type name.
        order_type: Arc<str>,
        /// True if the bot has `allow_position_close` (and the order was not
        /// reduce-only).
        closes_allowed: bool,
    },
    /// The order is priced outside the band around keyward's reference price.
    #[error(
        "{side} {symbol} at {price} is outside this bot's {band} price band around the market ({reference})"
    )]
    PriceOutOfBand {
        /// Instrument.
        symbol: Symbol,
        /// Direction.
        side: Side,
        /// The order's price.
        price: Decimal,
        /// The reference it was compared with (the ask for a buy, the bid for a sell).
        reference: Decimal,
        /// The bot's band.
        band: Band,
    },
    /// An order that fills at whatever the book offers (market, stop-market,
    /// trailing) from a bot whose orders are held to a price band: on a thin book its
    /// price has no bound the band could hold.
    #[error(
        "a {order_type} order on {symbol} fills at whatever the book offers, which this bot's {band} price band cannot bound; send a limit order (IOC for an immediate fill) priced within the band"
    )]
    MarketOrderInBand {
        /// Instrument.
        symbol: Symbol,
        /// The venue's order-type name.
        order_type: Arc<str>,
        /// The bot's band.
        band: Band,
    },
    /// The book's spread is wider than the band: its prices are no reference.
    #[error(
        "the {symbol} book's spread ({bid} to {ask}) is wider than this bot's {band} price band; its prices are no reference, retry when the book is tighter"
    )]
    SpreadTooWide {
        /// Instrument.
        symbol: Symbol,
        /// Best bid.
        bid: Decimal,
        /// Best ask.
        ask: Decimal,
        /// The bot's band.
        band: Band,
    },
    /// No fresh reference price, and the bot's orders must be checked against one.
    #[error("no fresh market price for {symbol} to check this order against; retry shortly")]
    ReferenceUnavailable {
        /// Instrument.
        symbol: Symbol,
    },
    /// The order would take a rolling 24-hour notional budget past its limit.
    #[error(
        "{scope} daily notional budget of {limit} is used up ({used} spent in the last 24 hours, this request adds {adding})"
    )]
    DailyNotionalExceeded {
        /// Whose budget.
        scope: BudgetScope,
        /// Spent in the window.
        used: Amount,
        /// This request's notional.
        adding: Amount,
        /// The budget.
        limit: Amount,
    },
    /// The order would take an order-count budget past its limit.
    #[error("{scope} order budget of {limit} is used up ({used} orders in the window)")]
    MaxOrdersExceeded {
        /// Whose budget.
        scope: BudgetScope,
        /// Orders in the window.
        used: u64,
        /// The budget, `COUNT/PERIOD`.
        limit: Rate,
    },
    /// The order would leave more orders open than allowed.
    #[error("{scope} limit of {limit} open orders is reached ({open} open)")]
    MaxOpenOrdersExceeded {
        /// Whose limit.
        scope: BudgetScope,
        /// Orders open now, as keyward knows them.
        open: u64,
        /// The limit.
        limit: u32,
    },
    /// A rate limit is exhausted.
    #[error("rate limit reached; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// Earliest time a retry can succeed.
        retry_after: Duration,
        /// Which limiter refused.
        scope: RateScope,
    },
}

impl Denied {
    /// The stable machine-readable reason code (also the `x-keyward-error` header).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::AuthMissing => "auth_missing",
            Self::AuthInvalid => "auth_invalid",
            Self::AuthExpired => "auth_expired",
            Self::AuthRevoked => "auth_revoked",
            Self::PathNotAllowed { .. } => "path_not_allowed",
            Self::MoneyMovement { .. } => "money_movement_denied",
            Self::KeyManagement { .. } => "key_management_denied",
            Self::SymbolNotAllowed { .. } => "symbol_not_allowed",
            Self::OrderTypeNotAllowed { .. } => "order_type_not_allowed",
            Self::MarginNotAllowed { .. } => "margin_not_allowed",
            Self::NotionalExceedsLimit { .. } => "notional_exceeds_limit",
            Self::QtyExceedsLimit { .. } => "qty_exceeds_limit",
            Self::NotionalUnbounded { .. } | Self::ExchangeSized { .. } => "notional_unbounded",
            Self::RateLimited { .. } => "rate_limited",
            Self::PriceOutOfBand { .. } => "price_out_of_band",
            Self::ReferenceUnavailable { .. } => "reference_price_unavailable",
            Self::MarketOrderInBand { .. } => "price_unbounded",
            Self::SpreadTooWide { .. } => "spread_too_wide",
            Self::DailyNotionalExceeded { .. } => "daily_notional_exceeded",
            Self::MaxOrdersExceeded { .. } => "max_orders_exceeded",
            Self::MaxOpenOrdersExceeded { .. } => "max_open_orders_exceeded",
        }
    }

    /// The policy rule that produced this denial.
    pub fn rule(&self) -> Rule {
        match self {
            Self::AuthMissing | Self::AuthInvalid | Self::AuthRevoked => Rule::Tokens,
            Self::AuthExpired => Rule::Expires,
            Self::PathNotAllowed { .. } => Rule::NotGranted,
            Self::MoneyMovement { .. } | Self::KeyManagement { .. } => Rule::Floor,
            Self::SymbolNotAllowed { .. } => Rule::Symbols,
            Self::OrderTypeNotAllowed { .. } => Rule::OrderTypes,
            Self::MarginNotAllowed { .. } => Rule::AllowMargin,
            Self::NotionalExceedsLimit { .. } | Self::NotionalUnbounded { .. } => {
                Rule::MaxOrderNotional
            }
            Self::QtyExceedsLimit { .. } => Rule::MaxOrderQty,
            Self::ExchangeSized { .. } => Rule::AllowPositionClose,
            Self::RateLimited { scope, .. } => match scope {
                RateScope::Bot => Rule::Rate,
                RateScope::BotOrders => Rule::OrderRate,
                RateScope::Account => Rule::AccountRate,
            },
            Self::PriceOutOfBand { .. }
            | Self::ReferenceUnavailable { .. }
            | Self::MarketOrderInBand { .. }
            | Self::SpreadTooWide { .. } => Rule::PriceBand,
            Self::DailyNotionalExceeded { .. } => Rule::DailyNotional,
            Self::MaxOrdersExceeded { .. } => Rule::MaxOrders,
            Self::MaxOpenOrdersExceeded { .. } => Rule::MaxOpenOrders,
        }
    }

    /// True for denials that shadow mode may record instead of enforcing: the request
    /// is fully understood and only the operator's own limits object to it. Refusals
    /// of identity, the money floor and rate limits are enforced in every mode.
    pub fn is_shadowable(&self) -> bool {
        match self {
            Self::PathNotAllowed { .. }
            | Self::SymbolNotAllowed { .. }
            | Self::OrderTypeNotAllowed { .. }
            | Self::MarginNotAllowed { .. }
            | Self::NotionalExceedsLimit { .. }
            | Self::QtyExceedsLimit { .. }
            | Self::NotionalUnbounded { .. }
            | Self::ExchangeSized { .. }
            | Self::PriceOutOfBand { .. }
            | Self::ReferenceUnavailable { .. }
            | Self::MarketOrderInBand { .. }
            | Self::SpreadTooWide { .. }
            | Self::DailyNotionalExceeded { .. }
            | Self::MaxOrdersExceeded { .. }
            | Self::MaxOpenOrdersExceeded { .. } => true,
            Self::AuthMissing
            | Self::AuthInvalid
            | Self::AuthExpired
            | Self::AuthRevoked
            | Self::MoneyMovement { .. }
            | Self::KeyManagement { .. }
            | Self::RateLimited { .. } => false,
        }
    }
}

/// A bot definition the policy refuses to load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A grant names an endpoint on the money-movement or key-management floor.
    #[error("{endpoint} is {class}; keyward never signs it, so no bot may be granted it")]
    FloorEndpoint {
        /// `METHOD /path`.
        endpoint: Arc<str>,
        /// The floor class, by name.
        class: &'static str,
    },
    /// The same token digest appears twice.
    #[error(
        "token digest {digest} is listed more than once (also for bot {other_bot}); each token belongs to one bot"
    )]
    DuplicateToken {
        /// The repeated digest (not secret).
        digest: TokenDigest,
        /// The other bot listing it.
        other_bot: Arc<str>,
    },
    /// The bot name cannot appear in a token.
    #[error(
        "bot name {bot:?} must be 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    InvalidBotName {
        /// Bot name as written.
        bot: Arc<str>,
    },
    /// Orders are allowed but nothing caps their size.
    #[error(
        "bot may place orders but has no max_order_notional; set a per-order cap in quote currency"
    )]
    MissingNotionalCap,
    /// Orders are allowed but no order type is.
    #[error(
        "bot may place orders but lists no order_types; name the order types it may use, e.g. [\"LIMIT\"]"
    )]
    MissingOrderTypes,
    /// Two bots share a name.
    #[error("bot {bot} is defined twice")]
    DuplicateBot {
        /// Bot name.
        bot: Arc<str>,
    },
}
