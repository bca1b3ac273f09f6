//! Bot tokens: their shape, their SHA-256 digests, and the constant-time comparison.
//!
//! A token is `kw_<bot>_<43 base64url characters>` (256 random bits). The bot name in
//! the prefix is not secret; it lets logs and lookups name the bot without the secret.
//! Configuration stores only `sha256:<64 hex>` digests of tokens.

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;

/// Length of the random part of a token in base64url characters (32 bytes, no padding).
pub const TOKEN_SECRET_LEN: usize = 43;
/// Fixed token prefix.
pub const TOKEN_PREFIX: &str = "kw_";

/// SHA-256 digest of a token, as stored in configuration.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

/// Why a `sha256:` string is not a token digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token digest is 'sha256:' followed by 64 lowercase hex digits")]
pub struct DigestError;

impl TokenDigest {
    /// Digest of a presented token.
    pub fn of(token: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// Constant-time equality, so comparing against stored digests leaks no prefix length.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// First 12 hex digits, enough to tell digests apart in listings and logs.
    pub fn short(&self) -> String {
        self.to_string()["sha256:".len().."sha256:".len() + 12].to_owned()
    }
}

impl FromStr for TokenDigest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").ok_or(DigestError)?;
        if hex.len() != 64 {
            return Err(DigestError);
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            let hi = lower_hex_value(pair[0]).ok_or(DigestError)?;
            let lo = lower_hex_value(pair[1]).ok_or(DigestError)?;
            bytes[i] = (hi << 4) | lo;
        }
        Ok(Self(bytes))
    }
}

fn lower_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.short())
    }
}

/// Prefix of a bot's public key in `tokens` (Coinbase bots sign their own JWTs).
pub const P256_KEY_PREFIX: &str = "p256:";

/// The fixed part of every Coinbase-style key name keyward issues; the bot name and
/// the key id follow it (`organizations/keyward/apiKeys/<bot>.<16 hex>`), so a
/// presented key name selects one bot and one key without a search.
pub const KEY_NAME_PREFIX: &str = "organizations/keyward/apiKeys/";

/// An EC P-256 public key a bot signs its own request JWTs with. Only the public half
/// is configured; the private key was printed once to the operator.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BotKey {
    point: [u8; 65],
    id: [u8; 8],
}

impl BotKey {
    /// From an uncompressed SEC1 point (`04 || x || y`); `None` for any other shape.
    /// Whether the point is on the curve is checked when a signature is verified.
    pub fn from_point(point: &[u8]) -> Option<Self> {
        let point: [u8; 65] = point.try_into().ok()?;
        if point[0] != 4 {
            return None;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &point);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_ref()[..8]);
        Some(Self { point, id })
    }

    /// The uncompressed point, for signature verification.
    pub fn point(&self) -> &[u8; 65] {
        &self.point
    }

    /// 16 lowercase hex digits identifying the key (SHA-256 of the point, truncated).
    pub fn id(&self) -> String {
        let mut out = String::with_capacity(16);
        for byte in self.id {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// The key name the bot puts in its JWT (`kid` and `sub`).
    pub fn key_name(&self, bot: &str) -> String {
        format!("{KEY_NAME_PREFIX}{bot}.{}", self.id())
    }
}

impl fmt::Debug for BotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotKey({})", self.id())
    }
}

/// Splits a key name into (bot name, key id) if it has the shape keyward issues.
pub fn split_key_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(KEY_NAME_PREFIX)?;
    let (bot, id) = rest.split_once('.')?;
    let id_ok = id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (id_ok && is_valid_bot_name(bot)).then_some((bot, id))
}

/// Splits a presented token into its (non-secret) bot name, if it has a token's shape.
///
/// Returns `None` for anything that is not exactly `kw_<name>_<43 base64url>`, including
/// surrounding whitespace, so a malformed token is never looked up at all.
pub fn bot_name_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    if rest.len() < TOKEN_SECRET_LEN + 2 {
        return None;
    }
    let (head, secret) = rest.split_at(rest.len() - TOKEN_SECRET_LEN);
    let name = head.strip_suffix('_')?;
    let secret_ok = secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (secret_ok && is_valid_bot_name(name)).then_some(name)
}

/// True if `token` has the shape of a keyward token (used to refuse tokens in URLs).
pub fn looks_like_token(token: &str) -> bool {
    bot_name_of(token).is_some()
}

/// True if a keyward token stands anywhere in `text`, even run together with other
/// characters (`/kw_a_<secret>api/v3/order`): what a request target or a log line must
/// never carry, where [`looks_like_token`] asks only whether all of it is one.
pub fn mentions_token(text: &str) -> bool {
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    text.match_indices(TOKEN_PREFIX).any(|(at, _)| {
        let rest = &text.as_bytes()[at + TOKEN_PREFIX.len()..];
        let run = rest.iter().take_while(|b| base64url(**b)).count();
        // Some `_` ends a bot name with at least a secret's length of base64url after it.
        (1..=32).any(|split| {
            rest.get(split) == Some(&b'_')
                && run > split + TOKEN_SECRET_LEN
                && std::str::from_utf8(&rest[..split]).is_ok_and(is_valid_bot_name)
        })
    })
}

/// Bot names: 1 to 32 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn is_valid_bot_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && name.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn tokens_are_found_inside_other_text() {
        let token = format!("kw_grid-1_{SECRET}");
        for text in [
            token.clone(),
            format!("/{token}api/v3/order"),
            format!("a=1&apiKey={token}&b=2"),
            format!("Bearer {token}"),
            format!("kw_kw_grid-1_{SECRET}"),
        ] {
            assert!(mentions_token(&text), "{text}");
        }
        for text in [
            format!("kw_grid_{}", &SECRET[1..]),
            format!("kw__{SECRET}"),
            format!("kw_Grid_{SECRET}"),
            format!("kw_{}_{SECRET}", "a".repeat(33)),
            format!("kw_grid_{}%{}", &SECRET[..20], &SECRET[20..]),
            "/api/v3/order?symbol=BTCUSDT".to_owned(),
            "kw_".to_owned(),
        ] {
            assert!(!mentions_token(&text), "{text}");
        }
    }

    #[test]
    fn digest_round_trips_through_text() {
        let d = TokenDigest::of("kw_grid_x");
        let text = d.to_string();
        assert_eq!(text.len(), 7 + 64);
        assert_eq!(text.parse::<TokenDigest>(), Ok(d));
        assert!(d.ct_eq(&d));
        assert!(!d.ct_eq(&TokenDigest::of("kw_grid_y")));
    }

    #[test]
    fn digest_text_is_strict() {
        let good = TokenDigest::of("t").to_string();
        assert!(
            good.to_uppercase()
                .replace("SHA256", "sha256")
                .parse::<TokenDigest>()
                .is_err()
        );
        assert!(good[..good.len() - 1].parse::<TokenDigest>().is_err());
        assert!(
            good.replace("sha256:", "sha1:")
                .parse::<TokenDigest>()
                .is_err()
        );
    }

    #[test]
    fn token_shape() {
        assert_eq!(bot_name_of(&format!("kw_grid_{SECRET}")), Some("grid"));
        assert_eq!(
            bot_name_of(&format!("kw_my_bot-2_{SECRET}")),
            Some("my_bot-2")
        );
        assert_eq!(bot_name_of(&format!("kw_grid_{SECRET} ")), None);
        assert_eq!(bot_name_of(&format!(" kw_grid_{SECRET}")), None);
        assert_eq!(bot_name_of(&format!("kw_grid_{}", &SECRET[1..])), None);
        assert_eq!(bot_name_of(&format!("kw_Grid_{SECRET}")), None);
        assert_eq!(bot_name_of(&format!("kw__{SECRET}")), None);
        assert_eq!(bot_name_of("tok%0Aen"), None);
    }

    #[test]
    fn bot_keys_name_their_bot_and_key() {
        let mut point = [7u8; 65];
        assert!(BotKey::from_point(&point).is_none());
        point[0] = 4;
        assert!(BotKey::from_point(&point[..64]).is_none());
        let key = BotKey::from_point(&point).unwrap();
        let name = key.key_name("grid-1");
        assert_eq!(split_key_name(&name), Some(("grid-1", key.id().as_str())));
        assert_eq!(split_key_name(&name.replace("grid-1", "Grid")), None);
        assert_eq!(split_key_name(&format!("{name}0")), None);
        assert_eq!(
            split_key_name("organizations/x/apiKeys/grid.0011223344556677"),
            None
        );
    }
}
