//! Coinbase Advanced Trade's user-order-data WebSocket (production
//! `wss://advanced-trade-ws-user.coinbase.com`, path `/`) on the mock's HTTPS
//! listener: an upgrade request for `/`, as Coinbase's WebSocket overview and
//! channels pages describe it.
//!
//! A client sends one message per channel: `{"type": "subscribe" | "unsubscribe",
//! "channel", "product_ids": [...] (optional), "jwt"}`. The channels are `user` and
//! `futures_balance_summary`, which need a JWT, and `heartbeats`, which does not. The
//! JWT is the REST one without `uri` (coinbase-advanced-py's `build_ws_jwt`, ccxt's
//! token without a request): checked as REST's is (`coinbase.rs`), and one that fails
//! is refused on any channel. Every message sent to the client is in Coinbase's
//! envelope, `{"channel", "client_id": "", "timestamp", "sequence_num", "events"}`,
//! `sequence_num` counting every message of the connection from 0:
//! - a subscribe or unsubscribe taken is answered on the `subscriptions` channel
//!   with every subscription the connection holds, `{"subscriptions": {channel:
//!   [product ids]}}` (an empty list for a channel taken for every product); a
//!   `user` subscription first gets a `user` message with a `snapshot` event of the
//!   open orders (of its products, when it names some) and the futures positions, a
//!   `futures_balance_summary` one a snapshot of the futures balance;
//! - orders placed, cancelled and filled in the REST book (`coinbase.rs`), and
//!   [`super::Mock::coinbase_event`]'s, come as `user` messages with an `update`
//!   event, narrowed to the subscribed products;
//! - `heartbeats` sends `{"current_time", "heartbeat_counter"}` every second;
//! - what the mock refuses (an unknown type or channel, a JWT missing or failing)
//!   is answered `{"type": "error", "message"}`, and the connection stays open.
//!
//! Coinbase disconnects a connection that has not subscribed within 5 seconds of
//! opening; so does the mock (a close frame, 1008). Every frame is recorded (method
//! `WS`, path `/`, the frame as body): one with a `jwt` with whether it verified,
//! every frame with whether its connection held an authenticated subscription
//! ([`super::Recorded::authenticated`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{Recorded, State, coinbase, ws};

/// Where Coinbase serves its user-order-data WebSocket.
pub(super) const PATH: &str = "/";

/// How long a connection may stay without a subscription ("you are disconnected if
/// no subscribe has been received within 5 seconds").
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(5);

/// How often the `heartbeats` channel sends ("heartbeats messages every second").
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// The channels served on the user endpoint, and whether each needs a JWT.
const CHANNELS: &[(&str, bool)] = &[
    ("user", true),
    ("heartbeats", false),
    ("futures_balance_summary", true),
];

/// Whether a request head asks for Coinbase's WebSocket: `/` with `Upgrade:
/// websocket` (a malformed upgrade of `/` is still one, refused by the handshake).
pub(super) fn is_upgrade(request: &Recorded) -> bool {
    request.path == PATH
        && request.header("upgrade").is_some_and(|value| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// The products of one subscribed channel: some, or every one (`None`).
type Products = Option<BTreeSet<String>>;

/// One connection's state.
#[derive(Debug)]
struct Session {
    /// The next message's `sequence_num`.
    sequence: u64,
    /// Each subscribed channel and its products.
    subscriptions: BTreeMap<String, Products>,
    /// Whether a subscription was ever taken (the 5-second rule).
    subscribed: bool,
    /// Whether a channel that needs a JWT was taken with one that verified.
    authenticated: bool,
    heartbeat_counter: u64,
    opened: Instant,
}

impl Session {
    /// A message in Coinbase's envelope, numbered.
    fn message(&mut self, channel: &str, events: Value) -> Value {
        let sequence = self.sequence;
        self.sequence += 1;
        json!({"channel": channel, "client_id": "", "timestamp": timestamp(),
               "sequence_num": sequence, "events": events})
    }

    /// The `subscriptions` message: every subscription held.
    fn acknowledgement(&mut self) -> Value {
        let held: serde_json::Map<String, Value> = self
            .subscriptions
            .iter()
            .map(|(channel, products)| {
                let listed: Vec<&String> = products.iter().flatten().collect();
                (channel.clone(), json!(listed))
            })
            .collect();
        self.message("subscriptions", json!([{"subscriptions": held}]))
    }
}

/// Now in RFC 3339 with nanoseconds, as Coinbase stamps its messages.
fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Serves one connection whose request head asked for `/` as a WebSocket: the
/// upgrade, then messages, events and heartbeats until the client goes or the
/// connection is closed for not subscribing.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    asked: ws::Asked<S>,
    state: Arc<State>,
) {
    let Some((mut socket, headers)) = asked.open(&state).await else {
        return;
    };
    let mut events = state.coinbase_events.subscribe();
    let opened = Instant::now();
    let mut session = Session {
        sequence: 0,
        subscriptions: BTreeMap::new(),
        subscribed: false,
        authenticated: false,
        heartbeat_counter: 0,
        opened,
    };
    let mut beats = tokio::time::interval(HEARTBEAT_EVERY);
    beats.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let frames = tokio::select! {
            message = socket.next() => {
                let text = match ws::read(&mut socket, message).await {
                    ws::Read::Text(text) => text,
                    ws::Read::Skip => continue,
                    ws::Read::Gone => return,
                };
                let was_authenticated = session.authenticated;
                let (replies, signature_ok) = answer(&state, &mut session, &text);
                let record = ws::message_record(PATH, &headers, text, signature_ok, Some(was_authenticated));
                state.record(record);
                replies
            }
            () = tokio::time::sleep_until(opened + SUBSCRIBE_WITHIN), if !session.subscribed => {
                let frame = CloseFrame {
                    code: CloseCode::Policy,
                    reason: "no subscribe within 5 seconds".into(),
                };
                let _ = socket.close(Some(frame)).await;
                let _ = socket.get_mut().shutdown().await;
                return;
            }
            _ = beats.tick(), if session.subscriptions.contains_key("heartbeats") => {
                vec![heartbeat(&mut session)]
            }
            event = events.recv() => {
                match event {
                    Ok(event) => deliveries(&mut session, &event).into_iter().collect(),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        };
        for frame in frames {
            if socket.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
        }
    }
}

/// One `heartbeats` message: the time as Coinbase's servers print it (Go's time
/// with its monotonic reading) and the count of heartbeats sent so far.
fn heartbeat(session: &mut Session) -> Value {
    session.heartbeat_counter += 1;
    let now = time::OffsetDateTime::now_utc();
    let current_time = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09} +0000 UTC m=+{:.9}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond(),
        session.opened.elapsed().as_secs_f64()
    );
    let counter = session.heartbeat_counter;
    session.message(
        "heartbeats",
        json!([{"current_time": current_time, "heartbeat_counter": counter}]),
    )
}

/// The `user` message a user-channel event (`{"type", "orders"}`) becomes on this
/// connection: its orders of the subscribed products, none without a user
/// subscription or when no order is left.
fn deliveries(session: &mut Session, event: &Value) -> Option<Value> {
    let products = session.subscriptions.get("user")?;
    let orders: Vec<Value> = event["orders"]
        .as_array()?
        .iter()
        .filter(|order| covers(products, order))
        .cloned()
        .collect();
    if orders.is_empty() {
        return None;
    }
    let kind = event["type"].clone();
    Some(session.message("user", json!([{"type": kind, "orders": orders}])))
}

/// Whether a subscription to `products` covers `order`.
fn covers(products: &Products, order: &Value) -> bool {
    products.as_ref().is_none_or(|products| {
        order["product_id"]
            .as_str()
            .is_some_and(|id| products.contains(id))
    })
}

fn error(message: &str) -> Value {
    json!({"type": "error", "message": message})
}

/// The frames answering one message, and whether its JWT verified (`None` for a
/// message without one).
fn answer(state: &State, session: &mut Session, frame: &str) -> (Vec<Value>, Option<bool>) {
    let Ok(request @ Value::Object(_)) = serde_json::from_str::<Value>(frame) else {
        return (vec![error("malformed message: not a JSON object")], None);
    };
    let verdict = request.get("jwt").map(|jwt| match jwt.as_str() {
        Some(jwt) => coinbase::verify_jwt(state, jwt).map(|_| ()),
        None => Err("the jwt is not a string".to_owned()),
    });
    let signature_ok = verdict.as_ref().map(Result::is_ok);
    let kind = request["type"].as_str().unwrap_or_default();
    if kind != "subscribe" && kind != "unsubscribe" {
        let message = format!("unknown message type {}", request["type"]);
        return (vec![error(&message)], signature_ok);
    }
    let channel = request["channel"].as_str().unwrap_or_default();
    let Some(&(_, needs_jwt)) = CHANNELS.iter().find(|(name, _)| *name == channel) else {
        let message = format!(
            "Failure to subscribe: unknown channel {}",
            request["channel"]
        );
        return (vec![error(&message)], signature_ok);
    };
    // A JWT that fails is refused whatever the channel; a channel that needs one
    // refuses a message without.
    match &verdict {
        Some(Err(_)) => return (vec![error("authentication failure")], signature_ok),
        None if needs_jwt => return (vec![error("authentication failure")], signature_ok),
        _ => {}
    }
    let products: Option<BTreeSet<String>> = match request.get("product_ids") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) if ids.is_empty() => None,
        Some(Value::Array(ids)) => {
            let named: Option<BTreeSet<String>> = ids
                .iter()
                .map(|id| id.as_str().map(str::to_owned))
                .collect();
            let Some(named) = named else {
                return (vec![error("product_ids must be strings")], signature_ok);
            };
            Some(named)
        }
        Some(_) => return (vec![error("product_ids must be a list")], signature_ok),
    };
    let mut replies = Vec::new();
    if kind == "subscribe" {
        subscribe(session, channel, products.clone());
        session.subscribed = true;
        if needs_jwt {
            session.authenticated = true;
        }
        match channel {
            "user" => {
                let snapshot = snapshot(state, &products);
                replies.push(session.message("user", json!([snapshot])));
            }
            "futures_balance_summary" => {
                let summary = json!({"type": "snapshot", "fcm_balance_summary": futures_balance()});
                replies.push(session.message("futures_balance_summary", json!([summary])));
            }
            _ => {}
        }
    } else {
        unsubscribe(session, channel, products.as_ref());
    }
    replies.push(session.acknowledgement());
    (replies, signature_ok)
}

/// Adds `products` (every product when `None`) to the connection's `channel`.
fn subscribe(session: &mut Session, channel: &str, products: Products) {
    let held = session
        .subscriptions
        .entry(channel.to_owned())
        .or_insert_with(|| Some(BTreeSet::new()));
    match (held.as_mut(), products) {
        (Some(held), Some(products)) => held.extend(products),
        (Some(_), None) => *held = None,
        (None, _) => {}
    }
}

/// Takes `products` off the connection's `channel`, or the channel entirely when
/// the message names none (Coinbase: "unsubscribe from a channel entirely by
/// providing no product IDs").
fn unsubscribe(session: &mut Session, channel: &str, products: Option<&BTreeSet<String>>) {
    let Some(products) = products else {
        session.subscriptions.remove(channel);
        return;
    };
    if let Some(Some(held)) = session.subscriptions.get_mut(channel) {
        held.retain(|id| !products.contains(id));
        if held.is_empty() {
            session.subscriptions.remove(channel);
        }
    }
}

/// The user channel's first event: the open orders of `products` (every product
/// when `None`) and the account's futures positions (none).
fn snapshot(state: &State, products: &Products) -> Value {
    let orders: Vec<Value> = state
        .open_orders
        .lock()
        .expect("orders")
        .iter()
        .filter(|order| coinbase::is_coinbase(order))
        .map(|order| coinbase::user_order(order, "OPEN"))
        .filter(|order| covers(products, order))
        .collect();
    json!({"type": "snapshot", "orders": orders,
           "positions": {"perpetual_futures_positions": [], "expiring_futures_positions": []}})
}

/// The futures balance summary of an account without futures.
fn futures_balance() -> Value {
    let window = json!({"margin_window_type": "FCM_MARGIN_WINDOW_TYPE_INTRADAY",
                        "margin_level": "MARGIN_LEVEL_TYPE_BASE", "initial_margin": "0",
                        "maintenance_margin": "0", "liquidation_buffer_percentage": "0",
                        "total_hold": "0", "futures_buying_power": "0"});
    json!({
        "futures_buying_power": "0", "total_usd_balance": "0", "cbi_usd_balance": "0",
        "cfm_usd_balance": "0", "total_open_orders_hold_amount": "0", "unrealized_pnl": "0",
        "daily_realized_pnl": "0", "initial_margin": "0", "available_margin": "0",
        "liquidation_threshold": "0", "liquidation_buffer_amount": "0",
        "liquidation_buffer_percentage": "0", "intraday_margin_window_measure": window,
        "overnight_margin_window_measure": window
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            sequence: 0,
            subscriptions: BTreeMap::new(),
            subscribed: false,
            authenticated: false,
            heartbeat_counter: 0,
            opened: Instant::now(),
        }
    }

    fn ids(list: &[&str]) -> Products {
        Some(list.iter().map(|id| (*id).to_owned()).collect())
    }

    #[test]
    fn subscriptions_add_and_remove_products() {
        let mut s = session();
        subscribe(&mut s, "user", ids(&["BTC-USD"]));
        subscribe(&mut s, "user", ids(&["ETH-USD"]));
        assert_eq!(s.subscriptions["user"], ids(&["BTC-USD", "ETH-USD"]));
        unsubscribe(&mut s, "user", ids(&["BTC-USD"]).as_ref());
        assert_eq!(s.subscriptions["user"], ids(&["ETH-USD"]));
        unsubscribe(&mut s, "user", ids(&["ETH-USD"]).as_ref());
        assert!(s.subscriptions.is_empty());
        // Every product, then no product named: the channel goes.
        subscribe(&mut s, "user", ids(&["BTC-USD"]));
        subscribe(&mut s, "user", None);
        assert_eq!(s.subscriptions["user"], None);
        unsubscribe(&mut s, "user", None);
        assert!(s.subscriptions.is_empty());
    }

    #[test]
    fn events_are_narrowed_to_the_subscribed_products() {
        let mut s = session();
        let event = json!({"type": "update", "orders": [
            {"order_id": "a", "product_id": "BTC-USD"},
            {"order_id": "b", "product_id": "ETH-USD"},
        ]});
        assert_eq!(deliveries(&mut s, &event), None);
        subscribe(&mut s, "user", ids(&["ETH-USD"]));
        let message = deliveries(&mut s, &event).expect("a user message");
        assert_eq!(message["channel"], "user");
        assert_eq!(message["sequence_num"], 0);
        assert_eq!(message["events"][0]["type"], "update");
        assert_eq!(
            message["events"][0]["orders"],
            json!([{"order_id": "b", "product_id": "ETH-USD"}])
        );
        let other =
            json!({"type": "update", "orders": [{"order_id": "a", "product_id": "BTC-USD"}]});
        assert_eq!(deliveries(&mut s, &other), None);
        subscribe(&mut s, "user", None);
        let all = deliveries(&mut s, &event).expect("a user message");
        assert_eq!(all["sequence_num"], 1);
        assert_eq!(all["events"][0]["orders"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn the_acknowledgement_lists_every_subscription() {
        let mut s = session();
        subscribe(&mut s, "user", ids(&["BTC-USD"]));
        subscribe(&mut s, "heartbeats", None);
        let ack = s.acknowledgement();
        assert_eq!(ack["channel"], "subscriptions");
        assert_eq!(ack["client_id"], "");
        assert_eq!(
            ack["events"],
            json!([{"subscriptions": {"heartbeats": [], "user": ["BTC-USD"]}}])
        );
    }

    #[test]
    fn only_upgrades_of_the_root_are_coinbases() {
        let request = |path: &str, upgrade: Option<&str>| Recorded {
            method: "GET".to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: upgrade
                .map(|u| vec![("upgrade".to_owned(), u.to_owned())])
                .unwrap_or_default(),
            body: String::new(),
            signature_ok: None,
            authenticated: None,
        };
        assert!(is_upgrade(&request("/", Some("websocket"))));
        assert!(is_upgrade(&request("/", Some("WebSocket"))));
        assert!(!is_upgrade(&request("/", None)));
        assert!(!is_upgrade(&request("/", Some("h2c"))));
        assert!(!is_upgrade(&request("/ws", Some("websocket"))));
    }
}
