//! Bots as a real client library drives them: kept-alive HTTP/1.1 or multiplexed
//! HTTP/2 connections through hyper's client, over TLS to keyward, and the mix of
//! requests a soak sends (reads, orders and their cancels, which reach the
//! exchange, and refusals: a forbidden symbol, a withdrawal, a wrong, an expired and
//! a read-only bot's token).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keyward_tests::FixtureTokens;
use keyward_tests::client::BotClient;

/// A bot's connection to keyward.
pub(crate) enum Connection {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http1(_) => "Connection::Http1",
            Self::Http2(_) => "Connection::Http2",
        })
    }
}

/// What keyward answered.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// `x-keyward-request-id`.
    pub(crate) id: Option<String>,
    /// `x-keyward-error`.
    pub(crate) reason: Option<String>,
    /// The order id in the body, when it has one.
    pub(crate) order_id: Option<u64>,
}

impl Connection {
    /// A TLS connection with ALPN `h2` or `http/1.1`, handshaken by hyper.
    pub(crate) async fn open(client: &BotClient, http2: bool) -> std::io::Result<Self> {
        let alpn: &[&[u8]] = if http2 { &[b"h2"] } else { &[b"http/1.1"] };
        let tls = client.try_connect(alpn).await?;
        let io = TokioIo::new(tls);
        if http2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            Ok(Self::Http2(sender))
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            Ok(Self::Http1(sender))
        }
    }

    /// Waits until the connection can take a request; false when it is closed (a
    /// request not yet sent is not lost: open another connection).
    pub(crate) async fn ready(&mut self) -> bool {
        match self {
            Self::Http1(sender) => sender.ready().await.is_ok(),
            Self::Http2(sender) => sender.ready().await.is_ok(),
        }
    }

    /// Sends one request and reads the whole answer; `Err` when none came within
    /// `patience` or the connection failed after the request was sent.
    pub(crate) async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
        patience: Duration,
    ) -> Result<Answer, String> {
        let answer = async {
            let response = match self {
                Self::Http1(sender) => sender.send_request(request).await,
                Self::Http2(sender) => sender.send_request(request).await,
            }
            .map_err(|e| format!("no answer: {e}"))?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let status = response.status().as_u16();
            let id = header("x-keyward-request-id");
            let reason = header("x-keyward-error");
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the body broke off: {e}"))?
                .to_bytes();
            let order_id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["orderId"].as_u64());
            Ok(Answer {
                status,
                id,
                reason,
                order_id,
            })
        };
        tokio::time::timeout(patience, answer)
            .await
            .map_err(|_| format!("no answer within {patience:?}"))?
    }

    pub(crate) fn is_http2(&self) -> bool {
        matches!(self, Self::Http2(_))
    }
}

/// What a soak request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// Bot A reads its account: reaches the exchange.
    Account,
    /// Bot A places a 60 USDT limit order: reaches the exchange.
    Order,
    /// Bot A cancels an order it placed: reaches the exchange.
    Cancel,
    /// Bot A lists its open ETHUSDT orders: reaches the exchange.
    OpenOrders,
    /// Bot A orders a symbol it may not trade: 403.
    ForbiddenSymbol,
    /// Bot A asks for a withdrawal: 403.
    Withdrawal,
    /// A token nobody holds: 401.
    WrongToken,
    /// The expired bot: 401.
    ExpiredToken,
    /// Bot B (read-only) places an order: 403.
    ReadOnlyOrder,
}

impl Kind {
    pub(crate) const ALL: [Self; 9] = [
        Self::Account,
        Self::Order,
        Self::Cancel,
        Self::OpenOrders,
        Self::ForbiddenSymbol,
        Self::Withdrawal,
        Self::WrongToken,
        Self::ExpiredToken,
        Self::ReadOnlyOrder,
    ];

    /// Picks a kind from a draw: account reads, orders and cancels 20 % each, open
    /// orders 15 %, each refusal 5 %. (A bot with no order to cancel reads its
    /// account instead.)
    pub(crate) fn from_draw(draw: u64) -> Self {
        match draw % 100 {
            0..20 => Self::Account,
            20..40 => Self::Order,
            40..60 => Self::Cancel,
            60..75 => Self::OpenOrders,
            75..80 => Self::ForbiddenSymbol,
            80..85 => Self::Withdrawal,
            85..90 => Self::WrongToken,
            90..95 => Self::ExpiredToken,
            _ => Self::ReadOnlyOrder,
        }
    }

    /// The refusal keyward must answer, for the kinds it must refuse.
    pub(crate) fn refusal(self) -> Option<(u16, &'static str)> {
        match self {
            Self::ForbiddenSymbol => Some((403, "symbol_not_allowed")),
            Self::Withdrawal => Some((403, "money_movement_denied")),
            Self::WrongToken => Some((401, "auth_invalid")),
            Self::ExpiredToken => Some((401, "auth_expired")),
            Self::ReadOnlyOrder => Some((403, "path_not_allowed")),
            Self::Account | Self::Order | Self::Cancel | Self::OpenOrders => None,
        }
    }

    /// The request, for keyward listening on `port`; a cancel cancels `order`.
    pub(crate) fn request(
        self,
        tokens: &FixtureTokens,
        port: u16,
        http2: bool,
        order: u64,
    ) -> http::Request<Full<Bytes>> {
        let cancel =
            format!("/api/v3/order?symbol=BTCUSDT&orderId={order}&timestamp=1&signature=x");
        const ORDER: &str = "side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000&timestamp=1&signature=x";
        let wrong = keyward_tests::token("a", "soak-wrong");
        let (method, target, token, body): (&str, &str, &str, String) = match self {
            Self::Account => (
                "GET",
                "/api/v3/account?timestamp=1&signature=x",
                &tokens.bot,
                String::new(),
            ),
            Self::Order => (
                "POST",
                "/api/v3/order",
                &tokens.bot,
                format!("symbol=BTCUSDT&{ORDER}"),
            ),
            Self::Cancel => ("DELETE", cancel.as_str(), &tokens.bot, String::new()),
            Self::OpenOrders => (
                "GET",
                "/api/v3/openOrders?symbol=ETHUSDT&timestamp=1&signature=x",
                &tokens.bot,
                String::new(),
            ),
            Self::ForbiddenSymbol => (
                "POST",
                "/api/v3/order",
                &tokens.bot,
                format!("symbol=DOGEUSDT&{ORDER}"),
            ),
            Self::Withdrawal => (
                "POST",
                "/sapi/v1/capital/withdraw/apply",
                &tokens.bot,
                "coin=BTC&address=1attacker&amount=1&timestamp=1&signature=x".to_owned(),
            ),
            Self::WrongToken => (
                "GET",
                "/api/v3/account?timestamp=1&signature=x",
                &wrong,
                String::new(),
            ),
            Self::ExpiredToken => (
                "GET",
                "/api/v3/account?timestamp=1&signature=x",
                &tokens.expired,
                String::new(),
            ),
            Self::ReadOnlyOrder => (
                "POST",
                "/api/v3/order",
                &tokens.bot_b,
                format!("symbol=BTCUSDT&{ORDER}"),
            ),
        };
        request(method, target, token, body, port, http2)
    }
}

/// A Binance-style request from the bot holding `token`.
pub(crate) fn request(
    method: &str,
    target: &str,
    token: &str,
    body: String,
    port: u16,
    http2: bool,
) -> http::Request<Full<Bytes>> {
    let authority = format!("localhost:{port}");
    // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in Host.
    let uri = if http2 {
        format!("https://{authority}{target}")
    } else {
        target.to_owned()
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("x-mbx-apikey", token);
    if !http2 {
        builder = builder.header("host", authority);
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("a well-formed request")
}
