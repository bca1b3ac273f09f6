//! The venues' WebSocket allowances as keyward counts them: per client connection
//! (messages relayed on it) and per address (keyward's links opened, and messages
//! the venue counts as unauthenticated, across every connection of every bot). A
//! venue that sees an address go past its allowance disconnects and bans it, and
//! every bot of keyward shares that address; so a message or a link past it is
//! refused before it is sent.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keyward_venues::{Allowance, VenueId};

use crate::throttle::Window;

/// A window counting uses of `allowance` (the project's sliding window: exact over
/// a rolling window of any alignment, so the venue's own count stays under its
/// limit however it cuts its windows).
pub(super) fn window(allowance: Allowance) -> Window {
    Window::new(
        usize::try_from(allowance.count).unwrap_or(usize::MAX),
        allowance.window,
    )
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
    windows: Mutex<HashMap<(VenueId, Counted), Window>>,
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
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows
            .entry((venue, counted))
            .or_insert_with(|| window(allowance))
            .take(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let take = |venue, counted| {
            per_address
                .take(venue, counted, Allowance::per_minutes(1, 5))
                .is_ok()
        };
        assert!(take(VenueId::Okx, Counted::Connections));
        assert!(!take(VenueId::Okx, Counted::Connections));
        assert!(take(VenueId::Okx, Counted::UnauthenticatedMessages));
        assert!(take(VenueId::Bybit, Counted::Connections));
    }
}
