//! What the exchange says about its own limits, and keyward's obedience to it.
//!
//! Exchanges limit by IP (request weight) and by account (orders), report usage in
//! response headers, and punish overuse with 429 and then bans (Binance: 418, from two
//! minutes to three days). All bots behind one keyward share its IP, so this state is
//! global and survives reloads: keyward stops sending before a reported counter
//! reaches its limit, and after a 429 or a ban it pauses every account on that
//! upstream until the exchange's `Retry-After` has passed, answering bots itself and
//! sending nothing. keyward also counts what it sends itself, each request at its
//! documented weight, before it is sent, so a request that would take the window
//! past the limit is refused even when the exchange reports nothing; and each bot may
//! use only its share of each limit (`exchange_share`), so one bot spending heavy
//! requests cannot leave the others without.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use keyward_venues::{Backoff, ExchangeLimit, UsageKind, Venue};

use crate::config::Account;
use crate::error::Rejection;

#[derive(Debug, Clone, Copy)]
struct Reading {
    window: Duration,
    used: u64,
    /// Start of the window the reading belongs to, in ms since the epoch.
    window_start_ms: u64,
}

#[derive(Debug, Default)]
struct Counters {
    readings: HashMap<(UsageKind, Duration), Reading>,
}

#[derive(Debug, Clone, Copy)]
struct Pause {
    until: Instant,
    banned: bool,
}

/// What keyward itself sent in the current fixed windows, by (kind, window): the
/// weight of each request and each order, counted before it is sent.
#[derive(Debug, Default)]
struct Sent {
    used: HashMap<(UsageKind, Duration), (u64, u64)>,
}

impl Sent {
    /// Used in the window starting at `start`.
    fn used(&self, kind: UsageKind, window: Duration, start: u64) -> u64 {
        match self.used.get(&(kind, window)) {
            Some((at, used)) if *at == start => *used,
            _ => 0,
        }
    }

    fn add(&mut self, kind: UsageKind, window: Duration, start: u64, n: u64) {
        let entry = self.used.entry((kind, window)).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        entry.1 = entry.1.saturating_add(n);
    }
}

/// What keyward has sent: per upstream host (weight is per IP), per account (orders)
/// and per bot (for its share of both).
#[derive(Debug, Default)]
struct Local {
    hosts: HashMap<String, Sent>,
    accounts: HashMap<String, Sent>,
    bots: HashMap<(String, String), Sent>,
}

/// What one request will cost at the exchange, and whose share it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    /// The bot (or tokenless market data, as one), and the percentage of each
    /// exchange limit it may use; `None` for keyward's own requests.
    pub bot: Option<(&'a str, u8)>,
    /// The request's documented weight.
    pub weight: u64,
    /// The orders it places or changes.
    pub orders: u32,
}

impl Charge<'_> {
    /// What the request adds to a limit of `kind`.
    fn adds(&self, kind: UsageKind) -> u64 {
        match kind {
            UsageKind::Weight => self.weight,
            UsageKind::Orders => u64::from(self.orders),
        }
    }
}

/// Exchange usage and back-off, shared by every snapshot.
#[derive(Debug, Default)]
pub struct ExchangeState {
    /// By upstream authority: weight is per IP, and so is a ban.
    hosts: Mutex<HashMap<String, (Counters, Option<Pause>)>>,
    /// By account: order counts.
    accounts: Mutex<HashMap<String, Counters>>,
    /// What keyward charged itself before sending.
    local: Mutex<Local>,
}

impl ExchangeState {
    /// Refuses a request the exchange would punish, or that would take its bot past
    /// its share, and otherwise charges it: any request while its upstream is paused;
    /// a request whose weight (or whose orders) would take the current window within
    /// the account's headroom of the exchange's limit, counting what the exchange
    /// reported or what keyward itself sent, whichever is more; and a bot's request
    /// that would take it past its share of a limit (`exchange_share`), so that no
    /// bot can spend what every bot on the account shares. What passes is counted
    /// before it is sent.
    pub fn admit(
        &self,
        account: &Account,
        venue: &dyn Venue,
        charge: Charge<'_>,
        now: SystemTime,
        instant: Instant,
    ) -> Result<(), Rejection> {
        let host = host_key(account);
        let now_ms = millis(now);
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let (host_counters, pause) = match hosts.get(host.as_ref()) {
            Some((counters, pause)) => (Some(counters), *pause),
            None => (None, None),
        };
        if let Some(pause) = pause.filter(|p| p.until > instant) {
            return Err(Rejection::ExchangeBackoff {
                retry_after: pause.until - instant,
                banned: pause.banned,
            });
        }
        let empty = Sent::default();
        let bot_key = charge
            .bot
            .map(|(bot, _)| (account.name.clone(), bot.to_owned()));
        for limit in venue.exchange_limits() {
            let adding = charge.adds(limit.kind);
            if adding == 0 {
                continue;
            }
            let start = window_start(now_ms, limit.window);
            let (reported, sent) = match limit.kind {
                UsageKind::Weight => (
                    host_counters,
                    local.hosts.get(host.as_ref()).unwrap_or(&empty),
                ),
                UsageKind::Orders => (
                    accounts.get(&account.name),
                    local.accounts.get(&account.name).unwrap_or(&empty),
                ),
            };
            let reported = reported
                .and_then(|c| c.readings.get(&(limit.kind, limit.window)))
                .filter(|r| r.window_start_ms == start)
                .map_or(0, |r| r.used);
            let used = reported.max(sent.used(limit.kind, limit.window, start));
            let ceiling = ceiling(limit, account);
            let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
            let retry_after =
                Duration::from_millis((start + window_ms).saturating_sub(now_ms).max(1));
            if used + adding > ceiling {
                return Err(Rejection::ExchangeLimitNear { retry_after });
            }
            if let (Some((_, share)), Some(key)) = (charge.bot, &bot_key) {
                let own = local
                    .bots
                    .get(key)
                    .map_or(0, |b| b.used(limit.kind, limit.window, start));
                if own + adding > ceiling * u64::from(share) / 100 {
                    return Err(Rejection::ExchangeShareUsed { retry_after, share });
                }
            }
        }
        for limit in venue.exchange_limits() {
            let adding = charge.adds(limit.kind);
            if adding == 0 {
                continue;
            }
            let start = window_start(now_ms, limit.window);
            let sent = match limit.kind {
                UsageKind::Weight => local.hosts.entry(host.to_string()).or_default(),
                UsageKind::Orders => local.accounts.entry(account.name.clone()).or_default(),
            };
            sent.add(limit.kind, limit.window, start, adding);
            if let Some(key) = &bot_key {
                local.bots.entry(key.clone()).or_default().add(
                    limit.kind,
                    limit.window,
                    start,
                    adding,
                );
            }
        }
        Ok(())
    }

    /// The exchange's counters `charge` adds to, with this replica's last report of
    /// each for the current window: what the shared state checks and counts for
    /// every replica of the account together (see [`crate::shared`]).
    pub fn shared_counts(
        &self,
        account: &Account,
        venue: &dyn Venue,
        charge: Charge<'_>,
        now: SystemTime,
    ) -> Vec<crate::shared::ExchangeCount> {
        let now_ms = millis(now);
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let host_counters = hosts.get(host_key(account).as_ref()).map(|(c, _)| c);
        venue
            .exchange_limits()
            .iter()
            .filter_map(|limit| {
                let amount = charge.adds(limit.kind);
                if amount == 0 {
                    return None;
                }
                let counters = match limit.kind {
                    UsageKind::Weight => host_counters,
                    UsageKind::Orders => accounts.get(&account.name),
                };
                let start = window_start(now_ms, limit.window);
                let reported = counters
                    .and_then(|c| c.readings.get(&(limit.kind, limit.window)))
                    .filter(|r| r.window_start_ms == start)
                    .map_or(0, |r| r.used);
                let ceiling = ceiling(limit, account);
                Some(crate::shared::ExchangeCount {
                    kind: limit.kind,
                    window: limit.window,
                    ceiling,
                    reported,
                    share: charge
                        .bot
                        .map(|(_, share)| (ceiling * u64::from(share) / 100, share)),
                    amount,
                })
            })
            .collect()
    }

    /// True while the exchange ordered keyward to wait on `account`'s upstream.
    pub fn paused(&self, account: &Account, instant: Instant) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts
            .get(host_key(account).as_ref())
            .and_then(|(_, pause)| *pause)
            .is_some_and(|p| p.until > instant)
    }

    /// What `bot` of `account` sent in each current window of the venue's limits:
    /// (kind, window, used), for explanations and metrics.
    pub fn bot_usage(
        &self,
        account: &Account,
        venue: &dyn Venue,
        bot: &str,
        now: SystemTime,
    ) -> Vec<(UsageKind, Duration, u64)> {
        let now_ms = millis(now);
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let sent = local.bots.get(&(account.name.clone(), bot.to_owned()));
        venue
            .exchange_limits()
            .iter()
            .map(|limit| {
                let start = window_start(now_ms, limit.window);
                let used = sent.map_or(0, |s| s.used(limit.kind, limit.window, start));
                (limit.kind, limit.window, used)
            })
            .collect()
    }

    /// Takes in what a response says: usage counters, and a back-off, which pauses
    /// the upstream (and which it returns).
    pub fn observe(
        &self,
        account: &Account,
        venue: &dyn Venue,
        answer: &crate::upstream::Answer,
        now: SystemTime,
        instant: Instant,
    ) -> Option<Backoff> {
        let host = host_key(account);
        let now_ms = millis(now);
        let reports = venue.usage(&answer.headers);
        let backoff = venue
            .backoff(answer.status, &answer.headers)
            .or_else(|| venue.backoff_in_body(&answer.body));
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        // Keys are allocated only the first time a host or account is seen.
        if !hosts.contains_key(host.as_ref()) {
            hosts.insert(host.into_owned(), Default::default());
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if !accounts.contains_key(&account.name) {
            accounts.insert(account.name.clone(), Counters::default());
        }
        let (Some((host_counters, pause)), Some(account_counters)) = (
            hosts.get_mut(host_key(account).as_ref()),
            accounts.get_mut(&account.name),
        ) else {
            // Cannot happen: both were inserted above, under the same locks.
            return backoff;
        };
        for report in reports {
            let counters = match report.kind {
                UsageKind::Weight => &mut *host_counters,
                UsageKind::Orders => &mut *account_counters,
            };
            counters.readings.insert(
                (report.kind, report.window),
                Reading {
                    window: report.window,
                    used: report.used,
                    window_start_ms: window_start(now_ms, report.window),
                },
            );
        }
        if let Some(backoff) = backoff {
            // Never shorten a pause, and never let a 429 turn a ban into a warning.
            let current = pause.filter(|p| p.until > instant);
            let until = instant + backoff.retry_after;
            *pause = Some(Pause {
                until: current.map_or(until, |p| p.until.max(until)),
                banned: backoff.banned || current.is_some_and(|p| p.banned),
            });
            if backoff.banned {
                tracing::error!(
                    upstream = %host_key(account),
                    retry_after_s = backoff.retry_after.as_secs(),
                    "ALERT: the exchange banned keyward's IP; nothing is sent to it until the ban ends"
                );
            } else {
                tracing::warn!(
                    upstream = %host_key(account),
                    retry_after_s = backoff.retry_after.as_secs(),
                    "the exchange rate-limited keyward; every bot on it waits"
                );
            }
        }
        backoff
    }

    /// What each account's exchange last reported as used, beside its limit, and the
    /// pauses in force: for the metrics.
    pub fn readings(&self, accounts: &[(&Account, &dyn Venue)]) -> Readings {
        let now_ms = millis(SystemTime::now());
        let instant = Instant::now();
        let mut readings = Readings::default();
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let by_account = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        for (account, venue) in accounts {
            let host = host_key(account);
            let sources = [
                hosts.get(host.as_ref()).map(|(c, _)| c),
                by_account.get(&account.name),
            ];
            for counters in sources.into_iter().flatten() {
                for ((kind, window), reading) in &counters.readings {
                    let Some(limit) = venue
                        .exchange_limits()
                        .iter()
                        .find(|l| l.kind == *kind && l.window == *window)
                    else {
                        continue;
                    };
                    let used = if window_start(now_ms, reading.window) == reading.window_start_ms {
                        reading.used
                    } else {
                        0
                    };
                    readings.limits.push(LimitReading {
                        account: account.name.clone(),
                        kind: limit.kind.name(),
                        window: reading.window,
                        used,
                        limit: limit
                            .limit
                            .saturating_mul(account.exchange_limits_multiplier),
                    });
                }
            }
            if let Some(pause) = hosts
                .get(host.as_ref())
                .and_then(|(_, p)| *p)
                .filter(|p| p.until > instant)
            {
                readings.paused.push(Paused {
                    account: account.name.clone(),
                    seconds: (pause.until - instant).as_secs_f64(),
                    banned: pause.banned,
                });
            }
        }
        readings
    }
}

/// What [`ExchangeState::readings`] found.
#[derive(Debug, Default)]
pub struct Readings {
    /// Each limit the exchange reported on.
    pub limits: Vec<LimitReading>,
    /// Each account keyward is holding back for.
    pub paused: Vec<Paused>,
}

/// One exchange limit as last reported.
#[derive(Debug)]
pub struct LimitReading {
    /// The account.
    pub account: String,
    /// Weight, orders, ...
    pub kind: &'static str,
    /// The limit's window.
    pub window: Duration,
    /// Used in the current window.
    pub used: u64,
    /// The limit in that window.
    pub limit: u64,
}

/// A pause after a 429 or a ban.
#[derive(Debug)]
pub struct Paused {
    /// The account.
    pub account: String,
    /// Seconds until keyward sends again.
    pub seconds: f64,
    /// True for a ban (418, or the venue's equivalent).
    pub banned: bool,
}

/// The most keyward sends in one window of `limit`: the venue's documented limit,
/// times the account's `exchange_limits_multiplier`, less its headroom.
pub fn ceiling(limit: &ExchangeLimit, account: &Account) -> u64 {
    limit
        .limit
        .saturating_mul(account.exchange_limits_multiplier)
        .saturating_mul(u64::from(100 - account.exchange_headroom_percent))
        / 100
}

/// The start of the fixed window containing `now_ms` (UTC days for a 1-day window).
fn window_start(now_ms: u64, window: Duration) -> u64 {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    now_ms - now_ms % window_ms
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Accounts that share an upstream host share its IP limits and its bans.
/// The upstream's authority, borrowed from the account (every request looks it up).
fn host_key(account: &Account) -> std::borrow::Cow<'_, str> {
    account.upstream.authority().map_or_else(
        || std::borrow::Cow::Owned(account.upstream.to_string()),
        |a| std::borrow::Cow::Borrowed(a.as_str()),
    )
}
