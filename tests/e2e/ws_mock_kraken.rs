//! The mock exchange's Kraken spot WebSocket v2 (`/v2`) proven without keyward:
//! ccxt.pro's kraken from PyPI, given the mock's own key and secret, fetches its
//! token with a signed `GetWebSocketsToken`, subscribes to `executions` and
//! `balances`, places, amends and cancels orders over the WebSocket and receives
//! their events, every message recorded with whether its token was valid; and by
//! hand, what the mock refuses (no token, an unknown or stale one, an unknown method
//! or parameter, a pair v2 does not name, a public channel), each method's answer,
//! and that REST and the WebSocket share one book and one event stream, whose
//! events name the symbol only when the order is placed. The client scenarios
//! (tests/clients/kraken_ws_clients.py) are the ones keyward's Kraken stream is to
//! be driven with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyward_tests::client::BotClient;
use keyward_tests::mock::{Mock, Recorded, ws_messages};
use keyward_tests::python::run_client;
use keyward_tests::venues::kraken::{API_KEY, SECRET, api_sign};
use keyward_tests::ws_client::{WsClient, now_ms};
use serde_json::{Value, json};

async fn scenario(mock: &Mock, name: &'static str) -> Value {
    let args = vec![
        name.to_owned(),
        mock.url(),
        mock.ws_base(),
        API_KEY.to_owned(),
        SECRET.to_owned(),
        mock.ca.display().to_string(),
    ];
    run_client("kraken_ws_clients.py", args, Vec::new()).await
}

/// A signed private call to the mock's Kraken REST with the account's key: `body`
/// (form fields) after a nonce that keeps increasing.
async fn rest(mock: &Mock, method: &str, body: &str) -> Value {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let nonce = LAST.fetch_add(1, Ordering::Relaxed) + now_ms() * 1000;
    let body = if body.is_empty() {
        format!("nonce={nonce}")
    } else {
        format!("nonce={nonce}&{body}")
    };
    let path = format!("/0/private/{method}");
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, SECRET).unwrap();
    let headers = [
        ("Host", format!("localhost:{}", mock.addr.port())),
        ("API-Key", API_KEY.to_owned()),
        ("API-Sign", api_sign(&key, &path, &nonce.to_string(), &body)),
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ]
    .map(|(n, v)| (n.to_owned(), v));
    let response = BotClient::new(mock.addr, &mock.ca)
        .request("POST", &path, &headers, body.as_bytes())
        .await;
    assert_eq!(response.status, 200, "{method}: {response:?}");
    serde_json::from_str(&response.body).unwrap()
}

/// A WebSocket token from the mock's REST.
async fn token(mock: &Mock) -> String {
    let answer = rest(mock, "GetWebSocketsToken", "").await;
    answer["result"]["token"].as_str().unwrap().to_owned()
}

/// A connection to `/v2`, its status update read.
async fn connect(mock: &Mock) -> WsClient {
    let mut ws = WsClient::connect(mock.addr, &mock.ca, "/v2", &[]).await;
    let status = ws.wait_for(|f| f["channel"] == "status").await;
    assert_eq!(status["type"], "update", "{status}");
    assert_eq!(status["data"][0]["api_version"], "v2", "{status}");
    assert_eq!(status["data"][0]["system"], "online", "{status}");
    assert!(status["data"][0]["connection_id"].is_u64(), "{status}");
    ws
}

/// Sends `method` with `params` (none when null; with `token`, when given) as
/// request `req_id`; the first answer to it.
async fn call(
    ws: &mut WsClient,
    req_id: u64,
    method: &str,
    mut params: Value,
    token: Option<&str>,
) -> Value {
    if let Some(token) = token {
        params["token"] = token.into();
    }
    let mut request = json!({"method": method, "req_id": req_id});
    if !params.is_null() {
        request["params"] = params;
    }
    ws.exchange(&request, |f| f["req_id"] == req_id).await
}

/// The next answer to `req_id` (`cancel_order` answers once per order).
async fn next_answer(ws: &mut WsClient, req_id: u64) -> Value {
    ws.wait_for(|f| f["req_id"] == req_id).await
}

/// Reads what comes for half a second: heartbeats at most (frames kept earlier
/// count too).
async fn quiet(ws: &mut WsClient) {
    let stray: Vec<Value> = ws
        .kept()
        .into_iter()
        .filter(|f| f["channel"] != "heartbeat")
        .collect();
    assert!(stray.is_empty(), "unexpected {stray:?}");
    let until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, ws.next_json()).await {
        assert_eq!(frame, json!({"channel": "heartbeat"}));
    }
}

/// The `executions` update reporting `exec_type` of the order `id`: its one report.
async fn execution(ws: &mut WsClient, id: &Value, exec_type: &str) -> Value {
    let message = ws
        .wait_for(|f| {
            f["channel"] == "executions"
                && f["type"] == "update"
                && &f["data"][0]["order_id"] == id
                && f["data"][0]["exec_type"] == exec_type
        })
        .await;
    assert!(message["sequence"].is_u64(), "{message}");
    message["data"][0].clone()
}

fn refused(answer: &Value, method: &str, error: &str) {
    assert_eq!(answer["success"], false, "{answer}");
    assert_eq!(answer["method"], method, "{answer}");
    assert_eq!(answer["error"], error, "{answer}");
    assert!(answer["time_in"].is_string() && answer["time_out"].is_string());
}

fn succeeded(answer: &Value, method: &str) -> Value {
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["method"], method, "{answer}");
    assert!(answer["time_in"].is_string() && answer["time_out"].is_string());
    answer["result"].clone()
}

fn last_message(mock: &Mock) -> Recorded {
    mock.records()
        .into_iter()
        .rev()
        .find(|r| r.method == "WS")
        .expect("a message recorded on /v2")
}

/// The order methods and subscriptions of a client scenario: each on `/v2`, each
/// with a token the mock issued, in order; the token fetched by signed REST.
fn assert_sent(client: &str, records: &[Recorded], expected: &[&str]) {
    let tokens = records
        .iter()
        .filter(|r| r.path == "/0/private/GetWebSocketsToken")
        .count();
    assert!(tokens >= 1, "{client}: no token fetched: {records:?}");
    for record in records.iter().filter(|r| r.path.starts_with("/0/private/")) {
        assert_eq!(record.signature_ok, Some(true), "{client}: {record:?}");
    }
    assert!(
        records.iter().any(|r| r.method == "GET" && r.path == "/v2"),
        "{client}: no upgrade of /v2"
    );
    let mut methods = Vec::new();
    for record in records.iter().filter(|r| r.method == "WS") {
        assert_eq!(record.path, "/v2", "{client}: {record:?}");
        assert_eq!(record.signature_ok, None, "{client}: {record:?}");
        let method = record.ws_method().unwrap_or_default();
        if method == "ping" {
            assert_eq!(record.authenticated, None, "{client}: {record:?}");
            continue;
        }
        assert_eq!(record.authenticated, Some(true), "{client}: {record:?}");
        methods.push(method);
    }
    let mut wanted = expected.iter().peekable();
    for method in &methods {
        if wanted.peek().is_some_and(|m| *m == method) {
            wanted.next();
        }
    }
    assert!(
        wanted.peek().is_none(),
        "{client}: sent {methods:?}, expected {expected:?} among them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccxt_pro_trades_and_streams_over_the_mocks_kraken_websocket() {
    let mock = Mock::start().await;

    // watch_orders, create_order_ws, its events, cancel_order_ws, its event.
    let out = scenario(&mock, "ccxt-orders").await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    // add_order's answer has the ids alone: ccxt learns the status from the events.
    assert_eq!(out["placed"]["status"], Value::Null, "{out}");
    assert_eq!(
        out["new_event"],
        json!({"id": id, "status": "open", "exec_type": "pending_new", "symbol": "BTC/USD",
            "amount": 0.001, "price": 60000.0}),
        "{out}"
    );
    assert_eq!(out["cancel"], json!({"id": id, "success": true}), "{out}");
    assert_eq!(out["canceled_event"]["status"], "canceled", "{out}");
    assert_eq!(out["canceled_event"]["exec_type"], "canceled", "{out}");
    // Kraken names the symbol when an order is placed and never after: ccxt has
    // none for the cancel.
    assert_eq!(out["canceled_event"]["symbol"], Value::Null, "{out}");
    assert_eq!(
        out["reports"],
        json!([
            {"exec_type": "pending_new", "order_status": "pending_new", "symbol": "BTC/USD"},
            {"exec_type": "new", "order_status": "new", "symbol": null},
            {"exec_type": "canceled", "order_status": "canceled", "symbol": null},
        ]),
        "{out}"
    );
    let records = mock.take_records();
    assert_sent(
        "ccxt.pro kraken",
        &records,
        &["subscribe", "add_order", "cancel_order"],
    );
    ws_messages(&records, "subscribe")[0]
        .assert_params(&[("channel", "executions"), ("snap_orders", "true")]);
    ws_messages(&records, "add_order")[0].assert_params(&[
        ("symbol", "BTC/USD"),
        ("side", "buy"),
        ("order_type", "limit"),
        ("order_qty", "0.001"),
        ("limit_price", "60000"),
    ]);
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // watch_balance: the balances snapshot.
    let out = scenario(&mock, "ccxt-balance").await;
    assert_eq!(out["balance"], json!({"USD": 1000.0, "BTC": 0.5}), "{out}");
    let records = mock.take_records();
    assert_sent("ccxt.pro kraken", &records, &["subscribe"]);
    ws_messages(&records, "subscribe")[0].assert_params(&[("channel", "balances")]);

    // edit_order_ws is amend_order: same id, the new quantity and price, no symbol.
    let out = scenario(&mock, "ccxt-edit").await;
    let id = out["placed"]["id"].clone();
    assert_eq!(out["edit"]["id"], id, "{out}");
    assert_eq!(
        out["amended_event"],
        json!({"id": id, "status": "open", "exec_type": "amended", "symbol": null,
            "amount": 0.002, "price": 59000.0}),
        "{out}"
    );
    let kinds: Vec<&Value> = out["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["exec_type"])
        .collect();
    assert_eq!(
        kinds,
        ["pending_new", "new", "amended", "canceled"],
        "{out}"
    );
    let records = mock.take_records();
    assert_sent(
        "ccxt.pro kraken",
        &records,
        &["subscribe", "add_order", "amend_order", "cancel_order"],
    );
    ws_messages(&records, "amend_order")[0]
        .assert_params(&[("order_qty", "0.002"), ("limit_price", "59000")]);
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // The scenario a forbidden pair is tried with: the bare exchange takes ETH/USD.
    let out = scenario(&mock, "ccxt-refused").await;
    assert_eq!(out["symbol"], "ETH/USD", "{out}");
    assert_eq!(out["refused"]["raised"], Value::Null, "{out}");
    assert!(out["refused"]["id"].is_string(), "{out}");
    assert_eq!(out["cancel"]["success"], true, "{out}");
    let records = mock.take_records();
    assert_sent("ccxt.pro kraken", &records, &["add_order", "cancel_order"]);
    ws_messages(&records, "add_order")[0].assert_params(&[("symbol", "ETH/USD")]);
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_checks_kraken_tokens_and_answers_each_v2_method() {
    let mock = Mock::start().await;

    // REST issues tokens: 43 characters of base64, 900 seconds; only when signed.
    let issued = rest(&mock, "GetWebSocketsToken", "").await;
    assert_eq!(issued["error"], json!([]), "{issued}");
    assert_eq!(issued["result"]["expires"], 900, "{issued}");
    let token = issued["result"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    assert_ne!(token, self::token(&mock).await, "each token is fresh");

    let mut ws = connect(&mock).await;

    // ping needs no token, and is recorded as carrying none; it takes no params.
    let pong = call(&mut ws, 1, "ping", Value::Null, None).await;
    assert_eq!(pong["method"], "pong", "{pong}");
    assert_eq!(pong.get("success"), None, "{pong}");
    assert!(pong["time_in"].is_string() && pong["time_out"].is_string());
    assert_eq!(last_message(&mock).authenticated, None);
    let answer = call(&mut ws, 2, "ping", json!({}), None).await;
    refused(
        &answer,
        "ping",
        "Unsupported field: 'params' for the given msg type: ping",
    );

    // No token, a token never issued: refused, recorded as unauthenticated.
    let executions = json!({"channel": "executions"});
    for (req_id, token) in [(3, None), (4, Some("bm90LWEtdG9rZW4"))] {
        let answer = call(&mut ws, req_id, "subscribe", executions.clone(), token).await;
        refused(&answer, "subscribe", "ESession:Invalid session");
        assert_eq!(answer["channel"], "executions", "{answer}");
        assert_eq!(answer["status"], "error", "{answer}");
        assert_eq!(last_message(&mock).authenticated, Some(false));
    }
    let order = json!({"order_type": "limit", "side": "buy", "order_qty": 0.001,
        "symbol": "BTC/USD", "limit_price": 60000, "cl_ord_id": "ws-1"});
    let answer = call(
        &mut ws,
        5,
        "add_order",
        order.clone(),
        Some("bm90LWEtdG9rZW4"),
    )
    .await;
    refused(&answer, "add_order", "ESession:Invalid session");
    assert_eq!(answer["req_id"], 5, "{answer}");
    assert_eq!(last_message(&mock).authenticated, Some(false));
    assert!(mock.open_orders().is_empty());

    // The issued token: the subscription and its (empty) snapshot.
    let issued = token;
    let token = Some(issued.as_str());
    let ack = call(&mut ws, 6, "subscribe", executions.clone(), token).await;
    assert_eq!(
        succeeded(&ack, "subscribe"),
        json!({"channel": "executions", "maxratecount": 125, "snap_orders": true, "snap_trades": false})
    );
    let snapshot = ws.wait_for(|f| f["type"] == "snapshot").await;
    assert_eq!(
        snapshot,
        json!({"channel": "executions", "type": "snapshot", "data": [], "sequence": 1})
    );
    let record = last_message(&mock);
    assert_eq!(
        (record.signature_ok, record.authenticated),
        (None, Some(true))
    );
    assert!(!format!("{record:?}").contains(&issued));
    let again = call(&mut ws, 7, "subscribe", executions.clone(), token).await;
    refused(&again, "subscribe", "Already subscribed");
    let book = call(
        &mut ws,
        8,
        "subscribe",
        json!({"channel": "book", "symbol": ["BTC/USD"]}),
        None,
    )
    .await;
    refused(
        &book,
        "subscribe",
        "Public market data subscriptions are unavailable on this endpoint. Try ws.kraken.com",
    );

    // What Kraken refuses in an order, each in its words.
    let unknown = call(&mut ws, 9, "nonsense", json!({}), token).await;
    refused(&unknown, "nonsense", "Method not found");
    let mut extra = order.clone();
    extra["price"] = 60000.into();
    let answer = call(&mut ws, 10, "add_order", extra, token).await;
    refused(
        &answer,
        "add_order",
        "Unsupported field: 'price' for the given msg type: add order",
    );
    let mut text = order.clone();
    text["order_qty"] = "0.001".into();
    let answer = call(&mut ws, 11, "add_order", text, token).await;
    refused(
        &answer,
        "add_order",
        "Order_qty field must be a number_float",
    );
    let mut v1 = order.clone();
    v1["symbol"] = "XBT/USD".into();
    let answer = call(&mut ws, 12, "add_order", v1, token).await;
    refused(&answer, "add_order", "Currency pair not supported XBT/USD");
    let mut no_price = order.clone();
    no_price.as_object_mut().unwrap().remove("limit_price");
    let answer = call(&mut ws, 13, "add_order", no_price, token).await;
    refused(&answer, "add_order", "EGeneral:Invalid arguments");
    assert!(mock.open_orders().is_empty());

    // An order: its ids, its pending_new (everything, the symbol in v2's spelling)
    // and new (ids only) events, and REST lists it under REST's altname.
    let placed = call(&mut ws, 14, "add_order", order.clone(), token).await;
    let result = succeeded(&placed, "add_order");
    let ws_id = result["order_id"].clone();
    assert_eq!(result["cl_ord_id"], "ws-1", "{placed}");
    assert_eq!(placed["req_id"], 14, "{placed}");
    let pending = execution(&mut ws, &ws_id, "pending_new").await;
    for (field, value) in [
        ("symbol", json!("BTC/USD")),
        ("side", json!("buy")),
        ("order_type", json!("limit")),
        ("order_qty", json!(0.001)),
        ("limit_price", json!(60000.0)),
        ("cl_ord_id", json!("ws-1")),
        ("time_in_force", json!("GTC")),
        ("order_status", json!("pending_new")),
    ] {
        assert_eq!(pending[field], value, "{field} of {pending}");
    }
    let live = execution(&mut ws, &ws_id, "new").await;
    let mut fields: Vec<&str> = live
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "cl_ord_id",
            "exec_type",
            "order_id",
            "order_status",
            "timestamp"
        ],
        "{live}"
    );
    let open = rest(&mock, "OpenOrders", "").await;
    assert_eq!(
        open["result"]["open"][ws_id.as_str().unwrap()]["descr"]["pair"],
        "XBTUSD"
    );

    // An order over REST, cancelled over the WebSocket: its events come, and the
    // canceled one names no symbol.
    let placed = rest(
        &mock,
        "AddOrder",
        "pair=XBTUSD&type=sell&ordertype=limit&price=61000&volume=0.002",
    )
    .await;
    let rest_id = placed["result"]["txid"][0].clone();
    let pending = execution(&mut ws, &rest_id, "pending_new").await;
    assert_eq!(
        (
            &pending["symbol"],
            &pending["side"],
            &pending["order_userref"]
        ),
        (&json!("BTC/USD"), &json!("sell"), &json!(0))
    );
    execution(&mut ws, &rest_id, "new").await;
    let cancelled = call(
        &mut ws,
        15,
        "cancel_order",
        json!({"order_id": [rest_id]}),
        token,
    )
    .await;
    assert_eq!(
        succeeded(&cancelled, "cancel_order"),
        json!({"order_id": rest_id})
    );
    let event = execution(&mut ws, &rest_id, "canceled").await;
    assert_eq!(event.get("symbol"), None, "{event}");
    assert_eq!(event["order_status"], "canceled", "{event}");
    assert_eq!(event["reason"], "User requested", "{event}");

    // amend_order by client id: in place, the new quantity and price, no symbol.
    let amend = json!({"cl_ord_id": "ws-1", "order_qty": 0.002, "limit_price": 59500});
    let amended = call(&mut ws, 16, "amend_order", amend, token).await;
    let result = succeeded(&amended, "amend_order");
    assert!(result["amend_id"].is_string(), "{amended}");
    assert_eq!(result["cl_ord_id"], "ws-1", "{amended}");
    let event = execution(&mut ws, &ws_id, "amended").await;
    assert_eq!(
        (
            &event["order_qty"],
            &event["limit_price"],
            &event["order_status"]
        ),
        (&json!(0.002), &json!(59500.0), &json!("new"))
    );
    assert_eq!(event.get("symbol"), None, "{event}");

    // edit_order replaces the order: the original cancelled, a new one placed.
    let edit = json!({"order_id": ws_id, "symbol": "BTC/USD", "order_qty": 0.003});
    let edited = call(&mut ws, 17, "edit_order", edit, token).await;
    let result = succeeded(&edited, "edit_order");
    assert_eq!(result["original_order_id"], ws_id, "{edited}");
    let edited_id = result["order_id"].clone();
    assert_ne!(edited_id, ws_id);
    execution(&mut ws, &ws_id, "canceled").await;
    let pending = execution(&mut ws, &edited_id, "pending_new").await;
    assert_eq!(
        (&pending["order_qty"], &pending["limit_price"]),
        (&json!(0.003), &json!(59500.0))
    );

    // cancel_order answers once per order, all with its req_id; an unknown id is
    // refused on its own.
    let cancel = json!({"order_id": [edited_id, "OUNKNO-WNORD-ER0000"]});
    let first = call(&mut ws, 18, "cancel_order", cancel, token).await;
    let second = next_answer(&mut ws, 18).await;
    assert_eq!(
        succeeded(&first, "cancel_order"),
        json!({"order_id": edited_id})
    );
    refused(&second, "cancel_order", "EOrder:Unknown order");
    execution(&mut ws, &edited_id, "canceled").await;

    // batch_add (2 to 15 orders on one symbol), batch_cancel, cancel_all.
    let two = json!({"symbol": "BTC/USD", "orders": [
        {"order_type": "limit", "side": "buy", "order_qty": 0.001, "limit_price": 58000},
        {"order_type": "limit", "side": "buy", "order_qty": 0.001, "limit_price": 57000,
            "order_userref": 7}]});
    let batch = call(&mut ws, 19, "batch_add", two.clone(), token).await;
    let ids: Vec<Value> = succeeded(&batch, "batch_add")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["order_id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{batch}");
    assert_eq!(batch["result"][1]["order_userref"], 7, "{batch}");
    let mut one = two.clone();
    one["orders"].as_array_mut().unwrap().pop();
    let answer = call(&mut ws, 20, "batch_add", one, token).await;
    refused(&answer, "batch_add", "EGeneral:Invalid arguments");
    let batch = call(&mut ws, 21, "batch_cancel", json!({"orders": ids}), token).await;
    assert_eq!(succeeded(&batch, "batch_cancel"), json!({"count": 2}));
    for id in &ids {
        execution(&mut ws, id, "canceled").await;
    }
    call(&mut ws, 22, "batch_add", two.clone(), token).await;
    let all = call(&mut ws, 23, "cancel_all", json!({}), token).await;
    assert_eq!(succeeded(&all, "cancel_all"), json!({"count": 2}));
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // cancel_all_orders_after: a timeout arms the switch, 0 disarms it, and one
    // left to run out cancels every order.
    let timer = call(
        &mut ws,
        24,
        "cancel_all_orders_after",
        json!({"timeout": 60}),
        token,
    )
    .await;
    let result = succeeded(&timer, "cancel_all_orders_after");
    assert!(result["currentTime"].is_string() && result["triggerTime"].is_string());
    let off = call(
        &mut ws,
        25,
        "cancel_all_orders_after",
        json!({"timeout": 0}),
        token,
    )
    .await;
    assert_eq!(
        succeeded(&off, "cancel_all_orders_after")["triggerTime"],
        "0"
    );
    let placed = call(&mut ws, 26, "add_order", order.clone(), token).await;
    let id = placed["result"]["order_id"].clone();
    call(
        &mut ws,
        27,
        "cancel_all_orders_after",
        json!({"timeout": 1}),
        token,
    )
    .await;
    let event = execution(&mut ws, &id, "canceled").await;
    assert_eq!(event["reason"], "Dead man switch", "{event}");
    assert!(mock.open_orders().is_empty());

    // balances: the snapshot of the account's assets.
    let ack = call(
        &mut ws,
        28,
        "subscribe",
        json!({"channel": "balances"}),
        token,
    )
    .await;
    assert_eq!(
        succeeded(&ack, "subscribe"),
        json!({"channel": "balances", "snapshot": true})
    );
    let snapshot = ws.wait_for(|f| f["channel"] == "balances").await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["data"],
        json!([
            {"asset": "USD", "asset_class": "currency", "balance": 1000.0,
                "wallets": [{"type": "spot", "id": "main", "balance": 1000.0}]},
            {"asset": "BTC", "asset_class": "currency", "balance": 0.5,
                "wallets": [{"type": "spot", "id": "main", "balance": 0.5}]},
        ])
    );

    // A token goes stale 15 minutes after issue unless used: this connection's
    // stays good, a new connection cannot take it, a new token works.
    mock.set_clock_skew_ms(16 * 60 * 1000);
    let still = call(&mut ws, 29, "cancel_all", json!({}), token).await;
    succeeded(&still, "cancel_all");
    let mut late = connect(&mock).await;
    let stale = call(&mut late, 1, "cancel_all", json!({}), token).await;
    refused(&stale, "cancel_all", "ESession:Invalid session");
    let fresh = self::token(&mock).await;
    let answer = call(&mut late, 2, "cancel_all", json!({}), Some(&fresh)).await;
    succeeded(&answer, "cancel_all");
    mock.set_clock_skew_ms(0);

    // Every message was recorded on /v2, none with a signature.
    for record in mock.records().iter().filter(|r| r.method == "WS") {
        assert_eq!(record.path, "/v2", "{record:?}");
        assert_eq!(record.signature_ok, None, "{record:?}");
    }
    late.close().await;
    ws.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_execution_pushes_reach_only_executions_subscribers() {
    let mock = Mock::start().await;
    let token = token(&mock).await;
    let token = Some(token.as_str());
    let subscribe = |channel: &str, extra: Value| {
        let mut params = json!({"channel": channel});
        if let (Value::Object(params), Value::Object(extra)) = (&mut params, extra) {
            params.extend(extra);
        }
        params
    };

    let mut every = connect(&mock).await;
    call(
        &mut every,
        1,
        "subscribe",
        subscribe("executions", json!({})),
        token,
    )
    .await;
    let mut transitions = connect(&mock).await;
    let params = subscribe(
        "executions",
        json!({"order_status": false, "snap_orders": false}),
    );
    let ack = call(&mut transitions, 1, "subscribe", params, token).await;
    assert_eq!(ack["result"]["snap_orders"], false, "{ack}");
    let mut balances = connect(&mock).await;
    call(
        &mut balances,
        1,
        "subscribe",
        subscribe("balances", json!({"snapshot": false})),
        token,
    )
    .await;
    let mut idle = connect(&mock).await;
    let pong = call(&mut idle, 1, "ping", Value::Null, None).await;
    assert_eq!(pong["method"], "pong");
    // The executions snapshot was sequence 1 on the first connection.
    every.wait_for(|f| f["type"] == "snapshot").await;

    let report = |exec_type: &str| {
        json!({"order_id": "OPUSH1-MOCKK-RAKEN0", "exec_type": exec_type, "order_status": "new",
            "timestamp": "2026-01-01T00:00:00.000000Z", "order_userref": 0})
    };
    mock.kraken_execution(vec![report("pending_new")]);
    mock.kraken_execution(vec![report("new")]);
    let first = every
        .wait_for(|f| f["channel"] == "executions" && f["type"] == "update")
        .await;
    assert_eq!(first["data"], json!([report("pending_new")]));
    assert_eq!(first["sequence"], 2, "{first}");
    let second = every
        .wait_for(|f| f["channel"] == "executions" && f["type"] == "update")
        .await;
    assert_eq!(second["data"], json!([report("new")]));
    assert_eq!(second["sequence"], 3, "{second}");
    // order_status false: only the open and close transitions, numbered from 1.
    let only = transitions.wait_for(|f| f["channel"] == "executions").await;
    assert_eq!(
        only,
        json!({"channel": "executions", "type": "update", "data": [report("new")], "sequence": 1})
    );

    // Nothing reaches a connection not subscribed to executions; and one that
    // unsubscribes gets no more.
    quiet(&mut balances).await;
    quiet(&mut idle).await;
    let gone = call(
        &mut every,
        2,
        "unsubscribe",
        json!({"channel": "executions"}),
        token,
    )
    .await;
    assert_eq!(
        succeeded(&gone, "unsubscribe"),
        json!({"channel": "executions"})
    );
    let again = call(
        &mut every,
        3,
        "unsubscribe",
        json!({"channel": "executions"}),
        token,
    )
    .await;
    refused(&again, "unsubscribe", "Subscription Not Found");
    mock.kraken_execution(vec![report("new")]);
    transitions.wait_for(|f| f["sequence"] == 2).await;
    // What came before the unsubscription was read above; heartbeats stop too.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, every.next_json()).await {
        assert_ne!(frame["channel"], "executions", "{frame}");
    }

    for ws in [every, transitions, balances, idle] {
        ws.close().await;
    }
}
