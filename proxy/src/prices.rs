//! Reference prices: the best bid and ask keyward fetched itself from each venue's
//! public order-book ticker, never from anything a bot sent. Price bands and the
//! notional of market-priced orders are checked against them.
//!
//! A price is used only while younger than the account's `reference_max_age_ms`. A
//! symbol that bots trade is refreshed in the background while it is in use (an order
//! for it forwarded in the last minute); the first order for a symbol, or one after a
//! quiet spell, waits for a fetch. No fresh price means no price: the policy then
//! refuses orders that need one.
//!
//! Every fetch costs exchange weight shared by every bot on the account (and, on
//! Coinbase, is signed with its key), so only symbols of permitted orders on a bot's
//! own list are ever fetched (the pipeline sees to that), a symbol whose fetch failed
//! is not asked for again until a back-off that doubles up to a minute has passed,
//! and a failing symbol is warned about at most once a minute.
//!
//! This module holds the prices and their back-offs; the fetching is keyward's own
//! request to the exchange ([`crate::housekeeping::fresh_prices`]).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keyward_policy::{Quote, Quotes, Symbol};

/// How long a symbol stays "in use" after an order for it.
const IN_USE: Duration = Duration::from_secs(60);
/// The first pause after a failed fetch; it doubles with each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest pause between fetches of a failing symbol.
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);
/// How often a failing symbol is warned about.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    quote: Quote,
    fetched: Instant,
}

/// A symbol whose last fetch failed.
#[derive(Debug, Clone, Copy)]
struct Failing {
    /// Consecutive failed fetches.
    failures: u32,
    /// No fetch before this.
    retry_at: Instant,
    /// When a warning was last logged, and how many failures went unlogged since.
    warned_at: Instant,
    unlogged: u32,
}

/// Every account's reference prices.
#[derive(Debug, Default)]
pub struct Prices {
    entries: Mutex<HashMap<(String, Symbol), Entry>>,
    used: Mutex<HashMap<(String, Symbol), Instant>>,
    failing: Mutex<HashMap<(String, Symbol), Failing>>,
}

/// The fresh prices one decision may use.
#[derive(Debug, Default)]
pub struct Fresh {
    quotes: HashMap<Symbol, (Quote, Duration)>,
}

impl Quotes for Fresh {
    fn quote(&self, symbol: &Symbol) -> Option<Quote> {
        self.quotes.get(symbol).map(|(quote, _)| *quote)
    }
}

impl Fresh {
    /// Prices from elsewhere than the cache (a running keyward's, or stand-ins), each
    /// with its age.
    pub fn from_quotes(quotes: impl IntoIterator<Item = (Symbol, (Quote, Duration))>) -> Self {
        Self {
            quotes: quotes.into_iter().collect(),
        }
    }

    /// The quote and its age, for explanations.
    pub fn get(&self, symbol: &Symbol) -> Option<(Quote, Duration)> {
        self.quotes.get(symbol).copied()
    }
}

impl Prices {
    /// The cached prices for `symbols` that are still fresh; fetches nothing.
    pub fn cached(&self, account: &str, max_age: Duration, symbols: &[Symbol]) -> Fresh {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let quotes = symbols
            .iter()
            .filter_map(|symbol| {
                let entry = entries.get(&(account.to_owned(), symbol.clone()))?;
                let age = now.saturating_duration_since(entry.fetched);
                (age <= max_age).then(|| (symbol.clone(), (entry.quote, age)))
            })
            .collect();
        Fresh { quotes }
    }

    /// Marks `symbols` in use, so the background refresh keeps their prices fresh.
    pub fn touch(&self, account: &str, symbols: &[Symbol]) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        for symbol in symbols {
            used.insert((account.to_owned(), symbol.clone()), Instant::now());
        }
    }

    /// The symbols in use (an order for them forwarded in the last minute) whose
    /// price is older than `stale_after` of their account (or missing).
    pub fn due(&self, stale_after: impl Fn(&str) -> Duration) -> Vec<(String, Symbol)> {
        let now = Instant::now();
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        used.retain(|_, last| now.saturating_duration_since(*last) < IN_USE);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        used.keys()
            .filter(|(account, symbol)| {
                entries
                    .get(&(account.clone(), symbol.clone()))
                    .is_none_or(|e| {
                        now.saturating_duration_since(e.fetched) >= stale_after(account)
                    })
            })
            .cloned()
            .collect()
    }

    /// True while `symbol`'s last fetch failed and its back-off has not passed: it
    /// is not asked for.
    pub fn backing_off(&self, account: &str, symbol: &Symbol) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(account.to_owned(), symbol.clone()))
            .is_some_and(|f| Instant::now() < f.retry_at)
    }

    /// Stores what a fetch brought: a quote, or why there is none.
    pub fn record(&self, account: &str, symbol: &Symbol, fetched: Result<Quote, String>) {
        let key = (account.to_owned(), symbol.clone());
        match fetched {
            Ok(quote) => {
                self.entries
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        key.clone(),
                        Entry {
                            quote,
                            fetched: Instant::now(),
                        },
                    );
                self.note(&key, None);
            }
            Err(problem) => self.note(&key, Some(problem)),
        }
    }

    /// Records how a fetch went: a success clears the back-off, a failure lengthens
    /// it, and is logged unless one was logged in the last minute.
    fn note(&self, key: &(String, Symbol), failure: Option<String>) {
        let now = Instant::now();
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        let (account, symbol) = key;
        let Some(problem) = failure else {
            if let Some(was) = failing.remove(key) {
                tracing::info!(%account, %symbol, failures = was.failures, "reference price available again");
            }
            return;
        };
        let entry = failing.entry(key.clone()).or_insert(Failing {
            failures: 0,
            retry_at: now,
            warned_at: now,
            unlogged: 0,
        });
        entry.failures = entry.failures.saturating_add(1);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << entry.failures.saturating_sub(1).min(10))
            .min(LONGEST_BACKOFF);
        entry.retry_at = now + backoff;
        if entry.failures == 1 || now.saturating_duration_since(entry.warned_at) >= WARN_EVERY {
            tracing::warn!(
                %account,
                %symbol,
                problem,
                failures = entry.failures,
                unlogged = entry.unlogged,
                retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                "reference price not available; orders that need it are refused"
            );
            entry.warned_at = now;
            entry.unlogged = 0;
        } else {
            entry.unlogged = entry.unlogged.saturating_add(1);
        }
    }
}
