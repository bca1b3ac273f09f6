//! Bybit's private WebSockets through keyward: the bot's `auth` binds its token and
//! is answered by keyward, keyward logs in on its own link with the real key (the
//! mock verifies it), each order operation is decided as its REST twin with the
//! same JSON body, a refused one is answered in Bybit's shape and never reaches the
//! exchange, events are narrowed to the elements of the bot's own symbols, and pybit
//! and ccxt.pro stream and trade through keyward changing only URLs, key and CA.

use keyward_tests::FixturePolicy;
use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::{assert_refused, run_client};
use keyward_tests::venues::VenueFixture;
use keyward_tests::venues::bybit::CANARY_API_KEY;
use keyward_tests::ws_client::{WsClient, now_ms};
use serde_json::{Value, json};

async fn start(mock: &Mock) -> Keyward {
    start_with(mock, "").await
}

/// keyward with `bot_extra` in bot A's policy, its Bybit WebSockets going to `mock`.
async fn start_with(mock: &Mock, bot_extra: &str) -> Keyward {
    Keyward::serve_streaming(FixturePolicy::Venue(VenueFixture::Bybit), mock, bot_extra).await
}

async fn connect(keyward: &Keyward, path: &str) -> WsClient {
    keyward.websocket(path).await
}

/// The bot's `auth`, as its client sends it: the token where the key goes, and an
/// expiry and signature of its own that keyward discards.
async fn auth(socket: &mut WsClient, token: &str) -> Value {
    socket
        .exchange(
            &json!({"op": "auth", "args": [token, now_ms() + 10_000, "bots-own-signature"]}),
            |frame| frame["op"] == "auth",
        )
        .await
}

/// Sends an order operation with `reqId` = `id`; its answer.
async fn operate(socket: &mut WsClient, id: &str, op: &str, args: Value) -> Value {
    let request = json!({
        "reqId": id,
        "header": {"X-BAPI-TIMESTAMP": now_ms().to_string(), "X-BAPI-RECV-WINDOW": "8000"},
        "op": op,
        "args": [args],
    });
    socket
        .exchange(&request, |frame| frame["reqId"] == id)
        .await
}

fn limit_buy(symbol: &str, qty: &str) -> Value {
    json!({"category": "spot", "symbol": symbol, "side": "Buy", "orderType": "Limit", "qty": qty, "price": "60000"})
}

/// The WebSocket messages the mock received. Each is keyward's: its login carries
/// the account's key with a signature that verified, every other message arrived
/// on a connection logged in that way, and no keyward token ever reached the mock.
fn messages(records: &[Recorded]) -> Vec<&Recorded> {
    let messages: Vec<&Recorded> = records.iter().filter(|r| r.method == "WS").collect();
    for message in &messages {
        assert!(
            !message.body.contains("kw_"),
            "a keyward token reached the exchange"
        );
        assert!(
            !message.body.contains("bots-own"),
            "the bot's signature reached the exchange"
        );
        let request: Value = serde_json::from_str(&message.body).unwrap_or_default();
        if request["op"] == "auth" {
            assert_eq!(message.signature_ok, Some(true), "{message:?}");
            assert!(
                request["args"][0] == CANARY_API_KEY,
                "not the account's key"
            );
        } else {
            assert_eq!(message.authenticated, Some(true), "{message:?}");
        }
    }
    messages
}

fn ops(records: &[Recorded]) -> Vec<String> {
    messages(records)
        .iter()
        .filter_map(|m| m.ws_method())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_entry_is_decided_per_operation_on_a_link_keyward_logged_in() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = keyward.tokens.bot.clone();
    let mut socket = connect(&keyward, "/v5/trade").await;

    // keyward answers the bot's auth itself: nothing reaches the exchange yet.
    let authed = auth(&mut socket, &token).await;
    assert_eq!(authed["retCode"], 0, "{authed}");
    let pong = socket
        .exchange(&json!({"op": "ping"}), |f| f["op"] == "pong")
        .await;
    assert_eq!(pong["retCode"], 0, "{pong}");
    assert!(mock.records().is_empty(), "{:?}", mock.records());

    // A pair bot A may not trade, and an order over its notional limit: Bybit's
    // error for that reqId with keyward's reason, the connection up, the mock
    // untouched (no link is even opened for a refusal).
    let refused = operate(
        &mut socket,
        "r1",
        "order.create",
        limit_buy("ETHUSDT", "0.001"),
    )
    .await;
    assert_eq!(refused["retCode"], 10029, "{refused}");
    assert_eq!(refused["op"], "order.create", "{refused}");
    assert!(
        refused["retMsg"]
            .as_str()
            .is_some_and(|m| m.contains("symbol_not_allowed")),
        "{refused}"
    );
    let too_big = operate(
        &mut socket,
        "r2",
        "order.create",
        limit_buy("BTCUSDT", "0.01"),
    )
    .await;
    assert!(
        too_big["retMsg"]
            .as_str()
            .is_some_and(|m| m.contains("notional_exceeds_limit")),
        "{too_big}"
    );
    let smuggled = socket
        .exchange(
            &json!({"reqId": "r3", "op": "order.create", "args": [limit_buy("BTCUSDT", "0.001"), limit_buy("BTCUSDT", "0.001")]}),
            |f| f["reqId"] == "r3",
        )
        .await;
    assert_ne!(smuggled["retCode"], 0, "{smuggled}");
    assert!(mock.records().is_empty(), "{:?}", mock.records());

    // An allowed order: keyward logs in on its own link with the real key, then
    // sends the operation with the body its REST twin validated.
    let placed = operate(
        &mut socket,
        "r4",
        "order.create",
        limit_buy("BTCUSDT", "0.001"),
    )
    .await;
    assert_eq!(placed["retCode"], 0, "{placed}");
    let order_id = placed["data"]["orderId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!order_id.is_empty(), "{placed}");
    let cancelled = operate(
        &mut socket,
        "r5",
        "order.cancel",
        json!({"category": "spot", "symbol": "BTCUSDT", "orderId": order_id}),
    )
    .await;
    assert_eq!(cancelled["retCode"], 0, "{cancelled}");
    // An order keyward did not place for this bot is not the bot's to cancel.
    let foreign = operate(
        &mut socket,
        "r6",
        "order.cancel",
        json!({"category": "spot", "symbol": "BTCUSDT", "orderId": "999999"}),
    )
    .await;
    assert_ne!(foreign["retCode"], 0, "{foreign}");

    let records = mock.take_records();
    assert_eq!(ops(&records), ["auth", "order.create", "order.cancel"]);
    let create = messages(&records)
        .into_iter()
        .find(|m| m.ws_method().as_deref() == Some("order.create"))
        .map(|m| serde_json::from_str::<Value>(&m.body).unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(create["args"][0]["symbol"], "BTCUSDT", "{create}");
    assert_eq!(
        create["header"]["X-BAPI-RECV-WINDOW"], "5000",
        "keyward's window: {create}"
    );

    // One request record per decided operation, one outcome per forwarded one.
    let audit = keyward.audit();
    let decided: Vec<&Value> = audit
        .iter()
        .filter(|r| r["event"] == "request" && r["http"] == "ws")
        .collect();
    let methods: Vec<&str> = decided
        .iter()
        .filter_map(|r| r["stream_method"].as_str())
        .collect();
    for wanted in ["auth", "order.create", "order.cancel"] {
        assert!(methods.contains(&wanted), "{wanted} not in {methods:?}");
    }
    let forwarded = decided
        .iter()
        .filter(|r| r["decision"] == "allow" && r["reason"].is_null())
        .count();
    let outcomes = audit.iter().filter(|r| r["event"] == "outcome").count();
    assert_eq!(forwarded, 2, "{decided:?}");
    assert_eq!(outcomes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bybit_bot_sees_only_its_own_elements_of_each_event() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = connect(&keyward, "/v5/private").await;
    let authed = auth(&mut socket, &keyward.tokens.bot).await;
    assert_eq!(authed["success"], true, "{authed}");

    // A topic keyward does not relay is refused by name; the connection stays.
    let refused = socket
        .exchange(
            &json!({"req_id": "s0", "op": "subscribe", "args": ["greeks"]}),
            |f| f["req_id"] == "s0",
        )
        .await;
    assert_eq!(refused["success"], false, "{refused}");

    let subscribed = socket
        .exchange(
            &json!({"req_id": "s1", "op": "subscribe", "args": ["order", "wallet"]}),
            |f| f["req_id"] == "s1",
        )
        .await;
    assert_eq!(subscribed["success"], true, "{subscribed}");
    assert_eq!(ops(&mock.take_records()), ["auth", "subscribe"]);

    // One event naming three orders: bot A trades spot BTCUSDT only, so it sees the
    // two elements of that symbol and not the other.
    let element = |category: &str, symbol: &str, id: &str, status: &str| json!({"category": category, "symbol": symbol, "orderId": id, "orderStatus": status});
    mock.bybit_event(
        "order",
        vec![
            element("spot", "BTCUSDT", "1", "New"),
            element("linear", "BTCUSDT", "2", "New"),
            element("spot", "BTCUSDT", "3", "Filled"),
        ],
    );
    let seen = socket.wait_for(|f| f["topic"] == "order").await;
    let ids: Vec<&str> = seen["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["orderId"].as_str())
        .collect();
    assert_eq!(ids, ["1", "3"], "{seen}");

    // An event of other symbols only is withheld whole: the wallet event after it
    // is the next thing the bot gets.
    mock.bybit_event("order", vec![element("spot", "ETHUSDT", "4", "New")]);
    mock.bybit_event(
        "wallet",
        vec![json!({"accountType": "UNIFIED", "coin": []})],
    );
    let next = socket.wait_for(|f| f.get("topic").is_some()).await;
    assert_eq!(next["topic"], "wallet", "{next}");

    // Unsubscribing only stops events: sent without a decision, and recorded.
    let unsubscribed = socket
        .exchange(
            &json!({"req_id": "u1", "op": "unsubscribe", "args": ["order"]}),
            |f| f["req_id"] == "u1",
        )
        .await;
    assert_eq!(unsubscribed["success"], true, "{unsubscribed}");
    assert_eq!(ops(&mock.take_records()), ["unsubscribe"]);
    assert!(
        keyward
            .audit()
            .iter()
            .any(|r| r["reason"] == "stream_control"
                && r["stream_method"] == "unsubscribe"
                && r["bot"] == "a")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_event_closes_keywards_open_order_record_at_once() {
    let mock = Mock::start().await;
    let keyward = start_with(&mock, "max_open_orders = 1").await;
    let token = keyward.tokens.bot.clone();
    let mut stream = connect(&keyward, "/v5/private").await;
    auth(&mut stream, &token).await;
    let subscribed = stream
        .exchange(
            &json!({"req_id": "s", "op": "subscribe", "args": ["order"]}),
            |f| f["req_id"] == "s",
        )
        .await;
    assert_eq!(subscribed["success"], true, "{subscribed}");
    let mut trade = connect(&keyward, "/v5/trade").await;
    auth(&mut trade, &token).await;

    let first = operate(
        &mut trade,
        "o1",
        "order.create",
        limit_buy("BTCUSDT", "0.001"),
    )
    .await;
    assert_eq!(first["retCode"], 0, "{first}");
    // One order open is bot A's limit.
    let second = operate(
        &mut trade,
        "o2",
        "order.create",
        limit_buy("BTCUSDT", "0.001"),
    )
    .await;
    assert!(
        second["retMsg"]
            .as_str()
            .is_some_and(|m| m.contains("max_open_orders_exceeded")),
        "{second}"
    );

    // The exchange fills it; its Filled event reaches the bot, and keyward's record
    // has learnt of it on the way: the next order is within the limit again, with
    // no order read at the exchange.
    mock.take_records();
    mock.fill_all();
    let filled = stream
        .wait_for(|f| f["topic"] == "order" && f["data"][0]["orderStatus"] == "Filled")
        .await;
    assert_eq!(
        filled["data"][0]["orderId"], first["data"]["orderId"],
        "{filled}"
    );
    let third = operate(
        &mut trade,
        "o3",
        "order.create",
        limit_buy("BTCUSDT", "0.001"),
    )
    .await;
    assert_eq!(third["retCode"], 0, "{third}");
    let reads: Vec<Recorded> = mock
        .take_records()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(reads.is_empty(), "{reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_exchange_refuses_sends_nothing_and_spends_nothing() {
    let mock = Mock::start().await;
    let keyward = start_with(&mock, "max_orders = \"1/d\"").await;
    // The exchange's clock runs a minute ahead of keyward's: the expiry of
    // keyward's login (ten seconds ahead) is in its past, so it refuses the login.
    mock.set_clock_skew_ms(60_000);
    let mut trade = connect(&keyward, "/v5/trade").await;
    auth(&mut trade, &keyward.tokens.bot).await;
    let refused = operate(
        &mut trade,
        "o1",
        "order.create",
        limit_buy("BTCUSDT", "0.001"),
    )
    .await;
    assert_ne!(refused["retCode"], 0, "{refused}");
    assert!(
        refused["retMsg"]
            .as_str()
            .is_some_and(|m| m.contains("upstream_login_refused")),
        "{refused}"
    );
    let sent = ops(&mock.take_records());
    assert_eq!(sent, ["auth"], "only the login was sent");

    // Nothing of the order was sent, so the day's one order is still there.
    mock.set_clock_skew_ms(0);
    let placed = operate(
        &mut trade,
        "o2",
        "order.create",
        limit_buy("BTCUSDT", "0.001"),
    )
    .await;
    assert_eq!(placed["retCode"], 0, "{placed}");
}

/// Runs a client scenario of `bybit_ws_clients.py` through keyward as bot B.
async fn scenario(keyward: &Keyward, name: &'static str) -> Value {
    // The bot's secret: anything, keyward discards the bot's signatures.
    let args = keyward.scenario_args(
        name,
        "",
        &[&keyward.tokens.bot_b, "not-the-exchange-secret"],
    );
    run_client("bybit_ws_clients.py", args, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pybit_and_ccxt_stream_and_trade_on_bybit_through_keyward() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;

    // pybit: the private stream and WebSocketTrading, a limit order, its New event,
    // the cancel, its Cancelled event.
    let out = scenario(&keyward, "pybit-orders").await;
    assert_eq!(out["placed"]["retCode"], 0, "{out}");
    assert_eq!(out["new_event"]["orderStatus"], "New", "{out}");
    assert_eq!(out["cancel"]["retCode"], 0, "{out}");
    assert_eq!(out["cancelled_event"]["orderStatus"], "Cancelled", "{out}");
    let sent = ops(&mock.take_records());
    for wanted in ["auth", "subscribe", "order.create", "order.cancel"] {
        assert!(sent.iter().any(|m| m == wanted), "{wanted} not in {sent:?}");
    }

    // pybit: an order on a pair bot B may not trade, handed to the error callback
    // with keyward's reason; not one message of it at the exchange.
    let out = scenario(&keyward, "pybit-refused").await;
    assert_eq!(out["refused"]["answer"], "error", "{out}");
    assert!(
        out["refused"]["retMsg"]
            .as_str()
            .is_some_and(|m| m.contains("symbol_not_allowed")),
        "{out}"
    );
    assert!(ops(&mock.take_records()).is_empty());

    // ccxt.pro: watch_orders, create_order_ws, cancel_order_ws with their events.
    let out = scenario(&keyward, "ccxt-orders").await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(out["cancel"]["id"], id, "{out}");
    assert_eq!(out["new_event"]["id"], id, "{out}");
    assert_eq!(out["new_event"]["status"], "open", "{out}");
    assert_eq!(out["canceled_event"]["status"], "canceled", "{out}");
    let _ = ops(&mock.take_records());

    let out = scenario(&keyward, "ccxt-refused").await;
    assert_refused(
        "ccxt.pro",
        "an order on a pair the bot may not trade",
        &out["refused"],
        &["PermissionDenied"],
        "symbol_not_allowed",
    );
    let sent = ops(&mock.take_records());
    assert!(!sent.iter().any(|m| m == "order.create"), "{sent:?}");
}

/// A connection no bot is bound to never has keyward log in with the account's key:
/// a tokenless client's `unsubscribe` on the private path is answered, and whatever
/// keyward sent the exchange for it went on a link without a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenless_connection_never_gets_a_logged_in_link() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut private = connect(&keyward, "/v5/private").await;
    let answer = private
        .exchange(
            &json!({"req_id": "u1", "op": "unsubscribe", "args": ["order"]}),
            |frame| frame["op"] == "unsubscribe" || frame["req_id"] == "u1",
        )
        .await;
    assert!(answer.is_object(), "{answer}");
    let logins: Vec<String> = mock
        .records()
        .iter()
        .filter(|r| r.method == "WS" && r.ws_method().as_deref() == Some("auth"))
        .map(Recorded::everything)
        .collect();
    assert!(logins.is_empty(), "{logins:?}");
}
