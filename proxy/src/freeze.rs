//! The kill switch. Frozen, keyward signs nothing for the frozen account(s) except
//! cancels: bots get 503 with the reason. The state is written to disk before the
//! freeze call returns and survives restarts until an operator unfreezes.
//!
//! "From the moment the call returns, nothing signed leaves" is kept by a gate: every
//! forwarded request holds it shared from its frozen-check until the exchange has
//! answered, and a freeze takes it exclusively after setting the state, so it returns
//! only once no request that checked before the freeze is still on its way. The gate
//! is fair, so requests arriving meanwhile queue behind the freeze and then see it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::RwLock as Gate;

use crate::audit;

/// Why and since when something is frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frozen {
    /// RFC 3339 time of the freeze.
    pub since: String,
    /// Who or what froze it.
    pub by: String,
}

/// What is frozen: everything, or named accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeState {
    /// Every account.
    pub all: Option<Frozen>,
    /// Single accounts.
    pub accounts: BTreeMap<String, Frozen>,
}

/// The kill switch's state, its file, and the gate.
#[derive(Debug)]
pub struct Freeze {
    state: RwLock<FreezeState>,
    /// Shared so that a pass can outlive the request future that took it (a request
    /// the bot abandoned still finishes with the exchange).
    gate: std::sync::Arc<Gate<()>>,
    file: PathBuf,
}

/// A forwarded request's hold on the gate.
pub type Pass = tokio::sync::OwnedRwLockReadGuard<()>;

impl Freeze {
    /// The kill switch persisted in `file`, as it was left.
    pub fn load(file: PathBuf) -> std::io::Result<Self> {
        let state = match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: {e}; fix or remove the file deliberately",
                        file.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FreezeState::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            state: RwLock::new(state),
            gate: std::sync::Arc::new(Gate::new(())),
            file,
        })
    }

    /// The state file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Why `account` is frozen, if it is.
    pub fn frozen(&self, account: &str) -> Option<Frozen> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .all
            .clone()
            .or_else(|| state.accounts.get(account).cloned())
    }

    /// Everything frozen now.
    pub fn state(&self) -> FreezeState {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Holds the gate for one forwarded request.
    pub async fn pass(&self) -> Pass {
        self.gate.clone().read_owned().await
    }

    /// Freezes `account` (or everything), persists it, and returns once no request
    /// that passed the gate before is still in flight.
    pub async fn freeze(&self, account: Option<&str>, by: &str) -> std::io::Result<()> {
        let frozen = Frozen {
            since: audit::timestamp(SystemTime::now()),
            by: by.to_owned(),
        };
        let next = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            match account {
                Some(name) => {
                    state.accounts.entry(name.to_owned()).or_insert(frozen);
                }
                None => {
                    state.all.get_or_insert(frozen);
                }
            }
            state.clone()
        };
        let persisted = persist(&self.file, &next);
        drop(self.gate.write().await);
        persisted
    }

    /// Takes the kill switch's state from the replicas' shared state: persisted
    /// when it changed, so a restart without Redis still starts as frozen as the
    /// replicas were. True if it changed.
    pub fn adopt(&self, next: FreezeState) -> std::io::Result<bool> {
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            if *state == next {
                return Ok(false);
            }
            state.clone_from(&next);
        }
        persist(&self.file, &next)?;
        Ok(true)
    }

    /// Unfreezes `account` (or everything, including single accounts).
    pub fn unfreeze(&self, account: Option<&str>) -> std::io::Result<FreezeState> {
        let next = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            match account {
                Some(name) => {
                    state.accounts.remove(name);
                }
                None => *state = FreezeState::default(),
            }
            state.clone()
        };
        persist(&self.file, &next)?;
        Ok(next)
    }
}

/// Temp file, fsync, rename, fsync of the directory: a freeze survives a crash the
/// moment it is reported.
fn persist(file: &Path, state: &FreezeState) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    persist_private(file, &text)
}

/// Replaces `file` with `bytes`, readable by keyward's user only, so that a crash at
/// any moment leaves either the old file or the new one whole.
pub(crate) fn persist_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp_name = file.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    drop(out);
    fs::rename(&temp, file)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn file(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyward-freeze-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("keyward-frozen.json")
    }

    #[tokio::test]
    async fn freezing_persists_and_unfreezing_clears() {
        let path = file("persist");
        let freeze = Freeze::load(path.clone()).unwrap();
        assert!(freeze.frozen("main").is_none());
        freeze.freeze(Some("main"), "operator").await.unwrap();
        assert_eq!(freeze.frozen("main").unwrap().by, "operator");
        assert!(freeze.frozen("other").is_none());
        let reloaded = Freeze::load(path.clone()).unwrap();
        assert!(reloaded.frozen("main").is_some(), "survives a restart");
        reloaded.freeze(None, "circuit breaker").await.unwrap();
        assert!(reloaded.frozen("other").is_some());
        reloaded.unfreeze(None).unwrap();
        assert_eq!(Freeze::load(path).unwrap().state(), FreezeState::default());
    }

    #[tokio::test]
    async fn a_freeze_waits_for_requests_already_past_the_gate() {
        let freeze = Arc::new(Freeze::load(file("gate")).unwrap());
        let pass = freeze.pass().await;
        let freezing = {
            let freeze = freeze.clone();
            tokio::spawn(async move { freeze.freeze(Some("main"), "operator").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !freezing.is_finished(),
            "the freeze waits for the request in flight"
        );
        assert!(
            freeze.frozen("main").is_some(),
            "new requests already see it"
        );
        drop(pass);
        freezing.await.unwrap().unwrap();
    }

    #[test]
    fn a_damaged_state_file_is_an_error_not_a_thaw() {
        let path = file("damaged");
        fs::write(&path, "{not json").unwrap();
        let error = Freeze::load(path).unwrap_err().to_string();
        assert!(
            error.contains("fix or remove the file deliberately"),
            "{error}"
        );
    }
}
