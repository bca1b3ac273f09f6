//! Bybit v5 (spot and linear): the money-movement floor, the strict parser (query
//! strings for GET, one JSON object for POST), the intent of every order-bearing
//! endpoint, and the signer: `X-BAPI-SIGN` = lowercase hex HMAC-SHA256 (or base64
//! RSA-SHA256) over timestamp + API key + receive window + the exact query or body
//! keyward sends.
//!
//! Symbols are keyed on (category, symbol): the same `BTCUSDT` is a spot pair in
//! `category=spot` and a perpetual in `category=linear`, so intents, operators'
//! `symbols` lists and order reports all spell them `spot:BTCUSDT` / `linear:BTCUSDT`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use keyward_policy::{
    Decimal, EndpointClass, Execution, Intent, Order, Permit, Quote, Side, Size, Symbol,
    mentions_token,
};

use crate::form::{self, FormError};
use crate::json::{self, Json, JsonError};
use crate::limits::{Backoff, ExchangeLimit, UsageKind, UsageReport};
use crate::refusal::{Refusal, RefusalClass};
use crate::schema::{self, EndpointSpec, Kind, OrderTypeSpec, Param, Security, Shape};
use crate::sign::{KeyKind, SignError};
use crate::{
    Amend, AmendKind, CallInput, Catalogue, ExchangeOrder, Housekeeping, KeyView, LegResult,
    Listed, Lookup, OrderRef, Outbound, Outcome, ParseError, ParsedCall, Placed, Preview,
    References, SignContext, Venue, VenueId, echo_key, listed,
};

mod catalogue;
pub mod stream;

/// Bybit v5 (`api.bybit.com`).
pub static BYBIT: Bybit = Bybit {
    catalogue: Catalogue::new(&catalogue::ENDPOINTS),
};

/// The header Bybit reads the API key from (and bots put their keyward token in).
pub const KEY_HEADER: &str = "x-bapi-api-key";

/// Bybit's documented IP limit: 600 requests in any 5 seconds. Bybit reports no
/// per-IP usage, only per-endpoint counters (see [`Venue::usage`] below), so this is
/// what the metrics compare against.
const LIMITS: &[ExchangeLimit] = &[ExchangeLimit {
    kind: UsageKind::Weight,
    window: Duration::from_secs(5),
    limit: 600,
}];

/// Bybit answers an IP over its limit with HTTP 403 and bans it for 10 minutes.
const BAN_PAUSE: Duration = Duration::from_secs(600);
/// A 429 (not documented for v5, answered anyway) without `Retry-After`.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);
/// Longest pause a per-endpoint counter's reset time may impose.
const LONGEST_ENDPOINT_PAUSE: Duration = Duration::from_secs(60);

/// The bot's own auth and attribution headers. None is ever forwarded (keyward builds
/// the outbound headers from nothing); these are recorded as stripped. Bybit's
/// broker headers (`Referer`, `X-Referer`) attribute the key's volume to a broker, so
/// a bot must not choose them.
const AUTH_HEADERS: [(&str, &str); 7] = [
    ("x-bapi-sign", "X-BAPI-SIGN"),
    ("x-bapi-timestamp", "X-BAPI-TIMESTAMP"),
    ("x-bapi-recv-window", "X-BAPI-RECV-WINDOW"),
    ("x-bapi-sign-type", "X-BAPI-SIGN-TYPE"),
    ("referer", "Referer"),
    ("x-referer", "X-Referer"),
    ("cdn-request-id", "cdn-request-id"),
];

/// No Bybit endpoint takes more than about 20 parameters.
const MAX_PARAMS: usize = 40;

/// Bybit v5.
#[derive(Debug)]
pub struct Bybit {
    catalogue: Catalogue,
}

/// Path prefixes that move money, borrow, pay, or manage keys and sub-members.
/// Everything under `/v5/asset` and `/v5/user` is refused: no part of either is
/// trading, and a key that can reach them can move funds or widen itself.
const MONEY_PREFIXES: &[&str] = &[
    "/v5/asset/",
    "/v5/fiat/",
    "/v5/earn/",
    "/v5/lending/",
    // crypto-loan/, crypto-loan-common/, crypto-loan-fixed/, crypto-loan-flexible/
    "/v5/crypto-loan",
    "/v5/ins-loan/",
    "/v5/spot-margin-trade/",
    "/v5/spot-cross-margin-trade/",
    "/v5/spot-lever-token/",
    "/v5/broker/",
    "/v5/p2p/",
    "/v5/pay/",
];

/// Exact paths that borrow, repay or move positions between accounts.
const MONEY_PATHS: &[&str] = &[
    "/v5/account/borrow",
    "/v5/account/repay",
    "/v5/account/quick-repayment",
    "/v5/account/no-convert-repay",
    "/v5/position/move-positions",
];

/// The one `/v5/asset/` read keyward serves: coin information (chains, precision,
/// deposit and withdrawal switches), which clients load with the markets.
pub const SERVED_ASSET: &[&str] = &["/v5/asset/coin/query-info"];

/// The key-management read keyward answers itself, from the bot's policy.
const QUERY_API: &str = "GET /v5/user/query-api";

/// API keys, sub-members and their rate limits. `/v5/user/update-api` lets a key
/// widen its own IP binding and permissions.
const KEY_PREFIXES: &[&str] = &["/v5/user/", "/v5/apilimit/"];

impl Venue for Bybit {
    fn id(&self) -> VenueId {
        VenueId::Bybit
    }

    fn streams(&self) -> Option<&'static dyn crate::stream::StreamVenue> {
        Some(&stream::STREAMS)
    }

    fn default_upstream(&self) -> &'static str {
        "https://api.bybit.com"
    }

    fn key_header(&self) -> &'static str {
        KEY_HEADER
    }

    fn catalogue(&self) -> &'static Catalogue {
        &BYBIT.catalogue
    }

    fn order_types(&self) -> &'static [OrderTypeSpec] {
        catalogue::ORDER_TYPES
    }

    fn key_answer(&self, call: &ParsedCall, key: &KeyView<'_>) -> Option<(&'static str, Vec<u8>)> {
        self.answered_by_keyward(call.endpoint)
            .then(|| (JSON, describe_key(key).into_bytes()))
    }

    fn answered_by_keyward(&self, endpoint: &EndpointSpec) -> bool {
        endpoint.key == QUERY_API
    }

    fn floor(&self, method: &Method, path: &str) -> Option<EndpointClass> {
        if method == Method::GET && (SERVED_ASSET.contains(&path) || path == &QUERY_API[4..]) {
            return None;
        }
        if listed(path, &[], KEY_PREFIXES) {
            return Some(EndpointClass::KeyManagement);
        }
        listed(path, MONEY_PATHS, MONEY_PREFIXES).then_some(EndpointClass::MoneyMovement)
    }

    fn parse(
        &self,
        endpoint: &'static EndpointSpec,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        let raw = read_input(endpoint, input)?;
        let mut values: Vec<(&'static Param, Value)> = Vec::with_capacity(raw.len());
        for (key, raw_value) in raw {
            let param = lookup(endpoint.params, &key)?;
            let value = match param.kind {
                Kind::Batch => {
                    let element = batch_schema(endpoint).ok_or(ParseError::ParamUnknown {
                        key: echo_key(&key),
                    })?;
                    Value::List(read_batch(param.name, raw_value, element)?)
                }
                _ => read_value(param, raw_value)?,
            };
            values.push((param, value));
        }
        values.sort_by_key(|(param, _)| position(endpoint.params, param.name));
        require_all(endpoint.params, &values)?;
        let texts: Values<'_> = scalars(&values);
        let category = texts.get("category").copied();
        let mut symbols = Vec::new();
        if let Some(symbol) = texts.get("symbol") {
            symbols.push(intent_symbol(category, symbol)?);
        }
        let mut orders = Vec::new();
        let batch = values.iter().find_map(|(_, v)| match v {
            Value::List(items) => Some(items),
            _ => None,
        });
        let spot = category == Some("spot");
        if let Some(items) = batch {
            let max = if spot {
                catalogue::BATCH_MAX_SPOT
            } else {
                catalogue::BATCH_MAX
            };
            if items.len() > max {
                return Err(ParseError::BatchTooLarge { max });
            }
        }
        let mut refs = References::default();
        match endpoint.path {
            "/v5/order/create" => {
                take_client_id(&texts, orders.len(), &mut refs);
                orders.extend(new_order(category, &texts)?);
            }
            "/v5/order/amend" => {
                let (order, reference) = amend(category, &texts, orders.len())?;
                refs.amends.push(reference);
                orders.push(order);
            }
            "/v5/order/cancel" => refs.cancels.push(order_ref(category, &texts)?),
            "/v5/position/set-leverage" if spot => {
                return Err(ParseError::invalid(
                    "category",
                    "linear (spot has no leverage setting)",
                ));
            }
            _ => {}
        }
        if endpoint.path == "/v5/order/cancel" && !spot && texts.contains_key("orderFilter") {
            return Err(ParseError::invalid(
                "orderFilter",
                "absent on linear cancels (Bybit reads it for spot only)",
            ));
        }
        for item in batch.into_iter().flatten() {
            let element: Values<'_> = scalars(item);
            if let Some(symbol) = element.get("symbol") {
                symbols.push(intent_symbol(category, symbol)?);
            }
            match endpoint.path {
                "/v5/order/create-batch" => {
                    take_client_id(&element, orders.len(), &mut refs);
                    orders.extend(new_order(category, &element)?);
                }
                "/v5/order/amend-batch" => {
                    let (order, reference) = amend(category, &element, orders.len())?;
                    refs.amends.push(reference);
                    orders.push(order);
                }
                _ => refs.cancels.push(order_ref(category, &element)?),
            }
        }
        let (params, body) = canonical(endpoint, &values);
        symbols.sort();
        symbols.dedup();
        Ok(ParsedCall {
            endpoint,
            params,
            body,
            intent: Intent {
                endpoint: endpoint.endpoint_ref(),
                symbols,
                orders,
            },
            stripped: stripped_headers(input.headers),
            refs,
        })
    }

    fn sign(
        &self,
        call: &ParsedCall,
        permit: &Permit,
        context: SignContext<'_>,
    ) -> Result<Outbound, SignError> {
        if permit.endpoint() != call.endpoint.key {
            return Err(SignError::PermitMismatch);
        }
        if self.answered_by_keyward(call.endpoint) {
            return Err(SignError::AnsweredByKeyward);
        }
        let (path_and_query, body) = place(call);
        let mut headers = Vec::new();
        if call.endpoint.security != Security::Public {
            let api_key = context.credential.api_key();
            let timestamp = context.timestamp_ms.to_string();
            let window = context.recv_window_ms.to_string();
            let query;
            let payload = if call.endpoint.method == Method::GET {
                query = query_of(call);
                &query
            } else {
                &body
            };
            let prehash = format!("{timestamp}{api_key}{window}{payload}");
            let signature = signature(context, prehash.as_bytes())?;
            let mut key = HeaderValue::from_str(api_key).map_err(|_| SignError::InvalidApiKey)?;
            key.set_sensitive(true);
            let mut sign = HeaderValue::from_str(&signature).map_err(|_| SignError::Failed)?;
            sign.set_sensitive(true);
            headers.push((HeaderName::from_static(KEY_HEADER), key));
            headers.push((
                HeaderName::from_static("x-bapi-timestamp"),
                HeaderValue::from(context.timestamp_ms),
            ));
            headers.push((
                HeaderName::from_static("x-bapi-recv-window"),
                HeaderValue::from(context.recv_window_ms),
            ));
            headers.push((HeaderName::from_static("x-bapi-sign"), sign));
        }
        if !body.is_empty() {
            headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static(JSON)));
        }
        Ok(Outbound {
            method: call.endpoint.method.clone(),
            path_and_query,
            headers,
            body: body.into_bytes(),
        })
    }

    fn preview(&self, call: &ParsedCall, recv_window_ms: u32) -> Preview {
        let (path_and_query, body) = place(call);
        let mut headers = Vec::new();
        if call.endpoint.security != Security::Public {
            headers.push(format!("{KEY_HEADER}: <the account's API key>"));
            headers.push("x-bapi-timestamp: <keyward's clock>".to_owned());
            headers.push(format!("x-bapi-recv-window: {recv_window_ms}"));
            headers.push(
                "x-bapi-sign: <HMAC-SHA256 of timestamp + API key + recv window + the query or body>"
                    .to_owned(),
            );
        }
        if !body.is_empty() {
            headers.push(format!("content-type: {JSON}"));
        }
        Preview {
            method: call.endpoint.method.clone(),
            path_and_query,
            headers,
            body,
        }
    }

    fn refusal(&self, refusal: &Refusal) -> (&'static str, Vec<u8>) {
        refusal_body(refusal)
    }

    fn refusal_status(&self, refusal: &Refusal) -> StatusCode {
        refusal_status(refusal)
    }

    fn exchange_limits(&self) -> &'static [ExchangeLimit] {
        LIMITS
    }

    /// Bybit's counters (`X-Bapi-Limit`, `X-Bapi-Limit-Status`) are per endpoint and
    /// per account, with limits that differ by endpoint and VIP level; folding them
    /// into one counter would be wrong either way. Their exhaustion is handled in
    /// [`Venue::backoff`] instead.
    fn usage(&self, _headers: &HeaderMap) -> Vec<UsageReport> {
        Vec::new()
    }

    fn refused_outright(&self, status: StatusCode, body: &[u8]) -> bool {
        // A failing single request is an HTTP 200 with a non-zero retCode; batches
        // answer retCode 0 and report each element separately (not outright).
        status.is_client_error()
            || serde_json::from_slice::<serde_json::Value>(body)
                .is_ok_and(|value| value["retCode"].as_i64().is_some_and(|code| code != 0))
    }

    fn backoff(&self, status: StatusCode, headers: &HeaderMap) -> Option<Backoff> {
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match status.as_u16() {
            403 => {
                return Some(Backoff {
                    retry_after: retry_after.unwrap_or(BAN_PAUSE).max(Duration::from_secs(1)),
                    banned: true,
                });
            }
            429 => {
                return Some(Backoff {
                    retry_after: retry_after
                        .unwrap_or(RATE_LIMIT_PAUSE)
                        .max(Duration::from_secs(1)),
                    banned: false,
                });
            }
            _ => {}
        }
        // An endpoint's counter used up: wait for its reset, which Bybit states.
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining: u64 = header("x-bapi-limit-status")?.trim().parse().ok()?;
        if remaining > 0 {
            return None;
        }
        let reset_ms: u64 = header("x-bapi-limit-reset-timestamp")?
            .trim()
            .parse()
            .ok()?;
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Some(Backoff {
            retry_after: Duration::from_millis(reset_ms.saturating_sub(now_ms))
                .clamp(Duration::from_secs(1), LONGEST_ENDPOINT_PAUSE),
            banned: false,
        })
    }

    fn time_path(&self) -> &'static str {
        "/v5/market/time"
    }

    fn server_time_ms(&self, body: &[u8]) -> Option<u64> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let nanos: u128 = value["result"]["timeNano"].as_str()?.parse().ok()?;
        u64::try_from(nanos / 1_000_000).ok()
    }

    fn housekeeping(&self, task: Housekeeping, symbol: &Symbol) -> (&'static str, String) {
        let key = match task {
            Housekeeping::Quote => "GET /v5/market/tickers",
            Housekeeping::OpenOrders => "GET /v5/order/realtime",
            // Sent without a body: the parser reads a body-less POST's parameters
            // from the query and sends them as the JSON body.
            Housekeeping::CancelAll => "POST /v5/order/cancel-all",
        };
        let mut query = String::new();
        if let Some((category, name)) = symbol.as_str().split_once(':') {
            query.push_str("category=");
            form::encode_into(&mut query, category);
            query.push_str("&symbol=");
            form::encode_into(&mut query, name);
        }
        (key, query)
    }

    fn parse_quote(&self, body: &[u8]) -> Option<Quote> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if value["retCode"].as_i64() != Some(0) {
            return None;
        }
        let ticker = value["result"]["list"].as_array()?.first()?;
        let quote = Quote {
            bid: ticker["bid1Price"].as_str()?.parse().ok()?,
            ask: ticker["ask1Price"].as_str()?.parse().ok()?,
            // A linear contract's mark price follows the index, not this book; spot
            // tickers carry no price this book does not make.
            slow: crate::positive_decimal(&ticker["markPrice"]),
        };
        // An empty side or a crossed book is no reference to trade against.
        let sane = !quote.bid.is_zero() && !quote.ask.is_zero() && quote.ask >= quote.bid;
        sane.then_some(quote)
    }

    fn outcome(&self, call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
        outcome(call, status, body)
    }

    fn order_lookup(&self, reference: &OrderRef) -> Option<Lookup> {
        let symbol = reference.symbol.clone()?;
        let (category, name) = symbol.as_str().split_once(':')?;
        let mut query = String::from("category=");
        form::encode_into(&mut query, category);
        query.push_str("&symbol=");
        form::encode_into(&mut query, name);
        reference.append_to_query(&mut query, "orderId", "orderLinkId")?;
        Some(Lookup {
            key: "GET /v5/order/realtime",
            path: None,
            query,
            form: None,
            symbol: Some(symbol),
        })
    }

    fn looked_up_order(&self, body: &[u8]) -> Option<ExchangeOrder> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if value["retCode"].as_i64() != Some(0) {
            return None;
        }
        let order = value["result"]["list"].as_array()?.first()?;
        // realtime answers for one category; the caller looked it up under it.
        let category = value["result"]["category"].as_str()?;
        let trigger = crate::positive_decimal(&order["triggerPrice"]);
        let (order_type, market) = match order["orderType"].as_str()? {
            "Limit" => ("Limit", false),
            "Market" => ("Market", true),
            _ => return None,
        };
        Some(ExchangeOrder {
            symbol: intent_symbol(Some(category), order["symbol"].as_str()?).ok()?,
            side: match order["side"].as_str()? {
                "Buy" => Side::Buy,
                "Sell" => Side::Sell,
                _ => return None,
            },
            order_type: Arc::from(order_type),
            execution: match (market, trigger.is_some()) {
                (false, false) => Execution::Limit,
                (false, true) => Execution::StopLimit,
                (true, false) => Execution::Market,
                (true, true) => Execution::StopMarket,
            },
            size: Size::Base(crate::positive_decimal(&order["qty"])?),
            price: crate::positive_decimal(&order["price"]).filter(|_| !market),
            trigger,
            id: order["orderId"].as_str()?.to_owned(),
            client_id: order["orderLinkId"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            open: matches!(
                order["orderStatus"].as_str(),
                Some("New" | "PartiallyFilled" | "Untriggered")
            ),
        })
    }

    fn check_symbol(&self, symbol: &str) -> Result<(), &'static str> {
        const EXPECTED: &str = "<category>:<SYMBOL> with category spot or linear, e.g. \"spot:BTCUSDT\" (Bybit keys symbols on their category)";
        match symbol.split_once(':') {
            Some((category, name))
                if catalogue::CATEGORIES.contains(&category) && is_symbol(name) =>
            {
                Ok(())
            }
            _ => Err(EXPECTED),
        }
    }
}

const JSON: &str = "application/json";

/// `retCode`s that say the request's fate is not known (server timeout, internal
/// error or restart): what was asked may have been done.
const UNKNOWN_FATE: [i64; 2] = [10000, 10016];

/// What a Bybit answer says happened (see [`Venue::outcome`]). Bybit answers most
/// refusals with HTTP 200 and a non-zero `retCode`; batches answer `retCode` 0 and
/// give each element's code in `retExtInfo.list`, in request order.
fn outcome(call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
    let value = match Outcome::from_status(call, status, body) {
        Ok(value) => value,
        Err(outcome) => return outcome,
    };
    match value["retCode"].as_i64() {
        Some(0) => {}
        Some(code) if !UNKNOWN_FATE.contains(&code) => return Outcome::refused(call),
        _ => return Outcome::all(call, &LegResult::Unknown),
    }
    let category = call
        .params
        .iter()
        .find(|(k, _)| *k == "category")
        .map(|(_, v)| v.as_str());
    let symbol_of = |name: Option<&str>| {
        category
            .zip(name)
            .and_then(|(c, s)| Symbol::new(&format!("{c}:{s}")).ok())
    };
    let result = &value["result"];
    let placed = |item: &serde_json::Value| Placed {
        id: item["orderId"].as_str().map(str::to_owned),
        client_id: item["orderLinkId"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        list_id: None,
        list_client_id: None,
        open: true,
    };
    let mut outcome = Outcome::default();
    let codes = value["retExtInfo"]["list"].as_array();
    let element_ok = |index: usize| {
        codes
            .and_then(|c| c.get(index))
            .is_some_and(|c| c["code"].as_i64() == Some(0))
    };
    let items: Vec<&serde_json::Value> = result["list"].as_array().into_iter().flatten().collect();
    match call.endpoint.path {
        "/v5/order/create" | "/v5/order/amend" => {
            outcome.legs = vec![LegResult::Placed(placed(result))];
        }
        "/v5/order/create-batch" | "/v5/order/amend-batch" => {
            outcome.legs = (0..call.intent.orders.len())
                .map(|index| match items.get(index) {
                    Some(item) if element_ok(index) => LegResult::Placed(placed(item)),
                    Some(_) => LegResult::Rejected,
                    None => LegResult::Unknown,
                })
                .collect();
        }
        "/v5/order/cancel" => {
            outcome.cancelled = Some(vec![true]);
            let symbol = call.refs.cancels.first().and_then(|r| r.symbol.clone());
            if let Some(id) = result["orderId"].as_str() {
                outcome.closed.push((symbol, id.to_owned()));
            }
        }
        "/v5/order/cancel-batch" => {
            outcome.cancelled = Some(
                (0..call.refs.cancels.len())
                    .map(|index| items.get(index).is_some() && element_ok(index))
                    .collect(),
            );
        }
        "/v5/order/cancel-all" => {
            let symbol = symbol_of(
                call.params
                    .iter()
                    .find(|(k, _)| *k == "symbol")
                    .map(|(_, v)| v.as_str()),
            );
            for item in &items {
                if let Some(id) = item["orderId"].as_str() {
                    outcome.closed.push((symbol.clone(), id.to_owned()));
                }
            }
            outcome.closed_all.extend(symbol);
        }
        "/v5/order/realtime" | "/v5/order/history" => {
            for item in &items {
                let (Some(symbol), Some(id)) =
                    (symbol_of(item["symbol"].as_str()), item["orderId"].as_str())
                else {
                    continue;
                };
                let Some(state) = item["orderStatus"].as_str() else {
                    continue;
                };
                outcome.listed.push(Listed {
                    symbol,
                    id: id.to_owned(),
                    client_id: item["orderLinkId"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                    open: matches!(state, "New" | "PartiallyFilled" | "Untriggered"),
                });
            }
        }
        _ => {}
    }
    outcome
        .legs
        .resize(call.intent.orders.len(), LegResult::Unknown);
    outcome
}

/// A parameter as the bot sent it: text from a query string, or a JSON value.
enum Raw {
    Text(String),
    Json(Json),
}

/// A validated value, in the form keyward writes it.
#[derive(Debug, Clone)]
enum Value {
    /// A JSON string (or any query value).
    Text(String),
    /// A JSON integer, kept as its digits.
    Int(String),
    /// A JSON boolean.
    Bool(bool),
    /// A batch: each element's validated fields, in schema order.
    List(Vec<Vec<(&'static Param, Self)>>),
}

impl Value {
    fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) | Self::Int(t) => Some(t),
            Self::Bool(true) => Some("true"),
            Self::Bool(false) => Some("false"),
            Self::List(_) => None,
        }
    }
}

/// Validated scalar values by name.
type Values<'a> = HashMap<&'static str, &'a str>;

fn scalars<'a>(values: &'a [(&'static Param, Value)]) -> Values<'a> {
    values
        .iter()
        .filter_map(|(p, v)| v.text().map(|t| (p.name, t)))
        .collect()
}

/// How a body field is typed in Bybit's JSON: these are numbers and booleans, every
/// other field (prices and quantities included) a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Int,
    Bool,
    Str,
}

fn json_type(name: &str) -> JsonType {
    match name {
        "isLeverage" | "triggerDirection" | "positionIdx" => JsonType::Int,
        "reduceOnly" | "closeOnTrigger" => JsonType::Bool,
        _ => JsonType::Str,
    }
}

/// The parameters of a request: a GET's query; a POST's JSON object (the query must
/// then be empty, since Bybit reads a POST's body only); or a body-less POST's query
/// (keyward's own cancel-all, and curl users), which keyward sends as JSON.
fn read_input(
    endpoint: &EndpointSpec,
    input: &CallInput<'_>,
) -> Result<Vec<(String, Raw)>, ParseError> {
    let from_query = |query: &str| -> Result<Vec<(String, Raw)>, ParseError> {
        let pairs = form::parse_pairs(query, MAX_PARAMS).map_err(ParseError::Form)?;
        if pairs
            .iter()
            .any(|(k, v)| mentions_token(k) || mentions_token(v))
        {
            return Err(ParseError::TokenInParams);
        }
        Ok(pairs.into_iter().map(|(k, v)| (k, Raw::Text(v))).collect())
    };
    if input.body.is_empty() {
        return from_query(input.query);
    }
    if endpoint.method == Method::GET {
        return Err(ParseError::BodyNotAllowed);
    }
    if !input.content_type.is_some_and(is_json_content_type) {
        return Err(ParseError::UnsupportedMediaType);
    }
    if !input.query.is_empty() {
        return Err(ParseError::invalid(
            "query",
            "empty: Bybit reads a POST's parameters from its JSON body only",
        ));
    }
    let text =
        std::str::from_utf8(input.body).map_err(|_| ParseError::JsonInvalid { param: "body" })?;
    let parsed = Json::parse(text).map_err(|e| json_error("body", e))?;
    if parsed.mentions_token() {
        return Err(ParseError::TokenInParams);
    }
    let Json::Object(entries) = parsed else {
        return Err(ParseError::JsonInvalid { param: "body" });
    };
    if entries.len() > MAX_PARAMS {
        return Err(ParseError::Form(FormError::TooMany(MAX_PARAMS)));
    }
    Ok(entries
        .into_iter()
        .map(|(k, v)| (k, Raw::Json(v)))
        .collect())
}

fn json_error(param: &'static str, error: JsonError) -> ParseError {
    match error {
        JsonError::DuplicateKey(key) => ParseError::JsonDuplicateKey {
            param,
            key: echo_key(&key),
        },
        JsonError::Invalid(_) => ParseError::JsonInvalid { param },
    }
}

/// `application/json`, optionally with `charset=utf-8`, nothing else.
fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(JSON) {
        return false;
    }
    parts.all(|param| {
        let (name, value) = param.trim().split_once('=').unwrap_or(("", ""));
        name.eq_ignore_ascii_case("charset")
            && value.trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

/// One scalar parameter: the JSON type Bybit gives it, then its grammar.
fn read_value(param: &'static Param, raw: Raw) -> Result<Value, ParseError> {
    let kind = json_type(param.name);
    let value = match (kind, raw) {
        (JsonType::Int, Raw::Json(Json::Integer(n))) if n >= 0 => Value::Int(n.to_string()),
        (JsonType::Int, Raw::Text(t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            Value::Int(t)
        }
        (JsonType::Int, _) => return Err(ParseError::invalid(param.name, "a JSON integer")),
        (JsonType::Bool, Raw::Json(Json::Bool(b))) => Value::Bool(b),
        (JsonType::Bool, Raw::Text(t)) if t == "true" || t == "false" => Value::Bool(t == "true"),
        (JsonType::Bool, _) => return Err(ParseError::invalid(param.name, "true or false")),
        (JsonType::Str, Raw::Json(Json::String(t)) | Raw::Text(t)) => Value::Text(t),
        (JsonType::Str, Raw::Json(_)) => {
            return Err(ParseError::invalid(param.name, "a JSON string"));
        }
    };
    let text = value.text().unwrap_or_default();
    grammar(param, text).map_err(|expected| ParseError::invalid(param.name, expected))?;
    Ok(value)
}

/// The value grammar: Bybit's own for symbols, coins, cursors and order ids, the
/// shared schema's otherwise.
fn grammar(param: &Param, value: &str) -> Result<(), &'static str> {
    match param.name {
        "symbol" => is_symbol(value)
            .then_some(())
            .ok_or("a Bybit symbol: 1 to 32 of A-Z, 0-9 and '-'"),
        "baseCoin" | "settleCoin" => is_coin(value)
            .then_some(())
            .ok_or("a coin: 1 to 16 of A-Z and 0-9"),
        "coin" => {
            let coins: Vec<&str> = value.split(',').collect();
            (coins.len() <= 10 && coins.iter().all(|c| is_coin(c)))
                .then_some(())
                .ok_or("1 to 10 coins separated by commas, e.g. USDT,BTC")
        }
        "cursor" => ((1..=256).contains(&value.len())
            && value.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b':' | b'=' | b',' | b'_' | b'.' | b'/' | b'-')
            }))
        .then_some(())
        .ok_or("the nextPageCursor Bybit returned"),
        _ => schema::validate(param.kind, value),
    }
}

fn is_symbol(value: &str) -> bool {
    (1..=32).contains(&value.len())
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

fn is_coin(value: &str) -> bool {
    (1..=16).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A batch's `request` list: 1 or more objects under the element schema.
fn read_batch(
    param: &'static str,
    raw: Raw,
    element: &'static [Param],
) -> Result<Vec<Vec<(&'static Param, Value)>>, ParseError> {
    let parsed = match raw {
        Raw::Json(value) => value,
        Raw::Text(text) => Json::parse(&text).map_err(|e| json_error(param, e))?,
    };
    let Json::Array(items) = parsed else {
        return Err(ParseError::JsonInvalid { param });
    };
    if items.is_empty() {
        return Err(ParseError::JsonInvalid { param });
    }
    if items.len() > catalogue::BATCH_MAX {
        return Err(ParseError::BatchTooLarge {
            max: catalogue::BATCH_MAX,
        });
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Json::Object(entries) = item else {
            return Err(ParseError::JsonInvalid { param });
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let spec = lookup(element, &key)?;
            fields.push((spec, read_value(spec, Raw::Json(value))?));
        }
        fields.sort_by_key(|(p, _)| position(element, p.name));
        require_all(element, &fields)?;
        out.push(fields);
    }
    Ok(out)
}

fn batch_schema(endpoint: &EndpointSpec) -> Option<&'static [Param]> {
    match endpoint.shape {
        Shape::Batch { element, .. } => Some(element),
        _ if endpoint.path == "/v5/order/cancel-batch" => Some(catalogue::CANCEL_FIELDS),
        _ => None,
    }
}

fn lookup(params: &'static [Param], key: &str) -> Result<&'static Param, ParseError> {
    params
        .iter()
        .find(|p| p.name == key)
        .ok_or_else(|| ParseError::ParamUnknown { key: echo_key(key) })
}

fn position(params: &[Param], name: &str) -> usize {
    params
        .iter()
        .position(|p| p.name == name)
        .unwrap_or(usize::MAX)
}

fn require_all(
    params: &'static [Param],
    values: &[(&'static Param, Value)],
) -> Result<(), ParseError> {
    match params
        .iter()
        .find(|p| p.required && !values.iter().any(|(v, _)| v.name == p.name))
    {
        Some(missing) => Err(ParseError::ParamMissing { key: missing.name }),
        None => Ok(()),
    }
}

/// `spot:BTCUSDT`: the symbol as the policy, operators and order reports name it.
fn intent_symbol(category: Option<&str>, symbol: &str) -> Result<Symbol, ParseError> {
    let category = category.ok_or(ParseError::ParamMissing { key: "category" })?;
    Symbol::new(&format!("{category}:{symbol}"))
        .map_err(|_| ParseError::invalid("symbol", "a Bybit symbol: 1 to 32 of A-Z, 0-9 and '-'"))
}

fn decimal(values: &Values<'_>, name: &'static str) -> Result<Option<Decimal>, ParseError> {
    values
        .get(name)
        .map(|v| {
            v.parse::<Decimal>()
                .map_err(|_| ParseError::invalid(name, "a plain decimal such as 0.001"))
        })
        .transpose()
}

fn absent(
    values: &Values<'_>,
    names: &[&'static str],
    why: &'static str,
) -> Result<(), ParseError> {
    match names.iter().find(|n| values.contains_key(**n)) {
        Some(name) => Err(ParseError::invalid(name, why)),
        None => Ok(()),
    }
}

fn side_of(values: &Values<'_>) -> Result<Side, ParseError> {
    match values.get("side").copied() {
        Some("Buy") => Ok(Side::Buy),
        Some("Sell") => Ok(Side::Sell),
        Some(_) => Err(ParseError::invalid("side", "Buy or Sell")),
        None => Err(ParseError::ParamMissing { key: "side" }),
    }
}

fn the_symbol(category: Option<&str>, values: &Values<'_>) -> Result<Symbol, ParseError> {
    let symbol = values
        .get("symbol")
        .ok_or(ParseError::ParamMissing { key: "symbol" })?;
    intent_symbol(category, symbol)
}

/// One new order (`create`, or a `create-batch` element).
///
/// Size: a spot Market order's `qty` is in the quote coin for a Buy and the base
/// coin for a Sell unless `marketUnit` says otherwise (Bybit: "Spot: Market Buy order
/// by value by default"); everything else is sized in the base coin. A conditional
/// spot Market order must state `marketUnit`, since Bybit does not document its
/// default there. `isLeverage=1` borrows (spot margin).
fn new_order(category: Option<&str>, values: &Values<'_>) -> Result<Option<Order>, ParseError> {
    let symbol = the_symbol(category, values)?;
    let spot = category == Some("spot");
    if spot {
        absent(
            values,
            &[
                "reduceOnly",
                "closeOnTrigger",
                "positionIdx",
                "triggerDirection",
            ],
            "absent on spot orders",
        )?;
    } else {
        absent(
            values,
            &["isLeverage", "marketUnit", "orderFilter"],
            "absent on linear orders (Bybit reads it for spot only)",
        )?;
    }
    let side = side_of(values)?;
    let order_type = values
        .get("orderType")
        .copied()
        .ok_or(ParseError::ParamMissing { key: "orderType" })?;
    let market = match order_type {
        "Market" => true,
        "Limit" => false,
        _ => return Err(ParseError::invalid("orderType", "Limit or Market")),
    };
    let price = decimal(values, "price")?;
    let trigger = decimal(values, "triggerPrice")?;
    if spot {
        match (
            values.get("orderFilter").copied().unwrap_or("Order"),
            trigger,
        ) {
            ("Order", Some(_)) => {
                return Err(ParseError::invalid(
                    "triggerPrice",
                    "absent unless orderFilter is tpslOrder or StopOrder",
                ));
            }
            ("tpslOrder" | "StopOrder", None) => {
                return Err(ParseError::ParamMissing {
                    key: "triggerPrice",
                });
            }
            _ => {}
        }
    } else {
        match (values.contains_key("triggerDirection"), trigger) {
            (false, Some(_)) => {
                return Err(ParseError::ParamMissing {
                    key: "triggerDirection",
                });
            }
            (true, None) => {
                return Err(ParseError::invalid(
                    "triggerDirection",
                    "absent without triggerPrice",
                ));
            }
            _ => {}
        }
    }
    if trigger.is_none() {
        absent(values, &["triggerBy"], "absent without triggerPrice")?;
    }
    match (market, price) {
        (false, None) => return Err(ParseError::ParamMissing { key: "price" }),
        (true, Some(_)) => {
            return Err(ParseError::invalid(
                "price",
                "absent on Market orders (they fill at the market's price)",
            ));
        }
        _ => {}
    }
    let quantity = decimal(values, "qty")?.ok_or(ParseError::ParamMissing { key: "qty" })?;
    let quote_sized = if spot && market {
        match values.get("marketUnit").copied() {
            Some("quoteCoin") => true,
            Some(_) => false,
            None if trigger.is_some() => {
                return Err(ParseError::ParamMissing { key: "marketUnit" });
            }
            None => side == Side::Buy,
        }
    } else {
        absent(
            values,
            &["marketUnit"],
            "absent except on spot Market orders",
        )?;
        false
    };
    let execution = match (market, trigger.is_some()) {
        (false, false) => Execution::Limit,
        (false, true) => Execution::StopLimit,
        (true, false) => Execution::Market,
        (true, true) => Execution::StopMarket,
    };
    Ok(Some(Order {
        symbol,
        side,
        order_type: Arc::from(order_type),
        execution,
        // Bybit documents `qty="0"` with `reduceOnly` and `closeOnTrigger` as a close
        // of the whole position (up to maxMktOrderQty): the exchange decides its size.
        size: if quantity.is_zero() {
            Size::WholePosition
        } else if quote_sized {
            Size::Quote(quantity)
        } else {
            Size::Base(quantity)
        },
        price,
        trigger,
        amend: false,
        margin: spot && values.get("isLeverage") == Some(&"1"),
        reduce_only: values.get("reduceOnly") == Some(&"true"),
    }))
}

fn one_order_id(values: &Values<'_>) -> Result<(), ParseError> {
    match (
        values.contains_key("orderId"),
        values.contains_key("orderLinkId"),
    ) {
        (true, false) | (false, true) => Ok(()),
        (false, false) => Err(ParseError::ParamMissing { key: "orderId" }),
        (true, true) => Err(ParseError::invalid(
            "orderId",
            "given without orderLinkId: name the order one way only",
        )),
    }
}

/// One amend (`amend`, or an `amend-batch` element) and the order it names. Bybit's
/// amend names neither the side nor the type of the order: keyward takes them, and
/// whatever size or price the amend leaves unchanged, from its record of the order
/// before the policy decides. An amend must change something (a `qty`, `price` or
/// `triggerPrice`).
fn amend(
    category: Option<&str>,
    values: &Values<'_>,
    index: usize,
) -> Result<(Order, Amend), ParseError> {
    let symbol = the_symbol(category, values)?;
    let reference = order_ref(category, values)?;
    let quantity = decimal(values, "qty")?;
    let price = decimal(values, "price")?;
    let trigger = decimal(values, "triggerPrice")?;
    if trigger.is_none() {
        absent(values, &["triggerBy"], "absent without triggerPrice")?;
    }
    if quantity.is_none() && price.is_none() && trigger.is_none() {
        return Err(ParseError::ParamMissing { key: "qty" });
    }
    let order = Order {
        symbol,
        // Side and type are the record's; these are placeholders until then.
        side: Side::Buy,
        order_type: Arc::from("Limit"),
        execution: Execution::Limit,
        size: quantity.map_or(Size::WholePosition, Size::Base),
        price,
        trigger,
        amend: true,
        margin: false,
        reduce_only: false,
    };
    let amend = Amend {
        leg: index,
        order: reference,
        kind: AmendKind::InPlace,
        side_given: false,
        size_given: quantity.is_some(),
        price_given: price.is_some(),
    };
    Ok((order, amend))
}

/// The order a cancel or an amend names: exactly one of `orderId` and `orderLinkId`.
fn order_ref(category: Option<&str>, values: &Values<'_>) -> Result<OrderRef, ParseError> {
    one_order_id(values)?;
    Ok(OrderRef {
        symbol: Some(the_symbol(category, values)?),
        id: values.get("orderId").map(|v| (*v).to_owned()),
        client_id: values.get("orderLinkId").map(|v| (*v).to_owned()),
        list: false,
    })
}

fn take_client_id(values: &Values<'_>, index: usize, refs: &mut References) {
    if let Some(client_id) = values.get("orderLinkId") {
        refs.client_ids.push((index, (*client_id).to_owned()));
    }
}

/// The parameters in schema order as text (the audit log's view; a batch as its
/// JSON), and for a POST the JSON body keyward sends.
fn canonical(
    endpoint: &EndpointSpec,
    values: &[(&'static Param, Value)],
) -> (Vec<(&'static str, String)>, Option<String>) {
    let params = values
        .iter()
        .map(|(p, v)| {
            let text = match v {
                Value::List(items) => write_list(items),
                other => other.text().unwrap_or_default().to_owned(),
            };
            (p.name, text)
        })
        .collect();
    let body = (endpoint.method != Method::GET).then(|| write_object(values));
    (params, body)
}

fn write_object(fields: &[(&'static Param, Value)]) -> String {
    let mut out = String::from("{");
    for (index, (param, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        json::write_string(&mut out, param.name);
        out.push(':');
        match value {
            Value::Text(text) => json::write_string(&mut out, text),
            Value::Int(digits) => out.push_str(digits),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::List(items) => out.push_str(&write_list(items)),
        }
    }
    out.push('}');
    out
}

fn write_list(items: &[Vec<(&'static Param, Value)>]) -> String {
    let parts: Vec<String> = items.iter().map(|item| write_object(item)).collect();
    format!("[{}]", parts.join(","))
}

fn query_of(call: &ParsedCall) -> String {
    form::encode_pairs(call.params.iter().map(|(k, v)| (*k, v.as_str())))
}

/// (path and query, body): GET parameters in the query, POST ones in the body.
fn place(call: &ParsedCall) -> (String, String) {
    if call.endpoint.method == Method::GET {
        let query = query_of(call);
        if query.is_empty() {
            (call.endpoint.path.to_owned(), String::new())
        } else {
            (format!("{}?{query}", call.endpoint.path), String::new())
        }
    } else {
        (
            call.endpoint.path.to_owned(),
            call.body.clone().unwrap_or_else(|| "{}".to_owned()),
        )
    }
}

fn stripped_headers(headers: &HeaderMap) -> Vec<&'static str> {
    AUTH_HEADERS
        .iter()
        .filter(|(name, _)| headers.contains_key(*name))
        .map(|(_, shown)| *shown)
        .collect()
}

/// Bybit's encoding of each key type's signature: lowercase hex for HMAC, base64
/// for RSA (Bybit takes no Ed25519 or ECDSA keys).
fn signature(context: SignContext<'_>, payload: &[u8]) -> Result<String, SignError> {
    let credential = context.credential;
    match credential.kind() {
        KeyKind::Hmac => Ok(crate::hex(&credential.hmac_sha256(payload)?)),
        KeyKind::Rsa => {
            use base64::Engine as _;
            Ok(base64::engine::general_purpose::STANDARD
                .encode(credential.sign_asymmetric(payload)?))
        }
        KeyKind::Ed25519 | KeyKind::EcP256 => Err(SignError::WrongKeyKind),
    }
}

/// The HTTP status of a refusal at Bybit ([`Venue::refusal_status`]): 200, as Bybit
/// answers every error it words in `retCode`. pybit reads the body only at 200
/// (there it raises `InvalidRequestError` with `retMsg`, keyward's message); at any
/// other status it raises `FailedRequestError` with a fixed text, and at 403 that
/// text says the IP breached the rate limit or is in the USA, which sends a bot into
/// a long back-off. ccxt reads `retCode` whatever the status. Two exceptions:
/// - an IP ban Bybit imposed keeps 403, Bybit's own status for it;
/// - a timeout, or an answer keyward could not use, keeps keyward's 504 or 502: the
///   order may have executed, and pybit's `FailedRequestError` (a failed transport)
///   says so where `InvalidRequestError` ("Bybit refused it") would invite placing
///   it again.
///
/// A rate limit is 200 with 10006, like Bybit's own: pybit sleeps and tries again
/// up to its `max_retries`, then raises `FailedRequestError` ("Retries exceeded
/// maximum"), logging keyward's message at each attempt. keyward sends no
/// `X-Bapi-Limit-Reset-Timestamp`, so each sleep is pybit's default 2 s rather than a
/// wait as long as a daily quota's; and retrying is safe, since nothing was sent.
pub fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal.class {
        RefusalClass::ExchangeBanned => StatusCode::FORBIDDEN,
        RefusalClass::OutcomeUnknown | RefusalClass::Timeout => refusal.status,
        RefusalClass::Unauthenticated
        | RefusalClass::Forbidden
        | RefusalClass::SymbolForbidden
        | RefusalClass::MethodNotAllowed
        | RefusalClass::UnsupportedMediaType
        | RefusalClass::UnsupportedEncoding
        | RefusalClass::RateLimited
        | RefusalClass::Internal
        | RefusalClass::Unavailable
        | RefusalClass::Invalid(_) => StatusCode::OK,
    }
}

/// `query-api`'s answer for a bot: read-only when it can change nothing, trading
/// permissions for the categories its symbols name, never any wallet permission, no
/// IP binding to report (the token is bound by keyward, not by IP), its tokens'
/// expiry, and a unified trading account.
fn describe_key(key: &KeyView<'_>) -> String {
    let trades = !key.read_only();
    let category = |prefix: &str| trades && key.symbols.iter().any(|s| s.starts_with(prefix));
    let permissions = serde_json::json!({
        "ContractTrade": if category("linear:") || category("inverse:") { vec!["Order", "Position"] } else { vec![] },
        "Spot": if category("spot:") { vec!["SpotTrade"] } else { vec![] },
        "Wallet": [],
        "Options": if category("option:") { vec!["OptionsTrade"] } else { vec![] },
        "Derivatives": [],
        "CopyTrading": [],
        "BlockTrade": [],
        "Exchange": [],
        "NFT": [],
        "Affiliate": [],
    });
    serde_json::json!({
        "retCode": 0,
        "retMsg": "",
        "result": {
            "id": "0",
            "note": format!("keyward bot {}", key.bot),
            "apiKey": format!("keyward:{}", key.bot),
            "readOnly": i32::from(!trades),
            "secret": "",
            "permissions": permissions,
            "ips": ["*"],
            "type": 1,
            "deadlineDay": key.days_left,
            "expiredAt": key.expires_at,
            "createdAt": "",
            "unified": 0,
            "uta": 1,
            "userID": 0,
            "inviterID": 0,
            "vipLevel": "",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": false,
            "parentUid": "0",
            "kycLevel": "",
            "kycRegion": "",
        },
        "retExtInfo": {},
        "time": key.now_ms,
    })
    .to_string()
}

/// Bybit's `{"retCode":..,"retMsg":..}` envelope, sent with [`refusal_status`].
///
/// Codes are Bybit's own for the same kind of failure, chosen so ccxt raises the
/// matching class (ccxt reads `retCode` whatever the HTTP status): 10003
/// (AuthenticationError) for 401, 10029 "symbol whitelist" and 10005 "permission
/// denied" (PermissionDenied) for 403, 10001 (BadRequest) for malformed requests,
/// 10017 (BadRequest, "route not found or method invalid") for 405, 10006
/// (RateLimitExceeded) for 429, 10018 (RateLimitExceeded) when Bybit banned keyward's
/// IP, 10016 (ExchangeError) for upstream faults. On 504 the message ends with
/// "Request timeout", which ccxt matches to RequestTimeout. Of pybit's retry set
/// (10002, 10006, 30034, 30035, 130035, 130150) only 10006 is used, for rate limits
/// (see [`refusal_status`]); no message contains a phrase ccxt matches broadly ("Not
/// supported symbols", "invalid api_key", ...), except that deliberate timeout.
pub fn refusal_body(refusal: &Refusal) -> (&'static str, Vec<u8>) {
    let code: i64 = match refusal.class {
        RefusalClass::ExchangeBanned => 10018,
        RefusalClass::Unauthenticated => 10003,
        RefusalClass::SymbolForbidden => 10029,
        RefusalClass::Forbidden => 10005,
        RefusalClass::MethodNotAllowed => 10017,
        RefusalClass::RateLimited => 10006,
        RefusalClass::Internal
        | RefusalClass::Unavailable
        | RefusalClass::OutcomeUnknown
        | RefusalClass::Timeout => 10016,
        RefusalClass::UnsupportedMediaType
        | RefusalClass::UnsupportedEncoding
        | RefusalClass::Invalid(_) => 10001,
    };
    let detail = if refusal.class == RefusalClass::UnsupportedMediaType {
        "the body must be application/json"
    } else {
        &refusal.message
    };
    let mut message = format!("keyward: {}: {detail}", refusal.reason);
    if refusal.class == RefusalClass::Timeout {
        message.push_str("; Request timeout");
    }
    let time = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let body = serde_json::json!({
        "retCode": code,
        "retMsg": message,
        "result": {},
        "retExtInfo": {},
        "time": time,
    });
    (JSON, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests;
