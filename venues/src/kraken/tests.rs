//! Kraken adapter tests: the signing vectors, every parse outcome, the orders of
//! every order-bearing endpoint, the floor, and the refusal envelope.

use crate::LegResult;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use keyward_policy::{EndpointClass, Execution, Permit, Side, Size};

use super::{KRAKEN, catalogue};
use crate::KeyKind;
use crate::Signer as _;
use crate::test_signer::TestSigner;
use crate::{CallInput, Housekeeping, ParseError, ParsedCall, Route, SignContext, Venue, route};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

fn parse_as(
    method: Method,
    path: &str,
    query: &str,
    content_type: Option<&str>,
    body: &str,
) -> Result<ParsedCall, ParseError> {
    let Route::Endpoint(endpoint) = route(&KRAKEN, &method, path) else {
        panic!("{method} {path} is not catalogued");
    };
    KRAKEN.parse(
        endpoint,
        &CallInput {
            query,
            content_type,
            body: body.as_bytes(),
            headers: &HeaderMap::new(),
        },
    )
}

fn private(method: &str, body: &str) -> Result<ParsedCall, ParseError> {
    parse_as(
        Method::POST,
        &format!("/0/private/{method}"),
        "",
        Some(FORM),
        body,
    )
}

fn private_json(method: &str, body: &str) -> Result<ParsedCall, ParseError> {
    parse_as(
        Method::POST,
        &format!("/0/private/{method}"),
        "",
        Some(JSON),
        body,
    )
}

fn reason(result: Result<ParsedCall, ParseError>) -> &'static str {
    result.map(|_| "ok").unwrap_or_else(|e| e.reason())
}

fn permit(call: &ParsedCall) -> Permit {
    crate::testkit::permit(&KRAKEN, call)
}

fn vectors() -> Vec<serde_json::Value> {
    crate::testkit::vectors("kraken")
}

fn input<'a>(vector: &'a serde_json::Value, key: &str) -> &'a str {
    vector["inputs"][key].as_str().unwrap()
}

/// Every Kraken vector. Spot REST ones go the whole way: the bot's request is parsed,
/// permitted and signed with the vector's nonce, and the bytes sent and the API-Sign
/// must be the vector's. Futures ones (a product keyward does not sign for) check
/// the base64-keyed HMAC-SHA512 primitive under Futures' message layout.
#[test]
fn every_kraken_vector_reproduces() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 4, "Kraken vectors in vectors.json");
    for vector in vectors {
        let id = vector["id"].as_str().unwrap();
        if id.starts_with("kraken-spot-rest") {
            let postdata = input(&vector, "postdata");
            let nonce: u64 = input(&vector, "nonce").parse().unwrap();
            let path = input(&vector, "uri_path");
            let method = path.rsplit('/').next().unwrap();
            let json = postdata.starts_with('{');
            let call = if json {
                private_json(method, postdata)
            } else {
                private(method, postdata)
            }
            .unwrap();
            assert_eq!(call.stripped, vec!["nonce"], "{id}");
            let credential = TestSigner::new(
                "KEY",
                KeyKind::Hmac,
                input(&vector, "secret_b64").as_bytes(),
            );
            let outbound = KRAKEN
                .sign(
                    &call,
                    &permit(&call),
                    SignContext {
                        credential: &credential,
                        timestamp_ms: 0,
                        recv_window_ms: 0,
                        nonce,
                    },
                )
                .unwrap();
            assert_eq!(outbound.path_and_query, path, "{id}");
            assert_eq!(String::from_utf8(outbound.body).unwrap(), postdata, "{id}");
            let header = |name: &str| {
                outbound
                    .headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.to_str().unwrap().to_owned())
                    .unwrap()
            };
            assert_eq!(header("api-sign"), vector["expected"]["api_sign"], "{id}");
            assert_eq!(header("api-key"), "KEY");
            assert_eq!(header("content-type"), if json { JSON } else { FORM });
            assert!(
                outbound
                    .headers
                    .iter()
                    .all(|(n, v)| n == "content-type" || v.is_sensitive())
            );
            if let Some(inner) = vector["expected"]["sha256_inner_hex"].as_str() {
                let digest = ring::digest::digest(
                    &ring::digest::SHA256,
                    format!("{nonce}{postdata}").as_bytes(),
                );
                assert_eq!(crate::hex(digest.as_ref()), inner, "{id}");
            }
        } else {
            // The published Futures secret is 87 characters; decode it leniently as
            // the vector says, and hand keyward the canonical base64 of those bytes.
            let lenient = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_allow_trailing_bits(true)
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let raw = lenient
                .decode(input(&vector, "secret_b64_as_published"))
                .unwrap();
            assert_eq!(raw.len(), 65, "{id}");
            let secret = base64::engine::general_purpose::STANDARD.encode(&raw);
            let credential = TestSigner::new("KEY", KeyKind::Hmac, secret.as_bytes());
            let message = format!(
                "{}{}{}",
                input(&vector, "postData"),
                input(&vector, "nonce"),
                input(&vector, "endpointPath")
            );
            let digest = ring::digest::digest(&ring::digest::SHA256, message.as_bytes());
            let tag = credential.hmac_sha512_base64_key(digest.as_ref()).unwrap();
            assert_eq!(
                base64::engine::general_purpose::STANDARD.encode(tag),
                vector["expected"]["authent"],
                "{id}"
            );
        }
    }
}

#[test]
fn signing_uses_keywards_nonce_and_refuses_bad_secrets() {
    let call = private(
        "AddOrder",
        "nonce=1&otp=123456&ordertype=limit&type=buy&volume=0.001&pair=XBTUSD&price=60000",
    )
    .unwrap();
    assert_eq!(call.stripped, vec!["nonce", "otp"]);
    let credential = TestSigner::new("KEY", KeyKind::Hmac, b"a2V5");
    let context = |nonce| SignContext {
        credential: &credential,
        timestamp_ms: 0,
        recv_window_ms: 0,
        nonce,
    };
    let outbound = KRAKEN
        .sign(&call, &permit(&call), context(1_800_000_000_000))
        .unwrap();
    assert_eq!(
        String::from_utf8(outbound.body).unwrap(),
        "nonce=1800000000000&ordertype=limit&pair=XBTUSD&price=60000&type=buy&volume=0.001"
    );
    assert!(KRAKEN.sign(&call, &permit(&call), context(0)).is_err());
    let bad = TestSigner::new("KEY", KeyKind::Hmac, b"not base64!");
    assert!(KRAKEN.check_credential(&bad).is_err());
    assert!(KRAKEN.check_credential(&credential).is_ok());
    assert_eq!(
        KRAKEN
            .sign(
                &call,
                &permit(&call),
                SignContext {
                    credential: &bad,
                    timestamp_ms: 0,
                    recv_window_ms: 0,
                    nonce: 5
                }
            )
            .map(|_| ()),
        Err(crate::SignError::SecretNotBase64)
    );
    // A permit for another endpoint signs nothing.
    let other = private("Balance", "").unwrap();
    assert!(KRAKEN.sign(&call, &permit(&other), context(7)).is_err());
    // An empty private body still carries the nonce.
    let balance = KRAKEN.sign(&other, &permit(&other), context(7)).unwrap();
    assert_eq!(balance.body, b"nonce=7");
    let preview = KRAKEN.preview(&call, 0);
    assert!(
        preview.body.starts_with("nonce=<keyward"),
        "{}",
        preview.body
    );
    assert!(preview.headers.iter().any(|h| h.starts_with("api-sign: <")));
}

#[test]
fn catalogue_is_consistent_and_disjoint_from_the_floor() {
    assert_eq!(catalogue::ENDPOINTS.len(), catalogue::DETAILS.len());
    let mut keys = HashSet::new();
    for (spec, detail) in catalogue::ENDPOINTS.iter().zip(&catalogue::DETAILS) {
        assert!(keys.insert(spec.key), "{} twice", spec.key);
        assert_eq!(spec.key, detail.key);
        assert_eq!(spec.key, format!("{} {}", spec.method, spec.path));
        assert!(!spec.class.is_floor());
        assert!(
            KRAKEN.floor(&spec.method, spec.path).is_none(),
            "{} is on the floor",
            spec.key
        );
        let public = spec.path.starts_with("/0/public/");
        assert_eq!(public, spec.method == Method::GET, "{}", spec.key);
        assert_eq!(public, spec.class == EndpointClass::Market, "{}", spec.key);
        assert_eq!(
            spec.bears_orders(),
            spec.class == EndpointClass::Trade,
            "{}",
            spec.key
        );
        assert_eq!(
            spec.bears_orders(),
            detail.orders != catalogue::Orders::None,
            "{}",
            spec.key
        );
        // Canonical order is byte order of the names: what reproduces Kraken's vector.
        let names: Vec<&str> = detail.params.iter().map(|p| p.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            names, sorted,
            "{}: parameters not sorted or repeated",
            spec.key
        );
        for name in names {
            assert!(!super::AUTH_FIELDS.contains(&name), "{}: {name}", spec.key);
        }
    }
    let names: Vec<&str> = catalogue::BATCH_ORDER.iter().map(|p| p.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[test]
fn the_floor_covers_money_movement_and_the_websocket_token() {
    for path in [
        "/0/private/Withdraw",
        "/0/private/WithdrawCancel",
        "/0/private/WithdrawAddresses",
        "/0/private/WalletTransfer",
        "/0/private/AccountTransfer",
        "/0/private/CreateSubaccount",
        "/0/private/DepositAddresses",
        "/0/private/DepositMethods",
        "/0/private/Earn/Allocate",
        "/0/private/Earn/Deallocate",
        "/0/private/getwebsocketstoken",
        "/0/private/GETWEBSOCKETSTOKEN",
        "/0/private/withdraw",
        "/0/private/Stake",
        "/derivatives/api/v3/transfer",
    ] {
        assert_eq!(
            KRAKEN.floor(&Method::POST, path),
            Some(EndpointClass::MoneyMovement),
            "{path}"
        );
        assert!(
            matches!(route(&KRAKEN, &Method::POST, path), Route::Floor(_)),
            "{path}"
        );
    }
    assert_eq!(
        KRAKEN.floor(&Method::POST, "/0/private/CreateApiKey"),
        Some(EndpointClass::KeyManagement)
    );
    assert!(matches!(
        route(&KRAKEN, &Method::POST, "/0/private/AddExport"),
        Route::Unknown
    ));
    assert!(matches!(
        route(&KRAKEN, &Method::POST, "/0/private/addorder"),
        Route::Unknown
    ));
    assert!(matches!(
        route(&KRAKEN, &Method::GET, "/0/private/AddOrder"),
        Route::MethodNotAllowed
    ));
}

#[test]
fn orders_become_intents_with_their_real_sizes() {
    // A limit order.
    let call = private(
        "AddOrder",
        "pair=XXBTZUSD&type=buy&ordertype=limit&price=60000&volume=0.001",
    )
    .unwrap();
    assert_eq!(call.intent.symbols.len(), 1);
    assert_eq!(call.intent.symbols[0].as_str(), "XBTUSD");
    let [order] = call.intent.orders.as_slice() else {
        panic!()
    };
    assert_eq!(order.symbol.as_str(), "XBTUSD");
    assert_eq!(order.side, Side::Buy);
    assert_eq!(&*order.order_type, "limit");
    assert_eq!(order.execution, Execution::Limit);
    assert_eq!(order.size, Size::Base("0.001".parse().unwrap()));
    assert_eq!(order.price, Some("60000".parse().unwrap()));
    assert!(!order.margin && !order.amend);
    // The canonical pair is what is forwarded.
    assert!(call.params.contains(&("pair", "XBTUSD".to_owned())));

    // viqc: the volume is quote currency (ccxt repeats the flag).
    let call = private(
        "AddOrder",
        "pair=XBTUSD&type=buy&ordertype=market&volume=100000&oflags=viqc%2Cviqc",
    )
    .unwrap();
    assert_eq!(
        call.intent.orders[0].size,
        Size::Quote("100000".parse().unwrap())
    );
    assert!(call.params.contains(&("oflags", "viqc".to_owned())));

    // Stop-loss-limit: price is the trigger, price2 the limit.
    let call = private(
        "AddOrder",
        "pair=XBTUSD&type=sell&ordertype=stop-loss-limit&price=55000&price2=54900&volume=0.01",
    )
    .unwrap();
    let order = &call.intent.orders[0];
    assert_eq!(order.execution, Execution::StopLimit);
    assert_eq!(order.trigger, Some("55000".parse().unwrap()));
    assert_eq!(order.price, Some("54900".parse().unwrap()));

    // Stop-loss and trailing stop execute at the market.
    let call = private(
        "AddOrder",
        "pair=XBTUSD&type=sell&ordertype=stop-loss&price=55000&volume=0.01",
    )
    .unwrap();
    assert_eq!(call.intent.orders[0].execution, Execution::StopMarket);
    assert_eq!(call.intent.orders[0].price, None);
    let call = private(
        "AddOrder",
        "pair=XBTUSD&type=sell&ordertype=trailing-stop&price=%2B5%25&volume=0.01",
    )
    .unwrap();
    assert_eq!(call.intent.orders[0].execution, Execution::TrailingMarket);

    // leverage is margin; volume 0 with leverage closes the whole position.
    let call = private(
        "AddOrder",
        "pair=XBTUSD&type=buy&ordertype=limit&price=60000&volume=0.001&leverage=2",
    )
    .unwrap();
    assert!(call.intent.orders[0].margin);
    let call = private(
        "AddOrder",
        "pair=XBTUSD&type=buy&ordertype=limit&price=60000&volume=0.001&leverage=none",
    )
    .unwrap();
    assert!(!call.intent.orders[0].margin);
    let call = private(
        "AddOrder",
        "pair=XBTUSD&type=sell&ordertype=market&volume=0&leverage=3",
    )
    .unwrap();
    assert_eq!(call.intent.orders[0].size, Size::WholePosition);

    // A conditional close is an order of its own, on the other side.
    let call = private("AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=60000&volume=0.001&close%5Bordertype%5D=limit&close%5Bprice%5D=70000").unwrap();
    let [open, close] = call.intent.orders.as_slice() else {
        panic!()
    };
    assert_eq!(open.side, Side::Buy);
    assert_eq!(close.side, Side::Sell);
    assert_eq!(&*close.order_type, "close-limit");
    assert_eq!(close.price, Some("70000".parse().unwrap()));
    assert_eq!(close.size, open.size);
    let call = private("AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=60000&volume=0.001&close[ordertype]=stop-loss-limit&close[price]=50000&close[price2]=49000").unwrap();
    assert_eq!(call.intent.orders[1].execution, Execution::StopLimit);
    assert_eq!(
        call.intent.orders[1].trigger,
        Some("50000".parse().unwrap())
    );

    // The same in JSON: close is a nested object, and comes back canonical.
    let call = private_json("AddOrder", r#"{"nonce":"5","pair":"XBTUSD","type":"buy","ordertype":"limit","price":"60000","volume":"0.001","close":{"ordertype":"limit","price":"70000"},"userref":7,"validate":true}"#).unwrap();
    assert_eq!(call.intent.orders.len(), 2);
    assert_eq!(
        call.body.as_deref(),
        Some(
            r#"{"close":{"ordertype":"limit","price":"70000"},"ordertype":"limit","pair":"XBTUSD","price":"60000","type":"buy","userref":7,"validate":true,"volume":"0.001"}"#
        )
    );

    // AddOrderBatch: every element, with its close, on the batch's pair.
    let body = r#"{"nonce":"1795248636806","orders":[{"type":"buy","ordertype":"limit","volume":"0.001","price":"60000"},{"type":"sell","ordertype":"limit","volume":"0.002","price":"61000","close":{"ordertype":"limit","price":"59000"}}],"pair":"XXBTZUSD"}"#;
    let call = private_json("AddOrderBatch", body).unwrap();
    assert_eq!(call.intent.orders.len(), 3);
    assert!(
        call.intent
            .orders
            .iter()
            .all(|o| o.symbol.as_str() == "XBTUSD")
    );
    assert_eq!(call.intent.orders[2].side, Side::Buy);
    assert_eq!(
        call.body.as_deref(),
        Some(
            r#"{"orders":[{"ordertype":"limit","price":"60000","type":"buy","volume":"0.001"},{"close":{"ordertype":"limit","price":"59000"},"ordertype":"limit","price":"61000","type":"sell","volume":"0.002"}],"pair":"XBTUSD"}"#
        )
    );

    // EditOrder and AmendOrder do not say the side: they name the order, whose side,
    // type and symbol keyward takes from its record.
    let call = private(
        "EditOrder",
        "pair=XBTUSD&txid=OQCLML-BW3P3-BUCMWZ&volume=0.002&price=61000",
    )
    .unwrap();
    assert_eq!(call.intent.orders.len(), 1);
    assert!(call.intent.orders[0].amend);
    assert_eq!(call.intent.orders[0].price, Some("61000".parse().unwrap()));
    let amend = &call.refs.amends[0];
    assert_eq!(amend.order.id.as_deref(), Some("OQCLML-BW3P3-BUCMWZ"));
    assert_eq!(amend.kind, crate::AmendKind::Replaces);
    let call = private(
        "AmendOrder",
        "txid=OQCLML-BW3P3-BUCMWZ&order_qty=0.002&limit_price=61000&pair=XBTUSD",
    )
    .unwrap();
    assert_eq!(call.intent.orders.len(), 1);
    assert_eq!(
        call.intent.orders[0].size,
        Size::Base("0.002".parse().unwrap())
    );
    assert_eq!(call.refs.amends[0].kind, crate::AmendKind::InPlace);
    let call = private(
        "AmendOrder",
        "txid=O1&order_qty=0.002&trigger_price=50000&pair=XBTUSD",
    )
    .unwrap();
    assert!(!call.refs.amends[0].price_given);
    assert_eq!(
        call.intent.orders[0].trigger,
        Some("50000".parse().unwrap())
    );
    // A cancel names its order; CancelAll names every order of the account.
    let call = private("CancelOrder", "txid=O1").unwrap();
    assert_eq!(call.refs.cancels[0].id.as_deref(), Some("O1"));
    assert!(private("CancelAll", "").unwrap().refs.cancels_everything);
    assert!(
        private("CancelAllOrdersAfter", "timeout=60")
            .unwrap()
            .refs
            .cancels_everything
    );

    // Reads and cancels carry no orders.
    for (method, body) in [
        ("Balance", ""),
        ("BalanceEx", ""),
        ("OpenOrders", "trades=True"),
        ("QueryOrders", "trades=True&txid=OQCLML-BW3P3-BUCMWZ"),
        ("CancelOrder", "txid=OQCLML-BW3P3-BUCMWZ"),
        ("CancelAll", ""),
        ("CancelAllOrdersAfter", "timeout=60"),
    ] {
        let call = private(method, body).unwrap();
        assert!(call.intent.orders.is_empty(), "{method}");
    }
    let call = private_json(
        "CancelOrderBatch",
        r#"{"nonce":"1","orders":["A-1",{"txid":"B-2"},42],"cl_ord_ids":["c1"]}"#,
    )
    .unwrap();
    assert_eq!(
        call.body.as_deref(),
        Some(r#"{"cl_ord_ids":["c1"],"orders":["A-1",{"txid":"B-2"},42]}"#)
    );
    // Booleans as Python sends them are normalised.
    let call = private("OpenOrders", "trades=True").unwrap();
    assert_eq!(call.params, vec![("trades", "true".to_owned())]);
}

#[test]
fn pair_spellings_resolve_or_stay_foreign() {
    for alias in ["XBTUSD", "XXBTZUSD", "XBT%2FUSD", "BTC%2FUSD", "BTCUSD"] {
        let call = private(
            "AddOrder",
            &format!("pair={alias}&type=buy&ordertype=market&volume=0.001"),
        )
        .unwrap();
        assert_eq!(call.intent.orders[0].symbol.as_str(), "XBTUSD", "{alias}");
    }
    // Lower case is not an alias: it stays itself, which no allowlist can hold.
    let call = private(
        "AddOrder",
        "pair=xbtusd&type=buy&ordertype=market&volume=0.001",
    )
    .unwrap();
    assert_eq!(call.intent.symbols[0].as_str(), "xbtusd");
    assert!(KRAKEN.check_symbol("xbtusd").is_err());
    assert!(KRAKEN.check_symbol("XXBTZUSD").is_err());
    assert!(KRAKEN.check_symbol("XBT/USD").is_err());
    assert!(KRAKEN.check_symbol("XBTUSD").is_ok());
    // Public lists resolve element by element.
    let call = parse_as(
        Method::GET,
        "/0/public/Ticker",
        "pair=XXBTZUSD,ETHUSD",
        None,
        "",
    )
    .unwrap();
    assert_eq!(call.params, vec![("pair", "XBTUSD,ETHUSD".to_owned())]);
}

#[test]
fn grammar_refusals_have_their_reasons() {
    let order = "pair=XBTUSD&type=buy&ordertype=limit&price=60000&volume=0.001";
    let cases: Vec<(Result<ParsedCall, ParseError>, &str)> = vec![
        (private("AddOrder", order), "ok"),
        (
            private("AddOrder", &format!("{order}&foo=1")),
            "param_unknown",
        ),
        (
            private("AddOrder", &format!("{order}&pair=ETHUSD")),
            "param_duplicate",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=limit&price=60000",
            ),
            "param_missing",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=limit&price=6e4&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=BUY&ordertype=limit&price=60000&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBT-USD&type=buy&ordertype=limit&price=60000&volume=0.001",
            ),
            "param_invalid",
        ),
        // Relative prices other than a trailing offset are refused.
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=limit&price=%2B5&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=limit&price=5%25&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=limit&price=%235&volume=0.001",
            ),
            "param_invalid",
        ),
        // A raw '+' is a space to Kraken.
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=sell&ordertype=trailing-stop&price=+5&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=market&price=60000&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=stop-loss-limit&price=60000&volume=0.001",
            ),
            "param_missing",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=limit&price=60000&price2=1&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=settle-position&volume=0",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=trailing-stop-limit&price=%2B5&price2=%2B1&volume=0.001",
            ),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=iceberg&price=60000&volume=0.01",
            ),
            "param_missing",
        ),
        (
            private("AddOrder", &format!("{order}&displayvol=0.001")),
            "param_invalid",
        ),
        (
            private("AddOrder", &format!("{order}&oflags=viqc")),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=sell&ordertype=market&volume=1&oflags=viqc",
            ),
            "param_invalid",
        ),
        (
            private("AddOrder", &format!("{order}&oflags=post,bogus")),
            "param_invalid",
        ),
        (
            private(
                "AddOrder",
                "pair=XBTUSD&type=buy&ordertype=market&volume=50&oflags=viqc&close[ordertype]=limit&close[price]=70000",
            ),
            "param_invalid",
        ),
        (
            private("AddOrder", &format!("{order}&close[price]=70000")),
            "param_missing",
        ),
        (
            private("AddOrder", &format!("{order}&leverage=abc")),
            "param_invalid",
        ),
        (
            private("AddOrder", &format!("{order}&validate=yes")),
            "param_invalid",
        ),
        (private("AddOrder", &format!("{order}&nonce=1&otp=2")), "ok"),
        (
            private(
                "AddOrder",
                &format!("{order}&note=kw_a_0123456789012345678901234567890123456789012"),
            ),
            "token_in_query",
        ),
        // Where the body may be and what it may be.
        (
            parse_as(
                Method::POST,
                "/0/private/AddOrder",
                "pair=XBTUSD",
                Some(FORM),
                order,
            ),
            "param_unknown",
        ),
        (
            parse_as(
                Method::POST,
                "/0/private/AddOrder",
                "",
                Some("text/plain"),
                order,
            ),
            "unsupported_media_type",
        ),
        (
            parse_as(Method::POST, "/0/private/AddOrder", "", None, order),
            "unsupported_media_type",
        ),
        (
            parse_as(
                Method::POST,
                "/0/private/AddOrder",
                "",
                Some("application/x-www-form-urlencoded; charset=latin1"),
                order,
            ),
            "unsupported_media_type",
        ),
        (
            parse_as(Method::GET, "/0/public/Time", "", Some(FORM), "a=1"),
            "body_not_allowed",
        ),
        (
            parse_as(
                Method::GET,
                "/0/public/Ticker",
                "pair=XBTUSD&pair=ETHUSD",
                None,
                "",
            ),
            "param_duplicate",
        ),
        (
            parse_as(Method::GET, "/0/public/Depth", "count=10", None, ""),
            "param_missing",
        ),
        // JSON bodies: one value, no duplicate keys at any depth, known keys.
        (
            private_json(
                "AddOrder",
                r#"{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":"60000","volume":"0.001"}"#,
            ),
            "ok",
        ),
        (
            private_json(
                "AddOrder",
                r#"{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":"60000","volume":"0.001"} {}"#,
            ),
            "json_invalid",
        ),
        (
            private_json(
                "AddOrder",
                r#"{"pair":"XBTUSD","pair":"ETHUSD","type":"buy","ordertype":"limit","price":"60000","volume":"0.001"}"#,
            ),
            "json_duplicate_key",
        ),
        (private_json("AddOrder", r#"["pair"]"#), "json_invalid"),
        (
            private_json(
                "AddOrder",
                r#"{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":60000.5,"volume":"0.001"}"#,
            ),
            "param_invalid",
        ),
        (
            private_json(
                "AddOrder",
                r#"{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":"60000","volume":"0.001","close[ordertype]":"limit"}"#,
            ),
            "param_unknown",
        ),
        (
            private_json(
                "AddOrder",
                r#"{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":"60000","volume":"0.001","close":{"ordertype":"limit","price":"1","x":"1"}}"#,
            ),
            "param_unknown",
        ),
        (
            private_json(
                "AddOrderBatch",
                r#"{"pair":"XBTUSD","orders":[{"type":"buy","ordertype":"limit","volume":"1","price":"1","type":"sell"}]}"#,
            ),
            "json_duplicate_key",
        ),
        (
            private_json("AddOrderBatch", r#"{"pair":"XBTUSD","orders":[]}"#),
            "json_invalid",
        ),
        (
            private_json(
                "AddOrderBatch",
                &format!(
                    r#"{{"pair":"XBTUSD","orders":[{}]}}"#,
                    [r#"{"type":"buy","ordertype":"limit","volume":"1","price":"1"}"#; 16]
                        .join(",")
                ),
            ),
            "batch_too_large",
        ),
        (
            private_json(
                "AddOrderBatch",
                r#"{"pair":"XBTUSD","orders":[{"type":"buy","ordertype":"limit","volume":"1","price":"1","foo":"1"}]}"#,
            ),
            "param_unknown",
        ),
        (
            private_json(
                "AddOrderBatch",
                r#"{"orders":[{"type":"buy","ordertype":"limit","volume":"1","price":"1"}]}"#,
            ),
            "param_missing",
        ),
        (
            private("AddOrderBatch", "pair=XBTUSD&orders=x"),
            "param_invalid",
        ),
        (
            private_json("CancelOrderBatch", r#"{"nonce":"1"}"#),
            "param_missing",
        ),
        (
            private_json("CancelOrderBatch", r#"{"orders":[null]}"#),
            "param_invalid",
        ),
        // Edits and amends keyward cannot size are refused; an amend that leaves its
        // price alone keeps the recorded one.
        (
            private("EditOrder", "pair=XBTUSD&txid=O1&price=61000"),
            "param_missing",
        ),
        (
            private("AmendOrder", "txid=O1&limit_price=61000&pair=XBTUSD"),
            "param_missing",
        ),
        (
            private("AmendOrder", "txid=O1&order_qty=1&pair=XBTUSD"),
            "ok",
        ),
        (
            private("AmendOrder", "order_qty=1&limit_price=1&pair=XBTUSD"),
            "param_missing",
        ),
        (
            private(
                "AmendOrder",
                "txid=O1&cl_ord_id=c&order_qty=1&limit_price=1&pair=XBTUSD",
            ),
            "param_invalid",
        ),
        (private("CancelOrder", ""), "param_missing"),
        (
            private("CancelOrder", "txid=O1&cl_ord_id=c"),
            "param_invalid",
        ),
    ];
    for (index, (result, want)) in cases.into_iter().enumerate() {
        assert_eq!(reason(result), want, "case {index}");
    }
}

#[test]
fn answers_are_read_for_time_quotes_orders_and_rate_limits() {
    assert_eq!(
        KRAKEN.server_time_ms(br#"{"error":[],"result":{"unixtime":1688669448,"rfc1123":"x"}}"#),
        Some(1_688_669_448_000)
    );
    let ticker = br#"{"error":[],"result":{"XXBTZUSD":{"a":["60010.0","1","1.000"],"b":["59990.0","1","1.000"],"c":["60000.0","0.1"]}}}"#;
    let quote = KRAKEN.parse_quote(ticker).unwrap();
    assert_eq!(quote.bid, "59990".parse().unwrap());
    assert_eq!(quote.ask, "60010".parse().unwrap());
    assert!(KRAKEN.parse_quote(br#"{"error":[],"result":{}}"#).is_none());

    let add = private(
        "AddOrder",
        "pair=XXBTZUSD&type=buy&ordertype=limit&price=60000&volume=0.001",
    )
    .unwrap();
    let ok = StatusCode::OK;
    let outcome = KRAKEN.outcome(
        &add,
        ok,
        br#"{"error":[],"result":{"descr":{"order":"x"},"txid":["OAAAAA-BBBBB-CCCCCC"]}}"#,
    );
    assert!(
        matches!(&outcome.legs[..], [LegResult::Placed(p)] if p.id.as_deref() == Some("OAAAAA-BBBBB-CCCCCC"))
    );
    assert_eq!(
        KRAKEN
            .outcome(
                &add,
                ok,
                br#"{"error":["EOrder:Insufficient funds"],"result":{"txid":["X"]}}"#
            )
            .legs,
        vec![LegResult::Rejected]
    );
    assert_eq!(
        KRAKEN
            .outcome(&add, ok, br#"{"error":["EService:Unavailable"]}"#)
            .legs,
        vec![LegResult::Unknown],
        "an unavailable service may or may not have placed it"
    );
    let open = private("OpenOrders", "").unwrap();
    let outcome = KRAKEN.outcome(&open, ok, br#"{"error":[],"result":{"open":{"O1":{"descr":{"pair":"XBTUSD"}},"O2":{"descr":{"pair":"ETHUSD"}}}}}"#);
    assert_eq!(outcome.listed.len(), 2);
    assert!(outcome.listed.iter().all(|l| l.open));
    let edit = private("EditOrder", "pair=XBTUSD&txid=O1&volume=0.002&price=61000").unwrap();
    let outcome = KRAKEN.outcome(
        &edit,
        ok,
        br#"{"error":[],"result":{"txid":"O2","originaltxid":"O1"}}"#,
    );
    assert_eq!(outcome.closed[0].1, "O1");
    assert!(matches!(&outcome.legs[..], [LegResult::Placed(p)] if p.id.as_deref() == Some("O2")));

    for (body, seconds) in [
        (&br#"{"error":["EAPI:Rate limit exceeded"]}"#[..], 15),
        (
            br#"{"error":["EOrder:Rate limit exceeded"],"result":{}}"#,
            15,
        ),
        (br#"{"error":["EGeneral:Too many requests"]}"#, 30),
        (br#"{"error":["EGeneral:Temporary lockout"]}"#, 300),
    ] {
        let backoff = KRAKEN.backoff_in_body(body).unwrap();
        assert_eq!(backoff.retry_after, Duration::from_secs(seconds));
        assert!(!backoff.banned);
    }
    assert!(
        KRAKEN
            .backoff_in_body(br#"{"error":[],"result":{}}"#)
            .is_none()
    );
    assert!(
        KRAKEN
            .backoff_in_body(br#"{"error":["EOrder:Insufficient funds"]}"#)
            .is_none()
    );
    assert!(
        KRAKEN
            .backoff(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new())
            .is_some()
    );
    assert!(KRAKEN.backoff(StatusCode::OK, &HeaderMap::new()).is_none());
}

#[test]
fn housekeeping_requests_parse_with_the_same_grammar() {
    let symbol = keyward_policy::Symbol::new("XBTUSD").unwrap();
    for task in [
        Housekeeping::Quote,
        Housekeeping::OpenOrders,
        Housekeeping::CancelAll,
    ] {
        let (key, query) = KRAKEN.housekeeping(task, &symbol);
        let spec = KRAKEN.catalogue().by_key(key).unwrap();
        let call = KRAKEN
            .parse(
                spec,
                &CallInput {
                    query: &query,
                    content_type: None,
                    body: &[],
                    headers: &HeaderMap::new(),
                },
            )
            .unwrap();
        assert!(call.intent.orders.is_empty(), "{key}");
    }
}

#[test]
fn an_order_is_looked_up_and_read_back_for_adoption() {
    let reference = crate::OrderRef {
        id: Some("OQCLML-BW3P3-BUCMWZ".to_owned()),
        ..crate::OrderRef::default()
    };
    let lookup = KRAKEN.order_lookup(&reference).unwrap();
    assert_eq!(lookup.key, "POST /0/private/QueryOrders");
    assert_eq!(lookup.form.as_deref(), Some("txid=OQCLML-BW3P3-BUCMWZ"));
    let order = KRAKEN
        .looked_up_order(br#"{"error":[],"result":{"OQCLML-BW3P3-BUCMWZ":{"status":"open","vol":"0.002","descr":{"pair":"XBTUSD","type":"sell","ordertype":"limit","price":"61000","price2":"0"}}}}"#)
        .unwrap();
    assert_eq!(order.symbol.as_str(), "XBTUSD");
    assert_eq!((order.side, order.open), (Side::Sell, true));
    assert_eq!(order.price, Some("61000".parse().unwrap()));
    assert!(
        KRAKEN
            .order_lookup(&crate::OrderRef {
                client_id: Some("c".to_owned()),
                ..crate::OrderRef::default()
            })
            .is_none(),
        "QueryOrders takes txids only"
    );
}
