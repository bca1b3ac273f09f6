//! Kraken spot's authenticated WebSocket v2 (production
//! `wss://ws-auth.kraken.com/v2`) on the mock's HTTPS listener, path `/v2`, as
//! Kraken's spot-websocket-v2 pages (status, ping, executions, balances, add_order,
//! amend_order, edit_order, cancel_order, cancel_all, cancel_after, batch_add,
//! batch_cancel) describe it.
//!
//! On connecting the client gets the `status` channel's update (`{"channel":
//! "status", "type": "update", "data": [{"api_version": "v2", "connection_id",
//! "system": "online", "version"}]}`). Requests are `{"method", "params", "req_id"}`
//! and every answer echoes `method` and `req_id` with `success`, `time_in` and
//! `time_out` (RFC 3339, microseconds), and `result` or `error`:
//! - `ping` (no `params`) is answered `{"method": "pong", "req_id", "time_in",
//!   "time_out"}`;
//! - the private methods carry in `params.token` a token the mock issued over REST
//!   (`GetWebSocketsToken`, `kraken.rs`): good for a first use within 15 minutes of
//!   issue, and for as long as the connection lasts once used on it; any other
//!   token, or none, is refused `ESession:Invalid session`;
//! - `subscribe` and `unsubscribe` take the private channels `executions` (a
//!   snapshot of the open orders, then every order event of the account) and
//!   `balances` (a snapshot of the account's balances); a public channel is refused
//!   as Kraken refuses one on its private host; while a connection holds a
//!   subscription it gets `{"channel": "heartbeat"}` after each second without
//!   another message;
//! - the order methods act on the Kraken book REST uses (`kraken.rs`), so an order
//!   placed over one API can be amended or cancelled over the other, and their
//!   events reach every `executions` subscriber: `add_order`, `batch_add` (2 to 15
//!   orders on one symbol), `amend_order` (in place, same id), `edit_order` (the
//!   order replaced by a new one), `cancel_order` (one answer per order cancelled,
//!   all with the request's `req_id`), `batch_cancel`, `cancel_all`, and
//!   `cancel_all_orders_after` (the dead man's switch: every order cancelled when
//!   its timer runs out);
//! - a parameter a method does not have is refused as Kraken refuses one,
//!   `Unsupported field: '<name>' for the given msg type: <method, spaced>`; a
//!   number that is not one `<Name> field must be a number_float`; other bad values
//!   `EGeneral:Invalid arguments`; an order or a symbol the book does not have
//!   `EOrder:Unknown order`, `Currency pair not supported <symbol>`.
//!
//! v2 names pairs by their v2 symbol (`BTC/USD`: v2 spells bitcoin BTC), which the
//! book keeps as the REST altname (`XBTUSD`). Every frame is recorded (method `WS`,
//! path `/v2`, the frame as body) with whether its token was valid
//! ([`super::Recorded::authenticated`]; `None` for a frame with no token whose
//! method needs none).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use ring::rand::SecureRandom as _;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::Message;

use super::kraken::{self, Placement, USER_REQUESTED, number, stamp};
use super::{State, ws};

/// Where Kraken serves its authenticated WebSocket v2.
pub(super) const PATH: &str = "/v2";

/// How long an issued token may wait for its first use ("The token should be used
/// within 15 minutes of creation").
pub(super) const TOKEN_LIFETIME_MS: u64 = 15 * 60 * 1000;

/// How long a subscribed connection may go without a message before a heartbeat
/// ("approximately once every second in the absence of any other channel updates").
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// The engine version the `status` channel reports.
const VERSION: &str = "2.0.10";

/// The rate counter's ceiling an `executions` subscription reports (Kraken's
/// example's; it depends on the account's tier).
const MAX_RATE_COUNT: u64 = 125;

/// How many orders `batch_add` takes, and `batch_cancel`.
const BATCH_ADD: std::ops::RangeInclusive<usize> = 2..=15;
const BATCH_CANCEL: std::ops::RangeInclusive<usize> = 2..=50;

/// `cancel_all_orders_after`'s timeout must be under a day.
const MAX_TIMEOUT_S: u64 = 86_400;

/// What Kraken answers a private request without a valid token.
const INVALID_SESSION: &str = "ESession:Invalid session";
const INVALID_ARGUMENTS: &str = "EGeneral:Invalid arguments";
const UNKNOWN_ORDER: &str = "EOrder:Unknown order";

// Lists of names are written as words separated by spaces, read with [`listed`].

/// The public channels, which Kraken serves on `ws.kraken.com` and refuses here.
const PUBLIC_CHANNELS: &str = "book level3 ticker trade ohlc instrument heartbeat status";

/// The exec types an `executions` subscription with `order_status: false` still
/// gets: the open and close transitions, and its fills.
const OPEN_AND_CLOSE: &str = "new trade filled canceled expired";

/// An order's own parameters, in `add_order` and in each of `batch_add`'s orders.
const ORDER_PARAMS: &str = "order_type side order_qty limit_price limit_price_type triggers \
    time_in_force margin post_only reduce_only effective_time expire_time cl_ord_id \
    order_userref conditional display_qty fee_preference no_mpp stp_type cash_order_qty \
    sender_sub_id stop_price trigger";

/// The parameters of `amend_order` and of `edit_order`.
const AMEND_PARAMS: &str = "order_id cl_ord_id order_qty display_qty limit_price \
    limit_price_type post_only trigger_price trigger_price_type deadline symbol";
const EDIT_PARAMS: &str = "order_id symbol order_qty limit_price display_qty post_only \
    reduce_only order_userref deadline validate triggers fee_preference no_mpp price trigger \
    stop_price";

/// The order types, and those of them that need a limit price, a trigger.
const ORDER_TYPES: &str = "limit market iceberg stop-loss stop-loss-limit take-profit \
    take-profit-limit trailing-stop trailing-stop-limit settle-position";
const LIMITED: &str = "limit iceberg stop-loss-limit take-profit-limit trailing-stop-limit";
const TRIGGERED: &str = "stop-loss stop-loss-limit take-profit take-profit-limit trailing-stop \
    trailing-stop-limit";

/// The units a price may be given in.
const PRICE_TYPES: &str = "static pct quote";

/// Whether `word` is one of the space-separated `words`.
fn listed(words: &str, word: &str) -> bool {
    words.split_whitespace().any(|w| w == word)
}

/// Issues a fresh token for the account: 32 random bytes in base64 without
/// padding (43 characters, as Kraken's look), good for a first use within
/// [`TOKEN_LIFETIME_MS`].
pub(super) fn issue_token(state: &State) -> String {
    let mut bytes = [0u8; 32];
    // SystemRandom fails only where the OS has no randomness: then a counter keeps
    // tokens distinct, which is all a mock needs.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let n = state.next_connection.fetch_add(1, Ordering::Relaxed);
        bytes[..8].copy_from_slice(&n.to_be_bytes());
    }
    let token = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    state
        .kraken_tokens
        .lock()
        .expect("tokens")
        .insert(token.clone(), state.now_ms());
    token
}

/// One connection's state.
#[derive(Debug, Default)]
struct Session {
    /// Tokens used on this connection: good on it for as long as it lasts.
    tokens: BTreeSet<String>,
    /// The `executions` subscription, if any: whether it wants every status
    /// transition (`order_status`).
    executions: Option<bool>,
    balances: bool,
    /// The last `sequence` sent on each channel.
    sequences: BTreeMap<String, u64>,
}

impl Session {
    fn subscribed(&self) -> bool {
        self.executions.is_some() || self.balances
    }

    /// A channel message (`type` `snapshot` or `update`), numbered on its channel.
    fn message(&mut self, channel: &str, kind: &str, data: Vec<Value>) -> Value {
        let sequence = self.sequences.entry(channel.to_owned()).or_insert(0);
        *sequence += 1;
        json!({"channel": channel, "type": kind, "data": data, "sequence": *sequence})
    }

    /// Whether `token` is good on this connection: used on it before, or issued by
    /// the mock no more than [`TOKEN_LIFETIME_MS`] ago (then it is this
    /// connection's from now on).
    fn accepts(&mut self, state: &State, token: Option<&str>) -> bool {
        let Some(token) = token else {
            return false;
        };
        if self.tokens.contains(token) {
            return true;
        }
        let issued = state
            .kraken_tokens
            .lock()
            .expect("tokens")
            .get(token)
            .copied();
        let fresh = issued.is_some_and(|at| state.now_ms().saturating_sub(at) <= TOKEN_LIFETIME_MS);
        if fresh {
            self.tokens.insert(token.to_owned());
        }
        fresh
    }

    /// The message `event` (`{"channel", "data"}`) becomes on this connection: an
    /// update of a channel it subscribed to, `executions` narrowed to the open and
    /// close transitions when it asked for no others; none otherwise.
    fn delivery(&mut self, event: &Value) -> Option<Value> {
        let channel = event["channel"].as_str()?;
        let data: Vec<Value> = event["data"].as_array()?.clone();
        let data = match channel {
            "executions" => {
                let every_status = self.executions?;
                data.into_iter()
                    .filter(|e| {
                        every_status
                            || e["exec_type"]
                                .as_str()
                                .is_some_and(|t| listed(OPEN_AND_CLOSE, t))
                    })
                    .collect()
            }
            "balances" if self.balances => data,
            _ => return None,
        };
        (!data.is_empty()).then(|| self.message(channel, "update", data))
    }
}

/// Serves one connection whose request head asked for `/v2`: the upgrade, the
/// status update, then requests and events until the client goes.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    asked: ws::Asked<S>,
    state: Arc<State>,
) {
    let Some((mut socket, headers)) = asked.open(&state).await else {
        return;
    };
    let mut events = state.kraken_events.subscribe();
    let mut session = Session::default();
    // Kraken's connection ids are 64-bit numbers.
    let serial = state.next_connection.fetch_add(1, Ordering::Relaxed);
    let status = json!({"channel": "status", "type": "update", "data": [{
        "api_version": "v2", "connection_id": 0x4b52_0000_0000_0000_u64 + serial,
        "system": "online", "version": VERSION}]});
    if socket
        .send(Message::text(status.to_string()))
        .await
        .is_err()
    {
        return;
    }
    let mut beats = tokio::time::interval(HEARTBEAT_EVERY);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frames = tokio::select! {
            _ = beats.tick(), if session.subscribed() => vec![json!({"channel": "heartbeat"})],
            message = socket.next() => {
                let text = match ws::read(&mut socket, message).await {
                    ws::Read::Text(text) => text,
                    ws::Read::Skip => continue,
                    ws::Read::Gone => return,
                };
                let (replies, authenticated) = answer(&state, &mut session, &text);
                state.record(ws::message_record(PATH, &headers, text, None, authenticated));
                replies
            }
            event = events.recv() => match event {
                Ok(event) => session.delivery(&event).into_iter().collect(),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        if !frames.is_empty() {
            beats.reset();
        }
        for frame in frames {
            if socket.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
    }
}

/// How one request is answered: its method and `req_id` echoed, with when it came.
struct Answer<'a> {
    method: &'a str,
    req_id: Option<&'a Value>,
    time_in: String,
    state: &'a State,
}

impl Answer<'_> {
    fn envelope(&self, success: bool) -> Map<String, Value> {
        let mut reply = Map::new();
        // A frame that named no method gets an answer that names none.
        if !self.method.is_empty() {
            reply.insert("method".to_owned(), self.method.into());
        }
        if let Some(id) = self.req_id {
            reply.insert("req_id".to_owned(), id.clone());
        }
        reply.insert("success".to_owned(), success.into());
        reply.insert("time_in".to_owned(), self.time_in.clone().into());
        reply.insert("time_out".to_owned(), stamp(self.state.now_ms()).into());
        reply
    }

    fn ok(&self, result: Value) -> Value {
        let mut reply = self.envelope(true);
        reply.insert("result".to_owned(), result);
        Value::Object(reply)
    }

    fn refused(&self, error: &str) -> Value {
        let mut reply = self.envelope(false);
        reply.insert("error".to_owned(), error.into());
        Value::Object(reply)
    }

    /// A refused `subscribe` or `unsubscribe`: Kraken adds the channel asked for
    /// and `status: "error"`.
    fn refused_subscription(&self, channel: Option<&str>, error: &str) -> Value {
        let mut reply = self.refused(error);
        if let Some(channel) = channel {
            reply["channel"] = channel.into();
        }
        reply["status"] = "error".into();
        reply
    }
}

/// The frames answering one request, and whether its token was valid (`None` for a
/// frame that carries none and whose method needs none).
fn answer(state: &Arc<State>, session: &mut Session, frame: &str) -> (Vec<Value>, Option<bool>) {
    let time_in = stamp(state.now_ms());
    let request: Map<String, Value> = serde_json::from_str(frame).unwrap_or_default();
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let answer = Answer {
        method,
        req_id: request.get("req_id"),
        time_in,
        state,
    };
    let empty = Map::new();
    let params = match request.get("params") {
        None => Some(&empty),
        Some(params) => params.as_object(),
    };
    let token = params.and_then(|p| p.get("token")).and_then(Value::as_str);
    let private = PRIVATE.iter().any(|(name, _)| *name == method)
        || ["subscribe", "unsubscribe"].contains(&method);
    // A frame that names no token and needs none is judged on nothing.
    let judged = (private || token.is_some()).then(|| session.accepts(state, token));
    let malformed = method.is_empty()
        || request
            .get("req_id")
            .is_some_and(|id| id.as_u64().is_none())
        || params.is_none();
    if malformed {
        return (vec![answer.refused(INVALID_ARGUMENTS)], judged);
    }
    if let Some(extra) = request
        .keys()
        .find(|k| !["method", "params", "req_id"].contains(&k.as_str()))
    {
        return (vec![answer.refused(&unsupported(extra, method))], judged);
    }
    let params = params.unwrap_or(&empty);
    let replies = match method {
        "ping" if request.contains_key("params") => {
            vec![answer.refused(&unsupported("params", method))]
        }
        "ping" => {
            let mut pong = answer.envelope(true);
            pong.insert("method".to_owned(), "pong".into());
            pong.remove("success");
            vec![Value::Object(pong)]
        }
        "subscribe" | "unsubscribe" => subscription(state, session, &answer, params, judged),
        _ => match PRIVATE.iter().find(|(name, _)| *name == method) {
            None => vec![answer.refused("Method not found")],
            Some(_) if judged != Some(true) => vec![answer.refused(INVALID_SESSION)],
            Some((_, Handler::One(handler))) => match handler(state, &answer, params) {
                Ok(result) => vec![answer.ok(result)],
                Err(error) => vec![answer.refused(&error)],
            },
            Some((_, Handler::Many(handler))) => handler(state, &answer, params),
        },
    };
    (replies, judged)
}

/// Kraken's refusal of a parameter `method` does not have.
fn unsupported(name: &str, method: &str) -> String {
    format!(
        "Unsupported field: '{name}' for the given msg type: {}",
        method.replace('_', " ")
    )
}

/// A method with one answer: its result, or the refusal.
type OneAnswer = fn(&Arc<State>, &Answer<'_>, &Map<String, Value>) -> Result<Value, String>;

/// A method with as many answers as it takes (`cancel_order`: one per order).
type Answers = fn(&Arc<State>, &Answer<'_>, &Map<String, Value>) -> Vec<Value>;

/// How a method answers a request whose token was valid.
#[derive(Clone, Copy)]
enum Handler {
    One(OneAnswer),
    Many(Answers),
}

/// The order methods, each with its handler.
const PRIVATE: &[(&str, Handler)] = &[
    ("add_order", Handler::One(add_order)),
    ("batch_add", Handler::One(batch_add)),
    ("amend_order", Handler::One(amend_order)),
    ("edit_order", Handler::One(edit_order)),
    ("cancel_order", Handler::Many(cancel_order)),
    ("batch_cancel", Handler::One(batch_cancel)),
    ("cancel_all", Handler::One(cancel_all)),
    (
        "cancel_all_orders_after",
        Handler::One(cancel_all_orders_after),
    ),
];

/// Refuses any of `params` but those `allowed` lists (and `token`) as Kraken does.
fn only(params: &Map<String, Value>, allowed: &[&str], method: &str) -> Result<(), String> {
    match params
        .keys()
        .find(|k| *k != "token" && !allowed.iter().any(|words| listed(words, k)))
    {
        Some(name) => Err(unsupported(name, method)),
        None => Ok(()),
    }
}

/// Reads the parameters of a request, each refusal in Kraken's words.
struct Params<'a>(&'a Map<String, Value>);

impl<'a> Params<'a> {
    fn number(&self, name: &str) -> Result<Option<f64>, String> {
        match self.0.get(name) {
            None => Ok(None),
            Some(value) => value.as_f64().map(Some).ok_or_else(|| {
                let mut spelled = name.to_owned();
                if let Some(first) = spelled.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                format!("{spelled} field must be a number_float")
            }),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, String> {
        self.typed(name, Value::as_bool)
    }

    fn text(&self, name: &str) -> Result<Option<&'a str>, String> {
        self.typed(name, Value::as_str)
    }

    /// A text that must be one of the words `allowed` lists.
    fn one_of(&self, name: &str, allowed: &str) -> Result<Option<&'a str>, String> {
        match self.text(name)? {
            Some(value) if !listed(allowed, value) => Err(INVALID_ARGUMENTS.to_owned()),
            other => Ok(other),
        }
    }

    /// An array whose every element `element` reads; empty when absent.
    fn list<T>(&self, name: &str, element: fn(&'a Value) -> Option<T>) -> Result<Vec<T>, String> {
        match self.0.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(element)
                .collect::<Option<Vec<T>>>()
                .ok_or_else(|| INVALID_ARGUMENTS.to_owned()),
            Some(_) => Err(INVALID_ARGUMENTS.to_owned()),
        }
    }

    fn typed<T>(&self, name: &str, read: fn(&'a Value) -> Option<T>) -> Result<Option<T>, String> {
        match self.0.get(name) {
            None => Ok(None),
            Some(value) => read(value)
                .map(Some)
                .ok_or_else(|| INVALID_ARGUMENTS.to_owned()),
        }
    }
}

/// A required value: refused `EGeneral:Invalid arguments` when absent.
fn required<T>(value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| INVALID_ARGUMENTS.to_owned())
}

/// The book's altname of the pair a request's `symbol` names.
fn altname_of(params: &Params<'_>) -> Result<&'static str, String> {
    let symbol = required(params.text("symbol")?)?;
    kraken::pair_named(symbol)
        .filter(|p| p.symbol == symbol)
        .map(|p| p.altname)
        .ok_or_else(|| format!("Currency pair not supported {symbol}"))
}

/// A number as the book keeps it: text (Rust writes no exponent, so `0.0001` stays
/// `0.0001`).
fn decimal(value: f64) -> String {
    value.to_string()
}

/// A new order read from `order` (on the pair `altname`), its checks Kraken's:
/// where it goes on the book, and what its `pending_new` event says beyond it.
fn new_order(
    order: &Map<String, Value>,
    altname: &str,
    method: &str,
) -> Result<(Placement, Map<String, Value>), String> {
    let params = Params(order);
    let order_type = required(params.one_of("order_type", ORDER_TYPES)?)?;
    let side = required(params.one_of("side", "buy sell")?)?;
    let cash = params.number("cash_order_qty")?;
    let quantity = params.number("order_qty")?;
    let limit_price = params.number("limit_price")?;
    let post_only = params.boolean("post_only")?.unwrap_or(false);
    let reduce_only = params.boolean("reduce_only")?.unwrap_or(false);
    for flag in ["margin", "no_mpp"] {
        params.boolean(flag)?;
    }
    for name in ["display_qty", "stop_price"] {
        params.number(name)?;
    }
    for name in ["effective_time", "expire_time", "sender_sub_id"] {
        params.text(name)?;
    }
    params.one_of("limit_price_type", PRICE_TYPES)?;
    params.one_of("fee_preference", "base quote")?;
    params.one_of("stp_type", "cancel_newest cancel_oldest cancel_both")?;
    params.one_of("trigger", "index last")?;
    let time_in_force = params
        .one_of("time_in_force", "gtc gtd ioc GTC GTD IOC")?
        .unwrap_or("gtc")
        .to_ascii_uppercase();
    let client = params.text("cl_ord_id")?;
    let userref = params.typed("order_userref", Value::as_i64)?;
    let triggers = match order.get("triggers") {
        None => None,
        Some(Value::Object(triggers)) => Some(read_triggers(triggers, method)?),
        Some(_) => return Err(INVALID_ARGUMENTS.to_owned()),
    };
    if order.get("conditional").is_some_and(|c| !c.is_object()) {
        return Err(INVALID_ARGUMENTS.to_owned());
    }
    let sized = quantity.is_some_and(|q| q > 0.0) || cash.is_some_and(|c| c > 0.0);
    let incomplete = !sized
        || (listed(LIMITED, order_type) && limit_price.is_none())
        || (listed(TRIGGERED, order_type) && triggers.is_none())
        || (order_type == "iceberg" && order.get("display_qty").is_none())
        || (time_in_force == "GTD" && order.get("expire_time").is_none())
        || (client.is_some() && userref.is_some());
    if incomplete {
        return Err(INVALID_ARGUMENTS.to_owned());
    }
    let mut extra = Map::new();
    extra.insert("time_in_force".to_owned(), time_in_force.into());
    if reduce_only {
        extra.insert("reduce_only".to_owned(), true.into());
    }
    if let Some(display) = order.get("display_qty") {
        extra.insert("display_qty".to_owned(), display.clone());
    }
    if let Some(triggers) = triggers {
        extra.insert("triggers".to_owned(), triggers);
    }
    let placement = Placement {
        pair: altname.to_owned(),
        side: side.to_owned(),
        order_type: order_type.to_owned(),
        price: limit_price.map(decimal).unwrap_or_default(),
        volume: quantity.or(cash).map(decimal).unwrap_or_default(),
        oflags: if post_only { "post" } else { "" }.to_owned(),
        userref: userref.unwrap_or(0),
        cl_ord_id: client.map(str::to_owned),
    };
    Ok((placement, extra))
}

/// An order's `triggers` (`reference`, `price`, `price_type`), as its events
/// describe them (`status` untriggered).
fn read_triggers(triggers: &Map<String, Value>, method: &str) -> Result<Value, String> {
    only(triggers, &["reference price price_type"], method)?;
    let params = Params(triggers);
    let reference = params.one_of("reference", "index last")?.unwrap_or("last");
    let price = required(params.number("price")?)?;
    let price_type = params
        .one_of("price_type", PRICE_TYPES)?
        .unwrap_or("static");
    Ok(
        json!({"reference": reference, "price": price, "price_type": price_type,
        "status": "untriggered"}),
    )
}

/// The ids an order result names: Kraken's, and the client's own if it gave one.
fn placed(order: &Value) -> Value {
    let mut result = json!({"order_id": order["txid"]});
    if let Some(client) = order["cl_ord_id"].as_str() {
        result["cl_ord_id"] = client.into();
    }
    if order["userref"].as_i64().is_some_and(|u| u != 0) {
        result["order_userref"] = order["userref"].clone();
    }
    result
}

fn add_order(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Result<Value, String> {
    only(
        params,
        &[ORDER_PARAMS, "symbol deadline validate"],
        answer.method,
    )?;
    let read = Params(params);
    let altname = altname_of(&read)?;
    read.text("deadline")?;
    let validate = read.boolean("validate")?.unwrap_or(false);
    let (placement, extra) = new_order(params, altname, answer.method)?;
    let order = kraken::entry(state, &placement);
    let result = placed(&order);
    if !validate {
        kraken::rest(state, order, &extra);
    }
    Ok(result)
}

fn batch_add(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Result<Value, String> {
    only(params, &["orders symbol deadline validate"], answer.method)?;
    let read = Params(params);
    let altname = altname_of(&read)?;
    read.text("deadline")?;
    let validate = read.boolean("validate")?.unwrap_or(false);
    let orders = read.list("orders", Value::as_object)?;
    if !BATCH_ADD.contains(&orders.len()) {
        return Err(INVALID_ARGUMENTS.to_owned());
    }
    // The whole batch is checked before any of it is placed.
    let mut checked = Vec::new();
    for order in orders {
        only(order, &[ORDER_PARAMS], answer.method)?;
        checked.push(new_order(order, altname, answer.method)?);
    }
    let mut results = Vec::new();
    for (placement, extra) in checked {
        let order = kraken::entry(state, &placement);
        results.push(placed(&order));
        if !validate {
            kraken::rest(state, order, &extra);
        }
    }
    Ok(Value::Array(results))
}

fn amend_order(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Result<Value, String> {
    only(params, &[AMEND_PARAMS], answer.method)?;
    let read = Params(params);
    let id = read.text("order_id")?;
    let client = read.text("cl_ord_id")?;
    let quantity = required(read.number("order_qty")?)?;
    let price = read.number("limit_price")?;
    for name in ["display_qty", "trigger_price"] {
        read.number(name)?;
    }
    read.boolean("post_only")?;
    read.one_of("limit_price_type", PRICE_TYPES)?;
    read.one_of("trigger_price_type", PRICE_TYPES)?;
    read.text("deadline")?;
    read.text("symbol")?;
    if id.is_some() == client.is_some() || quantity <= 0.0 {
        return Err(INVALID_ARGUMENTS.to_owned());
    }
    let matches = |o: &Value| match (id, client) {
        (Some(id), _) => o["txid"] == id,
        (None, client) => client.is_some_and(|c| o["cl_ord_id"] == c),
    };
    let price = price.map(decimal);
    kraken::amend(state, matches, &decimal(quantity), price.as_deref())
        .ok_or_else(|| UNKNOWN_ORDER.to_owned())?;
    let number = state.next_order.fetch_add(1, Ordering::Relaxed);
    let mut result = json!({"amend_id": format!("A{number:05}-MOCKK-AMEND0")});
    if let Some(id) = id {
        result["order_id"] = id.into();
    }
    if let Some(client) = client {
        result["cl_ord_id"] = client.into();
    }
    Ok(result)
}

fn edit_order(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Result<Value, String> {
    only(params, &[EDIT_PARAMS], answer.method)?;
    let read = Params(params);
    let id = required(read.text("order_id")?)?;
    let altname = altname_of(&read)?;
    let quantity = read.number("order_qty")?;
    let price = read.number("limit_price")?.or(read.number("price")?);
    let post_only = read.boolean("post_only")?;
    let userref = read.typed("order_userref", Value::as_i64)?;
    let validate = read.boolean("validate")?.unwrap_or(false);
    for name in ["display_qty", "stop_price"] {
        read.number(name)?;
    }
    for flag in ["reduce_only", "no_mpp"] {
        read.boolean(flag)?;
    }
    read.text("deadline")?;
    read.one_of("fee_preference", "base quote")?;
    read.one_of("trigger", "index last")?;
    if let Some(triggers) = params.get("triggers") {
        read_triggers(
            triggers.as_object().ok_or(INVALID_ARGUMENTS)?,
            answer.method,
        )?;
    }
    let original = state
        .open_orders
        .lock()
        .expect("orders")
        .iter()
        .find(|o| kraken::is_kraken(o) && o["txid"] == id)
        .cloned()
        .filter(|o| {
            let pair = o["descr"]["pair"].as_str().unwrap_or_default();
            kraken::pair_named(pair).is_some_and(|p| p.altname == altname)
        })
        .ok_or_else(|| UNKNOWN_ORDER.to_owned())?;
    let descr = &original["descr"];
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let flags = match post_only {
        Some(true) => "post".to_owned(),
        Some(false) => String::new(),
        None => text(&original["oflags"]),
    };
    let placement = Placement {
        pair: text(&descr["pair"]),
        side: text(&descr["type"]),
        order_type: text(&descr["ordertype"]),
        price: price.map_or_else(|| text(&descr["price"]), decimal),
        volume: quantity.map_or_else(|| text(&original["vol"]), decimal),
        oflags: flags,
        userref: userref.or(original["userref"].as_i64()).unwrap_or(0),
        // The new order is a new one: the client id stays with the original.
        cl_ord_id: None,
    };
    let replacement = kraken::entry(state, &placement);
    let result = json!({"order_id": replacement["txid"], "original_order_id": id});
    if !validate {
        kraken::cancel(state, |o| o["txid"] == id, "Order replaced");
        kraken::rest(state, replacement, &Map::new());
    }
    Ok(result)
}

fn cancel_order(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Vec<Value> {
    let Named {
        ids,
        clients,
        userrefs,
    } = match cancelled_names(params, answer.method) {
        Ok(named) => named,
        Err(error) => return vec![answer.refused(&error)],
    };
    // One answer for each order cancelled (Kraken streams them), a refusal for each
    // name that matched none.
    let mut replies = Vec::new();
    let mut cancel = |matches: &dyn Fn(&Value) -> bool| {
        let cancelled = kraken::cancel(state, matches, USER_REQUESTED);
        if cancelled.is_empty() {
            replies.push(answer.refused(UNKNOWN_ORDER));
        }
        for order in cancelled {
            let mut result = json!({"order_id": order["txid"]});
            if let Some(client) = order["cl_ord_id"].as_str() {
                result["cl_ord_id"] = client.into();
            }
            replies.push(answer.ok(result));
        }
    };
    for id in ids {
        cancel(&|o: &Value| o["txid"] == id);
    }
    for client in clients {
        cancel(&|o: &Value| o["cl_ord_id"] == client);
    }
    for userref in userrefs {
        cancel(&|o: &Value| o["userref"] == userref);
    }
    replies
}

/// The orders a `cancel_order` names.
struct Named<'a> {
    /// By Kraken id.
    ids: Vec<&'a str>,
    /// By client id.
    clients: Vec<&'a str>,
    /// By numeric reference (every order with it).
    userrefs: Vec<i64>,
}

fn cancelled_names<'a>(params: &'a Map<String, Value>, method: &str) -> Result<Named<'a>, String> {
    only(params, &["order_id cl_ord_id order_userref"], method)?;
    let read = Params(params);
    let named = Named {
        ids: read.list("order_id", Value::as_str)?,
        clients: read.list("cl_ord_id", Value::as_str)?,
        userrefs: read.list("order_userref", Value::as_i64)?,
    };
    if named.ids.is_empty() && named.clients.is_empty() && named.userrefs.is_empty() {
        return Err(INVALID_ARGUMENTS.to_owned());
    }
    Ok(named)
}

fn batch_cancel(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Result<Value, String> {
    only(params, &["orders cl_ord_id"], answer.method)?;
    let read = Params(params);
    let orders = read.list("orders", Value::as_str)?;
    let clients = read.list("cl_ord_id", Value::as_str)?;
    if !BATCH_CANCEL.contains(&(orders.len() + clients.len())) {
        return Err(INVALID_ARGUMENTS.to_owned());
    }
    // `orders` holds Kraken ids or numeric client references.
    let matches = |o: &Value| {
        let userref = o["userref"].as_i64().map(|u| u.to_string());
        orders
            .iter()
            .any(|n| o["txid"] == *n || userref.as_deref() == Some(*n))
            || clients.iter().any(|c| o["cl_ord_id"] == *c)
    };
    match kraken::cancel(state, matches, USER_REQUESTED).len() {
        0 => Err(UNKNOWN_ORDER.to_owned()),
        count => Ok(json!({"count": count})),
    }
}

fn cancel_all(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Result<Value, String> {
    only(params, &[], answer.method)?;
    let count = kraken::cancel(state, |_| true, USER_REQUESTED).len();
    Ok(json!({"count": count}))
}

fn cancel_all_orders_after(
    state: &Arc<State>,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
) -> Result<Value, String> {
    only(params, &["timeout"], answer.method)?;
    let timeout = required(Params(params).typed("timeout", Value::as_u64)?)?;
    if timeout >= MAX_TIMEOUT_S {
        return Err(INVALID_ARGUMENTS.to_owned());
    }
    let now = state.now_ms();
    // Each request replaces the timer before it; a timeout of 0 only stops it.
    let generation = {
        let mut armed = state.kraken_dead_man.lock().expect("dead man");
        *armed += 1;
        *armed
    };
    let trigger = if timeout == 0 {
        "0".to_owned()
    } else {
        arm(state, generation, timeout);
        stamp(now + timeout * 1000)
    };
    Ok(json!({"currentTime": stamp(now), "triggerTime": trigger}))
}

/// Cancels every Kraken order after `timeout` seconds, unless a later
/// `cancel_all_orders_after` replaced this one (`generation`) by then.
fn arm(state: &Arc<State>, generation: u64, timeout: u64) {
    let shared = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(timeout)).await;
        let current = *shared.kraken_dead_man.lock().expect("dead man");
        if current == generation {
            kraken::cancel(&shared, |_| true, "Dead man switch");
        }
    });
}

/// `subscribe` and `unsubscribe` of `executions` and `balances`: the public
/// channels refused, then the token, then the parameters; a subscription is
/// acknowledged and followed by its snapshot.
fn subscription(
    state: &State,
    session: &mut Session,
    answer: &Answer<'_>,
    params: &Map<String, Value>,
    judged: Option<bool>,
) -> Vec<Value> {
    let channel = params.get("channel").and_then(Value::as_str);
    let refused = |error: &str| vec![answer.refused_subscription(channel, error)];
    let Some(channel) = channel else {
        return refused(INVALID_ARGUMENTS);
    };
    if listed(PUBLIC_CHANNELS, channel) {
        return refused(
            "Public market data subscriptions are unavailable on this endpoint. Try ws.kraken.com",
        );
    }
    if judged != Some(true) {
        return refused(INVALID_SESSION);
    }
    let subscribing = answer.method == "subscribe";
    // Besides `channel` (and `users`, which takes `all`), every parameter is a flag.
    let flags = match (channel, subscribing) {
        (_, false) => "",
        ("executions", true) => {
            "snap_trades snap_orders order_status ratecounter rebased snapshot_trades snapshot"
        }
        ("balances", true) => "snapshot rebased",
        _ => return refused(INVALID_ARGUMENTS),
    };
    let users = if subscribing { "users" } else { "" };
    if let Err(error) = only(params, &["channel", users, flags], answer.method) {
        return refused(&error);
    }
    let read = Params(params);
    let flags: Result<BTreeMap<&str, Option<bool>>, String> = flags
        .split_whitespace()
        .map(|name| Ok((name, read.boolean(name)?)))
        .collect();
    let flags = match flags {
        Ok(flags) => flags,
        Err(error) => return refused(&error),
    };
    let flag = |name: &str| flags.get(name).copied().flatten();
    let held = match channel {
        "executions" => session.executions.is_some(),
        _ => session.balances,
    };
    if !subscribing {
        if !held {
            return refused("Subscription Not Found");
        }
        match channel {
            "executions" => session.executions = None,
            _ => session.balances = false,
        }
        return vec![answer.ok(json!({"channel": channel}))];
    }
    if held {
        return refused("Already subscribed");
    }
    // `snapshot` is the deprecated name of `snap_orders`.
    let snapshot = flag("snapshot");
    match channel {
        "executions" => {
            let snap_orders = flag("snap_orders").or(snapshot).unwrap_or(true);
            let snap_trades = flag("snap_trades").unwrap_or(false);
            session.executions = Some(flag("order_status").unwrap_or(true));
            let ack = answer.ok(json!({"channel": channel, "maxratecount": MAX_RATE_COUNT,
                "snap_orders": snap_orders, "snap_trades": snap_trades}));
            let mut replies = vec![ack];
            if snap_orders || snap_trades {
                // The mock keeps no fills: a trades snapshot is empty.
                let open: Vec<Value> = if snap_orders {
                    let orders = state.open_orders.lock().expect("orders");
                    orders
                        .iter()
                        .filter(|o| kraken::is_kraken(o))
                        .map(kraken::snapshot_entry)
                        .collect()
                } else {
                    Vec::new()
                };
                replies.push(session.message(channel, "snapshot", open));
            }
            replies
        }
        _ => {
            let snapshot = snapshot.unwrap_or(true);
            session.balances = true;
            let mut replies = vec![answer.ok(json!({"channel": channel, "snapshot": snapshot}))];
            if snapshot {
                replies.push(session.message(channel, "snapshot", balances()));
            }
            replies
        }
    }
}

/// The account's balances as the `balances` snapshot gives them: each asset's total
/// and its one spot wallet.
fn balances() -> Vec<Value> {
    kraken::BALANCES
        .iter()
        .map(|(_, asset, amount)| {
            let balance = number(amount);
            json!({"asset": asset, "asset_class": "currency", "balance": balance,
                "wallets": [{"type": "spot", "id": "main", "balance": balance}]})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_in_krakens_words() {
        assert_eq!(
            unsupported("price", "add_order"),
            "Unsupported field: 'price' for the given msg type: add order"
        );
        let params = json!({"order_qty": "1", "token": "t"});
        let params = params.as_object().unwrap();
        assert_eq!(
            Params(params).number("order_qty").unwrap_err(),
            "Order_qty field must be a number_float"
        );
        assert_eq!(only(params, &["order_qty"], "add_order"), Ok(()));
        assert!(listed(ORDER_PARAMS, "order_userref") && listed(ORDER_PARAMS, "trigger"));
        assert!(!listed(ORDER_PARAMS, "order"));
        assert!(
            only(params, &[], "amend_order")
                .unwrap_err()
                .contains("'order_qty'")
        );
    }

    #[test]
    fn orders_are_checked_as_kraken_checks_them() {
        let order = |value: Value| value.as_object().cloned().unwrap();
        let (placement, extra) = new_order(
            &order(
                json!({"order_type": "limit", "side": "buy", "order_qty": 0.001,
                "limit_price": 60000, "time_in_force": "gtc", "post_only": true,
                "cl_ord_id": "ws-1"}),
            ),
            "XBTUSD",
            "add_order",
        )
        .unwrap();
        assert_eq!(
            (placement.price.as_str(), placement.volume.as_str()),
            ("60000", "0.001")
        );
        assert_eq!(placement.oflags, "post");
        assert_eq!(placement.cl_ord_id.as_deref(), Some("ws-1"));
        assert_eq!(extra["time_in_force"], "GTC");
        for bad in [
            json!({"order_type": "limit", "side": "buy", "order_qty": 1}),
            json!({"order_type": "limit", "side": "up", "order_qty": 1, "limit_price": 1}),
            json!({"order_type": "stop-loss", "side": "buy", "order_qty": 1}),
            json!({"order_type": "market", "side": "buy", "order_qty": 0}),
            json!({"order_type": "market", "side": "buy", "order_qty": 1,
                "cl_ord_id": "a", "order_userref": 1}),
        ] {
            assert_eq!(
                new_order(&order(bad.clone()), "XBTUSD", "add_order").unwrap_err(),
                INVALID_ARGUMENTS,
                "{bad}"
            );
        }
        let triggered = order(json!({"order_type": "stop-loss", "side": "sell",
            "order_qty": 1, "triggers": {"price": -2, "price_type": "pct"}}));
        let (_, extra) = new_order(&triggered, "XBTUSD", "add_order").unwrap();
        assert_eq!(
            extra["triggers"],
            json!({"reference": "last", "price": -2.0, "price_type": "pct", "status": "untriggered"})
        );
    }

    #[test]
    fn timestamps_have_microseconds() {
        assert_eq!(stamp(1_695_378_785_709), "2023-09-22T10:33:05.709000Z");
    }
}
