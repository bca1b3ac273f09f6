//! The mock exchange's Binance spot WebSocket API, proven without keyward: real
//! clients from PyPI (ccxt.pro, binance-sdk-spot), given the mock's own key and
//! secret, subscribe to the user data stream, place, watch and cancel orders over it
//! and receive its events, every message they send verified and recorded; and by
//! hand, what the mock refuses (a wrong signature, an unknown key, a stale
//! timestamp, a malformed upgrade) and that REST and the WebSocket API share one
//! book, one account and one event stream. The client scenarios
//! (tests/clients/binance_ws_clients.py) are the ones keyward's streams are driven
//! with.

use keyward_tests::canary;
use keyward_tests::client::{BotClient, bot_headers, build};
use keyward_tests::hmac_sha256_hex;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::{assert_refused, run_client};
use keyward_tests::ws_client::{WsClient, binance_signed, now_ms};
use serde_json::{Value, json};

/// WebSocket API methods that carry a signature.
const SIGNED: &[&str] = &[
    "order.place",
    "order.test",
    "order.cancel",
    "order.status",
    "openOrders.status",
    "openOrders.cancelAll",
    "account.status",
    "userDataStream.subscribe.signature",
];

async fn scenario(mock: &Mock, name: &'static str) -> Value {
    let args = vec![
        name.to_owned(),
        mock.url(),
        mock.ws_url(),
        canary::API_KEY.to_owned(),
        canary::SECRET.to_owned(),
        mock.ca.display().to_string(),
    ];
    run_client("binance_ws_clients.py", args, Vec::new()).await
}

/// The WebSocket API messages among `records`, in the order received.
fn messages(records: &[Recorded]) -> Vec<&Recorded> {
    records.iter().filter(|r| r.method == "WS").collect()
}

/// What a client scenario sent: one upgrade, then messages whose methods include
/// `expected` in that order, every signed one verified and nothing failing
/// verification.
fn assert_sent(client: &str, records: &[Recorded], expected: &[&str]) {
    let upgrades = records
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/ws-api/v3")
        .count();
    assert!(upgrades >= 1, "{client}: no upgrade recorded: {records:?}");
    for record in records {
        assert_ne!(record.signature_ok, Some(false), "{client}: {record:?}");
    }
    let sent = messages(records);
    for message in &sent {
        let method = message.ws_method().unwrap_or_default();
        if SIGNED.contains(&method.as_str()) {
            assert_eq!(message.signature_ok, Some(true), "{client}: {message:?}");
        }
        assert_eq!(message.path, "/ws-api/v3");
        assert_eq!(message.query, "");
    }
    let methods: Vec<String> = sent.iter().filter_map(|m| m.ws_method()).collect();
    let mut wanted = expected.iter().peekable();
    for method in &methods {
        if wanted.peek().is_some_and(|w| *w == method) {
            wanted.next();
        }
    }
    assert!(
        wanted.peek().is_none(),
        "{client}: sent {methods:?}, expected {expected:?} among them"
    );
}

fn placed<'a>(records: &'a [Recorded], symbol: &str) -> Vec<&'a Recorded> {
    messages(records)
        .into_iter()
        .filter(|m| {
            m.ws_method().as_deref() == Some("order.place")
                && m.params().get("symbol").map(String::as_str) == Some(symbol)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_trade_and_stream_over_the_mocks_websocket_api() {
    let mock = Mock::start().await;

    // ccxt.pro: watch_orders, a limit order over the WebSocket API, its NEW event,
    // the cancel, its CANCELED event.
    let out = scenario(&mock, "ccxt-orders").await;
    assert_eq!(out["placed"]["status"], "open", "{out}");
    let id = out["placed"]["id"].clone();
    for (event, x, status) in [
        ("new_event", "NEW", "open"),
        ("canceled_event", "CANCELED", "canceled"),
    ] {
        assert_eq!(out[event]["id"], id, "{out}");
        assert_eq!(out[event]["x"], x, "{out}");
        assert_eq!(out[event]["X"], x, "{out}");
        assert_eq!(out[event]["status"], status, "{out}");
    }
    assert_eq!(out["cancel_status"], "canceled", "{out}");
    let records = mock.take_records();
    assert_sent(
        "ccxt-orders",
        &records,
        &[
            "userDataStream.subscribe.signature",
            "order.place",
            "order.cancel",
        ],
    );
    let order = placed(&records, "BTCUSDT");
    assert_eq!(order.len(), 1, "{records:?}");
    let params = order[0].params();
    for (name, value) in [
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("quantity", "0.001"),
        ("price", "60000"),
    ] {
        assert_eq!(params.get(name).map(String::as_str), Some(value), "{name}");
    }
    // Compared, never printed: the canary key stays out of the test's output.
    let key = params.get("apiKey").map(String::as_str);
    assert!(
        key == Some(canary::API_KEY),
        "the order names the mock's key"
    );
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());
    assert_eq!(mock.balance("USDT").1, "0.00000000", "the cancel unlocked");

    // ccxt.pro: watch_balance sees the balance after a market buy fills.
    let out = scenario(&mock, "ccxt-balance").await;
    assert_eq!(out["order"]["status"], "closed", "{out}");
    assert_eq!(out["order"]["filled"], 0.001, "{out}");
    assert_eq!(out["event"], "outboundAccountPosition", "{out}");
    let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    assert!((number(&out["before"]["BTC"]) - 1.0).abs() < 1e-9, "{out}");
    assert!((number(&out["after"]["BTC"]) - 1.001).abs() < 1e-9, "{out}");
    // 0.001 BTC at the mock's best ask, 60010.
    let spent = number(&out["before"]["USDT"]) - number(&out["after"]["USDT"]);
    assert!((spent - 60.01).abs() < 1e-6, "{out}");
    assert_eq!(mock.balance("BTC").0, "1.00100000");
    let records = mock.take_records();
    assert_sent(
        "ccxt-balance",
        &records,
        &["userDataStream.subscribe.signature", "order.place"],
    );
    let order = placed(&records, "BTCUSDT");
    assert_eq!(
        order[0].params().get("type").map(String::as_str),
        Some("MARKET")
    );

    // ccxt.pro: an order the exchange refuses; the client shows the reason.
    mock.close_market("ETHUSDT");
    let out = scenario(&mock, "ccxt-refused").await;
    assert_refused(
        "ccxt.pro",
        "an order on a closed market",
        &out["refused"],
        &["MarketClosed", "ExchangeError"],
        "Market is closed.",
    );
    let records = mock.take_records();
    assert_sent("ccxt-refused", &records, &["order.place"]);
    assert_eq!(placed(&records, "ETHUSDT").len(), 1, "{records:?}");
    assert!(mock.open_orders().is_empty());

    // binance-sdk-spot's WebSocket API: subscribe by signature, place, cancel, with
    // the events of both.
    let out = scenario(&mock, "sdk-orders").await;
    assert_eq!(out["subscription_id"], 0, "{out}");
    assert_eq!(out["placed"]["status"], "NEW", "{out}");
    assert_eq!(out["cancel_status"], "CANCELED", "{out}");
    for (event, x) in [("new_event", "NEW"), ("canceled_event", "CANCELED")] {
        assert_eq!(out[event]["model"], "ExecutionReport", "{out}");
        assert_eq!(out[event]["i"], out["placed"]["id"], "{out}");
        assert_eq!(out[event]["x"], x, "{out}");
        assert_eq!(out[event]["s"], "BTCUSDT", "{out}");
    }
    let records = mock.take_records();
    assert_sent(
        "sdk-orders",
        &records,
        &[
            "userDataStream.subscribe.signature",
            "order.place",
            "order.cancel",
        ],
    );
    assert!(mock.open_orders().is_empty());
}

/// A request signed with the canary key, sent as one frame; the answer, and what
/// the mock recorded of the frame.
async fn exchange(ws: &mut WsClient, mock: &Mock, frame: &Value) -> (Value, Recorded) {
    let text = frame.to_string();
    ws.send_text(&text).await;
    let answer = ws.answer_to(&frame["id"]).await;
    let recorded = mock
        .records()
        .into_iter()
        .rev()
        .find(|r| r.method == "WS" && r.body == text)
        .unwrap_or_else(|| panic!("request {} not recorded", frame["id"]));
    (answer, recorded)
}

fn signed(id: u64, method: &str, params: Value) -> Value {
    let params = binance_signed(params, canary::API_KEY, canary::SECRET, now_ms());
    json!({"id": id, "method": method, "params": params})
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"].as_i64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_verifies_and_records_every_websocket_api_message() {
    let mock = Mock::start().await;
    let mut ws = WsClient::connect(mock.addr, &mock.ca, "/ws-api/v3", &[]).await;
    let upgrade = mock.records();
    assert_eq!(upgrade.len(), 1, "{upgrade:?}");
    assert_eq!(
        (upgrade[0].method.as_str(), upgrade[0].path.as_str()),
        ("GET", "/ws-api/v3")
    );
    assert_eq!(upgrade[0].header("upgrade"), Some("websocket"));

    let (answer, record) = exchange(&mut ws, &mock, &signed(1, "account.status", json!({}))).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["result"]["balances"][0]["asset"], "BTC", "{answer}");
    assert_eq!(answer["rateLimits"][0]["rateLimitType"], "REQUEST_WEIGHT");
    assert_eq!(record.signature_ok, Some(true));

    // A wrong signature: Binance's -1022, recorded as failing verification, the frame
    // exactly as sent.
    let mut frame = signed(2, "account.status", json!({}));
    frame["params"]["signature"] = hmac_sha256_hex(b"not the secret", b"anything").into();
    let (answer, record) = exchange(&mut ws, &mock, &frame).await;
    assert_eq!(answer["status"], 400, "{answer}");
    assert_eq!(error_code(&answer), -1022, "{answer}");
    assert_eq!(
        answer["error"]["msg"],
        "Signature for this request is not valid."
    );
    assert_eq!(record.signature_ok, Some(false));
    let sent = frame.to_string();
    assert!(record.body == sent, "the frame is recorded exactly");
    assert_eq!(record.ws_method().as_deref(), Some("account.status"));

    // A parameter changed after signing: refused the same, and no order is placed.
    let mut frame = signed(
        3,
        "order.place",
        json!({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.001", "price": "60000"}),
    );
    frame["params"]["quantity"] = "10".into();
    let (answer, record) = exchange(&mut ws, &mock, &frame).await;
    assert_eq!(error_code(&answer), -1022, "{answer}");
    assert_eq!(
        answer["rateLimits"][0]["rateLimitType"], "ORDERS",
        "{answer}"
    );
    assert_eq!(record.signature_ok, Some(false));
    assert!(mock.open_orders().is_empty());

    // An API key the exchange does not know.
    let params = binance_signed(json!({}), "not-a-key", canary::SECRET, now_ms());
    let frame = json!({"id": 4, "method": "account.status", "params": params});
    let (answer, record) = exchange(&mut ws, &mock, &frame).await;
    assert_eq!(
        (answer["status"].as_u64(), error_code(&answer)),
        (Some(401), -2015),
        "{answer}"
    );
    assert_eq!(record.signature_ok, Some(false));

    // A good signature on a stale timestamp.
    let params = binance_signed(
        json!({}),
        canary::API_KEY,
        canary::SECRET,
        now_ms() - 60_000,
    );
    let frame = json!({"id": "five", "method": "account.status", "params": params});
    let (answer, record) = exchange(&mut ws, &mock, &frame).await;
    assert_eq!(answer["id"], "five");
    assert_eq!(error_code(&answer), -1021, "{answer}");
    assert_eq!(record.signature_ok, Some(true));

    // No signature at all: unsigned, refused.
    let frame = json!({"id": 6, "method": "account.status",
        "params": {"apiKey": canary::API_KEY, "timestamp": now_ms()}});
    let (answer, record) = exchange(&mut ws, &mock, &frame).await;
    assert_eq!(error_code(&answer), -1102, "{answer}");
    assert_eq!(record.signature_ok, None);

    // Numbers are signed as written: a recvWindow sent as a number verifies.
    let frame = signed(
        7,
        "account.status",
        json!({"recvWindow": 5000, "omitZeroBalances": true}),
    );
    let (answer, record) = exchange(&mut ws, &mock, &frame).await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(record.signature_ok, Some(true));
    assert_eq!(
        record.params().get("recvWindow").map(String::as_str),
        Some("5000")
    );

    // Unsigned methods; rate limits left out when asked.
    let (answer, record) = exchange(&mut ws, &mock, &json!({"id": 8, "method": "ping"})).await;
    assert_eq!(
        (answer["status"].as_u64(), &answer["result"]),
        (Some(200), &json!({}))
    );
    assert_eq!(record.signature_ok, None);
    let frame = json!({"id": 9, "method": "time", "params": {"returnRateLimits": false}});
    let (answer, _) = exchange(&mut ws, &mock, &frame).await;
    assert!(
        answer["result"]["serverTime"].as_u64().is_some(),
        "{answer}"
    );
    assert!(answer.get("rateLimits").is_none(), "{answer}");
    let (answer, _) = exchange(&mut ws, &mock, &json!({"id": 10, "method": "nonsense"})).await;
    assert_eq!(answer["status"], 400, "{answer}");

    // Every frame was recorded, in order.
    let ids: Vec<Value> = mock
        .records()
        .iter()
        .filter(|r| r.method == "WS")
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .map(|frame| frame["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [
            json!(1),
            json!(2),
            json!(3),
            json!(4),
            json!("five"),
            json!(6),
            json!(7),
            json!(8),
            json!(9),
            json!(10)
        ]
    );
    ws.close().await;

    // Upgrades the mock refuses, recorded all the same.
    let bot = BotClient::new(mock.addr, &mock.ca);
    let upgrade = |version: &str, key: &str| {
        let mut headers = vec![
            ("Host".to_owned(), format!("localhost:{}", mock.addr.port())),
            ("Upgrade".to_owned(), "websocket".to_owned()),
            ("Connection".to_owned(), "Upgrade".to_owned()),
            ("Sec-WebSocket-Version".to_owned(), version.to_owned()),
        ];
        if !key.is_empty() {
            headers.push(("Sec-WebSocket-Key".to_owned(), key.to_owned()));
        }
        build("GET", "/ws-api/v3", &headers, b"")
    };
    let old = bot.raw(&upgrade("8", "dGhlIHNhbXBsZSBub25jZQ==")).await;
    assert_eq!(old.status, 426, "{old:?}");
    assert_eq!(old.header("sec-websocket-version"), Some("13"));
    let keyless = bot.raw(&upgrade("13", "")).await;
    assert_eq!(keyless.status, 400, "{keyless:?}");
    let plain = bot
        .request(
            "GET",
            "/ws-api/v3",
            &bot_headers(mock.addr.port(), canary::API_KEY, false),
            b"",
        )
        .await;
    assert_eq!(plain.status, 400, "{plain:?}");
    let refused = mock
        .records()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/ws-api/v3")
        .count();
    assert_eq!(refused, 4, "the first upgrade and three refused ones");
}

/// A signed REST request to the mock with the canary key.
async fn rest(mock: &Mock, method: &str, path: &str, params: &str) -> Value {
    let params = format!("{params}&timestamp={}", now_ms());
    let signature = hmac_sha256_hex(canary::SECRET.as_bytes(), params.as_bytes());
    let signed = format!("{params}&signature={signature}");
    let bot = BotClient::new(mock.addr, &mock.ca);
    let port = mock.addr.port();
    let response = if method == "GET" || method == "DELETE" {
        let headers = bot_headers(port, canary::API_KEY, false);
        bot.request(method, &format!("{path}?{signed}"), &headers, b"")
            .await
    } else {
        let headers = bot_headers(port, canary::API_KEY, true);
        bot.request(method, path, &headers, signed.as_bytes()).await
    };
    assert_eq!(response.status, 200, "{method} {path}: {response:?}");
    serde_json::from_str(&response.body).unwrap()
}

/// The next `executionReport` of order `id`.
async fn report(ws: &mut WsClient, id: &Value, execution: &str) -> Value {
    let frame = ws
        .event(|f| {
            f["event"]["e"] == "executionReport"
                && &f["event"]["i"] == id
                && f["event"]["x"] == execution
        })
        .await;
    assert_eq!(frame["subscriptionId"], 0, "{frame}");
    frame["event"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_the_websocket_api_share_one_book_account_and_event_stream() {
    let mock = Mock::start().await;
    let mut ws = WsClient::connect(mock.addr, &mock.ca, "/ws-api/v3", &[]).await;
    let subscribed = ws
        .request(&signed(1, "userDataStream.subscribe.signature", json!({})))
        .await;
    assert_eq!(subscribed["result"]["subscriptionId"], 0, "{subscribed}");
    let status = ws
        .request(&json!({"id": 2, "method": "session.status"}))
        .await;
    assert_eq!(status["result"]["userDataStream"], true, "{status}");

    // An order placed over REST is reported to the WebSocket API subscriber.
    let sell = rest(
        &mock,
        "POST",
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.002&price=61000",
    )
    .await;
    let sell_id = sell["orderId"].clone();
    let new = report(&mut ws, &sell_id, "NEW").await;
    assert_eq!(
        (new["X"].as_str(), new["S"].as_str(), new["q"].as_str()),
        (Some("NEW"), Some("SELL"), Some("0.002"))
    );
    let position = ws
        .event(|f| f["event"]["e"] == "outboundAccountPosition")
        .await;
    assert_eq!(
        position["event"]["B"][0],
        json!({"a": "BTC", "f": "0.99800000", "l": "0.00200000"})
    );

    // One placed over the WebSocket API is in REST's open orders, and both in the
    // WebSocket API's.
    let buy = ws
        .request(&signed(
            3,
            "order.place",
            json!({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                "quantity": "0.001", "price": "59000", "newOrderRespType": "RESULT"}),
        ))
        .await;
    assert_eq!(buy["result"]["status"], "NEW", "{buy}");
    assert!(
        buy["result"].get("fills").is_none(),
        "RESULT has no fills: {buy}"
    );
    let buy_id = buy["result"]["orderId"].clone();
    report(&mut ws, &buy_id, "NEW").await;
    let ids = |orders: &Value| -> Vec<Value> {
        orders
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["orderId"].clone())
            .collect()
    };
    let open = rest(&mock, "GET", "/api/v3/openOrders", "symbol=BTCUSDT").await;
    assert_eq!(ids(&open), [sell_id.clone(), buy_id.clone()]);
    let open = ws
        .request(&signed(
            4,
            "openOrders.status",
            json!({"symbol": "BTCUSDT"}),
        ))
        .await;
    assert_eq!(ids(&open["result"]), [sell_id.clone(), buy_id.clone()]);

    // Filled: a TRADE report for each, and the balances move.
    mock.fill_all();
    for id in [&sell_id, &buy_id] {
        let trade = report(&mut ws, id, "TRADE").await;
        assert_eq!(trade["X"], "FILLED", "{trade}");
        assert_eq!(trade["l"], trade["z"], "{trade}");
    }
    ws.event(|f| f["event"]["e"] == "outboundAccountPosition")
        .await;
    // 1 BTC - 0.002 + 0.001; 10000 USDT + 0.002 × 61000 - 0.001 × 59000.
    assert_eq!(
        mock.balance("BTC"),
        ("0.99900000".to_owned(), "0.00000000".to_owned())
    );
    assert_eq!(
        mock.balance("USDT"),
        ("10063.00000000".to_owned(), "0.00000000".to_owned())
    );
    let account = rest(&mock, "GET", "/api/v3/account", "omitZeroBalances=false").await;
    assert_eq!(
        account["balances"][1],
        json!({"asset": "USDT", "free": "10063.00000000", "locked": "0.00000000"})
    );
    // A filled order is still found, over both.
    let query = signed(
        5,
        "order.status",
        json!({"symbol": "BTCUSDT", "orderId": sell_id}),
    );
    let filled = ws.request(&query).await;
    assert_eq!(filled["result"]["status"], "FILLED", "{filled}");
    let filled = rest(
        &mock,
        "GET",
        "/api/v3/order",
        &format!("symbol=BTCUSDT&orderId={buy_id}"),
    )
    .await;
    assert_eq!(filled["status"], "FILLED", "{filled}");

    // Canceled over REST, reported over the WebSocket API; canceled over the
    // WebSocket API, gone from REST.
    let order = rest(
        &mock,
        "POST",
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=58000",
    )
    .await;
    let id = order["orderId"].clone();
    rest(
        &mock,
        "DELETE",
        "/api/v3/order",
        &format!("symbol=BTCUSDT&orderId={id}"),
    )
    .await;
    let canceled = report(&mut ws, &id, "CANCELED").await;
    assert_eq!(canceled["C"], order["clientOrderId"], "{canceled}");
    let placed = ws
        .request(&signed(
            6,
            "order.place",
            json!({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                "quantity": "0.001", "price": "58000", "newClientOrderId": "mine"}),
        ))
        .await;
    let cancel = ws
        .request(&signed(
            7,
            "order.cancel",
            json!({"symbol": "BTCUSDT", "origClientOrderId": "mine"}),
        ))
        .await;
    assert_eq!(cancel["result"]["status"], "CANCELED", "{cancel}");
    assert_eq!(cancel["result"]["origClientOrderId"], "mine", "{cancel}");
    assert_eq!(cancel["result"]["orderId"], placed["result"]["orderId"]);
    let again = ws
        .request(&signed(
            8,
            "order.cancel",
            json!({"symbol": "BTCUSDT", "origClientOrderId": "mine"}),
        ))
        .await;
    assert_eq!(error_code(&again), -2011, "{again}");
    let open = rest(&mock, "GET", "/api/v3/openOrders", "symbol=BTCUSDT").await;
    assert_eq!(open, json!([]));
    assert_eq!(
        mock.balance("USDT").1,
        "0.00000000",
        "every cancel unlocked"
    );

    // Unsubscribed: the stream says it ended.
    let unsubscribed = ws
        .request(&json!({"id": 9, "method": "userDataStream.unsubscribe", "params": {"subscriptionId": 0}}))
        .await;
    assert_eq!(unsubscribed["status"], 200, "{unsubscribed}");
    ws.event(|f| f["event"]["e"] == "eventStreamTerminated")
        .await;
    let status = ws
        .request(&json!({"id": 10, "method": "session.status"}))
        .await;
    assert_eq!(status["result"]["userDataStream"], false, "{status}");
    ws.close().await;
}
