//! Order messages over WebSockets (issue 23): keyward's added latency per order
//! message. A keyward of its own sends its account's WebSocket traffic to the test
//! mock exchange's Binance WebSocket API; the same signed `order.place` messages go
//! once straight to the mock and once through keyward, one connection each, at a
//! fixed rate. Latency is measured from each message's scheduled send time, so a
//! slow reply also delays the ones behind it (no coordinated omission).

use std::path::Path;
use std::time::{Duration, Instant};

use keyward_tests::mock::Mock;
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::ws_client::{WsClient, binance_signed, now_ms};
use keyward_tests::{FixturePolicy, Serving, canary};
use serde_json::{Value, json};

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) messages: u64,
}

/// Events a second one subscriber received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fanout {
    pub(crate) direct: f64,
    pub(crate) keyward: f64,
}

/// What the stream run measured.
pub(crate) struct StreamRun {
    /// Straight to the mock.
    pub(crate) direct: Latency,
    /// Through keyward.
    pub(crate) keyward: Latency,
    /// User-data events passed on, straight and through keyward.
    pub(crate) fanout: Fanout,
    /// The keyward it ran against, still running (for its audit check).
    pub(crate) process: KeywardProcess,
}

/// Sends `orders` order messages at `rate` a second, straight and through keyward.
pub(crate) fn run(keyward_exe: &Path, orders: u64, rate: u32) -> Result<StreamRun, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let mock = runtime.block_on(Mock::start());
    let process = KeywardProcess::spawn_serving(
        keyward_exe,
        FixturePolicy::P0,
        Serving {
            upstream: Some((mock.url(), mock.ca.clone())),
            server_extra: "header_timeout_ms = 120000".to_owned(),
            order_rate: Some("1000000/s".to_owned()),
            account_extra: format!(
                "stream_upstream = \"wss://127.0.0.1:{}\"\nexchange_limits_multiplier = 1000000",
                mock.addr.port()
            ),
            bot_extra: "exchange_share = \"100%\"".to_owned(),
            ..Serving::default()
        },
        VaultKey::File,
        &[],
    );
    let token = process.tokens.bot.clone();
    let (keyward_addr, keyward_ca) = (process.bot_addr, process.path().join("tls/ca.pem"));
    let direct = runtime.block_on(async {
        let mut socket = WsClient::try_connect(mock.addr, &mock.ca, "/ws-api/v3", &[])
            .await
            .map_err(|refused| format!("the mock refused the WebSocket: {refused:?}"))?;
        paced(&mut socket, orders, rate, |id| {
            let params = binance_signed(order_params(), canary::API_KEY, canary::SECRET, now_ms());
            json!({"id": id, "method": "order.place", "params": params})
        })
        .await
    })?;
    let through = runtime.block_on(async {
        let mut socket = WsClient::try_connect(keyward_addr, &keyward_ca, "/ws-api/v3", &[])
            .await
            .map_err(|refused| format!("keyward refused the WebSocket: {refused:?}"))?;
        paced(&mut socket, orders, rate, |id| {
            let mut params = order_params();
            params["apiKey"] = token.clone().into();
            json!({"id": id, "method": "order.place", "params": params})
        })
        .await
    })?;
    // Events: one subscriber each way while the mock's book takes orders placed at
    // the exchange itself (each sends an execution report and a balance update).
    // The mock holds 4,096 events per subscriber before it drops some: 2,000 orders
    // (4,000 events) stay under that.
    let events = orders.min(2_000);
    let fanout_direct = runtime.block_on(async {
        let mut socket = WsClient::try_connect(mock.addr, &mock.ca, "/ws-api/v3", &[])
            .await
            .map_err(|refused| format!("the mock refused the WebSocket: {refused:?}"))?;
        let params = binance_signed(json!({}), canary::API_KEY, canary::SECRET, now_ms());
        fanned_out(&mut socket, &mock, events, params).await
    })?;
    let fanout_keyward = runtime.block_on(async {
        let mut socket = WsClient::try_connect(keyward_addr, &keyward_ca, "/ws-api/v3", &[])
            .await
            .map_err(|refused| format!("keyward refused the WebSocket: {refused:?}"))?;
        fanned_out(&mut socket, &mock, events, json!({"apiKey": token})).await
    })?;
    drop(mock);
    Ok(StreamRun {
        direct,
        keyward: through,
        fanout: Fanout {
            direct: fanout_direct,
            keyward: fanout_keyward,
        },
        process,
    })
}

/// Subscribes `socket` to the user data stream with `params`, places `orders`
/// orders at the mock itself and counts the events received: events a second,
/// from the first order to the last event.
async fn fanned_out(
    socket: &mut WsClient,
    mock: &Mock,
    orders: u64,
    params: Value,
) -> Result<f64, String> {
    let subscribed = socket
        .request(
            &json!({"id": "sub", "method": "userDataStream.subscribe.signature", "params": params}),
        )
        .await;
    if subscribed["status"] != 200 {
        return Err(format!("the subscription was refused: {subscribed}"));
    }
    let started = Instant::now();
    for _ in 0..orders {
        mock.place_directly("BTCUSDT", "BUY");
    }
    let expected = 2 * orders;
    let mut received = 0;
    while received < expected {
        match tokio::time::timeout(Duration::from_secs(10), socket.next_json()).await {
            Ok(Some(frame)) if frame.get("event").is_some() => received += 1,
            Ok(Some(_)) => {}
            _ => return Err(format!("{received} of {expected} events arrived")),
        }
    }
    Ok(received as f64 / started.elapsed().as_secs_f64())
}

fn order_params() -> Value {
    json!({
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": "60000",
    })
}

/// Sends `count` messages built by `message`, one every `1/rate` s, each after the
/// reply to the one before; every reply must be a success.
async fn paced(
    socket: &mut WsClient,
    count: u64,
    rate: u32,
    message: impl Fn(u64) -> Value,
) -> Result<Latency, String> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for n in 0..count {
        let scheduled = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let reply = socket.request(&message(n + 1)).await;
        if reply["status"] != 200 {
            return Err(format!("order message {} was not accepted: {reply}", n + 1));
        }
        latencies.push(scheduled.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Latency {
        p50: keyward_tests::stats::quantile(&latencies, 0.50),
        p99: keyward_tests::stats::quantile(&latencies, 0.99),
        messages: count,
    })
}
