//! Parser and catalogue tests for Binance: every order shape, every refusal.

use std::collections::HashSet;

use http::Method;
use keyward_policy::{EndpointClass, Execution, Side, Size};

use super::{SPOT, USDM};
use crate::{CallInput, ParseError, ParsedCall, Route, Venue, route};

fn call(
    venue: &dyn Venue,
    method: Method,
    path: &str,
    query: &str,
    body: &str,
) -> Result<ParsedCall, ParseError> {
    let Route::Endpoint(endpoint) = route(venue, &method, path) else {
        panic!("{method} {path} is not catalogued");
    };
    venue.parse(
        endpoint,
        &CallInput {
            query,
            content_type: (!body.is_empty()).then_some("application/x-www-form-urlencoded"),
            body: body.as_bytes(),
            headers: &http::HeaderMap::new(),
        },
    )
}

fn spot(method: Method, path: &str, body: &str) -> Result<ParsedCall, ParseError> {
    call(&SPOT, method, path, "", body)
}

fn reason(result: Result<ParsedCall, ParseError>) -> &'static str {
    result.map(|_| "ok").unwrap_or_else(|e| e.reason())
}

#[test]
fn catalogues_are_consistent_and_disjoint_from_the_floor() {
    for venue in [&SPOT, &USDM] {
        let mut keys = HashSet::new();
        for spec in venue.catalogue().entries() {
            assert!(keys.insert(spec.key), "{} twice", spec.key);
            assert_eq!(spec.key, format!("{} {}", spec.method, spec.path));
            assert!(!spec.class.is_floor());
            assert!(
                venue.floor(&spec.method, spec.path).is_none(),
                "{} is on the floor",
                spec.key
            );
            // Under /sapi/ only the reviewed reads, and those only as GET.
            if spec.path.starts_with("/sapi/") {
                assert!(
                    super::SERVED_SAPI.contains(&spec.path) && spec.method == Method::GET,
                    "{} is not a reviewed /sapi/ read",
                    spec.key
                );
                assert!(
                    matches!(spec.class, EndpointClass::Market | EndpointClass::Read),
                    "{}",
                    spec.key
                );
            }
            for prefix in ["/papi/", "/wapi/"] {
                assert!(
                    !spec.path.starts_with(prefix),
                    "{} is outside every class",
                    spec.key
                );
            }
            let mut names = HashSet::new();
            for param in spec.params {
                assert!(
                    names.insert(param.name),
                    "{}: {} twice",
                    spec.key,
                    param.name
                );
                assert!(
                    !super::AUTH_PARAMS.contains(&param.name),
                    "{}: {}",
                    spec.key,
                    param.name
                );
            }
            assert_eq!(
                spec.bears_orders(),
                spec.class == EndpointClass::Trade,
                "{}",
                spec.key
            );
        }
    }
}

#[test]
fn the_floor_covers_the_documented_money_and_key_endpoints() {
    let money = [
        "/sapi/v1/capital/withdraw/apply",
        "/sapi/v1/localentity/withdraw/apply",
        "/sapi/v1/localentity/broker/withdraw/apply",
        "/sapi/v1/asset/transfer",
        "/sapi/v1/asset/dust",
        "/sapi/v1/sub-account/universalTransfer",
        "/sapi/v1/sub-account/futures/transfer",
        "/sapi/v1/managed-subaccount/withdraw",
        "/sapi/v1/giftcard/createCode",
        "/sapi/v1/convert/acceptQuote",
        "/fapi/v1/convert/acceptQuote",
        "/sapi/v1/margin/borrow-repay",
        "/sapi/v1/simple-earn/flexible/subscribe",
        "/sapi/v1/loan/borrow",
        "/sapi/v1/broker/universalTransfer",
        "/api/v3/userDataStream",
        "/sapi/v1/userDataStream",
        "/papi/v1/bnb-transfer",
        "/sapi/v1/account/enableFastWithdrawSwitch",
    ];
    let keys = [
        "/sapi/v1/sub-account/subAccountApi",
        "/sapi/v2/sub-account/subAccountApi/ipRestriction",
        "/sapi/v1/sub-account/subAccountApi/ipRestriction/ipList",
        "/sapi/v1/margin/apiKey",
        "/sapi/v1/broker/subAccountApi/permission/universalTransfer",
    ];
    for venue in [&SPOT, &USDM] {
        for path in money {
            assert_eq!(
                venue.floor(&Method::POST, path),
                Some(EndpointClass::MoneyMovement),
                "{path}"
            );
        }
        for path in keys {
            assert_eq!(
                venue.floor(&Method::POST, path),
                Some(EndpointClass::KeyManagement),
                "{path}"
            );
        }
    }
    // The reviewed reads are served as GET only; everything else under their
    // prefixes stays on the floor, and the rest of /sapi/ is not served.
    for venue in [&SPOT, &USDM] {
        for path in super::SERVED_SAPI {
            assert!(
                matches!(route(venue, &Method::GET, path), Route::Endpoint(_)),
                "{path}"
            );
            assert!(
                !matches!(route(venue, &Method::POST, path), Route::Endpoint(_)),
                "{path}"
            );
        }
        assert!(matches!(
            route(venue, &Method::GET, "/sapi/v1/capital/withdraw/history"),
            Route::Floor(_)
        ));
        assert!(matches!(
            route(venue, &Method::GET, "/sapi/v1/margin/allOrders"),
            Route::Floor(_)
        ));
        assert!(matches!(
            route(venue, &Method::GET, "/sapi/v1/account/snapshot"),
            Route::Unknown
        ));
    }
    assert!(matches!(
        route(&SPOT, &Method::PATCH, "/api/v3/order"),
        Route::MethodNotAllowed
    ));
}

#[test]
fn single_orders_become_intents_with_exact_decimals() {
    let c = spot(
        Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=0.00100000&price=59000.5&stopPrice=59100&timestamp=1&signature=x&recvWindow=60000",
    )
    .unwrap();
    assert_eq!(c.stripped, vec!["timestamp", "signature", "recvWindow"]);
    let order = &c.intent.orders[0];
    assert_eq!(order.side, Side::Sell);
    assert_eq!(order.execution, Execution::StopLimit);
    assert_eq!(order.size, Size::Base("0.001".parse().unwrap()));
    assert_eq!(order.price, Some("59000.5".parse().unwrap()));
    assert_eq!(order.trigger, Some("59100".parse().unwrap()));
    // The validated spelling is what gets signed.
    assert!(c.params.contains(&("quantity", "0.00100000".to_owned())));
    let names: Vec<&str> = c.params.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "symbol",
            "side",
            "type",
            "timeInForce",
            "quantity",
            "price",
            "stopPrice"
        ]
    );

    let quote = spot(
        Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=50",
    )
    .unwrap();
    assert_eq!(
        quote.intent.orders[0].size,
        Size::Quote("50".parse().unwrap())
    );
    let trailing = spot(
        Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT&side=SELL&type=STOP_LOSS&quantity=1&trailingDelta=100",
    )
    .unwrap();
    assert_eq!(
        trailing.intent.orders[0].execution,
        Execution::TrailingMarket
    );
}

#[test]
fn ambiguous_sizes_are_refused() {
    let both = "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&quoteOrderQty=50";
    assert_eq!(
        reason(spot(Method::POST, "/api/v3/order", both)),
        "param_invalid"
    );
    let neither = "symbol=BTCUSDT&side=BUY&type=MARKET";
    assert_eq!(
        reason(spot(Method::POST, "/api/v3/order", neither)),
        "param_missing"
    );
}

#[test]
fn order_lists_check_every_leg() {
    let oco = spot(
        Method::POST,
        "/api/v3/orderList/oco",
        "symbol=BTCUSDT&side=SELL&quantity=0.01&aboveType=LIMIT_MAKER&abovePrice=70000&belowType=STOP_LOSS_LIMIT&belowPrice=50000&belowStopPrice=50100&belowTimeInForce=GTC",
    )
    .unwrap();
    let types: Vec<&str> = oco.intent.orders.iter().map(|o| &*o.order_type).collect();
    assert_eq!(types, ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]);

    let oto = spot(
        Method::POST,
        "/api/v3/orderList/oto",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=60000&workingQuantity=0.001&workingTimeInForce=GTC&pendingType=MARKET&pendingSide=SELL&pendingQuantity=100",
    )
    .unwrap();
    assert_eq!(oto.intent.orders.len(), 2);
    assert_eq!(oto.intent.orders[1].execution, Execution::Market);
    assert_eq!(
        oto.intent.orders[1].size,
        Size::Base("100".parse().unwrap())
    );

    let otoco = "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=60000&workingQuantity=0.001&pendingSide=SELL&pendingQuantity=0.001&pendingAboveType=LIMIT_MAKER&pendingAbovePrice=65000";
    let two = spot(Method::POST, "/api/v3/orderList/otoco", otoco).unwrap();
    assert_eq!(two.intent.orders.len(), 2, "the below leg is optional");
    let three = spot(
        Method::POST,
        "/api/v3/orderList/otoco",
        &format!("{otoco}&pendingBelowType=STOP_LOSS&pendingBelowStopPrice=55000"),
    )
    .unwrap();
    assert_eq!(three.intent.orders.len(), 3);

    let replace = spot(
        Method::POST,
        "/api/v3/order/cancelReplace",
        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId=1",
    )
    .unwrap();
    assert_eq!(replace.intent.orders[0].execution, Execution::Market);
}

#[test]
fn futures_batches_are_parsed_strictly_and_reserialised() {
    let list = r#"[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.001","price":"60000"},{"price":"3000","quantity":"0.01","type":"LIMIT","side":"SELL","symbol":"ETHUSDT","timeInForce":"GTC"}]"#;
    let body = format!(
        "batchOrders={}",
        crate::form::encode_pairs([("", list)]).trim_start_matches('=')
    );
    let c = call(&USDM, Method::POST, "/fapi/v1/batchOrders", "", &body).unwrap();
    assert_eq!(c.intent.orders.len(), 2);
    assert_eq!(c.intent.symbols.len(), 2);
    let canonical = &c.params[0].1;
    assert_eq!(
        canonical,
        r#"[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":"0.001","price":"60000","timeInForce":"GTC"},{"symbol":"ETHUSDT","side":"SELL","type":"LIMIT","quantity":"0.01","price":"3000","timeInForce":"GTC"}]"#
    );

    let encode = |json: &str| {
        format!(
            "batchOrders={}",
            crate::form::encode_pairs([("", json)]).trim_start_matches('=')
        )
    };
    let cases = [
        (
            r#"[{"symbol":"BTCUSDT","sym\u0062ol":"DMGUSDT","side":"BUY","type":"MARKET","quantity":"1"}]"#,
            "json_duplicate_key",
        ),
        (
            r#"[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":0.001,"price":"1"}]"#,
            "param_invalid",
        ),
        (
            r#"[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":"1","price":"1","priceMatch":"OPPONENT"}]"#,
            "param_unknown",
        ),
        (r#"[]"#, "json_invalid"),
        (r#"{"symbol":"BTCUSDT"}"#, "json_invalid"),
        (r#"[{"symbol":"BTCUSDT"}] x"#, "json_invalid"),
        (
            r#"[{"symbol":"BTCUSDT","type":"LIMIT","quantity":"1","price":"1"}]"#,
            "param_missing",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(
            reason(call(
                &USDM,
                Method::POST,
                "/fapi/v1/batchOrders",
                "",
                &encode(json)
            )),
            want,
            "{json}"
        );
    }
    let element = r#"{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":"1","price":"1"}"#;
    let six = format!("[{}]", [element; 6].join(","));
    assert_eq!(
        reason(call(
            &USDM,
            Method::POST,
            "/fapi/v1/batchOrders",
            "",
            &encode(&six)
        )),
        "batch_too_large"
    );
}

#[test]
fn futures_amends_and_whole_position_closes_are_modelled() {
    let amend = call(
        &USDM,
        Method::PUT,
        "/fapi/v1/order",
        "",
        "symbol=BTCUSDT&side=BUY&quantity=0.5&price=61000&orderId=7",
    )
    .unwrap();
    let order = &amend.intent.orders[0];
    assert!(order.amend);
    assert_eq!(&*order.order_type, "LIMIT");
    let close = call(
        &USDM,
        Method::POST,
        "/fapi/v1/order",
        "",
        "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&stopPrice=50000&closePosition=true",
    )
    .unwrap();
    assert_eq!(close.intent.orders[0].size, Size::WholePosition);
    let price_match = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&priceMatch=OPPONENT_5";
    assert_eq!(
        reason(call(&USDM, Method::POST, "/fapi/v1/order", "", price_match)),
        "param_unknown"
    );
}

#[test]
fn grammar_refusals_have_their_reasons() {
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";
    type Case<'a> = (Method, &'a str, &'a str, &'a str, Option<&'a str>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            Method::POST,
            "/api/v3/order",
            "symbol=DMGUSDT",
            order,
            None,
            "param_in_query_and_body",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            "symbol=BTCUSDT&symbol=DMGUSDT&side=BUY&type=MARKET&quantity=1",
            None,
            "param_duplicate",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            "symbol=BTCUSDT&Symbol=DMGUSDT&side=BUY&type=MARKET&quantity=1",
            None,
            "param_unknown",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            "symbol=BTCUSDT%0ADMGUSDT&side=BUY&type=MARKET&quantity=1",
            None,
            "param_invalid",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            "symbol=BTCUSDT;symbol=DMGUSDT&side=BUY&type=MARKET&quantity=1",
            None,
            "param_invalid",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1e3&price=1",
            None,
            "param_invalid",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            "symbol=BTCUSDT&side=buy&type=LIMIT&quantity=1&price=1",
            None,
            "param_invalid",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1&pegPriceType=PRIMARY_PEG",
            None,
            "param_unknown",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            order,
            Some("text/plain"),
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            order,
            Some("application/x-www-form-urlencoded; charset=utf-16"),
            "unsupported_media_type",
        ),
        (
            Method::POST,
            "/api/v3/order",
            "",
            order,
            Some("application/json"),
            "unsupported_media_type",
        ),
        (
            Method::GET,
            "/api/v3/account",
            "",
            "omitZeroBalances=true",
            None,
            "body_not_allowed",
        ),
        (
            Method::GET,
            "/api/v3/account",
            "apiKey=kw_grid_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "",
            None,
            "token_in_query",
        ),
        (
            Method::GET,
            "/api/v3/myTrades",
            "",
            "",
            None,
            "param_missing",
        ),
    ];
    for (method, path, query, body, content_type, want) in cases {
        let Route::Endpoint(endpoint) = route(&SPOT, &method, path) else {
            panic!("{path}");
        };
        let content_type =
            content_type.or((!body.is_empty()).then_some("application/x-www-form-urlencoded"));
        let result = SPOT.parse(
            endpoint,
            &CallInput {
                query,
                content_type,
                body: body.as_bytes(),
                headers: &http::HeaderMap::new(),
            },
        );
        assert_eq!(reason(result), want, "{method} {path}?{query} {body}");
    }
    let ok_charset = SPOT.parse(
        route_endpoint("/api/v3/order"),
        &CallInput {
            query: "",
            content_type: Some("application/x-www-form-urlencoded; charset=UTF-8"),
            body: order.as_bytes(),
            headers: &http::HeaderMap::new(),
        },
    );
    assert!(ok_charset.is_ok());
    let flood: String = (0..100).map(|i| format!("a{i}=1&")).collect::<String>() + order;
    assert_eq!(
        reason(spot(Method::POST, "/api/v3/order", &flood)),
        "param_invalid"
    );
}

fn route_endpoint(path: &str) -> &'static crate::EndpointSpec {
    match route(&SPOT, &Method::POST, path) {
        Route::Endpoint(e) => e,
        _ => panic!("{path}"),
    }
}

#[test]
fn read_requests_name_their_symbols() {
    let c = call(
        &SPOT,
        Method::GET,
        "/api/v3/myTrades",
        "symbol=DMGUSDT&limit=10",
        "",
    )
    .unwrap();
    assert_eq!(c.intent.symbols.len(), 1);
    assert_eq!(c.intent.symbols[0].as_str(), "DMGUSDT");
    let c = call(
        &SPOT,
        Method::GET,
        "/api/v3/ticker/price",
        r#"symbols=%5B%22BTCUSDT%22%2C%22ETHUSDT%22%5D"#,
        "",
    )
    .unwrap();
    assert_eq!(c.intent.symbols.len(), 2);
}

#[test]
fn requests_weigh_what_binance_documents() {
    let weight = |venue: &dyn Venue, path: &str, query: &str| {
        venue.weight(&call(venue, Method::GET, path, query, "").unwrap())
    };
    for (limit, expected) in [
        ("5", 5),
        ("100", 5),
        ("500", 25),
        ("1000", 50),
        ("5000", 250),
    ] {
        let query = format!("symbol=BTCUSDT&limit={limit}");
        assert_eq!(weight(&SPOT, "/api/v3/depth", &query), expected, "{limit}");
    }
    assert_eq!(weight(&SPOT, "/api/v3/depth", "symbol=BTCUSDT"), 5);
    assert_eq!(weight(&SPOT, "/api/v3/openOrders", "symbol=BTCUSDT"), 6);
    assert_eq!(weight(&SPOT, "/api/v3/openOrders", ""), 80);
    assert_eq!(weight(&SPOT, "/api/v3/exchangeInfo", ""), 20);
    assert_eq!(weight(&SPOT, "/api/v3/ticker/24hr", ""), 80);
    assert_eq!(weight(&SPOT, "/api/v3/ticker/24hr", "symbol=BTCUSDT"), 2);
    assert_eq!(
        weight(&USDM, "/fapi/v1/depth", "symbol=BTCUSDT&limit=1000"),
        20
    );
    assert_eq!(weight(&USDM, "/fapi/v1/openOrders", ""), 40);
    let order = spot(
        Method::POST,
        "/api/v3/order",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1",
    )
    .unwrap();
    assert_eq!(SPOT.weight(&order), 1);
}

#[test]
fn each_product_family_has_its_production_host() {
    assert_eq!(SPOT.family_upstream("/api/v3/exchangeInfo"), None);
    assert_eq!(SPOT.family_upstream("/sapi/v1/capital/config/getall"), None);
    assert_eq!(
        SPOT.family_upstream("/fapi/v1/exchangeInfo"),
        Some("https://fapi.binance.com")
    );
    assert_eq!(
        SPOT.family_upstream("/dapi/v1/exchangeInfo"),
        Some("https://dapi.binance.com")
    );
    assert_eq!(
        SPOT.family_upstream("/eapi/v1/exchangeInfo"),
        Some("https://eapi.binance.com")
    );
    assert_eq!(USDM.family_upstream("/fapi/v1/order"), None);
    assert_eq!(
        USDM.family_upstream("/api/v3/exchangeInfo"),
        Some("https://api.binance.com")
    );
    assert_eq!(
        USDM.family_upstream("/sapi/v1/capital/config/getall"),
        Some("https://api.binance.com")
    );
    // Every catalogued path belongs to a family with a host.
    for venue in [&SPOT, &USDM] {
        for spec in venue.catalogue().entries() {
            assert!(
                super::FAMILIES
                    .iter()
                    .any(|(prefix, _)| spec.path.starts_with(prefix)),
                "{}",
                spec.key
            );
        }
    }
}
