//! OKX through keyward end to end, over real TLS against the mock exchange: allowed
//! requests arrive signed as OKX checks them (key, passphrase, timestamp, signature
//! over the exact bytes), denials never arrive, every OKX case of the attack corpus
//! has its expected outcome, and python-okx and ccxt trade unmodified but for the
//! base URL, the token and the CA.

use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::venues::VenueFixture;
use keyward_tests::venues::okx::{API_KEY, PASSPHRASE};
use keyward_tests::{
    FixturePolicy, Serving, corpus, corpus_cases,
    python::{self, run_client},
};
use serde_json::Value;

async fn keyward(mock: &Mock) -> Keyward {
    Keyward::serve(
        FixturePolicy::Venue(VenueFixture::Okx),
        Serving::against(mock),
    )
    .await
}

fn headers(keyward: &Keyward, token: &str, json: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Host".to_owned(), format!("localhost:{}", keyward.port())),
        ("OK-ACCESS-KEY".to_owned(), token.to_owned()),
    ];
    if json {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    headers
}

async fn send(
    keyward: &Keyward,
    token: &str,
    method: &str,
    target: &str,
    body: &str,
) -> keyward_tests::client::Response {
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

fn json_of(response: &keyward_tests::client::Response) -> Value {
    serde_json::from_str(&response.body).unwrap_or_else(|e| panic!("{e}: {}", response.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_requests_reach_okx_signed_over_the_bytes_sent() {
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    let token = keyward.tokens.bot_b.clone();

    let python_okx = r#"{"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "ccy": "", "clOrdId": "e2e1", "tag": "", "posSide": "", "px": "60000", "reduceOnly": "", "tgtCcy": "", "stpMode": "", "pxUsd": "", "pxVol": "", "banAmend": "", "attachAlgoOrds": null}"#;
    let placed = keyward
        .client
        .request(
            "POST",
            "/api/v5/trade/order",
            &[
                headers(&keyward, &token, true),
                vec![
                    (
                        "OK-ACCESS-SIGN".to_owned(),
                        "Ym90LXNpZ25hdHVyZQ==".to_owned(),
                    ),
                    (
                        "OK-ACCESS-TIMESTAMP".to_owned(),
                        "2020-01-01T00:00:00.000Z".to_owned(),
                    ),
                    ("OK-ACCESS-PASSPHRASE".to_owned(), "bot-guess".to_owned()),
                    ("x-simulated-trading".to_owned(), "0".to_owned()),
                ],
            ]
            .concat(),
            python_okx.as_bytes(),
        )
        .await;
    assert_eq!(placed.status, 200, "{placed:?}");
    let answer = json_of(&placed);
    assert_eq!(answer["code"], "0", "{answer}");
    let order_id = answer["data"][0]["ordId"].as_str().unwrap().to_owned();

    let read = send(
        &keyward,
        &token,
        "GET",
        &format!("/api/v5/trade/order?instId=BTC-USDT&ordId={order_id}"),
        "",
    )
    .await;
    assert_eq!(json_of(&read)["data"][0]["state"], "live");
    let balance = send(
        &keyward,
        &token,
        "GET",
        "/api/v5/account/balance?ccy=BTC,USDT",
        "",
    )
    .await;
    assert_eq!(json_of(&balance)["code"], "0");
    let cancel = send(
        &keyward,
        &token,
        "POST",
        "/api/v5/trade/cancel-order",
        &format!(r#"{{"instId": "BTC-USDT", "ordId": "{order_id}", "clOrdId": ""}}"#),
    )
    .await;
    assert_eq!(json_of(&cancel)["data"][0]["sCode"], "0");
    let amend_target = send(
        &keyward,
        &token,
        "POST",
        "/api/v5/trade/batch-orders",
        r#"[{"instId":"BTC-USDT","side":"sell","ordType":"limit","sz":"0.001","tdMode":"cash","tgtCcy":"base_ccy","px":"61000","clOrdId":"e2e2","tag":"6b9ad766b55dBCDE"}]"#,
    )
    .await;
    assert_eq!(json_of(&amend_target)["code"], "0");
    let amend = send(
        &keyward,
        &token,
        "POST",
        "/api/v5/trade/amend-order",
        r#"{"instId":"BTC-USDT","clOrdId":"e2e2","newSz":"0.002","newPx":"61500"}"#,
    )
    .await;
    assert_eq!(json_of(&amend)["data"][0]["sCode"], "0");
    // Public market data needs no token at all.
    let time = keyward
        .client
        .request(
            "GET",
            "/api/v5/public/time",
            &[("Host".to_owned(), format!("localhost:{}", keyward.port()))],
            b"",
        )
        .await;
    assert_eq!(json_of(&time)["code"], "0");

    let records = mock.records();
    assert_eq!(records.len(), 7, "{records:?}");
    for record in &records {
        let public = record.path.starts_with("/api/v5/public/");
        assert_eq!(record.signature_ok, (!public).then_some(true), "{record:?}");
        let everything = record.everything();
        for leaked in [
            "bot-guess",
            "Ym90LXNpZ25hdHVyZQ==",
            "x-simulated-trading",
            &token,
        ] {
            assert!(
                !everything.contains(leaked),
                "{leaked} forwarded: {everything}"
            );
        }
        if !public {
            assert_eq!(record.header("ok-access-key"), Some(API_KEY));
            assert_eq!(record.header("ok-access-passphrase"), Some(PASSPHRASE));
        }
    }
    assert_eq!(
        records[0].body,
        r#"{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"e2e1","side":"buy","ordType":"limit","px":"60000","sz":"0.001"}"#
    );
    assert_eq!(records[2].query, "ccy=BTC%2CUSDT");
    assert!(!records[4].body.contains("tag"), "{}", records[4].body);
    assert!(
        mock.open_orders()
            .iter()
            .any(|o| o["sz"] == "0.002" && o["px"] == "61500")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_never_reach_okx() {
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    let bot_a = keyward.tokens.bot.clone();
    let bot_c = keyward.tokens.bot_b.clone();
    let order = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"60000","sz":"0.001"}"#;
    let cases = [
        (
            &bot_c,
            "POST",
            "/api/v5/trade/order",
            order.replace("BTC-USDT", "DMG-USDT"),
            403,
            "symbol_not_allowed",
            "50027",
        ),
        (
            &bot_c,
            "POST",
            "/api/v5/trade/order",
            order.replace("cash", "cross"),
            403,
            "margin_not_allowed",
            "50027",
        ),
        (
            &bot_c,
            "POST",
            "/api/v5/trade/order",
            order.replace("0.001", "1"),
            403,
            "notional_exceeds_limit",
            "50027",
        ),
        (
            &bot_c,
            "POST",
            "/api/v5/trade/amend-order",
            r#"{"instId":"BTC-USDT","ordId":"1","newSz":"1","newPx":"60000"}"#.to_owned(),
            403,
            "order_unknown",
            "50027",
        ),
        (
            &bot_a,
            "POST",
            "/api/v5/trade/batch-orders",
            format!("[{order}]"),
            403,
            "path_not_allowed",
            "50027",
        ),
        (
            &bot_c,
            "POST",
            "/api/v5/asset/withdrawal",
            r#"{"ccy":"USDT","amt":"1","dest":"4","toAddr":"x"}"#.to_owned(),
            403,
            "money_movement_denied",
            "50027",
        ),
        (
            &bot_c,
            "POST",
            "/api/v5/users/subaccount/modify-apikey",
            "{}".to_owned(),
            403,
            "key_management_denied",
            "50027",
        ),
        (
            &bot_c,
            "POST",
            "/api/v5/trade/order",
            order.replace(r#""sz""#, r#""sZ""#),
            400,
            "param_unknown",
            "51000",
        ),
    ];
    for (token, method, path, body, status, reason, code) in cases {
        let response = send(&keyward, token, method, path, &body).await;
        assert_eq!(response.status, status, "{path} {body}: {response:?}");
        assert_eq!(
            response.header("x-keyward-error"),
            Some(reason),
            "{path} {body}"
        );
        let answer = json_of(&response);
        assert_eq!(answer["code"], code, "{answer}");
        assert!(
            answer["msg"]
                .as_str()
                .unwrap()
                .starts_with(&format!("keyward: {reason}"))
        );
    }
    let demo = keyward
        .client
        .request(
            "GET",
            "/api/v5/account/balance",
            &[
                headers(&keyward, &bot_c, false),
                vec![("x-simulated-trading".to_owned(), "1".to_owned())],
            ]
            .concat(),
            b"",
        )
        .await;
    assert_eq!(demo.status, 400, "{demo:?}");
    assert_eq!(demo.header("x-keyward-error"), Some("param_invalid"));
    assert!(mock.records().is_empty(), "{:?}", mock.records());
}

/// Placeholders and descriptive bodies of the OKX cases, made concrete here.
fn concrete(case: &Value, port: u16) -> Value {
    let text = case
        .to_string()
        .replace("{{DUMMY_SIG_B64}}", "ZGVhZGJlZWZkZWFkYmVlZg==")
        .replace("{{ISO_TS}}", "2025-12-01T00:00:00.000Z")
        .replace("localhost:8446", &format!("localhost:{port}"));
    let mut case: Value = serde_json::from_str(&text).unwrap();
    if case["id"] == "BATCH-011" {
        case["request"]["body"] =
            Value::String(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
    }
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_okx_corpus_case_over_tls() {
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    let mut evaluated = Vec::new();
    let mut failures = Vec::new();
    for case in corpus_cases().iter().filter(|c| c["exchange"] == "okx") {
        let id = case["id"].as_str().unwrap().to_owned();
        let case = concrete(case, keyward.port());
        let request = corpus::request_of(&case, &keyward.tokens, Some(keyward.port()));
        mock.clear();
        let response = keyward
            .client
            .request(
                &request.method,
                &request.target,
                &request.headers,
                &request.body,
            )
            .await;
        evaluated.push(id.clone());
        let expected = &case["expected"];
        // BATCH-011's 200 KB body is over the fixture's body cap, checked before any
        // parsing (413, which the case allows); the parser's own refusal of deep
        // nesting is the unit test's.
        let reason = (id == "BATCH-011").then_some("body_too_large");
        let records = mock.records();
        if let Err(why) = corpus::judge_answer(&case, &response, reason, &records, &keyward.audit())
        {
            failures.push(format!("{id}: {why}"));
            continue;
        }
        if let Some(record) = records.first() {
            let outbound = &expected["outbound"];
            if let Some(needle) = outbound["body_contains"].as_str()
                && !record.body.contains(needle)
            {
                failures.push(format!("{id}: body {} lacks {needle}", record.body));
            }
            let forbidden = outbound["body_must_not_contain"]
                .as_array()
                .into_iter()
                .chain(outbound["must_not_contain"].as_array())
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| corpus::substitute(s, &keyward.tokens, None))
                .map(|s| s.replace("{{DUMMY_SIG_B64}}", "ZGVhZGJlZWZkZWFkYmVlZg=="))
                .collect::<Vec<_>>();
            let everything = record.everything();
            for needle in forbidden {
                if everything.contains(&needle) {
                    failures.push(format!("{id}: forwarded {needle}"));
                }
            }
            if record.header("ok-access-passphrase") != Some(PASSPHRASE)
                || record.header("ok-access-key") != Some(API_KEY)
            {
                failures.push(format!("{id}: not the account's key and passphrase"));
            }
        }
    }
    eprintln!(
        "corpus over TLS (OKX): {} evaluated: {evaluated:?}",
        evaluated.len()
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(evaluated.len(), 10, "{evaluated:?}");
}

async fn drive(client: &'static str, keyward: &Keyward, token: String) -> Value {
    let ca = keyward.running.ca_path.display().to_string();
    let base = format!("https://127.0.0.1:{}", keyward.port());
    run_client(
        "okx_clients.py",
        vec![client.to_owned(), base, token, ca],
        vec![],
    )
    .await
}

/// ccxt raised `class` with keyward's message in its text.
fn assert_raised(what: &str, result: &Value, class: &str, reason: &str) {
    python::assert_refused(
        "ccxt",
        what,
        result,
        &[class],
        &format!("keyward: {reason}"),
    );
}

/// python-okx returned OKX's error envelope with keyward's message.
fn assert_returned(what: &str, result: &Value, code: &str, reason: &str) {
    assert_eq!(result["code"], code, "{what}: {result}");
    let message = result["msg"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("keyward: {reason}")),
        "{what}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_okx_clients_trade_through_keyward_unmodified() {
    let mock = Mock::start().await;
    let keyward = keyward(&mock).await;
    let token = keyward.tokens.bot_b.clone();

    mock.clear();
    let out = drive("python-okx", &keyward, token.clone()).await;
    assert!(
        out["markets"]
            .as_array()
            .unwrap()
            .contains(&Value::from("BTC-USDT")),
        "{out}"
    );
    assert_eq!(out["balance_usdt"], "1000");
    assert_eq!(out["order_code"], "0");
    assert_eq!(out["order_status"], "live");
    assert_eq!(out["cancel_code"], "0");
    assert_eq!(out["open_orders"], 0);
    assert_returned(
        "python-okx DMG order",
        &out["dmg"],
        "50027",
        "symbol_not_allowed",
    );
    assert_returned(
        "python-okx withdrawal",
        &out["withdraw"],
        "50027",
        "money_movement_denied",
    );
    assert_returned(
        "python-okx demo flag",
        &out["demo"],
        "51000",
        "param_invalid",
    );
    let records = mock.records();
    assert!(
        records
            .iter()
            .any(|r| r.path == "/api/v5/trade/order" && r.method == "POST")
    );
    assert!(
        records.iter().all(|r| r.signature_ok != Some(false)),
        "{records:?}"
    );
    assert!(records.iter().all(|r| r.path != "/api/v5/asset/withdrawal"));

    mock.clear();
    let out = drive("ccxt-okx", &keyward, token).await;
    let markets: Vec<&str> = out["markets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(markets.contains(&"BTC/USDT"), "{markets:?}");
    assert_eq!(out["balance_usdt"], 1000.0);
    assert_eq!(out["order_status"], "open");
    assert_eq!(out["cancel_id"], out["order_id"]);
    assert_eq!(out["open_orders"], 0);
    assert!(
        out["single_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{out}"
    );
    assert_raised(
        "ccxt DMG order",
        &out["dmg"],
        "PermissionDenied",
        "symbol_not_allowed",
    );
    assert_raised(
        "ccxt withdrawal",
        &out["withdraw"],
        "PermissionDenied",
        "money_movement_denied",
    );
    // An unknown token names no account, but its header says OKX: the refusal is in
    // OKX's envelope and ccxt raises AuthenticationError with keyward's message.
    assert_raised(
        "ccxt stranger",
        &out["auth"],
        "AuthenticationError",
        "auth_invalid",
    );
    let records = mock.records();
    assert!(
        records
            .iter()
            .any(|r| r.path == "/api/v5/trade/batch-orders")
    );
    assert!(records.iter().any(|r| r.path == "/api/v5/trade/order"));
    assert!(
        records.iter().all(|r| r.signature_ok != Some(false)),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .all(|r| !r.body.contains("6b9ad766b55dBCDE\",\"tag"))
    );
}
