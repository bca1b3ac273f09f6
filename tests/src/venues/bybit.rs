//! The bybit fixture: the corpus's P-BYB policy as bot `a` (spot BTCUSDT,
//! `isLeverage=0` only, i.e. no `allow_margin`), a broader bot `b` (tokens name
//! their bot, and the fixture's second token is `bot_b`) for the real clients
//! (pybit, ccxt), and canary credentials shaped like Bybit's (an 18-character key
//! and a 36-character HMAC secret).

use keyward::credential::KeyKind;
use zeroize::Zeroizing;

use super::{FixtureArgs, VenueFixture};
use crate::digest;

/// The account's API key: these canaries must never appear in any output.
pub const CANARY_API_KEY: &str = "CNRYBYBITk7Qw2Zx9M";
/// The account's HMAC secret.
pub const CANARY_SECRET: &str = "CNRYBYBITSECRETv3Hn8Lp5Rt1Wq6Ys0Jd4F";

/// The fixture configuration.
pub fn config(args: &FixtureArgs<'_>) -> String {
    format!(
        r#"{preamble}
[accounts.bybit]
venue = "bybit"
secret = "bybit"
recv_window_ms = 5000
{account_extra}
{upstream}

[bots.a]
account = "bybit"
tokens = ["{a}"]
expires = "{expires}"
endpoints = ["POST /v5/order/create", "POST /v5/order/cancel", "GET /v5/order/realtime", "GET /v5/account/wallet-balance"]
symbols = ["spot:BTCUSDT"]
order_types = ["Limit", "Market"]
max_order_notional = "100"
{bot_extra}

[bots.b]
account = "bybit"
tokens = ["{b}"]
expires = "{expires}"
allow = ["market", "read", "trade", "cancel"]
symbols = ["spot:BTCUSDT", "linear:BTCUSDT"]
order_types = ["Limit", "Market"]
max_order_notional = "1000"
"#,
        preamble = args.preamble(VenueFixture::Bybit),
        account_extra = args.account_extra,
        upstream = args.upstream,
        a = digest(&args.tokens.bot),
        b = digest(&args.tokens.bot_b),
        expires = args.expires,
        bot_extra = args.bot_extra,
    )
}

/// The account's vault entry.
pub fn vault_entry() -> Option<keyward::vault::Entry> {
    Some(keyward::vault::Entry {
        api_key: CANARY_API_KEY.to_owned(),
        kind: KeyKind::Hmac,
        secret: Zeroizing::new(CANARY_SECRET.as_bytes().to_vec()),
        passphrase: None,
        venue: Some("bybit".to_owned()),
        created: 0,
    })
}
