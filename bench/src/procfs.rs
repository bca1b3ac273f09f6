//! Resident memory read from `/proc`: of one process, of a process and its children
//! (nginx's master and workers), and its peak over a stretch of time, sampled by a
//! thread of its own while the load runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// `VmRSS` of `pid`, in bytes (0 once it is gone).
pub(crate) fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// `VmRSS` of `pid` and of every process whose parent it is.
pub(crate) fn rss_of_tree(pid: u32) -> u64 {
    rss(pid) + children(pid).into_iter().map(rss).sum::<u64>()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it do not.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The highest resident memory seen while it runs.
#[derive(Debug)]
pub(crate) struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PeakSampler {
    /// Samples `read` every 50 ms until [`PeakSampler::finish`].
    pub(crate) fn start(read: impl Fn() -> u64 + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(read(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak in bytes.
    pub(crate) fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// CPU time (user and system, every thread, living or exited) of `pid`, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    // Fields after the command name: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / CLOCK_TICKS_PER_SECOND
}

/// [`cpu_seconds`] of `pid` and its children.
pub(crate) fn cpu_seconds_of_tree(pid: u32) -> f64 {
    cpu_seconds(pid) + children(pid).into_iter().map(cpu_seconds).sum::<f64>()
}

/// `USER_HZ`, which Linux fixes at 100 for `/proc` on every architecture it runs
/// keyward on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|child| parent_of(*child) == Some(pid))
                .collect()
        })
        .unwrap_or_default()
}
