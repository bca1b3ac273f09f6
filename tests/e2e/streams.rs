//! WebSockets through keyward: each bot message is decided as its REST twin, a
//! refused one is answered with the venue's WebSocket error (keyward's reason in its
//! message) and never reaches the exchange, the connection stays up, and every
//! message has its audit record. Handshakes keyward cannot accept are refused like
//! any request, a token in the URL without ever being recorded.

use std::time::Duration;

use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::wsclient::{self, BotSocket};
use keyward_tests::{FixturePolicy, canary};
use tokio_tungstenite::tungstenite::Message;

/// keyward serving P0, its account's WebSockets going to `mock`.
async fn start(mock: &Mock) -> Keyward {
    let mut serving = keyward_tests::Serving::against(mock);
    serving.account_extra = format!("stream_upstream = \"wss://127.0.0.1:{}\"", mock.addr.port());
    Keyward::serve(FixturePolicy::P0, serving).await
}

async fn socket(keyward: &Keyward) -> BotSocket {
    let head = format!(
        "{}\r\n",
        wsclient::upgrade_head("/ws-api/v3", keyward.port())
    );
    let (answer, socket) = wsclient::open(&keyward.client, &head).await;
    socket.unwrap_or_else(|| panic!("keyward refused the WebSocket: {answer}"))
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
    socket.send(&order("o1", &token, "BNBUSDT")).await;
    let refused = socket.next_json().await;
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
        socket.send(text).await;
        let reply = socket.next_json().await;
        let shown = reply["error"]["msg"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(shown.contains(expected), "{text} -> {reply}");
        assert!(
            reply["status"].as_u64().is_some_and(|s| s >= 400),
            "{reply}"
        );
    }
    socket.send_frame(Message::binary(vec![1_u8, 2, 3])).await;
    let reply = socket.next_json().await;
    assert!(
        reply["error"]["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("binary"),
        "{reply}"
    );

    // A second bot's token on the same connection is refused: one bot per connection.
    socket
        .send(&order("o2", &keyward.tokens.bot_b, "BTCUSDT"))
        .await;
    let reply = socket.next_json().await;
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
        wsclient::upgrade_head(&format!("/ws-api/v3?apiKey={token}"), port)
    );
    let wrong_version = format!(
        "{}\r\n",
        wsclient::upgrade_head("/ws-api/v3", port).replace("Version: 13", "Version: 8")
    );
    let with_body = format!(
        "{}Content-Length: 2\r\n\r\n{{}}",
        wsclient::upgrade_head("/ws-api/v3", port)
    );
    // Not a WebSocket path of any venue: an upgrade there is a tunnel, refused as ever.
    let rest_path = format!("{}\r\n", wsclient::upgrade_head("/api/v3/account", port));
    // USDⓈ-M's path, which no account of this configuration serves.
    let unserved = format!("{}\r\n", wsclient::upgrade_head("/ws-fapi/v1", port));
    for (head, status) in [
        (with_token, "400"),
        (wrong_version, "400"),
        (with_body, "400"),
        (rest_path, "400"),
        (unserved, "403"),
    ] {
        let (answer, socket) = wsclient::open(&keyward.client, &head).await;
        assert!(socket.is_none(), "{head}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_of_a_revoked_token_is_closed() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = socket(&keyward).await;
    // session.logon binds the connection to bot B; keyward answers it itself.
    socket
        .send(&format!(
            r#"{{"id":1,"method":"session.logon","params":{{"apiKey":"{}","timestamp":1,"signature":"x"}}}}"#,
            keyward.tokens.bot_b
        ))
        .await;
    let logon = socket.next_json().await;
    assert_eq!(logon["status"], 200, "{logon}");
    // Bot B's token is replaced and keyward reloads: the connection closes.
    let text = std::fs::read_to_string(&keyward.config).expect("config");
    let replaced = text.replace(
        &keyward_tests::digest(&keyward.tokens.bot_b),
        &keyward_tests::digest(&keyward_tests::token("b", "next")),
    );
    assert_ne!(text, replaced);
    std::fs::write(&keyward.config, replaced).expect("config");
    keyward.running.app.reload("signal").expect("reload");
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
    let reply = socket.next_json().await;
    assert_eq!(reply["id"], "f1", "{reply}");
    assert_eq!(reply["status"], 403, "{reply}");

    // Over 64 KiB: 1009.
    let padding = "x".repeat(70 * 1024);
    socket
        .send(&format!(
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
    for _ in 0..150 {
        socket.send_frame(Message::Ping(Vec::new().into())).await;
    }
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1008));

    // Compression offered by the client is not taken: no message can grow after its
    // size was checked.
    let head = format!(
        "{}Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        wsclient::upgrade_head("/ws-api/v3", keyward.port())
    );
    let (answer, socket) = wsclient::open(&keyward.client, &head).await;
    assert!(socket.is_some(), "{answer}");
    assert!(
        !answer
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{answer}"
    );

    assert!(mock.records().is_empty());
}
