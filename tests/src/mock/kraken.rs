//! The mock's Kraken spot REST: public market data without a key, and private calls
//! checked as Kraken documents them: a known `API-Key`, an `API-Sign` of
//! base64(HMAC-SHA512(base64decode(secret), path || SHA256(nonce || body))) over
//! exactly the body received, and a nonce greater than the last one the key used.
//! Errors come back, as Kraken's do, in HTTP 200 with an `error` array.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Behaviour, Recorded, State, http, now_ms};
use crate::venues::kraken::{API_KEY, SECRET};

/// Kraken's id, altname and assets of the pairs the mock lists, with the Binance
/// symbol whose reference quote it shares.
const PAIRS: &[(&str, &str, &str, &str, &str)] = &[
    ("XXBTZUSD", "XBTUSD", "XXBT", "ZUSD", "BTCUSDT"),
    ("XETHZUSD", "ETHUSD", "XETH", "ZUSD", "ETHUSDT"),
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
            let mut out = serde_json::Map::new();
            for (id, altname, base, quote, _) in PAIRS.iter().filter(|p| wanted(p.1, p.0)) {
                let wsname = format!("{}/USD", &altname[..3]);
                out.insert((*id).to_owned(), json!({
                    "altname": altname, "wsname": wsname, "aclass_base": "currency", "base": base,
                    "aclass_quote": "currency", "quote": quote, "lot": "unit", "cost_decimals": 5,
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
            let mut out = serde_json::Map::new();
            for (id, altname, _, _, reference) in PAIRS.iter().filter(|p| wanted(p.1, p.0)) {
                let Some((bid, ask)) = quotes.get(*altname).or_else(|| quotes.get(*reference))
                else {
                    continue;
                };
                let key = if quotes.contains_key(*altname) {
                    *altname
                } else {
                    *reference
                };
                let average = state.average_of(key, bid, ask);
                out.insert(
                    (*id).to_owned(),
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
    let mut nonces = state.kraken_nonces.lock().expect("nonces");
    if nonces.get(&api_key).is_some_and(|last| value <= *last) {
        return Err("EAPI:Invalid nonce");
    }
    nonces.insert(api_key, value);
    Ok(fields)
}

/// The signature Kraken expects, computed independently of keyward.
fn api_sign(key: &[u8], path: &str, nonce: &str, body: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{nonce}{body}").as_bytes());
    let mut message = path.as_bytes().to_vec();
    message.extend_from_slice(digest.as_ref());
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key),
        &message,
    );
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
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
        "Balance" => Ok(json!({"ZUSD": "1000.0000", "XXBT": "0.5000000000"})),
        "BalanceEx" => Ok(json!({
            "ZUSD": {"balance": "1000.0000", "hold_trade": "60.0000"},
            "XXBT": {"balance": "0.5000000000", "hold_trade": "0.0000000000"}
        })),
        "TradeBalance" => Ok(
            json!({"eb": "1000.0000", "tb": "1000.0000", "m": "0", "n": "0", "c": "0", "v": "0", "e": "1000.0000", "mf": "1000.0000"}),
        ),
        "AddOrder" => {
            let order = new_order(state, fields, fields);
            let id = order["txid"].clone();
            let descr = order["descr"]["order"].clone();
            if text(fields, "validate") != "true" {
                state.open_orders.lock().expect("orders").push(order);
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
                state.open_orders.lock().expect("orders").push(order);
            }
            Ok(json!({"orders": results}))
        }
        "CancelOrder" => {
            let id = text(fields, "txid");
            let mut orders = state.open_orders.lock().expect("orders");
            match orders.iter().position(|o| o["txid"] == id.as_str()) {
                Some(index) => {
                    orders.remove(index);
                    Ok(json!({"count": 1}))
                }
                None => Err("EOrder:Unknown order"),
            }
        }
        "CancelAll" => {
            let mut orders = state.open_orders.lock().expect("orders");
            let before = orders.len();
            orders.retain(|o| o.get("descr").is_none());
            Ok(json!({"count": before - orders.len()}))
        }
        "OpenOrders" => {
            let orders = state.open_orders.lock().expect("orders");
            let open: serde_json::Map<String, Value> = orders
                .iter()
                .filter(|o| o.get("descr").is_some())
                .filter_map(|o| Some((o["txid"].as_str()?.to_owned(), o.clone())))
                .collect();
            Ok(json!({"open": open}))
        }
        "QueryOrders" => {
            let ids = text(fields, "txid");
            let orders = state.open_orders.lock().expect("orders");
            let found: serde_json::Map<String, Value> = orders
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

/// An open order as OpenOrders lists it (with its `txid` alongside).
fn new_order(
    state: &State,
    order: &BTreeMap<String, Value>,
    top: &BTreeMap<String, Value>,
) -> Value {
    let number = state.next_order.fetch_add(1, Ordering::Relaxed);
    let id = format!("O{number:05}-MOCKK-RAKEN0");
    let pair = text(top, "pair");
    let (side, ordertype) = (text(order, "type"), text(order, "ordertype"));
    let price = text(order, "price");
    let volume = text(order, "volume");
    let description = if ordertype == "market" {
        format!("{side} {volume} {pair} @ market")
    } else {
        format!("{side} {volume} {pair} @ {ordertype} {price}")
    };
    json!({
        "txid": id, "refid": null, "userref": 0, "cl_ord_id": null, "status": "open",
        "opentm": now_ms() as f64 / 1000.0, "starttm": 0, "expiretm": 0,
        "descr": {"pair": pair, "type": side, "ordertype": ordertype, "price": if price.is_empty() { "0".to_owned() } else { price }, "price2": "0",
            "leverage": "none", "order": description, "close": ""},
        "vol": volume, "vol_exec": "0.00000000", "cost": "0.00000", "fee": "0.00000", "price": "0.00000",
        "stopprice": "0.00000", "limitprice": "0.00000", "misc": "", "oflags": text(order, "oflags")
    })
}
