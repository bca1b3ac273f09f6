//! Fuzz target `venue_bybit`: the Bybit parser with its differential oracle
//! (see [`keyward_fuzz::venue`]).
#![no_main]

use keyward_venues::VenueId;

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyward_fuzz::venue::run(VenueId::Bybit, data));
