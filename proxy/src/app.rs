//! Everything a running keyward holds. What a reload may change (configuration,
//! unlocked credentials, rate-limit buckets, upstream clients) lives in an immutable
//! [`Snapshot`] behind an atomic pointer: each request takes the snapshot once and is
//! decided, signed and forwarded under it, so a request in flight during a reload
//! finishes with the old secret and never sees a mix of old and new. What lives as
//! long as the process (audit log, metrics, request ids) sits beside it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use keyward_policy::RateLimits;
use ring::rand::{SecureRandom, SystemRandom};

use crate::account::{AccountId, AccountRuntime, AccountStates, Accounts};
use crate::audit::{self, AuditError, AuditLog, ReloadRecord};
use crate::budgets::Budgets;
use crate::config::{Config, Diagnostics, HostPolicy, Limits};
use crate::credential::KeyError;
use crate::exchange_limits::ExchangeState;
use crate::freeze::Freeze;
use crate::metrics::Metrics;
use crate::prices::Prices;
use crate::upstream::{BuildError, Upstream};
use crate::vault::{self, Reopen, Vault, VaultError};

/// Why keyward cannot start. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The vault cannot be opened.
    #[error("vault {path}: {source}")]
    Vault {
        /// The vault file.
        path: String,
        /// What went wrong.
        source: VaultError,
    },
    /// An account's vault entry is missing or unusable.
    #[error("account {account}: {source}")]
    Credential {
        /// The account.
        account: String,
        /// What went wrong.
        source: VaultError,
    },
    /// TLS material could not be created or loaded.
    #[error("TLS: {0}")]
    Certs(#[from] keyward_certs::CertsError),
    /// The audit log cannot be opened.
    #[error("{0}")]
    Audit(#[from] AuditError),
    /// An upstream client could not be built.
    #[error("{0}")]
    Upstream(#[from] BuildError),
    /// The kill switch's state file cannot be read.
    #[error("freeze state: {0}")]
    State(std::io::Error),
    /// The shared state backend cannot be set up.
    #[error("[state]: {0}")]
    Shared(#[from] crate::shared::SharedSetupError),
    /// The control socket cannot be bound.
    #[error("socket {}: {source}", path.display())]
    Control {
        /// The socket's path.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A listener could not be bound: said at the setting that names the address, with
    /// what to do about the usual causes.
    #[error(
        "{}cannot listen on {addr} (`{setting}`): {source}{}",
        .at.as_ref().map_or_else(String::new, |p| format!("{}:{}:{}: ", p.file.display(), p.line, p.column)),
        bind_advice(setting, source)
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The setting that names it.
        setting: &'static str,
        /// Where that setting is written, if it is.
        at: Option<crate::config::Place>,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why a reload was refused; the running snapshot stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration has mistakes.
    #[error("the configuration has mistakes:\n{0}")]
    Config(Diagnostics),
    /// The vault or a credential could not be loaded.
    #[error("{0}")]
    Start(#[from] StartError),
    /// The vault settings changed and the key cannot be read again.
    #[error(
        "[vault] changed, and the running keyward's key came from an environment variable or \
         a prompt that it does not read twice; restart keyward"
    )]
    VaultSettings,
}

/// The part of keyward's state a reload replaces, all at once.
pub struct Snapshot {
    /// The configuration.
    pub config: Config,
    /// Which Host values name the bot listeners.
    pub hosts: HostPolicy,
    /// What the TLS bot listener serves to new connections.
    pub tls: crate::identity::TlsMaterial,
    /// Rate-limit buckets.
    pub limits: RateLimits,
    /// Each account: settings, credential, upstream client and lasting state.
    pub accounts: Accounts,
    /// 1 at start, +1 per successful reload.
    pub generation: u64,
    /// Each bot's share of its exchange's limits, in percent.
    pub exchange_shares: HashMap<String, u8>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("accounts", &self.accounts.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Logs a warning for each certificate that expires within two weeks.
fn warn_expiring(tls: &crate::identity::TlsMaterial) {
    for warning in crate::identity::expiry_warnings(&tls.expiries, time::OffsetDateTime::now_utc())
    {
        tracing::warn!("{warning}");
    }
}

/// How many orders keyward looks up at the exchange for one bot's `adopt_orders` in
/// a minute.
pub const ADOPTIONS_PER_MINUTE: usize = 10;

/// A running keyward's state.
pub struct App {
    current: ArcSwap<Snapshot>,
    /// Listener settings fixed at start (a reload does not rebind).
    pub listener_limits: Limits,
    /// How often the audit log is flushed to disk (fixed at start).
    pub audit_fsync: Option<std::time::Duration>,
    /// The audit log.
    pub audit: AuditLog,
    /// Metrics.
    pub metrics: Metrics,
    /// What the exchanges report about their limits, and pauses they ordered.
    pub exchange: ExchangeState,
    /// What each account keeps across reloads: clock offset and nonce counter.
    pub account_states: AccountStates,
    /// Reference prices.
    pub prices: Prices,
    /// Rolling budgets.
    pub budgets: Budgets,
    /// The orders keyward placed.
    pub orders: crate::orders::OrderBook,
    /// The kill switch.
    pub freeze: Freeze,
    /// The state replicas share (`[state] backend = "redis://..."`), if any.
    pub shared: Option<Arc<crate::shared::Shared>>,
    /// Recent refusals per bot, for the circuit breaker.
    pub breaker: Breaker,
    /// Order look-ups made for bots' `adopt_orders`, per bot.
    pub adoptions: crate::throttle::Throttle,
    /// Failed authentications per source.
    pub auth_failures: crate::throttle::Throttle,
    /// True once the bot listener is up.
    pub ready: AtomicBool,
    /// Forwarded requests not finished yet; shutdown waits for them.
    pub forwards: InFlight,
    /// Each bot's open WebSockets.
    pub streams: crate::streams::Registry,
    bot_ports: Vec<u16>,
    reopen: Mutex<Reopen>,
    reloading: Mutex<()>,
    ids: RequestIds,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("snapshot", &self.current.load())
            .finish_non_exhaustive()
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The generation now in force.
    pub generation: u64,
    /// Settings that changed but take effect only at restart.
    pub needs_restart: Vec<&'static str>,
}

impl App {
    /// Unlocks the vault, loads every account's credential, opens the audit log and
    /// builds the upstream clients, loads the TLS material. `ports` are the bot
    /// listeners' bound ports.
    pub fn assemble(config: Config, ports: &[u16]) -> Result<Self, StartError> {
        let tls = crate::identity::load_tls(&config)?;
        warn_expiring(&tls);
        let vault_error = |source| StartError::Vault {
            path: config.vault.file.display().to_string(),
            source,
        };
        let material = vault::read_key(&config.vault.key).map_err(vault_error)?;
        let opened = Vault::open(&config.vault.file, &material).map_err(vault_error)?;
        drop(material);
        let reopen = opened.reopener(&config.vault.key).map_err(vault_error)?;
        let shared = match &config.state {
            crate::config::StateBackend::Local => None,
            crate::config::StateBackend::Redis(settings) => {
                Some(crate::shared::Shared::connect(settings).map_err(StartError::Shared)?)
            }
        };
        let account_states = match &shared {
            Some(shared) => AccountStates::shared(Some(config.state_dir.clone()), shared.clone()),
            None => AccountStates::new(Some(config.state_dir.clone())),
        };
        let accounts = unlock_accounts(&config, &opened, &account_states)?;
        drop(opened);
        crate::shield::scrub_stack_after_unlock();
        // Budgets come back from the audit log before it is opened for writing.
        let (budgets, orders) =
            crate::budgets::rebuild_from_audit(&config, &config.audit.file, SystemTime::now());
        if let Some(shared) = &shared {
            budgets.share(shared.clone());
        }
        let freeze = Freeze::load(freeze_file(&config)).map_err(StartError::State)?;
        if freeze.state() != crate::freeze::FreezeState::default() {
            let state = serde_json::to_string(&freeze.state()).unwrap_or_default();
            tracing::warn!(%state, "keyward starts frozen; `keyward unfreeze` lifts it");
        }
        let audit = AuditLog::open(
            &config.audit.file,
            audit::Rotation {
                max_bytes: config.audit.max_file_bytes,
                daily: config.audit.rotate_daily,
                retention: config.audit.retention,
            },
        )?;
        let metrics = Metrics::default();
        metrics.started(1);
        metrics.memory_locked(crate::shield::memory_locked());
        let snapshot = Snapshot {
            hosts: config.server.host_policy(ports),
            tls,
            limits: RateLimits::new(
                &config.policy,
                keyward_policy::clock::DefaultClock::default(),
            ),
            accounts,
            generation: 1,
            exchange_shares: exchange_shares(&config),
            config,
        };
        let auth_failures = crate::throttle::Throttle::new(
            snapshot.config.server.auth_failure_rate.count().get() as usize,
            snapshot.config.server.auth_failure_rate.period(),
        );
        Ok(Self {
            listener_limits: snapshot.config.server.limits,
            audit_fsync: snapshot.config.audit.fsync_interval,
            current: ArcSwap::from_pointee(snapshot),
            audit,
            metrics,
            exchange: ExchangeState::default(),
            account_states,
            prices: Prices::default(),
            budgets,
            orders,
            freeze,
            shared,
            breaker: Breaker::default(),
            adoptions: crate::throttle::Throttle::new(
                ADOPTIONS_PER_MINUTE,
                std::time::Duration::from_secs(60),
            ),
            auth_failures,
            ready: AtomicBool::new(false),
            forwards: InFlight::default(),
            streams: crate::streams::Registry::default(),
            bot_ports: ports.to_vec(),
            reopen: Mutex::new(reopen),
            reloading: Mutex::new(()),
            ids: RequestIds::new(),
        })
    }

    /// The snapshot in force now. A request takes it once and keeps it.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Loads the configuration and vault again and, if everything validates and
    /// unlocks, swaps them in. On any failure the running snapshot stays. Blocking
    /// (file reads, perhaps Argon2id): call it off the async workers.
    pub fn reload(&self, trigger: &'static str) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _told = crate::sdnotify::Reload::begin(self.ready.load(Ordering::Acquire));
        let old = self.snapshot();
        let result = self.build_next(&old);
        crate::shield::scrub_stack_after_unlock();
        let (result_name, generation, keys, problems) = match &result {
            Ok((next, _)) => (
                "ok",
                next.generation,
                next.accounts
                    .iter()
                    .map(|(id, a)| (id.to_string(), a.credential.fingerprint()))
                    .collect(),
                0,
            ),
            Err(error) => (
                "failed",
                old.generation,
                Vec::new(),
                match error {
                    ReloadError::Config(diagnostics) => diagnostics.items().len(),
                    _ => 1,
                },
            ),
        };
        let record = ReloadRecord {
            ts: audit::timestamp(SystemTime::now()),
            event: "reload",
            result: result_name,
            generation,
            trigger,
            keys,
            problems,
        };
        if self.audit.write(&record).is_err() {
            self.metrics.audit_failure();
        }
        drop(record);
        match result {
            Ok((next, needs_restart)) => {
                let generation = next.generation;
                self.budgets.configure(&next.config);
                self.current.store(Arc::new(next));
                self.metrics.reload(true, generation);
                self.metrics.memory_locked(crate::shield::memory_locked());
                tracing::info!(generation, trigger, "configuration and vault reloaded");
                for setting in &needs_restart {
                    tracing::warn!(
                        setting,
                        "changed, but takes effect only when keyward restarts"
                    );
                }
                Ok(Reloaded {
                    generation,
                    needs_restart,
                })
            }
            Err(error) => {
                self.metrics.reload(false, old.generation);
                match &error {
                    ReloadError::Config(diagnostics) => {
                        for line in diagnostics.to_string().lines() {
                            tracing::error!(
                                problem = line,
                                "reload refused; the running configuration stays"
                            );
                        }
                    }
                    other => {
                        tracing::error!(error = %other, "reload refused; the running configuration stays");
                    }
                }
                Err(error)
            }
        }
    }

    fn build_next(&self, old: &Snapshot) -> Result<(Snapshot, Vec<&'static str>), ReloadError> {
        let config =
            Config::load(&old.config.path, SystemTime::now()).map_err(ReloadError::Config)?;
        let mut reopen = self.reopen.lock().unwrap_or_else(PoisonError::into_inner);
        let vault_error = |source| StartError::Vault {
            path: config.vault.file.display().to_string(),
            source,
        };
        let opened = if config.vault == old.config.vault {
            reopen.open().map_err(vault_error)?
        } else if let crate::config::KeySource::File(_) = config.vault.key {
            let material = vault::read_key(&config.vault.key).map_err(vault_error)?;
            let opened = Vault::open(&config.vault.file, &material).map_err(vault_error)?;
            *reopen = opened.reopener(&config.vault.key).map_err(vault_error)?;
            opened
        } else {
            return Err(ReloadError::VaultSettings);
        };
        let accounts = unlock_accounts(&config, &opened, &self.account_states)?;
        drop(opened);
        crate::shield::scrub_stack_after_unlock();
        let mut needs_restart = Vec::new();
        let (new_server, old_server) = (&config.server, &old.config.server);
        for (setting, changed) in [
            ("server.listen", new_server.listen != old_server.listen),
            ("server.admin", new_server.admin != old_server.admin),
            (
                "server.metrics_listen",
                new_server.metrics_listen != old_server.metrics_listen,
            ),
            ("server.names", new_server.names != old_server.names),
            (
                "server.max_connections, header_timeout_ms, handshake_timeout_ms",
                (
                    new_server.limits.max_connections,
                    new_server.limits.header_timeout,
                    new_server.limits.handshake_timeout,
                ) != (
                    old_server.limits.max_connections,
                    old_server.limits.header_timeout,
                    old_server.limits.handshake_timeout,
                ),
            ),
            (
                "server.plain_listen, listen_unix",
                (&new_server.plain_listen, &new_server.listen_unix)
                    != (&old_server.plain_listen, &old_server.listen_unix),
            ),
            ("server.state_dir", config.state_dir != old.config.state_dir),
            (
                "server.auth_failure_rate",
                new_server.auth_failure_rate != old_server.auth_failure_rate,
            ),
            ("audit", config.audit != old.config.audit),
            ("state", config.state != old.config.state),
        ] {
            if changed {
                needs_restart.push(setting);
            }
        }
        // New connections get the new certificate and client checks; established
        // ones keep the session they have.
        let tls = crate::identity::load_tls(&config).map_err(StartError::from)?;
        warn_expiring(&tls);
        let next = Snapshot {
            hosts: config.server.host_policy(&self.bot_ports),
            tls,
            limits: old.limits.carried_over(&config.policy),
            accounts,
            generation: old.generation + 1,
            exchange_shares: exchange_shares(&config),
            config,
        };
        Ok((next, needs_restart))
    }

    /// A fresh request id.
    pub fn request_id(&self) -> String {
        self.ids.next()
    }

    /// True once serving.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.shared_state_available()
    }

    /// False while the replicas' shared state is configured and cannot be reached:
    /// what readiness says, so a load balancer sends bots to a replica that can
    /// serve them.
    pub fn shared_state_available(&self) -> bool {
        self.shared
            .as_ref()
            .is_none_or(|shared| shared.is_available())
    }
}

/// The share of an exchange's limits a bot gets unless its `exchange_share` says
/// otherwise, when other bots share its account.
pub const DEFAULT_EXCHANGE_SHARE: u8 = 50;

/// What to do when a listener cannot be bound, for the causes an operator meets.
fn bind_advice(setting: &str, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "; another process is listening there (another keyward?): stop it, or set another port in `{setting}`"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "; ports below 1024 need privileges keyward should not have: set a port above 1023 in `{setting}`"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "; no interface of this machine has that address: set one it has in `{setting}`"
        ),
        _ => String::new(),
    }
}

/// The share of an exchange's limits that tokenless public market data may use, on
/// the account that serves it.
pub const PUBLIC_EXCHANGE_SHARE: u8 = 20;

/// The name tokenless requests are counted under for that share: not a valid bot
/// name, so no bot can share it.
pub const PUBLIC_SHARE_NAME: &str = "(public)";

/// Each bot's share of its exchange's limits: its `exchange_share`, else
/// [`DEFAULT_EXCHANGE_SHARE`], or all of it for the only bot of an account (the
/// share keeps bots from starving each other; a lone bot has no one to starve).
fn exchange_shares(config: &Config) -> HashMap<String, u8> {
    let bots = config.policy.bots();
    let mut per_account: HashMap<&str, usize> = HashMap::new();
    for bot in &bots {
        *per_account.entry(bot.account()).or_default() += 1;
    }
    bots.iter()
        .map(|bot| {
            let alone = per_account.get(bot.account()).copied().unwrap_or(0) <= 1;
            let share =
                bot.exchange_share()
                    .unwrap_or(if alone { 100 } else { DEFAULT_EXCHANGE_SHARE });
            (bot.name().to_owned(), share)
        })
        .collect()
}

/// The control socket: the admin routes that must not be reachable by whoever
/// shares keyward's network (unfreeze, live explain), for the operator's uid only.
pub fn control_socket(config: &Config) -> std::path::PathBuf {
    config.state_dir.join("keyward.sock")
}

/// Where the kill switch's state lives: in `server.state_dir` (by default beside the
/// audit log, which is writable wherever keyward runs).
pub fn freeze_file(config: &Config) -> std::path::PathBuf {
    config.state_dir.join("keyward-frozen.json")
}

/// Refusals per bot over a sliding minute-scale window, for each account's
/// `freeze_after_denials`.
#[derive(Debug, Default)]
pub struct Breaker {
    refusals: Mutex<HashMap<String, std::collections::VecDeque<std::time::Instant>>>,
}

impl Breaker {
    /// Counts a refusal of `bot`; true if that makes `limit` refusals within its
    /// period (the breaker trips).
    pub fn refused(&self, bot: &str, limit: keyward_policy::Rate) -> bool {
        let now = std::time::Instant::now();
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        let times = refusals.entry(bot.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > limit.period())
        {
            times.pop_front();
        }
        times.push_back(now);
        let tripped = times.len() >= limit.count().get() as usize;
        if tripped {
            times.clear();
        }
        tripped
    }
}

/// Every account at runtime: its credential (validated and shielded), its upstream
/// client, and its lasting state from `states`.
fn unlock_accounts(
    config: &Config,
    opened: &Vault,
    states: &AccountStates,
) -> Result<Accounts, StartError> {
    let mut accounts = Accounts::new();
    for (name, account) in &config.accounts {
        let credential = opened
            .entry(&account.secret)
            .and_then(|entry| entry.credential().map_err(VaultError::from))
            .and_then(|credential| {
                account
                    .venue
                    .adapter()
                    .check_credential(&credential)
                    .map(|()| credential)
                    .map_err(|unfit| VaultError::from(KeyError::from(unfit)))
            })
            .map_err(|source| StartError::Credential {
                account: name.clone(),
                source,
            })?;
        let id = AccountId::new(name);
        let runtime = AccountRuntime {
            upstream: Upstream::new(account, &config.server.limits)?,
            settings: account.clone(),
            credential,
            state: states.of(&id),
            id: id.clone(),
        };
        accounts.insert(id, Arc::new(runtime));
    }
    Ok(accounts)
}

/// Requests signed and sent (or about to be) whose outcome is not recorded yet. A bot
/// that goes away leaves its order running in a task no connection holds, so
/// draining the connections is not enough for shutdown to know that every order it
/// sent has its outcome in the audit log and its budgets settled.
#[derive(Debug, Default)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
    none_left: Arc<tokio::sync::Notify>,
}

/// One forwarded request, counted in [`InFlight`] until dropped.
#[derive(Debug)]
pub struct Forwarding {
    count: Arc<AtomicUsize>,
    none_left: Arc<tokio::sync::Notify>,
}

impl InFlight {
    /// Counts one more request until the returned guard is dropped.
    pub fn enter(&self) -> Forwarding {
        self.count.fetch_add(1, Ordering::SeqCst);
        Forwarding {
            count: self.count.clone(),
            none_left: self.none_left.clone(),
        }
    }

    /// How many are in flight now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Returns once none is in flight.
    pub async fn finished(&self) {
        loop {
            let none_left = self.none_left.notified();
            tokio::pin!(none_left);
            // Registered before the count is read, so a guard dropped in between
            // still wakes this waiter.
            none_left.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            none_left.await;
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.none_left.notify_waiters();
        }
    }
}

/// Request ids: a random per-process prefix and a counter, unique and cheap.
#[derive(Debug)]
struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut bytes = [0u8; 4];
        // An all-zero prefix only costs uniqueness across restarts, never safety.
        let _ = SystemRandom::new().fill(&mut bytes);
        Self {
            prefix: keyward_venues::hex(&bytes),
            counter: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_flight_is_finished_only_when_every_guard_is_dropped() {
        let forwards = InFlight::default();
        let finished = |f: &InFlight| {
            let mut wait = Box::pin(f.finished());
            let waker = std::task::Waker::noop();
            wait.as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        };
        assert!(finished(&forwards));
        let first = forwards.enter();
        let second = forwards.enter();
        assert_eq!(forwards.count(), 2);
        assert!(!finished(&forwards));
        drop(first);
        assert!(!finished(&forwards));
        // A waiter already parked is woken by the last guard.
        let waiting = {
            let count = forwards.count.clone();
            let none_left = forwards.none_left.clone();
            tokio::spawn(async move {
                InFlight { count, none_left }.finished().await;
            })
        };
        tokio::task::yield_now().await;
        drop(second);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(forwards.count(), 0);
    }
}
