//! The mock's OKX v5: checks `OK-ACCESS-KEY`, `-PASSPHRASE`, `-TIMESTAMP` (ISO-8601
//! with milliseconds, within 30 s of its clock) and `-SIGN` (base64 HMAC-SHA256 over
//! timestamp + method + path with `?query` + body, exactly as received) like OKX, and
//! refuses demo requests (`x-simulated-trading: 1`) for its live key. It answers the
//! endpoints ccxt, python-okx and the tests use in OKX's `{"code","msg","data"}`
//! envelope; orders live in the shared open-order list. Orders placed, amended,
//! cancelled and filled over REST or over the private WebSocket (`okx_ws.rs`)
//! change the same book and send the same `orders` pushes. Instruments carry their
//! `instIdCode`, which orders may name instead of `instId` (ccxt's WebSocket orders
//! do, as OKX's instruments have it).

use std::sync::atomic::Ordering;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Behaviour, Recorded, State, http};
use crate::venues::okx::{API_KEY, PASSPHRASE, SECRET};

/// OKX documents 30 s for WebSocket logins; the mock holds REST to the same.
const WINDOW_MS: i128 = 30_000;

const PUBLIC: &[&str] = &[
    "/api/v5/public/time",
    "/api/v5/public/instruments",
    "/api/v5/market/ticker",
    "/api/v5/market/tickers",
    "/api/v5/market/books",
    "/api/v5/market/index-tickers",
];

pub(super) fn respond(state: &State, request: &mut Recorded, _behaviour: Behaviour) -> Vec<u8> {
    if !PUBLIC.contains(&request.path.as_str())
        && let Some(refusal) = verify(state, request)
    {
        return refusal;
    }
    let query = query_map(&request.query);
    let body: Value = if request.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_str(&request.body) {
            Ok(value) => value,
            Err(_) => return envelope(400, "50002", "Json data format error", json!([])),
        }
    };
    let data = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/api/v5/public/time") => json!([{ "ts": state.now_ms().to_string() }]),
        ("GET", "/api/v5/public/instruments") => match query.get("instType").map(String::as_str) {
            Some("SPOT") => json!([instrument("BTC-USDT"), instrument("ETH-USDT")]),
            _ => json!([]),
        },
        ("GET", "/api/v5/market/ticker") => {
            let inst = query.get("instId").cloned().unwrap_or_default();
            match quote(state, &inst) {
                Some((bid, ask)) => json!([{
                    "instType": "SPOT", "instId": inst, "last": ask, "bidPx": bid, "bidSz": "1",
                    "askPx": ask, "askSz": "1", "ts": state.now_ms().to_string()
                }]),
                None => return envelope(200, "51001", "Instrument ID does not exist", json!([])),
            }
        }
        ("GET", "/api/v5/market/index-tickers") => {
            let inst = query.get("instId").cloned().unwrap_or_default();
            match state.average(&inst.replace('-', "")) {
                Some(price) => {
                    json!([{ "instId": inst, "idxPx": price, "ts": state.now_ms().to_string() }])
                }
                None => return envelope(200, "51001", "Instrument ID does not exist", json!([])),
            }
        }
        ("GET", "/api/v5/market/books") => {
            let inst = query.get("instId").cloned().unwrap_or_default();
            let (bid, ask) = quote(state, &inst).unwrap_or_default();
            json!([{ "asks": [[ask, "1", "0", "1"]], "bids": [[bid, "1", "0", "1"]], "ts": state.now_ms().to_string() }])
        }
        ("GET", "/api/v5/account/balance") => json!([balance()]),
        ("GET", "/api/v5/asset/currencies") => json!([{
            "ccy": "USDT", "name": "Tether", "chain": "USDT-TRC20", "canDep": true, "canWd": true,
            "canInternal": true, "minWd": "0.1", "maxWd": "10000000", "minFee": "1", "maxFee": "1",
            "fee": "1", "wdTickSz": "2", "minDep": "0.00000001", "mainNet": false
        }]),
        ("POST", "/api/v5/trade/order") => json!([place(state, &body, false)]),
        ("POST", "/api/v5/trade/batch-orders") => Value::Array(
            items(&body)
                .iter()
                .map(|o| place(state, o, false))
                .collect(),
        ),
        ("POST", "/api/v5/trade/cancel-order") => json!([cancel(state, &body)]),
        ("POST", "/api/v5/trade/cancel-batch-orders") => {
            Value::Array(items(&body).iter().map(|o| cancel(state, o)).collect())
        }
        ("POST", "/api/v5/trade/amend-order") => json!([amend(state, &body)]),
        ("POST", "/api/v5/trade/amend-batch-orders") => {
            Value::Array(items(&body).iter().map(|o| amend(state, o)).collect())
        }
        ("GET", "/api/v5/trade/orders-pending") => {
            let inst = query.get("instId");
            let open = state.open_orders.lock().expect("orders");
            Value::Array(
                open.iter()
                    .filter(|o| o.get("instType").is_some())
                    .filter(|o| inst.is_none_or(|i| o["instId"] == i.as_str()))
                    .cloned()
                    .collect(),
            )
        }
        ("GET", "/api/v5/trade/order") => {
            let open = state.open_orders.lock().expect("orders");
            let found = open.iter().find(|o| {
                o.get("instType").is_some()
                    && (query
                        .get("ordId")
                        .is_some_and(|id| o["ordId"] == id.as_str())
                        || query
                            .get("clOrdId")
                            .is_some_and(|id| o["clOrdId"] == id.as_str()))
            });
            match found {
                Some(order) => json!([order]),
                None => return envelope(200, "51603", "Order does not exist", json!([])),
            }
        }
        ("GET", "/api/v5/trade/orders-history" | "/api/v5/trade/fills") => json!([]),
        ("POST", "/api/v5/asset/withdrawal") => {
            json!([{"amt": "20", "wdId": "67485", "ccy": "USDT", "clientId": "", "chain": "USDT-TRC20"}])
        }
        _ => return envelope(404, "50115", "Invalid request method or path", json!([])),
    };
    envelope(200, "0", "", data)
}

/// The trading account's balance, as REST's `/api/v5/account/balance` and the
/// `account` channel give it (the mock's OKX balances do not move).
pub(super) fn balance() -> Value {
    json!({
        "uTime": "1700000000000", "totalEq": "1000",
        "details": [
            {"ccy": "USDT", "eq": "1000", "cashBal": "1000", "availBal": "1000", "frozenBal": "0", "ordFrozen": "0", "eqUsd": "1000", "uTime": "1700000000000"},
            {"ccy": "BTC", "eq": "0.5", "cashBal": "0.5", "availBal": "0.5", "frozenBal": "0", "ordFrozen": "0", "eqUsd": "30000", "uTime": "1700000000000"}
        ]
    })
}

fn envelope(status: u16, code: &str, msg: &str, data: Value) -> Vec<u8> {
    let reason = if status == 200 { "OK" } else { "Error" };
    http(
        status,
        reason,
        &[],
        &json!({"code": code, "msg": msg, "data": data}).to_string(),
    )
}

/// OKX's own refusals for a request it cannot authenticate, or `None` (and
/// `signature_ok` recorded) when it can.
fn verify(state: &State, request: &mut Recorded) -> Option<Vec<u8>> {
    let header = |name: &str| request.header(name).map(str::to_owned);
    let (Some(key), Some(sign), Some(ts), Some(passphrase)) = (
        header("ok-access-key"),
        header("ok-access-sign"),
        header("ok-access-timestamp"),
        header("ok-access-passphrase"),
    ) else {
        return Some(envelope(
            401,
            "50103",
            "Request header OK-ACCESS-KEY, -SIGN, -TIMESTAMP or -PASSPHRASE missing",
            json!([]),
        ));
    };
    let path = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let prehash = format!("{ts}{}{path}{}", request.method, request.body);
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes()),
        prehash.as_bytes(),
    );
    let expected = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    let signature_ok = sign == expected;
    request.signature_ok = Some(signature_ok);
    if key != API_KEY {
        return Some(envelope(401, "50111", "Invalid OK-ACCESS-KEY", json!([])));
    }
    if passphrase != PASSPHRASE {
        return Some(envelope(
            401,
            "50105",
            "OK-ACCESS-PASSPHRASE incorrect",
            json!([]),
        ));
    }
    if request.header("x-simulated-trading") == Some("1") {
        return Some(envelope(
            401,
            "50101",
            "APIKey does not match current environment",
            json!([]),
        ));
    }
    let Some(sent_ms) = parse_iso_ms(&ts) else {
        return Some(envelope(
            401,
            "50112",
            "Invalid OK-ACCESS-TIMESTAMP",
            json!([]),
        ));
    };
    if (i128::from(state.now_ms()) - sent_ms).abs() > WINDOW_MS {
        return Some(envelope(
            401,
            "50102",
            "Timestamp request expired",
            json!([]),
        ));
    }
    if !signature_ok {
        return Some(envelope(401, "50113", "Invalid Sign", json!([])));
    }
    None
}

/// `2020-12-08T09:08:57.715Z` in ms; only that exact shape (OKX rejects others).
fn parse_iso_ms(ts: &str) -> Option<i128> {
    if ts.len() != 24 || !ts.ends_with('Z') || ts.as_bytes().get(19) != Some(&b'.') {
        return None;
    }
    let parsed =
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    Some(parsed.unix_timestamp_nanos() / 1_000_000)
}

fn query_map(query: &str) -> std::collections::BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (super::decode(k), super::decode(v)))
        .collect()
}

fn items(body: &Value) -> Vec<Value> {
    body.as_array().cloned().unwrap_or_default()
}

/// The mock's book for an instrument: the shared quotes are keyed by Binance's
/// spelling, so `BTC-USDT` reads `BTCUSDT`.
fn quote(state: &State, inst: &str) -> Option<(String, String)> {
    state
        .quotes
        .lock()
        .expect("quotes")
        .get(&inst.replace('-', ""))
        .cloned()
}

/// The spot instruments the mock lists, with their `instIdCode`.
const INSTRUMENTS: &[(&str, u64)] = &[("BTC-USDT", 100_001), ("ETH-USDT", 100_002)];

fn instrument(inst: &str) -> Value {
    let (base, quote) = inst.split_once('-').unwrap_or((inst, ""));
    let code = INSTRUMENTS
        .iter()
        .find(|(id, _)| *id == inst)
        .map(|(_, code)| *code);
    json!({
        "instType": "SPOT", "instId": inst, "instIdCode": code, "baseCcy": base, "quoteCcy": quote,
        "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "ctType": "", "tickSz": "0.1",
        "lotSz": "0.00000001", "minSz": "0.00001", "state": "live", "listTime": "1606468572000",
        "expTime": "", "lever": "10", "maxLmtSz": "9999999999", "maxMktSz": "1000000",
        "maxMktAmt": "1000000", "ruleType": "normal", "uly": "", "instFamily": "", "alias": "",
        "optType": "", "stk": ""
    })
}

fn field<'a>(order: &'a Value, key: &str) -> &'a str {
    order.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The instrument an order request names: its `instId`, or the instrument whose
/// `instIdCode` it gives (empty when it names none the mock lists).
fn inst_of(request: &Value) -> String {
    if let Some(inst) = request.get("instId").and_then(Value::as_str) {
        return inst.to_owned();
    }
    let code = request.get("instIdCode").and_then(Value::as_u64);
    INSTRUMENTS
        .iter()
        .find(|(_, c)| Some(*c) == code)
        .map(|(id, _)| (*id).to_owned())
        .unwrap_or_default()
}

/// Whether an order in the mock's shared book is an OKX order.
pub(super) fn is_okx(order: &Value) -> bool {
    order.get("instType").is_some()
}

/// An order's result element (`data[i]`) refusing it with `code`.
fn refused(request: &Value, code: &str, message: &str, now: &str) -> Value {
    json!({"ordId": field(request, "ordId"), "clOrdId": field(request, "clOrdId"), "tag": field(request, "tag"),
           "ts": now, "sCode": code, "sMsg": message})
}

/// OKX's checks of a new order's fields, as the WebSocket applies them (`checked`;
/// the REST handlers have always taken what keyward sends as it is): a listed
/// instrument, a trade mode, side and order type OKX has, `sz` (and but for market
/// orders `px`) as decimal strings.
fn check(request: &Value) -> Result<(), (&'static str, String)> {
    let inst = inst_of(request);
    if !INSTRUMENTS.iter().any(|(id, _)| *id == inst) {
        let message = "Instrument ID, Instrument ID code or Spread ID doesn't exist.";
        return Err(("51001", message.to_owned()));
    }
    let parameter = |name: &str| ("51000", format!("Parameter {name} error"));
    let one_of = |name: &str, allowed: &[&str]| allowed.contains(&field(request, name));
    if !one_of("tdMode", &["cash", "cross", "isolated", "spot_isolated"]) {
        return Err(parameter("tdMode"));
    }
    if !one_of("side", &["buy", "sell"]) {
        return Err(parameter("side"));
    }
    if !one_of("ordType", &["market", "limit", "post_only", "fok", "ioc"]) {
        return Err(parameter("ordType"));
    }
    let decimal = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .and_then(super::spot::units)
            .is_some()
    };
    if !decimal("sz") {
        return Err(parameter("sz"));
    }
    if field(request, "ordType") != "market" && !decimal("px") {
        return Err(parameter("px"));
    }
    Ok(())
}

/// A new order rests on the book (the mock never fills on its own) and its `live`
/// push is sent; the result element (`sCode` `0`, or the refusal).
pub(super) fn place(state: &State, order: &Value, checked: bool) -> Value {
    let now = state.now_ms().to_string();
    if checked && let Err((code, message)) = check(order) {
        return refused(order, code, &message, &now);
    }
    let inst = inst_of(order);
    if state.market_closed(&inst.replace('-', "")) {
        return refused(order, "51022", "Contract suspended.", &now);
    }
    let id = state.next_order.fetch_add(1, Ordering::Relaxed).to_string();
    let resting = json!({
        "instType": "SPOT", "instId": inst, "ordId": id,
        "clOrdId": field(order, "clOrdId"), "tag": field(order, "tag"), "px": field(order, "px"),
        "sz": field(order, "sz"), "ordType": field(order, "ordType"), "side": field(order, "side"),
        "tdMode": field(order, "tdMode"), "accFillSz": "0", "fillPx": "", "fillSz": "0",
        "avgPx": "", "state": "live", "fee": "0", "feeCcy": "", "tgtCcy": field(order, "tgtCcy"),
        "cTime": now, "uTime": now, "reduceOnly": "false"
    });
    state
        .open_orders
        .lock()
        .expect("orders")
        .push(resting.clone());
    publish_order(state, &resting, &json!({}));
    json!({"ordId": id, "clOrdId": field(order, "clOrdId"), "tag": field(order, "tag"), "ts": now, "sCode": "0", "sMsg": "Order placed"})
}

/// Whether the open order `open` is the OKX order `request` names: on its
/// instrument, by `ordId` if given, else by `clOrdId`.
fn matches(open: &Value, request: &Value) -> bool {
    let by_id = if field(request, "ordId").is_empty() {
        !field(request, "clOrdId").is_empty() && open["clOrdId"] == request["clOrdId"]
    } else {
        open["ordId"] == request["ordId"]
    };
    is_okx(open) && open["instId"] == inst_of(request).as_str() && by_id
}

/// Cancels the open order `request` names, with its `canceled` push.
pub(super) fn cancel(state: &State, request: &Value) -> Value {
    let now = state.now_ms().to_string();
    let removed = {
        let mut open = state.open_orders.lock().expect("orders");
        let index = open.iter().position(|o| matches(o, request));
        index.map(|index| open.remove(index))
    };
    match removed {
        Some(order) => {
            publish_order(
                state,
                &order,
                &json!({"state": "canceled", "cancelSource": "1", "uTime": now}),
            );
            json!({"ordId": order["ordId"], "clOrdId": order["clOrdId"], "ts": now, "sCode": "0", "sMsg": ""})
        }
        None => refused(
            request,
            "51400",
            "Order cancellation failed as the order has been filled, canceled or does not exist",
            &now,
        ),
    }
}

/// Changes the size and price of the open order `request` names (`newSz`,
/// `newPx`), with its push (`amendResult` `0`, the request's `reqId`).
pub(super) fn amend(state: &State, request: &Value) -> Value {
    let now = state.now_ms().to_string();
    let amended = {
        let mut open = state.open_orders.lock().expect("orders");
        open.iter_mut().find(|o| matches(o, request)).map(|order| {
            for (new, old) in [("newSz", "sz"), ("newPx", "px")] {
                if let Some(value) = request.get(new).filter(|v| v.is_string()) {
                    order[old] = value.clone();
                }
            }
            order["uTime"] = now.clone().into();
            order.clone()
        })
    };
    match amended {
        Some(order) => {
            let changes =
                json!({"amendResult": "0", "reqId": field(request, "reqId"), "amendSource": "1"});
            publish_order(state, &order, &changes);
            json!({"ordId": order["ordId"], "clOrdId": order["clOrdId"], "reqId": field(request, "reqId"), "ts": now, "sCode": "0", "sMsg": ""})
        }
        None => refused(
            request,
            "51503",
            "Order modification failed as the order has been filled, canceled or does not exist",
            &now,
        ),
    }
}

/// Fills an order that left the book at its price, with its `filled` push.
pub(super) fn fill(state: &State, order: &Value) {
    let now = state.now_ms().to_string();
    let trade = state.next_trade.fetch_add(1, Ordering::Relaxed).to_string();
    let changes = json!({
        "state": "filled", "fillPx": order["px"], "fillSz": order["sz"], "accFillSz": order["sz"],
        "avgPx": order["px"], "tradeId": trade, "fillTime": now, "execType": "M", "fillFee": "0",
        "fillFeeCcy": "USDT", "uTime": now
    });
    publish_order(state, order, &changes);
}

/// The mock account's user id (`uid` in each push's `arg`).
pub(super) const UID: &str = "440000000000001";

/// The fields of an `orders` push that are empty for a plain spot order.
const EMPTY_FIELDS: &[&str] = &[
    "ccy",
    "pxUsd",
    "pxVol",
    "pxType",
    "notionalUsd",
    "posSide",
    "tradeId",
    "fillTime",
    "fillFeeCcy",
    "fillPxVol",
    "fillPxUsd",
    "fillMarkVol",
    "fillFwdPx",
    "fillMarkPx",
    "fillIdxPx",
    "execType",
    "fillNotionalUsd",
    "lever",
    "attachAlgoClOrdId",
    "tpTriggerPx",
    "tpTriggerPxType",
    "tpOrdPx",
    "slTriggerPx",
    "slTriggerPxType",
    "slOrdPx",
    "stpId",
    "rebateCcy",
    "source",
    "cancelSource",
    "amendSource",
    "reqId",
    "amendResult",
    "quickMgnType",
    "algoClOrdId",
    "algoId",
    "lastPx",
    "msg",
];

/// Sends an `orders` push of `order` with `changes` applied: the fields OKX's
/// order channel documents, the order's own and the rest as OKX writes them for a
/// plain spot order.
fn publish_order(state: &State, order: &Value, changes: &Value) {
    let mut data = Value::Object(
        EMPTY_FIELDS
            .iter()
            .map(|name| ((*name).to_owned(), Value::from("")))
            .collect(),
    );
    let defaults = json!({
        "fillPnl": "0", "fillFee": "0", "attachAlgoOrds": [], "stpMode": "cancel_maker",
        "rebate": "0", "pnl": "0", "category": "normal", "isTpLimit": "false", "code": "0",
        "tradeQuoteCcy": "USDT"
    });
    for source in [&defaults, order, changes] {
        if let (Value::Object(fields), Value::Object(own)) = (&mut data, source) {
            for (name, value) in own {
                fields.insert(name.clone(), value.clone());
            }
        }
    }
    let push = json!({"channel": "orders", "instType": data["instType"], "instId": data["instId"], "data": [data]});
    let _ = state.okx_events.send(push);
}
