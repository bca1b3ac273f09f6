//! The input format of the venue targets: an HTTP/1-like request, so seeds are readable
//! and the attack corpus's requests translate directly.
//!
//! ```text
//! METHOD /path?query
//! name: value
//! ...
//! <empty line>
//! body bytes
//! ```
//!
//! Lines end in `\n` or `\r\n`. Header lines that are not a valid
//! field are skipped; everything after the empty line is the body, byte for byte.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A request as a venue parser receives it after the front.
#[derive(Debug)]
pub struct Request<'a> {
    /// Method.
    pub method: Method,
    /// Path, before any `?`.
    pub path: &'a str,
    /// Raw query after the first `?`, or empty.
    pub query: &'a str,
    /// Header fields.
    pub headers: HeaderMap,
    /// Body.
    pub body: &'a [u8],
}

/// Reads `data`; `None` if the request line is not `METHOD TARGET` in UTF-8.
pub fn parse(data: &[u8]) -> Option<Request<'_>> {
    let (head, body) = split_head(data);
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = std::str::from_utf8(lines.next()?).ok()?;
    let (method, target) = request_line.split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    Some(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// Writes a request in the format [`parse`] reads (for seeds).
pub fn write(method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target}\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// (head, body) at the first empty line (`\n\n` or `\n\r\n`).
fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    for (at, _) in data.iter().enumerate().filter(|(_, b)| **b == b'\n') {
        match &data[at + 1..] {
            [b'\n', ..] => return (&data[..at], &data[at + 2..]),
            [b'\r', b'\n', ..] => return (&data[..at], &data[at + 3..]),
            _ => {}
        }
    }
    (data, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_request() {
        let bytes = write(
            "POST",
            "/api/v3/order?a=1",
            &[("Content-Type".into(), "application/json".into())],
            b"{\n\n}",
        );
        let request = parse(&bytes).unwrap();
        assert_eq!(request.method, Method::POST);
        assert_eq!((request.path, request.query), ("/api/v3/order", "a=1"));
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.body, b"{\n\n}");
    }
}
