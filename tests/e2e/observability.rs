//! What an SRE copies: the metrics a running keyward exports (through the
//! metrics-only listener, which serves nothing else), checked by `promtool check
//! metrics`; and the shipped Grafana dashboard and Prometheus alerts, whose queries
//! may name only metrics keyward exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Behaviour, Mock};
use keyward_tests::{FixturePolicy, Serving};

const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// `promtool`, or `None` with a note where it is not installed (CI installs it and
/// sets `KEYWARD_REQUIRE_PROMTOOL`, so there it must be found).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("KEYWARD_REQUIRE_PROMTOOL").is_none(),
            "promtool is required here (Debian: apt-get install prometheus)"
        );
        return None;
    }
    Some("promtool")
}

/// Every metric family the exposition declares, by its sample names: a counter
/// `x` as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`, an info as
/// `x_info`.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let Some((name, kind)) = rest.split_once(' ') else {
            continue;
        };
        match kind {
            // Named as its samples in the classic format, without `_total` in
            // OpenMetrics.
            "counter" if name.ends_with("_total") => {
                names.insert(name.to_owned());
            }
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            "info" => {
                names.insert(format!("{name}_info"));
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The metric names a PromQL text uses (keyward's and the standard process ones).
fn named_in(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = query.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let rest = &query[start..];
        let found = ["keyward_", "process_"]
            .iter()
            .filter_map(|prefix| rest.find(prefix))
            .min();
        let Some(offset) = found else {
            break;
        };
        let begin = start + offset;
        let boundary = begin == 0 || {
            let before = bytes[begin - 1];
            !(before.is_ascii_alphanumeric() || before == b'_')
        };
        let end = query[begin..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(query.len(), |n| begin + n);
        if boundary {
            names.insert(query[begin..end].to_owned());
        }
        start = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_metrics_alone_and_the_dashboard_and_alerts_match_them() {
    let mock = Mock::start().await;
    // Not loopback and no unsafe_listen: the metrics listener may face the network.
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            server_extra: "metrics_listen = \"0.0.0.0:0\"".to_owned(),
            bot_extra: "daily_notional = \"1000\"\nmax_orders = \"100/h\"\nmax_open_orders = 20"
                .to_owned(),
            account_extra: "daily_notional = \"5000\"\nmax_orders = \"500/d\"\n\
                            max_open_orders = 50\nfreeze_after_denials = \"3/m\""
                .to_owned(),
            // A slow refill: the 11th order is refused however slow the machine.
            order_rate: Some("10/10m".to_owned()),
            ..Serving::against(&mock)
        },
    )
    .await;
    let bot = keyward.tokens.bot.clone();
    // Something for every family: orders up to the bot's order rate (10/10m) and one
    // past it, an exchange failure and a ban, then refusals until the circuit
    // breaker freezes the account.
    for _ in 0..10 {
        let placed = keyward.post(&bot, "/api/v3/order", ORDER).await;
        assert_eq!(placed.status, 200, "{}", placed.body);
    }
    let limited = keyward.post(&bot, "/api/v3/order", ORDER).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    mock.set(Behaviour::Malformed);
    let failed = keyward.get(&bot, "/api/v3/account").await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    mock.set(Behaviour::Banned);
    let banned = keyward.get(&bot, "/api/v3/account").await;
    assert_eq!(banned.status, 503, "{}", banned.body);
    assert!(
        banned.body.contains("upstream_ip_banned"),
        "{}",
        banned.body
    );
    mock.set(Behaviour::Normal);
    let forbidden = ORDER.replace("BTCUSDT", "DOGEUSDT");
    for _ in 0..3 {
        let refused = keyward.post(&bot, "/api/v3/order", &forbidden).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while keyward.running.app.freeze.frozen("spot").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the breaker did not trip"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reached = mock.records().len();
    let port = keyward.running.metrics_addr.unwrap().port();
    let metrics_at = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // Metrics and liveness, and nothing that reloads, freezes or explains. A scraper
    // that asks for OpenMetrics gets it; anyone else the classic text format.
    let scrape = keyward_tests::client::admin_get(metrics_at, "/metrics").await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        scrape.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let openmetrics = keyward_tests::client::plain_raw(
        metrics_at,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\
          Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        openmetrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        openmetrics.body.ends_with("# EOF\n"),
        "{}",
        openmetrics.body
    );
    assert!(
        openmetrics.body.contains("# TYPE keyward_requests counter"),
        "{}",
        openmetrics.body
    );
    assert!(
        scrape
            .body
            .contains("# TYPE keyward_requests_total counter")
    );
    assert_eq!(exported(&openmetrics.body), exported(&scrape.body));
    assert_eq!(
        keyward_tests::client::admin_get(metrics_at, "/healthz")
            .await
            .status,
        200
    );
    for (method, path) in [
        ("POST", "/reload"),
        ("POST", "/freeze"),
        ("POST", "/unfreeze"),
        ("POST", "/explain"),
        ("GET", "/frozen"),
        ("GET", "/readyz"),
    ] {
        let refused = keyward_tests::client::admin_request(metrics_at, method, path).await;
        assert_eq!(refused.status, 404, "{method} {path}: {}", refused.body);
    }
    assert_eq!(
        mock.records().len(),
        reached,
        "nothing reached the exchange"
    );

    let text = scrape.body;
    for sample in [
        "keyward_build_info{version=\"",
        "keyward_bot_daily_notional_used{bot=\"a\"} 600.0",
        "keyward_bot_daily_notional_limit{bot=\"a\"} 1000.0",
        "keyward_bot_orders_used{bot=\"a\",window=\"3600s\"} 10.0",
        "keyward_bot_orders_limit{bot=\"a\",window=\"3600s\"} 100.0",
        "keyward_bot_open_orders{bot=\"a\"} 10.0",
        "keyward_bot_open_orders_limit{bot=\"a\"} 20.0",
        "keyward_account_orders_used{account=\"spot\",window=\"86400s\"} 10.0",
        "keyward_account_daily_notional_limit{account=\"spot\"} 5000.0",
        "keyward_account_open_orders_limit{account=\"spot\"} 50.0",
        "keyward_exchange_reachable{account=\"spot\"} 1",
        "keyward_upstream_duration_seconds_count{venue=\"binance-spot\",account=\"spot\"} 11",
        "keyward_upstream_errors_total{venue=\"binance-spot\",account=\"spot\",kind=\"upstream_response_invalid\"} 1",
        "keyward_rate_limited_total{bot=\"a\",scope=\"bot_orders\"} 1",
        "keyward_circuit_breaker_trips_total{account=\"spot\",bot=\"a\"} 1",
        "keyward_exchange_paused_seconds{account=\"spot\",banned=\"true\"} ",
        "keyward_last_reload_success 1",
        "keyward_frozen{account=\"spot\"} 1.0",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "keyward_token_expiry_timestamp_seconds{bot=\"a\"} ",
    ] {
        assert!(text.contains(sample), "{sample} missing:\n{text}");
    }
    // Units in the names, never a mixed family.
    assert!(!text.contains("keyward_budget_used"), "{text}");
    assert!(!text.contains("_milliseconds"), "{text}");
    let names = exported(&text);

    // Every metric the dashboard and the alerts query is one keyward exports.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/keyward.json")).unwrap())
            .unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(named_in(target["expr"].as_str().unwrap()));
        }
    }
    let alerts = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let alert_names: BTreeSet<String> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .chain(
            // The multi-line expression of the budget alert.
            alerts
                .lines()
                .filter(|l| l.trim_start().starts_with("keyward_") || l.contains(" or keyward_")),
        )
        .flat_map(named_in)
        .collect();
    assert!(queried.len() > 20, "{queried:?}");
    assert!(alert_names.len() > 10, "{alert_names:?}");
    // Handshakes refused over a client certificate need `[tls] client_ca`: the
    // identity tests see that family (identity::client_certificates_bind_bots...).
    let elsewhere = ["keyward_tls_handshakes_refused_total"];
    let unknown: Vec<&String> = queried
        .iter()
        .chain(&alert_names)
        .filter(|name| !names.contains(*name) && !elsewhere.contains(&name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "queried but not exported: {unknown:?}\nexported: {names:?}"
    );

    let Some(promtool) = promtool() else {
        eprintln!(
            "promtool not installed (Debian: apt-get install prometheus): its checks skipped"
        );
        keyward.running.shutdown().await;
        return;
    };
    {
        let mut check = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
        let checked = check.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
        for args in [
            ["check", "rules", "alerts.yml"],
            ["test", "rules", "alerts.test.yml"],
        ] {
            let ran = Command::new(promtool)
                .args(args)
                .current_dir(deploy("prometheus"))
                .output()
                .unwrap();
            assert!(
                ran.status.success(),
                "promtool {args:?}:\n{}{}",
                String::from_utf8_lossy(&ran.stdout),
                String::from_utf8_lossy(&ran.stderr)
            );
        }
    }
    keyward.running.shutdown().await;
}

#[test]
fn metric_names_are_found_in_queries() {
    assert_eq!(
        named_in("100 * keyward_bot_orders_used / keyward_bot_orders_limit > 0.9"),
        BTreeSet::from([
            "keyward_bot_orders_used".into(),
            "keyward_bot_orders_limit".into()
        ])
    );
    assert_eq!(
        named_in("rate(process_cpu_seconds_total[5m]) + my_keyward_x"),
        BTreeSet::from(["process_cpu_seconds_total".into()])
    );
}
