//! Binance USDⓈ-M's user data stream through keyward: a bot asking for a listenKey
//! gets one keyward minted, bound to the bot and its token (the exchange is never
//! asked on its behalf, and its real key never reaches a bot); a stream opened with
//! keyward's key reads the account's real stream, keyward's link asking the
//! exchange for the real key with the account's API key, narrowed to the bot's
//! symbols; and ccxt.pro's binanceusdm `watch_orders` follows its orders through
//! keyward changing only URLs, key and CA.

use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::python::run_client;
use keyward_tests::ws_client::WsClient;
use keyward_tests::{FixturePolicy, canary};
use serde_json::Value;

async fn start(mock: &Mock) -> Keyward {
    Keyward::serve_streaming(FixturePolicy::Clients, mock, "").await
}

/// Sends `method /fapi/v1/listenKey` as bot `token`; the status and the body.
async fn listen_key(keyward: &Keyward, method: &str, token: &str) -> (u16, Value) {
    let headers = vec![
        ("Host".to_owned(), format!("localhost:{}", keyward.port())),
        ("X-MBX-APIKEY".to_owned(), token.to_owned()),
    ];
    let response = keyward
        .client
        .request(method, "/fapi/v1/listenKey", &headers, b"")
        .await;
    (
        response.status,
        serde_json::from_str(&response.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_gets_a_listen_key_of_keywards_and_the_exchange_is_never_asked() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let bot_b = keyward.tokens.bot_b.clone();

    let (status, created) = listen_key(&keyward, "POST", &bot_b).await;
    assert_eq!(status, 200, "{created}");
    let key = created["listenKey"].as_str().unwrap_or_default().to_owned();
    assert_eq!(key.len(), 64, "{created}");
    // The same key while it is valid, as Binance does; kept alive and closed.
    assert_eq!(
        listen_key(&keyward, "POST", &bot_b).await.1["listenKey"],
        key
    );
    assert_eq!(
        listen_key(&keyward, "PUT", &bot_b).await,
        (200, serde_json::json!({}))
    );
    assert_eq!(
        listen_key(&keyward, "DELETE", &bot_b).await,
        (200, serde_json::json!({}))
    );
    let (status, gone) = listen_key(&keyward, "PUT", &bot_b).await;
    assert_eq!(
        (status, gone["code"].as_i64()),
        (400, Some(-1125)),
        "{gone}"
    );
    let (_, renewed) = listen_key(&keyward, "POST", &bot_b).await;
    assert_ne!(renewed["listenKey"], key);

    // Bot A trades spot: the USDⓈ-M endpoint is not on its account's venue.
    let (status, refused) = listen_key(&keyward, "POST", &keyward.tokens.bot).await;
    assert!(status >= 400, "{refused}");

    // Not one of them reached the exchange, and each was recorded as answered.
    let asked: Vec<_> = mock
        .records()
        .into_iter()
        .filter(|r| r.path.contains("listenKey"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    let audit = keyward.audit();
    let answered: Vec<&Value> = audit
        .iter()
        .filter(|r| r["event"] == "request" && r["path"] == "/fapi/v1/listenKey")
        .filter(|r| r["decision"] == "allow" && r["bot"] == "b")
        .collect();
    assert_eq!(answered.len(), 6, "{answered:?}");
    for request in answered {
        let forwarded = audit
            .iter()
            .any(|r| r["event"] == "outcome" && r["request_id"] == request["request_id"]);
        assert!(!forwarded, "{request}");
    }
    let text = std::fs::read_to_string(keyward.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(!text.contains(&key), "a listenKey was recorded");
}

fn order_update(symbol: &str, id: u64, status: &str) -> Value {
    serde_json::json!({
        "e": "ORDER_TRADE_UPDATE", "E": 1, "T": 1,
        "o": {"s": symbol, "c": "x", "S": "BUY", "o": "LIMIT", "X": status, "i": id}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_with_keywards_key_reads_the_accounts_under_the_real_one() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let bot_b = keyward.tokens.bot_b.clone();
    let (_, created) = listen_key(&keyward, "POST", &bot_b).await;
    let key = created["listenKey"].as_str().unwrap_or_default().to_owned();

    // A key keyward did not mint is refused at the handshake.
    let forged = "Z".repeat(64);
    let refused = WsClient::try_connect(
        keyward.running.bot_addr,
        &keyward.running.ca_path,
        &format!("/private/ws?listenKey={forged}"),
        &[],
    )
    .await;
    assert!(refused.is_err(), "a forged listenKey opened a stream");

    for (first, path) in [
        (true, format!("/private/ws?listenKey={key}")),
        (false, format!("/ws/{key}")),
    ] {
        let mut socket = keyward.websocket(&path).await;
        // keyward asked the exchange for the account's key with the account's API
        // key, and reads the stream of that key, not of its own.
        // (once: the second stream reads the key keyward already holds). keyward
        // opens its link once the bot's stream is up: wait for it.
        let mut records = Vec::new();
        for _ in 0..100 {
            records.extend(mock.take_records());
            if records
                .iter()
                .any(|r| r.method == "GET" && r.query.contains("listenKey="))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let asked: Vec<_> = records
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/fapi/v1/listenKey")
            .collect();
        assert_eq!(asked.len(), usize::from(first), "{asked:?}");
        for request in asked {
            assert_eq!(request.header("x-mbx-apikey"), Some(canary::API_KEY));
        }
        let opened = records
            .iter()
            .find(|r| r.method == "GET" && r.query.contains("listenKey="))
            .expect("keyward opened the real stream");
        assert!(
            !opened.query.contains(&key),
            "keyward's key reached the exchange"
        );
        let real = opened.query.trim_start_matches("listenKey=").to_owned();

        // An update of a symbol bot B does not trade is withheld, its own passes.
        mock.futures_event(order_update("ETHUSDT", 1, "NEW"));
        mock.futures_event(order_update("BTCUSDT", 2, "NEW"));
        let update = socket.wait_for(|f| f["e"] == "ORDER_TRADE_UPDATE").await;
        assert_eq!(update["o"]["s"], "BTCUSDT", "{update}");
        assert!(!update.to_string().contains(&real));
        socket.close().await;
    }

    // Deleting the key ends its streams, as Binance does.
    let mut socket = keyward.websocket(&format!("/ws/{key}")).await;
    assert_eq!(listen_key(&keyward, "DELETE", &bot_b).await.0, 200);
    assert_eq!(
        socket.closed_with(std::time::Duration::from_secs(5)).await,
        Some(1008)
    );
    let text = std::fs::read_to_string(keyward.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(!text.contains(&key), "a listenKey was recorded");
}

/// Runs a scenario of binanceusdm_stream_clients.py through keyward as bot B.
async fn scenario(keyward: &Keyward, name: &'static str) -> Value {
    let args = keyward.scenario_args(
        name,
        "",
        &[&keyward.tokens.bot_b, "not-the-exchange-secret"],
    );
    run_client("binanceusdm_stream_clients.py", args, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccxt_binanceusdm_watches_its_orders_through_keyward() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let out = scenario(&keyward, "ccxt-orders").await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(out["new_event"]["id"], id, "{out}");
    assert_eq!(out["canceled_event"]["status"], "canceled", "{out}");
    // The listenKey ccxt got and used is keyward's: the exchange was asked once, by
    // keyward, for its own.
    let asked = mock
        .records()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/listenKey")
        .count();
    assert_eq!(asked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccxt_binanceusdm_watches_a_ticker_through_keyward_without_a_key() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let out = scenario(&keyward, "ccxt-ticker").await;
    assert_eq!(out["symbol"], "BTC/USDT:USDT", "{out}");
    assert_eq!(out["last"], 60000.0, "{out}");
    // ccxt rewrites `/ws` to USDⓈ-M's `/market/ws` and opens a numbered stream there;
    // keyward opened the same path at the exchange, with no key.
    let opened: Vec<String> = mock
        .records()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/market/ws"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(
        mock.records()
            .iter()
            .filter(|r| r.path.starts_with("/market/ws"))
            .all(|r| !r.everything().contains("kw_")),
        "a token on a market-data stream"
    );
}

/// A bot binds only a connection to its own account's venue. Bot A trades spot: on
/// USDⓈ-M's WebSocket API its logon is refused, and so is each request it names
/// itself in, and keyward never opens a link there (which would log in to the
/// exchange's USDⓈ-M API with the spot account's key and secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_cannot_bind_a_stream_of_another_venue() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let spot_bot = keyward.tokens.bot.clone();
    let mut socket = keyward.websocket("/ws-fapi/v1").await;
    let logon = socket
        .request(&keyward_tests::ws_client::binance_logon(1, &spot_bot))
        .await;
    assert_eq!(logon["status"], 401, "{logon}");
    assert!(logon.to_string().contains("auth_invalid"), "{logon}");
    let status = socket
        .request(&serde_json::json!({
            "id": 2, "method": "order.status",
            "params": {"apiKey": spot_bot, "symbol": "BTCUSDT", "orderId": 1, "timestamp": 1, "signature": "x"},
        }))
        .await;
    assert_eq!(status["status"], 401, "{status}");
    assert!(status.to_string().contains("auth_invalid"), "{status}");
    let sent: Vec<_> = mock
        .records()
        .into_iter()
        .filter(|r| r.method == "WS" || r.path.starts_with("/ws-fapi"))
        .collect();
    assert!(
        sent.is_empty(),
        "{:?}",
        sent.iter().map(|r| r.everything()).collect::<Vec<_>>()
    );
}
