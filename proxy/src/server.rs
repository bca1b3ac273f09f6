//! Listeners: the bot listener (TLS 1.3, HTTP/1.1 behind the framing guard or
//! HTTP/2 by ALPN, with handshake, header and body deadlines and a connection cap)
//! and the admin listener (plain HTTP on loopback). Graceful shutdown on request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::app::{App, StartError};
use crate::config::Config;
use crate::guard::{Guarded, Verdicts};
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
    /// The admin listener, if configured.
    pub admin_addr: Option<SocketAddr>,
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
        let drained = tokio::time::timeout(DRAIN + Duration::from_secs(1), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown: connections still open after the drain period were dropped");
            self.tasks.abort_all();
        }
        if let Err(error) = self.app.audit.sync() {
            tracing::error!(%error, "audit log not synced at shutdown");
        }
    }
}

/// Builds everything, binds the listeners and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let tls_dir = config.tls.dir.clone();
    keyward_certs::init(&tls_dir, &config.server.names, false)?;
    let tls = keyward_certs::server_config(&tls_dir)?;
    let listen = config.server.listen;
    let admin_addr = config.server.admin;
    let bot_listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let bot_addr = bot_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    // Assembled with the bound port, which the Host check needs when the
    // configuration asked for port 0.
    let app = App::assemble(config, bot_addr.port())?;
    let admin_listener = match admin_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    let admin_bound = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let app = Arc::new(app);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(reload_on_hangup(app.clone(), shutdown_rx.clone()));
    tasks.spawn(accept_bots(
        bot_listener,
        TlsAcceptor::from(tls),
        app.clone(),
        shutdown_rx.clone(),
    ));
    if let Some(listener) = admin_listener {
        tasks.spawn(accept_admin(listener, app.clone(), shutdown_rx));
    }
    app.ready.store(true, Ordering::Release);
    tracing::info!(%bot_addr, admin = ?admin_bound, "keyward is serving");
    Ok(Running {
        bot_addr,
        admin_addr: admin_bound,
        ca_path: tls_dir.join(keyward_certs::CA_CERT),
        app,
        shutdown,
        tasks,
    })
}

async fn accept_bots(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let (tcp, peer) = tokio::select! {
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
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_bot(tcp, peer, acceptor, app, shutdown).await;
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

async fn serve_bot(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = app.listener_limits;
    let _ = tcp.set_nodelay(true);
    let Ok(Ok(tls)) = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await
    else {
        return;
    };
    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    if http2 {
        let conn = Arc::new(ConnInfo {
            peer,
            http2: true,
            verdicts: None,
        });
        let service = service_fn(move |request| {
            let app = app.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(pipeline::handle(app, conn, request).await) }
        });
        let connection = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(64 * 1024)
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .serve_connection(TokioIo::new(tls), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, connection).await;
            }
        }
    } else {
        let verdicts = Verdicts::default();
        let conn = Arc::new(ConnInfo {
            peer,
            http2: false,
            verdicts: Some(verdicts.clone()),
        });
        let service = service_fn(move |request| {
            let app = app.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(pipeline::handle(app, conn, request).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true)
            .serve_connection(TokioIo::new(Guarded::new(tls, verdicts)), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            _ = shutdown.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(DRAIN, connection).await;
            }
        }
    }
}

/// `SIGHUP` reloads the configuration and vault (see [`App::reload`]).
async fn reload_on_hangup(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; reload through the admin listener instead");
        return;
    };
    loop {
        tokio::select! {
            received = hangups.recv() => if received.is_none() { break },
            _ = shutdown.changed() => break,
        }
        let app = app.clone();
        // The outcome is logged, counted and audited by `reload` itself.
        let _ = tokio::task::spawn_blocking(move || app.reload("signal")).await;
    }
}

async fn accept_admin(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
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
                async move { Ok::<_, Infallible>(admin::handle(app, &request).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
