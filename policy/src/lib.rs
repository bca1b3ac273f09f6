//! keyward's decision layer: may this bot make this request?
//!
//! Pure and synchronous: no I/O, no async runtime, no knowledge of HTTP or of any
//! exchange. Venue adapters (in the `keyward` crate) turn a raw request into an
//! [`Intent`]; this crate answers with a [`Permit`] or a [`Denied`] reason.
//!
//! Evaluation order, for a request that has already been parsed:
//! 1. [`Policy::authenticate`]: token shape, digest (constant time), revocation, expiry.
//! 2. [`Policy::authorize_endpoint`]: the money-movement floor, then the bot's grants.
//! 3. [`Policy::authorize`]: the same again, then symbols, order types, quantities and
//!    notionals of every order in the request; returns the [`Permit`].
//! 4. [`RateLimits::check`]: consumes quota only for permitted requests.
//!
//! Only this crate can construct a [`Permit`], and signing requires one, so a request
//! that did not pass policy cannot be signed.

#![forbid(unsafe_code)]

mod band;
mod bot;
mod budget;
mod decimal;
mod error;
mod intent;
mod limit;
mod policy;
mod rate;
mod token;

pub use band::{Band, BandError};
pub use bot::{BotKeys, BotPolicy, BotSpec, Grant, Mode};
pub use budget::{
    BudgetLimits, DAY, Ledger, LedgerState, LedgerStateError, ReceiptState, Scope, ScopeName,
    ScopeState, Spend, Usage, WindowState,
};
pub use decimal::{Amount, Decimal, DecimalError};
pub use error::{BudgetScope, Denied, PolicyError, RateScope, Rule};
pub use intent::{
    EndpointClass, EndpointRef, Execution, Intent, NoQuotes, Notional, Order, Quote, Quotes, Side,
    Size, Symbol, SymbolError,
};
pub use limit::RateLimits;
pub use policy::{ANONYMOUS, AccountSpec, KEYWARD_ITSELF, KeyMatch, Permit, Policy};
pub use rate::{Rate, RateError};
pub use token::{
    BotKey, DigestError, KEY_NAME_PREFIX, P256_KEY_PREFIX, TOKEN_PREFIX, TOKEN_SECRET_LEN,
    TokenDigest, bot_name_of, is_valid_bot_name, looks_like_token, mentions_token, split_key_name,
};

/// Re-exported so callers can inject a clock without depending on governor directly.
pub mod clock {
    pub use governor::clock::{Clock, DefaultClock, FakeRelativeClock};
}

#[cfg(test)]
mod tests;
