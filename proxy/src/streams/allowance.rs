//! The venues' WebSocket allowances as keyward counts them: per client connection
//! (messages relayed on it) and per address (keyward's links opened, and messages
//! the venue counts as unauthenticated, across every connection of every bot). A
//! venue that sees an address go past its allowance disconnects and bans it, and
//! every bot of keyward shares that address; so a message or a link past it is
//! refused before it is sent. With a shared state backend the per-address counts
//! are kept in it, for every replica at once: replicas behind one NAT address
//! share the venue's allowance as they share its other limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keyward_venues::{Allowance, VenueId};

use crate::error::Rejection;
use crate::shared::Shared;
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

impl Counted {
    /// Its name in the shared state's keys.
    fn name(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::AnonymousConnections => "anonymous-connections",
            Self::UnauthenticatedMessages => "unauthenticated-messages",
        }
    }
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
    /// With a shared state backend: until when each allowance is known full (its
    /// log cannot have room before the use that fills it leaves the window), so
    /// that a client asking again meanwhile is refused here, without a round trip
    /// to the Redis every order's admission needs.
    full_until: Mutex<HashMap<(VenueId, Counted), Instant>>,
}

impl PerAddress {
    /// Counts one use of each of `uses` (what is counted for `venue`, and the
    /// allowance it is held to) together, or none: refused `exchange_limit_near`
    /// with the wait until all would fit. Through `shared` when keyward has one
    /// (unless its replicas have addresses of their own), so that every replica
    /// counts against the one allowance; while it cannot be reached the use is
    /// refused `state_unavailable`, whatever reads may do, since replicas counting
    /// alone could pass the venue's limit together and have the address banned.
    pub(super) async fn take(
        &self,
        shared: Option<&Arc<Shared>>,
        venue: VenueId,
        uses: &[(Counted, Allowance)],
    ) -> Result<(), Rejection> {
        let waited = match shared.filter(|shared| shared.shares_address_allowances()) {
            Some(shared) => {
                if let Some(wait) = self.known_full(venue, uses, Instant::now()) {
                    return Err(Rejection::ExchangeLimitNear { retry_after: wait });
                }
                let named: Vec<(&str, Allowance)> = uses
                    .iter()
                    .map(|(counted, allowance)| (counted.name(), *allowance))
                    .collect();
                let waits = shared
                    .take_per_address(venue.name(), &named)
                    .await
                    .map_err(|_| Rejection::StateUnavailable)?;
                self.note_full(venue, uses, &waits, Instant::now())
            }
            None => self.take_here(venue, uses, Instant::now()),
        };
        waited.map_err(|retry_after| Rejection::ExchangeLimitNear { retry_after })
    }

    /// How long until every allowance of `uses` known full has room, if any is.
    fn known_full(
        &self,
        venue: VenueId,
        uses: &[(Counted, Allowance)],
        now: Instant,
    ) -> Option<Duration> {
        let full_until = self
            .full_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        uses.iter()
            .filter_map(|(counted, _)| full_until.get(&(venue, *counted)))
            .map(|until| until.saturating_duration_since(now))
            .filter(|wait| !wait.is_zero())
            .max()
    }

    /// Notes the allowances Redis found full (a wait for each of `uses`, `None`
    /// where it had room); the longest wait, if any.
    fn note_full(
        &self,
        venue: VenueId,
        uses: &[(Counted, Allowance)],
        waits: &[Option<Duration>],
        now: Instant,
    ) -> Result<(), Duration> {
        let mut full_until = self
            .full_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut longest = None;
        for ((counted, _), wait) in uses.iter().zip(waits) {
            if let Some(wait) = wait {
                full_until.insert((venue, *counted), now + *wait);
                longest = longest.max(Some(*wait));
            }
        }
        longest.map_or(Ok(()), Err)
    }

    /// [`Self::take`] in this process's own windows.
    fn take_here(
        &self,
        venue: VenueId,
        uses: &[(Counted, Allowance)],
        now: Instant,
    ) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wait = Duration::ZERO;
        for (counted, allowance) in uses {
            if let Err(more) = windows
                .entry((venue, *counted))
                .or_insert_with(|| window(*allowance))
                .room(now)
            {
                wait = wait.max(more);
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (counted, _) in uses {
            if let Some(window) = windows.get_mut(&(venue, *counted)) {
                window.take(now)?;
            }
        }
        Ok(())
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
        let now = Instant::now();
        let take = |venue, counted| {
            per_address
                .take_here(venue, &[(counted, Allowance::per_minutes(1, 5))], now)
                .is_ok()
        };
        assert!(take(VenueId::Okx, Counted::Connections));
        assert!(!take(VenueId::Okx, Counted::Connections));
        assert!(take(VenueId::Okx, Counted::UnauthenticatedMessages));
        assert!(take(VenueId::Bybit, Counted::Connections));
    }

    #[test]
    fn uses_taken_together_are_taken_all_or_none() {
        let per_address = PerAddress::default();
        let now = Instant::now();
        let (one, two) = (Allowance::per_second(1), Allowance::per_second(2));
        let both = [
            (Counted::Connections, two),
            (Counted::AnonymousConnections, one),
        ];
        assert!(per_address.take_here(VenueId::Okx, &both, now).is_ok());
        // The anonymous window is full: the other is not counted either.
        let wait = per_address.take_here(VenueId::Okx, &both, now);
        assert!(wait.is_err_and(|wait| wait <= Duration::from_secs(1)));
        let alone = [(Counted::Connections, two)];
        assert!(per_address.take_here(VenueId::Okx, &alone, now).is_ok());
        assert!(per_address.take_here(VenueId::Okx, &alone, now).is_err());
        let later = now + Duration::from_secs(1);
        assert!(per_address.take_here(VenueId::Okx, &both, later).is_ok());
    }

    #[test]
    fn an_allowance_redis_found_full_is_refused_here_until_it_has_room() {
        let per_address = PerAddress::default();
        let now = Instant::now();
        let okx = |counted| (counted, Allowance::per_second(3));
        let both = [
            okx(Counted::Connections),
            okx(Counted::AnonymousConnections),
        ];
        let waits = [None, Some(Duration::from_millis(400))];
        let refused = per_address.note_full(VenueId::Okx, &both, &waits, now);
        assert_eq!(refused, Err(Duration::from_millis(400)));
        let wait = per_address.known_full(VenueId::Okx, &both, now + Duration::from_millis(100));
        assert_eq!(wait, Some(Duration::from_millis(300)));
        // A bot's link counts only against the allowance that had room.
        let bots = [okx(Counted::Connections)];
        assert_eq!(per_address.known_full(VenueId::Okx, &bots, now), None);
        let later = now + Duration::from_millis(400);
        assert_eq!(per_address.known_full(VenueId::Okx, &both, later), None);
        assert_eq!(
            per_address.note_full(VenueId::Okx, &bots, &[None], later),
            Ok(())
        );
    }
}
