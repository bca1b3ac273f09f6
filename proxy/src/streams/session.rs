//! One bot WebSocket: its messages read strictly and each decided as its REST twin
//! by the request pipeline, the replies and the venue's events written back, and the
//! connection's limits (message size and rate, a bounded send queue, an idle
//! deadline) and lifecycle (the bot's token checked every second, the link to the
//! venue's end, keyward's shutdown) kept.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use keyward_venues::market::MarketPath;
use keyward_venues::stream::{BY_ORDER, BotMessage, Event, EventKind, ReplyTo, Role, StreamVenue};
use keyward_venues::{Venue, VenueId};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role as SocketRole, WebSocketConfig};
use zeroize::Zeroizing;

use super::allowance::{Counted, anonymous_share};
use super::link::{Ended, Link, Target};
use crate::app::App;
use crate::config::StreamUpstream;
use crate::pipeline::{self, ConnInfo, StreamRoute};

/// The largest message a bot may send: an order list with room to spare.
const MAX_BOT_MESSAGE: usize = 64 * 1024;
/// What the WebSocket reader itself takes, twice [`MAX_BOT_MESSAGE`]: a message
/// between the two is read whole and then refused with 1009 and a clean close
/// (cutting the connection while the bot still sends would reset it and lose the
/// close code); a larger one stops the reader at once.
const READ_LIMIT: usize = 2 * MAX_BOT_MESSAGE;
/// How much of a bot's bytes are read at once.
const READ_CHUNK: usize = 1024;
/// Messages (replies and events) waiting for a bot that reads slowly; one more and
/// the bot is disconnected rather than kept in memory.
const SEND_QUEUE: usize = 256;
/// How long a decided message's reply may wait for room in the send queue.
const REPLY_WAIT: Duration = Duration::from_secs(5);
/// Events the link may hold for the session before the bot counts as slow.
const EVENT_QUEUE: usize = 256;
/// Messages of one connection being decided or sent at once.
const IN_FLIGHT: usize = 16;
/// Messages a bot may send per second on one connection; more closes it. A sanity
/// cap well above order entry's needs: the bot's own rate limits (its policy) and
/// the exchange's decide how many of them are sent on.
const MESSAGES_PER_SECOND: u32 = 2_000;
/// Control frames (pings, pongs) a bot may send per second: a keep-alive needs one
/// every few seconds, and each one costs keyward a pong.
const CONTROL_FRAMES_PER_SECOND: u32 = 20;
/// How long a closing connection waits for the bot's own close frame.
const CLOSING: Duration = Duration::from_secs(1);
/// How long an event naming an order only by id may wait for the outcome of a
/// message still in flight on its connection (see `await_own_outcomes`).
const OUTCOME_WAIT: Duration = Duration::from_secs(1);
/// A connection with no frame from the bot for this long is closed.
const IDLE: Duration = Duration::from_secs(600);

/// The ends of the connection's links to the venue: its own, and on a path that
/// also carries public market data (Kraken's `/v2`), the market-data relay's.
#[derive(Default)]
struct Ends {
    link: Option<watch::Receiver<Option<Ended>>>,
    market: Option<watch::Receiver<Option<Ended>>>,
}

/// Who the connection speaks for, once a token was presented.
struct Bound {
    who: Presented,
    bot: String,
    /// The configuration the bot's subscriptions were last decided under.
    decided_under: std::sync::Mutex<Arc<crate::app::Snapshot>>,
    /// Counts the connection among the bot's, until it ends.
    _counted: super::Counted,
}

/// How the connection's bot proved itself.
#[derive(Clone)]
enum Presented {
    /// Its keyward token, presented again on the twin of each of its messages.
    Token(Zeroizing<String>),
    /// One of its keys, by name, whose JWT keyward verified (Coinbase's
    /// subscriptions); the twins name the key, and its standing is checked on each.
    /// The JWT is kept: clients present the same one for every subscription of its
    /// two minutes, which on this connection is no replay.
    Key {
        name: String,
        jwt: Zeroizing<String>,
    },
}

/// Serves the WebSocket a bot's upgrade request became.
pub(crate) async fn serve(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    (venue, path): (VenueId, &'static str),
    host: Option<HeaderValue>,
    opened: pipeline::Opened,
    request: Request<Incoming>,
) {
    let Some(streams) = venue.adapter().streams() else {
        return;
    };
    let upgraded = match hyper::upgrade::on(request).await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "the bot left before its WebSocket opened");
            return;
        }
    };
    // tungstenite reads and writes through 128 KiB buffers by default, which every
    // idle bot connection would hold; a bot's messages are small.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(0)
        .max_message_size(Some(READ_LIMIT))
        .max_frame_size(Some(READ_LIMIT))
        .max_write_buffer_size(4 * MAX_BOT_MESSAGE);
    let socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), SocketRole::Server, Some(config))
            .await;
    let (sink, source) = socket.split();
    let (queue, outgoing) = mpsc::channel(SEND_QUEUE);
    let writer = tokio::spawn(write(sink, outgoing));
    let mut session = Session {
        app,
        conn,
        venue: venue.adapter(),
        streams,
        path,
        // A path of the venue's private messages that also carries market data
        // (Kraken's) relays it message by message instead.
        market: streams
            .market_paths()
            .iter()
            .find(|p| p.path == path)
            .filter(|_| !streams.paths().iter().any(|p| p.path == path)),
        shared_market: streams
            .market_paths()
            .iter()
            .find(|p| p.path == path)
            .filter(|_| streams.paths().iter().any(|p| p.path == path)),
        market_link: None,
        events_in: None,
        host,
        bound: None,
        link: None,
        link_keyed: false,
        relayed: None,
        upstream_path: None,
        kept_alive: None,
        listen_key: None,
        minted: None,
        fresh_jwt: std::cell::Cell::new(None),
        events: None,
        queue,
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        in_progress: futures_util::stream::FuturesUnordered::new(),
    };
    let mut source = source;
    let started = match opened {
        pipeline::Opened::UserStream(key) => session.user_stream(&key).await,
        pipeline::Opened::NamedStream(path) => {
            session.upstream_path = Some(path);
            Ok(())
        }
        pipeline::Opened::Path => Ok(()),
    };
    let close = match started {
        Ok(()) => session.run(&mut source).await,
        Err(close) => close,
    };
    if let Some(link) = session.link.take() {
        link.0.close().await;
    }
    if let Some((link, _)) = session.market_link.take() {
        link.close().await;
    }
    let _ = session.queue.send(Message::Close(Some(close))).await;
    drop(session);
    // The closing handshake: what the bot still sends is read and dropped until its
    // own close (or a second), so that closing does not reset a connection with
    // frames in flight, which would lose the close frame and its code.
    let _ = tokio::time::timeout(CLOSING, async {
        while let Some(Ok(frame)) = source.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    let _ = writer.await;
}

struct Session {
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    venue: &'static dyn Venue,
    streams: &'static dyn StreamVenue,
    path: &'static str,
    /// A relayed public market-data stream: no token, and no message decided.
    market: Option<&'static MarketPath>,
    /// The market data a path of the venue's private messages also carries
    /// (Kraken's `/v2`, Coinbase's `/`), relayed message by message.
    shared_market: Option<&'static MarketPath>,
    /// The relay of market data on a path that also carries private messages.
    market_link: Option<(Arc<Link>, watch::Receiver<Option<Ended>>)>,
    /// The sender of `events`, for each link made.
    events_in: Option<mpsc::Sender<Event>>,
    host: Option<HeaderValue>,
    bound: Option<Bound>,
    /// The link to the venue, the account it is for, and its end.
    link: Option<(Arc<Link>, String, watch::Receiver<Option<Ended>>)>,
    /// Whether that link logs in with the account's key: only for a bot bound to
    /// the connection.
    link_keyed: bool,
    /// The market-data messages relayed on the connection, where the venue limits
    /// them per connection.
    relayed: Option<crate::throttle::Window>,
    /// Where the link reads, when not the bot's own path (a user data stream's,
    /// naming the account's real listenKey).
    upstream_path: Option<String>,
    /// For a user data stream: when the account's real listenKey was last kept
    /// alive.
    kept_alive: Option<Instant>,
    /// For a user data stream: keyward's listenKey it was opened with, which must
    /// stay valid (the bot keeps it alive, or ends it) for the stream to go on.
    listen_key: Option<Zeroizing<String>>,
    /// For a venue whose messages carry a WebSocket token keyward minted (Kraken):
    /// the one the connection was bound with and the keyward token it stands for.
    /// It stays good on this connection after its first-use window, as the venue's
    /// own does while its connection is open.
    minted: Option<(Zeroizing<String>, Zeroizing<String>)>,
    /// A bot JWT verified here for the first time, with its account: with a shared
    /// state backend it must be new to every replica too before it is used.
    fresh_jwt: std::cell::Cell<Option<(String, crate::botjwt::Seen)>>,
    /// The venue's events for the bot, once there is a link to bring them (made
    /// then: an idle connection holds no queue).
    events: Option<mpsc::Receiver<Event>>,
    queue: mpsc::Sender<Message>,
    in_flight: Arc<Semaphore>,
    /// The messages being decided and sent, polled by the connection's own task:
    /// a message's decision, its send on the link and its reply then cost no hand-off
    /// to another task (each a thread wake-up when the runtime's other worker sleeps).
    in_progress:
        futures_util::stream::FuturesUnordered<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Session {
    /// Reads the bot's frames until the connection ends; returns how to close it.
    async fn run(
        &mut self,
        source: &mut futures_util::stream::SplitStream<
            WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
        >,
    ) -> CloseFrame {
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let mut last_frame = Instant::now();
        let mut window = (Instant::now(), 0_u32, 0_u32);
        let mut ended = Ends {
            link: self.link.as_ref().map(|(_, _, watching)| watching.clone()),
            market: None,
        };
        let mut stopping = self.app.streams.stopping();
        loop {
            tokio::select! {
                () = stopped(&mut stopping) => {
                    return closing(CloseCode::Away, "keyward is stopping");
                }
                frame = source.next() => {
                    let frame = match frame {
                        Some(Ok(frame)) => frame,
                        Some(Err(error)) => return refused_frame(&error),
                        None => return closing(CloseCode::Normal, ""),
                    };
                    last_frame = Instant::now();
                    if window.0.elapsed() >= Duration::from_secs(1) {
                        window = (Instant::now(), 0, 0);
                    }
                    if matches!(frame, Message::Ping(_) | Message::Pong(_)) {
                        window.2 += 1;
                    } else {
                        window.1 += 1;
                    }
                    if window.1 > MESSAGES_PER_SECOND || window.2 > CONTROL_FRAMES_PER_SECOND {
                        return closing(CloseCode::Policy, "message rate exceeded");
                    }
                    match frame {
                        Message::Text(text) if text.len() > MAX_BOT_MESSAGE => {
                            return closing(CloseCode::Size, "message too large");
                        }
                        Message::Binary(bytes) if bytes.len() > MAX_BOT_MESSAGE => {
                            return closing(CloseCode::Size, "message too large");
                        }
                        Message::Text(text) => {
                            if !self.message(text.as_str(), &mut ended).await {
                                return closing(CloseCode::Again, "too many messages waiting for their replies");
                            }
                        }
                        Message::Binary(_) => self.refuse_frame("binary frames are not accepted; send JSON text"),
                        Message::Close(_) => return closing(CloseCode::Normal, ""),
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Some(()) = self.in_progress.next(), if !self.in_progress.is_empty() => {}
                Some(event) = next_event(&mut self.events) => {
                    if !self.event(event).await {
                        return closing(CloseCode::Policy, "the bot does not read its events");
                    }
                }
                _ = check.tick() => {
                    if last_frame.elapsed() > IDLE {
                        return closing(CloseCode::Away, "idle");
                    }
                    if !self.still_admitted() {
                        return closing(CloseCode::Policy, "the bot's token or policy changed; reconnect");
                    }
                    if let Some(key) = &self.listen_key
                        && self.app.streams.listen_keys.resolve(key).is_none()
                    {
                        // As the venue ends a stream whose key expired or was deleted.
                        return closing(CloseCode::Policy, "the listenKey expired");
                    }
                    if self.queue.capacity() == 0 {
                        return closing(CloseCode::Policy, "the bot does not read its messages");
                    }
                    self.keep_alive();
                }
                why = wait_either(&mut ended) => {
                    return match why {
                        Ended::SlowConsumer => closing(CloseCode::Policy, "the bot does not read its events"),
                        Ended::Lost => closing(CloseCode::Again, "the exchange's stream was lost; reconnect"),
                    };
                }
            }
        }
    }

    /// Starts a user data stream (Binance USDⓈ-M): the connection is the bot's whose
    /// keyward listenKey its URL names, and keyward's link reads the account's
    /// stream at once under the real key, which never leaves keyward.
    async fn user_stream(&mut self, key: &str) -> Result<(), CloseFrame> {
        let Some(minted) = self.app.streams.listen_keys.resolve(key) else {
            return Err(closing(CloseCode::Policy, "the listenKey is not valid"));
        };
        // Bound by the token that asked for the key: revoking it ends the stream.
        if self.bind(Some(minted.token.as_str())).is_err()
            || self.bound.as_ref().map(|bound| bound.bot.as_str()) != Some(minted.bot.as_str())
        {
            return Err(closing(CloseCode::Policy, "the listenKey is not valid"));
        }
        let snapshot = self.app.snapshot();
        let runtime = snapshot
            .accounts
            .get(minted.account.as_str())
            .cloned()
            .ok_or_else(|| closing(CloseCode::Error, "no such account"))?;
        let real = self
            .app
            .streams
            .listen_keys
            .real_key(self.streams, &runtime)
            .await
            .map_err(|error| {
                tracing::warn!(account = %minted.account, reason = error.reason(), "no listenKey from the exchange");
                closing(CloseCode::Again, "the exchange's stream is not available; reconnect")
            })?;
        self.upstream_path = self.streams.user_stream_target(&real);
        self.kept_alive = Some(Instant::now());
        self.listen_key = Some(Zeroizing::new(key.to_owned()));
        let (link, _) = self
            .link_for(true)
            .await
            .map_err(|rejection| match rejection {
                crate::error::Rejection::ExchangeLimitNear { .. } => closing(
                    CloseCode::Again,
                    "keyward's connections to the exchange are at its limit; reconnect shortly",
                ),
                crate::error::Rejection::StateUnavailable => closing(
                    CloseCode::Again,
                    "keyward's shared state is unavailable; reconnect shortly",
                ),
                _ => closing(CloseCode::Policy, "no stream for this account"),
            })?;
        if let Err(error) = link.open().await {
            tracing::warn!(account = %minted.account, reason = error.reason(), "the user data stream did not open");
            self.app
                .streams
                .listen_keys
                .forget_real(&minted.account)
                .await;
            return Err(closing(
                CloseCode::Again,
                "the exchange's stream is not available; reconnect",
            ));
        }
        let _ = pipeline::record_stream_method(
            &self.app,
            &self.conn,
            (self.venue.id(), self.path),
            "userDataStream",
            Some(&minted.bot),
            "stream_control",
        );
        Ok(())
    }

    /// Keeps the account's real listenKey alive while a user data stream reads it
    /// (its refresh is the venue's create, which extends the key it gives).
    fn keep_alive(&mut self) {
        let Some(kept) = self.kept_alive else {
            return;
        };
        if kept.elapsed() < self.streams.real_key_reuse() {
            return;
        }
        self.kept_alive = Some(Instant::now());
        let Some((_, account, _)) = &self.link else {
            return;
        };
        let (app, streams, account) = (self.app.clone(), self.streams, account.clone());
        tokio::spawn(async move {
            let Some(runtime) = app.snapshot().accounts.get(account.as_str()).cloned() else {
                return;
            };
            if let Err(error) = app.streams.listen_keys.real_key(streams, &runtime).await {
                tracing::warn!(%account, reason = error.reason(), "the exchange's listenKey was not kept alive");
            }
        });
    }

    /// With a shared state backend, a bot JWT that this message presents for the
    /// first time on this connection is spent for every replica before anything of
    /// the message is decided: one captured JWT opens no stream on another replica.
    /// A JWT another replica saw unbinds the connection (the bot must present a new
    /// one). A message whose JWT is refused here is refused as it always was, by
    /// the method itself.
    async fn spend_jwt_everywhere(
        &mut self,
        message: &BotMessage,
    ) -> Result<(), crate::error::Rejection> {
        let (Some(shared), Some(token)) = (self.app.shared.clone(), message.token.as_deref())
        else {
            return Ok(());
        };
        if !crate::botjwt::looks_like_jwt(token) || self.bind(Some(token)).is_err() {
            return Ok(());
        }
        let Some((account, seen)) = self.fresh_jwt.take() else {
            return Ok(());
        };
        match shared.spend_once(&account, seen).await {
            Ok(()) => Ok(()),
            Err(refusal) => {
                self.bound = None;
                Err(match refusal {
                    crate::shared::Refusal::Denied(denied) => denied.into(),
                    _ => crate::error::Rejection::StateUnavailable,
                })
            }
        }
    }

    /// Handles one text message. `false` when the connection has too many messages
    /// in flight (the bot does not wait for its replies).
    async fn message(&mut self, text: &str, ended: &mut Ends) -> bool {
        if let Some(market) = self.market {
            self.relay(market, text, ended).await;
            return true;
        }
        let message = match self.streams.read_message(self.path, text) {
            Ok(message) => message,
            // Kraken's and Coinbase's public channels share their private path: a
            // message that is no private one (it carries no token) may be a
            // market-data subscription, relayed. Private messages are read once.
            Err(_)
                if self.shared_market.is_some_and(|market| {
                    keyward_venues::market::read(market.protocol, text).is_ok()
                }) =>
            {
                if let Some(market) = self.shared_market {
                    self.relay(market, text, ended).await;
                }
                return true;
            }
            Err(error) => {
                // The refusal still answers the id the client waits on.
                let (id, method) = keyward_venues::stream::identify(text);
                self.refuse_with(&Answering { id, method }, error.into());
                return true;
            }
        };
        if let Err(rejection) = self.spend_jwt_everywhere(&message).await {
            self.refuse_with(&Answering::of(&message), rejection);
            return true;
        }
        match message.method.role {
            Role::Logon | Role::Status | Role::Logout | Role::Ping => {
                self.session_method(&message);
                true
            }
            Role::Call | Role::Subscribe | Role::Unsubscribe | Role::Control => {
                let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                    return false;
                };
                self.call(message, ended, permit).await;
                true
            }
        }
    }

    /// A message on a relayed market-data stream: checked to ask only for market
    /// data in the venue's grammar, recorded, and sent on as the bot wrote it.
    async fn relay(&mut self, market: &'static MarketPath, text: &str, ended: &mut Ends) {
        let refuse =
            |session: &mut Self, id: &str, method: &str, rejection: crate::error::Rejection| {
                // Recorded like any refused message; the answer is the venue's error for
                // a subscription.
                let _ = pipeline::refuse_message(
                    &session.app,
                    &session.conn,
                    session.venue.id(),
                    session.path,
                    &rejection,
                );
                let refusal = rejection.refusal();
                let text = keyward_venues::market::refusal(
                    market.protocol,
                    id,
                    method,
                    refusal.reason,
                    &refusal.message,
                );
                let _ = session.queue.try_send(Message::text(text));
            };
        let read = match keyward_venues::market::read(market.protocol, text) {
            Ok(read) => read,
            Err(error) => {
                let (id, method) = keyward_venues::stream::identify(text);
                return refuse(self, &id, &method, error.into());
            }
        };
        // Refused here, not sent: past its limits the venue disconnects keyward,
        // and bans the address it keeps disconnecting.
        // A message refused on its connection is not counted for the address.
        let per_connection = market.messages_per_connection.map_or(Ok(()), |allowance| {
            self.relayed
                .get_or_insert_with(|| super::allowance::window(allowance))
                .take(Instant::now())
        });
        if let Err(retry_after) = per_connection {
            let rejection = crate::error::Rejection::ExchangeLimitNear { retry_after };
            return refuse(self, &read.id, read.method, rejection);
        }
        if let Some(allowance) = market.messages_per_address {
            let counted = [(Counted::UnauthenticatedMessages, allowance)];
            let taken = self
                .app
                .streams
                .per_address
                .take(self.app.shared.as_ref(), self.venue.id(), &counted)
                .await;
            if let Err(rejection) = taken {
                return refuse(self, &read.id, read.method, rejection);
            }
        }
        // A market-data stream of its own relays on the connection's one link; on
        // a path that also carries the venue's private messages, on a second.
        let link = if self.market.is_some() {
            self.link_for(false).await
        } else {
            self.market_link_for(market).await
        };
        let link = match link {
            Ok(link) => link,
            Err(rejection) => return refuse(self, &read.id, read.method, rejection),
        };
        let watching = if self.market.is_some() {
            &mut ended.link
        } else {
            &mut ended.market
        };
        if watching.is_none() {
            *watching = Some(link.1.clone());
        }
        if let Err(rejection) = pipeline::record_stream_method(
            &self.app,
            &self.conn,
            (self.venue.id(), self.path),
            read.method,
            None,
            "market_data",
        ) {
            return refuse(self, &read.id, read.method, rejection);
        }
        if let Err(error) = link.0.relay(text.to_owned()).await {
            refuse(
                self,
                &read.id,
                read.method,
                crate::error::Rejection::Upstream(error),
            );
        }
    }

    /// A login (`session.logon`, Bybit's `auth`), `session.status`,
    /// `session.logout` or a ping: the connection's bot bound, told or unbound, or
    /// the bot's keep-alive answered, by keyward itself (the venue never sees them).
    fn session_method(&mut self, message: &BotMessage) {
        let now_ms = now_ms();
        let to = Answering::of(message);
        if message.method.role == Role::Ping {
            // A keep-alive decides nothing, so it has no audit record.
            let text =
                self.streams
                    .answer(&to.to(self.path), Role::Ping, self.bound.is_some(), now_ms);
            let _ = self.queue.try_send(Message::text(text));
            return;
        }
        let result = match message.method.role {
            Role::Logon => self.bind(message.token.as_deref()),
            Role::Logout => {
                self.bound = None;
                Ok(())
            }
            _ => Ok(()),
        };
        let result = result.and_then(|()| {
            pipeline::record_stream_method(
                &self.app,
                &self.conn,
                (self.venue.id(), self.path),
                message.method.name,
                self.bound.as_ref().map(|bound| bound.bot.as_str()),
                "answered_by_keyward",
            )
        });
        match result {
            Ok(()) => {
                let text = self.streams.answer(
                    &to.to(self.path),
                    message.method.role,
                    self.bound.is_some(),
                    now_ms,
                );
                let _ = self.queue.try_send(Message::text(text));
            }
            Err(rejection) => self.refuse_with(&to, rejection),
        }
    }

    /// Binds the connection to the bot of `token` (or of the keyward token a minted
    /// WebSocket token stands for): one bot per connection.
    fn bind(&mut self, token: Option<&str>) -> Result<(), crate::error::Rejection> {
        let token = token.ok_or(keyward_policy::Denied::AuthMissing)?;
        if !self.streams.tokens_are_minted() {
            return self.bind_token(token);
        }
        // The token the connection was bound with, again (every message of it).
        if self.bound.is_some()
            && matches!(&self.minted, Some((minted, _)) if minted.as_str() == token)
        {
            return Ok(());
        }
        let keyward = self.unminted(token)?;
        self.bind_token(&keyward)?;
        let known = matches!(&self.minted, Some((minted, _)) if minted.as_str() == token);
        if !known {
            self.minted = Some((Zeroizing::new(token.to_owned()), keyward));
        }
        Ok(())
    }

    /// The keyward token a WebSocket token keyward minted stands for: the one this
    /// connection was bound with, or one still valid, minted for this venue.
    fn unminted(&self, token: &str) -> Result<Zeroizing<String>, crate::error::Rejection> {
        if let Some((minted, keyward)) = &self.minted
            && minted.as_str() == token
        {
            return Ok(keyward.clone());
        }
        let found = self
            .app
            .streams
            .listen_keys
            .resolve(token)
            .ok_or(keyward_policy::Denied::AuthInvalid)?;
        let snapshot = self.app.snapshot();
        let this_venue = snapshot
            .config
            .accounts
            .get(found.account.as_str())
            .is_some_and(|account| account.venue == self.venue.id());
        if !this_venue {
            return Err(keyward_policy::Denied::AuthInvalid.into());
        }
        Ok(found.token)
    }

    /// Binds the connection to the bot of a keyward token or Coinbase JWT.
    fn bind_token(&mut self, token: &str) -> Result<(), crate::error::Rejection> {
        if let Some(bound) = &self.bound {
            let same = match &bound.who {
                Presented::Token(known) => known.as_str() == token,
                Presented::Key { jwt, .. } if jwt.as_str() == token => true,
                // A new JWT is verified in full, and is the one kept from now on: a
                // client presents it again for its next subscriptions.
                Presented::Key { name: known, .. } => match self.identify(token) {
                    Ok((who @ Presented::Key { .. }, bot))
                        if matches!(&who, Presented::Key { name, .. } if name == known)
                            && bot == bound.bot =>
                    {
                        if let Some(bound) = self.bound.as_mut() {
                            bound.who = who;
                        }
                        true
                    }
                    _ => false,
                },
            };
            return if same {
                Ok(())
            } else {
                Err(keyward_policy::Denied::AuthInvalid.into())
            };
        }
        let (who, bot) = self.identify(token).map_err(|rejection| {
            pipeline::throttle_auth_failure(&self.app, &self.conn, rejection)
        })?;
        // A bot over its count of WebSockets is told to wait, like a bot over its rate.
        let counted = self
            .app
            .streams
            .enter(&bot)
            .ok_or(keyward_policy::Denied::RateLimited {
                retry_after: Duration::from_secs(1),
                scope: keyward_policy::RateScope::Bot,
            })?;
        self.bound = Some(Bound {
            who,
            bot,
            decided_under: std::sync::Mutex::new(self.app.snapshot()),
            _counted: counted,
        });
        Ok(())
    }

    /// The bot a presented credential proves: a keyward token, or a JWT signed with
    /// a key keyward issued to a Coinbase bot (verified in full: signature, lifetime,
    /// key, never seen before; it names no request).
    fn identify(&self, token: &str) -> Result<(Presented, String), crate::error::Rejection> {
        let snapshot = self.app.snapshot();
        let policy = &snapshot.config.policy;
        let now = SystemTime::now();
        if !crate::botjwt::looks_like_jwt(token) {
            let bot = policy.authenticate(Some(token), now)?;
            self.on_this_venue(snapshot.config.account_of(bot))?;
            // As on REST: bound without its proof, a stream would hold one of the
            // bot's connections and, on a user data stream, read its events.
            crate::identity::check_bot_binding(&snapshot.config, bot.name(), &self.conn.transport)?;
            return Ok((
                Presented::Token(Zeroizing::new(token.to_owned())),
                bot.name().to_owned(),
            ));
        }
        let decoded = crate::botjwt::decode(token)?;
        let found = policy.authenticate_key(&decoded.kid, now)?;
        let coinbase = snapshot
            .config
            .account_of(found.bot)
            .is_some_and(|account| account.venue == VenueId::Coinbase);
        if !coinbase {
            return Err(keyward_policy::Denied::AuthInvalid.into());
        }
        self.on_this_venue(snapshot.config.account_of(found.bot))?;
        crate::identity::check_bot_binding(
            &snapshot.config,
            found.bot.name(),
            &self.conn.transport,
        )?;
        let seen = crate::botjwt::verify_stream(&decoded, &found.key, now)?;
        found.standing?;
        if let Some(account) = snapshot.config.account_of(found.bot) {
            self.fresh_jwt.set(Some((account.name.clone(), seen)));
        }
        Ok((
            Presented::Key {
                name: decoded.kid.clone(),
                jwt: Zeroizing::new(token.to_owned()),
            },
            found.bot.name().to_owned(),
        ))
    }

    /// A bot binds only a connection on its own account's venue: on another venue's
    /// paths keyward would log in there with this account's key and secret, sending
    /// them to an exchange that is not theirs.
    fn on_this_venue(
        &self,
        account: Option<&crate::config::Account>,
    ) -> Result<(), crate::error::Rejection> {
        match account {
            Some(account) if account.venue == self.venue.id() => Ok(()),
            _ => Err(keyward_policy::Denied::AuthInvalid.into()),
        }
    }

    /// Decides a message as its REST twin (in a task of its own, so a slow exchange
    /// answer does not hold up the connection's other messages) and queues the reply.
    async fn call(
        &mut self,
        mut message: BotMessage,
        ended: &mut Ends,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let to = Answering::of(&message);
        // The bot of the message's token (which must be the connection's), or the
        // one the connection was bound with.
        if let Some(token) = &message.token
            && let Err(rejection) = self.bind(Some(token))
        {
            return self.refuse_with(&to, rejection);
        }
        let who = self.bound.as_ref().map(|bound| bound.who.clone());
        let link = match self.link_for(who.is_some()).await {
            Ok(link) => link,
            Err(rejection) => return self.refuse_with(&to, rejection),
        };
        // The link's end is watched from its first message (and again after a
        // keyless link gave way to the bot's).
        if !ended
            .link
            .as_ref()
            .is_some_and(|watching| watching.same_channel(&link.1))
        {
            ended.link = Some(link.1.clone());
        }
        if matches!(message.method.role, Role::Unsubscribe | Role::Control) {
            return self.control(&message, &link.0, permit);
        }
        let Some(twin) = self.twin(&message, who.as_ref()) else {
            return self.refuse_with(&to, crate::error::Rejection::Internal);
        };
        let (app, conn, streams, queue, path, venue) = (
            self.app.clone(),
            self.conn.clone(),
            self.streams,
            self.queue.clone(),
            self.path,
            self.venue.id(),
        );
        let account = self
            .link
            .as_ref()
            .map(|(_, account, _)| account.clone())
            .unwrap_or_default();
        // Only a bot's message may make keyward list the venue's instruments; an
        // anonymous one is refused by the pipeline before anything is read.
        let resolve = who.is_some() && !message.instruments.is_empty();
        self.in_progress.push(Box::pin(async move {
            // Instruments named by code are decided by the id the policy knows.
            if resolve {
                let codes = app
                    .streams
                    .instruments
                    .for_names(&app, &account, streams, &message.instruments)
                    .await;
                if let Err(error) = streams.resolve(&mut message, &codes) {
                    let response =
                        pipeline::refuse_message(&app, &conn, venue, path, &error.into());
                    let text = reply_text(streams, &to.to(path), response);
                    let _ = queue.try_send(Message::text(text));
                    drop(permit);
                    return;
                }
            }
            let route = StreamRoute {
                link: link.0,
                method: message.method,
                carried: message.carried,
            };
            let response = pipeline::handle_message(app, conn, twin, message.body, route).await;
            let text = reply_text(streams, &to.to(path), response);
            // A bot that reads slowly gets its reply late, not never; one that does
            // not read at all is disconnected (the queue stays full), and holds at
            // most its in-flight messages meanwhile.
            if tokio::time::timeout(REPLY_WAIT, queue.send(Message::text(text)))
                .await
                .is_err()
            {
                tracing::debug!("a reply was dropped: the bot does not read its messages");
            }
            drop(permit);
        }));
    }

    /// Ends a subscription on the venue, or asks for keep-alives (Coinbase's
    /// heartbeats): neither asks anything of the account, so they need no decision;
    /// each is sent as the bot asked, its id swapped for keyward's.
    fn control(
        &mut self,
        message: &BotMessage,
        link: &Arc<Link>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let to = Answering::of(message);
        let snapshot = self.app.snapshot();
        let runtime = self
            .link
            .as_ref()
            .and_then(|(_, account, _)| snapshot.accounts.get(account.as_str()).cloned());
        let Some(runtime) = runtime else {
            return self.refuse_with(&to, crate::error::Rejection::Internal);
        };
        if let Err(rejection) = pipeline::record_stream_method(
            &self.app,
            &self.conn,
            (self.venue.id(), self.path),
            message.method.name,
            self.bound.as_ref().map(|bound| bound.bot.as_str()),
            "stream_control",
        ) {
            return self.refuse_with(&to, rejection);
        }
        let (link, streams, queue, path, venue) = (
            link.clone(),
            self.streams,
            self.queue.clone(),
            self.path,
            self.venue,
        );
        let carried = BotMessage {
            id: message.id.clone(),
            method: message.method,
            query: String::new(),
            body: None,
            token: None,
            carried: message.carried.clone(),
            instruments: Vec::new(),
        };
        self.in_progress.push(Box::pin(async move {
            // Built once the link is open: a venue whose messages carry its
            // WebSocket token gets it then.
            let sent = async {
                link.open().await?;
                let request = link.next_id();
                let token = link.token();
                let text = streams
                    .control(
                        &carried,
                        request,
                        keyward_venues::SignContext {
                            credential: &runtime.credential,
                            timestamp_ms: runtime.state.exchange_now_ms(SystemTime::now()),
                            recv_window_ms: runtime.settings.recv_window_ms,
                            nonce: 0,
                        },
                        token.as_deref().map(String::as_str),
                    )
                    .map_err(|error| {
                        tracing::error!(%error, "a stream control message could not be built");
                        crate::upstream::UpstreamError::Invalid
                    })?;
                link.call(request, text).await
            };
            let reply = match sent.await {
                Ok(answer) => streams.reply(&to.to(path), answer.status, &answer.body),
                Err(error) => {
                    // Recorded already (as stream_control); only the answer is owed.
                    let rejection = crate::error::Rejection::Upstream(error);
                    let (_, body) = venue.refusal(&rejection.refusal());
                    streams.reply(&to.to(path), rejection.status(), &body)
                }
            };
            let _ = queue.try_send(Message::text(reply));
            drop(permit);
        }));
    }

    /// The link for the connection's account (the bot's, or for tokenless market
    /// data the account serving it), made when first needed.
    async fn link_for(
        &mut self,
        with_token: bool,
    ) -> Result<(Arc<Link>, watch::Receiver<Option<Ended>>), crate::error::Rejection> {
        let snapshot = self.app.snapshot();
        let config = &snapshot.config;
        let account = match (&self.bound, with_token) {
            (Some(bound), true) => config
                .policy
                .bot(&bound.bot)
                .and_then(|bot| config.account_of(bot))
                .filter(|account| account.venue == self.venue.id()),
            _ => config
                .accounts
                .values()
                .find(|a| a.venue == self.venue.id() && a.public_market_data),
        }
        .ok_or(keyward_policy::Denied::AuthMissing)?;
        // A connection no bot is bound to never has keyward log in with an
        // account's key (a tokenless client's unsubscribe or heartbeat on a private
        // path would otherwise hold a logged-in link no bot is counted for).
        let keyed = with_token && self.bound.is_some() && self.market.is_none();
        if let Some((link, name, watching)) = &self.link {
            if *name != account.name {
                // One venue link per connection: a second account would need a
                // second signature and a second stream.
                return Err(keyward_policy::Denied::AuthInvalid.into());
            }
            // A keyless link made before a bot was bound gives way to the bot's,
            // which logs in (whatever it carried for the tokenless client ends).
            if !keyed || self.link_keyed {
                return Ok((link.clone(), watching.clone()));
            }
        }
        let target = self.target(account, self.market, keyed)?;
        self.count_connection().await?;
        let (link, watching) = Link::new(self.streams, target, self.events_sender());
        let link = Arc::new(link);
        self.link = Some((link.clone(), account.name.clone(), watching.clone()));
        self.link_keyed = keyed;
        Ok((link, watching))
    }

    /// The relay of public market data on a path that also carries the venue's
    /// private messages (Kraken's `/v2`): a second link, to the venue's market-data
    /// host, for the account that serves market data; made when first needed.
    async fn market_link_for(
        &mut self,
        market: &'static MarketPath,
    ) -> Result<(Arc<Link>, watch::Receiver<Option<Ended>>), crate::error::Rejection> {
        if let Some((link, watching)) = &self.market_link {
            return Ok((link.clone(), watching.clone()));
        }
        let snapshot = self.app.snapshot();
        let account = snapshot
            .config
            .accounts
            .values()
            .find(|a| a.venue == self.venue.id() && a.public_market_data)
            .ok_or_else(|| keyward_policy::Denied::PathNotAllowed {
                endpoint: format!("GET {}", self.path).into(),
            })?;
        let target = self.target(account, Some(market), false)?;
        self.count_connection().await?;
        let (link, watching) = Link::new(self.streams, target, self.events_sender());
        let link = Arc::new(link);
        self.market_link = Some((link.clone(), watching.clone()));
        Ok((link, watching))
    }

    /// Counts a link about to open against the venue's connections per address,
    /// or refuses it: every bot's links and every relayed client's leave from
    /// keyward's one address. A link for a connection no bot is bound to counts
    /// against the anonymous half too.
    async fn count_connection(&mut self) -> Result<(), crate::error::Rejection> {
        let Some(allowance) = self.streams.connections_per_address() else {
            return Ok(());
        };
        let mut uses = vec![(Counted::Connections, allowance)];
        if self.bound.is_none() {
            uses.push((Counted::AnonymousConnections, anonymous_share(allowance)));
        }
        let app = &self.app;
        app.streams
            .per_address
            .take(app.shared.as_ref(), self.venue.id(), &uses)
            .await
    }

    /// Where the links' events go: one queue for the bot, made with the first link
    /// (an idle connection holds none).
    fn events_sender(&mut self) -> mpsc::Sender<Event> {
        if let Some(sender) = &self.events_in {
            return sender.clone();
        }
        let (events_in, events) = mpsc::channel(EVENT_QUEUE);
        self.events = Some(events);
        self.events_in = Some(events_in.clone());
        events_in
    }

    /// Where the account's link goes: its `stream_upstream` host, or the venue's
    /// production host when the account trades on the production API; `keyed`, it
    /// logs in with the account's key.
    fn target(
        &self,
        account: &crate::config::Account,
        market: Option<&'static MarketPath>,
        keyed: bool,
    ) -> Result<Target, crate::error::Rejection> {
        let refused = || {
            tracing::warn!(
                account = %account.name,
                path = self.path,
                "a bot asked for a WebSocket on an account with its own upstream and no stream_upstream; set stream_upstream = \"wss://host[:port]\" for it"
            );
            crate::error::Rejection::from(keyward_policy::Denied::PathNotAllowed {
                endpoint: format!("GET {}", self.path).into(),
            })
        };
        let production = self
            .streams
            .paths()
            .iter()
            .find(|p| p.path == self.path)
            .map(|p| p.upstream)
            .filter(|_| market.is_none())
            .or(market.map(|m| m.upstream));
        let uri: http::Uri = match (&account.stream_upstream, &account.market_upstream) {
            // A market-data relay goes to the account's market host when it has one.
            (_, Some(base)) if market.is_some() => base.clone(),
            (StreamUpstream::Off, _) => return Err(refused()),
            (StreamUpstream::Base(base), _) => base.clone(),
            (StreamUpstream::Production, _) => production
                .and_then(|upstream| upstream.parse().ok())
                .ok_or_else(refused)?,
        };
        let host = uri.host().ok_or_else(refused)?.to_owned();
        let tls = keyward_certs::client_config(account.upstream_ca.as_deref()).map_err(|error| {
            tracing::error!(account = %account.name, %error, "no TLS configuration for the stream link");
            crate::error::Rejection::Internal
        })?;
        let runtime = self
            .app
            .snapshot()
            .accounts
            .get(account.name.as_str())
            .cloned()
            .ok_or(crate::error::Rejection::Internal)?;
        let (streams, path, relay) = (self.streams, self.path, market.is_some());
        // Signed when the link opens, so the venue's expiry runs from then. A
        // relayed market-data stream, and a link no bot is bound to, carry no key
        // at all.
        let keyless = relay || !keyed;
        let login: super::link::Login = Arc::new(move || {
            if keyless {
                return Ok(None);
            }
            streams.login(
                path,
                keyward_venues::SignContext {
                    credential: &runtime.credential,
                    timestamp_ms: runtime.state.exchange_now_ms(SystemTime::now()),
                    recv_window_ms: runtime.settings.recv_window_ms,
                    nonce: 0,
                },
            )
        });
        // A venue whose messages carry its WebSocket token: the account's, asked for
        // with its key as the link opens (and reused while fresh).
        let wants_token = self.streams.tokens_are_minted() && !keyless;
        let token: Option<super::link::TokenSource> = wants_token.then(|| {
            let (app, streams) = (self.app.clone(), self.streams);
            let account = account.name.clone();
            let source: super::link::TokenSource = Arc::new(move || {
                let (app, account) = (app.clone(), account.clone());
                Box::pin(async move {
                    let runtime = app
                        .snapshot()
                        .accounts
                        .get(account.as_str())
                        .cloned()
                        .ok_or(crate::upstream::UpstreamError::Invalid)?;
                    app.streams.listen_keys.real_key(streams, &runtime).await
                })
            });
            source
        });
        let limits = &self.app.listener_limits;
        Ok(Target {
            host,
            port: uri.port_u16().unwrap_or(443),
            path: self
                .upstream_path
                .clone()
                .unwrap_or_else(|| self.path.to_owned()),
            tls,
            connect_timeout: limits.connect_timeout,
            answer_timeout: limits.upstream_timeout,
            login,
            token,
            relay,
        })
    }

    /// The message as the head of its REST twin: the twin's method and path, the
    /// parameters as its query, the token in the venue's key header and the Host
    /// the bot connected with.
    fn twin(&self, message: &BotMessage, who: Option<&Presented>) -> Option<http::request::Parts> {
        let (method, path) = message.method.twin?.split_once(' ')?;
        let target = if message.query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", message.query)
        };
        let mut builder = Request::builder().method(method).uri(target);
        if let Some(host) = &self.host {
            builder = builder.header(header::HOST, host.clone());
        }
        match who {
            Some(Presented::Token(token)) => {
                let mut value = HeaderValue::from_str(token).ok()?;
                value.set_sensitive(true);
                builder = builder.header(self.venue.key_header(), value);
            }
            Some(Presented::Key { name, .. }) => {
                builder = builder.extension(super::VerifiedKey(name.clone()));
            }
            None => {}
        }
        if message.body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        Some(builder.body(()).ok()?.into_parts().0)
    }

    /// Passes an event to the bot if its policy lets it see it: an order event of one
    /// of its symbols, an account event (it subscribed, which needs a read grant),
    /// the end of a subscription. Anything else is withheld.
    /// `false` when the bot's queue stays full for [`super::link::SLOW_CONSUMER`]:
    /// an event is never dropped silently (a bot that missed a fill would trade on a
    /// wrong picture), the connection is closed instead.
    async fn event(&mut self, event: Event) -> bool {
        if let EventKind::Order { symbols, .. } = &event.kind {
            self.await_own_outcomes(symbols).await;
        }
        if let (EventKind::Order { closed, .. }, Some((_, account, _))) = (&event.kind, &self.link)
            && !closed.is_empty()
        {
            // The record learns of a closed order as soon as the venue tells, as it
            // does from an order read's answer.
            let settlement = crate::orders::Settlement {
                legs: Vec::new(),
                cancels: Vec::new(),
                succeeded: false,
                closed: closed
                    .iter()
                    .map(|(symbol, order)| {
                        (keyward_policy::Symbol::new(symbol).ok(), order.clone())
                    })
                    .collect(),
                closed_all: Vec::new(),
                listed: Vec::new(),
            };
            self.app.orders.observe(account, &settlement);
        }
        let text = match &event.kind {
            EventKind::Order { symbols, .. } => {
                let Some(bound) = &self.bound else {
                    return true;
                };
                let snapshot = self.app.snapshot();
                let Some(bot) = snapshot.config.policy.bot(&bound.bot) else {
                    return true;
                };
                let account = self
                    .link
                    .as_ref()
                    .map(|(_, account, _)| account.as_str())
                    .unwrap_or_default();
                // An element that names only an order (Kraken's cancels and amends)
                // is the bot's if keyward's records say it placed that order.
                let allowed = |name: &str| match name.strip_prefix(BY_ORDER) {
                    Some(id) => {
                        let order = keyward_venues::OrderRef {
                            id: Some(id.to_owned()),
                            ..keyward_venues::OrderRef::default()
                        };
                        self.app.orders.lookup(account, &bound.bot, &order).is_ok()
                    }
                    None => keyward_policy::Symbol::new(name)
                        .is_ok_and(|symbol| bot.allows_symbol(&symbol)),
                };
                let visible = symbols.iter().filter(|s| allowed(s)).count();
                // An event that names no order at all (an empty snapshot) tells
                // nothing of another bot's and reaches the bot as it is.
                if visible == 0 && !symbols.is_empty() {
                    return true;
                }
                if visible == symbols.len() {
                    event.text
                } else {
                    // Part of a batch is the bot's: it sees that part only.
                    match self.streams.narrow(&event.text, &allowed) {
                        Some(text) => text,
                        None => return true,
                    }
                }
            }
            EventKind::Market => event.text,
            EventKind::Account | EventKind::Control if self.bound.is_some() => event.text,
            EventKind::Account | EventKind::Control | EventKind::Unknown => return true,
        };
        let queued = self.queue.send(Message::text(text));
        matches!(
            tokio::time::timeout(super::link::SLOW_CONSUMER, queued).await,
            Ok(Ok(()))
        )
    }

    /// Waits, while this connection has messages in flight and for at most
    /// [`OUTCOME_WAIT`], until keyward's records know every order an event names only
    /// by id (Kraken's `new`, amend and cancel updates name no symbol): the venue may
    /// tell of an order before keyward has recorded the answer that placed it. An
    /// order no message of this connection placed is not waited for.
    async fn await_own_outcomes(&mut self, names: &[String]) {
        if self.in_flight.available_permits() == IN_FLIGHT {
            return;
        }
        // The messages in flight are this task's own to drive: their outcomes are
        // recorded as they finish.
        let deadline = tokio::time::Instant::now() + OUTCOME_WAIT;
        while self.names_unknown_order(names) && !self.in_progress.is_empty() {
            let next = tokio::time::timeout_at(deadline, self.in_progress.next()).await;
            if !matches!(next, Ok(Some(()))) {
                return;
            }
        }
    }

    /// Whether `names` name an order only by id that keyward's records do not give
    /// to the connection's bot.
    fn names_unknown_order(&self, names: &[String]) -> bool {
        let (Some(bound), Some((_, account, _))) = (&self.bound, &self.link) else {
            return false;
        };
        names
            .iter()
            .filter_map(|name| name.strip_prefix(BY_ORDER))
            .any(|id| {
                let order = keyward_venues::OrderRef {
                    id: Some(id.to_owned()),
                    ..keyward_venues::OrderRef::default()
                };
                self.app.orders.lookup(account, &bound.bot, &order).is_err()
            })
    }

    /// False once the bound bot's token is no longer accepted (revoked, expired, its
    /// bot removed by a reload).
    fn still_admitted(&self) -> bool {
        let Some(bound) = &self.bound else {
            return true;
        };
        let snapshot = self.app.snapshot();
        let policy = &snapshot.config.policy;
        let admitted = match &bound.who {
            Presented::Token(token) => policy
                .authenticate(Some(token.as_str()), SystemTime::now())
                .is_ok_and(|bot| bot.name() == bound.bot),
            Presented::Key { name, .. } => policy
                .authenticate_key(name, SystemTime::now())
                .is_ok_and(|found| found.standing.is_ok() && found.bot.name() == bound.bot),
        };
        admitted && self.reach_unchanged(bound, &snapshot)
    }

    /// After a reload, whether the bot still reaches what its subscriptions were
    /// decided for (its account, symbols, grants): if not, the connection closes and
    /// the client subscribes again under the new policy. A reload that leaves the
    /// bot as it was keeps its connections.
    fn reach_unchanged(&self, bound: &Bound, now: &Arc<crate::app::Snapshot>) -> bool {
        let mut decided = bound
            .decided_under
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if Arc::ptr_eq(&decided, now) {
            return true;
        }
        let before = decided.config.policy.bot(&bound.bot);
        let after = now.config.policy.bot(&bound.bot);
        let same =
            matches!((before, after), (Some(before), Some(after)) if before.same_reach(after));
        if same {
            *decided = now.clone();
        }
        same
    }

    fn refuse_frame(&mut self, problem: &'static str) {
        let rejection = keyward_venues::ParseError::StreamMessage { problem }.into();
        self.refuse_with(&unanswerable(), rejection);
    }

    fn refuse_with(&mut self, to: &Answering, rejection: crate::error::Rejection) {
        let response = pipeline::refuse_message(
            &self.app,
            &self.conn,
            self.venue.id(),
            self.path,
            &rejection,
        );
        let text = reply_text(self.streams, &to.to(self.path), response);
        let _ = self.queue.try_send(Message::text(text));
    }
}

/// Whom a reply answers, kept while the message is decided: the bot's id for it
/// (JSON text, `null` for none) and its method.
struct Answering {
    id: String,
    method: String,
}

impl Answering {
    fn of(message: &BotMessage) -> Self {
        Self {
            id: message.id.clone(),
            method: message.method.name.to_owned(),
        }
    }

    fn to<'a>(&'a self, path: &'a str) -> ReplyTo<'a> {
        ReplyTo {
            path,
            method: &self.method,
            id: &self.id,
        }
    }
}

/// A frame keyward could not read as a message: its reply has no id and no method
/// to echo.
fn unanswerable() -> Answering {
    Answering {
        id: "null".to_owned(),
        method: String::new(),
    }
}

/// The bot-facing reply to a decided message.
fn reply_text(
    streams: &'static dyn StreamVenue,
    to: &ReplyTo<'_>,
    response: http::Response<pipeline::Body>,
) -> String {
    let status = response.status();
    let body = full_body(response);
    streams.reply(to, status, &body)
}

/// The bytes of a response keyward built in full.
fn full_body(response: http::Response<pipeline::Body>) -> bytes::Bytes {
    use hyper::body::Body as _;
    let mut body = response.into_body();
    // A `Full` body is one frame, ready at once.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => bytes::Bytes::new(),
    }
}

/// How to close a connection whose bot sent what the WebSocket reader refused.
fn refused_frame(error: &tokio_tungstenite::tungstenite::Error) -> CloseFrame {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Capacity(_) => closing(CloseCode::Size, "message too large"),
        Error::Utf8(_) => closing(CloseCode::Invalid, "text that is not UTF-8"),
        Error::Protocol(_) => closing(CloseCode::Protocol, "not a valid WebSocket frame"),
        _ => closing(CloseCode::Normal, ""),
    }
}

fn closing(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}

/// Returns once keyward is stopping.
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    loop {
        if *stopping.borrow_and_update() {
            return;
        }
        if stopping.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn next_event(events: &mut Option<mpsc::Receiver<Event>>) -> Option<Event> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Returns when either of the connection's links ended.
async fn wait_either(ends: &mut Ends) -> Ended {
    tokio::select! {
        why = wait_ended(&mut ends.link) => why,
        why = wait_ended(&mut ends.market) => why,
    }
}

async fn wait_ended(ended: &mut Option<watch::Receiver<Option<Ended>>>) -> Ended {
    match ended {
        Some(watching) => match watching.wait_for(Option::is_some).await {
            Ok(value) => value.unwrap_or(Ended::Lost),
            Err(_) => Ended::Lost,
        },
        None => std::future::pending().await,
    }
}

/// Writes queued messages to the bot until the queue ends or a close was written.
async fn write(
    mut sink: futures_util::stream::SplitSink<
        WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
        Message,
    >,
    mut queue: mpsc::Receiver<Message>,
) {
    while let Some(message) = queue.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
