//! What the host hears privately, so they need not watch the card: a knock on their locked
//! room (with Admit and Deny), and, once they ask with `/notify`, who arrives.
//!
//! The bridge of the platform whose card shows the room sends them (only the adapter's leader
//! runs a bridge); a knock's notice is claimed in the database, so a fail-over never sends it
//! twice.

use super::ringing::title_of;
use super::{Bridge, Outcome};
use crate::events::{RoomEvent, RoomEventKind, Subscription};
use crate::ids::RoomId;
use crate::service::Knocks;
use crate::store::{PromptRef, Purpose};
use callbridge_chat::{Actor, CardAction, ChatRef, Prompt, UserRef, knock_code};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

impl Bridge {
    /// Follows room events until `cancel`, telling hosts what they asked to hear.
    pub(super) async fn notices(self: Arc<Self>, mut events: Subscription, cancel: CancellationToken) {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(event) if self.updater.shows(&event.room_id) => self.notice(event).await,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn notice(&self, event: RoomEvent) {
        let room = &event.room_id;
        match event.kind {
            RoomEventKind::Knocked { knock_id, name } => self.knock_notice(room, &knock_id, &name).await,
            RoomEventKind::KnockAnswered { knock_id, name, admitted } => {
                let text = if admitted { format!("✅ {name} was let in.") } else { format!("✖ {name} was turned away.") };
                let subject = PromptRef { room_id: room.clone(), purpose: Purpose::Knock, subject: knock_id.to_string() };
                self.edit_prompts(&subject, &Prompt { text, buttons: Vec::new() }).await;
            }
            RoomEventKind::Joined { name, rejoin: false, .. } => self.arrival_notice(room, &name).await,
            _ => {}
        }
    }

    /// A knock on the host's room: a prompt with Admit and Deny.
    async fn knock_notice(&self, room: &RoomId, knock: &str, name: &str) {
        let Ok(view) = self.rooms.view(room, Knocks::Hidden).await else { return };
        let Some(host) = view.host_ref.clone() else { return };
        if view.ended || !matches!(self.rooms.claim_knock_notice(room, knock).await, Ok(true)) {
            return;
        }
        let prompt = Prompt {
            text: format!("✋ {name} (#{}) asks to join your locked call {}.", knock_code(knock), title_of(&view)),
            buttons: vec![("✅ Admit".into(), CardAction::Accept), ("✖ Deny".into(), CardAction::Decline)],
        };
        let subject = PromptRef { room_id: room.clone(), purpose: Purpose::Knock, subject: knock.to_owned() };
        self.send_prompt(&UserRef(host), &prompt, &subject).await;
    }

    /// Admit or Deny on a knock's prompt: a host power, checked like the card's buttons. The
    /// prompt changes when the knock's answer is published.
    pub(super) async fn answer_knock_prompt(&self, prompt: &PromptRef, actor: &Actor, admit: bool) -> Outcome {
        let knock = prompt.subject.clone();
        let action = if admit { CardAction::Admit(knock) } else { CardAction::Deny(knock) };
        self.host_action(&prompt.room_id, actor, action).await
    }

    /// Someone arrived in a room whose host asked to hear it.
    async fn arrival_notice(&self, room: &RoomId, name: &str) {
        if !matches!(self.rooms.notify_host(room).await, Ok(true)) {
            return;
        }
        let Ok(view) = self.rooms.view(room, Knocks::Hidden).await else { return };
        let Some(host) = view.host_ref.clone() else { return };
        // The host's own arrival is no news to them.
        if view.ended || view.host_name.as_deref() == Some(name) {
            return;
        }
        let present = view.participants.iter().filter(|p| p.left_at.is_none() && !p.removed).count();
        let text = format!("🚪 {name} joined your call {} ({present} in now).", title_of(&view));
        if let Err(error) = self.private(&UserRef(host), &text).await {
            tracing::info!(%error, "cannot tell the host who arrived");
        }
    }

    /// `/notify [on|off]`: the host's arrival notices for the chat's open call.
    pub(super) async fn notify_command(&self, chat: &ChatRef, actor: &Actor, on: Option<bool>) -> Option<String> {
        let p = self.adapter.command_prefix();
        let room = match self.rooms.latest_open_room(self.adapter.platform(), chat).await {
            Ok(Some(room)) => room,
            Ok(None) => return Some(format!("No open call in this chat. Start one with {p}call.")),
            Err(_) => return Some("Something went wrong; try again.".into()),
        };
        let credential = crate::service::Credential::ChatUser { user_ref: actor.user.as_str(), chat_admin: false };
        // Notices go to the host alone: an admin who is not the host would not receive them.
        match self.rooms.authorize(&room, credential).await {
            Ok(power) if power.is_host() => {}
            Ok(_) => return Some("Only the host of this call hears who arrives.".into()),
            Err(_) => return Some("Something went wrong; try again.".into()),
        }
        let now = self.rooms.notify_host(&room).await.unwrap_or(false);
        let want = on.unwrap_or(!now);
        if want != now && self.rooms.set_notify_host(&room, want).await.is_err() {
            return Some("Something went wrong; try again.".into());
        }
        Some(if want {
            format!("I will tell you privately who arrives in your call. {p}notify off stops it.")
        } else {
            "No more arrival notices for this call.".into()
        })
    }
}
