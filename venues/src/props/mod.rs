//! Property tests of the venue parsers' canonical form, one file per venue: for
//! generated requests inside each catalogue's schemas, the bytes keyward would send
//! (signed with a fixed clock and nonce) parse back to the same call, and are a fixed
//! point; other spellings of the same request that the venue's rules accept (order,
//! percent-encoding, JSON escapes and whitespace) parse to the same call, and the
//! ones they refuse (duplicate keys, a key in two places) are refused with their
//! reason. `PROPTEST_CASES` raises the number of cases (default 256).

use http::{HeaderMap, Method};
use keyward_policy::Intent;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::form::props::respell;
use super::{CallInput, ParseError, ParsedCall, Route, SignContext, Venue, VenueId, route};
use crate::KeyKind;
use crate::schema::Kind;
use crate::test_signer::TestSigner;

mod binance;
mod bybit;
mod coinbase;
mod kraken;
mod okx;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// A request as a bot sends it (its auth headers aside).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    method: Method,
    path: String,
    query: String,
    content_type: Option<String>,
    body: String,
}

impl Request {
    /// `method path?query`, without a body.
    fn query(method: Method, path: &str, query: String) -> Self {
        Self {
            method,
            path: path.to_owned(),
            query,
            content_type: None,
            body: String::new(),
        }
    }

    /// `method path` with `body` of `content_type`.
    fn body(method: Method, path: &str, content_type: &str, body: String) -> Self {
        Self {
            method,
            path: path.to_owned(),
            query: String::new(),
            content_type: Some(content_type.to_owned()),
            body,
        }
    }

    fn from_target(method: Method, target: &str, content_type: Option<&str>, body: String) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            content_type: content_type.map(str::to_owned),
            body,
        }
    }
}

/// Routes and parses `request` as the front would hand it to the venue.
fn parse(venue: &dyn Venue, request: &Request) -> Result<ParsedCall, ParseError> {
    let Route::Endpoint(endpoint) = route(venue, &request.method, &request.path) else {
        panic!("{} {} is not catalogued", request.method, request.path);
    };
    venue.parse_at(
        endpoint,
        &request.path,
        &CallInput {
            query: &request.query,
            content_type: request.content_type.as_deref(),
            body: request.body.as_bytes(),
            headers: &HeaderMap::new(),
        },
    )
}

fn reason(result: &Result<ParsedCall, ParseError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error.reason(),
    }
}

/// What a parsed call means: everything but the auth fields it stripped.
#[derive(Debug, PartialEq)]
struct Model {
    endpoint: &'static str,
    params: Vec<(&'static str, String)>,
    body: Option<String>,
    intent: Intent,
}

fn model(call: &ParsedCall) -> Model {
    Model {
        endpoint: call.endpoint.key,
        params: call.params.clone(),
        body: call.body.clone(),
        intent: call.intent.clone(),
    }
}

/// An HMAC key whose secret is valid base64 (Kraken decodes it) and a passphrase (OKX).
fn credential() -> TestSigner {
    TestSigner::new("props-api-key", KeyKind::Hmac, b"cHJvcHMtc2VjcmV0")
        .with_passphrase("props-passphrase")
}

/// What keyward sends upstream for `call`, as a request: signed with a fixed clock
/// and nonce, so that signing twice gives the same bytes. The auth fields that end up
/// in the query or body (Binance's signature, Kraken's nonce) are the parsers' to
/// strip. Coinbase signs with a fresh random JWT nonce in a header, so its request is
/// the preview, whose path, query and body are the signed ones.
fn sent(venue: &dyn Venue, call: &ParsedCall) -> Request {
    if venue.id() == VenueId::Coinbase {
        let preview = venue.preview(call, 5_000);
        let json = preview
            .headers
            .iter()
            .any(|h| h == "content-type: application/json");
        return Request::from_target(
            preview.method,
            &preview.path_and_query,
            json.then_some(JSON),
            preview.body,
        );
    }
    let credential = credential();
    let permit = super::testkit::shadow_permit(venue, call);
    let outbound = venue
        .sign(
            call,
            &permit,
            SignContext {
                credential: &credential,
                timestamp_ms: 1_700_000_000_000,
                recv_window_ms: 5_000,
                nonce: 1_700_000_000_000_000,
            },
        )
        .unwrap();
    let content_type = outbound
        .headers
        .iter()
        .find(|(name, _)| name == http::header::CONTENT_TYPE)
        .map(|(_, value)| value.to_str().unwrap());
    Request::from_target(
        outbound.method.clone(),
        &outbound.path_and_query,
        content_type,
        String::from_utf8(outbound.body.clone()).unwrap(),
    )
}

/// The round trip: what keyward sends for `call` parses back to the same call, and
/// sending that gives the same bytes again.
fn check_canonical(venue: &dyn Venue, call: &ParsedCall) -> Result<(), TestCaseError> {
    let first = sent(venue, call);
    let again = parse(venue, &first).map_err(|e| {
        TestCaseError::fail(format!(
            "keyward's own {first:?} was refused: {e} ({})",
            e.reason()
        ))
    })?;
    prop_assert_eq!(model(&again), model(call), "through {:?}", first);
    prop_assert_eq!(sent(venue, &again), first);
    Ok(())
}

/// Parses `request`, which the generator made valid; fails the case if refused.
fn accepted(venue: &dyn Venue, request: &Request) -> Result<ParsedCall, TestCaseError> {
    parse(venue, request)
        .map_err(|e| TestCaseError::fail(format!("{request:?} was refused: {e} ({})", e.reason())))
}

/// A JSON value as a generator builds it, written out by [`JsonStyle::write`].
#[derive(Debug, Clone)]
enum Jv {
    /// A JSON string.
    Str(String),
    /// A number, boolean or null, written as is.
    Lit(String),
    /// An object, keys in this order.
    Obj(Vec<(String, Self)>),
    /// An array.
    Arr(Vec<Self>),
}

/// How to write JSON: which characters of strings to write as `\uXXXX` escapes
/// (cycling through `escapes`: 0 plain, 1 lower-case escape, 2 upper-case escape),
/// and whether to put whitespace between tokens.
#[derive(Debug, Clone)]
struct JsonStyle {
    escapes: Vec<u8>,
    spaced: bool,
}

impl JsonStyle {
    /// Compact, no escapes beyond what JSON requires.
    fn plain() -> Self {
        Self {
            escapes: vec![0],
            spaced: false,
        }
    }

    fn any() -> impl Strategy<Value = Self> {
        (proptest::collection::vec(0..3u8, 1..6), any::<bool>())
            .prop_map(|(escapes, spaced)| Self { escapes, spaced })
    }

    fn write(&self, value: &Jv) -> String {
        let mut out = String::new();
        let mut position = 0;
        self.write_into(&mut out, value, &mut position);
        out
    }

    fn write_into(&self, out: &mut String, value: &Jv, position: &mut usize) {
        let space = if self.spaced { " " } else { "" };
        match value {
            Jv::Str(text) => self.write_string(out, text, position),
            Jv::Lit(text) => out.push_str(text),
            Jv::Obj(fields) => {
                out.push('{');
                for (index, (key, field)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                        out.push_str(space);
                    }
                    self.write_string(out, key, position);
                    out.push(':');
                    out.push_str(space);
                    self.write_into(out, field, position);
                }
                out.push('}');
            }
            Jv::Arr(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                        out.push_str(space);
                    }
                    self.write_into(out, item, position);
                }
                out.push(']');
            }
        }
    }

    fn write_string(&self, out: &mut String, text: &str, position: &mut usize) {
        out.push('"');
        for c in text.chars() {
            let choice = self.escapes[*position % self.escapes.len()];
            *position += 1;
            match (c, choice) {
                ('"' | '\\', _) => {
                    out.push('\\');
                    out.push(c);
                }
                (c, 1) if u32::from(c) < 0x1_0000 => {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)))
                }
                (c, 2) if u32::from(c) < 0x1_0000 => {
                    out.push_str(&format!("\\u{:04X}", u32::from(c)))
                }
                (c, _) if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                (c, _) => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Fields of an object with optional ones left out and the rest in any order.
fn some_fields(
    fields: Vec<(&'static str, bool, BoxedStrategy<Jv>)>,
) -> BoxedStrategy<Vec<(String, Jv)>> {
    let parts: Vec<BoxedStrategy<Option<(String, Jv)>>> = fields
        .into_iter()
        .map(|(name, required, value)| {
            if required {
                value.prop_map(move |v| Some((name.to_owned(), v))).boxed()
            } else {
                proptest::option::of(value.prop_map(move |v| (name.to_owned(), v))).boxed()
            }
        })
        .collect();
    parts
        .prop_map(|fields| fields.into_iter().flatten().collect::<Vec<_>>())
        .prop_shuffle()
        .boxed()
}

/// A decimal as bots write them: short prices and sizes, and long ones near the
/// 19-digit, 18-decimal limits.
fn decimal() -> BoxedStrategy<String> {
    prop_oneof![
        3 => (1..100_000u64, 0..4u32).prop_map(|(m, s)| with_scale(u128::from(m), s)),
        1 => (0..10_000_000_000_000_000_000u64, 0..=18u32).prop_map(|(m, s)| with_scale(u128::from(m), s)),
        1 => (1..1_000u64, 0..=8u32, 1..4usize).prop_map(|(m, s, zeros)| {
            // Trailing zeros are kept as written.
            let text = with_scale(u128::from(m), s);
            if text.contains('.') { format!("{text}{}", "0".repeat(zeros)) } else { format!("{text}.{}", "0".repeat(zeros)) }
        }),
    ]
    .boxed()
}

fn with_scale(mantissa: u128, scale: u32) -> String {
    let digits = format!("{mantissa:0>width$}", width = scale as usize + 1);
    let (integer, fraction) = digits.split_at(digits.len() - scale as usize);
    if fraction.is_empty() {
        integer.to_owned()
    } else {
        format!("{integer}.{fraction}")
    }
}

/// A non-negative integer without leading zeros.
fn int() -> BoxedStrategy<String> {
    prop_oneof![
        (0..1_000_000u64).prop_map(|n| n.to_string()),
        "[1-9][0-9]{0,18}"
    ]
    .boxed()
}

/// A request's pairs written with random percent-escapes (keys and values alike).
fn respelled_pairs(pairs: &[(String, String)], choices: &[u8]) -> String {
    pairs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let shifted: Vec<u8> = choices.iter().map(|c| c.wrapping_add(i as u8)).collect();
            format!("{}={}", respell(k, &shifted), respell(v, choices))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn encode_pairs(pairs: &[(String, String)]) -> String {
    super::form::encode_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn schema_symbol() -> BoxedStrategy<String> {
    prop_oneof![4 => "[A-Z0-9]{1,12}", 1 => "[\u{4e00}-\u{9fa5}]{1,4}", 1 => "[１-９]{1,6}"].boxed()
}

fn json_list(item: BoxedStrategy<String>, max: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(item, 1..=max)
        .prop_map(|items| {
            JsonStyle::plain().write(&Jv::Arr(items.into_iter().map(Jv::Str).collect()))
        })
        .boxed()
}

/// A value in `kind`'s grammar of the shared schema (batches are built per venue).
fn schema_value(kind: Kind) -> BoxedStrategy<String> {
    match kind {
        Kind::Symbol => schema_symbol(),
        Kind::Decimal => decimal(),
        Kind::Int => int(),
        Kind::Bool => prop_oneof![Just("true".to_owned()), Just("false".to_owned())].boxed(),
        Kind::ClientId => "[A-Za-z0-9._:/-]{1,36}".boxed(),
        Kind::Enum(words) => proptest::sample::select(words)
            .prop_map(str::to_owned)
            .boxed(),
        Kind::SymbolList => json_list(schema_symbol(), 4),
        Kind::EnumList(words) => json_list(
            proptest::sample::select(words)
                .prop_map(str::to_owned)
                .boxed(),
            3,
        ),
        Kind::IntList => proptest::collection::vec(0..1_000_000u64, 1..=10)
            .prop_map(|ids| format!("{ids:?}").replace(' ', ""))
            .boxed(),
        Kind::ClientIdList => json_list("[A-Za-z0-9._:/-]{1,36}".boxed(), 10),
        Kind::TimeZone => prop_oneof!["0", "[+-]?[0-9]{1,2}", "[+-]?[0-9]{1,2}:[0-9]{2}"].boxed(),
        Kind::WindowSize => "[1-9][0-9]?[mhd]".boxed(),
        Kind::Batch => unreachable!("batches are built from the endpoint's element schema"),
    }
}
