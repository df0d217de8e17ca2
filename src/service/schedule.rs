//! Scheduled calls' reminders, as the bridge asks for them.

use super::{RoomService, ServiceError};
use crate::events::RoomEventKind;
use crate::ids::RoomId;
use crate::store::DueReminder;
use callbridge_chat::ChatRef;

impl RoomService {
    /// The cards of `platform` whose scheduled call is due a reminder at `now`.
    pub async fn due_reminders(&self, platform: &str, now: i64) -> Result<Vec<DueReminder>, ServiceError> {
        Ok(self.store.due_reminders(platform, now).await?)
    }

    /// When the next reminder of `platform`'s cards falls due.
    pub async fn next_reminder(&self, platform: &str) -> Result<Option<i64>, ServiceError> {
        Ok(self.store.next_reminder(platform).await?)
    }

    /// Claims a card's reminder stage; `false` when it was sent already.
    pub async fn claim_reminder(&self, room: &RoomId, platform: &str, chat: &ChatRef, stage: i64) -> Result<bool, ServiceError> {
        Ok(self.store.claim_reminder(room, platform, chat, stage).await?)
    }

    /// Says that a scheduled call has started (its cards drop the start time).
    pub fn announce_start(&self, room: &RoomId) {
        self.events.publish(room, RoomEventKind::Started);
    }

    /// Says that a card of `room` was posted in `chat` on `platform`, so the bridges post it in
    /// the rest of the chat's gateway (on whichever node leads each platform).
    pub fn announce_card(&self, room: &RoomId, platform: &str, chat: &str) {
        self.events.publish(room, RoomEventKind::Posted { platform: platform.to_owned(), chat: chat.to_owned() });
    }
}
