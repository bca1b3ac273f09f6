//! Bot-side clients that can send exactly the bytes a case demands: raw HTTP/1.1 over
//! TLS, and a frame-level HTTP/2 writer (ordinary clients refuse to send malformed
//! requests, which is the point of several attack cases).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long to wait for a response before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// A TLS client trusting one CA.
#[derive(Debug, Clone)]
pub struct BotClient {
    addr: SocketAddr,
    ca: Arc<ClientConfig>,
}

/// An HTTP/1 response, and whether the server closed the connection after it.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code (0 if the connection closed without one).
    pub status: u16,
    /// Header fields, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
    /// True if the server closed the connection after answering.
    pub closed: bool,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What happened to an HTTP/2 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2Outcome {
    /// A response with this status.
    Status(u16),
    /// The stream was reset with this error code.
    Reset(u32),
    /// The connection was torn down with GOAWAY (error code).
    GoAway(u32),
    /// The connection closed without an answer.
    Closed,
}

impl BotClient {
    /// A client for keyward at `addr` trusting `ca`.
    pub fn new(addr: SocketAddr, ca: &Path) -> Self {
        let config = keyward_certs::client_config(Some(ca)).expect("client TLS config");
        Self { addr, ca: config }
    }

    /// A client that presents the client certificate `cert` with its `key` (mTLS).
    pub fn with_identity(addr: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in keyward_certs::load_certs(ca).expect("CA") {
            roots.add(cert).expect("CA certificate");
        }
        let config = ClientConfig::builder_with_provider(keyward_certs::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                keyward_certs::load_certs(cert).expect("client certificate"),
                keyward_certs::load_key(key).expect("client key"),
            )
            .expect("client identity");
        Self {
            addr,
            ca: Arc::new(config),
        }
    }

    /// Opens a TLS connection offering `alpn`.
    pub async fn connect(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        self.try_connect(alpn)
            .await
            .expect("TLS handshake with keyward")
    }

    /// Opens a TLS connection offering `alpn`, or says why the handshake failed.
    pub async fn try_connect(&self, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        let mut config = (*self.ca).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    /// Opens a kept-alive HTTP/1.1 connection for several requests.
    pub async fn keep_alive(&self) -> Connection {
        self.try_keep_alive()
            .await
            .expect("TLS handshake with keyward")
    }

    /// [`BotClient::keep_alive`], or why the connection could not be opened.
    pub async fn try_keep_alive(&self) -> std::io::Result<Connection> {
        Ok(Connection {
            stream: self.try_connect(&[b"http/1.1"]).await?,
        })
    }

    /// Sends exact bytes over HTTP/1.1 and reads one response.
    pub async fn raw(&self, bytes: &[u8]) -> Response {
        let mut stream = self.connect(&[b"http/1.1"]).await;
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        read_response(&mut stream).await
    }

    /// Sends a request built from parts, with a correct Content-Length.
    pub async fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Response {
        self.raw(&build(method, target, headers, body)).await
    }

    /// Sends one HTTP/2 request, headers (pseudo-headers included) exactly as given.
    pub async fn h2(&self, headers: &[(String, String)], body: Option<&[u8]>) -> H2Outcome {
        let mut stream = self.connect(&[b"h2"]).await;
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        frame(&mut out, 0x4, 0, 0, &[]);
        let pairs: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let block = hpack::Encoder::new().encode(pairs);
        let end_stream = if body.is_none() { 0x1 } else { 0 };
        frame(&mut out, 0x1, 0x4 | end_stream, 1, &block);
        if let Some(body) = body {
            frame(&mut out, 0x0, 0x1, 1, body);
        }
        if stream.write_all(&out).await.is_err() {
            return H2Outcome::Closed;
        }
        let mut decoder = hpack::Decoder::new();
        let read = async {
            loop {
                let Some(got) = read_frame(&mut stream).await else {
                    return H2Outcome::Closed;
                };
                match got.kind {
                    0x4 if got.flags & 0x1 == 0 => {
                        let mut ack = Vec::new();
                        frame(&mut ack, 0x4, 0x1, 0, &[]);
                        let _ = stream.write_all(&ack).await;
                    }
                    0x1 if got.stream == 1 => {
                        let decoded = decoder.decode(&got.payload).unwrap_or_default();
                        let status = decoded
                            .iter()
                            .find(|(n, _)| n == b":status")
                            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
                        if let Some(status) = status {
                            return H2Outcome::Status(status);
                        }
                    }
                    0x3 if got.stream == 1 => {
                        return H2Outcome::Reset(got.error_code().unwrap_or(0));
                    }
                    0x7 => return H2Outcome::GoAway(got.error_code().unwrap_or(0)),
                    _ => {}
                }
            }
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .unwrap_or(H2Outcome::Closed)
    }
}

/// One HTTP/1.1 connection reused for several requests.
#[derive(Debug)]
pub struct Connection {
    stream: TlsStream<TcpStream>,
}

impl Connection {
    /// The certificate keyward presented on this connection (DER).
    pub fn server_certificate(&self) -> Vec<u8> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.to_vec())
            .unwrap_or_default()
    }

    /// Sends a request and reads its response, leaving the connection open.
    pub async fn send(&mut self, bytes: &[u8]) -> Response {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
        read_one(&mut self.stream, false).await
    }

    /// Writes bytes without waiting for an answer (part of a request, say).
    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Reads the next response, leaving the connection open.
    pub async fn read(&mut self) -> Response {
        read_one(&mut self.stream, false).await
    }

    /// Whether the server closes the connection within `limit` (sending nothing
    /// first).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut probe = [0u8; 1];
        matches!(
            tokio::time::timeout(limit, self.stream.read(&mut probe)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// Appends one HTTP/2 frame to `out`.
pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let length = u32::try_from(payload.len()).expect("frame length");
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// One HTTP/2 frame as read.
#[derive(Debug, Clone)]
pub struct H2Frame {
    /// Frame type (0 DATA, 1 HEADERS, 3 RST_STREAM, 4 SETTINGS, 6 PING, 7 GOAWAY, ...).
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl H2Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            0x3 => 0,
            0x7 => 4,
            _ => return None,
        };
        self.payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Reads one HTTP/2 frame; `None` when the connection ends first.
pub async fn read_frame<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<H2Frame> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.ok()?;
    let length =
        (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.ok()?;
    Some(H2Frame {
        kind: header[3],
        flags: header[4],
        stream: u32::from_be_bytes([header[5] & 0x7f, header[6], header[7], header[8]]),
        payload,
    })
}

/// `GET path` on keyward's plain-HTTP admin listener.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Response {
    admin_request(addr, "GET", path).await
}

/// `method path` (no body) on keyward's plain-HTTP admin listener.
pub async fn admin_request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("admin listener");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(request.as_bytes()).await;
    read_response(&mut stream).await
}

/// Sends exact bytes over plain HTTP to a TCP listener and reads one response.
pub async fn plain_raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("plain listener");
    let _ = stream.write_all(bytes).await;
    read_response(&mut stream).await
}

/// Sends exact bytes over plain HTTP to a Unix socket and reads one response.
pub async fn unix_raw(path: &Path, bytes: &[u8]) -> Response {
    let mut stream = tokio::net::UnixStream::connect(path)
        .await
        .expect("Unix socket");
    let _ = stream.write_all(bytes).await;
    read_response(&mut stream).await
}

/// The headers a Binance bot sends: Host (keyward's listener), its token in
/// `X-MBX-APIKEY`, and a form content type when it sends a body.
pub fn bot_headers(port: u16, token: &str, form: bool) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Host".to_owned(), format!("localhost:{port}")),
        ("X-MBX-APIKEY".to_owned(), token.to_owned()),
    ];
    if form {
        headers.push((
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ));
    }
    headers
}

/// An HTTP/1.1 request with a Content-Length when there is a body.
pub fn build(method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one HTTP/1.1 response, then whether the server closes the connection.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Response {
    read_one(stream, true).await
}

async fn read_one<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, probe_close: bool) -> Response {
    let mut buffer = Vec::new();
    let head_end = loop {
        // Skip interim responses (100 Continue) in front of the final one.
        if buffer.starts_with(b"HTTP/1.1 1")
            && let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n")
        {
            buffer.drain(..i + 4);
            continue;
        }
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
            _ => break None,
        }
    };
    let Some(head_end) = head_end else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
            closed: true,
        };
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buffer[head_end..].to_vec();
    let length: Option<usize> = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok());
    let mut closed = false;
    if let Some(length) = length {
        while body.len() < length {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                _ => {
                    closed = true;
                    break;
                }
            }
        }
    }
    if !closed && probe_close {
        let mut probe = [0u8; 1];
        closed = matches!(
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut probe)).await,
            Ok(Ok(0) | Err(_))
        );
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        closed,
    }
}
