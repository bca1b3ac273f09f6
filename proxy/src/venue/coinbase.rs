//! Coinbase: adapter being written; until then every request is refused.

use crate::venue::VenueId;
use crate::venue::pending::Pending;

/// Coinbase.
pub static COINBASE: Pending = Pending::new(
    VenueId::Coinbase,
    "https://api.coinbase.com",
    "authorization",
);
