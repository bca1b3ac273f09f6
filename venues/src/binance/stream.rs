//! Binance's WebSocket APIs (spot `/ws-api/v3`, USDⓈ-M `/ws-fapi/v1`): each method a
//! bot may send and the REST endpoint it is decided as, keyward's signed requests
//! (every parameter but `signature`, sorted by name, joined as `key=value` with raw
//! UTF-8 values: the WebSocket API does not percent-encode), and the reading of
//! Binance's replies and user-data events.

use crate::Allowance;
use crate::market::{MarketPath, MarketProtocol};
use http::StatusCode;
use keyward_policy::Permit;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::signature;
use crate::stream::{
    BotMessage, Carried, Event, EventKind, ListenKeyOp, ReplyTo, Role, StreamMethod, StreamPath,
    StreamVenue, UpstreamMessage, envelope, scalar,
};
use crate::{ParseError, ParsedCall, Security, SignContext, SignError, echo_key, form};

macro_rules! method {
    ($name:literal, $role:ident, $twin:literal) => {
        StreamMethod {
            name: $name,
            role: Role::$role,
            twin: Some($twin),
        }
    };
    ($name:literal, $role:ident) => {
        StreamMethod {
            name: $name,
            role: Role::$role,
            twin: None,
        }
    };
}

/// The spot WebSocket API's methods keyward serves. The user data stream is
/// decided as a read of the bot's open orders: a bot that may read its orders may
/// see their events (and, by default, the account's balances).
const SPOT_METHODS: &[StreamMethod] = &[
    method!("order.place", Call, "POST /api/v3/order"),
    method!("order.test", Call, "POST /api/v3/order/test"),
    method!("order.cancel", Call, "DELETE /api/v3/order"),
    method!(
        "order.cancelReplace",
        Call,
        "POST /api/v3/order/cancelReplace"
    ),
    method!("openOrders.cancelAll", Call, "DELETE /api/v3/openOrders"),
    method!("orderList.place.oco", Call, "POST /api/v3/orderList/oco"),
    method!("orderList.place.oto", Call, "POST /api/v3/orderList/oto"),
    method!(
        "orderList.place.otoco",
        Call,
        "POST /api/v3/orderList/otoco"
    ),
    method!("orderList.cancel", Call, "DELETE /api/v3/orderList"),
    method!("sor.order.place", Call, "POST /api/v3/sor/order"),
    method!("sor.order.test", Call, "POST /api/v3/sor/order/test"),
    method!("order.status", Call, "GET /api/v3/order"),
    method!("openOrders.status", Call, "GET /api/v3/openOrders"),
    method!("allOrders", Call, "GET /api/v3/allOrders"),
    method!("myTrades", Call, "GET /api/v3/myTrades"),
    method!("orderList.status", Call, "GET /api/v3/orderList"),
    method!("openOrderLists.status", Call, "GET /api/v3/openOrderList"),
    method!("allOrderLists", Call, "GET /api/v3/allOrderList"),
    method!("account.status", Call, "GET /api/v3/account"),
    method!("account.commission", Call, "GET /api/v3/account/commission"),
    method!(
        "account.rateLimits.orders",
        Call,
        "GET /api/v3/rateLimit/order"
    ),
    method!("ping", Call, "GET /api/v3/ping"),
    method!("time", Call, "GET /api/v3/time"),
    method!("avgPrice", Call, "GET /api/v3/avgPrice"),
    method!("depth", Call, "GET /api/v3/depth"),
    method!("trades.recent", Call, "GET /api/v3/trades"),
    method!("klines", Call, "GET /api/v3/klines"),
    method!("ticker.price", Call, "GET /api/v3/ticker/price"),
    method!("ticker.book", Call, "GET /api/v3/ticker/bookTicker"),
    method!(
        "userDataStream.subscribe.signature",
        Subscribe,
        "GET /api/v3/openOrders"
    ),
    method!("userDataStream.unsubscribe", Unsubscribe),
    method!("session.logon", Logon),
    method!("session.status", Status),
    method!("session.logout", Logout),
];

/// The USDⓈ-M WebSocket API's methods keyward serves (its user data arrives on a
/// listenKey stream of its own, not on this connection).
const USDM_METHODS: &[StreamMethod] = &[
    method!("order.place", Call, "POST /fapi/v1/order"),
    method!("order.modify", Call, "PUT /fapi/v1/order"),
    method!("order.cancel", Call, "DELETE /fapi/v1/order"),
    method!("order.status", Call, "GET /fapi/v1/order"),
    method!("v2/account.status", Call, "GET /fapi/v2/account"),
    method!("v2/account.balance", Call, "GET /fapi/v2/balance"),
    method!("v2/account.position", Call, "GET /fapi/v2/positionRisk"),
    method!("ping", Call, "GET /fapi/v1/ping"),
    method!("time", Call, "GET /fapi/v1/time"),
    method!("session.logon", Logon),
    method!("session.status", Status),
    method!("session.logout", Logout),
];

/// USDⓈ-M's listenKey endpoint, which keyward answers with keys of its own.
pub const LISTEN_KEY_PATH: &str = "/fapi/v1/listenKey";
/// The path keyward serves USDⓈ-M's user data stream on (as Binance does, with the
/// key in the query); `/ws/KEY` is served too.
pub const USER_STREAM_PATH: &str = "/private/ws";
/// Binance's listenKeys are 64 letters and digits; keyward's look the same.
const LISTEN_KEY_MAX: usize = 64;

/// One Binance product's WebSocket API.
#[derive(Debug)]
pub struct BinanceStreams {
    paths: &'static [StreamPath],
    /// Public market data relayed without a token.
    market: &'static [MarketPath],
    methods: &'static [StreamMethod],
    /// Whether the product's user data arrives on a listenKey stream (USDⓈ-M).
    listen_keys: bool,
}

/// Binance spot's WebSocket API.
pub static SPOT_STREAMS: BinanceStreams = BinanceStreams {
    paths: &[StreamPath {
        path: "/ws-api/v3",
        upstream: "wss://ws-api.binance.com/ws-api/v3",
    }],
    // Subscriptions by message on `/ws`; a stream named in the URL (`/ws/NAME`,
    // `/stream?streams=`) is not relayed.
    market: &[MarketPath {
        path: "/ws",
        upstream: "wss://stream.binance.com:9443/ws",
        protocol: MarketProtocol::Binance,
        // Binance spot allows 5 incoming messages a second on a market-data
        // connection, pongs included: one is left for keyward's.
        messages_per_connection: Some(Allowance::per_second(4)),
        messages_per_address: None,
    }],
    methods: SPOT_METHODS,
    listen_keys: false,
};

/// Binance USDⓈ-M's WebSocket API.
pub static USDM_STREAMS: BinanceStreams = BinanceStreams {
    paths: &[
        StreamPath {
            path: "/ws-fapi/v1",
            upstream: "wss://ws-fapi.binance.com/ws-fapi/v1",
        },
        // The user data stream, reached with a listenKey (`?listenKey=`, or as
        // `/ws/KEY`): a connection without one gets nothing on it.
        StreamPath {
            path: USER_STREAM_PATH,
            upstream: "wss://fstream.binance.com/private/ws",
        },
    ],
    // USDⓈ-M's market streams, on the paths Binance gives them by kind (clients
    // such as ccxt rewrite `/ws` to these).
    market: &[
        MarketPath {
            path: "/public/ws",
            upstream: "wss://fstream.binance.com/public/ws",
            protocol: MarketProtocol::Binance,
            // USDⓈ-M allows 10 incoming messages a second, pongs included.
            messages_per_connection: Some(Allowance::per_second(9)),
            messages_per_address: None,
        },
        MarketPath {
            path: "/market/ws",
            upstream: "wss://fstream.binance.com/market/ws",
            protocol: MarketProtocol::Binance,
            // USDⓈ-M allows 10 incoming messages a second, pongs included.
            messages_per_connection: Some(Allowance::per_second(9)),
            messages_per_address: None,
        },
    ],
    methods: USDM_METHODS,
    listen_keys: true,
};

impl StreamVenue for BinanceStreams {
    fn connections_per_address(&self) -> Option<Allowance> {
        // Binance: 300 connection attempts in 5 minutes from one IP address
        // (documented for spot's WebSocket API and market streams; USDⓈ-M's hosts
        // are held to the same).
        Some(Allowance::per_minutes(300, 5))
    }

    fn paths(&self) -> &'static [StreamPath] {
        self.paths
    }

    fn market_paths(&self) -> &'static [MarketPath] {
        self.market
    }

    fn read_message(&self, path: &str, text: &str) -> Result<BotMessage, ParseError> {
        if path == USER_STREAM_PATH {
            return Err(crate::stream::message(
                "the user data stream takes no messages",
            ));
        }
        let envelope = envelope(text, "id", "method", "params")?;
        let method = self
            .methods
            .iter()
            .find(|m| m.name == envelope.method)
            .ok_or_else(|| ParseError::StreamMethodUnknown {
                method: echo_key(&envelope.method),
            })?;
        let mut pairs = Vec::with_capacity(envelope.params.len());
        let mut token = None;
        let mut literals = Vec::new();
        for (key, value) in envelope.params {
            let (text, literal) = scalar(value)?;
            if key == "apiKey" {
                // Where the client puts the API key, the bot puts its keyward token.
                token = Some(text);
                continue;
            }
            if key == "returnRateLimits" {
                // It only shapes the reply, which keyward builds without the
                // account's rate limits either way; ccxt sends it with every message.
                if !matches!(text.as_str(), "true" | "false") {
                    return Err(ParseError::invalid("returnRateLimits", "true or false"));
                }
                continue;
            }
            if literal {
                literals.push(key.clone());
            }
            pairs.push((key, text));
        }
        let mut topics = Vec::new();
        if method.role == Role::Unsubscribe {
            // The subscription to end, as Binance numbered it.
            let subscription = pairs
                .iter()
                .find(|(key, _)| key == "subscriptionId")
                .map(|(_, value)| value.clone())
                .filter(|value| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(ParseError::ParamMissing {
                    key: "subscriptionId",
                })?;
            topics.push(subscription);
        }
        let query = form::encode_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(BotMessage {
            id: envelope
                .id
                .ok_or_else(|| crate::stream::message("a message needs an id"))?,
            method,
            query,
            body: None,
            token,
            carried: Carried {
                literals,
                topics,
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
        id: u64,
    ) -> Result<String, SignError> {
        if permit.endpoint() != call.endpoint.key || method.twin != Some(call.endpoint.key) {
            return Err(SignError::PermitMismatch);
        }
        let mut params: Vec<(&str, String, bool)> = call
            .params
            .iter()
            .map(|(key, value)| {
                let literal = carried.literals.iter().any(|l| l == key);
                (*key, value.clone(), literal)
            })
            .collect();
        let security = call.endpoint.security;
        if security != Security::Public {
            params.push(("apiKey", context.credential.api_key().to_owned(), false));
        }
        if security == Security::Signed {
            params.push(("recvWindow", context.recv_window_ms.to_string(), true));
            params.push(("timestamp", context.timestamp_ms.to_string(), true));
        }
        params.sort_by(|a, b| a.0.cmp(b.0));
        if security == Security::Signed {
            let payload = params
                .iter()
                .map(|(key, value, _)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join("&");
            let signature = signature(context, payload.as_bytes())?;
            params.push(("signature", signature, false));
        }
        let mut out = format!("{{\"id\":{id},\"method\":");
        crate::json::write_string(&mut out, method.name);
        out.push_str(",\"params\":{");
        for (index, (key, value, literal)) in params.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            crate::json::write_string(&mut out, key);
            out.push(':');
            if *literal {
                out.push_str(value);
            } else {
                crate::json::write_string(&mut out, value);
            }
        }
        out.push_str("}}");
        Ok(out)
    }

    fn control(
        &self,
        message: &BotMessage,
        id: u64,
        _context: SignContext<'_>,
        _link_token: Option<&str>,
    ) -> Result<String, SignError> {
        let subscription = message.carried.topics.first().ok_or(SignError::Failed)?;
        Ok(format!(
            "{{\"id\":{id},\"method\":\"userDataStream.unsubscribe\",\"params\":{{\"subscriptionId\":{subscription}}}}}"
        ))
    }

    fn read_upstream(&self, text: &str) -> UpstreamMessage {
        #[derive(Deserialize)]
        struct Incoming<'a> {
            id: Option<u64>,
            status: Option<u16>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
            #[serde(borrow)]
            error: Option<&'a RawValue>,
            #[serde(rename = "subscriptionId")]
            subscription: Option<u64>,
            #[serde(borrow)]
            event: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct EventHead<'a> {
            #[serde(rename = "e")]
            kind: &'a str,
            #[serde(rename = "s")]
            symbol: Option<String>,
            /// An execution report's order status.
            #[serde(rename = "X")]
            status: Option<&'a str>,
            /// An execution report's order id.
            #[serde(rename = "i")]
            order_id: Option<u64>,
        }
        let Ok(incoming) = serde_json::from_str::<Incoming<'_>>(text) else {
            return UpstreamMessage::Drop;
        };
        if let (Some(id), Some(status)) = (incoming.id, incoming.status) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = incoming
                .result
                .or(incoming.error)
                .map_or_else(|| b"null".to_vec(), |raw| raw.get().as_bytes().to_vec());
            return UpstreamMessage::Reply { id, status, body };
        }
        let (Some(_), Some(event)) = (incoming.subscription, incoming.event) else {
            // USDⓈ-M's listenKey stream sends its events bare.
            return if self.listen_keys {
                futures_event(text)
            } else {
                UpstreamMessage::Drop
            };
        };
        let Ok(head) = serde_json::from_str::<EventHead<'_>>(event.get()) else {
            return UpstreamMessage::Drop;
        };
        let closed = match (head.kind, head.status, head.order_id, &head.symbol) {
            (
                "executionReport",
                Some("FILLED" | "CANCELED" | "REJECTED" | "EXPIRED" | "EXPIRED_IN_MATCH"),
                Some(id),
                Some(symbol),
            ) => vec![(symbol.clone(), id.to_string())],
            _ => Vec::new(),
        };
        let kind = match (head.kind, head.symbol) {
            ("executionReport" | "listStatus", Some(symbol)) => EventKind::Order {
                symbols: vec![symbol],
                closed,
            },
            ("outboundAccountPosition" | "balanceUpdate" | "externalLockUpdate", _) => {
                EventKind::Account
            }
            ("eventStreamTerminated", _) => EventKind::Control,
            _ => EventKind::Unknown,
        };
        UpstreamMessage::Event(Event {
            text: text.to_owned(),
            kind,
        })
    }

    fn listen_key_of(&self, path: &str, query: &str) -> Option<String> {
        if !self.listen_keys {
            return None;
        }
        let key = match (path, query) {
            (USER_STREAM_PATH, query) => query.strip_prefix("listenKey=")?,
            (path, "") => path.strip_prefix("/ws/")?,
            _ => return None,
        };
        (!key.is_empty()
            && key.len() <= LISTEN_KEY_MAX
            && key.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| key.to_owned())
    }

    fn user_stream_target(&self, real_key: &str) -> Option<String> {
        self.listen_keys
            .then(|| format!("{USER_STREAM_PATH}?listenKey={real_key}"))
    }

    fn listen_key_op(&self, endpoint_key: &str) -> Option<ListenKeyOp> {
        if !self.listen_keys {
            return None;
        }
        match endpoint_key.split_once(' ') {
            Some(("POST", LISTEN_KEY_PATH)) => Some(ListenKeyOp::Create),
            Some(("PUT", LISTEN_KEY_PATH)) => Some(ListenKeyOp::KeepAlive),
            Some(("DELETE", LISTEN_KEY_PATH)) => Some(ListenKeyOp::Close),
            _ => None,
        }
    }

    fn listen_key_request(
        &self,
        op: ListenKeyOp,
        context: SignContext<'_>,
    ) -> Option<Result<crate::Outbound, SignError>> {
        if !self.listen_keys {
            return None;
        }
        let method = match op {
            ListenKeyOp::Create => http::Method::POST,
            ListenKeyOp::KeepAlive => http::Method::PUT,
            ListenKeyOp::Close => http::Method::DELETE,
        };
        // The key's own endpoint takes the API key alone, in Binance's header.
        let outbound = super::api_key_header(context).map(|header| crate::Outbound {
            method,
            path_and_query: LISTEN_KEY_PATH.to_owned(),
            headers: vec![header],
            body: Vec::new(),
        });
        Some(outbound)
    }

    fn minted_answer(&self, op: ListenKeyOp, key: Option<&str>) -> (StatusCode, Vec<u8>) {
        match (op, key) {
            (ListenKeyOp::Create, Some(key)) => {
                let mut body = String::from("{\"listenKey\":");
                crate::json::write_string(&mut body, key);
                body.push('}');
                (StatusCode::OK, body.into_bytes())
            }
            (_, Some(_)) => (StatusCode::OK, b"{}".to_vec()),
            // Binance's own answer to a keep-alive of no key.
            (_, None) => (
                StatusCode::BAD_REQUEST,
                b"{\"code\":-1125,\"msg\":\"keyward: This listenKey does not exist.\"}".to_vec(),
            ),
        }
    }

    fn read_listen_key(&self, body: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "listenKey")]
            key: String,
        }
        let key = serde_json::from_slice::<Answer>(body).ok()?.key;
        (!key.is_empty()
            && key.len() <= LISTEN_KEY_MAX
            && key.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(key)
    }

    fn reply(&self, to: &ReplyTo<'_>, status: StatusCode, body: &[u8]) -> String {
        let id = to.id;
        let field = if status.is_success() {
            "result"
        } else {
            "error"
        };
        let value = match std::str::from_utf8(body) {
            Ok(text) if serde_json::from_str::<&RawValue>(text).is_ok() => text.trim().to_owned(),
            _ => {
                let mut quoted = String::new();
                crate::json::write_string(&mut quoted, "the exchange's answer could not be read");
                format!("{{\"code\":-1000,\"msg\":{quoted}}}")
            }
        };
        // Clients read `rateLimits` (binance-sdk-spot requires it). keyward does not
        // pass on the account's counters, which every bot of the account moves; its
        // own limits are the ones that bind the bot.
        format!(
            "{{\"id\":{id},\"status\":{},\"{field}\":{value},\"rateLimits\":[]}}",
            status.as_u16()
        )
    }

    fn answer(&self, to: &ReplyTo<'_>, role: Role, bound: bool, now_ms: u64) -> String {
        let body = match role {
            // `session.logon`, `session.status` and `session.logout` answer with the
            // session's state; keyward's session is the bot's binding.
            Role::Logon | Role::Status | Role::Logout => {
                let authorized = if bound {
                    now_ms.to_string()
                } else {
                    "null".to_owned()
                };
                format!(
                    "{{\"authorizedSince\":{authorized},\"connectedSince\":{now_ms},\"returnRateLimits\":false,\"serverTime\":{now_ms},\"userDataStream\":false}}"
                )
            }
            _ => "{}".to_owned(),
        };
        self.reply(to, StatusCode::OK, body.as_bytes())
    }
}

/// An event of USDⓈ-M's listenKey stream: `ORDER_TRADE_UPDATE` (its order under `o`)
/// and `TRADE_LITE` are about their symbol, the account and margin events about the
/// account, `listenKeyExpired` about the stream itself.
fn futures_event(text: &str) -> UpstreamMessage {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "e")]
        kind: &'a str,
        #[serde(rename = "s")]
        symbol: Option<String>,
        #[serde(borrow, rename = "o")]
        order: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Order<'a> {
        #[serde(rename = "s")]
        symbol: String,
        #[serde(rename = "X")]
        status: Option<&'a str>,
        #[serde(rename = "i")]
        id: Option<u64>,
    }
    let Ok(head) = serde_json::from_str::<Head<'_>>(text) else {
        return UpstreamMessage::Drop;
    };
    let kind = match head.kind {
        "ORDER_TRADE_UPDATE" => match head
            .order
            .and_then(|order| serde_json::from_str::<Order<'_>>(order.get()).ok())
        {
            Some(order) => {
                let closed = match (order.status, order.id) {
                    (Some("FILLED" | "CANCELED" | "EXPIRED" | "REJECTED"), Some(id)) => {
                        vec![(order.symbol.clone(), id.to_string())]
                    }
                    _ => Vec::new(),
                };
                EventKind::Order {
                    symbols: vec![order.symbol],
                    closed,
                }
            }
            None => EventKind::Unknown,
        },
        "TRADE_LITE" => match head.symbol {
            Some(symbol) => EventKind::Order {
                symbols: vec![symbol],
                closed: Vec::new(),
            },
            None => EventKind::Unknown,
        },
        "ACCOUNT_UPDATE" | "MARGIN_CALL" | "ACCOUNT_CONFIG_UPDATE" => EventKind::Account,
        // It names the venue's real key, which no bot may learn: withheld (the
        // venue closes the stream, and the bot's closes with it).
        "listenKeyExpired" => EventKind::Unknown,
        _ => EventKind::Unknown,
    };
    UpstreamMessage::Event(Event {
        text: text.to_owned(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_as_its_rest_twin_with_the_token_taken_out() {
        let message = SPOT_STREAMS
            .read_message(
                "/ws-api/v3",
                r#"{"id":"a1","method":"order.place","params":{"apiKey":"kw_tok","symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.01","price":60000,"timestamp":1,"signature":"x"}}"#,
            )
            .expect("reads");
        assert_eq!(message.id, "\"a1\"");
        assert_eq!(message.method.twin, Some("POST /api/v3/order"));
        assert_eq!(message.token.as_deref(), Some("kw_tok"));
        assert_eq!(
            message.query,
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=60000&timestamp=1&signature=x"
        );
        assert_eq!(message.carried.literals, ["price", "timestamp"]);
        let printed = format!("{message:?}");
        assert!(!printed.contains("kw_tok"), "{printed}");
        assert!(
            !printed.contains("BTCUSDT"),
            "parameters are not printed: {printed}"
        );
    }

    #[test]
    fn usdm_user_stream_urls_keys_and_events_are_read() {
        let key = "a".repeat(64);
        assert_eq!(
            USDM_STREAMS.listen_key_of("/private/ws", &format!("listenKey={key}")),
            Some(key.clone())
        );
        assert_eq!(
            USDM_STREAMS.listen_key_of(&format!("/ws/{key}"), ""),
            Some(key.clone())
        );
        assert_eq!(USDM_STREAMS.listen_key_of("/ws/a-b", ""), None);
        assert_eq!(
            USDM_STREAMS.listen_key_of("/private/ws", "listenKey=x&x=1"),
            None
        );
        assert_eq!(SPOT_STREAMS.listen_key_of(&format!("/ws/{key}"), ""), None);
        assert_eq!(
            USDM_STREAMS.listen_key_op("POST /fapi/v1/listenKey"),
            Some(ListenKeyOp::Create)
        );
        assert_eq!(USDM_STREAMS.listen_key_op("GET /fapi/v1/order"), None);
        assert_eq!(
            USDM_STREAMS.read_listen_key(format!("{{\"listenKey\":\"{key}\"}}").as_bytes()),
            Some(key)
        );
        let update = r#"{"e":"ORDER_TRADE_UPDATE","E":1,"T":1,"o":{"s":"BTCUSDT","c":"x","X":"FILLED","i":8}}"#;
        assert_eq!(
            USDM_STREAMS.read_upstream(update),
            UpstreamMessage::Event(Event {
                text: update.to_owned(),
                kind: EventKind::Order {
                    symbols: vec!["BTCUSDT".to_owned()],
                    closed: vec![("BTCUSDT".to_owned(), "8".to_owned())],
                }
            })
        );
        assert!(matches!(
            USDM_STREAMS.read_upstream(r#"{"e":"ACCOUNT_UPDATE","E":1,"a":{}}"#),
            UpstreamMessage::Event(Event {
                kind: EventKind::Account,
                ..
            })
        ));
        // Spot's API sends no bare events: one is dropped there.
        assert_eq!(SPOT_STREAMS.read_upstream(update), UpstreamMessage::Drop);
        assert!(USDM_STREAMS.read_message(USER_STREAM_PATH, "{}").is_err());
    }

    #[test]
    fn malformed_messages_are_refused_by_name() {
        let refused = |text: &str| {
            SPOT_STREAMS
                .read_message("/ws-api/v3", text)
                .expect_err("refused")
                .reason()
        };
        assert_eq!(refused("[1]"), "stream_message_invalid");
        assert_eq!(
            refused("{\"id\":1,\"method\":\"order.place\"} x"),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(r#"{"id":1,"method":"order.place","params":{"symbol":"A","symbol":"B"}}"#),
            "json_duplicate_key"
        );
        assert_eq!(
            refused(r#"{"id":1,"method":"order.place","para\u006ds":{},"params":{}}"#),
            "json_duplicate_key"
        );
        assert_eq!(
            refused(r#"{"id":1,"method":"withdraw.apply","params":{}}"#),
            "stream_method_unknown"
        );
        assert_eq!(
            refused(r#"{"id":1,"method":"order.place","params":{"symbol":["A"]}}"#),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(r#"{"id":null,"method":"time"}"#),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(r#"{"id":1,"method":"time","extra":1}"#),
            "param_unknown"
        );
        // A USDⓈ-M method is unknown on the spot API.
        assert_eq!(
            refused(r#"{"id":1,"method":"order.modify","params":{}}"#),
            "stream_method_unknown"
        );
    }

    /// The documented HMAC example of `order.place` (vectors.json), built from the
    /// bot's message the way keyward builds every message it sends.
    #[test]
    fn the_documented_order_place_signature_reproduces() {
        let vector = crate::testkit::vectors("binance")
            .into_iter()
            .find(|v| v["id"] == "binance-spot-wsapi-hmac-order.place-ascii")
            .expect("the vector");
        let inputs = &vector["inputs"];
        let message = SPOT_STREAMS
            .read_message(
                "/ws-api/v3",
                r#"{"id":"x","method":"order.place","params":{"symbol":"BTCUSDT","side":"SELL","type":"LIMIT","timeInForce":"GTC","quantity":"0.01000000","price":"52000.00"}}"#,
            )
            .expect("reads");
        let crate::Route::Endpoint(endpoint) =
            crate::route(&super::super::SPOT, &http::Method::POST, "/api/v3/order")
        else {
            panic!("catalogued");
        };
        let call = crate::Venue::parse(
            &super::super::SPOT,
            endpoint,
            &crate::CallInput {
                query: &message.query,
                content_type: None,
                body: b"",
                headers: &http::HeaderMap::new(),
            },
        )
        .expect("parses");
        let permit = crate::testkit::permit(&super::super::SPOT, &call);
        let signer = crate::test_signer::TestSigner::hmac(
            inputs["api_key"].as_str().expect("key"),
            inputs["secret"].as_str().expect("secret").as_bytes(),
        );
        let built = SPOT_STREAMS
            .build(
                message.method,
                &call,
                &permit,
                &message.carried,
                SignContext {
                    credential: &signer,
                    timestamp_ms: 1_645_423_376_532,
                    recv_window_ms: 100,
                    nonce: 0,
                },
                None,
                9,
            )
            .expect("signs");
        let sent: serde_json::Value = serde_json::from_str(&built).expect("JSON");
        assert_eq!(sent["id"], 9);
        assert_eq!(sent["method"], "order.place");
        assert_eq!(sent["params"]["signature"], vector["expected"]["signature"]);
        assert_eq!(sent["params"]["timestamp"], 1_645_423_376_532_u64);
        assert_eq!(sent["params"]["quantity"], "0.01000000");
        // A permit for another endpoint signs nothing.
        let status = crate::route(&super::super::SPOT, &http::Method::GET, "/api/v3/time");
        let crate::Route::Endpoint(time) = status else {
            panic!("catalogued");
        };
        let other = crate::Venue::parse(
            &super::super::SPOT,
            time,
            &crate::CallInput {
                query: "",
                content_type: None,
                body: b"",
                headers: &http::HeaderMap::new(),
            },
        )
        .expect("parses");
        let wrong = crate::testkit::permit(&super::super::SPOT, &other);
        assert!(
            SPOT_STREAMS
                .build(
                    message.method,
                    &call,
                    &wrong,
                    &Carried::default(),
                    SignContext {
                        credential: &signer,
                        timestamp_ms: 1,
                        recv_window_ms: 100,
                        nonce: 0
                    },
                    None,
                    1
                )
                .is_err()
        );
    }

    #[test]
    fn replies_and_events_are_read() {
        assert_eq!(
            SPOT_STREAMS
                .read_upstream(r#"{"id":7,"status":200,"result":{"orderId":3},"rateLimits":[]}"#),
            UpstreamMessage::Reply {
                id: 7,
                status: StatusCode::OK,
                body: br#"{"orderId":3}"#.to_vec()
            }
        );
        let event =
            r#"{"subscriptionId":0,"event":{"e":"executionReport","s":"ETHUSDT","X":"NEW","i":5}}"#;
        assert_eq!(
            SPOT_STREAMS.read_upstream(event),
            UpstreamMessage::Event(Event {
                text: event.to_owned(),
                kind: EventKind::Order {
                    symbols: vec!["ETHUSDT".to_owned()],
                    closed: Vec::new(),
                }
            })
        );
        let filled = r#"{"subscriptionId":0,"event":{"e":"executionReport","s":"ETHUSDT","X":"FILLED","i":5}}"#;
        assert!(matches!(
            SPOT_STREAMS.read_upstream(filled),
            UpstreamMessage::Event(Event { kind: EventKind::Order { closed, .. }, .. }) if closed == [("ETHUSDT".to_owned(), "5".to_owned())]
        ));
        assert_eq!(
            SPOT_STREAMS.read_upstream("not json"),
            UpstreamMessage::Drop
        );
        assert_eq!(
            SPOT_STREAMS.reply(
                &ReplyTo {
                    path: "/ws-api/v3",
                    method: "order.place",
                    id: "\"x\""
                },
                StatusCode::BAD_REQUEST,
                br#"{"code":-1013,"msg":"no"}"#
            ),
            r#"{"id":"x","status":400,"error":{"code":-1013,"msg":"no"},"rateLimits":[]}"#
        );
    }
}
