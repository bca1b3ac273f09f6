//! The venues' public market-data WebSockets on the mock's HTTPS listener: Binance
//! spot's `/ws` and USDⓈ-M's `/public/ws` and `/market/ws` (`SUBSCRIBE`,
//! `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS` by message), Bybit's
//! `/v5/public/{spot,linear,inverse,option}` (`subscribe`, `unsubscribe`, `ping`) and
//! OKX's `/ws/v5/public` (`subscribe`, `unsubscribe`, the text `ping`). No key and no
//! login: each subscription is acknowledged in the venue's shape and answered with one
//! data message per stream, a ticker of the mock's reference price where the stream
//! is a ticker (so clients parse it as one), and every frame is recorded.

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::Message;

use super::ws::{self, Read};
use super::{State, now_ms};

/// The venues' public market-data paths the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Binance,
    Bybit,
    Okx,
    /// Kraken's `ws.kraken.com/v2` (chosen by the mock's market-host mode: the path
    /// is its authenticated WebSocket's too).
    Kraken,
    /// Coinbase's `advanced-trade-ws.coinbase.com/` (the same, at `/`).
    Coinbase,
}

impl Kind {
    /// The kind of market-data stream `path` is, if it is one.
    pub(super) fn of(path: &str) -> Option<Self> {
        // Binance's streams may be named in the path (`/ws/btcusdt@trade`); ccxt
        // opens `/ws/0`, `/ws/1`, ... and subscribes by message. A USDⓈ-M user data
        // stream's `/ws/KEY` (letters and digits) is neither.
        // USDⓈ-M's are on `/public/ws` and `/market/ws` the same way.
        let named = ["/ws/", "/public/ws/", "/market/ws/"].iter().any(|base| {
            path.strip_prefix(base).is_some_and(|name| {
                !name.is_empty() && (name.bytes().all(|b| b.is_ascii_digit()) || name.contains('@'))
            })
        });
        if named {
            return Some(Self::Binance);
        }
        match path {
            "/ws" | "/public/ws" | "/market/ws" => Some(Self::Binance),
            "/v5/public/spot" | "/v5/public/linear" | "/v5/public/inverse"
            | "/v5/public/option" => Some(Self::Bybit),
            "/ws/v5/public" => Some(Self::Okx),
            _ => None,
        }
    }
}

/// The last price every ticker gives.
const LAST: &str = "60000";

/// Serves one market-data connection until the client goes.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    asked: ws::Asked<S>,
    state: Arc<State>,
    kind: Kind,
) {
    let path = asked.upgrade.path.clone();
    let Some((mut socket, headers)) = asked.open(&state).await else {
        return;
    };
    let conn_id = ws::connection_id(&state);
    let mut subscribed: Vec<String> = Vec::new();
    loop {
        let next = socket.next().await;
        let text = match ws::read(&mut socket, next).await {
            Read::Text(text) => text,
            Read::Skip => continue,
            Read::Gone => return,
        };
        state.record(ws::message_record(
            &path,
            &headers,
            text.clone(),
            None,
            None,
        ));
        let replies = match kind {
            Kind::Binance => binance(&text, &mut subscribed),
            Kind::Bybit => bybit(&text, &conn_id, &mut subscribed),
            Kind::Okx => okx(&text, &conn_id, &mut subscribed),
            Kind::Kraken => kraken(&text, &mut subscribed),
            Kind::Coinbase => coinbase(&text, &mut subscribed),
        };
        for reply in replies {
            let frame = match reply {
                Value::String(text) => text,
                other => other.to_string(),
            };
            if socket.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
    }
}

/// The names a message's `field` lists, as text.
fn names(request: &Value, field: &str) -> Vec<String> {
    request[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn binance(frame: &str, subscribed: &mut Vec<String>) -> Vec<Value> {
    let Ok(request) = serde_json::from_str::<Value>(frame) else {
        return vec![json!({"error": {"code": 3, "msg": "Invalid JSON"}})];
    };
    let id = request["id"].clone();
    let streams = names(&request, "params");
    match request["method"].as_str().unwrap_or_default() {
        "SUBSCRIBE" => {
            let mut replies = vec![json!({"result": null, "id": id})];
            for stream in streams {
                replies.push(binance_data(&stream));
                subscribed.push(stream);
            }
            replies
        }
        "UNSUBSCRIBE" => {
            subscribed.retain(|s| !streams.contains(s));
            vec![json!({"result": null, "id": id})]
        }
        "LIST_SUBSCRIPTIONS" => vec![json!({"result": subscribed.clone(), "id": id})],
        _ => {
            vec![json!({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": id})]
        }
    }
}

/// One message of Binance's `stream`: a 24-hour ticker for `SYMBOL@ticker`, a mini
/// ticker for `SYMBOL@miniTicker` (ccxt's `watch_ticker`), a trade otherwise.
fn binance_data(stream: &str) -> Value {
    let symbol = stream.split('@').next().unwrap_or_default().to_uppercase();
    let now = now_ms();
    if stream.ends_with("@miniTicker") {
        return json!({
            "e": "24hrMiniTicker", "E": now, "s": symbol, "c": LAST, "o": LAST,
            "h": "61000", "l": "59000", "v": "100", "q": "6000000"
        });
    }
    if stream.ends_with("@ticker") {
        return json!({
            "e": "24hrTicker", "E": now, "s": symbol, "p": "0", "P": "0", "w": LAST,
            "x": LAST, "c": LAST, "Q": "1", "b": "59999", "B": "1", "a": "60001", "A": "1",
            "o": LAST, "h": "61000", "l": "59000", "v": "100", "q": "6000000",
            "O": now - 86_400_000, "C": now, "F": 1, "L": 2, "n": 2
        });
    }
    json!({"e": "trade", "E": now, "s": symbol, "t": 1, "p": LAST, "q": "0.001", "T": now, "m": false, "M": true})
}

fn bybit(frame: &str, conn_id: &str, subscribed: &mut Vec<String>) -> Vec<Value> {
    let Ok(request) = serde_json::from_str::<Value>(frame) else {
        return vec![json!({"success": false, "ret_msg": "Invalid JSON", "conn_id": conn_id})];
    };
    let op = request["op"].as_str().unwrap_or_default().to_owned();
    let mut ack = json!({"success": true, "ret_msg": "", "conn_id": conn_id, "op": op});
    if let Some(id) = request.get("req_id") {
        ack["req_id"] = id.clone();
    }
    let topics = names(&request, "args");
    match op.as_str() {
        "ping" => {
            ack["ret_msg"] = json!("pong");
            vec![ack]
        }
        "subscribe" => {
            let mut replies = vec![ack];
            for topic in topics {
                let symbol = topic.rsplit('.').next().unwrap_or_default().to_owned();
                replies.push(json!({
                    "topic": topic, "ts": now_ms(), "type": "snapshot", "cs": 1,
                    "data": {"symbol": symbol, "lastPrice": LAST, "bid1Price": "59999", "ask1Price": "60001", "volume24h": "100"}
                }));
                subscribed.push(topic);
            }
            replies
        }
        "unsubscribe" => {
            subscribed.retain(|t| !topics.contains(t));
            vec![ack]
        }
        _ => {
            ack["success"] = json!(false);
            ack["ret_msg"] = json!(format!("Invalid op: {op}"));
            vec![ack]
        }
    }
}

/// Kraken v2's public channels: each subscription answered per symbol, then a
/// ticker snapshot of it (any channel's data is given the ticker's fields).
fn kraken(frame: &str, subscribed: &mut Vec<String>) -> Vec<Value> {
    let time = super::kraken::stamp(now_ms());
    let Ok(request) = serde_json::from_str::<Value>(frame) else {
        return vec![
            json!({"error": "EGeneral:Invalid arguments", "success": false, "time_in": time, "time_out": time}),
        ];
    };
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    let channel = request["params"]["channel"].clone();
    let answer = |symbol: &str, success: bool, error: Option<&str>| {
        let mut reply =
            json!({"method": method, "success": success, "time_in": time, "time_out": time});
        if let Some(id) = request.get("req_id") {
            reply["req_id"] = id.clone();
        }
        match error {
            Some(error) => reply["error"] = json!(error),
            None => {
                reply["result"] = json!({"channel": channel, "symbol": symbol, "snapshot": true})
            }
        }
        reply
    };
    if request["params"].get("token").is_some()
        || !matches!(method.as_str(), "subscribe" | "unsubscribe")
    {
        return vec![answer("", false, Some("EGeneral:Invalid arguments"))];
    }
    let mut replies = Vec::new();
    for symbol in names(&request["params"], "symbol") {
        replies.push(answer(&symbol, true, None));
        let key = format!("{channel}:{symbol}");
        if method == "subscribe" {
            replies.push(json!({
                "channel": channel, "type": "snapshot",
                "data": [{"symbol": symbol, "bid": 59999.0, "bid_qty": 1.0, "ask": 60001.0, "ask_qty": 1.0,
                          "last": 60000.0, "volume": 100.0, "vwap": 60000.0, "low": 59000.0, "high": 61000.0,
                          "change": 0.0, "change_pct": 0.0}]
            }));
            subscribed.push(key);
        } else {
            subscribed.retain(|s| *s != key);
        }
    }
    replies
}

/// Coinbase's public channels: a `subscriptions` acknowledgement, then one ticker
/// message per product (any channel's data is given the ticker's fields).
fn coinbase(frame: &str, subscribed: &mut Vec<String>) -> Vec<Value> {
    let time = super::kraken::stamp(now_ms());
    let Ok(request) = serde_json::from_str::<Value>(frame) else {
        return vec![json!({"type": "error", "message": "failure to parse message"})];
    };
    let kind = request["type"].as_str().unwrap_or_default().to_owned();
    let channel = request["channel"].as_str().unwrap_or_default().to_owned();
    if request.get("jwt").is_some() || !matches!(kind.as_str(), "subscribe" | "unsubscribe") {
        return vec![json!({"type": "error", "message": "not a market-data subscription"})];
    }
    let products = names(&request, "product_ids");
    let mut replies = Vec::new();
    for product in &products {
        let key = format!("{channel}:{product}");
        if kind == "subscribe" {
            subscribed.push(key);
            replies.push(json!({
                "channel": channel, "client_id": "", "timestamp": time, "sequence_num": replies.len(),
                "events": [{"type": "snapshot", "tickers": [{"type": "ticker", "product_id": product,
                    "price": "60000", "volume_24_h": "100", "low_24_h": "59000", "high_24_h": "61000",
                    "best_bid": "59999", "best_ask": "60001"}]}]
            }));
        } else {
            subscribed.retain(|s| *s != key);
        }
    }
    let mut current = serde_json::Map::new();
    current.insert(channel, json!(products));
    replies.push(json!({
        "channel": "subscriptions", "client_id": "", "timestamp": time, "sequence_num": replies.len(),
        "events": [{"subscriptions": current}]
    }));
    replies
}

fn okx(frame: &str, conn_id: &str, subscribed: &mut Vec<String>) -> Vec<Value> {
    if frame == "ping" {
        return vec![Value::String("pong".to_owned())];
    }
    let Ok(request) = serde_json::from_str::<Value>(frame) else {
        return vec![
            json!({"event": "error", "code": "60012", "msg": "Illegal request", "connId": conn_id}),
        ];
    };
    let op = request["op"].as_str().unwrap_or_default().to_owned();
    if op != "subscribe" && op != "unsubscribe" {
        return vec![
            json!({"event": "error", "code": "60019", "msg": format!("Invalid op: {op}"), "connId": conn_id}),
        ];
    }
    let mut replies = Vec::new();
    for arg in request["args"].as_array().into_iter().flatten() {
        let mut ack = json!({"event": op, "arg": arg, "connId": conn_id});
        if let Some(id) = request.get("id") {
            ack["id"] = id.clone();
        }
        replies.push(ack);
        let key = arg.to_string();
        if op == "subscribe" {
            let instrument = arg["instId"].as_str().unwrap_or_default();
            replies.push(json!({
                "arg": arg,
                "data": [{"instType": "SPOT", "instId": instrument, "last": LAST, "bidPx": "59999", "askPx": "60001", "ts": now_ms().to_string()}]
            }));
            subscribed.push(key);
        } else {
            subscribed.retain(|s| *s != key);
        }
    }
    replies
}
