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

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keyward_policy::{Quote, Quotes, Symbol};

use crate::app::{App, Snapshot};
use crate::housekeeping;
use keyward_venues::Housekeeping;

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

    /// Fresh prices for `symbols`, fetching those missing or too old (concurrently).
    pub async fn fresh(
        &self,
        app: &App,
        snapshot: &Snapshot,
        account: &str,
        symbols: &[Symbol],
    ) -> Fresh {
        let Some(settings) = snapshot.config.accounts.get(account) else {
            return Fresh::default();
        };
        let max_age = settings.reference_max_age;
        let cached = self.cached(account, max_age, symbols);
        let missing: Vec<&Symbol> = symbols.iter().filter(|s| cached.get(s).is_none()).collect();
        if missing.is_empty() {
            return cached;
        }
        let fetches = missing
            .iter()
            .map(|symbol| self.fetch(app, snapshot, account, symbol));
        futures_util::future::join_all(fetches).await;
        self.cached(account, max_age, symbols)
    }

    /// Refreshes every symbol in use whose price is past half its maximum age.
    pub async fn refresh_in_use(&self, app: &App, snapshot: &Snapshot) {
        let now = Instant::now();
        let due: Vec<(String, Symbol)> = {
            let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
            used.retain(|_, last| now.saturating_duration_since(*last) < IN_USE);
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            used.keys()
                .filter(|(account, symbol)| {
                    let half = snapshot
                        .config
                        .accounts
                        .get(account)
                        .map_or(Duration::ZERO, |a| a.reference_max_age / 2);
                    entries
                        .get(&(account.clone(), symbol.clone()))
                        .is_none_or(|e| now.saturating_duration_since(e.fetched) >= half)
                })
                .cloned()
                .collect()
        };
        let fetches = due
            .iter()
            .map(|(account, symbol)| self.fetch(app, snapshot, account, symbol));
        futures_util::future::join_all(fetches).await;
    }

    async fn fetch(&self, app: &App, snapshot: &Snapshot, account: &str, symbol: &Symbol) {
        let Some(settings) = snapshot.config.accounts.get(account) else {
            return;
        };
        let key = (account.to_owned(), symbol.clone());
        if self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .is_some_and(|f| Instant::now() < f.retry_at)
        {
            return;
        }
        let venue = settings.venue.adapter();
        let (book, slow) = futures_util::future::join(
            housekeeping::send(app, snapshot, account, Housekeeping::Quote, symbol),
            housekeeping::send_slow_price(app, snapshot, account, symbol),
        )
        .await;
        match quote_of(venue, book, slow) {
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

type Fetched =
    Result<(keyward_venues::ParsedCall, crate::upstream::Answer), housekeeping::HousekeepingError>;

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
