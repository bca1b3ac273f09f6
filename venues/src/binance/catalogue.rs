//! The Binance spot (`/api/v3`) and USDⓈ-M futures (`/fapi`) endpoint catalogues,
//! each with the other families' exchange information and the few read-only
//! `/sapi/` endpoints clients load markets and currencies from.
//!
//! Parameter lists are in the order keyward sends them, which follows Binance's own
//! examples (so the documented signing vectors reproduce byte for byte). Parameters
//! that let the exchange choose a price (`priceMatch`, pegged orders) are absent on
//! purpose: a request using them is refused as carrying an unknown parameter.

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

const SIDES: &[&str] = &["BUY", "SELL"];
const SPOT_TYPES: &[&str] = &[
    "LIMIT",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
    "LIMIT_MAKER",
];
const OCO_TYPES: &[&str] = &[
    "STOP_LOSS_LIMIT",
    "STOP_LOSS",
    "LIMIT_MAKER",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
];
const WORKING_TYPES: &[&str] = &["LIMIT", "LIMIT_MAKER"];
const SOR_TYPES: &[&str] = &["LIMIT", "MARKET"];
const SPOT_TIF: &[&str] = &["GTC", "IOC", "FOK"];
const SPOT_RESPONSE: &[&str] = &["ACK", "RESULT", "FULL"];
const SPOT_STP: &[&str] = &[
    "NONE",
    "EXPIRE_TAKER",
    "EXPIRE_MAKER",
    "EXPIRE_BOTH",
    "DECREMENT",
];
const INTERVALS: &[&str] = &[
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
    "1M",
];
const TICKER_TYPES: &[&str] = &["FULL", "MINI"];
const PERMISSIONS: &[&str] = &["SPOT", "MARGIN", "LEVERAGED", "TRD_GRP_002", "TRD_GRP_003"];
const SYMBOL_STATUS: &[&str] = &["TRADING", "HALT", "BREAK"];
const CANCEL_RESTRICTIONS: &[&str] = &["ONLY_NEW", "ONLY_PARTIALLY_FILLED"];

/// Spot order types and how each executes.
pub(super) const SPOT_ORDER_TYPES: &[OrderTypeSpec] = &[
    OrderTypeSpec {
        name: "LIMIT",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "LIMIT_MAKER",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "MARKET",
        execution: Execution::Market,
    },
    OrderTypeSpec {
        name: "STOP_LOSS",
        execution: Execution::StopMarket,
    },
    OrderTypeSpec {
        name: "TAKE_PROFIT",
        execution: Execution::StopMarket,
    },
    OrderTypeSpec {
        name: "STOP_LOSS_LIMIT",
        execution: Execution::StopLimit,
    },
    OrderTypeSpec {
        name: "TAKE_PROFIT_LIMIT",
        execution: Execution::StopLimit,
    },
];

const SYMBOL: Param = req("symbol", Kind::Symbol);
const SPOT_EXCHANGE_INFO: &[Param] = &[
    SYMBOL_OPT,
    SYMBOLS_OPT,
    opt("permissions", Kind::EnumList(PERMISSIONS)),
    opt("showPermissionSets", Kind::Bool),
    opt("symbolStatus", Kind::Enum(SYMBOL_STATUS)),
];
const SYMBOL_OPT: Param = opt("symbol", Kind::Symbol);
const SYMBOLS_OPT: Param = opt("symbols", Kind::SymbolList);
const LIMIT_OPT: Param = opt("limit", Kind::Int);
const START_OPT: Param = opt("startTime", Kind::Int);
const END_OPT: Param = opt("endTime", Kind::Int);
const FROM_ID_OPT: Param = opt("fromId", Kind::Int);
const ORDER_ID_OPT: Param = opt("orderId", Kind::Int);
const ORIG_CLIENT_ID_OPT: Param = opt("origClientOrderId", Kind::ClientId);

const SPOT_ORDER: &[Param] = &[
    SYMBOL,
    req("side", Kind::Enum(SIDES)),
    req("type", Kind::Enum(SPOT_TYPES)),
    opt("timeInForce", Kind::Enum(SPOT_TIF)),
    opt("quantity", Kind::Decimal),
    opt("quoteOrderQty", Kind::Decimal),
    opt("price", Kind::Decimal),
    opt("newClientOrderId", Kind::ClientId),
    opt("strategyId", Kind::Int),
    opt("strategyType", Kind::Int),
    opt("stopPrice", Kind::Decimal),
    opt("trailingDelta", Kind::Int),
    opt("icebergQty", Kind::Decimal),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
];

const SPOT_TEST_ORDER: &[Param] = &[
    SYMBOL,
    req("side", Kind::Enum(SIDES)),
    req("type", Kind::Enum(SPOT_TYPES)),
    opt("timeInForce", Kind::Enum(SPOT_TIF)),
    opt("quantity", Kind::Decimal),
    opt("quoteOrderQty", Kind::Decimal),
    opt("price", Kind::Decimal),
    opt("newClientOrderId", Kind::ClientId),
    opt("strategyId", Kind::Int),
    opt("strategyType", Kind::Int),
    opt("stopPrice", Kind::Decimal),
    opt("trailingDelta", Kind::Int),
    opt("icebergQty", Kind::Decimal),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
    opt("computeCommissionRates", Kind::Bool),
];

const SPOT_ORDER_LEG: Leg = Leg {
    quantity: Some("quantity"),
    quote_quantity: Some("quoteOrderQty"),
    price: Some("price"),
    trigger: Some("stopPrice"),
    trailing: Some("trailingDelta"),
    client_id: Some("newClientOrderId"),
    ..Leg::new("side", TypeSource::Param("type"))
};

const CANCEL_REPLACE: &[Param] = &[
    SYMBOL,
    req("side", Kind::Enum(SIDES)),
    req("type", Kind::Enum(SPOT_TYPES)),
    req(
        "cancelReplaceMode",
        Kind::Enum(&["STOP_ON_FAILURE", "ALLOW_FAILURE"]),
    ),
    opt("timeInForce", Kind::Enum(SPOT_TIF)),
    opt("quantity", Kind::Decimal),
    opt("quoteOrderQty", Kind::Decimal),
    opt("price", Kind::Decimal),
    opt("cancelNewClientOrderId", Kind::ClientId),
    opt("cancelOrigClientOrderId", Kind::ClientId),
    opt("cancelOrderId", Kind::Int),
    opt("newClientOrderId", Kind::ClientId),
    opt("strategyId", Kind::Int),
    opt("strategyType", Kind::Int),
    opt("stopPrice", Kind::Decimal),
    opt("trailingDelta", Kind::Int),
    opt("icebergQty", Kind::Decimal),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
    opt("cancelRestrictions", Kind::Enum(CANCEL_RESTRICTIONS)),
    opt(
        "orderRateLimitExceededMode",
        Kind::Enum(&["DO_NOTHING", "CANCEL_ONLY"]),
    ),
];

const OCO: &[Param] = &[
    SYMBOL,
    opt("listClientOrderId", Kind::ClientId),
    req("side", Kind::Enum(SIDES)),
    req("quantity", Kind::Decimal),
    req("aboveType", Kind::Enum(OCO_TYPES)),
    opt("aboveClientOrderId", Kind::ClientId),
    opt("aboveIcebergQty", Kind::Decimal),
    opt("abovePrice", Kind::Decimal),
    opt("aboveStopPrice", Kind::Decimal),
    opt("aboveTrailingDelta", Kind::Int),
    opt("aboveTimeInForce", Kind::Enum(SPOT_TIF)),
    opt("aboveStrategyId", Kind::Int),
    opt("aboveStrategyType", Kind::Int),
    req("belowType", Kind::Enum(OCO_TYPES)),
    opt("belowClientOrderId", Kind::ClientId),
    opt("belowIcebergQty", Kind::Decimal),
    opt("belowPrice", Kind::Decimal),
    opt("belowStopPrice", Kind::Decimal),
    opt("belowTrailingDelta", Kind::Int),
    opt("belowTimeInForce", Kind::Enum(SPOT_TIF)),
    opt("belowStrategyId", Kind::Int),
    opt("belowStrategyType", Kind::Int),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
];

const OCO_LEGS: &[Leg] = &[
    Leg {
        quantity: Some("quantity"),
        price: Some("abovePrice"),
        trigger: Some("aboveStopPrice"),
        trailing: Some("aboveTrailingDelta"),
        client_id: Some("aboveClientOrderId"),
        ..Leg::new("side", TypeSource::Param("aboveType"))
    },
    Leg {
        quantity: Some("quantity"),
        price: Some("belowPrice"),
        trigger: Some("belowStopPrice"),
        trailing: Some("belowTrailingDelta"),
        client_id: Some("belowClientOrderId"),
        ..Leg::new("side", TypeSource::Param("belowType"))
    },
];

const WORKING_PARAMS: [Param; 9] = [
    req("workingType", Kind::Enum(WORKING_TYPES)),
    req("workingSide", Kind::Enum(SIDES)),
    opt("workingClientOrderId", Kind::ClientId),
    req("workingPrice", Kind::Decimal),
    req("workingQuantity", Kind::Decimal),
    opt("workingIcebergQty", Kind::Decimal),
    opt("workingTimeInForce", Kind::Enum(SPOT_TIF)),
    opt("workingStrategyId", Kind::Int),
    opt("workingStrategyType", Kind::Int),
];

const WORKING_LEG: Leg = Leg {
    quantity: Some("workingQuantity"),
    price: Some("workingPrice"),
    client_id: Some("workingClientOrderId"),
    ..Leg::new("workingSide", TypeSource::Param("workingType"))
};

const OTO: &[Param] = &[
    SYMBOL,
    opt("listClientOrderId", Kind::ClientId),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
    WORKING_PARAMS[0],
    WORKING_PARAMS[1],
    WORKING_PARAMS[2],
    WORKING_PARAMS[3],
    WORKING_PARAMS[4],
    WORKING_PARAMS[5],
    WORKING_PARAMS[6],
    WORKING_PARAMS[7],
    WORKING_PARAMS[8],
    req("pendingType", Kind::Enum(SPOT_TYPES)),
    req("pendingSide", Kind::Enum(SIDES)),
    opt("pendingClientOrderId", Kind::ClientId),
    opt("pendingPrice", Kind::Decimal),
    opt("pendingStopPrice", Kind::Decimal),
    opt("pendingTrailingDelta", Kind::Int),
    req("pendingQuantity", Kind::Decimal),
    opt("pendingIcebergQty", Kind::Decimal),
    opt("pendingTimeInForce", Kind::Enum(SPOT_TIF)),
    opt("pendingStrategyId", Kind::Int),
    opt("pendingStrategyType", Kind::Int),
];

const OTO_LEGS: &[Leg] = &[
    WORKING_LEG,
    Leg {
        quantity: Some("pendingQuantity"),
        price: Some("pendingPrice"),
        trigger: Some("pendingStopPrice"),
        trailing: Some("pendingTrailingDelta"),
        client_id: Some("pendingClientOrderId"),
        ..Leg::new("pendingSide", TypeSource::Param("pendingType"))
    },
];

const OTOCO: &[Param] = &[
    SYMBOL,
    opt("listClientOrderId", Kind::ClientId),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
    WORKING_PARAMS[0],
    WORKING_PARAMS[1],
    WORKING_PARAMS[2],
    WORKING_PARAMS[3],
    WORKING_PARAMS[4],
    WORKING_PARAMS[5],
    WORKING_PARAMS[6],
    WORKING_PARAMS[7],
    WORKING_PARAMS[8],
    req("pendingSide", Kind::Enum(SIDES)),
    req("pendingQuantity", Kind::Decimal),
    req("pendingAboveType", Kind::Enum(OCO_TYPES)),
    opt("pendingAboveClientOrderId", Kind::ClientId),
    opt("pendingAbovePrice", Kind::Decimal),
    opt("pendingAboveStopPrice", Kind::Decimal),
    opt("pendingAboveTrailingDelta", Kind::Int),
    opt("pendingAboveIcebergQty", Kind::Decimal),
    opt("pendingAboveTimeInForce", Kind::Enum(SPOT_TIF)),
    opt("pendingAboveStrategyId", Kind::Int),
    opt("pendingAboveStrategyType", Kind::Int),
    opt("pendingBelowType", Kind::Enum(OCO_TYPES)),
    opt("pendingBelowClientOrderId", Kind::ClientId),
    opt("pendingBelowPrice", Kind::Decimal),
    opt("pendingBelowStopPrice", Kind::Decimal),
    opt("pendingBelowTrailingDelta", Kind::Int),
    opt("pendingBelowIcebergQty", Kind::Decimal),
    opt("pendingBelowTimeInForce", Kind::Enum(SPOT_TIF)),
    opt("pendingBelowStrategyId", Kind::Int),
    opt("pendingBelowStrategyType", Kind::Int),
];

const OTOCO_LEGS: &[Leg] = &[
    WORKING_LEG,
    Leg {
        quantity: Some("pendingQuantity"),
        price: Some("pendingAbovePrice"),
        trigger: Some("pendingAboveStopPrice"),
        trailing: Some("pendingAboveTrailingDelta"),
        client_id: Some("pendingAboveClientOrderId"),
        ..Leg::new("pendingSide", TypeSource::Param("pendingAboveType"))
    },
    Leg {
        quantity: Some("pendingQuantity"),
        price: Some("pendingBelowPrice"),
        trigger: Some("pendingBelowStopPrice"),
        trailing: Some("pendingBelowTrailingDelta"),
        client_id: Some("pendingBelowClientOrderId"),
        optional: true,
        ..Leg::new("pendingSide", TypeSource::Param("pendingBelowType"))
    },
];

const SOR_ORDER: &[Param] = &[
    SYMBOL,
    req("side", Kind::Enum(SIDES)),
    req("type", Kind::Enum(SOR_TYPES)),
    opt("timeInForce", Kind::Enum(SPOT_TIF)),
    req("quantity", Kind::Decimal),
    opt("price", Kind::Decimal),
    opt("newClientOrderId", Kind::ClientId),
    opt("strategyId", Kind::Int),
    opt("strategyType", Kind::Int),
    opt("icebergQty", Kind::Decimal),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
];

const SOR_TEST_ORDER: &[Param] = &[
    SYMBOL,
    req("side", Kind::Enum(SIDES)),
    req("type", Kind::Enum(SOR_TYPES)),
    opt("timeInForce", Kind::Enum(SPOT_TIF)),
    req("quantity", Kind::Decimal),
    opt("price", Kind::Decimal),
    opt("newClientOrderId", Kind::ClientId),
    opt("strategyId", Kind::Int),
    opt("strategyType", Kind::Int),
    opt("icebergQty", Kind::Decimal),
    opt("newOrderRespType", Kind::Enum(SPOT_RESPONSE)),
    opt("selfTradePreventionMode", Kind::Enum(SPOT_STP)),
    opt("computeCommissionRates", Kind::Bool),
];

const SOR_LEG: Leg = Leg {
    quantity: Some("quantity"),
    price: Some("price"),
    client_id: Some("newClientOrderId"),
    ..Leg::new("side", TypeSource::Param("type"))
};

const KLINES: &[Param] = &[
    SYMBOL,
    req("interval", Kind::Enum(INTERVALS)),
    START_OPT,
    END_OPT,
    opt("timeZone", Kind::TimeZone),
    LIMIT_OPT,
];

/// Binance spot, `/api/v3`.
pub(super) static SPOT_ENDPOINTS: [EndpointSpec; 46] = [
    // Public market data.
    endpoint!(GET "/api/v3/ping", Market, Public, &[]),
    endpoint!(GET "/api/v3/time", Market, Public, &[]),
    endpoint!(GET "/api/v3/exchangeInfo", Market, Public, SPOT_EXCHANGE_INFO),
    endpoint!(GET "/api/v3/depth", Market, Public, &[SYMBOL, LIMIT_OPT]),
    endpoint!(GET "/api/v3/trades", Market, Public, &[SYMBOL, LIMIT_OPT]),
    endpoint!(GET "/api/v3/historicalTrades", Market, ApiKey, &[SYMBOL, LIMIT_OPT, FROM_ID_OPT]),
    endpoint!(GET "/api/v3/aggTrades", Market, Public, &[SYMBOL, FROM_ID_OPT, START_OPT, END_OPT, LIMIT_OPT]),
    endpoint!(GET "/api/v3/klines", Market, Public, KLINES),
    endpoint!(GET "/api/v3/uiKlines", Market, Public, KLINES),
    endpoint!(GET "/api/v3/avgPrice", Market, Public, &[SYMBOL]),
    endpoint!(GET "/api/v3/ticker/24hr", Market, Public, &[
        SYMBOL_OPT,
        SYMBOLS_OPT,
        opt("type", Kind::Enum(TICKER_TYPES)),
    ]),
    endpoint!(GET "/api/v3/ticker/tradingDay", Market, Public, &[
        SYMBOL_OPT,
        SYMBOLS_OPT,
        opt("timeZone", Kind::TimeZone),
        opt("type", Kind::Enum(TICKER_TYPES)),
    ]),
    endpoint!(GET "/api/v3/ticker/price", Market, Public, &[SYMBOL_OPT, SYMBOLS_OPT]),
    endpoint!(GET "/api/v3/ticker/bookTicker", Market, Public, &[SYMBOL_OPT, SYMBOLS_OPT]),
    endpoint!(GET "/api/v3/ticker", Market, Public, &[
        SYMBOL_OPT,
        SYMBOLS_OPT,
        opt("windowSize", Kind::WindowSize),
        opt("type", Kind::Enum(TICKER_TYPES)),
    ]),
    // The other product families' exchange information (each is sent to its own
    // family's host), which clients load with the spot markets.
    endpoint!(GET "/fapi/v1/exchangeInfo", Market, Public, &[]),
    endpoint!(GET "/dapi/v1/exchangeInfo", Market, Public, &[]),
    endpoint!(GET "/eapi/v1/exchangeInfo", Market, Public, &[]),
    // The read-only `/sapi/` endpoints clients call while loading markets, currencies
    // and fees (docs/venues/binance.md, "The /sapi/ tree"). Nothing else under `/sapi/` is served.
    endpoint!(GET "/sapi/v1/system/status", Market, Public, &[]),
    endpoint!(GET "/sapi/v1/margin/allPairs", Market, ApiKey, &[SYMBOL_OPT]),
    endpoint!(GET "/sapi/v1/margin/isolated/allPairs", Market, Signed, &[SYMBOL_OPT]),
    endpoint!(GET "/sapi/v1/capital/config/getall", Read, Signed, &[]),
    endpoint!(GET "/sapi/v1/asset/tradeFee", Read, Signed, &[SYMBOL_OPT]),
    // Private reads.
    endpoint!(GET "/api/v3/account", Read, Signed, &[opt("omitZeroBalances", Kind::Bool)]),
    endpoint!(GET "/api/v3/order", Read, Signed, &[SYMBOL, ORDER_ID_OPT, ORIG_CLIENT_ID_OPT]),
    endpoint!(GET "/api/v3/openOrders", Read, Signed, &[SYMBOL_OPT]),
    endpoint!(GET "/api/v3/allOrders", Read, Signed, &[SYMBOL, ORDER_ID_OPT, START_OPT, END_OPT, LIMIT_OPT]),
    endpoint!(GET "/api/v3/myTrades", Read, Signed, &[
        SYMBOL,
        ORDER_ID_OPT,
        START_OPT,
        END_OPT,
        FROM_ID_OPT,
        LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v3/rateLimit/order", Read, Signed, &[]),
    endpoint!(GET "/api/v3/myPreventedMatches", Read, Signed, &[
        SYMBOL,
        opt("preventedMatchId", Kind::Int),
        ORDER_ID_OPT,
        opt("fromPreventedMatchId", Kind::Int),
        LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v3/myAllocations", Read, Signed, &[
        SYMBOL,
        START_OPT,
        END_OPT,
        opt("fromAllocationId", Kind::Int),
        LIMIT_OPT,
        ORDER_ID_OPT,
    ]),
    endpoint!(GET "/api/v3/account/commission", Read, Signed, &[SYMBOL]),
    endpoint!(GET "/api/v3/orderList", Read, Signed, &[opt("orderListId", Kind::Int), ORIG_CLIENT_ID_OPT]),
    endpoint!(GET "/api/v3/allOrderList", Read, Signed, &[FROM_ID_OPT, START_OPT, END_OPT, LIMIT_OPT]),
    endpoint!(GET "/api/v3/openOrderList", Read, Signed, &[]),
    // Orders.
    endpoint!(POST "/api/v3/order", Trade, Signed, SPOT_ORDER, Shape::Legs(&[SPOT_ORDER_LEG])),
    endpoint!(POST "/api/v3/order/test", Trade, Signed, SPOT_TEST_ORDER, Shape::Legs(&[SPOT_ORDER_LEG])),
    endpoint!(POST "/api/v3/order/cancelReplace", Trade, Signed, CANCEL_REPLACE, Shape::Legs(&[SPOT_ORDER_LEG])),
    endpoint!(POST "/api/v3/orderList/oco", Trade, Signed, OCO, Shape::Legs(OCO_LEGS)),
    endpoint!(POST "/api/v3/orderList/oto", Trade, Signed, OTO, Shape::Legs(OTO_LEGS)),
    endpoint!(POST "/api/v3/orderList/otoco", Trade, Signed, OTOCO, Shape::Legs(OTOCO_LEGS)),
    endpoint!(POST "/api/v3/sor/order", Trade, Signed, SOR_ORDER, Shape::Legs(&[SOR_LEG])),
    endpoint!(POST "/api/v3/sor/order/test", Trade, Signed, SOR_TEST_ORDER, Shape::Legs(&[SOR_LEG])),
    // Cancels.
    endpoint!(DELETE "/api/v3/order", Cancel, Signed, &[
        SYMBOL,
        ORDER_ID_OPT,
        ORIG_CLIENT_ID_OPT,
        opt("newClientOrderId", Kind::ClientId),
        opt("cancelRestrictions", Kind::Enum(CANCEL_RESTRICTIONS)),
    ]),
    endpoint!(DELETE "/api/v3/openOrders", Cancel, Signed, &[SYMBOL]),
    endpoint!(DELETE "/api/v3/orderList", Cancel, Signed, &[
        SYMBOL,
        opt("orderListId", Kind::Int),
        opt("listClientOrderId", Kind::ClientId),
        opt("newClientOrderId", Kind::ClientId),
    ]),
];

// === USDⓈ-M futures ===

const USDM_TYPES: &[&str] = &[
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
];
const USDM_TIF: &[&str] = &["GTC", "IOC", "FOK", "GTX", "GTD"];
const POSITION_SIDES: &[&str] = &["BOTH", "LONG", "SHORT"];
const USDM_STP: &[&str] = &["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"];
const CONTRACT_TYPES: &[&str] = &["PERPETUAL", "CURRENT_QUARTER", "NEXT_QUARTER"];
const INCOME_TYPES: &[&str] = &[
    "TRANSFER",
    "WELCOME_BONUS",
    "REALIZED_PNL",
    "FUNDING_FEE",
    "COMMISSION",
    "INSURANCE_CLEAR",
    "REFERRAL_KICKBACK",
    "COMMISSION_REBATE",
    "API_REBATE",
    "CONTEST_REWARD",
    "CROSS_COLLATERAL_TRANSFER",
    "OPTIONS_PREMIUM_FEE",
    "OPTIONS_SETTLE_PROFIT",
    "INTERNAL_TRANSFER",
    "AUTO_EXCHANGE",
    "DELIVERED_SETTELMENT",
    "COIN_SWAP_DEPOSIT",
    "COIN_SWAP_WITHDRAW",
    "POSITION_LIMIT_INCREASE_FEE",
    "STRATEGY_UMFUTURES_TRANSFER",
    "FEE_RETURN",
    "BFUSD_REWARD",
];

/// USDⓈ-M order types and how each executes.
pub(super) const USDM_ORDER_TYPES: &[OrderTypeSpec] = &[
    OrderTypeSpec {
        name: "LIMIT",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "MARKET",
        execution: Execution::Market,
    },
    OrderTypeSpec {
        name: "STOP",
        execution: Execution::StopLimit,
    },
    OrderTypeSpec {
        name: "TAKE_PROFIT",
        execution: Execution::StopLimit,
    },
    OrderTypeSpec {
        name: "STOP_MARKET",
        execution: Execution::StopMarket,
    },
    OrderTypeSpec {
        name: "TAKE_PROFIT_MARKET",
        execution: Execution::StopMarket,
    },
    OrderTypeSpec {
        name: "TRAILING_STOP_MARKET",
        execution: Execution::TrailingMarket,
    },
];

/// A futures order; also the element schema of `batchOrders`.
const USDM_ORDER: &[Param] = &[
    SYMBOL,
    req("side", Kind::Enum(SIDES)),
    req("type", Kind::Enum(USDM_TYPES)),
    opt("quantity", Kind::Decimal),
    opt("price", Kind::Decimal),
    opt("timeInForce", Kind::Enum(USDM_TIF)),
    opt("positionSide", Kind::Enum(POSITION_SIDES)),
    opt("reduceOnly", Kind::Bool),
    opt("newClientOrderId", Kind::ClientId),
    opt("stopPrice", Kind::Decimal),
    opt("closePosition", Kind::Bool),
    opt("activationPrice", Kind::Decimal),
    opt("callbackRate", Kind::Decimal),
    opt("workingType", Kind::Enum(&["MARK_PRICE", "CONTRACT_PRICE"])),
    opt("priceProtect", Kind::Bool),
    opt("newOrderRespType", Kind::Enum(&["ACK", "RESULT"])),
    opt("selfTradePreventionMode", Kind::Enum(USDM_STP)),
    opt("goodTillDate", Kind::Int),
];

static USDM_ORDER_LEG: Leg = Leg {
    quantity: Some("quantity"),
    price: Some("price"),
    trigger: Some("stopPrice"),
    trailing: Some("callbackRate"),
    close_position: Some("closePosition"),
    reduce_only: Some("reduceOnly"),
    client_id: Some("newClientOrderId"),
    ..Leg::new("side", TypeSource::Param("type"))
};

/// A futures modify (only limit orders can be modified); also the element schema of
/// `PUT batchOrders`.
const USDM_MODIFY: &[Param] = &[
    SYMBOL,
    req("side", Kind::Enum(SIDES)),
    req("quantity", Kind::Decimal),
    req("price", Kind::Decimal),
    ORDER_ID_OPT,
    ORIG_CLIENT_ID_OPT,
];

static USDM_MODIFY_LEG: Leg = Leg {
    quantity: Some("quantity"),
    price: Some("price"),
    amend: true,
    ..Leg::new("side", TypeSource::Fixed("LIMIT"))
};

const BATCH_MAX: usize = 5;

/// Binance USDⓈ-M futures, `/fapi`.
pub(super) static USDM_ENDPOINTS: [EndpointSpec; 64] = [
    // Public market data.
    endpoint!(GET "/fapi/v1/ping", Market, Public, &[]),
    endpoint!(GET "/fapi/v1/time", Market, Public, &[]),
    endpoint!(GET "/fapi/v1/exchangeInfo", Market, Public, &[]),
    endpoint!(GET "/fapi/v1/depth", Market, Public, &[SYMBOL, LIMIT_OPT]),
    endpoint!(GET "/fapi/v1/trades", Market, Public, &[SYMBOL, LIMIT_OPT]),
    endpoint!(GET "/fapi/v1/historicalTrades", Market, ApiKey, &[SYMBOL, LIMIT_OPT, FROM_ID_OPT]),
    endpoint!(GET "/fapi/v1/aggTrades", Market, Public, &[SYMBOL, FROM_ID_OPT, START_OPT, END_OPT, LIMIT_OPT]),
    endpoint!(GET "/fapi/v1/klines", Market, Public, &[
        SYMBOL,
        req("interval", Kind::Enum(INTERVALS)),
        START_OPT,
        END_OPT,
        LIMIT_OPT,
    ]),
    endpoint!(GET "/fapi/v1/continuousKlines", Market, Public, &[
        req("pair", Kind::Symbol),
        req("contractType", Kind::Enum(CONTRACT_TYPES)),
        req("interval", Kind::Enum(INTERVALS)),
        START_OPT,
        END_OPT,
        LIMIT_OPT,
    ]),
    endpoint!(GET "/fapi/v1/indexPriceKlines", Market, Public, &[
        req("pair", Kind::Symbol),
        req("interval", Kind::Enum(INTERVALS)),
        START_OPT,
        END_OPT,
        LIMIT_OPT,
    ]),
    endpoint!(GET "/fapi/v1/markPriceKlines", Market, Public, &[
        SYMBOL,
        req("interval", Kind::Enum(INTERVALS)),
        START_OPT,
        END_OPT,
        LIMIT_OPT,
    ]),
    endpoint!(GET "/fapi/v1/premiumIndex", Market, Public, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v1/fundingRate", Market, Public, &[SYMBOL_OPT, START_OPT, END_OPT, LIMIT_OPT]),
    endpoint!(GET "/fapi/v1/fundingInfo", Market, Public, &[]),
    endpoint!(GET "/fapi/v1/ticker/24hr", Market, Public, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v1/ticker/price", Market, Public, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v2/ticker/price", Market, Public, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v1/ticker/bookTicker", Market, Public, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v1/openInterest", Market, Public, &[SYMBOL]),
    // The other product families' exchange information, and the `/sapi/` reads,
    // as on spot: clients of USDⓈ-M load them too, with the same API key.
    endpoint!(GET "/api/v3/exchangeInfo", Market, Public, SPOT_EXCHANGE_INFO),
    endpoint!(GET "/dapi/v1/exchangeInfo", Market, Public, &[]),
    endpoint!(GET "/eapi/v1/exchangeInfo", Market, Public, &[]),
    endpoint!(GET "/sapi/v1/system/status", Market, Public, &[]),
    endpoint!(GET "/sapi/v1/margin/allPairs", Market, ApiKey, &[SYMBOL_OPT]),
    endpoint!(GET "/sapi/v1/margin/isolated/allPairs", Market, Signed, &[SYMBOL_OPT]),
    endpoint!(GET "/sapi/v1/capital/config/getall", Read, Signed, &[]),
    endpoint!(GET "/sapi/v1/asset/tradeFee", Read, Signed, &[SYMBOL_OPT]),
    // Private reads.
    endpoint!(GET "/fapi/v2/account", Read, Signed, &[]),
    endpoint!(GET "/fapi/v3/account", Read, Signed, &[]),
    endpoint!(GET "/fapi/v2/balance", Read, Signed, &[]),
    endpoint!(GET "/fapi/v3/balance", Read, Signed, &[]),
    endpoint!(GET "/fapi/v2/positionRisk", Read, Signed, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v3/positionRisk", Read, Signed, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v1/openOrders", Read, Signed, &[SYMBOL_OPT]),
    // The user data stream's key: answered by keyward with a key of its own that
    // stands for the bot (see `stream::ListenKeyOp`), never forwarded.
    endpoint!(POST "/fapi/v1/listenKey", Read, ApiKey, &[]),
    endpoint!(PUT "/fapi/v1/listenKey", Read, ApiKey, &[]),
    endpoint!(DELETE "/fapi/v1/listenKey", Read, ApiKey, &[]),
    endpoint!(GET "/fapi/v1/openOrder", Read, Signed, &[SYMBOL, ORDER_ID_OPT, ORIG_CLIENT_ID_OPT]),
    endpoint!(GET "/fapi/v1/order", Read, Signed, &[SYMBOL, ORDER_ID_OPT, ORIG_CLIENT_ID_OPT]),
    endpoint!(GET "/fapi/v1/allOrders", Read, Signed, &[SYMBOL, ORDER_ID_OPT, START_OPT, END_OPT, LIMIT_OPT]),
    endpoint!(GET "/fapi/v1/userTrades", Read, Signed, &[
        SYMBOL,
        ORDER_ID_OPT,
        START_OPT,
        END_OPT,
        FROM_ID_OPT,
        LIMIT_OPT,
    ]),
    endpoint!(GET "/fapi/v1/leverageBracket", Read, Signed, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v1/positionSide/dual", Read, Signed, &[]),
    endpoint!(GET "/fapi/v1/multiAssetsMargin", Read, Signed, &[]),
    endpoint!(GET "/fapi/v1/commissionRate", Read, Signed, &[SYMBOL]),
    endpoint!(GET "/fapi/v1/income", Read, Signed, &[
        SYMBOL_OPT,
        opt("incomeType", Kind::Enum(INCOME_TYPES)),
        START_OPT,
        END_OPT,
        opt("page", Kind::Int),
        LIMIT_OPT,
    ]),
    endpoint!(GET "/fapi/v1/rateLimit/order", Read, Signed, &[]),
    endpoint!(GET "/fapi/v1/symbolConfig", Read, Signed, &[SYMBOL_OPT]),
    endpoint!(GET "/fapi/v1/accountConfig", Read, Signed, &[]),
    endpoint!(GET "/fapi/v1/adlQuantile", Read, Signed, &[SYMBOL_OPT]),
    // Orders.
    endpoint!(POST "/fapi/v1/order", Trade, Signed, USDM_ORDER, Shape::Legs(std::slice::from_ref(&USDM_ORDER_LEG))),
    endpoint!(POST "/fapi/v1/order/test", Trade, Signed, USDM_ORDER, Shape::Legs(std::slice::from_ref(&USDM_ORDER_LEG))),
    endpoint!(PUT "/fapi/v1/order", Trade, Signed, USDM_MODIFY, Shape::Legs(std::slice::from_ref(&USDM_MODIFY_LEG))),
    endpoint!(POST "/fapi/v1/batchOrders", Trade, Signed, &[req("batchOrders", Kind::Batch)], Shape::Batch {
        param: "batchOrders",
        max: BATCH_MAX,
        element: USDM_ORDER,
        leg: &USDM_ORDER_LEG,
    }),
    endpoint!(PUT "/fapi/v1/batchOrders", Trade, Signed, &[req("batchOrders", Kind::Batch)], Shape::Batch {
        param: "batchOrders",
        max: BATCH_MAX,
        element: USDM_MODIFY,
        leg: &USDM_MODIFY_LEG,
    }),
    // Cancels.
    endpoint!(DELETE "/fapi/v1/order", Cancel, Signed, &[SYMBOL, ORDER_ID_OPT, ORIG_CLIENT_ID_OPT]),
    endpoint!(DELETE "/fapi/v1/batchOrders", Cancel, Signed, &[
        SYMBOL,
        opt("orderIdList", Kind::IntList),
        opt("origClientOrderIdList", Kind::ClientIdList),
    ]),
    endpoint!(DELETE "/fapi/v1/allOpenOrders", Cancel, Signed, &[SYMBOL]),
    endpoint!(POST "/fapi/v1/countdownCancelAll", Cancel, Signed, &[SYMBOL, req("countdownTime", Kind::Int)]),
    // Risk settings.
    endpoint!(POST "/fapi/v1/leverage", Configure, Signed, &[SYMBOL, req("leverage", Kind::Int)]),
    endpoint!(POST "/fapi/v1/marginType", Configure, Signed, &[
        SYMBOL,
        req("marginType", Kind::Enum(&["ISOLATED", "CROSSED"])),
    ]),
    endpoint!(POST "/fapi/v1/positionSide/dual", Configure, Signed, &[req("dualSidePosition", Kind::Bool)]),
    endpoint!(POST "/fapi/v1/multiAssetsMargin", Configure, Signed, &[req("multiAssetsMargin", Kind::Bool)]),
    endpoint!(POST "/fapi/v1/positionMargin", Configure, Signed, &[
        SYMBOL,
        opt("positionSide", Kind::Enum(POSITION_SIDES)),
        req("amount", Kind::Decimal),
        req("type", Kind::Enum(&["1", "2"])),
    ]),
];
