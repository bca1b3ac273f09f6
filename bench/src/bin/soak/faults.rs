//! The faults soak: bot connections send the request mix of [`crate::bots`] while
//! the mock exchange injects faults and the configuration is reloaded every second
//! (a harmless policy change, alternately through `POST /reload` and SIGHUP). A
//! warm-up (half of the requests unless `--warm-up` says otherwise: long enough for
//! the allocator's arenas, the runtime's timer and task slabs and keyward's table of
//! open orders to reach their working size, which takes keyward from about 10 to
//! about 24 MiB) comes first; keyward's RSS and file descriptors are read after it
//! and again at the end, each time with every bot disconnected and the upstream
//! pools renewed by a reload, so that a leak shows as growth over the second half.
//! Then keyward is stopped with SIGTERM and its audit log checked line by line and
//! with `keyward audit verify`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyward_tests::mock::{Behaviour, Faults, Mock};
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::{FixturePolicy, FixtureTokens, Serving};

use crate::bots::{Answer, Connection, Kind};
use keyward_bench::procfs::Usage;

use crate::{KeywardExe, Options, Report};

/// keyward's upstream deadline in this run, and how late the mock's slow answers
/// come.
const UPSTREAM_TIMEOUT_MS: u64 = 1000;
const SLOW_MS: u64 = 1500;
/// How long a bot waits for an answer before calling the request unanswered.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the bots saw.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    /// By kind, status and keyward's reason (empty: the exchange's own answer).
    answers: BTreeMap<(Kind, u16, String), u64>,
    /// Every `x-keyward-request-id` received.
    ids: Vec<String>,
    /// Answers without a request id.
    without_id: u64,
    /// Requests with no answer, and a few of the reasons.
    unanswered: u64,
    unanswered_examples: Vec<String>,
    /// Answers a kind must never get (a refusal not refused as it must be, or a
    /// forwarded request the exchange refused: a bad signature or timestamp).
    wrong: u64,
    wrong_examples: Vec<String>,
    connections_opened: u64,
    connect_failures: u64,
}

impl Tally {
    fn merge(&mut self, other: Self) {
        self.sent += other.sent;
        for (key, n) in other.answers {
            *self.answers.entry(key).or_default() += n;
        }
        self.ids.extend(other.ids);
        self.without_id += other.without_id;
        self.unanswered += other.unanswered;
        self.wrong += other.wrong;
        for (examples, more) in [
            (&mut self.unanswered_examples, other.unanswered_examples),
            (&mut self.wrong_examples, other.wrong_examples),
        ] {
            examples.extend(more);
            examples.truncate(5);
        }
        self.connections_opened += other.connections_opened;
        self.connect_failures += other.connect_failures;
    }

    fn answered(&mut self, kind: Kind, answer: Answer) {
        let reason = answer.reason.clone().unwrap_or_default();
        *self
            .answers
            .entry((kind, answer.status, reason.clone()))
            .or_default() += 1;
        match answer.id {
            Some(id) => self.ids.push(id),
            None => self.without_id += 1,
        }
        let acceptable = match kind.refusal() {
            Some((status, want)) => answer.status == status && reason == want,
            // The exchange's answer (200, or a fault it injected: 429, 5xx), or
            // keyward's own for an exchange that failed or asked for a pause. A
            // cancel may find its order gone (400 -2011 from the exchange: filled, or
            // cancelled by an attempt whose answer a fault swallowed).
            None => {
                matches!(answer.status, 200 | 429 | 500 | 502 | 503 | 504)
                    || (kind == Kind::Cancel && answer.status == 400 && reason.is_empty())
            }
        };
        if !acceptable {
            self.wrong += 1;
            if self.wrong_examples.len() < 5 {
                self.wrong_examples
                    .push(format!("{kind:?} answered {} {reason:?}", answer.status));
            }
        }
    }

    fn lost(&mut self, kind: Kind, why: String) {
        self.unanswered += 1;
        if self.unanswered_examples.len() < 5 {
            self.unanswered_examples.push(format!("{kind:?}: {why}"));
        }
    }
}

/// What every bot shares.
struct Fleet {
    client: keyward_tests::client::BotClient,
    tokens: FixtureTokens,
    port: u16,
    seed: u64,
    next: AtomicU64,
}

/// Sends requests `next..end` over `connections` bots; returns what they saw.
async fn phase(fleet: &Arc<Fleet>, options: &Options, end: u64) -> Tally {
    let mut bots = tokio::task::JoinSet::new();
    for index in 0..options.connections {
        let fleet = fleet.clone();
        let http2 = index < options.http2_connections;
        bots.spawn(async move { bot(&fleet, http2, end).await });
    }
    let mut tally = Tally::default();
    while let Some(one) = bots.join_next().await {
        tally.merge(one.expect("a bot task"));
    }
    tally
}

async fn bot(fleet: &Fleet, http2: bool, end: u64) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<Connection> = None;
    // Orders this bot placed and has not cancelled yet.
    let mut placed = std::collections::VecDeque::new();
    loop {
        // Only numbers below `end` are taken, so the next phase starts where this
        // one stopped.
        let Ok(n) = fleet
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < end).then_some(n + 1)
            })
        else {
            return tally;
        };
        let mut kind = Kind::from_draw(mix(fleet.seed, n));
        let order = match kind {
            Kind::Cancel => placed.pop_front(),
            _ => None,
        };
        if kind == Kind::Cancel && order.is_none() {
            kind = Kind::Account;
        }
        let mut failures = 0;
        let ready = loop {
            if let Some(open) = connection.as_mut()
                && open.ready().await
            {
                break true;
            }
            connection = None;
            match Connection::open(&fleet.client, http2).await {
                Ok(open) => {
                    tally.connections_opened += 1;
                    connection = Some(open);
                }
                Err(_) if failures < 50 => {
                    failures += 1;
                    tally.connect_failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    tally.lost(kind, format!("cannot connect: {error}"));
                    break false;
                }
            }
        };
        tally.sent += 1;
        let Some(open) = connection.as_mut().filter(|_| ready) else {
            continue;
        };
        let request = kind.request(
            &fleet.tokens,
            fleet.port,
            open.is_http2(),
            order.unwrap_or(0),
        );
        match open.send(request, PATIENCE).await {
            Ok(answer) => {
                if kind == Kind::Order
                    && answer.status == 200
                    && let Some(id) = answer.order_id
                {
                    placed.push_back(id);
                }
                tally.answered(kind, answer);
            }
            Err(why) => {
                tally.lost(kind, why);
                connection = None;
            }
        }
    }
}

/// The request mix, from the seed: the seed is spread first so that neighbouring
/// seeds give unrelated mixes (the figures in docs/performance.md were measured with it).
fn mix(seed: u64, n: u64) -> u64 {
    keyward_tests::splitmix(seed.wrapping_mul(0xD1B5_4A32_D192_ED03), n)
}

/// What reached the exchange, counted as it goes (the mock's record is drained
/// every 200 ms, and its open orders filled every 10 s, so neither grows for the
/// whole run).
#[derive(Debug, Default)]
struct Exchange {
    polls: u64,
    requests: u64,
    forbidden: Vec<String>,
    bad_signatures: u64,
}

/// Reloads and exchange bookkeeping while the bots run.
struct Background {
    stop: Arc<AtomicBool>,
    reloads: tokio::task::JoinHandle<(u64, u64, Vec<String>)>,
    exchange: tokio::task::JoinHandle<Exchange>,
}

impl Background {
    fn start(keyward: &KeywardProcess, mock: &Arc<Mock>, flip: &Arc<AtomicBool>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let reloads = tokio::spawn(reload_every_second(
            keyward.config.clone(),
            keyward.admin_addr,
            keyward.pid,
            flip.clone(),
            stop.clone(),
        ));
        let exchange = tokio::spawn(watch_exchange(mock.clone(), stop.clone()));
        Self {
            stop,
            reloads,
            exchange,
        }
    }

    async fn stop(self) -> ((u64, u64, Vec<String>), Exchange) {
        self.stop.store(true, Ordering::Relaxed);
        (
            self.reloads.await.expect("reload task"),
            self.exchange.await.expect("exchange task"),
        )
    }
}

/// Every second: flip bot A's `max_order_notional` between 100 and 99 (its orders
/// are 60, so nothing else changes) and reload, through the admin listener and
/// SIGHUP in turn. Returns (through the admin listener, by signal, problems).
async fn reload_every_second(
    config: std::path::PathBuf,
    admin: std::net::SocketAddr,
    pid: u32,
    flip: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> (u64, u64, Vec<String>) {
    let (mut by_admin, mut by_signal) = (0, 0);
    let mut problems = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let tighter = !flip.fetch_xor(true, Ordering::Relaxed);
        write_policy(&config, tighter);
        if (by_admin + by_signal) % 2 == 0 {
            let answer = keyward_tests::client::admin_request(admin, "POST", "/reload").await;
            if answer.status != 200 && problems.len() < 5 {
                problems.push(format!("POST /reload: {} {}", answer.status, answer.body));
            }
            by_admin += 1;
        } else {
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            if !sent.is_ok_and(|s| s.success()) && problems.len() < 5 {
                problems.push("kill -HUP failed".to_owned());
            }
            by_signal += 1;
        }
    }
    (by_admin, by_signal, problems)
}

/// Writes the configuration with bot A's notional cap at 99 or 100, atomically (a
/// reload or the file watcher never sees half a file).
fn write_policy(config: &Path, tighter: bool) {
    let text = std::fs::read_to_string(config).expect("configuration");
    let (from, to) = if tighter {
        (
            "max_order_notional = \"100\"",
            "max_order_notional = \"99\"",
        )
    } else {
        (
            "max_order_notional = \"99\"",
            "max_order_notional = \"100\"",
        )
    };
    let staged = config.with_extension("toml.new");
    std::fs::write(&staged, text.replacen(from, to, 1)).expect("staged configuration");
    std::fs::rename(&staged, config).expect("configuration swap");
}

async fn watch_exchange(mock: Arc<Mock>, stop: Arc<AtomicBool>) -> Exchange {
    let mut seen = Exchange::default();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        for record in mock.take_records() {
            seen.requests += 1;
            let params = record.params();
            if record.path.starts_with("/sapi/")
                || params.get("symbol").is_some_and(|s| s == "DOGEUSDT")
            {
                seen.forbidden
                    .push(format!("{} {}", record.method, record.path));
            }
            if record.signature_ok == Some(false) {
                seen.bad_signatures += 1;
            }
        }
        // Orders left open (their cancel failed) fill now and then, as they would.
        if stopping || seen.polls % 50 == 0 {
            mock.fill_all();
        }
        seen.polls += 1;
        if stopping {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With every bot gone: a reload (which renews the upstream pools), then keyward's
/// usage once its descriptors settle, and how many of its sockets are connections
/// to the exchange (its housekeeping may have opened one in the new pool).
async fn quiet_usage(keyward: &KeywardProcess, mock_port: u16) -> (Usage, u64) {
    let answer = keyward_tests::client::admin_request(keyward.admin_addr, "POST", "/reload").await;
    if answer.status != 200 {
        println!("  (quiet reload answered {})", answer.status);
    }
    let usage = crate::settled_usage(keyward.pid).await;
    println!(
        "  keyward's TCP sockets: {:?} (bots connect to :{}, the exchange listens on :{})",
        keyward_tests::process::tcp_sockets(keyward.pid),
        keyward.bot_addr.port(),
        mock_port
    );
    (usage, keyward.connections_to(mock_port))
}

pub(crate) async fn run(options: &Options) -> Report {
    let mut report = Report::default();
    let exe = KeywardExe::new();
    let mock = Arc::new(Mock::start().await);
    let plan = Faults::mixed(
        options.seed,
        options.fault_rate,
        options.tls_fault_rate,
        SLOW_MS,
    );
    mock.set(Behaviour::Faulty(plan));
    let server = format!(
        "max_connections = 512\nupstream_timeout_ms = {UPSTREAM_TIMEOUT_MS}\nconnect_timeout_ms = 1000"
    );
    let mut keyward = KeywardProcess::spawn_serving(
        exe.path(),
        FixturePolicy::P0,
        Serving {
            upstream: Some((mock.url(), mock.ca.clone())),
            server_extra: server.clone(),
            // The soak's load is far beyond a real account's order limits.
            account_extra: "exchange_limits_multiplier = 1000000".to_owned(),
            ..Serving::default()
        },
        VaultKey::File,
        &[],
    );
    println!(
        "faults soak: {} requests over {} connections ({} HTTP/2), {} faulty requests and {} faulty handshakes per million, seed {}",
        options.requests,
        options.connections,
        options.http2_connections,
        options.fault_rate,
        options.tls_fault_rate,
        options.seed
    );
    println!(
        "keyward pid {} in {}",
        keyward.pid,
        keyward.path().display()
    );
    let start_usage = keyward_bench::procfs::usage(keyward.pid);
    println!("at start: {start_usage}");
    let fleet = Arc::new(Fleet {
        client: keyward.client.clone(),
        tokens: keyward.tokens.clone(),
        port: keyward.bot_addr.port(),
        seed: options.seed,
        next: AtomicU64::new(0),
    });
    let flip = Arc::new(AtomicBool::new(false));
    let sampler = crate::rss_sampler(keyward.pid, Duration::from_millis(500));
    let warm_up = options
        .warm_up
        .unwrap_or(options.requests / 2)
        .clamp(1, options.requests);
    let started = Instant::now();

    let background = Background::start(&keyward, &mock, &flip);
    let mut tally = phase(&fleet, options, warm_up).await;
    let ((admin1, signal1, mut reload_problems), mut exchange) = background.stop().await;
    let warm_elapsed = started.elapsed();
    let (warm, warm_upstream) = quiet_usage(&keyward, mock.addr.port()).await;
    println!(
        "after warm-up ({} requests, {:.1} s): {warm}",
        warm_up,
        warm_elapsed.as_secs_f64()
    );

    sampler.reset();
    let main_started = Instant::now();
    let background = Background::start(&keyward, &mock, &flip);
    let progress = {
        let fleet = fleet.clone();
        let pid = keyward.pid;
        let total = options.requests;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let sent = fleet.next.load(Ordering::Relaxed).min(total);
                println!(
                    "  ... {sent} sent, keyward {}",
                    keyward_bench::procfs::usage(pid)
                );
            }
        })
    };
    tally.merge(phase(&fleet, options, options.requests).await);
    progress.abort();
    let ((admin2, signal2, more_problems), more_exchange) = background.stop().await;
    let main_elapsed = main_started.elapsed();
    let elapsed = started.elapsed();
    reload_problems.extend(more_problems);
    exchange.requests += more_exchange.requests;
    exchange.forbidden.extend(more_exchange.forbidden);
    exchange.bad_signatures += more_exchange.bad_signatures;
    let peak_kib = sampler.peak();
    drop(sampler);
    let (end, end_upstream) = quiet_usage(&keyward, mock.addr.port()).await;
    println!(
        "at the end: {end} (peak RSS during the main run {:.1} MiB)",
        peak_kib as f64 / 1024.0
    );

    let alive = keyward.running();
    let panics = crate::panics_in(&keyward);
    keyward.signal("TERM");
    let exit = keyward.wait(Duration::from_secs(30));

    println!("\nrequests");
    println!(
        "  sent {} in {:.1} s ({:.0}/s; main run {:.0}/s), {} bot connections opened, {} connection attempts failed",
        tally.sent,
        elapsed.as_secs_f64(),
        tally.sent as f64 / elapsed.as_secs_f64(),
        (options.requests - warm_up) as f64 / main_elapsed.as_secs_f64(),
        tally.connections_opened,
        tally.connect_failures
    );
    let mut by_kind: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    for ((kind, status, reason), n) in &tally.answers {
        let label = if reason.is_empty() {
            format!("{status}: {n}")
        } else {
            format!("{status} {reason}: {n}")
        };
        by_kind.entry(*kind).or_default().push(label);
    }
    for kind in Kind::ALL {
        let answers = by_kind.remove(&kind).unwrap_or_default();
        println!("  {kind:?}: {}", answers.join(", "));
    }
    println!("faults injected by the mock");
    let injected = mock.faults_injected();
    for (fault, n) in &injected {
        println!("  {}: {n}", fault.name());
    }
    println!(
        "  bots' requests that reached the exchange: {}",
        exchange.requests
    );
    println!(
        "reloads sent: {} through POST /reload, {} by SIGHUP",
        admin1 + admin2,
        signal1 + signal2
    );

    println!("\nchecks");
    report.check(
        alive && exit.is_some_and(|s| s.success()),
        format!("keyward ran to the end and exited 0 on SIGTERM ({exit:?})"),
    );
    report.check(
        panics.is_empty(),
        format!("no panic in keyward's log {panics:?}"),
    );
    report.check(
        tally.unanswered == 0,
        format!(
            "every request answered: {} of {} unanswered {:?}",
            tally.unanswered, tally.sent, tally.unanswered_examples
        ),
    );
    report.check(
        tally.without_id == 0,
        format!(
            "every answer carries x-keyward-request-id ({} without)",
            tally.without_id
        ),
    );
    report.check(
        tally.wrong == 0,
        format!(
            "every refusal as the policy says, every forwarded request accepted by the exchange or failed by a fault ({} otherwise: {:?})",
            tally.wrong, tally.wrong_examples
        ),
    );
    report.check(
        exchange.forbidden.is_empty() && exchange.bad_signatures == 0,
        format!(
            "no refused request reached the exchange ({} did), no bad signature ({})",
            exchange.forbidden.len(),
            exchange.bad_signatures
        ),
    );
    let fault_kinds = injected.values().filter(|n| **n > 0).count();
    report.check(
        fault_kinds == 8,
        format!("every kind of fault was injected ({fault_kinds} of 8 kinds)"),
    );
    report.check(
        reload_problems.is_empty(),
        format!("every reload request accepted {reload_problems:?}"),
    );
    audit_checks(&mut report, &exe, &keyward, &tally, &exchange);
    let growth = (end.rss_kib as f64 - warm.rss_kib as f64) / warm.rss_kib.max(1) as f64;
    report.check(
        growth <= 0.10,
        format!(
            "RSS within 10 % of its level after warm-up: {:.1} MiB -> {:.1} MiB ({:+.1} %)",
            warm.rss_kib as f64 / 1024.0,
            end.rss_kib as f64 / 1024.0,
            growth * 100.0
        ),
    );
    report.check(
        end.fds - end_upstream <= warm.fds - warm_upstream && end_upstream <= 2,
        format!(
            "no file descriptor leak: {} after warm-up ({} sockets, {warm_upstream} of them to the exchange), {} at the end ({} sockets, {end_upstream} to the exchange)",
            warm.fds, warm.sockets, end.fds, end.sockets
        ),
    );
    crate::keep_or_drop(keyward, options);
    report
}

/// Exactly one `request` line per request answered, one `outcome` line per
/// forwarded one, every reload recorded as loaded, and the chain verifies.
fn audit_checks(
    report: &mut Report,
    exe: &KeywardExe,
    keyward: &KeywardProcess,
    tally: &Tally,
    exchange: &Exchange,
) {
    let file = keyward.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let mut requests: HashMap<String, (u32, bool)> = HashMap::new();
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    let mut reloads: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = 0u64;
    let mut unreadable = 0u64;
    let mut own = std::collections::HashSet::new();
    for line in text.lines() {
        lines += 1;
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            unreadable += 1;
            continue;
        };
        let id = record["request_id"].as_str().unwrap_or_default().to_owned();
        match record["event"].as_str() {
            // keyward's own signed requests (open-order reconciliation).
            Some("request") if record["transport"] == "internal" => {
                own.insert(id);
            }
            Some("request") => {
                let entry = requests.entry(id).or_default();
                entry.0 += 1;
                entry.1 |= record["decision"] != "deny";
            }
            Some("outcome") => *outcomes.entry(id).or_default() += 1,
            Some("reload") => {
                *reloads
                    .entry(format!(
                        "{}/{}",
                        record["trigger"].as_str().unwrap_or("?"),
                        record["result"].as_str().unwrap_or("?")
                    ))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    println!(
        "audit log: {lines} lines ({} request lines of bots, {} of keyward's own housekeeping, {} outcome), reloads {reloads:?}, {:.1} MiB",
        requests.values().map(|(n, _)| u64::from(*n)).sum::<u64>(),
        own.len(),
        outcomes.values().map(|n| u64::from(*n)).sum::<u64>(),
        text.len() as f64 / (1024.0 * 1024.0)
    );
    let mut missing = 0u64;
    let mut doubled = 0u64;
    for id in &tally.ids {
        match requests.get(id) {
            None => missing += 1,
            Some((n, _)) if *n != 1 => doubled += 1,
            Some(_) => {}
        }
    }
    let answered: std::collections::HashSet<&str> = tally.ids.iter().map(String::as_str).collect();
    let unknown = requests
        .keys()
        .filter(|id| !answered.contains(id.as_str()))
        .count();
    report.check(
        unreadable == 0 && missing == 0 && doubled == 0 && unknown == 0,
        format!(
            "exactly one request line per request: {} answered ids, {missing} without a line, {doubled} with more than one, {unknown} lines for no answered request, {unreadable} unreadable lines",
            tally.ids.len()
        ),
    );
    let forwarded = requests.iter().filter(|(_, (_, allowed))| *allowed);
    let (mut without_outcome, mut extra_outcomes) = (0u64, 0u64);
    for (id, _) in forwarded {
        match outcomes.get(id) {
            None => without_outcome += 1,
            Some(n) if *n > 1 => extra_outcomes += 1,
            Some(_) => {}
        }
    }
    let orphans = outcomes
        .keys()
        .filter(|id| !own.contains(*id) && !requests.get(*id).is_some_and(|(_, allowed)| *allowed))
        .count();
    report.check(
        without_outcome == 0 && extra_outcomes == 0 && orphans == 0,
        format!(
            "one outcome line per forwarded request ({without_outcome} without, {extra_outcomes} with more, {orphans} outcomes of no forwarded request)"
        ),
    );
    // Counted at the exchange, not from keyward's log: a refused request that reached
    // the exchange some other way than as a recorded forward shows here. (Fewer can
    // arrive than were forwarded: some forwards die in a faulty TLS handshake.)
    let bot_outcomes: u64 = outcomes
        .iter()
        .filter(|(id, _)| !own.contains(*id))
        .map(|(_, n)| u64::from(*n))
        .sum();
    report.check(
        exchange.requests <= bot_outcomes,
        format!(
            "the exchange received only forwarded requests: {} bots' requests arrived, {bot_outcomes} were forwarded",
            exchange.requests
        ),
    );
    let failed: u64 = reloads
        .iter()
        .filter(|(k, _)| k.ends_with("/failed"))
        .map(|(_, n)| *n)
        .sum();
    report.check(failed == 0, format!("no reload failed ({failed})"));
    let (verified, said) = exe.verify_audit(&file);
    report.check(verified, format!("keyward audit verify: {said}"));
}
