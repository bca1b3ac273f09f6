//! Running as a sidecar: the exchange's limits obeyed (usage headers, 429 and 418
//! with Retry-After), signed timestamps on the exchange's clock, reload when a
//! Kubernetes ConfigMap's `..data` symlink is swapped, the audit hash chain through
//! `keyward audit verify`, and SIGTERM draining requests in flight.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use keyward::config::Config;
use keyward_tests::client::{BotClient, bot_headers};
use keyward_tests::launch::{Keyward, write_vault};
use keyward_tests::mock::{Behaviour, Mock};
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::{
    FixturePolicy, Serving, TempDir, fixed_now, fixture_tokens, run_cli, write_fixture_serving,
};

const EXE: &str = env!("CARGO_BIN_EXE_keyward-e2e");
const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";
const ETH_ORDER: &str =
    "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=3000";

fn metric(keyward: &Keyward, sample: &str) -> Option<f64> {
    keyward::exposition::render(&keyward.running.app)
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// Waits for keyward's clock check at start, which also reports usage, so it cannot
/// land in the middle of a test and overwrite the usage the test set up.
async fn clock_checked(keyward: &Keyward) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(offset) = metric(keyward, "keyward_clock_offset_seconds{account=\"spot\"}") {
            return offset;
        }
        assert!(Instant::now() < deadline, "no clock measurement");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `attempt` until it is not split by a boundary of the exchange's `window`
/// (usage counters reset at each one), at most three times.
async fn within_one_window<F, Fut>(window: Duration, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let window_ms = window.as_millis();
    let index = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            / window_ms
    };
    for _ in 0..3 {
        let before = index();
        let passed = attempt().await;
        if index() == before {
            assert!(passed, "the check failed within one window");
            return;
        }
    }
    panic!("three attempts straddled a window boundary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyward_stops_short_of_the_exchange_limits_and_obeys_a_ban() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    clock_checked(&keyward).await;
    let bot = keyward.tokens.bot.clone();

    // Request weight: the exchange reports 5,500 of 6,000 used this minute; with the
    // default 10% headroom keyward sends nothing more until the minute ends.
    within_one_window(Duration::from_secs(60), || async {
        mock.clear();
        mock.set(Behaviour::Usage(5_500, 0));
        let first = keyward.get(&bot, "/api/v3/account").await;
        mock.set(Behaviour::Normal);
        let second = keyward.get(&bot, "/api/v3/account").await;
        first.status == 200
            && second.status == 429
            && second.header("x-keyward-error") == Some("exchange_limit_near")
            && second
                .header("retry-after")
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| (1..=60).contains(&s))
            && mock.records().len() == 1
    })
    .await;
    assert_eq!(
        metric(
            &keyward,
            "keyward_exchange_usage{account=\"spot\",kind=\"weight\",window=\"60s\"}"
        ),
        Some(5_500.0)
    );
    keyward.running.shutdown().await;

    // Orders: 95 of 100 in ten seconds; the next order is refused, a read still goes.
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    clock_checked(&keyward).await;
    within_one_window(Duration::from_secs(10), || async {
        mock.clear();
        mock.set(Behaviour::Usage(10, 95));
        let first = keyward.post(&bot, "/api/v3/order", ORDER).await;
        mock.set(Behaviour::Normal);
        let order = keyward.post(&bot, "/api/v3/order", ORDER).await;
        let read = keyward.get(&bot, "/api/v3/account").await;
        first.status == 200
            && order.status == 429
            && order.header("x-keyward-error") == Some("exchange_limit_near")
            && read.status == 200
            && mock.records().len() == 2
    })
    .await;
    keyward.running.shutdown().await;

    // A ban (418, Retry-After 2): the bot that met it gets 503, so does every bot
    // afterwards, nothing is sent until the two seconds have passed, then all flows.
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    clock_checked(&keyward).await;
    mock.clear();
    mock.set(Behaviour::BannedFor(2));
    let banned_at = Instant::now();
    let response = keyward.post(&bot, "/api/v3/order", ORDER).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(
        response.header("x-keyward-error"),
        Some("upstream_ip_banned")
    );
    assert!(response.body.contains("-1003"), "{}", response.body);
    assert_eq!(mock.records().len(), 1);
    mock.set(Behaviour::Normal);
    mock.clear();
    for token in [&keyward.tokens.bot, &keyward.tokens.bot_b] {
        let response = keyward.get(token, "/api/v3/account").await;
        assert_eq!(response.status, 503);
        assert_eq!(
            response.header("x-keyward-error"),
            Some("upstream_ip_banned")
        );
        assert!(response.header("retry-after").is_some());
    }
    assert!(mock.records().is_empty(), "nothing is sent during the ban");
    assert!(
        keyward::exposition::render(&keyward.running.app)
            .contains("keyward_exchange_paused_seconds{account=\"spot\",banned=\"true\"}")
    );
    // The ban's request was audited once: its outcome carries the exchange's 418.
    let audit = keyward.audit();
    let banned_id = response.header("x-keyward-request-id").unwrap();
    let lines: Vec<_> = audit
        .iter()
        .filter(|l| l["request_id"] == banned_id)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["upstream_status"], 418);
    tokio::time::sleep(
        Duration::from_secs(2).saturating_sub(banned_at.elapsed()) + Duration::from_millis(100),
    )
    .await;
    let response = keyward.get(&bot, "/api/v3/account").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(mock.records().len(), 1);
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_timestamps_follow_the_exchange_clock() {
    let mock = Mock::start().await;
    // The exchange's clock runs 30 s behind this host's: a timestamp from the host
    // clock would be refused as being in the future (-1021).
    mock.set_clock_skew_ms(-30_000);
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    let offset = clock_checked(&keyward).await;
    assert!((-30.5..=-29.5).contains(&offset), "{offset}");
    assert!(!mock.clock_checks().is_empty());
    let response = keyward
        .post(&keyward.tokens.bot, "/api/v3/order", ORDER)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let record = &mock.records()[0];
    assert_eq!(record.signature_ok, Some(true));
    assert_eq!(
        record.params()["recvWindow"],
        "5000",
        "the window is not widened"
    );
    let sent: i64 = record.params()["timestamp"].parse().unwrap();
    let host_now = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(
        (host_now - 31_000..host_now - 29_000).contains(&sent),
        "{sent} vs {host_now}"
    );
    keyward.running.shutdown().await;
}

/// A Kubernetes ConfigMap volume: the files are symlinks through `..data`, which the
/// kubelet repoints at a new directory in one rename.
fn configmap_version(conf: &Path, version: &str, text: &str) {
    let dir = conf.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keyward.toml"), text).unwrap();
    let staging = conf.join("..data_tmp");
    let _ = std::fs::remove_file(&staging);
    std::os::unix::fs::symlink(version, &staging).unwrap();
    std::fs::rename(&staging, conf.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_swap_is_reloaded_and_a_revoked_token_stops_within_seconds() {
    let mock = Mock::start().await;
    let dir = TempDir::new("configmap");
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let tokens = fixture_tokens();
    let serving = Serving {
        listen: Some("127.0.0.1:0".to_owned()),
        upstream: Some((mock.url(), mock.ca.clone())),
        server_extra: "watch_interval_ms = 200".to_owned(),
        tables: String::new(),
        order_rate: Some("100000/s".to_owned()),
        bot_extra: String::new(),
        account_extra: String::new(),
        relative_config: false,
    };
    let written = write_fixture_serving(
        dir.path(),
        FixturePolicy::P0,
        &tokens,
        SystemTime::now(),
        &serving,
    );
    let first = std::fs::read_to_string(&written).unwrap();
    // The vault and key live beside the ConfigMap (a Secret in a real pod).
    write_vault(&conf);
    configmap_version(&conf, "..2026_11_21_v1", &first);
    std::os::unix::fs::symlink("..data/keyward.toml", conf.join("keyward.toml")).unwrap();
    let config = Config::load(&conf.join("keyward.toml"), SystemTime::now()).unwrap();
    let running = keyward::server::start(config).await.unwrap();
    let client = BotClient::new(running.bot_addr, &running.ca_path);
    let port = running.bot_addr.port();
    let send = |token: &str, body: &str| {
        let headers = bot_headers(port, token, !body.is_empty());
        let (method, path) = if body.is_empty() {
            ("GET", "/api/v3/account")
        } else {
            ("POST", "/api/v3/order")
        };
        let bytes = keyward_tests::client::build(method, path, &headers, body.as_bytes());
        let client = &client;
        async move { client.raw(&bytes).await }
    };
    assert_eq!(send(&tokens.bot, ETH_ORDER).await.status, 200);
    assert_eq!(send(&tokens.bot_b, "").await.status, 200);

    // The new version drops ETHUSDT and revokes bot B's token.
    let b_digest = keyward_tests::digest(&tokens.bot_b);
    let second = first
        .replace(
            r#"symbols = ["BTCUSDT", "ETHUSDT"]"#,
            r#"symbols = ["BTCUSDT"]"#,
        )
        .replace(
            &format!("tokens = [\"{b_digest}\"]"),
            &format!("tokens = []\nrevoked_tokens = [\"{b_digest}\"]"),
        );
    assert_ne!(first, second);
    let swapped = Instant::now();
    configmap_version(&conf, "..2026_11_21_v2", &second);
    let deadline = swapped + Duration::from_secs(10);
    loop {
        let revoked = send(&tokens.bot_b, "").await;
        if revoked.status == 401 {
            assert_eq!(revoked.header("x-keyward-error"), Some("auth_revoked"));
            break;
        }
        assert!(Instant::now() < deadline, "still accepted after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "revoked token refused {} ms after the swap",
        swapped.elapsed().as_millis()
    );
    let refused = send(&tokens.bot, ETH_ORDER).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.header("x-keyward-error"),
        Some("symbol_not_allowed")
    );
    assert_eq!(send(&tokens.bot, ORDER).await.status, 200);
    let audit = std::fs::read_to_string(conf.join("audit.jsonl")).unwrap();
    let reloads: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["event"] == "reload")
        .collect();
    assert_eq!(reloads.len(), 1, "one reload for one swap: {reloads:?}");
    assert_eq!(reloads[0]["trigger"], "watch");
    assert_eq!(reloads[0]["result"], "ok");

    // A broken version is refused and the running one stays.
    let broken = second.replace("[bots.b]", "[bots.b]\nsymbols = 7");
    configmap_version(&conf, "..2026_11_21_v3", &broken);
    let deadline = Instant::now() + Duration::from_secs(10);
    while keyward::exposition::render(&running.app)
        .contains("keyward_reloads_total{result=\"failed\"} 0")
    {
        assert!(
            Instant::now() < deadline,
            "the broken version was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(running.app.snapshot().generation, 2);
    assert_eq!(send(&tokens.bot, ORDER).await.status, 200);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_verifies_and_a_tampered_line_is_named() {
    let mock = Mock::start().await;
    let keyward = Keyward::start(FixturePolicy::P0, &mock, "").await;
    for _ in 0..3 {
        assert_eq!(
            keyward
                .post(&keyward.tokens.bot, "/api/v3/order", ORDER)
                .await
                .status,
            200
        );
    }
    let _ = keyward
        .post(
            &keyward.tokens.bot,
            "/sapi/v1/capital/withdraw/apply",
            "coin=USDT",
        )
        .await;
    keyward.running.shutdown().await;
    let log = keyward.dir.path().join("audit.jsonl");
    let path = log.to_str().unwrap();
    let (code, out, err) = run_cli(&["audit", "verify", path], fixed_now());
    assert_eq!(code, 0, "{err}");
    // start, three orders with their outcomes, the withdrawal's refusal, stop.
    assert!(
        out.starts_with("intact: 9 records in 1 file, chained from the start of the log"),
        "{out}"
    );

    // Change the withdrawal's refusal into an allow, as someone covering tracks would.
    let text = std::fs::read_to_string(&log).unwrap();
    let forged = text.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
    assert_ne!(forged, text);
    let line = forged.lines().position(|l| l.contains("withdraw")).unwrap() + 1;
    std::fs::write(&log, forged).unwrap();
    let (code, _, err) = run_cli(&["audit", "verify", path], fixed_now());
    assert_eq!(code, 1);
    // The forged line itself still parses; the chain breaks at the line after it (the
    // stop record keyward writes at shutdown), whose `prev` no longer matches.
    assert!(err.contains(&format!("{path}:{}:", line + 1)), "{err}");
    assert!(err.contains("removed, changed or reordered"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    let mock = Mock::start().await;
    let mut keyward = KeywardProcess::spawn(
        Path::new(EXE),
        FixturePolicy::P0,
        (mock.url(), mock.ca.clone()),
        "",
        "",
        VaultKey::File,
        &[],
    );
    mock.set(Behaviour::Slow(1_500));
    let client = keyward.client.clone();
    let headers = bot_headers(keyward.bot_addr.port(), &keyward.tokens.bot, true);
    let in_flight = tokio::spawn(async move {
        client
            .request("POST", "/api/v3/order", &headers, ORDER.as_bytes())
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    keyward.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        std::net::TcpStream::connect(keyward.bot_addr).is_err(),
        "a new connection was accepted after SIGTERM"
    );
    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    let status = tokio::task::spawn_blocking(move || {
        let status = keyward.wait(Duration::from_secs(20));
        (status, keyward)
    })
    .await
    .unwrap();
    let (status, keyward) = status;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        keyward.log()
    );
    // Everything was written, and the chain is whole.
    let audit = keyward.audit();
    let id = response.header("x-keyward-request-id").unwrap();
    assert!(
        audit
            .iter()
            .any(|l| l["request_id"] == id && l["event"] == "outcome")
    );
    let log = keyward.path().join("audit.jsonl");
    let (code, _, err) = run_cli(&["audit", "verify", log.to_str().unwrap()], fixed_now());
    assert_eq!(code, 0, "{err}");
}

/// A reload lets the configuration it replaces go, with the upstream connections
/// of its pools. (Before, `keyward serve` kept a reference into the first snapshot
/// for as long as it ran: its credentials, TLS material and pooled connections to
/// the exchange outlived every reload. The soak bench found the connections.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_releases_the_configuration_it_replaces() {
    let mock = Mock::start().await;
    let keyward = KeywardProcess::spawn(
        Path::new(EXE),
        FixturePolicy::P0,
        (mock.url(), mock.ca.clone()),
        "",
        "",
        VaultKey::File,
        &[],
    );
    // Concurrent requests, so that the pool holds several connections.
    mock.set(Behaviour::Slow(300));
    let headers = bot_headers(keyward.bot_addr.port(), &keyward.tokens.bot, false);
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (client, headers) = (keyward.client.clone(), headers.clone());
        requests.spawn(async move {
            client
                .request(
                    "GET",
                    "/api/v3/account?timestamp=1&signature=x",
                    &headers,
                    b"",
                )
                .await
                .status
        });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let port = mock.addr.port();
    let pooled = keyward.connections_to(port);
    assert!(pooled >= 2, "{pooled} pooled upstream connections");
    assert_eq!(keyward.admin("POST", "/reload").0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while keyward.connections_to(port) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} of {pooled} upstream connections still open 5 s after the reload",
            keyward.connections_to(port)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
