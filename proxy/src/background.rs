//! keyward's background work while it serves: reloading on SIGHUP and on changed
//! files, measuring each exchange's clock, keeping reference prices fresh, asking
//! the exchange which of keyward's orders are still open, and flushing the audit
//! log. Each loop ends when shutdown is signalled.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keyward_venues::Outbound;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::App;
use crate::config::Config;
use crate::upstream::CLOCK_CHECK_AGENT;

/// How long the clock check at start may delay serving.
const CLOCK_CHECK_AT_START: Duration = Duration::from_secs(3);
/// How often each exchange's clock is compared with keyward's.
const CLOCK_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// An offset larger than this is worth a warning: Binance refuses timestamps a
/// second or more ahead of its clock.
const CLOCK_OFFSET_WARNING_MS: i64 = 1_000;

/// Starts every loop in `tasks`; each stops when `shutdown` turns true.
pub fn spawn(tasks: &mut JoinSet<()>, app: &Arc<App>, shutdown: &watch::Receiver<bool>) {
    tasks.spawn(reload_on_hangup(app.clone(), shutdown.clone()));
    tasks.spawn(check_clocks(app.clone(), shutdown.clone()));
    if let Some(every) = app.snapshot().config.server.watch_interval {
        tasks.spawn(watch_files(app.clone(), every, shutdown.clone()));
    }
    if let Some(every) = app.audit_fsync {
        tasks.spawn(flush_audit(app.clone(), every, shutdown.clone()));
    }
    tasks.spawn(refresh_prices(app.clone(), shutdown.clone()));
    tasks.spawn(reconcile_open_orders(app.clone(), shutdown.clone()));
    if let Some(shared) = &app.shared {
        tasks.spawn(probe_shared_state(shared.clone(), shutdown.clone()));
        tasks.spawn(read_shared_budgets(
            app.clone(),
            shared.clone(),
            shutdown.clone(),
        ));
        // Not stopped by shutdown: what is queued is written before keyward stops.
        tokio::spawn(shared.clone().keep_settling());
        tasks.spawn(apply_shared_orders(
            app.clone(),
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::shared::watch_freeze(
            shared.clone(),
            app.clone(),
            shutdown.clone(),
        ));
    }
}

/// How often the budgets' spending is read from the shared state for metrics and
/// `explain` (requests are decided on the shared state itself, never on this).
const SHARED_BUDGETS_EVERY: Duration = Duration::from_secs(2);

/// Reads every account's budgets from the shared state, one round trip per account.
async fn read_shared_budgets(
    app: Arc<App>,
    shared: Arc<crate::shared::Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let reading = async {
        loop {
            let snapshot = app.snapshot();
            for (account, scopes) in
                crate::budgets::Budgets::configured_by_account(&snapshot.config)
            {
                if let Ok(read) = shared.usage(&account, &scopes).await {
                    app.budgets.adopt_shared_usage(read);
                }
            }
            tokio::time::sleep(SHARED_BUDGETS_EVERY).await;
        }
    };
    // Also while a round trip is under way: a stop does not wait for Redis.
    tokio::select! {
        () = reading => {}
        _ = shutdown.changed() => {}
    }
}

/// Applies what the other replicas settled to this replica's order record.
async fn apply_shared_orders(
    app: Arc<App>,
    shared: Arc<crate::shared::Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        () = shared.keep_applying(app) => {}
        _ = shutdown.changed() => {}
    }
}

/// Keeps readiness true to whether the replicas' shared state answers.
async fn probe_shared_state(
    shared: Arc<crate::shared::Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        () = shared.keep_probing() => {}
        _ = shutdown.changed() => {}
    }
}

/// The first clock measurement, before serving: the first signed request already
/// needs the exchange's clock; an exchange that cannot be asked in time leaves the
/// offset at zero until the next check.
pub async fn check_clocks_at_start(app: &App) {
    let _ = tokio::time::timeout(CLOCK_CHECK_AT_START, check_clocks_once(app)).await;
}

/// What identifies the content of a watched file: where its path leads (through
/// symlinks, so a Kubernetes `..data` swap shows), its size and modification time.
type FileState = Option<(u64, u64, i64, i64, u64)>;

/// The configuration files (including files newly matching an include pattern), the
/// vault and its key file, and the TLS material the bot listener serves and checks
/// clients with, as they are now.
fn watched_files(config: &Config) -> Vec<(PathBuf, FileState)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut paths: Vec<PathBuf> = config.files.clone();
    for pattern in &config.include_patterns {
        if let Ok(matches) = glob::glob(&pattern.to_string_lossy()) {
            paths.extend(matches.filter_map(Result::ok));
        }
    }
    paths.push(config.vault.file.clone());
    if let crate::config::KeySource::File(key) = &config.vault.key {
        paths.push(key.clone());
    }
    paths.push(config.tls.dir.join(keyward_certs::SERVER_CERT));
    paths.push(config.tls.dir.join(keyward_certs::SERVER_KEY));
    if let Some(clients) = &config.tls.client_auth {
        paths.push(clients.ca.clone());
        paths.extend(clients.crls.iter().cloned());
    }
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|path| {
            let state = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()));
            (path, state)
        })
        .collect()
}

/// Reloads when a watched file changes (see [`watched_files`]), once it has stayed
/// the same for a moment, so a file being written is not read half-way. A change
/// that fails to load is not retried until the files change again.
async fn watch_files(app: Arc<App>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    const SETTLE: Duration = Duration::from_millis(200);
    let mut known = watched_files(&app.snapshot().config);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => break,
        }
        let now = watched_files(&app.snapshot().config);
        if now == known {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        if watched_files(&app.snapshot().config) != now {
            continue;
        }
        let reloading = app.clone();
        // The outcome is logged, counted and audited by `reload` itself.
        let _ = tokio::task::spawn_blocking(move || reloading.reload("watch")).await;
        // After a failed reload the files are as they are now, so the same broken
        // change is not tried again; after a good one, the new configuration may
        // watch other files.
        known = watched_files(&app.snapshot().config);
    }
}

/// Measures each account's offset to its exchange's clock every
/// [`CLOCK_CHECK_INTERVAL`] (the first measurement is taken before serving).
async fn check_clocks(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CLOCK_CHECK_INTERVAL) => {}
            _ = shutdown.changed() => break,
        }
        check_clocks_once(&app).await;
    }
}

/// Compares each account's exchange clock with keyward's through the venue's
/// unsigned time endpoint; signed timestamps follow the exchange's clock. Skips an
/// account that only answers in dry-run mode (it must not contact the exchange) and
/// an exchange that asked keyward to back off.
async fn check_clocks_once(app: &App) {
    let snapshot = app.snapshot();
    for (name, runtime) in &snapshot.accounts {
        let account = &runtime.settings;
        let venue = account.venue.adapter();
        let sends = account.public_market_data
            || snapshot.config.policy.bots().iter().any(|bot| {
                bot.account() == name.as_str() && bot.mode() != keyward_policy::Mode::DryRun
            });
        let paused = app.exchange.paused(account, Instant::now());
        if !sends || paused {
            continue;
        }
        let probe = Outbound {
            method: http::Method::GET,
            path_and_query: venue.time_path().to_owned(),
            headers: vec![(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(CLOCK_CHECK_AGENT),
            )],
            body: Vec::new(),
        };
        let sent_at = SystemTime::now();
        let started = Instant::now();
        let answered = runtime.upstream.send(probe).await;
        runtime
            .state
            .exchange_answered(answered.is_ok(), SystemTime::now());
        let answer = match answered {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(account = %name, reason = error.reason(), "clock check failed");
                continue;
            }
        };
        let round_trip = started.elapsed();
        app.exchange
            .observe(account, venue, &answer, SystemTime::now(), Instant::now());
        let Some(server_ms) = answer
            .status
            .is_success()
            .then(|| venue.server_time_ms(&answer.body))
            .flatten()
        else {
            continue;
        };
        // The exchange read its clock about half way through the round trip.
        let local_ms = sent_at
            .checked_add(round_trip / 2)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let offset = i64::try_from(server_ms)
            .unwrap_or(i64::MAX)
            .saturating_sub(local_ms);
        let before = runtime.state.clock_offset_ms();
        runtime.state.set_clock_offset_ms(offset);
        if offset.abs() > CLOCK_OFFSET_WARNING_MS && before.abs() <= CLOCK_OFFSET_WARNING_MS {
            tracing::warn!(
                account = %name,
                offset_ms = offset,
                "the exchange's clock differs from this host's by more than a second; \
                 keyward signs with the exchange's time (fix the host clock: NTP)"
            );
        }
    }
}

/// Keeps the reference prices of symbols in use fresh.
async fn refresh_prices(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => break,
        }
        let snapshot = app.snapshot();
        crate::housekeeping::refresh_prices_in_use(&app, &snapshot).await;
    }
}

/// Every `server.open_orders_check_ms`, asks the exchange which of the orders keyward
/// placed are still open, for `max_open_orders`. Not while frozen: reads are signed
/// too.
async fn reconcile_open_orders(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(app.snapshot().config.server.open_orders_check) => {}
            _ = shutdown.changed() => break,
        }
        let snapshot = app.snapshot();
        for name in snapshot.config.accounts.keys() {
            if app.freeze.frozen(name).is_some() {
                continue;
            }
            for symbol in app.orders.tracked_symbols(name) {
                let asked_at = SystemTime::now();
                let Ok((call, answer)) = crate::housekeeping::send(
                    &app,
                    &snapshot,
                    name,
                    keyward_venues::Housekeeping::OpenOrders,
                    &symbol,
                )
                .await
                else {
                    continue;
                };
                let Some(account) = snapshot.config.accounts.get(name) else {
                    continue;
                };
                if answer.status.is_success() {
                    let outcome =
                        account
                            .venue
                            .adapter()
                            .outcome(&call, answer.status, &answer.body);
                    app.orders
                        .reconcile(name, &symbol, &outcome.listed, asked_at);
                }
            }
        }
        // Closed orders are kept as long as their client ids may not be reused.
        let longest = snapshot
            .config
            .accounts
            .values()
            .map(|a| a.client_order_id_window)
            .max()
            .unwrap_or_default()
            .max(Duration::from_secs(86_400));
        if let Some(before) = SystemTime::now().checked_sub(longest) {
            app.orders.prune(before);
        }
    }
}

/// Flushes the audit log to disk every `every` when something was written.
async fn flush_audit(app: Arc<App>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => break,
        }
        let app = app.clone();
        let synced = tokio::task::spawn_blocking(move || app.audit.sync()).await;
        if let Ok(Err(error)) = synced {
            tracing::error!(%error, "audit log not flushed to disk");
        }
    }
}

/// `SIGHUP` reloads the configuration and vault (see [`App::reload`]).
async fn reload_on_hangup(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; reload through the admin listener instead");
        return;
    };
    loop {
        tokio::select! {
            received = hangups.recv() => if received.is_none() { break },
            _ = shutdown.changed() => break,
        }
        let app = app.clone();
        // The outcome is logged, counted and audited by `reload` itself.
        let _ = tokio::task::spawn_blocking(move || app.reload("signal")).await;
    }
}
