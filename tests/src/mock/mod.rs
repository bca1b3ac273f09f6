//! A mock exchange over HTTPS: Binance (spot and USDⓈ-M) here, Bybit, OKX, Kraken and
//! Coinbase in their own files, each checking requests the way its venue documents
//! (API key, signature over exactly the bytes received, timestamp or nonce). It
//! records every request it receives, verified or not, and can be told to misbehave.
//!
//! It is a small hand-written HTTP/1.1 server on purpose: the misbehaviours (both
//! framings in one response, endless bodies, silence) are things a real server
//! library will not produce. The same listener serves the venues' WebSocket APIs
//! (an upgrade on the venue's path): Binance's spot WebSocket API (`/ws-api/v3`,
//! `binance_ws.rs`), Binance USDⓈ-M's user data stream (`/ws/<listenKey>`,
//! `/private/ws?listenKey=`, with its listenKey REST endpoints, `fstream.rs`), Bybit's private stream and order entry (`/v5/private`,
//! `/v5/trade`, `bybit_ws.rs`), OKX's private WebSocket (`/ws/v5/private`,
//! `okx_ws.rs`), Kraken spot's authenticated WebSocket v2 (`/v2`, `kraken_ws.rs`)
//! and Coinbase Advanced Trade's user-order-data WebSocket (`/`,
//! `coinbase_ws.rs`) and the public market-data streams of Binance spot, Bybit and OKX
//! (`market_ws.rs`), their handshake in `ws.rs`. Each venue's orders from REST and from
//! its WebSocket share one book: Binance spot's with one account (`spot.rs`), USDⓈ-M's
//! events in `fstream.rs`, and
//! every order change sends the venue's events to its WebSocket subscribers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{TempDir, canary, hmac_sha256_hex};

mod binance_ws;
mod bybit;
mod bybit_ws;
mod coinbase;
mod coinbase_ws;
mod faults;
mod fstream;
mod kraken;
mod kraken_ws;
mod market_ws;
mod okx;
mod okx_ws;
mod spot;
mod ws;

pub use faults::{Fault, Faults};

/// How the mock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Like Binance.
    Normal,
    /// `302` to an attacker's site.
    Redirect,
    /// `429` with `Retry-After: 30` and a used weight over the limit.
    RateLimited,
    /// `418` with `Retry-After: 120`: IP banned.
    Banned,
    /// `418` with `Retry-After` of this many seconds.
    BannedFor(u64),
    /// Normal answers reporting this much used: (request weight in the current
    /// minute, orders in the current 10 seconds).
    Usage(u64, u64),
    /// `-1021 INVALID_TIMESTAMP` on the next signed request, then normal.
    TimestampOnce,
    /// A response with both Content-Length and Transfer-Encoding, then a second one.
    Malformed,
    /// An endless chunked body.
    Huge,
    /// Answer after this many milliseconds.
    Slow(u64),
    /// HTTP 200 whose body reports a rate limit, as Kraken does
    /// (`EAPI:Rate limit exceeded`); venues without such errors answer normally.
    RateLimitedInBody,
    /// Normal answers, except for the faults drawn as the plan says.
    Faulty(Faults),
}

/// One request as the mock received it.
#[derive(Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: String,
    /// `Some(true)` if it carried a signature that verified, `Some(false)` if one that
    /// did not, `None` if unsigned. A Bybit `auth` or OKX `login` message is `Some`
    /// either way (one that cannot be verified at all is `Some(false)`), and so is a
    /// Coinbase WebSocket message with a `jwt`. A Kraken WebSocket message, which
    /// carries a token rather than a signature, is `None`.
    pub signature_ok: Option<bool>,
    /// For a message on a WebSocket whose connection logs in once (Bybit's `auth`,
    /// OKX's `login`): whether that connection was logged in when the message
    /// arrived, so its orders are the logged-in key's (a login message itself says
    /// whether the connection was logged in before it). For a Coinbase WebSocket
    /// message: whether its connection held a subscription to a channel that needs a
    /// JWT (user, futures_balance_summary), taken with one that verified, when it
    /// arrived. For a Kraken WebSocket message: whether the token it carries
    /// (`params.token`) was one the mock issued and takes on that connection
    /// (`None` for one without a token whose method needs none, such as `ping`).
    /// For Binance's listenKey requests (`/fapi/v1/listenKey`, on the API key
    /// alone): whether their API key was one the exchange accepts. `None` for other
    /// REST requests, upgrades and Binance's messages, each of which is signed on its
    /// own.
    pub authenticated: Option<bool>,
}

impl std::fmt::Debug for Recorded {
    // Failing assertions print records: header values (API keys, the OKX passphrase,
    // Coinbase's JWT) are left out, and so are the credentials a WebSocket message
    // carries in its body (Binance's `apiKey`, Bybit's `auth` key, OKX's `login` key
    // and passphrase, Coinbase's `jwt`, Kraken's `token`), so that a red test does not put the canary credentials into a
    // CI log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        let body = if self.method == ws::METHOD {
            ws::redacted(&self.body)
        } else {
            self.body.clone()
        };
        f.debug_struct("Recorded")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("header_names", &header_names)
            .field("body", &body)
            .field("signature_ok", &self.signature_ok)
            .field("authenticated", &self.authenticated)
            .finish()
    }
}

impl Recorded {
    /// keyward's own requests (clock checks, reference prices, open-order checks and
    /// the kill switch's cancels) say so in their user agent.
    pub fn is_keywards_own(&self) -> bool {
        self.header("user-agent").is_some_and(|ua| {
            ua.ends_with(" clock-check")
                || ua.ends_with(" reference-price")
                || ua.ends_with(" housekeeping")
        })
    }

    fn is_clock_check(&self) -> bool {
        self.header("user-agent")
            .is_some_and(|ua| ua.ends_with(" clock-check"))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Query and body parameters, decoded (for assertions). For a WebSocket message
    /// (method `WS`), Binance's or Kraken's `params`, or the first object of a Bybit or OKX
    /// frame's `args` (an order's fields), each value as text (a string as it is, a
    /// number or a boolean as written).
    pub fn params(&self) -> BTreeMap<String, String> {
        if self.method == ws::METHOD {
            let params = binance_ws::params_of(&self.body);
            if !params.is_empty() {
                return params;
            }
            return ws::first_args_of(&self.body);
        }
        self.query
            .split('&')
            .chain(self.body.split('&'))
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }

    /// A WebSocket message's `method` (Binance: `order.place`, ...; Kraken:
    /// `add_order`, ...), `op` (Bybit:
    /// `auth`, `order.create`, ...; OKX: `login`, `order`, ...) or `type` (Coinbase:
    /// `subscribe`, `unsubscribe`): `None` for REST requests, the upgrade itself and
    /// frames that are not a JSON request (OKX's `ping`).
    pub fn ws_method(&self) -> Option<String> {
        if self.method != ws::METHOD {
            return None;
        }
        let request: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        request["method"]
            .as_str()
            .or_else(|| request["op"].as_str())
            .or_else(|| request["type"].as_str())
            .map(str::to_owned)
    }

    /// Asserts that each of `expected` (a name and its value as text) is among
    /// [`Recorded::params`].
    pub fn assert_params(&self, expected: &[(&str, &str)]) {
        let params = self.params();
        for (name, value) in expected {
            assert_eq!(
                params.get(*name).map(String::as_str),
                Some(*value),
                "{name} of {self:?}"
            );
        }
    }

    /// Everything received, for "must not contain" checks.
    pub fn everything(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        format!(
            "{} {}?{}\n{}\n{}",
            self.method,
            self.path,
            self.query,
            headers.join("\n"),
            self.body
        )
    }
}

/// The WebSocket messages among `records` whose [`Recorded::ws_method`] is `method`.
pub fn ws_messages<'a>(records: &'a [Recorded], method: &str) -> Vec<&'a Recorded> {
    records
        .iter()
        .filter(|r| r.method == ws::METHOD && r.ws_method().as_deref() == Some(method))
        .collect()
}

#[derive(Debug)]
struct State {
    records: Mutex<Vec<Recorded>>,
    /// API key id -> HMAC secret of every key the exchange accepts.
    keys: Mutex<BTreeMap<String, String>>,
    /// Added to the mock's clock.
    skew_ms: std::sync::atomic::AtomicI64,
    /// Best bid and ask by symbol, for the order-book ticker.
    quotes: Mutex<BTreeMap<String, (String, String)>>,
    /// Average (or index) prices set by a test; otherwise the book's midpoint.
    averages: Mutex<BTreeMap<String, String>>,
    behaviour: Mutex<Behaviour>,
    /// Milliseconds after which an idle keep-alive connection is closed (0: never).
    idle_close_ms: AtomicU64,
    /// TLS connections accepted.
    accepted: AtomicU64,
    next_order: AtomicU64,
    open_orders: Mutex<Vec<serde_json::Value>>,
    /// The last nonce Kraken accepted, by API key (nonces must keep increasing).
    kraken_nonces: Mutex<BTreeMap<String, kraken::NonceBook>>,
    /// Kraken's per-key nonce window (0: none, every nonce must exceed the last).
    kraken_nonce_window: AtomicU64,
    /// Balances of the spot account, by asset.
    balances: Mutex<BTreeMap<String, spot::Holding>>,
    /// Spot orders that left the book (filled, canceled), for order queries.
    finished_orders: Mutex<Vec<serde_json::Value>>,
    next_trade: AtomicU64,
    /// Symbols whose orders are refused `-2010 Market is closed.`.
    closed_markets: Mutex<BTreeSet<String>>,
    /// Spot user-data events (`executionReport`, `outboundAccountPosition`) for the
    /// WebSocket API connections, each of which forwards them to its subscriptions.
    events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// Bybit's private-stream events (`{"topic", "data"}`: order, execution, wallet)
    /// for the `/v5/private` connections subscribed to their topic.
    bybit_events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// OKX's private-channel pushes (`{"channel", "instType", "instId", "data"}`) for
    /// the `/ws/v5/private` connections subscribed to a matching channel.
    okx_events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// Kraken's WebSocket v2 channel updates (`{"channel": "executions" |
    /// "balances", "data": [...]}`) for the `/v2` connections subscribed to their
    /// channel, each of which numbers them.
    kraken_events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// The WebSocket tokens Kraken's REST issued, with when (the mock's clock, ms).
    kraken_tokens: Mutex<BTreeMap<String, u64>>,
    /// Counts Kraken's `cancel_all_orders_after` requests: a timer cancels the
    /// orders only if no request replaced it.
    kraken_dead_man: Mutex<u64>,
    /// Coinbase's user-channel events (`{"type": "update", "orders": [...]}`, each
    /// order as the user channel describes it) for the connections on `/` subscribed
    /// to the user channel.
    coinbase_events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// USDⓈ-M user-data events (`ORDER_TRADE_UPDATE`, `TRADE_LITE`, `ACCOUNT_UPDATE`,
    /// and [`Mock::futures_event`]'s) for every user data stream connection.
    futures_events: tokio::sync::broadcast::Sender<serde_json::Value>,
    /// The active USDⓈ-M listenKey of each API key that started one.
    listen_keys: Mutex<BTreeMap<String, String>>,
    /// listenKeys that ended (deleted or expired): their connections close.
    listen_key_ends: tokio::sync::broadcast::Sender<String>,
    /// USDⓈ-M positions by symbol: (amount, entry price), in units of 10^-8.
    futures_positions: Mutex<BTreeMap<String, (i128, i128)>>,
    /// Numbers the WebSocket connections' ids (`connId`).
    next_connection: AtomicU64,
    /// Answers as a venue's public market-data host ([`Mock::serve_as_market_host`]).
    market_host: std::sync::atomic::AtomicBool,
    /// Bumped to drop every Binance WebSocket API connection at once, without a
    /// close frame, as a lost network path does.
    ws_drops: tokio::sync::watch::Sender<u64>,
    /// Draws and counts injected faults ([`Behaviour::Faulty`]).
    faults: faults::Injector,
    /// Called with each request before it is answered ([`Mock::echo`]).
    echo: std::sync::OnceLock<Echo>,
}

/// What [`Mock::echo`] calls with each request.
struct Echo(Box<dyn Fn(&Recorded) + Send + Sync>);

impl std::fmt::Debug for Echo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Echo")
    }
}

/// A running mock exchange.
#[derive(Debug)]
pub struct Mock {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The CA keyward must trust for it.
    pub ca: PathBuf,
    state: Arc<State>,
    _dir: TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    /// Starts a mock on a free loopback port with its own CA.
    pub async fn start() -> Self {
        Self::bind("127.0.0.1:0", &[]).await.expect("mock bind")
    }

    /// Makes this mock answer as a venue's public market-data host, where a path is
    /// the public one a private host shares: Kraken's `/v2` then serves its public
    /// channels (`ws.kraken.com`), not the authenticated WebSocket, and `/` Coinbase's
    /// market data (`advanced-trade-ws.coinbase.com`), not its user WebSocket.
    pub fn serve_as_market_host(&self) {
        self.state.market_host.store(true, Ordering::Relaxed);
    }

    /// Starts a mock listening on `addr` with its own CA, its certificate also
    /// valid for `names` (the `mock-exchange` program: a port the operator chose may
    /// be taken, a name they gave may be no DNS name).
    pub async fn bind(addr: &str, names: &[String]) -> std::io::Result<Self> {
        let dir = TempDir::new("mock");
        let tls = crate::test_server_tls_for(dir.path(), names).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("its certificate for {names:?}: {error}"),
            )
        })?;
        let acceptor = TlsAcceptor::from(tls);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            records: Mutex::new(Vec::new()),
            skew_ms: std::sync::atomic::AtomicI64::new(0),
            // The corpus's reference prices: BTCUSDT 60000, ETHUSDT 3000.
            quotes: Mutex::new(BTreeMap::from([
                (
                    "BTCUSDT".to_owned(),
                    ("59990".to_owned(), "60010".to_owned()),
                ),
                ("ETHUSDT".to_owned(), ("2999".to_owned(), "3001".to_owned())),
            ])),
            averages: Mutex::new(BTreeMap::new()),
            keys: Mutex::new(BTreeMap::from([(
                canary::API_KEY.to_owned(),
                canary::SECRET.to_owned(),
            )])),
            behaviour: Mutex::new(Behaviour::Normal),
            idle_close_ms: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            next_order: AtomicU64::new(1000),
            open_orders: Mutex::new(Vec::new()),
            balances: Mutex::new(spot::initial_balances()),
            finished_orders: Mutex::new(Vec::new()),
            next_trade: AtomicU64::new(1),
            closed_markets: Mutex::new(BTreeSet::new()),
            // A connection that falls this far behind loses events (and says so in
            // nothing): no test comes near it.
            events: tokio::sync::broadcast::channel(4096).0,
            bybit_events: tokio::sync::broadcast::channel(4096).0,
            okx_events: tokio::sync::broadcast::channel(4096).0,
            coinbase_events: tokio::sync::broadcast::channel(4096).0,
            kraken_events: tokio::sync::broadcast::channel(4096).0,
            kraken_tokens: Mutex::new(BTreeMap::new()),
            kraken_dead_man: Mutex::new(0),
            futures_events: tokio::sync::broadcast::channel(4096).0,
            listen_keys: Mutex::new(BTreeMap::new()),
            listen_key_ends: tokio::sync::broadcast::channel(64).0,
            futures_positions: Mutex::new(BTreeMap::new()),
            next_connection: AtomicU64::new(1),
            market_host: std::sync::atomic::AtomicBool::new(false),
            ws_drops: tokio::sync::watch::channel(0).0,
            kraken_nonces: Mutex::new(BTreeMap::new()),
            kraken_nonce_window: AtomicU64::new(0),
            faults: faults::Injector::default(),
            echo: std::sync::OnceLock::new(),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                let mut acceptor = acceptor.clone();
                let behaviour = *state.behaviour.lock().expect("behaviour");
                if let Behaviour::Faulty(plan) = behaviour {
                    // Every close of a faulty mock is abrupt: a reset, as when a
                    // load balancer or the exchange's host gives up on a connection.
                    let _ = tcp.set_zero_linger();
                    match state.faults.next_connection(&plan) {
                        Some(Fault::TlsAbort) => {
                            tokio::spawn(async move { faults::abort_handshake(&mut tcp).await });
                            continue;
                        }
                        Some(Fault::TlsBadCertificate) => {
                            acceptor = state.faults.rogue_acceptor();
                        }
                        _ => {}
                    }
                }
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        state.accepted.fetch_add(1, Ordering::Relaxed);
                        serve(tls, state).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            ca: dir.path().join(keyward_certs::CA_CERT),
            state,
            _dir: dir,
            task,
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// `wss://127.0.0.1:PORT/ws-api/v3`: Binance's spot WebSocket API.
    pub fn ws_url(&self) -> String {
        format!("{}{}", self.ws_base(), binance_ws::PATH)
    }

    /// `wss://127.0.0.1:PORT`: where every venue's WebSocket is, each on its own path
    /// (Binance USDⓈ-M's user data stream at `/ws/<listenKey>`, `/private/ws/<listenKey>`
    /// and `/private/ws?listenKey=<listenKey>`, Bybit's `/v5/private` and `/v5/trade`, OKX's `/ws/v5/private`,
    /// Kraken's `/v2`, Coinbase's user-order-data WebSocket at `/` itself).
    pub fn ws_base(&self) -> String {
        format!("wss://127.0.0.1:{}", self.addr.port())
    }

    /// `wss://127.0.0.1:PORT/v2`: Kraken spot's authenticated WebSocket v2
    /// (production `wss://ws-auth.kraken.com/v2`).
    pub fn kraken_ws_url(&self) -> String {
        format!("{}{}", self.ws_base(), kraken_ws::PATH)
    }

    /// Every request received so far from bots through keyward. keyward's own
    /// requests (see [`Mock::keywards_own`]) are left out.
    pub fn records(&self) -> Vec<Recorded> {
        self.state
            .records
            .lock()
            .expect("records")
            .iter()
            .filter(|r| !r.is_keywards_own())
            .cloned()
            .collect()
    }

    /// keyward's own requests received so far: clock checks, reference prices,
    /// open-order checks and cancels, told apart by their user agent.
    pub fn keywards_own(&self) -> Vec<Recorded> {
        self.state
            .records
            .lock()
            .expect("records")
            .iter()
            .filter(|r| r.is_keywards_own())
            .cloned()
            .collect()
    }

    /// keyward's own clock checks received so far.
    pub fn clock_checks(&self) -> Vec<Recorded> {
        self.state
            .records
            .lock()
            .expect("records")
            .iter()
            .filter(|r| r.is_clock_check())
            .cloned()
            .collect()
    }

    /// Sets (or with `None` removes) the best bid and ask the mock reports for `symbol`.
    pub fn set_quote(&self, symbol: &str, quote: Option<(&str, &str)>) {
        let mut quotes = self.state.quotes.lock().expect("quotes");
        match quote {
            Some((bid, ask)) => {
                quotes.insert(symbol.to_owned(), (bid.to_owned(), ask.to_owned()));
            }
            None => {
                quotes.remove(symbol);
            }
        }
    }

    /// Sets (or with `None` goes back to the book's midpoint) the average or index
    /// price the mock reports for `symbol` (Binance `avgPrice` and `markPrice`, OKX's
    /// index, Kraken's volume-weighted price, Bybit's mark price).
    pub fn set_average(&self, symbol: &str, price: Option<&str>) {
        let mut averages = self.state.averages.lock().expect("averages");
        match price {
            Some(price) => {
                averages.insert(symbol.to_owned(), price.to_owned());
            }
            None => {
                averages.remove(symbol);
            }
        }
    }

    /// The orders open on the mock exchange.
    pub fn open_orders(&self) -> Vec<serde_json::Value> {
        self.state.open_orders.lock().expect("orders").clone()
    }

    /// Drops every open Binance WebSocket API connection and USDⓈ-M user data stream
    /// without a close frame.
    pub fn drop_websockets(&self) {
        self.state.ws_drops.send_modify(|drops| *drops += 1);
    }

    /// Fills every open order at its price (they leave the open-order list). Binance
    /// spot orders move the account's balances and send their `executionReport`
    /// (`TRADE`, `FILLED`) and `outboundAccountPosition` to WebSocket API
    /// subscribers; Bybit orders send their `order` (`Filled`), `execution` and
    /// `wallet` events, OKX orders their `orders` push (`filled`), Coinbase orders
    /// their user-channel update (`FILLED`), Kraken orders their `executions` `trade`
    /// and `filled` events, USDⓈ-M orders their `TRADE_LITE`,
    /// `ORDER_TRADE_UPDATE` (`TRADE`, `FILLED`) and `ACCOUNT_UPDATE`.
    pub fn fill_all(&self) {
        let orders = std::mem::take(&mut *self.state.open_orders.lock().expect("orders"));
        for order in orders {
            if spot::is_spot(&order) {
                spot::fill(&self.state, order);
            } else if bybit::is_bybit(&order) {
                bybit::fill(&self.state, &order);
            } else if okx::is_okx(&order) {
                okx::fill(&self.state, &order);
            } else if coinbase::is_coinbase(&order) {
                coinbase::fill(&self.state, &order);
            } else if kraken::is_kraken(&order) {
                kraken::fill(&self.state, &order);
            } else if fstream::is_futures(&order) {
                fstream::fill(&self.state, &order);
            }
        }
    }

    /// Refuses orders on `symbol` (Binance's spelling, `ETHUSDT`) from now on, over
    /// REST and WebSocket alike: as Binance does a symbol that is not trading
    /// (`-2010 Market is closed.`), Bybit's `170157` (The trading pair is not
    /// available for api trading) on the same symbol, and OKX's `51022` on its
    /// instrument (`ETH-USDT`).
    pub fn close_market(&self, symbol: &str) {
        let mut closed = self.state.closed_markets.lock().expect("closed markets");
        closed.insert(symbol.to_owned());
    }

    /// Takes orders on `symbol` again (see [`Mock::close_market`]).
    pub fn open_market(&self, symbol: &str) {
        let mut closed = self.state.closed_markets.lock().expect("closed markets");
        closed.remove(symbol);
    }

    /// The spot account's (free, locked) balance of `asset`, with eight decimals as
    /// Binance writes them.
    pub fn balance(&self, asset: &str) -> (String, String) {
        let balances = self.state.balances.lock().expect("balances");
        let holding = balances.get(asset).copied().unwrap_or_default();
        (spot::decimal(holding.free), spot::decimal(holding.locked))
    }

    /// Sends a Bybit private-stream event as the exchange would (`{"topic", "data":
    /// [elements]}`) to the `/v5/private` connections subscribed to its topic.
    pub fn bybit_event(&self, topic: &str, data: Vec<serde_json::Value>) {
        let _ = self
            .state
            .bybit_events
            .send(serde_json::json!({"topic": topic, "data": data}));
    }

    /// Sends an OKX push as the exchange would (`data` on `channel` for SPOT
    /// instruments) to the logged-in connections subscribed to it.
    pub fn okx_push(&self, channel: &str, data: Vec<serde_json::Value>) {
        let _ = self
            .state
            .okx_events
            .send(serde_json::json!({"channel": channel, "instType": "SPOT", "data": data}));
    }

    /// Sends a Kraken WebSocket v2 `executions` update with `data` (execution
    /// reports as Kraken writes them: `order_id`, `exec_type`, `order_status`, ...)
    /// to the `/v2` connections subscribed to `executions`, each numbering it in its
    /// own `sequence` (one that asked for `order_status: false` gets only the open
    /// and close transitions and fills).
    pub fn kraken_execution(&self, data: Vec<serde_json::Value>) {
        kraken::publish(&self.state, data);
    }

    /// Sends a Coinbase user-channel `update` event with `orders` (objects as the user
    /// channel describes orders: `order_id`, `product_id`, `status`, ...) to the
    /// connections subscribed to the user channel, each narrowed to the orders of the
    /// products it subscribed to (all of them if it named none).
    pub fn coinbase_event(&self, orders: Vec<serde_json::Value>) {
        let _ = self
            .state
            .coinbase_events
            .send(serde_json::json!({"type": "update", "orders": orders}));
    }

    /// Sends a raw USDⓈ-M user-data event (`{"e": "ORDER_TRADE_UPDATE", ...}`, as
    /// Binance writes it) to every user data stream connection, whatever its key.
    pub fn futures_event(&self, event: serde_json::Value) {
        fstream::send(&self.state, event);
    }

    /// The USDⓈ-M listenKeys active now (one per API key that started one).
    pub fn listen_keys(&self) -> Vec<String> {
        fstream::active_keys(&self.state).into_values().collect()
    }

    /// Ends `key` as Binance does when a listenKey lapses: it is no longer active,
    /// and each connection on it gets `{"e": "listenKeyExpired", "E", "listenKey"}`
    /// and is closed.
    pub fn expire_listen_key(&self, key: &str) {
        self.state
            .listen_keys
            .lock()
            .expect("listen keys")
            .retain(|_, active| active != key);
        fstream::ended(&self.state, key);
    }

    /// Places a Binance spot limit order as if from outside keyward (the key's owner
    /// on the exchange's website, another program); returns its id.
    pub fn place_directly(&self, symbol: &str, side: &str) -> u64 {
        let params = BTreeMap::from([
            ("symbol".to_owned(), symbol.to_owned()),
            ("side".to_owned(), side.to_owned()),
            ("type".to_owned(), "LIMIT".to_owned()),
            ("quantity".to_owned(), "0.001".to_owned()),
            ("price".to_owned(), "60000".to_owned()),
        ]);
        let order = spot::accept(&self.state, new_order(&self.state, &params, false));
        order["orderId"].as_u64().unwrap_or_default()
    }

    /// Gives every Kraken key a nonce window, in nonce units (keyward's nonces are
    /// microseconds), as an operator sets one on a key in Kraken's settings.
    pub fn set_kraken_nonce_window(&self, window: u64) {
        self.state
            .kraken_nonce_window
            .store(window, Ordering::Relaxed);
    }

    /// Shifts the mock's clock (the time it serves and checks timestamps against).
    pub fn set_clock_skew_ms(&self, skew: i64) {
        self.state.skew_ms.store(skew, Ordering::Relaxed);
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.state.records.lock().expect("records").clear();
    }

    /// Makes the exchange accept another API key (as after creating a new key to
    /// rotate to); the canary key stays valid.
    pub fn accept_key(&self, api_key: &str, secret: &str) {
        self.state
            .keys
            .lock()
            .expect("keys")
            .insert(api_key.to_owned(), secret.to_owned());
    }

    /// Changes how the mock answers.
    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().expect("behaviour") = behaviour;
    }

    /// Closes keep-alive connections idle for `after` (with TLS's close_notify), as
    /// exchanges close theirs after a while.
    pub fn close_idle_after(&self, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.state.idle_close_ms.store(ms, Ordering::Relaxed);
    }

    /// TLS connections the exchange has accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// How many of each fault [`Behaviour::Faulty`] injected so far.
    pub fn faults_injected(&self) -> BTreeMap<Fault, u64> {
        self.state.faults.injected()
    }

    /// Every request received from bots through keyward since the last call (or
    /// [`Mock::clear`]), removed from the record: for counting what reached the
    /// exchange in runs too long to keep it all.
    pub fn take_records(&self) -> Vec<Recorded> {
        self.take_everything()
            .into_iter()
            .filter(|r| !r.is_keywards_own())
            .collect()
    }

    /// Calls `echo` with every request from now on, before the mock answers it (so
    /// that what it prints comes before anything the answer sets off). Set once.
    pub fn echo(&self, echo: impl Fn(&Recorded) + Send + Sync + 'static) {
        let _ = self.state.echo.set(Echo(Box::new(echo)));
    }

    /// Every request received since the last call, keyward's own included, removed
    /// from the record.
    pub fn take_everything(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.state.records.lock().expect("records"))
    }
}

/// The venue WebSocket a request head asks for.
enum Socket {
    Binance,
    Bybit(bybit_ws::Kind),
    Okx,
    Kraken,
    Coinbase,
    /// USDⓈ-M's user data stream, on its listenKey.
    Futures(String),
    /// A public market-data stream.
    Market(market_ws::Kind),
}

impl Socket {
    fn of(request: &Recorded, state: &State) -> Option<Self> {
        let path = request.path.as_str();
        if state.market_host.load(Ordering::Relaxed) {
            if path == kraken_ws::PATH {
                return Some(Self::Market(market_ws::Kind::Kraken));
            }
            if coinbase_ws::is_upgrade(request) {
                return Some(Self::Market(market_ws::Kind::Coinbase));
            }
        }
        if path == binance_ws::PATH {
            return Some(Self::Binance);
        }
        if let Some(kind) = bybit_ws::Kind::of(path) {
            return Some(Self::Bybit(kind));
        }
        if path == okx_ws::PATH {
            return Some(Self::Okx);
        }
        if path == kraken_ws::PATH {
            return Some(Self::Kraken);
        }
        if let Some(kind) = market_ws::Kind::of(path) {
            return Some(Self::Market(kind));
        }
        // `/` is Coinbase's WebSocket only when asked for one: a plain request for it
        // is answered as before.
        if coinbase_ws::is_upgrade(request) {
            return Some(Self::Coinbase);
        }
        fstream::listen_key_of(request).map(Self::Futures)
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: Arc<State>) {
    let mut buffer = Vec::new();
    loop {
        let idle_close = state.idle_close_ms.load(Ordering::Relaxed);
        let head = if idle_close > 0 && buffer.is_empty() {
            let patience = Duration::from_millis(idle_close);
            match tokio::time::timeout(patience, read_head(&mut stream, &mut buffer)).await {
                Ok(head) => head,
                Err(_) => {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        } else {
            read_head(&mut stream, &mut buffer).await
        };
        let Some(end) = head else {
            return;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let version = parts.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buffer[..length]).into_owned();
        buffer.drain(..length);
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let mut recorded = Recorded {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body,
            signature_ok: None,
            authenticated: None,
        };
        // A venue's WebSocket: the connection is its from here on.
        if let Some(socket) = Socket::of(&recorded, &state) {
            let asked = ws::Asked {
                stream,
                leftover: std::mem::take(&mut buffer),
                version,
                upgrade: recorded,
            };
            match socket {
                Socket::Binance => binance_ws::serve(asked, state).await,
                Socket::Bybit(kind) => bybit_ws::serve(asked, state, kind).await,
                Socket::Okx => okx_ws::serve(asked, state).await,
                Socket::Kraken => kraken_ws::serve(asked, state).await,
                Socket::Coinbase => coinbase_ws::serve(asked, state).await,
                Socket::Futures(key) => fstream::serve(asked, state, key).await,
                Socket::Market(kind) => market_ws::serve(asked, state, kind).await,
            }
            return;
        }
        let behaviour = *state.behaviour.lock().expect("behaviour");
        let response = respond(&state, &mut recorded, behaviour);
        state.record(recorded);
        if let Behaviour::Faulty(plan) = behaviour
            && let Some((fault, draw)) = state.faults.next_request(&plan)
        {
            if faults::misbehave(fault, &plan, draw, &mut stream, &response).await {
                continue;
            }
            return;
        }
        match behaviour {
            Behaviour::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Behaviour::Huge => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await;
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                loop {
                    if stream.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
            _ => {}
        }
        if stream.write_all(&response).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        if buffer.len() > 256 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn http(status: u16, reason: &str, extra: &[(&str, String)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn error(status: u16, code: i32, msg: &str) -> Vec<u8> {
    http(
        status,
        "Error",
        &[],
        &serde_json::json!({"code": code, "msg": msg}).to_string(),
    )
}

const PUBLIC: &[&str] = &[
    "/api/v3/ping",
    "/api/v3/time",
    "/api/v3/exchangeInfo",
    "/api/v3/ticker/price",
    "/api/v3/depth",
    "/api/v3/ticker/bookTicker",
    "/api/v3/avgPrice",
    "/fapi/v1/premiumIndex",
    "/fapi/v1/ping",
    "/fapi/v1/ticker/bookTicker",
    "/fapi/v1/time",
    "/fapi/v1/exchangeInfo",
    "/dapi/v1/exchangeInfo",
    "/eapi/v1/exchangeInfo",
    "/sapi/v1/system/status",
];

/// Endpoints Binance serves on the API key alone (no signature).
const KEY_ONLY: &[&str] = &["/sapi/v1/margin/allPairs"];

impl State {
    /// Keeps what the mock received (after telling [`Mock::echo`]'s callback).
    fn record(&self, recorded: Recorded) {
        if let Some(Echo(echo)) = self.echo.get() {
            echo(&recorded);
        }
        self.records.lock().expect("records").push(recorded);
    }

    /// Whether orders on `symbol` are refused (see [`Mock::close_market`]).
    fn market_closed(&self, symbol: &str) -> bool {
        self.closed_markets
            .lock()
            .expect("closed markets")
            .contains(symbol)
    }

    /// The average price of `symbol` (Binance's spelling): what a test set, or the
    /// midpoint of its book.
    fn average(&self, symbol: &str) -> Option<String> {
        if let Some(set) = self.averages.lock().expect("averages").get(symbol) {
            return Some(set.clone());
        }
        let (bid, ask) = self.quotes.lock().expect("quotes").get(symbol).cloned()?;
        let mid = (bid.parse::<f64>().ok()? + ask.parse::<f64>().ok()?) / 2.0;
        Some(format!("{mid}"))
    }

    /// [`State::average`] for a book already read (the quotes' lock held).
    fn average_of(&self, symbol: &str, bid: &str, ask: &str) -> String {
        if let Some(set) = self.averages.lock().expect("averages").get(symbol) {
            return set.clone();
        }
        let mid = (bid.parse::<f64>().unwrap_or(0.0) + ask.parse::<f64>().unwrap_or(0.0)) / 2.0;
        format!("{mid}")
    }

    /// The mock exchange's clock, skewed as told.
    fn now_ms(&self) -> u64 {
        now_ms().saturating_add_signed(self.skew_ms.load(Ordering::Relaxed))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

fn respond(state: &State, request: &mut Recorded, behaviour: Behaviour) -> Vec<u8> {
    match behaviour {
        Behaviour::Redirect => {
            return b"HTTP/1.1 302 Found\r\nLocation: https://attacker.example/collect\r\nContent-Length: 0\r\n\r\n".to_vec();
        }
        Behaviour::RateLimited => {
            return http(
                429,
                "Too Many Requests",
                &[
                    ("Retry-After", "30".into()),
                    ("X-MBX-USED-WEIGHT-1M", "6001".into()),
                ],
                r#"{"code":-1003,"msg":"Too many requests; current limit is 6000 request weight per 1 MINUTE."}"#,
            );
        }
        Behaviour::Banned | Behaviour::BannedFor(_) => {
            let seconds = match behaviour {
                Behaviour::BannedFor(seconds) => seconds,
                _ => 120,
            };
            return http(
                418,
                "I'm a teapot",
                &[("Retry-After", seconds.to_string())],
                r#"{"code":-1003,"msg":"Way too many requests; IP banned until 1893456000000."}"#,
            );
        }
        Behaviour::Malformed => {
            return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        }
        Behaviour::Normal
        | Behaviour::TimestampOnce
        | Behaviour::Huge
        | Behaviour::Slow(_)
        | Behaviour::RateLimitedInBody
        | Behaviour::Faulty(_)
        | Behaviour::Usage(..) => {}
    }
    let path = request.path.clone();
    if path.starts_with("/v5/") {
        return bybit::respond(state, request, behaviour);
    }
    if path.starts_with("/api/v5/") {
        return okx::respond(state, request, behaviour);
    }
    if path.starts_with("/0/") {
        return kraken::respond(state, request, behaviour);
    }
    if path.starts_with("/api/v3/brokerage/") {
        return coinbase::respond(state, request, behaviour);
    }
    if path.starts_with("/v2/") {
        return coinbase::respond_app(state, request);
    }
    if path == fstream::LISTEN_KEY_PATH {
        return fstream::respond_listen_key(state, request);
    }
    let public = PUBLIC.contains(&request.path.as_str());
    if KEY_ONLY.contains(&request.path.as_str()) && request.query.contains("signature=") {
        // Binance takes a signed request here too (ccxt signs this one), if the
        // signature verifies; the client tests check that keyward sends it unsigned.
        if let Some(rejection) = verify(state, request) {
            return rejection;
        }
    } else if KEY_ONLY.contains(&request.path.as_str()) {
        let known = request
            .header("x-mbx-apikey")
            .is_some_and(|key| state.keys.lock().expect("keys").contains_key(key));
        if !known {
            request.signature_ok = Some(false);
            return error(
                401,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            );
        }
    } else if !public {
        if let Some(rejection) = verify(state, request) {
            return rejection;
        }
        if behaviour == Behaviour::TimestampOnce {
            if let Ok(mut b) = state.behaviour.lock() {
                *b = Behaviour::Normal;
            }
            return error(
                400,
                -1021,
                "Timestamp for this request is outside of the recvWindow.",
            );
        }
    }
    let params = request.params();
    let body = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/api/v3/ping" | "/fapi/v1/ping") => "{}".to_owned(),
        ("GET", "/api/v3/time" | "/fapi/v1/time") => {
            format!("{{\"serverTime\":{}}}", state.now_ms())
        }
        ("GET", "/api/v3/exchangeInfo") => spot_exchange_info(),
        ("GET", "/fapi/v1/exchangeInfo") => futures_exchange_info(),
        ("GET", "/dapi/v1/exchangeInfo") => serde_json::json!({
            "timezone": "UTC", "serverTime": state.now_ms(), "rateLimits": [],
            "exchangeFilters": [], "symbols": [],
        })
        .to_string(),
        ("GET", "/eapi/v1/exchangeInfo") => serde_json::json!({
            "timezone": "UTC", "serverTime": state.now_ms(), "rateLimits": [],
            "optionContracts": [], "optionAssets": [], "optionSymbols": [],
        })
        .to_string(),
        ("GET", "/sapi/v1/system/status") => r#"{"status":0,"msg":"normal"}"#.to_owned(),
        ("GET", "/sapi/v1/margin/allPairs" | "/sapi/v1/margin/isolated/allPairs") => {
            serde_json::json!([{"id": 351_637_150_141_315_861_u64, "symbol": "BTCUSDT",
                "base": "BTC", "quote": "USDT", "isMarginTrade": true,
                "isBuyAllowed": true, "isSellAllowed": true}])
            .to_string()
        }
        ("GET", "/sapi/v1/capital/config/getall") => coins(),
        ("GET", "/sapi/v1/asset/tradeFee") => {
            r#"[{"symbol":"BTCUSDT","makerCommission":"0.001","takerCommission":"0.001"}]"#
                .to_owned()
        }
        ("GET", "/api/v3/ticker/price") => r#"{"symbol":"BTCUSDT","price":"60000.00"}"#.to_owned(),
        ("GET", "/api/v3/account") => spot_account(state, false).to_string(),
        ("GET", "/fapi/v2/account" | "/fapi/v3/account") => futures_account(),
        ("GET", "/fapi/v2/balance" | "/fapi/v3/balance") => futures_balance(),
        ("POST", "/api/v3/order") => {
            if state.market_closed(params.get("symbol").map_or("", String::as_str)) {
                return error(400, -2010, "Market is closed.");
            }
            let order = spot::accept(state, new_order(state, &params, false));
            answer_as(&order, &params).to_string()
        }
        ("POST", "/fapi/v1/order") => {
            let result = params.get("newOrderRespType").map(String::as_str) == Some("RESULT");
            let order = fstream::accept(state, new_order(state, &params, true), result);
            answer_as(&order, &params).to_string()
        }
        ("POST", "/api/v3/order/cancelReplace") => {
            let target = |o: &serde_json::Value| {
                o["symbol"] == params.get("symbol").map_or("", String::as_str)
                    && (params
                        .get("cancelOrderId")
                        .is_some_and(|id| id.parse::<u64>().ok() == o["orderId"].as_u64())
                        || params
                            .get("cancelOrigClientOrderId")
                            .is_some_and(|id| o["clientOrderId"] == id.as_str()))
            };
            let cancelled = {
                let mut orders = state.open_orders.lock().expect("orders");
                orders.iter().position(target).map(|i| orders.remove(i))
            };
            if let Some(order) = &cancelled {
                spot::cancel(state, order.clone(), None);
            }
            let allow_failure =
                params.get("cancelReplaceMode").map(String::as_str) == Some("ALLOW_FAILURE");
            let cancel_response = match &cancelled {
                Some(order) => {
                    let mut order = order.clone();
                    order["status"] = "CANCELED".into();
                    order
                }
                None => serde_json::json!({"code": -2011, "msg": "Unknown order sent."}),
            };
            if cancelled.is_none() && !allow_failure {
                let body = serde_json::json!({"code": -2022, "msg": "Order cancel-replace failed.", "data": {
                    "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                    "cancelResponse": cancel_response, "newOrderResponse": null}});
                return http(400, "Bad Request", &[], &body.to_string());
            }
            let order = spot::accept(state, new_order(state, &params, false));
            let body = serde_json::json!({
                "cancelResult": if cancelled.is_some() { "SUCCESS" } else { "FAILURE" },
                "newOrderResult": "SUCCESS",
                "cancelResponse": cancel_response,
                "newOrderResponse": answer_as(&order, &params),
            });
            if cancelled.is_none() {
                let body = serde_json::json!({"code": -2021, "msg": "Order cancel-replace partially failed.", "data": body});
                return http(409, "Conflict", &[], &body.to_string());
            }
            body.to_string()
        }
        ("PUT", "/fapi/v1/order") => {
            let mut orders = state.open_orders.lock().expect("orders");
            let found = orders.iter_mut().find(|o| {
                params
                    .get("orderId")
                    .is_some_and(|id| id.parse::<u64>().ok() == o["orderId"].as_u64())
                    || params
                        .get("origClientOrderId")
                        .is_some_and(|id| o["clientOrderId"] == id.as_str())
            });
            match found {
                Some(order) => {
                    order["price"] = params.get("price").cloned().unwrap_or_default().into();
                    order["origQty"] = params.get("quantity").cloned().unwrap_or_default().into();
                    order["updateTime"] = now_ms().into();
                    if fstream::is_futures(order) {
                        fstream::amended(state, order);
                    }
                    order.to_string()
                }
                None => return error(400, -2013, "Order does not exist."),
            }
        }
        ("POST", "/api/v3/order/test") => "{}".to_owned(),
        ("POST", "/fapi/v1/batchOrders") => {
            let list: Vec<serde_json::Value> = params
                .get("batchOrders")
                .and_then(|b| serde_json::from_str::<Vec<BTreeMap<String, String>>>(b).ok())
                .unwrap_or_default()
                .iter()
                .map(|element| {
                    let result =
                        element.get("newOrderRespType").map(String::as_str) == Some("RESULT");
                    fstream::accept(state, new_order(state, element, true), result)
                })
                .collect();
            serde_json::Value::Array(list).to_string()
        }
        ("DELETE", "/api/v3/order" | "/fapi/v1/order") => {
            let id: u64 = params
                .get("orderId")
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            let removed = {
                let mut orders = state.open_orders.lock().expect("orders");
                let index = orders.iter().position(|o| o["orderId"] == id);
                index.map(|index| orders.remove(index))
            };
            match removed {
                Some(mut order) => {
                    if spot::is_spot(&order) {
                        let new_id = params.get("newClientOrderId").map(String::as_str);
                        spot::cancel(state, order.clone(), new_id);
                    } else if fstream::is_futures(&order) {
                        order = fstream::cancel(state, order);
                    }
                    order["status"] = "CANCELED".into();
                    order.to_string()
                }
                None => return error(400, -2011, "Unknown order sent."),
            }
        }
        ("GET", "/api/v3/order" | "/fapi/v1/order") => {
            let mut orders = state.open_orders.lock().expect("orders").clone();
            if request.path.starts_with("/api") {
                // A spot order that left the book is still found, as on Binance.
                orders.extend(
                    state
                        .finished_orders
                        .lock()
                        .expect("orders")
                        .iter()
                        .cloned(),
                );
            }
            let found = orders.iter().find(|o| {
                o["symbol"] == params.get("symbol").map_or("", String::as_str)
                    && (params
                        .get("orderId")
                        .is_some_and(|id| id.parse::<u64>().ok() == o["orderId"].as_u64())
                        || params
                            .get("origClientOrderId")
                            .is_some_and(|id| o["clientOrderId"] == id.as_str()))
            });
            match found {
                Some(order) => order.to_string(),
                None => return error(400, -2013, "Order does not exist."),
            }
        }
        ("GET", "/api/v3/openOrders" | "/fapi/v1/openOrders") => {
            let orders = state.open_orders.lock().expect("orders");
            let symbol = params.get("symbol");
            let list: Vec<&serde_json::Value> = orders
                .iter()
                .filter(|o| symbol.is_none_or(|s| o["symbol"] == s.as_str()))
                .collect();
            serde_json::to_string(&list).unwrap_or_default()
        }
        ("DELETE", "/api/v3/openOrders") => {
            let symbol = params.get("symbol").cloned().unwrap_or_default();
            let cancelled = {
                let mut orders = state.open_orders.lock().expect("orders");
                let (cancelled, kept): (Vec<_>, Vec<_>) = orders
                    .drain(..)
                    .partition(|o| o["symbol"] == symbol.as_str());
                *orders = kept;
                cancelled
            };
            let cancelled: Vec<serde_json::Value> = cancelled
                .into_iter()
                .map(|mut o| {
                    if spot::is_spot(&o) {
                        spot::cancel(state, o.clone(), None);
                    }
                    o["status"] = "CANCELED".into();
                    o
                })
                .collect();
            serde_json::to_string(&cancelled).unwrap_or_default()
        }
        ("DELETE", "/fapi/v1/allOpenOrders") => {
            let symbol = params.get("symbol").cloned().unwrap_or_default();
            let cancelled = {
                let mut orders = state.open_orders.lock().expect("orders");
                let (cancelled, kept): (Vec<_>, Vec<_>) = orders
                    .drain(..)
                    .partition(|o| o["symbol"] == symbol.as_str());
                *orders = kept;
                cancelled
            };
            for order in cancelled.into_iter().filter(fstream::is_futures) {
                fstream::cancel(state, order);
            }
            r#"{"code":200,"msg":"The operation of cancel all open order is done."}"#.to_owned()
        }
        ("GET", "/api/v3/ticker/bookTicker" | "/fapi/v1/ticker/bookTicker") => {
            let symbol = params.get("symbol").cloned().unwrap_or_default();
            let quotes = state.quotes.lock().expect("quotes");
            match quotes.get(&symbol) {
                Some((bid, ask)) => serde_json::json!({
                    "symbol": symbol, "bidPrice": bid, "bidQty": "1.00000000",
                    "askPrice": ask, "askQty": "1.00000000"
                })
                .to_string(),
                None => return error(400, -1121, "Invalid symbol."),
            }
        }
        ("GET", "/api/v3/avgPrice" | "/fapi/v1/premiumIndex") => {
            let symbol = params.get("symbol").cloned().unwrap_or_default();
            match state.average(&symbol) {
                Some(price) if request.path.starts_with("/fapi") => serde_json::json!({
                    "symbol": symbol, "markPrice": price, "indexPrice": price,
                    "lastFundingRate": "0.0001", "time": now_ms()
                })
                .to_string(),
                Some(price) => {
                    serde_json::json!({"mins": 5, "price": price, "closeTime": now_ms()})
                        .to_string()
                }
                None => return error(400, -1121, "Invalid symbol."),
            }
        }
        ("GET", "/api/v3/myTrades") => "[]".to_owned(),
        ("GET", "/api/v3/depth") => {
            r#"{"lastUpdateId":1,"bids":[["59990.00","1.0"]],"asks":[["60010.00","1.0"]]}"#
                .to_owned()
        }
        _ => return error(404, -1, "mock: unknown endpoint"),
    };
    let (weight, orders) = match behaviour {
        Behaviour::Usage(weight, orders) => (weight, orders),
        _ => (10, 0),
    };
    http(
        200,
        "OK",
        &[
            ("X-MBX-USED-WEIGHT-1M", weight.to_string()),
            ("X-MBX-ORDER-COUNT-10S", orders.to_string()),
        ],
        &body,
    )
}

/// Binance's checks for a signed request; `None` when it passes.
/// `GET /sapi/v1/capital/config/getall`: two coins with one network each, in the
/// fields Binance documents.
fn coins() -> String {
    let coin = |coin: &str, name: &str, network: &str, fee: &str| {
        serde_json::json!({
            "coin": coin, "name": name, "depositAllEnable": true, "withdrawAllEnable": true,
            "free": "0", "locked": "0", "freeze": "0", "withdrawing": "0", "ipoing": "0",
            "ipoable": "0", "storage": "0", "isLegalMoney": false, "trading": true,
            "networkList": [{
                "network": network, "coin": coin, "withdrawIntegerMultiple": "0.00000001",
                "isDefault": true, "depositEnable": true, "withdrawEnable": true,
                "depositDesc": "", "withdrawDesc": "", "specialTips": "", "name": network,
                "resetAddressStatus": false, "addressRegex": "", "memoRegex": "",
                "withdrawFee": fee, "withdrawMin": fee, "withdrawMax": "9999999",
                "minConfirm": 1, "unLockConfirm": 0, "sameAddress": false,
                "estimatedArrivalTime": 5, "busy": false, "depositDust": "0.0001",
            }],
        })
    };
    serde_json::json!([
        coin("BTC", "Bitcoin", "BTC", "0.0002"),
        coin("USDT", "TetherUS", "TRX", "1"),
    ])
    .to_string()
}

fn verify(state: &State, request: &mut Recorded) -> Option<Vec<u8>> {
    let total = format!("{}{}", request.query, request.body);
    let Some((unsigned, signature)) = total.rsplit_once("&signature=") else {
        return Some(error(
            400,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        ));
    };
    let secret = request
        .header("x-mbx-apikey")
        .and_then(|key| state.keys.lock().expect("keys").get(key).cloned());
    let ok = secret
        .as_ref()
        .is_some_and(|secret| hmac_sha256_hex(secret.as_bytes(), unsigned.as_bytes()) == signature);
    request.signature_ok = Some(ok);
    if secret.is_none() {
        request.signature_ok = Some(false);
        return Some(error(
            401,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        ));
    }
    if !ok {
        return Some(error(
            400,
            -1022,
            "Signature for this request is not valid.",
        ));
    }
    let params = request.params();
    let timestamp: u64 = params
        .get("timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let window: u64 = params
        .get("recvWindow")
        .and_then(|t| t.parse().ok())
        .unwrap_or(5000);
    let server = state.now_ms();
    if timestamp >= server + 1000 || server.saturating_sub(timestamp) > window {
        return Some(error(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ));
    }
    None
}

/// The answer to an order as its `newOrderRespType` asks: `ACK` is only the ids, no
/// status.
fn answer_as(order: &serde_json::Value, params: &BTreeMap<String, String>) -> serde_json::Value {
    if params.get("newOrderRespType").map(String::as_str) != Some("ACK") {
        return order.clone();
    }
    serde_json::json!({
        "symbol": order["symbol"], "orderId": order["orderId"], "orderListId": -1,
        "clientOrderId": order["clientOrderId"], "transactTime": order["transactTime"]
    })
}

fn new_order(state: &State, params: &BTreeMap<String, String>, futures: bool) -> serde_json::Value {
    let id = state.next_order.fetch_add(1, Ordering::Relaxed);
    let get = |k: &str, default: &str| params.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let client_id = get("newClientOrderId", &format!("mock{id}"));
    let now = now_ms();
    if futures {
        serde_json::json!({
            "orderId": id, "symbol": get("symbol", ""), "status": "NEW", "clientOrderId": client_id,
            "price": get("price", "0"), "avgPrice": "0.00", "origQty": get("quantity", "0"), "executedQty": "0",
            "cumQty": "0", "cumQuote": "0", "timeInForce": get("timeInForce", "GTC"), "type": get("type", "LIMIT"),
            "reduceOnly": false, "closePosition": false, "side": get("side", "BUY"), "positionSide": "BOTH",
            "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": false, "origType": get("type", "LIMIT"),
            "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0, "updateTime": now
        })
    } else {
        serde_json::json!({
            "symbol": get("symbol", ""), "orderId": id, "orderListId": -1, "clientOrderId": client_id,
            "transactTime": now, "price": get("price", "0"), "origQty": get("quantity", "0"), "executedQty": "0.00000000",
            "origQuoteOrderQty": get("quoteOrderQty", "0.00000000"), "cummulativeQuoteQty": "0.00000000", "status": "NEW",
            "timeInForce": get("timeInForce", "GTC"), "type": get("type", "LIMIT"), "side": get("side", "BUY"),
            "workingTime": now, "fills": [], "selfTradePreventionMode": "NONE", "time": now, "updateTime": now,
            "isWorking": true, "stopPrice": "0.00000000", "icebergQty": "0.00000000"
        })
    }
}

fn spot_symbol(symbol: &str, base: &str) -> serde_json::Value {
    serde_json::json!({
        "symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8, "quoteAsset": "USDT",
        "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": true, "ocoAllowed": true, "otoAllowed": true, "quoteOrderQtyMarketAllowed": true,
        "allowTrailingStop": true, "cancelReplaceAllowed": true, "amendAllowed": true, "isSpotTradingAllowed": true,
        "isMarginTradingAllowed": false,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.00000100", "maxPrice": "1000000.00000000", "tickSize": "0.00000100"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000000.00000000", "stepSize": "0.00001000"},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5}
        ],
        "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]
    })
}

fn spot_exchange_info() -> String {
    serde_json::json!({
        "timezone": "UTC", "serverTime": now_ms(),
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "exchangeFilters": [],
        "symbols": [spot_symbol("BTCUSDT", "BTC"), spot_symbol("ETHUSDT", "ETH"), spot_symbol("DMGUSDT", "DMG")]
    })
    .to_string()
}

fn futures_exchange_info() -> String {
    let symbol = |name: &str, base: &str| {
        serde_json::json!({
            "symbol": name, "pair": name, "contractType": "PERPETUAL", "deliveryDate": 4133404800000u64,
            "onboardDate": 1569398400000u64, "status": "TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": base, "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8, "quotePrecision": 8,
            "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500", "multiplierDecimal": "4"}
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]
        })
    };
    serde_json::json!({
        "timezone": "UTC", "serverTime": now_ms(), "futuresType": "U_MARGINED", "rateLimits": [],
        "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-10000"}],
        "symbols": [symbol("BTCUSDT", "BTC"), symbol("ETHUSDT", "ETH")]
    })
    .to_string()
}

/// The spot account, its balances as they stand (`GET /api/v3/account`,
/// `account.status`).
fn spot_account(state: &State, omit_zero_balances: bool) -> serde_json::Value {
    serde_json::json!({
        "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
        "canTrade": true, "canWithdraw": false, "canDeposit": true, "brokered": false,
        "requireSelfTradePrevention": false, "preventSor": false, "updateTime": now_ms(), "accountType": "SPOT",
        "balances": spot::balances_json(state, omit_zero_balances),
        "permissions": ["SPOT"], "uid": 1
    })
}

fn futures_account() -> String {
    serde_json::json!({
        "totalInitialMargin": "0", "totalMaintMargin": "0", "totalWalletBalance": "1000",
        "totalUnrealizedProfit": "0", "totalMarginBalance": "1000", "totalPositionInitialMargin": "0",
        "totalOpenOrderInitialMargin": "0", "totalCrossWalletBalance": "1000", "totalCrossUnPnl": "0",
        "availableBalance": "1000", "maxWithdrawAmount": "1000",
        "assets": [{"asset": "USDT", "walletBalance": "1000", "unrealizedProfit": "0", "marginBalance": "1000",
            "maintMargin": "0", "initialMargin": "0", "positionInitialMargin": "0", "openOrderInitialMargin": "0",
            "crossWalletBalance": "1000", "crossUnPnl": "0", "availableBalance": "1000", "maxWithdrawAmount": "1000",
            "updateTime": now_ms()}],
        "positions": []
    })
    .to_string()
}

fn futures_balance() -> String {
    serde_json::json!([{"accountAlias": "mock", "asset": "USDT", "balance": "1000", "crossWalletBalance": "1000",
        "crossUnPnl": "0", "availableBalance": "1000", "maxWithdrawAmount": "1000", "marginAvailable": true, "updateTime": now_ms()}])
    .to_string()
}

/// One percent-decode, `+` left alone (as keyward sends nothing that has one).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(Ok(byte)) = text
                .get(i + 1..i + 3)
                .map(|hex| u8::from_str_radix(hex, 16))
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
