//! Slow and greedy clients, shared by the quick end-to-end tests and the soak bench:
//! oversized request heads, HTTP/2 stream floods (rapid reset, more concurrent
//! streams than advertised, endless CONTINUATION frames) written frame by frame,
//! slowloris on heads and bodies, and idle TLS connections. Each returns what the
//! server did, for the caller to judge.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::client::{BotClient, H2Frame, Response, frame, read_frame};

/// HTTP/2 frame type DATA.
pub const DATA: u8 = 0x0;
/// HTTP/2 frame type HEADERS.
pub const HEADERS: u8 = 0x1;
/// HTTP/2 frame type RST_STREAM.
pub const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
/// HTTP/2 flag END_STREAM.
pub const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
/// HTTP/2 flag END_HEADERS.
pub const END_HEADERS: u8 = 0x4;
/// RST_STREAM code CANCEL.
pub const CANCEL: u32 = 0x8;
/// RST_STREAM code REFUSED_STREAM.
pub const REFUSED_STREAM: u32 = 0x7;
/// GOAWAY code ENHANCE_YOUR_CALM.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// GOAWAY code PROTOCOL_ERROR.
pub const PROTOCOL_ERROR: u32 = 0x1;

/// What the server sent back on an HTTP/2 connection.
#[derive(Debug, Clone, Default)]
pub struct H2Report {
    /// Streams the client opened.
    pub opened: u32,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u32>,
    /// Streams the server reset, by error code.
    pub resets: BTreeMap<u32, u32>,
    /// The GOAWAY error code, if the server sent one.
    pub goaway: Option<u32>,
    /// True if the server closed the connection.
    pub closed: bool,
    /// From the first byte sent to the end of reading.
    pub elapsed: Duration,
}

/// A hand-driven HTTP/2 connection: the client sends exactly the frames asked for.
#[derive(Debug)]
pub struct H2Raw {
    stream: TlsStream<TcpStream>,
    encoder: HpackEncoder,
    decoder: HpackDecoder,
}

/// hpack's encoder holds a dynamic table, so one is kept per connection.
struct HpackEncoder(hpack::Encoder<'static>);
struct HpackDecoder(hpack::Decoder<'static>);

impl std::fmt::Debug for HpackEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HpackEncoder")
    }
}

impl std::fmt::Debug for HpackDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HpackDecoder")
    }
}

impl H2Raw {
    /// Connects with ALPN `h2` and sends the preface and an empty SETTINGS frame.
    pub async fn open(client: &BotClient) -> io::Result<Self> {
        let mut stream = client.try_connect(&[b"h2"]).await?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(io::Error::other("the server did not choose h2"));
        }
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        stream.write_all(&out).await?;
        Ok(Self {
            stream,
            encoder: HpackEncoder(hpack::Encoder::new()),
            decoder: HpackDecoder(hpack::Decoder::new()),
        })
    }

    /// An HPACK block for `headers` (pseudo-headers first, as given).
    pub fn block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        self.encoder
            .0
            .encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// Writes raw bytes (frames built with [`frame`]).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads frames into `report` until the server ends the connection, sends
    /// GOAWAY, or stays silent for `quiet`; answers SETTINGS and PING as a client
    /// must.
    pub async fn collect(&mut self, report: &mut H2Report, quiet: Duration) {
        loop {
            let got = match tokio::time::timeout(quiet, read_frame(&mut self.stream)).await {
                Err(_) => return,
                Ok(None) => {
                    report.closed = true;
                    return;
                }
                Ok(Some(got)) => got,
            };
            if self.note(report, &got).await {
                return;
            }
        }
    }

    /// Records one frame; true once the connection is over.
    async fn note(&mut self, report: &mut H2Report, got: &H2Frame) -> bool {
        match got.kind {
            SETTINGS if got.flags & ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, SETTINGS, ACK, 0, &[]);
                let _ = self.send(&ack).await;
            }
            PING if got.flags & ACK == 0 => {
                let mut pong = Vec::new();
                frame(&mut pong, PING, ACK, 0, &got.payload);
                let _ = self.send(&pong).await;
            }
            HEADERS => {
                let status = self
                    .decoder
                    .0
                    .decode(&got.payload)
                    .unwrap_or_default()
                    .iter()
                    .find(|(n, _)| n == b":status")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
                if let Some(status) = status {
                    *report.statuses.entry(status).or_default() += 1;
                }
            }
            RST_STREAM => {
                *report
                    .resets
                    .entry(got.error_code().unwrap_or(0))
                    .or_default() += 1;
            }
            GOAWAY => {
                report.goaway = got.error_code();
                return true;
            }
            _ => {}
        }
        false
    }
}

/// The header list of a bot's `GET /api/v3/account` over HTTP/2.
fn account_request<'a>(authority: &'a str, token: &'a str) -> [(&'a str, &'a str); 5] {
    [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", "/api/v3/account?timestamp=1&signature=x"),
        ("x-mbx-apikey", token),
    ]
}

/// The header list of a bot's form-encoded `POST /api/v3/order` over HTTP/2.
fn order_request<'a>(authority: &'a str, token: &'a str) -> [(&'a str, &'a str); 6] {
    [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", "/api/v3/order"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("x-mbx-apikey", token),
    ]
}

/// A bot that gives up: sends `POST /api/v3/order` with `body` on stream 1, waits
/// `patience`, then cancels the stream with RST_STREAM. Returns the connection,
/// still open.
pub async fn order_then_cancel(
    client: &BotClient,
    authority: &str,
    token: &str,
    body: &[u8],
    patience: Duration,
) -> io::Result<H2Raw> {
    let mut h2 = H2Raw::open(client).await?;
    let block = h2.block(&order_request(authority, token));
    let mut out = Vec::new();
    frame(&mut out, HEADERS, END_HEADERS, 1, &block);
    frame(&mut out, DATA, END_STREAM, 1, body);
    h2.send(&out).await?;
    tokio::time::sleep(patience).await;
    let mut reset = Vec::new();
    frame(&mut reset, RST_STREAM, 0, 1, &CANCEL.to_be_bytes());
    h2.send(&reset).await?;
    Ok(h2)
}

/// Rapid reset (CVE-2023-44487): `streams` requests on one connection, each
/// cancelled with RST_STREAM right after its HEADERS, written in batches of a
/// hundred without waiting for anything.
pub async fn rapid_reset(
    client: &BotClient,
    authority: &str,
    token: &str,
    streams: u32,
) -> io::Result<H2Report> {
    let mut h2 = H2Raw::open(client).await?;
    let started = Instant::now();
    let mut report = H2Report::default();
    let request = account_request(authority, token);
    let mut id = 1u32;
    'sending: while report.opened < streams {
        let mut batch = Vec::new();
        for _ in 0..100.min(streams - report.opened) {
            let block = h2.block(&request);
            frame(&mut batch, HEADERS, END_STREAM | END_HEADERS, id, &block);
            frame(&mut batch, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
            id += 2;
            report.opened += 1;
        }
        if h2.send(&batch).await.is_err() {
            break 'sending;
        }
        // Read what is already there, so the server's writes never block on us.
        h2.collect(&mut report, Duration::from_millis(1)).await;
        if report.goaway.is_some() || report.closed {
            break 'sending;
        }
    }
    h2.collect(&mut report, Duration::from_secs(2)).await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// `streams` order requests opened at once on one connection, each with its
/// HEADERS but no body yet, so that every one stays open: more than the server's
/// advertised concurrency limit. Then reads for `wait` (the server's body deadline
/// answers the ones it accepted).
pub async fn concurrent_streams(
    client: &BotClient,
    authority: &str,
    token: &str,
    streams: u32,
    wait: Duration,
) -> io::Result<H2Report> {
    let mut h2 = H2Raw::open(client).await?;
    let started = Instant::now();
    let mut report = H2Report::default();
    let request = order_request(authority, token);
    let mut out = Vec::new();
    for i in 0..streams {
        let block = h2.block(&request);
        frame(&mut out, HEADERS, END_HEADERS, 2 * i + 1, &block);
        report.opened += 1;
    }
    h2.send(&out).await?;
    h2.collect(&mut report, wait).await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// CONTINUATION flood: a HEADERS frame without END_HEADERS, then `frames`
/// CONTINUATION frames of `size` bytes of header fields each, never ending the
/// block (the server can decode none of it until the block ends, so it must cap
/// what it buffers).
pub async fn continuation_flood(
    client: &BotClient,
    authority: &str,
    frames: u32,
    size: usize,
) -> io::Result<H2Report> {
    let mut h2 = H2Raw::open(client).await?;
    let started = Instant::now();
    let mut report = H2Report {
        opened: 1,
        ..H2Report::default()
    };
    let block = h2.block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", "/api/v3/account"),
    ]);
    let mut out = Vec::new();
    frame(&mut out, HEADERS, 0, 1, &block);
    h2.send(&out).await?;
    // Literal header fields without indexing, each `x-flood: aaa...`.
    let mut fragment = Vec::with_capacity(size);
    while fragment.len() + 200 <= size.max(200) {
        fragment.extend_from_slice(&[0x00, 7]);
        fragment.extend_from_slice(b"x-flood");
        fragment.push(127);
        fragment.push(62); // 127 + 62 = 189 bytes of value
        fragment.extend_from_slice(&[b'a'; 189]);
    }
    for _ in 0..frames {
        let mut out = Vec::new();
        frame(&mut out, CONTINUATION, 0, 1, &fragment);
        if h2.send(&out).await.is_err() {
            break;
        }
        h2.collect(&mut report, Duration::from_micros(1)).await;
        if report.goaway.is_some() || report.closed {
            break;
        }
    }
    h2.collect(&mut report, Duration::from_secs(2)).await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// One request whose single header field value is `size` bytes, over HTTP/2.
pub async fn h2_oversized_header(
    client: &BotClient,
    authority: &str,
    token: &str,
    size: usize,
) -> io::Result<H2Report> {
    let mut h2 = H2Raw::open(client).await?;
    let started = Instant::now();
    let mut report = H2Report {
        opened: 1,
        ..H2Report::default()
    };
    let big = "b".repeat(size);
    let mut headers = account_request(authority, token).to_vec();
    headers.push(("x-big", big.as_str()));
    let block = h2.block(&headers);
    // Split over CONTINUATION frames: the default largest frame is 16 KiB.
    let mut chunks = block.chunks(16 * 1024).peekable();
    let mut out = Vec::new();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let end = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        if first {
            frame(&mut out, HEADERS, END_STREAM | end, 1, chunk);
            first = false;
        } else {
            frame(&mut out, CONTINUATION, end, 1, chunk);
        }
    }
    let _ = h2.send(&out).await;
    h2.collect(&mut report, Duration::from_secs(3)).await;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// `GET /api/v3/account` with one header field whose value is `size` bytes.
pub async fn oversized_header(client: &BotClient, port: u16, token: &str, size: usize) -> Response {
    let head = format!(
        "GET /api/v3/account HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\nX-Big: {}\r\n\r\n",
        "b".repeat(size)
    );
    raw_tolerant(client, head.as_bytes()).await
}

/// `GET /api/v3/account` with `count` small header fields.
pub async fn many_headers(client: &BotClient, port: u16, token: &str, count: usize) -> Response {
    let mut head = format!(
        "GET /api/v3/account HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\n"
    );
    for i in 0..count {
        head.push_str(&format!("X-Many-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    raw_tolerant(client, head.as_bytes()).await
}

/// Sends `bytes` and reads the answer, also when the server answers and closes
/// before taking all of them (writing and reading at once).
async fn raw_tolerant(client: &BotClient, bytes: &[u8]) -> Response {
    let Ok(stream) = client.try_connect(&[b"http/1.1"]).await else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
            closed: true,
        };
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = async {
        let _ = writer.write_all(bytes).await;
        let _ = writer.flush().await;
    };
    let reading = crate::client::read_response(&mut reader);
    let ((), response) = tokio::join!(writing, reading);
    response
}

/// What became of a batch of slow or idle connections.
#[derive(Debug, Clone, Default)]
pub struct Trickled {
    /// Connections whose TLS handshake completed.
    pub connected: u32,
    /// Connections that failed to connect or handshake.
    pub refused: u32,
    /// Connections the server closed, with how long after connecting.
    pub closed_after: Vec<Duration>,
    /// Connections still open when the client gave up.
    pub still_open: u32,
    /// Status codes the server answered with before closing.
    pub statuses: BTreeMap<u16, u32>,
}

impl Trickled {
    /// The longest a closed connection stayed open.
    pub fn longest(&self) -> Duration {
        self.closed_after.iter().max().copied().unwrap_or_default()
    }

    /// Adds `one` to these.
    pub fn merge(&mut self, one: Self) {
        self.connected += one.connected;
        self.refused += one.refused;
        self.closed_after.extend(one.closed_after);
        self.still_open += one.still_open;
        for (status, n) in one.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }
}

/// How a slow client misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slowness {
    /// A request head that never ends, a byte every `every`.
    Head,
    /// A complete head announcing a body that comes a byte every `every`.
    Body,
    /// Nothing after the TLS handshake (HTTP/1.1).
    IdleHttp1,
    /// The HTTP/2 preface and SETTINGS, then nothing.
    IdleHttp2,
}

/// Takes the complete frames off the front of `received`; returns the replies a
/// client owes: an ACK for each SETTINGS and each PING (and nothing for frames that
/// are themselves ACKs, which a server would take as a protocol error).
fn replies_to(received: &mut Vec<u8>) -> Vec<u8> {
    let mut replies = Vec::new();
    loop {
        let Some(header) = received.get(..9) else {
            return replies;
        };
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        if received.len() < 9 + length {
            return replies;
        }
        let (kind, flags) = (header[3], header[4]);
        let payload = received[9..9 + length].to_vec();
        match kind {
            SETTINGS if flags & ACK == 0 => frame(&mut replies, SETTINGS, ACK, 0, &[]),
            PING if flags & ACK == 0 => frame(&mut replies, PING, ACK, 0, &payload),
            _ => {}
        }
        received.drain(..9 + length);
    }
}

/// `connections` slow clients at once, each sending a byte every `every` (when it
/// trickles) and giving up after `hold`.
pub async fn trickle(
    client: &BotClient,
    port: u16,
    token: &str,
    slowness: Slowness,
    connections: u32,
    every: Duration,
    hold: Duration,
) -> Trickled {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let client = client.clone();
        let token = token.to_owned();
        tasks.spawn(async move { trickle_one(&client, port, &token, slowness, every, hold).await });
    }
    let mut all = Trickled::default();
    while let Some(one) = tasks.join_next().await {
        if let Ok(one) = one {
            all.merge(one);
        }
    }
    all
}

async fn trickle_one(
    client: &BotClient,
    port: u16,
    token: &str,
    slowness: Slowness,
    every: Duration,
    hold: Duration,
) -> Trickled {
    let mut result = Trickled::default();
    let alpn: &[&[u8]] = if slowness == Slowness::IdleHttp2 {
        &[b"h2"]
    } else {
        &[b"http/1.1"]
    };
    let connecting = tokio::time::timeout(hold, client.try_connect(alpn)).await;
    let Ok(Ok(mut stream)) = connecting else {
        result.refused = 1;
        return result;
    };
    result.connected = 1;
    let connected = Instant::now();
    let opening: Vec<u8> = match slowness {
        Slowness::Head => {
            format!("GET /api/v3/account HTTP/1.1\r\nHost: localhost:{port}\r\n").into_bytes()
        }
        Slowness::Body => format!(
            "POST /api/v3/order HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 150\r\n\r\n"
        )
        .into_bytes(),
        Slowness::IdleHttp1 => Vec::new(),
        Slowness::IdleHttp2 => {
            let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            frame(&mut out, SETTINGS, 0, 0, &[]);
            out
        }
    };
    let _ = stream.write_all(&opening).await;
    let _ = stream.flush().await;
    let mut received = Vec::new();
    let trickles = matches!(slowness, Slowness::Head | Slowness::Body);
    while connected.elapsed() < hold {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(every, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => {
                result.closed_after.push(connected.elapsed());
                if let Some(status) = status_of(&received) {
                    *result.statuses.entry(status).or_default() += 1;
                }
                return result;
            }
            Ok(Ok(n)) => {
                received.extend_from_slice(&chunk[..n]);
                if slowness == Slowness::IdleHttp2 {
                    // Acknowledge the server's SETTINGS and PINGs, as a live client's
                    // HTTP/2 stack does while the application sends nothing.
                    let replies = replies_to(&mut received);
                    let _ = stream.write_all(&replies).await;
                }
            }
            Err(_) if trickles => {
                let byte: &[u8] = if slowness == Slowness::Head {
                    b"X"
                } else {
                    b"s"
                };
                let _ = stream.write_all(byte).await;
                let _ = stream.flush().await;
            }
            Err(_) => {}
        }
    }
    result.still_open = 1;
    result
}

/// The status of an HTTP/1 answer at the start of `bytes`.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
