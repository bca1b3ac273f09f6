//! The state keyward replicas of one exchange account share through Redis
//! (`[state] backend = "redis://..."`): the bots' and accounts' rate limits and
//! rolling budgets, checked and spent together by one script in one round trip (all
//! or none), their refunds, and the kill switch.
//!
//! It fails closed: a request that must spend a shared limit and cannot reach Redis
//! within `timeout_ms` is refused `state_unavailable`, and nothing is spent twice
//! across an outage, because the spend and its check are one atomic script on the
//! server. The connection manager reconnects by itself; a probe every second keeps
//! readiness true to what the requests see.

mod freeze;
mod journal;
mod script;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use keyward_policy::{Amount, BudgetLimits, BudgetScope, Denied, Rate, RateScope, Scope, Usage};
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use self::script::{Call, Script};

use crate::config::{RedisSettings, WhenUnavailable};

pub use freeze::watch_freeze;
pub use journal::HOLD_MARGIN;

/// What is left of a refund receipt after this long is kept: an exchange answers
/// within `upstream_timeout_ms` (at most two minutes), as the local ledger assumes.
const RECEIPT_SECONDS: u64 = 600;

/// How often readiness is refreshed by a round trip of its own.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Millionths of the quote currency per [`Amount`] unit (10^-18): notional is an
/// integer of millionths in Redis, which a Lua number holds exactly up to 2^53.
const UNITS_PER_MICRO: u128 = 1_000_000_000_000;
const LARGEST_EXACT: u64 = (1 << 53) - 1;

/// The connection to the shared state.
pub struct Shared {
    manager: ConnectionManager,
    client: redis::Client,
    namespace: String,
    /// Names this process's refund receipts apart from other replicas'.
    instance: String,
    timeout: Duration,
    reads_when_unavailable: WhenUnavailable,
    address_allowances: crate::config::AddressAllowances,
    available: AtomicBool,
    admit: Script,
    refund: Script,
    nonce: Script,
    usage: Script,
    pause: Script,
    settle: Script,
    in_flight: Script,
    release_ids: Script,
    address: Script,
    /// Numbers this replica's uses of the per-address allowances apart.
    address_uses: AtomicU64,
    /// Settlements on their way to the journal.
    settling: journal::Queue,
    /// How far each account's journal of settled orders has been applied here.
    applied: journal::Applied,
    /// Freezes made here that Redis has not confirmed yet.
    pending: freeze::Pending,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connection info: it holds the password.
        f.debug_struct("Shared")
            .field("namespace", &self.namespace)
            .field("available", &self.is_available())
            .finish_non_exhaustive()
    }
}

/// Why the shared state could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SharedSetupError {
    /// The password file could not be read.
    #[error("cannot read the Redis password file {path}: {source}")]
    Password {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CA file could not be read.
    #[error("cannot read the Redis CA file {path}: {source}")]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The client could not be built from the settings.
    #[error("the Redis backend settings are unusable: {0}")]
    Client(String),
}

/// A rate limit one request takes cells from.
#[derive(Debug, Clone, Copy)]
pub struct RateCharge {
    /// Whose.
    pub scope: RateScope,
    /// The rate.
    pub rate: Rate,
    /// Cells taken (one per request, or one per order).
    pub cells: u32,
}

/// The rolling budgets one request spends.
#[derive(Debug, Clone)]
pub struct BudgetCharge<'a> {
    /// The request, for its refund receipt.
    pub request_id: &'a str,
    /// The bot's limits and its account's.
    pub limits: [(BudgetScope, BudgetLimits); 2],
    /// Its orders' notional bound.
    pub notional: Amount,
    /// Its orders.
    pub orders: u32,
    /// False in shadow mode: spent anyway, the refusal returned as what would have been.
    pub enforce: bool,
}

/// Everything one request takes from the shared state.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    /// The account (every key of a request is in its hash slot).
    pub account: &'a str,
    /// The request: what it holds in the shared state is held in its name.
    pub request_id: &'a str,
    /// The bot, if any.
    pub bot: Option<&'a str>,
    /// The bot JWT the request was authenticated with: refused if any replica saw
    /// it before.
    pub once: Option<crate::botjwt::Seen>,
    /// The client order ids of the request's new orders, held (and kept for the
    /// window once placed) for every replica; none when the account's window is 0.
    pub client_ids: Vec<String>,
    /// The account's `client_order_id_window`.
    pub client_id_window: Duration,
    /// Rate limits.
    pub rates: Vec<RateCharge>,
    /// Budgets, for a request that places orders with a bounded notional.
    pub budget: Option<BudgetCharge<'a>>,
    /// The exchange's counters the request adds to, for a request that is sent.
    pub exchange: Vec<ExchangeCount>,
    /// The open orders it places, under an open-order limit.
    pub open: Option<OpenCharge<'a>>,
}

/// A bot's request that places, amends or cancels orders: marked in flight for
/// every replica until the exchange's answer is in the journal (a replica judging
/// one of the bot's orders waits for it); its new orders, under `max_open_orders`,
/// counted with every replica's open orders and held until then.
#[derive(Debug, Clone, Copy)]
pub struct OpenCharge<'a> {
    /// The request, whose hold this is.
    pub request_id: &'a str,
    /// The bot.
    pub bot: &'a str,
    /// Its new orders.
    pub new: u32,
    /// The bot's `max_open_orders` and its account's (none: only the mark).
    pub limits: (Option<u32>, Option<u32>),
    /// This replica's record of the orders.
    pub orders: &'a crate::orders::OrderBook,
    /// How long the hold lasts if this replica dies before the exchange answers.
    pub hold: Duration,
}

impl OpenCharge<'_> {
    /// Whether its new orders are counted against a limit (or only marked).
    fn counted(&self) -> bool {
        self.new > 0 && (self.limits.0.is_some() || self.limits.1.is_some())
    }
}

/// One of the exchange's fixed-window counters (request weight, orders) that a
/// request adds to: every replica's sending counts together against its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeCount {
    /// What is counted.
    pub kind: keyward_venues::UsageKind,
    /// The exchange's window.
    pub window: Duration,
    /// The most all replicas send in one window: the exchange's limit less the
    /// account's headroom.
    pub ceiling: u64,
    /// What the exchange last reported to this replica for the current window.
    pub reported: u64,
    /// The bot's share of the ceiling, if a share applies, and its percentage.
    pub share: Option<(u64, u8)>,
    /// What the request adds.
    pub amount: u64,
}

/// Why the shared state refused a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A limit would be passed.
    Denied(Denied),
    /// Redis did not answer in time.
    Unavailable,
    /// A client order id that a replica holds or placed within the window.
    Duplicate(String),
    /// The request would take one of the exchange's counters, as every replica
    /// has sent, within the account's headroom (or the bot past its share).
    Exchange(crate::error::Rejection),
    /// The exchange answered a replica 429 or 418: every replica waits.
    Paused {
        /// How much longer.
        retry_after: Duration,
        /// A ban (418), not a rate limit.
        banned: bool,
    },
}

/// A budget window as sent to the script.
struct WindowArg {
    scope: BudgetScope,
    notional: bool,
    length: Duration,
    limit: u64,
    amount: u64,
    rate: Option<Rate>,
    limit_amount: Option<Amount>,
}

impl Shared {
    /// A client for `settings`. Nothing is connected yet: keyward starts while
    /// Redis is down and reports itself not ready until it answers.
    pub fn connect(settings: &RedisSettings) -> Result<Arc<Self>, SharedSetupError> {
        let mut info: redis::ConnectionInfo = settings
            .url
            .as_str()
            .parse()
            .map_err(|e: redis::RedisError| SharedSetupError::Client(e.to_string()))?;
        // No `CLIENT SETINFO` at connection: one command fewer for an ACL user
        // limited to what keyward needs (docs/shared-state.md).
        let mut redis_settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(user) = &settings.username {
            redis_settings = redis_settings.set_username(user.clone());
        }
        if let Some(path) = &settings.password_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| SharedSetupError::Password {
                    path: path.clone(),
                    source,
                })?;
            let password = text.lines().next().unwrap_or_default().to_owned();
            redis_settings = redis_settings.set_password(password);
        }
        info = info.set_redis_settings(redis_settings);
        // Nagle's algorithm would hold a request written while another is still
        // unacknowledged until the server's delayed ACK (up to 40 ms on Linux): the
        // connection carries every request of the replica. A connection whose data
        // goes unacknowledged (a partition that drops packets silently) is given up
        // by the kernel after a few deadlines, so the manager reconnects.
        let tcp = redis::io::tcp::TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(
                redis::io::tcp::socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(10))
                    .with_interval(Duration::from_secs(5)),
            )
            .set_user_timeout((settings.timeout * 4).max(Duration::from_secs(1)));
        info = info.set_tcp_settings(tcp);
        let client = match &settings.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| SharedSetupError::Ca {
                    path: path.clone(),
                    source,
                })?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| SharedSetupError::Client(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| SharedSetupError::Client(e.to_string()))?;
        let mut instance = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut instance);
        Ok(Arc::new(Self {
            manager,
            client,
            namespace: settings.namespace.clone(),
            instance: keyward_venues::hex(&instance),
            timeout: settings.timeout,
            reads_when_unavailable: settings.reads_when_unavailable,
            address_allowances: settings.address_allowances,
            available: AtomicBool::new(false),
            admit: Script::new(include_str!("admit.lua")),
            refund: Script::new(include_str!("refund.lua")),
            nonce: Script::new(include_str!("nonce.lua")),
            usage: Script::new(include_str!("usage.lua")),
            pause: Script::new(include_str!("pause.lua")),
            settle: Script::new(include_str!("settle.lua")),
            in_flight: Script::new(include_str!("in_flight.lua")),
            release_ids: Script::new(include_str!("release_ids.lua")),
            address: Script::new(include_str!("address.lua")),
            address_uses: AtomicU64::new(0),
            settling: journal::Queue::default(),
            applied: journal::Applied::default(),
            pending: freeze::Pending::default(),
        }))
    }

    /// True while the last round trip succeeded.
    pub fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Whether the venues' WebSocket allowances per address are counted here for
    /// every replica together.
    pub fn shares_address_allowances(&self) -> bool {
        self.address_allowances == crate::config::AddressAllowances::Shared
    }

    /// What reads and cancels do while Redis is unavailable.
    pub fn reads_when_unavailable(&self) -> WhenUnavailable {
        self.reads_when_unavailable
    }

    /// Runs one command or script within the deadline, noting whether Redis answered.
    async fn round_trip<T, F>(&self, call: F) -> Result<T, Refusal>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, call).await.ok() {
            Some(Ok(value)) => {
                self.mark(true, "");
                Ok(value)
            }
            Some(Err(error)) => {
                self.mark(false, why_failed(&error));
                // The error names the command, never its arguments or the password.
                tracing::debug!(kind = ?error.kind(), "shared state round trip failed");
                Err(Refusal::Unavailable)
            }
            None => {
                self.mark(false, "no answer within timeout_ms");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// One command's round trip.
    async fn query<T>(&self, command: redis::Cmd) -> Result<T, Refusal>
    where
        T: redis::FromRedisValue,
    {
        let mut manager = self.manager.clone();
        self.round_trip(async move { command.query_async(&mut manager).await })
            .await
    }

    /// One pipeline's round trip.
    async fn query_pipeline<T>(&self, pipe: redis::Pipeline) -> Result<T, Refusal>
    where
        T: redis::FromRedisValue,
    {
        let mut manager = self.manager.clone();
        self.round_trip(async move { pipe.query_async(&mut manager).await })
            .await
    }

    /// One script call's round trip.
    async fn run<T>(&self, script: &Script, call: Call) -> Result<T, Refusal>
    where
        T: redis::FromRedisValue,
    {
        self.round_trip(script.run(call, self.manager.clone()))
            .await
    }

    /// Notes whether Redis answered, saying so when that changes; `why` a failure,
    /// in words that name no key, argument or password.
    fn mark(&self, answered: bool, why: &'static str) {
        let was = self.available.swap(answered, Ordering::Relaxed);
        if was != answered {
            if answered {
                tracing::info!("shared state (Redis) reachable");
            } else {
                tracing::error!(
                    why,
                    "ALERT: shared state (Redis) unreachable; requests that spend shared limits are refused"
                );
            }
        }
    }

    /// Checks and spends every limit of `charge` together, or none. `Ok(Some(_))`:
    /// spent in shadow mode, and what enforce mode would have refused.
    pub async fn admit(self: &Arc<Self>, charge: &Charge<'_>) -> Result<Option<Denied>, Refusal> {
        let tag = self.tag(charge.account);
        let windows = charge
            .budget
            .as_ref()
            .map(|budget| windows_of(charge.bot, budget))
            .unwrap_or_default();
        // A request with nothing to spend still makes the round trip: that Redis
        // answers is what lets it go on (fail closed), whatever this replica last
        // heard.
        let rates: Vec<&RateCharge> = charge.rates.iter().filter(|r| r.cells > 0).collect();
        let client_ids: &[String] = if charge.client_id_window.is_zero() {
            &[]
        } else {
            &charge.client_ids
        };
        let mut invocation = Call::default();
        let mut opening = None;
        invocation.key(format!("{tag}:pause"));
        let once_expiry = match &charge.once {
            Some(seen) => {
                invocation.key(format!("{tag}:jwt:{}", keyward_venues::hex(&seen.digest)));
                seen.expires
            }
            None => {
                invocation.key(format!("{tag}:jwt:-"));
                0
            }
        };
        for client_id in client_ids {
            invocation.key(client_id_key(&tag, client_id));
        }
        for rate in &rates {
            invocation.key(rate_key(&tag, charge.bot, rate.scope));
        }
        for window in &windows {
            let key = budget_key(&tag, charge.bot, window.scope, window.notional);
            invocation.key(format!("{key}:buckets"));
            invocation.key(format!("{key}:order"));
        }
        // The receipt key is always named, so that the exchange counters' keys
        // have a fixed place; only a request that spends a budget writes it.
        match &charge.budget {
            Some(budget) => invocation.key(format!(
                "{tag}:receipt:{}:{}",
                self.instance, budget.request_id
            )),
            None => invocation.key(format!("{tag}:receipt:-")),
        };
        for count in &charge.exchange {
            let key = exchange_key(&tag, count);
            let own = match (count.share, charge.bot) {
                (Some(_), Some(bot)) => format!("{key}:bot:{bot}"),
                _ => format!("{key}:bot:-"),
            };
            invocation.key(key).key(own);
        }
        if let Some(open) = &charge.open {
            invocation.merge_keys(self.opening_keys(charge.account));
            invocation.key(self.journal_key(charge.account));
            if open.counted() {
                // The record's count and the journal entry it reflects, read together.
                let ((bot_open, account_open), applied) = self.applied.with(charge.account, || {
                    open.orders.settled_open_orders(charge.account, open.bot)
                });
                opening = Some((bot_open, account_open, applied));
            }
        }
        let enforce = charge.budget.as_ref().is_none_or(|b| b.enforce);
        invocation
            .arg(rates.len())
            .arg(windows.len())
            .arg(if enforce { "1" } else { "0" })
            .arg(RECEIPT_SECONDS)
            .arg(once_expiry)
            .arg(client_ids.len())
            .arg(
                u64::try_from(charge.client_id_window.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(charge.exchange.len())
            .arg(self.member(charge.request_id));
        for rate in &rates {
            let count = u64::from(rate.rate.count().get());
            let per_cell = (micros(rate.rate.period()) / count).max(1);
            // governor's tolerance: the first cell of a burst is not in it.
            let tolerance = per_cell * (count - 1);
            invocation.arg(per_cell).arg(tolerance).arg(rate.cells);
        }
        for window in &windows {
            invocation
                .arg(micros(window.length))
                .arg(window.limit)
                .arg(window.amount)
                .arg(if window.notional { "n" } else { "o" });
        }
        for count in &charge.exchange {
            invocation
                .arg(u64::try_from(count.window.as_millis()).unwrap_or(LARGEST_EXACT))
                .arg(count.ceiling)
                .arg(count.reported)
                .arg(count.share.map_or(0, |(ceiling, _)| ceiling.max(1)))
                .arg(count.amount);
        }
        match (&charge.open, opening) {
            (Some(open), Some((bot_open, account_open, applied))) => {
                invocation
                    .arg(1)
                    .arg(self.member(open.request_id))
                    .arg(open.bot)
                    .arg(open.new)
                    .arg(open.limits.0.unwrap_or(0))
                    .arg(open.limits.1.unwrap_or(0))
                    .arg(bot_open)
                    .arg(account_open)
                    .arg(applied)
                    .arg(&self.instance)
                    .arg(u64::try_from(open.hold.as_millis()).unwrap_or(LARGEST_EXACT));
            }
            (Some(open), None) => {
                invocation
                    .arg(2)
                    .arg(self.member(open.request_id))
                    .arg(open.bot)
                    .arg(u64::try_from(open.hold.as_millis()).unwrap_or(LARGEST_EXACT));
            }
            (None, _) => {
                invocation.arg(0);
            }
        }
        let answer: Result<Vec<Value>, Refusal> = self.run(&self.admit, invocation).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(refusal) => {
                // The script may have run and only its answer come late: the request
                // is refused, so what it may have spent is given back (the refund
                // follows the script on the same connection, and finds nothing if
                // the script never ran).
                if let Some(budget) = &charge.budget {
                    self.refund(charge.account, budget.request_id, None);
                }
                // Only the ids the script took for this request, if it ran: one
                // it found taken is another request's.
                self.release_client_ids(charge.account, charge.request_id, client_ids.to_vec());
                if let Some(open) = &charge.open {
                    self.release_open(charge.account, open.request_id);
                }
                return Err(refusal);
            }
        };
        self.verdict(&answer, &rates, &windows, charge)
    }

    /// Reads the script's answer into keyward's refusals.
    fn verdict(
        &self,
        answer: &[Value],
        rates: &[&RateCharge],
        windows: &[WindowArg],
        charge: &Charge<'_>,
    ) -> Result<Option<Denied>, Refusal> {
        let text = |value: Option<&Value>| match value {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(Value::SimpleString(text)) => text.clone(),
            Some(Value::Int(n)) => n.to_string(),
            _ => String::new(),
        };
        let number = |value: Option<&Value>| text(value).parse::<u64>().ok();
        let index = |value: Option<&Value>| {
            number(value)
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| n.checked_sub(1))
        };
        let budget_denial = |j: usize, used: u64| {
            let window = windows.get(j)?;
            let adding = charge.budget.as_ref()?.notional;
            Some(if window.notional {
                Denied::DailyNotionalExceeded {
                    scope: window.scope,
                    used: from_micros(used),
                    adding,
                    limit: window.limit_amount?,
                }
            } else {
                Denied::MaxOrdersExceeded {
                    scope: window.scope,
                    used,
                    limit: window.rate?,
                }
            })
        };
        let malformed = || {
            tracing::error!("the shared state's script answered in an unknown shape");
            Refusal::Unavailable
        };
        match text(answer.first()).as_str() {
            "ok" if answer.len() == 1 => Ok(None),
            "ok" => {
                let (j, used) = (index(answer.get(1)), number(answer.get(2)));
                let would = j.zip(used).and_then(|(j, used)| budget_denial(j, used));
                would.map(Some).ok_or_else(malformed)
            }
            verdict @ ("open" | "ok-open") => {
                let scope = match number(answer.get(1)) {
                    Some(1) => BudgetScope::Bot,
                    Some(2) => BudgetScope::Account,
                    _ => return Err(malformed()),
                };
                let (open, limit) = (number(answer.get(2)), number(answer.get(3)));
                let limit = limit.and_then(|l| u32::try_from(l).ok());
                let (Some(open), Some(limit)) = (open, limit) else {
                    return Err(malformed());
                };
                let denied = Denied::MaxOpenOrdersExceeded { scope, open, limit };
                if verdict == "open" {
                    Err(Refusal::Denied(denied))
                } else {
                    Ok(Some(denied))
                }
            }
            "behind" => {
                tracing::warn!(
                    "this replica has too much of the journal of settled orders left to apply; orders wait until it has"
                );
                Err(Refusal::Unavailable)
            }
            "replay" => Err(Refusal::Denied(Denied::AuthInvalid)),
            "duplicate" => {
                let id = index(answer.get(1)).and_then(|c| charge.client_ids.get(c));
                let id = id.ok_or_else(malformed)?;
                Err(Refusal::Duplicate(id.clone()))
            }
            "paused" => {
                let wait = number(answer.get(1)).ok_or_else(malformed)?;
                Err(Refusal::Paused {
                    retry_after: Duration::from_millis(wait),
                    banned: text(answer.get(2)) == "banned",
                })
            }
            "rate" => {
                let rate = index(answer.get(1)).and_then(|i| rates.get(i));
                let wait = number(answer.get(2));
                match (rate, wait) {
                    (Some(rate), Some(wait)) => Err(Refusal::Denied(Denied::RateLimited {
                        retry_after: Duration::from_micros(wait),
                        scope: rate.scope,
                    })),
                    _ => Err(malformed()),
                }
            }
            verdict @ ("exchange" | "share") => {
                let count = index(answer.get(1)).and_then(|e| charge.exchange.get(e));
                let wait = number(answer.get(2)).map(Duration::from_millis);
                let (Some(count), Some(retry_after)) = (count, wait) else {
                    return Err(malformed());
                };
                Err(Refusal::Exchange(match (verdict, count.share) {
                    ("share", Some((_, share))) => {
                        crate::error::Rejection::ExchangeShareUsed { retry_after, share }
                    }
                    _ => crate::error::Rejection::ExchangeLimitNear { retry_after },
                }))
            }
            "budget" => {
                let (j, used) = (index(answer.get(1)), number(answer.get(2)));
                j.zip(used)
                    .and_then(|(j, used)| budget_denial(j, used))
                    .map_or_else(|| Err(malformed()), |d| Err(Refusal::Denied(d)))
            }
            _ => Err(malformed()),
        }
    }

    /// Gives back what request `request_id` spent: everything (`part` none, it was
    /// never sent) or the notional and orders the exchange's answer proves were
    /// not placed. Runs in the background; a refund that cannot reach Redis is
    /// lost, which leaves the budgets spent (never the other way).
    pub fn refund(self: &Arc<Self>, account: &str, request_id: &str, part: Option<(Amount, u32)>) {
        let key = format!(
            "{}:{{{account}}}:receipt:{}:{request_id}",
            self.namespace, self.instance
        );
        let (notional, orders) = match part {
            Some((notional, orders)) => (floor_micros(notional), u64::from(orders)),
            None => (LARGEST_EXACT, LARGEST_EXACT),
        };
        let mut call = Call::default();
        call.key(key).arg(notional).arg(orders);
        self.in_background(
            Background::Refund(call),
            "a budget refund could not reach the shared state; the budget stays spent",
        );
    }

    /// Spends a bot JWT for every replica: refused if any replica saw it before
    /// (the replay key the admission script writes for REST requests).
    pub async fn spend_once(
        &self,
        account: &str,
        seen: crate::botjwt::Seen,
    ) -> Result<(), Refusal> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut command = redis::cmd("SET");
        command
            .arg(format!(
                "{}:jwt:{}",
                self.tag(account),
                keyward_venues::hex(&seen.digest)
            ))
            .arg("1")
            .arg("NX")
            .arg("EXAT")
            .arg(seen.expires.max(now + 1));
        let set: Option<String> = self.query(command).await?;
        set.map(|_| ()).ok_or(Refusal::Denied(Denied::AuthInvalid))
    }

    /// The next nonce of `account`'s key for every replica: above any drawn before
    /// and at least `candidate` (this replica's own).
    pub async fn next_nonce(&self, account: &str, candidate: u64) -> Result<u64, Refusal> {
        let mut call = Call::default();
        call.key(format!("{}:{{{account}}}:nonce", self.namespace))
            .arg(candidate);
        let text: String = self.run(&self.nonce, call).await?;
        text.parse().map_err(|_| Refusal::Unavailable)
    }

    /// Takes one use of each of `venue`'s allowances in `uses` (what is counted,
    /// and the allowance) for every replica, or of none: for each, `None` if it had
    /// room, else how long until it has; the uses were taken only if every one had
    /// room. The replicas are taken to share one address, as a NAT gateway makes
    /// them; replicas that do not are held to less than they could use, never to
    /// more.
    pub async fn take_per_address(
        &self,
        venue: &str,
        uses: &[(&str, keyward_venues::Allowance)],
    ) -> Result<Vec<Option<Duration>>, Refusal> {
        let mut call = Call::default();
        let number = self.address_uses.fetch_add(1, Ordering::Relaxed);
        call.arg(format!("{}:{number}", self.instance));
        for (what, allowance) in uses {
            call.key(format!("{}:{{address}}:{venue}:{what}", self.namespace))
                .arg(u64::try_from(allowance.window.as_millis()).unwrap_or(u64::MAX))
                .arg(allowance.count);
        }
        let waits: Vec<u64> = self.run(&self.address, call).await?;
        if waits.len() != uses.len() {
            return Err(Refusal::Unavailable);
        }
        Ok(waits
            .into_iter()
            .map(|millis| (millis > 0).then(|| Duration::from_millis(millis)))
            .collect())
    }

    /// What every budget of `account` (its own and its bots') has spent now, in one
    /// round trip: for metrics and `keyward explain`, which cannot wait on Redis.
    pub async fn usage(
        &self,
        account: &str,
        scopes: &[(Scope, BudgetLimits)],
    ) -> Result<Vec<(Scope, Usage, Usage)>, Refusal> {
        let tag = self.tag(account);
        let mut call = Call::default();
        let mut read = Vec::new();
        for (scope, limits) in scopes {
            let (kind, bot) = match scope {
                Scope::Bot(bot) => (BudgetScope::Bot, Some(&**bot)),
                Scope::Account(_) => (BudgetScope::Account, None),
            };
            let windows = [
                (true, limits.daily_notional.map(|_| keyward_policy::DAY)),
                (false, limits.max_orders.map(|rate| rate.period())),
            ];
            for (notional, length) in windows {
                let Some(length) = length else { continue };
                let key = budget_key(&tag, bot, kind, notional);
                call.key(format!("{key}:buckets"))
                    .key(format!("{key}:order"))
                    .arg(micros(length));
                read.push((scope, notional));
            }
        }
        if read.is_empty() {
            return Ok(Vec::new());
        }
        let totals: Vec<String> = self.run(&self.usage, call).await?;
        let mut usage: Vec<(Scope, Usage, Usage)> = Vec::new();
        for ((scope, notional), total) in read.into_iter().zip(totals) {
            let total: u64 = total.parse().unwrap_or(LARGEST_EXACT);
            if usage.last().is_none_or(|(last, _, _)| last != scope) {
                usage.push((scope.clone(), Usage::default(), Usage::default()));
            }
            if let Some((_, day, window)) = usage.last_mut() {
                if notional {
                    day.notional = from_micros(total);
                } else {
                    window.orders = total;
                }
            }
        }
        Ok(usage)
    }

    /// Pauses `account` on every replica for `retry_after`, after the exchange
    /// answered this one 429 (or 418: `banned`). In the background: this replica has
    /// paused itself already.
    pub fn pause(self: &Arc<Self>, account: &str, retry_after: Duration, banned: bool) {
        let mut call = Call::default();
        call.key(format!("{}:{{{account}}}:pause", self.namespace))
            .arg(
                u64::try_from(retry_after.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(if banned { "banned" } else { "limited" });
        self.in_background(
            Background::Pause(call),
            "the exchange's back-off could not reach the shared state; the other replicas learn of it from the exchange",
        );
    }

    /// Gives back the open-order room held for a request that was never sent, in
    /// the background.
    pub fn release_open(self: &Arc<Self>, account: &str, request_id: &str) {
        let shared = self.clone();
        let (account, request_id) = (account.to_owned(), request_id.to_owned());
        tokio::spawn(async move { shared.settle_orders(&account, &request_id, None).await });
    }

    /// Frees the client order ids request `request_id` holds that placed nothing
    /// (it was never sent, or the exchange refused those orders), in the
    /// background. An id in `client_ids` that another request holds stays held.
    pub fn release_client_ids(
        self: &Arc<Self>,
        account: &str,
        request_id: &str,
        client_ids: Vec<String>,
    ) {
        if client_ids.is_empty() {
            return;
        }
        let tag = self.tag(account);
        let mut call = Call::default();
        for id in &client_ids {
            call.key(client_id_key(&tag, id));
        }
        call.arg(self.member(request_id));
        self.in_background(
            Background::ReleaseIds(call),
            "client order ids could not be freed in the shared state; they stay taken for their window",
        );
    }

    /// Sends a write nobody waits for (a refund, a pause, freed client ids) on the
    /// request's connection, so it follows what the request sent; `lost` is logged
    /// if Redis cannot be reached, and the state stays on its safe side.
    fn in_background(self: &Arc<Self>, write: Background, lost: &'static str) {
        let shared = self.clone();
        tokio::spawn(async move {
            let done: Result<Value, Refusal> = match write {
                Background::Refund(call) => shared.run(&shared.refund, call).await,
                Background::Pause(call) => shared.run(&shared.pause, call).await,
                Background::ReleaseIds(call) => shared.run(&shared.release_ids, call).await,
            };
            if done.is_err() {
                tracing::warn!("{lost}");
            }
        });
    }

    /// One round trip, for readiness.
    pub async fn probe(&self) -> bool {
        let pong: Result<String, Refusal> = self.query(redis::cmd("PING")).await;
        pong.is_ok()
    }

    /// Probes Redis every second for as long as keyward runs.
    pub async fn keep_probing(self: Arc<Self>) {
        loop {
            self.probe().await;
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// The prefix of every key of `account`: the namespace, then the account as the
    /// hash tag, so that one request's keys are in one cluster slot.
    fn tag(&self, account: &str) -> String {
        format!("{}:{{{account}}}", self.namespace)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.namespace)
    }
}

/// A write sent in the background.
enum Background {
    /// A refund by receipt.
    Refund(Call),
    /// An exchange pause.
    Pause(Call),
    /// Client order ids freed, by their holder.
    ReleaseIds(Call),
}

/// The budget windows a charge spends from: for the bot and its account, a day of
/// notional and the `max_orders` window, each where a limit is set.
fn windows_of(bot: Option<&str>, budget: &BudgetCharge<'_>) -> Vec<WindowArg> {
    let mut windows = Vec::new();
    for (scope, limits) in &budget.limits {
        if *scope == BudgetScope::Bot && bot.is_none() {
            continue;
        }
        if let Some(limit) = limits.daily_notional {
            windows.push(WindowArg {
                scope: *scope,
                notional: true,
                length: keyward_policy::DAY,
                limit: floor_micros(limit),
                amount: ceil_micros(budget.notional),
                rate: None,
                limit_amount: Some(limit),
            });
        }
        if let Some(rate) = limits.max_orders {
            windows.push(WindowArg {
                scope: *scope,
                notional: false,
                length: rate.period(),
                limit: u64::from(rate.count().get()),
                amount: u64::from(budget.orders),
                rate: Some(rate),
                limit_amount: None,
            });
        }
    }
    windows
}

/// Why a round trip failed, from Redis's error: its text is not logged, since an
/// error may quote a command's arguments.
fn why_failed(error: &redis::RedisError) -> &'static str {
    match (error.code(), error.detail()) {
        // A script calling a command the ACL user lacks (a keyward newer than the
        // ACL it was given) answers a plain ERR that says so.
        (Some("NOPERM"), _) => {
            "the Redis user may not run a command keyward sends; give it the commands docs/shared-state.md lists"
        }
        (_, Some(detail)) if detail.contains("can't run this command") => {
            "the Redis user may not run a command keyward's scripts call; give it the commands docs/shared-state.md lists"
        }
        (Some(_), _) => "Redis refused a command",
        (None, _) if error.is_timeout() => "no answer within timeout_ms",
        (None, _) => "no connection",
    }
}

/// An exchange counter's key: the account's, whatever its host (every replica of
/// the account counts what it sends together).
fn exchange_key(tag: &str, count: &ExchangeCount) -> String {
    let kind = match count.kind {
        keyward_venues::UsageKind::Weight => "weight",
        keyward_venues::UsageKind::Orders => "orders",
    };
    format!("{tag}:exchange:{kind}:{}", count.window.as_millis())
}

/// A client order id's key: hex, since bots choose the ids.
fn client_id_key(tag: &str, client_id: &str) -> String {
    format!(
        "{tag}:client-id:{}",
        keyward_venues::hex(client_id.as_bytes())
    )
}

fn rate_key(tag: &str, bot: Option<&str>, scope: RateScope) -> String {
    match (scope, bot) {
        (RateScope::Bot, Some(bot)) => format!("{tag}:rate:bot:{bot}"),
        (RateScope::BotOrders, Some(bot)) => format!("{tag}:rate:orders:{bot}"),
        _ => format!("{tag}:rate:account"),
    }
}

fn budget_key(tag: &str, bot: Option<&str>, scope: BudgetScope, notional: bool) -> String {
    let kind = if notional { "notional" } else { "orders" };
    match (scope, bot) {
        (BudgetScope::Bot, Some(bot)) => format!("{tag}:budget:bot:{bot}:{kind}"),
        _ => format!("{tag}:budget:account:{kind}"),
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(LARGEST_EXACT)
}

/// A spend in millionths, rounded up (never less than was spent).
fn ceil_micros(amount: Amount) -> u64 {
    let micros = amount.to_units().div_ceil(UNITS_PER_MICRO);
    u64::try_from(micros).map_or(LARGEST_EXACT, |m| m.min(LARGEST_EXACT))
}

/// A limit or a refund in millionths, rounded down (never more than allowed).
fn floor_micros(amount: Amount) -> u64 {
    let micros = amount.to_units() / UNITS_PER_MICRO;
    u64::try_from(micros).map_or(LARGEST_EXACT, |m| m.min(LARGEST_EXACT))
}

fn from_micros(micros: u64) -> Amount {
    Amount::from_units(u128::from(micros) * UNITS_PER_MICRO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notional_rounds_against_the_bot() {
        let amount: Amount = "1.0000001".parse().unwrap();
        assert_eq!(ceil_micros(amount), 1_000_001);
        assert_eq!(floor_micros(amount), 1_000_000);
        assert_eq!(ceil_micros(Amount::MAX), LARGEST_EXACT);
        assert_eq!(from_micros(1_500_000), "1.5".parse().unwrap());
    }

    #[test]
    fn keys_of_one_request_share_its_accounts_slot() {
        let tag = "kw:{main}";
        for key in [
            rate_key(tag, Some("alpha"), RateScope::Bot),
            rate_key(tag, Some("alpha"), RateScope::Account),
            budget_key(tag, Some("alpha"), BudgetScope::Bot, true),
            budget_key(tag, None, BudgetScope::Account, false),
        ] {
            assert!(key.starts_with("kw:{main}:"), "{key}");
        }
    }
}
