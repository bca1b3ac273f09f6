//! keyward: a local TLS proxy that holds exchange API secrets, signs bots' requests
//! itself and enforces a per-bot policy.
//!
//! The request lifecycle: authenticate, parse, authorize, limit,
//! audit, sign, forward. This crate is the mechanism; decisions live in
//! `keyward-policy`, each exchange's grammar, signer and envelope in
//! `keyward-venues`, TLS material in `keyward-certs`.
//!
//! - [`front`]: request-target, method, Host and framing checks on the head.
//! - [`decide`]: authentication, routing, parsing and authorization, without I/O.
//! - [`config`]: `keyward.toml` to validated types.
//! - [`credential`]: credentials and signing primitives.

pub mod account;
pub mod admin;
pub mod app;
pub mod audit;
pub mod background;
pub mod botjwt;
pub mod budgets;
pub mod cli;
pub mod config;
pub mod credential;
pub mod decide;
pub mod demo;
pub mod error;
pub mod exchange_limits;
pub mod explain;
pub mod exposition;
pub mod framing;
pub mod freeze;
pub mod front;
pub mod housekeeping;
pub mod identity;
pub mod killswitch;
pub mod metrics;
pub mod nonce;
pub mod orders;
pub mod pipeline;
pub mod prices;
pub mod server;
pub mod shield;
pub mod sys;
pub mod throttle;
pub mod tokens;
pub mod upstream;
pub mod vault;
