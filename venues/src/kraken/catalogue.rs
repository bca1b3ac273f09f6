//! The Kraken spot REST catalogue (`/0/public/*` and `/0/private/*`): every endpoint a
//! trading bot and the real clients (krakenex, ccxt `kraken`) need, each parameter's
//! grammar, and which endpoints carry orders.
//!
//! Parameter lists are in byte order of their names, which is the order keyward sends
//! them in after the nonce: that reproduces Kraken's published signing example byte
//! for byte. Parameters that let the exchange choose a price relative to the market
//! (`+`, `-`, `#` and `%` prices, except the offset a trailing stop is made of) are
//! refused by their grammar, so every price keyward checks is the price sent.

use http::Method;
use keyward_policy::{EndpointClass, Execution};

use crate::schema::{EndpointSpec, OrderTypeSpec, Security, Shape};

/// A parameter's value grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grammar {
    /// One asset pair; its spelling is resolved to the canonical altname.
    Pair,
    /// A comma list of up to 50 pairs.
    Pairs,
    /// A plain decimal (no sign, exponent or leading zeros).
    Decimal,
    /// A plain decimal, or a trailing-stop offset `+<decimal>` / `+<decimal>%`.
    Price,
    /// A non-negative integer.
    Int,
    /// `true` or `false` (`True`/`False`, as Python clients send them, are normalised).
    Bool,
    /// One of these words.
    Enum(&'static [&'static str]),
    /// A comma list of these words; repeats are merged.
    Flags(&'static [&'static str]),
    /// An order, trade or ledger id, or a `userref`.
    Txid,
    /// A comma list of up to 50 ids.
    Txids,
    /// A client order id (`cl_ord_id`).
    ClientId,
    /// `0`, a Unix time, or `+<seconds>` (`starttm`, `expiretm`).
    Time,
    /// An RFC 3339 time (`deadline`).
    Deadline,
    /// A Unix time or an id that bounds a listing (`start`, `end`).
    Bound,
    /// Kraken's `since` cursor: digits with an optional fraction.
    Since,
    /// An asset name such as `XBT`, `ZUSD` or `USDT`.
    Asset,
    /// A comma list of up to 50 assets.
    Assets,
    /// A short opaque word (`country_code`).
    Word,
    /// `none`, or a leverage such as `2` or `3:1`.
    Leverage,
    /// AddOrderBatch's JSON list of orders.
    Orders,
    /// CancelOrderBatch's JSON list of txids or userrefs.
    CancelList,
    /// A JSON list of client order ids.
    ClientIds,
}

/// One accepted parameter.
#[derive(Debug, Clone, Copy)]
pub(super) struct P {
    /// Exact key (in a form body; `close[...]` is a nested `close` object in JSON).
    pub name: &'static str,
    /// Value grammar.
    pub grammar: Grammar,
    /// True if keyward refuses the request without it.
    pub required: bool,
}

const fn req(name: &'static str, grammar: Grammar) -> P {
    P {
        name,
        grammar,
        required: true,
    }
}

const fn opt(name: &'static str, grammar: Grammar) -> P {
    P {
        name,
        grammar,
        required: false,
    }
}

/// How an endpoint's orders are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Orders {
    /// No orders.
    None,
    /// One order from the top-level fields, plus its conditional close.
    Add,
    /// A JSON list of orders on the top-level pair.
    Batch,
    /// EditOrder: a replacement whose side the request does not say.
    Edit,
    /// AmendOrder: an in-place change whose side the request does not say.
    Amend,
}

/// Which of a set of parameters must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    /// No constraint.
    Nothing,
    /// Exactly one of them.
    ExactlyOne(&'static str, &'static str),
    /// At least one of them.
    AtLeastOne(&'static str, &'static str),
}

/// What keyward knows about an endpoint beyond its [`EndpointSpec`].
#[derive(Debug)]
pub(super) struct Detail {
    /// The endpoint's key.
    pub key: &'static str,
    /// Accepted parameters, in the order keyward sends them.
    pub params: &'static [P],
    /// Its orders.
    pub orders: Orders,
    /// Presence constraints between parameters.
    pub need: Need,
    /// True if the body must be JSON (its lists have no form encoding).
    pub json_only: bool,
}

/// The order types keyward models. `trailing-stop-limit` (two relative prices) and
/// `settle-position` (closes a margin position at the market) are left out on
/// purpose: requests using them are refused by the `ordertype` grammar.
///
/// A conditional close (`close[ordertype]=limit`) is an order Kraken places on its
/// own once the first one fills. It is checked as an order of its own under the
/// name `close-<type>`, so an operator allows it explicitly: a bot allowed `limit`
/// may not attach a `close-limit` unless that is listed too.
pub(super) const ORDER_TYPES: &[OrderTypeSpec] = &[
    ot("market", Execution::Market),
    ot("limit", Execution::Limit),
    ot("iceberg", Execution::Limit),
    ot("stop-loss", Execution::StopMarket),
    ot("take-profit", Execution::StopMarket),
    ot("stop-loss-limit", Execution::StopLimit),
    ot("take-profit-limit", Execution::StopLimit),
    ot("trailing-stop", Execution::TrailingMarket),
    ot("close-market", Execution::Market),
    ot("close-limit", Execution::Limit),
    ot("close-stop-loss", Execution::StopMarket),
    ot("close-take-profit", Execution::StopMarket),
    ot("close-stop-loss-limit", Execution::StopLimit),
    ot("close-take-profit-limit", Execution::StopLimit),
    ot("close-trailing-stop", Execution::TrailingMarket),
];

const fn ot(name: &'static str, execution: Execution) -> OrderTypeSpec {
    OrderTypeSpec { name, execution }
}

const TYPE_NAMES: &[&str] = &[
    "market",
    "limit",
    "iceberg",
    "stop-loss",
    "take-profit",
    "stop-loss-limit",
    "take-profit-limit",
    "trailing-stop",
];
/// A conditional close is never an iceberg (it has no display volume of its own).
const CLOSE_TYPE_NAMES: &[&str] = &[
    "market",
    "limit",
    "stop-loss",
    "take-profit",
    "stop-loss-limit",
    "take-profit-limit",
    "trailing-stop",
];
const SIDES: &[&str] = &["buy", "sell"];
const OFLAGS: &[&str] = &["post", "fcib", "fciq", "nompp", "viqc"];
const TIF: &[&str] = &["GTC", "IOC", "GTD"];
const STP: &[&str] = &["cancel-newest", "cancel-oldest", "cancel-both"];
const TRIGGERS: &[&str] = &["index", "last"];
const ASSET_CLASS: &[&str] = &["tokenized_asset"];
const ACLASS: &[&str] = &["currency", "tokenized_asset"];
const REBASE: &[&str] = &["rebased", "base"];
const INTERVALS: &[&str] = &["1", "5", "15", "30", "60", "240", "1440", "10080", "21600"];
const PAIR_INFO: &[&str] = &["info", "leverage", "fees", "margin"];
const CLOSETIME: &[&str] = &["open", "close", "both"];
const TRADE_TYPES: &[&str] = &[
    "all",
    "any position",
    "closed position",
    "closing position",
    "no position",
];
const LEDGER_TYPES: &[&str] = &[
    "all",
    "trade",
    "deposit",
    "withdrawal",
    "transfer",
    "margin",
    "adjustment",
    "rollover",
    "credit",
    "settled",
    "staking",
    "dividend",
    "sale",
    "nft_rebate",
];

const PAIR: P = req("pair", Grammar::Pair);
const REBASE_OPT: P = opt("rebase_multiplier", Grammar::Enum(REBASE));
const ASSET_CLASS_OPT: P = opt("asset_class", Grammar::Enum(ASSET_CLASS));

/// AddOrder. The `close[...]` fields describe a second order Kraken places when this
/// one fills; keyward checks it as an order of its own.
const ADD_ORDER: &[P] = &[
    ASSET_CLASS_OPT,
    opt("cl_ord_id", Grammar::ClientId),
    opt("close[ordertype]", Grammar::Enum(CLOSE_TYPE_NAMES)),
    opt("close[price2]", Grammar::Decimal),
    opt("close[price]", Grammar::Price),
    opt("deadline", Grammar::Deadline),
    opt("displayvol", Grammar::Decimal),
    opt("expiretm", Grammar::Time),
    opt("leverage", Grammar::Leverage),
    opt("oflags", Grammar::Flags(OFLAGS)),
    req("ordertype", Grammar::Enum(TYPE_NAMES)),
    PAIR,
    opt("price", Grammar::Price),
    opt("price2", Grammar::Decimal),
    opt("reduce_only", Grammar::Bool),
    opt("starttm", Grammar::Time),
    opt("stptype", Grammar::Enum(STP)),
    opt("timeinforce", Grammar::Enum(TIF)),
    opt("trigger", Grammar::Enum(TRIGGERS)),
    req("type", Grammar::Enum(SIDES)),
    opt("userref", Grammar::Int),
    opt("validate", Grammar::Bool),
    req("volume", Grammar::Decimal),
];

/// One element of AddOrderBatch's `orders` (the pair is the batch's).
pub(super) const BATCH_ORDER: &[P] = &[
    opt("cl_ord_id", Grammar::ClientId),
    opt("close[ordertype]", Grammar::Enum(CLOSE_TYPE_NAMES)),
    opt("close[price2]", Grammar::Decimal),
    opt("close[price]", Grammar::Price),
    opt("displayvol", Grammar::Decimal),
    opt("expiretm", Grammar::Time),
    opt("leverage", Grammar::Leverage),
    opt("oflags", Grammar::Flags(OFLAGS)),
    req("ordertype", Grammar::Enum(TYPE_NAMES)),
    opt("price", Grammar::Price),
    opt("price2", Grammar::Decimal),
    opt("reduce_only", Grammar::Bool),
    opt("starttm", Grammar::Time),
    opt("stptype", Grammar::Enum(STP)),
    opt("timeinforce", Grammar::Enum(TIF)),
    opt("trigger", Grammar::Enum(TRIGGERS)),
    req("type", Grammar::Enum(SIDES)),
    opt("userref", Grammar::Int),
    req("volume", Grammar::Decimal),
];

/// Most orders AddOrderBatch takes, and most ids CancelOrderBatch takes.
pub(super) const BATCH_MAX: usize = 15;
pub(super) const CANCEL_BATCH_MAX: usize = 50;

/// The `close[...]` keys of a form body and their names inside JSON's `close` object.
pub(super) const CLOSE_KEYS: [(&str, &str); 3] = [
    ("close[ordertype]", "ordertype"),
    ("close[price]", "price"),
    ("close[price2]", "price2"),
];

macro_rules! catalogue {
    ($( $method:ident $path:literal, $class:ident, $security:ident, $params:expr, $orders:ident, $need:expr, $json_only:literal; )*) => {
        /// Every endpoint, in the order of [`DETAILS`].
        pub(super) static ENDPOINTS: [EndpointSpec; <[&str]>::len(&[$($path),*])] = [$(
            EndpointSpec {
                key: concat!(stringify!($method), " ", $path),
                method: Method::$method,
                path: $path,
                class: EndpointClass::$class,
                security: Security::$security,
                // Kraken's parameters and orders are in `DETAILS`: its grammars
                // (pairs with aliases, comma lists, `close[...]` templates) are not
                // the shared schema's.
                params: &[],
                shape: if matches!(Orders::$orders, Orders::None) {
                    Shape::NoOrders
                } else {
                    Shape::Legs(&[])
                },
            }
        ),*];

        /// Parameters and orders of every endpoint, in the order of [`ENDPOINTS`].
        pub(super) static DETAILS: [Detail; <[&str]>::len(&[$($path),*])] = [$(
            Detail {
                key: concat!(stringify!($method), " ", $path),
                params: $params,
                orders: Orders::$orders,
                need: $need,
                json_only: $json_only,
            }
        ),*];
    };
}

use Need::{AtLeastOne, ExactlyOne, Nothing};

catalogue! {
    // Public market data (GET, no key).
    GET "/0/public/Time", Market, Public, &[], None, Nothing, false;
    GET "/0/public/SystemStatus", Market, Public, &[], None, Nothing, false;
    GET "/0/public/Assets", Market, Public, &[
        opt("aclass", Grammar::Enum(ACLASS)),
        opt("asset", Grammar::Assets),
    ], None, Nothing, false;
    GET "/0/public/AssetPairs", Market, Public, &[
        opt("aclass_base", Grammar::Enum(ACLASS)),
        opt("country_code", Grammar::Word),
        opt("info", Grammar::Enum(PAIR_INFO)),
        opt("pair", Grammar::Pairs),
    ], None, Nothing, false;
    GET "/0/public/Ticker", Market, Public, &[
        ASSET_CLASS_OPT,
        opt("pair", Grammar::Pairs),
    ], None, Nothing, false;
    GET "/0/public/OHLC", Market, Public, &[
        ASSET_CLASS_OPT,
        opt("interval", Grammar::Enum(INTERVALS)),
        PAIR,
        opt("since", Grammar::Since),
    ], None, Nothing, false;
    GET "/0/public/Depth", Market, Public, &[
        ASSET_CLASS_OPT,
        opt("count", Grammar::Int),
        PAIR,
    ], None, Nothing, false;
    GET "/0/public/Trades", Market, Public, &[
        ASSET_CLASS_OPT,
        opt("count", Grammar::Int),
        PAIR,
        opt("since", Grammar::Since),
    ], None, Nothing, false;
    GET "/0/public/Spread", Market, Public, &[
        ASSET_CLASS_OPT,
        PAIR,
        opt("since", Grammar::Since),
    ], None, Nothing, false;
    // Private reads.
    POST "/0/private/Balance", Read, Signed, &[REBASE_OPT], None, Nothing, false;
    POST "/0/private/BalanceEx", Read, Signed, &[REBASE_OPT], None, Nothing, false;
    POST "/0/private/TradeBalance", Read, Signed, &[
        opt("asset", Grammar::Asset),
        REBASE_OPT,
    ], None, Nothing, false;
    POST "/0/private/OpenOrders", Read, Signed, &[
        opt("cl_ord_id", Grammar::ClientId),
        REBASE_OPT,
        opt("trades", Grammar::Bool),
        opt("userref", Grammar::Int),
    ], None, Nothing, false;
    POST "/0/private/ClosedOrders", Read, Signed, &[
        opt("cl_ord_id", Grammar::ClientId),
        opt("closetime", Grammar::Enum(CLOSETIME)),
        opt("consolidate_taker", Grammar::Bool),
        opt("end", Grammar::Bound),
        opt("ofs", Grammar::Int),
        REBASE_OPT,
        opt("start", Grammar::Bound),
        opt("trades", Grammar::Bool),
        opt("userref", Grammar::Int),
        opt("without_count", Grammar::Bool),
    ], None, Nothing, false;
    POST "/0/private/QueryOrders", Read, Signed, &[
        opt("consolidate_taker", Grammar::Bool),
        REBASE_OPT,
        opt("trades", Grammar::Bool),
        req("txid", Grammar::Txids),
        opt("userref", Grammar::Int),
    ], None, Nothing, false;
    POST "/0/private/OrderAmends", Read, Signed, &[
        req("order_id", Grammar::Txid),
        REBASE_OPT,
    ], None, Nothing, false;
    POST "/0/private/TradesHistory", Read, Signed, &[
        opt("consolidate_taker", Grammar::Bool),
        opt("end", Grammar::Bound),
        opt("ledgers", Grammar::Bool),
        opt("ofs", Grammar::Int),
        REBASE_OPT,
        opt("start", Grammar::Bound),
        opt("trades", Grammar::Bool),
        opt("type", Grammar::Enum(TRADE_TYPES)),
    ], None, Nothing, false;
    POST "/0/private/QueryTrades", Read, Signed, &[
        REBASE_OPT,
        opt("trades", Grammar::Bool),
        req("txid", Grammar::Txids),
    ], None, Nothing, false;
    POST "/0/private/OpenPositions", Read, Signed, &[
        opt("consolidation", Grammar::Enum(&["market"])),
        opt("docalcs", Grammar::Bool),
        REBASE_OPT,
        opt("txid", Grammar::Txids),
    ], None, Nothing, false;
    POST "/0/private/Ledgers", Read, Signed, &[
        opt("aclass", Grammar::Enum(ACLASS)),
        opt("asset", Grammar::Assets),
        opt("end", Grammar::Bound),
        opt("ofs", Grammar::Int),
        REBASE_OPT,
        opt("start", Grammar::Bound),
        opt("type", Grammar::Enum(LEDGER_TYPES)),
        opt("without_count", Grammar::Bool),
    ], None, Nothing, false;
    POST "/0/private/QueryLedgers", Read, Signed, &[
        req("id", Grammar::Txids),
        opt("trades", Grammar::Bool),
    ], None, Nothing, false;
    POST "/0/private/TradeVolume", Read, Signed, &[opt("pair", Grammar::Pairs)], None, Nothing, false;
    // The WebSocket token: keyward answers it with one it minted for the bot
    // (Kraken's own would let its holder trade with no proxy in the path).
    POST "/0/private/GetWebSocketsToken", Read, Signed, &[], None, Nothing, false;
    // Orders.
    POST "/0/private/AddOrder", Trade, Signed, ADD_ORDER, Add, Nothing, false;
    POST "/0/private/AddOrderBatch", Trade, Signed, &[
        ASSET_CLASS_OPT,
        opt("deadline", Grammar::Deadline),
        req("orders", Grammar::Orders),
        PAIR,
        opt("validate", Grammar::Bool),
    ], Batch, Nothing, true;
    // Kraken requires only `pair` and `txid`; keyward also requires the new volume
    // and price, without which the replacement's size cannot be checked.
    POST "/0/private/EditOrder", Trade, Signed, &[
        ASSET_CLASS_OPT,
        opt("cancel_response", Grammar::Bool),
        opt("deadline", Grammar::Deadline),
        opt("displayvol", Grammar::Decimal),
        opt("oflags", Grammar::Flags(&["post"])),
        PAIR,
        req("price", Grammar::Decimal),
        opt("price2", Grammar::Decimal),
        req("txid", Grammar::Txid),
        opt("userref", Grammar::Int),
        opt("validate", Grammar::Bool),
        req("volume", Grammar::Decimal),
    ], Edit, Nothing, false;
    // Kraken takes `pair` only for tokenized assets and needs neither quantity nor
    // price; keyward requires the pair (the symbol checked) and the new quantity.
    POST "/0/private/AmendOrder", Trade, Signed, &[
        opt("cl_ord_id", Grammar::ClientId),
        opt("deadline", Grammar::Deadline),
        opt("display_qty", Grammar::Decimal),
        opt("limit_price", Grammar::Decimal),
        req("order_qty", Grammar::Decimal),
        PAIR,
        opt("post_only", Grammar::Bool),
        opt("trigger_price", Grammar::Decimal),
        opt("txid", Grammar::Txid),
    ], Amend, ExactlyOne("txid", "cl_ord_id"), false;
    // Cancels.
    POST "/0/private/CancelOrder", Cancel, Signed, &[
        opt("cl_ord_id", Grammar::ClientId),
        opt("txid", Grammar::Txid),
    ], None, ExactlyOne("txid", "cl_ord_id"), false;
    POST "/0/private/CancelAll", Cancel, Signed, &[], None, Nothing, false;
    POST "/0/private/CancelAllOrdersAfter", Cancel, Signed, &[
        req("timeout", Grammar::Int),
    ], None, Nothing, false;
    POST "/0/private/CancelOrderBatch", Cancel, Signed, &[
        opt("cl_ord_ids", Grammar::ClientIds),
        opt("orders", Grammar::CancelList),
    ], None, AtLeastOne("orders", "cl_ord_ids"), true;
}

/// The details of a catalogued endpoint.
pub(super) fn detail(key: &str) -> Option<&'static Detail> {
    DETAILS.iter().find(|d| d.key == key)
}

/// Exact private paths that move money, hand out a credential that bypasses keyward,
/// or open sub-accounts, from Kraken's REST reference. Compared
/// without regard to case: whether Kraken's router folds case is not documented.
pub(super) const MONEY_PATHS: &[&str] = &[
    "/0/private/WalletTransfer",
    "/0/private/AccountTransfer",
    "/0/private/CreateSubaccount",
    "/0/private/Stake",
    "/0/private/Unstake",
];

/// Private path prefixes that move money: withdrawals (and their address book),
/// deposits (`DepositAddresses` with `new=true` creates addresses), Earn allocation,
/// staking, and the Funding API.
pub(super) const MONEY_PREFIXES: &[&str] = &[
    "/0/private/Withdraw",
    "/0/private/Deposit",
    "/0/private/Earn/",
    "/0/private/Staking",
    "/0/private/Funding",
    "/0/private/Transfer",
    // Kraken Futures' transfers and sub-accounts, should this upstream ever be
    // pointed at it.
    "/derivatives/api/v3/transfer",
    "/derivatives/api/v3/withdrawal",
    "/derivatives/api/v3/subaccount",
];

/// Private path prefixes that manage API keys.
pub(super) const KEY_PREFIXES: &[&str] = &["/0/private/ApiKey", "/0/private/CreateApiKey"];
