//! WebSockets, never as tunnels: keyward terminates the bot's WebSocket and opens
//! its own to the venue; each bot message is decided as its REST twin by the same
//! pipeline as a REST request, and the venue sees only messages keyward built and
//! signed. `session` serves the bot's side, `link` keyward's side.

mod link;
mod session;

use base64::Engine as _;
use http::{Request, header};

pub use link::Link;
pub use session::serve;

/// True for a request asking to become a WebSocket (`Upgrade: websocket`). Any
/// other upgrade goes through the front's checks, which refuse it.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .any(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The `Sec-WebSocket-Accept` value for a client's key (RFC 6455 §4.2.2): SHA-1 is
/// what the protocol fixes here, as a handshake check, not for security.
pub fn accept_value(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key.as_bytes());
    context.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(context.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_accept_value_is_rfc_6455s() {
        // The worked example of RFC 6455 §1.3.
        assert_eq!(
            super::accept_value("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiuUJ5nOnRppDPeBTmpzM="
        );
    }
}
