//! A WebSocket client for tests: TLS trusting one CA, the opening handshake written
//! and checked by hand (RFC 6455, the accept key with ring's SHA-1, as the mock
//! answers it), frames by tungstenite; JSON requests matched to their answers by
//! `id`, other frames (user-data events) kept in order for [`WsClient::event`] and
//! [`WsClient::wait_for`]. And the venues' WebSocket signatures (Binance's per
//! message, Bybit's `auth`, OKX's `login`, Coinbase's JWT), computed independently of
//! keyward's signer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

use crate::client::{BotClient, Response};
use crate::hmac_sha256_hex;

/// How long to wait for a frame before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// An open WebSocket connection.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    /// Frames received while waiting for something else, oldest first.
    kept: VecDeque<Value>,
}

/// A Binance WebSocket API `session.logon` as a client sends it to keyward: the
/// bot's token where the API key goes, and a timestamp and signature keyward
/// discards.
pub fn binance_logon(id: u64, token: &str) -> Value {
    serde_json::json!({"id": id, "method": "session.logon",
        "params": {"apiKey": token, "timestamp": 1, "signature": "x"}})
}

impl WsClient {
    /// Opens `path` on the TLS server at `addr` trusting `ca`, `headers` added to the
    /// upgrade request. Panics unless the server switches protocols.
    pub async fn connect(
        addr: SocketAddr,
        ca: &Path,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Self {
        match Self::try_connect(addr, ca, path, headers).await {
            Ok(client) => client,
            Err(refused) => panic!("WebSocket upgrade of {path} refused: {refused:?}"),
        }
    }

    /// [`WsClient::connect`], or the server's answer if it was not `101 Switching
    /// Protocols` with the right `Sec-WebSocket-Accept`.
    pub async fn try_connect(
        addr: SocketAddr,
        ca: &Path,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, Response> {
        Self::try_connect_as(BotClient::new(addr, ca), addr, path, headers).await
    }

    /// [`WsClient::try_connect`] over a connection `client` makes (one presenting
    /// a client certificate, say).
    pub async fn try_connect_as(
        client: BotClient,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, Response> {
        let mut stream = client.connect(&[b"http/1.1"]).await;
        let nonce: [u8; 16] = std::array::from_fn(|i| u8::try_from(i * 7 + 3).unwrap_or(0));
        let key = base64::engine::general_purpose::STANDARD.encode(nonce);
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            addr.port()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the upgrade");
        let mut buffer = Vec::new();
        let end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                _ => {
                    let head = String::from_utf8_lossy(&buffer).into_owned();
                    return Err(refusal(&head, ""));
                }
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        let rest = buffer[end..].to_vec();
        let response = refusal(&head, &String::from_utf8_lossy(&rest));
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
        );
        let expected = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        if response.status != 101
            || response.header("sec-websocket-accept") != Some(expected.as_str())
        {
            return Err(response);
        }
        let ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
        Ok(Self {
            ws,
            kept: VecDeque::new(),
        })
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send a text frame");
    }

    /// The next text frame, as JSON: `None` if the connection closed or nothing came
    /// within the read timeout.
    pub async fn next_json(&mut self) -> Option<Value> {
        if let Some(kept) = self.kept.pop_front() {
            return Some(kept);
        }
        self.receive().await
    }

    async fn receive(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(READ_TIMEOUT, self.ws.next())
                .await
                .ok()??;
            match message.ok()? {
                // A text frame that is not JSON (OKX's `pong`) is kept as a string.
                Message::Text(text) => {
                    return Some(
                        serde_json::from_str(text.as_str())
                            .unwrap_or_else(|_| Value::String(text.as_str().to_owned())),
                    );
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Sends `request` as one text frame and returns the answer with its `id`;
    /// frames that come first are kept for [`WsClient::event`].
    pub async fn request(&mut self, request: &Value) -> Value {
        self.send_text(&request.to_string()).await;
        self.answer_to(&request["id"]).await
    }

    /// The answer with `id` (sent before), other frames kept.
    pub async fn answer_to(&mut self, id: &Value) -> Value {
        loop {
            let frame = self
                .receive()
                .await
                .unwrap_or_else(|| panic!("no answer to request {id}"));
            if frame.get("id") == Some(id) {
                return frame;
            }
            self.kept.push_back(frame);
        }
    }

    /// The first frame without an `id` (an event) that `wanted` accepts, kept ones
    /// first; the frames passed over are dropped. Panics if none comes.
    pub async fn event(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        while let Some(frame) = self.kept.pop_front() {
            if frame.get("id").is_none() && wanted(&frame) {
                return frame;
            }
        }
        loop {
            let frame = self.receive().await.expect("an event");
            if frame.get("id").is_none() && wanted(&frame) {
                return frame;
            }
        }
    }

    /// The first frame `wanted` accepts (an answer or an event: Bybit and OKX name
    /// their ids differently), kept ones first; the frames passed over stay kept, in
    /// order. Panics if none comes within the read timeout.
    pub async fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.kept.iter().position(&wanted) {
            return self.kept.remove(index).unwrap_or_default();
        }
        loop {
            let Some(frame) = self.receive().await else {
                panic!(
                    "the frame waited for did not come (the connection closed or went quiet); kept: {:?}",
                    self.kept
                );
            };
            if wanted(&frame) {
                return frame;
            }
            self.kept.push_back(frame);
        }
    }

    /// Sends `request` as one text frame and returns the first frame `wanted`
    /// accepts ([`WsClient::wait_for`]).
    pub async fn exchange(&mut self, request: &Value, wanted: impl Fn(&Value) -> bool) -> Value {
        self.send_text(&request.to_string()).await;
        self.wait_for(wanted).await
    }

    /// Frames received so far and not yet taken, oldest first (without waiting).
    pub fn kept(&self) -> Vec<Value> {
        self.kept.iter().cloned().collect()
    }

    /// Closes the connection (a close frame, then the close handshake).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Sends any frame (fragments, pings, binary), unchecked.
    pub async fn send_frame(&mut self, message: Message) {
        self.ws.send(message).await.expect("send a frame");
    }

    /// The close frame's code, if the server closed the connection within `wait`
    /// (1006 when it dropped it without one); `None` if it stayed open.
    pub async fn closed_with(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return Some(1006),
                Err(_) => return None,
            }
        }
    }
}

/// The lines of a valid upgrade request for `path` (without the blank line that
/// ends it), for tests that spoil one.
pub fn upgrade_head(path: &str, port: u16) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
}

/// Sends `request` (exact bytes) and returns the whole answer as text: for upgrades
/// the server must refuse.
pub async fn raw_upgrade(client: &BotClient, request: &str) -> String {
    let mut stream = client.connect(&[b"http/1.1"]).await;
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the upgrade");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn refusal(head: &str, body: &str) -> Response {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
        closed: false,
    }
}

/// `params` (a JSON object) signed for Binance's WebSocket API: `apiKey` and
/// `timestamp` added, then `signature`, the hex HMAC-SHA256 of every parameter but
/// `signature`, sorted by name, joined `name=value` with `&`, each value as sent (a
/// string's content, a number as written).
pub fn binance_signed(params: Value, api_key: &str, secret: &str, timestamp_ms: u64) -> Value {
    let Value::Object(mut params) = params else {
        panic!("params are an object: {params}");
    };
    params.insert("apiKey".to_owned(), api_key.into());
    params.insert("timestamp".to_owned(), timestamp_ms.into());
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    pairs.sort();
    let payload: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let signature = hmac_sha256_hex(secret.as_bytes(), payload.join("&").as_bytes());
    params.insert("signature".to_owned(), signature.into());
    Value::Object(params)
}

/// Bybit's WebSocket `auth` message (private stream and order entry): `[apiKey,
/// expires, signature]`, the signature the hex HMAC-SHA256 of `"GET/realtime" +
/// expires` (expires in ms, sent as a number).
pub fn bybit_auth(api_key: &str, secret: &str, expires_ms: u64) -> Value {
    let signature = hmac_sha256_hex(
        secret.as_bytes(),
        format!("GET/realtime{expires_ms}").as_bytes(),
    );
    serde_json::json!({"req_id": "auth", "op": "auth", "args": [api_key, expires_ms, signature]})
}

/// OKX's WebSocket `login` message: `apiKey`, `passphrase`, `timestamp` (Unix
/// seconds, as a string) and `sign`, the base64 HMAC-SHA256 of `timestamp + "GET" +
/// "/users/self/verify"`.
pub fn okx_login(api_key: &str, passphrase: &str, secret: &str, timestamp_s: u64) -> Value {
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
        format!("{timestamp_s}GET/users/self/verify").as_bytes(),
    );
    let sign = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    serde_json::json!({"op": "login", "args": [{
        "apiKey": api_key, "passphrase": passphrase, "timestamp": timestamp_s.to_string(), "sign": sign
    }]})
}

/// A Coinbase WebSocket JWT as coinbase-advanced-py's `build_ws_jwt` writes one:
/// ES256 with the EC P-256 SEC1 key `pem` (raw r||s), header `alg`, `kid` = the key
/// name, a random `nonce` and `typ`; claims `sub` = the key name, `iss` "cdp", `nbf`
/// (Unix seconds) and `exp` = `nbf` + 120, and no `uri` (a WebSocket JWT names no
/// request).
pub fn coinbase_ws_jwt(key_name: &str, pem: &str, nbf_s: u64) -> String {
    coinbase_jwt(key_name, pem, nbf_s, None)
}

/// [`coinbase_ws_jwt`], or with `uri` ("METHOD host/path") the JWT of a REST request.
pub fn coinbase_jwt(key_name: &str, pem: &str, nbf_s: u64, uri: Option<&str>) -> String {
    use ring::rand::SecureRandom as _;
    let credential = keyward::credential::Credential::new(
        "coinbase",
        keyward::credential::KeyKind::EcP256,
        pem.as_bytes(),
    )
    .expect("an EC P-256 key");
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .expect("random nonce");
    let header = serde_json::json!({"alg": "ES256", "kid": key_name,
        "nonce": keyward_venues::hex(&nonce), "typ": "JWT"});
    let mut claims =
        serde_json::json!({"sub": key_name, "iss": "cdp", "nbf": nbf_s, "exp": nbf_s + 120});
    if let Some(uri) = uri {
        claims["uri"] = uri.into();
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signature = credential
        .sign_asymmetric(input.as_bytes())
        .expect("ES256 signature");
    format!("{input}.{}", b64.encode(signature))
}

/// Milliseconds since the epoch, for `timestamp`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}
