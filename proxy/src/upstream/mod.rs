//! The HTTPS client to each account's exchange.
//!
//! It goes only to the account's configured upstream (on the production API, the
//! venue's host for the path's product family: Binance's spot, futures and options
//! hosts are separate), over TLS verified against the
//! web PKI or the account's own CA; it never follows redirects, never reads proxy
//! settings from the environment, and never retries: an order is not idempotent, and
//! a request that may have reached the exchange is reported, not repeated. The
//! exchange's answer is buffered up to a size cap and passed back as it came.

mod pool;

pub(crate) use pool::connect_tls;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use keyward_venues::Outbound;

use crate::config::{Account, Limits};

/// What keyward calls itself to the exchange.
pub const USER_AGENT: &str = concat!("keyward/", env!("CARGO_PKG_VERSION"));
/// The user agent of keyward's own clock checks, so they can be told apart.
pub const CLOCK_CHECK_AGENT: &str = concat!("keyward/", env!("CARGO_PKG_VERSION"), " clock-check");

/// Why the exchange's answer could not be passed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connection failed.
    #[error("cannot reach the exchange")]
    Unavailable,
    /// TLS handshake or certificate verification failed.
    #[error("TLS to the exchange failed")]
    Tls,
    /// No complete answer within the deadline; the request may have executed.
    #[error("the exchange did not answer in time; execution status unknown")]
    Timeout,
    /// The exchange answered with a redirect, which keyward never follows.
    #[error("the exchange answered with a redirect, which keyward does not follow")]
    Redirect,
    /// The answer is larger than the cap.
    #[error("the exchange's answer is too large")]
    TooLarge,
    /// The answer is not valid HTTP.
    #[error("the exchange's answer is malformed")]
    Invalid,
    /// The venue refused keyward's own WebSocket login (the account's key).
    #[error("the exchange refused keyward's WebSocket login; check the account's API key")]
    LoginRefused,
}

impl UpstreamError {
    /// The stable reason code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unavailable => "upstream_unavailable",
            Self::Tls => "upstream_tls_error",
            Self::Timeout => "upstream_timeout",
            Self::Redirect => "upstream_redirect_blocked",
            Self::TooLarge => "upstream_response_too_large",
            Self::Invalid => "upstream_response_invalid",
            Self::LoginRefused => "upstream_login_refused",
        }
    }

    /// 504 when the exchange may have acted, 502 otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable
            | Self::Tls
            | Self::Redirect
            | Self::TooLarge
            | Self::Invalid
            | Self::LoginRefused => StatusCode::BAD_GATEWAY,
        }
    }
}

/// What the exchange answered.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers, hop-by-hop ones removed.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// How long it took.
    pub elapsed: Duration,
}

/// One account's client.
#[derive(Debug)]
pub struct Upstream {
    pool: pool::Pool,
    base: Uri,
    /// Set when the account trades on the venue's production API: the venue then
    /// names the host of each product family a path belongs to.
    families: Option<&'static dyn keyward_venues::Venue>,
    timeout: Duration,
    max_response: usize,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("account {account}: {source}")]
pub struct BuildError {
    account: String,
    source: keyward_certs::CertsError,
}

impl Upstream {
    /// A client for `account`, with the listener's upstream deadlines and size cap.
    pub fn new(account: &Account, limits: &Limits) -> Result<Self, BuildError> {
        let tls =
            keyward_certs::client_config(account.upstream_ca.as_deref()).map_err(|source| {
                BuildError {
                    account: account.name.clone(),
                    source,
                }
            })?;
        Ok(Self {
            pool: pool::Pool::new(tls, limits.connect_timeout),
            base: account.upstream.clone(),
            families: production_venue(account),
            timeout: limits.upstream_timeout,
            max_response: limits.max_response_bytes,
        })
    }

    /// Sends one request (signed, or keyward's own clock check), once.
    pub async fn send(&self, outbound: Outbound) -> Result<Answer, UpstreamError> {
        let started = Instant::now();
        let (host, request) = self.request(outbound)?;
        let exchange = async {
            let mut connection = self.pool.take(&host).await?;
            let sending = connection.send(request);
            let response = connection
                .drive(sending)
                .await?
                .map_err(|e| pool::classify(&e))?;
            let (parts, body) = response.into_parts();
            // Neither is read further: the connection is dropped, not put back.
            if parts.status.is_redirection() {
                return Err(UpstreamError::Redirect);
            }
            // Both framings at once is a response-splitting attempt.
            if parts.headers.contains_key(header::TRANSFER_ENCODING)
                && parts.headers.contains_key(header::CONTENT_LENGTH)
            {
                return Err(UpstreamError::Invalid);
            }
            let body = connection
                .drive(Limited::new(body, self.max_response).collect())
                .await?
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        UpstreamError::TooLarge
                    } else {
                        UpstreamError::Invalid
                    }
                })?
                .to_bytes();
            self.pool.put_back(host, connection);
            let mut headers = parts.headers;
            strip_hop_by_hop(&mut headers);
            Ok((parts.status, headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        Ok(Answer {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// The host to send `outbound` to, and the request in origin form with its
    /// `Host` and keyward's user agent (unless the venue's signer set one).
    fn request(
        &self,
        outbound: Outbound,
    ) -> Result<(Authority, Request<Full<Bytes>>), UpstreamError> {
        let path = outbound
            .path_and_query
            .split('?')
            .next()
            .unwrap_or_default();
        let base = match self.families.and_then(|venue| venue.family_upstream(path)) {
            Some(family) => Uri::from_static(family),
            None => self.base.clone(),
        };
        let host = base.authority().cloned().ok_or(UpstreamError::Invalid)?;
        let host_header = match host.port_u16() {
            Some(443) | None => HeaderValue::from_str(host.host()),
            Some(_) => HeaderValue::from_str(host.as_str()),
        }
        .map_err(|_| UpstreamError::Invalid)?;
        let target: Uri = outbound
            .path_and_query
            .parse()
            .map_err(|_| UpstreamError::Invalid)?;
        let mut builder = Request::builder().method(outbound.method).uri(target);
        if !outbound
            .headers
            .iter()
            .any(|(name, _)| name == header::HOST)
        {
            builder = builder.header(header::HOST, host_header);
        }
        if !outbound
            .headers
            .iter()
            .any(|(name, _)| name == header::USER_AGENT)
        {
            builder = builder.header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        }
        for (name, value) in outbound.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(outbound.body)))
            .map_err(|_| UpstreamError::Invalid)?;
        Ok((host, request))
    }
}

/// The venue of an account that trades on the venue's production API.
fn production_venue(account: &Account) -> Option<&'static dyn keyward_venues::Venue> {
    let venue = account.venue.adapter();
    let production = Uri::from_static(venue.default_upstream());
    (account.upstream.scheme() == production.scheme()
        && account.upstream.authority() == production.authority())
    .then_some(venue)
}

/// The base URL a request for `path` from `account` goes to (what dry-run shows).
pub fn base_for(account: &Account, path: &str) -> Uri {
    match production_venue(account).and_then(|venue| venue.family_upstream(path)) {
        Some(family) => Uri::from_static(family),
        None => account.upstream.clone(),
    }
}

/// Headers that describe one hop and must not be copied to the next.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::SystemTime;

    use super::base_for;
    use crate::config::{Config, InMemory};

    /// Four accounts: two Binance accounts on production, one on a testnet, and one
    /// more venue; on the given bot listener.
    fn config(listen: &str, extra: &str) -> Config {
        let text = format!(
            r#"[server]
listen = "{listen}"
unsafe_listen = true

[vault]
file = "keyward.vault"
key = "file:master.key"

[accounts.spot]
venue = "binance-spot"
secret = "spot"

[accounts.futures]
venue = "binance-usdm"
secret = "futures"

[accounts.testnet]
venue = "binance-spot"
secret = "testnet"
upstream = "https://testnet.binance.vision"

[accounts.bybit]
venue = "bybit"
secret = "bybit"
{extra}
"#
        );
        let mut files = InMemory::new();
        files.insert("/kw/keyward.toml", text);
        Config::load_from(&files, Path::new("/kw/keyward.toml"), SystemTime::now()).unwrap()
    }

    #[test]
    fn production_accounts_reach_each_product_family_on_its_host() {
        let config = config("127.0.0.1:8443", "");
        let base =
            |account: &str, path: &str| base_for(&config.accounts[account], path).to_string();
        assert_eq!(base("spot", "/api/v3/order"), "https://api.binance.com/");
        assert_eq!(
            base("spot", "/fapi/v1/exchangeInfo"),
            "https://fapi.binance.com/"
        );
        assert_eq!(
            base("spot", "/dapi/v1/exchangeInfo"),
            "https://dapi.binance.com/"
        );
        assert_eq!(
            base("futures", "/fapi/v1/order"),
            "https://fapi.binance.com/"
        );
        assert_eq!(
            base("futures", "/api/v3/exchangeInfo"),
            "https://api.binance.com/"
        );
        assert_eq!(
            base("futures", "/sapi/v1/capital/config/getall"),
            "https://api.binance.com/"
        );
        // An account with an upstream of its own sends everything there.
        assert_eq!(
            base("testnet", "/fapi/v1/exchangeInfo"),
            "https://testnet.binance.vision/"
        );
    }

    #[test]
    fn tokenless_market_data_is_served_by_default_on_loopback_only() {
        fn public(config: &Config) -> Vec<&str> {
            config
                .accounts
                .values()
                .filter(|a| a.public_market_data)
                .map(|a| a.name.as_str())
                .collect()
        }
        // On loopback, the first account of each venue in the file.
        assert_eq!(
            public(&config("127.0.0.1:8443", "")),
            ["bybit", "futures", "spot"]
        );
        // One account that asks wins over the default.
        let asked = config("127.0.0.1:8443", "public_market_data = false");
        assert_eq!(public(&asked), ["futures", "spot"]);
        let chosen = "[accounts.testnet2]\nvenue = \"binance-spot\"\nsecret = \"t2\"\npublic_market_data = true";
        let chosen = config("127.0.0.1:8443", chosen);
        assert_eq!(public(&chosen), ["bybit", "futures", "testnet2"]);
        // On another address, only where an account asks.
        assert!(public(&config("0.0.0.0:8443", "")).is_empty());
    }
}
