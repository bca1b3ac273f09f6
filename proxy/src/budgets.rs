//! Budgets that survive restarts.
//!
//! Rolling budgets (`daily_notional`, `max_orders`, per bot and per account) are spent
//! when keyward decides to forward an order, before the audit record is written, and
//! given back only for the orders the exchange's answer proves it did not place (a
//! refusal of the whole request, a refused element of a batch, the failed half of a
//! cancel-replace); an unknown outcome (timeout, 5xx) stays spent. Because every
//! forwarded order is in the audit log before it is sent, and every refund in its
//! outcome record, the ledger is rebuilt from the log at start: a restart, a crash or
//! `kill -9` loses nothing. (Open orders are [`crate::orders`]'s.)

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use keyward_policy::{Amount, BudgetLimits, Denied, Ledger, Scope, Spend, Usage};

use crate::config::Config;

/// The longest window a budget may have (`max_orders` over at most 7 days).
const HORIZON: Duration = Duration::from_secs(7 * 86_400);

/// Rolling budgets for every bot and account.
#[derive(Debug, Default)]
pub struct Budgets {
    ledger: Mutex<Ledger>,
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
        // In the log's order: a refund finds its spend's receipt only while it is
        // recent (the ledger keeps receipts for minutes, not for the whole window).
        let mut count = 0usize;
        for event in replay(audit_file, now) {
            match event {
                Replayed::Spent(scopes, spend) => {
                    count += 1;
                    ledger.record(&scopes, &spend);
                }
                Replayed::Refunded(Refund::Whole(id)) => ledger.refund(&id),
                Replayed::Refunded(Refund::Part(id, notional, orders)) => {
                    ledger.refund_part(&id, notional, orders);
                }
            }
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

    /// Gives back part of what request `id` spent.
    pub fn refund_part(&self, id: &str, notional: Amount, orders: u32) {
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refund_part(id, notional, orders);
    }

    /// Used and limit of each budget of `scope`, for explanations and metrics.
    pub fn report(&self, scope: &Scope, now: SystemTime) -> Option<(BudgetLimits, Usage, Usage)> {
        let ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = ledger.limits(scope)?;
        let (day, window) = ledger.used(scope, now);
        Some((limits, day, window))
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

/// A refund the audit log records.
enum Refund {
    /// Everything the request spent (records written before partial refunds).
    Whole(String),
    /// Part of it: notional and orders.
    Part(String, Amount, u32),
}

/// What the audit log says happened to the budgets, in its order.
enum Replayed {
    /// Orders forwarded.
    Spent([Scope; 2], Spend),
    /// What the exchange's answer gave back.
    Refunded(Refund),
}

/// Every audit record within `HORIZON` (7 days) of `now`, oldest first, for the rebuilds at
/// start (budgets here, orders in [`crate::orders`]).
pub fn each_audit_record(
    audit_file: &Path,
    now: SystemTime,
    mut f: impl FnMut(&serde_json::Value),
) {
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
            if let Ok(record) = serde_json::from_str::<serde_json::Value>(line) {
                f(&record);
            }
        }
    }
}

/// Every forwarded order in the audit log within [`HORIZON`] of `now`, and what the
/// exchange's answers gave back.
fn replay(audit_file: &Path, now: SystemTime) -> Vec<Replayed> {
    let since = now.checked_sub(HORIZON).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut events = Vec::new();
    each_audit_record(audit_file, now, |record| match record["event"].as_str() {
        Some("request") => {
            if let Some((scopes, spend)) = spent(record).filter(|(_, s)| s.at >= since) {
                events.push(Replayed::Spent(scopes, spend));
            }
        }
        Some("outcome") => {
            let Some(id) = record["request_id"].as_str() else {
                return;
            };
            let part = record["refunded_orders"].as_u64().and_then(|orders| {
                let notional: Amount = record["refunded_notional"].as_str()?.parse().ok()?;
                Some((notional, u32::try_from(orders).ok()?))
            });
            match part {
                Some((notional, orders)) => {
                    events.push(Replayed::Refunded(Refund::Part(
                        id.to_owned(),
                        notional,
                        orders,
                    )));
                }
                None if record.get("refunded_orders").is_none() && refused_by_exchange(record) => {
                    events.push(Replayed::Refunded(Refund::Whole(id.to_owned())));
                }
                None => {}
            }
        }
        _ => {}
    });
    events
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
