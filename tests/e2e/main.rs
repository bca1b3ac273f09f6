//! keyward's end-to-end tests: one test binary (two cores build it once), one module
//! per area.

// Everything in this binary is test code, helpers included: a failed unwrap is a
// failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod antipump;
mod clients;
mod config;
mod container;
mod corpus_decide;
mod corpus_serve;
mod demo;
mod deploy;
mod docs;
mod greedy;
mod hardening;
mod identity;
mod observability;
mod secrets;
mod serve;
mod shared_state;
mod sidecar;
mod streams;
mod streams_bybit;
mod streams_coinbase;
mod streams_kraken;
mod streams_market;
mod streams_okx;
mod streams_usdm;
mod vault;
mod vectors;
mod venue_bybit;
mod venue_coinbase;
mod venue_kraken;
mod venue_okx;
mod ws_mock;
mod ws_mock_bybit_okx;
mod ws_mock_coinbase;
mod ws_mock_fstream;
mod ws_mock_kraken;
