//! Ringing people into a call: `/ringme` (opt in per chat), `/ring`, the private prompts with
//! Accept and Decline, and the timer that turns unanswered rings into missed calls.
//!
//! Ringing is opt-in: bots cannot list a chat's members, and ringing people who never asked
//! is spam. A `/ring @name` reaches someone who did not opt in only where the platform names
//! the user in the mention itself (Discord, Matrix) and lets the bot write to them privately.

use super::texts::Texts;
use super::{Bridge, Outcome};
use crate::ids::RoomId;
use crate::room::RoomView;
use crate::service::Knocks;
use crate::store::{OptIn, PromptRef, Purpose, Ring};
use callbridge_chat::{Actor, CardAction, ChatRef, MessageRef, Prompt, RingState, SendError, UserRef, fill};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest wait of the missed-call timer between two looks (a ring added on another node, or
/// a clock step, is noticed within this).
const MISS_CHECK_AT_MOST: Duration = Duration::from_secs(15);

/// Who `/ring` should ring, and who it could not find.
struct Targets {
    found: Vec<OptIn>,
    unknown: Vec<String>,
}

impl Bridge {
    /// `/ringme [on|off]`, or the card's 🔔 button: whether `actor` is rung for `chat`'s calls.
    pub(super) async fn ring_me(&self, chat: &ChatRef, actor: &Actor, on: Option<bool>, chat_name: Option<&str>) -> Outcome {
        let platform = self.adapter.platform();
        let t = self.t(chat);
        let optins = self.rooms.ring_optins(platform, chat).await.map_err(|_| t.went_wrong.to_owned())?;
        let now = optins.iter().any(|o| o.user_ref == actor.user.0);
        let want = on.unwrap_or(!now);
        let p = self.adapter.command_prefix();
        if want == now {
            return Ok(fill(if now { t.ring_state_on } else { t.ring_state_off }, &[("p", p)]));
        }
        let who = OptIn {
            user_ref: actor.user.0.clone(),
            name: clean(&actor.display_name, t),
            handle: actor.handle.as_deref().map(|h| h.trim_start_matches('@').to_lowercase()),
        };
        if want {
            // A ring is a private message: make sure one reaches them before saying yes.
            let text = match chat_name {
                Some(chat) => fill(t.ring_confirm_in, &[("chat", chat), ("p", p)]),
                None => fill(t.ring_confirm, &[("p", p)]),
            };
            match self.private(&actor.user, &text).await {
                Ok(()) | Err(SendError::Unsupported) => {}
                Err(error) => {
                    tracing::info!(%error, "cannot confirm a ring opt-in privately");
                    return Err(fill(t.ring_cannot_write, &[("name", &who.name), ("p", p)]));
                }
            }
        }
        self.rooms.set_ring_optin(platform, chat, &who, want).await.map_err(|_| t.went_wrong.to_owned())?;
        Ok(fill(if want { t.ring_on_done } else { t.ring_off_done }, &[("name", &who.name)]))
    }

    /// `/ring [@name …] [message]` into the chat's open call.
    pub(super) async fn ring_command(&self, chat: &ChatRef, actor: &Actor, targets: Vec<String>, message: Option<String>) -> Option<String> {
        let p = self.adapter.command_prefix();
        let t = self.t(chat);
        let room_id = match self.rooms.latest_open_room(self.adapter.platform(), chat).await {
            Ok(Some(id)) => id,
            Ok(None) => return Some(fill(t.no_call_ring, &[("p", p)])),
            Err(error) => {
                tracing::warn!(%error, "cannot find the chat's room");
                return Some(t.went_wrong.into());
            }
        };
        let named = !targets.is_empty();
        let Targets { found, unknown } = match self.ring_targets(chat, actor, &room_id, targets, t).await {
            Ok(t) => t,
            Err(why) => return Some(why),
        };
        let message = message.map(|m| clean(&m, t).chars().take(MAX_RING_MESSAGE).collect::<String>());
        let rung = self.ring(&room_id, &found, actor, message.as_deref()).await;
        let mut reply = Vec::new();
        if !unknown.is_empty() {
            let names = unknown.iter().map(|w| clean(w, t)).collect::<Vec<_>>().join(", ");
            reply.push(fill(t.ring_unknown, &[("names", &names), ("p", p)]));
        }
        if rung == 0 && unknown.is_empty() {
            reply.push(if named { t.ring_already.to_owned() } else { fill(t.ring_nobody, &[("p", p)]) });
        }
        // The card's "Ringing" section shows who is rung; a reply would only spend the budget.
        (!reply.is_empty()).then(|| reply.join(" "))
    }

    /// `/unring [@name …]`: takes back rings; each one's prompt says so. Whoever rang someone
    /// may take their ring back, the host (or a chat admin) anyone's.
    pub(super) async fn unring_command(&self, chat: &ChatRef, actor: &Actor, words: Vec<String>) -> Option<String> {
        let platform = self.adapter.platform();
        let p = self.adapter.command_prefix();
        let t = self.t(chat);
        let room = match self.rooms.latest_open_room(platform, chat).await {
            Ok(Some(id)) => id,
            Ok(None) => return Some(fill(t.no_call, &[("p", p)])),
            Err(_) => return Some(t.went_wrong.into()),
        };
        let credential = crate::service::Credential::ChatUser { user_ref: actor.user.as_str(), chat_admin: actor.is_admin };
        let host = self.rooms.authorize(&room, credential).await.is_ok_and(|p| p.is_host());
        let (Ok(rings), Ok(view)) = (self.rooms.rings_of(&room).await, self.rooms.view(&room, Knocks::Hidden).await) else {
            return Some(t.went_wrong.into());
        };
        // A word names a user by mention, by an opted-in member's @-name, or by name.
        let optins = self.rooms.ring_optins(platform, chat).await.unwrap_or_default();
        let named: Vec<String> = words
            .iter()
            .map(|w| {
                let bare = w.trim_start_matches('@').to_lowercase();
                self.adapter
                    .mentioned_user(w)
                    .map(|u| u.0)
                    .or_else(|| optins.iter().find(|o| o.handle.as_deref() == Some(bare.as_str())).map(|o| o.user_ref.clone()))
                    .unwrap_or(bare)
            })
            .collect();
        let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
        let mut taken = Vec::new();
        for ring in rings.iter().filter(|r| r.platform == platform) {
            let wanted = if named.is_empty() {
                ring.rung_by == actor.user.0 && ring.state == RingState::Ringing
            } else {
                named.iter().any(|n| *n == ring.user_ref || *n == squeeze(&ring.name))
            };
            if !wanted || !(host || ring.rung_by == actor.user.0) {
                continue;
            }
            if let Ok(true) = self.rooms.delete_ring(&room, platform, &ring.user_ref).await {
                let subject = PromptRef { room_id: room.clone(), purpose: Purpose::Ring, subject: ring.user_ref.clone() };
                let text = fill(t.ring_taken_back, &[("by", &clean(&ring.rung_by_name, t)), ("title", &title_of(t, &view))]);
                self.edit_prompts(&subject, &Prompt { text, buttons: Vec::new(), lang: t.lang }).await;
                taken.push(ring.name.clone());
            }
        }
        // The card shows the rest.
        taken.is_empty().then(|| t.unring_none.to_owned())
    }

    /// Whom `/ring` names: every opted-in member not in the call (and not the ringer), or the
    /// named ones.
    async fn ring_targets(&self, chat: &ChatRef, actor: &Actor, room: &RoomId, words: Vec<String>, t: &Texts) -> Result<Targets, String> {
        let platform = self.adapter.platform();
        let failed = |_| t.went_wrong.to_owned();
        let optins = self.rooms.ring_optins(platform, chat).await.map_err(failed)?;
        let present = self.rooms.present_user_refs(room).await.map_err(failed)?;
        let inside = |user: &str| present.iter().any(|p| p.strip_prefix(platform).and_then(|r| r.strip_prefix(':')) == Some(user));
        if words.is_empty() {
            let found = optins.into_iter().filter(|o| o.user_ref != actor.user.0 && !inside(&o.user_ref)).collect();
            return Ok(Targets { found, unknown: Vec::new() });
        }
        let mut targets = Targets { found: Vec::new(), unknown: Vec::new() };
        for word in words {
            let bare = word.trim_start_matches('@').to_lowercase();
            let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
            let who = match self.adapter.mentioned_user(&word) {
                Some(user) => Some(optins.iter().find(|o| o.user_ref == user.0).cloned().unwrap_or(OptIn {
                    name: word.clone(),
                    user_ref: user.0,
                    handle: None,
                })),
                None => optins.iter().find(|o| o.handle.as_deref() == Some(bare.as_str()) || squeeze(&o.name) == bare).cloned(),
            };
            match who {
                Some(who) if inside(&who.user_ref) => {}
                Some(who) if !targets.found.contains(&who) => targets.found.push(who),
                Some(_) => {}
                None => targets.unknown.push(word),
            }
        }
        Ok(targets)
    }

    /// Rings each of `people` into `room` (those being rung already are skipped); returns how
    /// many were rung now.
    pub(super) async fn ring(&self, room: &RoomId, people: &[OptIn], by: &Actor, message: Option<&str>) -> usize {
        let Ok(view) = self.rooms.view(room, Knocks::Hidden).await else { return 0 };
        let platform = self.adapter.platform();
        let t = self.t_of(&view);
        let by = OptIn { user_ref: by.user.0.clone(), name: clean(&by.display_name, t), handle: None };
        let mut rung = 0;
        for who in people {
            match self.rooms.add_ring(room, platform, who, &by, message).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    tracing::warn!(%error, "cannot record a ring");
                    continue;
                }
            }
            rung += 1;
            let ring = Ring {
                platform: platform.to_owned(),
                user_ref: who.user_ref.clone(),
                name: who.name.clone(),
                rung_by: by.user_ref.clone(),
                rung_by_name: by.name.clone(),
                state: RingState::Ringing,
                message: message.map(str::to_owned),
            };
            let prompt = ring_prompt(t, &view, &ring);
            let subject = PromptRef { room_id: room.clone(), purpose: Purpose::Ring, subject: who.user_ref.clone() };
            if !self.send_prompt(&UserRef(who.user_ref.clone()), &prompt, &subject).await
                && let Err(error) =
                    self.rooms.set_ring_state(room, platform, &who.user_ref, RingState::Unreachable, &[RingState::Ringing]).await
            {
                tracing::warn!(%error, "cannot record an unreachable ring");
            }
        }
        self.rings_due.notify_one();
        rung
    }

    /// Sends a prompt privately and records it; `false` when it could not reach them.
    pub(super) async fn send_prompt(&self, user: &UserRef, prompt: &Prompt, subject: &PromptRef) -> bool {
        match self.paced(&self.private_key(user), || self.adapter.send_prompt(user, prompt)).await {
            Ok((chat, message)) => {
                if let Err(error) = self.rooms.record_prompt(self.adapter.platform(), &chat, &message, subject).await {
                    tracing::warn!(%error, "cannot record a prompt");
                }
                true
            }
            Err(error) => {
                tracing::info!(%error, "cannot reach someone privately");
                false
            }
        }
    }

    /// Shows `prompt` on every prompt sent about `subject`.
    pub(super) async fn edit_prompts(&self, subject: &PromptRef, prompt: &Prompt) {
        let sent = match self.rooms.prompts_about(self.adapter.platform(), subject).await {
            Ok(sent) => sent,
            Err(error) => {
                tracing::warn!(%error, "cannot find prompts");
                return;
            }
        };
        for (chat, message) in sent {
            self.edit_prompt(&chat, &message, prompt).await;
        }
    }

    /// Edits one prompt within its chat's budget.
    pub(super) async fn edit_prompt(&self, chat: &ChatRef, message: &MessageRef, prompt: &Prompt) {
        match self.paced(chat, || self.adapter.edit_prompt(chat, message, prompt)).await {
            Ok(()) | Err(SendError::NotModified) => {}
            Err(error) => tracing::info!(%error, "cannot edit a prompt"),
        }
    }

    /// Accept or Decline on a ring's prompt.
    pub(super) async fn answer_ring(&self, prompt: &PromptRef, at: (&ChatRef, &MessageRef), actor: &Actor, accept: bool) -> Outcome {
        let platform = self.adapter.platform();
        let room = &prompt.room_id;
        let view = self.rooms.view(room, Knocks::Hidden).await.map_err(|_| super::texts::texts(Default::default()).call_unavailable.to_owned())?;
        let t = self.t_of(&view);
        if prompt.subject != actor.user.0 {
            return Err(t.ring_not_yours.into());
        }
        let rings = self.rooms.rings_of(room).await.map_err(|_| t.went_wrong.to_owned())?;
        let Some(ring) = rings.into_iter().find(|r| r.platform == platform && r.user_ref == actor.user.0) else {
            return Err(t.ring_gone.into());
        };
        let by = clean(&ring.rung_by_name, t);
        if view.ended {
            self.edit_prompt(at.0, at.1, &ended_prompt(t, &view, &by)).await;
            return Err(t.call_ended.into());
        }
        let (state, from): (RingState, &[RingState]) = if accept {
            (RingState::Accepted, &[RingState::Ringing, RingState::Missed, RingState::Declined, RingState::Unreachable, RingState::Accepted])
        } else {
            (RingState::Declined, &[RingState::Ringing, RingState::Missed])
        };
        if ring.state != state {
            self.rooms.set_ring_state(room, platform, &actor.user.0, state, from).await.map_err(|_| t.went_wrong.to_owned())?;
        }
        let title = title_of(t, &view);
        let answered = if accept {
            let name = clean(&actor.display_name, t);
            let link = self.rooms.personal_url(room, &format!("{platform}:{}", actor.user), &name);
            fill(t.ring_accepted, &[("by", &by), ("title", &title), ("name", &name), ("link", &link)])
        } else {
            fill(t.ring_declined, &[("by", &by), ("title", &title)])
        };
        self.edit_prompt(at.0, at.1, &Prompt { text: answered, buttons: Vec::new(), lang: t.lang }).await;
        Ok(if accept { t.here_is_link } else { t.declined }.into())
    }

    /// Runs until `cancel`: marks missed the rings nobody answered within `ring_timeout` (or
    /// whose call ended) and says so on their prompts. The rings live in the database, so a
    /// ring started before a restart, or on a node that stopped, is timed here all the same.
    pub(super) async fn miss_rings(self: Arc<Self>, cancel: CancellationToken) {
        let platform = self.adapter.platform();
        let timeout = self.rooms.config().rooms.ring_timeout;
        loop {
            match self.rooms.miss_overdue_rings(platform, timeout).await {
                Ok(missed) => {
                    for (room, user) in missed {
                        self.say_missed(&room, &user).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot time rings"),
            }
            let wait = match self.rooms.oldest_ringing(platform).await {
                Ok(Some(rung_at)) => {
                    let due = rung_at + timeout.as_millis() as i64 - self.rooms.now_ms();
                    Duration::from_millis(due.max(0) as u64 + 50).min(MISS_CHECK_AT_MOST)
                }
                _ => MISS_CHECK_AT_MOST,
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.rings_due.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A missed ring's prompt says so; while the call is on, Accept still joins.
    async fn say_missed(&self, room: &RoomId, user: &str) {
        let Ok(view) = self.rooms.view(room, Knocks::Hidden).await else { return };
        let Ok(rings) = self.rooms.rings_of(room).await else { return };
        let Some(ring) = rings.iter().find(|r| r.platform == self.adapter.platform() && r.user_ref == user) else { return };
        let t = self.t_of(&view);
        let by = clean(&ring.rung_by_name, t);
        let prompt = if view.ended {
            ended_prompt(t, &view, &by)
        } else {
            Prompt {
                text: fill(t.ring_missed, &[("by", &by), ("title", &title_of(t, &view))]),
                buttons: vec![(t.join_now.into(), CardAction::Accept)],
                lang: t.lang,
            }
        };
        let subject = PromptRef { room_id: room.clone(), purpose: Purpose::Ring, subject: user.to_owned() };
        self.edit_prompts(&subject, &prompt).await;
    }

    /// What a private message to `user` is paced under.
    pub(super) fn private_key(&self, user: &UserRef) -> ChatRef {
        self.adapter.private_chat(user).unwrap_or_else(|| ChatRef(format!("private:{user}")))
    }

    /// Sends plain text privately, within the budget of the private chat.
    pub(super) async fn private(&self, user: &UserRef, text: &str) -> Result<(), SendError> {
        self.paced(&self.private_key(user), || self.adapter.send_private(user, text)).await.map(|_| ())
    }
}

/// Most characters of a `/ring` message.
const MAX_RING_MESSAGE: usize = 200;

/// A user string with its control characters dropped, trimmed (prompts are plain text, and
/// each adapter keeps it inert in its markup).
fn clean(s: &str, t: &Texts) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    let s = s.trim();
    if s.is_empty() { t.someone.to_owned() } else { s.chars().take(crate::room::MAX_NAME_CHARS.max(64)).collect() }
}

/// “Title” (or the kind of call).
pub(super) fn title_of(t: &Texts, view: &RoomView) -> String {
    match &view.title {
        Some(title) => fill(t.quoted, &[("title", title)]),
        None if view.kind == crate::room::RoomKind::Voice => t.untitled_voice.to_owned(),
        None => t.untitled_video.to_owned(),
    }
}

/// The private message that rings someone.
fn ring_prompt(t: &Texts, view: &RoomView, ring: &Ring) -> Prompt {
    let (by, title) = (ring.rung_by_name.as_str(), title_of(t, view));
    let mut text = match &view.chat_name {
        Some(chat) => fill(t.ring_calling_from, &[("by", by), ("title", &title), ("chat", chat)]),
        None => fill(t.ring_calling, &[("by", by), ("title", &title)]),
    };
    if let Some(message) = &ring.message {
        text.push('\n');
        text.push_str(&fill(t.ring_message, &[("message", message)]));
    }
    text.push('\n');
    text.push_str(t.ring_hint);
    Prompt { text, buttons: vec![(t.accept.into(), CardAction::Accept), (t.decline.into(), CardAction::Decline)], lang: t.lang }
}

/// A ring's prompt once its call ended.
fn ended_prompt(t: &Texts, view: &RoomView, by: &str) -> Prompt {
    Prompt { text: fill(t.ring_ended, &[("by", by), ("title", &title_of(t, view))]), buttons: Vec::new(), lang: t.lang }
}
