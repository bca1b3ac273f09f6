//! Coinbase Advanced Trade's user WebSocket (`advanced-trade-ws-user.coinbase.com`, at
//! the root path `/`): `subscribe` and `unsubscribe` to the `user` channel (the
//! account's orders) and `futures_balance_summary`, each with a JWT signed by the
//! key (no `uri`), and `heartbeats`, which needs none. There is no order entry on
//! it. Messages carry no ids: Coinbase acknowledges subscriptions, in order, on its
//! `subscriptions` channel.
//!
//! A bot's JWT is signed with the key keyward issued to it; keyward verifies it
//! (proxy side) and subscribes with a JWT of its own, signed with the real key.

use http::StatusCode;
use keyward_policy::Permit;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::stream::{
    BotMessage, Carried, Event, EventKind, OLDEST_PENDING, ReplyTo, Role, StreamMethod, StreamPath,
    StreamVenue, UpstreamMessage, message, pairs, strict_object,
};
use crate::{ParseError, ParsedCall, SignContext, SignError, echo_key, json};

/// The path Coinbase serves its WebSockets on.
pub const ROOT: &str = "/";

/// A subscription to the account's data, decided as a read of the bot's orders.
const SUBSCRIBE: StreamMethod = StreamMethod {
    name: "subscribe",
    role: Role::Subscribe,
    twin: Some("GET /api/v3/brokerage/orders/historical/batch"),
};
/// A subscription to heartbeats, which asks nothing of the account.
const SUBSCRIBE_HEARTBEATS: StreamMethod = StreamMethod {
    name: "subscribe",
    role: Role::Control,
    twin: None,
};
const UNSUBSCRIBE: StreamMethod = StreamMethod {
    name: "unsubscribe",
    role: Role::Control,
    twin: None,
};

/// The account channels keyward relays; `heartbeats` besides.
const ACCOUNT_CHANNELS: &[&str] = &["user", "futures_balance_summary"];
const HEARTBEATS: &str = "heartbeats";
/// The most products one subscription names.
const MAX_PRODUCTS: usize = 64;
/// Order statuses after which an order is no longer open.
const CLOSED: &[&str] = &["FILLED", "CANCELLED", "EXPIRED", "FAILED"];

/// Coinbase's user WebSocket.
#[derive(Debug)]
pub struct CoinbaseStreams;

/// Coinbase's user WebSocket.
pub static STREAMS: CoinbaseStreams = CoinbaseStreams;

// Coinbase's market data is at `/` on a host of its own, the user WebSocket's
// path: a subscription without a JWT to a public channel is relayed there.
const MARKET_PATHS: &[crate::market::MarketPath] = &[crate::market::MarketPath {
    path: "/",
    upstream: "wss://advanced-trade-ws.coinbase.com/",
    protocol: crate::market::MarketProtocol::Coinbase,
    messages_per_connection: None,
    // Coinbase counts unauthenticated WebSocket messages per IP address: 8 a second.
    messages_per_address: Some(crate::Allowance::per_second(8)),
}];

impl StreamVenue for CoinbaseStreams {
    fn connections_per_address(&self) -> Option<crate::Allowance> {
        // Coinbase Advanced Trade: 8 connections a second from one IP address (one
        // page of its docs says 750; keyward keeps the lower).
        Some(crate::Allowance::per_second(8))
    }

    fn market_paths(&self) -> &'static [crate::market::MarketPath] {
        MARKET_PATHS
    }

    fn paths(&self) -> &'static [StreamPath] {
        &[StreamPath {
            path: ROOT,
            upstream: "wss://advanced-trade-ws-user.coinbase.com/",
        }]
    }

    fn read_message(&self, _path: &str, text: &str) -> Result<BotMessage, ParseError> {
        strict_object(text)?;
        let mut kind = None;
        let mut channel = None;
        let mut products = Vec::new();
        let mut jwt = None;
        for (key, value) in pairs(text).map_err(|_| message("unreadable"))? {
            let string = || {
                serde_json::from_str::<String>(value.get())
                    .map_err(|_| message("type, channel and jwt are strings"))
            };
            match key.as_str() {
                "type" => kind = Some(string()?),
                "channel" => channel = Some(string()?),
                "jwt" => jwt = Some(string()?),
                "product_ids" => {
                    products = serde_json::from_str::<Vec<String>>(value.get())
                        .map_err(|_| message("product_ids is an array of strings"))?;
                }
                _ => {
                    return Err(ParseError::ParamUnknown {
                        key: echo_key(&key),
                    });
                }
            }
        }
        let kind = kind.ok_or_else(|| message("a message needs a type"))?;
        let channel = channel.ok_or(ParseError::ParamMissing { key: "channel" })?;
        if products.len() > MAX_PRODUCTS
            || products
                .iter()
                .any(|p| p.is_empty() || p.len() > 32 || !p.bytes().all(is_product_byte))
        {
            return Err(ParseError::invalid(
                "product_ids",
                "at most 64 product ids such as BTC-USD",
            ));
        }
        let account_channel = ACCOUNT_CHANNELS.contains(&channel.as_str());
        if !account_channel && channel != HEARTBEATS {
            return Err(ParseError::invalid(
                "channel",
                "user, futures_balance_summary or heartbeats",
            ));
        }
        let method = match (kind.as_str(), account_channel) {
            ("subscribe", true) => &SUBSCRIBE,
            ("subscribe", false) => &SUBSCRIBE_HEARTBEATS,
            ("unsubscribe", _) => &UNSUBSCRIBE,
            _ => {
                return Err(ParseError::StreamMethodUnknown {
                    method: echo_key(&kind),
                });
            }
        };
        let mut listed = String::from("[");
        for (index, product) in products.iter().enumerate() {
            if index > 0 {
                listed.push(',');
            }
            json::write_string(&mut listed, product);
        }
        listed.push(']');
        Ok(BotMessage {
            id: "null".to_owned(),
            method,
            query: String::new(),
            body: None,
            token: jwt,
            carried: Carried {
                topics: vec![channel, listed],
                ..Carried::default()
            },
            instruments: Vec::new(),
        })
    }

    fn build(
        &self,
        method: &StreamMethod,
        call: &ParsedCall,
        permit: &Permit,
        carried: &Carried,
        context: SignContext<'_>,
        _link_token: Option<&str>,
        _id: u64,
    ) -> Result<String, SignError> {
        if permit.endpoint() != call.endpoint.key || method.twin != Some(call.endpoint.key) {
            return Err(SignError::PermitMismatch);
        }
        subscription("subscribe", carried, Some(context))
    }

    fn control(
        &self,
        message: &BotMessage,
        _id: u64,
        context: SignContext<'_>,
        _link_token: Option<&str>,
    ) -> Result<String, SignError> {
        let channel = message.carried.topics.first().ok_or(SignError::Failed)?;
        // Heartbeats need no key; leaving an account channel is signed like joining.
        let signed = (channel != HEARTBEATS).then_some(context);
        subscription(message.method.name, &message.carried, signed)
    }

    fn read_upstream(&self, text: &str) -> UpstreamMessage {
        #[derive(Deserialize)]
        struct Incoming<'a> {
            channel: Option<&'a str>,
            #[serde(rename = "type")]
            kind: Option<&'a str>,
            message: Option<String>,
            #[serde(borrow)]
            events: Option<&'a RawValue>,
        }
        let Ok(incoming) = serde_json::from_str::<Incoming<'_>>(text) else {
            return UpstreamMessage::Drop;
        };
        if incoming.kind == Some("error") {
            let mut body = String::from("{\"error\":\"INVALID_ARGUMENT\",\"message\":");
            json::write_string(&mut body, incoming.message.as_deref().unwrap_or_default());
            body.push('}');
            return UpstreamMessage::Reply {
                id: OLDEST_PENDING,
                status: StatusCode::BAD_REQUEST,
                body: body.into_bytes(),
            };
        }
        let kind = match incoming.channel {
            Some("subscriptions") => {
                return UpstreamMessage::Reply {
                    id: OLDEST_PENDING,
                    status: StatusCode::OK,
                    body: text.as_bytes().to_vec(),
                };
            }
            Some("user") => match incoming.events {
                Some(events) => user_event_kind(events),
                None => EventKind::Unknown,
            },
            Some("futures_balance_summary") => EventKind::Account,
            Some(HEARTBEATS) => EventKind::Control,
            _ => return UpstreamMessage::Drop,
        };
        UpstreamMessage::Event(Event {
            text: text.to_owned(),
            kind,
        })
    }

    fn narrow(&self, text: &str, keep: &dyn Fn(&str) -> bool) -> Option<String> {
        let mut value: Value = serde_json::from_str(text).ok()?;
        let kept = keep_products(&mut value, keep);
        (kept > 0).then(|| value.to_string())
    }

    fn reply(&self, _to: &ReplyTo<'_>, status: StatusCode, body: &[u8]) -> String {
        // A success is Coinbase's own acknowledgement, passed on as it came.
        if status.is_success() && serde_json::from_slice::<&RawValue>(body).is_ok() {
            return String::from_utf8_lossy(body).into_owned();
        }
        #[derive(Deserialize)]
        struct Refusal {
            message: String,
        }
        let text = serde_json::from_slice::<Refusal>(body).map_or_else(
            |_| "keyward: the exchange's answer could not be read".to_owned(),
            |refusal| refusal.message,
        );
        let mut out = String::from("{\"type\":\"error\",\"message\":");
        json::write_string(&mut out, &text);
        out.push('}');
        out
    }

    fn answer(&self, to: &ReplyTo<'_>, _role: Role, _bound: bool, _now_ms: u64) -> String {
        // Coinbase has no message keyward answers itself; this is never asked for.
        self.reply(
            to,
            StatusCode::BAD_REQUEST,
            b"{\"message\":\"keyward: not served\"}",
        )
    }
}

fn is_product_byte(byte: u8) -> bool {
    byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'-'
}

/// keyward's subscription message: `kind` of `carried`'s channel and products, with
/// a JWT of the account's key when `context` signs it.
fn subscription(
    kind: &str,
    carried: &Carried,
    context: Option<SignContext<'_>>,
) -> Result<String, SignError> {
    let [channel, products] = carried.topics.as_slice() else {
        return Err(SignError::Failed);
    };
    let mut out = String::from("{\"type\":");
    json::write_string(&mut out, kind);
    out.push_str(",\"product_ids\":");
    out.push_str(products);
    out.push_str(",\"channel\":");
    json::write_string(&mut out, channel);
    if let Some(context) = context {
        let nonce = super::fresh_nonce()?;
        let jwt = super::stream_jwt(context.credential, context.timestamp_ms / 1000, &nonce)?;
        out.push_str(",\"jwt\":");
        json::write_string(&mut out, &jwt);
    }
    out.push('}');
    Ok(out)
}

/// A `user` message is about the products of the orders and positions it lists.
fn user_event_kind(events: &RawValue) -> EventKind {
    let Ok(mut value) = serde_json::from_str::<Value>(events.get()) else {
        return EventKind::Unknown;
    };
    let seen = std::cell::RefCell::new(Vec::new());
    keep_products(&mut value, &|product: &str| {
        seen.borrow_mut().push(product.to_owned());
        true
    });
    let symbols = seen.into_inner();
    let mut closed = Vec::new();
    for event in value.as_array().into_iter().flatten() {
        for order in event["orders"].as_array().into_iter().flatten() {
            if let (Some(product), Some(id), Some(status)) = (
                order["product_id"].as_str(),
                order["order_id"].as_str(),
                order["status"].as_str(),
            ) && CLOSED.contains(&status)
            {
                closed.push((product.to_owned(), id.to_owned()));
            }
        }
    }
    EventKind::Order { symbols, closed }
}

/// Keeps, in every array of objects under `value`, the objects whose `product_id`
/// `keep` accepts (an object naming none is dropped too); returns how many objects
/// with a product were kept.
fn keep_products(value: &mut Value, keep: &dyn Fn(&str) -> bool) -> usize {
    // `keep` may record what it sees, so it is asked once per object.
    fn walk(value: &mut Value, keep: &dyn Fn(&str) -> bool, kept: &mut usize) {
        match value {
            Value::Array(items) => {
                let listed = items.iter().any(|item| item.get("product_id").is_some());
                if listed {
                    items.retain(|item| {
                        let keeps = item["product_id"].as_str().is_some_and(keep);
                        *kept += usize::from(keeps);
                        keeps
                    });
                }
                for item in items {
                    walk(item, keep, kept);
                }
            }
            Value::Object(members) => {
                for member in members.values_mut() {
                    walk(member, keep, kept);
                }
            }
            _ => {}
        }
    }
    let mut kept = 0;
    walk(value, keep, &mut kept);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_read_with_the_jwt_as_the_token() {
        let read = STREAMS
            .read_message(
                ROOT,
                r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"user","jwt":"eyJ.a.b"}"#,
            )
            .expect("reads");
        assert_eq!(read.method.role, Role::Subscribe);
        assert_eq!(read.token.as_deref(), Some("eyJ.a.b"));
        assert_eq!(read.carried.topics, ["user", r#"["BTC-USD"]"#]);
        let heartbeats = STREAMS
            .read_message(
                ROOT,
                r#"{"type":"subscribe","product_ids":[],"channel":"heartbeats"}"#,
            )
            .expect("reads");
        assert_eq!(heartbeats.method.role, Role::Control);
        let refused = |text: &str| {
            STREAMS
                .read_message(ROOT, text)
                .expect_err("refused")
                .reason()
        };
        assert_eq!(
            refused(r#"{"type":"subscribe","channel":"level2","product_ids":["BTC-USD"]}"#),
            "param_invalid"
        );
        assert_eq!(
            refused(r#"{"type":"subscribe","channel":"user","api_key":"x"}"#),
            "param_unknown"
        );
        assert_eq!(
            refused(r#"{"type":"order","channel":"user"}"#),
            "stream_method_unknown"
        );
        assert_eq!(
            refused(r#"{"type":"subscribe","channel":"user","product_ids":["btc usd"]}"#),
            "param_invalid"
        );
    }

    #[test]
    fn acknowledgements_answer_the_oldest_request_and_user_events_are_narrowed() {
        let ack = r#"{"channel":"subscriptions","client_id":"","timestamp":"t","sequence_num":1,"events":[{"subscriptions":{"user":["u"]}}]}"#;
        assert!(matches!(
            STREAMS.read_upstream(ack),
            UpstreamMessage::Reply {
                id: OLDEST_PENDING,
                status: StatusCode::OK,
                ..
            }
        ));
        let error: Value = serde_json::from_str(&STREAMS.reply(
            &ReplyTo {
                path: ROOT,
                method: "subscribe",
                id: "null",
            },
            StatusCode::FORBIDDEN,
            br#"{"error":"PERMISSION_DENIED","message":"keyward: path_not_allowed: no"}"#,
        ))
        .expect("JSON");
        assert_eq!(error["type"], "error");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("path_not_allowed"))
        );

        let user = r#"{"channel":"user","client_id":"","timestamp":"t","sequence_num":2,"events":[{"type":"update","orders":[{"order_id":"1","product_id":"BTC-USD","status":"FILLED"},{"order_id":"2","product_id":"ETH-USD","status":"OPEN"}]}]}"#;
        let UpstreamMessage::Event(Event { kind, .. }) = STREAMS.read_upstream(user) else {
            panic!("an event");
        };
        assert_eq!(
            kind,
            EventKind::Order {
                symbols: vec!["BTC-USD".to_owned(), "ETH-USD".to_owned()],
                closed: vec![("BTC-USD".to_owned(), "1".to_owned())],
            }
        );
        let narrowed: Value = serde_json::from_str(
            &STREAMS
                .narrow(user, &|product| product == "BTC-USD")
                .expect("one left"),
        )
        .expect("JSON");
        assert_eq!(
            narrowed["events"][0]["orders"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(narrowed["events"][0]["orders"][0]["order_id"], "1");
        assert!(STREAMS.narrow(user, &|_| false).is_none());
        assert!(matches!(
            STREAMS.read_upstream(r#"{"channel":"heartbeats","events":[]}"#),
            UpstreamMessage::Event(Event {
                kind: EventKind::Control,
                ..
            })
        ));
    }

    #[test]
    fn keywards_subscription_carries_a_jwt_of_the_real_key_without_a_uri() {
        let signer = crate::test_signer::TestSigner::generated_ec_p256("organizations/o/apiKeys/k");
        let carried = Carried {
            topics: vec!["user".to_owned(), r#"["BTC-USD"]"#.to_owned()],
            ..Carried::default()
        };
        let sent = subscription(
            "subscribe",
            &carried,
            Some(SignContext {
                credential: &signer,
                timestamp_ms: 1_700_000_000_000,
                recv_window_ms: 0,
                nonce: 0,
            }),
        )
        .expect("signs");
        let sent: Value = serde_json::from_str(&sent).expect("JSON");
        assert_eq!(sent["channel"], "user");
        let jwt = sent["jwt"].as_str().expect("a JWT");
        use base64::Engine as _;
        let claims = jwt.split('.').nth(1).expect("claims");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .expect("base64"),
        )
        .expect("JSON");
        assert_eq!(claims["sub"], "organizations/o/apiKeys/k");
        assert_eq!(claims["nbf"], 1_700_000_000);
        assert!(claims.get("uri").is_none(), "{claims}");
    }
}
