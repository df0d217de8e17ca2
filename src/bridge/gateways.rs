//! Gateways: a call started in one chat of a `[[gateways]]` entry is posted into every chat of
//! it, on every platform.
//!
//! The bridge that posts the first card announces it (`Posted`, an event every node hears);
//! each platform's bridge then posts its own cards in the gateway's chats on its platform. From
//! there each card is an ordinary card: kept current by its updater, in its chat's language,
//! its host buttons answering to that chat's admins and the host. A bridge that starts (after
//! a restart, or on the node that takes an adapter over) catches up on the open calls of its
//! gateways whose `Posted` it did not hear.

use super::Bridge;
use crate::ids::RoomId;
use callbridge_chat::ChatRef;

impl Bridge {
    /// At start: each gateway chat of this platform gets the card of every other chat's open
    /// call that it does not show yet.
    pub(super) async fn catch_up_gateways(&self) {
        let mine = self.adapter.platform();
        let config = self.rooms.config();
        for gateway in config.policies.gateways.iter().filter(|g| g.chats.iter().any(|c| c.platform.get_ref() == mine)) {
            for origin in &gateway.chats {
                let (platform, chat) = (origin.platform.get_ref(), origin.chat.get_ref());
                match self.rooms.latest_open_room(platform, &ChatRef(chat.clone())).await {
                    Ok(Some(room)) => self.share(&room, platform, chat).await,
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "cannot look up a gateway chat's call"),
                }
            }
        }
    }

    /// A card of `room` was posted in `chat` on `platform`: post this platform's cards in the
    /// rest of that chat's gateway, where none shows the room yet.
    pub(super) async fn share(&self, room: &RoomId, platform: &str, chat: &str) {
        let mine = self.adapter.platform();
        let config = self.rooms.config();
        let Some(gateway) = config.policies.gateway_of(platform, chat) else { return };
        let targets = gateway.chats.iter().filter(|c| c.platform.get_ref() == mine && !(mine == platform && c.chat.get_ref() == chat));
        for target in targets {
            let target = ChatRef(target.chat.get_ref().clone());
            // An event heard twice (a replay, a second node) posts nothing twice.
            match self.rooms.card_in(room, mine, &target).await {
                Ok(false) => {}
                Ok(true) => continue,
                Err(error) => {
                    tracing::warn!(%error, %room, "cannot look up a gateway's card");
                    continue;
                }
            }
            if let Err(()) = self.post_card(room, &target).await {
                return;
            }
        }
    }
}
