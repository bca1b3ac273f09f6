//! Issue 16: what a leaked token could still do when the real effect of a request
//! depends on something keyward did not consult (the order being amended, the
//! position being closed, the outcome of a half-failed request, the exchange's
//! budget). Every test runs over TLS against the recording mock exchange and proves
//! what did, or did not, reach it.

use keyward_tests::client::{Response, build};
use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::venues::{self, VenueFixture};
use std::time::{Duration, SystemTime};

use keyward_tests::{FixturePolicy, Serving, canary, digest, rfc3339, token};

/// How a bot of one venue fixture talks to keyward, and an order its bot `a` may place.
struct Venue {
    name: &'static str,
    policy: FixturePolicy,
    key_header: &'static str,
    bearer: bool,
    content_type: &'static str,
    order_target: &'static str,
    order: &'static str,
    /// The account's API key and other credentials a bot must never see.
    credentials: &'static [&'static str],
    /// Refusals go out as HTTP 200 with the error in the body, as the exchange's own
    /// do (Bybit, Kraken), except where the order may have executed (502, 504).
    refuses_in_200: bool,
}

const VENUES: [Venue; 5] = [
    Venue {
        name: "binance",
        policy: FixturePolicy::P0,
        key_header: "X-MBX-APIKEY",
        bearer: false,
        content_type: "application/x-www-form-urlencoded",
        order_target: "/api/v3/order",
        order: "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000",
        credentials: &[canary::API_KEY, canary::SECRET, canary::PASSPHRASE],
        refuses_in_200: false,
    },
    Venue {
        name: "bybit",
        policy: FixturePolicy::Venue(VenueFixture::Bybit),
        key_header: "X-BAPI-API-KEY",
        bearer: false,
        content_type: "application/json",
        order_target: "/v5/order/create",
        order: r#"{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}"#,
        credentials: &[venues::bybit::CANARY_API_KEY, venues::bybit::CANARY_SECRET],
        refuses_in_200: true,
    },
    Venue {
        name: "okx",
        policy: FixturePolicy::Venue(VenueFixture::Okx),
        key_header: "OK-ACCESS-KEY",
        bearer: false,
        content_type: "application/json",
        order_target: "/api/v5/trade/order",
        order: r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.001","px":"60000"}"#,
        credentials: &[
            venues::okx::API_KEY,
            venues::okx::SECRET,
            venues::okx::PASSPHRASE,
        ],
        refuses_in_200: false,
    },
    Venue {
        name: "kraken",
        policy: FixturePolicy::Venue(VenueFixture::Kraken),
        key_header: "API-Key",
        bearer: false,
        content_type: "application/x-www-form-urlencoded",
        order_target: "/0/private/AddOrder",
        order: "nonce=1&ordertype=limit&type=buy&volume=0.001&pair=XBTUSD&price=60000",
        credentials: &[venues::kraken::API_KEY, venues::kraken::SECRET],
        refuses_in_200: true,
    },
    Venue {
        name: "coinbase",
        policy: FixturePolicy::Venue(VenueFixture::Coinbase),
        key_header: "Authorization",
        bearer: true,
        content_type: "application/json",
        order_target: "/api/v3/brokerage/orders",
        order: r#"{"client_order_id":"cid-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.001","limit_price":"60000.00"}}}"#,
        credentials: &[
            venues::coinbase::CANARY_KEY_NAME,
            venues::coinbase::CANARY_PEM_LINE,
        ],
        refuses_in_200: false,
    },
];

impl Venue {
    /// The HTTP status of a refusal keyward gives `status`, as this venue sends it,
    /// for the refusals these tests provoke: none leaves an order's fate unknown.
    fn sent_status(&self, status: u16) -> u16 {
        if self.refuses_in_200 { 200 } else { status }
    }

    async fn serve(&self, mock: &Mock, bot_extra: &str) -> Keyward {
        self.serve_with(mock, bot_extra, "").await
    }

    async fn serve_with(&self, mock: &Mock, bot_extra: &str, account_extra: &str) -> Keyward {
        Keyward::serve(
            self.policy,
            Serving {
                bot_extra: bot_extra.to_owned(),
                account_extra: account_extra.to_owned(),
                ..Serving::against(mock)
            },
        )
        .await
    }

    async fn send(&self, keyward: &Keyward, method: &str, target: &str, body: &str) -> Response {
        self.send_as(keyward, &keyward.tokens.bot, method, target, body)
            .await
    }

    async fn send_as(
        &self,
        keyward: &Keyward,
        token: &str,
        method: &str,
        target: &str,
        body: &str,
    ) -> Response {
        let value = if self.bearer {
            format!("Bearer {token}")
        } else {
            token.to_owned()
        };
        let mut headers = vec![
            ("Host".to_owned(), format!("localhost:{}", keyward.port())),
            (self.key_header.to_owned(), value),
        ];
        if !body.is_empty() {
            headers.push(("Content-Type".to_owned(), self.content_type.to_owned()));
        }
        keyward
            .client
            .request(method, target, &headers, body.as_bytes())
            .await
    }
}

/// A dry-run answer shows what would be sent with placeholders for every credential:
/// before, it carried the real API key (every venue), the OKX passphrase, Binance's
/// signature over the very bytes shown, and Coinbase's JWT, which was accepted by the
/// exchange with another body within its lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_answer_hands_out_no_credential() {
    let mock = Mock::start().await;
    for venue in &VENUES {
        let keyward = venue.serve(&mock, "mode = \"dry-run\"").await;
        mock.clear();
        let answer = venue
            .send(&keyward, "POST", venue.order_target, venue.order)
            .await;
        assert_eq!(answer.status, 200, "{}: {}", venue.name, answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let sent = &body["would_send"];
        assert!(
            sent["signature"].as_str().unwrap().starts_with("withheld"),
            "{}: {body}",
            venue.name
        );
        for credential in venue.credentials {
            assert!(
                !answer.body.contains(credential),
                "{}: the dry-run answer holds a credential: {body}",
                venue.name
            );
        }
        // No signature of any kind: no hex or base64 run a signature would be, no JWT.
        let text = sent.to_string();
        assert!(!text.contains("eyJ"), "{}: a JWT in {text}", venue.name);
        let hex_run = text
            .as_bytes()
            .split(|b| !b.is_ascii_hexdigit())
            .map(<[u8]>::len)
            .max()
            .unwrap_or(0);
        assert!(
            hex_run < 32,
            "{}: a signature-like run in {text}",
            venue.name
        );
        assert!(
            mock.records().is_empty(),
            "{}: a dry run reached the exchange",
            venue.name
        );
        keyward.running.shutdown().await;
    }
}

/// Sends `body` to `target` as `token`, with the mock's records cleared; asserts the
/// refusal's status (keyward's, in its audit record, and the venue's on the wire)
/// and reason and that the exchange received nothing.
async fn refused_unsent(
    venue: &Venue,
    keyward: &Keyward,
    mock: &Mock,
    token: &str,
    (method, target, body): (&str, &str, &str),
    (status, reason): (u16, &str),
) -> Response {
    mock.clear();
    let answer = venue.send_as(keyward, token, method, target, body).await;
    assert_eq!(
        (
            keyward.refused_with(&answer),
            answer.header("x-keyward-error")
        ),
        (Some(status), Some(reason)),
        "{} {method} {target} {body}: {}",
        venue.name,
        answer.body
    );
    assert_eq!(
        answer.status,
        venue.sent_status(status),
        "{} {method} {target} {body}",
        venue.name
    );
    let records = mock.records();
    assert!(
        records
            .iter()
            .all(|r| r.path != target.split('?').next().unwrap()),
        "{} {method} {target} {body} reached the exchange: {records:?}",
        venue.name
    );
    answer
}

fn expires() -> String {
    rfc3339(SystemTime::now() + Duration::from_secs(7 * 86_400))
}

/// Bybit closes the whole position for `qty="0"` with `reduceOnly` and
/// `closeOnTrigger` (up to maxMktOrderQty). It was signed with notional 0 in every
/// form: Market, Limit, conditional, `"0.000"`, a create-batch element, parameters in
/// the query. Now such an order is refused `notional_unbounded` unless the bot has
/// `allow_position_close`, and then only reduce-only, on its symbols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_the_exchange_decides_is_refused_unless_closes_are_allowed() {
    let mock = Mock::start().await;
    let bybit = &VENUES[1];
    let tables = format!(
        r#"
[bots.capped]
account = "bybit"
tokens = ["{capped}"]
expires = "{expires}"
allow = ["trade"]
symbols = ["linear:BTCUSDT"]
order_types = ["Limit", "Market"]
max_order_notional = "100"

[bots.closer]
account = "bybit"
tokens = ["{closer}"]
expires = "{expires}"
allow = ["trade"]
symbols = ["linear:BTCUSDT"]
order_types = ["Limit", "Market"]
max_order_notional = "100"
allow_position_close = true
"#,
        capped = digest(&token("capped", "active")),
        closer = digest(&token("closer", "active")),
        expires = expires(),
    );
    let keyward = Keyward::serve(
        bybit.policy,
        Serving {
            tables,
            ..Serving::against(&mock)
        },
    )
    .await;
    let capped = token("capped", "active");
    let closer = token("closer", "active");
    let close = r#""reduceOnly":true,"closeOnTrigger":true"#;
    let whole_position_closes = [
        format!(
            r#"{{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0",{close}}}"#
        ),
        format!(
            r#"{{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Limit","qty":"0","price":"60000",{close}}}"#
        ),
        format!(
            r#"{{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0.000","triggerDirection":2,"triggerPrice":"59000",{close}}}"#
        ),
    ];
    for body in &whole_position_closes {
        let request = ("POST", "/v5/order/create", body.as_str());
        refused_unsent(
            bybit,
            &keyward,
            &mock,
            &capped,
            request,
            (403, "notional_unbounded"),
        )
        .await;
    }
    let batch = format!(
        r#"{{"category":"linear","request":[{{"symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000"}},{{"symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0",{close}}}]}}"#
    );
    let request = ("POST", "/v5/order/create-batch", batch.as_str());
    // Bot `b` of the fixture may call every trade endpoint on linear:BTCUSDT.
    let b = keyward.tokens.bot_b.clone();
    refused_unsent(
        bybit,
        &keyward,
        &mock,
        &b,
        request,
        (403, "notional_unbounded"),
    )
    .await;
    // The same order with its parameters in the query of a body-less POST.
    let query = "/v5/order/create?category=linear&symbol=BTCUSDT&side=Sell&orderType=Market&qty=0&reduceOnly=true&closeOnTrigger=true";
    refused_unsent(
        bybit,
        &keyward,
        &mock,
        &capped,
        ("POST", query, ""),
        (403, "notional_unbounded"),
    )
    .await;

    // With allow_position_close: a reduce-only close passes (and reaches the
    // exchange signed); one that is not reduce-only is still refused.
    mock.clear();
    let answer = bybit
        .send_as(
            &keyward,
            &closer,
            "POST",
            "/v5/order/create",
            &whole_position_closes[0],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent: Vec<_> = mock
        .records()
        .into_iter()
        .filter(|r| r.path == "/v5/order/create")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].signature_ok, Some(true));
    assert!(sent[0].body.contains(r#""qty":"0""#), "{}", sent[0].body);
    let not_reduce_only =
        r#"{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0"}"#;
    let request = ("POST", "/v5/order/create", not_reduce_only);
    let refused = refused_unsent(
        bybit,
        &keyward,
        &mock,
        &closer,
        request,
        (403, "notional_unbounded"),
    )
    .await;
    assert!(refused.body.contains("reduce-only"), "{}", refused.body);
    keyward.running.shutdown().await;
}

/// The same class on every other venue: a zero size, or an explicit whole-position
/// close, is never bounded by the size it states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_venue_refuses_sizes_the_exchange_decides() {
    let mock = Mock::start().await;
    let zero_sized = [
        (
            &VENUES[0],
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0&price=60000",
        ),
        (
            &VENUES[0],
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=0.00",
        ),
        (
            &VENUES[2],
            "/api/v5/trade/order",
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"limit","sz":"0","px":"60000"}"#,
        ),
        (
            &VENUES[3],
            "/0/private/AddOrder",
            "nonce=1&ordertype=limit&type=sell&volume=0&pair=XBTUSD&price=60000",
        ),
        (
            &VENUES[4],
            "/api/v3/brokerage/orders",
            r#"{"client_order_id":"cid-0","product_id":"BTC-USD","side":"SELL","order_configuration":{"limit_limit_gtc":{"base_size":"0","limit_price":"60000.00"}}}"#,
        ),
    ];
    for (venue, target, body) in zero_sized {
        let keyward = venue.serve(&mock, "").await;
        let bot = keyward.tokens.bot.clone();
        let request = ("POST", target, body);
        refused_unsent(
            venue,
            &keyward,
            &mock,
            &bot,
            request,
            (403, "notional_unbounded"),
        )
        .await;
        keyward.running.shutdown().await;
    }
    // Binance USD-M: closePosition=true sizes a stop-market order as the whole
    // position, with or without allow_position_close when it is not granted.
    let tables = format!(
        r#"
[accounts.futures]
venue = "binance-usdm"
secret = "futures"
upstream = "{url}"
upstream_ca = "{ca}"

[bots.fut]
account = "futures"
tokens = ["{fut}"]
expires = "{expires}"
allow = ["trade"]
symbols = ["BTCUSDT"]
order_types = ["STOP_MARKET", "LIMIT"]
max_order_notional = "100"
"#,
        url = mock.url(),
        ca = mock.ca.display(),
        fut = digest(&token("fut", "active")),
        expires = expires(),
    );
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables,
            ..Serving::against(&mock)
        },
    )
    .await;
    let request = (
        "POST",
        "/fapi/v1/order",
        "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&stopPrice=59000&closePosition=true",
    );
    let fut = token("fut", "active");
    refused_unsent(
        &VENUES[0],
        &keyward,
        &mock,
        &fut,
        request,
        (403, "notional_unbounded"),
    )
    .await;
    keyward.running.shutdown().await;
}

/// Gaps in the venues' grammars: OKX `optimal_limit_ioc` on a spot pair (documented
/// for futures and swaps only; it was read as a quote-sized market buy), Binance
/// `trailingDelta` on a plain LIMIT order, and a keyward token inside a parameter
/// value (a Coinbase `client_order_id` was forwarded and came back in the answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grammar_gaps_are_refused_before_anything_is_sent() {
    let mock = Mock::start().await;
    let okx = &VENUES[2];
    let tables = format!(
        r#"
[bots.optimal]
account = "okx"
tokens = ["{}"]
expires = "{}"
allow = ["trade"]
symbols = ["BTC-USDT"]
order_types = ["optimal_limit_ioc", "limit"]
max_order_notional = "100"
"#,
        digest(&token("optimal", "active")),
        expires()
    );
    let keyward = Keyward::serve(
        okx.policy,
        Serving {
            tables,
            ..Serving::against(&mock)
        },
    )
    .await;
    let optimal = token("optimal", "active");
    let body = r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"optimal_limit_ioc","sz":"50"}"#;
    let refused = refused_unsent(
        okx,
        &keyward,
        &mock,
        &optimal,
        ("POST", "/api/v5/trade/order", body),
        (400, "param_invalid"),
    )
    .await;
    assert!(refused.body.contains("ordType"), "{}", refused.body);
    keyward.running.shutdown().await;

    let binance = &VENUES[0];
    let keyward = binance.serve(&mock, "").await;
    let bot = keyward.tokens.bot.clone();
    let body = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&trailingDelta=500";
    let refused = refused_unsent(
        binance,
        &keyward,
        &mock,
        &bot,
        ("POST", "/api/v3/order", body),
        (400, "param_invalid"),
    )
    .await;
    assert!(refused.body.contains("trailingDelta"), "{}", refused.body);
    keyward.running.shutdown().await;

    let coinbase = &VENUES[4];
    let keyward = coinbase.serve(&mock, "").await;
    let bot = keyward.tokens.bot.clone();
    for client_order_id in [format!("cid-{bot}"), format!("{bot}:1")] {
        let body = format!(
            r#"{{"client_order_id":"{client_order_id}","product_id":"BTC-USD","side":"BUY","order_configuration":{{"limit_limit_gtc":{{"base_size":"0.001","limit_price":"60000.00"}}}}}}"#
        );
        let request = ("POST", "/api/v3/brokerage/orders", body.as_str());
        let refused = refused_unsent(
            coinbase,
            &keyward,
            &mock,
            &bot,
            request,
            (400, "token_in_query"),
        )
        .await;
        assert!(!refused.body.contains(&bot), "{}", refused.body);
    }
    keyward.running.shutdown().await;
}

/// `cd DIR && keyward --config keyward.toml serve` without `state_dir`: the state
/// directory was the empty path, the Kraken nonce mark could not be written and every
/// signed Kraken request answered 500. Started exactly so, a Kraken order reaches the
/// exchange signed with keyward's nonce, and the mark is in the configuration's
/// directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_config_path_resolves_state_against_the_files_directory() {
    let mock = Mock::start().await;
    let keyward = keyward_tests::process::KeywardProcess::spawn_serving(
        std::path::Path::new(env!("CARGO_BIN_EXE_keyward-e2e")),
        FixturePolicy::Venue(VenueFixture::Kraken),
        Serving {
            relative_config: true,
            ..Serving::against(&mock)
        },
        keyward_tests::process::VaultKey::File,
        &[],
    );
    let kraken = &VENUES[3];
    let headers = vec![
        (
            "Host".to_owned(),
            format!("localhost:{}", keyward.bot_addr.port()),
        ),
        (kraken.key_header.to_owned(), keyward.tokens.bot.clone()),
        ("Content-Type".to_owned(), kraken.content_type.to_owned()),
    ];
    let answer = keyward
        .client
        .request(
            "POST",
            kraken.order_target,
            &headers,
            kraken.order.as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent: Vec<_> = mock
        .records()
        .into_iter()
        .filter(|r| r.path == kraken.order_target)
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].signature_ok, Some(true), "{sent:?}");
    let marks: Vec<_> = std::fs::read_dir(keyward.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("keyward-nonce-")
        })
        .collect();
    assert_eq!(marks.len(), 1, "the nonce mark beside the configuration");
}

/// Writes `head` (and nothing after it) on a fresh HTTP/1.1 connection and returns
/// the first bytes keyward answers within two seconds.
async fn first_answer_to_head(keyward: &Keyward, head: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = keyward.client.connect(&[b"http/1.1"]).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
    match read {
        Ok(Ok(n)) => String::from_utf8_lossy(&buffer[..n]).into_owned(),
        _ => String::new(),
    }
}

/// HTTP edges: `Expect: 100-continue` is decided on the head (a refused request gets
/// its refusal, never a 100 that invites the body); a repeated `Content-Type` is
/// refused (the first one won); and after refusing a request for ambiguous framing or
/// a duplicate or foreign Host, keyward closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_edges_are_decided_on_the_head_and_refusals_close() {
    let mock = Mock::start().await;
    let binance = &VENUES[0];
    let keyward = binance.serve(&mock, "").await;
    let port = keyward.port();
    let token = keyward.tokens.bot.clone();
    let body = "coin=USDT&address=x&amount=1";
    let refused = first_answer_to_head(
        &keyward,
        &format!(
            "POST /sapi/v1/capital/withdraw/apply HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        ),
    )
    .await;
    assert!(
        refused.starts_with("HTTP/1.1 403"),
        "a refused head must be answered with its refusal, not 100: {refused:?}"
    );
    let order = binance.order;
    let allowed = first_answer_to_head(
        &keyward,
        &format!(
            "POST /api/v3/order HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            order.len()
        ),
    )
    .await;
    assert!(
        allowed.starts_with("HTTP/1.1 100"),
        "an admitted head is invited to send its body: {allowed:?}"
    );

    // Two Content-Types: refused, whichever comes first.
    mock.clear();
    let duplicate = keyward
        .client
        .raw(
            format!(
                "POST /api/v3/order HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{order}",
                order.len()
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(
        (duplicate.status, duplicate.header("x-keyward-error")),
        (400, Some("header_duplicate")),
        "{}",
        duplicate.body
    );
    assert!(mock.records().iter().all(|r| r.path != "/api/v3/order"));

    // Refusals that leave the stream untrusted close the connection.
    let untrusted = [
        format!(
            "POST /api/v3/order HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        format!(
            "GET /api/v3/account HTTP/1.1\r\nHost: localhost:{port}\r\nHost: attacker.example\r\nX-MBX-APIKEY: {token}\r\n\r\n"
        ),
        format!(
            "GET /api/v3/account HTTP/1.1\r\nHost: attacker.example\r\nX-MBX-APIKEY: {token}\r\n\r\n"
        ),
        duplicate_content_type(port, &token, order),
    ];
    for request in &untrusted {
        let answer = keyward.client.raw(request.as_bytes()).await;
        assert!(
            answer.status >= 400 && answer.closed,
            "{request:?}: {} closed={}",
            answer.status,
            answer.closed
        );
    }
    keyward.running.shutdown().await;
}

fn duplicate_content_type(port: u16, token: &str, order: &str) -> String {
    format!(
        "POST /api/v3/order HTTP/1.1\r\nHost: localhost:{port}\r\nX-MBX-APIKEY: {token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{order}",
        order.len()
    )
}

/// A refused request never causes a request to the exchange. Symbols were marked for
/// the background price refresh before the decision: 40 orders for made-up symbols,
/// all refused, caused 1,427 ticker calls in 10 s (every 250 ms for a minute) and
/// 1,467 warnings. Now only symbols on the bot's list are fetched, a failing one backs
/// off, and its warnings are rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_orders_cause_no_price_fetches_and_failures_back_off() {
    let mock = Mock::start().await;
    let keyward = keyward_tests::process::KeywardProcess::spawn_serving(
        std::path::Path::new(env!("CARGO_BIN_EXE_keyward-e2e")),
        FixturePolicy::P0,
        Serving {
            bot_extra: "price_band = \"5%\"".to_owned(),
            ..Serving::against(&mock)
        },
        keyward_tests::process::VaultKey::File,
        &[],
    );
    let headers =
        keyward_tests::client::bot_headers(keyward.bot_addr.port(), &keyward.tokens.bot, true);
    let mut connection = keyward.client.keep_alive().await;
    for n in 0..40 {
        let order =
            format!("symbol=FAKE{n}USDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=1");
        let request = build("POST", "/api/v3/order", &headers, order.as_bytes());
        let answer = connection.send(&request).await;
        assert_eq!(answer.header("x-keyward-error"), Some("symbol_not_allowed"));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked: Vec<_> = mock
        .records()
        .into_iter()
        .chain(mock.keywards_own())
        .filter(|r| !r.path.ends_with("/time"))
        .collect();
    assert!(
        asked.is_empty(),
        "refused orders caused requests to the exchange: {asked:?}"
    );

    // A symbol on the list whose ticker fails: 30 orders in about 3 s are refused
    // (no price), and the exchange is asked a handful of times (the back-off doubles
    // from half a second to a minute), not once per order.
    mock.set_quote("ETHUSDT", None);
    let order = "symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=3000";
    for _ in 0..30 {
        let request = build("POST", "/api/v3/order", &headers, order.as_bytes());
        let answer = connection.send(&request).await;
        assert_eq!(
            answer.header("x-keyward-error"),
            Some("reference_price_unavailable"),
            "{}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tickers = mock
        .keywards_own()
        .iter()
        .filter(|r| r.path == "/api/v3/ticker/bookTicker")
        .count();
    assert!(
        (1..=6).contains(&tickers),
        "{tickers} ticker requests for one failing symbol in about 4 s: {}",
        keyward.log()
    );
    assert!(
        mock.records().iter().all(|r| r.path != "/api/v3/order"),
        "an order without a price was sent"
    );
    let warnings = keyward
        .log()
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("reference price"))
        .count();
    assert_eq!(
        warnings,
        1,
        "warnings about one failing symbol: {}",
        keyward.log()
    );
}

/// Two trading bots on the Binance spot account of P0, with every budget.
fn binance_traders(open: u32) -> String {
    let bot = |name: &str| {
        format!(
            r#"
[bots.{name}]
account = "spot"
tokens = ["{digest}"]
expires = "{expires}"
allow = ["trade", "cancel", "read"]
symbols = ["BTCUSDT", "ETHUSDT"]
order_types = ["LIMIT", "MARKET"]
max_order_notional = "100"
daily_notional = "200"
max_orders = "3/d"
max_open_orders = {open}
"#,
            digest = digest(&token(name, "active")),
            expires = expires(),
        )
    };
    format!("{}{}", bot("alpha"), bot("beta"))
}

async fn binance_traders_serving(
    mock: &Mock,
    open: u32,
    server_extra: &str,
    account_extra: &str,
) -> Keyward {
    Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables: binance_traders(open),
            server_extra: server_extra.to_owned(),
            account_extra: account_extra.to_owned(),
            ..Serving::against(mock)
        },
    )
    .await
}

/// A Binance answer's order id.
fn order_id(answer: &Response) -> String {
    let body: serde_json::Value =
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body));
    body["orderId"].to_string()
}

const BUY_60: &str =
    "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";

/// Binance answers 409 to a cancel-replace whose cancel failed and whose new order
/// was placed (`ALLOW_FAILURE`). Every 4xx was refunded, so such requests ran past
/// `daily_notional`, `max_orders` and `max_open_orders`. Now only what an answer
/// proves did not happen is given back: the placed half stays spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_failed_cancel_replace_stays_spent() {
    let mock = Mock::start().await;
    let keyward = binance_traders_serving(&mock, 10, "", "").await;
    let binance = &VENUES[0];
    let alpha = token("alpha", "active");
    let placed = binance
        .send_as(&keyward, &alpha, "POST", "/api/v3/order", BUY_60)
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let filled = order_id(&placed);
    // It fills: a cancel of it fails, and ALLOW_FAILURE places the new order anyway.
    mock.fill_all();
    let replace = format!(
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&cancelReplaceMode=ALLOW_FAILURE&cancelOrderId={filled}"
    );
    for _ in 0..2 {
        let answer = binance
            .send_as(
                &keyward,
                &alpha,
                "POST",
                "/api/v3/order/cancelReplace",
                &replace,
            )
            .await;
        assert_eq!(answer.status, 409, "{}", answer.body);
        assert!(
            answer.body.contains("\"newOrderResult\":\"SUCCESS\""),
            "{}",
            answer.body
        );
    }
    assert_eq!(mock.open_orders().len(), 2, "each 409 placed an order");
    // 180 of the daily 200 spent (and 3 orders of "3/d"): the next is refused before
    // it is sent.
    let refused = refused_unsent(
        binance,
        &keyward,
        &mock,
        &alpha,
        ("POST", "/api/v3/order/cancelReplace", &replace),
        (403, "daily_notional_exceeded"),
    )
    .await;
    assert!(refused.body.contains("180 spent"), "{}", refused.body);
    let outcomes: Vec<_> = keyward
        .audit()
        .into_iter()
        .filter(|l| l["event"] == "outcome" && l["upstream_status"] == 409)
        .collect();
    assert_eq!(outcomes.len(), 2);
    for outcome in outcomes {
        assert_eq!(outcome["refunded_orders"], 0, "{outcome}");
        assert_eq!(outcome["results"][0]["result"], "placed", "{outcome}");
        assert_eq!(outcome["cancelled"][0], false, "{outcome}");
    }
    keyward.running.shutdown().await;
}

/// Orders sent with `newOrderRespType=ACK` come back without a status and never
/// counted towards `max_open_orders`; an accepted order is open until keyward learns
/// otherwise. And the open-order check also counts the open orders it finds that
/// keyward did not place, for the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_and_foreign_orders_count_as_open() {
    let mock = Mock::start().await;
    let keyward = binance_traders_serving(
        &mock,
        2,
        "open_orders_check_ms = 200",
        "max_open_orders = 3",
    )
    .await;
    let binance = &VENUES[0];
    let alpha = token("alpha", "active");
    let beta = token("beta", "active");
    let ack = format!("{BUY_60}&newOrderRespType=ACK");
    for _ in 0..2 {
        let answer = binance
            .send_as(&keyward, &alpha, "POST", "/api/v3/order", &ack)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            !answer.body.contains("status"),
            "an ACK answer: {}",
            answer.body
        );
    }
    refused_unsent(
        binance,
        &keyward,
        &mock,
        &alpha,
        ("POST", "/api/v3/order", &ack),
        (403, "max_open_orders_exceeded"),
    )
    .await;
    // Someone places an order on the same key outside keyward; once the open-order
    // check has seen it, the account's limit of 3 is reached for every bot.
    mock.place_directly("BTCUSDT", "SELL");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let refused = refused_unsent(
        binance,
        &keyward,
        &mock,
        &beta,
        ("POST", "/api/v3/order", BUY_60),
        (403, "max_open_orders_exceeded"),
    )
    .await;
    assert!(refused.body.contains("account"), "{}", refused.body);
    keyward.running.shutdown().await;
}

/// When bot B read `GET /api/v3/openOrders`, bot A's open orders were moved onto B:
/// A could then place past its limit and B was refused with one order of its own. A
/// read never changes whose an order is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_never_changes_whose_order_it_is() {
    let mock = Mock::start().await;
    let keyward = binance_traders_serving(&mock, 2, "", "").await;
    let binance = &VENUES[0];
    let alpha = token("alpha", "active");
    let beta = token("beta", "active");
    for _ in 0..2 {
        let answer = binance
            .send_as(&keyward, &alpha, "POST", "/api/v3/order", BUY_60)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let answer = binance
        .send_as(&keyward, &beta, "POST", "/api/v3/order", BUY_60)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let read = binance
        .send_as(
            &keyward,
            &beta,
            "GET",
            "/api/v3/openOrders?symbol=BTCUSDT",
            "",
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&read.body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let answer = binance
        .send_as(&keyward, &beta, "POST", "/api/v3/order", BUY_60)
        .await;
    assert_eq!(
        answer.status, 200,
        "beta has one order of its own: {}",
        answer.body
    );
    refused_unsent(
        binance,
        &keyward,
        &mock,
        &alpha,
        ("POST", "/api/v3/order", BUY_60),
        (403, "max_open_orders_exceeded"),
    )
    .await;
    keyward.running.shutdown().await;
}

/// Every order a cancel, a cancel-replace or an amend names must be one the bot
/// placed through keyward, on the symbol the request says; its side is the recorded
/// one. A read cannot adopt an order, and another bot's order is not this bot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_requests_naming_orders_are_judged_against_keywards_record() {
    let mock = Mock::start().await;
    let tables = format!(
        r#"{}
[accounts.futures]
venue = "binance-usdm"
secret = "futures"
upstream = "{url}"
upstream_ca = "{ca}"

[bots.fut]
account = "futures"
tokens = ["{fut}"]
expires = "{expires}"
allow = ["trade", "cancel"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT"]
max_order_notional = "100"
"#,
        binance_traders(5),
        url = mock.url(),
        ca = mock.ca.display(),
        fut = digest(&token("fut", "active")),
        expires = expires(),
    );
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables,
            ..Serving::against(&mock)
        },
    )
    .await;
    let binance = &VENUES[0];
    let (alpha, beta, fut) = (
        token("alpha", "active"),
        token("beta", "active"),
        token("fut", "active"),
    );
    let placed = binance
        .send_as(
            &keyward,
            &alpha,
            "POST",
            "/api/v3/order",
            "symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.01&price=3000",
        )
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let eth = order_id(&placed);
    let outside = mock.place_directly("BTCUSDT", "BUY");
    let refusals = [
        // Another bot's order.
        (
            &beta,
            "DELETE",
            format!("/api/v3/order?symbol=ETHUSDT&orderId={eth}"),
            String::new(),
            "order_not_owned",
        ),
        // The order under another symbol is another order, one keyward never placed.
        (
            &alpha,
            "DELETE",
            format!("/api/v3/order?symbol=BTCUSDT&orderId={eth}"),
            String::new(),
            "order_unknown",
        ),
        (
            &alpha,
            "POST",
            "/api/v3/order/cancelReplace".to_owned(),
            format!("{BUY_60}&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId={eth}"),
            "order_unknown",
        ),
        // An order placed outside keyward.
        (
            &alpha,
            "DELETE",
            format!("/api/v3/order?symbol=BTCUSDT&orderId={outside}"),
            String::new(),
            "order_unknown",
        ),
        (
            &alpha,
            "POST",
            "/api/v3/order/cancelReplace".to_owned(),
            format!("{BUY_60}&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId={outside}"),
            "order_unknown",
        ),
        (
            &alpha,
            "DELETE",
            "/api/v3/order?symbol=ETHUSDT&origClientOrderId=never".to_owned(),
            String::new(),
            "order_unknown",
        ),
    ];
    for (who, method, target, body, reason) in refusals {
        refused_unsent(
            binance,
            &keyward,
            &mock,
            who,
            (method, &target, &body),
            (403, reason),
        )
        .await;
    }
    // The bot's own order, on its symbol: the cancel goes out.
    mock.clear();
    let cancelled = binance
        .send_as(
            &keyward,
            &alpha,
            "DELETE",
            &format!("/api/v3/order?symbol=ETHUSDT&orderId={eth}"),
            "",
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(mock.records().len(), 1);

    // USD-M: a modify is judged as the recorded order; its side must be that order's.
    let placed = binance
        .send_as(&keyward, &fut, "POST", "/fapi/v1/order", BUY_60)
        .await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let id = order_id(&placed);
    let modify = |side: &str, quantity: &str, id: &str| {
        format!("symbol=BTCUSDT&side={side}&quantity={quantity}&price=60000&orderId={id}")
    };
    for (body, status, reason) in [
        (modify("SELL", "0.001", &id), 400, "order_mismatch"),
        (modify("BUY", "0.01", &id), 403, "notional_exceeds_limit"),
        (modify("BUY", "0.001", "424242"), 403, "order_unknown"),
    ] {
        refused_unsent(
            binance,
            &keyward,
            &mock,
            &fut,
            ("PUT", "/fapi/v1/order", &body),
            (status, reason),
        )
        .await;
    }
    mock.clear();
    let modified = binance
        .send_as(
            &keyward,
            &fut,
            "PUT",
            "/fapi/v1/order",
            &modify("BUY", "0.0015", &id),
        )
        .await;
    assert_eq!(modified.status, 200, "{}", modified.body);
    assert_eq!(mock.records().len(), 1);
    keyward.running.shutdown().await;
}

/// After a 504 (execution status unknown) a bot retries with the same client order
/// id; the retry was forwarded again and could double its exposure. A client order id
/// used on the account within `client_order_id_window_ms` (a day by default) is
/// refused, whatever became of the first order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_client_order_id_is_never_sent_twice() {
    let mock = Mock::start().await;
    let keyward = binance_traders_serving(&mock, 5, "upstream_timeout_ms = 300", "").await;
    let binance = &VENUES[0];
    let alpha = token("alpha", "active");
    let beta = token("beta", "active");
    let order = format!("{BUY_60}&newClientOrderId=grid-1");
    mock.set(keyward_tests::mock::Behaviour::Slow(1000));
    let timed_out = binance
        .send_as(&keyward, &alpha, "POST", "/api/v3/order", &order)
        .await;
    assert_eq!(timed_out.status, 504, "{}", timed_out.body);
    mock.set(keyward_tests::mock::Behaviour::Normal);
    for who in [&alpha, &beta] {
        let refused = refused_unsent(
            binance,
            &keyward,
            &mock,
            who,
            ("POST", "/api/v3/order", &order),
            (409, "duplicate_client_order_id"),
        )
        .await;
        assert!(refused.body.contains("grid-1"), "{}", refused.body);
    }
    // A new id is a new order.
    let fresh = binance
        .send_as(
            &keyward,
            &alpha,
            "POST",
            "/api/v3/order",
            &format!("{BUY_60}&newClientOrderId=grid-2"),
        )
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    keyward.running.shutdown().await;
}

/// A second trading bot on a venue fixture's account: `other`, allowed what the
/// fixture's bot `b` is allowed.
fn other_bot(account: &str, symbols: &str, order_types: &str) -> String {
    format!(
        r#"
[bots.other]
account = "{account}"
tokens = ["{}"]
expires = "{}"
allow = ["trade", "cancel", "read"]
symbols = {symbols}
order_types = {order_types}
max_order_notional = "1000"
"#,
        digest(&token("other", "active")),
        expires()
    )
}

/// What one venue's requests naming orders look like, for
/// [`every_venue_judges_requests_naming_orders_against_keywards_record`].
struct Naming {
    venue: &'static Venue,
    tables: String,
    /// Places an order of bot `b` with client id `cid-1`; its answer's id is found
    /// by `id_of`.
    place: (&'static str, String),
    id_of: fn(&serde_json::Value) -> String,
    /// (target, body) of a cancel and of an amend of the order with id `{id}`.
    cancel: (&'static str, &'static str),
    amend: (&'static str, &'static str),
    /// An amend of the order whose notional the record makes too large, and its
    /// refusal (judged as the recorded order).
    oversized: (&'static str, &'static str, &'static str),
    /// Requests refused whatever order they name, and why.
    refused: Vec<(&'static str, String, u16, &'static str)>,
}

/// Bybit, OKX, Kraken and Coinbase: an order id keyward did not place is refused
/// (`order_unknown`), another bot's order too (`order_not_owned`), an amend is judged
/// as the recorded order (Coinbase's edit naming another product than the order's,
/// Kraken's amend naming another pair), a repeated client order id is refused, and
/// Kraken's cancels of every order of the account are refused. Nothing refused
/// reaches the exchange; the bot's own cancel does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_venue_judges_requests_naming_orders_against_keywards_record() {
    let mock = Mock::start().await;
    let cases = [
        Naming {
            venue: &VENUES[1],
            tables: other_bot("bybit", r#"["linear:BTCUSDT"]"#, r#"["Limit"]"#),
            place: ("/v5/order/create", r#"{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"60000","orderLinkId":"cid-1"}"#.to_owned()),
            id_of: |v| v["result"]["orderId"].as_str().unwrap().to_owned(),
            cancel: ("/v5/order/cancel", r#"{"category":"linear","symbol":"BTCUSDT","orderId":"{id}"}"#),
            amend: ("/v5/order/amend", r#"{"category":"linear","symbol":"BTCUSDT","orderId":"{id}","price":"60001"}"#),
            oversized: ("/v5/order/amend", r#"{"category":"linear","symbol":"BTCUSDT","orderId":"{id}","qty":"1"}"#, "notional_exceeds_limit"),
            refused: vec![],
        },
        Naming {
            venue: &VENUES[2],
            tables: other_bot("okx", r#"["BTC-USDT"]"#, r#"["limit"]"#),
            place: ("/api/v5/trade/order", r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.001","px":"60000","clOrdId":"cid1"}"#.to_owned()),
            id_of: |v| v["data"][0]["ordId"].as_str().unwrap().to_owned(),
            cancel: ("/api/v5/trade/cancel-order", r#"{"instId":"BTC-USDT","ordId":"{id}"}"#),
            amend: ("/api/v5/trade/amend-order", r#"{"instId":"BTC-USDT","ordId":"{id}","newPx":"60001"}"#),
            oversized: ("/api/v5/trade/amend-order", r#"{"instId":"BTC-USDT","ordId":"{id}","newSz":"1"}"#, "notional_exceeds_limit"),
            refused: vec![],
        },
        Naming {
            venue: &VENUES[3],
            tables: other_bot("kraken", r#"["XBTUSD", "ETHUSD"]"#, r#"["limit"]"#),
            place: ("/0/private/AddOrder", "nonce=1&ordertype=limit&type=buy&volume=0.001&pair=XBTUSD&price=60000&cl_ord_id=cid-1".to_owned()),
            id_of: |v| v["result"]["txid"][0].as_str().unwrap().to_owned(),
            cancel: ("/0/private/CancelOrder", "nonce=2&txid={id}"),
            amend: ("/0/private/AmendOrder", "nonce=3&txid={id}&order_qty=0.001&limit_price=60001&pair=XBTUSD"),
            oversized: ("/0/private/AmendOrder", "nonce=4&txid={id}&order_qty=0.001&limit_price=60001&pair=ETHUSD", "order_unknown"),
            refused: vec![
                ("/0/private/CancelAll", "nonce=5".to_owned(), 403, "cancel_not_confined"),
                ("/0/private/CancelAllOrdersAfter", "nonce=6&timeout=60".to_owned(), 403, "cancel_not_confined"),
            ],
        },
        Naming {
            venue: &VENUES[4],
            tables: other_bot("coinbase", r#"["BTC-USD", "ETH-USD"]"#, r#"["limit_limit_gtc"]"#),
            place: ("/api/v3/brokerage/orders", r#"{"client_order_id":"cid-1","product_id":"ETH-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.1","limit_price":"3000.00"}}}"#.to_owned()),
            id_of: |v| v["success_response"]["order_id"].as_str().unwrap().to_owned(),
            cancel: ("/api/v3/brokerage/orders/batch_cancel", r#"{"order_ids":["{id}"]}"#),
            amend: ("/api/v3/brokerage/orders/edit", r#"{"order_id":"{id}","price":"3001","size":"0.1"}"#),
            // The edit is of an ETH-USD order: at 60000 its notional is 6000.
            oversized: ("/api/v3/brokerage/orders/edit", r#"{"order_id":"{id}","price":"60000","size":"0.1"}"#, "notional_exceeds_limit"),
            refused: vec![(
                "/api/v3/brokerage/orders/edit",
                r#"{"order_id":"{id}","price":"60000","size":"0.001","product_id":"BTC-USD"}"#.to_owned(),
                403,
                "order_unknown",
            )],
        },
    ];
    for case in cases {
        let venue = case.venue;
        let keyward = Keyward::serve(
            venue.policy,
            Serving {
                tables: case.tables.clone(),
                ..Serving::against(&mock)
            },
        )
        .await;
        let b = keyward.tokens.bot_b.clone();
        let other = token("other", "active");
        let (target, body) = &case.place;
        let placed = venue.send_as(&keyward, &b, "POST", target, body).await;
        assert_eq!(placed.status, 200, "{}: {}", venue.name, placed.body);
        let id = (case.id_of)(&serde_json::from_str(&placed.body).unwrap());
        let with_id = |text: &str| text.replace("{id}", &id);
        let unknown = |text: &str| text.replace("{id}", "987654321");
        let (cancel_target, cancel_body) = case.cancel;
        let (amend_target, amend_body) = case.amend;
        let mut refusals = vec![
            (
                &other,
                cancel_target,
                with_id(cancel_body),
                403,
                "order_not_owned",
            ),
            (
                &other,
                amend_target,
                with_id(amend_body),
                403,
                "order_not_owned",
            ),
            (
                &b,
                cancel_target,
                unknown(cancel_body),
                403,
                "order_unknown",
            ),
            (&b, amend_target, unknown(amend_body), 403, "order_unknown"),
            (
                &b,
                case.oversized.0,
                with_id(case.oversized.1),
                403,
                case.oversized.2,
            ),
            // The same client order id again.
            (&b, target, body.clone(), 409, "duplicate_client_order_id"),
        ];
        for (target, body, status, reason) in &case.refused {
            refusals.push((&b, target, with_id(body), *status, reason));
        }
        for (who, target, body, status, reason) in refusals {
            refused_unsent(
                venue,
                &keyward,
                &mock,
                who,
                ("POST", target, &body),
                (status, reason),
            )
            .await;
        }
        // The bot's own order: amend and cancel go out.
        for (target, body) in [(amend_target, amend_body), (cancel_target, cancel_body)] {
            mock.clear();
            let answer = venue
                .send_as(&keyward, &b, "POST", target, &with_id(body))
                .await;
            assert!(
                answer.header("x-keyward-error").is_none(),
                "{} {target}: {}",
                venue.name,
                answer.body
            );
            assert!(
                mock.records().iter().any(|r| r.path == target),
                "{} {target} did not reach the exchange",
                venue.name
            );
        }
        keyward.running.shutdown().await;
    }
}

/// keyward's record of the orders survives `kill -9`: rebuilt from the audit log, an
/// order placed before the restart still belongs to the bot that placed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_record_survives_kill_9() {
    let mock = Mock::start().await;
    let keyward = keyward_tests::process::KeywardProcess::spawn_serving(
        std::path::Path::new(env!("CARGO_BIN_EXE_keyward-e2e")),
        FixturePolicy::P0,
        Serving {
            tables: binance_traders(5),
            ..Serving::against(&mock)
        },
        keyward_tests::process::VaultKey::File,
        &[],
    );
    let send = |keyward: &keyward_tests::process::KeywardProcess,
                who: &str,
                method: &str,
                target: &str,
                body: &str| {
        let headers = keyward_tests::client::bot_headers(
            keyward.bot_addr.port(),
            &token(who, "active"),
            !body.is_empty(),
        );
        let request = build(method, target, &headers, body.as_bytes());
        let client = keyward.client.clone();
        async move { client.raw(&request).await }
    };
    let placed = send(&keyward, "alpha", "POST", "/api/v3/order", BUY_60).await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    let id = order_id(&placed);
    let keyward = keyward.kill_and_restart();
    let cancel = format!("/api/v3/order?symbol=BTCUSDT&orderId={id}");
    mock.clear();
    let refused = send(&keyward, "beta", "DELETE", &cancel, "").await;
    assert_eq!(
        refused.header("x-keyward-error"),
        Some("order_not_owned"),
        "{}",
        refused.body
    );
    assert!(mock.records().is_empty());
    let cancelled = send(&keyward, "alpha", "DELETE", &cancel, "").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(mock.records().len(), 1);
    assert!(
        keyward
            .log()
            .contains("order record rebuilt from the audit log")
    );
}

/// Orders that existed before keyward (placed on the exchange's website, by another
/// program) are unknown to it and refused, unless the bot has `adopt_orders`: then
/// keyward looks the order up itself, with a signed read, and if it is open on one of
/// the bot's symbols takes it as the bot's and judges the request against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_from_before_keyward_are_adopted_only_on_request() {
    let mock = Mock::start().await;
    let tables = format!(
        r#"{}
[bots.adopter]
account = "spot"
tokens = ["{}"]
expires = "{}"
allow = ["trade", "cancel"]
symbols = ["BTCUSDT"]
order_types = ["LIMIT"]
max_order_notional = "100"
adopt_orders = true
"#,
        binance_traders(5),
        digest(&token("adopter", "active")),
        expires()
    );
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables,
            ..Serving::against(&mock)
        },
    )
    .await;
    let binance = &VENUES[0];
    let (alpha, adopter) = (token("alpha", "active"), token("adopter", "active"));
    let btc = mock.place_directly("BTCUSDT", "BUY");
    let eth = mock.place_directly("ETHUSDT", "BUY");
    let cancel = |symbol: &str, id: u64| format!("/api/v3/order?symbol={symbol}&orderId={id}");
    // Without adopt_orders: unknown, and nothing is asked of the exchange.
    refused_unsent(
        binance,
        &keyward,
        &mock,
        &alpha,
        ("DELETE", &cancel("BTCUSDT", btc), ""),
        (403, "order_unknown"),
    )
    .await;
    assert!(
        mock.keywards_own()
            .iter()
            .all(|r| r.path != "/api/v3/order")
    );
    // An order on a symbol the adopting bot may not trade is looked up, not adopted.
    refused_unsent(
        binance,
        &keyward,
        &mock,
        &adopter,
        ("DELETE", &cancel("ETHUSDT", eth), ""),
        (403, "order_unknown"),
    )
    .await;
    // On its symbol: looked up (signed, keyward's own), adopted, and the cancel goes out.
    mock.clear();
    let cancelled = binance
        .send_as(&keyward, &adopter, "DELETE", &cancel("BTCUSDT", btc), "")
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let lookups: Vec<_> = mock
        .keywards_own()
        .into_iter()
        .filter(|r| r.path == "/api/v3/order" && r.method == "GET")
        .collect();
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].signature_ok, Some(true));
    assert_eq!(mock.records().len(), 1, "the bot's cancel");
    // Adopted by one bot, it is not another's.
    refused_unsent(
        binance,
        &keyward,
        &mock,
        &alpha,
        ("DELETE", &cancel("BTCUSDT", btc), ""),
        (403, "order_not_owned"),
    )
    .await;
    keyward.running.shutdown().await;
}

/// The audit record is the forensic record: a request refused before its bot is
/// known keeps no query (the bot's signature was in it); a refused order records what
/// was refused (symbols, sides, sizes); an allowed request that keyward then failed
/// to send (500) gets its outcome line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_what_was_refused_and_every_outcome() {
    let mock = Mock::start().await;
    let binance = &VENUES[0];
    let keyward = binance.serve(&mock, "").await;
    let unknown = "kw_a_notavalidtokenatallnotavalidtokenatallnota";
    let signed =
        "/api/v3/account?timestamp=1700000000000&signature=c0ffeec0ffeec0ffeec0ffeec0ffeec0ffee";
    let refused = binance.send_as(&keyward, unknown, "GET", signed, "").await;
    assert_eq!(refused.status, 401);
    let pump = "symbol=DMGUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=5000&price=2";
    let denied = binance.send(&keyward, "POST", "/api/v3/order", pump).await;
    assert_eq!(denied.header("x-keyward-error"), Some("symbol_not_allowed"));
    let audit = keyward.audit();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains("c0ffee"),
        "a bot's signature reached the audit log"
    );
    let unauthenticated = audit
        .iter()
        .find(|l| l["reason"] == "auth_invalid")
        .unwrap();
    assert_eq!(unauthenticated["path"], "/api/v3/account");
    let pumped = audit
        .iter()
        .find(|l| l["reason"] == "symbol_not_allowed")
        .unwrap();
    assert_eq!(pumped["symbols"], serde_json::json!(["DMGUSDT"]));
    assert_eq!(pumped["orders"], 1);
    assert_eq!(pumped["legs"][0]["side"], "BUY");
    assert_eq!(pumped["legs"][0]["qty"], "5000");
    assert_eq!(pumped["legs"][0]["price"], "2");
    keyward.running.shutdown().await;

    // Kraken's nonce mark cannot be read (a directory stands where it should be):
    // the order is recorded as allowed, then cannot be signed.
    let kraken = &VENUES[3];
    let keyward = kraken.serve(&mock, "").await;
    std::fs::create_dir_all(keyward.dir.path().join("keyward-nonce-kraken").join("x")).unwrap();
    mock.clear();
    let failed = kraken
        .send(&keyward, "POST", kraken.order_target, kraken.order)
        .await;
    // Recorded as allowed, so its refusal is the outcome record's: Kraken's 200.
    assert_eq!(
        (failed.status, failed.header("x-keyward-error")),
        (kraken.sent_status(500), Some("internal")),
        "{}",
        failed.body
    );
    assert!(mock.records().is_empty());
    let audit = keyward.audit();
    let request = audit
        .iter()
        .rfind(|l| l["event"] == "request" && l["decision"] == "allow")
        .unwrap();
    let outcome = audit
        .iter()
        .find(|l| l["event"] == "outcome" && l["request_id"] == request["request_id"])
        .unwrap_or_else(|| panic!("no outcome for {request}"));
    assert_eq!(outcome["error"], "internal");
    assert_eq!(outcome["results"][0]["result"], "rejected");
    keyward.running.shutdown().await;
}

/// 1,000 wrong tokens from one source in one second all got 401. Failed
/// authentications are now throttled per source (429 with `Retry-After` beyond 20 in
/// 10 s), and only failures are: a bot with a right token is served throughout, from
/// the same source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_tokens_is_throttled_and_locks_out_no_bot() {
    let mock = Mock::start().await;
    let binance = &VENUES[0];
    let keyward = binance.serve(&mock, "").await;
    let port = keyward.port();
    let mut connection = keyward.client.keep_alive().await;
    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after = None;
    for n in 0..200 {
        let wrong = format!("kw_a_{:0>43}", n);
        let headers = keyward_tests::client::bot_headers(port, &wrong, false);
        let answer = connection
            .send(&build("GET", "/api/v3/account", &headers, b""))
            .await;
        *statuses.entry(answer.status).or_insert(0) += 1;
        if answer.status == 429 {
            assert_eq!(answer.header("x-keyward-error"), Some("auth_throttled"));
            retry_after = answer.header("retry-after").map(str::to_owned);
        }
        if n % 50 == 0 {
            let served = binance.send(&keyward, "GET", "/api/v3/account", "").await;
            assert_eq!(served.status, 200, "a bot with a right token is served");
        }
    }
    assert_eq!(statuses.get(&401), Some(&20), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&180), "{statuses:?}");
    let seconds: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=10).contains(&seconds), "{seconds}");
    assert!(
        mock.records().iter().all(|r| r.path == "/api/v3/account"),
        "only the bot's reads reached the exchange"
    );
    keyward.running.shutdown().await;
}

/// Exchanges count weight, not requests: one bot at 10/s sending
/// `GET /api/v3/depth?limit=5000` (weight 250) used the account's 6,000 a minute in
/// 1.3 s, and every other bot got 429 for the rest of the minute. Each request is now
/// charged its documented weight before it is sent, and a bot may use only its share
/// of each limit (half, by default, when it shares its account).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_spends_only_its_share_of_the_exchange_weight() {
    // The exchange counts in minutes aligned to the clock: start early in one.
    let into_minute = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if into_minute > 40 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute)).await;
    }
    let mock = Mock::start().await;
    let bot = |name: &str| {
        format!(
            "\n[bots.{name}]\naccount = \"spot\"\ntokens = [\"{}\"]\nexpires = \"{}\"\nallow = [\"market\", \"read\"]\n",
            digest(&token(name, "active")),
            expires()
        )
    };
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables: format!("{}{}", bot("greedy"), bot("calm")),
            ..Serving::against(&mock)
        },
    )
    .await;
    let binance = &VENUES[0];
    let (greedy, calm) = (token("greedy", "active"), token("calm", "active"));
    let depth = "/api/v3/depth?symbol=BTCUSDT&limit=5000";
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let answer = binance.send_as(&keyward, &greedy, "GET", depth, "").await;
        statuses.push((
            answer.status,
            answer.header("x-keyward-error").map(str::to_owned),
        ));
    }
    // 6,000 a minute less the 10% headroom is 5,400; half of it is 2,700: ten
    // requests of weight 250.
    assert!(
        statuses[..10].iter().all(|(s, _)| *s == 200),
        "{statuses:?}"
    );
    for (status, reason) in &statuses[10..] {
        assert_eq!(
            (*status, reason.as_deref()),
            (429, Some("exchange_share_exceeded"))
        );
    }
    let sent = mock
        .records()
        .iter()
        .filter(|r| r.path == "/api/v3/depth")
        .count();
    assert_eq!(sent, 10);
    // The other bot is served.
    let served = binance
        .send_as(&keyward, &calm, "GET", "/api/v3/account", "")
        .await;
    assert_eq!(served.status, 200, "{}", served.body);
    let metrics =
        keyward_tests::client::admin_get(keyward.running.admin_addr.unwrap(), "/metrics").await;
    assert!(
        metrics.body.contains(r#"keyward_exchange_bot_usage{account="spot",bot="greedy",kind="weight",window="60s"} 2500.0"#),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains(
        r#"keyward_exchange_bot_limit{account="spot",bot="greedy",kind="weight",window="60s"} 2700.0"#
    ));
    keyward.running.shutdown().await;
}

/// A market-priced order sized in base units was bounded at quantity × best quote,
/// a lower bound of its cost on a thin book. Where a price band applies, every
/// market-priced order (market, stop-market, trailing; whatever its size unit) is
/// refused `price_unbounded`, on every venue: the band cannot hold a price the book
/// chooses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_orders_are_refused_where_a_band_applies() {
    let mock = Mock::start().await;
    let markets = [
        (
            &VENUES[0],
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001",
        ),
        (
            &VENUES[1],
            "/v5/order/create",
            r#"{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"0.001"}"#,
        ),
        (
            &VENUES[2],
            "/api/v5/trade/order",
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"10"}"#,
        ),
        (
            &VENUES[3],
            "/0/private/AddOrder",
            "nonce=1&ordertype=market&type=buy&volume=0.001&pair=XBTUSD",
        ),
        (
            &VENUES[4],
            "/api/v3/brokerage/orders",
            r#"{"client_order_id":"m-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"50"}}}"#,
        ),
    ];
    for (venue, target, body) in markets {
        let keyward = venue.serve(&mock, "price_band = \"5%\"").await;
        let bot = keyward.tokens.bot.clone();
        let refused = refused_unsent(
            venue,
            &keyward,
            &mock,
            &bot,
            ("POST", target, body),
            (403, "price_unbounded"),
        )
        .await;
        assert!(
            refused.body.contains("5%"),
            "{}: {}",
            venue.name,
            refused.body
        );
        keyward.running.shutdown().await;
    }
}

/// The reference was the top of book of the same pair on the same venue, which is
/// what a pump moves on an illiquid pair. A book whose spread is wider than the band
/// is no reference (503 `spread_too_wide`); and the reference is bounded by a slower
/// price (Binance's 5-minute average, OKX's index, Kraken's 24-hour volume-weighted
/// price), taking the more conservative: a pumped book does not raise the ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pumped_book_moves_no_reference() {
    let mock = Mock::start().await;
    let cases = [
        (
            &VENUES[0],
            "BTCUSDT",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.0005&price={price}",
        ),
        (
            &VENUES[2],
            "BTCUSDT",
            "/api/v5/trade/order",
            r#"{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","sz":"0.0005","px":"{price}"}"#,
        ),
        (
            &VENUES[3],
            "XBTUSD",
            "/0/private/AddOrder",
            "nonce=1&ordertype=limit&type=buy&volume=0.0005&pair=XBTUSD&price={price}",
        ),
    ];
    for (venue, book, target, template) in cases {
        // Prices younger than 600 ms only, so that a changed book is seen at once.
        let keyward = venue
            .serve_with(&mock, "price_band = \"5%\"", "reference_max_age_ms = 600")
            .await;
        let bot = keyward.tokens.bot.clone();
        let order = |price: &str| template.replace("{price}", price);
        // A pump on a thin book: the spread wider than the band.
        mock.set_quote(book, Some(("59990", "90000")));
        let refused = refused_unsent(
            venue,
            &keyward,
            &mock,
            &bot,
            ("POST", target, &order("90000")),
            (503, "spread_too_wide"),
        )
        .await;
        assert!(
            refused.body.contains("spread"),
            "{}: {}",
            venue.name,
            refused.body
        );
        // The pumped book tight again at 90000, the average still 60000: a buy is held
        // to 60000 + 5%, not to 90000 + 5%.
        mock.set_quote(book, Some(("89990", "90010")));
        mock.set_average(book, Some("60000"));
        tokio::time::sleep(Duration::from_millis(700)).await;
        refused_unsent(
            venue,
            &keyward,
            &mock,
            &bot,
            ("POST", target, &order("90000")),
            (403, "price_out_of_band"),
        )
        .await;
        mock.clear();
        let answer = venue
            .send_as(&keyward, &bot, "POST", target, &order("62900"))
            .await;
        assert_eq!(answer.status, 200, "{}: {}", venue.name, answer.body);
        mock.set_quote(book, Some(("59990", "60010")));
        mock.set_average(book, None);
        keyward.running.shutdown().await;
    }
}
