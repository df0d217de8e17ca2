//! An adapter's state in the database (see `callbridge_chat::AdapterState`), through the room
//! service, under the adapter's platform name.

use crate::service::RoomService;
use callbridge_chat::{AdapterState, BoxFuture};

/// The database corner of one platform's adapter.
pub struct StateInDb {
    pub rooms: RoomService,
    pub platform: &'static str,
}

impl AdapterState for StateInDb {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { self.rooms.adapter_value(self.platform, key).await.map_err(|e| e.to_string()) })
    }
    fn save<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.rooms.set_adapter_value(self.platform, key, value).await.map_err(|e| e.to_string()) })
    }
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move { self.rooms.claim_update(self.platform, key).await.map_err(|e| e.to_string()) })
    }
}
