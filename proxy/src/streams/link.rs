//! keyward's own WebSocket to the venue, one per bot connection: opened when the
//! first permitted message needs it (a refused message never opens one), over TLS
//! verified like the REST client's, to the account's configured host only. It
//! carries keyward's signed messages, matches each reply to its request by
//! keyward's own id, and hands events to the bot's session. When it is lost, every
//! request still waiting is reported with its status unknown, and the session
//! closes the bot's connection so its client reconnects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use keyward_venues::SignError;
use keyward_venues::stream::{Event, LOGIN_ID, OLDEST_PENDING, StreamVenue, UpstreamMessage};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use zeroize::Zeroizing;

use crate::upstream::{Answer, USER_AGENT, UpstreamError, connect_tls};

/// The largest message keyward takes from the venue: an account snapshot or a full
/// open-orders list, with room to spare.
const MAX_UPSTREAM_MESSAGE: usize = 4 << 20;
/// How often keyward pings the venue, so a dead path is noticed (Bybit asks for its
/// heartbeat every 20 s).
const PING_EVERY: Duration = Duration::from_secs(20);
/// How long an event may wait for the bot's session to take it before the bot
/// counts as too slow and is disconnected.
pub(super) const SLOW_CONSUMER: Duration = Duration::from_secs(5);
/// Messages waiting to be written to the venue.
const OUTBOX: usize = 64;

/// Signs keyward's login for a link as it opens (the venue's expiry runs from then):
/// the text to send first, or `None` for a venue that signs each message instead.
pub(crate) type Login = Arc<dyn Fn() -> Result<Option<String>, SignError> + Send + Sync>;

/// Gets the account's WebSocket token as a link opens, for a venue whose every
/// message carries one (Kraken's, from its REST API).
pub(crate) type TokenSource = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<Zeroizing<String>, UpstreamError>>
        + Send
        + Sync,
>;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// The host name (also the TLS server name).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The venue's WebSocket path and query.
    pub path: String,
    /// TLS trust: the web PKI or the account's own CA.
    pub tls: Arc<rustls::ClientConfig>,
    /// TCP and TLS deadline.
    pub connect_timeout: Duration,
    /// How long a request may wait for its reply.
    pub answer_timeout: Duration,
    /// keyward's login with the account's key.
    pub login: Login,
    /// Where the link's WebSocket token comes from, for venues that take one.
    pub token: Option<TokenSource>,
    /// A relayed market-data stream: every message from the venue goes to the bot
    /// as it is, and nothing waits for a reply.
    pub relay: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path.split('?').next().unwrap_or_default())
            .finish_non_exhaustive()
    }
}

/// Why a link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The venue closed it or the path failed.
    Lost,
    /// The bot did not take its events fast enough.
    SlowConsumer,
}

/// One bot connection's WebSocket to the venue.
pub struct Link {
    venue: &'static dyn StreamVenue,
    target: Target,
    next_id: AtomicU64,
    outbox: tokio::sync::Mutex<Option<mpsc::Sender<Message>>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
    events: mpsc::Sender<Event>,
    ended: watch::Sender<Option<Ended>>,
    /// The account's WebSocket token the link's messages carry, once open.
    token: Mutex<Option<Zeroizing<String>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("host", &self.target.host)
            .field(
                "path",
                &self.target.path.split('?').next().unwrap_or_default(),
            )
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link not yet connected; events go to `events`, and `ended` says when (and
    /// why) it ended.
    pub fn new(
        venue: &'static dyn StreamVenue,
        target: Target,
        events: mpsc::Sender<Event>,
    ) -> (Self, watch::Receiver<Option<Ended>>) {
        let (ended, watching) = watch::channel(None);
        let link = Self {
            venue,
            target,
            next_id: AtomicU64::new(1),
            outbox: tokio::sync::Mutex::new(None),
            pending: Arc::new(Mutex::new(HashMap::new())),
            events,
            ended,
            token: Mutex::new(None),
        };
        (link, watching)
    }

    /// keyward's id for its next request on this link.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `text` (request `id`) and waits for the venue's reply to it. A failure
    /// before anything was sent is `Unavailable` (nothing reached the venue); one
    /// after is `Timeout` (it may have acted).
    pub async fn call(&self, id: u64, text: String) -> Result<Answer, UpstreamError> {
        let started = Instant::now();
        let outbox = self.connected().await?;
        let (reply, answer) = oneshot::channel();
        self.pending_map().insert(id, reply);
        if outbox.send(Message::text(text)).await.is_err() {
            self.pending_map().remove(&id);
            return Err(UpstreamError::Unavailable);
        }
        match tokio::time::timeout(self.target.answer_timeout, answer).await {
            Ok(Ok(mut answer)) => {
                answer.elapsed = started.elapsed();
                Ok(answer)
            }
            Ok(Err(_)) => Err(UpstreamError::Timeout),
            Err(_) => {
                self.pending_map().remove(&id);
                Err(UpstreamError::Timeout)
            }
        }
    }

    /// Sends a bot's market-data message on a relayed stream as it is: the venue's
    /// answer comes back among its data.
    pub async fn relay(&self, text: String) -> Result<(), UpstreamError> {
        let outbox = self.connected().await?;
        outbox
            .send(Message::text(text))
            .await
            .map_err(|_| UpstreamError::Unavailable)
    }

    /// Opens the link now, for a stream the venue starts sending at once (a user
    /// data stream), rather than at the first message.
    pub async fn open(&self) -> Result<(), UpstreamError> {
        self.connected().await.map(|_| ())
    }

    /// The account's WebSocket token for the link's messages, once it is open.
    pub fn token(&self) -> Option<Zeroizing<String>> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Closes the link (the bot's connection ended).
    pub async fn close(&self) {
        if let Some(outbox) = self.outbox.lock().await.take() {
            let _ = outbox.send(Message::Close(None)).await;
        }
    }

    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The outbox of the open link, opening it first if need be. A link that ended
    /// is not opened again: the bot's connection closes with it.
    async fn connected(&self) -> Result<mpsc::Sender<Message>, UpstreamError> {
        let mut outbox = self.outbox.lock().await;
        if self.ended.borrow().is_some() {
            return Err(UpstreamError::Unavailable);
        }
        if let Some(open) = outbox.as_ref() {
            return Ok(open.clone());
        }
        let socket = async {
            if let Some(source) = &self.target.token {
                let token = source().await?;
                *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
            }
            let mut socket = open(&self.target).await?;
            self.log_in(&mut socket).await?;
            Ok(socket)
        }
        .await
        .inspect_err(|error: &UpstreamError| {
            tracing::warn!(host = %self.target.host, path = %self.target.path.split('?').next().unwrap_or_default(), reason = error.reason(), "stream link to the exchange not opened");
        })?;
        let (sink, source) = socket.split();
        let (sender, receiver) = mpsc::channel(OUTBOX);
        // A relayed stream's keep-alive is the WebSocket ping: the venue's own would
        // answer on the bot's connection.
        let heartbeat = (!self.target.relay)
            .then(|| self.venue.heartbeat())
            .flatten();
        tokio::spawn(write(sink, receiver, heartbeat));
        tokio::spawn(read(
            source,
            self.target.relay,
            self.venue,
            self.pending.clone(),
            self.events.clone(),
            self.ended.clone(),
            sender.clone(),
        ));
        *outbox = Some(sender.clone());
        Ok(sender)
    }

    /// Sends keyward's login, where the venue has one, and waits for its answer
    /// before anything else is sent: a message on a connection not yet logged in
    /// would be refused.
    async fn log_in(&self, socket: &mut Socket) -> Result<(), UpstreamError> {
        let login = (self.target.login)().map_err(|error| {
            tracing::error!(%error, "keyward's WebSocket login could not be signed");
            UpstreamError::LoginRefused
        })?;
        let Some(login) = login else {
            return Ok(());
        };
        socket
            .send(Message::text(login))
            .await
            .map_err(|_| UpstreamError::Unavailable)?;
        let answered = tokio::time::timeout(self.target.answer_timeout, async {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message
                    && let UpstreamMessage::Reply {
                        id: LOGIN_ID,
                        status,
                        ..
                    } = self.venue.read_upstream(text.as_str())
                {
                    return Some(status);
                }
            }
            None
        })
        .await;
        match answered {
            Ok(Some(status)) if status.is_success() => Ok(()),
            Ok(Some(_)) => Err(UpstreamError::LoginRefused),
            Ok(None) => Err(UpstreamError::Unavailable),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// TCP, TLS, then the HTTP/1.1 upgrade, each under its deadline; the venue must
/// answer 101 with the accept value of keyward's key, and nothing else is followed.
async fn open(target: &Target) -> Result<Socket, UpstreamError> {
    let tls = connect_tls(
        &target.host,
        target.port,
        &target.tls,
        target.connect_timeout,
    )
    .await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|_| UpstreamError::Unavailable)?;
    tokio::spawn(connection.with_upgrades());
    let key = client_key()?;
    let authority = if target.port == 443 {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = Request::get(target.path.as_str())
        .header(header::HOST, authority)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_KEY, key.as_str())
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::<Bytes>::new())
        .map_err(|_| UpstreamError::Invalid)?;
    let response = tokio::time::timeout(target.answer_timeout, sender.send_request(request))
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(|_| UpstreamError::Unavailable)?;
    if response.status().is_redirection() {
        return Err(UpstreamError::Redirect);
    }
    let accepted = response
        .headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|value| value.as_bytes() == super::accept_value(&key).as_bytes());
    if response.status() != StatusCode::SWITCHING_PROTOCOLS || !accepted {
        return Err(UpstreamError::Invalid);
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|_| UpstreamError::Invalid)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_UPSTREAM_MESSAGE))
        .max_frame_size(Some(MAX_UPSTREAM_MESSAGE));
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, Some(config)).await)
}

/// A fresh random `Sec-WebSocket-Key`.
fn client_key() -> Result<String, UpstreamError> {
    use ring::rand::SecureRandom as _;
    let mut nonce = [0_u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| UpstreamError::Invalid)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(nonce))
}

/// Writes queued messages to the venue, and a ping every [`PING_EVERY`]: the
/// venue's own `heartbeat` text where it has one, a WebSocket ping otherwise.
async fn write(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut outbox: mpsc::Receiver<Message>,
    heartbeat: Option<&'static str>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let message = tokio::select! {
            message = outbox.recv() => match message {
                Some(message) => message,
                None => break,
            },
            _ = ping.tick() => match heartbeat {
                Some(text) => Message::text(text),
                None => Message::Ping(Bytes::new()),
            },
        };
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Reads the venue's messages: replies to their requests, events to the session.
async fn read(
    mut source: futures_util::stream::SplitStream<Socket>,
    relay: bool,
    venue: &'static dyn StreamVenue,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
    events: mpsc::Sender<Event>,
    ended: watch::Sender<Option<Ended>>,
    // Held so the writer (and its pings) lives as long as the reader.
    _outbox: mpsc::Sender<Message>,
) {
    let mut why = Ended::Lost;
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let read = if relay {
            UpstreamMessage::Event(Event {
                text: text.as_str().to_owned(),
                kind: keyward_venues::stream::EventKind::Market,
            })
        } else {
            venue.read_upstream(text.as_str())
        };
        match read {
            UpstreamMessage::Reply { id, status, body } => {
                let waiting = {
                    let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                    // A reply without an id answers the oldest request waiting.
                    let id = if id == OLDEST_PENDING {
                        pending.keys().min().copied().unwrap_or(id)
                    } else {
                        id
                    };
                    pending.remove(&id)
                };
                if let Some(waiting) = waiting {
                    let _ = waiting.send(Answer {
                        status,
                        headers: HeaderMap::new(),
                        body: Bytes::from(body),
                        elapsed: Duration::ZERO,
                    });
                }
            }
            UpstreamMessage::Event(event) => {
                // A burst (a mass cancel) is passed on as fast as the bot reads,
                // the venue's own buffers holding the rest; a bot that takes none
                // for this long is too slow to trade on what it is told.
                match tokio::time::timeout(SLOW_CONSUMER, events.send(event)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        why = Ended::SlowConsumer;
                        break;
                    }
                }
            }
            UpstreamMessage::Drop => {}
        }
    }
    // Whatever still waits learns that its fate is unknown (its sender is dropped).
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let _ = ended.send(Some(why));
}
