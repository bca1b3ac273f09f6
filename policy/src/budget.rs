//! Budgets over rolling windows, per bot and per account: total notional in the last
//! 24 hours (`daily_notional`) and number of orders in a window (`max_orders`). They
//! stop the salami attack, many small orders each under the per-order cap.
//!
//! The [`Ledger`] is pure bookkeeping with the time passed in: the proxy spends from
//! it when it decides, refunds when the exchange rejects an order outright, and
//! rebuilds it from its audit log after a restart. An order whose outcome is unknown
//! (a timeout, a 5xx) stays spent.
//!
//! Each window is kept as 1,440 buckets with a running total, so that spending,
//! checking and refunding cost the same on a bot's 200,000th order of the day as on
//! its first, in bounded memory. The price is resolution, always paid on the safe
//! side: a spend counts for its whole window and at most one bucket longer (a minute
//! of a day), never less.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::decimal::Amount;
use crate::error::{BudgetScope, Denied};
use crate::rate::Rate;

/// The window of `daily_notional`.
pub const DAY: Duration = Duration::from_secs(86_400);

/// Budget limits of one bot or one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Most notional (quote currency) in any 24 hours.
    pub daily_notional: Option<Amount>,
    /// Most orders in any window of the rate's period (`500/d`).
    pub max_orders: Option<Rate>,
    /// Most orders open at once.
    pub max_open_orders: Option<u32>,
}

impl BudgetLimits {
    /// True if any rolling budget is set.
    pub fn is_set(&self) -> bool {
        self.daily_notional.is_some() || self.max_orders.is_some()
    }
}

/// Whose budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// A bot's.
    Bot(Arc<str>),
    /// An account's, shared by its bots.
    Account(Arc<str>),
}

impl Scope {
    fn kind(&self) -> BudgetScope {
        match self {
            Self::Bot(_) => BudgetScope::Bot,
            Self::Account(_) => BudgetScope::Account,
        }
    }
}

/// One request's spending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    /// The request id, so an exchange rejection can refund it.
    pub id: Arc<str>,
    /// When keyward decided on it.
    pub at: SystemTime,
    /// Its orders' notional bound.
    pub notional: Amount,
    /// How many orders it placed or changed.
    pub orders: u32,
}

/// What a scope has spent in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Notional.
    pub notional: Amount,
    /// Orders.
    pub orders: u64,
}

/// Buckets a window is cut into: a spend counts for its whole window and at most one
/// bucket (a 1440th of the window: a minute of a day) longer, never shorter.
const BUCKETS: u64 = 1_440;

/// How long after a spend its refund is still accepted. An exchange answers within
/// `upstream_timeout_ms` (at most two minutes); a refund arriving later than this
/// finds nothing to give back and the spend stays, which errs on the safe side.
const REFUND_WINDOW: Duration = Duration::from_secs(600);

/// One bucket: what was spent in it.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    index: u64,
    used: Usage,
}

/// A rolling window as [`BUCKETS`] buckets with a running total: recording, checking
/// and refunding take constant time whatever the window holds (a bot placing
/// 200,000 orders a day), and the memory is at most `BUCKETS + 1` buckets.
#[derive(Debug, Clone)]
struct Window {
    length: Duration,
    /// Nanoseconds per bucket.
    width: u128,
    /// Non-empty buckets, oldest first.
    buckets: VecDeque<Bucket>,
    /// The sum of `buckets`.
    total: Usage,
}

impl Window {
    fn new(length: Duration) -> Self {
        Self {
            length,
            width: length.as_nanos().div_ceil(u128::from(BUCKETS)).max(1),
            buckets: VecDeque::new(),
            total: Usage::default(),
        }
    }

    fn index(&self, at: SystemTime) -> u64 {
        let since_epoch = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_nanos() / self.width).unwrap_or(u64::MAX)
    }

    /// The oldest bucket still in the window at `now`: the window's length back, and
    /// the bucket `now - length` falls in counted whole.
    fn oldest_live(&self, now: SystemTime) -> u64 {
        self.index(now).saturating_sub(BUCKETS)
    }

    /// Drops the buckets that left the window by `now`.
    fn expire(&mut self, now: SystemTime) {
        let oldest = self.oldest_live(now);
        while let Some(bucket) = self.buckets.front().copied() {
            if bucket.index >= oldest {
                break;
            }
            self.total = self.total.minus(bucket.used);
            self.buckets.pop_front();
        }
    }

    /// What is spent in the window at `now`, without dropping anything (bounded by
    /// the buckets that left the window since the last [`Window::expire`]).
    fn used(&self, now: SystemTime) -> Usage {
        let oldest = self.oldest_live(now);
        self.buckets
            .iter()
            .take_while(|bucket| bucket.index < oldest)
            .fold(self.total, |total, bucket| total.minus(bucket.used))
    }

    /// Adds `used` at `at`. A spend is never dropped for being older than the newest
    /// bucket: after the host's clock is set back, the spends decided at the corrected
    /// time must still count (the buckets from the wrong time count too, until they
    /// leave the window: the ledger errs on the side of having spent).
    fn add(&mut self, at: SystemTime, used: Usage) {
        let index = self.index(at);
        match self.buckets.back_mut() {
            Some(last) if last.index == index => last.used = last.used.plus(used),
            Some(last) if last.index < index => self.buckets.push_back(Bucket { index, used }),
            None => self.buckets.push_back(Bucket { index, used }),
            // Decided a moment before the newest spend (clocks read under different
            // locks): its own bucket, found by search.
            Some(_) => match self.buckets.binary_search_by_key(&index, |b| b.index) {
                Ok(found) => self.buckets[found].used = self.buckets[found].used.plus(used),
                Err(at) => self.buckets.insert(at, Bucket { index, used }),
            },
        }
        self.total = self.total.plus(used);
    }

    /// Takes back `used` from the bucket of `at`, if that bucket is still there.
    fn subtract(&mut self, at: SystemTime, used: Usage) {
        let index = self.index(at);
        if let Ok(found) = self.buckets.binary_search_by_key(&index, |b| b.index) {
            let bucket = &mut self.buckets[found];
            let taken = Usage {
                notional: used.notional.min(bucket.used.notional),
                orders: used.orders.min(bucket.used.orders),
            };
            bucket.used = bucket.used.minus(taken);
            self.total = self.total.minus(taken);
        }
    }

    /// This window's spending moved into a window of another length: each bucket's
    /// spending placed at the end of its bucket, so that it never leaves the new
    /// window earlier than it would have left this one.
    fn resized(&self, length: Duration) -> Self {
        let mut resized = Self::new(length);
        for bucket in &self.buckets {
            let end_nanos = (u128::from(bucket.index) + 1) * self.width - 1;
            let end = u64::try_from(end_nanos).map_or(SystemTime::UNIX_EPOCH, |n| {
                SystemTime::UNIX_EPOCH + Duration::from_nanos(n)
            });
            resized.add(end, bucket.used);
        }
        resized
    }
}

impl Usage {
    fn plus(self, other: Self) -> Self {
        Self {
            notional: self.notional.saturating_add(other.notional),
            orders: self.orders.saturating_add(other.orders),
        }
    }

    fn minus(self, other: Self) -> Self {
        Self {
            notional: self.notional.saturating_sub(other.notional),
            orders: self.orders.saturating_sub(other.orders),
        }
    }
}

/// A scope's limits and its two windows: `daily_notional`'s day and `max_orders`'s
/// period.
#[derive(Debug, Default)]
struct Tracked {
    limits: BudgetLimits,
    day: Option<Window>,
    orders: Option<Window>,
}

impl Tracked {
    fn windows_mut(&mut self) -> impl Iterator<Item = &mut Window> {
        self.day.iter_mut().chain(self.orders.iter_mut())
    }
}

/// What a spend took from which scopes, kept for [`REFUND_WINDOW`] so that a refund
/// finds it by id in constant time.
#[derive(Debug)]
struct Receipt {
    at: SystemTime,
    scopes: Vec<Scope>,
    used: Usage,
}

/// Every scope's recent spending.
#[derive(Debug, Default)]
pub struct Ledger {
    scopes: HashMap<Scope, Tracked>,
    receipts: HashMap<Arc<str>, Receipt>,
    /// Receipt ids oldest first, for dropping them after [`REFUND_WINDOW`].
    receipt_order: VecDeque<(SystemTime, Arc<str>)>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or, on reload, replaces) a scope's limits; spending so far is kept, also
    /// when a window's length changes. A scope without rolling budgets is not tracked.
    pub fn set_limits(&mut self, scope: Scope, limits: BudgetLimits) {
        if !limits.is_set() {
            self.scopes.remove(&scope);
            return;
        }
        let tracked = self.scopes.entry(scope).or_default();
        // Each new window starts from the widest old one (a copy when the length is
        // unchanged): a reload neither forgets spending nor lets a new limit start
        // from zero when the history is there.
        let old = [&tracked.day, &tracked.orders];
        let widest = old.into_iter().flatten().max_by_key(|window| window.length);
        // A window of the same length is kept exactly; only a new length is rebuilt
        // from the widest, at bucket resolution.
        let carried = |length| {
            old.into_iter()
                .flatten()
                .find(|window| window.length == length)
                .cloned()
                .unwrap_or_else(|| {
                    widest.map_or_else(|| Window::new(length), |w| w.resized(length))
                })
        };
        let day = limits.daily_notional.map(|_| carried(DAY));
        let orders = limits.max_orders.map(|rate| carried(rate.period()));
        *tracked = Tracked {
            limits,
            day,
            orders,
        };
    }

    /// Drops scopes that are no longer configured.
    pub fn retain(&mut self, keep: impl Fn(&Scope) -> bool) {
        self.scopes.retain(|scope, _| keep(scope));
    }

    /// What `scope` spent at `now`: in the last day (`daily_notional`'s window) and in
    /// its `max_orders` window; nothing for a window the scope has no limit on.
    pub fn used(&self, scope: &Scope, now: SystemTime) -> (Usage, Usage) {
        let Some(tracked) = self.scopes.get(scope) else {
            return (Usage::default(), Usage::default());
        };
        let used =
            |window: &Option<Window>| window.as_ref().map_or(Usage::default(), |w| w.used(now));
        (used(&tracked.day), used(&tracked.orders))
    }

    /// The limits of `scope`, if it has any.
    pub fn limits(&self, scope: &Scope) -> Option<BudgetLimits> {
        self.scopes.get(scope).map(|a| a.limits)
    }

    /// Refuses `spend` if it would take any of `scopes` past a limit; records
    /// nothing either way.
    pub fn check(&self, scopes: &[Scope], spend: &Spend) -> Result<(), Denied> {
        for scope in scopes {
            let Some(tracked) = self.scopes.get(scope) else {
                continue;
            };
            if let (Some(limit), Some(day)) = (tracked.limits.daily_notional, &tracked.day) {
                let used = day.used(spend.at).notional;
                if used.saturating_add(spend.notional) > limit {
                    return Err(Denied::DailyNotionalExceeded {
                        scope: scope.kind(),
                        used,
                        adding: spend.notional,
                        limit,
                    });
                }
            }
            if let (Some(rate), Some(window)) = (tracked.limits.max_orders, &tracked.orders) {
                let used = window.used(spend.at).orders;
                if used + u64::from(spend.orders) > u64::from(rate.count().get()) {
                    return Err(Denied::MaxOrdersExceeded {
                        scope: scope.kind(),
                        used,
                        limit: rate,
                    });
                }
            }
        }
        Ok(())
    }

    /// Records `spend` against every tracked scope among `scopes`.
    pub fn record(&mut self, scopes: &[Scope], spend: &Spend) {
        let used = Usage {
            notional: spend.notional,
            orders: u64::from(spend.orders),
        };
        let mut charged = Vec::new();
        for scope in scopes {
            if let Some(tracked) = self.scopes.get_mut(scope) {
                for window in tracked.windows_mut() {
                    window.expire(spend.at);
                    window.add(spend.at, used);
                }
                charged.push(scope.clone());
            }
        }
        let forget_before = spend
            .at
            .checked_sub(REFUND_WINDOW)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        while let Some((at, id)) = self.receipt_order.front() {
            if *at >= forget_before {
                break;
            }
            // Only the receipt recorded under this entry: an id spent again later
            // keeps its newer receipt.
            if self.receipts.get(id).is_some_and(|r| r.at == *at) {
                self.receipts.remove(id);
            }
            self.receipt_order.pop_front();
        }
        if !charged.is_empty() {
            self.receipts.insert(
                spend.id.clone(),
                Receipt {
                    at: spend.at,
                    scopes: charged,
                    used,
                },
            );
            self.receipt_order.push_back((spend.at, spend.id.clone()));
        }
    }

    /// [`Ledger::check`] then [`Ledger::record`], as one step.
    pub fn spend(&mut self, scopes: &[Scope], spend: &Spend) -> Result<(), Denied> {
        self.check(scopes, spend)?;
        self.record(scopes, spend);
        Ok(())
    }

    /// Gives back what request `id` spent (the exchange refused it outright).
    pub fn refund(&mut self, id: &str) {
        if let Some(receipt) = self.receipts.remove(id) {
            self.give_back(receipt.at, &receipt.scopes, receipt.used);
        }
    }

    /// Gives back part of what request `id` spent: the orders of it the exchange
    /// proved it did not place, and their notional.
    pub fn refund_part(&mut self, id: &str, notional: Amount, orders: u32) {
        let Some(receipt) = self.receipts.get_mut(id) else {
            return;
        };
        let part = Usage {
            notional: notional.min(receipt.used.notional),
            orders: u64::from(orders).min(receipt.used.orders),
        };
        receipt.used = receipt.used.minus(part);
        let (at, scopes) = (receipt.at, receipt.scopes.clone());
        if receipt.used == Usage::default() {
            self.receipts.remove(id);
        }
        self.give_back(at, &scopes, part);
    }

    fn give_back(&mut self, at: SystemTime, scopes: &[Scope], part: Usage) {
        for scope in scopes {
            if let Some(tracked) = self.scopes.get_mut(scope) {
                for window in tracked.windows_mut() {
                    window.subtract(at, part);
                }
            }
        }
    }
}

/// A ledger's spending as plain data: what keyward writes to its checkpoint at a clean
/// stop, so that the next start reads back one small file instead of replaying a
/// day of audit records. Limits are not part of it: they come from the
/// configuration in force when it is read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    /// Every tracked scope's windows.
    pub scopes: Vec<ScopeState>,
    /// Spends that can still be refunded.
    pub receipts: Vec<ReceiptState>,
}

/// A scope's name as plain data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeName {
    /// A bot's.
    Bot(String),
    /// An account's.
    Account(String),
}

/// One scope's windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeState {
    /// Whose.
    pub scope: ScopeName,
    /// Its `daily_notional` window, if it had one.
    pub day: Option<WindowState>,
    /// Its `max_orders` window, if it had one.
    pub orders: Option<WindowState>,
}

/// One window's non-empty buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowState {
    /// The window's length in seconds.
    pub length_secs: u64,
    /// `(bucket index, notional in 10^-18 units, orders)`, oldest first.
    pub buckets: Vec<(u64, u128, u64)>,
}

/// A refundable spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptState {
    /// The request id.
    pub id: String,
    /// When it was spent, in nanoseconds since the Unix epoch.
    pub at_nanos: u64,
    /// The scopes it was charged to.
    pub scopes: Vec<ScopeName>,
    /// Notional still refundable, in 10^-18 units.
    pub notional: u128,
    /// Orders still refundable.
    pub orders: u64,
}

/// Why a [`LedgerState`] cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget state: {0}")]
pub struct LedgerStateError(&'static str);

impl ScopeName {
    fn of(scope: &Scope) -> Self {
        match scope {
            Scope::Bot(name) => Self::Bot(name.to_string()),
            Scope::Account(name) => Self::Account(name.to_string()),
        }
    }

    fn scope(&self) -> Scope {
        match self {
            Self::Bot(name) => Scope::Bot(Arc::from(name.as_str())),
            Self::Account(name) => Scope::Account(Arc::from(name.as_str())),
        }
    }
}

fn nanos_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Window {
    fn state(&self) -> WindowState {
        WindowState {
            length_secs: self.length.as_secs(),
            buckets: self
                .buckets
                .iter()
                .map(|b| (b.index, b.used.notional.to_units(), b.used.orders))
                .collect(),
        }
    }

    fn from_state(state: &WindowState) -> Result<Self, LedgerStateError> {
        if state.length_secs == 0 {
            return Err(LedgerStateError("a window of no length"));
        }
        let mut window = Self::new(Duration::from_secs(state.length_secs));
        let mut previous = None;
        for &(index, notional, orders) in &state.buckets {
            if previous.is_some_and(|p| p >= index) {
                return Err(LedgerStateError("buckets out of order"));
            }
            previous = Some(index);
            let used = Usage {
                notional: Amount::from_units(notional),
                orders,
            };
            window.buckets.push_back(Bucket { index, used });
            // The total is summed here, never read from the file.
            window.total = window.total.plus(used);
        }
        Ok(window)
    }
}

impl Ledger {
    /// The spending of every tracked scope and the refundable spends, as plain data.
    pub fn state(&self) -> LedgerState {
        let mut scopes: Vec<ScopeState> = self
            .scopes
            .iter()
            .map(|(scope, tracked)| ScopeState {
                scope: ScopeName::of(scope),
                day: tracked.day.as_ref().map(Window::state),
                orders: tracked.orders.as_ref().map(Window::state),
            })
            .collect();
        scopes.sort_by(|a, b| a.scope.cmp(&b.scope));
        let receipts = self
            .receipt_order
            .iter()
            .filter_map(|(at, id)| {
                let receipt = self.receipts.get(id).filter(|r| r.at == *at)?;
                Some(ReceiptState {
                    id: id.to_string(),
                    at_nanos: nanos_since_epoch(receipt.at),
                    scopes: receipt.scopes.iter().map(ScopeName::of).collect(),
                    notional: receipt.used.notional.to_units(),
                    orders: receipt.used.orders,
                })
            })
            .collect();
        LedgerState { scopes, receipts }
    }

    /// A ledger holding `state`'s spending, with no limits yet: the caller sets them
    /// from its configuration ([`Ledger::set_limits`]), which keeps a window of an
    /// unchanged length exactly as it was.
    pub fn from_state(state: &LedgerState) -> Result<Self, LedgerStateError> {
        let mut ledger = Self::new();
        for scope in &state.scopes {
            let tracked = Tracked {
                limits: BudgetLimits::default(),
                day: scope.day.as_ref().map(Window::from_state).transpose()?,
                orders: scope.orders.as_ref().map(Window::from_state).transpose()?,
            };
            if ledger.scopes.insert(scope.scope.scope(), tracked).is_some() {
                return Err(LedgerStateError("a scope listed twice"));
            }
        }
        let mut previous = 0;
        for receipt in &state.receipts {
            if receipt.at_nanos < previous {
                return Err(LedgerStateError("receipts out of order"));
            }
            previous = receipt.at_nanos;
            let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(receipt.at_nanos);
            let id: Arc<str> = Arc::from(receipt.id.as_str());
            ledger.receipts.insert(
                id.clone(),
                Receipt {
                    at,
                    scopes: receipt.scopes.iter().map(ScopeName::scope).collect(),
                    used: Usage {
                        notional: Amount::from_units(receipt.notional),
                        orders: receipt.orders,
                    },
                },
            );
            ledger.receipt_order.push_back((at, id));
        }
        Ok(ledger)
    }

    /// True if `scope` has spending windows (configured budgets, or read back from a
    /// [`LedgerState`]).
    pub fn tracks(&self, scope: &Scope) -> bool {
        self.scopes.contains_key(scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn spend(id: &str, seconds: u64, notional: &str, orders: u32) -> Spend {
        Spend {
            id: Arc::from(id),
            at: at(seconds),
            notional: notional.parse().unwrap(),
            orders,
        }
    }

    fn ledger() -> (Ledger, Vec<Scope>) {
        let mut ledger = Ledger::new();
        let bot = Scope::Bot(Arc::from("grid"));
        let account = Scope::Account(Arc::from("main"));
        ledger.set_limits(
            bot.clone(),
            BudgetLimits {
                daily_notional: Some("100".parse().unwrap()),
                max_orders: None,
                max_open_orders: None,
            },
        );
        ledger.set_limits(
            account.clone(),
            BudgetLimits {
                daily_notional: None,
                max_orders: Some("3/h".parse().unwrap()),
                max_open_orders: None,
            },
        );
        (ledger, vec![bot, account])
    }

    #[test]
    fn many_small_spends_stop_at_the_daily_budget_and_roll_off() {
        let (mut ledger, scopes) = ledger();
        let scopes = &scopes[..1];
        for n in 0..3 {
            ledger
                .spend(scopes, &spend(&format!("r{n}"), n * 60, "30", 1))
                .unwrap();
        }
        let denied = ledger
            .spend(scopes, &spend("r3", 200, "30", 1))
            .unwrap_err();
        assert_eq!(denied.reason(), "daily_notional_exceeded");
        assert!(denied.to_string().contains("90"), "{denied}");
        ledger.spend(scopes, &spend("r4", 200, "10", 1)).unwrap();
        // A spend counts for its whole day, and at most one bucket (a minute) longer.
        assert!(ledger.spend(scopes, &spend("r5", 86_399, "30", 1)).is_err());
        ledger.spend(scopes, &spend("r6", 86_460, "30", 1)).unwrap();
    }

    #[test]
    fn order_counts_are_per_window_and_shared_by_the_account() {
        let (mut ledger, scopes) = ledger();
        let account = &scopes[1..];
        ledger.spend(account, &spend("a", 0, "1", 2)).unwrap();
        ledger.spend(account, &spend("b", 10, "1", 1)).unwrap();
        let denied = ledger.spend(account, &spend("c", 20, "1", 1)).unwrap_err();
        assert_eq!(denied.reason(), "max_orders_exceeded");
        // An hour window's bucket is 2.5 s: "a" left it by 3,600 + 2.5 s.
        assert!(ledger.spend(account, &spend("d", 3_599, "1", 2)).is_err());
        ledger.spend(account, &spend("e", 3_603, "1", 2)).unwrap();
    }

    #[test]
    fn a_refused_spend_records_nothing_and_a_refund_gives_back() {
        let (mut ledger, scopes) = ledger();
        ledger.spend(&scopes, &spend("a", 0, "90", 1)).unwrap();
        assert!(ledger.spend(&scopes, &spend("b", 1, "20", 1)).is_err());
        assert_eq!(
            ledger.used(&scopes[1], at(2)).1.orders,
            1,
            "the refused spend touched no scope"
        );
        ledger.refund("a");
        ledger.spend(&scopes, &spend("c", 3, "90", 1)).unwrap();
    }

    #[test]
    fn a_partial_refund_gives_back_only_what_did_not_happen() {
        let (mut ledger, scopes) = ledger();
        ledger.spend(&scopes, &spend("a", 0, "90", 2)).unwrap();
        ledger.refund_part("a", "40".parse().unwrap(), 1);
        let usage = ledger.used(&scopes[0], at(1)).0;
        assert_eq!(usage.notional, "50".parse().unwrap());
        assert_eq!(ledger.used(&scopes[1], at(1)).1.orders, 1);
        // What is left still counts against the budget.
        assert!(ledger.spend(&scopes, &spend("b", 2, "51", 1)).is_err());
        ledger.spend(&scopes, &spend("c", 2, "50", 1)).unwrap();
    }

    #[test]
    fn untracked_scopes_cost_nothing() {
        let mut ledger = Ledger::new();
        let scope = Scope::Bot(Arc::from("free"));
        ledger.set_limits(scope.clone(), BudgetLimits::default());
        ledger
            .spend(
                std::slice::from_ref(&scope),
                &spend("a", 0, "1000000", 1000),
            )
            .unwrap();
        assert_eq!(
            ledger.used(&scope, at(1)),
            (Usage::default(), Usage::default())
        );
    }

    /// The buckets against an exact ledger of every spend: what is used is never
    /// less than the spends inside the window, never more than those inside the
    /// window plus one bucket, whatever the times, refunds and reload in between.
    #[test]
    fn buckets_never_undercount_and_overcount_by_at_most_one_bucket() {
        use proptest::prelude::*;
        let day_width = DAY.as_secs_f64() / BUCKETS as f64;
        let orders_period = Duration::from_secs(600);
        let orders_width = orders_period.as_secs_f64() / BUCKETS as f64;
        let steps = prop::collection::vec((0u64..4_000, 1u64..1_000, 1u32..4, 0u8..10), 1..200);
        proptest!(ProptestConfig::with_cases(64), |(steps in steps)| {
            let mut ledger = Ledger::new();
            let scope = Scope::Bot(Arc::from("grid"));
            ledger.set_limits(scope.clone(), BudgetLimits {
                daily_notional: Some("1000000000".parse().unwrap()),
                max_orders: Some("1000000/10m".parse().unwrap()),
                max_open_orders: None,
            });
            // (at in ms, notional, orders) of every spend not refunded.
            let mut exact: Vec<(u64, u64, u64)> = Vec::new();
            let mut now_ms = 0u64;
            for (n, (gap_ms, notional, orders, action)) in steps.into_iter().enumerate() {
                // Mostly forward in time, in jumps from milliseconds to hours.
                now_ms += gap_ms * 10u64.pow(u32::from(action % 4));
                let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + now_ms);
                let id = format!("r{n}");
                ledger.record(std::slice::from_ref(&scope), &Spend {
                    id: Arc::from(id.as_str()),
                    at,
                    notional: Amount::from_units(u128::from(notional)),
                    orders,
                });
                exact.push((now_ms, notional, u64::from(orders)));
                if action == 9 {
                    // The exchange refused it at once.
                    ledger.refund(&id);
                    exact.pop();
                }
                let (day, window) = ledger.used(&scope, at);
                let within = |length_s: f64| {
                    exact.iter()
                        .filter(|(t, _, _)| ((now_ms - t) as f64) < length_s * 1000.0)
                        .fold((0u64, 0u64), |(sum, count), (_, notional, orders)| (sum + notional, count + orders))
                };
                let (day_low, _) = within(DAY.as_secs_f64());
                let (day_high, _) = within(DAY.as_secs_f64() + day_width + 0.001);
                let (_, orders_low) = within(orders_period.as_secs_f64());
                let (_, orders_high) = within(orders_period.as_secs_f64() + orders_width + 0.001);
                prop_assert!(day.notional >= Amount::from_units(u128::from(day_low)), "{} < {day_low}", day.notional);
                prop_assert!(day.notional <= Amount::from_units(u128::from(day_high)), "{} > {day_high}", day.notional);
                prop_assert!(window.orders >= orders_low, "{} < {orders_low}", window.orders);
                prop_assert!(window.orders <= orders_high, "{} > {orders_high}", window.orders);
            }
        });
    }

    #[test]
    fn spends_after_the_clock_is_set_back_still_count() {
        let (mut ledger, scopes) = ledger();
        let scopes = &scopes[..1];
        // Decided while the host's clock ran two days fast...
        ledger
            .spend(scopes, &spend("ahead", 2 * 86_400, "10", 1))
            .unwrap();
        // ...then the clock is corrected: every spend from here on counts.
        for n in 0..9 {
            ledger
                .spend(scopes, &spend(&format!("r{n}"), n, "10", 1))
                .unwrap();
        }
        assert_eq!(
            ledger.used(&scopes[0], at(10)).0.notional,
            "100".parse().unwrap()
        );
        let denied = ledger
            .spend(scopes, &spend("over", 10, "1", 1))
            .unwrap_err();
        assert_eq!(denied.reason(), "daily_notional_exceeded");
    }

    #[test]
    fn a_window_of_another_length_keeps_what_was_spent() {
        let (mut ledger, scopes) = ledger();
        ledger.spend(&scopes, &spend("a", 0, "10", 2)).unwrap();
        // Reload: the account's max_orders goes from 3/h to 2/d, the bot gains one.
        ledger.set_limits(
            scopes[1].clone(),
            BudgetLimits {
                daily_notional: None,
                max_orders: Some("2/d".parse().unwrap()),
                max_open_orders: None,
            },
        );
        let denied = ledger
            .spend(&scopes[1..], &spend("b", 7_200, "1", 1))
            .unwrap_err();
        assert_eq!(denied.reason(), "max_orders_exceeded");
        ledger.set_limits(
            scopes[0].clone(),
            BudgetLimits {
                daily_notional: Some("100".parse().unwrap()),
                max_orders: Some("2/d".parse().unwrap()),
                max_open_orders: None,
            },
        );
        assert_eq!(ledger.used(&scopes[0], at(7_200)).1.orders, 2);
    }

    #[test]
    fn a_refund_long_after_its_spend_gives_nothing_back() {
        let (mut ledger, scopes) = ledger();
        ledger.spend(&scopes, &spend("a", 0, "90", 1)).unwrap();
        // Eleven minutes of other spending later, "a"'s receipt is gone: it stays spent.
        ledger
            .spend(&scopes[..1], &spend("b", 660, "1", 1))
            .unwrap();
        ledger.refund("a");
        assert_eq!(
            ledger.used(&scopes[0], at(661)).0.notional,
            "91".parse().unwrap()
        );
    }

    #[test]
    fn a_ledger_read_back_from_its_state_spends_and_refunds_the_same() {
        let (mut ledger, scopes) = ledger();
        ledger.spend(&scopes, &spend("a", 0, "40", 1)).unwrap();
        ledger.spend(&scopes, &spend("b", 100, "30", 1)).unwrap();
        ledger.refund_part("b", "10".parse().unwrap(), 0);
        let state = ledger.state();
        let mut restored = Ledger::from_state(&state).unwrap();
        assert_eq!(restored.state(), state);
        // Limits come from the configuration; a window of the same length is kept as
        // it was, not rebuilt at a coarser resolution.
        for scope in &scopes {
            restored.set_limits(scope.clone(), ledger.limits(scope).unwrap());
        }
        assert_eq!(restored.state(), state);
        for scope in &scopes {
            assert_eq!(restored.used(scope, at(200)), ledger.used(scope, at(200)));
        }
        // Receipts came back too: a refund after the restart gives back what it took.
        restored.refund("a");
        assert_eq!(
            restored.used(&scopes[0], at(200)).0.notional,
            "20".parse().unwrap()
        );
        assert_eq!(restored.used(&scopes[1], at(200)).1.orders, 1);
        // The same limits apply: 3 orders an hour on the account.
        restored.spend(&scopes, &spend("c", 300, "1", 1)).unwrap();
        restored.spend(&scopes, &spend("d", 301, "1", 1)).unwrap();
        assert!(restored.spend(&scopes, &spend("e", 302, "1", 1)).is_err());
    }

    #[test]
    fn a_damaged_state_is_refused() {
        let (mut ledger, scopes) = ledger();
        ledger.spend(&scopes, &spend("a", 0, "40", 1)).unwrap();
        ledger.spend(&scopes, &spend("b", 300, "30", 1)).unwrap();
        let mut state = ledger.state();
        let first = &mut state.scopes[0];
        let window = match first.day.as_mut() {
            Some(day) => day,
            None => first.orders.as_mut().unwrap(),
        };
        window.buckets.reverse();
        assert!(Ledger::from_state(&state).is_err());
        let mut state = ledger.state();
        state.scopes.push(state.scopes[0].clone());
        assert!(Ledger::from_state(&state).is_err());
        let mut state = ledger.state();
        state.receipts.reverse();
        assert!(Ledger::from_state(&state).is_err());
    }
}
