//! Binance spot and USDⓈ-M futures: the money-movement floor, the strict parser and
//! the signer (HMAC-SHA256 hex, Ed25519 or RSA base64, over the percent-encoded
//! payload, as Binance requires since 2026-01-15).

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use keyward_policy::{EndpointClass, Intent, Permit, Quote, Symbol, mentions_token};

use crate::form::{self, FormError};
use crate::json::{self, Json, JsonError};
use crate::limits::{Backoff, ExchangeLimit, UsageKind, UsageReport};
use crate::refusal::{Fault, Refusal, RefusalClass};
use crate::schema::{self, EndpointSpec, Kind, OrderTypeSpec, Param, Security, Shape, Values};
use crate::sign::{KeyKind, SignError};
use crate::{
    Amend, AmendKind, CallInput, Catalogue, ExchangeOrder, Housekeeping, LegResult, Listed, Lookup,
    OrderRef, Outbound, Outcome, ParseError, ParsedCall, Placed, Preview, References, SignContext,
    Venue, VenueId, echo_key, listed,
};

mod catalogue;
mod stream;

pub use stream::{BinanceStreams, LISTEN_KEY_PATH, SPOT_STREAMS, USDM_STREAMS, USER_STREAM_PATH};

/// Binance spot (`api.binance.com`).
pub static SPOT: Binance = Binance {
    id: VenueId::BinanceSpot,
    upstream: "https://api.binance.com",
    catalogue: Catalogue::new(&catalogue::SPOT_ENDPOINTS),
    order_types: catalogue::SPOT_ORDER_TYPES,
    limits: &[
        limit(UsageKind::Weight, 60, 6_000),
        limit(UsageKind::Orders, 10, 100),
        limit(UsageKind::Orders, 86_400, 200_000),
    ],
    time_path: "/api/v3/time",
};

/// Binance USDⓈ-M futures (`fapi.binance.com`).
pub static USDM: Binance = Binance {
    id: VenueId::BinanceUsdm,
    upstream: "https://fapi.binance.com",
    catalogue: Catalogue::new(&catalogue::USDM_ENDPOINTS),
    order_types: catalogue::USDM_ORDER_TYPES,
    limits: &[
        limit(UsageKind::Weight, 60, 2_400),
        limit(UsageKind::Orders, 10, 300),
        limit(UsageKind::Orders, 60, 1_200),
    ],
    time_path: "/fapi/v1/time",
};

/// The default limits Binance documents (`rateLimits` of exchangeInfo); accounts
/// with higher limits simply stop a little early.
const fn limit(kind: UsageKind, window_s: u64, limit: u64) -> ExchangeLimit {
    ExchangeLimit {
        kind,
        window: Duration::from_secs(window_s),
        limit,
    }
}

/// How long to pause when a 429 or 418 comes without a usable `Retry-After`.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);
const DEFAULT_BAN_PAUSE: Duration = Duration::from_secs(120);
/// Binance bans last at most three days.
const LONGEST_PAUSE: Duration = Duration::from_secs(3 * 86_400);

/// The header Binance reads the API key from (and bots put their keyward token in).
pub const KEY_HEADER: &str = "x-mbx-apikey";

/// The bot's own auth parameters, removed and replaced by keyward's.
const AUTH_PARAMS: [&str; 4] = ["signature", "timestamp", "recvWindow", "apiKey"];

/// No Binance endpoint takes more than about 30 parameters.
const MAX_PARAMS: usize = 64;

/// One Binance product.
#[derive(Debug)]
pub struct Binance {
    id: VenueId,
    upstream: &'static str,
    catalogue: Catalogue,
    order_types: &'static [OrderTypeSpec],
    limits: &'static [ExchangeLimit],
    time_path: &'static str,
}

/// Path prefixes that move money, mint keys or open side channels. Everything under
/// `/sapi/` and `/papi/` is outside the catalogue in any case; these are the ones that
/// get the explicit floor reason (`money_movement_denied`, `key_management_denied`).
const MONEY_PREFIXES: &[&str] = &[
    "/sapi/v1/capital/withdraw/",
    "/sapi/v1/capital/deposit/",
    "/sapi/v1/localentity/",
    "/sapi/v1/asset/",
    "/sapi/v1/sub-account/",
    "/sapi/v2/sub-account/",
    "/sapi/v1/managed-subaccount/",
    "/sapi/v1/broker/",
    "/sapi/v1/giftcard/",
    "/sapi/v1/convert/",
    "/fapi/v1/convert/",
    "/sapi/v1/margin/",
    "/sapi/v1/futures/",
    "/sapi/v1/simple-earn/",
    "/sapi/v1/staking/",
    "/sapi/v1/sol-staking/",
    "/sapi/v1/eth-staking/",
    "/sapi/v2/eth-staking/",
    "/sapi/v1/dci/",
    "/sapi/v1/lending/",
    "/sapi/v1/loan/",
    "/sapi/v2/loan/",
    "/sapi/v1/blvt/",
    "/sapi/v1/portfolio/",
    "/sapi/v1/mining/",
    "/sapi/v1/pay/",
    "/papi/",
];

/// Exact paths that move money or stream account data on the API key alone.
const MONEY_PATHS: &[&str] = &[
    "/sapi/v1/account/enableFastWithdrawSwitch",
    "/sapi/v1/account/disableFastWithdrawSwitch",
    "/api/v3/userDataStream",
    "/sapi/v1/userDataStream",
    "/sapi/v1/userDataStream/isolated",
];

/// The `/sapi/` endpoints keyward serves (their catalogue entries say how): read-only
/// market data, coin and fee information. They sit under prefixes whose other
/// endpoints move money (`/sapi/v1/margin/`, `/sapi/v1/asset/`), so the floor names
/// them, by method and exact path, as not its own.
pub const SERVED_SAPI: &[&str] = &[
    "/sapi/v1/system/status",
    "/sapi/v1/margin/allPairs",
    "/sapi/v1/margin/isolated/allPairs",
    "/sapi/v1/capital/config/getall",
    "/sapi/v1/asset/tradeFee",
];

/// Each Binance product family's production host, by path prefix: an account's key
/// is valid on all of them, and clients of one product load the others' market data.
const FAMILIES: &[(&str, &str)] = &[
    ("/api/", "https://api.binance.com"),
    ("/sapi/", "https://api.binance.com"),
    ("/fapi/", "https://fapi.binance.com"),
    ("/dapi/", "https://dapi.binance.com"),
    ("/eapi/", "https://eapi.binance.com"),
];

/// Path fragments of API-key management, wherever they appear under `/sapi/`.
const KEY_FRAGMENTS: &[&str] = &[
    "subAccountApi",
    "ipRestriction",
    "apiRestrictions",
    "/apiKey",
];

impl Venue for Binance {
    fn id(&self) -> VenueId {
        self.id
    }

    fn answered_by_keyward(&self, endpoint: &EndpointSpec) -> bool {
        // The user data stream's key: whoever holds Binance's real one reads the
        // account's every order and balance, so a bot only ever gets keyward's.
        endpoint.path == LISTEN_KEY_PATH
    }

    fn streams(&self) -> Option<&'static dyn crate::stream::StreamVenue> {
        Some(if self.is_usdm() {
            &USDM_STREAMS
        } else {
            &SPOT_STREAMS
        })
    }

    fn default_upstream(&self) -> &'static str {
        self.upstream
    }

    fn key_header(&self) -> &'static str {
        KEY_HEADER
    }

    fn catalogue(&self) -> &'static Catalogue {
        // Both products are statics, so the reference is 'static.
        if self.is_usdm() {
            &USDM.catalogue
        } else {
            &SPOT.catalogue
        }
    }

    fn order_types(&self) -> &'static [OrderTypeSpec] {
        self.order_types
    }

    fn family_upstream(&self, path: &str) -> Option<&'static str> {
        FAMILIES
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, host)| *host)
            .filter(|host| *host != self.upstream)
    }

    fn floor(&self, method: &Method, path: &str) -> Option<EndpointClass> {
        if method == Method::GET && SERVED_SAPI.contains(&path) {
            return None;
        }
        if path.starts_with("/sapi/") && KEY_FRAGMENTS.iter().any(|f| path.contains(f)) {
            return Some(EndpointClass::KeyManagement);
        }
        listed(path, MONEY_PATHS, MONEY_PREFIXES).then_some(EndpointClass::MoneyMovement)
    }

    fn parse(
        &self,
        endpoint: &'static EndpointSpec,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        let body_pairs = parse_body(endpoint, input)?;
        let query_pairs = form::parse_pairs(input.query, MAX_PARAMS).map_err(ParseError::Form)?;
        if let Some((key, _)) = body_pairs
            .iter()
            .find(|(k, _)| query_pairs.iter().any(|(q, _)| q == k))
        {
            return Err(ParseError::InQueryAndBody { key: echo_key(key) });
        }
        if query_pairs.len() + body_pairs.len() > MAX_PARAMS {
            return Err(ParseError::Form(FormError::TooMany(MAX_PARAMS)));
        }
        let pairs = if query_pairs.is_empty() {
            body_pairs
        } else {
            let mut pairs = query_pairs;
            pairs.extend(body_pairs);
            pairs
        };
        if pairs
            .iter()
            .any(|(key, value)| mentions_token(key) || mentions_token(value))
        {
            return Err(ParseError::TokenInParams);
        }
        let mut stripped = Vec::new();
        let mut values = Values::with_capacity_and_hasher(pairs.len(), Default::default());
        for (key, value) in &pairs {
            if let Some(auth) = AUTH_PARAMS.iter().find(|a| **a == key.as_str()) {
                stripped.push(*auth);
                continue;
            }
            let param = lookup(endpoint.params, key)?;
            schema::validate(param.kind, value)
                .map_err(|expected| ParseError::invalid(param.name, expected))?;
            values.insert(param.name, value.as_str());
        }
        require_all(endpoint.params, &values)?;
        let mut symbols = symbols_of(endpoint.params, &values);
        let mut orders = Vec::new();
        let mut refs = References::default();
        let mut batch_text = None;
        // Test orders are never placed: their client ids are not taken.
        let places = !endpoint.path.ends_with("/test");
        match endpoint.shape {
            Shape::NoOrders => {}
            Shape::Legs(legs) => {
                let symbol = the_symbol(&values)?;
                for leg in legs {
                    if let Some(order) = schema::leg_order(leg, &symbol, &values, self.order_types)?
                    {
                        take_refs(leg, &symbol, &values, orders.len(), places, &mut refs)?;
                        orders.push(order);
                    }
                }
            }
            Shape::Batch {
                param,
                max,
                element,
                leg,
            } => {
                let raw = values.get(param).copied().unwrap_or_default();
                let batch = parse_batch(param, raw, max, element)?;
                for item in &batch.items {
                    let item: Values<'_> = item.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let symbol = the_symbol(&item)?;
                    if let Some(order) = schema::leg_order(leg, &symbol, &item, self.order_types)? {
                        take_refs(leg, &symbol, &item, orders.len(), places, &mut refs)?;
                        orders.push(order);
                    }
                    symbols.push(symbol);
                }
                batch_text = Some((param, batch.canonical));
            }
        }
        refs.cancels = cancelled_orders(endpoint, &values)?;
        drop(values);
        // The validated values move into the call, in catalogue order, uncopied.
        let mut validated: Vec<(&'static str, String)> = pairs
            .into_iter()
            .filter(|(key, _)| !AUTH_PARAMS.contains(&key.as_str()))
            .filter_map(|(key, value)| Some((lookup(endpoint.params, &key).ok()?.name, value)))
            .collect();
        let params = endpoint
            .params
            .iter()
            .filter_map(|p| {
                let value = match &mut batch_text {
                    Some((name, text)) if *name == p.name => std::mem::take(text),
                    _ => {
                        let (_, value) = validated.iter_mut().find(|(name, _)| *name == p.name)?;
                        std::mem::take(value)
                    }
                };
                Some((p.name, value))
            })
            .collect();
        symbols.sort();
        symbols.dedup();
        Ok(ParsedCall {
            endpoint,
            params,
            body: None,
            intent: Intent {
                endpoint: endpoint.endpoint_ref(),
                symbols,
                orders,
            },
            stripped,
            refs,
        })
    }

    fn preview(&self, call: &ParsedCall, recv_window_ms: u32) -> Preview {
        self.outline(call, recv_window_ms)
    }

    fn refusal(&self, refusal: &Refusal) -> (&'static str, Vec<u8>) {
        refusal_body(refusal)
    }

    /// keyward's status, as Binance answers its errors with 4xx and 5xx: its
    /// connector raises by status (400 BadRequestError, 403 ForbiddenError, 429
    /// TooManyRequestsError, ...) with `msg`, keyward's message, and at 200 would
    /// parse the envelope as the answer.
    fn refusal_status(&self, refusal: &Refusal) -> StatusCode {
        refusal.status
    }

    fn exchange_limits(&self) -> &'static [ExchangeLimit] {
        self.limits
    }

    fn usage(&self, headers: &HeaderMap) -> Vec<UsageReport> {
        headers
            .iter()
            .filter_map(|(name, value)| {
                let name = name.as_str();
                let (kind, interval) = if let Some(rest) = name.strip_prefix("x-mbx-used-weight-") {
                    (UsageKind::Weight, rest)
                } else {
                    (UsageKind::Orders, name.strip_prefix("x-mbx-order-count-")?)
                };
                Some(UsageReport {
                    kind,
                    window: interval_duration(interval)?,
                    used: value.to_str().ok()?.trim().parse().ok()?,
                })
            })
            .collect()
    }

    fn backoff(&self, status: StatusCode, headers: &HeaderMap) -> Option<Backoff> {
        let (banned, default) = match status.as_u16() {
            418 => (true, DEFAULT_BAN_PAUSE),
            429 => (false, DEFAULT_RATE_LIMIT_PAUSE),
            _ => return None,
        };
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(default, Duration::from_secs)
            .clamp(Duration::from_secs(1), LONGEST_PAUSE);
        Some(Backoff {
            retry_after,
            banned,
        })
    }

    fn time_path(&self) -> &'static str {
        self.time_path
    }

    fn housekeeping(&self, task: Housekeeping, symbol: &Symbol) -> (&'static str, String) {
        let key = match (self.is_usdm(), task) {
            (false, Housekeeping::Quote) => "GET /api/v3/ticker/bookTicker",
            (false, Housekeeping::OpenOrders) => "GET /api/v3/openOrders",
            (false, Housekeeping::CancelAll) => "DELETE /api/v3/openOrders",
            (true, Housekeeping::Quote) => "GET /fapi/v1/ticker/bookTicker",
            (true, Housekeeping::OpenOrders) => "GET /fapi/v1/openOrders",
            (true, Housekeeping::CancelAll) => "DELETE /fapi/v1/allOpenOrders",
        };
        let mut query = String::from("symbol=");
        form::encode_into(&mut query, symbol.as_str());
        (key, query)
    }

    fn parse_quote(&self, body: &[u8]) -> Option<Quote> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Book {
            bid_price: String,
            ask_price: String,
        }
        let book: Book = serde_json::from_slice(body).ok()?;
        let quote = Quote {
            bid: book.bid_price.parse().ok()?,
            ask: book.ask_price.parse().ok()?,
            slow: None,
        };
        // An empty side or a crossed book is no reference to trade against.
        let sane = !quote.bid.is_zero() && !quote.ask.is_zero() && quote.ask >= quote.bid;
        sane.then_some(quote)
    }

    fn outcome(&self, call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
        outcome(call, status, body)
    }

    fn weight(&self, call: &ParsedCall) -> u64 {
        // A USDⓈ-M client's spot and `/sapi/` reads weigh what spot says they weigh.
        if self.is_usdm() && call.endpoint.path.starts_with("/fapi/") {
            usdm_weight(call)
        } else {
            spot_weight(call)
        }
    }

    fn slow_price(&self, symbol: &Symbol) -> Option<(&'static str, String)> {
        let mut query = String::from("symbol=");
        form::encode_into(&mut query, symbol.as_str());
        // Spot: the 5-minute average price; USDⓈ-M: the mark price, which follows
        // the index across exchanges.
        let key = if self.is_usdm() {
            "GET /fapi/v1/premiumIndex"
        } else {
            "GET /api/v3/avgPrice"
        };
        Some((key, query))
    }

    fn parse_slow_price(&self, body: &[u8]) -> Option<keyward_policy::Decimal> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let field = if self.is_usdm() { "markPrice" } else { "price" };
        crate::positive_decimal(&value[field])
    }

    fn order_lookup(&self, reference: &OrderRef) -> Option<Lookup> {
        let symbol = reference.symbol.clone()?;
        if reference.list {
            return None;
        }
        let mut query = String::from("symbol=");
        form::encode_into(&mut query, symbol.as_str());
        reference.append_to_query(&mut query, "orderId", "origClientOrderId")?;
        Some(Lookup {
            key: if self.is_usdm() {
                "GET /fapi/v1/order"
            } else {
                "GET /api/v3/order"
            },
            path: None,
            query,
            form: None,
            symbol: Some(symbol),
        })
    }

    fn looked_up_order(&self, body: &[u8]) -> Option<ExchangeOrder> {
        let order: serde_json::Value = serde_json::from_slice(body).ok()?;
        let order_type = order["type"].as_str()?;
        let execution = self
            .order_types
            .iter()
            .find(|t| t.name == order_type)?
            .execution;
        let size = match (
            crate::positive_decimal(&order["origQty"]),
            crate::positive_decimal(&order["origQuoteOrderQty"]),
        ) {
            (Some(quantity), _) => keyward_policy::Size::Base(quantity),
            (None, Some(quote)) => keyward_policy::Size::Quote(quote),
            (None, None) => return None,
        };
        Some(ExchangeOrder {
            symbol: Symbol::new(order["symbol"].as_str()?).ok()?,
            side: match order["side"].as_str()? {
                "BUY" => keyward_policy::Side::Buy,
                "SELL" => keyward_policy::Side::Sell,
                _ => return None,
            },
            order_type: std::sync::Arc::from(order_type),
            execution,
            size,
            price: crate::positive_decimal(&order["price"]),
            trigger: crate::positive_decimal(&order["stopPrice"]),
            id: id_text(order.get("orderId")?),
            client_id: order["clientOrderId"].as_str().map(str::to_owned),
            open: order["status"]
                .as_str()
                .is_some_and(|s| matches!(s, "NEW" | "PARTIALLY_FILLED" | "PENDING_NEW")),
        })
    }

    fn check_symbol(&self, symbol: &str) -> Result<(), &'static str> {
        schema::validate(Kind::Symbol, symbol)
            .map_err(|_| "it exactly as Binance does, e.g. \"BTCUSDT\"")
    }

    fn server_time_ms(&self, body: &[u8]) -> Option<u64> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Time {
            server_time: u64,
        }
        serde_json::from_slice::<Time>(body)
            .ok()
            .map(|t| t.server_time)
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
        let mut payload = form::encode_pairs(call.params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut headers = Vec::new();
        match call.endpoint.security {
            Security::Public => {}
            Security::ApiKey => headers.push(api_key_header(context)?),
            Security::Signed => {
                headers.push(api_key_header(context)?);
                if !payload.is_empty() {
                    payload.push('&');
                }
                payload.push_str(&format!(
                    "recvWindow={}&timestamp={}",
                    context.recv_window_ms, context.timestamp_ms
                ));
                let signature = signature(context, payload.as_bytes())?;
                payload.push_str("&signature=");
                form::encode_into(&mut payload, &signature);
            }
        }
        let (path_and_query, body) = place(call.endpoint, payload);
        if !body.is_empty() {
            headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static(FORM)));
        }
        Ok(Outbound {
            method: call.endpoint.method.clone(),
            path_and_query,
            headers,
            body: body.into_bytes(),
        })
    }
}

impl Binance {
    fn is_usdm(&self) -> bool {
        self.id == VenueId::BinanceUsdm
    }

    fn outline(&self, call: &ParsedCall, recv_window_ms: u32) -> Preview {
        let mut payload = form::encode_pairs(call.params.iter().map(|(k, v)| (*k, v.as_str())));
        let mut headers = Vec::new();
        if call.endpoint.security != Security::Public {
            headers.push(format!("{KEY_HEADER}: <the account's API key>"));
        }
        if call.endpoint.security == Security::Signed {
            if !payload.is_empty() {
                payload.push('&');
            }
            payload.push_str(&format!(
                "recvWindow={recv_window_ms}&timestamp=<keyward's clock>&signature=<signature over the bytes before it>"
            ));
        }
        let (path_and_query, body) = place(call.endpoint, payload);
        if !body.is_empty() {
            headers.push(format!("content-type: {FORM}"));
        }
        Preview {
            method: call.endpoint.method.clone(),
            path_and_query,
            headers,
            body,
        }
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Binance's `{"code":..,"msg":..}` envelope. Codes are Binance's own for the same
/// kind of failure, chosen so ccxt raises the matching class: -2014
/// (AuthenticationError) for 401, -1100 to -1104 (BadRequest) for malformed requests,
/// -1003 for rate limits, -1007 (RequestTimeout) when the exchange did not answer in
/// time, -1001 for other upstream faults. ccxt maps no spot code to PermissionDenied,
/// but it matches the phrase "has no operation privilege" in the message, so 403
/// messages end with it. On 429 ccxt raises DDoSProtection, as it does for Binance's
/// own 429, before looking at the code.
pub fn refusal_body(refusal: &Refusal) -> (&'static str, Vec<u8>) {
    let code: i32 = match refusal.class {
        RefusalClass::Unauthenticated => -2014,
        RefusalClass::Forbidden | RefusalClass::SymbolForbidden => -1002,
        RefusalClass::RateLimited | RefusalClass::ExchangeBanned => -1003,
        RefusalClass::Timeout => -1007,
        RefusalClass::Internal => -1000,
        RefusalClass::Unavailable | RefusalClass::OutcomeUnknown => -1001,
        RefusalClass::Invalid(Fault::ParamDuplicate) => -1101,
        RefusalClass::Invalid(Fault::ParamMissing) => -1102,
        RefusalClass::Invalid(Fault::ParamUnknown) => -1104,
        RefusalClass::Invalid(Fault::JsonInvalid | Fault::Other)
        | RefusalClass::MethodNotAllowed
        | RefusalClass::UnsupportedMediaType
        | RefusalClass::UnsupportedEncoding => -1100,
    };
    let mut message = format!("keyward: {}: {}", refusal.reason, refusal.message);
    if matches!(
        refusal.class,
        RefusalClass::Forbidden | RefusalClass::SymbolForbidden
    ) {
        message.push_str("; this bot has no operation privilege for it");
    }
    let body = serde_json::json!({ "code": code, "msg": message });
    ("application/json", body.to_string().into_bytes())
}

/// Where the payload goes: the query for GET and DELETE, a form body otherwise.
/// Returns (path and query, body).
fn place(endpoint: &EndpointSpec, payload: String) -> (String, String) {
    let in_query = matches!(endpoint.method, Method::GET | Method::DELETE);
    if payload.is_empty() {
        (endpoint.path.to_owned(), String::new())
    } else if in_query {
        (format!("{}?{payload}", endpoint.path), String::new())
    } else {
        (endpoint.path.to_owned(), payload)
    }
}

fn api_key_header(context: SignContext<'_>) -> Result<(HeaderName, HeaderValue), SignError> {
    let mut value = HeaderValue::from_str(context.credential.api_key())
        .map_err(|_| SignError::InvalidApiKey)?;
    value.set_sensitive(true);
    Ok((HeaderName::from_static(KEY_HEADER), value))
}

/// What a Binance answer says happened (see [`Venue::outcome`]).
///
/// A 4xx is a refusal of the whole request, except the cancel-replace's 409
/// (`-2021`), which says per half what happened: its new order may have been placed
/// although the cancel failed. A 408 or 5xx says nothing. In a 200, every order
/// object is read: a batch answers one object per element, either an order or a
/// `{code, msg}` refusal of that element.
fn outcome(call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
    let key = call.endpoint.key;
    if key == "POST /api/v3/order/cancelReplace" && status == StatusCode::CONFLICT {
        let value = serde_json::from_slice::<serde_json::Value>(body).ok();
        let data = value.as_ref().map(|v| &v["data"]);
        let half = |name: &str| data.and_then(|d| d[name].as_str()).map(str::to_owned);
        let placed = match half("newOrderResult").as_deref() {
            Some("SUCCESS") => data
                .map(|d| placed_order(&d["newOrderResponse"]))
                .map_or(LegResult::Unknown, LegResult::Placed),
            Some("FAILURE" | "NOT_ATTEMPTED") => LegResult::Rejected,
            _ => LegResult::Unknown,
        };
        let mut outcome = Outcome::all(call, &placed);
        outcome.cancelled = Some(vec![half("cancelResult").as_deref() == Some("SUCCESS")]);
        return outcome;
    }
    let value = match Outcome::from_status(call, status, body) {
        Ok(value) => value,
        Err(outcome) => return outcome,
    };
    let mut outcome = Outcome::default();
    let orders = call.intent.orders.len();
    if key.ends_with("/test") {
        // Validated and not placed.
        outcome.legs = vec![LegResult::Rejected; orders];
        return outcome;
    }
    outcome.legs = match (&value, call.endpoint.class) {
        (_, EndpointClass::Trade) if key == "POST /api/v3/order/cancelReplace" => {
            outcome.cancelled = Some(vec![value["cancelResult"] == "SUCCESS"]);
            vec![LegResult::Placed(placed_order(&value["newOrderResponse"]))]
        }
        (serde_json::Value::Array(items), EndpointClass::Trade) => items
            .iter()
            .map(|item| {
                if item.get("orderId").is_some() {
                    LegResult::Placed(placed_order(item))
                } else {
                    LegResult::Rejected
                }
            })
            .collect(),
        // A single order carries `orderListId: -1`; an order list its own id.
        (serde_json::Value::Object(fields), EndpointClass::Trade)
            if fields
                .get("orderListId")
                .is_some_and(|id| id.as_i64() != Some(-1)) =>
        {
            // An order list: its orders in the order Binance lists them, which is
            // the order of the legs.
            let list_id = fields.get("orderListId").map(id_text);
            let list_client_id = value["listClientOrderId"].as_str().map(str::to_owned);
            value["orders"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|order| {
                    let report = value["orderReports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["orderId"] == order["orderId"])
                        .unwrap_or(order);
                    LegResult::Placed(Placed {
                        list_id: list_id.clone(),
                        list_client_id: list_client_id.clone(),
                        ..placed_order(report)
                    })
                })
                .collect()
        }
        (_, EndpointClass::Trade) => vec![LegResult::Placed(placed_order(&value))],
        _ => Vec::new(),
    };
    outcome.legs.resize(orders, LegResult::Unknown);
    let mut listed = Vec::new();
    collect_orders(&value, &mut listed);
    if call.endpoint.class == EndpointClass::Cancel {
        outcome.closed = listed
            .iter()
            .filter(|l| !l.open)
            .map(|l| (Some(l.symbol.clone()), l.id.clone()))
            .collect();
        if key == "DELETE /fapi/v1/batchOrders" {
            // One element per id asked for, an order or a refusal.
            outcome.cancelled = value.as_array().map(|items| {
                items
                    .iter()
                    .map(|item| item.get("orderId").is_some())
                    .collect()
            });
        }
        let symbol = call
            .params
            .iter()
            .find(|(k, _)| *k == "symbol")
            .and_then(|(_, v)| Symbol::new(v).ok());
        if matches!(
            key,
            "DELETE /fapi/v1/allOpenOrders" | "DELETE /api/v3/openOrders"
        ) && let Some(symbol) = symbol
        {
            outcome.closed_all.push(symbol);
        }
    } else if call.endpoint.class == EndpointClass::Read {
        outcome.listed = listed;
    }
    outcome
}

/// The value of `name` among the call's parameters.
fn param<'c>(call: &'c ParsedCall, name: &str) -> Option<&'c str> {
    call.params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// How many symbols a `symbols=["..",".."]` parameter lists.
fn symbol_count(call: &ParsedCall) -> Option<usize> {
    match Json::parse(param(call, "symbols")?) {
        Ok(Json::Array(items)) => Some(items.len()),
        _ => None,
    }
}

/// Binance spot's documented request weights (the REST API's `weight` of each
/// endpoint); anything not listed weighs 1.
fn spot_weight(call: &ParsedCall) -> u64 {
    let limit = || param(call, "limit").and_then(|l| l.parse::<u64>().ok());
    let one_symbol = param(call, "symbol").is_some();
    match call.endpoint.key {
        "GET /api/v3/exchangeInfo" => 20,
        "GET /sapi/v1/capital/config/getall" | "GET /sapi/v1/margin/isolated/allPairs" => 10,
        "GET /api/v3/depth" => match limit().unwrap_or(100) {
            0..=100 => 5,
            101..=500 => 25,
            501..=1000 => 50,
            _ => 250,
        },
        "GET /api/v3/trades" | "GET /api/v3/historicalTrades" => 25,
        "GET /api/v3/aggTrades" | "GET /api/v3/order" | "GET /api/v3/orderList" => 4,
        "GET /api/v3/ticker/24hr" => match (one_symbol, symbol_count(call)) {
            (true, _) => 2,
            (false, Some(0..=20)) => 2,
            (false, Some(21..=100)) => 40,
            _ => 80,
        },
        "GET /api/v3/ticker/price" | "GET /api/v3/ticker/bookTicker" => {
            if one_symbol {
                2
            } else {
                4
            }
        }
        "GET /api/v3/ticker" | "GET /api/v3/ticker/tradingDay" => {
            let symbols = if one_symbol {
                1
            } else {
                symbol_count(call).unwrap_or(50)
            };
            (4 * symbols as u64).min(200)
        }
        "GET /api/v3/openOrders" => {
            if one_symbol {
                6
            } else {
                80
            }
        }
        "GET /api/v3/openOrderList" => 6,
        "GET /api/v3/account"
        | "GET /api/v3/allOrders"
        | "GET /api/v3/myTrades"
        | "GET /api/v3/allOrderList"
        | "GET /api/v3/myAllocations"
        | "GET /api/v3/account/commission"
        | "GET /api/v3/myPreventedMatches" => 20,
        "GET /api/v3/rateLimit/order" => 40,
        "GET /api/v3/klines" | "GET /api/v3/uiKlines" | "GET /api/v3/avgPrice" => 2,
        _ => 1,
    }
}

/// Binance USDⓈ-M's documented request weights; anything not listed weighs 1.
fn usdm_weight(call: &ParsedCall) -> u64 {
    let limit = || param(call, "limit").and_then(|l| l.parse::<u64>().ok());
    let one_symbol = param(call, "symbol").is_some();
    let klines = || match limit().unwrap_or(500) {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    };
    match call.endpoint.key {
        "GET /fapi/v1/depth" => match limit().unwrap_or(500) {
            0..=50 => 2,
            51..=100 => 5,
            101..=500 => 10,
            _ => 20,
        },
        "GET /fapi/v1/trades" => 5,
        "GET /fapi/v1/historicalTrades" | "GET /fapi/v1/aggTrades" => 20,
        "GET /fapi/v1/klines"
        | "GET /fapi/v1/continuousKlines"
        | "GET /fapi/v1/indexPriceKlines"
        | "GET /fapi/v1/markPriceKlines" => klines(),
        "GET /fapi/v1/ticker/24hr" | "GET /fapi/v1/openOrders" => {
            if one_symbol {
                1
            } else {
                40
            }
        }
        "GET /fapi/v1/ticker/price" | "GET /fapi/v2/ticker/price" => {
            if one_symbol {
                1
            } else {
                2
            }
        }
        "GET /fapi/v1/ticker/bookTicker" => {
            if one_symbol {
                2
            } else {
                5
            }
        }
        "GET /fapi/v2/account"
        | "GET /fapi/v3/account"
        | "GET /fapi/v2/balance"
        | "GET /fapi/v3/balance"
        | "GET /fapi/v2/positionRisk"
        | "GET /fapi/v3/positionRisk"
        | "GET /fapi/v1/allOrders"
        | "GET /fapi/v1/userTrades"
        | "GET /fapi/v1/symbolConfig"
        | "GET /fapi/v1/accountConfig"
        | "GET /fapi/v1/adlQuantile"
        | "POST /fapi/v1/batchOrders"
        | "PUT /fapi/v1/batchOrders" => 5,
        "GET /fapi/v1/commissionRate" => 20,
        "GET /fapi/v1/income"
        | "GET /fapi/v1/positionSide/dual"
        | "GET /fapi/v1/multiAssetsMargin" => 30,
        "POST /fapi/v1/countdownCancelAll" => 10,
        _ => 1,
    }
}

/// An order object of an answer as placed: id, client id, and open unless its
/// status says otherwise (an `ACK` answer has none: open until keyward learns more).
fn placed_order(order: &serde_json::Value) -> Placed {
    Placed {
        id: order.get("orderId").map(id_text),
        client_id: order["clientOrderId"].as_str().map(str::to_owned),
        list_id: None,
        list_client_id: None,
        open: order["status"]
            .as_str()
            .is_none_or(|s| matches!(s, "NEW" | "PARTIALLY_FILLED" | "PENDING_NEW")),
    }
}

fn id_text(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Every order object (`symbol`, `orderId`, `status`) anywhere in an answer: single
/// orders, batches, cancel-replace pairs and order-list reports all nest them.
fn collect_orders(value: &serde_json::Value, listed: &mut Vec<Listed>) {
    match value {
        serde_json::Value::Array(items) => {
            for item in items {
                collect_orders(item, listed);
            }
        }
        serde_json::Value::Object(fields) => {
            let id = fields.get("orderId").map(id_text);
            let symbol = fields
                .get("symbol")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| Symbol::new(s).ok());
            let status = fields.get("status").and_then(serde_json::Value::as_str);
            if let (Some(id), Some(symbol), Some(status)) = (id, symbol, status) {
                listed.push(Listed {
                    symbol,
                    id,
                    client_id: fields
                        .get("clientOrderId")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned),
                    open: matches!(status, "NEW" | "PARTIALLY_FILLED" | "PENDING_NEW"),
                });
            }
            for nested in fields.values() {
                if nested.is_array() || nested.is_object() {
                    collect_orders(nested, listed);
                }
            }
        }
        _ => {}
    }
}

/// `1m`, `10s`, `1d` (Binance writes the unit in either case) as a duration.
fn interval_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit_s = match unit {
        "s" | "S" => 1,
        "m" | "M" => 60,
        "h" | "H" => 3_600,
        "d" | "D" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(unit_s)?))
}

/// Binance's encoding of each key type's signature: hex for HMAC, base64 otherwise.
fn signature(context: SignContext<'_>, payload: &[u8]) -> Result<String, SignError> {
    let credential = context.credential;
    match credential.kind() {
        KeyKind::Hmac => Ok(crate::hex(&credential.hmac_sha256(payload)?)),
        // Binance takes no ECDSA keys.
        KeyKind::EcP256 => Err(SignError::WrongKeyKind),
        KeyKind::Ed25519 | KeyKind::Rsa => {
            use base64::Engine as _;
            Ok(base64::engine::general_purpose::STANDARD
                .encode(credential.sign_asymmetric(payload)?))
        }
    }
}

fn parse_body(
    endpoint: &EndpointSpec,
    input: &CallInput<'_>,
) -> Result<Vec<(String, String)>, ParseError> {
    if input.body.is_empty() {
        return Ok(Vec::new());
    }
    if endpoint.method == Method::GET {
        return Err(ParseError::BodyNotAllowed);
    }
    if !input.content_type.is_some_and(is_form_content_type) {
        return Err(ParseError::UnsupportedMediaType);
    }
    let text =
        std::str::from_utf8(input.body).map_err(|_| ParseError::Form(FormError::BadDecoded))?;
    form::parse_pairs(text, MAX_PARAMS).map_err(ParseError::Form)
}

/// `application/x-www-form-urlencoded`, optionally with `charset=utf-8`, nothing else.
fn is_form_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return false;
    }
    parts.all(|param| {
        let (name, value) = param.trim().split_once('=').unwrap_or(("", ""));
        name.eq_ignore_ascii_case("charset")
            && value.trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

fn lookup(params: &'static [Param], key: &str) -> Result<&'static Param, ParseError> {
    params
        .iter()
        .find(|p| p.name == key)
        .ok_or_else(|| ParseError::ParamUnknown { key: echo_key(key) })
}

fn require_all(params: &'static [Param], values: &Values<'_>) -> Result<(), ParseError> {
    match params
        .iter()
        .find(|p| p.required && !values.contains_key(p.name))
    {
        Some(missing) => Err(ParseError::ParamMissing { key: missing.name }),
        None => Ok(()),
    }
}

fn symbols_of(params: &'static [Param], values: &Values<'_>) -> Vec<Symbol> {
    let mut symbols = Vec::new();
    for param in params {
        let Some(value) = values.get(param.name) else {
            continue;
        };
        match param.kind {
            Kind::Symbol => symbols.extend(Symbol::new(value).ok()),
            Kind::SymbolList => {
                if let Ok(Json::Array(items)) = Json::parse(value) {
                    for item in items {
                        if let Json::String(text) = item {
                            symbols.extend(Symbol::new(&text).ok());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    symbols
}

fn the_symbol(values: &Values<'_>) -> Result<Symbol, ParseError> {
    let text = values
        .get("symbol")
        .ok_or(ParseError::ParamMissing { key: "symbol" })?;
    Symbol::new(text)
        .map_err(|_| ParseError::invalid("symbol", "a symbol of 1 to 32 letters or digits"))
}

struct Batch {
    items: Vec<HashMap<&'static str, String>>,
    canonical: String,
}

/// Reads a JSON list of orders: every element an object of string values under the
/// element schema, no duplicate keys at any depth. Re-serialises it canonically.
fn parse_batch(
    param: &'static str,
    raw: &str,
    max: usize,
    element: &'static [Param],
) -> Result<Batch, ParseError> {
    let parsed = Json::parse(raw).map_err(|e| match e {
        JsonError::DuplicateKey(key) => ParseError::JsonDuplicateKey {
            param,
            key: echo_key(&key),
        },
        JsonError::Invalid(_) => ParseError::JsonInvalid { param },
    })?;
    let Json::Array(elements) = parsed else {
        return Err(ParseError::JsonInvalid { param });
    };
    if elements.is_empty() {
        return Err(ParseError::JsonInvalid { param });
    }
    if elements.len() > max {
        return Err(ParseError::BatchTooLarge { max });
    }
    let mut items = Vec::with_capacity(elements.len());
    let mut canonical = String::from("[");
    for (index, element_value) in elements.into_iter().enumerate() {
        let Json::Object(entries) = element_value else {
            return Err(ParseError::JsonInvalid { param });
        };
        let mut values: HashMap<&'static str, String> = HashMap::with_capacity(entries.len());
        for (key, value) in entries {
            let spec = lookup(element, &key)?;
            let Json::String(text) = value else {
                return Err(ParseError::invalid(spec.name, "a JSON string"));
            };
            schema::validate(spec.kind, &text)
                .map_err(|expected| ParseError::invalid(spec.name, expected))?;
            values.insert(spec.name, text);
        }
        let borrowed: Values<'_> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        require_all(element, &borrowed)?;
        if index > 0 {
            canonical.push(',');
        }
        canonical.push('{');
        let present = element
            .iter()
            .filter_map(|spec| values.get(spec.name).map(|v| (spec.name, v)));
        for (position, (name, text)) in present.enumerate() {
            if position > 0 {
                canonical.push(',');
            }
            json::write_string(&mut canonical, name);
            canonical.push(':');
            json::write_string(&mut canonical, text);
        }
        canonical.push('}');
        items.push(values);
    }
    canonical.push(']');
    Ok(Batch { items, canonical })
}

/// The order a leg amends and the client id it places with.
fn take_refs(
    leg: &schema::Leg,
    symbol: &Symbol,
    values: &Values<'_>,
    index: usize,
    places: bool,
    refs: &mut References,
) -> Result<(), ParseError> {
    if leg.amend {
        refs.amends.push(Amend {
            leg: index,
            order: order_ref(symbol, values, ("orderId", "origClientOrderId"), false)?,
            kind: AmendKind::InPlace,
            side_given: true,
            size_given: true,
            price_given: true,
        });
    } else if let (true, Some(name)) = (places, leg.client_id)
        && let Some(client_id) = values.get(name)
    {
        refs.client_ids.push((index, (*client_id).to_owned()));
    }
    Ok(())
}

/// An order named by id and/or client id on `symbol`; one of the two is required.
fn order_ref(
    symbol: &Symbol,
    values: &Values<'_>,
    (id, client_id): (&'static str, &'static str),
    list: bool,
) -> Result<OrderRef, ParseError> {
    let reference = OrderRef {
        symbol: Some(symbol.clone()),
        id: values.get(id).map(|v| (*v).to_owned()),
        client_id: values.get(client_id).map(|v| (*v).to_owned()),
        list,
    };
    if reference.id.is_none() && reference.client_id.is_none() {
        return Err(ParseError::ParamMissing { key: id });
    }
    Ok(reference)
}

/// The orders a cancel (or the cancel half of a cancel-replace) names. Cancels of
/// everything on one symbol name none: they stay inside the bot's symbols.
fn cancelled_orders(
    endpoint: &EndpointSpec,
    values: &Values<'_>,
) -> Result<Vec<OrderRef>, ParseError> {
    let symbol = || the_symbol(values);
    Ok(match endpoint.key {
        "DELETE /api/v3/order" | "DELETE /fapi/v1/order" => vec![order_ref(
            &symbol()?,
            values,
            ("orderId", "origClientOrderId"),
            false,
        )?],
        "POST /api/v3/order/cancelReplace" => vec![order_ref(
            &symbol()?,
            values,
            ("cancelOrderId", "cancelOrigClientOrderId"),
            false,
        )?],
        "DELETE /api/v3/orderList" => vec![order_ref(
            &symbol()?,
            values,
            ("orderListId", "listClientOrderId"),
            true,
        )?],
        "DELETE /fapi/v1/batchOrders" => {
            let symbol = symbol()?;
            let list = |name: &str| -> Vec<String> {
                match values.get(name).map(|v| Json::parse(v)) {
                    Some(Ok(Json::Array(items))) => items
                        .into_iter()
                        .filter_map(|item| match item {
                            Json::Integer(n) => Some(n.to_string()),
                            Json::String(text) => Some(text),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                }
            };
            let by_id = list("orderIdList").into_iter().map(|id| OrderRef {
                symbol: Some(symbol.clone()),
                id: Some(id),
                client_id: None,
                list: false,
            });
            let by_client = list("origClientOrderIdList")
                .into_iter()
                .map(|client_id| OrderRef {
                    symbol: Some(symbol.clone()),
                    id: None,
                    client_id: Some(client_id),
                    list: false,
                });
            let refs: Vec<OrderRef> = by_id.chain(by_client).collect();
            if refs.is_empty() {
                return Err(ParseError::ParamMissing { key: "orderIdList" });
            }
            refs
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests;
