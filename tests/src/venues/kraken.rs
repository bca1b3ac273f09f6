//! The kraken fixture: the corpus's P-KRK policy as bot `a` (AddOrder,
//! CancelOrder, OpenOrders, Balance; XBTUSD only; limit and market; no leverage, no
//! `close[...]`; at most 0.01 volume, plus a notional cap for viqc orders), a broader
//! bot for the real clients (named `b`, as its token `bot_b` says), and the account's canary credentials in the shape
//! Kraken issues them (a 56-character key, a base64 secret of 64 bytes); a bot's
//! private call as Kraken's clients send it; and Kraken's `API-Sign`, computed
//! independently of keyward, which the mock checks and tests sign with.

use base64::Engine as _;

use super::{FixtureArgs, VenueFixture};
use crate::client::{BotClient, Response};

/// The Kraken account's API key.
pub const API_KEY: &str = "CANARYKRAKENKEYq7Wm2Xr9Tz4Lb8Nd1Vf6Hj3Ks5Pg0Qc2Ye7Ua9Io4";
/// The Kraken account's secret: base64 of 64 bytes, as Kraken issues it.
pub const SECRET: &str =
    "Q0FOQVJZS1JBS0VOU0VDUkVUQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2BhYmNkZWZnaGlqa2xtbg==";

/// The fixture configuration.
pub fn config(args: &FixtureArgs<'_>) -> String {
    format!(
        r#"{preamble}
[accounts.kraken]
venue = "kraken"
secret = "kraken"
{account_extra}
{upstream}

[bots.a]
account = "kraken"
tokens = ["{a}"]
expires = "{expires}"
endpoints = ["POST /0/private/AddOrder", "POST /0/private/CancelOrder", "POST /0/private/OpenOrders", "POST /0/private/Balance"]
symbols = ["XBTUSD"]
order_types = ["limit", "market"]
max_order_qty = {{ XBTUSD = "0.01" }}
max_order_notional = "100"
{bot_extra}

[bots.b]
account = "kraken"
tokens = ["{b}"]
expires = "{expires}"
allow = ["market", "read", "trade", "cancel"]
symbols = ["XBTUSD"]
order_types = ["limit", "market"]
max_order_notional = "1000"
"#,
        preamble = args.preamble(VenueFixture::Kraken),
        account_extra = args.account_extra,
        upstream = args.upstream,
        a = crate::digest(&args.tokens.bot),
        b = crate::digest(&args.tokens.bot_b),
        expires = args.expires,
        bot_extra = args.bot_extra,
    )
}

/// The account's vault entry.
pub fn vault_entry() -> Option<keyward::vault::Entry> {
    Some(keyward::vault::Entry {
        api_key: API_KEY.to_owned(),
        kind: keyward::credential::KeyKind::Hmac,
        secret: zeroize::Zeroizing::new(SECRET.as_bytes().to_vec()),
        passphrase: None,
        venue: Some("kraken".to_owned()),
        created: 0,
    })
}

/// `POST /0/private/METHOD` with `body` as `content_type`, as a bot does on keyward's
/// listener at `port`, with its token in `API-Key` (none: unauthenticated).
pub async fn private(
    client: &BotClient,
    port: u16,
    token: Option<&str>,
    method: &str,
    content_type: &str,
    body: &str,
) -> Response {
    let mut headers = vec![
        ("Host".to_owned(), format!("localhost:{port}")),
        ("Content-Type".to_owned(), content_type.to_owned()),
    ];
    if let Some(token) = token {
        headers.push(("API-Key".to_owned(), token.to_owned()));
    }
    client
        .request(
            "POST",
            &format!("/0/private/{method}"),
            &headers,
            body.as_bytes(),
        )
        .await
}

/// Kraken's `API-Sign` of a private call to `path` (`/0/private/METHOD`):
/// base64(HMAC-SHA512(`key`, `path` || SHA256(`nonce` || `body`))), `key` the
/// secret's base64 decoded.
pub fn api_sign(key: &[u8], path: &str, nonce: &str, body: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{nonce}{body}").as_bytes());
    let mut message = path.as_bytes().to_vec();
    message.extend_from_slice(digest.as_ref());
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key),
        &message,
    );
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}
