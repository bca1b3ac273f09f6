//! Property tests of keyward's percent-encoding: [`encode_into`] writes exactly the
//! RFC 3986 unreserved characters as they are and every other byte as `%XX` in upper
//! case, [`decode`] undoes it for any printable text, and every other spelling of the
//! same text (lower-case hex, needless escapes) decodes to it once and re-encodes to
//! the one canonical form. What the decoder refuses (malformed escapes, invalid UTF-8,
//! control characters, raw bytes outside the allowed set) is refused whatever
//! surrounds it. `PROPTEST_CASES` raises the number of cases (default 256).

use proptest::prelude::*;

use super::{FormError, decode, encode_into, encode_pairs, parse_pairs};

fn encode(text: &str) -> String {
    let mut out = String::new();
    encode_into(&mut out, text);
    out
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

/// Text of every kind: ASCII punctuation, the form's own delimiters, a literal `%`
/// and `+`, non-ASCII letters and symbols, and (rarely) control characters.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{0,24}",
        2 => "[a-zA-Z0-9&=%+;#/?. -]{0,24}",
        2 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
}

/// Printable text: what [`decode`] accepts once decoded.
fn printable_text() -> impl Strategy<Value = String> {
    any_text().prop_filter("control characters are refused", |t| {
        !t.chars().any(char::is_control)
    })
}

/// One way of writing `byte` in a component: as itself where the raw set allows it,
/// or escaped in upper- or lower-case hex.
fn spell(byte: u8, choice: u8) -> String {
    let raw_allowed = byte.is_ascii_graphic() && !b";#%&=+".contains(&byte);
    match choice % 3 {
        0 if raw_allowed => char::from(byte).to_string(),
        1 => format!("%{byte:02x}"),
        _ => format!("%{byte:02X}"),
    }
}

/// `text` written with each byte spelled by the next choice.
pub(crate) fn respell(text: &str, choices: &[u8]) -> String {
    text.bytes()
        .zip(choices.iter().cycle())
        .map(|(byte, choice)| spell(byte, *choice))
        .collect()
}

proptest! {
    #[test]
    fn decode_undoes_encode(text in any_text()) {
        let decoded = decode(&encode(&text));
        if text.chars().any(char::is_control) {
            prop_assert_eq!(decoded, Err(FormError::BadDecoded));
        } else {
            prop_assert_eq!(decoded, Ok(text));
        }
    }

    #[test]
    fn encode_leaves_exactly_the_unreserved_bytes_and_uses_upper_case_hex(text in any_text()) {
        let encoded = encode(&text);
        let bytes = encoded.as_bytes();
        let mut source = text.bytes();
        let mut at = 0;
        while at < bytes.len() {
            let expected = source.next().unwrap();
            if bytes[at] == b'%' {
                let hex = &encoded[at + 1..at + 3];
                prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{}", encoded);
                prop_assert_eq!(u8::from_str_radix(hex, 16).unwrap(), expected);
                prop_assert!(!is_unreserved(expected), "{:?} escaped needlessly in {}", char::from(expected), encoded);
                at += 3;
            } else {
                prop_assert_eq!(bytes[at], expected);
                prop_assert!(is_unreserved(expected), "{:?} left raw in {}", char::from(expected), encoded);
                at += 1;
            }
        }
        prop_assert_eq!(source.next(), None);
    }

    #[test]
    fn every_spelling_decodes_once_to_the_same_text(
        text in printable_text(),
        choices in proptest::collection::vec(any::<u8>(), 1..8),
    ) {
        let spelled = respell(&text, &choices);
        prop_assert_eq!(decode(&spelled), Ok(text.clone()));
        prop_assert_eq!(encode(&decode(&spelled).unwrap()), encode(&text));
        // Decoding happens once: an escaped `%` stays a `%` and is not decoded again.
        let twice = encode(&encode(&text));
        prop_assert_eq!(decode(&twice), Ok(encode(&text)));
    }

    #[test]
    fn malformed_escapes_are_refused_wherever_they_stand(
        before in printable_text(),
        after in printable_text(),
        tail in prop_oneof![
            Just(String::new()),
            "[0-9a-fA-F]",
            "[g-zG-Z%&=_ -]",
            "[0-9a-fA-F][g-zG-Z_-]",
        ],
        at_end in any::<bool>(),
    ) {
        let broken = format!("%{tail}");
        // A malformed escape ends the text or is followed by a well-formed rest.
        let (left, right) = (encode(&before), if at_end { String::new() } else { encode(&after) });
        let candidate = if at_end || tail.len() == 2 || tail.starts_with(|c: char| !c.is_ascii_hexdigit()) {
            format!("{left}{broken}{right}")
        } else {
            // "%A" followed by a hex digit of the rest would make a valid escape.
            format!("{left}{broken}")
        };
        prop_assert_eq!(decode(&candidate), Err(FormError::BadEscape), "{}", candidate);
    }

    #[test]
    fn escaped_bytes_decode_only_to_printable_utf8(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
        let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        let expected = match String::from_utf8(bytes) {
            Ok(text) if !text.chars().any(char::is_control) => Ok(text),
            _ => Err(FormError::BadDecoded),
        };
        prop_assert_eq!(decode(&escaped), expected);
    }

    #[test]
    fn pairs_round_trip_through_the_canonical_encoding(
        pairs in proptest::collection::btree_map("\\PC{1,8}", printable_text(), 0..8),
    ) {
        let pairs: Vec<(String, String)> = pairs.into_iter().collect();
        let encoded = encode_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        prop_assert_eq!(parse_pairs(&encoded, 64), Ok(pairs.clone()));
        // Any spelling of the same pairs parses to them and re-encodes canonically.
        let respelled: Vec<String> = pairs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| format!("{}={}", respell(k, &[i as u8, 1]), respell(v, &[2, i as u8])))
            .collect();
        let parsed = parse_pairs(&respelled.join("&"), 64);
        prop_assert_eq!(&parsed, &Ok(pairs));
        let parsed = parsed.unwrap();
        prop_assert_eq!(encode_pairs(parsed.iter().map(|(k, v)| (k.as_str(), v.as_str()))), encoded);
    }

    #[test]
    fn a_key_spelled_twice_is_a_duplicate(
        key in "[a-zA-Z]{1,8}",
        first in "[a-z0-9]{0,6}",
        second in "[a-z0-9]{0,6}",
        choices in proptest::collection::vec(any::<u8>(), 1..4),
    ) {
        let raw = format!("{key}={first}&{}={second}", respell(&key, &choices));
        prop_assert_eq!(parse_pairs(&raw, 64), Err(FormError::Duplicate(key)));
    }

    #[test]
    fn raw_bytes_outside_the_allowed_set_are_refused(
        before in "[a-z]{1,4}=[a-z0-9]{0,4}",
        bad in prop_oneof![Just(' '), Just(';'), Just('#'), Just('\t'), Just('\u{7f}'), "[\u{80}-\u{10ffff}]".prop_map(|s| s.chars().next().unwrap())],
        after in "[a-z0-9]{0,4}",
    ) {
        let raw = format!("{before}{bad}{after}");
        prop_assert_eq!(parse_pairs(&raw, 64), Err(FormError::RawByte(bad)));
    }
}
