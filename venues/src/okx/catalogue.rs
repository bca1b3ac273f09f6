//! The OKX v5 endpoint catalogue (`/api/v5`): market data, account and order reads,
//! order placement, amendment and cancellation, single and batched.
//!
//! OKX reads [`Kind`]s with its own grammars (see `validate` in the parent module):
//! `Symbol` is an instrument id such as `BTC-USDT` or `BTC-USDT-SWAP` (only `instId`
//! names a symbol of the intent), `ClientId` is OKX's 1 to 32 letters and digits, and
//! `SymbolList` a comma-separated list of currencies. Parameter lists are in the order
//! keyward serialises them, which reproduces the documented signing examples.
//!
//! Deliberately absent: algo orders (`order-algo`), options-only price forms
//! (`pxUsd`, `pxVol`, accepted only empty), attached TP/SL orders (`attachAlgoOrds`,
//! accepted only empty or null), `tradeQuoteCcy`, leverage and position-mode changes.

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

/// Most orders (or cancels, or amends) OKX takes in one batch request.
pub(super) const MAX_BATCH: usize = 20;

pub(super) const SIDES: &[&str] = &["buy", "sell"];
pub(super) const TD_MODES: &[&str] = &["cash", "cross", "isolated", "spot_isolated"];
pub(super) const TGT_CCY: &[&str] = &["base_ccy", "quote_ccy"];
const ORD_TYPES: &[&str] = &[
    "market",
    "limit",
    "post_only",
    "fok",
    "ioc",
    "optimal_limit_ioc",
    "mmp",
    "mmp_and_post_only",
];
const INST_TYPES: &[&str] = &["SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"];
const POS_SIDES: &[&str] = &["long", "short", "net"];
const STP_MODES: &[&str] = &["cancel_maker", "cancel_taker", "cancel_both"];
const PX_AMEND: &[&str] = &["0", "1"];
const ORDER_STATES: &[&str] = &[
    "live",
    "partially_filled",
    "canceled",
    "filled",
    "mmp_canceled",
];
const BARS: &[&str] = &[
    "1s", "1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6H", "12H", "1D", "2D", "3D", "1W",
    "1M", "3M", "6Hutc", "12Hutc", "1Dutc", "2Dutc", "3Dutc", "1Wutc", "1Mutc", "3Mutc",
];
const CATEGORIES: &[&str] = &[
    "twap",
    "adl",
    "full_liquidation",
    "partial_liquidation",
    "delivery",
    "ddh",
    "auto_conversion",
];

/// OKX order types and how each executes. `optimal_limit_ioc` takes the best prices
/// the book offers (futures and swaps), so it is a market order for the policy.
pub(super) const ORDER_TYPES: &[OrderTypeSpec] = &[
    OrderTypeSpec {
        name: "limit",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "post_only",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "fok",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "ioc",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "mmp",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "mmp_and_post_only",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "market",
        execution: Execution::Market,
    },
    OrderTypeSpec {
        name: "optimal_limit_ioc",
        execution: Execution::Market,
    },
];

const INST_ID: Param = req("instId", Kind::Symbol);
const INST_ID_OPT: Param = opt("instId", Kind::Symbol);
const INST_TYPE: Param = req("instType", Kind::Enum(INST_TYPES));
const INST_TYPE_OPT: Param = opt("instType", Kind::Enum(INST_TYPES));
const INST_FAMILY_OPT: Param = opt("instFamily", Kind::Symbol);
const ULY_OPT: Param = opt("uly", Kind::Symbol);
const ORD_ID_OPT: Param = opt("ordId", Kind::Int);
const CL_ORD_ID_OPT: Param = opt("clOrdId", Kind::ClientId);
const AFTER_OPT: Param = opt("after", Kind::Int);
const BEFORE_OPT: Param = opt("before", Kind::Int);
const BEGIN_OPT: Param = opt("begin", Kind::Int);
const END_OPT: Param = opt("end", Kind::Int);
const LIMIT_OPT: Param = opt("limit", Kind::Int);

/// Fields of one new order (`trade/order`, and each element of `batch-orders`).
/// `tag` is absent on purpose: ccxt fills it with its broker id, so keyward strips it
/// like other attribution. `pxUsd`, `pxVol` and `attachAlgoOrds` are read by the
/// parser but accepted only empty.
pub(super) const ORDER: &[Param] = &[
    INST_ID,
    req("tdMode", Kind::Enum(TD_MODES)),
    opt("ccy", Kind::SymbolList),
    CL_ORD_ID_OPT,
    req("side", Kind::Enum(SIDES)),
    opt("posSide", Kind::Enum(POS_SIDES)),
    req("ordType", Kind::Enum(ORD_TYPES)),
    opt("px", Kind::Decimal),
    req("sz", Kind::Decimal),
    opt("tgtCcy", Kind::Enum(TGT_CCY)),
    opt("reduceOnly", Kind::Bool),
    opt("banAmend", Kind::Bool),
    opt("pxAmendType", Kind::Enum(PX_AMEND)),
    opt("stpMode", Kind::Enum(STP_MODES)),
];

const ORDER_LEG: Leg = Leg {
    quantity: Some("sz"),
    price: Some("px"),
    ..Leg::new("side", TypeSource::Param("ordType"))
};

/// Fields of one amend (`trade/amend-order`, and each element of the batch).
/// `newPxUsd`, `newPxVol` and `attachAlgoOrds` are accepted only empty.
pub(super) const AMEND: &[Param] = &[
    INST_ID,
    opt("cxlOnFail", Kind::Bool),
    ORD_ID_OPT,
    CL_ORD_ID_OPT,
    opt("reqId", Kind::ClientId),
    opt("newSz", Kind::Decimal),
    opt("newPx", Kind::Decimal),
    opt("pxAmendType", Kind::Enum(PX_AMEND)),
];

/// An amend does not restate side or type; the parser models it as a limit order on
/// both sides (see `amend_orders` in the parent module).
const AMEND_LEG: Leg = Leg {
    quantity: Some("newSz"),
    price: Some("newPx"),
    amend: true,
    ..Leg::new("side", TypeSource::Fixed("limit"))
};

/// Fields of one cancel.
pub(super) const CANCEL: &[Param] = &[INST_ID, ORD_ID_OPT, CL_ORD_ID_OPT];

/// Every endpoint keyward understands on OKX.
pub(super) static ENDPOINTS: [EndpointSpec; 29] = [
    // Public market data: no key, no signature.
    endpoint!(GET "/api/v5/public/time", Market, Public, &[]),
    endpoint!(GET "/api/v5/public/instruments", Market, Public, &[
        INST_TYPE, ULY_OPT, INST_FAMILY_OPT, INST_ID_OPT,
    ]),
    endpoint!(GET "/api/v5/market/ticker", Market, Public, &[INST_ID]),
    endpoint!(GET "/api/v5/market/tickers", Market, Public, &[
        INST_TYPE, ULY_OPT, INST_FAMILY_OPT,
    ]),
    endpoint!(GET "/api/v5/market/books", Market, Public, &[INST_ID, opt("sz", Kind::Int)]),
    endpoint!(GET "/api/v5/market/candles", Market, Public, &[
        INST_ID, opt("bar", Kind::Enum(BARS)), AFTER_OPT, BEFORE_OPT, LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v5/market/history-candles", Market, Public, &[
        INST_ID, opt("bar", Kind::Enum(BARS)), AFTER_OPT, BEFORE_OPT, LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v5/market/trades", Market, Public, &[INST_ID, LIMIT_OPT]),
    endpoint!(GET "/api/v5/public/mark-price", Market, Public, &[
        INST_TYPE, ULY_OPT, INST_FAMILY_OPT, INST_ID_OPT,
    ]),
    endpoint!(GET "/api/v5/public/funding-rate", Market, Public, &[INST_ID]),
    // Account and order reads.
    endpoint!(GET "/api/v5/account/balance", Read, Signed, &[opt("ccy", Kind::SymbolList)]),
    endpoint!(GET "/api/v5/account/positions", Read, Signed, &[
        INST_TYPE_OPT, INST_ID_OPT, opt("posId", Kind::Int),
    ]),
    endpoint!(GET "/api/v5/account/config", Read, Signed, &[]),
    endpoint!(GET "/api/v5/account/trade-fee", Read, Signed, &[
        INST_TYPE, INST_ID_OPT, ULY_OPT, INST_FAMILY_OPT,
    ]),
    endpoint!(GET "/api/v5/asset/currencies", Read, Signed, &[opt("ccy", Kind::SymbolList)]),
    endpoint!(GET "/api/v5/trade/order", Read, Signed, &[INST_ID, ORD_ID_OPT, CL_ORD_ID_OPT]),
    endpoint!(GET "/api/v5/trade/orders-pending", Read, Signed, &[
        INST_TYPE_OPT, ULY_OPT, INST_FAMILY_OPT, INST_ID_OPT,
        opt("ordType", Kind::Enum(ORD_TYPES)),
        opt("state", Kind::Enum(&["live", "partially_filled"])),
        AFTER_OPT, BEFORE_OPT, LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v5/trade/orders-history", Read, Signed, &[
        INST_TYPE, ULY_OPT, INST_FAMILY_OPT, INST_ID_OPT,
        opt("ordType", Kind::Enum(ORD_TYPES)), opt("state", Kind::Enum(ORDER_STATES)),
        opt("category", Kind::Enum(CATEGORIES)),
        AFTER_OPT, BEFORE_OPT, BEGIN_OPT, END_OPT, LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v5/trade/orders-history-archive", Read, Signed, &[
        INST_TYPE, ULY_OPT, INST_FAMILY_OPT, INST_ID_OPT,
        opt("ordType", Kind::Enum(ORD_TYPES)), opt("state", Kind::Enum(ORDER_STATES)),
        opt("category", Kind::Enum(CATEGORIES)),
        AFTER_OPT, BEFORE_OPT, BEGIN_OPT, END_OPT, LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v5/trade/fills", Read, Signed, &[
        INST_TYPE_OPT, ULY_OPT, INST_FAMILY_OPT, INST_ID_OPT, ORD_ID_OPT,
        opt("subType", Kind::Int), AFTER_OPT, BEFORE_OPT, BEGIN_OPT, END_OPT, LIMIT_OPT,
    ]),
    endpoint!(GET "/api/v5/trade/fills-history", Read, Signed, &[
        INST_TYPE, ULY_OPT, INST_FAMILY_OPT, INST_ID_OPT, ORD_ID_OPT,
        opt("subType", Kind::Int), AFTER_OPT, BEFORE_OPT, BEGIN_OPT, END_OPT, LIMIT_OPT,
    ]),
    // Orders.
    endpoint!(POST "/api/v5/trade/order", Trade, Signed, ORDER, Shape::Legs(&[ORDER_LEG])),
    endpoint!(POST "/api/v5/trade/batch-orders", Trade, Signed, &[], Shape::Batch {
        param: "body",
        max: MAX_BATCH,
        element: ORDER,
        leg: &ORDER_LEG,
    }),
    endpoint!(POST "/api/v5/trade/amend-order", Trade, Signed, AMEND, Shape::Legs(&[AMEND_LEG])),
    endpoint!(POST "/api/v5/trade/amend-batch-orders", Trade, Signed, &[], Shape::Batch {
        param: "body",
        max: MAX_BATCH,
        element: AMEND,
        leg: &AMEND_LEG,
    }),
    endpoint!(POST "/api/v5/trade/cancel-order", Cancel, Signed, CANCEL),
    endpoint!(POST "/api/v5/trade/cancel-batch-orders", Cancel, Signed, &[]),
    // Reads keyward's own housekeeping and ccxt use.
    endpoint!(GET "/api/v5/market/index-tickers", Market, Public, &[
        opt("quoteCcy", Kind::SymbolList), INST_ID_OPT,
    ]),
    endpoint!(GET "/api/v5/account/max-size", Read, Signed, &[
        INST_ID, req("tdMode", Kind::Enum(TD_MODES)), opt("ccy", Kind::SymbolList),
        opt("px", Kind::Decimal),
    ]),
];
