//! Listeners: the bot listener (TLS 1.3, HTTP/1.1 behind the framing guard or
//! HTTP/2 by ALPN, with handshake, header and body deadlines and a connection cap;
//! client certificates when configured), the optional plain-HTTP bot listeners
//! (loopback and a Unix socket, HTTP/1.1), and the admin listener (plain HTTP on
//! loopback). Graceful shutdown on request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::app::{App, StartError};
use crate::audit::{Decision, HandshakeRecord, LifecycleRecord};
use crate::background;
use crate::config::Config;
use crate::framing::{Guarded, Verdicts};
use crate::identity::{PeerCred, Transport};
use crate::idle::{self, Activity, Resumable};
use crate::pipeline::{self, ConnInfo};

/// Largest HTTP/1 request head hyper buffers; larger targets get 414 from hyper,
/// larger header sections 431.
const MAX_HEAD_BYTES: usize = 128 * 1024;
/// Most concurrent HTTP/2 streams per connection (Envoy's edge guidance).
const MAX_STREAMS: u32 = 100;
/// How long in-flight requests may run after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// A running keyward.
#[derive(Debug)]
pub struct Running {
    /// Where bots connect.
    pub bot_addr: SocketAddr,
    /// The plain-HTTP loopback listener, if configured.
    pub plain_addr: Option<SocketAddr>,
    /// The admin listener, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The metrics listener, if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The CA certificate bots should trust.
    pub ca_path: PathBuf,
    /// The shared state (for tests and the admin listener).
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), syncs the audit log.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        self.app.streams.stop_all();
        let deadline = tokio::time::Instant::now() + DRAIN + Duration::from_secs(1);
        let drained = tokio::time::timeout_at(deadline, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        let mut settled = drained.is_ok();
        if drained.is_err() {
            tracing::warn!("shutdown: connections still open after the drain period were dropped");
            self.tasks.abort_all();
        }
        // Orders whose bots went away are still with the exchange in tasks of their
        // own: their outcomes belong before the `stop` record.
        let forwards = &self.app.forwards;
        if tokio::time::timeout_at(deadline, forwards.finished())
            .await
            .is_err()
        {
            settled = false;
            tracing::warn!(
                in_flight = forwards.count(),
                "shutdown: forwarded requests still waiting for the exchange after the drain \
                 period; their outcomes are not recorded"
            );
        }
        if let Some(shared) = &self.app.shared {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !shared.settlements_written(left).await {
                tracing::warn!(
                    "shutdown: settlements still on their way to the shared state; the other \
                     replicas learn of their orders from the exchange"
                );
            }
        }
        let snapshot = self.app.snapshot();
        let _ = std::fs::remove_file(crate::app::control_socket(&snapshot.config));
        if let Some(path) = &snapshot.config.server.listen_unix {
            let _ = std::fs::remove_file(path);
        }
        if let Err(error) = self.app.audit.write(&LifecycleRecord::now("stop")) {
            tracing::error!(%error, "audit log: stop record not written");
        }
        match self.app.audit.sync() {
            Ok(()) if settled => self.write_checkpoint(&snapshot.config),
            Ok(()) => tracing::warn!(
                "no checkpoint written: requests were cut off; the next start rebuilds the \
                 budgets and order record from the audit log"
            ),
            Err(error) => tracing::error!(%error, "audit log not synced at shutdown"),
        }
    }

    /// Every request has been answered and recorded: the budgets and the order
    /// record as they stand are what the audit log says, and the next start can
    /// begin from them.
    fn write_checkpoint(&self, config: &Config) {
        let app = &self.app;
        match crate::checkpoint::write(config, &app.budgets, &app.orders) {
            Ok(()) => tracing::info!(
                checkpoint = %crate::checkpoint::file(config).display(),
                "checkpoint written for the next start"
            ),
            Err(why) => tracing::warn!(
                %why,
                "no checkpoint written; the next start rebuilds the budgets and order record \
                 from the audit log"
            ),
        }
    }
}

/// Builds everything, binds the listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let tls_dir = config.tls.dir.clone();
    keyward_certs::init(&tls_dir, &config.server.names, false)?;
    let listen = config.server.listen;
    let admin_addr = config.server.admin;
    // Kept for naming a listener that cannot be bound after the configuration has
    // gone into the App.
    let settings = config.server.clone();
    let bound = |addr| bind_error(&settings, addr);
    let bot_listener = bind_bots(listen).map_err(bound(listen))?;
    let bot_addr = bot_listener.local_addr().map_err(bound(listen))?;
    let plain_listener = bind_optional(&settings, config.server.plain_listen).await?;
    let plain_addr = plain_listener.as_ref().and_then(|l| l.local_addr().ok());
    let unix_listener = match &config.server.listen_unix {
        Some(path) => Some(bind_unix(path, 0o660)?),
        None => None,
    };
    // Assembled with the bound ports, which the Host check needs when the
    // configuration asked for port 0.
    let ports: Vec<u16> = std::iter::once(bot_addr.port())
        .chain(plain_addr.map(|a| a.port()))
        .collect();
    let app = App::assemble(config, &ports)?;
    let admin_listener = bind_optional(&settings, admin_addr).await?;
    let admin_bound = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_listener = bind_optional(&settings, settings.metrics_listen).await?;
    let metrics_bound = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let control_path = crate::app::control_socket(&app.snapshot().config);
    let control_listener = bind_unix(&control_path, 0o600)?;
    let app = Arc::new(app);
    // The first signed request already needs the exchange's clock; an exchange that
    // cannot be asked in time leaves the offset at zero until the next check.
    background::check_clocks_at_start(&app).await;
    if let Err(error) = app.audit.write(&LifecycleRecord::now("start")) {
        tracing::error!(%error, "audit log: start record not written");
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    background::spawn(&mut tasks, &app, &shutdown_rx);
    tasks.spawn(accept_bots(
        Listener::Tls(bot_listener),
        app.clone(),
        shutdown_rx.clone(),
    ));
    if let Some(listener) = plain_listener {
        tasks.spawn(accept_bots(
            Listener::Plain(listener),
            app.clone(),
            shutdown_rx.clone(),
        ));
    }
    if let Some(listener) = unix_listener {
        tasks.spawn(accept_bots(
            Listener::Unix(listener),
            app.clone(),
            shutdown_rx.clone(),
        ));
    }
    if let Some(listener) = admin_listener {
        tasks.spawn(accept_admin(
            listener,
            app.clone(),
            admin::Channel::Listener,
            shutdown_rx.clone(),
        ));
    }
    if let Some(listener) = metrics_listener {
        tasks.spawn(accept_admin(
            listener,
            app.clone(),
            admin::Channel::Metrics,
            shutdown_rx.clone(),
        ));
    }
    tasks.spawn(accept_control(
        control_listener,
        app.clone(),
        shutdown_rx.clone(),
    ));
    app.ready.store(true, Ordering::Release);
    // Addresses as operators write them, "off" when there is none (not `Some(..)`).
    let shown = |addr: Option<SocketAddr>| addr.map_or_else(|| "off".to_owned(), |a| a.to_string());
    tracing::info!(
        %bot_addr,
        plain = %shown(plain_addr),
        admin = %shown(admin_bound),
        metrics = %shown(metrics_bound),
        "keyward is serving"
    );
    Ok(Running {
        bot_addr,
        plain_addr,
        admin_addr: admin_bound,
        metrics_addr: metrics_bound,
        ca_path: tls_dir.join(keyward_certs::CA_CERT),
        app,
        shutdown,
        tasks,
    })
}

async fn bind_optional(
    settings: &crate::config::Server,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, StartError> {
    match addr {
        Some(addr) => bind_bots(addr)
            .map(Some)
            .map_err(bind_error(settings, addr)),
        None => Ok(None),
    }
}

/// The error for `addr`, named by the setting that asked for it.
fn bind_error(
    settings: &crate::config::Server,
    addr: SocketAddr,
) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| {
        let (setting, at) = settings.listener_setting(addr);
        StartError::Bind {
            addr,
            setting,
            at: at.cloned(),
            source,
        }
    }
}

/// Connections the kernel may hold for a bot listener before keyward accepts them
/// (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// A bot listener with a long accept queue. Connections beyond the free slots wait
/// there (see [`accept_bots`]); once it is full, the kernel drops new connection
/// attempts and clients retry after 1, 3, 7, 15, ... s, so a bot connecting during a
/// flood could wait minutes with slots free. tokio's `bind` queues 1,024.
fn bind_bots(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's `bind` does: a restarted keyward can bind while old connections
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A bot listener.
enum Listener {
    Tls(TcpListener),
    Plain(TcpListener),
    Unix(UnixListener),
}

/// An accepted bot connection, before any byte is read.
enum Accepted {
    Tls(TcpStream, SocketAddr),
    Plain(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Accepted> {
        Ok(match self {
            Self::Tls(listener) => {
                let (tcp, peer) = listener.accept().await?;
                Accepted::Tls(tcp, peer)
            }
            Self::Plain(listener) => {
                let (tcp, peer) = listener.accept().await?;
                Accepted::Plain(tcp, peer)
            }
            Self::Unix(listener) => Accepted::Unix(listener.accept().await?.0),
        })
    }
}

/// Accepts bot connections while a connection slot is free; all bot listeners
/// share `max_connections` only in that each has that many.
async fn accept_bots(listener: Listener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let limits = app.listener_limits;
    // Waiting for a permit before accepting leaves excess connections in the
    // kernel's backlog instead of costing handshakes and memory here.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            match accepted {
                Accepted::Tls(tcp, peer) => serve_tls(tcp, peer, app, shutdown).await,
                Accepted::Plain(tcp, peer) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = ConnInfo {
                        peer: peer.to_string(),
                        transport: Transport::Plain,
                        http2: false,
                        verdicts: None,
                        websocket: false,
                    };
                    serve_http(tcp, conn, app, shutdown).await;
                }
                Accepted::Unix(stream) => {
                    let Ok(cred) = stream.peer_cred() else {
                        return;
                    };
                    let conn = ConnInfo {
                        peer: "unix".to_owned(),
                        transport: Transport::Unix(PeerCred {
                            uid: cred.uid(),
                            gid: cred.gid(),
                            pid: cred.pid(),
                        }),
                        http2: false,
                        verdicts: None,
                        websocket: false,
                    };
                    serve_http(stream, conn, app, shutdown).await;
                }
            }
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// The TLS handshake, with the configuration in force now (a reload changes it for
/// later connections only), then HTTP/2 or HTTP/1.1 as ALPN chose. A handshake
/// refused over the client's certificate is audited: it is someone trying to pass
/// as a bot.
async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = app.listener_limits;
    let _ = tcp.set_nodelay(true);
    let acceptor = TlsAcceptor::from(app.snapshot().tls.server.clone());
    // The handshake's state and the stream it yields live on the heap, each for as
    // long as it is needed: kept inline they would size every connection's task for
    // all of them at once (the task was 12 KiB, see docs/performance.md).
    let accept = Box::pin(tokio::time::timeout(
        limits.handshake_timeout,
        acceptor.accept(tcp),
    ));
    let tls = match accept.await {
        Ok(Ok(tls)) => Box::new(tls),
        Ok(Err(error)) => {
            if let Some(reason) = crate::identity::certificate_refusal(&error) {
                refused_handshake(&app, &peer.to_string(), reason);
            }
            return;
        }
        Err(_) => return,
    };
    let session = tls.get_ref().1;
    let http2 = session.alpn_protocol() == Some(b"h2");
    let client = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| keyward_certs::inspect::client_name(cert))
        .map(Arc::from);
    let transport = Transport::Tls { client };
    if http2 {
        let conn = Arc::new(ConnInfo {
            peer: peer.to_string(),
            transport,
            http2: true,
            verdicts: None,
            websocket: false,
        });
        // hyper closes an idle HTTP/1.1 connection after the header deadline, but
        // keeps an HTTP/2 connection open for as long as the client likes, streams or
        // not: enough idle ones would hold every connection slot. So an HTTP/2
        // connection is closed (GOAWAY, then the socket) once it has had no request in
        // progress for the header deadline.
        let activity = Arc::new(Activity::new());
        let busy = activity.clone();
        let service = service_fn(move |request| {
            let app = app.clone();
            let conn = conn.clone();
            let working = busy.begin();
            async move {
                let response = pipeline::handle(app, conn, request).await;
                drop(working);
                Ok::<_, Infallible>(response)
            }
        });
        let mut connection = Box::pin(
            http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .max_header_list_size(64 * 1024)
                .initial_stream_window_size(64 * 1024)
                .initial_connection_window_size(1024 * 1024)
                .serve_connection(TokioIo::new(tls), service),
        );
        tokio::select! {
            _ = connection.as_mut() => {}
            () = activity.idle_for(limits.header_timeout) => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(limits.header_timeout, connection).await;
            }
            _ = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, connection).await;
            }
        }
    } else {
        let conn = ConnInfo {
            peer: peer.to_string(),
            transport,
            http2: false,
            verdicts: None,
            websocket: false,
        };
        serve_http(tls, conn, app, shutdown).await;
    }
}

/// HTTP/1.1 behind the framing guard, on any stream: what every HTTP/1 bot listener
/// runs on an accepted connection (public so the fuzzer drives the same code over an
/// in-memory stream). A connection that stays idle is parked (see `idle.rs`)
/// and served again by a new hyper connection when the bot's next bytes arrive; an
/// idle connection is closed after the header deadline, parked or not.
pub async fn serve_http<S>(
    stream: S,
    mut conn: ConnInfo,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = app.listener_limits;
    let verdicts = Verdicts::default();
    conn.verdicts = Some(verdicts.clone());
    let conn = Arc::new(conn);
    let activity = Arc::new(Activity::new());
    let busy = activity.clone();
    let counted = app.clone();
    let mut service = service_fn(move |request| {
        let app = app.clone();
        let conn = conn.clone();
        let working = busy.begin();
        async move {
            let response = pipeline::handle(app, conn, request).await;
            drop(working);
            Ok::<_, Infallible>(response)
        }
    });
    let park_after = idle::PARK_AFTER.min(limits.header_timeout / 4);
    // On the heap, like the TLS stream in `serve_tls`: every idle connection holds it.
    let mut stream = Box::new(Resumable::new(
        Guarded::new(stream, verdicts),
        activity.clone(),
    ));
    loop {
        let deadline = activity.idle_since() + limits.header_timeout;
        if !stream.has_unread() {
            stream.get_mut().release_idle_buffers();
            let _parked = Parked::count(&counted.metrics);
            let woken = tokio::select! {
                woken = stream.wait_for_bytes() => matches!(woken, Ok(true)),
                () = tokio::time::sleep_until(deadline) => false,
                _ = shutdown.changed() => false,
            };
            if !woken {
                close_quietly(&mut stream).await;
                return;
            }
        }
        let Some(header_time_left) = deadline
            .checked_duration_since(tokio::time::Instant::now())
            .filter(|left| !left.is_zero())
        else {
            close_quietly(&mut stream).await;
            return;
        };
        let mut connection = Box::pin(
            http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_time_left)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                // A WebSocket request is answered (101) and its connection handed over.
                .with_upgrades(),
        );
        // A hyper connection is built only once the bot has sent something, and is
        // not parked before that has become a request: bytes of a head the bot has
        // not finished do not bring the connection back and forth.
        let park_once_begun = activity.begun() + 1;
        let park = async {
            while activity.begun() < park_once_begun {
                tokio::time::sleep(park_after).await;
            }
            activity.idle_for(park_after).await;
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            () = park => {}
            _ = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, connection).await;
                return;
            }
        }
        // Idle: hyper closes its connection at once, or, if it is still writing an
        // answer, once that is written (without asking the bot to close).
        activity.set_parking(true);
        connection.as_mut().graceful_shutdown();
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = shutdown.changed() => {
                activity.set_parking(false);
                let _ = tokio::time::timeout(DRAIN, connection).await;
                return;
            }
        };
        activity.set_parking(false);
        if ended.is_err() {
            return;
        }
        // `None`: the last request was a WebSocket's, which now owns the stream.
        let Some(parts) = Pin::into_inner(connection).into_parts() else {
            return;
        };
        stream = parts.io.into_inner();
        stream.put_back(parts.read_buf);
        service = parts.service;
    }
}

/// Ends a connection keyward holds outside hyper: TLS's close_notify, then the
/// socket's end, unless the bot no longer reads.
async fn close_quietly<S: AsyncWrite + Unpin>(stream: &mut S) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

/// One parked connection, counted in `keyward_bot_connections_parked` while it lasts.
struct Parked<'a>(&'a crate::metrics::Metrics);

impl<'a> Parked<'a> {
    fn count(metrics: &'a crate::metrics::Metrics) -> Self {
        metrics.parked(1);
        Self(metrics)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.parked(-1);
    }
}

fn refused_handshake(app: &App, peer: &str, reason: &'static str) {
    tracing::info!(%peer, reason, "TLS handshake refused");
    let record = HandshakeRecord {
        ts: crate::audit::timestamp(SystemTime::now()),
        event: "handshake",
        peer,
        decision: Decision::Deny,
        reason,
    };
    if app.audit.write(&record).is_err() {
        app.metrics.audit_failure();
    }
    app.metrics.handshake_refused(reason);
}

/// The control socket: like the admin listener, plus the operator-only routes.
async fn accept_control(
    listener: UnixListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = shutdown.changed() => break,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let app = app.clone();
                async move {
                    Ok::<_, Infallible>(admin::handle(app, request, admin::Channel::Control).await)
                }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds a Unix socket (the control socket, 0600, or the bot socket, 0660) with
/// its mode set before anyone can connect. A socket file that nothing answers on is
/// left from a crash and replaced; one that answers belongs to another keyward.
fn bind_unix(path: &std::path::Path, mode: u32) -> Result<UnixListener, StartError> {
    use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
    let error = |source| StartError::Control {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            // The group of a group-accessible socket must reach it.
            .mode(if mode & 0o070 == 0 { 0o700 } else { 0o750 })
            .create(dir)
            .map_err(error)?;
    }
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            return Err(error(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(error(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another keyward is running with this configuration",
            )));
        }
        std::fs::remove_file(path).map_err(error)?;
    }
    // Bound inside a private directory, given its mode, then moved into place: the
    // socket is never reachable with the default mode.
    let staging = tempdir_beside(path).map_err(error)?;
    let staged = staging.join("socket");
    let listener = UnixListener::bind(&staged).map_err(error)?;
    let placed = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&staged, path));
    let _ = std::fs::remove_dir(&staging);
    placed.map_err(error)?;
    Ok(listener)
}

/// A fresh directory next to `path`, readable by its owner only.
fn tempdir_beside(path: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let parent = path.parent().unwrap_or(std::path::Path::new("."));
    for attempt in 0..100u32 {
        let candidate = parent.join(format!(".keyward-bind-{}-{attempt}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "cannot create a staging directory",
    ))
}

/// Connections the metrics listener serves at once; it may face a whole network,
/// and a scraper needs one.
const METRICS_CONNECTIONS: usize = 16;

async fn accept_admin(
    listener: TcpListener,
    app: Arc<App>,
    channel: admin::Channel,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = shutdown.changed() => break,
        };
        // Only the metrics listener is capped: the admin listener is on loopback,
        // where a probe must never be turned away.
        let slot = match channel {
            admin::Channel::Metrics => match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => continue,
            },
            _ => None,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(admin::handle(app, request, channel).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
