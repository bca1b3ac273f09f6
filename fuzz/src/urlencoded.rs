//! `application/x-www-form-urlencoded` as the WHATWG URL Standard parses it (section 5.1),
//! which is how exchanges' HTTP stacks read a query string or a form body: sequences
//! split on `&`, empty ones skipped, name and value split at the first `=`, `+` is a
//! space, `%XX` with two hex digits is a byte and any other `%` stays, bytes decoded as
//! UTF-8 with replacement. Written from the standard, sharing nothing with keyward's
//! stricter reader.

/// Every (name, value) in order; duplicates kept.
pub fn parse(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|&b| b == b'&')
        .filter(|sequence| !sequence.is_empty())
        .map(|sequence| match sequence.iter().position(|&b| b == b'=') {
            Some(at) => (decode(&sequence[..at]), decode(&sequence[at + 1..])),
            None => (decode(sequence), String::new()),
        })
        .collect()
}

fn decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => {
                out.push(b' ');
                at += 1;
            }
            b'%' => match (hex(bytes.get(at + 1)), hex(bytes.get(at + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    at += 3;
                }
                _ => {
                    out.push(b'%');
                    at += 1;
                }
            },
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: Option<&u8>) -> Option<u8> {
    let byte = *byte?;
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_whatwg_parser() {
        assert_eq!(
            parse(b"a=1&&b=x+y%2B%zz&c&=d&e=%E2%82%AC"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y+%zz".into()),
                ("c".into(), String::new()),
                (String::new(), "d".into()),
                ("e".into(), "€".into()),
            ]
        );
    }
}
