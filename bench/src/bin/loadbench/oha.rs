//! Driving the load generator, oha: one run against one URL, either as fast as 64
//! keep-alive connections go (throughput, from oha's JSON summary) or at a fixed rate
//! with latency correction (latency, from oha's per-request CSV, so that percentiles
//! can leave out each connection's first request, which carries the TLS handshake:
//! the paths are compared on kept-alive requests, as bots send them).
//!
//! Every run must be answered 2xx throughout: a refusal or an error makes the
//! measurement meaningless, so it fails the run with what was answered instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where oha is, or how to get it.
pub(crate) fn find() -> Result<PathBuf, String> {
    crate::tools::find("oha", &[]).ok_or_else(|| {
        "oha is not installed: `cargo install --locked oha` (puts it in ~/.cargo/bin), or a \
         release binary from https://github.com/hatoo/oha/releases"
            .to_owned()
    })
}

/// One request, as the load generator sends it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// `GET` or `POST`.
    pub(crate) method: &'static str,
    /// Full URL.
    pub(crate) url: String,
    /// Header lines (`Name: value`).
    pub(crate) headers: Vec<String>,
    /// Body, if any.
    pub(crate) body: Option<String>,
}

/// How hard to push.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    /// As fast as the connections go.
    Saturation,
    /// This many requests a second, with latency measured from when each was due.
    Rate(u32),
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Span {
    /// This long.
    For(Duration),
    /// Until this many requests are answered (throughput runs only).
    Requests(u64),
}

/// What one run measured.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Answered requests a second (whole run).
    pub(crate) throughput: f64,
    /// Requests answered.
    pub(crate) answered: u64,
    /// Latency percentiles of kept-alive requests, in seconds (fixed-rate runs only).
    pub(crate) latency: Option<Percentiles>,
}

/// Latency percentiles in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Requests the percentiles are taken over.
    pub(crate) samples: u64,
}

/// Runs oha once; `Err` says what was wrong with the answers.
pub(crate) fn run(
    oha: &Path,
    request: &Request,
    load: Load,
    connections: u32,
    span: Span,
    scratch: &Path,
) -> Result<Run, String> {
    let output = scratch.join("oha-output");
    let mut command = Command::new(oha);
    command.arg("--no-tui").arg("--insecure");
    let duration = match span {
        Span::For(duration) => {
            // Requests in flight at the deadline are answered and counted, never cut
            // off: keyward has audited them, and the counts must match its log.
            command
                .arg("-w")
                .arg("-z")
                .arg(format!("{}ms", duration.as_millis()));
            duration
        }
        Span::Requests(count) => {
            command.arg("-n").arg(count.to_string());
            Duration::ZERO
        }
    };
    command
        .arg("-c")
        .arg(connections.to_string())
        .arg("-m")
        .arg(request.method)
        .arg("-o")
        .arg(&output);
    for header in &request.headers {
        command.arg("-H").arg(header);
    }
    if let Some(body) = &request.body {
        command.arg("-d").arg(body);
    }
    match load {
        Load::Saturation => {
            command.arg("--output-format").arg("json");
        }
        Load::Rate(rate) => {
            command
                .arg("-q")
                .arg(rate.to_string())
                .arg("--latency-correction")
                .arg("--output-format")
                .arg("csv");
        }
    }
    command.arg(&request.url);
    let status = command
        .status()
        .map_err(|e| format!("{}: {e}", oha.display()))?;
    if !status.success() {
        return Err(format!("oha exited with {status}"));
    }
    let text = std::fs::read_to_string(&output).map_err(|e| format!("oha output: {e}"))?;
    match load {
        Load::Saturation => from_json(&text),
        Load::Rate(rate) => from_csv(&text, rate, duration),
    }
}

fn from_json(text: &str) -> Result<Run, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("oha JSON: {e}"))?;
    let errors = json["errorDistribution"]
        .as_object()
        .filter(|errors| !errors.is_empty());
    if let Some(errors) = errors {
        return Err(format!(
            "requests failed: {}",
            serde_json::Value::from(errors.clone())
        ));
    }
    let statuses = json["statusCodeDistribution"]
        .as_object()
        .ok_or("oha JSON has no status distribution")?;
    let mut answered = 0;
    for (status, count) in statuses {
        let count = count.as_u64().unwrap_or(0);
        if !status.starts_with('2') {
            return Err(format!(
                "{count} answers with status {status}: {statuses:?}"
            ));
        }
        answered += count;
    }
    if answered == 0 {
        return Err("no request was answered".to_owned());
    }
    let throughput = json["summary"]["requestsPerSec"]
        .as_f64()
        .ok_or("oha JSON has no requestsPerSec")?;
    Ok(Run {
        throughput,
        answered,
        latency: None,
    })
}

/// oha's CSV: `request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status`,
/// one row per answered request; connection times are present only on the request
/// that opened the connection.
fn from_csv(text: &str, rate: u32, duration: Duration) -> Result<Run, String> {
    let mut latencies = Vec::new();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_end = 0f64;
    let mut answered = 0u64;
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let [start, _dns, dialup, _first_byte, total, _bytes, status] = fields[..] else {
            return Err(format!("unexpected oha CSV row: {line}"));
        };
        let seconds = |field: &str| field.parse::<f64>().ok();
        *statuses.entry(status.to_owned()).or_default() += 1;
        answered += 1;
        let total = seconds(total).ok_or_else(|| format!("oha CSV row: {line}"))?;
        last_end = last_end.max(seconds(start).unwrap_or(0.0) + total);
        if seconds(dialup).is_none_or(|d| d == 0.0) {
            latencies.push(total);
        }
    }
    if let Some((status, count)) = statuses.iter().find(|(s, _)| !s.starts_with('2')) {
        return Err(format!(
            "{count} answers with status {status}: {statuses:?}"
        ));
    }
    // oha's CSV lists answered requests only; a request that failed outright shows as
    // one missing from the schedule.
    let due = f64::from(rate) * duration.as_secs_f64();
    if (answered as f64) < due * 0.98 {
        return Err(format!(
            "only {answered} of about {due:.0} requests due at {rate}/s were answered: \
             the rate is above what this path sustains, or requests failed"
        ));
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(index).copied().unwrap_or(f64::NAN)
    };
    Ok(Run {
        throughput: answered as f64 / last_end.max(f64::MIN_POSITIVE),
        answered,
        latency: Some(Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            samples: latencies.len() as u64,
        }),
    })
}
