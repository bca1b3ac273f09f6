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
//!
//! The bot is answered before its settlement reaches the journal: the write is
//! queued and sent in order, in batches, so the order's round trip to Redis is the
//! admission's alone. A request sent to the exchange is marked in flight by its
//! admission, and settling it clears the mark and appends the entry in one script;
//! so a replica judging an order a bot names first waits for that bot's requests
//! that other replicas still have in flight (one of them may have placed the
//! order), and then finds every order the bot has been answered for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// Settlements queued for the journal before a request waits for its own to be
/// written instead.
const QUEUE: usize = 4096;

/// Settlements written in one round trip at most.
const BATCH: usize = 256;

/// How often a replica waiting for another's settlement reads again.
const WAIT_STEP: Duration = Duration::from_millis(1);

/// Settlements on their way to the journal, in the order they were made.
#[derive(Debug)]
pub(super) struct Queue {
    sender: tokio::sync::mpsc::Sender<Call>,
    /// Taken by the writer when it starts.
    receiver: Mutex<Option<tokio::sync::mpsc::Receiver<Call>>>,
    /// Queued and not yet answered by Redis.
    unwritten: AtomicUsize,
    /// Whether a writer took the receiver: without one, requests write their own.
    writing: std::sync::atomic::AtomicBool,
}

impl Default for Queue {
    fn default() -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(QUEUE);
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            unwritten: AtomicUsize::new(0),
            writing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

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
    /// never sent) and gives back what its admission held: the open-order room
    /// and its mark in flight. Queued, and written in the order queued, so an
    /// amend never lands before the order it amends; another replica judging one
    /// of the bot's orders waits for the mark to go. A journal Redis cannot take
    /// leaves this replica's record as it is; the other replicas find such orders
    /// through their open-order checks.
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
        self.settling.unwritten.fetch_add(1, Ordering::AcqRel);
        if !self.settling.writing.load(Ordering::Acquire) {
            self.write_settlements(&[call]).await;
            return;
        }
        let queued = match self.settling.sender.try_send(call) {
            Ok(()) => Ok(()),
            // The writer is behind: this request waits for room, in order, which
            // keeps the queue bounded.
            Err(tokio::sync::mpsc::error::TrySendError::Full(call)) => {
                self.settling.sender.send(call).await.map_err(|e| e.0)
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(call)) => Err(call),
        };
        // No writer runs: the request writes its own.
        if let Err(call) = queued {
            self.write_settlements(&[call]).await;
        }
    }

    /// Writes queued settlements for as long as keyward runs: what is queued while
    /// one batch is with Redis goes in the next, in order.
    pub async fn keep_settling(self: Arc<Self>) {
        let receiver = self
            .settling
            .receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut receiver) = receiver else {
            return;
        };
        self.settling.writing.store(true, Ordering::Release);
        let mut batch = Vec::with_capacity(BATCH);
        while receiver.recv_many(&mut batch, BATCH).await > 0 {
            self.write_settlements(&batch).await;
            batch.clear();
        }
    }

    /// Settlements queued or with Redis, not yet answered.
    pub fn settlements_unwritten(&self) -> usize {
        self.settling.unwritten.load(Ordering::Acquire)
    }

    /// Waits, at most `limit`, until every queued settlement has had Redis's
    /// answer: at shutdown, so none is left behind.
    pub async fn settlements_written(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.settling.unwritten.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
        true
    }

    /// One round trip for `calls`, in order. A server that has lost the script
    /// (it restarted) refuses every call of the batch, which is sent again with
    /// the script's source: settling twice is harmless (the second finds no mark,
    /// and the journal's readers apply an entry once).
    async fn write_settlements(&self, calls: &[Call]) {
        let mut answered = false;
        for by_source in [false, true] {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for call in calls {
                pipe.add_command(self.settle.command_for(call, by_source));
            }
            let results: Result<Vec<redis::RedisResult<Value>>, Refusal> =
                self.query_pipeline(pipe).await;
            let Ok(results) = results else { break };
            let lost = results.iter().any(|r| {
                r.as_ref().is_err_and(|e| {
                    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                })
            });
            if !lost {
                answered = results.iter().all(Result::is_ok);
                break;
            }
        }
        self.settling
            .unwritten
            .fetch_sub(calls.len(), Ordering::AcqRel);
        if !answered {
            tracing::warn!(
                settlements = calls.len(),
                "settlements could not reach the shared state; the other replicas learn of their orders from the exchange"
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
        self.read_journal(account, orders, None)
            .await
            .map(|(read, _)| read)
    }

    /// [`Self::catch_up`] for a request of `bot` that names orders: also waits
    /// (at most `limit`) for the bot's requests other replicas had in flight
    /// when it began, so that every order the bot has been answered for is known.
    pub async fn catch_up_for(
        &self,
        account: &str,
        bot: &str,
        orders: &OrderBook,
        limit: Duration,
    ) -> Result<(), Refusal> {
        let started = Instant::now();
        let (_, mut waiting) = self.read_journal(account, orders, Some(bot)).await?;
        while !waiting.is_empty() {
            if started.elapsed() >= limit {
                tracing::warn!(
                    account,
                    in_flight = waiting.len(),
                    "judged without requests another replica still had in flight for the bot"
                );
                return Ok(());
            }
            tokio::time::sleep(WAIT_STEP).await;
            let (_, still) = self.read_journal(account, orders, Some(bot)).await?;
            waiting.retain(|member| still.contains(member));
        }
        Ok(())
    }

    /// Reads and applies the journal; with `bot`, also returns the bot's requests
    /// other replicas have in flight, as they stood when the first page was read
    /// (in the same script, so one that settles after is in a later page).
    async fn read_journal(
        &self,
        account: &str,
        orders: &OrderBook,
        bot: Option<&str>,
    ) -> Result<(usize, Vec<String>), Refusal> {
        let _reading = self.applied.reading.lock().await;
        let mut read = 0;
        let mut in_flight = None;
        loop {
            let (_, after) = self.applied.with(account, || ());
            let page: Value = match (bot, &in_flight) {
                (Some(bot), None) => {
                    let mut call = self.opening_keys(account);
                    call.key(self.journal_key(account))
                        .arg(&after)
                        .arg(PAGE)
                        .arg(bot)
                        .arg(self.member(""));
                    let answer: Value = self.run(&self.in_flight, call).await?;
                    let (members, page) = in_flight_of(answer).ok_or_else(|| {
                        tracing::error!("the journal's script answered in an unknown shape");
                        Refusal::Unavailable
                    })?;
                    in_flight = Some(members);
                    page
                }
                _ => {
                    let mut command = redis::cmd("XRANGE");
                    command
                        .arg(self.journal_key(account))
                        .arg(format!("({after}"))
                        .arg("+")
                        .arg("COUNT")
                        .arg(PAGE);
                    self.query(command).await?
                }
            };
            let entries = entries_of(page, &self.instance);
            let Some(last) = entries.last().map(|e| e.id.clone()) else {
                return Ok((read, in_flight.unwrap_or_default()));
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
                return Ok((read, in_flight.unwrap_or_default()));
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

/// The in-flight script's answer: the members in flight, and a page of entries.
fn in_flight_of(answer: Value) -> Option<(Vec<String>, Value)> {
    let Value::Array(mut parts) = answer else {
        return None;
    };
    let page = parts.pop()?;
    let Some(Value::Array(members)) = parts.pop() else {
        return None;
    };
    Some((members.into_iter().filter_map(text).collect(), page))
}

/// The entries of an `XRANGE` answer; what this replica (`own`) wrote is not
/// parsed, since it is not applied.
fn entries_of(page: Value, own: &str) -> Vec<Entry> {
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
                    Some("e") if entry.from.as_deref() != Some(own) => {
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
