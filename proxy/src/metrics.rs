//! Counters and histograms for the admin listener, in Prometheus text format.
//!
//! Labels are bot names and reason codes only, so a hostile request cannot create
//! label values (unauthenticated requests count under the bot `-`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// One answered request, for the counters.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The bot (`-` when unauthenticated or anonymous).
    pub bot: Option<&'a str>,
    /// The venue, once known.
    pub venue: Option<&'static str>,
    /// `allow`, `deny`, `dry-run`, `shadow-allow`.
    pub decision: &'static str,
    /// `ok` or the reason code.
    pub reason: &'static str,
    /// From receiving the request to answering it.
    pub total: Duration,
    /// The part of it spent waiting for the exchange, if it was asked.
    pub upstream: Option<Duration>,
}

type RequestKey = (String, &'static str, &'static str, &'static str);

/// keyward's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    rate_limited: Mutex<BTreeMap<(String, &'static str), u64>>,
    latency: Mutex<Histogram>,
    overhead: Mutex<Histogram>,
    upstream_latency: Mutex<Histogram>,
    upstream_errors: Mutex<BTreeMap<&'static str, u64>>,
    handshakes_refused: Mutex<BTreeMap<&'static str, u64>>,
    audit_failures: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    generation: AtomicU64,
    secrets_unlocked_memory: AtomicU64,
}

impl Metrics {
    /// Counts one request by bot, venue, decision and reason, with its total latency
    /// and keyward's own part of it (the total less the time the exchange took).
    pub fn request(&self, answered: Answered<'_>) {
        let key = (
            answered.bot.unwrap_or("-").to_owned(),
            answered.venue.unwrap_or("-"),
            answered.decision,
            answered.reason,
        );
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default() += 1;
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(answered.total.as_secs_f64());
        let own = answered
            .total
            .saturating_sub(answered.upstream.unwrap_or_default());
        self.overhead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(own.as_secs_f64());
    }

    /// Counts a request refused for rate: the bot's own limits (`bot`, `bot_orders`),
    /// the account's (`account`), or the exchange's (`exchange`).
    pub fn rate_limited(&self, bot: Option<&str>, scope: &'static str) {
        *self
            .rate_limited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((bot.unwrap_or("-").to_owned(), scope))
            .or_default() += 1;
    }

    /// Records how long the exchange took.
    pub fn upstream(&self, elapsed: Duration) {
        self.upstream_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an upstream failure by kind.
    pub fn upstream_error(&self, kind: &'static str) {
        *self
            .upstream_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }

    /// Counts a TLS handshake refused over the client's certificate, by reason.
    pub fn handshake_refused(&self, reason: &'static str) {
        *self
            .handshakes_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(reason)
            .or_default() += 1;
    }

    /// Counts a failed audit write.
    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload; `generation` is the configuration now in force.
    pub fn reload(&self, ok: bool, generation: u64) {
        let counter = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// The configuration generation in force at start.
    pub fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// Records whether secret memory could be locked in RAM.
    pub fn memory_locked(&self, locked: bool) {
        self.secrets_unlocked_memory
            .store(u64::from(!locked), Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP keyward_requests_total Requests by bot, venue, decision and reason.\n",
        );
        out.push_str("# TYPE keyward_requests_total counter\n");
        for ((bot, venue, decision, reason), count) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "keyward_requests_total{{bot=\"{bot}\",venue=\"{venue}\",decision=\"{decision}\",reason=\"{reason}\"}} {count}"
            );
        }
        out.push_str("# HELP keyward_rate_limited_total Requests refused for rate, by bot and whose limit.\n");
        out.push_str("# TYPE keyward_rate_limited_total counter\n");
        for ((bot, scope), count) in self
            .rate_limited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "keyward_rate_limited_total{{bot=\"{bot}\",scope=\"{scope}\"}} {count}"
            );
        }
        out.push_str("# HELP keyward_request_duration_seconds Time from request to answer, upstream included.\n");
        out.push_str("# TYPE keyward_request_duration_seconds histogram\n");
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render(&mut out, "keyward_request_duration_seconds");
        out.push_str("# HELP keyward_overhead_seconds keyward's own share of each answer: the total less the time the exchange took.\n");
        out.push_str("# TYPE keyward_overhead_seconds histogram\n");
        self.overhead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render(&mut out, "keyward_overhead_seconds");
        out.push_str(
            "# HELP keyward_upstream_duration_seconds Time the exchange took to answer.\n",
        );
        out.push_str("# TYPE keyward_upstream_duration_seconds histogram\n");
        self.upstream_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .render(&mut out, "keyward_upstream_duration_seconds");
        out.push_str("# HELP keyward_upstream_errors_total Upstream failures by kind.\n");
        out.push_str("# TYPE keyward_upstream_errors_total counter\n");
        for (kind, count) in self
            .upstream_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "keyward_upstream_errors_total{{kind=\"{kind}\"}} {count}"
            );
        }
        out.push_str("# HELP keyward_tls_handshakes_refused_total Bot connections refused over their client certificate, by reason.\n");
        out.push_str("# TYPE keyward_tls_handshakes_refused_total counter\n");
        for (reason, count) in self
            .handshakes_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "keyward_tls_handshakes_refused_total{{reason=\"{reason}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP keyward_audit_write_failures_total Audit records that could not be written.\n",
        );
        out.push_str("# TYPE keyward_audit_write_failures_total counter\n");
        let _ = writeln!(
            out,
            "keyward_audit_write_failures_total {}",
            self.audit_failures.load(Ordering::Relaxed)
        );
        out.push_str("# HELP keyward_reloads_total Configuration and vault reloads by result.\n");
        out.push_str("# TYPE keyward_reloads_total counter\n");
        for (result, counter) in [("ok", &self.reloads_ok), ("failed", &self.reloads_failed)] {
            let _ = writeln!(
                out,
                "keyward_reloads_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP keyward_config_generation The configuration in force (1 at start, +1 per reload).\n");
        out.push_str("# TYPE keyward_config_generation gauge\n");
        let _ = writeln!(
            out,
            "keyward_config_generation {}",
            self.generation.load(Ordering::Relaxed)
        );
        out.push_str("# HELP keyward_process_dumpable 1 if the process could leave a core dump or be attached to (should be 0).\n");
        out.push_str("# TYPE keyward_process_dumpable gauge\n");
        let _ = writeln!(
            out,
            "keyward_process_dumpable {}",
            u8::from(crate::sys::dumpable().unwrap_or(true))
        );
        out.push_str("# HELP keyward_secret_memory_unlocked 1 if secret memory could not be locked in RAM (mlock).\n");
        out.push_str("# TYPE keyward_secret_memory_unlocked gauge\n");
        let _ = writeln!(
            out,
            "keyward_secret_memory_unlocked {}",
            self.secrets_unlocked_memory.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request(Answered {
            bot: Some("grid"),
            venue: Some("binance-spot"),
            decision: "allow",
            reason: "ok",
            total: Duration::from_millis(3),
            upstream: Some(Duration::from_micros(2_900)),
        });
        m.request(Answered {
            bot: None,
            venue: None,
            decision: "deny",
            reason: "auth_missing",
            total: Duration::from_micros(200),
            upstream: None,
        });
        m.rate_limited(Some("grid"), "bot_orders");
        m.upstream_error("upstream_timeout");
        let text = m.render();
        assert!(text.contains(
            "keyward_requests_total{bot=\"grid\",venue=\"binance-spot\",decision=\"allow\",reason=\"ok\"} 1"
        ));
        assert!(text.contains(
            "keyward_requests_total{bot=\"-\",venue=\"-\",decision=\"deny\",reason=\"auth_missing\"} 1"
        ));
        assert!(text.contains("keyward_rate_limited_total{bot=\"grid\",scope=\"bot_orders\"} 1"));
        // Both answers took keyward itself at most 0.25 ms: 0.1 ms and 0.2 ms.
        assert!(
            text.contains("keyward_overhead_seconds_bucket{le=\"0.0005\"} 2"),
            "{text}"
        );
        assert!(text.contains("keyward_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("keyward_request_duration_seconds_count 2"));
        assert!(text.contains("keyward_upstream_errors_total{kind=\"upstream_timeout\"} 1"));
    }
}
