//! keyward's own requests to an exchange: reference prices (fetched into
//! [`crate::prices`]), open-order checks, the kill switch's cancels and instrument
//! listings (for venues whose WebSocket orders name instruments by code). They go through the same venue parser, the same policy (a
//! permit that allows reads and cancels and nothing else) and the same signer as the
//! bots' requests, are audited like them when signed, and obey the exchange's
//! back-off. Their user agent says what they are.

use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, header};
use keyward_policy::{KEYWARD_ITSELF, Mode, Quote, Symbol};
use keyward_venues::{CallInput, Housekeeping, ParsedCall, Security, SignContext};

use crate::app::{App, Snapshot};
use crate::audit::{self, Decision, RequestRecord};
use crate::prices::Fresh;
use crate::upstream::Answer;

/// Why keyward's own request was not made or not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HousekeepingError {
    /// The account is not configured (any more).
    #[error("account {0} is not configured")]
    UnknownAccount(String),
    /// The venue or the policy refused to build the request (a bug).
    #[error("keyward's own request was refused: {0}")]
    Refused(String),
    /// The exchange asked keyward to wait.
    #[error("the exchange asked keyward to back off")]
    BackingOff,
    /// The audit record could not be written, so nothing was sent.
    #[error("the audit log cannot be written")]
    Audit,
    /// The exchange could not be reached or answered unusably.
    #[error("{0}")]
    Upstream(String),
}

/// Sends `task` for `symbol` on `account` and returns the call as parsed and the
/// exchange's answer (any status), having recorded its usage counters and any
/// back-off.
pub async fn send(
    app: &App,
    snapshot: &Snapshot,
    account_name: &str,
    task: Housekeeping,
    symbol: &Symbol,
) -> Result<(ParsedCall, Answer), HousekeepingError> {
    let venue = venue_of(snapshot, account_name)?;
    let (key, query) = venue.housekeeping(task, symbol);
    let agent = match task {
        Housekeeping::Quote => concat!("keyward/", env!("CARGO_PKG_VERSION"), " reference-price"),
        Housekeeping::OpenOrders | Housekeeping::CancelAll => {
            concat!("keyward/", env!("CARGO_PKG_VERSION"), " housekeeping")
        }
    };
    let request = OwnRequest {
        key,
        path: None,
        query: &query,
        form: None,
        symbol,
        agent,
    };
    send_own(app, snapshot, account_name, &request).await
}

/// Asks the exchange for `symbol`'s slower reference price (see
/// [`keyward_venues::Venue::slow_price`]), when the venue has such a request.
pub async fn send_slow_price(
    app: &App,
    snapshot: &Snapshot,
    account_name: &str,
    symbol: &Symbol,
) -> Option<Result<(ParsedCall, Answer), HousekeepingError>> {
    let venue = venue_of(snapshot, account_name).ok()?;
    let (key, query) = venue.slow_price(symbol)?;
    let request = OwnRequest {
        key,
        path: None,
        query: &query,
        form: None,
        symbol,
        agent: concat!("keyward/", env!("CARGO_PKG_VERSION"), " reference-price"),
    };
    Some(send_own(app, snapshot, account_name, &request).await)
}

/// Looks up one order at the exchange (for a bot with `adopt_orders`): a signed
/// read, parsed, permitted and audited like every request of keyward's own.
pub async fn look_up(
    app: &App,
    snapshot: &Snapshot,
    account_name: &str,
    lookup: &keyward_venues::Lookup,
) -> Result<(ParsedCall, Answer), HousekeepingError> {
    let unnamed = keyward_venues::unresolved_symbol();
    let request = OwnRequest {
        key: lookup.key,
        path: lookup.path.as_deref(),
        query: &lookup.query,
        form: lookup.form.as_deref(),
        symbol: lookup.symbol.as_ref().unwrap_or(&unnamed),
        agent: concat!("keyward/", env!("CARGO_PKG_VERSION"), " housekeeping"),
    };
    send_own(app, snapshot, account_name, &request).await
}

/// Lists the venue's instruments (`key` with `query`), for the codes its WebSocket
/// orders name them by: a public read, parsed and permitted like every request of
/// keyward's own.
pub async fn list_instruments(
    app: &App,
    snapshot: &Snapshot,
    account_name: &str,
    key: &'static str,
    query: &str,
) -> Result<(ParsedCall, Answer), HousekeepingError> {
    let unnamed = keyward_venues::unresolved_symbol();
    let request = OwnRequest {
        key,
        path: None,
        query,
        form: None,
        symbol: &unnamed,
        agent: concat!("keyward/", env!("CARGO_PKG_VERSION"), " instruments"),
    };
    send_own(app, snapshot, account_name, &request).await
}

fn venue_of(
    snapshot: &Snapshot,
    account_name: &str,
) -> Result<&'static dyn keyward_venues::Venue, HousekeepingError> {
    snapshot
        .config
        .accounts
        .get(account_name)
        .map(|a| a.venue.adapter())
        .ok_or_else(|| HousekeepingError::UnknownAccount(account_name.to_owned()))
}

/// One request of keyward's own.
struct OwnRequest<'a> {
    key: &'static str,
    /// The concrete path, for catalogue paths with ids in them.
    path: Option<&'a str>,
    query: &'a str,
    /// A form body.
    form: Option<&'a str>,
    /// The symbol it concerns, for the audit record.
    symbol: &'a Symbol,
    agent: &'static str,
}

async fn send_own(
    app: &App,
    snapshot: &Snapshot,
    account_name: &str,
    request: &OwnRequest<'_>,
) -> Result<(ParsedCall, Answer), HousekeepingError> {
    let runtime = snapshot
        .accounts
        .get(account_name)
        .ok_or_else(|| HousekeepingError::UnknownAccount(account_name.to_owned()))?;
    let account = &runtime.settings;
    let venue = account.venue.adapter();
    let key = request.key;
    let spec = venue
        .catalogue()
        .by_key(key)
        .ok_or_else(|| HousekeepingError::Refused(format!("{key} is not catalogued")))?;
    let input = CallInput {
        query: request.query,
        content_type: request.form.map(|_| "application/x-www-form-urlencoded"),
        body: request.form.unwrap_or_default().as_bytes(),
        headers: &http::HeaderMap::new(),
    };
    let call = venue
        .parse_at(spec, request.path.unwrap_or(spec.path), &input)
        .map_err(|e| HousekeepingError::Refused(e.to_string()))?;
    let symbol = request.symbol;
    let permit = snapshot
        .config
        .policy
        .authorize_housekeeping(account_name, &call.intent)
        .map_err(|e| HousekeepingError::Refused(e.to_string()))?;
    let charge = crate::exchange_limits::Charge {
        bot: None,
        weight: venue.weight(&call),
        orders: 0,
    };
    app.exchange
        .admit(account, venue, charge, SystemTime::now(), Instant::now())
        .map_err(|_| HousekeepingError::BackingOff)?;
    let signed = spec.security != Security::Public;
    let request_id = app.request_id();
    if signed {
        let record = RequestRecord {
            ts: audit::timestamp(SystemTime::now()),
            event: "request",
            request_id: &request_id,
            peer: "keyward",
            transport: "internal",
            client_cert: None,
            peer_cred: None,
            http: "-",
            stream_method: None,
            bot: Some(KEYWARD_ITSELF),
            account: Some(account_name),
            venue: Some(account.venue.name()),
            method: spec.method.as_str(),
            path: spec.path,
            symbols: if *symbol == keyward_venues::unresolved_symbol() {
                Vec::new()
            } else {
                vec![symbol.as_str()]
            },
            orders: 0,
            notional: None,
            decision: Decision::Allow,
            reason: None,
            status: None,
            mode: Some(Mode::Enforce.name()),
            stripped: &[],
            legs: &[],
            cancels: &[],
        };
        app.audit.write(&record).map_err(|_| {
            app.metrics.audit_failure();
            HousekeepingError::Audit
        })?;
    }
    let nonce = if venue.uses_nonce() {
        runtime
            .state
            .next_nonce()
            .await
            .map_err(|e| HousekeepingError::Refused(e.to_string()))?
    } else {
        0
    };
    let mut outbound = venue
        .sign(
            &call,
            &permit,
            SignContext {
                credential: &runtime.credential,
                timestamp_ms: runtime.state.exchange_now_ms(SystemTime::now()),
                recv_window_ms: account.recv_window_ms,
                nonce,
            },
        )
        .map_err(|e| HousekeepingError::Refused(e.to_string()))?;
    outbound
        .headers
        .push((header::USER_AGENT, HeaderValue::from_static(request.agent)));
    let sent = Instant::now();
    let result = runtime.upstream.send(outbound).await;
    runtime
        .state
        .exchange_answered(result.is_ok(), SystemTime::now());
    if signed {
        let outcome = audit::OutcomeRecord {
            ts: audit::timestamp(SystemTime::now()),
            event: "outcome",
            request_id: &request_id,
            upstream_status: result.as_ref().ok().map(|a| a.status.as_u16()),
            refused: result
                .as_ref()
                .is_ok_and(|a| venue.refused_outright(a.status, &a.body)),
            error: result.as_ref().err().map(|e| e.reason()),
            upstream_ms: u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
            total_ms: u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
            orders: audit::OrderOutcome::default(),
        };
        if app.audit.write(&outcome).is_err() {
            app.metrics.audit_failure();
        }
    }
    let answer = result.map_err(|e| HousekeepingError::Upstream(e.to_string()))?;
    app.exchange
        .observe(account, venue, &answer, SystemTime::now(), Instant::now());
    Ok((call, answer))
}

/// Fresh reference prices for `symbols` on `account`, fetching those missing or too
/// old (concurrently).
pub async fn fresh_prices(
    app: &App,
    snapshot: &Snapshot,
    account: &str,
    symbols: &[Symbol],
) -> Fresh {
    let Some(settings) = snapshot.config.accounts.get(account) else {
        return Fresh::default();
    };
    let max_age = settings.reference_max_age;
    let cached = app.prices.cached(account, max_age, symbols);
    let missing: Vec<&Symbol> = symbols.iter().filter(|s| cached.get(s).is_none()).collect();
    if missing.is_empty() {
        return cached;
    }
    let fetches = missing
        .iter()
        .map(|symbol| fetch_price(app, snapshot, account, symbol));
    futures_util::future::join_all(fetches).await;
    app.prices.cached(account, max_age, symbols)
}

/// Refreshes every symbol in use whose price is past half its maximum age.
pub async fn refresh_prices_in_use(app: &App, snapshot: &Snapshot) {
    let due = app.prices.due(|account| {
        snapshot
            .config
            .accounts
            .get(account)
            .map_or(Duration::ZERO, |a| a.reference_max_age / 2)
    });
    let fetches = due
        .iter()
        .map(|(account, symbol)| fetch_price(app, snapshot, account, symbol));
    futures_util::future::join_all(fetches).await;
}

/// Fetches `symbol`'s quote (and slow price, where the venue has one), unless its
/// last fetch failed and the back-off has not passed.
async fn fetch_price(app: &App, snapshot: &Snapshot, account: &str, symbol: &Symbol) {
    let Some(settings) = snapshot.config.accounts.get(account) else {
        return;
    };
    if app.prices.backing_off(account, symbol) {
        return;
    }
    let (book, slow) = futures_util::future::join(
        send(app, snapshot, account, Housekeeping::Quote, symbol),
        send_slow_price(app, snapshot, account, symbol),
    )
    .await;
    let fetched = quote_of(settings.venue.adapter(), book, slow);
    app.prices.record(account, symbol, fetched);
}

type Fetched = Result<(ParsedCall, Answer), HousekeepingError>;

/// The quote from the ticker's answer and, where the venue has one, its slow price's:
/// where the venue has a slow price, the quote is used only with it, since without
/// it a thin book's prices would be the whole reference.
fn quote_of(
    venue: &dyn keyward_venues::Venue,
    book: Fetched,
    slow: Option<Fetched>,
) -> Result<Quote, String> {
    let slow = match slow {
        None => None,
        Some(Ok((_, answer))) if answer.status.is_success() => Some(
            venue
                .parse_slow_price(&answer.body)
                .ok_or("the exchange's average or index price was unusable")?,
        ),
        Some(Ok((_, answer))) => {
            return Err(format!(
                "the exchange answered {} to the average price request",
                answer.status.as_u16()
            ));
        }
        Some(Err(error)) => return Err(error.to_string()),
    };
    let answer = match book {
        Ok((_, answer)) if answer.status.is_success() => answer,
        Ok((_, answer)) => {
            return Err(format!(
                "the exchange answered {} to the ticker request",
                answer.status.as_u16()
            ));
        }
        Err(error) => return Err(error.to_string()),
    };
    let quote = venue
        .parse_quote(&answer.body)
        .ok_or("the exchange's order-book ticker was unusable (empty side or crossed book)")?;
    Ok(Quote {
        slow: slow.or(quote.slow),
        ..quote
    })
}
