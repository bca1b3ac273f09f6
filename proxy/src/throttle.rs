//! Sliding-window counters by key, for what must not happen too often from one
//! source: failed authentications per peer, order look-ups keyward makes for a bot;
//! and one window without keys, for the venues' WebSocket allowances.
//! Each key keeps at most `count` instants, so memory per key is bounded; keys idle
//! for a whole window are dropped when the table grows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most keys kept before idle ones are swept.
const SWEEP_AT: usize = 4096;

/// Records an event at `now` in `times` (the events still in the window, oldest
/// first) if fewer than `count` happened in the last `period`; otherwise records
/// nothing and says how long until one would fit. Exact for a rolling window of any
/// alignment, so a limit counted elsewhere in windows of its own is never passed.
fn take(
    times: &mut VecDeque<Instant>,
    count: usize,
    period: Duration,
    now: Instant,
) -> Result<(), Duration> {
    room(times, count, period, now)?;
    times.push_back(now);
    Ok(())
}

/// Drops the events that left the window and says whether another fits at `now`,
/// recording nothing.
fn room(
    times: &mut VecDeque<Instant>,
    count: usize,
    period: Duration,
    now: Instant,
) -> Result<(), Duration> {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= period)
    {
        times.pop_front();
    }
    if times.len() >= count {
        let wait = times.front().map_or(period, |oldest| {
            period.saturating_sub(now.saturating_duration_since(*oldest))
        });
        return Err(wait.max(Duration::from_millis(1)));
    }
    Ok(())
}

/// One sliding window of `count` events per `period`, for a single thing counted
/// (one connection, one venue's allowance): [`Throttle`] without keys.
#[derive(Debug)]
pub struct Window {
    count: usize,
    period: Duration,
    times: VecDeque<Instant>,
}

impl Window {
    /// At most `count` events in any `period`.
    pub fn new(count: usize, period: Duration) -> Self {
        Self {
            count,
            period,
            times: VecDeque::new(),
        }
    }

    /// Records an event at `now` if the window has room, or says how long until it
    /// would have (nothing recorded).
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        take(&mut self.times, self.count, self.period, now)
    }

    /// Whether the window has room at `now`, or how long until it would have,
    /// recording nothing: for uses taken from several windows together or not at
    /// all.
    pub fn room(&mut self, now: Instant) -> Result<(), Duration> {
        room(&mut self.times, self.count, self.period, now)
    }
}

/// A sliding window of `count` events per `period`, per key.
#[derive(Debug)]
pub struct Throttle {
    count: usize,
    period: Duration,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    /// At most `count` events in any `period`, per key.
    pub fn new(count: usize, period: Duration) -> Self {
        Self {
            count,
            period,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event for `key` at `now` if the window has room; false (and
    /// nothing recorded) if it is full.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= SWEEP_AT && !recent.contains_key(key) {
            let period = self.period;
            recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.saturating_duration_since(*last) < period)
            });
        }
        let times = recent.entry(key.to_owned()).or_default();
        take(times, self.count, self.period, now).is_ok()
    }

    /// How long until `key` has room again (zero if it has now).
    pub fn retry_after(&self, key: &str, now: Instant) -> Duration {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .get_mut(key)
            .and_then(|times| room(times, self.count, self.period, now).err())
            .unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_refuses_until_its_oldest_event_leaves_it() {
        let throttle = Throttle::new(2, Duration::from_secs(10));
        let start = Instant::now();
        assert!(throttle.allow("a", start));
        assert!(throttle.allow("a", start + Duration::from_secs(1)));
        assert!(!throttle.allow("a", start + Duration::from_secs(2)));
        assert_eq!(
            throttle.retry_after("a", start + Duration::from_secs(2)),
            Duration::from_secs(8)
        );
        // Another key is not touched by the first one's events.
        assert!(throttle.allow("b", start + Duration::from_secs(2)));
        assert_eq!(
            throttle.retry_after("b", start + Duration::from_secs(2)),
            Duration::ZERO
        );
        assert!(throttle.allow("a", start + Duration::from_secs(10)));
    }

    #[test]
    fn a_window_allows_its_count_in_any_period_and_no_more() {
        let mut window = Window::new(3, Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        for ms in [0, 100, 900] {
            assert_eq!(window.take(at(ms)), Ok(()));
        }
        // Across what a fixed window would call its edge: still three in a second.
        assert_eq!(window.take(at(950)), Err(Duration::from_millis(50)));
        // The first event leaves the window a second after it was made; a refused
        // one was never counted.
        assert_eq!(window.take(at(1000)), Ok(()));
        assert!(window.take(at(1099)).is_err());
        assert_eq!(window.take(at(1100)), Ok(()));
    }
}
