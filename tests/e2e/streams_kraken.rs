//! Kraken's authenticated WebSocket v2 through keyward: `GetWebSocketsToken` is
//! answered by keyward with a token it minted for the bot (Kraken is never asked for
//! the bot), keyward's own link carries the account's real token (fetched with a
//! signed REST call as the link opens; the mock checks every message's token), each
//! message is decided as its REST twin and written back from what the twin
//! validated, a refused one is answered in Kraken's shape and never reaches Kraken,
//! and execution updates reach the bot only for its own orders, cancels included
//! (which name no symbol). ccxt.pro trades and streams through keyward changing only
//! its URLs, key and CA.

use keyward_tests::FixturePolicy;
use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::{assert_refused, run_client};
use keyward_tests::venues::{VenueFixture, kraken};
use keyward_tests::ws_client::WsClient;
use serde_json::{Value, json};

async fn start(mock: &Mock) -> Keyward {
    Keyward::serve_streaming(FixturePolicy::Venue(VenueFixture::Kraken), mock, "").await
}

/// Bot B's WebSocket token, as its client asks for it: keyward's own.
async fn minted_token(keyward: &Keyward) -> String {
    let answer = kraken::private(
        &keyward.client,
        keyward.port(),
        Some(&keyward.tokens.bot_b),
        "GetWebSocketsToken",
        "application/x-www-form-urlencoded",
        "nonce=1",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(body["error"], json!([]), "{body}");
    assert_eq!(body["result"]["expires"], 900, "{body}");
    let token = body["result"]["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert_eq!(token.len(), 64, "{body}");
    token
}

/// Sends `method` with `params` as request `id` and waits for Kraken's answer to it.
async fn call(socket: &mut WsClient, method: &str, params: Value, id: u64) -> Value {
    socket
        .exchange(
            &json!({"method": method, "params": params, "req_id": id}),
            |f| f["req_id"] == id && f["method"] == method,
        )
        .await
}

fn limit_buy(symbol: &str, token: &str) -> Value {
    json!({
        "order_type": "limit", "side": "buy", "order_qty": 0.001,
        "limit_price": 60000, "symbol": symbol, "token": token
    })
}

/// The WebSocket messages the mock received: each on keyward's link, carrying the
/// account's token (which the mock issued and checked), never the bot's.
fn messages<'a>(records: &'a [Recorded], bot_token: &str) -> Vec<&'a Recorded> {
    let messages: Vec<&Recorded> = records.iter().filter(|r| r.method == "WS").collect();
    for message in &messages {
        assert!(
            !message.body.contains(bot_token),
            "the bot's token reached Kraken"
        );
        assert_eq!(message.authenticated, Some(true), "{message:?}");
    }
    messages
}

fn methods(records: &[Recorded], bot_token: &str) -> Vec<String> {
    messages(records, bot_token)
        .iter()
        .filter_map(|m| {
            serde_json::from_str::<Value>(&m.body).ok()?["method"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kraken_bot_trades_on_the_websocket_with_a_token_keyward_minted() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = minted_token(&keyward).await;
    assert!(mock.records().is_empty(), "{:?}", mock.records());

    let mut socket = keyward.websocket("/v2").await;
    let pong = socket
        .exchange(&json!({"method": "ping", "req_id": 1}), |f| {
            f["method"] == "pong"
        })
        .await;
    assert_eq!(pong["req_id"], 1);
    let subscribed = call(
        &mut socket,
        "subscribe",
        json!({"channel": "executions", "snap_orders": true, "token": token}),
        2,
    )
    .await;
    assert_eq!(subscribed["success"], true, "{subscribed}");
    // keyward asked Kraken for the account's token with a signed call of its own.
    let records = mock.take_records();
    let asked: Vec<&Recorded> = records
        .iter()
        .filter(|r| r.path == "/0/private/GetWebSocketsToken")
        .collect();
    assert_eq!(asked.len(), 1, "{records:?}");
    assert_eq!(asked[0].signature_ok, Some(true));
    assert_eq!(methods(&records, &token), ["subscribe"]);

    // ETH/USD is not bot B's: Kraken's error for the request, keyward's reason in
    // it, nothing sent. A forged token is no token.
    let refused = call(&mut socket, "add_order", limit_buy("ETH/USD", &token), 3).await;
    assert_eq!(refused["success"], false, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("EGeneral:Permission denied") && error.contains("symbol_not_allowed"),
        "{refused}"
    );
    let forged = call(
        &mut socket,
        "add_order",
        limit_buy("BTC/USD", &"F".repeat(64)),
        4,
    )
    .await;
    assert!(
        forged["error"]
            .as_str()
            .is_some_and(|e| e.contains("auth_invalid")),
        "{forged}"
    );
    let unknown = call(
        &mut socket,
        "amend_order",
        json!({"order_id": "OUNKNW-NOTKW-ORDER1", "order_qty": 0.002, "symbol": "BTC/USD", "token": token}),
        5,
    )
    .await;
    assert_eq!(unknown["success"], false, "{unknown}");
    let trailing = call(
        &mut socket,
        "add_order",
        json!({"order_type": "trailing-stop", "side": "sell", "order_qty": 0.001, "symbol": "BTC/USD",
               "triggers": {"price": 1, "price_type": "pct"}, "token": token}),
        6,
    )
    .await;
    assert!(
        trailing["error"]
            .as_str()
            .is_some_and(|e| e.contains("param_invalid")),
        "{trailing}"
    );
    assert!(methods(&mock.take_records(), &token).is_empty());

    // BTC/USD: placed, its event seen, cancelled, its cancel (which names no symbol)
    // seen too.
    let placed = call(&mut socket, "add_order", limit_buy("BTC/USD", &token), 7).await;
    assert_eq!(placed["success"], true, "{placed}");
    let order_id = placed["result"]["order_id"]
        .as_str()
        .expect("an order id")
        .to_owned();
    // As at Kraken, `pending_new` names the pair and `new` only the order: the bot
    // gets both, the second because keyward's records say the order is its own.
    let event = |exec_type: &'static str| {
        let order_id = order_id.clone();
        move |f: &Value| {
            f["channel"] == "executions"
                && f["data"][0]["order_id"] == order_id.as_str()
                && f["data"][0]["exec_type"] == exec_type
        }
    };
    let pending = socket.wait_for(event("pending_new")).await;
    assert_eq!(pending["data"][0]["symbol"], "BTC/USD", "{pending}");
    let new = socket.wait_for(event("new")).await;
    assert!(new["data"][0].get("symbol").is_none(), "{new}");
    let cancelled = call(
        &mut socket,
        "cancel_order",
        json!({"order_id": [order_id], "token": token}),
        8,
    )
    .await;
    assert_eq!(cancelled["success"], true, "{cancelled}");
    let gone = socket.wait_for(event("canceled")).await;
    assert!(gone["data"][0].get("symbol").is_none(), "{gone}");
    let records = mock.take_records();
    assert_eq!(methods(&records, &token), ["add_order", "cancel_order"]);
    let sent: Value = serde_json::from_str(&messages(&records, &token)[0].body).expect("JSON");
    assert_eq!(sent["params"]["symbol"], "BTC/USD", "{sent}");
    assert_eq!(sent["params"]["order_qty"], 0.001, "{sent}");

    // Every decided message has its record, every forwarded one its outcome.
    let audit = keyward.audit();
    let forwarded = audit
        .iter()
        .filter(|r| r["event"] == "request" && r["http"] == "ws")
        .filter(|r| r["decision"] == "allow" && r["reason"].is_null())
        .count();
    let outcomes = audit.iter().filter(|r| r["event"] == "outcome").count();
    assert_eq!(forwarded, 3, "subscribe, add_order, cancel_order");
    assert_eq!(outcomes, 3);
    let printed = format!("{audit:?}");
    assert!(!printed.contains(&token), "the token was recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kraken_bot_sees_only_its_own_orders_in_each_update() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let token = minted_token(&keyward).await;
    let mut socket = keyward.websocket("/v2").await;
    let subscribed = call(
        &mut socket,
        "subscribe",
        json!({"channel": "executions", "token": token}),
        1,
    )
    .await;
    assert_eq!(subscribed["success"], true, "{subscribed}");
    let placed = call(&mut socket, "add_order", limit_buy("BTC/USD", &token), 2).await;
    let own = placed["result"]["order_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    socket
        .wait_for(|f| f["channel"] == "executions" && f["data"][0]["order_id"] == own.as_str())
        .await;
    // One update naming four orders: the bot's (by symbol), another pair's, an order
    // keyward never placed (named by id only), and the bot's own again by id only.
    mock.kraken_execution(vec![
        json!({"order_id": own, "symbol": "BTC/USD", "exec_type": "trade", "order_status": "partially_filled"}),
        json!({"order_id": "OETHUS-DOTHER-ORDER1", "symbol": "ETH/USD", "exec_type": "new", "order_status": "new"}),
        json!({"order_id": "OFOREI-GNORDE-R00001", "exec_type": "canceled", "order_status": "canceled"}),
        json!({"order_id": own, "exec_type": "filled", "order_status": "filled"}),
    ]);
    let update = socket
        .wait_for(|f| {
            f["channel"] == "executions" && f["data"].as_array().is_some_and(|d| d.len() > 1)
        })
        .await;
    let ids: Vec<&str> = update["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["order_id"].as_str())
        .collect();
    assert_eq!(ids, [own.as_str(), own.as_str()], "{update}");
    // An update that is none of the bot's never reaches it: the next one the bot
    // gets is the one after it, about its own order.
    mock.kraken_execution(vec![json!({"order_id": "OFOREI-GNORDE-R00002", "exec_type": "canceled", "order_status": "canceled"})]);
    mock.kraken_execution(vec![json!({"order_id": own, "symbol": "BTC/USD", "exec_type": "status", "order_status": "filled"})]);
    let next = socket
        .wait_for(|f| f["channel"] == "executions" && f["type"] == "update")
        .await;
    assert_eq!(next["data"][0]["order_id"], own.as_str(), "{next}");
}

/// Runs a scenario of `kraken_ws_clients.py` through keyward as bot B: keyward's
/// URLs, bot B's token as the key, a secret of its own (base64, as ccxt signs with
/// it; keyward signs again) and keyward's CA.
async fn scenario(keyward: &Keyward, name: &'static str) -> Value {
    let args = keyward.scenario_args(name, "", &[&keyward.tokens.bot_b, "Ym90cy1vd24tc2VjcmV0"]);
    run_client("kraken_ws_clients.py", args, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ccxt_pro_trades_and_streams_on_kraken_through_keyward() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;

    // watch_orders, create_order_ws, its events, cancel_order_ws, its event: the
    // same as straight to Kraken (ws_mock_kraken.rs), cancel included.
    let out = scenario(&keyward, "ccxt-orders").await;
    let id = out["placed"]["id"].clone();
    assert!(id.is_string(), "{out}");
    assert_eq!(out["new_event"]["status"], "open", "{out}");
    assert_eq!(out["new_event"]["symbol"], "BTC/USD", "{out}");
    assert_eq!(out["cancel"], json!({"id": id, "success": true}), "{out}");
    assert_eq!(out["canceled_event"]["status"], "canceled", "{out}");
    let records = mock.take_records();
    assert_eq!(
        methods(&records, &keyward.tokens.bot_b),
        ["subscribe", "add_order", "cancel_order"]
    );
    assert!(
        !records
            .iter()
            .any(|r| r.everything().contains("Ym90cy1vd24tc2VjcmV0")),
        "the bot's secret reached Kraken"
    );

    let out = scenario(&keyward, "ccxt-balance").await;
    assert_eq!(out["balance"], json!({"USD": 1000.0, "BTC": 0.5}), "{out}");

    // ETH/USD is not bot B's: ccxt raises Kraken's error (its WebSocket error
    // table has no class for a permission error) with keyward's reason in it, and
    // nothing reaches Kraken.
    mock.clear();
    let out = scenario(&keyward, "ccxt-refused").await;
    assert_refused(
        "ccxt.pro kraken",
        "an ETH/USD order",
        &out["refused"],
        &["ExchangeError"],
        "symbol_not_allowed",
    );
    let records = mock.records();
    assert!(
        methods(&records, &keyward.tokens.bot_b)
            .iter()
            .all(|m| m == "subscribe"),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn krakens_public_channels_are_relayed_on_the_same_path_from_its_market_host() {
    // Kraken serves its public channels on `/v2` of a host of its own: a second
    // mock stands for it, named by the account's `market_upstream`.
    let (mock, market) = (Mock::start().await, Mock::start().await);
    let (keyward, _cas) =
        Keyward::serve_with_market_host(FixturePolicy::Venue(VenueFixture::Kraken), &mock, &market)
            .await;
    let token = minted_token(&keyward).await;
    let mut socket = keyward.websocket("/v2").await;
    // A public subscription, no token: relayed to the market host as written.
    let ticker = call(
        &mut socket,
        "subscribe",
        json!({"channel": "ticker", "symbol": ["BTC/USD"]}),
        1,
    )
    .await;
    assert_eq!(ticker["success"], true, "{ticker}");
    let data = socket
        .wait_for(|f| f["channel"] == "ticker" && f["type"] == "snapshot")
        .await;
    assert_eq!(data["data"][0]["last"], 60000.0, "{data}");
    // The private channel on the same connection goes to the authenticated host.
    let executions = call(
        &mut socket,
        "subscribe",
        json!({"channel": "executions", "token": token}),
        2,
    )
    .await;
    assert_eq!(executions["success"], true, "{executions}");
    let public: Vec<String> = market
        .records()
        .iter()
        .filter(|r| r.method == "WS")
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(public.len(), 1, "{public:?}");
    assert!(public[0].contains("ticker") && !public[0].contains("token"));
    assert_eq!(methods(&mock.records(), &token), ["subscribe"]);
    // A public subscription that carries a token is no public subscription: it is
    // read as a private one, and refused there (a market channel).
    let mixed = call(
        &mut socket,
        "subscribe",
        json!({"channel": "ticker", "symbol": ["BTC/USD"], "token": token}),
        3,
    )
    .await;
    assert_eq!(mixed["success"], false, "{mixed}");
    assert_eq!(
        market.records().iter().filter(|r| r.method == "WS").count(),
        1
    );
}
