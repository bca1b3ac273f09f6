//! The mock exchange's Coinbase Advanced Trade user-order-data WebSocket (`/`),
//! proven without keyward: real clients from PyPI (coinbase-advanced-py and ccxt.pro),
//! given the mock's own CDP key, subscribe to the user channel, place and cancel
//! orders over REST and see their updates on the WebSocket, every message recorded
//! with whether its JWT verified; and by hand, what the mock refuses (a JWT missing,
//! signed with another key or expired, an unknown channel), heartbeats without a JWT,
//! the user channel's snapshot and updates narrowed to the subscribed products, and
//! the close of a connection that does not subscribe within 5 seconds. The client
//! scenarios (tests/clients/coinbase_ws_clients.py) are the ones keyward's streams
//! are to be driven with.

use std::time::{Duration, Instant};

use keyward_tests::TempDir;
use keyward_tests::client::BotClient;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::run_client;
use keyward_tests::venues::coinbase::{BOT_A_PEM, CANARY_KEY_NAME, CANARY_PEM};
use keyward_tests::ws_client::{WsClient, coinbase_jwt, coinbase_ws_jwt, now_ms};
use serde_json::{Value, json};

fn now_s() -> u64 {
    now_ms() / 1000
}

/// Runs a scenario of tests/clients/coinbase_ws_clients.py against the mock with its
/// own key (the PEM in a file, as the script takes it).
async fn scenario(mock: &Mock, name: &'static str) -> Value {
    let dir = TempDir::new("coinbase-ws-key");
    let pem = dir.path().join("cdp-key.pem");
    std::fs::write(&pem, CANARY_PEM).expect("write the key file");
    let args = vec![
        name.to_owned(),
        mock.url(),
        mock.ws_base(),
        CANARY_KEY_NAME.to_owned(),
        pem.display().to_string(),
        mock.ca.display().to_string(),
    ];
    run_client("coinbase_ws_clients.py", args, Vec::new()).await
}

/// The WebSocket messages recorded on `/`.
fn messages(records: &[Recorded]) -> Vec<&Recorded> {
    records
        .iter()
        .filter(|r| r.method == "WS" && r.path == "/")
        .collect()
}

fn parsed(record: &Recorded) -> Value {
    serde_json::from_str(&record.body).unwrap_or(Value::Null)
}

/// What a client scenario sent: an upgrade of `/`, a subscribe to the user channel
/// with a JWT that verified and no `uri` in it, every frame with a JWT verified.
fn assert_subscribed_to_user(client: &str, records: &[Recorded]) {
    let upgrades = records
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/")
        .count();
    assert!(upgrades >= 1, "{client}: no upgrade of /: {records:?}");
    let sent = messages(records);
    assert!(!sent.is_empty(), "{client}: no message: {records:?}");
    for record in &sent {
        let frame = parsed(record);
        let carries_jwt = frame.get("jwt").is_some();
        assert_eq!(
            record.signature_ok,
            carries_jwt.then_some(true),
            "{client}: {record:?}"
        );
        assert!(record.authenticated.is_some(), "{client}: {record:?}");
    }
    let user = sent
        .iter()
        .find(|r| r.ws_method().as_deref() == Some("subscribe") && parsed(r)["channel"] == "user")
        .unwrap_or_else(|| panic!("{client}: no user subscribe: {records:?}"));
    let frame = parsed(user);
    assert_eq!(
        frame["product_ids"],
        json!(["BTC-USD"]),
        "{client}: {user:?}"
    );
    assert_eq!(user.authenticated, Some(false), "{client}: {user:?}");
    // The JWT names no request: the claims have no `uri`.
    let jwt = frame["jwt"].as_str().unwrap_or_default();
    let claims = jwt.split('.').nth(1).unwrap_or_default();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
            .unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    assert_eq!(claims["sub"], CANARY_KEY_NAME, "{client}");
    assert!(claims.get("uri").is_none(), "{client}: {claims}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_coinbase_clients_stream_orders_over_the_mocks_websocket() {
    let mock = Mock::start().await;

    // coinbase-advanced-py: WSUserClient on the user channel, RESTClient's order, its
    // OPEN update, the cancel, its CANCELLED update.
    let out = scenario(&mock, "sdk-orders").await;
    assert_eq!(out["errors"], json!([]), "{out}");
    assert_eq!(
        out["snapshot"],
        json!({"orders": 0, "sequence_num": 0}),
        "{out}"
    );
    assert_eq!(
        out["subscribed"],
        json!({"subscriptions": {"user": ["BTC-USD"]}, "sequence_num": 1}),
        "{out}"
    );
    assert_eq!(out["placed"]["success"], true, "{out}");
    let id = out["placed"]["order_id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(
        out["cancel"],
        json!({"success": true, "order_id": id}),
        "{out}"
    );
    for (update, status, leaves, sequence) in [
        ("open_update", "OPEN", "0.001", 2),
        ("cancelled_update", "CANCELLED", "0.001", 3),
    ] {
        assert_eq!(
            out[update],
            json!({"type": "update", "order_id": id, "status": status, "product_id": "BTC-USD",
                   "order_side": "BUY", "order_type": "Limit", "limit_price": "60000.00",
                   "leaves_quantity": leaves, "sequence_num": sequence}),
            "{out}"
        );
    }
    let records = mock.take_records();
    assert_subscribed_to_user("coinbase-advanced-py", &records);
    let order = records
        .iter()
        .find(|r| r.method == "POST" && r.path == "/api/v3/brokerage/orders")
        .expect("the SDK's order");
    assert_eq!(order.signature_ok, Some(true), "{order:?}");
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // ccxt.pro: watch_orders on the user channel, create_order and cancel_order over
    // REST, the open and canceled events.
    let out = scenario(&mock, "ccxt-orders").await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(out["cancel"]["id"], id, "{out}");
    for (event, status, coinbase_status) in [
        ("open_event", "open", "OPEN"),
        ("canceled_event", "canceled", "CANCELLED"),
    ] {
        assert_eq!(out[event]["id"], id, "{out}");
        assert_eq!(out[event]["status"], status, "{out}");
        assert_eq!(out[event]["coinbase_status"], coinbase_status, "{out}");
        assert_eq!(out[event]["symbol"], "BTC/USD", "{out}");
        assert_eq!(out[event]["side"], "buy", "{out}");
    }
    let records = mock.take_records();
    assert_subscribed_to_user("ccxt.pro coinbase", &records);
    let order = records
        .iter()
        .find(|r| r.method == "POST" && r.path == "/api/v3/brokerage/orders")
        .expect("ccxt's order");
    assert_eq!(order.signature_ok, Some(true), "{order:?}");
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());
}

/// A signed Coinbase REST request to the mock with its own key (the JWT's `uri`
/// names api.coinbase.com, as keyward signs it).
async fn rest(mock: &Mock, method: &str, path: &str, body: &Value) -> Value {
    let uri = format!("{method} api.coinbase.com{path}");
    let jwt = coinbase_jwt(CANARY_KEY_NAME, CANARY_PEM, now_s(), Some(&uri));
    let headers = [
        ("Host", format!("localhost:{}", mock.addr.port())),
        ("Authorization", format!("Bearer {jwt}")),
        ("Content-Type", "application/json".to_owned()),
    ]
    .map(|(n, v)| (n.to_owned(), v));
    let body = if method == "GET" {
        String::new()
    } else {
        body.to_string()
    };
    let response = BotClient::new(mock.addr, &mock.ca)
        .request(method, path, &headers, body.as_bytes())
        .await;
    assert_eq!(response.status, 200, "{method} {path}: {response:?}");
    serde_json::from_str(&response.body).unwrap()
}

async fn place(mock: &Mock, product: &str, price: &str) -> String {
    let order = json!({"client_order_id": format!("hand-{product}"), "product_id": product, "side": "BUY",
        "order_configuration": {"limit_limit_gtc": {"base_size": "0.001", "limit_price": price, "post_only": false}}});
    let placed = rest(mock, "POST", "/api/v3/brokerage/orders", &order).await;
    assert_eq!(placed["success"], true, "{placed}");
    placed["success_response"]["order_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn subscribe(channel: &str, products: &[&str], jwt: Option<String>) -> Value {
    let mut message = json!({"type": "subscribe", "channel": channel, "product_ids": products});
    if let Some(jwt) = jwt {
        message["jwt"] = jwt.into();
    }
    message
}

fn good_jwt() -> Option<String> {
    Some(coinbase_ws_jwt(CANARY_KEY_NAME, CANARY_PEM, now_s()))
}

/// The last message the mock recorded on `/`.
fn last_message(mock: &Mock) -> Recorded {
    mock.records()
        .into_iter()
        .rev()
        .find(|r| r.method == "WS" && r.path == "/")
        .expect("a message recorded on /")
}

/// The next `user` message with an event of `kind`.
async fn user_message(ws: &mut WsClient, kind: &str) -> Value {
    ws.wait_for(|f| f["channel"] == "user" && f["events"][0]["type"] == kind)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mocks_coinbase_websocket_checks_jwts_and_streams_the_rest_book() {
    let mock = Mock::start().await;

    // A plain request for `/` is answered as before (no upgrade).
    let plain = BotClient::new(mock.addr, &mock.ca)
        .request(
            "GET",
            "/",
            &[("Host".to_owned(), format!("localhost:{}", mock.addr.port()))],
            b"",
        )
        .await;
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(plain.body.contains("-1102"), "{plain:?}");

    // Two open orders before anyone subscribes, one BTC-USD and one ETH-USD.
    let btc = place(&mock, "BTC-USD", "60000.00").await;
    let eth = place(&mock, "ETH-USD", "3000.00").await;
    assert_ne!(btc, eth);
    mock.clear();

    let mut ws = WsClient::connect(mock.addr, &mock.ca, "/", &[]).await;
    let upgrade = mock.records();
    assert_eq!(
        (upgrade[0].method.as_str(), upgrade[0].path.as_str()),
        ("GET", "/")
    );

    // Heartbeats need no JWT: the acknowledgement, then a heartbeat a second.
    ws.send_text(&subscribe("heartbeats", &[], None).to_string())
        .await;
    let ack = ws.wait_for(|f| f["channel"] == "subscriptions").await;
    assert_eq!(ack["client_id"], "", "{ack}");
    assert_eq!(ack["sequence_num"], 0, "{ack}");
    assert_eq!(
        ack["events"],
        json!([{"subscriptions": {"heartbeats": []}}]),
        "{ack}"
    );
    assert!(
        ack["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ack}"
    );
    let first = ws.wait_for(|f| f["channel"] == "heartbeats").await;
    let second = ws.wait_for(|f| f["channel"] == "heartbeats").await;
    assert_eq!(first["events"][0]["heartbeat_counter"], 1, "{first}");
    assert_eq!(second["events"][0]["heartbeat_counter"], 2, "{second}");
    assert!(
        first["events"][0]["current_time"]
            .as_str()
            .is_some_and(|t| t.contains(" +0000 UTC m=+")),
        "{first}"
    );
    assert_eq!(first["sequence_num"], 1, "{first}");
    assert_eq!(second["sequence_num"], 2, "{second}");
    let record = last_message(&mock);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(false))
    );
    // Heartbeats are off again once unsubscribed.
    ws.send_text(&json!({"type": "unsubscribe", "channel": "heartbeats"}).to_string())
        .await;
    let ack = ws.wait_for(|f| f["channel"] == "subscriptions").await;
    assert_eq!(ack["events"], json!([{"subscriptions": {}}]), "{ack}");

    // The user channel refuses a message without a JWT, with one signed by another
    // key, with an expired one, and an unknown channel; each recorded.
    let other_key = coinbase_ws_jwt(CANARY_KEY_NAME, BOT_A_PEM, now_s());
    let expired = coinbase_ws_jwt(CANARY_KEY_NAME, CANARY_PEM, now_s() - 600);
    let cases = [
        (subscribe("user", &[], None), "authentication failure", None),
        (
            subscribe("user", &[], Some(other_key)),
            "authentication failure",
            Some(false),
        ),
        (
            subscribe("user", &[], Some(expired)),
            "authentication failure",
            Some(false),
        ),
        (
            subscribe("heartbeats", &[], Some("not.a.jwt".to_owned())),
            "authentication failure",
            Some(false),
        ),
        (
            subscribe("level3", &[], good_jwt()),
            "Failure to subscribe: unknown channel \"level3\"",
            Some(true),
        ),
    ];
    for (frame, message, signature_ok) in cases {
        let error = ws.exchange(&frame, |f| f["type"] == "error").await;
        assert_eq!(error, json!({"type": "error", "message": message}));
        let record = last_message(&mock);
        assert_eq!(record.body, frame.to_string(), "recorded exactly");
        assert_eq!(record.signature_ok, signature_ok, "{record:?}");
        assert_eq!(record.authenticated, Some(false), "{record:?}");
    }

    // The user channel for BTC-USD: the snapshot lists the BTC-USD order only, then
    // the acknowledgement.
    ws.send_text(&subscribe("user", &["BTC-USD"], good_jwt()).to_string())
        .await;
    let snapshot = user_message(&mut ws, "snapshot").await;
    let orders = &snapshot["events"][0]["orders"];
    assert_eq!(orders.as_array().map(Vec::len), Some(1), "{snapshot}");
    let order = &orders[0];
    for (name, value) in [
        ("order_id", btc.as_str()),
        ("client_order_id", "hand-BTC-USD"),
        ("product_id", "BTC-USD"),
        ("status", "OPEN"),
        ("order_side", "BUY"),
        ("order_type", "Limit"),
        ("limit_price", "60000.00"),
        ("leaves_quantity", "0.001"),
        ("cumulative_quantity", "0"),
        ("product_type", "SPOT"),
    ] {
        assert_eq!(order[name], value, "{name}: {snapshot}");
    }
    assert!(order["creation_time"].is_string(), "{snapshot}");
    assert_eq!(
        snapshot["events"][0]["positions"],
        json!({"perpetual_futures_positions": [], "expiring_futures_positions": []})
    );
    let ack = ws.wait_for(|f| f["channel"] == "subscriptions").await;
    assert_eq!(
        ack["events"],
        json!([{"subscriptions": {"user": ["BTC-USD"]}}]),
        "{ack}"
    );
    assert_eq!(
        snapshot["sequence_num"].as_u64().map(|n| n + 1),
        ack["sequence_num"].as_u64()
    );
    let record = last_message(&mock);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (Some(true), Some(false))
    );

    // Updates from the REST book: an ETH-USD order is not this subscription's, a
    // BTC-USD one is (OPEN), its cancel (CANCELLED), the fill of the first (FILLED).
    let _ = place(&mock, "ETH-USD", "3001.00").await;
    let placed = place(&mock, "BTC-USD", "59000.00").await;
    let open = user_message(&mut ws, "update").await;
    assert_eq!(
        open["events"][0]["orders"][0]["order_id"],
        placed.as_str(),
        "{open}"
    );
    assert_eq!(open["events"][0]["orders"][0]["status"], "OPEN", "{open}");
    assert_eq!(
        open["events"][0]["orders"].as_array().map(Vec::len),
        Some(1)
    );
    let cancelled = rest(
        &mock,
        "POST",
        "/api/v3/brokerage/orders/batch_cancel",
        &json!({"order_ids": [placed]}),
    )
    .await;
    assert_eq!(cancelled["results"][0]["success"], true, "{cancelled}");
    let update = user_message(&mut ws, "update").await;
    let order = &update["events"][0]["orders"][0];
    assert_eq!(
        (order["order_id"].as_str(), order["status"].as_str()),
        (Some(placed.as_str()), Some("CANCELLED")),
        "{update}"
    );
    mock.fill_all();
    let filled = user_message(&mut ws, "update").await;
    let order = &filled["events"][0]["orders"][0];
    assert_eq!(
        (order["order_id"].as_str(), order["status"].as_str()),
        (Some(btc.as_str()), Some("FILLED")),
        "{filled}"
    );
    assert_eq!(order["cumulative_quantity"], "0.001", "{filled}");
    assert_eq!(order["leaves_quantity"], "0", "{filled}");
    assert_eq!(order["avg_price"], "60000.00", "{filled}");
    assert_eq!(order["filled_value"], "60.00000000", "{filled}");
    assert_eq!(
        filled["events"][0]["orders"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // A raw event from the test: narrowed to the BTC-USD orders.
    mock.coinbase_event(vec![
        json!({"order_id": "raw-1", "product_id": "ETH-USD", "status": "OPEN"}),
        json!({"order_id": "raw-2", "product_id": "BTC-USD", "status": "OPEN"}),
    ]);
    let raw = user_message(&mut ws, "update").await;
    assert_eq!(
        raw["events"],
        json!([{"type": "update", "orders": [{"order_id": "raw-2", "product_id": "BTC-USD", "status": "OPEN"}]}]),
        "{raw}"
    );
    // Messages after the user subscription arrive on an authenticated connection.
    ws.send_text(&subscribe("heartbeats", &[], None).to_string())
        .await;
    let _ = ws.wait_for(|f| f["channel"] == "subscriptions").await;
    let record = last_message(&mock);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(true))
    );
    // futures_balance_summary: a JWT, a snapshot, then the acknowledgement.
    ws.send_text(&subscribe("futures_balance_summary", &[], good_jwt()).to_string())
        .await;
    let summary = ws
        .wait_for(|f| f["channel"] == "futures_balance_summary")
        .await;
    assert_eq!(summary["events"][0]["type"], "snapshot", "{summary}");
    assert!(
        summary["events"][0]["fcm_balance_summary"].is_object(),
        "{summary}"
    );
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mocks_coinbase_websocket_closes_connections_that_do_not_subscribe() {
    let mock = Mock::start().await;
    let started = Instant::now();
    let mut idle = WsClient::connect(mock.addr, &mock.ca, "/", &[]).await;
    let mut subscribed = WsClient::connect(mock.addr, &mock.ca, "/", &[]).await;
    subscribed
        .send_text(&subscribe("heartbeats", &[], None).to_string())
        .await;
    let _ = subscribed
        .wait_for(|f| f["channel"] == "subscriptions")
        .await;
    // A refused subscribe is no subscription.
    idle.send_text(&subscribe("user", &[], None).to_string())
        .await;
    let code = idle.closed_with(Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert_eq!(code, Some(1008), "closed after {waited:?}");
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    // The subscribed connection is still open, its heartbeats still coming.
    let beat = subscribed
        .wait_for(|f| {
            f["channel"] == "heartbeats" && f["events"][0]["heartbeat_counter"].as_u64() >= Some(6)
        })
        .await;
    assert!(beat["sequence_num"].as_u64() >= Some(6), "{beat}");
    assert_eq!(
        subscribed.closed_with(Duration::from_millis(100)).await,
        None
    );
    subscribed.close().await;
}
