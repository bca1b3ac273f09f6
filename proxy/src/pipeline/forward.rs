//! The last steps of a request that passed every check and has its `request`
//! record: signing it with the account's key, sending it, recording the outcome and
//! settling what it spent; or, in dry-run mode, answering with what would be sent.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use keyward_policy::{Notional, Permit};
use keyward_venues::{ParsedCall, SignContext};

use super::answer::{refuse, trip_breaker};
use super::spending::Spending;
use super::trail::{Trail, count, millis};
use super::{Body, ConnInfo, Context};
use crate::account::AccountRuntime;
use crate::app::{App, Snapshot};
use crate::audit::{self, OutcomeRecord};
use crate::decide::Admitted;
use crate::error::Rejection;

/// A request that passed every check and has its `request` record: what signing
/// and forwarding it needs, owned, so it can finish without the connection.
pub(super) struct Committed {
    pub(super) account: Arc<AccountRuntime>,
    pub(super) venue: &'static dyn keyward_venues::Venue,
    pub(super) permit: Permit,
    pub(super) call: ParsedCall,
    pub(super) spending: Spending,
    /// Over HTTPS, or as a message on the bot connection's WebSocket to the venue.
    pub(super) via: super::Via,
    /// The kill switch's pass, held (never read) until the request is done: a freeze
    /// waits for it.
    pub(super) _pass: Option<crate::freeze::Pass>,
}

impl Committed {
    /// Signs and sends the request and records its outcome; answers the bot with the
    /// exchange's answer, or a refusal. Runs to its end even if the bot has gone.
    pub(super) async fn run(
        self: Box<Self>,
        app: Arc<App>,
        snapshot: Arc<Snapshot>,
        conn: Arc<ConnInfo>,
        mut trail: Trail,
    ) -> Response<Body> {
        let result = self.forward(&app, &mut trail).await;
        if let (Err(rejection), None) = (&result, trail.upstream_elapsed) {
            // Refused before anything was sent (keyward's own fault): give it all back,
            // and say so in the outcome record the `request` record is waiting for.
            self.spending.release(&app, &trail, &self.permit);
            self.not_sent(&app, &trail, rejection);
        }
        let venue = self.venue;
        // Lets a freeze that waits for this request go ahead.
        drop(self);
        match result {
            Ok(response) => response,
            Err(rejection) => {
                let cx = Context {
                    app: &app,
                    snapshot: &snapshot,
                    conn: &conn,
                };
                let response = refuse(cx, &trail, Some(venue.id()), &rejection);
                trip_breaker(&app, &snapshot, &trail, &rejection);
                response
            }
        }
    }

    /// The outcome record of a recorded request that keyward failed to send (a signing
    /// or nonce failure): nothing reached the exchange, every order is given back.
    fn not_sent(&self, app: &App, trail: &Trail, rejection: &Rejection) {
        let (permit, call, spending) = (&self.permit, &self.call, &self.spending);
        let results = vec![
            crate::orders::result_record(&keyward_venues::LegResult::Rejected);
            call.intent.orders.len()
        ];
        let refunded_notional = match permit.notional() {
            Notional::Bounded(amount) => amount.to_string(),
            Notional::Unbounded => keyward_policy::Amount::ZERO.to_string(),
        };
        let record = OutcomeRecord {
            ts: audit::timestamp(SystemTime::now()),
            event: "outcome",
            request_id: &trail.id,
            upstream_status: None,
            refused: false,
            error: Some(rejection.reason()),
            upstream_ms: 0,
            total_ms: millis(trail.started.elapsed()),
            orders: audit::OrderOutcome {
                results,
                cancelled: Some(vec![false; call.refs.cancels.len()]),
                refunded_notional: spending.spent.then_some(refunded_notional),
                refunded_orders: spending.spent.then(|| permit.orders()),
                ..audit::OrderOutcome::default()
            },
        };
        if let Err(error) = app.audit.write(&record) {
            app.metrics.audit_failure();
            tracing::error!(request_id = %trail.id, %error, "outcome record not written");
        }
    }

    /// Signs the validated call with the account's key.
    async fn sign(&self, trail: &Trail) -> Result<keyward_venues::Outbound, Rejection> {
        let (venue, permit, call) = (self.venue, &self.permit, &self.call);
        let (timestamp_ms, nonce) = self.clock_and_nonce(trail).await?;
        venue
            .sign(
                call,
                permit,
                SignContext {
                    credential: &self.account.credential,
                    timestamp_ms,
                    recv_window_ms: self.account.settings.recv_window_ms,
                    nonce,
                },
            )
            .map_err(|error| {
                tracing::error!(request_id = %trail.id, %error, "signing failed");
                Rejection::Internal
            })
    }

    /// Builds and signs the call as the venue's WebSocket message, sends it on the
    /// connection's link and waits for the venue's reply to it.
    async fn send_on_stream(
        &self,
        app: &App,
        route: &super::StreamRoute,
        trail: &Trail,
    ) -> Result<Result<crate::upstream::Answer, crate::upstream::UpstreamError>, Rejection> {
        let streams = self.venue.streams().ok_or(Rejection::Internal)?;
        // Open first: a venue whose messages carry its WebSocket token gets it as
        // the link opens. Nothing was sent if it does not.
        if let Err(error) = route.link.open().await {
            return Ok(Err(error));
        }
        let link_token = route.link.token();
        let (timestamp_ms, nonce) = self.clock_and_nonce(trail).await?;
        let id = route.link.next_id();
        let text = streams
            .build(
                route.method,
                &self.call,
                &self.permit,
                &route.carried,
                SignContext {
                    credential: &self.account.credential,
                    timestamp_ms,
                    recv_window_ms: self.account.settings.recv_window_ms,
                    nonce,
                },
                link_token.as_deref().map(String::as_str),
                id,
            )
            .map_err(|error| {
                tracing::error!(request_id = %trail.id, %error, "signing failed");
                Rejection::Internal
            })?;
        let answer = route.link.call(id, text).await;
        if let Ok(answer) = &answer
            && streams.link_token_refused(&answer.body)
        {
            // The account's token went stale: the next link asks for a fresh one, and
            // this one ends, so the bot's client reconnects.
            tracing::warn!(account = %self.account.settings.name, "the exchange refused keyward's WebSocket token; the stream is reopened with a new one");
            app.streams
                .listen_keys
                .forget_real(&self.account.settings.name)
                .await;
            route.link.close().await;
        }
        Ok(answer)
    }

    /// keyward's clock as the exchange keeps it, and the next nonce where the venue
    /// takes one.
    async fn clock_and_nonce(&self, trail: &Trail) -> Result<(u64, u64), Rejection> {
        let account = &self.account;
        let nonce = if self.venue.uses_nonce() {
            account.state.next_nonce().await.map_err(|error| {
                tracing::error!(request_id = %trail.id, %error, "no nonce");
                match error {
                    crate::nonce::NonceError::SharedUnavailable => Rejection::StateUnavailable,
                    _ => Rejection::Internal,
                }
            })?
        } else {
            0
        };
        // Read after the nonce: a shared draw takes a round trip.
        let timestamp_ms = account.state.exchange_now_ms(SystemTime::now());
        Ok((timestamp_ms, nonce))
    }

    /// Signs and sends a recorded request, records the exchange's answer (or failure)
    /// and settles the budgets with it.
    async fn forward(&self, app: &App, trail: &mut Trail) -> Result<Response<Body>, Rejection> {
        let (runtime, venue, permit, call) = (&self.account, self.venue, &self.permit, &self.call);
        let account = &runtime.settings;
        let sent = Instant::now();
        let result = match &self.via {
            super::Via::Http => {
                let outbound = self.sign(trail).await?;
                runtime.upstream.send(outbound).await
            }
            super::Via::Stream(route) => self.send_on_stream(app, route, trail).await?,
        };
        let refused = result
            .as_ref()
            .is_ok_and(|answer| venue.refused_outright(answer.status, &answer.body));
        let venue_name = account.venue.name();
        match &result {
            Ok(_) => app
                .metrics
                .upstream(venue_name, &account.name, sent.elapsed()),
            Err(error) => app
                .metrics
                .upstream_error(venue_name, &account.name, error.reason()),
        }
        runtime
            .state
            .exchange_answered(result.is_ok(), SystemTime::now());
        trail.upstream_elapsed = Some(sent.elapsed());
        let outcome = match &result {
            Ok(answer) => venue.outcome(call, answer.status, &answer.body),
            // Never sent: nothing was placed.
            Err(
                crate::upstream::UpstreamError::Unavailable
                | crate::upstream::UpstreamError::LoginRefused,
            ) => {
                let mut outcome =
                    keyward_venues::Outcome::all(call, &keyward_venues::LegResult::Rejected);
                outcome.cancelled = Some(vec![false; call.refs.cancels.len()]);
                outcome
            }
            Err(_) => keyward_venues::Outcome::all(call, &keyward_venues::LegResult::Unknown),
        };
        let succeeded = result
            .as_ref()
            .is_ok_and(|answer| answer.status.is_success() && !refused);
        let (orders, shared_settlement) = self
            .spending
            .settle(app, trail, permit, call, &outcome, succeeded);
        if let Some(shared) = &app.shared
            && (shared_settlement.is_some() || self.spending.shared_open)
        {
            // Queued before the bot is answered: a replica its next request goes to
            // waits for it.
            shared
                .settle_orders(&account.name, &trail.id, shared_settlement.as_ref())
                .await;
        }
        let record = OutcomeRecord {
            ts: audit::timestamp(SystemTime::now()),
            event: "outcome",
            request_id: &trail.id,
            upstream_status: result.as_ref().ok().map(|a| a.status.as_u16()),
            refused,
            error: result.as_ref().err().map(|e| e.reason()),
            upstream_ms: millis(sent.elapsed()),
            total_ms: millis(trail.started.elapsed()),
            orders,
        };
        if let Err(error) = app.audit.write(&record) {
            app.metrics.audit_failure();
            tracing::error!(request_id = %trail.id, %error, "outcome record not written");
        }
        match result {
            Ok(answer) => {
                let backoff = app.exchange.observe(
                    account,
                    venue,
                    &answer,
                    SystemTime::now(),
                    Instant::now(),
                );
                if let (Some(backoff), Some(shared)) = (&backoff, &app.shared) {
                    shared.pause(&account.name, backoff.retry_after, backoff.banned);
                }
                if let Some(backoff) = backoff.filter(|b| b.banned) {
                    // A ban concerns every bot, not this request: keyward answers for it.
                    return Err(Rejection::ExchangeBackoff {
                        retry_after: backoff.retry_after,
                        banned: true,
                    });
                }
                let decision = if permit.shadow_denial().is_some() {
                    "shadow-allow"
                } else {
                    "allow"
                };
                count(app, trail, decision, "ok", answer.status);
                let mut response = Response::new(Full::new(answer.body));
                *response.status_mut() = answer.status;
                *response.headers_mut() = answer.headers;
                if let Ok(value) = HeaderValue::from_str(&trail.id) {
                    response.headers_mut().insert("x-keyward-request-id", value);
                }
                Ok(response)
            }
            Err(error) => {
                tracing::warn!(request_id = %trail.id, reason = error.reason(), "upstream failed");
                Err(Rejection::Upstream(error))
            }
        }
    }
}

/// Dry-run mode: answers with what would have been sent, as `keyward explain` shows
/// it. Nothing is signed: a real signature (Binance's sits in the body), the API key,
/// the OKX passphrase or a Coinbase JWT in the answer would be a credential handed to
/// whoever holds the token, usable straight at the exchange. Every credential is a
/// placeholder and the signature is withheld.
pub(super) fn dry_run(
    app: &App,
    trail: &Trail,
    admitted: &Admitted<'_>,
    permit: &Permit,
    call: &ParsedCall,
) -> Response<Body> {
    let (account, venue) = (admitted.account, admitted.venue);
    let preview = venue.preview(call, account.recv_window_ms);
    let path = preview.path_and_query.split('?').next().unwrap_or_default();
    let url = format!(
        "{}{}",
        crate::upstream::base_for(account, path)
            .to_string()
            .trim_end_matches('/'),
        preview.path_and_query
    );
    let headers: serde_json::Map<String, serde_json::Value> = preview
        .headers
        .iter()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), serde_json::Value::String(value.to_owned())))
        .collect();
    let body = serde_json::json!({
        "keyward": "dry-run: nothing was sent",
        "request_id": trail.id,
        "bot": permit.bot(),
        "would_send": {
            "method": preview.method.as_str(),
            "url": url,
            "headers": headers,
            "body": preview.body,
            "signature": "withheld: a dry run shows placeholders for every credential and never signs",
        },
    });
    count(app, trail, "dry-run", "ok", StatusCode::OK);
    json_response(StatusCode::OK, &trail.id, body.to_string().into_bytes())
}

/// keyward's own answer when the bot asks the venue about its API key (the venue
/// says which requests those are): what the bot's policy lets it do, never what the
/// account's real key can.
pub(super) fn key_answer(
    trail: &Trail,
    admitted: &Admitted<'_>,
    call: &ParsedCall,
) -> Option<Response<Body>> {
    // Every request passes here: ask the venue first, build the view only for the
    // rare request it answers itself.
    if !admitted.venue.answered_by_keyward(call.endpoint) {
        return None;
    }
    let bot = admitted.bot?;
    let mut classes: Vec<keyward_policy::EndpointClass> = bot
        .grants()
        .iter()
        .map(|grant| grant.endpoint.class)
        .collect();
    classes.sort_unstable_by_key(|class| class.name());
    classes.dedup();
    let symbols: Vec<&str> = bot.symbols().into_iter().map(|s| s.as_str()).collect();
    let now = SystemTime::now();
    let expires_at = audit::timestamp(bot.expires());
    let days_left = bot
        .expires()
        .duration_since(now)
        .map_or(0, |left| left.as_secs() / 86_400);
    let view = keyward_venues::KeyView {
        bot: bot.name(),
        classes: &classes,
        symbols: &symbols,
        expires_at: &expires_at,
        days_left,
        now_ms: now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, millis),
    };
    let (content_type, body) = admitted.venue.key_answer(call, &view)?;
    let mut response = json_response(StatusCode::OK, &trail.id, body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Some(response)
}

/// keyward's answer to a listenKey request (Binance USDⓈ-M): a key of its own for
/// the bot, created, kept alive or closed, in the venue's answer shape. `None` for
/// every other request.
pub(super) fn listen_key_answer(
    app: &App,
    trail: &Trail,
    admitted: &Admitted<'_>,
    call: &ParsedCall,
    parts: &http::request::Parts,
) -> Option<Response<Body>> {
    // Every request passes here too: only the venue's few self-answered
    // endpoints are looked at further.
    if !admitted.venue.answered_by_keyward(call.endpoint) {
        return None;
    }
    let streams = admitted.venue.streams()?;
    let op = streams.listen_key_op(call.endpoint.key)?;
    let bot = admitted.bot?;
    // The token the bot asked with, wherever it presented it.
    let token = crate::decide::presented_token(&parts.headers)
        .ok()
        .flatten()
        .map(|(token, _)| token)?;
    let minted = app.streams.listen_keys.answer(
        op,
        (bot.name(), &admitted.account.name, token),
        streams.minted_validity(),
    );
    let Ok(key) = minted else {
        tracing::error!(request_id = %trail.id, "no random key could be made");
        let (_, body) = admitted.venue.refusal(&Rejection::Internal.refusal());
        return Some(json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &trail.id,
            body,
        ));
    };
    let (status, body) = streams.minted_answer(op, key.as_deref());
    Some(json_response(status, &trail.id, body))
}

fn json_response(status: StatusCode, id: &str, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-keyward-request-id", value);
    }
    response
}
