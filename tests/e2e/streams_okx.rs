//! OKX's private WebSocket through keyward: the bot's `login` binds its token and
//! is answered by keyward, keyward logs in on its own link with the real key and
//! passphrase (the mock verifies them), each order operation is decided as its REST
//! twin with the same body (an instrument named by `instIdCode` decided by its id,
//! and sent by code), a refused one is answered in OKX's shape and never reaches the
//! exchange, pushes are narrowed to the bot's instruments, and python-okx and
//! ccxt.pro stream and trade through keyward changing only URLs, key and CA.

use keyward_tests::FixturePolicy;
use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::{assert_refused, run_client};
use keyward_tests::venues::VenueFixture;
use keyward_tests::venues::okx::API_KEY;
use keyward_tests::ws_client::WsClient;
use serde_json::{Value, json};

async fn start(mock: &Mock) -> Keyward {
    start_with(mock, "").await
}

/// keyward with `bot_extra` in bot A's policy, its OKX WebSocket going to `mock`.
async fn start_with(mock: &Mock, bot_extra: &str) -> Keyward {
    Keyward::serve_streaming(FixturePolicy::Venue(VenueFixture::Okx), mock, bot_extra).await
}

async fn connect(keyward: &Keyward) -> WsClient {
    keyward.websocket("/ws/v5/private").await
}

/// The bot's `login`, as its client sends it: the token where the key goes, and a
/// passphrase, time and sign of its own that keyward discards.
async fn login(socket: &mut WsClient, token: &str) -> Value {
    let login = json!({"op": "login", "args": [{
        "apiKey": token, "passphrase": "bots-own-passphrase", "timestamp": "1", "sign": "bots-own-sign"
    }]});
    socket
        .exchange(&login, |f| {
            matches!(f["event"].as_str(), Some("login" | "error"))
        })
        .await
}

async fn operate(socket: &mut WsClient, id: &str, op: &str, args: Value) -> Value {
    socket
        .exchange(&json!({"id": id, "op": op, "args": args}), |f| {
            f["id"] == id
        })
        .await
}

fn limit_buy(instrument: Value, size: &str) -> Value {
    let mut order =
        json!({"tdMode": "cash", "side": "buy", "ordType": "limit", "sz": size, "px": "60000"});
    match instrument {
        Value::Number(code) => order["instIdCode"] = Value::Number(code),
        id => order["instId"] = id,
    }
    order
}

/// The WebSocket messages the mock received, each keyward's: the login with the
/// account's key and a sign that verified, everything else on a connection logged in
/// that way, no keyward token and nothing of the bot's own login.
fn messages(records: &[Recorded]) -> Vec<&Recorded> {
    let messages: Vec<&Recorded> = records.iter().filter(|r| r.method == "WS").collect();
    for message in &messages {
        assert!(
            !message.body.contains("kw_"),
            "a keyward token reached the exchange"
        );
        assert!(
            !message.body.contains("bots-own"),
            "the bot's login reached the exchange"
        );
        let request: Value = serde_json::from_str(&message.body).unwrap_or_default();
        if request["op"] == "login" {
            assert_eq!(message.signature_ok, Some(true), "{message:?}");
            assert!(
                request["args"][0]["apiKey"] == API_KEY,
                "not the account's key"
            );
        } else if message.body != "ping" {
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
async fn okx_orders_are_decided_by_instrument_id_and_sent_by_code() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = connect(&keyward).await;

    let logged_in = login(&mut socket, &keyward.tokens.bot).await;
    assert_eq!(logged_in["event"], "login", "{logged_in}");
    assert_eq!(logged_in["code"], "0", "{logged_in}");
    socket.send_text("ping").await;
    let pong = socket.wait_for(|f| f == "pong").await;
    assert_eq!(pong, "pong");
    assert!(mock.records().is_empty(), "{:?}", mock.records());

    // ETH-USDT is not bot A's, whether named by id or by the code OKX lists for it
    // (100002): OKX's error for that id with keyward's reason, nothing sent.
    for (id, instrument) in [("r1", json!("ETH-USDT")), ("r2", json!(100_002))] {
        let refused = operate(
            &mut socket,
            id,
            "order",
            json!([limit_buy(instrument, "0.001")]),
        )
        .await;
        assert_eq!(refused["code"], "50027", "{refused}");
        assert!(
            refused["msg"]
                .as_str()
                .is_some_and(|m| m.contains("symbol_not_allowed")),
            "{refused}"
        );
    }
    // A code OKX does not list, and two names for one instrument, are refused too.
    let unknown = operate(
        &mut socket,
        "r3",
        "order",
        json!([limit_buy(json!(7), "0.001")]),
    )
    .await;
    assert!(
        unknown["msg"]
            .as_str()
            .is_some_and(|m| m.contains("instIdCode")),
        "{unknown}"
    );
    let mut both = limit_buy(json!("BTC-USDT"), "0.001");
    both["instIdCode"] = json!(100_001);
    let ambiguous = operate(&mut socket, "r4", "order", json!([both])).await;
    assert_ne!(ambiguous["code"], "0", "{ambiguous}");
    let orders: Vec<String> = ops(&mock.take_records())
        .into_iter()
        .filter(|op| op != "login")
        .collect();
    assert!(orders.is_empty(), "{orders:?}");

    // BTC-USDT named by its code: decided as BTC-USDT, sent by code.
    let placed = operate(
        &mut socket,
        "p1",
        "order",
        json!([limit_buy(json!(100_001), "0.001")]),
    )
    .await;
    assert_eq!(placed["code"], "0", "{placed}");
    let order_id = placed["data"][0]["ordId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!order_id.is_empty(), "{placed}");
    let cancelled = operate(
        &mut socket,
        "c1",
        "cancel-order",
        json!([{"instId": "BTC-USDT", "ordId": order_id}]),
    )
    .await;
    assert_eq!(cancelled["code"], "0", "{cancelled}");
    let records = mock.take_records();
    assert_eq!(ops(&records), ["login", "order", "cancel-order"]);
    for message in messages(&records).into_iter().skip(1) {
        let sent: Value = serde_json::from_str(&message.body).unwrap_or_default();
        assert_eq!(sent["args"][0]["instIdCode"], 100_001, "{sent}");
        assert!(sent["args"][0].get("instId").is_none(), "{sent}");
    }

    // Every decided operation has its record, every forwarded one its outcome.
    let audit = keyward.audit();
    let forwarded = audit
        .iter()
        .filter(|r| r["event"] == "request" && r["http"] == "ws")
        .filter(|r| r["decision"] == "allow" && r["reason"].is_null())
        .count();
    let outcomes = audit.iter().filter(|r| r["event"] == "outcome").count();
    assert_eq!(forwarded, 2);
    assert_eq!(outcomes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_okx_bot_sees_only_its_own_instruments_in_each_push() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = connect(&keyward).await;
    // Bot B reads, and trades BTC-USDT and ETH-USDT.
    login(&mut socket, &keyward.tokens.bot_b).await;
    let refused = socket
        .exchange(
            &json!({"id": "s0", "op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]}),
            |f| f["id"] == "s0",
        )
        .await;
    assert_eq!(refused["event"], "error", "{refused}");
    let subscribed = socket
        .exchange(
            &json!({"id": "s1", "op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]}),
            |f| f["id"] == "s1",
        )
        .await;
    assert_eq!(subscribed["event"], "subscribe", "{subscribed}");
    assert_eq!(subscribed["arg"]["channel"], "orders", "{subscribed}");

    let order =
        |instrument: &str, id: &str| json!({"instId": instrument, "ordId": id, "state": "live"});
    mock.okx_push(
        "orders",
        vec![
            order("BTC-USDT", "1"),
            order("SOL-USDT", "2"),
            order("ETH-USDT", "3"),
        ],
    );
    let push = socket.wait_for(|f| f["arg"]["channel"] == "orders").await;
    let ids: Vec<&str> = push["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["ordId"].as_str())
        .collect();
    assert_eq!(ids, ["1", "3"], "{push}");
    let unsubscribed = socket
        .exchange(
            &json!({"id": "u1", "op": "unsubscribe", "args": [{"channel": "orders", "instType": "SPOT"}]}),
            |f| f["id"] == "u1",
        )
        .await;
    assert_eq!(unsubscribed["event"], "unsubscribe", "{unsubscribed}");
    assert_eq!(
        ops(&mock.take_records()),
        ["login", "subscribe", "unsubscribe"]
    );
}

/// Runs a client scenario of `okx_ws_clients.py` through keyward as `token`'s bot.
async fn scenario(keyward: &Keyward, name: &'static str, token: &str) -> Value {
    // The bot's secret and passphrase: anything, keyward logs in itself.
    let args = keyward.scenario_args(
        name,
        "",
        &[token, "not-the-exchange-secret", "not-the-passphrase"],
    );
    run_client("okx_ws_clients.py", args, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_okx_and_ccxt_stream_and_trade_on_okx_through_keyward() {
    let mock = Mock::start().await;
    // Bot A reads and trades by class too (ccxt loads OKX's currencies, a private
    // read, and places orders as batch-orders); it still trades BTC-USDT only.
    let keyward = start_with(&mock, "allow = [\"read\", \"trade\"]").await;
    let bot_b = keyward.tokens.bot_b.clone();

    let out = scenario(&keyward, "python-okx-orders", &bot_b).await;
    assert_eq!(out["placed"]["code"], "0", "{out}");
    assert_eq!(out["live_push"]["state"], "live", "{out}");
    assert_eq!(out["cancel"]["code"], "0", "{out}");
    assert_eq!(out["canceled_push"]["state"], "canceled", "{out}");
    let sent = ops(&mock.take_records());
    for wanted in ["login", "subscribe", "order", "cancel-order"] {
        assert!(sent.iter().any(|m| m == wanted), "{wanted} not in {sent:?}");
    }

    // Bot A may not trade ETH-USDT: python-okx gets OKX's error with keyward's
    // reason, and the exchange nothing of it.
    let out = scenario(&keyward, "python-okx-refused", &keyward.tokens.bot).await;
    assert!(
        out["refused"]["msg"]
            .as_str()
            .is_some_and(|m| m.contains("symbol_not_allowed")),
        "{out}"
    );
    assert!(!ops(&mock.take_records()).iter().any(|op| op == "order"));

    let out = scenario(&keyward, "ccxt-orders", &bot_b).await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(out["new_event"]["id"], id, "{out}");
    assert_eq!(out["canceled_event"]["status"], "canceled", "{out}");
    let _ = ops(&mock.take_records());

    let out = scenario(&keyward, "ccxt-refused", &keyward.tokens.bot).await;
    assert_refused(
        "ccxt.pro",
        "an order on an instrument the bot may not trade",
        &out["refused"],
        &["ExchangeError"],
        "symbol_not_allowed",
    );
    assert!(
        !ops(&mock.take_records())
            .iter()
            .any(|op| op.contains("order"))
    );
}
