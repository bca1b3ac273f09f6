//! The mock's Kraken spot REST: public market data without a key, and private calls
//! checked as Kraken documents them: a known `API-Key`, an `API-Sign` of
//! base64(HMAC-SHA512(base64decode(secret), path || SHA256(nonce || body))) over
//! exactly the body received, and a nonce greater than the last one the key used.
//! Errors come back, as Kraken's do, in HTTP 200 with an `error` array.
//!
//! `GetWebSocketsToken` issues the tokens the WebSocket v2 (`kraken_ws.rs`) takes.
//! Orders placed over REST and over that WebSocket live in the shared open-order
//! list in the shape OpenOrders gives them, and each change (placed, amended,
//! cancelled, filled) goes to the WebSocket's `executions` subscribers as Kraken's
//! v2 events, whichever API made it: a placed order's `pending_new` carries its
//! symbol, side, quantity and price, its `new`, `amended` and `canceled` events only
//! its ids and what changed, as Kraken's executions page shows them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{Behaviour, Recorded, State, http, kraken_ws, now_ms};
use crate::venues::kraken::{API_KEY, SECRET, api_sign};

/// One pair the mock lists.
pub(super) struct Pair {
    /// Kraken's id, the key AssetPairs and Ticker answer under.
    id: &'static str,
    /// What orders name it by, and the book keeps.
    pub(super) altname: &'static str,
    base: &'static str,
    quote: &'static str,
    /// The WebSocket v2 symbol: v2 spells bitcoin BTC, where v1's `wsname` says XBT.
    pub(super) symbol: &'static str,
    /// The Binance symbol whose reference quote it shares.
    reference: &'static str,
}

impl Pair {
    /// WebSocket v1's name, which AssetPairs gives as `wsname`.
    fn wsname(&self) -> String {
        format!("{}/USD", &self.altname[..3])
    }
}

/// The pairs the mock lists.
const PAIRS: &[Pair] = &[
    Pair {
        id: "XXBTZUSD",
        altname: "XBTUSD",
        base: "XXBT",
        quote: "ZUSD",
        symbol: "BTC/USD",
        reference: "BTCUSDT",
    },
    Pair {
        id: "XETHZUSD",
        altname: "ETHUSD",
        base: "XETH",
        quote: "ZUSD",
        symbol: "ETH/USD",
        reference: "ETHUSDT",
    },
];

/// The pair `name` names in any of Kraken's spellings: its id, altname, v1 wsname
/// or v2 symbol.
pub(super) fn pair_named(name: &str) -> Option<&'static Pair> {
    PAIRS
        .iter()
        .find(|p| name == p.id || name == p.altname || name == p.symbol || name == p.wsname())
}

/// The account's balances as Balance gives them (asset id, amount), with each
/// asset's WebSocket v2 name: the mock's Kraken balances do not move.
pub(super) const BALANCES: &[(&str, &str, &str)] = &[
    ("ZUSD", "USD", "1000.0000"),
    ("XXBT", "BTC", "0.5000000000"),
];

pub(super) fn respond(state: &State, request: &mut Recorded, behaviour: Behaviour) -> Vec<u8> {
    if behaviour == Behaviour::RateLimitedInBody {
        return answer(&json!({"error": ["EAPI:Rate limit exceeded"], "result": {}}));
    }
    let path = request.path.clone();
    let result = if let Some(method) = path.strip_prefix("/0/public/") {
        public(state, method, &request.params())
    } else if let Some(method) = path.strip_prefix("/0/private/") {
        if request.method != "POST" {
            return answer(&json!({"error": ["EGeneral:Invalid arguments"]}));
        }
        let fields = match verify(state, request) {
            Ok(fields) => fields,
            Err(error) => return answer(&json!({"error": [error], "result": {}})),
        };
        private(state, method, &fields)
    } else {
        Err("EGeneral:Unknown method")
    };
    match result {
        Ok(result) => answer(&json!({"error": [], "result": result})),
        Err(error) => answer(&json!({"error": [error]})),
    }
}

fn answer(body: &Value) -> Vec<u8> {
    http(200, "OK", &[], &body.to_string())
}

fn public(
    state: &State,
    method: &str,
    params: &BTreeMap<String, String>,
) -> Result<Value, &'static str> {
    let wanted = |altname: &str, id: &str| {
        params
            .get("pair")
            .is_none_or(|list| list.split(',').any(|p| p == altname || p == id))
    };
    match method {
        "Time" => {
            let now = now_ms() / 1000;
            Ok(json!({"unixtime": now, "rfc1123": "Mon,  1 Jan 24 00:00:00 +0000"}))
        }
        "SystemStatus" => Ok(json!({"status": "online", "timestamp": "2024-01-01T00:00:00Z"})),
        "Assets" => Ok(json!({
            "XXBT": {"aclass": "currency", "altname": "XBT", "decimals": 10, "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"},
            "XETH": {"aclass": "currency", "altname": "ETH", "decimals": 10, "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"},
            "ZUSD": {"aclass": "currency", "altname": "USD", "decimals": 4, "display_decimals": 2, "collateral_value": 1.0, "status": "enabled"}
        })),
        "AssetPairs" => {
            let mut out = Map::new();
            for pair in PAIRS.iter().filter(|p| wanted(p.altname, p.id)) {
                out.insert(pair.id.to_owned(), json!({
                    "altname": pair.altname, "wsname": pair.wsname(), "aclass_base": "currency", "base": pair.base,
                    "aclass_quote": "currency", "quote": pair.quote, "lot": "unit", "cost_decimals": 5,
                    "pair_decimals": 1, "lot_decimals": 8, "lot_multiplier": 1,
                    "leverage_buy": [2, 3, 4, 5], "leverage_sell": [2, 3, 4, 5],
                    "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
                    "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                    "ordermin": "0.00005", "costmin": "0.5", "tick_size": "0.1", "status": "online"
                }));
            }
            Ok(Value::Object(out))
        }
        "Ticker" => {
            let quotes = state.quotes.lock().expect("quotes");
            let mut out = Map::new();
            for pair in PAIRS.iter().filter(|p| wanted(p.altname, p.id)) {
                let key = if quotes.contains_key(pair.altname) {
                    pair.altname
                } else {
                    pair.reference
                };
                let Some((bid, ask)) = quotes.get(key) else {
                    continue;
                };
                let average = state.average_of(key, bid, ask);
                out.insert(
                    pair.id.to_owned(),
                    json!({
                        "a": [ask, "1", "1.000"], "b": [bid, "1", "1.000"], "c": [bid, "0.1"],
                        "v": ["10", "100"], "p": [average, average], "t": [10, 100], "l": [bid, bid],
                        "h": [ask, ask], "o": bid
                    }),
                );
            }
            if out.is_empty() {
                return Err("EQuery:Unknown asset pair");
            }
            Ok(Value::Object(out))
        }
        "Depth" => Ok(
            json!({"XXBTZUSD": {"asks": [["60010.0", "1.000", 1700000000]], "bids": [["59990.0", "1.000", 1700000000]]}}),
        ),
        _ => Err("EGeneral:Unknown method"),
    }
}

/// Kraken's checks of a private call; its fields when they pass, Kraken's error when
/// not. Records whether the signature verified.
fn verify(state: &State, request: &mut Recorded) -> Result<BTreeMap<String, Value>, &'static str> {
    let secret = request.header("api-key").and_then(|key| {
        if key == API_KEY {
            Some(SECRET.to_owned())
        } else {
            state.keys.lock().expect("keys").get(key).cloned()
        }
    });
    let Some(secret) = secret else {
        request.signature_ok = Some(false);
        return Err("EAPI:Invalid key");
    };
    let fields = fields(request);
    let nonce = match fields.get("nonce") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => {
            request.signature_ok = Some(false);
            return Err("EAPI:Invalid nonce");
        }
    };
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(&secret) else {
        request.signature_ok = Some(false);
        return Err("EAPI:Invalid key");
    };
    let ok = request
        .header("api-sign")
        .is_some_and(|sign| sign == api_sign(&key, &request.path, &nonce, &request.body));
    request.signature_ok = Some(ok);
    if !ok {
        return Err("EAPI:Invalid signature");
    }
    let value: u64 = nonce.parse().map_err(|_| "EAPI:Invalid nonce")?;
    let api_key = request.header("api-key").unwrap_or_default().to_owned();
    let window = state.kraken_nonce_window.load(Ordering::Relaxed);
    let mut nonces = state.kraken_nonces.lock().expect("nonces");
    if !nonces.entry(api_key).or_default().accept(value, window) {
        return Err("EAPI:Invalid nonce");
    }
    Ok(fields)
}

/// The nonces one key has used, as Kraken judges a new one: above the highest so
/// far, or, with a nonce window set on the key, at most the window below it and
/// never used before.
#[derive(Debug, Default)]
pub(crate) struct NonceBook {
    highest: u64,
    /// Nonces used within the window below `highest`.
    recent: std::collections::BTreeSet<u64>,
}

impl NonceBook {
    fn accept(&mut self, nonce: u64, window: u64) -> bool {
        let fresh = nonce > self.highest
            || (nonce >= self.highest.saturating_sub(window) && !self.recent.contains(&nonce));
        if !fresh || nonce == 0 {
            return false;
        }
        self.highest = self.highest.max(nonce);
        self.recent.insert(nonce);
        let oldest = self.highest.saturating_sub(window);
        self.recent = self.recent.split_off(&oldest);
        true
    }
}

/// The body's fields: a JSON object, or form pairs as strings.
fn fields(request: &Recorded) -> BTreeMap<String, Value> {
    let json = request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"));
    if json {
        serde_json::from_str(&request.body).unwrap_or_default()
    } else {
        request
            .params()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect()
    }
}

fn text(fields: &BTreeMap<String, Value>, key: &str) -> String {
    match fields.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn private(
    state: &State,
    method: &str,
    fields: &BTreeMap<String, Value>,
) -> Result<Value, &'static str> {
    match method {
        "Balance" => Ok(BALANCES
            .iter()
            .map(|(asset, _, amount)| ((*asset).to_owned(), Value::from(*amount)))
            .collect()),
        "BalanceEx" => Ok(json!({
            "ZUSD": {"balance": "1000.0000", "hold_trade": "60.0000"},
            "XXBT": {"balance": "0.5000000000", "hold_trade": "0.0000000000"}
        })),
        "TradeBalance" => Ok(
            json!({"eb": "1000.0000", "tb": "1000.0000", "m": "0", "n": "0", "c": "0", "v": "0", "e": "1000.0000", "mf": "1000.0000"}),
        ),
        "GetWebSocketsToken" => Ok(json!({
            "token": kraken_ws::issue_token(state),
            "expires": kraken_ws::TOKEN_LIFETIME_MS / 1000
        })),
        "AddOrder" => {
            let order = new_order(state, fields, fields);
            let id = order["txid"].clone();
            let descr = order["descr"]["order"].clone();
            if text(fields, "validate") != "true" {
                rest(state, order, &Map::new());
            }
            Ok(json!({"descr": {"order": descr}, "txid": [id]}))
        }
        "AddOrderBatch" => {
            let elements = match fields.get("orders") {
                Some(Value::Array(list)) => list.clone(),
                _ => return Err("EGeneral:Invalid arguments"),
            };
            let mut results = Vec::new();
            for element in elements {
                let element: BTreeMap<String, Value> =
                    serde_json::from_value(element).unwrap_or_default();
                let order = new_order(state, &element, fields);
                results.push(
                    json!({"txid": order["txid"], "descr": {"order": order["descr"]["order"]}}),
                );
                rest(state, order, &Map::new());
            }
            Ok(json!({"orders": results}))
        }
        "CancelOrder" => {
            let id = text(fields, "txid");
            let client = text(fields, "cl_ord_id");
            let named = |o: &Value| {
                (!id.is_empty() && o["txid"] == id.as_str())
                    || (!client.is_empty() && o["cl_ord_id"] == client.as_str())
            };
            match cancel(state, named, USER_REQUESTED).len() {
                0 => Err("EOrder:Unknown order"),
                count => Ok(json!({"count": count})),
            }
        }
        "CancelAll" => {
            let count = cancel(state, |_| true, USER_REQUESTED).len();
            Ok(json!({"count": count}))
        }
        "OpenOrders" => {
            let orders = state.open_orders.lock().expect("orders");
            let open: Map<String, Value> = orders
                .iter()
                .filter(|o| is_kraken(o))
                .filter_map(|o| Some((o["txid"].as_str()?.to_owned(), o.clone())))
                .collect();
            Ok(json!({"open": open}))
        }
        "QueryOrders" => {
            let ids = text(fields, "txid");
            let orders = state.open_orders.lock().expect("orders");
            let found: Map<String, Value> = orders
                .iter()
                .filter_map(|o| {
                    let id = o["txid"].as_str()?;
                    ids.split(',')
                        .any(|i| i == id)
                        .then(|| (id.to_owned(), o.clone()))
                })
                .collect();
            Ok(Value::Object(found))
        }
        "ClosedOrders" => Ok(json!({"closed": {}, "count": 0})),
        "TradesHistory" => Ok(json!({"trades": {}, "count": 0})),
        _ => Err("EGeneral:Unknown method"),
    }
}

/// A REST order's fields (`order`, and `top` for a batch's shared ones such as
/// `pair`) as a [`Placement`], its book entry under a new id.
fn new_order(
    state: &State,
    order: &BTreeMap<String, Value>,
    top: &BTreeMap<String, Value>,
) -> Value {
    let client = text(order, "cl_ord_id");
    let placement = Placement {
        pair: text(top, "pair"),
        side: text(order, "type"),
        order_type: text(order, "ordertype"),
        price: text(order, "price"),
        volume: text(order, "volume"),
        oflags: text(order, "oflags"),
        userref: text(order, "userref").parse().unwrap_or(0),
        cl_ord_id: (!client.is_empty()).then_some(client),
    };
    entry(state, &placement)
}

/// A new order as either API gives it, in REST's terms.
#[derive(Debug)]
pub(super) struct Placement {
    /// The pair as the request named it.
    pub(super) pair: String,
    /// `buy` or `sell`.
    pub(super) side: String,
    pub(super) order_type: String,
    /// The limit price as written; empty for none.
    pub(super) price: String,
    pub(super) volume: String,
    /// REST's comma-separated flags (`post`, ...).
    pub(super) oflags: String,
    /// The numeric client reference (0 for none, as Kraken shows it).
    pub(super) userref: i64,
    pub(super) cl_ord_id: Option<String>,
}

/// What the mock gives as the reason of a cancel a client asked for.
pub(super) const USER_REQUESTED: &str = "User requested";

/// Whether an order in the mock's shared book is a Kraken order.
pub(super) fn is_kraken(order: &Value) -> bool {
    order.get("txid").is_some() && order.get("descr").is_some()
}

/// REST's one-line description of an order (`descr.order`).
fn description(pair: &str, side: &str, order_type: &str, volume: &str, price: &str) -> String {
    if order_type == "market" {
        format!("{side} {volume} {pair} @ market")
    } else {
        format!("{side} {volume} {pair} @ {order_type} {price}")
    }
}

/// An open order as OpenOrders lists it (with its `txid` alongside), under a new id.
pub(super) fn entry(state: &State, placement: &Placement) -> Value {
    let number = state.next_order.fetch_add(1, Ordering::Relaxed);
    let id = format!("O{number:05}-MOCKK-RAKEN0");
    let Placement {
        pair,
        side,
        order_type,
        price,
        volume,
        ..
    } = placement;
    let price = if price.is_empty() { "0" } else { price };
    json!({
        "txid": id, "refid": null, "userref": placement.userref, "cl_ord_id": placement.cl_ord_id,
        "status": "open", "opentm": now_ms() as f64 / 1000.0, "starttm": 0, "expiretm": 0,
        "descr": {"pair": pair, "type": side, "ordertype": order_type, "price": price, "price2": "0",
            "leverage": "none", "order": description(pair, side, order_type, volume, price), "close": ""},
        "vol": volume, "vol_exec": "0.00000000", "cost": "0.00000", "fee": "0.00000", "price": "0.00000",
        "stopprice": "0.00000", "limitprice": "0.00000", "misc": "", "oflags": placement.oflags
    })
}

/// Puts a new order on the book (the mock never fills on its own) and sends its
/// `pending_new` event, with `extra` (what the request said beyond REST's fields:
/// `time_in_force`, `triggers`, ...), then its `new` event, as two messages.
pub(super) fn rest(state: &State, order: Value, extra: &Map<String, Value>) {
    let mut pending = described(&order);
    pending.extend(extra.clone());
    state
        .open_orders
        .lock()
        .expect("orders")
        .push(order.clone());
    publish(
        state,
        vec![event(state, pending, "pending_new", "pending_new")],
    );
    publish(state, vec![event(state, named(&order), "new", "new")]);
}

/// Takes every Kraken order `matches` accepts off the book, each with its
/// `canceled` event (`reason` as Kraken words it); the orders taken.
pub(super) fn cancel(state: &State, matches: impl Fn(&Value) -> bool, reason: &str) -> Vec<Value> {
    let removed: Vec<Value> = {
        let mut orders = state.open_orders.lock().expect("orders");
        let (removed, kept) = orders.drain(..).partition(|o| is_kraken(o) && matches(o));
        *orders = kept;
        removed
    };
    for order in &removed {
        let mut fields = named(order);
        fields.extend(zero_fills());
        fields.insert("cancel_reason".to_owned(), reason.into());
        fields.insert("reason".to_owned(), reason.into());
        publish(state, vec![event(state, fields, "canceled", "canceled")]);
    }
    removed
}

/// Gives the open Kraken order `matches` accepts the quantity `volume` (and the
/// limit price `price`), with its `amended` event; the order as amended.
pub(super) fn amend(
    state: &State,
    matches: impl Fn(&Value) -> bool,
    volume: &str,
    price: Option<&str>,
) -> Option<Value> {
    let amended = {
        let mut orders = state.open_orders.lock().expect("orders");
        let order = orders.iter_mut().find(|o| is_kraken(o) && matches(o))?;
        order["vol"] = volume.into();
        if let Some(price) = price {
            order["descr"]["price"] = price.into();
        }
        let descr = &order["descr"];
        let line = description(
            descr["pair"].as_str().unwrap_or_default(),
            descr["type"].as_str().unwrap_or_default(),
            descr["ordertype"].as_str().unwrap_or_default(),
            volume,
            descr["price"].as_str().unwrap_or_default(),
        );
        order["descr"]["order"] = line.into();
        order.clone()
    };
    let mut fields = named(&amended);
    fields.insert("cum_qty".to_owned(), 0.0.into());
    fields.insert("reason".to_owned(), USER_REQUESTED.into());
    fields.insert("amended".to_owned(), true.into());
    fields.insert("order_qty".to_owned(), number(volume));
    if has_limit(&amended) {
        fields.insert("limit_price".to_owned(), limit_price(&amended));
        fields.insert("limit_price_type".to_owned(), "static".into());
    }
    publish(state, vec![event(state, fields, "amended", "new")]);
    Some(amended)
}

/// Fills an order that left the book at its price: its `trade` event, then its
/// `filled` event.
pub(super) fn fill(state: &State, order: &Value) {
    let trade = state.next_trade.fetch_add(1, Ordering::Relaxed);
    let quantity = order["vol"].as_str().unwrap_or_default();
    let price = order["descr"]["price"].as_str().unwrap_or_default();
    let cost = quantity.parse::<f64>().unwrap_or(0.0) * price.parse::<f64>().unwrap_or(0.0);
    let described = described(order);
    let mut fields = named(order);
    for name in ["symbol", "side", "order_type"] {
        if let Some(value) = described.get(name) {
            fields.insert(name.to_owned(), value.clone());
        }
    }
    let totals = json!({"cum_qty": number(quantity), "cum_cost": cost, "avg_price": number(price),
        "fee_usd_equiv": 0.0});
    if let Value::Object(totals) = &totals {
        fields.extend(totals.clone());
    }
    let trade_fields = json!({"exec_id": format!("T{trade:05}-MOCKK-TRADE0"), "trade_id": trade,
        "last_qty": number(quantity), "last_price": number(price), "cost": cost,
        "liquidity_ind": "m", "fees": [{"asset": "USD", "qty": 0.0}]});
    let mut traded = fields.clone();
    if let Value::Object(trade_fields) = trade_fields {
        traded.extend(trade_fields);
    }
    publish(state, vec![event(state, traded, "trade", "filled")]);
    publish(state, vec![event(state, fields, "filled", "filled")]);
}

/// Sends `data` as one `executions` update to the WebSocket v2 connections
/// subscribed to it.
pub(super) fn publish(state: &State, data: Vec<Value>) {
    let _ = state
        .kraken_events
        .send(json!({"channel": "executions", "data": data}));
}

/// `fields` as an execution report of `exec_type`, leaving the order in
/// `order_status`, stamped now.
fn event(
    state: &State,
    mut fields: Map<String, Value>,
    exec_type: &str,
    order_status: &str,
) -> Value {
    fields.insert("exec_type".to_owned(), exec_type.into());
    fields.insert("order_status".to_owned(), order_status.into());
    fields.insert("timestamp".to_owned(), stamp(state.now_ms()).into());
    Value::Object(fields)
}

/// What names an order in every event: its `order_id`, and its `cl_ord_id` if it
/// has one, else its `order_userref` (Kraken takes one or the other).
fn named(order: &Value) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("order_id".to_owned(), order["txid"].clone());
    match order["cl_ord_id"].as_str() {
        Some(client) => fields.insert("cl_ord_id".to_owned(), client.into()),
        None => fields.insert("order_userref".to_owned(), order["userref"].clone()),
    };
    fields
}

/// The running totals of an order that has not traded.
fn zero_fills() -> Map<String, Value> {
    ["cum_qty", "cum_cost", "fee_usd_equiv", "avg_price"]
        .into_iter()
        .map(|name| (name.to_owned(), Value::from(0.0)))
        .collect()
}

/// Whether an order's type has a limit price.
fn has_limit(order: &Value) -> bool {
    order["descr"]["ordertype"]
        .as_str()
        .is_some_and(|t| t == "limit" || t == "iceberg" || t.ends_with("-limit"))
}

fn limit_price(order: &Value) -> Value {
    number(order["descr"]["price"].as_str().unwrap_or_default())
}

/// Everything the v2 API says of an open order: its ids, symbol, side, type,
/// quantity and limit price and the order's defaults (a `pending_new` event's
/// fields, and a snapshot's).
fn described(order: &Value) -> Map<String, Value> {
    let descr = &order["descr"];
    let pair = descr["pair"].as_str().unwrap_or_default();
    let symbol = pair_named(pair).map_or(pair, |p| p.symbol);
    let mut fields = named(order);
    let defaults = json!({
        "symbol": symbol, "side": descr["type"], "order_type": descr["ordertype"],
        "order_qty": number(order["vol"].as_str().unwrap_or_default()), "cum_cost": 0.0,
        "time_in_force": "GTC", "stop_price": 0.0, "fee_usd_equiv": 0.0, "fee_ccy_pref": "fciq"
    });
    if let Value::Object(defaults) = defaults {
        fields.extend(defaults);
    }
    if has_limit(order) {
        fields.insert("limit_price_type".to_owned(), "static".into());
        fields.insert("limit_price".to_owned(), limit_price(order));
    }
    if order["oflags"]
        .as_str()
        .is_some_and(|f| f.split(',').any(|f| f == "post"))
    {
        fields.insert("post_only".to_owned(), true.into());
    }
    fields
}

/// An open order as an `executions` snapshot lists it: live, stamped when it was
/// placed.
pub(super) fn snapshot_entry(order: &Value) -> Value {
    let mut fields = described(order);
    fields.extend(zero_fills());
    let placed_ms = order["opentm"].as_f64().map_or(0, |s| (s * 1000.0) as u64);
    fields.insert("exec_type".to_owned(), "new".into());
    fields.insert("order_status".to_owned(), "new".into());
    fields.insert("timestamp".to_owned(), stamp(placed_ms).into());
    Value::Object(fields)
}

/// A decimal the book keeps as text, as the v2 API writes one: a JSON number.
pub(super) fn number(text: &str) -> Value {
    text.parse::<f64>().map_or(Value::Null, Value::from)
}

/// `ms` since the epoch in RFC 3339 with microseconds, as the v2 API stamps
/// everything (`2023-09-22T10:33:05.709950Z`).
pub(super) fn stamp(ms: u64) -> String {
    let seconds = crate::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    let whole = seconds.trim_end_matches('Z');
    format!("{whole}.{:06}Z", (ms % 1000) * 1000)
}
