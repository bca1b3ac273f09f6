//! WebSockets through keyward: each bot message is decided as its REST twin, a
//! refused one is answered with the venue's WebSocket error (keyward's reason in its
//! message) and never reaches the exchange, the connection stays up, and every
//! message has its audit record. Handshakes keyward cannot accept are refused like
//! any request, a token in the URL without ever being recorded.

use std::time::Duration;

use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::{assert_refused, run_client};
use keyward_tests::ws_client::{WsClient, raw_upgrade, upgrade_head};
use keyward_tests::{FixturePolicy, Serving, canary};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// keyward serving `policy`, its spot account's WebSockets going to `mock`.
async fn start_as(policy: FixturePolicy, mock: &Mock) -> Keyward {
    let mut serving = Serving::against(mock);
    serving.account_extra = format!("stream_upstream = \"wss://127.0.0.1:{}\"", mock.addr.port());
    Keyward::serve(policy, serving).await
}

async fn start(mock: &Mock) -> Keyward {
    start_as(FixturePolicy::P0, mock).await
}

async fn socket(keyward: &Keyward) -> WsClient {
    WsClient::connect(
        keyward.running.bot_addr,
        &keyward.running.ca_path,
        "/ws-api/v3",
        &[],
    )
    .await
}

/// The head of keyward's answer to `request` (exact bytes).
async fn raw_upgrade_head(keyward: &Keyward, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = keyward.client.connect(&[b"http/1.1"]).await;
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Subscribes the connection to the user data stream as the bot of `token`; the
/// reply, a success.
async fn subscribe(socket: &mut WsClient, token: &str) -> Value {
    let subscribed = socket
        .request(&serde_json::json!({
            "id": "sub",
            "method": "userDataStream.subscribe.signature",
            "params": {"apiKey": token, "timestamp": 1, "signature": "bots-own"},
        }))
        .await;
    assert_eq!(subscribed["status"], 200, "{subscribed}");
    subscribed
}

/// The next message from keyward, as JSON (panics if none comes).
async fn next(socket: &mut WsClient) -> Value {
    socket.next_json().await.expect("a message from keyward")
}

fn order(id: &str, token: &str, symbol: &str) -> String {
    format!(
        r#"{{"id":"{id}","method":"order.place","params":{{"apiKey":"{token}","symbol":"{symbol}","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.001","price":"60000","timestamp":1,"signature":"bots-own"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_are_answered_in_the_venues_error_and_never_reach_the_exchange() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = keyward.tokens.bot.clone();
    let mut socket = socket(&keyward).await;

    // A pair the bot may not trade: Binance's error for that id, keyward's reason.
    socket.send_text(&order("o1", &token, "BNBUSDT")).await;
    let refused = next(&mut socket).await;
    assert_eq!(refused["id"], "o1", "{refused}");
    assert_eq!(refused["status"], 403, "{refused}");
    let message = refused["error"]["msg"].as_str().unwrap_or_default();
    assert!(message.contains("BNBUSDT"), "{refused}");

    // The connection stays up for the next ones, each refused by name.
    let cases = [
        (
            r#"{"id":2,"method":"withdraw.apply","params":{}}"#,
            "withdraw.apply",
        ),
        (
            r#"{"id":3,"method":"order.place","params":{"symbol":"BTCUSDT","symbol":"ETHUSDT"}}"#,
            "more than once",
        ),
        (
            r#"{"id":4,"method":"order.place","params":{"symbol":["BTCUSDT"]}}"#,
            "strings, numbers or booleans",
        ),
        ("not json", "one JSON object"),
    ];
    for (text, expected) in cases {
        socket.send_text(text).await;
        let reply = next(&mut socket).await;
        let shown = reply["error"]["msg"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(shown.contains(expected), "{text} -> {reply}");
        // The refusal answers the id the client waits on, wherever it can be told.
        let sent: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        assert_eq!(reply["id"], sent["id"], "{text} -> {reply}");
        assert!(
            reply["status"].as_u64().is_some_and(|s| s >= 400),
            "{reply}"
        );
    }
    socket.send_frame(Message::binary(vec![1_u8, 2, 3])).await;
    let reply = next(&mut socket).await;
    assert!(
        reply["error"]["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("binary"),
        "{reply}"
    );

    // A second bot's token on the same connection is refused: one bot per connection.
    socket
        .send_text(&order("o2", &keyward.tokens.bot_b, "BTCUSDT"))
        .await;
    let reply = next(&mut socket).await;
    assert_eq!(reply["id"], "o2");
    assert!(
        reply["status"].as_u64().is_some_and(|s| s >= 400),
        "{reply}"
    );

    // Nothing reached the exchange, not even a connection.
    assert!(mock.records().is_empty(), "{:?}", mock.records());

    // Each message has its audit record, marked as a WebSocket message.
    let audit = keyward.audit();
    let opened = audit
        .iter()
        .filter(|r| r["reason"] == "stream_opened" && r["status"] == 101)
        .count();
    assert_eq!(opened, 1, "{audit:?}");
    let messages: Vec<_> = audit
        .iter()
        .filter(|r| r["http"] == "ws" && r["event"] == "request")
        .collect();
    assert_eq!(messages.len(), 7, "{audit:?}");
    assert!(messages.iter().all(|r| r["decision"] == "deny"));
    let first = messages[0];
    assert_eq!(first["stream_method"], "order.place");
    assert_eq!(first["path"], "/api/v3/order");
    assert_eq!(first["reason"], "symbol_not_allowed");
    let text = std::fs::read_to_string(keyward.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(!text.contains(&token), "a token reached the audit log");
    assert!(!text.contains(canary::SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_keyward_cannot_accept_are_refused_and_a_token_in_the_url_is_never_recorded() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let port = keyward.port();
    let token = keyward.tokens.bot.clone();
    let with_token = format!(
        "{}\r\n",
        upgrade_head(&format!("/ws-api/v3?apiKey={token}"), port)
    );
    let wrong_version = format!(
        "{}\r\n",
        upgrade_head("/ws-api/v3", port).replace("Version: 13", "Version: 8")
    );
    let with_body = format!(
        "{}Content-Length: 2\r\n\r\n{{}}",
        upgrade_head("/ws-api/v3", port)
    );
    // Not a WebSocket path of any venue: an upgrade there is a tunnel, refused as ever.
    let rest_path = format!("{}\r\n", upgrade_head("/api/v3/account", port));
    // USDⓈ-M's path, which no account of this configuration serves.
    let unserved = format!("{}\r\n", upgrade_head("/ws-fapi/v1", port));
    for (head, status) in [
        (with_token, "400"),
        (wrong_version, "400"),
        (with_body, "400"),
        (rest_path, "400"),
        (unserved, "403"),
    ] {
        let answer = raw_upgrade(&keyward.client, &head).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{head} -> {answer}"
        );
    }
    assert!(mock.records().is_empty());
    let text = std::fs::read_to_string(keyward.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(
        !text.contains(&token),
        "the token in the URL reached the audit log"
    );
    let reasons: Vec<String> = keyward
        .audit()
        .into_iter()
        .filter(|r| r["decision"] == "deny")
        .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        reasons,
        [
            "token_in_query",
            "websocket_handshake_invalid",
            "websocket_handshake_invalid",
            "upgrade_not_supported",
            "path_not_allowed"
        ]
    );
}

/// A WebSocket bound to the bot of `token` by its `session.logon`.
async fn logged_on(keyward: &Keyward, token: &str) -> WsClient {
    let mut socket = socket(keyward).await;
    socket
        .send_text(&keyward_tests::ws_client::binance_logon(1, token).to_string())
        .await;
    let logon = next(&mut socket).await;
    assert_eq!(logon["status"], 200, "{logon}");
    socket
}

/// Replaces the first `from` in keyward's configuration with `to`, and reloads.
fn reload_with(keyward: &Keyward, from: &str, to: &str) {
    let text = std::fs::read_to_string(&keyward.config).expect("config");
    let changed = text.replacen(from, to, 1);
    assert_ne!(text, changed, "{from}");
    std::fs::write(&keyward.config, changed).expect("config");
    keyward.running.app.reload("signal").expect("reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_of_a_revoked_token_is_closed() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    // session.logon binds the connection to bot B; keyward answers it itself.
    let mut socket = logged_on(&keyward, &keyward.tokens.bot_b).await;
    // Bot B's token is replaced and keyward reloads: the connection closes.
    reload_with(
        &keyward,
        &keyward_tests::digest(&keyward.tokens.bot_b),
        &keyward_tests::digest(&keyward_tests::token("b", "next")),
    );
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1008));
    assert!(mock.records().is_empty());
}

/// Wrong tokens in stream logons count against their source as on REST
/// (`auth_failure_rate`, 20 in 10 s by default): past it they are answered 429
/// `auth_throttled`, and a right token still binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_in_stream_logons_are_throttled_like_rest() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = socket(&keyward).await;
    let wrong = keyward_tests::token("nobody", "guess");
    let mut statuses = Vec::new();
    for id in 1..=22 {
        let answer = socket
            .request(&keyward_tests::ws_client::binance_logon(id, &wrong))
            .await;
        statuses.push(answer["status"].as_u64().unwrap_or_default());
    }
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429, 429], "{statuses:?}");
    let right = socket
        .request(&keyward_tests::ws_client::binance_logon(
            23,
            &keyward.tokens.bot,
        ))
        .await;
    assert_eq!(right["status"], 200, "{right}");
    assert!(mock.records().is_empty());
}

/// A reload closes a bot's open connections only when it changes what the bot
/// reaches (its account, symbols, granted endpoints), which its subscriptions were
/// decided under; one that leaves the bot as it was keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_narrows_a_bots_policy_closes_its_connections() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = logged_on(&keyward, &keyward.tokens.bot).await;
    // Bot B's grants change, bot A's do not: A's connection stays.
    reload_with(
        &keyward,
        r#"endpoints = ["GET /api/v3/account"]"#,
        r#"endpoints = ["GET /api/v3/account", "GET /api/v3/openOrders"]"#,
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    socket
        .send_text(r#"{"id":2,"method":"session.status"}"#)
        .await;
    assert_eq!(next(&mut socket).await["status"], 200);
    // Bot A loses ETHUSDT: its connection closes, and its client reconnects.
    reload_with(
        &keyward,
        r#"symbols = ["BTCUSDT", "ETHUSDT"]"#,
        r#"symbols = ["BTCUSDT"]"#,
    );
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1008));
    assert!(mock.records().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_keyward_cannot_read_close_the_connection_with_their_own_code() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = keyward.tokens.bot.clone();

    // A message in three fragments is one message, decided as any other.
    let mut socket = socket(&keyward).await;
    let text = order("f1", &token, "BNBUSDT");
    let (first, rest) = text.split_at(10);
    let (second, third) = rest.split_at(10);
    for (part, opcode, last) in [
        (first, OpCode::Data(Data::Text), false),
        (second, OpCode::Data(Data::Continue), false),
        (third, OpCode::Data(Data::Continue), true),
    ] {
        let frame = Frame::message(part.as_bytes().to_vec(), opcode, last);
        socket.send_frame(Message::Frame(frame)).await;
    }
    let reply = next(&mut socket).await;
    assert_eq!(reply["id"], "f1", "{reply}");
    assert_eq!(reply["status"], 403, "{reply}");

    // Over 64 KiB: 1009.
    let padding = "x".repeat(70 * 1024);
    socket
        .send_text(&format!(
            r#"{{"id":1,"method":"time","params":{{"pad":"{padding}"}}}}"#
        ))
        .await;
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1009));

    // Text that is not UTF-8: 1007.
    let mut socket = self::socket(&keyward).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    socket.send_frame(Message::Frame(frame)).await;
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1007));

    // A ping flood: 1008.
    let mut socket = self::socket(&keyward).await;
    // Thirty pings at once, well over the 20 a second keyward allows.
    for _ in 0..30 {
        socket.send_frame(Message::Ping(Vec::new().into())).await;
    }
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1008));

    // Compression offered by the client is not taken: no message can grow after its
    // size was checked.
    let head = format!(
        "{}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        upgrade_head("/ws-api/v3", keyward.port())
    );
    // The answer is the 101's head, then nothing until keyward closes the idle
    // connection; the head is what matters.
    let answer = raw_upgrade_head(&keyward, &head).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        !answer
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{answer}"
    );

    assert!(mock.records().is_empty());
}

/// Runs a client scenario of `binance_ws_clients.py` through keyward as bot A.
async fn scenario(
    keyward: &Keyward,
    name: &'static str,
    env: Vec<(&'static str, String)>,
) -> Value {
    // The bot's secret: anything, keyward discards the bot's signatures.
    let args = keyward.scenario_args(
        name,
        "/ws-api/v3",
        &[&keyward.tokens.bot, "not-the-exchange-secret"],
    );
    let env = env.into_iter().map(|(k, v)| (k, v.into())).collect();
    run_client("binance_ws_clients.py", args, env).await
}

/// The WebSocket messages the mock received, each verified with the real key.
fn messages(records: &[Recorded]) -> Vec<&Recorded> {
    let messages: Vec<&Recorded> = records.iter().filter(|r| r.method == "WS").collect();
    for message in &messages {
        let method = message.ws_method().unwrap_or_default();
        // An unsubscribe carries no credentials (Binance takes none for it).
        if method != "userDataStream.unsubscribe" {
            assert_eq!(message.signature_ok, Some(true), "{message:?}");
            // The real key, compared and never printed; the bot's token never.
            let key = message.params().get("apiKey").cloned();
            assert!(
                key.as_deref() == Some(canary::API_KEY),
                "{method}: not the account's key"
            );
        }
        assert!(!message.body.contains("not-the-exchange-secret"));
        assert!(
            !message.body.contains("kw_"),
            "a keyward token reached the exchange"
        );
    }
    messages
}

fn methods(records: &[Recorded]) -> Vec<String> {
    messages(records)
        .iter()
        .filter_map(|m| m.ws_method())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_stream_and_trade_through_keyward() {
    let mock = Mock::start().await;
    let keyward = start_as(FixturePolicy::Clients, &mock).await;

    // ccxt.pro: watch_orders, a limit order over the WebSocket API, its NEW event, the
    // cancel and its CANCELED event, all through keyward.
    let out = scenario(&keyward, "ccxt-orders", Vec::new()).await;
    assert_eq!(out["placed"]["status"], "open", "{out}");
    assert_eq!(out["new_event"]["X"], "NEW", "{out}");
    assert_eq!(out["canceled_event"]["X"], "CANCELED", "{out}");
    assert_eq!(out["new_event"]["id"], out["placed"]["id"], "{out}");
    assert_eq!(out["cancel_status"], "canceled", "{out}");
    let records = mock.take_records();
    let sent = methods(&records);
    for wanted in [
        "userDataStream.subscribe.signature",
        "order.place",
        "order.cancel",
    ] {
        assert!(sent.iter().any(|m| m == wanted), "{wanted} not in {sent:?}");
    }
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // ccxt.pro: watch_balance sees the balance change after a market buy.
    let out = scenario(&keyward, "ccxt-balance", Vec::new()).await;
    assert_eq!(out["order"]["status"], "closed", "{out}");
    assert_eq!(out["event"], "outboundAccountPosition", "{out}");
    let _ = messages(&mock.take_records());

    // ccxt.pro: an order on a pair bot A may not trade: keyward's reason in the
    // client's exception, and not one message of it at the exchange.
    let out = scenario(
        &keyward,
        "ccxt-refused",
        vec![("KEYWARD_REFUSED_SYMBOL", "DMG/USDT".to_owned())],
    )
    .await;
    assert_refused(
        "ccxt.pro",
        "an order on a pair the bot may not trade",
        &out["refused"],
        &["ExchangeError"],
        "symbol_not_allowed",
    );
    let records = mock.take_records();
    let placed: Vec<&Recorded> = messages(&records)
        .into_iter()
        .filter(|m| m.ws_method().as_deref() == Some("order.place"))
        .collect();
    assert!(placed.is_empty(), "{placed:?}");

    // binance-sdk-spot's WebSocket API: subscribe by signature, place, cancel, with
    // the events of both.
    let out = scenario(&keyward, "sdk-orders", Vec::new()).await;
    assert_eq!(out["placed"]["status"], "NEW", "{out}");
    assert_eq!(out["cancel_status"], "CANCELED", "{out}");
    for (event, x) in [("new_event", "NEW"), ("canceled_event", "CANCELED")] {
        assert_eq!(out[event]["x"], x, "{out}");
        assert_eq!(out[event]["s"], "BTCUSDT", "{out}");
    }
    let _ = messages(&mock.take_records());

    // Every message decided has its request record, and every forwarded one its
    // outcome.
    let audit = keyward.audit();
    let forwarded: Vec<&Value> = audit
        .iter()
        .filter(|r| r["event"] == "request" && r["http"] == "ws" && r["decision"] == "allow")
        .filter(|r| r["reason"].is_null())
        .collect();
    assert!(!forwarded.is_empty());
    for request in &forwarded {
        let outcomes = audit
            .iter()
            .filter(|r| r["event"] == "outcome" && r["request_id"] == request["request_id"])
            .count();
        assert_eq!(outcomes, 1, "{request}");
    }
    let text = std::fs::read_to_string(keyward.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(!text.contains(&keyward.tokens.bot));
    assert!(!text.contains(canary::SECRET) && !text.contains(canary::API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_applies_to_open_connections_and_one_bot_holds_at_most_eight() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = keyward.tokens.bot.clone();
    let mut socket = socket(&keyward).await;

    // An allowed order reaches the exchange, signed with the real key.
    socket.send_text(&order("before", &token, "BTCUSDT")).await;
    let placed = next(&mut socket).await;
    assert_eq!(placed["status"], 200, "{placed}");
    let order_id = placed["result"]["orderId"].clone();
    let _ = messages(&mock.take_records());

    // Frozen while connected: the next order is refused on the open connection, the
    // cancel of the open one still goes out.
    let config = keyward.config.display().to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        keyward_tests::run_cli(
            &["--config", &config, "freeze", "--json"],
            keyward_tests::fixed_now(),
        )
    })
    .await
    .expect("freeze");
    assert_eq!(code, 0, "{out}{err}");
    socket.send_text(&order("after", &token, "BTCUSDT")).await;
    let refused = next(&mut socket).await;
    assert_eq!(refused["id"], "after");
    assert_eq!(refused["status"], 503, "{refused}");
    assert!(
        refused["error"]["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("frozen"),
        "{refused}"
    );
    socket
        .send_text(&format!(
            r#"{{"id":"cancel","method":"order.cancel","params":{{"apiKey":"{token}","symbol":"BTCUSDT","orderId":{order_id},"timestamp":1,"signature":"x"}}}}"#
        ))
        .await;
    let cancelled = next(&mut socket).await;
    assert_eq!(cancelled["status"], 200, "{cancelled}");
    let sent: Vec<String> = messages(&mock.take_records())
        .iter()
        .filter_map(|m| m.ws_method())
        .collect();
    assert_eq!(
        sent,
        ["order.cancel"],
        "only the cancel reached the exchange"
    );

    // One bot, at most eight WebSockets: the ninth is refused when it logs on.
    let logon =
        serde_json::json!({"id": 1, "method": "session.logon", "params": {"apiKey": token}});
    let mut held = vec![socket];
    for _ in 0..7 {
        let mut another = self::socket(&keyward).await;
        assert_eq!(another.request(&logon).await["status"], 200);
        held.push(another);
    }
    let mut ninth = self::socket(&keyward).await;
    let refused = ninth.request(&logon).await;
    assert_eq!(refused["status"], 429, "{refused}");
    // One closes: the ninth may log on.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ninth.request(&logon).await["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_sees_the_events_of_its_own_symbols_only() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = keyward.tokens.bot.clone();
    let mut socket = socket(&keyward).await;
    let subscribed = subscribe(&mut socket, &token).await;
    assert!(
        subscribed["result"]["subscriptionId"].is_u64(),
        "{subscribed}"
    );
    let records = mock.take_records();
    let sent = messages(&records);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].ws_method().as_deref(),
        Some("userDataStream.subscribe.signature")
    );

    // Orders placed at the exchange by someone else: one on a pair bot A does not
    // trade, then one on its own. Only the second's report reaches it.
    mock.place_directly("DMGUSDT", "BUY");
    mock.place_directly("BTCUSDT", "BUY");
    let report = socket.event(|e| e["event"]["e"] == "executionReport").await;
    assert_eq!(report["event"]["s"], "BTCUSDT", "{report}");
    // Account-wide events reach a bot that may read.
    let balance = socket
        .event(|e| e["event"]["e"] == "outboundAccountPosition")
        .await;
    assert!(balance["event"]["B"].is_array(), "{balance}");

    // Unsubscribing needs no decision (it only stops events): it is sent, answered
    // and recorded as such.
    let unsubscribed = socket
        .request(&serde_json::json!({
            "id": "unsub",
            "method": "userDataStream.unsubscribe",
            "params": {"subscriptionId": subscribed["result"]["subscriptionId"]},
        }))
        .await;
    assert_eq!(unsubscribed["status"], 200, "{unsubscribed}");
    let records = mock.take_records();
    assert!(
        messages(&records)
            .iter()
            .any(|m| m.ws_method().as_deref() == Some("userDataStream.unsubscribe"))
    );
    let audit = keyward.audit();
    assert!(audit.iter().any(|r| r["reason"] == "stream_control"
        && r["stream_method"] == "userDataStream.unsubscribe"
        && r["bot"] == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_exchange_stream_closes_the_bots_connection_so_it_reconnects() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = keyward.tokens.bot.clone();
    let mut socket = socket(&keyward).await;
    socket.send_text(&order("first", &token, "BTCUSDT")).await;
    assert_eq!(next(&mut socket).await["status"], 200);

    // The exchange's side goes away: the bot's connection closes with 1013 (try
    // again later), and a new one trades again over a new link.
    mock.drop_websockets();
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1013));
    let mut again = self::socket(&keyward).await;
    again.send_text(&order("second", &token, "BTCUSDT")).await;
    assert_eq!(next(&mut again).await["status"], 200);
    let records = mock.take_records();
    let placed = messages(&records)
        .iter()
        .filter(|m| m.ws_method().as_deref() == Some("order.place"))
        .count();
    assert_eq!(placed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_keyward_closes_its_websockets_as_going_away() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = socket(&keyward).await;
    let status = socket
        .request(&serde_json::json!({"id": 1, "method": "session.status"}))
        .await;
    assert_eq!(status["status"], 200, "{status}");
    let Keyward {
        running, dir: _dir, ..
    } = keyward;
    let stopped = tokio::spawn(running.shutdown());
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1001));
    stopped.await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_does_not_read_its_events_is_disconnected() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = keyward.tokens.bot.clone();
    let mut socket = socket(&keyward).await;
    subscribe(&mut socket, &token).await;
    // Events without end, far more than every buffer between keyward and the bot
    // holds, while the bot reads nothing: keyward disconnects it (after five
    // seconds without room) rather than hold them. The bot starts reading only
    // well after that: reading earlier makes room, and a machine loaded by the
    // rest of the suite takes several seconds to fill the buffers (the socket's
    // alone hold megabytes).
    let mock = std::sync::Arc::new(mock);
    let producing = tokio::spawn({
        let mock = mock.clone();
        async move {
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(45) {
                for _ in 0..100 {
                    mock.place_directly("BTCUSDT", "BUY");
                }
                tokio::task::yield_now().await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(
        socket.closed_with(Duration::from_secs(30)).await,
        Some(1008)
    );
    producing.abort();
}
