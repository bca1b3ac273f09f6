//! Public market-data WebSockets through keyward, without a token: Binance spot's
//! `/ws` (and a stream named in its path, as ccxt opens `/ws/0`), Bybit's
//! `/v5/public/spot` and OKX's `/ws/v5/public` are relayed for the account that
//! serves market data. A subscription reaches the venue as the bot wrote it and its
//! data comes back; a message that asks for anything but market data (an order, a
//! login) is refused in the venue's shape with keyward's reason and never reaches
//! the venue; keyward's connection carries no key. ccxt.pro's `watch_ticker` works
//! changing only its URLs.

use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::run_client;
use keyward_tests::venues::VenueFixture;
use keyward_tests::ws_client::WsClient;
use keyward_tests::{FixturePolicy, Serving};
use serde_json::{Value, json};

/// The frames the mock's market-data streams received, with the upgrades: none
/// carries a key, a token or a login.
fn relayed(records: &[Recorded], path_prefix: &str) -> Vec<String> {
    let mine: Vec<&Recorded> = records
        .iter()
        .filter(|r| r.path.starts_with(path_prefix))
        .collect();
    for record in &mine {
        let everything = record.everything();
        assert!(
            !everything.contains("kw_") && !everything.to_lowercase().contains("apikey"),
            "a credential on a market-data stream: {record:?}"
        );
        assert!(
            !record
                .headers
                .iter()
                .any(|(name, _)| name.contains("key") && name != "sec-websocket-key"),
            "a key header on a market-data stream: {record:?}"
        );
    }
    mine.iter()
        .filter(|r| r.method == "WS")
        .map(|r| r.body.clone())
        .collect()
}

/// The audit's records of market-data messages.
fn market_records(keyward: &Keyward) -> usize {
    keyward
        .audit()
        .iter()
        .filter(|r| r["event"] == "request" && r["reason"] == "market_data")
        .count()
}

/// A Coinbase keyward whose user WebSocket goes to `mock` and market data to
/// `market`.
async fn coinbase_with_market_host(
    mock: &Mock,
    market: &Mock,
) -> (Keyward, keyward_tests::TempDir) {
    Keyward::serve_with_market_host(FixturePolicy::Venue(VenueFixture::Coinbase), mock, market)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_market_data_is_relayed_without_a_token() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve_streaming(FixturePolicy::P0, &mock, "").await;
    let mut socket = keyward.websocket("/ws").await;
    let subscribed = socket
        .request(&json!({"method": "SUBSCRIBE", "params": ["btcusdt@ticker"], "id": 1}))
        .await;
    assert_eq!(subscribed, json!({"result": null, "id": 1}));
    let ticker = socket.event(|f| f["e"] == "24hrTicker").await;
    assert_eq!(ticker["s"], "BTCUSDT");
    let listed = socket
        .request(&json!({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        .await;
    assert_eq!(listed["result"], json!(["btcusdt@ticker"]));

    // Anything but market data is refused here, in Binance's shape, and never sent.
    for (id, message) in [
        (
            3,
            json!({"method": "order.place", "params": {"symbol": "BTCUSDT"}, "id": 3}),
        ),
        (
            4,
            json!({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 4, "apiKey": "x"}),
        ),
        (
            5,
            json!({"method": "SUBSCRIBE", "params": ["btc usdt"], "id": 5}),
        ),
    ] {
        let refused = socket.request(&message).await;
        assert_eq!(refused["id"], id, "{refused}");
        assert!(
            refused["error"]["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("keyward: ")),
            "{refused}"
        );
    }
    let frames = relayed(&mock.records(), "/ws");
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames[0].contains("SUBSCRIBE") && frames[1].contains("LIST_SUBSCRIPTIONS"));
    assert_eq!(market_records(&keyward), 2);

    // ccxt opens `/ws/0` and subscribes by message; keyward opens the same path.
    let mut named = keyward.websocket("/ws/0").await;
    let trade = named
        .request(&json!({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 7}))
        .await;
    assert_eq!(trade["id"], 7);
    assert!(
        mock.records()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/ws/0"),
        "keyward opened the stream the bot named"
    );
    // A path that names no stream is no market-data stream.
    assert!(
        WsClient::try_connect(
            keyward.running.bot_addr,
            &keyward.running.ca_path,
            "/ws/a b",
            &[]
        )
        .await
        .is_err()
    );
}

/// Binance spot disconnects a market-data connection that sends it more than 5
/// messages a second (pongs included), and bans an address it keeps
/// disconnecting: keyward's, which every bot shares. Seven subscriptions at once
/// on one connection: four reach the exchange, three are refused
/// `exchange_limit_near` in Binance's shape; a second later there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_market_data_stays_under_the_venues_message_rate() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve_streaming(FixturePolicy::P0, &mock, "").await;
    let mut socket = keyward.websocket("/ws").await;
    let subscribe = |id: u64| json!({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": id});
    for id in 1..=7 {
        socket.send_text(&subscribe(id).to_string()).await;
    }
    // Refusals come at once, the exchange's answers after them.
    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < 7 {
        let frame = socket
            .next_json()
            .await
            .expect("an answer to each subscription");
        if let Some(id) = frame.get("id").and_then(Value::as_u64) {
            answered.insert(id, frame);
        }
    }
    let refused: Vec<String> = answered
        .values()
        .filter(|answer| answer.get("error").is_some())
        .map(|answer| {
            answer["error"]["msg"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|m| m.starts_with("keyward: exchange_limit_near")),
        "{refused:?}"
    );
    assert_eq!(relayed(&mock.records(), "/ws").len(), 4);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let again = socket.request(&subscribe(8)).await;
    assert_eq!(again, json!({"result": null, "id": 8}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bybit_and_okx_market_data_is_relayed_and_logins_are_not() {
    let mock = Mock::start().await;
    let bybit =
        Keyward::serve_streaming(FixturePolicy::Venue(VenueFixture::Bybit), &mock, "").await;
    let mut socket = bybit.websocket("/v5/public/spot").await;
    let acked = socket
        .exchange(
            &json!({"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "s1"}),
            |f| f["op"] == "subscribe",
        )
        .await;
    assert_eq!(acked["success"], true, "{acked}");
    let data = socket.wait_for(|f| f["topic"] == "tickers.BTCUSDT").await;
    assert_eq!(data["data"]["lastPrice"], "60000");
    let refused = socket
        .exchange(
            &json!({"op": "auth", "args": ["key", "1", "sign"], "req_id": "a1"}),
            |f| f["req_id"] == "a1",
        )
        .await;
    assert_eq!(refused["success"], false, "{refused}");
    assert!(
        refused["ret_msg"]
            .as_str()
            .is_some_and(|m| m.contains("stream_method_unknown")),
        "{refused}"
    );
    let frames = relayed(&mock.take_records(), "/v5/public");
    assert_eq!(frames.len(), 1, "{frames:?}");

    let okx = Keyward::serve_streaming(FixturePolicy::Venue(VenueFixture::Okx), &mock, "").await;
    let mut socket = okx.websocket("/ws/v5/public").await;
    let arg = json!({"channel": "tickers", "instId": "BTC-USDT"});
    let acked = socket
        .exchange(&json!({"op": "subscribe", "args": [arg]}), |f| {
            f["event"] == "subscribe"
        })
        .await;
    assert_eq!(acked["arg"], arg);
    let push = socket.wait_for(|f| f["data"].is_array()).await;
    assert_eq!(push["data"][0]["last"], "60000");
    socket.send_text("ping").await;
    assert_eq!(socket.wait_for(|f| f == "pong").await, "pong");
    let refused = socket
        .exchange(
            &json!({"op": "login", "args": [{"apiKey": "k", "passphrase": "p", "timestamp": "1", "sign": "s"}]}),
            |f| f["event"] == "error",
        )
        .await;
    assert!(
        refused["msg"]
            .as_str()
            .is_some_and(|m| m.contains("stream_method_unknown")),
        "{refused}"
    );
    let frames = relayed(&mock.records(), "/ws/v5/public");
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames.iter().all(|f| !f.contains("login")), "{frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccxt_watches_a_binance_ticker_through_keyward() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve_streaming(FixturePolicy::P0, &mock, "").await;
    let args = keyward.scenario_args("ccxt-ticker", "/ws", &["unused-key", "unused-secret"]);
    let out: Value = run_client("binance_ws_clients.py", args, Vec::new()).await;
    assert_eq!(out["symbol"], "BTC/USDT", "{out}");
    assert_eq!(out["last"], 60000.0, "{out}");
    assert_eq!(out["event"], "24hrMiniTicker", "{out}");
    let frames = relayed(&mock.records(), "/ws");
    assert!(
        frames.iter().any(|f| f.contains("btcusdt@miniTicker")),
        "{frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_data_goes_to_the_market_upstream_of_an_account_with_its_own_api() {
    // An account on its own REST upstream (a testnet) has no WebSockets of its
    // own until told where; `market_upstream` alone opens its market data.
    let mock = Mock::start().await;
    let mut serving = Serving::against(&mock);
    serving.account_extra = format!("market_upstream = \"wss://127.0.0.1:{}\"", mock.addr.port());
    let keyward = Keyward::serve(FixturePolicy::P0, serving).await;
    let mut market = keyward.websocket("/ws").await;
    let subscribed = market
        .request(&json!({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
        .await;
    assert_eq!(subscribed, json!({"result": null, "id": 1}));
    let mut private = keyward.websocket("/ws-api/v3").await;
    let refused = private
        .request(
            &json!({"id": 2, "method": "account.status", "params": {"apiKey": keyward.tokens.bot}}),
        )
        .await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert!(
        refused["error"]["msg"]
            .as_str()
            .is_some_and(|m| m.contains("path_not_allowed")),
        "{refused}"
    );
    assert!(
        !mock.records().iter().any(|r| r.path == "/ws-api/v3"),
        "the account's key went to a WebSocket host it was not given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbases_market_data_is_relayed_at_the_root_from_its_market_host() {
    // Coinbase's market data is at `/` on a host of its own, the user WebSocket's
    // path: a subscription without a JWT to a public channel goes there.
    let (mock, market) = (Mock::start().await, Mock::start().await);
    let (keyward, _cas) = coinbase_with_market_host(&mock, &market).await;
    let mut socket = keyward.websocket("/").await;
    socket
        .send_text(r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"ticker"}"#)
        .await;
    let ticker = socket.wait_for(|f| f["channel"] == "ticker").await;
    assert_eq!(
        ticker["events"][0]["tickers"][0]["price"], "60000",
        "{ticker}"
    );
    let acked = socket.wait_for(|f| f["channel"] == "subscriptions").await;
    assert_eq!(
        acked["events"][0]["subscriptions"]["ticker"],
        json!(["BTC-USD"])
    );
    // A public channel with a JWT is read as the user WebSocket's, which has no
    // such channel: refused, and sent nowhere.
    socket
        .send_text(
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"ticker","jwt":"e.y.j"}"#,
        )
        .await;
    let refused = socket.wait_for(|f| f["type"] == "error").await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("keyward")),
        "{refused}"
    );
    let relayed = relayed(&market.records(), "/");
    assert_eq!(relayed.len(), 1, "{relayed:?}");
    assert!(
        !mock.records().iter().any(|r| r.method == "WS"),
        "a market-data subscription reached the user WebSocket's host"
    );
}

/// OKX takes 3 WebSocket connections a second from one address, and every link of
/// keyward, for every bot and every relayed client, leaves from one; clients no
/// bot is bound to get half of it (one a second here). Three tokenless clients
/// subscribing at once: one link opens and is relayed, two are refused
/// `exchange_limit_near` in OKX's shape and open nothing at the exchange; a bot's
/// link in the same second still opens; after the second has passed, the refused
/// clients get theirs, one a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_to_a_venue_stay_under_its_connections_per_address() {
    let mock = Mock::start().await;
    let okx = Keyward::serve_streaming(FixturePolicy::Venue(VenueFixture::Okx), &mock, "").await;
    let subscribe =
        json!({"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]});
    let answered = |f: &Value| f["event"] == "subscribe" || f["event"] == "error";
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(okx.websocket("/ws/v5/public").await);
    }
    // Sent before any answer is read, so the links are asked for within the same
    // second however slow the machine.
    for socket in &mut sockets {
        socket.send_text(&subscribe.to_string()).await;
    }
    let mut refused = Vec::new();
    for (n, socket) in sockets.iter_mut().enumerate() {
        let answer = socket.wait_for(answered).await;
        if answer["event"] == "error" {
            assert!(
                answer["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("exchange_limit_near")),
                "{answer}"
            );
            refused.push(n);
        }
    }
    assert_eq!(refused.len(), 2);
    let upgrades = |mock: &Mock, path: &str| {
        mock.records()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with(path))
            .count()
    };
    assert_eq!(
        upgrades(&mock, "/ws/v5/public"),
        1,
        "links opened at the exchange"
    );
    assert_eq!(relayed(&mock.records(), "/ws/v5/public").len(), 1);

    // Bot B, which reads.
    let mut private = okx.websocket("/ws/v5/private").await;
    let login = json!({"op": "login", "args": [{
        "apiKey": okx.tokens.bot_b, "passphrase": "p", "timestamp": "1", "sign": "s"
    }]});
    let logged_in = private.exchange(&login, |f| f["event"].is_string()).await;
    assert_eq!(logged_in["event"], "login", "{logged_in}");
    let orders =
        json!({"id": "o1", "op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]});
    let subscribed = private.exchange(&orders, |f| f["id"] == "o1").await;
    assert_eq!(subscribed["event"], "subscribe", "{subscribed}");
    assert_eq!(upgrades(&mock, "/ws/v5/private"), 1);

    for n in refused {
        tokio::time::sleep(std::time::Duration::from_millis(1_050)).await;
        sockets[n].send_text(&subscribe.to_string()).await;
        let answer = sockets[n].wait_for(answered).await;
        assert_eq!(answer["event"], "subscribe", "{answer}");
    }
    assert_eq!(upgrades(&mock, "/ws/v5/public"), 3);
}

/// Coinbase counts unauthenticated WebSocket messages per address: 8 a second.
/// Nine market-data subscriptions at once over three connections: eight reach
/// Coinbase's market host, one is refused `exchange_limit_near` in Coinbase's
/// shape and is not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_messages_stay_under_the_venues_rate_per_address() {
    let (mock, market) = (Mock::start().await, Mock::start().await);
    let (keyward, _cas) = coinbase_with_market_host(&mock, &market).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(keyward.websocket("/").await);
    }
    let subscribe = r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"ticker"}"#;
    for _ in 0..3 {
        for socket in &mut sockets {
            socket.send_text(subscribe).await;
        }
    }
    let mut refusals = Vec::new();
    for socket in &mut sockets {
        // Each connection's three answers: acknowledgements or refusals.
        let mut answers = 0;
        while answers < 3 {
            let frame = socket.next_json().await.expect("an answer");
            if frame["type"] == "error" {
                refusals.push(frame);
                answers += 1;
            } else if frame["channel"] == "subscriptions" {
                answers += 1;
            }
        }
    }
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exchange_limit_near")),
        "{refusals:?}"
    );
    assert_eq!(relayed(&market.records(), "/").len(), 8);
}
