//! What a bot connection holds while it has nothing to say, and when it counts as
//! idle.
//!
//! hyper's HTTP/1 connection keeps an 8 KiB write buffer for its whole life and an
//! 8 KiB read buffer from its first read, and offers no setting to release them
//! between requests. Bots keep connections open and send rarely, so with many of them
//! those buffers were most of keyward's memory (docs/performance.md). An HTTP/1.1
//! connection with no request in progress for a while is therefore *parked*: hyper's
//! connection is closed without closing the stream under it
//! ([`Resumable::poll_shutdown`]), and the task keeps only the stream and the
//! framing guard until the bot's next bytes arrive; then a new hyper connection is
//! built over them, the bytes hyper had read but not used put back in front.
//!
//! [`Activity`] counts requests in progress on one connection and remembers since
//! when it has had none: the parking decision, the header deadline that spans parked
//! time, and the idle close of HTTP/2 connections all read it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long an HTTP/1.1 connection has no request in progress before it is parked,
/// unless a quarter of the header deadline is shorter. A bot sending more often than
/// this keeps its hyper connection; one sending less often pays for a new one (a few
/// microseconds) per request.
pub(crate) const PARK_AFTER: Duration = Duration::from_secs(1);

/// Requests in progress on one connection, and since when it has had none.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun, ever: tells whether one began since a given moment.
    begun: AtomicU64,
    idle_since: Mutex<Instant>,
    /// Set while keyward closes hyper's connection to park it: the stream under it
    /// must then stay open.
    parking: AtomicBool,
}

/// One request's hold on its connection's [`Activity`].
#[derive(Debug)]
pub(crate) struct Working(Arc<Activity>);

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            parking: AtomicBool::new(false),
        }
    }

    pub(crate) fn begin(self: &Arc<Self>) -> Working {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        Working(self.clone())
    }

    /// Requests begun on the connection so far.
    pub(crate) fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// Since when no request has been in progress (the connection's start if none
    /// ever was). Meaningless while one is.
    pub(crate) fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once no request has been in progress for `limit`.
    pub(crate) async fn idle_for(&self, limit: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                limit
            } else {
                match limit.checked_sub(self.idle_since().elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn parking(&self) -> bool {
        self.parking.load(Ordering::Acquire)
    }

    pub(crate) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Release);
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        // The clock restarts when the last request ends (or is abandoned).
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A bot's stream as hyper sees it: bytes already read from it come first, and
/// while the connection is being parked, hyper's shutdown leaves it open.
#[derive(Debug)]
pub(crate) struct Resumable<S> {
    unread: Bytes,
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Resumable<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            unread: Bytes::new(),
            inner,
            activity,
        }
    }

    /// The stream under it (to release what it keeps while idle).
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Puts back bytes hyper read and did not use, to be read again first, ahead of
    /// any this wrapper still holds (hyper may have stopped before reading them all).
    /// An empty buffer is dropped rather than kept: it may be hyper's whole read
    /// buffer.
    pub(crate) fn put_back(&mut self, read: Bytes) {
        if read.is_empty() {
            return;
        }
        self.unread = if self.unread.is_empty() {
            read
        } else {
            let mut joined = BytesMut::with_capacity(read.len() + self.unread.len());
            joined.extend_from_slice(&read);
            joined.extend_from_slice(&self.unread);
            joined.freeze()
        };
    }

    /// Whether bytes are waiting to be read again.
    pub(crate) fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    /// Waits for the bot's next bytes, reading the first of them into the unread
    /// buffer. `Ok(false)` is the end of the stream. The read goes through every
    /// layer under this one (the framing guard sees the bytes as hyper would have).
    pub(crate) async fn wait_for_bytes(&mut self) -> io::Result<bool> {
        // Enough to know the bot spoke (hyper reads the rest); it is part of every
        // connection's task, so it is kept small.
        let mut first = [0u8; 64];
        let mut read = ReadBuf::new(&mut first);
        std::future::poll_fn(|cx| Pin::new(&mut self.inner).poll_read(cx, &mut read)).await?;
        let filled = read.filled();
        self.unread = Bytes::copy_from_slice(filled);
        Ok(!filled.is_empty())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Resumable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
            if self.unread.is_empty() {
                self.unread = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Resumable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// hyper shuts its stream down when its connection ends; when keyward ended it
    /// to park the connection, only what was written is flushed and the stream stays
    /// open for the next hyper connection.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.parking() {
            return Pin::new(&mut self.inner).poll_flush(cx);
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_put_back_come_first_then_those_hyper_never_read_then_the_stream() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut stream = Resumable::new(near, Arc::new(Activity::new()));
        far.write_all(b"GET / HT").await.unwrap();
        assert!(stream.wait_for_bytes().await.unwrap());
        // hyper read "GET " of the unread bytes, then was closed with "T " unused.
        let mut read = [0u8; 4];
        stream.read_exact(&mut read).await.unwrap();
        stream.put_back(Bytes::from_static(b"T "));
        stream.put_back(Bytes::new());
        far.write_all(b"TP/1.1\r\n").await.unwrap();
        let mut rest = [0u8; 14];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"T / HTTP/1.1\r\n");
        assert!(!stream.has_unread());
    }

    #[tokio::test]
    async fn a_shutdown_while_parking_leaves_the_stream_open() {
        let (near, mut far) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::new());
        let mut stream = Resumable::new(near, activity.clone());
        activity.set_parking(true);
        stream.shutdown().await.unwrap();
        stream.write_all(b"still open").await.unwrap();
        let mut got = [0u8; 10];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still open");
        activity.set_parking(false);
        stream.shutdown().await.unwrap();
        assert_eq!(far.read(&mut got).await.unwrap(), 0, "shut down for real");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_while_parked_is_told_apart_from_bytes() {
        let (near, far) = tokio::io::duplex(64);
        let mut stream = Resumable::new(near, Arc::new(Activity::new()));
        drop(far);
        assert!(!stream.wait_for_bytes().await.unwrap());
        assert!(!stream.has_unread());
    }
}
