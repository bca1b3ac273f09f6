//! keyward with its state in Redis against keyward with its own (issue 22), on one
//! machine with `redis-server` on loopback: a budgeted bot's order latency at
//! `--rate` through keyward with local state, with its state in a Redis that
//! flushes every write to disk before answering (`appendfsync always`, what
//! docs/shared-state.md requires) and in one that flushes once a second (the round
//! trip alone), alternated in every repetition; and the order throughput of three
//! replicas sharing one account through the durable Redis, loaded at once, beside
//! one keyward with local state, in the same run.

use std::path::Path;
use std::time::Duration;

use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::redis::RedisServer;
use keyward_tests::{FixturePolicy, Serving};

use crate::oha::{self, Load, Percentiles, Span};
use crate::report::RequestKind;

/// Budgets far above what the run spends, on the bot and its account, so that
/// every order is checked and spent against them (in Redis for the shared replicas)
/// and none refused.
const BUDGETS: &str = "daily_notional = \"1000000000000\"\nmax_orders = \"1000000/m\"";

/// What the shared state run measured.
pub(crate) struct SharedRun {
    /// Order latency at the fixed rate through keyward with local state, per
    /// repetition.
    pub(crate) local_latency: Vec<Percentiles>,
    /// The same through a keyward with its state in Redis (`appendfsync always`).
    pub(crate) redis_latency: Vec<Percentiles>,
    /// The same with `appendfsync everysec`.
    pub(crate) relaxed_latency: Vec<Percentiles>,
    /// Orders a second through one keyward with local state, per repetition.
    pub(crate) local_throughput: Vec<f64>,
    /// Orders a second through three Redis replicas loaded at once (their sum), per
    /// repetition.
    pub(crate) replicas_throughput: Vec<f64>,
    /// Every keyward of the run with the orders sent to it and the requests in
    /// flight when its time-bounded runs ended, still running.
    pub(crate) processes: Vec<(KeywardProcess, u64, u64)>,
    /// The Redis servers, stopped when this is dropped (after the keywards'
    /// audit checks).
    pub(crate) redis: Vec<RedisServer>,
}

/// What the run is told.
pub(crate) struct Settings<'a> {
    pub(crate) keyward_exe: &'a Path,
    pub(crate) oha: &'a Path,
    pub(crate) exchange: (String, std::path::PathBuf),
    pub(crate) rate: u32,
    pub(crate) latency_seconds: u64,
    pub(crate) throughput_seconds: u64,
    pub(crate) repetitions: u32,
    pub(crate) connections: u32,
    pub(crate) scratch: &'a Path,
}

fn start(settings: &Settings<'_>, state: &str) -> KeywardProcess {
    KeywardProcess::spawn_serving(
        settings.keyward_exe,
        FixturePolicy::P0,
        Serving {
            upstream: Some(settings.exchange.clone()),
            server_extra: "header_timeout_ms = 120000".to_owned(),
            order_rate: Some("1000000/s".to_owned()),
            account_extra: format!("exchange_limits_multiplier = 1000000\n{BUDGETS}"),
            bot_extra: format!("exchange_share = \"100%\"\n{BUDGETS}"),
            tables: state.to_owned(),
            ..Serving::default()
        },
        VaultKey::File,
        &[],
    )
}

/// Runs the comparison; the keywards are returned for their audit checks.
pub(crate) fn run(settings: &Settings<'_>) -> Result<SharedRun, String> {
    let redis = RedisServer::start();
    let relaxed_redis = RedisServer::start_with_fsync("everysec");
    let state = |redis: &RedisServer| format!("[state]\nbackend = \"{}\"\n", redis.url());
    let local = start(settings, "");
    let replicas: Vec<KeywardProcess> = (0..3).map(|_| start(settings, &state(&redis))).collect();
    let relaxed = start(settings, &state(&relaxed_redis));
    for replica in replicas.iter().chain([&relaxed]) {
        wait_ready(replica)?;
    }
    let order = |process: &KeywardProcess| {
        crate::request(
            RequestKind::Order,
            &format!("https://127.0.0.1:{}", process.bot_addr.port()),
            &process.tokens.bot,
        )
    };
    // Indexed as the processes: local, the three replicas, the relaxed one.
    let mut sent = vec![0u64; 5];
    let mut unseen = vec![0u64; 5];
    let mut run = SharedRun {
        local_latency: Vec::new(),
        redis_latency: Vec::new(),
        relaxed_latency: Vec::new(),
        local_throughput: Vec::new(),
        replicas_throughput: Vec::new(),
        processes: Vec::new(),
        redis: Vec::new(),
    };
    let timed = |request: &oha::Request, load: Load, connections: u32, seconds: u64| {
        oha::run(
            settings.oha,
            request,
            load,
            connections,
            Span::For(Duration::from_secs(seconds)),
            settings.scratch,
        )
    };
    // Warm-up, not recorded: connections to the exchange and to Redis, scripts loaded.
    for (index, process) in std::iter::once(&local)
        .chain(&replicas)
        .chain([&relaxed])
        .enumerate()
    {
        let warm = timed(&order(process), Load::Saturation, settings.connections, 1)?;
        sent[index] += warm.answered;
        unseen[index] += u64::from(settings.connections);
    }
    for repetition in 0..settings.repetitions {
        let mut three = [(0usize, &local), (1usize, &replicas[0]), (4usize, &relaxed)];
        three.rotate_left(repetition as usize % 3);
        for (index, process) in three {
            let cpu_before = keyward_bench::procfs::cpu_seconds(process.pid);
            let sleeps_before = keyward_bench::procfs::voluntary_switches(process.pid);
            let measured = timed(
                &order(process),
                Load::Rate(settings.rate),
                settings.connections,
                settings.latency_seconds,
            )?;
            // Per order: keyward's CPU time and its threads' sleeps (each one a
            // wake-up, which the round trip to Redis adds).
            let orders = measured.answered.max(1) as f64;
            let cpu_us =
                (keyward_bench::procfs::cpu_seconds(process.pid) - cpu_before) * 1e6 / orders;
            let sleeps = keyward_bench::procfs::voluntary_switches(process.pid)
                .saturating_sub(sleeps_before) as f64
                / orders;
            sent[index] += measured.answered;
            unseen[index] += u64::from(settings.connections);
            let latency = measured
                .latency
                .ok_or("a fixed-rate run without latencies")?;
            println!(
                "  rep {} {:<21} orders at {}/s  p50 {:.3} ms  p99 {:.3} ms  CPU {:.0} us and {:.2} sleeps per order",
                repetition + 1,
                match index {
                    0 => "local state",
                    1 => "redis, fsync always",
                    _ => "redis, fsync everysec",
                },
                settings.rate,
                latency.p50 * 1e3,
                latency.p99 * 1e3,
                cpu_us,
                sleeps
            );
            match index {
                0 => run.local_latency.push(latency),
                1 => run.redis_latency.push(latency),
                _ => run.relaxed_latency.push(latency),
            }
        }
        let alone = timed(
            &order(&local),
            Load::Saturation,
            settings.connections,
            settings.throughput_seconds,
        )?;
        sent[0] += alone.answered;
        unseen[0] += u64::from(settings.connections);
        run.local_throughput.push(alone.throughput);
        // The three replicas at once, the connections split between them.
        let share = (settings.connections / 3).max(1);
        let requests: Vec<oha::Request> = replicas.iter().map(order).collect();
        let together: Vec<Result<oha::Run, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .iter()
                .enumerate()
                .map(|(n, request)| {
                    let scratch = settings.scratch.join(format!("replica-{n}"));
                    scope.spawn(move || {
                        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
                        oha::run(
                            settings.oha,
                            request,
                            Load::Saturation,
                            share,
                            Span::For(Duration::from_secs(settings.throughput_seconds)),
                            &scratch,
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("oha thread panicked".into()))
                })
                .collect()
        });
        let mut total = 0.0;
        for (n, measured) in together.into_iter().enumerate() {
            let measured = measured?;
            sent[n + 1] += measured.answered;
            unseen[n + 1] += u64::from(share);
            total += measured.throughput;
        }
        println!(
            "  rep {} orders at saturation: one keyward (local state) {:.0}/s, three replicas (redis state) {:.0}/s together",
            repetition + 1,
            alone.throughput,
            total
        );
        run.replicas_throughput.push(total);
    }
    run.processes = std::iter::once(local)
        .chain(replicas)
        .chain([relaxed])
        .zip(sent.into_iter().zip(unseen))
        .map(|(process, (sent, unseen))| (process, sent, unseen))
        .collect();
    run.redis = vec![redis, relaxed_redis];
    Ok(run)
}

fn wait_ready(process: &KeywardProcess) -> Result<(), String> {
    for _ in 0..300 {
        if process.admin("GET", "/readyz").0 == 200 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("a keyward with its state in Redis never became ready".to_owned())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

impl SharedRun {
    /// The medians over the repetitions, as printed and written to the JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        let (local_p50, redis_p50) = (
            median(self.local_latency.iter().map(|l| l.p50)),
            median(self.redis_latency.iter().map(|l| l.p50)),
        );
        let (local_p99, redis_p99) = (
            median(self.local_latency.iter().map(|l| l.p99)),
            median(self.redis_latency.iter().map(|l| l.p99)),
        );
        let (relaxed_p50, relaxed_p99) = (
            median(self.relaxed_latency.iter().map(|l| l.p50)),
            median(self.relaxed_latency.iter().map(|l| l.p99)),
        );
        serde_json::json!({
            "order_latency_ms": {
                "local_p50": local_p50 * 1e3,
                "redis_p50": redis_p50 * 1e3,
                "added_p50_us": (redis_p50 - local_p50) * 1e6,
                "local_p99": local_p99 * 1e3,
                "redis_p99": redis_p99 * 1e3,
                "added_p99_us": (redis_p99 - local_p99) * 1e6,
                "relaxed_p50": relaxed_p50 * 1e3,
                "relaxed_p99": relaxed_p99 * 1e3,
                "relaxed_added_p50_us": (relaxed_p50 - local_p50) * 1e6,
                "relaxed_added_p99_us": (relaxed_p99 - local_p99) * 1e6,
            },
            "orders_per_second": {
                "one_keyward_local_state": median(self.local_throughput.iter().copied()),
                "three_replicas_redis_state": median(self.replicas_throughput.iter().copied()),
            },
        })
    }
}
