//! keyward: a local TLS proxy that holds exchange API secrets, signs bots' requests
//! itself and enforces a per-bot policy.
//!
//! This crate is the mechanism; decisions live in `keyward-policy`, each exchange's
//! grammar, signer and envelope in `keyward-venues`, TLS material in `keyward-certs`.
//! Its modules, by what they hold:
//!
//! **A request's way through** (authenticate, parse, authorize, limit, audit, sign,
//! forward):
//! - [`server`]: the listeners, TLS, connection caps and deadlines, shutdown.
//! - [`framing`]: the strict HTTP/1 framing reader in front of hyper.
//! - [`front`]: request-target, method, Host and framing checks on the head.
//! - [`identity`]: client certificates and peer credentials a bot is bound to.
//! - [`decide`]: admission (authentication, binding, routing) and judgement
//!   (orders named, authorization against prices), without I/O.
//! - [`pipeline`]: the lifecycle over one request, top to bottom, refusals included.
//! - [`error`]: every refusal with its status and reason code.
//! - [`upstream`]: the pooled HTTPS client to each account's exchange.
//!
//! **State a running keyward keeps:**
//! - [`app`]: the immutable snapshot a reload swaps and the state that outlives it.
//! - [`account`]: one account at runtime: settings, credential, upstream, clock, nonces.
//! - [`budgets`], [`orders`], [`exchange_limits`], [`prices`], [`throttle`],
//!   [`nonce`]: budgets, the order record, the exchange's limits, reference prices,
//!   sliding-window counters, Kraken nonces.
//! - [`freeze`], [`killswitch`]: the kill switch's state, and freezing as asked.
//! - [`audit`]: the audit log, which budgets and the order record are rebuilt from.
//! - [`background`], [`housekeeping`]: loops while serving, and keyward's own
//!   requests to exchanges (prices, open-order checks, cancels).
//! - [`metrics`], [`exposition`], [`admin`]: counters, their Prometheus text, the
//!   admin listener and control socket.
//!
//! **Secrets:**
//! - [`vault`]: credentials encrypted at rest.
//! - [`credential`], [`shield`]: credentials in memory, sealed between uses.
//! - [`sys`]: the few system calls (no core dumps, locked pages).
//! - [`botjwt`], [`tokens`]: keys and tokens keyward issues to bots.
//!
//! **Operators:** [`config`] (`keyward.toml` to validated types), [`preflight`]
//! (the vault checked against it), [`cli`] (the commands), [`explain`], [`demo`],
//! [`sdnotify`] (readiness, reloads and stopping told to systemd).

pub mod account;
pub mod admin;
pub mod app;
pub mod audit;
pub mod background;
pub mod botjwt;
pub mod budgets;
pub mod checkpoint;
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
mod idle;
pub mod killswitch;
pub mod logging;
pub mod metrics;
pub mod nonce;
pub mod orders;
pub mod pipeline;
pub mod preflight;
pub mod prices;
pub mod sdnotify;
pub mod server;
pub mod shared;
pub mod shield;
pub mod streams;
pub mod sys;
pub mod throttle;
pub mod tokens;
pub mod upstream;
pub mod vault;
