//! Fuzz target `http_front`: see [`keyward_fuzz::front`] for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyward_fuzz::front::run(data));
