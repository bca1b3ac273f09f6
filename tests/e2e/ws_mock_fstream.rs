//! The mock exchange's Binance USDⓈ-M user data stream, proven without keyward: ccxt.pro's
//! binanceusdm, given the mock's own key and secret, starts a listenKey, connects
//! with it, watches its orders and balance while it trades over REST, and keeps the
//! key alive; and by hand, the listenKey endpoints (the same key while one is
//! active, `-1125` once it is gone), the upgrade of an unknown key refused, the
//! events of USDⓈ-M orders placed, amended, cancelled and filled over REST (and none
//! for spot orders), raw events, and `listenKeyExpired` and the close when a key
//! ends. The client scenarios (tests/clients/binanceusdm_stream_clients.py) are the
//! ones keyward's USDⓈ-M streams are to be driven with.

use std::time::Duration;

use keyward_tests::canary;
use keyward_tests::client::{BotClient, Response, bot_headers};
use keyward_tests::hmac_sha256_hex;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::run_client;
use keyward_tests::ws_client::{WsClient, now_ms};
use serde_json::{Value, json};

const LISTEN_KEY: &str = "/fapi/v1/listenKey";

async fn scenario(mock: &Mock, name: &'static str) -> Value {
    let args = vec![
        name.to_owned(),
        mock.url(),
        mock.ws_base(),
        canary::API_KEY.to_owned(),
        canary::SECRET.to_owned(),
        mock.ca.display().to_string(),
    ];
    run_client("binanceusdm_stream_clients.py", args, Vec::new()).await
}

fn is_listen_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The listenKey requests among `records`, as `METHOD path`.
fn listen_key_requests(records: &[Recorded]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.path == LISTEN_KEY)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccxt_pro_watches_usdm_orders_and_balance_over_the_mocks_user_data_stream() {
    let mock = Mock::start().await;

    // watch_orders: a listenKey, the stream it opens, a limit order placed and
    // cancelled over REST, the events of both, then ccxt's own keep-alive.
    let out = scenario(&mock, "ccxt-orders").await;
    let key = out["listen_key"].as_str().unwrap_or_default().to_owned();
    assert!(is_listen_key(&key), "{out}");
    assert_eq!(mock.listen_keys(), std::slice::from_ref(&key));
    let url = format!("{}/private/ws?listenKey={key}", mock.ws_base());
    assert_eq!(out["stream_url"], url.as_str(), "{out}");
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
        assert_eq!(out[event]["s"], "BTCUSDT", "{out}");
        assert_eq!(out[event]["symbol"], "BTC/USDT:USDT", "{out}");
    }
    assert_eq!(out["cancel_status"], "canceled", "{out}");
    assert_eq!(out["listen_key_after_keep_alive"], key.as_str(), "{out}");
    assert_eq!(
        out["listen_key_calls"],
        json!(["POST /fapi/v1/listenKey", "PUT /fapi/v1/listenKey"]),
        "{out}"
    );
    let records = mock.take_records();
    assert_eq!(
        listen_key_requests(&records),
        ["POST /fapi/v1/listenKey", "PUT /fapi/v1/listenKey"]
    );
    for record in records.iter().filter(|r| r.path == LISTEN_KEY) {
        // On the API key alone: unsigned, the key the account's.
        assert_eq!(record.signature_ok, None, "{record:?}");
        assert_eq!(record.authenticated, Some(true), "{record:?}");
        assert!(record.header("x-mbx-apikey") == Some(canary::API_KEY));
    }
    let upgrades: Vec<&Recorded> = records
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/private/ws")
        .collect();
    assert_eq!(upgrades.len(), 1, "{records:?}");
    assert_eq!(upgrades[0].query, format!("listenKey={key}"));
    for record in &records {
        assert_ne!(record.signature_ok, Some(false), "{record:?}");
    }
    let orders: Vec<&Recorded> = records
        .iter()
        .filter(|r| r.path == "/fapi/v1/order")
        .collect();
    assert_eq!(
        orders.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
        ["POST", "DELETE"]
    );
    assert!(mock.open_orders().is_empty(), "{:?}", mock.open_orders());

    // watch_balance: a market buy fills at once, and its ACCOUNT_UPDATE is the
    // balance seen. The listenKey is still active, so ccxt is given the same one.
    let out = scenario(&mock, "ccxt-balance").await;
    assert_eq!(out["listen_key"], key.as_str(), "{out}");
    assert_eq!(out["order"]["status"], "closed", "{out}");
    assert_eq!(out["order"]["symbol"], "BTC/USDT:USDT", "{out}");
    assert_eq!(out["event"], "ACCOUNT_UPDATE", "{out}");
    assert_eq!(out["usdt_total"], 1000.0, "{out}");
    // 0.001 BTC at the mock's best ask, 60010.
    assert_eq!(
        out["positions"],
        json!([{"s": "BTCUSDT", "pa": "0.001", "ep": "60010"}]),
        "{out}"
    );
    assert_eq!(out["listen_key_calls"], json!(["POST /fapi/v1/listenKey"]));
    let records = mock.take_records();
    let placed: Vec<&Recorded> = records
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/fapi/v1/order")
        .collect();
    assert_eq!(placed.len(), 1, "{records:?}");
    assert_eq!(
        placed[0].params().get("type").map(String::as_str),
        Some("MARKET")
    );
    assert!(mock.open_orders().is_empty(), "a market order never rests");
}

/// A listenKey request with `api_key` (none: no header).
async fn listen_key(mock: &Mock, method: &str, api_key: Option<&str>) -> Response {
    let bot = BotClient::new(mock.addr, &mock.ca);
    let mut headers = bot_headers(mock.addr.port(), api_key.unwrap_or_default(), false);
    if api_key.is_none() {
        headers.retain(|(name, _)| name != "X-MBX-APIKEY");
    }
    bot.request(method, LISTEN_KEY, &headers, b"").await
}

fn body(response: &Response) -> Value {
    serde_json::from_str(&response.body).unwrap_or_else(|_| panic!("{response:?}"))
}

/// A signed REST request to the mock with the canary key.
async fn rest(mock: &Mock, method: &str, path: &str, params: &str) -> Value {
    let params = format!("{params}&timestamp={}", now_ms());
    let signature = hmac_sha256_hex(canary::SECRET.as_bytes(), params.as_bytes());
    let signed = format!("{params}&signature={signature}");
    let bot = BotClient::new(mock.addr, &mock.ca);
    let port = mock.addr.port();
    let response = if method == "POST" {
        let headers = bot_headers(port, canary::API_KEY, true);
        bot.request(method, path, &headers, signed.as_bytes()).await
    } else {
        let headers = bot_headers(port, canary::API_KEY, false);
        bot.request(method, &format!("{path}?{signed}"), &headers, b"")
            .await
    };
    assert_eq!(response.status, 200, "{method} {path}: {response:?}");
    body(&response)
}

/// The next `ORDER_TRADE_UPDATE` of order `id` with execution type `execution`.
async fn order_update(ws: &mut WsClient, id: &Value, execution: &str) -> Value {
    ws.event(|f| f["e"] == "ORDER_TRADE_UPDATE" && &f["o"]["i"] == id && f["o"]["x"] == execution)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_key_endpoints_and_the_user_data_stream_behave_as_binance_documents() {
    let mock = Mock::start().await;

    // POST starts a key; while it is active, POST gives it again and PUT keeps it.
    let started = listen_key(&mock, "POST", Some(canary::API_KEY)).await;
    assert_eq!(started.status, 200, "{started:?}");
    let key = body(&started)["listenKey"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(is_listen_key(&key), "{started:?}");
    let again = listen_key(&mock, "POST", Some(canary::API_KEY)).await;
    assert_eq!(body(&again), json!({"listenKey": key}));
    let kept = listen_key(&mock, "PUT", Some(canary::API_KEY)).await;
    assert_eq!((kept.status, body(&kept)), (200, json!({})));
    assert_eq!(mock.listen_keys(), std::slice::from_ref(&key));
    // A key the exchange does not know, or none: refused, and recorded as such.
    let stranger = listen_key(&mock, "POST", Some("not-a-key")).await;
    assert_eq!(stranger.status, 401, "{stranger:?}");
    assert_eq!(body(&stranger)["code"], -2015);
    let keyless = listen_key(&mock, "POST", None).await;
    assert_eq!(body(&keyless)["code"], -2014, "{keyless:?}");
    let records = mock.take_records();
    let seen: Vec<(String, Option<bool>)> = records
        .iter()
        .map(|r| (r.method.clone(), r.authenticated))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST".to_owned(), Some(true)),
            ("POST".to_owned(), Some(true)),
            ("PUT".to_owned(), Some(true)),
            ("POST".to_owned(), Some(false)),
            ("POST".to_owned(), Some(false)),
        ]
    );
    assert!(records.iter().all(|r| r.path == LISTEN_KEY));
    assert_eq!(records[0].signature_ok, None);
    assert_eq!(records[3].signature_ok, Some(false));

    // An upgrade naming a key that is not active is refused at the handshake, on
    // every path; each refusal is recorded.
    let unknown = "U".repeat(64);
    for path in [
        format!("/ws/{unknown}"),
        format!("/private/ws?listenKey={unknown}"),
        "/private/ws".to_owned(),
        "/ws/".to_owned(),
    ] {
        let refused = WsClient::try_connect(mock.addr, &mock.ca, &path, &[])
            .await
            .map(|_| ())
            .expect_err("the upgrade is refused");
        assert_eq!(refused.status, 400, "{path}: {refused:?}");
        assert!(refused.body.contains("-1125"), "{path}: {refused:?}");
    }
    let refused = mock.take_records();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused.iter().all(|r| r.method == "GET"));

    // The active key opens the stream on each of its paths.
    let paths = [
        format!("/ws/{key}"),
        format!("/private/ws/{key}"),
        format!("/private/ws?listenKey={key}"),
    ];
    let mut streams = Vec::new();
    for path in &paths {
        streams.push(WsClient::connect(mock.addr, &mock.ca, path, &[]).await);
    }
    let upgrades: Vec<(String, String)> = mock
        .take_records()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect();
    assert_eq!(
        upgrades,
        [
            (paths[0].clone(), String::new()),
            (paths[1].clone(), String::new()),
            ("/private/ws".to_owned(), format!("listenKey={key}")),
        ]
    );

    // A limit order placed over REST: its NEW update on every connection.
    let order = rest(
        &mock,
        "POST",
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&newClientOrderId=mine",
    )
    .await;
    let id = order["orderId"].clone();
    for ws in &mut streams {
        let event = order_update(ws, &id, "NEW").await;
        let o = &event["o"];
        assert!(event["E"].is_u64() && event["T"].is_u64(), "{event}");
        for (field, value) in [
            ("s", "BTCUSDT"),
            ("c", "mine"),
            ("S", "BUY"),
            ("o", "LIMIT"),
            ("f", "GTC"),
            ("q", "0.001"),
            ("p", "60000"),
            ("X", "NEW"),
            ("z", "0"),
            ("l", "0"),
            ("ps", "BOTH"),
        ] {
            assert_eq!(o[field], value, "{field}: {event}");
        }
        for field in ["ap", "sp", "L", "T", "t", "ot", "R"] {
            assert!(o.get(field).is_some(), "{field}: {event}");
        }
    }

    // A spot order sends nothing here: the next frame is the raw event sent after it.
    rest(
        &mock,
        "POST",
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=59000",
    )
    .await;
    let raw = json!({"e": "ORDER_TRADE_UPDATE", "E": 1, "T": 1,
        "o": {"s": "ETHUSDT", "c": "raw", "i": 7, "x": "NEW", "X": "NEW"}});
    mock.futures_event(raw.clone());
    for ws in &mut streams {
        assert_eq!(ws.next_json().await, Some(raw.clone()));
    }

    // Amended, then cancelled, over REST.
    rest(
        &mock,
        "PUT",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&orderId={id}&side=BUY&quantity=0.002&price=59500"),
    )
    .await;
    let amended = order_update(&mut streams[0], &id, "AMENDMENT").await;
    assert_eq!(
        (&amended["o"]["p"], &amended["o"]["q"], &amended["o"]["X"]),
        (&json!("59500"), &json!("0.002"), &json!("NEW"))
    );
    let cancelled = rest(
        &mock,
        "DELETE",
        "/fapi/v1/order",
        &format!("symbol=BTCUSDT&orderId={id}"),
    )
    .await;
    assert_eq!(cancelled["status"], "CANCELED");
    for ws in &mut streams {
        let event = order_update(ws, &id, "CANCELED").await;
        assert_eq!(event["o"]["X"], "CANCELED", "{event}");
    }

    // Filled: TRADE_LITE, the TRADE update, then the account's.
    let sell = rest(
        &mock,
        "POST",
        "/fapi/v1/order",
        "symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.5&price=3000",
    )
    .await;
    let sell_id = sell["orderId"].clone();
    order_update(&mut streams[0], &sell_id, "NEW").await;
    mock.fill_all();
    let lite = streams[0].next_json().await.unwrap();
    assert_eq!(lite["e"], "TRADE_LITE", "{lite}");
    assert_eq!(
        (&lite["i"], &lite["s"], &lite["l"], &lite["L"]),
        (&sell_id, &json!("ETHUSDT"), &json!("0.5"), &json!("3000"))
    );
    let trade = streams[0].next_json().await.unwrap();
    assert_eq!(
        (&trade["e"], &trade["o"]["x"], &trade["o"]["X"]),
        (
            &json!("ORDER_TRADE_UPDATE"),
            &json!("TRADE"),
            &json!("FILLED")
        ),
        "{trade}"
    );
    assert_eq!(
        (&trade["o"]["z"], &trade["o"]["ap"], &trade["o"]["t"]),
        (&json!("0.5"), &json!("3000"), &lite["t"])
    );
    let account = streams[0].next_json().await.unwrap();
    assert_eq!(account["e"], "ACCOUNT_UPDATE", "{account}");
    assert_eq!(account["a"]["m"], "ORDER");
    assert_eq!(account["a"]["B"][0]["a"], "USDT");
    assert_eq!(
        (&account["a"]["P"][0]["s"], &account["a"]["P"][0]["pa"]),
        (&json!("ETHUSDT"), &json!("-0.5"))
    );
    // The spot order filled too, and sent nothing here.
    mock.futures_event(raw.clone());
    assert_eq!(streams[0].next_json().await, Some(raw.clone()));

    // The stream takes no requests; what a client sends is recorded all the same.
    streams[1]
        .send_text(r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: Vec<Recorded> = mock
        .take_records()
        .into_iter()
        .filter(|r| r.method == "WS")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, paths[1]);
    assert_eq!(sent[0].body, r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#);

    // DELETE ends the key: every connection gets listenKeyExpired and is closed.
    let deleted = listen_key(&mock, "DELETE", Some(canary::API_KEY)).await;
    assert_eq!((deleted.status, body(&deleted)), (200, json!({})));
    for mut ws in streams {
        let expired = ws.event(|f| f["e"] == "listenKeyExpired").await;
        assert_eq!(expired["listenKey"], key.as_str(), "{expired}");
        assert!(expired["E"].is_string(), "{expired}");
        assert_eq!(ws.closed_with(Duration::from_secs(5)).await, Some(1000));
    }
    assert!(mock.listen_keys().is_empty());
    for method in ["PUT", "DELETE"] {
        let gone = listen_key(&mock, method, Some(canary::API_KEY)).await;
        assert_eq!(gone.status, 400, "{gone:?}");
        assert_eq!(
            body(&gone),
            json!({"code": -1125, "msg": "This listenKey does not exist."})
        );
    }
    let path = format!("/ws/{key}");
    let refused = WsClient::try_connect(mock.addr, &mock.ca, &path, &[])
        .await
        .map(|_| ())
        .expect_err("a deleted key opens nothing");
    assert_eq!(refused.status, 400);

    // A new key; expired by the exchange, its connection is told and closed too.
    let renewed = body(&listen_key(&mock, "POST", Some(canary::API_KEY)).await);
    let fresh = renewed["listenKey"].as_str().unwrap_or_default().to_owned();
    assert!(is_listen_key(&fresh) && fresh != key, "{renewed}");
    let path = format!("/private/ws?listenKey={fresh}");
    let mut ws = WsClient::connect(mock.addr, &mock.ca, &path, &[]).await;
    mock.expire_listen_key(&fresh);
    let expired = ws.event(|f| f["e"] == "listenKeyExpired").await;
    assert_eq!(expired["listenKey"], fresh.as_str());
    assert_eq!(ws.closed_with(Duration::from_secs(5)).await, Some(1000));
    assert!(mock.listen_keys().is_empty());
}
