//! The strict `key=value&...` grammar shared by query strings and form bodies, and the
//! canonical encoder keyward signs with.
//!
//! Parsing decodes `%XX` exactly once and nothing else: `+` stays a literal `+` (every
//! forwarded value's charset then rejects it, so "space or plus?" never has to be
//! answered). Keys without `=`, empty keys, `;`, raw non-ASCII, control characters,
//! invalid escapes and non-UTF-8 results are refused. Duplicates are reported, not
//! resolved.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a query string or form body does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A byte outside the accepted raw set (`;`, `#`, space, control, non-ASCII).
    #[error("character {0:?} is not allowed unencoded in parameters")]
    RawByte(char),
    /// A pair without `=`, with an empty key, or with a second `=`.
    #[error("every parameter must be one non-empty key, '=', and a value")]
    PairShape,
    /// `%` not followed by two hex digits.
    #[error("invalid percent-encoding")]
    BadEscape,
    /// Decoded bytes are not UTF-8 or contain control characters.
    #[error("a decoded parameter is not printable UTF-8")]
    BadDecoded,
    /// More pairs than any endpoint takes.
    #[error("too many parameters (at most {0})")]
    TooMany(usize),
    /// A key appears twice.
    #[error("parameter `{0}` appears more than once")]
    Duplicate(String),
}

/// Parses `raw` into decoded `(key, value)` pairs, in order, refusing duplicates.
pub fn parse_pairs(raw: &str, max_pairs: usize) -> Result<Vec<(String, String)>, FormError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    // Every allowed character is one ASCII byte, so the first byte refused starts the
    // first character refused.
    if let Some(at) = raw.bytes().position(|b| !is_raw_allowed(b)) {
        let bad = raw
            .get(at..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        return Err(FormError::RawByte(bad));
    }
    let segments = raw.bytes().filter(|b| *b == b'&').count() + 1;
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(segments.min(max_pairs));
    for segment in raw.split('&') {
        if pairs.len() == max_pairs {
            return Err(FormError::TooMany(max_pairs));
        }
        let (key, value) = segment.split_once('=').ok_or(FormError::PairShape)?;
        if key.is_empty() || value.contains('=') {
            return Err(FormError::PairShape);
        }
        let key = decode(key)?;
        if key.is_empty() {
            return Err(FormError::PairShape);
        }
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(FormError::Duplicate(key));
        }
        let value = decode(value)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

fn is_raw_allowed(b: u8) -> bool {
    b.is_ascii_graphic() && b != b';' && b != b'#'
}

/// One percent-decode of a component, producing printable UTF-8.
pub fn decode(component: &str) -> Result<String, FormError> {
    // Most components are printable ASCII without an escape: already what they decode
    // to.
    if component
        .bytes()
        .all(|b| b != b'%' && (b' '..=b'~').contains(&b))
    {
        return Ok(component.to_owned());
    }
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                _ => return Err(FormError::BadEscape),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| FormError::BadDecoded)?;
    if text.chars().any(char::is_control) {
        return Err(FormError::BadDecoded);
    }
    Ok(text)
}

/// Every valid `%XX` decoded, anything else kept as it is: for looking for what a raw
/// query hides (a token spelled `kw%5Fa%5F...`), never for reading parameters. Text
/// without a `%` (nearly every target) is returned as it is, unallocated.
pub fn decode_lenient(raw: &str) -> Cow<'_, str> {
    if !raw.contains('%') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| {
                Some((
                    hex_value(*bytes.get(i + 1)?)?,
                    hex_value(*bytes.get(i + 2)?)?,
                ))
            })
            .flatten();
        match escaped {
            Some((hi, lo)) => {
                out.push((hi << 4) | lo);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `text` percent-encoded: RFC 3986 unreserved characters stay, every other
/// UTF-8 byte becomes `%XX` with uppercase hex (Binance's documented form).
pub fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// Canonical `k=v&k=v` in the given order.
pub fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode_into(&mut out, key);
        out.push('=');
        encode_into(&mut out, value);
    }
    out
}

#[cfg(test)]
pub(super) mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes_once() {
        let pairs = parse_pairs("symbol=%42TCUSDT&x=%252e&p=a+b", 10).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("symbol".into(), "BTCUSDT".into()),
                ("x".into(), "%2e".into()),
                ("p".into(), "a+b".into()),
            ]
        );
        assert_eq!(parse_pairs("", 10).unwrap(), vec![]);
    }

    #[test]
    fn refuses_ambiguous_shapes() {
        assert_eq!(
            parse_pairs("a=1&a=2", 10),
            Err(FormError::Duplicate("a".into()))
        );
        assert_eq!(
            parse_pairs("a=1&%61=2", 10),
            Err(FormError::Duplicate("a".into()))
        );
        assert_eq!(parse_pairs("a=1;a=2", 10), Err(FormError::RawByte(';')));
        for bad in ["a", "=1", "a=1&", "&a=1", "a=1&&b=2", "a=b=c", "%=1"] {
            assert!(parse_pairs(bad, 10).is_err(), "{bad:?}");
        }
        assert_eq!(parse_pairs("a=%zz", 10), Err(FormError::BadEscape));
        assert_eq!(parse_pairs("a=%0A", 10), Err(FormError::BadDecoded));
        assert_eq!(parse_pairs("a=%C0%AE", 10), Err(FormError::BadDecoded));
        assert_eq!(parse_pairs("a=é", 10), Err(FormError::RawByte('é')));
        assert_eq!(parse_pairs("a= b", 10), Err(FormError::RawByte(' ')));
        assert_eq!(parse_pairs("a=1&b=2&c=3", 2), Err(FormError::TooMany(2)));
    }

    #[test]
    fn lenient_decoding_keeps_what_it_cannot_decode() {
        assert_eq!(decode_lenient("kw%5Fa%5f%zz%4"), "kw_a_%zz%4");
        assert_eq!(decode_lenient("%FF+"), "\u{fffd}+");
        assert!(matches!(
            decode_lenient("kw_a_x+y"),
            Cow::Borrowed("kw_a_x+y")
        ));
    }

    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(
            encode_pairs([
                ("symbol", "１２"),
                ("batch", "[{\"a\":\"b\"}]"),
                ("sig", "a+/=")
            ]),
            "symbol=%EF%BC%91%EF%BC%92&batch=%5B%7B%22a%22%3A%22b%22%7D%5D&sig=a%2B%2F%3D"
        );
    }

    #[test]
    fn canonical_output_reparses_to_the_same_pairs() {
        let pairs = vec![
            ("symbol".to_owned(), "１２３".to_owned()),
            ("note".to_owned(), "a&b=c%d+e".to_owned()),
        ];
        let encoded = encode_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(parse_pairs(&encoded, 10).unwrap(), pairs);
    }
}
