//! keyward's exchange adapters: for each exchange, the endpoint catalogue, the strict
//! parser from a raw request to a validated call with its [`Intent`], the signer, the
//! reading of its answers, and its error envelope.
//!
//! This crate depends on `keyward-policy` and on nothing else of keyward. It never
//! holds a secret: signing goes through [`Signer`], which the proxy's shielded
//! credential implements, and refusals arrive as a closed [`Refusal`].
//!
//! Adding a venue means adding a module here and a [`VenueId`] variant; every `match`
//! on `VenueId` is exhaustive, so the compiler lists what else needs it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use keyward_policy::{EndpointClass, EndpointRef, Grant, Intent, Permit, Quote, Rule, Symbol};

pub mod binance;
pub mod bybit;
pub mod coinbase;
pub mod form;
pub mod json;
pub mod kraken;
pub mod limits;
pub mod market;
pub mod okx;
#[cfg(test)]
mod props;
pub mod refusal;
pub mod schema;
pub mod sign;
pub mod stream;
#[cfg(any(test, feature = "test-signer"))]
pub mod test_signer;
#[cfg(test)]
mod testkit;

pub use limits::{Allowance, Backoff, ExchangeLimit, UsageKind, UsageReport};
pub use refusal::{Fault, Refusal, RefusalClass};
pub use schema::{EndpointSpec, OrderTypeSpec, Security};
pub use sign::{KeyKind, KeyUnfit, SignError, Signer, hex};

/// The exchanges (and products) keyward can sign for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VenueId {
    /// Binance spot, `https://api.binance.com`, `/api/v3`.
    BinanceSpot,
    /// Binance USDⓈ-M futures, `https://fapi.binance.com`, `/fapi`.
    BinanceUsdm,
    /// Bybit v5 (spot and linear), `https://api.bybit.com`, `/v5`.
    Bybit,
    /// OKX v5, `https://www.okx.com`, `/api/v5`.
    Okx,
    /// Kraken spot, `https://api.kraken.com`, `/0`.
    Kraken,
    /// Coinbase Advanced Trade, `https://api.coinbase.com`, `/api/v3/brokerage`.
    Coinbase,
}

impl VenueId {
    /// Every venue.
    pub const ALL: [Self; 6] = [
        Self::BinanceSpot,
        Self::BinanceUsdm,
        Self::Bybit,
        Self::Okx,
        Self::Kraken,
        Self::Coinbase,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::BinanceSpot => "binance-spot",
            Self::BinanceUsdm => "binance-usdm",
            Self::Bybit => "bybit",
            Self::Okx => "okx",
            Self::Kraken => "kraken",
            Self::Coinbase => "coinbase",
        }
    }

    /// Parses a configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The adapter.
    pub fn adapter(self) -> &'static dyn Venue {
        match self {
            Self::BinanceSpot => &binance::SPOT,
            Self::BinanceUsdm => &binance::USDM,
            Self::Bybit => &bybit::BYBIT,
            Self::Okx => &okx::OKX,
            Self::Kraken => &kraken::KRAKEN,
            Self::Coinbase => &coinbase::COINBASE,
        }
    }
}

impl fmt::Display for VenueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parts of a request a venue parser needs once the front has vetted the head.
#[derive(Debug, Clone, Copy)]
pub struct CallInput<'a> {
    /// Raw query string after `?` (empty if none).
    pub query: &'a str,
    /// The `Content-Type` header, if present.
    pub content_type: Option<&'a str>,
    /// The whole body.
    pub body: &'a [u8],
    /// The request's headers, for venues whose bots send meaningful ones (OKX's
    /// `x-simulated-trading`) or auth headers keyward records as stripped.
    pub headers: &'a HeaderMap,
}

/// An order a request names by its id or its client id (to amend, replace or cancel
/// it). keyward judges such a request against its own record of that order, never
/// against what the request says about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderRef {
    /// The symbol the request names for it, if it names one (the exchange looks the
    /// order up under that symbol).
    pub symbol: Option<Symbol>,
    /// The exchange's order id.
    pub id: Option<String>,
    /// The client order id the order was placed with.
    pub client_id: Option<String>,
    /// The ids name an order list (Binance `orderListId`, `listClientOrderId`).
    pub list: bool,
}

impl OrderRef {
    /// How the request names the order, for messages (ids are printable identifiers
    /// of the venue's grammar).
    pub fn describe(&self) -> String {
        let what = if self.list { "order list" } else { "order" };
        let named = match (&self.id, &self.client_id) {
            (Some(id), _) => format!("{what} {id}"),
            (None, Some(client_id)) => format!("{what} with client id {client_id}"),
            (None, None) => format!("an unnamed {what}"),
        };
        match &self.symbol {
            Some(symbol) => format!("{named} on {symbol}"),
            None => named,
        }
    }

    /// Appends `&{id_key}=<id>` to a lookup query, or `&{client_key}=<client id>` when
    /// the request named no exchange id; `None` when it named neither. The exchange id
    /// goes first because it names one order for ever, where a client id may come back.
    pub(crate) fn append_to_query(
        &self,
        query: &mut String,
        id_key: &str,
        client_key: &str,
    ) -> Option<()> {
        let (key, value) = match (&self.id, &self.client_id) {
            (Some(id), _) => (id_key, id),
            (None, Some(client_id)) => (client_key, client_id),
            (None, None) => return None,
        };
        query.push('&');
        query.push_str(key);
        query.push('=');
        form::encode_into(query, value);
        Some(())
    }
}

/// The symbol of an amend whose request does not name one (a Coinbase edit names only
/// the order id): keyward replaces it with the recorded order's symbol before the
/// policy decides. No operator can list it (it is no venue's symbol shape), so an
/// amend left unresolved is refused.
pub fn unresolved_symbol() -> Symbol {
    static UNRESOLVED: OnceLock<Symbol> = OnceLock::new();
    UNRESOLVED
        .get_or_init(|| Symbol::new("keyward:unresolved").unwrap_or_else(|_| unreachable!()))
        .clone()
}

/// How an amend changes the order it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmendKind {
    /// The order keeps its id (Binance USD-M modify, Bybit, OKX, Kraken AmendOrder,
    /// Coinbase edit).
    InPlace,
    /// The exchange cancels it and places a replacement under a new id (Kraken
    /// EditOrder).
    Replaces,
}

/// One amend of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amend {
    /// Its index in `intent.orders`. The venue fills in only what the request says;
    /// keyward sets the symbol, side and order type from its record before the
    /// policy decides, and the size or price the amend leaves as it was.
    pub leg: usize,
    /// The order it changes.
    pub order: OrderRef,
    /// How it changes it.
    pub kind: AmendKind,
    /// The request states the order's side (Binance USD-M's modify does): it must be
    /// the recorded one.
    pub side_given: bool,
    /// The request states the new size (else the order keeps its own).
    pub size_given: bool,
    /// The request states the new limit price (else the order keeps its own).
    pub price_given: bool,
}

/// The orders a request names rather than places, and the client ids of those it
/// places.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Amends, each naming the order it changes.
    pub amends: Vec<Amend>,
    /// Orders the request cancels (cancels, the cancel half of a cancel-replace).
    pub cancels: Vec<OrderRef>,
    /// Client order ids of the new orders, by index in `intent.orders`.
    pub client_ids: Vec<(usize, String)>,
    /// The request cancels every order of the account, whichever bot placed it
    /// (Kraken `CancelAll`, `CancelAllOrdersAfter`): no bot may send it.
    pub cancels_everything: bool,
}

impl References {
    /// Every existing order the request acts on: those it amends, then those it
    /// cancels.
    pub fn named(&self) -> impl Iterator<Item = &OrderRef> {
        self.amends.iter().map(|a| &a.order).chain(&self.cancels)
    }

    /// The client order id of the request's order at `leg`, if it sets one.
    pub fn client_id_of(&self, leg: usize) -> Option<&str> {
        self.client_ids
            .iter()
            .find(|(i, _)| *i == leg)
            .map(|(_, id)| id.as_str())
    }

    /// The amend at `leg`, if that order of the intent changes an existing one.
    pub fn amend_of(&self, leg: usize) -> Option<&Amend> {
        self.amends.iter().find(|a| a.leg == leg)
    }
}

/// A request that passed the venue's grammar: what to send, and what it means.
#[derive(Debug)]
pub struct ParsedCall {
    /// The catalogued endpoint.
    pub endpoint: &'static EndpointSpec,
    /// Validated parameters in canonical order, decoded; auth fields removed. For
    /// venues with JSON bodies these are the top-level scalar fields (what the audit
    /// log and the outcome parsers read); the bytes sent are [`ParsedCall::body`].
    pub params: Vec<(&'static str, String)>,
    /// The body keyward serialised from the validated values, for venues whose body
    /// is not simply `params` form-encoded (JSON bodies). `None` for Binance.
    pub body: Option<String>,
    /// What the request would do.
    pub intent: Intent,
    /// Names of the bot's own auth fields that keyward removed (for the audit log).
    pub stripped: Vec<&'static str>,
    /// The orders the request names, and its new orders' client ids.
    pub refs: References,
}

/// What keyward tells a bot that asks the venue about its own API key (Bybit's
/// `query-api`): the bot's policy, never the account's key. The bot holds a keyward
/// token, and that is what a client inspecting "its key" should learn the truth about.
#[derive(Debug, Clone)]
pub struct KeyView<'a> {
    /// The bot's name.
    pub bot: &'a str,
    /// The endpoint classes the bot's grants cover.
    pub classes: &'a [EndpointClass],
    /// The symbols the bot may trade, as written in its policy.
    pub symbols: &'a [&'a str],
    /// When the bot's tokens expire, RFC 3339.
    pub expires_at: &'a str,
    /// Whole days until then.
    pub days_left: u64,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
}

impl KeyView<'_> {
    /// True when the bot can change nothing: no trade, cancel or configure grant.
    pub fn read_only(&self) -> bool {
        !self.classes.iter().any(|class| {
            matches!(
                class,
                EndpointClass::Trade | EndpointClass::Cancel | EndpointClass::Configure
            )
        })
    }
}

/// Everything the signer needs besides the call.
#[derive(Debug, Clone, Copy)]
pub struct SignContext<'a> {
    /// The account's key.
    pub credential: &'a dyn Signer,
    /// Timestamp from keyward's clock, in milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// The account's receive window in milliseconds.
    pub recv_window_ms: u32,
    /// Greater than every nonce keyward ever signed with this API key, across bots and
    /// restarts (Kraken); venues without nonces ignore it.
    pub nonce: u64,
}

/// A signed request, ready for the upstream client (which adds Host and Content-Length).
pub struct Outbound {
    /// Method.
    pub method: Method,
    /// Path and query, exactly as signed.
    pub path_and_query: String,
    /// Headers keyward sets (API key, content type); marked sensitive where secret-ish.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body bytes, exactly as signed.
    pub body: Vec<u8>,
}

impl fmt::Debug for Outbound {
    // The query and body carry the signature and the headers the API key: neither
    // belongs in a debug print that might reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path_and_query.split('?').next().unwrap_or_default();
        f.debug_struct("Outbound")
            .field("method", &self.method)
            .field("path", &path)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Where a (method, path) lands in a venue's world.
#[derive(Debug)]
pub enum Route {
    /// A catalogued endpoint.
    Endpoint(&'static EndpointSpec),
    /// On the hard floor (money movement, key management).
    Floor(EndpointRef),
    /// The path is catalogued under other methods.
    MethodNotAllowed,
    /// Not in the catalogue at all.
    Unknown,
}

/// An exchange (or exchange product) keyward can sign for.
pub trait Venue: Send + Sync + fmt::Debug {
    /// Which venue this is.
    fn id(&self) -> VenueId;
    /// The venue's WebSockets, where keyward serves them.
    fn streams(&self) -> Option<&'static dyn stream::StreamVenue> {
        None
    }
    /// `https://host` of the production API.
    fn default_upstream(&self) -> &'static str;
    /// The production base URL (`https://host`) of the product family `path` belongs
    /// to, where that is not [`Venue::default_upstream`]: Binance serves spot,
    /// USDⓈ-M, COIN-M and options from hosts of their own. Used only for accounts
    /// that trade on the production API; an account with its own upstream (a
    /// testnet, a mock) sends every path there.
    fn family_upstream(&self, _path: &str) -> Option<&'static str> {
        None
    }
    /// The header that carries the API key (and the bot's keyward token).
    fn key_header(&self) -> &'static str;
    /// keyward's own answer to `call` when it asks about the API key itself (Bybit's
    /// `GET /v5/user/query-api`, which clients read to learn the account type):
    /// content type and body, built from what the bot may do. Such requests are
    /// never forwarded; their signer refuses them.
    fn key_answer(
        &self,
        _call: &ParsedCall,
        _key: &KeyView<'_>,
    ) -> Option<(&'static str, Vec<u8>)> {
        None
    }
    /// True for the endpoints [`Venue::key_answer`] answers: catalogued so that they
    /// are parsed, authorized and recorded like any read, never signed or sent.
    fn answered_by_keyward(&self, _endpoint: &EndpointSpec) -> bool {
        false
    }
    /// Every endpoint keyward understands.
    fn catalogue(&self) -> &'static Catalogue;
    /// Every order type, with how it executes.
    fn order_types(&self) -> &'static [OrderTypeSpec];
    /// The floor class of an endpoint that moves money or manages keys, if it does.
    fn floor(&self, method: &Method, path: &str) -> Option<EndpointClass>;
    /// Parses and validates a call to a catalogued endpoint.
    fn parse(
        &self,
        endpoint: &'static EndpointSpec,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError>;
    /// Serialises, timestamps and signs a permitted call.
    fn sign(
        &self,
        call: &ParsedCall,
        permit: &Permit,
        context: SignContext<'_>,
    ) -> Result<Outbound, SignError>;
    /// What [`Venue::sign`] would send, with placeholders for the time-dependent and
    /// secret parts, for `keyward explain`.
    fn preview(&self, call: &ParsedCall, recv_window_ms: u32) -> Preview;
    /// keyward's refusal in the venue's own error envelope, so unmodified clients
    /// raise their usual exception with keyward's message: (content type, body).
    fn refusal(&self, refusal: &Refusal) -> (&'static str, Vec<u8>);
    /// The HTTP status a refusal goes out with: the one the exchange itself uses for
    /// that kind of error, where its clients read the status before the body (pybit
    /// reads Bybit's body only at 200 and takes 403 for an IP ban; krakenex raises on
    /// any status but 200 to 202). Required, so each venue says which convention it
    /// follows; keyward's own status ([`Refusal::status`]) stays in the audit record.
    fn refusal_status(&self, refusal: &Refusal) -> StatusCode;
    /// The limits the exchange documents for one IP and one account.
    fn exchange_limits(&self) -> &'static [ExchangeLimit];
    /// The usage counters a response reports.
    fn usage(&self, headers: &HeaderMap) -> Vec<UsageReport>;
    /// Whether a response orders keyward to stop sending, and for how long.
    fn backoff(&self, status: StatusCode, headers: &HeaderMap) -> Option<Backoff>;
    /// The unsigned endpoint that tells the exchange's time.
    fn time_path(&self) -> &'static str;
    /// The exchange's time, in ms since the epoch, from that endpoint's answer.
    fn server_time_ms(&self, body: &[u8]) -> Option<u64>;
    /// A request keyward makes on its own: (catalogue key, query), parsed and signed
    /// by the same code as the bots' requests.
    fn housekeeping(&self, task: Housekeeping, symbol: &Symbol) -> (&'static str, String);
    /// The best bid and ask from the answer to [`Housekeeping::Quote`] (and the slow
    /// price, where the same answer carries one).
    fn parse_quote(&self, body: &[u8]) -> Option<Quote>;
    /// keyward's own request for a slower reference price (the venue's average or
    /// index), for venues whose ticker does not carry one: (catalogue key, query).
    fn slow_price(&self, _symbol: &Symbol) -> Option<(&'static str, String)> {
        None
    }
    /// The slow price from the answer to [`Venue::slow_price`].
    fn parse_slow_price(&self, _body: &[u8]) -> Option<keyward_policy::Decimal> {
        None
    }
    /// What the exchange's answer (`status`, `body`) to `call` says: per order
    /// placed, rejected or unknown (refunds and open orders follow it: only what the
    /// answer proves did not happen is given back), and which orders it shows open
    /// or closed. Venues read batch answers element by element and half-failed
    /// answers (Binance's cancel-replace 409) half by half.
    fn outcome(&self, call: &ParsedCall, status: StatusCode, body: &[u8]) -> Outcome;
    /// Checks a symbol as an operator writes it in `symbols` (e.g. Bybit's
    /// `spot:BTCUSDT`); the error says what it should look like.
    fn check_symbol(&self, symbol: &str) -> Result<(), &'static str> {
        Symbol::new(symbol)
            .map(|_| ())
            .map_err(|_| "a symbol of letters, digits, '-', '/', '_' or ':'")
    }
    /// True if the exchange's answer says it refused the whole request, so no order in
    /// it executed (budgets are refunded). Venues that refuse inside an HTTP 200 body
    /// (Bybit `retCode`, OKX `code`, Kraken `error`) read the body.
    fn refused_outright(&self, status: StatusCode, _body: &[u8]) -> bool {
        status.is_client_error()
    }
    /// The weight the exchange charges for `call` against its per-IP request limit
    /// (Binance documents one per endpoint, some depending on parameters); venues
    /// that count requests charge 1.
    fn weight(&self, _call: &ParsedCall) -> u64 {
        1
    }
    /// keyward's own read of the order `reference` names (for `adopt_orders`), or
    /// `None` where the venue cannot look it up by what the request says.
    fn order_lookup(&self, reference: &OrderRef) -> Option<Lookup>;
    /// The order an answer to [`Venue::order_lookup`] describes.
    fn looked_up_order(&self, body: &[u8]) -> Option<ExchangeOrder>;
    /// True if every signed request needs [`SignContext::nonce`] (Kraken).
    fn uses_nonce(&self) -> bool {
        false
    }
    /// Checks an account's credential when it is loaded, for venues whose secrets have
    /// a shape the signer relies on (Kraken's base64 secret), so a bad one is refused
    /// at start-up rather than at the first order.
    fn check_credential(&self, _credential: &dyn Signer) -> Result<(), KeyUnfit> {
        Ok(())
    }
    /// Whether a response body orders keyward to stop sending, for venues that report
    /// rate limits inside HTTP 200 answers (Kraken's `EAPI:Rate limit exceeded`).
    fn backoff_in_body(&self, _body: &[u8]) -> Option<Backoff> {
        None
    }
    /// An HTTP/1 reason phrase for a refusal, for venues whose clients show only the
    /// status line on errors (krakenex raises `HTTPError` with the reason phrase and
    /// hides the body) and only for refusals not answered with 200. Printable ASCII;
    /// `None` keeps the standard phrase.
    fn refusal_reason_phrase(&self, _refusal: &Refusal) -> Option<String> {
        None
    }
    /// The catalogue path (with `{name}` segments) a concrete path matches, for venues
    /// with ids in their paths (Coinbase); consulted only when no path matches exactly.
    fn template(&self, _path: &str) -> Option<&'static str> {
        None
    }
    /// [`Venue::parse`] for venues that also read the concrete path (its `{name}`
    /// segments); the others ignore it.
    fn parse_at(
        &self,
        endpoint: &'static EndpointSpec,
        _path: &str,
        input: &CallInput<'_>,
    ) -> Result<ParsedCall, ParseError> {
        self.parse(endpoint, input)
    }
}

/// keyward's own signed read of one order (for a bot's `adopt_orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The catalogue key of the read.
    pub key: &'static str,
    /// The concrete path, for catalogue paths with the id in them (Coinbase).
    pub path: Option<String>,
    /// Its query.
    pub query: String,
    /// Its form body (Kraken's reads are POSTs).
    pub form: Option<String>,
    /// The symbol the order is looked up under, where the venue needs one.
    pub symbol: Option<Symbol>,
}

/// An order as the exchange describes it in an answer to a [`Lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeOrder {
    /// Its symbol, in keyward's spelling.
    pub symbol: Symbol,
    /// Direction.
    pub side: keyward_policy::Side,
    /// The venue's order-type name.
    pub order_type: Arc<str>,
    /// How it executes.
    pub execution: keyward_policy::Execution,
    /// Its size.
    pub size: keyward_policy::Size,
    /// Its limit price.
    pub price: Option<keyward_policy::Decimal>,
    /// Its trigger price.
    pub trigger: Option<keyward_policy::Decimal>,
    /// The exchange's id.
    pub id: String,
    /// Its client order id.
    pub client_id: Option<String>,
    /// Still open.
    pub open: bool,
}

/// What keyward asks an exchange on its own behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Housekeeping {
    /// The best bid and ask (a reference price).
    Quote,
    /// The account's open orders on a symbol.
    OpenOrders,
    /// Cancel every open order on a symbol (the kill switch).
    CancelAll,
}

/// What the exchange did with one order of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegResult {
    /// Placed (or, for an amend, changed): open unless the answer says it already
    /// filled or expired. An answer without a status (Binance `ACK`) is open.
    Placed(Placed),
    /// The answer proves it was not placed (or not changed).
    Rejected,
    /// The answer does not tell: it stays spent and counts as open.
    Unknown,
}

/// An order the exchange accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// The exchange's id for it.
    pub id: Option<String>,
    /// Its client order id as the exchange reports it.
    pub client_id: Option<String>,
    /// The order list it belongs to (Binance OCO, OTO, OTOCO).
    pub list_id: Option<String>,
    /// That order list's client id.
    pub list_client_id: Option<String>,
    /// False if the answer shows it already filled, cancelled or expired.
    pub open: bool,
}

/// An order an answer lists with its state (an order read, a cancel-all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its symbol.
    pub symbol: Symbol,
    /// The exchange's id.
    pub id: String,
    /// Its client order id, when the answer says it.
    pub client_id: Option<String>,
    /// Still open.
    pub open: bool,
}

/// What an exchange's answer says happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One entry per order of the request (`intent.orders`), in order: placed,
    /// rejected, or not known.
    pub legs: Vec<LegResult>,
    /// Orders the answer shows are no longer open (cancelled, replaced), by symbol
    /// where it says one, and id.
    pub closed: Vec<(Option<Symbol>, String)>,
    /// Symbols whose every open order the answer says it cancelled.
    pub closed_all: Vec<Symbol>,
    /// Orders the answer lists with their state (order reads). Reads tell whether an
    /// order is open; they never say whose it is.
    pub listed: Vec<Listed>,
    /// The cancels the request named (`refs.cancels`, in order) that the answer
    /// shows done. `None`: the answer gives no per-order detail.
    pub cancelled: Option<Vec<bool>>,
}

impl Outcome {
    /// Every order of `call` with the same result.
    pub fn all(call: &ParsedCall, result: &LegResult) -> Self {
        Self {
            legs: vec![result.clone(); call.intent.orders.len()],
            ..Self::default()
        }
    }

    /// The exchange refused the whole request: nothing placed, nothing cancelled.
    pub fn refused(call: &ParsedCall) -> Self {
        Self {
            cancelled: Some(vec![false; call.refs.cancels.len()]),
            ..Self::all(call, &LegResult::Rejected)
        }
    }

    /// The JSON of a 2xx answer, for the venue to read; otherwise what the status
    /// alone says. A 4xx refused the whole request, except a 408, which (like a 5xx,
    /// a 3xx or a body that is not JSON) says nothing about what was done: a gateway
    /// may time out after the exchange acted.
    pub fn from_status(
        call: &ParsedCall,
        status: StatusCode,
        body: &[u8],
    ) -> Result<serde_json::Value, Self> {
        if status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT {
            return Err(Self::refused(call));
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) if status.is_success() => Ok(value),
            _ => Err(Self::all(call, &LegResult::Unknown)),
        }
    }
}

/// A human-readable outline of the request keyward would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// Method.
    pub method: Method,
    /// Path and query, with placeholders.
    pub path_and_query: String,
    /// Header lines keyward adds, with placeholders for secrets.
    pub headers: Vec<String>,
    /// Body, with placeholders.
    pub body: String,
}

/// The decimal in a JSON string field, if it is one above zero (exchanges write "0"
/// or "0.00000000" for a price an order does not have).
pub fn positive_decimal(value: &serde_json::Value) -> Option<keyward_policy::Decimal> {
    value
        .as_str()?
        .parse::<keyward_policy::Decimal>()
        .ok()
        .filter(|d| !d.is_zero())
}

/// True if `path` is one of `exact` or starts with one of `prefixes`: how venues list
/// their floors.
pub fn listed(path: &str, exact: &[&str], prefixes: &[&str]) -> bool {
    exact.contains(&path) || prefixes.iter().any(|p| path.starts_with(p))
}

/// Finds where a (method, path) goes. The floor is consulted first, and a test keeps
/// the catalogues and the floors disjoint.
pub fn route(venue: &dyn Venue, method: &Method, path: &str) -> Route {
    if let Some(class) = venue.floor(method, path) {
        return Route::Floor(EndpointRef {
            key: Arc::from(format!("{method} {path}")),
            class,
        });
    }
    let catalogue = venue.catalogue();
    let specs = catalogue
        .by_path(path)
        .or_else(|| venue.template(path).and_then(|t| catalogue.by_path(t)));
    match specs {
        Some(specs) => specs
            .iter()
            .find(|spec| spec.method == method)
            .map_or(Route::MethodNotAllowed, |spec| Route::Endpoint(spec)),
        None => Route::Unknown,
    }
}

/// A venue's endpoints with an index by path built on first use.
#[derive(Debug)]
pub struct Catalogue {
    entries: &'static [EndpointSpec],
    index: OnceLock<HashMap<&'static str, Vec<&'static EndpointSpec>>>,
}

impl Catalogue {
    /// Wraps a static table.
    pub const fn new(entries: &'static [EndpointSpec]) -> Self {
        Self {
            entries,
            index: OnceLock::new(),
        }
    }

    /// Every endpoint, in table order.
    pub fn entries(&self) -> &'static [EndpointSpec] {
        self.entries
    }

    /// A grant of every endpoint, as an `allow` rule would make it (for the venue tests
    /// and the fuzzer, whose bots may call anything the venue parses).
    pub fn grant_all(&self) -> Vec<Grant> {
        self.entries
            .iter()
            .map(|spec| Grant {
                endpoint: spec.endpoint_ref(),
                via: Rule::Allow,
                bears_orders: spec.bears_orders(),
            })
            .collect()
    }

    /// The endpoint with this `METHOD /path` key.
    pub fn by_key(&self, key: &str) -> Option<&'static EndpointSpec> {
        self.entries.iter().find(|spec| spec.key == key)
    }

    fn by_path(&self, path: &str) -> Option<&Vec<&'static EndpointSpec>> {
        self.index
            .get_or_init(|| {
                let mut index: HashMap<&'static str, Vec<&'static EndpointSpec>> = HashMap::new();
                for spec in self.entries {
                    index.entry(spec.path).or_default().push(spec);
                }
                index
            })
            .get(path)
    }
}

/// Why a call to a catalogued endpoint was refused by the venue grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A body on a method that takes none.
    #[error("this request must not have a body")]
    BodyNotAllowed,
    /// A body of a type this endpoint does not take.
    #[error("the body must be application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    /// The query or body is not in the strict grammar.
    #[error("{0}")]
    Form(form::FormError),
    /// The same key in the query and the body.
    #[error("parameter `{key}` appears in both the query string and the body")]
    InQueryAndBody {
        /// The key (sanitised).
        key: String,
    },
    /// A key the endpoint does not take.
    #[error("parameter `{key}` is not accepted by keyward for this endpoint")]
    ParamUnknown {
        /// The key (sanitised).
        key: String,
    },
    /// A value outside its grammar.
    #[error("parameter `{key}` must be {expected}")]
    ParamInvalid {
        /// The key.
        key: &'static str,
        /// What it should look like.
        expected: &'static str,
    },
    /// A required key is absent.
    #[error("parameter `{key}` is required")]
    ParamMissing {
        /// The key.
        key: &'static str,
    },
    /// A duplicate key inside a JSON parameter.
    #[error("parameter `{param}` has a JSON key `{key}` more than once")]
    JsonDuplicateKey {
        /// The parameter holding the JSON.
        param: &'static str,
        /// The repeated key (sanitised).
        key: String,
    },
    /// A JSON parameter that does not parse.
    #[error("parameter `{param}` is not valid JSON of the expected shape")]
    JsonInvalid {
        /// The parameter holding the JSON.
        param: &'static str,
    },
    /// More orders in one request than the exchange takes.
    #[error("at most {max} orders may be sent in one batch")]
    BatchTooLarge {
        /// The exchange's maximum.
        max: usize,
    },
    /// A keyward token in the query string or body, where it would be logged.
    #[error("a keyward token must be sent only in the API-key header, never in parameters")]
    TokenInParams,
    /// A WebSocket message of the wrong shape.
    #[error("WebSocket message refused: {problem}")]
    StreamMessage {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A WebSocket method keyward does not serve on this path.
    #[error("WebSocket method `{method}` is not served by keyward on this path")]
    StreamMethodUnknown {
        /// The method (sanitised).
        method: String,
    },
}

impl ParseError {
    /// Shorthand for [`ParseError::ParamInvalid`].
    pub fn invalid(key: &'static str, expected: &'static str) -> Self {
        Self::ParamInvalid { key, expected }
    }

    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BodyNotAllowed => "body_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Form(form::FormError::Duplicate(_)) => "param_duplicate",
            Self::Form(_) => "param_invalid",
            Self::InQueryAndBody { .. } => "param_in_query_and_body",
            Self::ParamUnknown { .. } => "param_unknown",
            Self::ParamInvalid { .. } => "param_invalid",
            Self::ParamMissing { .. } => "param_missing",
            Self::JsonDuplicateKey { .. } => "json_duplicate_key",
            Self::JsonInvalid { .. } => "json_invalid",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::TokenInParams => "token_in_query",
            Self::StreamMessage { .. } => "stream_message_invalid",
            Self::StreamMethodUnknown { .. } => "stream_method_unknown",
        }
    }

    /// The HTTP status of the refusal: 415 for a body of another media type, 400
    /// for everything else the grammar refuses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyNotAllowed
            | Self::Form(_)
            | Self::InQueryAndBody { .. }
            | Self::ParamUnknown { .. }
            | Self::ParamInvalid { .. }
            | Self::ParamMissing { .. }
            | Self::JsonDuplicateKey { .. }
            | Self::JsonInvalid { .. }
            | Self::BatchTooLarge { .. }
            | Self::TokenInParams
            | Self::StreamMessage { .. }
            | Self::StreamMethodUnknown { .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// How an exchange's error envelope classes it.
    pub fn class(&self) -> RefusalClass {
        let fault = match self {
            Self::UnsupportedMediaType => return RefusalClass::UnsupportedMediaType,
            Self::Form(form::FormError::Duplicate(_)) | Self::InQueryAndBody { .. } => {
                Fault::ParamDuplicate
            }
            Self::ParamUnknown { .. } | Self::StreamMethodUnknown { .. } => Fault::ParamUnknown,
            Self::ParamMissing { .. } => Fault::ParamMissing,
            Self::JsonDuplicateKey { .. } | Self::JsonInvalid { .. } => Fault::JsonInvalid,
            Self::BodyNotAllowed
            | Self::Form(_)
            | Self::ParamInvalid { .. }
            | Self::BatchTooLarge { .. }
            | Self::TokenInParams
            | Self::StreamMessage { .. } => Fault::Other,
        };
        RefusalClass::Invalid(fault)
    }
}

/// A key from the request, made safe to echo in a message: printable identifiers pass,
/// anything else is replaced so attacker bytes never reach a response or a log line.
pub fn echo_key(key: &str) -> String {
    let printable = !key.is_empty()
        && key.len() <= 40
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'));
    if printable {
        key.to_owned()
    } else {
        "(unprintable)".to_owned()
    }
}
