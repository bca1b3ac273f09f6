//! Fuzz target `config`: see [`keyward_fuzz::config`] for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyward_fuzz::config::run(data));
