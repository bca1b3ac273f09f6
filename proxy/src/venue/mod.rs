//! Venue adapters: for each exchange, the endpoint catalogue, the strict parser from a
//! raw request to a validated call with its [`Intent`], and the signer.
//!
//! Adding a venue means adding a file here and a [`VenueId`] variant; every `match`
//! on `VenueId` is exhaustive, so the compiler lists what else needs it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use keyward_policy::{EndpointClass, EndpointRef, Grant, Intent, Permit, Quote, Rule, Symbol};

use crate::error::Rejection;
use crate::exchange::{Backoff, ExchangeLimit, UsageReport};
use crate::secret::{Credential, KeyError, SignError};

pub mod binance;
pub mod bybit;
pub mod coinbase;
pub mod form;
pub mod json;
pub mod kraken;
pub mod okx;
#[cfg(test)]
mod props;
pub mod schema;
#[cfg(test)]
mod testkit;

pub use schema::{EndpointSpec, OrderTypeSpec, Security};

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

/// A request that passed the venue's grammar: what to send, and what it means.
#[derive(Debug)]
pub struct ParsedCall {
    /// The catalogued endpoint.
    pub endpoint: &'static EndpointSpec,
    /// Validated parameters in canonical order, decoded; auth fields removed. For
    /// venues with JSON bodies these are the top-level scalar fields (what the audit
    /// log and `order_changes` read); the bytes sent are [`ParsedCall::body`].
    pub params: Vec<(&'static str, String)>,
    /// The body keyward serialised from the validated values, for venues whose body
    /// is not simply `params` form-encoded (JSON bodies). `None` for Binance.
    pub body: Option<String>,
    /// What the request would do.
    pub intent: Intent,
    /// Names of the bot's own auth fields that keyward removed (for the audit log).
    pub stripped: Vec<&'static str>,
}

/// Everything the signer needs besides the call.
#[derive(Debug, Clone, Copy)]
pub struct SignContext<'a> {
    /// The account's key.
    pub credential: &'a Credential,
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
    /// `https://host` of the production API.
    fn default_upstream(&self) -> &'static str;
    /// The header that carries the API key (and the bot's keyward token).
    fn key_header(&self) -> &'static str;
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
    fn refusal(&self, rejection: &Rejection) -> (&'static str, Vec<u8>);
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
    /// The best bid and ask from the answer to [`Housekeeping::Quote`].
    fn parse_quote(&self, body: &[u8]) -> Option<Quote>;
    /// The orders a successful answer to `call` shows opened or closed, and the
    /// symbols whose orders it closed all at once.
    fn order_changes(&self, call: &ParsedCall, body: &[u8]) -> OrderChanges;
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
    /// True if every signed request needs [`SignContext::nonce`] (Kraken).
    fn uses_nonce(&self) -> bool {
        false
    }
    /// Checks an account's credential when it is loaded, for venues whose secrets have
    /// a shape the signer relies on (Kraken's base64 secret), so a bad one is refused
    /// at start-up rather than at the first order.
    fn check_credential(&self, _credential: &Credential) -> Result<(), KeyError> {
        Ok(())
    }
    /// Whether a response body orders keyward to stop sending, for venues that report
    /// rate limits inside HTTP 200 answers (Kraken's `EAPI:Rate limit exceeded`).
    fn backoff_in_body(&self, _body: &[u8]) -> Option<Backoff> {
        None
    }
    /// An HTTP/1 reason phrase for a refusal, for venues whose clients show only the
    /// status line on errors (krakenex raises `HTTPError` with the reason phrase and
    /// hides the body). Printable ASCII; `None` keeps the standard phrase.
    fn refusal_reason_phrase(&self, _rejection: &Rejection) -> Option<String> {
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

/// Orders an answer shows opened or closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderChanges {
    /// Orders now open: (symbol, order id).
    pub opened: Vec<(Symbol, String)>,
    /// Orders no longer open.
    pub closed: Vec<(Symbol, String)>,
    /// Symbols whose every open order was closed.
    pub closed_all: Vec<Symbol>,
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
        }
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
