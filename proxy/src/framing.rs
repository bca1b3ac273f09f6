//! A second, strict reader of HTTP/1 request framing, in front of hyper.
//!
//! hyper is lenient where a security boundary must not be: since its fix for issue
//! 4123 it drops a Content-Length that comes with Transfer-Encoding and serves the
//! request as chunked, and httparse accepts bare LF line endings. Either way the
//! request would be handled, and INV-8 says it must be refused. The guard wraps the
//! connection's reader, sees every byte before hyper does, frames requests itself
//! (strictly: CRLF only, no obs-fold, one Content-Length of digits or exactly
//! `Transfer-Encoding: chunked`, never both, no Transfer-Encoding in HTTP/1.0), and
//! queues a verdict per request head. The handler takes the verdict for each request
//! hyper dispatches; hyper dispatches requests in order, one at a time, and cannot
//! parse a head before the guard has seen its bytes, so the queue stays in step.
//! After the first bad head the guard is poisoned: every later request on the
//! connection is refused and the connection closed.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::front::FrontError;

/// Largest request head the guard will buffer; hyper refuses larger ones itself.
const MAX_HEAD: usize = 160 * 1024;
/// Largest head buffer kept between requests on one connection.
const KEPT_HEAD_CAPACITY: usize = 4 * 1024;
/// Largest chunk size accepted; anything bigger is an overflow attempt.
const MAX_CHUNK: u64 = 1 << 32;

/// What the guard thinks of one request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Framed unambiguously. `padded_credential` is set when a token-carrying header
    /// had whitespace around its value: HTTP parsers strip it, so only the guard can
    /// see it, and a token must match byte for byte.
    Clean {
        /// Whitespace around an API-key or Authorization value.
        padded_credential: bool,
    },
    /// Refuse and close.
    Refuse(FrontError),
}

/// The verdict queue shared by a connection's guard and its request handler, and
/// the handler's word that the connection became a WebSocket: its bytes are then
/// frames, not HTTP, and the guard stops reading them as requests.
#[derive(Debug, Clone, Default)]
pub struct Verdicts(Arc<Mutex<Shared>>, Arc<std::sync::atomic::AtomicBool>);

#[derive(Debug, Default)]
struct Shared {
    queue: VecDeque<Verdict>,
    poisoned: Option<FrontError>,
}

impl Verdicts {
    /// The verdict for the next request hyper dispatched. An empty queue cannot happen
    /// while the guard is in step; if it does, the request is refused (fail closed).
    pub fn next(&self) -> Verdict {
        let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match shared.queue.pop_front() {
            Some(verdict) => verdict,
            None => Verdict::Refuse(
                shared
                    .poisoned
                    .clone()
                    .unwrap_or(FrontError::FramingAmbiguous),
            ),
        }
    }

    /// Set once the guard lost trust in the connection (also mid-body).
    pub fn poisoned(&self) -> Option<FrontError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .poisoned
            .clone()
    }

    /// The connection is now a WebSocket: every byte after the upgrade request is a
    /// frame, which the WebSocket reader checks.
    pub fn upgraded(&self) {
        self.1.store(true, std::sync::atomic::Ordering::Release);
    }

    fn push(&self, verdict: Verdict) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queue
            .push_back(verdict);
    }

    fn poison(&self, reason: FrontError) {
        let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.poisoned.is_none() {
            shared.poisoned = Some(reason);
        }
    }
}

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Poisoned,
}

/// The framing state machine over the bytes of one connection.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: Vec<u8>,
    verdicts: Verdicts,
}

impl Scanner {
    /// A scanner reporting into `verdicts`.
    pub fn new(verdicts: Verdicts) -> Self {
        Self {
            state: State::Head,
            line: Vec::new(),
            verdicts,
        }
    }

    /// Feeds the next bytes read from the connection.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.verdicts.1.load(std::sync::atomic::Ordering::Acquire) {
            if !matches!(self.state, State::Poisoned) {
                self.state = State::Poisoned;
                self.line = Vec::new();
            }
            return;
        }
        while !bytes.is_empty() {
            match self.state {
                State::Poisoned => return,
                State::Head => {
                    let (taken, done) = take_until_blank_line(&mut self.line, bytes);
                    bytes = &bytes[taken..];
                    if done {
                        let mut head = std::mem::take(&mut self.line);
                        self.judge(&head);
                        // Kept for the next head on this connection: a kept-alive bot
                        // sends many, and growing a new buffer for each costs a string
                        // of allocations per request. An unusually large one is let go,
                        // so that idle connections hold little.
                        head.clear();
                        if matches!(self.state, State::Poisoned)
                            || head.capacity() > KEPT_HEAD_CAPACITY
                        {
                            head = Vec::new();
                        }
                        self.line = head;
                    } else if self.line.len() > MAX_HEAD {
                        self.poison(FrontError::HeaderInvalid);
                    }
                }
                State::Body(remaining) => {
                    let n = remaining.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if remaining == n {
                        State::Head
                    } else {
                        State::Body(remaining - n)
                    };
                }
                State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let (taken, done) = take_line(&mut self.line, bytes);
                    bytes = &bytes[taken..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        self.chunk_line(&line);
                    } else if self.line.len() > 8 * 1024 {
                        self.poison(FrontError::FramingAmbiguous);
                    }
                }
                State::ChunkData(remaining) => {
                    let n = remaining.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = if remaining == n {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(remaining - n)
                    };
                }
            }
        }
    }

    fn chunk_line(&mut self, line: &[u8]) {
        let Some(line) = line.strip_suffix(b"\r\n") else {
            return self.poison(FrontError::FramingAmbiguous);
        };
        match self.state {
            State::ChunkSize => {
                let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
                let size = parse_hex(size_text);
                match size {
                    Some(0) => self.state = State::Trailers,
                    Some(n) if n <= MAX_CHUNK => self.state = State::ChunkData(n),
                    _ => self.poison(FrontError::FramingAmbiguous),
                }
            }
            State::ChunkEnd if line.is_empty() => self.state = State::ChunkSize,
            // Trailer lines are skipped to stay in step; the handler refuses trailers.
            State::Trailers if line.is_empty() => self.state = State::Head,
            State::Trailers => {}
            _ => self.poison(FrontError::FramingAmbiguous),
        }
    }

    fn judge(&mut self, head: &[u8]) {
        match judge_head(head) {
            Ok((framing, padded_credential)) => {
                self.verdicts.push(Verdict::Clean { padded_credential });
                self.state = match framing {
                    Framing::None => State::Head,
                    Framing::Length(0) => State::Head,
                    Framing::Length(n) => State::Body(n),
                    Framing::Chunked => State::ChunkSize,
                };
            }
            Err(reason) => {
                self.verdicts.push(Verdict::Refuse(reason.clone()));
                self.poison(reason);
            }
        }
    }

    fn poison(&mut self, reason: FrontError) {
        self.verdicts.poison(reason);
        self.state = State::Poisoned;
        self.line = Vec::new();
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Appends bytes up to and including the first blank line (the end of a head);
/// returns how many were taken and whether the head is complete. Leading empty lines
/// before a request line are tolerated, as RFC 9112 section 2.2 allows.
fn take_until_blank_line(buffer: &mut Vec<u8>, bytes: &[u8]) -> (usize, bool) {
    for (i, byte) in bytes.iter().enumerate() {
        if buffer.is_empty() && (*byte == b'\r' || *byte == b'\n') {
            continue;
        }
        buffer.push(*byte);
        if *byte == b'\n' && (buffer.ends_with(b"\n\n") || buffer.ends_with(b"\n\r\n")) {
            return (i + 1, true);
        }
    }
    (bytes.len(), false)
}

fn take_line(buffer: &mut Vec<u8>, bytes: &[u8]) -> (usize, bool) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => {
            buffer.extend_from_slice(&bytes[..=i]);
            (i + 1, true)
        }
        None => {
            buffer.extend_from_slice(bytes);
            (bytes.len(), false)
        }
    }
}

fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, b| {
        let digit = char::from(*b).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

/// The strict reading of one head (ending in a blank line): its framing, and whether
/// a credential header was padded with whitespace.
fn judge_head(head: &[u8]) -> Result<(Framing, bool), FrontError> {
    // Every line, the last header line included, must end in CRLF; dropping the blank
    // line and the final LF leaves lines that each end in CR.
    let Some(content) = head
        .strip_suffix(b"\r\n")
        .filter(|c| c.ends_with(b"\r\n"))
        .and_then(|c| c.strip_suffix(b"\n"))
    else {
        return Err(first_bare_lf(head));
    };
    let mut lines = content.split(|b| *b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let request_line = request_line
        .strip_suffix(b"\r")
        .ok_or(FrontError::RequestLineInvalid)?;
    let version = request_line_version(request_line).ok_or(FrontError::RequestLineInvalid)?;
    // A fragment is never part of a request target; URI parsers silently drop it
    // (and the query after it), so the path keyward would see is not what was sent.
    if request_line.contains(&b'#') {
        return Err(FrontError::PathNonCanonical);
    }
    // The first Content-Length value and how many there were; more than one is refused.
    let mut content_length: Option<&[u8]> = None;
    let mut content_lengths = 0usize;
    let mut transfer_encodings = 0usize;
    let mut chunked = false;
    let mut padded_credential = false;
    for line in lines {
        let line = line.strip_suffix(b"\r").ok_or(FrontError::HeaderInvalid)?;
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(FrontError::HeaderInvalid);
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or(FrontError::HeaderInvalid)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|b| is_token(*b)) {
            return Err(FrontError::HeaderInvalid);
        }
        if value
            .iter()
            .any(|b| *b == 0 || *b == b'\r' || (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(FrontError::HeaderInvalid);
        }
        if is_credential_header(name) {
            let after_space = value.strip_prefix(b" ").unwrap_or(value);
            padded_credential |= after_space != trim_ows(after_space);
        }
        let value = trim_ows(value);
        if name.eq_ignore_ascii_case(b"content-length") {
            content_lengths += 1;
            content_length.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encodings += 1;
            chunked = value.eq_ignore_ascii_case(b"chunked");
        }
    }
    if transfer_encodings > 0 {
        if transfer_encodings > 1 || !chunked || content_lengths > 0 || version == b"HTTP/1.0" {
            return Err(FrontError::FramingAmbiguous);
        }
        return Ok((Framing::Chunked, padded_credential));
    }
    let framing = match (content_lengths, content_length) {
        (0, _) => Framing::None,
        (1, Some(value)) => {
            let digits_ok =
                !value.is_empty() && value.len() <= 18 && value.iter().all(u8::is_ascii_digit);
            if !digits_ok {
                return Err(FrontError::FramingAmbiguous);
            }
            let text = std::str::from_utf8(value).map_err(|_| FrontError::FramingAmbiguous)?;
            text.parse()
                .map(Framing::Length)
                .map_err(|_| FrontError::FramingAmbiguous)?
        }
        _ => return Err(FrontError::FramingAmbiguous),
    };
    Ok((framing, padded_credential))
}

/// Headers that carry a keyward token.
fn is_credential_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authorization")
        || keyward_venues::VenueId::ALL
            .iter()
            .any(|venue| name.eq_ignore_ascii_case(venue.adapter().key_header().as_bytes()))
}

/// Which line a head with a bare LF breaks first.
fn first_bare_lf(head: &[u8]) -> FrontError {
    let first_lf = head.iter().position(|b| *b == b'\n').unwrap_or(0);
    if first_lf == 0 || head[first_lf - 1] != b'\r' {
        FrontError::RequestLineInvalid
    } else {
        FrontError::HeaderInvalid
    }
}

/// `METHOD SP target SP HTTP/1.x`, returning the version.
fn request_line_version(line: &[u8]) -> Option<&[u8]> {
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    let well_formed = parts.next().is_none()
        && !method.is_empty()
        && method.iter().all(|b| is_token(*b))
        && !target.is_empty()
        && target.iter().all(|b| b.is_ascii_graphic());
    (well_formed && (version == b"HTTP/1.1" || version == b"HTTP/1.0")).then_some(version)
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// A connection whose reads pass through a [`Scanner`].
#[derive(Debug)]
pub struct Guarded<IO> {
    io: IO,
    scanner: Scanner,
}

impl<IO> Guarded<IO> {
    /// Wraps `io`, reporting into `verdicts`.
    pub fn new(io: IO, verdicts: Verdicts) -> Self {
        Self {
            io,
            scanner: Scanner::new(verdicts),
        }
    }

    /// Lets go of the head buffer kept between requests, for a connection that went
    /// quiet (it is grown again for the next head).
    pub fn release_idle_buffers(&mut self) {
        if matches!(self.scanner.state, State::Head) && self.scanner.line.is_empty() {
            self.scanner.line = Vec::new();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.scanner.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts_of(chunks: &[&[u8]]) -> (Vec<Verdict>, Option<FrontError>) {
        let verdicts = Verdicts::default();
        let mut scanner = Scanner::new(verdicts.clone());
        for chunk in chunks {
            scanner.feed(chunk);
        }
        let mut out = Vec::new();
        while !verdicts.0.lock().unwrap().queue.is_empty() {
            out.push(verdicts.next());
        }
        (out, verdicts.poisoned())
    }

    fn one(bytes: &[u8]) -> Verdict {
        verdicts_of(&[bytes]).0.remove(0)
    }

    #[test]
    fn clean_requests_keep_in_step_across_bodies_and_byte_splits() {
        let stream = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /d HTTP/1.1\r\n\r\n";
        let clean = Verdict::Clean {
            padded_credential: false,
        };
        let whole = verdicts_of(&[stream]);
        assert_eq!(whole.0, vec![clean.clone(); 4]);
        assert_eq!(whole.1, None);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(verdicts_of(&bytewise).0, vec![clean; 4]);
    }

    #[test]
    fn ambiguous_framing_is_refused_and_poisons_the_connection() {
        let cases: &[(&[u8], FrontError)] = &[
            (b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: 150\r\nContent-Length: 0\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: 150\r\nContent-Length: 150\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: 150, 150\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: +150\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nContent-Length: 0x96\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", FrontError::FramingAmbiguous),
            (b"POST / HTTP/1.1\r\nX-Foo: bar\r\n Transfer-Encoding: chunked\r\n\r\n", FrontError::HeaderInvalid),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", FrontError::HeaderInvalid),
            (b"POST / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", FrontError::HeaderInvalid),
            (b"POST / HTTP/1.1\nHost: x\nContent-Length: 1\n\nx", FrontError::RequestLineInvalid),
            (b"POST / HTTP/1.1\r\nHost: x\nContent-Length: 1\r\n\r\nx", FrontError::HeaderInvalid),
            (b"GET /api/v3/account\r\n\r\n", FrontError::RequestLineInvalid),
            (b"GET  / HTTP/1.1\r\n\r\n", FrontError::RequestLineInvalid),
        ];
        for (bytes, reason) in cases {
            let (verdicts, poisoned) = verdicts_of(&[bytes]);
            assert_eq!(
                verdicts,
                vec![Verdict::Refuse(reason.clone())],
                "{}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(poisoned.as_ref(), Some(reason));
        }
    }

    #[test]
    fn the_head_buffer_is_reused_but_a_large_one_is_let_go() {
        let verdicts = Verdicts::default();
        let mut scanner = Scanner::new(verdicts.clone());
        scanner.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        let kept = scanner.line.capacity();
        assert!(kept > 0 && scanner.line.is_empty());
        let large = format!("GET /b HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(8 * 1024));
        scanner.feed(large.as_bytes());
        assert_eq!(scanner.line.capacity(), 0);
        // The next head is judged on its own bytes, not on what the buffer held.
        scanner.feed(b"POST /c HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n");
        let clean = Verdict::Clean {
            padded_credential: false,
        };
        assert_eq!(verdicts.next(), clean);
        assert_eq!(verdicts.next(), clean);
        assert_eq!(
            verdicts.next(),
            Verdict::Refuse(FrontError::FramingAmbiguous)
        );
    }

    #[test]
    fn chunk_size_overflow_poisons() {
        let (verdicts, poisoned) =
            verdicts_of(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nA\r\n0\r\n\r\n"]);
        assert_eq!(
            verdicts,
            vec![Verdict::Clean {
                padded_credential: false
            }]
        );
        assert_eq!(poisoned, Some(FrontError::FramingAmbiguous));
    }

    #[test]
    fn a_smuggled_second_request_is_never_clean() {
        let smuggle = b"POST /api/v3/order HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /sapi/v1/capital/withdraw/apply HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let verdicts = Verdicts::default();
        let mut scanner = Scanner::new(verdicts.clone());
        scanner.feed(smuggle);
        assert!(matches!(verdicts.next(), Verdict::Refuse(_)));
        assert!(
            matches!(verdicts.next(), Verdict::Refuse(_)),
            "everything after is refused"
        );
        assert_eq!(
            one(b"GET / HTTP/1.1\r\n\r\n"),
            Verdict::Clean {
                padded_credential: false
            }
        );
    }

    #[test]
    fn padded_credentials_and_fragments_are_seen() {
        let padded = |line: &str| one(format!("GET / HTTP/1.1\r\n{line}\r\n\r\n").as_bytes());
        let clean = |padded_credential| Verdict::Clean { padded_credential };
        assert_eq!(padded("X-MBX-APIKEY: kw_a_x"), clean(false));
        assert_eq!(padded("X-MBX-APIKEY:kw_a_x"), clean(false));
        assert_eq!(padded("X-MBX-APIKEY: kw_a_x "), clean(true));
        assert_eq!(padded("x-mbx-apikey:  kw_a_x"), clean(true));
        assert_eq!(padded("Authorization: Bearer kw_a_x\t"), clean(true));
        assert_eq!(padded("X-Other: value "), clean(false));
        assert_eq!(
            one(b"POST /api/v3/order#/../../sapi HTTP/1.1\r\n\r\n"),
            Verdict::Refuse(FrontError::PathNonCanonical)
        );
    }
}
