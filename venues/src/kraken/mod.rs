//! Kraken spot REST (`api.kraken.com`): the money-movement floor, the strict parser
//! (form and JSON bodies, pair aliases, `oflags=viqc`, conditional `close[...]`
//! orders, batches, edits and amends) and the signer:
//! `API-Sign = base64(HMAC-SHA512(base64decode(secret), path || SHA256(nonce || body)))`
//! over exactly the body sent, with keyward's own nonce.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use keyward_policy::{
    Decimal, EndpointClass, Execution, Intent, Order, Permit, Quote, Side, Size, Symbol,
};

use crate::form::{self, FormError};
use crate::json::{self, Json, JsonError};
use crate::limits::{Backoff, ExchangeLimit, UsageReport};
use crate::refusal::{Refusal, RefusalClass};
use crate::schema::{self, EndpointSpec, Kind, OrderTypeSpec, Security};
use crate::sign::{KeyUnfit, SignError, Signer};
use crate::{
    Amend, AmendKind, CallInput, Catalogue, ExchangeOrder, Housekeeping, LegResult, Listed, Lookup,
    OrderRef, Outbound, Outcome, ParseError, ParsedCall, Placed, Preview, References, SignContext,
    Venue, VenueId, echo_key,
};

mod catalogue;
mod pair;
pub mod stream;

use catalogue::{Detail, Grammar, Need, Orders, P};

/// Kraken spot.
pub static KRAKEN: Kraken = Kraken {
    catalogue: Catalogue::new(&catalogue::ENDPOINTS),
};

/// The header Kraken reads the API key from (and bots put their keyward token in).
pub const KEY_HEADER: &str = "api-key";
const SIGN_HEADER: &str = "api-sign";

/// The bot's own auth fields: its nonce (keyward sends its own, from a counter that
/// only grows per key) and its 2FA one-time password (never a bot's to give).
const AUTH_FIELDS: [&str; 2] = ["nonce", "otp"];

/// No Kraken endpoint takes more than about 25 parameters.
const MAX_PARAMS: usize = 64;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// How long to pause on a rate-limit answer without a usable `Retry-After`. Kraken's
/// counters decay by about one per second or faster, so a short pause clears them.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(15);
const TOO_MANY_PAUSE: Duration = Duration::from_secs(30);
/// `EGeneral:Temporary lockout` follows repeated violations; Kraken does not say for
/// how long, so keyward waits a good while.
const LOCKOUT_PAUSE: Duration = Duration::from_secs(300);
const LONGEST_PAUSE: Duration = Duration::from_secs(86_400);

/// The Kraken spot adapter.
#[derive(Debug)]
pub struct Kraken {
    catalogue: Catalogue,
}

/// Validated scalar values by parameter name.
type Values = HashMap<&'static str, String>;

impl Venue for Kraken {
    fn id(&self) -> VenueId {
        VenueId::Kraken
    }

    fn default_upstream(&self) -> &'static str {
        "https://api.kraken.com"
    }

    fn key_header(&self) -> &'static str {
        KEY_HEADER
    }

    fn answered_by_keyward(&self, endpoint: &EndpointSpec) -> bool {
        // The WebSocket token: whoever holds Kraken's own trades on the
        // authenticated WebSocket with no proxy in the path, so a bot only ever
        // gets one keyward minted.
        endpoint.key == stream::TOKEN_ENDPOINT
    }

    fn streams(&self) -> Option<&'static dyn crate::stream::StreamVenue> {
        Some(&stream::STREAMS)
    }

    fn catalogue(&self) -> &'static Catalogue {
        &KRAKEN.catalogue
    }

    fn order_types(&self) -> &'static [OrderTypeSpec] {
        catalogue::ORDER_TYPES
    }

    fn floor(&self, _method: &Method, path: &str) -> Option<EndpointClass> {
        let starts = |prefix: &str| {
            path.get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        };
        if catalogue::KEY_PREFIXES.iter().any(|p| starts(p)) {
            return Some(EndpointClass::KeyManagement);
        }
        // The WebSocket token is answered by keyward at its exact path; any other
        // spelling of it stays on the floor.
        if path.eq_ignore_ascii_case(stream::TOKEN_PATH) && path != stream::TOKEN_PATH {
            return Some(EndpointClass::MoneyMovement);
        }
        let money = catalogue::MONEY_PATHS
            .iter()
            .any(|p| path.eq_ignore_ascii_case(p))
            || catalogue::MONEY_PREFIXES.iter().any(|p| starts(p));
        money.then_some(EndpointClass::MoneyMovement)
    }

    fn parse(
        &self,
        endpoint: &'static EndpointSpec,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        let detail = catalogue::detail(endpoint.key)
            .ok_or_else(|| ParseError::invalid("path", "an endpoint keyward catalogues"))?;
        let (fields, json_body) = read_fields(endpoint, detail, input)?;
        if fields
            .iter()
            .any(|(key, value)| keyward_policy::mentions_token(key) || value.mentions_token())
        {
            return Err(ParseError::TokenInParams);
        }
        let mut stripped = Vec::new();
        if input.headers.contains_key(SIGN_HEADER) {
            stripped.push("API-Sign");
        }
        let mut values = Values::new();
        let mut lists: HashMap<&'static str, Json> = HashMap::new();
        for (key, value) in fields {
            if let Some(auth) = AUTH_FIELDS.iter().find(|a| **a == key.as_str()) {
                stripped.push(*auth);
                continue;
            }
            if json_body && key == "close" && lookup(detail.params, "close[ordertype]").is_ok() {
                read_close(detail.params, value, &mut values)?;
                continue;
            }
            let param = lookup(detail.params, &key)?;
            if json_body && param.name.starts_with("close[") {
                // In JSON the close template is a nested `close` object.
                return Err(ParseError::ParamUnknown {
                    key: echo_key(&key),
                });
            }
            if is_list(param.grammar) {
                if !json_body {
                    return Err(ParseError::invalid(
                        param.name,
                        "a JSON list in a JSON body",
                    ));
                }
                lists.insert(param.name, value);
            } else {
                values.insert(param.name, scalar(param, &value)?);
            }
        }
        require(detail.params, &values, &lists)?;
        need(detail.need, &values, &lists)?;
        let mut symbols = symbols_of(detail.params, &values)?;
        let mut list_text: HashMap<&'static str, String> = HashMap::new();
        let mut refs = References::default();
        let orders = match detail.orders {
            Orders::None => Vec::new(),
            Orders::Add => {
                if let Some(client_id) = values.get("cl_ord_id") {
                    refs.client_ids.push((0, client_id.clone()));
                }
                add_orders(&values, &the_pair(&values)?)?
            }
            Orders::Edit => {
                let symbol = the_pair(&values)?;
                refs.amends.push(Amend {
                    leg: 0,
                    order: order_ref(Some(&symbol), &values),
                    kind: AmendKind::Replaces,
                    side_given: false,
                    size_given: true,
                    price_given: true,
                });
                vec![edit_order(&values, &symbol)?]
            }
            Orders::Amend => {
                let symbol = the_pair(&values)?;
                refs.amends.push(Amend {
                    leg: 0,
                    order: order_ref(Some(&symbol), &values),
                    kind: AmendKind::InPlace,
                    side_given: false,
                    size_given: true,
                    price_given: values.contains_key("limit_price"),
                });
                vec![amend_order(&values, &symbol)?]
            }
            Orders::Batch => {
                let symbol = the_pair(&values)?;
                let list = lists
                    .get("orders")
                    .ok_or(ParseError::ParamMissing { key: "orders" })?;
                let (orders, text, client_ids) = batch(list, &symbol)?;
                refs.client_ids = client_ids;
                list_text.insert("orders", text);
                orders
            }
        };
        match endpoint.path {
            "/0/private/CancelOrder" => refs.cancels.push(order_ref(None, &values)),
            "/0/private/CancelAll" | "/0/private/CancelAllOrdersAfter" => {
                refs.cancels_everything = true;
            }
            "/0/private/CancelOrderBatch" => {
                refs.cancels = batch_cancels(lists.get("orders"), lists.get("cl_ord_ids"));
            }
            _ => {}
        }
        for (name, list) in &lists {
            match lookup(detail.params, name)?.grammar {
                Grammar::CancelList => {
                    list_text.insert(name, cancel_list(name, list)?);
                }
                Grammar::ClientIds => {
                    list_text.insert(name, client_ids(name, list)?);
                }
                _ => {}
            }
        }
        symbols.sort();
        symbols.dedup();
        let params = detail
            .params
            .iter()
            .filter_map(|p| values.get(p.name).map(|v| (p.name, v.clone())))
            .collect();
        let body = json_body.then(|| canonical_json(detail.params, &values, &list_text));
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
        if self.answered_by_keyward(call.endpoint) {
            return Err(SignError::AnsweredByKeyward);
        }
        if call.endpoint.security == Security::Public {
            return Ok(Outbound {
                method: call.endpoint.method.clone(),
                path_and_query: public_target(call),
                headers: Vec::new(),
                body: Vec::new(),
            });
        }
        let (body, content_type) = private_body(call, &context.nonce.to_string());
        signed(call.endpoint.path, body, content_type, context)
    }

    fn preview(&self, call: &ParsedCall, _recv_window_ms: u32) -> Preview {
        if call.endpoint.security == Security::Public {
            return Preview {
                method: call.endpoint.method.clone(),
                path_and_query: public_target(call),
                headers: Vec::new(),
                body: String::new(),
            };
        }
        let (body, content_type) = private_body(call, "<keyward's nonce>");
        Preview {
            method: call.endpoint.method.clone(),
            path_and_query: call.endpoint.path.to_owned(),
            headers: vec![
                format!("{KEY_HEADER}: <the account's API key>"),
                format!(
                    "{SIGN_HEADER}: <base64 HMAC-SHA512 of the path and SHA-256 of nonce and body>"
                ),
                format!("content-type: {content_type}"),
            ],
            body,
        }
    }

    fn refusal(&self, refusal: &Refusal) -> (&'static str, Vec<u8>) {
        refusal_body(refusal)
    }

    fn refusal_status(&self, refusal: &Refusal) -> StatusCode {
        refusal_status(refusal)
    }

    fn refusal_reason_phrase(&self, refusal: &Refusal) -> Option<String> {
        let status = refusal_status(refusal);
        // At 200 krakenex returns the body, whose error list says it all.
        if status.is_success() {
            return None;
        }
        let standard = status.canonical_reason().unwrap_or("Refused");
        let text = format!(
            "{standard} - EKeyward:{}: {}",
            refusal.reason, refusal.message
        );
        // A reason phrase is printable ASCII on one line; keep it short.
        let printable: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(300)
            .collect();
        Some(printable)
    }

    fn exchange_limits(&self) -> &'static [ExchangeLimit] {
        // Kraken's limits are decaying counters per key and per pair that its answers
        // do not report; keyward learns of them only when one trips (see backoff).
        &[]
    }

    fn usage(&self, _headers: &HeaderMap) -> Vec<UsageReport> {
        Vec::new()
    }

    fn backoff(&self, status: StatusCode, headers: &HeaderMap) -> Option<Backoff> {
        if status != StatusCode::TOO_MANY_REQUESTS {
            return None;
        }
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(RATE_LIMIT_PAUSE, Duration::from_secs)
            .clamp(Duration::from_secs(1), LONGEST_PAUSE);
        Some(Backoff {
            retry_after,
            banned: false,
        })
    }

    fn backoff_in_body(&self, body: &[u8]) -> Option<Backoff> {
        #[derive(serde::Deserialize)]
        struct Answer {
            error: Vec<String>,
        }
        let answer: Answer = serde_json::from_slice(body).ok()?;
        answer
            .error
            .iter()
            .filter_map(|error| match error.as_str() {
                "EAPI:Rate limit exceeded" | "EOrder:Rate limit exceeded" => Some(RATE_LIMIT_PAUSE),
                "EGeneral:Too many requests" => Some(TOO_MANY_PAUSE),
                "EGeneral:Temporary lockout" => Some(LOCKOUT_PAUSE),
                _ => None,
            })
            .max()
            .map(|retry_after| Backoff {
                retry_after,
                banned: false,
            })
    }

    fn time_path(&self) -> &'static str {
        "/0/public/Time"
    }

    fn server_time_ms(&self, body: &[u8]) -> Option<u64> {
        #[derive(serde::Deserialize)]
        struct Time {
            unixtime: u64,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            result: Time,
        }
        let answer: Answer = serde_json::from_slice(body).ok()?;
        answer.result.unixtime.checked_mul(1000)
    }

    fn housekeeping(&self, task: Housekeeping, symbol: &Symbol) -> (&'static str, String) {
        match task {
            Housekeeping::Quote => {
                let mut query = String::from("pair=");
                form::encode_into(&mut query, symbol.as_str());
                ("GET /0/public/Ticker", query)
            }
            Housekeeping::OpenOrders => ("POST /0/private/OpenOrders", String::new()),
            // Kraken cancels all at once or one by one; it has no per-pair cancel-all.
            // The kill switch freezes a whole account, so cancelling every order on
            // it is what it means (orders placed outside keyward on the same key go
            // too; docs/venues/kraken.md says so).
            Housekeeping::CancelAll => ("POST /0/private/CancelAll", String::new()),
        }
    }

    fn parse_quote(&self, body: &[u8]) -> Option<Quote> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let result = value.get("result")?.as_object()?;
        // keyward asks for one pair; the answer is keyed by Kraken's id for it.
        if result.len() != 1 {
            return None;
        }
        let ticker = result.values().next()?;
        let first =
            |side: &str| -> Option<Decimal> { ticker.get(side)?.get(0)?.as_str()?.parse().ok() };
        let quote = Quote {
            bid: first("b")?,
            ask: first("a")?,
            // The volume-weighted average price of the last 24 hours.
            slow: ticker
                .get("p")
                .and_then(|p| p.get(1))
                .and_then(crate::positive_decimal),
        };
        let sane = !quote.bid.is_zero() && !quote.ask.is_zero() && quote.ask >= quote.bid;
        sane.then_some(quote)
    }

    fn outcome(&self, call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
        outcome(call, status, body)
    }

    fn order_lookup(&self, reference: &OrderRef) -> Option<Lookup> {
        // QueryOrders takes txids only.
        let id = reference.id.as_ref()?;
        let mut form = String::from("txid=");
        form::encode_into(&mut form, id);
        Some(Lookup {
            key: "POST /0/private/QueryOrders",
            path: None,
            query: String::new(),
            form: Some(form),
            symbol: reference.symbol.clone(),
        })
    }

    fn looked_up_order(&self, body: &[u8]) -> Option<ExchangeOrder> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let failed = value
            .get("error")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|e| !e.is_empty());
        if failed {
            return None;
        }
        let orders = value.get("result")?.as_object()?;
        let [(id, order)] = orders.iter().collect::<Vec<_>>()[..] else {
            return None;
        };
        let descr = order.get("descr")?;
        let pair = descr
            .get("pair")?
            .as_str()
            .filter(|p| pair::is_spelling(p))?;
        let spec = order_type(descr.get("ordertype")?.as_str()?, "ordertype").ok()?;
        let (price, trigger) = match spec.execution {
            Execution::Limit => (crate::positive_decimal(descr.get("price")?), None),
            Execution::StopLimit => (
                descr.get("price2").and_then(crate::positive_decimal),
                descr.get("price").and_then(crate::positive_decimal),
            ),
            _ => (None, descr.get("price").and_then(crate::positive_decimal)),
        };
        Some(ExchangeOrder {
            symbol: Symbol::new(&pair::resolve(pair)).ok()?,
            side: match descr.get("type")?.as_str()? {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                _ => return None,
            },
            order_type: Arc::from(spec.name),
            execution: spec.execution,
            size: Size::Base(crate::positive_decimal(order.get("vol")?)?),
            price,
            trigger,
            id: id.clone(),
            client_id: order
                .get("cl_ord_id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            open: matches!(
                order.get("status").and_then(serde_json::Value::as_str),
                Some("open" | "pending")
            ),
        })
    }

    fn check_symbol(&self, symbol: &str) -> Result<(), &'static str> {
        if pair::is_canonical(symbol) {
            Ok(())
        } else {
            Err(
                "Kraken's altname in capitals, e.g. \"XBTUSD\" (not an alias such as XXBTZUSD, XBT/USD or BTCUSD)",
            )
        }
    }

    fn uses_nonce(&self) -> bool {
        true
    }

    fn check_credential(&self, credential: &dyn Signer) -> Result<(), KeyUnfit> {
        if credential.secret_is_base64() {
            Ok(())
        } else {
            Err(KeyUnfit::NotBase64)
        }
    }
}

/// The HTTP status of a refusal at Kraken ([`Venue::refusal_status`]): 200, as Kraken
/// answers every error it words in its `error` list. krakenex raises `HTTPError` on
/// any status but 200 to 202 and shows only the status line; at 200 it returns the
/// body, as it does for Kraken's own errors, and a bot reads `error` as it always
/// does. ccxt reads the list whatever the status. The exception is a timeout, or an
/// answer keyward could not use, which keeps keyward's 504 or 502: the order may have
/// executed, and an `error` list reads as "Kraken refused it", inviting the bot to
/// place it again, where krakenex's `HTTPError` is what a failing gateway in front of
/// Kraken produces; its reason phrase carries keyward's text
/// ([`Venue::refusal_reason_phrase`]).
pub fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal.class {
        RefusalClass::OutcomeUnknown | RefusalClass::Timeout => refusal.status,
        RefusalClass::Unauthenticated
        | RefusalClass::Forbidden
        | RefusalClass::SymbolForbidden
        | RefusalClass::MethodNotAllowed
        | RefusalClass::UnsupportedMediaType
        | RefusalClass::UnsupportedEncoding
        | RefusalClass::RateLimited
        | RefusalClass::ExchangeBanned
        | RefusalClass::Internal
        | RefusalClass::Unavailable
        | RefusalClass::Invalid(_) => StatusCode::OK,
    }
}

/// Kraken's `{"error":[...],"result":{}}` envelope, sent with [`refusal_status`]. The
/// first error is Kraken's own for the same kind of failure, chosen so ccxt raises
/// the matching class by exact match (`EGeneral:Permission denied` ->
/// PermissionDenied, `EAPI:Invalid key` -> AuthenticationError, `EAPI:Rate limit
/// exceeded` -> DDoSProtection, `EGeneral:Invalid arguments` -> BadRequest,
/// `EService:Unavailable` -> ExchangeNotAvailable); ccxt puts the whole body in its
/// message, so the second, `EKeyward:<reason>: <message>`, is shown too, and a
/// krakenex bot finds it in the list it reads. Appending keyward's text to Kraken's
/// string would lose the exact match.
pub fn refusal_body(refusal: &Refusal) -> (&'static str, Vec<u8>) {
    let first = match refusal.class {
        RefusalClass::Unauthenticated => "EAPI:Invalid key",
        RefusalClass::Forbidden | RefusalClass::SymbolForbidden => "EGeneral:Permission denied",
        RefusalClass::RateLimited => "EAPI:Rate limit exceeded",
        RefusalClass::Internal => "EGeneral:Internal error",
        RefusalClass::Unavailable
        | RefusalClass::OutcomeUnknown
        | RefusalClass::Timeout
        | RefusalClass::ExchangeBanned => "EService:Unavailable",
        RefusalClass::MethodNotAllowed
        | RefusalClass::UnsupportedMediaType
        | RefusalClass::UnsupportedEncoding
        | RefusalClass::Invalid(_) => "EGeneral:Invalid arguments",
    };
    let body = serde_json::json!({
        "error": [first, format!("EKeyward:{}: {}", refusal.reason, refusal.message)],
        "result": {},
    });
    (JSON, body.to_string().into_bytes())
}

/// keyward's own signed call of `path` with no parameters but its nonce (the
/// account's WebSocket token, which no bot's call ever signs).
pub(super) fn signed_request(path: &str, context: SignContext<'_>) -> Result<Outbound, SignError> {
    signed(path, format!("nonce={}", context.nonce), FORM, context)
}

/// A private POST of `body` (which starts with keyward's nonce) to `path`, with the
/// account's key and its `API-Sign`.
fn signed(
    path: &str,
    body: String,
    content_type: &'static str,
    context: SignContext<'_>,
) -> Result<Outbound, SignError> {
    // A nonce of 0 would be below every nonce Kraken has seen for the key.
    if context.nonce == 0 {
        return Err(SignError::Failed);
    }
    let signature = api_sign(context.credential, path, &context.nonce.to_string(), &body)?;
    let mut key = HeaderValue::from_str(context.credential.api_key())
        .map_err(|_| SignError::InvalidApiKey)?;
    key.set_sensitive(true);
    let mut sign = HeaderValue::from_str(&signature).map_err(|_| SignError::Failed)?;
    sign.set_sensitive(true);
    Ok(Outbound {
        method: Method::POST,
        path_and_query: path.to_owned(),
        headers: vec![
            (HeaderName::from_static(KEY_HEADER), key),
            (HeaderName::from_static(SIGN_HEADER), sign),
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            ),
        ],
        body: body.into_bytes(),
    })
}

/// `API-Sign` for `body` sent to `path` with `nonce`.
fn api_sign(
    credential: &dyn Signer,
    path: &str,
    nonce: &str,
    body: &str,
) -> Result<String, SignError> {
    let mut inner = ring::digest::Context::new(&ring::digest::SHA256);
    inner.update(nonce.as_bytes());
    inner.update(body.as_bytes());
    let mut message = path.as_bytes().to_vec();
    message.extend_from_slice(inner.finish().as_ref());
    let tag = credential.hmac_sha512_base64_key(&message)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(tag))
}

/// The path and canonical query of a public call.
fn public_target(call: &ParsedCall) -> String {
    let query = form::encode_pairs(call.params.iter().map(|(k, v)| (*k, v.as_str())));
    if query.is_empty() {
        call.endpoint.path.to_owned()
    } else {
        format!("{}?{query}", call.endpoint.path)
    }
}

/// A private call's body with `nonce` first (as a JSON string in JSON bodies, as ccxt
/// sends it), and its content type.
fn private_body(call: &ParsedCall, nonce: &str) -> (String, &'static str) {
    let mut quoted = String::new();
    json::write_string(&mut quoted, nonce);
    match &call.body {
        Some(object) => {
            let rest = object.strip_prefix('{').unwrap_or("}");
            let separator = if rest == "}" { "" } else { "," };
            (format!("{{\"nonce\":{quoted}{separator}{rest}"), JSON)
        }
        None => {
            // Digits (or the preview's placeholder), sent as they are.
            let mut body = format!("nonce={nonce}");
            let rest = form::encode_pairs(call.params.iter().map(|(k, v)| (*k, v.as_str())));
            if !rest.is_empty() {
                body.push('&');
                body.push_str(&rest);
            }
            (body, FORM)
        }
    }
}

/// The request's fields in order, form values as JSON strings; and whether the body
/// was JSON.
fn read_fields(
    endpoint: &EndpointSpec,
    detail: &Detail,
    input: &CallInput<'_>,
) -> Result<(Vec<(String, Json)>, bool), ParseError> {
    let as_fields = |pairs: Vec<(String, String)>| {
        pairs
            .into_iter()
            .map(|(k, v)| (k, Json::String(v)))
            .collect::<Vec<_>>()
    };
    if endpoint.method == Method::GET {
        if !input.body.is_empty() {
            return Err(ParseError::BodyNotAllowed);
        }
        return Ok((as_fields(form_pairs(input.query)?), false));
    }
    // Private calls carry everything in the body; a query would be a second place
    // for a parameter to hide.
    if let Some((key, _)) = form_pairs(input.query)?.into_iter().next() {
        return Err(ParseError::ParamUnknown {
            key: echo_key(&key),
        });
    }
    if input.body.is_empty() {
        return Ok((Vec::new(), detail.json_only));
    }
    let text =
        std::str::from_utf8(input.body).map_err(|_| ParseError::Form(FormError::BadDecoded))?;
    match input.content_type.map(media_type) {
        Some(Media::Form) if detail.json_only => Err(ParseError::invalid(
            "body",
            "a JSON object (this endpoint's lists have no form encoding)",
        )),
        Some(Media::Form) => Ok((as_fields(form_pairs(text)?), false)),
        Some(Media::Json) => {
            let parsed = Json::parse(text).map_err(|e| match e {
                JsonError::DuplicateKey(key) => ParseError::JsonDuplicateKey {
                    param: "body",
                    key: echo_key(&key),
                },
                JsonError::Invalid(_) => ParseError::JsonInvalid { param: "body" },
            })?;
            let Json::Object(entries) = parsed else {
                return Err(ParseError::JsonInvalid { param: "body" });
            };
            if entries.len() > MAX_PARAMS {
                return Err(ParseError::Form(FormError::TooMany(MAX_PARAMS)));
            }
            Ok((entries, true))
        }
        Some(Media::Other) | None => Err(ParseError::UnsupportedMediaType),
    }
}

/// Form pairs, refusing a raw `+`: in a form body it means a space to Kraken, while
/// keyward reads it literally, and Kraken's relative prices start with `+` (Kraken
/// asks for `%2B`).
fn form_pairs(raw: &str) -> Result<Vec<(String, String)>, ParseError> {
    if raw.contains('+') {
        return Err(ParseError::Form(FormError::RawByte('+')));
    }
    form::parse_pairs(raw, MAX_PARAMS).map_err(ParseError::Form)
}

enum Media {
    Form,
    Json,
    Other,
}

/// The body's media type; a `charset` other than UTF-8 makes it [`Media::Other`].
fn media_type(value: &str) -> Media {
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    let utf8 = parts.all(|param| {
        let (name, value) = param.trim().split_once('=').unwrap_or(("", ""));
        name.eq_ignore_ascii_case("charset")
            && value.trim_matches('"').eq_ignore_ascii_case("utf-8")
    });
    if !utf8 {
        Media::Other
    } else if media.eq_ignore_ascii_case(FORM) {
        Media::Form
    } else if media.eq_ignore_ascii_case(JSON) {
        Media::Json
    } else {
        Media::Other
    }
}

fn lookup(params: &'static [P], key: &str) -> Result<&'static P, ParseError> {
    params
        .iter()
        .find(|p| p.name == key)
        .ok_or_else(|| ParseError::ParamUnknown { key: echo_key(key) })
}

fn is_list(grammar: Grammar) -> bool {
    matches!(
        grammar,
        Grammar::Orders | Grammar::CancelList | Grammar::ClientIds
    )
}

/// JSON's nested `close` object as the `close[...]` values.
fn read_close(params: &'static [P], value: Json, values: &mut Values) -> Result<(), ParseError> {
    let Json::Object(entries) = value else {
        return Err(ParseError::invalid(
            "close[ordertype]",
            "a JSON object with ordertype, price and price2",
        ));
    };
    for (key, value) in entries {
        let name = catalogue::CLOSE_KEYS
            .iter()
            .find(|(_, inner)| *inner == key)
            .map(|(flat, _)| *flat)
            .ok_or_else(|| ParseError::ParamUnknown {
                key: echo_key(&format!("close[{key}]")),
            })?;
        let param = lookup(params, name)?;
        values.insert(param.name, scalar(param, &value)?);
    }
    Ok(())
}

/// A scalar field's validated, normalised text.
fn scalar(param: &P, value: &Json) -> Result<String, ParseError> {
    let numeric = matches!(
        param.grammar,
        Grammar::Int
            | Grammar::Decimal
            | Grammar::Price
            | Grammar::Txid
            | Grammar::Time
            | Grammar::Bound
            | Grammar::Since
    );
    let text = match value {
        Json::String(text) => text.clone(),
        Json::Integer(n) if numeric && *n >= 0 => n.to_string(),
        Json::Bool(b) if param.grammar == Grammar::Bool => b.to_string(),
        _ => return Err(ParseError::invalid(param.name, expected(param.grammar))),
    };
    validate(param.grammar, &text)
        .ok_or_else(|| ParseError::invalid(param.name, expected(param.grammar)))
}

/// Checks `text` against `grammar`; the normalised value if it conforms.
fn validate(grammar: Grammar, text: &str) -> Option<String> {
    let ok = match grammar {
        Grammar::Pair => {
            return pair::is_spelling(text).then(|| pair::resolve(text));
        }
        Grammar::Pairs => {
            let items: Vec<&str> = text.split(',').collect();
            let fine = items.len() <= 50 && items.iter().all(|p| pair::is_spelling(p));
            return fine.then(|| {
                items
                    .iter()
                    .map(|p| pair::resolve(p))
                    .collect::<Vec<_>>()
                    .join(",")
            });
        }
        Grammar::Bool => {
            return match text {
                "true" | "True" => Some("true".to_owned()),
                "false" | "False" => Some("false".to_owned()),
                _ => None,
            };
        }
        Grammar::Flags(words) => {
            let mut flags: Vec<&str> = Vec::new();
            for flag in text.split(',') {
                if !words.contains(&flag) {
                    return None;
                }
                // ccxt repeats viqc (`viqc,viqc`); a repeat means nothing more.
                if !flags.contains(&flag) {
                    flags.push(flag);
                }
            }
            return Some(flags.join(","));
        }
        Grammar::Decimal => is_decimal(text),
        Grammar::Price => {
            let offset = text
                .strip_prefix('+')
                .map(|t| t.strip_suffix('%').unwrap_or(t));
            offset.map_or_else(|| is_decimal(text), is_decimal)
        }
        Grammar::Int => schema::validate(Kind::Int, text).is_ok(),
        Grammar::Enum(words) => words.contains(&text),
        Grammar::Txid => chars(text, 64, |b| b.is_ascii_alphanumeric() || b == b'-'),
        Grammar::Txids => {
            let items: Vec<&str> = text.split(',').collect();
            items.len() <= 50
                && items
                    .iter()
                    .all(|t| chars(t, 64, |b| b.is_ascii_alphanumeric() || b == b'-'))
        }
        Grammar::ClientId => schema::validate(Kind::ClientId, text).is_ok(),
        Grammar::Time => {
            let digits = text.strip_prefix('+').unwrap_or(text);
            chars(digits, 12, |b| b.is_ascii_digit())
        }
        Grammar::Deadline => chars(text, 40, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'-' | b'+')
        }),
        Grammar::Bound => chars(text, 64, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
        }),
        Grammar::Since => {
            chars(text, 32, |b| b.is_ascii_digit() || b == b'.')
                && text.bytes().filter(|b| *b == b'.').count() <= 1
        }
        Grammar::Asset => chars(text, 16, |b| b.is_ascii_alphanumeric() || b == b'.'),
        Grammar::Assets => {
            let items: Vec<&str> = text.split(',').collect();
            items.len() <= 50
                && items
                    .iter()
                    .all(|a| chars(a, 16, |b| b.is_ascii_alphanumeric() || b == b'.'))
        }
        Grammar::Word => chars(text, 16, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-')
        }),
        Grammar::Leverage => {
            let (times, one) = text.split_once(':').unwrap_or((text, "1"));
            text == "none"
                || (one == "1"
                    && chars(times, 3, |b| b.is_ascii_digit())
                    && !times.starts_with('0'))
        }
        Grammar::Orders | Grammar::CancelList | Grammar::ClientIds => false,
    };
    ok.then(|| text.to_owned())
}

fn is_decimal(text: &str) -> bool {
    schema::validate(Kind::Decimal, text).is_ok()
}

/// 1 to `max` bytes, each accepted by `ok`.
fn chars(text: &str, max: usize, ok: impl Fn(u8) -> bool) -> bool {
    (1..=max).contains(&text.len()) && text.bytes().all(ok)
}

fn expected(grammar: Grammar) -> &'static str {
    match grammar {
        Grammar::Pair => "an asset pair such as XBTUSD (letters and digits, one '/' at most)",
        Grammar::Pairs => "a comma list of at most 50 asset pairs",
        Grammar::Decimal => "a plain decimal such as 0.001 (no sign, exponent or leading zeros)",
        Grammar::Price => {
            "a plain decimal, or +<offset> / +<percent>% for a trailing stop (keyward refuses other relative prices)"
        }
        Grammar::Int => "a non-negative integer without leading zeros",
        Grammar::Bool => "true or false",
        Grammar::Enum(_) => "one of the values Kraken documents for it that keyward models",
        Grammar::Flags(_) => "a comma list of the flags Kraken documents for it",
        Grammar::Txid => "an id of letters, digits and '-'",
        Grammar::Txids => "a comma list of at most 50 ids",
        Grammar::ClientId => "1 to 36 of A-Z a-z 0-9 . _ : / -",
        Grammar::Time => "0, a Unix time, or +<seconds>",
        Grammar::Deadline => "an RFC 3339 time",
        Grammar::Bound => "a Unix time or an id",
        Grammar::Since => "digits with an optional fraction",
        Grammar::Asset => "an asset name such as XBT or ZUSD",
        Grammar::Assets => "a comma list of at most 50 asset names",
        Grammar::Word => "a short code of letters and digits",
        Grammar::Leverage => "none, or a leverage such as 2 or 2:1",
        Grammar::Orders => "a JSON list of orders",
        Grammar::CancelList => "a JSON list of txids or userrefs",
        Grammar::ClientIds => "a JSON list of client order ids",
    }
}

fn require(
    params: &'static [P],
    values: &Values,
    lists: &HashMap<&'static str, Json>,
) -> Result<(), ParseError> {
    match params
        .iter()
        .find(|p| p.required && !values.contains_key(p.name) && !lists.contains_key(p.name))
    {
        Some(missing) => Err(ParseError::ParamMissing { key: missing.name }),
        None => Ok(()),
    }
}

fn need(
    need: Need,
    values: &Values,
    lists: &HashMap<&'static str, Json>,
) -> Result<(), ParseError> {
    let has = |name: &str| values.contains_key(name) || lists.contains_key(name);
    match need {
        Need::Nothing => Ok(()),
        Need::ExactlyOne(a, b) => match (has(a), has(b)) {
            (true, false) | (false, true) => Ok(()),
            (false, false) => Err(ParseError::ParamMissing { key: a }),
            (true, true) => Err(ParseError::invalid(b, "absent when the other id is given")),
        },
        Need::AtLeastOne(a, b) => {
            if has(a) || has(b) {
                Ok(())
            } else {
                Err(ParseError::ParamMissing { key: a })
            }
        }
    }
}

fn symbols_of(params: &'static [P], values: &Values) -> Result<Vec<Symbol>, ParseError> {
    let mut symbols = Vec::new();
    for param in params {
        let Some(value) = values.get(param.name) else {
            continue;
        };
        if matches!(param.grammar, Grammar::Pair | Grammar::Pairs) {
            for pair in value.split(',') {
                symbols.push(
                    Symbol::new(pair)
                        .map_err(|_| ParseError::invalid(param.name, expected(param.grammar)))?,
                );
            }
        }
    }
    Ok(symbols)
}

fn the_pair(values: &Values) -> Result<Symbol, ParseError> {
    let text = values
        .get("pair")
        .ok_or(ParseError::ParamMissing { key: "pair" })?;
    Symbol::new(text).map_err(|_| ParseError::invalid("pair", expected(Grammar::Pair)))
}

fn side(values: &Values) -> Result<Side, ParseError> {
    match values.get("type").map(String::as_str) {
        Some("buy") => Ok(Side::Buy),
        Some("sell") => Ok(Side::Sell),
        Some(_) => Err(ParseError::invalid("type", "buy or sell")),
        None => Err(ParseError::ParamMissing { key: "type" }),
    }
}

fn decimal(values: &Values, name: &'static str) -> Result<Option<Decimal>, ParseError> {
    values
        .get(name)
        .map(|text| {
            text.parse::<Decimal>()
                .map_err(|_| ParseError::invalid(name, expected(Grammar::Decimal)))
        })
        .transpose()
}

fn order_type(name: &str, key: &'static str) -> Result<&'static OrderTypeSpec, ParseError> {
    catalogue::ORDER_TYPES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ParseError::invalid(key, expected(Grammar::Enum(&[]))))
}

/// The limit price and trigger an order of `spec` states through its `price` and
/// `price2` fields (named `names`), which mean different things per order type.
fn prices(
    spec: &OrderTypeSpec,
    values: &Values,
    names: (&'static str, &'static str),
) -> Result<(Option<Decimal>, Option<Decimal>), ParseError> {
    let (price_name, price2_name) = names;
    let price = values.get(price_name);
    let needs_price2 = spec.execution == Execution::StopLimit;
    if values.contains_key(price2_name) && !needs_price2 {
        return Err(ParseError::invalid(
            price2_name,
            "absent except for stop-loss-limit and take-profit-limit orders",
        ));
    }
    let plain = |text: &String| -> Result<Decimal, ParseError> {
        if text.starts_with('+') {
            return Err(ParseError::invalid(
                price_name,
                "a plain decimal: only trailing stops take a +offset",
            ));
        }
        text.parse()
            .map_err(|_| ParseError::invalid(price_name, expected(Grammar::Decimal)))
    };
    let missing = ParseError::ParamMissing { key: price_name };
    match spec.execution {
        Execution::Market => match price {
            Some(_) => Err(ParseError::invalid(price_name, "absent for market orders")),
            None => Ok((None, None)),
        },
        Execution::Limit => Ok((Some(plain(price.ok_or(missing)?)?), None)),
        Execution::StopMarket => Ok((None, Some(plain(price.ok_or(missing)?)?))),
        Execution::StopLimit => {
            let trigger = plain(price.ok_or(missing)?)?;
            let limit = decimal(values, price2_name)?
                .ok_or(ParseError::ParamMissing { key: price2_name })?;
            Ok((Some(limit), Some(trigger)))
        }
        Execution::TrailingMarket => match price {
            Some(offset) if offset.starts_with('+') => Ok((None, None)),
            Some(_) => Err(ParseError::invalid(
                price_name,
                "+<offset> or +<percent>% for a trailing stop",
            )),
            None => Err(missing),
        },
    }
}

/// What a Kraken answer says happened (see [`Venue::outcome`]). Kraken refuses inside
/// HTTP 200 with a non-empty `error` list; `EService` errors (busy, unavailable,
/// timeout) and `EGeneral:Internal error` leave the request's fate open. A
/// conditional close is not an order until its parent fills: it is recorded closed,
/// with no id, and stays spent.
fn outcome(call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome {
    let value = match Outcome::from_status(call, status, body) {
        Ok(value) => value,
        Err(outcome) => return outcome,
    };
    let errors: Vec<&str> = value
        .get("error")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    if errors
        .iter()
        .any(|e| e.starts_with("EService:") || e.starts_with("EGeneral:Internal"))
    {
        return Outcome::all(call, &LegResult::Unknown);
    }
    if !errors.is_empty() {
        return Outcome::refused(call);
    }
    let Some(result) = value.get("result") else {
        return Outcome::all(call, &LegResult::Unknown);
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let conditional_close = |order: &Order| order.order_type.starts_with("close-");
    // The WebSocket (v2) answers the same calls with its own names: `order_id` for
    // `txid`, a batch's results as the result itself.
    let id_of = |v: &serde_json::Value| v.get("txid").or_else(|| v.get("order_id")).and_then(text);
    let mut outcome = Outcome::default();
    match call.endpoint.path {
        "/0/private/AddOrder" => {
            let id = result
                .get("txid")
                .and_then(serde_json::Value::as_array)
                .and_then(|ids| ids.first())
                .and_then(text)
                .or_else(|| result.get("order_id").and_then(text));
            outcome.legs = call
                .intent
                .orders
                .iter()
                .map(|order| {
                    LegResult::Placed(Placed {
                        id: id.clone().filter(|_| !conditional_close(order)),
                        open: !conditional_close(order),
                        ..Placed::default()
                    })
                })
                .collect();
        }
        "/0/private/AddOrderBatch" => {
            let answers: Vec<&serde_json::Value> = result
                .get("orders")
                .and_then(serde_json::Value::as_array)
                .or_else(|| result.as_array())
                .into_iter()
                .flatten()
                .collect();
            let mut element = None::<usize>;
            for order in &call.intent.orders {
                if !conditional_close(order) {
                    element = Some(element.map_or(0, |e| e + 1));
                }
                let answer = element.and_then(|e| answers.get(e));
                outcome.legs.push(match answer {
                    Some(a) if a.get("error").is_some() => LegResult::Rejected,
                    Some(a) => LegResult::Placed(Placed {
                        id: id_of(a).filter(|_| !conditional_close(order)),
                        open: !conditional_close(order),
                        ..Placed::default()
                    }),
                    None => LegResult::Unknown,
                });
            }
        }
        "/0/private/EditOrder" => {
            outcome.legs = vec![LegResult::Placed(Placed {
                id: id_of(result),
                open: true,
                ..Placed::default()
            })];
            let original = result
                .get("originaltxid")
                .or_else(|| result.get("original_order_id"));
            if let Some(id) = original.and_then(text) {
                outcome.closed.push((None, id));
            }
        }
        "/0/private/AmendOrder" => {
            outcome.legs = vec![LegResult::Placed(Placed {
                open: true,
                ..Placed::default()
            })];
        }
        "/0/private/CancelOrder" => {
            // The answer gives a count; one order was named.
            let count = result.get("count").and_then(serde_json::Value::as_u64);
            outcome.cancelled = Some(vec![count.is_some_and(|c| c > 0)]);
        }
        "/0/private/OpenOrders" | "/0/private/ClosedOrders" | "/0/private/QueryOrders" => {
            // OpenOrders lists open orders under `open`, ClosedOrders closed ones
            // under `closed`; QueryOrders gives each order's status.
            let (orders, known) = match call.endpoint.path {
                "/0/private/OpenOrders" => (result.get("open"), Some(true)),
                "/0/private/ClosedOrders" => (result.get("closed"), Some(false)),
                _ => (Some(result), None),
            };
            for (id, order) in orders
                .and_then(serde_json::Value::as_object)
                .into_iter()
                .flatten()
            {
                let symbol = order
                    .get("descr")
                    .and_then(|d| d.get("pair"))
                    .and_then(serde_json::Value::as_str)
                    .filter(|p| pair::is_spelling(p))
                    .and_then(|p| Symbol::new(&pair::resolve(p)).ok());
                let status = order.get("status").and_then(serde_json::Value::as_str);
                let open = known.or_else(|| status.map(|s| matches!(s, "open" | "pending")));
                let (Some(symbol), Some(open)) = (symbol, open) else {
                    continue;
                };
                outcome.listed.push(Listed {
                    symbol,
                    id: id.clone(),
                    client_id: order.get("cl_ord_id").and_then(text),
                    open,
                });
            }
        }
        // CancelOrderBatch answers a count, not which orders: the open-order check
        // finds out.
        _ => {}
    }
    outcome
        .legs
        .resize(call.intent.orders.len(), LegResult::Unknown);
    outcome
}

/// AddOrder's order, and its conditional close as a second order: the opposite side,
/// the same volume, its own type and prices.
fn add_orders(values: &Values, symbol: &Symbol) -> Result<Vec<Order>, ParseError> {
    let side = side(values)?;
    let type_name = values
        .get("ordertype")
        .ok_or(ParseError::ParamMissing { key: "ordertype" })?;
    let spec = order_type(type_name, "ordertype")?;
    let volume = decimal(values, "volume")?.ok_or(ParseError::ParamMissing { key: "volume" })?;
    let viqc = values
        .get("oflags")
        .is_some_and(|flags| flags.split(',').any(|f| f == "viqc"));
    if viqc && !(spec.execution == Execution::Market && side == Side::Buy) {
        return Err(ParseError::invalid(
            "oflags",
            "viqc only on market buy orders (the only ones Kraken sizes in the quote currency)",
        ));
    }
    // viqc sizes the order in the quote currency; a volume of 0 closes a whole
    // margin position.
    let size = if viqc {
        Size::Quote(volume)
    } else if volume.is_zero() {
        Size::WholePosition
    } else {
        Size::Base(volume)
    };
    match (spec.name == "iceberg", values.contains_key("displayvol")) {
        (true, false) => return Err(ParseError::ParamMissing { key: "displayvol" }),
        (false, true) => {
            return Err(ParseError::invalid(
                "displayvol",
                "absent except for iceberg orders",
            ));
        }
        _ => {}
    }
    let margin = values.get("leverage").is_some_and(|l| l != "none");
    let reduce_only = values.get("reduce_only").is_some_and(|r| r == "true");
    let (price, trigger) = prices(spec, values, ("price", "price2"))?;
    let mut orders = vec![Order {
        symbol: symbol.clone(),
        side,
        order_type: Arc::from(spec.name),
        execution: spec.execution,
        size,
        price,
        trigger,
        amend: false,
        margin,
        reduce_only,
    }];
    match values.get("close[ordertype]") {
        Some(close_type) => {
            if viqc {
                return Err(ParseError::invalid(
                    "close[ordertype]",
                    "absent on viqc orders (the close's base volume is not known in advance)",
                ));
            }
            let close = order_type(&format!("close-{close_type}"), "close[ordertype]")?;
            let (price, trigger) = prices(close, values, ("close[price]", "close[price2]"))?;
            orders.push(Order {
                symbol: symbol.clone(),
                side: match side {
                    Side::Buy => Side::Sell,
                    Side::Sell => Side::Buy,
                },
                order_type: Arc::from(close.name),
                execution: close.execution,
                size,
                price,
                trigger,
                amend: false,
                margin,
                // The close rests until the order fills; whether it then reduces
                // anything is not for keyward to assume.
                reduce_only: false,
            });
        }
        None => {
            if values.contains_key("close[price]") || values.contains_key("close[price2]") {
                return Err(ParseError::ParamMissing {
                    key: "close[ordertype]",
                });
            }
        }
    }
    Ok(orders)
}

/// EditOrder replaces an order with one of the new volume and price (a stop-limit's
/// when `price2`, the limit, is given). Side and type are the replaced order's, from
/// keyward's record; these are placeholders until then.
fn edit_order(values: &Values, symbol: &Symbol) -> Result<Order, ParseError> {
    let volume = decimal(values, "volume")?.ok_or(ParseError::ParamMissing { key: "volume" })?;
    let price = decimal(values, "price")?.ok_or(ParseError::ParamMissing { key: "price" })?;
    let (price, trigger) = match decimal(values, "price2")? {
        Some(limit) => (limit, Some(price)),
        None => (price, None),
    };
    Ok(Order {
        symbol: symbol.clone(),
        side: Side::Buy,
        order_type: Arc::from("limit"),
        execution: Execution::Limit,
        size: size_of(volume),
        price: Some(price),
        trigger,
        amend: true,
        margin: false,
        reduce_only: false,
    })
}

/// AmendOrder changes an order in place: its new quantity, and its prices where
/// given (else the order keeps its own). Side and type come from keyward's record.
fn amend_order(values: &Values, symbol: &Symbol) -> Result<Order, ParseError> {
    let quantity =
        decimal(values, "order_qty")?.ok_or(ParseError::ParamMissing { key: "order_qty" })?;
    Ok(Order {
        symbol: symbol.clone(),
        side: Side::Buy,
        order_type: Arc::from("limit"),
        execution: Execution::Limit,
        size: size_of(quantity),
        price: decimal(values, "limit_price")?,
        trigger: decimal(values, "trigger_price")?,
        amend: true,
        margin: false,
        reduce_only: false,
    })
}

/// The order named by `txid` or `cl_ord_id` (on `symbol` when the request says it).
/// Kraken also takes a user reference (an integer) as a txid, which cancels every
/// order carrying it: keyward has no order with such an id, so it is refused.
fn order_ref(symbol: Option<&Symbol>, values: &Values) -> OrderRef {
    OrderRef {
        symbol: symbol.cloned(),
        id: values.get("txid").cloned(),
        client_id: values.get("cl_ord_id").cloned(),
        list: false,
    }
}

/// CancelOrderBatch's orders: txids (strings, or `{"txid": ..}`), user references
/// (integers, which keyward never knows) and client ids.
fn batch_cancels(orders: Option<&Json>, client_ids: Option<&Json>) -> Vec<OrderRef> {
    let mut refs = Vec::new();
    let id_of = |value: &Json| match value {
        Json::String(text) => Some(text.clone()),
        Json::Integer(n) => Some(n.to_string()),
        Json::Object(entries) => entries.iter().find_map(|(k, v)| match (k.as_str(), v) {
            ("txid", Json::String(text)) => Some(text.clone()),
            ("txid", Json::Integer(n)) => Some(n.to_string()),
            _ => None,
        }),
        _ => None,
    };
    if let Some(Json::Array(items)) = orders {
        refs.extend(items.iter().filter_map(id_of).map(|id| OrderRef {
            id: Some(id),
            ..OrderRef::default()
        }));
    }
    if let Some(Json::Array(items)) = client_ids {
        refs.extend(items.iter().filter_map(|item| match item {
            Json::String(text) => Some(OrderRef {
                client_id: Some(text.clone()),
                ..OrderRef::default()
            }),
            _ => None,
        }));
    }
    refs
}

fn size_of(volume: Decimal) -> Size {
    if volume.is_zero() {
        Size::WholePosition
    } else {
        Size::Base(volume)
    }
}

/// AddOrderBatch's orders (each checked like AddOrder's), the list re-serialised, and
/// the client ids of the orders by index.
type Batch = (Vec<Order>, String, Vec<(usize, String)>);

fn batch(list: &Json, symbol: &Symbol) -> Result<Batch, ParseError> {
    let Json::Array(elements) = list else {
        return Err(ParseError::JsonInvalid { param: "orders" });
    };
    if elements.is_empty() {
        return Err(ParseError::JsonInvalid { param: "orders" });
    }
    if elements.len() > catalogue::BATCH_MAX {
        return Err(ParseError::BatchTooLarge {
            max: catalogue::BATCH_MAX,
        });
    }
    let mut orders = Vec::new();
    let mut client_ids = Vec::new();
    let mut texts = Vec::with_capacity(elements.len());
    for element in elements {
        let Json::Object(entries) = element else {
            return Err(ParseError::JsonInvalid { param: "orders" });
        };
        let mut values = Values::new();
        for (key, value) in entries {
            if key == "close" {
                read_close(catalogue::BATCH_ORDER, value.clone(), &mut values)?;
                continue;
            }
            let param = lookup(catalogue::BATCH_ORDER, key)?;
            if param.name.starts_with("close[") {
                return Err(ParseError::ParamUnknown { key: echo_key(key) });
            }
            values.insert(param.name, scalar(param, value)?);
        }
        require(catalogue::BATCH_ORDER, &values, &HashMap::new())?;
        if let Some(client_id) = values.get("cl_ord_id") {
            client_ids.push((orders.len(), client_id.clone()));
        }
        orders.extend(add_orders(&values, symbol)?);
        texts.push(canonical_json(
            catalogue::BATCH_ORDER,
            &values,
            &HashMap::new(),
        ));
    }
    Ok((orders, format!("[{}]", texts.join(",")), client_ids))
}

/// CancelOrderBatch's `orders`: txids or userrefs, as strings, integers or
/// `{"txid": ...}` objects (Kraken's schema and its example disagree; both kept).
fn cancel_list(name: &'static str, list: &Json) -> Result<String, ParseError> {
    let Json::Array(items) = list else {
        return Err(ParseError::JsonInvalid { param: name });
    };
    if items.is_empty() {
        return Err(ParseError::JsonInvalid { param: name });
    }
    if items.len() > catalogue::CANCEL_BATCH_MAX {
        return Err(ParseError::BatchTooLarge {
            max: catalogue::CANCEL_BATCH_MAX,
        });
    }
    let id = |value: &Json| -> Result<String, ParseError> {
        match value {
            Json::String(text) if validate(Grammar::Txid, text).is_some() => {
                let mut out = String::new();
                json::write_string(&mut out, text);
                Ok(out)
            }
            Json::Integer(n) if *n >= 0 => Ok(n.to_string()),
            _ => Err(ParseError::invalid(name, expected(Grammar::CancelList))),
        }
    };
    let mut texts = Vec::with_capacity(items.len());
    for item in items {
        texts.push(match item {
            Json::Object(entries) => match entries.as_slice() {
                [(key, value)] if key == "txid" => format!("{{\"txid\":{}}}", id(value)?),
                _ => return Err(ParseError::invalid(name, expected(Grammar::CancelList))),
            },
            other => id(other)?,
        });
    }
    Ok(format!("[{}]", texts.join(",")))
}

fn client_ids(name: &'static str, list: &Json) -> Result<String, ParseError> {
    let Json::Array(items) = list else {
        return Err(ParseError::JsonInvalid { param: name });
    };
    if items.is_empty() {
        return Err(ParseError::JsonInvalid { param: name });
    }
    if items.len() > catalogue::CANCEL_BATCH_MAX {
        return Err(ParseError::BatchTooLarge {
            max: catalogue::CANCEL_BATCH_MAX,
        });
    }
    let mut out = String::from("[");
    for (index, item) in items.iter().enumerate() {
        let Json::String(text) = item else {
            return Err(ParseError::invalid(name, expected(Grammar::ClientIds)));
        };
        if validate(Grammar::ClientId, text).is_none() {
            return Err(ParseError::invalid(name, expected(Grammar::ClientIds)));
        }
        if index > 0 {
            out.push(',');
        }
        json::write_string(&mut out, text);
    }
    out.push(']');
    Ok(out)
}

/// A JSON object of the validated values in catalogue order: integers and booleans
/// as JSON numbers and booleans, everything else as strings (Kraken's schema types
/// prices and volumes as strings), `close[...]` as a nested `close` object, lists
/// as already re-serialised.
fn canonical_json(
    params: &'static [P],
    values: &Values,
    lists: &HashMap<&'static str, String>,
) -> String {
    let mut fields: Vec<String> = Vec::new();
    let mut close_written = false;
    for param in params {
        let mut field = String::new();
        if param.name.starts_with("close[") {
            if close_written {
                continue;
            }
            close_written = true;
            let inner: Vec<String> = catalogue::CLOSE_KEYS
                .iter()
                .filter_map(|(flat, name)| {
                    let value = values.get(flat)?;
                    let mut pair = String::new();
                    json::write_string(&mut pair, name);
                    pair.push(':');
                    json::write_string(&mut pair, value);
                    Some(pair)
                })
                .collect();
            if inner.is_empty() {
                continue;
            }
            field.push_str(&format!("\"close\":{{{}}}", inner.join(",")));
        } else if let Some(text) = lists.get(param.name) {
            json::write_string(&mut field, param.name);
            field.push(':');
            field.push_str(text);
        } else if let Some(value) = values.get(param.name) {
            json::write_string(&mut field, param.name);
            field.push(':');
            match param.grammar {
                // Validated digits and true/false: valid JSON as they are.
                Grammar::Int | Grammar::Bool => field.push_str(value),
                _ => json::write_string(&mut field, value),
            }
        } else {
            continue;
        }
        fields.push(field);
    }
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests;
