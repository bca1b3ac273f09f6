//! The request lifecycle, in order: framing verdict, front checks, authentication,
//! binding, routing and endpoint authorization (all on the head), the body read
//! under its caps, parsing, judgement (the orders it names resolved against
//! keyward's record, the intent authorized against reference prices), the bot's
//! rate limits, the kill switch, budgets, the exchange's limits, the audit record;
//! then signing and forwarding (or, in dry-run mode, an answer with what would have
//! been sent). `serve` reads as that list.
//!
//! Every refusal goes through one place (`answer::refuse`) that renders it in the
//! venue's envelope with `x-keyward-error`, records it, and counts it.

mod answer;
mod body;
mod forward;
mod knowledge;
mod spending;
mod trail;
mod upgrade;

pub(crate) use answer::throttle_auth_failure;
pub(crate) use upgrade::{Opened, record_stream_method, refuse_message};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use keyward_policy::{Mode, Permit};
use keyward_venues::ParsedCall;

use self::answer::{refuse, trip_breaker};
use self::body::{drain, read_body, request_target};
use self::forward::{Committed, dry_run};
use self::knowledge::Running;
use self::trail::{Trail, count, record_refusal, record_request};
use crate::account::AccountRuntime;
use crate::app::{App, Snapshot};
use crate::decide::{self, Admitted};
use crate::error::Rejection;
use crate::framing::{Verdict, Verdicts};
use crate::front::{Head, Target};
use crate::identity::Transport;

/// What the connection knows about itself.
#[derive(Debug)]
pub struct ConnInfo {
    /// The bot's address (`ip:port`, or the Unix socket's path).
    pub peer: String,
    /// Which listener, and what it proved about the peer.
    pub transport: Transport,
    /// True for HTTP/2.
    pub http2: bool,
    /// The HTTP/1 framing guard's verdicts (absent for HTTP/2).
    pub verdicts: Option<Verdicts>,
    /// True for the messages of a WebSocket (each decided as its REST twin).
    pub websocket: bool,
}

/// The response body type.
pub type Body = Full<Bytes>;

/// One request's surroundings, the same for its whole life: the running keyward, the
/// snapshot it is served under (a reload meanwhile does not touch it) and the
/// connection it came on.
#[derive(Clone, Copy)]
struct Context<'a> {
    app: &'a App,
    snapshot: &'a Snapshot,
    conn: &'a ConnInfo,
}

/// Handles one request; never fails (every failure is an answer).
pub async fn handle(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> Response<Body> {
    if crate::streams::is_upgrade(&request) {
        return upgrade::accept(app, conn, request);
    }
    let (parts, body) = request.into_parts();
    handle_with(app, conn, parts, Source::Http(Some(body)), Via::Http, None).await
}

/// Handles a bot's WebSocket message, read as the head of its REST twin: decided by
/// exactly that request's rules and, if allowed, sent on `route`. Never fails (a
/// refusal is the answer, in the venue's REST envelope, for the caller to wrap).
pub(crate) async fn handle_message(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    twin: http::request::Parts,
    body: Option<String>,
    route: StreamRoute,
) -> Response<Body> {
    let method = route.method.name;
    let source = Source::Message(Some(body.map_or_else(Bytes::new, Bytes::from)));
    handle_with(app, conn, twin, source, Via::Stream(route), Some(method)).await
}

/// Where a request's body comes from: the HTTP request's own, or a WebSocket
/// message's (the twin's JSON body, or none where its parameters are all in the
/// twin's query).
enum Source {
    Http(Option<Incoming>),
    Message(Option<Bytes>),
}

/// How a permitted call is sent.
pub(crate) enum Via {
    /// As the signed HTTPS request of the account's REST client.
    Http,
    /// As a signed message on the bot connection's own WebSocket to the venue.
    Stream(StreamRoute),
}

/// Where a WebSocket message goes once permitted: the connection's link to the venue
/// and the method (with what the bot's message carries to keyward's).
pub(crate) struct StreamRoute {
    pub(crate) link: Arc<crate::streams::Link>,
    pub(crate) method: &'static keyward_venues::stream::StreamMethod,
    pub(crate) carried: keyward_venues::stream::Carried,
}

async fn handle_with(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    parts: http::request::Parts,
    mut body: Source,
    via: Via,
    stream_method: Option<&'static str>,
) -> Response<Body> {
    let started = Instant::now();
    let mut pending = Pending {
        app: &app,
        conn: &conn,
        trail: Trail::new(
            app.request_id(),
            started,
            parts.method.clone(),
            stream_method,
        ),
        answered: false,
    };
    // One snapshot for the whole request: a reload meanwhile does not touch it.
    let snapshot = app.snapshot();
    let cx = Context {
        app: &app,
        snapshot: &snapshot,
        conn: &conn,
    };
    match serve(cx, &parts, &mut body, &mut pending.trail).await {
        Ok(Step::Answered(response)) => {
            pending.answered = true;
            response
        }
        Ok(Step::Forward(mut committed)) => {
            // Recorded and about to be signed: from here the request runs to its end,
            // even if the bot goes away meanwhile (hyper drops this future when the
            // connection or the HTTP/2 stream is gone). Its outcome is recorded, its
            // budgets and open-order room settled and its freeze pass held until the
            // exchange has answered.
            pending.answered = true;
            committed.via = via;
            let trail = pending.trail.clone();
            let forwarding = app.forwards.enter();
            let run = committed.run(app.clone(), snapshot.clone(), conn.clone(), trail);
            let finished = RunToEnd::new(async move {
                let response = run.await;
                drop(forwarding);
                response
            })
            .await;
            // A bug that panics while forwarding answers this request 500 and
            // leaves the connection and every other request alone.
            finished.unwrap_or_else(|Panicked| {
                refuse(
                    cx,
                    &pending.trail,
                    pending.trail.venue,
                    &Rejection::Internal,
                )
            })
        }
        Err(rejection) => {
            // Only a refusal needs to guess the venue of a request that never named
            // its account, so the guess is not made for every request.
            let trail = &pending.trail;
            let envelope = trail.venue.or_else(|| {
                decide::envelope_venue(&parts.method, parts.uri.path(), &parts.headers)
            });
            // Recorded before the unread body is drained: a bot that goes away while
            // it is being drained has still been refused.
            let mut response = refuse(cx, trail, envelope, &rejection);
            pending.answered = true;
            trip_breaker(&app, &snapshot, trail, &rejection);
            // A client that asked `Expect: 100-continue` waits for leave to send its
            // body; reading the body would give that leave (hyper answers 100 when
            // the body is first read) for a request already refused. It gets the
            // refusal instead, and the connection closes, since whether the body
            // still comes after it cannot be known.
            let awaits_continue = parts.headers.contains_key(header::EXPECT);
            match body {
                Source::Http(Some(_)) if awaits_continue && !conn.http2 => {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Source::Http(Some(_)) if awaits_continue => {}
                Source::Http(Some(unread)) if !rejection.closes_connection() => {
                    drain(&snapshot, &parts.headers, unread).await;
                }
                _ => {}
            }
            response
        }
    }
}

/// A forward that runs in the request's own task and, if that task drops it half-way
/// (the bot went away), goes on to its end in a task of its own. Spawning only then
/// spares every other request the hand-over to a second task and back. A forward
/// that panics ends there (it is neither resumed nor spawned) and says so.
struct RunToEnd<F: Future<Output = Response<Body>> + Send + 'static> {
    run: Option<Pin<Box<F>>>,
}

/// The forward panicked.
struct Panicked;

impl<F: Future<Output = Response<Body>> + Send + 'static> RunToEnd<F> {
    fn new(run: F) -> Self {
        Self {
            run: Some(Box::pin(run)),
        }
    }
}

impl<F: Future<Output = Response<Body>> + Send + 'static> Future for RunToEnd<F> {
    type Output = Result<Response<Body>, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let Some(run) = self.run.as_mut() else {
            return Poll::Pending;
        };
        // The future is dropped, never polled again, once it has panicked.
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(response)) => {
                self.run = None;
                Poll::Ready(Ok(response))
            }
            Err(_) => {
                self.run = None;
                Poll::Ready(Err(Panicked))
            }
        }
    }
}

impl<F: Future<Output = Response<Body>> + Send + 'static> Drop for RunToEnd<F> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run);
        }
    }
}

/// A request being handled. If the bot goes away before keyward has decided on it
/// (hyper then drops the request's future), it is recorded as refused with
/// `client_gone`, so that every request read has its one audit record.
struct Pending<'a> {
    app: &'a App,
    conn: &'a ConnInfo,
    trail: Trail,
    /// A refusal was answered, or the request was answered or handed to the task
    /// that forwards it.
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.answered || self.trail.recorded.is_some() {
            return;
        }
        record_refusal(self.app, self.conn, &self.trail, "client_gone", None);
        // 499, as nginx logs a client that left before its answer.
        let gone = http::StatusCode::from_u16(499).unwrap_or(http::StatusCode::BAD_REQUEST);
        count(self.app, &self.trail, "deny", "client_gone", gone);
    }
}

/// What [`serve`] leaves for [`handle`] to do.
enum Step {
    /// The answer (dry run, or a refusal handled inside).
    Answered(Response<Body>),
    /// A recorded request to sign and send (boxed: it is three times the size of
    /// an answer).
    Forward(Box<Committed>),
}

/// Everything keyward decides and records before it signs, top to bottom.
async fn serve(
    cx: Context<'_>,
    parts: &http::request::Parts,
    body: &mut Source,
    trail: &mut Trail,
) -> Result<Step, Rejection> {
    let padded_credential = framing_verdict(cx, parts, trail)?;
    let (target_text, authority) = as_sent(cx, parts);
    let head = Head {
        method: &parts.method,
        target: &target_text,
        authority: authority.as_deref(),
        headers: &parts.headers,
        padded_credential,
        verified_key: parts
            .extensions
            .get::<crate::streams::VerifiedKey>()
            .map(|key| key.0.as_str()),
    };
    let (admitted, target) = admit(cx, &head, trail)?;
    let account = account_of(cx, &admitted)?;
    let body = match body {
        Source::Http(body) => {
            read_body(cx, &parts.headers, body.take().ok_or(Rejection::Internal)?).await?
        }
        Source::Message(body) => body.take().ok_or(Rejection::Internal)?,
    };
    let call = decide::parse(&admitted, &target, &parts.headers, &body)?;
    trail.note(&call);
    let (call, permit) = judge(cx, &admitted, call, trail).await?;
    // The bot's own limits first: a bot runs out of its budget long before it can
    // exhaust the exchange's, which every bot shares.
    // With a shared state backend they are taken with the budgets, in one round
    // trip, once the request is known to go on.
    if cx.app.shared.is_none() {
        cx.snapshot.limits.check(&permit)?;
    }
    // A question about the API key is answered here, from the bot's policy, and
    // recorded like any other read; it never reaches the exchange. So is a user data
    // stream's key: keyward's own, bound to the bot and its token; the venue's real
    // one never leaves keyward.
    let answered = forward::key_answer(trail, &admitted, &call)
        .or_else(|| forward::listen_key_answer(cx.app, trail, &admitted, &call, parts));
    if let Some(answer) = answered {
        if cx.app.shared.is_some() {
            spending::spend(cx, trail, &call, &permit, &admitted, false).await?;
        }
        trail.recorded = Some(record_request(cx, trail, &call, &permit, None)?);
        count(
            cx.app,
            trail,
            "allow",
            "answered_by_keyward",
            http::StatusCode::OK,
        );
        return Ok(Step::Answered(answer));
    }
    let forwarded = permit.mode() != Mode::DryRun;
    let pass = freeze_pass(cx, &admitted, forwarded).await?;
    let spending = spending::spend(cx, trail, &call, &permit, &admitted, forwarded).await?;
    let shadow_denial = permit
        .shadow_denial()
        .cloned()
        .or(spending.would_deny.clone());
    let charged = if forwarded {
        charge_exchange(cx, &admitted, &call, &permit)
    } else {
        Ok(())
    };
    match charged.and_then(|()| record_request(cx, trail, &call, &permit, shadow_denial.as_ref())) {
        Ok(decision) => trail.recorded = Some(decision),
        Err(rejection) => {
            spending.release(cx.app, trail, &permit);
            return Err(rejection);
        }
    }
    if !forwarded {
        return Ok(Step::Answered(dry_run(
            cx.app, trail, &admitted, &permit, &call,
        )));
    }
    keep_prices_fresh(cx, &admitted, &call);
    Ok(Step::Forward(Box::new(Committed {
        account,
        venue: admitted.venue,
        permit,
        call,
        spending,
        via: Via::Http,
        _pass: pass,
    })))
}

/// The HTTP/1 framing guard's verdict on this request (none for HTTP/2): refused,
/// or clean, and whether its token header was padded.
fn framing_verdict(
    cx: Context<'_>,
    parts: &http::request::Parts,
    trail: &mut Trail,
) -> Result<bool, Rejection> {
    match cx.conn.verdicts.as_ref().map(Verdicts::next) {
        Some(Verdict::Refuse(reason)) => {
            let as_sent = request_target(&parts.uri, cx.conn.http2);
            trail.path = crate::audit::recorded(body::path_only(&as_sent));
            Err(reason.into())
        }
        Some(Verdict::Clean { padded_credential }) => Ok(padded_credential),
        None => Ok(false),
    }
}

/// The target and, over HTTP/2, the `:authority`, as the bot sent them.
fn as_sent(cx: Context<'_>, parts: &http::request::Parts) -> (String, Option<String>) {
    let authority = cx
        .conn
        .http2
        .then(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .flatten();
    (request_target(&parts.uri, cx.conn.http2), authority)
}

/// Admits the request on its head ([`decide::admit`]), noting in the trail what was
/// learned either way; failed authentications are counted against their source.
fn admit<'c, 'h>(
    cx: Context<'c>,
    head: &Head<'h>,
    trail: &mut Trail,
) -> Result<(Admitted<'c>, Target<'h>), Rejection> {
    let config = &cx.snapshot.config;
    match decide::admit(
        config,
        &cx.snapshot.hosts,
        head,
        &cx.conn.transport,
        SystemTime::now(),
    ) {
        Ok((admitted, target)) => {
            trail.admitted(&admitted, &target);
            Ok((admitted, target))
        }
        Err(refused) => {
            trail.refused(&refused, config, head.target);
            Err(throttle_auth_failure(cx.app, cx.conn, refused.rejection))
        }
    }
}

/// Everything signing and sending will need for the request's account, found once:
/// the snapshot holds a runtime for every account of its configuration.
fn account_of(cx: Context<'_>, admitted: &Admitted<'_>) -> Result<Arc<AccountRuntime>, Rejection> {
    cx.snapshot
        .accounts
        .get(admitted.account.name.as_str())
        .cloned()
        .ok_or(Rejection::Internal)
}

/// Judges the parsed call with what the running keyward knows ([`decide::judge`]).
/// What the trail records of a refused request is the call as judged, except for a
/// refusal over the orders it names: that one is recorded as the bot sent it.
async fn judge(
    cx: Context<'_>,
    admitted: &Admitted<'_>,
    call: ParsedCall,
    trail: &mut Trail,
) -> Result<(ParsedCall, Permit), Rejection> {
    // The orders a request names are judged as every replica has settled them,
    // including the bot's requests another replica has answered and not yet
    // written to the journal.
    if let Some(shared) = &cx.app.shared
        && call.refs.named().next().is_some()
    {
        let account = &admitted.account.name;
        let caught_up = match trail.bot.as_deref() {
            Some(bot) => {
                let limits = &cx.snapshot.config.server.limits;
                let longest =
                    limits.connect_timeout + limits.upstream_timeout + crate::shared::HOLD_MARGIN;
                shared
                    .catch_up_for(account, bot, &cx.app.orders, longest)
                    .await
            }
            None => shared.catch_up(account, &cx.app.orders).await.map(drop),
        };
        if caught_up.is_err() {
            // Judged as this replica knows the orders: its admission, next, still
            // needs Redis for anything it spends.
            tracing::warn!(
                request_id = %trail.id,
                "the journal of settled orders could not be read from the shared state; judged with this replica's record"
            );
        }
    }
    let knowledge = Running {
        cx,
        request_id: &trail.id,
    };
    let judged = decide::judge(&cx.snapshot.config, admitted, call, &knowledge).await;
    if !matches!(judged.verdict, Err(Rejection::Order(_))) {
        trail.note(&judged.call);
    }
    Ok((judged.call, judged.verdict?))
}

/// The kill switch's pass for a request that will be sent, held until the exchange
/// has answered so a freeze can wait for it; while the account is frozen, only
/// cancels and public market data get one.
async fn freeze_pass(
    cx: Context<'_>,
    admitted: &Admitted<'_>,
    forwarded: bool,
) -> Result<Option<crate::freeze::Pass>, Rejection> {
    if !forwarded {
        return Ok(None);
    }
    let pass = cx.app.freeze.pass().await;
    if admitted.endpoint.class != keyward_policy::EndpointClass::Cancel
        && admitted.endpoint.security != keyward_venues::Security::Public
        && let Some(frozen) = cx.app.freeze.frozen(&admitted.account.name)
    {
        return Err(Rejection::Frozen {
            since: frozen.since,
            by: frozen.by,
        });
    }
    Ok(Some(pass))
}

/// Charges the request its documented weight, and its orders, against the
/// exchange's limits before it is sent, from the bot's share.
fn charge_exchange(
    cx: Context<'_>,
    admitted: &Admitted<'_>,
    call: &ParsedCall,
    permit: &Permit,
) -> Result<(), Rejection> {
    cx.app.exchange.admit(
        admitted.account,
        admitted.venue,
        exchange_charge(cx, admitted, call, permit),
        SystemTime::now(),
        Instant::now(),
    )
}

/// What a request costs at the exchange: its documented weight and its orders,
/// from its bot's share.
fn exchange_charge<'a>(
    cx: Context<'a>,
    admitted: &Admitted<'a>,
    call: &ParsedCall,
    permit: &Permit,
) -> crate::exchange_limits::Charge<'a> {
    let share = admitted.bot.map(|bot| {
        let share = cx
            .snapshot
            .exchange_shares
            .get(bot.name())
            .copied()
            .unwrap_or(crate::app::DEFAULT_EXCHANGE_SHARE);
        (bot.name(), share)
    });
    // Tokenless market data has a share of its own, so that clients loading markets
    // can never spend what the account's bots need.
    let share = share.or(Some((
        crate::app::PUBLIC_SHARE_NAME,
        crate::app::PUBLIC_EXCHANGE_SHARE,
    )));
    crate::exchange_limits::Charge {
        bot: share,
        weight: admitted.venue.weight(call),
        orders: permit.orders(),
    }
}

/// A bot with a band needs a price for every order: keeps the prices of the symbols
/// it trades fresh in the background, once an order of it is on its way.
fn keep_prices_fresh(cx: Context<'_>, admitted: &Admitted<'_>, call: &ParsedCall) {
    let Some(bot) = admitted.bot.filter(|bot| bot.price_band().is_some()) else {
        return;
    };
    let symbols: Vec<keyward_policy::Symbol> = call
        .intent
        .orders
        .iter()
        .filter(|o| bot.allows_symbol(&o.symbol))
        .map(|o| o.symbol.clone())
        .collect();
    cx.app.prices.touch(&admitted.account.name, &symbols);
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::{Body, Panicked, RunToEnd};

    fn answer() -> http::Response<Body> {
        http::Response::new(Body::from("done"))
    }

    #[tokio::test]
    async fn a_forward_the_request_drops_half_way_runs_to_its_end() {
        let (finished, ended) = tokio::sync::oneshot::channel();
        let (go_on, waiting) = tokio::sync::oneshot::channel::<()>();
        let forward = RunToEnd::new(async move {
            let _ = waiting.await;
            let _ = finished.send(());
            answer()
        });
        // The request's task gives up while the forward waits on the exchange.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), forward)
                .await
                .is_err()
        );
        let _ = go_on.send(());
        tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .expect("the dropped forward went on in a task of its own")
            .expect("and ran to its end");
    }

    /// Panics on every poll, counting them.
    struct PanicsWhenPolled(Arc<AtomicU32>);

    impl Future for PanicsWhenPolled {
        type Output = http::Response<Body>;

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("a bug in the forward");
        }
    }

    #[tokio::test]
    async fn a_forward_that_panics_is_reported_and_never_run_again() {
        let polls = Arc::default();
        let forward = RunToEnd::new(PanicsWhenPolled(Arc::clone(&polls)));
        assert!(matches!(forward.await, Err(Panicked)));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "neither polled again nor spawned when dropped"
        );
        let response = RunToEnd::new(async { answer() })
            .await
            .unwrap_or_else(|Panicked| unreachable!());
        assert_eq!(response.status(), 200);
    }
}
