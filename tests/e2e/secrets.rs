//! Secret handling proven on a running `keyward serve` process (THREATS.md 5.6):
//! canary secrets stay out of logs at TRACE, responses, Debug output and the process's
//! memory; core dumps are off and the process is not dumpable; a key rotated in the
//! vault is picked up on SIGHUP while requests keep flowing, none failing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use keyward_tests::client::{Response, build};
use keyward_tests::mock::Mock;
use keyward_tests::process::{KeywardProcess, MASTER_KEY_VARIABLE, VaultKey};
use keyward_tests::{FixturePolicy, canary, digest, rfc3339, token};

const EXE: &str = env!("CARGO_BIN_EXE_keyward-e2e");
const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";

fn headers(keyward: &KeywardProcess, token: &str, form: bool) -> Vec<(String, String)> {
    keyward_tests::client::bot_headers(keyward.bot_addr.port(), token, form)
}

async fn send(
    keyward: &KeywardProcess,
    token: &str,
    method: &str,
    target: &str,
    body: &str,
) -> Response {
    keyward
        .client
        .request(
            method,
            target,
            &headers(keyward, token, !body.is_empty()),
            body.as_bytes(),
        )
        .await
}

fn dead_account_tables(mock: &Mock) -> String {
    format!(
        r#"
[accounts.dead]
venue = "binance-spot"
secret = "spot"
upstream = "https://127.0.0.1:9"
upstream_ca = "{ca}"

[bots.d]
account = "dead"
tokens = ["{digest}"]
expires = "{expires}"
endpoints = ["GET /api/v3/account"]
"#,
        ca = mock.ca.display(),
        digest = digest(&token("d", "active")),
        expires = rfc3339(SystemTime::now() + Duration::from_secs(7 * 86_400)),
    )
}

fn key_file_bytes(keyward: &KeywardProcess) -> Vec<u8> {
    (0..keyward.master_key_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&keyward.master_key_hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_keyward_keeps_secrets_out_of_logs_responses_and_memory() {
    let mock = Mock::start().await;
    let keyward = KeywardProcess::spawn(
        Path::new(EXE),
        FixturePolicy::P0,
        (mock.url(), mock.ca.clone()),
        "",
        &dead_account_tables(&mock),
        VaultKey::File,
        &[("KEYWARD_LOG", "trace")],
    );
    let bot = keyward.tokens.bot.clone();
    let dead = token("d", "active");

    // The full flow and every error path, over HTTP/1.1 and HTTP/2.
    let mut answers: Vec<(String, Response)> = Vec::new();
    for (label, token, method, target, body, status) in [
        ("order", bot.as_str(), "POST", "/api/v3/order", ORDER, 200),
        ("account", bot.as_str(), "GET", "/api/v3/account", "", 200),
        (
            "bad token",
            "kw_a_notavalidtokenatallnotavalidtokenatallnota",
            "GET",
            "/api/v3/account",
            "",
            401,
        ),
        (
            "pair",
            bot.as_str(),
            "POST",
            "/api/v3/order",
            "symbol=DMGUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1",
            403,
        ),
        (
            "withdrawal",
            bot.as_str(),
            "POST",
            "/sapi/v1/capital/withdraw/apply",
            "coin=USDT&address=x&amount=1",
            403,
        ),
        (
            "malformed",
            bot.as_str(),
            "GET",
            "/api/v3/account?recvWindow=%zz",
            "",
            400,
        ),
        (
            "upstream down",
            dead.as_str(),
            "GET",
            "/api/v3/account",
            "",
            502,
        ),
    ] {
        let response = send(&keyward, token, method, target, body).await;
        assert_eq!(response.status, status, "{label}: {}", response.body);
        answers.push((label.to_owned(), response));
    }
    let oversized = format!("{ORDER}&newClientOrderId={}", "x".repeat(70_000));
    let response = send(&keyward, &bot, "POST", "/api/v3/order", &oversized).await;
    assert_eq!(response.status, 413, "{}", response.body);
    answers.push(("oversized".to_owned(), response));
    let garbage = keyward.client.raw(b"GARBAGE\r\n\r\n").await;
    assert_eq!(garbage.status, 400);
    answers.push(("garbage".to_owned(), garbage));
    let h2 = keyward
        .client
        .h2(
            &[
                (":method".into(), "GET".into()),
                (":scheme".into(), "https".into()),
                (
                    ":authority".into(),
                    format!("127.0.0.1:{}", keyward.bot_addr.port()),
                ),
                (":path".into(), "/api/v3/openOrders".into()),
                ("x-mbx-apikey".into(), bot.clone()),
            ],
            None,
        )
        .await;
    let h2_text = format!("{h2:?}");
    assert!(h2_text.contains("200"), "{h2_text}");

    // What reached the exchange was signed with the real key.
    let records = mock.records();
    assert!(records.len() >= 3, "{records:?}");
    assert!(records.iter().all(|r| r.signature_ok == Some(true)));
    let signatures: Vec<String> = records
        .iter()
        .filter_map(|r| {
            let all = format!("{}&{}", r.query, r.body);
            all.rsplit_once("signature=").map(|(_, s)| s.to_owned())
        })
        .collect();
    assert!(!signatures.is_empty());

    let canaries: Vec<(&str, String)> = [
        ("secret", canary::SECRET.to_owned()),
        ("passphrase", canary::PASSPHRASE.to_owned()),
        ("exchange API key", canary::API_KEY.to_owned()),
        ("bot token", bot.clone()),
        ("other bot token", dead.clone()),
        ("master key (hex)", keyward.master_key_hex.clone()),
    ]
    .into_iter()
    .chain(signatures.iter().map(|s| ("signature", s.clone())))
    .collect();

    // Logs at TRACE for every crate, including rustls (through the `log` bridge).
    let log = keyward.log();
    assert!(log.contains("\"level\":\"TRACE\""), "trace logging was on");
    assert!(
        log.contains("rustls"),
        "dependencies' logs were captured too"
    );
    for (what, value) in &canaries {
        assert!(!log.contains(value.as_str()), "the {what} is in the log");
    }
    // Responses (status line, headers and bodies) of every path.
    for (label, response) in &answers {
        let text = format!("{response:?}");
        for (what, value) in &canaries {
            if *what == "bot token" || *what == "other bot token" {
                continue;
            }
            assert!(
                !text.contains(value.as_str()),
                "{label}: the {what} is in the response"
            );
        }
    }
    assert!(!h2_text.contains(canary::SECRET));
    // The vault file holds none of it in plaintext.
    let vault = std::fs::read(keyward.path().join("keyward.vault")).unwrap();
    let vault = String::from_utf8_lossy(&vault);
    for value in [canary::SECRET, canary::PASSPHRASE, canary::API_KEY] {
        assert!(!vault.contains(value));
    }
    // Debug output of the configuration, vault, entries and credentials.
    let config = keyward::config::Config::load(&keyward.config, SystemTime::now()).unwrap();
    let material = keyward::vault::read_key(&config.vault.key).unwrap();
    let opened = keyward::vault::Vault::open(&config.vault.file, &material).unwrap();
    let entry = opened.entry("spot").unwrap();
    let credential = entry.credential().unwrap();
    let printed = format!("{config:?}{material:?}{opened:?}{entry:?}{credential:?}");
    for value in [canary::SECRET, canary::PASSPHRASE, canary::API_KEY] {
        assert!(!printed.contains(value), "Debug output shows a secret");
    }
    assert!(!printed.contains(&keyward.master_key_hex));

    // The process: no core file, not dumpable, secret pages locked, nothing in environ.
    let limits = keyward.proc_file("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    assert_eq!(keyward.metric("keyward_process_dumpable"), Some(0.0));
    let status = keyward.proc_file("status");
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    if locked_kb == 0 {
        assert!(
            log.contains("cannot lock secret memory"),
            "no lock and no warning"
        );
        assert_eq!(keyward.metric("keyward_secret_memory_unlocked"), Some(1.0));
    } else {
        assert!(locked_kb >= 16, "the 16 KiB pre-key at least: {status}");
        assert_eq!(keyward.metric("keyward_secret_memory_unlocked"), Some(0.0));
    }
    let environ = std::fs::read(format!("/proc/{}/environ", keyward.pid)).unwrap_or_default();
    let environ = String::from_utf8_lossy(&environ);
    for value in [
        canary::SECRET,
        canary::PASSPHRASE,
        keyward.master_key_hex.as_str(),
    ] {
        assert!(!environ.contains(value));
    }

    // Its memory: read through /proc/<pid>/mem, which needs root (keyward is not
    // dumpable, so anyone else gets EPERM, and that is asserted instead).
    let raw_master_key = key_file_bytes(&keyward);
    let needles: [&[u8]; 3] = [
        canary::SECRET.as_bytes(),
        canary::PASSPHRASE.as_bytes(),
        &raw_master_key,
    ];
    match keyward.scan_memory(&needles) {
        Ok(scan) => {
            assert!(scan.bytes > 1_000_000, "read {} bytes", scan.bytes);
            assert_eq!(
                scan.counts(),
                [0, 0, 0],
                "plaintext copies of the secret, passphrase, master key: {:#?}",
                scan.places
            );
        }
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::PermissionDenied,
            "only root may read keyward's memory: {error}"
        ),
    }

    // Abort it: the kernel must not write a core.
    let mut keyward = keyward;
    keyward.signal("ABRT");
    let status = keyward.wait(Duration::from_secs(10)).unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(6), "{status:?}");
    assert!(!status.core_dumped(), "a core was dumped");
}

const NEW_API_KEY: &str = "ROTATEDAPIKEYq9Wm2Xc7Vb4Nz1Ls8Kd5Jf3Hg6";
const NEW_SECRET: &str = "ROTATEDSECRETt4Yu7Io2Pa9Sd6Fg3Hj8Kl5Zx1Cv0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_used_after_sighup_while_requests_keep_flowing() {
    let mock = Mock::start().await;
    mock.accept_key(NEW_API_KEY, NEW_SECRET);
    let keyward = Arc::new(KeywardProcess::spawn(
        Path::new(EXE),
        FixturePolicy::P0,
        (mock.url(), mock.ca.clone()),
        // Watching would pick the rotation up by itself; this test is about SIGHUP.
        "watch_interval_ms = 0",
        "",
        VaultKey::Env,
        &[],
    ));

    // Four bots' worth of keep-alive connections placing orders without pause.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let keyward = keyward.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut connection = keyward.client.keep_alive().await;
            let mut sent = Vec::new();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let id = format!("w{worker}n{seq}");
                let body = format!("{ORDER}&newClientOrderId={id}");
                let request = build(
                    "POST",
                    "/api/v3/order",
                    &headers(&keyward, &keyward.tokens.bot, true),
                    body.as_bytes(),
                );
                let started = Instant::now();
                let response = connection.send(&request).await;
                sent.push((id, started, response.status, response.body));
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Rotate with the CLI, as an operator would, then SIGHUP.
    let json = serde_json::json!({"api_key": NEW_API_KEY, "api_secret": NEW_SECRET}).to_string();
    let config = keyward.config.clone();
    let master = keyward.master_key_hex.clone();
    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = std::process::Command::new(EXE)
            .arg("--config")
            .arg(&config)
            .args(["vault", "rotate", "spot"])
            .env(MASTER_KEY_VARIABLE, master)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(json.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("rotated `spot`"), "{said}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(keyward.metric("keyward_config_generation"), Some(1.0));

    keyward.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while keyward.metric("keyward_config_generation") != Some(2.0) {
        assert!(Instant::now() < deadline, "no reload:\n{}", keyward.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reloaded_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for worker in workers {
        sent.extend(worker.await.unwrap());
    }

    // No request failed; every one reached the exchange correctly signed.
    for (id, _, status, body) in &sent {
        assert_eq!(*status, 200, "{id}: {body}");
    }
    let records = mock.records();
    let key_of: BTreeMap<String, String> = records
        .iter()
        .filter(|r| r.path == "/api/v3/order")
        .map(|r| {
            assert_eq!(r.signature_ok, Some(true), "{r:?}");
            (
                r.params()["newClientOrderId"].clone(),
                r.header("x-mbx-apikey").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(key_of.len(), sent.len(), "one exchange request per order");
    let before = sent
        .iter()
        .filter(|(id, ..)| key_of[id] == canary::API_KEY)
        .count();
    let after: Vec<_> = sent
        .iter()
        .filter(|(_, started, ..)| *started > reloaded_at)
        .collect();
    assert!(before > 0, "orders before the reload used the old key");
    assert!(
        after.len() > 4,
        "orders kept flowing after the reload: {}",
        after.len()
    );
    for (id, ..) in &after {
        assert_eq!(key_of[id], NEW_API_KEY, "{id} was sent after the reload");
    }
    let reload = keyward
        .audit()
        .into_iter()
        .find(|l| l["event"] == "reload")
        .unwrap();
    assert_eq!(reload["result"], "ok");
    assert_eq!(reload["trigger"], "signal");
    assert_eq!(
        reload["keys"][0][1],
        keyward::secret::fingerprint(NEW_API_KEY)
    );

    // The env master key was read once: it is in the initial environment block (the
    // kernel keeps that) and nowhere else in memory, and its raw bytes nowhere.
    let hex = keyward.master_key_hex.clone();
    let raw = key_file_bytes(&keyward);
    let needles: [&[u8]; 4] = [
        hex.as_bytes(),
        &raw,
        NEW_SECRET.as_bytes(),
        canary::SECRET.as_bytes(),
    ];
    if let Ok(scan) = keyward.scan_memory(&needles) {
        assert_eq!(
            scan.counts(),
            [1, 0, 0, 0],
            "master key hex (environ only), raw key, secrets: {:#?}",
            scan.places
        );
        assert!(scan.places[0][0].contains("[stack]"), "{:#?}", scan.places);
    }

    // A configuration with a mistake is refused over the admin listener, the running
    // one stays, and requests are still served under it.
    let text = std::fs::read_to_string(&keyward.config).unwrap();
    std::fs::write(
        &keyward.config,
        text.replace("[bots.b]", "[bots.b]\nbogus = 1"),
    )
    .unwrap();
    let (status, body) = keyward.admin("POST", "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("p0.toml:") && body.contains("bogus"),
        "{body}"
    );
    assert_eq!(
        keyward.metric("keyward_reloads_total{result=\"failed\"}"),
        Some(1.0)
    );
    assert_eq!(keyward.metric("keyward_config_generation"), Some(2.0));
    let response = send(&keyward, &keyward.tokens.bot, "GET", "/api/v3/account", "").await;
    assert_eq!(response.status, 200, "{}", response.body);

    // SIGTERM: a clean exit.
    let mut keyward = Arc::into_inner(keyward).unwrap();
    keyward.signal("TERM");
    let status = keyward.wait(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status:?}\n{}", keyward.log());
}
