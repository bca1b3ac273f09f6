//! The benchmark's results: every run as measured, their medians per path, request
//! and load, the ratios keyward/nginx and keyward/direct, keyward's memory, the audit
//! check and the machine; printed as one table and written as JSON.

use std::fmt::Write as _;

use crate::oha::{Load, Run};

/// Which way the bot reaches the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// Straight to the exchange: the floor.
    Direct,
    /// Through nginx.
    Nginx,
    /// Through keyward.
    Keyward,
}

impl PathKind {
    /// As printed.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Nginx => "nginx",
            Self::Keyward => "keyward",
        }
    }
}

/// Which request the bot sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// A signed limit order, `POST /api/v3/order`.
    Order,
    /// A signed read, `GET /api/v3/account`.
    Read,
}

impl RequestKind {
    /// As printed.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Read => "read",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Order => "order POST",
            Self::Read => "signed GET",
        }
    }
}

/// One run of one path.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    /// 0-based repetition.
    pub(crate) repetition: u32,
    /// Path.
    pub(crate) path: PathKind,
    /// Request.
    pub(crate) request: RequestKind,
    /// Load.
    pub(crate) load: Load,
    /// What oha measured.
    pub(crate) run: Run,
    /// The proxy's CPU time (user and system) per answered request, in seconds.
    pub(crate) cpu_per_request: Option<f64>,
}

/// keyward's (and nginx's) resident memory, in bytes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Memory {
    /// keyward after start, before any request.
    pub(crate) keyward_idle: u64,
    /// keyward's peak during its throughput runs.
    pub(crate) keyward_load: u64,
    /// keyward a second after the last run.
    pub(crate) keyward_after_load: u64,
    /// keyward holding [`Memory::idle_connections`] idle bot connections.
    pub(crate) keyward_idle_connections: u64,
    /// How many.
    pub(crate) idle_connections: usize,
    /// keyward before it held [`Memory::idle_streams`] WebSockets.
    pub(crate) keyward_before_streams: u64,
    /// keyward holding them.
    pub(crate) keyward_idle_streams: u64,
    /// How many.
    pub(crate) idle_streams: usize,
    /// nginx (master and workers) after start.
    pub(crate) nginx_idle: u64,
    /// nginx's peak during its throughput runs (0: nginx was not measured).
    pub(crate) nginx_load: u64,
}

/// What keyward's audit log held after the run.
#[derive(Debug, Clone)]
pub(crate) struct AuditCheck {
    /// `keyward audit verify`'s verdict.
    pub(crate) verified: String,
    /// Lines in the log.
    pub(crate) lines: u64,
    /// `request` records with decision `allow`.
    pub(crate) allowed: u64,
    /// `outcome` records with a 2xx from the exchange.
    pub(crate) outcomes_2xx: u64,
    /// Records of any other kind (refusals, failures): must be none.
    pub(crate) other: u64,
    /// Allowed `request` records of what keyward answered itself (WebSocket
    /// openings and logons), which have no outcome.
    pub(crate) answered_by_keyward: u64,
    /// Requests the bench had answered by keyward.
    pub(crate) sent: u64,
}

/// Everything measured.
#[derive(Debug)]
pub(crate) struct Results {
    /// The WebSocket order messages: straight to the mock, through nginx and
    /// through keyward.
    pub(crate) stream: Option<(
        crate::stream::Latency,
        crate::stream::Latency,
        crate::stream::Latency,
        crate::stream::Fanout,
    )>,
    /// Every run.
    pub(crate) runs: Vec<Measurement>,
    /// Memory.
    pub(crate) rss: Memory,
    /// The audit check, once keyward stopped.
    pub(crate) audit: Option<AuditCheck>,
    options: serde_json::Value,
    tools: serde_json::Value,
    date: String,
}

const PATHS: [PathKind; 3] = [PathKind::Direct, PathKind::Nginx, PathKind::Keyward];

/// One row of the table: a value per path (`None`: not measured), lower or higher
/// is better, and how to print it.
struct Row {
    label: String,
    values: [Option<f64>; 3],
    unit: &'static str,
    decimals: usize,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Results {
    /// No runs yet.
    pub(crate) fn new(options: serde_json::Value, tools: serde_json::Value) -> Self {
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            stream: None,
            runs: Vec::new(),
            rss: Memory::default(),
            audit: None,
            options,
            tools,
            date,
        }
    }

    fn median_of(
        &self,
        path: PathKind,
        request: RequestKind,
        saturation: bool,
        pick: impl Fn(&Measurement) -> Option<f64>,
    ) -> Option<f64> {
        median(
            self.runs
                .iter()
                .filter(|m| {
                    m.path == path
                        && m.request == request
                        && matches!(m.load, Load::Saturation) == saturation
                })
                .filter_map(pick)
                .collect(),
        )
    }

    fn rate(&self) -> Option<u32> {
        self.runs.iter().find_map(|m| match m.load {
            Load::Rate(rate) => Some(rate),
            Load::Saturation => None,
        })
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let connections = self.options["connections"].as_u64().unwrap_or(0);
        for request in [RequestKind::Order, RequestKind::Read] {
            rows.push(Row {
                label: format!(
                    "{} throughput, {connections} connections",
                    request.describe()
                ),
                values: PATHS.map(|p| self.median_of(p, request, true, |m| Some(m.run.throughput))),
                unit: "req/s",
                decimals: 0,
            });
        }
        let rate = self.rate().unwrap_or(0);
        type Pick = fn(&Measurement) -> Option<f64>;
        let percentiles: [(&str, Pick); 3] = [
            ("p50", |m| m.run.latency.map(|l| l.p50 * 1e3)),
            ("p99", |m| m.run.latency.map(|l| l.p99 * 1e3)),
            ("p99.9", |m| m.run.latency.map(|l| l.p999 * 1e3)),
        ];
        for request in [RequestKind::Order, RequestKind::Read] {
            for (name, pick) in percentiles {
                let values = PATHS.map(|p| self.median_of(p, request, false, pick));
                rows.push(Row {
                    label: format!("{} latency {name} at {rate}/s", request.describe()),
                    values,
                    unit: "ms",
                    decimals: 3,
                });
            }
            // What each proxy adds to the direct path, percentile by percentile: the
            // figure the targets are about.
            for (name, pick) in percentiles {
                let values = PATHS.map(|p| self.median_of(p, request, false, pick));
                let added = values.map(|v| Some(v? - values[0]?));
                rows.push(Row {
                    label: format!("{} added {name}", request.describe()),
                    values: [None, added[1], added[2]],
                    unit: "ms",
                    decimals: 3,
                });
            }
        }
        // The proxy's own CPU per request: steadier than throughput on a machine shared
        // with other work, and what throughput on a dedicated machine follows from.
        for (saturation, load) in [
            (true, "at saturation".to_owned()),
            (false, format!("at {rate}/s")),
        ] {
            for request in [RequestKind::Order, RequestKind::Read] {
                rows.push(Row {
                    label: format!("proxy CPU per {} {load}", request.describe()),
                    values: PATHS.map(|p| {
                        self.median_of(p, request, saturation, |m| {
                            m.cpu_per_request.map(|c| c * 1e6)
                        })
                    }),
                    unit: "us",
                    decimals: 1,
                });
            }
        }
        let memory = &self.rss;
        let rows_mem = [
            ("RSS idle", Some(memory.nginx_idle), memory.keyward_idle),
            (
                "RSS peak under load",
                (memory.nginx_load > 0).then_some(memory.nginx_load),
                memory.keyward_load,
            ),
            ("RSS after load", None, memory.keyward_after_load),
        ];
        for (label, nginx, keyward) in rows_mem {
            rows.push(Row {
                label: label.to_owned(),
                values: [None, nginx.map(mib), Some(mib(keyward))],
                unit: "MiB",
                decimals: 1,
            });
        }
        if memory.idle_connections > 0 {
            rows.push(Row {
                label: format!("RSS with {} idle connections", memory.idle_connections),
                values: [None, None, Some(mib(memory.keyward_idle_connections))],
                unit: "MiB",
                decimals: 1,
            });
            let per = memory
                .keyward_idle_connections
                .saturating_sub(memory.keyward_after_load) as f64
                / memory.idle_connections as f64
                / 1024.0;
            rows.push(Row {
                label: "  per idle connection".to_owned(),
                values: [None, None, Some(per)],
                unit: "KiB",
                decimals: 1,
            });
        }
        if memory.idle_streams > 0 {
            rows.push(Row {
                label: format!("RSS with {} idle WebSockets", memory.idle_streams),
                values: [None, None, Some(mib(memory.keyward_idle_streams))],
                unit: "MiB",
                decimals: 1,
            });
            let per = memory
                .keyward_idle_streams
                .saturating_sub(memory.keyward_before_streams) as f64
                / memory.idle_streams as f64
                / 1024.0;
            rows.push(Row {
                label: "  per idle WebSocket".to_owned(),
                values: [None, None, Some(per)],
                unit: "KiB",
                decimals: 1,
            });
        }
        rows
    }

    /// The results table (medians), with the ratios.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<44} {:>10} {:>10} {:>10} {:>8} {:>8}",
            "median of runs", "direct", "nginx", "keyward", "kw/nginx", "kw/direct"
        );
        for row in self.rows() {
            let cell = |v: Option<f64>| {
                v.map_or_else(|| "-".to_owned(), |v| format!("{v:.*}", row.decimals))
            };
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<44} {:>10} {:>10} {:>10} {:>8} {:>8}",
                format!("{} ({})", row.label, row.unit),
                cell(row.values[0]),
                cell(row.values[1]),
                cell(row.values[2]),
                ratio(row.values[2], row.values[1]),
                ratio(row.values[2], row.values[0]),
            );
        }
        if let Some(audit) = &self.audit {
            let _ = writeln!(
                out,
                "audit: {} records for {} requests answered by keyward; {}",
                audit.lines, audit.sent, audit.verified
            );
        }
        let _ = writeln!(out, "machine: {}; {}", machine(), self.date);
        out
    }

    /// Everything as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let runs: Vec<serde_json::Value> = self
            .runs
            .iter()
            .map(|m| {
                serde_json::json!({
                    "repetition": m.repetition,
                    "path": m.path.name(),
                    "request": m.request.name(),
                    "load": match m.load {
                        Load::Saturation => "saturation".to_owned(),
                        Load::Rate(rate) => format!("{rate}/s"),
                    },
                    "throughput_rps": m.run.throughput,
                    "answered": m.run.answered,
                    "proxy_cpu_us_per_request": m.cpu_per_request.map(|c| c * 1e6),
                    "latency_ms": m.run.latency.map(|l| serde_json::json!({
                        "p50": l.p50 * 1e3,
                        "p99": l.p99 * 1e3,
                        "p99.9": l.p999 * 1e3,
                        "samples": l.samples,
                    })),
                })
            })
            .collect();
        let table: Vec<serde_json::Value> = self
            .rows()
            .into_iter()
            .map(|row| {
                let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                    _ => None,
                };
                serde_json::json!({
                    "metric": row.label,
                    "unit": row.unit,
                    "direct": row.values[0],
                    "nginx": row.values[1],
                    "keyward": row.values[2],
                    "keyward_over_nginx": ratio(row.values[2], row.values[1]),
                    "keyward_over_direct": ratio(row.values[2], row.values[0]),
                })
            })
            .collect();
        serde_json::json!({
            "date": self.date,
            "machine": machine(),
            "tools": self.tools,
            "options": self.options,
            "medians": table,
            "stream_orders": self.stream.map(|(direct, nginx, keyward, fanout)| serde_json::json!({
                "events_per_second_direct": fanout.direct,
                "events_per_second_keyward": fanout.keyward,
                "messages": keyward.messages,
                "direct_p50_ms": direct.p50,
                "direct_p99_ms": direct.p99,
                "nginx_p50_ms": nginx.p50,
                "nginx_p99_ms": nginx.p99,
                "nginx_cpu_us_per_message": nginx.cpu_us,
                "nginx_sleeps_per_message": nginx.wakeups,
                "keyward_p50_ms": keyward.p50,
                "keyward_p99_ms": keyward.p99,
                "keyward_cpu_us_per_message": keyward.cpu_us,
                "keyward_sleeps_per_message": keyward.wakeups,
            })),
            "memory_bytes": {
                "keyward_idle": self.rss.keyward_idle,
                "keyward_load_peak": self.rss.keyward_load,
                "keyward_after_load": self.rss.keyward_after_load,
                "keyward_idle_connections": self.rss.keyward_idle_connections,
                "idle_connections": self.rss.idle_connections,
                "keyward_before_streams": self.rss.keyward_before_streams,
                "keyward_idle_streams": self.rss.keyward_idle_streams,
                "idle_streams": self.rss.idle_streams,
                "nginx_idle": self.rss.nginx_idle,
                "nginx_load_peak": self.rss.nginx_load,
            },
            "audit": self.audit.as_ref().map(|a| serde_json::json!({
                "verify": a.verified,
                "lines": a.lines,
                "allowed_requests": a.allowed,
                "outcomes_2xx": a.outcomes_2xx,
                "answered_by_keyward": a.sent,
            })),
            "runs": runs,
        })
    }
}

/// CPU model, logical CPUs, memory and kernel, from `/proc`.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, name)| name.trim())
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / (1024 * 1024));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cpus} CPUs, {memory} GiB, Linux {}",
        kernel.trim()
    )
}
