//! Keep-alive connections to the exchange's hosts, each driven by the request that
//! holds it.
//!
//! A pooled client that runs every connection in a task of its own hands each request
//! to that task and the answer back: two wake-ups per request, often of the other
//! worker thread. Here a request takes an idle connection out of the pool, polls the
//! connection itself while it sends and reads, and puts it back once the answer is
//! complete. Nothing polls an idle connection: one the exchange closed meanwhile is
//! found closed when it is next taken (its end of stream is read then) and dropped.
//! Connections idle for over a minute are closed at the next take of any host (the
//! clock check takes one every minute).
//! A connection whose request failed, timed out or was abandoned is never put back,
//! since what it would read next cannot be known.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::UpstreamError;

/// How long an unused connection is kept (exchanges close theirs after a minute or
/// more; one kept longer would mostly be found closed).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept over all of an account's hosts; more are closed when put
/// back. A burst of that many requests at once is rare for one account.
const MAX_IDLE: usize = 256;

type Driver = http1::Connection<TokioIo<TlsStream<TcpStream>>, Full<Bytes>>;

/// One HTTP/1.1 connection over TLS to an exchange host.
pub(super) struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Pin<Box<Driver>>,
    /// Set once the driver has finished: it is then never polled again.
    ended: Option<Result<(), UpstreamError>>,
}

impl Connection {
    /// Sends `request` on this connection.
    pub(super) fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>> + use<> {
        self.sender.send_request(request)
    }

    /// Runs `work` (sending, or reading the answer) while polling the connection
    /// that carries it. The work's own result wins when it has one; a connection
    /// that ends before the work is done fails it.
    pub(super) async fn drive<F: Future>(&mut self, work: F) -> Result<F::Output, UpstreamError> {
        let mut work = pin!(work);
        poll_fn(|cx| {
            if self.ended.is_none()
                && let Poll::Ready(result) = self.driver.as_mut().poll(cx)
            {
                self.ended = Some(result.map_err(|e| classify(&e)));
            }
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            match self.ended {
                Some(Err(error)) => Poll::Ready(Err(error)),
                Some(Ok(())) => Poll::Ready(Err(UpstreamError::Invalid)),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Whether a new request can be sent: the exchange has not closed the
    /// connection and hyper is ready for the next request. Polls the connection
    /// once, which reads an end of stream the exchange sent while it was idle.
    async fn usable(&mut self) -> bool {
        poll_fn(|cx| {
            if self.ended.is_none()
                && let Poll::Ready(result) = self.driver.as_mut().poll(cx)
            {
                self.ended = Some(result.map_err(|e| classify(&e)));
            }
            if self.ended.is_some() {
                return Poll::Ready(false);
            }
            Poll::Ready(matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(()))))
        })
        .await
    }
}

struct Idle {
    host: Authority,
    connection: Connection,
    since: Instant,
}

/// One account's idle connections, over all the hosts it reaches.
pub(super) struct Pool {
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(super) fn new(tls: Arc<ClientConfig>, connect_timeout: Duration) -> Self {
        Self {
            tls,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection to `host`: the one most recently put back that is still
    /// usable, or a new one.
    pub(super) async fn take(&self, host: &Authority) -> Result<Connection, UpstreamError> {
        while let Some(mut candidate) = self.take_idle(host) {
            if candidate.usable().await {
                return Ok(candidate);
            }
        }
        self.connect(host).await
    }

    fn take_idle(&self, host: &Authority) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        // Put back in order, so the stale ones are at the front.
        let stale = idle
            .iter()
            .take_while(|entry| now.duration_since(entry.since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..stale);
        let newest = idle.iter().rposition(|entry| entry.host == *host)?;
        Some(idle.remove(newest).connection)
    }

    /// Keeps a connection whose request and answer are complete for the next
    /// request to `host`.
    pub(super) fn put_back(&self, host: Authority, connection: Connection) {
        if connection.ended.is_some() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            host,
            connection,
            since: Instant::now(),
        });
    }

    async fn connect(&self, host: &Authority) -> Result<Connection, UpstreamError> {
        let port = host.port_u16().unwrap_or(443);
        let tls = connect_tls(host.host(), port, &self.tls, self.connect_timeout).await?;
        let (sender, driver) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|_| UpstreamError::Unavailable)?;
        Ok(Connection {
            sender,
            driver: Box::pin(driver),
            ended: None,
        })
    }
}

/// TCP, then TLS, each within `deadline`: nothing has been sent when either fails.
/// `host` is a name or an address (an IPv6 one in brackets or not).
pub(crate) async fn connect_tls(
    host: &str,
    port: u16,
    tls: &Arc<ClientConfig>,
    deadline: Duration,
) -> Result<TlsStream<TcpStream>, UpstreamError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::time::timeout(deadline, TcpStream::connect((host, port)))
        .await
        .map_err(|_| UpstreamError::Unavailable)?
        .map_err(|_| UpstreamError::Unavailable)?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| UpstreamError::Tls)?;
    tokio::time::timeout(
        deadline,
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| UpstreamError::Tls)?
    .map_err(|_| UpstreamError::Tls)
}

/// What a failed exchange on an open connection means, from hyper's error.
pub(super) fn classify(error: &hyper::Error) -> UpstreamError {
    if error.is_parse() || error.is_parse_status() {
        return UpstreamError::Invalid;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return UpstreamError::Tls;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return UpstreamError::Tls;
        }
        cause = current.source();
    }
    UpstreamError::Invalid
}
