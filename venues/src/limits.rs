//! What a venue declares about the exchange's own limits: what is counted, over which
//! windows, what an answer reports as used, and when the exchange says to stop. The
//! proxy keeps the counters and the pauses; a venue only reads them off its answers.

use std::time::Duration;

/// What an exchange counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageKind {
    /// Request weight, per IP.
    Weight,
    /// Orders placed, per account.
    Orders,
}

impl UsageKind {
    /// Its name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Weight => "weight",
            Self::Orders => "orders",
        }
    }
}

/// A limit the exchange documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeLimit {
    /// What is counted.
    pub kind: UsageKind,
    /// The counting window (fixed windows aligned to the epoch, UTC days for 1d).
    pub window: Duration,
    /// The most allowed in one window.
    pub limit: u64,
}

/// A counter the exchange reported on a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReport {
    /// What is counted.
    pub kind: UsageKind,
    /// The window it counts over.
    pub window: Duration,
    /// How much of it is used.
    pub used: u64,
}

/// The exchange told keyward to stop sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// For how long.
    pub retry_after: Duration,
    /// True for a ban (Binance 418), false for a rate-limit warning (429).
    pub banned: bool,
}

/// What the exchange allows over a rolling window: at most `count` in any
/// `window`, counted from keyward's side (its one address, or one connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// The most allowed in any window.
    pub count: u32,
    /// The window's length.
    pub window: Duration,
}

impl Allowance {
    /// `count` in any second.
    pub const fn per_second(count: u32) -> Self {
        Self {
            count,
            window: Duration::from_secs(1),
        }
    }

    /// `count` in any `minutes` minutes.
    pub const fn per_minutes(count: u32, minutes: u64) -> Self {
        Self {
            count,
            window: Duration::from_secs(60 * minutes),
        }
    }
}
