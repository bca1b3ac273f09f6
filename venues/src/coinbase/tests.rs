//! Coinbase adapter tests: the JWT vectors of venues/vectors.json, parse outcomes,
//! order intents, the floor, path templates and the refusal envelope.

use base64::Engine as _;
use http::{HeaderMap, Method};
use keyward_policy::{Execution, Side, Size};

use super::*;
use crate::test_signer::TestSigner;
use crate::{KeyKind, Route, route};

fn vector(id: &str) -> serde_json::Value {
    crate::testkit::vectors("coinbase")
        .into_iter()
        .find(|v| v["id"] == id)
        .expect(id)
}

/// Ed25519 PKCS#8 (RFC 8410) from a 32-byte seed.
fn ed25519_pkcs8(seed: &[u8]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

#[test]
fn eddsa_vector_is_reproduced_byte_for_byte() {
    let v = vector("coinbase-cdp-jwt-eddsa-DERIVED");
    let inputs = &v["inputs"];
    let secret = base64::engine::general_purpose::STANDARD
        .decode(
            inputs["secret_b64_64bytes_seed_then_pubkey"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let credential = TestSigner::new(
        inputs["key_name"].as_str().unwrap(),
        KeyKind::Ed25519,
        &ed25519_pkcs8(&secret[..32]),
    );
    let jwt = jwt(
        &credential,
        "GET",
        "/api/v3/brokerage/accounts",
        inputs["claims"]["nbf"].as_u64().unwrap(),
        inputs["header"]["nonce"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(jwt, v["expected"]["jwt"].as_str().unwrap());
}

#[test]
fn exchange_hmac_vector_is_for_another_product_and_keyward_refuses_hmac_keys() {
    // Coinbase Exchange (institutional) signs with HMAC; keyward's Coinbase venue is
    // Advanced Trade, whose HMAC keys expired in February 2025. The vector still
    // checks the primitive (HMAC-SHA256 under the base64-decoded secret).
    let v = vector("coinbase-exchange-hmac-DERIVED");
    let inputs = &v["inputs"];
    let secret = base64::engine::general_purpose::STANDARD
        .decode(inputs["secret_b64"].as_str().unwrap())
        .unwrap();
    let credential = TestSigner::new("k", KeyKind::Hmac, &secret);
    let message = format!(
        "{}{}{}{}",
        inputs["timestamp"].as_str().unwrap(),
        inputs["method"].as_str().unwrap(),
        inputs["request_path"].as_str().unwrap(),
        inputs["body"].as_str().unwrap()
    );
    assert_eq!(message, v["expected"]["string_to_sign"].as_str().unwrap());
    let tag = credential.hmac_sha256(message.as_bytes()).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(tag),
        v["expected"]["CB-ACCESS-SIGN"].as_str().unwrap()
    );
    assert_eq!(
        jwt(&credential, "GET", "/x", 0, "n").unwrap_err(),
        SignError::WrongKeyKind
    );
}

fn spec(method: Method, path: &str) -> &'static EndpointSpec {
    match route(&COINBASE, &method, path) {
        Route::Endpoint(spec) => spec,
        other => panic!("{method} {path}: {other:?}"),
    }
}

fn parse(
    method: Method,
    path: &str,
    query: &str,
    content_type: Option<&str>,
    body: &str,
) -> Result<ParsedCall, ParseError> {
    let endpoint = spec(method, path);
    COINBASE.parse_at(
        endpoint,
        path,
        &CallInput {
            query,
            content_type,
            body: body.as_bytes(),
            headers: &HeaderMap::new(),
        },
    )
}

const JSON: Option<&str> = Some("application/json");
const ORDERS: &str = "/api/v3/brokerage/orders";

fn post(path: &str, body: &str) -> Result<ParsedCall, ParseError> {
    parse(Method::POST, path, "", JSON, body)
}

fn reason(result: Result<ParsedCall, ParseError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

#[test]
fn parse_outcomes() {
    let limit = r#"{"client_order_id":"abc","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.001","limit_price":"60000.00","post_only":true}}}"#;
    let token = format!("kw_a_{}", "A".repeat(43));
    let cases: Vec<(&str, Result<ParsedCall, ParseError>, &str)> = vec![
        ("limit order", post(ORDERS, limit), "ok"),
        (
            "SDK's {} on a GET",
            parse(Method::GET, "/api/v3/brokerage/accounts", "", JSON, "{}"),
            "ok",
        ),
        (
            "any other GET body",
            parse(
                Method::GET,
                "/api/v3/brokerage/accounts",
                "",
                JSON,
                "{\"a\":1}",
            ),
            "body_not_allowed",
        ),
        (
            "{} without a JSON type",
            parse(Method::GET, "/api/v3/brokerage/accounts", "", None, "{}"),
            "body_not_allowed",
        ),
        (
            "form body",
            parse(
                Method::POST,
                ORDERS,
                "",
                Some("application/x-www-form-urlencoded"),
                limit,
            ),
            "unsupported_media_type",
        ),
        (
            "trailing data",
            post(ORDERS, &format!("{limit}{limit}")),
            "json_invalid",
        ),
        ("not an object", post(ORDERS, "[]"), "json_invalid"),
        (
            "duplicate nested key",
            post(
                ORDERS,
                &limit.replace(r#""post_only":true"#, r#""post_only":true,"base_size":"1""#),
            ),
            "json_duplicate_key",
        ),
        (
            "unknown top-level key",
            post(
                ORDERS,
                &limit.replace("{\"client", "{\"foo\":\"x\",\"client"),
            ),
            "param_unknown",
        ),
        (
            "unknown configuration key",
            post(ORDERS, &limit.replace("\"post_only\"", "\"iceberg\"")),
            "param_unknown",
        ),
        (
            "uncatalogued order type",
            post(
                ORDERS,
                &limit.replace("limit_limit_gtc", "trigger_bracket_gtc"),
            ),
            "param_invalid",
        ),
        (
            "size as a number",
            post(ORDERS, &limit.replace("\"0.001\"", "0.001")),
            "param_invalid",
        ),
        (
            "missing side",
            post(ORDERS, &limit.replace("\"side\":\"BUY\",", "")),
            "param_missing",
        ),
        (
            "two order types",
            post(
                ORDERS,
                &limit.replace(
                    "}}}",
                    "},\"limit_limit_fok\":{\"base_size\":\"1\",\"limit_price\":\"1\"}}}",
                ),
            ),
            "param_invalid",
        ),
        (
            "product spelling",
            post(ORDERS, &limit.replace("BTC-USD", "btc-usd")),
            "param_invalid",
        ),
        (
            "token in body",
            post(ORDERS, &limit.replace("\"abc\"", &format!("\"{token}\""))),
            "token_in_query",
        ),
        (
            "repeated array key",
            parse(
                Method::GET,
                "/api/v3/brokerage/orders/historical/batch",
                "product_ids=BTC-USD&product_ids=ETH-USD&order_status=OPEN",
                None,
                "",
            ),
            "ok",
        ),
        (
            "repeated scalar key",
            parse(
                Method::GET,
                "/api/v3/brokerage/orders/historical/batch",
                "limit=1&limit=2",
                None,
                "",
            ),
            "param_duplicate",
        ),
        (
            "unknown query key",
            parse(Method::GET, "/api/v3/brokerage/accounts", "foo=1", None, ""),
            "param_unknown",
        ),
        (
            "bad query value",
            parse(
                Method::GET,
                "/api/v3/brokerage/accounts",
                "limit=01",
                None,
                "",
            ),
            "param_invalid",
        ),
        (
            "SDK's True/False",
            parse(
                Method::GET,
                "/api/v3/brokerage/products",
                "get_tradability_status=False&get_all_products=False",
                None,
                "",
            ),
            "ok",
        ),
        (
            "candles need granularity",
            parse(
                Method::GET,
                "/api/v3/brokerage/products/BTC-USD/candles",
                "start=1&end=2",
                None,
                "",
            ),
            "param_missing",
        ),
        (
            "bad path product",
            parse(
                Method::GET,
                "/api/v3/brokerage/products/BTC_USD",
                "",
                None,
                "",
            ),
            "param_invalid",
        ),
        (
            "empty batch cancel",
            post(
                "/api/v3/brokerage/orders/batch_cancel",
                r#"{"order_ids":[]}"#,
            ),
            "param_invalid",
        ),
        (
            "huge batch cancel",
            post(
                "/api/v3/brokerage/orders/batch_cancel",
                &format!("{{\"order_ids\":[{}]}}", vec!["\"a\""; 101].join(",")),
            ),
            "batch_too_large",
        ),
        (
            "query on a POST",
            parse(Method::POST, ORDERS, "product_id=BTC-USD", JSON, limit),
            "param_unknown",
        ),
        (
            "token in query",
            parse(
                Method::GET,
                "/api/v3/brokerage/accounts",
                &format!("cursor={token}"),
                None,
                "",
            ),
            "token_in_query",
        ),
        (
            "raw space in query",
            parse(
                Method::GET,
                "/api/v3/brokerage/accounts",
                "cursor=a b",
                None,
                "",
            ),
            "param_invalid",
        ),
    ];
    for (name, result, expected) in cases {
        assert_eq!(reason(result), expected, "{name}");
    }
}

#[test]
fn forwarded_bytes_are_keywards_own() {
    let sdk = r#"{"client_order_id": "30bdc41c16404a5ca30761a25778a061", "product_id": "BTC-USD", "side": "BUY", "order_configuration": {"limit_limit_gtc": {"base_size": "0.001", "limit_price": "60000.00", "post_only": true}}}"#;
    let call = post(ORDERS, sdk).unwrap();
    assert_eq!(
        call.body.as_deref(),
        Some(
            r#"{"client_order_id":"30bdc41c16404a5ca30761a25778a061","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.001","limit_price":"60000.00","post_only":true}}}"#
        )
    );
    let call = parse(
        Method::GET,
        "/api/v3/brokerage/orders/historical/batch",
        "order_status=OPEN&product_ids=BTC-USD&product_ids=ETH-USD&limit=10",
        JSON,
        "{}",
    )
    .unwrap();
    assert!(call.body.is_none(), "the SDK's {{}} is not forwarded");
    let (path, query) = target(&call);
    assert_eq!(path, "/api/v3/brokerage/orders/historical/batch");
    assert_eq!(
        query,
        "product_ids=BTC-USD&product_ids=ETH-USD&order_status=OPEN&limit=10"
    );
    assert_eq!(call.intent.symbols.len(), 2);
    let call = parse(
        Method::GET,
        "/api/v3/brokerage/orders/historical/0b5c6a3e-6f7e",
        "",
        None,
        "",
    )
    .unwrap();
    assert_eq!(
        call.endpoint.key,
        "GET /api/v3/brokerage/orders/historical/{order_id}"
    );
    assert_eq!(
        target(&call).0,
        "/api/v3/brokerage/orders/historical/0b5c6a3e-6f7e"
    );
    let call = parse(
        Method::GET,
        "/api/v3/brokerage/products",
        "get_all_products=False",
        None,
        "",
    )
    .unwrap();
    assert_eq!(target(&call).1, "get_all_products=false");
}

#[test]
fn intents_of_every_order_bearing_endpoint() {
    let order = |config: &str| {
        post(
            ORDERS,
            &format!(
                r#"{{"client_order_id":"c1","product_id":"BTC-USD","side":"SELL","order_configuration":{config}}}"#
            ),
        )
        .unwrap()
        .intent
    };
    let market_quote = post(
        ORDERS,
        r#"{"client_order_id":"c","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"50"}}}"#,
    )
    .unwrap()
    .intent;
    let [o] = market_quote.orders.as_slice() else {
        panic!()
    };
    assert_eq!(o.size, Size::Quote("50".parse().unwrap()));
    assert_eq!(o.execution, Execution::Market);
    assert_eq!(o.side, Side::Buy);
    assert_eq!(&*o.order_type, "market_market_ioc");
    assert!(!o.margin);

    let intent = order(r#"{"market_market_ioc":{"base_size":"0.01"}}"#);
    assert_eq!(intent.orders[0].size, Size::Base("0.01".parse().unwrap()));
    let intent = order(
        r#"{"limit_limit_gtd":{"base_size":"0.01","limit_price":"61000","end_time":"2030-01-01T00:00:00Z","post_only":false}}"#,
    );
    assert_eq!(intent.orders[0].price, Some("61000".parse().unwrap()));
    assert_eq!(&*intent.orders[0].order_type, "limit_limit_gtd");
    let intent = order(
        r#"{"stop_limit_stop_limit_gtc":{"base_size":"0.01","limit_price":"59000","stop_price":"59500","stop_direction":"STOP_DIRECTION_STOP_DOWN"}}"#,
    );
    assert_eq!(intent.orders[0].execution, Execution::StopLimit);
    assert_eq!(intent.orders[0].trigger, Some("59500".parse().unwrap()));
    assert_eq!(intent.symbols.len(), 1);
    // Leverage borrows.
    let leveraged = post(
        ORDERS,
        r#"{"client_order_id":"c","product_id":"BTC-USD","side":"BUY","order_configuration":{"sor_limit_ioc":{"base_size":"1","limit_price":"1"}},"leverage":"3"}"#,
    )
    .unwrap()
    .intent;
    assert!(leveraged.orders[0].margin);
    // Preview: the same order without client_order_id.
    let preview = post(
        "/api/v3/brokerage/orders/preview",
        r#"{"product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_fok":{"base_size":"1","limit_price":"1"}}}"#,
    )
    .unwrap()
    .intent;
    assert_eq!(preview.orders.len(), 1);
    // Edits: modelled as both sides, amend, and the product is required.
    for path in [
        "/api/v3/brokerage/orders/edit",
        "/api/v3/brokerage/orders/edit_preview",
    ] {
        let edit = post(
            path,
            r#"{"order_id":"abc-1","price":"60500","size":"0.002","product_id":"BTC-USD"}"#,
        )
        .unwrap();
        assert_eq!(
            edit.body.as_deref(),
            Some(r#"{"order_id":"abc-1","price":"60500","size":"0.002"}"#)
        );
        assert_eq!(edit.intent.orders.len(), 1);
        assert!(edit.intent.orders[0].amend && edit.intent.orders[0].price.is_some());
        let named = &edit.refs.amends[0].order;
        assert_eq!(named.id.as_deref(), Some("abc-1"));
        assert_eq!(named.symbol.as_ref().map(|s| s.as_str()), Some("BTC-USD"));
        // Without a product the order is named by its id alone; keyward takes the
        // product from its record.
        let unnamed = post(
            path,
            r#"{"order_id":"abc-1","price":"60500","size":"0.002"}"#,
        )
        .unwrap();
        assert_eq!(unnamed.refs.amends[0].order.symbol, None);
        assert!(unnamed.intent.symbols.is_empty());
    }
    let cancel = post(
        "/api/v3/brokerage/orders/batch_cancel",
        r#"{"order_ids":["a","b"]}"#,
    )
    .unwrap();
    assert!(cancel.intent.orders.is_empty());
    let ids: Vec<Option<&str>> = cancel
        .refs
        .cancels
        .iter()
        .map(|r| r.id.as_deref())
        .collect();
    assert_eq!(ids, [Some("a"), Some("b")]);
    // The ids are references, not top-level fields of the body: the parameters hold
    // exactly the body's scalar members, and `order_ids` is a list (fuzz input
    // `regressions/venue_coinbase/batch-cancel-ids-taken-as-fields`).
    assert!(cancel.params.is_empty(), "{:?}", cancel.params);
    // Every order-bearing endpoint is covered above.
    let bearing: Vec<&str> = catalogue::ENDPOINTS
        .iter()
        .filter(|e| e.bears_orders())
        .map(|e| e.key)
        .collect();
    assert_eq!(
        bearing,
        [
            "POST /api/v3/brokerage/orders",
            "POST /api/v3/brokerage/orders/preview",
            "POST /api/v3/brokerage/orders/edit",
            "POST /api/v3/brokerage/orders/edit_preview"
        ]
    );
}

#[test]
fn floor_and_catalogue_are_disjoint_and_the_floor_covers_section_10() {
    for spec in catalogue::ENDPOINTS.iter() {
        assert!(
            COINBASE.floor(&spec.method, spec.path).is_none(),
            "{}",
            spec.key
        );
        assert!(DETAILS.iter().any(|d| d.key == spec.key), "{}", spec.key);
    }
    assert_eq!(catalogue::ENDPOINTS.len(), DETAILS.len());
    for path in [
        "/api/v3/brokerage/portfolios/move_funds",
        "/api/v3/brokerage/convert/quote",
        "/api/v3/brokerage/convert/trade/abc",
        "/api/v3/brokerage/cfm/sweeps/schedule",
        "/api/v3/brokerage/intx/allocate",
        "/api/v3/brokerage/intx/multi_asset_collateral",
        "/v2/accounts/abc/transactions",
        "/v2/accounts/abc/withdrawals",
        "/v2/accounts/abc/deposits",
        "/v2/accounts/abc/addresses",
        "/v2/accounts",
    ] {
        assert!(
            matches!(route(&COINBASE, &Method::POST, path), Route::Floor(_)),
            "{path}"
        );
    }
    assert!(matches!(
        route(
            &COINBASE,
            &Method::GET,
            "/api/v3/brokerage/orders/historical/a/b"
        ),
        Route::Unknown
    ));
    assert!(matches!(
        route(&COINBASE, &Method::DELETE, ORDERS),
        Route::MethodNotAllowed
    ));
}

#[test]
fn responses_are_read() {
    assert_eq!(
        COINBASE.server_time_ms(
            br#"{"iso":"x","epochSeconds":"1700000000","epochMillis":"1700000000123"}"#
        ),
        Some(1_700_000_000_123)
    );
    let quote = COINBASE
        .parse_quote(br#"{"pricebooks":[{"product_id":"BTC-USD","bids":[{"price":"59990","size":"1"}],"asks":[{"price":"60010","size":"1"}],"time":"t"}]}"#)
        .unwrap();
    assert_eq!(quote.bid, "59990".parse().unwrap());
    assert!(COINBASE.parse_quote(br#"{"pricebooks":[]}"#).is_none());
    let call = post(
        ORDERS,
        r#"{"client_order_id":"c","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"5"}}}"#,
    )
    .unwrap();
    let outcome = COINBASE.outcome(
        &call,
        StatusCode::OK,
        br#"{"success":true,"success_response":{"order_id":"o1","product_id":"BTC-USD","side":"BUY","client_order_id":"c"}}"#,
    );
    assert!(matches!(&outcome.legs[..], [LegResult::Placed(p)] if p.id.as_deref() == Some("o1")));
    let refused = COINBASE.outcome(
        &call,
        StatusCode::OK,
        br#"{"success":false,"failure_reason":"UNKNOWN_FAILURE_REASON","error_response":{"error":"INSUFFICIENT_FUND"}}"#,
    );
    assert_eq!(refused.legs, vec![LegResult::Rejected]);
    assert!(COINBASE.check_symbol("BTC-USD").is_ok());
    assert!(COINBASE.check_symbol("BTCUSD").is_err());
    let (key, query) = COINBASE.housekeeping(Housekeeping::Quote, &Symbol::new("BTC-USD").unwrap());
    let spec = COINBASE.catalogue().by_key(key).unwrap();
    let call = parse(spec.method.clone(), spec.path, &query, None, "").unwrap();
    assert_eq!(call.intent.symbols.len(), 1);
    let (key, query) =
        COINBASE.housekeeping(Housekeeping::OpenOrders, &Symbol::new("BTC-USD").unwrap());
    assert!(
        parse(
            Method::GET,
            "/api/v3/brokerage/orders/historical/batch",
            &query,
            None,
            ""
        )
        .is_ok()
    );
    assert_eq!(key, "GET /api/v3/brokerage/orders/historical/batch");
}

#[test]
fn an_order_is_looked_up_and_read_back_for_adoption() {
    let reference = OrderRef {
        id: Some("abc-1".to_owned()),
        ..OrderRef::default()
    };
    let lookup = COINBASE.order_lookup(&reference).unwrap();
    assert_eq!(
        lookup.path.as_deref(),
        Some("/api/v3/brokerage/orders/historical/abc-1")
    );
    let order = COINBASE
        .looked_up_order(br#"{"order":{"order_id":"abc-1","product_id":"ETH-USD","side":"SELL","client_order_id":"c","status":"OPEN","order_configuration":{"limit_limit_gtc":{"base_size":"0.1","limit_price":"3000.00","post_only":false}}}}"#)
        .unwrap();
    assert_eq!(order.symbol.as_str(), "ETH-USD");
    assert_eq!((order.side, order.open), (Side::Sell, true));
    assert_eq!(order.size, Size::Base("0.1".parse().unwrap()));
}
