//! The budgeted bot over a long run (issue 19): a keyward of its own whose bot and
//! account both have `daily_notional` and `max_orders`, sent `--budget-orders` signed
//! orders as fast as the connections go, in ten equal slices. Budgets that cost time
//! in proportion to the orders before them show as a last tenth slower than the
//! first; the unbudgeted bot's throughput, measured the same way in the same run,
//! is the yardstick. keyward's CPU time per order in each slice is reported too:
//! on a shared machine throughput drifts with the neighbours, while CPU per order
//! shows whether keyward itself got more expensive.

use std::path::Path;

use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::{FixturePolicy, Serving};

use crate::oha::{self, Load, Span};
use crate::report::RequestKind;

/// Slices of the run: the first and last are the tenths compared.
pub(crate) const SLICES: u64 = 10;

/// Budgets far above what the run spends: they are checked and spent on every order,
/// never refused (every answer must be 2xx). `max_orders` may count at most
/// 1,000,000 per period, so its period is a minute, which the run's rate never fills.
const BUDGETS: &str = "daily_notional = \"1000000000000\"\nmax_orders = \"1000000/m\"";

/// What the budget run measured.
pub(crate) struct BudgetRun {
    /// Orders a second of each slice, budgeted bot.
    pub(crate) budgeted: Vec<f64>,
    /// The budgeted keyward's CPU time per order in each slice (µs).
    pub(crate) cpu_per_order_us: Vec<f64>,
    /// Orders a second of one slice of the unbudgeted bot, before and after.
    pub(crate) unbudgeted: Vec<f64>,
    /// Orders sent to the budgeted keyward (for its audit check).
    pub(crate) sent: u64,
    /// Orders sent to the unbudgeted keyward (for its audit check).
    pub(crate) unbudgeted_sent: u64,
    /// The budgeted keyward, still running.
    pub(crate) keyward: KeywardProcess,
}

/// Starts the budgeted keyward in front of `exchange` and runs `orders` orders through
/// it in [`SLICES`] slices; one slice-sized run through `unbudgeted` before and after.
pub(crate) fn run(
    keyward_exe: &Path,
    oha_exe: &Path,
    exchange: (String, std::path::PathBuf),
    unbudgeted: (&str, &str),
    orders: u64,
    connections: u32,
    scratch: &Path,
) -> Result<BudgetRun, String> {
    let keyward = KeywardProcess::spawn_serving(
        keyward_exe,
        FixturePolicy::P0,
        Serving {
            upstream: Some(exchange),
            server_extra: "header_timeout_ms = 120000".to_owned(),
            order_rate: Some("1000000/s".to_owned()),
            account_extra: format!("exchange_limits_multiplier = 1000000\n{BUDGETS}"),
            bot_extra: format!("exchange_share = \"100%\"\n{BUDGETS}"),
            ..Serving::default()
        },
        VaultKey::File,
        &[],
    );
    let base = format!("https://127.0.0.1:{}", keyward.bot_addr.port());
    let order = crate::request(RequestKind::Order, &base, &keyward.tokens.bot);
    let slice = (orders / SLICES).max(1);
    let once = |request: &oha::Request| {
        oha::run(
            oha_exe,
            request,
            Load::Saturation,
            connections,
            Span::Requests(slice),
            scratch,
        )
    };
    let plain = crate::request(RequestKind::Order, unbudgeted.0, unbudgeted.1);
    let before = once(&plain)?;
    let mut unbudgeted_sent = before.answered;
    let mut unbudgeted_rates = vec![before.throughput];
    let mut budgeted = Vec::new();
    let mut cpu_per_order_us = Vec::new();
    let mut sent = 0;
    for n in 0..SLICES {
        let cpu_before = keyward_bench::procfs::cpu_seconds(keyward.pid);
        let measured = once(&order)?;
        let cpu = keyward_bench::procfs::cpu_seconds(keyward.pid) - cpu_before;
        let per_order = cpu * 1e6 / measured.answered.max(1) as f64;
        sent += measured.answered;
        println!(
            "  budgeted bot, tenth {:>2}: {:>9.0} orders/s, {per_order:>6.1} µs of keyward CPU each ({} orders so far)",
            n + 1,
            measured.throughput,
            sent
        );
        budgeted.push(measured.throughput);
        cpu_per_order_us.push(per_order);
    }
    let after = once(&plain)?;
    unbudgeted_sent += after.answered;
    unbudgeted_rates.push(after.throughput);
    Ok(BudgetRun {
        budgeted,
        cpu_per_order_us,
        unbudgeted: unbudgeted_rates,
        sent,
        unbudgeted_sent,
        keyward,
    })
}

impl BudgetRun {
    /// The summary: first and last tenth, their ratio, and the ratio to the
    /// unbudgeted bot.
    pub(crate) fn json(&self) -> serde_json::Value {
        let first = self.budgeted.first().copied().unwrap_or(f64::NAN);
        let last = self.budgeted.last().copied().unwrap_or(f64::NAN);
        let unbudgeted = self.unbudgeted.iter().sum::<f64>() / self.unbudgeted.len().max(1) as f64;
        serde_json::json!({
            "orders": self.sent,
            "slices_orders_per_s": self.budgeted,
            "slices_cpu_per_order_us": self.cpu_per_order_us,
            "first_tenth_orders_per_s": first,
            "last_tenth_orders_per_s": last,
            "last_over_first": last / first,
            "unbudgeted_orders_per_s": self.unbudgeted,
            "last_tenth_over_unbudgeted": last / unbudgeted,
        })
    }
}
