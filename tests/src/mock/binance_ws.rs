//! Binance's spot WebSocket API on the mock's HTTPS listener: `GET /ws-api/v3` with
//! `Upgrade: websocket`, then one JSON request per text frame, answered as
//! binance-spot-api-docs' web-socket-api.md documents (`{"id", "status", "result",
//! "rateLimits"}`, errors as `{"id", "status", "error": {"code", "msg"}}`).
//!
//! The mock answers the upgrade itself (`ws.rs`). Signed methods are checked
//! as Binance documents (`signature` = hex HMAC-SHA256 over every other parameter,
//! sorted by name, joined `name=value` with `&`, values as sent with no
//! percent-encoding; `timestamp` within `recvWindow`). Orders go to the spot book
//! REST uses (`spot.rs`); a connection subscribed with
//! `userDataStream.subscribe.signature` receives the account's user-data events as
//! `{"subscriptionId", "event"}`.
//!
//! Every frame the mock receives is recorded like a REST request: method `WS`, path
//! `/ws-api/v3`, the frame's text as body, the upgrade's header fields, and
//! `signature_ok` as for REST. The upgrade request is recorded too (method `GET`).
//! The mock's misbehaviours ([`super::Behaviour`]) do not apply here, except
//! `TimestampOnce`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message};

use super::ws::{self, text_of};
use super::{Behaviour, State, new_order, now_ms, spot, spot_account};
use crate::hmac_sha256_hex;

/// Where Binance serves its spot WebSocket API.
pub(super) const PATH: &str = "/ws-api/v3";

/// Methods that need `apiKey`, `timestamp` and `signature`.
const SIGNED: &[&str] = &[
    "order.place",
    "order.test",
    "order.cancel",
    "order.status",
    "openOrders.status",
    "openOrders.cancelAll",
    "account.status",
    "userDataStream.subscribe.signature",
];

/// Symbols the mock lists (its `exchangeInfo`).
const SYMBOLS: &[&str] = &["BTCUSDT", "ETHUSDT", "DMGUSDT"];

/// Serves one connection whose request head asked for `/ws-api/v3`: the upgrade (or
/// a refusal of a malformed one), then requests until the client goes.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    asked: ws::Asked<S>,
    state: Arc<State>,
) {
    let return_rate_limits = !asked
        .upgrade
        .query
        .split('&')
        .any(|p| p == "returnRateLimits=false");
    let Some((mut ws, headers)) = asked.open(&state).await else {
        return;
    };
    let mut events = state.events.subscribe();
    let mut drops = state.ws_drops.subscribe();
    let mut session = Session {
        connected_since: now_ms(),
        return_rate_limits,
        subscriptions: Vec::new(),
        next_subscription: 0,
    };
    loop {
        tokio::select! {
            message = ws.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
                    Some(Ok(Message::Binary(bytes))) => {
                        // Requests are text frames only; Binance closes on others.
                        state.record(ws::message_record(PATH, &headers, String::from_utf8_lossy(&bytes).into_owned(), None, None));
                        let reason = "requests are JSON in text frames";
                        let close = CloseFrame { code: CloseCode::Unsupported, reason: reason.into() };
                        let _ = ws.send(Message::Close(Some(close))).await;
                        return;
                    }
                    Some(Ok(Message::Close(_))) => {
                        ws::answer_close(&mut ws).await;
                        return;
                    }
                    None | Some(Err(_)) => return,
                    // Pings are answered by tungstenite; pongs need nothing.
                    Some(Ok(_)) => continue,
                };
                let (reply, signature_ok, after) = answer(&state, &mut session, &text);
                state.record(ws::message_record(PATH, &headers, text, signature_ok, None));
                for frame in std::iter::once(reply).chain(after) {
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        return;
                    }
                }
            }
            _ = drops.changed() => return,
            event = events.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                for id in &session.subscriptions {
                    let frame = json!({"subscriptionId": id, "event": event});
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// One connection's state.
#[derive(Debug)]
struct Session {
    connected_since: u64,
    /// The connection's default (`?returnRateLimits=false` in its URL turns it off).
    return_rate_limits: bool,
    /// Active user-data subscriptions, in the order they were made.
    subscriptions: Vec<u64>,
    next_subscription: u64,
}

/// A refusal: HTTP-like status, Binance's error code and message.
type Refusal = (u16, i32, String);

fn refusal(status: u16, code: i32, message: &str) -> Refusal {
    (status, code, message.to_owned())
}

fn mandatory(name: &str) -> Refusal {
    refusal(
        400,
        -1102,
        &format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

/// The answer to one text frame, whether its signature verified (as
/// [`Recorded::signature_ok`]), and frames to send after the answer (events that
/// the request itself ends, such as `eventStreamTerminated`).
fn answer(state: &State, session: &mut Session, frame: &str) -> (Value, Option<bool>, Vec<Value>) {
    let Ok(Value::Object(request)) = serde_json::from_str::<Value>(frame) else {
        let error = refusal(400, -1135, "Invalid JSON Request");
        return (
            envelope(
                &Value::Null,
                Err(error),
                session.return_rate_limits,
                None,
                state,
            ),
            None,
            Vec::new(),
        );
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = match request.get("params") {
        None => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => {
            let error = mandatory("params");
            return (
                envelope(&id, Err(error), session.return_rate_limits, None, state),
                None,
                Vec::new(),
            );
        }
    };
    let rate_limits = params
        .get("returnRateLimits")
        .and_then(Value::as_bool)
        .unwrap_or(session.return_rate_limits);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return (
            envelope(
                &id,
                Err(mandatory("method")),
                rate_limits,
                Some(false),
                state,
            ),
            None,
            Vec::new(),
        );
    };
    // "Request method names may be prefixed with explicit version".
    let method = method.strip_prefix("v3/").unwrap_or(method);
    let mut signature_ok = None;
    if SIGNED.contains(&method) {
        let checked = verify(state, frame, &params);
        signature_ok = checked.0;
        if let Err(error) = checked.1 {
            let orders = Some(method == "order.place");
            return (
                envelope(&id, Err(error), rate_limits, orders, state),
                signature_ok,
                Vec::new(),
            );
        }
    }
    let mut after = Vec::new();
    let text = |name: &str| params.get(name).and_then(text_of);
    let result = match method {
        "ping" => Ok(json!({})),
        "time" => Ok(json!({"serverTime": state.now_ms()})),
        "session.status" => Ok(json!({
            "apiKey": null, "authorizedSince": null, "connectedSince": session.connected_since,
            "returnRateLimits": session.return_rate_limits, "serverTime": state.now_ms(),
            "userDataStream": !session.subscriptions.is_empty(),
        })),
        "session.subscriptions" => Ok(Value::Array(
            session
                .subscriptions
                .iter()
                .map(|id| json!({"subscriptionId": id}))
                .collect(),
        )),
        "order.place" | "order.test" => place(state, &params, method == "order.test"),
        "order.cancel" => cancel(state, &params),
        "order.status" => order_status(state, &params),
        "openOrders.status" => Ok(Value::Array(
            open_spot_orders(state)
                .into_iter()
                .filter(|o| text("symbol").is_none_or(|s| o["symbol"] == s.as_str()))
                .collect(),
        )),
        "openOrders.cancelAll" => cancel_all(state, &params),
        "account.status" => {
            let omit_zero = params.get("omitZeroBalances").and_then(Value::as_bool) == Some(true);
            Ok(spot_account(state, omit_zero))
        }
        "userDataStream.subscribe.signature" => {
            let id = session.next_subscription;
            session.next_subscription += 1;
            session.subscriptions.push(id);
            Ok(json!({"subscriptionId": id}))
        }
        // Needs a session logged on with an Ed25519 key (`session.logon`), which the
        // mock, holding HMAC keys only, never has.
        "userDataStream.subscribe" => Err(refusal(
            400,
            -1002,
            "You are not authorized to execute this request.",
        )),
        "userDataStream.unsubscribe" => {
            let which = params.get("subscriptionId").and_then(Value::as_u64);
            let (ended, kept): (Vec<u64>, Vec<u64>) = session
                .subscriptions
                .iter()
                .partition(|id| which.is_none_or(|w| w == **id));
            session.subscriptions = kept;
            for id in ended {
                let event = json!({"e": "eventStreamTerminated", "E": now_ms()});
                after.push(json!({"subscriptionId": id, "event": event}));
            }
            Ok(json!({}))
        }
        other => Err(refusal(400, -1, &format!("mock: unknown method '{other}'"))),
    };
    let orders = matches!(method, "order.place");
    let reply = envelope(&id, result, rate_limits, Some(orders), state);
    (reply, signature_ok, after)
}

/// Binance's checks of a signed request: whether the signature verified (`None`
/// when there was none), and the refusal if a check failed.
fn verify(
    state: &State,
    frame: &str,
    params: &Map<String, Value>,
) -> (Option<bool>, Result<(), Refusal>) {
    let Some(api_key) = params.get("apiKey").and_then(Value::as_str) else {
        return (None, Err(mandatory("apiKey")));
    };
    let Some(signature) = params.get("signature").and_then(Value::as_str) else {
        return (None, Err(mandatory("signature")));
    };
    let Some(secret) = state.keys.lock().expect("keys").get(api_key).cloned() else {
        let error = refusal(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        );
        return (Some(false), Err(error));
    };
    let mut signed: Vec<(String, String)> = raw_params(frame)
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| name != "signature")
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let payload: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let expected = hmac_sha256_hex(secret.as_bytes(), payload.join("&").as_bytes());
    // "Signatures generated using HMAC are not case-sensitive."
    if !expected.eq_ignore_ascii_case(signature) {
        let error = refusal(400, -1022, "Signature for this request is not valid.");
        return (Some(false), Err(error));
    }
    let Some(mut timestamp) = params
        .get("timestamp")
        .and_then(|t| text_of(t)?.parse::<u64>().ok())
    else {
        return (Some(true), Err(mandatory("timestamp")));
    };
    if timestamp > 100_000_000_000_000 {
        // Microseconds are accepted too.
        timestamp /= 1000;
    }
    let window = params
        .get("recvWindow")
        .and_then(|w| text_of(w)?.parse::<f64>().ok())
        .unwrap_or(5000.0);
    if !(0.0..=60_000.0).contains(&window) {
        let error = refusal(400, -1131, "recvWindow must be less than 60000");
        return (Some(true), Err(error));
    }
    let server = state.now_ms();
    // Whole milliseconds: the fraction a window may carry changes nothing here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let window = window as u64;
    if timestamp >= server + 1000 || server.saturating_sub(timestamp) > window {
        let error = refusal(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        );
        return (Some(true), Err(error));
    }
    let mut behaviour = state.behaviour.lock().expect("behaviour");
    if *behaviour == Behaviour::TimestampOnce {
        *behaviour = Behaviour::Normal;
        let error = refusal(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        );
        return (Some(true), Err(error));
    }
    (Some(true), Ok(()))
}

/// `order.place` (and `order.test`, which checks the same and places nothing).
fn place(state: &State, params: &Map<String, Value>, test: bool) -> Result<Value, Refusal> {
    let text = |name: &str| params.get(name).and_then(text_of);
    for name in ["symbol", "side", "type"] {
        if text(name).is_none_or(|v| v.is_empty()) {
            return Err(mandatory(name));
        }
    }
    let (symbol, side, kind) = (
        text("symbol").unwrap_or_default(),
        text("side").unwrap_or_default(),
        text("type").unwrap_or_default(),
    );
    if !SYMBOLS.contains(&symbol.as_str()) {
        return Err(refusal(400, -1121, "Invalid symbol."));
    }
    if side != "BUY" && side != "SELL" {
        return Err(refusal(
            400,
            -1130,
            "Data sent for parameter 'side' is not valid.",
        ));
    }
    match kind.as_str() {
        "LIMIT" => {
            for name in ["timeInForce", "price", "quantity"] {
                if text(name).is_none() {
                    return Err(mandatory(name));
                }
            }
        }
        "MARKET" if text("quantity").is_none() && text("quoteOrderQty").is_none() => {
            return Err(refusal(
                400,
                -1102,
                "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
            ));
        }
        _ => {}
    }
    if state.market_closed(&symbol) {
        return Err(refusal(400, -2010, "Market is closed."));
    }
    if test {
        return Ok(json!({}));
    }
    let order_params: BTreeMap<String, String> = params
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), text_of(value)?)))
        .collect();
    let order = spot::accept(state, new_order(state, &order_params, false));
    // MARKET and LIMIT orders answer FULL unless told otherwise, others ACK.
    let default = if kind == "MARKET" || kind == "LIMIT" {
        "FULL"
    } else {
        "ACK"
    };
    let shape = text("newOrderRespType").unwrap_or_else(|| default.to_owned());
    let mut fields = vec![
        "symbol",
        "orderId",
        "orderListId",
        "clientOrderId",
        "transactTime",
    ];
    if shape != "ACK" {
        fields.extend([
            "price",
            "origQty",
            "executedQty",
            "origQuoteOrderQty",
            "cummulativeQuoteQty",
            "status",
            "timeInForce",
            "type",
            "side",
            "workingTime",
            "selfTradePreventionMode",
        ]);
    }
    if shape == "FULL" {
        fields.push("fills");
    }
    Ok(Value::Object(
        fields
            .into_iter()
            .map(|name| (name.to_owned(), order[name].clone()))
            .collect(),
    ))
}

/// Whether `order` is the one `params` names: by `orderId`, by
/// `origClientOrderId`, or by both (then both must match), on `symbol`.
fn named(order: &Value, params: &Map<String, Value>) -> bool {
    let text = |name: &str| params.get(name).and_then(text_of);
    let by_id = text("orderId").map(|id| id.parse::<u64>().ok() == order["orderId"].as_u64());
    let by_client = text("origClientOrderId").map(|id| order["clientOrderId"] == id.as_str());
    order["symbol"] == text("symbol").unwrap_or_default().as_str()
        && (by_id.is_some() || by_client.is_some())
        && by_id.unwrap_or(true)
        && by_client.unwrap_or(true)
}

fn needs_an_order(params: &Map<String, Value>) -> Result<(), Refusal> {
    if params.get("symbol").and_then(text_of).is_none() {
        return Err(mandatory("symbol"));
    }
    if !params.contains_key("orderId") && !params.contains_key("origClientOrderId") {
        return Err(refusal(
            400,
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        ));
    }
    Ok(())
}

fn cancel(state: &State, params: &Map<String, Value>) -> Result<Value, Refusal> {
    needs_an_order(params)?;
    let removed = {
        let mut orders = state.open_orders.lock().expect("orders");
        let index = orders
            .iter()
            .position(|o| spot::is_spot(o) && named(o, params));
        index.map(|index| orders.remove(index))
    };
    let Some(order) = removed else {
        return Err(refusal(400, -2011, "Unknown order sent."));
    };
    let new_id = params.get("newClientOrderId").and_then(text_of);
    Ok(spot::cancel(state, order, new_id.as_deref()))
}

fn cancel_all(state: &State, params: &Map<String, Value>) -> Result<Value, Refusal> {
    let Some(symbol) = params.get("symbol").and_then(text_of) else {
        return Err(mandatory("symbol"));
    };
    let cancelled = {
        let mut orders = state.open_orders.lock().expect("orders");
        let (cancelled, kept): (Vec<_>, Vec<_>) = orders
            .drain(..)
            .partition(|o| spot::is_spot(o) && o["symbol"] == symbol.as_str());
        *orders = kept;
        cancelled
    };
    if cancelled.is_empty() {
        return Err(refusal(400, -2011, "Unknown order sent."));
    }
    Ok(Value::Array(
        cancelled
            .into_iter()
            .map(|order| spot::cancel(state, order, None))
            .collect(),
    ))
}

fn order_status(state: &State, params: &Map<String, Value>) -> Result<Value, Refusal> {
    needs_an_order(params)?;
    let finished = state.finished_orders.lock().expect("orders").clone();
    let found = open_spot_orders(state)
        .into_iter()
        .chain(finished.into_iter().rev())
        .find(|o| named(o, params));
    let Some(mut order) = found else {
        return Err(refusal(400, -2013, "Order does not exist."));
    };
    // A query answers the order's state, not how it was placed.
    if let Value::Object(fields) = &mut order {
        fields.remove("fills");
        fields.remove("transactTime");
    }
    Ok(order)
}

fn open_spot_orders(state: &State) -> Vec<Value> {
    let orders = state.open_orders.lock().expect("orders");
    orders
        .iter()
        .filter(|o| spot::is_spot(o))
        .cloned()
        .collect()
}

/// A response frame: the result or the error, and the rate limits unless the
/// request or the connection turned them off (`order_limits`: whether the request
/// counts against the order limits too; `None` for a frame that is not a request,
/// which counts against nothing).
fn envelope(
    id: &Value,
    result: Result<Value, Refusal>,
    rate_limits: bool,
    order_limits: Option<bool>,
    state: &State,
) -> Value {
    let mut frame = match result {
        Ok(result) => json!({"id": id, "status": 200, "result": result}),
        Err((status, code, msg)) => {
            json!({"id": id, "status": status, "error": {"code": code, "msg": msg}})
        }
    };
    if rate_limits && order_limits.is_some() {
        let (weight, orders) = match *state.behaviour.lock().expect("behaviour") {
            Behaviour::Usage(weight, orders) => (weight, orders),
            _ => (10, 1),
        };
        let limit = |kind: &str, interval: &str, num: u64, limit: u64, count: u64| json!({"rateLimitType": kind, "interval": interval, "intervalNum": num, "limit": limit, "count": count});
        let mut limits = Vec::new();
        if order_limits == Some(true) {
            limits.push(limit("ORDERS", "SECOND", 10, 50, orders));
            limits.push(limit("ORDERS", "DAY", 1, 160_000, orders));
        }
        limits.push(limit("REQUEST_WEIGHT", "MINUTE", 1, 6000, weight));
        frame["rateLimits"] = Value::Array(limits);
    }
    frame
}

/// A recorded frame's `params`, each as text (see [`Recorded::params`]): the text
/// the signature covers.
pub(super) fn params_of(frame: &str) -> BTreeMap<String, String> {
    raw_params(frame).unwrap_or_default().into_iter().collect()
}

/// The members of the frame's top-level `params` object as the signature covers
/// them: each name with its value as sent (a string's content, anything else its
/// JSON text exactly as written, so `0.0010` stays `0.0010`). `None` if the frame is
/// not a JSON object.
fn raw_params(frame: &str) -> Option<Vec<(String, String)>> {
    let mut cursor = Cursor { text: frame, at: 0 };
    let mut params = None;
    for (name, start, _) in cursor.object()? {
        if name == "params" {
            let mut inner = Cursor {
                text: frame,
                at: start,
            };
            let mut members = Vec::new();
            for (name, start, end) in inner.object()? {
                let raw = frame.get(start..end)?;
                let value = if raw.starts_with('"') {
                    serde_json::from_str::<String>(raw).ok()?
                } else {
                    raw.to_owned()
                };
                members.push((name, value));
            }
            params = Some(members);
        }
    }
    Some(params.unwrap_or_default())
}

/// A reader of JSON text that finds where values start and end (serde_json keeps
/// no spans without its `raw_value` feature, and numbers must be signed as sent).
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn blanks(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.blanks();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The members of the object starting here: name, and where its value starts
    /// and ends.
    fn object(&mut self) -> Option<Vec<(String, usize, usize)>> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.blanks();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(members);
        }
        loop {
            self.blanks();
            let (start, end) = self.value()?;
            let name: String = serde_json::from_str(self.text.get(start..end)?).ok()?;
            self.expect(b':')?;
            self.blanks();
            let (start, end) = self.value()?;
            members.push((name, start, end));
            self.blanks();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(members);
                }
                _ => return None,
            }
        }
    }

    /// Skips the value starting here; where it started and ended.
    fn value(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.at += 1;
                loop {
                    match self.peek()? {
                        b'\\' => self.at += 2,
                        b'"' => {
                            self.at += 1;
                            break;
                        }
                        _ => self.at += 1,
                    }
                }
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.value()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
            }
        }
        (self.at > start).then_some((start, self.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_params_keep_numbers_as_written_and_strings_decoded() {
        let frame = r#"{"id": 1, "method": "order.place", "params": {"symbol": "１２３", "price": 0.0010, "quantity": "1\"2", "flag": true, "list": [1, {"a": "}"}], "timestamp":1645423376532}}"#;
        let params = raw_params(frame).unwrap();
        assert_eq!(
            params,
            vec![
                ("symbol".to_owned(), "１２３".to_owned()),
                ("price".to_owned(), "0.0010".to_owned()),
                ("quantity".to_owned(), "1\"2".to_owned()),
                ("flag".to_owned(), "true".to_owned()),
                ("list".to_owned(), r#"[1, {"a": "}"}]"#.to_owned()),
                ("timestamp".to_owned(), "1645423376532".to_owned()),
            ]
        );
        assert_eq!(raw_params(r#"{"id":1,"method":"ping"}"#), Some(Vec::new()));
        assert_eq!(raw_params("[1]"), None);
    }

    /// Binance's documented example (web-socket-api.md, "SIGNED request example
    /// (HMAC)") verifies, with the payload built the mock's way.
    #[test]
    fn the_documented_signature_verifies() {
        let frame = r#"{"id":"4885f793-e5ad-4c3b-8f6c-55d891472b71","method":"order.place","params":{"symbol":"BTCUSDT","side":"SELL","type":"LIMIT","timeInForce":"GTC","quantity":"0.01000000","price":"52000.00","recvWindow":100,"timestamp":1645423376532,"apiKey":"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A","signature":"aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"}}"#;
        let mut params: Vec<_> = raw_params(frame)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k != "signature")
            .collect();
        params.sort();
        let payload: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        assert_eq!(
            hmac_sha256_hex(secret.as_bytes(), payload.join("&").as_bytes()),
            "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
        );
    }
}
