//! An adapter's state in the database (see `callbridge_chat::AdapterState`), through the room
//! service, under the adapter's platform name. Updates are taken in the name of a run: this
//! node and a number that grows with each start of the adapter, so that a node that leads an
//! adapter again takes over what its own earlier run left unfinished.

use crate::service::RoomService;
use callbridge_chat::{AdapterState, BoxFuture};
use std::sync::atomic::{AtomicU64, Ordering};

/// The database corner of one platform's adapter.
pub struct StateInDb {
    rooms: RoomService,
    platform: &'static str,
    /// This run's number: a run is named `{node}/{n}`.
    run: AtomicU64,
}

impl StateInDb {
    pub fn new(rooms: RoomService, platform: &'static str) -> StateInDb {
        StateInDb { rooms, platform, run: AtomicU64::new(0) }
    }

    fn run(&self) -> String {
        format!("{}/{}", self.rooms.node_id(), self.run.load(Ordering::Relaxed))
    }
}

impl AdapterState for StateInDb {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { self.rooms.adapter_value(self.platform, key).await.map_err(|e| e.to_string()) })
    }
    fn save<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.rooms.set_adapter_value(self.platform, key, value).await.map_err(|e| e.to_string()) })
    }
    fn begin_run(&self) -> BoxFuture<'_, Result<Vec<(String, Option<String>)>, String>> {
        self.run.fetch_add(1, Ordering::Relaxed);
        let run = self.run();
        Box::pin(async move { self.rooms.unfinished_updates(self.platform, &run).await.map_err(|e| e.to_string()) })
    }
    fn claim<'a>(&'a self, key: &'a str, payload: Option<&'a str>) -> BoxFuture<'a, Result<bool, String>> {
        let run = self.run();
        Box::pin(async move { self.rooms.claim_update(self.platform, key, &run, payload).await.map_err(|e| e.to_string()) })
    }
    fn finish<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.rooms.finish_update(self.platform, key).await.map_err(|e| e.to_string()) })
    }
}
