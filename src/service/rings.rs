//! Ringing, prompts, the host's notices and the call log, as the bridge asks for them. Every
//! change to who is rung is published (`RoomEventKind::Rang`), so each card, on any node,
//! shows it.

use super::{RoomService, ServiceError};
use crate::events::RoomEventKind;
use crate::ids::RoomId;
use crate::store::{OptIn, PromptRef, Ring};
use callbridge_chat::{ChatRef, MessageRef, RingState};

/// How many ended calls the call log lists.
pub const CALL_LOG_ENDED: i64 = 10;

impl RoomService {
    /// Turns `who`'s opt-in for `chat` on or off; `false` when it already was so.
    pub async fn set_ring_optin(&self, platform: &str, chat: &ChatRef, who: &OptIn, on: bool) -> Result<bool, ServiceError> {
        Ok(self.store.set_ring_optin(platform, chat, who, on).await?)
    }

    /// Everyone who asked to be rung in `chat`.
    pub async fn ring_optins(&self, platform: &str, chat: &ChatRef) -> Result<Vec<OptIn>, ServiceError> {
        Ok(self.store.ring_optins(platform, chat).await?)
    }

    /// Rings `who` into `room`; `false` when they are being rung already.
    pub async fn add_ring(&self, room: &RoomId, platform: &str, who: &OptIn, by: &OptIn, message: Option<&str>) -> Result<bool, ServiceError> {
        let added = self.store.add_ring(room, platform, who, by, message).await?;
        if added {
            self.events.publish(room, RoomEventKind::Rang);
        }
        Ok(added)
    }

    /// Moves a ring to `state` from one of `from`; `false` when it was in none of them.
    pub async fn set_ring_state(&self, room: &RoomId, platform: &str, user_ref: &str, state: RingState, from: &[RingState]) -> Result<bool, ServiceError> {
        let moved = self.store.set_ring_state(room, platform, user_ref, state, from).await?;
        if moved {
            self.events.publish(room, RoomEventKind::Rang);
        }
        Ok(moved)
    }

    /// Takes a ring back off the card.
    pub async fn delete_ring(&self, room: &RoomId, platform: &str, user_ref: &str) -> Result<bool, ServiceError> {
        let deleted = self.store.delete_ring(room, platform, user_ref).await?;
        if deleted {
            self.events.publish(room, RoomEventKind::Rang);
        }
        Ok(deleted)
    }

    /// Marks missed the rings of `platform` nobody answered within `timeout` (or whose call
    /// ended); returns them.
    pub async fn miss_overdue_rings(&self, platform: &str, timeout: std::time::Duration) -> Result<Vec<(RoomId, String)>, ServiceError> {
        let missed = self.store.miss_overdue_rings(platform, self.now_ms() - timeout.as_millis() as i64).await?;
        let mut rooms: Vec<&RoomId> = missed.iter().map(|(room, _)| room).collect();
        rooms.dedup();
        for room in rooms {
            self.events.publish(room, RoomEventKind::Rang);
        }
        Ok(missed)
    }

    /// When the oldest unanswered ring of `platform` was rung, in milliseconds of the clock.
    pub async fn oldest_ringing(&self, platform: &str) -> Result<Option<i64>, ServiceError> {
        Ok(self.store.oldest_ringing(platform).await?)
    }

    /// Everyone rung into `room`.
    pub async fn rings_of(&self, room: &RoomId) -> Result<Vec<Ring>, ServiceError> {
        Ok(self.store.rings_of(room).await?)
    }

    /// The chat user refs (`platform:user`) of those holding a place in `room`.
    pub async fn present_user_refs(&self, room: &RoomId) -> Result<Vec<String>, ServiceError> {
        Ok(self.store.present_user_refs(room).await?)
    }

    /// Records a private prompt the bot sent.
    pub async fn record_prompt(&self, platform: &str, chat: &ChatRef, message: &MessageRef, prompt: &PromptRef) -> Result<(), ServiceError> {
        Ok(self.store.insert_prompt(platform, chat, message, prompt).await?)
    }

    /// What a private message of the bot's asks, when it is a prompt.
    pub async fn prompt_of(&self, platform: &str, chat: &ChatRef, message: &MessageRef) -> Result<Option<PromptRef>, ServiceError> {
        Ok(self.store.prompt_of(platform, chat, message).await?)
    }

    /// The prompts sent about one subject.
    pub async fn prompts_about(&self, platform: &str, prompt: &PromptRef) -> Result<Vec<(ChatRef, MessageRef)>, ServiceError> {
        Ok(self.store.prompts_about(platform, prompt).await?)
    }

    /// Turns the host's arrival notices on or off; `false` when already so.
    pub async fn set_notify_host(&self, room: &RoomId, on: bool) -> Result<bool, ServiceError> {
        Ok(self.store.set_notify_host(room, on).await?)
    }

    /// Whether the host of `room` hears who arrives.
    pub async fn notify_host(&self, room: &RoomId) -> Result<bool, ServiceError> {
        Ok(self.store.notify_host(room).await?)
    }

    /// Claims a knock's private notice to the host; `false` when it went out already.
    pub async fn claim_knock_notice(&self, room: &RoomId, knock: &str) -> Result<bool, ServiceError> {
        Ok(self.store.claim_knock_notice(room, knock).await?)
    }

    /// The rooms of a chat's call log: the open ones, then the last ended.
    pub async fn chat_calls(&self, platform: &str, chat: &ChatRef) -> Result<Vec<RoomId>, ServiceError> {
        Ok(self.store.chat_calls(platform, chat, CALL_LOG_ENDED).await?)
    }
}
