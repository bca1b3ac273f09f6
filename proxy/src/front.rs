//! The first look at a request, before any token or venue is consulted: the request
//! target's form and canonical path, the method, the Host, and the framing and
//! encoding headers. Anything non-canonical is refused, never normalised.

use http::{HeaderMap, Method, header};

use crate::config::HostPolicy;

/// Longest request target accepted (path and query).
pub const MAX_TARGET_LEN: usize = 8 * 1024;
/// Longest path accepted.
const MAX_PATH_LEN: usize = 256;

/// The request head as the front sees it.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Method.
    pub method: &'a Method,
    /// HTTP/1: the request target exactly as sent. HTTP/2: `:path`.
    pub target: &'a str,
    /// HTTP/2 `:authority`, if any.
    pub authority: Option<&'a str>,
    /// Header fields.
    pub headers: &'a HeaderMap,
    /// The HTTP/1 framing guard saw the token's header value padded with whitespace,
    /// which the HTTP parser trimmed: tokens match byte for byte or not at all.
    pub padded_credential: bool,
    /// The key name of a bot's key that a WebSocket session verified (Coinbase's
    /// subscription JWT): the message is that bot's. Only a stream session sets it,
    /// on the REST twin it builds; nothing a client sends can.
    pub verified_key: Option<&'a str>,
}

/// A vetted target: a canonical path and the raw query (validated by the venue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Canonical path.
    pub path: &'a str,
    /// Raw query string after `?`, or empty.
    pub query: &'a str,
}

/// Why the front refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontError {
    /// The target is longer than [`MAX_TARGET_LEN`].
    #[error("the request target is longer than {MAX_TARGET_LEN} bytes")]
    TargetTooLong,
    /// `METHOD scheme://host/...`.
    #[error("absolute-form request targets are not accepted; send only the path and query")]
    AbsoluteForm,
    /// The method is not one keyward forwards, or the target is `*`.
    #[error("method {0} is not accepted")]
    MethodNotAllowed(String),
    /// `CONNECT`, including HTTP/2 extended CONNECT.
    #[error("tunnels (CONNECT) are not supported")]
    Connect,
    /// `Upgrade`, `Connection: upgrade` or `HTTP2-Settings`.
    #[error("protocol upgrades are not supported")]
    Upgrade,
    /// A WebSocket request keyward cannot accept: not HTTP/1.1 `GET` with
    /// `Upgrade: websocket`, `Connection: upgrade`, version 13 and a 16-byte key, or
    /// with a body or a query.
    #[error(
        "the WebSocket handshake is invalid (HTTP/1.1 GET, Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Version: 13, a 16-byte Sec-WebSocket-Key, no body, no query)"
    )]
    WebSocketHandshake,
    /// Dot segments, encodings, `//`, `\`, `;`, non-ASCII, trailing slash and the like.
    #[error("the path is not in canonical form (only A-Z a-z 0-9 / _ - and no empty segments)")]
    PathNonCanonical,
    /// More than one Host header.
    #[error("the Host header appears more than once")]
    HostDuplicate,
    /// More than one of a header keyward reads once (`Content-Type`, `Expect`).
    #[error("the {0} header appears more than once")]
    HeaderDuplicate(&'static str),
    /// A Host that does not name this keyward, or disagrees with `:authority`.
    #[error("the Host does not name this keyward")]
    HostMismatch,
    /// A Transfer-Encoding other than exactly `chunked`, or more than one.
    #[error("ambiguous framing: Transfer-Encoding must be exactly 'chunked' if present")]
    FramingAmbiguous,
    /// Any Content-Encoding.
    #[error("compressed request bodies are not accepted")]
    ContentEncoding,
    /// A `Trailer` announcement.
    #[error("trailers are not accepted")]
    Trailers,
    /// An `Expect` other than `100-continue`.
    #[error("only Expect: 100-continue is supported")]
    Expectation,
    /// A malformed HTTP/1 request line (bare LF, no version, HTTP/0.9).
    #[error("malformed request line")]
    RequestLineInvalid,
    /// A malformed header line (obs-fold, bare LF, control characters, space before ':').
    #[error("malformed header line")]
    HeaderInvalid,
}

impl FrontError {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TargetTooLong => "request_target_too_long",
            Self::AbsoluteForm => "absolute_form_rejected",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Connect => "connect_not_supported",
            Self::Upgrade => "upgrade_not_supported",
            Self::WebSocketHandshake => "websocket_handshake_invalid",
            Self::PathNonCanonical => "path_non_canonical",
            Self::HostDuplicate => "header_duplicate_host",
            Self::HeaderDuplicate(_) => "header_duplicate",
            Self::HostMismatch => "host_mismatch",
            Self::FramingAmbiguous => "framing_ambiguous",
            Self::ContentEncoding => "content_encoding_unsupported",
            Self::Trailers => "trailers_not_allowed",
            Self::Expectation => "expectation_failed",
            Self::RequestLineInvalid => "request_line_invalid",
            Self::HeaderInvalid => "header_invalid",
        }
    }
}

/// Vets the head; returns the canonical path and the raw query.
pub fn check<'a>(head: &Head<'a>, hosts: &HostPolicy) -> Result<Target<'a>, FrontError> {
    let target = check_target(head.method, head.target)?;
    check_upgrade(head.headers)?;
    check_host(head, hosts)?;
    check_framing(head.headers)?;
    Ok(target)
}

/// Vets the head of a WebSocket request: the target (canonical, no query), the host,
/// the framing (no body) and the handshake's own headers. Returns the path and the
/// client's key, from which the accept value is derived.
pub fn check_stream<'a>(
    head: &Head<'a>,
    hosts: &HostPolicy,
    query_allowed: bool,
) -> Result<(Target<'a>, &'a str), FrontError> {
    // The root is a venue's WebSocket path (Coinbase's), which the caller matched
    // against the venues' lists; the canonical-path rule, written for REST paths,
    // has no endpoint there and admits it only here.
    let target = match head.target.split_once('?').unwrap_or((head.target, "")) {
        ("/", query) if head.target.len() <= MAX_TARGET_LEN && !query.contains('#') => {
            Target { path: "/", query }
        }
        _ => check_target(head.method, head.target)?,
    };
    check_host(head, hosts)?;
    check_framing(head.headers)?;
    let headers = head.headers;
    let single = |name: &str| -> Option<&'a str> {
        let mut values = headers.get_all(name).iter();
        let value = values.next()?.to_str().ok()?;
        values.next().is_none().then_some(value.trim())
    };
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || single("content-length").is_some_and(|length| length != "0");
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    let key = single("sec-websocket-key").filter(|key| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|raw| raw.len() == 16)
    });
    let handshake_ok = *head.method == Method::GET
        && (query_allowed || target.query.is_empty())
        && !has_body
        && connection_upgrade
        && single("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && single("sec-websocket-version") == Some("13")
        && !headers.contains_key("http2-settings");
    match key {
        Some(key) if handshake_ok => Ok((target, key)),
        _ => Err(FrontError::WebSocketHandshake),
    }
}

/// The target's form, path and method (no headers): also used by `explain`.
pub fn check_target<'a>(method: &Method, target: &'a str) -> Result<Target<'a>, FrontError> {
    if target.len() > MAX_TARGET_LEN {
        return Err(FrontError::TargetTooLong);
    }
    if method == Method::CONNECT {
        return Err(FrontError::Connect);
    }
    if target == "*" {
        return Err(FrontError::MethodNotAllowed(shown_method(method)));
    }
    if !target.starts_with('/') {
        let scheme_like = target.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic())
        });
        return Err(if scheme_like {
            FrontError::AbsoluteForm
        } else {
            FrontError::PathNonCanonical
        });
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !is_canonical_path(path) || query.contains('#') {
        return Err(FrontError::PathNonCanonical);
    }
    if !matches!(
        *method,
        Method::GET | Method::POST | Method::PUT | Method::DELETE
    ) {
        return Err(FrontError::MethodNotAllowed(shown_method(method)));
    }
    Ok(Target { path, query })
}

/// A refused method as a refusal may name it: a registered method by its name, any
/// other (up to 8 KiB of the bot's choosing, a token included) only as what it is.
fn shown_method(method: &Method) -> String {
    let registered = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    if registered.contains(method) {
        method.to_string()
    } else {
        "(an extension method)".to_owned()
    }
}

/// Exchange REST paths use only `[A-Za-z0-9/_-]`: no dots, no escapes, no empty
/// segments, no trailing slash. Checking that set makes every traversal and encoding
/// trick (`..`, `%2e`, `%2f`, `\`, `;`, `//`, NUL, non-ASCII) a plain refusal.
fn is_canonical_path(path: &str) -> bool {
    path.len() <= MAX_PATH_LEN
        && path.len() > 1
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
}

fn check_upgrade(headers: &HeaderMap) -> Result<(), FrontError> {
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|value| {
        value.to_str().map_or(true, |v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if headers.contains_key(header::UPGRADE)
        || headers.contains_key("http2-settings")
        || connection_upgrade
    {
        return Err(FrontError::Upgrade);
    }
    Ok(())
}

fn check_host(head: &Head<'_>, hosts: &HostPolicy) -> Result<(), FrontError> {
    let mut values = head.headers.get_all(header::HOST).iter();
    let host = values.next();
    if values.next().is_some() {
        return Err(FrontError::HostDuplicate);
    }
    let host = match host {
        Some(value) => Some(value.to_str().map_err(|_| FrontError::HostMismatch)?),
        None => None,
    };
    let effective = match (host, head.authority) {
        (Some(host), Some(authority)) if !host.eq_ignore_ascii_case(authority) => {
            return Err(FrontError::HostMismatch);
        }
        (Some(host), _) => host,
        (None, Some(authority)) => authority,
        (None, None) => return Err(FrontError::HostMismatch),
    };
    if hosts.accepts(effective) {
        Ok(())
    } else {
        Err(FrontError::HostMismatch)
    }
}

/// Headers keyward reads as one value. Parsers would take the first of several,
/// and which one an exchange (or a proxy in between) would take is not known.
const SINGLE_HEADERS: [(header::HeaderName, &str); 2] = [
    (header::CONTENT_TYPE, "Content-Type"),
    (header::EXPECT, "Expect"),
];

fn check_framing(headers: &HeaderMap) -> Result<(), FrontError> {
    for (name, shown) in &SINGLE_HEADERS {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(FrontError::HeaderDuplicate(shown));
        }
    }
    let mut encodings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = encodings.next() {
        let chunked = first.as_bytes().eq_ignore_ascii_case(b"chunked");
        if !chunked || encodings.next().is_some() {
            return Err(FrontError::FramingAmbiguous);
        }
    }
    if headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(FrontError::FramingAmbiguous);
    }
    if headers.contains_key(header::CONTENT_ENCODING) {
        return Err(FrontError::ContentEncoding);
    }
    if headers.contains_key(header::TRAILER) {
        return Err(FrontError::Trailers);
    }
    if let Some(expect) = headers.get(header::EXPECT)
        && !expect.as_bytes().eq_ignore_ascii_case(b"100-continue")
    {
        return Err(FrontError::Expectation);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_and_everything_else_is_refused() {
        fn ok(t: &str) -> Result<Target<'_>, FrontError> {
            check_target(&Method::GET, t)
        }
        assert_eq!(
            ok("/api/v3/account?timestamp=1"),
            Ok(Target {
                path: "/api/v3/account",
                query: "timestamp=1"
            })
        );
        for bad in [
            "/api/v3/../sapi/v1/capital/withdraw/apply",
            "/api/v3/%2e%2e/sapi",
            "/api/v3/%252e%252e/sapi",
            "/api/v3\\..\\sapi",
            "/api/v3//order",
            "//sapi/v1/capital/withdraw/apply",
            "/api/v3/order;/../../sapi",
            "/api/v3/order#/../../sapi",
            "/api/v3/order%00/../sapi",
            "/api/v3/order/",
            "/api/v3/ORDER\u{0130}",
            "api/v3/account",
            "/",
            "/api/v3/account?x=1#frag",
        ] {
            assert_eq!(ok(bad), Err(FrontError::PathNonCanonical), "{bad:?}");
        }
        assert_eq!(
            ok("https://api.binance.com/sapi/v1/capital/withdraw/apply"),
            Err(FrontError::AbsoluteForm)
        );
        assert_eq!(
            ok(&format!("/{}", "a/".repeat(5000))),
            Err(FrontError::TargetTooLong)
        );
        assert!(matches!(
            check_target(&Method::OPTIONS, "*"),
            Err(FrontError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            check_target(&Method::PATCH, "/api/v3/order"),
            Err(FrontError::MethodNotAllowed(_))
        ));
        // Found by fuzzing: the refusal repeated whatever method the bot sent, a token
        // run into it included (`POSTkw_old_...`). Registered methods are still named.
        let token = format!("kw_old_{}", "A".repeat(43));
        let extension = Method::from_bytes(format!("POST{token}").as_bytes()).unwrap();
        let refused = check_target(&extension, "/api/v3/order").unwrap_err();
        assert!(!refused.to_string().contains(&token), "{refused}");
        assert_eq!(
            check_target(&Method::PATCH, "/api/v3/order")
                .unwrap_err()
                .to_string(),
            "method PATCH is not accepted"
        );
        assert_eq!(
            check_target(&Method::CONNECT, "/x"),
            Err(FrontError::Connect)
        );
    }

    /// A catalogued path the front refuses would be unreachable: every venue whose
    /// catalogue has only concrete paths (Coinbase's carry `{name}` segments) passes.
    #[test]
    fn every_concrete_catalogued_path_passes_the_front() {
        use keyward_venues::{binance, bybit, kraken, okx};
        let venues: [&dyn keyward_venues::Venue; 5] = [
            &binance::SPOT,
            &binance::USDM,
            &bybit::BYBIT,
            &okx::OKX,
            &kraken::KRAKEN,
        ];
        for venue in venues {
            for spec in venue.catalogue().entries() {
                assert!(
                    check_target(&spec.method, spec.path).is_ok(),
                    "{}",
                    spec.key
                );
            }
        }
    }
}
