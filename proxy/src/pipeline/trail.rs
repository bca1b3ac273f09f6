//! What is known about a request as it goes, and the audit records and metrics
//! written from it: the `request` record of an admitted or a refused request.

use std::time::{Instant, SystemTime};

use keyward_policy::{Denied, Mode, Permit};
use keyward_venues::{ParsedCall, VenueId};

use super::body::path_only;
use super::{ConnInfo, Context};
use crate::app::App;
use crate::audit::{self, Decision, RequestRecord};
use crate::config::Config;
use crate::decide::{Admitted, Refused};
use crate::error::Rejection;
use crate::front::Target;
use crate::metrics::Answered;

/// What is known about a request so far, for its audit record.
#[derive(Clone)]
pub(super) struct Trail {
    pub(super) id: String,
    pub(super) started: Instant,
    pub(super) method: http::Method,
    /// The WebSocket method of a stream message (its REST twin is `method` and
    /// `path`).
    pub(super) stream_method: Option<&'static str>,
    pub(super) path: String,
    pub(super) bot: Option<String>,
    pub(super) account: Option<String>,
    pub(super) venue: Option<VenueId>,
    pub(super) mode: Option<Mode>,
    /// The decision the `request` record was written with, once it is (so that a
    /// later refusal writes no other, and an exchange failure after an allow is
    /// counted as the allow's outcome, not as a policy denial).
    pub(super) recorded: Option<&'static str>,
    /// How long the exchange took, once it was asked.
    pub(super) upstream_elapsed: Option<std::time::Duration>,
    /// What the request was found to do once parsed, so that a refusal records it
    /// too: the symbols it names, its orders and the orders it names to cancel.
    pub(super) symbols: Vec<String>,
    pub(super) legs: Vec<crate::orders::LegRecord>,
    pub(super) cancels: Vec<crate::orders::RefRecord>,
}

impl Trail {
    /// What is known of a request as it arrives.
    pub(super) fn new(
        id: String,
        started: Instant,
        method: http::Method,
        stream_method: Option<&'static str>,
    ) -> Self {
        Self {
            id,
            started,
            method,
            stream_method,
            path: String::new(),
            bot: None,
            account: None,
            venue: None,
            mode: None,
            recorded: None,
            upstream_elapsed: None,
            symbols: Vec::new(),
            legs: Vec::new(),
            cancels: Vec::new(),
        }
    }

    /// Notes what a parsed (and, once resolved, judged) call does.
    pub(super) fn note(&mut self, call: &ParsedCall) {
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

    /// Notes what admission learned of a request it admitted.
    pub(super) fn admitted(&mut self, admitted: &Admitted<'_>, target: &Target<'_>) {
        self.path = target.path.to_owned();
        if let Some(bot) = admitted.bot {
            self.bot = Some(bot.name().to_owned());
            self.mode = Some(bot.mode());
        }
        self.account = Some(admitted.account.name.clone());
        self.venue = Some(admitted.account.venue);
    }

    /// Notes what admission learned of a request it refused: the vetted path, or
    /// else the path as sent (never its query, which may hold the bot's own
    /// signature, and not at all if it carries a token); the bot, once its token was
    /// accepted; its mode and account once it also passed its binding.
    pub(super) fn refused(&mut self, refused: &Refused<'_, '_>, config: &Config, as_sent: &str) {
        self.path = match &refused.target {
            Some(target) => target.path.to_owned(),
            None => audit::recorded(path_only(as_sent)),
        };
        let Some(bot) = refused.bot else {
            return;
        };
        self.bot = Some(bot.name().to_owned());
        if refused.bound {
            self.mode = Some(bot.mode());
            if let Some(account) = config.account_of(bot) {
                self.account = Some(account.name.clone());
                self.venue = Some(account.venue);
            }
        }
    }
}

/// Each order of `call` as the audit log records it.
pub(super) fn legs_of(call: &ParsedCall) -> Vec<crate::orders::LegRecord> {
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

/// Writes the `request` record of a request about to be answered or sent: dry run,
/// shadow allow (with what enforce mode would have refused) or allow. A record that
/// cannot be written refuses the request: keyward sends nothing it cannot record.
pub(super) fn record_request(
    cx: Context<'_>,
    trail: &Trail,
    call: &ParsedCall,
    permit: &Permit,
    shadow_denial: Option<&Denied>,
) -> Result<&'static str, Rejection> {
    let (app, conn) = (cx.app, cx.conn);
    let (decision, name) = match (permit.mode(), shadow_denial) {
        (Mode::DryRun, _) => (Decision::DryRun, "dry-run"),
        (_, Some(_)) => (Decision::ShadowAllow, "shadow-allow"),
        (_, None) => (Decision::Allow, "allow"),
    };
    let notional = audit::recorded_notional(permit);
    let record = RequestRecord {
        method: trail.method.as_str(),
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
        ..request_record(conn, trail)
    };
    app.audit.write(&record).map(|()| name).map_err(|error| {
        app.metrics.audit_failure();
        tracing::error!(request_id = %trail.id, %error, "audit record not written; refusing the request");
        Rejection::AuditUnavailable
    })
}

/// Writes the `request` record of something keyward allowed and answered itself,
/// with nothing sent to the exchange: a WebSocket opened (`stream_opened`, 101; its
/// messages each have their own record), a stream session method.
pub(super) fn record_answered(
    cx: Context<'_>,
    trail: &Trail,
    reason: &'static str,
    status: Option<u16>,
) -> Result<(), Rejection> {
    let record = RequestRecord {
        method: trail.method.as_str(),
        decision: Decision::Allow,
        reason: Some(reason),
        status,
        ..request_record(cx.conn, trail)
    };
    cx.app.audit.write(&record).map_err(|error| {
        cx.app.metrics.audit_failure();
        tracing::error!(request_id = %trail.id, %error, "audit record not written; refusing the WebSocket");
        Rejection::AuditUnavailable
    })
}

/// Writes the `request` record of a refused request: `status` is what keyward
/// answered, `None` when the bot was gone before it could be answered.
pub(super) fn record_refusal(
    app: &App,
    conn: &ConnInfo,
    trail: &Trail,
    reason: &'static str,
    status: Option<u16>,
) {
    // A refused method may be an extension method of the bot's making, a token in it.
    let method = audit::recorded(trail.method.as_str());
    let record = RequestRecord {
        method: &method,
        symbols: trail.symbols.iter().map(String::as_str).collect(),
        orders: u32::try_from(trail.legs.len()).unwrap_or(u32::MAX),
        notional: None,
        decision: Decision::Deny,
        reason: Some(reason),
        status,
        mode: trail.mode.map(Mode::name),
        ..request_record(conn, trail)
    };
    if app.audit.write(&record).is_err() {
        app.metrics.audit_failure();
        tracing::error!(request_id = %trail.id, "audit record of a refusal not written");
    }
}

/// The `request` record's fields that say who asked, how and what: the rest (the
/// decision, the orders, the method as recorded) are the caller's.
fn request_record<'a>(conn: &'a ConnInfo, trail: &'a Trail) -> RequestRecord<'a> {
    RequestRecord {
        ts: audit::timestamp(SystemTime::now()),
        event: "request",
        request_id: &trail.id,
        peer: &conn.peer,
        transport: conn.transport.name(),
        client_cert: conn.transport.client_cert(),
        peer_cred: conn.transport.peer_cred(),
        http: match (conn.websocket, conn.http2) {
            (true, _) => "ws",
            (false, true) => "h2",
            (false, false) => "h1",
        },
        stream_method: trail.stream_method,
        bot: trail.bot.as_deref(),
        account: trail.account.as_deref(),
        venue: trail.venue.map(VenueId::name),
        method: "",
        path: &trail.path,
        symbols: Vec::new(),
        orders: 0,
        notional: None,
        decision: Decision::Deny,
        reason: None,
        status: None,
        mode: trail.mode.map(Mode::name),
        stripped: &[],
        legs: &trail.legs,
        cancels: &trail.cancels,
    }
}

/// Counts an answered request and writes its access line: one per request, so that a
/// container's log pipeline sees the traffic (the audit log is the record; this is
/// the view). A flood of throttled authentications is counted, not logged.
pub(super) fn count(
    app: &App,
    trail: &Trail,
    decision: &'static str,
    reason: &'static str,
    status: http::StatusCode,
) {
    if reason != "auth_throttled" {
        tracing::info!(
            target: "keyward::access",
            request_id = %trail.id,
            bot = trail.bot.as_deref().unwrap_or("-"),
            method = %trail.method,
            path = %trail.path,
            decision,
            reason,
            status = status.as_u16(),
            upstream_ms = trail.upstream_elapsed.map(millis),
            total_ms = millis(trail.started.elapsed()),
            "request"
        );
    }
    app.metrics.request(Answered {
        bot: trail.bot.as_deref(),
        venue: trail.venue.map(VenueId::name),
        decision,
        reason,
        total: trail.started.elapsed(),
        upstream: trail.upstream_elapsed,
    });
}

pub(super) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
