//! keyward serving over real TLS in front of the mock Binance: allowed requests
//! arrive correctly signed with the real key, every denial gets its status and never
//! reaches the exchange, upstream faults map to 502/504, the audit log is written
//! before forwarding (and its failure stops orders), and the admin listener answers.

use std::time::Duration;

use keyward_tests::client::Response;
use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Behaviour, Mock};
use keyward_tests::{FixturePolicy, canary};

const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&timestamp=1&signature=abc";

fn headers(keyward: &Keyward, token: &str, form: bool) -> Vec<(String, String)> {
    keyward_tests::client::bot_headers(keyward.port(), token, form)
}

async fn post(keyward: &Keyward, path: &str, body: &str) -> Response {
    keyward.post(&keyward.tokens.bot, path, body).await
}

async fn get(keyward: &Keyward, token: &str, target: &str) -> Response {
    keyward.get(token, target).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_reach_the_exchange_signed_with_the_real_key() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;

    let response = post(&keyward, "/api/v3/order", ORDER).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let order: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(order["status"], "NEW");
    assert!(response.header("x-keyward-request-id").is_some());

    let account = get(
        &keyward,
        &keyward.tokens.bot,
        "/api/v3/account?omitZeroBalances=true&timestamp=1&signature=x",
    )
    .await;
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.body.contains("\"balances\""));

    let records = mock.records();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record.signature_ok, Some(true), "{record:?}");
        assert_eq!(record.header("x-mbx-apikey"), Some(canary::API_KEY));
        let params = record.params();
        assert_eq!(params.get("recvWindow").map(String::as_str), Some("5000"));
        assert_ne!(
            params.get("timestamp").map(String::as_str),
            Some("1"),
            "keyward's clock, not the bot's"
        );
        let everything = record.everything();
        assert!(
            !everything.contains(&keyward.tokens.bot),
            "the bot token never leaves"
        );
        assert!(!everything.contains("signature=abc") && !everything.contains("signature=x"));
        assert!(!everything.contains(canary::SECRET));
    }
    let order_params = records[0].params();
    assert_eq!(
        order_params.get("symbol").map(String::as_str),
        Some("BTCUSDT")
    );
    assert_eq!(
        order_params.get("quantity").map(String::as_str),
        Some("0.001")
    );
    let names: Vec<&str> = records[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    for name in &names {
        assert!(
            [
                "host",
                "x-mbx-apikey",
                "content-type",
                "content-length",
                "user-agent"
            ]
            .contains(name),
            "unexpected outbound header {name}"
        );
    }

    let audit = keyward.audit();
    let requests: Vec<&serde_json::Value> =
        audit.iter().filter(|l| l["event"] == "request").collect();
    let outcomes: Vec<&serde_json::Value> =
        audit.iter().filter(|l| l["event"] == "outcome").collect();
    assert_eq!(requests.len(), 2);
    assert_eq!(outcomes.len(), 2);
    assert_eq!(requests[0]["decision"], "allow");
    assert_eq!(requests[0]["bot"], "a");
    assert_eq!(requests[0]["symbols"][0], "BTCUSDT");
    assert_eq!(requests[0]["notional"], "60");
    assert_eq!(outcomes[0]["upstream_status"], 200);
    assert_eq!(requests[0]["request_id"], outcomes[0]["request_id"]);
    let text = std::fs::read_to_string(keyward.dir.path().join("audit.jsonl")).unwrap();
    assert!(
        !text.contains(&keyward.tokens.bot)
            && !text.contains(canary::SECRET)
            && !text.contains(canary::API_KEY)
    );
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_denial_gets_its_status_and_never_reaches_the_exchange() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    let order = |symbol: &str, rest: &str| {
        format!("symbol={symbol}&side=BUY&{rest}&timestamp=1&signature=x")
    };
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "POST",
            "/api/v3/order",
            order(
                "DMGUSDT",
                "type=LIMIT&timeInForce=GTC&quantity=1000&price=0.05",
            ),
            403,
            "symbol_not_allowed",
        ),
        (
            "POST",
            "/api/v3/order",
            order("BTCUSDT", "type=STOP_LOSS&quantity=0.001&stopPrice=65000"),
            403,
            "order_type_not_allowed",
        ),
        (
            "POST",
            "/api/v3/order",
            order("BTCUSDT", "type=MARKET&quoteOrderQty=1000000"),
            403,
            "notional_exceeds_limit",
        ),
        (
            "POST",
            "/api/v3/order",
            order(
                "BTCUSDT",
                "type=LIMIT&timeInForce=GTC&quantity=0.02&price=1000",
            ),
            403,
            "qty_exceeds_limit",
        ),
        (
            "GET",
            "/api/v3/allOrders?symbol=BTCUSDT",
            String::new(),
            403,
            "path_not_allowed",
        ),
        (
            "POST",
            "/api/v3/order/cancelReplace",
            order(
                "BTCUSDT",
                "type=LIMIT&cancelReplaceMode=STOP_ON_FAILURE&quantity=1&price=1",
            ),
            403,
            "path_not_allowed",
        ),
    ];
    for (method, path, body, status, reason) in &cases {
        let token = keyward.tokens.bot.clone();
        let response = keyward
            .client
            .request(
                method,
                path,
                &headers(&keyward, &token, !body.is_empty()),
                body.as_bytes(),
            )
            .await;
        assert_eq!(
            response.status, *status,
            "{method} {path} {body}: {}",
            response.body
        );
        assert_eq!(
            response.header("x-keyward-error"),
            Some(*reason),
            "{path} {body}"
        );
        let envelope: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert!(envelope["code"].as_i64().unwrap() < 0);
        assert!(
            envelope["msg"]
                .as_str()
                .unwrap()
                .starts_with(&format!("keyward: {reason}"))
        );
    }
    for (token, reason) in [
        (String::new(), "auth_missing"),
        (
            "kw_a_notarealtokenatallnotarealtokenatallnotarea".to_owned(),
            "auth_invalid",
        ),
        (keyward.tokens.expired.clone(), "auth_expired"),
        (keyward.tokens.revoked.clone(), "auth_revoked"),
    ] {
        let response = get(&keyward, &token, "/api/v3/account?timestamp=1&signature=x").await;
        assert_eq!(response.status, 401, "{reason}");
        assert_eq!(response.header("x-keyward-error"), Some(reason));
    }
    let money = [
        "/sapi/v1/capital/withdraw/apply",
        "/sapi/v1/localentity/withdraw/apply",
        "/sapi/v1/asset/transfer",
        "/sapi/v1/sub-account/futures/transfer",
        "/sapi/v1/sub-account/universalTransfer",
        "/sapi/v1/giftcard/createCode",
        "/sapi/v1/convert/acceptQuote",
        "/sapi/v1/margin/borrow-repay",
        "/api/v3/userDataStream",
        "/sapi/v1/sub-account/subAccountApi",
        "/sapi/v2/sub-account/subAccountApi/ipRestriction",
        "/sapi/v1/margin/apiKey",
    ];
    for path in money {
        let response = post(
            &keyward,
            path,
            "coin=USDT&amount=5000&address=TAttacker&timestamp=1&signature=x",
        )
        .await;
        assert_eq!(response.status, 403, "{path}");
        let reason = response.header("x-keyward-error").unwrap();
        assert!(
            reason == "money_movement_denied" || reason == "key_management_denied",
            "{path}: {reason}"
        );
    }
    assert!(
        mock.records().is_empty(),
        "a refused request reached the exchange: {:?}",
        mock.records()
    );
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_and_send_nothing_more() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let response = post(&keyward, "/api/v3/order", ORDER).await;
        if response.status == 429 {
            assert!(
                response
                    .header("retry-after")
                    .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)
            );
            assert_eq!(response.header("x-keyward-error"), Some("rate_limited"));
        }
        statuses.push(response.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(mock.records().len(), 10);
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_map_to_502_and_504_and_are_never_retried() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(
        FixturePolicy::P0,
        &mock,
        "upstream_timeout_ms = 600\nmax_response_bytes = 1048576",
    )
    .await;
    let cases = [
        (Behaviour::Slow(2000), 504, "upstream_timeout"),
        (Behaviour::Redirect, 502, "upstream_redirect_blocked"),
        (Behaviour::Malformed, 502, "upstream_response_invalid"),
        (Behaviour::Huge, 502, "upstream_response_too_large"),
    ];
    for (behaviour, status, reason) in cases {
        mock.clear();
        mock.set(behaviour);
        let response = post(&keyward, "/api/v3/order", ORDER).await;
        assert_eq!(response.status, status, "{behaviour:?}: {}", response.body);
        assert_eq!(response.header("x-keyward-error"), Some(reason));
        assert_eq!(mock.records().len(), 1, "{behaviour:?}: sent exactly once");
        if status == 504 {
            assert!(
                response.body.contains("execution status unknown"),
                "{}",
                response.body
            );
        }
    }
    // The exchange's own errors pass through unchanged, once.
    mock.clear();
    mock.set(Behaviour::TimestampOnce);
    let response = post(&keyward, "/api/v3/order", ORDER).await;
    assert_eq!(response.status, 400);
    assert!(response.body.contains("-1021"));
    assert_eq!(mock.records().len(), 1, "no retry after -1021");
    mock.clear();
    mock.set(Behaviour::RateLimited);
    let response = post(&keyward, "/api/v3/order", ORDER).await;
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("30"));
    assert!(
        response.header("x-keyward-error").is_none(),
        "the exchange's answer, not keyward's"
    );
    // ... and from then on keyward backs off for everyone, sending nothing.
    mock.clear();
    mock.set(Behaviour::Normal);
    for token in [&keyward.tokens.bot, &keyward.tokens.bot_b] {
        let response = get(&keyward, token, "/api/v3/account").await;
        assert_eq!(response.status, 429, "{}", response.body);
        assert_eq!(
            response.header("x-keyward-error"),
            Some("upstream_rate_limited")
        );
        let wait: u64 = response.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
    }
    assert!(
        mock.records().is_empty(),
        "nothing is sent while backing off"
    );
    mock.set(Behaviour::Normal);
    tokio::time::sleep(Duration::from_millis(1)).await;
    keyward.running.shutdown().await;

    // Nothing listening upstream.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = Keyward::start_with_upstream(
        FixturePolicy::P0,
        (format!("https://127.0.0.1:{port}"), mock.ca.clone()),
        "",
    )
    .await;
    let response = post(&unreachable, "/api/v3/order", ORDER).await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.header("x-keyward-error"),
        Some("upstream_unavailable")
    );
    unreachable.running.shutdown().await;
}

/// keyward keeps its connections to the exchange open and reuses them; one the
/// exchange closed while it was idle is never used again (an order sent on it would
/// fail `upstream_response_invalid`, with nothing known of its fate): the next order
/// goes on a new connection, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_exchange_closed_while_idle_are_not_reused() {
    let mock = Mock::start().await;
    // Connections idle for this long are closed by the exchange: long enough for
    // orders sent one after the other to find theirs open.
    mock.close_idle_after(Duration::from_millis(300));
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    let headers = keyward_tests::client::bot_headers(keyward.port(), &keyward.tokens.bot, true);
    let order = keyward_tests::client::build("POST", "/api/v3/order", &headers, ORDER.as_bytes());
    let mut bot = keyward.client.keep_alive().await;
    assert_eq!(bot.send(&order).await.status, 200);
    let before = mock.connections_accepted();
    for _ in 0..5 {
        let response = bot.send(&order).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }
    // keyward's own reads (reconciliation) may take a second connection meanwhile.
    let opened = mock.connections_accepted() - before;
    assert!(
        opened <= 1,
        "one order after the other reuse a connection: {opened} opened"
    );

    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        mock.clear();
        let before = mock.connections_accepted();
        let response = bot.send(&order).await;
        assert_eq!(
            response.status,
            200,
            "round {round}: {:?} {}",
            response.header("x-keyward-error"),
            response.body
        );
        assert_eq!(mock.records().len(), 1, "round {round}: sent once");
        assert!(
            mock.connections_accepted() > before,
            "round {round}: on a new connection"
        );
    }
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_disk_refuses_orders_and_sends_nothing() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    keyward.running.shutdown().await;
    let text = std::fs::read_to_string(&keyward.config)
        .unwrap()
        .replace("[vault]", "[audit]\nfile = \"/dev/full\"\n\n[vault]")
        .replace("[server]\n", "[server]\nstate_dir = \"state\"\n");
    std::fs::write(&keyward.config, text).unwrap();
    let config =
        keyward::config::Config::load(&keyward.config, std::time::SystemTime::now()).unwrap();
    let running = keyward::server::start(config).await.unwrap();
    let client = keyward_tests::client::BotClient::new(running.bot_addr, &running.ca_path);
    let h = keyward_tests::client::bot_headers(running.bot_addr.port(), &keyward.tokens.bot, true);
    let response = client
        .request("POST", "/api/v3/order", &h, ORDER.as_bytes())
        .await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(
        response.header("x-keyward-error"),
        Some("audit_unavailable")
    );
    assert!(mock.records().is_empty());
    // Health and metrics keep answering, and say what is wrong.
    let admin = running.admin_addr.unwrap();
    assert_eq!(
        keyward_tests::client::admin_get(admin, "/healthz")
            .await
            .status,
        200
    );
    let metrics = keyward_tests::client::admin_get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        !metrics
            .body
            .contains("keyward_audit_write_failures_total 0"),
        "{}",
        metrics.body
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_reports_health_readiness_and_metrics() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    // Exchange usage is counted in windows aligned to the minute; a run that straddles
    // a minute boundary rightly reads 0 for the new window, so note the minute.
    let minute = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60
    };
    let minute_of_order = minute();
    let _ = post(&keyward, "/api/v3/order", ORDER).await;
    let _ = post(&keyward, "/sapi/v1/capital/withdraw/apply", "coin=USDT").await;
    let admin = keyward.running.admin_addr.unwrap();
    let fetch = |path: &'static str| keyward_tests::client::admin_get(admin, path);
    assert_eq!(fetch("/healthz").await.status, 200);
    assert_eq!(fetch("/readyz").await.status, 200);
    let metrics = fetch("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("keyward_requests_total{bot=\"a\",venue=\"binance-spot\",decision=\"allow\",reason=\"ok\"} 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains(
            "keyward_requests_total{bot=\"a\",venue=\"binance-spot\",decision=\"deny\",reason=\"money_movement_denied\"} 1"
        ),
        "{}",
        metrics.body
    );
    let usage = if minute() == minute_of_order {
        "keyward_exchange_usage{account=\"spot\",kind=\"weight\",window=\"60s\"} 10.0"
    } else {
        "keyward_exchange_usage{account=\"spot\",kind=\"weight\",window=\"60s\"} 0.0"
    };
    for sample in [
        "keyward_overhead_seconds_count 2",
        usage,
        "keyward_exchange_limit{account=\"spot\",kind=\"weight\",window=\"60s\"} 6000.0",
        "keyward_reloads_total{result=\"ok\"} 0",
        "keyward_config_generation 1",
        "keyward_token_expiry_timestamp_seconds{bot=\"a\"} ",
        "keyward_audit_write_failures_total 0",
    ] {
        assert!(
            metrics.body.contains(sample),
            "{sample} missing:\n{}",
            metrics.body
        );
    }
    assert!(
        metrics
            .body
            .contains("keyward_request_duration_seconds_count 2"),
        "{}",
        metrics.body
    );
    assert_eq!(fetch("/nothing").await.status, 404);
    // The admin routes do not exist on the bot port.
    let response = get(&keyward, &keyward.tokens.bot, "/metrics").await;
    assert_eq!(response.status, 403);
    keyward.running.shutdown().await;
}

/// OPS-006: keyward never reads proxy settings from its environment. The variables
/// are set for a child process running this same test, which must still reach the
/// exchange directly (a proxy at 127.0.0.1:9 would refuse every connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_proxies_are_ignored() {
    const CHILD: &str = "KEYWARD_TEST_PROXY_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let mock = Mock::start().await;
        let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
        let response = get(
            &keyward,
            &keyward.tokens.bot,
            "/api/v3/account?timestamp=1&signature=x",
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(mock.records().len(), 1);
        keyward.running.shutdown().await;
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "--exact",
                "serve::environment_proxies_are_ignored",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("HTTPS_PROXY", "http://127.0.0.1:9/")
            .env("https_proxy", "http://127.0.0.1:9/")
            .env("HTTP_PROXY", "http://127.0.0.1:9/")
            .env("ALL_PROXY", "socks5://127.0.0.1:9")
            .env("all_proxy", "socks5://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
}

/// A request refused on its head (here a withdrawal) over HTTP/2 while the client is
/// still sending its body: keyward reads the body out before answering, so curl gets
/// a clean 403 rather than a reset stream (curl reported `(92) Stream error in the
/// HTTP/2 framing layer` when the refusal overtook the body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_over_http2_does_not_reset_a_client_still_sending() {
    let mock = Mock::start().await;
    // A body larger than the HTTP/2 flow-control window, so the client is still
    // sending it when the head is refused.
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "max_body_bytes = 1048576").await;
    let body_file = keyward.dir.path().join("body.txt");
    std::fs::write(
        &body_file,
        format!("coin=USDT&address=x&amount=1&memo={}", "m".repeat(400_000)),
    )
    .unwrap();
    let body = format!("@{}", body_file.display());
    let ca = keyward.running.ca_path.clone();
    let url = format!(
        "https://127.0.0.1:{}/sapi/v1/capital/withdraw/apply",
        keyward.port()
    );
    let token = keyward.tokens.bot.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|_| {
                std::process::Command::new("curl")
                    .args(["-sS", "--http2", "--cacert"])
                    .arg(&ca)
                    .args(["-H", &format!("X-MBX-APIKEY: {token}")])
                    .args(["-w", "\nHTTP %{http_code}", "--data-binary", &body, &url])
                    .output()
                    .expect("curl must be installed (apt-get install curl)")
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for output in outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.ends_with("HTTP 403") && stdout.contains("money_movement_denied"),
            "{stdout}"
        );
    }
    assert!(mock.records().is_empty());
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenless_market_data_is_served_unsigned_within_its_share_of_the_exchange() {
    let mock = Mock::start().await;
    // No account says public_market_data: on a loopback listener it is the default.
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    let tokenless = vec![("Host".to_owned(), format!("localhost:{}", keyward.port()))];
    // A 5,000-level book weighs 250 of Binance's 6,000 a minute; keyward keeps 10 %
    // headroom and gives tokenless requests 20 % of the rest: 1,080, so 4 of them.
    // The window is the exchange's minute: start well inside one.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 45 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = keyward
            .client
            .request(
                "GET",
                "/api/v3/depth?symbol=BTCUSDT&limit=5000",
                &tokenless,
                b"",
            )
            .await;
        if response.status != 200 {
            assert_eq!(
                response.header("x-keyward-error"),
                Some("exchange_share_exceeded"),
                "{}",
                response.body
            );
        }
        statuses.push(response.status);
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(served, 4, "{statuses:?}");
    let records = mock.records();
    assert_eq!(records.len(), 4);
    for record in &records {
        assert_eq!(record.path, "/api/v3/depth");
        assert_eq!(record.header("x-mbx-apikey"), None, "sent with a key");
        assert_eq!(record.signature_ok, None);
    }
    // The bots' share is untouched: an order still goes through.
    let response = post(&keyward, "/api/v3/order", ORDER).await;
    assert_eq!(response.status, 200, "{}", response.body);
    // A tokenless request for anything but public market data is still refused.
    let response = keyward
        .client
        .request("GET", "/api/v3/account", &tokenless, b"")
        .await;
    assert_eq!(response.status, 401);
    assert_eq!(response.header("x-keyward-error"), Some("auth_missing"));
    assert_eq!(mock.records().len(), 5);
    keyward.running.shutdown().await;
}
