//! Kraken's WebSocket v2 messages: each read as its REST twin, that twin decided by
//! the REST parser, and keyward's message written back from what the parser
//! validated, with the link's token and never the bot's.

use http::{HeaderMap, Method};

use super::*;
use crate::sign::KeyKind;
use crate::test_signer::TestSigner;
use crate::{CallInput, Route, Venue};

const BOT_TOKEN: &str = "MintedByKeywardForTheBot0123456789abcdefABCDEFghijklmnopqrstuvwxyz";
const LINK_TOKEN: &str = "xeAQ/RCChBYNVh53sTv1yZ5H4wIbwDF20PiHtTF+4UI";

fn read(text: &str) -> BotMessage {
    STREAMS.read_message(PATH, text).expect("reads")
}

fn refused(text: &str) -> &'static str {
    STREAMS
        .read_message(PATH, text)
        .expect_err("refused")
        .reason()
}

/// The twin of `message`, parsed by Kraken's REST parser as a JSON body.
fn twin(message: &BotMessage) -> Result<ParsedCall, ParseError> {
    let (verb, path) = message
        .method
        .twin
        .expect("a twin")
        .split_once(' ')
        .unwrap();
    let Route::Endpoint(endpoint) = crate::route(
        &super::super::KRAKEN,
        &Method::from_bytes(verb.as_bytes()).unwrap(),
        path,
    ) else {
        panic!("{path} is catalogued");
    };
    let body = message.body.clone().unwrap_or_default();
    super::super::KRAKEN.parse(
        endpoint,
        &CallInput {
            query: "",
            content_type: message.body.as_ref().map(|_| "application/json"),
            body: body.as_bytes(),
            headers: &HeaderMap::new(),
        },
    )
}

/// keyward's message for `message`, once its twin was decided.
fn built(message: &BotMessage) -> serde_json::Value {
    let call = twin(message).expect("the twin parses");
    let permit = crate::testkit::shadow_permit(&super::super::KRAKEN, &call);
    let signer = TestSigner::new("KEY", KeyKind::Hmac, b"a2V5");
    let text = STREAMS
        .build(
            message.method,
            &call,
            &permit,
            &message.carried,
            SignContext {
                credential: &signer,
                timestamp_ms: 1,
                recv_window_ms: 5000,
                nonce: 7,
            },
            Some(LINK_TOKEN),
            42,
        )
        .expect("builds");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn ccxts_limit_order_is_decided_as_add_order_and_sent_with_the_links_token() {
    let message = read(&format!(
        r#"{{"method":"add_order","params":{{"order_type":"limit","side":"buy","order_qty":0.001,"symbol":"BTC/USD","token":"{BOT_TOKEN}","limit_price":60000,"time_in_force":"gtc","post_only":true,"cl_ord_id":"c-1"}},"req_id":5}}"#
    ));
    assert_eq!(message.id, "5");
    assert_eq!(message.token.as_deref(), Some(BOT_TOKEN));
    let body = message.body.as_deref().expect("a twin body");
    assert!(!body.contains(BOT_TOKEN), "{body}");
    let call = twin(&message).expect("parses");
    assert_eq!(call.intent.symbols[0].as_str(), "XBTUSD");
    assert_eq!(call.intent.orders.len(), 1);
    assert_eq!(call.intent.orders[0].order_type.as_ref(), "limit");
    let sent = built(&message);
    assert_eq!(sent["method"], "add_order");
    assert_eq!(sent["req_id"], 42);
    let params = &sent["params"];
    assert_eq!(params["token"], LINK_TOKEN);
    assert_eq!(
        params["symbol"], "BTC/USD",
        "the bot's spelling of the pair"
    );
    assert_eq!(params["order_type"], "limit");
    assert_eq!(params["side"], "buy");
    assert_eq!(params["order_qty"].to_string(), "0.001");
    assert_eq!(params["limit_price"].to_string(), "60000");
    assert_eq!(params["time_in_force"], "gtc");
    assert_eq!(params["post_only"], true);
    assert_eq!(params["cl_ord_id"], "c-1");
    assert!(!sent.to_string().contains(BOT_TOKEN));
}

#[test]
fn a_stop_limit_keeps_its_trigger_and_its_limit_apart() {
    let message = read(&format!(
        r#"{{"method":"add_order","params":{{"order_type":"stop-loss-limit","side":"sell","order_qty":0.002,"symbol":"XBT/USD","triggers":{{"reference":"last","price":55000,"price_type":"static"}},"limit_price":54900,"token":"{BOT_TOKEN}"}}}}"#
    ));
    let call = twin(&message).expect("parses");
    let order = &call.intent.orders[0];
    assert_eq!(
        order.trigger.map(|d| d.to_string()).as_deref(),
        Some("55000")
    );
    assert_eq!(order.price.map(|d| d.to_string()).as_deref(), Some("54900"));
    let params = built(&message)["params"].clone();
    assert_eq!(params["triggers"]["price"].to_string(), "55000");
    assert_eq!(params["triggers"]["reference"], "last");
    assert_eq!(params["limit_price"].to_string(), "54900");
    assert_eq!(params["symbol"], "XBT/USD");
}

#[test]
fn batches_amends_edits_and_cancels_map_both_ways() {
    let batch = read(&format!(
        r#"{{"method":"batch_add","params":{{"symbol":"BTC/USD","orders":[{{"order_type":"limit","side":"buy","order_qty":0.001,"limit_price":60000}},{{"order_type":"market","side":"sell","order_qty":0.001}}],"token":"{BOT_TOKEN}"}},"req_id":1}}"#
    ));
    assert_eq!(twin(&batch).expect("parses").intent.orders.len(), 2);
    let sent = built(&batch);
    assert_eq!(
        sent["params"]["orders"][0]["limit_price"].to_string(),
        "60000"
    );
    assert_eq!(sent["params"]["orders"][1]["order_type"], "market");
    assert_eq!(sent["params"]["symbol"], "BTC/USD");

    let amend = read(&format!(
        r#"{{"method":"amend_order","params":{{"order_id":"OAAAAA-BBBBB-CCCCCC","order_qty":0.003,"limit_price":61000,"symbol":"BTC/USD","token":"{BOT_TOKEN}"}}}}"#
    ));
    let call = twin(&amend).expect("parses");
    assert_eq!(
        call.refs.amends[0].order.id.as_deref(),
        Some("OAAAAA-BBBBB-CCCCCC")
    );
    let params = built(&amend)["params"].clone();
    assert_eq!(params["order_id"], "OAAAAA-BBBBB-CCCCCC");
    assert_eq!(params["order_qty"].to_string(), "0.003");

    let edit = read(&format!(
        r#"{{"method":"edit_order","params":{{"order_id":"OAAAAA-BBBBB-CCCCCC","symbol":"BTC/USD","order_qty":0.004,"limit_price":62000,"post_only":true,"token":"{BOT_TOKEN}"}}}}"#
    ));
    let params = built(&edit)["params"].clone();
    assert_eq!(params["order_qty"].to_string(), "0.004");
    assert_eq!(params["limit_price"].to_string(), "62000");
    assert_eq!(params["post_only"], true);

    let cancel = read(&format!(
        r#"{{"method":"cancel_order","params":{{"order_id":["OAAAAA-BBBBB-CCCCCC"],"token":"{BOT_TOKEN}"}},"req_id":3}}"#
    ));
    let call = twin(&cancel).expect("parses");
    assert_eq!(
        call.refs.cancels[0].id.as_deref(),
        Some("OAAAAA-BBBBB-CCCCCC")
    );
    let sent = built(&cancel);
    assert_eq!(sent["params"]["order_id"][0], "OAAAAA-BBBBB-CCCCCC");

    let all = read(&format!(
        r#"{{"method":"cancel_all","params":{{"token":"{BOT_TOKEN}"}}}}"#
    ));
    assert!(twin(&all).expect("parses").refs.cancels_everything);
    assert_eq!(
        built(&all)["params"],
        serde_json::json!({"token": LINK_TOKEN})
    );
}

#[test]
fn what_the_translation_cannot_map_is_refused_by_name() {
    let with = |params: &str| {
        format!(
            r#"{{"method":"add_order","params":{{"symbol":"BTC/USD","side":"buy","order_qty":0.001,"token":"t",{params}}}}}"#
        )
    };
    assert_eq!(
        refused(&with(
            r#""order_type":"trailing-stop","triggers":{"price":1,"price_type":"pct"}"#
        )),
        "param_invalid"
    );
    assert_eq!(
        refused(&with(
            r#""order_type":"stop-loss","triggers":{"price":1,"price_type":"pct"}"#
        )),
        "param_invalid"
    );
    assert_eq!(
        refused(&with(
            r#""order_type":"limit","limit_price":1,"margin":true"#
        )),
        "param_unknown"
    );
    assert_eq!(
        refused(&with(r#""order_type":"limit","limit_price":"1""#)),
        "param_invalid"
    );
    assert_eq!(refused(&with(r#""order_type":"limit""#)), "param_missing");
    assert_eq!(
        refused(&with(r#""order_type":"market","limit_price":1"#)),
        "param_invalid"
    );
    assert_eq!(
        refused(r#"{"method":"cancel_order","params":{"order_userref":[1],"token":"t"}}"#),
        "param_invalid"
    );
    assert_eq!(
        refused(r#"{"method":"add_order","params":{"order_type":"market"}}"#),
        "param_missing"
    );
    assert_eq!(
        refused(r#"{"method":"subscribe","params":{"channel":"ticker","token":"t"}}"#),
        "param_invalid"
    );
    assert_eq!(
        refused(
            r#"{"method":"subscribe","params":{"channel":"executions","users":"all","token":"t"}}"#
        ),
        "param_unknown"
    );
    assert_eq!(
        refused(r#"{"method":"withdraw","params":{"token":"t"}}"#),
        "stream_method_unknown"
    );
    assert_eq!(
        refused(r#"{"method":"ping","req_id":"x"}"#),
        "stream_message_invalid"
    );
    // A relative limit price in the twin (a trailing offset) is never written back.
    let message = read(&with(r#""order_type":"limit","limit_price":60000"#));
    let mut call = twin(&message).expect("parses");
    call.body = call.body.map(|b| b.replace("\"60000\"", "\"+5%\""));
    let permit = crate::testkit::shadow_permit(&super::super::KRAKEN, &call);
    let signer = TestSigner::new("KEY", KeyKind::Hmac, b"a2V5");
    let context = SignContext {
        credential: &signer,
        timestamp_ms: 1,
        recv_window_ms: 5000,
        nonce: 7,
    };
    assert!(
        STREAMS
            .build(
                message.method,
                &call,
                &permit,
                &message.carried,
                context,
                Some(LINK_TOKEN),
                1
            )
            .is_err()
    );
}

#[test]
fn subscriptions_and_pings_are_read() {
    let subscribe = read(&format!(
        r#"{{"method":"subscribe","params":{{"channel":"executions","snap_orders":true,"token":"{BOT_TOKEN}"}},"req_id":9}}"#
    ));
    assert_eq!(subscribe.method.role, Role::Subscribe);
    assert_eq!(
        subscribe.carried.topics,
        [r#""channel":"executions","snap_orders":true"#]
    );
    assert!(twin(&subscribe).is_ok(), "decided as OpenOrders");
    let sent = built(&subscribe);
    assert_eq!(sent["params"]["token"], LINK_TOKEN);
    assert_eq!(sent["params"]["snap_orders"], true);
    let ping = read(r#"{"method":"ping","req_id":101}"#);
    assert_eq!(ping.method.role, Role::Ping);
    let pong: serde_json::Value = serde_json::from_str(&STREAMS.answer(
        &ReplyTo {
            path: PATH,
            method: "ping",
            id: "101",
        },
        Role::Ping,
        false,
        0,
    ))
    .expect("JSON");
    assert_eq!(pong["method"], "pong");
    assert_eq!(pong["req_id"], 101);
}

#[test]
fn replies_and_executions_are_read() {
    let reply = STREAMS.read_upstream(
        r#"{"method":"add_order","req_id":42,"result":{"order_id":"OXM2QD-EALR2-YBAVEU"},"success":true,"time_in":"t","time_out":"t"}"#,
    );
    let UpstreamMessage::Reply { id: 42, body, .. } = reply else {
        panic!("a reply: {reply:?}");
    };
    let to = ReplyTo {
        path: PATH,
        method: "add_order",
        id: "5",
    };
    let back: serde_json::Value =
        serde_json::from_str(&STREAMS.reply(&to, StatusCode::OK, &body)).expect("JSON");
    assert_eq!(back["result"]["order_id"], "OXM2QD-EALR2-YBAVEU");
    assert_eq!(back["req_id"], 5);
    assert_eq!(back["success"], true);
    let refusal = super::super::KRAKEN
        .refusal(&crate::refusal::Refusal {
            class: crate::refusal::RefusalClass::SymbolForbidden,
            status: StatusCode::FORBIDDEN,
            reason: "symbol_not_allowed",
            message: "ETHUSD is not allowed".into(),
        })
        .1;
    let back: serde_json::Value =
        serde_json::from_str(&STREAMS.reply(&to, StatusCode::FORBIDDEN, &refusal)).expect("JSON");
    assert_eq!(back["success"], false);
    let error = back["error"].as_str().expect("text");
    assert!(error.starts_with("EGeneral:Permission denied"), "{error}");
    assert!(error.contains("symbol_not_allowed"), "{error}");
    let failed = STREAMS.read_upstream(
        r#"{"error":"EOrder:Insufficient funds","method":"add_order","req_id":43,"success":false}"#,
    );
    let UpstreamMessage::Reply { id: 43, body, .. } = failed else {
        panic!("a reply");
    };
    assert!(String::from_utf8_lossy(&body).contains("EOrder:Insufficient funds"));
    assert_eq!(
        STREAMS.read_upstream(r#"{"channel":"heartbeat"}"#),
        UpstreamMessage::Drop
    );
    assert_eq!(
        STREAMS.read_upstream(r#"{"method":"pong","req_id":1,"success":true}"#),
        UpstreamMessage::Drop
    );
    let update = r#"{"channel":"executions","type":"update","data":[{"order_id":"O1","symbol":"BTC/USD","order_status":"new","exec_type":"new"},{"order_id":"O2","order_status":"canceled","exec_type":"canceled"}],"sequence":3}"#;
    let UpstreamMessage::Event(Event { kind, .. }) = STREAMS.read_upstream(update) else {
        panic!("an event");
    };
    assert_eq!(
        kind,
        EventKind::Order {
            symbols: vec!["XBTUSD".to_owned(), "#O2".to_owned()],
            closed: vec![("#O2".to_owned(), "O2".to_owned())],
        }
    );
    let narrowed = STREAMS
        .narrow(update, &|name| name == "#O2")
        .expect("one left");
    assert!(!narrowed.contains("\"O1\""), "{narrowed}");
    let balances =
        r#"{"channel":"balances","type":"update","data":[{"asset":"USD"}],"sequence":4}"#;
    assert!(matches!(
        STREAMS.read_upstream(balances),
        UpstreamMessage::Event(Event {
            kind: EventKind::Account,
            ..
        })
    ));
}

#[test]
fn the_websocket_token_is_keywards_to_answer_and_to_ask_for() {
    let Route::Endpoint(endpoint) = crate::route(
        &super::super::KRAKEN,
        &Method::POST,
        "/0/private/GetWebSocketsToken",
    ) else {
        panic!("catalogued");
    };
    assert!(super::super::KRAKEN.answered_by_keyward(endpoint));
    assert_eq!(
        STREAMS.listen_key_op(endpoint.key),
        Some(ListenKeyOp::Create)
    );
    // Any other spelling of the path stays on the floor.
    assert!(matches!(
        crate::route(
            &super::super::KRAKEN,
            &Method::POST,
            "/0/private/getWebSocketsToken"
        ),
        Route::Floor(_)
    ));
    let (status, body) = STREAMS.minted_answer(ListenKeyOp::Create, Some("abc"));
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(answer["result"]["token"], "abc");
    assert_eq!(answer["result"]["expires"], 900);
    // keyward's own request is signed with its nonce, as every private call.
    let signer = TestSigner::new("KEY", KeyKind::Hmac, b"a2V5");
    let outbound = STREAMS
        .listen_key_request(
            ListenKeyOp::Create,
            SignContext {
                credential: &signer,
                timestamp_ms: 1,
                recv_window_ms: 5000,
                nonce: 1_700_000_000_000,
            },
        )
        .expect("Kraken has one")
        .expect("signs");
    assert_eq!(outbound.path_and_query, "/0/private/GetWebSocketsToken");
    assert_eq!(outbound.body, b"nonce=1700000000000");
    assert!(outbound.headers.iter().any(|(name, _)| name == "api-sign"));
    assert_eq!(
        STREAMS.read_listen_key(br#"{"error":[],"result":{"token":"xeAQ/RCC+4UI","expires":900}}"#),
        Some("xeAQ/RCC+4UI".to_owned())
    );
    assert_eq!(
        STREAMS.read_listen_key(br#"{"error":["EAPI:Invalid nonce"]}"#),
        None
    );
}

#[test]
fn the_websockets_answers_tell_the_twins_outcome() {
    let message = read(&format!(
        r#"{{"method":"add_order","params":{{"order_type":"limit","side":"buy","order_qty":0.001,"symbol":"BTC/USD","limit_price":60000,"token":"{BOT_TOKEN}"}}}}"#
    ));
    let call = twin(&message).expect("parses");
    let UpstreamMessage::Reply { body, status, .. } = STREAMS.read_upstream(
        r#"{"method":"add_order","req_id":1,"result":{"order_id":"OXM2QD-EALR2-YBAVEU"},"success":true}"#,
    ) else {
        panic!("a reply");
    };
    let outcome = super::super::KRAKEN.outcome(&call, status, &body);
    assert!(matches!(
        &outcome.legs[..],
        [crate::LegResult::Placed(placed)] if placed.id.as_deref() == Some("OXM2QD-EALR2-YBAVEU")
    ));
    let UpstreamMessage::Reply { body, status, .. } = STREAMS.read_upstream(
        r#"{"error":"EOrder:Insufficient funds","method":"add_order","req_id":1,"success":false}"#,
    ) else {
        panic!("a reply");
    };
    let outcome = super::super::KRAKEN.outcome(&call, status, &body);
    assert!(matches!(&outcome.legs[..], [crate::LegResult::Rejected]));
}

#[test]
fn a_refused_token_is_told_apart_from_a_refused_order() {
    let read = |text: &str| match STREAMS.read_upstream(text) {
        UpstreamMessage::Reply { body, .. } => body,
        other => panic!("a reply: {other:?}"),
    };
    let stale = read(
        r#"{"error":"ESession:Invalid session","method":"add_order","req_id":3,"success":false}"#,
    );
    assert!(STREAMS.link_token_refused(&stale));
    let funds = read(
        r#"{"error":"EOrder:Insufficient funds","method":"add_order","req_id":4,"success":false}"#,
    );
    assert!(!STREAMS.link_token_refused(&funds));
}
