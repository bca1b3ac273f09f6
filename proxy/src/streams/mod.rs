//! WebSockets, never as tunnels: keyward terminates the bot's WebSocket and opens
//! its own to the venue; each bot message is decided as its REST twin by the same
//! pipeline as a REST request, and the venue sees only messages keyward built and
//! signed. `session` serves the bot's side, `link` keyward's side.

mod allowance;
mod instruments;
mod link;
pub mod listen_keys;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use http::{Request, header};

pub use instruments::Instruments;
pub use link::Link;
pub(crate) use session::serve;

/// The most WebSockets one bot may hold open at once: each has its own link to the
/// venue, and the venue counts connections per IP (Binance: 300 per 5 minutes), so
/// one bot must not be able to spend the allowance every bot of keyward shares.
pub const MAX_STREAMS_PER_BOT: usize = 8;

/// Each bot's open WebSockets, and keyward's word to close them all when it stops.
#[derive(Debug)]
pub struct Registry {
    open: Arc<Mutex<HashMap<String, usize>>>,
    stopping: tokio::sync::watch::Sender<bool>,
    /// The venues' instrument codes, per account.
    pub instruments: Instruments,
    /// keyward's listenKeys and the accounts' real ones.
    pub listen_keys: listen_keys::ListenKeys,
    /// keyward's uses of the venues' allowances per address.
    per_address: allowance::PerAddress,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            open: Arc::default(),
            stopping: tokio::sync::watch::channel(false).0,
            instruments: Instruments::default(),
            listen_keys: listen_keys::ListenKeys::default(),
            per_address: allowance::PerAddress::default(),
        }
    }
}

/// The name of the bot key whose JWT a stream session verified, carried on the REST
/// twins of the session's messages (see [`crate::front::Head::verified_key`]).
#[derive(Debug, Clone)]
pub struct VerifiedKey(pub String);

/// One bot's WebSocket, counted until dropped.
#[derive(Debug)]
pub struct Counted {
    open: Arc<Mutex<HashMap<String, usize>>>,
    bot: String,
}

impl Registry {
    /// Tells every open WebSocket that keyward is stopping: each closes with 1001
    /// (going away) so its client reconnects once keyward is back.
    pub fn stop_all(&self) {
        self.stopping.send_replace(true);
    }

    /// Learns when keyward stops.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Counts a WebSocket of `bot`, or `None` if it already holds the most it may.
    pub fn enter(&self, bot: &str) -> Option<Counted> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(bot.to_owned()).or_default();
        if *count >= MAX_STREAMS_PER_BOT {
            return None;
        }
        *count += 1;
        Some(Counted {
            open: self.open.clone(),
            bot: bot.to_owned(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.bot) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.bot);
            }
        }
    }
}

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
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
