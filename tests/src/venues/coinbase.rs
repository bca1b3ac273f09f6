//! The coinbase fixture (port 8448): the account with a canary CDP key (a key name and
//! an EC P-256 SEC1 PEM, as Coinbase issues them), bot `a` with a corpus-style policy
//! and bot `b` for the real clients. Each bot has a plain keyward token (ccxt sends it
//! as a bearer token) and a P-256 signing key of its own (the official SDK signs a
//! JWT with it); their private keys are here so tests can sign as the bots.
//!
//! The attack corpus has no Coinbase policy and no Coinbase case;
//! bot `a` mirrors P-KRK: orders, cancels, open orders and balance on one product,
//! limit and market, at most 0.01 BTC and 100 USD per order.

use super::{FixtureArgs, VenueFixture};
use crate::digest;

/// The canary CDP key name (what Coinbase calls the API key).
pub const CANARY_KEY_NAME: &str = "organizations/CANARYORGcb7Qz4Hk/apiKeys/CANARYCBKEYx9Lm2VtQ8r";
/// The canary CDP private key.
pub const CANARY_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEII+AyK7UjiQCa1uCrvDBMJzTEs6gBBuifXmrRt6J5+ZpoAoGCCqGSM49\nAwEHoUQDQgAE16QgY5VALMN0+7Fi+Gd35qrJ7CEcwDkmxRMVhg6xDKrLYnj4lNrr\n3z/Dru1gVN9ukTgCZyLwiEboGrtV9uruxw==\n-----END EC PRIVATE KEY-----\n";
/// A line of the canary private key that appears nowhere else, for leak searches.
pub const CANARY_PEM_LINE: &str =
    "AwEHoUQDQgAE16QgY5VALMN0+7Fi+Gd35qrJ7CEcwDkmxRMVhg6xDKrLYnj4lNrr";

/// Bot `a`'s signing key (private half; the configuration holds the public half).
pub const BOT_A_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBFtrQmlBGCDgNJcwU1urWyp4nyZczbPKlrVtqakmKnRoAoGCCqGSM49\nAwEHoUQDQgAEctKQNYv3Ve4xajOvGS3dgeioapgrR2cJxx0rMyzPoRaeKG7c4VD0\nAJiiHONMAYYTqlyKfSkD+WYD2Rdk2MKIEQ==\n-----END EC PRIVATE KEY-----\n";
/// Bot `a`'s public key as configured.
pub const BOT_A_KEY: &str = "p256:MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEctKQNYv3Ve4xajOvGS3dgeioapgrR2cJxx0rMyzPoRaeKG7c4VD0AJiiHONMAYYTqlyKfSkD+WYD2Rdk2MKIEQ==";
/// Bot `b`'s signing key.
pub const BOT_B_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIF6+h/VDvOy7Wz7bkXilXomaK801Ia6/ZzOAtEIAHBnHoAoGCCqGSM49\nAwEHoUQDQgAE75uSk5Z8BMtA0Oy0oWoELoq1gPoZ1CYbv3WmRf+K0xzG/ctEp79H\nm4/8xEUB1WNUwGmEW0F/w4GeR0wOtcnWlw==\n-----END EC PRIVATE KEY-----\n";
/// Bot `b`'s public key as configured.
pub const BOT_B_KEY: &str = "p256:MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE75uSk5Z8BMtA0Oy0oWoELoq1gPoZ1CYbv3WmRf+K0xzG/ctEp79Hm4/8xEUB1WNUwGmEW0F/w4GeR0wOtcnWlw==";

/// The key name a bot puts in its JWT for one of the keys above.
pub fn key_name(bot: &str, public: &str) -> String {
    keyward::botjwt::parse_public_key(public)
        .expect("fixture key")
        .key_name(bot)
}

/// The fixture configuration.
pub fn config(args: &FixtureArgs<'_>) -> String {
    format!(
        r#"{preamble}
[accounts.coinbase]
venue = "coinbase"
secret = "coinbase"
{account_extra}
{upstream}

[bots.a]
account = "coinbase"
tokens = ["{a}", "{a_key}"]
expires = "{expires}"
endpoints = ["POST /api/v3/brokerage/orders", "POST /api/v3/brokerage/orders/batch_cancel", "GET /api/v3/brokerage/orders/historical/batch", "GET /api/v3/brokerage/accounts"]
symbols = ["BTC-USD"]
order_types = ["limit_limit_gtc", "market_market_ioc"]
max_order_notional = "100"
max_order_qty = {{ "BTC-USD" = "0.01" }}
{bot_extra}

[bots.b]
account = "coinbase"
tokens = ["{b}", "{b_key}"]
expires = "{expires}"
allow = ["market", "read", "trade", "cancel"]
symbols = ["BTC-USD", "ETH-USD"]
order_types = ["limit_limit_gtc", "limit_limit_gtd", "market_market_ioc"]
max_order_notional = "1000"
"#,
        preamble = args.preamble(VenueFixture::Coinbase),
        account_extra = args.account_extra,
        upstream = args.upstream,
        a = digest(&args.tokens.bot),
        a_key = BOT_A_KEY,
        b = digest(&args.tokens.bot_b),
        b_key = BOT_B_KEY,
        expires = args.expires,
        bot_extra = args.bot_extra,
    )
}

/// The account's vault entry: the canary CDP key.
pub fn vault_entry() -> Option<keyward::vault::Entry> {
    Some(keyward::vault::Entry {
        api_key: CANARY_KEY_NAME.to_owned(),
        kind: keyward::credential::KeyKind::EcP256,
        secret: zeroize::Zeroizing::new(CANARY_PEM.as_bytes().to_vec()),
        passphrase: None,
        venue: Some("coinbase".to_owned()),
        created: 0,
    })
}

/// A JWT as coinbase-advanced-py signs it with the bot key in `pem` (`kid` its key
/// name): `uri` names keyward's host as the bot addresses it, valid from `nbf` (s
/// since the epoch) for `lifetime` seconds, with a random nonce.
pub fn bot_jwt(pem: &str, kid: &str, uri: &str, nbf: u64, lifetime: u64) -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let credential = keyward::credential::Credential::new(
        "bot",
        keyward::credential::KeyKind::EcP256,
        pem.as_bytes(),
    )
    .expect("a bot key");
    let mut nonce = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .expect("randomness");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = format!(
        r#"{{"alg":"ES256","kid":"{kid}","nonce":"{}{}","typ":"JWT"}}"#,
        keyward_venues::hex(&nbf.to_be_bytes()),
        keyward_venues::hex(&nonce)
    );
    let claims = format!(
        r#"{{"sub":"{kid}","iss":"cdp","nbf":{nbf},"exp":{},"uri":"{uri}"}}"#,
        nbf + lifetime
    );
    let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let signature = credential
        .sign_asymmetric(input.as_bytes())
        .expect("a signature");
    format!("{input}.{}", b64.encode(signature))
}
