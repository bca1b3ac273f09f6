//! OKX adapter tests: the shared signing vectors, every parse outcome, the intent of
//! every order-bearing endpoint, the floor, and the refusal envelope.

use crate::LegResult;
use http::StatusCode;

use std::collections::HashSet;

use http::{HeaderMap, HeaderValue, Method};
use keyward_policy::{EndpointClass, Execution, Side, Size};

use super::{OKX, iso_timestamp, signed};
use crate::KeyKind;
use crate::Signer as _;
use crate::test_signer::TestSigner;
use crate::{CallInput, ParseError, ParsedCall, Route, SignContext, Venue, route};

const VECTOR_TS_MS: u64 = 1_607_418_537_715; // 2020-12-08T09:08:57.715Z

fn endpoint(method: &Method, path: &str) -> &'static crate::EndpointSpec {
    match route(&OKX, method, path) {
        Route::Endpoint(spec) => spec,
        other => panic!("{method} {path}: {other:?}"),
    }
}

fn parse_with(
    method: Method,
    path: &str,
    query: &str,
    body: &str,
    content_type: Option<&str>,
    headers: &HeaderMap,
) -> Result<ParsedCall, ParseError> {
    OKX.parse(
        endpoint(&method, path),
        &CallInput {
            query,
            content_type,
            body: body.as_bytes(),
            headers,
        },
    )
}

fn post(path: &str, body: &str) -> Result<ParsedCall, ParseError> {
    parse_with(
        Method::POST,
        path,
        "",
        body,
        Some("application/json"),
        &HeaderMap::new(),
    )
}

fn get(path: &str, query: &str) -> Result<ParsedCall, ParseError> {
    parse_with(Method::GET, path, query, "", None, &HeaderMap::new())
}

fn reason(result: Result<ParsedCall, ParseError>) -> &'static str {
    result.map(|_| "ok").unwrap_or_else(|e| e.reason())
}

fn credential(secret: &str) -> TestSigner {
    TestSigner::new("okx-key-id", KeyKind::Hmac, secret.as_bytes())
        .with_passphrase("vector-passphrase")
}

fn header<'a>(outbound: &'a crate::Outbound, name: &str) -> &'a str {
    outbound
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name}"))
}

fn vectors() -> Vec<serde_json::Value> {
    crate::testkit::vectors("okx")
}

#[test]
fn every_okx_vector_reproduces() {
    use base64::Engine as _;
    let vectors = vectors();
    assert_eq!(vectors.len(), 4, "the OKX vectors of vectors.json");
    for vector in &vectors {
        let id = vector["id"].as_str().unwrap();
        let inputs = &vector["inputs"];
        let secret = inputs["secret"].as_str().unwrap();
        let want_prehash = vector["expected"]["string_to_sign"].as_str().unwrap();
        let want = vector["expected"]
            .get("OK-ACCESS-SIGN")
            .or(vector["expected"].get("sign"))
            .and_then(serde_json::Value::as_str)
            .unwrap();
        // The primitive over the documented string.
        let raw = credential(secret)
            .hmac_sha256(want_prehash.as_bytes())
            .unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(raw),
            want,
            "{id}"
        );
        if id.contains("ws-login") {
            continue;
        }
        assert_eq!(inputs["timestamp"], iso_timestamp(VECTOR_TS_MS), "{id}");
        let method: Method = inputs["method"].as_str().unwrap().parse().unwrap();
        let request_path = inputs["request_path"].as_str().unwrap();
        let (path, query) = request_path.split_once('?').unwrap_or((request_path, ""));
        let body = inputs["body"].as_str().unwrap();
        if route(&OKX, &method, path).is_endpoint() {
            // The whole path: parse as a bot sends it, sign with keyward's clock.
            let call = parse_with(
                method,
                path,
                query,
                body,
                (!body.is_empty()).then_some("application/json"),
                &HeaderMap::new(),
            )
            .unwrap();
            let context = SignContext {
                credential: &credential(secret),
                timestamp_ms: VECTOR_TS_MS,
                recv_window_ms: 5000,
                nonce: 0,
            };
            let outbound = signed(&call, context).unwrap();
            assert_eq!(outbound.path_and_query, request_path, "{id}");
            assert_eq!(outbound.body, body.as_bytes(), "{id}");
            assert_eq!(header(&outbound, "ok-access-sign"), want, "{id}");
            assert_eq!(
                header(&outbound, "ok-access-timestamp"),
                inputs["timestamp"],
                "{id}"
            );
            assert_eq!(
                header(&outbound, "ok-access-passphrase"),
                "vector-passphrase"
            );
            assert_eq!(header(&outbound, "ok-access-key"), "okx-key-id");
            assert!(
                outbound
                    .headers
                    .iter()
                    .filter(|(n, _)| n != "ok-access-timestamp" && n != "content-type")
                    .all(|(_, v)| v.is_sensitive()),
                "{id}"
            );
        } else {
            // set-leverage is deliberately not catalogued (MONEY-O03).
            assert_eq!(path, "/api/v5/account/set-leverage", "{id}");
        }
    }
}

impl Route {
    fn is_endpoint(&self) -> bool {
        matches!(self, Self::Endpoint(_))
    }
}

#[test]
fn signing_needs_a_passphrase_and_an_hmac_key() {
    let call = get("/api/v5/account/balance", "ccy=BTC").unwrap();
    let bare = TestSigner::new("k", KeyKind::Hmac, b"s");
    let context = SignContext {
        credential: &bare,
        timestamp_ms: VECTOR_TS_MS,
        recv_window_ms: 5000,
        nonce: 0,
    };
    assert_eq!(
        signed(&call, context).unwrap_err(),
        crate::SignError::NoPassphrase
    );
    // Public endpoints carry no credentials at all.
    let public = get("/api/v5/public/time", "").unwrap();
    let outbound = signed(&public, context).unwrap();
    assert!(outbound.headers.is_empty());
    assert_eq!(outbound.path_and_query, "/api/v5/public/time");
}

#[test]
fn timestamps_are_iso_8601_with_milliseconds() {
    assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_timestamp(951_782_400_001), "2000-02-29T00:00:00.001Z");
    assert_eq!(iso_timestamp(1_796_083_199_999), "2026-11-30T23:59:59.999Z");
}

#[test]
fn catalogue_is_consistent_and_disjoint_from_the_floor() {
    let mut keys = HashSet::new();
    for spec in OKX.catalogue().entries() {
        assert!(keys.insert(spec.key), "{} twice", spec.key);
        assert_eq!(spec.key, format!("{} {}", spec.method, spec.path));
        assert!(!spec.class.is_floor());
        assert!(OKX.floor(&spec.method, spec.path).is_none(), "{}", spec.key);
        assert_eq!(
            spec.bears_orders(),
            spec.class == EndpointClass::Trade,
            "{}",
            spec.key
        );
        assert_eq!(
            spec.security == crate::Security::Public,
            spec.class == EndpointClass::Market,
            "{}",
            spec.key
        );
        if spec.method == Method::POST {
            assert!(super::body_shape(spec).is_some(), "{}", spec.key);
        }
        let mut names = HashSet::new();
        for param in spec.params {
            assert!(names.insert(param.name), "{}: {}", spec.key, param.name);
        }
    }
}

#[test]
fn the_floor_covers_money_movement_and_key_management() {
    let money = [
        "/api/v5/asset/withdrawal",
        "/api/v5/asset/cancel-withdrawal",
        "/api/v5/asset/transfer",
        "/api/v5/asset/subaccount/transfer",
        "/api/v5/fiat/create-withdrawal",
        "/api/v5/fiat/cancel-withdrawal",
        "/api/v5/asset/convert/trade",
        "/api/v5/trade/easy-convert",
        "/api/v5/trade/one-click-repay",
        "/api/v5/trade/one-click-repay-v2",
        "/api/v5/account/spot-manual-borrow-repay",
        "/api/v5/account/quick-margin-borrow-repay",
        "/api/v5/account/set-auto-loan",
        "/api/v5/account/set-auto-repay",
        "/api/v5/finance/savings/purchase-redempt",
        "/api/v5/finance/staking-defi/purchase",
        "/api/v5/finance/staking-defi/eth/redeem",
        "/api/v5/finance/flexible-loan/adjust-collateral",
        "/api/v5/tradingBot/grid/withdraw-income",
        "/api/v5/users/subaccount/set-transfer-out",
        "/api/v5/broker/nd/create-subaccount",
    ];
    for path in money {
        assert_eq!(
            OKX.floor(&Method::POST, path),
            Some(EndpointClass::MoneyMovement),
            "{path}"
        );
    }
    for path in [
        "/api/v5/users/subaccount/modify-apikey",
        "/api/v5/users/subaccount/apikey",
        "/api/v5/users/subaccount/delete-apikey",
    ] {
        assert_eq!(
            OKX.floor(&Method::POST, path),
            Some(EndpointClass::KeyManagement),
            "{path}"
        );
    }
    // Leverage is not money movement, but keyward does not catalogue it (MONEY-O03).
    assert!(matches!(
        route(&OKX, &Method::POST, "/api/v5/account/set-leverage"),
        Route::Unknown
    ));
    assert!(matches!(
        route(&OKX, &Method::GET, "/api/v5/trade/cancel-order"),
        Route::MethodNotAllowed
    ));
}

/// python-okx 0.4.4's place_order body: all 17 fields, unset ones `""` or null.
const PYTHON_OKX_ORDER: &str = r#"{"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "ccy": "", "clOrdId": "bot1", "tag": "", "posSide": "", "px": "60000", "reduceOnly": "", "tgtCcy": "", "stpMode": "", "pxUsd": "", "pxVol": "", "banAmend": "", "attachAlgoOrds": null}"#;

#[test]
fn python_okx_orders_are_canonicalised_by_dropping_empty_fields() {
    let call = post("/api/v5/trade/order", PYTHON_OKX_ORDER).unwrap();
    assert_eq!(
        call.body.as_deref(),
        Some(
            r#"{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"bot1","side":"buy","ordType":"limit","px":"60000","sz":"0.001"}"#
        )
    );
    assert_eq!(call.stripped, vec!["tag"]);
    let order = &call.intent.orders[0];
    assert_eq!(order.side, Side::Buy);
    assert_eq!(&*order.order_type, "limit");
    assert_eq!(order.execution, Execution::Limit);
    assert_eq!(order.size, Size::Base("0.001".parse().unwrap()));
    assert_eq!(order.price, Some("60000".parse().unwrap()));
    assert!(!order.margin && !order.amend);
    assert_eq!(call.intent.symbols[0].as_str(), "BTC-USDT");
    // Booleans come out as JSON booleans whichever way they came in.
    let call = post(
        "/api/v5/trade/order",
        r#"{"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"sell","ordType":"post_only","px":"70000","sz":"2","reduceOnly":"true","banAmend":false}"#,
    )
    .unwrap();
    assert!(
        call.body
            .unwrap()
            .ends_with(r#""reduceOnly":true,"banAmend":false}"#)
    );
}

#[test]
fn sizes_follow_tgt_ccy_and_td_mode_marks_margin() {
    let order = |body: &str| post("/api/v5/trade/order", body).unwrap().intent.orders[0].clone();
    let q = |s: &str| s.parse().unwrap();
    // A spot market buy is quote-sized unless tgtCcy=base_ccy (python-okx sends "").
    let o = order(
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"50","tgtCcy":""}"#,
    );
    assert_eq!(
        (o.size, o.execution),
        (Size::Quote(q("50")), Execution::Market)
    );
    let o = order(
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"0.001","tgtCcy":"base_ccy"}"#,
    );
    assert_eq!(o.size, Size::Base(q("0.001")));
    let o = order(
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":"0.001"}"#,
    );
    assert_eq!(o.size, Size::Base(q("0.001")));
    let o = order(
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":"100","tgtCcy":"quote_ccy"}"#,
    );
    assert_eq!(o.size, Size::Quote(q("100")));
    // Swaps are sized in contracts whatever the side.
    let o = order(
        r#"{"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"buy","ordType":"optimal_limit_ioc","sz":"3"}"#,
    );
    assert_eq!((o.size, o.margin), (Size::Base(q("3")), false));
    // Anything but cash on a spot instrument borrows.
    for mode in ["cross", "isolated", "spot_isolated"] {
        let o = order(&format!(
            r#"{{"instId":"BTC-USDT","tdMode":"{mode}","ccy":"USDT","side":"buy","ordType":"limit","px":"1","sz":"1"}}"#
        ));
        assert!(o.margin, "{mode}");
    }
}

#[test]
fn batches_amends_and_cancels_have_their_intents() {
    let ccxt = r#"[{"instId":"BTC-USDT","side":"buy","ordType":"limit","sz":"0.001","tdMode":"cash","tgtCcy":"base_ccy","px":"60000","clOrdId":"6b9ad766b55dBCDEea0491402637c2e8","tag":"6b9ad766b55dBCDE"},{"instId":"ETH-USDT","side":"sell","ordType":"market","sz":"0.5","tdMode":"cash"}]"#;
    let call = post("/api/v5/trade/batch-orders", ccxt).unwrap();
    assert_eq!(call.intent.orders.len(), 2);
    assert_eq!(call.intent.symbols.len(), 2);
    assert_eq!(call.stripped, vec!["tag"]);
    assert_eq!(
        call.body.as_deref(),
        Some(
            r#"[{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"6b9ad766b55dBCDEea0491402637c2e8","side":"buy","ordType":"limit","px":"60000","sz":"0.001","tgtCcy":"base_ccy"},{"instId":"ETH-USDT","tdMode":"cash","side":"sell","ordType":"market","sz":"0.5"}]"#
        )
    );

    let amend = post(
        "/api/v5/trade/amend-order",
        r#"{"instId":"BTC-USDT","ordId":"12","newSz":"0.002","newPx":"61000","cxlOnFail":false,"reqId":"","newPxUsd":"","newPxVol":"","attachAlgoOrds":null}"#,
    )
    .unwrap();
    assert_eq!(amend.intent.orders.len(), 1);
    assert!(amend.intent.orders.iter().all(|o| o.amend
        && o.size == Size::Base("0.002".parse().unwrap())
        && o.price == Some("61000".parse().unwrap())));
    assert_eq!(amend.refs.amends[0].order.id.as_deref(), Some("12"));
    let reprice = post(
        "/api/v5/trade/amend-order",
        r#"{"instId":"BTC-USDT","clOrdId":"bot1","newPx":"61000"}"#,
    )
    .unwrap();
    // No new size: the record's size is used (until then it is unbounded).
    assert_eq!(reprice.intent.orders[0].size, Size::WholePosition);
    assert!(!reprice.refs.amends[0].size_given);
    assert_eq!(
        reprice.refs.amends[0].order.client_id.as_deref(),
        Some("bot1")
    );
    let batch = post(
        "/api/v5/trade/amend-batch-orders",
        r#"[{"instId":"BTC-USDT","ordId":"1","newSz":"1"},{"instId":"ETH-USDT","ordId":"2","newPx":"3000"}]"#,
    )
    .unwrap();
    assert_eq!(batch.intent.orders.len(), 2);
    assert_eq!(batch.refs.amends.len(), 2);

    let cancel = post(
        "/api/v5/trade/cancel-order",
        r#"{"instId": "BTC-USDT", "ordId": "312269865356374016", "clOrdId": ""}"#,
    )
    .unwrap();
    assert!(cancel.intent.orders.is_empty());
    assert_eq!(
        cancel.body.as_deref(),
        Some(r#"{"instId":"BTC-USDT","ordId":"312269865356374016"}"#)
    );
    let cancels = post(
        "/api/v5/trade/cancel-batch-orders",
        r#"[{"instId":"BTC-USDT","ordId":"1"},{"instId":"DMG-USDT","clOrdId":"x1"}]"#,
    )
    .unwrap();
    assert_eq!(cancels.intent.symbols.len(), 2);
}

#[test]
fn every_refusal_has_its_reason() {
    let order = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"60000","sz":"0.001"}"#;
    let element =
        r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"1"}"#;
    let big_batch = format!("[{}]", [element; 21].join(","));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let place = "/api/v5/trade/order";
    let cases: Vec<(&str, String, &str)> = vec![
        (place, order.to_owned(), "ok"),
        (
            place,
            format!(r#"{order}{{"instId":"DMG-USDT","sz":"100000"}}"#),
            "json_invalid",
        ),
        (place, deep, "json_invalid"),
        (place, "[]".to_owned(), "json_invalid"),
        (
            place,
            r#"{"instId":"BTC-USDT","inst\u0049d":"DMG-USDT"}"#.to_owned(),
            "json_duplicate_key",
        ),
        (place, order.replace("\"sz\"", "\"Sz\""), "param_unknown"),
        (
            place,
            order.replace(
                r#","sz":"0.001""#,
                r#","sz":"0.001","quickMgnType":"manual""#,
            ),
            "param_unknown",
        ),
        (
            place,
            order.replace(r#""sz":"0.001""#, r#""sz":0.001"#),
            "param_invalid",
        ),
        (place, order.replace("0.001", "1e-3"), "param_invalid"),
        (
            place,
            order.replace("BTC-USDT", "btc-usdt"),
            "param_invalid",
        ),
        (
            place,
            order.replace("BTC-USDT", "BTC--USDT"),
            "param_invalid",
        ),
        (
            place,
            order.replace(r#""tdMode":"cash","#, ""),
            "param_missing",
        ),
        (
            place,
            order.replace(r#","px":"60000""#, ""),
            "param_missing",
        ),
        (place, order.replace("limit", "market"), "param_invalid"),
        (
            place,
            order.replace(r#","sz""#, r#","pxUsd":"1","sz""#),
            "param_invalid",
        ),
        (
            place,
            order.replace(
                r#","sz""#,
                r#","attachAlgoOrds":[{"tpTriggerPx":"1"}],"sz""#,
            ),
            "param_invalid",
        ),
        (
            place,
            order.replace(r#","sz""#, r#","tgtCcy":"quote_ccy","sz""#),
            "param_invalid",
        ),
        (
            place,
            order.replace("bot1", "x").replace(
                r#","sz""#,
                r#","clOrdId":"kw_a_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","sz""#,
            ),
            "token_in_query",
        ),
        ("/api/v5/trade/batch-orders", big_batch, "batch_too_large"),
        (
            "/api/v5/trade/batch-orders",
            "[]".to_owned(),
            "json_invalid",
        ),
        (
            "/api/v5/trade/batch-orders",
            order.to_owned(),
            "json_invalid",
        ),
        (
            "/api/v5/trade/cancel-order",
            r#"{"instId":"BTC-USDT"}"#.to_owned(),
            "param_missing",
        ),
        (
            "/api/v5/trade/amend-order",
            r#"{"instId":"BTC-USDT","ordId":"1"}"#.to_owned(),
            "param_missing",
        ),
    ];
    for (path, body, want) in cases {
        assert_eq!(reason(post(path, &body)), want, "{path} {body:.200}");
    }
    let no_headers = HeaderMap::new();
    type Case<'a> = (Method, &'a str, &'a str, &'a str, Option<&'a str>, &'a str);
    let query_cases: Vec<Case<'_>> = vec![
        (
            Method::GET,
            "/api/v5/trade/order",
            "instId=BTC-USDT&instId=DMG-USDT&ordId=1",
            "",
            None,
            "param_duplicate",
        ),
        (
            Method::GET,
            "/api/v5/trade/order",
            "instId=BTC-USDT",
            "",
            None,
            "param_missing",
        ),
        (
            Method::GET,
            "/api/v5/account/balance",
            "ccy=BTC",
            r#"{"ccy":"ETH"}"#,
            Some("application/json"),
            "body_not_allowed",
        ),
        (
            Method::GET,
            "/api/v5/account/balance",
            "ccy=BTC,USDT",
            "",
            Some("application/json"),
            "ok",
        ),
        (
            Method::GET,
            "/api/v5/account/balance",
            "ccy=btc",
            "",
            None,
            "param_invalid",
        ),
        (
            Method::GET,
            "/api/v5/account/balance",
            "ccy=BTC;x=1",
            "",
            None,
            "param_invalid",
        ),
        (
            Method::GET,
            "/api/v5/account/balance",
            "currency=BTC",
            "",
            None,
            "param_unknown",
        ),
        (
            Method::POST,
            place,
            "instId=DMG-USDT",
            order,
            Some("application/json"),
            "param_unknown",
        ),
        (
            Method::POST,
            place,
            "",
            order,
            Some("application/x-www-form-urlencoded"),
            "unsupported_media_type",
        ),
        (
            Method::POST,
            place,
            "",
            order,
            None,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            place,
            "",
            order,
            Some("application/json; charset=utf-16"),
            "unsupported_media_type",
        ),
        (
            Method::POST,
            place,
            "",
            order,
            Some("application/json; charset=UTF-8"),
            "ok",
        ),
    ];
    for (method, path, query, body, content_type, want) in query_cases {
        let result = parse_with(method.clone(), path, query, body, content_type, &no_headers);
        assert_eq!(reason(result), want, "{method} {path}?{query} {body}");
    }
}

#[test]
fn bot_auth_headers_are_stripped_and_demo_is_refused() {
    let order = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"60000","sz":"0.001"}"#;
    let mut headers = HeaderMap::new();
    headers.insert("ok-access-sign", HeaderValue::from_static("Zm9v"));
    headers.insert(
        "ok-access-timestamp",
        HeaderValue::from_static("2020-01-01T00:00:00.000Z"),
    );
    headers.insert(
        "ok-access-passphrase",
        HeaderValue::from_static("bot-guess"),
    );
    headers.insert("x-simulated-trading", HeaderValue::from_static("0"));
    let call = parse_with(
        Method::POST,
        "/api/v5/trade/order",
        "",
        order,
        Some("application/json"),
        &headers,
    )
    .unwrap();
    assert_eq!(
        call.stripped,
        vec![
            "ok-access-passphrase",
            "ok-access-sign",
            "ok-access-timestamp",
            "x-simulated-trading"
        ]
    );
    assert!(!call.body.unwrap().contains("bot-guess"));
    for demo in ["1", "true", ""] {
        headers.insert("x-simulated-trading", HeaderValue::from_str(demo).unwrap());
        let result = parse_with(
            Method::GET,
            "/api/v5/account/balance",
            "",
            "",
            None,
            &headers,
        );
        assert_eq!(reason(result), "param_invalid", "{demo:?}");
    }
}

#[test]
fn escaped_json_is_forwarded_in_its_canonical_spelling() {
    let call = post(
        "/api/v5/trade/order",
        r#"{"instId":"BTC\u002dUSDT","tdMode":"cash","side":"buy","ordType":"limit","px":"60000","sz":"0.001"}"#,
    )
    .unwrap();
    let body = call.body.unwrap();
    assert!(body.contains(r#""instId":"BTC-USDT""#));
    assert!(!body.contains("\\u002d"));
}

#[test]
fn answers_are_read_for_time_quotes_and_outcomes() {
    assert_eq!(
        OKX.server_time_ms(br#"{"code":"0","msg":"","data":[{"ts":"1700000000000"}]}"#),
        Some(1_700_000_000_000)
    );
    assert_eq!(
        OKX.server_time_ms(br#"{"code":"50026","msg":"","data":[]}"#),
        None
    );
    let quote = OKX
        .parse_quote(br#"{"code":"0","msg":"","data":[{"instId":"BTC-USDT","bidPx":"59990","askPx":"60010"}]}"#)
        .unwrap();
    assert_eq!(quote.bid, "59990".parse().unwrap());
    assert!(
        OKX.parse_quote(br#"{"code":"0","data":[{"bidPx":"60010","askPx":"59990"}]}"#)
            .is_none()
    );

    let place = post(
        "/api/v5/trade/batch-orders",
        r#"[{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"1"},{"instId":"ETH-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"1"}]"#,
    )
    .unwrap();
    let ok = StatusCode::OK;
    let outcome = OKX.outcome(
        &place,
        ok,
        br#"{"code":"2","msg":"","data":[{"ordId":"7","sCode":"0"},{"ordId":"","sCode":"51008"}]}"#,
    );
    assert!(matches!(&outcome.legs[0], LegResult::Placed(p) if p.id.as_deref() == Some("7")));
    assert_eq!(outcome.legs[1], LegResult::Rejected);
    assert_eq!(
        OKX.outcome(&place, ok, br#"{"code":"50004","msg":"timeout","data":[]}"#)
            .legs,
        vec![LegResult::Unknown; 2]
    );
    let cancel = post(
        "/api/v5/trade/cancel-order",
        r#"{"instId":"BTC-USDT","ordId":"7"}"#,
    )
    .unwrap();
    let outcome = OKX.outcome(
        &cancel,
        ok,
        br#"{"code":"0","msg":"","data":[{"ordId":"7","clOrdId":"","sCode":"0","sMsg":""}]}"#,
    );
    assert_eq!(
        outcome.closed,
        vec![(
            Some(keyward_policy::Symbol::new("BTC-USDT").unwrap()),
            "7".to_owned()
        )]
    );
    assert_eq!(outcome.cancelled, Some(vec![true]));
    let pending = get("/api/v5/trade/orders-pending", "instId=BTC-USDT").unwrap();
    let outcome = OKX.outcome(
        &pending,
        ok,
        br#"{"code":"0","msg":"","data":[{"instId":"BTC-USDT","ordId":"8","state":"live"},{"instId":"BTC-USDT","ordId":"9","state":"filled"}]}"#,
    );
    let open: Vec<bool> = outcome.listed.iter().map(|l| l.open).collect();
    assert_eq!(open, vec![true, false]);
}

#[test]
fn housekeeping_requests_parse_and_symbols_check() {
    let symbol = keyward_policy::Symbol::new("BTC-USDT").unwrap();
    for task in [crate::Housekeeping::Quote, crate::Housekeeping::OpenOrders] {
        let (key, query) = OKX.housekeeping(task, &symbol);
        let spec = OKX.catalogue().by_key(key).unwrap();
        let input = CallInput {
            query: &query,
            content_type: None,
            body: b"",
            headers: &HeaderMap::new(),
        };
        let call = OKX.parse(spec, &input).unwrap();
        assert_eq!(call.intent.symbols, vec![symbol.clone()]);
    }
    let (key, _) = OKX.housekeeping(crate::Housekeeping::CancelAll, &symbol);
    assert!(OKX.catalogue().by_key(key).is_none());
    assert!(OKX.check_symbol("BTC-USDT").is_ok());
    assert!(OKX.check_symbol("BTC-USDT-SWAP").is_ok());
    assert!(OKX.check_symbol("BTCUSDT").is_ok());
    assert!(OKX.check_symbol("btc-usdt").is_err());
    assert!(OKX.check_symbol("BTC/USDT").is_err());
}

#[test]
fn refusals_inside_a_200_are_outright_unless_part_of_a_batch_succeeded() {
    let all_failed = br#"{"code":"1","msg":"All operations failed","data":[{"sCode":"51008"}]}"#;
    let partly = br#"{"code":"2","msg":"","data":[{"sCode":"0"},{"sCode":"51008"}]}"#;
    let placed = br#"{"code":"0","msg":"","data":[{"sCode":"0"}]}"#;
    let limited = br#"{"code":"50011","msg":"Too Many Requests","data":[]}"#;
    assert!(OKX.refused_outright(StatusCode::OK, all_failed));
    assert!(OKX.refused_outright(StatusCode::OK, limited));
    assert!(!OKX.refused_outright(StatusCode::OK, partly));
    assert!(!OKX.refused_outright(StatusCode::OK, placed));
}

#[test]
fn an_order_is_looked_up_and_read_back_for_adoption() {
    let reference = crate::OrderRef {
        symbol: Some(keyward_policy::Symbol::new("BTC-USDT").unwrap()),
        client_id: Some("bot1".to_owned()),
        ..crate::OrderRef::default()
    };
    let lookup = OKX.order_lookup(&reference).unwrap();
    assert_eq!(lookup.query, "instId=BTC-USDT&clOrdId=bot1");
    let order = OKX
        .looked_up_order(br#"{"code":"0","msg":"","data":[{"instId":"BTC-USDT","ordId":"7","clOrdId":"bot1","side":"buy","ordType":"limit","px":"60000","sz":"0.001","state":"live"}]}"#)
        .unwrap();
    assert_eq!(
        (order.id.as_str(), order.side, order.open),
        ("7", Side::Buy, true)
    );
    assert_eq!(order.price, Some("60000".parse().unwrap()));
}
