//! The okx fixture: the corpus's P-OKX policy as bot `a` (trade/order,
//! cancel-order, the order query and the balance; `BTC-USDT` only; cash only, since
//! margin is refused without `allow_margin`), and bot `b` (the token `bot_b` names its bot) for the real clients
//! (market data, reads, trades and cancels on `BTC-USDT` and `ETH-USDT`). The account
//! serves public market data without a token: ccxt and python-okx send none there.

use zeroize::Zeroizing;

use super::{FixtureArgs, VenueFixture};
use crate::digest;

/// The OKX account's API key id (OKX issues UUIDs). Never in any output.
pub const API_KEY: &str = "0cca7a11-0e5b-4c2d-9a8f-0c0ffeecanar";
/// The OKX account's secret (OKX issues 32 uppercase hex digits).
pub const SECRET: &str = "CA0A11E5EC0E7A1BC0FFEE0D0E5CA7A7";
/// The OKX account's passphrase (chosen by the user when the key is made).
pub const PASSPHRASE: &str = "CanaryOkxPassphrase-7qW2z";

/// The fixture configuration.
pub fn config(args: &FixtureArgs<'_>) -> String {
    format!(
        r#"{preamble}
[accounts.okx]
venue = "okx"
secret = "okx"
{account_extra}
{upstream}

[bots.a]
account = "okx"
tokens = ["{a}"]
expires = "{expires}"
endpoints = ["POST /api/v5/trade/order", "POST /api/v5/trade/cancel-order", "GET /api/v5/trade/order", "GET /api/v5/account/balance"]
symbols = ["BTC-USDT"]
order_types = ["limit", "post_only", "market"]
max_order_notional = "100"
{bot_extra}

[bots.b]
account = "okx"
tokens = ["{b}"]
expires = "{expires}"
allow = ["market", "read", "trade", "cancel"]
symbols = ["BTC-USDT", "ETH-USDT"]
order_types = ["limit", "post_only", "ioc", "market"]
max_order_notional = "1000"
"#,
        preamble = args.preamble(VenueFixture::Okx),
        account_extra = args.account_extra,
        upstream = args.upstream,
        a = digest(&args.tokens.bot),
        b = digest(&args.tokens.bot_b),
        expires = args.expires,
        bot_extra = args.bot_extra,
    )
}

/// The account's vault entry: the OKX canary key, secret and passphrase.
pub fn vault_entry() -> Option<keyward::vault::Entry> {
    Some(keyward::vault::Entry {
        api_key: API_KEY.to_owned(),
        kind: keyward::credential::KeyKind::Hmac,
        secret: Zeroizing::new(SECRET.as_bytes().to_vec()),
        passphrase: Some(Zeroizing::new(PASSPHRASE.as_bytes().to_vec())),
        venue: Some("okx".to_owned()),
        created: 0,
    })
}
