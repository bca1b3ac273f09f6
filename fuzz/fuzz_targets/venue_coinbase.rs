//! Fuzz target `venue_coinbase`: the Coinbase parser with its differential oracle
//! (see [`keyward_fuzz::venue`]).
#![no_main]

use keyward_venues::VenueId;

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyward_fuzz::venue::run(VenueId::Coinbase, data));
