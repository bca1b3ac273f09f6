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

use std::borrow::Cow;
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
    /// The replicas' shared state, where budgets are spent and refunded instead of
    /// the local ledger (which then keeps only the limits).
    shared: std::sync::OnceLock<Arc<crate::shared::Shared>>,
    /// With a shared state backend, every scope's spending as last read from it:
    /// what metrics and `explain` show.
    shared_usage: Mutex<std::collections::HashMap<Scope, (Usage, Usage)>>,
}

/// Every bot's and every account's budget limits under `config`.
fn configured(config: &Config) -> impl Iterator<Item = (Scope, BudgetLimits)> + '_ {
    let bots = config
        .policy
        .bots()
        .into_iter()
        .map(|bot| (Scope::Bot(Arc::from(bot.name())), bot.budget()));
    let accounts = config
        .accounts
        .iter()
        .map(|(name, account)| (Scope::Account(Arc::from(name.as_str())), account.budget));
    bots.chain(accounts)
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
    /// rotated files) as of `now`. (At start, [`rebuild_from_audit`] reads the log
    /// once for the budgets and the order record together.)
    pub fn rebuild(config: &Config, audit_file: &Path, now: SystemTime) -> Self {
        let mut replay = BudgetReplay::new(config, now);
        each_audit_record(audit_file, now, |record| replay.feed(&record));
        replay.finish()
    }

    /// Sets every bot's and account's limits (at start and on reload); spending so
    /// far is kept.
    pub fn configure(&self, config: &Config) {
        let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let mut scopes = HashSet::new();
        for (scope, limits) in configured(config) {
            ledger.set_limits(scope.clone(), limits);
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

    /// Spends and refunds from now on in the replicas' shared state (at start).
    pub fn share(&self, shared: Arc<crate::shared::Shared>) {
        let _ = self.shared.set(shared);
    }

    /// Gives back what request `id` of `account` spent.
    pub fn refund(&self, account: &str, id: &str) {
        match self.shared.get() {
            Some(shared) => shared.refund(account, id, None),
            None => self
                .ledger
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refund(id),
        }
    }

    /// Gives back part of what request `id` of `account` spent.
    pub fn refund_part(&self, account: &str, id: &str, notional: Amount, orders: u32) {
        match self.shared.get() {
            Some(shared) => shared.refund(account, id, Some((notional, orders))),
            None => self
                .ledger
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refund_part(id, notional, orders),
        }
    }

    /// Every scope's spending as plain data, for the checkpoint.
    pub fn state(&self) -> keyward_policy::LedgerState {
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .state()
    }

    /// Used and limit of each budget of `scope`, for explanations and metrics.
    pub fn report(&self, scope: &Scope, now: SystemTime) -> Option<(BudgetLimits, Usage, Usage)> {
        let ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = ledger.limits(scope)?;
        let (day, window) = match self.shared.get() {
            Some(_) => self
                .shared_usage
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(scope)
                .copied()
                .unwrap_or_default(),
            None => ledger.used(scope, now),
        };
        Some((limits, day, window))
    }

    /// Every budget's limits under `config`, by account, for reading their spending
    /// from the shared state.
    pub fn configured_by_account(
        config: &Config,
    ) -> std::collections::BTreeMap<String, Vec<(Scope, BudgetLimits)>> {
        let mut by_account: std::collections::BTreeMap<String, Vec<(Scope, BudgetLimits)>> =
            std::collections::BTreeMap::new();
        for (scope, limits) in configured(config).filter(|(_, limits)| limits.is_set()) {
            let account = match &scope {
                Scope::Account(name) => Some(name.to_string()),
                Scope::Bot(name) => config.policy.bot(name).map(|b| b.account().to_owned()),
            };
            if let Some(account) = account {
                by_account.entry(account).or_default().push((scope, limits));
            }
        }
        by_account
    }

    /// Takes what the shared state says `scopes` have spent (the rest of the
    /// shared reading is kept).
    pub fn adopt_shared_usage(&self, read: Vec<(Scope, Usage, Usage)>) {
        let mut shared = self
            .shared_usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (scope, day, window) in read {
            shared.insert(scope, (day, window));
        }
    }
}

/// The audit files that may hold records from the last [`HORIZON`]: rotated files
/// (`<stem>-<time>.<ext>`) modified since, oldest first, then the current file.
fn audit_files(current: &Path, now: SystemTime) -> Vec<PathBuf> {
    let since = now.checked_sub(HORIZON).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut files: Vec<PathBuf> = crate::audit::rotated_files(current)
        .into_iter()
        .filter(|(_, modified)| *modified >= since)
        .map(|(file, _)| file)
        .collect();
    files.push(current.to_path_buf());
    files
}

/// The fields of an audit record that the rebuilds at start read (budgets here, the
/// order record in [`crate::orders`]); everything else in the line is skipped without
/// being built. Strings borrow from the line unless JSON escapes forced a copy.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Replayed<'a> {
    /// `request`, `outcome`, ...
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    /// The request it is about.
    #[serde(borrow)]
    pub request_id: Option<Cow<'a, str>>,
    /// When it was written (RFC 3339).
    #[serde(borrow)]
    pub ts: Option<Cow<'a, str>>,
    /// The bot that asked.
    #[serde(borrow)]
    pub bot: Option<Cow<'a, str>>,
    /// The bot's account.
    #[serde(borrow)]
    pub account: Option<Cow<'a, str>>,
    /// `allow`, `deny`, `shadow-allow`, ...
    #[serde(borrow)]
    pub decision: Option<Cow<'a, str>>,
    /// Orders the request placed or changed.
    pub orders: Option<u64>,
    /// Their notional bound.
    #[serde(borrow)]
    pub notional: Option<Cow<'a, str>>,
    /// The exchange's HTTP status.
    pub upstream_status: Option<u64>,
    /// The exchange refused it in a 200 body.
    pub refused: Option<bool>,
    /// Why it never reached the exchange.
    #[serde(borrow)]
    pub error: Option<Cow<'a, str>>,
    /// What the outcome gave back: notional...
    #[serde(borrow)]
    pub refunded_notional: Option<Cow<'a, str>>,
    /// ...and orders.
    pub refunded_orders: Option<u64>,
    /// The request's orders.
    pub legs: Option<Vec<crate::orders::LegRecord>>,
    /// The orders it cancels.
    pub cancels: Option<Vec<crate::orders::RefRecord>>,
    /// What the exchange did with each leg.
    pub results: Option<Vec<crate::orders::ResultRecord>>,
    /// Which cancels succeeded.
    pub cancelled: Option<Vec<bool>>,
    /// Orders the answer closed.
    pub closed: Option<Vec<crate::orders::ClosedRecord>>,
    /// Symbols all of whose orders the answer closed.
    pub closed_all: Option<Vec<String>>,
}

/// Every audit record within `HORIZON` (7 days) of `now`, oldest first, for the rebuilds at
/// start (budgets here, orders in [`crate::orders`]). A day of an account's maximum
/// order rate is 400,000 records; each line is read once and only the fields above
/// are parsed.
pub fn each_audit_record(audit_file: &Path, now: SystemTime, mut f: impl FnMut(Replayed<'_>)) {
    for file in audit_files(audit_file, now) {
        each_record_in(&file, 0, &mut f);
    }
}

/// The records of one audit file from byte `offset` on (a line boundary); the number
/// of lines read.
pub fn each_record_in(file: &Path, offset: u64, mut f: impl FnMut(Replayed<'_>)) -> usize {
    use std::io::{Read as _, Seek as _, SeekFrom};
    // Only regular files: an audit "file" may be a device (/dev/full in tests, a
    // pipe in some setups) that never ends.
    if !fs::metadata(file).is_ok_and(|m| m.is_file()) {
        return 0;
    }
    let mut text = String::new();
    let read = fs::File::open(file).and_then(|mut opened| {
        opened.seek(SeekFrom::Start(offset))?;
        opened.read_to_string(&mut text)
    });
    if read.is_err() {
        return 0;
    }
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        if let Ok(record) = serde_json::from_str::<Replayed<'_>>(line) {
            f(record);
        }
    }
    lines
}

/// The budgets and the order record rebuilt as of `now`: from the checkpoint of the
/// last clean stop and the audit records written after it when that checkpoint
/// matches the log ([`crate::checkpoint`]), else from the whole audit log at
/// `audit_file`, reading and parsing each record once for both (a day at an
/// account's maximum order rate is 400,000 records).
pub fn rebuild_from_audit(
    config: &Config,
    audit_file: &Path,
    now: SystemTime,
) -> (Budgets, crate::orders::OrderBook) {
    if let Some(resumed) = crate::checkpoint::resume(config, audit_file, now) {
        return resumed;
    }
    let mut budgets = BudgetReplay::new(config, now);
    let mut orders = crate::orders::OrderReplay::new();
    each_audit_record(audit_file, now, |record| {
        budgets.feed(&record);
        orders.feed(record);
    });
    (budgets.finish(), orders.finish(now))
}

/// The budgets' side of a rebuild: every forwarded order within seven days of `now`
/// and what the exchange's answers gave back, applied in the log's order (a refund
/// finds its spend's receipt only while it is recent).
#[derive(Debug)]
pub struct BudgetReplay {
    since: SystemTime,
    budgets: Budgets,
    spent: usize,
}

impl BudgetReplay {
    /// An empty replay under `config`'s limits, as of `now`.
    pub fn new(config: &Config, now: SystemTime) -> Self {
        let budgets = Budgets::default();
        budgets.configure(config);
        Self {
            since: now.checked_sub(HORIZON).unwrap_or(SystemTime::UNIX_EPOCH),
            budgets,
            spent: 0,
        }
    }

    /// A replay that starts from `ledger` (read back from a checkpoint) under
    /// `config`'s limits, as of `now`; `None` if `config` sets a budget on a bot or
    /// account the ledger did not track, whose past spending only the whole log
    /// holds.
    pub fn resuming(config: &Config, ledger: Ledger, now: SystemTime) -> Option<Self> {
        let untracked =
            configured(config).any(|(scope, limits)| limits.is_set() && !ledger.tracks(&scope));
        if untracked {
            return None;
        }
        let budgets = Budgets {
            ledger: Mutex::new(ledger),
            shared: std::sync::OnceLock::new(),
            shared_usage: Mutex::default(),
        };
        budgets.configure(config);
        Some(Self {
            since: now.checked_sub(HORIZON).unwrap_or(SystemTime::UNIX_EPOCH),
            budgets,
            spent: 0,
        })
    }

    /// One audit record.
    pub fn feed(&mut self, record: &Replayed<'_>) {
        let ledger = self
            .budgets
            .ledger
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        match &*record.event {
            "request" => {
                if let Some((scopes, spend)) = spent(record).filter(|(_, s)| s.at >= self.since) {
                    self.spent += 1;
                    ledger.record(&scopes, &spend);
                }
            }
            "outcome" => {
                let Some(id) = record.request_id.as_deref() else {
                    return;
                };
                let part = record.refunded_orders.and_then(|orders| {
                    let notional: Amount = record.refunded_notional.as_deref()?.parse().ok()?;
                    Some((notional, u32::try_from(orders).ok()?))
                });
                match part {
                    Some((notional, orders)) => ledger.refund_part(id, notional, orders),
                    None if record.refunded_orders.is_none() && refused_by_exchange(record) => {
                        ledger.refund(id);
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }

    /// The rebuilt budgets.
    pub fn finish(self) -> Budgets {
        if self.spent > 0 {
            tracing::info!(orders = self.spent, "budgets rebuilt from the audit log");
        }
        self.budgets
    }
}

/// A `request` record of forwarded orders, as a spend.
fn spent(record: &Replayed<'_>) -> Option<([Scope; 2], Spend)> {
    let forwarded = matches!(record.decision.as_deref(), Some("allow" | "shadow-allow"));
    let orders = u32::try_from(record.orders?).ok()?;
    if !forwarded || orders == 0 {
        return None;
    }
    let notional: Amount = record.notional.as_deref()?.parse().ok()?;
    let at = time::OffsetDateTime::parse(
        record.ts.as_deref()?,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    let at = SystemTime::from(at);
    let scopes = scopes_of(record.bot.as_deref()?, record.account.as_deref()?);
    Some((
        scopes,
        Spend {
            id: Arc::from(record.request_id.as_deref()?),
            at,
            notional,
            orders,
        },
    ))
}

/// The exchange refused the request (a 4xx, or an error its venue reports in a 200
/// body), or was never reached: the orders did not execute.
pub fn refused_by_exchange(record: &Replayed<'_>) -> bool {
    record
        .upstream_status
        .is_some_and(|s| (400..500).contains(&s))
        || record.refused == Some(true)
        || record.error.as_deref() == Some("upstream_unavailable")
}
