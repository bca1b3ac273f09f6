//! The Coinbase Advanced Trade (`/api/v3/brokerage`) endpoint catalogue: each
//! endpoint's class and security, its query parameters (arrays are repeated keys, as
//! the official SDK sends them), its path parameter and its JSON body shape.
//!
//! Sources: the official SDK's REST functions (coinbase-advanced-py 1.8.4), ccxt's
//! endpoint table and the Advanced Trade reference, as summarised in the research
//! notes. Endpoints the notes could not confirm (attached orders, bracket orders,
//! quote-sized limit orders) are absent on purpose: keyward refuses them.

use http::Method;
use keyward_policy::{EndpointClass, Execution};

use crate::schema::{EndpointSpec, Leg, OrderTypeSpec, Security, Shape, TypeSource};

/// The JSON body an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// None (GET): an empty body, or exactly `{}` which the official SDK sends.
    None,
    /// `POST /orders`: a new order with `client_order_id`.
    Order,
    /// `POST /orders/preview`: a new order without `client_order_id`.
    Preview,
    /// `POST /orders/edit` and `edit_preview`: `order_id`, `price`, `size`.
    Edit,
    /// `POST /orders/batch_cancel`: `order_ids`.
    BatchCancel,
}

/// The grammar of one query or path value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value {
    /// A product id such as `BTC-USD` (what operators list in `symbols`).
    Product,
    /// An order, account, trade or portfolio id: 1 to 64 of `[A-Za-z0-9-]`.
    Id,
    /// A non-negative integer without leading zeros.
    Int,
    /// `true`/`false`; the SDK sends Python's `True`/`False`, forwarded lowercase.
    Bool,
    /// An RFC 3339 timestamp (digits, `-`, `:`, `T`, `Z`, `.`, `+`).
    Time,
    /// An opaque pagination cursor: 1 to 256 of `[A-Za-z0-9_=+/-]`.
    Cursor,
    /// A plain decimal.
    Decimal,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
}

/// One accepted query parameter.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueryParam {
    pub name: &'static str,
    pub value: Value,
    pub required: bool,
    /// True if it may repeat (an array).
    pub array: bool,
}

const fn q(name: &'static str, value: Value) -> QueryParam {
    QueryParam {
        name,
        value,
        required: false,
        array: false,
    }
}

const fn req(name: &'static str, value: Value) -> QueryParam {
    QueryParam {
        name,
        value,
        required: true,
        array: false,
    }
}

const fn list(name: &'static str, value: Value) -> QueryParam {
    QueryParam {
        name,
        value,
        required: false,
        array: true,
    }
}

/// What keyward knows about an endpoint beyond its [`EndpointSpec`].
#[derive(Debug)]
pub(super) struct Detail {
    pub key: &'static str,
    pub query: &'static [QueryParam],
    /// The `{name}` segment of the path and its grammar.
    pub path_param: Option<(&'static str, Value)>,
    pub body: Body,
}

macro_rules! endpoint {
    // The Coinbase App's public v2 reads, outside the brokerage prefix.
    (app $method:ident $path:literal, $class:ident, $security:ident) => {
        EndpointSpec {
            key: concat!(stringify!($method), " ", $path),
            method: Method::$method,
            path: $path,
            class: EndpointClass::$class,
            security: Security::$security,
            params: &[],
            shape: Shape::NoOrders,
        }
    };
    ($method:ident $path:literal, $class:ident, $security:ident) => {
        endpoint!($method $path, $class, $security, Shape::NoOrders)
    };
    ($method:ident $path:literal, $class:ident, $security:ident, $shape:expr) => {
        EndpointSpec {
            key: concat!(stringify!($method), " /api/v3/brokerage", $path),
            method: Method::$method,
            path: concat!("/api/v3/brokerage", $path),
            class: EndpointClass::$class,
            security: Security::$security,
            params: &[],
            shape: $shape,
        }
    };
}

macro_rules! detail {
    (app $method:ident $path:literal, $query:expr) => {
        Detail {
            key: concat!(stringify!($method), " ", $path),
            query: $query,
            path_param: None,
            body: Body::None,
        }
    };
    ($method:ident $path:literal, $query:expr, $path_param:expr, $body:ident) => {
        Detail {
            key: concat!(stringify!($method), " /api/v3/brokerage", $path),
            query: $query,
            path_param: $path_param,
            body: Body::$body,
        }
    };
}

const PRODUCT_TYPES: &[&str] = &["SPOT", "FUTURE", "UNKNOWN_PRODUCT_TYPE"];
const EXPIRY_TYPES: &[&str] = &["UNKNOWN_CONTRACT_EXPIRY_TYPE", "EXPIRING", "PERPETUAL"];
const EXPIRING_STATUS: &[&str] = &[
    "UNKNOWN_EXPIRING_CONTRACT_STATUS",
    "STATUS_UNEXPIRED",
    "STATUS_EXPIRED",
    "STATUS_ALL",
];
const GRANULARITIES: &[&str] = &[
    "UNKNOWN_GRANULARITY",
    "ONE_MINUTE",
    "FIVE_MINUTE",
    "FIFTEEN_MINUTE",
    "THIRTY_MINUTE",
    "ONE_HOUR",
    "TWO_HOUR",
    "SIX_HOUR",
    "ONE_DAY",
];
const ORDER_STATUS: &[&str] = &[
    "OPEN",
    "PENDING",
    "FILLED",
    "CANCELLED",
    "EXPIRED",
    "FAILED",
    "UNKNOWN_ORDER_STATUS",
    "QUEUED",
    "CANCEL_QUEUED",
];
const ORDER_TYPES_QUERY: &[&str] = &[
    "UNKNOWN_ORDER_TYPE",
    "MARKET",
    "LIMIT",
    "STOP",
    "STOP_LIMIT",
    "BRACKET",
];
const SIDES: &[&str] = &["BUY", "SELL"];
const PLACEMENT: &[&str] = &[
    "UNKNOWN_PLACEMENT_SOURCE",
    "RETAIL_SIMPLE",
    "RETAIL_ADVANCED",
];
const TIME_IN_FORCE: &[&str] = &[
    "UNKNOWN_TIME_IN_FORCE",
    "GOOD_UNTIL_DATE_TIME",
    "GOOD_UNTIL_CANCELLED",
    "IMMEDIATE_OR_CANCEL",
    "FILL_OR_KILL",
];
const SORT_BY: &[&str] = &[
    "UNKNOWN_SORT_BY",
    "LIMIT_PRICE",
    "LAST_FILL_TIME",
    "PRICE",
    "TRADE_TIME",
];
const PRODUCT_VENUES: &[&str] = &["UNKNOWN_VENUE_TYPE", "CBE", "FCM", "INTX"];

const PRODUCTS_QUERY: &[QueryParam] = &[
    q("limit", Value::Int),
    q("offset", Value::Int),
    q("product_type", Value::Enum(PRODUCT_TYPES)),
    list("product_ids", Value::Product),
    q("contract_expiry_type", Value::Enum(EXPIRY_TYPES)),
    q("expiring_contract_status", Value::Enum(EXPIRING_STATUS)),
    q("get_tradability_status", Value::Bool),
    q("get_all_products", Value::Bool),
];
const MARKET_PRODUCTS_QUERY: &[QueryParam] = &[
    q("limit", Value::Int),
    q("offset", Value::Int),
    q("product_type", Value::Enum(PRODUCT_TYPES)),
    list("product_ids", Value::Product),
    q("contract_expiry_type", Value::Enum(EXPIRY_TYPES)),
    q("expiring_contract_status", Value::Enum(EXPIRING_STATUS)),
    q("get_all_products", Value::Bool),
];
const CANDLES_QUERY: &[QueryParam] = &[
    req("start", Value::Int),
    req("end", Value::Int),
    req("granularity", Value::Enum(GRANULARITIES)),
    q("limit", Value::Int),
];
const TICKER_QUERY: &[QueryParam] = &[
    q("limit", Value::Int),
    q("start", Value::Int),
    q("end", Value::Int),
];
const BOOK_QUERY: &[QueryParam] = &[
    req("product_id", Value::Product),
    q("limit", Value::Int),
    q("aggregation_price_increment", Value::Decimal),
];
const ACCOUNTS_QUERY: &[QueryParam] = &[
    q("limit", Value::Int),
    q("cursor", Value::Cursor),
    q("retail_portfolio_id", Value::Id),
];
/// ccxt sends the singular `product_id`; the SDK the array `product_ids`.
const ORDERS_QUERY: &[QueryParam] = &[
    list("order_ids", Value::Id),
    list("product_ids", Value::Product),
    q("product_id", Value::Product),
    list("order_status", Value::Enum(ORDER_STATUS)),
    q("limit", Value::Int),
    q("start_date", Value::Time),
    q("end_date", Value::Time),
    list("order_types", Value::Enum(ORDER_TYPES_QUERY)),
    q("order_side", Value::Enum(SIDES)),
    q("cursor", Value::Cursor),
    q("product_type", Value::Enum(PRODUCT_TYPES)),
    q("order_placement_source", Value::Enum(PLACEMENT)),
    q("contract_expiry_type", Value::Enum(EXPIRY_TYPES)),
    list("asset_filters", Value::Product),
    q("retail_portfolio_id", Value::Id),
    list("time_in_forces", Value::Enum(TIME_IN_FORCE)),
    q("sort_by", Value::Enum(SORT_BY)),
];
const FILLS_QUERY: &[QueryParam] = &[
    list("order_ids", Value::Id),
    list("trade_ids", Value::Id),
    list("product_ids", Value::Product),
    q("product_id", Value::Product),
    q("start_sequence_timestamp", Value::Time),
    q("end_sequence_timestamp", Value::Time),
    q("retail_portfolio_id", Value::Id),
    q("limit", Value::Int),
    q("cursor", Value::Cursor),
    q("sort_by", Value::Enum(SORT_BY)),
];
const SUMMARY_QUERY: &[QueryParam] = &[
    q("product_type", Value::Enum(PRODUCT_TYPES)),
    q("contract_expiry_type", Value::Enum(EXPIRY_TYPES)),
    q("product_venue", Value::Enum(PRODUCT_VENUES)),
];

const PRODUCT: Option<(&str, Value)> = Some(("product_id", Value::Product));
const ORDER_ID: Option<(&str, Value)> = Some(("order_id", Value::Id));
const ACCOUNT: Option<(&str, Value)> = Some(("account_uuid", Value::Id));

/// Orders are built by the venue's own reader from the JSON body; the leg only marks
/// the endpoint as order-bearing for grants and `explain`.
const ORDER_LEG: &[Leg] = &[Leg::new("side", TypeSource::Param("order_configuration"))];
const EDIT_LEG: &[Leg] = &[Leg {
    amend: true,
    ..Leg::new("side", TypeSource::Fixed("limit_limit_gtc"))
}];

/// Every catalogued endpoint.
pub(super) static ENDPOINTS: [EndpointSpec; 29] = [
    endpoint!(GET "/time", Market, Public),
    endpoint!(GET "/market/products", Market, Public),
    endpoint!(GET "/market/products/{product_id}", Market, Public),
    endpoint!(GET "/market/products/{product_id}/candles", Market, Public),
    endpoint!(GET "/market/products/{product_id}/ticker", Market, Public),
    endpoint!(GET "/market/product_book", Market, Public),
    endpoint!(GET "/products", Market, Signed),
    endpoint!(GET "/products/{product_id}", Market, Signed),
    endpoint!(GET "/products/{product_id}/candles", Market, Signed),
    endpoint!(GET "/products/{product_id}/ticker", Market, Signed),
    endpoint!(GET "/product_book", Market, Signed),
    endpoint!(GET "/best_bid_ask", Market, Signed),
    endpoint!(GET "/accounts", Read, Signed),
    endpoint!(GET "/accounts/{account_uuid}", Read, Signed),
    endpoint!(GET "/orders/historical/batch", Read, Signed),
    endpoint!(GET "/orders/historical/fills", Read, Signed),
    endpoint!(GET "/orders/historical/{order_id}", Read, Signed),
    endpoint!(GET "/transaction_summary", Read, Signed),
    endpoint!(POST "/orders", Trade, Signed, Shape::Legs(ORDER_LEG)),
    endpoint!(POST "/orders/preview", Trade, Signed, Shape::Legs(ORDER_LEG)),
    endpoint!(POST "/orders/edit", Trade, Signed, Shape::Legs(EDIT_LEG)),
    endpoint!(POST "/orders/edit_preview", Trade, Signed, Shape::Legs(EDIT_LEG)),
    endpoint!(POST "/orders/batch_cancel", Cancel, Signed),
    // Listed last: the path template matcher tries exact paths first anyway.
    endpoint!(GET "/key_permissions", Read, Signed),
    // The Coinbase App's public reads clients load currencies and the time from
    // (ccxt); everything else under /v2/ stays on the floor.
    endpoint!(app GET "/v2/currencies", Market, Public),
    endpoint!(app GET "/v2/currencies/crypto", Market, Public),
    endpoint!(app GET "/v2/exchange-rates", Market, Public),
    endpoint!(app GET "/v2/time", Market, Public),
    // The wallet list with balances, ccxt's fetch_balance: a read of the same
    // accounts `/accounts` lists. Its sub-paths (transactions, addresses) stay floor.
    endpoint!(app GET "/v2/accounts", Read, Signed),
];

/// The query, path and body grammar of each endpoint, by key.
pub(super) static DETAILS: [Detail; 29] = [
    detail!(GET "/time", &[], None, None),
    detail!(GET "/market/products", MARKET_PRODUCTS_QUERY, None, None),
    detail!(GET "/market/products/{product_id}", &[], PRODUCT, None),
    detail!(GET "/market/products/{product_id}/candles", CANDLES_QUERY, PRODUCT, None),
    detail!(GET "/market/products/{product_id}/ticker", TICKER_QUERY, PRODUCT, None),
    detail!(GET "/market/product_book", BOOK_QUERY, None, None),
    detail!(GET "/products", PRODUCTS_QUERY, None, None),
    detail!(GET "/products/{product_id}", &[q("get_tradability_status", Value::Bool)], PRODUCT, None),
    detail!(GET "/products/{product_id}/candles", CANDLES_QUERY, PRODUCT, None),
    detail!(GET "/products/{product_id}/ticker", TICKER_QUERY, PRODUCT, None),
    detail!(GET "/product_book", BOOK_QUERY, None, None),
    detail!(GET "/best_bid_ask", &[list("product_ids", Value::Product)], None, None),
    detail!(GET "/accounts", ACCOUNTS_QUERY, None, None),
    detail!(GET "/accounts/{account_uuid}", &[], ACCOUNT, None),
    detail!(GET "/orders/historical/batch", ORDERS_QUERY, None, None),
    detail!(GET "/orders/historical/fills", FILLS_QUERY, None, None),
    detail!(GET "/orders/historical/{order_id}", &[], ORDER_ID, None),
    detail!(GET "/transaction_summary", SUMMARY_QUERY, None, None),
    detail!(POST "/orders", &[], None, Order),
    detail!(POST "/orders/preview", &[], None, Preview),
    detail!(POST "/orders/edit", &[], None, Edit),
    detail!(POST "/orders/edit_preview", &[], None, Edit),
    detail!(POST "/orders/batch_cancel", &[], None, BatchCancel),
    detail!(GET "/key_permissions", &[], None, None),
    detail!(app GET "/v2/currencies", &[]),
    detail!(app GET "/v2/currencies/crypto", &[]),
    detail!(app GET "/v2/exchange-rates", &[q("currency", Value::Id)]),
    detail!(app GET "/v2/time", &[]),
    detail!(app GET "/v2/accounts", &[
        q("limit", Value::Int),
        q("starting_after", Value::Id),
        q("ending_before", Value::Id),
        q("order", Value::Enum(&["asc", "desc"])),
    ]),
];

/// One `order_configuration` variant: its name (the order type operators list),
/// execution, and fields.
#[derive(Debug)]
pub(super) struct Variant {
    pub name: &'static str,
    pub execution: Execution,
    /// Base size (`base_size`) required; else exactly one of base or quote size.
    pub quote_allowed: bool,
    pub limit_price: bool,
    pub stop_price: bool,
    pub end_time: bool,
    pub post_only: bool,
}

const fn variant(name: &'static str, execution: Execution) -> Variant {
    Variant {
        name,
        execution,
        quote_allowed: false,
        limit_price: true,
        stop_price: false,
        end_time: false,
        post_only: false,
    }
}

/// The `order_configuration` variants keyward understands.
pub(super) static VARIANTS: [Variant; 7] = [
    Variant {
        quote_allowed: true,
        limit_price: false,
        ..variant("market_market_ioc", Execution::Market)
    },
    variant("sor_limit_ioc", Execution::Limit),
    Variant {
        post_only: true,
        ..variant("limit_limit_gtc", Execution::Limit)
    },
    Variant {
        post_only: true,
        end_time: true,
        ..variant("limit_limit_gtd", Execution::Limit)
    },
    variant("limit_limit_fok", Execution::Limit),
    Variant {
        stop_price: true,
        ..variant("stop_limit_stop_limit_gtc", Execution::StopLimit)
    },
    Variant {
        stop_price: true,
        end_time: true,
        ..variant("stop_limit_stop_limit_gtd", Execution::StopLimit)
    },
];

/// The order types, as [`OrderTypeSpec`]s.
pub(super) const ORDER_TYPES: &[OrderTypeSpec] = &[
    OrderTypeSpec {
        name: "market_market_ioc",
        execution: Execution::Market,
    },
    OrderTypeSpec {
        name: "sor_limit_ioc",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "limit_limit_gtc",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "limit_limit_gtd",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "limit_limit_fok",
        execution: Execution::Limit,
    },
    OrderTypeSpec {
        name: "stop_limit_stop_limit_gtc",
        execution: Execution::StopLimit,
    },
    OrderTypeSpec {
        name: "stop_limit_stop_limit_gtd",
        execution: Execution::StopLimit,
    },
];

/// `STOP_DIRECTION_STOP_UP` / `_DOWN`.
pub(super) const STOP_DIRECTIONS: &[&str] = &["STOP_DIRECTION_STOP_UP", "STOP_DIRECTION_STOP_DOWN"];
/// Margin types for leveraged (INTX / futures) orders.
pub(super) const MARGIN_TYPES: &[&str] = &["CROSS", "ISOLATED"];
/// Order sides.
pub(super) const ORDER_SIDES: &[&str] = SIDES;
