//! Endpoint catalogues as data: each endpoint's exact parameter set, each parameter's
//! charset and bounded length, and how its orders are laid out ([`Leg`]).
//!
//! Values are validated here once; everything downstream (policy, signer) works on
//! the validated strings and typed decimals, never on what the bot sent.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::Method;
use keyward_policy::{Decimal, EndpointClass, Execution, Order, Side, Size, Symbol};

use super::ParseError;

/// How an endpoint authenticates at the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No key, no signature (public market data).
    Public,
    /// The API-key header only.
    ApiKey,
    /// API key, timestamp, receive window and signature.
    Signed,
}

/// The value grammar of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A trading symbol: 1 to 32 letters or digits (Unicode letters included, since
    /// exchanges now list non-ASCII symbols).
    Symbol,
    /// A non-negative exact decimal: `(0|[1-9][0-9]*)(\.[0-9]+)?`.
    Decimal,
    /// A non-negative integer without sign or leading zeros, at most 19 digits.
    Int,
    /// `true` or `false`.
    Bool,
    /// A client-chosen order id: 1 to 36 of `[A-Za-z0-9._:/-]`.
    ClientId,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// A JSON array of 1 to 100 symbols, e.g. `["BTCUSDT","ETHUSDT"]`.
    SymbolList,
    /// A JSON array of 1 to 100 words from a fixed set.
    EnumList(&'static [&'static str]),
    /// A JSON array of 1 to 10 integers.
    IntList,
    /// A JSON array of 1 to 10 client order ids.
    ClientIdList,
    /// A time zone offset such as `0`, `+8`, `-1:30` or `+08:00`.
    TimeZone,
    /// A rolling window such as `1m`, `2h` or `7d`.
    WindowSize,
    /// A JSON list of orders; its element schema is in the endpoint's [`Shape::Batch`].
    Batch,
}

/// One accepted parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Exact key, case-sensitive.
    pub name: &'static str,
    /// Value grammar.
    pub kind: Kind,
    /// True if the request is refused without it.
    pub required: bool,
}

/// A required parameter.
pub const fn req(name: &'static str, kind: Kind) -> Param {
    Param {
        name,
        kind,
        required: true,
    }
}

/// An optional parameter.
pub const fn opt(name: &'static str, kind: Kind) -> Param {
    Param {
        name,
        kind,
        required: false,
    }
}

/// Where an order's type comes from.
#[derive(Debug, Clone, Copy)]
pub enum TypeSource {
    /// A parameter names it.
    Param(&'static str),
    /// The endpoint implies it (an amend of a limit order).
    Fixed(&'static str),
}

/// Which parameters make up one order inside a request.
#[derive(Debug, Clone, Copy)]
pub struct Leg {
    /// Side parameter.
    pub side: &'static str,
    /// Order type.
    pub order_type: TypeSource,
    /// Base quantity parameter.
    pub quantity: Option<&'static str>,
    /// Quote quantity parameter.
    pub quote_quantity: Option<&'static str>,
    /// Limit price parameter.
    pub price: Option<&'static str>,
    /// Trigger price parameter.
    pub trigger: Option<&'static str>,
    /// Trailing parameter; its presence makes a stop trail the market.
    pub trailing: Option<&'static str>,
    /// Boolean parameter that, when `true`, sizes the order as the whole position
    /// (and makes it reduce-only).
    pub close_position: Option<&'static str>,
    /// Boolean parameter that, when `true`, makes the order reduce-only.
    pub reduce_only: Option<&'static str>,
    /// The parameter holding the order's client order id.
    pub client_id: Option<&'static str>,
    /// True if the leg exists only when its type parameter is present.
    pub optional: bool,
    /// True if this changes an existing order.
    pub amend: bool,
}

impl Leg {
    /// A leg with only side and type; fill in the rest with struct update syntax.
    pub const fn new(side: &'static str, order_type: TypeSource) -> Self {
        Self {
            side,
            order_type,
            quantity: None,
            quote_quantity: None,
            price: None,
            trigger: None,
            trailing: None,
            close_position: None,
            reduce_only: None,
            client_id: None,
            optional: false,
            amend: false,
        }
    }
}

/// How an endpoint's orders are laid out.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// No orders (reads, cancels, settings).
    NoOrders,
    /// Orders from legs over the top-level parameters (single orders, order lists,
    /// cancel-replace).
    Legs(&'static [Leg]),
    /// A JSON list in one parameter, each element an order with its own schema.
    Batch {
        /// The parameter holding the list.
        param: &'static str,
        /// Most elements the exchange accepts.
        max: usize,
        /// Element schema.
        element: &'static [Param],
        /// How each element is an order.
        leg: &'static Leg,
    },
}

/// One catalogued endpoint.
#[derive(Debug)]
pub struct EndpointSpec {
    /// `METHOD /path`, the key operators name in `endpoints`.
    pub key: &'static str,
    /// Method.
    pub method: Method,
    /// Exact path.
    pub path: &'static str,
    /// What it does.
    pub class: EndpointClass,
    /// How it authenticates upstream.
    pub security: Security,
    /// Accepted parameters, in the canonical order keyward sends them.
    pub params: &'static [Param],
    /// Its orders.
    pub shape: Shape,
}

impl EndpointSpec {
    /// True if requests to it can place or change orders.
    pub fn bears_orders(&self) -> bool {
        !matches!(self.shape, Shape::NoOrders)
    }

    /// The policy's view of this endpoint.
    pub fn endpoint_ref(&self) -> keyward_policy::EndpointRef {
        keyward_policy::EndpointRef {
            key: Arc::from(self.key),
            class: self.class,
        }
    }
}

/// An order type a venue knows, and how it executes.
#[derive(Debug, Clone, Copy)]
pub struct OrderTypeSpec {
    /// The venue's name for it.
    pub name: &'static str,
    /// How it executes.
    pub execution: Execution,
}

/// Checks `value` against `kind`; the error says what the value should look like.
pub fn validate(kind: Kind, value: &str) -> Result<(), &'static str> {
    let ok = match kind {
        Kind::Symbol => is_symbol(value),
        Kind::Decimal => value.parse::<Decimal>().is_ok(),
        Kind::Int => is_int(value),
        Kind::Bool => value == "true" || value == "false",
        Kind::ClientId => is_client_id(value),
        Kind::Enum(words) => words.contains(&value),
        Kind::SymbolList => is_json_list(value, 100, is_symbol),
        Kind::EnumList(words) => is_json_list(value, 100, |item| words.contains(&item)),
        Kind::ClientIdList => is_json_list(value, 10, is_client_id),
        Kind::IntList => is_int_list(value),
        Kind::TimeZone => is_time_zone(value),
        Kind::WindowSize => is_window_size(value),
        // Batches are validated element by element by the venue's batch reader.
        Kind::Batch => true,
    };
    if ok { Ok(()) } else { Err(expectation(kind)) }
}

fn expectation(kind: Kind) -> &'static str {
    match kind {
        Kind::Symbol => "a symbol of 1 to 32 letters or digits",
        Kind::Decimal => "a plain decimal such as 0.001 (no sign, exponent or leading zeros)",
        Kind::Int => "a non-negative integer without leading zeros",
        Kind::Bool => "true or false",
        Kind::ClientId => "1 to 36 of A-Z a-z 0-9 . _ : / -",
        Kind::Enum(_) => "one of the values the exchange documents for it",
        Kind::SymbolList => "a JSON array of symbols",
        Kind::EnumList(_) => "a JSON array of documented values",
        Kind::ClientIdList => "a JSON array of at most 10 client order ids",
        Kind::IntList => "a JSON array of at most 10 integers",
        Kind::TimeZone => "an offset such as 0, +8 or -01:30",
        Kind::WindowSize => "a window such as 1m, 4h or 7d",
        Kind::Batch => "a JSON list of orders",
    }
}

fn is_symbol(value: &str) -> bool {
    let count = value.chars().count();
    (1..=32).contains(&count) && value.chars().all(char::is_alphanumeric)
}

fn is_int(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 19
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'))
}

fn is_client_id(value: &str) -> bool {
    (1..=36).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

fn is_json_list(value: &str, max: usize, item_ok: impl Fn(&str) -> bool) -> bool {
    match super::json::Json::parse(value) {
        Ok(super::json::Json::Array(items)) => {
            (1..=max).contains(&items.len())
                && items.iter().all(|item| match item {
                    super::json::Json::String(text) => item_ok(text),
                    _ => false,
                })
        }
        _ => false,
    }
}

fn is_int_list(value: &str) -> bool {
    match super::json::Json::parse(value) {
        Ok(super::json::Json::Array(items)) => {
            (1..=10).contains(&items.len())
                && items
                    .iter()
                    .all(|item| matches!(item, super::json::Json::Integer(n) if *n >= 0))
        }
        _ => false,
    }
}

fn is_time_zone(value: &str) -> bool {
    let unsigned = value
        .strip_prefix('+')
        .or_else(|| value.strip_prefix('-'))
        .unwrap_or(value);
    let (hours, minutes) = unsigned.split_once(':').unwrap_or((unsigned, "00"));
    let digits = |s: &str, max_len: usize| {
        !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())
    };
    digits(hours, 2) && digits(minutes, 2) && minutes.len() == 2
}

fn is_window_size(value: &str) -> bool {
    let Some(unit_at) = value.find(|c: char| !c.is_ascii_digit()) else {
        return false;
    };
    let (count, unit) = value.split_at(unit_at);
    (1..=2).contains(&count.len()) && !count.starts_with('0') && matches!(unit, "m" | "h" | "d")
}

/// Validated parameters by name, for building orders.
pub type Values<'a> = HashMap<&'static str, &'a str, BuildHasherDefault<NameHasher>>;

/// FNV-1a, for maps keyed by catalogue parameter names. The names are `'static`
/// strings of keyward's own catalogue, never text from a request, so a keyed hash has
/// nothing to defend against here, and SipHash was a sixth of parsing an order.
#[derive(Debug, Clone, Copy)]
pub struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Builds the orders a leg describes, or `None` for an absent optional leg.
pub fn leg_order(
    leg: &Leg,
    symbol: &Symbol,
    values: &Values<'_>,
    order_types: &[OrderTypeSpec],
) -> Result<Option<Order>, ParseError> {
    let order_type = match leg.order_type {
        TypeSource::Param(name) => match values.get(name) {
            Some(value) => *value,
            None if leg.optional => return Ok(None),
            None => return Err(ParseError::ParamMissing { key: name }),
        },
        TypeSource::Fixed(name) => name,
    };
    let side_name = leg.side;
    let side = match values.get(side_name).copied() {
        Some("BUY") => Side::Buy,
        Some("SELL") => Side::Sell,
        Some(_) => return Err(ParseError::invalid(side_name, "BUY or SELL")),
        None => return Err(ParseError::ParamMissing { key: side_name }),
    };
    let spec = order_types
        .iter()
        .find(|t| t.name == order_type)
        .ok_or_else(|| {
            ParseError::invalid(type_param(leg), "an order type this venue documents")
        })?;
    let decimal = |name: Option<&'static str>| -> Result<Option<Decimal>, ParseError> {
        match name.and_then(|n| values.get(n).map(|v| (n, *v))) {
            Some((name, value)) => value
                .parse::<Decimal>()
                .map(Some)
                .map_err(|_| ParseError::invalid(name, expectation(Kind::Decimal))),
            None => Ok(None),
        }
    };
    let quantity = decimal(leg.quantity)?;
    let quote_quantity = decimal(leg.quote_quantity)?;
    let whole_position = leg
        .close_position
        .and_then(|name| values.get(name))
        .is_some_and(|value| *value == "true");
    let size = match (quantity, quote_quantity, whole_position) {
        (Some(q), None, false) => Size::Base(q),
        (None, Some(q), false) => Size::Quote(q),
        (None, None, true) => Size::WholePosition,
        (None, None, false) => {
            return Err(ParseError::ParamMissing {
                key: leg.quantity.or(leg.quote_quantity).unwrap_or("quantity"),
            });
        }
        _ => {
            return Err(ParseError::invalid(
                leg.quantity.unwrap_or("quantity"),
                "exactly one way of sizing the order (quantity, quote quantity or closePosition)",
            ));
        }
    };
    let trailing = leg.trailing.filter(|name| values.contains_key(name));
    let price = decimal(leg.price)?;
    let trigger = decimal(leg.trigger)?;
    // What the exchange would do with a parameter its order type does not read is
    // not documented (ignored, refused, or read after all); keyward does not guess.
    let stop = matches!(
        spec.execution,
        Execution::StopMarket | Execution::StopLimit | Execution::TrailingMarket
    );
    if let (false, Some(name)) = (stop, trailing) {
        return Err(ParseError::invalid(name, "absent except on stop orders"));
    }
    if let (false, Some(name), Some(_)) = (stop, leg.trigger, trigger) {
        return Err(ParseError::invalid(name, "absent except on stop orders"));
    }
    if let (true, Some(name), Some(_)) = (spec.execution.is_market_like(), leg.price, price) {
        return Err(ParseError::invalid(
            name,
            "absent on orders that fill at the market's price",
        ));
    }
    let execution = match spec.execution {
        Execution::StopMarket if trailing.is_some() => Execution::TrailingMarket,
        other => other,
    };
    Ok(Some(Order {
        symbol: symbol.clone(),
        side,
        order_type: Arc::from(order_type),
        execution,
        size,
        price,
        trigger,
        amend: leg.amend,
        margin: false,
        reduce_only: whole_position
            || leg
                .reduce_only
                .and_then(|name| values.get(name))
                .is_some_and(|value| *value == "true"),
    }))
}

fn type_param(leg: &Leg) -> &'static str {
    match leg.order_type {
        TypeSource::Param(name) => name,
        TypeSource::Fixed(_) => "type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_accept_documented_shapes() {
        let cases: &[(Kind, &str, bool)] = &[
            (Kind::Symbol, "BTCUSDT", true),
            (Kind::Symbol, "１２３４５６", true),
            (Kind::Symbol, "BTCUSDT\n", false),
            (Kind::Symbol, "BTC-USDT", false),
            (Kind::Symbol, "", false),
            (Kind::Decimal, "0.001", true),
            (Kind::Decimal, "1e3", false),
            (Kind::Int, "0", true),
            (Kind::Int, "1499827319559", true),
            (Kind::Int, "01", false),
            (Kind::Int, "-1", false),
            (Kind::Bool, "true", true),
            (Kind::Bool, "TRUE", false),
            (Kind::ClientId, "x-R4BD3S82abc", true),
            (Kind::ClientId, "a b", false),
            (Kind::ClientId, &"a".repeat(37), false),
            (Kind::Enum(&["BUY", "SELL"]), "BUY", true),
            (Kind::Enum(&["BUY", "SELL"]), "buy", false),
            (Kind::SymbolList, r#"["BTCUSDT","ETHUSDT"]"#, true),
            (Kind::SymbolList, r#"["BTCUSDT",1]"#, false),
            (Kind::SymbolList, "[]", false),
            (Kind::IntList, "[1,2]", true),
            (Kind::IntList, "[1.5]", false),
            (Kind::ClientIdList, r#"["a","b"]"#, true),
            (Kind::TimeZone, "+08:00", true),
            (Kind::TimeZone, "-1:30", true),
            (Kind::TimeZone, "0", true),
            (Kind::TimeZone, "8:0", false),
            (Kind::WindowSize, "7d", true),
            (Kind::WindowSize, "07d", false),
            (Kind::WindowSize, "1w", false),
        ];
        for (kind, value, ok) in cases {
            assert_eq!(validate(*kind, value).is_ok(), *ok, "{kind:?} {value:?}");
        }
    }
}
