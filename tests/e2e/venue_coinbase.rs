//! Coinbase Advanced Trade through keyward end to end, over real TLS against the mock:
//! bots authenticate with their own ES256 JWT (or a plain keyward token as a bearer
//! token), allowed requests reach the mock signed with the account's CDP key, and
//! refusals (policy, floor, forged or replayed JWTs) never reach it. The official
//! SDK and ccxt are driven by tests/clients/coinbase_clients.py.
//!
//! There is no Coinbase case in the attack corpus; the cases below cover the same
//! ground (money movement, symbol and notional limits, auth material).

use std::time::SystemTime;

use keyward::credential::{Credential, KeyKind};
use keyward_tests::client::Response;
use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::python::{self, run_client};
use keyward_tests::venues::VenueFixture;
use keyward_tests::venues::coinbase::{
    BOT_A_KEY, BOT_A_PEM, BOT_B_KEY, BOT_B_PEM, CANARY_PEM_LINE, bot_jwt, key_name,
};
use keyward_tests::{FixturePolicy, Serving};
use serde_json::Value;

const PREFIX: &str = "/api/v3/brokerage";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Setup {
    mock: Mock,
    keyward: Keyward,
}

async fn setup() -> Setup {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::Venue(VenueFixture::Coinbase),
        Serving::against(&mock),
    )
    .await;
    Setup { mock, keyward }
}

impl Setup {
    fn host(&self) -> String {
        format!("localhost:{}", self.keyward.port())
    }

    /// A request with `Authorization: Bearer <bearer>`; a JSON body on POST.
    async fn send(&self, method: &str, target: &str, bearer: &str, body: &str) -> Response {
        let mut headers = vec![
            ("Host".to_owned(), self.host()),
            ("Authorization".to_owned(), format!("Bearer {bearer}")),
        ];
        if !body.is_empty() {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        self.keyward
            .client
            .request(method, target, &headers, body.as_bytes())
            .await
    }

    /// A request signed as bot `a` does with its own key.
    async fn as_bot_a(&self, method: &str, target: &str, body: &str) -> Response {
        let path = target.split('?').next().unwrap();
        let kid = key_name("a", BOT_A_KEY);
        let jwt = bot_jwt(
            BOT_A_PEM,
            &kid,
            &format!("{method} {}{path}", self.host()),
            now_s(),
            120,
        );
        self.send(method, target, &jwt, body).await
    }
}

fn error_of(response: &Response) -> (String, String) {
    let value: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|_| panic!("not JSON: {}", response.body));
    (
        value["error"].as_str().unwrap_or_default().to_owned(),
        value["error_details"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn limit_order(product: &str, size: &str, price: &str) -> String {
    format!(
        r#"{{"client_order_id": "cid-1", "product_id": "{product}", "side": "BUY", "order_configuration": {{"limit_limit_gtc": {{"base_size": "{size}", "limit_price": "{price}", "post_only": true}}}}}}"#
    )
}

#[tokio::test]
async fn bots_jwts_and_tokens_reach_the_mock_signed_with_the_account_key() {
    let s = setup().await;
    // The SDK's GET: its own JWT, and `{}` as the body.
    let r = s.as_bot_a("GET", &format!("{PREFIX}/accounts"), "{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("acc-btc"));
    // A limit order with a plain keyward token as the bearer (ccxt's token mode).
    let token = s.keyward.tokens.bot.clone();
    let r = s
        .send(
            "POST",
            &format!("{PREFIX}/orders"),
            &token,
            &limit_order("BTC-USD", "0.001", "60000.00"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let placed: Value = serde_json::from_str(&r.body).unwrap();
    let order_id = placed["success_response"]["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .as_bot_a(
            "GET",
            &format!("{PREFIX}/orders/historical/batch?order_status=OPEN&product_ids=BTC-USD"),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&order_id));
    let r = s
        .as_bot_a(
            "POST",
            &format!("{PREFIX}/orders/batch_cancel"),
            &format!(r#"{{"order_ids": ["{order_id}"]}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"success\":true"));

    let records = s.mock.records();
    assert_eq!(records.len(), 4, "{records:#?}");
    for record in &records {
        assert_eq!(record.signature_ok, Some(true), "{record:?}");
        let everything = record.everything();
        assert!(
            !everything.contains(&token),
            "the bot's token is never forwarded"
        );
        assert!(
            !everything.contains(&key_name("a", BOT_A_KEY)),
            "nor its key name"
        );
        assert!(!everything.contains(CANARY_PEM_LINE));
    }
    assert_eq!(records[0].body, "", "the SDK's {{}} is dropped");
    assert_eq!(
        records[1].body,
        r#"{"client_order_id":"cid-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.001","limit_price":"60000.00","post_only":true}}}"#
    );
    assert_eq!(records[2].query, "product_ids=BTC-USD&order_status=OPEN");
}

#[tokio::test]
async fn refusals_never_reach_the_mock() {
    let s = setup().await;
    let orders = format!("{PREFIX}/orders");
    let cases: Vec<(Response, u16, &str, &str)> = vec![
        (
            s.as_bot_a("POST", &orders, &limit_order("ETH-USD", "0.001", "3000")).await,
            403,
            "PERMISSION_DENIED",
            "symbol_not_allowed",
        ),
        (
            s.as_bot_a("POST", &orders, &limit_order("BTC-USD", "0.005", "60000")).await,
            403,
            "PERMISSION_DENIED",
            "notional_exceeds_limit",
        ),
        (
            s.as_bot_a(
                "POST",
                &orders,
                r#"{"client_order_id":"c","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"5000"}}}"#,
            )
            .await,
            403,
            "PERMISSION_DENIED",
            "notional_exceeds_limit",
        ),
        (
            s.as_bot_a("POST", "/v2/accounts/acc-btc/transactions", r#"{"type":"send","to":"bc1q","amount":"0.1","currency":"BTC"}"#).await,
            403,
            "PERMISSION_DENIED",
            "money_movement_denied",
        ),
        (
            s.as_bot_a("POST", &format!("{PREFIX}/portfolios/move_funds"), "{}").await,
            403,
            "PERMISSION_DENIED",
            "money_movement_denied",
        ),
        (
            s.as_bot_a("GET", &format!("{PREFIX}/products"), "").await,
            403,
            "PERMISSION_DENIED",
            "path_not_allowed",
        ),
        (
            s.as_bot_a("GET", &format!("{PREFIX}/accounts"), "{\"limit\":1}").await,
            400,
            "INVALID_ARGUMENT",
            "body_not_allowed",
        ),
        (
            s.as_bot_a("POST", &orders, &limit_order("BTC-USD", "0.001", "60000").replace("\"cid-1\"", "\"cid-1\", \"client_order_id\": \"x\"")).await,
            400,
            "INVALID_ARGUMENT",
            "json_duplicate_key",
        ),
    ];
    for (response, status, code, reason) in cases {
        assert_eq!(response.status, status, "{reason}: {}", response.body);
        let (error, details) = error_of(&response);
        assert_eq!(error, code, "{reason}");
        assert_eq!(details, format!("keyward: {reason}"));
    }
    assert!(s.mock.records().is_empty(), "{:#?}", s.mock.records());
}

#[tokio::test]
async fn forged_replayed_or_misbound_jwts_are_refused() {
    let s = setup().await;
    let accounts = format!("{PREFIX}/accounts");
    let kid_a = key_name("a", BOT_A_KEY);
    let uri = format!("GET {}{accounts}", s.host());
    let good = bot_jwt(BOT_A_PEM, &kid_a, &uri, now_s(), 120);
    assert_eq!(s.send("GET", &accounts, &good, "").await.status, 200);
    let unauthorized = [
        ("replay", good.clone()),
        (
            "signed with bot b's key",
            bot_jwt(BOT_B_PEM, &kid_a, &uri, now_s(), 120),
        ),
        (
            "bound to another path",
            bot_jwt(
                BOT_A_PEM,
                &kid_a,
                &format!("GET {}{PREFIX}/orders", s.host()),
                now_s(),
                120,
            ),
        ),
        (
            "bound to another method",
            bot_jwt(
                BOT_A_PEM,
                &kid_a,
                &format!("POST {}{accounts}", s.host()),
                now_s(),
                120,
            ),
        ),
        (
            "bound to the real host",
            bot_jwt(
                BOT_A_PEM,
                &kid_a,
                &format!("GET api.coinbase.com{accounts}"),
                now_s(),
                120,
            ),
        ),
        (
            "lives too long",
            bot_jwt(BOT_A_PEM, &kid_a, &uri, now_s(), 600),
        ),
        (
            "from the future",
            bot_jwt(BOT_A_PEM, &kid_a, &uri, now_s() + 300, 120),
        ),
        (
            "expired",
            bot_jwt(BOT_A_PEM, &kid_a, &uri, now_s() - 600, 120),
        ),
        (
            "unknown key",
            bot_jwt(BOT_A_PEM, &key_name("a", BOT_B_KEY), &uri, now_s(), 120),
        ),
    ];
    for (name, jwt) in unauthorized {
        let r = s.send("GET", &accounts, &jwt, "").await;
        assert_eq!(r.status, 401, "{name}: {}", r.body);
        assert_eq!(error_of(&r).0, "unauthorized", "{name}");
    }
    // Bot b's own key authenticates bot b (which may read products; bot a may not).
    let kid_b = key_name("b", BOT_B_KEY);
    let products = format!("{PREFIX}/products");
    let jwt = bot_jwt(
        BOT_B_PEM,
        &kid_b,
        &format!("GET {}{products}", s.host()),
        now_s(),
        120,
    );
    let r = s.send("GET", &products, &jwt, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.mock.records().len(), 2);
}

/// Runs tests/clients/coinbase_clients.py with one client against keyward.
async fn drive(client: &'static str, s: &Setup) -> Value {
    let host = format!("127.0.0.1:{}", s.keyward.port());
    let ca = s.keyward.running.ca_path.clone();
    let env = vec![
        ("REQUESTS_CA_BUNDLE", ca.clone().into_os_string()),
        ("CURL_CA_BUNDLE", ca.into_os_string()),
        ("KEYWARD_KEY_NAME", key_name("b", BOT_B_KEY).into()),
        ("KEYWARD_KEY_PEM", BOT_B_PEM.into()),
        ("KEYWARD_TOKEN", s.keyward.tokens.bot_b.clone().into()),
    ];
    run_client("coinbase_clients.py", vec![client.to_owned(), host], env).await
}

fn assert_refused(client: &str, what: &str, result: &Value, class: &str, reason: &str) {
    python::assert_refused(
        client,
        what,
        result,
        &[class],
        &format!("keyward: {reason}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_coinbase_clients_trade_through_keyward_unmodified() {
    let s = setup().await;
    let sdk = drive("sdk", &s).await;
    assert_eq!(
        sdk["markets"],
        serde_json::json!(["BTC-USD", "DOGE-USD", "ETH-USD"]),
        "{sdk}"
    );
    assert_eq!(sdk["balance_btc"], "0.5");
    assert_eq!(sdk["order_success"], true);
    assert_eq!(sdk["open_orders"], 1);
    assert_eq!(sdk["cancel_success"], true);
    assert_refused(
        "sdk",
        "DOGE-USD order",
        &sdk["dmg"],
        "HTTPError",
        "symbol_not_allowed",
    );
    assert_refused(
        "sdk",
        "move_funds",
        &sdk["withdraw"],
        "HTTPError",
        "money_movement_denied",
    );
    assert_refused(
        "sdk",
        "v2 send",
        &sdk["v2_send"],
        "HTTPError",
        "money_movement_denied",
    );
    let signed = s.mock.records();
    assert!(signed.len() >= 5, "{signed:#?}");
    assert!(
        signed.iter().all(|r| r.signature_ok == Some(true)),
        "{signed:#?}"
    );
    assert!(
        signed
            .iter()
            .all(|r| r.body.is_empty() || r.method == "POST")
    );
    s.mock.clear();

    let ccxt = drive("ccxt", &s).await;
    let markets = ccxt["markets"].as_array().unwrap();
    assert!(markets.contains(&Value::from("BTC/USD")), "{ccxt}");
    assert_eq!(ccxt["balance_btc"], 0.5);
    assert_eq!(ccxt["open_orders"], 1);
    assert_eq!(ccxt["cancelled"], true);
    assert_refused(
        "ccxt",
        "DOGE/USD order",
        &ccxt["dmg"],
        "PermissionDenied",
        "symbol_not_allowed",
    );
    assert_refused(
        "ccxt",
        "withdraw",
        &ccxt["withdraw"],
        "PermissionDenied",
        "money_movement_denied",
    );
    let records = s.mock.records();
    let order = records
        .iter()
        .find(|r| r.method == "POST" && r.path == "/api/v3/brokerage/orders")
        .expect("ccxt's order reached the mock");
    assert_eq!(order.signature_ok, Some(true));
    // ccxt as shipped loads currencies and the time from the App's public v2 reads
    // and its balance from the v2 wallet list, signed with the account's key; nothing
    // else under /v2/ reaches Coinbase.
    for record in &records {
        assert!(
            !record.path.starts_with("/v2/")
                || record.method == "GET"
                    && keyward_venues::coinbase::SERVED_APP.contains(&record.path.as_str()),
            "{} {} reached the exchange",
            record.method,
            record.path
        );
        assert_ne!(record.signature_ok, Some(false), "{}", record.path);
    }
    for path in ["/v2/currencies", "/v2/currencies/crypto", "/v2/accounts"] {
        assert!(records.iter().any(|r| r.path == path), "{path}");
    }
}

#[test]
fn token_new_issues_coinbase_bots_a_key_pair_that_list_and_revoke_handle() {
    use keyward_tests::{TempDir, fixed_now, fixture_tokens, run_cli, write_fixture};
    let dir = TempDir::new("coinbase-token");
    let path = write_fixture(
        dir.path(),
        FixturePolicy::Venue(VenueFixture::Coinbase),
        &fixture_tokens(),
        fixed_now(),
    );
    let config = path.to_str().unwrap();
    let (code, out, err) = run_cli(&["--config", config, "token", "new", "b"], fixed_now());
    assert_eq!(code, 0, "{err}");
    let (kid, pem) = out.split_once('\n').unwrap();
    assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{out}");
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        !file.contains(pem.lines().nth(1).unwrap()),
        "only the public key is stored"
    );

    let loaded = keyward::config::Config::load(&path, fixed_now()).unwrap();
    let found = loaded.policy.authenticate_key(kid, fixed_now()).unwrap();
    assert_eq!(found.standing, Ok(()));
    let (bot, key) = (found.bot, found.key);
    assert_eq!(bot.name(), "b");
    let credential = Credential::new("b", KeyKind::EcP256, pem.as_bytes()).unwrap();
    assert_eq!(
        keyward::credential::ec_public_key(&credential).unwrap(),
        key.point().to_vec(),
        "the printed private key is the configured public key's"
    );

    let (code, out, _) = run_cli(&["--config", config, "token", "list"], fixed_now());
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("  active   key {}  {kid}", key.id())),
        "{out}"
    );

    let (code, _, err) = run_cli(
        &[
            "--config",
            config,
            "token",
            "revoke",
            "b",
            "--digest",
            &key.id(),
        ],
        fixed_now(),
    );
    assert_eq!(code, 0, "{err}");
    let loaded = keyward::config::Config::load(&path, fixed_now()).unwrap();
    assert_eq!(
        loaded
            .policy
            .authenticate_key(kid, fixed_now())
            .unwrap()
            .standing,
        Err(keyward_policy::Denied::AuthRevoked)
    );
    // The fixture's own key of bot b still works; --bearer issues a plain token.
    assert!(
        loaded
            .policy
            .authenticate_key(&key_name("b", BOT_B_KEY), fixed_now())
            .is_ok_and(|found| found.standing.is_ok())
    );
    let (code, out, err) = run_cli(
        &["--config", config, "token", "new", "b", "--bearer"],
        fixed_now(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().starts_with("kw_b_"), "{out}");
}
