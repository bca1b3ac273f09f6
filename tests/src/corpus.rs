//! The attack corpus as requests: placeholders substituted, bodies the corpus only
//! describes built, and the fixture's listener port rewritten to the running one.

use serde_json::Value;

use crate::{FixtureTokens, canary};

/// The `{{TS}}` of every case.
pub const TS: &str = "1764547200000";
/// The bot's own (never forwarded) signature.
pub const DUMMY_SIG: &str = "deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
/// The bot's own (never forwarded) base64 signature (Kraken's `API-Sign`).
pub const DUMMY_SIG_B64: &str =
    "3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+796tvu/erb7v3q2+7w==";
/// The `{{NONCE}}` of every case: the bot's own Kraken nonce, never forwarded.
pub const NONCE: &str = "1764547200000";

/// One corpus case, ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method (from `:method` for HTTP/2).
    pub method: String,
    /// Request target: path and query, as sent.
    pub target: String,
    /// `:authority` for HTTP/2.
    pub authority: Option<String>,
    /// Header fields in order (pseudo-headers excluded).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// The exact bytes, for `raw` cases.
    pub raw: Option<Vec<u8>>,
    /// Every header in order, pseudo-headers included (HTTP/2 cases).
    pub h2_headers: Vec<(String, String)>,
}

/// Replaces every placeholder; panics on one it does not know.
pub fn substitute(text: &str, tokens: &FixtureTokens, port: Option<u16>) -> String {
    let mut out = text
        .replace("{{BOT_TOKEN_B}}", &tokens.bot_b)
        .replace(
            "{{BOT_TOKEN_PREFIX_MATCH}}",
            &format!("{}x", &tokens.bot[..tokens.bot.len() - 1]),
        )
        .replace("{{BOT_TOKEN}}", &tokens.bot)
        .replace("{{EXPIRED_TOKEN}}", &tokens.expired)
        .replace("{{REVOKED_TOKEN}}", &tokens.revoked)
        .replace(
            "{{REAL_API_KEY_GUESS}}",
            "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8B",
        )
        .replace("{{REAL_API_KEY}}", canary::API_KEY)
        .replace("{{TS}}", TS)
        .replace("{{DUMMY_SIG_B64}}", DUMMY_SIG_B64)
        .replace("{{DUMMY_SIG}}", DUMMY_SIG)
        .replace("{{NONCE}}", NONCE)
        .replace("{{i}}", "0");
    if let Some(port) = port {
        out = out
            .replace("localhost:8443", &format!("localhost:{port}"))
            .replace("localhost:8444", &format!("localhost:{port}"))
            .replace("localhost:8445", &format!("localhost:{port}"));
    }
    assert!(!out.contains("{{"), "unhandled placeholder in {text:?}");
    out
}

/// Percent-encodes like a client library would (independently of keyward's encoder).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The body bytes of a case; bodies the corpus only describes are built here.
pub fn body_of(case: &Value, tokens: &FixtureTokens) -> Option<Vec<u8>> {
    let id = case["id"].as_str().unwrap_or_default();
    let body = case["request"]["body"].as_str()?;
    let order = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";
    let built = match id {
        "BATCH-004" => {
            let element = r#"{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","timeInForce":"GTC","quantity":"0.001","price":"60000"}"#;
            let list = format!("[{}]", [element; 6].join(","));
            format!(
                "batchOrders={}&timestamp={TS}&signature={DUMMY_SIG}",
                urlencode(&list)
            )
        }
        "PARAM-017" => {
            let flood: Vec<String> = (0..10_000).map(|i| format!("a{i}=1")).collect();
            format!("{}&{order}", flood.join("&"))
        }
        // Refused on its Content-Encoding header before the body matters; these are
        // the first bytes of a gzip stream.
        "CT-005" => return Some(vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00]),
        // Streamed by the runner.
        "RES-004" => return Some(Vec::new()),
        _ if body.contains("<urlencoded ") => {
            let (head, rest) = body.split_once("<urlencoded ").expect("marker");
            let (json, tail) = rest.split_once(">&").expect("end of marker");
            format!("{head}{}&{tail}", urlencode(json))
        }
        _ => {
            assert!(
                !body.starts_with('<'),
                "{id}: descriptive body not materialised: {body}"
            );
            body.to_owned()
        }
    };
    Some(substitute(&built, tokens, None).into_bytes())
}

/// Builds a case's request; `port` rewrites the fixture's Host port.
pub fn request_of(case: &Value, tokens: &FixtureTokens, port: Option<u16>) -> Request {
    let r = &case["request"];
    let mut headers = Vec::new();
    let mut h2_headers = Vec::new();
    let mut method = r["method"].as_str().map(str::to_owned);
    let mut path = r["path"].as_str().map(str::to_owned);
    let mut authority = None;
    for pair in r["headers"].as_array().into_iter().flatten() {
        let name = pair[0].as_str().expect("header name").to_owned();
        let value = substitute(pair[1].as_str().expect("header value"), tokens, port);
        h2_headers.push((name.clone(), value.clone()));
        match name.as_str() {
            ":method" => method = Some(value),
            ":path" => path = Some(value),
            ":authority" => authority = Some(value),
            ":scheme" | ":protocol" => {}
            _ => headers.push((name, value)),
        }
    }
    let query = substitute(r["query"].as_str().unwrap_or_default(), tokens, port);
    let path = path.unwrap_or_default();
    let mut target = if path.contains("a/a/a/a/a/a/a/a/a/a/") {
        // PATH-023: a 100 KiB path, described rather than spelled out.
        format!("/api/v3/{}", "a/".repeat(51_200))
    } else {
        substitute(&path, tokens, port)
    };
    if !query.is_empty() {
        target = format!("{target}?{query}");
    }
    Request {
        method: method.unwrap_or_default(),
        target,
        authority,
        headers,
        body: body_of(case, tokens).unwrap_or_default(),
        raw: r["raw"]
            .as_str()
            .map(|raw| substitute(raw, tokens, port).into_bytes()),
        h2_headers,
    }
}

/// True if `response` is a 200 carrying the error envelope of the case's venue, where
/// that venue refuses inside a 200 (Bybit's non-zero `retCode`, Kraken's non-empty
/// `error` list).
fn error_in_body(case: &Value, response: &crate::client::Response) -> bool {
    let Ok(body) = serde_json::from_str::<Value>(&response.body) else {
        return false;
    };
    response.status == 200
        && match case["exchange"].as_str() {
            Some("bybit") => body["retCode"].as_i64().is_some_and(|code| code != 0),
            Some("kraken") => body["error"].as_array().is_some_and(|e| !e.is_empty()),
            _ => false,
        }
}

/// What every corpus case checks of keyward's answer, its audit log and the mock's
/// record: the status is one the case lists (or of its class), keyward's reason is in
/// `x-keyward-error` (`reason` where keyward words it differently, with the same
/// status), and the request reached the exchange exactly once with a verified
/// signature, or not at all, as the case says. The corpus's statuses are keyward's:
/// a refusal is judged by the status of its audit record, and answered either with
/// that status or, at venues that refuse inside an HTTP 200 body, with 200 and the
/// venue's error in the body. Venue tests add their own checks of what was sent.
pub fn judge_answer(
    case: &Value,
    response: &crate::client::Response,
    reason: Option<&str>,
    records: &[crate::mock::Recorded],
    audit: &[Value],
) -> Result<(), String> {
    let expected = &case["expected"];
    let status = match response.header("x-keyward-error") {
        Some(_) => {
            let own = crate::refused_with(audit, response)
                .ok_or("refused, but the audit log has no record of the refusal")?;
            if own != response.status && !error_in_body(case, response) {
                return Err(format!(
                    "answered {} for keyward's {own} without the venue's error in a 200",
                    response.status
                ));
            }
            u64::from(own)
        }
        None => u64::from(response.status),
    };
    match expected["status"].as_array() {
        Some(statuses) if !statuses.iter().any(|s| s.as_u64() == Some(status)) => {
            return Err(format!("status {status}, expected {statuses:?}"));
        }
        Some(_) => {}
        None => {
            let class = expected["status_class"].as_str().unwrap_or_default();
            if !class.starts_with(&status.to_string()[..1]) {
                return Err(format!("status {status}, expected {class}"));
            }
        }
    }
    if let Some(want) = reason.or_else(|| expected["log"]["reason"].as_str()) {
        let have = response.header("x-keyward-error");
        if have != Some(want) {
            return Err(format!("reason {have:?}, expected {want}"));
        }
    }
    match expected["reaches_exchange"].as_bool() {
        Some(false) if !records.is_empty() => Err(format!(
            "reached the exchange: {:?}",
            records.iter().map(|r| &r.path).collect::<Vec<_>>()
        )),
        Some(true) if records.len() != 1 => {
            Err(format!("{} requests reached the exchange", records.len()))
        }
        Some(true) if records[0].signature_ok != Some(true) => {
            Err("reached the exchange without a verified signature".to_owned())
        }
        Some(true) if response.header("x-keyward-error").is_some() => Err(format!(
            "forwarded, yet keyward's refusal header says {:?}",
            response.header("x-keyward-error")
        )),
        Some(_) => Ok(()),
        None => Err("the case does not say whether it reaches the exchange".to_owned()),
    }
}
