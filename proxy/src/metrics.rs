//! The counters and histograms keyward keeps as it serves, on the `prometheus-client`
//! crate. Each family has one unit and one label set; [`crate::exposition`] adds the
//! gauges read from keyward's state at scrape time and renders both.
//!
//! Labels are bot, account and venue names from the configuration and reason codes
//! from keyward's own list, so a hostile request cannot create label values
//! (unauthenticated requests count under the bot `-`).

use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    bot: String,
    venue: &'static str,
    decision: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitedLabels {
    bot: String,
    scope: &'static str,
}

/// Where an exchange answer or failure came from: enough to tell one exchange's
/// outage from another's, and one account's ban from the rest.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    venue: &'static str,
    account: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    venue: &'static str,
    account: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TripLabels {
    account: String,
    bot: String,
}

type Gauge64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// keyward's metrics. Every field is a handle: registering it with a scrape's
/// [`Registry`] shares the same values.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    rate_limited: Family<RateLimitedLabels, Counter>,
    latency: Histogram,
    overhead: Histogram,
    upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    handshakes_refused: Family<ReasonLabels, Counter>,
    breaker_trips: Family<TripLabels, Counter>,
    audit_failures: Counter,
    reloads: Family<ResultLabels, Counter>,
    last_reload_success: Gauge,
    last_reload_success_time: Gauge64,
    generation: Gauge,
    secrets_unlocked_memory: Gauge,
    parked_connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            requests: Family::default(),
            rate_limited: Family::default(),
            latency: latency_histogram(),
            overhead: latency_histogram(),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            upstream_errors: Family::default(),
            handshakes_refused: Family::default(),
            breaker_trips: Family::default(),
            audit_failures: Counter::default(),
            reloads: Family::default(),
            last_reload_success: Gauge::default(),
            last_reload_success_time: Gauge64::default(),
            generation: Gauge::default(),
            secrets_unlocked_memory: Gauge::default(),
            parked_connections: Gauge::default(),
        };
        // Both results exist from the start, so that `increase()` sees the first one.
        for result in ["ok", "failed"] {
            let _created = metrics.reloads.get_or_create(&ResultLabels { result });
        }
        metrics
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Counts one request by bot, venue, decision and reason, with its total latency
    /// and keyward's own part of it (the total less the time the exchange took).
    pub fn request(&self, answered: Answered<'_>) {
        self.requests
            .get_or_create(&RequestLabels {
                bot: answered.bot.unwrap_or("-").to_owned(),
                venue: answered.venue.unwrap_or("-"),
                decision: answered.decision,
                reason: answered.reason,
            })
            .inc();
        self.latency.observe(answered.total.as_secs_f64());
        let own = answered
            .total
            .saturating_sub(answered.upstream.unwrap_or_default());
        self.overhead.observe(own.as_secs_f64());
    }

    /// Counts a request refused for rate: the bot's own limits (`bot`, `bot_orders`),
    /// the account's (`account`), or the exchange's (`exchange`).
    pub fn rate_limited(&self, bot: Option<&str>, scope: &'static str) {
        self.rate_limited
            .get_or_create(&RateLimitedLabels {
                bot: bot.unwrap_or("-").to_owned(),
                scope,
            })
            .inc();
    }

    /// Records how long `account`'s exchange took to answer.
    pub fn upstream(&self, venue: &'static str, account: &str, elapsed: Duration) {
        self.upstream_latency
            .get_or_create(&UpstreamLabels {
                venue,
                account: account.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failure to get an answer from `account`'s exchange, by kind.
    pub fn upstream_error(&self, venue: &'static str, account: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                venue,
                account: account.to_owned(),
                kind,
            })
            .inc();
    }

    /// Counts a TLS handshake refused over the client's certificate, by reason.
    pub fn handshake_refused(&self, reason: &'static str) {
        self.handshakes_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a circuit-breaker trip: `bot`'s refusals froze `account`.
    pub fn breaker_tripped(&self, account: &str, bot: &str) {
        self.breaker_trips
            .get_or_create(&TripLabels {
                account: account.to_owned(),
                bot: bot.to_owned(),
            })
            .inc();
    }

    /// Counts a failed audit write.
    pub fn audit_failure(&self) {
        self.audit_failures.inc();
    }

    /// Counts a reload; `generation` is the configuration now in force.
    pub fn reload(&self, ok: bool, generation: u64) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.last_reload_success.set(i64::from(ok));
        if ok {
            self.last_reload_success_time
                .set(unix_seconds(SystemTime::now()));
        }
        self.set_generation(generation);
    }

    /// The configuration in force at start: loading it counts as the first
    /// successful reload.
    pub fn started(&self, generation: u64) {
        self.last_reload_success.set(1);
        self.last_reload_success_time
            .set(unix_seconds(SystemTime::now()));
        self.set_generation(generation);
    }

    fn set_generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Records whether secret memory could be locked in RAM.
    pub fn memory_locked(&self, locked: bool) {
        self.secrets_unlocked_memory.set(i64::from(!locked));
    }

    /// Counts bot connections parked (`1`) or woken or closed (`-1`).
    pub fn parked(&self, change: i64) {
        self.parked_connections.inc_by(change);
    }

    /// Bot connections parked now.
    pub fn parked_connections(&self) -> i64 {
        self.parked_connections.get()
    }

    /// Adds every family to `registry`, sharing their values.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "keyward_requests",
            "Requests by bot, venue, decision and reason",
            self.requests.clone(),
        );
        registry.register(
            "keyward_rate_limited",
            "Requests refused for rate, by bot and whose limit",
            self.rate_limited.clone(),
        );
        registry.register_with_unit(
            "keyward_request_duration",
            "Time from request to answer, the exchange's time included",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register_with_unit(
            "keyward_overhead",
            "keyward's own share of each answer: the total less the time the exchange took",
            Unit::Seconds,
            self.overhead.clone(),
        );
        registry.register_with_unit(
            "keyward_upstream_duration",
            "Time the exchange took to answer, by venue and account",
            Unit::Seconds,
            self.upstream_latency.clone(),
        );
        registry.register(
            "keyward_upstream_errors",
            "Requests the exchange did not answer (unreachable, timed out, malformed), by venue, account and kind",
            self.upstream_errors.clone(),
        );
        registry.register(
            "keyward_tls_handshakes_refused",
            "Bot connections refused over their client certificate, by reason",
            self.handshakes_refused.clone(),
        );
        registry.register(
            "keyward_circuit_breaker_trips",
            "Accounts frozen by the circuit breaker, by account and the bot whose refusals tripped it",
            self.breaker_trips.clone(),
        );
        registry.register(
            "keyward_audit_write_failures",
            "Audit records that could not be written",
            self.audit_failures.clone(),
        );
        registry.register(
            "keyward_reloads",
            "Configuration and vault reloads by result",
            self.reloads.clone(),
        );
        registry.register(
            "keyward_last_reload_success",
            "1 if the last reload (or the start) succeeded, 0 if it was refused",
            self.last_reload_success.clone(),
        );
        registry.register_with_unit(
            "keyward_last_reload_success_timestamp",
            "When the configuration in force was loaded (Unix time)",
            Unit::Seconds,
            self.last_reload_success_time.clone(),
        );
        registry.register(
            "keyward_config_generation",
            "The configuration in force (1 at start, +1 per reload)",
            self.generation.clone(),
        );
        registry.register(
            "keyward_secret_memory_unlocked",
            "1 if secret memory could not be locked in RAM (mlock)",
            self.secrets_unlocked_memory.clone(),
        );
        registry.register(
            "keyward_bot_connections_parked",
            "HTTP/1.1 bot connections idle long enough to hold only their stream",
            self.parked_connections.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

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
        m.upstream_error("binance-spot", "main", "upstream_timeout");
        m.upstream("binance-spot", "main", Duration::from_millis(2));
        let text = rendered(&m);
        assert!(text.contains(
            "keyward_requests_total{bot=\"grid\",venue=\"binance-spot\",decision=\"allow\",reason=\"ok\"} 1"
        ), "{text}");
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
        assert!(text.contains(
            "keyward_upstream_errors_total{venue=\"binance-spot\",account=\"main\",kind=\"upstream_timeout\"} 1"
        ));
        assert!(text.contains(
            "keyward_upstream_duration_seconds_count{venue=\"binance-spot\",account=\"main\"} 1"
        ));
        assert!(text.contains("keyward_reloads_total{result=\"failed\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }
}
