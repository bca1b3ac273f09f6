//! Bybit: adapter being written; until then every request is refused.

use crate::venue::VenueId;
use crate::venue::pending::Pending;

/// Bybit.
pub static BYBIT: Pending = Pending::new(VenueId::Bybit, "https://api.bybit.com", "x-bapi-api-key");
