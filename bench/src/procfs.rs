//! What `/proc` says about a process, for the benches: its resident memory (alone,
//! or with its children, as nginx's master and workers), its descriptors and
//! threads, its CPU time, and the peak of any of these sampled while a load runs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A number field of `/proc/<pid>/status` (`VmRSS:` is in KiB), 0 once the process
/// is gone.
fn status_field(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `VmRSS` of `pid`, in bytes (0 once it is gone).
pub fn rss(pid: u32) -> u64 {
    status_field(pid, "VmRSS:") * 1024
}

/// `VmRSS` of `pid` and of every process whose parent it is.
pub fn rss_of_tree(pid: u32) -> u64 {
    rss(pid) + children(pid).into_iter().map(rss).sum::<u64>()
}

/// What `/proc` says about a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Of those, sockets.
    pub sockets: u64,
    /// Threads.
    pub threads: u64,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB, {} fds ({} sockets), {} threads",
            self.rss_kib as f64 / 1024.0,
            self.fds,
            self.sockets,
            self.threads
        )
    }
}

/// Reads `/proc/<pid>` now.
pub fn usage(pid: u32) -> Usage {
    let mut fds = 0;
    let mut sockets = 0;
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            fds += 1;
            if std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            {
                sockets += 1;
            }
        }
    }
    Usage {
        rss_kib: status_field(pid, "VmRSS:"),
        fds,
        sockets,
        threads: status_field(pid, "Threads:"),
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces; the fields after it do not.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The highest value a reading took while it was sampled, by a thread of its own.
#[derive(Debug)]
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PeakSampler {
    /// Samples `read` every `every` until [`PeakSampler::finish`] or drop.
    pub fn start(every: Duration, read: impl Fn() -> u64 + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(read(), Ordering::Relaxed);
                    std::thread::sleep(every);
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The highest reading so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Starts over.
    pub fn reset(&self) {
        self.peak.store(0, Ordering::Relaxed);
    }

    /// Stops sampling; the highest reading.
    pub fn finish(mut self) -> u64 {
        self.stop_thread();
        self.peak()
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// CPU time (user and system, every thread, living or exited) of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
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
pub fn cpu_seconds_of_tree(pid: u32) -> f64 {
    cpu_seconds(pid) + children(pid).into_iter().map(cpu_seconds).sum::<f64>()
}

/// Times the threads of `pid` (those alive now) gave up the CPU to wait, from each
/// thread's `voluntary_ctxt_switches`: every one is a sleep and a wake-up, which on
/// a virtual machine costs far more than the work a relay does per message.
pub fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|count| count.trim().parse::<u64>().ok())
        })
        .sum()
}

/// [`voluntary_switches`] of `pid` and its children.
pub fn voluntary_switches_of_tree(pid: u32) -> u64 {
    voluntary_switches(pid)
        + children(pid)
            .into_iter()
            .map(voluntary_switches)
            .sum::<u64>()
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
