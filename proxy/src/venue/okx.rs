//! Okx: adapter being written; until then every request is refused.

use crate::venue::VenueId;
use crate::venue::pending::Pending;

/// Okx.
pub static OKX: Pending = Pending::new(VenueId::Okx, "https://www.okx.com", "ok-access-key");
