//! Kraken: adapter being written; until then every request is refused.

use crate::venue::VenueId;
use crate::venue::pending::Pending;

/// Kraken.
pub static KRAKEN: Pending = Pending::new(VenueId::Kraken, "https://api.kraken.com", "api-key");
