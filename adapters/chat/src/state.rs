//! What an adapter keeps in the daemon's database, which every node of a deployment shares:
//! small values across runs (Telegram's update offset), and the inbound updates taken and
//! whether their handling finished. With those, when another node takes an adapter over (or
//! the daemon restarts after a crash), no update is handled twice and none is lost: the new
//! run skips what was finished and takes over what was taken and not finished.
//!
//! The flow of one update: the adapter [`claim`](AdapterState::claim)s it (skipping it when
//! that says no), sends it to the inbox as an [`Inbound`] with a [`Receipt`], and the bridge
//! calls [`Receipt::done`] once it has handled it (or dropped it on purpose). A receipt
//! dropped without `done` (the run stopped mid-way) leaves the update to the next run.

use crate::ChatEvent;
use crate::adapter::BoxFuture;
use std::sync::{Arc, Mutex};

/// An adapter's own corner of the database (its keys are its platform's alone).
pub trait AdapterState: Send + Sync + 'static {
    /// A value saved earlier, by this node or another.
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Saves a value.
    fn save<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// Starts a run: returns the updates earlier runs (on any node) took and did not finish,
    /// oldest first, with the payload each was claimed with. Call it first in each run.
    fn begin_run(&self) -> BoxFuture<'_, Result<Vec<(String, Option<String>)>, String>>;
    /// Takes an inbound update (a platform's id for it) for this run: `true` the first time,
    /// and when an earlier run took it and did not finish; `false` once finished or taken by
    /// this run. `payload` (the update as the platform sent it) is kept until it is finished,
    /// for a platform that will not send it again.
    fn claim<'a>(&'a self, key: &'a str, payload: Option<&'a str>) -> BoxFuture<'a, Result<bool, String>>;
    /// Marks an update's handling finished.
    fn finish<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// What arrives in the bridge's inbox: an event, and the receipt of the update it came from.
pub struct Inbound {
    pub event: ChatEvent,
    pub receipt: Option<Receipt>,
}

impl From<ChatEvent> for Inbound {
    /// An event from an update no platform sends twice (it needs no receipt).
    fn from(event: ChatEvent) -> Inbound {
        Inbound { event, receipt: None }
    }
}

/// Says that an update's handling finished.
pub struct Receipt {
    state: Arc<dyn AdapterState>,
    key: String,
}

impl Receipt {
    pub fn new(state: Arc<dyn AdapterState>, key: String) -> Receipt {
        Receipt { state, key }
    }

    /// Marks the update finished (a failure is logged: the next run would handle it again).
    pub async fn done(self) {
        if let Err(error) = self.state.finish(&self.key).await {
            tracing::warn!(%error, "cannot mark an update as handled");
        }
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt").field("key", &self.key).finish()
    }
}

/// State in memory, for one process: what an adapter uses when built without the daemon.
#[derive(Default)]
pub struct MemoryState {
    values: Mutex<std::collections::HashMap<String, String>>,
    claimed: Mutex<std::collections::HashSet<String>>,
}

impl MemoryState {
    pub fn shared() -> Arc<dyn AdapterState> {
        Arc::new(MemoryState::default())
    }
}

impl AdapterState for MemoryState {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        let value = self.values.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned();
        Box::pin(async move { Ok(value) })
    }
    fn save<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.values.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned(), value.to_owned());
        Box::pin(async { Ok(()) })
    }
    fn begin_run(&self) -> BoxFuture<'_, Result<Vec<(String, Option<String>)>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn claim<'a>(&'a self, key: &'a str, _payload: Option<&'a str>) -> BoxFuture<'a, Result<bool, String>> {
        let fresh = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned());
        Box::pin(async move { Ok(fresh) })
    }
    fn finish<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}
