//! OKX v5's private WebSocket on the mock's HTTPS listener, `/ws/v5/private`, as
//! OKX's docs (overview-websocket-login and -subscribe, order-book-trading-trade-ws)
//! describe it.
//!
//! A connection logs in once: `{"op": "login", "args": [{"apiKey", "passphrase",
//! "timestamp", "sign"}]}` with `sign` = base64(HMAC-SHA256(secret, timestamp +
//! "GET" + "/users/self/verify")), `timestamp` in Unix seconds (a string or a
//! number, the signature over its text as sent) within 30 s of the mock's clock;
//! answered `{"event": "login", "code": "0", "msg": "", "connId"}`, a failure
//! `{"event": "error", "code", "msg", "connId"}` (60005 key, 60024 passphrase, 60004
//! and 60006 timestamp, 60007 sign). Then `subscribe` and `unsubscribe` to the
//! channels `orders` (with `instType`, optionally `instId`), `account`, `positions`
//! and `balance_and_position`, and the order operations `order`, `batch-orders`,
//! `amend-order`, `batch-amend-orders`, `cancel-order` and `batch-cancel-orders`
//! (`{"id", "op", "args"}` answered `{"id", "op", "code", "msg", "data": [{"ordId",
//! "clOrdId", "sCode", "sMsg", ...}], "inTime", "outTime"}`: code `0`, `1` when every
//! order failed, `2` when some did). The text `ping` is answered `pong`. Orders go to
//! the OKX book REST uses (`okx.rs`), whose pushes reach every logged-in connection
//! with a matching subscription as `{"arg": {"channel", "instType", "uid", ...},
//! "data": [...]}`.
//!
//! Every frame is recorded (method `WS`, the path, the frame as body): a `login`
//! with whether its sign verified, every frame with whether its connection was
//! logged in ([`super::Recorded::authenticated`]).

use std::sync::Arc;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::Message;

use super::ws::{self, text_of};
use super::{State, now_ms, okx};
use crate::venues::okx::{API_KEY, PASSPHRASE, SECRET};

/// Where OKX serves its private WebSocket.
pub(super) const PATH: &str = "/ws/v5/private";

/// How far a login's timestamp may be from the mock's clock ("The request will
/// expire 30 seconds after the timestamp").
const LOGIN_WINDOW_MS: f64 = 30_000.0;

/// The most orders one batch operation takes.
const MAX_BATCH: usize = 20;

/// The channels served, and whether a subscription must give `instType`.
const CHANNELS: &[(&str, bool)] = &[
    ("orders", true),
    ("account", false),
    ("positions", true),
    ("balance_and_position", false),
];

/// The instrument types a subscription may name.
const INST_TYPES: &[&str] = &["SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION", "ANY"];

/// One connection's state.
#[derive(Debug)]
struct Session {
    conn_id: String,
    logged_in: bool,
    /// Each subscription's `arg` as subscribed.
    subscriptions: Vec<Map<String, Value>>,
}

/// Serves one connection whose request head asked for `/ws/v5/private`: the
/// upgrade, then messages and pushes until the client goes.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    asked: ws::Asked<S>,
    state: Arc<State>,
) {
    let Some((mut socket, headers)) = asked.open(&state).await else {
        return;
    };
    let mut events = state.okx_events.subscribe();
    // OKX's connection ids are eight hex digits.
    let serial = state
        .next_connection
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut session = Session {
        conn_id: format!("{:08x}", 0xa4d3_0000_u64 + serial),
        logged_in: false,
        subscriptions: Vec::new(),
    };
    loop {
        tokio::select! {
            message = socket.next() => {
                let text = match ws::read(&mut socket, message).await {
                    ws::Read::Text(text) => text,
                    ws::Read::Skip => continue,
                    ws::Read::Gone => return,
                };
                let was_logged_in = session.logged_in;
                let (replies, signature_ok) = if text == "ping" {
                    (vec![Value::String("pong".to_owned())], None)
                } else {
                    answer(&state, &mut session, &text)
                };
                let record = ws::message_record(PATH, &headers, text, signature_ok, Some(was_logged_in));
                state.record(record);
                for reply in replies {
                    // `pong` is the one frame that is not JSON.
                    let frame = match reply {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    if socket.send(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
            }
            event = events.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                for push in deliveries(&session, &event) {
                    if socket.send(Message::text(push.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Whether the subscription `arg` covers the push `event` (`{"channel", "instType",
/// "instId"}`): same channel, its `instType` or `ANY`, its `instId` if it names one.
fn covers(arg: &Map<String, Value>, event: &Value) -> bool {
    let wanted = |name: &str| arg.get(name).and_then(Value::as_str);
    wanted("channel") == event["channel"].as_str()
        && wanted("instType").is_none_or(|t| t == "ANY" || Some(t) == event["instType"].as_str())
        && wanted("instId").is_none_or(|i| Some(i) == event["instId"].as_str())
}

/// The pushes `event` becomes on this connection: one for each subscription that
/// covers it, its `arg` with the account's `uid`; none before login.
fn deliveries(session: &Session, event: &Value) -> Vec<Value> {
    if !session.logged_in {
        return Vec::new();
    }
    session
        .subscriptions
        .iter()
        .filter(|arg| covers(arg, event))
        .map(|arg| push(arg, event["data"].clone()))
        .collect()
}

fn push(arg: &Map<String, Value>, data: Value) -> Value {
    let mut arg = arg.clone();
    arg.insert("uid".to_owned(), okx::UID.into());
    json!({"arg": arg, "data": data})
}

/// An `{"event": "error"}` answer (with the request's `id` when it had one).
fn error(session: &Session, request: &Value, code: &str, message: &str) -> Value {
    let mut reply =
        json!({"event": "error", "code": code, "msg": message, "connId": session.conn_id});
    if let Some(id) = request.get("id") {
        reply["id"] = id.clone();
    }
    reply
}

/// The frames answering one message, and whether it carried a signature that
/// verified (a `login`'s; `None` for the others).
fn answer(state: &State, session: &mut Session, frame: &str) -> (Vec<Value>, Option<bool>) {
    let Ok(request @ Value::Object(_)) = serde_json::from_str::<Value>(frame) else {
        let message = format!("Illegal request: {frame}");
        return (vec![error(session, &Value::Null, "60012", &message)], None);
    };
    let op = request["op"].as_str().unwrap_or_default().to_owned();
    match op.as_str() {
        "login" => {
            let (verdict, signature_ok) = login(state, &request);
            let reply = match verdict {
                Ok(()) => {
                    session.logged_in = true;
                    json!({"event": "login", "code": "0", "msg": "", "connId": session.conn_id})
                }
                Err((code, message)) => error(session, &request, code, message),
            };
            (vec![reply], Some(signature_ok))
        }
        "subscribe" | "unsubscribe" => (subscribe(session, &request, &op), None),
        "order"
        | "batch-orders"
        | "amend-order"
        | "batch-amend-orders"
        | "cancel-order"
        | "batch-cancel-orders" => (vec![operation(state, session, &request, &op, frame)], None),
        _ => (
            vec![error(
                session,
                &request,
                "60019",
                &format!("Invalid op: {op}"),
            )],
            None,
        ),
    }
}

/// OKX's checks of a `login`: the verdict (OKX's code and message on a failure),
/// and whether the sign verified (`false` too when there is none to verify).
fn login(state: &State, request: &Value) -> (Result<(), (&'static str, &'static str)>, bool) {
    let args = &request["args"][0];
    let text = |name: &str| args.get(name).and_then(text_of);
    let (Some(key), Some(passphrase), Some(timestamp), Some(sign)) = (
        text("apiKey"),
        text("passphrase"),
        text("timestamp"),
        text("sign"),
    ) else {
        return (Err(("60009", "Login failed.")), false);
    };
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes()),
        format!("{timestamp}GET/users/self/verify").as_bytes(),
    );
    let signature_ok = sign == base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    if key != API_KEY {
        return (Err(("60005", "Invalid OK-ACCESS-KEY")), false);
    }
    if passphrase != PASSPHRASE {
        return (Err(("60024", "Wrong passphrase")), signature_ok);
    }
    // Unix seconds; OKX's own example divides Date.now() by 1000, so a fraction is
    // taken too.
    let Some(sent_ms) = timestamp
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| t * 1000.0)
    else {
        return (Err(("60004", "Invalid timestamp")), signature_ok);
    };
    // Milliseconds since 1970 fit an f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    let now = state.now_ms() as f64;
    if (now - sent_ms).abs() > LOGIN_WINDOW_MS {
        return (Err(("60006", "Timestamp request expired")), signature_ok);
    }
    if !signature_ok {
        return (Err(("60007", "Invalid sign")), false);
    }
    (Ok(()), true)
}

/// `subscribe` and `unsubscribe`: logged in first, every channel served and given
/// its `instType`; one answer for each `arg`, then the first push of the channels
/// OKX sends one for at once (the account's balance, its positions).
fn subscribe(session: &mut Session, request: &Value, op: &str) -> Vec<Value> {
    if !session.logged_in {
        return vec![error(session, request, "60011", "Please log in")];
    }
    let args: Vec<Map<String, Value>> = request["args"]
        .as_array()
        .map(|args| args.iter().filter_map(|a| a.as_object().cloned()).collect())
        .unwrap_or_default();
    if args.is_empty() {
        return vec![error(session, request, "60013", "Invalid args")];
    }
    for arg in &args {
        let channel = arg
            .get("channel")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let inst_type = arg.get("instType").and_then(Value::as_str);
        let served = CHANNELS.iter().find(|(name, _)| *name == channel);
        let typed = inst_type.is_none_or(|t| INST_TYPES.contains(&t))
            && (served.is_some_and(|(_, needs)| !needs) || inst_type.is_some());
        if served.is_none() || !typed {
            let described: Vec<String> = arg
                .iter()
                .map(|(k, v)| format!("{k}:{}", text_of(v).unwrap_or_default()))
                .collect();
            let message = format!(
                "Wrong URL or {} doesn't exist. Please use the correct URL, channel and parameters referring to API document.",
                described.join(",")
            );
            return vec![error(session, request, "60018", &message)];
        }
    }
    let mut replies = Vec::new();
    for arg in args {
        let mut reply = json!({"event": op, "arg": arg, "connId": session.conn_id});
        if let Some(id) = request.get("id") {
            reply["id"] = id.clone();
        }
        replies.push(reply);
        if op == "unsubscribe" {
            session.subscriptions.retain(|s| *s != arg);
            continue;
        }
        let first = match arg.get("channel").and_then(Value::as_str) {
            Some("account") => Some(json!([okx::balance()])),
            Some("positions") => Some(json!([])),
            Some("balance_and_position") => Some(json!([{
                "pTime": now_ms().to_string(), "eventType": "snapshot",
                "balData": [{"ccy": "USDT", "cashBal": "1000", "uTime": "1700000000000"},
                            {"ccy": "BTC", "cashBal": "0.5", "uTime": "1700000000000"}],
                "posData": [], "trades": []
            }])),
            _ => None,
        };
        if let Some(data) = first {
            replies.push(push(&arg, data));
        }
        if !session.subscriptions.contains(&arg) {
            session.subscriptions.push(arg);
        }
    }
    replies
}

/// Whether `id` is one OKX takes: up to 32 letters and digits.
fn valid_id(id: &Value) -> bool {
    id.as_str().is_some_and(|id| {
        !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// An order operation: a valid `id`, logged in, its `args` (one order, or up to 20
/// for a batch), each order taken on its own by the book.
fn operation(state: &State, session: &Session, request: &Value, op: &str, frame: &str) -> Value {
    let in_time = format!("{}000", now_ms());
    let Some(id) = request.get("id").filter(|id| valid_id(id)) else {
        return error(
            session,
            request,
            "60012",
            &format!("Illegal request: {frame}"),
        );
    };
    let answer = |code: &str, msg: &str, data: Vec<Value>| {
        json!({"id": id, "op": op, "code": code, "msg": msg, "data": data,
               "inTime": in_time, "outTime": format!("{}000", now_ms())})
    };
    if !session.logged_in {
        return answer("60011", "Please log in", Vec::new());
    }
    let args: Vec<Value> = request["args"].as_array().cloned().unwrap_or_default();
    let most = if op.starts_with("batch-") {
        MAX_BATCH
    } else {
        1
    };
    if args.is_empty() || args.len() > most || args.iter().any(|a| !a.is_object()) {
        return answer("60013", "Invalid args", Vec::new());
    }
    let data: Vec<Value> = args
        .iter()
        .map(|order| match op {
            "order" | "batch-orders" => okx::place(state, order, true),
            "amend-order" | "batch-amend-orders" => okx::amend(state, order),
            _ => okx::cancel(state, order),
        })
        .collect();
    let failed = data.iter().filter(|d| d["sCode"] != "0").count();
    let code = match failed {
        0 => "0",
        n if n == data.len() => "1",
        _ => "2",
    };
    answer(code, "", data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OKX's WebSocket login sign, checked against the vector derived in
    /// venues/signing.md §4 (`vectors.json`, okx v5 private WebSocket login).
    #[test]
    fn the_login_sign_is_okxs() {
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"22582BD0CFF14C41EDBF1AB98506286D"),
            b"1704876947GET/users/self/verify",
        );
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
            "5/36BgGV6m/6pmdc20zdqk0mzF5ZalmzzPD2fo3wavU="
        );
    }

    #[test]
    fn subscriptions_cover_their_instrument_type_and_instrument() {
        let arg = |value: Value| value.as_object().cloned().unwrap();
        let event = json!({"channel": "orders", "instType": "SPOT", "instId": "BTC-USDT"});
        assert!(covers(
            &arg(json!({"channel": "orders", "instType": "ANY"})),
            &event
        ));
        assert!(covers(
            &arg(json!({"channel": "orders", "instType": "SPOT", "instId": "BTC-USDT"})),
            &event
        ));
        assert!(!covers(
            &arg(json!({"channel": "orders", "instType": "SWAP"})),
            &event
        ));
        assert!(!covers(
            &arg(json!({"channel": "orders", "instType": "SPOT", "instId": "ETH-USDT"})),
            &event
        ));
        assert!(!covers(&arg(json!({"channel": "account"})), &event));
    }

    #[test]
    fn ids_are_okxs() {
        assert!(valid_id(&json!("1512")));
        assert!(valid_id(&json!("abcXYZ09")));
        for bad in [json!(""), json!("a-b"), json!(1512), json!("x".repeat(33))] {
            assert!(!valid_id(&bad), "{bad}");
        }
    }
}
