//! What an adapter keeps in the daemon's database, which every node of a deployment shares:
//! small values across runs (Telegram's update offset) and the inbound updates already taken,
//! so that when another node takes an adapter over, no update is handled twice or skipped.

use crate::adapter::BoxFuture;
use std::sync::Arc;

/// An adapter's own corner of the database (its keys are its platform's alone).
pub trait AdapterState: Send + Sync + 'static {
    /// A value saved earlier, by this node or another.
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// Saves a value.
    fn save<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// Takes an inbound update (a platform's id for it): `true` the first time, `false` once
    /// any run on any node took it. Take it right before handing the event to the inbox.
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, String>>;
}

/// State in memory, for one process: what an adapter uses when built without the daemon.
#[derive(Default)]
pub struct MemoryState {
    values: std::sync::Mutex<std::collections::HashMap<String, String>>,
    claimed: std::sync::Mutex<std::collections::HashSet<String>>,
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
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        let fresh = self.claimed.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned());
        Box::pin(async move { Ok(fresh) })
    }
}
