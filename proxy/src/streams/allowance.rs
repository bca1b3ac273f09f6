//! The venues' WebSocket allowances as keyward counts them: per client connection
//! (messages relayed on it) and per address (keyward's links opened, and messages
//! the venue counts as unauthenticated, across every connection of every bot). A
//! venue that sees an address go past its allowance disconnects and bans it, and
//! every bot of keyward shares that address; so a message or a link past it is
//! refused before it is sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keyward_venues::{Allowance, VenueId};

/// The times of the uses still inside the window, oldest first. Exact for a
/// rolling window of any alignment: at most `count` uses in any `window`, so the
/// venue's count stays under its limit however it cuts its windows (a fixed window
/// keyward started itself could let twice the count through across its edge).
#[derive(Debug)]
pub(super) struct SlidingLog {
    allowance: Allowance,
    uses: VecDeque<Instant>,
}

impl SlidingLog {
    /// An empty log for `allowance`.
    pub(super) fn new(allowance: Allowance) -> Self {
        Self {
            allowance,
            uses: VecDeque::new(),
        }
    }

    /// Counts one use at `now`, or says how long until one would fit.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let window = self.allowance.window;
        while let Some(&oldest) = self.uses.front() {
            if now.saturating_duration_since(oldest) < window {
                break;
            }
            self.uses.pop_front();
        }
        let count = usize::try_from(self.allowance.count).unwrap_or(usize::MAX);
        if self.uses.len() >= count {
            let wait = self.uses.front().map_or(window, |&oldest| {
                window.saturating_sub(now.saturating_duration_since(oldest))
            });
            return Err(wait.max(Duration::from_millis(1)));
        }
        self.uses.push_back(now);
        Ok(())
    }
}

/// What is counted per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Counted {
    /// keyward's links opened to the venue.
    Connections,
    /// keyward's links opened for connections no bot is bound to (relayed market
    /// data): held to half the venue's allowance, so that anonymous clients
    /// cannot take every link bots need.
    AnonymousConnections,
    /// Relayed messages the venue counts without a login.
    UnauthenticatedMessages,
}

/// The part of a venue's allowance for links that connections no bot is bound to
/// may use: half, at least one.
pub(super) fn anonymous_share(allowance: Allowance) -> Allowance {
    Allowance {
        count: (allowance.count / 2).max(1),
        ..allowance
    }
}

/// keyward's uses of each venue's per-address allowances. Keyed by venue, not by
/// host: every link of keyward leaves from the same address, and a venue's limit
/// covers its hosts together.
#[derive(Debug, Default)]
pub(super) struct PerAddress {
    logs: Mutex<HashMap<(VenueId, Counted), SlidingLog>>,
}

impl PerAddress {
    /// Counts one use of `venue`'s `allowance` for `counted`, or says how long
    /// until one would fit.
    pub(super) fn take(
        &self,
        venue: VenueId,
        counted: Counted,
        allowance: Allowance,
    ) -> Result<(), Duration> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.entry((venue, counted))
            .or_insert_with(|| SlidingLog::new(allowance))
            .take(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_allows_its_count_in_any_window_and_no_more() {
        let mut log = SlidingLog::new(Allowance::per_second(3));
        let start = Instant::now();
        for offset in [0, 100, 900] {
            assert_eq!(log.take(start + Duration::from_millis(offset)), Ok(()));
        }
        // Across what a fixed window would call its edge: still three in a second.
        assert_eq!(
            log.take(start + Duration::from_millis(950)),
            Err(Duration::from_millis(50))
        );
        // The first use leaves the window a second after it was made.
        assert_eq!(log.take(start + Duration::from_millis(1000)), Ok(()));
        assert!(log.take(start + Duration::from_millis(1099)).is_err());
        assert_eq!(log.take(start + Duration::from_millis(1100)), Ok(()));
    }

    #[test]
    fn a_refused_use_is_not_counted() {
        let mut log = SlidingLog::new(Allowance::per_second(1));
        let start = Instant::now();
        assert_eq!(log.take(start), Ok(()));
        for offset in [10, 500, 999] {
            assert!(log.take(start + Duration::from_millis(offset)).is_err());
        }
        assert_eq!(log.take(start + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn anonymous_links_get_half_the_allowance() {
        assert_eq!(anonymous_share(Allowance::per_second(3)).count, 1);
        assert_eq!(anonymous_share(Allowance::per_second(1)).count, 1);
        let share = anonymous_share(Allowance::per_minutes(300, 5));
        assert_eq!((share.count, share.window), (150, Duration::from_secs(300)));
    }

    #[test]
    fn each_venue_and_kind_has_its_own_count() {
        let per_address = PerAddress::default();
        let one = Allowance::per_minutes(1, 5);
        assert!(
            per_address
                .take(VenueId::Okx, Counted::Connections, one)
                .is_ok()
        );
        assert!(
            per_address
                .take(VenueId::Okx, Counted::Connections, one)
                .is_err()
        );
        assert!(
            per_address
                .take(VenueId::Okx, Counted::UnauthenticatedMessages, one)
                .is_ok()
        );
        assert!(
            per_address
                .take(VenueId::Bybit, Counted::Connections, one)
                .is_ok()
        );
    }
}
