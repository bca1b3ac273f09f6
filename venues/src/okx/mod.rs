//! OKX v5 (`www.okx.com`, `/api/v5`): the money-movement floor, the strict JSON and
//! query parser, and the signer (`OK-ACCESS-SIGN` = base64 HMAC-SHA256 over
//! timestamp + METHOD + requestPath (with `?query`) + body, with the account's
//! passphrase in `OK-ACCESS-PASSPHRASE`).
//!
//! Demo trading: OKX selects its demo environment by the `x-simulated-trading: 1`
//! header, which is not signed. keyward signs for live accounts only: a bot's
//! `x-simulated-trading` must be absent or `0` (python-okx sends `0` with `flag='0'`),
//! anything else is refused (`param_invalid`), and keyward never forwards the header.
//! A demo key sent to live OKX fails at the exchange (50101), so a mismatch can
//! never trade; a bot asking for demo is told so rather than silently sent live.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use keyward_policy::{
    Decimal, EndpointClass, Execution, Intent, Order, Permit, Quote, Side, Size, Symbol,
    mentions_token,
};

use crate::SignError;
use crate::form;
use crate::json::{self, Json, JsonError};
use crate::limits::{Backoff, ExchangeLimit, UsageKind, UsageReport};
use crate::refusal::{Fault, Refusal, RefusalClass};
use crate::schema::{self, EndpointSpec, Kind, OrderTypeSpec, Param, Security};
use crate::{
    Amend, AmendKind, CallInput, Catalogue, ExchangeOrder, Housekeeping, LegResult, Listed, Lookup,
    OrderRef, Outbound, Outcome, ParseError, ParsedCall, Placed, Preview, References, SignContext,
    Venue, VenueId, echo_key, listed,
};

mod catalogue;
pub mod stream;

/// OKX v5.
pub static OKX: Okx = Okx {
    catalogue: Catalogue::new(&catalogue::ENDPOINTS),
};

/// The header OKX reads the API key from (and bots put their keyward token in).
pub const KEY_HEADER: &str = "ok-access-key";

/// The bot's own auth and environment headers: never forwarded (keyward forwards no
/// bot header at all), recorded as stripped when present.
const AUTH_HEADERS: [&str; 5] = [
    "ok-access-sign",
    "ok-access-timestamp",
    "ok-access-passphrase",
    "x-simulated-trading",
    "exptime",
];

/// Fields the parser reads but accepts only empty (`""`, `null` or `[]`), because
/// python-okx always sends them: options-only price forms, which would escape the
/// price checks, and attached TP/SL orders, which keyward does not model yet.
const EMPTY_ONLY: [&str; 5] = ["pxUsd", "pxVol", "newPxUsd", "newPxVol", "attachAlgoOrds"];

/// Broker attribution inside the body (ccxt's `tag`): removed, recorded as stripped.
const ATTRIBUTION: [&str; 1] = ["tag"];

/// No OKX endpoint keyward catalogues takes more than a dozen query parameters.
const MAX_PARAMS: usize = 32;

/// How long to pause on a 429 without a usable `Retry-After`: OKX counts in 2 s windows.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(2);
const LONGEST_PAUSE: Duration = Duration::from_secs(300);

/// See [`Venue::exchange_limits`] for OKX.
const LIMITS: &[ExchangeLimit] = &[ExchangeLimit {
    kind: UsageKind::Orders,
    window: Duration::from_secs(2),
    limit: 60,
}];

/// The OKX adapter.
#[derive(Debug)]
pub struct Okx {
    catalogue: Catalogue,
}

/// Exact paths that move money, from OKX's API reference: withdrawals, transfers,
/// conversions, borrowing and repaying, and a grid bot's income.
const MONEY_PATHS: &[&str] = &[
    "/api/v5/asset/withdrawal",
    "/api/v5/asset/withdrawal-lightning",
    "/api/v5/asset/cancel-withdrawal",
    "/api/v5/asset/transfer",
    "/api/v5/asset/convert-dust-assets",
    "/api/v5/trade/easy-convert",
    "/api/v5/trade/one-click-repay",
    "/api/v5/trade/one-click-repay-v2",
    "/api/v5/account/spot-manual-borrow-repay",
    "/api/v5/account/quick-margin-borrow-repay",
    "/api/v5/account/borrow-repay",
    "/api/v5/account/set-auto-loan",
    "/api/v5/account/set-auto-repay",
    "/api/v5/tradingBot/grid/withdraw-income",
];

/// Path prefixes that move money: earn and loans, fiat, conversion, sub-account
/// transfers, brokers.
const MONEY_PREFIXES: &[&str] = &[
    "/api/v5/finance/",
    "/api/v5/fiat/",
    "/api/v5/asset/convert/",
    "/api/v5/asset/subaccount/",
    "/api/v5/broker/",
    "/api/v5/users/",
];

impl Venue for Okx {
    fn streams(&self) -> Option<&'static dyn crate::stream::StreamVenue> {
        Some(&stream::STREAMS)
    }

    fn id(&self) -> VenueId {
        VenueId::Okx
    }

    fn default_upstream(&self) -> &'static str {
        "https://www.okx.com"
    }

    fn key_header(&self) -> &'static str {
        KEY_HEADER
    }

    fn catalogue(&self) -> &'static Catalogue {
        &OKX.catalogue
    }

    fn order_types(&self) -> &'static [OrderTypeSpec] {
        catalogue::ORDER_TYPES
    }

    fn floor(&self, _method: &Method, path: &str) -> Option<EndpointClass> {
        // Sub-account API keys: created, changed and deleted under /users/subaccount/.
        if path.starts_with("/api/v5/users/") && path.to_ascii_lowercase().contains("apikey") {
            return Some(EndpointClass::KeyManagement);
        }
        listed(path, MONEY_PATHS, MONEY_PREFIXES).then_some(EndpointClass::MoneyMovement)
    }

    fn parse(
        &self,
        endpoint: &'static EndpointSpec,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        let mut stripped = stripped_headers(input.headers)?;
        let mut reader = Reader::default();
        let body = if endpoint.method == Method::GET {
            if !input.body.is_empty() {
                return Err(ParseError::BodyNotAllowed);
            }
            reader.query(
                endpoint.params,
                input.query,
                endpoint.path == "/api/v5/trade/order",
            )?;
            None
        } else {
            if let Some((key, _)) = form::parse_pairs(input.query, MAX_PARAMS)
                .map_err(ParseError::Form)?
                .first()
            {
                // OKX takes POST parameters in the JSON body only; a query would be
                // signed as part of the path and read by nobody keyward checked.
                return Err(ParseError::ParamUnknown { key: echo_key(key) });
            }
            let shape = body_shape(endpoint).ok_or(ParseError::JsonInvalid { param: "body" })?;
            Some(reader.body(shape, input, &mut stripped)?)
        };
        let Reader {
            params,
            mut symbols,
            orders,
            refs,
        } = reader;
        symbols.sort();
        symbols.dedup();
        stripped.sort_unstable();
        stripped.dedup();
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
        signed(call, context)
    }

    fn preview(&self, call: &ParsedCall, _recv_window_ms: u32) -> Preview {
        let mut headers = Vec::new();
        if call.endpoint.security != Security::Public {
            headers.push(format!("{KEY_HEADER}: <the account's API key>"));
            headers.push(
                "ok-access-sign: <base64 HMAC-SHA256 of timestamp + method + path + body>"
                    .to_owned(),
            );
            headers.push("ok-access-timestamp: <keyward's clock, ISO-8601 ms>".to_owned());
            headers.push("ok-access-passphrase: <the account's passphrase>".to_owned());
        }
        if call.body.is_some() {
            headers.push(format!("content-type: {JSON}"));
        }
        Preview {
            method: call.endpoint.method.clone(),
            path_and_query: request_path(call),
            headers,
            body: call.body.clone().unwrap_or_default(),
        }
    }

    fn refusal(&self, refusal: &Refusal) -> (&'static str, Vec<u8>) {
        refusal_body(refusal)
    }

    /// keyward's status. OKX answers its codes with 4xx and 5xx statuses of the
    /// same meaning (401 for 50111, 429 for 50011, 400 for parameter errors, 500 for
    /// 50026), and neither client reads the status: python-okx returns the body
    /// whatever it is, ccxt raises by `code` whatever it is.
    fn refusal_status(&self, refusal: &Refusal) -> StatusCode {
        refusal.status
    }

    fn exchange_limits(&self) -> &'static [ExchangeLimit] {
        // OKX limits per endpoint and user in 2 s windows (place order: 60 per
        // instrument; batch: 300 orders) and reports no usage headers, so these are
        // what the documentation says rather than counters keyward reads.
        LIMITS
    }

    fn usage(&self, _headers: &HeaderMap) -> Vec<UsageReport> {
        Vec::new()
    }

    fn refused_outright(&self, status: StatusCode, body: &[u8]) -> bool {
        // OKX answers "0" for success, "2" when part of a batch succeeded, "1" when
        // every operation failed, and other codes when the request was refused whole.
        status.is_client_error()
            || serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|value| {
                value["code"]
                    .as_str()
                    .is_some_and(|code| code != "0" && code != "2")
            })
    }

    fn backoff(&self, status: StatusCode, headers: &HeaderMap) -> Option<Backoff> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_RATE_LIMIT_PAUSE, Duration::from_secs)
            .clamp(Duration::from_secs(1), LONGEST_PAUSE);
        Some(Backoff {
            retry_after,
            banned: false,
        })
    }

    fn time_path(&self) -> &'static str {
        "/api/v5/public/time"
    }

    fn server_time_ms(&self, body: &[u8]) -> Option<u64> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if value.get("code")?.as_str()? != "0" {
            return None;
        }
        value.get("data")?.get(0)?.get("ts")?.as_str()?.parse().ok()
    }

    fn housekeeping(&self, task: Housekeeping, symbol: &Symbol) -> (&'static str, String) {
        let key = match task {
            Housekeeping::Quote => "GET /api/v5/market/ticker",
            Housekeeping::OpenOrders => "GET /api/v5/trade/orders-pending",
            // OKX has no cancel-all for one spot or swap instrument (mass-cancel is for
            // options market makers); this key is not catalogued, so the kill switch
            // reports that it could not cancel rather than pretending it did.
            Housekeeping::CancelAll => "POST /api/v5/trade/cancel-all-orders-unsupported",
        };
        let mut query = String::from("instId=");
        form::encode_into(&mut query, symbol.as_str());
        (key, query)
    }

    fn parse_quote(&self, body: &[u8]) -> Option<Quote> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if value.get("code")?.as_str()? != "0" {
            return None;
        }
        let ticker = value.get("data")?.get(0)?;
        let quote = Quote {
            bid: ticker.get("bidPx")?.as_str()?.parse().ok()?,
            ask: ticker.get("askPx")?.as_str()?.parse().ok()?,
            slow: None,
        };
        // An empty side or a crossed book is no reference to trade against.
        let sane = !quote.bid.is_zero() && !quote.ask.is_zero() && quote.ask >= quote.bid;
        sane.then_some(quote)
    }

    fn outcome(&self, call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
        outcome(call, status, body)
    }

    fn slow_price(&self, symbol: &Symbol) -> Option<(&'static str, String)> {
        // The index of the pair (BTC-USDT for BTC-USDT and BTC-USDT-SWAP), made from
        // several exchanges' prices.
        let mut segments = symbol.as_str().split('-');
        let index = format!("{}-{}", segments.next()?, segments.next()?);
        let mut query = String::from("instId=");
        form::encode_into(&mut query, &index);
        Some(("GET /api/v5/market/index-tickers", query))
    }

    fn parse_slow_price(&self, body: &[u8]) -> Option<Decimal> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if value.get("code")?.as_str()? != "0" {
            return None;
        }
        crate::positive_decimal(value.get("data")?.get(0)?.get("idxPx")?)
    }

    fn order_lookup(&self, reference: &OrderRef) -> Option<Lookup> {
        let symbol = reference.symbol.clone()?;
        let mut query = String::from("instId=");
        form::encode_into(&mut query, symbol.as_str());
        reference.append_to_query(&mut query, "ordId", "clOrdId")?;
        Some(Lookup {
            key: "GET /api/v5/trade/order",
            path: None,
            query,
            form: None,
            symbol: Some(symbol),
        })
    }

    fn looked_up_order(&self, body: &[u8]) -> Option<ExchangeOrder> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        if value.get("code")?.as_str()? != "0" {
            return None;
        }
        let order = value.get("data")?.get(0)?;
        let text = |key: &str| order.get(key)?.as_str().filter(|s| !s.is_empty());
        let order_type = text("ordType")?;
        let execution = catalogue::ORDER_TYPES
            .iter()
            .find(|t| t.name == order_type)?
            .execution;
        Some(ExchangeOrder {
            symbol: Symbol::new(text("instId")?).ok()?,
            side: match text("side")? {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => return None,
            },
            order_type: Arc::from(order_type),
            execution,
            size: Size::Base(crate::positive_decimal(order.get("sz")?)?),
            price: order.get("px").and_then(crate::positive_decimal),
            trigger: None,
            id: text("ordId")?.to_owned(),
            client_id: text("clOrdId").map(str::to_owned),
            open: matches!(text("state"), Some("live" | "partially_filled")),
        })
    }

    fn check_symbol(&self, symbol: &str) -> Result<(), &'static str> {
        if is_inst_id(symbol) {
            Ok(())
        } else {
            Err("it exactly as OKX writes the instId, e.g. \"BTC-USDT\" or \"BTC-USDT-SWAP\"")
        }
    }
}

const JSON: &str = "application/json";

/// The request [`Venue::sign`] sends once the permit matches: OKX's four headers
/// over exactly the path, query and body that go out.
fn signed(call: &ParsedCall, context: SignContext<'_>) -> Result<Outbound, SignError> {
    let path_and_query = request_path(call);
    let body = call.body.clone().unwrap_or_default();
    let mut headers = Vec::new();
    if call.endpoint.security != Security::Public {
        let credential = context.credential;
        // Refuse before computing anything when the vault entry cannot sign for OKX.
        if !credential.has_passphrase() {
            return Err(SignError::NoPassphrase);
        }
        let timestamp = iso_timestamp(context.timestamp_ms);
        let prehash = format!(
            "{timestamp}{}{path_and_query}{body}",
            call.endpoint.method.as_str()
        );
        let signature = base64::engine::general_purpose::STANDARD
            .encode(credential.hmac_sha256(prehash.as_bytes())?);
        let passphrase = credential.passphrase_header()?;
        let mut key =
            HeaderValue::from_str(credential.api_key()).map_err(|_| SignError::InvalidApiKey)?;
        key.set_sensitive(true);
        let mut sign = HeaderValue::from_str(&signature).map_err(|_| SignError::Failed)?;
        sign.set_sensitive(true);
        headers.push((HeaderName::from_static(KEY_HEADER), key));
        headers.push((HeaderName::from_static("ok-access-sign"), sign));
        headers.push((
            HeaderName::from_static("ok-access-timestamp"),
            HeaderValue::from_str(&timestamp).map_err(|_| SignError::Failed)?,
        ));
        headers.push((HeaderName::from_static("ok-access-passphrase"), passphrase));
    }
    if call.body.is_some() {
        headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static(JSON)));
    }
    Ok(Outbound {
        method: call.endpoint.method.clone(),
        path_and_query,
        headers,
        body: body.into_bytes(),
    })
}

/// OKX's `{"code":"..","msg":"..","data":[]}` envelope, with the HTTP status keyward
/// chose. `code` is a string, as OKX sends it, and is one of OKX's own codes for the
/// same kind of failure, picked so ccxt raises the matching class from its exact-code
/// table: 50111 (AuthenticationError) for 401, 50027 (PermissionDenied) for policy
/// refusals, 50011 (RateLimitExceeded) for 429 and exchange back-offs, 50002 (malformed
/// JSON), 50006 (Content-Type), 50014 (missing parameter) and 51000 (parameter error),
/// all BadRequest, for malformed requests, 50004 (RequestTimeout) when the exchange
/// did not answer in time and 50026 (ExchangeNotAvailable) for other upstream faults.
/// ccxt puts the whole body, keyward's message included, in the exception text;
/// python-okx raises nothing on any status and returns the body, so the bot sees
/// `code` and `msg` as it would see OKX's own refusals. `data` is empty: keyward
/// refuses requests whole, never single orders of a batch.
pub fn refusal_body(refusal: &Refusal) -> (&'static str, Vec<u8>) {
    let code = match refusal.class {
        RefusalClass::ExchangeBanned | RefusalClass::RateLimited => "50011",
        RefusalClass::Unauthenticated => "50111",
        RefusalClass::Forbidden | RefusalClass::SymbolForbidden => "50027",
        RefusalClass::UnsupportedMediaType | RefusalClass::UnsupportedEncoding => "50006",
        RefusalClass::Timeout => "50004",
        RefusalClass::Internal | RefusalClass::Unavailable | RefusalClass::OutcomeUnknown => {
            "50026"
        }
        RefusalClass::Invalid(Fault::JsonInvalid) => "50002",
        RefusalClass::Invalid(Fault::ParamMissing) => "50014",
        RefusalClass::Invalid(Fault::ParamDuplicate | Fault::ParamUnknown | Fault::Other)
        | RefusalClass::MethodNotAllowed => "51000",
    };
    let detail = if refusal.class == RefusalClass::UnsupportedMediaType {
        "the body must be application/json"
    } else {
        &refusal.message
    };
    let body = serde_json::json!({
        "code": code,
        "msg": format!("keyward: {}: {detail}", refusal.reason),
        "data": [],
    });
    (JSON, body.to_string().into_bytes())
}

/// The path OKX signs: the path, plus `?query` for a GET with parameters.
fn request_path(call: &ParsedCall) -> String {
    if call.endpoint.method != Method::GET || call.params.is_empty() {
        return call.endpoint.path.to_owned();
    }
    let query = form::encode_pairs(call.params.iter().map(|(k, v)| (*k, v.as_str())));
    format!("{}?{query}", call.endpoint.path)
}

/// `2020-12-08T09:08:57.715Z` for a time in ms since the epoch (UTC).
pub fn iso_timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// The bot's OK-ACCESS-* and environment headers, and the live-only rule for
/// `x-simulated-trading` (see the module documentation).
fn stripped_headers(headers: &HeaderMap) -> Result<Vec<&'static str>, ParseError> {
    let mut stripped = Vec::new();
    for name in AUTH_HEADERS {
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            continue;
        }
        if name == "x-simulated-trading" && !values.all(|v| v.as_bytes() == b"0") {
            return Err(ParseError::invalid(
                "x-simulated-trading",
                "0 or absent: keyward signs for live OKX accounts only",
            ));
        }
        stripped.push(name);
    }
    Ok(stripped)
}

/// What a POST body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// New orders.
    Place,
    /// Changes to open orders.
    Amend,
    /// Cancels.
    Cancel,
}

/// (is a JSON array, element fields, role) of a POST endpoint's body.
fn body_shape(endpoint: &EndpointSpec) -> Option<(bool, &'static [Param], Role)> {
    Some(match endpoint.path {
        "/api/v5/trade/order" => (false, catalogue::ORDER, Role::Place),
        "/api/v5/trade/batch-orders" => (true, catalogue::ORDER, Role::Place),
        "/api/v5/trade/amend-order" => (false, catalogue::AMEND, Role::Amend),
        "/api/v5/trade/amend-batch-orders" => (true, catalogue::AMEND, Role::Amend),
        "/api/v5/trade/cancel-order" => (false, catalogue::CANCEL, Role::Cancel),
        "/api/v5/trade/cancel-batch-orders" => (true, catalogue::CANCEL, Role::Cancel),
        _ => return None,
    })
}

/// What parsing collects.
#[derive(Default)]
struct Reader {
    params: Vec<(&'static str, String)>,
    symbols: Vec<Symbol>,
    orders: Vec<Order>,
    refs: References,
}

/// One validated object or query: values by field, in document order of the table.
type Fields = HashMap<&'static str, String>;

impl Reader {
    fn query(
        &mut self,
        params: &'static [Param],
        query: &str,
        needs_id: bool,
    ) -> Result<(), ParseError> {
        let pairs = form::parse_pairs(query, MAX_PARAMS).map_err(ParseError::Form)?;
        if pairs
            .iter()
            .any(|(key, value)| mentions_token(key) || mentions_token(value))
        {
            return Err(ParseError::TokenInParams);
        }
        let mut fields = Fields::new();
        for (key, value) in pairs {
            let param = lookup(params, &key)?;
            validate(param.kind, &value)
                .map_err(|expected| ParseError::invalid(param.name, expected))?;
            fields.insert(param.name, value);
        }
        require_all(params, &fields)?;
        if needs_id {
            // GET trade/order: one of the two ids names the order.
            require_id(&fields)?;
        }
        self.symbols.extend(inst_symbol(&fields)?);
        self.params = in_table_order(params, &fields);
        Ok(())
    }

    fn body(
        &mut self,
        (is_array, element, role): (bool, &'static [Param], Role),
        input: &CallInput<'_>,
        stripped: &mut Vec<&'static str>,
    ) -> Result<String, ParseError> {
        if !input.body.is_empty() && !input.content_type.is_some_and(is_json_content_type) {
            return Err(ParseError::UnsupportedMediaType);
        }
        let text = std::str::from_utf8(input.body)
            .map_err(|_| ParseError::JsonInvalid { param: "body" })?;
        // python-okx sends `{}` for a POST without parameters, ccxt sends nothing.
        let text = if text.is_empty() { "{}" } else { text };
        let parsed = Json::parse(text).map_err(|e| match e {
            JsonError::DuplicateKey(key) => ParseError::JsonDuplicateKey {
                param: "body",
                key: echo_key(&key),
            },
            JsonError::Invalid(_) => ParseError::JsonInvalid { param: "body" },
        })?;
        if parsed.mentions_token() {
            return Err(ParseError::TokenInParams);
        }
        let objects = match (is_array, parsed) {
            (true, Json::Array(items)) => {
                if items.is_empty() {
                    return Err(ParseError::JsonInvalid { param: "body" });
                }
                if items.len() > catalogue::MAX_BATCH {
                    return Err(ParseError::BatchTooLarge {
                        max: catalogue::MAX_BATCH,
                    });
                }
                items
            }
            (false, object @ Json::Object(_)) => vec![object],
            _ => return Err(ParseError::JsonInvalid { param: "body" }),
        };
        let mut canonical = String::new();
        if is_array {
            canonical.push('[');
        }
        for (index, object) in objects.into_iter().enumerate() {
            let Json::Object(entries) = object else {
                return Err(ParseError::JsonInvalid { param: "body" });
            };
            let fields = read_object(entries, element, stripped)?;
            let symbol = inst_symbol(&fields)?.ok_or(ParseError::ParamMissing { key: "instId" })?;
            match role {
                Role::Place => {
                    if let Some(client_id) = fields.get("clOrdId") {
                        self.refs
                            .client_ids
                            .push((self.orders.len(), client_id.clone()));
                    }
                    self.orders.push(place_order(&symbol, &fields)?);
                }
                Role::Amend => {
                    let (order, amend) = amend_order(&symbol, &fields, self.orders.len())?;
                    self.refs.amends.push(amend);
                    self.orders.push(order);
                }
                Role::Cancel => self.refs.cancels.push(order_ref(&symbol, &fields)?),
            }
            if index > 0 {
                canonical.push(',');
            }
            write_object(&mut canonical, element, &fields);
            if is_array {
                // Batches keep each element's instId, in order, for `order_changes`.
                self.params.push(("instId", symbol.as_str().to_owned()));
            } else {
                self.params = in_table_order(element, &fields);
            }
            self.symbols.push(symbol);
        }
        if is_array {
            canonical.push(']');
        }
        Ok(canonical)
    }
}

/// Reads one JSON object under `fields`: `""` and `null` mean absent (python-okx
/// sends every optional field that way), unknown keys are refused, values must be
/// JSON strings (booleans also as JSON booleans) in their grammar.
fn read_object(
    entries: Vec<(String, Json)>,
    fields: &'static [Param],
    stripped: &mut Vec<&'static str>,
) -> Result<Fields, ParseError> {
    let mut values = Fields::new();
    for (key, value) in entries {
        if let Some(name) = ATTRIBUTION.iter().find(|a| **a == key) {
            stripped.push(name);
            continue;
        }
        if let Some(name) = EMPTY_ONLY.iter().find(|e| **e == key) {
            let empty = match &value {
                Json::Null => true,
                Json::String(text) => text.is_empty(),
                Json::Array(items) => items.is_empty(),
                _ => false,
            };
            if !empty {
                return Err(ParseError::invalid(
                    name,
                    "empty: keyward does not accept options prices or attached TP/SL orders",
                ));
            }
            continue;
        }
        let param = lookup(fields, &key)?;
        let text = match value {
            Json::Null => continue,
            Json::String(text) if text.is_empty() => continue,
            Json::String(text) => text,
            Json::Bool(flag) if param.kind == Kind::Bool => flag.to_string(),
            _ => return Err(ParseError::invalid(param.name, "a JSON string")),
        };
        validate(param.kind, &text)
            .map_err(|expected| ParseError::invalid(param.name, expected))?;
        values.insert(param.name, text);
    }
    require_all(fields, &values)?;
    Ok(values)
}

/// Appends `fields` as a JSON object in table order: strings, and booleans as JSON
/// booleans as OKX documents them.
fn write_object(out: &mut String, table: &'static [Param], fields: &Fields) {
    out.push('{');
    let present = table
        .iter()
        .filter_map(|p| fields.get(p.name).map(|v| (p, v)));
    for (position, (param, value)) in present.enumerate() {
        if position > 0 {
            out.push(',');
        }
        json::write_string(out, param.name);
        out.push(':');
        if param.kind == Kind::Bool {
            out.push_str(value);
        } else {
            json::write_string(out, value);
        }
    }
    out.push('}');
}

fn in_table_order(table: &'static [Param], fields: &Fields) -> Vec<(&'static str, String)> {
    table
        .iter()
        .filter_map(|p| fields.get(p.name).map(|v| (p.name, v.clone())))
        .collect()
}

/// One new order. Sizing follows OKX: `sz` is base currency (contracts for swaps and
/// futures) except for spot market orders, where `tgtCcy` chooses and a buy defaults
/// to quote currency. `tdMode` other than `cash` on a spot instrument borrows.
fn place_order(symbol: &Symbol, fields: &Fields) -> Result<Order, ParseError> {
    let text = |name: &'static str| fields.get(name).map(String::as_str);
    let order_type = text("ordType").ok_or(ParseError::ParamMissing { key: "ordType" })?;
    let execution = catalogue::ORDER_TYPES
        .iter()
        .find(|t| t.name == order_type)
        .map(|t| t.execution)
        .ok_or_else(|| ParseError::invalid("ordType", "an order type OKX documents"))?;
    let side = match text("side") {
        Some("buy") => Side::Buy,
        Some("sell") => Side::Sell,
        _ => return Err(ParseError::invalid("side", "buy or sell")),
    };
    let size = decimal(fields, "sz")?.ok_or(ParseError::ParamMissing { key: "sz" })?;
    let price = decimal(fields, "px")?;
    let market = execution == Execution::Market;
    match (market, price) {
        (false, None) => return Err(ParseError::ParamMissing { key: "px" }),
        (true, Some(_)) => {
            return Err(ParseError::invalid("px", "absent for market orders"));
        }
        _ => {}
    }
    let spot = is_spot(symbol.as_str());
    if spot && order_type == "optimal_limit_ioc" {
        // OKX documents it for futures and swaps only; on a spot pair keyward could
        // only guess whether it is sized like a market order or like a limit one.
        return Err(ParseError::invalid(
            "ordType",
            "an order type OKX documents for spot (optimal_limit_ioc is for futures and swaps)",
        ));
    }
    let target = text("tgtCcy");
    let size = if spot && market {
        match (side, target) {
            (Side::Buy, Some("base_ccy")) | (Side::Sell, None | Some("base_ccy")) => {
                Size::Base(size)
            }
            _ => Size::Quote(size),
        }
    } else {
        // OKX reads tgtCcy only on spot market orders; a quote target anywhere else
        // would mean something keyward cannot tell, so it is refused.
        if target == Some("quote_ccy") {
            return Err(ParseError::invalid(
                "tgtCcy",
                "base_ccy or absent except on spot market orders",
            ));
        }
        Size::Base(size)
    };
    Ok(Order {
        symbol: symbol.clone(),
        side,
        order_type: Arc::from(order_type),
        execution,
        size,
        price,
        trigger: None,
        amend: false,
        margin: spot && text("tdMode") != Some("cash"),
        reduce_only: text("reduceOnly") == Some("true"),
    })
}

/// An amend names neither side nor type: keyward takes them, and whatever of size
/// and price the amend leaves unchanged, from its record of the order before the
/// policy decides.
fn amend_order(
    symbol: &Symbol,
    fields: &Fields,
    index: usize,
) -> Result<(Order, Amend), ParseError> {
    let reference = order_ref(symbol, fields)?;
    let size = decimal(fields, "newSz")?;
    let price = decimal(fields, "newPx")?;
    if size.is_none() && price.is_none() {
        return Err(ParseError::ParamMissing { key: "newSz" });
    }
    let order = Order {
        symbol: symbol.clone(),
        // Placeholders until the record's side and type replace them.
        side: Side::Buy,
        order_type: Arc::from("limit"),
        execution: Execution::Limit,
        size: size.map_or(Size::WholePosition, Size::Base),
        price,
        trigger: None,
        amend: true,
        margin: false,
        reduce_only: false,
    };
    let amend = Amend {
        leg: index,
        order: reference,
        kind: AmendKind::InPlace,
        side_given: false,
        size_given: size.is_some(),
        price_given: price.is_some(),
    };
    Ok((order, amend))
}

/// The order a cancel or amend names by `ordId` and/or `clOrdId`.
fn order_ref(symbol: &Symbol, fields: &Fields) -> Result<OrderRef, ParseError> {
    require_id(fields)?;
    Ok(OrderRef {
        symbol: Some(symbol.clone()),
        id: fields.get("ordId").cloned(),
        client_id: fields.get("clOrdId").cloned(),
        list: false,
    })
}

fn require_id(fields: &Fields) -> Result<(), ParseError> {
    if fields.contains_key("ordId") || fields.contains_key("clOrdId") {
        Ok(())
    } else {
        Err(ParseError::ParamMissing { key: "ordId" })
    }
}

fn decimal(fields: &Fields, name: &'static str) -> Result<Option<Decimal>, ParseError> {
    fields
        .get(name)
        .map(|v| {
            v.parse::<Decimal>()
                .map_err(|_| ParseError::invalid(name, "a plain decimal"))
        })
        .transpose()
}

fn inst_symbol(fields: &Fields) -> Result<Option<Symbol>, ParseError> {
    fields
        .get("instId")
        .map(|v| Symbol::new(v).map_err(|_| ParseError::invalid("instId", "an OKX instrument id")))
        .transpose()
}

fn lookup(params: &'static [Param], key: &str) -> Result<&'static Param, ParseError> {
    params
        .iter()
        .find(|p| p.name == key)
        .ok_or_else(|| ParseError::ParamUnknown { key: echo_key(key) })
}

fn require_all(params: &'static [Param], values: &Fields) -> Result<(), ParseError> {
    match params
        .iter()
        .find(|p| p.required && !values.contains_key(p.name))
    {
        Some(missing) => Err(ParseError::ParamMissing { key: missing.name }),
        None => Ok(()),
    }
}

/// OKX's grammars for the kinds it reads differently (see the catalogue's header).
fn validate(kind: Kind, value: &str) -> Result<(), &'static str> {
    let ok = match kind {
        Kind::Symbol => is_inst_id(value),
        Kind::ClientId => {
            (1..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        Kind::SymbolList => {
            let items: Vec<&str> = value.split(',').collect();
            items.len() <= 20
                && items.iter().all(|item| {
                    (1..=16).contains(&item.len())
                        && item
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                })
        }
        other => return schema::validate(other, value),
    };
    if ok {
        Ok(())
    } else {
        Err(match kind {
            Kind::Symbol => "an OKX instrument id such as BTC-USDT or BTC-USDT-SWAP",
            Kind::ClientId => "1 to 32 letters and digits",
            _ => "a comma-separated list of currencies such as BTC,USDT",
        })
    }
}

/// `BTC-USDT`, `BTC-USDT-SWAP`, `BTC-USD-250328`, `BTC-USD-250328-70000-C`: uppercase
/// letters and digits in segments joined by single hyphens, at most 64 bytes.
fn is_inst_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value.split('-').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
}

/// Spot (and margin) instruments are `BASE-QUOTE`; every derivative has more segments.
fn is_spot(inst_id: &str) -> bool {
    inst_id.split('-').count() == 2
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

/// Codes that say the request's fate is not known: service unavailable, timeout
/// ("does not mean that the request was successful or failed"), busy, system error.
const UNKNOWN_FATE: [&str; 4] = ["50001", "50004", "50013", "50026"];

/// What an OKX answer says happened (see [`Venue::outcome`]). `code` "0" is success,
/// "1" every operation failed and "2" some did, each element of `data` with its own
/// `sCode` in request order; any other code refused the request whole. Order reads
/// carry `instId`, `ordId` and `state`.
fn outcome(call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
    let value = match Outcome::from_status(call, status, body) {
        Ok(value) => value,
        Err(outcome) => return outcome,
    };
    match value.get("code").and_then(serde_json::Value::as_str) {
        Some("0" | "1" | "2") => {}
        Some(code) if !UNKNOWN_FATE.contains(&code) => return Outcome::refused(call),
        _ => return Outcome::all(call, &LegResult::Unknown),
    }
    let items: Vec<&serde_json::Value> = value
        .get("data")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let text = |item: &serde_json::Value, key: &str| {
        item.get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let ok = |item: &serde_json::Value| text(item, "sCode").as_deref() == Some("0");
    let mut outcome = Outcome::default();
    match call.endpoint.class {
        EndpointClass::Trade => {
            outcome.legs = (0..call.intent.orders.len())
                .map(|index| match items.get(index) {
                    Some(item) if ok(item) => LegResult::Placed(Placed {
                        id: text(item, "ordId"),
                        client_id: text(item, "clOrdId"),
                        list_id: None,
                        list_client_id: None,
                        open: true,
                    }),
                    Some(_) => LegResult::Rejected,
                    None => LegResult::Unknown,
                })
                .collect();
        }
        EndpointClass::Cancel => {
            let done: Vec<bool> = (0..call.refs.cancels.len())
                .map(|index| items.get(index).is_some_and(|item| ok(item)))
                .collect();
            for (reference, (item, cancelled)) in
                call.refs.cancels.iter().zip(items.iter().zip(&done))
            {
                if let (true, Some(id)) = (*cancelled, text(item, "ordId")) {
                    outcome.closed.push((reference.symbol.clone(), id));
                }
            }
            outcome.cancelled = Some(done);
        }
        _ => {
            for item in items {
                let (Some(inst), Some(id), Some(state)) = (
                    text(item, "instId"),
                    text(item, "ordId"),
                    text(item, "state"),
                ) else {
                    continue;
                };
                let Ok(symbol) = Symbol::new(&inst) else {
                    continue;
                };
                outcome.listed.push(Listed {
                    symbol,
                    id,
                    client_id: text(item, "clOrdId"),
                    open: matches!(state.as_str(), "live" | "partially_filled"),
                });
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests;
