//! One exchange account at runtime, in one value: its settings, its credential, its
//! upstream client, and what keyward keeps for it across reloads (the exchange's
//! clock offset and the nonce counter).
//!
//! A snapshot holds an [`AccountRuntime`] for each configured account, built from the
//! same configuration, so a request that names its account once finds everything it
//! needs to sign and send in that value; nothing later looks the account up again.
//! What must outlive a reload lives in an [`AccountState`] that each new snapshot's
//! runtime shares with the last.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::config::Account;
use crate::credential::Credential;
use crate::nonce::{NonceCounter, NonceError};
use crate::upstream::Upstream;

/// An account's name, as the configuration declares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(Arc<str>);

impl AccountId {
    /// The id of the account named `name`.
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for AccountId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Nothing measured yet.
const UNMEASURED: i64 = i64::MIN;

/// What keyward keeps for an account as long as it runs, whatever reloads bring.
#[derive(Debug)]
pub struct AccountState {
    /// The exchange's clock minus keyward's, in ms, as last measured.
    clock_offset_ms: AtomicI64,
    /// The account's nonce counter (Kraken).
    nonce: NonceCounter,
    /// The counter every replica draws from, with a shared state backend.
    shared_nonce: Option<(Arc<crate::shared::Shared>, AccountId)>,
    /// When the exchange last answered a request keyward sent it, in ms since the
    /// epoch (0: never), and when a request last got no answer.
    last_answer_ms: AtomicU64,
    last_failure_ms: AtomicU64,
}

impl AccountState {
    fn new(
        state_dir: Option<&Path>,
        id: &AccountId,
        shared: Option<&Arc<crate::shared::Shared>>,
    ) -> Self {
        Self {
            clock_offset_ms: AtomicI64::new(UNMEASURED),
            nonce: NonceCounter::new(state_dir, id.as_str()),
            shared_nonce: shared.map(|shared| (shared.clone(), id.clone())),
            last_answer_ms: AtomicU64::new(0),
            last_failure_ms: AtomicU64::new(0),
        }
    }

    /// Records whether the exchange answered a request keyward sent it (any HTTP
    /// answer counts; a refused connection or a timeout does not).
    pub fn exchange_answered(&self, answered: bool, now: SystemTime) {
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let slot = if answered {
            &self.last_answer_ms
        } else {
            &self.last_failure_ms
        };
        slot.store(ms, Ordering::Relaxed);
    }

    /// Whether the exchange answered the last request keyward sent it, and when it
    /// last answered (ms since the epoch); `None` before any request.
    pub fn exchange_reachability(&self) -> Option<(bool, Option<u64>)> {
        let answered = self.last_answer_ms.load(Ordering::Relaxed);
        let failed = self.last_failure_ms.load(Ordering::Relaxed);
        (answered > 0 || failed > 0)
            .then(|| (answered >= failed, (answered > 0).then_some(answered)))
    }

    /// The exchange's clock minus keyward's in ms (positive when the exchange is
    /// ahead), 0 until measured. Signed timestamps are keyward's clock plus this; the
    /// receive window is never widened to hide a difference.
    pub fn clock_offset_ms(&self) -> i64 {
        self.measured_offset_ms().unwrap_or(0)
    }

    /// The offset, if it was measured.
    pub fn measured_offset_ms(&self) -> Option<i64> {
        let offset = self.clock_offset_ms.load(Ordering::Relaxed);
        (offset != UNMEASURED).then_some(offset)
    }

    /// Records a measurement.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.clock_offset_ms
            .store(offset_ms.max(UNMEASURED + 1), Ordering::Relaxed);
    }

    /// `now` on the exchange's clock, in ms since the epoch.
    pub fn exchange_now_ms(&self, now: SystemTime) -> u64 {
        let local = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        u64::try_from(local.saturating_add(self.clock_offset_ms())).unwrap_or(0)
    }

    /// The next nonce, strictly greater than any handed out before for this account
    /// (by any replica, with a shared state backend).
    pub async fn next_nonce(&self) -> Result<u64, NonceError> {
        let candidate = self.nonce.next()?;
        let Some((shared, id)) = &self.shared_nonce else {
            return Ok(candidate);
        };
        let nonce = shared
            .next_nonce(id.as_str(), candidate)
            .await
            .map_err(|_| NonceError::SharedUnavailable)?;
        self.nonce.raise_to(nonce)?;
        Ok(nonce)
    }
}

/// Every account's lasting state, created the first time a snapshot names the
/// account and kept for as long as keyward runs.
#[derive(Debug)]
pub struct AccountStates {
    /// Where nonce marks are written (`None`: in memory only, for tools and tests
    /// that never send). Fixed at start: `state_dir` changes need a restart.
    state_dir: Option<std::path::PathBuf>,
    shared: Option<Arc<crate::shared::Shared>>,
    states: Mutex<HashMap<AccountId, Arc<AccountState>>>,
}

impl AccountStates {
    /// States whose nonce marks live in `state_dir`.
    pub fn new(state_dir: Option<std::path::PathBuf>) -> Self {
        Self {
            state_dir,
            shared: None,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// States whose nonces come from the replicas' shared counter too.
    pub fn shared(
        state_dir: Option<std::path::PathBuf>,
        shared: Arc<crate::shared::Shared>,
    ) -> Self {
        Self {
            shared: Some(shared),
            ..Self::new(state_dir)
        }
    }

    /// The state of account `id`, created if it has none yet.
    pub fn of(&self, id: &AccountId) -> Arc<AccountState> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_insert_with(|| {
                Arc::new(AccountState::new(
                    self.state_dir.as_deref(),
                    id,
                    self.shared.as_ref(),
                ))
            })
            .clone()
    }
}

/// One account in one snapshot.
#[derive(Debug)]
pub struct AccountRuntime {
    /// Its name.
    pub id: AccountId,
    /// Its settings.
    pub settings: Account,
    /// Its key, validated and shielded.
    pub credential: Credential,
    /// Its client to the exchange.
    pub upstream: Upstream,
    /// What outlives the snapshot.
    pub state: Arc<AccountState>,
}

/// Every account of a snapshot, by name.
pub type Accounts = BTreeMap<AccountId, Arc<AccountRuntime>>;
