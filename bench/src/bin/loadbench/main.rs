//! `loadbench`: keyward's end-to-end load benchmark (docs/performance.md). In one run, with one load generator (oha), it measures a bot
//! talking to a fast local mock exchange directly (the floor), through nginx as a TLS
//! reverse proxy, and through keyward with policy, signing and audit on: throughput
//! at saturation and latency at a fixed rate, for a signed order and a signed read;
//! then keyward's resident memory idle, under load and holding many idle bot
//! connections. It prints one table with medians over repetitions and the ratios
//! keyward/nginx and keyward/direct, and writes everything as JSON.
//!
//! The same binary is also keyward (started under the name `keyward`, it is the
//! production entry point) and the mock exchange (under `loadbench-exchange`), so that
//! `cargo run --release` builds all of it with one codegen, and each runs as its own
//! process whose memory can be read from `/proc`.

// A benchmark harness: a broken setup is a failed run, said loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod budget;
mod exchange;
mod idle;
mod nginx;
mod oha;
mod report;
mod shared;
mod stream;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use keyward_bench::procfs;
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::{FixturePolicy, Serving, TempDir, canary, hmac_sha256_hex};

use crate::oha::{Load, Request};
use crate::report::{Measurement, PathKind, RequestKind, Results};

/// keyward's end-to-end load benchmark: direct, nginx and keyward, side by side.
#[derive(Debug, Parser)]
#[command(name = "loadbench")]
struct Options {
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Seconds of each fixed-rate latency run.
    #[arg(long, default_value_t = 6)]
    latency_duration: u64,
    /// Requests a second of the latency runs (below every path's saturation).
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Repetitions of every measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    repetitions: u32,
    /// Idle bot connections held open for the memory measurement (0: skip).
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Idle bot WebSockets (Binance spot, each answered once) held open for the
    /// memory measurement, after the idle connections are closed (0: skip).
    #[arg(long, default_value_t = 0)]
    idle_streams: usize,
    /// nginx worker processes (default: one per CPU, as `worker_processes auto`).
    #[arg(long)]
    nginx_workers: Option<usize>,
    /// Where the JSON results go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/loadbench.json"))]
    output: PathBuf,
    /// Keep keyward's directory (configuration, audit log, logs) and say where it is.
    #[arg(long)]
    keep: bool,
    /// Only these paths (comma-separated: direct, nginx, keyward), e.g. to compare two
    /// builds of keyward against nginx quickly.
    #[arg(long, value_delimiter = ',', default_values_t = [PathArg::Direct, PathArg::Nginx, PathArg::Keyward])]
    paths: Vec<PathArg>,
    /// Start everything, print how to load each path, and wait (for profiling with
    /// `perf record -p <keyward pid>` while oha runs); Ctrl-C stops.
    #[arg(long)]
    hold: bool,
    /// Run keyward under this command, e.g. `valgrind --tool=callgrind` to count its
    /// instructions per request (with --hold; split on spaces).
    #[arg(long)]
    keyward_wrapper: Option<String>,
    /// Also send this many orders through a bot with budgets (daily_notional and
    /// max_orders on the bot and its account), in ten slices, and compare the first
    /// and last tenth (0: skip). Issue 19 asks for 1,000,000.
    #[arg(long, default_value_t = 0)]
    budget_orders: u64,
    /// Also send this many order messages over Binance's WebSocket API, straight to
    /// the test mock exchange and through a keyward of their own, one connection
    /// each at `--stream-rate`, for keyward's added latency per message (0: skip).
    #[arg(long, default_value_t = 0)]
    stream_orders: u64,
    /// Order messages a second of the WebSocket run.
    #[arg(long, default_value_t = 1000)]
    stream_rate: u32,
    /// Also compare a keyward whose state is in Redis (a `redis-server` started on
    /// loopback) with one keeping its own: a budgeted bot's order latency at
    /// `--rate`, and the throughput of three Redis replicas at once (issue 22).
    #[arg(long)]
    shared_state: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PathArg {
    Direct,
    Nginx,
    Keyward,
}

impl std::fmt::Display for PathArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Direct => "direct",
            Self::Nginx => "nginx",
            Self::Keyward => "keyward",
        })
    }
}

fn main() -> ExitCode {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "keyward" => keyward::cli::main(),
        exchange::PROCESS_NAME => {
            let dir = std::env::args_os().nth(1).expect("exchange directory");
            exchange::main(Path::new(&dir))
        }
        _ => {
            let options = Options::parse();
            match bench(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("loadbench: {message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The bench's own requests are signed with the canary key for the direct and nginx
/// paths (the mock does not check, but the bytes on the wire are a real bot's); a
/// fixed timestamp keeps every request identical.
/// How often resident memory is sampled while a load runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

const TIMESTAMP: &str = "1767225600000";

fn signed(params: &str) -> String {
    let unsigned = format!("{params}&recvWindow=5000&timestamp={TIMESTAMP}");
    let signature = hmac_sha256_hex(canary::SECRET.as_bytes(), unsigned.as_bytes());
    format!("{unsigned}&signature={signature}")
}

const ORDER_PARAMS: &str =
    "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";

/// The request of `kind` to `base`, authenticated with `api_key`. keyward receives
/// the same bytes as the exchange would, the bot's signature included (keyward strips
/// it and signs itself); only the API-key header carries the bot's token instead.
pub(crate) fn request(kind: RequestKind, base: &str, api_key: &str) -> Request {
    let mut headers = vec![format!("X-MBX-APIKEY: {api_key}")];
    match kind {
        RequestKind::Order => {
            headers.push("Content-Type: application/x-www-form-urlencoded".to_owned());
            Request {
                method: "POST",
                url: format!("{base}/api/v3/order"),
                headers,
                body: Some(signed(ORDER_PARAMS)),
            }
        }
        RequestKind::Read => Request {
            method: "GET",
            url: format!("{base}/api/v3/account?{}", signed("omitZeroBalances=true")),
            headers,
            body: None,
        },
    }
}

/// A port nothing listens on now (for nginx, which needs one in its configuration).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn bench(options: &Options) -> Result<(), String> {
    let oha = oha::find()?;
    let nginx_exe = nginx::find()?;
    ensure_open_files(options.idle_connections.max(options.idle_streams) + 2_000)?;
    let dir = TempDir::new("loadbench");
    let outcome = bench_in(options, &oha, &nginx_exe, &dir);
    if options.keep {
        println!("files kept in {}", dir.keep().display());
    }
    outcome
}

fn bench_in(options: &Options, oha: &Path, nginx_exe: &Path, dir: &TempDir) -> Result<(), String> {
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    for name in ["keyward", exchange::PROCESS_NAME] {
        std::os::unix::fs::symlink(&me, bin.join(name)).map_err(|e| e.to_string())?;
    }
    let keyward_exe = match &options.keyward_wrapper {
        None => bin.join("keyward"),
        Some(wrapper) => {
            // The wrapper runs the binary under its own name, so it still starts as keyward.
            let script = bin.join("wrapped-keyward");
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nexec {wrapper} {} \"$@\"\n",
                    bin.join("keyward").display()
                ),
            )
            .map_err(|e| e.to_string())?;
            std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            script
        }
    };

    let exchange = exchange::Exchange::start(
        &bin.join(exchange::PROCESS_NAME),
        &dir.path().join("exchange"),
    );
    let workers = options
        .nginx_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).map_err(|e| e.to_string())?;
    let nginx = nginx::Nginx::start(nginx_exe, &nginx_dir, workers, exchange.port, &exchange.ca);
    let keyward = KeywardProcess::spawn_serving(
        &keyward_exe,
        FixturePolicy::P0,
        Serving {
            upstream: Some((exchange.url(), exchange.ca.clone())),
            // Room for the idle connections and the load; idle connections are kept
            // for as long as keyward allows, so they stay open while memory is read.
            server_extra: format!(
                "max_connections = {}\nheader_timeout_ms = 120000",
                options.idle_connections.max(options.idle_streams) + 1_000
            ),
            // The bench's order rate must never be refused: far above what any path
            // sustains, also against the exchange's order limits (a test exchange's).
            order_rate: Some("1000000/s".to_owned()),
            account_extra: "exchange_limits_multiplier = 1000000".to_owned(),
            bot_extra: "exchange_share = \"100%\"".to_owned(),
            ..Serving::default()
        },
        VaultKey::File,
        &[],
    );
    let kw_token = keyward.tokens.bot.clone();
    let bases = [
        (PathKind::Direct, exchange.url(), canary::API_KEY.to_owned()),
        (
            PathKind::Nginx,
            format!("https://127.0.0.1:{}", nginx.port),
            canary::API_KEY.to_owned(),
        ),
        (
            PathKind::Keyward,
            format!("https://127.0.0.1:{}", keyward.bot_addr.port()),
            kw_token.clone(),
        ),
    ];
    let bases: Vec<(PathKind, String, String)> = bases
        .into_iter()
        .filter(|(path, _, _)| options.paths.iter().any(|p| p.to_string() == path.name()))
        .collect();
    if options.hold {
        hold(options, oha, &bases, keyward.pid, nginx.master);
        return Ok(());
    }
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;

    let mut results = Results::new(
        options_summary(options, workers),
        tool_versions(oha, nginx_exe),
    );
    // Sampled before any load: what keyward holds once started.
    results.rss.keyward_idle = procfs::rss(keyward.pid);
    results.rss.nginx_idle = nginx.rss();
    let mut sent_to_keyward = 0u64;
    // Time-bounded oha runs (`-z`) end with requests in flight on every connection:
    // keyward answers and audits them, oha no longer counts them.
    let mut unseen = 0u64;

    let run =
        |path: PathKind, base: &str, key: &str, kind: RequestKind, load: Load, seconds: u64| {
            let request = request(kind, base, key);
            let connections = options.connections;
            oha::run(
                oha,
                &request,
                load,
                connections,
                oha::Span::For(Duration::from_secs(seconds)),
                &scratch,
            )
            .map_err(|e| format!("{} {} ({load:?}): {e}", path.name(), kind.name()))
        };

    // Warm-up, not recorded: pools, caches, and the page cache of the audit log.
    println!("warming up");
    for (path, base, key) in &bases {
        for kind in [RequestKind::Order, RequestKind::Read] {
            let warm = run(*path, base, key, kind, Load::Saturation, 1)?;
            if *path == PathKind::Keyward {
                sent_to_keyward += warm.answered;
                unseen += u64::from(options.connections);
            }
        }
    }

    let started = Instant::now();
    for repetition in 0..options.repetitions {
        // Each repetition starts with another path, so that slow drift on a shared
        // machine does not always favour the same one.
        let mut order: Vec<&(PathKind, String, String)> = bases.iter().collect();
        order.rotate_left(repetition as usize % bases.len());
        let scenarios = [
            (RequestKind::Order, Load::Saturation, options.duration),
            (RequestKind::Read, Load::Saturation, options.duration),
            (
                RequestKind::Order,
                Load::Rate(options.rate),
                options.latency_duration,
            ),
            (
                RequestKind::Read,
                Load::Rate(options.rate),
                options.latency_duration,
            ),
        ];
        for (kind, load, seconds) in scenarios {
            for (path, base, key) in &order {
                let sampler = matches!(load, Load::Saturation)
                    .then(|| {
                        let (kw, ng) = (keyward.pid, nginx.master);
                        match path {
                            PathKind::Keyward => {
                                Some(procfs::PeakSampler::start(SAMPLE_EVERY, move || {
                                    procfs::rss(kw)
                                }))
                            }
                            PathKind::Nginx => {
                                Some(procfs::PeakSampler::start(SAMPLE_EVERY, move || {
                                    procfs::rss_of_tree(ng)
                                }))
                            }
                            PathKind::Direct => None,
                        }
                    })
                    .flatten();
                let cpu = || match path {
                    PathKind::Keyward => Some(procfs::cpu_seconds(keyward.pid)),
                    PathKind::Nginx => Some(procfs::cpu_seconds_of_tree(nginx.master)),
                    PathKind::Direct => None,
                };
                let cpu_before = cpu();
                let measured = run(*path, base, key, kind, load, seconds)?;
                let cpu_per_request = cpu_before
                    .zip(cpu())
                    .map(|(before, after)| (after - before) / measured.answered as f64);
                if let Some(sampler) = sampler {
                    let peak = sampler.finish();
                    let slot = match path {
                        PathKind::Keyward => &mut results.rss.keyward_load,
                        _ => &mut results.rss.nginx_load,
                    };
                    *slot = (*slot).max(peak);
                }
                if *path == PathKind::Keyward {
                    sent_to_keyward += measured.answered;
                    unseen += u64::from(options.connections);
                }
                println!(
                    "  rep {} {:<7} {:<5} {:<10} {:>9.0} req/s{}{}",
                    repetition + 1,
                    path.name(),
                    kind.name(),
                    load_name(load),
                    measured.throughput,
                    cpu_per_request
                        .map_or_else(String::new, |c| format!("  {:5.1} us CPU", c * 1e6)),
                    measured.latency.map_or_else(String::new, |l| format!(
                        "  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms",
                        l.p50 * 1e3,
                        l.p99 * 1e3,
                        l.p999 * 1e3
                    ))
                );
                results.runs.push(Measurement {
                    repetition,
                    path: *path,
                    request: kind,
                    load,
                    run: measured,
                    cpu_per_request,
                });
            }
        }
    }
    println!("measured in {:.0} s", started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(1));
    results.rss.keyward_after_load = procfs::rss(keyward.pid);

    if options.idle_connections > 0 {
        let read = request(RequestKind::Read, "", &kw_token);
        let mut headers: Vec<(String, String)> = read
            .headers
            .iter()
            .filter_map(|h| h.split_once(": "))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        headers.push((
            "Host".to_owned(),
            format!("127.0.0.1:{}", keyward.bot_addr.port()),
        ));
        let bytes = keyward_tests::client::build("GET", &read.url, &headers, b"");
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let held = runtime.block_on(idle::open(
            keyward.bot_addr,
            &keyward.path().join("tls/ca.pem"),
            bytes,
            options.idle_connections,
            64,
        ));
        sent_to_keyward += held.connections.len() as u64;
        println!(
            "{} idle connections open in {:.1} s ({} failed)",
            held.connections.len(),
            held.elapsed.as_secs_f64(),
            held.failed
        );
        if held.failed > 0 {
            return Err(format!(
                "{} idle connections could not be opened or were refused",
                held.failed
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
        results.rss.keyward_idle_connections = procfs::rss(keyward.pid);
        results.rss.idle_connections = held.connections.len();
        drop(held);
        drop(runtime);
    }

    if options.idle_streams > 0 {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(2));
        results.rss.keyward_before_streams = procfs::rss(keyward.pid);
        let held = runtime.block_on(idle::open_streams(
            keyward.bot_addr,
            &keyward.path().join("tls/ca.pem"),
            options.idle_streams,
            64,
        ));
        println!(
            "{} idle WebSockets open in {:.1} s ({} failed)",
            held.sockets.len(),
            held.elapsed.as_secs_f64(),
            held.failed
        );
        if held.failed > 0 {
            return Err(format!(
                "{} idle WebSockets could not be opened or answered",
                held.failed
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
        results.rss.keyward_idle_streams = procfs::rss(keyward.pid);
        results.rss.idle_streams = held.sockets.len();
        drop(held);
        drop(runtime);
    }

    let stream_run = if options.stream_orders > 0 {
        println!(
            "order messages over WebSockets: {} at {}/s, straight to the bench exchange, through nginx and through keyward",
            options.stream_orders, options.stream_rate
        );
        let run = stream::run(
            &keyward_exe,
            &exchange,
            &nginx,
            options.stream_orders,
            options.stream_rate,
        )?;
        println!(
            "  direct  p50 {:.3} ms  p99 {:.3} ms\n  nginx   p50 {:.3} ms  p99 {:.3} ms (added p50 {:.0} us, p99 {:.0} us)\n  keyward p50 {:.3} ms  p99 {:.3} ms (added p50 {:.0} us, p99 {:.0} us)\n  CPU per message: nginx {:.1} us, keyward {:.1} us\n  sleeps per message: nginx {:.2}, keyward {:.2}",
            run.direct.p50,
            run.direct.p99,
            run.nginx.p50,
            run.nginx.p99,
            (run.nginx.p50 - run.direct.p50) * 1e3,
            (run.nginx.p99 - run.direct.p99) * 1e3,
            run.keyward.p50,
            run.keyward.p99,
            (run.keyward.p50 - run.direct.p50) * 1e3,
            (run.keyward.p99 - run.direct.p99) * 1e3,
            run.nginx.cpu_us,
            run.keyward.cpu_us,
            run.nginx.wakeups,
            run.keyward.wakeups,
        );
        println!(
            "  events  {:.0}/s straight, {:.0}/s through keyward",
            run.fanout.direct, run.fanout.keyward
        );
        // The order messages' keyward: each message an allowed order with its
        // outcome, and its one WebSocket opening keyward's own answer.
        stop_and_verify(run.process, (run.keyward.messages, 1), 0, options.keep)?;
        Some((run.direct, run.nginx, run.keyward, run.fanout))
    } else {
        None
    };
    results.stream = stream_run;

    let budget_run = if options.budget_orders > 0 {
        println!(
            "budgeted bot: {} orders in ten slices, the unbudgeted bot before and after",
            options.budget_orders
        );
        let run = budget::run(
            &keyward_exe,
            oha,
            (exchange.url(), exchange.ca.clone()),
            (
                &format!("https://127.0.0.1:{}", keyward.bot_addr.port()),
                &kw_token,
            ),
            options.budget_orders,
            options.connections,
            &scratch,
        )?;
        sent_to_keyward += run.unbudgeted_sent;
        let summary = run.json();
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
        let unseen = budget::SLICES * u64::from(options.connections);
        stop_and_verify(run.keyward, (run.sent, 0), unseen, options.keep)?;
        Some(summary)
    } else {
        None
    };
    let shared_run = if options.shared_state {
        println!(
            "shared state: orders at {}/s through keyward with local state and with its state in Redis, then three Redis replicas at saturation",
            options.rate
        );
        let mut run = shared::run(&shared::Settings {
            keyward_exe: &keyward_exe,
            oha,
            exchange: (exchange.url(), exchange.ca.clone()),
            rate: options.rate,
            latency_seconds: options.latency_duration,
            throughput_seconds: options.duration,
            repetitions: options.repetitions,
            connections: options.connections,
            scratch: &scratch,
        })?;
        let summary = run.json();
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
        for (process, sent, unseen) in std::mem::take(&mut run.processes) {
            stop_and_verify(process, (sent, 0), unseen, options.keep)?;
        }
        drop(run);
        Some(summary)
    } else {
        None
    };
    // The unbudgeted bot's two count-bounded runs of the budget run.
    if options.budget_orders > 0 {
        unseen += 2 * u64::from(options.connections);
    }
    // Each idle WebSocket has two records of keyward's own answers: its opening
    // and its `session.status`.
    let answered_by_keyward = 2 * results.rss.idle_streams as u64;
    results.audit = Some(stop_and_verify(
        keyward,
        (sent_to_keyward, answered_by_keyward),
        unseen,
        options.keep,
    )?);
    drop(nginx);
    drop(exchange);

    let table = results.table();
    println!("\n{table}");
    let mut json = results.to_json();
    if let Some(summary) = budget_run {
        json["budget_run"] = summary;
    }
    if let Some(summary) = shared_run {
        json["shared_state_run"] = summary;
    }
    if let Some(parent) = options.output.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(
        &options.output,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", options.output.display()))?;
    println!("results written to {}", options.output.display());
    Ok(())
}

/// Prints the pids and an oha command line per path and request, then waits to be
/// stopped.
fn hold(
    options: &Options,
    oha: &Path,
    bases: &[(PathKind, String, String)],
    keyward: u32,
    nginx: u32,
) {
    println!("keyward pid {keyward}, nginx master pid {nginx}; Ctrl-C or SIGTERM stops everything");
    for (path, base, key) in bases {
        for kind in [RequestKind::Order, RequestKind::Read] {
            let request = request(kind, base, key);
            let mut line = format!(
                "{} --no-tui --insecure -z 10s -c {} -m {}",
                oha.display(),
                options.connections,
                request.method
            );
            for header in &request.headers {
                line.push_str(&format!(" -H '{header}'"));
            }
            if let Some(body) = &request.body {
                line.push_str(&format!(" -d '{body}'"));
            }
            println!(
                "{} {}:
  {line} '{}'",
                path.name(),
                kind.name(),
                request.url
            );
        }
    }
    // Returning runs the destructors, which stop keyward, nginx and the exchange.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    });
}

fn load_name(load: Load) -> String {
    match load {
        Load::Saturation => "saturation".to_owned(),
        Load::Rate(rate) => format!("{rate}/s"),
    }
}

/// Stops keyward as an operator would (SIGTERM: drain, `stop` record, sync), then
/// checks its audit log: the hash chain verifies with `keyward audit verify`, and it
/// holds exactly one allowed `request` record and one 2xx `outcome` record for every
/// request the bench had answered, one allowed record without an outcome for each
/// thing keyward answered itself (WebSocket openings and logons), and no refusal.
/// `unseen` is how many requests keyward may have answered beyond `sent`: an oha run
/// bounded by a count (`-n`) stops counting at the count and one bounded by time
/// (`-z`) at the deadline, and the requests its other connections had in flight then
/// are answered (and audited) but not reported: at most one per connection per run.
fn stop_and_verify(
    mut keyward: KeywardProcess,
    (sent, answered_by_keyward): (u64, u64),
    unseen: u64,
    keep: bool,
) -> Result<report::AuditCheck, String> {
    keyward.signal("TERM");
    let status = keyward
        .wait(Duration::from_secs(30))
        .ok_or("keyward did not stop within 30 s of SIGTERM")?;
    if !status.success() {
        return Err(format!("keyward exited with {status}:\n{}", keyward.log()));
    }
    let audit = keyward.path().join("audit.jsonl");
    let (code, out, err) = keyward_tests::run_cli(
        &["audit", "verify", &audit.to_string_lossy()],
        std::time::SystemTime::now(),
    );
    if code != 0 {
        return Err(format!("keyward audit verify failed ({code}): {out}{err}"));
    }
    let file = std::fs::File::open(&audit).map_err(|e| format!("{}: {e}", audit.display()))?;
    let mut check = report::AuditCheck {
        verified: out.trim().to_owned(),
        lines: 0,
        allowed: 0,
        outcomes_2xx: 0,
        other: 0,
        answered_by_keyward: 0,
        sent,
    };
    let mut housekeeping = std::collections::HashSet::new();
    // Read line by line: a default run leaves a log of several hundred megabytes.
    for line in std::io::BufRead::lines(std::io::BufReader::new(file)) {
        let line = line.map_err(|e| e.to_string())?;
        check.lines += 1;
        let record: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        if record["event"] == "request" && record["bot"] == keyward_policy::KEYWARD_ITSELF {
            // keyward's own signed reads (the open-order checks after orders it
            // could not see the end of) are not the bench's; their outcomes follow.
            housekeeping.insert(record["request_id"].as_str().unwrap_or_default().to_owned());
            continue;
        }
        if record["event"] == "outcome"
            && housekeeping.remove(record["request_id"].as_str().unwrap_or_default())
        {
            continue;
        }
        match (record["event"].as_str(), record["decision"].as_str()) {
            (Some("request"), Some("allow"))
                if matches!(
                    record["reason"].as_str(),
                    Some("stream_opened" | "answered_by_keyward")
                ) =>
            {
                check.answered_by_keyward += 1;
            }
            (Some("request"), Some("allow")) => check.allowed += 1,
            (Some("outcome"), _)
                if record["upstream_status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s)) =>
            {
                check.outcomes_2xx += 1;
            }
            (Some("start" | "stop"), _) => {}
            _ => check.other += 1,
        }
    }
    let counted = sent..=sent + unseen;
    let mismatch = (!counted.contains(&check.allowed)
        || check.outcomes_2xx != check.allowed
        || check.answered_by_keyward != answered_by_keyward
        || check.other != 0)
        .then(|| {
            format!(
                "the audit log does not match what was sent: {check:?}\n{}",
                keyward.log()
            )
        });
    if keep {
        println!("keyward's directory: {}", keyward.keep_dir().display());
    }
    match mismatch {
        Some(why) => Err(why),
        None => Ok(check),
    }
}

/// Makes sure this process (and so keyward, nginx and oha, which inherit the limit)
/// may open `needed` files, raising the soft limit to the hard one.
fn ensure_open_files(needed: usize) -> Result<(), String> {
    let soft = keyward::sys::raise_open_files_limit()
        .map_err(|e| format!("cannot raise the open-files limit: {e}"))?;
    if soft < needed as u64 {
        return Err(format!(
            "the open-files limit is {soft}; the idle-connection test needs {needed}: raise \
             the hard limit (`ulimit -Hn {needed}` as root, or LimitNOFILE) or pass \
             --idle-connections with a smaller number"
        ));
    }
    Ok(())
}

fn options_summary(options: &Options, workers: usize) -> serde_json::Value {
    serde_json::json!({
        "duration_s": options.duration,
        "latency_duration_s": options.latency_duration,
        "rate": options.rate,
        "connections": options.connections,
        "repetitions": options.repetitions,
        "idle_connections": options.idle_connections,
        "nginx_workers": workers,
    })
}

fn tool_versions(oha: &Path, nginx: &Path) -> serde_json::Value {
    let version = |exe: &Path, arg: &str| {
        Command::new(exe)
            .arg(arg)
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or_default().trim().to_owned()
            })
            .unwrap_or_default()
    };
    serde_json::json!({
        "oha": version(oha, "--version"),
        "nginx": version(nginx, "-v"),
    })
}
