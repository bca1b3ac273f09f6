//! keyward's record of the orders it placed: for each, the bot that placed it, its
//! account, symbol, side, type, size and prices, and the ids the exchange and the bot
//! gave it.
//!
//! What an amend, an edit, a cancel-replace or a cancel does is decided by the order
//! it names, not by the request: the request is judged against this record (symbol,
//! side and type come from it), an order keyward does not know is refused
//! (`order_unknown`), and another bot's order is refused too (`order_not_owned`). The
//! record is also the open-order count behind `max_open_orders` and the memory of
//! client order ids behind idempotent order entry (a repeated client id within the
//! account's window is refused, so a bot retrying after a 504 cannot double its
//! exposure).
//!
//! The record is kept per account, indexed by exchange id and by client id, with
//! open-order counts kept as orders open and close, so every lookup and count costs
//! the same however many orders the record holds. It is rebuilt from the audit log at
//! start (each `request` record lists its orders, each `outcome` record what the
//! exchange did with them), and the periodic open-order check closes what filled and
//! learns of open orders it did not place (which count towards the account's limit,
//! never towards a bot's).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use keyward_policy::{BudgetScope, Decimal, Denied, Execution, Order, Side, Size, Symbol};
use serde::{Deserialize, Serialize};

use keyward_venues::{AmendKind, LegResult, Listed, OrderRef, Placed};

/// Why a request naming an order was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// keyward has no record of the order (for this symbol).
    #[error("{0} was not placed through keyward; keyward acts only on orders it placed")]
    Unknown(String),
    /// Another bot placed it.
    #[error("{0} belongs to another bot")]
    NotOwned(String),
    /// The request says something of the order that its record contradicts.
    #[error("{order} is {recorded}, not what the request says ({stated})")]
    Mismatch {
        /// The order as the request named it.
        order: String,
        /// What keyward recorded.
        recorded: String,
        /// What the request said.
        stated: String,
    },
    /// The client order id was used within the account's window.
    #[error(
        "client order id {0} was already used on this account; a retry must not place the order twice (use a new id for a new order)"
    )]
    DuplicateClientId(String),
    /// A cancel of every order of the account, whichever bot placed it.
    #[error(
        "this cancels every order of the account, other bots' included; cancel the bot's own orders by id, or by symbol where the exchange allows it"
    )]
    CancelsEverything,
}

impl OrderError {
    /// The stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "order_unknown",
            Self::NotOwned(_) => "order_not_owned",
            Self::Mismatch { .. } => "order_mismatch",
            Self::DuplicateClientId(_) => "duplicate_client_order_id",
            Self::CancelsEverything => "cancel_not_confined",
        }
    }
}

/// Whether an order is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The exchange accepted it and has not reported it closed.
    Open,
    /// Sent, but the answer did not say (a timeout, a 5xx): counted open until the
    /// open-order check finds out.
    Unconfirmed,
    /// Filled, cancelled, expired or replaced.
    Closed,
}

impl State {
    fn counts_open(self) -> bool {
        matches!(self, Self::Open | Self::Unconfirmed)
    }
}

/// One order keyward placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The bot that placed it.
    pub bot: Arc<str>,
    /// Instrument.
    pub symbol: Symbol,
    /// Direction.
    pub side: Side,
    /// The venue's order-type name.
    pub order_type: Arc<str>,
    /// How it executes.
    pub execution: Execution,
    /// Its size, as placed or last amended.
    pub size: Size,
    /// Its limit price.
    pub price: Option<Decimal>,
    /// Its trigger price.
    pub trigger: Option<Decimal>,
    /// True if it may only reduce a position.
    pub reduce_only: bool,
    /// The exchange's id, once known.
    pub id: Option<String>,
    /// The client order id.
    pub client_id: Option<String>,
    /// The order list it belongs to, and that list's client id.
    pub list_id: Option<String>,
    /// The client id of its order list.
    pub list_client_id: Option<String>,
    /// Open, unconfirmed or closed.
    pub state: State,
    /// When it was placed.
    pub placed: SystemTime,
    /// The request that placed it (unconfirmed orders are settled by it).
    pub request_id: Arc<str>,
}

/// Records by the key keyward gives each, a counter: never text from a request, so
/// the map needs no keyed hash (SipHash, over all of a book's maps, was 7% of
/// reading back a checkpoint). Ids and client ids, which bots choose, keep SipHash.
type ByKey = HashMap<u64, Record, Unkeyed>;

/// FNV-1a, for maps whose keys keyward makes itself (record keys, request ids).
type Unkeyed = std::hash::BuildHasherDefault<keyward_venues::schema::NameHasher>;

/// The orders of one account.
#[derive(Debug, Default)]
struct Book {
    next: u64,
    records: ByKey,
    by_id: HashMap<String, Vec<u64>>,
    by_client: HashMap<String, Vec<u64>>,
    by_list: HashMap<String, Vec<u64>>,
    by_list_client: HashMap<String, Vec<u64>>,
    /// How many records each request made: a settlement another replica shared is
    /// applied once, even when this replica rebuilt it from its own audit log.
    /// Request ids are keyward's own, never a bot's text.
    by_request: HashMap<Arc<str>, u32, Unkeyed>,
    /// Client ids of requests not settled yet, with the request that holds each.
    held_clients: HashMap<String, Arc<str>>,
    /// Open orders the exchange listed that keyward did not place, by symbol.
    foreign: HashMap<Symbol, HashSet<String>>,
    /// Open (and unconfirmed) records by bot.
    open_by_bot: HashMap<Arc<str>, u64>,
    /// The keys of open (and unconfirmed) records: the open-order check and the
    /// symbols it asks about go through these, not through a day of closed orders
    /// (it holds the record's lock, which every order waits for).
    open: HashSet<u64, Unkeyed>,
    /// Closed records by when they were placed: pruning a day's old orders takes
    /// only those, under the same lock.
    closed: std::collections::BTreeSet<(SystemTime, u64)>,
    /// Orders being placed now, by bot.
    pending_by_bot: HashMap<Arc<str>, u64>,
}

/// Every account's orders.
#[derive(Debug, Default)]
pub struct OrderBook {
    accounts: Mutex<HashMap<String, Book>>,
}

/// An order a request places or changes, as the audit log records it: what the book
/// needs to rebuild itself, and what an investigation needs to see. Never a secret:
/// symbols, sides, sizes, prices and the ids the bot and the exchange chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegRecord {
    /// Instrument.
    pub symbol: String,
    /// `BUY` or `SELL`.
    pub side: String,
    /// The venue's order-type name.
    #[serde(rename = "type")]
    pub order_type: String,
    /// `limit`, `market`, `stop_market`, `stop_limit` or `trailing`.
    pub execution: String,
    /// Base quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<String>,
    /// Quote amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// Sized by the exchange (a whole-position close).
    #[serde(default, skip_serializing_if = "is_false")]
    pub whole_position: bool,
    /// Limit price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Trigger price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Reduce-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reduce_only: bool,
    /// The client order id of a new order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The order an amend changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<RefRecord>,
    /// The amend replaces the order under a new id.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replaces: bool,
}

/// An order a request names, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// The symbol the request named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Exchange id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Client order id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Names an order list.
    #[serde(default, skip_serializing_if = "is_false")]
    pub list: bool,
}

/// What the exchange did with one order, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// `placed`, `rejected` or `unknown`.
    pub result: String,
    /// The exchange's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The client order id the exchange reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its order list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_id: Option<String>,
    /// Its order list's client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_client_id: Option<String>,
    /// Still open.
    #[serde(default, skip_serializing_if = "is_false")]
    pub open: bool,
}

/// An order an answer showed closed, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedRecord {
    /// Its symbol, when the answer said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Its id.
    pub id: String,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(value: &bool) -> bool {
    !*value
}

/// One order of a request and what became of it: what [`OrderBook::settle`] applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// The order as decided (for an amend: with the record's symbol, side and type).
    pub order: Order,
    /// The client id of a new order.
    pub client_id: Option<String>,
    /// For an amend: the order it changes, and how.
    pub amends: Option<(OrderRef, AmendKind)>,
    /// What the exchange did.
    pub result: LegResult,
}

/// Everything a settled request did to the account's orders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Its orders.
    pub legs: Vec<Leg>,
    /// Orders it named to cancel, each with whether the answer shows it cancelled
    /// (`None`: the answer does not say per order).
    pub cancels: Vec<(OrderRef, Option<bool>)>,
    /// The answer says the request as a whole succeeded.
    pub succeeded: bool,
    /// Orders the answer shows closed.
    pub closed: Vec<(Option<Symbol>, String)>,
    /// Symbols whose every order the answer shows cancelled.
    pub closed_all: Vec<Symbol>,
    /// Orders the answer lists with their state.
    pub listed: Vec<Listed>,
}

impl OrderBook {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record rebuilt from the audit log at `audit_file` (and its rotated files)
    /// as of `now` ([`OrderReplay`]; at start, [`crate::budgets::rebuild_from_audit`]
    /// reads the log once for the budgets and the order record together).
    pub fn rebuild(audit_file: &std::path::Path, now: SystemTime) -> Self {
        let mut replay = OrderReplay::new();
        crate::budgets::each_audit_record(audit_file, now, |record| replay.feed(record));
        replay.finish(now)
    }

    fn with<R>(&self, account: &str, f: impl FnOnce(&mut Book) -> R) -> R {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(book) = accounts.get_mut(account) {
            return f(book);
        }
        f(accounts.entry(account.to_owned()).or_default())
    }

    /// The record of the order `reference` names on `account`, if `bot` placed it.
    pub fn lookup(
        &self,
        account: &str,
        bot: &str,
        reference: &OrderRef,
    ) -> Result<Record, OrderError> {
        self.with(account, |book| {
            let key = book.find(reference)?;
            let record = &book.records[&key];
            if &*record.bot != bot {
                return Err(OrderError::NotOwned(reference.describe()));
            }
            Ok(record.clone())
        })
    }

    /// Every record of `account`, oldest first, for tests and explanations.
    pub fn records(&self, account: &str) -> Vec<Record> {
        self.with(account, |book| {
            let mut records: Vec<Record> = book.records.values().cloned().collect();
            records.sort_by_key(|r| r.placed);
            records
        })
    }

    /// Holds the client ids of a request's new orders and room for `new` more open
    /// orders, or refuses. A client id used on the account within `window` (by any
    /// bot), held by a request in flight, or repeated in the request is refused
    /// whatever the mode. Over `max_open_orders`, shadow mode (`enforce` false)
    /// holds the room anyway and returns the refusal it would have made.
    #[allow(clippy::too_many_arguments)]
    pub fn reserve(
        &self,
        account: &str,
        bot: &str,
        request_id: &str,
        client_ids: &[&str],
        new: u32,
        limits: (Option<u32>, Option<u32>),
        (now, window): (SystemTime, Duration),
        enforce: bool,
    ) -> Result<Option<Denied>, ReserveError> {
        self.with(account, |book| {
            let mut seen = HashSet::new();
            for client_id in client_ids {
                let reused = !seen.insert(*client_id)
                    || book.held_clients.contains_key(*client_id)
                    || book.by_client.get(*client_id).is_some_and(|keys| {
                        keys.iter().any(|key| {
                            book.records.get(key).is_some_and(|r| {
                                now.duration_since(r.placed).unwrap_or_default() < window
                            })
                        })
                    });
                if reused {
                    return Err(ReserveError::Order(OrderError::DuplicateClientId(
                        (*client_id).to_owned(),
                    )));
                }
            }
            let (bot_limit, account_limit) = limits;
            let (bot_open, account_open) = book.counts(bot);
            let over = [
                (BudgetScope::Bot, bot_open, bot_limit),
                (BudgetScope::Account, account_open, account_limit),
            ]
            .into_iter()
            .find_map(|(scope, open, limit)| {
                let limit = limit?;
                (new > 0 && open + u64::from(new) > u64::from(limit))
                    .then_some(Denied::MaxOpenOrdersExceeded { scope, open, limit })
            });
            if let (Some(denied), true) = (&over, enforce) {
                return Err(ReserveError::Denied(denied.clone()));
            }
            let request: Arc<str> = Arc::from(request_id);
            for client_id in client_ids {
                book.held_clients
                    .insert((*client_id).to_owned(), request.clone());
            }
            if new > 0 {
                *book.pending_by_bot.entry(Arc::from(bot)).or_default() += u64::from(new);
            }
            Ok(over)
        })
    }

    /// Releases what [`OrderBook::reserve`] held for a request that was not sent.
    pub fn release(&self, account: &str, bot: &str, request_id: &str, new: u32) {
        self.with(account, |book| book.release(bot, request_id, new));
    }

    /// Applies what the exchange did with a request of `bot` (and releases what was
    /// held for it).
    pub fn settle(
        &self,
        account: &str,
        bot: &str,
        request_id: &str,
        reserved: u32,
        settlement: &Settlement,
        at: SystemTime,
    ) {
        self.with(account, |book| {
            book.release(bot, request_id, reserved);
            book.apply(bot, request_id, settlement, at);
        });
    }

    /// Applies an order read's or keyward's own answer: it may close records and
    /// tell of open orders keyward did not place, never change whose an order is.
    pub fn observe(&self, account: &str, settlement: &Settlement) {
        self.with(account, |book| book.observe(settlement));
    }

    /// The open-order check's answer for `symbol` (asked at `asked_at`): records the
    /// exchange no longer lists are closed (unconfirmed ones found by their client id
    /// are confirmed), and open orders keyward did not place are counted for the
    /// account.
    pub fn reconcile(
        &self,
        account: &str,
        symbol: &Symbol,
        listed: &[Listed],
        asked_at: SystemTime,
    ) {
        self.with(account, |book| book.reconcile(symbol, listed, asked_at));
    }

    /// Symbols with open orders on `account`, keyward's or not.
    pub fn tracked_symbols(&self, account: &str) -> Vec<Symbol> {
        self.with(account, |book| {
            let symbols: std::collections::BTreeSet<&Symbol> = book
                .open
                .iter()
                .filter_map(|key| book.records.get(key))
                .map(|r| &r.symbol)
                .chain(
                    book.foreign
                        .iter()
                        .filter(|(_, ids)| !ids.is_empty())
                        .map(|(s, _)| s),
                )
                .collect();
            symbols.into_iter().cloned().collect()
        })
    }

    /// Open orders of `bot` and of its `account` (orders being placed included; the
    /// account's also counts open orders keyward did not place).
    pub fn open_orders(&self, account: &str, bot: &str) -> (u64, u64) {
        self.with(account, |book| book.counts(bot))
    }

    /// Open orders of `bot` and of its `account` as settled: [`OrderBook::open_orders`]
    /// without this replica's orders being placed, which the shared state counts
    /// for every replica.
    pub fn settled_open_orders(&self, account: &str, bot: &str) -> (u64, u64) {
        self.with(account, |book| {
            let pending = book.pending_by_bot.values().sum::<u64>();
            let (own, all) = book.counts(bot);
            let own_pending = book.pending_by_bot.get(bot).copied().unwrap_or(0);
            (own - own_pending, all - pending)
        })
    }

    /// Applies a settlement another replica shared (see [`SharedSettlement`]), once:
    /// a request whose orders the record holds already is not applied again.
    pub fn apply_shared(&self, account: &str, shared: &SharedSettlement) {
        let settlement = settlement_of(
            &shared.legs,
            &shared.cancels,
            Some(&shared.results),
            shared.cancelled.as_deref(),
            (&shared.closed, &shared.closed_all),
            shared.succeeded,
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(shared.at_ms);
        self.with(account, |book| {
            if book.by_request.contains_key(shared.request_id.as_str()) {
                return;
            }
            book.apply(&shared.bot, &shared.request_id, &settlement, at);
        });
    }

    /// Forgets closed orders placed before `before`.
    pub fn prune(&self, before: SystemTime) {
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        for book in accounts.values_mut() {
            while book
                .closed
                .first()
                .is_some_and(|(placed, _)| *placed < before)
            {
                if let Some((_, key)) = book.closed.pop_first() {
                    book.remove(key);
                }
            }
        }
    }

    /// Adds an order that exists at the exchange but not in the record (the bot's
    /// `adopt_orders`, after keyward looked it up itself).
    pub fn adopt(&self, account: &str, record: Record) {
        self.with(account, |book| {
            if let Some(id) = &record.id {
                for ids in book.foreign.values_mut() {
                    ids.remove(id);
                }
            }
            book.insert(record);
        });
    }
}

/// A settled request as replicas share it through their journal (see
/// [`crate::shared`]): what the request asked (its orders and cancels, as the audit
/// log records them) and what the exchange answered, so that every replica judges
/// an amend or a cancel against the order whichever replica placed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedSettlement {
    /// The bot that sent it.
    pub bot: String,
    /// Its request id.
    pub request_id: String,
    /// When it was sent, in ms since the epoch.
    pub at_ms: u64,
    /// Its orders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<LegRecord>,
    /// The orders it cancels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancels: Vec<RefRecord>,
    /// One result per leg.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ResultRecord>,
    /// Whether each cancel was done, when the answer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Vec<bool>>,
    /// Orders the answer shows closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<ClosedRecord>,
    /// Symbols whose every order the answer shows cancelled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_all: Vec<String>,
    /// The request as a whole succeeded.
    pub succeeded: bool,
}

impl SharedSettlement {
    /// How many orders it left open (or possibly open): what another replica that
    /// has not applied it yet counts towards `max_open_orders`.
    pub fn opened(&self) -> u32 {
        let open = self.legs.iter().zip(&self.results).filter(|(leg, result)| {
            // An amend in place changes an order already counted.
            let new_record = leg.amends.is_none() || leg.replaces;
            new_record
                && match result.result.as_str() {
                    "placed" => result.open,
                    "unknown" => true,
                    _ => false,
                }
        });
        u32::try_from(open.count()).unwrap_or(u32::MAX)
    }
}

/// One account's orders as plain data, for the checkpoint written at a clean stop.
/// A day at an exchange's maximum order rate keeps 200,000 of them, so the form is
/// compact (bot names once, absent fields left out) and strings are read back
/// borrowed from the file, each allocated once, where the record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountOrders<'a> {
    /// The account.
    #[serde(borrow)]
    pub account: Cow<'a, str>,
    /// The bots its records name, each once.
    #[serde(borrow)]
    pub bots: Vec<Cow<'a, str>>,
    /// Every order kept for it, oldest first.
    #[serde(borrow)]
    pub records: Vec<RecordState<'a>>,
    /// Open orders the exchange listed that keyward did not place: `(symbol, id)`.
    #[serde(borrow)]
    pub foreign: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// One kept order as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordState<'a> {
    /// The bot that placed it, as an index into [`AccountOrders::bots`].
    pub bot: u32,
    /// Instrument.
    #[serde(borrow)]
    pub symbol: Cow<'a, str>,
    /// `BUY` or `SELL`.
    pub buy: bool,
    /// The venue's order-type name.
    #[serde(borrow)]
    pub order_type: Cow<'a, str>,
    /// How it executes, as the audit log names it.
    #[serde(borrow)]
    pub execution: Cow<'a, str>,
    /// Base-currency size...
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub qty: Option<Cow<'a, str>>,
    /// ...or quote-currency size...
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<Cow<'a, str>>,
    /// ...or the whole position.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole_position: bool,
    /// Limit price.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Cow<'a, str>>,
    /// Trigger price.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Cow<'a, str>>,
    /// May only reduce a position.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reduce_only: bool,
    /// The exchange's id.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    /// The client order id.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Cow<'a, str>>,
    /// Its order list's id...
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub list_id: Option<Cow<'a, str>>,
    /// ...and that list's client id.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub list_client_id: Option<Cow<'a, str>>,
    /// `open`, `unconfirmed` or `closed`.
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    /// When it was placed, in nanoseconds since the Unix epoch.
    pub placed_nanos: u64,
    /// The request that placed it.
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
}

impl<'a> RecordState<'a> {
    fn of(record: &'a Record, bot: u32) -> Self {
        let borrowed = |text: &'a Option<String>| text.as_deref().map(Cow::Borrowed);
        let (qty, quote, whole_position) = match record.size {
            Size::Base(q) => (Some(Cow::Owned(q.to_string())), None, false),
            Size::Quote(q) => (None, Some(Cow::Owned(q.to_string())), false),
            Size::WholePosition => (None, None, true),
        };
        Self {
            bot,
            symbol: Cow::Borrowed(record.symbol.as_str()),
            buy: record.side == Side::Buy,
            order_type: Cow::Borrowed(&record.order_type),
            execution: Cow::Borrowed(execution_name(record.execution)),
            qty,
            quote,
            whole_position,
            price: record.price.map(|p| Cow::Owned(p.to_string())),
            trigger: record.trigger.map(|p| Cow::Owned(p.to_string())),
            reduce_only: record.reduce_only,
            id: borrowed(&record.id),
            client_id: borrowed(&record.client_id),
            list_id: borrowed(&record.list_id),
            list_client_id: borrowed(&record.list_client_id),
            state: Cow::Borrowed(match record.state {
                State::Open => "open",
                State::Unconfirmed => "unconfirmed",
                State::Closed => "closed",
            }),
            placed_nanos: record
                .placed
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            request_id: Cow::Borrowed(&record.request_id),
        }
    }
}

/// What a read-back shares between records: one allocation per bot name, symbol and
/// order type, not one per record.
#[derive(Default)]
struct Interned {
    symbols: HashMap<String, Symbol>,
    order_types: HashMap<String, Arc<str>>,
}

impl Interned {
    fn symbol(&mut self, text: &str) -> Option<Symbol> {
        if let Some(symbol) = self.symbols.get(text) {
            return Some(symbol.clone());
        }
        let symbol = Symbol::new(text).ok()?;
        self.symbols.insert(text.to_owned(), symbol.clone());
        Some(symbol)
    }

    fn order_type(&mut self, text: &str) -> Arc<str> {
        if let Some(name) = self.order_types.get(text) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(text);
        self.order_types.insert(text.to_owned(), name.clone());
        name
    }

    fn record(&mut self, state: &RecordState<'_>, bots: &[Arc<str>]) -> Option<Record> {
        let owned = |text: &Option<Cow<'_, str>>| text.as_deref().map(str::to_owned);
        let size = size_of(
            state.qty.as_deref(),
            state.quote.as_deref(),
            state.whole_position,
        )?;
        Some(Record {
            bot: bots.get(usize::try_from(state.bot).ok()?)?.clone(),
            symbol: self.symbol(&state.symbol)?,
            side: if state.buy { Side::Buy } else { Side::Sell },
            order_type: self.order_type(&state.order_type),
            execution: execution_of(&state.execution)?,
            size,
            price: optional_decimal(state.price.as_deref())?,
            trigger: optional_decimal(state.trigger.as_deref())?,
            reduce_only: state.reduce_only,
            id: owned(&state.id),
            client_id: owned(&state.client_id),
            list_id: owned(&state.list_id),
            list_client_id: owned(&state.list_client_id),
            state: match &*state.state {
                "open" => State::Open,
                "unconfirmed" => State::Unconfirmed,
                "closed" => State::Closed,
                _ => return None,
            },
            placed: SystemTime::UNIX_EPOCH + Duration::from_nanos(state.placed_nanos),
            request_id: Arc::from(&*state.request_id),
        })
    }
}

impl OrderBook {
    /// Every account's orders as plain data, oldest first, passed to `write` while
    /// the record is locked; `None` while any request is being placed (its
    /// reservation is not something a restart can resume).
    pub fn with_state<R>(&self, write: impl FnOnce(&[AccountOrders<'_>]) -> R) -> Option<R> {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut state = Vec::with_capacity(accounts.len());
        for (account, book) in accounts.iter() {
            if book.pending_by_bot.values().any(|&n| n > 0) || !book.held_clients.is_empty() {
                return None;
            }
            let mut keys: Vec<&u64> = book.records.keys().collect();
            keys.sort_unstable();
            let mut bots: Vec<Cow<'_, str>> = Vec::new();
            let mut bot_index: HashMap<&str, u32> = HashMap::new();
            let mut records = Vec::with_capacity(keys.len());
            for key in keys {
                let Some(record) = book.records.get(key) else {
                    continue;
                };
                let index = *bot_index.entry(&record.bot).or_insert_with(|| {
                    bots.push(Cow::Borrowed(&record.bot));
                    u32::try_from(bots.len() - 1).unwrap_or(u32::MAX)
                });
                records.push(RecordState::of(record, index));
            }
            let mut foreign: Vec<(Cow<'_, str>, Cow<'_, str>)> = book
                .foreign
                .iter()
                .flat_map(|(symbol, ids)| {
                    ids.iter()
                        .map(|id| (Cow::Borrowed(symbol.as_str()), Cow::Borrowed(id.as_str())))
                })
                .collect();
            foreign.sort();
            state.push(AccountOrders {
                account: Cow::Borrowed(account),
                bots,
                records,
                foreign,
            });
        }
        state.sort_by(|a, b| a.account.cmp(&b.account));
        Some(write(&state))
    }
}

/// The order record read back from a checkpoint's `orders` list (the form
/// [`OrderBook::with_state`] writes): each record goes into its account's book as
/// it is parsed. Reading the whole list first and building the books after held a
/// day's 200,000 records twice, and writing and faulting in the list (about
/// 70 MB) was about a fifth of a read-back.
#[derive(Debug)]
pub struct ReadBack(pub OrderBook);

impl<'de> Deserialize<'de> for ReadBack {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(AccountsVisitor)
    }
}

struct AccountsVisitor;

impl<'de> serde::de::Visitor<'de> for AccountsVisitor {
    type Value = ReadBack;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of accounts' orders")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ReadBack, A::Error> {
        let mut interned = Interned::default();
        let mut accounts = HashMap::new();
        while let Some((name, book)) = seq.next_element_seed(AccountSeed {
            interned: &mut interned,
        })? {
            if accounts.insert(name, book).is_some() {
                return Err(serde::de::Error::custom("an account is listed twice"));
            }
        }
        Ok(ReadBack(OrderBook {
            accounts: Mutex::new(accounts),
        }))
    }
}

/// The fields of one [`AccountOrders`], read into a [`Book`].
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum AccountField {
    Account,
    Bots,
    Records,
    Foreign,
    #[serde(other)]
    Other,
}

struct AccountSeed<'i> {
    interned: &'i mut Interned,
}

impl<'de> serde::de::DeserializeSeed<'de> for AccountSeed<'_> {
    type Value = (String, Book);

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AccountSeed<'_> {
    type Value = (String, Book);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an account's orders")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut name: Option<String> = None;
        let mut bots: Option<Vec<Arc<str>>> = None;
        let mut records = false;
        let mut book = Book::default();
        while let Some(field) = map.next_key::<AccountField>()? {
            match field {
                AccountField::Account => name = Some(map.next_value::<String>()?),
                AccountField::Bots => {
                    let names: Vec<Cow<'de, str>> = map.next_value()?;
                    bots = Some(names.iter().map(|b| Arc::from(&**b)).collect());
                }
                // Written after the bot names, which its records point into.
                AccountField::Records => {
                    let bots = bots
                        .as_deref()
                        .ok_or_else(|| A::Error::custom("records before the bot names"))?;
                    map.next_value_seed(RecordsSeed {
                        bots,
                        interned: self.interned,
                        book: &mut book,
                    })?;
                    records = true;
                }
                AccountField::Foreign => {
                    let foreign: Vec<(Cow<'de, str>, Cow<'de, str>)> = map.next_value()?;
                    for (symbol, id) in foreign {
                        let symbol = self
                            .interned
                            .symbol(&symbol)
                            .ok_or_else(|| A::Error::custom("a foreign order's symbol"))?;
                        book.foreign
                            .entry(symbol)
                            .or_default()
                            .insert(id.into_owned());
                    }
                }
                AccountField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        match (name, records) {
            (Some(name), true) => Ok((name, book)),
            _ => Err(A::Error::custom("an account's name or records are missing")),
        }
    }
}

/// One account's `records`, each inserted into its book as it is read.
struct RecordsSeed<'s> {
    bots: &'s [Arc<str>],
    interned: &'s mut Interned,
    book: &'s mut Book,
}

impl<'de> serde::de::DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RecordsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of orders")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(state) = seq.next_element::<RecordState<'de>>()? {
            let record = self
                .interned
                .record(&state, self.bots)
                .ok_or_else(|| serde::de::Error::custom("an order does not read back"))?;
            self.book.insert(record);
        }
        Ok(())
    }
}

/// The order record's side of a rebuild: each forwarded request's orders, settled
/// by its outcome record, or left unconfirmed where keyward stopped before the
/// exchange answered (the open-order check then finds out). Closed orders older than
/// a day are not kept.
#[derive(Debug, Default)]
pub struct OrderReplay {
    book: OrderBook,
    /// Requests sent whose outcome is not read yet, and the order they were sent in.
    sent: HashMap<String, Sent>,
    order: Vec<String>,
    settled: usize,
}

#[derive(Debug)]
struct Sent {
    account: String,
    bot: String,
    at: SystemTime,
    legs: Vec<LegRecord>,
    cancels: Vec<RefRecord>,
}

impl OrderReplay {
    /// An empty replay.
    pub fn new() -> Self {
        Self::default()
    }

    /// A replay that starts from `book` (read back from a checkpoint) and goes on
    /// with the records written after it.
    pub fn resuming(book: OrderBook) -> Self {
        Self {
            book,
            ..Self::default()
        }
    }

    /// One audit record.
    pub fn feed(&mut self, record: crate::budgets::Replayed<'_>) {
        let Some(id) = record.request_id.as_deref() else {
            return;
        };
        match &*record.event {
            "request" => {
                let forwarded =
                    matches!(record.decision.as_deref(), Some("allow" | "shadow-allow"));
                let legs = record.legs.unwrap_or_default();
                let cancels = record.cancels.unwrap_or_default();
                let (Some(account), Some(bot), Some(at)) = (
                    record.account.as_deref(),
                    record.bot.as_deref(),
                    record.ts.as_deref().and_then(parse_time),
                ) else {
                    return;
                };
                if forwarded && (!legs.is_empty() || !cancels.is_empty()) {
                    self.order.push(id.to_owned());
                    self.sent.insert(
                        id.to_owned(),
                        Sent {
                            account: account.to_owned(),
                            bot: bot.to_owned(),
                            at,
                            legs,
                            cancels,
                        },
                    );
                }
            }
            "outcome" => {
                let Some(request) = self.sent.remove(id) else {
                    return;
                };
                let results = record.results.as_deref().unwrap_or_default();
                let closed = record.closed.as_deref().unwrap_or_default();
                let closed_all = record.closed_all.as_deref().unwrap_or_default();
                let succeeded = record
                    .upstream_status
                    .is_some_and(|s| (200..300).contains(&s))
                    && record.refused != Some(true);
                let settlement = settlement_of(
                    &request.legs,
                    &request.cancels,
                    Some(results),
                    record.cancelled.as_deref(),
                    (closed, closed_all),
                    succeeded,
                );
                self.book.settle(
                    &request.account,
                    &request.bot,
                    id,
                    0,
                    &settlement,
                    request.at,
                );
                self.settled += 1;
            }
            _ => {}
        }
    }

    /// The rebuilt record as of `now`.
    pub fn finish(mut self, now: SystemTime) -> OrderBook {
        // Sent, and no outcome recorded: keyward stopped before the answer.
        for id in std::mem::take(&mut self.order) {
            if let Some(request) = self.sent.remove(&id) {
                let settlement = settlement_of(
                    &request.legs,
                    &request.cancels,
                    None,
                    None,
                    (&[], &[]),
                    false,
                );
                self.book.settle(
                    &request.account,
                    &request.bot,
                    &id,
                    0,
                    &settlement,
                    request.at,
                );
            }
        }
        if let Some(before) = now.checked_sub(Duration::from_secs(86_400)) {
            self.book.prune(before);
        }
        if self.settled > 0 {
            tracing::info!(
                requests = self.settled,
                "order record rebuilt from the audit log"
            );
        }
        self.book
    }
}

/// Why [`OrderBook::reserve`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// A client id was used before.
    Order(OrderError),
    /// Over the open-order limit.
    Denied(Denied),
}

impl Book {
    fn counts(&self, bot: &str) -> (u64, u64) {
        let own = self.open_by_bot.get(bot).copied().unwrap_or(0)
            + self.pending_by_bot.get(bot).copied().unwrap_or(0);
        let all = self.open_by_bot.values().sum::<u64>()
            + self.pending_by_bot.values().sum::<u64>()
            + self
                .foreign
                .values()
                .map(|ids| ids.len() as u64)
                .sum::<u64>();
        (own, all)
    }

    fn release(&mut self, bot: &str, request_id: &str, new: u32) {
        if new > 0
            && let Some(pending) = self.pending_by_bot.get_mut(bot)
        {
            *pending = pending.saturating_sub(u64::from(new));
        }
        self.held_clients.retain(|_, held| &**held != request_id);
    }

    /// The one record `reference` names.
    fn find(&self, reference: &OrderRef) -> Result<u64, OrderError> {
        let unknown = || OrderError::Unknown(reference.describe());
        let on_symbol = |key: &&u64| {
            reference
                .symbol
                .as_ref()
                .is_none_or(|s| self.records.get(*key).is_some_and(|r| &r.symbol == s))
        };
        let by = |index: &HashMap<String, Vec<u64>>, value: &Option<String>| -> Option<Vec<u64>> {
            value.as_ref().map(|v| {
                index
                    .get(v)
                    .into_iter()
                    .flatten()
                    .filter(on_symbol)
                    .copied()
                    .collect()
            })
        };
        let (by_id, by_client) = if reference.list {
            (
                by(&self.by_list, &reference.id),
                by(&self.by_list_client, &reference.client_id),
            )
        } else {
            (
                by(&self.by_id, &reference.id),
                by(&self.by_client, &reference.client_id),
            )
        };
        let candidates = match (by_id, by_client) {
            (Some(ids), Some(clients)) => {
                let both: Vec<u64> = ids.into_iter().filter(|k| clients.contains(k)).collect();
                if both.is_empty() {
                    return Err(unknown());
                }
                both
            }
            (Some(keys), None) | (None, Some(keys)) => keys,
            (None, None) => return Err(unknown()),
        };
        // The newest record wins among the orders of a list, and among orders that
        // reused a client id after the window.
        candidates
            .into_iter()
            .max_by_key(|key| self.records.get(key).map(|r| r.placed))
            .ok_or_else(unknown)
    }

    fn insert(&mut self, record: Record) -> u64 {
        let key = self.next;
        self.next += 1;
        if let Some(id) = &record.id {
            self.by_id.entry(id.clone()).or_default().push(key);
        }
        if let Some(client_id) = &record.client_id {
            self.by_client
                .entry(client_id.clone())
                .or_default()
                .push(key);
        }
        if let Some(list) = &record.list_id {
            self.by_list.entry(list.clone()).or_default().push(key);
        }
        if let Some(list) = &record.list_client_id {
            self.by_list_client
                .entry(list.clone())
                .or_default()
                .push(key);
        }
        if record.state.counts_open() {
            *self.open_by_bot.entry(record.bot.clone()).or_default() += 1;
            self.open.insert(key);
        } else {
            self.closed.insert((record.placed, key));
        }
        *self
            .by_request
            .entry(record.request_id.clone())
            .or_default() += 1;
        self.records.insert(key, record);
        key
    }

    fn remove(&mut self, key: u64) {
        let Some(record) = self.records.remove(&key) else {
            return;
        };
        let unindex = |index: &mut HashMap<String, Vec<u64>>, value: &Option<String>| {
            if let Some(value) = value
                && let Some(keys) = index.get_mut(value)
            {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    index.remove(value);
                }
            }
        };
        unindex(&mut self.by_id, &record.id);
        unindex(&mut self.by_client, &record.client_id);
        unindex(&mut self.by_list, &record.list_id);
        unindex(&mut self.by_list_client, &record.list_client_id);
        if let Some(made) = self.by_request.get_mut(&record.request_id) {
            *made = made.saturating_sub(1);
            if *made == 0 {
                self.by_request.remove(&record.request_id);
            }
        }
        if record.state.counts_open() {
            self.count_closed(&record.bot);
            self.open.remove(&key);
        } else {
            self.closed.remove(&(record.placed, key));
        }
    }

    fn count_closed(&mut self, bot: &Arc<str>) {
        if let Some(open) = self.open_by_bot.get_mut(bot) {
            *open = open.saturating_sub(1);
        }
    }

    fn set_state(&mut self, key: u64, state: State) {
        let Some(record) = self.records.get_mut(&key) else {
            return;
        };
        let was = record.state.counts_open();
        record.state = state;
        let bot = record.bot.clone();
        let placed = record.placed;
        match (was, state.counts_open()) {
            (true, false) => {
                self.count_closed(&bot);
                self.open.remove(&key);
                self.closed.insert((placed, key));
            }
            (false, true) => {
                *self.open_by_bot.entry(bot).or_default() += 1;
                self.open.insert(key);
                self.closed.remove(&(placed, key));
            }
            _ => {}
        }
    }

    fn set_id(&mut self, key: u64, id: &str) {
        let Some(record) = self.records.get_mut(&key) else {
            return;
        };
        if record.id.as_deref() == Some(id) {
            return;
        }
        if let Some(old) = record.id.replace(id.to_owned())
            && let Some(keys) = self.by_id.get_mut(&old)
        {
            keys.retain(|k| *k != key);
        }
        self.by_id.entry(id.to_owned()).or_default().push(key);
    }

    fn close_by_id(&mut self, symbol: Option<&Symbol>, id: &str) {
        let keys: Vec<u64> = self.by_id.get(id).cloned().unwrap_or_default();
        for key in keys {
            let matches =
                symbol.is_none_or(|s| self.records.get(&key).is_some_and(|r| &r.symbol == s));
            if matches {
                self.set_state(key, State::Closed);
            }
        }
        for (listed_symbol, ids) in &mut self.foreign {
            if symbol.is_none_or(|s| s == listed_symbol) {
                ids.remove(id);
            }
        }
    }

    fn apply(&mut self, bot: &str, request_id: &str, settlement: &Settlement, at: SystemTime) {
        let bot: Arc<str> = Arc::from(bot);
        let request: Arc<str> = Arc::from(request_id);
        for leg in &settlement.legs {
            let placed = match &leg.result {
                LegResult::Placed(placed) => Some(placed),
                LegResult::Unknown => None,
                LegResult::Rejected => continue,
            };
            match &leg.amends {
                Some((reference, kind)) => {
                    // Only a proven amend changes the record; an unknown one leaves
                    // it as it was (its side, symbol and type cannot have changed).
                    let (Some(placed), Ok(key)) = (placed, self.find(reference)) else {
                        continue;
                    };
                    match kind {
                        AmendKind::InPlace => {
                            if let Some(record) = self.records.get_mut(&key) {
                                record.size = leg.order.size;
                                record.price = leg.order.price.or(record.price);
                                record.trigger = leg.order.trigger.or(record.trigger);
                            }
                            if let Some(id) = &placed.id {
                                self.set_id(key, id);
                            }
                            if !placed.open {
                                self.set_state(key, State::Closed);
                            }
                        }
                        AmendKind::Replaces => {
                            let Some(old) = self.records.get(&key).cloned() else {
                                continue;
                            };
                            self.set_state(key, State::Closed);
                            let record = Record {
                                size: leg.order.size,
                                price: leg.order.price.or(old.price),
                                trigger: leg.order.trigger.or(old.trigger),
                                id: placed.id.clone(),
                                client_id: placed.client_id.clone().or(old.client_id.clone()),
                                state: if placed.open {
                                    State::Open
                                } else {
                                    State::Closed
                                },
                                placed: at,
                                request_id: request.clone(),
                                ..old
                            };
                            self.insert(record);
                        }
                    }
                }
                None => {
                    let record = Record {
                        bot: bot.clone(),
                        symbol: leg.order.symbol.clone(),
                        side: leg.order.side,
                        order_type: leg.order.order_type.clone(),
                        execution: leg.order.execution,
                        size: leg.order.size,
                        price: leg.order.price,
                        trigger: leg.order.trigger,
                        reduce_only: leg.order.reduce_only,
                        id: placed.and_then(|p| p.id.clone()),
                        client_id: placed
                            .and_then(|p| p.client_id.clone())
                            .or_else(|| leg.client_id.clone()),
                        list_id: placed.and_then(|p| p.list_id.clone()),
                        list_client_id: placed.and_then(|p| p.list_client_id.clone()),
                        state: match placed {
                            Some(Placed { open: true, .. }) => State::Open,
                            Some(_) => State::Closed,
                            None => State::Unconfirmed,
                        },
                        placed: at,
                        request_id: request.clone(),
                    };
                    self.insert(record);
                }
            }
        }
        for (reference, done) in &settlement.cancels {
            let done = done.unwrap_or(settlement.succeeded && settlement.cancels.len() == 1);
            if !done {
                continue;
            }
            if reference.list {
                let list_id = self
                    .find(reference)
                    .ok()
                    .and_then(|key| self.records.get(&key))
                    .and_then(|r| r.list_id.clone());
                let keys: Vec<u64> = list_id
                    .and_then(|id| self.by_list.get(&id).cloned())
                    .unwrap_or_default();
                for key in keys {
                    self.set_state(key, State::Closed);
                }
            } else if let Ok(key) = self.find(reference) {
                self.set_state(key, State::Closed);
            }
        }
        self.observe(settlement);
    }

    fn observe(&mut self, settlement: &Settlement) {
        for (symbol, id) in &settlement.closed {
            self.close_by_id(symbol.as_ref(), id);
        }
        for symbol in &settlement.closed_all {
            let keys: Vec<u64> = self
                .records
                .iter()
                .filter(|(_, r)| &r.symbol == symbol && r.state.counts_open())
                .map(|(k, _)| *k)
                .collect();
            for key in keys {
                self.set_state(key, State::Closed);
            }
            self.foreign.remove(symbol);
        }
        for listed in &settlement.listed {
            let keys: Vec<u64> = self
                .by_id
                .get(&listed.id)
                .into_iter()
                .flatten()
                .filter(|k| {
                    self.records
                        .get(k)
                        .is_some_and(|r| r.symbol == listed.symbol)
                })
                .copied()
                .collect();
            if keys.is_empty() {
                let ids = self.foreign.entry(listed.symbol.clone()).or_default();
                if listed.open {
                    ids.insert(listed.id.clone());
                } else {
                    ids.remove(&listed.id);
                }
                continue;
            }
            if !listed.open {
                for key in keys {
                    self.set_state(key, State::Closed);
                }
            }
        }
    }

    fn reconcile(&mut self, symbol: &Symbol, listed: &[Listed], asked_at: SystemTime) {
        let listed_ids: HashSet<&str> = listed
            .iter()
            .filter(|l| l.open && &l.symbol == symbol)
            .map(|l| l.id.as_str())
            .collect();
        // Unconfirmed orders the exchange lists under their client id get their id.
        for entry in listed.iter().filter(|l| l.open && &l.symbol == symbol) {
            let Some(client_id) = &entry.client_id else {
                continue;
            };
            let unconfirmed: Vec<u64> = self
                .by_client
                .get(client_id)
                .into_iter()
                .flatten()
                .filter(|k| {
                    self.records
                        .get(k)
                        .is_some_and(|r| r.state == State::Unconfirmed && &r.symbol == symbol)
                })
                .copied()
                .collect();
            for key in unconfirmed {
                self.set_id(key, &entry.id);
                self.set_state(key, State::Open);
            }
        }
        let gone: Vec<u64> = self
            .open
            .iter()
            .copied()
            .filter(|key| {
                self.records.get(key).is_some_and(|r| {
                    &r.symbol == symbol
                        && r.state.counts_open()
                        && r.placed < asked_at
                        && !r.id.as_deref().is_some_and(|id| listed_ids.contains(id))
                })
            })
            .collect();
        for key in gone {
            self.set_state(key, State::Closed);
        }
        // Listed orders keyward has no record of on this symbol, open or closed.
        let foreign: HashSet<String> = listed_ids
            .into_iter()
            .filter(|id| {
                !self.by_id.get(*id).is_some_and(|keys| {
                    keys.iter()
                        .any(|k| self.records.get(k).is_some_and(|r| &r.symbol == symbol))
                })
            })
            .map(str::to_owned)
            .collect();
        if foreign.is_empty() {
            self.foreign.remove(symbol);
        } else {
            self.foreign.insert(symbol.clone(), foreign);
        }
    }
}

/// The audit log's view of an order of a request.
pub fn leg_record(
    order: &Order,
    client_id: Option<&str>,
    amends: Option<(&OrderRef, AmendKind)>,
) -> LegRecord {
    let (qty, quote, whole_position) = match order.size {
        Size::Base(q) => (Some(q.to_string()), None, false),
        Size::Quote(q) => (None, Some(q.to_string()), false),
        Size::WholePosition => (None, None, true),
    };
    LegRecord {
        symbol: order.symbol.to_string(),
        side: order.side.to_string(),
        order_type: order.order_type.to_string(),
        execution: execution_name(order.execution).to_owned(),
        qty,
        quote,
        whole_position,
        price: order.price.map(|p| p.to_string()),
        trigger: order.trigger.map(|p| p.to_string()),
        reduce_only: order.reduce_only,
        client_id: client_id.map(str::to_owned),
        amends: amends.map(|(r, _)| ref_record(r)),
        replaces: amends.is_some_and(|(_, kind)| kind == AmendKind::Replaces),
    }
}

/// The audit log's view of an order a request names.
pub fn ref_record(reference: &OrderRef) -> RefRecord {
    RefRecord {
        symbol: reference.symbol.as_ref().map(Symbol::to_string),
        id: reference.id.clone(),
        client_id: reference.client_id.clone(),
        list: reference.list,
    }
}

/// The audit log's view of what became of an order.
pub fn result_record(result: &LegResult) -> ResultRecord {
    match result {
        LegResult::Placed(placed) => ResultRecord {
            result: "placed".to_owned(),
            id: placed.id.clone(),
            client_id: placed.client_id.clone(),
            list_id: placed.list_id.clone(),
            list_client_id: placed.list_client_id.clone(),
            open: placed.open,
        },
        LegResult::Rejected => ResultRecord {
            result: "rejected".to_owned(),
            id: None,
            client_id: None,
            list_id: None,
            list_client_id: None,
            open: false,
        },
        LegResult::Unknown => ResultRecord {
            result: "unknown".to_owned(),
            id: None,
            client_id: None,
            list_id: None,
            list_client_id: None,
            open: false,
        },
    }
}

fn execution_name(execution: Execution) -> &'static str {
    match execution {
        Execution::Limit => "limit",
        Execution::Market => "market",
        Execution::StopMarket => "stop_market",
        Execution::StopLimit => "stop_limit",
        Execution::TrailingMarket => "trailing",
    }
}

fn execution_of(name: &str) -> Option<Execution> {
    Some(match name {
        "limit" => Execution::Limit,
        "market" => Execution::Market,
        "stop_market" => Execution::StopMarket,
        "stop_limit" => Execution::StopLimit,
        "trailing" => Execution::TrailingMarket,
        _ => return None,
    })
}

/// A recorded size: in base units, in quote units, or the whole position, exactly
/// one of them.
fn size_of(qty: Option<&str>, quote: Option<&str>, whole_position: bool) -> Option<Size> {
    Some(match (qty, quote, whole_position) {
        (Some(q), None, false) => Size::Base(q.parse().ok()?),
        (None, Some(q), false) => Size::Quote(q.parse().ok()?),
        (None, None, true) => Size::WholePosition,
        _ => return None,
    })
}

/// A recorded price that may be absent: `None` if it is there and does not read.
fn optional_decimal(text: Option<&str>) -> Option<Option<Decimal>> {
    match text {
        Some(t) => t.parse().ok().map(Some),
        None => Some(None),
    }
}

/// Reads back a recorded order (for the rebuild at start).
pub fn order_of(leg: &LegRecord) -> Option<Order> {
    let size = size_of(leg.qty.as_deref(), leg.quote.as_deref(), leg.whole_position)?;
    Some(Order {
        symbol: Symbol::new(&leg.symbol).ok()?,
        side: match leg.side.as_str() {
            "BUY" => Side::Buy,
            "SELL" => Side::Sell,
            _ => return None,
        },
        order_type: Arc::from(leg.order_type.as_str()),
        execution: execution_of(&leg.execution)?,
        size,
        price: optional_decimal(leg.price.as_deref())?,
        trigger: optional_decimal(leg.trigger.as_deref())?,
        amend: leg.amends.is_some(),
        margin: false,
        reduce_only: leg.reduce_only,
    })
}

/// A settlement read back from the audit log: the request's legs and cancels with
/// the outcome's results (`None`: no outcome was recorded, everything unknown).
fn settlement_of(
    legs: &[LegRecord],
    cancels: &[RefRecord],
    results: Option<&[ResultRecord]>,
    cancelled: Option<&[bool]>,
    (closed, closed_all): (&[ClosedRecord], &[String]),
    succeeded: bool,
) -> Settlement {
    let legs = legs
        .iter()
        .enumerate()
        .filter_map(|(index, leg)| {
            let order = order_of(leg)?;
            let amends = match &leg.amends {
                Some(reference) => Some((
                    order_ref_of(reference)?,
                    if leg.replaces {
                        AmendKind::Replaces
                    } else {
                        AmendKind::InPlace
                    },
                )),
                None => None,
            };
            Some(Leg {
                order,
                client_id: leg.client_id.clone(),
                amends,
                result: results
                    .and_then(|r| r.get(index))
                    .map_or(LegResult::Unknown, leg_result_of),
            })
        })
        .collect();
    let cancels = cancels
        .iter()
        .enumerate()
        .filter_map(|(index, reference)| {
            let done = cancelled.map(|c| c.get(index).copied().unwrap_or(false));
            Some((order_ref_of(reference)?, done))
        })
        .collect();
    Settlement {
        legs,
        cancels,
        succeeded,
        closed: closed
            .iter()
            .map(|c| {
                (
                    c.symbol.as_deref().and_then(|s| Symbol::new(s).ok()),
                    c.id.clone(),
                )
            })
            .collect(),
        closed_all: closed_all
            .iter()
            .filter_map(|s| Symbol::new(s).ok())
            .collect(),
        listed: Vec::new(),
    }
}

fn parse_time(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Reads back a recorded order reference.
pub fn order_ref_of(record: &RefRecord) -> Option<OrderRef> {
    Some(OrderRef {
        symbol: match &record.symbol {
            Some(s) => Some(Symbol::new(s).ok()?),
            None => None,
        },
        id: record.id.clone(),
        client_id: record.client_id.clone(),
        list: record.list,
    })
}

/// Reads back a recorded result.
pub fn leg_result_of(record: &ResultRecord) -> LegResult {
    match record.result.as_str() {
        "placed" => LegResult::Placed(Placed {
            id: record.id.clone(),
            client_id: record.client_id.clone(),
            list_id: record.list_id.clone(),
            list_client_id: record.list_client_id.clone(),
            open: record.open,
        }),
        "rejected" => LegResult::Rejected,
        _ => LegResult::Unknown,
    }
}

#[cfg(test)]
mod tests;
