//! The Prometheus exposition of a running keyward (`GET /metrics` on the admin
//! listener): the request counters and histograms of [`crate::metrics`], and what
//! the rest of its state says: exchange usage and pauses, clock offsets, certificate
//! and token expiry, frozen accounts, each bot's use of the exchange's limits and the
//! rolling budgets.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::app::{App, DEFAULT_EXCHANGE_SHARE};

/// The Prometheus exposition: request counters and histograms, reloads, exchange
/// usage and pauses, clock offsets, and each bot's time left until its tokens
/// expire.
pub fn render(app: &App) -> String {
    let snapshot = app.snapshot();
    let mut out = app.metrics.render();
    let accounts: Vec<(&crate::config::Account, &dyn keyward_venues::Venue)> = snapshot
        .config
        .accounts
        .values()
        .map(|a| (a, a.venue.adapter()))
        .collect();
    app.exchange.render(&mut out, &accounts);
    out.push_str("# HELP keyward_clock_offset_milliseconds The exchange's clock minus keyward's, as last measured.\n");
    out.push_str("# TYPE keyward_clock_offset_milliseconds gauge\n");
    for (account, runtime) in &snapshot.accounts {
        if let Some(offset) = runtime.state.measured_offset_ms() {
            let _ = writeln!(
                out,
                "keyward_clock_offset_milliseconds{{account=\"{account}\"}} {offset}"
            );
        }
    }
    out.push_str("# HELP keyward_certificate_expiry_seconds Seconds until each certificate keyward serves, trusts for bots, or issued to a bot expires.\n");
    out.push_str("# TYPE keyward_certificate_expiry_seconds gauge\n");
    let now = time::OffsetDateTime::now_utc();
    let mut expiring = 0;
    for expiry in &snapshot.tls.expiries {
        let left = (expiry.not_after - now).whole_seconds();
        if left < crate::identity::EXPIRY_WARNING_DAYS * 86_400 {
            expiring += 1;
        }
        let _ = writeln!(
            out,
            "keyward_certificate_expiry_seconds{{certificate=\"{}\"}} {left}",
            expiry.certificate
        );
    }
    out.push_str("# HELP keyward_certificates_expiring How many of those expire within 14 days (or have expired).\n");
    out.push_str("# TYPE keyward_certificates_expiring gauge\n");
    let _ = writeln!(out, "keyward_certificates_expiring {expiring}");
    out.push_str("# HELP keyward_frozen 1 for each frozen account (`*`: every account).\n");
    out.push_str("# TYPE keyward_frozen gauge\n");
    let frozen = app.freeze.state();
    if frozen.all.is_some() {
        out.push_str("keyward_frozen{account=\"*\"} 1\n");
    }
    for name in snapshot.config.accounts.keys() {
        let _ = writeln!(
            out,
            "keyward_frozen{{account=\"{name}\"}} {}",
            u8::from(app.freeze.frozen(name).is_some())
        );
    }
    out.push_str("# HELP keyward_exchange_bot_usage What a bot sent of an exchange limit in its current window (weight at the documented weights, or orders).\n");
    out.push_str("# TYPE keyward_exchange_bot_usage gauge\n");
    out.push_str("# HELP keyward_exchange_bot_share The most of that limit the bot may use (its exchange_share of the limit less the headroom).\n");
    out.push_str("# TYPE keyward_exchange_bot_share gauge\n");
    for bot in snapshot.config.policy.bots() {
        let Some(account) = snapshot.config.accounts.get(bot.account()) else {
            continue;
        };
        let venue = account.venue.adapter();
        let share = snapshot
            .exchange_shares
            .get(bot.name())
            .copied()
            .unwrap_or(DEFAULT_EXCHANGE_SHARE);
        let usage = app
            .exchange
            .bot_usage(account, venue, bot.name(), SystemTime::now());
        for (limit, (kind, window, used)) in venue.exchange_limits().iter().zip(usage) {
            let labels = format!(
                "account=\"{}\",bot=\"{}\",kind=\"{}\",window=\"{}s\"",
                account.name,
                bot.name(),
                kind.name(),
                window.as_secs()
            );
            let ceiling = limit.limit * u64::from(100 - account.exchange_headroom_percent) / 100;
            let _ = writeln!(out, "keyward_exchange_bot_usage{{{labels}}} {used}");
            let _ = writeln!(
                out,
                "keyward_exchange_bot_share{{{labels}}} {}",
                ceiling * u64::from(share) / 100
            );
        }
    }
    out.push_str("# HELP keyward_budget_used Rolling budgets used: notional in the last 24 h, orders in the max_orders window.\n");
    out.push_str("# TYPE keyward_budget_used gauge\n");
    let scopes = snapshot
        .config
        .policy
        .bots()
        .into_iter()
        .map(|b| keyward_policy::Scope::Bot(b.name().into()))
        .chain(
            snapshot
                .config
                .accounts
                .keys()
                .map(|a| keyward_policy::Scope::Account(a.as_str().into())),
        );
    for scope in scopes {
        let Some((limits, day, window)) = app.budgets.report(&scope, SystemTime::now()) else {
            continue;
        };
        let label = match &scope {
            keyward_policy::Scope::Bot(name) => format!("bot=\"{name}\""),
            keyward_policy::Scope::Account(name) => format!("account=\"{name}\""),
        };
        if limits.daily_notional.is_some() {
            let _ = writeln!(
                out,
                "keyward_budget_used{{{label},budget=\"daily_notional\"}} {}",
                day.notional
            );
        }
        if limits.max_orders.is_some() {
            let _ = writeln!(
                out,
                "keyward_budget_used{{{label},budget=\"max_orders\"}} {}",
                window.orders
            );
        }
    }
    out.push_str("# HELP keyward_token_expiry_seconds Seconds until the bot's tokens expire (negative once expired).\n");
    out.push_str("# TYPE keyward_token_expiry_seconds gauge\n");
    let now = SystemTime::now();
    for bot in snapshot.config.policy.bots() {
        let seconds = match bot.expires().duration_since(now) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        };
        let _ = writeln!(
            out,
            "keyward_token_expiry_seconds{{bot=\"{}\"}} {seconds:.0}",
            bot.name()
        );
    }
    out
}
