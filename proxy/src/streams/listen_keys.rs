//! listenKeys and WebSocket tokens, for venues whose user data arrives on a stream
//! reached by a key (Binance USDⓈ-M) or whose WebSocket messages carry a token
//! (Kraken): a bot asking for one gets a key keyward minted, bound to the bot and to
//! the token it asked with, never the venue's; the venue's real key is keyward's
//! alone, asked for with the account's key when a bot's stream first needs it and
//! kept alive (or asked for again) while streams use it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keyward_venues::stream::{ListenKeyOp, StreamVenue};
use zeroize::Zeroizing;

use crate::account::AccountRuntime;
use crate::upstream::UpstreamError;

/// keyward's keys are as long as Binance's.
const KEY_LEN: usize = 64;

/// What a minted key stands for.
#[derive(Clone)]
pub struct Minted {
    /// The bot.
    pub bot: String,
    /// Its account.
    pub account: String,
    /// The token it asked with: its stream is checked against it every second, as
    /// a connection bound by that token would be.
    pub token: Zeroizing<String>,
    expires: Instant,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("bot", &self.bot)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// keyward's keys by key, and each account's real key.
#[derive(Default)]
pub struct ListenKeys {
    minted: Mutex<HashMap<String, Minted>>,
    /// Each account's real key and when it was last created or kept alive; the key
    /// never leaves keyward.
    real: tokio::sync::Mutex<HashMap<String, (Zeroizing<String>, Instant)>>,
}

impl std::fmt::Debug for ListenKeys {
    // Both kinds of key read an account's orders: a debug print names how many
    // there are, never one of them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let minted = self
            .minted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("ListenKeys")
            .field("minted", &minted)
            .finish_non_exhaustive()
    }
}

impl ListenKeys {
    /// The bot's key for `op`: created (or, while one is valid, the same one
    /// extended, as the venue does), kept alive, or closed. `None` when there is
    /// no key to keep alive.
    pub fn answer(
        &self,
        op: ListenKeyOp,
        (bot, account, token): (&str, &str, &str),
        validity: Duration,
    ) -> Result<Option<String>, ring::error::Unspecified> {
        let mut minted = self.minted.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        minted.retain(|_, key| key.expires > now);
        let held = minted
            .iter()
            .find(|(_, key)| key.bot == bot && key.token.as_str() == token)
            .map(|(key, _)| key.clone());
        match (op, held) {
            (ListenKeyOp::Create | ListenKeyOp::KeepAlive, Some(key)) => {
                if let Some(entry) = minted.get_mut(&key) {
                    entry.expires = now + validity;
                }
                Ok(Some(key))
            }
            (ListenKeyOp::Create, None) => {
                let key = fresh_key()?;
                minted.insert(
                    key.clone(),
                    Minted {
                        bot: bot.to_owned(),
                        account: account.to_owned(),
                        token: Zeroizing::new(token.to_owned()),
                        expires: now + validity,
                    },
                );
                Ok(Some(key))
            }
            (ListenKeyOp::KeepAlive, None) => Ok(None),
            (ListenKeyOp::Close, held) => {
                if let Some(key) = held {
                    minted.remove(&key);
                }
                Ok(Some(String::new()))
            }
        }
    }

    /// What a key stands for, while it is valid.
    pub fn resolve(&self, key: &str) -> Option<Minted> {
        let minted = self.minted.lock().unwrap_or_else(PoisonError::into_inner);
        minted
            .get(key)
            .filter(|entry| entry.expires > Instant::now())
            .cloned()
    }

    /// The account's real key: the one kept, or a new one from the venue.
    pub async fn real_key(
        &self,
        streams: &'static dyn StreamVenue,
        runtime: &AccountRuntime,
    ) -> Result<Zeroizing<String>, UpstreamError> {
        let account = runtime.settings.name.clone();
        let mut real = self.real.lock().await;
        if let Some((key, fresh)) = real.get(&account)
            && fresh.elapsed() < streams.real_key_reuse()
        {
            return Ok(key.clone());
        }
        // Binance answers a create with the key still valid, extended: it is also
        // the keep-alive.
        let answer = request(streams, runtime, ListenKeyOp::Create).await?;
        let key = streams
            .read_listen_key(&answer)
            .map(Zeroizing::new)
            .ok_or(UpstreamError::Invalid)?;
        real.insert(account, (key.clone(), Instant::now()));
        Ok(key)
    }

    /// Forgets the account's real key (its stream ended: the venue expired it).
    pub async fn forget_real(&self, account: &str) {
        self.real.lock().await.remove(account);
    }
}

/// Sends `op` on the account's real key to the venue with the account's key (and
/// keyward's next nonce where the venue takes one); the answer's body, for a
/// success.
async fn request(
    streams: &'static dyn StreamVenue,
    runtime: &AccountRuntime,
    op: ListenKeyOp,
) -> Result<Vec<u8>, UpstreamError> {
    let nonce = if runtime.settings.venue.adapter().uses_nonce() {
        runtime.state.next_nonce().await.map_err(|error| {
            tracing::error!(%error, "no nonce for keyward's WebSocket token request");
            UpstreamError::Invalid
        })?
    } else {
        0
    };
    let context = keyward_venues::SignContext {
        credential: &runtime.credential,
        timestamp_ms: runtime.state.exchange_now_ms(std::time::SystemTime::now()),
        recv_window_ms: runtime.settings.recv_window_ms,
        nonce,
    };
    let outbound = streams
        .listen_key_request(op, context)
        .ok_or(UpstreamError::Invalid)?
        .map_err(|error| {
            tracing::error!(%error, "keyward's listenKey request could not be signed");
            UpstreamError::Invalid
        })?;
    let answer = runtime.upstream.send(outbound).await?;
    if !answer.status.is_success() {
        tracing::warn!(
            account = %runtime.settings.name,
            status = answer.status.as_u16(),
            "the exchange refused keyward's listenKey request"
        );
        return Err(UpstreamError::LoginRefused);
    }
    Ok(answer.body.to_vec())
}

/// A fresh key: 64 random letters and digits.
fn fresh_key() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0_u8; KEY_LEN];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    // 256 is 4 × 62 + 8: the first eight letters come up a little more often,
    // which leaves each character with more than 5.9 bits of the 6 possible.
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_bot_gets_one_key_while_it_is_valid_and_none_after_close() {
        let keys = ListenKeys::default();
        let first = keys
            .answer(ListenKeyOp::Create, ("a", "usdm", "kw_a"), HOUR)
            .unwrap()
            .unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_alphanumeric()));
        let again = keys
            .answer(ListenKeyOp::Create, ("a", "usdm", "kw_a"), HOUR)
            .unwrap()
            .unwrap();
        assert_eq!(first, again);
        // Another bot, or the same bot with another token, gets its own.
        let other = keys
            .answer(ListenKeyOp::Create, ("b", "usdm", "kw_b"), HOUR)
            .unwrap()
            .unwrap();
        assert_ne!(first, other);
        assert_eq!(keys.resolve(&first).map(|m| m.bot), Some("a".to_owned()));
        assert_eq!(
            keys.answer(ListenKeyOp::KeepAlive, ("a", "usdm", "kw_a"), HOUR)
                .unwrap(),
            Some(first.clone())
        );
        keys.answer(ListenKeyOp::Close, ("a", "usdm", "kw_a"), HOUR)
            .unwrap();
        assert!(keys.resolve(&first).is_none());
        assert_eq!(
            keys.answer(ListenKeyOp::KeepAlive, ("a", "usdm", "kw_a"), HOUR)
                .unwrap(),
            None
        );
        assert!(keys.resolve(&other).is_some());
        let printed = format!("{keys:?}");
        assert!(
            !printed.contains(&other) && !printed.contains("kw_b"),
            "{printed}"
        );
    }
}
