//! A bot's WebSocket request: vetted like any request (the framing guard's verdict,
//! the target, the host), its handshake checked, recorded, and answered 101 with the
//! connection handed to a stream session; or refused in the venue's envelope like
//! any other request. Also the refusals of single WebSocket messages, recorded as
//! requests of their own.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use keyward_venues::VenueId;

use super::answer::refuse;
use super::trail::{Trail, count, record_answered};
use super::{Body, ConnInfo, Context, framing_verdict};
use crate::app::App;
use crate::error::Rejection;
use crate::front::{FrontError, Head};

/// Answers a WebSocket request: 101 and a session, or a refusal.
pub(super) fn accept(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> Response<Body> {
    let mut trail = Trail::new(
        app.request_id(),
        Instant::now(),
        request.method().clone(),
        None,
    );
    let snapshot = app.snapshot();
    let cx = Context {
        app: &app,
        snapshot: &snapshot,
        conn: &conn,
    };
    let (parts, body) = request.into_parts();
    match vet(cx, &parts, &mut trail) {
        Ok((venue, path, key, opened)) => {
            if let Err(rejection) = record_answered(cx, &trail, "stream_opened", Some(101)) {
                return refuse(cx, &trail, Some(venue), &rejection);
            }
            count(
                &app,
                &trail,
                "allow",
                "stream_opened",
                StatusCode::SWITCHING_PROTOCOLS,
            );
            // From the 101 on, the bytes are WebSocket frames, not requests.
            if let Some(verdicts) = &conn.verdicts {
                verdicts.upgraded();
            }
            let messages = Arc::new(ConnInfo {
                peer: conn.peer.clone(),
                transport: conn.transport.clone(),
                http2: false,
                verdicts: None,
                websocket: true,
            });
            let host = parts.headers.get(header::HOST).cloned();
            let request = Request::from_parts(parts, body);
            tokio::spawn(crate::streams::serve(
                app.clone(),
                messages,
                (venue, path),
                host,
                opened,
                request,
            ));
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Ok(accept) = HeaderValue::from_str(&crate::streams::accept_value(&key)) {
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
            response
        }
        Err((venue, rejection)) => {
            let mut response = refuse(cx, &trail, venue, &rejection);
            // The bot's next bytes may be frames it sent without waiting: the
            // connection cannot be trusted to carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

/// The checks of a WebSocket request: the venue its path belongs to (served by a
/// configured account), the path, the client's key, and for a user data stream the
/// keyward listenKey its URL names.
#[allow(clippy::type_complexity)]
fn vet(
    cx: Context<'_>,
    parts: &http::request::Parts,
    trail: &mut Trail,
) -> Result<(VenueId, &'static str, String, Opened), (Option<VenueId>, Rejection)> {
    let padded_credential = framing_verdict(cx, parts, trail).map_err(|r| (None, r))?;
    let target_text = super::body::request_target(&parts.uri, cx.conn.http2);
    trail.path = crate::audit::recorded(super::body::path_only(&target_text));
    if cx.conn.http2 {
        return Err((None, FrontError::Upgrade.into()));
    }
    let head = Head {
        method: &parts.method,
        target: &target_text,
        authority: None,
        headers: &parts.headers,
        padded_credential,
        verified_key: None,
    };
    let path = target_text.split('?').next().unwrap_or_default();
    let query = target_text
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default();
    let is_stream_path = VenueId::ALL.iter().any(|venue| {
        venue.adapter().streams().is_some_and(|streams| {
            streams.paths().iter().any(|p| p.path == path)
                || keyward_venues::market::market_path_of(streams.market_paths(), path).is_some()
                || streams.listen_key_of(path, query).is_some()
        })
    });
    if !is_stream_path {
        // An upgrade anywhere else is what it always was: a tunnel keyward refuses.
        return Err((None, FrontError::Upgrade.into()));
    }
    // A user data stream's URL names a keyward listenKey, in its path or query.
    let listen_key = cx.snapshot.config.accounts.values().find_map(|account| {
        let streams = account.venue.adapter().streams()?;
        Some((account.venue, streams.listen_key_of(path, query)?))
    });
    if let Some((venue, key)) = &listen_key {
        // The key stands for the bot: it is recorded nowhere, not even in the path.
        trail.path = keyward_venues::binance::USER_STREAM_PATH.to_owned();
        if cx.app.streams.listen_keys.resolve(key).is_none() {
            return Err((Some(*venue), keyward_policy::Denied::AuthInvalid.into()));
        }
    }
    let vetted = crate::front::check_stream(&head, &cx.snapshot.hosts, listen_key.is_some());
    // Which venue serves the path: known even when the handshake is refused, so the
    // refusal is in that venue's envelope.
    let served = match &listen_key {
        Some((venue, _)) => Some((*venue, keyward_venues::binance::USER_STREAM_PATH)),
        None => cx.snapshot.config.accounts.values().find_map(|account| {
            let streams = account.venue.adapter().streams()?;
            if let Some(spec) = streams.paths().iter().find(|p| p.path == path) {
                return Some((account.venue, spec.path));
            }
            // Market data is relayed only for an account that serves it.
            let (market, _) = keyward_venues::market::market_path_of(streams.market_paths(), path)?;
            account
                .public_market_data
                .then_some((account.venue, market.path))
        }),
    };
    if keyward_policy::mentions_token(query) {
        // A token in the URL would sit in every access log between bot and keyward.
        return Err((
            served.map(|s| s.0),
            keyward_venues::ParseError::TokenInParams.into(),
        ));
    }
    let (_, key) = vetted.map_err(|e| (served.map(|s| s.0), e.into()))?;
    let (venue, path) = served.ok_or_else(|| {
        (
            None,
            Rejection::from(keyward_policy::Denied::PathNotAllowed {
                endpoint: format!("GET {path}").into(),
            }),
        )
    })?;
    trail.venue = Some(venue);
    // A market-data stream named in the path (Binance's `/ws/NAME`) is opened at
    // that path: the user data stream's key never is (its link asks for the real
    // one).
    let opened = match &listen_key {
        Some((_, key)) => Opened::UserStream(key.clone()),
        // The path the bot asked for (`path` is now the one it is served on).
        None => match venue.adapter().streams().and_then(|s| {
            keyward_venues::market::market_path_of(
                s.market_paths(),
                target_text.split('?').next().unwrap_or_default(),
            )
        }) {
            Some((_, Some(named))) => Opened::NamedStream(named),
            _ => Opened::Path,
        },
    };
    Ok((venue, path, key.to_owned(), opened))
}

/// What a WebSocket's URL opens beyond its path.
#[derive(Debug)]
pub(crate) enum Opened {
    /// The path alone.
    Path,
    /// A user data stream, by the keyward listenKey its URL names.
    UserStream(String),
    /// A market-data stream named in the path (`/ws/btcusdt@trade`): the whole path.
    NamedStream(String),
}

/// Records a stream method that needs no decision for `bot`: its `request` record,
/// allowed with `reason`: `answered_by_keyward` for the session methods keyward
/// answers itself (`session.logon` and the like), `stream_control` for an
/// unsubscribe, which only stops events.
pub(crate) fn record_stream_method(
    app: &App,
    conn: &ConnInfo,
    (venue, path): (VenueId, &'static str),
    method: &'static str,
    bot: Option<&str>,
    reason: &'static str,
) -> Result<(), Rejection> {
    let mut trail = Trail::new(
        app.request_id(),
        Instant::now(),
        http::Method::GET,
        Some(method),
    );
    trail.path = path.to_owned();
    trail.venue = Some(venue);
    let snapshot = app.snapshot();
    if let Some(policy) = bot.and_then(|name| snapshot.config.policy.bot(name)) {
        trail.bot = Some(policy.name().to_owned());
        trail.mode = Some(policy.mode());
        trail.account = Some(policy.account().to_owned());
    }
    let cx = Context {
        app,
        snapshot: &snapshot,
        conn,
    };
    record_answered(cx, &trail, reason, None)?;
    count(app, &trail, "allow", reason, StatusCode::OK);
    Ok(())
}

/// Refuses a single WebSocket message (malformed, of an unknown method, from another
/// bot than the connection's) with its own `request` record, in the venue's
/// envelope for the session to wrap.
pub(crate) fn refuse_message(
    app: &App,
    conn: &ConnInfo,
    venue: VenueId,
    path: &'static str,
    rejection: &Rejection,
) -> Response<Body> {
    let mut trail = Trail::new(app.request_id(), Instant::now(), http::Method::GET, None);
    trail.path = path.to_owned();
    trail.venue = Some(venue);
    let snapshot = app.snapshot();
    let cx = Context {
        app,
        snapshot: &snapshot,
        conn,
    };
    refuse(cx, &trail, Some(venue), rejection)
}
