//! Bybit v5's private WebSockets: the private stream (`/v5/private`: `auth`, then
//! `subscribe` to `order`, `execution`, `position`, `wallet` and their categorised
//! forms) and order entry (`/v5/trade`: `order.create`, `order.amend`,
//! `order.cancel` and their `-batch` forms). A connection logs in once with `auth`
//! (HMAC of `GET/realtime` and an expiry); after that its messages carry no
//! signature, so keyward answers the bot's `auth` itself (the token binds the
//! connection), logs in on its own link with the real key, and sends each permitted
//! order operation with exactly the JSON body its REST twin validated.

use crate::market::{MarketPath, MarketProtocol};
use http::StatusCode;
use keyward_policy::Permit;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::signature;
use crate::stream::{
    BotMessage, Carried, Event, EventKind, LOGIN_ID, ReplyTo, Role, StreamMethod, StreamPath,
    StreamVenue, UpstreamMessage, elements_event, message, message_id, narrow_data, pairs,
    strict_object,
};
use crate::{ParseError, ParsedCall, SignContext, SignError, echo_key, json};

/// The private stream's path.
pub const PRIVATE: &str = "/v5/private";
/// Order entry's path.
pub const TRADE: &str = "/v5/trade";

const fn method(name: &'static str, role: Role, twin: Option<&'static str>) -> StreamMethod {
    StreamMethod { name, role, twin }
}

/// The private stream's operations. A subscription is decided as a read of the
/// bot's open orders: a bot that may read its orders may see their events (and the
/// account's wallet).
const PRIVATE_METHODS: &[StreamMethod] = &[
    method("auth", Role::Logon, None),
    method("ping", Role::Ping, None),
    method("subscribe", Role::Subscribe, Some("GET /v5/order/realtime")),
    method("unsubscribe", Role::Unsubscribe, None),
];

/// Order entry's operations, each the twin of the REST call with the same body.
const TRADE_METHODS: &[StreamMethod] = &[
    method("auth", Role::Logon, None),
    method("ping", Role::Ping, None),
    method("order.create", Role::Call, Some("POST /v5/order/create")),
    method("order.amend", Role::Call, Some("POST /v5/order/amend")),
    method("order.cancel", Role::Call, Some("POST /v5/order/cancel")),
    method(
        "order.create-batch",
        Role::Call,
        Some("POST /v5/order/create-batch"),
    ),
    method(
        "order.amend-batch",
        Role::Call,
        Some("POST /v5/order/amend-batch"),
    ),
    method(
        "order.cancel-batch",
        Role::Call,
        Some("POST /v5/order/cancel-batch"),
    ),
];

/// The private stream's topics keyward relays; each but `wallet` also has a form per
/// category (`order.spot`, ...). Others (greeks, fast executions, ...) are refused.
const TOPICS: &[&str] = &["order", "execution", "position", "wallet"];
const CATEGORIES: &[&str] = &["spot", "linear", "inverse", "option"];
/// The most topics one subscription names.
const MAX_TOPICS: usize = 16;
/// How long keyward's own login stays valid for Bybit to accept it.
const LOGIN_EXPIRES_MS: u64 = 10_000;
/// Order statuses after which an order is no longer open.
const CLOSED: &[&str] = &[
    "Filled",
    "Cancelled",
    "Rejected",
    "Deactivated",
    "PartiallyFilledCanceled",
];
/// The connection id keyward gives in its own answers (the venue's are per link).
const CONN_ID: &str = "keyward";

/// Bybit's private WebSockets.
#[derive(Debug)]
pub struct BybitStreams;

/// Bybit's private stream and order entry.
pub static STREAMS: BybitStreams = BybitStreams;

fn is_trade(path: &str) -> bool {
    path == TRADE
}

/// Bybit's public streams, one per product category.
const MARKET: &[MarketPath] = &[
    market("/v5/public/spot", "wss://stream.bybit.com/v5/public/spot"),
    market(
        "/v5/public/linear",
        "wss://stream.bybit.com/v5/public/linear",
    ),
    market(
        "/v5/public/inverse",
        "wss://stream.bybit.com/v5/public/inverse",
    ),
    market(
        "/v5/public/option",
        "wss://stream.bybit.com/v5/public/option",
    ),
];

const fn market(path: &'static str, upstream: &'static str) -> MarketPath {
    MarketPath {
        path,
        upstream,
        protocol: MarketProtocol::Bybit,
        messages_per_connection: None,
        messages_per_address: None,
    }
}

impl StreamVenue for BybitStreams {
    fn connections_per_address(&self) -> Option<crate::Allowance> {
        // Bybit: no more than 500 connections in 5 minutes from one IP address.
        Some(crate::Allowance::per_minutes(500, 5))
    }

    fn market_paths(&self) -> &'static [MarketPath] {
        MARKET
    }

    fn paths(&self) -> &'static [StreamPath] {
        &[
            StreamPath {
                path: PRIVATE,
                upstream: "wss://stream.bybit.com/v5/private",
            },
            StreamPath {
                path: TRADE,
                upstream: "wss://stream.bybit.com/v5/trade",
            },
        ]
    }

    fn read_message(&self, path: &str, text: &str) -> Result<BotMessage, ParseError> {
        strict_object(text)?;
        let trade = is_trade(path);
        let id_key = if trade { "reqId" } else { "req_id" };
        let mut id = "null".to_owned();
        let mut op = None;
        let mut args = None;
        for (key, value) in pairs(text).map_err(|_| message("unreadable"))? {
            if key == id_key {
                id = message_id(value)?;
            } else if key == "op" {
                op = Some(
                    serde_json::from_str::<String>(value.get())
                        .map_err(|_| message("op must be a string"))?,
                );
            } else if key == "args" {
                args = Some(
                    serde_json::from_str::<Vec<&RawValue>>(value.get())
                        .map_err(|_| message("args must be an array"))?,
                );
            } else if key == "header" && trade {
                check_header(value)?;
            } else {
                return Err(ParseError::ParamUnknown {
                    key: echo_key(&key),
                });
            }
        }
        let op = op.ok_or_else(|| message("a message needs an op"))?;
        let methods = if trade {
            TRADE_METHODS
        } else {
            PRIVATE_METHODS
        };
        let method = methods.iter().find(|m| m.name == op).ok_or_else(|| {
            ParseError::StreamMethodUnknown {
                method: echo_key(&op),
            }
        })?;
        let mut read = BotMessage {
            id,
            method,
            query: String::new(),
            body: None,
            token: None,
            carried: Carried::default(),
            instruments: Vec::new(),
        };
        let args = args.unwrap_or_default();
        match method.role {
            Role::Logon => {
                // `[apiKey, expires, signature]`: the bot's token where its client
                // puts the key; its expiry and signature are its own business.
                let [key, _expires, _signature] = args.as_slice() else {
                    return Err(message("auth takes [apiKey, expires, signature]"));
                };
                read.token = Some(
                    serde_json::from_str::<String>(key.get())
                        .map_err(|_| message("the apiKey must be a string"))?,
                );
            }
            Role::Ping => {
                if !args.is_empty() {
                    return Err(message("ping takes no args"));
                }
            }
            Role::Subscribe | Role::Unsubscribe => {
                let topics = topics(&args)?;
                // The twin needs a category; a categorised subscription names its
                // own, and the read it stands for covers the others alike.
                let category = topics
                    .iter()
                    .find_map(|t| t.split_once('.').map(|(_, c)| c))
                    .unwrap_or("linear");
                read.query = format!("category={category}");
                read.carried.topics = topics;
            }
            Role::Call => {
                let [body] = args.as_slice() else {
                    return Err(message("an order operation takes one object in args"));
                };
                if !body.get().starts_with('{') {
                    return Err(message("an order operation takes one object in args"));
                }
                read.body = Some(body.get().to_owned());
            }
            Role::Status | Role::Logout | Role::Control => {}
        }
        Ok(read)
    }

    fn login(&self, _path: &str, context: SignContext<'_>) -> Result<Option<String>, SignError> {
        let expires = context.timestamp_ms + LOGIN_EXPIRES_MS;
        let signed = signature(context, format!("GET/realtime{expires}").as_bytes())?;
        let mut out = format!("{{\"req_id\":\"{LOGIN_ID}\",\"op\":\"auth\",\"args\":[");
        json::write_string(&mut out, context.credential.api_key());
        out.push_str(&format!(",{expires},"));
        json::write_string(&mut out, &signed);
        out.push_str("]}");
        Ok(Some(out))
    }

    fn heartbeat(&self) -> Option<&'static str> {
        // Bybit keeps a connection that sends its own ping op; WebSocket pings alone
        // do not count.
        Some("{\"op\":\"ping\"}")
    }

    fn build(
        &self,
        method: &StreamMethod,
        call: &ParsedCall,
        permit: &Permit,
        carried: &Carried,
        context: SignContext<'_>,
        _link_token: Option<&str>,
        id: u64,
    ) -> Result<String, SignError> {
        if permit.endpoint() != call.endpoint.key || method.twin != Some(call.endpoint.key) {
            return Err(SignError::PermitMismatch);
        }
        let mut out = String::new();
        if method.role == Role::Subscribe {
            out.push_str(&format!(
                "{{\"req_id\":\"{id}\",\"op\":\"subscribe\",\"args\":"
            ));
            write_topics(&mut out, &carried.topics);
            out.push('}');
            return Ok(out);
        }
        // The body exactly as the twin's parser validated and wrote it.
        let body = call.body.as_deref().ok_or(SignError::Failed)?;
        out.push_str(&format!(
            "{{\"reqId\":\"{id}\",\"header\":{{\"X-BAPI-TIMESTAMP\":\"{}\",\"X-BAPI-RECV-WINDOW\":\"{}\"}},\"op\":",
            context.timestamp_ms, context.recv_window_ms
        ));
        json::write_string(&mut out, method.name);
        out.push_str(",\"args\":[");
        out.push_str(body);
        out.push_str("]}");
        Ok(out)
    }

    fn control(
        &self,
        message: &BotMessage,
        id: u64,
        _context: SignContext<'_>,
        _link_token: Option<&str>,
    ) -> Result<String, SignError> {
        let mut out = format!("{{\"req_id\":\"{id}\",\"op\":\"unsubscribe\",\"args\":");
        write_topics(&mut out, &message.carried.topics);
        out.push('}');
        Ok(out)
    }

    fn read_upstream(&self, text: &str) -> UpstreamMessage {
        #[derive(Deserialize)]
        struct Incoming<'a> {
            #[serde(borrow, alias = "reqId")]
            req_id: Option<&'a RawValue>,
            op: Option<&'a str>,
            success: Option<bool>,
            ret_msg: Option<String>,
            #[serde(rename = "retCode")]
            code: Option<i64>,
            #[serde(rename = "retMsg")]
            text: Option<String>,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
            #[serde(borrow, rename = "retExtInfo")]
            ext: Option<&'a RawValue>,
            topic: Option<&'a str>,
        }
        let Ok(incoming) = serde_json::from_str::<Incoming<'_>>(text) else {
            return UpstreamMessage::Drop;
        };
        if let (Some(topic), Some(data)) = (incoming.topic, incoming.data) {
            return UpstreamMessage::Event(Event {
                text: text.to_owned(),
                kind: event_kind(topic, data),
            });
        }
        let id = if incoming.op == Some("auth") {
            // Only keyward's own login is ever sent on a link.
            Some(LOGIN_ID)
        } else {
            incoming
                .req_id
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
                .and_then(|id| id.parse::<u64>().ok())
        };
        // Heartbeat answers concern no request.
        if matches!(incoming.op, Some("pong" | "ping")) {
            return UpstreamMessage::Drop;
        }
        let Some(id) = id else {
            return UpstreamMessage::Drop;
        };
        // The answer in REST's envelope, which the twin's outcome reading knows.
        let (code, text) = match incoming.success {
            Some(true) => (0, String::new()),
            Some(false) => (
                incoming.code.unwrap_or(10001),
                incoming.ret_msg.unwrap_or_default(),
            ),
            None => (
                incoming.code.unwrap_or(10016),
                incoming.text.unwrap_or_default(),
            ),
        };
        let mut body = format!("{{\"retCode\":{code},\"retMsg\":");
        json::write_string(&mut body, &text);
        body.push_str(",\"result\":");
        body.push_str(incoming.data.map_or("{}", RawValue::get));
        body.push_str(",\"retExtInfo\":");
        body.push_str(incoming.ext.map_or("{}", RawValue::get));
        body.push('}');
        // Bybit answers refusals with 200 and a code, which the twin's outcome
        // reading judges; keyward's own login needs its verdict in the status.
        let status = if id == LOGIN_ID && code != 0 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        UpstreamMessage::Reply {
            id,
            status,
            body: body.into_bytes(),
        }
    }

    fn narrow(&self, text: &str, keep: &dyn Fn(&str) -> bool) -> Option<String> {
        narrow_data(text, keep, element_symbol)
    }

    fn reply(&self, to: &ReplyTo<'_>, _status: StatusCode, body: &[u8]) -> String {
        #[derive(Deserialize)]
        struct Rest<'a> {
            #[serde(rename = "retCode")]
            code: i64,
            #[serde(rename = "retMsg")]
            text: String,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
            #[serde(borrow, rename = "retExtInfo")]
            ext: Option<&'a RawValue>,
        }
        let fallback = || Rest {
            code: 10016,
            text: "keyward: the exchange's answer could not be read".to_owned(),
            result: None,
            ext: None,
        };
        let rest = std::str::from_utf8(body)
            .ok()
            .and_then(|text| serde_json::from_str::<Rest<'_>>(text).ok())
            .unwrap_or_else(fallback);
        let mut out = String::from("{");
        if is_trade(to.path) {
            if to.id != "null" {
                out.push_str(&format!("\"reqId\":{},", to.id));
            }
            out.push_str(&format!("\"retCode\":{},\"retMsg\":", rest.code));
            json::write_string(&mut out, &rest.text);
            out.push_str(",\"op\":");
            json::write_string(&mut out, to.method);
            out.push_str(",\"data\":");
            out.push_str(rest.result.map_or("{}", RawValue::get));
            out.push_str(",\"retExtInfo\":");
            out.push_str(rest.ext.map_or("{}", RawValue::get));
            out.push_str(&format!(",\"header\":{{}},\"connId\":\"{CONN_ID}\"}}"));
        } else {
            if to.id != "null" {
                out.push_str(&format!("\"req_id\":{},", to.id));
            }
            let success = rest.code == 0;
            out.push_str(&format!("\"success\":{success},\"ret_msg\":"));
            json::write_string(&mut out, &rest.text);
            if !success {
                // Bybit's private stream words failures only; the code lets a client
                // tell keyward's refusals apart (ccxt maps it to its error classes).
                out.push_str(&format!(",\"retCode\":{}", rest.code));
            }
            out.push_str(",\"op\":");
            json::write_string(&mut out, to.method);
            out.push_str(&format!(",\"conn_id\":\"{CONN_ID}\"}}"));
        }
        out
    }

    fn answer(&self, to: &ReplyTo<'_>, role: Role, _bound: bool, now_ms: u64) -> String {
        let trade = is_trade(to.path);
        let id = match (to.id, trade) {
            ("null", _) => String::new(),
            (id, true) => format!("\"reqId\":{id},"),
            (id, false) => format!("\"req_id\":{id},"),
        };
        match (role, trade) {
            (Role::Ping, true) => format!(
                "{{{id}\"retCode\":0,\"retMsg\":\"OK\",\"op\":\"pong\",\"data\":[\"{now_ms}\"],\"connId\":\"{CONN_ID}\"}}"
            ),
            (Role::Ping, false) => {
                format!("{{{id}\"op\":\"pong\",\"args\":[\"{now_ms}\"],\"conn_id\":\"{CONN_ID}\"}}")
            }
            _ => self.reply(
                to,
                StatusCode::OK,
                b"{\"retCode\":0,\"retMsg\":\"OK\",\"result\":{}}",
            ),
        }
    }
}

/// A trade message's `header`: the client's timestamp and receive window (keyward
/// sends its own) and a broker's `Referer` (not passed on); nothing else.
fn check_header(value: &RawValue) -> Result<(), ParseError> {
    let fields = pairs(value.get()).map_err(|_| message("header must be an object"))?;
    for (key, value) in fields {
        if !matches!(
            key.as_str(),
            "X-BAPI-TIMESTAMP" | "X-BAPI-RECV-WINDOW" | "Referer"
        ) {
            return Err(ParseError::ParamUnknown {
                key: echo_key(&key),
            });
        }
        let raw = value.get();
        if !(raw.starts_with('"') || raw.bytes().all(|b| b.is_ascii_digit())) {
            return Err(message("header values must be strings or integers"));
        }
    }
    Ok(())
}

/// A subscription's topics: strings, each one the private stream serves, the
/// all-in-one and categorised forms never mixed (Bybit refuses that too).
fn topics(args: &[&RawValue]) -> Result<Vec<String>, ParseError> {
    if args.is_empty() || args.len() > MAX_TOPICS {
        return Err(message("a subscription names 1 to 16 topics"));
    }
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        let topic: String =
            serde_json::from_str(arg.get()).map_err(|_| message("topics must be strings"))?;
        let known = match topic.split_once('.') {
            None => TOPICS.contains(&topic.as_str()),
            Some((base, category)) => {
                base != "wallet" && TOPICS.contains(&base) && CATEGORIES.contains(&category)
            }
        };
        if !known {
            return Err(ParseError::invalid(
                "args",
                "private topics: order, execution, position, wallet, or order.spot and the like",
            ));
        }
        out.push(topic);
    }
    let categorised = out.iter().filter(|t| t.contains('.')).count();
    if categorised != 0 && categorised != out.len() {
        return Err(message(
            "all-in-one and categorised topics cannot be in one subscription",
        ));
    }
    Ok(out)
}

fn write_topics(out: &mut String, topics: &[String]) {
    out.push('[');
    for (index, topic) in topics.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        json::write_string(out, topic);
    }
    out.push(']');
}

/// What an event is about: orders, executions and positions are about the symbols
/// of their elements (`category:symbol`, as the policy names them), the wallet about
/// the account.
fn event_kind(topic: &str, data: &RawValue) -> EventKind {
    let base = topic.split('.').next().unwrap_or_default();
    if base == "wallet" {
        return EventKind::Account;
    }
    if !matches!(base, "order" | "execution" | "position") {
        return EventKind::Unknown;
    }
    #[derive(Deserialize)]
    struct Closing<'a> {
        #[serde(rename = "orderStatus")]
        status: Option<&'a str>,
        #[serde(rename = "orderId")]
        id: Option<&'a str>,
    }
    let closed_id = |element: &RawValue| match serde_json::from_str::<Closing<'_>>(element.get()) {
        Ok(Closing {
            status: Some(status),
            id: Some(id),
        }) if base == "order" && CLOSED.contains(&status) => Some(id.to_owned()),
        _ => None,
    };
    elements_event(data, element_symbol, &closed_id)
}

/// An event element's `category:symbol`; empty (which no bot may see) when it
/// names neither.
fn element_symbol(element: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Named<'a> {
        category: Option<&'a str>,
        symbol: Option<&'a str>,
    }
    match serde_json::from_str::<Named<'_>>(element.get()) {
        Ok(Named {
            category: Some(category),
            symbol: Some(symbol),
        }) => format!("{category}:{symbol}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_binds_the_token_and_order_operations_carry_their_rest_body() {
        let auth = STREAMS
            .read_message(
                PRIVATE,
                r#"{"op":"auth","args":["kw_tok",1662350400000,"bots-own"]}"#,
            )
            .expect("reads");
        assert_eq!(auth.method.role, Role::Logon);
        assert_eq!(auth.token.as_deref(), Some("kw_tok"));
        assert_eq!(auth.id, "null");

        let create = STREAMS
            .read_message(
                TRADE,
                r#"{"reqId":"r1","header":{"X-BAPI-TIMESTAMP":"1","X-BAPI-RECV-WINDOW":"8000"},"op":"order.create","args":[{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}]}"#,
            )
            .expect("reads");
        assert_eq!(create.method.twin, Some("POST /v5/order/create"));
        assert_eq!(create.id, "\"r1\"");
        assert_eq!(
            create.body.as_deref(),
            Some(
                r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#
            )
        );

        let subscribe = STREAMS
            .read_message(
                PRIVATE,
                r#"{"req_id":7,"op":"subscribe","args":["order.spot"]}"#,
            )
            .expect("reads");
        assert_eq!(subscribe.query, "category=spot");
        assert_eq!(subscribe.carried.topics, ["order.spot"]);
    }

    #[test]
    fn malformed_messages_are_refused_by_name() {
        let refused = |path: &str, text: &str| {
            STREAMS
                .read_message(path, text)
                .expect_err("refused")
                .reason()
        };
        assert_eq!(
            refused(
                TRADE,
                r#"{"op":"order.create","op":"order.cancel","args":[{}]}"#
            ),
            "json_duplicate_key"
        );
        assert_eq!(
            refused(TRADE, r#"{"op":"order.create","args":[{},{}]}"#),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(TRADE, r#"{"op":"order.create","args":["x"]}"#),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(TRADE, r#"{"op":"withdraw","args":[{}]}"#),
            "stream_method_unknown"
        );
        // Order entry is not served on the private stream, subscriptions not on
        // order entry.
        assert_eq!(
            refused(PRIVATE, r#"{"op":"order.create","args":[{}]}"#),
            "stream_method_unknown"
        );
        assert_eq!(
            refused(TRADE, r#"{"op":"subscribe","args":["order"]}"#),
            "stream_method_unknown"
        );
        assert_eq!(
            refused(
                TRADE,
                r#"{"op":"order.create","header":{"X-Other":"1"},"args":[{}]}"#
            ),
            "param_unknown"
        );
        assert_eq!(
            refused(
                PRIVATE,
                r#"{"op":"subscribe","args":["orderbook.1.BTCUSDT"]}"#
            ),
            "param_invalid"
        );
        assert_eq!(
            refused(
                PRIVATE,
                r#"{"op":"subscribe","args":["order","order.spot"]}"#
            ),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(PRIVATE, r#"{"op":"auth","args":["kw_tok"]}"#),
            "stream_message_invalid"
        );
    }

    /// keyward's login is Bybit's documented WebSocket authentication
    /// (vectors.json, bybit v5 private WS: expires 1662350400000).
    #[test]
    fn the_login_signature_is_the_documented_one() {
        let vector = crate::testkit::vectors("bybit")
            .into_iter()
            .find(|v| v["id"] == "bybit-v5-ws-auth-DERIVED")
            .expect("the WebSocket vector");
        let inputs = &vector["inputs"];
        let signer = crate::test_signer::TestSigner::hmac(
            "key",
            inputs["secret"].as_str().expect("secret").as_bytes(),
        );
        let expires: u64 = inputs["expires"]
            .as_str()
            .and_then(|e| e.parse().ok())
            .expect("expires");
        let login = STREAMS
            .login(
                PRIVATE,
                SignContext {
                    credential: &signer,
                    timestamp_ms: expires - LOGIN_EXPIRES_MS,
                    recv_window_ms: 5000,
                    nonce: 0,
                },
            )
            .expect("signs")
            .expect("Bybit logs in");
        let sent: serde_json::Value = serde_json::from_str(&login).expect("JSON");
        assert_eq!(sent["op"], "auth");
        assert_eq!(sent["args"][1], expires);
        assert_eq!(sent["args"][2], vector["expected"]["signature"]);
        assert_eq!(sent["args"][1], vector["expected"]["frame"]["args"][1]);
    }

    #[test]
    fn replies_become_rest_answers_and_back() {
        let reply = STREAMS.read_upstream(
            r#"{"reqId":"5","retCode":0,"retMsg":"OK","op":"order.create","data":{"orderId":"1","orderLinkId":""},"retExtInfo":{},"header":{},"connId":"c"}"#,
        );
        let UpstreamMessage::Reply { id, body, .. } = reply else {
            panic!("a reply: {reply:?}");
        };
        assert_eq!(id, 5);
        let rest = String::from_utf8(body).expect("text");
        assert_eq!(
            rest,
            r#"{"retCode":0,"retMsg":"OK","result":{"orderId":"1","orderLinkId":""},"retExtInfo":{}}"#
        );
        let to = ReplyTo {
            path: TRADE,
            method: "order.create",
            id: "\"bot-1\"",
        };
        let back: serde_json::Value =
            serde_json::from_str(&STREAMS.reply(&to, StatusCode::OK, rest.as_bytes()))
                .expect("JSON");
        assert_eq!(back["reqId"], "bot-1");
        assert_eq!(back["retCode"], 0);
        assert_eq!(back["op"], "order.create");
        assert_eq!(back["data"]["orderId"], "1");

        // keyward's login answer, whatever its id, its verdict in the status.
        assert!(matches!(
            STREAMS.read_upstream(
                r#"{"success":false,"ret_msg":"Request not authorized","op":"auth","conn_id":"c"}"#
            ),
            UpstreamMessage::Reply {
                id: LOGIN_ID,
                status: StatusCode::UNAUTHORIZED,
                ..
            }
        ));
        assert!(matches!(
            STREAMS.read_upstream(r#"{"success":true,"ret_msg":"","op":"auth","conn_id":"c"}"#),
            UpstreamMessage::Reply {
                id: LOGIN_ID,
                status: StatusCode::OK,
                ..
            }
        ));
        assert_eq!(
            STREAMS.read_upstream(r#"{"op":"pong","args":["1"],"conn_id":"c"}"#),
            UpstreamMessage::Drop
        );
        // A refusal on the private stream says so in its own style, with the code.
        let refused: serde_json::Value = serde_json::from_str(&STREAMS.reply(
            &ReplyTo {
                path: PRIVATE,
                method: "subscribe",
                id: "3",
            },
            StatusCode::FORBIDDEN,
            br#"{"retCode":10005,"retMsg":"keyward: endpoint_not_allowed: no","result":{}}"#,
        ))
        .expect("JSON");
        assert_eq!(refused["success"], false);
        assert_eq!(refused["req_id"], 3);
        assert_eq!(refused["retCode"], 10005);
    }

    #[test]
    fn events_name_each_elements_symbol_and_narrow_to_the_bots() {
        let event = r#"{"id":"e1","topic":"order","creationTime":1,"data":[{"category":"spot","symbol":"BTCUSDT","orderId":"1","orderStatus":"Filled"},{"category":"linear","symbol":"ETHUSDT","orderId":"2","orderStatus":"New"},{"symbol":"XRPUSDT"}]}"#;
        let UpstreamMessage::Event(Event { kind, .. }) = STREAMS.read_upstream(event) else {
            panic!("an event");
        };
        assert_eq!(
            kind,
            EventKind::Order {
                symbols: vec![
                    "spot:BTCUSDT".to_owned(),
                    "linear:ETHUSDT".to_owned(),
                    String::new()
                ],
                closed: vec![("spot:BTCUSDT".to_owned(), "1".to_owned())],
            }
        );
        let narrowed = STREAMS
            .narrow(event, &|symbol| symbol == "spot:BTCUSDT")
            .expect("one element left");
        let narrowed: serde_json::Value = serde_json::from_str(&narrowed).expect("JSON");
        assert_eq!(narrowed["data"].as_array().map(Vec::len), Some(1));
        assert_eq!(narrowed["data"][0]["orderId"], "1");
        assert_eq!(narrowed["topic"], "order");
        assert!(STREAMS.narrow(event, &|_| false).is_none());
        let wallet =
            r#"{"id":"w","topic":"wallet","creationTime":1,"data":[{"accountType":"UNIFIED"}]}"#;
        assert!(matches!(
            STREAMS.read_upstream(wallet),
            UpstreamMessage::Event(Event {
                kind: EventKind::Account,
                ..
            })
        ));
        let greeks = r#"{"id":"g","topic":"greeks","creationTime":1,"data":[{"baseCoin":"BTC"}]}"#;
        assert!(matches!(
            STREAMS.read_upstream(greeks),
            UpstreamMessage::Event(Event {
                kind: EventKind::Unknown,
                ..
            })
        ));
    }
}
