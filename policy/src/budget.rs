//! Budgets over rolling windows, per bot and per account: total notional in the last
//! 24 hours (`daily_notional`) and number of orders in a window (`max_orders`). They
//! stop the salami attack, many small orders each under the per-order cap.
//!
//! The [`Ledger`] is pure bookkeeping with the time passed in: the proxy spends from
//! it when it decides, refunds when the exchange rejects an order outright, and
//! rebuilds it from its audit log after a restart. An order whose outcome is unknown
//! (a timeout, a 5xx) stays spent.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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

    fn horizon(&self) -> Duration {
        let orders = self.max_orders.map_or(Duration::ZERO, |r| r.period());
        let notional = if self.daily_notional.is_some() {
            DAY
        } else {
            Duration::ZERO
        };
        orders.max(notional)
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

#[derive(Debug, Default)]
struct Account {
    limits: BudgetLimits,
    spends: VecDeque<Spend>,
}

/// Every scope's recent spending.
#[derive(Debug, Default)]
pub struct Ledger {
    scopes: HashMap<Scope, Account>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or, on reload, replaces) a scope's limits; spending so far is kept. A
    /// scope without rolling budgets is not tracked.
    pub fn set_limits(&mut self, scope: Scope, limits: BudgetLimits) {
        if limits.is_set() {
            self.scopes.entry(scope).or_default().limits = limits;
        } else {
            self.scopes.remove(&scope);
        }
    }

    /// Drops scopes that are no longer configured.
    pub fn retain(&mut self, keep: impl Fn(&Scope) -> bool) {
        self.scopes.retain(|scope, _| keep(scope));
    }

    /// What `scope` spent in the `window` before `now`.
    pub fn usage(&self, scope: &Scope, now: SystemTime, window: Duration) -> Usage {
        let Some(account) = self.scopes.get(scope) else {
            return Usage::default();
        };
        let since = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        account
            .spends
            .iter()
            .filter(|s| s.at > since)
            .fold(Usage::default(), |sum, s| Usage {
                notional: sum.notional.saturating_add(s.notional),
                orders: sum.orders + u64::from(s.orders),
            })
    }

    /// The limits of `scope`, if it has any.
    pub fn limits(&self, scope: &Scope) -> Option<BudgetLimits> {
        self.scopes.get(scope).map(|a| a.limits)
    }

    /// Refuses `spend` if it would take any of `scopes` past a limit; records
    /// nothing either way.
    pub fn check(&self, scopes: &[Scope], spend: &Spend) -> Result<(), Denied> {
        for scope in scopes {
            let Some(account) = self.scopes.get(scope) else {
                continue;
            };
            let limits = account.limits;
            if let Some(limit) = limits.daily_notional {
                let used = self.usage(scope, spend.at, DAY).notional;
                if used.saturating_add(spend.notional) > limit {
                    return Err(Denied::DailyNotionalExceeded {
                        scope: scope.kind(),
                        used,
                        adding: spend.notional,
                        limit,
                    });
                }
            }
            if let Some(rate) = limits.max_orders {
                let used = self.usage(scope, spend.at, rate.period()).orders;
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
        for scope in scopes {
            if let Some(account) = self.scopes.get_mut(scope) {
                let since = spend
                    .at
                    .checked_sub(account.limits.horizon())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                while account.spends.front().is_some_and(|s| s.at <= since) {
                    account.spends.pop_front();
                }
                account.spends.push_back(spend.clone());
            }
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
        for account in self.scopes.values_mut() {
            account.spends.retain(|s| &*s.id != id);
        }
    }

    /// Gives back part of what request `id` spent: the orders of it the exchange
    /// proved it did not place, and their notional.
    pub fn refund_part(&mut self, id: &str, notional: Amount, orders: u32) {
        for account in self.scopes.values_mut() {
            for spend in account.spends.iter_mut().filter(|s| &*s.id == id) {
                spend.notional = spend.notional.saturating_sub(notional);
                spend.orders = spend.orders.saturating_sub(orders);
            }
            account
                .spends
                .retain(|s| &*s.id != id || s.orders > 0 || s.notional > Amount::ZERO);
        }
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
        // A day after the first spend, it no longer counts.
        ledger.spend(scopes, &spend("r5", 86_401, "30", 1)).unwrap();
    }

    #[test]
    fn order_counts_are_per_window_and_shared_by_the_account() {
        let (mut ledger, scopes) = ledger();
        let account = &scopes[1..];
        ledger.spend(account, &spend("a", 0, "1", 2)).unwrap();
        ledger.spend(account, &spend("b", 10, "1", 1)).unwrap();
        let denied = ledger.spend(account, &spend("c", 20, "1", 1)).unwrap_err();
        assert_eq!(denied.reason(), "max_orders_exceeded");
        ledger.spend(account, &spend("d", 3_601, "1", 2)).unwrap();
    }

    #[test]
    fn a_refused_spend_records_nothing_and_a_refund_gives_back() {
        let (mut ledger, scopes) = ledger();
        ledger.spend(&scopes, &spend("a", 0, "90", 1)).unwrap();
        assert!(ledger.spend(&scopes, &spend("b", 1, "20", 1)).is_err());
        assert_eq!(
            ledger.usage(&scopes[1], at(2), DAY).orders,
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
        let usage = ledger.usage(&scopes[0], at(1), DAY);
        assert_eq!(usage.notional, "50".parse().unwrap());
        assert_eq!(ledger.usage(&scopes[1], at(1), DAY).orders, 1);
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
        assert_eq!(ledger.usage(&scope, at(1), DAY), Usage::default());
    }
}
