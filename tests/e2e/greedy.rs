//! Slow and greedy clients against a running keyward (the quick ones; the 10,000
//! connection flood and the long runs are in the soak bench's `--greedy` mode):
//! oversized request heads over HTTP/1.1 and HTTP/2, HTTP/2 rapid reset, more
//! concurrent streams than advertised, a CONTINUATION flood, idle HTTP/2
//! connections, idle HTTP/1.1 connections parked and woken, and slowloris on heads
//! and bodies at scale. Throughout each, a bot
//! on its own connection keeps getting 200s, and nothing an attacker sent reaches
//! the exchange.

use std::time::Duration;

use keyward_tests::greedy::{self, Slowness};
use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::{FixturePolicy, Serving};

const SERVER: &str = "header_timeout_ms = 1000\nbody_timeout_ms = 1500\nhandshake_timeout_ms = 1000\nmax_connections = 160\nupstream_timeout_ms = 3000";

async fn keyward(mock: &Mock) -> Keyward {
    keyward_with(mock, "", "").await
}

/// keyward with this file's deadlines and `server_extra`, bot A allowed any order rate
/// and `bot_extra`.
async fn keyward_with(mock: &Mock, server_extra: &str, bot_extra: &str) -> Keyward {
    Keyward::serve(
        FixturePolicy::P0,
        Serving {
            server_extra: format!("{SERVER}\n{server_extra}"),
            order_rate: Some("100000/s".to_owned()),
            bot_extra: bot_extra.to_owned(),
            ..Serving::against(mock)
        },
    )
    .await
}

/// A bot on its own kept-alive connection asking for its account every 100 ms
/// while `attack` runs; returns the attack's result and every status the bot got.
async fn while_a_bot_trades<T>(
    keyward: &Keyward,
    attack: impl Future<Output = T>,
) -> (T, Vec<u16>) {
    let request = keyward_tests::client::build(
        "GET",
        "/api/v3/account?timestamp=1&signature=x",
        &keyward_tests::client::bot_headers(keyward.port(), &keyward.tokens.bot, false),
        b"",
    );
    let mut connection = keyward.client.keep_alive().await;
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let bot = async {
        let mut statuses = Vec::new();
        loop {
            statuses.push(connection.send(&request).await.status);
            tokio::select! {
                _ = &mut done_rx => break,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        statuses
    };
    let attacking = async {
        let result = attack.await;
        let _ = done_tx.send(());
        result
    };
    tokio::join!(attacking, bot)
}

fn served(statuses: &[u16]) {
    assert!(statuses.len() >= 2, "the bot sent only {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the bot was not served during the attack: {statuses:?}"
    );
}

/// Nothing but the bot's own requests reached the exchange.
fn only_the_bot_reached(mock: &Mock, statuses: &[u16]) {
    let records = mock.records();
    assert_eq!(
        records.len(),
        statuses.len(),
        "the exchange saw more than the bot's requests: {:?}",
        records.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused_and_bots_still_served() {
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    let (client, port, token) = (&keyward.client, keyward.port(), &keyward.tokens.bot);
    let authority = format!("localhost:{port}");
    mock.clear();
    let ((one, many, h2), statuses) = while_a_bot_trades(&keyward, async {
        // hyper checks its 128 KiB head cap only when a read leaves the head
        // unfinished, so a head of up to twice the cap can get through when it
        // arrives in large reads; 512 KiB cannot.
        let one = greedy::oversized_header(client, port, token, 512 * 1024).await;
        let many = greedy::many_headers(client, port, token, 2000).await;
        let h2 = greedy::h2_oversized_header(client, &authority, token, 100 * 1024)
            .await
            .unwrap();
        (one, many, h2)
    })
    .await;
    assert_eq!(
        (one.status, one.closed),
        (431, true),
        "one 512 KiB header: {one:?}"
    );
    assert_eq!(
        (many.status, many.closed),
        (431, true),
        "2,000 header fields"
    );
    assert!(
        h2.statuses.get(&431) == Some(&1) || h2.goaway.is_some() || !h2.resets.is_empty(),
        "a 100 KiB header list over HTTP/2: {h2:?}"
    );
    assert!(!h2.statuses.contains_key(&200), "{h2:?}");
    served(&statuses);
    only_the_bot_reached(&mock, &statuses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_floods_are_bounded() {
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    let (client, port, token) = (&keyward.client, keyward.port(), &keyward.tokens.bot);
    let authority = format!("localhost:{port}");
    mock.clear();
    let ((reset, streams, continuation), statuses) = while_a_bot_trades(&keyward, async {
        let reset = greedy::rapid_reset(client, &authority, "kw_a_not-the-token", 5000)
            .await
            .unwrap();
        let streams =
            greedy::concurrent_streams(client, &authority, token, 300, Duration::from_secs(3))
                .await
                .unwrap();
        let continuation = greedy::continuation_flood(client, &authority, 2000, 16 * 1024)
            .await
            .unwrap();
        (reset, streams, continuation)
    })
    .await;
    // Rapid reset: h2 counts streams reset before they were served and gives up on
    // the connection (ENHANCE_YOUR_CALM) long before the 5,000th.
    assert_eq!(
        reset.goaway,
        Some(greedy::ENHANCE_YOUR_CALM),
        "rapid reset: {reset:?}"
    );
    assert!(reset.opened < 5000, "rapid reset: {reset:?}");
    // 300 streams held open: the first 100 (the advertised limit) are served and
    // end at the body deadline (408), the rest are refused at once.
    assert_eq!(
        streams.statuses.get(&408),
        Some(&100),
        "300 streams: {streams:?}"
    );
    assert_eq!(
        streams.resets.get(&greedy::REFUSED_STREAM),
        Some(&200),
        "300 streams: {streams:?}"
    );
    // CONTINUATION frames past the header list limit end the connection.
    assert!(
        continuation.goaway.is_some() || continuation.closed,
        "CONTINUATION flood: {continuation:?}"
    );
    assert!(
        continuation.elapsed < Duration::from_secs(3),
        "{continuation:?}"
    );
    served(&statuses);
    only_the_bot_reached(&mock, &statuses);
    // Each request keyward read has its one record: the bot's and the 100 held
    // streams (rapid-reset streams were reset before keyward read them).
    let requests = keyward
        .audit()
        .iter()
        .filter(|l| l["event"] == "request")
        .count();
    assert_eq!(requests, statuses.len() + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_at_scale_leave_room_for_bots() {
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    let (client, port, token) = (&keyward.client, keyward.port(), &keyward.tokens.bot);
    let hold = Duration::from_secs(6);
    let every = Duration::from_millis(200);
    mock.clear();
    let ((heads, bodies, idle1, idle2), statuses) = while_a_bot_trades(&keyward, async {
        tokio::join!(
            greedy::trickle(client, port, token, Slowness::Head, 40, every, hold),
            greedy::trickle(client, port, token, Slowness::Body, 40, every, hold),
            greedy::trickle(client, port, token, Slowness::IdleHttp1, 30, every, hold),
            greedy::trickle(client, port, token, Slowness::IdleHttp2, 30, every, hold),
        )
    })
    .await;
    // Header deadline 1 s, body deadline 1.5 s; allow a second for a loaded machine.
    for (what, result, deadline) in [
        ("slow heads", &heads, 1.0),
        ("slow bodies", &bodies, 1.5),
        ("idle HTTP/1.1", &idle1, 1.0),
        ("idle HTTP/2", &idle2, 1.0),
    ] {
        assert_eq!(result.refused, 0, "{what}: {result:?}");
        assert_eq!(result.still_open, 0, "{what}: {result:?}");
        assert!(
            result.longest() < Duration::from_secs_f64(deadline + 1.0),
            "{what}: {result:?}"
        );
    }
    assert_eq!(bodies.statuses.get(&408), Some(&40), "{bodies:?}");
    served(&statuses);
    only_the_bot_reached(&mock, &statuses);
}

/// Idle HTTP/2 connections cannot hold every connection slot: with four slots
/// taken by connections that sent the preface and nothing else, a new bot is
/// served once the header deadline closes them. (Before, hyper kept idle HTTP/2
/// connections open for ever, and the bot waited for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_do_not_hold_the_connection_slots() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            server_extra: "header_timeout_ms = 1000\nmax_connections = 4".to_owned(),
            ..Serving::against(&mock)
        },
    )
    .await;
    let (client, port, token) = (&keyward.client, keyward.port(), &keyward.tokens.bot);
    let idle = tokio::spawn({
        let client = client.clone();
        let token = token.clone();
        async move {
            greedy::trickle(
                &client,
                port,
                &token,
                Slowness::IdleHttp2,
                4,
                Duration::from_millis(100),
                Duration::from_secs(20),
            )
            .await
        }
    });
    // Counted from before the pause: the idle connections opened then, and hold
    // their slots until their header deadline, 1 s later.
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = tokio::time::timeout(
        Duration::from_secs(8),
        keyward.get(token, "/api/v3/account?timestamp=1&signature=x"),
    )
    .await
    .expect("a new bot is served while idle HTTP/2 connections hold every slot");
    assert_eq!(answer.status, 200);
    // With a slot free it is answered about 0.6 s in (0.3 s pause, 0.3 s request).
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "it had to wait for a slot: answered after {:?}",
        started.elapsed()
    );
    let idle = idle.await.unwrap();
    assert_eq!(idle.connected, 4, "{idle:?}");
    assert_eq!(idle.still_open, 0, "{idle:?}");
}

const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&timestamp=1&signature=x";

/// The audit lines of one request id.
fn lines_of(
    keyward: &Keyward,
    id_of: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    keyward.audit().into_iter().filter(|l| id_of(l)).collect()
}

/// Sends bot A's order over HTTP/1.1 and closes the connection 300 ms later, before
/// a slow exchange has answered.
async fn send_order_then_hang_up(keyward: &Keyward) {
    use tokio::io::AsyncWriteExt as _;
    let bytes = keyward_tests::client::build(
        "POST",
        "/api/v3/order",
        &keyward_tests::client::bot_headers(keyward.port(), &keyward.tokens.bot, true),
        ORDER.as_bytes(),
    );
    let mut stream = keyward.client.connect(&[b"http/1.1"]).await;
    stream.write_all(&bytes).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
}

/// A bot that gives up on an order while the exchange is still answering it (over
/// HTTP/1.1 by closing the connection, over HTTP/2 with RST_STREAM) does not stop
/// keyward from finishing it: the outcome is recorded and the order tracked, and
/// once the exchange no longer lists it, its room under `max_open_orders` is free
/// again. (Before, hyper dropped the request's future with the bot: the outcome was
/// never written and the reservation of open-order room was never given back, so
/// after `max_open_orders` abandoned orders the bot could place none.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_bot_abandons_is_finished_recorded_and_settled() {
    use keyward_tests::mock::Behaviour;
    let mock = Mock::start().await;
    let keyward = keyward_with(&mock, "open_orders_check_ms = 200", "max_open_orders = 1").await;
    let authority = format!("localhost:{}", keyward.port());
    for http2 in [false, true] {
        mock.set(Behaviour::Slow(1000));
        mock.clear();
        if http2 {
            let _open = greedy::order_then_cancel(
                &keyward.client,
                &authority,
                &keyward.tokens.bot,
                ORDER.as_bytes(),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
        } else {
            send_order_then_hang_up(&keyward).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let transport = if http2 { "h2" } else { "h1" };
        let requests = lines_of(&keyward, |l| {
            l["event"] == "request" && l["http"] == transport
        });
        assert_eq!(requests.len(), 1, "{transport}: {requests:?}");
        let id = requests[0]["request_id"].clone();
        assert_eq!(requests[0]["decision"], "allow");
        let outcomes = lines_of(&keyward, |l| {
            l["event"] == "outcome" && l["request_id"] == id
        });
        assert_eq!(
            outcomes.len(),
            1,
            "{transport}: the abandoned order's outcome"
        );
        assert_eq!(outcomes[0]["upstream_status"], 200);
        assert_eq!(mock.records().len(), 1, "{transport}: sent once");
        mock.set(Behaviour::Normal);
        mock.fill_all();
        // The next reconciliation sees the order filled.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let next = keyward
            .post(&keyward.tokens.bot, "/api/v3/order", ORDER)
            .await;
        assert_eq!(
            next.status,
            200,
            "{transport}: after the abandoned order was filled: {:?}",
            next.header("x-keyward-error")
        );
        mock.fill_all();
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

/// An order the bot abandoned is still with the exchange when keyward is told to
/// stop: shutdown waits for it, so its outcome is in the audit log before the `stop`
/// record. (Before, shutdown waited only for connections, and the bot's was gone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_abandoned_order() {
    use keyward_tests::mock::Behaviour;
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    mock.set(Behaviour::Slow(1500));
    send_order_then_hang_up(&keyward).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mock.records().len(), 1, "the order reached the exchange");
    let Keyward { running, dir, .. } = keyward;
    running.shutdown().await;
    let audit = keyward_tests::audit_lines(dir.path());
    let events: Vec<&str> = audit.iter().filter_map(|l| l["event"].as_str()).collect();
    let outcome = events.iter().position(|e| *e == "outcome");
    let stop = events.iter().position(|e| *e == "stop");
    assert!(
        matches!((outcome, stop), (Some(o), Some(s)) if o < s),
        "the outcome is recorded before `stop`: {events:?}"
    );
}

/// A bot that goes away before keyward has decided on its request (here: an HTTP/2
/// stream reset while keyward fetches the reference price the bot's band needs)
/// still leaves the request's one audit record, refused with `client_gone`, and
/// nothing of it reaches the exchange. (Before, such a request left no record.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_abandoned_before_the_decision_is_recorded() {
    use keyward_tests::mock::Behaviour;
    let mock = Mock::start().await;
    let keyward = keyward_with(&mock, "", "price_band = \"5%\"").await;
    mock.set(Behaviour::Slow(1000));
    let authority = format!("localhost:{}", keyward.port());
    let _open = greedy::order_then_cancel(
        &keyward.client,
        &authority,
        &keyward.tokens.bot,
        ORDER.as_bytes(),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = lines_of(&keyward, |l| l["event"] == "request");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["decision"], "deny");
    assert_eq!(requests[0]["reason"], "client_gone");
    assert_eq!(requests[0]["bot"], "a");
    assert_eq!(requests[0]["path"], "/api/v3/order");
    assert!(requests[0]["status"].is_null(), "nothing was answered");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(mock.records().is_empty(), "{:?}", mock.records());
}

/// An idle HTTP/1.1 connection is parked (hyper's buffers let go, the stream kept)
/// and served again by the next request; a head split across the moment it is
/// parked is put back together; the framing guard still reads every byte after it;
/// and the header deadline counts parked time, so an idle connection still closes on
/// time. With a 4 s header deadline a connection is parked after 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_parked_and_served_again() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            server_extra: "header_timeout_ms = 4000\nupstream_timeout_ms = 3000".to_owned(),
            order_rate: Some("100000/s".to_owned()),
            ..Serving::against(&mock)
        },
    )
    .await;
    let (port, token) = (keyward.port(), &keyward.tokens.bot);
    let metrics = &keyward.running.app.metrics;
    let headers = keyward_tests::client::bot_headers(port, token, false);
    let read = keyward_tests::client::build(
        "GET",
        "/api/v3/account?timestamp=1&signature=x",
        &headers,
        b"",
    );
    let mut connection = keyward.client.keep_alive().await;
    assert_eq!(connection.send(&read).await.status, 200);
    // Parked and woken again, several times: each wake has to serve the bytes that
    // woke it.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_600)).await;
        assert_eq!(
            metrics.parked_connections(),
            1,
            "the idle connection is parked"
        );
        assert_eq!(connection.send(&read).await.status, 200);
    }

    // Half a head, then a pause long enough to park: hyper had read those bytes, and
    // they come back in front of the rest.
    let order =
        keyward_tests::client::build("POST", &format!("/api/v3/order?{ORDER}"), &headers, b"");
    let (first, rest) = order.split_at(order.len() / 2);
    connection.write(first).await;
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(
        metrics.parked_connections(),
        0,
        "a connection holding part of a head is not left parked"
    );
    connection.write(rest).await;
    let placed = connection.read().await;
    assert_eq!(placed.status, 200, "{}", placed.body);

    // Parked again, a smuggling attempt on it is refused by the guard and closes it.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(metrics.parked_connections(), 1);
    let smuggled = connection
        .send(
            format!(
                "POST /api/v3/order HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(smuggled.status, 400, "{}", smuggled.body);
    assert!(connection.closed_within(Duration::from_secs(2)).await);
    let paths: Vec<_> = mock.records().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/api/v3/account",
            "/api/v3/account",
            "/api/v3/account",
            "/api/v3/account",
            "/api/v3/order"
        ],
        "the exchange saw exactly the bot's requests"
    );

    // The header deadline runs from the end of the last request, parked or not.
    let mut idle = keyward.client.keep_alive().await;
    assert_eq!(idle.send(&read).await.status, 200);
    let answered = std::time::Instant::now();
    assert!(
        !idle.closed_within(Duration::from_secs(2)).await,
        "parked after 1 s, but open until the deadline"
    );
    assert_eq!(metrics.parked_connections(), 1);
    assert!(
        idle.closed_within(Duration::from_secs(6)).await,
        "closed at the header deadline"
    );
    // Not 4 s after it was parked (5 s in).
    assert!(
        answered.elapsed() < Duration::from_millis(4_500),
        "closed {:?} after its last answer",
        answered.elapsed()
    );
    assert_eq!(metrics.parked_connections(), 0);
    keyward.running.shutdown().await;
}
