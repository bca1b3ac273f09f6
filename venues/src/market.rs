//! Public market-data WebSockets, the venue's side: which paths keyward relays
//! without a token (so a client can point every URL at keyward), where each goes,
//! and what a bot may send on them. A relayed connection carries no key and no
//! account's authority: keyward checks that each message only asks for market data
//! in the venue's grammar (a subscription to named streams, a list of them, a
//! keep-alive) and sends it on as written; the venue's answers and data come back as
//! they are.

use serde_json::value::RawValue;

use crate::stream::{message, message_id, pairs, strict_object};
use crate::{ParseError, echo_key, json};

/// How a market-data stream's messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketProtocol {
    /// Binance: `{"method": "SUBSCRIBE" | "UNSUBSCRIBE" | "LIST_SUBSCRIPTIONS",
    /// "params": [stream names], "id"}`.
    Binance,
    /// Bybit v5: `{"op": "subscribe" | "unsubscribe" | "ping", "args": [topics],
    /// "req_id"}`.
    Bybit,
    /// OKX v5: `{"op": "subscribe" | "unsubscribe", "args": [{"channel", ...}],
    /// "id"}`, and the text `ping`.
    Okx,
    /// Kraken v2: `{"method": "subscribe" | "unsubscribe", "params": {"channel",
    /// "symbol": [...], ...}, "req_id"}`, without a token. Kraken serves it on the
    /// path of its authenticated WebSocket, on a host of its own: keyward tells the
    /// two apart by the message.
    Kraken,
    /// Coinbase Advanced Trade: `{"type": "subscribe" | "unsubscribe", "product_ids":
    /// [...], "channel"}` to a public channel, without a JWT. Coinbase serves it at
    /// `/` on a host of its own, the path of its user WebSocket: keyward tells the two
    /// apart by the message.
    Coinbase,
}

/// A public market-data WebSocket path and where keyward connects for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketPath {
    /// The path a client connects to (on keyward's bot listener, as at the venue).
    pub path: &'static str,
    /// The venue's production URL for it.
    pub upstream: &'static str,
    /// Its messages' grammar.
    pub protocol: MarketProtocol,
    /// The most messages keyward relays from one client connection, where the
    /// venue documents a limit per connection (it disconnects beyond it, and bans
    /// an IP address it keeps disconnecting: keyward's, which every bot shares).
    /// Keyward's own answers to the venue's pings count there too.
    pub messages_per_connection: Option<crate::Allowance>,
    /// The most messages keyward relays on all its connections together, where
    /// the venue counts the unauthenticated messages of one IP address.
    pub messages_per_address: Option<crate::Allowance>,
}

/// A bot's message on a market-data stream, checked: what keyward records of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketMessage {
    /// The operation, as the venue names it.
    pub method: &'static str,
    /// The message's id as JSON text (`null` for none), echoed in a refusal.
    pub id: String,
}

/// The market-data path of `paths` that `path` is: the path itself, or for Binance
/// a stream named under it (`/ws/btcusdt@trade`; ccxt opens `/ws/0`, `/ws/1`, ...
/// and subscribes by message). The second value is the whole path when it names a
/// stream, which keyward's own connection then opens.
pub fn market_path_of(
    paths: &'static [MarketPath],
    path: &str,
) -> Option<(&'static MarketPath, Option<String>)> {
    if let Some(exact) = paths.iter().find(|p| p.path == path) {
        return Some((exact, None));
    }
    paths.iter().find_map(|p| {
        let name = path.strip_prefix(p.path)?.strip_prefix('/')?;
        let stream = p.protocol == MarketProtocol::Binance
            && (1..=MAX_NAME).contains(&name.len())
            && name.bytes().all(binance_stream_byte);
        stream.then(|| (p, Some(path.to_owned())))
    })
}

fn binance_stream_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'!' | b'.')
}

/// The most streams or topics one message may name.
const MAX_NAMES: usize = 200;
/// The longest stream name, topic or member value.
const MAX_NAME: usize = 64;
/// The members an OKX subscription argument may have.
const OKX_ARG_MEMBERS: &[&str] = &["channel", "instId", "instType", "instFamily", "ccy"];

/// Checks a bot's message on a market-data stream written in `protocol`.
pub fn read(protocol: MarketProtocol, text: &str) -> Result<MarketMessage, ParseError> {
    match protocol {
        MarketProtocol::Binance => binance(text),
        MarketProtocol::Bybit => bybit(text),
        MarketProtocol::Okx => okx(text),
        MarketProtocol::Kraken => kraken(text),
        MarketProtocol::Coinbase => coinbase(text),
    }
}

/// keyward's refusal of a market-data message, in the venue's shape for a failed
/// subscription: `reason` and `detail` in its message.
pub fn refusal(
    protocol: MarketProtocol,
    id: &str,
    method: &str,
    reason: &str,
    detail: &str,
) -> String {
    let mut text = String::new();
    json::write_string(&mut text, &format!("keyward: {reason}: {detail}"));
    let mut op = String::new();
    json::write_string(&mut op, method);
    match protocol {
        MarketProtocol::Binance => {
            format!("{{\"error\":{{\"code\":2,\"msg\":{text}}},\"id\":{id}}}")
        }
        MarketProtocol::Bybit => {
            let mut out = format!("{{\"success\":false,\"ret_msg\":{text},\"op\":{op}");
            if id != "null" {
                out.push_str(&format!(",\"req_id\":{id}"));
            }
            out.push_str(",\"conn_id\":\"keyward\"}");
            out
        }
        MarketProtocol::Coinbase => format!("{{\"type\":\"error\",\"message\":{text}}}"),
        MarketProtocol::Kraken => {
            let mut out = format!("{{\"error\":{text},\"method\":{op}");
            if id != "null" {
                out.push_str(&format!(",\"req_id\":{id}"));
            }
            out.push_str(",\"success\":false}");
            out
        }
        MarketProtocol::Okx => {
            let mut out = String::from("{");
            if id != "null" {
                out.push_str(&format!("\"id\":{id},"));
            }
            out.push_str(&format!(
                "\"event\":\"error\",\"code\":\"60012\",\"msg\":{text},\"connId\":\"keyward\"}}"
            ));
            out
        }
    }
}

/// The message's members, refusing any not in `allowed`.
fn members<'a>(text: &'a str, allowed: &[&str]) -> Result<Vec<(String, &'a RawValue)>, ParseError> {
    strict_object(text)?;
    let fields = pairs(text).map_err(|_| message("unreadable"))?;
    if let Some((key, _)) = fields
        .iter()
        .find(|(key, _)| !allowed.contains(&key.as_str()))
    {
        return Err(ParseError::ParamUnknown { key: echo_key(key) });
    }
    Ok(fields)
}

fn member<'a>(fields: &[(String, &'a RawValue)], name: &str) -> Option<&'a RawValue> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| *value)
}

fn operation(
    fields: &[(String, &RawValue)],
    key: &'static str,
    served: &[&'static str],
) -> Result<&'static str, ParseError> {
    let value = member(fields, key).ok_or(ParseError::ParamMissing { key })?;
    let name: String =
        serde_json::from_str(value.get()).map_err(|_| ParseError::invalid(key, "a string"))?;
    served
        .iter()
        .find(|served| **served == name)
        .copied()
        .ok_or_else(|| ParseError::StreamMethodUnknown {
            method: echo_key(&name),
        })
}

/// A list of 1 to [`MAX_NAMES`] names, each accepted by `ok`.
fn names(
    value: Option<&RawValue>,
    key: &'static str,
    ok: fn(u8) -> bool,
) -> Result<(), ParseError> {
    let names: Vec<String> = value
        .map(|v| serde_json::from_str(v.get()))
        .transpose()
        .map_err(|_| ParseError::invalid(key, "a list of names"))?
        .ok_or(ParseError::ParamMissing { key })?;
    let fine = (1..=MAX_NAMES).contains(&names.len())
        && names
            .iter()
            .all(|name| (1..=MAX_NAME).contains(&name.len()) && name.bytes().all(ok));
    if fine {
        Ok(())
    } else {
        Err(ParseError::invalid(
            key,
            "1 to 200 stream names of the venue's grammar",
        ))
    }
}

fn binance(text: &str) -> Result<MarketMessage, ParseError> {
    let fields = members(text, &["method", "params", "id"])?;
    let method = operation(
        &fields,
        "method",
        &["SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"],
    )?;
    let id = member(&fields, "id").ok_or(ParseError::ParamMissing { key: "id" })?;
    let id = message_id(id)?;
    let params = member(&fields, "params");
    if method == "LIST_SUBSCRIPTIONS" {
        if params.is_some_and(|p| p.get() != "[]") {
            return Err(ParseError::invalid("params", "absent or empty"));
        }
    } else {
        // `btcusdt@aggTrade`, `btcusdt@depth@100ms`, `!ticker@arr`.
        names(params, "params", binance_stream_byte)?;
    }
    Ok(MarketMessage { method, id })
}

fn bybit(text: &str) -> Result<MarketMessage, ParseError> {
    let fields = members(text, &["op", "args", "req_id"])?;
    let method = operation(&fields, "op", &["subscribe", "unsubscribe", "ping"])?;
    let id = match member(&fields, "req_id") {
        Some(id) => message_id(id)?,
        None => "null".to_owned(),
    };
    let args = member(&fields, "args");
    if method == "ping" {
        if args.is_some() {
            return Err(ParseError::ParamUnknown {
                key: echo_key("args"),
            });
        }
    } else {
        // `orderbook.50.BTCUSDT`, `publicTrade.BTCUSDT`, `kline.1.BTCUSDT`.
        names(args, "args", |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
        })?;
    }
    Ok(MarketMessage { method, id })
}

fn okx(text: &str) -> Result<MarketMessage, ParseError> {
    if text == "ping" {
        return Ok(MarketMessage {
            method: "ping",
            id: "null".to_owned(),
        });
    }
    let fields = members(text, &["op", "args", "id"])?;
    let method = operation(&fields, "op", &["subscribe", "unsubscribe"])?;
    let id = match member(&fields, "id") {
        Some(id) => message_id(id)?,
        None => "null".to_owned(),
    };
    let args: Vec<&RawValue> = member(&fields, "args")
        .map(|v| serde_json::from_str(v.get()))
        .transpose()
        .map_err(|_| ParseError::invalid("args", "a list of channels"))?
        .ok_or(ParseError::ParamMissing { key: "args" })?;
    if !(1..=MAX_NAMES).contains(&args.len()) {
        return Err(ParseError::invalid("args", "1 to 200 channels"));
    }
    for arg in args {
        let arg_fields = pairs(arg.get()).map_err(|_| ParseError::invalid("args", "objects"))?;
        let mut channel = false;
        for (key, value) in &arg_fields {
            if !OKX_ARG_MEMBERS.contains(&key.as_str()) {
                return Err(ParseError::ParamUnknown { key: echo_key(key) });
            }
            let text: String = serde_json::from_str(value.get())
                .map_err(|_| ParseError::invalid("args", "string members"))?;
            let fine = (1..=MAX_NAME).contains(&text.len())
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !fine {
                return Err(ParseError::invalid(
                    "args",
                    "names of letters, digits, '.', '_' and '-'",
                ));
            }
            channel |= key == "channel";
        }
        if !channel {
            return Err(ParseError::ParamMissing { key: "channel" });
        }
    }
    Ok(MarketMessage { method, id })
}

/// Kraken's public channels (`level3` takes a token, and is not relayed).
const KRAKEN_CHANNELS: &[&str] = &["ticker", "book", "ohlc", "trade", "instrument"];
/// The members a Kraken market-data subscription's `params` may have besides
/// `channel` and `symbol`.
const KRAKEN_OPTIONS: &[&str] = &["depth", "snapshot", "event_trigger", "interval"];

fn kraken(text: &str) -> Result<MarketMessage, ParseError> {
    let fields = members(text, &["method", "params", "req_id"])?;
    let method = operation(&fields, "method", &["subscribe", "unsubscribe"])?;
    let id = match member(&fields, "req_id") {
        Some(id) if id.get().bytes().all(|b| b.is_ascii_digit()) && id.get().len() <= 19 => {
            id.get().to_owned()
        }
        Some(_) => return Err(message("req_id must be a non-negative integer")),
        None => "null".to_owned(),
    };
    let params = member(&fields, "params").ok_or(ParseError::ParamMissing { key: "params" })?;
    let params = pairs(params.get()).map_err(|_| ParseError::invalid("params", "an object"))?;
    let mut channel = false;
    for (key, value) in &params {
        match key.as_str() {
            "channel" => {
                let name: String = serde_json::from_str(value.get())
                    .map_err(|_| ParseError::invalid("channel", "a string"))?;
                if !KRAKEN_CHANNELS.contains(&name.as_str()) {
                    return Err(ParseError::invalid(
                        "channel",
                        "ticker, book, ohlc, trade or instrument",
                    ));
                }
                channel = true;
            }
            // `BTC/USD`: letters, digits and one `/`.
            "symbol" => names(Some(value), "symbol", |b| {
                b.is_ascii_alphanumeric() || b == b'/' || b == b'.'
            })?,
            option if KRAKEN_OPTIONS.contains(&option) => {
                let raw = value.get();
                let scalar = raw == "true"
                    || raw == "false"
                    || raw.bytes().all(|b| b.is_ascii_digit())
                    || serde_json::from_str::<String>(raw).is_ok_and(|s| {
                        s.len() <= MAX_NAME && s.bytes().all(|b| b.is_ascii_alphanumeric())
                    });
                if !scalar {
                    return Err(ParseError::invalid(
                        "params",
                        "a number, boolean or short word",
                    ));
                }
            }
            _ => return Err(ParseError::ParamUnknown { key: echo_key(key) }),
        }
    }
    if !channel {
        return Err(ParseError::ParamMissing { key: "channel" });
    }
    Ok(MarketMessage { method, id })
}

/// Coinbase's public channels (`heartbeats` is served with the user channel's).
const COINBASE_CHANNELS: &[&str] = &[
    "ticker",
    "ticker_batch",
    "level2",
    "market_trades",
    "candles",
    "status",
];

fn coinbase(text: &str) -> Result<MarketMessage, ParseError> {
    let fields = members(text, &["type", "product_ids", "channel"])?;
    let method = operation(&fields, "type", &["subscribe", "unsubscribe"])?;
    let channel = member(&fields, "channel").ok_or(ParseError::ParamMissing { key: "channel" })?;
    let channel: String = serde_json::from_str(channel.get())
        .map_err(|_| ParseError::invalid("channel", "a string"))?;
    if !COINBASE_CHANNELS.contains(&channel.as_str()) {
        return Err(ParseError::invalid(
            "channel",
            "ticker, ticker_batch, level2, market_trades, candles or status",
        ));
    }
    // `status` names no products; the others name 1 to 200 (`BTC-USD`).
    if let Some(products) = member(&fields, "product_ids") {
        names(Some(products), "product_ids", |b| {
            b.is_ascii_alphanumeric() || b == b'-'
        })?;
    } else if channel != "status" {
        return Err(ParseError::ParamMissing { key: "product_ids" });
    }
    Ok(MarketMessage {
        method,
        id: "null".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(protocol: MarketProtocol, text: &str) -> &'static str {
        read(protocol, text).expect_err("refused").reason()
    }

    #[test]
    fn only_subscriptions_to_market_data_pass() {
        use MarketProtocol::{Binance, Bybit, Okx};
        let ok = read(
            Binance,
            r#"{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","!ticker@arr","btcusdt@depth@100ms"],"id":1}"#,
        )
        .expect("reads");
        assert_eq!(
            ok,
            MarketMessage {
                method: "SUBSCRIBE",
                id: "1".to_owned()
            }
        );
        assert!(read(Binance, r#"{"method":"LIST_SUBSCRIPTIONS","id":"a"}"#).is_ok());
        assert_eq!(
            refused(Binance, r#"{"method":"order.place","params":[],"id":1}"#),
            "stream_method_unknown"
        );
        assert_eq!(
            refused(
                Binance,
                r#"{"method":"SUBSCRIBE","params":["x"],"id":1,"apiKey":"k"}"#
            ),
            "param_unknown"
        );
        assert_eq!(
            refused(Binance, r#"{"method":"SUBSCRIBE","params":[],"id":1}"#),
            "param_invalid"
        );
        assert_eq!(
            refused(
                Binance,
                r#"{"method":"SUBSCRIBE","params":["btc usdt"],"id":1}"#
            ),
            "param_invalid"
        );
        assert!(
            read(
                Bybit,
                r#"{"op":"subscribe","args":["orderbook.50.BTCUSDT"],"req_id":"r1"}"#
            )
            .is_ok()
        );
        assert!(read(Bybit, r#"{"op":"ping"}"#).is_ok());
        assert_eq!(
            refused(Bybit, r#"{"op":"auth","args":["k","1","s"]}"#),
            "stream_method_unknown"
        );
        assert_eq!(
            refused(Bybit, r#"{"op":"subscribe","args":["a b"]}"#),
            "param_invalid"
        );
        assert!(
            read(
                Okx,
                r#"{"op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USDT"}]}"#
            )
            .is_ok()
        );
        assert!(read(Okx, "ping").is_ok());
        assert_eq!(
            refused(Okx, r#"{"op":"login","args":[{"apiKey":"k"}]}"#),
            "stream_method_unknown"
        );
        assert_eq!(
            refused(Okx, r#"{"op":"subscribe","args":[{"instId":"BTC-USDT"}]}"#),
            "param_missing"
        );
        assert_eq!(
            refused(
                Okx,
                r#"{"op":"subscribe","args":[{"channel":"tickers","x":"1"}]}"#
            ),
            "param_unknown"
        );
        assert_eq!(
            refused(
                Okx,
                r#"{"op":"subscribe","args":[{"channel":"tickers"}],"op":"x"}"#
            ),
            "json_duplicate_key"
        );
    }

    #[test]
    fn binance_streams_may_be_named_in_the_path() {
        const PATHS: &[MarketPath] = &[MarketPath {
            path: "/ws",
            upstream: "wss://stream.binance.com:9443/ws",
            protocol: MarketProtocol::Binance,
            messages_per_connection: None,
            messages_per_address: None,
        }];
        assert_eq!(market_path_of(PATHS, "/ws").map(|(_, s)| s), Some(None));
        assert_eq!(
            market_path_of(PATHS, "/ws/0").map(|(_, s)| s),
            Some(Some("/ws/0".to_owned()))
        );
        assert!(market_path_of(PATHS, "/ws/btcusdt@trade").is_some());
        assert!(market_path_of(PATHS, "/ws/a/b").is_none());
        assert!(market_path_of(PATHS, "/ws/").is_none());
        assert!(market_path_of(PATHS, "/wsx").is_none());
    }

    #[test]
    fn krakens_public_subscriptions_carry_no_token() {
        use MarketProtocol::Kraken;
        assert!(read(Kraken, r#"{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"],"snapshot":true},"req_id":3}"#).is_ok());
        assert!(read(Kraken, r#"{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":10}}"#).is_ok());
        assert_eq!(
            read(
                Kraken,
                r#"{"method":"subscribe","params":{"channel":"executions","token":"t"}}"#
            )
            .expect_err("private")
            .reason(),
            "param_invalid"
        );
        assert_eq!(read(Kraken, r#"{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"],"token":"t"}}"#).expect_err("a token").reason(), "param_unknown");
        assert_eq!(
            read(
                Kraken,
                r#"{"method":"add_order","params":{"channel":"ticker"}}"#
            )
            .expect_err("an order")
            .reason(),
            "stream_method_unknown"
        );
        assert_eq!(
            read(
                Kraken,
                r#"{"method":"subscribe","params":{"channel":"level3","symbol":["BTC/USD"]}}"#
            )
            .expect_err("level3")
            .reason(),
            "param_invalid"
        );
    }

    #[test]
    fn coinbases_public_subscriptions_carry_no_jwt() {
        use MarketProtocol::Coinbase;
        assert!(
            read(
                Coinbase,
                r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"ticker"}"#
            )
            .is_ok()
        );
        assert!(read(Coinbase, r#"{"type":"subscribe","channel":"status"}"#).is_ok());
        assert_eq!(
            read(
                Coinbase,
                r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"ticker","jwt":"e.y.j"}"#
            )
            .expect_err("a JWT")
            .reason(),
            "param_unknown"
        );
        assert_eq!(
            read(
                Coinbase,
                r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"user"}"#
            )
            .expect_err("private")
            .reason(),
            "param_invalid"
        );
        assert_eq!(
            read(Coinbase, r#"{"type":"subscribe","channel":"ticker"}"#)
                .expect_err("no products")
                .reason(),
            "param_missing"
        );
    }

    #[test]
    fn refusals_are_in_the_venues_shape() {
        let binance: serde_json::Value = serde_json::from_str(&refusal(
            MarketProtocol::Binance,
            "7",
            "SUBSCRIBE",
            "param_invalid",
            "x",
        ))
        .unwrap();
        assert_eq!(binance["id"], 7);
        assert!(
            binance["error"]["msg"]
                .as_str()
                .unwrap()
                .contains("param_invalid")
        );
        let bybit: serde_json::Value = serde_json::from_str(&refusal(
            MarketProtocol::Bybit,
            "\"r\"",
            "subscribe",
            "param_invalid",
            "x",
        ))
        .unwrap();
        assert_eq!(bybit["success"], false);
        assert_eq!(bybit["req_id"], "r");
        let okx: serde_json::Value = serde_json::from_str(&refusal(
            MarketProtocol::Okx,
            "null",
            "subscribe",
            "param_invalid",
            "x",
        ))
        .unwrap();
        assert_eq!(okx["event"], "error");
    }
}
