//! What the mock's WebSocket APIs share (Binance's in `binance_ws.rs`, Bybit's in
//! `bybit_ws.rs`, OKX's in `okx_ws.rs`, Kraken's in `kraken_ws.rs`, Coinbase's in
//! `coinbase_ws.rs`): the opening handshake, answered by the mock
//! itself (RFC 6455: the headers are checked, the accept key is ring's SHA-1, so
//! tungstenite's `handshake` feature and its `sha1` crate stay out of the build;
//! tungstenite only frames), reading a frame, the record of each frame received, and
//! how a printed record leaves the credentials a frame carries out.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};

use super::{Recorded, State};

/// The method of a recorded WebSocket message (REST records have HTTP methods).
pub(super) const METHOD: &str = "WS";

/// RFC 6455's GUID, appended to the client's key for the accept key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest message the mock reads (the venues' own limits are smaller; this
/// only keeps a runaway test from filling memory).
const MAX_MESSAGE: usize = 1 << 20;

/// A connection whose request head asked for a venue's WebSocket, as the listener
/// hands it to the venue (`mod.rs`).
pub(super) struct Asked<S> {
    pub(super) stream: S,
    /// The bytes read past the head.
    pub(super) leftover: Vec<u8>,
    /// The head's HTTP version.
    pub(super) version: String,
    /// The head as recorded.
    pub(super) upgrade: Recorded,
}

/// An upgrade's header fields, which the record of each message on its connection
/// carries.
pub(super) type Headers = Vec<(String, String)>;

impl<S: AsyncRead + AsyncWrite + Unpin> Asked<S> {
    /// Answers and records the upgrade ([`upgrade`]): the WebSocket and the
    /// upgrade's header fields, or `None` when it was refused.
    pub(super) async fn open(self, state: &State) -> Option<(WebSocketStream<S>, Headers)> {
        let headers = self.upgrade.headers.clone();
        let socket = upgrade(
            self.stream,
            self.leftover,
            &self.version,
            self.upgrade,
            state,
        )
        .await?;
        Some((socket, headers))
    }
}

/// Answers the upgrade request `upgrade` (already read, `leftover` the bytes read
/// past its head) and records it: `101 Switching Protocols` and the WebSocket, or
/// the refusal of a malformed upgrade (400, or 426 for another version) and `None`.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    leftover: Vec<u8>,
    version: &str,
    upgrade: Recorded,
    state: &State,
) -> Option<WebSocketStream<S>> {
    let accept = accept_key(&upgrade, version);
    state.record(upgrade);
    let head = match accept {
        Ok(accept) => format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        ),
        Err((status, reason, message)) => {
            let body = json!({"code": -1, "msg": message}).to_string();
            let extra = if status == 426 {
                "Sec-WebSocket-Version: 13\r\n"
            } else {
                ""
            };
            format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                body.len()
            )
        }
    };
    if stream.write_all(head.as_bytes()).await.is_err() || !head.contains(" 101 ") {
        let _ = stream.shutdown().await;
        return None;
    }
    let _ = stream.flush().await;
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE));
    Some(WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await)
}

/// Ends the close handshake a client started (its close frame just read): sends
/// the answering close frame tungstenite queued, then ends TLS. tungstenite only
/// writes the frame into the TLS stream, whose buffer would go with the connection
/// unflushed, and clients wait for the answer (python's websockets reports 1006
/// without it).
pub(super) async fn answer_close<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
) {
    // The sink's close, which flushes what is queued (the inherent `close` sends a
    // new close frame, which tungstenite refuses after the client's).
    let _ = futures_util::SinkExt::close(socket).await;
    let _ = socket.get_mut().shutdown().await;
}

/// What one read from a client's WebSocket gives a venue's loop.
pub(super) enum Read {
    /// A text frame's text, or a binary frame's read as UTF-8 (no venue sends binary
    /// requests; the mocks take one as its text rather than drop it).
    Text(String),
    /// A ping or pong: tungstenite answers pings itself, pongs need nothing.
    Skip,
    /// The client closed (its close frame answered) or the connection failed.
    Gone,
}

/// `message`, what `socket`'s `next` gave, as a venue's loop takes it ([`Read`]).
pub(super) async fn read<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Read {
    match message {
        Some(Ok(Message::Text(text))) => Read::Text(text.as_str().to_owned()),
        Some(Ok(Message::Binary(bytes))) => {
            Read::Text(String::from_utf8_lossy(&bytes).into_owned())
        }
        Some(Ok(Message::Close(_))) => {
            answer_close(socket).await;
            Read::Gone
        }
        None | Some(Err(_)) => Read::Gone,
        Some(Ok(_)) => Read::Skip,
    }
}

/// RFC 6455 §4.2.1's checks of the opening handshake; the `Sec-WebSocket-Accept`
/// value, or the status, reason and message of the refusal.
pub(super) fn accept_key(
    request: &Recorded,
    version: &str,
) -> Result<String, (u16, &'static str, &'static str)> {
    let has_token = |name: &str, token: &str| {
        request.header(name).is_some_and(|value| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if request.method != "GET" || version != "HTTP/1.1" {
        return Err((
            400,
            "Bad Request",
            "mock: the upgrade is a GET over HTTP/1.1",
        ));
    }
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err((400, "Bad Request", "mock: not a WebSocket upgrade"));
    }
    if request.header("host").is_none() {
        return Err((400, "Bad Request", "mock: no Host"));
    }
    if request.header("sec-websocket-version") != Some("13") {
        return Err((426, "Upgrade Required", "mock: WebSocket version 13 only"));
    }
    let key = request.header("sec-websocket-key").unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !decoded.is_ok_and(|nonce| nonce.len() == 16) {
        return Err((
            400,
            "Bad Request",
            "mock: Sec-WebSocket-Key is not 16 bytes in base64",
        ));
    }
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    Ok(base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
}

/// The record of one frame received on `path`: the frame's text as its body, the
/// upgrade's header fields, whether it carried a signature that verified, and (on
/// venues whose connections log in) whether its connection was logged in when it
/// arrived.
pub(super) fn message_record(
    path: &str,
    headers: &[(String, String)],
    body: String,
    signature_ok: Option<bool>,
    authenticated: Option<bool>,
) -> Recorded {
    Recorded {
        method: METHOD.to_owned(),
        path: path.to_owned(),
        query: String::new(),
        headers: headers.to_vec(),
        body,
        signature_ok,
        authenticated,
    }
}

/// A connection id in the venues' style (letters and digits, a counter at the end),
/// unique within the mock.
pub(super) fn connection_id(state: &State) -> String {
    let n = state
        .next_connection
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("mockc{:010x}-{n}", super::now_ms())
}

/// Every canary credential a frame may carry (the venues' keys and OKX's
/// passphrase), for the last-resort check of [`redacted`].
fn canaries() -> [&'static str; 6] {
    [
        crate::canary::API_KEY,
        crate::canary::PASSPHRASE,
        crate::venues::bybit::CANARY_API_KEY,
        crate::venues::okx::API_KEY,
        crate::venues::okx::PASSPHRASE,
        crate::venues::kraken::API_KEY,
    ]
}

/// A frame with its credentials replaced, for printing records: Binance's
/// `params.apiKey`, Bybit's `auth` key (`args[0]`), OKX's `login` `apiKey` and
/// `passphrase`, Coinbase's `jwt` (a bearer credential for its two minutes),
/// Kraken's `params.token` (a bearer credential of the account's for as long as a
/// connection holds it). A frame that is not one of those whole, unless a canary
/// credential is in it.
pub(super) fn redacted(frame: &str) -> String {
    const HIDDEN: &str = "[redacted]";
    let mut parsed: Value = match serde_json::from_str(frame) {
        Ok(parsed) => parsed,
        Err(_) => return whole_unless_canary(frame),
    };
    if parsed.get("jwt").is_some() {
        parsed["jwt"] = HIDDEN.into();
    }
    for field in ["apiKey", "token"] {
        if parsed["params"].get(field).is_some() {
            parsed["params"][field] = HIDDEN.into();
        }
    }
    if parsed["op"] == "auth"
        && let Some(key) = parsed["args"].get_mut(0)
    {
        *key = HIDDEN.into();
    }
    if parsed["op"] == "login"
        && let Some(logins) = parsed["args"].as_array_mut()
    {
        for login in logins.iter_mut().filter(|l| l.is_object()) {
            for field in ["apiKey", "passphrase"] {
                if login.get(field).is_some() {
                    login[field] = HIDDEN.into();
                }
            }
        }
    }
    whole_unless_canary(&parsed.to_string())
}

fn whole_unless_canary(text: &str) -> String {
    if canaries().iter().any(|canary| text.contains(canary)) {
        "[redacted: holds a canary credential]".to_owned()
    } else {
        text.to_owned()
    }
}

/// A parameter's value as text: a string as it is, a number or a boolean as JSON
/// writes it. `None` for null, arrays and objects.
pub(super) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The members of a Bybit or OKX frame's first `args` object, each as text (see
/// [`Recorded::params`]); empty for frames without one.
pub(super) fn first_args_of(frame: &str) -> BTreeMap<String, String> {
    let Ok(parsed) = serde_json::from_str::<Value>(frame) else {
        return BTreeMap::new();
    };
    parsed["args"]
        .get(0)
        .and_then(Value::as_object)
        .map(|members| {
            members
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), text_of(value)?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_request(headers: Vec<(&str, &str)>) -> Recorded {
        Recorded {
            method: "GET".to_owned(),
            path: "/ws-api/v3".to_owned(),
            query: String::new(),
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
            body: String::new(),
            signature_ok: None,
            authenticated: None,
        }
    }

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        let request = upgrade_request(vec![
            ("host", "server.example.com"),
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(
            accept_key(&request, "HTTP/1.1"),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned())
        );
        assert_eq!(accept_key(&request, "HTTP/1.0").unwrap_err().0, 400);
        let mut old = request.clone();
        old.headers[4].1 = "8".to_owned();
        assert_eq!(accept_key(&old, "HTTP/1.1").unwrap_err().0, 426);
        let mut short = request;
        short.headers[3].1 = "c2hvcnQ=".to_owned();
        assert_eq!(accept_key(&short, "HTTP/1.1").unwrap_err().0, 400);
    }

    #[test]
    fn printed_records_leave_every_venues_credentials_out() {
        let bybit_key = crate::venues::bybit::CANARY_API_KEY;
        let (okx_key, okx_passphrase) =
            (crate::venues::okx::API_KEY, crate::venues::okx::PASSPHRASE);
        let frames = [
            format!(
                r#"{{"id":1,"method":"ping","params":{{"apiKey":"{}"}}}}"#,
                crate::canary::API_KEY
            ),
            format!(r#"{{"req_id":"a","op":"auth","args":["{bybit_key}",1662350400000,"ab"]}}"#),
            format!(
                r#"{{"op":"login","args":[{{"apiKey":"{okx_key}","passphrase":"{okx_passphrase}","timestamp":"1","sign":"x"}}]}}"#
            ),
        ];
        for frame in frames {
            let record = message_record("/p", &[], frame, None, None);
            let printed = format!("{record:?}");
            for canary in canaries() {
                assert!(!printed.contains(canary), "{printed}");
            }
            assert!(printed.contains("[redacted]"), "{printed}");
        }
        // A frame that is not JSON, or hides a key elsewhere, is left out whole.
        for frame in [
            format!("{{{bybit_key}"),
            format!(r#"{{"op":"order","args":[{{"note":"{okx_passphrase}"}}]}}"#),
        ] {
            let record = message_record("/p", &[], frame, None, None);
            let printed = format!("{record:?}");
            assert!(!printed.contains(bybit_key) && !printed.contains(okx_passphrase));
            assert!(printed.contains("holds a canary credential"), "{printed}");
        }
    }

    #[test]
    fn printed_records_leave_coinbases_jwt_out() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let frame = format!(r#"{{"type":"subscribe","channel":"user","jwt":"{jwt}"}}"#);
        let printed = format!("{:?}", message_record("/", &[], frame, Some(true), None));
        assert!(!printed.contains(jwt), "{printed}");
        assert!(printed.contains("[redacted]"), "{printed}");
    }

    #[test]
    fn printed_records_leave_krakens_websocket_token_out() {
        let token = "xeAQ/RCChBYNVh53sTv1yZ5H4wIbwDF20PiHtTF+4UI";
        let frames = [
            format!(
                r#"{{"method":"subscribe","params":{{"channel":"executions","token":"{token}"}},"req_id":1}}"#
            ),
            format!(
                r#"{{"method":"add_order","params":{{"order_type":"limit","side":"buy","order_qty":0.001,"symbol":"BTC/USD","limit_price":60000,"token":"{token}"}},"req_id":2}}"#
            ),
        ];
        for frame in frames {
            let record = message_record("/v2", &[], frame, None, Some(true));
            let printed = format!("{record:?}");
            assert!(!printed.contains(token), "{printed}");
            assert!(printed.contains("[redacted]"), "{printed}");
            assert!(
                printed.contains("BTC/USD") || printed.contains("executions"),
                "{printed}"
            );
        }
    }

    #[test]
    fn first_args_are_read_as_text() {
        let frame = r#"{"op":"order.create","args":[{"symbol":"BTCUSDT","qty":"0.001","isLeverage":0,"reduceOnly":false,"tpsl":{"a":1}}]}"#;
        let args = first_args_of(frame);
        assert_eq!(args.get("symbol").map(String::as_str), Some("BTCUSDT"));
        assert_eq!(args.get("isLeverage").map(String::as_str), Some("0"));
        assert_eq!(args.get("reduceOnly").map(String::as_str), Some("false"));
        assert!(!args.contains_key("tpsl"));
        assert!(first_args_of("ping").is_empty());
    }
}
