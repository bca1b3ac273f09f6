//! The Prometheus exposition of a running keyward (`GET /metrics` on the admin
//! listener and the metrics listener): the counters and histograms of
//! [`crate::metrics`], and gauges read from its state at scrape time: the build and
//! the process, exchange usage and pauses, clock offsets, certificate and token
//! expiry, frozen accounts, each bot's use of the exchange's limits, the rolling
//! budgets and open orders against their limits.
//!
//! One family per unit and label set: notional budgets (quote currency) and order
//! counts are separate families, and so are bots and accounts; every limit has its
//! series beside the usage, so an alert can divide one by the other. Times are Unix
//! timestamps in seconds, durations in seconds.

use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::app::{App, DEFAULT_EXCHANGE_SHARE};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`to_prometheus_text`]'s.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus's classic text format, for a scraper that does not ask for OpenMetrics
/// (curl, `promtool check metrics`, older agents): the same samples, a counter's
/// HELP and TYPE named as its samples are (`x_total`), without OpenMetrics' `UNIT`
/// and `EOF` lines.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Held until the TYPE line says whether the family is a counter.
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(text) = help.take().and_then(|h| h.strip_prefix(name)) {
                out.push_str(&format!("# HELP {name}{suffix}{text}\n"));
            }
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

type Labels = Vec<(&'static str, String)>;
type Rows = Family<Labels, Gauge<f64, AtomicU64>>;

/// Gauges filled in at scrape time and registered once filled.
struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A family named `name` with one series per row.
    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        rows: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let family = Rows::default();
        for (labels, value) in rows {
            family.get_or_create(&labels).set(value);
        }
        match unit {
            Some(unit) => self.registry.register_with_unit(name, help, unit, family),
            None => self.registry.register(name, help, family),
        }
    }

    /// A family of one unlabelled series.
    fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, value: f64) {
        self.gauges(name, help, unit, [(Vec::new(), value)]);
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The OpenMetrics text of everything above.
pub fn render(app: &App) -> String {
    let mut scrape = Scrape {
        registry: Registry::default(),
    };
    app.metrics.register(&mut scrape.registry);
    // A gauge of 1 rather than OpenMetrics' info type, which Prometheus's own text
    // format (and `promtool check metrics`) does not know.
    scrape.gauges(
        "keyward_build_info",
        "The running build: its version and commit",
        None,
        [(
            vec![
                ("version", env!("CARGO_PKG_VERSION").to_owned()),
                ("commit", env!("KEYWARD_COMMIT").to_owned()),
            ],
            1.0,
        )],
    );
    process(&mut scrape);
    state(&mut scrape, app);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &scrape.registry);
    text
}

/// The standard process series, read from `/proc/self`.
fn process(scrape: &mut Scrape) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Option<f64> { fields.get(n)?.parse().ok() };
    let ticks = clock_ticks();
    if let (Some(user), Some(system)) = (field(11), field(12)) {
        scrape.registry.register_with_unit(
            "process_cpu",
            "User and system CPU time spent in seconds",
            Unit::Seconds,
            ConstCounter::new((user + system) / ticks),
        );
    }
    if let (Some(started), Some(boot)) = (field(19), boot_time()) {
        scrape.gauge(
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(Unit::Seconds),
            boot + started / ticks,
        );
    }
    if let Some(resident) = resident_bytes() {
        scrape.gauge(
            "process_resident_memory",
            "Resident memory size in bytes",
            Some(Unit::Bytes),
            resident,
        );
    }
    if let Some(virtual_bytes) = field(20) {
        scrape.gauge(
            "process_virtual_memory",
            "Virtual memory size in bytes",
            Some(Unit::Bytes),
            virtual_bytes,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        scrape.gauge(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            fds.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        scrape.gauge(
            "process_max_fds",
            "Maximum number of open file descriptors",
            None,
            max,
        );
    }
    scrape.gauge(
        "keyward_process_dumpable",
        "1 if the process could leave a core dump or be attached to (should be 0)",
        None,
        f64::from(u8::from(crate::sys::dumpable().unwrap_or(true))),
    );
}

/// Linux reports process times in clock ticks of 1/100 s on every architecture
/// keyward builds for (`USER_HZ`, fixed by the kernel's ABI).
fn clock_ticks() -> f64 {
    100.0
}

/// `VmRSS` from `/proc/self/status`, which is in kB whatever the page size.
fn resident_bytes() -> Option<f64> {
    let kb: f64 = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn max_fds() -> Option<f64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|line| line.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn state(scrape: &mut Scrape, app: &App) {
    let snapshot = app.snapshot();
    let config = &snapshot.config;
    let now = SystemTime::now();
    let accounts: Vec<(&crate::config::Account, &dyn keyward_venues::Venue)> = config
        .accounts
        .values()
        .map(|a| (a, a.venue.adapter()))
        .collect();

    let readings = app.exchange.readings(&accounts);
    let limit_labels = |r: &crate::exchange_limits::LimitReading| -> Labels {
        vec![
            ("account", r.account.clone()),
            ("kind", r.kind.to_owned()),
            ("window", format!("{}s", r.window.as_secs())),
        ]
    };
    scrape.gauges(
        "keyward_exchange_usage",
        "What the exchange last reported as used in the current window (weight or orders)",
        None,
        readings
            .limits
            .iter()
            .map(|r| (limit_labels(r), r.used as f64)),
    );
    scrape.gauges(
        "keyward_exchange_limit",
        "The exchange's limit for that window",
        None,
        readings
            .limits
            .iter()
            .map(|r| (limit_labels(r), r.limit as f64)),
    );
    scrape.gauges(
        "keyward_exchange_paused",
        "Seconds until keyward sends to the exchange again, after a 429 or a ban",
        Some(Unit::Seconds),
        readings.paused.iter().map(|p| {
            (
                vec![
                    ("account", p.account.clone()),
                    ("banned", p.banned.to_string()),
                ],
                p.seconds,
            )
        }),
    );

    let reachability: Vec<(String, (bool, Option<u64>))> = snapshot
        .accounts
        .iter()
        .filter_map(|(account, runtime)| {
            Some((
                account.as_str().to_owned(),
                runtime.state.exchange_reachability()?,
            ))
        })
        .collect();
    scrape.gauges(
        "keyward_exchange_reachable",
        "1 if the account's exchange answered the last request keyward sent it (orders, reads, the clock check every minute), 0 if that got no answer",
        None,
        reachability
            .iter()
            .map(|(account, (up, _))| (vec![("account", account.clone())], f64::from(u8::from(*up)))),
    );
    scrape.gauges(
        "keyward_exchange_last_answer_timestamp",
        "When the account's exchange last answered (Unix time)",
        Some(Unit::Seconds),
        reachability.iter().filter_map(|(account, (_, at))| {
            Some((vec![("account", account.clone())], (*at)? as f64 / 1000.0))
        }),
    );
    scrape.gauges(
        "keyward_clock_offset",
        "The exchange's clock minus keyward's, as last measured",
        Some(Unit::Seconds),
        snapshot.accounts.iter().filter_map(|(account, runtime)| {
            let offset = runtime.state.measured_offset_ms()?;
            Some((
                vec![("account", account.as_str().to_owned())],
                offset as f64 / 1000.0,
            ))
        }),
    );

    scrape.gauges(
        "keyward_certificate_expiry_timestamp",
        "When each certificate keyward serves, trusts for bots, or issued to a bot expires (Unix time)",
        Some(Unit::Seconds),
        snapshot.tls.expiries.iter().map(|expiry| {
            (
                vec![("certificate", expiry.certificate.clone())],
                expiry.not_after.unix_timestamp() as f64,
            )
        }),
    );

    scrape.gauges(
        "keyward_token_expiry_timestamp",
        "When each bot's tokens expire (Unix time)",
        Some(Unit::Seconds),
        config.policy.bots().into_iter().map(|bot| {
            (
                vec![("bot", bot.name().to_owned())],
                unix_seconds(bot.expires()),
            )
        }),
    );

    if let Some(shared) = &app.shared {
        scrape.gauge(
            "keyward_shared_state_reachable",
            "1 while the replicas' shared state (Redis) answered the last round trip",
            None,
            f64::from(u8::from(shared.is_available())),
        );
        scrape.gauge(
            "keyward_shared_settlements_unwritten",
            "Settlements of answered orders not yet in the replicas' journal",
            None,
            shared.settlements_unwritten() as f64,
        );
    }

    let frozen = app.freeze.state();
    scrape.gauges(
        "keyward_frozen",
        "1 for each frozen account (`*`: every account)",
        None,
        frozen
            .all
            .is_some()
            .then(|| (vec![("account", "*".to_owned())], 1.0))
            .into_iter()
            .chain(config.accounts.keys().map(|name| {
                (
                    vec![("account", name.clone())],
                    f64::from(u8::from(app.freeze.frozen(name).is_some())),
                )
            })),
    );

    bot_exchange_usage(scrape, app, &snapshot);
    budgets(scrape, app, config, now);
}

/// Each bot's use of its account's exchange limits, beside the most it may use.
fn bot_exchange_usage(scrape: &mut Scrape, app: &App, snapshot: &crate::app::Snapshot) {
    let mut usage = Vec::new();
    let mut limits = Vec::new();
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
        let used = app
            .exchange
            .bot_usage(account, venue, bot.name(), SystemTime::now());
        for (limit, (kind, window, used)) in venue.exchange_limits().iter().zip(used) {
            let labels = vec![
                ("account", account.name.clone()),
                ("bot", bot.name().to_owned()),
                ("kind", kind.name().to_owned()),
                ("window", format!("{}s", window.as_secs())),
            ];
            let ceiling = limit.limit * u64::from(100 - account.exchange_headroom_percent) / 100;
            usage.push((labels.clone(), used as f64));
            limits.push((labels, (ceiling * u64::from(share) / 100) as f64));
        }
    }
    scrape.gauges(
        "keyward_exchange_bot_usage",
        "What a bot sent of an exchange limit in its current window (weight at the documented weights, or orders)",
        None,
        usage,
    );
    scrape.gauges(
        "keyward_exchange_bot_limit",
        "The most of that limit the bot may use: its exchange_share of the limit less the headroom",
        None,
        limits,
    );
}

/// Rolling budgets and open orders, each beside its limit, bots and accounts apart.
fn budgets(scrape: &mut Scrape, app: &App, config: &crate::config::Config, now: SystemTime) {
    #[derive(Default)]
    struct Of {
        notional: Vec<(Labels, f64)>,
        notional_limit: Vec<(Labels, f64)>,
        orders: Vec<(Labels, f64)>,
        orders_limit: Vec<(Labels, f64)>,
        open: Vec<(Labels, f64)>,
        open_limit: Vec<(Labels, f64)>,
    }
    let amount = |a: keyward_policy::Amount| a.to_string().parse::<f64>().unwrap_or(f64::MAX);
    let mut bots = Of::default();
    let mut accounts = Of::default();
    let scopes = config
        .policy
        .bots()
        .into_iter()
        .map(|b| {
            (
                keyward_policy::Scope::Bot(b.name().into()),
                b.account().to_owned(),
            )
        })
        .chain(
            config
                .accounts
                .keys()
                .map(|a| (keyward_policy::Scope::Account(a.as_str().into()), a.clone())),
        );
    for (scope, account) in scopes {
        let (of, labels, open, open_limit) = match &scope {
            keyward_policy::Scope::Bot(name) => {
                let limit = config
                    .policy
                    .bot(name)
                    .and_then(|b| b.budget().max_open_orders);
                let (own, _) = app.orders.open_orders(&account, name);
                (&mut bots, vec![("bot", name.to_string())], own, limit)
            }
            keyward_policy::Scope::Account(name) => {
                let limit = config
                    .accounts
                    .get(&**name)
                    .and_then(|a| a.budget.max_open_orders);
                let (_, all) = app.orders.open_orders(name, "");
                (
                    &mut accounts,
                    vec![("account", name.to_string())],
                    all,
                    limit,
                )
            }
        };
        of.open.push((labels.clone(), open as f64));
        if let Some(limit) = open_limit {
            of.open_limit.push((labels.clone(), f64::from(limit)));
        }
        let Some((limits, day, window)) = app.budgets.report(&scope, now) else {
            continue;
        };
        if let Some(limit) = limits.daily_notional {
            of.notional.push((labels.clone(), amount(day.notional)));
            of.notional_limit.push((labels.clone(), amount(limit)));
        }
        if let Some(rate) = limits.max_orders {
            let mut labels = labels;
            labels.push(("window", format!("{}s", rate.period().as_secs())));
            of.orders.push((labels.clone(), window.orders as f64));
            of.orders_limit
                .push((labels, f64::from(rate.count().get())));
        }
    }
    for (whose, of) in [("bot", bots), ("account", accounts)] {
        scrape.gauges(
            &format!("keyward_{whose}_daily_notional_used"),
            &format!(
                "Notional a {whose} spent in the last 24 hours, in the quote currency of its orders"
            ),
            None,
            of.notional,
        );
        scrape.gauges(
            &format!("keyward_{whose}_daily_notional_limit"),
            &format!("The {whose}'s daily_notional"),
            None,
            of.notional_limit,
        );
        scrape.gauges(
            &format!("keyward_{whose}_orders_used"),
            &format!("Orders a {whose} placed in its max_orders window"),
            None,
            of.orders,
        );
        scrape.gauges(
            &format!("keyward_{whose}_orders_limit"),
            &format!("The {whose}'s max_orders in that window"),
            None,
            of.orders_limit,
        );
        scrape.gauges(
            &format!("keyward_{whose}_open_orders"),
            &format!("Orders of the {whose} open at the exchange as keyward counts them (being placed and unconfirmed included)"),
            None,
            of.open,
        );
        scrape.gauges(
            &format!("keyward_{whose}_open_orders_limit"),
            &format!("The {whose}'s max_open_orders"),
            None,
            of.open_limit,
        );
    }
}
