//! The mock's bybit: not written yet, so it answers every request 404.

use super::{Behaviour, Recorded, State, http};

pub(super) fn respond(_state: &State, _request: &mut Recorded, _behaviour: Behaviour) -> Vec<u8> {
    http(404, "Not Found", &[], r#"{"error":"not mocked yet"}"#)
}
