//! Refusals: the answer in the venue's own envelope (with `x-keyward-error`,
//! `Retry-After`, and `Connection: close` where the connection can no longer be
//! trusted), its audit record and metrics; the throttle on failed authentications;
//! and the circuit breaker that freezes an account whose bot is refused again and
//! again.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::Full;
use keyward_policy::Denied;
use keyward_venues::{VenueId, binance};

use super::trail::{Trail, count, record_refusal};
use super::{Body, ConnInfo, Context};
use crate::app::{App, Snapshot};
use crate::error::Rejection;

/// Answers a refusal: venue envelope and status, `x-keyward-error`, `Retry-After` for
/// rate limits, `Connection: close` when the connection can no longer be trusted;
/// then records and counts it under keyward's own status.
pub(super) fn refuse(
    cx: Context<'_>,
    trail: &Trail,
    envelope: Option<VenueId>,
    rejection: &Rejection,
) -> Response<Body> {
    let (app, conn) = (cx.app, cx.conn);
    // keyward's status is what the audit record, the log and `caused_by_bot` speak;
    // the answer carries the venue's, which for Bybit and Kraken is mostly 200.
    let status = rejection.status();
    let refusal = rejection.refusal();
    let (content_type, body, sent_status) = match envelope {
        Some(venue) => {
            let adapter = venue.adapter();
            let (content_type, body) = adapter.refusal(&refusal);
            (content_type, body, adapter.refusal_status(&refusal))
        }
        None => {
            let (content_type, body) = binance::refusal_body(&refusal);
            (content_type, body, status)
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = sent_status;
    // Some clients show only the status line of an error (krakenex); their venue
    // puts keyward's reason there too. HTTP/2 has no reason phrase.
    if !conn.http2
        && let Some(phrase) =
            envelope.and_then(|venue| venue.adapter().refusal_reason_phrase(&refusal))
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(phrase)
    {
        response.extensions_mut().insert(phrase);
    }
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "x-keyward-error",
        HeaderValue::from_static(rejection.reason()),
    );
    if let Ok(value) = HeaderValue::from_str(&trail.id) {
        headers.insert("x-keyward-request-id", value);
    }
    if let Some(retry_after) = rejection.retry_after() {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    if rejection.closes_connection() && !conn.http2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // A refusal after forwarding was recorded as the request's outcome.
    if trail.recorded.is_none() {
        record_refusal(app, conn, trail, rejection.reason(), Some(status.as_u16()));
    }
    let scope = match rejection {
        Rejection::Denied(Denied::RateLimited { scope, .. }) => Some(match scope {
            keyward_policy::RateScope::Bot => "bot",
            keyward_policy::RateScope::BotOrders => "bot_orders",
            keyward_policy::RateScope::Account => "account",
        }),
        Rejection::ExchangeBackoff { .. } | Rejection::ExchangeLimitNear { .. } => Some("exchange"),
        Rejection::ExchangeShareUsed { .. } => Some("exchange_share"),
        _ => None,
    };
    if let Some(scope) = scope {
        app.metrics.rate_limited(trail.bot.as_deref(), scope);
    }
    // After a recorded allow, the refusal is the exchange's outcome (unreachable, a
    // ban, a timeout): counted under the decision the audit log holds, with the
    // outcome as its reason, never as a policy denial.
    count(
        app,
        trail,
        trail.recorded.unwrap_or("deny"),
        rejection.reason(),
        sent_status,
    );
    response
}

/// Counts a policy refusal of an authenticated bot against its account's
/// `freeze_after_denials`; when that trips, freezes the account. A bot refused again
/// and again is a leaked token probing, or a bot gone wrong: either way, stop.
pub(super) fn trip_breaker(
    app: &Arc<App>,
    snapshot: &Snapshot,
    trail: &Trail,
    rejection: &Rejection,
) {
    let (Some(bot), Some(account)) = (trail.bot.as_deref(), trail.account.as_deref()) else {
        return;
    };
    // A token without the certificate or uid its bot is bound to is a stolen token
    // being tried: it counts like a policy refusal. Rate limits do not.
    let counts = match rejection {
        Rejection::Denied(denied) => !matches!(denied, Denied::RateLimited { .. }),
        Rejection::BindingMismatch(_) => true,
        _ => false,
    };
    if !counts || app.freeze.frozen(account).is_some() {
        return;
    }
    let Some(limit) = snapshot
        .config
        .accounts
        .get(account)
        .and_then(|a| a.freeze_after_denials)
    else {
        return;
    };
    if !app.breaker.refused(bot, limit) {
        return;
    }
    app.metrics.breaker_tripped(account, bot);
    let by = format!("circuit breaker: bot {bot} was refused {limit} times");
    let account = account.to_owned();
    let app = app.clone();
    tokio::spawn(async move {
        if let Err((_, error)) = crate::killswitch::freeze(&app, Some(&account), false, &by).await {
            tracing::error!(%account, %error, "the circuit breaker could not persist the freeze");
        }
    });
}

/// Counts a failed authentication (anything else passes through uncounted) against
/// its source: within the source's `server.auth_failure_rate` it stays a 401,
/// beyond it the answer is 429 with `Retry-After`. Only failures count and only
/// failures are throttled, so a flood of wrong tokens never locks out a bot whose
/// token is right, from this source or any other. Tokens in WebSocket messages (a
/// logon, a Bybit `auth`, an OKX `login`) count against the same source as REST
/// requests, so a connection cannot try tokens faster than a request line could.
pub(crate) fn throttle_auth_failure(app: &App, conn: &ConnInfo, rejection: Rejection) -> Rejection {
    if !rejection.is_failed_authentication() {
        return rejection;
    }
    let source = source_of(conn);
    let now = Instant::now();
    if app.auth_failures.allow(&source, now) {
        return rejection;
    }
    Rejection::AuthThrottled {
        retry_after: app.auth_failures.retry_after(&source, now),
    }
}

/// Where a request comes from, for throttling: the peer's IP address, or the uid of
/// a Unix socket peer.
fn source_of(conn: &ConnInfo) -> String {
    if let Some(cred) = conn.transport.peer_cred() {
        return format!("uid:{}", cred.uid);
    }
    match conn.peer.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().to_string(),
        Err(_) => conn.peer.clone(),
    }
}
