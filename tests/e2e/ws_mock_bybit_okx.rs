//! The mock exchange's Bybit v5 and OKX v5 private WebSockets, proven without
//! keyward: real clients from PyPI (pybit and ccxt.pro for Bybit, python-okx and
//! ccxt.pro for OKX), given the mock's own credentials, log in, subscribe to their
//! order streams, place and cancel orders over the WebSocket and receive the events,
//! every message recorded with whether its login verified and whether its
//! connection was logged in; and by hand, what the mock refuses (a wrong signature,
//! an unknown key, an expired login, operations before login, stale and repeated
//! requests) and that REST and the WebSockets share one book per venue and one event
//! stream. The client scenarios (tests/clients/bybit_ws_clients.py and
//! okx_ws_clients.py) are the ones keyward's streams are driven with.

use base64::Engine as _;
use keyward_tests::client::BotClient;
use keyward_tests::hmac_sha256_hex;
use keyward_tests::mock::{Mock, Recorded, ws_messages};
use keyward_tests::python::{assert_refused, run_client};
use keyward_tests::venues::{bybit, okx};
use keyward_tests::ws_client::{WsClient, bybit_auth, now_ms, okx_login};
use serde_json::{Value, json};

async fn bybit_scenario(mock: &Mock, name: &'static str) -> Value {
    let args = vec![
        name.to_owned(),
        mock.url(),
        mock.ws_base(),
        bybit::CANARY_API_KEY.to_owned(),
        bybit::CANARY_SECRET.to_owned(),
        mock.ca.display().to_string(),
    ];
    run_client("bybit_ws_clients.py", args, Vec::new()).await
}

async fn okx_scenario(mock: &Mock, name: &'static str) -> Value {
    let args = vec![
        name.to_owned(),
        mock.url(),
        mock.ws_base(),
        okx::API_KEY.to_owned(),
        okx::SECRET.to_owned(),
        okx::PASSPHRASE.to_owned(),
        mock.ca.display().to_string(),
    ];
    run_client("okx_ws_clients.py", args, Vec::new()).await
}

/// The operations that log a connection in.
const LOGINS: &[&str] = &["auth", "login"];

/// Operations that need a logged-in connection.
const NEED_LOGIN: &[&str] = &[
    "subscribe",
    "order.create",
    "order.amend",
    "order.cancel",
    "order.create-batch",
    "order.amend-batch",
    "order.cancel-batch",
    "order",
    "batch-orders",
    "amend-order",
    "batch-amend-orders",
    "cancel-order",
    "batch-cancel-orders",
];

/// What a client scenario sent: an upgrade on each path it used, every login
/// verified and sent before its connection was logged in, every operation that needs
/// a login on a logged-in connection, nothing failing verification, and the
/// operations `expected` (path, op) among them in that order.
fn assert_sent(client: &str, records: &[Recorded], expected: &[(&str, &str)]) {
    for (path, _) in expected {
        let upgrades = records
            .iter()
            .filter(|r| r.method == "GET" && r.path == *path)
            .count();
        assert!(upgrades >= 1, "{client}: no upgrade of {path}: {records:?}");
    }
    let mut sent = Vec::new();
    for record in records.iter().filter(|r| r.method == "WS") {
        assert_ne!(record.signature_ok, Some(false), "{client}: {record:?}");
        let op = record.ws_method().unwrap_or_default();
        if LOGINS.contains(&op.as_str()) {
            assert_eq!(record.signature_ok, Some(true), "{client}: {record:?}");
            assert_eq!(record.authenticated, Some(false), "{client}: {record:?}");
        } else {
            assert_eq!(record.signature_ok, None, "{client}: {record:?}");
        }
        if NEED_LOGIN.contains(&op.as_str()) {
            assert_eq!(record.authenticated, Some(true), "{client}: {record:?}");
        }
        assert_eq!(record.query, "", "{client}: {record:?}");
        sent.push((record.path.clone(), op));
    }
    let mut wanted = expected.iter().peekable();
    for (path, op) in &sent {
        if wanted.peek().is_some_and(|(p, o)| p == path && o == op) {
            wanted.next();
        }
    }
    assert!(
        wanted.peek().is_none(),
        "{client}: sent {sent:?}, expected {expected:?} among them"
    );
}

/// The recorded login messages name the key `key` (compared, never printed).
fn assert_logged_in_with(client: &str, records: &[Recorded], key: &str) {
    let logins: Vec<&Recorded> = records
        .iter()
        .filter(|r| LOGINS.contains(&r.ws_method().unwrap_or_default().as_str()))
        .collect();
    assert!(!logins.is_empty(), "{client}: no login recorded");
    for login in logins {
        assert!(
            login.body.contains(key),
            "{client}: a login names another key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_bybit_clients_trade_and_stream_over_the_mocks_websockets() {
    let mock = Mock::start().await;
    let (private, trade) = ("/v5/private", "/v5/trade");

    // pybit: the order stream, an order over order entry, its New event, the cancel,
    // its Cancelled event.
    let out = bybit_scenario(&mock, "pybit-orders").await;
    let id = out["placed"]["orderId"].clone();
    assert_eq!(out["placed"]["retCode"], 0, "{out}");
    assert_eq!(out["placed"]["answer"], "ok", "{out}");
    assert_eq!(out["cancel"]["retCode"], 0, "{out}");
    assert_eq!(out["cancel"]["orderId"], id, "{out}");
    for (event, status) in [("new_event", "New"), ("cancelled_event", "Cancelled")] {
        assert_eq!(out[event]["orderId"], id, "{out}");
        assert_eq!(out[event]["orderStatus"], status, "{out}");
        assert_eq!(out[event]["topic"], "order", "{out}");
        assert_eq!(out[event]["symbol"], "BTCUSDT", "{out}");
        assert_eq!(out[event]["category"], "spot", "{out}");
    }
    let records = mock.take_records();
    assert_sent(
        "pybit",
        &records,
        &[
            (private, "auth"),
            (trade, "auth"),
            (private, "subscribe"),
            (trade, "order.create"),
            (trade, "order.cancel"),
        ],
    );
    assert_logged_in_with("pybit", &records, bybit::CANARY_API_KEY);
    let created = ws_messages(&records, "order.create");
    assert_eq!(created.len(), 1, "{records:?}");
    created[0].assert_params(&[
        ("category", "spot"),
        ("symbol", "BTCUSDT"),
        ("side", "Buy"),
        ("orderType", "Limit"),
        ("qty", "0.001"),
        ("price", "60000"),
    ]);
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // ccxt.pro: watch_orders, create_order_ws, its open event, cancel_order_ws, its
    // canceled event.
    let out = bybit_scenario(&mock, "ccxt-orders").await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(out["cancel"]["id"], id, "{out}");
    for (event, status, bybit_status) in [
        ("new_event", "open", "New"),
        ("canceled_event", "canceled", "Cancelled"),
    ] {
        assert_eq!(out[event]["id"], id, "{out}");
        assert_eq!(out[event]["status"], status, "{out}");
        assert_eq!(out[event]["orderStatus"], bybit_status, "{out}");
        assert_eq!(out[event]["symbol"], "BTC/USDT", "{out}");
    }
    let records = mock.take_records();
    assert_sent(
        "ccxt.pro bybit",
        &records,
        &[
            (private, "auth"),
            (private, "subscribe"),
            (trade, "auth"),
            (trade, "order.create"),
            (trade, "order.cancel"),
        ],
    );
    assert_logged_in_with("ccxt.pro bybit", &records, bybit::CANARY_API_KEY);
    ws_messages(&records, "order.create")[0].assert_params(&[
        ("symbol", "BTCUSDT"),
        ("side", "Buy"),
        ("qty", "0.001"),
    ]);
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // Orders the exchange refuses: each client shows Bybit's reason.
    mock.close_market("ETHUSDT");
    let out = bybit_scenario(&mock, "pybit-refused").await;
    assert_eq!(out["refused"]["answer"], "error", "{out}");
    assert_eq!(out["refused"]["retCode"], 170_157, "{out}");
    assert_eq!(
        out["refused"]["retMsg"], "The trading pair is not available for api trading",
        "{out}"
    );
    let out = bybit_scenario(&mock, "ccxt-refused").await;
    assert_refused(
        "ccxt.pro bybit",
        "an order on a closed market",
        &out["refused"],
        &["InvalidOrder", "ExchangeError"],
        "The trading pair is not available for api trading",
    );
    let records = mock.take_records();
    let refused = ws_messages(&records, "order.create");
    assert_eq!(refused.len(), 2, "{records:?}");
    for order in refused {
        assert_eq!(order.authenticated, Some(true), "{order:?}");
        order.assert_params(&[("symbol", "ETHUSDT")]);
    }
    assert!(mock.open_orders().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_okx_clients_trade_and_stream_over_the_mocks_websocket() {
    let mock = Mock::start().await;
    let path = "/ws/v5/private";

    // python-okx: login, the orders channel, an order over the WebSocket, its live
    // push, the cancel, its canceled push.
    let out = okx_scenario(&mock, "python-okx-orders").await;
    assert_eq!(
        out["login"],
        json!({"event": "login", "code": "0"}),
        "{out}"
    );
    assert_eq!(
        out["subscribed"]["arg"],
        json!({"channel": "orders", "instType": "SPOT"}),
        "{out}"
    );
    let id = out["placed"]["orders"][0]["ordId"].clone();
    assert_eq!(out["placed"]["code"], "0", "{out}");
    assert_eq!(out["placed"]["orders"][0]["sCode"], "0", "{out}");
    assert_eq!(out["cancel"]["code"], "0", "{out}");
    assert_eq!(out["cancel"]["orders"][0]["ordId"], id, "{out}");
    for (push, state) in [("live_push", "live"), ("canceled_push", "canceled")] {
        assert_eq!(out[push]["ordId"], id, "{out}");
        assert_eq!(out[push]["state"], state, "{out}");
        assert_eq!(out[push]["instId"], "BTC-USDT", "{out}");
        assert_eq!(out[push]["instType"], "SPOT", "{out}");
    }
    let records = mock.take_records();
    assert_sent(
        "python-okx",
        &records,
        &[
            (path, "login"),
            (path, "subscribe"),
            (path, "order"),
            (path, "cancel-order"),
        ],
    );
    assert_logged_in_with("python-okx", &records, okx::API_KEY);
    ws_messages(&records, "order")[0].assert_params(&[
        ("instId", "BTC-USDT"),
        ("tdMode", "cash"),
        ("side", "buy"),
        ("ordType", "limit"),
        ("px", "60000"),
        ("sz", "0.001"),
    ]);
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // ccxt.pro: watch_orders, create_order_ws (batch-orders, the instrument named
    // by its instIdCode), its open event, cancel_order_ws, its canceled event.
    let out = okx_scenario(&mock, "ccxt-orders").await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(out["cancel"]["id"], id, "{out}");
    for (event, status, state) in [
        ("new_event", "open", "live"),
        ("canceled_event", "canceled", "canceled"),
    ] {
        assert_eq!(out[event]["id"], id, "{out}");
        assert_eq!(out[event]["status"], status, "{out}");
        assert_eq!(out[event]["state"], state, "{out}");
        assert_eq!(out[event]["symbol"], "BTC/USDT", "{out}");
    }
    let records = mock.take_records();
    assert_sent(
        "ccxt.pro okx",
        &records,
        &[
            (path, "login"),
            (path, "subscribe"),
            (path, "batch-orders"),
            (path, "cancel-order"),
        ],
    );
    assert_logged_in_with("ccxt.pro okx", &records, okx::API_KEY);
    ws_messages(&records, "batch-orders")[0].assert_params(&[
        ("instIdCode", "100001"),
        ("sz", "0.001"),
        ("px", "60000"),
    ]);
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // Orders the exchange refuses: each client shows OKX's reason.
    mock.close_market("ETHUSDT");
    let out = okx_scenario(&mock, "python-okx-refused").await;
    assert_eq!(out["refused"]["code"], "1", "{out}");
    assert_eq!(
        out["refused"]["orders"][0],
        json!({"ordId": "", "sCode": "51022", "sMsg": "Contract suspended."}),
        "{out}"
    );
    let out = okx_scenario(&mock, "ccxt-refused").await;
    assert_refused(
        "ccxt.pro okx",
        "an order on a closed market",
        &out["refused"],
        &["ExchangeError"],
        "51022",
    );
    let records = mock.take_records();
    assert_eq!(ws_messages(&records, "order").len(), 1, "{records:?}");
    assert_eq!(
        ws_messages(&records, "batch-orders").len(),
        1,
        "{records:?}"
    );
    assert!(mock.open_orders().is_empty());
}

/// The last WebSocket message the mock recorded on `path`.
fn last_message(mock: &Mock, path: &str) -> Recorded {
    mock.records()
        .into_iter()
        .rev()
        .find(|r| r.method == "WS" && r.path == path)
        .unwrap_or_else(|| panic!("no message recorded on {path}"))
}

/// An order-entry request: its `reqId`, the header a client sends, `op`, `args`.
fn entry(req_id: &str, op: &str, args: Value) -> Value {
    json!({"reqId": req_id, "header": {"X-BAPI-TIMESTAMP": now_ms().to_string(),
        "X-BAPI-RECV-WINDOW": "5000"}, "op": op, "args": args})
}

async fn enter(trade: &mut WsClient, request: &Value) -> Value {
    let id = request["reqId"].clone();
    trade.exchange(request, |f| f["reqId"] == id).await
}

async fn bybit_event(private: &mut WsClient, topic: &str, id: &Value, status: &str) -> Value {
    private
        .wait_for(|f| {
            f["topic"] == topic
                && &f["data"][0]["orderId"] == id
                && (status.is_empty() || f["data"][0]["orderStatus"] == status)
        })
        .await
}

/// A signed Bybit REST request to the mock with the canary key (`payload` the
/// query of a GET, the JSON body otherwise).
async fn bybit_rest(mock: &Mock, method: &str, path: &str, payload: &str) -> Value {
    let (key, window, timestamp) = (bybit::CANARY_API_KEY, "5000", now_ms());
    let signature = hmac_sha256_hex(
        bybit::CANARY_SECRET.as_bytes(),
        format!("{timestamp}{key}{window}{payload}").as_bytes(),
    );
    let headers = [
        ("Host", format!("localhost:{}", mock.addr.port())),
        ("X-BAPI-API-KEY", key.to_owned()),
        ("X-BAPI-TIMESTAMP", timestamp.to_string()),
        ("X-BAPI-RECV-WINDOW", window.to_owned()),
        ("X-BAPI-SIGN", signature),
        ("Content-Type", "application/json".to_owned()),
    ]
    .map(|(n, v)| (n.to_owned(), v));
    let bot = BotClient::new(mock.addr, &mock.ca);
    let response = if method == "GET" {
        bot.request(method, &format!("{path}?{payload}"), &headers, b"")
            .await
    } else {
        bot.request(method, path, &headers, payload.as_bytes())
            .await
    };
    assert_eq!(response.status, 200, "{method} {path}: {response:?}");
    serde_json::from_str(&response.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_verifies_bybit_logins_and_shares_its_book_with_rest() {
    let mock = Mock::start().await;
    let (key, secret) = (bybit::CANARY_API_KEY, bybit::CANARY_SECRET);
    let mut private = WsClient::connect(mock.addr, &mock.ca, "/v5/private", &[]).await;
    let upgrade = mock.records();
    assert_eq!(
        (upgrade[0].method.as_str(), upgrade[0].path.as_str()),
        ("GET", "/v5/private")
    );

    // Nothing before the login.
    let refused = private
        .exchange(
            &json!({"req_id": "s0", "op": "subscribe", "args": ["order"]}),
            |f| f["req_id"] == "s0",
        )
        .await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["ret_msg"], "Request not authorized", "{refused}");
    let record = last_message(&mock, "/v5/private");
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(false))
    );

    // A wrong signature, an unknown key, an expiry gone by: refused, recorded.
    let expires = now_ms() + 10_000;
    let mut wrong = bybit_auth(key, secret, expires);
    wrong["args"][2] = hmac_sha256_hex(b"not the secret", b"GET/realtime1").into();
    let cases = [
        (wrong, "Request not authorized", Some(false)),
        (
            bybit_auth("not-a-key", secret, expires),
            "Request not authorized",
            Some(false),
        ),
        (
            bybit_auth(key, secret, now_ms() - 1000),
            "Params Error",
            Some(true),
        ),
    ];
    for (frame, message, signature_ok) in cases {
        let answer = private.exchange(&frame, |f| f["op"] == "auth").await;
        assert_eq!(answer["success"], false, "{answer}");
        assert_eq!(answer["ret_msg"], message, "{answer}");
        assert_eq!(answer["req_id"], "auth", "{answer}");
        let record = last_message(&mock, "/v5/private");
        let sent = frame.to_string();
        assert!(record.body == sent, "recorded exactly");
        assert_eq!(record.signature_ok, signature_ok, "{record:?}");
        assert_eq!(record.authenticated, Some(false), "{record:?}");
    }

    // The login, then the subscription and a ping.
    let answer = private
        .exchange(&bybit_auth(key, secret, now_ms() + 10_000), |f| {
            f["op"] == "auth"
        })
        .await;
    assert_eq!(answer["success"], true, "{answer}");
    assert!(answer["conn_id"].is_string(), "{answer}");
    let record = last_message(&mock, "/v5/private");
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (Some(true), Some(false))
    );
    let again = private
        .exchange(&bybit_auth(key, secret, now_ms() + 10_000), |f| {
            f["op"] == "auth"
        })
        .await;
    assert_eq!(again["ret_msg"], "Repeat auth", "{again}");
    let subscribed = private
        .exchange(
            &json!({"req_id": "s1", "op": "subscribe", "args": ["order", "execution", "wallet", "position"]}),
            |f| f["req_id"] == "s1",
        )
        .await;
    assert_eq!(subscribed["success"], true, "{subscribed}");
    assert_eq!(subscribed["op"], "subscribe", "{subscribed}");
    let record = last_message(&mock, "/v5/private");
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(true))
    );
    let unknown = private
        .exchange(
            &json!({"req_id": "s2", "op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}),
            |f| f["req_id"] == "s2",
        )
        .await;
    assert_eq!(unknown["success"], false, "{unknown}");
    let pong = private
        .exchange(&json!({"req_id": "p1", "op": "ping"}), |f| {
            f["req_id"] == "p1"
        })
        .await;
    assert_eq!(pong["op"], "pong", "{pong}");
    assert!(pong["args"][0].is_string(), "{pong}");

    // Order entry: nothing before its own login.
    let mut trade = WsClient::connect(mock.addr, &mock.ca, "/v5/trade", &[]).await;
    let order = json!({"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
        "qty": "0.001", "price": "59000", "orderLinkId": "ws-1"});
    let early = enter(&mut trade, &entry("e0", "order.create", json!([order]))).await;
    assert_eq!(early["retCode"], 10003, "{early}");
    let record = last_message(&mock, "/v5/trade");
    assert_eq!(record.authenticated, Some(false), "{record:?}");
    let mut wrong = bybit_auth(key, secret, now_ms() + 10_000);
    wrong["args"][2] = hmac_sha256_hex(b"not the secret", b"GET/realtime1").into();
    let refused = trade.exchange(&wrong, |f| f["op"] == "auth").await;
    assert_eq!(
        (refused["retCode"].as_i64(), refused["retMsg"].as_str()),
        (Some(10004), Some("Invalid sign")),
        "{refused}"
    );
    assert_eq!(last_message(&mock, "/v5/trade").signature_ok, Some(false));
    let logged_in = trade
        .exchange(&bybit_auth(key, secret, now_ms() + 10_000), |f| {
            f["op"] == "auth"
        })
        .await;
    assert_eq!(logged_in["retCode"], 0, "{logged_in}");
    assert_eq!(last_message(&mock, "/v5/trade").signature_ok, Some(true));

    // An order over order entry: the answer, its event on the private stream, and
    // REST sees it.
    let created = enter(&mut trade, &entry("e1", "order.create", json!([order]))).await;
    assert_eq!(created["retCode"], 0, "{created}");
    assert_eq!(created["op"], "order.create", "{created}");
    assert_eq!(created["data"]["orderLinkId"], "ws-1", "{created}");
    assert!(created["header"]["Timenow"].is_string(), "{created}");
    assert!(created["connId"].is_string(), "{created}");
    let ws_id = created["data"]["orderId"].clone();
    let record = last_message(&mock, "/v5/trade");
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(true))
    );
    let event = bybit_event(&mut private, "order", &ws_id, "New").await;
    assert!(event["creationTime"].is_u64(), "{event}");
    assert!(event["id"].is_string(), "{event}");
    assert_eq!(event["data"][0]["orderLinkId"], "ws-1", "{event}");
    assert_eq!(event["data"][0]["price"], "59000", "{event}");
    assert!(
        event["data"][0].get("venue").is_none(),
        "the mock's tag stays in"
    );

    // An order over REST: its event on the private stream too; both in REST's list.
    let rest_order = json!({"category": "spot", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Limit",
        "qty": "0.002", "price": "61000"});
    let placed = bybit_rest(&mock, "POST", "/v5/order/create", &rest_order.to_string()).await;
    assert_eq!(placed["retCode"], 0, "{placed}");
    let rest_id = placed["result"]["orderId"].clone();
    bybit_event(&mut private, "order", &rest_id, "New").await;
    let open = bybit_rest(
        &mock,
        "GET",
        "/v5/order/realtime",
        "category=spot&symbol=BTCUSDT",
    )
    .await;
    let ids: Vec<Value> = open["result"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].clone())
        .collect();
    assert_eq!(ids, [ws_id.clone(), rest_id.clone()]);

    // Amended over order entry; filled, with executions and the wallet.
    let amend =
        json!({"category": "spot", "symbol": "BTCUSDT", "orderId": ws_id, "price": "59500"});
    let amended = enter(&mut trade, &entry("e2", "order.amend", json!([amend]))).await;
    assert_eq!(amended["retCode"], 0, "{amended}");
    let event = bybit_event(&mut private, "order", &ws_id, "New").await;
    assert_eq!(event["data"][0]["price"], "59500", "{event}");
    mock.fill_all();
    for id in [&ws_id, &rest_id] {
        let filled = bybit_event(&mut private, "order", id, "Filled").await;
        assert_eq!(filled["data"][0]["leavesQty"], "0", "{filled}");
        let execution = bybit_event(&mut private, "execution", id, "").await;
        assert_eq!(execution["data"][0]["execType"], "Trade", "{execution}");
        assert_eq!(
            execution["data"][0]["execQty"], filled["data"][0]["qty"],
            "{execution}"
        );
    }
    let wallet = private.wait_for(|f| f["topic"] == "wallet").await;
    assert_eq!(wallet["data"][0]["accountType"], "UNIFIED", "{wallet}");

    // Cancelled over REST, reported on the stream; a batch over order entry, one of
    // its orders refused; cancelled over order entry.
    let placed = bybit_rest(&mock, "POST", "/v5/order/create", &rest_order.to_string()).await;
    let id = placed["result"]["orderId"].clone();
    let cancel = json!({"category": "spot", "symbol": "BTCUSDT", "orderId": id});
    bybit_rest(&mock, "POST", "/v5/order/cancel", &cancel.to_string()).await;
    bybit_event(&mut private, "order", &id, "Cancelled").await;
    let batch = json!([{"category": "spot", "request": [
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001", "price": "58000", "orderLinkId": "b-1"},
        {"symbol": "XYZUSDT", "side": "Buy", "orderType": "Limit", "qty": "1", "price": "1", "orderLinkId": "b-2"}
    ]}]);
    let answer = enter(&mut trade, &entry("e3", "order.create-batch", batch)).await;
    assert_eq!(answer["retCode"], 0, "{answer}");
    assert_eq!(answer["retExtInfo"]["list"][0]["code"], 0, "{answer}");
    assert_eq!(answer["retExtInfo"]["list"][1]["code"], 10001, "{answer}");
    assert_eq!(answer["data"]["list"][1]["orderId"], "", "{answer}");
    let batch_id = answer["data"]["list"][0]["orderId"].clone();
    bybit_event(&mut private, "order", &batch_id, "New").await;
    let cancel = json!({"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "b-1"});
    let cancelled = enter(&mut trade, &entry("e4", "order.cancel", json!([cancel]))).await;
    assert_eq!(cancelled["data"]["orderId"], batch_id, "{cancelled}");
    bybit_event(&mut private, "order", &batch_id, "Cancelled").await;
    let again = enter(&mut trade, &entry("e5", "order.cancel", json!([cancel]))).await;
    assert_eq!(again["retCode"], 110_001, "{again}");
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // A repeated reqId, a stale header, a closed market, an unknown op.
    let repeated = enter(&mut trade, &entry("e1", "order.create", json!([order]))).await;
    assert_eq!(repeated["retCode"], 20006, "{repeated}");
    let mut stale = entry("e6", "order.create", json!([order]));
    stale["header"]["X-BAPI-TIMESTAMP"] = (now_ms() - 60_000).to_string().into();
    let answer = enter(&mut trade, &stale).await;
    assert_eq!(answer["retCode"], 10002, "{answer}");
    mock.close_market("BTCUSDT");
    let closed = enter(&mut trade, &entry("e7", "order.create", json!([order]))).await;
    assert_eq!(closed["retCode"], 170_157, "{closed}");
    let unknown = enter(&mut trade, &entry("e8", "order.nonsense", json!([order]))).await;
    assert_eq!(unknown["retCode"], 10404, "{unknown}");
    assert!(mock.open_orders().is_empty());
    let pong = trade
        .exchange(&json!({"reqId": "p2", "op": "ping"}), |f| {
            f["reqId"] == "p2"
        })
        .await;
    assert_eq!(
        (pong["op"].as_str(), pong["retCode"].as_i64()),
        (Some("pong"), Some(0))
    );

    // Every order message after the logins arrived on a logged-in connection.
    for record in mock.records().iter().filter(|r| {
        r.method == "WS" && r.path == "/v5/trade" && r.ws_method().as_deref() != Some("auth")
    }) {
        let early = record.body.contains(r#""reqId":"e0""#);
        assert_eq!(record.authenticated, Some(!early), "{record:?}");
    }
    trade.close().await;
    private.close().await;
}

/// An OKX operation: its `id`, `op` and `args`.
fn operation(id: &str, op: &str, args: Value) -> Value {
    json!({"id": id, "op": op, "args": args})
}

async fn operate(ws: &mut WsClient, request: &Value) -> Value {
    let id = request["id"].clone();
    ws.exchange(request, |f| f["id"] == id && f.get("event").is_none())
        .await
}

async fn okx_push(ws: &mut WsClient, id: &Value, state: &str) -> Value {
    ws.wait_for(|f| {
        f["arg"]["channel"] == "orders"
            && &f["data"][0]["ordId"] == id
            && f["data"][0]["state"] == state
    })
    .await
}

/// A signed OKX REST request to the mock with the canary key and passphrase.
async fn okx_rest(mock: &Mock, method: &str, target: &str, body: &str) -> Value {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // OKX's timestamps have milliseconds: 2020-12-08T09:08:57.715Z.
    let timestamp = format!("{}Z", &now[..23]);
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, okx::SECRET.as_bytes()),
        format!("{timestamp}{method}{target}{body}").as_bytes(),
    );
    let headers = [
        ("Host", format!("localhost:{}", mock.addr.port())),
        ("OK-ACCESS-KEY", okx::API_KEY.to_owned()),
        ("OK-ACCESS-PASSPHRASE", okx::PASSPHRASE.to_owned()),
        ("OK-ACCESS-TIMESTAMP", timestamp),
        (
            "OK-ACCESS-SIGN",
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
        ),
        ("Content-Type", "application/json".to_owned()),
    ]
    .map(|(n, v)| (n.to_owned(), v));
    let response = BotClient::new(mock.addr, &mock.ca)
        .request(method, target, &headers, body.as_bytes())
        .await;
    assert_eq!(response.status, 200, "{method} {target}: {response:?}");
    serde_json::from_str(&response.body).unwrap()
}

fn okx_seconds() -> u64 {
    now_ms() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_verifies_okx_logins_and_shares_its_book_with_rest() {
    let mock = Mock::start().await;
    let path = "/ws/v5/private";
    let (key, secret, passphrase) = (okx::API_KEY, okx::SECRET, okx::PASSPHRASE);
    let mut ws = WsClient::connect(mock.addr, &mock.ca, path, &[]).await;

    // Nothing before the login.
    let order = json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
        "px": "59000", "sz": "0.001", "clOrdId": "ws1"});
    let early = operate(&mut ws, &operation("o0", "order", json!([order]))).await;
    assert_eq!(early["code"], "60011", "{early}");
    let subscribe = json!({"op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]});
    let refused = ws.exchange(&subscribe, |f| f["event"] == "error").await;
    assert_eq!(refused["code"], "60011", "{refused}");
    let record = last_message(&mock, path);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(false))
    );

    // A wrong sign, an unknown key, a wrong passphrase, a stale timestamp: refused,
    // recorded.
    let mut wrong = okx_login(key, passphrase, secret, okx_seconds());
    wrong["args"][0]["sign"] = "bm90IHRoZSBzaWdu".into();
    let cases = [
        (wrong, "60007", Some(false)),
        (
            okx_login("not-a-key", passphrase, secret, okx_seconds()),
            "60005",
            Some(false),
        ),
        (
            okx_login(key, "not-the-passphrase", secret, okx_seconds()),
            "60024",
            Some(true),
        ),
        (
            okx_login(key, passphrase, secret, okx_seconds() - 120),
            "60006",
            Some(true),
        ),
    ];
    for (frame, code, signature_ok) in cases {
        let answer = ws
            .exchange(&frame, |f| f["event"] == "error" || f["event"] == "login")
            .await;
        assert_eq!(answer["event"], "error", "{answer}");
        assert_eq!(answer["code"], code, "{answer}");
        let record = last_message(&mock, path);
        let sent = frame.to_string();
        assert!(record.body == sent, "recorded exactly");
        assert_eq!(record.signature_ok, signature_ok, "{code}: {record:?}");
        assert_eq!(record.authenticated, Some(false), "{record:?}");
    }

    // The login, the subscriptions (the account's first push at once), a ping.
    let login = ws
        .exchange(&okx_login(key, passphrase, secret, okx_seconds()), |f| {
            f["event"] == "login" || f["event"] == "error"
        })
        .await;
    assert_eq!(login["event"], "login", "{login}");
    assert_eq!(login["code"], "0", "{login}");
    assert!(login["connId"].is_string(), "{login}");
    let record = last_message(&mock, path);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (Some(true), Some(false))
    );
    let subscribe = json!({"id": "sub1", "op": "subscribe", "args": [
        {"channel": "orders", "instType": "SPOT", "instId": "BTC-USDT"}, {"channel": "account"}]});
    let subscribed = ws
        .exchange(&subscribe, |f| {
            f["event"] == "subscribe" && f["arg"]["channel"] == "orders"
        })
        .await;
    assert_eq!(subscribed["id"], "sub1", "{subscribed}");
    let account = ws
        .wait_for(|f| f["arg"]["channel"] == "account" && f.get("data").is_some())
        .await;
    assert_eq!(account["arg"]["uid"], "440000000000001", "{account}");
    assert_eq!(account["data"][0]["details"][0]["ccy"], "USDT", "{account}");
    let record = last_message(&mock, path);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(true))
    );
    let unknown = ws
        .exchange(
            &json!({"op": "subscribe", "args": [{"channel": "orders"}]}),
            |f| f["event"] == "error",
        )
        .await;
    assert_eq!(unknown["code"], "60018", "{unknown}");
    ws.send_text("ping").await;
    let pong = ws.wait_for(|f| f == "pong").await;
    assert_eq!(pong, "pong");
    assert_eq!(last_message(&mock, path).body, "ping");

    // An order over the WebSocket: the answer, its push, REST sees it.
    let placed = operate(&mut ws, &operation("o1", "order", json!([order]))).await;
    assert_eq!(placed["code"], "0", "{placed}");
    assert_eq!(placed["op"], "order", "{placed}");
    assert_eq!(placed["data"][0]["clOrdId"], "ws1", "{placed}");
    assert!(placed["inTime"].is_string(), "{placed}");
    let ws_id = placed["data"][0]["ordId"].clone();
    let record = last_message(&mock, path);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(true))
    );
    let push = okx_push(&mut ws, &ws_id, "live").await;
    assert_eq!(push["arg"]["instId"], "BTC-USDT", "{push}");
    assert_eq!(push["arg"]["uid"], "440000000000001", "{push}");
    assert_eq!(push["data"][0]["px"], "59000", "{push}");

    // An order over REST: pushed too; both pending over REST.
    let rest_order = json!({"instId": "BTC-USDT", "tdMode": "cash", "side": "sell", "ordType": "limit",
        "px": "61000", "sz": "0.002"});
    let answer = okx_rest(
        &mock,
        "POST",
        "/api/v5/trade/order",
        &rest_order.to_string(),
    )
    .await;
    let rest_id = answer["data"][0]["ordId"].clone();
    okx_push(&mut ws, &rest_id, "live").await;
    let pending = okx_rest(
        &mock,
        "GET",
        "/api/v5/trade/orders-pending?instId=BTC-USDT",
        "",
    )
    .await;
    let ids: Vec<Value> = pending["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["ordId"].clone())
        .collect();
    assert_eq!(ids, [ws_id.clone(), rest_id.clone()]);

    // Amended over the WebSocket, the instrument named by its instIdCode; filled.
    let amend = json!({"instIdCode": 100_001, "ordId": ws_id, "newPx": "59500", "reqId": "a1"});
    let amended = operate(&mut ws, &operation("o2", "amend-order", json!([amend]))).await;
    assert_eq!(amended["code"], "0", "{amended}");
    assert_eq!(amended["data"][0]["reqId"], "a1", "{amended}");
    let push = ws
        .wait_for(|f| f["data"][0]["ordId"] == ws_id && f["data"][0]["amendResult"] == "0")
        .await;
    assert_eq!(push["data"][0]["px"], "59500", "{push}");
    mock.fill_all();
    for id in [&ws_id, &rest_id] {
        let filled = okx_push(&mut ws, id, "filled").await;
        assert_eq!(
            filled["data"][0]["accFillSz"], filled["data"][0]["sz"],
            "{filled}"
        );
        assert!(
            filled["data"][0]["tradeId"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
    }

    // A batch, one of its orders refused (ETH-USDT is not subscribed: no push);
    // cancelled over REST and over the WebSocket.
    mock.close_market("ETHUSDT");
    let eth = json!({"instId": "ETH-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
        "px": "3000", "sz": "0.01"});
    let batch = operate(
        &mut ws,
        &operation("o3", "batch-orders", json!([order, eth])),
    )
    .await;
    assert_eq!(batch["code"], "2", "{batch}");
    assert_eq!(batch["data"][0]["sCode"], "0", "{batch}");
    assert_eq!(batch["data"][1]["sCode"], "51022", "{batch}");
    let batch_id = batch["data"][0]["ordId"].clone();
    okx_push(&mut ws, &batch_id, "live").await;
    let cancel = json!({"instId": "BTC-USDT", "clOrdId": "ws1"});
    let cancelled = okx_rest(
        &mock,
        "POST",
        "/api/v5/trade/cancel-order",
        &cancel.to_string(),
    )
    .await;
    assert_eq!(cancelled["data"][0]["ordId"], batch_id, "{cancelled}");
    okx_push(&mut ws, &batch_id, "canceled").await;
    let placed = operate(&mut ws, &operation("o4", "order", json!([order]))).await;
    let id = placed["data"][0]["ordId"].clone();
    let cancel = json!({"instId": "BTC-USDT", "ordId": id});
    let cancelled = operate(
        &mut ws,
        &operation("o5", "batch-cancel-orders", json!([cancel])),
    )
    .await;
    assert_eq!(cancelled["code"], "0", "{cancelled}");
    okx_push(&mut ws, &id, "canceled").await;
    let again = operate(&mut ws, &operation("o6", "cancel-order", json!([cancel]))).await;
    assert_eq!(
        (again["code"].as_str(), again["data"][0]["sCode"].as_str()),
        (Some("1"), Some("51400")),
        "{again}"
    );
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // Malformed operations: no id, two orders for a single op, an unknown op.
    let no_id = ws
        .exchange(&json!({"op": "order", "args": [order]}), |f| {
            f["event"] == "error"
        })
        .await;
    assert_eq!(no_id["code"], "60012", "{no_id}");
    let two = operate(&mut ws, &operation("o7", "order", json!([order, order]))).await;
    assert_eq!(two["code"], "60013", "{two}");
    let unknown = ws
        .exchange(&json!({"id": "o8", "op": "nonsense", "args": []}), |f| {
            f["id"] == "o8"
        })
        .await;
    assert_eq!(
        (unknown["event"].as_str(), unknown["code"].as_str()),
        (Some("error"), Some("60019"))
    );
    assert!(mock.open_orders().is_empty());

    // Every order operation but the first arrived on a logged-in connection.
    for record in mock
        .records()
        .iter()
        .filter(|r| r.method == "WS" && r.ws_method().as_deref() == Some("order"))
    {
        let early = record.body.contains(r#""id":"o0""#);
        assert_eq!(record.authenticated, Some(!early), "{record:?}");
    }
    ws.close().await;
}
