//! OKX v5's private WebSocket (`/ws/v5/private`): `login` once per connection
//! (base64 HMAC of the time, `GET` and `/users/self/verify`, with the passphrase),
//! then `subscribe` to the channels `orders`, `positions`, `account` and
//! `balance_and_position`, and the order operations `order`, `batch-orders`,
//! `amend-order`, `batch-amend-orders`, `cancel-order` and `batch-cancel-orders`,
//! whose `args` are the REST twin's body. The keep-alive is the bare text `ping`.
//!
//! OKX's WebSocket orders name their instrument by `instIdCode`, a number; the
//! policy names it by `instId`. keyward reads either, decides by the id, and sends
//! the code (from the venue's instrument listing).

use crate::market::{MarketPath, MarketProtocol};
use http::StatusCode;
use keyward_policy::Permit;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::stream::{
    BotMessage, Carried, Event, EventKind, InstrumentCodes, InstrumentRef, LOGIN_ID, ReplyTo, Role,
    StreamMethod, StreamPath, StreamVenue, UpstreamMessage, message, pairs, strict_object,
};
use crate::stream::{elements_event, narrow_data};
use crate::{ParseError, ParsedCall, SignContext, SignError, echo_key, json};

/// The private WebSocket's path.
pub const PRIVATE: &str = "/ws/v5/private";

const fn method(name: &'static str, role: Role, twin: Option<&'static str>) -> StreamMethod {
    StreamMethod { name, role, twin }
}

/// The operations keyward serves. A subscription is decided as a read of the bot's
/// open orders: a bot that may read its orders may see their events (and, by
/// default, the account's balances).
const METHODS: &[StreamMethod] = &[
    method("login", Role::Logon, None),
    method("ping", Role::Ping, None),
    method(
        "subscribe",
        Role::Subscribe,
        Some("GET /api/v5/trade/orders-pending"),
    ),
    method("unsubscribe", Role::Unsubscribe, None),
    method("order", Role::Call, Some("POST /api/v5/trade/order")),
    method(
        "batch-orders",
        Role::Call,
        Some("POST /api/v5/trade/batch-orders"),
    ),
    method(
        "amend-order",
        Role::Call,
        Some("POST /api/v5/trade/amend-order"),
    ),
    method(
        "batch-amend-orders",
        Role::Call,
        Some("POST /api/v5/trade/amend-batch-orders"),
    ),
    method(
        "cancel-order",
        Role::Call,
        Some("POST /api/v5/trade/cancel-order"),
    ),
    method(
        "batch-cancel-orders",
        Role::Call,
        Some("POST /api/v5/trade/cancel-batch-orders"),
    ),
];

/// The channels keyward relays.
const CHANNELS: &[&str] = &["orders", "positions", "account", "balance_and_position"];
/// The members a subscription's `arg` may have.
const ARG_MEMBERS: &[&str] = &["channel", "instType", "instId", "instFamily", "ccy"];
/// Order states after which an order is no longer open.
const CLOSED: &[&str] = &["filled", "canceled", "mmp_canceled"];
/// The instrument types whose listings give codes keyward needs (options' lists are
/// long and their orders rare; an option order's instrument is looked up only if
/// named).
const LISTINGS: &[&str] = &["instType=SPOT", "instType=SWAP", "instType=FUTURES"];
/// The connection id keyward gives in its own answers.
const CONN_ID: &str = "keyward";

/// OKX's private WebSocket.
#[derive(Debug)]
pub struct OkxStreams;

/// OKX's private WebSocket.
pub static STREAMS: OkxStreams = OkxStreams;

impl StreamVenue for OkxStreams {
    fn connections_per_address(&self) -> Option<crate::Allowance> {
        // OKX: 3 connection requests a second from one IP address.
        Some(crate::Allowance::per_second(3))
    }

    fn market_paths(&self) -> &'static [MarketPath] {
        &[MarketPath {
            path: "/ws/v5/public",
            upstream: "wss://ws.okx.com:8443/ws/v5/public",
            protocol: MarketProtocol::Okx,
            messages_per_connection: None,
            messages_per_address: None,
        }]
    }

    fn paths(&self) -> &'static [StreamPath] {
        &[StreamPath {
            path: PRIVATE,
            upstream: "wss://ws.okx.com:8443/ws/v5/private",
        }]
    }

    fn read_message(&self, _path: &str, text: &str) -> Result<BotMessage, ParseError> {
        let mut read = BotMessage {
            id: "null".to_owned(),
            method: &METHODS[1],
            query: String::new(),
            body: None,
            token: None,
            carried: Carried::default(),
            instruments: Vec::new(),
        };
        // OKX's keep-alive is the bare text, not JSON.
        if text == "ping" {
            return Ok(read);
        }
        strict_object(text)?;
        let mut op = None;
        let mut args = None;
        for (key, value) in pairs(text).map_err(|_| message("unreadable"))? {
            match key.as_str() {
                "id" => read.id = okx_id(value)?,
                "op" => {
                    op = Some(
                        serde_json::from_str::<String>(value.get())
                            .map_err(|_| message("op must be a string"))?,
                    );
                }
                "args" => {
                    args = Some(
                        serde_json::from_str::<Vec<&RawValue>>(value.get())
                            .map_err(|_| message("args must be an array"))?,
                    );
                }
                _ => {
                    return Err(ParseError::ParamUnknown {
                        key: echo_key(&key),
                    });
                }
            }
        }
        let op = op.ok_or_else(|| message("a message needs an op"))?;
        read.method = METHODS
            .iter()
            .filter(|m| m.role != Role::Ping)
            .find(|m| m.name == op)
            .ok_or_else(|| ParseError::StreamMethodUnknown {
                method: echo_key(&op),
            })?;
        let args = args.unwrap_or_default();
        let objects = || -> Result<(), ParseError> {
            if args.iter().all(|a| a.get().starts_with('{')) {
                Ok(())
            } else {
                Err(message("args holds objects"))
            }
        };
        match read.method.role {
            Role::Logon => {
                // `[{apiKey, passphrase, timestamp, sign}]`: the bot's token where its
                // client puts the key; the rest is its own business.
                let [login] = args.as_slice() else {
                    return Err(message("login takes one object in args"));
                };
                objects()?;
                let key = pairs(login.get())
                    .map_err(|_| message("unreadable login"))?
                    .into_iter()
                    .find(|(name, _)| name == "apiKey")
                    .and_then(|(_, value)| serde_json::from_str::<String>(value.get()).ok())
                    .ok_or(ParseError::ParamMissing { key: "apiKey" })?;
                read.token = Some(key);
            }
            Role::Subscribe | Role::Unsubscribe => {
                // One channel a message: OKX answers each channel of a subscription
                // on its own, and keyward answers each message once.
                let [arg] = args.as_slice() else {
                    return Err(message("subscribe to one channel a message"));
                };
                objects()?;
                read.carried.topics = vec![subscription_arg(arg)?];
            }
            Role::Call => {
                let batch = read.method.name.starts_with("batch-");
                match (batch, args.as_slice()) {
                    (false, [order]) => read.body = Some(order.get().to_owned()),
                    (true, [_, ..]) => {
                        let items: Vec<&str> = args.iter().map(|a| a.get()).collect();
                        read.body = Some(format!("[{}]", items.join(",")));
                    }
                    _ => return Err(message("an order operation takes one object in args")),
                }
                objects()?;
                for order in &args {
                    read.instruments.push(named_instrument(order)?);
                }
            }
            Role::Ping | Role::Status | Role::Logout | Role::Control => {}
        }
        Ok(read)
    }

    fn login(&self, _path: &str, context: SignContext<'_>) -> Result<Option<String>, SignError> {
        use base64::Engine as _;
        let credential = context.credential;
        if !credential.has_passphrase() {
            return Err(SignError::NoPassphrase);
        }
        let timestamp = (context.timestamp_ms / 1000).to_string();
        let sign = base64::engine::general_purpose::STANDARD.encode(
            credential.hmac_sha256(format!("{timestamp}GET/users/self/verify").as_bytes())?,
        );
        let passphrase = credential.passphrase_header()?;
        let passphrase = passphrase.to_str().map_err(|_| SignError::Failed)?;
        let mut out = String::from("{\"op\":\"login\",\"args\":[{\"apiKey\":");
        json::write_string(&mut out, credential.api_key());
        out.push_str(",\"passphrase\":");
        json::write_string(&mut out, passphrase);
        out.push_str(&format!(",\"timestamp\":\"{timestamp}\",\"sign\":"));
        json::write_string(&mut out, &sign);
        out.push_str("}]}");
        Ok(Some(out))
    }

    fn heartbeat(&self) -> Option<&'static str> {
        // OKX closes a connection quiet for 30 s; its keep-alive is the bare text.
        Some("ping")
    }

    fn build(
        &self,
        method: &StreamMethod,
        call: &ParsedCall,
        permit: &Permit,
        carried: &Carried,
        _context: SignContext<'_>,
        _link_token: Option<&str>,
        id: u64,
    ) -> Result<String, SignError> {
        if permit.endpoint() != call.endpoint.key || method.twin != Some(call.endpoint.key) {
            return Err(SignError::PermitMismatch);
        }
        let mut out = format!("{{\"id\":\"{id}\",\"op\":");
        json::write_string(&mut out, method.name);
        out.push_str(",\"args\":");
        if method.role == Role::Subscribe {
            out.push('[');
            out.push_str(&carried.topics.join(","));
            out.push_str("]}");
            return Ok(out);
        }
        // The body exactly as the twin's parser validated and wrote it, each
        // instrument named by its code where OKX gave one.
        let body = call.body.as_deref().ok_or(SignError::Failed)?;
        let orders: Vec<&RawValue> = if body.starts_with('[') {
            serde_json::from_str(body).map_err(|_| SignError::Failed)?
        } else {
            vec![serde_json::from_str(body).map_err(|_| SignError::Failed)?]
        };
        out.push('[');
        for (index, order) in orders.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(&by_code(order, &carried.codes).ok_or(SignError::Failed)?);
        }
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
        Ok(format!(
            "{{\"id\":\"{id}\",\"op\":\"unsubscribe\",\"args\":[{}]}}",
            message.carried.topics.join(",")
        ))
    }

    fn read_upstream(&self, text: &str) -> UpstreamMessage {
        #[derive(Deserialize)]
        struct Incoming<'a> {
            id: Option<&'a str>,
            event: Option<&'a str>,
            op: Option<&'a str>,
            code: Option<&'a str>,
            msg: Option<String>,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
            #[serde(borrow)]
            arg: Option<&'a RawValue>,
        }
        let Ok(incoming) = serde_json::from_str::<Incoming<'_>>(text) else {
            // `pong`, the answer to keyward's keep-alive, is not JSON.
            return UpstreamMessage::Drop;
        };
        if incoming.event.is_none()
            && incoming.op.is_none()
            && let (Some(arg), Some(data)) = (incoming.arg, incoming.data)
        {
            return UpstreamMessage::Event(Event {
                text: text.to_owned(),
                kind: event_kind(arg, data),
            });
        }
        let code = incoming.code.unwrap_or("0");
        let id = match (incoming.event, incoming.id) {
            // Only keyward's own login is ever sent on a link; a failure without an
            // id can only be its answer.
            (Some("login"), _) | (Some("error"), None) => LOGIN_ID,
            (_, Some(id)) => match id.parse::<u64>() {
                Ok(id) => id,
                Err(_) => return UpstreamMessage::Drop,
            },
            _ => return UpstreamMessage::Drop,
        };
        if id == LOGIN_ID {
            let status = if code == "0" {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            return UpstreamMessage::Reply {
                id,
                status,
                body: Vec::new(),
            };
        }
        // The answer in REST's envelope, which the twin's outcome reading knows; a
        // subscription's answer carries its channel as its data.
        let data = match (incoming.data, incoming.arg) {
            (Some(data), _) => data.get().to_owned(),
            (None, Some(arg)) => format!("[{}]", arg.get()),
            (None, None) => "[]".to_owned(),
        };
        let mut body = String::from("{\"code\":");
        json::write_string(&mut body, code);
        body.push_str(",\"msg\":");
        json::write_string(&mut body, incoming.msg.as_deref().unwrap_or_default());
        body.push_str(",\"data\":");
        body.push_str(&data);
        body.push('}');
        UpstreamMessage::Reply {
            id,
            status: StatusCode::OK,
            body: body.into_bytes(),
        }
    }

    fn narrow(&self, text: &str, keep: &dyn Fn(&str) -> bool) -> Option<String> {
        narrow_data(text, keep, element_instrument)
    }

    fn instrument_lists(&self) -> Option<(&'static str, &'static [&'static str])> {
        Some(("GET /api/v5/public/instruments", LISTINGS))
    }

    fn instrument_codes(&self, body: &[u8]) -> Vec<(String, u64)> {
        #[derive(Deserialize)]
        struct Listing {
            data: Vec<Instrument>,
        }
        #[derive(Deserialize)]
        struct Instrument {
            #[serde(rename = "instId")]
            id: String,
            #[serde(rename = "instIdCode")]
            code: Option<serde_json::Value>,
        }
        let Ok(listing) = serde_json::from_slice::<Listing>(body) else {
            return Vec::new();
        };
        listing
            .data
            .into_iter()
            .filter_map(|instrument| {
                let code = match instrument.code? {
                    serde_json::Value::Number(n) => n.as_u64()?,
                    serde_json::Value::String(s) => s.parse().ok()?,
                    _ => return None,
                };
                Some((instrument.id, code))
            })
            .collect()
    }

    fn resolve(&self, message: &mut BotMessage, codes: &InstrumentCodes) -> Result<(), ParseError> {
        let mut named = Vec::new();
        for instrument in &message.instruments {
            let id = match instrument {
                InstrumentRef::Id(id) => id.clone(),
                InstrumentRef::Code(code) => codes
                    .id_of(*code)
                    .ok_or_else(|| {
                        ParseError::invalid("instIdCode", "the code of an instrument OKX lists")
                    })?
                    .to_owned(),
            };
            if let Some(code) = codes.code_of(&id) {
                named.push((id, code));
            }
        }
        if let Some(body) = &message.body {
            let orders: Vec<&RawValue> = if body.starts_with('[') {
                serde_json::from_str(body).map_err(|_| message_error())?
            } else {
                vec![serde_json::from_str(body).map_err(|_| message_error())?]
            };
            let mut rewritten = Vec::with_capacity(orders.len());
            for order in orders {
                rewritten.push(by_id(order, codes)?);
            }
            message.body = Some(if body.starts_with('[') {
                format!("[{}]", rewritten.join(","))
            } else {
                rewritten.concat()
            });
        }
        message.carried.codes = named;
        Ok(())
    }

    fn reply(&self, to: &ReplyTo<'_>, _status: StatusCode, body: &[u8]) -> String {
        #[derive(Deserialize)]
        struct Rest<'a> {
            code: String,
            msg: String,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        let rest = std::str::from_utf8(body)
            .ok()
            .and_then(|text| serde_json::from_str::<Rest<'_>>(text).ok())
            .unwrap_or(Rest {
                code: "50000".to_owned(),
                msg: "keyward: the exchange's answer could not be read".to_owned(),
                data: None,
            });
        let id = if to.id == "null" {
            String::new()
        } else {
            format!("\"id\":{},", to.id)
        };
        let mut out = format!("{{{id}");
        let subscription = matches!(to.method, "subscribe" | "unsubscribe" | "login");
        if subscription || to.method.is_empty() {
            if rest.code == "0" {
                out.push_str("\"event\":");
                json::write_string(&mut out, to.method);
                // OKX echoes the channel subscribed to.
                if let Some(arg) = rest
                    .data
                    .and_then(|d| serde_json::from_str::<Vec<&RawValue>>(d.get()).ok())
                    .and_then(|args| args.first().copied())
                {
                    out.push_str(",\"arg\":");
                    out.push_str(arg.get());
                }
                out.push_str(",\"code\":\"0\",\"msg\":\"\"");
            } else {
                out.push_str("\"event\":\"error\",\"code\":");
                json::write_string(&mut out, &rest.code);
                out.push_str(",\"msg\":");
                json::write_string(&mut out, &rest.msg);
            }
            out.push_str(&format!(",\"connId\":\"{CONN_ID}\"}}"));
            return out;
        }
        out.push_str("\"op\":");
        json::write_string(&mut out, to.method);
        out.push_str(",\"code\":");
        json::write_string(&mut out, &rest.code);
        out.push_str(",\"msg\":");
        json::write_string(&mut out, &rest.msg);
        out.push_str(",\"data\":");
        out.push_str(rest.data.map_or("[]", RawValue::get));
        out.push_str(",\"inTime\":\"\",\"outTime\":\"\"}");
        out
    }

    fn answer(&self, to: &ReplyTo<'_>, role: Role, _bound: bool, _now_ms: u64) -> String {
        if role == Role::Ping {
            return "pong".to_owned();
        }
        self.reply(
            to,
            StatusCode::OK,
            b"{\"code\":\"0\",\"msg\":\"\",\"data\":[]}",
        )
    }
}

/// OKX's message id: up to 32 letters and digits, kept as JSON text.
fn okx_id(value: &RawValue) -> Result<String, ParseError> {
    match serde_json::from_str::<String>(value.get()) {
        Ok(id)
            if !id.is_empty()
                && id.len() <= 32
                && id.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(value.get().to_owned())
        }
        _ => Err(message("the id must be 1 to 32 letters and digits")),
    }
}

/// A subscription's `arg`, checked: a channel keyward relays, and string members
/// OKX defines; kept as the bot wrote it.
fn subscription_arg(arg: &RawValue) -> Result<String, ParseError> {
    let members = pairs(arg.get()).map_err(|_| message("unreadable arg"))?;
    let mut channel = None;
    for (key, value) in &members {
        if !ARG_MEMBERS.contains(&key.as_str()) {
            return Err(ParseError::ParamUnknown { key: echo_key(key) });
        }
        let text: String = serde_json::from_str(value.get())
            .map_err(|_| message("subscription members are strings"))?;
        if key == "channel" {
            channel = Some(text);
        }
    }
    match channel {
        Some(channel) if CHANNELS.contains(&channel.as_str()) => Ok(arg.get().to_owned()),
        Some(_) => Err(ParseError::invalid(
            "channel",
            "orders, positions, account or balance_and_position",
        )),
        None => Err(ParseError::ParamMissing { key: "channel" }),
    }
}

/// The instrument one order names: its `instId`, or its `instIdCode`.
fn named_instrument(order: &RawValue) -> Result<InstrumentRef, ParseError> {
    let members = pairs(order.get()).map_err(|_| message("unreadable order"))?;
    let mut named = None;
    for (key, value) in members {
        let this = match key.as_str() {
            "instId" => InstrumentRef::Id(
                serde_json::from_str(value.get())
                    .map_err(|_| ParseError::invalid("instId", "a string"))?,
            ),
            "instIdCode" => InstrumentRef::Code(
                serde_json::from_str::<u64>(value.get())
                    .map_err(|_| ParseError::invalid("instIdCode", "an integer"))?,
            ),
            _ => continue,
        };
        if named.is_some() {
            return Err(ParseError::invalid(
                "instIdCode",
                "absent when instId names the instrument (one name each)",
            ));
        }
        named = Some(this);
    }
    named.ok_or(ParseError::ParamMissing { key: "instId" })
}

fn message_error() -> ParseError {
    message("args holds objects")
}

/// The order with `instIdCode` replaced by the `instId` it stands for, every other
/// member as the bot wrote it.
fn by_id(order: &RawValue, codes: &InstrumentCodes) -> Result<String, ParseError> {
    rewrite(order, |key, value| {
        if key != "instIdCode" {
            return Ok(None);
        }
        let code: u64 = serde_json::from_str(value.get())
            .map_err(|_| ParseError::invalid("instIdCode", "an integer"))?;
        let id = codes.id_of(code).ok_or_else(|| {
            ParseError::invalid("instIdCode", "the code of an instrument OKX lists")
        })?;
        let mut text = String::new();
        json::write_string(&mut text, id);
        Ok(Some(("instId", text)))
    })
}

/// The validated order with its `instId` replaced by the code OKX gave it, when
/// known; `None` if the order cannot be read (it was written by keyward's parser).
fn by_code(order: &RawValue, codes: &[(String, u64)]) -> Option<String> {
    rewrite(order, |key, value| {
        if key != "instId" {
            return Ok(None);
        }
        let id: String = serde_json::from_str(value.get()).map_err(|_| message_error())?;
        Ok(codes
            .iter()
            .find(|(named, _)| *named == id)
            .map(|(_, code)| ("instIdCode", code.to_string())))
    })
    .ok()
}

/// Writes `object` member by member, `swap` giving a replacement `(key, raw JSON)`
/// for a member it changes.
fn rewrite(
    object: &RawValue,
    swap: impl Fn(&str, &RawValue) -> Result<Option<(&'static str, String)>, ParseError>,
) -> Result<String, ParseError> {
    let members = pairs(object.get()).map_err(|_| message_error())?;
    let mut out = String::from("{");
    for (index, (key, value)) in members.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match swap(key, value)? {
            Some((name, raw)) => {
                json::write_string(&mut out, name);
                out.push(':');
                out.push_str(&raw);
            }
            None => {
                json::write_string(&mut out, key);
                out.push(':');
                out.push_str(value.get());
            }
        }
    }
    out.push('}');
    Ok(out)
}

/// What a push is about: orders, fills and positions about the instruments of their
/// elements, the account channels about the whole account.
fn event_kind(arg: &RawValue, data: &RawValue) -> EventKind {
    #[derive(Deserialize)]
    struct Arg<'a> {
        channel: &'a str,
    }
    let Ok(Arg { channel }) = serde_json::from_str::<Arg<'_>>(arg.get()) else {
        return EventKind::Unknown;
    };
    match channel {
        "account" | "balance_and_position" => return EventKind::Account,
        "orders" | "positions" => {}
        _ => return EventKind::Unknown,
    }
    #[derive(Deserialize)]
    struct Closing<'a> {
        state: Option<&'a str>,
        #[serde(rename = "ordId")]
        id: Option<&'a str>,
    }
    let closed_id = |element: &RawValue| match serde_json::from_str::<Closing<'_>>(element.get()) {
        Ok(Closing {
            state: Some(state),
            id: Some(id),
        }) if channel == "orders" && CLOSED.contains(&state) => Some(id.to_owned()),
        _ => None,
    };
    elements_event(data, element_instrument, &closed_id)
}

/// A push element's `instId`; empty (which no bot may see) when it names none.
fn element_instrument(element: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Named {
        #[serde(rename = "instId")]
        id: Option<String>,
    }
    serde_json::from_str::<Named>(element.get())
        .ok()
        .and_then(|named| named.id)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes() -> InstrumentCodes {
        let mut codes = InstrumentCodes::default();
        codes.extend([
            ("BTC-USDT".to_owned(), 100_001),
            ("ETH-USDT".to_owned(), 100_002),
        ]);
        codes
    }

    #[test]
    fn an_order_by_code_is_decided_by_id_and_sent_by_code() {
        let mut read = STREAMS
            .read_message(
                PRIVATE,
                r#"{"id":"1512","op":"batch-orders","args":[{"instIdCode":100001,"tdMode":"cash","side":"buy","ordType":"limit","sz":"0.001","px":"60000"}]}"#,
            )
            .expect("reads");
        assert_eq!(read.instruments, [InstrumentRef::Code(100_001)]);
        STREAMS.resolve(&mut read, &codes()).expect("resolves");
        assert_eq!(
            read.body.as_deref(),
            Some(
                r#"[{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.001","px":"60000"}]"#
            )
        );
        assert_eq!(read.carried.codes, [("BTC-USDT".to_owned(), 100_001)]);
        let order: &RawValue =
            serde_json::from_str(r#"{"instId":"BTC-USDT","sz":"1"}"#).expect("JSON");
        assert_eq!(
            by_code(order, &read.carried.codes).as_deref(),
            Some(r#"{"instIdCode":100001,"sz":"1"}"#)
        );
        // A code OKX does not list is refused before anything is decided.
        let mut unknown = STREAMS
            .read_message(
                PRIVATE,
                r#"{"id":"1","op":"order","args":[{"instIdCode":7,"sz":"1"}]}"#,
            )
            .expect("reads");
        assert_eq!(
            STREAMS
                .resolve(&mut unknown, &codes())
                .expect_err("refused")
                .reason(),
            "param_invalid"
        );
    }

    #[test]
    fn login_ping_and_subscriptions_are_read() {
        let login = STREAMS
            .read_message(
                PRIVATE,
                r#"{"op":"login","args":[{"apiKey":"kw_tok","passphrase":"p","timestamp":"1","sign":"s"}]}"#,
            )
            .expect("reads");
        assert_eq!(login.token.as_deref(), Some("kw_tok"));
        assert_eq!(
            STREAMS
                .read_message(PRIVATE, "ping")
                .expect("reads")
                .method
                .role,
            Role::Ping
        );
        let subscribe = STREAMS
            .read_message(
                PRIVATE,
                r#"{"id":"s1","op":"subscribe","args":[{"channel":"orders","instType":"SPOT"}]}"#,
            )
            .expect("reads");
        assert_eq!(
            subscribe.carried.topics,
            [r#"{"channel":"orders","instType":"SPOT"}"#]
        );
        let refused = |text: &str| {
            STREAMS
                .read_message(PRIVATE, text)
                .expect_err("refused")
                .reason()
        };
        assert_eq!(
            refused(r#"{"op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USDT"}]}"#),
            "param_invalid"
        );
        assert_eq!(
            refused(r#"{"op":"subscribe","args":[{"channel":"orders"},{"channel":"account"}]}"#),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(r#"{"id":"a-b","op":"order","args":[{}]}"#),
            "stream_message_invalid"
        );
        assert_eq!(
            refused(r#"{"id":"1","op":"order","args":[{"instId":"BTC-USDT","instIdCode":1}]}"#),
            "param_invalid"
        );
        assert_eq!(
            refused(r#"{"op":"withdrawal","args":[]}"#),
            "stream_method_unknown"
        );
        assert_eq!(refused("pong"), "stream_message_invalid");
    }

    /// keyward's login is OKX's documented WebSocket login (vectors.json).
    #[test]
    fn the_login_sign_is_the_documented_one() {
        let signer =
            crate::test_signer::TestSigner::hmac("key", b"22582BD0CFF14C41EDBF1AB98506286D")
                .with_passphrase("pass");
        let login = STREAMS
            .login(
                PRIVATE,
                SignContext {
                    credential: &signer,
                    timestamp_ms: 1_704_876_947_000,
                    recv_window_ms: 5000,
                    nonce: 0,
                },
            )
            .expect("signs")
            .expect("OKX logs in");
        let sent: serde_json::Value = serde_json::from_str(&login).expect("JSON");
        assert_eq!(sent["args"][0]["timestamp"], "1704876947");
        assert_eq!(
            sent["args"][0]["sign"],
            "5/36BgGV6m/6pmdc20zdqk0mzF5ZalmzzPD2fo3wavU="
        );
        assert_eq!(sent["args"][0]["passphrase"], "pass");
    }

    #[test]
    fn answers_and_pushes_are_read() {
        let reply = STREAMS.read_upstream(
            r#"{"id":"5","op":"order","code":"0","msg":"","data":[{"ordId":"9","clOrdId":"","sCode":"0","sMsg":""}],"inTime":"1","outTime":"2"}"#,
        );
        let UpstreamMessage::Reply { id: 5, body, .. } = reply else {
            panic!("a reply: {reply:?}");
        };
        let rest = String::from_utf8(body).expect("text");
        let to = ReplyTo {
            path: PRIVATE,
            method: "order",
            id: "\"1512\"",
        };
        let back: serde_json::Value =
            serde_json::from_str(&STREAMS.reply(&to, StatusCode::OK, rest.as_bytes()))
                .expect("JSON");
        assert_eq!(back["id"], "1512");
        assert_eq!(back["data"][0]["ordId"], "9");
        assert!(matches!(
            STREAMS.read_upstream(r#"{"event":"login","code":"0","msg":"","connId":"c"}"#),
            UpstreamMessage::Reply {
                id: LOGIN_ID,
                status: StatusCode::OK,
                ..
            }
        ));
        assert!(matches!(
            STREAMS.read_upstream(
                r#"{"event":"error","code":"60009","msg":"Login failed.","connId":"c"}"#
            ),
            UpstreamMessage::Reply {
                id: LOGIN_ID,
                status: StatusCode::UNAUTHORIZED,
                ..
            }
        ));
        assert_eq!(STREAMS.read_upstream("pong"), UpstreamMessage::Drop);
        let push = r#"{"arg":{"channel":"orders","instType":"SPOT","uid":"1"},"data":[{"instId":"BTC-USDT","ordId":"1","state":"filled"},{"instId":"SOL-USDT","ordId":"2","state":"live"}]}"#;
        let UpstreamMessage::Event(Event { kind, .. }) = STREAMS.read_upstream(push) else {
            panic!("a push");
        };
        assert_eq!(
            kind,
            EventKind::Order {
                symbols: vec!["BTC-USDT".to_owned(), "SOL-USDT".to_owned()],
                closed: vec![("BTC-USDT".to_owned(), "1".to_owned())],
            }
        );
        let narrowed = STREAMS
            .narrow(push, &|instrument| instrument == "BTC-USDT")
            .expect("one left");
        assert!(!narrowed.contains("SOL-USDT"), "{narrowed}");
        assert_eq!(
            STREAMS.instrument_codes(
                br#"{"code":"0","data":[{"instId":"BTC-USDT","instIdCode":100001},{"instId":"X","instIdCode":"7"},{"instId":"Y"}]}"#
            ),
            [("BTC-USDT".to_owned(), 100_001), ("X".to_owned(), 7)]
        );
    }
}
