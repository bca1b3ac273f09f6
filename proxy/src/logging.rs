//! keyward's own log on stderr: one format per process (JSON lines by default, text
//! for a person at a terminal), and no warning repeated more than once per interval.
//!
//! A failing exchange, a full disk or a descriptor limit makes the same warning fire
//! for every request; thousands of identical lines bury the one that matters and can
//! fill a container's log volume. Each warning or error is therefore logged the first
//! time, then at most once per [`REPEAT_INTERVAL`]; the repeats held back are counted
//! and reported in one line per interval. Nothing about requests is lost: every
//! request has its access line and its audit record, which are never held back.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The shortest time between two lines of the same warning.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(10);

/// The target of the lines that report held-back repeats (never held back themselves).
const REPEATS_TARGET: &str = "keyward::log";

/// Distinct warnings remembered at once; past this a new warning is logged unchecked
/// rather than dropped (a log must never lose the first of anything).
const MAX_REMEMBERED: usize = 4_096;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, the message and fields at the top level.
    Json,
    /// Plain text, one line per event, coloured when stderr is a terminal.
    Text,
    /// Text when stderr is a terminal, JSON otherwise.
    Auto,
}

impl Format {
    /// Whether lines are written as text (`auto` decided by whether stderr is a
    /// terminal now).
    pub fn is_text(self) -> bool {
        use std::io::IsTerminal as _;
        match self {
            Self::Json => false,
            Self::Text => true,
            Self::Auto => std::io::stderr().is_terminal(),
        }
    }
}

/// Installs the process's logger: `format` on stderr, levels from `KEYWARD_LOG`
/// (default `default_level`). Returns the repeat gate, whose [`RepeatGate::report`]
/// the caller runs once per [`REPEAT_INTERVAL`].
pub fn init(format: Format, default_level: &str) -> RepeatGate {
    use std::io::IsTerminal as _;
    let gate = RepeatGate::default();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let terminal = std::io::stderr().is_terminal();
    let text = format.is_text();
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(gate.clone());
    let _ = if text {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(terminal)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        // The message and the fields at the top level of each line, where log
        // pipelines look for them, not under "fields".
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    gate
}

/// Holds back repeats of a warning or error within [`REPEAT_INTERVAL`].
#[derive(Debug, Clone, Default)]
pub struct RepeatGate {
    seen: Arc<Mutex<HashMap<u64, Seen>>>,
}

#[derive(Debug)]
struct Seen {
    /// When it was last logged.
    logged: Instant,
    /// Repeats held back since the last report.
    held_back: u64,
    /// Its message, for the report.
    message: String,
}

impl RepeatGate {
    /// Whether an event that `key` identifies is logged at `now`.
    fn admit(&self, key: u64, message: impl FnOnce() -> String, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let full = seen.len() >= MAX_REMEMBERED;
        match seen.get_mut(&key) {
            Some(entry) if now.duration_since(entry.logged) < REPEAT_INTERVAL => {
                entry.held_back += 1;
                false
            }
            Some(entry) => {
                entry.logged = now;
                true
            }
            None if full => true,
            None => {
                seen.insert(
                    key,
                    Seen {
                        logged: now,
                        held_back: 0,
                        message: message(),
                    },
                );
                true
            }
        }
    }

    /// The repeats held back since the last call, as (message, count), and forgets the
    /// warnings not seen for an interval.
    fn take_held_back(&self, now: Instant) -> Vec<(String, u64)> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut held = Vec::new();
        seen.retain(|_, entry| {
            if entry.held_back > 0 {
                held.push((entry.message.clone(), entry.held_back));
                entry.held_back = 0;
            }
            now.duration_since(entry.logged) < REPEAT_INTERVAL
        });
        held.sort();
        held
    }

    /// Logs one line per warning whose repeats were held back since the last report.
    pub fn report(&self) {
        for (message, repeats) in self.take_held_back(Instant::now()) {
            tracing::warn!(
                target: REPEATS_TARGET,
                repeated = repeats,
                interval_s = REPEAT_INTERVAL.as_secs(),
                warning = %message,
                "a warning was repeated and logged at most once per interval"
            );
        }
    }
}

impl<S: Subscriber> Layer<S> for RepeatGate {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if *metadata.level() > Level::WARN || metadata.target() == REPEATS_TARGET {
            return true;
        }
        let mut identity = Identity::default();
        metadata.callsite().hash(&mut identity.hasher);
        event.record(&mut identity);
        let key = identity.hasher.finish();
        self.admit(key, || identity.message, Instant::now())
    }
}

/// What makes two events the same warning: the place in the code and every field but
/// the request id (a per-request warning is the same warning for each request).
#[derive(Default)]
struct Identity {
    hasher: DefaultHasher,
    message: String,
}

impl Visit for Identity {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "request_id" {
            return;
        }
        let text = format!("{value:?}");
        field.name().hash(&mut self.hasher);
        text.hash(&mut self.hasher);
        if field.name() == "message" {
            self.message = text;
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" {
            return;
        }
        field.name().hash(&mut self.hasher);
        value.hash(&mut self.hasher);
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{REPEAT_INTERVAL, RepeatGate};

    #[test]
    fn a_warning_is_logged_once_per_interval_and_its_repeats_are_counted() {
        let gate = RepeatGate::default();
        let start = Instant::now();
        let message = || "upstream failed".to_owned();
        assert!(gate.admit(1, message, start));
        for i in 1..=5 {
            assert!(!gate.admit(1, message, start + Duration::from_millis(i)));
        }
        // Another warning is not held back by the first.
        assert!(gate.admit(2, || "accept failed".to_owned(), start));
        assert_eq!(
            gate.take_held_back(start + Duration::from_secs(1)),
            vec![("upstream failed".to_owned(), 5)]
        );
        // Reported once: the next report has nothing new.
        assert!(
            gate.take_held_back(start + Duration::from_secs(2))
                .is_empty()
        );
        // After the interval it is logged again.
        assert!(gate.admit(1, message, start + REPEAT_INTERVAL));
        assert!(!gate.admit(1, message, start + REPEAT_INTERVAL + Duration::from_secs(1)));
        // Warnings not seen for an interval are forgotten (memory stays bounded).
        let later = start + REPEAT_INTERVAL * 3;
        assert_eq!(
            gate.take_held_back(later),
            vec![("upstream failed".to_owned(), 1)]
        );
        assert!(gate.seen.lock().unwrap().is_empty());
    }
}
