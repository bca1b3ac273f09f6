//! The venue targets. A request (format of [`crate::request`]) is routed and parsed by
//! the venue's parser exactly as `decide::parse` does; whatever the parser accepts is
//! authorized by a shadow-mode policy granting the whole catalogue and signed with the
//! fixture's canary key, and the request keyward would send is checked:
//!
//! 1. read with this crate's own parsers of the venue's documented wire grammar
//!    (form-urlencoded per the WHATWG URL Standard, JSON per RFC 8259), it holds exactly
//!    the parameters of keyward's parsed model, with the same values, in the same order
//!    (plus the auth fields the venue documents, each with its documented value);
//! 2. the signature is the venue's documented MAC over exactly the bytes sent
//!    (recomputed here with ring from the canary secret; for Coinbase, the JWT's `uri`
//!    names exactly the method and path sent);
//! 3. keyward's own parser reads the bytes sent back into the same call (idempotence);
//! 4. `keyward explain`'s preview shows the method, target and body that are sent,
//!    where it has no placeholders.
//!
//! Refused requests must get a refusal envelope that is JSON and a printable reason.
//! `KEYWARD_FUZZ_SHOW=1` prints each input's fate (accepted, or refused and why).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::{HeaderMap, Method, header};
use keyward_venues::test_signer::TestSigner;
use keyward_venues::{
    CallInput, Outbound, ParseError, ParsedCall, Refusal, Route, Security, SignContext, Venue,
    VenueId, route,
};
use keyward_policy::{
    AccountSpec, BotKeys, BotPolicy, BotSpec, BudgetLimits, Mode, NoQuotes, Policy, TokenDigest,
};

use crate::json::{self, Value};
use crate::{request, urlencoded};

/// keyward's clock in every signed request: 2025-12-01T00:00:00Z.
const TIMESTAMP_MS: u64 = 1_764_547_200_000;
/// The same instant as OKX writes it.
const OKX_TIMESTAMP: &str = "2025-12-01T00:00:00.000Z";
const RECV_WINDOW_MS: u32 = 5_000;
const NONCE: u64 = 1_764_547_200_000_001;
const BOT: &str = "fuzz";

/// One venue's canary credential and a policy that permits every catalogued call.
struct Fixture {
    venue: VenueId,
    policy: Policy,
    credential: TestSigner,
    api_key: String,
    secret: Vec<u8>,
    passphrase: Option<Vec<u8>>,
}

/// Runs one input against `venue`'s parser and, if it is accepted, every oracle.
pub fn run(venue: VenueId, data: &[u8]) {
    let Some(request) = request::parse(data) else {
        return;
    };
    let adapter = venue.adapter();
    let Route::Endpoint(endpoint) = route(adapter, &request.method, request.path) else {
        return;
    };
    let input = CallInput {
        query: request.query,
        content_type: request
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: request.body,
        headers: &request.headers,
    };
    let parsed = adapter.parse_at(endpoint, request.path, &input);
    if std::env::var_os("KEYWARD_FUZZ_SHOW").is_some() {
        // For seeing how much of a corpus the parser accepts (`-runs=0` over it).
        match &parsed {
            Ok(call) => eprintln!("accepted {}", call.endpoint.key),
            Err(error) => eprintln!("refused {} {}", endpoint.key, error.reason()),
        }
    }
    match parsed {
        Ok(call) => check_accepted(fixture(venue), adapter, &call, request.body),
        Err(error) => check_refusal(adapter, &error),
    }
}

fn check_refusal(venue: &dyn Venue, error: &ParseError) {
    let refusal = Refusal {
        class: error.class(),
        status: error.status(),
        reason: error.reason(),
        message: error.to_string(),
    };
    let (content_type, body) = venue.refusal(&refusal);
    if content_type.starts_with("application/json")
        && let Err(error) = json::parse(&body)
    {
        panic!(
            "refusal envelope is not JSON ({error}): {}",
            String::from_utf8_lossy(&body)
        );
    }
    if let Some(phrase) = venue.refusal_reason_phrase(&refusal) {
        assert!(
            phrase.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "reason phrase is not printable ASCII: {phrase:?}"
        );
    }
}

fn check_accepted(fixture: &Fixture, venue: &dyn Venue, call: &ParsedCall, bot_body: &[u8]) {
    let bot = fixture.policy.bot(BOT).expect("the fixture bot exists");
    let permit = fixture
        .policy
        .authorize(bot, &call.intent, &NoQuotes)
        .unwrap_or_else(|denied| {
            panic!("a shadow-mode bot granted everything was refused: {denied}")
        });
    let context = SignContext {
        credential: &fixture.credential,
        timestamp_ms: TIMESTAMP_MS,
        recv_window_ms: RECV_WINDOW_MS,
        nonce: NONCE,
    };
    // What keyward answers itself (a question about the API key) must never be signed.
    if venue.answered_by_keyward(call.endpoint) {
        assert!(
            matches!(
                venue.sign(call, &permit, context),
                Err(keyward_venues::SignError::AnsweredByKeyward)
            ),
            "{} is answered by keyward but was signed",
            call.endpoint.key
        );
        return;
    }
    let sent = venue
        .sign(call, &permit, context)
        .unwrap_or_else(|error| panic!("a parsed call could not be signed: {error}"));
    assert_eq!(
        sent.method, call.endpoint.method,
        "the method sent is not the endpoint's"
    );
    let wire = Wire::of(&sent);
    if let Err(mismatch) = verdict(fixture, call, bot_body, &wire) {
        panic!(
            "the bytes sent do not say what keyward parsed: {mismatch}\n  parsed params: {:?}\n  parsed body: {:?}\n  sent: {} {}\n  body: {}",
            call.params,
            call.body,
            sent.method,
            sent.path_and_query,
            String::from_utf8_lossy(&sent.body)
        );
    }
    reparse(venue, call, &wire);
    preview(venue, call, &sent);
}

/// Every oracle's judgement of what keyward would send for `call`, which it parsed
/// from a request with `bot_body`.
fn verdict(
    fixture: &Fixture,
    call: &ParsedCall,
    bot_body: &[u8],
    wire: &Wire<'_>,
) -> Result<(), String> {
    match fixture.venue {
        VenueId::BinanceSpot | VenueId::BinanceUsdm => binance(fixture, call, wire),
        VenueId::Bybit => bybit(fixture, call, wire),
        VenueId::Okx => okx(fixture, call, wire),
        VenueId::Kraken => kraken(fixture, call, wire),
        VenueId::Coinbase => coinbase(call, wire),
    }?;
    amounts_are_sent(call, wire)?;
    named_orders_are_sent(call, wire)?;
    zero_sizes_are_exchange_sized(call, wire)?;
    json_kinds_kept(bot_body, wire.body)
}

/// Every value sent, as (field name, text), at any depth of a JSON body or a form
/// (Binance's `batchOrders` and Kraken's lists included).
fn sent_fields(wire: &Wire<'_>) -> Vec<(String, String)> {
    fn walk(name: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    walk(key, member, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(name, item, out);
                }
            }
            other => out.push((name.to_owned(), member_text(other))),
        }
    }
    let mut out = Vec::new();
    let mut form = |text: &[u8]| {
        for (name, value) in urlencoded::parse(text) {
            match json::parse(value.as_bytes()) {
                Ok(inner @ (Value::Array(_) | Value::Object(_))) => walk(&name, &inner, &mut out),
                _ => out.push((name, value)),
            }
        }
    };
    form(wire.query.as_bytes());
    match json::parse(wire.body) {
        Ok(body) if !wire.body.is_empty() => walk("$", &body, &mut out),
        _ => form(wire.body),
    }
    if let Some(id) = wire.path.rsplit('/').next() {
        out.push(("path".to_owned(), id.to_owned()));
    }
    out
}

/// An amend, edit or cancel is judged against keyward's record of the order it names:
/// the order the exchange will act on must be that one. Every id and client id keyward
/// took as naming an order is among the values sent, and every amend of the intent
/// names one.
fn named_orders_are_sent(call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    let sent = sent_fields(wire);
    let values: Vec<&str> = sent.iter().map(|(_, v)| v.as_str()).collect();
    for reference in call.refs.named() {
        if reference.id.is_none() && reference.client_id.is_none() {
            return Err(format!("an order named by nothing: {reference:?}"));
        }
        for id in reference.id.iter().chain(&reference.client_id) {
            if !values.contains(&id.as_str()) {
                return Err(format!(
                    "keyward judged {id} as the order named, which is not sent"
                ));
            }
        }
    }
    let amends = call.intent.orders.iter().filter(|o| o.amend).count();
    if amends != call.refs.amends.len()
        || call
            .refs
            .amends
            .iter()
            .any(|a| !call.intent.orders.get(a.leg).is_some_and(|o| o.amend))
    {
        return Err(format!(
            "{amends} amends in the intent, {} named orders: {:?}",
            call.refs.amends.len(),
            call.refs.amends
        ));
    }
    Ok(())
}

/// The fields a venue reads an order's size from.
const SIZE_FIELDS: [&str; 11] = [
    "quantity",
    "quoteOrderQty",
    "qty",
    "sz",
    "newSz",
    "volume",
    "order_qty",
    "base_size",
    "quote_size",
    "size",
    "workingQuantity",
];

/// A size of zero is one the exchange decides (Bybit closes the whole position with
/// `qty="0"`): the policy must have judged an order whose size the exchange decides,
/// never an order of size zero it thought harmless.
fn zero_sizes_are_exchange_sized(call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    let zero_sent = sent_fields(wire).iter().any(|(name, value)| {
        SIZE_FIELDS.contains(&name.as_str()) && plain_decimal(value).as_deref() == Some("0")
    });
    if zero_sent
        && call.endpoint.bears_orders()
        && !call.intent.orders.iter().any(|o| o.exchange_sized())
    {
        return Err(
            "a zero size is sent, and no order the policy judged is sized by the exchange"
                .to_owned(),
        );
    }
    Ok(())
}

/// keyward's parsed model holds every value as text, so comparing with it cannot tell
/// `1` from `"1"`; the exchange can. A JSON body sent keeps the kind (string, number,
/// boolean, null, list, object) of every member the bot's JSON body has, at any depth.
fn json_kinds_kept(bot_body: &[u8], sent_body: &[u8]) -> Result<(), String> {
    match (json::parse(bot_body), json::parse(sent_body)) {
        (Ok(bot), Ok(sent)) => same_kinds("$", &bot, &sent),
        _ => Ok(()),
    }
}

fn same_kinds(at: &str, bot: &Value, sent: &Value) -> Result<(), String> {
    match (bot, sent) {
        (Value::Object(bot), Value::Object(sent)) => {
            for (name, value) in sent {
                if let Some((_, original)) = bot.iter().find(|(n, _)| n == name) {
                    same_kinds(&format!("{at}.{name}"), original, value)?;
                }
            }
            Ok(())
        }
        (Value::Array(bot), Value::Array(sent)) => {
            for (index, (original, value)) in bot.iter().zip(sent).enumerate() {
                same_kinds(&format!("{at}[{index}]"), original, value)?;
            }
            Ok(())
        }
        _ if std::mem::discriminant(bot) == std::mem::discriminant(sent) => Ok(()),
        _ => Err(format!(
            "{at} was sent as {} where the bot sent {}",
            sent.render(),
            bot.render()
        )),
    }
}

/// The bytes keyward would send, split the way the exchange reads them.
struct Wire<'a> {
    method: &'a Method,
    path_and_query: &'a str,
    path: &'a str,
    query: &'a str,
    headers: HeaderMap,
    body: &'a [u8],
}

impl<'a> Wire<'a> {
    fn of(sent: &'a Outbound) -> Self {
        let (path, query) = sent
            .path_and_query
            .split_once('?')
            .unwrap_or((sent.path_and_query.as_str(), ""));
        Self {
            method: &sent.method,
            path_and_query: &sent.path_and_query,
            path,
            query,
            headers: sent.headers.iter().cloned().collect(),
            body: &sent.body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn body_text(&self) -> Result<&str, String> {
        std::str::from_utf8(self.body).map_err(|_| "the body sent is not UTF-8".to_owned())
    }

    fn content_type_is(&self, expected: &str) -> Result<(), String> {
        match self.header("content-type") {
            Some(value) if value == expected => Ok(()),
            other => Err(format!(
                "content type {other:?} for a body, expected {expected}"
            )),
        }
    }

    fn no_body(&self) -> Result<(), String> {
        if self.body.is_empty() {
            Ok(())
        } else {
            Err("a body was sent on a request that carries its parameters in the query".to_owned())
        }
    }

    fn no_query(&self) -> Result<(), String> {
        if self.query.is_empty() && self.path_and_query == self.path {
            Ok(())
        } else {
            Err("a query was sent on a request that carries its parameters in the body".to_owned())
        }
    }
}

/// keyward's parsed parameters as owned (name, value) pairs.
fn params(call: &ParsedCall) -> Vec<(String, String)> {
    call.params
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn same(what: &str, sent: &[(String, String)], parsed: &[(String, String)]) -> Result<(), String> {
    if sent == parsed {
        Ok(())
    } else {
        Err(format!("{what}: sent {sent:?}, parsed {parsed:?}"))
    }
}

/// A JSON member as a parameter value: strings as they are, numbers as written,
/// booleans as `true`/`false`, lists and objects in [`Value::render`]'s form.
fn member_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(literal) => literal.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".to_owned(),
        Value::Array(_) | Value::Object(_) => value.render(),
    }
}

/// keyward's value for a member that is a list or object holds that JSON's text; render
/// it the way [`member_text`] renders the member sent, so their forms compare.
fn param_text(sent: &Value, parsed: &str) -> Result<String, String> {
    match sent {
        Value::Array(_) | Value::Object(_) => json::parse(parsed.as_bytes())
            .map(|v| v.render())
            .map_err(|e| format!("parameter holding JSON is not JSON ({e}): {parsed}")),
        _ => Ok(parsed.to_owned()),
    }
}

/// A body sent as one JSON object whose members are exactly the parsed parameters.
fn object_members(body: &Value, call: &ParsedCall) -> Result<(), String> {
    let Value::Object(members) = body else {
        return Err("the JSON body sent is not an object".to_owned());
    };
    let sent: Vec<(String, String)> = members
        .iter()
        .map(|(name, value)| (name.clone(), member_text(value)))
        .collect();
    let mut parsed = Vec::new();
    for ((name, value), (_, member)) in call.params.iter().zip(members) {
        parsed.push(((*name).to_owned(), param_text(member, value)?));
    }
    parsed.extend(params(call).into_iter().skip(members.len()));
    same("JSON body members", &sent, &parsed)
}

fn json_body(wire: &Wire<'_>) -> Result<Value, String> {
    wire.content_type_is("application/json")?;
    json::parse(wire.body).map_err(|e| format!("the body sent is not RFC 8259 JSON: {e}"))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), message)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn expect_header(wire: &Wire<'_>, name: &str, expected: &str) -> Result<(), String> {
    match wire.header(name) {
        Some(value) if value == expected => Ok(()),
        other => Err(format!("header {name}: {other:?}, expected {expected:?}")),
    }
}

/// Binance: `totalParams` (query for GET and DELETE, form body otherwise), then for
/// SIGNED endpoints `recvWindow`, `timestamp` and `signature`, hex HMAC-SHA256 over
/// every byte of `totalParams` before `&signature=`.
fn binance(fixture: &Fixture, call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    let in_query = matches!(*wire.method, Method::GET | Method::DELETE);
    let payload = if in_query {
        wire.no_body()?;
        wire.query
    } else {
        wire.no_query()?;
        if !wire.body.is_empty() {
            wire.content_type_is("application/x-www-form-urlencoded")?;
        }
        wire.body_text()?
    };
    let mut sent = urlencoded::parse(payload.as_bytes());
    if call.endpoint.security != Security::Public {
        expect_header(wire, "x-mbx-apikey", &fixture.api_key)?;
    }
    if call.endpoint.security == Security::Signed {
        let signed = payload
            .rfind("&signature=")
            .map(|at| &payload[..at])
            .ok_or("no signature")?;
        let expected = vec![
            ("recvWindow".to_owned(), RECV_WINDOW_MS.to_string()),
            ("timestamp".to_owned(), TIMESTAMP_MS.to_string()),
            (
                "signature".to_owned(),
                hex(&hmac_sha256(&fixture.secret, signed.as_bytes())),
            ),
        ];
        let tail = sent.split_off(sent.len().saturating_sub(3));
        same("Binance auth fields", &tail, &expected)?;
    }
    same("Binance parameters", &sent, &params(call))?;
    for (name, value) in &call.params {
        if value.starts_with('[') && *name == "batchOrders" {
            binance_batch(value)?;
        }
    }
    Ok(())
}

/// Binance reads `batchOrders` as a JSON list of objects of strings; duplicate names
/// would leave it to Binance which one counts.
fn binance_batch(text: &str) -> Result<(), String> {
    let Value::Array(items) =
        json::parse(text.as_bytes()).map_err(|e| format!("batchOrders is not JSON: {e}"))?
    else {
        return Err("batchOrders is not a list".to_owned());
    };
    for item in &items {
        let Value::Object(members) = item else {
            return Err("a batchOrders element is not an object".to_owned());
        };
        for (index, (name, value)) in members.iter().enumerate() {
            if !matches!(value, Value::String(_)) {
                return Err(format!("batchOrders member {name} is not a string"));
            }
            if members[..index].iter().any(|(n, _)| n == name) {
                return Err(format!("batchOrders member {name} appears twice"));
            }
        }
    }
    Ok(())
}

/// Bybit v5: GET parameters in the query, POST ones as one JSON object; `X-BAPI-SIGN`
/// is hex HMAC-SHA256 over timestamp + API key + recv window + the query or body sent.
fn bybit(fixture: &Fixture, call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    let payload = if *wire.method == Method::GET {
        wire.no_body()?;
        same(
            "Bybit query",
            &urlencoded::parse(wire.query.as_bytes()),
            &params(call),
        )?;
        wire.query
    } else {
        wire.no_query()?;
        object_members(&json_body(wire)?, call)?;
        wire.body_text()?
    };
    if call.endpoint.security == Security::Public {
        return Ok(());
    }
    let timestamp = TIMESTAMP_MS.to_string();
    let window = RECV_WINDOW_MS.to_string();
    let prehash = format!("{timestamp}{}{window}{payload}", fixture.api_key);
    expect_header(wire, "x-bapi-api-key", &fixture.api_key)?;
    expect_header(wire, "x-bapi-timestamp", &timestamp)?;
    expect_header(wire, "x-bapi-recv-window", &window)?;
    expect_header(
        wire,
        "x-bapi-sign",
        &hex(&hmac_sha256(&fixture.secret, prehash.as_bytes())),
    )
}

/// OKX v5: GET parameters in the query, POST ones as a JSON object or a list of them
/// (batches); `OK-ACCESS-SIGN` is base64 HMAC-SHA256 over timestamp + method + request
/// path with query + body.
fn okx(fixture: &Fixture, call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    if *wire.method == Method::GET {
        wire.no_body()?;
        same(
            "OKX query",
            &urlencoded::parse(wire.query.as_bytes()),
            &params(call),
        )?;
    } else {
        wire.no_query()?;
        match json_body(wire)? {
            Value::Array(items) => {
                // keyward's model of a batch is each element's instId, in order.
                let sent: Vec<(String, String)> = items
                    .iter()
                    .map(|item| match item.get("instId") {
                        Some(Value::String(id)) => Ok(("instId".to_owned(), id.clone())),
                        _ => Err("a batch element without a string instId".to_owned()),
                    })
                    .collect::<Result<_, _>>()?;
                same("OKX batch instruments", &sent, &params(call))?;
            }
            object => object_members(&object, call)?,
        }
    }
    if call.endpoint.security == Security::Public {
        return Ok(());
    }
    let prehash = format!(
        "{OKX_TIMESTAMP}{}{}{}",
        wire.method,
        wire.path_and_query,
        wire.body_text()?
    );
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(&fixture.secret, prehash.as_bytes()));
    expect_header(wire, "ok-access-key", &fixture.api_key)?;
    expect_header(wire, "ok-access-timestamp", OKX_TIMESTAMP)?;
    expect_header(wire, "ok-access-sign", &signature)?;
    let passphrase = fixture.passphrase.as_deref().unwrap_or_default();
    expect_header(
        wire,
        "ok-access-passphrase",
        &String::from_utf8_lossy(passphrase),
    )
}

/// Kraken: public calls are GETs with a query; private ones POST a form or JSON body
/// whose first field is the nonce, and `API-Sign` is base64 HMAC-SHA512, keyed with the
/// base64-decoded secret, over the path and SHA-256(nonce + body).
fn kraken(fixture: &Fixture, call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    if call.endpoint.security == Security::Public {
        wire.no_body()?;
        return same(
            "Kraken query",
            &urlencoded::parse(wire.query.as_bytes()),
            &params(call),
        );
    }
    wire.no_query()?;
    let nonce = NONCE.to_string();
    let sent = if wire.header("content-type") == Some("application/json") {
        let Value::Object(members) = json_body(wire)? else {
            return Err("the JSON body sent is not an object".to_owned());
        };
        let mut fields = Vec::new();
        for (name, value) in members {
            match (name.as_str(), value) {
                // The nested close template is what the form encoding flattens to
                // close[ordertype], close[price], close[price2].
                ("close", Value::Object(inner)) => fields.extend(
                    inner
                        .iter()
                        .map(|(key, value)| (format!("close[{key}]"), member_text(value))),
                ),
                // Lists (batch orders, txid lists) are outside keyward's flat model.
                (_, Value::Array(_)) => {}
                (_, value) => fields.push((name, member_text(&value))),
            }
        }
        fields
    } else {
        wire.content_type_is("application/x-www-form-urlencoded")?;
        urlencoded::parse(wire.body)
    };
    let Some((first, rest)) = sent.split_first() else {
        return Err("an empty private body".to_owned());
    };
    same(
        "Kraken nonce",
        std::slice::from_ref(first),
        &[("nonce".to_owned(), nonce.clone())],
    )?;
    same("Kraken fields", rest, &params(call))?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(&fixture.secret)
        .map_err(|_| "the fixture's Kraken secret is not base64")?;
    let mut inner = ring::digest::Context::new(&ring::digest::SHA256);
    inner.update(nonce.as_bytes());
    inner.update(wire.body);
    let mut message = wire.path.as_bytes().to_vec();
    message.extend_from_slice(inner.finish().as_ref());
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, &secret),
        &message,
    );
    expect_header(wire, "api-key", &fixture.api_key)?;
    expect_header(
        wire,
        "api-sign",
        &base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
    )
}

/// Coinbase Advanced Trade: ids in the path, filters in the query, orders as a JSON
/// body; the JWT's `uri` claim binds the method, host and path sent.
fn coinbase(call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    let template = call.endpoint.path;
    let mut sent: Vec<(String, String)> = Vec::new();
    let template_parts: Vec<&str> = template.split('/').collect();
    let path_parts: Vec<&str> = wire.path.split('/').collect();
    if template_parts.len() != path_parts.len() {
        return Err(format!("path {} does not fit {template}", wire.path));
    }
    for (part, segment) in template_parts.iter().zip(&path_parts) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) => sent.push((name.to_owned(), percent_decode_segment(segment)?)),
            None if part == segment => {}
            None => return Err(format!("path {} does not fit {template}", wire.path)),
        }
    }
    sent.extend(urlencoded::parse(wire.query.as_bytes()));
    let parsed = params(call);
    let (positional, scalars) = parsed.split_at(sent.len().min(parsed.len()));
    same("Coinbase path and query", &sent, positional)?;
    match &call.body {
        None => {
            wire.no_body()?;
            if !scalars.is_empty() {
                return Err(format!("parameters sent nowhere: {scalars:?}"));
            }
        }
        Some(_) => {
            wire.no_query()?;
            let body = json_body(wire)?;
            for (name, value) in scalars {
                coinbase_scalar(call, &body, name, value)?;
            }
        }
    }
    match (call.endpoint.security, wire.header("authorization")) {
        (Security::Public, None) => Ok(()),
        (Security::Public, Some(_)) => Err("a public call carries a JWT".to_owned()),
        (_, Some(bearer)) => coinbase_jwt_uri(bearer, wire),
        (_, None) => Err("a private call without a JWT".to_owned()),
    }
}

/// Where each of keyward's body scalars is in the body sent: the order type is the one
/// member of `order_configuration`; an edit's `product_id` is checked by keyward and,
/// as documented, not forwarded; every other scalar is a string member.
fn coinbase_scalar(call: &ParsedCall, body: &Value, name: &str, value: &str) -> Result<(), String> {
    let found = match (name, body.get(name)) {
        ("order_type", _) => match body.get("order_configuration") {
            Some(Value::Object(variants)) if variants.len() == 1 => variants[0].0 == value,
            _ => false,
        },
        ("product_id", None) => call.endpoint.path.contains("/orders/edit"),
        (_, Some(Value::String(sent))) => sent == value,
        _ => false,
    };
    if found {
        Ok(())
    } else {
        Err(format!("parsed {name}={value:?}, not what the body says"))
    }
}

/// RFC 3986 percent-decoding of one path segment (`+` is a plus there).
fn percent_decode_segment(segment: &str) -> Result<String, String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = segment
                .get(at + 1..at + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in path segment {segment}"))?;
            out.push(hex);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("path segment {segment} is not UTF-8"))
}

fn coinbase_jwt_uri(bearer: &str, wire: &Wire<'_>) -> Result<(), String> {
    let claims = bearer
        .strip_prefix("Bearer ")
        .and_then(|jwt| jwt.split('.').nth(1))
        .ok_or("authorization is not a bearer JWT")?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| "JWT claims are not base64url")?;
    let claims = json::parse(&claims).map_err(|e| format!("JWT claims are not JSON: {e}"))?;
    let expected = format!("{} api.coinbase.com{}", wire.method, wire.path);
    match claims.get("uri") {
        Some(Value::String(uri)) if *uri == expected => Ok(()),
        other => Err(format!("JWT uri {other:?}, expected {expected}")),
    }
}

/// Every size, price and trigger the policy judged is a value the exchange reads: an
/// amount keyward made up (a default, a rounding) would let the policy approve other
/// numbers than those that trade. Only that some parameter sent carries the value is
/// checked, not which: a price read from another field sent with the same value passes.
fn amounts_are_sent(call: &ParsedCall, wire: &Wire<'_>) -> Result<(), String> {
    let mut sent = Vec::new();
    for (_, value) in urlencoded::parse(wire.query.as_bytes()) {
        scalar_values(&value, &mut sent);
    }
    match json::parse(wire.body) {
        Ok(body) if !wire.body.is_empty() => json_values(&body, &mut sent),
        _ => {
            for (_, value) in urlencoded::parse(wire.body) {
                scalar_values(&value, &mut sent);
            }
        }
    }
    let sent: Vec<String> = sent.iter().filter_map(|v| plain_decimal(v)).collect();
    for order in &call.intent.orders {
        let size = match order.size {
            keyward_policy::Size::Base(amount) | keyward_policy::Size::Quote(amount) => {
                Some(amount)
            }
            keyward_policy::Size::WholePosition => None,
        };
        for (what, amount) in [
            ("size", size),
            ("price", order.price),
            ("trigger", order.trigger),
        ] {
            let Some(amount) = amount else {
                continue;
            };
            let shown = plain_decimal(&amount.to_string()).unwrap_or_default();
            if !sent.contains(&shown) {
                return Err(format!(
                    "the policy judged {what} {amount} of a {} {:?} order, but no field sent says {shown}",
                    order.order_type, order.side
                ));
            }
        }
    }
    Ok(())
}

/// A form value, and the strings inside it if it is JSON (Binance's `batchOrders`).
fn scalar_values(value: &str, out: &mut Vec<String>) {
    match json::parse(value.as_bytes()) {
        Ok(inner @ (Value::Array(_) | Value::Object(_))) => json_values(&inner, out),
        _ => out.push(value.to_owned()),
    }
}

fn json_values(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => scalar_values(text, out),
        Value::Number(literal) => out.push(literal.clone()),
        Value::Array(items) => items.iter().for_each(|item| json_values(item, out)),
        Value::Object(members) => members.iter().for_each(|(_, v)| json_values(v, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// `digits[.digits]` without redundant zeros, or `None` if `text` is not that shape.
fn plain_decimal(text: &str) -> Option<String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || (text.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    Some(if fraction.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{fraction}")
    })
}

/// keyward's parser reads the request it would send back into the same call.
fn reparse(venue: &dyn Venue, call: &ParsedCall, wire: &Wire<'_>) {
    let Route::Endpoint(endpoint) = route(venue, wire.method, wire.path) else {
        panic!(
            "the path sent does not route back to its endpoint: {}",
            wire.path
        );
    };
    assert_eq!(
        endpoint.key, call.endpoint.key,
        "the path sent routes elsewhere"
    );
    let body = with_dropped_fields(call, wire.body);
    let input = CallInput {
        query: wire.query,
        content_type: wire.header("content-type"),
        body: &body,
        headers: &wire.headers,
    };
    let again = venue
        .parse_at(endpoint, wire.path, &input)
        .unwrap_or_else(|error| {
            panic!(
                "keyward refuses the request it would send ({error}): {} {}\n  body: {}",
                wire.method,
                wire.path_and_query,
                String::from_utf8_lossy(wire.body)
            )
        });
    assert_eq!(again.params, call.params, "re-parsed parameters differ");
    assert_eq!(again.body, call.body, "re-parsed body differs");
    assert_eq!(again.intent, call.intent, "re-parsed intent differs");
    assert_eq!(again.refs, call.refs, "re-parsed order references differ");
}

/// The body sent, plus what keyward requires but documents it does not forward: a
/// Coinbase edit's `product_id` (Coinbase knows the order's product; keyward checks it).
fn with_dropped_fields(call: &ParsedCall, body: &[u8]) -> Vec<u8> {
    let product = call.params.iter().find(|(name, _)| *name == "product_id");
    match (
        call.endpoint.path.contains("/orders/edit"),
        product,
        body.strip_suffix(b"}"),
    ) {
        (true, Some((_, product)), Some(open)) => {
            let mut restored = open.to_vec();
            restored.extend_from_slice(
                format!(
                    ",\"product_id\":{}}}",
                    Value::String(product.clone()).render()
                )
                .as_bytes(),
            );
            restored
        }
        _ => body.to_vec(),
    }
}

/// `keyward explain` shows what is sent, wherever its preview has no placeholders.
fn preview(venue: &dyn Venue, call: &ParsedCall, sent: &Outbound) {
    let preview = venue.preview(call, RECV_WINDOW_MS);
    assert_eq!(preview.method, sent.method, "explain names another method");
    let exact = match venue.id() {
        VenueId::Bybit | VenueId::Okx | VenueId::Coinbase => true,
        VenueId::Kraken => call.endpoint.security == Security::Public,
        VenueId::BinanceSpot | VenueId::BinanceUsdm => call.endpoint.security != Security::Signed,
    };
    if exact {
        assert_eq!(
            preview.path_and_query, sent.path_and_query,
            "explain shows another target"
        );
        assert_eq!(
            preview.body.as_bytes(),
            sent.body.as_slice(),
            "explain shows another body"
        );
    }
}

fn fixture(venue: VenueId) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; VenueId::ALL.len()] =
        [const { OnceLock::new() }; VenueId::ALL.len()];
    let index = VenueId::ALL
        .iter()
        .position(|v| *v == venue)
        .expect("a known venue");
    FIXTURES[index].get_or_init(|| build_fixture(venue))
}

fn build_fixture(venue: VenueId) -> Fixture {
    use keyward_tests::{canary, venues};
    // The canary keys of the end-to-end fixtures, held by the venues crate's test
    // signer: the venue harness needs no part of the proxy. Coinbase's key is made
    // fresh (the oracle checks the JWT's claims, not who signed it).
    let (api_key, secret, passphrase): (&str, &[u8], Option<&str>) = match venue {
        VenueId::BinanceSpot | VenueId::BinanceUsdm => {
            (canary::API_KEY, canary::SECRET.as_bytes(), None)
        }
        VenueId::Bybit => (
            venues::bybit::CANARY_API_KEY,
            venues::bybit::CANARY_SECRET.as_bytes(),
            None,
        ),
        VenueId::Okx => (
            venues::okx::API_KEY,
            venues::okx::SECRET.as_bytes(),
            Some(venues::okx::PASSPHRASE),
        ),
        VenueId::Kraken => (
            venues::kraken::API_KEY,
            venues::kraken::SECRET.as_bytes(),
            None,
        ),
        VenueId::Coinbase => (venues::coinbase::CANARY_KEY_NAME, &[][..], None),
    };
    let mut credential = if venue == VenueId::Coinbase {
        TestSigner::generated_ec_p256(api_key)
    } else {
        TestSigner::hmac(api_key, secret)
    };
    if let Some(passphrase) = passphrase {
        credential = credential.with_passphrase(passphrase);
    }
    let adapter = venue.adapter();
    let grants = adapter.catalogue().grant_all();
    let bot = BotPolicy::new(BotSpec {
        name: BOT.into(),
        account: BOT.into(),
        tokens: vec![TokenDigest::of("kw_fuzz_unused")],
        revoked_tokens: vec![],
        keys: BotKeys::default(),
        expires: SystemTime::now() + Duration::from_secs(365 * 86_400),
        grants,
        symbols: vec![],
        order_types: adapter
            .order_types()
            .iter()
            .map(|t| t.name.into())
            .collect(),
        allow_margin: true,
        allow_position_close: true,
        adopt_orders: false,
        exchange_share: None,
        max_order_notional: Some("1000000000000".parse().expect("a decimal")),
        max_order_qty: vec![],
        rate: None,
        order_rate: None,
        // Shadow mode permits whatever only the policy would refuse (symbols, sizes,
        // prices without a reference), so every parsed call reaches the signer.
        mode: Mode::Shadow,
        price_band: None,
        budget: BudgetLimits::default(),
    })
    .expect("fixture bot");
    let policy = Policy::new(
        vec![bot],
        vec![AccountSpec {
            name: BOT.into(),
            rate: None,
            public_market_data: false,
        }],
    )
    .expect("fixture policy");
    Fixture {
        venue,
        policy,
        credential,
        api_key: api_key.to_owned(),
        secret: secret.to_vec(),
        passphrase: passphrase.map(|p| p.as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input a venue target once failed on (kept under `regressions/venue_*`)
    /// passes every oracle now.
    #[test]
    fn every_kept_venue_input_passes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let mut replayed = 0;
        for venue in VenueId::ALL {
            let target = format!("venue_{}", venue.name().replace('-', "_"));
            let Ok(entries) = std::fs::read_dir(root.join(&target)) else {
                continue;
            };
            for entry in entries {
                run(venue, &std::fs::read(entry.unwrap().path()).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed >= 2, "{replayed} kept inputs");
    }

    /// A request the venue accepts, and what keyward would send for it.
    fn accepted(venue: VenueId, raw: &str) -> (ParsedCall, Outbound) {
        let request = request::parse(raw.as_bytes()).unwrap();
        let adapter = venue.adapter();
        let Route::Endpoint(endpoint) = route(adapter, &request.method, request.path) else {
            panic!("not routed: {raw}");
        };
        let input = CallInput {
            query: request.query,
            content_type: request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            body: request.body,
            headers: &request.headers,
        };
        let call = adapter.parse_at(endpoint, request.path, &input).unwrap();
        let fixture = fixture(venue);
        let bot = fixture.policy.bot(BOT).unwrap();
        let permit = fixture
            .policy
            .authorize(bot, &call.intent, &NoQuotes)
            .unwrap();
        let context = SignContext {
            credential: &fixture.credential,
            timestamp_ms: TIMESTAMP_MS,
            recv_window_ms: RECV_WINDOW_MS,
            nonce: NONCE,
        };
        let sent = adapter.sign(&call, &permit, context).unwrap();
        (call, sent)
    }

    /// `sent` with `from` replaced by `to` in its body, then signed again with the
    /// fixture's secret as the venue signs, so that only the comparison of what was
    /// sent with what keyward parsed can tell.
    fn tampered(fixture: &Fixture, sent: &Outbound, from: &str, to: &str) -> Outbound {
        let body = String::from_utf8(sent.body.clone()).unwrap();
        assert!(body.contains(from), "{from} not in {body}");
        let mut body = body.replacen(from, to, 1);
        let mut headers = sent.headers.clone();
        match fixture.venue {
            VenueId::BinanceSpot | VenueId::BinanceUsdm => {
                let at = body.rfind("&signature=").unwrap();
                let signature = hex(&hmac_sha256(&fixture.secret, &body.as_bytes()[..at]));
                body = format!("{}&signature={signature}", &body[..at]);
            }
            VenueId::Bybit => {
                let prehash = format!("{TIMESTAMP_MS}{}{RECV_WINDOW_MS}{body}", fixture.api_key);
                let signature = hex(&hmac_sha256(&fixture.secret, prehash.as_bytes()));
                for (name, value) in &mut headers {
                    if name == "x-bapi-sign" {
                        *value = http::HeaderValue::from_str(&signature).unwrap();
                    }
                }
            }
            other => panic!("no re-signing for {other:?}"),
        }
        Outbound {
            method: sent.method.clone(),
            path_and_query: sent.path_and_query.clone(),
            headers,
            body: body.into_bytes(),
        }
    }

    #[test]
    fn the_binance_oracle_catches_reordered_plus_and_resigned_bytes() {
        let venue = VenueId::BinanceSpot;
        let (call, sent) = accepted(
            venue,
            "POST /api/v3/order\ncontent-type: application/x-www-form-urlencoded\n\nsymbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000",
        );
        let fixture = fixture(venue);
        binance(fixture, &call, &Wire::of(&sent)).unwrap();
        // Other order, a `+` the exchange reads as a space, a signature over other bytes.
        for (from, to) in [
            ("side=BUY&type=LIMIT", "type=LIMIT&side=BUY"),
            ("quantity=0.001", "quantity=0.0+01"),
            ("timestamp=", "timestamp=1"),
        ] {
            let bad = tampered(fixture, &sent, from, to);
            assert!(binance(fixture, &call, &Wire::of(&bad)).is_err(), "{to}");
        }
    }

    #[test]
    fn the_order_oracles_catch_another_order_named_and_a_harmless_looking_zero() {
        let venue = VenueId::Bybit;
        let amend = r#"{"category":"linear","symbol":"BTCUSDT","orderId":"42","price":"60001"}"#;
        let (call, sent) = accepted(
            venue,
            &format!("POST /v5/order/amend\ncontent-type: application/json\n\n{amend}"),
        );
        let fixture = fixture(venue);
        verdict(fixture, &call, amend.as_bytes(), &Wire::of(&sent)).unwrap();
        // The exchange would act on order 43; keyward judged order 42.
        let other = tampered(fixture, &sent, r#""orderId":"42""#, r#""orderId":"43""#);
        let judged = named_orders_are_sent(&call, &Wire::of(&other)).unwrap_err();
        assert!(judged.contains("42"), "{judged}");
        // A whole-position close (qty "0") judged as one passes; the same bytes under
        // an intent that thought the order small do not.
        let close = r#"{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0","reduceOnly":true,"closeOnTrigger":true}"#;
        let (mut call, sent) = accepted(
            venue,
            &format!("POST /v5/order/create\ncontent-type: application/json\n\n{close}"),
        );
        zero_sizes_are_exchange_sized(&call, &Wire::of(&sent)).unwrap();
        call.intent.orders[0].size = keyward_policy::Size::Base("0.001".parse().unwrap());
        assert!(zero_sizes_are_exchange_sized(&call, &Wire::of(&sent)).is_err());
    }

    #[test]
    fn the_json_oracles_catch_other_members_and_invalid_json() {
        let venue = VenueId::Bybit;
        let bot_body = r#"{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000","positionIdx":1}"#;
        let (call, sent) = accepted(
            venue,
            &format!("POST /v5/order/create\ncontent-type: application/json\n\n{bot_body}"),
        );
        let fixture = fixture(venue);
        verdict(fixture, &call, bot_body.as_bytes(), &Wire::of(&sent)).unwrap();
        for (from, to) in [
            (r#""positionIdx":1"#, r#""positionIdx":01"#),
            (r#""positionIdx":1"#, r#""positionIdx":"1""#),
            (r#""qty":"0.001""#, r#""qty":"0.001","qty":"9""#),
        ] {
            let bad = tampered(fixture, &sent, from, to);
            assert!(
                verdict(fixture, &call, bot_body.as_bytes(), &Wire::of(&bad)).is_err(),
                "{to}"
            );
        }
    }
}
