//! The kill switch across replicas: a freeze on any replica is written to one Redis
//! hash and announced on a channel; every replica adopts the hash's state when
//! announced, and reads it every quarter second anyway, so a lost announcement
//! (or a replica that was reconnecting) still stops within a second.
//!
//! A freeze that cannot reach Redis holds here and is pushed until it arrives; an
//! unfreeze that cannot reach Redis is refused (the account stays frozen). At start
//! the replica's own frozen state is pushed too: whether it is a freeze not yet
//! shared or one lifted elsewhere meanwhile cannot be told, and frozen is the safe
//! reading.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::{Refusal, Shared};
use crate::app::App;
use crate::freeze::{FreezeState, Frozen};

/// How often the shared state is read even without an announcement.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// The hash field of a freeze of everything.
const EVERYTHING: &str = "*";

/// Freezes made here that Redis has not confirmed yet, and how many times that set
/// changed (a read of the hash during which it changed is not adopted).
#[derive(Debug, Default)]
pub(super) struct Pending(Mutex<BTreeMap<String, Frozen>>, AtomicU64);

fn field(account: Option<&str>) -> String {
    account.map_or_else(|| EVERYTHING.to_owned(), |name| format!("account:{name}"))
}

impl Shared {
    fn freeze_key(&self) -> String {
        self.key("freeze")
    }

    /// Holds a freeze about to be made here as part of the shared state, before it
    /// is made: the watcher's next read then keeps it rather than undoing it.
    pub fn hold_freeze(&self, account: Option<&str>, frozen: Frozen) {
        let mut pending = self
            .pending_freezes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.entry(field(account)).or_insert(frozen);
        self.pending.1.fetch_add(1, Ordering::SeqCst);
    }

    /// Sends the freezes held here to Redis; false if it cannot be reached (the
    /// watcher keeps trying, and the freezes hold here meanwhile).
    pub async fn share_freezes(&self) -> bool {
        self.push_pending().await
    }

    /// Lifts a freeze for every replica; refused while Redis cannot be reached.
    pub async fn share_unfreeze(&self, account: Option<&str>) -> Result<(), Refusal> {
        let key = self.freeze_key();
        let mut pipe = redis::pipe();
        pipe.atomic();
        match account {
            Some(name) => pipe.hdel(&key, field(Some(name))).ignore(),
            None => pipe.del(&key).ignore(),
        };
        pipe.publish(&key, "unfreeze").ignore();
        self.query_pipeline::<()>(pipe).await?;
        let mut pending = self
            .pending_freezes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match account {
            Some(name) => {
                pending.remove(&field(Some(name)));
            }
            None => pending.clear(),
        }
        Ok(())
    }

    /// Writes every pending freeze (keeping an earlier one's time) and announces
    /// them; true once Redis has them all.
    async fn push_pending(&self) -> bool {
        let pending: Vec<(String, Frozen)> = self
            .pending_freezes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if pending.is_empty() {
            return true;
        }
        let key = self.freeze_key();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (field, frozen) in &pending {
            let Ok(value) = serde_json::to_string(frozen) else {
                continue;
            };
            pipe.hset_nx(&key, field, value).ignore();
        }
        pipe.publish(&key, "freeze").ignore();
        if self.query_pipeline::<()>(pipe).await.is_err() {
            return false;
        }
        let mut held = self
            .pending_freezes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (field, _) in pending {
            held.remove(&field);
        }
        self.pending.1.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// The freeze every replica is under. `Unavailable` also when the freezes held
    /// here changed while the hash was read: Redis may have run the read before a
    /// freeze's write, and the write may have been confirmed (and the freeze no
    /// longer held) before the answer was taken, so the answer would undo the
    /// freeze here. The next read has it.
    async fn shared_freeze(&self) -> Result<FreezeState, Refusal> {
        let held_before = self.pending.1.load(Ordering::SeqCst);
        let mut command = redis::cmd("HGETALL");
        command.arg(self.freeze_key());
        let fields: BTreeMap<String, String> = self.query(command).await?;
        let mut state = FreezeState::default();
        for (field, value) in fields {
            let Ok(frozen) = serde_json::from_str::<Frozen>(&value) else {
                // An entry keyward cannot read still means frozen.
                tracing::warn!(
                    field,
                    "unreadable freeze entry in the shared state; read as frozen"
                );
                let frozen = Frozen {
                    since: String::new(),
                    by: "shared state (unreadable entry)".to_owned(),
                };
                put(&mut state, &field, frozen);
                continue;
            };
            put(&mut state, &field, frozen);
        }
        let pending = self
            .pending_freezes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.pending.1.load(Ordering::SeqCst) != held_before {
            return Err(Refusal::Unavailable);
        }
        for (field, frozen) in pending.iter() {
            put(&mut state, field, frozen.clone());
        }
        Ok(state)
    }

    fn pending_freezes(&self) -> &Mutex<BTreeMap<String, Frozen>> {
        &self.pending.0
    }
}

fn put(state: &mut FreezeState, field: &str, frozen: Frozen) {
    match field.strip_prefix("account:") {
        Some(name) => {
            state.accounts.entry(name.to_owned()).or_insert(frozen);
        }
        None => {
            state.all.get_or_insert(frozen);
        }
    }
}

/// Keeps the kill switch of `app` equal to the shared one until `shutdown`: pushes this
/// replica's frozen state at start, then adopts the shared state on every
/// announcement and every quarter second.
pub async fn watch_freeze(shared: Arc<Shared>, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    // Whatever round trip is under way: a stop does not wait for Redis.
    tokio::select! {
        () = keep_watching(shared, app) => {}
        _ = shutdown.changed() => {}
    }
}

async fn keep_watching(shared: Arc<Shared>, app: Arc<App>) {
    let freeze = &app.freeze;
    {
        let local = freeze.state();
        let mut pending = shared
            .pending_freezes()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(frozen) = local.all {
            pending.insert(field(None), frozen);
        }
        for (name, frozen) in local.accounts {
            pending.insert(field(Some(&name)), frozen);
        }
    }
    let mut announcements = None;
    loop {
        if announcements.is_none() {
            announcements = subscribe(&shared).await;
        }
        shared.push_pending().await;
        if let Ok(state) = shared.shared_freeze().await {
            match freeze.adopt(state) {
                Ok(true) => {
                    tracing::warn!(frozen = ?freeze.state(), "kill switch changed by another replica")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, "the shared freeze could not be written to the local state file")
                }
            }
        }
        let announced = async {
            match announcements.as_mut() {
                Some(stream) => stream.next().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => {}
            heard = announced => {
                if !heard {
                    announcements = None;
                }
            }
        }
    }
}

type Announcements = std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>;

/// The freeze channel's announcements, or none while Redis cannot be reached
/// (polling alone covers that).
async fn subscribe(shared: &Shared) -> Option<Announcements> {
    let connect = async {
        let mut pubsub = shared.client.get_async_pubsub().await.ok()?;
        pubsub.subscribe(shared.freeze_key()).await.ok()?;
        Some(Box::pin(pubsub.into_on_message()) as Announcements)
    };
    tokio::time::timeout(shared.timeout, connect)
        .await
        .ok()
        .flatten()
}
