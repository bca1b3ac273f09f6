//! Coinbase Advanced Trade (`api.coinbase.com`, `/api/v3/brokerage`): the
//! money-movement floor, the strict parser (repeated-key query arrays, JSON bodies
//! with nested order configurations) and the signer (a fresh CDP JWT per request,
//! ES256 with raw r||s or EdDSA, bound to `METHOD api.coinbase.com/path`).
//!
//! The bot authenticates to keyward with a JWT of its own, which the proxy checks;
//! keyward never forwards it and builds its own with the account's CDP key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use keyward_policy::{
    Decimal, EndpointClass, Intent, Order, Permit, Quote, Side, Size, Symbol, mentions_token,
};

use crate::form::{self, FormError};
use crate::json::{self, Json, JsonError};
use crate::limits::{Backoff, ExchangeLimit, UsageKind, UsageReport};
use crate::refusal::{Refusal, RefusalClass};
use crate::schema::{EndpointSpec, OrderTypeSpec, Security};
use crate::sign::{KeyKind, SignError, Signer};
use crate::{
    Amend, AmendKind, CallInput, Catalogue, ExchangeOrder, Housekeeping, LegResult, Listed, Lookup,
    OrderRef, Outbound, Outcome, ParseError, ParsedCall, Placed, Preview, References, SignContext,
    Venue, VenueId, echo_key, listed,
};

mod catalogue;
pub mod stream;

use catalogue::{Body, DETAILS, Detail, QueryParam, VARIANTS, Value, Variant};

/// Coinbase Advanced Trade.
pub static COINBASE: Coinbase = Coinbase {
    catalogue: Catalogue::new(&catalogue::ENDPOINTS),
};

/// The host the outbound JWT's `uri` claim names: Coinbase verifies it against its own.
pub const UPSTREAM_HOST: &str = "api.coinbase.com";
/// Coinbase JWTs live two minutes.
pub const JWT_LIFETIME_S: u64 = 120;
/// The header the bot's JWT (or plain keyward token) arrives in.
pub const KEY_HEADER: &str = "authorization";

/// No Coinbase query takes more than about 20 parameters (arrays count each value).
const MAX_QUERY_PAIRS: usize = 128;
/// Most order ids in one `batch_cancel` (Coinbase documents 100).
const MAX_BATCH_CANCEL: usize = 100;

/// Money movement and account control under `/api/v3/brokerage` (portfolios and
/// moving funds between them, converts, futures sweeps and margin settings, payment
/// methods) and the Coinbase App v2 API, which the same CDP key can call.
const MONEY_PREFIXES: &[&str] = &[
    "/api/v3/brokerage/portfolios",
    "/api/v3/brokerage/convert/",
    "/api/v3/brokerage/cfm/sweeps",
    "/api/v3/brokerage/cfm/intraday/",
    "/api/v3/brokerage/intx/allocate",
    "/api/v3/brokerage/intx/multi_asset_collateral",
    "/api/v3/brokerage/payment_methods",
    "/v2/",
];

/// The Coinbase App v2 reads keyward serves: public market data (currencies, exchange
/// rates, the time) and the wallet list with balances. Exempt from the `/v2/` floor
/// by method and exact path.
pub const SERVED_APP: &[&str] = &[
    "/v2/currencies",
    "/v2/currencies/crypto",
    "/v2/exchange-rates",
    "/v2/time",
    "/v2/accounts",
];

/// Exact v2 paths (without the trailing slash the prefix needs).
const MONEY_PATHS: &[&str] = &["/v2", "/api/v3/brokerage/convert"];

/// Coinbase Advanced Trade.
#[derive(Debug)]
pub struct Coinbase {
    catalogue: Catalogue,
}

impl Venue for Coinbase {
    fn streams(&self) -> Option<&'static dyn crate::stream::StreamVenue> {
        Some(&stream::STREAMS)
    }

    fn id(&self) -> VenueId {
        VenueId::Coinbase
    }

    fn default_upstream(&self) -> &'static str {
        "https://api.coinbase.com"
    }

    fn key_header(&self) -> &'static str {
        KEY_HEADER
    }

    fn catalogue(&self) -> &'static Catalogue {
        &COINBASE.catalogue
    }

    fn order_types(&self) -> &'static [OrderTypeSpec] {
        catalogue::ORDER_TYPES
    }

    fn floor(&self, method: &Method, path: &str) -> Option<EndpointClass> {
        if method == Method::GET && SERVED_APP.contains(&path) {
            return None;
        }
        listed(path, MONEY_PATHS, MONEY_PREFIXES).then_some(EndpointClass::MoneyMovement)
    }

    fn template(&self, path: &str) -> Option<&'static str> {
        let segments: Vec<&str> = path.split('/').collect();
        catalogue::ENDPOINTS
            .iter()
            .map(|spec| spec.path)
            .filter(|template| template.contains('{'))
            .find(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(part, segment)| {
                        if part.starts_with('{') {
                            !segment.is_empty()
                        } else {
                            part == segment
                        }
                    })
            })
    }

    fn parse(
        &self,
        endpoint: &'static EndpointSpec,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        self.parse_at(endpoint, endpoint.path, input)
    }

    fn parse_at(
        &self,
        endpoint: &'static EndpointSpec,
        path: &str,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        let detail = detail(endpoint)?;
        let mut symbols = Vec::new();
        let mut params: Vec<(&'static str, String)> = Vec::new();
        if let Some((name, kind)) = detail.path_param {
            let value = path_value(endpoint.path, path)
                .ok_or(ParseError::invalid(name, "a path segment"))?;
            let value = check(kind, name, value)?;
            if kind == Value::Product {
                symbols.push(symbol(name, &value)?);
            }
            params.push((name, value));
        }
        let query = parse_query(input.query, detail.query)?;
        for (param, value) in &query {
            if param.value == Value::Product {
                symbols.push(symbol(param.name, value)?);
            }
        }
        params.extend(query.iter().map(|(p, v)| (p.name, v.clone())));
        let mut orders = Vec::new();
        let mut cancels = Vec::new();
        let body = match detail.body {
            Body::None => {
                get_body(input)?;
                None
            }
            shape => {
                let fields = json_body(input)?;
                let read = read_body(shape, fields)?;
                orders = read.orders;
                symbols.extend(read.symbols);
                params.extend(read.scalars);
                cancels = read.cancels;
                Some(read.canonical)
            }
        };
        let mut stripped = Vec::new();
        if input.headers.contains_key(http::header::AUTHORIZATION) {
            stripped.push("authorization");
        }
        let refs = references(endpoint, &params, &orders, cancels);
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
            stripped,
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
        let (path, query) = target(call);
        let mut headers = Vec::new();
        if call.endpoint.security != Security::Public {
            let nonce = random_nonce()?;
            let jwt = jwt(
                context.credential,
                call.endpoint.method.as_str(),
                &path,
                context.timestamp_ms / 1000,
                &nonce,
            )?;
            let mut value = HeaderValue::from_str(&format!("Bearer {jwt}"))
                .map_err(|_| SignError::InvalidApiKey)?;
            value.set_sensitive(true);
            headers.push((http::header::AUTHORIZATION, value));
        }
        let body = call.body.clone().unwrap_or_default();
        if call.body.is_some() {
            headers.push((
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
        }
        Ok(Outbound {
            method: call.endpoint.method.clone(),
            path_and_query: join(&path, &query),
            headers,
            body: body.into_bytes(),
        })
    }

    fn preview(&self, call: &ParsedCall, _recv_window_ms: u32) -> Preview {
        let (path, query) = target(call);
        let mut headers = Vec::new();
        if call.endpoint.security != Security::Public {
            headers.push(format!(
                "authorization: Bearer <JWT signed with the account's CDP key: sub and kid = key name, iss \"cdp\", nbf = keyward's clock, exp = nbf+{JWT_LIFETIME_S}, uri \"{} {UPSTREAM_HOST}{path}\">",
                call.endpoint.method
            ));
        }
        if call.body.is_some() {
            headers.push("content-type: application/json".to_owned());
        }
        Preview {
            method: call.endpoint.method.clone(),
            path_and_query: join(&path, &query),
            headers,
            body: call.body.clone().unwrap_or_default(),
        }
    }

    fn refusal(&self, refusal: &Refusal) -> (&'static str, Vec<u8>) {
        refusal_body(refusal)
    }

    /// keyward's status, as Coinbase answers its errors with 4xx and 5xx:
    /// coinbase-advanced-py raises `HTTPError` with the body (keyward's message) only
    /// for those, and at 200 would return the envelope as if it were the answer.
    fn refusal_status(&self, refusal: &Refusal) -> StatusCode {
        refusal.status
    }

    fn exchange_limits(&self) -> &'static [ExchangeLimit] {
        // Advanced Trade documents 30 private requests per second per user (and 10
        // public per IP); keyward counts requests against the private limit.
        const LIMITS: &[ExchangeLimit] = &[ExchangeLimit {
            kind: UsageKind::Weight,
            window: Duration::from_secs(1),
            limit: 30,
        }];
        LIMITS
    }

    fn usage(&self, headers: &HeaderMap) -> Vec<UsageReport> {
        // `x-ratelimit-limit` / `x-ratelimit-remaining` (per second), when present.
        let number =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        match (number("x-ratelimit-limit"), number("x-ratelimit-remaining")) {
            (Some(limit), Some(remaining)) => vec![UsageReport {
                kind: UsageKind::Weight,
                window: Duration::from_secs(1),
                used: limit.saturating_sub(remaining),
            }],
            _ => Vec::new(),
        }
    }

    fn backoff(&self, status: StatusCode, headers: &HeaderMap) -> Option<Backoff> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        // Coinbase's limits are per second; `x-ratelimit-reset` or `Retry-After`
        // (seconds) says when, else a short pause.
        let seconds = ["retry-after", "x-ratelimit-reset"]
            .iter()
            .find_map(|name| {
                headers
                    .get(*name)?
                    .to_str()
                    .ok()?
                    .trim()
                    .parse::<u64>()
                    .ok()
            });
        let retry_after = seconds
            .map_or(Duration::from_secs(1), Duration::from_secs)
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        Some(Backoff {
            retry_after,
            banned: false,
        })
    }

    fn time_path(&self) -> &'static str {
        "/api/v3/brokerage/time"
    }

    fn server_time_ms(&self, body: &[u8]) -> Option<u64> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Time {
            epoch_millis: String,
        }
        serde_json::from_slice::<Time>(body)
            .ok()?
            .epoch_millis
            .parse()
            .ok()
    }

    fn housekeeping(&self, task: Housekeeping, symbol: &Symbol) -> (&'static str, String) {
        let mut query = String::new();
        match task {
            Housekeeping::Quote => {
                query.push_str("product_ids=");
                form::encode_into(&mut query, symbol.as_str());
                ("GET /api/v3/brokerage/best_bid_ask", query)
            }
            Housekeeping::OpenOrders => {
                query.push_str("order_status=OPEN&product_ids=");
                form::encode_into(&mut query, symbol.as_str());
                ("GET /api/v3/brokerage/orders/historical/batch", query)
            }
            // Coinbase cancels by order id only: there is no one request that cancels
            // every order on a product. This request is refused by the parser (it
            // names no order ids), so the kill switch reports the cancel as failed
            // rather than pretending it happened.
            Housekeeping::CancelAll => ("POST /api/v3/brokerage/orders/batch_cancel", query),
        }
    }

    fn parse_quote(&self, body: &[u8]) -> Option<Quote> {
        #[derive(serde::Deserialize)]
        struct Level {
            price: String,
        }
        #[derive(serde::Deserialize)]
        struct Book {
            bids: Vec<Level>,
            asks: Vec<Level>,
        }
        #[derive(serde::Deserialize)]
        struct Books {
            pricebooks: Vec<Book>,
        }
        let books: Books = serde_json::from_slice(body).ok()?;
        // keyward asks for one product; more than one book is not an answer to that.
        let [book] = books.pricebooks.as_slice() else {
            return None;
        };
        let quote = Quote {
            bid: book.bids.first()?.price.parse().ok()?,
            ask: book.asks.first()?.price.parse().ok()?,
            slow: None,
        };
        let sane = !quote.bid.is_zero() && !quote.ask.is_zero() && quote.ask >= quote.bid;
        sane.then_some(quote)
    }

    fn outcome(&self, call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
        outcome(call, status, body)
    }

    fn order_lookup(&self, reference: &OrderRef) -> Option<Lookup> {
        let id = reference.id.as_ref().filter(|id| is_id(id))?;
        Some(Lookup {
            key: "GET /api/v3/brokerage/orders/historical/{order_id}",
            path: Some(format!("/api/v3/brokerage/orders/historical/{id}")),
            query: String::new(),
            form: None,
            symbol: reference.symbol.clone(),
        })
    }

    fn looked_up_order(&self, body: &[u8]) -> Option<ExchangeOrder> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let order = &value["order"];
        let configuration = order["order_configuration"].as_object()?;
        let [(name, fields)] = configuration.iter().collect::<Vec<_>>()[..] else {
            return None;
        };
        let variant = VARIANTS.iter().find(|v| v.name == name)?;
        let size = match (
            crate::positive_decimal(&fields["base_size"]),
            crate::positive_decimal(&fields["quote_size"]),
        ) {
            (Some(base), _) => Size::Base(base),
            (None, Some(quote)) => Size::Quote(quote),
            (None, None) => return None,
        };
        Some(ExchangeOrder {
            symbol: Symbol::new(order["product_id"].as_str().filter(|p| is_product(p))?).ok()?,
            side: match order["side"].as_str()? {
                "BUY" => Side::Buy,
                "SELL" => Side::Sell,
                _ => return None,
            },
            order_type: Arc::from(variant.name),
            execution: variant.execution,
            size,
            price: crate::positive_decimal(&fields["limit_price"]),
            trigger: crate::positive_decimal(&fields["stop_price"]),
            id: order["order_id"].as_str()?.to_owned(),
            client_id: order["client_order_id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            open: matches!(
                order["status"].as_str(),
                Some("OPEN" | "PENDING" | "QUEUED")
            ),
        })
    }

    fn check_symbol(&self, symbol: &str) -> Result<(), &'static str> {
        if is_product(symbol) {
            Ok(())
        } else {
            Err("a Coinbase product id as Coinbase writes it, e.g. \"BTC-USD\"")
        }
    }
}

/// Coinbase's error envelope, `{"error","error_details","message"}`, with codes
/// chosen so both clients raise the matching class and show keyward's text:
/// - ccxt matches `error` exactly: `PERMISSION_DENIED` -> PermissionDenied (403),
///   `INVALID_ARGUMENT` -> BadRequest (400, 405, 413, 415), `unauthorized` ->
///   AuthenticationError (401; the lower-case spelling is the one ccxt maps),
///   `rate_limit_exceeded` -> RateLimitExceeded (429); upstream faults fall back to
///   ExchangeError. Its message is the whole body.
/// - coinbase-advanced-py raises `requests.HTTPError` with the body text for any
///   4xx/5xx, except a 403 whose `error_details` is exactly "Missing required
///   scopes" (it then hides the body), which keyward's `keyward: ...` never is.
pub fn refusal_body(refusal: &Refusal) -> (&'static str, Vec<u8>) {
    let code = match refusal.class {
        RefusalClass::Unauthenticated => "unauthorized",
        RefusalClass::Forbidden | RefusalClass::SymbolForbidden => "PERMISSION_DENIED",
        RefusalClass::RateLimited => "rate_limit_exceeded",
        RefusalClass::Internal
        | RefusalClass::Unavailable
        | RefusalClass::OutcomeUnknown
        | RefusalClass::Timeout
        | RefusalClass::ExchangeBanned => "internal_server_error",
        RefusalClass::MethodNotAllowed
        | RefusalClass::UnsupportedMediaType
        | RefusalClass::UnsupportedEncoding
        | RefusalClass::Invalid(_) => "INVALID_ARGUMENT",
    };
    let reason = refusal.reason;
    let body = serde_json::json!({
        "error": code,
        "error_details": format!("keyward: {reason}"),
        "message": format!("keyward: {reason}: {}", refusal.message),
    });
    ("application/json", body.to_string().into_bytes())
}

fn detail(endpoint: &EndpointSpec) -> Result<&'static Detail, ParseError> {
    DETAILS
        .iter()
        .find(|d| d.key == endpoint.key)
        .ok_or(ParseError::invalid(
            "path",
            "an endpoint keyward catalogues",
        ))
}

/// The value of the one `{name}` segment of `template` in `path`.
fn path_value<'p>(template: &str, path: &'p str) -> Option<&'p str> {
    let parts: Vec<&str> = template.split('/').collect();
    let segments: Vec<&'p str> = path.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    parts
        .iter()
        .zip(segments)
        .find(|(part, _)| part.starts_with('{'))
        .map(|(_, segment)| segment)
}

/// `BTC-USD`, `ETH-USDC`, futures such as `BIT-28JUL23-CDE`: upper-case letters and
/// digits in 2 to 4 dash-separated parts, at most 40 characters.
fn is_product(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    value.len() <= 40
        && (2..=4).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
}

fn is_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_int(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 19
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'))
}

fn is_time(value: &str) -> bool {
    (10..=40).contains(&value.len())
        && value.as_bytes()[0].is_ascii_digit()
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'T' | b'Z' | b'.' | b'+'))
}

fn is_client_order_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Validates `value` as `kind`; returns the value to forward (booleans lowercased).
fn check(kind: Value, name: &'static str, value: &str) -> Result<String, ParseError> {
    let (ok, expected) = match kind {
        Value::Product => (is_product(value), "a product id such as BTC-USD"),
        Value::Id => (is_id(value), "an id of 1 to 64 letters, digits or '-'"),
        Value::Int => (
            is_int(value),
            "a non-negative integer without leading zeros",
        ),
        Value::Bool => {
            return match value {
                "true" | "True" => Ok("true".to_owned()),
                "false" | "False" => Ok("false".to_owned()),
                _ => Err(ParseError::invalid(name, "true or false")),
            };
        }
        Value::Time => (
            is_time(value),
            "an RFC 3339 time such as 2024-01-01T00:00:00Z",
        ),
        Value::Cursor => (
            (1..=256).contains(&value.len())
                && value.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'/')
                }),
            "a pagination cursor as Coinbase returned it",
        ),
        Value::Decimal => (
            value.parse::<Decimal>().is_ok(),
            "a plain decimal such as 0.01",
        ),
        Value::Enum(words) => (
            words.contains(&value),
            "one of the values Coinbase documents",
        ),
    };
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ParseError::invalid(name, expected))
    }
}

fn symbol(name: &'static str, value: &str) -> Result<Symbol, ParseError> {
    Symbol::new(value).map_err(|_| ParseError::invalid(name, "a product id such as BTC-USD"))
}

/// The query: each key once, except array parameters, which Coinbase takes as
/// repeated keys. Values are decoded once and validated; the result is in the
/// catalogue's order (an array's values in the order sent).
fn parse_query(
    raw: &str,
    params: &'static [QueryParam],
) -> Result<Vec<(&'static QueryParam, String)>, ParseError> {
    let mut found: Vec<(&'static QueryParam, String)> = Vec::new();
    if !raw.is_empty() {
        for (index, segment) in raw.split('&').enumerate() {
            if index == MAX_QUERY_PAIRS {
                return Err(ParseError::Form(FormError::TooMany(MAX_QUERY_PAIRS)));
            }
            let pair = form::parse_pairs(segment, 1).map_err(ParseError::Form)?;
            let Some((key, value)) = pair.into_iter().next() else {
                return Err(ParseError::Form(FormError::PairShape));
            };
            if mentions_token(&key) || mentions_token(&value) {
                return Err(ParseError::TokenInParams);
            }
            let param =
                params
                    .iter()
                    .find(|p| p.name == key)
                    .ok_or_else(|| ParseError::ParamUnknown {
                        key: echo_key(&key),
                    })?;
            if !param.array && found.iter().any(|(p, _)| p.name == param.name) {
                return Err(ParseError::Form(FormError::Duplicate(echo_key(&key))));
            }
            let value = check(param.value, param.name, &value)?;
            found.push((param, value));
        }
    }
    if let Some(missing) = params
        .iter()
        .find(|p| p.required && !found.iter().any(|(f, _)| f.name == p.name))
    {
        return Err(ParseError::ParamMissing { key: missing.name });
    }
    let mut ordered = Vec::with_capacity(found.len());
    for param in params {
        ordered.extend(found.iter().filter(|(p, _)| p.name == param.name).cloned());
    }
    Ok(ordered)
}

/// `application/json`, optionally with `charset=utf-8`, nothing else.
fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| {
        let (name, value) = param.trim().split_once('=').unwrap_or(("", ""));
        name.eq_ignore_ascii_case("charset")
            && value.trim_matches('"').eq_ignore_ascii_case("utf-8")
    })
}

/// A GET carries no body, except that the official SDK sends exactly `{}` (with a
/// JSON content type) on every GET: that one form is accepted and never forwarded.
fn get_body(input: &CallInput<'_>) -> Result<(), ParseError> {
    if input.body.is_empty() {
        return Ok(());
    }
    if input.body == b"{}" && input.content_type.is_some_and(is_json_content_type) {
        return Ok(());
    }
    Err(ParseError::BodyNotAllowed)
}

fn json_body(input: &CallInput<'_>) -> Result<Vec<(String, Json)>, ParseError> {
    if !input.content_type.is_some_and(is_json_content_type) {
        return Err(ParseError::UnsupportedMediaType);
    }
    let text =
        std::str::from_utf8(input.body).map_err(|_| ParseError::JsonInvalid { param: "body" })?;
    match Json::parse(text) {
        Ok(parsed) if parsed.mentions_token() => Err(ParseError::TokenInParams),
        Ok(Json::Object(fields)) => Ok(fields),
        Ok(_) => Err(ParseError::JsonInvalid { param: "body" }),
        Err(JsonError::DuplicateKey(key)) => Err(ParseError::JsonDuplicateKey {
            param: "body",
            key: echo_key(&key),
        }),
        Err(JsonError::Invalid(_)) => Err(ParseError::JsonInvalid { param: "body" }),
    }
}

/// The fields of a JSON object, each looked up in `allowed`; unknown keys refused.
fn fields_of(
    fields: Vec<(String, Json)>,
    allowed: &[&'static str],
) -> Result<HashMap<&'static str, Json>, ParseError> {
    let mut out = HashMap::with_capacity(fields.len());
    for (key, value) in fields {
        let name = allowed
            .iter()
            .find(|a| **a == key)
            .ok_or_else(|| ParseError::ParamUnknown {
                key: echo_key(&key),
            })?;
        out.insert(*name, value);
    }
    Ok(out)
}

/// A JSON string field validated by `ok`.
fn string_field(
    fields: &HashMap<&'static str, Json>,
    name: &'static str,
    required: bool,
    ok: fn(&str) -> bool,
    expected: &'static str,
) -> Result<Option<String>, ParseError> {
    match fields.get(name) {
        None if required => Err(ParseError::ParamMissing { key: name }),
        None => Ok(None),
        Some(Json::String(text)) if ok(text) => Ok(Some(text.clone())),
        Some(_) => Err(ParseError::invalid(name, expected)),
    }
}

fn decimal_field(
    fields: &HashMap<&'static str, Json>,
    name: &'static str,
    required: bool,
) -> Result<Option<Decimal>, ParseError> {
    let text = string_field(
        fields,
        name,
        required,
        |v| v.parse::<Decimal>().is_ok(),
        "a decimal in a JSON string, such as \"0.001\"",
    )?;
    Ok(text.and_then(|t| t.parse().ok()))
}

/// Appends `"name":"value",` for each present string value, in the given order.
fn write_fields(out: &mut String, pairs: &[(&str, Option<&String>)]) {
    for (name, value) in pairs {
        if let Some(value) = value {
            if !out.ends_with('{') {
                out.push(',');
            }
            json::write_string(out, name);
            out.push(':');
            json::write_string(out, value);
        }
    }
}

/// What a POST body says.
#[derive(Default)]
struct BodyRead {
    /// The body re-serialised, as it is sent.
    canonical: String,
    orders: Vec<Order>,
    symbols: Vec<Symbol>,
    /// Its top-level scalar fields, for the audit log and the outcome parser.
    scalars: Vec<(&'static str, String)>,
    /// The order ids a batch cancel names, in order.
    cancels: Vec<String>,
}

/// Reads and re-serialises a POST body.
fn read_body(shape: Body, fields: Vec<(String, Json)>) -> Result<BodyRead, ParseError> {
    match shape {
        Body::Order | Body::Preview => read_order(shape == Body::Order, fields),
        Body::Edit => read_edit(fields),
        Body::BatchCancel => read_batch_cancel(fields),
        Body::None => Err(ParseError::BodyNotAllowed),
    }
}

const ORDER_FIELDS: &[&str] = &[
    "client_order_id",
    "product_id",
    "side",
    "order_configuration",
    "self_trade_prevention_id",
    "leverage",
    "margin_type",
    "retail_portfolio_id",
    "preview_id",
];

fn read_order(with_client_id: bool, fields: Vec<(String, Json)>) -> Result<BodyRead, ParseError> {
    let allowed = if with_client_id {
        ORDER_FIELDS
    } else {
        &ORDER_FIELDS[1..]
    };
    let mut fields = fields_of(fields, allowed)?;
    let client_order_id = if with_client_id {
        string_field(
            &fields,
            "client_order_id",
            true,
            is_client_order_id,
            "1 to 128 of A-Z a-z 0-9 - _ . :",
        )?
    } else {
        None
    };
    let product = string_field(
        &fields,
        "product_id",
        true,
        is_product,
        "a product id such as BTC-USD",
    )?
    .unwrap_or_default();
    let side_text = string_field(
        &fields,
        "side",
        true,
        |v| catalogue::ORDER_SIDES.contains(&v),
        "BUY or SELL",
    )?
    .unwrap_or_default();
    let side = if side_text == "BUY" {
        Side::Buy
    } else {
        Side::Sell
    };
    let stp = string_field(
        &fields,
        "self_trade_prevention_id",
        false,
        is_id,
        "an id of letters, digits or '-'",
    )?;
    let leverage = string_field(
        &fields,
        "leverage",
        false,
        |v| v.parse::<Decimal>().is_ok(),
        "a decimal in a JSON string, such as \"1\"",
    )?;
    let margin_type = string_field(
        &fields,
        "margin_type",
        false,
        |v| catalogue::MARGIN_TYPES.contains(&v),
        "CROSS or ISOLATED",
    )?;
    let portfolio = string_field(
        &fields,
        "retail_portfolio_id",
        false,
        is_id,
        "an id of letters, digits or '-'",
    )?;
    let preview_id = string_field(
        &fields,
        "preview_id",
        false,
        is_id,
        "an id of letters, digits or '-'",
    )?;
    let Some(Json::Object(configuration)) = fields.remove("order_configuration") else {
        return Err(match fields.contains_key("order_configuration") {
            true => ParseError::invalid("order_configuration", "an object with one order type"),
            false => ParseError::ParamMissing {
                key: "order_configuration",
            },
        });
    };
    let [(variant_name, Json::Object(config))] = configuration.as_slice() else {
        return Err(ParseError::invalid(
            "order_configuration",
            "an object with exactly one order type, e.g. {\"limit_limit_gtc\":{...}}",
        ));
    };
    let variant = VARIANTS
        .iter()
        .find(|v| v.name == variant_name)
        .ok_or(ParseError::invalid(
            "order_configuration",
            "an order type keyward catalogues (market_market_ioc, sor_limit_ioc, limit_limit_gtc, limit_limit_gtd, limit_limit_fok, stop_limit_stop_limit_gtc, stop_limit_stop_limit_gtd)",
        ))?;
    let (config_json, order_size, price, trigger) = read_configuration(variant, config.clone())?;
    let symbol = symbol("product_id", &product)?;
    // Leverage above 1 or a margin type borrows (INTX / futures margin); a spot
    // order on borrowed funds needs allow_margin.
    let margin = margin_type.is_some()
        || leverage
            .as_deref()
            .is_some_and(|l| l.parse::<Decimal>().ok() != "1".parse::<Decimal>().ok());
    let order = Order {
        symbol: symbol.clone(),
        side,
        order_type: Arc::from(variant.name),
        execution: variant.execution,
        size: order_size,
        price,
        trigger,
        amend: false,
        margin,
        reduce_only: false,
    };
    let mut out = String::from("{");
    write_fields(
        &mut out,
        &[
            ("client_order_id", client_order_id.as_ref()),
            ("product_id", Some(&product)),
            ("side", Some(&side_text)),
        ],
    );
    out.push_str(",\"order_configuration\":{");
    json::write_string(&mut out, variant.name);
    out.push(':');
    out.push_str(&config_json);
    out.push('}');
    write_fields(
        &mut out,
        &[
            ("self_trade_prevention_id", stp.as_ref()),
            ("leverage", leverage.as_ref()),
            ("margin_type", margin_type.as_ref()),
            ("retail_portfolio_id", portfolio.as_ref()),
            ("preview_id", preview_id.as_ref()),
        ],
    );
    out.push('}');
    let mut scalars = Vec::new();
    if let Some(id) = client_order_id {
        scalars.push(("client_order_id", id));
    }
    scalars.push(("product_id", product));
    scalars.push(("side", side_text));
    scalars.push(("order_type", variant.name.to_owned()));
    Ok(BodyRead {
        canonical: out,
        orders: vec![order],
        symbols: vec![symbol],
        scalars,
        cancels: Vec::new(),
    })
}

/// One variant's fields: (canonical JSON object, size, limit price, trigger).
fn read_configuration(
    variant: &Variant,
    config: Vec<(String, Json)>,
) -> Result<(String, Size, Option<Decimal>, Option<Decimal>), ParseError> {
    let mut allowed = vec!["base_size"];
    if variant.quote_allowed {
        allowed.push("quote_size");
    }
    if variant.limit_price {
        allowed.push("limit_price");
    }
    if variant.stop_price {
        allowed.extend(["stop_price", "stop_direction"]);
    }
    if variant.end_time {
        allowed.push("end_time");
    }
    if variant.post_only {
        allowed.push("post_only");
    }
    let fields = fields_of(config, &allowed)?;
    let base = decimal_field(&fields, "base_size", false)?;
    let quote = decimal_field(&fields, "quote_size", false)?;
    let size = match (base, quote) {
        (Some(base), None) => Size::Base(base),
        (None, Some(quote)) => Size::Quote(quote),
        (None, None) => return Err(ParseError::ParamMissing { key: "base_size" }),
        (Some(_), Some(_)) => {
            return Err(ParseError::invalid(
                "base_size",
                "exactly one of base_size and quote_size",
            ));
        }
    };
    let price = decimal_field(&fields, "limit_price", variant.limit_price)?;
    let trigger = decimal_field(&fields, "stop_price", variant.stop_price)?;
    let direction = string_field(
        &fields,
        "stop_direction",
        variant.stop_price,
        |v| catalogue::STOP_DIRECTIONS.contains(&v),
        "STOP_DIRECTION_STOP_UP or STOP_DIRECTION_STOP_DOWN",
    )?;
    let end_time = string_field(
        &fields,
        "end_time",
        variant.end_time,
        is_time,
        "an RFC 3339 time",
    )?;
    let post_only = match fields.get("post_only") {
        None => None,
        Some(Json::Bool(flag)) => Some(*flag),
        Some(_) => return Err(ParseError::invalid("post_only", "a JSON boolean")),
    };
    let text = |d: Option<Decimal>, name: &str| {
        d.and(fields.get(name)).and_then(|v| match v {
            Json::String(s) => Some(s.clone()),
            _ => None,
        })
    };
    let base_text = text(base, "base_size");
    let quote_text = text(quote, "quote_size");
    let price_text = text(price, "limit_price");
    let stop_text = text(trigger, "stop_price");
    let mut out = String::from("{");
    write_fields(
        &mut out,
        &[
            ("quote_size", quote_text.as_ref()),
            ("base_size", base_text.as_ref()),
            ("limit_price", price_text.as_ref()),
            ("stop_price", stop_text.as_ref()),
            ("end_time", end_time.as_ref()),
            ("stop_direction", direction.as_ref()),
        ],
    );
    if let Some(flag) = post_only {
        if !out.ends_with('{') {
            out.push(',');
        }
        out.push_str(if flag {
            "\"post_only\":true"
        } else {
            "\"post_only\":false"
        });
    }
    out.push('}');
    Ok((out, size, price, trigger))
}

/// An edit names only the order id, the new size and the new price; Coinbase knows
/// the product and side, and so does keyward's record of the order, from which they
/// are taken before the policy decides. A bot may still say the product
/// (`product_id`, never forwarded): it must then be the order's.
fn read_edit(fields: Vec<(String, Json)>) -> Result<BodyRead, ParseError> {
    let fields = fields_of(fields, &["order_id", "price", "size", "product_id"])?;
    let order_id =
        string_field(&fields, "order_id", true, is_id, "an order id")?.unwrap_or_default();
    let product = string_field(
        &fields,
        "product_id",
        false,
        is_product,
        "the order's product id, such as BTC-USD (keyward checks it and does not forward it)",
    )?;
    let price = decimal_field(&fields, "price", true)?;
    let size = decimal_field(&fields, "size", true)?;
    let stated = product
        .as_deref()
        .map(|p| symbol("product_id", p))
        .transpose()?;
    let (Some(price), Some(size)) = (price, size) else {
        return Err(ParseError::ParamMissing { key: "price" });
    };
    let text = |name: &str| match fields.get(name) {
        Some(Json::String(s)) => Some(s.clone()),
        _ => None,
    };
    let orders = vec![Order {
        symbol: stated.clone().unwrap_or_else(crate::unresolved_symbol),
        // Placeholders until the record's side and type replace them.
        side: Side::Buy,
        order_type: Arc::from("limit_limit_gtc"),
        execution: keyward_policy::Execution::Limit,
        size: Size::Base(size),
        price: Some(price),
        trigger: None,
        amend: true,
        margin: false,
        reduce_only: false,
    }];
    let mut out = String::from("{");
    write_fields(
        &mut out,
        &[
            ("order_id", Some(&order_id)),
            ("price", text("price").as_ref()),
            ("size", text("size").as_ref()),
        ],
    );
    out.push('}');
    let mut scalars = vec![("order_id", order_id)];
    scalars.extend(product.map(|p| ("product_id", p)));
    Ok(BodyRead {
        canonical: out,
        orders,
        symbols: stated.into_iter().collect(),
        scalars,
        cancels: Vec::new(),
    })
}

fn read_batch_cancel(fields: Vec<(String, Json)>) -> Result<BodyRead, ParseError> {
    let mut fields = fields_of(fields, &["order_ids"])?;
    let Some(Json::Array(items)) = fields.remove("order_ids") else {
        return Err(ParseError::ParamMissing { key: "order_ids" });
    };
    if items.is_empty() {
        return Err(ParseError::invalid(
            "order_ids",
            "a non-empty JSON array of order ids",
        ));
    }
    if items.len() > MAX_BATCH_CANCEL {
        return Err(ParseError::BatchTooLarge {
            max: MAX_BATCH_CANCEL,
        });
    }
    let mut out = String::from("{\"order_ids\":[");
    for (index, item) in items.iter().enumerate() {
        let Json::String(id) = item else {
            return Err(ParseError::invalid(
                "order_ids",
                "a JSON array of order id strings",
            ));
        };
        if !is_id(id) {
            return Err(ParseError::invalid(
                "order_ids",
                "a JSON array of order ids",
            ));
        }
        if index > 0 {
            out.push(',');
        }
        json::write_string(&mut out, id);
    }
    out.push_str("]}");
    let cancels = items
        .iter()
        .filter_map(|item| match item {
            Json::String(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    Ok(BodyRead {
        canonical: out,
        cancels,
        ..BodyRead::default()
    })
}

/// The client id of a new order, the order an edit changes, the orders a batch
/// cancel names (`cancels`, from its body).
fn references(
    endpoint: &EndpointSpec,
    params: &[(&'static str, String)],
    orders: &[Order],
    cancels: Vec<String>,
) -> References {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let mut refs = References::default();
    match endpoint.key {
        "POST /api/v3/brokerage/orders" => {
            if let Some(client_id) = param("client_order_id") {
                refs.client_ids.push((0, client_id.clone()));
            }
        }
        "POST /api/v3/brokerage/orders/edit" | "POST /api/v3/brokerage/orders/edit_preview" => {
            let symbol = orders
                .first()
                .map(|o| o.symbol.clone())
                .filter(|s| *s != crate::unresolved_symbol());
            refs.amends.push(Amend {
                leg: 0,
                order: OrderRef {
                    symbol,
                    id: param("order_id").cloned(),
                    client_id: None,
                    list: false,
                },
                kind: AmendKind::InPlace,
                side_given: false,
                size_given: true,
                price_given: true,
            });
        }
        "POST /api/v3/brokerage/orders/batch_cancel" => {
            refs.cancels = cancels
                .into_iter()
                .map(|id| OrderRef {
                    id: Some(id),
                    ..OrderRef::default()
                })
                .collect();
        }
        _ => {}
    }
    refs
}

/// What a Coinbase answer says happened (see [`Venue::outcome`]): orders and edits
/// answer HTTP 200 with `success` true or false; a batch cancel lists a result per
/// order id, in order. Previews place nothing.
fn outcome(call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
    let value = match Outcome::from_status(call, status, body) {
        Ok(value) => value,
        Err(outcome) => return outcome,
    };
    let mut outcome = Outcome::default();
    let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match call.endpoint.key {
        "POST /api/v3/brokerage/orders/preview" | "POST /api/v3/brokerage/orders/edit_preview" => {
            outcome.legs = vec![LegResult::Rejected; call.intent.orders.len()];
        }
        "POST /api/v3/brokerage/orders" | "POST /api/v3/brokerage/orders/edit" => {
            outcome.legs = vec![match value["success"].as_bool() {
                Some(true) => {
                    let response = &value["success_response"];
                    LegResult::Placed(Placed {
                        id: text(&response["order_id"]),
                        client_id: text(&response["client_order_id"]),
                        open: true,
                        ..Placed::default()
                    })
                }
                Some(false) => LegResult::Rejected,
                None => LegResult::Unknown,
            }];
        }
        "POST /api/v3/brokerage/orders/batch_cancel" => {
            let results: Vec<&serde_json::Value> =
                value["results"].as_array().into_iter().flatten().collect();
            let done: Vec<bool> = call
                .refs
                .cancels
                .iter()
                .map(|reference| {
                    results
                        .iter()
                        .any(|r| r["success"] == true && text(&r["order_id"]) == reference.id)
                })
                .collect();
            for (reference, cancelled) in call.refs.cancels.iter().zip(&done) {
                if let (true, Some(id)) = (*cancelled, &reference.id) {
                    outcome.closed.push((None, id.clone()));
                }
            }
            outcome.cancelled = Some(done);
        }
        _ => {
            let orders: Vec<&serde_json::Value> = match (&value["orders"], &value["order"]) {
                (serde_json::Value::Array(list), _) => list.iter().collect(),
                (_, order @ serde_json::Value::Object(_)) => vec![order],
                _ => Vec::new(),
            };
            for order in orders {
                let (Some(id), Some(product), Some(status)) = (
                    text(&order["order_id"]),
                    order["product_id"].as_str(),
                    order["status"].as_str(),
                ) else {
                    continue;
                };
                let Ok(symbol) = Symbol::new(product) else {
                    continue;
                };
                outcome.listed.push(Listed {
                    symbol,
                    id,
                    client_id: text(&order["client_order_id"]),
                    open: matches!(status, "OPEN" | "PENDING" | "QUEUED"),
                });
            }
        }
    }
    outcome
        .legs
        .resize(call.intent.orders.len(), LegResult::Unknown);
    outcome
}

/// The concrete path and canonical query of a parsed call.
fn target(call: &ParsedCall) -> (String, String) {
    let detail = DETAILS.iter().find(|d| d.key == call.endpoint.key);
    let mut path = call.endpoint.path.to_owned();
    let mut query_pairs: Vec<(&str, &str)> = Vec::new();
    for (name, value) in &call.params {
        match detail {
            Some(d) if d.path_param.is_some_and(|(p, _)| p == *name) => {
                let mut encoded = String::new();
                form::encode_into(&mut encoded, value);
                path = path.replace(&format!("{{{name}}}"), &encoded);
            }
            Some(d) if d.query.iter().any(|q| q.name == *name) => {
                query_pairs.push((name, value));
            }
            _ => {}
        }
    }
    (path, form::encode_pairs(query_pairs))
}

fn join(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

fn random_nonce() -> Result<String, SignError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SignError::Failed)?;
    Ok(crate::hex(&bytes))
}

/// The CDP JWT for one request: header `{alg, kid, nonce, typ}`, claims `{sub, iss,
/// nbf, exp, uri}` (compact JSON in that order), signed with the account's key (ES256
/// raw r||s, or EdDSA).
pub fn jwt(
    credential: &dyn Signer,
    method: &str,
    path: &str,
    nbf: u64,
    nonce: &str,
) -> Result<String, SignError> {
    signed_jwt(
        credential,
        Some(&format!("{method} {UPSTREAM_HOST}{path}")),
        nbf,
        nonce,
    )
}

/// The CDP JWT of a WebSocket subscription: [`jwt`]'s, naming no request (Coinbase's
/// WebSocket JWT has no `uri`).
pub fn stream_jwt(credential: &dyn Signer, nbf: u64, nonce: &str) -> Result<String, SignError> {
    signed_jwt(credential, None, nbf, nonce)
}

fn signed_jwt(
    credential: &dyn Signer,
    uri: Option<&str>,
    nbf: u64,
    nonce: &str,
) -> Result<String, SignError> {
    let alg = match credential.kind() {
        KeyKind::EcP256 => "ES256",
        KeyKind::Ed25519 => "EdDSA",
        KeyKind::Hmac | KeyKind::Rsa => return Err(SignError::WrongKeyKind),
    };
    let key_name = credential.api_key();
    let mut header = String::from("{\"alg\":");
    json::write_string(&mut header, alg);
    header.push_str(",\"kid\":");
    json::write_string(&mut header, key_name);
    header.push_str(",\"nonce\":");
    json::write_string(&mut header, nonce);
    header.push_str(",\"typ\":\"JWT\"}");
    let mut claims = String::from("{\"sub\":");
    json::write_string(&mut claims, key_name);
    claims.push_str(&format!(
        ",\"iss\":\"cdp\",\"nbf\":{nbf},\"exp\":{}",
        nbf + JWT_LIFETIME_S
    ));
    if let Some(uri) = uri {
        claims.push_str(",\"uri\":");
        json::write_string(&mut claims, uri);
    }
    claims.push('}');
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let signature = credential.sign_asymmetric(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64.encode(signature)))
}

/// A fresh random JWT nonce.
pub(crate) fn fresh_nonce() -> Result<String, SignError> {
    random_nonce()
}

#[cfg(test)]
mod tests;
