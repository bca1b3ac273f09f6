//! `keyward demo`: started as the command would start it, then the curl commands it
//! prints are run as printed and must answer as it says.

use std::process::Command;
use std::time::SystemTime;

use keyward::config::Config;
use keyward_tests::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_answers_the_printed_requests_as_printed() {
    let dir = TempDir::new("demo");
    let demo_dir = dir.path().join("demo");
    let demo = keyward::demo::prepare(&demo_dir, 0).unwrap();
    let config = Config::load(&demo.config, SystemTime::now()).unwrap();
    let running = keyward::server::start(config).await.unwrap();
    let text = keyward::demo::instructions(
        &demo,
        running.bot_addr,
        running.admin_addr,
        &running.ca_path,
    );
    assert!(text.contains(demo.token.as_str()));
    let commands: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl "))
        .collect();
    assert_eq!(commands.len(), 3, "{text}");
    let mut answers = Vec::new();
    for command in &commands {
        let command = format!("{command} -w '\\nHTTP %{{http_code}}'");
        let output = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .arg("-c")
                .arg(&command)
                .output()
                .expect("curl must be installed (apt-get install curl)")
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        answers.push(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    // The allowed order: 200 and the request keyward would have sent, with every
    // credential a placeholder and no signature: a dry-run answer must not hand out
    // anything usable at the exchange.
    assert!(answers[0].ends_with("HTTP 200"), "{}", answers[0]);
    let body: serde_json::Value =
        serde_json::from_str(answers[0].trim_end_matches("HTTP 200").trim()).unwrap();
    let sent = &body["would_send"];
    assert_eq!(sent["url"], "https://api.binance.com/api/v3/order");
    assert_eq!(sent["headers"]["x-mbx-apikey"], "<the account's API key>");
    assert!(!answers[0].contains("demo-api-key"), "{}", answers[0]);
    let payload = sent["body"].as_str().unwrap();
    assert!(payload.starts_with("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&recvWindow=5000&timestamp=<keyward's clock>&signature=<"));
    assert!(sent["signature"].as_str().unwrap().starts_with("withheld"));
    assert!(
        body["keyward"]
            .as_str()
            .unwrap()
            .contains("nothing was sent")
    );
    // The pair the bot may not trade and the withdrawal: refused as printed.
    assert!(
        answers[1].ends_with("HTTP 403") && answers[1].contains("symbol_not_allowed"),
        "{}",
        answers[1]
    );
    assert!(
        answers[2].ends_with("HTTP 403") && answers[2].contains("money_movement_denied"),
        "{}",
        answers[2]
    );
    // The ccxt snippet, run as printed: the allowed order comes back as the request
    // keyward would have sent, and the last line raises ccxt's PermissionDenied with
    // keyward's reason. Only the CA the snippet names is trusted.
    let snippet: String = text
        .lines()
        .skip_while(|l| !l.starts_with("The same from Python with ccxt"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    assert!(snippet.contains("ccxt.binance("), "{text}");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(keyward_tests::python::python())
            .arg("-c")
            .arg(&snippet)
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("SSL_CERT_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (printed, raised) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        printed.contains("would_send") && printed.contains("nothing was sent"),
        "ccxt snippet printed: {printed}\n{raised}"
    );
    let last = raised.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ccxt.base.errors.PermissionDenied")
            && last.contains("symbol_not_allowed"),
        "ccxt snippet raised: {raised}"
    );
    // The demo's secret never appears in what it printed or answered.
    let vault_text = std::fs::read_to_string(demo_dir.join("keyward.vault")).unwrap();
    assert!(!vault_text.contains("demo-api-key"));
    running.shutdown().await;
}
