//! Bybit v5's private WebSockets on the mock's HTTPS listener, as Bybit's docs
//! (docs/v5/ws/connect, websocket/private/*, websocket/trade/guideline) describe
//! them: `/v5/private`, the private stream (topics `order`, `execution`, `position`,
//! `wallet` and their categorised `order.spot`, ...), and `/v5/trade`, order entry
//! (`order.create`, `order.amend`, `order.cancel` and their `-batch` forms).
//!
//! A connection logs in once: `{"op": "auth", "args": [apiKey, expires, signature]}`
//! with `signature` = hex HMAC-SHA256(secret, "GET/realtime" + expires) and
//! `expires` (ms, a number or a string, the signature over its text as sent) still
//! in the future. Until then the stream refuses subscriptions and order entry its
//! operations. The private stream answers in its own style (`success`, `ret_msg`,
//! `op`, `conn_id`, `req_id` echoed), order entry in REST's (`retCode`, `retMsg`,
//! `op`, `data`, `retExtInfo`, `header`, `connId`, `reqId` echoed); order entry
//! checks each request's `header` (`X-BAPI-TIMESTAMP` within `X-BAPI-RECV-WINDOW`)
//! and refuses a repeated `reqId`. Orders go to the Bybit book REST uses
//! (`bybit.rs`), whose events reach every logged-in private-stream connection
//! subscribed to their topic as `{"id", "topic", "creationTime", "data"}`.
//!
//! Every frame is recorded (method `WS`, the path, the frame as body): an `auth`
//! message with whether its signature verified, every message with whether its
//! connection was logged in ([`super::Recorded::authenticated`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::Message;

use super::ws::{self, text_of};
use super::{State, bybit, now_ms};
use crate::hmac_sha256_hex;

/// The private stream's path.
pub(super) const PRIVATE: &str = "/v5/private";
/// Order entry's path.
pub(super) const TRADE: &str = "/v5/trade";

/// Which of Bybit's two private WebSockets a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `/v5/private`: the private stream.
    Private,
    /// `/v5/trade`: order entry.
    Trade,
}

impl Kind {
    /// The WebSocket served on `path`, if any.
    pub(super) fn of(path: &str) -> Option<Self> {
        match path {
            PRIVATE => Some(Self::Private),
            TRADE => Some(Self::Trade),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Private => PRIVATE,
            Self::Trade => TRADE,
        }
    }
}

/// The private stream's topics (all-in-one); each also has categorised forms.
const TOPICS: &[&str] = &["order", "execution", "position", "wallet"];

/// The categories a categorised topic may name (`order.spot`, ...).
const CATEGORIES: &[&str] = &["spot", "linear", "inverse", "option"];

/// One connection's state.
#[derive(Debug)]
struct Session {
    kind: Kind,
    conn_id: String,
    authenticated: bool,
    /// The private stream's subscribed topics, as subscribed (`order`, `order.spot`).
    topics: BTreeSet<String>,
    /// Order entry's `reqId`s so far (Bybit refuses a repeated one, 20006).
    req_ids: BTreeSet<String>,
    /// Events sent so far, for each event's own `id`.
    sent: u64,
}

/// Serves one connection whose request head asked for `kind`'s path: the upgrade,
/// then messages and events until the client goes.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    asked: ws::Asked<S>,
    state: Arc<State>,
    kind: Kind,
) {
    let Some((mut socket, headers)) = asked.open(&state).await else {
        return;
    };
    let mut events = state.bybit_events.subscribe();
    let mut session = Session {
        kind,
        conn_id: ws::connection_id(&state),
        authenticated: false,
        topics: BTreeSet::new(),
        req_ids: BTreeSet::new(),
        sent: 0,
    };
    loop {
        tokio::select! {
            message = socket.next() => {
                let text = match ws::read(&mut socket, message).await {
                    ws::Read::Text(text) => text,
                    ws::Read::Skip => continue,
                    ws::Read::Gone => return,
                };
                let was_authenticated = session.authenticated;
                let (reply, signature_ok) = answer(&state, &mut session, &text);
                let record = ws::message_record(kind.path(), &headers, text, signature_ok, Some(was_authenticated));
                state.record(record);
                if socket.send(Message::text(reply.to_string())).await.is_err() {
                    return;
                }
            }
            event = events.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                for frame in deliveries(&mut session, &event) {
                    if socket.send(Message::text(frame.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The frames `event` (`{"topic", "data"}`) becomes on this connection: one for each
/// subscribed topic it falls under (the all-in-one topic, or the categorised one of
/// its category), none for a connection that has not logged in.
fn deliveries(session: &mut Session, event: &Value) -> Vec<Value> {
    if session.kind != Kind::Private || !session.authenticated {
        return Vec::new();
    }
    let topic = event["topic"].as_str().unwrap_or_default();
    let category = event["data"][0]["category"].as_str().unwrap_or_default();
    let categorised = format!("{topic}.{category}");
    let topics: Vec<String> = session
        .topics
        .iter()
        .filter(|t| **t == topic || **t == categorised)
        .cloned()
        .collect();
    let mut frames = Vec::new();
    for topic in topics {
        session.sent += 1;
        frames.push(json!({
            "id": format!("{}-{}", session.conn_id, session.sent),
            "topic": topic,
            "creationTime": now_ms(),
            "data": event["data"],
        }));
    }
    frames
}

/// The answer to one frame, and whether it carried a signature that verified (an
/// `auth` message's; `None` for the others).
fn answer(state: &State, session: &mut Session, frame: &str) -> (Value, Option<bool>) {
    let Ok(request @ Value::Object(_)) = serde_json::from_str::<Value>(frame) else {
        return (refuse(session, &Value::Null, 10001, "Params Error"), None);
    };
    let op = request["op"].as_str().unwrap_or_default().to_owned();
    match (session.kind, op.as_str()) {
        (_, "auth") => {
            let (verdict, signature_ok) = auth(state, session, &request);
            let reply = match verdict {
                Ok(()) => accept(session, &request, json!(null)),
                Err((code, message)) => refuse(session, &request, code, &message),
            };
            (reply, Some(signature_ok))
        }
        (_, "ping") => (pong(session, &request), None),
        (Kind::Private, "subscribe" | "unsubscribe") => (subscribe(session, &request, &op), None),
        (Kind::Trade, _) => (order_entry(state, session, &request, &op), None),
        (Kind::Private, _) => (refuse(session, &request, 10001, "error:invalid op"), None),
    }
}

/// Bybit's checks of an `auth` message: the verdict, and whether the signature
/// verified (`false` too when the message cannot be verified at all).
fn auth(
    state: &State,
    session: &mut Session,
    request: &Value,
) -> (Result<(), bybit::Refusal>, bool) {
    let args = request["args"].as_array().cloned().unwrap_or_default();
    let (Some(key), Some(expires), Some(signature)) = (
        args.first().and_then(Value::as_str),
        args.get(1).and_then(text_of),
        args.get(2).and_then(Value::as_str),
    ) else {
        return (Err((10001, "Params Error".to_owned())), false);
    };
    let Some(secret) = bybit::secret_of(state, key) else {
        let refusal = match session.kind {
            Kind::Private => (10003, "Request not authorized".to_owned()),
            Kind::Trade => (10003, "API key is invalid.".to_owned()),
        };
        return (Err(refusal), false);
    };
    let expected = hmac_sha256_hex(
        secret.as_bytes(),
        format!("GET/realtime{expires}").as_bytes(),
    );
    if expected != signature {
        let refusal = match session.kind {
            Kind::Private => (10004, "Request not authorized".to_owned()),
            Kind::Trade => (10004, "Invalid sign".to_owned()),
        };
        return (Err(refusal), false);
    }
    // "expires ... is greater than your current timestamp".
    if !expires
        .parse::<u64>()
        .is_ok_and(|expires| expires > state.now_ms())
    {
        return (Err((10001, "Params Error".to_owned())), true);
    }
    if session.authenticated {
        return (Err((20001, "Repeat auth".to_owned())), true);
    }
    session.authenticated = true;
    (Ok(()), true)
}

/// A success in the connection's style: the private stream's `{"success": true,
/// "ret_msg": "", "op", "conn_id", "req_id"}`, order entry's `{"retCode": 0,
/// "retMsg": "OK", "op", "connId", "reqId"}` (and `data` when there is some).
fn accept(session: &Session, request: &Value, data: Value) -> Value {
    match session.kind {
        Kind::Private => {
            let mut reply = json!({"success": true, "ret_msg": "", "op": request["op"], "conn_id": session.conn_id});
            echo(&mut reply, request, "req_id");
            reply
        }
        Kind::Trade => {
            let mut reply = json!({"retCode": 0, "retMsg": "OK", "op": request["op"], "connId": session.conn_id});
            if !data.is_null() {
                reply["data"] = data;
            }
            echo(&mut reply, request, "reqId");
            reply
        }
    }
}

/// A refusal in the connection's style (the private stream has no codes).
fn refuse(session: &Session, request: &Value, code: i64, message: &str) -> Value {
    match session.kind {
        Kind::Private => {
            let mut reply = json!({"success": false, "ret_msg": message, "op": request["op"], "conn_id": session.conn_id});
            echo(&mut reply, request, "req_id");
            reply
        }
        Kind::Trade => {
            let mut reply = json!({"retCode": code, "retMsg": message, "op": request["op"], "connId": session.conn_id});
            echo(&mut reply, request, "reqId");
            reply
        }
    }
}

/// Copies the request's id member (`req_id` on the private stream, `reqId` on order
/// entry) to the reply, as sent, when it has one.
fn echo(reply: &mut Value, request: &Value, name: &str) {
    if let Some(id) = request.get(name) {
        reply[name] = id.clone();
    }
}

/// `ping`: the private stream's `{"op": "pong", "args": [now]}`, order entry's
/// `{"retCode": 0, "op": "pong", "data": [now]}`.
fn pong(session: &Session, request: &Value) -> Value {
    let now = now_ms().to_string();
    match session.kind {
        Kind::Private => {
            let mut reply = json!({"op": "pong", "args": [now], "conn_id": session.conn_id});
            echo(&mut reply, request, "req_id");
            reply
        }
        Kind::Trade => {
            let mut reply = json!({"retCode": 0, "retMsg": "OK", "op": "pong", "data": [now], "connId": session.conn_id});
            echo(&mut reply, request, "reqId");
            reply
        }
    }
}

/// Whether `topic` is one the private stream serves.
fn known_topic(topic: &str) -> bool {
    match topic.split_once('.') {
        None => TOPICS.contains(&topic),
        Some((base, category)) => TOPICS.contains(&base) && CATEGORIES.contains(&category),
    }
}

/// `subscribe` and `unsubscribe` on the private stream: logged in first, every topic
/// known, all-in-one and categorised forms never in one request.
fn subscribe(session: &mut Session, request: &Value, op: &str) -> Value {
    if !session.authenticated {
        return refuse(session, request, 10003, "Request not authorized");
    }
    let topics: Vec<String> = request["args"]
        .as_array()
        .map(|args| {
            args.iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if topics.is_empty() {
        return refuse(session, request, 10001, "Params Error");
    }
    if let Some(unknown) = topics.iter().find(|t| !known_topic(t)) {
        return refuse(
            session,
            request,
            10001,
            &format!("error:handler not found,topic:{unknown}"),
        );
    }
    let categorised = topics.iter().filter(|t| t.contains('.')).count();
    if categorised != 0 && categorised != topics.len() {
        return refuse(
            session,
            request,
            10001,
            "error:all-in-one and categorised topics cannot be in one request",
        );
    }
    for topic in topics {
        if op == "subscribe" {
            session.topics.insert(topic);
        } else {
            session.topics.remove(&topic);
        }
    }
    accept(session, request, json!(null))
}

/// The operations of order entry.
const OPERATIONS: &[&str] = &[
    "order.create",
    "order.amend",
    "order.cancel",
    "order.create-batch",
    "order.amend-batch",
    "order.cancel-batch",
];

/// An order-entry operation: logged in, known, its `reqId` new, its `header` in
/// time; then the book's answer in REST's terms (`data` as REST's `result`).
fn order_entry(state: &State, session: &mut Session, request: &Value, op: &str) -> Value {
    match entered(state, session, request, op) {
        Ok(reply) => reply,
        Err((code, message)) => {
            let mut reply = refuse(session, request, code, &message);
            reply["data"] = json!({});
            reply["retExtInfo"] = json!({});
            reply["header"] = limits_header(state);
            reply
        }
    }
}

/// [`order_entry`]'s answer, or its refusal.
fn entered(
    state: &State,
    session: &mut Session,
    request: &Value,
    op: &str,
) -> Result<Value, bybit::Refusal> {
    let refused = |code: i64, message: &str| Err((code, message.to_owned()));
    if !OPERATIONS.contains(&op) {
        return refused(10404, "op type is not found");
    }
    if !session.authenticated {
        return refused(10003, "Request not authorized");
    }
    if let Some(id) = request.get("reqId").and_then(text_of) {
        if session.req_ids.contains(&id) {
            return refused(20006, "reqId is duplicated");
        }
        session.req_ids.insert(id);
    }
    let header = &request["header"];
    let Some(timestamp) = header
        .get("X-BAPI-TIMESTAMP")
        .and_then(text_of)
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return refused(10001, "Params Error: X-BAPI-TIMESTAMP is missing");
    };
    let window = header
        .get("X-BAPI-RECV-WINDOW")
        .and_then(text_of)
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(5000);
    let server = state.now_ms();
    if timestamp >= server + 1000 || server.saturating_sub(timestamp) > window {
        return refused(
            10002,
            "invalid request, please check your server timestamp or recv_window param",
        );
    }
    let Some(args) = request["args"].as_array().filter(|a| !a.is_empty()) else {
        return refused(10001, "Params Error: args is empty");
    };
    let first = &args[0];
    let (data, ext) = match op {
        "order.create" | "order.amend" | "order.cancel" => {
            let done = match op {
                "order.create" => bybit::create(state, first, true),
                "order.amend" => bybit::amend(state, first),
                _ => bybit::cancel(state, first),
            };
            match done {
                Ok(order) => (
                    json!({"orderId": order["orderId"], "orderLinkId": order["orderLinkId"]}),
                    json!({}),
                ),
                Err(refusal) => return Err(refusal),
            }
        }
        _ => {
            let kind = op.trim_start_matches("order.");
            let (list, codes) = bybit::batch(state, kind, first, true);
            (json!({"list": list}), json!({"list": codes}))
        }
    };
    let mut reply = accept(session, request, data);
    reply["retExtInfo"] = ext;
    reply["header"] = limits_header(state);
    Ok(reply)
}

/// The `header` of an order-entry answer: the rate limit left and the time.
fn limits_header(state: &State) -> Value {
    let now = state.now_ms().to_string();
    json!({
        "X-Bapi-Limit": "20", "X-Bapi-Limit-Status": "19", "X-Bapi-Limit-Reset-Timestamp": now,
        "Traceid": format!("mock{now}"), "Timenow": now
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bybit's WebSocket authentication signature, checked against the vector
    /// derived in venues/signing.md §5 (`vectors.json`, bybit v5 private WS).
    #[test]
    fn the_auth_signature_is_bybits() {
        assert_eq!(
            hmac_sha256_hex(b"bybit-test-secret", b"GET/realtime1662350400000"),
            "e5afa359fdaabfeeae6a8755687997f43c4696196a957502edf608dcd3c83caa"
        );
    }

    #[test]
    fn topics_are_bybits_private_ones() {
        for topic in [
            "order",
            "execution",
            "position",
            "wallet",
            "order.spot",
            "execution.linear",
        ] {
            assert!(known_topic(topic), "{topic}");
        }
        for topic in ["orderbook.1.BTCUSDT", "order.margin", "greeks.x", ""] {
            assert!(!known_topic(topic), "{topic}");
        }
    }
}
