//! Parser, signer and catalogue tests for Bybit: every vector of vectors.json, every
//! reason the parser gives, the orders of every order-bearing endpoint, the floor and
//! the refusal envelope.

use crate::LegResult;
use http::StatusCode;

use std::collections::HashSet;

use http::{HeaderMap, HeaderValue, Method};
use keyward_policy::{EndpointClass, Execution, Side, Size};

use super::{BYBIT, KEY_HEADER};
use crate::KeyKind;
use crate::Signer as _;
use crate::test_signer::TestSigner;
use crate::{CallInput, ParseError, ParsedCall, Route, SignContext, Venue, route};

fn call_with(
    method: Method,
    path: &str,
    query: &str,
    body: &str,
    content_type: Option<&str>,
    headers: &HeaderMap,
) -> Result<ParsedCall, ParseError> {
    let Route::Endpoint(endpoint) = route(&BYBIT, &method, path) else {
        panic!("{method} {path} is not catalogued");
    };
    BYBIT.parse(
        endpoint,
        &CallInput {
            query,
            content_type,
            body: body.as_bytes(),
            headers,
        },
    )
}

fn post(path: &str, body: &str) -> Result<ParsedCall, ParseError> {
    call_with(
        Method::POST,
        path,
        "",
        body,
        Some("application/json"),
        &HeaderMap::new(),
    )
}

fn get(path: &str, query: &str) -> Result<ParsedCall, ParseError> {
    call_with(Method::GET, path, query, "", None, &HeaderMap::new())
}

fn reason(result: Result<ParsedCall, ParseError>) -> &'static str {
    result.map(|_| "ok").unwrap_or_else(|e| e.reason())
}

fn vectors() -> Vec<serde_json::Value> {
    crate::testkit::vectors("bybit")
}

fn permit(call: &ParsedCall) -> keyward_policy::Permit {
    crate::testkit::permit(&BYBIT, call)
}

fn hmac_hex(secret: &str, message: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    crate::hex(ring::hmac::sign(&key, message.as_bytes()).as_ref())
}

const LIMIT_BUY: &str = r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#;

#[test]
fn every_vector_reproduces() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 4, "the Bybit vectors of vectors.json");
    for vector in &vectors {
        let id = vector["id"].as_str().unwrap();
        let inputs = &vector["inputs"];
        let expected = &vector["expected"];
        let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
        match id {
            "bybit-v5-doc-example-UNVERIFIABLE" => {
                // No secret is published: only the string construction is testable.
                let prehash = format!(
                    "{}{}{}{}",
                    text(&inputs["timestamp"]),
                    text(&inputs["api_key"]),
                    text(&inputs["recv_window"]),
                    text(&inputs["query_string"])
                );
                assert_eq!(prehash, text(&expected["string_to_sign"]));
                // And keyward builds exactly that query from the parameters.
                let credential = TestSigner::new("XXXXXXXXXX", KeyKind::Hmac, b"unused");
                let prehash_of = |payload: &str| {
                    format!(
                        "{}{}{}{payload}",
                        text(&inputs["timestamp"]),
                        credential.api_key(),
                        text(&inputs["recv_window"])
                    )
                };
                assert_eq!(
                    prehash_of("category=option&symbol=BTC-29JUL22-25000-C"),
                    text(&expected["string_to_sign"])
                );
            }
            "bybit-v5-get-DERIVED" | "bybit-v5-post-DERIVED" => {
                // The signer's primitive over the vector's exact payload.
                let credential = TestSigner::new(
                    &text(&inputs["api_key"]),
                    KeyKind::Hmac,
                    text(&inputs["secret"]).as_bytes(),
                );
                let prehash = format!(
                    "{}{}{}{}",
                    text(&inputs["timestamp"]),
                    text(&inputs["api_key"]),
                    text(&inputs["recv_window"]),
                    text(&inputs["payload"])
                );
                assert_eq!(prehash, text(&expected["string_to_sign"]), "{id}");
                let context = SignContext {
                    credential: &credential,
                    timestamp_ms: 0,
                    recv_window_ms: 0,
                    nonce: 0,
                };
                assert_eq!(
                    super::signature(context, prehash.as_bytes()).unwrap(),
                    text(&expected["X-BAPI-SIGN"]),
                    "{id}"
                );
            }
            "bybit-v5-ws-auth-DERIVED" => {
                let credential =
                    TestSigner::new("unused", KeyKind::Hmac, text(&inputs["secret"]).as_bytes());
                let prehash = format!("GET/realtime{}", text(&inputs["expires"]));
                assert_eq!(prehash, text(&expected["string_to_sign"]));
                let context = SignContext {
                    credential: &credential,
                    timestamp_ms: 0,
                    recv_window_ms: 0,
                    nonce: 0,
                };
                assert_eq!(
                    super::signature(context, prehash.as_bytes()).unwrap(),
                    text(&expected["signature"])
                );
            }
            other => panic!("unknown Bybit vector {other}"),
        }
    }
}

#[test]
fn signs_exactly_the_bytes_it_sends() {
    let secret = "bybit-test-secret";
    let credential = TestSigner::new("XXXXXXXXXX", KeyKind::Hmac, secret.as_bytes());
    let context = SignContext {
        credential: &credential,
        timestamp_ms: 1_658_384_314_791,
        recv_window_ms: 5000,
        nonce: 0,
    };
    // A GET: the query keyward rebuilt, in catalogue order, is what is signed.
    let call = get(
        "/v5/order/realtime",
        "symbol=BTCUSDT&category=spot&openOnly=0",
    )
    .unwrap();
    let out = BYBIT.sign(&call, &permit(&call), context).unwrap();
    assert_eq!(
        out.path_and_query,
        "/v5/order/realtime?category=spot&symbol=BTCUSDT&openOnly=0"
    );
    assert!(out.body.is_empty());
    let header = |name: &str| {
        out.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header(KEY_HEADER).unwrap(), "XXXXXXXXXX");
    assert_eq!(header("x-bapi-timestamp").unwrap(), "1658384314791");
    assert_eq!(header("x-bapi-recv-window").unwrap(), "5000");
    assert_eq!(
        header("x-bapi-sign").unwrap(),
        hmac_hex(
            secret,
            "1658384314791XXXXXXXXXX5000category=spot&symbol=BTCUSDT&openOnly=0"
        )
    );
    assert!(
        out.headers
            .iter()
            .filter(|(n, _)| n == "x-bapi-sign" || n == KEY_HEADER)
            .all(|(_, v)| v.is_sensitive())
    );
    // A POST with pybit's spaced JSON: re-serialised compactly, typed, in catalogue
    // order, and that is what is signed and sent.
    let body = r#"{"symbol": "BTCUSDT", "category": "linear", "side": "Buy", "orderType": "Limit", "qty": "0.001", "price": "60000", "positionIdx": 0, "reduceOnly": false}"#;
    let call = post("/v5/order/create", body).unwrap();
    let out = BYBIT.sign(&call, &permit(&call), context).unwrap();
    let sent = String::from_utf8(out.body.clone()).unwrap();
    assert_eq!(
        sent,
        r#"{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000","positionIdx":0,"reduceOnly":false}"#
    );
    assert_eq!(out.path_and_query, "/v5/order/create");
    let sign = out
        .headers
        .iter()
        .find(|(n, _)| n == "x-bapi-sign")
        .unwrap()
        .1
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        sign,
        hmac_hex(secret, &format!("1658384314791XXXXXXXXXX5000{sent}"))
    );
    assert!(
        out.headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == "application/json")
    );
    // Public market data: no key, no signature.
    let call = get("/v5/market/tickers", "category=spot&symbol=BTCUSDT").unwrap();
    let out = BYBIT.sign(&call, &permit(&call), context).unwrap();
    assert!(out.headers.is_empty());
    // Ed25519 keys are not Bybit's.
    let ed = TestSigner::generated_ed25519("k");
    let call = get("/v5/account/wallet-balance", "accountType=UNIFIED").unwrap();
    assert!(
        BYBIT
            .sign(
                &call,
                &permit(&call),
                SignContext {
                    credential: &ed,
                    ..context
                }
            )
            .is_err()
    );
}

#[test]
fn bot_auth_headers_are_recorded_as_stripped_and_never_sent() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-bapi-sign", "deadbeef"),
        ("x-bapi-timestamp", "1"),
        ("x-bapi-recv-window", "600000"),
        ("x-bapi-sign-type", "2"),
        ("referer", "CCXT"),
        ("x-referer", "attacker-broker-id"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let call = call_with(
        Method::POST,
        "/v5/order/create",
        "",
        LIMIT_BUY,
        Some("application/json"),
        &headers,
    )
    .unwrap();
    assert_eq!(
        call.stripped,
        vec![
            "X-BAPI-SIGN",
            "X-BAPI-TIMESTAMP",
            "X-BAPI-RECV-WINDOW",
            "X-BAPI-SIGN-TYPE",
            "Referer",
            "X-Referer"
        ]
    );
    let credential = TestSigner::new("KEY", KeyKind::Hmac, b"s");
    let out = BYBIT
        .sign(
            &call,
            &permit(&call),
            SignContext {
                credential: &credential,
                timestamp_ms: 1_700_000_000_000,
                recv_window_ms: 5000,
                nonce: 0,
            },
        )
        .unwrap();
    let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "x-bapi-api-key",
            "x-bapi-timestamp",
            "x-bapi-recv-window",
            "x-bapi-sign",
            "content-type"
        ]
    );
    let window = &out.headers[2].1;
    assert_eq!(window, "5000");
}

#[test]
fn parse_outcomes() {
    let json = Some("application/json");
    let none = HeaderMap::new();
    let form = Some("application/x-www-form-urlencoded");
    let token = format!("kw_a_{}", "A".repeat(43));
    let cases: Vec<(&str, Result<ParsedCall, ParseError>, &str)> = vec![
        ("limit buy", post("/v5/order/create", LIMIT_BUY), "ok"),
        (
            "pybit spaced JSON",
            post(
                "/v5/order/create",
                r#"{"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001", "price": "60000", "timeInForce": "GTC", "orderLinkId": "bot-1"}"#,
            ),
            "ok",
        ),
        (
            "charset",
            call_with(
                Method::POST,
                "/v5/order/create",
                "",
                LIMIT_BUY,
                Some("application/json; charset=utf-8"),
                &none,
            ),
            "ok",
        ),
        (
            "pybit sends a JSON content type on a bodyless GET",
            call_with(
                Method::GET,
                "/v5/account/wallet-balance",
                "accountType=UNIFIED&coin=USDT,BTC",
                "",
                json,
                &none,
            ),
            "ok",
        ),
        (
            "a GET with a body",
            call_with(
                Method::GET,
                "/v5/account/wallet-balance",
                "accountType=UNIFIED",
                "{}",
                json,
                &none,
            ),
            "body_not_allowed",
        ),
        (
            "CT-008: JSON under a form content type",
            call_with(Method::POST, "/v5/order/create", "", LIMIT_BUY, form, &none),
            "unsupported_media_type",
        ),
        (
            "no content type",
            call_with(Method::POST, "/v5/order/create", "", LIMIT_BUY, None, &none),
            "unsupported_media_type",
        ),
        (
            "query beside a JSON body",
            call_with(
                Method::POST,
                "/v5/order/create",
                "symbol=ETHUSDT",
                LIMIT_BUY,
                json,
                &none,
            ),
            "param_invalid",
        ),
        (
            "two JSON values",
            post("/v5/order/create", &format!("{LIMIT_BUY}{LIMIT_BUY}")),
            "json_invalid",
        ),
        (
            "deep nesting",
            post(
                "/v5/order/create",
                &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            ),
            "json_invalid",
        ),
        (
            "not an object",
            post("/v5/order/create", "[]"),
            "json_invalid",
        ),
        (
            "duplicate key",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","sym\u0062ol":"DMGUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#,
            ),
            "json_duplicate_key",
        ),
        (
            "duplicate key inside a batch element",
            post(
                "/v5/order/create-batch",
                r#"{"category":"spot","request":[{"symbol":"BTCUSDT","side":"Buy","side":"Sell","orderType":"Limit","qty":"1","price":"1"}]}"#,
            ),
            "json_duplicate_key",
        ),
        (
            "duplicate query key",
            get(
                "/v5/order/realtime",
                "category=spot&symbol=BTCUSDT&symbol=ETHUSDT",
            ),
            "param_duplicate",
        ),
        (
            "unknown key",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000","takeProfit":"70000"}"#,
            ),
            "param_unknown",
        ),
        (
            "exchange-chosen price",
            post(
                "/v5/order/create",
                r#"{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000","bboSideType":"Queue"}"#,
            ),
            "param_unknown",
        ),
        (
            "missing qty",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","price":"60000"}"#,
            ),
            "param_missing",
        ),
        (
            "limit without price",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"1"}"#,
            ),
            "param_missing",
        ),
        (
            "lowercase side",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"buy","orderType":"Limit","qty":"1","price":"1"}"#,
            ),
            "param_invalid",
        ),
        (
            "exponent",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"1e3","price":"1"}"#,
            ),
            "param_invalid",
        ),
        (
            "qty as a JSON number",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":0.001,"price":"1"}"#,
            ),
            "param_invalid",
        ),
        (
            "isLeverage as a string",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","isLeverage":"0","side":"Buy","orderType":"Limit","qty":"1","price":"1"}"#,
            ),
            "param_invalid",
        ),
        (
            "inverse category",
            post(
                "/v5/order/create",
                r#"{"category":"inverse","symbol":"BTCUSD","side":"Buy","orderType":"Limit","qty":"1","price":"1"}"#,
            ),
            "param_invalid",
        ),
        (
            "lowercase symbol",
            get("/v5/order/realtime", "category=spot&symbol=btcusdt"),
            "param_invalid",
        ),
        (
            "isLeverage on linear",
            post(
                "/v5/order/create",
                r#"{"category":"linear","symbol":"BTCUSDT","isLeverage":1,"side":"Buy","orderType":"Limit","qty":"1","price":"1"}"#,
            ),
            "param_invalid",
        ),
        (
            "price on a market order",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"10","price":"1"}"#,
            ),
            "param_invalid",
        ),
        (
            "spot trigger without a conditional orderFilter",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"1","price":"1","triggerPrice":"2"}"#,
            ),
            "param_invalid",
        ),
        (
            "conditional spot market without marketUnit",
            post(
                "/v5/order/create",
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1","orderFilter":"StopOrder","triggerPrice":"2"}"#,
            ),
            "param_missing",
        ),
        (
            "cancel naming the order twice",
            post(
                "/v5/order/cancel",
                r#"{"category":"spot","symbol":"BTCUSDT","orderId":"1","orderLinkId":"a"}"#,
            ),
            "param_invalid",
        ),
        (
            "cancel-all without a symbol",
            post("/v5/order/cancel-all", r#"{"category":"spot"}"#),
            "param_missing",
        ),
        (
            "spot leverage",
            post(
                "/v5/position/set-leverage",
                r#"{"category":"spot","symbol":"BTCUSDT","buyLeverage":"2","sellLeverage":"2"}"#,
            ),
            "param_invalid",
        ),
        (
            "eleven spot orders",
            post("/v5/order/create-batch", &batch("spot", 11)),
            "batch_too_large",
        ),
        (
            "twenty linear orders",
            post("/v5/order/create-batch", &batch("linear", 20)),
            "ok",
        ),
        (
            "empty batch",
            post(
                "/v5/order/create-batch",
                r#"{"category":"spot","request":[]}"#,
            ),
            "json_invalid",
        ),
        (
            "token in the query",
            get(
                "/v5/order/realtime",
                &format!("category=spot&orderLinkId={token}"),
            ),
            "token_in_query",
        ),
        (
            "token in the body",
            post(
                "/v5/order/create",
                &format!(
                    r#"{{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"1","price":"1","orderLinkId":"{token}"}}"#
                ),
            ),
            "token_in_query",
        ),
        (
            "keyward's own body-less cancel-all",
            call_with(
                Method::POST,
                "/v5/order/cancel-all",
                "category=spot&symbol=BTCUSDT",
                "",
                None,
                &none,
            ),
            "ok",
        ),
    ];
    let mut seen = HashSet::new();
    for (what, result, expected) in cases {
        let got = reason(result);
        assert_eq!(got, expected, "{what}");
        seen.insert(got);
    }
    for code in [
        "body_not_allowed",
        "unsupported_media_type",
        "param_duplicate",
        "param_unknown",
        "param_invalid",
        "param_missing",
        "json_duplicate_key",
        "json_invalid",
        "batch_too_large",
        "token_in_query",
    ] {
        assert!(seen.contains(code), "{code} is never produced");
    }
}

fn batch(category: &str, n: usize) -> String {
    let element =
        r#"{"symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#;
    format!(
        r#"{{"category":"{category}","request":[{}]}}"#,
        vec![element; n].join(",")
    )
}

#[test]
fn orders_of_every_order_bearing_endpoint() {
    // Limit buy: base-sized, no margin, symbol keyed on its category.
    let call = post("/v5/order/create", LIMIT_BUY).unwrap();
    let [order] = call.intent.orders.as_slice() else {
        panic!("{:?}", call.intent.orders)
    };
    assert_eq!(order.symbol.as_str(), "spot:BTCUSDT");
    assert_eq!(call.intent.symbols[0].as_str(), "spot:BTCUSDT");
    assert_eq!((order.side, order.execution), (Side::Buy, Execution::Limit));
    assert_eq!(order.size, Size::Base("0.001".parse().unwrap()));
    assert_eq!(order.price, Some("60000".parse().unwrap()));
    assert!(!order.margin && !order.amend);
    assert_eq!(&*order.order_type, "Limit");

    // Spot market buy: quote-sized unless marketUnit=baseCoin; a sell is base-sized
    // unless marketUnit=quoteCoin.
    let size = |body: &str| post("/v5/order/create", body).unwrap().intent.orders[0].size;
    let market = |side: &str, unit: &str| {
        format!(
            r#"{{"category":"spot","symbol":"BTCUSDT","side":"{side}","orderType":"Market","qty":"50"{unit}}}"#
        )
    };
    let fifty = "50".parse().unwrap();
    assert_eq!(size(&market("Buy", "")), Size::Quote(fifty));
    assert_eq!(
        size(&market("Buy", r#","marketUnit":"quoteCoin""#)),
        Size::Quote(fifty)
    );
    assert_eq!(
        size(&market("Buy", r#","marketUnit":"baseCoin""#)),
        Size::Base(fifty)
    );
    assert_eq!(size(&market("Sell", "")), Size::Base(fifty));
    assert_eq!(
        size(&market("Sell", r#","marketUnit":"quoteCoin""#)),
        Size::Quote(fifty)
    );
    // Linear market orders are base-sized.
    assert_eq!(
        size(
            r#"{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"50"}"#
        ),
        Size::Base(fifty)
    );

    // isLeverage=1 borrows.
    let call = post(
        "/v5/order/create",
        r#"{"category":"spot","symbol":"BTCUSDT","isLeverage":1,"side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#,
    )
    .unwrap();
    assert!(call.intent.orders[0].margin);

    // Conditional orders execute as stops.
    let call = post(
        "/v5/order/create",
        r#"{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0.01","triggerPrice":"50000","triggerDirection":2}"#,
    )
    .unwrap();
    let order = &call.intent.orders[0];
    assert_eq!(order.execution, Execution::StopMarket);
    assert_eq!(order.trigger, Some("50000".parse().unwrap()));
    let call = post(
        "/v5/order/create",
        r#"{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Limit","qty":"0.01","price":"49000","orderFilter":"StopOrder","triggerPrice":"50000"}"#,
    )
    .unwrap();
    assert_eq!(call.intent.orders[0].execution, Execution::StopLimit);

    // A batch: one order per element, every symbol in the intent.
    let call = post(
        "/v5/order/create-batch",
        r#"{"category":"linear","request":[{"symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"},{"symbol":"ETHUSDT","side":"Sell","orderType":"Market","qty":"1"}]}"#,
    )
    .unwrap();
    assert_eq!(call.intent.orders.len(), 2);
    let symbols: Vec<&str> = call.intent.symbols.iter().map(|s| s.as_str()).collect();
    assert_eq!(symbols, vec!["linear:BTCUSDT", "linear:ETHUSDT"]);
    assert_eq!(call.intent.orders[1].side, Side::Sell);
    assert_eq!(
        call.body.as_deref().unwrap(),
        r#"{"category":"linear","request":[{"symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"},{"symbol":"ETHUSDT","side":"Sell","orderType":"Market","qty":"1"}]}"#
    );

    // An amend: one order naming the order it changes, whose side and type keyward
    // takes from its record; what it does not restate keeps the recorded value.
    let call = post(
        "/v5/order/amend",
        r#"{"category":"spot","symbol":"BTCUSDT","orderId":"1","qty":"0.002","price":"61000"}"#,
    )
    .unwrap();
    assert_eq!(call.intent.orders.len(), 1);
    let order = &call.intent.orders[0];
    assert!(order.amend && order.size == Size::Base("0.002".parse().unwrap()));
    assert_eq!(order.price, Some("61000".parse().unwrap()));
    let amend = &call.refs.amends[0];
    assert_eq!(amend.order.id.as_deref(), Some("1"));
    assert_eq!(
        amend.order.symbol.as_ref().map(|s| s.as_str()),
        Some("spot:BTCUSDT")
    );
    assert!(amend.size_given && amend.price_given);
    let reprice = post(
        "/v5/order/amend",
        r#"{"category":"spot","symbol":"BTCUSDT","orderId":"1","price":"61000"}"#,
    )
    .unwrap();
    assert!(!reprice.refs.amends[0].size_given);
    // An amend that changes nothing is refused.
    assert_eq!(
        reason(post(
            "/v5/order/amend",
            r#"{"category":"spot","symbol":"BTCUSDT","orderId":"1"}"#
        )),
        "param_missing"
    );
    let call = post(
        "/v5/order/amend-batch",
        r#"{"category":"linear","request":[{"symbol":"BTCUSDT","orderLinkId":"a","qty":"0.01","triggerPrice":"50000"},{"symbol":"ETHUSDT","orderId":"2","qty":"1","price":"3000"}]}"#,
    )
    .unwrap();
    assert_eq!(call.intent.orders.len(), 2);
    assert_eq!(call.refs.amends.len(), 2);
    assert_eq!(call.refs.amends[0].order.client_id.as_deref(), Some("a"));
    assert_eq!(
        call.intent.orders[0].trigger,
        Some("50000".parse().unwrap())
    );

    // Cancels carry symbols and no orders.
    let call = post(
        "/v5/order/cancel-batch",
        r#"{"category":"spot","request":[{"symbol":"BTCUSDT","orderId":"1"},{"symbol":"ETHUSDT","orderLinkId":"x"}]}"#,
    )
    .unwrap();
    assert!(call.intent.orders.is_empty());
    assert_eq!(call.intent.symbols.len(), 2);
    assert_eq!(call.refs.cancels.len(), 2);
    assert_eq!(call.refs.cancels[1].client_id.as_deref(), Some("x"));
    let call = post(
        "/v5/order/cancel",
        r#"{"symbol":"BTCUSDT","orderFilter":"Order","orderId":"1","category":"spot"}"#,
    )
    .unwrap();
    assert_eq!(call.intent.symbols[0].as_str(), "spot:BTCUSDT");
    assert_eq!(
        call.body.as_deref().unwrap(),
        r#"{"category":"spot","symbol":"BTCUSDT","orderId":"1","orderFilter":"Order"}"#
    );
}

#[test]
fn catalogue_is_consistent_and_disjoint_from_the_floor() {
    let mut keys = HashSet::new();
    for spec in BYBIT.catalogue().entries() {
        assert!(keys.insert(spec.key), "{} twice", spec.key);
        assert_eq!(spec.key, format!("{} {}", spec.method, spec.path));
        assert!(!spec.class.is_floor());
        assert!(
            BYBIT.floor(&spec.method, spec.path).is_none(),
            "{} is on the floor",
            spec.key
        );
        assert_eq!(
            spec.security == crate::Security::Public,
            spec.class == EndpointClass::Market,
            "{}",
            spec.key
        );
        let mut names = HashSet::new();
        for param in spec.params {
            assert!(names.insert(param.name), "{}: {}", spec.key, param.name);
        }
        assert_eq!(
            spec.bears_orders(),
            spec.class == EndpointClass::Trade,
            "{}",
            spec.key
        );
    }
    for (path, class) in [
        ("/v5/asset/withdraw/create", EndpointClass::MoneyMovement),
        (
            "/v5/asset/transfer/universal-transfer",
            EndpointClass::MoneyMovement,
        ),
        (
            "/v5/asset/transfer/inter-transfer",
            EndpointClass::MoneyMovement,
        ),
        (
            "/v5/asset/exchange/convert-execute",
            EndpointClass::MoneyMovement,
        ),
        ("/v5/asset/coin/query-info", EndpointClass::MoneyMovement),
        ("/v5/fiat/trade-execute", EndpointClass::MoneyMovement),
        ("/v5/earn/place-order", EndpointClass::MoneyMovement),
        ("/v5/crypto-loan/borrow", EndpointClass::MoneyMovement),
        ("/v5/account/borrow", EndpointClass::MoneyMovement),
        ("/v5/account/quick-repayment", EndpointClass::MoneyMovement),
        (
            "/v5/spot-margin-trade/fixedborrow",
            EndpointClass::MoneyMovement,
        ),
        (
            "/v5/broker/award/distribute-award",
            EndpointClass::MoneyMovement,
        ),
        ("/v5/position/move-positions", EndpointClass::MoneyMovement),
        ("/v5/user/update-api", EndpointClass::KeyManagement),
        ("/v5/user/create-sub-api", EndpointClass::KeyManagement),
        ("/v5/user/query-api", EndpointClass::KeyManagement),
        ("/v5/apilimit/set", EndpointClass::KeyManagement),
    ] {
        assert_eq!(BYBIT.floor(&Method::POST, path), Some(class), "{path}");
    }
}

#[test]
fn symbols_are_spelled_with_their_category() {
    for ok in [
        "spot:BTCUSDT",
        "linear:BTCUSDT",
        "linear:BTC-26DEC25",
        "spot:1000PEPEUSDT",
    ] {
        assert!(BYBIT.check_symbol(ok).is_ok(), "{ok}");
    }
    for bad in [
        "BTCUSDT",
        "inverse:BTCUSD",
        "option:BTC-29JUL22-25000-C",
        "spot:btcusdt",
        "spot:",
        "Spot:BTCUSDT",
        "spot:BTC/USDT",
    ] {
        assert!(BYBIT.check_symbol(bad).is_err(), "{bad}");
    }
    // The same symbol in two categories is two symbols.
    let spot = post("/v5/order/create", LIMIT_BUY).unwrap();
    let linear = post(
        "/v5/order/create",
        &LIMIT_BUY.replace(r#""spot""#, r#""linear""#),
    )
    .unwrap();
    assert_ne!(spot.intent.symbols, linear.intent.symbols);
}

#[test]
fn housekeeping_quotes_and_order_reports() {
    let symbol = keyward_policy::Symbol::new("spot:BTCUSDT").unwrap();
    for task in [
        crate::Housekeeping::Quote,
        crate::Housekeeping::OpenOrders,
        crate::Housekeeping::CancelAll,
    ] {
        let (key, query) = BYBIT.housekeeping(task, &symbol);
        assert_eq!(query, "category=spot&symbol=BTCUSDT");
        let spec = BYBIT.catalogue().by_key(key).unwrap();
        let call = BYBIT
            .parse(
                spec,
                &CallInput {
                    query: &query,
                    content_type: None,
                    body: b"",
                    headers: &HeaderMap::new(),
                },
            )
            .unwrap();
        assert_eq!(call.intent.symbols, vec![symbol.clone()]);
        if key.starts_with("POST") {
            assert_eq!(
                call.body.as_deref(),
                Some(r#"{"category":"spot","symbol":"BTCUSDT"}"#)
            );
        }
    }
    let quote = BYBIT
        .parse_quote(
            br#"{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"symbol":"BTCUSDT","bid1Price":"59990","ask1Price":"60010"}]}}"#,
        )
        .unwrap();
    assert_eq!(quote.bid, "59990".parse().unwrap());
    assert!(
        BYBIT
            .parse_quote(br#"{"retCode":0,"result":{"list":[{"bid1Price":"2","ask1Price":"1"}]}}"#)
            .is_none()
    );
    assert_eq!(
        BYBIT.server_time_ms(
            br#"{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1700000000","timeNano":"1700000000123456789"},"time":1700000000124}"#
        ),
        Some(1_700_000_000_123)
    );
    let create = post("/v5/order/create", LIMIT_BUY).unwrap();
    let ok = StatusCode::OK;
    let outcome = BYBIT.outcome(
        &create,
        ok,
        br#"{"retCode":0,"retMsg":"OK","result":{"orderId":"42","orderLinkId":""}}"#,
    );
    assert!(
        matches!(&outcome.legs[..], [LegResult::Placed(p)] if p.id.as_deref() == Some("42") && p.open)
    );
    // Bybit refuses with HTTP 200 and a retCode: nothing placed.
    let refused = BYBIT.outcome(
        &create,
        ok,
        br#"{"retCode":170131,"retMsg":"Insufficient balance.","result":{}}"#,
    );
    assert_eq!(refused.legs, vec![LegResult::Rejected]);
    // A server timeout's fate is unknown.
    let unknown = BYBIT.outcome(
        &create,
        ok,
        br#"{"retCode":10000,"retMsg":"Server Timeout"}"#,
    );
    assert_eq!(unknown.legs, vec![LegResult::Unknown]);
    // A 4xx refused the request, except a 408: a gateway may time out after the
    // exchange acted.
    let bad_request = BYBIT.outcome(&create, StatusCode::BAD_REQUEST, b"{}");
    assert_eq!(bad_request.legs, vec![LegResult::Rejected]);
    let timed_out = BYBIT.outcome(&create, StatusCode::REQUEST_TIMEOUT, b"{}");
    assert_eq!(timed_out.legs, vec![LegResult::Unknown]);
    let all = post(
        "/v5/order/cancel-all",
        r#"{"category":"spot","symbol":"BTCUSDT"}"#,
    )
    .unwrap();
    let outcome = BYBIT.outcome(
        &all,
        ok,
        br#"{"retCode":0,"result":{"list":[{"orderId":"42","orderLinkId":""}],"success":"1"}}"#,
    );
    assert_eq!(
        outcome.closed,
        vec![(Some(symbol.clone()), "42".to_owned())]
    );
    assert_eq!(outcome.closed_all, vec![symbol]);
    let open = get("/v5/order/realtime", "category=spot&symbol=BTCUSDT").unwrap();
    let outcome = BYBIT.outcome(
        &open,
        ok,
        br#"{"retCode":0,"result":{"list":[{"orderId":"1","symbol":"BTCUSDT","orderStatus":"New"},{"orderId":"2","symbol":"BTCUSDT","orderStatus":"Filled"}]}}"#,
    );
    let open: Vec<(&str, bool)> = outcome
        .listed
        .iter()
        .map(|l| (l.id.as_str(), l.open))
        .collect();
    assert_eq!(open, vec![("1", true), ("2", false)]);
    // A batch: each element by its own code.
    let batch = post(
        "/v5/order/create-batch",
        r#"{"category":"linear","request":[{"symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"},{"symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}]}"#,
    )
    .unwrap();
    let outcome = BYBIT.outcome(
        &batch,
        ok,
        br#"{"retCode":0,"result":{"list":[{"orderId":"1","orderLinkId":""},{"orderId":"","orderLinkId":""}]},"retExtInfo":{"list":[{"code":0,"msg":"OK"},{"code":170131,"msg":"Insufficient balance."}]}}"#,
    );
    assert!(matches!(outcome.legs[0], LegResult::Placed(_)));
    assert_eq!(outcome.legs[1], LegResult::Rejected);
}

#[test]
fn backoff_on_bans_and_spent_endpoint_counters() {
    let none = HeaderMap::new();
    let ban = BYBIT.backoff(StatusCode::FORBIDDEN, &none).unwrap();
    assert!(ban.banned);
    assert_eq!(ban.retry_after, std::time::Duration::from_secs(600));
    assert!(BYBIT.backoff(StatusCode::OK, &none).is_none());
    let mut headers = HeaderMap::new();
    headers.insert("x-bapi-limit-status", HeaderValue::from_static("0"));
    headers.insert(
        "x-bapi-limit-reset-timestamp",
        HeaderValue::from_static("1"),
    );
    let spent = BYBIT.backoff(StatusCode::OK, &headers).unwrap();
    assert!(!spent.banned);
    assert_eq!(spent.retry_after, std::time::Duration::from_secs(1));
    headers.insert("x-bapi-limit-status", HeaderValue::from_static("3"));
    assert!(BYBIT.backoff(StatusCode::OK, &headers).is_none());
}

#[test]
fn refusals_inside_a_200_are_outright_but_batches_are_not() {
    let refused = br#"{"retCode":170131,"retMsg":"Insufficient balance.","result":{}}"#;
    let placed = br#"{"retCode":0,"retMsg":"OK","result":{"orderId":"1"}}"#;
    assert!(BYBIT.refused_outright(StatusCode::OK, refused));
    assert!(!BYBIT.refused_outright(StatusCode::OK, placed));
    assert!(BYBIT.refused_outright(StatusCode::FORBIDDEN, b""));
    assert!(!BYBIT.refused_outright(StatusCode::OK, b"not json"));
}

#[test]
fn an_order_is_looked_up_and_read_back_for_adoption() {
    let reference = crate::OrderRef {
        symbol: Some(keyward_policy::Symbol::new("linear:BTCUSDT").unwrap()),
        id: Some("42".to_owned()),
        ..crate::OrderRef::default()
    };
    let lookup = BYBIT.order_lookup(&reference).unwrap();
    assert_eq!(lookup.key, "GET /v5/order/realtime");
    assert_eq!(lookup.query, "category=linear&symbol=BTCUSDT&orderId=42");
    let order = BYBIT
        .looked_up_order(br#"{"retCode":0,"result":{"category":"linear","list":[{"orderId":"42","orderLinkId":"c","symbol":"BTCUSDT","side":"Sell","orderType":"Limit","price":"61000","qty":"0.002","triggerPrice":"","orderStatus":"New"}]}}"#)
        .unwrap();
    assert_eq!(order.symbol.as_str(), "linear:BTCUSDT");
    assert_eq!((order.side, order.open), (Side::Sell, true));
    assert_eq!(order.size, Size::Base("0.002".parse().unwrap()));
    assert_eq!(order.price, Some("61000".parse().unwrap()));
    assert!(
        BYBIT
            .looked_up_order(br#"{"retCode":110001,"result":{}}"#)
            .is_none()
    );
}

#[test]
fn query_api_is_answered_from_the_bots_policy_and_never_signed() {
    use keyward_policy::EndpointClass::{Cancel, Market, Read, Trade};

    let endpoint = BYBIT
        .catalogue()
        .by_key("GET /v5/user/query-api")
        .expect("catalogued");
    assert!(BYBIT.answered_by_keyward(endpoint));
    assert!(matches!(
        route(&BYBIT, &Method::GET, "/v5/user/query-api"),
        Route::Endpoint(_)
    ));
    // Every other method, and every other key endpoint, stays on the floor.
    assert_eq!(
        BYBIT.floor(&Method::POST, "/v5/user/query-api"),
        Some(EndpointClass::KeyManagement)
    );
    assert_eq!(
        BYBIT.floor(&Method::GET, "/v5/user/get-member-type"),
        Some(EndpointClass::KeyManagement)
    );
    let call = BYBIT
        .parse(
            endpoint,
            &CallInput {
                query: "",
                content_type: None,
                body: b"",
                headers: &HeaderMap::new(),
            },
        )
        .expect("no parameters");
    let answer = |classes: &[EndpointClass], symbols: &[&str]| {
        let view = crate::KeyView {
            bot: "grid",
            classes,
            symbols,
            expires_at: "2027-01-01T00:00:00Z",
            days_left: 26,
            now_ms: 1_796_083_200_000,
        };
        let (_, body) = BYBIT.key_answer(&call, &view).expect("answered");
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["result"].clone()
    };
    let reader = answer(&[Market, Read], &["spot:BTCUSDT"]);
    assert_eq!(reader["readOnly"], 1);
    assert_eq!(reader["permissions"]["Spot"], serde_json::json!([]));
    assert_eq!(reader["apiKey"], "keyward:grid");
    assert_eq!(reader["expiredAt"], "2027-01-01T00:00:00Z");
    let spot = answer(&[Market, Read, Trade, Cancel], &["spot:BTCUSDT"]);
    assert_eq!(spot["readOnly"], 0);
    assert_eq!(
        spot["permissions"]["Spot"],
        serde_json::json!(["SpotTrade"])
    );
    assert_eq!(spot["permissions"]["ContractTrade"], serde_json::json!([]));
    assert_eq!(spot["permissions"]["Wallet"], serde_json::json!([]));
    assert_eq!(spot["uta"], 1);
    let permit = crate::testkit::permit(&BYBIT, &call);
    let credential = TestSigner::hmac("key", b"secret");
    let signed = BYBIT.sign(
        &call,
        &permit,
        SignContext {
            credential: &credential,
            timestamp_ms: 1,
            recv_window_ms: 5000,
            nonce: 0,
        },
    );
    assert!(matches!(signed, Err(crate::SignError::AnsweredByKeyward)));
}
