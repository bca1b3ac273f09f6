//! The soak bench: keyward run as a separate process on 127.0.0.1 in front of the
//! mock exchange, and driven long and hard enough to show what the quick tests
//! cannot. Three modes:
//!
//! - (default) faults: dozens of bot connections send hundreds of thousands of
//!   requests while the mock injects resets, slow answers, 5xx, 429s, malformed
//!   answers and TLS failures, and the configuration is reloaded every second;
//!   afterwards every request must have been answered, the audit log must hold
//!   exactly one `request` line per request and verify, and RSS and open file
//!   descriptors must be back where they were after warm-up;
//! - `--greedy`: 10,000 connections, slowloris at scale, HTTP/2 floods and
//!   oversized heads against a bot that must keep being served, with keyward's
//!   memory sampled throughout;
//! - `--timing`: the attack corpus's AUTH-006, a two-sample Kolmogorov–Smirnov test
//!   of the latency of wrong tokens sharing a long prefix with a valid one against
//!   wrong tokens differing at the first byte.
//!
//! `cargo run -p keyward-bench --release --bin soak -- [--greedy | --timing] [options]`
//! (`--help` lists them). It exits non-zero when a check fails. keyward runs from
//! this same binary: started through a link named `keyward`, it is keyward's own
//! command line (`keyward::cli::main`), so one `cargo run` builds everything.

// A bench harness: its output is its report, and a failed expectation ends it.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod bots;
mod faults;
mod greedy;
mod timing;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use keyward_bench::procfs::{PeakSampler, Usage, usage};
use keyward_tests::TempDir;
use keyward_tests::process::KeywardProcess;

/// What a run is told on its command line.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    mode: Mode,
    /// Requests to send (faults and timing modes).
    pub(crate) requests: u64,
    /// Requests before the usage after warm-up is read (faults mode).
    pub(crate) warm_up: Option<u64>,
    /// Bot connections (faults mode).
    pub(crate) connections: u32,
    /// Of the bot connections, how many speak HTTP/2.
    pub(crate) http2_connections: u32,
    /// Faulty requests per million.
    pub(crate) fault_rate: u32,
    /// Faulty TLS handshakes per million connections.
    pub(crate) tls_fault_rate: u32,
    /// Seeds the faults and the request mix.
    pub(crate) seed: u64,
    /// Greedy connections to open at once.
    pub(crate) flood: u32,
    /// Keep keyward's directory (configuration, audit log, log) after the run.
    pub(crate) keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Faults,
    Greedy,
    Timing,
}

const USAGE: &str = "\
usage: soak [--greedy | --timing] [options]

modes:
  (none)              faults soak: bots, injected faults, a reload every second
  --greedy            10,000 connections, slowloris, HTTP/2 floods, oversized heads
  --timing            AUTH-006: token comparison timing, two-sample KS test

options:
  --requests N        requests to send (faults: 200000, timing: 20000)
  --warm-up N         faults: requests before RSS and fds are first read (half)
  --connections N     bot connections (faults: 48)
  --http2 N           of those, HTTP/2 connections (faults: 8)
  --fault-rate PPM    faulty requests per million (faults: 20000 = 2 %)
  --tls-fault-rate PPM  faulty TLS handshakes per million connections (200000)
  --flood N           greedy connections at once (greedy: 10000)
  --seed S            seeds the faults and the request mix (1)
  --keep              keep keyward's directory (printed) after the run
";

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        mode: Mode::Faults,
        requests: 0,
        warm_up: None,
        connections: 48,
        http2_connections: 8,
        fault_rate: 20_000,
        tls_fault_rate: 200_000,
        seed: 1,
        flood: 10_000,
        keep: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--greedy" => options.mode = Mode::Greedy,
            "--timing" => options.mode = Mode::Timing,
            "--requests" => options.requests = number(arg)?,
            "--warm-up" => options.warm_up = Some(number(arg)?),
            "--connections" => options.connections = narrow(number(arg)?, arg)?,
            "--http2" => options.http2_connections = narrow(number(arg)?, arg)?,
            "--fault-rate" => options.fault_rate = narrow(number(arg)?, arg)?,
            "--tls-fault-rate" => options.tls_fault_rate = narrow(number(arg)?, arg)?,
            "--flood" => options.flood = narrow(number(arg)?, arg)?,
            "--seed" => options.seed = number(arg)?,
            "--keep" => options.keep = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.requests == 0 {
        options.requests = match options.mode {
            Mode::Timing => 20_000,
            _ => 200_000,
        };
    }
    if options.http2_connections > options.connections {
        return Err("--http2 cannot exceed --connections".to_owned());
    }
    Ok(options)
}

fn narrow(value: u64, name: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{name} is too large"))
}

fn main() -> ExitCode {
    // Started through the `keyward` link: be keyward.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new("keyward")) {
        return keyward::cli::main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("soak: {problem}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match keyward::sys::raise_open_files_limit() {
        Ok(limit) => println!("open files limit: {limit}"),
        Err(error) => println!("open files limit not raised: {error}"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = runtime.block_on(async {
        match options.mode {
            Mode::Faults => faults::run(&options).await,
            Mode::Greedy => greedy::run(&options).await,
            Mode::Timing => timing::run(&options).await,
        }
    });
    report.finish()
}

/// The checks of a run: each printed as it is decided, and the exit code.
#[derive(Debug, Default)]
pub(crate) struct Report {
    failed: Vec<String>,
}

impl Report {
    /// Records and prints one check.
    pub(crate) fn check(&mut self, passed: bool, what: impl Into<String>) {
        let what = what.into();
        println!("  [{}] {what}", if passed { " ok " } else { "FAIL" });
        if !passed {
            self.failed.push(what);
        }
    }

    fn finish(self) -> ExitCode {
        if self.failed.is_empty() {
            println!("\nall checks passed");
            ExitCode::SUCCESS
        } else {
            println!("\n{} check(s) failed:", self.failed.len());
            for what in &self.failed {
                println!("  - {what}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A link named `keyward` to this binary, so that a child started through it runs
/// keyward's command line.
#[derive(Debug)]
pub(crate) struct KeywardExe {
    _dir: TempDir,
    path: PathBuf,
}

impl KeywardExe {
    pub(crate) fn new() -> Self {
        let dir = TempDir::new("soak-bin");
        let path = dir.path().join("keyward");
        let me = std::env::current_exe().expect("this binary's path");
        std::os::unix::fs::symlink(me, &path).expect("keyward link");
        Self { _dir: dir, path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `keyward audit verify FILE`: (passed, what it said).
    pub(crate) fn verify_audit(&self, file: &Path) -> (bool, String) {
        let output = std::process::Command::new(&self.path)
            .args(["audit", "verify"])
            .arg(file)
            .output()
            .expect("keyward audit verify");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), said.trim().to_owned())
    }
}

/// Waits until keyward's open file descriptors stop changing (connections it is
/// closing are gone), then reads its usage.
pub(crate) async fn settled_usage(pid: u32) -> Usage {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = usage(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = usage(pid);
        if now.fds == last.fds || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Samples keyward's resident memory (KiB) every `every`, keeping the largest.
pub(crate) fn rss_sampler(pid: u32, every: Duration) -> PeakSampler {
    PeakSampler::start(every, move || usage(pid).rss_kib)
}

/// Mentions of a panic in keyward's log (its panic hook logs "internal error").
pub(crate) fn panics_in(keyward: &KeywardProcess) -> Vec<String> {
    keyward
        .log()
        .lines()
        .filter(|l| l.contains("internal error") || l.contains("panicked"))
        .take(5)
        .map(str::to_owned)
        .collect()
}

/// Stops keyward; keeps its directory when asked.
pub(crate) fn keep_or_drop(keyward: KeywardProcess, options: &Options) {
    if options.keep {
        println!("keyward's directory: {}", keyward.keep_dir().display());
    }
}
