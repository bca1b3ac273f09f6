//! The request lifecycle, in order: framing verdict, front checks, authenticate,
//! route and authorize the endpoint (all on the head), read the body under its caps,
//! parse, authorize the intent, rate-limit, write the audit record, then sign and
//! forward (or, in dry-run mode, answer with what would have been sent).
//!
//! Every refusal goes through one place (`refuse`) that renders it in the venue's
//! envelope with `x-keyward-error`, records it, and counts it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use keyward_policy::{Denied, Mode, Notional, Permit};
use keyward_venues::{ParsedCall, SignContext, VenueId, binance};

use crate::account::AccountRuntime;
use crate::app::{App, Snapshot};
use crate::audit::{self, Decision, OutcomeRecord, RequestRecord};
use crate::config::Limits;
use crate::decide::{self, Admitted};
use crate::error::Rejection;
use crate::front::{FrontError, Head};
use crate::guard::{Verdict, Verdicts};
use crate::identity::Transport;
use crate::metrics::Answered;

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
}

/// The response body type.
pub type Body = Full<Bytes>;

/// Handles one request; never fails (every failure is an answer).
pub async fn handle(
    app: Arc<App>,
    conn: Arc<ConnInfo>,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let mut pending = Pending {
        app: &app,
        conn: &conn,
        trail: Trail {
            id: app.request_id(),
            started,
            method: request.method().clone(),
            path: String::new(),
            bot: None,
            account: None,
            venue: None,
            mode: None,
            recorded: false,
            upstream_elapsed: None,
            symbols: Vec::new(),
            legs: Vec::new(),
            cancels: Vec::new(),
        },
        answered: false,
    };
    // One snapshot for the whole request: a reload meanwhile does not touch it.
    let snapshot = app.snapshot();
    let (parts, body) = request.into_parts();
    let mut body = Some(body);
    match serve(
        &app,
        &snapshot,
        &conn,
        &parts,
        &mut body,
        &mut pending.trail,
    )
    .await
    {
        Ok(Step::Answered(response)) => {
            pending.answered = true;
            response
        }
        Ok(Step::Forward(committed)) => {
            // Recorded and about to be signed: from here the request runs to its end
            // in a task of its own, even if the bot goes away meanwhile (hyper drops
            // this future when the connection or the HTTP/2 stream is gone). Its
            // outcome is recorded, its budgets and open-order room settled and its
            // freeze pass held until the exchange has answered.
            pending.answered = true;
            let trail = pending.trail.clone();
            let forwarding = app.forwards.enter();
            let run = committed.run(app.clone(), snapshot.clone(), conn.clone(), trail);
            let job = tokio::spawn(async move {
                let response = run.await;
                drop(forwarding);
                response
            });
            match job.await {
                Ok(response) => response,
                Err(_) => refuse(
                    &app,
                    &conn,
                    &pending.trail,
                    pending.trail.venue,
                    &Rejection::Internal,
                ),
            }
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
            let mut response = refuse(&app, &conn, trail, envelope, &rejection);
            pending.answered = true;
            trip_breaker(&app, &snapshot, trail, &rejection);
            // A client that asked `Expect: 100-continue` waits for leave to send its
            // body; reading the body would give that leave (hyper answers 100 when
            // the body is first read) for a request already refused. It gets the
            // refusal instead, and the connection closes, since whether the body
            // still comes after it cannot be known.
            let awaits_continue = parts.headers.contains_key(header::EXPECT);
            match body {
                Some(_) if awaits_continue && !conn.http2 => {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Some(_) if awaits_continue => {}
                Some(unread) if !rejection.closes_connection() => {
                    drain(&snapshot, &parts.headers, unread).await;
                }
                _ => {}
            }
            response
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
        if self.answered || self.trail.recorded {
            return;
        }
        record_refusal(self.app, self.conn, &self.trail, "client_gone", None);
        count(self.app, &self.trail, "deny", "client_gone");
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

/// A request that passed every check and has its `request` record: what signing
/// and forwarding it needs, owned, so it can finish without the connection.
struct Committed {
    account: Arc<AccountRuntime>,
    venue: &'static dyn keyward_venues::Venue,
    permit: Permit,
    call: ParsedCall,
    spending: Spending,
    pass: Option<crate::freeze::Pass>,
}

impl Committed {
    async fn run(
        self: Box<Self>,
        app: Arc<App>,
        snapshot: Arc<Snapshot>,
        conn: Arc<ConnInfo>,
        mut trail: Trail,
    ) -> Response<Body> {
        let Self {
            account,
            venue,
            permit,
            call,
            spending,
            pass,
        } = *self;
        let result = forward(&app, &mut trail, &account, venue, &permit, &call, &spending).await;
        if let (Err(rejection), None) = (&result, trail.upstream_elapsed) {
            // Refused before anything was sent (keyward's own fault): give it all back,
            // and say so in the outcome record the `request` record is waiting for.
            spending.release(&app, &trail, &permit);
            not_sent(&app, &trail, &permit, &call, &spending, rejection);
        }
        drop(pass);
        match result {
            Ok(response) => response,
            Err(rejection) => {
                let response = refuse(&app, &conn, &trail, Some(venue.id()), &rejection);
                trip_breaker(&app, &snapshot, &trail, &rejection);
                response
            }
        }
    }
}

/// The outcome record of a recorded request that keyward failed to send (a signing
/// or nonce failure): nothing reached the exchange, every order is given back.
fn not_sent(
    app: &App,
    trail: &Trail,
    permit: &Permit,
    call: &ParsedCall,
    spending: &Spending,
    rejection: &Rejection,
) {
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

/// Reads and discards the body of a request refused before its body was needed, so
/// that the answer does not overtake a client still sending: over HTTP/2 an answer to
/// an unread body ends with RST_STREAM, which some clients (curl among them) report
/// as a failure instead of the refusal. Bounded by the body size cap and deadline.
async fn drain(snapshot: &Snapshot, headers: &HeaderMap, body: Incoming) {
    let _ = collect_capped(&snapshot.config.server.limits, headers, body).await;
}

/// What is known about a request so far, for its audit record.
#[derive(Clone)]
struct Trail {
    id: String,
    started: Instant,
    method: http::Method,
    path: String,
    bot: Option<String>,
    account: Option<String>,
    venue: Option<VenueId>,
    mode: Option<Mode>,
    /// The `request` record is written (so a later refusal does not write another).
    recorded: bool,
    /// How long the exchange took, once it was asked.
    upstream_elapsed: Option<std::time::Duration>,
    /// What the request was found to do once parsed, so that a refusal records it
    /// too: the symbols it names, its orders and the orders it names to cancel.
    symbols: Vec<String>,
    legs: Vec<crate::orders::LegRecord>,
    cancels: Vec<crate::orders::RefRecord>,
}

impl Trail {
    /// Notes what a parsed (and, once resolved, judged) call does.
    fn note(&mut self, call: &ParsedCall) {
        self.symbols = call
            .intent
            .symbols
            .iter()
            .chain(call.intent.orders.iter().map(|o| &o.symbol))
            .filter(|s| **s != keyward_venues::unresolved_symbol())
            .map(|s| s.as_str().to_owned())
            .collect();
        self.symbols.sort();
        self.symbols.dedup();
        self.legs = legs_of(call);
        self.cancels = call
            .refs
            .cancels
            .iter()
            .map(crate::orders::ref_record)
            .collect();
    }
}

/// Each order of `call` as the audit log records it.
fn legs_of(call: &ParsedCall) -> Vec<crate::orders::LegRecord> {
    call.intent
        .orders
        .iter()
        .enumerate()
        .map(|(index, order)| {
            let client_id = call.refs.client_id_of(index);
            let amends = call.refs.amend_of(index).map(|a| (&a.order, a.kind));
            crate::orders::leg_record(order, client_id, amends)
        })
        .collect()
}

async fn serve(
    app: &App,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    parts: &http::request::Parts,
    body: &mut Option<Incoming>,
    trail: &mut Trail,
) -> Result<Step, Rejection> {
    let padded_credential = match conn.verdicts.as_ref().map(Verdicts::next) {
        Some(Verdict::Refuse(reason)) => {
            trail.path = audit::recorded(path_only(&request_target(&parts.uri, conn.http2)));
            return Err(reason.into());
        }
        Some(Verdict::Clean { padded_credential }) => padded_credential,
        None => false,
    };
    let target_text = request_target(&parts.uri, conn.http2);
    let authority = conn
        .http2
        .then(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .flatten();
    let method = parts.method.clone();
    let head = Head {
        method: &method,
        target: &target_text,
        authority: authority.as_deref(),
        headers: &parts.headers,
    };
    let config = &snapshot.config;
    let (bot, target) =
        match decide::authenticate(config, &snapshot.hosts, &head, SystemTime::now()) {
            Ok(authenticated) => authenticated,
            Err(rejection) if failed_authentication(&rejection) => {
                trail.path = audit::recorded(path_only(&target_text));
                return Err(throttle_failure(app, conn, rejection));
            }
            Err(rejection) => {
                // Refused before the target was vetted: its path is recorded as sent,
                // unless it carries a token; never its query, which may hold the bot's
                // own signature.
                trail.path = audit::recorded(path_only(&target_text));
                return Err(rejection);
            }
        };
    trail.path = target.path.to_owned();
    if padded_credential {
        // The token matched only because the HTTP parser trimmed it; tokens match
        // byte for byte or not at all.
        return Err(throttle_failure(app, conn, Denied::AuthInvalid.into()));
    }
    if let Some(bot) = bot {
        trail.bot = Some(bot.name().to_owned());
        if let Some(binding) = config.bindings.get(bot.name()) {
            crate::identity::check_binding(bot.name(), binding, &conn.transport)?;
        }
        trail.mode = Some(bot.mode());
        if let Some(account) = config.account_of(bot) {
            trail.account = Some(account.name.clone());
            trail.venue = Some(account.venue);
        }
    }
    let admitted = match bot {
        Some(bot) => decide::admit_bot(config, bot, &method, &target)?,
        None => decide::admit_public(config, &method, &target)?,
    };
    if trail.account.as_deref() != Some(admitted.account.name.as_str()) {
        trail.account = Some(admitted.account.name.clone());
    }
    trail.venue = Some(admitted.account.venue);
    // Everything signing and sending will need, found once: the snapshot holds a
    // runtime for every account of its configuration.
    let runtime = snapshot
        .accounts
        .get(admitted.account.name.as_str())
        .cloned()
        .ok_or(Rejection::Internal)?;

    let body = read_body(
        snapshot,
        conn,
        &parts.headers,
        body.take().ok_or(Rejection::Internal)?,
    )
    .await?;
    let mut call = decide::parse(&admitted, &target, &parts.headers, &body)?;
    trail.note(&call);
    if let Some(bot) = admitted.bot {
        // What an amend or a cancel does is decided by the order it names: the
        // request is judged against keyward's record of that order.
        let account = &admitted.account.name;
        let lookup = |reference: &keyward_venues::OrderRef| {
            app.orders.lookup(account, bot.name(), reference)
        };
        match decide::resolve_orders(&mut call, lookup) {
            // Not while frozen: the look-up is signed, and a frozen account signs
            // nothing but cancels.
            Err(Rejection::Order(crate::orders::OrderError::Unknown(_)))
                if bot.adopt_orders()
                    && bot.mode() != Mode::DryRun
                    && app.freeze.frozen(account).is_none() =>
            {
                adopt_orders(app, snapshot, &admitted, bot, &call, &trail.id).await;
                decide::resolve_orders(&mut call, lookup)?;
            }
            resolved => resolved?,
        }
        trail.note(&call);
    }
    let permit = authorize_with_prices(app, snapshot, &admitted, &call).await?;
    // The bot's own limits first: a bot runs out of its budget long before it can
    // exhaust the exchange's, which every bot shares.
    snapshot.limits.check(&permit)?;
    let forwarded = permit.mode() != Mode::DryRun;
    // Held until the exchange has answered, so a freeze can wait for this request.
    let pass = if forwarded {
        Some(app.freeze.pass().await)
    } else {
        None
    };
    if forwarded
        && admitted.endpoint.class != keyward_policy::EndpointClass::Cancel
        && admitted.endpoint.security != keyward_venues::Security::Public
        && let Some(frozen) = app.freeze.frozen(&admitted.account.name)
    {
        return Err(Rejection::Frozen {
            since: frozen.since,
            by: frozen.by,
        });
    }
    let spending = spend_budgets(app, snapshot, trail, &call, &permit)?;
    if forwarded {
        // Charged at its weight before it is sent, from the bot's share.
        let share = admitted.bot.map(|bot| {
            let share = snapshot
                .exchange_shares
                .get(bot.name())
                .copied()
                .unwrap_or(crate::app::DEFAULT_EXCHANGE_SHARE);
            (bot.name(), share)
        });
        let charge = crate::exchange::Charge {
            bot: share,
            weight: admitted.venue.weight(&call),
            orders: permit.orders(),
        };
        let admitted_by_exchange = app.exchange.admit(
            admitted.account,
            admitted.venue,
            charge,
            SystemTime::now(),
            Instant::now(),
        );
        if let Err(rejection) = admitted_by_exchange {
            spending.release(app, trail, &permit);
            return Err(rejection);
        }
    }
    let shadow_denial = permit
        .shadow_denial()
        .cloned()
        .or(spending.would_deny.clone());
    let decision = match (permit.mode(), &shadow_denial) {
        (Mode::DryRun, _) => Decision::DryRun,
        (_, Some(_)) => Decision::ShadowAllow,
        (_, None) => Decision::Allow,
    };
    if let Err(rejection) = record_request(
        app,
        conn,
        trail,
        &call,
        &permit,
        decision,
        shadow_denial.as_ref(),
    ) {
        spending.release(app, trail, &permit);
        return Err(rejection);
    }
    trail.recorded = true;
    // A bot with a band needs a price for every order: keep the prices of the
    // symbols it trades fresh in the background, once an order of it is on its way.
    if forwarded
        && let Some(bot) = admitted.bot
        && bot.price_band().is_some()
    {
        let symbols: Vec<keyward_policy::Symbol> = call
            .intent
            .orders
            .iter()
            .filter(|o| bot.allows_symbol(&o.symbol))
            .map(|o| o.symbol.clone())
            .collect();
        app.prices.touch(&admitted.account.name, &symbols);
    }
    if !forwarded {
        return Ok(Step::Answered(dry_run(
            app,
            trail,
            admitted.account,
            admitted.venue,
            &permit,
            &call,
        )));
    }
    Ok(Step::Forward(Box::new(Committed {
        account: runtime,
        venue: admitted.venue,
        permit,
        call,
        spending,
        pass,
    })))
}

/// Authorizes against cached reference prices and, when the answer is that a price
/// is missing (and only then: a request refused for its symbol never causes a fetch),
/// fetches fresh ones and decides again.
async fn authorize_with_prices(
    app: &App,
    snapshot: &Snapshot,
    admitted: &Admitted<'_>,
    call: &ParsedCall,
) -> Result<Permit, Rejection> {
    let config = &snapshot.config;
    // Only symbols on the bot's own list are ever asked for: a price fetch spends
    // exchange weight every bot shares, and a refused request must not cause one.
    let symbols: Vec<keyward_policy::Symbol> = match admitted.bot {
        Some(bot) => call
            .intent
            .orders
            .iter()
            .filter(|o| bot.allows_symbol(&o.symbol))
            .map(|o| o.symbol.clone())
            .collect(),
        None => Vec::new(),
    };
    let account = &admitted.account.name;
    let cached = app
        .prices
        .cached(account, admitted.account.reference_max_age, &symbols);
    let first = decide::authorize(config, admitted, call, &cached);
    let wants_prices = |decided: &Result<Permit, Rejection>| {
        let denied = match decided {
            Err(Rejection::Denied(denied)) => Some(denied),
            Ok(permit) => permit.shadow_denial(),
            Err(_) => None,
        };
        matches!(
            denied,
            Some(Denied::ReferenceUnavailable { .. } | Denied::NotionalUnbounded { .. })
        )
    };
    let sends = admitted.bot.is_some_and(|b| b.mode() != Mode::DryRun);
    if symbols.is_empty() || !sends || !wants_prices(&first) {
        return first;
    }
    let fresh = crate::housekeeping::fresh_prices(app, snapshot, account, &symbols).await;
    decide::authorize(config, admitted, call, &fresh)
}

/// What a forwarded request took from the budgets and held in the order record, to
/// be settled once the exchange has answered.
#[derive(Debug, Default)]
struct Spending {
    /// Spent from the rolling budgets.
    spent: bool,
    /// Open-order room and client ids held in the order record.
    held: bool,
    /// Open-order room reserved.
    reserved: u32,
    /// In shadow mode, the budget refusal enforce mode would have returned.
    would_deny: Option<Denied>,
}

impl Spending {
    /// Gives everything back: the request was never sent.
    fn release(&self, app: &App, trail: &Trail, permit: &Permit) {
        if self.spent {
            app.budgets.refund(&trail.id);
        }
        if let (true, Some(bot)) = (self.held, trail.bot.as_deref()) {
            app.orders
                .release(permit.account(), bot, &trail.id, self.reserved);
        }
    }

    /// Settles with what the exchange did: gives back to the budgets the orders the
    /// answer proves were not placed (every order of a request refused whole, a
    /// refused element of a batch, the failed half of a cancel-replace; nothing
    /// when in doubt), applies the answer to the order record, and returns what the
    /// outcome record says of it.
    fn settle(
        &self,
        app: &App,
        trail: &Trail,
        permit: &Permit,
        call: &ParsedCall,
        outcome: &keyward_venues::Outcome,
        succeeded: bool,
    ) -> audit::OrderOutcome {
        let mut refunded_notional = keyward_policy::Amount::ZERO;
        let mut refunded_orders = 0u32;
        for (index, result) in outcome.legs.iter().enumerate() {
            if *result == keyward_venues::LegResult::Rejected {
                refunded_notional = refunded_notional.saturating_add(permit.order_notional(index));
                refunded_orders += 1;
            }
        }
        if self.spent && refunded_orders > 0 {
            app.budgets
                .refund_part(&trail.id, refunded_notional, refunded_orders);
        }
        let settlement = settlement_of(call, outcome, succeeded);
        match trail.bot.as_deref() {
            Some(bot) => app.orders.settle(
                permit.account(),
                bot,
                &trail.id,
                if self.held { self.reserved } else { 0 },
                &settlement,
                SystemTime::now(),
            ),
            None => app.orders.observe(permit.account(), &settlement),
        }
        audit::OrderOutcome {
            results: outcome
                .legs
                .iter()
                .map(crate::orders::result_record)
                .collect(),
            cancelled: outcome.cancelled.clone(),
            closed: outcome
                .closed
                .iter()
                .map(|(symbol, id)| crate::orders::ClosedRecord {
                    symbol: symbol.as_ref().map(ToString::to_string),
                    id: id.clone(),
                })
                .collect(),
            closed_all: outcome.closed_all.iter().map(ToString::to_string).collect(),
            refunded_notional: self.spent.then(|| refunded_notional.to_string()),
            refunded_orders: self.spent.then_some(refunded_orders),
        }
    }
}

/// What a call and the exchange's answer did to the order record.
fn settlement_of(
    call: &ParsedCall,
    outcome: &keyward_venues::Outcome,
    succeeded: bool,
) -> crate::orders::Settlement {
    let legs = call
        .intent
        .orders
        .iter()
        .enumerate()
        .map(|(index, order)| crate::orders::Leg {
            order: order.clone(),
            client_id: call.refs.client_id_of(index).map(str::to_owned),
            amends: call.refs.amend_of(index).map(|a| (a.order.clone(), a.kind)),
            result: outcome
                .legs
                .get(index)
                .cloned()
                .unwrap_or(keyward_venues::LegResult::Unknown),
        })
        .collect();
    let cancels = call
        .refs
        .cancels
        .iter()
        .enumerate()
        .map(|(index, reference)| {
            let done = outcome
                .cancelled
                .as_ref()
                .map(|done| done.get(index).copied().unwrap_or(false));
            (reference.clone(), done)
        })
        .collect();
    crate::orders::Settlement {
        legs,
        cancels,
        succeeded,
        closed: outcome.closed.clone(),
        closed_all: outcome.closed_all.clone(),
        listed: outcome.listed.clone(),
    }
}

/// For a bot with `adopt_orders`: looks up at the exchange, with a signed read of
/// keyward's own, each order the request names that keyward has no record of, and
/// takes as the bot's those that are open on one of its symbols (orders placed before
/// keyward). At most [`crate::app::ADOPTIONS_PER_MINUTE`] look-ups per bot: each spends exchange
/// weight every bot of the account shares, and a leaked token must not spend it.
async fn adopt_orders(
    app: &App,
    snapshot: &Snapshot,
    admitted: &Admitted<'_>,
    bot: &keyward_policy::BotPolicy,
    call: &ParsedCall,
    request_id: &str,
) {
    let account = &admitted.account.name;
    for reference in call.refs.named() {
        let unknown = matches!(
            app.orders.lookup(account, bot.name(), reference),
            Err(crate::orders::OrderError::Unknown(_))
        );
        if !unknown {
            continue;
        }
        let Some(lookup) = admitted.venue.order_lookup(reference) else {
            continue;
        };
        if !app.adoptions.allow(bot.name(), Instant::now()) {
            tracing::warn!(
                bot = bot.name(),
                "order look-ups for adoption are throttled"
            );
            return;
        }
        let answer = match crate::housekeeping::look_up(app, snapshot, account, &lookup).await {
            Ok((_, answer)) if answer.status.is_success() => answer,
            _ => continue,
        };
        let Some(found) = admitted.venue.looked_up_order(&answer.body) else {
            continue;
        };
        let matches = reference.symbol.as_ref().is_none_or(|s| *s == found.symbol)
            && reference.id.as_ref().is_none_or(|id| *id == found.id)
            && reference
                .client_id
                .as_ref()
                .is_none_or(|c| found.client_id.as_ref() == Some(c));
        if !(matches && found.open && bot.allows_symbol(&found.symbol)) {
            continue;
        }
        tracing::info!(
            bot = bot.name(),
            %account,
            symbol = %found.symbol,
            order = %found.id,
            "order adopted: looked up at the exchange and taken as the bot's"
        );
        app.orders.adopt(
            account,
            crate::orders::Record {
                bot: Arc::from(bot.name()),
                symbol: found.symbol,
                side: found.side,
                order_type: found.order_type,
                execution: found.execution,
                size: found.size,
                price: found.price,
                trigger: found.trigger,
                reduce_only: false,
                id: Some(found.id),
                client_id: found.client_id,
                list_id: None,
                list_client_id: None,
                state: crate::orders::State::Open,
                placed: SystemTime::now(),
                request_id: Arc::from(request_id),
            },
        );
    }
}

/// Spends the rolling budgets, and holds open-order room and the client ids of a
/// forwarded request's new orders.
fn spend_budgets(
    app: &App,
    snapshot: &Snapshot,
    trail: &Trail,
    call: &ParsedCall,
    permit: &Permit,
) -> Result<Spending, Rejection> {
    let mut spending = Spending::default();
    let Some(bot) = trail.bot.as_deref() else {
        return Ok(spending);
    };
    if permit.mode() == Mode::DryRun {
        return Ok(spending);
    }
    let enforce = permit.mode() == Mode::Enforce;
    let account = snapshot.config.accounts.get(permit.account());
    let new_orders = call.intent.orders.iter().filter(|o| !o.amend).count();
    let new_orders = u32::try_from(new_orders).unwrap_or(u32::MAX);
    let client_ids: Vec<&str> = call
        .refs
        .client_ids
        .iter()
        .map(|(_, id)| id.as_str())
        .collect();
    if new_orders > 0 || !client_ids.is_empty() {
        let limits = (
            snapshot
                .config
                .policy
                .bot(bot)
                .and_then(|b| b.budget().max_open_orders),
            account.and_then(|a| a.budget.max_open_orders),
        );
        let window = account.map_or(std::time::Duration::ZERO, |a| a.client_order_id_window);
        let held = app.orders.reserve(
            permit.account(),
            bot,
            &trail.id,
            &client_ids,
            new_orders,
            limits,
            (SystemTime::now(), window),
            enforce,
        );
        match held {
            Ok(would) => {
                spending.held = true;
                spending.reserved = new_orders;
                spending.would_deny = would;
            }
            Err(crate::orders::ReserveError::Order(error)) => return Err(error.into()),
            Err(crate::orders::ReserveError::Denied(denied)) => return Err(denied.into()),
        }
    }
    let Notional::Bounded(notional) = permit.notional() else {
        return Ok(spending);
    };
    if permit.orders() == 0 {
        return Ok(spending);
    }
    let scopes = crate::budgets::scopes_of(bot, permit.account());
    let spend = keyward_policy::Spend {
        id: Arc::from(trail.id.as_str()),
        at: SystemTime::now(),
        notional,
        orders: permit.orders(),
    };
    match app.budgets.spend(&scopes, &spend, enforce) {
        Ok(would) => {
            spending.spent = true;
            spending.would_deny = would.or(spending.would_deny.take());
        }
        Err(denied) => {
            spending.release(app, trail, permit);
            return Err(denied.into());
        }
    }
    Ok(spending)
}

/// A wrong, revoked or expired token (not a missing one, which is no guess).
fn failed_authentication(rejection: &Rejection) -> bool {
    matches!(
        rejection,
        Rejection::Denied(Denied::AuthInvalid | Denied::AuthRevoked | Denied::AuthExpired)
    )
}

/// Counts a failed authentication against its source: within the source's
/// `server.auth_failure_rate` it stays a 401, beyond it the answer is 429 with
/// `Retry-After`. Only failures count
/// and only failures are throttled, so a flood of wrong tokens never locks out a bot
/// whose token is right, from this source or any other.
fn throttle_failure(app: &App, conn: &ConnInfo, rejection: Rejection) -> Rejection {
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

/// A request target without its query.
fn path_only(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

/// The target as the front must see it: HTTP/1 absolute-form stays absolute (and is
/// refused); HTTP/2's `:path` is taken alone, its `:authority` checked separately.
fn request_target(uri: &http::Uri, http2: bool) -> String {
    if http2 {
        uri.path_and_query()
            .map_or_else(String::new, |p| p.as_str().to_owned())
    } else {
        uri.to_string()
    }
}

async fn read_body(
    snapshot: &Snapshot,
    conn: &ConnInfo,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, Rejection> {
    let collected = collect_capped(&snapshot.config.server.limits, headers, body).await?;
    if collected.trailers().is_some() {
        return Err(FrontError::Trailers.into());
    }
    // The guard may have lost trust in the framing while the body streamed in.
    if let Some(reason) = conn.verdicts.as_ref().and_then(Verdicts::poisoned) {
        return Err(reason.into());
    }
    Ok(collected.to_bytes())
}

/// The whole body under the size cap and the body deadline; a declared size over the
/// cap is refused without reading.
async fn collect_capped(
    limits: &Limits,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<http_body_util::Collected<Bytes>, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(Rejection::BodyTooLarge(limits.max_body_bytes));
    }
    tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await
    .map_err(|_| Rejection::BodyTimeout)?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            Rejection::BodyTooLarge(limits.max_body_bytes)
        } else {
            FrontError::FramingAmbiguous.into()
        }
    })
}

fn record_request(
    app: &App,
    conn: &ConnInfo,
    trail: &Trail,
    call: &ParsedCall,
    permit: &Permit,
    decision: Decision,
    shadow_denial: Option<&Denied>,
) -> Result<(), Rejection> {
    let notional = audit::recorded_notional(permit);
    let record = RequestRecord {
        ts: audit::timestamp(SystemTime::now()),
        event: "request",
        request_id: &trail.id,
        peer: &conn.peer,
        transport: conn.transport.name(),
        client_cert: conn.transport.client_cert(),
        peer_cred: conn.transport.peer_cred(),
        http: if conn.http2 { "h2" } else { "h1" },
        bot: trail.bot.as_deref(),
        account: trail.account.as_deref(),
        venue: trail.venue.map(VenueId::name),
        method: trail.method.as_str(),
        path: &trail.path,
        symbols: call
            .intent
            .symbols
            .iter()
            .map(keyward_policy::Symbol::as_str)
            .collect(),
        orders: permit.orders(),
        notional,
        decision,
        reason: shadow_denial.map(Denied::reason),
        status: None,
        mode: trail.mode.map(Mode::name),
        stripped: &call.stripped,
        legs: &trail.legs,
        cancels: &trail.cancels,
    };
    app.audit.write(&record).map_err(|error| {
        app.metrics.audit_failure();
        tracing::error!(request_id = %trail.id, %error, "audit record not written; refusing the request");
        Rejection::AuditUnavailable
    })
}

/// Signs the validated call with the account's key.
fn sign(
    trail: &Trail,
    account: &AccountRuntime,
    venue: &'static dyn keyward_venues::Venue,
    permit: &Permit,
    call: &ParsedCall,
) -> Result<keyward_venues::Outbound, Rejection> {
    let timestamp_ms = account.state.exchange_now_ms(SystemTime::now());
    let nonce = if venue.uses_nonce() {
        account.state.next_nonce().map_err(|error| {
            tracing::error!(request_id = %trail.id, %error, "no nonce");
            Rejection::Internal
        })?
    } else {
        0
    };
    venue
        .sign(
            call,
            permit,
            SignContext {
                credential: &account.credential,
                timestamp_ms,
                recv_window_ms: account.settings.recv_window_ms,
                nonce,
            },
        )
        .map_err(|error| {
            tracing::error!(request_id = %trail.id, %error, "signing failed");
            Rejection::Internal
        })
}

/// Dry-run mode: answers with what would have been sent, as `keyward explain` shows
/// it. Nothing is signed: a real signature (Binance's sits in the body), the API key,
/// the OKX passphrase or a Coinbase JWT in the answer would be a credential handed to
/// whoever holds the token, usable straight at the exchange. Every credential is a
/// placeholder and the signature is withheld.
fn dry_run(
    app: &App,
    trail: &Trail,
    account: &crate::config::Account,
    venue: &'static dyn keyward_venues::Venue,
    permit: &Permit,
    call: &ParsedCall,
) -> Response<Body> {
    let preview = venue.preview(call, account.recv_window_ms);
    let url = format!(
        "{}{}",
        account.upstream.to_string().trim_end_matches('/'),
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
    count(app, trail, "dry-run", "ok");
    json_response(StatusCode::OK, &trail.id, body.to_string().into_bytes())
}

/// Signs and sends a recorded request, records the exchange's answer (or failure)
/// and settles the budgets with it.
#[allow(clippy::too_many_arguments)]
async fn forward(
    app: &App,
    trail: &mut Trail,
    runtime: &AccountRuntime,
    venue: &'static dyn keyward_venues::Venue,
    permit: &Permit,
    call: &ParsedCall,
    spending: &Spending,
) -> Result<Response<Body>, Rejection> {
    let account = &runtime.settings;
    let outbound = sign(trail, runtime, venue, permit, call)?;
    let sent = Instant::now();
    let result = runtime.upstream.send(outbound).await;
    let refused = result
        .as_ref()
        .is_ok_and(|answer| venue.refused_outright(answer.status, &answer.body));
    app.metrics.upstream(sent.elapsed());
    trail.upstream_elapsed = Some(sent.elapsed());
    let outcome = match &result {
        Ok(answer) => venue.outcome(call, answer.status, &answer.body),
        // Never sent: nothing was placed.
        Err(crate::upstream::UpstreamError::Unavailable) => {
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
    let orders = spending.settle(app, trail, permit, call, &outcome, succeeded);
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
            let backoff =
                app.exchange
                    .observe(account, venue, &answer, SystemTime::now(), Instant::now());
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
            count(app, trail, decision, "ok");
            let mut response = Response::new(Full::new(answer.body));
            *response.status_mut() = answer.status;
            *response.headers_mut() = answer.headers;
            if let Ok(value) = HeaderValue::from_str(&trail.id) {
                response.headers_mut().insert("x-keyward-request-id", value);
            }
            Ok(response)
        }
        Err(error) => {
            app.metrics.upstream_error(error.reason());
            tracing::warn!(request_id = %trail.id, reason = error.reason(), "upstream failed");
            Err(Rejection::Upstream(error))
        }
    }
}

/// Answers a refusal: venue envelope, `x-keyward-error`, `Retry-After` for rate
/// limits, `Connection: close` when the connection can no longer be trusted; then
/// records and counts it.
fn refuse(
    app: &App,
    conn: &ConnInfo,
    trail: &Trail,
    envelope: Option<VenueId>,
    rejection: &Rejection,
) -> Response<Body> {
    let status = rejection.status();
    let refusal = rejection.refusal();
    let (content_type, body) = match envelope {
        Some(venue) => venue.adapter().refusal(&refusal),
        None => binance::refusal_body(&refusal),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
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
    if !trail.recorded {
        record_refusal(app, conn, trail, rejection.reason(), Some(status.as_u16()));
    }
    // A flood of wrong tokens is throttled; its log lines would flood too.
    if rejection.caused_by_bot() && !matches!(rejection, Rejection::AuthThrottled { .. }) {
        tracing::info!(request_id = %trail.id, reason = rejection.reason(), status = status.as_u16(), "refused");
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
    count(app, trail, "deny", rejection.reason());
    response
}

/// Writes the `request` record of a refused request: `status` is what keyward
/// answered, `None` when the bot was gone before it could be answered.
fn record_refusal(
    app: &App,
    conn: &ConnInfo,
    trail: &Trail,
    reason: &'static str,
    status: Option<u16>,
) {
    // A refused method may be an extension method of the bot's making, a token in it.
    let method = audit::recorded(trail.method.as_str());
    let record = RequestRecord {
        ts: audit::timestamp(SystemTime::now()),
        event: "request",
        request_id: &trail.id,
        peer: &conn.peer,
        transport: conn.transport.name(),
        client_cert: conn.transport.client_cert(),
        peer_cred: conn.transport.peer_cred(),
        http: if conn.http2 { "h2" } else { "h1" },
        bot: trail.bot.as_deref(),
        account: trail.account.as_deref(),
        venue: trail.venue.map(VenueId::name),
        method: &method,
        path: &trail.path,
        symbols: trail.symbols.iter().map(String::as_str).collect(),
        orders: u32::try_from(trail.legs.len()).unwrap_or(u32::MAX),
        notional: None,
        decision: Decision::Deny,
        reason: Some(reason),
        status,
        mode: trail.mode.map(Mode::name),
        stripped: &[],
        legs: &trail.legs,
        cancels: &trail.cancels,
    };
    if app.audit.write(&record).is_err() {
        app.metrics.audit_failure();
        tracing::error!(request_id = %trail.id, "audit record of a refusal not written");
    }
}

/// Counts a policy refusal of an authenticated bot against its account's
/// `freeze_after_denials`; when that trips, freezes the account. A bot refused again
/// and again is a leaked token probing, or a bot gone wrong: either way, stop.
fn trip_breaker(app: &Arc<App>, snapshot: &Snapshot, trail: &Trail, rejection: &Rejection) {
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
    let by = format!("circuit breaker: bot {bot} was refused {limit} times");
    let account = account.to_owned();
    let app = app.clone();
    tokio::spawn(async move {
        if let Err((_, error)) = crate::killswitch::freeze(&app, Some(&account), false, &by).await {
            tracing::error!(%account, %error, "the circuit breaker could not persist the freeze");
        }
    });
}

fn count(app: &App, trail: &Trail, decision: &'static str, reason: &'static str) {
    app.metrics.request(Answered {
        bot: trail.bot.as_deref(),
        venue: trail.venue.map(VenueId::name),
        decision,
        reason,
        total: trail.started.elapsed(),
        upstream: trail.upstream_elapsed,
    });
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

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
