//! Secret handling proven on a running `keyward serve` process (INV-11, docs/security.md), for
//! every venue's kind of secret: canary secrets (HMAC secrets, OKX's passphrase,
//! Kraken's base64 secret and its decoded bytes, Coinbase's PEM key and its private
//! scalar) stay out of logs at TRACE, responses, Debug output, the vault file and the
//! process's memory; core dumps are off and the process is not dumpable; a key
//! rotated in the vault is picked up on SIGHUP while requests keep flowing, none
//! failing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use keyward_tests::client::{H2Outcome, Response, build};
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::process::{KeywardProcess, MASTER_KEY_VARIABLE, VaultKey};
use keyward_tests::venues::{self, VenueFixture};
use keyward_tests::{FixturePolicy, Serving, canary, digest, rfc3339, token};

const EXE: &str = env!("CARGO_BIN_EXE_keyward-e2e");
const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";
/// A well-formed token no configuration knows.
const UNKNOWN_TOKEN: &str = "kw_a_notavalidtokenatallnotavalidtokenatallnota";

/// Who sends a request of a venue's run.
#[derive(Debug, Clone, Copy)]
enum Sender {
    /// Bot `a` of the fixture.
    Bot,
    /// Bot `d`, whose account's exchange is down.
    Dead,
    /// A token no configuration knows.
    Unknown,
}

/// A request: method, target and body.
type Call = (&'static str, &'static str, &'static str);

/// A request of a run: label, sender, (method, target, body), expected status.
type Case<'a> = (&'static str, Sender, (&'static str, &'a str, &'a str), u16);

/// One venue's run: its fixture, how bots address it, a request of every outcome
/// (allowed order and read, unknown token, denied pair, money movement, malformed,
/// exchange down), where the exchange's signatures are, and the account's API key.
struct VenueRun {
    name: &'static str,
    policy: FixturePolicy,
    /// `venue` and `secret` of the fixture's account, for a second account in front
    /// of an exchange that is down.
    venue: &'static str,
    entry: &'static str,
    /// A read bot `a` and bot `d` may make.
    read: Call,
    /// The order endpoint, an order bot `a` may place, and one on a pair it may not.
    order_target: &'static str,
    order: &'static str,
    other_pair: String,
    withdrawal: Call,
    malformed: Call,
    /// The header carrying the token, and whether it is `Bearer <token>`.
    key_header: &'static str,
    bearer: bool,
    content_type: &'static str,
    /// Headers of the exchange requests that carry keyward's signature; Binance's is
    /// the query's or body's `signature=`.
    signature_headers: &'static [&'static str],
    api_key: &'static str,
    /// A secret the venue takes in a request header (OKX's passphrase), and the
    /// header: its one tolerated plaintext copy is that header in a request head.
    header_secret: Option<(&'static str, &'static str)>,
}

impl VenueRun {
    /// Every request of the run: (label, sender, call, status).
    fn cases(&self) -> Vec<Case<'_>> {
        let (method, target, body) = self.read;
        let read = (method, target, body);
        vec![
            (
                "order",
                Sender::Bot,
                ("POST", self.order_target, self.order),
                200,
            ),
            ("read", Sender::Bot, read, 200),
            ("bad token", Sender::Unknown, read, 401),
            (
                "pair",
                Sender::Bot,
                ("POST", self.order_target, &self.other_pair),
                403,
            ),
            ("withdrawal", Sender::Bot, self.withdrawal, 403),
            ("malformed", Sender::Bot, self.malformed, 400),
            ("upstream down", Sender::Dead, read, 502),
        ]
    }

    fn headers(&self, keyward: &KeywardProcess, token: &str, body: bool) -> Vec<(String, String)> {
        let value = if self.bearer {
            format!("Bearer {token}")
        } else {
            token.to_owned()
        };
        let mut headers = vec![
            (
                "Host".to_owned(),
                format!("localhost:{}", keyward.bot_addr.port()),
            ),
            (self.key_header.to_owned(), value),
        ];
        if body {
            headers.push(("Content-Type".to_owned(), self.content_type.to_owned()));
        }
        headers
    }

    async fn send(
        &self,
        keyward: &KeywardProcess,
        token: &str,
        method: &str,
        target: &str,
        body: &str,
    ) -> Response {
        let headers = self.headers(keyward, token, !body.is_empty());
        keyward
            .client
            .request(method, target, &headers, body.as_bytes())
            .await
    }

    /// Every signature keyward put on a request the mock received.
    fn signatures(&self, records: &[Recorded]) -> Vec<String> {
        records
            .iter()
            .filter_map(|r| {
                if self.signature_headers.is_empty() {
                    let all = format!("{}&{}", r.query, r.body);
                    return all.rsplit_once("signature=").map(|(_, s)| s.to_owned());
                }
                self.signature_headers
                    .iter()
                    .find_map(|h| r.header(h))
                    .map(|s| s.trim_start_matches("Bearer ").to_owned())
            })
            .collect()
    }

    /// A second account on the same vault entry whose exchange is down, and bot `d`.
    fn dead_account_tables(&self, mock: &Mock) -> String {
        let (method, target, _) = self.read;
        let read = format!("{method} {}", target.split('?').next().unwrap());
        format!(
            r#"
[accounts.dead]
venue = "{venue}"
secret = "{entry}"
upstream = "https://127.0.0.1:9"
upstream_ca = "{ca}"

[bots.d]
account = "dead"
tokens = ["{digest}"]
expires = "{expires}"
endpoints = ["{read}"]
"#,
            venue = self.venue,
            entry = self.entry,
            ca = mock.ca.display(),
            digest = digest(&token("d", "active")),
            expires = rfc3339(SystemTime::now() + Duration::from_secs(7 * 86_400)),
        )
    }
}

fn binance() -> VenueRun {
    VenueRun {
        name: "binance",
        policy: FixturePolicy::P0,
        venue: "binance-spot",
        entry: "spot",
        read: ("GET", "/api/v3/account", ""),
        order_target: "/api/v3/order",
        order: ORDER,
        other_pair: ORDER.replace("BTCUSDT", "DMGUSDT"),
        withdrawal: (
            "POST",
            "/sapi/v1/capital/withdraw/apply",
            "coin=USDT&address=x&amount=1",
        ),
        malformed: ("GET", "/api/v3/account?recvWindow=%zz", ""),
        key_header: "X-MBX-APIKEY",
        bearer: false,
        content_type: "application/x-www-form-urlencoded",
        signature_headers: &[],
        api_key: canary::API_KEY,
        header_secret: None,
    }
}

fn bybit() -> VenueRun {
    const ORDER: &str = r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#;
    VenueRun {
        name: "bybit",
        policy: FixturePolicy::Venue(VenueFixture::Bybit),
        venue: "bybit",
        entry: "bybit",
        read: ("GET", "/v5/account/wallet-balance?accountType=UNIFIED", ""),
        order_target: "/v5/order/create",
        order: ORDER,
        other_pair: ORDER.replace("BTCUSDT", "ETHUSDT"),
        withdrawal: (
            "POST",
            "/v5/asset/withdraw/create",
            r#"{"coin":"USDT","chain":"ETH","address":"0xabc","amount":"5","timestamp":1700000000000,"accountType":"FUND"}"#,
        ),
        malformed: ("GET", "/v5/order/realtime?category=spot&symbol=%zz", ""),
        key_header: "X-BAPI-API-KEY",
        bearer: false,
        content_type: "application/json",
        signature_headers: &["x-bapi-sign"],
        api_key: venues::bybit::CANARY_API_KEY,
        header_secret: None,
    }
}

fn okx() -> VenueRun {
    const ORDER: &str = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.001","px":"60000"}"#;
    VenueRun {
        name: "okx",
        policy: FixturePolicy::Venue(VenueFixture::Okx),
        venue: "okx",
        entry: "okx",
        read: ("GET", "/api/v5/account/balance?ccy=BTC", ""),
        order_target: "/api/v5/trade/order",
        order: ORDER,
        other_pair: ORDER.replace("BTC-USDT", "ETH-USDT"),
        withdrawal: (
            "POST",
            "/api/v5/asset/withdrawal",
            r#"{"ccy":"USDT","amt":"1","dest":"4","toAddr":"x","chain":"USDT-TRC20"}"#,
        ),
        malformed: ("GET", "/api/v5/account/balance?ccy=%zz", ""),
        key_header: "OK-ACCESS-KEY",
        bearer: false,
        content_type: "application/json",
        signature_headers: &["ok-access-sign"],
        api_key: venues::okx::API_KEY,
        header_secret: Some(("OKX passphrase", "ok-access-passphrase")),
    }
}

fn kraken() -> VenueRun {
    const ORDER: &str = "nonce=1&ordertype=limit&type=buy&volume=0.001&pair=XBTUSD&price=60000";
    VenueRun {
        name: "kraken",
        policy: FixturePolicy::Venue(VenueFixture::Kraken),
        venue: "kraken",
        entry: "kraken",
        read: ("POST", "/0/private/Balance", "nonce=2"),
        order_target: "/0/private/AddOrder",
        order: ORDER,
        other_pair: ORDER.replace("XBTUSD", "ETHUSD"),
        withdrawal: (
            "POST",
            "/0/private/Withdraw",
            "asset=XBT&key=wallet&amount=1",
        ),
        malformed: ("POST", "/0/private/Balance", "nonce=%zz"),
        key_header: "API-Key",
        bearer: false,
        content_type: "application/x-www-form-urlencoded",
        signature_headers: &["api-sign"],
        api_key: venues::kraken::API_KEY,
        header_secret: None,
    }
}

fn coinbase() -> VenueRun {
    const ORDER: &str = r#"{"client_order_id":"cid-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.001","limit_price":"60000.00"}}}"#;
    VenueRun {
        name: "coinbase",
        policy: FixturePolicy::Venue(VenueFixture::Coinbase),
        venue: "coinbase",
        entry: "coinbase",
        read: ("GET", "/api/v3/brokerage/accounts", ""),
        order_target: "/api/v3/brokerage/orders",
        order: ORDER,
        other_pair: ORDER.replace("BTC-USD", "ETH-USD"),
        withdrawal: (
            "POST",
            "/v2/accounts/acc-btc/transactions",
            r#"{"type":"send","to":"bc1q","amount":"0.1","currency":"BTC"}"#,
        ),
        malformed: (
            "GET",
            "/api/v3/brokerage/orders/historical/batch?limit=%zz",
            "",
        ),
        key_header: "Authorization",
        bearer: true,
        content_type: "application/json",
        signature_headers: &["authorization"],
        api_key: venues::coinbase::CANARY_KEY_NAME,
        header_secret: None,
    }
}

/// Every account's secret material in the fixture vault, as the bytes that must not
/// be found in plaintext: each venue's secret, OKX's and Binance's passphrases,
/// Kraken's base64 secret and the bytes it decodes to, Coinbase's PEM key (a line of
/// it) and its private scalar d (as SEC1 holds it, big-endian, and reversed, as
/// little-endian limbs would hold it). Every process holds the whole vault, so every
/// run looks for all of them.
fn secret_needles() -> Vec<(&'static str, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let kraken_decoded = b64.decode(venues::kraken::SECRET).unwrap();
    let pem_body: String = venues::coinbase::CANARY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = b64.decode(pem_body).unwrap();
    // SEC1 ECPrivateKey: SEQUENCE, INTEGER 1, OCTET STRING of 32 bytes: the scalar.
    assert_eq!(&der[2..7], &[0x02, 0x01, 0x01, 0x04, 0x20], "SEC1 layout");
    let scalar = der[7..39].to_vec();
    let mut reversed = scalar.clone();
    reversed.reverse();
    vec![
        ("Binance secret", canary::SECRET.as_bytes().to_vec()),
        ("Binance passphrase", canary::PASSPHRASE.as_bytes().to_vec()),
        (
            "Bybit secret",
            venues::bybit::CANARY_SECRET.as_bytes().to_vec(),
        ),
        ("OKX secret", venues::okx::SECRET.as_bytes().to_vec()),
        (
            "OKX passphrase",
            venues::okx::PASSPHRASE.as_bytes().to_vec(),
        ),
        (
            "Kraken secret (base64)",
            venues::kraken::SECRET.as_bytes().to_vec(),
        ),
        ("Kraken secret (decoded)", kraken_decoded),
        (
            "Coinbase PEM",
            venues::coinbase::CANARY_PEM_LINE.as_bytes().to_vec(),
        ),
        ("Coinbase private scalar", scalar),
        ("Coinbase private scalar (reversed)", reversed),
    ]
}

fn key_file_bytes(keyward: &KeywardProcess) -> Vec<u8> {
    (0..keyward.master_key_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&keyward.master_key_hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Asserts that `response` is keyward's answer of `status`. A refusal is judged by its
/// audit record, as Bybit and Kraken send most refusals as HTTP 200 with the error in
/// the body; one after sending (the exchange down) is recorded as the request's
/// outcome, with keyward's reason but not its status, and goes out with that status
/// or with 200.
fn assert_answered(keyward: &KeywardProcess, response: &Response, status: u16, what: &str) {
    let audit = keyward.audit();
    let Some(reason) = response.header("x-keyward-error") else {
        assert_eq!(response.status, status, "{what}: {}", response.body);
        return;
    };
    if let Some(own) = keyward_tests::refused_with(&audit, response) {
        assert_eq!(own, status, "{what}: {}", response.body);
        return;
    }
    let id = response.header("x-keyward-request-id");
    let outcome = audit
        .iter()
        .find(|l| l["event"] == "outcome" && l["request_id"].as_str() == id)
        .unwrap_or_else(|| panic!("{what}: no audit record of {reason}"));
    assert_eq!(outcome["error"], reason, "{what}: {outcome}");
    assert!(
        [status, 200].contains(&response.status),
        "{what}: {}",
        response.status
    );
}

/// The shared proof: keyward at TRACE in front of the mock for `run`'s venue, every
/// outcome requested over HTTP/1.1 and HTTP/2, then the secrets (and API key, tokens,
/// master key and the signatures the mock saw) looked for in the log, every response,
/// the vault file, Debug output, the environment and the process's memory. Returns
/// the process, still running, for process-level checks.
async fn secrets_stay_hidden(run: &VenueRun) -> (KeywardProcess, Mock) {
    let mock = Mock::start().await;
    let keyward = KeywardProcess::spawn(
        Path::new(EXE),
        run.policy,
        (mock.url(), mock.ca.clone()),
        "",
        &run.dead_account_tables(&mock),
        VaultKey::File,
        &[("KEYWARD_LOG", "trace")],
    );
    let bot = keyward.tokens.bot.clone();
    let dead = token("d", "active");
    let name = run.name;

    let mut answers: Vec<(String, Response)> = Vec::new();
    for (label, sender, (method, target, body), status) in run.cases() {
        let token = match sender {
            Sender::Bot => bot.as_str(),
            Sender::Dead => dead.as_str(),
            Sender::Unknown => UNKNOWN_TOKEN,
        };
        let response = run.send(&keyward, token, method, target, body).await;
        assert_answered(&keyward, &response, status, &format!("{name} {label}"));
        answers.push((label.to_owned(), response));
    }
    let oversized = format!("{{\"x\":\"{}\"}}", "x".repeat(70_000));
    let response = run
        .send(&keyward, &bot, "POST", run.order_target, &oversized)
        .await;
    assert_answered(&keyward, &response, 413, name);
    answers.push(("oversized".to_owned(), response));
    let garbage = keyward.client.raw(b"GARBAGE\r\n\r\n").await;
    assert_answered(&keyward, &garbage, 400, &format!("{name} garbage"));
    answers.push(("garbage".to_owned(), garbage));
    let (method, target, body) = run.read;
    let body = (!body.is_empty()).then_some(body.as_bytes());
    let mut h2_headers = vec![
        (":method".to_owned(), method.to_owned()),
        (":scheme".to_owned(), "https".to_owned()),
        (
            ":authority".to_owned(),
            format!("127.0.0.1:{}", keyward.bot_addr.port()),
        ),
        (":path".to_owned(), target.to_owned()),
    ];
    h2_headers.extend(
        run.headers(&keyward, &bot, body.is_some())
            .into_iter()
            .filter(|(n, _)| n != "Host")
            .map(|(n, v)| (n.to_ascii_lowercase(), v)),
    );
    let h2 = keyward.client.h2(&h2_headers, body).await;
    assert_eq!(h2, H2Outcome::Status(200), "{name}");

    // What reached the exchange was signed with the real key.
    let records = mock.records();
    assert!(records.len() >= 3, "{name}: {records:?}");
    assert!(
        records.iter().all(|r| r.signature_ok == Some(true)),
        "{name}: {records:?}"
    );
    let signatures = run.signatures(&records);
    assert!(signatures.len() >= 3, "{name}: {records:?}");

    let needles = secret_needles();
    let texts: Vec<(String, String)> = needles
        .iter()
        .map(|(what, bytes)| {
            (
                (*what).to_owned(),
                String::from_utf8_lossy(bytes).into_owned(),
            )
        })
        .chain([
            ("exchange API key".to_owned(), run.api_key.to_owned()),
            ("bot token".to_owned(), bot.clone()),
            ("other bot token".to_owned(), dead.clone()),
            (
                "master key (hex)".to_owned(),
                keyward.master_key_hex.clone(),
            ),
        ])
        .chain(
            signatures
                .iter()
                .map(|s| ("signature".to_owned(), s.clone())),
        )
        .collect();

    // Logs at TRACE for every crate, including rustls (through the `log` bridge).
    let log = keyward.log();
    assert!(log.contains("\"level\":\"TRACE\""), "trace logging was on");
    assert!(
        log.contains("rustls"),
        "dependencies' logs were captured too"
    );
    for (what, value) in &texts {
        assert!(
            !log.contains(value.as_str()),
            "{name}: the {what} is in the log"
        );
    }
    // Responses (status line, headers and bodies) of every HTTP/1.1 path (the HTTP/2
    // client keeps only the status); a bot's own token may be echoed to it by nothing
    // but its own request, so tokens are not looked for.
    for (label, response) in answers.iter().map(|(l, r)| (l.as_str(), format!("{r:?}"))) {
        for (what, value) in texts.iter().filter(|(w, _)| !w.ends_with("bot token")) {
            assert!(
                !response.contains(value.as_str()),
                "{name} {label}: the {what} is in the response"
            );
        }
    }
    // The vault file holds none of it in plaintext.
    let vault = std::fs::read(keyward.path().join("keyward.vault")).unwrap();
    for (what, bytes) in &needles {
        assert!(
            !vault.windows(bytes.len()).any(|w| w == bytes.as_slice()),
            "{name}: the {what} is in the vault file"
        );
    }
    let vault = String::from_utf8_lossy(&vault);
    for (what, value) in &texts {
        assert!(
            !vault.contains(value.as_str()),
            "{name}: the {what} is in the vault file"
        );
    }
    // Debug output of the configuration, vault, entries and credentials.
    let config = keyward::config::Config::load(&keyward.config, SystemTime::now()).unwrap();
    let material = keyward::vault::read_key(&config.vault.key).unwrap();
    let opened = keyward::vault::Vault::open(&config.vault.file, &material).unwrap();
    let entry = opened.entry(run.entry).unwrap();
    let credential = entry.credential().unwrap();
    let printed = format!("{config:?}{material:?}{opened:?}{entry:?}{credential:?}");
    for (what, value) in &texts {
        assert!(
            !printed.contains(value.as_str()),
            "{name}: Debug output shows the {what}"
        );
    }
    // Nothing in the environment.
    let environ = std::fs::read(format!("/proc/{}/environ", keyward.pid)).unwrap_or_default();
    let environ = String::from_utf8_lossy(&environ);
    for (what, value) in &texts {
        assert!(
            !environ.contains(value.as_str()),
            "{name}: the {what} is in the environment"
        );
    }

    // Its memory: read through /proc/<pid>/mem, which needs root (keyward is not
    // dumpable, so anyone else gets EPERM, and that is asserted instead).
    let raw_master_key = key_file_bytes(&keyward);
    let mut scanned: Vec<(&str, &[u8])> = needles.iter().map(|(w, b)| (*w, b.as_slice())).collect();
    scanned.push(("master key", &raw_master_key));
    let patterns: Vec<&[u8]> = scanned.iter().map(|(_, b)| *b).collect();
    match keyward.scan_memory(&patterns) {
        Ok(scan) => {
            assert!(scan.bytes > 1_000_000, "read {} bytes", scan.bytes);
            for (((what, needle), places), addresses) in
                scanned.iter().zip(&scan.places).zip(&scan.addresses)
            {
                let in_transit = run.header_secret.filter(|(secret, _)| secret == what);
                let places: Vec<&String> = match in_transit {
                    // Known and reported, not fixed: the header carries the secret to
                    // the exchange in plaintext, and the HTTP stack leaves it in heap
                    // buffers it does not zero. Alone, the copy is always the last
                    // request head in hyper's write buffer of the pooled upstream
                    // connection (`\r\n<header>: <secret>\r\n`); under load one was
                    // seen in a thread's heap arena too. Tolerated: at most two copies,
                    // both in anonymous writable memory (heap or arena, no stack, no
                    // file), so one left behind per request would still fail.
                    Some((_, header)) => {
                        assert!(addresses.len() <= 2, "{name}: {places:#?}");
                        let head = format!("\r\n{header}: ");
                        places
                            .iter()
                            .zip(addresses)
                            .filter(|(place, address)| {
                                let start = **address - head.len() as u64;
                                let around = keyward
                                    .read_memory(start, head.len() + needle.len() + 2)
                                    .unwrap();
                                let in_head = around == [head.as_bytes(), needle, b"\r\n"].concat();
                                let mapping =
                                    place.rsplit('`').nth(1).unwrap_or_default().trim_end();
                                let anonymous = mapping.contains(" rw-p ")
                                    && (mapping.ends_with("[heap]")
                                        || mapping.ends_with(" 00:00 0"));
                                !(in_head || anonymous)
                            })
                            .map(|(place, _)| place)
                            .collect()
                    }
                    None => places.iter().collect(),
                };
                assert!(
                    places.is_empty(),
                    "{name}: plaintext copies of the {what}: {places:#?}"
                );
            }
        }
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::PermissionDenied,
            "only root may read keyward's memory: {error}"
        ),
    }
    (keyward, mock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_keyward_keeps_secrets_out_of_logs_responses_and_memory() {
    let (keyward, _mock) = secrets_stay_hidden(&binance()).await;
    let log = keyward.log();

    // The process: no core file, not dumpable, secret pages locked.
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
        assert!(locked_kb >= 4, "the 4 KiB pre-key at least: {status}");
        assert_eq!(keyward.metric("keyward_secret_memory_unlocked"), Some(0.0));
    }

    // Abort it: the kernel must not write a core.
    let mut keyward = keyward;
    keyward.signal("ABRT");
    let status = keyward.wait(Duration::from_secs(10)).unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(6), "{status:?}");
    assert!(!status.core_dumped(), "a core was dumped");
}

/// The other venues' secrets, each venue in its own keyward process, one after the
/// other (in parallel, five processes under TRACE beside the rest of the suite
/// starved the 2-core machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_venues_secrets_stay_out_of_logs_responses_and_memory() {
    for run in [bybit(), okx(), kraken(), coinbase()] {
        secrets_stay_hidden(&run).await;
    }
}

fn headers(keyward: &KeywardProcess, token: &str, form: bool) -> Vec<(String, String)> {
    keyward_tests::client::bot_headers(keyward.bot_addr.port(), token, form)
}

const NEW_API_KEY: &str = "ROTATEDAPIKEYq9Wm2Xc7Vb4Nz1Ls8Kd5Jf3Hg6";
const NEW_SECRET: &str = "ROTATEDSECRETt4Yu7Io2Pa9Sd6Fg3Hj8Kl5Zx1Cv0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_used_after_sighup_while_requests_keep_flowing() {
    let mock = Mock::start().await;
    mock.accept_key(NEW_API_KEY, NEW_SECRET);
    let keyward = Arc::new(KeywardProcess::spawn_serving(
        Path::new(EXE),
        FixturePolicy::P0,
        Serving {
            // Watching would pick the rotation up by itself; this test is about
            // SIGHUP.
            server_extra: "watch_interval_ms = 0".to_owned(),
            // Orders without pause, beyond a real account's order limits: a test
            // exchange's.
            account_extra: "exchange_limits_multiplier = 1000000".to_owned(),
            ..Serving::against(&mock)
        },
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
        keyward::credential::fingerprint(NEW_API_KEY)
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
    let response = binance()
        .send(&keyward, &keyward.tokens.bot, "GET", "/api/v3/account", "")
        .await;
    assert_eq!(response.status, 200, "{}", response.body);

    // SIGTERM: a clean exit.
    let mut keyward = Arc::into_inner(keyward).unwrap();
    keyward.signal("TERM");
    let status = keyward.wait(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{status:?}\n{}", keyward.log());
}
