//! Everything a running keyward holds: the validated configuration, unlocked
//! credentials, rate-limit state, upstream clients, the audit log and metrics.
//! Built completely, and checked, before any listener is bound.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keyward_policy::RateLimits;
use ring::rand::{SecureRandom, SystemRandom};

use crate::audit::{AuditError, AuditLog};
use crate::config::{Config, HostPolicy};
use crate::metrics::Metrics;
use crate::secret::Credential;
use crate::upstream::{BuildError, Upstream};
use crate::vault::{self, Vault, VaultError};

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
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running keyward's state.
pub struct App {
    /// The configuration.
    pub config: Config,
    /// Which Host values name the bot listener.
    pub hosts: HostPolicy,
    /// Rate-limit buckets.
    pub limits: RateLimits,
    /// Each account's credential.
    pub credentials: HashMap<String, Credential>,
    /// Each account's upstream client.
    pub upstreams: HashMap<String, Upstream>,
    /// The audit log.
    pub audit: AuditLog,
    /// Metrics.
    pub metrics: Metrics,
    /// True once the bot listener is up.
    pub ready: AtomicBool,
    ids: RequestIds,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("accounts", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Unlocks the vault, loads every account's credential, opens the audit log and
    /// builds the upstream clients. `port` is the bot listener's bound port.
    pub fn assemble(config: Config, port: u16) -> Result<Self, StartError> {
        let material = vault::read_key(&config.vault.key).map_err(|source| StartError::Vault {
            path: config.vault.file.display().to_string(),
            source,
        })?;
        let opened =
            Vault::open(&config.vault.file, &material).map_err(|source| StartError::Vault {
                path: config.vault.file.display().to_string(),
                source,
            })?;
        drop(material);
        let mut credentials = HashMap::new();
        let mut upstreams = HashMap::new();
        let limits = &config.server.limits;
        for (name, account) in &config.accounts {
            let credential = opened
                .entry(&account.secret)
                .and_then(|entry| entry.credential().map_err(VaultError::from))
                .map_err(|source| StartError::Credential {
                    account: name.clone(),
                    source,
                })?;
            credentials.insert(name.clone(), credential);
            upstreams.insert(name.clone(), Upstream::new(account, limits)?);
        }
        drop(opened);
        let audit = AuditLog::open(&config.audit.file)?;
        Ok(Self {
            hosts: config.server.host_policy(port),
            limits: RateLimits::new(
                &config.policy,
                keyward_policy::clock::DefaultClock::default(),
            ),
            credentials,
            upstreams,
            audit,
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            ids: RequestIds::new(),
            config,
        })
    }

    /// A fresh request id.
    pub fn request_id(&self) -> String {
        self.ids.next()
    }

    /// True once serving.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
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
            prefix: crate::secret::hex(&bytes),
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
