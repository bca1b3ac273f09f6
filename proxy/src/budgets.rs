//! Budgets that survive restarts, and the open-order count.
//!
//! Rolling budgets (`daily_notional`, `max_orders`, per bot and per account) are spent
//! when keyward decides to forward an order, before the audit record is written, and
//! refunded only when the exchange refused the order outright (a 4xx answer, or no
//! connection at all); an unknown outcome (timeout, 5xx) stays spent. Because every
//! forwarded order is in the audit log before it is sent, the ledger is rebuilt from
//! the log at start: a restart, a crash or `kill -9` loses nothing.
//!
//! Open orders are the orders keyward placed and the exchange reported open, less
//! those it reported cancelled or filled; a periodic check of the exchange's open
//! orders (see the server) drops those filled since.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use keyward_policy::{
    Amount, BudgetLimits, BudgetScope, Denied, Ledger, Policy, Scope, Spend, Symbol, Usage,
};

use crate::config::Config;
use crate::venue::OrderChanges;

/// The longest window a budget may have (`max_orders` over at most 7 days).
const HORIZON: Duration = Duration::from_secs(7 * 86_400);

/// Rolling budgets and open orders for every bot and account.
#[derive(Debug, Default)]
pub struct Budgets {
    ledger: Mutex<Ledger>,
    open: Mutex<OpenOrders>,
}

/// The scopes a bot's order spends from.
pub fn scopes_of(bot: &str, account: &str) -> [Scope; 2] {
    [
        Scope::Bot(Arc::from(bot)),
        Scope::Account(Arc::from(account)),
    ]
}

impl Budgets {
    /// Budgets for `config`, rebuilt from the audit log at `audit_file` (and its
    /// rotated files) as of `now`.
    pub fn rebuild(config: &Config, audit_file: &Path, now: SystemTime) -> Self {
        let budgets = Self::default();
        budgets.configure(config);
        let mut ledger = budgets
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (spends, refunds) = replay(audit_file, now);
        let count = spends.len();
        for (scopes, spend) in spends {
            ledger.record(&scopes, &spend);
        }
        for id in refunds {
            ledger.refund(&id);
        }
        drop(ledger);
        if count > 0 {
            tracing::info!(orders = count, "budgets rebuilt from the audit log");
        }
        budgets
    }

    /// Sets every bot's and account's limits (at start and on reload); spending so
    /// far is kept.
    pub fn configure(&self, config: &Config) {
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let mut scopes = HashSet::new();
        for bot in config.policy.bots() {
            let scope = Scope::Bot(Arc::from(bot.name()));
            ledger.set_limits(scope.clone(), bot.budget());
            scopes.insert(scope);
        }
        for (name, account) in &config.accounts {
            let scope = Scope::Account(Arc::from(name.as_str()));
            ledger.set_limits(scope.clone(), account.budget);
            scopes.insert(scope);
        }
        ledger.retain(|scope| scopes.contains(scope));
    }

    /// Spends `spend` from `scopes`, or refuses it. In shadow mode (`enforce` false)
    /// the spend is recorded anyway and the refusal returned as what would have been.
    pub fn spend(
        &self,
        scopes: &[Scope],
        spend: &Spend,
        enforce: bool,
    ) -> Result<Option<Denied>, Denied> {
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        match ledger.check(scopes, spend) {
            Ok(()) => {
                ledger.record(scopes, spend);
                Ok(None)
            }
            Err(denied) if enforce => Err(denied),
            Err(denied) => {
                ledger.record(scopes, spend);
                Ok(Some(denied))
            }
        }
    }

    /// Gives back what request `id` spent.
    pub fn refund(&self, id: &str) {
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refund(id);
    }

    /// Used and limit of each budget of `scope`, for explanations and metrics.
    pub fn report(&self, scope: &Scope, now: SystemTime) -> Option<(BudgetLimits, Usage, Usage)> {
        let ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = ledger.limits(scope)?;
        let day = ledger.usage(scope, now, keyward_policy::DAY);
        let window = limits
            .max_orders
            .map_or(Usage::default(), |r| ledger.usage(scope, now, r.period()));
        Some((limits, day, window))
    }

    /// Reserves room for `new` more open orders for `bot` on `account`, or refuses.
    pub fn reserve_open(
        &self,
        policy: &Policy,
        config: &Config,
        bot: &str,
        account: &str,
        new: u32,
        enforce: bool,
    ) -> Result<Option<Denied>, Denied> {
        let bot_limit = policy.bot(bot).and_then(|b| b.budget().max_open_orders);
        let account_limit = config
            .accounts
            .get(account)
            .and_then(|a| a.budget.max_open_orders);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (bot_open, account_open) = open.count(account, bot);
        let over =
            [
                (BudgetScope::Bot, bot_open, bot_limit),
                (BudgetScope::Account, account_open, account_limit),
            ]
            .into_iter()
            .find_map(|(scope, open, limit)| {
                let limit = limit?;
                (open + u64::from(new) > u64::from(limit))
                    .then_some(Denied::MaxOpenOrdersExceeded { scope, open, limit })
            });
        match over {
            Some(denied) if enforce => Err(denied),
            other => {
                open.pending(account, bot, i64::from(new));
                Ok(other)
            }
        }
    }

    /// Settles a reservation with what the exchange answered.
    pub fn settle_open(&self, account: &str, bot: &str, reserved: u32, changes: &OrderChanges) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.pending(account, bot, -i64::from(reserved));
        open.apply(account, bot, changes);
    }

    /// Applies changes an answer shows without a reservation (cancels).
    pub fn observe_orders(&self, account: &str, bot: &str, changes: &OrderChanges) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(account, bot, changes);
    }

    /// The symbols with tracked open orders on `account`.
    pub fn tracked_symbols(&self, account: &str) -> Vec<Symbol> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .symbols(account)
    }

    /// Drops tracked orders on `symbol` that the exchange no longer lists as open.
    pub fn reconcile(&self, account: &str, symbol: &Symbol, open_ids: &HashSet<String>) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reconcile(account, symbol, open_ids);
    }

    /// Open orders of `bot` and of its `account`, as keyward knows them.
    pub fn open_orders(&self, account: &str, bot: &str) -> (u64, u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(account, bot)
    }
}

#[derive(Debug, Default)]
struct OpenOrders {
    /// (account, symbol, order id) -> bot.
    orders: HashMap<(String, Symbol, String), Arc<str>>,
    /// Orders being placed right now, by account and bot (nested, so that the
    /// lookup for every order borrows the names instead of allocating a key).
    pending: HashMap<String, HashMap<Arc<str>, i64>>,
}

impl OpenOrders {
    fn count(&self, account: &str, bot: &str) -> (u64, u64) {
        let mut by_bot = 0u64;
        let mut by_account = 0u64;
        for ((a, _, _), b) in &self.orders {
            if a == account {
                by_account += 1;
                if &**b == bot {
                    by_bot += 1;
                }
            }
        }
        for (b, n) in self.pending.get(account).into_iter().flatten() {
            let n = u64::try_from(*n).unwrap_or(0);
            by_account += n;
            if &**b == bot {
                by_bot += n;
            }
        }
        (by_bot, by_account)
    }

    fn pending(&mut self, account: &str, bot: &str, delta: i64) {
        if let Some(entry) = self
            .pending
            .get_mut(account)
            .and_then(|bots| bots.get_mut(bot))
        {
            *entry = (*entry + delta).max(0);
            return;
        }
        let entry = self
            .pending
            .entry(account.to_owned())
            .or_default()
            .entry(Arc::from(bot))
            .or_default();
        *entry = (*entry + delta).max(0);
    }

    fn apply(&mut self, account: &str, bot: &str, changes: &OrderChanges) {
        for (symbol, id) in &changes.closed {
            self.orders
                .remove(&(account.to_owned(), symbol.clone(), id.clone()));
        }
        for symbol in &changes.closed_all {
            self.orders
                .retain(|(a, s, _), _| !(a == account && s == symbol));
        }
        for (symbol, id) in &changes.opened {
            self.orders.insert(
                (account.to_owned(), symbol.clone(), id.clone()),
                Arc::from(bot),
            );
        }
    }

    fn symbols(&self, account: &str) -> Vec<Symbol> {
        let mut symbols: Vec<Symbol> = self
            .orders
            .keys()
            .filter(|(a, _, _)| a == account)
            .map(|(_, s, _)| s.clone())
            .collect();
        symbols.sort();
        symbols.dedup();
        symbols
    }

    fn reconcile(&mut self, account: &str, symbol: &Symbol, open_ids: &HashSet<String>) {
        self.orders
            .retain(|(a, s, id), _| !(a == account && s == symbol) || open_ids.contains(id));
    }
}

/// The audit files that may hold records from the last [`HORIZON`]: rotated files
/// (`<stem>-<time>.<ext>`) modified since, oldest first, then the current file.
fn audit_files(current: &Path, now: SystemTime) -> Vec<PathBuf> {
    let Some(dir) = current.parent() else {
        return vec![current.to_path_buf()];
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let stem = current
        .file_stem()
        .map(|s| format!("{}-", s.to_string_lossy()))
        .unwrap_or_default();
    let since = now.checked_sub(HORIZON).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut rotated: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&stem))
                        && p.extension() == current.extension()
                        && fs::metadata(p)
                            .and_then(|m| m.modified())
                            .is_ok_and(|m| m >= since)
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort();
    rotated.push(current.to_path_buf());
    rotated
}

type Replayed = (Vec<([Scope; 2], Spend)>, Vec<String>);

/// Every forwarded order in the audit log within [`HORIZON`] of `now`, and the
/// requests the exchange refused outright (to refund).
fn replay(audit_file: &Path, now: SystemTime) -> Replayed {
    let since = now.checked_sub(HORIZON).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut spends = Vec::new();
    let mut refunds = Vec::new();
    for file in audit_files(audit_file, now) {
        // Only regular files: an audit "file" may be a device (/dev/full in tests, a
        // pipe in some setups) that never ends.
        if !fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match record["event"].as_str() {
                Some("request") => {
                    if let Some(spent) = spent(&record).filter(|(_, s)| s.at >= since) {
                        spends.push(spent);
                    }
                }
                Some("outcome") if refused_by_exchange(&record) => {
                    if let Some(id) = record["request_id"].as_str() {
                        refunds.push(id.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    (spends, refunds)
}

/// A `request` record of forwarded orders, as a spend.
fn spent(record: &serde_json::Value) -> Option<([Scope; 2], Spend)> {
    let forwarded = matches!(record["decision"].as_str(), Some("allow" | "shadow-allow"));
    let orders = u32::try_from(record["orders"].as_u64()?).ok()?;
    if !forwarded || orders == 0 {
        return None;
    }
    let notional: Amount = record["notional"].as_str()?.parse().ok()?;
    let at = time::OffsetDateTime::parse(
        record["ts"].as_str()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    let at = SystemTime::from(at);
    let scopes = scopes_of(record["bot"].as_str()?, record["account"].as_str()?);
    Some((
        scopes,
        Spend {
            id: Arc::from(record["request_id"].as_str()?),
            at,
            notional,
            orders,
        },
    ))
}

/// The exchange refused the request (a 4xx, or an error its venue reports in a 200
/// body), or was never reached: the orders did not execute.
pub fn refused_by_exchange(record: &serde_json::Value) -> bool {
    let status = record["upstream_status"].as_u64();
    status.is_some_and(|s| (400..500).contains(&s))
        || record["refused"].as_bool() == Some(true)
        || record["error"].as_str() == Some("upstream_unavailable")
}
