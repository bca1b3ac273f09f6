//! Kraken's authenticated WebSocket v2 (`wss://ws-auth.kraken.com/v2`, served on
//! keyward's `/v2`): `{"method", "params", "req_id"}` messages whose `params.token`
//! is a WebSocket token from `GetWebSocketsToken`. A bot's token is one keyward
//! minted for it (keyward answers that REST call itself); keyward's link carries the
//! account's real token, which never leaves keyward.
//!
//! Kraken's v2 names differ from its REST API's (`order_qty` for `volume`, `BTC/USD`
//! for `XBTUSD`, trigger prices in a `triggers` object). Each message is translated
//! into its REST twin's JSON body and decided by that call's rules; keyward's message
//! is then written back from the values the twin's parser validated. Only what the
//! translation maps both ways is accepted: anything else is refused by name, and a
//! validated value the way back does not know sends nothing.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use keyward_policy::Permit;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::pair;
use crate::market::{MarketPath, MarketProtocol};
use crate::stream::{
    BY_ORDER, BotMessage, Carried, Envelope, Event, EventKind, ListenKeyOp, ReplyTo, Role,
    StreamMethod, StreamPath, StreamVenue, UpstreamMessage, elements_event, envelope, message,
    narrow_data, pairs,
};
use crate::{Outbound, ParseError, ParsedCall, SignContext, SignError, echo_key, json};

/// The authenticated WebSocket's path.
pub const PATH: &str = "/v2";
/// The REST endpoint of the WebSocket token, which keyward answers for bots.
pub(super) const TOKEN_ENDPOINT: &str = "POST /0/private/GetWebSocketsToken";
pub(super) const TOKEN_PATH: &str = "/0/private/GetWebSocketsToken";
/// Kraken's token must be used within 15 minutes; keyward's minted ones last as
/// long, and keyward reuses the account's real one for 10 so that a link opened
/// with it is always in time.
const MINTED_FOR: Duration = Duration::from_secs(15 * 60);
const REAL_REUSE: Duration = Duration::from_secs(10 * 60);

const fn method(name: &'static str, role: Role, twin: Option<&'static str>) -> StreamMethod {
    StreamMethod { name, role, twin }
}

/// The methods keyward serves. A subscription is decided as a read of the bot's
/// open orders; both cancels are decided as CancelOrderBatch, which names its orders
/// as a list the way they do.
const METHODS: &[StreamMethod] = &[
    method("ping", Role::Ping, None),
    method(
        "subscribe",
        Role::Subscribe,
        Some("POST /0/private/OpenOrders"),
    ),
    method("unsubscribe", Role::Unsubscribe, None),
    method("add_order", Role::Call, Some("POST /0/private/AddOrder")),
    method(
        "batch_add",
        Role::Call,
        Some("POST /0/private/AddOrderBatch"),
    ),
    method(
        "amend_order",
        Role::Call,
        Some("POST /0/private/AmendOrder"),
    ),
    method("edit_order", Role::Call, Some("POST /0/private/EditOrder")),
    method(
        "cancel_order",
        Role::Call,
        Some("POST /0/private/CancelOrderBatch"),
    ),
    method(
        "batch_cancel",
        Role::Call,
        Some("POST /0/private/CancelOrderBatch"),
    ),
    method("cancel_all", Role::Call, Some("POST /0/private/CancelAll")),
    method(
        "cancel_all_orders_after",
        Role::Call,
        Some("POST /0/private/CancelAllOrdersAfter"),
    ),
];

/// Kraken's error for a message whose token it does not take.
const SESSION_REFUSED: &str = "ESession:Invalid session";
/// The private channels keyward relays; market data has its own host at Kraken.
const CHANNELS: &[&str] = &["executions", "balances"];
/// A subscription's options (all booleans).
const SUBSCRIPTION_FLAGS: &[&str] = &[
    "snap_orders",
    "snap_trades",
    "order_status",
    "ratecounter",
    "snapshot",
    "rebased",
];
/// Order states after which an order is no longer open.
const CLOSED: &[&str] = &["filled", "canceled", "expired"];
/// The order types served here, with whether each takes a limit price and a
/// trigger. Trailing stops (relative prices) and settle-position stay on REST.
const ORDER_TYPES: &[(&str, bool, bool)] = &[
    ("market", false, false),
    ("limit", true, false),
    ("iceberg", true, false),
    ("stop-loss", false, true),
    ("take-profit", false, true),
    ("stop-loss-limit", true, true),
    ("take-profit-limit", true, true),
];
const SERVED_TYPES: &str = "market, limit, iceberg, stop-loss, take-profit, stop-loss-limit or take-profit-limit (trailing stops and settle-position over REST)";

/// Kraken's authenticated WebSocket.
#[derive(Debug)]
pub struct KrakenStreams;

/// Kraken's authenticated WebSocket.
pub static STREAMS: KrakenStreams = KrakenStreams;

impl StreamVenue for KrakenStreams {
    fn connections_per_address(&self) -> Option<crate::Allowance> {
        // Kraken documents no number for its spot WebSockets (Cloudflare in front
        // of them throttles reconnecting addresses without saying how much).
        None
    }

    fn market_paths(&self) -> &'static [MarketPath] {
        // Kraken's public WebSocket has the authenticated one's path on a host of its
        // own: a message without a token to a public channel is relayed there.
        &[MarketPath {
            path: PATH,
            upstream: "wss://ws.kraken.com/v2",
            protocol: MarketProtocol::Kraken,
            messages_per_connection: None,
            messages_per_address: None,
        }]
    }

    fn paths(&self) -> &'static [StreamPath] {
        &[StreamPath {
            path: PATH,
            upstream: "wss://ws-auth.kraken.com/v2",
        }]
    }

    fn read_message(&self, _path: &str, text: &str) -> Result<BotMessage, ParseError> {
        let Envelope {
            id,
            method: name,
            params,
        } = envelope(text, "req_id", "method", "params")?;
        // Kraken's `req_id` is an integer.
        let id = match id {
            Some(id) if is_req_id(&id) => id,
            Some(_) => return Err(message("req_id must be a non-negative integer")),
            None => "null".to_owned(),
        };
        let method = METHODS.iter().find(|m| m.name == name).ok_or_else(|| {
            ParseError::StreamMethodUnknown {
                method: echo_key(&name),
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
        // The token is the bot's credential, never a parameter of the twin.
        let mut members = Vec::with_capacity(params.len());
        for (key, value) in params {
            if key == "token" {
                read.token = Some(string(value, "token")?);
            } else {
                members.push((key, value));
            }
        }
        if method.role == Role::Ping {
            return match members.first() {
                Some((key, _)) => Err(ParseError::ParamUnknown { key: echo_key(key) }),
                None => Ok(read),
            };
        }
        if read.token.is_none() {
            return Err(ParseError::ParamMissing { key: "token" });
        }
        let mut twin = Object::default();
        match method.name {
            "subscribe" | "unsubscribe" => {
                read.carried.topics = vec![subscription(&members, method.role)?];
                return Ok(read);
            }
            "add_order" => order(&members, true, &mut twin, &mut read.carried)?,
            "batch_add" => batch_add(&members, &mut twin, &mut read.carried)?,
            "amend_order" => amend(&members, &mut twin, &mut read.carried)?,
            "edit_order" => edit(&members, &mut twin, &mut read.carried)?,
            "cancel_order" | "batch_cancel" => cancels(method.name, &members, &mut twin)?,
            "cancel_all_orders_after" => {
                for (key, value) in &members {
                    match key.as_str() {
                        "timeout" => twin.raw("timeout", &integer(value, "timeout")?),
                        _ => return Err(ParseError::ParamUnknown { key: echo_key(key) }),
                    }
                }
            }
            _ => {
                if let Some((key, _)) = members.first() {
                    return Err(ParseError::ParamUnknown { key: echo_key(key) });
                }
            }
        }
        read.body = Some(twin.finish());
        Ok(read)
    }

    fn heartbeat(&self) -> Option<&'static str> {
        // Kraken's own keep-alive; its answer (a `pong` without an id) is dropped.
        Some("{\"method\":\"ping\"}")
    }

    fn build(
        &self,
        method: &StreamMethod,
        call: &ParsedCall,
        permit: &Permit,
        carried: &Carried,
        _context: SignContext<'_>,
        link_token: Option<&str>,
        id: u64,
    ) -> Result<String, SignError> {
        if permit.endpoint() != call.endpoint.key || method.twin != Some(call.endpoint.key) {
            return Err(SignError::PermitMismatch);
        }
        let mut params = Object::default();
        if method.role == Role::Subscribe {
            params.members(carried.topics.first().ok_or(SignError::Failed)?);
        } else {
            let body = call.body.as_deref().unwrap_or("{}");
            let members = pairs(body).map_err(|_| SignError::Failed)?;
            match method.name {
                "add_order" => ws_order(&members, true, carried, &mut params)?,
                "batch_add" => ws_batch(&members, carried, &mut params)?,
                "amend_order" => ws_amend(&members, carried, &mut params)?,
                "edit_order" => ws_edit(&members, carried, &mut params)?,
                "cancel_order" | "batch_cancel" => ws_cancels(method.name, &members, &mut params)?,
                "cancel_all" | "cancel_all_orders_after" => {
                    for (key, value) in &members {
                        match key.as_str() {
                            "timeout" => params.raw("timeout", value.get()),
                            _ => return Err(SignError::Failed),
                        }
                    }
                }
                _ => return Err(SignError::Failed),
            }
        }
        request(method.name, params, link_token, id)
    }

    fn control(
        &self,
        message: &BotMessage,
        id: u64,
        _context: SignContext<'_>,
        link_token: Option<&str>,
    ) -> Result<String, SignError> {
        let mut params = Object::default();
        params.members(message.carried.topics.first().ok_or(SignError::Failed)?);
        request(message.method.name, params, link_token, id)
    }

    fn read_upstream(&self, text: &str) -> UpstreamMessage {
        #[derive(Deserialize)]
        struct Incoming<'a> {
            method: Option<String>,
            req_id: Option<u64>,
            success: Option<bool>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
            error: Option<String>,
            channel: Option<String>,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        let Ok(incoming) = serde_json::from_str::<Incoming<'_>>(text) else {
            return UpstreamMessage::Drop;
        };
        if let (Some(channel), Some(data)) = (incoming.channel.as_deref(), incoming.data) {
            let kind = match channel {
                "executions" => executions(data),
                "balances" => EventKind::Account,
                // Status and heartbeats are the link's own business.
                _ => return UpstreamMessage::Drop,
            };
            return UpstreamMessage::Event(Event {
                text: text.to_owned(),
                kind,
            });
        }
        let (Some(id), Some(success)) = (incoming.req_id, incoming.success) else {
            return UpstreamMessage::Drop;
        };
        if incoming.method.as_deref() == Some("pong") {
            return UpstreamMessage::Drop;
        }
        // The answer in REST's envelope, which the twin's outcome reading knows.
        let mut body = String::from("{\"error\":[");
        if !success {
            json::write_string(
                &mut body,
                incoming
                    .error
                    .as_deref()
                    .unwrap_or("EGeneral:Unknown error"),
            );
        }
        body.push_str("],\"result\":");
        body.push_str(incoming.result.map_or("{}", RawValue::get));
        body.push('}');
        UpstreamMessage::Reply {
            id,
            status: StatusCode::OK,
            body: body.into_bytes(),
        }
    }

    fn narrow(&self, text: &str, keep: &dyn Fn(&str) -> bool) -> Option<String> {
        narrow_data(text, keep, element_name)
    }

    fn listen_key_op(&self, endpoint_key: &str) -> Option<ListenKeyOp> {
        (endpoint_key == TOKEN_ENDPOINT).then_some(ListenKeyOp::Create)
    }

    fn listen_key_request(
        &self,
        op: ListenKeyOp,
        context: SignContext<'_>,
    ) -> Option<Result<Outbound, SignError>> {
        if op != ListenKeyOp::Create {
            return None;
        }
        Some(super::signed_request(TOKEN_PATH, context))
    }

    fn read_listen_key(&self, body: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            error: Vec<String>,
            result: Option<TokenResult>,
        }
        #[derive(Deserialize)]
        struct TokenResult {
            token: String,
        }
        let answer = serde_json::from_slice::<Answer>(body).ok()?;
        let token = answer.result?.token;
        (answer.error.is_empty()
            && !token.is_empty()
            && token.len() <= 256
            && token.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(token)
    }

    fn real_key_reuse(&self) -> Duration {
        REAL_REUSE
    }

    fn minted_validity(&self) -> Duration {
        MINTED_FOR
    }

    fn minted_answer(&self, _op: ListenKeyOp, key: Option<&str>) -> (StatusCode, Vec<u8>) {
        let Some(key) = key else {
            return (
                StatusCode::OK,
                b"{\"error\":[\"EGeneral:Internal error\"]}".to_vec(),
            );
        };
        let mut body = String::from("{\"error\":[],\"result\":{\"token\":");
        json::write_string(&mut body, key);
        body.push_str(&format!(",\"expires\":{}}}}}", MINTED_FOR.as_secs()));
        (StatusCode::OK, body.into_bytes())
    }

    fn tokens_are_minted(&self) -> bool {
        true
    }

    fn link_token_refused(&self, body: &[u8]) -> bool {
        // The answer in REST's envelope (see `read_upstream`): the error Kraken gives
        // a message whose token it does not know.
        body.windows(SESSION_REFUSED.len())
            .any(|window| window == SESSION_REFUSED.as_bytes())
    }

    fn reply(&self, to: &ReplyTo<'_>, status: StatusCode, body: &[u8]) -> String {
        #[derive(Deserialize)]
        struct Rest<'a> {
            #[serde(default)]
            error: Vec<String>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
        }
        let rest = serde_json::from_slice::<Rest<'_>>(body).ok();
        let failed = !status.is_success() || rest.as_ref().is_none_or(|r| !r.error.is_empty());
        let mut out = String::from("{");
        if failed {
            // keyward's refusals carry Kraken's error first and keyward's reason
            // after it: clients match the first, people read the second.
            let errors = rest
                .as_ref()
                .map(|r| r.error.join("; "))
                .unwrap_or_default();
            out.push_str("\"error\":");
            json::write_string(
                &mut out,
                if errors.is_empty() {
                    "EGeneral:Internal error"
                } else {
                    &errors
                },
            );
            out.push(',');
        }
        out.push_str("\"method\":");
        json::write_string(&mut out, to.method);
        if !failed {
            out.push_str(",\"result\":");
            out.push_str(rest.and_then(|r| r.result).map_or("{}", RawValue::get));
        }
        finish_reply(&mut out, to.id, !failed);
        out
    }

    fn answer(&self, to: &ReplyTo<'_>, role: Role, _bound: bool, _now_ms: u64) -> String {
        let method = if role == Role::Ping {
            "pong"
        } else {
            to.method
        };
        let mut out = String::from("{\"method\":");
        json::write_string(&mut out, method);
        finish_reply(&mut out, to.id, true);
        out
    }
}

/// Ends a reply: the bot's `req_id` where it gave one, `success` and Kraken's
/// `time_in` and `time_out` (keyward's clock).
fn finish_reply(out: &mut String, id: &str, success: bool) {
    if id != "null" {
        out.push_str(",\"req_id\":");
        out.push_str(id);
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let time = crate::okx::iso_timestamp(now);
    out.push_str(&format!(
        ",\"success\":{success},\"time_in\":\"{time}\",\"time_out\":\"{time}\"}}"
    ));
}

/// keyward's request to Kraken: the method, the parameters with the link's token.
fn request(
    method: &str,
    mut params: Object,
    link_token: Option<&str>,
    id: u64,
) -> Result<String, SignError> {
    params.string("token", link_token.ok_or(SignError::Failed)?);
    let mut out = String::from("{\"method\":");
    json::write_string(&mut out, method);
    out.push_str(",\"params\":");
    out.push_str(&params.finish());
    out.push_str(&format!(",\"req_id\":{id}}}"));
    Ok(out)
}

/// A JSON object written member by member.
#[derive(Default)]
struct Object(String);

impl Object {
    fn raw(&mut self, key: &str, raw: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        json::write_string(&mut self.0, key);
        self.0.push(':');
        self.0.push_str(raw);
    }

    fn string(&mut self, key: &str, text: &str) {
        let mut quoted = String::new();
        json::write_string(&mut quoted, text);
        self.raw(key, &quoted);
    }

    /// Members already written as JSON text (`"a":1,"b":2`).
    fn members(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.0.is_empty() {
            self.0.push(',');
        }
        self.0.push_str(text);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn finish(self) -> String {
        format!("{{{}}}", self.0)
    }
}

type Members<'a> = [(String, &'a RawValue)];

/// Kraken's `req_id`: a non-negative integer (the envelope's id, as JSON text).
fn is_req_id(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u64>().is_ok()
}

fn string(value: &RawValue, name: &'static str) -> Result<String, ParseError> {
    serde_json::from_str::<String>(value.get()).map_err(|_| ParseError::invalid(name, "a string"))
}

/// A JSON number as written (the twin's grammar then judges its form).
fn number(value: &RawValue, name: &'static str) -> Result<String, ParseError> {
    let text = value.get();
    if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(ParseError::invalid(name, "a number"))
    }
}

fn integer(value: &RawValue, name: &'static str) -> Result<String, ParseError> {
    let text = value.get();
    if !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(ParseError::invalid(name, "a non-negative integer"))
    }
}

fn boolean(value: &RawValue, name: &'static str) -> Result<bool, ParseError> {
    match value.get() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ParseError::invalid(name, "true or false")),
    }
}

/// A parameter this method does not take, or that keyward does not serve over the
/// WebSocket.
fn unknown(key: &str) -> ParseError {
    ParseError::ParamUnknown { key: echo_key(key) }
}

/// A subscription's members (without the token), checked: a private channel and its
/// boolean options; written as the bot sent them.
fn subscription(members: &Members<'_>, role: Role) -> Result<String, ParseError> {
    let mut channel = None;
    let mut out = Object::default();
    for (key, value) in members {
        match key.as_str() {
            "channel" => {
                let name = string(value, "channel")?;
                if !CHANNELS.contains(&name.as_str()) {
                    return Err(ParseError::invalid(
                        "channel",
                        "executions or balances (market data is not served here)",
                    ));
                }
                channel = Some(name);
            }
            flag if role == Role::Subscribe => {
                let name = SUBSCRIPTION_FLAGS
                    .iter()
                    .find(|known| **known == flag)
                    .ok_or_else(|| unknown(key))?;
                boolean(value, name)?;
            }
            _ => return Err(unknown(key)),
        }
        out.raw(key, value.get());
    }
    channel.ok_or(ParseError::ParamMissing { key: "channel" })?;
    Ok(out.0)
}

/// One order's fields (add_order's, or a batch_add element's), as AddOrder's: the
/// symbol, deadline and validate only at the `top` of add_order.
fn order(
    members: &Members<'_>,
    top: bool,
    twin: &mut Object,
    carried: &mut Carried,
) -> Result<(), ParseError> {
    let mut order_type = None;
    let mut limit = None;
    let mut trigger = None;
    let mut flags: Vec<&str> = Vec::new();
    for (key, value) in members {
        match key.as_str() {
            "order_type" => {
                let name = string(value, "order_type")?;
                twin.string("ordertype", &name);
                order_type = Some(name);
            }
            "side" => twin.string("type", &string(value, "side")?),
            "order_qty" => twin.string("volume", &number(value, "order_qty")?),
            "limit_price" => limit = Some(number(value, "limit_price")?),
            "triggers" => trigger = Some(triggers(value)?),
            "time_in_force" => {
                let tif = string(value, "time_in_force")?;
                let upper = match tif.as_str() {
                    "gtc" | "GTC" => "GTC",
                    "gtd" | "GTD" => "GTD",
                    "ioc" | "IOC" => "IOC",
                    _ => return Err(ParseError::invalid("time_in_force", "gtc, gtd or ioc")),
                };
                twin.string("timeinforce", upper);
            }
            "post_only" => {
                if boolean(value, "post_only")? {
                    flags.push("post");
                }
            }
            "no_mpp" => {
                if boolean(value, "no_mpp")? {
                    flags.push("nompp");
                }
            }
            "fee_preference" => flags.push(match string(value, "fee_preference")?.as_str() {
                "base" => "fcib",
                "quote" => "fciq",
                _ => return Err(ParseError::invalid("fee_preference", "base or quote")),
            }),
            "reduce_only" => {
                boolean(value, "reduce_only")?;
                twin.raw("reduce_only", value.get());
            }
            "cl_ord_id" => twin.string("cl_ord_id", &string(value, "cl_ord_id")?),
            "order_userref" => twin.raw("userref", &integer(value, "order_userref")?),
            "display_qty" => twin.string("displayvol", &number(value, "display_qty")?),
            "stp_type" => {
                let stp = match string(value, "stp_type")?.as_str() {
                    "cancel_newest" => "cancel-newest",
                    "cancel_oldest" => "cancel-oldest",
                    "cancel_both" => "cancel-both",
                    _ => {
                        return Err(ParseError::invalid(
                            "stp_type",
                            "cancel_newest, cancel_oldest or cancel_both",
                        ));
                    }
                };
                twin.string("stptype", stp);
            }
            "symbol" if top => symbol(value, twin, carried)?,
            "deadline" if top => twin.string("deadline", &string(value, "deadline")?),
            "validate" if top => {
                boolean(value, "validate")?;
                twin.raw("validate", value.get());
            }
            _ => return Err(unknown(key)),
        }
    }
    let name = order_type.ok_or(ParseError::ParamMissing { key: "order_type" })?;
    let &(_, takes_limit, takes_trigger) = ORDER_TYPES
        .iter()
        .find(|(served, ..)| *served == name)
        .ok_or(ParseError::invalid("order_type", SERVED_TYPES))?;
    // Kraken's REST `price` is the trigger of a triggered order and the limit of
    // any other; `price2` is a triggered order's limit.
    match (takes_limit, limit, takes_trigger, trigger) {
        (true, None, ..) => return Err(ParseError::ParamMissing { key: "limit_price" }),
        (false, Some(_), ..) => {
            return Err(ParseError::invalid(
                "limit_price",
                "absent for an order type without a limit price",
            ));
        }
        (_, _, true, None) => return Err(ParseError::ParamMissing { key: "triggers" }),
        (_, _, false, Some(_)) => {
            return Err(ParseError::invalid(
                "triggers",
                "absent for an order type without a trigger",
            ));
        }
        (_, limit, _, Some((reference, price))) => {
            twin.string("price", &price);
            if let Some(limit) = limit {
                twin.string("price2", &limit);
            }
            if let Some(reference) = reference {
                twin.string("trigger", &reference);
            }
        }
        (_, Some(limit), _, None) => twin.string("price", &limit),
        (_, None, _, None) => {}
    }
    if !flags.is_empty() {
        twin.string("oflags", &flags.join(","));
    }
    Ok(())
}

/// A `triggers` object: its reference (`index` or `last`) and its static price.
fn triggers(value: &RawValue) -> Result<(Option<String>, String), ParseError> {
    let members = pairs(value.get()).map_err(|_| ParseError::invalid("triggers", "an object"))?;
    let mut reference = None;
    let mut price = None;
    for (key, value) in &members {
        match key.as_str() {
            "reference" => reference = Some(string(value, "reference")?),
            "price" => price = Some(number(value, "triggers.price")?),
            "price_type" => {
                if string(value, "price_type")? != "static" {
                    return Err(ParseError::invalid(
                        "price_type",
                        "static (relative trigger prices are refused)",
                    ));
                }
            }
            _ => return Err(unknown(key)),
        }
    }
    Ok((
        reference,
        price.ok_or(ParseError::ParamMissing {
            key: "triggers.price",
        })?,
    ))
}

/// The message's `symbol` as the twin's `pair`, its spelling kept for the way back.
fn symbol(value: &RawValue, twin: &mut Object, carried: &mut Carried) -> Result<(), ParseError> {
    let name = string(value, "symbol")?;
    twin.string("pair", &name);
    carried.names.push(name);
    Ok(())
}

fn batch_add(
    members: &Members<'_>,
    twin: &mut Object,
    carried: &mut Carried,
) -> Result<(), ParseError> {
    for (key, value) in members {
        match key.as_str() {
            "orders" => {
                let elements: Vec<&RawValue> = serde_json::from_str(value.get())
                    .map_err(|_| ParseError::invalid("orders", "a list of orders"))?;
                let mut list = Vec::with_capacity(elements.len());
                for element in elements {
                    let fields = pairs(element.get())
                        .map_err(|_| ParseError::invalid("orders", "a list of orders"))?;
                    let mut one = Object::default();
                    order(&fields, false, &mut one, carried)?;
                    list.push(one.finish());
                }
                twin.raw("orders", &format!("[{}]", list.join(",")));
            }
            "symbol" => symbol(value, twin, carried)?,
            "deadline" => twin.string("deadline", &string(value, "deadline")?),
            "validate" => {
                boolean(value, "validate")?;
                twin.raw("validate", value.get());
            }
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

/// amend_order as AmendOrder: the same names, but `order_id` for `txid` and
/// `symbol` for `pair`.
fn amend(
    members: &Members<'_>,
    twin: &mut Object,
    carried: &mut Carried,
) -> Result<(), ParseError> {
    for (key, value) in members {
        match key.as_str() {
            "order_id" => twin.string("txid", &string(value, "order_id")?),
            "cl_ord_id" => twin.string("cl_ord_id", &string(value, "cl_ord_id")?),
            "deadline" => twin.string("deadline", &string(value, "deadline")?),
            "order_qty" => twin.string("order_qty", &number(value, "order_qty")?),
            "display_qty" => twin.string("display_qty", &number(value, "display_qty")?),
            "limit_price" => twin.string("limit_price", &number(value, "limit_price")?),
            "trigger_price" => twin.string("trigger_price", &number(value, "trigger_price")?),
            "post_only" => {
                boolean(value, "post_only")?;
                twin.raw("post_only", value.get());
            }
            "symbol" => symbol(value, twin, carried)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

/// edit_order as EditOrder.
fn edit(members: &Members<'_>, twin: &mut Object, carried: &mut Carried) -> Result<(), ParseError> {
    for (key, value) in members {
        match key.as_str() {
            "order_id" => twin.string("txid", &string(value, "order_id")?),
            "order_qty" => twin.string("volume", &number(value, "order_qty")?),
            "limit_price" => twin.string("price", &number(value, "limit_price")?),
            "display_qty" => twin.string("displayvol", &number(value, "display_qty")?),
            "post_only" => {
                if boolean(value, "post_only")? {
                    twin.string("oflags", "post");
                }
            }
            "order_userref" => twin.raw("userref", &integer(value, "order_userref")?),
            "deadline" => twin.string("deadline", &string(value, "deadline")?),
            "validate" => {
                boolean(value, "validate")?;
                twin.raw("validate", value.get());
            }
            "symbol" => symbol(value, twin, carried)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

/// cancel_order (`order_id` and `cl_ord_id` lists) and batch_cancel (`orders` and
/// `cl_ord_id`) as CancelOrderBatch. User references cancel every order carrying
/// them, other bots' too: refused.
fn cancels(method: &str, members: &Members<'_>, twin: &mut Object) -> Result<(), ParseError> {
    let ids_key = if method == "cancel_order" {
        "order_id"
    } else {
        "orders"
    };
    for (key, value) in members {
        let list = |name: &'static str| -> Result<String, ParseError> {
            let ids: Vec<String> = serde_json::from_str(value.get())
                .map_err(|_| ParseError::invalid(name, "a list of id strings"))?;
            serde_json::to_string(&ids).map_err(|_| ParseError::invalid(name, "a list"))
        };
        match key.as_str() {
            k if k == ids_key => twin.raw("orders", &list("order_id")?),
            "cl_ord_id" => twin.raw("cl_ord_ids", &list("cl_ord_id")?),
            "order_userref" => {
                return Err(ParseError::invalid(
                    "order_userref",
                    "absent: a user reference cancels every order carrying it; name order ids",
                ));
            }
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

/// A validated decimal (a JSON string in the twin) as the JSON number Kraken's
/// WebSocket takes; anything else (a relative price) is not sent.
fn decimal(value: &RawValue) -> Result<String, SignError> {
    let text: String = serde_json::from_str(value.get()).map_err(|_| SignError::Failed)?;
    let plain = !text.is_empty()
        && text.starts_with(|c: char| c.is_ascii_digit())
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && !text.ends_with('.');
    if plain {
        Ok(text)
    } else {
        Err(SignError::Failed)
    }
}

fn text_of(value: &RawValue) -> Result<String, SignError> {
    serde_json::from_str(value.get()).map_err(|_| SignError::Failed)
}

/// The bot's spelling of the pair the twin validated: one that resolves to it.
fn spelling(value: &RawValue, carried: &Carried) -> Result<String, SignError> {
    let validated = text_of(value)?;
    carried
        .names
        .iter()
        .find(|name| pair::is_spelling(name) && pair::resolve(name) == validated)
        .cloned()
        .ok_or(SignError::Failed)
}

/// An order's validated AddOrder fields as Kraken v2's.
fn ws_order(
    members: &Members<'_>,
    top: bool,
    carried: &Carried,
    out: &mut Object,
) -> Result<(), SignError> {
    let kind = members
        .iter()
        .find(|(key, _)| key == "ordertype")
        .map(|(_, value)| text_of(value))
        .transpose()?
        .ok_or(SignError::Failed)?;
    let &(_, takes_limit, takes_trigger) = ORDER_TYPES
        .iter()
        .find(|(served, ..)| *served == kind)
        .ok_or(SignError::Failed)?;
    let mut trigger = Object::default();
    for (key, value) in members {
        match key.as_str() {
            "ordertype" => out.raw("order_type", value.get()),
            "type" => out.raw("side", value.get()),
            "volume" => out.raw("order_qty", &decimal(value)?),
            "price" if takes_trigger => trigger.raw("price", &decimal(value)?),
            "price" if takes_limit => out.raw("limit_price", &decimal(value)?),
            "price2" if takes_trigger && takes_limit => {
                out.raw("limit_price", &decimal(value)?);
            }
            "trigger" if takes_trigger => trigger.raw("reference", value.get()),
            "timeinforce" => out.string("time_in_force", &text_of(value)?.to_ascii_lowercase()),
            "oflags" => {
                for flag in text_of(value)?.split(',') {
                    match flag {
                        "post" => out.raw("post_only", "true"),
                        "nompp" => out.raw("no_mpp", "true"),
                        "fcib" => out.string("fee_preference", "base"),
                        "fciq" => out.string("fee_preference", "quote"),
                        _ => return Err(SignError::Failed),
                    }
                }
            }
            "reduce_only" => out.raw("reduce_only", value.get()),
            "cl_ord_id" => out.raw("cl_ord_id", value.get()),
            "userref" => out.raw("order_userref", value.get()),
            "displayvol" => out.raw("display_qty", &decimal(value)?),
            "stptype" => out.string("stp_type", &text_of(value)?.replace('-', "_")),
            "pair" if top => out.string("symbol", &spelling(value, carried)?),
            "deadline" | "validate" if top => out.raw(key, value.get()),
            _ => return Err(SignError::Failed),
        }
    }
    if !trigger.is_empty() {
        out.raw("triggers", &trigger.finish());
    }
    Ok(())
}

fn ws_batch(members: &Members<'_>, carried: &Carried, out: &mut Object) -> Result<(), SignError> {
    for (key, value) in members {
        match key.as_str() {
            "orders" => {
                let elements: Vec<&RawValue> =
                    serde_json::from_str(value.get()).map_err(|_| SignError::Failed)?;
                let mut list = Vec::with_capacity(elements.len());
                for element in elements {
                    let fields = pairs(element.get()).map_err(|_| SignError::Failed)?;
                    let mut one = Object::default();
                    ws_order(&fields, false, carried, &mut one)?;
                    list.push(one.finish());
                }
                out.raw("orders", &format!("[{}]", list.join(",")));
            }
            "pair" => out.string("symbol", &spelling(value, carried)?),
            "deadline" | "validate" => out.raw(key, value.get()),
            _ => return Err(SignError::Failed),
        }
    }
    Ok(())
}

fn ws_amend(members: &Members<'_>, carried: &Carried, out: &mut Object) -> Result<(), SignError> {
    for (key, value) in members {
        match key.as_str() {
            "txid" => out.raw("order_id", value.get()),
            "pair" => out.string("symbol", &spelling(value, carried)?),
            "order_qty" | "display_qty" | "limit_price" | "trigger_price" => {
                out.raw(key, &decimal(value)?);
            }
            "cl_ord_id" | "deadline" | "post_only" => out.raw(key, value.get()),
            _ => return Err(SignError::Failed),
        }
    }
    Ok(())
}

fn ws_edit(members: &Members<'_>, carried: &Carried, out: &mut Object) -> Result<(), SignError> {
    for (key, value) in members {
        match key.as_str() {
            "txid" => out.raw("order_id", value.get()),
            "pair" => out.string("symbol", &spelling(value, carried)?),
            "volume" => out.raw("order_qty", &decimal(value)?),
            "price" => out.raw("limit_price", &decimal(value)?),
            "displayvol" => out.raw("display_qty", &decimal(value)?),
            "oflags" if text_of(value)? == "post" => out.raw("post_only", "true"),
            "userref" => out.raw("order_userref", value.get()),
            "deadline" | "validate" => out.raw(key, value.get()),
            _ => return Err(SignError::Failed),
        }
    }
    Ok(())
}

fn ws_cancels(method: &str, members: &Members<'_>, out: &mut Object) -> Result<(), SignError> {
    for (key, value) in members {
        // Only id strings: the translation never makes user references.
        let ids: Vec<String> = serde_json::from_str(value.get()).map_err(|_| SignError::Failed)?;
        let list = serde_json::to_string(&ids).map_err(|_| SignError::Failed)?;
        match key.as_str() {
            "orders" if method == "cancel_order" => out.raw("order_id", &list),
            "orders" => out.raw("orders", &list),
            "cl_ord_ids" => out.raw("cl_ord_id", &list),
            _ => return Err(SignError::Failed),
        }
    }
    Ok(())
}

/// What an executions update is about: each element's pair, or the order it names
/// when it names no pair (Kraken's cancel and amend updates); the orders it closes.
fn executions(data: &RawValue) -> EventKind {
    #[derive(Deserialize)]
    struct Closing<'a> {
        order_status: Option<&'a str>,
        order_id: Option<&'a str>,
    }
    let closed_id = |element: &RawValue| match serde_json::from_str::<Closing<'_>>(element.get()) {
        Ok(Closing {
            order_status: Some(status),
            order_id: Some(id),
        }) if CLOSED.contains(&status) => Some(id.to_owned()),
        _ => None,
    };
    elements_event(data, element_name, &closed_id)
}

/// An executions element's pair as the policy names it (`BTC/USD` is `XBTUSD`), or
/// `#` and its order id when it names no pair; empty (which no bot may see) when it
/// names neither.
fn element_name(element: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Named {
        symbol: Option<String>,
        order_id: Option<String>,
    }
    match serde_json::from_str::<Named>(element.get()) {
        Ok(Named {
            symbol: Some(symbol),
            ..
        }) if pair::is_spelling(&symbol) => pair::resolve(&symbol),
        Ok(Named {
            symbol: None,
            order_id: Some(id),
        }) => format!("{BY_ORDER}{id}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
