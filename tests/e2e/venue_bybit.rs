//! Bybit through keyward end to end, over real TLS against the mock exchange (which
//! verifies key, signature over the received bytes and timestamp): allowed requests
//! arrive signed with the account's key and keyward's receive window; denials never
//! reach the mock; every Bybit case of the attack corpus; and pybit and ccxt from
//! PyPI trading unmodified but for base URL, key and CA.

use keyward_tests::client::Response;
use keyward_tests::launch::Keyward;
use keyward_tests::mock::{Behaviour, Mock};
use keyward_tests::venues::VenueFixture;
use keyward_tests::venues::bybit::{CANARY_API_KEY, CANARY_SECRET};
use keyward_tests::{
    FixturePolicy, Serving, corpus, corpus_cases,
    python::{self, run_client},
};
use serde_json::Value;

const LIMIT_BUY: &str = r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#;

async fn start() -> (Mock, Keyward) {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::Venue(VenueFixture::Bybit),
        Serving::against(&mock),
    )
    .await;
    (mock, keyward)
}

fn headers(keyward: &Keyward, token: &str, json: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Host".to_owned(), format!("localhost:{}", keyward.port())),
        ("X-BAPI-API-KEY".to_owned(), token.to_owned()),
    ];
    if json {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers
}

async fn post(keyward: &Keyward, token: &str, path: &str, body: &str) -> Response {
    keyward
        .client
        .request(
            "POST",
            path,
            &headers(keyward, token, true),
            body.as_bytes(),
        )
        .await
}

async fn get(keyward: &Keyward, token: &str, target: &str) -> Response {
    keyward
        .client
        .request("GET", target, &headers(keyward, token, false), b"")
        .await
}

fn ret_code(response: &Response) -> Option<i64> {
    serde_json::from_str::<Value>(&response.body).ok()?["retCode"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_reach_bybit_signed_with_keywards_clock_and_window() {
    let (mock, keyward) = start().await;
    let bot = keyward.tokens.bot.clone();
    let placed = post(&keyward, &bot, "/v5/order/create", LIMIT_BUY).await;
    assert_eq!(placed.status, 200, "{placed:?}");
    assert_eq!(ret_code(&placed), Some(0), "{}", placed.body);
    let id = serde_json::from_str::<Value>(&placed.body).unwrap()["result"]["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    let open = get(
        &keyward,
        &bot,
        "/v5/order/realtime?symbol=BTCUSDT&category=spot",
    )
    .await;
    assert_eq!(ret_code(&open), Some(0), "{}", open.body);
    assert!(open.body.contains(&id));
    let balance = get(
        &keyward,
        &bot,
        "/v5/account/wallet-balance?accountType=UNIFIED",
    )
    .await;
    assert_eq!(ret_code(&balance), Some(0), "{}", balance.body);
    let cancel = post(
        &keyward,
        &bot,
        "/v5/order/cancel",
        &format!(r#"{{"category":"spot","symbol":"BTCUSDT","orderId":"{id}"}}"#),
    )
    .await;
    assert_eq!(ret_code(&cancel), Some(0), "{}", cancel.body);
    let records = mock.records();
    assert_eq!(records.len(), 4, "{records:#?}");
    for record in &records {
        assert_eq!(record.signature_ok, Some(true), "{record:?}");
        assert_eq!(record.header("x-bapi-api-key"), Some(CANARY_API_KEY));
        assert_eq!(record.header("x-bapi-recv-window"), Some("5000"));
        assert!(!record.everything().contains(&bot));
        assert!(!record.everything().contains(CANARY_SECRET));
    }
    assert_eq!(records[0].body, LIMIT_BUY);
    assert_eq!(records[1].query, "category=spot&symbol=BTCUSDT");
    let audit = keyward.audit();
    let created = audit
        .iter()
        .find(|l| l["path"] == "/v5/order/create" && l["decision"] == "allow")
        .expect("audited");
    assert_eq!(created["symbols"][0], "spot:BTCUSDT");
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_never_reach_bybit() {
    let (mock, keyward) = start().await;
    let bot = keyward.tokens.bot.clone();
    let cases: Vec<(&str, &str, String, u16, &str, i64)> = vec![
        (
            "another spot pair",
            "/v5/order/create",
            LIMIT_BUY.replace("BTCUSDT", "ETHUSDT"),
            403,
            "symbol_not_allowed",
            10029,
        ),
        (
            "the same symbol as a perpetual",
            "/v5/order/create",
            LIMIT_BUY.replace(r#""spot""#, r#""linear""#),
            403,
            "symbol_not_allowed",
            10029,
        ),
        (
            "spot margin",
            "/v5/order/create",
            LIMIT_BUY.replace(r#""symbol""#, r#""isLeverage":1,"symbol""#),
            403,
            "margin_not_allowed",
            10005,
        ),
        (
            "a quote-sized market buy over the cap",
            "/v5/order/create",
            r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"5000"}"#
                .to_owned(),
            403,
            "notional_exceeds_limit",
            10005,
        ),
        (
            "a withdrawal",
            "/v5/asset/withdraw/create",
            r#"{"coin":"USDT","chain":"ETH","address":"0xabc","amount":"5000","timestamp":1700000000000,"accountType":"FUND"}"#
                .to_owned(),
            403,
            "money_movement_denied",
            10005,
        ),
        (
            "an endpoint bot a is not granted",
            "/v5/order/cancel-all",
            r#"{"category":"spot","symbol":"BTCUSDT"}"#.to_owned(),
            403,
            "path_not_allowed",
            10005,
        ),
        (
            "an unknown field",
            "/v5/order/create",
            LIMIT_BUY.replace(r#""price""#, r#""takeProfit":"1","price""#),
            400,
            "param_unknown",
            10001,
        ),
    ];
    for (what, path, body, status, reason, code) in cases {
        let response = post(&keyward, &bot, path, &body).await;
        // Bybit's convention: HTTP 200, the error in retCode; keyward's own status
        // is in its audit record.
        assert_eq!(response.status, 200, "{what}: {response:?}");
        assert_eq!(keyward.refused_with(&response), Some(status), "{what}");
        assert_eq!(response.header("x-keyward-error"), Some(reason), "{what}");
        assert_eq!(ret_code(&response), Some(code), "{what}: {}", response.body);
        assert!(
            response.body.contains(&format!("keyward: {reason}")),
            "{what}"
        );
    }
    let records = mock.records();
    assert!(records.is_empty(), "{records:#?}");
    keyward.running.shutdown().await;
}

/// A refusal goes out in Bybit's HTTP 200 only where nothing reached the exchange (it
/// could not be reached): where the order may have executed (the exchange's answer
/// was unusable), keyward's 502 stays, so pybit raises FailedRequestError, its error
/// for a failed transport, and not InvalidRequestError, which reads as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_refusals_that_sent_nothing_go_out_in_a_200() {
    let (mock, keyward) = start().await;
    let bot = keyward.tokens.bot.clone();
    for (behaviour, reason) in [
        (Behaviour::Malformed, "upstream_response_invalid"),
        (Behaviour::Redirect, "upstream_redirect_blocked"),
    ] {
        mock.clear();
        mock.set(behaviour);
        let answer = post(&keyward, &bot, "/v5/order/create", LIMIT_BUY).await;
        assert_eq!(
            (answer.status, answer.header("x-keyward-error")),
            (502, Some(reason)),
            "{answer:?}"
        );
        assert_eq!(ret_code(&answer), Some(10016), "{}", answer.body);
        assert_eq!(mock.records().len(), 1, "the order reached the exchange");
    }
    mock.set(Behaviour::Normal);
    keyward.running.shutdown().await;

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let keyward = Keyward::serve(
        FixturePolicy::Venue(VenueFixture::Bybit),
        Serving {
            upstream: Some((dead, mock.ca.clone())),
            ..Serving::default()
        },
    )
    .await;
    let answer = post(&keyward, &keyward.tokens.bot, "/v5/order/create", LIMIT_BUY).await;
    assert_eq!(
        (answer.status, answer.header("x-keyward-error")),
        (200, Some("upstream_unavailable")),
        "{answer:?}"
    );
    assert_eq!(ret_code(&answer), Some(10016), "{}", answer.body);
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bybit_case_of_the_corpus_over_tls() {
    let (mock, keyward) = start().await;
    let port = keyward.port();
    let mut evaluated = 0;
    let mut failures = Vec::new();
    for case in corpus_cases().iter().filter(|c| c["exchange"] == "bybit") {
        let id = case["id"].as_str().unwrap();
        mock.clear();
        let mut request = corpus::request_of(case, &keyward.tokens, Some(port));
        for (_, value) in &mut request.headers {
            *value = value.replace("localhost:8447", &format!("localhost:{port}"));
        }
        let response = keyward
            .client
            .request(
                &request.method,
                &request.target,
                &request.headers,
                &request.body,
            )
            .await;
        evaluated += 1;
        let expected = &case["expected"];
        let records = mock.records();
        if let Err(why) = corpus::judge_answer(case, &response, None, &records, &keyward.audit()) {
            failures.push(format!("{id}: {why}: {}", response.body));
            continue;
        }
        let reaches = !records.is_empty();
        for record in &records {
            if record.header("x-bapi-api-key") != Some(CANARY_API_KEY) {
                failures.push(format!("{id}: not the account's key"));
            }
            if record.header("x-bapi-recv-window") != Some("5000") {
                failures.push(format!("{id}: not the policy's receive window"));
            }
            let timestamp: u64 = record
                .header("x-bapi-timestamp")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            if timestamp < 1_700_000_000_000 {
                failures.push(format!("{id}: not keyward's clock: {timestamp}"));
            }
            let everything = record.everything().to_ascii_lowercase();
            for forbidden in [
                keyward.tokens.bot.to_ascii_lowercase(),
                corpus::DUMMY_SIG.to_owned(),
                "x-referer".to_owned(),
                "attacker-broker-id".to_owned(),
                "600000".to_owned(),
            ] {
                if everything.contains(&forbidden) {
                    failures.push(format!("{id}: forwarded {forbidden}"));
                }
            }
        }
        if reaches {
            let audit = keyward.audit();
            let line = audit
                .iter()
                .rev()
                .find(|l| l["path"] == case["request"]["path"] && l["decision"] == "allow");
            let stripped = line.map(|l| l["stripped"].to_string()).unwrap_or_default();
            for header in expected["log"]["stripped"].as_array().into_iter().flatten() {
                if !stripped.contains(header.as_str().unwrap()) {
                    failures.push(format!(
                        "{id}: {header} not recorded as stripped: {stripped}"
                    ));
                }
            }
        }
    }
    eprintln!("corpus over TLS (Bybit): {evaluated} evaluated");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(evaluated, 5, "the Bybit cases of corpus.json");
    keyward.running.shutdown().await;
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
async fn real_bybit_clients_trade_through_keyward_unmodified() {
    let (mock, keyward) = start().await;
    let base = format!("https://127.0.0.1:{}", keyward.port());
    let ca = keyward.running.ca_path.display().to_string();
    for client in ["pybit", "ccxt"] {
        mock.clear();
        let args = vec![
            client.to_owned(),
            base.clone(),
            keyward.tokens.bot_b.clone(),
            ca.clone(),
        ];
        let out = run_client("bybit_clients.py", args, vec![]).await;
        let markets = out["markets"].to_string();
        assert!(
            markets.contains("BTCUSDT") || markets.contains("BTC/USDT"),
            "{client}: {markets}"
        );
        assert!(
            out["balance_usdt"].to_string().contains("1000"),
            "{client}: {out}"
        );
        assert!(
            !out["order_id"].as_str().unwrap_or_default().is_empty(),
            "{client}: {out}"
        );
        assert_eq!(out["open_after_cancel"], 0, "{client}: {out}");
        match client {
            "ccxt" => {
                // ccxt as shipped learns the account type from query-api, which keyward
                // answers from the bot's policy: what the token may do, never the key.
                assert_eq!(out["unified_account"], true, "{out}");
                let key = &out["key"];
                assert_eq!(key["apiKey"], "keyward:b", "{key}");
                assert_eq!(key["readOnly"], 0, "{key}");
                assert_eq!(key["permissions"]["Spot"], serde_json::json!(["SpotTrade"]));
                assert_eq!(
                    key["permissions"]["ContractTrade"],
                    serde_json::json!(["Order", "Position"])
                );
                assert_eq!(key["permissions"]["Wallet"], serde_json::json!([]));
                let text = key.to_string();
                assert!(!text.contains(CANARY_API_KEY));
                assert!(
                    !text.contains(&keyward.tokens.bot_b),
                    "the token was echoed"
                );
                let currencies = out["currencies"].to_string();
                assert!(currencies.contains("\"USDT\""), "{currencies}");
                assert_refused(
                    client,
                    "a pair the bot may not trade",
                    &out["dmg"],
                    "PermissionDenied",
                    "symbol_not_allowed",
                );
                assert_refused(
                    client,
                    "a withdrawal",
                    &out["withdraw"],
                    "PermissionDenied",
                    "money_movement_denied",
                );
            }
            _ => {
                // At HTTP 200 pybit reads retCode and raises InvalidRequestError, its
                // error for Bybit's refusals, with retMsg, keyward's message (at 403 it
                // would raise FailedRequestError saying the IP is banned).
                for (what, reason, code) in [
                    ("dmg", "symbol_not_allowed", 10029),
                    ("withdraw", "money_movement_denied", 10005),
                ] {
                    let result = &out[what];
                    assert_refused(client, what, result, "InvalidRequestError", reason);
                    assert_eq!(result["status"], code, "{what}: {result}");
                    assert_eq!(result["keyward_error"], reason, "{what}: {result}");
                }
            }
        }
        let records = mock.records();
        let signed = records.iter().filter(|r| r.signature_ok.is_some()).count();
        assert!(
            signed >= 4,
            "{client}: {signed} signed requests: {records:#?}"
        );
        for record in &records {
            assert_ne!(record.signature_ok, Some(false), "{client}: {record:?}");
            // Under /v5/asset/ only the coin list reaches Bybit; key questions never do.
            assert!(
                !record.path.starts_with("/v5/asset/")
                    || record.method == "GET" && record.path == "/v5/asset/coin/query-info",
                "{client}: {}",
                record.path
            );
            assert!(
                !record.path.starts_with("/v5/user/"),
                "{client}: {}",
                record.path
            );
            assert!(!record.body.contains("DMGUSDT") && !record.query.contains("DMGUSDT"));
            assert!(
                record.header("referer").is_none(),
                "{client}: Referer forwarded"
            );
        }
    }
    keyward.running.shutdown().await;
}

/// A rate limit is Bybit's 10006 in an HTTP 200, on which pybit sleeps (2 s: keyward
/// sends no reset time) and tries again, `max_retries` attempts in all. A limit that
/// has passed by then lets the order through; one that has not ends in pybit's
/// FailedRequestError after those attempts, never a hang, with keyward's reason in
/// pybit's log. Refused attempts never reach the exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pybit_waits_out_a_rate_limit_and_gives_up_after_its_retries() {
    let mock = Mock::start().await;
    for (order_rate, passes) in [("1/1s", true), ("1/1m", false)] {
        mock.clear();
        let keyward = Keyward::serve(
            FixturePolicy::Venue(VenueFixture::Bybit),
            Serving {
                bot_extra: format!("order_rate = \"{order_rate}\""),
                ..Serving::against(&mock)
            },
        )
        .await;
        let args = vec![
            "pybit-rate-limited".to_owned(),
            format!("https://127.0.0.1:{}", keyward.port()),
            keyward.tokens.bot.clone(),
            keyward.running.ca_path.display().to_string(),
        ];
        let out = run_client("bybit_clients.py", args, vec![]).await;
        let second = &out["second"];
        let seconds = out["seconds"].as_f64().unwrap();
        let limited: Vec<Value> = keyward
            .audit()
            .into_iter()
            .filter(|l| l["event"] == "request" && l["reason"] == "rate_limited")
            .collect();
        let logged = out["logged"].to_string();
        assert!(
            logged.contains("keyward: rate_limited") && logged.contains("ErrCode: 10006"),
            "{order_rate}: pybit's log: {logged}"
        );
        for line in &limited {
            assert_eq!(line["status"], 429, "{order_rate}: {line}");
        }
        let created = mock
            .records()
            .iter()
            .filter(|r| r.path == "/v5/order/create")
            .count();
        if passes {
            assert_eq!(second["raised"], Value::Null, "{order_rate}: {out}");
            assert!(second["order_id"].is_string(), "{order_rate}: {out}");
            assert_eq!(limited.len(), 1, "{order_rate}: {limited:?}");
            assert_eq!(created, 2, "{order_rate}: the order after the wait");
        } else {
            assert_eq!(
                second["raised"], "FailedRequestError",
                "{order_rate}: {out}"
            );
            assert!(
                second["message"]
                    .as_str()
                    .unwrap()
                    .contains("retries exceeded maximum"),
                "{order_rate}: {out}"
            );
            assert_eq!(limited.len(), 2, "{order_rate}: {limited:?}");
            assert_eq!(created, 1, "{order_rate}: a refused order reached Bybit");
            // Two attempts, each followed by pybit's 2 s sleep.
            assert!((3.5..20.0).contains(&seconds), "{order_rate}: {seconds} s");
        }
        keyward.running.shutdown().await;
    }
}
