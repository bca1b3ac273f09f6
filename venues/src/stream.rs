//! WebSocket streams, the venue's side of them: which WebSocket paths a venue's
//! clients connect to and where keyward connects for each; how a bot's message reads
//! as the REST call it is the twin of, so that it is decided by exactly that call's
//! rules; and how keyward's own messages to the venue are built and the venue's
//! messages read. Nothing here holds a connection or a secret.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use keyward_policy::Permit;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::json::Json;
use crate::{ParseError, ParsedCall, SignContext, SignError, echo_key, form};

/// A WebSocket path of a venue, and where keyward itself connects for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPath {
    /// The path a client connects to (on keyward's bot listener, as at the venue).
    pub path: &'static str,
    /// The venue's production URL for it (`wss://host/path`).
    pub upstream: &'static str,
}

/// What a stream method does, which decides how keyward treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decided as its REST twin and, once signed, sent to the venue.
    Call,
    /// Subscribes the connection to the account's private events: decided as its
    /// twin (a read), then signed and sent.
    Subscribe,
    /// Ends a subscription: it only stops events, so it is sent without a decision.
    Unsubscribe,
    /// Binds the connection to the bot whose token it carries; keyward answers it.
    Logon,
    /// Says which bot the connection is bound to; keyward answers it.
    Status,
    /// Unbinds the connection; keyward answers it.
    Logout,
    /// A keep-alive; keyward answers it (keyward keeps its own link alive).
    Ping,
    /// Asks nothing of the account (Coinbase's heartbeats subscription): sent without
    /// a decision, like an unsubscribe.
    Control,
}

/// A method a bot may send on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamMethod {
    /// Its name in the venue's protocol.
    pub name: &'static str,
    /// What it does.
    pub role: Role,
    /// The key of the REST endpoint it is decided as (`"POST /api/v3/order"`).
    pub twin: Option<&'static str>,
}

/// A bot's message, read but not yet decided. Its `Debug` leaves the token out.
pub struct BotMessage {
    /// The message's id as JSON text, echoed in keyward's reply; `null` when the
    /// message had none (where the venue makes it optional).
    pub id: String,
    /// The method.
    pub method: &'static StreamMethod,
    /// The parameters as the REST twin's query string (form-encoded, in the order
    /// sent), the auth fields removed.
    pub query: String,
    /// The REST twin's JSON body, for venues whose REST calls carry one: exactly
    /// the object the bot sent, which the twin's parser then reads strictly.
    pub body: Option<String>,
    /// The keyward token the bot presented where its client puts the API key.
    pub token: Option<String>,
    /// What keyward's message to the venue needs beyond the twin's parameters.
    pub carried: Carried,
    /// The instruments the message's orders name, on venues whose WebSocket orders
    /// name them by a numeric code ([`StreamVenue::instrument_lists`]).
    pub instruments: Vec<InstrumentRef>,
}

/// An instrument as an order names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstrumentRef {
    /// By its id (`BTC-USDT`), as the policy names it.
    Id(String),
    /// By the venue's numeric code (OKX's `instIdCode`).
    Code(u64),
}

/// The venue's instrument codes and ids, both ways.
#[derive(Debug, Clone, Default)]
pub struct InstrumentCodes {
    by_code: HashMap<u64, String>,
    by_id: HashMap<String, u64>,
}

impl InstrumentCodes {
    /// Adds what one listing of the venue's instruments gave.
    pub fn extend(&mut self, pairs: impl IntoIterator<Item = (String, u64)>) {
        for (id, code) in pairs {
            self.by_code.insert(code, id.clone());
            self.by_id.insert(id, code);
        }
    }

    /// The id of the instrument with `code`.
    pub fn id_of(&self, code: u64) -> Option<&str> {
        self.by_code.get(&code).map(String::as_str)
    }

    /// The code of instrument `id`.
    pub fn code_of(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Whether every instrument of `named` is known.
    pub fn covers(&self, named: &[InstrumentRef]) -> bool {
        named.iter().all(|instrument| match instrument {
            InstrumentRef::Id(id) => self.by_id.contains_key(id),
            InstrumentRef::Code(code) => self.by_code.contains_key(code),
        })
    }
}

/// What a bot's message carries to keyward's message besides its REST twin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Parameters the bot sent as JSON numbers or booleans, which keyward sends on
    /// unquoted.
    pub literals: Vec<String>,
    /// The topics a subscription names (each checked against the venue's list).
    pub topics: Vec<String>,
    /// The codes of the instruments the orders name, for a venue whose WebSocket
    /// orders must name them by code (filled in by [`StreamVenue::resolve`]).
    pub codes: Vec<(String, u64)>,
    /// The instruments as the bot's message spelled them, for a venue whose
    /// WebSocket spells them unlike its REST API (Kraken's `BTC/USD` for `XBTUSD`):
    /// keyward's message gives the spelling that names the pair the twin validated.
    pub names: Vec<String>,
}

/// Whom a reply answers: the path the bot connected to, the method and the bot's
/// id (JSON text, `null` for none).
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo<'a> {
    /// The WebSocket path.
    pub path: &'a str,
    /// The method (or operation) answered.
    pub method: &'a str,
    /// The bot's id for the message.
    pub id: &'a str,
}

impl fmt::Debug for BotMessage {
    // The token is the bot's credential: a debug print that reached a log would
    // hand it to whoever reads the log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotMessage")
            .field("id", &self.id)
            .field("method", &self.method.name)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// A message from the venue, read.
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamMessage {
    /// The answer to keyward's request `id`: its status, and the result (or the
    /// error) as JSON, which is what the REST twin's answer body would hold.
    Reply {
        /// keyward's id for the request.
        id: u64,
        /// The status the venue gave.
        status: StatusCode,
        /// The result, or the error object.
        body: Vec<u8>,
    },
    /// An event of a subscription.
    Event(Event),
    /// Something no bot needs (keep-alive answers, unknown shapes).
    Drop,
}

/// An event of a private stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The message as the venue sent it.
    pub text: String,
    /// What it is about.
    pub kind: EventKind,
}

/// What an event is about, which decides which bots see it.
#[derive(Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Orders, trades or positions on these symbols (as the policy names them),
    /// one for each element of the event.
    Order {
        /// The symbols, in the event's order.
        symbols: Vec<String>,
        /// Orders the event says are closed (filled, cancelled, rejected or
        /// expired), with their symbols: keyward's open-order record learns them at
        /// once.
        closed: Vec<(String, String)>,
    },
    /// Balances or positions of the whole account.
    Account,
    /// About the subscription itself (its end).
    Control,
    /// Public market data, on a relayed market-data stream: whoever connected sees
    /// it.
    Market,
    /// Of a kind keyward does not know: no bot sees it.
    Unknown,
}

/// A venue's WebSockets.
pub trait StreamVenue: Send + Sync + fmt::Debug {
    /// The paths clients connect to, each with the venue's production URL.
    fn paths(&self) -> &'static [StreamPath];

    /// The public market-data paths keyward relays without a token, for accounts
    /// that serve public market data.
    fn market_paths(&self) -> &'static [crate::market::MarketPath] {
        &[]
    }

    /// How many WebSockets the venue lets one IP address open, where it documents
    /// a limit: keyward's links, for every bot and every relayed client, come from
    /// one address, which the venue bans past it.
    fn connections_per_address(&self) -> Option<crate::Allowance>;

    /// Reads one text message a bot sent on `path`.
    fn read_message(&self, path: &str, text: &str) -> Result<BotMessage, ParseError>;

    /// keyward's login, the first message on its link to `path`, signed with the
    /// account's key; its reply comes back as [`LOGIN_ID`]'s. `None` where the
    /// venue signs each message instead.
    fn login(&self, _path: &str, _context: SignContext<'_>) -> Result<Option<String>, SignError> {
        Ok(None)
    }

    /// The text keyward sends to keep its link alive, where the venue wants one in
    /// its protocol rather than WebSocket pings.
    fn heartbeat(&self) -> Option<&'static str> {
        None
    }

    /// keyward's message to the venue for `method`: `call`'s validated parameters
    /// (signed only under a `permit` for exactly that call's endpoint),
    /// with the account's key and signature where the method needs them, as
    /// request `id`, with what the bot's message `carried`. `link_token` is the
    /// venue's WebSocket token keyward's link holds, for venues whose every message
    /// carries one (Kraken).
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        method: &StreamMethod,
        call: &ParsedCall,
        permit: &Permit,
        carried: &Carried,
        context: SignContext<'_>,
        link_token: Option<&str>,
        id: u64,
    ) -> Result<String, SignError>;

    /// keyward's message for a message sent without a decision (an unsubscribe, a
    /// keep-alive subscription), as request `id`, `context` signing it where the
    /// venue authenticates subscriptions, `link_token` as for [`Self::build`].
    fn control(
        &self,
        message: &BotMessage,
        id: u64,
        context: SignContext<'_>,
        link_token: Option<&str>,
    ) -> Result<String, SignError>;

    /// Reads one text message from the venue.
    fn read_upstream(&self, text: &str) -> UpstreamMessage;

    /// The event `text` with only the elements whose symbol `keep` accepts, for a
    /// bot that may see some of them; `None` when nothing is left (or the venue's
    /// events have one element each).
    fn narrow(&self, _text: &str, _keep: &dyn Fn(&str) -> bool) -> Option<String> {
        None
    }

    /// Where the venue lists its instruments with their codes, for venues whose
    /// WebSocket orders name instruments by code: the endpoint (`"GET /path"`) and
    /// one query per listing.
    fn instrument_lists(&self) -> Option<(&'static str, &'static [&'static str])> {
        None
    }

    /// The `(id, code)` pairs one listing's answer gives.
    fn instrument_codes(&self, _body: &[u8]) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// Rewrites the bot's message so that its twin names each instrument by id (as
    /// the policy does), and notes the codes keyward's message must give; refused
    /// when it names a code `codes` does not know.
    fn resolve(
        &self,
        _message: &mut BotMessage,
        _codes: &InstrumentCodes,
    ) -> Result<(), ParseError> {
        Ok(())
    }

    /// The keyward listenKey a user data stream URL names (`/ws/KEY`,
    /// `/private/ws?listenKey=KEY`), for venues whose user data arrives on a stream
    /// of its own, reached by a listenKey.
    fn listen_key_of(&self, _path: &str, _query: &str) -> Option<String> {
        None
    }

    /// Where keyward's link reads the user data stream of the account's real
    /// listenKey: the path and query on the venue's stream host.
    fn user_stream_target(&self, _real_key: &str) -> Option<String> {
        None
    }

    /// What a listenKey endpoint does, for the endpoints keyward answers with a key
    /// of its own.
    fn listen_key_op(&self, _endpoint_key: &str) -> Option<ListenKeyOp> {
        None
    }

    /// keyward's own request for the account's real listenKey or WebSocket token
    /// (`op`), made with the account's key (`context`): Binance's names the key in
    /// its header, Kraken's is signed.
    fn listen_key_request(
        &self,
        _op: ListenKeyOp,
        _context: SignContext<'_>,
    ) -> Option<Result<crate::Outbound, SignError>> {
        None
    }

    /// The listenKey (or WebSocket token) a venue's answer gives.
    fn read_listen_key(&self, _body: &[u8]) -> Option<String> {
        None
    }

    /// How long keyward reuses the account's real key before it asks again: within
    /// the venue's keep-alive period (Binance), or well within the time its token
    /// must first be used in (Kraken).
    fn real_key_reuse(&self) -> Duration {
        Duration::from_secs(20 * 60)
    }

    /// How long a key keyward minted for a bot stays valid without a keep-alive.
    fn minted_validity(&self) -> Duration {
        Duration::from_secs(60 * 60)
    }

    /// keyward's answer, in the venue's REST shape, to a bot's listenKey (or
    /// WebSocket token) request `op`: `key` is the bot's minted key (empty after a
    /// close), `None` when there is none to keep alive.
    fn minted_answer(&self, _op: ListenKeyOp, _key: Option<&str>) -> (StatusCode, Vec<u8>) {
        (StatusCode::NOT_FOUND, Vec::new())
    }

    /// Whether the venue's answer `body` says the link's WebSocket token is no longer
    /// good (Kraken's `ESession:Invalid session`): keyward then forgets the account's
    /// token and ends the link, so the next one asks for a fresh token.
    fn link_token_refused(&self, _body: &[u8]) -> bool {
        false
    }

    /// Whether the token a bot's messages carry is a WebSocket token keyward minted
    /// for it (Kraken's `GetWebSocketsToken`), rather than its keyward token.
    fn tokens_are_minted(&self) -> bool {
        false
    }

    /// The reply to the bot's message: a result when `status` is a success,
    /// otherwise an error, `body` being the result or the error object (a REST
    /// answer body, or keyward's refusal in the venue's REST envelope).
    fn reply(&self, to: &ReplyTo<'_>, status: StatusCode, body: &[u8]) -> String;

    /// keyward's own answer to a message whose `role` it answers itself (a login,
    /// a status, a logout, a ping), the connection being `bound` to a bot or not.
    fn answer(&self, to: &ReplyTo<'_>, role: Role, bound: bool, now_ms: u64) -> String;
}

/// An event whose `data` lists orders, executions or positions: each element's
/// name (`name_of`), and the orders it says are closed, with the id `closed_id`
/// finds in an element that says so.
pub(crate) fn elements_event(
    data: &RawValue,
    name_of: fn(&RawValue) -> String,
    closed_id: &dyn Fn(&RawValue) -> Option<String>,
) -> EventKind {
    let Ok(elements) = serde_json::from_str::<Vec<&RawValue>>(data.get()) else {
        return EventKind::Unknown;
    };
    let mut symbols = Vec::with_capacity(elements.len());
    let mut closed = Vec::new();
    for element in elements {
        let name = name_of(element);
        if let Some(id) = closed_id(element) {
            closed.push((name.clone(), id));
        }
        symbols.push(name);
    }
    EventKind::Order { symbols, closed }
}

/// An event `text` with only the elements of its `data` array whose name (by
/// `name_of`) `keep` accepts, every other member as the venue wrote it; `None` when
/// no element is left or the event cannot be read.
pub(crate) fn narrow_data(
    text: &str,
    keep: &dyn Fn(&str) -> bool,
    name_of: fn(&RawValue) -> String,
) -> Option<String> {
    let fields = pairs(text).ok()?;
    let mut out = String::from("{");
    let mut kept_any = false;
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        crate::json::write_string(&mut out, key);
        out.push(':');
        if key == "data" {
            let elements: Vec<&RawValue> = serde_json::from_str(value.get()).ok()?;
            let kept: Vec<&str> = elements
                .iter()
                .filter(|element| keep(&name_of(element)))
                .map(|element| element.get())
                .collect();
            kept_any = !kept.is_empty();
            out.push('[');
            out.push_str(&kept.join(","));
            out.push(']');
        } else {
            out.push_str(value.get());
        }
    }
    out.push('}');
    kept_any.then_some(out)
}

/// The id and method of a message keyward refused to read, as far as they can be
/// told, so that its refusal still answers the request the client waits on: the
/// id as JSON text (`null` when there is no usable one) and the method (empty when
/// there is none). Nothing here is trusted beyond the echo.
pub fn identify(text: &str) -> (String, String) {
    let mut id = "null".to_owned();
    let mut method = String::new();
    for (key, value) in pairs(text).unwrap_or_default() {
        match key.as_str() {
            "id" | "req_id" | "reqId" => {
                if let Ok(text) = message_id(value) {
                    id = text;
                }
            }
            "method" | "op" => {
                if let Ok(name) = serde_json::from_str::<String>(value.get())
                    && name.len() <= MAX_ID_LEN
                    && name.bytes().all(|b| b.is_ascii_graphic())
                {
                    method = name;
                }
            }
            _ => {}
        }
    }
    (id, method)
}

/// What a request on a listenKey endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenKeyOp {
    /// Creates the key (or gives the one still valid, extended).
    Create,
    /// Extends the key.
    KeepAlive,
    /// Ends the key and its streams.
    Close,
}

/// The id a venue's reply gets when it cannot be tied to a request (Coinbase's
/// acknowledgements carry none): it answers the oldest request still waiting, as the
/// venue answers a connection's requests in order.
pub const OLDEST_PENDING: u64 = u64::MAX;

/// How an event's element is named when it names no instrument but an order (Kraken's
/// cancel and amend updates): `#` and the venue's order id. The session looks the
/// order up in keyward's records; only the bot that placed it sees the element.
pub const BY_ORDER: char = '#';

/// The id of keyward's login on its link (its own requests count from 1).
pub const LOGIN_ID: u64 = 0;

/// The longest message id keyward echoes: the venues' own limits are shorter.
pub const MAX_ID_LEN: usize = 64;
/// The most parameters one message may carry.
const MAX_PARAMS: usize = 64;

/// A bot message's envelope: the id (as JSON text, when the message has one), the
/// method and the parameters as raw JSON values in the order sent. The caller has
/// already read the whole message with the strict reader, so duplicate keys never
/// get here.
pub(crate) struct Envelope<'a> {
    pub(crate) id: Option<String>,
    pub(crate) method: String,
    pub(crate) params: Vec<(String, &'a RawValue)>,
}

/// Reads a bot's message: one JSON object (no duplicate keys at any depth, nothing
/// after it) with `method_key`, and optionally `id_key` and `params_key` (an object),
/// and nothing else.
pub(crate) fn envelope<'a>(
    text: &'a str,
    id_key: &str,
    method_key: &str,
    params_key: &str,
) -> Result<Envelope<'a>, ParseError> {
    strict_object(text)?;
    let fields: Vec<(String, &RawValue)> = pairs(text).map_err(|_| message("unreadable"))?;
    let mut id = None;
    let mut method = None;
    let mut params = Vec::new();
    for (key, value) in fields {
        if key == id_key {
            id = Some(message_id(value)?);
        } else if key == method_key {
            method = Some(
                serde_json::from_str::<String>(value.get())
                    .map_err(|_| message("the method must be a string"))?,
            );
        } else if key == params_key {
            params = pairs(value.get()).map_err(|_| message("params must be an object"))?;
            if params.len() > MAX_PARAMS {
                return Err(ParseError::Form(form::FormError::TooMany(MAX_PARAMS)));
            }
        } else {
            return Err(ParseError::ParamUnknown {
                key: echo_key(&key),
            });
        }
    }
    Ok(Envelope {
        id,
        method: method.ok_or_else(|| message("a message needs a method"))?,
        params,
    })
}

/// Checks that `text` is one JSON object with no duplicate key at any depth and
/// nothing after it: the strict reader refuses duplicates (after unescaping) and
/// trailing data, which serde_json's own readers would resolve silently.
pub(crate) fn strict_object(text: &str) -> Result<(), ParseError> {
    match Json::parse(text) {
        Ok(Json::Object(_)) => Ok(()),
        Err(crate::json::JsonError::DuplicateKey(key)) => Err(ParseError::JsonDuplicateKey {
            param: "message",
            key: echo_key(&key),
        }),
        Ok(_) | Err(crate::json::JsonError::Invalid(_)) => {
            Err(message("a message must be one JSON object"))
        }
    }
}

/// A message id: an integer, or a short string of printable ASCII, kept as JSON
/// text; `null` is refused, since its reply could not be told apart.
pub(crate) fn message_id(value: &RawValue) -> Result<String, ParseError> {
    match Json::parse(value.get()) {
        Ok(Json::Integer(_)) => Ok(value.get().to_owned()),
        Ok(Json::String(text))
            if !text.is_empty()
                && text.len() <= MAX_ID_LEN
                && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            let mut out = String::new();
            crate::json::write_string(&mut out, &text);
            Ok(out)
        }
        _ => Err(message(
            "the id must be an integer or a string of at most 64 printable characters",
        )),
    }
}

/// A parameter value as the text its REST twin would carry: a string as it is, a
/// number or a boolean as it was written (the twin's grammar then judges it, by the
/// parameter's name: an exponent or a fraction where an integer belongs is refused
/// there). `true` when it was a literal to send on unquoted.
pub(crate) fn scalar(value: &RawValue) -> Result<(String, bool), ParseError> {
    let raw = value.get();
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw).map_err(|_| message("unreadable string"))?;
        return Ok((text, false));
    }
    if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) || raw == "true" || raw == "false"
    {
        return Ok((raw.to_owned(), true));
    }
    Err(message(
        "parameter values must be strings, numbers or booleans",
    ))
}

/// An object's members in order, each value left as raw JSON.
pub(crate) fn pairs(text: &str) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                out.push((key, value));
            }
            Ok(out)
        }
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let out = (&mut reader).deserialize_map(Pairs)?;
    reader.end()?;
    Ok(out)
}

/// A refusal of a message's shape.
pub(crate) fn message(problem: &'static str) -> ParseError {
    ParseError::StreamMessage { problem }
}
