//! Order messages over WebSockets (issue 23): keyward's added latency per order
//! message. The same signed `order.place` messages go once straight to the bench's
//! fast exchange (its Binance WebSocket API answers each at once, as its REST does)
//! and once through a keyward of its own whose account's WebSocket goes there, one
//! connection each, at a fixed rate, so that the two differ only by keyward. Latency
//! is measured from each message's scheduled send time, so a slow reply also delays
//! the ones behind it (no coordinated omission). The events fanned out come from the
//! test mock exchange (its book sends them), through a second keyward.

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
    /// The proxy's CPU time per message (user and system, microseconds; nginx's
    /// master and workers together); 0 for the direct path.
    pub(crate) cpu_us: f64,
    /// The proxy's threads' sleeps (each ended by a wake-up) per message; 0 for the
    /// direct path.
    pub(crate) wakeups: f64,
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
    /// Through nginx relaying the WebSocket.
    pub(crate) nginx: Latency,
    /// Through keyward.
    pub(crate) keyward: Latency,
    /// User-data events passed on, straight and through keyward.
    pub(crate) fanout: Fanout,
    /// The keyward the order messages went through, still running (for its audit
    /// check).
    pub(crate) process: KeywardProcess,
}

/// A keyward whose account's REST and WebSocket go to `upstream` (`https://` URL, CA
/// and port).
fn keyward_for(
    keyward_exe: &Path,
    (url, ca, port): (String, std::path::PathBuf, u16),
) -> KeywardProcess {
    KeywardProcess::spawn_serving(
        keyward_exe,
        FixturePolicy::P0,
        Serving {
            upstream: Some((url, ca)),
            server_extra: "header_timeout_ms = 120000".to_owned(),
            order_rate: Some("1000000/s".to_owned()),
            account_extra: format!(
                "stream_upstream = \"wss://127.0.0.1:{port}\"\nexchange_limits_multiplier = 1000000"
            ),
            bot_extra: "exchange_share = \"100%\"".to_owned(),
            ..Serving::default()
        },
        VaultKey::File,
        &[],
    )
}

/// Sends `orders` order messages at `rate` a second, straight to `exchange` and
/// through keyward.
pub(crate) fn run(
    keyward_exe: &Path,
    exchange: &crate::exchange::Exchange,
    nginx: &crate::nginx::Nginx,
    orders: u64,
    rate: u32,
) -> Result<StreamRun, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let fast = keyward_for(
        keyward_exe,
        (exchange.url(), exchange.ca.clone(), exchange.port),
    );
    let exchange_addr: std::net::SocketAddr = ([127, 0, 0, 1], exchange.port).into();
    let direct = runtime.block_on(async {
        let mut socket = WsClient::try_connect(exchange_addr, &exchange.ca, "/ws-api/v3", &[])
            .await
            .map_err(|refused| format!("the exchange refused the WebSocket: {refused:?}"))?;
        paced(&mut socket, orders, rate, signed_order).await
    })?;
    let nginx_addr: std::net::SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let nginx_before = keyward_bench::procfs::cpu_seconds_of_tree(nginx.master);
    let nginx_sleeps = keyward_bench::procfs::voluntary_switches_of_tree(nginx.master);
    let mut relayed = runtime.block_on(async {
        let mut socket = WsClient::try_connect(nginx_addr, &nginx.ca, "/ws-api/v3", &[])
            .await
            .map_err(|refused| format!("nginx refused the WebSocket: {refused:?}"))?;
        paced(&mut socket, orders, rate, signed_order).await
    })?;
    relayed.cpu_us = (keyward_bench::procfs::cpu_seconds_of_tree(nginx.master) - nginx_before)
        * 1e6
        / relayed.messages.max(1) as f64;
    relayed.wakeups = per_message(
        keyward_bench::procfs::voluntary_switches_of_tree(nginx.master)
            .saturating_sub(nginx_sleeps),
        relayed.messages,
    );
    let token = fast.tokens.bot.clone();
    let cpu_before = keyward_bench::procfs::cpu_seconds(fast.pid);
    let keyward_sleeps = keyward_bench::procfs::voluntary_switches(fast.pid);
    let mut through = runtime.block_on(async {
        let keyward_ca = fast.path().join("tls/ca.pem");
        let mut socket = WsClient::try_connect(fast.bot_addr, &keyward_ca, "/ws-api/v3", &[])
            .await
            .map_err(|refused| format!("keyward refused the WebSocket: {refused:?}"))?;
        paced(&mut socket, orders, rate, |id| {
            let mut params = order_params();
            params["apiKey"] = token.clone().into();
            json!({"id": id, "method": "order.place", "params": params})
        })
        .await
    })?;
    through.cpu_us = (keyward_bench::procfs::cpu_seconds(fast.pid) - cpu_before) * 1e6
        / through.messages.max(1) as f64;
    through.wakeups = per_message(
        keyward_bench::procfs::voluntary_switches(fast.pid).saturating_sub(keyward_sleeps),
        through.messages,
    );
    let mock = runtime.block_on(Mock::start());
    let events_keyward = keyward_for(keyward_exe, (mock.url(), mock.ca.clone(), mock.addr.port()));
    let token = events_keyward.tokens.bot.clone();
    let (keyward_addr, keyward_ca) = (
        events_keyward.bot_addr,
        events_keyward.path().join("tls/ca.pem"),
    );
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
    drop(events_keyward);
    drop(mock);
    Ok(StreamRun {
        direct,
        nginx: relayed,
        keyward: through,
        fanout: Fanout {
            direct: fanout_direct,
            keyward: fanout_keyward,
        },
        process: fast,
    })
}

fn per_message(count: u64, messages: u64) -> f64 {
    count as f64 / messages.max(1) as f64
}

/// An order message as a client with the key sends it, signed.
fn signed_order(id: u64) -> Value {
    let params = binance_signed(order_params(), canary::API_KEY, canary::SECRET, now_ms());
    json!({"id": id, "method": "order.place", "params": params})
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
/// reply to the one before; every reply must be a success. A message's latency runs
/// from its send to its reply: tokio's timer wakes the sender up to a millisecond
/// after the due time, the interval itself at 1,000/s, which would drown what is
/// measured. (A reply slower than the interval delays the next send; the p99 of
/// either path shows such replies.)
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
        let text = message(n + 1);
        let sent = Instant::now();
        let reply = socket.request(&text).await;
        if reply["status"] != 200 {
            return Err(format!("order message {} was not accepted: {reply}", n + 1));
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Latency {
        p50: keyward_tests::stats::quantile(&latencies, 0.50),
        p99: keyward_tests::stats::quantile(&latencies, 0.99),
        messages: count,
        cpu_us: 0.0,
        wakeups: 0.0,
    })
}
