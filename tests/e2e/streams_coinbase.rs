//! Coinbase's user WebSocket through keyward, at the root path: a subscription
//! carries the bot's JWT, signed with the key keyward issued to it and verified in
//! full (a JWT made for a REST call, or signed by another key, is refused and never
//! reaches the exchange); keyward subscribes with a JWT of the real key, passes
//! Coinbase's acknowledgement on, narrows the user channel to the bot's products,
//! and closes the connection when the key is revoked; coinbase-advanced-py and
//! ccxt.pro follow their orders through keyward changing only URLs, key and CA.

use std::time::Duration;

use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::python::run_client;
use keyward_tests::venues::VenueFixture;
use keyward_tests::venues::coinbase::{
    BOT_A_KEY, BOT_A_PEM, BOT_B_KEY, BOT_B_PEM, CANARY_KEY_NAME, key_name,
};
use keyward_tests::ws_client::{WsClient, coinbase_jwt, coinbase_ws_jwt, now_ms};
use keyward_tests::{FixturePolicy, TempDir};
use serde_json::{Value, json};

async fn start(mock: &Mock) -> Keyward {
    Keyward::serve_streaming(FixturePolicy::Venue(VenueFixture::Coinbase), mock, "").await
}

async fn connect(keyward: &Keyward) -> WsClient {
    keyward.websocket("/").await
}

fn subscribe(channel: &str, products: &[&str], jwt: Option<String>) -> Value {
    let mut message = json!({"type": "subscribe", "product_ids": products, "channel": channel});
    if let Some(jwt) = jwt {
        message["jwt"] = Value::String(jwt);
    }
    message
}

/// The frames the mock received on `/`, each keyward's: a JWT in one is the
/// account's key's and verified, and no bot's JWT ever reaches the exchange.
fn messages(records: &[Recorded], bot_jwts: &[&str]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r.method == "WS" && r.path == "/")
        .map(|record| {
            for jwt in bot_jwts {
                assert!(
                    !record.body.contains(jwt),
                    "a bot's JWT reached the exchange"
                );
            }
            let frame: Value = serde_json::from_str(&record.body).unwrap_or_default();
            if frame.get("jwt").is_some() {
                assert_eq!(record.signature_ok, Some(true), "{record:?}");
            }
            frame
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_subscriptions_are_decided_with_the_bots_jwt() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let kid_a = key_name("a", BOT_A_KEY);
    // The root is a WebSocket path only: a plain request there is what it always
    // was, a path no endpoint has.
    let host = vec![("Host".to_owned(), format!("localhost:{}", keyward.port()))];
    let plain = keyward.client.request("GET", "/", &host, b"").await;
    assert_eq!(keyward.refused_with(&plain), Some(400), "{plain:?}");
    assert!(
        plain
            .headers
            .iter()
            .any(|(k, v)| k == "x-keyward-error" && v == "path_non_canonical"),
        "{plain:?}"
    );
    let mut socket = connect(&keyward).await;

    // Refused, the connection up, nothing sent: a JWT signed by another bot's key
    // under bot A's name, one made for a REST call, and a channel keyward does not
    // relay.
    let now = now_ms() / 1000;
    let forged = coinbase_ws_jwt(&kid_a, BOT_B_PEM, now);
    let for_rest = coinbase_jwt(
        &kid_a,
        BOT_A_PEM,
        now,
        Some(&format!(
            "GET localhost:{}/api/v3/brokerage/accounts",
            keyward.port()
        )),
    );
    for (jwt, channel, reason) in [
        (Some(forged.clone()), "user", "auth_invalid"),
        (Some(for_rest.clone()), "user", "auth_invalid"),
        (None, "user", "auth_missing"),
        // `level2` without a JWT is market data, relayed (streams_market.rs); a
        // channel that is neither Coinbase's public nor its user one is refused.
        (None, "level3", "param_invalid"),
    ] {
        socket
            .send_text(&subscribe(channel, &["BTC-USD"], jwt).to_string())
            .await;
        let refused = socket.wait_for(|f| f["type"] == "error").await;
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.contains(reason)),
            "{reason}: {refused}"
        );
    }
    assert!(
        messages(&mock.records(), &[]).is_empty(),
        "{:?}",
        mock.records()
    );

    // Bot A's own JWT: keyward subscribes with the real key, and the bot gets
    // Coinbase's snapshot and acknowledgement.
    let jwt = coinbase_ws_jwt(&kid_a, BOT_A_PEM, now);
    socket
        .send_text(&subscribe("user", &["BTC-USD", "ETH-USD"], Some(jwt.clone())).to_string())
        .await;
    let ack = socket.wait_for(|f| f["channel"] == "subscriptions").await;
    assert!(
        ack["events"][0]["subscriptions"]["user"].is_array(),
        "{ack}"
    );
    let sent = messages(&mock.take_records(), &[&jwt, &forged, &for_rest]);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["channel"], "user");
    assert_eq!(sent[0]["product_ids"], json!(["BTC-USD", "ETH-USD"]));
    let claims = jwt_claims(sent[0]["jwt"].as_str().unwrap_or_default());
    assert_eq!(claims["sub"], CANARY_KEY_NAME);
    assert!(claims.get("uri").is_none(), "{claims}");

    // One update naming two orders: bot A trades BTC-USD only.
    let order =
        |id: &str, product: &str| json!({"order_id": id, "product_id": product, "status": "OPEN"});
    mock.coinbase_event(vec![order("1", "ETH-USD"), order("2", "BTC-USD")]);
    let update = socket
        .wait_for(|f| f["channel"] == "user" && f["events"][0]["type"] == "update")
        .await;
    let orders = update["events"][0]["orders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(orders.len(), 1, "{update}");
    assert_eq!(orders[0]["order_id"], "2");

    // A later JWT of the same key is verified and kept: presented again (as ccxt
    // does for two minutes) it is no replay on this connection.
    let later = coinbase_ws_jwt(&kid_a, BOT_A_PEM, now + 1);
    for _ in 0..2 {
        socket
            .send_text(&subscribe("futures_balance_summary", &[], Some(later.clone())).to_string())
            .await;
        let ack = socket
            .wait_for(|f| f["channel"] == "subscriptions" || f["type"] == "error")
            .await;
        assert_eq!(ack["channel"], "subscriptions", "{ack}");
    }
    // Heartbeats ask nothing of the account: sent without a decision, recorded so.
    socket
        .send_text(&subscribe("heartbeats", &[], None).to_string())
        .await;
    let beat = socket.wait_for(|f| f["channel"] == "heartbeats").await;
    assert!(beat["events"][0]["heartbeat_counter"].is_u64(), "{beat}");
    let audit = keyward.audit();
    assert!(
        audit
            .iter()
            .any(|r| r["reason"] == "stream_control" && r["stream_method"] == "subscribe")
    );
    let decided: Vec<&Value> = audit
        .iter()
        .filter(|r| {
            r["event"] == "request"
                && r["http"] == "ws"
                && r["decision"] == "allow"
                && r["reason"].is_null()
        })
        .collect();
    assert_eq!(decided.len(), 3, "{decided:?}");
    assert_eq!(decided[0]["bot"], "a");
    assert_eq!(
        decided[0]["path"],
        "/api/v3/brokerage/orders/historical/batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_bound_by_a_revoked_key_is_closed() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;
    let mut socket = connect(&keyward).await;
    let jwt = coinbase_ws_jwt(&key_name("a", BOT_A_KEY), BOT_A_PEM, now_ms() / 1000);
    socket
        .send_text(&subscribe("user", &["BTC-USD"], Some(jwt)).to_string())
        .await;
    socket.wait_for(|f| f["channel"] == "subscriptions").await;
    // Bot A's key is replaced by another and keyward reloads: the connection closes.
    let (other, _) = keyward::botjwt::generate().expect("a key");
    let text = std::fs::read_to_string(&keyward.config).expect("config");
    let replaced = text.replace(BOT_A_KEY, &keyward::botjwt::format_public_key(&other));
    assert_ne!(text, replaced);
    std::fs::write(&keyward.config, replaced).expect("config");
    keyward.running.app.reload("signal").expect("reload");
    assert_eq!(socket.closed_with(Duration::from_secs(5)).await, Some(1008));
}

fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let claims = jwt.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Runs a scenario of coinbase_ws_clients.py through keyward as bot B (its key
/// name and PEM, keyward's URLs and CA).
async fn scenario(keyward: &Keyward, name: &'static str) -> Value {
    let dir = TempDir::new("coinbase-ws-bot-key");
    let pem = dir.path().join("bot-b.pem");
    std::fs::write(&pem, BOT_B_PEM).expect("write the key file");
    let pem = pem.display().to_string();
    let args = keyward.scenario_args(name, "", &[&key_name("b", BOT_B_KEY), &pem]);
    run_client("coinbase_ws_clients.py", args, Vec::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_clients_follow_their_orders_through_keyward() {
    let mock = Mock::start().await;
    let keyward = start(&mock).await;

    let out = scenario(&keyward, "sdk-orders").await;
    assert_eq!(out["open_update"]["status"], "OPEN", "{out}");
    assert_eq!(out["cancelled_update"]["status"], "CANCELLED", "{out}");
    assert_eq!(
        out["open_update"]["order_id"], out["placed"]["order_id"],
        "{out}"
    );
    let _ = messages(&mock.take_records(), &[]);

    let out = scenario(&keyward, "ccxt-orders").await;
    assert_eq!(out["open_event"]["status"], "open", "{out}");
    assert_eq!(out["canceled_event"]["status"], "canceled", "{out}");
    assert_eq!(out["open_event"]["id"], out["placed"]["id"], "{out}");
    let _ = messages(&mock.take_records(), &[]);
}
