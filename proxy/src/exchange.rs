//! What the exchange says about its own limits, and keyward's obedience to it.
//!
//! Exchanges limit by IP (request weight) and by account (orders), report usage in
//! response headers, and punish overuse with 429 and then bans (Binance: 418, from two
//! minutes to three days). All bots behind one keyward share its IP, so this state is
//! global and survives reloads: keyward stops sending before a reported counter
//! reaches its limit, and after a 429 or a ban it pauses every account on that
//! upstream until the exchange's `Retry-After` has passed, answering bots itself and
//! sending nothing. Per-bot limits are checked before this, so one bot exhausts its
//! own budget long before it can get the shared IP banned.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Account;
use crate::error::Rejection;
use crate::venue::Venue;

/// What an exchange counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageKind {
    /// Request weight, per IP.
    Weight,
    /// Orders placed, per account.
    Orders,
}

impl UsageKind {
    fn name(self) -> &'static str {
        match self {
            Self::Weight => "weight",
            Self::Orders => "orders",
        }
    }
}

/// A limit the exchange documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeLimit {
    /// What is counted.
    pub kind: UsageKind,
    /// The counting window (fixed windows aligned to the epoch, UTC days for 1d).
    pub window: Duration,
    /// The most allowed in one window.
    pub limit: u64,
}

/// A counter the exchange reported on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReport {
    /// What is counted.
    pub kind: UsageKind,
    /// The window it counts over.
    pub window: Duration,
    /// How much of it is used.
    pub used: u64,
}

/// The exchange told keyward to stop sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// For how long.
    pub retry_after: Duration,
    /// True for a ban (Binance 418), false for a rate-limit warning (429).
    pub banned: bool,
}

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

/// Exchange usage and back-off, shared by every snapshot.
#[derive(Debug, Default)]
pub struct ExchangeState {
    /// By upstream authority: weight is per IP, and so is a ban.
    hosts: Mutex<HashMap<String, (Counters, Option<Pause>)>>,
    /// By account: order counts.
    accounts: Mutex<HashMap<String, Counters>>,
}

impl ExchangeState {
    /// Refuses a request the exchange would punish: any request while its upstream is
    /// paused, and a request (or an order) once a reported counter is within the
    /// account's headroom of its limit in the current window.
    pub fn check(
        &self,
        account: &Account,
        venue: &dyn Venue,
        orders: u32,
        now: SystemTime,
        instant: Instant,
    ) -> Result<(), Rejection> {
        let host = host_key(account);
        let now_ms = millis(now);
        {
            let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((counters, pause)) = hosts.get(host.as_ref()) {
                if let Some(pause) = pause.filter(|p| p.until > instant) {
                    return Err(Rejection::ExchangeBackoff {
                        retry_after: pause.until - instant,
                        banned: pause.banned,
                    });
                }
                near_limit(counters, venue, account, UsageKind::Weight, 1, now_ms)?;
            }
        }
        if orders > 0 {
            let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(counters) = accounts.get(&account.name) {
                near_limit(
                    counters,
                    venue,
                    account,
                    UsageKind::Orders,
                    u64::from(orders),
                    now_ms,
                )?;
            }
        }
        Ok(())
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

    /// Prometheus lines: each counter with its limit, and pauses in force.
    pub fn render(&self, out: &mut String, accounts: &[(&Account, &dyn Venue)]) {
        let now_ms = millis(SystemTime::now());
        let instant = Instant::now();
        out.push_str("# HELP keyward_exchange_usage What the exchange last reported as used in the current window.\n");
        out.push_str("# TYPE keyward_exchange_usage gauge\n");
        out.push_str("# HELP keyward_exchange_limit The exchange's limit for that window.\n");
        out.push_str("# TYPE keyward_exchange_limit gauge\n");
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let by_account = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut paused = Vec::new();
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
                    let labels = format!(
                        "account=\"{}\",kind=\"{}\",window=\"{}s\"",
                        account.name,
                        limit.kind.name(),
                        reading.window.as_secs()
                    );
                    let _ = writeln!(out, "keyward_exchange_usage{{{labels}}} {used}");
                    let _ = writeln!(out, "keyward_exchange_limit{{{labels}}} {}", limit.limit);
                }
            }
            if let Some(pause) = hosts
                .get(host.as_ref())
                .and_then(|(_, p)| *p)
                .filter(|p| p.until > instant)
            {
                paused.push((
                    account.name.clone(),
                    (pause.until - instant).as_secs_f64(),
                    pause.banned,
                ));
            }
        }
        out.push_str("# HELP keyward_exchange_paused_seconds Seconds until keyward sends to the exchange again (after a 429 or a ban).\n");
        out.push_str("# TYPE keyward_exchange_paused_seconds gauge\n");
        for (account, seconds, banned) in paused {
            let _ = writeln!(
                out,
                "keyward_exchange_paused_seconds{{account=\"{account}\",banned=\"{banned}\"}} {seconds:.1}"
            );
        }
    }
}

/// Refuses when the current window's reported usage plus `adding` would come within
/// the account's headroom of the limit.
fn near_limit(
    counters: &Counters,
    venue: &dyn Venue,
    account: &Account,
    kind: UsageKind,
    adding: u64,
    now_ms: u64,
) -> Result<(), Rejection> {
    for limit in venue.exchange_limits().iter().filter(|l| l.kind == kind) {
        let Some(reading) = counters.readings.get(&(kind, limit.window)) else {
            continue;
        };
        let start = window_start(now_ms, limit.window);
        if reading.window_start_ms != start {
            continue;
        }
        let ceiling = limit.limit * u64::from(100 - account.exchange_headroom_percent) / 100;
        if reading.used + adding > ceiling {
            let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
            let remaining = (start + window_ms).saturating_sub(now_ms).max(1);
            return Err(Rejection::ExchangeLimitNear {
                retry_after: Duration::from_millis(remaining),
            });
        }
    }
    Ok(())
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
