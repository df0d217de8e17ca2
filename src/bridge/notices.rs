//! What the host hears privately, so they need not watch the card: a knock on their locked
//! room (with Admit and Deny; the chat's `knock_notices` people hear it too), and, once they
//! ask with `/notify`, who arrives.
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
use callbridge_chat::{Actor, CardAction, ChatRef, Prompt, UserRef, fill, knock_code};
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
                Ok(RoomEvent { room_id, kind: RoomEventKind::Posted { platform, chat } }) => self.share(&room_id, &platform, &chat).await,
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
                let Ok(view) = self.rooms.view(room, Knocks::Hidden).await else { return };
                let t = self.t_of(&view);
                let text = fill(if admitted { t.knock_let_in } else { t.knock_denied }, &[("name", &name)]);
                let subject = PromptRef { room_id: room.clone(), purpose: Purpose::Knock, subject: knock_id.to_string() };
                self.edit_prompts(&subject, &Prompt { text, buttons: Vec::new(), lang: t.lang }).await;
            }
            RoomEventKind::Joined { name, rejoin: false, .. } => self.arrival_notice(room, &name).await,
            _ => {}
        }
    }

    /// A knock on the host's room: a prompt with Admit and Deny, to the host (by the bridge of
    /// the platform the call was started from, once: claimed in the database) and to whoever
    /// the call's chat policy lists in `knock_notices` on this platform.
    async fn knock_notice(&self, room: &RoomId, knock: &str, name: &str) {
        let Ok(view) = self.rooms.view(room, Knocks::Hidden).await else { return };
        if view.ended {
            return;
        }
        let t = self.t_of(&view);
        let (code, title) = (knock_code(knock), title_of(t, &view));
        let buttons = vec![(t.admit.to_owned(), CardAction::Accept), (t.deny.to_owned(), CardAction::Decline)];
        let subject = PromptRef { room_id: room.clone(), purpose: Purpose::Knock, subject: knock.to_owned() };
        let host = view.host_ref.clone().filter(|_| self.started_here(&view));
        if let Some(host) = &host {
            if !matches!(self.rooms.claim_knock_notice(room, knock).await, Ok(true)) {
                return;
            }
            let prompt = Prompt { text: fill(t.knock_asks, &[("name", name), ("code", code), ("title", &title)]), buttons: buttons.clone(), lang: t.lang };
            self.send_prompt(&UserRef(host.clone()), &prompt, &subject).await;
        }
        let host_name = view.host_name.as_deref().unwrap_or(t.the_host);
        let text = fill(t.knock_asks_other, &[("name", name), ("code", code), ("title", &title), ("host", host_name)]);
        let prefix = format!("{}:", self.adapter.platform());
        for user in self.policy_of(&view).knock_notices {
            let Some(user) = user.strip_prefix(&prefix) else { continue };
            if host.as_deref() != Some(user) {
                self.send_prompt(&UserRef(user.to_owned()), &Prompt { text: text.clone(), buttons: buttons.clone(), lang: t.lang }, &subject).await;
            }
        }
    }

    /// Admit or Deny on a knock's prompt: a host power, checked like the card's buttons. The
    /// prompt changes when the knock's answer is published.
    pub(super) async fn answer_knock_prompt(&self, prompt: &PromptRef, actor: &Actor, admit: bool) -> Outcome {
        let knock = prompt.subject.clone();
        let action = if admit { CardAction::Admit(knock) } else { CardAction::Deny(knock) };
        let Ok(view) = self.rooms.view(&prompt.room_id, Knocks::Hidden).await else {
            return Err(super::texts::texts(Default::default()).call_unavailable.into());
        };
        // Whoever the chat's policy sends knocks to may answer them, as a chat admin would.
        let me = format!("{}:{}", self.adapter.platform(), actor.user);
        let listed = self.policy_of(&view).knock_notices.contains(&me);
        let actor = Actor { is_admin: actor.is_admin || listed, ..actor.clone() };
        self.host_action(&prompt.room_id, &actor, action, self.t_of(&view)).await
    }

    /// Someone arrived in a room whose host asked to hear it.
    async fn arrival_notice(&self, room: &RoomId, name: &str) {
        if !matches!(self.rooms.notify_host(room).await, Ok(true)) {
            return;
        }
        let Ok(view) = self.rooms.view(room, Knocks::Hidden).await else { return };
        let Some(host) = view.host_ref.clone().filter(|_| self.started_here(&view)) else { return };
        // The host's own arrival is no news to them.
        if view.ended || view.host_name.as_deref() == Some(name) {
            return;
        }
        let present = view.participants.iter().filter(|p| p.left_at.is_none() && !p.removed).count();
        let t = self.t_of(&view);
        let text = fill(t.arrival, &[("name", name), ("title", &title_of(t, &view)), ("n", &present.to_string())]);
        if let Err(error) = self.private(&UserRef(host), &text).await {
            tracing::info!(%error, "cannot tell the host who arrived");
        }
    }

    /// `/notify [on|off]`: the host's arrival notices for the chat's open call.
    pub(super) async fn notify_command(&self, chat: &ChatRef, actor: &Actor, on: Option<bool>) -> Option<String> {
        let p = self.adapter.command_prefix();
        let t = self.t(chat);
        let room = match self.rooms.latest_open_room(self.adapter.platform(), chat).await {
            Ok(Some(room)) => room,
            Ok(None) => return Some(fill(t.no_call, &[("p", p)])),
            Err(_) => return Some(t.went_wrong.into()),
        };
        let credential = crate::service::Credential::ChatUser { user_ref: actor.user.as_str(), chat_admin: false };
        // Notices go to the host alone: an admin who is not the host would not receive them.
        match self.rooms.authorize(&room, credential).await {
            Ok(power) if power.is_host() => {}
            Ok(_) => return Some(t.notify_only_host.into()),
            Err(_) => return Some(t.went_wrong.into()),
        }
        let now = self.rooms.notify_host(&room).await.unwrap_or(false);
        let want = on.unwrap_or(!now);
        if want != now && self.rooms.set_notify_host(&room, want).await.is_err() {
            return Some(t.went_wrong.into());
        }
        Some(if want { fill(t.notify_on, &[("p", p)]) } else { t.notify_off.into() })
    }
}
