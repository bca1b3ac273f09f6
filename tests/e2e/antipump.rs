//! The 3Commas pattern on an allowlisted pair, and what stops it: price bands around
//! keyward's own reference prices (every order form), fail-closed when no fresh price
//! is known, rolling budgets that survive `kill -9`, the open-order limit, the kill
//! switch under load, the circuit breaker, and `explain` showing what it relied on.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use keyward_tests::client::{Response, bot_headers, build};
use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Behaviour, Mock};
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::{FixturePolicy, Serving, digest, fixed_now, rfc3339, run_cli, token};

const EXE: &str = env!("CARGO_BIN_EXE_keyward-e2e");

/// A spot bot and a futures bot with a 5% band, every order type, a 1,000 cap.
fn banded_bots(mock: &Mock) -> String {
    let expires = rfc3339(SystemTime::now() + Duration::from_secs(7 * 86_400));
    format!(
        r#"
[accounts.futures]
venue = "binance-usdm"
secret = "futures"
upstream = "{url}"
upstream_ca = "{ca}"

[bots.band]
account = "spot"
tokens = ["{spot}"]
expires = "{expires}"
allow = ["trade", "cancel", "read"]
symbols = ["BTCUSDT", "ETHUSDT"]
order_types = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]
max_order_notional = "1000"
price_band = "5%"

[bots.fut]
account = "futures"
tokens = ["{fut}"]
expires = "{expires}"
allow = ["trade", "cancel", "read"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT", "MARKET"]
max_order_notional = "1000"
price_band = "5%"

[bots.shadow]
account = "spot"
tokens = ["{shadow}"]
expires = "{expires}"
allow = ["trade"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT"]
max_order_notional = "1000"
price_band = "5%"
mode = "shadow"
"#,
        url = mock.url(),
        ca = mock.ca.display(),
        spot = digest(&token("band", "active")),
        fut = digest(&token("fut", "active")),
        shadow = digest(&token("shadow", "active")),
    )
}

/// 60 USDT, under P0's 100 cap and within a 5% band of the mock's default quote.
const LIMIT_BUY_AT_60000: &str =
    "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";

/// P0 in a separate `keyward-e2e` process, for what needs `kill -9`.
fn spawn_process(serving: Serving) -> KeywardProcess {
    KeywardProcess::spawn_serving(
        Path::new(EXE),
        FixturePolicy::P0,
        serving,
        VaultKey::File,
        &[],
    )
}

async fn send(keyward: &Keyward, who: &str, method: &str, path: &str, body: &str) -> Response {
    let token = token(who, "active");
    let headers = bot_headers(keyward.port(), &token, !body.is_empty());
    keyward
        .client
        .request(method, path, &headers, body.as_bytes())
        .await
}

/// Sends `(who, method, path, body)` with the mock's records cleared; asserts keyward
/// refused it with `status` and `code` and the exchange saw nothing.
async fn refused_unsent(
    keyward: &Keyward,
    mock: &Mock,
    (who, method, path, body): (&str, &str, &str, &str),
    status: u16,
    code: &str,
) -> Response {
    mock.clear();
    let response = send(keyward, who, method, path, body).await;
    assert_eq!(
        response.status, status,
        "{method} {path} {body}: {}",
        response.body
    );
    assert_eq!(response.header("x-keyward-error"), Some(code), "{body}");
    assert!(
        mock.records().is_empty(),
        "{method} {path} {body} reached the exchange"
    );
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_form_is_held_to_the_band_around_keywards_own_price() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables: banded_bots(&mock),
            ..Serving::against(&mock)
        },
    )
    .await;
    // Orders to amend and replace: a cancel-replace or an amend is judged against the
    // order it names, which must be one the bot placed.
    let resting = |who: &'static str, path: &'static str| {
        let keyward = &keyward;
        async move {
            let placed = send(keyward, who, "POST", path, LIMIT_BUY_AT_60000).await;
            assert_eq!(placed.status, 200, "{}", placed.body);
            let placed: serde_json::Value = serde_json::from_str(&placed.body).unwrap();
            placed["orderId"].to_string()
        }
    };
    let spot_order = resting("band", "/api/v3/order").await;
    let futures_order = resting("fut", "/fapi/v1/order").await;
    let replace = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&cancelReplaceMode=STOP_ON_FAILURE&timeInForce=GTC&quantity=0.001&price=90000&cancelOrderId={spot_order}"
    );
    let amend =
        format!("symbol=BTCUSDT&side=BUY&quantity=0.001&price=99999&orderId={futures_order}");
    // BTCUSDT bid 59990, ask 60010, 5-minute average 60000: buys up to 63000 (the
    // average is below the ask), sells down to 57000 (it is above the bid).
    let refused: Vec<(&str, &str, &str, &str)> = vec![
        (
            "limit buy above",
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=63001",
        ),
        (
            "limit sell below",
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.001&price=56999",
        ),
        (
            "maker buy above",
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT_MAKER&quantity=0.001&price=70000",
        ),
        (
            "stop-limit sell below",
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=0.001&price=1&stopPrice=50000",
        ),
        (
            "cancel-replace into a pump",
            "POST",
            "/api/v3/order/cancelReplace",
            &replace,
        ),
        (
            "order list with one bad leg",
            "POST",
            "/api/v3/orderList/oto",
            "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=60000&workingQuantity=0.001&workingTimeInForce=GTC&pendingType=LIMIT&pendingSide=SELL&pendingPrice=1&pendingQuantity=0.001&pendingTimeInForce=GTC",
        ),
    ];
    for (what, method, path, body) in refused {
        let request = ("band", method, path, body);
        let response = refused_unsent(&keyward, &mock, request, 403, "price_out_of_band").await;
        assert!(response.body.contains("5%"), "{what}: {}", response.body);
    }
    // Orders that execute at the market's price have no price the band could hold,
    // whatever their size unit: a thin book fills them anywhere.
    for (what, body) in [
        (
            "market buy",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.02",
        ),
        (
            "stop-market buy",
            "symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=0.015&stopPrice=70000",
        ),
        (
            "quote-sized market buy",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=500",
        ),
        (
            "small market buy",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001",
        ),
    ] {
        let request = ("band", "POST", "/api/v3/order", body);
        let response = refused_unsent(&keyward, &mock, request, 403, "price_unbounded");
        assert!(response.await.body.contains("5%"), "{what}");
    }
    // USDⓈ-M: an amend to an out-of-band price, and a batch with one bad element.
    for (what, method, body) in [
        ("amend", "PUT", amend.as_str()),
        (
            "batch",
            "POST",
            r#"batchOrders=%5B%7B%22symbol%22%3A%22BTCUSDT%22%2C%22side%22%3A%22BUY%22%2C%22type%22%3A%22LIMIT%22%2C%22timeInForce%22%3A%22GTC%22%2C%22quantity%22%3A%220.001%22%2C%22price%22%3A%2260000%22%7D%2C%7B%22symbol%22%3A%22BTCUSDT%22%2C%22side%22%3A%22SELL%22%2C%22type%22%3A%22LIMIT%22%2C%22timeInForce%22%3A%22GTC%22%2C%22quantity%22%3A%220.001%22%2C%22price%22%3A%221%22%7D%5D"#,
        ),
    ] {
        let path = if what == "amend" {
            "/fapi/v1/order"
        } else {
            "/fapi/v1/batchOrders"
        };
        let request = ("fut", method, path, body);
        refused_unsent(&keyward, &mock, request, 403, "price_out_of_band").await;
    }
    // In band: both edges (the buy ceiling from the 5-minute average, 60000, below
    // the ask; the sell floor from it too, above the bid), an immediate-or-cancel
    // limit order instead of a market order, a batch.
    mock.clear();
    for body in [
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=63000",
        "symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.001&price=57000",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.01&price=62000",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=FOK&quantity=0.008&price=61000",
        "symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.1&price=2900",
    ] {
        let response = send(&keyward, "band", "POST", "/api/v3/order", body).await;
        assert_eq!(response.status, 200, "{body}: {}", response.body);
    }
    let batch = r#"batchOrders=%5B%7B%22symbol%22%3A%22BTCUSDT%22%2C%22side%22%3A%22BUY%22%2C%22type%22%3A%22LIMIT%22%2C%22timeInForce%22%3A%22GTC%22%2C%22quantity%22%3A%220.001%22%2C%22price%22%3A%2260000%22%7D%5D"#;
    assert_eq!(
        send(&keyward, "fut", "POST", "/fapi/v1/batchOrders", batch)
            .await
            .status,
        200
    );
    let records = mock.records();
    assert_eq!(records.len(), 6);
    assert!(records.iter().all(|r| r.signature_ok == Some(true)));
    // keyward fetched the prices itself, from the public ticker, unsigned.
    let fetched: Vec<_> = mock
        .keywards_own()
        .into_iter()
        .filter(|r| r.path.ends_with("/ticker/bookTicker"))
        .collect();
    assert!(!fetched.is_empty());
    assert!(
        fetched
            .iter()
            .all(|r| r.header("x-mbx-apikey").is_none() && r.signature_ok.is_none())
    );

    // Shadow mode forwards the out-of-band order and records what it would refuse.
    mock.clear();
    let response = send(
        &keyward,
        "shadow",
        "POST",
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=70000",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(mock.records().len(), 1);
    let audit = keyward.audit();
    let shadow = audit
        .iter()
        .rfind(|l| l["event"] == "request" && l["bot"] == "shadow")
        .unwrap();
    assert_eq!(shadow["decision"], "shadow-allow");
    assert_eq!(shadow["reason"], "price_out_of_band");
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fresh_reference_price_banded_orders_are_refused() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables: banded_bots(&mock),
            account_extra: "reference_max_age_ms = 600".to_owned(),
            ..Serving::against(&mock)
        },
    )
    .await;
    let order = LIMIT_BUY_AT_60000;
    let unpriced = ("band", "POST", "/api/v3/order", order);
    let refused_unpriced = || {
        refused_unsent(
            &keyward,
            &mock,
            unpriced,
            503,
            "reference_price_unavailable",
        )
    };
    // Missing: the exchange has no ticker for it.
    mock.set_quote("BTCUSDT", None);
    refused_unpriced().await;
    // Fresh: the order passes, once the failed fetch's back-off (half a second) has
    // passed.
    mock.set_quote("BTCUSDT", Some(("59990", "60010")));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        send(&keyward, "band", "POST", "/api/v3/order", order)
            .await
            .status,
        200
    );
    // Stale: the ticker stops answering; once the last price is older than 600 ms,
    // orders stop too.
    mock.set_quote("BTCUSDT", None);
    tokio::time::sleep(Duration::from_millis(900)).await;
    refused_unpriced().await;
    // A crossed book is no reference either.
    mock.set_quote("BTCUSDT", Some(("60010", "59990")));
    refused_unpriced().await;
    keyward.running.shutdown().await;
}

/// A limit buy of 0.001 BTC at `price`: 60 of notional at 60000.
fn order(price: &str) -> String {
    format!("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price={price}")
}

/// A keyward process whose bot `a` may spend 200 a day.
fn with_daily_budget_of_200(mock: &Mock) -> KeywardProcess {
    spawn_process(Serving {
        bot_extra: "daily_notional = \"200\"".to_owned(),
        ..Serving::against(mock)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_budget_stops_many_small_orders_and_survives_kill_9() {
    let mock = Mock::start().await;
    let keyward = with_daily_budget_of_200(&mock);
    // Three orders of 60 fit in 200; the fourth (another 60) does not, though each is
    // far under the 100 per-order cap.
    for _ in 0..3 {
        assert_eq!(
            keyward
                .post_as_bot("/api/v3/order", &order("60000"))
                .await
                .status,
            200
        );
    }
    let refused = keyward.post_as_bot("/api/v3/order", &order("60000")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.header("x-keyward-error"),
        Some("daily_notional_exceeded")
    );
    assert!(refused.body.contains("180 spent"), "{}", refused.body);
    assert_eq!(mock.records().len(), 3);
    // An order the exchange refuses outright (-1021, 400) gives its 20 back; the
    // next 20 then fits exactly.
    mock.set(Behaviour::TimestampOnce);
    assert_eq!(
        keyward
            .post_as_bot("/api/v3/order", &order("20000"))
            .await
            .status,
        400
    );
    assert_eq!(
        keyward
            .post_as_bot("/api/v3/order", &order("20000"))
            .await
            .status,
        200
    );
    assert_eq!(
        keyward
            .post_as_bot("/api/v3/order", &order("20000"))
            .await
            .status,
        403
    );
    assert_eq!(mock.records().len(), 5);

    // kill -9 and start again: the budget is rebuilt from the audit log.
    let keyward = keyward.kill_and_restart();
    let refused = keyward.post_as_bot("/api/v3/order", &order("60000")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.header("x-keyward-error"),
        Some("daily_notional_exceeded")
    );
    assert!(refused.body.contains("200 spent"), "{}", refused.body);
    assert_eq!(mock.records().len(), 5, "nothing more reached the exchange");
    assert!(keyward.log().contains("budgets rebuilt from the audit log"));
}

/// The next 20 is refused with the whole 200 spent, and nothing more than the
/// `reached` orders before it reaches the exchange.
async fn refused_with_200_spent(keyward: &KeywardProcess, mock: &Mock, reached: usize) {
    let refused = keyward.post_as_bot("/api/v3/order", &order("20000")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("200 spent"), "{}", refused.body);
    assert_eq!(
        mock.records().len(),
        reached,
        "the refusal never reached the exchange"
    );
}

/// A clean stop leaves a checkpoint, and the next start reads the budgets back from
/// it plus the records written after it; a checkpoint that no longer matches the
/// audit log is set aside and the whole log replayed. Each way the budget counts
/// the same spending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_come_back_from_the_checkpoint_of_a_clean_stop_or_from_the_log() {
    let mock = Mock::start().await;
    let keyward = with_daily_budget_of_200(&mock);
    for _ in 0..3 {
        let placed = keyward.post_as_bot("/api/v3/order", &order("60000")).await;
        assert_eq!(placed.status, 200, "{}", placed.body);
    }
    let checkpoint = keyward.path().join("keyward-checkpoint.json");
    assert!(!checkpoint.exists());

    // A clean stop writes the checkpoint; the next start reads it back.
    let logged = keyward.log().len();
    let keyward = keyward.stop_and_restart();
    assert!(checkpoint.exists(), "{}", keyward.log());
    let log = keyward.log()[logged..].to_owned();
    assert!(
        log.contains("checkpoint written for the next start"),
        "{log}"
    );
    assert!(
        log.contains("read back from the checkpoint of the last clean stop"),
        "{log}"
    );
    assert!(!log.contains("budgets rebuilt from the audit log"), "{log}");
    let placed = keyward.post_as_bot("/api/v3/order", &order("20000")).await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_eq!(mock.records().len(), 4);

    // kill -9: the checkpoint still holds for what came before it, and the 20 spent
    // after it is replayed from the log.
    let logged = keyward.log().len();
    let keyward = keyward.kill_and_restart();
    let log = keyward.log()[logged..].to_owned();
    assert!(
        log.contains("read back from the checkpoint of the last clean stop"),
        "{log}"
    );
    refused_with_200_spent(&keyward, &mock, 4).await;

    // A checkpoint whose mark the log does not hold is not used: the whole log is.
    let logged = keyward.log().len();
    let keyward = keyward.stop_and_restart();
    let text = std::fs::read_to_string(&checkpoint).unwrap();
    let marked: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sha = marked["audit"]["last_line_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = text.replace(&sha, &"0".repeat(64));
    assert_ne!(forged, text);
    keyward.signal("KILL");
    std::fs::write(&checkpoint, forged).unwrap();
    let keyward = keyward.kill_and_restart();
    let log = keyward.log()[logged..].to_owned();
    assert!(log.contains("checkpoint not used"), "{log}");
    assert!(log.contains("budgets rebuilt from the audit log"), "{log}");
    refused_with_200_spent(&keyward, &mock, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_orders_are_capped_until_cancelled_or_filled() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            server_extra: "open_orders_check_ms = 200".to_owned(),
            bot_extra: "max_open_orders = 2".to_owned(),
            ..Serving::against(&mock)
        },
    )
    .await;
    let bot = keyward.tokens.bot.clone();
    let order = LIMIT_BUY_AT_60000;
    let first = keyward.post(&bot, "/api/v3/order", order).await;
    assert_eq!(first.status, 200);
    assert_eq!(keyward.post(&bot, "/api/v3/order", order).await.status, 200);
    let third = keyward.post(&bot, "/api/v3/order", order).await;
    assert_eq!(third.status, 403, "{}", third.body);
    assert_eq!(
        third.header("x-keyward-error"),
        Some("max_open_orders_exceeded")
    );
    // A cancel makes room.
    let id: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    let cancel = format!("/api/v3/order?symbol=BTCUSDT&orderId={}", id["orderId"]);
    let headers = bot_headers(keyward.port(), &bot, false);
    let cancelled = keyward
        .client
        .request("DELETE", &cancel, &headers, b"")
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(keyward.post(&bot, "/api/v3/order", order).await.status, 200);
    assert_eq!(keyward.post(&bot, "/api/v3/order", order).await.status, 403);
    // Fills are noticed by keyward's own check of the exchange's open orders.
    mock.fill_all();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = keyward.post(&bot, "/api/v3/order", order).await;
        if response.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fills never freed the limit: {}",
            response.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checks = mock
        .keywards_own()
        .into_iter()
        .filter(|r| r.path == "/api/v3/openOrders" && r.method == "GET")
        .count();
    assert!(checks > 0);
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_under_load_stops_every_signed_request_but_the_cancels() {
    let mock = Mock::start().await;
    let keyward = Arc::new(
        Keyward::serve(
            FixturePolicy::P0,
            Serving {
                order_rate: Some("100000/s".to_owned()),
                // Load beyond a real account's order limits: a test exchange's.
                account_extra: "exchange_limits_multiplier = 1000000".to_owned(),
                ..Serving::against(&mock)
            },
        )
        .await,
    );
    let config = keyward.config.to_str().unwrap().to_owned();
    // Two resting orders to cancel.
    let order = LIMIT_BUY_AT_60000;
    let mut resting = Vec::new();
    for _ in 0..2 {
        let placed = keyward
            .post(&keyward.tokens.bot, "/api/v3/order", order)
            .await;
        assert_eq!(placed.status, 200);
        let placed: serde_json::Value = serde_json::from_str(&placed.body).unwrap();
        resting.push(placed["orderId"].to_string());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let keyward = keyward.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (token, method, path, body) = if worker % 2 == 0 {
                (keyward.tokens.bot.clone(), "POST", "/api/v3/order", order)
            } else {
                (keyward.tokens.bot_b.clone(), "GET", "/api/v3/account", "")
            };
            let mut connection = keyward.client.keep_alive().await;
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let headers = bot_headers(keyward.port(), &token, !body.is_empty());
                let response = connection
                    .send(&build(method, path, &headers, body.as_bytes()))
                    .await;
                answers.push((
                    Instant::now(),
                    response.status,
                    response.header("x-keyward-error").map(str::to_owned),
                ));
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before_freeze = mock.records().len();
    assert!(before_freeze > 4, "load was flowing");
    let (code, out, err) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            run_cli(
                &[
                    "--config",
                    &config,
                    "freeze",
                    "--cancel-open-orders",
                    "--json",
                ],
                fixed_now(),
            )
        }
    })
    .await
    .unwrap();
    let frozen_at = Instant::now();
    assert_eq!(code, 0, "{out}{err}");
    let at_freeze = mock.records().len();
    let own_at_freeze = mock.keywards_own().len();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["frozen"]["all"]["since"].is_string(), "{report}");
    let cancelled: Vec<&serde_json::Value> =
        report["cancelled"].as_array().unwrap().iter().collect();
    let btc = cancelled.iter().find(|c| c["symbol"] == "BTCUSDT").unwrap();
    assert_eq!(btc["status"], "200");
    assert!(btc["orders"].as_array().unwrap().len() >= 2, "{report}");
    assert!(
        mock.open_orders().is_empty(),
        "every open order was cancelled"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mock.records().len(),
        at_freeze,
        "a bot's request reached the exchange after the freeze returned"
    );
    let signed_after: Vec<_> = mock.keywards_own()[own_at_freeze..]
        .iter()
        .filter(|r| r.signature_ok.is_some())
        .cloned()
        .collect();
    assert!(
        signed_after.is_empty(),
        "nothing was signed after the freeze: {signed_after:?}"
    );
    let cancels = mock.keywards_own()[..own_at_freeze]
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == "/api/v3/openOrders")
        .count();
    assert!(
        cancels >= 2,
        "keyward cancelled with its own key on each symbol"
    );
    // A bot's own cancel still goes out, signed: freezing must not trap orders.
    let headers = bot_headers(keyward.port(), &keyward.tokens.bot, false);
    let cancel = keyward
        .client
        .request(
            "DELETE",
            &format!("/api/v3/order?symbol=BTCUSDT&orderId={}", resting[0]),
            &headers,
            b"",
        )
        .await;
    assert_ne!(cancel.header("x-keyward-error"), Some("frozen"));
    let reached = mock.records();
    assert_eq!(
        reached.len(),
        at_freeze + 1,
        "the cancel reached the exchange"
    );
    let last = reached.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("DELETE", "/api/v3/order")
    );
    assert_eq!(last.signature_ok, Some(true));
    // The admin listener reports the freeze but cannot lift it: only the control
    // socket (keyward's own uid) can.
    let admin = keyward.running.admin_addr.unwrap();
    let state = keyward_tests::client::admin_get(admin, "/frozen").await;
    assert!(state.body.contains("\"all\""), "{}", state.body);
    let refused = keyward_tests::client::admin_request(admin, "POST", "/unfreeze").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let (code, out, err) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || run_cli(&["--config", &config, "unfreeze"], fixed_now())
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut frozen_answers = 0;
    let mut resumed = 0;
    for worker in workers {
        for (at, status, reason) in worker.await.unwrap() {
            if at > frozen_at && reason.as_deref() == Some("frozen") {
                assert_eq!(status, 503);
                frozen_answers += 1;
            }
            if at > frozen_at && status == 200 {
                resumed += 1;
            }
        }
    }
    eprintln!(
        "freeze under load: {at_freeze} bot requests reached the exchange before the \
         freeze returned, none after it; {frozen_answers} answered frozen, {resumed} \
         answered 200 after unfreeze"
    );
    assert!(frozen_answers > 0, "bots were told they are frozen");
    assert!(resumed > 0, "unfreeze let traffic resume");
    assert!(mock.records().len() > at_freeze);
    let audit = keyward.audit();
    assert!(audit.iter().any(|l| l["event"] == "freeze"));
    assert!(audit.iter().any(|l| l["event"] == "unfreeze"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_freeze_persists_across_restarts_and_the_circuit_breaker_trips_it() {
    let mock = Mock::start().await;
    let keyward = spawn_process(Serving {
        account_extra: "freeze_after_denials = \"5/m\"".to_owned(),
        ..Serving::against(&mock)
    });
    let good = LIMIT_BUY_AT_60000;
    let probe = "symbol=DMGUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1000&price=0.05";
    assert_eq!(keyward.post_as_bot("/api/v3/order", good).await.status, 200);
    for _ in 0..5 {
        assert_eq!(
            keyward.post_as_bot("/api/v3/order", probe).await.status,
            403
        );
    }
    // One format on stderr: every line is a JSON record, keyward's own notes (the
    // configuration's warnings, where it listens) included.
    let log = keyward.log();
    let not_json: Vec<&str> = log
        .lines()
        .filter(|line| serde_json::from_str::<serde_json::Value>(line).is_err())
        .collect();
    assert!(
        not_json.is_empty(),
        "lines that are not JSON: {not_json:#?}"
    );
    assert!(
        log.lines().any(|l| l.contains(r#""level":"WARN""#)
            && l.contains("has expired")
            && l.contains(r#""target":"keyward::cli""#)),
        "the configuration's warning is not a log record:\n{log}"
    );
    // One access line per request, its fields at the top level of the JSON line.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "keyward::access")
        .collect();
    assert_eq!(access.len(), 6, "{log}");
    assert!(
        access
            .iter()
            .all(|l| l["message"] == "request" && l.get("fields").is_none())
    );
    assert_eq!(access[0]["decision"], "allow");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["method"], "POST");
    assert_eq!(access[0]["path"], "/api/v3/order");
    assert!(access[0]["upstream_ms"].is_u64() && access[0]["total_ms"].is_u64());
    for line in &access[1..] {
        assert_eq!(line["decision"], "deny");
        assert_eq!(line["reason"], "symbol_not_allowed");
        assert_eq!(line["status"], 403);
        assert!(line["bot"].is_string());
    }
    assert!(
        !log.contains("Some("),
        "a Debug rendering reached the log: {log}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let frozen = loop {
        let response = keyward.post_as_bot("/api/v3/order", good).await;
        if response.status == 503 {
            break response;
        }
        assert!(Instant::now() < deadline, "the breaker did not trip");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(frozen.header("x-keyward-error"), Some("frozen"));
    assert!(frozen.body.contains("circuit breaker"), "{}", frozen.body);
    assert!(keyward.log().contains("ALERT: keyward is frozen"));
    assert_eq!(
        keyward.metric("keyward_frozen{account=\"spot\"}"),
        Some(1.0)
    );
    // Still frozen after kill -9.
    let keyward = keyward.kill_and_restart();
    assert_eq!(keyward.post_as_bot("/api/v3/order", good).await.status, 503);
    let config = keyward.config.to_str().unwrap().to_owned();
    // A misspelt account is an error, not an unfreeze of nothing.
    let (code, out, err) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            run_cli(
                &["--config", &config, "unfreeze", "--account", "sopt"],
                fixed_now(),
            )
        }
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("no account named `sopt`"), "{err}");
    assert!(
        !keyward
            .audit()
            .iter()
            .any(|l| l["event"] == "unfreeze" && l["account"] == "sopt")
    );
    assert_eq!(keyward.post_as_bot("/api/v3/order", good).await.status, 503);
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["--config", &config, "unfreeze", "--account", "spot"],
            fixed_now(),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(keyward.post_as_bot("/api/v3/order", good).await.status, 200);
    assert_eq!(mock.records().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_price_band_and_budgets_it_relied_on() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            bot_extra: "price_band = \"5%\"\ndaily_notional = \"500\"\nmax_orders = \"20/h\""
                .to_owned(),
            ..Serving::against(&mock)
        },
    )
    .await;
    let order = LIMIT_BUY_AT_60000;
    assert_eq!(
        keyward
            .post(&keyward.tokens.bot, "/api/v3/order", order)
            .await
            .status,
        200
    );
    let config = keyward.config.to_str().unwrap().to_owned();
    let request = format!("POST /api/v3/order?{order}");
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["--config", &config, "explain", "--bot", "a", &request],
            fixed_now(),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    for expected in [
        "decision: allow",
        "price:    BTCUSDT bid 59990 ask 60010, average or index 60000",
        "5% band: buys up to 63000",
        "budget:   bot: daily_notional 60 of 500 used in 24 h (440 left), max_orders 1 of 20/h used",
        "live:     prices and budgets of the running keyward",
    ] {
        assert!(out.contains(expected), "`{expected}` missing from:\n{out}");
    }
    keyward.running.shutdown().await;
    // Offline, it says what it cannot know.
    let config = keyward.config.to_str().unwrap().to_owned();
    let request = format!("POST /api/v3/order?{order}");
    let (code, out, _) = run_cli(
        &["--config", &config, "explain", "--bot", "a", &request],
        fixed_now(),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("decision: allow, if keyward's reference price is within the band"),
        "{out}"
    );
    assert!(
        out.contains("a buy at 60000 passes while the ask is at least 60000 / 1.05"),
        "{out}"
    );
    assert!(
        out.contains("(what is used is known only to the running keyward)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_whose_cancels_fail_says_so_and_exits_non_zero() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(FixturePolicy::P0, Serving::against(&mock)).await;
    let placed = keyward
        .post(&keyward.tokens.bot, "/api/v3/order", LIMIT_BUY_AT_60000)
        .await;
    assert_eq!(placed.status, 200);
    // The exchange now refuses everything: the cancel-all cannot succeed.
    mock.set(Behaviour::RateLimited);
    let config = keyward.config.to_str().unwrap().to_owned();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["--config", &config, "freeze", "--cancel-open-orders"],
            fixed_now(),
        )
    })
    .await
    .unwrap();
    assert_ne!(
        code, 0,
        "a freeze whose cancels failed reported success: {out}"
    );
    assert!(err.contains("cancels failed"), "{err}");
    assert!(err.contains("orders may still be open"), "{err}");
    // The text report names the failed cancel beside the freeze it did make.
    assert!(out.starts_with("frozen: every account, since "), "{out}");
    assert!(out.contains(" BTCUSDT: FAILED: "), "{out}");
    // Frozen all the same: the freeze itself never depends on the exchange.
    mock.set(Behaviour::Normal);
    let refused = keyward
        .post(&keyward.tokens.bot, "/api/v3/order", LIMIT_BUY_AT_60000)
        .await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-keyward-error"), Some("frozen"));
    assert_eq!(mock.open_orders().len(), 1, "the order is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_on_request_and_a_repeated_warning_is_logged_once_per_interval() {
    let mock = Mock::start().await;
    // An exchange that refuses connections: every order fails upstream, each with the
    // same warning.
    let keyward = KeywardProcess::spawn_serving(
        Path::new(EXE),
        FixturePolicy::P0,
        Serving {
            upstream: Some(("https://127.0.0.1:9".to_owned(), mock.ca.clone())),
            ..Serving::default()
        },
        VaultKey::File,
        &[("KEYWARD_LOG_FORMAT", "text")],
    );
    let sent = 12;
    for _ in 0..sent {
        let answer = keyward
            .post_as_bot("/api/v3/order", LIMIT_BUY_AT_60000)
            .await;
        assert!(answer.status >= 500, "{}: {}", answer.status, answer.body);
    }
    let log = keyward.log();
    assert!(
        log.lines().all(|line| !line.trim_start().starts_with('{')),
        "KEYWARD_LOG_FORMAT=text still wrote JSON:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN keyward::cli: ") && l.contains("has expired")),
        "the configuration's warning is not a text log line:\n{log}"
    );
    // Every request still has its access line; the warning is written once. An
    // exchange that cannot be reached is the outcome of an allowed request, as the
    // audit log records it, not a policy denial: access lines and metrics say so.
    let access = log
        .lines()
        .filter(|l| {
            l.contains("keyward::access")
                && l.contains("status=502")
                && l.contains("decision=\"allow\"")
                && l.contains("reason=\"upstream_unavailable\"")
        })
        .count();
    assert_eq!(access, sent, "{log}");
    assert_eq!(
        keyward.metric(
            "keyward_requests_total{bot=\"a\",venue=\"binance-spot\",decision=\"allow\",reason=\"upstream_unavailable\"}"
        ),
        Some(sent as f64),
    );
    let audit = std::fs::read_to_string(keyward.path().join("audit.jsonl")).unwrap();
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains(r#""event":"request""#) && l.contains(r#""decision":"allow""#))
            .count(),
        sent,
        "{audit}"
    );
    assert_eq!(
        log.matches("upstream failed").count(),
        1,
        "a repeated warning was logged more than once:\n{log}"
    );
    // The repeats held back are reported within an interval (10 s), with their count.
    let deadline = Instant::now() + Duration::from_secs(25);
    let report = loop {
        let log = keyward.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("a warning was repeated") && l.contains("upstream failed"))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no report of held-back repeats:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        report.contains(&format!("repeated={}", sent - 1)),
        "{report}"
    );
}
