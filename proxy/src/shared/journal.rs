//! The replicas' journal of settled orders: each replica appends what the exchange
//! did with a request that placed, amended or cancelled orders (a Redis stream per
//! account), and applies what the others appended to its own order record. So an
//! amend or a cancel is judged against the order whichever replica placed it, and
//! `max_open_orders` counts every replica's orders.
//!
//! A replica applies the journal every 250 ms (every 10 ms while orders flow), and
//! before it judges a request that names an order. The admission script counts, towards the open-order
//! limits, what the journal holds beyond the point this replica has applied, so
//! that the count never waits on the poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Value;

use super::script::Call;
use super::{Refusal, Shared};
use crate::orders::{OrderBook, SharedSettlement};

/// How often the journal is read for what other replicas settled, when it was
/// found quiet.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// How soon it is read again when it was not: what this replica has not applied
/// yet is counted entry by entry in every admission under an open-order limit, so
/// it is kept short while orders flow.
const POLL_BUSY: Duration = Duration::from_millis(10);

/// Entries read per round trip.
const PAGE: usize = 500;

/// What the journal keeps: about a day of Binance's most orders on one account.
/// A replica further behind than this (started long after the rest) learns of the
/// older orders that are still open from its open-order check instead.
const KEEP: u64 = 200_000;

/// How much longer than the wait for the exchange (connecting and answering) a
/// hold of open-order room lasts: the request is signed and sent, and then settled,
/// within it. Only a replica that died before settling leaves a hold to expire.
pub const HOLD_MARGIN: Duration = Duration::from_secs(2);

/// Where each account's journal has been applied up to.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// By account: the last entry applied. The order record is changed under this
    /// lock, so a count of the record and the point it was taken at agree.
    through: Mutex<HashMap<String, String>>,
    /// One reader at a time, so that no entry is applied twice.
    reading: tokio::sync::Mutex<()>,
}

impl Applied {
    /// `read` of the order record, with the journal entry it reflects.
    pub(super) fn with<R>(&self, account: &str, read: impl FnOnce() -> R) -> (R, String) {
        let through = self.through.lock().unwrap_or_else(PoisonError::into_inner);
        let at = through.get(account).cloned().unwrap_or_else(|| "0".into());
        (read(), at)
    }
}

/// One entry read back: its id, the replica that wrote it and what it says.
struct Entry {
    id: String,
    from: Option<String>,
    settlement: Option<SharedSettlement>,
}

impl Shared {
    /// The journal of `account`'s settled orders.
    pub(super) fn journal_key(&self, account: &str) -> String {
        format!("{}:orders", self.tag(account))
    }

    /// Appends what the exchange did with a request (`settlement`: `None` for one
    /// never sent) and gives back the open-order room it held. Awaited before the
    /// bot is answered, so a bot that goes on through another replica finds its
    /// order there. A journal Redis cannot take leaves this replica's record as it
    /// is; the other replicas find such orders through their open-order checks.
    pub async fn settle_orders(
        &self,
        account: &str,
        request_id: &str,
        settlement: Option<&SharedSettlement>,
    ) {
        let mut call = self.opening_keys(account);
        call.key(self.journal_key(account));
        call.arg(self.member(request_id)).arg(&self.instance);
        match settlement {
            Some(settlement) => {
                let text = serde_json::to_string(settlement).unwrap_or_default();
                call.arg(&settlement.bot)
                    .arg(settlement.opened())
                    .arg(text)
                    .arg(KEEP);
            }
            None => {
                call.arg("").arg(0).arg("").arg(KEEP);
            }
        }
        let mut manager = self.manager.clone();
        let done: Result<Value, Refusal> =
            self.round_trip(self.settle.run(&call, &mut manager)).await;
        if done.is_err() {
            tracing::warn!(
                account,
                "a settlement could not reach the shared state; the other replicas learn of its orders from the exchange"
            );
        }
    }

    /// The keys of the open-order room held by requests in flight: the holds, their
    /// totals by bot, their deadlines.
    pub(super) fn opening_keys(&self, account: &str) -> Call {
        let tag = self.tag(account);
        let mut call = Call::default();
        call.key(format!("{tag}:opening"))
            .key(format!("{tag}:opening-count"))
            .key(format!("{tag}:opening-deadline"));
        call
    }

    /// A request's hold, named apart from other replicas'.
    pub(super) fn member(&self, request_id: &str) -> String {
        format!("{}:{request_id}", self.instance)
    }

    /// Applies to `orders` what the other replicas appended to `account`'s journal
    /// since this replica last read it; returns how many entries it read.
    pub async fn catch_up(&self, account: &str, orders: &OrderBook) -> Result<usize, Refusal> {
        let _reading = self.applied.reading.lock().await;
        let mut read = 0;
        loop {
            let (_, after) = self.applied.with(account, || ());
            let mut command = redis::cmd("XRANGE");
            command
                .arg(self.journal_key(account))
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(PAGE);
            let mut manager = self.manager.clone();
            let page: Value = self.round_trip(command.query_async(&mut manager)).await?;
            let entries = entries_of(page);
            let Some(last) = entries.last().map(|e| e.id.clone()) else {
                return Ok(read);
            };
            read += entries.len();
            let full = entries.len() == PAGE;
            let mut through = self
                .applied
                .through
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for entry in &entries {
                if entry.from.as_deref() == Some(self.instance.as_str()) {
                    continue;
                }
                match &entry.settlement {
                    Some(settlement) => orders.apply_shared(account, settlement),
                    None => tracing::warn!(
                        account,
                        entry = entry.id,
                        "a journal entry in an unknown shape was skipped"
                    ),
                }
            }
            through.insert(account.to_owned(), last);
            if !full {
                return Ok(read);
            }
        }
    }

    /// Applies every account's journal for as long as keyward runs: every 250 ms,
    /// and every 10 ms while it brings entries.
    pub async fn keep_applying(self: Arc<Self>, app: Arc<crate::app::App>) {
        loop {
            let accounts: Vec<String> = app.snapshot().config.accounts.keys().cloned().collect();
            let mut read = 0;
            for account in accounts {
                read += self.catch_up(&account, &app.orders).await.unwrap_or(0);
            }
            let next = if read > 0 { POLL_BUSY } else { POLL_EVERY };
            tokio::time::sleep(next).await;
        }
    }
}

/// The entries of an `XRANGE` answer.
fn entries_of(page: Value) -> Vec<Entry> {
    let Value::Array(items) = page else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut pair) = item else {
                return None;
            };
            let fields = pair.pop()?;
            let id = text(pair.pop()?)?;
            let Value::Array(fields) = fields else {
                return None;
            };
            let mut entry = Entry {
                id,
                from: None,
                settlement: None,
            };
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                match text(name).as_deref() {
                    Some("from") => entry.from = text(value),
                    Some("e") => {
                        entry.settlement =
                            text(value).and_then(|json| serde_json::from_str(&json).ok());
                    }
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}
