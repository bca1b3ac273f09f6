//! A bot's WebSocket to keyward for the tests: the HTTP/1.1 upgrade written by hand
//! (so a test can send a bad one), then frames through tokio-tungstenite.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::client::BotClient;

/// An open WebSocket to keyward.
pub struct BotSocket {
    socket: WebSocketStream<TlsStream<TcpStream>>,
}

impl std::fmt::Debug for BotSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotSocket")
    }
}

/// The handshake lines of a valid upgrade to `path` (before the blank line).
pub fn upgrade_head(path: &str, port: u16) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
}

/// Sends `head` (complete, with its blank line) and returns keyward's response head
/// and the open socket when it answered 101.
pub async fn open(client: &BotClient, head: &str) -> (String, Option<BotSocket>) {
    let mut stream = client.connect(&[b"http/1.1"]).await;
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut byte = [0_u8; 1];
    while !received.ends_with(b"\r\n\r\n") && received.len() < 64 * 1024 {
        match stream.read(&mut byte).await {
            Ok(1) => received.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    if !text.starts_with("HTTP/1.1 101") {
        // The refusal's body follows its head.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        return (format!("{text}{}", String::from_utf8_lossy(&rest)), None);
    }
    let socket = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    (text, Some(BotSocket { socket }))
}

impl BotSocket {
    /// Sends a text message.
    pub async fn send(&mut self, text: &str) {
        self.socket
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// Sends any frame.
    pub async fn send_frame(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next text message, within `wait`.
    pub async fn next_text(&mut self, wait: Duration) -> Option<String> {
        loop {
            match tokio::time::timeout(wait, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => return Some(text.as_str().to_owned()),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                _ => return None,
            }
        }
    }

    /// The next text message as JSON, within five seconds.
    pub async fn next_json(&mut self) -> serde_json::Value {
        let text = self
            .next_text(Duration::from_secs(5))
            .await
            .expect("a message from keyward");
        serde_json::from_str(&text).expect("keyward sends JSON")
    }

    /// The close frame's code, if keyward closed the connection within `wait`.
    pub async fn closed_with(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
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
