//! Binance USDⓈ-M futures' user data stream on the mock's HTTPS listener: the
//! listenKey REST endpoints (`/fapi/v1/listenKey`), the WebSocket a listenKey opens,
//! and the events USDⓈ-M orders send to it, as Binance's USDⓈ-M "User Data Streams"
//! pages describe them.
//!
//! REST, on the API key alone (`X-MBX-APIKEY`, no signature, as Binance documents
//! USER_STREAM endpoints): `POST` answers `{"listenKey"}` (64 letters and digits),
//! the same key while one is active for that API key (Binance extends it); `PUT`
//! keeps it alive (`{}`); `DELETE` ends it (`{}`), and every connection on it gets
//! `listenKeyExpired` and is closed. `PUT` and `DELETE` without an active key are
//! refused `-1125 This listenKey does not exist.`. Keys do not lapse by time (a test
//! ends one with [`super::Mock::expire_listen_key`]). Each request is recorded as
//! REST is, with [`super::Recorded::authenticated`] saying whether its API key was
//! one the exchange accepts.
//!
//! The WebSocket is served at every path a client may use for it: `/ws/<listenKey>`
//! (Binance's documented `wss://fstream.binance.com/ws/<listenKey>`),
//! `/private/ws/<listenKey>` (the newer `wss://fstream.binance.com/private` base) and
//! `/private/ws?listenKey=<listenKey>` (the URL ccxt.pro builds for linear markets).
//! An upgrade naming no active listenKey is refused with HTTP 400 and Binance's
//! `-1125` body: Binance documents nothing for it, and its servers answer a bare
//! `/ws/` with a 400 at the handshake. A connection receives every USDⓈ-M event of
//! the mock's one account (all keys trade it) and [`super::Mock::futures_event`]'s;
//! spot orders send nothing here. The client sends nothing but pings (tungstenite
//! answers them); any other frame is recorded (method `WS`, the upgrade's path) and
//! otherwise ignored. The upgrade is recorded too (method `GET`).
//!
//! Orders: the REST book (`mod.rs`'s `/fapi/v1/order`, `batchOrders`,
//! `allOpenOrders`, and [`super::Mock::fill_all`]) calls here for each change, which
//! sends `ORDER_TRADE_UPDATE` (`NEW`, `AMENDMENT`, `CANCELED`, `TRADE`), and on a fill
//! `TRADE_LITE` before it and `ACCOUNT_UPDATE` (reason `ORDER`, the USDT balance and
//! the symbol's position) after it. A `MARKET` order fills at once at the book's best
//! price and never rests. Commissions and realized profit are zero, so the wallet
//! balance stays what `/fapi/v2/account` reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::spot::{cost, decimal, market_price, units};
use super::{Recorded, State, error, http, now_ms, ws};

/// The listenKey REST endpoint.
pub(super) const LISTEN_KEY_PATH: &str = "/fapi/v1/listenKey";

/// How long a listenKey is: Binance's are 64 letters and digits.
const KEY_LENGTH: usize = 64;

/// The wallet balance the mock's USDⓈ-M account reports (`/fapi/v2/account`).
const WALLET: &str = "1000";

/// The listenKey a request head asks for, if its path is the user data stream's:
/// `/ws/<key>`, `/private/ws/<key>` or `/private/ws?listenKey=<key>`. An empty key
/// (`/ws`, `/ws/`, `/private/ws`) is still the stream's, and refused.
pub(super) fn listen_key_of(request: &Recorded) -> Option<String> {
    let path = request.path.as_str();
    let in_path = path
        .strip_prefix("/private/ws/")
        .or_else(|| path.strip_prefix("/ws/"));
    if let Some(key) = in_path {
        return (!key.contains('/')).then(|| key.to_owned());
    }
    if path == "/private/ws" {
        let key = request
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("listenKey="))
            .unwrap_or_default();
        return Some(key.to_owned());
    }
    (path == "/ws").then(String::new)
}

/// Whether orders in the mock's shared book are USDⓈ-M ones (`new_order`'s futures
/// shape: a position side and an original type, which no other venue's orders have).
pub(super) fn is_futures(order: &Value) -> bool {
    order.get("positionSide").is_some() && order.get("origType").is_some()
}

/// `POST`, `PUT` and `DELETE /fapi/v1/listenKey`, on the API key alone.
pub(super) fn respond_listen_key(state: &State, request: &mut Recorded) -> Vec<u8> {
    let api_key = request.header("x-mbx-apikey").map(str::to_owned);
    let known = api_key
        .as_ref()
        .is_some_and(|key| state.keys.lock().expect("keys").contains_key(key));
    request.authenticated = Some(known);
    let Some(api_key) = api_key.filter(|_| known) else {
        // As for the mock's other key-only endpoints: a key that is not the account's
        // counts as failing verification.
        request.signature_ok = Some(false);
        return if request.header("x-mbx-apikey").is_none() {
            error(401, -2014, "API-key format invalid.")
        } else {
            error(
                401,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            )
        };
    };
    let named = request.params().get("listenKey").cloned();
    let mut keys = state.listen_keys.lock().expect("listen keys");
    let active = keys.get(&api_key).cloned();
    // A key named (older clients send it) must be the active one.
    let matches = |active: &String| named.as_ref().is_none_or(|named| named == active);
    match (request.method.as_str(), active) {
        ("POST", Some(key)) => http(200, "OK", &[], &json!({"listenKey": key}).to_string()),
        ("POST", None) => {
            let key = new_listen_key();
            keys.insert(api_key, key.clone());
            http(200, "OK", &[], &json!({"listenKey": key}).to_string())
        }
        ("PUT", Some(key)) if matches(&key) => http(200, "OK", &[], "{}"),
        ("DELETE", Some(key)) if matches(&key) => {
            keys.remove(&api_key);
            drop(keys);
            ended(state, &key);
            http(200, "OK", &[], "{}")
        }
        ("PUT" | "DELETE", _) => error(400, -1125, "This listenKey does not exist."),
        _ => error(404, -1, "mock: unknown endpoint"),
    }
}

/// A new listenKey: letters and digits from the system's random source.
fn new_listen_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; KEY_LENGTH];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("random bytes");
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Whether `key` is a listenKey active for some API key.
fn is_active(state: &State, key: &str) -> bool {
    !key.is_empty()
        && state
            .listen_keys
            .lock()
            .expect("listen keys")
            .values()
            .any(|k| k == key)
}

/// Ends `key` (deleted, or expired by a test): its connections are told and closed.
pub(super) fn ended(state: &State, key: &str) {
    let _ = state.listen_key_ends.send(key.to_owned());
}

/// Serves one connection whose request head asked for the user data stream of
/// `key`: the refusal of a key not active, or the upgrade and then events until the
/// client goes or the key ends.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut asked: ws::Asked<S>,
    state: Arc<State>,
    key: String,
) {
    let path = asked.upgrade.path.clone();
    // Subscribed before the key is checked, so that an end racing the upgrade is seen.
    let mut ends = state.listen_key_ends.subscribe();
    let mut events = state.futures_events.subscribe();
    let mut drops = state.ws_drops.subscribe();
    if !is_active(&state, &key) {
        state.record(asked.upgrade);
        let body = json!({"code": -1125, "msg": "This listenKey does not exist."}).to_string();
        let head = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = asked.stream.write_all(head.as_bytes()).await;
        let _ = asked.stream.shutdown().await;
        return;
    }
    let Some((mut socket, headers)) = asked.open(&state).await else {
        return;
    };
    loop {
        tokio::select! {
            message = socket.next() => {
                let text = match ws::read(&mut socket, message).await {
                    ws::Read::Text(text) => text,
                    ws::Read::Skip => continue,
                    ws::Read::Gone => return,
                };
                // The stream takes no requests: kept for the tests, not answered.
                state.record(ws::message_record(&path, &headers, text, None, None));
            }
            _ = drops.changed() => return,
            end = ends.recv() => match end {
                Ok(ended) if ended == key => {
                    // The current USDⓈ-M page writes this event's time as a string.
                    let event = json!({"e": "listenKeyExpired", "E": now_ms().to_string(), "listenKey": key});
                    let _ = socket.send(Message::text(event.to_string())).await;
                    let frame = CloseFrame { code: CloseCode::Normal, reason: "listenKey expired".into() };
                    let _ = socket.close(Some(frame)).await;
                    let _ = socket.get_mut().shutdown().await;
                    return;
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            event = events.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                if socket.send(Message::text(event.to_string())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends an event to every user data stream connection (none listening is fine).
pub(super) fn send(state: &State, event: Value) {
    let _ = state.futures_events.send(event);
}

/// A decimal in units of 10^-8 as USDⓈ-M writes amounts: no trailing zeros.
fn plain(amount: i128) -> String {
    let text = decimal(amount);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn field(order: &Value, name: &str) -> i128 {
    order[name].as_str().and_then(units).unwrap_or(0)
}

/// Takes a new USDⓈ-M order (from `new_order`) onto the book and reports it; a
/// `MARKET` order is reported and filled at once instead. Returns what REST answers:
/// the order as placed (`NEW`, Binance's `ACK`), or with `result`
/// (`newOrderRespType=RESULT`) as it stands after, a market order `FILLED`.
pub(super) fn accept(state: &State, order: Value, result: bool) -> Value {
    send(state, update(&order, "NEW", None));
    if order["type"] != "MARKET" {
        state
            .open_orders
            .lock()
            .expect("orders")
            .push(order.clone());
        return order;
    }
    let symbol = order["symbol"].as_str().unwrap_or_default();
    let price = market_price(state, symbol, order["side"] == "BUY");
    let filled = fill_at(state, order.clone(), price);
    if result { filled } else { order }
}

/// Reports an amended order (`PUT /fapi/v1/order`), as it now stands.
pub(super) fn amended(state: &State, order: &Value) {
    send(state, update(order, "AMENDMENT", None));
}

/// Reports a cancelled order (already taken off the book); returns it as cancelled.
pub(super) fn cancel(state: &State, mut order: Value) -> Value {
    order["status"] = "CANCELED".into();
    order["updateTime"] = now_ms().into();
    send(state, update(&order, "CANCELED", None));
    order
}

/// Fills a resting order (already taken off the book) at its own price.
pub(super) fn fill(state: &State, order: &Value) {
    let price = field(order, "price");
    fill_at(state, order.clone(), price);
}

/// Fills `order` whole at `price`: `TRADE_LITE`, `ORDER_TRADE_UPDATE` (`TRADE`,
/// `FILLED`), then `ACCOUNT_UPDATE` with the position it moved. Returns the order
/// filled.
fn fill_at(state: &State, mut order: Value, price: i128) -> Value {
    let quantity = field(&order, "origQty");
    let trade = state.next_trade.fetch_add(1, Ordering::Relaxed);
    order["executedQty"] = plain(quantity).into();
    order["cumQty"] = plain(quantity).into();
    order["cumQuote"] = plain(cost(quantity, price)).into();
    order["avgPrice"] = plain(price).into();
    order["status"] = "FILLED".into();
    order["updateTime"] = now_ms().into();
    let now = now_ms();
    send(
        state,
        json!({
            "e": "TRADE_LITE", "E": now, "T": now, "s": order["symbol"], "q": order["origQty"],
            "p": order["price"], "m": false, "c": order["clientOrderId"], "S": order["side"],
            "L": plain(price), "l": plain(quantity), "t": trade, "i": order["orderId"],
        }),
    );
    send(
        state,
        update(&order, "TRADE", Some((quantity, price, trade))),
    );
    let symbol = order["symbol"].as_str().unwrap_or_default().to_owned();
    let signed = if order["side"] == "BUY" {
        quantity
    } else {
        -quantity
    };
    let (amount, entry) = {
        let mut positions = state.futures_positions.lock().expect("positions");
        let (amount, entry) = positions.entry(symbol.clone()).or_insert((0, 0));
        let total = *amount + signed;
        *entry = if total == 0 {
            0
        } else if amount.signum() == signed.signum() {
            // Adding to the position: the entry price is the average paid.
            (cost(amount.abs(), *entry) + cost(signed.abs(), price)) * super::spot::SCALE
                / total.abs()
        } else if total.signum() != amount.signum() {
            // Flipped (or opened): the rest was entered at this price.
            price
        } else {
            // Reduced: what is left was entered where it was.
            *entry
        };
        *amount = total;
        (*amount, *entry)
    };
    send(
        state,
        json!({
            "e": "ACCOUNT_UPDATE", "E": now, "T": now,
            "a": {
                "m": "ORDER",
                "B": [{"a": "USDT", "wb": WALLET, "cw": WALLET, "bc": "0"}],
                "P": [{
                    "s": symbol, "pa": plain(amount), "ep": plain(entry), "bep": plain(entry),
                    "cr": "0", "up": "0", "mt": "cross", "iw": "0", "ps": "BOTH", "ma": "USDT",
                }],
            },
        }),
    );
    order
}

/// An `ORDER_TRADE_UPDATE` for `order` as it now stands; `execution` is the
/// execution type, `trade` the last fill (quantity, price, trade id).
fn update(order: &Value, execution: &str, trade: Option<(i128, i128, u64)>) -> Value {
    let now = now_ms();
    let (last_quantity, last_price, trade_id) = trade.unwrap_or((0, 0, 0));
    let mut details = json!({
        "s": order["symbol"], "c": order["clientOrderId"], "S": order["side"], "o": order["type"],
        "f": order["timeInForce"], "q": order["origQty"], "p": order["price"], "ap": order["avgPrice"],
        "sp": order["stopPrice"], "x": execution, "X": order["status"], "i": order["orderId"],
        "l": plain(last_quantity), "z": order["executedQty"], "L": plain(last_price), "T": now,
        "t": trade_id, "b": "0", "a": "0", "m": false, "R": order["reduceOnly"],
        "wt": order["workingType"], "ot": order["origType"], "ps": order["positionSide"],
        "cp": order["closePosition"], "rp": "0", "pP": order["priceProtect"], "si": 0, "ss": 0,
        "V": order["selfTradePreventionMode"], "pm": order["priceMatch"], "gtd": order["goodTillDate"],
    });
    if trade.is_some() {
        // "Commission Asset, will not push if no commission": a fill has one (zero).
        details["N"] = "USDT".into();
        details["n"] = "0".into();
    }
    json!({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": details})
}

/// Every active listenKey, by API key.
pub(super) fn active_keys(state: &State) -> BTreeMap<String, String> {
    state.listen_keys.lock().expect("listen keys").clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, query: &str) -> Recorded {
        Recorded {
            method: "GET".to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            body: String::new(),
            signature_ok: None,
            authenticated: None,
        }
    }

    #[test]
    fn the_stream_is_found_on_every_path_clients_use() {
        let key = "k".repeat(64);
        for (path, query) in [
            (format!("/ws/{key}"), String::new()),
            (format!("/private/ws/{key}"), String::new()),
            ("/private/ws".to_owned(), format!("listenKey={key}")),
            ("/private/ws".to_owned(), format!("x=1&listenKey={key}")),
        ] {
            assert_eq!(
                listen_key_of(&request(&path, &query)).as_deref(),
                Some(key.as_str()),
                "{path}?{query}"
            );
        }
        for path in ["/ws", "/ws/", "/private/ws"] {
            assert_eq!(listen_key_of(&request(path, "")).as_deref(), Some(""));
        }
        for path in ["/ws/v5/private", "/ws-api/v3", "/fapi/v1/listenKey", "/"] {
            assert_eq!(listen_key_of(&request(path, "")), None, "{path}");
        }
    }

    #[test]
    fn listen_keys_are_64_letters_and_digits_and_differ() {
        let (a, b) = (new_listen_key(), new_listen_key());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn amounts_are_written_without_trailing_zeros() {
        assert_eq!(plain(100_000), "0.001");
        assert_eq!(plain(6_001_000_000_000), "60010");
        assert_eq!(plain(0), "0");
        assert_eq!(plain(-100_000), "-0.001");
    }
}
