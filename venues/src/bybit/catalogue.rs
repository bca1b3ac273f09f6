//! The Bybit v5 endpoint catalogue for the `spot` and `linear` categories.
//!
//! Parameter lists are in the order keyward writes them (query strings and JSON
//! bodies alike). Parameters are absent on purpose when keyward cannot bound what they
//! do: attached take-profit/stop-loss orders (`takeProfit`, `stopLoss`, `tp*`, `sl*`),
//! exchange-chosen prices (`bboSideType`, `bboLevel`, `slippageTolerance*`) and
//! options fields. A request using them is refused as carrying an unknown parameter.

use http::Method;
use keyward_policy::{EndpointClass, Execution};

use crate::schema::{
    EndpointSpec, Kind, Leg, OrderTypeSpec, Param, Security, Shape, TypeSource, opt, req,
};

macro_rules! endpoint {
    ($method:ident $path:literal, $class:ident, $security:ident, $params:expr, $shape:expr) => {
        EndpointSpec {
            key: concat!(stringify!($method), " ", $path),
            method: Method::$method,
            path: $path,
            class: EndpointClass::$class,
            security: Security::$security,
            params: $params,
            shape: $shape,
        }
    };
    ($method:ident $path:literal, $class:ident, $security:ident, $params:expr) => {
        endpoint!($method $path, $class, $security, $params, Shape::NoOrders)
    };
}

/// The categories keyward serves; `inverse` and `option` are refused.
pub(super) const CATEGORIES: &[&str] = &["spot", "linear"];
const SIDES: &[&str] = &["Buy", "Sell"];
const ORDER_TYPE_NAMES: &[&str] = &["Limit", "Market"];
const TIF: &[&str] = &["GTC", "IOC", "FOK", "PostOnly"];
const ORDER_FILTERS: &[&str] = &["Order", "tpslOrder", "StopOrder"];
const TRIGGER_BY: &[&str] = &["LastPrice", "IndexPrice", "MarkPrice"];
const SMP: &[&str] = &["None", "CancelMaker", "CancelTaker", "CancelBoth"];
const ORDER_STATUS: &[&str] = &[
    "New",
    "PartiallyFilled",
    "Untriggered",
    "Rejected",
    "PartiallyFilledCanceled",
    "Filled",
    "Cancelled",
    "Triggered",
    "Deactivated",
];
const INTERVALS: &[&str] = &[
    "1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M",
];
const INSTRUMENT_STATUS: &[&str] = &["PreLaunch", "Trading", "Delivering", "Closed"];
const EXEC_TYPES: &[&str] = &[
    "Trade",
    "AdlTrade",
    "Funding",
    "BustTrade",
    "Delivery",
    "Settle",
    "BlockTrade",
    "MovePosition",
];
const ACCOUNT_TYPES: &[&str] = &["UNIFIED", "CONTRACT", "SPOT"];
const OI_INTERVALS: &[&str] = &["5min", "15min", "30min", "1h", "4h", "1d"];

/// Bybit's order types. A `triggerPrice` makes either one conditional (see
/// `order_of` in the parent module), which changes its execution, not its name.
pub(super) const ORDER_TYPES: &[OrderTypeSpec] = &[
    OrderTypeSpec {
        name: "Limit",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "Market",
        execution: Execution::Market,
    },
];

const CATEGORY: Param = req("category", Kind::Enum(CATEGORIES));
/// Public market data of every product family: clients load inverse and option
/// markets with the rest, and reading them trades nothing.
const MARKET_CATEGORY: Param = req(
    "category",
    Kind::Enum(&["spot", "linear", "inverse", "option"]),
);
const CATEGORY_OPT: Param = opt("category", Kind::Enum(CATEGORIES));
const SYMBOL: Param = req("symbol", Kind::Symbol);
const SYMBOL_OPT: Param = opt("symbol", Kind::Symbol);
// Coins, cursors and order ids have grammars of their own; see `grammar` in the
// parent module, which keys them by these names.
const BASE_COIN_OPT: Param = opt("baseCoin", Kind::ClientId);
const SETTLE_COIN_OPT: Param = opt("settleCoin", Kind::ClientId);
const CURSOR_OPT: Param = opt("cursor", Kind::ClientId);
const ORDER_ID_OPT: Param = opt("orderId", Kind::ClientId);
const ORDER_LINK_ID_OPT: Param = opt("orderLinkId", Kind::ClientId);
const LIMIT_OPT: Param = opt("limit", Kind::Int);
const START_TIME_OPT: Param = opt("startTime", Kind::Int);
const END_TIME_OPT: Param = opt("endTime", Kind::Int);

/// One order of `create` and of each `create-batch` element (after `category`).
const ORDER_FIELDS: [Param; 17] = [
    SYMBOL,
    opt("isLeverage", Kind::Enum(&["0", "1"])),
    req("side", Kind::Enum(SIDES)),
    req("orderType", Kind::Enum(ORDER_TYPE_NAMES)),
    req("qty", Kind::Decimal),
    opt("marketUnit", Kind::Enum(&["baseCoin", "quoteCoin"])),
    opt("price", Kind::Decimal),
    opt("triggerDirection", Kind::Enum(&["1", "2"])),
    opt("orderFilter", Kind::Enum(ORDER_FILTERS)),
    opt("triggerPrice", Kind::Decimal),
    opt("triggerBy", Kind::Enum(TRIGGER_BY)),
    opt("timeInForce", Kind::Enum(TIF)),
    opt("positionIdx", Kind::Enum(&["0", "1", "2"])),
    ORDER_LINK_ID_OPT,
    opt("reduceOnly", Kind::Bool),
    opt("closeOnTrigger", Kind::Bool),
    opt("smpType", Kind::Enum(SMP)),
];

const CREATE: &[Param] = &[
    CATEGORY,
    ORDER_FIELDS[0],
    ORDER_FIELDS[1],
    ORDER_FIELDS[2],
    ORDER_FIELDS[3],
    ORDER_FIELDS[4],
    ORDER_FIELDS[5],
    ORDER_FIELDS[6],
    ORDER_FIELDS[7],
    ORDER_FIELDS[8],
    ORDER_FIELDS[9],
    ORDER_FIELDS[10],
    ORDER_FIELDS[11],
    ORDER_FIELDS[12],
    ORDER_FIELDS[13],
    ORDER_FIELDS[14],
    ORDER_FIELDS[15],
    ORDER_FIELDS[16],
];

/// One amend and each `amend-batch` element (after `category`).
const AMEND_FIELDS: [Param; 7] = [
    SYMBOL,
    ORDER_ID_OPT,
    ORDER_LINK_ID_OPT,
    opt("qty", Kind::Decimal),
    opt("price", Kind::Decimal),
    opt("triggerPrice", Kind::Decimal),
    opt("triggerBy", Kind::Enum(TRIGGER_BY)),
];

const AMEND: &[Param] = &[
    CATEGORY,
    AMEND_FIELDS[0],
    AMEND_FIELDS[1],
    AMEND_FIELDS[2],
    AMEND_FIELDS[3],
    AMEND_FIELDS[4],
    AMEND_FIELDS[5],
    AMEND_FIELDS[6],
];

/// Each `cancel-batch` element.
pub(super) const CANCEL_FIELDS: &[Param] = &[SYMBOL, ORDER_ID_OPT, ORDER_LINK_ID_OPT];

/// The parameter that holds a batch's list.
pub(super) const BATCH_PARAM: &str = "request";

/// Bybit's batch limits: 10 orders for spot, 20 for linear.
pub(super) const BATCH_MAX_SPOT: usize = 10;
pub(super) const BATCH_MAX: usize = 20;

/// Descriptive only: Bybit orders are built by `order_of` in the parent module,
/// since the size unit depends on the category, side and `marketUnit` together.
static ORDER_LEG: Leg = Leg {
    quantity: Some("qty"),
    price: Some("price"),
    trigger: Some("triggerPrice"),
    ..Leg::new("side", TypeSource::Param("orderType"))
};

static AMEND_LEG: Leg = Leg {
    quantity: Some("qty"),
    price: Some("price"),
    trigger: Some("triggerPrice"),
    amend: true,
    ..Leg::new("side", TypeSource::Fixed("Limit"))
};

const KLINE: &[Param] = &[
    MARKET_CATEGORY,
    SYMBOL,
    req("interval", Kind::Enum(INTERVALS)),
    opt("start", Kind::Int),
    opt("end", Kind::Int),
    LIMIT_OPT,
];

/// Bybit v5, spot and linear.
pub(super) static ENDPOINTS: [EndpointSpec; 32] = [
    // Public market data.
    endpoint!(GET "/v5/market/time", Market, Public, &[]),
    endpoint!(GET "/v5/market/instruments-info", Market, Public, &[
        MARKET_CATEGORY,
        SYMBOL_OPT,
        opt("status", Kind::Enum(INSTRUMENT_STATUS)),
        BASE_COIN_OPT,
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
    endpoint!(GET "/v5/market/tickers", Market, Public, &[MARKET_CATEGORY, SYMBOL_OPT, BASE_COIN_OPT]),
    endpoint!(GET "/v5/market/orderbook", Market, Public, &[MARKET_CATEGORY, SYMBOL, LIMIT_OPT]),
    endpoint!(GET "/v5/market/kline", Market, Public, KLINE),
    endpoint!(GET "/v5/market/mark-price-kline", Market, Public, KLINE),
    endpoint!(GET "/v5/market/index-price-kline", Market, Public, KLINE),
    endpoint!(GET "/v5/market/premium-index-price-kline", Market, Public, KLINE),
    endpoint!(GET "/v5/market/recent-trade", Market, Public, &[MARKET_CATEGORY, SYMBOL_OPT, BASE_COIN_OPT, LIMIT_OPT]),
    endpoint!(GET "/v5/market/funding/history", Market, Public, &[
        MARKET_CATEGORY,
        SYMBOL,
        START_TIME_OPT,
        END_TIME_OPT,
        LIMIT_OPT,
    ]),
    endpoint!(GET "/v5/market/open-interest", Market, Public, &[
        MARKET_CATEGORY,
        SYMBOL,
        req("intervalTime", Kind::Enum(OI_INTERVALS)),
        START_TIME_OPT,
        END_TIME_OPT,
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
    endpoint!(GET "/v5/market/risk-limit", Market, Public, &[MARKET_CATEGORY, SYMBOL_OPT, CURSOR_OPT]),
    // Private reads.
    endpoint!(GET "/v5/order/realtime", Read, Signed, &[
        CATEGORY,
        SYMBOL_OPT,
        BASE_COIN_OPT,
        SETTLE_COIN_OPT,
        ORDER_ID_OPT,
        ORDER_LINK_ID_OPT,
        opt("openOnly", Kind::Enum(&["0", "1", "2"])),
        opt("orderFilter", Kind::Enum(ORDER_FILTERS)),
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
    endpoint!(GET "/v5/order/history", Read, Signed, &[
        CATEGORY,
        SYMBOL_OPT,
        BASE_COIN_OPT,
        SETTLE_COIN_OPT,
        ORDER_ID_OPT,
        ORDER_LINK_ID_OPT,
        opt("orderFilter", Kind::Enum(ORDER_FILTERS)),
        opt("orderStatus", Kind::Enum(ORDER_STATUS)),
        START_TIME_OPT,
        END_TIME_OPT,
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
    endpoint!(GET "/v5/execution/list", Read, Signed, &[
        CATEGORY,
        SYMBOL_OPT,
        ORDER_ID_OPT,
        ORDER_LINK_ID_OPT,
        BASE_COIN_OPT,
        SETTLE_COIN_OPT,
        START_TIME_OPT,
        END_TIME_OPT,
        opt("execType", Kind::Enum(EXEC_TYPES)),
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
    endpoint!(GET "/v5/position/list", Read, Signed, &[
        CATEGORY,
        SYMBOL_OPT,
        BASE_COIN_OPT,
        SETTLE_COIN_OPT,
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
    endpoint!(GET "/v5/position/closed-pnl", Read, Signed, &[
        CATEGORY,
        SYMBOL_OPT,
        START_TIME_OPT,
        END_TIME_OPT,
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
    endpoint!(GET "/v5/account/wallet-balance", Read, Signed, &[
        req("accountType", Kind::Enum(ACCOUNT_TYPES)),
        // A comma-separated list of coins; see `grammar`.
        opt("coin", Kind::ClientId),
    ]),
    endpoint!(GET "/v5/account/fee-rate", Read, Signed, &[CATEGORY, SYMBOL_OPT, BASE_COIN_OPT]),
    endpoint!(GET "/v5/account/info", Read, Signed, &[]),
    endpoint!(GET "/v5/asset/coin/query-info", Read, Signed, &[opt("coin", Kind::Symbol)]),
    // Answered by keyward from the bot's policy, never sent (see `key_answer`).
    endpoint!(GET "/v5/user/query-api", Read, Signed, &[]),
    // Orders.
    endpoint!(POST "/v5/order/create", Trade, Signed, CREATE, Shape::Legs(std::slice::from_ref(&ORDER_LEG))),
    endpoint!(POST "/v5/order/amend", Trade, Signed, AMEND, Shape::Legs(std::slice::from_ref(&AMEND_LEG))),
    endpoint!(POST "/v5/order/create-batch", Trade, Signed, &[CATEGORY, req(BATCH_PARAM, Kind::Batch)], Shape::Batch {
        param: BATCH_PARAM,
        max: BATCH_MAX,
        element: &ORDER_FIELDS,
        leg: &ORDER_LEG,
    }),
    endpoint!(POST "/v5/order/amend-batch", Trade, Signed, &[CATEGORY, req(BATCH_PARAM, Kind::Batch)], Shape::Batch {
        param: BATCH_PARAM,
        max: BATCH_MAX,
        element: &AMEND_FIELDS,
        leg: &AMEND_LEG,
    }),
    // Cancels. A cancel-all must name its symbol: the key may serve other bots.
    endpoint!(POST "/v5/order/cancel", Cancel, Signed, &[
        CATEGORY,
        SYMBOL,
        ORDER_ID_OPT,
        ORDER_LINK_ID_OPT,
        opt("orderFilter", Kind::Enum(ORDER_FILTERS)),
    ]),
    endpoint!(POST "/v5/order/cancel-all", Cancel, Signed, &[
        CATEGORY,
        SYMBOL,
        opt("orderFilter", Kind::Enum(ORDER_FILTERS)),
    ]),
    // Not order-bearing: its list names orders to cancel (see `batch_schema`).
    endpoint!(POST "/v5/order/cancel-batch", Cancel, Signed, &[CATEGORY, req(BATCH_PARAM, Kind::Batch)]),
    // Risk settings (linear only; the parser refuses spot).
    endpoint!(POST "/v5/position/set-leverage", Configure, Signed, &[
        CATEGORY,
        SYMBOL,
        req("buyLeverage", Kind::Decimal),
        req("sellLeverage", Kind::Decimal),
    ]),
    endpoint!(GET "/v5/order/spot-borrow-check", Read, Signed, &[
        CATEGORY,
        SYMBOL,
        req("side", Kind::Enum(SIDES)),
    ]),
    endpoint!(GET "/v5/account/transaction-log", Read, Signed, &[
        opt("accountType", Kind::Enum(&["UNIFIED"])),
        CATEGORY_OPT,
        BASE_COIN_OPT,
        START_TIME_OPT,
        END_TIME_OPT,
        LIMIT_OPT,
        CURSOR_OPT,
    ]),
];
